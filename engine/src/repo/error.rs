//! Errors of repository operations. Each says what failed, where, and what to do; the
//! underlying error, when there is one, is its source (see [`crate::causes`]).

use std::io;
use std::path::PathBuf;

use crate::object::{Checksum, FormatError, InvalidName, ObjectId};

use super::RepoMode;

/// Why a repository operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// A file or directory operation failed.
    #[error("cannot {action} {path}")]
    Io {
        /// What was being done, as a verb phrase ("open", "rename").
        action: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// The path is not an OSTree repository.
    #[error("{path} is not an OSTree repository: {reason}")]
    NotARepo {
        /// The path that was opened.
        path: PathBuf,
        /// What is missing or wrong.
        reason: String,
    },

    /// `reason` is the read error (the file is not text, or too large), or what is wrong in
    /// it.
    #[error("invalid repository config {path}; fix or recreate the file")]
    Config {
        /// The config file.
        path: PathBuf,
        /// The read or parse error.
        #[source]
        reason: Box<dyn std::error::Error + Send + Sync>,
    },

    /// The repository uses a feature Ferry does not handle.
    #[error("{path}: unsupported {reason}")]
    Unsupported {
        /// The repository or file concerned.
        path: PathBuf,
        /// The unsupported feature.
        reason: String,
    },

    /// An object the operation needs is not in the repository.
    #[error("object {object} is missing from {repo}")]
    Missing {
        /// The repository searched.
        repo: PathBuf,
        /// The missing object.
        object: ObjectId,
    },

    /// `source` is what is wrong with the object: a parse error, a read error, or a
    /// description.
    #[error("object {object} in {repo} is corrupt; remove it and pull again")]
    Corrupt {
        /// The repository holding the object.
        repo: PathBuf,
        /// The corrupt object.
        object: ObjectId,
        /// What is wrong with it.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// An object's bytes hash to another checksum than its name.
    #[error(
        "object {object} does not match its name: its content hashes to {actual}; \
         {source_name} is corrupt or has been tampered with"
    )]
    ChecksumMismatch {
        /// The object as named.
        object: ObjectId,
        /// The checksum its bytes actually have.
        actual: Checksum,
        /// Where the bytes came from, as the caller names it (a path, a URL); "the source"
        /// until [`RepoError::with_source`] names it.
        source_name: String,
    },

    /// The content of an object could not be read from where it came from.
    #[error("cannot read the content of {object} from {source_name}")]
    ReadContent {
        /// The object being read.
        object: ObjectId,
        /// Where its content came from (a path, a URL).
        source_name: String,
        /// The read error.
        #[source]
        source: io::Error,
    },

    /// The repository's mode cannot hold the object as it is (for example xattrs in bare-user-only).
    #[error("cannot store {object} in the {mode} repository {repo}: {reason}")]
    Unrepresentable {
        /// The destination repository.
        repo: PathBuf,
        /// The object that cannot be stored.
        object: ObjectId,
        /// The destination repository's mode.
        mode: RepoMode,
        /// What the mode cannot hold.
        reason: String,
        /// The error writing met, when the refusal came from the system.
        #[source]
        source: Option<io::Error>,
    },

    /// An object's bytes do not parse as its type.
    #[error("invalid object {object}")]
    Format {
        /// The object.
        object: ObjectId,
        /// The parse error.
        #[source]
        source: FormatError,
    },

    /// `reason` is the read error, or what is wrong with the file.
    #[error("bad ref file {path}")]
    BadRef {
        /// The ref file.
        path: PathBuf,
        /// The read or parse error.
        #[source]
        reason: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A ref, remote or object name that is not valid.
    #[error(transparent)]
    InvalidName(#[from] InvalidName),

    /// The operation cannot write a repository of this mode.
    #[error("{mode} repositories cannot be written here: {reason}")]
    ModeMismatch {
        /// The repository's mode.
        mode: RepoMode,
        /// Why this operation cannot write it.
        reason: String,
    },

    /// Another process held the repository lock for too long.
    #[error(
        "timed out after {seconds} s waiting for the {kind} lock of {path}; another ostree, \
         flatpak or Ferry process is using the repository, try again when it is done"
    )]
    LockTimeout {
        /// The repository.
        path: PathBuf,
        /// Which lock: "shared" or "exclusive".
        kind: &'static str,
        /// How long Ferry waited.
        seconds: u64,
    },

    /// Writing would leave less free space than the repository reserves (`min-free-space-*`).
    #[error(
        "not enough free space for {path}: {needed} bytes needed, {usable} usable after \
         keeping the {reserved} bytes the repository reserves; free some space"
    )]
    NoSpace {
        /// The repository.
        path: PathBuf,
        /// Bytes the write needs.
        needed: u64,
        /// Bytes free on the filesystem beyond the reserve.
        usable: u64,
        /// Bytes the repository keeps free.
        reserved: u64,
    },

    /// The operation was cancelled through its [`crate::cancel::CancelToken`].
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
