//! A bounded on-disk cache of content objects converted to archive `.filez`, so a second
//! peer asking for the same large object costs a file read, not a conversion.
//!
//! An entry is `objects/<2 hex>/<62 hex>.filez` below the cache directory: a fixed header
//! recording the source object's size and modification time, then the `.filez` bytes. The
//! entry's own modification time is set to the source's. An entry is served only when the
//! source still has the recorded size and time and the entry still has the time and size it
//! was written with, so neither a changed source nor a changed entry is ever served stale.
//! Entries are written to a temporary file and renamed into place. Past the size cap the
//! oldest entries (by change time: when they were written) are removed.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use rustix::fs::{Timespec, Timestamps};

use crate::object::Checksum;

/// The cache's directory unless one is chosen.
pub const DEFAULT_CACHE_DIR: &str = "/var/cache/ferry/serve";
/// The environment variable that chooses another directory.
pub const CACHE_DIR_ENV: &str = "FERRY_SERVE_CACHE";
/// The cache's size cap unless another is chosen.
pub const DEFAULT_CACHE_BYTES: u64 = 1 << 30;
/// Removal stops once the cache is this share of its cap, so one eviction makes room for
/// many entries.
const EVICT_TO_PERCENT: u64 = 90;

/// Age past which a temporary file is taken for the leftover of a killed server.
const STALE_TMP: std::time::Duration = std::time::Duration::from_secs(600);

const MAGIC: &[u8; 8] = b"FERRYZ1\0";
/// Magic, source size, source mtime seconds and nanoseconds, payload length.
pub const ENTRY_HEADER: u64 = 8 + 8 + 8 + 8 + 8;

/// A cache directory of this user's own in the temporary directory, for when the shared one
/// cannot be written: created mode 0700, and refused unless it is a directory this user owns
/// (another user could have placed it first).
pub fn private_dir() -> io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let uid = rustix::process::getuid().as_raw();
    let dir = std::env::temp_dir().join(format!("ferry-serve-{uid}"));
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
        Err(error) => return Err(error),
    }
    let meta = std::fs::symlink_metadata(&dir)?;
    if !meta.is_dir() || meta.uid() != uid || meta.mode() & 0o077 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} is not a private directory of this user", dir.display()),
        ));
    }
    Ok(dir)
}

/// What identifies the source object an entry was converted from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceStamp {
    /// The source file's size.
    pub size: u64,
    /// Its modification time, seconds.
    pub mtime_sec: i64,
    /// Its modification time, nanoseconds within the second.
    pub mtime_nsec: i64,
}

impl SourceStamp {
    /// The stamp of a file with metadata `meta`.
    pub fn of(meta: &std::fs::Metadata) -> Self {
        Self {
            size: meta.size(),
            mtime_sec: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
        }
    }
}

/// A valid entry, opened and positioned at its `.filez` bytes.
#[derive(Debug)]
pub struct CachedObject {
    /// The cached `.filez` file, at its start.
    pub file: File,
    /// Its length.
    pub length: u64,
}

/// The cache; shared by every repository served.
#[derive(Debug)]
pub struct ConvertCache {
    dir: PathBuf,
    cap: u64,
    /// Bytes of entries, as counted at start and added since (evictions recount).
    used: AtomicU64,
    evicting: Mutex<()>,
}

impl ConvertCache {
    /// Opens (creating) the cache in `dir`, holding at most `cap` bytes.
    pub fn open(dir: &Path, cap: u64) -> io::Result<Self> {
        std::fs::create_dir_all(dir.join("objects"))?;
        std::fs::create_dir_all(dir.join("tmp"))?;
        // Temporary files of a run that was killed are never valid entries; recent ones may
        // be another server's, still being written.
        for entry in std::fs::read_dir(dir.join("tmp"))?.flatten() {
            let stale = entry
                .metadata()
                .and_then(|meta| meta.modified())
                .ok()
                .and_then(|time| time.elapsed().ok())
                .is_some_and(|age| age >= STALE_TMP);
            if stale {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        let cache = Self {
            dir: dir.to_owned(),
            cap,
            used: AtomicU64::new(0),
            evicting: Mutex::new(()),
        };
        let used = cache.entries().iter().map(|e| e.1).sum();
        cache.used.store(used, Ordering::Relaxed);
        Ok(cache)
    }

    /// Whether anything is cached at all (`--cache-size 0` turns the cache off).
    pub fn is_enabled(&self) -> bool {
        self.cap > 0
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn entry_path(&self, checksum: &Checksum) -> PathBuf {
        let hex = checksum.to_hex();
        self.dir
            .join("objects")
            .join(&hex[..2])
            .join(format!("{}.filez", &hex[2..]))
    }

    /// The entry for `checksum`, when it was converted from a source stamped `source` and
    /// has not changed since. A stale or damaged entry is removed.
    pub fn get(&self, checksum: &Checksum, source: SourceStamp) -> Option<CachedObject> {
        let path = self.entry_path(checksum);
        let mut file = File::open(&path).ok()?;
        match valid_entry(&mut file, source) {
            Some(length) => Some(CachedObject { file, length }),
            None => {
                tracing::debug!(path = %path.display(), "stale cache entry");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Writes an entry: `write` produces the `.filez` bytes. Returns the entry opened at its
    /// `.filez` bytes, as [`ConvertCache::get`] would.
    pub fn put(
        &self,
        checksum: &Checksum,
        source: SourceStamp,
        write: impl FnOnce(&mut File) -> io::Result<()>,
    ) -> io::Result<CachedObject> {
        let tmp_path = self.dir.join("tmp").join(format!(
            "{}.{}.{}",
            checksum.to_hex(),
            std::process::id(),
            next_serial()
        ));
        let result = self.write_entry(&tmp_path, checksum, source, write);
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp_path);
        }
        let (file, length) = result?;
        self.used
            .fetch_add(ENTRY_HEADER + length, Ordering::Relaxed);
        if self.used.load(Ordering::Relaxed) > self.cap {
            self.evict();
        }
        Ok(CachedObject { file, length })
    }

    fn write_entry(
        &self,
        tmp_path: &Path,
        checksum: &Checksum,
        source: SourceStamp,
        write: impl FnOnce(&mut File) -> io::Result<()>,
    ) -> io::Result<(File, u64)> {
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(tmp_path)?;
        file.write_all(&[0u8; ENTRY_HEADER as usize])?;
        write(&mut file)?;
        let end = file.stream_position()?;
        let length = end - ENTRY_HEADER;
        file.seek(SeekFrom::Start(0))?;
        file.write_all(&header_bytes(source, length))?;
        file.flush()?;
        // The entry carries the source's time: any later write to it changes that.
        let time = Timespec {
            tv_sec: source.mtime_sec,
            tv_nsec: source.mtime_nsec as _,
        };
        rustix::fs::futimens(
            &file,
            &Timestamps {
                last_access: time,
                last_modification: time,
            },
        )?;
        let path = self.entry_path(checksum);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::rename(tmp_path, &path)?;
        file.seek(SeekFrom::Start(ENTRY_HEADER))?;
        Ok((file, length))
    }

    /// Every entry with its size and change time (seconds, nanoseconds).
    fn entries(&self) -> Vec<(PathBuf, u64, (i64, i64))> {
        let mut found = Vec::new();
        let Ok(dirs) = std::fs::read_dir(self.dir.join("objects")) else {
            return found;
        };
        for dir in dirs.flatten() {
            let Ok(files) = std::fs::read_dir(dir.path()) else {
                continue;
            };
            for file in files.flatten() {
                if let Ok(meta) = file.metadata() {
                    if meta.is_file() {
                        found.push((file.path(), meta.len(), (meta.ctime(), meta.ctime_nsec())));
                    }
                }
            }
        }
        found
    }

    /// Removes the oldest entries until the cache is under its cap again.
    fn evict(&self) {
        let Ok(_only_one) = self.evicting.try_lock() else {
            return;
        };
        let mut entries = self.entries();
        entries.sort_by_key(|e| e.2);
        let mut used: u64 = entries.iter().map(|e| e.1).sum();
        let target = self.cap / 100 * EVICT_TO_PERCENT;
        let mut removed = 0usize;
        for (path, size, _) in entries {
            if used <= target {
                break;
            }
            if std::fs::remove_file(&path).is_ok() {
                used = used.saturating_sub(size);
                removed += 1;
            }
        }
        self.used.store(used, Ordering::Relaxed);
        tracing::info!(removed, used, cap = self.cap, "cache entries evicted");
    }

    /// Bytes the cache holds, as last counted.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }
}

fn next_serial() -> u64 {
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    SERIAL.fetch_add(1, Ordering::Relaxed)
}

fn header_bytes(source: SourceStamp, length: u64) -> [u8; ENTRY_HEADER as usize] {
    let mut header = [0u8; ENTRY_HEADER as usize];
    header[..8].copy_from_slice(MAGIC);
    header[8..16].copy_from_slice(&source.size.to_le_bytes());
    header[16..24].copy_from_slice(&source.mtime_sec.to_le_bytes());
    header[24..32].copy_from_slice(&source.mtime_nsec.to_le_bytes());
    header[32..40].copy_from_slice(&length.to_le_bytes());
    header
}

/// The payload length of an entry that matches `source` and is as it was written, with
/// `file` positioned at the payload.
fn valid_entry(file: &mut File, source: SourceStamp) -> Option<u64> {
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.mtime() != source.mtime_sec || meta.mtime_nsec() != source.mtime_nsec
    {
        return None;
    }
    let mut header = [0u8; ENTRY_HEADER as usize];
    file.read_exact(&mut header).ok()?;
    let length = u64::from_le_bytes(header[32..40].try_into().ok()?);
    if header != header_bytes(source, length) || meta.len() != ENTRY_HEADER.checked_add(length)? {
        return None;
    }
    Some(length)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(size: u64, sec: i64) -> SourceStamp {
        SourceStamp {
            size,
            mtime_sec: sec,
            mtime_nsec: 5,
        }
    }

    fn read_all(mut cached: CachedObject) -> Vec<u8> {
        let mut bytes = Vec::new();
        cached.file.read_to_end(&mut bytes).expect("read");
        assert_eq!(bytes.len() as u64, cached.length);
        bytes
    }

    #[test]
    fn an_entry_is_served_only_while_source_and_entry_are_unchanged() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let cache = ConvertCache::open(dir.path(), 1 << 20).expect("open");
        let checksum = Checksum::from_slice(&[7u8; 32]).expect("checksum");
        let source = stamp(100, 1_000_000);
        let put = cache
            .put(&checksum, source, |file| file.write_all(b"payload"))
            .expect("put");
        assert_eq!(read_all(put), b"payload");
        let got = cache.get(&checksum, source).expect("a valid entry");
        assert_eq!(read_all(got), b"payload");

        // Another source time or size: not served, and removed.
        assert!(cache.get(&checksum, stamp(100, 1_000_001)).is_none());
        assert!(cache.get(&checksum, source).is_none());

        // An entry written to after it was stored: not served.
        cache
            .put(&checksum, source, |file| file.write_all(b"payload"))
            .expect("put");
        let path = cache.entry_path(&checksum);
        let mut bytes = std::fs::read(&path).expect("read entry");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, bytes).expect("tamper");
        assert!(cache.get(&checksum, source).is_none());
    }

    #[test]
    fn past_the_cap_the_oldest_entries_go() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let cache = ConvertCache::open(dir.path(), 4000).expect("open");
        let source = stamp(1, 1);
        let ids: Vec<Checksum> = (0..6u8)
            .map(|i| Checksum::from_slice(&[i; 32]).expect("checksum"))
            .collect();
        for id in &ids {
            cache
                .put(id, source, |file| file.write_all(&[0u8; 1000]))
                .expect("put");
            // Change times are what orders eviction.
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(cache.used() <= 4000, "{} bytes kept", cache.used());
        assert!(cache.get(&ids[0], source).is_none(), "the oldest was kept");
        assert!(
            cache.get(&ids[5], source).is_some(),
            "the newest was evicted"
        );
    }
}
