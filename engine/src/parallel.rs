//! One lookup run over many items on a few threads. Cold metadata reads (opening or stating
//! thousands of objects on a drive) finish sooner with many requests in flight: the device
//! answers them together.

/// `lookup` applied to every item of `items`, results in the same order, on up to `threads`
/// scoped threads taking chunks of at least `min_chunk` items. None when a thread panicked.
pub(crate) fn map_chunked<T, R, F>(
    items: &[T],
    threads: usize,
    min_chunk: usize,
    lookup: F,
) -> Option<Vec<R>>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> R + Sync,
{
    if items.is_empty() {
        return Some(Vec::new());
    }
    let chunk = items.len().div_ceil(threads.max(1)).max(min_chunk.max(1));
    let lookup = &lookup;
    std::thread::scope(|scope| {
        let workers: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(lookup).collect::<Vec<R>>()))
            .collect();
        let mut results = Vec::with_capacity(items.len());
        for worker in workers {
            results.extend(worker.join().ok()?);
        }
        Some(results)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_keep_the_order_of_the_items_whatever_the_chunking() {
        let items: Vec<u32> = (0..1000).collect();
        for (threads, min_chunk) in [(1, 1), (4, 1), (32, 64), (7, 1000), (0, 0)] {
            let doubled = map_chunked(&items, threads, min_chunk, |n| n * 2);
            assert_eq!(
                doubled,
                Some(items.iter().map(|n| n * 2).collect()),
                "{threads} threads"
            );
        }
        assert_eq!(map_chunked(&[] as &[u32], 4, 1, |n| *n), Some(Vec::new()));
    }

    #[test]
    fn a_panicking_lookup_gives_none() {
        let items: Vec<u32> = (0..10).collect();
        let result = map_chunked(&items, 2, 1, |n| {
            assert!(*n != 7, "seven");
            *n
        });
        assert_eq!(result, None);
    }
}
