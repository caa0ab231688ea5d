//! Progress of one ref's pull: counters shared by the workers of every source, each
//! source's share and state, and a ticker that turns them into throttled
//! [`Event::Progress`] events with a rate and an ETA.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::event::{Event, Reporter};
use crate::schema::{SourceInfo, SourceKind, SourceState, SourceUse};
use crate::source::Interrupt;

/// How often progress is reported at most.
const TICK: Duration = Duration::from_millis(100);
/// Unchanged progress is repeated this often, so a reader sees the operation is alive.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// The rate is measured over this window.
const RATE_WINDOW: Duration = Duration::from_secs(3);

const NO_SOURCE: usize = usize::MAX;

pub(super) struct Progress<'a> {
    reporter: &'a dyn Reporter,
    update: Option<String>,
    source_names: Vec<String>,
    source_labels: Vec<Option<String>>,
    objects_done: AtomicU64,
    objects_total: AtomicU64,
    bytes_done: AtomicU64,
    bytes_total: AtomicU64,
    source: AtomicUsize,
    shares: Vec<Share>,
}

/// One source's part in the pull.
struct Share {
    kind: SourceKind,
    objects: AtomicU64,
    bytes: AtomicU64,
    state: Mutex<(SourceState, Option<String>)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Snapshot {
    objects_done: u64,
    objects_total: u64,
    bytes_done: u64,
    bytes_total: u64,
    source: usize,
}

impl<'a> Progress<'a> {
    /// `sources`: each source, by index.
    pub(super) fn new(
        reporter: &'a dyn Reporter,
        update: Option<String>,
        sources: &[&SourceInfo],
    ) -> Self {
        let shares = sources
            .iter()
            .map(|source| Share {
                kind: source.kind,
                objects: AtomicU64::new(0),
                bytes: AtomicU64::new(0),
                state: Mutex::new((SourceState::Active, None)),
            })
            .collect();
        Self {
            reporter,
            update,
            source_names: sources.iter().map(|source| source.name()).collect(),
            source_labels: sources.iter().map(|source| source.label.clone()).collect(),
            shares,
            objects_done: AtomicU64::new(0),
            objects_total: AtomicU64::new(0),
            bytes_done: AtomicU64::new(0),
            bytes_total: AtomicU64::new(0),
            source: AtomicUsize::new(NO_SOURCE),
        }
    }

    /// An object from source `index` was verified and stored.
    pub(super) fn stored_from(&self, index: usize) {
        if let Some(share) = self.shares.get(index) {
            share.objects.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Bytes read from source `index` (they count towards the total once, in [`Counted`]).
    fn read_from(&self, index: usize, bytes: u64) {
        if let Some(share) = self.shares.get(index) {
            share.bytes.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// A metadata object's bytes read from source `index` (its share only: totals count
    /// content).
    pub(super) fn metadata_read(&self, index: usize, bytes: u64) {
        self.read_from(index, bytes);
    }

    /// Source `index` was set aside or dropped: reported at once, and kept for the result.
    pub(super) fn set_state(&self, index: usize, state: SourceState, reason: Option<String>) {
        let Some(share) = self.shares.get(index) else {
            return;
        };
        match share.state.lock() {
            Ok(mut slot) => *slot = (state, reason.clone()),
            Err(poisoned) => *poisoned.into_inner() = (state, reason.clone()),
        }
        self.reporter.on_event(Event::SourceState {
            update: self.update.clone(),
            source: self.source_names.get(index).cloned().unwrap_or_default(),
            state,
            reason,
        });
    }

    /// Where source `index` stands now.
    pub(super) fn state(&self, index: usize) -> SourceState {
        self.shares
            .get(index)
            .map_or(SourceState::Active, |share| match share.state.lock() {
                Ok(slot) => slot.0,
                Err(poisoned) => poisoned.into_inner().0,
            })
    }

    /// Each source's share so far.
    pub(super) fn shares(&self) -> Vec<SourceUse> {
        self.shares
            .iter()
            .zip(&self.source_names)
            .zip(&self.source_labels)
            .map(|((share, name), label)| {
                let (state, reason) = match share.state.lock() {
                    Ok(slot) => slot.clone(),
                    Err(poisoned) => poisoned.into_inner().clone(),
                };
                SourceUse {
                    source: name.clone(),
                    label: label.clone(),
                    kind: share.kind,
                    objects: share.objects.load(Ordering::Relaxed),
                    bytes: share.bytes.load(Ordering::Relaxed),
                    state,
                    reason,
                }
            })
            .collect()
    }

    /// The source that has handed out the most bytes so far.
    fn leading_source(&self) -> usize {
        self.shares
            .iter()
            .enumerate()
            .max_by_key(|(_, share)| share.bytes.load(Ordering::Relaxed))
            .filter(|(_, share)| share.bytes.load(Ordering::Relaxed) > 0)
            .map(|(index, _)| index)
            .unwrap_or_else(|| self.source.load(Ordering::Relaxed))
    }

    /// More objects (and bytes, when known) are to be fetched.
    pub(super) fn expect(&self, objects: u64, bytes: u64) {
        self.objects_total.fetch_add(objects, Ordering::Relaxed);
        self.bytes_total.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Objects and bytes expected that will not come this way after all (a static delta
    /// that failed part-way: the object transfer expects what is still missing itself).
    pub(super) fn retract(&self, objects: u64, bytes: u64) {
        let _ = self
            .objects_total
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |total| {
                Some(total.saturating_sub(objects))
            });
        let _ = self
            .bytes_total
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |total| {
                Some(total.saturating_sub(bytes))
            });
    }

    /// Bytes whose total was not known when the object was expected.
    pub(super) fn expect_bytes(&self, bytes: u64) {
        self.bytes_total.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(super) fn object_done(&self) {
        self.objects_done.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn bytes_read(&self, bytes: u64) {
        self.bytes_done.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(super) fn set_source(&self, index: usize) {
        self.source.store(index, Ordering::Relaxed);
    }

    pub(super) fn bytes_done(&self) -> u64 {
        self.bytes_done.load(Ordering::Relaxed)
    }

    fn snapshot(&self) -> Snapshot {
        let objects_done = self.objects_done.load(Ordering::Relaxed);
        let bytes_done = self.bytes_done.load(Ordering::Relaxed);
        Snapshot {
            objects_done,
            objects_total: self.objects_total.load(Ordering::Relaxed).max(objects_done),
            bytes_done,
            bytes_total: self.bytes_total.load(Ordering::Relaxed).max(bytes_done),
            source: self.leading_source(),
        }
    }

    fn emit(&self, snapshot: Snapshot, rate: u64) {
        let remaining = snapshot.bytes_total - snapshot.bytes_done;
        let eta_seconds = (rate > 0 && remaining > 0).then(|| remaining.div_ceil(rate));
        self.reporter.on_event(Event::Progress {
            update: self.update.clone(),
            objects_done: snapshot.objects_done,
            objects_total: snapshot.objects_total,
            bytes_done: snapshot.bytes_done,
            bytes_total: snapshot.bytes_total,
            rate,
            eta_seconds,
            source: self.source_names.get(snapshot.source).cloned(),
            sources: if self.shares.len() > 1 {
                self.shares()
            } else {
                Vec::new()
            },
        });
    }

    /// The final, exact figures.
    pub(super) fn finish(&self, elapsed: Duration) {
        let snapshot = self.snapshot();
        let seconds = elapsed.as_secs_f64();
        let rate = if seconds > 0.0 {
            (snapshot.bytes_done as f64 / seconds) as u64
        } else {
            0
        };
        self.emit(snapshot, rate);
    }

    /// Reports every [`TICK`] while something changes (every [`HEARTBEAT`] otherwise), until
    /// `stop` is signalled or dropped.
    pub(super) fn run_ticker(&self, stop: Receiver<()>) {
        let mut samples: VecDeque<(Instant, u64)> = VecDeque::new();
        let mut last: Option<(Snapshot, Instant)> = None;
        loop {
            match stop.recv_timeout(TICK) {
                Err(RecvTimeoutError::Timeout) => {}
                Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
            }
            let now = Instant::now();
            let snapshot = self.snapshot();
            samples.push_back((now, snapshot.bytes_done));
            while samples
                .front()
                .is_some_and(|(at, _)| now.duration_since(*at) > RATE_WINDOW)
            {
                samples.pop_front();
            }
            let unchanged = last.is_some_and(|(previous, at)| {
                previous == snapshot && now.duration_since(at) < HEARTBEAT
            });
            if unchanged || snapshot.objects_total == 0 {
                continue;
            }
            let rate = match (samples.front(), samples.back()) {
                (Some((first_at, first)), Some((last_at, latest))) if last_at > first_at => {
                    let seconds = last_at.duration_since(*first_at).as_secs_f64();
                    (latest.saturating_sub(*first) as f64 / seconds) as u64
                }
                _ => 0,
            };
            self.emit(snapshot, rate);
            last = Some((snapshot, now));
        }
    }
}

/// Counts the bytes read through it into the progress and the source's share, marks the
/// request alive for stall detection, and remembers whether reading the source failed (as
/// opposed to the bytes failing verification).
pub(super) struct Counted<'p, 'a, R> {
    pub(super) inner: R,
    pub(super) progress: &'p Progress<'a>,
    pub(super) source: usize,
    pub(super) interrupt: &'p Interrupt,
    pub(super) read_failed: &'p mut Option<io::Error>,
}

impl<R: Read> Read for Counted<'_, '_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = match self.inner.read(buf) {
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => return Err(error),
            Err(error) => {
                *self.read_failed = Some(match error.raw_os_error() {
                    Some(code) => io::Error::from_raw_os_error(code),
                    None => io::Error::new(error.kind(), error.to_string()),
                });
                return Err(error);
            }
        };
        if read > 0 {
            self.interrupt.note_activity();
        }
        self.progress.bytes_read(read as u64);
        self.progress.read_from(self.source, read as u64);
        Ok(read)
    }
}
