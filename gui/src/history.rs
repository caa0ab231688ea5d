//! The History page's data: `ferryctl history --json` lists what was installed, and
//! `ferryctl rollback --yes` (through pkexec and the `io.github.ferry.Ferry.rollback` action
//! unless the app runs as root) makes the previous OS version the default again.

use std::path::Path;

use ferry_engine::history::{HistoryAction, HistoryEntry, HistoryStatus};
use ferry_engine::object::FlatpakRef;
use ferry_engine::schema::{SourceKind, TargetKind};
use relm4::gtk::glib;

use crate::format::{drive_label, version_change};
use crate::i18n::{tr, trf};
use crate::install::Launch;

/// Largest `ferryctl history --json` output read.
const MAX_OUTPUT: usize = 16 * 1024 * 1024;

/// The command that lists the history; it needs no privilege.
pub fn list_launch(ferryctl: &Path) -> Launch {
    Launch::ferryctl(ferryctl, &["history", "--json"], false)
}

/// `ferryctl rollback --yes`; through pkexec when `elevate`.
pub fn rollback_launch(ferryctl: &Path, elevate: bool) -> Launch {
    Launch::ferryctl(ferryctl, &["rollback", "--yes"], elevate)
}

/// Runs `launch` to its end; its standard output, or a sentence saying why it failed.
pub fn run(launch: &Launch) -> Result<String, String> {
    launch.run_to_end(MAX_OUTPUT)
}

/// Reads `ferryctl history --json`'s output.
pub fn parse(stdout: &str) -> Result<Vec<HistoryEntry>, String> {
    serde_json::from_str(stdout.trim()).map_err(|error| error.to_string())
}

/// What an entry is about: the app's name, "Operating System", a runtime's ID and branch.
pub fn title(entry: &HistoryEntry) -> String {
    if let Some(name) = entry.name.as_deref().filter(|n| !n.trim().is_empty()) {
        return name.to_owned();
    }
    if entry.target == TargetKind::Os {
        return tr("Operating System");
    }
    match FlatpakRef::parse(&entry.ref_name) {
        Some(app) if app.is_app => app.id.to_owned(),
        Some(runtime) => format!("{} {}", runtime.id, runtime.branch),
        None => entry.ref_name.clone(),
    }
}

/// "Installed 1.0 → 2.0 from KINGSTON", "Went back to 1.0", "Failed: …".
pub fn summary(entry: &HistoryEntry) -> String {
    let short = |commit: &Option<String>| commit.as_ref().map(|c| c.chars().take(10).collect());
    let from = entry
        .from_version
        .clone()
        .or_else(|| short(&entry.from_commit));
    let to = entry.to_version.clone().or_else(|| short(&entry.to_commit));
    let change = version_change(from.as_deref(), to.as_deref());
    let mut text = match (entry.action, entry.status, change) {
        (HistoryAction::Rollback, HistoryStatus::Failed, _) => {
            tr("Going back to the previous version failed")
        }
        (HistoryAction::Rollback, _, _) => match &to {
            Some(to) => trf("Went back to {version}", &[("version", to)]),
            None => tr("Went back to the previous version"),
        },
        (_, HistoryStatus::Installed, Some(change)) => {
            trf("Installed {change}", &[("change", &change)])
        }
        (_, HistoryStatus::Installed, None) => tr("Installed"),
        (_, HistoryStatus::UpToDate, _) => tr("Already up to date"),
        (_, HistoryStatus::Failed, _) => tr("Could not be installed"),
        (_, HistoryStatus::Cancelled, _) => tr("Cancelled"),
        (_, HistoryStatus::Skipped, _) => tr("Skipped"),
        (_, HistoryStatus::RolledBack, _) => tr("Went back to the previous version"),
    };
    if let Some(source) = came_from(entry) {
        text.push(' ');
        text.push_str(&source);
    }
    text
}

/// "from KINGSTON", "from the computer classroom-7", "from the Internet".
fn came_from(entry: &HistoryEntry) -> Option<String> {
    let first = entry.sources.first()?;
    let text = match first.kind {
        SourceKind::Drive => trf(
            "from the drive {label}",
            &[("label", &drive_label(&first.name))],
        ),
        SourceKind::Lan => trf("from the computer {name}", &[("name", &first.name)]),
        SourceKind::Upstream => tr("from the Internet"),
    };
    Some(text)
}

/// When, in the local time zone: "12/06/26 07:40".
pub fn when(entry: &HistoryEntry) -> String {
    i64::try_from(entry.time)
        .ok()
        .and_then(|secs| glib::DateTime::from_unix_local(secs).ok())
        .and_then(|time| time.format("%x %H:%M").ok())
        .map(|text| text.to_string())
        .unwrap_or_default()
}

/// The newest OS entry, when it is an installed update (not yet gone back from): then the
/// page offers "Go Back to the Previous Version".
pub fn rollback_offer(entries: &[HistoryEntry]) -> Option<&HistoryEntry> {
    entries
        .iter()
        .find(|entry| entry.target == TargetKind::Os && entry.status != HistoryStatus::UpToDate)
        .filter(|entry| {
            entry.action == HistoryAction::Install
                && entry.status == HistoryStatus::Installed
                && entry.from_commit.is_some()
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_engine::history::HistorySource;

    fn entry(action: HistoryAction, status: HistoryStatus, target: TargetKind) -> HistoryEntry {
        HistoryEntry {
            time: 1_700_000_000,
            action,
            status,
            target,
            installation: None,
            ref_name: "exampleos/x86_64/stable".to_owned(),
            name: None,
            from_commit: Some("a".repeat(64)),
            to_commit: Some("b".repeat(64)),
            from_version: Some("1.0".to_owned()),
            to_version: Some("2.0".to_owned()),
            sources: vec![HistorySource {
                kind: SourceKind::Drive,
                name: "KINGSTON (/media/k/.ostree/repo)".to_owned(),
            }],
            message: String::new(),
            detail: None,
        }
    }

    /// An update installed into `target`, as most entries are.
    fn installed(target: TargetKind) -> HistoryEntry {
        entry(HistoryAction::Install, HistoryStatus::Installed, target)
    }

    #[test]
    fn an_os_update_says_what_changed_and_from_which_drive() {
        let os = installed(TargetKind::Os);
        assert_eq!(title(&os), "Operating System");
        assert_eq!(summary(&os), "Installed 1.0 → 2.0 from the drive KINGSTON");
        let mut app = installed(TargetKind::Flatpak);
        app.ref_name = "app/org.example.App/x86_64/stable".to_owned();
        app.sources[0] = HistorySource {
            kind: SourceKind::Lan,
            name: "classroom-7".to_owned(),
        };
        assert_eq!(title(&app), "org.example.App");
        assert!(summary(&app).ends_with("from the computer classroom-7"));
    }

    #[test]
    fn going_back_is_offered_after_an_os_update_only() {
        let os = installed(TargetKind::Os);
        let app = installed(TargetKind::Flatpak);
        let back = entry(
            HistoryAction::Rollback,
            HistoryStatus::RolledBack,
            TargetKind::Os,
        );
        let up_to_date = entry(
            HistoryAction::Install,
            HistoryStatus::UpToDate,
            TargetKind::Os,
        );
        assert!(rollback_offer(&[app.clone(), up_to_date, os.clone()]).is_some());
        assert!(rollback_offer(&[back, os.clone()]).is_none());
        assert!(rollback_offer(&[app]).is_none());
        let failed = entry(
            HistoryAction::Install,
            HistoryStatus::Failed,
            TargetKind::Os,
        );
        assert!(rollback_offer(&[failed, os]).is_none());
    }

    #[test]
    fn going_back_goes_through_pkexec_unless_root() {
        let launch = rollback_launch(Path::new("bin/ferryctl"), true);
        assert_eq!(launch.program, Path::new("pkexec"));
        let args: Vec<_> = launch.args.iter().map(|a| a.to_string_lossy()).collect();
        assert!(Path::new(args[0].as_ref()).is_absolute(), "{args:?}");
        assert_eq!(&args[1..], ["rollback", "--yes"]);
        let launch = rollback_launch(Path::new("/usr/bin/ferryctl"), false);
        assert_eq!(launch.args, ["rollback", "--yes"]);
    }

    #[test]
    fn history_is_read_from_json_and_garbage_is_an_error() {
        let os = installed(TargetKind::Os);
        let text = serde_json::to_string(&[&os]).expect("json");
        assert_eq!(parse(&text), Ok(vec![os]));
        assert!(parse("no").is_err());
    }
}
