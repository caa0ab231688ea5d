//! What can be updated, and from where: installed refs matched against every source's offers.
//!
//! For each installed (collection ID, ref) of each [`Target`], [`resolve`] gathers the
//! commits every source offers for it, then keeps a candidate only when:
//! - its commit object re-hashes to its name;
//! - its signature verifies against the target's own configuration for the remote
//!   ([`RemotePolicy`], one verification per commit checksum and policy);
//! - its collection and ref bindings match;
//! - its closure is complete on that source (no `state/<commit>.commitpartial`);
//! - it is not older than what is installed.
//!
//! The newest timestamp wins (commits of the same second are ordered by their parent chain);
//! on a tie a drive beats a computer nearby, which beats upstream.
//! The update lists every source holding the winning commit, preferred first (drives, then
//! fresher summaries), so the pull takes objects from the closest one even when upstream
//! offered the commit first. Every rejected candidate, unreadable source and drive collection
//! unknown to this machine becomes a [`Problem`]; nothing is dropped silently.
//!
//! Matching: drive and LAN refs match by collection ID, never by name alone. Upstream (a
//! remote's own `url`) matches the installed refs of the remotes with that URL, with or
//! without collection IDs.
//!
//! Flatpak apps also get the runtime their new commit names in `xa.metadata` when it is not
//! installed (listed as an update of its own, with no current commit, and named in the app's
//! `needs`), and a display name, summary and icon from the remote's verified AppStream branch.
//! Such a runtime comes from a drive or computer nearby only when the remote's server did not
//! answer (or was not asked: offline), or offers no newer commit of it that passes the checks.
//!
//! Work is spread over threads: every source's refs are read at once, and commits are fetched
//! and verified in parallel, each once. A commit is verified as soon as it is read; only the
//! parsed commits that verified are kept (bytes and signatures are dropped), and commits being
//! read and checked together hold at most [`VERIFY_MEMORY_BUDGET`] bytes.

pub(crate) mod appstream;
pub mod flatpak;
mod parallel;
mod size;
pub mod sources;
mod tree;

#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use crate::object::{
    Checksum, Commit, ObjectId, ObjectKind, MAX_COMMIT_SIZE, MAX_DETACHED_METADATA_SIZE,
};
use crate::repo::Repo;
use crate::schema::{
    AppInfo, AvailableApp, DriveRecord, Problem, ProblemKind, SourceInfo, SourceKind, TargetKind,
    Update, UpdateList,
};
use crate::source::SourceRank;
use crate::source::{source_name, FetchError, Interrupt, OfferedRef, Source};
use crate::target::{InstalledRef, Remote, Target};
use crate::trust::{
    CommitCandidate, InstalledCommit, RemotePolicy, TrustError, TrustRoots, UpdateKind, Verdict,
};

use self::flatpak::needed_runtime;
use self::size::{download_size, LocalObjects};
use crate::appstream::Catalog;
use crate::object::FlatpakRef;

/// How a listing is made.
#[derive(Debug, Clone, Default)]
pub struct ResolveOptions {
    /// Quick check, as on drive insertion: no walk of a commit's objects to measure its size;
    /// sizes come from `ostree.sizes`, else from what the commit records.
    pub quick: bool,
    /// Where the machine's keys live outside repositories.
    pub trust_roots: TrustRoots,
    /// Where app icons are copied; None leaves icons out.
    pub icon_cache: Option<PathBuf>,
    /// Collection IDs known on this machine besides the remotes of the targets listed (for
    /// example installations left out of this listing): drive refs of these collections are
    /// not reported as unknown.
    pub known_collections: BTreeSet<String>,
    /// Also list the apps drives and computers nearby offer that no target has installed
    /// ([`UpdateList::available`]), and count those of unknown collections.
    pub available: bool,
}

/// Lists the updates `sources` offer for `targets`, and every problem met on the way. Also
/// lists the targets' own problems (installed refs that could not be read).
pub fn resolve(
    targets: &[Target],
    sources: &[Arc<dyn Source>],
    options: &ResolveOptions,
) -> UpdateList {
    Resolver::new(targets, sources, options).run()
}

/// The `id` of an update: target kind, installation and ref.
pub fn update_id(kind: TargetKind, installation: &str, ref_name: &str) -> String {
    format!("{}:{installation}:{ref_name}", target_kind_name(kind))
}

fn target_kind_name(kind: TargetKind) -> &'static str {
    match kind {
        TargetKind::Os => "os",
        TargetKind::Flatpak => "flatpak",
        TargetKind::Repo => "repo",
    }
}

/// A ref the resolver looks for in a target.
#[derive(Debug, Clone)]
struct Want {
    target: usize,
    remote: String,
    collection_id: Option<String>,
    ref_name: String,
    /// Index into the target's installed refs; None for a ref not installed yet.
    installed: Option<usize>,
    /// An app no target has installed, offered to be installed ([`UpdateList::available`]).
    offered: bool,
}

/// A commit a source offers for a [`Want`].
#[derive(Debug, Clone, Copy)]
struct Candidate {
    want: usize,
    source: usize,
    commit: Checksum,
}

/// Memory that commits being read and verified at once may take: a commit's bytes, its
/// parse (about three times its size) and its detached metadata. One commit of
/// [`crate::object::MAX_COMMIT_SIZE`] fills it and is checked alone, which keeps a listing
/// within 64 MiB whatever a drive holds.
pub const VERIFY_MEMORY_BUDGET: u64 = 40 * 1024 * 1024;

/// A commit that verified for at least one remote, parsed; its bytes and signatures are not
/// kept.
#[derive(Debug)]
struct FetchedCommit {
    commit: Commit,
    /// Size of the commit object in bytes.
    size: u64,
}

/// What reading a commit from a source gave.
#[derive(Debug, Clone)]
enum Fetched {
    /// Read and found to hash to its name; whether it verified is in `Resolver::verified`,
    /// and the parsed commit, when it did, in `Resolver::commits`.
    Read,
    /// `state/<commit>.commitpartial`: not all of its objects are there.
    Partial,
    Failed {
        kind: ProblemKind,
        reason: String,
    },
}

/// What one read of a commit from a source gave, with its verification for each remote
/// that wanted it.
struct ReadOutcome {
    fetched: Fetched,
    /// The parsed commit, when some remote's policy accepted it.
    commit: Option<Arc<FetchedCommit>>,
    verifications: Vec<(PolicyKey, Result<Verdict, TrustError>)>,
}

/// The commit chosen for a [`Want`].
#[derive(Debug, Clone)]
struct Winner {
    commit: Checksum,
    fetched: Arc<FetchedCommit>,
    verdict: Verdict,
    /// Every source holding it, preferred first.
    sources: Vec<usize>,
}

/// The refs one source offers: ref name → (collection ID, commit).
type Offers = HashMap<String, Vec<(Option<String>, Checksum)>>;
/// A target's remote: (target index, remote name).
type PolicyKey = (usize, String);
/// How verifying one commit for one policy went: its verdict, or each source's refusal.
type Verification = Result<Verdict, Vec<(usize, TrustError)>>;

struct Resolver<'a> {
    targets: &'a [Target],
    sources: &'a [Arc<dyn Source>],
    options: &'a ResolveOptions,
    names: Vec<String>,
    ranks: Vec<SourceRank>,
    /// None for a source whose refs could not be read.
    offers: Vec<Option<Offers>>,
    policies: HashMap<PolicyKey, Result<RemotePolicy, TrustError>>,
    fetched: HashMap<(usize, Checksum), Fetched>,
    /// Commits that verified for some remote, by checksum (the same bytes on every source).
    commits: HashMap<Checksum, Arc<FetchedCommit>>,
    verified: HashMap<(PolicyKey, Checksum), Verification>,
    /// Each target's repository, for what is present locally.
    local: Vec<Option<Repo>>,
    catalogs: HashMap<(usize, Checksum), Option<Arc<Catalog>>>,
    problems: Vec<Problem>,
}

impl<'a> Resolver<'a> {
    fn new(
        targets: &'a [Target],
        sources: &'a [Arc<dyn Source>],
        options: &'a ResolveOptions,
    ) -> Self {
        Self {
            targets,
            sources,
            options,
            names: sources.iter().map(|s| source_name(s.info())).collect(),
            ranks: sources.iter().map(|s| s.rank()).collect(),
            offers: Vec::new(),
            policies: HashMap::new(),
            fetched: HashMap::new(),
            commits: HashMap::new(),
            verified: HashMap::new(),
            local: Vec::new(),
            catalogs: HashMap::new(),
            problems: Vec::new(),
        }
    }

    fn run(mut self) -> UpdateList {
        for target in self.targets {
            self.problems.extend(target.problems.iter().cloned());
        }
        self.read_offers();
        self.report_unmatched_offers();
        self.local = self
            .targets
            .iter()
            .map(|target| Repo::open(&target.repo).ok())
            .collect();

        let mut wants = self.installed_wants();
        let mut unknown_available = 0;
        if self.options.available {
            let (offered, unknown) = self.available_wants();
            wants.extend(offered);
            unknown_available = unknown;
        }
        let mut found: Vec<(Want, Winner)> = self
            .evaluate_wants(wants)
            .into_iter()
            .filter_map(|(want, winner)| winner.map(|w| (want, w)))
            .collect();

        // Second round: runtimes the new app commits need, and the AppStream branches that
        // name and picture the apps.
        let (mut needs, runtime_wants) = self.needed_runtimes(&found);
        let appstream_wants = self.appstream_wants(&found);
        let runtime_count = runtime_wants.len();
        let mut extra =
            self.evaluate_wants(runtime_wants.into_iter().chain(appstream_wants).collect());
        let appstream = extra.split_off(runtime_count);
        for (want, winner) in &mut extra {
            if let Some(refusal) = winner.as_ref().and_then(|w| self.runtime_refusal(want, w)) {
                self.problems.push(refusal);
                *winner = None;
            } else if winner.is_none() {
                let by_update = found.iter().zip(&needs).any(|((app, _), app_needs)| {
                    !app.offered && app.target == want.target && app_needs.contains(&want.ref_name)
                });
                let needed_by = if by_update {
                    "an update"
                } else {
                    "an app a drive offers"
                };
                self.problems.push(Problem {
                    kind: ProblemKind::Unavailable,
                    source: self.targets[want.target].repo.display().to_string(),
                    origin: None,
                    ref_name: Some(want.ref_name.clone()),
                    reason: format!(
                        "{} is needed by {needed_by} but is not installed, and no source offers \
                         a usable commit of it: insert a drive that carries it, or go online",
                        want.ref_name
                    ),
                });
            }
        }
        let installed_updates = found.len();
        found.extend(
            extra
                .into_iter()
                .filter_map(|(want, winner)| winner.map(|w| (want, w))),
        );
        needs.resize(found.len(), Vec::new());
        let apps = self.app_infos(&found[..installed_updates], &appstream);
        let sizes = self.measure(&found);

        // Runtimes only apps not installed need go with those apps, not into the updates.
        let needed_by_updates = |index: usize| {
            let (runtime, _) = &found[index];
            (0..installed_updates).any(|i| {
                !found[i].0.offered
                    && found[i].0.target == runtime.target
                    && needs[i].contains(&runtime.ref_name)
            })
        };
        let in_updates: Vec<bool> = (0..found.len())
            .map(|index| {
                if index < installed_updates {
                    !found[index].0.offered
                } else {
                    needed_by_updates(index)
                }
            })
            .collect();
        let all: Vec<Update> = (0..found.len())
            .map(|index| {
                let (want, winner) = &found[index];
                let app = apps.get(index).cloned().flatten();
                self.update(want, winner, sizes[index], needs[index].clone(), app)
            })
            .collect();
        let available = self.available_apps(&found, &all, &sizes, installed_updates);

        // Per target: installed refs first, then the runtimes their updates need.
        let mut order: Vec<usize> = (0..found.len()).filter(|&i| in_updates[i]).collect();
        order.sort_by_key(|&index| (found[index].0.target, index));
        let updates = order.into_iter().map(|index| all[index].clone()).collect();
        UpdateList {
            updates,
            problems: dedup_problems(std::mem::take(&mut self.problems)),
            available,
            unknown_available,
        }
    }

    /// Apps on drives and computers nearby that no target has installed, for the Flatpak
    /// target whose enabled remote has their collection ID (the system installation first),
    /// and how many app refs belong to collections no remote here knows.
    fn available_wants(&self) -> (Vec<Want>, u64) {
        let installed_apps: HashSet<&str> = self
            .targets
            .iter()
            .filter(|t| t.kind == TargetKind::Flatpak)
            .flat_map(|t| t.installed.iter().map(|i| i.ref_name.as_str()))
            .collect();
        // Collection ID → (target, remote), the system installation preferred.
        let mut homes: HashMap<&str, (usize, &str)> = HashMap::new();
        let mut flatpak_targets: Vec<usize> = (0..self.targets.len())
            .filter(|&i| self.targets[i].kind == TargetKind::Flatpak)
            .collect();
        flatpak_targets.sort_by_key(|&i| (self.targets[i].installation != "system", i));
        for &index in &flatpak_targets {
            for remote in &self.targets[index].remotes {
                if let (Some(collection_id), false) =
                    (remote.collection_id.as_deref(), remote.disabled)
                {
                    homes
                        .entry(collection_id)
                        .or_insert((index, remote.name.as_str()));
                }
            }
        }
        let known_elsewhere = |collection_id: &str| {
            self.options.known_collections.contains(collection_id)
                || self.targets.iter().any(|t| {
                    t.remotes
                        .iter()
                        .any(|r| r.collection_id.as_deref() == Some(collection_id))
                })
        };
        let mut wants: Vec<Want> = Vec::new();
        let mut unknown: BTreeSet<(&str, &str)> = BTreeSet::new();
        for (index, offers) in self.offers.iter().enumerate() {
            let Some(offers) = offers else { continue };
            // A server's whole catalogue is not "on this drive".
            if self.sources[index].info().kind == SourceKind::Upstream {
                continue;
            }
            for (ref_name, entries) in offers {
                if !FlatpakRef::parse(ref_name).is_some_and(|r| r.is_app)
                    || installed_apps.contains(ref_name.as_str())
                {
                    continue;
                }
                for (collection_id, _) in entries {
                    let Some(collection_id) = collection_id.as_deref() else {
                        continue;
                    };
                    match homes.get(collection_id) {
                        Some(&(target, remote)) => push_once(
                            &mut wants,
                            Want {
                                target,
                                remote: remote.to_owned(),
                                collection_id: Some(collection_id.to_owned()),
                                ref_name: ref_name.clone(),
                                installed: None,
                                offered: true,
                            },
                        ),
                        None if !known_elsewhere(collection_id) => {
                            unknown.insert((collection_id, ref_name.as_str()));
                        }
                        None => {}
                    }
                }
            }
        }
        wants.sort_by(|a, b| a.ref_name.cmp(&b.ref_name));
        (wants, unknown.len() as u64)
    }

    /// The offered apps among `found` (with their updates in `all`), each with the missing
    /// runtimes it needs; an app whose runtime no source offers is left out (the problem
    /// says why).
    fn available_apps(
        &self,
        found: &[(Want, Winner)],
        all: &[Update],
        sizes: &[u64],
        first_runtime: usize,
    ) -> Vec<AvailableApp> {
        let mut apps = Vec::new();
        for index in 0..first_runtime.min(found.len()) {
            let (want, _) = &found[index];
            if !want.offered {
                continue;
            }
            let app = &all[index];
            let mut runtimes = Vec::new();
            let mut download_size = sizes[index];
            for need in &app.needs {
                let runtime = (first_runtime..found.len())
                    .find(|&i| found[i].0.target == want.target && &found[i].0.ref_name == need);
                let Some(runtime) = runtime else { break };
                runtimes.push(all[runtime].clone());
                download_size = download_size.saturating_add(sizes[runtime]);
            }
            if runtimes.len() == app.needs.len() {
                apps.push(AvailableApp {
                    app: app.clone(),
                    runtimes,
                    download_size,
                });
            }
        }
        apps
    }

    /// Runtimes the new app commits in `found` need but their installation lacks: what each
    /// update needs (by position), and the refs to look for.
    fn needed_runtimes(&self, found: &[(Want, Winner)]) -> (Vec<Vec<String>>, Vec<Want>) {
        let mut needs: Vec<Vec<String>> = vec![Vec::new(); found.len()];
        let mut wants: Vec<Want> = Vec::new();
        // Sets, so the work grows linearly with the installed refs and the updates found.
        let installed: HashSet<(usize, &str)> = self
            .targets
            .iter()
            .enumerate()
            .flat_map(|(index, target)| {
                target
                    .installed
                    .iter()
                    .map(move |i| (index, i.ref_name.as_str()))
            })
            .collect();
        let mut wanted: HashSet<(usize, String, String)> = HashSet::new();
        for (index, (want, winner)) in found.iter().enumerate() {
            let target = &self.targets[want.target];
            if target.kind != TargetKind::Flatpak {
                continue;
            }
            let Some(runtime) = needed_runtime(&winner.fetched.commit) else {
                continue;
            };
            if installed.contains(&(want.target, runtime.as_str())) {
                continue;
            }
            needs[index].push(runtime.clone());
            if wanted.insert((want.target, want.remote.clone(), runtime.clone())) {
                wants.push(Want {
                    ref_name: runtime,
                    installed: None,
                    offered: false,
                    ..want.clone()
                });
            }
        }
        (needs, wants)
    }

    /// Why the chosen commit of a runtime that is not installed yet cannot be taken, if it
    /// cannot. Online (a server at the remote's URL answered with its refs), the commit must be
    /// at least as new as the newest commit of the runtime that server offers and that passes
    /// the checks; a drive or computer nearby could otherwise bring an old runtime the server
    /// has long replaced, which no downgrade check catches since nothing is installed.
    /// Offline (`--offline`, or the server unreachable) what the drives carry is taken.
    fn runtime_refusal(&self, want: &Want, winner: &Winner) -> Option<Problem> {
        let remote_url = normalize_url(self.remote(want)?.url.as_deref()?);
        let servers: Vec<usize> = (0..self.sources.len())
            .filter(|&index| {
                let info = self.sources[index].info();
                info.kind == SourceKind::Upstream
                    && normalize_url(&info.location) == remote_url
                    && matches!(self.offers.get(index), Some(Some(_)))
            })
            .collect();
        if servers.is_empty() {
            return None;
        }
        let newest_on_server = self
            .candidates(0, want)
            .iter()
            .filter(|candidate| servers.contains(&candidate.source))
            .filter_map(|candidate| self.check(want, candidate).ok().flatten())
            .map(|(timestamp, _)| timestamp)
            .max();
        let source = winner
            .sources
            .first()
            .map_or_else(|| remote_url.clone(), |&index| self.names[index].clone());
        let origin = winner
            .sources
            .first()
            .map(|&index| Box::new(self.sources[index].info().clone()));
        let problem = |kind: ProblemKind, reason: String| Problem {
            kind,
            source: source.clone(),
            origin: origin.clone(),
            ref_name: Some(want.ref_name.clone()),
            reason,
        };
        let timestamp = winner.fetched.commit.timestamp;
        match newest_on_server {
            Some(newest) if newest <= timestamp => None,
            Some(_) => Some(problem(
                ProblemKind::Downgrade,
                format!(
                    "{} is not installed and commit {}… on {source} is older than what                      {remote_url} offers: install it from {remote_url}",
                    want.ref_name,
                    winner.commit.short()
                ),
            )),
            None => Some(problem(
                ProblemKind::Unavailable,
                format!(
                    "{} is not installed, and {remote_url} offers no usable commit of it to                      show that commit {}… on {source} is current: a runtime that is not                      installed is taken from a drive or computer nearby only when it is as new                      as the server's, or when offline (--offline)",
                    want.ref_name,
                    winner.commit.short()
                ),
            )),
        }
    }

    /// The AppStream branches (`appstream2/<arch>`, then `appstream/<arch>`) of the remotes
    /// the app updates in `found` come from.
    fn appstream_wants(&self, found: &[(Want, Winner)]) -> Vec<Want> {
        let mut wants = Vec::new();
        for (want, _) in found {
            if self.targets[want.target].kind != TargetKind::Flatpak {
                continue;
            }
            let Some(app) = FlatpakRef::parse(&want.ref_name).filter(|r| r.is_app) else {
                continue;
            };
            for branch in ["appstream2", "appstream"] {
                push_once(
                    &mut wants,
                    Want {
                        ref_name: format!("{branch}/{}", app.arch),
                        installed: None,
                        offered: false,
                        ..want.clone()
                    },
                );
            }
        }
        wants
    }

    /// Each want with its winner, if any.
    fn evaluate_wants(&mut self, wants: Vec<Want>) -> Vec<(Want, Option<Winner>)> {
        let winners = self.evaluate(&wants);
        wants.into_iter().zip(winners).collect()
    }

    /// Every source's refs, read in parallel.
    fn read_offers(&mut self) {
        let indices: Vec<usize> = (0..self.sources.len()).collect();
        let sources = self.sources;
        let results: Vec<Result<Vec<OfferedRef>, FetchError>> =
            parallel::map(&indices, 16, |&index| sources[index].refs());
        for (index, result) in results.into_iter().enumerate() {
            match result {
                Ok(refs) => {
                    let mut offers: Offers = HashMap::new();
                    for offered in refs {
                        offers
                            .entry(offered.ref_name)
                            .or_default()
                            .push((offered.collection_id, offered.commit));
                    }
                    self.offers.push(Some(offers));
                }
                Err(error) => {
                    self.problems.push(Problem {
                        kind: fetch_problem_kind(&error),
                        source: self.names[index].clone(),
                        origin: Some(Box::new(self.sources[index].info().clone())),
                        ref_name: None,
                        reason: format!("{error}: check the drive or connection and try again"),
                    });
                    self.offers.push(None);
                }
            }
        }
    }

    /// Drive and LAN refs nobody here can take: collections no remote on this machine has,
    /// and refs without a collection ID that share a name with an installed ref.
    fn report_unmatched_offers(&mut self) {
        let mut known: HashSet<&str> = self
            .options
            .known_collections
            .iter()
            .map(String::as_str)
            .collect();
        for target in self.targets {
            known.extend(
                target
                    .remotes
                    .iter()
                    .filter_map(|remote| remote.collection_id.as_deref()),
            );
        }
        let installed_names: HashSet<&str> = self
            .targets
            .iter()
            .flat_map(|t| t.installed.iter())
            .filter(|i| i.collection_id.is_some())
            .map(|i| i.ref_name.as_str())
            .collect();
        let mut found = Vec::new();
        for (index, offers) in self.offers.iter().enumerate() {
            let Some(offers) = offers else { continue };
            if self.sources[index].info().kind == SourceKind::Upstream {
                continue;
            }
            let mut unknown: BTreeSet<&str> = BTreeSet::new();
            let mut unbound: BTreeSet<&str> = BTreeSet::new();
            for (ref_name, entries) in offers {
                for (collection_id, _) in entries {
                    match collection_id.as_deref() {
                        Some(id) if !known.contains(id) => {
                            unknown.insert(id);
                        }
                        None if installed_names.contains(ref_name.as_str()) => {
                            unbound.insert(ref_name);
                        }
                        _ => {}
                    }
                }
            }
            for collection_id in unknown {
                found.push(Problem {
                    kind: ProblemKind::UnknownCollection,
                    source: self.names[index].clone(),
                    origin: Some(Box::new(self.sources[index].info().clone())),
                    ref_name: None,
                    reason: self.unknown_collection_reason(collection_id),
                });
            }
            for ref_name in unbound {
                found.push(Problem {
                    kind: ProblemKind::UnknownCollection,
                    source: self.names[index].clone(),
                    origin: Some(Box::new(self.sources[index].info().clone())),
                    ref_name: Some(ref_name.to_owned()),
                    reason: format!(
                        "{ref_name} on {} has no collection ID, so Ferry cannot tell which remote \
                         it belongs to: write the drive with `ostree create-usb` or `flatpak \
                         create-usb`",
                        self.names[index]
                    ),
                });
            }
        }
        self.problems.extend(found);
    }

    fn unknown_collection_reason(&self, collection_id: &str) -> String {
        match self.targets {
            [target] => TrustError::UnknownCollection {
                repo: target.repo.clone(),
                collection_id: collection_id.to_owned(),
            }
            .to_string(),
            [] => format!(
                "no remote on this machine has collection ID {collection_id}: add the remote \
                 first"
            ),
            targets => format!(
                "no remote in {} has collection ID {collection_id}: add the remote first",
                targets
                    .iter()
                    .map(|t| t.repo.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
        }
    }

    /// The installed refs of every target that a usable remote can update.
    fn installed_wants(&self) -> Vec<Want> {
        let mut wants = Vec::new();
        for (target_index, target) in self.targets.iter().enumerate() {
            for (installed_index, installed) in target.installed.iter().enumerate() {
                let Some(remote_name) = installed.remote.as_deref() else {
                    continue;
                };
                match target.remote(remote_name) {
                    Some(remote) if remote.disabled => {
                        tracing::debug!(remote = remote_name, ref_name = %installed.ref_name,
                            "remote is disabled; not looking for updates");
                        continue;
                    }
                    Some(_) => {}
                    None => {
                        tracing::debug!(remote = remote_name, ref_name = %installed.ref_name,
                            "remote is no longer configured; not looking for updates");
                        continue;
                    }
                }
                wants.push(Want {
                    target: target_index,
                    remote: remote_name.to_owned(),
                    collection_id: installed.collection_id.clone(),
                    ref_name: installed.ref_name.clone(),
                    installed: Some(installed_index),
                    offered: false,
                });
            }
        }
        wants
    }

    fn installed(&self, want: &Want) -> Option<&'a InstalledRef> {
        let targets: &'a [Target] = self.targets;
        want.installed
            .and_then(|index| targets[want.target].installed.get(index))
    }

    fn remote(&self, want: &Want) -> Option<&'a Remote> {
        let targets: &'a [Target] = self.targets;
        targets[want.target].remote(&want.remote)
    }

    /// The commits each source offers for `want`, leaving out the installed commit.
    fn candidates(&self, want_index: usize, want: &Want) -> Vec<Candidate> {
        let installed = self.installed(want).map(|i| i.commit);
        let remote_url = self
            .remote(want)
            .and_then(|r| r.url.as_deref())
            .map(normalize_url);
        let mut found = Vec::new();
        for (source_index, offers) in self.offers.iter().enumerate() {
            let Some(entries) = offers.as_ref().and_then(|o| o.get(&want.ref_name)) else {
                continue;
            };
            let info = self.sources[source_index].info();
            let upstream = info.kind == SourceKind::Upstream;
            if upstream && remote_url.as_deref() != Some(normalize_url(&info.location).as_str()) {
                continue;
            }
            for (collection_id, commit) in entries {
                let matches = match (collection_id.as_deref(), want.collection_id.as_deref()) {
                    (Some(offered), Some(wanted)) => offered == wanted,
                    // Without collection IDs on both sides, only the remote's own URL counts.
                    _ => upstream,
                };
                if matches && Some(*commit) != installed {
                    found.push(Candidate {
                        want: want_index,
                        source: source_index,
                        commit: *commit,
                    });
                }
            }
        }
        found
    }

    /// Checks every candidate of `wants` and picks each one's winner.
    fn evaluate(&mut self, wants: &[Want]) -> Vec<Option<Winner>> {
        let candidates: Vec<Candidate> = wants
            .iter()
            .enumerate()
            .flat_map(|(index, want)| self.candidates(index, want))
            .collect();
        for want in wants {
            self.load_policy(want);
        }
        self.read_and_verify(wants, &candidates);

        let mut accepted: Vec<Vec<(Candidate, u64, Verdict)>> = vec![Vec::new(); wants.len()];
        for candidate in &candidates {
            let want = &wants[candidate.want];
            match self.check(want, candidate) {
                Ok(Some((timestamp, verdict))) => {
                    accepted[candidate.want].push((*candidate, timestamp, verdict))
                }
                Ok(None) => {}
                Err(problem) => self.problems.push(problem),
            }
        }
        accepted
            .into_iter()
            .map(|choices| self.choose(choices))
            .collect()
    }

    /// Reads, in parallel, each (source, commit) not read yet for every remote that wants
    /// it: completeness first, then the commit object (checked against its name) and its
    /// detached metadata, verified at once; only what verified is kept. The first source
    /// whose signatures verify vouches for the commit wherever it is.
    fn read_and_verify(&mut self, wants: &[Want], candidates: &[Candidate]) {
        let mut jobs: HashMap<(usize, Checksum), Vec<PolicyKey>> = HashMap::new();
        for candidate in candidates {
            let want = &wants[candidate.want];
            let policy_key = (want.target, want.remote.clone());
            let read = (candidate.source, candidate.commit);
            let decided = match self.fetched.get(&read) {
                None => false,
                Some(Fetched::Read) => self
                    .verified
                    .get(&(policy_key.clone(), candidate.commit))
                    .is_some_and(|v| {
                        v.is_ok()
                            || v.as_ref()
                                .is_err_and(|r| r.iter().any(|(s, _)| *s == read.0))
                    }),
                Some(_) => true,
            };
            if decided {
                continue;
            }
            let policies = jobs.entry(read).or_default();
            if !policies.contains(&policy_key) {
                policies.push(policy_key);
            }
        }
        let mut jobs: Vec<((usize, Checksum), Vec<PolicyKey>)> = jobs.into_iter().collect();
        jobs.sort_by_key(|job| job.0);
        let sources = self.sources;
        let names = &self.names;
        let policies = &self.policies;
        let budget = parallel::MemoryBudget::new(VERIFY_MEMORY_BUDGET);
        let results = parallel::map(
            &jobs,
            parallel::cpu_threads() * 2,
            |((index, commit), wanted_by)| {
                let wanted: Vec<(&PolicyKey, &RemotePolicy)> = wanted_by
                    .iter()
                    .filter_map(|key| match policies.get(key) {
                        Some(Ok(policy)) => Some((key, policy)),
                        // The policy's own problem is already listed.
                        _ => None,
                    })
                    .collect();
                read_commit(
                    sources[*index].as_ref(),
                    &names[*index],
                    commit,
                    &wanted,
                    &budget,
                )
            },
        );
        for (((index, commit), _), outcome) in jobs.into_iter().zip(results) {
            self.fetched.insert((index, commit), outcome.fetched);
            if let Some(parsed) = outcome.commit {
                self.commits.entry(commit).or_insert(parsed);
            }
            for (policy_key, result) in outcome.verifications {
                let entry = self
                    .verified
                    .entry((policy_key, commit))
                    .or_insert_with(|| Err(Vec::new()));
                match (result, &mut *entry) {
                    (_, Ok(_)) => {}
                    (Ok(verdict), entry) => *entry = Ok(verdict),
                    (Err(error), Err(refusals)) => refusals.push((index, error)),
                }
            }
        }
        // Refusals in source preference order: the best source's reason is shown first.
        let ranks = &self.ranks;
        for verification in self.verified.values_mut() {
            if let Err(refusals) = verification {
                refusals.sort_by_key(|(index, _)| preference(ranks[*index], *index));
            }
        }
    }

    fn load_policy(&mut self, want: &Want) {
        let key = (want.target, want.remote.clone());
        if self.policies.contains_key(&key) {
            return;
        }
        let target = &self.targets[want.target];
        let policy = match target.remote(&want.remote) {
            Some(remote) => RemotePolicy::load(
                &remote.trust_config(),
                &target.trust,
                &self.options.trust_roots,
            ),
            None => Err(TrustError::Config {
                remote: want.remote.as_str().into(),
                detail: format!("it is not configured in {}", target.repo.display()),
            }),
        };
        if let Err(error) = &policy {
            self.problems.push(Problem {
                kind: error.problem_kind(),
                source: target.repo.display().to_string(),
                origin: None,
                ref_name: None,
                reason: error.to_string(),
            });
        }
        self.policies.insert(key, policy);
    }

    /// One candidate's verdict: accepted with its timestamp, skipped (nothing to report), or a
    /// problem saying why it was refused.
    fn check(&self, want: &Want, candidate: &Candidate) -> Result<Option<(u64, Verdict)>, Problem> {
        let source = &self.names[candidate.source];
        let origin = self.sources[candidate.source].info();
        let problem = |kind: ProblemKind, reason: String| Problem {
            kind,
            source: source.clone(),
            origin: Some(Box::new(origin.clone())),
            ref_name: Some(want.ref_name.clone()),
            reason,
        };
        match self.fetched.get(&(candidate.source, candidate.commit)) {
            Some(Fetched::Read) => {}
            Some(Fetched::Partial) => {
                return Err(problem(
                    ProblemKind::PartialCommit,
                    format!(
                        "commit {}… of {} on {source} is only partly there (it is marked \
                         state/{}.commitpartial): copy it onto the drive again, or use another \
                         source",
                        candidate.commit.short(),
                        want.ref_name,
                        candidate.commit
                    ),
                ))
            }
            Some(Fetched::Failed { kind, reason }) => return Err(problem(*kind, reason.clone())),
            None => return Ok(None),
        }
        let key = (want.target, want.remote.clone());
        let Some(Ok(policy)) = self.policies.get(&key) else {
            return Ok(None);
        };
        let verdict = match self.verified.get(&(key, candidate.commit)) {
            Some(Ok(verdict)) => verdict.clone(),
            Some(Err(refusals)) => {
                let error = refusals
                    .iter()
                    .find(|(index, _)| *index == candidate.source)
                    .or_else(|| refusals.first())
                    .map(|(_, error)| error);
                return match error {
                    Some(error) => Err(error.to_problem(origin, Some(&want.ref_name))),
                    None => Ok(None),
                };
            }
            None => return Ok(None),
        };
        let Some(data) = self.commits.get(&candidate.commit) else {
            return Ok(None);
        };
        let installed = self.installed(want).map(|i| InstalledCommit {
            checksum: i.commit,
            timestamp: i.timestamp,
        });
        match policy.check_verified_commit_for_ref(
            &candidate.commit,
            &data.commit,
            verdict,
            source,
            &want.ref_name,
            installed,
            false,
        ) {
            Ok(accepted) if accepted.update == UpdateKind::UpToDate => Ok(None),
            Ok(accepted) => Ok(Some((accepted.timestamp, accepted.verdict))),
            Err(error) => Err(error.to_problem(origin, Some(&want.ref_name))),
        }
    }

    /// The newest accepted commit (ties go to the better source), with every source holding
    /// it, preferred first.
    fn choose(&self, accepted: Vec<(Candidate, u64, Verdict)>) -> Option<Winner> {
        let best_source = |commit: Checksum| {
            accepted
                .iter()
                .filter(|(c, _, _)| c.commit == commit)
                .map(|(c, _, _)| preference(self.ranks[c.source], c.source))
                .min()
        };
        // Commits made within one second share a timestamp; the parent chain still orders them.
        let parent_of = |commit: Checksum| self.commits.get(&commit)?.commit.parent;
        let descends_from = |child: Checksum, ancestor: Checksum| {
            let mut current = parent_of(child);
            for _ in 0..accepted.len() {
                match current {
                    Some(parent) if parent == ancestor => return true,
                    Some(parent) => current = parent_of(parent),
                    None => return false,
                }
            }
            false
        };
        let lineage = |a: Checksum, b: Checksum| {
            if a == b {
                std::cmp::Ordering::Equal
            } else if descends_from(a, b) {
                std::cmp::Ordering::Greater
            } else if descends_from(b, a) {
                std::cmp::Ordering::Less
            } else {
                std::cmp::Ordering::Equal
            }
        };
        let (winner, _, verdict) = accepted.iter().max_by(|a, b| {
            a.1.cmp(&b.1)
                .then_with(|| lineage(a.0.commit, b.0.commit))
                .then_with(|| best_source(b.0.commit).cmp(&best_source(a.0.commit)))
                .then_with(|| b.0.commit.cmp(&a.0.commit))
        })?;
        let mut holders: Vec<usize> = accepted
            .iter()
            .filter(|(c, _, _)| c.commit == winner.commit)
            .map(|(c, _, _)| c.source)
            .collect();
        // Drives holding the whole commit without a ref to it still save a download.
        for (index, source) in self.sources.iter().enumerate() {
            let object = crate::object::ObjectId::new(winner.commit, ObjectKind::Commit);
            if !holders.contains(&index)
                && source.info().kind != SourceKind::Upstream
                && source.has_object(object) == Some(true)
                && matches!(source.commit_is_complete(&winner.commit), Ok(true))
            {
                holders.push(index);
            }
        }
        holders.sort_by_key(|&index| preference(self.ranks[index], index));
        holders.dedup();
        let fetched = self.commits.get(&winner.commit)?;
        Some(Winner {
            commit: winner.commit,
            fetched: fetched.clone(),
            verdict: verdict.clone(),
            sources: holders,
        })
    }

    /// Download sizes, measured in parallel (walks only when a commit has no sizes and the
    /// listing is not quick).
    fn measure(&mut self, found: &[(Want, Winner)]) -> Vec<u64> {
        let sources = self.sources;
        let local = &self.local;
        let quick = self.options.quick;
        let names = &self.names;
        let results = parallel::map(found, parallel::cpu_threads(), |(want, winner)| {
            let Some(&preferred) = winner.sources.first() else {
                return (0, None);
            };
            let measured = download_size(
                &winner.commit,
                &winner.fetched.commit,
                winner.fetched.size,
                &LocalObjects(local[want.target].as_ref()),
                sources[preferred].as_ref(),
                quick,
            );
            let problem = measured.incomplete.map(|reason| Problem {
                kind: ProblemKind::Corrupt,
                source: names[preferred].clone(),
                origin: Some(Box::new(sources[preferred].info().clone())),
                ref_name: Some(want.ref_name.clone()),
                reason: format!(
                    "the size of commit {}… could not be measured fully ({reason}); fetching it \
                     from this source will likely fail",
                    winner.commit.short()
                ),
            });
            (measured.bytes, problem)
        });
        results
            .into_iter()
            .map(|(bytes, problem)| {
                self.problems.extend(problem);
                bytes
            })
            .collect()
    }

    /// AppStream names, summaries and icons for the app updates in `found`.
    fn app_infos(
        &mut self,
        found: &[(Want, Winner)],
        appstream: &[(Want, Option<Winner>)],
    ) -> Vec<Option<AppInfo>> {
        let mut infos = Vec::with_capacity(found.len());
        for (want, _) in found {
            let Some(app) = FlatpakRef::parse(&want.ref_name).filter(|r| r.is_app) else {
                infos.push(None);
                continue;
            };
            if self.targets[want.target].kind != TargetKind::Flatpak {
                infos.push(None);
                continue;
            }
            let branches = [
                format!("appstream2/{}", app.arch),
                format!("appstream/{}", app.arch),
            ];
            let mut info = None;
            for branch in &branches {
                let Some(winner) = appstream.iter().find_map(|(w, winner)| {
                    (w.target == want.target && w.remote == want.remote && &w.ref_name == branch)
                        .then_some(winner.as_ref())
                        .flatten()
                }) else {
                    continue;
                };
                if let Some(found) = self.app_info(winner, app.id) {
                    info = Some(found);
                    break;
                }
            }
            infos.push(info);
        }
        infos
    }

    fn app_info(&mut self, appstream: &Winner, app_id: &str) -> Option<AppInfo> {
        let &source_index = appstream.sources.first()?;
        let source = self.sources[source_index].as_ref();
        let root = appstream.fetched.commit.root_tree;
        let catalog = self
            .catalogs
            .entry((source_index, appstream.commit))
            .or_insert_with(|| match appstream::read_catalog(source, &root) {
                Ok(catalog) => Some(Arc::new(catalog)),
                Err(reason) => {
                    tracing::warn!(source = %source_name(source.info()), %reason,
                        "AppStream data cannot be read");
                    None
                }
            })
            .clone()?;
        let entry = catalog.get(app_id)?;
        let icon = self.options.icon_cache.as_deref().and_then(|dir| {
            match appstream::cache_icon(source, &root, app_id, dir) {
                Ok(path) => path.map(|p| p.display().to_string()),
                Err(reason) => {
                    tracing::warn!(app_id, %reason, "app icon cannot be cached");
                    None
                }
            }
        });
        Some(AppInfo {
            name: entry.name.clone(),
            summary: entry.summary.clone(),
            version: entry.version.clone(),
            icon,
        })
    }

    fn update(
        &self,
        want: &Want,
        winner: &Winner,
        download_size: u64,
        needs: Vec<String>,
        app: Option<AppInfo>,
    ) -> Update {
        let target = &self.targets[want.target];
        let installed = self.installed(want);
        let commit = &winner.fetched.commit;
        let mut sources: Vec<SourceInfo> = Vec::new();
        for &index in &winner.sources {
            let info = self.sources[index].info();
            if !sources.iter().any(|s| s.location == info.location) {
                sources.push(info.clone());
            }
        }
        Update {
            id: update_id(target.kind, &target.installation, &want.ref_name),
            target: target.kind,
            installation: Some(target.installation.clone()),
            remote: want.remote.clone(),
            collection_id: want.collection_id.clone(),
            ref_name: want.ref_name.clone(),
            current_commit: installed.map(|i| i.commit),
            commit: winner.commit,
            current_version: installed.and_then(|i| i.version.clone()),
            // Flatpak commits rarely carry a version; their AppStream data does.
            version: commit
                .version()
                .map(str::to_owned)
                .or_else(|| app.as_ref().and_then(|app| app.version.clone())),
            timestamp: commit.timestamp,
            subject: commit.subject.clone(),
            body: commit.body.clone(),
            download_size,
            signed: winner.verdict.is_signed(),
            sources,
            needs,
            app,
        }
    }
}

/// Adds `want` unless the same ref of the same target and remote is already wanted.
fn push_once(wants: &mut Vec<Want>, want: Want) {
    let same = |w: &Want| {
        w.target == want.target && w.remote == want.remote && w.ref_name == want.ref_name
    };
    if !wants.iter().any(same) {
        wants.push(want);
    }
}

/// The one rule between two listed offers of the same update, for listings that meet after
/// resolution ([`add_recorded`]): the newer commit wins; on a tie, the offer whose preferred
/// source is closer (a drive, then a computer nearby, then upstream), as [`resolve`] decides
/// among candidates. `Greater` when `a` is preferred.
pub fn compare_offers(a: &Update, b: &Update) -> std::cmp::Ordering {
    let closest = |update: &Update| {
        std::cmp::Reverse(
            update
                .sources
                .first()
                .map_or(SourceKind::Upstream, |s| s.kind),
        )
    };
    a.timestamp
        .cmp(&b.timestamp)
        .then_with(|| closest(a).cmp(&closest(b)))
}

/// Adds to `list` what the hook recorded on drives this listing did not read (`read` holds
/// every source it read; a drive is read when one of them carries its record ID), for
/// example drives mounted where only root may look. Each recorded update competes with the
/// listed one of the same ID by [`compare_offers`]; the same commit on both keeps every
/// source, the preferred first. Such a drive's recorded problems replace those this listing
/// met trying to read it. Records are expected marked ([`DriveRecord::mark_sources`]).
pub fn add_recorded(list: &mut UpdateList, records: &[DriveRecord], read: &[SourceInfo]) {
    for record in records {
        if read
            .iter()
            .any(|source| source.drive.as_ref() == Some(&record.id))
        {
            continue;
        }
        list.problems.retain(|problem| {
            let unread = problem.drive() == Some(record.id.as_str());
            if unread {
                tracing::info!(drive = %record.display_name(), reason = %problem.reason, "cannot read the drive; using what the hook recorded");
            }
            !unread
        });
        list.problems.extend(record.problems.iter().cloned());
        for recorded in &record.updates {
            let Some(listed) = list.updates.iter_mut().find(|u| u.id == recorded.id) else {
                list.updates.push(recorded.clone());
                continue;
            };
            let same_commit = listed.commit == recorded.commit;
            let other_sources = if compare_offers(recorded, listed).is_gt() {
                std::mem::replace(listed, recorded.clone()).sources
            } else {
                recorded.sources.clone()
            };
            if same_commit {
                for source in other_sources {
                    if !listed.sources.contains(&source) {
                        listed.sources.push(source);
                    }
                }
            }
        }
    }
}

/// Sort key of a source: drives, then nearby computers, then upstream; fresher summaries
/// first; then the order sources were given in.
fn preference(rank: SourceRank, index: usize) -> (SourceKind, std::cmp::Reverse<u64>, usize) {
    (
        rank.kind,
        std::cmp::Reverse(rank.summary_timestamp.unwrap_or(0)),
        index,
    )
}

fn normalize_url(url: &str) -> String {
    url.trim().trim_end_matches('/').to_owned()
}

fn fetch_problem_kind(error: &FetchError) -> ProblemKind {
    match error {
        FetchError::Unavailable { .. } => ProblemKind::Unavailable,
        FetchError::Busy { .. } => ProblemKind::Busy,
        FetchError::NotFound { .. } => ProblemKind::Corrupt,
        FetchError::Failed { .. } | FetchError::Interrupted { .. } => ProblemKind::Unreadable,
    }
}

/// Memory a read of `commit` from `source` plans for: its bytes, about three times that
/// while it is parsed, and its detached metadata twice (bytes and signatures).
fn read_cost(source: &dyn Source, commit: &Checksum) -> u64 {
    let size = source
        .metadata_size(ObjectId::new(*commit, ObjectKind::Commit))
        .unwrap_or(MAX_COMMIT_SIZE)
        .min(MAX_COMMIT_SIZE);
    let detached = source
        .metadata_size(ObjectId::new(*commit, ObjectKind::CommitMeta))
        .unwrap_or(MAX_DETACHED_METADATA_SIZE)
        .min(MAX_DETACHED_METADATA_SIZE);
    size.saturating_mul(4)
        .saturating_add(detached.saturating_mul(2))
}

/// Reads a commit from a source (whether its closure is complete there, its bytes checked
/// against its name and parsed, its detached metadata) and verifies it at once for each of
/// the `wanted` remotes' policies. The bytes and signatures are dropped before returning;
/// the parsed commit is kept only when some policy accepted it.
fn read_commit(
    source: &dyn Source,
    name: &str,
    commit: &Checksum,
    wanted: &[(&PolicyKey, &RemotePolicy)],
    budget: &parallel::MemoryBudget,
) -> ReadOutcome {
    let only = |fetched: Fetched| ReadOutcome {
        fetched,
        commit: None,
        verifications: Vec::new(),
    };
    let failed = |error: FetchError, what: &str| {
        only(Fetched::Failed {
            kind: fetch_problem_kind(&error),
            reason: format!(
                "cannot read {what} of commit {}… from {name}: {error}",
                commit.short()
            ),
        })
    };
    match source.commit_is_complete(commit) {
        Ok(true) => {}
        Ok(false) => return only(Fetched::Partial),
        Err(error) => return failed(error, "the state"),
    }
    let _reservation = budget.reserve(read_cost(source, commit));
    let bytes = match source.fetch_metadata(ObjectKind::Commit, commit, &Interrupt::never()) {
        Ok(bytes) => bytes,
        Err(error) => return failed(error, "the object"),
    };
    let actual = crate::object::metadata_checksum(&bytes);
    if actual != *commit {
        return only(Fetched::Failed {
            kind: ProblemKind::Corrupt,
            reason: format!(
                "commit {}… on {name} is damaged (its bytes hash to {}…): use another source",
                commit.short(),
                actual.short()
            ),
        });
    }
    let detached_metadata = match source.fetch_commitmeta(commit, &Interrupt::never()) {
        Ok(meta) => meta,
        Err(FetchError::NotFound { .. }) => None,
        Err(error) => return failed(error, "the signatures"),
    };
    // Signatures are checked over the raw bytes before anything parses them: a commit no
    // remote vouches for costs its bytes and no more.
    let candidate = CommitCandidate {
        checksum: *commit,
        commit: &bytes,
        detached_metadata: detached_metadata.as_deref(),
        source: name,
    };
    let verifications: Vec<(PolicyKey, Result<Verdict, TrustError>)> = wanted
        .iter()
        .map(|(key, policy)| ((*key).clone(), policy.verify_commit(&candidate)))
        .collect();
    drop(detached_metadata);
    if !verifications.iter().any(|(_, result)| result.is_ok()) {
        return ReadOutcome {
            fetched: Fetched::Read,
            commit: None,
            verifications,
        };
    }
    match Commit::parse(&bytes) {
        Ok(parsed) => ReadOutcome {
            fetched: Fetched::Read,
            commit: Some(Arc::new(FetchedCommit {
                commit: parsed,
                size: bytes.len() as u64,
            })),
            verifications,
        },
        Err(error) => only(Fetched::Failed {
            kind: ProblemKind::Corrupt,
            reason: format!(
                "commit {}… on {name} is damaged ({error}): use another source",
                commit.short()
            ),
        }),
    }
}

/// Drops repeated problems (the same refusal found for two targets), keeping the first.
fn dedup_problems(problems: Vec<Problem>) -> Vec<Problem> {
    let mut seen = HashSet::new();
    problems
        .into_iter()
        .filter(|p| {
            seen.insert((
                p.kind,
                p.source.clone(),
                p.ref_name.clone(),
                p.reason.clone(),
            ))
        })
        .collect()
}
