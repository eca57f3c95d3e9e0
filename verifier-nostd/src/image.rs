//! Read access to the firmware image in flash, in chunks: what the boot check (`boot`) and the
//! MCUboot image check (`mcuboot::check`) both read through.

/// Read access to the firmware image in flash, in chunks.
pub trait ImageReader {
    /// The board's error type.
    type Error;
    /// Length of the image in the slot, in bytes.
    fn len(&self) -> u64;
    /// Whether the slot is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Fills `buf` with the image bytes starting at `offset` (`offset + buf.len() <= len()`).
    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Self::Error>;
}

/// An image in memory-mapped flash (or RAM).
#[derive(Debug, Clone, Copy)]
pub struct MemoryImage<'a>(pub &'a [u8]);

impl ImageReader for MemoryImage<'_> {
    type Error = ();

    fn len(&self) -> u64 {
        self.0.len() as u64
    }

    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), ()> {
        let start = usize::try_from(offset).map_err(|_| ())?;
        let end = start.checked_add(buf.len()).ok_or(())?;
        buf.copy_from_slice(self.0.get(start..end).ok_or(())?);
        Ok(())
    }
}

/// Bytes hashed per flash read.
pub const CHUNK: usize = 512;
