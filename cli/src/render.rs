//! Rendering engine events: progress bars on a terminal, JSON lines with `--json`.

use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use ferry_engine::event::{self, Event, MessageLevel, Phase, Reporter};
use ferry_engine::schema::Problem;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::i18n::{tr, trf};

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
            | Event::Result(_)
            | Event::Finished { .. } => {}
        }
    }
}

/// The reporter a command uses: JSON lines when asked, a bar on a terminal, else nothing.
pub enum Output {
    Json(JsonLines),
    Terminal(Terminal),
    Quiet,
}

impl Output {
    pub fn new(json: bool) -> Self {
        use std::io::IsTerminal;
        if json {
            Output::Json(JsonLines::default())
        } else if std::io::stderr().is_terminal() {
            Output::Terminal(Terminal::new())
        } else {
            Output::Quiet
        }
    }

    pub fn is_json(&self) -> bool {
        matches!(self, Output::Json(_))
    }

    pub fn finish(&self) {
        if let Output::Terminal(terminal) = self {
            terminal.finish();
        }
    }
}

impl Reporter for Output {
    fn on_event(&self, event: Event) {
        match self {
            Output::Json(json) => json.on_event(event),
            Output::Terminal(terminal) => terminal.on_event(event),
            Output::Quiet => {}
        }
    }
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
        match &problem.ref_name {
            Some(name) => text.push_str(&format!(
                "  {} ({name}): {}\n",
                problem.source, problem.reason
            )),
            None => text.push_str(&format!("  {}: {}\n", problem.source, problem.reason)),
        }
    }
    text
}
