//! Opening paths below a drive's root without ever leaving it.
//!
//! Anyone can write the drive, so any name on it may be a symlink to `/etc/shadow` or to
//! another filesystem. Everything the hook opens on a drive goes through `openat2` with
//! `RESOLVE_BENEATH | RESOLVE_NO_XDEV | RESOLVE_NO_MAGICLINKS` from a descriptor of the
//! drive's root: the kernel refuses any resolution that climbs above the root, crosses onto
//! another mount, or follows a `/proc` magic link.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{openat2, Mode, OFlags, ResolveFlags, CWD};

/// Why a path on a drive was refused.
#[derive(Debug, thiserror::Error)]
pub enum BeneathError {
    #[error("{path} is not below the drive root {root}")]
    Outside { root: PathBuf, path: PathBuf },
    #[error("{path} leaves the drive {root} (a symlink out of it, or another filesystem)")]
    Escapes { root: PathBuf, path: PathBuf },
    #[error("cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

const BENEATH: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_XDEV)
    .union(ResolveFlags::NO_MAGICLINKS);

/// A drive's root, opened once; paths are resolved relative to it.
#[derive(Debug)]
pub struct DriveRoot {
    path: PathBuf,
    fd: OwnedFd,
}

impl DriveRoot {
    /// Opens the root directory itself. Following symlinks here is fine: the root is where
    /// the system mounted the drive, not a name on it.
    pub fn open(path: &Path) -> Result<Self, BeneathError> {
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| BeneathError::Open {
            path: path.to_path_buf(),
            source: e.into(),
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            fd,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens `path` (absolute below the root, or relative to it) as an `O_PATH` descriptor,
    /// resolving every component inside the drive.
    pub fn open_path(&self, path: &Path) -> Result<OwnedFd, BeneathError> {
        let relative = self.relative(path)?;
        let target = if relative.as_os_str().is_empty() {
            Path::new(".")
        } else {
            relative.as_path()
        };
        openat2(
            self.fd.as_fd(),
            target,
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            BENEATH,
        )
        .map_err(|errno| match errno {
            rustix::io::Errno::XDEV | rustix::io::Errno::LOOP | rustix::io::Errno::PERM => {
                BeneathError::Escapes {
                    root: self.path.clone(),
                    path: path.to_path_buf(),
                }
            }
            other => BeneathError::Open {
                path: path.to_path_buf(),
                source: other.into(),
            },
        })
    }

    /// The path of `path` with every symlink resolved, checked to stay on the drive. A link
    /// made to this path keeps pointing at the same place even if a symlink on the drive is
    /// swapped later.
    pub fn resolve(&self, path: &Path) -> Result<PathBuf, BeneathError> {
        let fd = self.open_path(path)?;
        let resolved = proc_path(&fd).map_err(|source| BeneathError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let canonical_root = proc_path(&self.fd).map_err(|source| BeneathError::Open {
            path: self.path.clone(),
            source,
        })?;
        if !resolved.starts_with(&canonical_root) {
            return Err(BeneathError::Escapes {
                root: self.path.clone(),
                path: path.to_path_buf(),
            });
        }
        // Report it below the root as given, which is how people and records name the drive.
        let inner = resolved
            .strip_prefix(&canonical_root)
            .unwrap_or(Path::new(""));
        Ok(self.path.join(inner))
    }

    /// `path` relative to the root, refusing `..` and paths elsewhere.
    fn relative(&self, path: &Path) -> Result<PathBuf, BeneathError> {
        let relative = if path.is_absolute() {
            path.strip_prefix(&self.path)
                .map_err(|_| BeneathError::Outside {
                    root: self.path.clone(),
                    path: path.to_path_buf(),
                })?
                .to_path_buf()
        } else {
            path.to_path_buf()
        };
        if relative
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(BeneathError::Outside {
                root: self.path.clone(),
                path: path.to_path_buf(),
            });
        }
        Ok(relative)
    }
}

/// The kernel's name for what a descriptor refers to.
fn proc_path(fd: &OwnedFd) -> std::io::Result<PathBuf> {
    use std::os::fd::AsRawFd;
    let link = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let target = rustix::fs::readlinkat(CWD, link.as_str(), Vec::new())?;
    Ok(PathBuf::from(
        <std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(target.into_bytes()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn follows_links_inside_and_refuses_links_out() {
        let dir = tempfile::tempdir().expect("temp dir");
        let drive = dir.path().join("drive");
        std::fs::create_dir_all(drive.join(".ostree/repo")).expect("create a directory");
        std::fs::create_dir_all(drive.join(".ostree/repos.d")).expect("create a directory");
        std::fs::create_dir_all(dir.path().join("outside")).expect("create a directory");
        symlink("../repo", drive.join(".ostree/repos.d/00-inside")).expect("create a symlink");
        symlink("../../../outside", drive.join(".ostree/repos.d/01-up")).expect("create a symlink");
        symlink("/etc", drive.join(".ostree/repos.d/02-absolute")).expect("create a symlink");
        symlink("/proc/self/root", drive.join(".ostree/repos.d/03-magic"))
            .expect("create a symlink");

        let root = DriveRoot::open(&drive).expect("open the drive");
        let inside = root
            .resolve(&drive.join(".ostree/repos.d/00-inside"))
            .expect("resolve the link inside the drive");
        assert_eq!(inside, drive.join(".ostree/repo"));
        for name in ["01-up", "02-absolute", "03-magic"] {
            let error = root
                .resolve(&drive.join(".ostree/repos.d").join(name))
                .expect_err(name);
            assert!(
                matches!(error, BeneathError::Escapes { .. }),
                "{name}: {error}"
            );
        }
        assert!(matches!(
            root.open_path(Path::new("/etc")),
            Err(BeneathError::Outside { .. })
        ));
        assert!(matches!(
            root.open_path(Path::new("a/../../x")),
            Err(BeneathError::Outside { .. })
        ));
        assert!(matches!(
            root.open_path(Path::new("missing")),
            Err(BeneathError::Open { .. })
        ));
    }
}
