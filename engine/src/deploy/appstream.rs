//! Deploying a remote's AppStream branch the way Flatpak deploys it after its own pull, so
//! software centres show what a drive brought without a network.
//!
//! Flatpak has no `--no-pull` for AppStream (`flatpak update --appstream` always fetches
//! from the remote's URL first), so Ferry does what Flatpak's own deploy step does: check
//! the commit of `refs/remotes/<remote>/appstream2/<arch>` out in user mode into
//! `appstream/<remote>/<arch>/<commit>` (through a temporary directory), point the `active`
//! symlink at it with an atomic rename, touch `.timestamp`, drop the previous checkout, and
//! touch `appstream/` so readers re-scan.
//!
//! This runs as root for system installations, on a tree that came from a drive or a peer.
//! So nothing below the installation directory is reached through a symlink: directories
//! and files are opened beneath it with `openat2(RESOLVE_NO_SYMLINKS)`, files are written
//! as new temporary files renamed into place, and what the checkout and the compressed
//! catalogue take is checked against the repository's free-space reserve first.

use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;

use flate2::write::GzEncoder;
use flate2::Compression;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};

use super::{appstream_dir, path_option, run, DeployError};
use crate::object::{Checksum, DirTree, ObjectKind};
use crate::repo::{open_no_symlinks, Repo, RepoError};
use crate::target::FlatpakInstallation;

/// Files of an AppStream tree counted before a checkout, at most; a larger tree is refused.
const MAX_TREE_FILES: usize = 1_000_000;

/// Why an installation's AppStream data could not be updated.
#[derive(Debug, thiserror::Error)]
pub enum AppstreamError {
    /// A file of the AppStream data could not be written.
    #[error("cannot update the AppStream data in {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The write error.
        #[source]
        error: std::io::Error,
    },

    /// A path on the way is a symlink or an unsafe name, so nothing is written there.
    #[error("refusing to update the AppStream data in {}: {reason}", path.display())]
    Refused {
        /// The path refused.
        path: PathBuf,
        /// Why it was refused.
        reason: String,
    },

    /// The AppStream commit could not be read.
    #[error("cannot update the AppStream data")]
    Repo(#[from] RepoError),

    /// The AppStream commit could not be checked out.
    #[error("cannot check out the AppStream data")]
    Checkout(#[from] DeployError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AppstreamError + '_ {
    move |error| AppstreamError::Io {
        path: path.to_owned(),
        error,
    }
}

fn errno(path: &Path) -> impl FnOnce(rustix::io::Errno) -> AppstreamError + '_ {
    move |error| match error {
        rustix::io::Errno::LOOP | rustix::io::Errno::XDEV => AppstreamError::Refused {
            path: path.to_owned(),
            reason: "it is a symlink, or leads through one".to_owned(),
        },
        // What `O_DIRECTORY | O_NOFOLLOW` reports for a symlink.
        rustix::io::Errno::NOTDIR => AppstreamError::Refused {
            path: path.to_owned(),
            reason: "it is a symlink or not a directory".to_owned(),
        },
        other => AppstreamError::Io {
            path: path.to_owned(),
            error: other.into(),
        },
    }
}

/// A directory below the installation, opened without following symlinks.
struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

impl Dir {
    /// `name` inside this directory, created when missing; a symlink there is refused.
    fn ensure(&self, name: &str) -> Result<Dir, AppstreamError> {
        let path = self.path.join(name);
        match rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(error) => return Err(errno(&path)(error)),
        }
        self.open(name)
    }

    fn open(&self, name: &str) -> Result<Dir, AppstreamError> {
        let path = self.path.join(name);
        let fd = open_no_symlinks(
            &self.fd,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .map_err(errno(&path))?;
        Ok(Dir { fd, path })
    }

    /// The type of `name`, not following a symlink; None when it is missing.
    fn kind(&self, name: &str) -> Option<FileType> {
        rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW)
            .ok()
            .map(|stat| FileType::from_raw_mode(stat.st_mode))
    }

    fn rename(&self, from: &str, to: &str) -> Result<(), AppstreamError> {
        rustix::fs::renameat(&self.fd, from, &self.fd, to).map_err(errno(&self.path.join(to)))
    }

    /// Writes `name` as a new file renamed over whatever was there (a symlink is replaced,
    /// never written through). `fill` writes the content.
    fn replace_file(
        &self,
        name: &str,
        fill: impl FnOnce(fs::File) -> io::Result<()>,
    ) -> Result<(), AppstreamError> {
        let temp = format!(".{name}-{}", std::process::id());
        let path = self.path.join(name);
        let _ = rustix::fs::unlinkat(&self.fd, temp.as_str(), AtFlags::empty());
        let fd = open_no_symlinks(
            &self.fd,
            &temp,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL,
            Mode::from_raw_mode(0o644),
        )
        .map_err(errno(&path))?;
        let written = fill(fs::File::from(fd))
            .map_err(io(&path))
            .and_then(|()| self.rename(&temp, name));
        if written.is_err() {
            let _ = rustix::fs::unlinkat(&self.fd, temp.as_str(), AtFlags::empty());
        }
        written
    }
}

/// A remote or architecture name used as one directory name.
fn check_component(name: &str, base: &Path) -> Result<(), AppstreamError> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(AppstreamError::Refused {
            path: base.to_owned(),
            reason: format!("{name:?} is not a usable directory name"),
        });
    }
    Ok(())
}

/// Makes `commit` (already in the installation's repository) the active AppStream data of
/// `remote` for `arch`. Returns false when it already was.
pub fn deploy_appstream(
    installation: &FlatpakInstallation,
    remote: &str,
    arch: &str,
    commit: &Checksum,
) -> Result<bool, AppstreamError> {
    check_component(remote, &installation.path)?;
    check_component(arch, &installation.path)?;
    // The installation directory itself comes from the system's configuration.
    let base = Dir {
        fd: rustix::fs::open(
            &installation.path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno(&installation.path))?,
        path: installation.path.clone(),
    };
    let top = base.ensure("appstream")?;
    let arch_dir = top.ensure(remote)?.ensure(arch)?;
    debug_assert_eq!(arch_dir.path, appstream_dir(installation, remote, arch));
    let name = commit.to_string();
    let previous = rustix::fs::readlinkat(&arch_dir.fd, "active", Vec::new())
        .ok()
        .and_then(|target| target.into_string().ok());
    let present = match arch_dir.kind(&name) {
        Some(FileType::Directory) => true,
        None => false,
        // Not what a checkout leaves (a symlink, say): removed, never followed, and checked
        // out afresh.
        Some(_) => {
            rustix::fs::unlinkat(&arch_dir.fd, name.as_str(), AtFlags::empty())
                .map_err(errno(&arch_dir.path.join(&name)))?;
            false
        }
    };
    if previous.as_deref() == Some(name.as_str()) && present {
        touch_timestamp(&arch_dir)?;
        return Ok(false);
    }

    if !present {
        let repo = Repo::open(&installation.repo())?;
        repo.check_free_space(checkout_size(&repo, commit)?)?;
        // A leftover of an interrupted run is removed (not followed, if a symlink); ostree
        // creates the directory.
        let staged_name = format!(".{name}-{}", std::process::id());
        let staged = arch_dir.path.join(&staged_name);
        match arch_dir.kind(&staged_name) {
            None => {}
            Some(FileType::Directory) => fs::remove_dir_all(&staged).map_err(io(&staged))?,
            Some(_) => fs::remove_file(&staged).map_err(io(&staged))?,
        }
        let mut command = Command::new("ostree");
        command
            .arg("checkout")
            .arg(path_option("--repo", &installation.repo()))
            .args(["--user-mode", "--union"])
            .arg(&name)
            .arg(&staged_name)
            // The child starts in the directory opened above (its descriptor stays open until
            // the child execs), so the checkout lands there whatever a name above it became.
            .current_dir(format!(
                "/proc/self/fd/{}",
                std::os::fd::AsRawFd::as_raw_fd(&arch_dir.fd)
            ));
        run(command, "ostree")?;
        let compressed = arch_dir
            .open(&staged_name)
            .and_then(|checkout| compress_catalog(&checkout, &repo));
        if let Err(error) = compressed {
            let _ = fs::remove_dir_all(&staged);
            return Err(error);
        }
        arch_dir.rename(&staged_name, &name)?;
    }
    let link = format!(".active-{}", std::process::id());
    let _ = rustix::fs::unlinkat(&arch_dir.fd, link.as_str(), AtFlags::empty());
    rustix::fs::symlinkat(name.as_str(), &arch_dir.fd, link.as_str())
        .map_err(errno(&arch_dir.path.join(&link)))?;
    arch_dir.rename(&link, "active")?;
    if let Some(old) = previous.filter(|old| {
        old != &name && check_component(old, &arch_dir.path).is_ok() && !old.starts_with('.')
    }) {
        // Removes a symlink itself, never what it points at.
        if let Err(error) = fs::remove_dir_all(arch_dir.path.join(&old)) {
            tracing::warn!(error = %crate::causes::Causes(&error), old, "cannot remove the previous AppStream checkout");
        }
    }
    touch_timestamp(&arch_dir)?;
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: rustix::fs::UTIME_NOW,
    };
    let touched = rustix::fs::futimens(
        top.fd.as_fd(),
        &Timestamps {
            last_access: now,
            last_modification: now,
        },
    );
    if let Err(error) = touched {
        tracing::debug!(error = %crate::causes::Causes(&error), "cannot touch the AppStream directory");
    }
    Ok(true)
}

fn touch_timestamp(arch_dir: &Dir) -> Result<(), AppstreamError> {
    arch_dir.replace_file(".timestamp", |_| Ok(()))
}

/// What checking `commit` out takes at most: every file's size, in whole blocks plus one.
fn checkout_size(repo: &Repo, commit: &Checksum) -> Result<u64, AppstreamError> {
    let block = repo.free_space()?.block_size;
    let commit = repo.read_commit(commit)?;
    let mut pending = vec![commit.root_tree];
    let (mut files, mut bytes) = (0usize, 0u64);
    while let Some(tree) = pending.pop() {
        let listing =
            DirTree::parse(&repo.read_metadata(ObjectKind::DirTree, &tree)?).map_err(|source| {
                RepoError::Format {
                    object: crate::object::ObjectId::new(tree, ObjectKind::DirTree),
                    source,
                }
            })?;
        for file in &listing.files {
            files += 1;
            if files > MAX_TREE_FILES {
                return Err(AppstreamError::Refused {
                    path: repo.path().to_owned(),
                    reason: format!("the AppStream tree has more than {MAX_TREE_FILES} files"),
                });
            }
            let (header, _) = repo.open_content(&file.checksum)?;
            bytes = bytes.saturating_add((header.size / block + 1).saturating_mul(block));
        }
        pending.extend(listing.dirs.iter().map(|dir| dir.tree));
        bytes = bytes.saturating_add(block);
    }
    Ok(bytes)
}

/// Flatpak also deploys the `appstream2` catalogue gzipped as `appstream.xml.gz`, the name
/// older readers look for. Only a regular `appstream.xml` is read: a symlink in the pulled
/// tree is not followed.
fn compress_catalog(checkout: &Dir, repo: &Repo) -> Result<(), AppstreamError> {
    if checkout.kind("appstream.xml.gz").is_some() {
        return Ok(());
    }
    let plain = checkout.path.join("appstream.xml");
    let fd = match open_no_symlinks(&checkout.fd, "appstream.xml", OFlags::RDONLY, Mode::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(rustix::io::Errno::LOOP) => {
            tracing::warn!(path = %plain.display(), "not compressing a symlinked catalogue");
            return Ok(());
        }
        Err(error) => return Err(errno(&plain)(error)),
    };
    let stat = rustix::fs::fstat(&fd).map_err(errno(&plain))?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
        return Ok(());
    }
    let size = u64::try_from(stat.st_size).unwrap_or(0);
    // gzip never grows data by more than a few bytes per 16 KiB block.
    repo.check_free_space(size + size / 1000 + 4096)?;
    let input = fs::File::from(fd);
    checkout.replace_file("appstream.xml.gz", |output| {
        let mut encoder = GzEncoder::new(output, Compression::default());
        io::copy(&mut input.take(size), &mut encoder)?;
        encoder.finish()?.flush()
    })
}
