//! `ferryctl history [--json]`: what Ferry installed and rolled back, newest first, read
//! from the systemd journal (`journalctl -o json`; `--directory`, `--file` or
//! `FERRY_JOURNAL_DIR` read other journal files).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use ferry_engine::history::{
    self, journal::ENV_JOURNAL_DIR, HistoryAction, HistoryEntry, HistoryStatus, JournalLocation,
};
use ferry_engine::schema::TargetKind;

use crate::i18n::{tr, trf};

#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    /// Print one JSON array of entries, newest first.
    #[arg(long)]
    pub json: bool,
    /// Read the journal files in this directory instead of the system's journal.
    #[arg(long, value_name = "DIR", conflicts_with = "file")]
    pub directory: Option<PathBuf>,
    /// Read this journal file instead of the system's journal.
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
}

pub fn run(args: HistoryArgs) -> anyhow::Result<ExitCode> {
    let location = match (args.directory, args.file) {
        (Some(dir), _) => JournalLocation::Directory(dir),
        (None, Some(file)) => JournalLocation::File(file),
        (None, None) => match std::env::var_os(ENV_JOURNAL_DIR).filter(|v| !v.is_empty()) {
            Some(dir) => JournalLocation::Directory(PathBuf::from(dir)),
            None => JournalLocation::System,
        },
    };
    let entries = history::read(&location).context(tr("cannot read the history"))?;
    let mut out = std::io::stdout().lock();
    if args.json {
        let text = serde_json::to_string(&entries).context("cannot format the history")?;
        writeln!(out, "{text}")?;
    } else if entries.is_empty() {
        writeln!(out, "{}", tr("Nothing was installed with Ferry yet."))?;
    } else {
        for entry in &entries {
            writeln!(out, "{}", line(entry))?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// `2026-12-06 07:40:01  Installed  exampleos/x86_64/stable  1.0 → 2.0  from KINGSTON (…)`
fn line(entry: &HistoryEntry) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(entry.time);
    let time = humantime::format_rfc3339_seconds(time)
        .to_string()
        .replace('T', " ")
        .trim_end_matches('Z')
        .to_owned();
    let status = match (entry.action, entry.status) {
        (HistoryAction::Rollback, HistoryStatus::Failed) => tr("Rollback failed"),
        (HistoryAction::Rollback, _) => tr("Rolled back"),
        (_, HistoryStatus::Installed) => tr("Installed"),
        (_, HistoryStatus::UpToDate) => tr("Up to date"),
        (_, HistoryStatus::Failed) => tr("Failed"),
        (_, HistoryStatus::Cancelled) => tr("Cancelled"),
        (_, HistoryStatus::Skipped) => tr("Skipped"),
        (_, HistoryStatus::RolledBack) => tr("Rolled back"),
    };
    let what = match (&entry.name, entry.target) {
        (Some(name), _) => name.clone(),
        (None, TargetKind::Os) if entry.ref_name.is_empty() => tr("operating system"),
        (None, _) => entry.ref_name.clone(),
    };
    let version = |version: &Option<String>, commit: &Option<String>| {
        version
            .clone()
            .or_else(|| commit.as_ref().map(|c| c.chars().take(10).collect()))
    };
    let change = match (
        version(&entry.from_version, &entry.from_commit),
        version(&entry.to_version, &entry.to_commit),
    ) {
        (Some(from), Some(to)) => format!("  {from} → {to}"),
        (None, Some(to)) => format!("  {to}"),
        _ => String::new(),
    };
    let mut text = format!("{time}  {status}  {what}{change}");
    if !entry.sources.is_empty() {
        let names: Vec<&str> = entry.sources.iter().map(|s| s.name.as_str()).collect();
        text.push_str("  ");
        text.push_str(&trf("from {}", &[&names.join(", ")]));
    }
    text
}
