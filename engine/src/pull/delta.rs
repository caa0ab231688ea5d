//! Static deltas in a pull: before the object transfer, a delta from the commit the
//! destination has (or from scratch on a fresh install) is applied into the pull's
//! transaction when a source offers one. The transfer then finds those objects present and
//! fetches only what is left (the delta's fallbacks, or everything if the delta was bad).
//!
//! The commit was already verified; the superblock's copy of it must hash to the same
//! checksum, and every object a part creates is hashed against its name as it is stored.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::cancel::CancelToken;
use crate::delta::{self, Applied, DeltaError, Superblock, MAX_PART_SIZE, MAX_SUPERBLOCK_SIZE};
use crate::event::{Event, MessageLevel, Reporter};
use crate::object::Checksum;
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

#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Delta(#[from] DeltaError),
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("part {0} is missing")]
    MissingPart(usize),
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
}

impl DeltaPull<'_> {
    /// Applies a delta to `to` if a source offers a usable one, trying each source that has
    /// it until one succeeds. Failures are reported as warnings; the object transfer does
    /// the rest.
    pub(super) fn run(&self, previous: Option<Checksum>, to: &Checksum) -> Applied {
        let from = match previous {
            Some(from) => match self.has_complete(&from) {
                true => Some(from),
                false => return Applied::default(),
            },
            None => None,
        };
        let path = delta::superblock_path(from.as_ref(), to);
        let mut total = Applied::default();
        for (index, source) in self.sources.iter().enumerate() {
            if self.cancel.is_cancelled() {
                break;
            }
            let fetched = self.fetch(
                source.as_ref(),
                &path,
                MAX_SUPERBLOCK_SIZE,
                SUPERBLOCK_TIME_FOR,
            );
            let bytes = match fetched {
                Ok(Some(bytes)) => bytes,
                Ok(None) => continue,
                Err(error) => {
                    self.warn(index, &error.to_string());
                    continue;
                }
            };
            self.progress.set_source(index);
            self.progress.metadata_read(index, bytes.len() as u64);
            let delta = Located {
                source_index: index,
                from: from.as_ref(),
                to,
            };
            match self.apply(source.as_ref(), &bytes, &delta, &mut total) {
                Ok(()) => return total,
                // What the good parts stored stays (each object was verified); another
                // source's copy of the delta may provide the rest.
                Err(error) => self.warn(index, &error.to_string()),
            }
        }
        total
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
    ) -> Result<(), Failure> {
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
            .filter(|(_, missing)| *missing > 0)
            .collect();
        let fetch_bytes: u64 = needed
            .iter()
            .filter(|(index, _)| superblock.inline_part(*index).is_none())
            .map(|(index, _)| superblock.parts[*index].size)
            .sum();
        let objects: u64 = needed.iter().map(|(_, missing)| missing).sum();
        self.progress.expect(objects, fetch_bytes);
        let mut counted = Counted::default();
        let result = self.apply_parts(source, &superblock, delta, &needed, applied, &mut counted);
        if result.is_err() {
            self.progress.retract(
                objects.saturating_sub(counted.objects),
                fetch_bytes.saturating_sub(counted.bytes),
            );
        }
        result
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
        let (from, to) = (delta.from, delta.to);
        for &(index, missing) in needed {
            if self.cancel.is_cancelled() {
                break;
            }
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
                    let path = delta::part_path(from, to, index);
                    let part = self
                        .fetch(source, &path, header.size, header.size)?
                        .ok_or(Failure::MissingPart(index))?;
                    self.progress
                        .metadata_read(delta.source_index, part.len() as u64);
                    self.progress.bytes_read(part.len() as u64);
                    counted.bytes += part.len() as u64;
                    Some(part)
                }
            };
            let payload = delta::open_part(superblock, index, fetched.as_deref())?;
            let done = delta::apply_part(self.transaction, superblock, index, &payload)?;
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
    }
}
