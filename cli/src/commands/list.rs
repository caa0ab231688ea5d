//! `ferryctl list [--sysroot DIR] [--installation user|system|DIR]... [--repo DIR]
//! [--from SOURCE]... [--offline] [--available] [--json]`: what can be updated, and from
//! where; with `--available`, the apps the drives offer that are not installed.
//!
//! Without target options it looks at the booted OS (when `/run/ostree-booted` exists) and
//! at the system and per-user Flatpak installations. Sources are the drives the hook recorded
//! under `$FERRY_RUN_DIR/drives`, every `--from`, and, unless `--offline`, each remote's own
//! server. Exit code 0 whatever was found; problems are part of the listing.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use ferry_engine::resolve::sources;
use ferry_engine::source::source_name;
use ferry_engine::trust::TrustRoots;
use ferry_schema::{AvailableApp, Update, UpdateList};

use super::selection::{gather, SourceOptions, TargetOptions};
use super::{display_name, format_date, version_change};
use crate::i18n::{ntrf, tr, trf};
use crate::render::{self, human_bytes};

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// An OSTree sysroot whose OS to list updates for (booted or not).
    #[arg(long, value_name = "DIR")]
    pub sysroot: Option<PathBuf>,

    /// A Flatpak installation: user, system, an installation ID, or a directory. Repeat for
    /// several.
    #[arg(long, value_name = "user|system|DIR")]
    pub installation: Vec<String>,

    /// A plain repository, whose remote refs are what is installed.
    #[arg(long, value_name = "DIR")]
    pub repo: Option<PathBuf>,

    /// Also look on this drive or repository, or at this http(s) URL of a computer nearby.
    /// Repeat for several.
    #[arg(long = "from", value_name = "SOURCE")]
    pub from: Vec<String>,

    /// Do not ask the remotes' own servers.
    #[arg(long)]
    pub offline: bool,

    /// Print the listing as one JSON object (`updates`, `problems`, `available`,
    /// `unknown_available`).
    #[arg(long)]
    pub json: bool,

    /// Show the apps the drives and computers nearby offer that are not installed, rather
    /// than the updates.
    #[arg(long)]
    pub available: bool,
}

pub fn run(args: ListArgs) -> anyhow::Result<ExitCode> {
    let targets = TargetOptions {
        sysroot: args.sysroot.as_deref(),
        installations: &args.installation,
        repo: args.repo.as_deref(),
    };
    let from = SourceOptions {
        named: &args.from,
        offline: args.offline,
        only_named: false,
    };
    let listing = gather(
        targets,
        from,
        sources::user_icon_cache(),
        &TrustRoots::from_env(),
    )?
    .list;

    let text = if args.json {
        let json = serde_json::to_string_pretty(&listing).context("cannot format the listing")?;
        format!("{json}\n")
    } else if args.available {
        human_available(&listing)
    } else {
        human(&listing)
    };
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        // A reader that stopped early (`| head`) is not an error of the listing.
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other.context("cannot write the listing")?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The listing as a table of updates, then the problems.
fn human(listing: &UpdateList) -> String {
    let mut text = String::new();
    if listing.updates.is_empty() {
        text.push_str(&tr("No updates found.\n"));
    } else {
        let headings = [
            tr("UPDATE"),
            tr("VERSION"),
            tr("DATE"),
            tr("SIZE"),
            tr("FROM"),
        ];
        let rows: Vec<[String; 5]> = listing.updates.iter().map(row).collect();
        text.push_str(&render::table(&headings, &rows, ""));
        for update in &listing.updates {
            for needed in &update.needs {
                text.push_str(&trf(
                    "{} needs {}, which is installed with it.\n",
                    &[&display_name(update), needed],
                ));
            }
        }
    }
    text.push_str(&render::problems(&listing.problems));
    text
}

/// The apps that can be installed, the apps of unknown collections, then the problems.
fn human_available(listing: &UpdateList) -> String {
    let mut text = String::new();
    if listing.available.is_empty() {
        text.push_str(&tr("No new apps found.\n"));
    } else {
        let headings = [tr("APP"), tr("ID"), tr("SUMMARY"), tr("SIZE"), tr("FROM")];
        let rows: Vec<[String; 5]> = listing.available.iter().map(available_row).collect();
        text.push_str(&render::table(&headings, &rows, ""));
    }
    if listing.unknown_available > 0 {
        text.push_str(&ntrf(
            "{} app from sources this computer does not know.\n",
            "{} apps from sources this computer does not know.\n",
            listing.unknown_available,
            &[&listing.unknown_available],
        ));
    }
    text.push_str(&render::problems(&listing.problems));
    text
}

fn available_row(offered: &AvailableApp) -> [String; 5] {
    let summary = offered
        .app
        .app
        .as_ref()
        .and_then(|app| app.summary.clone())
        .unwrap_or_default();
    let from = offered
        .app
        .sources
        .first()
        .map(|source| source.label.clone().unwrap_or_else(|| source_name(source)))
        .unwrap_or_default();
    [
        display_name(&offered.app),
        offered.app_id().to_owned(),
        summary,
        human_bytes(offered.download_size),
        from,
    ]
}

fn row(update: &Update) -> [String; 5] {
    let mut name = display_name(update);
    if !update.signed {
        name = trf("{} (unsigned)", &[&name]);
    }
    let from = update
        .sources
        .first()
        .map(|source| source.label.clone().unwrap_or_else(|| source_name(source)))
        .unwrap_or_default();
    let from = match update.sources.len() {
        0 | 1 => from,
        n => trf("{} (+{} more)", &[&from, &(n - 1)]),
    };
    [
        name,
        version_change(update),
        format_date(update.timestamp),
        human_bytes(update.download_size),
        from,
    ]
}
