//! A repository on disk: config, refs, locks, reading and writing objects in every mode.
//!
//! [`Repo::open`] reads a repository without writing anything to it (scanning a drive must
//! not change it); writing methods create what they need on first use. Every path inside the
//! repository is opened with `openat2(RESOLVE_BENEATH)` from the repository's directory, so a
//! symlink planted in a repository on a drive cannot make Ferry read or write outside it.
//!
//! Interoperating with libostree on the same repository:
//! - [`Repo::lock`] takes the same lock `ostree` and `flatpak` take (an OFD lock on `.lock`),
//!   shared while writing objects, exclusive when deleting them.
//! - Objects are written to `tmp/` and renamed into `objects/`; refs are written last, after
//!   [`Repo::sync`], and a `state/<commit>.commitpartial` marker says a commit's closure is not
//!   complete yet ([`Repo::mark_partial`]).
//! - A [`Transaction`] stages objects in `tmp/staging-<boot-id>-XXXXXX`, locked by
//!   `tmp/staging-<boot-id>-XXXXXX-lock` as libostree locks its own, and moves them into
//!   `objects/` in batches only once their data is synced; libostree neither reuses nor
//!   deletes such a directory while it is held. Each writing thread stages into its own
//!   subdirectory of it (`lane-N`), which libostree's own commit ignores.
//!
//! `Repo` is `Send + Sync`: several threads may read and write objects at once.

mod config;
mod error;
mod lock;
mod read;
mod refs;
mod space;
mod transaction;
mod write;
mod write_behind;

use std::fmt;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustix::fs::{Mode, OFlags, ResolveFlags};

pub use config::{
    ConfigError, KeyFile, LockTimeout, MinFreeSpace, RemoteConfig, RepoConfig, MAX_CONFIG_SIZE,
};
pub use error::RepoError;
pub use lock::{LockKind, RepoLock};
pub use read::{
    read_archive_stream, ArchiveContent, ArchiveHeaderError, ArchivedContent, ContentReader,
};
pub use refs::{CollectionRef, RefEntry, RefLocation};
pub use transaction::{StagingOrigin, Transaction, BATCH_BYTES, BATCH_OBJECTS, STAGING_PREFIX};
pub use write::WriteOutcome;

pub use crate::object::RepoMode;
use crate::object::{validate_collection_id, Checksum, ObjectId};

/// Resolution flags for every path opened inside a repository.
const BENEATH: ResolveFlags = ResolveFlags::BENEATH.union(ResolveFlags::NO_MAGICLINKS);

/// An open repository.
pub struct Repo {
    path: PathBuf,
    dir: OwnedFd,
    objects: OwnedFd,
    config: RepoConfig,
    /// `tmp/`, opened on the first write.
    tmp: OnceLock<OwnedFd>,
    lock: Arc<lock::LockState>,
}

impl fmt::Debug for Repo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Repo")
            .field("path", &self.path)
            .field("mode", &self.config.mode)
            .finish_non_exhaustive()
    }
}

impl Repo {
    /// Opens the repository at `path` (a symlink to it is followed) and reads its config.
    /// Writes nothing.
    pub fn open(path: &Path) -> Result<Self, RepoError> {
        let dir = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|error| match error {
            rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR => RepoError::NotARepo {
                path: path.to_path_buf(),
                reason: "no such directory".to_owned(),
            },
            other => RepoError::io("open", path, other),
        })?;
        let config_path = path.join("config");
        let text = match open_beneath(&dir, "config", OFlags::RDONLY) {
            Ok(fd) => read_bounded_text(fd, MAX_CONFIG_SIZE as u64).map_err(|error| {
                if error.kind() == io::ErrorKind::InvalidData {
                    RepoError::Config {
                        path: config_path.clone(),
                        reason: error.into(),
                    }
                } else {
                    RepoError::io("read", &config_path, error)
                }
            })?,
            Err(rustix::io::Errno::NOENT) => {
                return Err(RepoError::NotARepo {
                    path: path.to_path_buf(),
                    reason: "it has no config file".to_owned(),
                })
            }
            Err(error) => return Err(RepoError::io("open", &config_path, error)),
        };
        let config = RepoConfig::parse(&text).map_err(|error| match error {
            ConfigError::Invalid(reason) => RepoError::Config {
                path: config_path.clone(),
                reason: reason.into(),
            },
            ConfigError::Name(error) => RepoError::Config {
                path: config_path.clone(),
                reason: Box::new(error),
            },
            ConfigError::Unsupported(reason) => RepoError::Unsupported {
                path: path.to_path_buf(),
                reason,
            },
        })?;
        let objects =
            open_beneath(&dir, "objects", OFlags::RDONLY | OFlags::DIRECTORY).map_err(|error| {
                match error {
                    rustix::io::Errno::NOENT => RepoError::NotARepo {
                        path: path.to_path_buf(),
                        reason: "it has no objects directory".to_owned(),
                    },
                    other => RepoError::io("open", path.join("objects"), other),
                }
            })?;
        Ok(Self {
            path: path.to_path_buf(),
            dir,
            objects,
            config,
            tmp: OnceLock::new(),
            lock: Arc::new(lock::LockState::new(path.join(".lock"))),
        })
    }

    /// Creates a repository that `ostree` accepts as its own, as `ostree init` does, and
    /// opens it. Fails if `path` already holds a repository.
    pub fn init(
        path: &Path,
        mode: RepoMode,
        collection_id: Option<&str>,
    ) -> Result<Self, RepoError> {
        if let Some(id) = collection_id {
            validate_collection_id(id)?;
        }
        std::fs::create_dir_all(path).map_err(|e| RepoError::io("create", path, e))?;
        if path.join("config").exists() {
            return Err(RepoError::Unsupported {
                path: path.to_path_buf(),
                reason: "initialisation: it already holds a repository".to_owned(),
            });
        }
        for dir in [
            "objects",
            "tmp",
            "tmp/cache",
            "extensions",
            "state",
            "refs",
            "refs/heads",
            "refs/mirrors",
            "refs/remotes",
        ] {
            let dir_path = path.join(dir);
            match std::fs::create_dir(&dir_path) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
                Err(error) => return Err(RepoError::io("create", dir_path, error)),
            }
        }
        // The config goes last: a half-made directory is not taken for a repository.
        let text = RepoConfig::new_text(mode, collection_id);
        let tmp_path = path.join("config.tmp");
        std::fs::write(&tmp_path, text).map_err(|e| RepoError::io("write", &tmp_path, e))?;
        std::fs::rename(&tmp_path, path.join("config"))
            .map_err(|e| RepoError::io("create", path.join("config"), e))?;
        Self::open(path)
    }

    /// The path the repository was opened at.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The repository's mode, from its config.
    pub fn mode(&self) -> RepoMode {
        self.config.mode
    }

    /// `[core] collection-id`, the collection of the refs under `refs/heads`.
    pub fn collection_id(&self) -> Option<&str> {
        self.config.collection_id.as_deref()
    }

    /// The parsed config, as it was when the repository was opened.
    pub fn config(&self) -> &RepoConfig {
        &self.config
    }

    /// A configured remote.
    pub fn remote(&self, name: &str) -> Option<RemoteConfig> {
        self.config.remote(name)
    }

    /// `objects/XX/YYYY.ext`, relative to the repository.
    pub fn object_relative_path(&self, object: ObjectId) -> String {
        let hex = object.checksum.to_hex();
        format!(
            "objects/{}/{}.{}",
            &hex[..2],
            &hex[2..],
            object.kind.extension(self.config.mode)
        )
    }

    /// The absolute path of an object's file.
    pub fn object_path(&self, object: ObjectId) -> PathBuf {
        self.path.join(self.object_relative_path(object))
    }

    /// `XX/YYYY.ext`, relative to `objects/`.
    fn object_name(&self, object: ObjectId) -> String {
        let hex = object.checksum.to_hex();
        format!(
            "{}/{}.{}",
            &hex[..2],
            &hex[2..],
            object.kind.extension(self.config.mode)
        )
    }

    fn commitpartial_name(commit: &Checksum) -> String {
        format!("state/{commit}.commitpartial")
    }

    /// True when `state/<commit>.commitpartial` exists: the commit is present but not all of
    /// the objects it references may be.
    pub fn is_partial(&self, commit: &Checksum) -> Result<bool, RepoError> {
        let name = Self::commitpartial_name(commit);
        match rustix::fs::statat(
            &self.dir,
            name.as_str(),
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        ) {
            Ok(_) => Ok(true),
            Err(rustix::io::Errno::NOENT) => Ok(false),
            Err(error) => Err(RepoError::io("check", self.path.join(name), error)),
        }
    }

    /// Creates `state/<commit>.commitpartial`, as a pull does before fetching a commit's
    /// objects.
    pub fn mark_partial(&self, commit: &Checksum) -> Result<(), RepoError> {
        self.ensure_dir("state")?;
        let name = Self::commitpartial_name(commit);
        // No symlink followed, not even one inside the repository: root writes drives' too.
        match open_no_symlinks(
            &self.dir,
            &name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOCTTY,
            Mode::from_raw_mode(0o644),
        ) {
            Ok(_) | Err(rustix::io::Errno::EXIST) => Ok(()),
            Err(error) => Err(RepoError::io("create", self.path.join(name), error)),
        }
    }

    /// Removes `state/<commit>.commitpartial` once the commit's closure is complete.
    pub fn clear_partial(&self, commit: &Checksum) -> Result<(), RepoError> {
        let name = Self::commitpartial_name(commit);
        // Removed from `state/` opened beneath the repository, never through a symlink.
        let state = match open_no_symlinks(
            &self.dir,
            "state",
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => return Ok(()),
            Err(error) => return Err(RepoError::io("open", self.path.join("state"), error)),
        };
        let file_name = name.rsplit('/').next().unwrap_or(&name);
        match rustix::fs::unlinkat(&state, file_name, rustix::fs::AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(error) => Err(RepoError::io("remove", self.path.join(name), error)),
        }
    }

    /// Makes everything written so far durable, as libostree does before it writes refs:
    /// `syncfs` on the repository's filesystem, unless `[core] fsync=false`. Call it after the
    /// objects of a pull are written and before any ref points at them.
    pub fn sync(&self) -> Result<(), RepoError> {
        if !self.config.fsync {
            return Ok(());
        }
        rustix::fs::syncfs(&self.objects).map_err(|e| RepoError::io("sync", &self.path, e))?;
        rustix::fs::fsync(&self.objects)
            .map_err(|e| RepoError::io("sync", self.path.join("objects"), e))
    }

    /// The device ID (`st_dev`) of the repository's filesystem; `None` when it cannot be read.
    pub fn filesystem(&self) -> Option<u64> {
        rustix::fs::fstat(&self.objects)
            .ok()
            .map(|stat| stat.st_dev)
    }

    /// Free space on the repository's filesystem and what the config reserves.
    pub fn free_space(&self) -> Result<FreeSpace, RepoError> {
        let stat = rustix::fs::fstatvfs(&self.dir)
            .map_err(|e| RepoError::io("measure free space of", &self.path, e))?;
        // As libostree does: root may also use the blocks the filesystem keeps for root.
        let free_blocks = if rustix::process::getuid().is_root() {
            stat.f_bfree
        } else {
            stat.f_bavail
        };
        let available = free_blocks.saturating_mul(stat.f_frsize);
        let block_size = stat.f_bsize.max(1);
        let total = stat.f_blocks.saturating_mul(stat.f_frsize);
        let reserved = match self.config.min_free_space {
            MinFreeSpace::Megabytes(megabytes) => megabytes.saturating_mul(1 << 20),
            MinFreeSpace::Percent(percent) => total / 100 * u64::from(percent),
        };
        Ok(FreeSpace {
            available,
            reserved,
            block_size,
        })
    }

    /// Refuses when writing `needed` more bytes would eat into the space the repository's
    /// `min-free-space-percent`/`-size` keeps free.
    pub fn check_free_space(&self, needed: u64) -> Result<(), RepoError> {
        let space = self.free_space()?;
        if needed > space.usable() {
            return Err(RepoError::NoSpace {
                path: self.path.clone(),
                needed,
                usable: space.usable(),
                reserved: space.reserved,
            });
        }
        Ok(())
    }

    /// Creates `relative` (one or more components, `/`-separated) under the repository when
    /// missing.
    /// Each directory is made in the one before it, opened beneath the repository: a
    /// symlink on the way cannot lead the new directory out of it.
    fn ensure_dir(&self, relative: &str) -> Result<(), RepoError> {
        let mut prefix = String::new();
        let mut parent: Option<OwnedFd> = None;
        for component in relative.split('/') {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(component);
            let made = match &parent {
                Some(fd) => rustix::fs::mkdirat(fd, component, Mode::from_raw_mode(0o777)),
                None => rustix::fs::mkdirat(&self.dir, component, Mode::from_raw_mode(0o777)),
            };
            match made {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(error) => return Err(RepoError::io("create", self.path.join(&prefix), error)),
            }
            let opened = open_beneath(&self.dir, &prefix, OFlags::PATH | OFlags::DIRECTORY)
                .map_err(|e| RepoError::io("open", self.path.join(&prefix), e))?;
            parent = Some(opened);
        }
        Ok(())
    }

    /// `tmp/`, created and opened on first use.
    fn tmp_dir(&self) -> Result<BorrowedFd<'_>, RepoError> {
        if let Some(fd) = self.tmp.get() {
            return Ok(fd.as_fd());
        }
        self.ensure_dir("tmp")?;
        let fd = open_beneath(&self.dir, "tmp", OFlags::RDONLY | OFlags::DIRECTORY)
            .map_err(|e| RepoError::io("open", self.path.join("tmp"), e))?;
        // Another thread may have won the race; either descriptor is fine.
        let _ = self.tmp.set(fd);
        self.tmp
            .get()
            .map(AsFd::as_fd)
            .ok_or_else(|| RepoError::io("open", self.path.join("tmp"), io::ErrorKind::Other))
    }
}

/// Free space on a repository's filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FreeSpace {
    /// Bytes this process may still write: the free blocks for root, else those left to
    /// unprivileged users.
    pub available: u64,
    /// Bytes the repository's config asks to keep free.
    pub reserved: u64,
    /// The filesystem's block size, in which libostree counts what objects take.
    pub block_size: u64,
}

impl FreeSpace {
    /// Bytes that may be written without going below the reserve.
    pub fn usable(&self) -> u64 {
        self.available.saturating_sub(self.reserved)
    }
}

/// `openat2` beneath `dir`, retrying the spurious `EAGAIN` the kernel returns when a rename
/// races with the lookup.
fn open_beneath(dir: impl AsFd, path: &str, flags: OFlags) -> rustix::io::Result<OwnedFd> {
    open_beneath_mode(dir, path, flags, Mode::empty())
}

fn open_beneath_mode(
    dir: impl AsFd,
    path: &str,
    flags: OFlags,
    mode: Mode,
) -> rustix::io::Result<OwnedFd> {
    open_beneath_resolving(dir, path, flags, mode, BENEATH)
}

/// `openat2` beneath `dir` following no symlink at all, for what root writes or reads in
/// directories whose entries came from elsewhere (a pulled tree): a symlink anywhere in
/// `path` fails with `ELOOP` instead of leading out.
pub(crate) fn open_no_symlinks(
    dir: impl AsFd,
    path: &str,
    flags: OFlags,
    mode: Mode,
) -> rustix::io::Result<OwnedFd> {
    open_beneath_resolving(
        dir,
        path,
        flags | OFlags::NOFOLLOW,
        mode,
        BENEATH.union(ResolveFlags::NO_SYMLINKS),
    )
}

/// `openat2` beneath `dir` with the given resolve flags, retrying the spurious `EAGAIN`.
pub(crate) fn open_beneath_resolving(
    dir: impl AsFd,
    path: &str,
    flags: OFlags,
    mode: Mode,
    resolve: ResolveFlags,
) -> rustix::io::Result<OwnedFd> {
    let mut attempts = 0;
    loop {
        match rustix::fs::openat2(dir.as_fd(), path, flags | OFlags::CLOEXEC, mode, resolve) {
            Err(rustix::io::Errno::AGAIN) if attempts < 1000 => attempts += 1,
            other => return other,
        }
    }
}

/// Reads a small file whole, refusing more than `max` bytes or bytes that are not UTF-8
/// (both as `InvalidData`).
fn read_bounded_text(fd: OwnedFd, max: u64) -> io::Result<String> {
    let bytes = read_bounded(fd, max)?;
    String::from_utf8(bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "the file is not UTF-8 text"))
}

fn read_bounded(fd: OwnedFd, max: u64) -> io::Result<Vec<u8>> {
    let file = std::fs::File::from(fd);
    // Sized once from the file, so reading does not double the buffer past the limit.
    let expected = file.metadata().map_or(0, |m| m.len());
    if expected > max {
        return Err(too_large(max));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(expected).unwrap_or(0));
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(too_large(max));
    }
    Ok(bytes)
}

fn too_large(max: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("the file is larger than the {max} bytes allowed, a size real objects never reach"),
    )
}
