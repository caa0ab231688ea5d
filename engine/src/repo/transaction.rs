//! A write transaction, as libostree's `ostree_repo_prepare_transaction`/`commit_transaction`:
//! verified objects wait in a locked staging directory `tmp/staging-<boot-id>-XXXXXX` until a
//! batch is committed: the data is synced (`syncfs`, unless `[core] fsync=false`), then the
//! batch is renamed into `objects/XX/` and the filesystem is synced again. So after a power cut
//! no object under `objects/` has incomplete content, and a ref written after
//! [`Transaction::commit`] only reaches objects that are durable.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags, Timespec, Timestamps};

use super::lock::StagingLock;
use super::space::SpaceBudget;
use super::write_behind::WriteBehind;
use super::{open_beneath, LockKind, Repo, RepoError, RepoLock};
use crate::cancel::CancelToken;
use crate::object::{ObjectId, ObjectKind};

/// A batch is committed once it holds this many objects...
pub const BATCH_OBJECTS: usize = 8192;
/// ...or this many bytes of content, whichever comes first. Bounds what a killed pull loses
/// and how much unsynced data is waiting at once; the list itself stays small.
pub const BATCH_BYTES: u64 = 256 << 20;

/// libostree's prefix for transaction staging directories under `tmp/`
/// (`OSTREE_REPO_TMPDIR_STAGING`).
pub const STAGING_PREFIX: &str = "staging-";

/// Staged files are spread over this many subdirectories of the staging directory, one per
/// writing thread (round robin), so that threads creating files do not all queue on one
/// directory's lock while the filesystem allocates each inode under it.
const STAGING_LANES: usize = 8;

/// A verified object waiting in the staging directory.
struct StagedEntry {
    temp: String,
    /// `XX/YYYY.ext`, relative to `objects/`.
    object: String,
    /// Detached metadata is keyed by its commit, so a newer one replaces the old one;
    /// everything else is content-addressed and an existing file is kept.
    replace: bool,
}

#[derive(Default)]
struct Batch {
    entries: Vec<StagedEntry>,
    bytes: u64,
}

/// The locked staging directory of a transaction.
struct StagingDir {
    name: String,
    fd: OwnedFd,
    /// Held until the directory is removed.
    lock: Option<StagingLock>,
}

/// How a transaction found its staging directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StagingOrigin {
    /// Created for this transaction.
    Created,
    /// Left by an earlier transaction of this boot that ended without removing it (a
    /// killed process); its files were discarded, since nothing proves they were complete
    /// and verified when the process died.
    Adopted {
        /// Object files discarded.
        discarded: u64,
    },
}

/// A write transaction, as libostree's `ostree_repo_prepare_transaction`/
/// `commit_transaction`: objects are written into a locked staging directory
/// `tmp/staging-<boot-id>-XXXXXX` and moved into `objects/` in batches, each only after its
/// data is on disk. Holds the repository's shared lock.
///
/// [`Transaction::commit`] commits the last batch and removes the staging directory; a
/// transaction dropped without it removes the staging directory with every object not yet
/// committed. A process killed midway leaves the directory; the next transaction of the same
/// boot adopts it and empties it, and directories of other boots (whose contents may not
/// have reached the disk before a power cut) are removed, as libostree removes them.
pub struct Transaction<'r> {
    repo: &'r Repo,
    staging: StagingDir,
    origin: StagingOrigin,
    removed_stale: u64,
    batch: Mutex<Batch>,
    limits: (usize, u64),
    budget: SpaceBudget,
    /// Starts writing staged data before the batch's sync; none with `[core] fsync=false`.
    write_behind: Option<WriteBehind>,
    _lock: RepoLock,
}

impl fmt::Debug for Transaction<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transaction")
            .field("repo", &self.repo.path)
            .field("staging", &self.staging.name)
            .finish_non_exhaustive()
    }
}

impl<'r> Transaction<'r> {
    /// Takes the shared repository lock (waiting as [`Repo::lock`] does) and a staging
    /// directory: one of this boot that nobody holds, emptied, or a new one.
    pub fn begin(repo: &'r Repo, cancel: Option<&CancelToken>) -> Result<Self, RepoError> {
        let lock = repo.lock(LockKind::Shared, cancel)?;
        let tmp = repo.tmp_dir()?;
        let tmp_path = repo.path.join("tmp");
        let prefix = format!("{STAGING_PREFIX}{}-", boot_id()?);
        let (staging, origin, removed_stale) = allocate_staging(tmp, &tmp_path, &prefix)?;
        for lane in 0..STAGING_LANES {
            let name = lane_name(lane);
            match rustix::fs::mkdirat(&staging.fd, name.as_str(), Mode::from_raw_mode(0o700)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(error) => {
                    let path = tmp_path.join(&staging.name).join(&name);
                    return Err(RepoError::io("create", path, error));
                }
            }
        }
        let budget = SpaceBudget::measure(repo)?;
        Ok(Self {
            repo,
            staging,
            origin,
            removed_stale,
            batch: Mutex::new(Batch::default()),
            limits: (BATCH_OBJECTS, BATCH_BYTES),
            budget,
            write_behind: None,
            _lock: lock,
        })
    }

    /// Commits a batch once it holds `objects` objects or `bytes` bytes.
    pub fn with_batch_limits(mut self, objects: usize, bytes: u64) -> Self {
        self.limits = (objects.max(1), bytes.max(1));
        self
    }

    /// Starts writing staged data to the disk while the transaction goes on, rather than all
    /// at a batch's sync: worth it when the sources do not keep the disk busy (the network, a
    /// drive of its own), and a cost when they do (a repository on the same filesystem, whose
    /// reads it slows). Nothing with `[core] fsync=false`.
    pub fn with_write_behind(mut self) -> Self {
        if self.repo.config.fsync && self.write_behind.is_none() {
            self.write_behind = self
                .staging
                .fd
                .try_clone()
                .ok()
                .and_then(WriteBehind::start);
        }
        self
    }

    /// The repository written to.
    pub fn repo(&self) -> &'r Repo {
        self.repo
    }

    /// The staging directory's path.
    pub fn staging_path(&self) -> PathBuf {
        self.repo.path.join("tmp").join(&self.staging.name)
    }

    /// The staging directory, where this transaction's writes make their temporary files.
    pub(super) fn staging_fd(&self) -> BorrowedFd<'_> {
        self.staging.fd.as_fd()
    }

    /// A new name for a temporary file in the staging directory, in the calling thread's
    /// lane: `lane-N/ferry-<random>`.
    pub(super) fn staged_temp_name(&self) -> String {
        static NEXT_LANE: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static LANE: usize = NEXT_LANE.fetch_add(1, Ordering::Relaxed) % STAGING_LANES;
        }
        let lane = LANE.with(|lane| *lane);
        format!("lane-{lane}/{}", super::write::temp_name())
    }

    /// What content written in this transaction may still take.
    pub(super) fn budget(&self) -> &SpaceBudget {
        &self.budget
    }

    /// Whether the staging directory was created or adopted.
    pub fn origin(&self) -> StagingOrigin {
        self.origin
    }

    /// Staging directories of other boots removed when the transaction began.
    pub fn removed_stale(&self) -> u64 {
        self.removed_stale
    }

    /// Objects staged and not yet committed.
    pub fn staged_objects(&self) -> usize {
        self.lock_batch().entries.len()
    }

    fn lock_batch(&self) -> MutexGuard<'_, Batch> {
        match self.batch.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Records a verified entry `temp` of the staging directory; commits the batch when full.
    pub(super) fn stage(&self, temp: String, object: ObjectId, size: u64) -> Result<(), RepoError> {
        let entry = StagedEntry {
            temp,
            object: self.repo.object_name(object),
            replace: object.kind == ObjectKind::CommitMeta,
        };
        if let Some(write_behind) = &self.write_behind {
            write_behind.staged(size);
        }
        let full = {
            let mut batch = self.lock_batch();
            batch.entries.push(entry);
            batch.bytes += size;
            if batch.entries.len() >= self.limits.0 || batch.bytes >= self.limits.1 {
                Some(std::mem::take(&mut *batch))
            } else {
                None
            }
        };
        match full {
            Some(batch) => self.publish(batch),
            None => Ok(()),
        }
    }

    /// Starts writing what is staged to the disk ahead of the batch's own sync, when nothing
    /// else will: a pull whose last objects are all in flight calls it, so the final sync has
    /// little left to write. Changes no guarantee: objects still move only after that sync.
    pub fn write_ahead(&self) -> Result<(), RepoError> {
        if !self.repo.config.fsync || self.write_behind.is_some() {
            return Ok(());
        }
        rustix::fs::syncfs(&self.staging.fd).map_err(|e| RepoError::io("sync", &self.repo.path, e))
    }

    /// Commits what is staged now: its data is made durable, then it is renamed into
    /// `objects/`, whose directories are then synced. Other threads may go on staging
    /// meanwhile; what they add goes into the next batch.
    pub fn commit_batch(&self) -> Result<(), RepoError> {
        let batch = std::mem::take(&mut *self.lock_batch());
        self.publish(batch)
    }

    /// Commits the last batch (and syncs even when it is empty, so objects an earlier
    /// process left are durable too before a ref points at them), then removes the staging
    /// directory and releases its lock.
    pub fn commit(self) -> Result<(), RepoError> {
        let batch = std::mem::take(&mut *self.lock_batch());
        if batch.entries.is_empty() {
            self.repo.sync()?;
        }
        self.publish(batch)
        // Dropping removes the (now empty) staging directory.
    }

    fn publish(&self, batch: Batch) -> Result<(), RepoError> {
        if batch.entries.is_empty() {
            return Ok(());
        }
        let repo = self.repo;
        let fsync = repo.config.fsync;
        if fsync {
            rustix::fs::syncfs(&self.staging.fd)
                .map_err(|e| RepoError::io("sync", &repo.path, e))?;
        }
        let mut prefixes = [false; 256];
        for entry in &batch.entries {
            let prefix = &entry.object[..2];
            let index = usize::from_str_radix(prefix, 16).unwrap_or(0) & 0xff;
            if !prefixes[index] {
                match rustix::fs::mkdirat(&repo.objects, prefix, Mode::from_raw_mode(0o777)) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(error) => {
                        return Err(RepoError::io(
                            "create",
                            repo.path.join("objects").join(prefix),
                            error,
                        ))
                    }
                }
                prefixes[index] = true;
            }
            self.move_into_objects(entry)?;
        }
        // The renamed entries, and any new `objects/XX`, made durable at once: one sync of
        // the filesystem instead of one per directory (up to 256, each a device flush).
        if fsync {
            rustix::fs::syncfs(&self.staging.fd)
                .map_err(|e| RepoError::io("sync", &repo.path, e))?;
        }
        Ok(())
    }

    /// Renames one staged entry into `objects/`, keeping an object that is already there
    /// (its content is the same by definition, and it may be hard-linked into checkouts).
    fn move_into_objects(&self, entry: &StagedEntry) -> Result<(), RepoError> {
        let repo = self.repo;
        let staging = &self.staging.fd;
        let target = || repo.path.join("objects").join(&entry.object);
        let flags = if entry.replace {
            RenameFlags::empty()
        } else {
            RenameFlags::NOREPLACE
        };
        let renamed = match rustix::fs::renameat_with(
            staging,
            entry.temp.as_str(),
            &repo.objects,
            entry.object.as_str(),
            flags,
        ) {
            // A filesystem without RENAME_NOREPLACE: the content is the same either way.
            Err(rustix::io::Errno::INVAL) if !entry.replace => rustix::fs::renameat(
                staging,
                entry.temp.as_str(),
                &repo.objects,
                entry.object.as_str(),
            ),
            other => other,
        };
        match renamed {
            Ok(()) => Ok(()),
            Err(rustix::io::Errno::EXIST) => {
                rustix::fs::unlinkat(staging, entry.temp.as_str(), AtFlags::empty())
                    .map_err(|e| RepoError::io("remove", self.staging_path().join(&entry.temp), e))
            }
            Err(error) => Err(RepoError::io("store", target(), error)),
        }
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        // Joined first, so no sync of its own outlives the transaction.
        drop(self.write_behind.take());
        let path = self.staging_path();
        if let Err(error) = std::fs::remove_dir_all(&path) {
            if error.kind() != io::ErrorKind::NotFound {
                tracing::warn!(
                    "cannot remove the staging directory {}: {error}",
                    path.display()
                );
            }
        }
        // The lock goes last, so nobody adopts a directory that is being removed.
        drop(self.staging.lock.take());
    }
}

/// Must match the prefix [`Transaction::staged_temp_name`] gives.
fn lane_name(lane: usize) -> String {
    format!("lane-{lane}")
}

/// This boot's ID, as libostree reads it (`OSTREE_BOOTID` overrides it, as there).
fn boot_id() -> Result<String, RepoError> {
    if let Some(id) = std::env::var_os("OSTREE_BOOTID") {
        if let Some(id) = id.to_str().filter(|id| valid_boot_id(id)) {
            return Ok(id.to_owned());
        }
    }
    const PATH: &str = "/proc/sys/kernel/random/boot_id";
    let text = std::fs::read_to_string(PATH).map_err(|e| RepoError::io("read", PATH, e))?;
    let id = text.trim();
    if !valid_boot_id(id) {
        return Err(RepoError::io(
            "read",
            PATH,
            io::Error::new(io::ErrorKind::InvalidData, "not a boot ID"),
        ));
    }
    Ok(id.to_owned())
}

fn valid_boot_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Finds or makes the staging directory, as libostree's `_ostree_repo_allocate_tmpdir`:
/// a directory named with this boot's prefix whose lock is free is adopted (and emptied);
/// otherwise a new one is made and locked. Unlocked staging directories of other boots are
/// removed on the way, as libostree's `cleanup_tmpdir` removes them.
fn allocate_staging(
    tmp: BorrowedFd<'_>,
    tmp_path: &Path,
    prefix: &str,
) -> Result<(StagingDir, StagingOrigin, u64), RepoError> {
    let list_error = |e: rustix::io::Errno| RepoError::io("list", tmp_path, e);
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(tmp).map_err(list_error)? {
        let entry = entry.map_err(list_error)?;
        let Ok(name) = entry.file_name().to_str() else {
            continue;
        };
        if name.starts_with(STAGING_PREFIX) && !name.ends_with("-lock") {
            names.push(name.to_owned());
        }
    }
    let mut adopted = None;
    let mut removed = 0;
    for name in names {
        if !is_directory(tmp, &name) {
            continue;
        }
        let ours = name.starts_with(prefix);
        if ours && adopted.is_some() {
            // Another leftover of this boot; libostree may reuse it, so it is left alone.
            continue;
        }
        let Some(lock) = try_lock_staging(tmp, tmp_path, &name)? else {
            continue;
        };
        if ours {
            let fd = open_beneath(tmp, &name, OFlags::RDONLY | OFlags::DIRECTORY)
                .map_err(|e| RepoError::io("open", tmp_path.join(&name), e))?;
            let discarded = empty_dir(&fd, &tmp_path.join(&name))?;
            // Touched, so age-based cleanups see it as in use.
            let _ = rustix::fs::futimens(
                &fd,
                &Timestamps {
                    last_access: Timespec {
                        tv_sec: 0,
                        tv_nsec: rustix::fs::UTIME_NOW,
                    },
                    last_modification: Timespec {
                        tv_sec: 0,
                        tv_nsec: rustix::fs::UTIME_NOW,
                    },
                },
            );
            tracing::info!(
                "reusing the staging directory {} of an interrupted write; discarded {} entries",
                tmp_path.join(&name).display(),
                discarded
            );
            adopted = Some((
                StagingDir {
                    name,
                    fd,
                    lock: Some(lock),
                },
                StagingOrigin::Adopted { discarded },
            ));
        } else {
            let path = tmp_path.join(&name);
            std::fs::remove_dir_all(&path).map_err(|e| RepoError::io("remove", &path, e))?;
            tracing::info!(
                "removed the staging directory {} of another boot",
                path.display()
            );
            removed += 1;
            drop(lock);
        }
    }
    if let Some((staging, origin)) = adopted {
        return Ok((staging, origin, removed));
    }
    loop {
        let name = format!("{prefix}{}", random_suffix());
        match rustix::fs::mkdirat(tmp, name.as_str(), Mode::from_raw_mode(0o777)) {
            Ok(()) => {}
            Err(rustix::io::Errno::EXIST) => continue,
            Err(error) => return Err(RepoError::io("create", tmp_path.join(&name), error)),
        }
        // Another process may lock the new directory first; then make another.
        let Some(lock) = try_lock_staging(tmp, tmp_path, &name)? else {
            continue;
        };
        let fd = open_beneath(tmp, &name, OFlags::RDONLY | OFlags::DIRECTORY)
            .map_err(|e| RepoError::io("open", tmp_path.join(&name), e))?;
        return Ok((
            StagingDir {
                name,
                fd,
                lock: Some(lock),
            },
            StagingOrigin::Created,
            removed,
        ));
    }
}

/// Locks `<name>-lock` beside a staging directory, and checks the directory is still there
/// (another process may have removed it before we got the lock).
fn try_lock_staging(
    tmp: BorrowedFd<'_>,
    tmp_path: &Path,
    name: &str,
) -> Result<Option<StagingLock>, RepoError> {
    let lock_name = format!("{name}-lock");
    let Some(lock) = StagingLock::try_lock(tmp, &lock_name)
        .map_err(|e| RepoError::io("lock", tmp_path.join(&lock_name), e))?
    else {
        return Ok(None);
    };
    Ok(is_directory(tmp, name).then_some(lock))
}

/// Whether `name` in `dir` is a directory (not a symlink to one).
fn is_directory(dir: BorrowedFd<'_>, name: &str) -> bool {
    matches!(
        rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW),
        Ok(stat) if rustix::fs::FileType::from_raw_mode(stat.st_mode)
            == rustix::fs::FileType::Directory
    )
}

/// Removes everything inside a directory; returns how many files it held, counting those
/// in its subdirectories.
fn empty_dir(dir: &OwnedFd, path: &Path) -> Result<u64, RepoError> {
    let list_error = |e: rustix::io::Errno| RepoError::io("list", path, e);
    let mut count = 0;
    for entry in rustix::fs::Dir::read_from(dir).map_err(list_error)? {
        let entry = entry.map_err(list_error)?;
        let name = entry.file_name();
        if name.to_bytes() == b"." || name.to_bytes() == b".." {
            continue;
        }
        match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
            Ok(()) => count += 1,
            Err(rustix::io::Errno::ISDIR | rustix::io::Errno::PERM) => {
                // A lane (or libostree's `XX/`): what counts is the files it held.
                let child = path.join(std::ffi::OsStr::from_bytes(name.to_bytes()));
                count += std::fs::read_dir(&child).map_or(0, |entries| entries.count() as u64);
                std::fs::remove_dir_all(&child).map_err(|e| RepoError::io("remove", &child, e))?;
            }
            Err(rustix::io::Errno::NOENT) => {}
            Err(error) => {
                return Err(RepoError::io(
                    "remove",
                    path.join(std::ffi::OsStr::from_bytes(name.to_bytes())),
                    error,
                ))
            }
        }
    }
    Ok(count)
}

/// Six random characters, as `mkdtemp` would pick.
fn random_suffix() -> String {
    use rand::distributions::{Alphanumeric, DistString};
    Alphanumeric.sample_string(&mut rand::thread_rng(), 6)
}
