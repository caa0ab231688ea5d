//! The install transaction: what `ferryctl install`, the desktop app and the kiosk hook run.
//!
//! 1. [`plan`] picks the updates asked for from a resolver listing, adds the runtimes they
//!    need, and orders runtimes before the apps that need them.
//! 2. [`preflight`] refuses before any work when a target is not writable or its repository
//!    lacks the space the plan needs (honouring the repository's `min-free-space-*`).
//! 3. [`run`] then, per update: pulls the commit with the engine into the target's
//!    repository at `refs/remotes/<remote>/<ref>` (every object re-hashed, the ref written
//!    last), then hands over to `ostree admin deploy` or `flatpak --no-pull` ([`crate::deploy`]).
//!    Deploys run in plan order on a thread of their own while the next update is pulled, so
//!    the disk and the cores stay busy. One update failing does not stop the others; an app
//!    whose runtime could not be installed is skipped. Flatpak installations also get the remote's AppStream data from
//!    the sources when they carry a newer verified commit.
//!    Each update's result is written to the systemd journal ([`crate::history`]).
//!
//! Everything is reported as [`Event`]s: the plan, phases and progress, one
//! [`InstallResult`] per planned update, and `finished`.

use crate::causes::Causes;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use crate::cancel::CancelToken;
use crate::deploy::{self, DeployError};
use crate::event::{Event, MessageLevel, Phase, Reporter, SilentReporter};
use crate::history::{self, HistoryEntry};
use crate::object::FlatpakRef;
use crate::pull::{
    pull, PullError, PullOptions, PullRequest, PullStatus, PullTrust, PulledRef, RefTarget,
};
use crate::repo::{Repo, RepoError};
use crate::schema::{InstallResult, InstallStatus, Problem, TargetKind, Update, UpdateList};
use crate::source::Source;
use crate::target::{DeployTarget, Target};
use crate::trust::TrustRoots;

/// Which updates to install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Every update the listing offers (not the new apps in `UpdateList::available`).
    All,
    /// Updates named by ref (`app/org.example.App/x86_64/stable`), by update ID, or by the
    /// app or runtime ID (`org.example.App`); a new app in `UpdateList::available` too.
    Refs(Vec<String>),
}

/// What an install will do, in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Runtimes first, then what needs them.
    pub updates: Vec<Update>,
    /// What the listing could not offer, shown with the plan.
    pub problems: Vec<Problem>,
    /// Refs asked for that are installed and have no newer commit anywhere.
    pub up_to_date: Vec<String>,
}

impl Plan {
    /// Bytes to transfer for the whole plan.
    pub fn download_size(&self) -> u64 {
        self.updates.iter().map(|u| u.download_size).sum()
    }

    /// Whether there is nothing to install.
    pub fn is_empty(&self) -> bool {
        self.updates.is_empty()
    }
}

/// How to install.
#[derive(Debug, Clone, Default)]
pub struct InstallOptions {
    /// Accept commits older than what is installed.
    pub allow_downgrade: bool,
    /// Where the machine's keys live outside repositories.
    pub trust_roots: TrustRoots,
    /// Pull threads; 0 lets the pull choose.
    pub workers: usize,
    /// Never apply static deltas; fetch every object on its own.
    pub no_deltas: bool,
}

/// How an install ended.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// One per planned update, in plan order.
    pub results: Vec<InstallResult>,
}

impl Summary {
    /// Every update installed or already up to date.
    pub fn ok(&self) -> bool {
        self.results
            .iter()
            .all(|r| matches!(r.status, InstallStatus::Installed | InstallStatus::UpToDate))
    }

    /// An OS deployment was made that a restart completes.
    pub fn restart_required(&self) -> bool {
        self.results.iter().any(|r| r.restart_required)
    }
}

/// Why an install cannot start.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// Nothing named `wanted` is offered or installed.
    #[error(
        "no update of {wanted} is offered, and it is not installed in any target looked at: \
         check the name with `ferryctl list`"
    )]
    NotFound {
        /// The name asked for.
        wanted: String,
    },

    /// This process cannot write the target's repository.
    #[error(
        "{target} cannot be written by this user ({}): run as root, or through the Ferry \
         app's polkit action",
        path.display()
    )]
    NotWritable {
        /// The target, as messages name it.
        target: String,
        /// Its repository.
        path: PathBuf,
    },

    /// The updates do not fit in the target's free space.
    #[error(
        "not enough free space for {target} ({}): the updates need {needed} bytes, {usable} \
         are usable after the {reserved} bytes the repository keeps free, so {missing} bytes \
         are missing; free some space and try again",
        path.display()
    )]
    NoSpace {
        /// The target, as messages name it.
        target: String,
        /// Its repository.
        path: PathBuf,
        /// Bytes the updates need.
        needed: u64,
        /// Bytes free beyond what the repository keeps free.
        usable: u64,
        /// Bytes the repository keeps free (`min-free-space-*`).
        reserved: u64,
        /// Bytes missing: `needed` minus `usable`.
        missing: u64,
    },

    /// The target's repository could not be opened.
    #[error("cannot open the repository of {target}")]
    Repo {
        /// The target, as messages name it.
        target: String,
        /// The repository error.
        #[source]
        error: RepoError,
    },

    /// An update names a target that was not discovered.
    #[error("update {update} names a target that was not looked at ({installation})")]
    UnknownTarget {
        /// The update's ID.
        update: String,
        /// The installation it names.
        installation: String,
    },
}

/// Picks the updates `selection` names from `listing`, with the runtimes they need, runtimes
/// first. A name matching no update nor installed ref but an app the listing offers
/// ([`UpdateList::available`]) installs that app with its missing runtimes. A name matching no update but an installed ref of `targets` is up to date; one
/// matching nothing is an error.
pub fn plan(
    listing: &UpdateList,
    selection: &Selection,
    targets: &[Target],
) -> Result<Plan, InstallError> {
    let mut chosen: Vec<usize> = Vec::new();
    let mut new_apps: Vec<Update> = Vec::new();
    let mut up_to_date = Vec::new();
    match selection {
        Selection::All => chosen.extend(0..listing.updates.len()),
        Selection::Refs(names) => {
            for name in names {
                let found: Vec<usize> = listing
                    .updates
                    .iter()
                    .enumerate()
                    .filter(|(_, update)| names_update(name, update))
                    .map(|(index, _)| index)
                    .collect();
                if !found.is_empty() {
                    chosen.extend(found);
                } else if targets.iter().any(|t| {
                    t.installed
                        .iter()
                        .any(|installed| names_ref(name, &installed.ref_name))
                }) {
                    up_to_date.push(name.clone());
                } else if let Some(offered) = listing
                    .available
                    .iter()
                    .find(|offered| names_update(name, &offered.app))
                {
                    // A new app: its missing runtimes, then the app.
                    new_apps.extend(offered.runtimes.iter().cloned());
                    new_apps.push(offered.app.clone());
                } else {
                    return Err(InstallError::NotFound {
                        wanted: name.clone(),
                    });
                }
            }
        }
    }
    // The runtimes the chosen updates need, when the listing offers them.
    let needed: Vec<usize> = chosen
        .iter()
        .flat_map(|&index| {
            let update = &listing.updates[index];
            update.needs.iter().filter_map(move |need| {
                listing.updates.iter().position(|other| {
                    other.ref_name == *need
                        && other.target == update.target
                        && other.installation == update.installation
                })
            })
        })
        .collect();
    chosen.extend(needed);
    let mut seen = BTreeSet::new();
    chosen.retain(|index| seen.insert(*index));
    let mut updates: Vec<Update> = chosen
        .into_iter()
        .map(|index| listing.updates[index].clone())
        .collect();
    for update in new_apps {
        if !updates.iter().any(|u| u.id == update.id) {
            updates.push(update);
        }
    }
    updates.sort_by_key(|update| !is_runtime(update));
    Ok(Plan {
        updates,
        problems: listing.problems.clone(),
        up_to_date,
    })
}

fn is_runtime(update: &Update) -> bool {
    update.target == TargetKind::Flatpak && update.ref_name.starts_with("runtime/")
}

fn names_update(name: &str, update: &Update) -> bool {
    name == update.id || names_ref(name, &update.ref_name)
}

/// `app/ID/ARCH/BRANCH` is named by itself and by `ID`; any other ref by itself.
fn names_ref(name: &str, ref_name: &str) -> bool {
    if name == ref_name {
        return true;
    }
    FlatpakRef::parse(ref_name).is_some_and(|parsed| parsed.id == name)
}

/// The target an update goes into.
pub fn target_of<'a>(targets: &'a [Target], update: &Update) -> Option<&'a Target> {
    targets.iter().find(|target| {
        target.kind == update.target && update.installation.as_deref() == Some(&target.installation)
    })
}

/// Refuses before any work: a target this process cannot write, or a repository without the
/// space the plan's downloads need.
pub fn preflight(plan: &Plan, targets: &[Target]) -> Result<(), InstallError> {
    let mut needed: Vec<(&Target, u64)> = Vec::new();
    for update in &plan.updates {
        let target = target_of(targets, update).ok_or_else(|| InstallError::UnknownTarget {
            update: update.id.clone(),
            installation: update.installation.clone().unwrap_or_default(),
        })?;
        match needed.iter_mut().find(|(t, _)| std::ptr::eq(*t, target)) {
            Some((_, bytes)) => *bytes += update.download_size,
            None => needed.push((target, update.download_size)),
        }
    }
    for (target, bytes) in needed {
        if target.needs_root {
            return Err(InstallError::NotWritable {
                target: target.installation.clone(),
                path: target.repo.clone(),
            });
        }
        let repo = Repo::open(&target.repo).map_err(|error| InstallError::Repo {
            target: target.installation.clone(),
            error,
        })?;
        match repo.check_free_space(bytes) {
            Ok(()) => {}
            Err(RepoError::NoSpace {
                path,
                needed,
                usable,
                reserved,
            }) => {
                return Err(InstallError::NoSpace {
                    target: target.installation.clone(),
                    path,
                    needed,
                    usable,
                    reserved,
                    missing: needed.saturating_sub(usable),
                })
            }
            Err(error) => {
                return Err(InstallError::Repo {
                    target: target.installation.clone(),
                    error,
                })
            }
        }
    }
    Ok(())
}

/// Installs `plan`: per update a pull from `sources`, then the deploy. Emits the plan, the
/// phases and progress, one result per update (in plan order) and `finished`.
///
/// Update N+1 is pulled while update N deploys: the deploys run one after another, in plan
/// order, on a thread of their own, so a runtime is deployed before the apps that need it.
/// Pulling holds the repository's shared lock, which `flatpak` and `ostree admin` share.
pub fn run(
    plan: &Plan,
    targets: &[Target],
    sources: &[Arc<dyn Source>],
    options: &InstallOptions,
    reporter: &dyn Reporter,
    cancel: &CancelToken,
) -> Summary {
    reporter.on_event(Event::Plan {
        updates: plan.updates.clone(),
        problems: plan.problems.clone(),
    });
    let summary = std::thread::scope(|scope| {
        let (to_deploy, deploy_queue) = std::sync::mpsc::channel::<Fetched>();
        let deployer = scope.spawn(move || {
            let mut summary = Summary::default();
            for fetched in deploy_queue {
                let update = &plan.updates[summary.results.len()];
                let result = match fetched {
                    Fetched::Done(result) => result,
                    Fetched::Pulled(pulled) => {
                        deploy_one(update, &pulled, plan, &summary, reporter, cancel)
                    }
                };
                history::record(&HistoryEntry::for_install(update, &result));
                reporter.on_event(Event::Result(result.clone()));
                summary.results.push(result);
            }
            summary
        });
        // What the pulls so far came to: a runtime whose pull failed is known here before
        // its deploy would be.
        let mut pulled_so_far: Vec<InstallStatus> = Vec::with_capacity(plan.updates.len());
        for update in &plan.updates {
            let fetched = pull_one(
                update,
                plan,
                &pulled_so_far,
                targets,
                sources,
                options,
                reporter,
                cancel,
            );
            pulled_so_far.push(match &fetched {
                Fetched::Done(result) => result.status,
                Fetched::Pulled(_) => InstallStatus::Installed,
            });
            if to_deploy.send(fetched).is_err() {
                break;
            }
        }
        drop(to_deploy);
        deployer.join().unwrap_or_else(|_| {
            // A deploy thread that stopped must not read as success: every update fails.
            let results: Vec<InstallResult> = plan
                .updates
                .iter()
                .map(|update| {
                    result_of(
                        update,
                        InstallStatus::Failed,
                        "the deploy step stopped unexpectedly; run the install again".to_owned(),
                    )
                })
                .collect();
            for result in &results {
                reporter.on_event(Event::Result(result.clone()));
            }
            Summary { results }
        })
    });
    refresh_appstream(plan, &summary, targets, sources, options, reporter, cancel);
    reporter.on_event(Event::Phase {
        phase: Phase::Done,
        update: None,
    });
    reporter.on_event(Event::Finished { ok: summary.ok() });
    summary
}

/// One update after its pull: the commit to deploy, or its final result already.
enum Fetched<'a> {
    /// Pulled; the deploy decides the result.
    Pulled(Box<PulledUpdate<'a>>),
    /// Nothing to deploy: up to date, skipped, failed or cancelled.
    Done(InstallResult),
}

/// An update fetched and verified into its target's repository, waiting for its deploy.
struct PulledUpdate<'a> {
    pulled: PulledRef,
    target: &'a Target,
    /// Whether a commit of the ref is installed (update) or not (install).
    installed: bool,
}

/// The result of `update` with `status` and `message`, before any deploy.
fn result_of(update: &Update, status: InstallStatus, message: String) -> InstallResult {
    InstallResult {
        update: update.id.clone(),
        ref_name: update.ref_name.clone(),
        target: update.target,
        status,
        message: Some(message),
        restart_required: false,
        sources: Vec::new(),
    }
}

#[allow(
    clippy::too_many_arguments,
    reason = "one step of run(), sharing its context"
)]
fn pull_one<'a>(
    update: &Update,
    plan: &Plan,
    pulled_so_far: &[InstallStatus],
    targets: &'a [Target],
    sources: &[Arc<dyn Source>],
    options: &InstallOptions,
    reporter: &dyn Reporter,
    cancel: &CancelToken,
) -> Fetched<'a> {
    let done = |status, message: String| Fetched::Done(result_of(update, status, message));
    if cancel.is_cancelled() {
        return done(
            InstallStatus::Cancelled,
            "cancelled before it started; nothing was changed".to_owned(),
        );
    }
    let Some(target) = target_of(targets, update) else {
        return done(
            InstallStatus::Failed,
            format!(
                "its target ({}) was not looked at",
                update.installation.as_deref().unwrap_or("?")
            ),
        );
    };
    if let Some(missing) = missing_need(update, plan, pulled_so_far, target) {
        return done(
            InstallStatus::Skipped,
            format!("it needs {missing}, which could not be installed; nothing was changed"),
        );
    }

    let dest = match Repo::open(&target.repo) {
        Ok(repo) => repo,
        Err(error) => return done(InstallStatus::Failed, crate::causes::text(&error)),
    };
    let mut pull_options =
        PullOptions::new(PullTrust::for_target(target, options.trust_roots.clone()));
    pull_options.allow_downgrade = options.allow_downgrade;
    pull_options.workers = options.workers;
    pull_options.no_deltas = options.no_deltas;
    // A ref installed in part (some languages of a locale extension) is updated in part:
    // the languages flatpak will deploy.
    let subpaths = target
        .installed
        .iter()
        .find(|i| i.ref_name == update.ref_name && i.remote.as_ref() == Some(&update.remote))
        .map(|i| i.deploy_subpaths.clone())
        .unwrap_or_default();
    let request = PullRequest::new(&update.ref_name, RefTarget::Remote(update.remote.clone()))
        .with_collection(update.collection_id.as_deref())
        .with_update_id(update.id.clone())
        .with_subpaths(&subpaths);
    let chosen = sources_of(update, sources);
    let pulled = match pull(&dest, &chosen, &[request], &pull_options, reporter, cancel) {
        Ok(mut outcomes) => match outcomes.pop() {
            Some(outcome) => outcome.result,
            None => Err(PullError::Cancelled),
        },
        Err(error) => Err(error),
    };
    let pulled = match pulled {
        Ok(pulled) => pulled,
        Err(error) if error.is_cancelled() => {
            return done(
                InstallStatus::Cancelled,
                format!("{}; what is installed was not touched", Causes(&error)),
            )
        }
        Err(error) => {
            return done(
                InstallStatus::Failed,
                format!("{}; what is installed was not touched", Causes(&error)),
            )
        }
    };
    let installed = target
        .installed_ref(update.collection_id.as_deref(), &update.ref_name)
        .or_else(|| target.installed_ref(None, &update.ref_name));
    // The same commit still goes to deploy when it brings languages set for since.
    if pulled.status == PullStatus::UpToDate
        && installed.is_some_and(|current| {
            current.commit == pulled.commit && current.added_subpaths().is_empty()
        })
    {
        return done(
            InstallStatus::UpToDate,
            format!("already up to date at {}", pulled.commit.short()),
        );
    }
    Fetched::Pulled(Box::new(PulledUpdate {
        installed: installed.is_some(),
        target,
        pulled,
    }))
}

/// Deploys a pulled update, after the deploys of the updates before it in the plan (their
/// results are in `done`).
fn deploy_one(
    update: &Update,
    fetched: &PulledUpdate<'_>,
    plan: &Plan,
    done: &Summary,
    reporter: &dyn Reporter,
    cancel: &CancelToken,
) -> InstallResult {
    let PulledUpdate {
        pulled,
        target,
        installed,
    } = fetched;
    let statuses: Vec<InstallStatus> = done.results.iter().map(|r| r.status).collect();
    if let Some(missing) = missing_need(update, plan, &statuses, target) {
        return result_of(
            update,
            InstallStatus::Skipped,
            format!(
                "it needs {missing}, which could not be installed; {} was fetched and is kept, \
                 nothing was deployed",
                pulled.commit.short()
            ),
        );
    }
    // Deploy: not interrupted once started, so check for cancellation just before.
    if cancel.is_cancelled() {
        return result_of(
            update,
            InstallStatus::Cancelled,
            format!(
                "cancelled after fetching {}; it is kept, and installing again deploys it",
                pulled.commit.short()
            ),
        );
    }
    reporter.on_event(Event::Phase {
        phase: Phase::Deploy,
        update: Some(update.id.clone()),
    });
    let version = pulled
        .version
        .as_deref()
        .map(|v| format!(" (version {v})"))
        .unwrap_or_default();
    let deployed: Result<(String, bool), DeployError> = match &target.deploy {
        DeployTarget::Os(os) => deploy::deploy_os(os, &update.remote, &update.ref_name).map(|()| {
            let how = if os.booted() {
                "staged; restart to complete the update"
            } else {
                "deployed as the new default; it runs from the next boot of this sysroot"
            };
            // The engine's one answer to "does this machine need a restart".
            (
                format!("{}{version} {how}", pulled.commit.short()),
                os.booted(),
            )
        }),
        DeployTarget::Flatpak(installation) => {
            deploy::deploy_flatpak(installation, &update.remote, &update.ref_name, *installed).map(
                |()| {
                    (
                        format!("{} installed{version}", pulled.commit.short()),
                        false,
                    )
                },
            )
        }
        DeployTarget::Repo => Ok((format!("{} pulled{version}", pulled.commit.short()), false)),
    };
    match deployed {
        Ok((message, restart_required)) => InstallResult {
            restart_required,
            sources: pulled.sources.clone(),
            ..result_of(update, InstallStatus::Installed, message)
        },
        Err(error) => InstallResult {
            sources: pulled.sources.clone(),
            ..result_of(
                update,
                InstallStatus::Failed,
                format!(
                    "{} was fetched and verified, but deploying it failed: {}",
                    pulled.commit.short(),
                    Causes(&error)
                ),
            )
        },
    }
}

/// A runtime `update` needs that is neither installed nor installed by this plan. `done`
/// holds the statuses of the plan's first updates, in plan order.
fn missing_need(
    update: &Update,
    plan: &Plan,
    done: &[InstallStatus],
    target: &Target,
) -> Option<String> {
    update
        .needs
        .iter()
        .find(|need| {
            let planned = plan.updates.iter().position(|other| {
                other.ref_name == **need
                    && other.target == update.target
                    && other.installation == update.installation
            });
            match planned {
                Some(index) => !done.get(index).is_some_and(|status| {
                    matches!(status, InstallStatus::Installed | InstallStatus::UpToDate)
                }),
                None => target.installed_ref(None, need).is_none(),
            }
        })
        .cloned()
}

/// The sources the listing found the update's commit on, preferred first; all of them when
/// none matches (the pull then picks among them).
fn sources_of(update: &Update, sources: &[Arc<dyn Source>]) -> Vec<Arc<dyn Source>> {
    let mut chosen: Vec<Arc<dyn Source>> = Vec::new();
    for info in &update.sources {
        if let Some(source) = sources
            .iter()
            .find(|s| s.info().location == info.location && s.info().kind == info.kind)
        {
            chosen.push(Arc::clone(source));
        }
    }
    if chosen.is_empty() {
        sources.to_vec()
    } else {
        chosen
    }
}

/// For every Flatpak installation and remote an app was installed into, takes the remote's
/// `appstream2/<arch>` branch from the sources when they carry a newer verified commit, and
/// deploys it so software centres list the new versions. Failures are warnings: the apps
/// are installed either way.
fn refresh_appstream(
    plan: &Plan,
    summary: &Summary,
    targets: &[Target],
    sources: &[Arc<dyn Source>],
    options: &InstallOptions,
    reporter: &dyn Reporter,
    cancel: &CancelToken,
) {
    let mut wanted: BTreeSet<(String, String, String)> = BTreeSet::new();
    for (update, result) in plan.updates.iter().zip(&summary.results) {
        if update.target != TargetKind::Flatpak || result.status != InstallStatus::Installed {
            continue;
        }
        if let Some(parsed) = FlatpakRef::parse(&update.ref_name) {
            wanted.insert((
                update.installation.clone().unwrap_or_default(),
                update.remote.clone(),
                parsed.arch.to_owned(),
            ));
        }
    }
    for (installation, remote, arch) in wanted {
        if cancel.is_cancelled() {
            return;
        }
        let Some(target) = targets
            .iter()
            .find(|t| t.kind == TargetKind::Flatpak && t.installation == installation)
        else {
            continue;
        };
        let Some(flatpak) = target.flatpak_installation() else {
            continue;
        };
        let warn = |text: String| {
            reporter.on_event(Event::Message {
                level: MessageLevel::Warning,
                text,
            })
        };
        let Ok(dest) = Repo::open(&target.repo) else {
            continue;
        };
        let ref_name = format!("appstream2/{arch}");
        let mut pull_options =
            PullOptions::new(PullTrust::for_target(target, options.trust_roots.clone()));
        pull_options.workers = options.workers;
        pull_options.no_deltas = options.no_deltas;
        let collection_id = target.remote(&remote).and_then(|r| r.collection_id.clone());
        let request = PullRequest::new(&ref_name, RefTarget::Remote(remote.clone()))
            .with_collection(collection_id.as_deref());
        // Its progress is not part of any planned update.
        let outcome = pull(
            &dest,
            sources,
            &[request],
            &pull_options,
            &SilentReporter,
            cancel,
        );
        let pulled = match outcome.map(|mut o| o.pop().map(|o| o.result)) {
            Ok(Some(Ok(pulled))) => pulled,
            Ok(Some(Err(PullError::NotOffered { .. }))) | Ok(None) => continue,
            Ok(Some(Err(error))) | Err(error) => {
                if !error.is_cancelled() {
                    warn(format!(
                        "the AppStream data of remote '{remote}' in {installation} was not \
                         updated: {}",
                        Causes(&error)
                    ));
                }
                continue;
            }
        };
        match deploy::deploy_appstream(flatpak, &remote, &arch, &pulled.commit) {
            Ok(changed) => tracing::info!(remote, arch, changed, "AppStream data deployed"),
            Err(error) => warn(format!(
                "the AppStream data of remote '{remote}' in {installation} was not updated: \
                 {}",
                Causes(&error)
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::Checksum;
    use crate::schema::AvailableApp;

    fn update(ref_name: &str, needs: &[&str]) -> Update {
        Update {
            id: format!("flatpak:user:{ref_name}"),
            target: TargetKind::Flatpak,
            installation: Some("user".to_owned()),
            remote: "example".to_owned(),
            collection_id: Some("org.example.Apps".to_owned()),
            ref_name: ref_name.to_owned(),
            current_commit: None,
            commit: Checksum::from_array([7; 32]),
            current_version: None,
            version: None,
            timestamp: 0,
            subject: String::new(),
            body: String::new(),
            download_size: 1,
            signed: true,
            sources: Vec::new(),
            needs: needs.iter().map(|n| (*n).to_owned()).collect(),
            adds_subpaths: Vec::new(),
            app: None,
        }
    }

    #[test]
    fn an_app_whose_planned_runtime_failed_misses_it_and_one_whose_runtime_installed_does_not() {
        let runtime = update("runtime/org.example.Platform/x86_64/1", &[]);
        let app = update(
            "app/org.example.App/x86_64/stable",
            &["runtime/org.example.Platform/x86_64/1"],
        );
        let plan = Plan {
            updates: vec![runtime, app.clone()],
            ..Plan::default()
        };
        let repo = std::path::PathBuf::from("/nonexistent");
        let target = Target {
            kind: TargetKind::Flatpak,
            installation: "user".to_owned(),
            repo: repo.clone(),
            repo_mode: "bare-user-only".to_owned(),
            remotes: Vec::new(),
            installed: Vec::new(),
            problems: Vec::new(),
            trust: crate::trust::Destination::plain(repo),
            needs_root: false,
            deploy: DeployTarget::Repo,
        };
        let runtime_name = "runtime/org.example.Platform/x86_64/1".to_owned();
        for (statuses, missing) in [
            (vec![InstallStatus::Failed], Some(runtime_name.clone())),
            (vec![InstallStatus::Skipped], Some(runtime_name.clone())),
            // Not decided yet: the app must wait, so it is missing too.
            (vec![], Some(runtime_name.clone())),
            (vec![InstallStatus::Installed], None),
            (vec![InstallStatus::UpToDate], None),
        ] {
            assert_eq!(
                missing_need(&app, &plan, &statuses, &target),
                missing,
                "{statuses:?}"
            );
        }
    }

    #[test]
    fn a_new_app_is_planned_with_its_runtime_first_and_only_when_named() {
        let runtime = "runtime/org.example.Platform/x86_64/v2";
        let notes = "app/org.example.Notes/x86_64/stable";
        let listing = UpdateList {
            updates: vec![update("app/org.example.App/x86_64/stable", &[])],
            available: vec![AvailableApp {
                app: update(notes, &[runtime]),
                runtimes: vec![update(runtime, &[])],
                download_size: 2,
            }],
            ..UpdateList::default()
        };
        let named = plan(
            &listing,
            &Selection::Refs(vec!["org.example.Notes".to_owned()]),
            &[],
        )
        .expect("plan");
        let refs: Vec<&str> = named.updates.iter().map(|u| u.ref_name.as_str()).collect();
        assert_eq!(refs, [runtime, notes]);
        // "Everything" means every update, not every app a drive happens to carry.
        let all = plan(&listing, &Selection::All, &[]).expect("plan");
        assert!(all.updates.iter().all(|u| u.ref_name != notes));
        assert!(matches!(
            plan(
                &listing,
                &Selection::Refs(vec!["org.example.Other".to_owned()]),
                &[]
            ),
            Err(InstallError::NotFound { .. })
        ));
    }

    #[test]
    fn refs_are_named_by_themselves_and_by_their_id() {
        let app = "app/org.example.App/x86_64/stable";
        assert!(names_ref(app, app));
        assert!(names_ref("org.example.App", app));
        assert!(names_ref(
            "org.example.Platform",
            "runtime/org.example.Platform/x86_64/v2"
        ));
        assert!(!names_ref("org.example", app));
        assert!(!names_ref("x86_64", app));
        assert!(!names_ref("exampleos", "exampleos/x86_64/stable"));
        assert!(names_ref(
            "exampleos/x86_64/stable",
            "exampleos/x86_64/stable"
        ));
    }
}
