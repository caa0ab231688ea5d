//! What was installed, kept in the systemd journal: every install result and rollback is
//! one structured entry with [`MESSAGE_ID`], read back by `ferryctl history`.

pub mod journal;
pub mod rollback;

use serde::{Deserialize, Serialize};

use crate::schema::{InstallResult, InstallStatus, SourceKind, TargetKind, Update};

pub use journal::{JournalError, JournalLocation};

/// The journal's `MESSAGE_ID` of Ferry's install and rollback entries (generated once).
pub const MESSAGE_ID: &str = "63ad7622086242c0b9dee29234227545";
/// `ferryctl history` shows at most this many entries.
pub const MAX_ENTRIES: usize = 1000;

/// What an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HistoryAction {
    /// An install of an update.
    Install,
    /// A rollback to the previous OS deployment.
    Rollback,
}

/// How it ended: an install's [`InstallStatus`], or a rollback's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HistoryStatus {
    /// The update was installed.
    Installed,
    /// Nothing newer was offered; nothing changed.
    UpToDate,
    /// The install failed.
    Failed,
    /// The install was cancelled.
    Cancelled,
    /// Not attempted, because an update it needs failed.
    Skipped,
    /// The rollback was made.
    RolledBack,
}

impl HistoryStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Installed => "installed",
            Self::UpToDate => "up_to_date",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Skipped => "skipped",
            Self::RolledBack => "rolled_back",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [
            Self::Installed,
            Self::UpToDate,
            Self::Failed,
            Self::Cancelled,
            Self::Skipped,
            Self::RolledBack,
        ]
        .into_iter()
        .find(|status| status.as_str() == text)
    }
}

impl From<InstallStatus> for HistoryStatus {
    fn from(status: InstallStatus) -> Self {
        match status {
            InstallStatus::Installed => Self::Installed,
            InstallStatus::UpToDate => Self::UpToDate,
            InstallStatus::Failed => Self::Failed,
            InstallStatus::Cancelled => Self::Cancelled,
            InstallStatus::Skipped => Self::Skipped,
        }
    }
}

/// Where an update came from: a drive, a computer nearby, or upstream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistorySource {
    /// Drive, computer nearby or upstream server.
    pub kind: SourceKind,
    /// How messages name it, e.g. `KINGSTON (/media/k/.ostree/repo)` or a host name.
    pub name: String,
}

/// One entry of `ferryctl history --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// When it was written, seconds since the Unix epoch (0 before it is in the journal).
    pub time: u64,
    /// Install or rollback.
    pub action: HistoryAction,
    /// How it ended.
    pub status: HistoryStatus,
    /// OS, Flatpak installation or plain repository.
    pub target: TargetKind,
    /// The Flatpak installation or the sysroot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installation: Option<String>,
    /// The ref updated.
    #[serde(rename = "ref")]
    pub ref_name: String,
    /// The AppStream name, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The commit before, when something was installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_commit: Option<String>,
    /// The commit after, when something was installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_commit: Option<String>,
    /// The `version` metadata of the commit before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_version: Option<String>,
    /// The `version` metadata of the commit after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_version: Option<String>,
    /// Where the update was fetched from.
    #[serde(default)]
    pub sources: Vec<HistorySource>,
    /// The journal's `MESSAGE`: the entry in words.
    pub message: String,
    /// The install's own message (why it failed, what a restart does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl HistoryEntry {
    /// The entry for one install result of `update`.
    pub fn for_install(update: &Update, result: &InstallResult) -> Self {
        let used: Vec<HistorySource> = result
            .sources
            .iter()
            .filter(|source| source.objects > 0 || source.bytes > 0)
            .map(|source| HistorySource {
                kind: source.kind,
                name: source.source.clone(),
            })
            .collect();
        // Nothing transferred (up to date, failed early): the places that offered it.
        let sources = if used.is_empty() {
            update
                .sources
                .iter()
                .map(|info| HistorySource {
                    kind: info.kind,
                    name: info.label.clone().unwrap_or_else(|| info.location.clone()),
                })
                .collect()
        } else {
            used
        };
        let mut entry = Self {
            time: 0,
            action: HistoryAction::Install,
            status: result.status.into(),
            target: update.target,
            installation: update.installation.clone(),
            ref_name: update.ref_name.clone(),
            name: update.app.as_ref().and_then(|app| app.name.clone()),
            from_commit: update.current_commit.map(|c| c.to_hex()),
            to_commit: Some(update.commit.to_hex()),
            from_version: update.current_version.clone(),
            to_version: update.version.clone(),
            sources,
            message: String::new(),
            detail: result.message.clone(),
        };
        entry.message = entry.describe();
        entry
    }

    /// The entry in words, for the journal's `MESSAGE`.
    fn describe(&self) -> String {
        let what = self.name.clone().unwrap_or_else(|| self.ref_name.clone());
        let version = |version: &Option<String>, commit: &Option<String>| {
            version
                .clone()
                .or_else(|| commit.as_ref().map(|c| c.chars().take(10).collect()))
        };
        let change = match (
            version(&self.from_version, &self.from_commit),
            version(&self.to_version, &self.to_commit),
        ) {
            (Some(from), Some(to)) => format!(" {from} → {to}"),
            (None, Some(to)) => format!(" {to}"),
            _ => String::new(),
        };
        let verb = match (self.action, self.status) {
            (HistoryAction::Rollback, HistoryStatus::Failed) => "Ferry could not roll back",
            (HistoryAction::Rollback, _) => "Ferry rolled back",
            (_, HistoryStatus::Installed) => "Ferry installed",
            (_, HistoryStatus::UpToDate) => "Ferry found up to date",
            (_, HistoryStatus::Failed) => "Ferry failed to install",
            (_, HistoryStatus::Cancelled) => "Ferry cancelled installing",
            (_, HistoryStatus::Skipped) => "Ferry skipped",
            (_, HistoryStatus::RolledBack) => "Ferry rolled back",
        };
        let from = if self.sources.is_empty() {
            String::new()
        } else {
            let names: Vec<&str> = self.sources.iter().map(|s| s.name.as_str()).collect();
            format!(" from {}", names.join(", "))
        };
        format!("{verb} {what}{change}{from}")
    }

    /// The journal fields of this entry.
    pub fn journal_fields(&self) -> Vec<(&'static str, String)> {
        let mut fields = vec![
            ("MESSAGE_ID", MESSAGE_ID.to_owned()),
            ("MESSAGE", self.message.clone()),
            (
                "PRIORITY",
                if self.status == HistoryStatus::Failed {
                    "4"
                } else {
                    "6"
                }
                .to_owned(),
            ),
            ("SYSLOG_IDENTIFIER", "ferry".to_owned()),
            (
                "FERRY_ACTION",
                match self.action {
                    HistoryAction::Install => "install",
                    HistoryAction::Rollback => "rollback",
                }
                .to_owned(),
            ),
            ("FERRY_STATUS", self.status.as_str().to_owned()),
            ("FERRY_TARGET", target_name(self.target).to_owned()),
            ("FERRY_REF", self.ref_name.clone()),
        ];
        let optional = [
            ("FERRY_INSTALLATION", &self.installation),
            ("FERRY_NAME", &self.name),
            ("FERRY_FROM_COMMIT", &self.from_commit),
            ("FERRY_TO_COMMIT", &self.to_commit),
            ("FERRY_FROM_VERSION", &self.from_version),
            ("FERRY_TO_VERSION", &self.to_version),
            ("FERRY_DETAIL", &self.detail),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                fields.push((name, value.clone()));
            }
        }
        // Repeated, one per source: `<kind> <name>`.
        for source in &self.sources {
            fields.push((
                "FERRY_SOURCE",
                format!("{} {}", source_kind_name(source.kind), source.name),
            ));
        }
        fields
    }

    /// Reads an entry `journalctl -o json` printed; None when it is not one of Ferry's.
    pub fn from_journal(entry: &serde_json::Map<String, serde_json::Value>) -> Option<Self> {
        use journal::value;
        if value(entry, "MESSAGE_ID").as_deref() != Some(MESSAGE_ID) {
            return None;
        }
        let action = match value(entry, "FERRY_ACTION")?.as_str() {
            "install" => HistoryAction::Install,
            "rollback" => HistoryAction::Rollback,
            _ => return None,
        };
        let target = match value(entry, "FERRY_TARGET")?.as_str() {
            "os" => TargetKind::Os,
            "flatpak" => TargetKind::Flatpak,
            "repo" => TargetKind::Repo,
            _ => return None,
        };
        let time = value(entry, "__REALTIME_TIMESTAMP")
            .and_then(|usec| usec.parse::<u64>().ok())
            .map_or(0, |usec| usec / 1_000_000);
        let sources = journal::values(entry, "FERRY_SOURCE")
            .iter()
            .filter_map(|text| {
                let (kind, name) = text.split_once(' ')?;
                let kind = match kind {
                    "drive" => SourceKind::Drive,
                    "lan" => SourceKind::Lan,
                    "upstream" => SourceKind::Upstream,
                    _ => return None,
                };
                Some(HistorySource {
                    kind,
                    name: name.to_owned(),
                })
            })
            .collect();
        Some(Self {
            time,
            action,
            status: HistoryStatus::parse(&value(entry, "FERRY_STATUS")?)?,
            target,
            installation: value(entry, "FERRY_INSTALLATION"),
            ref_name: value(entry, "FERRY_REF")?,
            name: value(entry, "FERRY_NAME"),
            from_commit: value(entry, "FERRY_FROM_COMMIT"),
            to_commit: value(entry, "FERRY_TO_COMMIT"),
            from_version: value(entry, "FERRY_FROM_VERSION"),
            to_version: value(entry, "FERRY_TO_VERSION"),
            sources,
            message: value(entry, "MESSAGE").unwrap_or_default(),
            detail: value(entry, "FERRY_DETAIL"),
        })
    }
}

fn target_name(target: TargetKind) -> &'static str {
    match target {
        TargetKind::Os => "os",
        TargetKind::Flatpak => "flatpak",
        TargetKind::Repo => "repo",
    }
}

fn source_kind_name(kind: SourceKind) -> &'static str {
    match kind {
        SourceKind::Drive => "drive",
        SourceKind::Lan => "lan",
        SourceKind::Upstream => "upstream",
    }
}

/// Writes `entry` to the journal. A machine without journald loses the entry, not the
/// install: failures are logged, not returned.
pub fn record(entry: &HistoryEntry) {
    let socket = journal::socket_path();
    match journal::send(&socket, &entry.journal_fields()) {
        Ok(()) => tracing::debug!(message = %entry.message, "recorded in the journal"),
        Err(error) => {
            tracing::info!(error = %crate::causes::Causes(&error), "the install is not in the journal")
        }
    }
}

/// Ferry's entries in `location`, newest first.
pub fn read(location: &JournalLocation) -> Result<Vec<HistoryEntry>, JournalError> {
    let entries = journal::read(location, MESSAGE_ID, MAX_ENTRIES)?;
    Ok(entries
        .iter()
        .filter_map(HistoryEntry::from_journal)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::Checksum;
    use crate::schema::{SourceInfo, SourceState, SourceUse};

    fn update() -> Update {
        Update {
            id: "flatpak:system:app/org.example.App/x86_64/stable".to_owned(),
            target: TargetKind::Flatpak,
            installation: Some("system".to_owned()),
            remote: "example".to_owned(),
            collection_id: None,
            ref_name: "app/org.example.App/x86_64/stable".to_owned(),
            current_commit: Some(Checksum::from_array([1; 32])),
            commit: Checksum::from_array([2; 32]),
            current_version: Some("1.0".to_owned()),
            version: Some("2.0".to_owned()),
            timestamp: 0,
            subject: String::new(),
            body: String::new(),
            download_size: 0,
            signed: true,
            sources: vec![SourceInfo {
                kind: SourceKind::Lan,
                location: "http://192.0.2.1:8080/".to_owned(),
                label: Some("classroom-7".to_owned()),
                drive: None,
            }],
            needs: Vec::new(),
            adds_subpaths: Vec::new(),
            app: None,
        }
    }

    #[test]
    fn an_entry_survives_the_journal_fields() {
        let result = InstallResult {
            update: update().id,
            ref_name: update().ref_name,
            target: TargetKind::Flatpak,
            status: InstallStatus::Installed,
            message: Some("line one\nline two".to_owned()),
            restart_required: false,
            sources: vec![SourceUse {
                source: "KINGSTON (/media/k/.ostree/repo)".to_owned(),
                label: Some("KINGSTON".to_owned()),
                kind: SourceKind::Drive,
                objects: 3,
                bytes: 100,
                state: SourceState::Active,
                reason: None,
            }],
        };
        let entry = HistoryEntry::for_install(&update(), &result);
        assert_eq!(
            entry.message,
            "Ferry installed app/org.example.App/x86_64/stable 1.0 → 2.0 from KINGSTON \
             (/media/k/.ostree/repo)"
        );
        let mut json = serde_json::Map::new();
        for (name, value) in entry.journal_fields() {
            match json.get_mut(name) {
                Some(serde_json::Value::Array(items)) => items.push(value.into()),
                Some(single) => {
                    *single = serde_json::Value::Array(vec![single.clone(), value.into()])
                }
                None => {
                    json.insert(name.to_owned(), value.into());
                }
            }
        }
        json.insert("__REALTIME_TIMESTAMP".to_owned(), "1700000000123456".into());
        let back = HistoryEntry::from_journal(&json).expect("one of Ferry's");
        assert_eq!(
            back,
            HistoryEntry {
                time: 1_700_000_000,
                ..entry
            }
        );
    }

    #[test]
    fn without_a_transfer_the_offering_sources_are_named() {
        let result = InstallResult {
            update: update().id,
            ref_name: update().ref_name,
            target: TargetKind::Flatpak,
            status: InstallStatus::Failed,
            message: None,
            restart_required: false,
            sources: Vec::new(),
        };
        let entry = HistoryEntry::for_install(&update(), &result);
        assert_eq!(
            entry.sources,
            [HistorySource {
                kind: SourceKind::Lan,
                name: "classroom-7".to_owned()
            }]
        );
        assert!(entry.message.starts_with("Ferry failed to install"));
    }
}
