//! The repository lock, taken exactly as libostree takes it (`ostree-repo.c`,
//! `push_repo_lock`/`pop_repo_lock`): an open file description lock (`F_OFD_SETLK`) over the
//! whole of `<repo>/.lock`, falling back to `flock` where OFD locks are unavailable. Shared
//! for writing objects, exclusive for deleting them; so Ferry, `ostree` and `flatpak` can work
//! on one repository at once.
//!
//! Within one [`Repo`] the lock is counted like libostree's: taking shared while exclusive is
//! held keeps it exclusive, and releasing the last exclusive returns to shared.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustix::fs::{Mode, OFlags};

use super::{open_beneath_mode, LockTimeout, Repo, RepoError};
use crate::cancel::CancelToken;

/// Which lock to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    /// Taken while writing objects (pulls, commits): many holders at once.
    Shared,
    /// Taken while deleting objects (prune): no other holder.
    Exclusive,
}

impl LockKind {
    fn name(self) -> &'static str {
        match self {
            Self::Shared => "shared",
            Self::Exclusive => "exclusive",
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    fd: Option<OwnedFd>,
    shared: u32,
    exclusive: u32,
}

impl Counters {
    fn state(&self) -> Option<LockKind> {
        if self.exclusive > 0 {
            Some(LockKind::Exclusive)
        } else if self.shared > 0 {
            Some(LockKind::Shared)
        } else {
            None
        }
    }
}

/// Per-repository lock bookkeeping, shared by every guard.
#[derive(Debug)]
pub(crate) struct LockState {
    path: PathBuf,
    counters: Mutex<Counters>,
}

impl LockState {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self {
            path,
            counters: Mutex::new(Counters::default()),
        }
    }

    fn counters(&self) -> MutexGuard<'_, Counters> {
        match self.counters.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

/// A held repository lock; released (or returned to shared) when dropped. `'static`, so it
/// may be moved into worker threads.
#[derive(Debug)]
#[must_use = "the lock is released when the guard is dropped"]
pub struct RepoLock {
    state: Option<Arc<LockState>>,
    kind: LockKind,
}

impl RepoLock {
    /// Shared or exclusive.
    pub fn kind(&self) -> LockKind {
        self.kind
    }
}

impl Drop for RepoLock {
    fn drop(&mut self) {
        let Some(state) = self.state.take() else {
            return;
        };
        let mut counters = state.counters();
        match self.kind {
            LockKind::Shared => counters.shared = counters.shared.saturating_sub(1),
            LockKind::Exclusive => counters.exclusive = counters.exclusive.saturating_sub(1),
        }
        let Some(fd) = counters.fd.as_ref() else {
            return;
        };
        let result = match counters.state() {
            None => set_lock(fd.as_fd(), None),
            // Dropping the last exclusive returns to shared; that never has to wait.
            Some(LockKind::Shared) if self.kind == LockKind::Exclusive => {
                set_lock(fd.as_fd(), Some(LockKind::Shared))
            }
            Some(_) => Ok(()),
        };
        if let Err(error) = result {
            tracing::warn!(
                "cannot release the lock of {}: {error}",
                state.path.display()
            );
        }
    }
}

impl Repo {
    /// Takes the repository lock, waiting as the config says (`lock-timeout-secs`, default
    /// 300 s; `-1` waits forever; `locking=false` takes no lock). `cancel` stops the wait.
    /// A read-only repository is not locked, as in libostree.
    pub fn lock(
        &self,
        kind: LockKind,
        cancel: Option<&CancelToken>,
    ) -> Result<RepoLock, RepoError> {
        let deadline = match self.config.lock_timeout {
            LockTimeout::Disabled => {
                return Ok(RepoLock { state: None, kind });
            }
            LockTimeout::Blocking => None,
            LockTimeout::Seconds(seconds) => Some((Instant::now(), seconds)),
        };
        let mut pause = Duration::from_millis(5);
        loop {
            if cancel.is_some_and(CancelToken::is_cancelled) {
                return Err(RepoError::Cancelled);
            }
            match self.try_push_lock(kind)? {
                Some(lock) => return Ok(lock),
                None => {
                    if let Some((start, seconds)) = deadline {
                        if start.elapsed() >= Duration::from_secs(seconds) {
                            return Err(RepoError::LockTimeout {
                                path: self.lock.path.clone(),
                                kind: kind.name(),
                                seconds,
                            });
                        }
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(250));
                }
            }
        }
    }

    /// Takes the lock if it is free now; None when another process holds a conflicting one.
    pub fn try_lock(&self, kind: LockKind) -> Result<Option<RepoLock>, RepoError> {
        if self.config.lock_timeout == LockTimeout::Disabled {
            return Ok(Some(RepoLock { state: None, kind }));
        }
        self.try_push_lock(kind)
    }

    fn try_push_lock(&self, kind: LockKind) -> Result<Option<RepoLock>, RepoError> {
        let mut counters = self.lock.counters();
        if counters.fd.is_none() {
            match open_beneath_mode(
                &self.dir,
                ".lock",
                OFlags::RDWR | OFlags::CREATE | OFlags::NOCTTY,
                Mode::from_raw_mode(0o660),
            ) {
                Ok(fd) => counters.fd = Some(fd),
                Err(rustix::io::Errno::ROFS) => return Ok(Some(RepoLock { state: None, kind })),
                Err(error) => return Err(RepoError::io("open", &self.lock.path, error)),
            }
        }
        let Some(fd) = counters.fd.as_ref() else {
            return Err(RepoError::io(
                "open",
                &self.lock.path,
                io::ErrorKind::NotFound,
            ));
        };
        let current = counters.state();
        let needs_change = !(current == Some(LockKind::Exclusive) || current == Some(kind));
        if needs_change {
            match set_lock(fd.as_fd(), Some(kind)) {
                Ok(()) => {}
                Err(error) if held_elsewhere(&error) => return Ok(None),
                Err(error) => return Err(RepoError::io("lock", &self.lock.path, error)),
            }
        }
        match kind {
            LockKind::Shared => counters.shared += 1,
            LockKind::Exclusive => counters.exclusive += 1,
        }
        Ok(Some(RepoLock {
            state: Some(Arc::clone(&self.lock)),
            kind,
        }))
    }
}

/// Sets (or with None, releases) the OFD lock over the whole file without waiting, like
/// libostree's `do_repo_lock` with `LOCK_NB`: `fcntl(F_OFD_SETLK)`, or `flock` when the
/// kernel lacks OFD locks. Waiting is done by [`Repo::lock`], so it can be cancelled.
// F_OFD_SETLK (open file description locks) has no safe wrapper in rustix.
#[allow(unsafe_code)]
fn set_lock(fd: BorrowedFd<'_>, kind: Option<LockKind>) -> io::Result<()> {
    let lock_type = match kind {
        Some(LockKind::Shared) => libc::F_RDLCK,
        Some(LockKind::Exclusive) => libc::F_WRLCK,
        None => libc::F_UNLCK,
    };
    let request = libc::flock {
        l_type: lock_type as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    // SAFETY: `fd` is a valid open descriptor for the call's duration and `request` is a
    // fully initialised `struct flock` that outlives it.
    let result = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_SETLK, &request) };
    if result == 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    if error.raw_os_error() != Some(libc::EINVAL) {
        return Err(error);
    }
    use rustix::fs::FlockOperation;
    let operation = match kind {
        Some(LockKind::Shared) => FlockOperation::NonBlockingLockShared,
        Some(LockKind::Exclusive) => FlockOperation::NonBlockingLockExclusive,
        None => FlockOperation::Unlock,
    };
    rustix::fs::flock(fd, operation).map_err(io::Error::from)
}

/// An exclusive lock on a lock file beside a staging directory under `tmp/`
/// (`<dir>-lock`), taken as libostree's `_ostree_repo_try_lock_tmpdir` takes it: an OFD lock
/// (or `flock`), without waiting. While it is held, neither libostree nor Ferry reuses or
/// deletes the directory. Dropping it removes the lock file and releases the lock.
#[derive(Debug)]
pub(crate) struct StagingLock {
    dir: OwnedFd,
    name: String,
    fd: Option<OwnedFd>,
}

impl StagingLock {
    /// Locks `<tmp>/<name>`; None when another process holds it.
    pub(crate) fn try_lock(tmp: BorrowedFd<'_>, name: &str) -> io::Result<Option<Self>> {
        let dir = rustix::fs::openat(
            tmp,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        loop {
            let fd = rustix::fs::openat(
                &dir,
                name,
                OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY,
                Mode::from_raw_mode(0o600),
            )?;
            match set_lock(fd.as_fd(), Some(LockKind::Exclusive)) {
                Ok(()) => {}
                Err(error) if held_elsewhere(&error) => return Ok(None),
                Err(error) => return Err(error),
            }
            // The previous holder may have removed the file while we opened it; such a lock
            // protects nothing, so take it again on a fresh file (as libglnx does).
            if rustix::fs::fstat(&fd)?.st_nlink > 0 {
                return Ok(Some(Self {
                    dir,
                    name: name.to_owned(),
                    fd: Some(fd),
                }));
            }
        }
    }
}

impl Drop for StagingLock {
    fn drop(&mut self) {
        // Removed while still held, so nobody locks a file that is about to disappear.
        let _ = rustix::fs::unlinkat(&self.dir, self.name.as_str(), rustix::fs::AtFlags::empty());
        if let Some(fd) = self.fd.take() {
            let _ = set_lock(fd.as_fd(), None);
        }
    }
}

/// Whether a non-blocking lock failed only because another holder has it.
fn held_elsewhere(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EAGAIN) | Some(libc::EACCES)
    )
}
