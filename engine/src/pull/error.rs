//! Why a pull failed, in words a person can act on.

use std::fmt;
use std::path::PathBuf;

use crate::object::ObjectId;
use crate::repo::RepoError;
use crate::schema::ProblemKind;
use crate::source::{Cause, FetchError};
use crate::trust::TrustError;

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The commit was refused: signature, bindings or anti-downgrade.
    #[error(transparent)]
    Trust(#[from] TrustError),

    /// A source offered a commit the trust rules refuse after it verified (anti-downgrade).
    #[error("{source_name} offers {error}")]
    Offered {
        source_name: String,
        #[source]
        error: Box<TrustError>,
    },

    /// The destination repository could not be read or written.
    #[error(transparent)]
    Destination(#[from] RepoError),

    #[error(
        "remote '{remote}' is not configured in {}: add it first (ostree remote add \
         --repo={} {remote} URL), or pull with --mirror",
        repo.display(),
        repo.display()
    )]
    UnknownRemote { remote: String, repo: PathBuf },

    #[error(
        "ref {ref_name} was asked for in collection {requested}, but remote '{remote}' has \
         collection ID {configured}: drop --collection-id or name the remote of that collection"
    )]
    CollectionMismatch {
        ref_name: String,
        remote: String,
        requested: String,
        configured: String,
    },

    #[error(
        "ref {ref_name} has no collection ID on any source, so no remote of this machine can be \
         matched to it: pull it with --remote NAME, or give --collection-id ID"
    )]
    NoCollection { ref_name: String },

    #[error(
        "ref {ref_name} is offered in several collections ({}): choose one with --collection-id",
        collections.join(", ")
    )]
    AmbiguousCollection {
        ref_name: String,
        collections: Vec<String>,
    },

    #[error("{wanted} is not offered by {}", list_sources(sources))]
    NotOffered {
        wanted: String,
        sources: Vec<String>,
    },

    /// Every source offering the ref was refused for it; the reasons of each.
    #[error("no usable commit of {wanted}: {}", reasons.join("; "))]
    NoUsableCommit {
        wanted: String,
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
        object: ObjectId,
        path: Option<String>,
        sources: Vec<String>,
    },

    /// No source could hand out an object the commit needs: each source, and why.
    #[error(
        "{object}{} could not be fetched from any source: {}",
        at_path(path),
        attempts.join("; ")
    )]
    Unfetchable {
        object: ObjectId,
        path: Option<String>,
        attempts: Vec<String>,
    },

    /// A source handed out an object that failed verification, or could not be read:
    /// `reason` is the error storing it met, or a description.
    #[error("{object}{} from {source_name}: {reason}", at_path(path))]
    BadObject {
        object: ObjectId,
        path: Option<String>,
        source_name: String,
        #[source]
        reason: Cause,
    },

    /// The destination cannot store an object as it is (for example xattrs in a
    /// bare-user-only repository).
    #[error("{error}{}", at_path(path))]
    Store {
        path: Option<String>,
        #[source]
        error: RepoError,
    },

    /// A source failed outside of any one object.
    #[error(transparent)]
    Source(#[from] FetchError),

    /// Every source was dropped during the pull.
    #[error("no source can be read any more: {}", reasons.join("; "))]
    NoSourceLeft { reasons: Vec<String> },

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
            Self::Source(FetchError::Unavailable { .. }) => ProblemKind::Unavailable,
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
            | Self::Cancelled => ProblemKind::Other,
        }
    }

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
