//! The repository's free-space reserve, counted as libostree counts it, so that a write stops
//! at the reserve (`min-free-space-*`) instead of filling the filesystem.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use super::{Repo, RepoError};

/// What content objects may still take before the repository's reserve is reached, counted
/// as libostree counts it (`txn.max_blocks`): measured when the transaction begins (or, for
/// a write outside a transaction, when it begins), and each content object takes its size
/// in blocks, plus one. An object's declared size is charged before it is written, what it
/// writes beyond that is charged as it is written, and the charge is settled to what the
/// stored file takes. Metadata objects are small and not counted, as in libostree.
pub(super) struct SpaceBudget {
    remaining: Mutex<u64>,
    block_size: u64,
    reserved: u64,
}

impl SpaceBudget {
    pub(super) fn measure(repo: &Repo) -> Result<Self, RepoError> {
        let space = repo.free_space()?;
        Ok(Self {
            remaining: Mutex::new(space.usable()),
            block_size: space.block_size,
            reserved: space.reserved,
        })
    }

    fn remaining(&self) -> MutexGuard<'_, u64> {
        match self.remaining.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// What `size` bytes take, in whole blocks plus one, as libostree counts them.
    fn blocks(&self, size: u64) -> u64 {
        (size / self.block_size)
            .saturating_add(1)
            .saturating_mul(self.block_size)
    }
}

/// The budget a write charges: the transaction's, or one measured for this write alone.
enum BudgetRef<'b> {
    Shared(&'b SpaceBudget),
    Own(SpaceBudget),
}

impl std::ops::Deref for BudgetRef<'_> {
    type Target = SpaceBudget;
    fn deref(&self) -> &SpaceBudget {
        match self {
            Self::Shared(budget) => budget,
            Self::Own(budget) => budget,
        }
    }
}

/// What one content object has taken from the budget while it is written. Dropped without
/// [`SpaceCharge::settle`] (a refused object), it gives everything back.
pub(super) struct SpaceCharge<'b> {
    budget: BudgetRef<'b>,
    path: &'b Path,
    claimed: std::cell::Cell<u64>,
    /// Set when a write went past the budget: the bytes that would have been needed.
    refused: std::cell::Cell<Option<(u64, u64)>>,
}

impl<'b> SpaceCharge<'b> {
    /// Starts charging a write to `shared` (a transaction's budget), or to a budget measured
    /// now for this write alone.
    pub(super) fn begin(
        repo: &'b Repo,
        shared: Option<&'b SpaceBudget>,
    ) -> Result<Self, RepoError> {
        let budget = match shared {
            Some(budget) => BudgetRef::Shared(budget),
            None => BudgetRef::Own(SpaceBudget::measure(repo)?),
        };
        Ok(Self {
            budget,
            path: &repo.path,
            claimed: std::cell::Cell::new(0),
            refused: std::cell::Cell::new(None),
        })
    }

    /// Makes sure `size` bytes are charged, taking more from the budget if needed. Refuses,
    /// taking nothing, when the budget does not hold them.
    pub(super) fn reserve(&self, size: u64) -> Result<(), RepoError> {
        let wanted = self.budget.blocks(size);
        let claimed = self.claimed.get();
        if wanted <= claimed {
            return Ok(());
        }
        let mut remaining = self.budget.remaining();
        if wanted - claimed > *remaining {
            let usable = *remaining + claimed;
            drop(remaining);
            self.refused.set(Some((size, usable)));
            return Err(self.no_space(size, usable));
        }
        *remaining -= wanted - claimed;
        self.claimed.set(wanted);
        Ok(())
    }

    fn no_space(&self, needed: u64, usable: u64) -> RepoError {
        RepoError::NoSpace {
            path: self.path.to_path_buf(),
            needed,
            usable,
            reserved: self.budget.reserved,
        }
    }

    /// The refusal, when a write failed because the budget was spent.
    pub(super) fn refusal(&self) -> Option<RepoError> {
        self.refused
            .get()
            .map(|(needed, usable)| self.no_space(needed, usable))
    }

    /// Settles the charge to what a finished file of `size` bytes takes and keeps it.
    pub(super) fn settle(self, size: u64) -> Result<(), RepoError> {
        let wanted = self.budget.blocks(size);
        let claimed = self.claimed.get();
        if wanted > claimed {
            self.reserve(size)?;
        } else {
            *self.budget.remaining() += claimed - wanted;
        }
        self.claimed.set(0);
        Ok(())
    }
}

impl Drop for SpaceCharge<'_> {
    fn drop(&mut self) {
        let claimed = self.claimed.get();
        if claimed > 0 {
            *self.budget.remaining() += claimed;
        }
    }
}

/// A temporary file that charges every byte written to it against a [`SpaceCharge`] first,
/// so a write stops at the budget instead of at a full filesystem.
pub(super) struct ChargedFile<'c, 'b> {
    file: File,
    charge: &'c SpaceCharge<'b>,
    written: u64,
}

impl<'c, 'b> ChargedFile<'c, 'b> {
    pub(super) fn new(file: File, charge: &'c SpaceCharge<'b>) -> Self {
        Self {
            file,
            charge,
            written: 0,
        }
    }

    /// The file and the bytes written through this wrapper, which is all it holds.
    pub(super) fn into_parts(self) -> (File, u64) {
        (self.file, self.written)
    }
}

impl Write for ChargedFile<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let total = self.written.saturating_add(buf.len() as u64);
        if self.charge.reserve(total).is_err() {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "the repository's free-space reserve would be reached",
            ));
        }
        let written = self.file.write(buf)?;
        self.written += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::RepoMode;

    #[test]
    fn a_refused_charge_is_given_back_and_a_settled_one_kept() {
        let dir = tempfile::tempdir().expect("temp dir");
        let repo = Repo::init(dir.path(), RepoMode::Archive, None).expect("init");
        let budget = &SpaceBudget::measure(&repo).expect("measure");
        let start = *budget.remaining();
        {
            let charge = SpaceCharge::begin(&repo, Some(budget)).expect("charge");
            charge.reserve(10 * budget.block_size).expect("reserve");
            assert_eq!(
                *budget.remaining(),
                start - budget.blocks(10 * budget.block_size)
            );
            assert!(charge.reserve(start.saturating_mul(2)).is_err());
            assert!(charge.refusal().is_some());
        }
        assert_eq!(*budget.remaining(), start, "a dropped charge keeps space");
        let charge = SpaceCharge::begin(&repo, Some(budget)).expect("charge");
        charge.reserve(1 << 20).expect("reserve");
        charge.settle(100).expect("settle");
        assert_eq!(*budget.remaining(), start - budget.blocks(100));
    }
}
