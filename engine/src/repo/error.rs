//! Errors of repository operations. Each says what failed, where, and what to do.

use std::io;
use std::path::PathBuf;

use crate::object::{Checksum, FormatError, InvalidName, ObjectId};

use super::RepoMode;

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("{path} is not an OSTree repository: {reason}")]
    NotARepo { path: PathBuf, reason: String },

    /// `reason` is the read error (the file is not text, or too large), or what is wrong in
    /// it.
    #[error("invalid repository config {path}: {reason}; fix or recreate the file")]
    Config {
        path: PathBuf,
        #[source]
        reason: Box<dyn std::error::Error + Send + Sync>,
    },

    #[error("{path}: unsupported {reason}")]
    Unsupported { path: PathBuf, reason: String },

    #[error("object {object} is missing from {repo}")]
    Missing { repo: PathBuf, object: ObjectId },

    /// `source` is what is wrong with the object: a parse error, a read error, or a
    /// description.
    #[error("object {object} in {repo} is corrupt: {source}; remove it and pull again")]
    Corrupt {
        repo: PathBuf,
        object: ObjectId,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    #[error(
        "object {object} does not match its name: its content hashes to {actual}; \
         {source_name} is corrupt or has been tampered with"
    )]
    ChecksumMismatch {
        object: ObjectId,
        actual: Checksum,
        /// Where the bytes came from, as the caller names it (a path, a URL); "the source"
        /// until [`RepoError::with_source`] names it.
        source_name: String,
    },

    #[error("cannot read the content of {object} from {source_name}: {source}")]
    ReadContent {
        object: ObjectId,
        source_name: String,
        #[source]
        source: io::Error,
    },

    #[error("cannot store {object} in the {mode} repository {repo}: {reason}")]
    Unrepresentable {
        repo: PathBuf,
        object: ObjectId,
        mode: RepoMode,
        reason: String,
    },

    #[error("invalid object {object}: {source}")]
    Format {
        object: ObjectId,
        #[source]
        source: FormatError,
    },

    /// `reason` is the read error, or what is wrong with the file.
    #[error("bad ref file {path}: {reason}")]
    BadRef {
        path: PathBuf,
        #[source]
        reason: Box<dyn std::error::Error + Send + Sync>,
    },

    #[error(transparent)]
    InvalidName(#[from] InvalidName),

    #[error("{mode} repositories cannot be written here: {reason}")]
    ModeMismatch { mode: RepoMode, reason: String },

    #[error(
        "timed out after {seconds} s waiting for the {kind} lock of {path}; another ostree, \
         flatpak or Ferry process is using the repository, try again when it is done"
    )]
    LockTimeout {
        path: PathBuf,
        kind: &'static str,
        seconds: u64,
    },

    #[error(
        "not enough free space for {path}: {needed} bytes needed, {usable} usable after \
         keeping the {reserved} bytes the repository reserves; free some space"
    )]
    NoSpace {
        path: PathBuf,
        needed: u64,
        usable: u64,
        reserved: u64,
    },

    #[error("cancelled")]
    Cancelled,
}

impl RepoError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: impl Into<io::Error>,
    ) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source: source.into(),
        }
    }

    /// Names where the bytes of a refused object came from, for errors that concern the
    /// source rather than this repository.
    pub fn with_source(self, name: &str) -> Self {
        match self {
            Self::ChecksumMismatch { object, actual, .. } => Self::ChecksumMismatch {
                object,
                actual,
                source_name: name.to_owned(),
            },
            Self::ReadContent { object, source, .. } => Self::ReadContent {
                object,
                source_name: name.to_owned(),
                source,
            },
            other => other,
        }
    }

    /// True when the error is a missing object (the caller may fetch it elsewhere).
    pub fn is_missing(&self) -> bool {
        matches!(self, Self::Missing { .. })
    }
}
