//! Which source to ask for each object, following the rules for prioritised mirrors:
//! drives before nearby computers before upstream; among those, fresher summaries first;
//! sources of equal rank in random order so load spreads across them; a source that misses
//! one object (a 404) is only moved back within its rank, because it may be the only one
//! holding another object; a source that fails as a whole (refused connection, drive gone)
//! is dropped for the rest of the pull.

use std::sync::Mutex;

use rand::seq::SliceRandom;
use rand::Rng;

use crate::schema::SourceKind;

/// How a source ranks before the pull starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceRank {
    pub kind: SourceKind,
    /// Last-modified time of the source's summary, when it has one. Newer is preferred.
    pub summary_timestamp: Option<u64>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Health {
    misses: u32,
    dropped: bool,
}

/// Shared, thread-safe bookkeeping of source order and health for one pull.
#[derive(Debug)]
pub struct Schedule {
    ranks: Vec<SourceRank>,
    health: Mutex<Vec<Health>>,
}

impl Schedule {
    pub fn new(ranks: Vec<SourceRank>) -> Self {
        let health = Mutex::new(vec![Health::default(); ranks.len()]);
        Self { ranks, health }
    }

    pub fn len(&self) -> usize {
        self.ranks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ranks.is_empty()
    }

    fn health(&self) -> Vec<Health> {
        match self.health.lock() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn update(&self, index: usize, change: impl FnOnce(&mut Health)) {
        let mut guard = match self.health.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(health) = guard.get_mut(index) {
            change(health);
        }
    }

    /// The sources to try for one object, best first. Dropped sources are left out.
    pub fn order(&self, rng: &mut impl Rng) -> Vec<usize> {
        let health = self.health();
        let mut order: Vec<usize> = (0..self.ranks.len())
            .filter(|&i| !health[i].dropped)
            .collect();
        // Shuffle first, then sort stably: equal sources keep a random order.
        order.shuffle(rng);
        order.sort_by_key(|&i| {
            let rank = self.ranks[i];
            (
                rank.kind,
                std::cmp::Reverse(rank.summary_timestamp.unwrap_or(0)),
                health[i].misses,
            )
        });
        order
    }

    /// The source did not have one object. It stays in the pull.
    pub fn record_miss(&self, index: usize) {
        self.update(index, |health| {
            health.misses = health.misses.saturating_add(1)
        });
    }

    /// The source failed as a whole; it is not asked again in this pull.
    pub fn record_unavailable(&self, index: usize) {
        self.update(index, |health| health.dropped = true);
    }

    /// Whether any source is still usable.
    pub fn any_available(&self) -> bool {
        self.health().iter().any(|health| !health.dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn rank(kind: SourceKind, summary_timestamp: Option<u64>) -> SourceRank {
        SourceRank {
            kind,
            summary_timestamp,
        }
    }

    #[test]
    fn drives_come_first_then_fresher_summaries() {
        let schedule = Schedule::new(vec![
            rank(SourceKind::Upstream, Some(500)),
            rank(SourceKind::Lan, Some(100)),
            rank(SourceKind::Lan, Some(200)),
            rank(SourceKind::Drive, None),
        ]);
        let mut rng = StdRng::seed_from_u64(7);
        assert_eq!(schedule.order(&mut rng), vec![3, 2, 1, 0]);
    }

    #[test]
    fn equal_sources_are_shuffled() {
        let schedule = Schedule::new(vec![rank(SourceKind::Lan, Some(1)); 4]);
        let mut rng = StdRng::seed_from_u64(1);
        let firsts: std::collections::HashSet<usize> =
            (0..64).map(|_| schedule.order(&mut rng)[0]).collect();
        assert!(firsts.len() > 1, "one source always first: {firsts:?}");
    }

    #[test]
    fn a_miss_moves_a_source_back_but_keeps_it() {
        let schedule = Schedule::new(vec![rank(SourceKind::Lan, Some(1)); 2]);
        schedule.record_miss(0);
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..16 {
            assert_eq!(schedule.order(&mut rng), vec![1, 0]);
        }
    }

    #[test]
    fn an_unavailable_source_is_dropped() {
        let schedule = Schedule::new(vec![
            rank(SourceKind::Drive, None),
            rank(SourceKind::Lan, None),
        ]);
        schedule.record_unavailable(0);
        let mut rng = StdRng::seed_from_u64(3);
        assert_eq!(schedule.order(&mut rng), vec![1]);
        schedule.record_unavailable(1);
        assert!(!schedule.any_available());
        assert!(schedule.order(&mut rng).is_empty());
    }
}
