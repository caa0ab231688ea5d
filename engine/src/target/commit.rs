//! What a target needs from an installed commit object: its timestamp and `version`.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::object::{Checksum, Commit, MAX_METADATA_SIZE as MAX_COMMIT_SIZE};

/// The facts of an installed commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CommitSummary {
    pub timestamp: u64,
    pub version: Option<String>,
}

/// Where a commit object lives; the same in every repository mode.
pub(crate) fn commit_path(repo: &Path, commit: &Checksum) -> PathBuf {
    let hex = commit.to_hex();
    repo.join("objects")
        .join(&hex[..2])
        .join(format!("{}.commit", &hex[2..]))
}

/// Reads the commit object from `repo`. Errors say what went wrong, without the path (the
/// caller names it).
pub(crate) fn read_commit(repo: &Path, commit: &Checksum) -> Result<CommitSummary, String> {
    let path = commit_path(repo, commit);
    let file = std::fs::File::open(&path).map_err(|error| error.to_string())?;
    let mut bytes = Vec::new();
    file.take(MAX_COMMIT_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| error.to_string())?;
    if bytes.len() as u64 > MAX_COMMIT_SIZE {
        return Err(format!("larger than {MAX_COMMIT_SIZE} bytes"));
    }
    parse_commit(&bytes)
}

fn parse_commit(bytes: &[u8]) -> Result<CommitSummary, String> {
    let commit = Commit::parse(bytes).map_err(|error| crate::causes::text(&error))?;
    Ok(CommitSummary {
        timestamp: commit.timestamp,
        version: commit.version().map(str::to_owned),
    })
}
