//! What can be updated, and from where: installed refs matched against every source's offers.
//!
//! [`resolve`] goes through these steps for the installed refs of every [`Target`]:
//! 1. offers (`offers.rs`): read every source's refs and match them to the installed refs;
//! 2. verification (`verify.rs`): read each offered commit once, check its checksum,
//!    signature, bindings and completeness and that it is not older than what is installed,
//!    then choose a winner per ref;
//! 3. the Flatpak steps (`apps.rs`): runtimes new app commits need, apps drives offer that
//!    nothing has installed, and names and icons from AppStream;
//! 4. download sizes (`size.rs`), then one [`Update`] per winner.
//!
//! The newest timestamp wins (commits of the same second are ordered by their parent chain);
//! on a tie a drive beats a computer nearby, which beats upstream. The update lists every
//! source holding the winning commit, preferred first (drives, then fresher summaries), so the
//! pull takes objects from the closest one even when upstream offered the commit first. Every
//! rejected candidate, unreadable source and drive collection unknown to this machine becomes
//! a [`Problem`]; nothing is dropped silently.

mod apps;
pub(crate) mod appstream;
pub mod flatpak;
mod offers;
mod parallel;
mod size;
pub mod sources;
mod tree;
mod verify;

#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use self::size::{download_size, LocalObjects};
use crate::appstream::Catalog;
use crate::object::{Checksum, Commit, Subdirs};
use crate::repo::Repo;
use crate::schema::{
    AppInfo, DriveRecord, Problem, ProblemKind, SourceInfo, SourceKind, TargetKind, Update,
    UpdateList,
};
use crate::source::{source_name, FetchError, Source, SourceRank};
use crate::target::{InstalledRef, Remote, Target};
use crate::trust::{RemotePolicy, TrustError, TrustRoots, Verdict};

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
    /// and the parsed commit, when it did, in `Resolver::commits`. `partial`:
    /// `state/<commit>.commitpartial`, not all of its objects are there (an interrupted copy,
    /// or a locale extension with some languages), read because a ref installed in part
    /// wants it.
    Read {
        partial: bool,
    },
    /// `state/<commit>.commitpartial`, and no ref installed in part wants it: not read.
    Partial,
    Failed {
        kind: ProblemKind,
        reason: String,
    },
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

    fn installed(&self, want: &Want) -> Option<&'a InstalledRef> {
        let targets: &'a [Target] = self.targets;
        want.installed
            .and_then(|index| targets[want.target].installed.get(index))
    }

    fn remote(&self, want: &Want) -> Option<&'a Remote> {
        let targets: &'a [Target] = self.targets;
        targets[want.target].remote(&want.remote)
    }

    /// Download sizes, measured in parallel (walks only when a commit has no sizes and the
    /// listing is not quick).
    fn measure(&mut self, found: &[(Want, Winner)]) -> Vec<u64> {
        let sources = self.sources;
        let local = &self.local;
        let quick = self.options.quick;
        let names = &self.names;
        // Refs installed in part are measured in part.
        let parts: Vec<Option<Subdirs>> = found
            .iter()
            .map(|(want, _)| {
                self.installed(want)
                    .and_then(|installed| Subdirs::for_flatpak(&installed.deploy_subpaths).ok())
                    .flatten()
            })
            .collect();
        let jobs: Vec<(&(Want, Winner), Option<&Subdirs>)> =
            found.iter().zip(parts.iter().map(Option::as_ref)).collect();
        let results = parallel::map(&jobs, parallel::cpu_threads(), |((want, winner), parts)| {
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
                *parts,
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
            adds_subpaths: installed
                .map(InstalledRef::added_subpaths)
                .unwrap_or_default(),
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
        FetchError::Unavailable { .. } | FetchError::Broken { .. } => ProblemKind::Unavailable,
        FetchError::Busy { .. } => ProblemKind::Busy,
        FetchError::NotFound { .. } => ProblemKind::Corrupt,
        FetchError::Failed { .. } | FetchError::Interrupted { .. } => ProblemKind::Unreadable,
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
