//! `ferryctl prepare-drive DRIVE [--os] [--app ID]... [--all-apps] [--runtime REF]...
//! [--locale LANG]... [--installation user|system|DIR]... [--sysroot DIR] [--keep-old]
//! [--dry-run] [--json]`:
//! write this machine's OS and apps to a drive, for other machines to update from.
//!
//! Run as root through pkexec (the app does, to read the OS's bare objects), it writes only
//! to a mounted removable drive or a folder the user owns, and reads only this machine's
//! own sysroot and system installations (`ferry_engine::privilege::validate_drive`).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use ferry_engine::event::Reporter;
use ferry_engine::prepare::{
    prepare_drive, this_machines_removable_mounts, DeltaFrom, PrepareOutcome, PrepareRequest,
    Selection,
};
use ferry_engine::privilege::{self, Caller, DriveRequest, Machine, PinnedDrive, Refusal};
use ferry_engine::target::{default_targets, HostPaths, InstallationSelector, Target};
use ferry_schema::event::{Event, MessageLevel};

use crate::i18n::{ntrf, tr, trf};
use crate::render::{human_bytes, Output};
use crate::signals;

#[derive(Debug, clap::Args)]
pub struct PrepareDriveArgs {
    /// The drive's mount point, or a plain folder.
    #[arg(value_name = "DRIVE")]
    pub drive: PathBuf,

    /// Put the OS on the drive (the booted deployment, else the sysroot's default).
    #[arg(long)]
    pub os: bool,

    /// Put this app on the drive, with the runtime and extensions it needs. Repeat for more.
    #[arg(long = "app", value_name = "ID")]
    pub apps: Vec<String>,

    /// Put every installed app on the drive.
    #[arg(long)]
    pub all_apps: bool,

    /// Put this runtime (ID or full ref) on the drive, with its installed extensions.
    /// Repeat for more.
    #[arg(long = "runtime", value_name = "REF")]
    pub runtimes: Vec<String>,

    /// Carry only this language (`de`, `pt_BR`) of locale extensions. Repeat for more.
    /// Without it, every language this machine holds goes on the drive.
    #[arg(long = "locale", value_name = "LANG", value_parser = parse_language)]
    pub locales: Vec<String>,

    /// A Flatpak installation to read apps from: user, system, an installation ID, or a
    /// directory. Repeat for several.
    #[arg(long, value_name = "INSTALLATION")]
    pub installation: Vec<String>,

    /// The OSTree sysroot to read the OS from.
    #[arg(long, value_name = "DIR")]
    pub sysroot: Option<PathBuf>,

    /// Keep objects that no ref on the drive needs any more (older versions), and static
    /// deltas to commits no ref points at.
    #[arg(long)]
    pub keep_old: bool,

    /// Carry the OS as a static delta from this commit instead of its objects: far fewer
    /// bytes, for machines that have that commit. `installed` is the OS's other
    /// deployment (what this machine ran before its last update).
    #[arg(long, value_name = "installed|COMMIT", value_parser = parse_delta_from)]
    pub delta_from: Option<DeltaFrom>,

    /// Show what would be written, and whether it fits, without writing anything.
    #[arg(long)]
    pub dry_run: bool,

    /// Print progress and results as JSON lines on stdout.
    #[arg(long)]
    pub json: bool,

    /// Stop, leaving the drive consistent, when standard input is closed (for a parent that
    /// cannot signal this process because it runs as root through pkexec).
    #[arg(long)]
    pub cancel_on_stdin_eof: bool,
}

fn parse_language(text: &str) -> Result<String, String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '@' | '.');
    if text.is_empty() || text.len() > 64 || !text.chars().all(allowed) || text.starts_with('.') {
        return Err("a language is a code such as de, pt_BR or sr@latin".to_owned());
    }
    Ok(text.to_owned())
}

fn parse_delta_from(text: &str) -> Result<DeltaFrom, String> {
    if text == "installed" {
        return Ok(DeltaFrom::Installed);
    }
    ferry_engine::object::Checksum::from_hex(text)
        .map(DeltaFrom::Commit)
        .map_err(|error| format!("neither `installed` nor a commit checksum: {error}"))
}

pub fn run(args: PrepareDriveArgs) -> anyhow::Result<ExitCode> {
    let output = Output::new(args.json);
    // Before any thread starts: it edits the environment.
    // As root, the drive is written through the directory opened at the check (kept open
    // for the whole run), never by its name again.
    let mut pinned = None;
    let (drive, targets) = match privileged_request(&args) {
        Ok(Some((request, machine, drive))) => {
            let targets = targets_of(
                request.sysroot.as_ref(),
                &request.installations,
                &machine.host,
            )?;
            let path = drive.path();
            pinned = Some(drive);
            (path, targets)
        }
        Ok(None) => (
            args.drive.clone(),
            targets_of(
                args.sysroot.as_ref(),
                &args.installation,
                &HostPaths::from_env(),
            )?,
        ),
        Err(refusal) => return Err(output.fail(refusal)),
    };
    let cancel = signals::install()?;
    if args.cancel_on_stdin_eof {
        signals::cancel_on_stdin_eof(&cancel)?;
    }
    let request = PrepareRequest {
        drive,
        selection: Selection {
            os: args.os,
            apps: args.apps.clone(),
            all_apps: args.all_apps,
            runtimes: args.runtimes.clone(),
            locales: args.locales.clone(),
        },
        dry_run: args.dry_run,
        threads: 0,
        keep_old: args.keep_old,
        delta_from: args.delta_from,
    };
    // Filesystems stamp files from a coarse clock: a second's margin.
    let began = std::time::SystemTime::now()
        .checked_sub(std::time::Duration::from_secs(1))
        .unwrap_or(std::time::UNIX_EPOCH);
    let result = prepare_drive(&targets, &request, &output, &cancel);
    // What root wrote in the user's own folder becomes theirs, so that their own run for the
    // apps only they have can add to it; done after a failure too.
    if let Some(pinned) = &pinned {
        if let Err(error) = pinned.hand_over(began) {
            tracing::warn!(%error, "the drive's new files stay root's");
            output.on_event(Event::Message {
                level: MessageLevel::Warning,
                text: error.to_string(),
            });
        }
    }
    output.finish();
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(error) => return Err(output.fail(error)),
    };
    // The JSON stream is never translated.
    let text = describe(&outcome, !output.is_json());
    if output.is_json() {
        output.on_event(Event::Message {
            level: MessageLevel::Info,
            text,
        });
        output.on_event(Event::Finished { ok: true });
    } else {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{text}")?;
        stdout.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}

/// None for an ordinary run; for one as root through pkexec, the environment's overrides
/// removed, the request checked, and the machine's fixed places.
fn privileged_request(
    args: &PrepareDriveArgs,
) -> Result<Option<(DriveRequest, Machine, PinnedDrive)>, Refusal> {
    let Some(caller) = Caller::detect()? else {
        return Ok(None);
    };
    for name in privilege::IGNORED_VARIABLES {
        std::env::remove_var(name);
    }
    let machine = Machine::fixed();
    let asked = DriveRequest {
        drive: args.drive.clone(),
        sysroot: args.sysroot.clone(),
        installations: args.installation.clone(),
    };
    let removable = this_machines_removable_mounts();
    let request = privilege::validate_drive(caller, &asked, &machine, &removable)?;
    let drive = privilege::pin_drive(caller, &request.drive, &removable)?;
    Ok(Some((request, machine, drive)))
}

/// The sysroot and installations named, else this machine's OS and every installation.
fn targets_of(
    sysroot: Option<&PathBuf>,
    installations: &[String],
    host: &HostPaths,
) -> anyhow::Result<Vec<Target>> {
    if sysroot.is_none() && installations.is_empty() {
        let found = default_targets(host);
        if found.targets.is_empty() {
            if let Some(error) = found.errors.into_iter().next() {
                return Err(error).context(tr("cannot read this machine's OS or apps"));
            }
        }
        return Ok(found.targets);
    }
    let mut targets = Vec::new();
    if let Some(sysroot) = sysroot {
        targets.push(Target::os(sysroot, &host.boot)?);
    }
    for installation in installations {
        let selector = InstallationSelector::parse(installation);
        targets.push(Target::flatpak_selected(&selector, &host.flatpak)?);
    }
    Ok(targets)
}

/// The plan or what was written, for people; in English when `translate` is false.
fn describe(outcome: &PrepareOutcome, translate: bool) -> String {
    let tr = |msgid: &str| {
        if translate {
            tr(msgid)
        } else {
            msgid.to_owned()
        }
    };
    let trf = |msgid: &str, args: &[&dyn std::fmt::Display]| {
        if translate {
            return trf(msgid, args);
        }
        let mut text = msgid.to_owned();
        for arg in args {
            if let Some(at) = text.find("{}") {
                text.replace_range(at..at + 2, &arg.to_string());
            }
        }
        text
    };
    let plan = &outcome.plan;
    let mut lines = Vec::new();
    for carried in &plan.refs {
        let mut state = if carried.up_to_date {
            tr("already on the drive")
        } else {
            tr("new")
        };
        if !carried.subpaths.is_empty() {
            // Translators: the subpaths of a locale extension carried, e.g. "/de, /fr".
            state.push_str(&trf("; only {}", &[&carried.subpaths.join(", ")]));
        }
        lines.push(format!(
            "  ({}, {}) {} [{}]",
            carried.collection_id,
            carried.ref_name,
            &carried.commit[..carried.commit.len().min(12)],
            state
        ));
    }
    let summary = if outcome.dry_run {
        let free = plan.free_bytes.map_or_else(|| tr("unknown"), human_bytes);
        trf(
            "Would write {} objects, {} ({} free) to {}",
            &[
                &plan.objects_to_write,
                &human_bytes(plan.bytes_to_write),
                &free,
                &plan.repo.display(),
            ],
        )
    } else {
        trf(
            "Wrote {} objects ({}) and {} refs to {}; safe to remove once unmounted",
            &[
                &outcome.objects_written,
                &human_bytes(outcome.bytes_written),
                &outcome.refs_written,
                &plan.repo.display(),
            ],
        )
    };
    if outcome.objects_removed > 0 {
        lines.push(ntrf(
            "Removed {} object that no ref on the drive needs any more",
            "Removed {} objects that no ref on the drive needs any more",
            outcome.objects_removed,
            &[&outcome.objects_removed],
        ));
    }
    if outcome.deltas_removed > 0 {
        lines.push(ntrf(
            "Removed {} static delta to a commit no ref on the drive points at",
            "Removed {} static deltas to commits no ref on the drive points at",
            outcome.deltas_removed,
            &[&outcome.deltas_removed],
        ));
    }
    lines.push(summary);
    lines.join("\n")
}
