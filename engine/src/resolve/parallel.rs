//! A small parallel map over a slice with scoped threads: drives are read, and commits
//! verified, on every core at once.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Most threads [`cpu_threads`] gives, whatever the core count: the hook's unit allows 64
/// tasks (`TasksMax=`), and reads of drives gain nothing from more.
const MAX_CPU_THREADS: usize = 8;

/// Threads for CPU-bound work: one per core, at most [`MAX_CPU_THREADS`].
pub(crate) fn cpu_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(2, usize::from)
        .min(MAX_CPU_THREADS)
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

/// Bytes that work running in parallel may hold at once. A job reserves what it will need
/// before it starts and waits while others hold the rest; a job larger than the whole budget
/// runs alone.
pub(crate) struct MemoryBudget {
    total: u64,
    in_use: std::sync::Mutex<u64>,
    freed: std::sync::Condvar,
}

/// Bytes held from a [`MemoryBudget`] until dropped.
pub(crate) struct Reservation<'a> {
    budget: &'a MemoryBudget,
    bytes: u64,
}

impl MemoryBudget {
    pub(crate) fn new(total: u64) -> Self {
        Self {
            total,
            in_use: std::sync::Mutex::new(0),
            freed: std::sync::Condvar::new(),
        }
    }

    /// Waits until `bytes` fit (or nothing else is held), then holds them.
    pub(crate) fn reserve(&self, bytes: u64) -> Reservation<'_> {
        let mut in_use = self
            .in_use
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while *in_use > 0 && in_use.saturating_add(bytes) > self.total {
            in_use = self
                .freed
                .wait(in_use)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        *in_use = in_use.saturating_add(bytes);
        Reservation {
            budget: self,
            bytes,
        }
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let mut in_use = self
            .budget
            .in_use
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *in_use = in_use.saturating_sub(self.bytes);
        self.budget.freed.notify_all();
    }
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

    #[test]
    fn a_memory_budget_never_lets_reservations_exceed_it() {
        let budget = MemoryBudget::new(100);
        let peak = std::sync::Mutex::new(0u64);
        let held = std::sync::Mutex::new(0u64);
        let sizes: Vec<u64> = (0..64).map(|i| [10, 40, 70, 250][i % 4]).collect();
        map(&sizes, 8, |&size| {
            let _reservation = budget.reserve(size);
            let now = {
                let mut held = held.lock().expect("lock");
                *held += size;
                *held
            };
            {
                let mut peak = peak.lock().expect("lock");
                // One job larger than the budget may run, but only alone.
                assert!(now <= 100 || now == size, "{now} bytes held at once");
                *peak = (*peak).max(now);
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
            *held.lock().expect("lock") -= size;
        });
        assert!(*peak.lock().expect("lock") > 0);
    }
}
