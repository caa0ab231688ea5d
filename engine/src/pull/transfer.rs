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

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::progress::{Counted, Progress};
use super::{PullError, PullStats};
use crate::cancel::CancelToken;
use crate::event::human_bytes;
use crate::object::{
    child_path, metadata_checksum, Checksum, Commit, DirMeta, DirTree, ObjectId, ObjectKind,
    ObjectSize, Reach, Subdirs,
};
use crate::repo::{Repo, RepoError, RepoMode, Transaction, WriteOutcome};
use crate::schema::{SourceKind, SourceState};
use crate::source::drive::is_gone;
use crate::source::{source_name, FetchError, Interrupt, Source};

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

    /// Where `path` stands against the parts pulled: everything is whole in a full pull.
    fn reach(&self, path: &str) -> Reach {
        match self.transfer.parts {
            Some(parts) => parts.reach(path),
            None => Reach::Whole,
        }
    }

    /// Puts the root's dirmeta and dirtree on the board.
    fn start(&self, commit: &Commit) -> Result<(), PullError> {
        let mut work = NewWork::default();
        self.add_meta(&mut work, commit.root_meta, "/")?;
        self.add_tree(&mut work, commit.root_tree, "/")?;
        self.post(work);
        Ok(())
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

    // Adding work.

    /// Whether the object is met for the first time in this closure: each is looked at once,
    /// though the same subtree or file may appear under many names.
    fn first_sight(&self, object: ObjectId) -> bool {
        let mut seen = match self.seen.lock() {
            Ok(seen) => seen,
            Err(poisoned) => poisoned.into_inner(),
        };
        match object.kind {
            ObjectKind::DirMeta => seen.metas.insert(object.checksum),
            ObjectKind::DirTree => seen.trees.insert(object.checksum),
            _ => seen.content.insert(object.checksum),
        }
    }

    /// Whether the destination has the object already (then counted as present).
    fn present(&self, object: ObjectId) -> Result<bool, PullError> {
        let present = self.transfer.dest.has_object(object)?;
        if present {
            self.count(|counts| counts.present += 1);
        }
        Ok(present)
    }

    fn add_meta(&self, work: &mut NewWork, meta: Checksum, path: &str) -> Result<(), PullError> {
        let object = ObjectId::new(meta, ObjectKind::DirMeta);
        if self.first_sight(object) && !self.present(object)? {
            self.add_job(work, Job::metadata(object, path));
        }
        Ok(())
    }

    fn add_tree(&self, work: &mut NewWork, tree: Checksum, path: &str) -> Result<(), PullError> {
        let object = ObjectId::new(tree, ObjectKind::DirTree);
        // A tree on the way to a part is looked at for that part alone: the same tree met
        // again as a whole is looked at again.
        let along = self.reach(path) == Reach::Along;
        if !along && !self.first_sight(object) {
            return Ok(());
        }
        if self.present(object)? {
            work.local.push((tree, path.to_owned()));
            return Ok(());
        }
        self.add_job(work, Job::metadata(object, path));
        Ok(())
    }

    fn add_file(
        &self,
        work: &mut NewWork,
        checksum: Checksum,
        path: String,
    ) -> Result<(), PullError> {
        let object = ObjectId::new(checksum, ObjectKind::File);
        if !self.first_sight(object) || self.present(object)? {
            return Ok(());
        }
        let size = self.sizes.as_ref().and_then(|map| map.get(&checksum));
        let download = size.map(|size| {
            if self.transfer.dest.mode() == RepoMode::Archive {
                size.archived
            } else {
                size.unpacked
            }
        });
        self.transfer.progress.expect(0, download.unwrap_or(0));
        self.add_job(
            work,
            Job {
                object,
                path,
                size_known: size.is_some(),
                unpacked: size.map(|size| size.unpacked),
                lacking: Vec::new(),
            },
        );
        Ok(())
    }

    fn add_job(&self, work: &mut NewWork, job: Job) {
        self.transfer.progress.expect(1, 0);
        let holder = self.holder(&job);
        work.jobs.push((job, holder));
    }

    /// Puts new work on the board under one lock, and wakes as many workers as it may keep
    /// busy.
    fn post(&self, work: NewWork) {
        let count = work.jobs.len() + work.local.len();
        if count == 0 {
            return;
        }
        let mut board = self.lock();
        board.outstanding += count;
        board.local.extend(work.local);
        for (job, holder) in work.jobs {
            self.route(&mut board, job, holder);
        }
        drop(board);
        if count == 1 {
            self.changed.notify_one();
        } else {
            self.changed.notify_all();
        }
    }

    /// The first usable drive holding the object, if any. A drive tells cheaply; when it is
    /// the only source left, it is not even asked, since it gets the job either way (and a
    /// miss is handled as from any source).
    fn holder(&self, job: &Job) -> Option<usize> {
        let usable = |index: usize| {
            !self.dropped[index].load(Ordering::Relaxed) && !job.lacking.contains(&index)
        };
        let sources = &self.transfer.sources;
        let mut left = (0..sources.len()).filter(|index| usable(*index));
        if let (Some(only), None) = (left.next(), left.next()) {
            if sources[only].info().kind == SourceKind::Drive {
                return Some(only);
            }
        }
        sources
            .iter()
            .enumerate()
            .filter(|(index, source)| source.info().kind == SourceKind::Drive && usable(*index))
            .find(|(_, source)| source.has_object(job.object) == Some(true))
            .map(|(index, _)| index)
    }

    /// Queues a job for its drive, or for the network sources; fails the pull when no
    /// source is left for it. The caller wakes the workers.
    fn route(&self, board: &mut Board, job: Job, holder: Option<usize>) {
        let queue = match holder {
            Some(drive) if board.slots[drive].state != SourceState::Dropped => {
                &mut board.drives[drive]
            }
            _ => {
                let network = board.slots.iter().enumerate().any(|(index, slot)| {
                    !slot.drive
                        && slot.state != SourceState::Dropped
                        && !job.lacking.contains(&index)
                });
                if !network {
                    let error = self.unfetchable(board, &job);
                    self.fail_locked(board, error);
                    return;
                }
                &mut board.shared
            }
        };
        if job.object.kind == ObjectKind::File {
            queue.content.push_back(job);
            board.waiting_content += 1;
        } else {
            queue.metadata.push_back(job);
        }
    }

    /// Routes a job again after its source failed it (or was dropped), unless the same
    /// object is still being fetched elsewhere.
    fn requeue(&self, board: &mut Board, job: Job, twin: Option<u64>) {
        if let Some(twin) = twin.and_then(|ticket| board.running.get_mut(&ticket)) {
            twin.twin = None;
            return;
        }
        let holder = self.holder(&job);
        self.route(board, job, holder);
    }

    // Handing out work.

    /// The next task for a worker of `source`; None when the transfer is over for it.
    fn take(&self, source: usize) -> Option<Task> {
        let mut board = self.lock();
        loop {
            if board.failure.is_some()
                || self.transfer.cancel.is_cancelled()
                || board.outstanding == 0
                || board.slots[source].state == SourceState::Dropped
            {
                self.changed.notify_all();
                return None;
            }
            if board.waiting_content < MAX_WAITING_CONTENT {
                if let Some((tree, path)) = board.local.pop() {
                    return Some(Task::Expand { tree, path });
                }
            }
            if let Some(job) = Self::pick(&mut board, source) {
                return Some(self.hand_out(&mut board, source, job, None));
            }
            if let Some((twin, job)) = Self::hedge(&board, source) {
                return Some(self.hand_out(&mut board, source, job, Some(twin)));
            }
            board = match self.changed.wait_timeout(board, Interrupt::POLL) {
                Ok((board, _)) => board,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    fn hand_out(&self, board: &mut Board, source: usize, job: Job, twin: Option<u64>) -> Task {
        let ticket = board.next_ticket;
        board.next_ticket += 1;
        let abandoned = Arc::new(AtomicBool::new(false));
        let interrupt = Interrupt::on_cancel_or_abandon(self.transfer.cancel, abandoned.clone());
        if let Some(other) = twin.and_then(|twin| board.running.get_mut(&twin)) {
            other.twin = Some(ticket);
        }
        board.running.insert(
            ticket,
            Running {
                job: job.clone(),
                source,
                started: Instant::now(),
                interrupt: interrupt.clone(),
                abandoned,
                twin,
            },
        );
        Task::Fetch {
            ticket,
            job,
            interrupt,
        }
    }

    /// The next queued job `source` may fetch: dirtrees and dirmetas first while the content
    /// backlog is small. A source set aside only takes what no active source could.
    fn pick(board: &mut Board, source: usize) -> Option<Job> {
        let metadata_first = board.waiting_content < MAX_WAITING_CONTENT;
        let slots = &board.slots;
        let set_aside = slots[source].state == SourceState::SetAside;
        let drive = slots[source].drive;
        let allowed = |job: &Job| {
            !job.lacking.contains(&source)
                && (!set_aside
                    || drive
                    || !slots.iter().enumerate().any(|(other, slot)| {
                        other != source
                            && !slot.drive
                            && slot.state == SourceState::Active
                            && !job.lacking.contains(&other)
                    }))
        };
        let queue = if drive {
            &mut board.drives[source]
        } else {
            &mut board.shared
        };
        let order: [bool; 2] = if metadata_first {
            [true, false]
        } else {
            [false, true]
        };
        for metadata in order {
            let list = if metadata {
                &mut queue.metadata
            } else {
                &mut queue.content
            };
            if let Some(position) = list.iter().position(&allowed) {
                let job = list.remove(position)?;
                if !metadata {
                    board.waiting_content -= 1;
                }
                return Some(job);
            }
        }
        None
    }

    /// With nothing queued for it, a network source fetches again the oldest request a set-aside
    /// source holds, or one running for [`HEDGE_AFTER`], that no one else is duplicating.
    fn hedge(board: &Board, source: usize) -> Option<(u64, Job)> {
        let slot = &board.slots[source];
        if slot.drive || slot.state != SourceState::Active {
            return None;
        }
        board
            .running
            .iter()
            .filter(|(_, running)| {
                running.source != source
                    && running.twin.is_none()
                    && !board.slots[running.source].drive
                    && !running.job.lacking.contains(&source)
                    && (board.slots[running.source].state != SourceState::Active
                        || running.started.elapsed() >= HEDGE_AFTER)
            })
            .min_by_key(|(_, running)| running.started)
            .map(|(ticket, running)| (*ticket, running.job.clone()))
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

    /// Puts a dirtree's children on the board.
    fn expand(&self, tree: &Checksum, bytes: &[u8], path: &str) -> Result<(), PullError> {
        let object = ObjectId::new(*tree, ObjectKind::DirTree);
        let listing = DirTree::parse(bytes).map_err(|source| {
            PullError::Destination(RepoError::Corrupt {
                repo: self.transfer.dest.path().to_path_buf(),
                object,
                source: Box::new(source),
            })
        })?;
        let mut work = NewWork::default();
        for file in &listing.files {
            let file_path = child_path(path, &file.name);
            if self.reach(&file_path) == Reach::Whole {
                self.add_file(&mut work, file.checksum, file_path)?;
            }
        }
        for dir in &listing.dirs {
            let child = child_path(path, &dir.name);
            if self.reach(&child) == Reach::Outside {
                continue;
            }
            if child.len() > MAX_PATH_LENGTH {
                return Err(PullError::BadObject {
                    object,
                    path: Some(path.to_owned()),
                    source_name: self.transfer.names.join(", "),
                    reason: format!(
                        "the tree nests deeper than {MAX_PATH_LENGTH} bytes of path; refused"
                    )
                    .into(),
                });
            }
            self.add_meta(&mut work, dir.meta, &child)?;
            self.add_tree(&mut work, dir.tree, &child)?;
        }
        self.post(work);
        Ok(())
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

    /// Sets a source aside or drops it. A dropped source's requests and a dropped drive's
    /// queue go to the others.
    fn set_state(&self, board: &mut Board, source: usize, state: SourceState, reason: String) {
        let current = board.slots[source].state;
        if current == SourceState::Dropped || current == state {
            return;
        }
        board.slots[source].state = state;
        match state {
            SourceState::Dropped => {
                tracing::warn!(source = %self.transfer.names[source], "dropping the source: {reason}")
            }
            _ => {
                tracing::info!(source = %self.transfer.names[source], "setting the source aside: {reason}")
            }
        }
        self.transfer
            .progress
            .set_state(source, state, Some(reason));
        if state != SourceState::Dropped {
            return;
        }
        self.dropped[source].store(true, Ordering::Relaxed);
        let tickets: Vec<u64> = board
            .running
            .iter()
            .filter(|(_, running)| running.source == source)
            .map(|(ticket, _)| *ticket)
            .collect();
        for ticket in tickets {
            if let Some(running) = board.running.remove(&ticket) {
                running.abandon();
                self.requeue(board, running.job, running.twin);
            }
        }
        let queue = std::mem::take(&mut board.drives[source]);
        board.waiting_content -= queue.content.len();
        for job in queue.metadata.into_iter().chain(queue.content) {
            self.requeue(board, job, None);
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

    // Watching for stalled and slow sources.

    /// Until the transfer is over: requests silent for [`STALL`] go to other sources, and
    /// sources much slower than the others are set aside.
    fn watch(&self) {
        let mut board = self.lock();
        loop {
            if board.failure.is_some()
                || self.transfer.cancel.is_cancelled()
                || board.outstanding == 0
            {
                break;
            }
            board = match self.changed.wait_timeout(board, WATCH_EVERY) {
                Ok((board, _)) => board,
                Err(poisoned) => poisoned.into_inner().0,
            };
            self.find_stalls(&mut board);
            self.find_slow(&mut board);
        }
        // Wake every worker so they see the end.
        for running in board.running.values() {
            if self.transfer.cancel.is_cancelled() || board.failure.is_some() {
                running.abandon();
            }
        }
        self.changed.notify_all();
    }

    fn find_stalls(&self, board: &mut Board) {
        let stalled: Vec<u64> = board
            .running
            .iter()
            .filter(|(_, running)| {
                running.twin.is_none() && running.interrupt.silent_for(running.started) >= STALL
            })
            .filter(|(_, running)| {
                // Only worth it when another source could take the object.
                board.slots.iter().enumerate().any(|(other, slot)| {
                    other != running.source
                        && !slot.drive
                        && slot.state == SourceState::Active
                        && !running.job.lacking.contains(&other)
                })
            })
            .map(|(ticket, _)| *ticket)
            .collect();
        for ticket in stalled {
            let Some(running) = board.running.remove(&ticket) else {
                continue;
            };
            running.abandon();
            self.set_state(
                board,
                running.source,
                SourceState::SetAside,
                format!(
                    "it stalled: nothing arrived for {} s while it sent {}",
                    STALL.as_secs(),
                    running.job.object
                ),
            );
            self.requeue(board, running.job, None);
        }
    }

    fn find_slow(&self, board: &mut Board) {
        let now = Instant::now();
        let shares = self.transfer.progress.shares();
        let mut busy = vec![false; board.slots.len()];
        for running in board.running.values() {
            busy[running.source] = true;
        }
        let mut rates: Vec<Option<u64>> = Vec::with_capacity(board.slots.len());
        for (index, slot) in board.slots.iter_mut().enumerate() {
            let bytes = shares.get(index).map_or(0, |share| share.bytes);
            slot.samples.push_back((now, bytes, busy[index]));
            while slot
                .samples
                .front()
                .is_some_and(|(at, _, _)| now.duration_since(*at) > SLOW_WINDOW)
            {
                slot.samples.pop_front();
            }
            let rate = match (slot.samples.front(), slot.samples.back()) {
                (Some((first_at, first, _)), Some((_, latest, _)))
                    if slot.state == SourceState::Active
                        && !slot.drive
                        && now.duration_since(*first_at) + WATCH_EVERY >= SLOW_WINDOW
                        && slot.samples.iter().all(|(_, _, busy)| *busy) =>
                {
                    let seconds = now.duration_since(*first_at).as_secs_f64().max(1.0);
                    Some((latest.saturating_sub(*first) as f64 / seconds) as u64)
                }
                _ => None,
            };
            rates.push(rate);
        }
        for index in 0..rates.len() {
            let Some(rate) = rates[index] else { continue };
            let mut others: Vec<u64> = rates
                .iter()
                .enumerate()
                .filter(|(other, _)| *other != index)
                .filter_map(|(_, rate)| *rate)
                .collect();
            if others.is_empty() {
                continue;
            }
            others.sort_unstable();
            let median = others[others.len() / 2];
            if rate.saturating_mul(SLOW_FACTOR) < median {
                self.set_state(
                    board,
                    index,
                    SourceState::SetAside,
                    format!(
                        "it is much slower than the others ({} against {} per second)",
                        human_bytes(rate),
                        human_bytes(median)
                    ),
                );
            }
        }
    }

    // Fetching one object from one source.

    fn fetch(&self, index: usize, job: &Job, interrupt: &Interrupt) -> Outcome {
        match job.object.kind {
            ObjectKind::File => self.fetch_content(index, job, interrupt),
            kind => self.fetch_metadata(index, kind, job, interrupt),
        }
    }

    fn fetch_metadata(
        &self,
        index: usize,
        kind: ObjectKind,
        job: &Job,
        interrupt: &Interrupt,
    ) -> Outcome {
        let source = &self.transfer.sources[index];
        let checksum = &job.object.checksum;
        let bytes = match source.fetch_metadata(kind, checksum, interrupt) {
            Ok(bytes) => bytes,
            Err(error) => return self.after_fetch_error(job, error),
        };
        self.transfer
            .progress
            .metadata_read(index, bytes.len() as u64);
        let actual = metadata_checksum(&bytes);
        if actual != *checksum {
            return Outcome::Bad(format!(
                "it handed out {} ({}), whose bytes hash to {actual}, not to its name: the source \
                 is corrupt or has been tampered with",
                job.object, job.path
            ));
        }
        let parsed = match kind {
            ObjectKind::DirTree => DirTree::parse(&bytes).map(|_| ()),
            _ => DirMeta::parse(&bytes).map(|_| ()),
        };
        if let Err(error) = parsed {
            return Outcome::Bad(format!(
                "it handed out {} ({}), which is invalid ({}); refused",
                job.object,
                job.path,
                crate::causes::Causes(&error)
            ));
        }
        match self
            .transfer
            .transaction
            .write_metadata(kind, checksum, &bytes)
        {
            Ok(outcome) => Outcome::Stored {
                written: outcome == WriteOutcome::Written,
                listing: (kind == ObjectKind::DirTree).then_some(bytes),
            },
            Err(error) => self.after_store_error(index, job, error, interrupt, None),
        }
    }

    fn fetch_content(&self, index: usize, job: &Job, interrupt: &Interrupt) -> Outcome {
        let source = &self.transfer.sources[index];
        let transaction = self.transfer.transaction;
        let checksum = &job.object.checksum;
        let mut read_failed: Option<io::Error> = None;
        let written = if self.transfer.dest.mode() == RepoMode::Archive {
            match source.fetch_archived_content(checksum, interrupt) {
                Ok(Some(archived)) => {
                    if !job.size_known {
                        self.transfer
                            .progress
                            .expect_bytes(archived.size.unwrap_or(0));
                    }
                    let stream = Counted {
                        inner: archived.stream,
                        progress: self.transfer.progress,
                        source: index,
                        interrupt,
                        read_failed: &mut read_failed,
                    };
                    Some(match job.unpacked {
                        Some(unpacked) => {
                            transaction.write_archived_content_sized(checksum, stream, unpacked)
                        }
                        None => transaction.write_archived_content(checksum, stream),
                    })
                }
                Ok(None) => None,
                Err(error) => return self.after_fetch_error(job, error),
            }
        } else {
            None
        };
        let written = match written {
            Some(written) => written,
            None => {
                let content = match source.fetch_content(checksum, interrupt) {
                    Ok(content) => content,
                    Err(error) => return self.after_fetch_error(job, error),
                };
                // A symlink's entry records its target's length, which its header does not
                // carry.
                let recorded = job.unpacked.filter(|_| content.header.is_regular());
                if let Some(unpacked) = recorded.filter(|u| *u != content.header.size) {
                    return Outcome::Bad(format!(
                        "it handed out {} ({}), whose header declares {} bytes, but the signed \
                         commit's ostree.sizes records {unpacked}: the source is corrupt or has \
                         been tampered with",
                        job.object, job.path, content.header.size
                    ));
                }
                if !job.size_known {
                    self.transfer.progress.expect_bytes(content.header.size);
                }
                let body = Counted {
                    inner: content.body,
                    progress: self.transfer.progress,
                    source: index,
                    interrupt,
                    read_failed: &mut read_failed,
                };
                transaction.write_content(checksum, &content.header, body)
            }
        };
        match written {
            Ok(outcome) => Outcome::Stored {
                written: outcome == WriteOutcome::Written,
                listing: None,
            },
            Err(error) => self.after_store_error(index, job, error, interrupt, read_failed),
        }
    }

    /// What a source's refusal to hand out an object means for it.
    fn after_fetch_error(&self, job: &Job, error: FetchError) -> Outcome {
        match error {
            FetchError::NotFound { .. } => Outcome::Lacking,
            FetchError::Unavailable { reason, .. } => Outcome::Gone(crate::causes::text(&*reason)),
            FetchError::Broken { reason, .. } => Outcome::Broken(crate::causes::text(&*reason)),
            // Mid-pull it only answers 503 to a summary; treated as a peer that went away.
            FetchError::Busy { .. } => Outcome::Gone("busy with other computers".to_owned()),
            FetchError::Interrupted { .. } => Outcome::Interrupted,
            FetchError::Failed { reason, .. } => Outcome::Bad(format!(
                "{} ({}) cannot be read there ({}): the copy is damaged or has been \
                 tampered with",
                job.object,
                job.path,
                crate::causes::Causes(&*reason)
            )),
        }
    }

    /// What a failed write means: the source's bytes were bad, reading the source failed, or
    /// the destination failed.
    fn after_store_error(
        &self,
        index: usize,
        job: &Job,
        error: RepoError,
        interrupt: &Interrupt,
        read_failed: Option<io::Error>,
    ) -> Outcome {
        if interrupt.is_interrupted() {
            return Outcome::Interrupted;
        }
        let drive = self.transfer.sources[index].info().kind == SourceKind::Drive;
        match error {
            RepoError::ChecksumMismatch { actual, .. } => Outcome::Bad(format!(
                "it handed out {} ({}), whose content hashes to {actual}, not to its name: the \
                 source is corrupt or has been tampered with",
                job.object, job.path
            )),
            RepoError::Format { source, .. } => Outcome::Bad(format!(
                "it handed out {} ({}), which is invalid ({}): the source is corrupt or \
                 has been tampered with",
                job.object,
                job.path,
                crate::causes::Causes(&source)
            )),
            RepoError::ReadContent { source: reason, .. } => match read_failed {
                Some(failure) if !is_malformed(&failure) && (!drive || is_gone(&failure)) => {
                    if drive {
                        Outcome::Gone(format!(
                            "it stopped answering ({failure}); was the drive removed?"
                        ))
                    } else {
                        Outcome::Broken(format!(
                            "the connection broke while it sent {}: {failure}",
                            job.object
                        ))
                    }
                }
                _ => Outcome::Bad(format!(
                    "{} ({}) cannot be read there ({reason}): the copy is damaged or has been \
                     tampered with",
                    job.object, job.path
                )),
            },
            RepoError::Cancelled => Outcome::Interrupted,
            other => Outcome::Fatal(PullError::Store {
                path: Some(job.path.clone()),
                error: other,
            }),
        }
    }
}

/// Whether a drop reason says the source handed out a bad object (as opposed to vanishing).
fn is_bad_reason(reason: &str) -> bool {
    reason.starts_with("it handed out") || reason.contains("damaged or has been tampered")
}

/// Errors of the bytes themselves (a broken compressed stream), not of reading them.
fn is_malformed(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput | io::ErrorKind::UnexpectedEof
    )
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
