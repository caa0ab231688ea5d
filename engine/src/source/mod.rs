//! Where objects come from: drives now, nearby computers and upstream servers, behind one
//! trait so the pull and the resolver treat them alike.
//!
//! A source hands out **unverified** bytes. Nothing here checks a checksum or a signature:
//! the pull re-hashes every object before storing it, and the trust module decides which
//! commits count. That keeps each source small and makes it impossible for one to skip a check.

pub mod drive;
pub mod http;

use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::cancel::CancelToken;
use crate::object::{Checksum, FileHeader, ObjectId, ObjectKind};
use crate::schema::{SourceInfo, SourceKind};

pub use drive::{open_drive, DriveSource, OpenedDrive};
pub use http::HttpSource;

/// How a source ranks before a pull starts: drives before nearby computers before upstream.
/// The summary's timestamp is unsigned, so it only orders sources that offer the same commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceRank {
    /// Drive, computer nearby or upstream server.
    pub kind: SourceKind,
    /// Last-modified time of the source's summary, when it has one. Newer is preferred.
    pub summary_timestamp: Option<u64>,
}

/// What can cut one fetch short: the operation being cancelled, or the pull abandoning this
/// request (another source delivered the object first, or this one stalled). Sources check
/// it while they wait, so no request outlives it by more than [`Interrupt::POLL`].
#[derive(Debug, Clone)]
pub struct Interrupt {
    cancel: Option<CancelToken>,
    abandoned: Option<Arc<AtomicBool>>,
    /// When bytes last arrived for this request, in milliseconds after `epoch`.
    activity: Arc<AtomicU64>,
    epoch: Instant,
}

impl Default for Interrupt {
    fn default() -> Self {
        Self::never()
    }
}

impl Interrupt {
    /// How often a waiting fetch looks at its interrupt.
    pub const POLL: std::time::Duration = std::time::Duration::from_millis(100);

    /// Nothing interrupts the fetch (listings, tests).
    pub fn never() -> Self {
        Self {
            cancel: None,
            abandoned: None,
            activity: Arc::new(AtomicU64::new(0)),
            epoch: Instant::now(),
        }
    }

    /// The fetch stops when `cancel` is tripped.
    pub fn on_cancel(cancel: &CancelToken) -> Self {
        Self {
            cancel: Some(cancel.clone()),
            ..Self::never()
        }
    }

    /// The fetch stops when `cancel` is tripped or `abandoned` is set.
    pub fn on_cancel_or_abandon(cancel: &CancelToken, abandoned: Arc<AtomicBool>) -> Self {
        Self {
            cancel: Some(cancel.clone()),
            abandoned: Some(abandoned),
            ..Self::never()
        }
    }

    /// Whether the operation was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.as_ref().is_some_and(CancelToken::is_cancelled)
    }

    /// Whether the pull gave up on this request (another source delivered it, or this one stalled).
    pub fn is_abandoned(&self) -> bool {
        self.abandoned
            .as_ref()
            .is_some_and(|flag| flag.load(Ordering::Relaxed))
    }

    /// Whether the fetch should stop now.
    pub fn is_interrupted(&self) -> bool {
        self.is_cancelled() || self.is_abandoned()
    }

    /// Bytes arrived: the request is alive.
    pub fn note_activity(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.activity.store(now.max(1), Ordering::Relaxed);
    }

    /// How long since bytes last arrived (or since `started`, when none has yet).
    pub fn silent_for(&self, started: Instant) -> std::time::Duration {
        let last = self.activity.load(Ordering::Relaxed);
        if last == 0 {
            return started.elapsed();
        }
        let last = self.epoch + std::time::Duration::from_millis(last);
        last.max(started).elapsed()
    }

    /// The error a source returns when this interrupt stopped it.
    pub fn error(&self, source: &SourceInfo) -> FetchError {
        FetchError::Interrupted {
            source_name: source_name(source),
            cancelled: self.is_cancelled(),
        }
    }
}

/// A ref a source offers, and the commit it points at there.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OfferedRef {
    /// None when the source's repository has no collection ID for this ref.
    pub collection_id: Option<String>,
    /// The ref, e.g. `app/org.example.App/x86_64/stable`.
    pub ref_name: String,
    /// The commit the source's ref points at.
    pub commit: Checksum,
}

/// A content object as a source holds it: its header and a stream of the file's bytes
/// (nothing for a symlink).
pub struct FetchedContent {
    /// The object's header: type, size, mode, owner, xattrs and symlink target.
    pub header: FileHeader,
    /// The file's bytes.
    pub body: Box<dyn Read + Send>,
}

/// A content object exactly as an archive repository stores it (`.filez`: header and raw
/// deflate), for copying into another archive repository without recompressing.
pub struct FetchedArchive {
    /// Its size in bytes, when the source knows it.
    pub size: Option<u64>,
    /// The `.filez` bytes.
    pub stream: Box<dyn Read + Send>,
}

/// A source's summary file and its detached signatures (`summary.sig`), unverified.
pub struct FetchedSummary {
    /// The summary's bytes.
    pub summary: Vec<u8>,
    /// The bytes of `summary.sig`, if the source has it.
    pub signatures: Option<Vec<u8>>,
}

/// Why a source failed: the error behind it (a repository error on a drive), or a
/// description (`String`s convert) when there is no error to keep.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

pub use crate::causes::Because;

/// Why a source could not hand out something. The message names the source; what failed,
/// and why, are its causes (see [`crate::causes`]).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// This source does not have the object. Another source may; keep using this one.
    #[error("{object} is not on {source_name}")]
    NotFound {
        /// The object asked for.
        object: String,
        /// The source, as messages name it.
        source_name: String,
    },
    /// The source as a whole failed (drive removed, connection refused, no summary).
    /// It is not asked again during this operation.
    #[error("{source_name} is unavailable")]
    Unavailable {
        /// The source, as messages name it.
        source_name: String,
        /// Why it is unavailable.
        #[source]
        reason: Cause,
    },
    /// The answer broke off midway: the connection closed or reset in the body. The source
    /// may well answer the next request (a server may close a kept-alive connection as a
    /// response goes out); a pull asks again, and counts the source gone only when it keeps
    /// happening.
    #[error("{source_name}: the connection broke")]
    Broken {
        /// The source, as messages name it.
        source_name: String,
        /// What was being read, and the transport's error.
        #[source]
        reason: Cause,
    },
    /// The source is serving other computers and asked this one to come back later (HTTP
    /// 503 when a pull starts). Not a fault: it is asked again on a later look.
    #[error("{source_name} is busy sharing with other computers")]
    Busy {
        /// The source, as messages name it.
        source_name: String,
    },
    /// Something the source holds could not be read or is malformed.
    #[error("{source_name}")]
    Failed {
        /// The source, as messages name it.
        source_name: String,
        /// What could not be read, or what is malformed.
        #[source]
        reason: Cause,
    },
    /// The fetch was cut short by its [`Interrupt`]: cancelled, or abandoned by the pull.
    #[error("{source_name}: {}", if *cancelled { "cancelled" } else { "abandoned" })]
    Interrupted {
        /// The source, as messages name it.
        source_name: String,
        /// True when cancelled; false when the pull abandoned the request.
        cancelled: bool,
    },
}

impl FetchError {
    /// The source does not have `object`.
    pub fn not_found(object: impl std::fmt::Display, source: &SourceInfo) -> Self {
        Self::NotFound {
            object: object.to_string(),
            source_name: source_name(source),
        }
    }

    /// `reason` is the error behind the failure, or a description when there is none.
    pub fn unavailable(source: &SourceInfo, reason: impl Into<Cause>) -> Self {
        Self::Unavailable {
            source_name: source_name(source),
            reason: reason.into(),
        }
    }

    /// `reason` is the transport's error, with what was being read.
    pub fn broken(source: &SourceInfo, reason: impl Into<Cause>) -> Self {
        Self::Broken {
            source_name: source_name(source),
            reason: reason.into(),
        }
    }

    /// `reason` is the error behind the failure, or a description when there is none.
    pub fn failed(source: &SourceInfo, reason: impl Into<Cause>) -> Self {
        Self::Failed {
            source_name: source_name(source),
            reason: reason.into(),
        }
    }
}

/// How messages name a source: its label and location, e.g. `KINGSTON (/media/k/.ostree/repo)`.
pub fn source_name(source: &SourceInfo) -> String {
    source.name()
}

/// Largest directory listing [`holds_parts`] reads: about 100,000 entries.
const MAX_PART_LISTING: u64 = 8 * 1024 * 1024;

/// Whether `source` holds what a pull of `parts` of the tree rooted at `root` needs, at
/// least at the top: the listings leading to each part, and the part's own listing (or file).
/// For a commit the source holds only partly (a drive carrying some languages of a locale
/// extension). Listings read here are hashed against their names before they are parsed;
/// a part the tree does not have needs nothing.
pub fn holds_parts(
    source: &dyn Source,
    root: &Checksum,
    parts: &crate::object::Subdirs,
    interrupt: &Interrupt,
) -> Result<bool, FetchError> {
    let listing = |tree: &Checksum| -> Result<Option<crate::object::DirTree>, FetchError> {
        // The directories on the way to a language are small; a larger one is not read.
        let object = ObjectId::new(*tree, ObjectKind::DirTree);
        if source
            .metadata_size(object)
            .is_some_and(|size| size > MAX_PART_LISTING)
        {
            return Ok(None);
        }
        let bytes = match source.fetch_metadata(ObjectKind::DirTree, tree, interrupt) {
            Ok(bytes) => bytes,
            Err(FetchError::NotFound { .. }) => return Ok(None),
            Err(error) => return Err(error),
        };
        if bytes.len() as u64 > MAX_PART_LISTING
            || crate::object::metadata_checksum(&bytes) != *tree
        {
            return Ok(None);
        }
        Ok(crate::object::DirTree::parse(&bytes).ok())
    };
    let held = |object: ObjectId| -> Result<bool, FetchError> {
        match source.has_object(object) {
            Some(held) => Ok(held),
            None if object.kind == ObjectKind::DirTree => Ok(listing(&object.checksum)?.is_some()),
            // A file is fetched when it is pulled; a source that cannot tell is believed.
            None => Ok(true),
        }
    };
    for part in parts.paths() {
        let mut tree = *root;
        let mut components = part.split('/').filter(|c| !c.is_empty()).peekable();
        while let Some(name) = components.next() {
            let Some(parsed) = listing(&tree)? else {
                return Ok(false);
            };
            let last = components.peek().is_none();
            if let Some(dir) = parsed.dirs.iter().find(|dir| dir.name == name) {
                if last && !held(ObjectId::new(dir.tree, ObjectKind::DirTree))? {
                    return Ok(false);
                }
                tree = dir.tree;
            } else if let Some(file) = parsed.files.iter().find(|file| file.name == name) {
                if last && !held(ObjectId::new(file.checksum, ObjectKind::File))? {
                    return Ok(false);
                }
                break;
            } else {
                // Not in this tree: nothing of it to pull.
                break;
            }
        }
    }
    Ok(true)
}

/// A place objects can be read from.
pub trait Source: Send + Sync {
    /// What the source is, for listings and messages.
    fn info(&self) -> &SourceInfo;

    /// How the scheduler ranks it (kind and summary freshness).
    fn rank(&self) -> SourceRank;

    /// The refs it offers. For drives: mirrors and local heads; for servers: its summary.
    fn refs(&self) -> Result<Vec<OfferedRef>, FetchError>;

    /// The raw bytes of a metadata object (commit, dirtree or dirmeta), unverified.
    fn fetch_metadata(
        &self,
        kind: ObjectKind,
        checksum: &Checksum,
        interrupt: &Interrupt,
    ) -> Result<Vec<u8>, FetchError>;

    /// A commit's detached metadata (its signatures), if the source has any.
    fn fetch_commitmeta(
        &self,
        commit: &Checksum,
        interrupt: &Interrupt,
    ) -> Result<Option<Vec<u8>>, FetchError>;

    /// A content object, unverified. Reading its body honours `interrupt` too.
    fn fetch_content(
        &self,
        checksum: &Checksum,
        interrupt: &Interrupt,
    ) -> Result<FetchedContent, FetchError>;

    /// Whether the source holds the commit's whole closure. A drive may hold a partial
    /// commit (`state/<commit>.commitpartial`); such a commit serves only refs installed in
    /// part whose parts it holds ([`holds_parts`]).
    fn commit_is_complete(&self, commit: &Checksum) -> Result<bool, FetchError>;

    /// The size of a stored metadata object, when the source can tell without fetching it;
    /// readers use it to plan memory. `None`: unknown (plan for the largest allowed).
    fn metadata_size(&self, _object: ObjectId) -> Option<u64> {
        None
    }

    /// Whether the source has an object, when it can tell cheaply (without fetching it).
    /// `None` means it cannot tell; the caller then fetches and sees.
    fn has_object(&self, _object: ObjectId) -> Option<bool> {
        None
    }

    /// A content object in its archived form (`.filez`), when the source stores it so and
    /// handing it out costs nothing extra. `Ok(None)`: use [`Source::fetch_content`].
    fn fetch_archived_content(
        &self,
        _checksum: &Checksum,
        _interrupt: &Interrupt,
    ) -> Result<Option<FetchedArchive>, FetchError> {
        Ok(None)
    }

    /// The source's summary and `summary.sig`, when it has a summary, so a remote that asks
    /// for signed summaries can check them. `Ok(None)`: no summary.
    fn fetch_summary(&self) -> Result<Option<FetchedSummary>, FetchError> {
        Ok(None)
    }

    /// The filesystem the source reads from (its `st_dev`), for sources on this machine.
    /// `None` for network sources.
    fn filesystem(&self) -> Option<u64> {
        None
    }

    /// A static delta file (`deltas/…/superblock` or a part), at most `max` bytes,
    /// unverified. `Ok(None)`: the source does not have it, or serves no deltas.
    fn fetch_delta_file(
        &self,
        _relative_path: &str,
        _max: u64,
        _interrupt: &Interrupt,
    ) -> Result<Option<Vec<u8>>, FetchError> {
        Ok(None)
    }
}
