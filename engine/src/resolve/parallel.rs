//! A small parallel map over a slice with scoped threads: drives are read, and commits
//! verified, on every core at once.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Threads for CPU-bound work: one per core.
pub(crate) fn cpu_threads() -> usize {
    std::thread::available_parallelism().map_or(2, usize::from)
}

/// `f` applied to every item, using up to `max_threads` threads; results in item order.
/// A panic in `f` is propagated to the caller.
pub(crate) fn map<T, R, F>(items: &[T], max_threads: usize, f: F) -> Vec<R>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> R + Sync,
{
    let threads = max_threads.min(items.len());
    if threads <= 1 {
        return items.iter().map(&f).collect();
    }
    let next = AtomicUsize::new(0);
    let work = || {
        let mut done = Vec::new();
        loop {
            let index = next.fetch_add(1, Ordering::Relaxed);
            let Some(item) = items.get(index) else {
                return done;
            };
            done.push((index, f(item)));
        }
    };
    let parts: Vec<Vec<(usize, R)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads).map(|_| scope.spawn(work)).collect();
        handles
            .into_iter()
            .map(|handle| match handle.join() {
                Ok(part) => part,
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    });
    let mut slots: Vec<Option<R>> = std::iter::repeat_with(|| None).take(items.len()).collect();
    for (index, result) in parts.into_iter().flatten() {
        slots[index] = Some(result);
    }
    slots.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_item_order_on_many_threads() {
        let items: Vec<u64> = (0..1000).collect();
        let squares = map(&items, 8, |n| n * n);
        assert_eq!(squares, items.iter().map(|n| n * n).collect::<Vec<_>>());
        assert!(map(&Vec::<u8>::new(), 4, |n| *n).is_empty());
        assert_eq!(map(&[3u8], 4, |n| n + 1), vec![4]);
    }
}
