//! `ferryctl list [--sysroot DIR] [--installation user|system|DIR]... [--repo DIR]
//! [--from SOURCE]... [--offline] [--json]`: what can be updated, and from where.
//!
//! Without target options it looks at the booted OS (when `/run/ostree-booted` exists) and
//! at the system and per-user Flatpak installations. Sources are the drives the hook recorded
//! under `$FERRY_RUN_DIR/drives`, every `--from`, and, unless `--offline`, each remote's own
//! server. Exit code 0 whatever was found; problems are part of the listing.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use ferry_engine::resolve::sources::{self, UPSTREAM_TIMEOUT};
use ferry_engine::resolve::{resolve, ResolveOptions};
use ferry_engine::schema::{Problem, Update, UpdateList};
use ferry_engine::source::source_name;
use ferry_engine::target::{default_targets, HostPaths, InstallationSelector, Target};

use super::format_date;
use crate::i18n::{tr, trf};
use crate::render::human_bytes;

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

    /// Print the listing as one JSON object (`updates`, `problems`).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: ListArgs) -> anyhow::Result<ExitCode> {
    let host = HostPaths::from_env();
    let mut problems: Vec<Problem> = Vec::new();
    let explicit = args.sysroot.is_some() || !args.installation.is_empty() || args.repo.is_some();
    let targets = if explicit {
        explicit_targets(&args, &host)?
    } else {
        let found = default_targets(&host);
        problems.extend(found.errors.iter().map(|error| error.to_problem()));
        found.targets
    };

    let mut set = sources::recorded_drives(&sources::run_dir());
    set.extend(sources::named(&args.from));
    if !args.offline {
        set.extend(sources::upstream(&targets, UPSTREAM_TIMEOUT));
    }
    problems.append(&mut set.problems);

    let options = ResolveOptions {
        icon_cache: sources::user_icon_cache(),
        // Listing some installations only: collections the others know are not unknown.
        known_collections: if explicit {
            sources::machine_collections(&host)
        } else {
            Default::default()
        },
        ..ResolveOptions::default()
    };
    let mut listing = resolve(&targets, &set.sources, &options);
    problems.append(&mut listing.problems);
    listing.problems = problems;

    let text = if args.json {
        let json = serde_json::to_string_pretty(&listing).context("cannot format the listing")?;
        format!("{json}\n")
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

fn explicit_targets(args: &ListArgs, host: &HostPaths) -> anyhow::Result<Vec<Target>> {
    let mut targets = Vec::new();
    if let Some(sysroot) = &args.sysroot {
        targets.push(Target::os(sysroot, &host.boot)?);
    }
    for installation in &args.installation {
        let selector = InstallationSelector::parse(installation);
        targets.push(Target::flatpak_selected(&selector, &host.flatpak)?);
    }
    if let Some(repo) = &args.repo {
        targets.push(Target::repo(repo)?);
    }
    Ok(targets)
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
        let mut widths = headings.each_ref().map(|h| h.chars().count());
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        for row in std::iter::once(&headings).chain(&rows) {
            let cells: Vec<String> = row
                .iter()
                .zip(widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect();
            text.push_str(&format!("{}\n", cells.join("  ").trim_end()));
        }
        for update in &listing.updates {
            for needed in &update.needs {
                text.push_str(&trf(
                    "{} needs {}, which is installed with it.\n",
                    &[&display_name(update), needed],
                ));
            }
        }
    }
    if !listing.problems.is_empty() {
        text.push_str(&tr("Problems:\n"));
        for problem in &listing.problems {
            match &problem.ref_name {
                Some(name) => text.push_str(&format!(
                    "  {} ({name}): {}\n",
                    problem.source, problem.reason
                )),
                None => text.push_str(&format!("  {}: {}\n", problem.source, problem.reason)),
            }
        }
    }
    text
}

fn display_name(update: &Update) -> String {
    update
        .app
        .as_ref()
        .and_then(|app| app.name.clone())
        .unwrap_or_else(|| update.ref_name.clone())
}

fn row(update: &Update) -> [String; 5] {
    let version = |version: &Option<String>, commit: Option<String>| {
        version
            .clone()
            .or(commit)
            .unwrap_or_else(|| tr("not installed"))
    };
    let current = version(
        &update.current_version,
        update.current_commit.map(|c| c.short()),
    );
    let new = version(&update.version, Some(update.commit.short()));
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
        format!("{current} → {new}"),
        format_date(update.timestamp),
        human_bytes(update.download_size),
        from,
    ]
}
