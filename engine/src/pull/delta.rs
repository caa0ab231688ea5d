//! Static deltas in a pull: before the object transfer, a delta a source lists (summary
//! map, else `delta-indexes/`) from a commit the destination holds, or from scratch, is
//! applied into the pull's transaction, part by part where a part costs less than the
//! objects it creates. The transfer then finds those objects present and fetches only what
//! is left (the delta's fallbacks and skipped parts, or everything if the delta was bad).
//!
//! The commit was already verified; the superblock's copy of it must hash to the same
//! checksum, and every object a part creates is hashed against its name as it is stored.
//! A remote with `sign-verify-deltas=true` also requires the superblock to carry an ed25519
//! signature by one of its keys; a delta without one is dropped for objects.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::cancel::CancelToken;
use crate::delta::{
    self, Applied, DeltaError, PartHeader, Superblock, SuperblockFile, MAX_INDEX_SIZE,
    MAX_PART_SIZE, MAX_SUPERBLOCK_SIZE,
};
use crate::event::{human_bytes, Event, MessageLevel, Reporter};
use crate::object::{Checksum, Metadata, ObjectId, ObjectKind, ObjectSize, Summary};
use crate::repo::{Repo, Transaction};
use crate::schema::SourceState;
use crate::source::{FetchError, Interrupt, Source};
use crate::trust::{DeltaCandidate, RemotePolicy, Signer, TrustError};

use super::progress::Progress;

/// A delta file must arrive within this long plus its size at [`MIN_RATE`]; a source
/// slower than that is left to the object transfer, which shares work by rate.
const FETCH_GRACE: Duration = Duration::from_secs(10);
/// Bytes per second below which a delta file is abandoned (see [`FETCH_GRACE`]).
const MIN_RATE: u64 = 256 * 1024;
/// The size a superblock is given time for: real ones are kilobytes to a few MiB.
const SUPERBLOCK_TIME_FOR: u64 = 1024 * 1024;
/// What an object fetched on its own is taken to cost beyond its bytes: its archive header,
/// the request and its framing. A part pays when its size is below the bytes of the
/// objects it creates that the destination lacks plus this much for each of them.
const OBJECT_OVERHEAD: u64 = 512;
/// Parts held at once, fetched and inflated or being applied, however many sources serve
/// the delta: each is at most [`MAX_PART_SIZE`] compressed plus as much inflated. With one
/// source, one part is applied while the next is fetched; with several, two are fetched at
/// once while nothing is being applied, which is when fetching is what the pull waits for.
const PARTS_IN_MEMORY: usize = 2;
/// How often a fetcher waiting for a part to fetch looks at the cancel token.
const CANCEL_POLL: Duration = Duration::from_millis(100);
/// Objects of a part one thread looks up at least, when checking which the destination
/// lacks (see [`DeltaPull::missing`]).
const LOOKUPS_PER_THREAD: usize = 256;

/// What fetching a part's `missing` objects one by one would read: each object's archived
/// size where the commit's `ostree.sizes` records it, else its share of the part's unpacked
/// payload; plus [`OBJECT_OVERHEAD`] each. The payload holds only what a part adds to the
/// old files its patches and splices read from the destination, so a file built that way
/// is much larger than its share of the payload: where the sizes are known, they count
/// the bytes taken from old files too. Objects an object pull fetches are compressed; file
/// data that compresses well compresses about as well in a part.
fn replaced_bytes(
    header: &PartHeader,
    missing: &[ObjectId],
    sizes: Option<&HashMap<Checksum, ObjectSize>>,
) -> u128 {
    let objects = u128::from((header.objects.len() as u64).max(1));
    let payload_share = u128::from(header.uncompressed_size) / objects;
    missing
        .iter()
        .map(|object| {
            let recorded = match object.kind {
                ObjectKind::File => sizes.and_then(|sizes| sizes.get(&object.checksum)),
                _ => None,
            };
            recorded.map_or(payload_share, |size| u128::from(size.archived))
                + u128::from(OBJECT_OVERHEAD)
        })
        .sum()
}

/// Whether fetching a part file of `header.size` bytes costs less than fetching the
/// `missing` objects of it the destination lacks (see [`replaced_bytes`]).
fn part_pays(
    header: &PartHeader,
    missing: &[ObjectId],
    sizes: Option<&HashMap<Checksum, ObjectSize>>,
) -> bool {
    u128::from(header.size) <= replaced_bytes(header, missing, sizes)
}

#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Delta(#[from] DeltaError),
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Signature(#[from] TrustError),
    #[error("part {0} is missing")]
    MissingPart(usize),
    #[error("part {index} is {actual} bytes, not {expected} as its superblock says")]
    PartSize {
        index: usize,
        actual: u64,
        expected: u64,
    },
    #[error("its superblock hashes to {actual}, not {expected} as the source's listing says")]
    ListedChecksum {
        expected: Checksum,
        actual: Checksum,
    },
}

/// A delta to try: from which commit (None: from scratch), and the checksum its
/// superblock must have when the source lists one.
struct Listed {
    from: Option<Checksum>,
    superblock: Option<Checksum>,
}

/// Progress a delta reported, to take back what it expected and did not deliver.
#[derive(Default)]
struct Counted {
    objects: u64,
    bytes: u64,
}

/// Which delta, on which sources (the first is the one whose superblock was read).
struct Located<'a> {
    sources: &'a [usize],
    from: Option<&'a Checksum>,
    to: &'a Checksum,
}

/// A delta a source lists, with what every source lists (to find the others that have it).
struct Attempt<'a> {
    index: usize,
    candidate: &'a Listed,
    listings: &'a [Vec<Listed>],
}

/// Why a part could not be applied: its source could not provide it (another source may),
/// its source's copy is not the part the superblock lists (the source is not trusted with
/// anything more in this pull), or the delta itself is bad (the superblock is the same on
/// every source).
enum PartFailure {
    Source(Failure),
    BadCopy(Failure),
    Delta(Failure),
}

/// A part a fetcher hands over: its position in the needed list, the source it came from,
/// the bytes read from it, and the inflated payload.
struct Delivery {
    position: usize,
    source_index: usize,
    read: u64,
    result: Result<Vec<u8>, PartFailure>,
}

pub(super) struct DeltaPull<'a> {
    pub dest: &'a Repo,
    pub transaction: &'a Transaction<'a>,
    pub sources: &'a [Arc<dyn Source>],
    pub names: &'a [String],
    pub progress: &'a Progress<'a>,
    pub reporter: &'a dyn Reporter,
    pub cancel: &'a CancelToken,
    /// Threads building a part's objects (those of the object transfer's drive workers).
    pub workers: usize,
    /// Content objects' sizes from the verified commit's `ostree.sizes`, when it has them.
    pub sizes: Option<HashMap<Checksum, ObjectSize>>,
    /// The policy of the remote the pull is for: whether superblocks must be signed.
    pub policy: &'a RemotePolicy,
}

impl DeltaPull<'_> {
    /// Applies a delta to `to` if a source offers a usable one, trying each source that has
    /// it until one succeeds. The parts of a delta several sources list alike are fetched
    /// from all of them at once. Failures are reported as warnings; the object transfer does
    /// the rest.
    pub(super) fn run(&self, previous: Option<Checksum>, to: &Checksum) -> Applied {
        let previous = previous.filter(|from| self.has_complete(from));
        let listings: Vec<Vec<Listed>> = self
            .sources
            .iter()
            .enumerate()
            .map(|(index, source)| self.candidates(index, source.as_ref(), previous.as_ref(), to))
            .collect();
        let mut tried = HashSet::new();
        let mut total = Applied::default();
        for (index, candidates) in listings.iter().enumerate() {
            for candidate in candidates {
                if self.is_dropped(index) {
                    break;
                }
                if self.cancel.is_cancelled() {
                    return total;
                }
                let attempt = Attempt {
                    index,
                    candidate,
                    listings: &listings,
                };
                match self.try_delta(&attempt, to, &mut tried, &mut total) {
                    Ok(true) => return total,
                    Ok(false) => {}
                    // What the good parts stored stays (each object was verified); another
                    // delta or source may provide the rest.
                    Err(error) => self.warn(index, &crate::causes::text(&error)),
                }
            }
        }
        total
    }

    /// The deltas to `to` a source lists whose `from` the destination holds complete: the
    /// one from `previous` first, then from other commits, then from scratch. As libostree,
    /// a source with a summary is asked only for deltas its summary's `ostree.static-deltas`
    /// map lists, or failing that its `delta-indexes/` entry; a source without a summary
    /// (a drive written by `ostree static-delta generate` alone) is probed at the path of
    /// the delta from `previous` (from scratch without one), unverified until its commit.
    fn candidates(
        &self,
        index: usize,
        source: &dyn Source,
        previous: Option<&Checksum>,
        to: &Checksum,
    ) -> Vec<Listed> {
        let summary = match source.fetch_summary() {
            Ok(summary) => summary,
            Err(error) => {
                self.warn(index, &crate::causes::text(&error));
                return Vec::new();
            }
        };
        let Some(summary) = summary else {
            return vec![Listed {
                from: previous.copied(),
                superblock: None,
            }];
        };
        let metadata = Summary::metadata_of(&summary.summary).unwrap_or_default();
        let mut listed = metadata
            .get_metadata(delta::SUMMARY_STATIC_DELTAS_KEY)
            .map(|map| delta::listed_deltas(&map, to))
            .unwrap_or_default();
        if listed.is_empty() {
            listed = self.indexed(index, source, to);
        }
        let mut usable: Vec<Listed> = listed
            .into_iter()
            .filter(|delta| {
                delta
                    .from
                    .as_ref()
                    .is_none_or(|from| self.has_complete(from))
            })
            .map(|delta| Listed {
                from: delta.from,
                superblock: Some(delta.superblock),
            })
            .collect();
        usable.sort_by_key(|delta| match &delta.from {
            Some(from) if Some(from) == previous => 0,
            Some(_) => 1,
            None => 2,
        });
        usable
    }

    /// The deltas to `to` in the source's `delta-indexes/`.
    fn indexed(&self, index: usize, source: &dyn Source, to: &Checksum) -> Vec<delta::Listed> {
        let path = delta::index_path(to);
        let bytes = match self.fetch(source, &path, MAX_INDEX_SIZE, MAX_INDEX_SIZE) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Vec::new(),
            Err(error) => {
                self.warn(index, &crate::causes::text(&error));
                return Vec::new();
            }
        };
        self.progress.metadata_read(index, bytes.len() as u64);
        Metadata::parse(&bytes)
            .ok()
            .and_then(|index| index.get_metadata(delta::SUMMARY_STATIC_DELTAS_KEY))
            .map(|map| delta::listed_deltas(&map, to))
            .unwrap_or_default()
    }

    /// Fetches, checks and applies one delta, its parts from every source that lists it
    /// with the same superblock. `Ok(false)`: the source does not have it, none of its
    /// parts pays, it was tried already, or parts are left that no source could provide.
    fn try_delta(
        &self,
        attempt: &Attempt<'_>,
        to: &Checksum,
        tried: &mut HashSet<(usize, Checksum)>,
        total: &mut Applied,
    ) -> Result<bool, Failure> {
        let (index, candidate) = (attempt.index, attempt.candidate);
        if let Some(listed) = candidate.superblock {
            if tried.contains(&(index, listed)) {
                return Ok(false);
            }
        }
        let source = self.sources[index].as_ref();
        let from = candidate.from.as_ref();
        let path = delta::superblock_path(from, to);
        let Some(bytes) = self.fetch(source, &path, MAX_SUPERBLOCK_SIZE, SUPERBLOCK_TIME_FOR)?
        else {
            return Ok(false);
        };
        self.progress.set_source(index);
        self.progress.metadata_read(index, bytes.len() as u64);
        let actual = Checksum::from_array(Sha256::digest(&bytes).into());
        if let Some(expected) = candidate.superblock {
            if actual != expected {
                return Err(Failure::ListedChecksum { expected, actual });
            }
        }
        if !tried.insert((index, actual)) {
            return Ok(false);
        }
        // A source that lists this superblock's checksum lists the parts it names, each
        // with its checksum: any of them can serve any part. A source without a summary
        // lists no checksum: its superblock at the same path tells.
        let mut sharing = vec![index];
        for (other, listings) in attempt.listings.iter().enumerate() {
            if other == index || self.is_dropped(other) {
                continue;
            }
            let same_from = listings
                .iter()
                .filter(|listed| listed.from == candidate.from);
            let (mut listed, mut unlisted) = (false, false);
            for delta in same_from {
                listed |= delta.superblock == Some(actual);
                unlisted |= delta.superblock.is_none();
            }
            if listed || (unlisted && self.superblock_checksum(other, &path) == Some(actual)) {
                sharing.push(other);
            }
        }
        for other in &sharing {
            tried.insert((*other, actual));
        }
        let delta = Located {
            sources: &sharing,
            from,
            to,
        };
        self.apply(&bytes, &delta, total)
    }

    /// The checksum of the superblock at `path` on source `index`, if it has one there.
    fn superblock_checksum(&self, index: usize, path: &str) -> Option<Checksum> {
        let source = self.sources[index].as_ref();
        match self.fetch(source, path, MAX_SUPERBLOCK_SIZE, SUPERBLOCK_TIME_FOR) {
            Ok(Some(bytes)) => {
                self.progress.metadata_read(index, bytes.len() as u64);
                Some(Checksum::from_array(Sha256::digest(&bytes).into()))
            }
            Ok(None) => None,
            // Left out of this delta; its own attempt, if it comes to it, warns.
            Err(error) => {
                tracing::info!(source = %self.names[index], "no superblock to compare: {error}");
                None
            }
        }
    }

    /// Fetches a delta file of at most `max` bytes, abandoning it when it takes longer than
    /// [`FETCH_GRACE`] plus `time_for` bytes at [`MIN_RATE`].
    fn fetch(
        &self,
        source: &dyn Source,
        path: &str,
        max: u64,
        time_for: u64,
    ) -> Result<Option<Vec<u8>>, FetchError> {
        let abandoned = Arc::new(AtomicBool::new(false));
        let interrupt = Interrupt::on_cancel_or_abandon(self.cancel, abandoned.clone());
        let deadline = FETCH_GRACE + Duration::from_secs(time_for / MIN_RATE);
        let (finished, wait) = crossbeam_channel::bounded::<()>(0);
        std::thread::scope(|scope| {
            scope.spawn(move || {
                if matches!(
                    wait.recv_timeout(deadline),
                    Err(crossbeam_channel::RecvTimeoutError::Timeout)
                ) {
                    abandoned.store(true, Ordering::Relaxed);
                }
            });
            let fetched = source.fetch_delta_file(path, max, &interrupt);
            drop(finished);
            fetched
        })
    }

    /// The objects of `objects` the destination lacks, in order. A part lists thousands:
    /// on a cold cache each lookup waits for a block of `objects/`, so up to `workers`
    /// threads look up a share each and the disk answers several at once.
    fn missing(&self, objects: &[ObjectId]) -> Vec<ObjectId> {
        let lacks = |object: &ObjectId| !matches!(self.dest.has_object(*object), Ok(true));
        let lacking =
            crate::parallel::map_chunked(objects, self.workers, LOOKUPS_PER_THREAD, lacks)
                // A lookup thread that failed: looked up here.
                .unwrap_or_else(|| objects.iter().map(lacks).collect());
        objects
            .iter()
            .zip(lacking)
            .filter_map(|(object, lacking)| lacking.then_some(*object))
            .collect()
    }

    fn has_complete(&self, commit: &Checksum) -> bool {
        let object = crate::object::ObjectId::new(*commit, crate::object::ObjectKind::Commit);
        matches!(self.dest.has_object(object), Ok(true))
            && matches!(self.dest.is_partial(commit), Ok(false))
    }

    fn warn(&self, index: usize, reason: &str) {
        self.reporter.on_event(Event::Message {
            level: MessageLevel::Warning,
            text: format!(
                "the static delta on {} was not used ({reason}); fetching objects instead",
                self.names[index]
            ),
        });
    }

    /// A source served a part that is not the delta's: nothing more of this delta is taken
    /// from it.
    fn warn_dropped(&self, index: usize, reason: &Failure) {
        self.reporter.on_event(Event::Message {
            level: MessageLevel::Warning,
            text: format!(
                "the static delta on {} was dropped ({reason}); its parts come from the \
                 other sources that have it, else as objects",
                self.names[index]
            ),
        });
    }

    /// A source handed out a part that is not the one its superblock lists: as a source
    /// caught handing out a bad object, it is dropped for the rest of this pull (nothing
    /// more of the delta, no objects after it), unless no other source of the commit is
    /// left. That one still serves objects, each verified against its name.
    fn drop_for_the_pull(&self, index: usize, failure: &Failure) {
        let others_left = (0..self.sources.len())
            .any(|other| other != index && self.progress.state(other) != SourceState::Dropped);
        if !others_left {
            self.warn_dropped(index, failure);
            return;
        }
        let reason = format!(
            "it handed out a static delta part that is not the one its superblock lists \
             ({failure}): the source is corrupt or has been tampered with"
        );
        tracing::warn!(source = %self.names[index], "dropping the source: {reason}");
        self.progress
            .set_state(index, SourceState::Dropped, Some(reason));
    }

    fn is_dropped(&self, index: usize) -> bool {
        self.progress.state(index) == SourceState::Dropped
    }

    /// Applies the parts of `bytes`' delta the destination needs. `Ok(false)`: none pays, or
    /// parts are left that no source provided (the good ones applied stay).
    fn apply(
        &self,
        bytes: &[u8],
        delta: &Located<'_>,
        applied: &mut Applied,
    ) -> Result<bool, Failure> {
        let (from, to) = (delta.from, delta.to);
        let file = SuperblockFile::split(bytes)?;
        let candidate = DeltaCandidate {
            from: from.copied(),
            to: *to,
            superblock: file.superblock,
            signatures: file.signatures,
            source: &self.names[delta.sources[0]],
        };
        if let Some(Signer::Ed25519(key)) = self.policy.verify_delta(&candidate)? {
            tracing::info!(source = %candidate.source, %key, "static delta signed by a trusted key");
        }
        let superblock = Superblock::parse(file.superblock)?;
        if superblock.to != *to || superblock.from.as_ref() != from {
            return Err(DeltaError::Malformed("the superblock is for other commits").into());
        }
        // Parts with objects the destination lacks, and how many it lacks.
        let needed: Vec<(usize, u64)> = (0..superblock.parts.len())
            .filter_map(|index| {
                let missing = self.missing(&superblock.parts[index].objects);
                let pays = superblock.inline_part(index).is_some()
                    || part_pays(&superblock.parts[index], &missing, self.sizes.as_ref());
                (!missing.is_empty() && pays).then_some((index, missing.len() as u64))
            })
            .collect();
        if needed.is_empty() {
            return Ok(false);
        }
        let fetch_bytes: u64 = needed
            .iter()
            .filter(|(index, _)| superblock.inline_part(*index).is_none())
            .map(|(index, _)| superblock.parts[*index].size)
            .sum();
        let objects: u64 = needed.iter().map(|(_, missing)| missing).sum();
        let names: Vec<&str> = delta
            .sources
            .iter()
            .map(|index| self.names[*index].as_str())
            .collect();
        self.reporter.on_event(Event::Message {
            level: MessageLevel::Info,
            text: format!(
                "applying the static delta on {}: {} of its {} parts, {} to read",
                names.join(", "),
                needed.len(),
                superblock.parts.len(),
                human_bytes(fetch_bytes)
            ),
        });
        self.progress.expect(objects, fetch_bytes);
        let mut counted = Counted::default();
        let result = self.apply_parts(&superblock, delta, &needed, applied, &mut counted);
        // What was expected and did not come this way: the object transfer expects it.
        self.progress.retract(
            objects.saturating_sub(counted.objects),
            fetch_bytes.saturating_sub(counted.bytes),
        );
        result
    }

    /// One fetcher per source takes the needed parts from a shared queue (a faster source
    /// takes more), checks and inflates each, and hands it over; this thread applies them
    /// in the order they arrive (a part creates its objects from its own payload and the
    /// `from` commit's objects, never from another part's). Returns whether every needed
    /// part was applied.
    fn apply_parts(
        &self,
        superblock: &Superblock,
        delta: &Located<'_>,
        needed: &[(usize, u64)],
        applied: &mut Applied,
        counted: &mut Counted,
    ) -> Result<bool, Failure> {
        let queue = PartQueue::new(needed.len());
        let (parts, opened) = crossbeam_channel::bounded::<Delivery>(0);
        std::thread::scope(|scope| {
            // Dropped when this returns, before the scope waits for the fetchers: a fetcher
            // blocked handing over a part then stops.
            let opened = opened;
            for &source_index in delta.sources {
                let parts = parts.clone();
                let queue = &queue;
                scope.spawn(move || {
                    self.fetch_parts(source_index, superblock, delta, needed, queue, &parts);
                });
            }
            drop(parts);
            let result =
                self.apply_delivered(&opened, superblock, needed, &queue, applied, counted);
            queue.stop();
            result
        })
    }

    /// A fetcher: parts from source `source_index` until none is left or the source fails.
    fn fetch_parts(
        &self,
        source_index: usize,
        superblock: &Superblock,
        delta: &Located<'_>,
        needed: &[(usize, u64)],
        queue: &PartQueue,
        parts: &crossbeam_channel::Sender<Delivery>,
    ) {
        let source = self.sources[source_index].as_ref();
        while let Some(position) = queue.take(self.cancel) {
            let mut read = 0;
            let result = self.fetch_part(
                source,
                source_index,
                superblock,
                delta,
                needed[position].0,
                &mut read,
            );
            let source_failed = matches!(
                result,
                Err(PartFailure::Source(_) | PartFailure::BadCopy(_))
            );
            if source_failed {
                queue.give_back(position);
            }
            let sent = parts.send(Delivery {
                position,
                source_index,
                read,
                result,
            });
            if !source_failed {
                queue.delivered();
            }
            // The applier is gone (done or failed), or this source is dropped.
            if sent.is_err() || source_failed {
                return;
            }
        }
    }

    /// Applies the parts the fetchers hand over until all are applied or no fetcher is left.
    fn apply_delivered(
        &self,
        opened: &crossbeam_channel::Receiver<Delivery>,
        superblock: &Superblock,
        needed: &[(usize, u64)],
        queue: &PartQueue,
        applied: &mut Applied,
        counted: &mut Counted,
    ) -> Result<bool, Failure> {
        let mut remaining = needed.len();
        while remaining > 0 {
            // Disconnected: cancelled, or every source that had parts left failed.
            let Ok(delivery) = opened.recv() else {
                break;
            };
            let payload = match delivery.result {
                Ok(payload) => payload,
                Err(PartFailure::Source(failure)) => {
                    // Its bytes were read (and counted done); the part is read again.
                    self.progress.expect_bytes(delivery.read);
                    self.warn_dropped(delivery.source_index, &failure);
                    continue;
                }
                Err(PartFailure::BadCopy(failure)) => {
                    self.progress.expect_bytes(delivery.read);
                    self.drop_for_the_pull(delivery.source_index, &failure);
                    continue;
                }
                Err(PartFailure::Delta(failure)) => {
                    counted.bytes += delivery.read;
                    return Err(failure);
                }
            };
            counted.bytes += delivery.read;
            let (index, missing) = needed[delivery.position];
            let done =
                delta::apply_part(self.transaction, superblock, index, &payload, self.workers)?;
            drop(payload);
            queue.release();
            // Into objects/, where the object transfer looks for what is already present.
            self.transaction.commit_batch().map_err(DeltaError::from)?;
            for _ in 0..done.metadata_objects + done.content_objects {
                self.progress.object_done();
                self.progress.stored_from(delivery.source_index);
            }
            let created = done.metadata_objects + done.content_objects;
            self.progress.retract(missing.saturating_sub(created), 0);
            counted.objects += missing;
            applied.metadata_objects += done.metadata_objects;
            applied.content_objects += done.content_objects;
            applied.bytes_written += done.bytes_written;
            remaining -= 1;
        }
        Ok(remaining == 0)
    }

    /// Fetches part `index` from the source (unless the superblock carries it), checks it
    /// against its header and inflates it. `read` gets the bytes read from the source, also
    /// when the part turns out bad.
    fn fetch_part(
        &self,
        source: &dyn Source,
        source_index: usize,
        superblock: &Superblock,
        delta: &Located<'_>,
        index: usize,
        read: &mut u64,
    ) -> Result<Vec<u8>, PartFailure> {
        let header = &superblock.parts[index];
        let fetched = match superblock.inline_part(index) {
            Some(_) => None,
            None => {
                if header.size > MAX_PART_SIZE {
                    return Err(PartFailure::Delta(
                        DeltaError::TooLarge {
                            index,
                            size: header.size,
                            max: MAX_PART_SIZE,
                        }
                        .into(),
                    ));
                }
                let path = delta::part_path(delta.from, delta.to, index);
                let part = self
                    .fetch(source, &path, header.size, header.size)
                    .map_err(|error| PartFailure::Source(error.into()))?
                    .ok_or(PartFailure::Source(Failure::MissingPart(index)))?;
                let size = part.len() as u64;
                self.progress.metadata_read(source_index, size);
                self.progress.bytes_read(size);
                *read = size;
                if size != header.size {
                    return Err(PartFailure::BadCopy(Failure::PartSize {
                        index,
                        actual: size,
                        expected: header.size,
                    }));
                }
                Some(part)
            }
        };
        delta::open_part(superblock, index, fetched.as_deref()).map_err(|error| match error {
            // Not the part the superblock lists: this source's copy is bad, another's may
            // be good.
            DeltaError::PartChecksum { .. } => PartFailure::BadCopy(error.into()),
            other => PartFailure::Delta(other.into()),
        })
    }
}

/// The needed parts of a delta left to fetch, shared by one fetcher per source: each
/// fetcher takes the next part when it is free, so a faster source takes more parts.
/// At most [`PARTS_IN_MEMORY`] parts are held at once, fetched or being applied.
struct PartQueue {
    state: Mutex<QueueState>,
    changed: Condvar,
}

struct QueueState {
    /// Positions in the list of needed parts.
    waiting: VecDeque<usize>,
    /// Taken by a fetcher and not yet handed over or given back.
    in_flight: usize,
    /// Taken and not yet applied (or given back).
    held: usize,
    stopped: bool,
}

impl PartQueue {
    fn new(parts: usize) -> Self {
        Self {
            state: Mutex::new(QueueState {
                waiting: (0..parts).collect(),
                in_flight: 0,
                held: 0,
                stopped: false,
            }),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn update(&self, change: impl FnOnce(&mut QueueState)) {
        change(&mut self.lock());
        self.changed.notify_all();
    }

    /// The next part to fetch, once fewer than [`PARTS_IN_MEMORY`] are held. `None` when
    /// stopped or cancelled, or when none is left and none taken could be given back.
    fn take(&self, cancel: &CancelToken) -> Option<usize> {
        let mut state = self.lock();
        loop {
            if state.stopped || cancel.is_cancelled() {
                return None;
            }
            if state.held < PARTS_IN_MEMORY {
                if let Some(position) = state.waiting.pop_front() {
                    state.held += 1;
                    state.in_flight += 1;
                    return Some(position);
                }
            }
            if state.waiting.is_empty() && state.in_flight == 0 {
                return None;
            }
            state = match self.changed.wait_timeout(state, CANCEL_POLL) {
                Ok((state, _)) => state,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// A part was handed over to the applier.
    fn delivered(&self) {
        self.update(|state| state.in_flight = state.in_flight.saturating_sub(1));
    }

    /// A part was applied: its memory is free.
    fn release(&self) {
        self.update(|state| state.held = state.held.saturating_sub(1));
    }

    /// A part its source failed to provide, for another source to fetch.
    fn give_back(&self, position: usize) {
        self.update(|state| {
            state.waiting.push_back(position);
            state.in_flight = state.in_flight.saturating_sub(1);
            state.held = state.held.saturating_sub(1);
        });
    }

    fn stop(&self) {
        self.update(|state| state.stopped = true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(objects: usize, size: u64, uncompressed_size: u64) -> PartHeader {
        PartHeader {
            checksum: Checksum::from_array([0; 32]),
            size,
            uncompressed_size,
            objects: (0..objects)
                .map(|n| ObjectId::new(Checksum::from_array([n as u8; 32]), ObjectKind::File))
                .collect(),
        }
    }

    /// The first `count` objects of `part`.
    fn first(part: &PartHeader, count: usize) -> Vec<ObjectId> {
        part.objects[..count].to_vec()
    }

    fn pays(part: &PartHeader, missing: usize) -> bool {
        part_pays(part, &first(part, missing), None)
    }

    #[test]
    fn a_part_pays_only_for_enough_missing_objects() {
        // 100 objects of 10 kB each, compressed to half.
        let part = header(100, 500_000, 1_000_000);
        assert!(pays(&part, 100));
        assert!(pays(&part, 50));
        assert!(!pays(&part, 10));
        // Incompressible data: the part is a little larger than its objects, which the
        // per-object overhead of an object pull outweighs when all are missing.
        let random = header(100, 1_010_000, 1_000_000);
        assert!(pays(&random, 100));
        assert!(!pays(&random, 90));
        // A tiny part whose xz framing outweighs its bytes.
        assert!(pays(&header(2, 217, 77), 2));
    }

    /// A part of two files: a 4 MB library patched from its old version (a 40 kB patch)
    /// and a new 60 kB file. The destination has the new file already (from another
    /// commit) and lacks the library. Its share of the payload is 50 kB, less than the
    /// part; counted at its recorded size (what its old file brings), the part pays.
    #[test]
    fn a_file_a_patch_builds_from_an_old_file_counts_at_its_recorded_size() {
        let part = header(2, 60_000, 100_000);
        let library = part.objects[0];
        assert!(!part_pays(&part, &[library], None));
        let sizes = HashMap::from([(
            library.checksum,
            ObjectSize {
                checksum: library.checksum,
                archived: 1_500_000,
                unpacked: 4_000_000,
                kind: ObjectKind::File,
            },
        )]);
        assert!(part_pays(&part, &[library], Some(&sizes)));
        // Lacking only the new file, which holds most of the payload, recorded small: the
        // part does not pay.
        let new_file = part.objects[1];
        let small = HashMap::from([(
            new_file.checksum,
            ObjectSize {
                checksum: new_file.checksum,
                archived: 30_000,
                unpacked: 60_000,
                kind: ObjectKind::File,
            },
        )]);
        assert!(!part_pays(&part, &[new_file], Some(&small)));
    }
}
