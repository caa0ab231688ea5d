//! Drive records, `$FERRY_RUN_DIR/drives/<id>.json`: what the hook found on each drive, read
//! by the desktop agent and by `ferryctl list`. Written whole through a temporary file and a
//! rename, so a reader never sees half a record.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ferry_schema::DriveRecord;
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("cannot write the drive record {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the drive records in {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot remove the drive record {path}: {source}")]
    Remove {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A drive's id: its filesystem UUID when it has one (the same stick gets the same id in any
/// port), else a stable hash of where it is. Only `[A-Za-z0-9-]`, so it is safe in file and
/// link names.
pub fn drive_id(uuid: Option<&str>, device: Option<&Path>, mount: &Path) -> String {
    if let Some(uuid) = uuid {
        let clean: String = uuid
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .take(64)
            .collect();
        if !clean.is_empty() {
            return clean.to_ascii_lowercase();
        }
    }
    let mut hasher = Sha256::new();
    match device {
        Some(device) => {
            hasher.update(b"device:");
            hasher.update(device.as_os_str().as_encoded_bytes());
        }
        None => {
            hasher.update(b"mount:");
            hasher.update(mount.as_os_str().as_encoded_bytes());
        }
    }
    let digest = hasher.finalize();
    format!("h{}", hex::encode(&digest[..8]))
}

/// The directory of drive records.
#[derive(Debug, Clone)]
pub struct RecordStore {
    dir: PathBuf,
}

impl RecordStore {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path_of(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Writes `record` atomically with mode 0644.
    pub fn write(&self, record: &DriveRecord) -> Result<PathBuf, RecordError> {
        let path = self.path_of(&record.id);
        let write_error = |source: std::io::Error| RecordError::Write {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&self.dir).map_err(write_error)?;
        let json =
            serde_json::to_vec_pretty(record).map_err(|e| write_error(std::io::Error::other(e)))?;
        let tmp = self
            .dir
            .join(format!(".{}.json.{}.tmp", record.id, std::process::id()));
        let result = (|| {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                .open(&tmp)?;
            // The umask may have narrowed the mode; readers in the session need 0644.
            file.set_permissions(std::fs::Permissions::from_mode(0o644))?;
            file.write_all(&json)?;
            file.write_all(b"\n")?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path)
        })();
        if let Err(source) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(write_error(source));
        }
        Ok(path)
    }

    /// Reads one record; None when it does not exist or is not a record.
    pub fn read(&self, id: &str) -> Option<DriveRecord> {
        read_record(&self.path_of(id))
    }

    /// Every readable record, sorted by id. Files that are not records are skipped.
    pub fn list(&self) -> Result<Vec<DriveRecord>, RecordError> {
        let paths = match DriveRecord::paths_in(&self.dir) {
            Ok(paths) => paths,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(RecordError::Read {
                    path: self.dir.clone(),
                    source,
                })
            }
        };
        let mut records: Vec<DriveRecord> =
            paths.iter().filter_map(|path| read_record(path)).collect();
        records.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(records)
    }

    /// Removes a record; a missing one is not an error.
    pub fn remove(&self, id: &str) -> Result<(), RecordError> {
        let path = self.path_of(id);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(RecordError::Remove { path, source }),
        }
    }
}

fn read_record(path: &Path) -> Option<DriveRecord> {
    match DriveRecord::read(path) {
        Ok(record) => Some(record),
        Err(error) if error.is_missing() => None,
        Err(error) => {
            tracing::warn!(
                "ignoring {}: {}",
                path.display(),
                ferry_engine::causes::Causes(&error)
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> DriveRecord {
        DriveRecord {
            label: Some("STICK".into()),
            device: Some("/dev/sdb1".into()),
            fs_type: Some("vfat".into()),
            ..DriveRecord::new(id, "/run/media/ann/STICK")
        }
    }

    #[test]
    fn ids_are_stable_and_safe() {
        let mount = Path::new("/m");
        assert_eq!(drive_id(Some("1234-ABCD"), None, mount), "1234-abcd");
        assert_eq!(drive_id(Some("../../x"), None, mount), "x");
        let a = drive_id(None, Some(Path::new("/dev/sdb1")), mount);
        assert_eq!(
            a,
            drive_id(None, Some(Path::new("/dev/sdb1")), Path::new("/other"))
        );
        assert_ne!(a, drive_id(None, Some(Path::new("/dev/sdc1")), mount));
        assert_ne!(
            drive_id(None, None, mount),
            drive_id(None, None, Path::new("/n"))
        );
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn writes_atomically_with_mode_0644_and_reads_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = RecordStore::new(dir.path().join("drives"));
        let path = store.write(&record("abc")).expect("write the record");
        let mode = std::fs::metadata(&path)
            .expect("stat the record")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o644);
        assert_eq!(store.read("abc"), Some(record("abc")));
        std::fs::write(store.dir().join("junk.json"), b"{not json").expect("write a file");
        store.write(&record("def")).expect("write the record");
        let ids: Vec<String> = store
            .list()
            .expect("list the records")
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, ["abc", "def"]);
        let leftovers: Vec<_> = std::fs::read_dir(store.dir())
            .expect("list the directory")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
        store.remove("abc").expect("remove the record");
        store.remove("abc").expect("remove the record");
        assert_eq!(store.read("abc"), None);
    }
}
