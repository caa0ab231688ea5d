//! What can be installed, grouped by where it comes from.
//!
//! This is the one place the app learns about updates. Today it reads the drive records the
//! hook writes under `$FERRY_RUN_DIR/drives`, whose `updates` already have the shape of
//! `ferryctl list --json`. When the engine's resolver can be called in-process, [`load`]
//! asks it instead (read-only: installations are world-readable) and adds the groups for
//! computers nearby and the Internet; nothing else in the app changes.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use ferry_engine::schema::{
    DriveInstallState, DriveRecord, Problem, SourceKind, TargetKind, Update, DRIVE_RECORD_VERSION,
};

use crate::i18n::tr;

/// Records are small; anything bigger than this is not a record the hook wrote.
const MAX_RECORD_BYTES: u64 = 16 * 1024 * 1024;
/// More records than drives anyone plugs in at once means something else fills the directory.
const MAX_RECORDS: usize = 256;

/// One place updates come from, as the window shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceGroup {
    /// Stable within a run: `drive:<record id>`.
    pub key: String,
    pub kind: SourceKind,
    /// A drive label, a host name, or "Internet".
    pub title: String,
    pub drive: Option<DriveInfo>,
    pub updates: Vec<Update>,
    pub problems: Vec<Problem>,
}

/// The drive a group comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct DriveInfo {
    pub id: String,
    /// The mount point, handed to `ferryctl install --from`.
    pub mount: String,
    pub device: Option<String>,
    /// The system is installing from this drive on its own (kiosk policy).
    pub installing_by_system: bool,
}

impl SourceGroup {
    pub fn drive_id(&self) -> Option<&str> {
        self.drive.as_ref().map(|drive| drive.id.as_str())
    }

    /// Updates a person can start installing from here.
    pub fn installable(&self) -> bool {
        !self.updates.is_empty()
            && !self
                .drive
                .as_ref()
                .is_some_and(|drive| drive.installing_by_system)
    }
}

/// Every source, drives first (by label), then computers nearby, then the Internet.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Listing {
    pub groups: Vec<SourceGroup>,
}

impl Listing {
    pub fn update_count(&self) -> usize {
        self.groups.iter().map(|group| group.updates.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Sources exist but none offers anything installable: only problems.
    pub fn only_problems(&self) -> bool {
        !self.groups.is_empty() && self.groups.iter().all(|group| group.updates.is_empty())
    }

    pub fn group(&self, key: &str) -> Option<&SourceGroup> {
        self.groups.iter().find(|group| group.key == key)
    }

    pub fn drive_group(&self, drive_id: &str) -> Option<&SourceGroup> {
        self.groups
            .iter()
            .find(|group| group.drive_id() == Some(drive_id))
    }

    /// The update with this id and every group offering it.
    pub fn find_update(&self, id: &str) -> Option<(&Update, Vec<&SourceGroup>)> {
        let mut found = None;
        let mut groups = Vec::new();
        for group in &self.groups {
            if let Some(update) = group.updates.iter().find(|update| update.id == id) {
                found.get_or_insert(update);
                groups.push(group);
            }
        }
        found.map(|update| (update, groups))
    }
}

/// Reads the current listing. Unreadable records are logged and left out; a record the
/// hook is still writing appears with the next change of the directory.
pub fn load(run_dir: &Path) -> Listing {
    let records = read_drive_records(&run_dir.join("drives"));
    from_records(records)
}

/// Groups drive records for display.
pub fn from_records(records: Vec<DriveRecord>) -> Listing {
    let mut groups: Vec<SourceGroup> = records.into_iter().map(group_for_record).collect();
    // Sources with something to install first; those with only problems after them.
    groups.sort_by(|a, b| {
        let key = |g: &SourceGroup| {
            (
                g.updates.is_empty(),
                g.kind,
                g.title.to_lowercase(),
                g.key.clone(),
            )
        };
        key(a).cmp(&key(b))
    });
    Listing { groups }
}

fn group_for_record(record: DriveRecord) -> SourceGroup {
    let title = record.display_name().to_owned();
    let installing_by_system = record
        .install
        .as_ref()
        .is_some_and(|install| install.state == DriveInstallState::Running);
    let mut updates = record.updates;
    // The operating system first, then apps by name, as GNOME Software orders them.
    updates.sort_by_key(|update| {
        (
            update.target != TargetKind::Os,
            display_name(update).to_lowercase(),
        )
    });
    SourceGroup {
        key: format!("drive:{}", record.id),
        kind: SourceKind::Drive,
        title,
        drive: Some(DriveInfo {
            id: record.id,
            mount: record.mount,
            device: record.device,
            installing_by_system,
        }),
        updates,
        problems: record.problems,
    }
}

/// The name a person knows an update by: the AppStream name, else a readable ref.
pub fn display_name(update: &Update) -> String {
    if let Some(name) = update
        .app
        .as_ref()
        .and_then(|app| app.name.as_deref())
        .filter(|name| !name.trim().is_empty())
    {
        return name.to_owned();
    }
    if update.target == TargetKind::Os {
        return tr("Operating System");
    }
    update.ref_name.clone()
}

/// Reads every `*.json` record in `dir`, newest format only, bounded in size and number.
pub fn read_drive_records(dir: &Path) -> Vec<DriveRecord> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(error) => {
            tracing::warn!(dir = %dir.display(), %error, "cannot read the drive records");
            return Vec::new();
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| is_record_name(path))
        .collect();
    paths.sort();
    if paths.len() > MAX_RECORDS {
        tracing::warn!(dir = %dir.display(), count = paths.len(), "too many drive records; reading the first {MAX_RECORDS}");
        paths.truncate(MAX_RECORDS);
    }
    let mut records: BTreeMap<String, DriveRecord> = BTreeMap::new();
    for path in paths {
        match read_record(&path) {
            Ok(record) => {
                records.insert(record.id.clone(), record);
            }
            Err(error) => {
                tracing::warn!(path = %path.display(), "skipping drive record: {error:#}")
            }
        }
    }
    records.into_values().collect()
}

/// `<id>.json`, not a hidden temporary file the hook is still writing.
fn is_record_name(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
        return false;
    };
    !name.starts_with('.') && name.ends_with(".json")
}

fn read_record(path: &Path) -> anyhow::Result<DriveRecord> {
    use anyhow::Context as _;
    let file = fs::File::open(path).context("cannot open it")?;
    let metadata = file.metadata().context("cannot stat it")?;
    anyhow::ensure!(metadata.is_file(), "it is not a regular file");
    let mut text = String::new();
    file.take(MAX_RECORD_BYTES + 1)
        .read_to_string(&mut text)
        .context("cannot read it as UTF-8 text")?;
    anyhow::ensure!(
        text.len() as u64 <= MAX_RECORD_BYTES,
        "it is larger than {MAX_RECORD_BYTES} bytes"
    );
    #[derive(serde::Deserialize)]
    struct VersionOnly {
        v: u32,
    }
    let version: VersionOnly = serde_json::from_str(&text).context("it is not a drive record")?;
    anyhow::ensure!(
        version.v == DRIVE_RECORD_VERSION,
        "record format {} is not supported (expected {DRIVE_RECORD_VERSION}); install matching versions of ferry and ferry-hook",
        version.v
    );
    serde_json::from_str(&text).context("it is not a valid drive record")
}

#[cfg(test)]
mod tests {
    use super::*;

    const KINGSTON: &str = include_str!("../tests/data/drives/kingston.json");
    const BROKEN_STICK: &str = include_str!("../tests/data/drives/broken-stick.json");

    fn write(dir: &Path, name: &str, text: &str) {
        fs::write(dir.join(name), text).expect("write test record");
    }

    #[test]
    fn groups_drives_by_label_with_the_os_first() {
        let run = tempfile::tempdir().expect("tempdir");
        let drives = run.path().join("drives");
        fs::create_dir(&drives).expect("mkdir");
        write(&drives, "kingston.json", KINGSTON);
        write(&drives, "broken.json", BROKEN_STICK);
        let listing = load(run.path());
        let titles: Vec<&str> = listing.groups.iter().map(|g| g.title.as_str()).collect();
        assert_eq!(titles, ["KINGSTON", "BROKEN STICK"]);
        let kingston = listing
            .drive_group("kingston-1234")
            .expect("kingston group");
        let names: Vec<String> = kingston.updates.iter().map(display_name).collect();
        assert_eq!(
            names,
            [
                "Operating System",
                "app/org.example.Tool/x86_64/stable",
                "GNOME Text Editor"
            ]
        );
        assert!(kingston.installable());
        assert_eq!(listing.update_count(), 3);
        assert!(!listing.only_problems());
        let broken = listing.drive_group("broken-5678").expect("broken group");
        assert!(broken.updates.is_empty());
        assert_eq!(broken.problems.len(), 2);
    }

    #[test]
    fn skips_temporary_foreign_and_future_records() {
        let run = tempfile::tempdir().expect("tempdir");
        let drives = run.path().join("drives");
        fs::create_dir(&drives).expect("mkdir");
        write(&drives, ".kingston.json.tmp", KINGSTON);
        write(&drives, "notes.txt", "hello");
        write(&drives, "garbage.json", "{not json");
        write(
            &drives,
            "future.json",
            &BROKEN_STICK.replacen("\"v\": 1", "\"v\": 2", 1),
        );
        let listing = load(run.path());
        assert!(listing.is_empty(), "{listing:?}");
    }

    #[test]
    fn a_missing_runtime_dir_is_an_empty_listing() {
        let listing = load(Path::new("/nonexistent/ferry-run"));
        assert!(listing.is_empty());
    }

    #[test]
    fn only_problems_when_no_drive_offers_updates() {
        let record: DriveRecord = serde_json::from_str(BROKEN_STICK).expect("record");
        let listing = from_records(vec![record]);
        assert!(listing.only_problems());
    }

    #[test]
    fn finds_an_update_and_its_sources() {
        let record: DriveRecord = serde_json::from_str(KINGSTON).expect("record");
        let listing = from_records(vec![record]);
        let id = "flatpak:user:app/org.gnome.TextEditor/x86_64/stable";
        let (update, groups) = listing.find_update(id).expect("found");
        assert_eq!(update.ref_name, "app/org.gnome.TextEditor/x86_64/stable");
        assert_eq!(groups.len(), 1);
        assert_eq!(
            groups[0].drive.as_ref().map(|d| d.mount.as_str()),
            Some("/media/user/KINGSTON")
        );
    }
}
