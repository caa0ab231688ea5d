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

/// "1.0 → 2.0": the installed version (or commit, or "not installed") and the new one, with
/// the languages it adds to a locale extension installed in part; only those when the
/// version stays.
pub fn version_change(update: &Update) -> String {
    let current = update
        .current_version
        .clone()
        .or_else(|| update.current_commit.map(|c| c.short()))
        .unwrap_or_else(|| crate::i18n::tr("not installed"));
    let new = version_or_branch(update);
    let languages = if update.adds_every_language() {
        // Translators: what an update of translations installed for some languages adds,
        // as in "1.0 (adds every language)".
        crate::i18n::tr("every language")
    } else {
        update.added_languages().join(", ")
    };
    if languages.is_empty() {
        format!("{current} → {new}")
    } else if update.current_commit == Some(update.commit) {
        crate::i18n::trf("{} (adds {})", &[&current, &languages])
    } else {
        crate::i18n::trf("{} → {} (adds {})", &[&current, &new, &languages])
    }
}

/// A short, human date for a commit timestamp: `2024-01-02`.
pub fn format_date(unix_seconds: u64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix_seconds);
    let full = humantime::format_rfc3339_seconds(time).to_string();
    full.split_once('T')
        .map(|(date, _)| date.to_owned())
        .unwrap_or(full)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_adding_languages_says_which() {
        let commit = "ca8aeca7c6e4c5ffdd2a96d98b32c1365141440223a439b7231d84d1234a0699";
        let update = |current: &str, adds: &[&str]| -> Update {
            serde_json::from_value(serde_json::json!({
                "id": "flatpak:user:L",
                "target": "flatpak",
                "installation": "user",
                "remote": "flathub",
                "collection_id": "org.flathub.Stable",
                "ref": "runtime/org.gnome.Maps.Locale/x86_64/stable",
                "current_commit": current,
                "commit": commit,
                "current_version": null,
                "version": "47.1",
                "timestamp": 1,
                "subject": "",
                "download_size": 10,
                "signed": true,
                "sources": [],
                "adds_subpaths": adds,
            }))
            .expect("an update")
        };
        let older = "d964961bdc3be58569a6b17f358e5e97fefa94b194677387137205df1fd745b8";
        assert_eq!(
            version_change(&update(older, &["/fr", "/pt_BR"])),
            "d964961bdc → 47.1 (adds fr, pt_BR)"
        );
        assert_eq!(
            version_change(&update(commit, &["/fr"])),
            "ca8aeca7c6 (adds fr)"
        );
        assert_eq!(
            version_change(&update(commit, &["/"])),
            "ca8aeca7c6 (adds every language)"
        );
        assert_eq!(version_change(&update(older, &[])), "d964961bdc → 47.1");
    }
}
