//! The state of one installation, built only from what `ferryctl install --json` printed
//! and how the child ended. No GTK here: the window renders [`InstallRun`], and tests feed
//! it recorded streams.

use std::collections::HashMap;

use ferry_schema::event::{Event, MessageLevel, Phase, StreamError};
use ferry_schema::{InstallResult, InstallStatus, SourceUse, TargetKind, Update};

use crate::i18n::{ntrf, tr, trf};

/// Bytes moved so far, as the last progress event said.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Transfer {
    pub bytes_done: u64,
    pub bytes_total: u64,
    /// Bytes per second.
    pub rate: u64,
    pub eta_seconds: Option<u64>,
}

impl Transfer {
    /// 0.0 ..= 1.0; totals may still grow while a commit's closure is walked.
    pub fn fraction(&self) -> f64 {
        if self.bytes_total == 0 {
            return 0.0;
        }
        (self.bytes_done as f64 / self.bytes_total as f64).clamp(0.0, 1.0)
    }

    /// Remaining seconds: the engine's estimate, else computed from the rate.
    pub fn remaining_seconds(&self) -> Option<u64> {
        self.eta_seconds.or_else(|| {
            (self.rate > 0 && self.bytes_total >= self.bytes_done)
                .then(|| (self.bytes_total - self.bytes_done).div_ceil(self.rate))
        })
    }
}

/// Where one update stands.
#[derive(Debug, Clone, PartialEq)]
pub enum RowStatus {
    /// Planned, nothing moved yet.
    Waiting,
    Downloading(Transfer),
    /// Everything fetched; deploying waits for the others.
    Downloaded,
    Deploying,
    Installed {
        restart_required: bool,
    },
    UpToDate,
    Skipped(Option<String>),
    Cancelled,
    Failed(String),
}

impl RowStatus {
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            Self::Installed { .. }
                | Self::UpToDate
                | Self::Skipped(_)
                | Self::Cancelled
                | Self::Failed(_)
        )
    }
}

/// How a whole installation ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Everything asked for is installed or was already up to date.
    Done {
        installed: usize,
        restart_required: bool,
    },
    Cancelled,
    /// Something could not be installed; `message` is the engine's own words when it gave
    /// any. Updates that did install keep their [`RowStatus::Installed`].
    Failed {
        message: String,
        installed: usize,
        restart_required: bool,
    },
}

/// How the child process ended.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChildExit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// The last lines the child wrote on stderr: its one-line error, if it gave one.
    pub stderr_tail: Vec<String>,
    /// It ran through `pkexec`, whose own exit codes mean authorization failures.
    pub elevated: bool,
}

impl ChildExit {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// What to tell a person when the child ended without saying how the install went.
    pub fn explain(&self) -> String {
        if self.elevated {
            // pkexec: 126 means the authentication dialog was dismissed, 127 not authorized.
            match self.code {
                Some(126) => return tr("Authentication was cancelled, so nothing was installed."),
                Some(127) => {
                    return tr("You are not allowed to install updates on this computer. Ask an administrator.")
                }
                _ => {}
            }
        }
        let detail = self
            .stderr_tail
            .iter()
            .rev()
            .map(|line| line.trim())
            .find(|line| !line.is_empty())
            .map(|line| sentence(line.strip_prefix("error: ").unwrap_or(line)));
        match (detail, self.signal, self.code) {
            (Some(detail), _, _) => detail,
            (None, Some(signal), _) => trf(
                "The installer stopped unexpectedly (signal {signal}). Nothing more was installed.",
                &[("signal", &signal)],
            ),
            (None, None, Some(code)) => trf(
                "The installer stopped unexpectedly (exit status {code}). Nothing more was installed.",
                &[("code", &code)],
            ),
            (None, None, None) => tr("The installer stopped unexpectedly. Nothing more was installed."),
        }
    }
}

/// A one-line error as a sentence: capitalised, as the rest of the window's text.
fn sentence(line: &str) -> String {
    let mut chars = line.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// One update the installation works on.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedUpdate {
    pub id: String,
    pub ref_name: String,
    pub target: TargetKind,
    pub installation: Option<String>,
    pub download_size: u64,
}

impl PlannedUpdate {
    /// An OS update for another sysroot (a mounted image, a test tree) takes effect when
    /// that system boots; restarting this computer does nothing for it.
    fn restarts_this_computer(&self) -> bool {
        self.target == TargetKind::Os && matches!(self.installation.as_deref(), None | Some("/"))
    }
}

impl From<&Update> for PlannedUpdate {
    fn from(update: &Update) -> Self {
        Self {
            id: update.id.clone(),
            ref_name: update.ref_name.clone(),
            target: update.target,
            installation: update.installation.clone(),
            download_size: update.download_size,
        }
    }
}

/// The state of one `ferryctl install --json` run.
#[derive(Debug, Clone, PartialEq)]
pub struct InstallRun {
    /// In order: what was asked for, then what the engine's plan added (a needed runtime).
    planned: Vec<PlannedUpdate>,
    rows: HashMap<String, RowStatus>,
    overall: Option<Transfer>,
    phase: Option<Phase>,
    messages: Vec<(MessageLevel, String)>,
    cancel_requested: bool,
    finished_ok: Option<bool>,
    refused: Option<String>,
    ignored_lines: usize,
    outcome: Option<Outcome>,
    /// What earlier runs installed, so those rows keep saying so.
    earlier: HashMap<String, RowStatus>,
    /// Each update's sources, as progress and its result last told (earlier runs' too).
    sources: HashMap<String, Vec<SourceUse>>,
}

impl InstallRun {
    /// A run about to start for `updates`.
    pub fn new(updates: &[Update]) -> Self {
        let planned: Vec<PlannedUpdate> = updates.iter().map(PlannedUpdate::from).collect();
        let rows = planned
            .iter()
            .map(|update| (update.id.clone(), RowStatus::Waiting))
            .collect();
        Self {
            planned,
            rows,
            overall: None,
            phase: None,
            messages: Vec::new(),
            cancel_requested: false,
            finished_ok: None,
            refused: None,
            ignored_lines: 0,
            outcome: None,
            earlier: HashMap::new(),
            sources: HashMap::new(),
        }
    }

    /// A run that follows `previous`: rows it installed keep their result.
    pub fn after(previous: Option<&InstallRun>, updates: &[Update]) -> Self {
        let mut run = Self::new(updates);
        if let Some(previous) = previous {
            run.earlier = previous.earlier.clone();
            for (id, status) in &previous.rows {
                if matches!(status, RowStatus::Installed { .. } | RowStatus::UpToDate) {
                    run.earlier.insert(id.clone(), status.clone());
                }
            }
            for id in run.rows.keys() {
                run.earlier.remove(id);
            }
            run.sources = previous
                .sources
                .iter()
                .filter(|(id, _)| run.earlier.contains_key(*id))
                .map(|(id, sources)| (id.clone(), sources.clone()))
                .collect();
        }
        run
    }

    /// Applies one line of the child's stdout. A stream of another version is refused:
    /// the caller stops the child, and the run ends as failed once it exits.
    pub fn apply_line(&mut self, line: &str) -> Result<(), StreamError> {
        if self.refused.is_some() || line.trim().is_empty() {
            return Ok(());
        }
        match ferry_schema::event::parse_line(line) {
            Ok(event) => {
                self.apply(event);
                Ok(())
            }
            Err(error) => {
                self.line_error(&error);
                Err(error)
            }
        }
    }

    /// Records a line that could not be used.
    pub fn line_error(&mut self, error: &StreamError) {
        match error {
            StreamError::Version { found } => {
                self.refused = Some(trf(
                    "The installer's output is in a format this app does not understand (event stream version {found}). Install matching versions of Ferry and ferryctl.",
                    &[("found", found)],
                ));
            }
            StreamError::Malformed(error) => {
                tracing::warn!(%error, "ignoring a line of the installer's output");
                self.ignored_lines += 1;
            }
        }
    }

    pub fn apply(&mut self, event: Event) {
        if self.outcome.is_some() {
            return;
        }
        match event {
            Event::Phase {
                phase,
                update: None,
            } => self.phase = Some(phase),
            Event::Phase {
                phase,
                update: Some(id),
            } => {
                let status = self.row_mut(&id);
                if !status.is_final() {
                    match phase {
                        Phase::Pull => {
                            if *status == RowStatus::Waiting {
                                *status = RowStatus::Downloading(Transfer::default());
                            }
                        }
                        Phase::Deploy => *status = RowStatus::Deploying,
                        Phase::Scan | Phase::Resolve | Phase::Done => {}
                    }
                }
            }
            Event::Plan {
                updates,
                problems: _,
            } => {
                for update in &updates {
                    if !self.planned.iter().any(|planned| planned.id == update.id) {
                        self.planned.push(PlannedUpdate::from(update));
                    }
                    self.rows
                        .entry(update.id.clone())
                        .or_insert(RowStatus::Waiting);
                }
            }
            Event::Progress {
                update,
                bytes_done,
                bytes_total,
                rate,
                eta_seconds,
                sources,
                ..
            } => {
                if let Some(id) = update.as_ref().filter(|_| !sources.is_empty()) {
                    self.sources.insert(id.clone(), sources);
                }
                let transfer = Transfer {
                    bytes_done,
                    bytes_total,
                    rate,
                    eta_seconds,
                };
                match update {
                    None => self.overall = Some(transfer),
                    Some(id) => {
                        let status = self.row_mut(&id);
                        if !status.is_final() && *status != RowStatus::Deploying {
                            *status = if bytes_total > 0 && bytes_done >= bytes_total {
                                RowStatus::Downloaded
                            } else {
                                RowStatus::Downloading(transfer)
                            };
                        }
                    }
                }
            }
            Event::Message { level, text } => self.messages.push((level, text)),
            Event::SourceState {
                update: Some(id),
                source,
                state,
                reason,
            } => {
                let known = self
                    .sources
                    .get_mut(&id)
                    .and_then(|sources| sources.iter_mut().find(|s| s.source == source));
                if let Some(known) = known {
                    known.state = state;
                    known.reason = reason;
                }
            }
            Event::SourceState { update: None, .. } | Event::DrivePlan(_) => {}
            Event::Result(result) => self.apply_result(result),
            Event::Finished { ok } => self.finished_ok = Some(ok),
        }
    }

    fn apply_result(&mut self, result: InstallResult) {
        if !result.sources.is_empty() {
            self.sources
                .insert(result.update.clone(), result.sources.clone());
        }
        let restart_required = result.restart_required
            && self
                .planned
                .iter()
                .find(|planned| planned.id == result.update)
                .is_none_or(PlannedUpdate::restarts_this_computer);
        let status = match result.status {
            InstallStatus::Installed => RowStatus::Installed { restart_required },
            InstallStatus::UpToDate => RowStatus::UpToDate,
            InstallStatus::Skipped => RowStatus::Skipped(result.message),
            InstallStatus::Cancelled => RowStatus::Cancelled,
            InstallStatus::Failed => RowStatus::Failed(
                result
                    .message
                    .unwrap_or_else(|| tr("This update could not be installed.")),
            ),
        };
        *self.row_mut(&result.update) = status;
    }

    fn row_mut(&mut self, id: &str) -> &mut RowStatus {
        self.rows.entry(id.to_owned()).or_insert(RowStatus::Waiting)
    }

    /// The person pressed Cancel; the child is being stopped.
    pub fn request_cancel(&mut self) {
        if self.outcome.is_none() {
            self.cancel_requested = true;
        }
    }

    /// The child is gone: decide how the run ended. Nothing the child said later counts.
    pub fn child_exited(&mut self, exit: &ChildExit) {
        if self.outcome.is_some() {
            return;
        }
        let outcome = self.decide(exit);
        let leftover = match &outcome {
            Outcome::Cancelled => RowStatus::Cancelled,
            Outcome::Failed { message, .. } => RowStatus::Failed(message.clone()),
            Outcome::Done { .. } => {
                RowStatus::Failed(tr("The installer did not report on this update."))
            }
        };
        for status in self.rows.values_mut() {
            if !status.is_final() {
                *status = leftover.clone();
            }
        }
        self.outcome = Some(outcome);
        // A Done run whose rows could not all be accounted for is not done.
        if matches!(self.outcome, Some(Outcome::Done { .. }))
            && self
                .rows
                .values()
                .any(|status| matches!(status, RowStatus::Failed(_)))
        {
            self.outcome = Some(Outcome::Failed {
                message: tr("The installer did not report on every update."),
                installed: self.installed_count(),
                restart_required: self.restart_required(),
            });
        }
    }

    /// The child could not even be started.
    pub fn failed_to_start(&mut self, message: String) {
        if self.outcome.is_some() {
            return;
        }
        for status in self.rows.values_mut() {
            if !status.is_final() {
                *status = RowStatus::Failed(message.clone());
            }
        }
        self.outcome = Some(Outcome::Failed {
            message,
            installed: 0,
            restart_required: false,
        });
    }

    fn decide(&self, exit: &ChildExit) -> Outcome {
        let installed = self.installed_count();
        let restart_required = self.restart_required();
        if let Some(message) = &self.refused {
            return Outcome::Failed {
                message: message.clone(),
                installed,
                restart_required,
            };
        }
        let failures: Vec<&str> = self
            .planned
            .iter()
            .filter_map(|planned| match self.rows.get(&planned.id) {
                Some(RowStatus::Failed(message)) => Some(message.as_str()),
                _ => None,
            })
            .collect();
        if !failures.is_empty() {
            let message = if failures.len() == 1 {
                failures[0].to_owned()
            } else {
                ntrf(
                    "{n} update could not be installed.",
                    "{n} updates could not be installed.",
                    failures.len() as u64,
                    &[],
                )
            };
            return Outcome::Failed {
                message,
                installed,
                restart_required,
            };
        }
        let any_cancelled = self
            .rows
            .values()
            .any(|status| *status == RowStatus::Cancelled);
        match self.finished_ok {
            Some(true) if exit.success() => Outcome::Done {
                installed,
                restart_required,
            },
            _ if self.cancel_requested || any_cancelled => Outcome::Cancelled,
            Some(_) => Outcome::Failed {
                message: self.last_error_message().unwrap_or_else(|| exit.explain()),
                installed,
                restart_required,
            },
            None => Outcome::Failed {
                message: exit.explain(),
                installed,
                restart_required,
            },
        }
    }

    fn last_error_message(&self) -> Option<String> {
        self.messages
            .iter()
            .rev()
            .find(|(level, _)| *level == MessageLevel::Error)
            .map(|(_, text)| text.clone())
    }

    fn installed_count(&self) -> usize {
        self.rows
            .values()
            .filter(|status| matches!(status, RowStatus::Installed { .. }))
            .count()
    }

    /// This run or an earlier one deployed a system update that waits for a restart.
    fn restart_required(&self) -> bool {
        self.rows
            .values()
            .chain(self.earlier.values())
            .any(|status| {
                matches!(
                    status,
                    RowStatus::Installed {
                        restart_required: true
                    }
                )
            })
    }

    pub fn planned(&self) -> &[PlannedUpdate] {
        &self.planned
    }

    /// Where an update stands in this run, or how an earlier run left it.
    pub fn status(&self, id: &str) -> Option<&RowStatus> {
        self.rows.get(id).or_else(|| self.earlier.get(id))
    }

    /// Installed by this run, or found already up to date: nothing left to do for it.
    pub fn is_done(&self, id: &str) -> bool {
        matches!(
            self.status(id),
            Some(RowStatus::Installed { .. } | RowStatus::UpToDate)
        )
    }

    /// The sources update `id` was fetched from so far, each with its share.
    pub fn sources(&self, id: &str) -> &[SourceUse] {
        self.sources.get(id).map_or(&[], Vec::as_slice)
    }

    pub fn contains(&self, id: &str) -> bool {
        self.rows.contains_key(id)
    }

    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }

    pub fn is_running(&self) -> bool {
        self.outcome.is_none()
    }

    pub fn cancel_requested(&self) -> bool {
        self.cancel_requested
    }

    pub fn phase(&self) -> Option<Phase> {
        self.phase
    }

    pub fn messages(&self) -> &[(MessageLevel, String)] {
        &self.messages
    }

    pub fn ignored_lines(&self) -> usize {
        self.ignored_lines
    }

    /// The whole transfer: the engine's overall progress when it gives one, else the sum
    /// of the rows, with sizes from the plan for rows that have not started.
    pub fn overall(&self) -> Transfer {
        if let Some(overall) = self.overall {
            return overall;
        }
        let mut total = Transfer::default();
        for planned in &self.planned {
            match self.rows.get(&planned.id) {
                Some(RowStatus::Downloading(transfer)) => {
                    total.bytes_done += transfer.bytes_done;
                    total.bytes_total += transfer.bytes_total.max(planned.download_size);
                    total.rate += transfer.rate;
                }
                Some(RowStatus::Waiting) | None => total.bytes_total += planned.download_size,
                Some(_) => {
                    total.bytes_done += planned.download_size;
                    total.bytes_total += planned.download_size;
                }
            }
        }
        total
    }

    /// How many planned updates reached an end state.
    pub fn finished_count(&self) -> usize {
        self.planned
            .iter()
            .filter(|planned| self.rows.get(&planned.id).is_some_and(RowStatus::is_final))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_schema::event::{parse_line, to_line};

    const ALL_OK: &str = include_str!("../tests/data/streams/install-all-ok.jsonl");
    const ONE_FAILS: &str = include_str!("../tests/data/streams/install-one-fails.jsonl");
    const KILLED: &str = include_str!("../tests/data/streams/install-killed.jsonl");
    const CANCELLED: &str = include_str!("../tests/data/streams/install-cancelled.jsonl");
    const KILLED_TOOL: &str = include_str!("../tests/data/streams/install-tool-killed.jsonl");
    const UP_TO_DATE: &str = include_str!("../tests/data/streams/install-up-to-date.jsonl");
    const VERSION_2: &str = include_str!("../tests/data/streams/stream-version-2.jsonl");

    const OS: &str = "os:/:exampleos/x86_64/stable";
    const EDITOR: &str = "flatpak:user:app/org.gnome.TextEditor/x86_64/stable";
    const TOOL: &str = "flatpak:user:app/org.example.Tool/x86_64/stable";

    fn kingston_updates() -> Vec<Update> {
        let record: ferry_schema::DriveRecord =
            serde_json::from_str(include_str!("../tests/data/drives/kingston.json"))
                .expect("record");
        record.updates
    }

    fn feed(run: &mut InstallRun, stream: &str, lines: usize) {
        for line in stream.lines().take(lines) {
            run.apply_line(line).expect("recorded line parses");
        }
    }

    fn exited(code: i32) -> ChildExit {
        ChildExit {
            code: Some(code),
            ..ChildExit::default()
        }
    }

    #[test]
    fn recorded_streams_are_exactly_what_the_engine_writes() {
        for stream in [
            ALL_OK,
            ONE_FAILS,
            KILLED,
            KILLED_TOOL,
            CANCELLED,
            UP_TO_DATE,
        ] {
            for line in stream.lines() {
                let event = parse_line(line).expect("parses");
                assert_eq!(to_line(&event), line, "not canonical");
            }
        }
    }

    fn share(source: &str, label: &str, kind: ferry_schema::SourceKind, objects: u64) -> SourceUse {
        SourceUse {
            source: source.to_owned(),
            label: Some(label.to_owned()),
            kind,
            objects,
            bytes: objects * 100,
            state: ferry_schema::SourceState::Active,
            reason: None,
        }
    }

    #[test]
    fn each_row_knows_its_sources_from_progress_drops_and_its_result() {
        use ferry_schema::{SourceKind, SourceState};
        let kingston = "KINGSTON (/media/k/.ostree/repo)";
        let peer = "Ferry on lab-2 (http://[fe80::2%25eth0]:43381/0)";
        let mut run = InstallRun::new(&kingston_updates());
        run.apply(Event::Progress {
            update: Some(OS.into()),
            objects_done: 4,
            objects_total: 10,
            bytes_done: 400,
            bytes_total: 1000,
            rate: 0,
            eta_seconds: None,
            source: None,
            sources: vec![
                share(kingston, "KINGSTON", SourceKind::Drive, 3),
                share(peer, "Ferry on lab-2", SourceKind::Lan, 1),
            ],
        });
        assert_eq!(run.sources(OS).len(), 2);
        assert!(run.sources(EDITOR).is_empty());
        assert_eq!(
            crate::format::came_from(run.sources(OS)).as_deref(),
            Some("from KINGSTON and a computer nearby")
        );
        run.apply(Event::SourceState {
            update: Some(OS.into()),
            source: peer.into(),
            state: SourceState::Dropped,
            reason: Some("it sent an object that does not hash to its name".into()),
        });
        assert_eq!(run.sources(OS)[1].state, SourceState::Dropped);
        // The result's figures are final: what the dropped peer sent was discarded.
        run.apply(Event::Result(InstallResult {
            update: OS.into(),
            ref_name: "exampleos/x86_64/stable".into(),
            target: TargetKind::Os,
            status: InstallStatus::Installed,
            message: None,
            restart_required: false,
            sources: vec![share(kingston, "KINGSTON", SourceKind::Drive, 10)],
        }));
        assert_eq!(
            crate::format::came_from(run.sources(OS)).as_deref(),
            Some("from KINGSTON")
        );
        // A later run keeps saying where the installed update came from.
        let next = InstallRun::after(Some(&run), &[]);
        assert_eq!(next.sources(OS), run.sources(OS));
    }

    #[test]
    fn a_full_install_ends_with_restart_to_finish() {
        let mut run = InstallRun::new(&kingston_updates());
        assert_eq!(run.status(OS), Some(&RowStatus::Waiting));
        feed(&mut run, ALL_OK, 11);
        let Some(RowStatus::Downloading(os)) = run.status(OS) else {
            panic!("OS not downloading: {:?}", run.status(OS));
        };
        assert_eq!(
            (os.bytes_done, os.bytes_total, os.rate),
            (98_000_000, 245_100_000, 9_700_000)
        );
        assert_eq!(run.status(EDITOR), Some(&RowStatus::Downloaded));
        assert_eq!(run.status(TOOL), Some(&RowStatus::Waiting));
        let overall = run.overall();
        assert_eq!(overall.bytes_done, 101_400_000);
        assert_eq!(overall.bytes_total, 260_800_000);
        assert_eq!(overall.remaining_seconds(), Some(15));
        assert!(run.is_running());

        feed(
            &mut run,
            &ALL_OK.lines().skip(11).collect::<Vec<_>>().join("\n"),
            usize::MAX,
        );
        assert!(run.is_running(), "only the child's exit ends a run");
        run.child_exited(&exited(0));
        assert_eq!(
            run.outcome(),
            Some(&Outcome::Done {
                installed: 3,
                restart_required: true
            })
        );
        assert_eq!(
            run.status(OS),
            Some(&RowStatus::Installed {
                restart_required: true
            })
        );
        assert_eq!(run.finished_count(), 3);
    }

    #[test]
    fn another_sysroot_needs_no_restart_of_this_computer() {
        let mut updates = kingston_updates();
        updates[0].installation = Some("/var/tmp/demo/sysroot".into());
        let mut run = InstallRun::new(&updates);
        feed(&mut run, ALL_OK, usize::MAX);
        run.child_exited(&exited(0));
        assert_eq!(
            run.outcome(),
            Some(&Outcome::Done {
                installed: 3,
                restart_required: false
            })
        );
        assert_eq!(
            run.status(OS),
            Some(&RowStatus::Installed {
                restart_required: false
            })
        );
    }

    #[test]
    fn one_failure_keeps_the_others_and_the_engines_message() {
        let mut run = InstallRun::new(&kingston_updates());
        feed(&mut run, ONE_FAILS, usize::MAX);
        run.child_exited(&exited(1));
        let Some(Outcome::Failed {
            message,
            installed,
            restart_required,
        }) = run.outcome()
        else {
            panic!("not failed: {:?}", run.outcome());
        };
        assert!(message.contains("is corrupt"), "{message}");
        assert_eq!(*installed, 2);
        assert!(*restart_required);
        assert!(
            matches!(run.status(TOOL), Some(RowStatus::Failed(m)) if m.contains("Copy the app"))
        );
        assert_eq!(
            run.status(EDITOR),
            Some(&RowStatus::Installed {
                restart_required: false
            })
        );
    }

    #[test]
    fn a_child_killed_mid_stream_fails_every_unfinished_update() {
        let mut run = InstallRun::new(&kingston_updates());
        feed(&mut run, KILLED, usize::MAX);
        assert!(run.is_running());
        run.child_exited(&ChildExit {
            signal: Some(9),
            ..ChildExit::default()
        });
        let Some(Outcome::Failed {
            message, installed, ..
        }) = run.outcome()
        else {
            panic!("not failed: {:?}", run.outcome());
        };
        assert!(message.contains("signal 9"), "{message}");
        assert_eq!(*installed, 0);
        for id in [OS, EDITOR, TOOL] {
            assert!(matches!(run.status(id), Some(RowStatus::Failed(_))), "{id}");
        }
        assert!(!run.is_running());
    }

    #[test]
    fn the_childs_last_error_line_explains_a_failure_without_results() {
        let mut run = InstallRun::new(&kingston_updates());
        feed(&mut run, KILLED, 2);
        run.child_exited(&ChildExit {
            code: Some(1),
            stderr_tail: vec![
                "warning: something minor".into(),
                "error: /sysroot is not writable: run as root, or through the app's polkit action"
                    .into(),
            ],
            ..ChildExit::default()
        });
        let Some(Outcome::Failed { message, .. }) = run.outcome() else {
            panic!("not failed");
        };
        assert_eq!(
            message,
            "/sysroot is not writable: run as root, or through the app's polkit action"
        );
        assert_eq!(sentence("the drive went away"), "The drive went away");
    }

    #[test]
    fn dismissed_authentication_is_explained() {
        let exit = ChildExit {
            code: Some(126),
            elevated: true,
            ..ChildExit::default()
        };
        assert!(exit.explain().contains("Authentication was cancelled"));
    }

    #[test]
    fn cancel_ends_as_cancelled() {
        let mut run = InstallRun::new(&kingston_updates());
        feed(&mut run, CANCELLED, 11);
        run.request_cancel();
        assert!(run.cancel_requested());
        feed(
            &mut run,
            &CANCELLED.lines().skip(11).collect::<Vec<_>>().join("\n"),
            usize::MAX,
        );
        run.child_exited(&ChildExit {
            code: Some(1),
            ..ChildExit::default()
        });
        assert_eq!(run.outcome(), Some(&Outcome::Cancelled));
        assert_eq!(run.status(OS), Some(&RowStatus::Cancelled));
    }

    #[test]
    fn cancel_before_any_result_cancels_every_row() {
        let mut run = InstallRun::new(&kingston_updates());
        feed(&mut run, KILLED, 5);
        run.request_cancel();
        run.child_exited(&ChildExit {
            signal: Some(15),
            ..ChildExit::default()
        });
        assert_eq!(run.outcome(), Some(&Outcome::Cancelled));
        assert_eq!(run.status(TOOL), Some(&RowStatus::Cancelled));
    }

    #[test]
    fn already_up_to_date_is_done() {
        let updates: Vec<Update> = kingston_updates()
            .into_iter()
            .filter(|u| u.id == EDITOR)
            .collect();
        let mut run = InstallRun::new(&updates);
        feed(&mut run, UP_TO_DATE, usize::MAX);
        run.child_exited(&exited(0));
        assert_eq!(
            run.outcome(),
            Some(&Outcome::Done {
                installed: 0,
                restart_required: false
            })
        );
        assert_eq!(run.status(EDITOR), Some(&RowStatus::UpToDate));
    }

    #[test]
    fn a_version_2_stream_is_refused() {
        let mut run = InstallRun::new(&kingston_updates());
        let mut lines = VERSION_2.lines();
        let first = lines.next().expect("a line");
        assert!(matches!(
            run.apply_line(first),
            Err(StreamError::Version { found: 2 })
        ));
        // Later lines, even a "finished ok", change nothing.
        for line in lines {
            assert!(run.apply_line(line).is_ok());
        }
        run.child_exited(&exited(0));
        let Some(Outcome::Failed { message, .. }) = run.outcome() else {
            panic!("not refused: {:?}", run.outcome());
        };
        assert!(message.contains("version 2"), "{message}");
        assert_eq!(run.status(OS), Some(&RowStatus::Failed(message.clone())));
    }

    #[test]
    fn a_later_run_keeps_what_earlier_ones_installed() {
        let updates = kingston_updates();
        let mut first = InstallRun::new(&updates);
        feed(&mut first, ONE_FAILS, usize::MAX);
        first.child_exited(&exited(1));
        let tool: Vec<Update> = updates.iter().filter(|u| u.id == TOOL).cloned().collect();
        let mut second = InstallRun::after(Some(&first), &tool);
        assert!(second.is_done(OS));
        assert!(!second.is_done(TOOL));
        assert_eq!(second.status(TOOL), Some(&RowStatus::Waiting));
        assert_eq!(second.planned().len(), 1);
        feed(&mut second, KILLED_TOOL, usize::MAX);
        second.child_exited(&ChildExit {
            signal: Some(9),
            ..ChildExit::default()
        });
        assert!(matches!(
            second.outcome(),
            Some(Outcome::Failed {
                installed: 0,
                restart_required: true,
                ..
            })
        ));
        assert_eq!(
            second.status(EDITOR),
            Some(&RowStatus::Installed {
                restart_required: false
            })
        );
        let third = InstallRun::after(Some(&second), &tool);
        assert!(
            third.is_done(EDITOR),
            "results carry over more than one run"
        );
    }

    #[test]
    fn garbage_lines_are_counted_and_skipped() {
        let mut run = InstallRun::new(&kingston_updates());
        assert!(run.apply_line("Downloading…").is_err());
        feed(&mut run, ALL_OK, usize::MAX);
        run.child_exited(&exited(0));
        assert_eq!(run.ignored_lines(), 1);
        assert!(matches!(run.outcome(), Some(Outcome::Done { .. })));
    }

    #[test]
    fn a_finished_stream_with_a_failing_exit_code_is_not_done() {
        let mut run = InstallRun::new(&kingston_updates());
        feed(&mut run, UP_TO_DATE, usize::MAX);
        run.child_exited(&ChildExit {
            code: Some(1),
            stderr_tail: vec!["error: cannot write the summary".into()],
            ..ChildExit::default()
        });
        assert!(
            matches!(run.outcome(), Some(Outcome::Failed { message, .. }) if message == "Cannot write the summary")
        );
    }
}
