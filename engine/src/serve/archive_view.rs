//! A bare, bare-user or bare-user-only repository served as if it were an archive one.
//!
//! Peers get a generated `config` (`mode=archive-z2` and the collection ID) and a generated,
//! unsigned summary listing the advertised refs ([`super::allowed`]); commits, dirtrees,
//! dirmetas and detached metadata are stored alike in every mode and are served as they
//! are; content objects are converted on request into `.filez` (the archive header, then a
//! raw deflate stream), large ones through the on-disk [`ConvertCache`]. Every object outside
//! the closure of the advertised commits is refused.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use hyper::body::Bytes;

use super::allowed::{AllowedIndex, Fingerprint, FingerprintError, IndexError};
use super::cache::{CachedObject, ConvertCache, SourceStamp};
use crate::object::stored;
use crate::object::summary::{
    build_summary, collection_map_value, SummaryEntry, COLLECTION_ID_KEY, COLLECTION_MAP_KEY,
    COMMIT_TIMESTAMP_KEY, COMMIT_VERSION_KEY, LAST_MODIFIED_KEY, PARTIAL_COLLECTION_MAP_KEY,
};
use crate::object::{Checksum, Metadata, MetadataValue, ObjectId, ObjectKind};
use crate::repo::{CollectionRef, Repo, RepoConfig, RepoMode};

/// Content objects at least this large are framed while they are sent (or, with a cache,
/// go through it); smaller ones are converted in memory, in one hand-off.
pub const CACHE_MIN: u64 = 64 * 1024;
/// The largest object converted in memory when the cache cannot take it.
const MEMORY_MAX: u64 = 64 * 1024 * 1024;

// Stored deflate blocks ([`stored`]), not level 1. Measured with flate2 (zlib-rs), one core:
// on 123 MiB of /usr/bin, stored 958 MB/s vs level 1 140 MB/s (37.7 % of the size); on random
// bytes like the bench tree's, 816 vs 42 MB/s (level 1 saves nothing). Four clients at once
// must stay under one core, and a LAN link moves the extra bytes faster than level 1 saves
// them.

/// Where the view finds what decides the advertised refs, beyond the repository itself.
#[derive(Debug, Clone, Default)]
pub struct ViewOptions {
    /// A remotes config directory read with the repository's config (`/etc/ostree/remotes.d`).
    pub remotes_dir: Option<PathBuf>,
    /// The sysroot whose deployed commits are served too.
    pub sysroot: Option<PathBuf>,
    /// The Flatpak installation whose deployed commits are served too (the repository is
    /// its `repo`).
    pub installation: Option<PathBuf>,
}

impl ViewOptions {
    /// For a repository named by path: libostree reads `/etc/ostree/remotes.d` for the
    /// system repository only. The repository of a Flatpak installation (`DIR/repo` beside
    /// `DIR/app` or `DIR/runtime`) is served with what the installation deployed.
    pub fn for_repo(repo: &Path) -> Self {
        Self {
            remotes_dir: crate::target::is_system_repo(repo)
                .then(|| PathBuf::from("/etc/ostree/remotes.d")),
            sysroot: None,
            installation: flatpak_installation_of(repo),
        }
    }
}

/// The Flatpak installation whose repository `repo` is, when it looks like one.
fn flatpak_installation_of(repo: &Path) -> Option<PathBuf> {
    let installation = repo.parent()?;
    let deploys = ["app", "runtime"]
        .iter()
        .any(|kind| installation.join(kind).is_dir());
    (repo.file_name() == Some(std::ffi::OsStr::new("repo")) && deploys)
        .then(|| installation.to_path_buf())
}

/// What is served now; replaced whole when the refs change.
#[derive(Debug)]
pub struct Snapshot {
    /// What the snapshot was built from; a different one means a rebuild.
    pub fingerprint: Fingerprint,
    /// The repository's `config` as served: archive mode.
    pub config: Bytes,
    /// The summary as served, listing the advertised refs.
    pub summary: Bytes,
    /// The objects the advertised refs reach, which alone are served.
    pub allowed: AllowedIndex,
    /// The refs the summary lists.
    pub listed: Vec<(CollectionRef, Checksum)>,
    /// The refs the summary lists apart, as held in part (deployed with some languages).
    pub listed_in_part: Vec<(CollectionRef, Checksum)>,
}

/// A converted content object.
pub enum Converted {
    /// Converted in memory: the whole `.filez`.
    Memory(Vec<u8>),
    /// Converted into a cache file.
    Cached {
        /// The cache file.
        object: CachedObject,
        /// Whether the file was in the cache already.
        hit: bool,
    },
    /// A large plain file, framed as stored blocks while it is sent: `head` (the archive
    /// header), then [`stored::framed_len`]`(length)` bytes made of `file`'s `length` bytes.
    Framed {
        /// The archive header bytes.
        head: Vec<u8>,
        /// The plain file whose bytes follow.
        file: std::fs::File,
        /// The file's length.
        length: u64,
    },
}

/// Why a repository cannot be viewed as an archive one, or its view not refreshed.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    /// There is nowhere to keep converted objects.
    #[error("there is no cache to convert objects in")]
    NoCache,
    /// The repository could not be opened again.
    #[error("cannot open the repository again")]
    Reopen(#[source] crate::repo::RepoError),
    /// What it serves (refs, remotes, deployments) could not be read.
    #[error("cannot read what it serves")]
    Fingerprint(#[from] FingerprintError),
    /// The summary peers read could not be generated.
    #[error("cannot generate the summary")]
    Summary(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Why a content object could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// Reading the repository failed.
    #[error(transparent)]
    Repo(#[from] crate::repo::RepoError),
    /// An object does not parse.
    #[error(transparent)]
    Format(#[from] crate::object::FormatError),
    /// Reading or writing a file failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// A repository of a bare mode, viewed as an archive repository.
pub struct ArchiveView {
    repo: Repo,
    options: ViewOptions,
    cache: Arc<ConvertCache>,
    state: RwLock<Arc<Snapshot>>,
    refreshing: Mutex<()>,
}

impl std::fmt::Debug for ArchiveView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveView")
            .field("repo", &self.repo.path())
            .finish_non_exhaustive()
    }
}

impl ArchiveView {
    /// Views `repo` (not an archive) and builds its first snapshot.
    pub fn new(
        repo: Repo,
        options: ViewOptions,
        cache: Arc<ConvertCache>,
    ) -> Result<Self, ViewError> {
        let fingerprint = Fingerprint::read(
            &repo,
            options.remotes_dir.as_deref(),
            options.sysroot.as_deref(),
            options.installation.as_deref(),
        )?;
        let snapshot = build_snapshot(&repo, fingerprint)?;
        Ok(Self {
            repo,
            options,
            cache,
            state: RwLock::new(Arc::new(snapshot)),
            refreshing: Mutex::new(()),
        })
    }

    /// The viewed repository.
    pub fn path(&self) -> &Path {
        self.repo.path()
    }

    /// What is served now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(
            &self
                .state
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Reads the refs again and rebuilds the summary and index when they changed. True when
    /// they did.
    pub fn refresh(&self) -> Result<bool, ViewError> {
        let _one_at_a_time = self
            .refreshing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Opened again so a changed config (remotes, collection IDs) is read.
        let repo = Repo::open(self.repo.path()).map_err(ViewError::Reopen)?;
        let fingerprint = Fingerprint::read(
            &repo,
            self.options.remotes_dir.as_deref(),
            self.options.sysroot.as_deref(),
            self.options.installation.as_deref(),
        )?;
        if fingerprint == self.snapshot().fingerprint {
            return Ok(false);
        }
        let snapshot = build_snapshot(&repo, fingerprint)?;
        tracing::info!(
            repo = %self.repo.path().display(),
            refs = snapshot.listed.len(),
            refs_in_part = snapshot.listed_in_part.len(),
            objects = snapshot.allowed.len(),
            "the refs changed; summary and index rebuilt"
        );
        *self
            .state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(snapshot);
        Ok(true)
    }

    /// Whether `object` belongs to an advertised or deployed commit. Detached metadata goes
    /// with its commit, also when it was added (signed) after the index was built.
    pub fn allows(&self, object: &ObjectId) -> bool {
        let snapshot = self.snapshot();
        match object.kind {
            ObjectKind::CommitMeta => snapshot
                .allowed
                .contains(&ObjectId::new(object.checksum, ObjectKind::Commit)),
            _ => snapshot.allowed.contains(object),
        }
    }

    /// The `.filez` form of content object `checksum`, which must be allowed.
    pub fn convert(&self, checksum: &Checksum) -> Result<Converted, ConvertError> {
        if !self.cache.is_enabled() {
            return self.convert_uncached(checksum);
        }
        let object = ObjectId::new(*checksum, ObjectKind::File);
        let stamp = SourceStamp::of(&std::fs::symlink_metadata(self.repo.object_path(object))?);
        let large = stamp.size >= CACHE_MIN;
        if large {
            if let Some(cached) = self.cache.get(checksum, stamp) {
                return Ok(Converted::Cached {
                    object: cached,
                    hit: true,
                });
            }
            match self
                .cache
                .put(checksum, stamp, |file| self.write_filez(checksum, file))
            {
                Ok(cached) => {
                    return Ok(Converted::Cached {
                        object: cached,
                        hit: false,
                    })
                }
                Err(error) if stamp.size <= MEMORY_MAX => {
                    tracing::warn!(error = %crate::causes::Causes(&error), dir = %self.cache.dir().display(),
                        "cannot cache a converted object; converting in memory");
                }
                Err(error) => return Err(error.into()),
            }
        }
        let mut bytes = Vec::with_capacity(usize::try_from(stamp.size).unwrap_or(0) + 256);
        self.write_filez(checksum, &mut bytes)?;
        Ok(Converted::Memory(bytes))
    }

    /// [`ArchiveView::convert`] without a cache: the object is opened once, and its header
    /// gives the size that decides between framing while sent and converting in memory.
    fn convert_uncached(&self, checksum: &Checksum) -> Result<Converted, ConvertError> {
        let (header, content) = self.repo.open_content(checksum)?;
        let head = header.archive_header_bytes()?;
        if header.size >= CACHE_MIN {
            // Stored blocks cost no CPU to make: the file is framed as it is sent.
            if let Some((file, length)) = content.into_plain_file() {
                return Ok(Converted::Framed { head, file, length });
            }
            if header.size > MEMORY_MAX {
                return Err(io::Error::other("too large to convert in memory").into());
            }
            let mut bytes = Vec::new();
            self.write_filez(checksum, &mut bytes)?;
            return Ok(Converted::Memory(bytes));
        }
        let length = usize::try_from(stored::framed_len(header.size)).unwrap_or(0);
        let mut bytes = Vec::with_capacity(head.len() + length);
        bytes.extend_from_slice(&head);
        stored::frame_into(content, header.size, &mut bytes)?;
        Ok(Converted::Memory(bytes))
    }

    /// Writes the archive header and the raw deflate stream of `checksum` to `out`.
    fn write_filez(&self, checksum: &Checksum, out: &mut dyn Write) -> io::Result<()> {
        let (header, mut content) = self
            .repo
            .open_content(checksum)
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
        let head = header
            .archive_header_bytes()
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
        out.write_all(&head)?;
        stored::write_framed(&mut content, header.size, out)
    }
}

/// Indexes the advertised and deployed commits and generates config and summary.
fn build_snapshot(repo: &Repo, fingerprint: Fingerprint) -> Result<Snapshot, ViewError> {
    let mut allowed = AllowedIndex::default();
    let mut listed = Vec::new();
    let mut listed_in_part = Vec::new();
    for (collection_ref, commit) in fingerprint.advertised() {
        let result = match (
            allowed.add_commit(repo, &commit),
            fingerprint.deployed_parts(&commit),
        ) {
            // Deployed with some languages: served in those parts, listed apart so only
            // peers that want those parts take it.
            (Err(IndexError::Partial(_)), Some(subpaths)) => allowed
                .add_commit_in_part(repo, &commit, subpaths)
                .map(|()| listed_in_part.push((collection_ref.clone(), commit))),
            (result, _) => result.map(|()| listed.push((collection_ref.clone(), commit))),
        };
        match result {
            Ok(()) => {}
            Err(error) => tracing::warn!(
                error = %crate::causes::Causes(&error),
                %collection_ref,
                %commit,
                "not advertising a ref whose commit is not whole"
            ),
        }
    }
    for commit in &fingerprint.deployed {
        if let Err(error) = allowed.add_commit(repo, commit) {
            tracing::warn!(error = %crate::causes::Causes(&error), %commit, "not serving a deployed commit");
        }
    }
    for (commit, subpaths) in &fingerprint.deployed_in_part {
        if let Err(error) = allowed.add_commit_in_part(repo, commit, subpaths) {
            tracing::warn!(error = %crate::causes::Causes(&error), %commit, "not serving a commit deployed in part");
        }
    }
    let main_collection = main_collection(&listed);
    let summary = generate_summary(repo, &listed, &listed_in_part, main_collection.as_deref())?;
    let config = RepoConfig::new_text(RepoMode::Archive, main_collection.as_deref());
    Ok(Snapshot {
        fingerprint,
        config: Bytes::from(config),
        summary: Bytes::from(summary),
        allowed,
        listed,
        listed_in_part,
    })
}

/// The collection whose refs the summary's main list holds: the one with most refs (the
/// first by name on a tie); the others go to the collection map.
fn main_collection(listed: &[(CollectionRef, Checksum)]) -> Option<String> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (collection_ref, _) in listed {
        if let Some(id) = &collection_ref.collection_id {
            *counts.entry(id).or_default() += 1;
        }
    }
    let most = counts.values().copied().max()?;
    counts
        .into_iter()
        .find(|(_, count)| *count == most)
        .map(|(id, _)| id.to_owned())
}

/// An unsigned summary as `ostree summary --update` writes it: the main collection's refs
/// with `ostree.summary.collection-id`, the others in `ostree.summary.collection-map`, and
/// the newest listed commit's time as `ostree.summary.last-modified` (so every computer that
/// serves the same commits advertises the same time).
fn generate_summary(
    repo: &Repo,
    listed: &[(CollectionRef, Checksum)],
    listed_in_part: &[(CollectionRef, Checksum)],
    main_collection: Option<&str>,
) -> Result<Vec<u8>, ViewError> {
    fn failed(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> ViewError {
        ViewError::Summary(error.into())
    }
    let mut main: Vec<SummaryEntry> = Vec::new();
    let mut others: BTreeMap<String, Vec<SummaryEntry>> = BTreeMap::new();
    let mut in_part: BTreeMap<String, Vec<SummaryEntry>> = BTreeMap::new();
    let mut newest = 0u64;
    let all = listed
        .iter()
        .map(|listed| (listed, false))
        .chain(listed_in_part.iter().map(|listed| (listed, true)));
    for ((collection_ref, commit), held_in_part) in all {
        let object = ObjectId::new(*commit, ObjectKind::Commit);
        let size = repo.metadata_size(object).map_err(failed)?.unwrap_or(0);
        let parsed = repo.read_commit(commit).map_err(failed)?;
        newest = newest.max(parsed.timestamp);
        let mut metadata = Metadata::new();
        metadata
            .insert(
                COMMIT_TIMESTAMP_KEY,
                MetadataValue::u64_big_endian(parsed.timestamp),
            )
            .map_err(failed)?;
        if let Some(version) = parsed.version() {
            metadata
                .insert_str(COMMIT_VERSION_KEY, version)
                .map_err(failed)?;
        }
        let entry = (collection_ref.name.clone(), *commit, size, metadata);
        match collection_ref.collection_id.as_deref() {
            Some(id) if held_in_part => in_part.entry(id.to_owned()).or_default().push(entry),
            Some(id) if Some(id) == main_collection => main.push(entry),
            Some(id) => others.entry(id.to_owned()).or_default().push(entry),
            None => {}
        }
    }
    main.sort_by(|a, b| a.0.cmp(&b.0));
    let sorted = |map: BTreeMap<String, Vec<SummaryEntry>>| {
        let mut collections: Vec<(String, Vec<SummaryEntry>)> = map.into_iter().collect();
        for (_, refs) in &mut collections {
            refs.sort_by(|a, b| a.0.cmp(&b.0));
        }
        collections
    };
    let others = sorted(others);
    let in_part = sorted(in_part);
    let mut metadata = Metadata::new();
    if let Some(id) = main_collection {
        metadata.insert_str(COLLECTION_ID_KEY, id).map_err(failed)?;
    }
    if !others.is_empty() {
        metadata
            .insert(
                COLLECTION_MAP_KEY,
                collection_map_value(&others).map_err(failed)?,
            )
            .map_err(failed)?;
    }
    if !in_part.is_empty() {
        metadata
            .insert(
                PARTIAL_COLLECTION_MAP_KEY,
                collection_map_value(&in_part).map_err(failed)?,
            )
            .map_err(failed)?;
    }
    metadata
        .insert(LAST_MODIFIED_KEY, MetadataValue::u64_big_endian(newest))
        .map_err(failed)?;
    build_summary(&main, &metadata).map_err(failed)
}
