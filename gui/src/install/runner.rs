//! Runs the installer child process. Its stdout is the versioned event stream, read line by
//! line on a thread and handed over as [`RunnerEvent`]s; its exit always ends the stream with
//! [`RunnerEvent::Exited`], so a child that dies midway becomes a failed run, never a hang.

use std::collections::VecDeque;
use std::io::{self, BufReader, Read};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use rustix::process::{Pid, Signal, WaitId, WaitIdOptions};

use ferry_schema::lines::{read_line_bounded, LineRead};
use ferry_schema::{JsonLines, LineError};

use super::Launch;
use crate::model::ChildExit;

/// How many of the child's last stderr lines are kept to explain a failure.
const STDERR_TAIL_LINES: usize = 16;
const MAX_STDERR_LINE_BYTES: usize = 4096;
/// After SIGTERM the engine stops between objects; past this it is killed.
const CANCEL_GRACE: Duration = Duration::from_secs(20);

/// What the runner reports, in order; [`RunnerEvent::Exited`] is always last.
#[derive(Debug, Clone, PartialEq)]
pub enum RunnerEvent {
    /// One line of stdout, without its newline.
    Line(String),
    /// A line longer than the limit, skipped.
    LineTooLong,
    Exited(ChildExit),
}

/// Exit bookkeeping shared with the reader thread, so signals never reach a reaped pid.
#[derive(Default)]
struct ExitState {
    exited: Mutex<bool>,
    changed: Condvar,
}

/// A running installer.
pub struct RunningInstall {
    pid: Pid,
    elevated: bool,
    stdin: Option<ChildStdin>,
    state: Arc<ExitState>,
    cancelled: bool,
}

impl std::fmt::Debug for RunningInstall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningInstall")
            .field("pid", &self.pid)
            .field("elevated", &self.elevated)
            .field("cancelled", &self.cancelled)
            .finish()
    }
}

impl RunningInstall {
    /// Starts `launch` and calls `on_event` from a reader thread for everything it prints
    /// and, last, for its exit.
    pub fn spawn(
        launch: &Launch,
        mut on_event: impl FnMut(RunnerEvent) + Send + 'static,
    ) -> io::Result<Self> {
        tracing::info!(program = %launch.program.display(), args = ?launch.args, "starting the installer");
        let mut child = Command::new(&launch.program)
            .args(&launch.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let pid = Pid::from_child(&child);
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("no stdout pipe"))?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| io::Error::other("no stderr pipe"))?;
        let state = Arc::new(ExitState::default());
        let elevated = launch.elevated;

        let stderr_reader = thread::Builder::new()
            .name("ferryctl-stderr".into())
            .spawn(move || collect_stderr(stderr))?;
        let reader_state = state.clone();
        thread::Builder::new()
            .name("ferryctl-stdout".into())
            .spawn(move || {
                read_events(stdout, &mut on_event);
                let stderr_tail = stderr_reader.join().unwrap_or_default();
                let mut exit = reap(child, pid, &reader_state);
                exit.stderr_tail = stderr_tail;
                exit.elevated = elevated;
                tracing::info!(?exit, "the installer exited");
                on_event(RunnerEvent::Exited(exit));
            })?;
        Ok(Self {
            pid,
            elevated,
            stdin,
            state,
            cancelled: false,
        })
    }

    /// Asks the child to stop: closes its stdin (`--cancel-on-stdin-eof`) and, when it runs
    /// as us, sends SIGTERM, then kills it if it is still running after a grace period. A
    /// child running as root through pkexec cannot be signalled by us; the closed stdin is
    /// its request to stop.
    pub fn cancel(&mut self) {
        if self.cancelled {
            return;
        }
        self.cancelled = true;
        self.stdin.take();
        if self.elevated {
            return;
        }
        signal(self.pid, &self.state, Signal::TERM);
        let pid = self.pid;
        let state = self.state.clone();
        let spawned = thread::Builder::new()
            .name("ferryctl-cancel".into())
            .spawn(move || {
                let exited = state.exited.lock().unwrap_or_else(|e| e.into_inner());
                let (exited, _) = state
                    .changed
                    .wait_timeout_while(exited, CANCEL_GRACE, |exited| !*exited)
                    .unwrap_or_else(|e| e.into_inner());
                drop(exited);
                signal(pid, &state, Signal::KILL);
            });
        if let Err(error) = spawned {
            tracing::warn!(%error, "cannot watch the cancelled installer; it may take a while to stop");
        }
    }

    /// Stops a child whose output cannot be followed (a stream of another version).
    pub fn stop(&mut self) {
        self.cancel();
    }

    pub fn pid(&self) -> u32 {
        self.pid.as_raw_nonzero().get().unsigned_abs()
    }

    pub fn elevated(&self) -> bool {
        self.elevated
    }
}

fn signal(pid: Pid, state: &ExitState, signal: Signal) {
    let exited = state.exited.lock().unwrap_or_else(|e| e.into_inner());
    if *exited {
        return;
    }
    if let Err(error) = rustix::process::kill_process(pid, signal) {
        tracing::warn!(%error, ?signal, "cannot signal the installer");
    }
}

/// Waits for the exit without reaping, marks it, then reaps: between the two, signals are
/// refused, so the pid cannot have been reused by then.
fn reap(mut child: Child, pid: Pid, state: &ExitState) -> ChildExit {
    loop {
        match rustix::process::waitid(
            WaitId::Pid(pid),
            WaitIdOptions::EXITED | WaitIdOptions::NOWAIT,
        ) {
            Err(rustix::io::Errno::INTR) => continue,
            Err(error) => {
                tracing::warn!(%error, "waiting for the installer failed");
                break;
            }
            Ok(_) => break,
        }
    }
    {
        let mut exited = state.exited.lock().unwrap_or_else(|e| e.into_inner());
        *exited = true;
        state.changed.notify_all();
    }
    match child.wait() {
        Ok(status) => {
            use std::os::unix::process::ExitStatusExt as _;
            ChildExit {
                code: status.code(),
                signal: status.signal(),
                ..ChildExit::default()
            }
        }
        Err(error) => {
            tracing::warn!(%error, "cannot read the installer's exit status");
            ChildExit::default()
        }
    }
}

fn read_events(stdout: impl Read, on_event: &mut impl FnMut(RunnerEvent)) {
    for line in JsonLines::new(BufReader::new(stdout)) {
        match line {
            Ok(text) => on_event(RunnerEvent::Line(text)),
            Err(LineError::TooLong { .. }) => on_event(RunnerEvent::LineTooLong),
            Err(LineError::Io(error)) => {
                tracing::warn!(%error, "reading the installer's output failed");
                return;
            }
        }
    }
}

fn collect_stderr(stderr: impl Read) -> Vec<String> {
    let mut reader = BufReader::new(stderr);
    let mut tail = VecDeque::with_capacity(STDERR_TAIL_LINES);
    let mut line = Vec::new();
    loop {
        match read_line_bounded(&mut reader, &mut line, MAX_STDERR_LINE_BYTES) {
            Ok(LineRead::Eof) => break,
            Ok(LineRead::TooLong) => {}
            Ok(LineRead::Line) => {
                let text = String::from_utf8_lossy(&line).trim_end().to_owned();
                tracing::info!(target: "ferryctl", "{text}");
                if tail.len() == STDERR_TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(text);
            }
            Err(_) => break,
        }
    }
    tail.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::sync::mpsc;
    use std::time::Instant;

    use crate::model::{InstallRun, Outcome};

    fn sh(script: &str) -> Launch {
        Launch {
            program: PathBuf::from("/bin/sh"),
            args: vec!["-c".into(), script.into()],
            elevated: false,
        }
    }

    fn data(name: &str) -> String {
        format!("{}/tests/data/streams/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    /// Collects runner events into the model until the child exits, with a deadline.
    fn run_to_end(
        receiver: &mpsc::Receiver<RunnerEvent>,
        run: &mut InstallRun,
        mut on_line: impl FnMut(usize, &mut InstallRun),
    ) -> ChildExit {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut lines = 0;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match receiver
                .recv_timeout(left)
                .expect("the runner reports before the deadline")
            {
                RunnerEvent::Line(line) => {
                    lines += 1;
                    let _ = run.apply_line(&line);
                    on_line(lines, run);
                }
                RunnerEvent::LineTooLong => {}
                RunnerEvent::Exited(exit) => {
                    run.child_exited(&exit);
                    return exit;
                }
            }
        }
    }

    fn kingston_updates() -> Vec<ferry_schema::Update> {
        let record: ferry_schema::DriveRecord =
            serde_json::from_str(include_str!("../../tests/data/drives/kingston.json"))
                .expect("record");
        record.updates
    }

    #[test]
    fn a_child_that_dies_mid_stream_becomes_a_failed_run() {
        let (sender, receiver) = mpsc::channel();
        let script = format!(
            "cat '{}'; echo 'error: lost the drive' >&2; kill -KILL $$",
            data("install-killed.jsonl")
        );
        let _running = RunningInstall::spawn(&sh(&script), move |event| {
            let _ = sender.send(event);
        })
        .expect("spawn");
        let mut run = InstallRun::new(&kingston_updates());
        let exit = run_to_end(&receiver, &mut run, |_, _| {});
        assert_eq!(exit.signal, Some(9));
        assert_eq!(exit.stderr_tail, ["error: lost the drive"]);
        assert!(
            matches!(run.outcome(), Some(Outcome::Failed { message, .. }) if message == "Lost the drive"),
            "{:?}",
            run.outcome()
        );
    }

    #[test]
    fn a_recorded_stream_replayed_by_a_child_completes() {
        let (sender, receiver) = mpsc::channel();
        let script = format!("cat '{}'", data("install-all-ok.jsonl"));
        let _running = RunningInstall::spawn(&sh(&script), move |event| {
            let _ = sender.send(event);
        })
        .expect("spawn");
        let mut run = InstallRun::new(&kingston_updates());
        let exit = run_to_end(&receiver, &mut run, |_, _| {});
        assert!(exit.success());
        assert!(matches!(
            run.outcome(),
            Some(Outcome::Done {
                installed: 3,
                restart_required: true
            })
        ));
    }

    #[test]
    fn cancel_stops_a_child_that_waits_forever() {
        let (sender, receiver) = mpsc::channel();
        // Prints the start of a stream, then blocks reading its stdin, as a stuck pull would.
        let script = format!("head -n 5 '{}'; read never", data("install-killed.jsonl"));
        let mut running = RunningInstall::spawn(&sh(&script), move |event| {
            let _ = sender.send(event);
        })
        .expect("spawn");
        let mut run = InstallRun::new(&kingston_updates());
        let mut cancel_after = Some(5);
        let exit = run_to_end(&receiver, &mut run, |lines, run| {
            if cancel_after == Some(lines) {
                cancel_after = None;
                run.request_cancel();
                running.cancel();
            }
        });
        assert!(exit.signal == Some(15) || exit.code.is_some(), "{exit:?}");
        assert_eq!(run.outcome(), Some(&Outcome::Cancelled));
    }

    #[test]
    fn a_missing_program_is_an_error_not_a_hang() {
        let launch = Launch {
            program: PathBuf::from("/nonexistent/ferryctl"),
            args: Vec::new(),
            elevated: false,
        };
        assert!(RunningInstall::spawn(&launch, |_| {}).is_err());
    }
}
