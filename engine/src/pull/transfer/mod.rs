//! Fetching a commit's closure from every source at once.
//!
//! Objects are named by their hashes, so every drive, peer and server is a mirror of the same
//! content, and a source that lies is caught by the hash. The work sits on one [`Board`]:
//! dirtrees and dirmetas first (their contents decide what follows), then content. Each source
//! has its own workers, each taking the next object it may serve whenever it is free, so a fast
//! source takes more of the work. Objects a drive holds are left to the drive, the rest go to
//! the network sources, at the same time. When a source fails:
//! - it lacks one object (a 404): it stays in use, and that object goes to the others;
//! - it refuses, vanishes, or its drive is removed: it is dropped, and what it was fetching goes
//!   to the others;
//! - it hands out an object that does not hash to its name, is malformed, or is longer than the
//!   signed commit says: it is dropped for the rest of the pull, what it sent is discarded, and
//!   everything it was fetching goes to the others; a source the static delta before the
//!   transfer caught handing out a bad part starts dropped;
//! - it stalls (nothing for [`STALL`]) or is [`SLOW_FACTOR`] times slower than the others for
//!   [`SLOW_WINDOW`]: it is set aside, taking no new work while others can, which is no error;
//! - when nothing is left to hand out, an idle source fetches again what a slower one is still
//!   fetching, and the first copy stored wins.
//!
//! The pull fails only when an object has no source left; the error names every source and why
//! it could not serve the object. Memory stays bounded: dirtrees wait while
//! [`MAX_WAITING_CONTENT`] content objects do.
//!
//! This module holds the board and the workers' loop; `walk` adds the work each dirtree
//! brings, `board` routes and hands it out, `fetch` fetches and stores one job, and `health`
//! sets aside stalled and slow sources.

mod board;
mod fetch;
mod health;
mod walk;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::progress::Progress;
use super::{PullError, PullStats};
use crate::cancel::CancelToken;
use crate::object::{Checksum, Commit, ObjectId, ObjectKind, ObjectSize, Subdirs};
use crate::repo::{Repo, RepoError, Transaction};
use crate::schema::{SourceKind, SourceState};
use crate::source::{source_name, Interrupt, Source};
use fetch::is_bad_reason;

/// A request that receives nothing for this long is given to another source.
pub(super) const STALL: Duration = Duration::from_secs(10);
/// A source this many times slower than the median of the others...
pub(super) const SLOW_FACTOR: u64 = 10;
/// ...for this long is set aside.
pub(super) const SLOW_WINDOW: Duration = Duration::from_secs(30);
/// With nothing left to hand out, a request running this long is fetched again elsewhere.
const HEDGE_AFTER: Duration = Duration::from_secs(2);
/// Dirtrees wait while this many content objects wait.
const MAX_WAITING_CONTENT: usize = 4096;
/// Longest path walked inside a commit; deeper trees are refused.
const MAX_PATH_LENGTH: usize = 4096;
/// Requests in flight per peer or server.
const PEER_REQUESTS: usize = 4;
/// Requests in flight over all peers and servers, at least: a single peer gets them all.
/// Sixteen keep a peer's cold disk and both ends' cores busy; eight left them idle a tenth
/// of the time (`bench/lan.sh`).
const NETWORK_REQUESTS: usize = 16;
/// How often stalls and slowness are looked for.
const WATCH_EVERY: Duration = Duration::from_millis(250);
/// A peer or server whose connection breaks mid-body this many times is dropped as gone. A
/// single break is no proof: a server may close a keep-alive connection as its last response
/// goes out; a peer switched off breaks every request it has running, then refuses more.
const MAX_BROKEN_BODIES: u32 = 3;

/// One object to fetch.
#[derive(Debug, Clone)]
struct Job {
    object: ObjectId,
    /// Where it is in the tree, for messages.
    path: String,
    /// Whether its bytes were already counted in the progress total.
    size_known: bool,
    /// Its size once unpacked, as the signed commit's `ostree.sizes` records it.
    unpacked: Option<u64>,
    /// Sources that answered they do not have it.
    lacking: Vec<usize>,
}

impl Job {
    /// A dirtree or dirmeta: no size to check, none to count.
    fn metadata(object: ObjectId, path: &str) -> Self {
        Self {
            object,
            path: path.to_owned(),
            size_known: true,
            unpacked: None,
            lacking: Vec::new(),
        }
    }
}

/// A request running on one source.
struct Running {
    job: Job,
    source: usize,
    started: Instant,
    interrupt: Interrupt,
    abandoned: Arc<AtomicBool>,
    /// The same object being fetched from another source at the same time.
    twin: Option<u64>,
}

impl Running {
    fn abandon(&self) {
        self.abandoned.store(true, Ordering::Relaxed);
    }
}

#[derive(Default)]
struct Queue {
    metadata: VecDeque<Job>,
    content: VecDeque<Job>,
}

/// How a source stands on the board.
struct Slot {
    state: SourceState,
    drive: bool,
    /// Bytes read from it, sampled every [`WATCH_EVERY`] while it is busy, for the slowness
    /// rule: (when, bytes so far, whether it had requests running throughout).
    samples: VecDeque<(Instant, u64, bool)>,
    /// Bodies that broke off midway (see [`MAX_BROKEN_BODIES`]).
    broken_bodies: u32,
}

/// Work handed to a worker.
enum Task {
    Fetch {
        ticket: u64,
        job: Job,
        interrupt: Interrupt,
    },
    /// A dirtree the destination already has: its children are looked at.
    Expand { tree: Checksum, path: String },
    /// Every object left is in flight: what is staged is written to the disk meanwhile.
    WriteAhead,
}

/// The shared state of one closure's transfer.
struct Board {
    shared: Queue,
    /// Per source; only drives' are used.
    drives: Vec<Queue>,
    waiting_content: usize,
    local: Vec<(Checksum, String)>,
    running: HashMap<u64, Running>,
    next_ticket: u64,
    slots: Vec<Slot>,
    /// Objects queued or running, and local dirtrees not yet expanded.
    outstanding: usize,
    /// Whether a worker was sent to write the staged data ahead ([`Task::WriteAhead`]).
    wrote_ahead: bool,
    failure: Option<PullError>,
}

/// What came of one request.
enum Outcome {
    /// Verified and stored (`written`), or found there already; a dirtree's bytes come along.
    Stored {
        written: bool,
        listing: Option<Vec<u8>>,
    },
    Lacking,
    /// The source as a whole stopped answering.
    Gone(String),
    /// A network source's connection broke off in the body: the object is fetched again.
    Broken(String),
    /// It handed out a bad object.
    Bad(String),
    Interrupted,
    /// The destination failed: the pull stops.
    Fatal(PullError),
}

/// Work found while expanding a dirtree, put on the board at once.
#[derive(Default)]
struct NewWork {
    jobs: Vec<(Job, Option<usize>)>,
    local: Vec<(Checksum, String)>,
}

/// Objects already seen in this closure: each is looked at once.
#[derive(Default)]
struct Seen {
    trees: HashSet<Checksum>,
    metas: HashSet<Checksum>,
    content: HashSet<Checksum>,
}

/// Everything a transfer reads and writes, shared by the workers of every source.
pub(super) struct Transfer<'t, 'a> {
    pub(super) dest: &'t Repo,
    /// Where objects are written: staged, and moved into `dest` in durable batches.
    pub(super) transaction: &'t Transaction<'t>,
    /// The sources offering the commit.
    pub(super) sources: &'t [Arc<dyn Source>],
    pub(super) names: &'t [String],
    pub(super) cancel: &'t CancelToken,
    pub(super) progress: &'t Progress<'a>,
    /// Workers per drive.
    pub(super) drive_workers: usize,
    /// The parts of the tree to fetch; None for all of it.
    pub(super) parts: Option<&'t Subdirs>,
}

/// The running state of [`Transfer::fetch_closure`].
struct Run<'r, 't, 'a> {
    transfer: &'r Transfer<'t, 'a>,
    board: Mutex<Board>,
    changed: Condvar,
    seen: Mutex<Seen>,
    sizes: Option<HashMap<Checksum, ObjectSize>>,
    /// Read without the board's lock, to route objects to drives.
    dropped: Vec<AtomicBool>,
    counts: Mutex<Counts>,
}

#[derive(Default, Clone, Copy)]
struct Counts {
    metadata: u64,
    content: u64,
    present: u64,
}

impl Transfer<'_, '_> {
    /// Fetches every object of `commit` the destination lacks. The commit object itself is
    /// already stored.
    pub(super) fn fetch_closure(&self, commit: &Commit) -> Result<PullStats, PullError> {
        let run = Run::new(self, content_sizes(commit));
        run.start(commit)?;
        std::thread::scope(|scope| {
            let run = &run;
            let mut spawned = 0;
            for (index, source) in self.sources.iter().enumerate() {
                let workers = self.workers_for(source.info().kind);
                for worker in 0..workers {
                    let started = std::thread::Builder::new()
                        .name(format!("ferry-pull-{index}-{worker}"))
                        .spawn_scoped(scope, move || run.work(index));
                    match started {
                        Ok(_) => spawned += 1,
                        Err(error) if spawned == 0 => run.fail(PullError::Destination(
                            RepoError::io("start a worker thread for", self.dest.path(), error),
                        )),
                        // Fewer workers than planned still finish the work.
                        Err(error) => tracing::warn!("cannot start a pull worker: {error}"),
                    }
                }
            }
            run.watch();
        });
        if self.cancel.is_cancelled() {
            return Err(PullError::Cancelled);
        }
        if let Some(error) = run.lock().failure.take() {
            return Err(error);
        }
        let counts = match run.counts.lock() {
            Ok(counts) => *counts,
            Err(poisoned) => *poisoned.into_inner(),
        };
        Ok(PullStats {
            metadata_objects: counts.metadata,
            content_objects: counts.content,
            bytes: self.progress.bytes_done(),
            already_present: counts.present,
            deltas_used: 0,
        })
    }

    fn workers_for(&self, kind: SourceKind) -> usize {
        if kind == SourceKind::Drive {
            return self.drive_workers.max(1);
        }
        let network = self
            .sources
            .iter()
            .filter(|source| source.info().kind != SourceKind::Drive)
            .count()
            .max(1);
        PEER_REQUESTS.max(NETWORK_REQUESTS.div_ceil(network))
    }
}

impl<'r, 't, 'a> Run<'r, 't, 'a> {
    fn new(transfer: &'r Transfer<'t, 'a>, sizes: Option<HashMap<Checksum, ObjectSize>>) -> Self {
        let count = transfer.sources.len();
        // A source dropped earlier in this pull (caught handing out a bad static delta
        // part) stays dropped.
        let dropped: Vec<bool> = (0..count)
            .map(|index| transfer.progress.state(index) == SourceState::Dropped)
            .collect();
        let slots = transfer
            .sources
            .iter()
            .zip(&dropped)
            .map(|(source, dropped)| Slot {
                state: if *dropped {
                    SourceState::Dropped
                } else {
                    SourceState::Active
                },
                drive: source.info().kind == SourceKind::Drive,
                samples: VecDeque::new(),
                broken_bodies: 0,
            })
            .collect();
        Self {
            transfer,
            board: Mutex::new(Board {
                shared: Queue::default(),
                drives: (0..count).map(|_| Queue::default()).collect(),
                waiting_content: 0,
                local: Vec::new(),
                running: HashMap::new(),
                next_ticket: 0,
                slots,
                outstanding: 0,
                wrote_ahead: false,
                failure: None,
            }),
            changed: Condvar::new(),
            seen: Mutex::new(Seen::default()),
            sizes,
            dropped: dropped.into_iter().map(AtomicBool::new).collect(),
            counts: Mutex::new(Counts::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Board> {
        match self.board.lock() {
            Ok(board) => board,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn count(&self, change: impl FnOnce(&mut Counts)) {
        match self.counts.lock() {
            Ok(mut counts) => change(&mut counts),
            Err(poisoned) => change(&mut poisoned.into_inner()),
        }
    }

    fn fail(&self, error: PullError) {
        let mut board = self.lock();
        self.fail_locked(&mut board, error);
    }

    fn fail_locked(&self, board: &mut Board, error: PullError) {
        if board.failure.is_none() {
            board.failure = Some(error);
        }
        for running in board.running.values() {
            running.abandon();
        }
        self.changed.notify_all();
    }

    // Doing the work.

    fn work(&self, source: usize) {
        while let Some(task) = self.take(source) {
            match task {
                Task::Expand { tree, path } => {
                    let expanded = self
                        .transfer
                        .dest
                        .read_metadata(ObjectKind::DirTree, &tree)
                        .map_err(PullError::Destination)
                        .and_then(|bytes| self.expand(&tree, &bytes, &path));
                    let mut board = self.lock();
                    if let Err(error) = expanded {
                        self.fail_locked(&mut board, error);
                    }
                    board.outstanding -= 1;
                    if board.outstanding == 0 || board.failure.is_some() {
                        self.changed.notify_all();
                    }
                }
                Task::WriteAhead => {
                    if let Err(error) = self.transfer.transaction.write_ahead() {
                        self.fail(PullError::Destination(error));
                    }
                }
                Task::Fetch {
                    ticket,
                    job,
                    interrupt,
                } => {
                    let outcome = match self.fetch(source, &job, &interrupt) {
                        Outcome::Stored {
                            written,
                            listing: Some(bytes),
                        } => match self.expand(&job.object.checksum, &bytes, &job.path) {
                            Ok(()) => Outcome::Stored {
                                written,
                                listing: None,
                            },
                            Err(error) => Outcome::Fatal(error),
                        },
                        other => other,
                    };
                    self.complete(source, ticket, job, outcome);
                }
            }
        }
    }

    /// Books what came of a request.
    fn complete(&self, source: usize, ticket: u64, mut job: Job, outcome: Outcome) {
        let mut board = self.lock();
        // None: the request was abandoned meanwhile, and its job is someone else's now.
        let running = board.running.remove(&ticket);
        let stored = matches!(outcome, Outcome::Stored { .. });
        match outcome {
            Outcome::Stored { written, .. } => {
                // A copy stored by a request abandoned meanwhile is not counted twice.
                if let Some(running) = running {
                    if let Some(twin) = running.twin.and_then(|t| board.running.remove(&t)) {
                        twin.abandon();
                    }
                    board.outstanding -= 1;
                    let progress = self.transfer.progress;
                    progress.object_done();
                    match (written, job.object.kind) {
                        (true, ObjectKind::File) => {
                            progress.stored_from(source);
                            self.count(|counts| counts.content += 1);
                        }
                        (true, _) => {
                            progress.stored_from(source);
                            self.count(|counts| counts.metadata += 1);
                        }
                        (false, _) => self.count(|counts| counts.present += 1),
                    }
                }
            }
            Outcome::Lacking => {
                if let Some(running) = running {
                    job.lacking.push(source);
                    self.requeue(&mut board, job, running.twin);
                }
            }
            Outcome::Gone(reason) => {
                self.set_state(&mut board, source, SourceState::Dropped, reason);
                if let Some(running) = running {
                    self.requeue(&mut board, job, running.twin);
                }
            }
            Outcome::Broken(reason) => {
                let broken = &mut board.slots[source].broken_bodies;
                *broken += 1;
                if *broken >= MAX_BROKEN_BODIES {
                    let reason = format!("{reason} ({MAX_BROKEN_BODIES} connections broke)");
                    self.set_state(&mut board, source, SourceState::Dropped, reason);
                } else {
                    tracing::info!(source = %self.transfer.names[source], "fetching again: {reason}");
                }
                if let Some(running) = running {
                    self.requeue(&mut board, job, running.twin);
                }
            }
            Outcome::Bad(reason) => {
                self.set_state(&mut board, source, SourceState::Dropped, reason);
                if let Some(running) = running {
                    self.requeue(&mut board, job, running.twin);
                }
            }
            Outcome::Interrupted => {
                if let Some(running) = running {
                    if !self.transfer.cancel.is_cancelled() {
                        self.requeue(&mut board, job, running.twin);
                    }
                }
            }
            Outcome::Fatal(error) => self.fail_locked(&mut board, error),
        }
        // A stored object frees nobody else's work (its children woke whom they needed):
        // waking every worker for it would cost a system call per object.
        let news = !stored || board.outstanding == 0;
        drop(board);
        if news {
            self.changed.notify_all();
        }
    }

    /// The error when `job` has no source left: each source, and why it cannot serve it.
    fn unfetchable(&self, board: &Board, job: &Job) -> PullError {
        let names = self.transfer.names;
        let progress = self.transfer.progress.shares();
        let mut attempts = Vec::new();
        let mut bad = Vec::new();
        let mut gone = 0;
        for (index, slot) in board.slots.iter().enumerate() {
            let reason = progress.get(index).and_then(|share| share.reason.clone());
            let why = match (slot.state, reason) {
                (SourceState::Dropped, Some(reason)) => {
                    if is_bad_reason(&reason) {
                        bad.push((index, reason.clone()));
                    } else {
                        gone += 1;
                    }
                    reason
                }
                _ => "it does not have it".to_owned(),
            };
            attempts.push(format!("{}: {why}", names[index]));
        }
        let path = Some(job.path.clone());
        if board.slots.len() == 1 {
            if let Some((index, reason)) = bad.pop() {
                return PullError::BadObject {
                    object: job.object,
                    path,
                    source_name: names[index].clone(),
                    reason: reason.into(),
                };
            }
        }
        if bad.is_empty() && gone == 0 {
            return PullError::Missing {
                object: job.object,
                path,
                sources: names.to_vec(),
            };
        }
        if bad.is_empty() && gone == board.slots.len() {
            return PullError::NoSourceLeft {
                reasons: attempts
                    .into_iter()
                    .chain(std::iter::once(format!(
                        "{} ({}) was not fetched; reconnect the drive or peer and pull again",
                        job.object, job.path
                    )))
                    .collect(),
            };
        }
        PullError::Unfetchable {
            object: job.object,
            path,
            attempts,
        }
    }
}

/// Sizes of content objects from the commit's `ostree.sizes`. The commit is verified, so
/// an object whose header declares another unpacked size is refused before it is written.
/// (Archived sizes are only used for progress: a drive made from an installed, bare
/// repository holds the same objects compressed anew, whose lengths differ.)
pub(super) fn content_sizes(commit: &Commit) -> Option<HashMap<Checksum, ObjectSize>> {
    let sizes = commit.sizes().ok().flatten()?;
    Some(
        sizes
            .into_iter()
            .filter(|size| size.kind == ObjectKind::File)
            .map(|size| (size.checksum, size))
            .collect(),
    )
}

/// The name a message gives the source at `index`.
pub(super) fn names_of(sources: &[Arc<dyn Source>]) -> Vec<String> {
    sources
        .iter()
        .map(|source| source_name(source.info()))
        .collect()
}
