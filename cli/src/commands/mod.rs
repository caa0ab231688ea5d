//! One module per `ferryctl` subcommand.

pub mod delta;
pub mod generate;
pub mod history;
pub mod install;
pub mod list;
pub mod prepare_drive;
pub mod pull;
pub mod rollback;
pub mod scan;
mod selection;
pub mod serve;
pub mod sharing;

use ferry_schema::Update;

/// The name a person knows an update by ([`Update::display_name`]); the operating system by
/// its ref, which tells a terminal user which one it is.
pub fn display_name(update: &Update) -> String {
    update.display_name(&update.ref_name)
}

/// The version to show for an update: its own, else nothing for a runtime (its branch is in
/// its name), else the commit's short checksum.
pub fn shown_version(update: &Update) -> Option<String> {
    if let Some(version) = update.version.clone() {
        return Some(version);
    }
    let is_runtime = ferry_engine::schema::FlatpakRef::parse(&update.ref_name)
        .is_some_and(|flatpak| !flatpak.is_app);
    (!is_runtime).then(|| update.commit.short())
}

/// [`shown_version`], else (a runtime) its branch: the column of versions is never empty.
pub fn version_or_branch(update: &Update) -> String {
    shown_version(update)
        .or_else(|| {
            ferry_engine::schema::FlatpakRef::parse(&update.ref_name)
                .map(|flatpak| flatpak.branch.to_owned())
        })
        .unwrap_or_default()
}

/// A short, human date for a commit timestamp: `2024-01-02`.
pub fn format_date(unix_seconds: u64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix_seconds);
    let full = humantime::format_rfc3339_seconds(time).to_string();
    full.split_once('T')
        .map(|(date, _)| date.to_owned())
        .unwrap_or(full)
}
