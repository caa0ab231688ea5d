//! Anti-downgrade: an update older than what the destination ref points at is refused unless
//! the person asks for it (libostree's `_ostree_compare_timestamps`, Flatpak's
//! `FLATPAK_ERROR_DOWNGRADE`).

use super::error::TrustError;
use crate::object::Checksum;

/// What the destination ref points at now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstalledCommit {
    /// The installed commit.
    pub checksum: Checksum,
    /// Commit timestamp, seconds since the Unix epoch.
    pub timestamp: u64,
}

/// How an accepted commit relates to the installed one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateKind {
    /// Nothing is installed under the ref yet.
    New,
    /// Newer than the installed commit.
    Upgrade,
    /// Another commit with the same timestamp; accepted, as libostree does.
    SameTime,
    /// The installed commit itself: nothing to pull or deploy (report it as up to date).
    UpToDate,
    /// Older than the installed commit, accepted because downgrades were allowed.
    Downgrade,
}

impl UpdateKind {
    /// Whether the ref must move.
    pub fn changes_ref(self) -> bool {
        !matches!(self, Self::UpToDate)
    }
}

/// Compares the new commit with the installed one.
pub fn check_timestamp(
    ref_name: &str,
    installed: Option<InstalledCommit>,
    new_commit: &Checksum,
    new_timestamp: u64,
    allow_downgrade: bool,
) -> Result<UpdateKind, TrustError> {
    let Some(current) = installed else {
        return Ok(UpdateKind::New);
    };
    if current.checksum == *new_commit {
        return Ok(UpdateKind::UpToDate);
    }
    if new_timestamp > current.timestamp {
        return Ok(UpdateKind::Upgrade);
    }
    if new_timestamp == current.timestamp {
        return Ok(UpdateKind::SameTime);
    }
    if allow_downgrade {
        return Ok(UpdateKind::Downgrade);
    }
    Err(TrustError::Downgrade {
        ref_name: ref_name.to_owned(),
        new_commit: *new_commit,
        new_timestamp,
        current_commit: current.checksum,
        current_timestamp: current.timestamp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn older_is_refused_unless_allowed() {
        let old = Checksum::from_array([1; 32]);
        let new = Checksum::from_array([2; 32]);
        let installed = Some(InstalledCommit {
            checksum: new,
            timestamp: 2_000,
        });
        assert!(matches!(
            check_timestamp("r", installed, &old, 1_000, false),
            Err(TrustError::Downgrade { .. })
        ));
        assert_eq!(
            check_timestamp("r", installed, &old, 1_000, true).expect("allowed"),
            UpdateKind::Downgrade
        );
        assert_eq!(
            check_timestamp("r", installed, &new, 2_000, false).expect("same"),
            UpdateKind::UpToDate
        );
        assert_eq!(
            check_timestamp("r", installed, &old, 2_000, false).expect("same time"),
            UpdateKind::SameTime
        );
        assert_eq!(
            check_timestamp("r", installed, &old, 3_000, false).expect("newer"),
            UpdateKind::Upgrade
        );
        assert_eq!(
            check_timestamp("r", None, &old, 1, false).expect("new"),
            UpdateKind::New
        );
    }
}
