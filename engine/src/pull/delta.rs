//! Static deltas in a pull: before the object transfer, a delta a source lists (summary
//! map, else `delta-indexes/`) from a commit the destination holds, or from scratch, is
//! applied into the pull's transaction, part by part where a part costs less than the
//! objects it creates. The transfer then finds those objects present and fetches only what
//! is left (the delta's fallbacks and skipped parts, or everything if the delta was bad).
//!
//! The commit was already verified; the superblock's copy of it must hash to the same
//! checksum, and every object a part creates is hashed against its name as it is stored.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::cancel::CancelToken;
use crate::delta::{
    self, Applied, DeltaError, PartHeader, Superblock, MAX_INDEX_SIZE, MAX_PART_SIZE,
    MAX_SUPERBLOCK_SIZE,
};
use crate::event::{human_bytes, Event, MessageLevel, Reporter};
use crate::object::{Checksum, Metadata, Summary};
use crate::repo::{Repo, Transaction};
use crate::source::{FetchError, Interrupt, Source};

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

/// Whether fetching a part file of `header.size` bytes costs less than fetching the
/// `missing` objects of it the destination lacks. The superblock gives only the unpacked
/// size of the part's objects together, so each missing object is taken to be of the
/// average size; objects an object pull fetches are compressed too, but file data that
/// compresses well compresses about as well in a part.
fn part_pays(header: &PartHeader, missing: u64) -> bool {
    let objects = (header.objects.len() as u64).max(1);
    let replaced = u128::from(header.uncompressed_size) * u128::from(missing) / u128::from(objects)
        + u128::from(missing) * u128::from(OBJECT_OVERHEAD);
    u128::from(header.size) <= replaced
}

#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Delta(#[from] DeltaError),
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("part {0} is missing")]
    MissingPart(usize),
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

/// Which delta, on which source.
struct Located<'a> {
    source_index: usize,
    from: Option<&'a Checksum>,
    to: &'a Checksum,
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
}

impl DeltaPull<'_> {
    /// Applies a delta to `to` if a source offers a usable one, trying each source that has
    /// it until one succeeds. Failures are reported as warnings; the object transfer does
    /// the rest.
    pub(super) fn run(&self, previous: Option<Checksum>, to: &Checksum) -> Applied {
        let previous = previous.filter(|from| self.has_complete(from));
        let mut total = Applied::default();
        for (index, source) in self.sources.iter().enumerate() {
            for candidate in self.candidates(index, source.as_ref(), previous.as_ref(), to) {
                if self.cancel.is_cancelled() {
                    return total;
                }
                match self.try_delta(index, source.as_ref(), &candidate, to, &mut total) {
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

    /// Fetches, checks and applies one delta. `Ok(false)`: the source does not have it, or
    /// none of its parts pays.
    fn try_delta(
        &self,
        index: usize,
        source: &dyn Source,
        candidate: &Listed,
        to: &Checksum,
        total: &mut Applied,
    ) -> Result<bool, Failure> {
        let from = candidate.from.as_ref();
        let path = delta::superblock_path(from, to);
        let Some(bytes) = self.fetch(source, &path, MAX_SUPERBLOCK_SIZE, SUPERBLOCK_TIME_FOR)?
        else {
            return Ok(false);
        };
        self.progress.set_source(index);
        self.progress.metadata_read(index, bytes.len() as u64);
        if let Some(expected) = candidate.superblock {
            let actual = Checksum::from_array(Sha256::digest(&bytes).into());
            if actual != expected {
                return Err(Failure::ListedChecksum { expected, actual });
            }
        }
        let delta = Located {
            source_index: index,
            from,
            to,
        };
        self.apply(source, &bytes, &delta, total)
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

    fn apply(
        &self,
        source: &dyn Source,
        bytes: &[u8],
        delta: &Located<'_>,
        applied: &mut Applied,
    ) -> Result<bool, Failure> {
        let (from, to) = (delta.from, delta.to);
        let superblock = Superblock::parse(bytes)?;
        if superblock.to != *to || superblock.from.as_ref() != from {
            return Err(DeltaError::Malformed("the superblock is for other commits").into());
        }
        // Parts with objects the destination lacks, and how many it lacks.
        let needed: Vec<(usize, u64)> = (0..superblock.parts.len())
            .map(|index| {
                let missing = superblock.parts[index]
                    .objects
                    .iter()
                    .filter(|object| !matches!(self.dest.has_object(**object), Ok(true)))
                    .count();
                (index, missing as u64)
            })
            .filter(|(index, missing)| {
                *missing > 0
                    && (superblock.inline_part(*index).is_some()
                        || part_pays(&superblock.parts[*index], *missing))
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
        self.reporter.on_event(Event::Message {
            level: MessageLevel::Info,
            text: format!(
                "applying the static delta on {}: {} of its {} parts, {} to read",
                self.names[delta.source_index],
                needed.len(),
                superblock.parts.len(),
                human_bytes(fetch_bytes)
            ),
        });
        self.progress.expect(objects, fetch_bytes);
        let mut counted = Counted::default();
        let result = self.apply_parts(source, &superblock, delta, &needed, applied, &mut counted);
        if result.is_err() {
            self.progress.retract(
                objects.saturating_sub(counted.objects),
                fetch_bytes.saturating_sub(counted.bytes),
            );
        }
        result.map(|()| true)
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "one call site, all borrowed state"
    )]
    fn apply_parts(
        &self,
        source: &dyn Source,
        superblock: &Superblock,
        delta: &Located<'_>,
        needed: &[(usize, u64)],
        applied: &mut Applied,
        counted: &mut Counted,
    ) -> Result<(), Failure> {
        // The next part is fetched, checked and inflated on its own thread while this one
        // applies the one before it: reading the source and writing objects overlap.
        // A rendezvous: at most the part being applied and the next one are held.
        let (parts, opened) = crossbeam_channel::bounded::<(u64, Result<Vec<u8>, Failure>)>(0);
        std::thread::scope(|scope| -> Result<(), Failure> {
            // Dropped when this returns, before the scope waits for the fetcher: a fetcher
            // blocked handing over a part then stops.
            let opened = opened;
            scope.spawn(move || {
                for &(index, _) in needed {
                    if self.cancel.is_cancelled() {
                        break;
                    }
                    let (read, payload) = self.open_part(source, superblock, delta, index);
                    let failed = payload.is_err();
                    // The receiver is gone when applying failed: nothing more is wanted.
                    if parts.send((read, payload)).is_err() || failed {
                        break;
                    }
                }
            });
            for &(index, missing) in needed {
                let Ok((read, payload)) = opened.recv() else {
                    // Cancelled: the fetcher stopped early.
                    break;
                };
                counted.bytes += read;
                let payload = payload?;
                let done =
                    delta::apply_part(self.transaction, superblock, index, &payload, self.workers)?;
                // Into objects/, where the object transfer looks for what is already present.
                self.transaction.commit_batch().map_err(DeltaError::from)?;
                for _ in 0..done.metadata_objects + done.content_objects {
                    self.progress.object_done();
                    self.progress.stored_from(delta.source_index);
                }
                let created = done.metadata_objects + done.content_objects;
                self.progress.retract(missing.saturating_sub(created), 0);
                counted.objects += missing;
                applied.metadata_objects += done.metadata_objects;
                applied.content_objects += done.content_objects;
                applied.bytes_written += done.bytes_written;
            }
            Ok(())
        })
    }

    /// Fetches part `index` (unless the superblock carries it), checks it against its header
    /// and inflates it. Returns the bytes read from the source (counted even when the part
    /// turns out bad) and the part's payload.
    fn open_part(
        &self,
        source: &dyn Source,
        superblock: &Superblock,
        delta: &Located<'_>,
        index: usize,
    ) -> (u64, Result<Vec<u8>, Failure>) {
        let mut read = 0;
        let payload = self.fetch_part(source, superblock, delta, index, &mut read);
        (read, payload)
    }

    fn fetch_part(
        &self,
        source: &dyn Source,
        superblock: &Superblock,
        delta: &Located<'_>,
        index: usize,
        read: &mut u64,
    ) -> Result<Vec<u8>, Failure> {
        let header = &superblock.parts[index];
        let fetched = match superblock.inline_part(index) {
            Some(_) => None,
            None => {
                if header.size > MAX_PART_SIZE {
                    return Err(DeltaError::TooLarge {
                        index,
                        size: header.size,
                        max: MAX_PART_SIZE,
                    }
                    .into());
                }
                let path = delta::part_path(delta.from, delta.to, index);
                let part = self
                    .fetch(source, &path, header.size, header.size)?
                    .ok_or(Failure::MissingPart(index))?;
                self.progress
                    .metadata_read(delta.source_index, part.len() as u64);
                self.progress.bytes_read(part.len() as u64);
                *read = part.len() as u64;
                Some(part)
            }
        };
        Ok(delta::open_part(superblock, index, fetched.as_deref())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::{ObjectId, ObjectKind};

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

    #[test]
    fn a_part_pays_only_for_enough_missing_objects() {
        // 100 objects of 10 kB each, compressed to half.
        let part = header(100, 500_000, 1_000_000);
        assert!(part_pays(&part, 100));
        assert!(part_pays(&part, 50));
        assert!(!part_pays(&part, 10));
        // Incompressible data: the part is a little larger than its objects, which the
        // per-object overhead of an object pull outweighs when all are missing.
        let random = header(100, 1_010_000, 1_000_000);
        assert!(part_pays(&random, 100));
        assert!(!part_pays(&random, 90));
        // A tiny part whose xz framing outweighs its bytes.
        assert!(part_pays(&header(2, 217, 77), 2));
    }
}
