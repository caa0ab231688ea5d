//! Fetching a commit closure from sources, verifying every object, and storing it.
//!
//! [`pull`] takes the destination repository, the sources, and the refs to pull. For each ref:
//! 1. the remote whose configuration governs trust is found in the destination (the one
//!    named, or the one whose collection ID matches);
//! 2. every commit the sources offer for the ref is fetched, re-hashed and checked by that
//!    remote's [`RemotePolicy`] (signatures, collection and ref bindings); the newest one that
//!    passes wins, ties going to the better-ranked source;
//! 3. it is compared with what the destination ref points at (anti-downgrade; the same commit
//!    is a no-op reported as up to date);
//! 4. `state/<commit>.commitpartial` is written, then the commit and its detached metadata,
//!    then every dirtree, dirmeta and content object the destination lacks, from every source
//!    offering that commit at once, each object re-hashed before it is stored (`transfer`
//!    has the rules for sources that lack, lie, stall or vanish). Objects go through a [`Transaction`]: staged under
//!    `tmp/staging-<boot-id>-…`, and moved into `objects/` in batches, each only after its
//!    data is on disk, so a power cut never leaves an incomplete object under its final name
//!    (which a later pull would trust);
//! 5. once the closure is complete: the last batch is committed and synced, the marker is
//!    removed, and the ref is written last.
//!
//! A pull that is killed or cancelled leaves the ref as it was and the commit marked partial,
//! which `ostree fsck` accepts; a cancelled or failed pull commits what it verified, a killed
//! one loses at most its last batch, and the next pull skips what is already stored. The
//! destination's shared lock is held throughout, as libostree holds it, so `ostree` and
//! `flatpak` can work on the same repository at the same time.

mod delta;
mod error;
mod progress;
mod transfer;

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;

pub use error::PullError;

use crate::cancel::CancelToken;
use crate::event::{Event, MessageLevel, Phase, Reporter};
use crate::lan::discover::MAX_PEERS;
use crate::object::{Checksum, Commit, ObjectId, ObjectKind, Subdirs};
use crate::repo::{LockKind, RefLocation, Repo, RepoError, Transaction};
use crate::schema::{SourceInfo, SourceKind, SourceUse};
use crate::source::{FetchError, Interrupt, OfferedRef, Source};
use crate::target::{Target, TargetError};
use crate::trust::{
    check_timestamp, find_remote_for_collection, Accepted, CommitCandidate, Destination,
    InstalledCommit, RemotePolicy, RemoteTrustConfig, TrustRoots, UpdateKind, Verdict,
};
use progress::Progress;
use transfer::{names_of, Transfer};

/// The commit a pull stores once it has verified it, and what goes with it.
struct Verified<'c> {
    chosen: &'c Candidate,
    commit: &'c Commit,
    /// The remote's policy, which also says whether static deltas must be signed.
    policy: &'c RemotePolicy,
    /// What the destination ref pointed at before, for the delta to start from.
    previous: Option<Checksum>,
    update_id: String,
    /// The parts of the tree pulled; None for all of it.
    parts: Option<&'c Subdirs>,
}

/// A commit a source has not handed out within this long is asked of the next source too.
const COMMIT_HEDGE_AFTER: Duration = Duration::from_secs(2);

/// Batch limits of a pull whose staged data is written while its sources are read: its
/// batches are moved into `objects/` as it goes too, so little is left to rename once the
/// last object arrives.
const STREAMING_BATCH_OBJECTS: usize = 1024;
const STREAMING_BATCH_BYTES: u64 = 64 << 20;

/// Where a pulled ref is written in the destination, and so which remote vouches for it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RefTarget {
    /// `refs/remotes/<remote>/<ref>`; that remote's configuration governs trust.
    Remote(String),
    /// `refs/mirrors/<collection-id>/<ref>`; the remote with that collection ID governs trust.
    Mirror,
    /// `refs/heads/<ref>`; the remote with the ref's collection ID governs trust.
    Head,
}

/// One ref to pull.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PullRequest {
    /// The collection the ref belongs to. None: the remote's collection ID (for
    /// [`RefTarget::Remote`]), or the one collection the sources offer the ref in.
    pub collection_id: Option<String>,
    /// The ref as the sources name it.
    pub ref_name: String,
    /// Where the ref is written in the destination.
    pub target: RefTarget,
    /// Names this pull in progress events ([`crate::schema::Update::id`]); None: the
    /// destination ref, e.g. `origin:os/x86_64/stable`.
    pub update_id: Option<String>,
    /// Flatpak subpaths (`/de`) of a ref installed in part; empty for the whole commit.
    /// Only `/metadata` and `/files/<subpath>` are pulled, and the commit stays marked
    /// partial, as `flatpak` leaves it.
    pub subpaths: Vec<String>,
}

impl PullRequest {
    /// Pulls `ref_name` into `target`, in the collection the remote or the sources give it.
    pub fn new(ref_name: &str, target: RefTarget) -> Self {
        Self {
            collection_id: None,
            ref_name: ref_name.to_owned(),
            target,
            update_id: None,
            subpaths: Vec::new(),
        }
    }

    /// Pulls only these Flatpak subpaths of the tree (none: all of it).
    pub fn with_subpaths(mut self, subpaths: &[String]) -> Self {
        self.subpaths = subpaths.to_vec();
        self
    }

    /// Pulls the ref from this collection (None: the one the remote or the sources give).
    pub fn with_collection(mut self, collection_id: Option<&str>) -> Self {
        self.collection_id = collection_id.map(str::to_owned);
        self
    }

    /// Names the pull in progress events.
    pub fn with_update_id(mut self, id: impl Into<String>) -> Self {
        self.update_id = Some(id.into());
        self
    }

    /// The ref and its collection, as messages name it.
    fn wanted(&self, collection_id: Option<&str>) -> String {
        match collection_id {
            Some(id) => format!("ref {} of collection {id}", self.ref_name),
            None => format!("ref {}", self.ref_name),
        }
    }
}

/// The destination's trust configuration: its remotes and where their keys are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullTrust {
    /// The destination repository and where its remotes are configured.
    pub destination: Destination,
    /// The destination's remotes and what each requires of signatures.
    pub remotes: Vec<RemoteTrustConfig>,
    /// Where the machine's keys live outside repositories.
    pub roots: TrustRoots,
}

impl PullTrust {
    /// The remotes of the plain repository at `repo` (its `config`, and
    /// `/etc/ostree/remotes.d` for the system repository), as libostree loads them.
    pub fn for_repo(repo: &Path, roots: TrustRoots) -> Result<Self, TargetError> {
        Ok(Self::for_target(&Target::repo(repo)?, roots))
    }

    /// The remotes of an installation target.
    pub fn for_target(target: &Target, roots: TrustRoots) -> Self {
        Self {
            destination: target.trust.clone(),
            remotes: target.remotes.iter().map(|r| r.trust_config()).collect(),
            roots,
        }
    }

    fn remote(&self, name: &str) -> Option<&RemoteTrustConfig> {
        self.remotes.iter().find(|remote| remote.name == name)
    }
}

/// How to pull.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// Accept commits older than what the destination ref points at.
    pub allow_downgrade: bool,
    /// The destination's remotes and keys.
    pub trust: PullTrust,
    /// Threads reading each drive; 0 picks a number from the cores. Peers and servers get a
    /// few requests in flight each.
    pub workers: usize,
    /// Never apply static deltas; fetch every object on its own.
    pub no_deltas: bool,
}

impl PullOptions {
    /// Pulling with `trust`, deltas on, downgrades refused and the default number of workers.
    pub fn new(trust: PullTrust) -> Self {
        Self {
            allow_downgrade: false,
            trust,
            workers: 0,
            no_deltas: false,
        }
    }
}

/// How a ref's pull ended when it succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullStatus {
    /// The ref now points at the pulled commit.
    Updated,
    /// The ref already pointed at the newest commit offered; nothing was written.
    UpToDate,
}

/// What a pull transferred.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PullStats {
    /// Metadata objects stored: commit, detached metadata, dirtrees, dirmetas.
    pub metadata_objects: u64,
    /// Content objects stored.
    pub content_objects: u64,
    /// Bytes read from the sources for content objects (unpacked, or as archived when
    /// copied into an archive repository).
    pub bytes: u64,
    /// Objects the destination already had.
    pub already_present: u64,
    /// Static deltas applied (objects created from delta parts are counted above).
    pub deltas_used: u64,
}

impl PullStats {
    /// Every object stored.
    pub fn objects(&self) -> u64 {
        self.metadata_objects + self.content_objects
    }
}

/// A ref pulled (or found up to date).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PulledRef {
    /// Where the ref was written in the destination.
    pub location: RefLocation,
    /// The commit the ref now points at.
    pub commit: Checksum,
    /// What the ref pointed at before.
    pub previous: Option<Checksum>,
    /// Whether the ref moved.
    pub status: PullStatus,
    /// How the commit relates to what the ref pointed at before (new, newer, same time, the same, older).
    pub update: UpdateKind,
    /// Signed, or accepted from a remote that verifies no signatures.
    pub verdict: Verdict,
    /// The remote whose configuration vouched for the commit.
    pub remote: String,
    /// The source the commit was taken from, as messages name it.
    pub source: String,
    /// Every source the closure was fetched from, with its share and state.
    pub sources: Vec<SourceUse>,
    /// The commit's timestamp, seconds since the Unix epoch.
    pub timestamp: u64,
    /// The commit's `version` metadata.
    pub version: Option<String>,
    /// The commit's subject line.
    pub subject: String,
    /// What the pull transferred.
    pub stats: PullStats,
}

/// How one requested ref ended.
#[derive(Debug)]
pub struct RefOutcome {
    /// The ref asked for.
    pub request: PullRequest,
    /// What pulling it gave.
    pub result: Result<PulledRef, PullError>,
}

/// Pulls `requests` from `sources` into `dest`, one ref after the other. Fails as a whole
/// only when the destination cannot be locked; each ref has its own outcome otherwise.
pub fn pull(
    dest: &Repo,
    sources: &[Arc<dyn Source>],
    requests: &[PullRequest],
    options: &PullOptions,
    reporter: &dyn Reporter,
    cancel: &CancelToken,
) -> Result<Vec<RefOutcome>, PullError> {
    let _lock = dest
        .lock(LockKind::Shared, Some(cancel))
        .map_err(|error| match error {
            RepoError::Cancelled => PullError::Cancelled,
            other => PullError::Destination(other),
        })?;
    let names = names_of(sources);
    let unavailable = Mutex::new(HashSet::new());
    let mut offers = Vec::with_capacity(sources.len());
    for (index, source) in sources.iter().enumerate() {
        match source.refs() {
            Ok(refs) => offers.push(refs),
            Err(error) => {
                if matches!(error, FetchError::Unavailable { .. }) {
                    mark(&unavailable, index);
                }
                reporter.on_event(Event::Message {
                    level: MessageLevel::Warning,
                    text: crate::causes::text(&error),
                });
                offers.push(Vec::new());
            }
        }
    }
    // As many computers nearby as a listing uses, the best-ranked; the rest wait.
    let network: Vec<usize> = preference_order(sources, &HashSet::new())
        .into_iter()
        .filter(|&index| sources[index].info().kind != SourceKind::Drive)
        .collect();
    if network.len() > MAX_PEERS {
        for &index in &network[MAX_PEERS..] {
            mark(&unavailable, index);
        }
        reporter.on_event(Event::Message {
            level: MessageLevel::Warning,
            text: format!(
                "{} more computers nearby or servers offer updates; only the {MAX_PEERS} ranked \
                 first are used",
                network.len() - MAX_PEERS
            ),
        });
    }
    let workers = match options.workers {
        0 => default_drive_workers(),
        chosen => chosen,
    };
    let context = Context {
        dest,
        sources,
        names,
        unavailable,
        offers,
        options,
        reporter,
        cancel,
        workers,
    };
    Ok(requests
        .iter()
        .map(|request| RefOutcome {
            request: request.clone(),
            result: if cancel.is_cancelled() {
                Err(PullError::Cancelled)
            } else {
                context.pull_one(request)
            },
        })
        .collect())
}

/// Drives read best with many reads in flight: a disk answers several requests at once, and
/// a thread waiting on one costs little. Cold `cat` of 20,000 objects on the 2-core bench
/// machine: 1 reader 4.0 s, 3 readers 1.9 s, 8 readers 1.3 s.
fn default_drive_workers() -> usize {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    (cores * 4).clamp(2, 16)
}

fn mark(set: &Mutex<HashSet<usize>>, index: usize) {
    match set.lock() {
        Ok(mut set) => set.insert(index),
        Err(poisoned) => poisoned.into_inner().insert(index),
    };
}

/// Sources in order of preference: drives, then nearby computers, then upstream; among equals
/// fresher summaries first (the timestamp is unsigned, so this only orders sources offering
/// the same commit), and equal ones in random order so load spreads across them.
fn preference_order(sources: &[Arc<dyn Source>], skip: &HashSet<usize>) -> Vec<usize> {
    let mut order: Vec<usize> = (0..sources.len()).filter(|i| !skip.contains(i)).collect();
    // Shuffle first, then sort stably: equal sources keep a random order.
    order.shuffle(&mut rand::thread_rng());
    order.sort_by_key(|&index| {
        let rank = sources[index].rank();
        (
            rank.kind,
            std::cmp::Reverse(rank.summary_timestamp.unwrap_or(0)),
        )
    });
    order
}

struct Context<'a> {
    dest: &'a Repo,
    sources: &'a [Arc<dyn Source>],
    names: Vec<String>,
    /// Sources found gone (refused, removed) during this pull.
    unavailable: Mutex<HashSet<usize>>,
    offers: Vec<Vec<OfferedRef>>,
    options: &'a PullOptions,
    reporter: &'a dyn Reporter,
    cancel: &'a CancelToken,
    workers: usize,
}

/// Which remote vouches for a request, and where it is written.
struct Plan<'a> {
    remote: &'a RemoteTrustConfig,
    collection_id: Option<String>,
    location: RefLocation,
}

impl Plan<'_> {
    fn matches(&self, request: &PullRequest, offer: &OfferedRef) -> bool {
        offer.ref_name == request.ref_name
            && match (&self.collection_id, &offer.collection_id) {
                (Some(wanted), Some(offered)) => wanted == offered,
                // A repository without collection IDs may still hold the commit; its
                // bindings are checked against the remote.
                _ => true,
            }
    }
}

/// A commit that passed the remote's checks, and where it came from.
struct Candidate {
    /// The best-ranked source that handed it out.
    source: usize,
    checksum: Checksum,
    bytes: Vec<u8>,
    commitmeta: Option<Vec<u8>>,
    accepted: Accepted,
}

impl Context<'_> {
    fn pull_one(&self, request: &PullRequest) -> Result<PulledRef, PullError> {
        let plan = self.plan(request)?;
        plan.location.validate()?;
        let parts = Subdirs::for_flatpak(&request.subpaths)?;
        let update_id = request
            .update_id
            .clone()
            .unwrap_or_else(|| plan.location.to_string());
        self.reporter.on_event(Event::Phase {
            phase: Phase::Pull,
            update: Some(update_id.clone()),
        });
        let trust = &self.options.trust;
        let policy = RemotePolicy::load(plan.remote, &trust.destination, &trust.roots)?;
        let chosen = self.choose(request, &plan, &policy)?;
        let object = ObjectId::new(chosen.checksum, ObjectKind::Commit);
        let source_name = self.names[chosen.source].clone();
        let commit = Commit::parse(&chosen.bytes).map_err(|error| PullError::BadObject {
            object,
            path: None,
            source_name: source_name.clone(),
            reason: Box::new(error),
        })?;

        let previous = self.dest.resolve_ref(&plan.location)?;
        let installed = match previous {
            Some(current) => Some(InstalledCommit {
                checksum: current,
                timestamp: self.dest.read_commit(&current)?.timestamp,
            }),
            None => None,
        };
        let update = check_timestamp(
            &request.ref_name,
            installed,
            &chosen.checksum,
            chosen.accepted.timestamp,
            self.options.allow_downgrade,
        )
        .map_err(|error| PullError::Offered {
            source_name: source_name.clone(),
            error: Box::new(error),
        })?;
        let complete = self.dest.has_object(object)? && !self.dest.is_partial(&chosen.checksum)?;
        let mut result = PulledRef {
            location: plan.location.clone(),
            commit: chosen.checksum,
            previous,
            status: PullStatus::UpToDate,
            update,
            verdict: chosen.accepted.verdict.clone(),
            remote: plan.remote.name.clone(),
            source: source_name,
            sources: Vec::new(),
            timestamp: chosen.accepted.timestamp,
            version: commit.version().map(str::to_owned),
            subject: commit.subject.clone(),
            stats: PullStats::default(),
        };
        if update == UpdateKind::UpToDate && complete {
            return Ok(result);
        }
        if complete {
            // Stored by an earlier pull (or another process): make sure it is on disk.
            self.dest.sync()?;
        } else {
            // Committed durably by the transaction.
            let verified = Verified {
                chosen: &chosen,
                commit: &commit,
                policy: &policy,
                previous,
                update_id,
                parts: parts.as_ref(),
            };
            let (stats, sources) = self.store(request, &plan, verified)?;
            result.stats = stats;
            result.sources = sources;
        }
        if self.cancel.is_cancelled() {
            return Err(PullError::Cancelled);
        }
        if parts.is_none() {
            // The closure is complete and durable: let a ref point at it.
            self.dest.clear_partial(&chosen.checksum)?;
        } else if update == UpdateKind::UpToDate
            && result.stats.metadata_objects + result.stats.content_objects == 0
        {
            // The parts were all there: a ref installed in part stays partial.
            return Ok(result);
        }
        self.dest.write_ref(&plan.location, &chosen.checksum)?;
        result.status = PullStatus::Updated;
        Ok(result)
    }

    /// Finds the remote vouching for `request` and the ref's location in the destination.
    fn plan(&self, request: &PullRequest) -> Result<Plan<'_>, PullError> {
        let trust = &self.options.trust;
        match &request.target {
            RefTarget::Remote(name) => {
                let remote = trust.remote(name).ok_or_else(|| PullError::UnknownRemote {
                    remote: name.clone(),
                    repo: self.dest.path().to_path_buf(),
                })?;
                let collection_id = match (&request.collection_id, remote.collection_id()) {
                    (Some(requested), Some(configured)) if requested != configured => {
                        return Err(PullError::CollectionMismatch {
                            ref_name: request.ref_name.clone(),
                            remote: name.clone(),
                            requested: requested.clone(),
                            configured: configured.to_owned(),
                        })
                    }
                    (Some(requested), _) => Some(requested.clone()),
                    (None, configured) => configured.map(str::to_owned),
                };
                Ok(Plan {
                    remote,
                    collection_id,
                    location: RefLocation::remote(name, &request.ref_name),
                })
            }
            RefTarget::Mirror | RefTarget::Head => {
                let collection_id = match &request.collection_id {
                    Some(id) => id.clone(),
                    None => self.offered_collection(&request.ref_name)?,
                };
                let remotes = trust
                    .remotes
                    .iter()
                    .map(|remote| (remote.name.as_str(), remote.collection_id()));
                let name = find_remote_for_collection(self.dest.path(), remotes, &collection_id)?;
                let remote = trust.remote(name).ok_or_else(|| PullError::UnknownRemote {
                    remote: name.to_owned(),
                    repo: self.dest.path().to_path_buf(),
                })?;
                let location = match request.target {
                    RefTarget::Mirror => RefLocation::mirror(&collection_id, &request.ref_name),
                    _ => RefLocation::head(&request.ref_name),
                };
                Ok(Plan {
                    remote,
                    collection_id: Some(collection_id),
                    location,
                })
            }
        }
    }

    /// The one collection the sources offer `ref_name` in.
    fn offered_collection(&self, ref_name: &str) -> Result<String, PullError> {
        let mut collections: Vec<String> = self
            .offers
            .iter()
            .flatten()
            .filter(|offer| offer.ref_name == ref_name)
            .filter_map(|offer| offer.collection_id.clone())
            .collect();
        collections.sort();
        collections.dedup();
        match collections.len() {
            0 => Err(PullError::NoCollection {
                ref_name: ref_name.to_owned(),
            }),
            1 => Ok(collections.remove(0)),
            _ => Err(PullError::AmbiguousCollection {
                ref_name: ref_name.to_owned(),
                collections,
            }),
        }
    }

    /// The newest commit offered for the ref that the remote's policy accepts; ties go to the
    /// better-ranked source. Each distinct commit is fetched once, from the best-ranked source
    /// offering it (the next one when that fails), and the commits are fetched in parallel, so
    /// a source that stalls or fails only costs its own offers.
    fn choose(
        &self,
        request: &PullRequest,
        plan: &Plan<'_>,
        policy: &RemotePolicy,
    ) -> Result<Candidate, PullError> {
        let order = preference_order(self.sources, &self.unavailable_now());
        let mut offered = false;
        let mut refusals: Vec<PullError> = Vec::new();
        // Distinct commits, each with the sources offering it, best first.
        let mut commits: Vec<(Checksum, Vec<(usize, usize)>)> = Vec::new();
        for (position, &index) in order.iter().enumerate() {
            let offers: Vec<&OfferedRef> = self.offers[index]
                .iter()
                .filter(|offer| plan.matches(request, offer))
                .collect();
            if offers.is_empty() {
                continue;
            }
            offered = true;
            if let Err(error) = self.check_summary(index, policy) {
                refusals.push(error);
                continue;
            }
            for offer in offers {
                match commits
                    .iter_mut()
                    .find(|(commit, _)| *commit == offer.commit)
                {
                    Some((_, offering)) => offering.push((position, index)),
                    None => commits.push((offer.commit, vec![(position, index)])),
                }
            }
        }
        let fetched: Vec<Result<(usize, Candidate), PullError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = commits
                .iter()
                .map(|(commit, offering)| {
                    scope.spawn(move || self.first_candidate(commit, offering, request, policy))
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|handle| match handle.join() {
                    Ok(results) => results,
                    Err(_) => vec![Err(PullError::Cancelled)],
                })
                .collect()
        });
        if self.cancel.is_cancelled() {
            return Err(PullError::Cancelled);
        }
        let mut accepted: Vec<(usize, Candidate)> = Vec::new();
        for result in fetched {
            match result {
                Ok(candidate) => accepted.push(candidate),
                Err(error) => refusals.push(error),
            }
        }
        let best = accepted
            .into_iter()
            .max_by_key(|(position, c)| (c.accepted.timestamp, std::cmp::Reverse(*position)));
        if let Some((_, candidate)) = best {
            return Ok(candidate);
        }
        let wanted = request.wanted(plan.collection_id.as_deref());
        if !offered {
            let sources = order.iter().map(|&i| self.names[i].clone()).collect();
            return Err(PullError::NotOffered { wanted, sources });
        }
        if refusals.len() == 1 {
            if let Some(only) = refusals.pop() {
                return Err(only);
            }
        }
        Err(PullError::NoUsableCommit {
            wanted,
            reasons: refusals
                .iter()
                .map(|error| crate::causes::text(error))
                .collect(),
        })
    }

    /// Fetches `commit` from the first of `offering` ((position, source) pairs, best first)
    /// that hands it out and has it pass the policy. When a source has not answered within
    /// [`COMMIT_HEDGE_AFTER`], or failed, the next one is asked too, so a slow or failing source
    /// cannot hold the choice; the first answer wins and the others are abandoned. A commit the
    /// policy refuses ends the search, since every source holds the same bytes under that
    /// name. Returns the refusals too.
    fn first_candidate(
        &self,
        commit: &Checksum,
        offering: &[(usize, usize)],
        request: &PullRequest,
        policy: &RemotePolicy,
    ) -> Vec<Result<(usize, Candidate), PullError>> {
        let mut results = Vec::new();
        let (answers, answered) = crossbeam_channel::unbounded();
        std::thread::scope(|scope| {
            let mut abandon: Vec<Arc<AtomicBool>> = Vec::new();
            let mut asked = 0;
            let mut running = 0;
            let mut last_asked = Instant::now();
            let mut ask = |asked: &mut usize, running: &mut usize| {
                let (position, index) = offering[*asked];
                let flag = Arc::new(AtomicBool::new(false));
                abandon.push(flag.clone());
                let answers = answers.clone();
                scope.spawn(move || {
                    let interrupt = Interrupt::on_cancel_or_abandon(self.cancel, flag);
                    let result = self.candidate(index, commit, request, policy, &interrupt);
                    let _ = answers.send(result.map(|candidate| (position, candidate)));
                });
                *asked += 1;
                *running += 1;
            };
            ask(&mut asked, &mut running);
            while running > 0 {
                match answered.recv_timeout(Interrupt::POLL) {
                    Ok(Ok(found)) => {
                        results.push(Ok(found));
                        break;
                    }
                    Ok(Err(error @ (PullError::Trust(_) | PullError::Offered { .. }))) => {
                        results.push(Err(error));
                        break;
                    }
                    Ok(Err(error)) => {
                        running -= 1;
                        if !matches!(error, PullError::Cancelled) {
                            results.push(Err(error));
                        }
                        if asked < offering.len() {
                            ask(&mut asked, &mut running);
                            last_asked = Instant::now();
                        }
                    }
                    Err(_) => {
                        if self.cancel.is_cancelled() {
                            break;
                        }
                        if asked < offering.len() && last_asked.elapsed() >= COMMIT_HEDGE_AFTER {
                            ask(&mut asked, &mut running);
                            last_asked = Instant::now();
                        }
                    }
                }
            }
            for flag in &abandon {
                flag.store(true, Ordering::Relaxed);
            }
        });
        results
    }

    fn unavailable_now(&self) -> HashSet<usize> {
        match self.unavailable.lock() {
            Ok(set) => set.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Checks a source's `summary.sig` when the remote asks for signed summaries. A source
    /// without summary signatures passes: its summary only locates commits, whose own
    /// signatures decide.
    fn check_summary(&self, index: usize, policy: &RemotePolicy) -> Result<(), PullError> {
        if !policy.checks_summary() {
            return Ok(());
        }
        let summary = self.sources[index].fetch_summary().map_err(|error| {
            if matches!(error, FetchError::Unavailable { .. }) {
                mark(&self.unavailable, index);
            }
            PullError::Source(error)
        })?;
        if let Some(summary) = summary {
            policy.verify_summary(
                &summary.summary,
                summary.signatures.as_deref(),
                &self.names[index],
            )?;
        }
        Ok(())
    }

    /// Fetches one offered commit and has the remote's policy check it.
    fn candidate(
        &self,
        index: usize,
        commit: &Checksum,
        request: &PullRequest,
        policy: &RemotePolicy,
        interrupt: &Interrupt,
    ) -> Result<Candidate, PullError> {
        let source = &self.sources[index];
        let name = &self.names[index];
        let parts = Subdirs::for_flatpak(&request.subpaths)?;
        let partly_there = || {
            PullError::Source(FetchError::Failed {
                source_name: name.clone(),
                reason: match &parts {
                    None => format!(
                        "commit {} of {} is only partly there (an interrupted copy, or some \
                         languages only); use another drive or peer",
                        commit.short(),
                        request.ref_name
                    ),
                    Some(parts) => format!(
                        "commit {} of {} is only partly there, without all of {parts}; use \
                         another drive or peer",
                        commit.short(),
                        request.ref_name
                    ),
                }
                .into(),
            })
        };
        let fetched = (|| {
            // A part of the tree is all a ref installed in part needs.
            let partial = !source.commit_is_complete(commit)?;
            if partial && parts.is_none() {
                return Ok(None);
            }
            let bytes = source.fetch_metadata(ObjectKind::Commit, commit, interrupt)?;
            let commitmeta = source.fetch_commitmeta(commit, interrupt)?;
            Ok(Some((bytes, commitmeta, partial)))
        })();
        let (bytes, commitmeta, partial) = match fetched {
            Ok(Some(found)) => found,
            Ok(None) => return Err(partly_there()),
            Err(FetchError::Interrupted { .. }) => return Err(PullError::Cancelled),
            Err(error) => {
                if matches!(error, FetchError::Unavailable { .. }) {
                    mark(&self.unavailable, index);
                }
                return Err(PullError::Source(error));
            }
        };
        let accepted = policy.check_commit_for_ref(
            &CommitCandidate {
                checksum: *commit,
                commit: &bytes,
                detached_metadata: commitmeta.as_deref(),
                source: name,
            },
            &request.ref_name,
            None,
            true,
        )?;
        if let (true, Some(parts)) = (partial, &parts) {
            // Parsed only now that it verified.
            let root = Commit::parse(&bytes)
                .map_err(|error| PullError::BadObject {
                    object: ObjectId::new(*commit, ObjectKind::Commit),
                    path: None,
                    source_name: name.clone(),
                    reason: Box::new(error),
                })?
                .root_tree;
            match crate::source::holds_parts(source.as_ref(), &root, parts, interrupt) {
                Ok(true) => {}
                Ok(false) => return Err(partly_there()),
                Err(FetchError::Interrupted { .. }) => return Err(PullError::Cancelled),
                Err(error) => return Err(PullError::Source(error)),
            }
        }
        Ok(Candidate {
            source: index,
            checksum: *commit,
            bytes,
            commitmeta,
            accepted,
        })
    }

    /// The sources a chosen commit is fetched from: every usable one offering exactly that
    /// commit for the request, the one it came from first.
    fn mirrors_of(&self, request: &PullRequest, plan: &Plan<'_>, chosen: &Candidate) -> Vec<usize> {
        let unavailable = self.unavailable_now();
        let mut mirrors = vec![chosen.source];
        for index in preference_order(self.sources, &unavailable) {
            if index != chosen.source
                && self.offers[index]
                    .iter()
                    .any(|offer| offer.commit == chosen.checksum && plan.matches(request, offer))
            {
                mirrors.push(index);
            }
        }
        mirrors
    }

    /// Stores the commit and its closure, with `state/<commit>.commitpartial` in place until
    /// every object is there. Whatever was verified is committed even when the pull fails or
    /// is cancelled, so the next pull need not fetch it again.
    fn store(
        &self,
        request: &PullRequest,
        plan: &Plan<'_>,
        verified: Verified<'_>,
    ) -> Result<(PullStats, Vec<SourceUse>), PullError> {
        self.dest.mark_partial(&verified.chosen.checksum)?;
        let mirrors = self.mirrors_of(request, plan, verified.chosen);
        let mut transaction =
            Transaction::begin(self.dest, Some(self.cancel)).map_err(|error| match error {
                RepoError::Cancelled => PullError::Cancelled,
                other => PullError::Destination(other),
            })?;
        let destination = self.dest.filesystem();
        let shares_the_disk = |index: &usize| {
            destination.is_some() && self.sources[*index].filesystem() == destination
        };
        if !mirrors.iter().any(shares_the_disk) {
            transaction = transaction
                .with_write_behind()
                .with_batch_limits(STREAMING_BATCH_OBJECTS, STREAMING_BATCH_BYTES);
        }
        let stored = self.store_in(&transaction, &mirrors, verified);
        let committed = transaction.commit();
        let stored = stored?;
        committed?;
        Ok(stored)
    }

    fn store_in(
        &self,
        transaction: &Transaction<'_>,
        mirrors: &[usize],
        verified: Verified<'_>,
    ) -> Result<(PullStats, Vec<SourceUse>), PullError> {
        let Verified {
            chosen,
            commit,
            policy,
            previous,
            update_id,
            parts,
        } = verified;
        let started = Instant::now();
        let sources: Vec<Arc<dyn Source>> = mirrors
            .iter()
            .map(|&index| self.sources[index].clone())
            .collect();
        let names: Vec<String> = mirrors.iter().map(|&i| self.names[i].clone()).collect();
        let infos: Vec<&SourceInfo> = sources.iter().map(|source| source.info()).collect();
        let progress = Progress::new(self.reporter, Some(update_id), &infos);
        // The commit's source is mirrors[0].
        progress.set_source(0);
        let checksum = chosen.checksum;
        let source_name = &self.names[chosen.source];
        let mut stats = PullStats::default();
        let commit_object = ObjectId::new(checksum, ObjectKind::Commit);
        if !self.dest.has_object(commit_object)? {
            progress.expect(1, 0);
            transaction
                .write_metadata(ObjectKind::Commit, &checksum, &chosen.bytes)
                .map_err(|error| PullError::BadObject {
                    object: commit_object,
                    path: None,
                    source_name: source_name.clone(),
                    reason: error.into(),
                })?;
            progress.object_done();
            stats.metadata_objects += 1;
        }
        if let Some(meta) = &chosen.commitmeta {
            // Rewritten even when present: the source's signatures are the ones just checked.
            let new = !self
                .dest
                .has_object(ObjectId::new(checksum, ObjectKind::CommitMeta))?;
            match transaction.write_commitmeta(&checksum, meta) {
                Ok(()) if new => {
                    stats.metadata_objects += 1;
                    progress.expect(1, 0);
                    progress.object_done();
                }
                Ok(()) => {}
                // Only a remote that verifies nothing accepts unreadable detached metadata;
                // the commit is stored without it.
                Err(RepoError::Format { source, .. }) if !chosen.accepted.verdict.is_signed() => {
                    self.reporter.on_event(Event::Message {
                        level: MessageLevel::Warning,
                        text: format!(
                            "the detached metadata of commit {} on {source_name} is invalid \
                             ({source}); it was not copied",
                            checksum.short()
                        ),
                    });
                }
                Err(error) => return Err(PullError::Destination(error)),
            }
        }

        let deltas = delta::DeltaPull {
            dest: self.dest,
            transaction,
            sources: &sources,
            names: &names,
            progress: &progress,
            reporter: self.reporter,
            cancel: self.cancel,
            workers: self.workers,
            sizes: transfer::content_sizes(commit),
            policy,
        };
        let transfer = Transfer {
            dest: self.dest,
            transaction,
            sources: &sources,
            names: &names,
            cancel: self.cancel,
            progress: &progress,
            drive_workers: self.workers,
            parts,
        };
        let (stop, stopped) = crossbeam_channel::bounded::<()>(1);
        // The ticker runs through the delta too: its parts are counted like objects.
        let (applied, fetched) = std::thread::scope(|scope| {
            scope.spawn(|| progress.run_ticker(stopped));
            // A delta makes the whole tree: not for a ref installed in part.
            let applied = (!self.options.no_deltas && parts.is_none())
                .then(|| deltas.run(previous, &checksum));
            let fetched = transfer.fetch_closure(commit);
            drop(stop);
            (applied, fetched)
        });
        if let Some(applied) = applied {
            stats.metadata_objects += applied.metadata_objects;
            stats.content_objects += applied.content_objects;
            // Part bytes read count in the transfer's byte total (progress).
            stats.deltas_used += u64::from(applied.metadata_objects + applied.content_objects > 0);
        }
        progress.finish(started.elapsed());
        let closure = fetched?;
        stats.metadata_objects += closure.metadata_objects;
        stats.content_objects += closure.content_objects;
        stats.bytes += closure.bytes;
        stats.already_present += closure.already_present;
        Ok((stats, progress.shares()))
    }
}
