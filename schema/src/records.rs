//! The JSON shapes of listings, scans, drive records and install results.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Checksum, FlatpakRef};

/// Version of the drive record format in `$FERRY_RUN_DIR/drives/<id>.json`.
pub const DRIVE_RECORD_VERSION: u32 = 1;
/// Drive records are small; anything larger in the directory is not one.
const MAX_DRIVE_RECORD_BYTES: u64 = 16 * 1024 * 1024;
/// More records than drives anyone plugs in at once means something else fills the directory.
pub const MAX_DRIVE_RECORDS: usize = 256;

/// `ferryctl scan --json`: the repositories found under a path.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScanReport {
    pub repos: Vec<RepoReport>,
    /// Repositories that were found but refused (for example a symlink leaving the drive).
    #[serde(default)]
    pub problems: Vec<Problem>,
}

/// One repository found by a scan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepoReport {
    pub path: String,
    /// `archive`, `bare`, `bare-user` or `bare-user-only` (`archive-z2` is reported as `archive`).
    pub mode: String,
    pub refs: Vec<RefReport>,
}

/// One ref a repository offers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefReport {
    pub collection_id: Option<String>,
    #[serde(rename = "ref")]
    pub ref_name: String,
    pub commit: Checksum,
    /// Commit time, seconds since the Unix epoch.
    pub timestamp: u64,
    pub version: Option<String>,
    /// Only part of the commit's tree is there (some languages of a Flatpak locale
    /// extension): it serves installations of those parts only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
}

/// What kind of installed thing an update applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// The operating system, deployed with `ostree admin`.
    Os,
    /// A Flatpak app or runtime.
    Flatpak,
    /// A plain repository's remote ref.
    Repo,
}

/// Where an update can be fetched from, in order of preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    Drive,
    Lan,
    Upstream,
}

/// A place holding an update's commit, or where a problem was met.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SourceInfo {
    pub kind: SourceKind,
    /// A repository path for drives, a URL for peers and upstream.
    pub location: String,
    /// How a person would name it: a drive label, a host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The hook's record of the drive it is on ([`DriveRecord::id`]), for drives the hook
    /// recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drive: Option<String>,
}

impl SourceInfo {
    /// A source of `kind` at `location`, named by `label`, on no recorded drive.
    pub fn new(kind: SourceKind, location: impl Into<String>, label: Option<String>) -> Self {
        Self {
            kind,
            location: location.into(),
            label,
            drive: None,
        }
    }

    /// How messages name it: `LABEL (LOCATION)`, or the location when it has no other name.
    pub fn name(&self) -> String {
        match &self.label {
            Some(label) if label != &self.location => format!("{label} ({})", self.location),
            _ => self.location.clone(),
        }
    }
}

/// Where a source stands in one pull.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceState {
    /// It is handed work.
    Active,
    /// Stalled or much slower than the others: no new work while they can take it. Not an error.
    SetAside,
    /// Refused, vanished, or caught handing out a bad object: not used again in this pull.
    Dropped,
}

/// What one source did in one pull: its share of the transfer, and why it stopped if it did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceUse {
    /// The source as messages name it, e.g. `KINGSTON (/media/k/.ostree/repo)`.
    pub source: String,
    /// How a person knows it ([`SourceInfo::label`]): a drive's label, a computer's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub kind: SourceKind,
    /// Objects it handed out that were verified and stored.
    pub objects: u64,
    /// Bytes read from it.
    pub bytes: u64,
    pub state: SourceState,
    /// Why it was set aside or dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One available update, as `ferryctl list --json` prints it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Update {
    /// Stable identifier within one listing: target, installation and ref.
    pub id: String,
    pub target: TargetKind,
    /// `system`, `user`, a path, or the sysroot path for the OS.
    pub installation: Option<String>,
    pub remote: String,
    pub collection_id: Option<String>,
    #[serde(rename = "ref")]
    pub ref_name: String,
    /// None when the ref is not installed yet (a runtime another update needs).
    pub current_commit: Option<Checksum>,
    pub commit: Checksum,
    pub current_version: Option<String>,
    pub version: Option<String>,
    pub timestamp: u64,
    pub subject: String,
    #[serde(default)]
    pub body: String,
    /// Bytes to transfer: objects not present locally.
    pub download_size: u64,
    /// False when the remote does not verify signatures; shown as "unsigned".
    pub signed: bool,
    /// Preferred first.
    pub sources: Vec<SourceInfo>,
    /// Refs that must be installed with this update (a missing runtime).
    #[serde(default)]
    pub needs: Vec<String>,
    /// Flatpak subpaths (`/fr`) of a locale extension installed in part that this update
    /// adds: languages the installation was set for since; [`EVERY_SUBPATH`] alone when it
    /// was set for all of them, so the rest of the ref is added. With `commit` equal to
    /// `current_commit`, adding them is the whole update.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adds_subpaths: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<AppInfo>,
}

/// The subpath standing for a whole ref in [`Update::adds_subpaths`], as in flatpak's
/// `--subpath=/`.
pub const EVERY_SUBPATH: &str = "/";

impl Update {
    /// The languages [`Update::adds_subpaths`] names, without their slash: `fr`.
    pub fn added_languages(&self) -> Vec<&str> {
        self.adds_subpaths
            .iter()
            .filter(|subpath| *subpath != EVERY_SUBPATH)
            .map(|subpath| subpath.trim_start_matches('/'))
            .collect()
    }

    /// Whether the update adds every language not deployed yet (the installation was set
    /// for all of them since it installed some).
    pub fn adds_every_language(&self) -> bool {
        self.adds_subpaths
            .iter()
            .any(|subpath| subpath == EVERY_SUBPATH)
    }

    /// The name a person knows an update by: the AppStream name, else `os_name` (translated
    /// by the front end) for the operating system, else the app ID (a runtime's with its
    /// branch, which tells its versions apart), else the ref. The CLI and the app both use it.
    pub fn display_name(&self, os_name: &str) -> String {
        if let Some(name) = self
            .app
            .as_ref()
            .and_then(|app| app.name.as_deref())
            .filter(|name| !name.trim().is_empty())
        {
            return name.to_owned();
        }
        if self.target == TargetKind::Os {
            return os_name.to_owned();
        }
        match FlatpakRef::parse(&self.ref_name) {
            Some(app) if app.is_app => app.id.to_owned(),
            Some(runtime) => format!("{} {}", runtime.id, runtime.branch),
            None => self.ref_name.clone(),
        }
    }
}

/// What AppStream says about a Flatpak app.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppInfo {
    pub name: Option<String>,
    pub summary: Option<String>,
    /// The newest release's version in the source's AppStream data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// A path to a cached icon, when the drive carries one.
    pub icon: Option<String>,
}

/// Why a source or a candidate was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    UntrustedSignature,
    UnsignedCommit,
    UnknownCollection,
    BindingMismatch,
    PartialCommit,
    Downgrade,
    Corrupt,
    Unreadable,
    Unsafe,
    Unavailable,
    /// A computer nearby serving others, asked again shortly.
    Busy,
    Other,
}

/// A rejected source or candidate, listed rather than silently dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub kind: ProblemKind,
    /// What it is about, as messages name it: [`SourceInfo::name`] of its origin, or an
    /// installation or file that is no update source.
    pub source: String,
    /// The update source it was met on; None when it is about no one source (an
    /// installation, a drive record file, looking for computers nearby). Readers group and
    /// name problems by it, never by parsing `source`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Box<SourceInfo>>,
    #[serde(rename = "ref")]
    pub ref_name: Option<String>,
    /// One sentence a person can act on.
    pub reason: String,
}

impl Problem {
    /// A problem met on the update source `origin`.
    pub fn on_source(
        kind: ProblemKind,
        origin: &SourceInfo,
        ref_name: Option<String>,
        reason: String,
    ) -> Self {
        Self {
            kind,
            source: origin.name(),
            origin: Some(Box::new(origin.clone())),
            ref_name,
            reason,
        }
    }

    /// A problem with `subject`, which is no update source (an installation, a file).
    pub fn about(
        kind: ProblemKind,
        subject: impl Into<String>,
        ref_name: Option<String>,
        reason: String,
    ) -> Self {
        Self {
            kind,
            source: subject.into(),
            origin: None,
            ref_name,
            reason,
        }
    }

    /// The recorded drive it was met on, if any.
    pub fn drive(&self) -> Option<&str> {
        self.origin.as_ref()?.drive.as_deref()
    }
}

/// `ferryctl list --json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UpdateList {
    pub updates: Vec<Update>,
    pub problems: Vec<Problem>,
    /// Apps the sources offer that this machine does not have, from collections its remotes
    /// know, verified as updates are.
    #[serde(default)]
    pub available: Vec<AvailableApp>,
    /// Apps on drives and computers nearby whose collection no remote here knows.
    #[serde(default)]
    pub unknown_available: u64,
}

/// An app a source offers that is not installed: `ferryctl install APP-ID` installs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AvailableApp {
    /// The app's commit, as an update with no current commit; `needs` names its missing
    /// runtimes.
    pub app: Update,
    /// The runtimes it needs that are not installed, installed before it.
    #[serde(default)]
    pub runtimes: Vec<Update>,
    /// Bytes to transfer for the app and its missing runtimes.
    pub download_size: u64,
}

impl AvailableApp {
    /// The app ID (`org.example.App`), else the ref.
    pub fn app_id(&self) -> &str {
        FlatpakRef::parse(&self.app.ref_name).map_or(self.app.ref_name.as_str(), |r| r.id)
    }
}

/// How one update of an install ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstallStatus {
    Installed,
    UpToDate,
    Failed,
    Cancelled,
    Skipped,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstallResult {
    pub update: String,
    #[serde(rename = "ref")]
    pub ref_name: String,
    pub target: TargetKind,
    pub status: InstallStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// This machine must restart to complete the update: the OS was deployed into the sysroot
    /// it is running from. A sysroot that is not the running system's never sets it.
    #[serde(default)]
    pub restart_required: bool,
    /// The sources the update was fetched from, and how each fared.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceUse>,
}

/// State of an install the hook runs on insertion (kiosks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriveInstallState {
    Running,
    Succeeded,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriveInstall {
    pub state: DriveInstallState,
    #[serde(default)]
    pub bytes_done: u64,
    #[serde(default)]
    pub bytes_total: u64,
    #[serde(default)]
    pub results: Vec<InstallResult>,
}

/// One ref a drive made by `prepare-drive` carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CarriedRef {
    pub collection_id: String,
    #[serde(rename = "ref")]
    pub ref_name: String,
    pub commit: String,
    pub target: TargetKind,
    /// The installation or sysroot it is read from.
    pub source: String,
    /// The drive already has this ref at this commit.
    pub up_to_date: bool,
    /// Bytes of objects this ref adds that no ref before it in the plan needs (shared
    /// objects count with the first), as the source stores them.
    #[serde(default)]
    pub new_bytes: u64,
    /// Only these Flatpak subpaths of the ref go (`/de`: some languages of a locale
    /// extension); empty: the whole ref.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subpaths: Vec<String>,
}

/// What a `prepare-drive` run writes, computed before writing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrivePlan {
    pub repo: PathBuf,
    pub refs: Vec<CarriedRef>,
    pub objects_to_write: u64,
    /// As the drive's filesystem counts them: each file rounded up to its block size.
    pub bytes_to_write: u64,
    /// None when the drive's filesystem does not report it.
    pub free_bytes: Option<u64>,
}

/// Why a drive record cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum DriveRecordError {
    #[error("cannot read it")]
    Open(#[source] std::io::Error),
    #[error("it is not a regular file")]
    NotAFile,
    #[error("it is larger than the {MAX_DRIVE_RECORD_BYTES} bytes a drive record may have")]
    TooLarge,
    #[error("it is not a drive record Ferry understands")]
    NotARecord(#[source] serde_json::Error),
    #[error(
        "record format {0} is not supported (expected {DRIVE_RECORD_VERSION}); install matching versions of ferry, ferryctl and ferry-hook"
    )]
    OtherVersion(u32),
}

impl DriveRecordError {
    /// The record does not exist (any more).
    pub fn is_missing(&self) -> bool {
        matches!(self, Self::Open(error) if error.kind() == std::io::ErrorKind::NotFound)
    }
}

/// `$FERRY_RUN_DIR/drives/<id>.json`: what the hook found on a drive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriveRecord {
    pub v: u32,
    pub id: String,
    pub label: Option<String>,
    pub device: Option<String>,
    pub mount: String,
    #[serde(default)]
    pub fs_type: Option<String>,
    #[serde(default)]
    pub uuid: Option<String>,
    pub repos: Vec<RepoReport>,
    pub updates: Vec<Update>,
    pub problems: Vec<Problem>,
    /// Links made in the Flatpak sideload directory for this drive.
    #[serde(default)]
    pub sideload_links: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install: Option<DriveInstall>,
}

impl DriveRecord {
    /// A record of the drive at `mount`, before anything is known about it.
    pub fn new(id: impl Into<String>, mount: impl Into<String>) -> Self {
        Self {
            v: DRIVE_RECORD_VERSION,
            id: id.into(),
            label: None,
            device: None,
            mount: mount.into(),
            fs_type: None,
            uuid: None,
            repos: Vec::new(),
            updates: Vec::new(),
            problems: Vec::new(),
            sideload_links: Vec::new(),
            install: None,
        }
    }

    /// The record files in `dir`, sorted: `<id>.json`, not the hidden temporary file of a
    /// write in progress; at most [`MAX_DRIVE_RECORDS`].
    pub fn paths_in(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| {
                path.extension().is_some_and(|ext| ext == "json")
                    && !path
                        .file_name()
                        .is_some_and(|name| name.as_encoded_bytes().starts_with(b"."))
            })
            .collect();
        paths.sort();
        paths.truncate(MAX_DRIVE_RECORDS);
        Ok(paths)
    }

    /// Reads the record at `path`: a regular file, not a symbolic link, of bounded size, in
    /// this version of the format.
    pub fn read(path: &Path) -> Result<Self, DriveRecordError> {
        // The entry itself, unfollowed; then the opened file must be that same entry, so a
        // link swapped in between is refused too.
        let entry = std::fs::symlink_metadata(path).map_err(DriveRecordError::Open)?;
        if !entry.file_type().is_file() {
            return Err(DriveRecordError::NotAFile);
        }
        let file = std::fs::File::open(path).map_err(DriveRecordError::Open)?;
        let opened = file.metadata().map_err(DriveRecordError::Open)?;
        if (opened.dev(), opened.ino()) != (entry.dev(), entry.ino()) {
            return Err(DriveRecordError::NotAFile);
        }
        let mut bytes = Vec::new();
        file.take(MAX_DRIVE_RECORD_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(DriveRecordError::Open)?;
        Self::parse(&bytes)
    }

    /// Parses a record's bytes: bounded in size, in this version of the format.
    pub fn parse(bytes: &[u8]) -> Result<Self, DriveRecordError> {
        if bytes.len() as u64 > MAX_DRIVE_RECORD_BYTES {
            return Err(DriveRecordError::TooLarge);
        }
        #[derive(Deserialize)]
        struct VersionOnly {
            v: u32,
        }
        let version: VersionOnly =
            serde_json::from_slice(bytes).map_err(DriveRecordError::NotARecord)?;
        if version.v != DRIVE_RECORD_VERSION {
            return Err(DriveRecordError::OtherVersion(version.v));
        }
        serde_json::from_slice(bytes).map_err(DriveRecordError::NotARecord)
    }

    /// The drive as a source: its mount point, named as people know it, with this record's ID.
    pub fn source_info(&self) -> SourceInfo {
        SourceInfo {
            kind: SourceKind::Drive,
            location: self.mount.clone(),
            label: Some(self.display_name().to_owned()),
            drive: Some(self.id.clone()),
        }
    }

    /// Marks what was found on this drive as this record's: the drive sources of its updates
    /// and its problems (one of no source is the drive's own). Records written before sources
    /// carried a record ID then read like newer ones.
    pub fn mark_sources(&mut self) {
        for source in self
            .updates
            .iter_mut()
            .flat_map(|update| &mut update.sources)
            .filter(|source| source.kind == SourceKind::Drive)
        {
            source.drive = Some(self.id.clone());
        }
        let drive = self.source_info();
        for problem in &mut self.problems {
            match &mut problem.origin {
                Some(origin) if origin.kind == SourceKind::Drive => {
                    origin.drive = Some(self.id.clone())
                }
                Some(_) => {}
                None => problem.origin = Some(Box::new(drive.clone())),
            }
        }
    }

    /// A name people recognise: the label, else the mount point's last part (udisks mounts
    /// a drive at `/media/USER/LABEL-OR-UUID`), else the mount point.
    pub fn display_name(&self) -> &str {
        self.label
            .as_deref()
            .filter(|label| !label.trim().is_empty())
            .or_else(|| {
                self.mount
                    .trim_end_matches('/')
                    .rsplit('/')
                    .next()
                    .filter(|last| !last.is_empty())
            })
            .unwrap_or(&self.mount)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drive_records_are_read_only_from_bounded_files_of_this_format() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let record = DriveRecord::new("abc", "/media/k");
        let good = dir.path().join("abc.json");
        std::fs::write(&good, serde_json::to_vec(&record).expect("json")).expect("write");
        assert_eq!(DriveRecord::read(&good).expect("read"), record);

        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&good, &link).expect("symlink");
        assert!(matches!(
            DriveRecord::read(&link),
            Err(DriveRecordError::NotAFile)
        ));
        let other = dir.path().join("other.json");
        let future = DriveRecord {
            v: DRIVE_RECORD_VERSION + 1,
            ..record.clone()
        };
        std::fs::write(&other, serde_json::to_vec(&future).expect("json")).expect("write");
        assert!(matches!(
            DriveRecord::read(&other),
            Err(DriveRecordError::OtherVersion(2))
        ));
        let huge = dir.path().join("huge.json");
        let file = std::fs::File::create(&huge).expect("create");
        file.set_len(MAX_DRIVE_RECORD_BYTES + 1).expect("size");
        assert!(matches!(
            DriveRecord::read(&huge),
            Err(DriveRecordError::TooLarge)
        ));
        let missing = DriveRecord::read(&dir.path().join("gone.json")).expect_err("missing");
        assert!(missing.is_missing());
        std::fs::write(dir.path().join(".abc.json.tmp"), "partial").expect("write");
        std::fs::write(dir.path().join("notes.txt"), "hello").expect("write");
        let names: Vec<String> = DriveRecord::paths_in(dir.path())
            .expect("list")
            .iter()
            .filter_map(|path| path.file_name()?.to_str().map(str::to_owned))
            .collect();
        assert_eq!(names, ["abc.json", "huge.json", "link.json", "other.json"]);
    }

    #[test]
    fn sources_are_named_by_label_and_location_and_problems_keep_them_whole() {
        let drive = DriveRecord {
            label: Some("KINGSTON".into()),
            ..DriveRecord::new("kingston-1", "/media/k")
        }
        .source_info();
        assert_eq!(drive.name(), "KINGSTON (/media/k)");
        let server = SourceInfo::new(SourceKind::Upstream, "https://example.org/repo", None);
        assert_eq!(server.name(), "https://example.org/repo");
        let same = SourceInfo::new(SourceKind::Lan, "http://x/", Some("http://x/".into()));
        assert_eq!(same.name(), "http://x/");

        let problem = Problem::on_source(ProblemKind::Corrupt, &drive, None, "bad".into());
        assert_eq!(problem.source, "KINGSTON (/media/k)");
        assert_eq!(problem.drive(), Some("kingston-1"));
        let json = serde_json::to_value(&problem).expect("json");
        assert_eq!(json["origin"]["drive"], "kingston-1");
        assert_eq!(json["origin"]["kind"], "drive");
        assert_eq!(
            serde_json::from_value::<Problem>(json).expect("back"),
            problem
        );

        // A problem of no source, and one written before problems had an origin, read as none.
        let about = Problem::about(
            ProblemKind::Unreadable,
            "/var/lib/flatpak",
            None,
            "x".into(),
        );
        assert!(!serde_json::to_string(&about)
            .expect("json")
            .contains("origin"));
        let old: Problem = serde_json::from_str(
            r#"{"kind":"unreadable","source":"/media/k","ref":null,"reason":"gone"}"#,
        )
        .expect("an older problem");
        assert_eq!(old.origin, None);
        assert_eq!(old.drive(), None);
    }

    #[test]
    fn a_drive_is_named_by_its_label_else_by_where_it_is_mounted() {
        let record = |label: Option<&str>, mount: &str| DriveRecord {
            label: label.map(str::to_owned),
            ..DriveRecord::new("id", mount)
        };
        assert_eq!(
            record(Some("KINGSTON"), "/media/ann/K").display_name(),
            "KINGSTON"
        );
        assert_eq!(
            record(None, "/media/ann/1234-ABCD/").display_name(),
            "1234-ABCD"
        );
        assert_eq!(record(Some(" "), "/run/ferry/mnt/x").display_name(), "x");
        assert_eq!(record(None, "/").display_name(), "/");
    }
}
