//! The unattended installs: the kiosk's (what `ferryctl install --all --yes --from <mount>`
//! does) and the lab's from computers nearby (`on-nearby = install`), run in this process
//! through the engine, with their events turned into install state as they run.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ferry_engine::cancel::CancelToken;
use ferry_engine::event::Reporter;
use ferry_engine::install::{self, InstallOptions, Selection};
use ferry_engine::policy::KioskSources;
use ferry_engine::resolve::sources::{
    self, GatherOptions, Gathered, SourceOptions, TargetChoice, NEARBY_TIMEOUT,
};
use ferry_engine::target::HostPaths;
use ferry_engine::trust::TrustRoots;
use ferry_schema::event::{Event, MessageLevel, Phase};
use ferry_schema::{DriveInstall, DriveInstallState, InstallStatus};

/// How long `on-nearby = install` waits for computers nearby that are busy sharing with
/// others (ferry-nearby.timer looks again later anyway).
const NEARBY_PATIENCE: Duration = Duration::from_secs(600);
/// Progress is written to the record at most this often.
const PROGRESS_WRITE_INTERVAL: Duration = Duration::from_millis(500);

/// Turns events into install state.
#[derive(Debug)]
pub struct InstallBookkeeping {
    install: DriveInstall,
    progress: BTreeMap<String, (u64, u64)>,
    finished: Option<bool>,
}

impl Default for InstallBookkeeping {
    fn default() -> Self {
        Self {
            install: DriveInstall {
                state: DriveInstallState::Running,
                bytes_done: 0,
                bytes_total: 0,
                results: Vec::new(),
            },
            progress: BTreeMap::new(),
            finished: None,
        }
    }
}

impl InstallBookkeeping {
    pub fn install(&self) -> &DriveInstall {
        &self.install
    }

    /// Applies one event; returns whether the record should be written now (anything but
    /// progress, which is throttled by the caller).
    pub fn apply(&mut self, event: Event) -> bool {
        match event {
            Event::Phase { phase, update } => {
                tracing::info!(
                    "install phase {phase:?}{}",
                    update.map(|u| format!(" for {u}")).unwrap_or_default()
                );
                false
            }
            Event::Plan { updates, problems } => {
                tracing::info!(
                    "install plan: {} update(s), {} problem(s)",
                    updates.len(),
                    problems.len()
                );
                for problem in &problems {
                    tracing::warn!("{}: {}", problem.source, problem.reason);
                }
                for update in &updates {
                    self.progress
                        .entry(update.id.clone())
                        .or_insert((0, update.download_size));
                }
                self.sum_progress();
                true
            }
            // An install never plans a drive.
            Event::DrivePlan(_) => false,
            Event::Progress {
                update,
                bytes_done,
                bytes_total,
                ..
            } => {
                self.progress
                    .insert(update.unwrap_or_default(), (bytes_done, bytes_total));
                self.sum_progress();
                false
            }
            Event::SourceState {
                source,
                state,
                reason,
                ..
            } => {
                tracing::warn!(
                    "{source}: {state:?}{}",
                    reason.map(|r| format!(" ({r})")).unwrap_or_default()
                );
                false
            }
            Event::Message { level, text } => {
                match level {
                    MessageLevel::Info => tracing::info!("{text}"),
                    MessageLevel::Warning => tracing::warn!("{text}"),
                    MessageLevel::Error => tracing::error!("{text}"),
                }
                false
            }
            Event::Result(result) => {
                tracing::info!("{}: {:?}", result.ref_name, result.status);
                if let Some((done, total)) = self.progress.get_mut(&result.update) {
                    if result.status == InstallStatus::Installed {
                        *done = *total;
                    }
                }
                self.sum_progress();
                self.install.results.push(result);
                true
            }
            Event::Finished { ok } => {
                self.finished = Some(ok);
                true
            }
        }
    }

    fn sum_progress(&mut self) {
        let (done, total) = self
            .progress
            .values()
            .fold((0u64, 0u64), |(d, t), (done, total)| {
                (d.saturating_add(*done), t.saturating_add(*total))
            });
        self.install.bytes_done = done;
        self.install.bytes_total = total;
    }

    /// The final state once the install has ended; `ended_ok` as `ferryctl install`'s exit
    /// status would be.
    pub fn finish(mut self, ended_ok: bool) -> DriveInstall {
        let any_failed = self
            .install
            .results
            .iter()
            .any(|r| matches!(r.status, InstallStatus::Failed | InstallStatus::Cancelled));
        let succeeded = ended_ok && self.finished == Some(true) && !any_failed;
        if !succeeded {
            let why = if self.finished.is_none() {
                "the install stopped before it finished"
            } else if any_failed {
                "some updates failed"
            } else {
                "the install reported a failure"
            };
            tracing::error!("kiosk install failed: {why}");
        }
        self.install.state = if succeeded {
            DriveInstallState::Succeeded
        } else {
            DriveInstallState::Failed
        };
        self.install
    }
}

/// A [`Reporter`] that keeps the bookkeeping and calls `on_change` when the record should be
/// rewritten: at once for anything but progress, which waits `PROGRESS_WRITE_INTERVAL`.
pub struct RecordReporter<F> {
    state: Mutex<RecorderState<F>>,
}

struct RecorderState<F> {
    book: InstallBookkeeping,
    last_write: Instant,
    on_change: F,
}

impl<F: FnMut(&DriveInstall) + Send> RecordReporter<F> {
    /// Starts with the `running` state, written at once.
    pub fn new(mut on_change: F) -> Self {
        let book = InstallBookkeeping::default();
        on_change(book.install());
        Self {
            state: Mutex::new(RecorderState {
                book,
                last_write: Instant::now(),
                on_change,
            }),
        }
    }

    /// Ends the bookkeeping ([`InstallBookkeeping::finish`]) and writes the final state.
    pub fn finish(self, ended_ok: bool) -> DriveInstall {
        let state = self
            .state
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let RecorderState {
            book,
            mut on_change,
            ..
        } = state;
        let install = book.finish(ended_ok);
        on_change(&install);
        install
    }
}

impl<F: FnMut(&DriveInstall) + Send> Reporter for RecordReporter<F> {
    fn on_event(&self, event: Event) {
        let mut guard = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let state = &mut *guard;
        let write_now = state.book.apply(event);
        if write_now || state.last_write.elapsed() >= PROGRESS_WRITE_INTERVAL {
            (state.on_change)(state.book.install());
            state.last_write = Instant::now();
        }
    }
}

/// Where an unattended install takes its updates from.
#[derive(Debug, Clone, Copy)]
pub enum InstallScope<'a> {
    /// A kiosk install after the drive at `mount` was inserted: that drive only or
    /// (`KioskSources::All`) every drive recorded under `run_dir` and the network too.
    Drive {
        mount: &'a Path,
        sources: KioskSources,
        run_dir: &'a Path,
    },
    /// `on-nearby = install`: what computers nearby offer, and nothing else.
    Nearby,
}

/// Installs everything `scope` offers into this machine's default targets (`OSTREE_SYSROOT`
/// and the Flatpak variables choose them, as they choose `ferryctl`'s). Calls `on_change`
/// whenever the state should be recorded, first with `running`, last with the final state.
/// Restarting is left to the caller.
pub fn run_install(
    scope: InstallScope<'_>,
    cancel: &CancelToken,
    on_change: impl FnMut(&DriveInstall) + Send,
) -> DriveInstall {
    let reporter = RecordReporter::new(on_change);
    let ended_ok = install_into(&reporter, scope, cancel);
    reporter.finish(ended_ok)
}

/// Lists what `scope` offers, checked against `trust_roots`.
fn gather(scope: InstallScope<'_>, trust_roots: &TrustRoots, cancel: &CancelToken) -> Gathered {
    let host = HostPaths::from_env();
    match scope {
        InstallScope::Drive {
            mount,
            sources,
            run_dir,
        } => {
            tracing::info!(
                "installing every update from {} ({sources:?})",
                mount.display()
            );
            let named = [mount.display().to_string()];
            let from = SourceOptions {
                named: &named,
                offline: false,
                only_named: sources == KioskSources::InsertedDrive,
            };
            sources::gather_from(
                &host,
                run_dir,
                TargetChoice::MachineDefaults,
                from,
                None,
                trust_roots,
            )
        }
        InstallScope::Nearby => {
            tracing::info!("installing every update that computers nearby offer");
            let options = GatherOptions {
                upstream: None,
                nearby: Some(NEARBY_TIMEOUT),
                quick: false,
                icon_cache: None,
                trust_roots: trust_roots.clone(),
            };
            sources::gather_nearby(&host, &options, NEARBY_TIMEOUT, NEARBY_PATIENCE, cancel)
        }
    }
}

/// The steps of `ferryctl install --all --yes`, reported as its `--json` stream is; returns
/// whether it would have exited with success.
fn install_into(reporter: &dyn Reporter, scope: InstallScope<'_>, cancel: &CancelToken) -> bool {
    reporter.on_event(Event::Phase {
        phase: Phase::Resolve,
        update: None,
    });
    // One value for the listing and the pull, so both check commits against the same keys.
    let trust_roots = TrustRoots::from_env();
    let Gathered {
        targets,
        sources: set,
        list,
    } = gather(scope, &trust_roots, cancel);
    let plan = install::plan(&list, &Selection::All, &targets)
        .and_then(|plan| install::preflight(&plan, &targets).map(|()| plan));
    let plan = match plan {
        Ok(plan) => plan,
        Err(error) => {
            reporter.on_event(Event::Message {
                level: MessageLevel::Error,
                text: ferry_engine::causes::text(&error),
            });
            reporter.on_event(Event::Finished { ok: false });
            return false;
        }
    };
    if plan.is_empty() {
        reporter.on_event(Event::Plan {
            updates: Vec::new(),
            problems: plan.problems.clone(),
        });
        reporter.on_event(Event::Finished { ok: true });
        return true;
    }
    let options = InstallOptions {
        allow_downgrade: false,
        trust_roots,
        workers: 0,
        no_deltas: false,
    };
    install::run(&plan, &targets, &set.sources, &options, reporter, cancel).ok()
}

/// SIGTERM (systemd stopping `ferry-install@.service` when its drive goes away) and SIGINT
/// cancel the install, so it stops between objects and the record gets its final state. A
/// second signal exits at once.
pub fn cancel_on_signals() -> std::io::Result<CancelToken> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let token = CancelToken::new();
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    let trip = token.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut seen = 0usize;
            for signal in signals.forever() {
                tracing::info!(signal, "cancelling the kiosk install on signal");
                trip.cancel();
                seen += 1;
                if seen > 1 {
                    std::process::exit(130);
                }
            }
        })?;
    Ok(token)
}
