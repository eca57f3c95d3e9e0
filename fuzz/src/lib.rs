//! What the fuzz targets share: a counting global allocator, so that each target can bound the
//! memory a decoder takes per byte of input (issue 20, item 6; style.md "Untrusted bytes cost what
//! they weigh").
//!
//! A target installs [`Counting`] as its `#[global_allocator]` and runs its body inside
//! [`bounded`], which fails the run (a panic, which libFuzzer reports as a crash with the input)
//! when the peak of live heap bytes during the body exceeds [`BYTES_PER_INPUT_BYTE`] per input byte
//! plus [`FIXED_BYTES`]. A decoder that reserves memory for a count read from the input, before
//! the input has shown it holds that many items, fails at once.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Heap bytes a target may hold at its peak per byte of input: decoded items are fixed-size
/// records (a pack run of at least 3 input bytes is a 32-byte `Run`), plus the re-encoding the
/// targets compare with the input.
pub const BYTES_PER_INPUT_BYTE: usize = 64;
/// Heap bytes any input may take (fixtures, formatting, small reserves).
pub const FIXED_BYTES: usize = 256 << 10;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, counting live bytes and their peak.
pub struct Counting;

// SAFETY: every method forwards to `System` with the caller's layout and pointer unchanged; the
// counters are only arithmetic on the side.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which `System` shares.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` (through this allocator) with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` was allocated by `System` (through this allocator) with `layout`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        p
    }
}

fn grew(size: usize) {
    let live = LIVE.fetch_add(size, Ordering::Relaxed) + size;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

/// Runs `body` for an input of `input_len` bytes and panics if the heap grew, at its peak, by more
/// than `BYTES_PER_INPUT_BYTE * input_len + FIXED_BYTES` bytes while it ran.
pub fn bounded<T>(input_len: usize, body: impl FnOnce() -> T) -> T {
    bounded_by(BYTES_PER_INPUT_BYTE, input_len, body)
}

/// [`bounded`] with another budget per input byte, for a target whose third-party parser keeps
/// more per byte (still linear in the input); the target says why.
pub fn bounded_by<T>(bytes_per_input_byte: usize, input_len: usize, body: impl FnOnce() -> T) -> T {
    let start = LIVE.load(Ordering::Relaxed);
    PEAK.store(start, Ordering::Relaxed);
    let out = body();
    let grown = PEAK.load(Ordering::Relaxed).saturating_sub(start);
    let budget = bytes_per_input_byte
        .saturating_mul(input_len)
        .saturating_add(FIXED_BYTES);
    assert!(
        grown <= budget,
        "{grown} heap bytes at peak for {input_len} input bytes (budget {budget})"
    );
    out
}
