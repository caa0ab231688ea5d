//! Why a pull failed, in words a person can act on.

use std::fmt;
use std::path::PathBuf;

use crate::object::ObjectId;
use crate::repo::RepoError;
use crate::schema::ProblemKind;
use crate::source::{Cause, FetchError};
use crate::trust::TrustError;

/// Why a pull failed.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The commit was refused: signature, bindings or anti-downgrade.
    #[error(transparent)]
    Trust(#[from] TrustError),

    /// A source offered a commit the trust rules refuse after it verified (anti-downgrade).
    #[error("the commit {source_name} offers is refused")]
    Offered {
        /// The source, as a person would name it.
        source_name: String,
        /// The refusal.
        #[source]
        error: Box<TrustError>,
    },

    /// The destination repository could not be read or written.
    #[error(transparent)]
    Destination(#[from] RepoError),

    /// The remote asked for is not configured in the destination repository.
    #[error(
        "remote '{remote}' is not configured in {}: add it first (ostree remote add \
         --repo={} {remote} URL), or pull with --mirror",
        repo.display(),
        repo.display()
    )]
    UnknownRemote {
        /// The remote asked for.
        remote: String,
        /// The destination repository.
        repo: PathBuf,
    },

    /// The collection ID asked for differs from the one of the remote asked for.
    #[error(
        "ref {ref_name} was asked for in collection {requested}, but remote '{remote}' has \
         collection ID {configured}: drop --collection-id or name the remote of that collection"
    )]
    CollectionMismatch {
        /// The ref being pulled.
        ref_name: String,
        /// The remote asked for.
        remote: String,
        /// The collection ID asked for.
        requested: String,
        /// The remote's configured collection ID.
        configured: String,
    },

    /// No source gives the ref a collection ID, so no remote can be matched to it.
    #[error(
        "ref {ref_name} has no collection ID on any source, so no remote of this machine can be \
         matched to it: pull it with --remote NAME, or give --collection-id ID"
    )]
    NoCollection {
        /// The ref being pulled.
        ref_name: String,
    },

    /// Sources offer the ref in more than one collection.
    #[error(
        "ref {ref_name} is offered in several collections ({}): choose one with --collection-id",
        collections.join(", ")
    )]
    AmbiguousCollection {
        /// The ref being pulled.
        ref_name: String,
        /// The collection IDs it is offered in.
        collections: Vec<String>,
    },

    /// No source offers the ref.
    #[error("{wanted} is not offered by {}", list_sources(sources))]
    NotOffered {
        /// The ref asked for, as a person would name it.
        wanted: String,
        /// The sources looked at.
        sources: Vec<String>,
    },

    /// Every source offering the ref was refused for it; the reasons of each.
    #[error("no usable commit of {wanted}: {}", reasons.join("; "))]
    NoUsableCommit {
        /// The ref asked for, as a person would name it.
        wanted: String,
        /// Why each source's commit was refused.
        reasons: Vec<String>,
    },

    /// An object the commit needs is on none of the sources.
    #[error(
        "{object}{} is on none of the sources ({}): the copy there is incomplete or damaged; use \
         another drive or peer",
        at_path(path),
        sources.join(", ")
    )]
    Missing {
        /// The missing object.
        object: ObjectId,
        /// The path of the file or directory in the commit's tree, when known.
        path: Option<String>,
        /// The sources searched.
        sources: Vec<String>,
    },

    /// No source could hand out an object the commit needs: each source, and why.
    #[error(
        "{object}{} could not be fetched from any source: {}",
        at_path(path),
        attempts.join("; ")
    )]
    Unfetchable {
        /// The object that could not be fetched.
        object: ObjectId,
        /// The path of the file or directory in the commit's tree, when known.
        path: Option<String>,
        /// Each source tried, and why it failed.
        attempts: Vec<String>,
    },

    /// A source handed out an object that failed verification, or could not be read:
    /// `reason` is the error storing it met, or a description.
    #[error("{object}{} cannot be pulled from {source_name}", at_path(path))]
    BadObject {
        /// The refused object.
        object: ObjectId,
        /// The path of the file or directory in the commit's tree, when known.
        path: Option<String>,
        /// The source that handed it out.
        source_name: String,
        /// The verification or read error.
        #[source]
        reason: Cause,
    },

    /// The destination cannot store an object as it is (for example xattrs in a
    /// bare-user-only repository).
    #[error("the destination cannot store {}", path.as_deref().unwrap_or("an object"))]
    Store {
        /// The path of the file or directory in the commit's tree, when known.
        path: Option<String>,
        /// Why the destination refused the object.
        #[source]
        error: RepoError,
    },

    /// A source failed outside of any one object.
    #[error(transparent)]
    Source(#[from] FetchError),

    /// The request names parts of the tree that are not directories of it.
    #[error(transparent)]
    Subpath(#[from] crate::object::InvalidSubpath),

    /// Every source was dropped during the pull.
    #[error("no source can be read any more: {}", reasons.join("; "))]
    NoSourceLeft {
        /// Why each source was dropped.
        reasons: Vec<String>,
    },

    /// The pull was cancelled; what it stored stays for the next pull.
    #[error("cancelled; the ref is unchanged, and pulling again resumes where this pull stopped")]
    Cancelled,
}

impl PullError {
    /// The kind listings and install results show for this failure.
    pub fn problem_kind(&self) -> ProblemKind {
        match self {
            Self::Trust(error) => error.problem_kind(),
            Self::Offered { error, .. } => error.problem_kind(),
            Self::BadObject { .. } | Self::Unfetchable { .. } => ProblemKind::Corrupt,
            Self::Missing { .. } | Self::NotOffered { .. } | Self::NoSourceLeft { .. } => {
                ProblemKind::Unavailable
            }
            Self::Source(FetchError::Unavailable { .. } | FetchError::Broken { .. }) => {
                ProblemKind::Unavailable
            }
            Self::Source(_) => ProblemKind::Unreadable,
            Self::NoCollection { .. } | Self::AmbiguousCollection { .. } => {
                ProblemKind::UnknownCollection
            }
            Self::UnknownRemote { .. } | Self::CollectionMismatch { .. } => {
                ProblemKind::UnknownCollection
            }
            Self::NoUsableCommit { .. }
            | Self::Destination(_)
            | Self::Store { .. }
            | Self::Subpath(_)
            | Self::Cancelled => ProblemKind::Other,
        }
    }

    /// Whether the pull stopped because it was cancelled (and failed for no other reason).
    pub fn is_cancelled(&self) -> bool {
        matches!(
            self,
            Self::Cancelled | Self::Destination(RepoError::Cancelled)
        )
    }
}

fn at_path(path: &Option<String>) -> String {
    match path {
        Some(path) => format!(" ({path})"),
        None => String::new(),
    }
}

fn list_sources(sources: &[String]) -> ListSources<'_> {
    ListSources(sources)
}

struct ListSources<'a>(&'a [String]);

impl fmt::Display for ListSources<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            [] => f.write_str("any source (none could be read)"),
            [one] => write!(f, "{one}"),
            many => write!(f, "any of {}", many.join(", ")),
        }
    }
}
