//! The kiosk install: `ferryctl install --all --yes --json --from <mount>` as a child, with its
//! JSON event stream turned into the `install` field of the drive record as it runs.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::policy::KioskSources;
use ferry_engine::event::{parse_line, Event, MessageLevel};
use ferry_engine::schema::{DriveInstall, DriveInstallState, InstallStatus};

/// One event line is a few kilobytes; a plan with many updates stays far below this.
const MAX_EVENT_LINE_BYTES: u64 = 4 * 1024 * 1024;
/// Progress is written to the record at most this often.
const PROGRESS_WRITE_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("cannot start {program:?}: {source}; set FERRY_CTL to the path of ferryctl")]
    Spawn {
        program: OsString,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the progress of {program:?}: {source}")]
    Read {
        program: OsString,
        #[source]
        source: std::io::Error,
    },
}

/// What to run.
#[derive(Debug, Clone)]
pub struct InstallCommand {
    /// `ferryctl`, or a path to it. It inherits the hook's environment, so `OSTREE_SYSROOT`
    /// and the Flatpak variables choose its targets as they choose the hook's. Restarting
    /// after an OS update is the hook's decision (`reboot`), not ferryctl's.
    pub ferryctl: OsString,
    /// The policy's `kiosk-sources`.
    pub sources: KioskSources,
}

impl InstallCommand {
    pub fn args(&self, mount: &Path) -> Vec<OsString> {
        let mut args: Vec<OsString> = ["install", "--all", "--yes", "--json"]
            .into_iter()
            .map(OsString::from)
            .collect();
        if self.sources == KioskSources::InsertedDrive {
            args.push(OsString::from("--only-from"));
        }
        args.push(OsString::from("--from"));
        args.push(mount.as_os_str().to_owned());
        args
    }
}

/// Turns events into install state.
#[derive(Debug)]
pub struct InstallBookkeeping {
    install: DriveInstall,
    progress: BTreeMap<String, (u64, u64)>,
    finished: Option<bool>,
    unreadable_lines: usize,
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
            unreadable_lines: 0,
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

    /// Applies one line of the stream. Lines that are not events are logged and skipped.
    pub fn apply_line(&mut self, line: &str) -> bool {
        let line = line.trim();
        if line.is_empty() {
            return false;
        }
        match parse_line(line) {
            Ok(event) => self.apply(event),
            Err(error) => {
                self.unreadable_lines += 1;
                tracing::warn!("ignoring a line ferryctl printed: {error}");
                false
            }
        }
    }

    /// The final state once the child has exited with `exit_ok`.
    pub fn finish(mut self, exit_ok: bool) -> DriveInstall {
        let any_failed = self
            .install
            .results
            .iter()
            .any(|r| matches!(r.status, InstallStatus::Failed | InstallStatus::Cancelled));
        let succeeded = exit_ok && self.finished == Some(true) && !any_failed;
        if !succeeded {
            let why = if self.finished.is_none() {
                "the install stopped before it finished"
            } else if any_failed {
                "some updates failed"
            } else {
                "ferryctl reported a failure"
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

/// Runs the install from `mount`, calling `on_change` whenever the record should be
/// rewritten (first with the `running` state, last with the final one).
pub fn run_install(
    command: &InstallCommand,
    mount: &Path,
    mut on_change: impl FnMut(&DriveInstall),
) -> Result<DriveInstall, InstallError> {
    let mut book = InstallBookkeeping::default();
    on_change(book.install());
    let args = command.args(mount);
    tracing::info!(
        "running {:?} {}",
        command.ferryctl,
        args.iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut child = Command::new(&command.ferryctl)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|source| InstallError::Spawn {
            program: command.ferryctl.clone(),
            source,
        })?;
    let read_result = match child.stdout.take() {
        Some(stdout) => read_stream(stdout, &mut book, &mut on_change),
        None => Ok(()),
    };
    let status = child.wait();
    read_result.map_err(|source| InstallError::Read {
        program: command.ferryctl.clone(),
        source,
    })?;
    let exit_ok = match status {
        Ok(status) => {
            if !status.success() {
                tracing::error!("ferryctl install exited with {status}");
            }
            status.success()
        }
        Err(error) => {
            tracing::error!("cannot wait for ferryctl: {error}");
            false
        }
    };
    let install = book.finish(exit_ok);
    on_change(&install);
    Ok(install)
}

fn read_stream(
    stdout: impl Read,
    book: &mut InstallBookkeeping,
    on_change: &mut impl FnMut(&DriveInstall),
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stdout);
    let mut last_write = Instant::now();
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = (&mut reader)
            .take(MAX_EVENT_LINE_BYTES)
            .read_until(b'\n', &mut line)?;
        if read == 0 {
            return Ok(());
        }
        if line.last() != Some(&b'\n') && read as u64 == MAX_EVENT_LINE_BYTES {
            tracing::warn!("skipping an event line longer than {MAX_EVENT_LINE_BYTES} bytes");
            // Drop the rest of the over-long line.
            let mut rest = Vec::new();
            loop {
                rest.clear();
                let n = (&mut reader)
                    .take(MAX_EVENT_LINE_BYTES)
                    .read_until(b'\n', &mut rest)?;
                if n == 0 || rest.last() == Some(&b'\n') {
                    break;
                }
            }
            continue;
        }
        let text = String::from_utf8_lossy(&line);
        let write_now = book.apply_line(&text);
        if write_now || last_write.elapsed() >= PROGRESS_WRITE_INTERVAL {
            on_change(book.install());
            last_write = Instant::now();
        }
    }
}
