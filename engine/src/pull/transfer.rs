//! Fetching a commit's closure: the walker reads dirtrees and dirmetas one after the other
//! (they are small, and their names decide what follows) and queues the content objects the
//! destination lacks; worker threads fetch, inflate, hash and store those in parallel. The
//! queue is bounded, so memory stays the same whatever the size of the tree.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use crossbeam_channel::{Receiver, Sender};

use super::progress::{Counted, Progress};
use super::schedule::Schedule;
use super::{PullError, PullStats};
use crate::cancel::CancelToken;
use crate::object::{
    metadata_checksum, Checksum, Commit, DirMeta, DirTree, ObjectId, ObjectKind, ObjectSize,
};
use crate::repo::{Repo, RepoError, RepoMode, Transaction, WriteOutcome};
use crate::source::{source_name, FetchError, Source};

/// Content objects waiting for a worker, at most.
const QUEUE_LENGTH: usize = 256;
/// Longest path walked inside a commit; deeper trees are refused.
const MAX_PATH_LENGTH: usize = 4096;

/// One content object to fetch.
struct Job {
    checksum: Checksum,
    /// Where it is in the tree, for messages.
    path: String,
    /// Whether its bytes were already counted in the progress total.
    size_known: bool,
    /// Its size once unpacked, as the signed commit's `ostree.sizes` records it.
    unpacked: Option<u64>,
}

/// What the pull does after a source failed to hand out one object.
enum Next {
    TryAnother,
    Fail(String),
}

/// The first failure of any thread; the others stop at their next object.
#[derive(Default)]
struct Failure(Mutex<Option<PullError>>);

impl Failure {
    fn set(&self, error: PullError) {
        let mut slot = match self.0.lock() {
            Ok(slot) => slot,
            Err(poisoned) => poisoned.into_inner(),
        };
        if slot.is_none() {
            *slot = Some(error);
        }
    }

    fn is_set(&self) -> bool {
        match self.0.lock() {
            Ok(slot) => slot.is_some(),
            Err(poisoned) => poisoned.into_inner().is_some(),
        }
    }

    fn take(&self) -> Option<PullError> {
        match self.0.lock() {
            Ok(mut slot) => slot.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        }
    }
}

/// Everything a transfer reads and writes, shared by the walker and the workers.
pub(super) struct Transfer<'t, 'a> {
    pub(super) dest: &'t Repo,
    /// Where objects are written: staged, and moved into `dest` in durable batches.
    pub(super) transaction: &'t Transaction<'t>,
    pub(super) sources: &'t [Arc<dyn Source>],
    pub(super) names: &'t [String],
    pub(super) schedule: &'t Schedule,
    pub(super) cancel: &'t CancelToken,
    pub(super) progress: &'t Progress<'a>,
    pub(super) workers: usize,
}

#[derive(Default)]
struct Counts {
    metadata: u64,
    content: u64,
    present: u64,
}

impl Transfer<'_, '_> {
    /// Fetches every object of `commit` the destination lacks. The commit object itself is
    /// already stored.
    pub(super) fn fetch_closure(&self, commit: &Commit) -> Result<PullStats, PullError> {
        let sizes = content_sizes(commit);
        let failure = Failure::default();
        let (jobs, queue) = crossbeam_channel::bounded::<Job>(QUEUE_LENGTH);
        let content_counts: Mutex<(u64, u64)> = Mutex::new((0, 0));
        let walked = std::thread::scope(|scope| {
            for index in 0..self.workers.max(1) {
                let queue = queue.clone();
                let (failure, content_counts) = (&failure, &content_counts);
                let spawned = std::thread::Builder::new()
                    .name(format!("ferry-pull-{index}"))
                    .spawn_scoped(scope, move || {
                        let (written, present) = self.work(queue, failure);
                        if let Ok(mut counts) = content_counts.lock() {
                            counts.0 += written;
                            counts.1 += present;
                        }
                    });
                if let Err(error) = spawned {
                    failure.set(PullError::Destination(RepoError::Io {
                        action: "start a worker thread for",
                        path: self.dest.path().to_path_buf(),
                        source: error,
                    }));
                    break;
                }
            }
            drop(queue);
            let walked = self.walk(commit, &sizes, &jobs, &failure);
            drop(jobs);
            walked
        });
        if let Some(error) = failure.take() {
            return Err(error);
        }
        let counts = walked?;
        if self.cancel.is_cancelled() {
            return Err(PullError::Cancelled);
        }
        let (content, present) = content_counts
            .lock()
            .map(|counts| *counts)
            .unwrap_or((0, 0));
        Ok(PullStats {
            metadata_objects: counts.metadata,
            content_objects: content + counts.content,
            bytes: self.progress.bytes_done(),
            already_present: counts.present + present,
        })
    }

    fn stopped(&self, failure: &Failure) -> bool {
        failure.is_set() || self.cancel.is_cancelled()
    }

    /// Walks the tree from the commit's root, storing missing dirtrees and dirmetas and
    /// queueing missing content.
    fn walk(
        &self,
        commit: &Commit,
        sizes: &Option<HashMap<Checksum, ObjectSize>>,
        jobs: &Sender<Job>,
        failure: &Failure,
    ) -> Result<Counts, PullError> {
        let mut counts = Counts::default();
        let mut pending = vec![(commit.root_tree, commit.root_meta, "/".to_owned())];
        let mut walked_trees: HashSet<Checksum> = HashSet::new();
        let mut seen_metas: HashSet<Checksum> = HashSet::new();
        let mut seen_content: HashSet<Checksum> = HashSet::new();
        while let Some((tree, meta, path)) = pending.pop() {
            if self.stopped(failure) {
                break;
            }
            if seen_metas.insert(meta) {
                self.ensure_metadata(ObjectKind::DirMeta, &meta, &path, &mut counts)?;
            }
            // The same subtree may appear under many names; its objects are fetched once.
            if !walked_trees.insert(tree) {
                continue;
            }
            let Some(bytes) =
                self.ensure_metadata(ObjectKind::DirTree, &tree, &path, &mut counts)?
            else {
                continue;
            };
            let object = ObjectId::new(tree, ObjectKind::DirTree);
            let listing = DirTree::parse(&bytes).map_err(|source| {
                PullError::Destination(RepoError::Corrupt {
                    repo: self.dest.path().to_path_buf(),
                    object,
                    reason: source.to_string(),
                })
            })?;
            for file in &listing.files {
                if !seen_content.insert(file.checksum) {
                    continue;
                }
                let content = ObjectId::new(file.checksum, ObjectKind::File);
                if self.dest.has_object(content)? {
                    counts.present += 1;
                    continue;
                }
                let size = sizes.as_ref().and_then(|map| map.get(&file.checksum));
                let download = size.map(|size| {
                    if self.dest.mode() == RepoMode::Archive {
                        size.archived
                    } else {
                        size.unpacked
                    }
                });
                self.progress.expect(1, download.unwrap_or(0));
                let job = Job {
                    checksum: file.checksum,
                    path: join(&path, &file.name),
                    size_known: size.is_some(),
                    unpacked: size.map(|size| size.unpacked),
                };
                if jobs.send(job).is_err() {
                    // Every worker is gone; the failure that stopped them is reported.
                    return Ok(counts);
                }
            }
            for dir in listing.dirs.iter().rev() {
                let child = join(&path, &dir.name);
                if child.len() > MAX_PATH_LENGTH {
                    return Err(PullError::BadObject {
                        object,
                        path: Some(path.clone()),
                        source_name: self.names.join(", "),
                        reason: format!(
                            "the tree nests deeper than {MAX_PATH_LENGTH} bytes of path; refused"
                        ),
                    });
                }
                pending.push((dir.tree, dir.meta, child));
            }
        }
        Ok(counts)
    }

    /// Makes sure the destination has a dirtree or dirmeta, fetching and verifying it from the
    /// sources if not. Returns a dirtree's bytes (from wherever they now are); nothing for a
    /// dirmeta or after a cancellation.
    fn ensure_metadata(
        &self,
        kind: ObjectKind,
        checksum: &Checksum,
        path: &str,
        counts: &mut Counts,
    ) -> Result<Option<Vec<u8>>, PullError> {
        let object = ObjectId::new(*checksum, kind);
        if self.dest.has_object(object)? {
            counts.present += 1;
            return match kind {
                ObjectKind::DirTree => Ok(Some(self.dest.read_metadata(kind, checksum)?)),
                _ => Ok(None),
            };
        }
        self.progress.expect(1, 0);
        let mut tried = Vec::new();
        for index in self.schedule.order(&mut rand::thread_rng()) {
            let source = &self.sources[index];
            let name = &self.names[index];
            self.progress.set_source(index);
            let bytes = match source.fetch_metadata(kind, checksum) {
                Ok(bytes) => bytes,
                Err(error) => {
                    tried.push(name.clone());
                    match self.after_fetch_error(index, error) {
                        Next::TryAnother => continue,
                        Next::Fail(reason) => {
                            return Err(bad_object(object, path, name, reason));
                        }
                    }
                }
            };
            let actual = metadata_checksum(&bytes);
            if actual != *checksum {
                return Err(bad_object(
                    object,
                    path,
                    name,
                    format!(
                        "its bytes hash to {actual}, not to its name: the source is corrupt or \
                         has been tampered with; do not use it"
                    ),
                ));
            }
            let parsed = match kind {
                ObjectKind::DirTree => DirTree::parse(&bytes).map(|_| ()),
                _ => DirMeta::parse(&bytes).map(|_| ()),
            };
            if let Err(error) = parsed {
                return Err(bad_object(
                    object,
                    path,
                    name,
                    format!("it is invalid ({error}); refused"),
                ));
            }
            self.transaction
                .write_metadata(kind, checksum, &bytes)
                .map_err(|error| store_error(error, path, name))?;
            counts.metadata += 1;
            self.progress.object_done();
            return Ok(match kind {
                ObjectKind::DirTree => Some(bytes),
                _ => None,
            });
        }
        Err(self.missing(object, path, tried))
    }

    fn missing(&self, object: ObjectId, path: &str, tried: Vec<String>) -> PullError {
        if !self.schedule.any_available() {
            return PullError::NoSourceLeft {
                reasons: vec![format!(
                    "every source stopped answering before {object} ({path}) was fetched; \
                     reconnect the drive or peer and pull again"
                )],
            };
        }
        PullError::Missing {
            object,
            path: Some(path.to_owned()),
            sources: if tried.is_empty() {
                self.names.to_vec()
            } else {
                tried
            },
        }
    }

    /// Books a failed fetch in the schedule and decides what follows.
    fn after_fetch_error(&self, index: usize, error: FetchError) -> Next {
        match error {
            FetchError::NotFound { .. } => {
                self.schedule.record_miss(index);
                Next::TryAnother
            }
            FetchError::Unavailable { ref reason, .. } => {
                tracing::warn!(source = %self.names[index], "dropping the source: {reason}");
                self.schedule.record_unavailable(index);
                Next::TryAnother
            }
            FetchError::Failed { reason, .. } => Next::Fail(format!(
                "it cannot be read ({reason}): the copy there is damaged or has been tampered \
                 with; use another drive or peer"
            )),
        }
    }

    /// A worker: stores queued content objects until the queue closes. Returns how many it
    /// wrote and how many turned out to be present already.
    fn work(&self, queue: Receiver<Job>, failure: &Failure) -> (u64, u64) {
        let mut rng = rand::thread_rng();
        let (mut written, mut present) = (0, 0);
        for job in queue.iter() {
            // Keep draining after a failure, so the walker is never left blocked.
            if self.stopped(failure) {
                continue;
            }
            match self.store_content(&job, &mut rng) {
                Ok(WriteOutcome::Written) => written += 1,
                Ok(WriteOutcome::AlreadyPresent) => present += 1,
                Err(error) => failure.set(error),
            }
            self.progress.object_done();
        }
        (written, present)
    }

    fn store_content(
        &self,
        job: &Job,
        rng: &mut impl rand::Rng,
    ) -> Result<WriteOutcome, PullError> {
        let object = ObjectId::new(job.checksum, ObjectKind::File);
        let mut tried = Vec::new();
        for index in self.schedule.order(rng) {
            let source = &self.sources[index];
            let name = &self.names[index];
            self.progress.set_source(index);
            if self.dest.mode() == RepoMode::Archive {
                match source.fetch_archived_content(&job.checksum) {
                    Ok(Some(archived)) => {
                        if !job.size_known {
                            self.progress.expect_bytes(archived.size.unwrap_or(0));
                        }
                        let stream = Counted {
                            inner: archived.stream,
                            progress: self.progress,
                        };
                        let written = match job.unpacked {
                            Some(unpacked) => self.transaction.write_archived_content_sized(
                                &job.checksum,
                                stream,
                                unpacked,
                            ),
                            None => self
                                .transaction
                                .write_archived_content(&job.checksum, stream),
                        };
                        return written.map_err(|error| content_error(error, job, name));
                    }
                    Ok(None) => {}
                    Err(error) => {
                        tried.push(name.clone());
                        match self.after_fetch_error(index, error) {
                            Next::TryAnother => continue,
                            Next::Fail(reason) => {
                                return Err(bad_object(object, &job.path, name, reason))
                            }
                        }
                    }
                }
            }
            match source.fetch_content(&job.checksum) {
                Ok(content) => {
                    // A symlink's entry records its target's length, which its header does not carry.
                    let recorded = job.unpacked.filter(|_| content.header.is_regular());
                    if let Some(unpacked) = recorded.filter(|u| *u != content.header.size) {
                        return Err(bad_object(
                            object,
                            &job.path,
                            name,
                            format!(
                                "its header declares {} bytes, but the signed commit's \
                                 ostree.sizes records {unpacked}: the source is corrupt or has \
                                 been tampered with; do not use it",
                                content.header.size
                            ),
                        ));
                    }
                    if !job.size_known {
                        self.progress.expect_bytes(content.header.size);
                    }
                    let body = Counted {
                        inner: content.body,
                        progress: self.progress,
                    };
                    return self
                        .transaction
                        .write_content(&job.checksum, &content.header, body)
                        .map_err(|error| content_error(error, job, name));
                }
                Err(error) => {
                    tried.push(name.clone());
                    match self.after_fetch_error(index, error) {
                        Next::TryAnother => continue,
                        Next::Fail(reason) => {
                            return Err(bad_object(object, &job.path, name, reason))
                        }
                    }
                }
            }
        }
        Err(self.missing(object, &job.path, tried))
    }
}

/// Sizes of content objects from the commit's `ostree.sizes`. The commit is verified, so
/// an object whose header declares another unpacked size is refused before it is written.
/// (Archived sizes are only used for progress: a drive made from an installed, bare
/// repository holds the same objects compressed anew, whose lengths differ.)
fn content_sizes(commit: &Commit) -> Option<HashMap<Checksum, ObjectSize>> {
    let sizes = commit.sizes().ok().flatten()?;
    Some(
        sizes
            .into_iter()
            .filter(|size| size.kind == ObjectKind::File)
            .map(|size| (size.checksum, size))
            .collect(),
    )
}

fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

fn bad_object(object: ObjectId, path: &str, source: &str, reason: String) -> PullError {
    PullError::BadObject {
        object,
        path: Some(path.to_owned()),
        source_name: source.to_owned(),
        reason,
    }
}

fn store_error(error: RepoError, path: &str, source: &str) -> PullError {
    match error {
        RepoError::ChecksumMismatch { object, actual, .. } => bad_object(
            object,
            path,
            source,
            format!(
                "its content hashes to {actual}, not to its name: the source is corrupt or has \
                 been tampered with; do not use it"
            ),
        ),
        RepoError::ReadContent { object, reason, .. } => bad_object(
            object,
            path,
            source,
            format!(
                "it cannot be read ({reason}): the copy there is damaged or has been tampered \
                 with; use another drive or peer"
            ),
        ),
        RepoError::Format {
            object,
            source: why,
        } => bad_object(
            object,
            path,
            source,
            format!(
                "it is invalid ({why}): the source is corrupt or has been tampered with; do not \
                 use it"
            ),
        ),
        RepoError::Cancelled => PullError::Cancelled,
        other => PullError::Store {
            path: Some(path.to_owned()),
            error: other,
        },
    }
}

fn content_error(error: RepoError, job: &Job, source: &str) -> PullError {
    store_error(error, &job.path, source)
}

/// The name a message gives the source at `index`.
pub(super) fn names_of(sources: &[Arc<dyn Source>]) -> Vec<String> {
    sources
        .iter()
        .map(|source| source_name(source.info()))
        .collect()
}
