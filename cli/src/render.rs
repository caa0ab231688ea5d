//! Rendering engine events: progress bars on a terminal, JSON lines with `--json`.

use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use ferry_engine::event::Reporter;
use ferry_schema::event::{self, Event, MessageLevel, Phase};
use ferry_schema::{Problem, SourceInfo, SourceState, SourceUse};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::i18n::{ntrf, tr, trf};

/// Writes every event as one JSON line on stdout, flushed at once so a reading process
/// (the desktop app, the hook) sees progress as it happens.
#[derive(Default)]
pub struct JsonLines {
    out: Mutex<()>,
}

impl Reporter for JsonLines {
    fn on_event(&self, event: Event) {
        let line = event::to_line(&event);
        let _guard = self.out.lock();
        let mut stdout = std::io::stdout().lock();
        // A closed stdout means the reader went away; nothing useful is left to do with output.
        let _ = writeln!(stdout, "{line}");
        let _ = stdout.flush();
    }
}

/// A progress bar on stderr for people at a terminal.
pub struct Terminal {
    bar: ProgressBar,
}

impl Terminal {
    pub fn new() -> Self {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(Self::style());
        Self { bar }
    }

    fn style() -> ProgressStyle {
        ProgressStyle::with_template(
            "{spinner} {prefix:>9} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
    }

    /// Ends the bar, leaving the terminal clean for the summary that follows.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Default for Terminal {
    fn default() -> Self {
        Self::new()
    }
}

fn phase_label(phase: Phase) -> String {
    match phase {
        Phase::Scan => tr("Scanning"),
        Phase::Resolve => tr("Resolving"),
        Phase::Pull => tr("Fetching"),
        Phase::Deploy => tr("Deploying"),
        Phase::Done => tr("Done"),
    }
}

impl Reporter for Terminal {
    fn on_event(&self, event: Event) {
        match event {
            Event::Phase { phase, update } => {
                self.bar.set_prefix(phase_label(phase));
                if let Some(update) = update {
                    self.bar.set_message(update);
                }
                self.bar.enable_steady_tick(Duration::from_millis(120));
            }
            Event::Progress {
                bytes_done,
                bytes_total,
                source,
                ..
            } => {
                self.bar.set_length(bytes_total.max(bytes_done));
                self.bar.set_position(bytes_done);
                if let Some(source) = source {
                    self.bar.set_message(source);
                }
            }
            Event::Message { level, text } => {
                let prefix = match level {
                    MessageLevel::Info => String::new(),
                    MessageLevel::Warning => tr("warning: "),
                    MessageLevel::Error => tr("error: "),
                };
                self.bar.println(format!("{prefix}{text}"));
            }
            Event::SourceState {
                source,
                reason: Some(reason),
                ..
            } => self.bar.println(format!(
                "{}{}",
                tr("warning: "),
                trf("{}: {}", &[&source, &reason])
            )),
            Event::SourceState { .. }
            | Event::Plan { .. }
            | Event::DrivePlan(_)
            | Event::Result(_)
            | Event::Finished { .. } => {}
        }
    }
}

/// The reporter a command uses: JSON lines when asked, a bar on a terminal, else nothing.
/// Whatever it shows, it keeps each update's sources for [`Output::sources_of`].
pub struct Output {
    sink: Sink,
    sources: Mutex<SourceLedger>,
}

enum Sink {
    Json(JsonLines),
    Terminal(Terminal),
    Quiet,
}

impl Output {
    pub fn new(json: bool) -> Self {
        use std::io::IsTerminal;
        let sink = if json {
            Sink::Json(JsonLines::default())
        } else if std::io::stderr().is_terminal() {
            Sink::Terminal(Terminal::new())
        } else {
            Sink::Quiet
        };
        Self {
            sink,
            sources: Mutex::default(),
        }
    }

    pub fn is_json(&self) -> bool {
        matches!(self.sink, Sink::Json(_))
    }

    /// Ends a failed command: in JSON, the error (with its causes) and `finished` are the
    /// stream's last words. Returns the error for `main` to print.
    pub fn fail<E>(&self, error: E) -> anyhow::Error
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        if self.is_json() {
            self.on_event(Event::Message {
                level: MessageLevel::Error,
                text: ferry_engine::causes::text(&error),
            });
            self.on_event(Event::Finished { ok: false });
        }
        error.into()
    }

    pub fn finish(&self) {
        if let Sink::Terminal(terminal) = &self.sink {
            terminal.finish();
        }
    }

    /// The sources update `update` was fetched from, as its events last told.
    pub fn sources_of(&self, update: &str) -> Vec<SourceUse> {
        self.sources
            .lock()
            .map(|ledger| ledger.sources_of(update))
            .unwrap_or_default()
    }
}

impl Reporter for Output {
    fn on_event(&self, event: Event) {
        if let Ok(mut ledger) = self.sources.lock() {
            ledger.record(&event);
        }
        match &self.sink {
            Sink::Json(json) => json.on_event(event),
            Sink::Terminal(terminal) => terminal.on_event(event),
            Sink::Quiet => {}
        }
    }
}

/// Each update's sources, from progress events, source state changes and results.
#[derive(Debug, Default)]
pub struct SourceLedger {
    /// By update ID; "" for events that name no update.
    by_update: std::collections::HashMap<String, Vec<SourceUse>>,
}

impl SourceLedger {
    pub fn record(&mut self, event: &Event) {
        match event {
            Event::Progress {
                update, sources, ..
            } if !sources.is_empty() => {
                self.by_update
                    .insert(update.clone().unwrap_or_default(), sources.clone());
            }
            Event::Result(result) if !result.sources.is_empty() => {
                self.by_update
                    .insert(result.update.clone(), result.sources.clone());
            }
            Event::SourceState {
                update,
                source,
                state,
                reason,
            } => {
                let known = self
                    .by_update
                    .get_mut(update.as_deref().unwrap_or_default())
                    .and_then(|sources| sources.iter_mut().find(|s| &s.source == source));
                if let Some(known) = known {
                    known.state = *state;
                    known.reason = reason.clone();
                }
            }
            _ => {}
        }
    }

    /// `update`'s sources; those of events that named no update when there are none.
    pub fn sources_of(&self, update: &str) -> Vec<SourceUse> {
        self.by_update
            .get(update)
            .or_else(|| self.by_update.get(""))
            .cloned()
            .unwrap_or_default()
    }
}

/// What `-v` prints under an update's result line: one indented line per source with its
/// share, and why it was set aside or dropped. Nothing when no source is known.
pub fn describe_sources(sources: &[SourceUse]) -> String {
    let mut text = String::new();
    for source in sources {
        // Translators: a source's share of a pull, e.g. "12 objects, 3.4 MB".
        let share = ntrf(
            "{} object, {}",
            "{} objects, {}",
            source.objects,
            &[&source.objects, &human_bytes(source.bytes)],
        );
        let state = match source.state {
            SourceState::Active => None,
            SourceState::SetAside => Some(tr("set aside")),
            SourceState::Dropped => Some(tr("dropped")),
        };
        // Translators: "from SOURCE: SHARE[; set aside|dropped[: REASON]]", under -v.
        let line = match (state, source.reason.as_deref().filter(|r| !r.is_empty())) {
            (None, _) => trf("from {}: {}", &[&source.source, &share]),
            (Some(state), None) => trf("from {}: {}; {}", &[&source.source, &share, &state]),
            (Some(state), Some(reason)) => trf(
                "from {}: {}; {}: {}",
                &[&source.source, &share, &state, &reason],
            ),
        };
        text.push_str("  ");
        text.push_str(&line);
        text.push('\n');
    }
    text
}

/// Formats a byte count the way people read it (1.5 MB).
pub fn human_bytes(bytes: u64) -> String {
    indicatif::DecimalBytes(bytes).to_string()
}

/// Rows under headings, each column as wide as its widest cell, every line after `indent`.
pub fn table<const N: usize>(headings: &[String; N], rows: &[[String; N]], indent: &str) -> String {
    let mut widths = headings.each_ref().map(|h| h.chars().count());
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for row in std::iter::once(headings).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        text.push_str(&format!("{indent}{}\n", cells.join("  ").trim_end()));
    }
    text
}

/// "Problems:" and one indented line each, or nothing when there are none.
pub fn problems(problems: &[Problem]) -> String {
    let mut text = String::new();
    if problems.is_empty() {
        return text;
    }
    text.push_str(&tr("Problems:\n"));
    for problem in problems {
        let place = problem_place(problem);
        match &problem.ref_name {
            Some(name) => text.push_str(&format!("  {place} ({name}): {}\n", problem.reason)),
            None => text.push_str(&format!("  {place}: {}\n", problem.reason)),
        }
    }
    text
}

/// Where a problem was met, named from its origin (a drive's label and repository, a
/// computer nearby's name and address, a server's address); without one, what it is about.
fn problem_place(problem: &Problem) -> String {
    problem
        .origin
        .as_deref()
        .map_or_else(|| problem.source.clone(), SourceInfo::name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_schema::{InstallResult, InstallStatus, SourceKind, TargetKind};

    fn used(source: &str, kind: SourceKind, objects: u64, bytes: u64) -> SourceUse {
        SourceUse {
            source: source.to_owned(),
            label: None,
            kind,
            objects,
            bytes,
            state: SourceState::Active,
            reason: None,
        }
    }

    fn progress(update: &str, sources: Vec<SourceUse>) -> Event {
        Event::Progress {
            update: Some(update.to_owned()),
            objects_done: 0,
            objects_total: 0,
            bytes_done: 0,
            bytes_total: 0,
            rate: 0,
            eta_seconds: None,
            source: None,
            sources,
        }
    }

    #[test]
    fn problems_are_named_by_the_source_they_were_met_on() {
        use ferry_schema::ProblemKind;
        let drive = SourceInfo::new(
            SourceKind::Drive,
            "/media/k/.ostree/repo",
            Some("KINGSTON".to_owned()),
        );
        let on_drive = Problem {
            // Only the structure counts, whatever the text says.
            source: "something else".to_owned(),
            ..Problem::on_source(
                ProblemKind::Corrupt,
                &drive,
                Some("os/x86_64/stable".to_owned()),
                "damaged".to_owned(),
            )
        };
        let installation = Problem::about(
            ProblemKind::Unreadable,
            "/var/lib/flatpak",
            None,
            "cannot read it".to_owned(),
        );
        assert_eq!(
            problems(&[on_drive, installation]),
            "Problems:\n  KINGSTON (/media/k/.ostree/repo) (os/x86_64/stable): damaged\n  \
             /var/lib/flatpak: cannot read it\n"
        );
    }

    #[test]
    fn each_source_is_listed_with_its_share_and_why_it_was_dropped() {
        let drive = used(
            "KINGSTON (/media/k/.ostree/repo)",
            SourceKind::Drive,
            1,
            2_500,
        );
        let peer = "Ferry on lab-2 (http://10.0.0.2:43381/0)";
        let mut ledger = SourceLedger::default();
        ledger.record(&progress(
            "os",
            vec![drive.clone(), used(peer, SourceKind::Lan, 12, 3_400_000)],
        ));
        ledger.record(&Event::SourceState {
            update: Some("os".into()),
            source: peer.into(),
            state: SourceState::Dropped,
            reason: Some("an object does not hash to its name".into()),
        });
        let text = describe_sources(&ledger.sources_of("os"));
        assert_eq!(
            text,
            "  from KINGSTON (/media/k/.ostree/repo): 1 object, 2.50 kB\n  \
             from Ferry on lab-2 (http://10.0.0.2:43381/0): 12 objects, 3.40 MB; dropped: \
             an object does not hash to its name\n"
        );
        let mut slow = used(peer, SourceKind::Lan, 0, 0);
        slow.state = SourceState::SetAside;
        assert_eq!(
            describe_sources(&[slow]),
            format!("  from {peer}: 0 objects, 0 B; set aside\n")
        );
        assert_eq!(describe_sources(&[]), "");
        assert!(ledger.sources_of("another").is_empty());
    }

    #[test]
    fn a_result_s_own_sources_replace_what_progress_said() {
        let mut ledger = SourceLedger::default();
        ledger.record(&progress(
            "app",
            vec![used("https://flathub.org/repo", SourceKind::Upstream, 1, 1)],
        ));
        let final_share = vec![used(
            "https://flathub.org/repo",
            SourceKind::Upstream,
            9,
            900,
        )];
        ledger.record(&Event::Result(InstallResult {
            update: "app".into(),
            ref_name: "app/org.example.App/x86_64/stable".into(),
            target: TargetKind::Flatpak,
            status: InstallStatus::Installed,
            message: None,
            restart_required: false,
            sources: final_share.clone(),
        }));
        assert_eq!(ledger.sources_of("app"), final_share);
    }
}
