//! What a target needs from an installed commit object: its timestamp and `version`.

use std::io::Read;
use std::path::{Path, PathBuf};

use gvariant::aligned_bytes::copy_to_align;
use gvariant::{gv, Marker, Structure};

use crate::object::Checksum;

/// libostree's limit on metadata objects (`OSTREE_MAX_METADATA_SIZE`).
const MAX_COMMIT_SIZE: u64 = 128 * 1024 * 1024;

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
    // The smallest valid commit: empty metadata, parent, related, subject, body, a timestamp
    // and two 32-byte checksums, plus framing.
    if bytes.len() < 8 + 64 {
        return Err(format!(
            "only {} bytes, too short for a commit",
            bytes.len()
        ));
    }
    let aligned = copy_to_align(bytes);
    let commit = gv!("(a{sv}aya(say)sstayay)").cast(aligned.as_ref());
    let (metadata, _parent, _related, _subject, _body, timestamp, root_tree, root_meta) =
        commit.to_tuple();
    if root_tree.len() != Checksum::LEN || root_meta.len() != Checksum::LEN {
        return Err("its root tree checksums are malformed: the object is damaged".to_owned());
    }
    let mut version = None;
    for entry in metadata {
        let (key, value) = entry.to_tuple();
        if key.to_str() == "version" {
            version = value.get(gv!("s")).map(|s| s.to_str().to_owned());
            break;
        }
    }
    Ok(CommitSummary {
        timestamp: u64::from_be(*timestamp),
        version,
    })
}
