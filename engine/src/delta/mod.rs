//! OSTree static deltas, read and applied in libostree's format.
//!
//! A delta from commit A to B (or from nothing to B) lives at
//! `deltas/<b64(A)[0:2]>/<b64(A)[2:]>-<b64(B)>/` (from scratch: `deltas/<b64(B)[0:2]>/<b64(B)[2:]>/`),
//! with checksums in OSTree's modified base64 (`/` written `_`, no padding). It holds a
//! `superblock` (metadata, from, to, the whole new commit, part headers, fallback objects)
//! and numbered parts, unless the parts are inlined in the superblock's metadata.
//!
//! A part is a compression byte (`0` none, `x` xz) and `(a(uuu)aa(ayay)ayay)`: modes,
//! xattrs, payload and an operation stream that creates, in order, the objects its header
//! names. Every object goes through the repository's normal write path, which hashes it
//! against its name, so a delta can create nothing an object pull would not.
//!
//! `layout` names the files, `superblock` reads a superblock, `apply` opens and applies a
//! part (`frame` and `bspatch` serve it), and `write` generates deltas.

mod apply;
mod bspatch;
mod frame;
mod layout;
mod superblock;
pub mod write;

use crate::object::Checksum;
use crate::repo::RepoError;

pub use apply::{apply_part, open_part, Applied};
pub use layout::{
    delta_dir, delta_name, index_path, listed_deltas, part_path, superblock_path, Listed,
    MAX_INDEX_SIZE, SUMMARY_INDEXED_DELTAS_KEY, SUMMARY_STATIC_DELTAS_KEY,
};
pub use superblock::{Fallback, PartHeader, Superblock, SuperblockFile, MAX_SUPERBLOCK_SIZE};

/// Largest part, compressed or not, and largest object a part creates. libostree cuts parts
/// at 32 MiB by default, but never splits a file, so this leaves room for big files; a part
/// held in memory while it is applied costs at most about three times this. Beyond it the
/// objects are pulled one by one instead.
pub const MAX_PART_SIZE: u64 = 256 * 1024 * 1024;

/// Most parts, fallbacks or objects of one part a delta may list.
const MAX_ENTRIES: usize = 1_000_000;

/// Why a static delta could not be read or applied.
#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    /// The delta's structure is not what OSTree writes; what is wrong.
    #[error("malformed static delta: {0}")]
    Malformed(&'static str),
    /// A list in the delta is longer than Ferry reads.
    #[error("static delta lists too many entries in {what} ({count})")]
    TooMany {
        /// Which list.
        what: &'static str,
        /// Its length.
        count: usize,
    },
    /// A part is larger than Ferry reads.
    #[error("static delta part {index} is {size} bytes, more than the {max} allowed")]
    TooLarge {
        /// The part's index in the superblock.
        index: usize,
        /// The part's size.
        size: u64,
        /// The largest size allowed.
        max: u64,
    },
    /// A part does not hash to the checksum the superblock lists.
    #[error("static delta part {index} hashes to {actual}, not {expected}")]
    PartChecksum {
        /// The part's index in the superblock.
        index: usize,
        /// The checksum the superblock lists.
        expected: Checksum,
        /// The checksum of the bytes read.
        actual: Checksum,
    },
    /// The commit in the superblock does not hash to the delta's target.
    #[error("the superblock's commit hashes to {actual}, not the delta's target {expected}")]
    CommitMismatch {
        /// The delta's target commit.
        expected: Checksum,
        /// The checksum of the commit bytes in the superblock.
        actual: Checksum,
    },
    /// A part in a format version Ferry does not read.
    #[error("static delta part {index} has unsupported version {version}")]
    PartVersion {
        /// The part's index in the superblock.
        index: usize,
        /// The part's version.
        version: u32,
    },
    /// A part compressed with a method other than none (0) or xz (`x`).
    #[error("static delta part uses unknown compression {0:#04x}")]
    Compression(u8),
    /// A part's compressed bytes do not decompress.
    #[error("static delta part does not decompress")]
    Decompress(#[source] std::io::Error),
    /// A part being written could not be compressed.
    #[error("cannot compress a static delta part")]
    Compress(#[source] std::io::Error),
    /// A bsdiff patch between two versions of a file could not be made.
    #[error("cannot make a bsdiff patch")]
    Bsdiff(#[source] std::io::Error),
    /// An operation of a part cannot be carried out.
    #[error("static delta operation {op} at {position}: {reason}")]
    Op {
        /// The operation's code.
        op: char,
        /// Its offset in the part's operation stream.
        position: usize,
        /// Why it cannot be carried out.
        reason: &'static str,
    },
    /// A bsdiff patch in a part is malformed; what is wrong.
    #[error("bsdiff patch in static delta: {0}")]
    Bspatch(&'static str),
    /// Reading or writing the repository failed.
    #[error(transparent)]
    Repo(#[from] RepoError),
}

fn checksum(what: &'static str, bytes: &[u8]) -> Result<Checksum, DeltaError> {
    Checksum::from_slice(bytes).map_err(|_| DeltaError::Malformed(what))
}
