//! Fleet-scale work on every core: a slice cut into one contiguous run per core, each run mapped
//! on its own thread, the results returned in order.

use crate::error::{Error, Result};

/// Maps `f` over `items` in one contiguous run per core; `f` gets each run's offset in `items`.
/// The first error (in run order) is returned; a panicking run gives `on_panic()`.
pub(crate) fn map_runs<T: Sync, R: Send>(
    items: &[T],
    on_panic: impl Fn() -> Error,
    f: impl Fn(usize, &[T]) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    let threads = std::thread::available_parallelism().map_or(2, usize::from);
    let run = items.len().div_ceil(threads).max(1);
    let f = &f;
    let results: Vec<std::thread::Result<Result<R>>> = std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(run)
            .enumerate()
            .map(|(i, part)| s.spawn(move || f(i * run, part)))
            .collect();
        handles
            .into_iter()
            .map(std::thread::ScopedJoinHandle::join)
            .collect()
    });
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|_| Err(on_panic())))
        .collect()
}
