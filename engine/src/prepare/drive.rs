//! Writing into a drive's repository in a way FAT32 and exFAT (kernel or FUSE) accept: no
//! symlinks, no xattrs, no hard links, no mode changes. Every file is written in `tmp/` and
//! renamed into place; `RENAME_NOREPLACE` is tried first and plain `renameat` used where the
//! filesystem does not support flags.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags};
use rustix::io::Errno;

use crate::object::ObjectId;
use crate::repo::RepoMode;

use super::PrepareError;

/// Names of this writer's temporary files in `tmp/`.
const TEMP_PREFIX: &str = "ferry-prepare-";

/// The UTF-8 names in a directory, `.` and `..` left out.
fn list_dir(dir: &OwnedFd, path: &Path) -> Result<Vec<String>, PrepareError> {
    let mut entries = rustix::fs::Dir::read_from(dir)
        .map_err(|e| PrepareError::io("list", path.to_path_buf(), e.into()))?;
    let mut names = Vec::new();
    while let Some(entry) = entries.read() {
        let entry = entry.map_err(|e| PrepareError::io("list", path.to_path_buf(), e.into()))?;
        let Ok(name) = entry.file_name().to_str() else {
            continue;
        };
        if name != "." && name != ".." {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

/// The entries of `top`'s subdirectories whose names `keep` accepts, as (`SUBDIR`, `NAME`),
/// read without following symlinks; a subdirectory that is a link or gone is skipped.
fn entries_of(
    top: &OwnedFd,
    top_path: &Path,
    keep: impl Fn(&str) -> bool,
) -> Result<Vec<(String, String)>, PrepareError> {
    let mut found = Vec::new();
    for prefix in list_dir(top, top_path)?.into_iter().filter(|p| keep(p)) {
        let dir = match open_dir_at(top, &prefix) {
            Ok(dir) => dir,
            Err(Errno::NOTDIR | Errno::LOOP | Errno::NOENT) => continue,
            Err(error) => {
                return Err(PrepareError::io(
                    "open",
                    top_path.join(&prefix),
                    error.into(),
                ))
            }
        };
        for name in list_dir(&dir, &top_path.join(&prefix))? {
            found.push((prefix.clone(), name));
        }
    }
    Ok(found)
}

/// The open directories of a drive's archive repository, for writing.
pub(super) struct DriveWriter {
    path: PathBuf,
    dir: OwnedFd,
    objects: OwnedFd,
    tmp: OwnedFd,
    /// `objects/XX` directories known to exist, to spare a `mkdir` per object (a round trip
    /// on FUSE).
    made_prefixes: [AtomicBool; 256],
}

/// A file in `tmp/`, removed on drop unless it was renamed into place.
struct TempFile<'w> {
    writer: &'w DriveWriter,
    name: String,
    armed: bool,
}

impl Drop for TempFile<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = rustix::fs::unlinkat(&self.writer.tmp, self.name.as_str(), AtFlags::empty());
        }
    }
}

fn open_dir(parent: &OwnedFd, name: &str, path: &Path) -> Result<OwnedFd, PrepareError> {
    rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    )
    .map_err(|e| PrepareError::io("open", path.join(name), e.into()))
}

fn open_dir_at(parent: &OwnedFd, name: &str) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    )
}

fn make_dir(parent: &OwnedFd, name: &str, path: &Path) -> Result<(), PrepareError> {
    match rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o755)) {
        Ok(()) | Err(Errno::EXIST) => Ok(()),
        Err(error) => Err(PrepareError::io("create", path.join(name), error.into())),
    }
}

impl DriveWriter {
    /// Opens the repository at `path`, which [`crate::repo::Repo::init`] or another tool made.
    pub(super) fn open(path: &Path) -> Result<Self, PrepareError> {
        let dir = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| PrepareError::io("open", path.to_path_buf(), e.into()))?;
        make_dir(&dir, "objects", path)?;
        make_dir(&dir, "tmp", path)?;
        let objects = open_dir(&dir, "objects", path)?;
        let tmp = open_dir(&dir, "tmp", path)?;
        Ok(Self {
            path: path.to_path_buf(),
            dir,
            objects,
            tmp,
            made_prefixes: std::array::from_fn(|_| AtomicBool::new(false)),
        })
    }

    fn temp_file(&self) -> Result<(File, TempFile<'_>), PrepareError> {
        let name = format!("{TEMP_PREFIX}{:016x}", rand::random::<u64>());
        let fd = rustix::fs::openat(
            &self.tmp,
            name.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::from_raw_mode(0o644),
        )
        .map_err(|e| PrepareError::io("create a file in", self.path.join("tmp"), e.into()))?;
        Ok((
            File::from(fd),
            TempFile {
                writer: self,
                name,
                armed: true,
            },
        ))
    }

    /// Writes an object with `fill` (which returns the bytes it wrote) into `tmp/`, then
    /// renames it to its place. Returns the bytes written, or None when the object appeared
    /// meanwhile (nothing is replaced).
    pub(super) fn write_object(
        &self,
        object: ObjectId,
        fill: impl FnOnce(&mut File) -> Result<u64, PrepareError>,
    ) -> Result<Option<u64>, PrepareError> {
        let hex = object.checksum.to_hex();
        let name = format!(
            "{}/{}.{}",
            &hex[..2],
            &hex[2..],
            object.kind.extension(RepoMode::Archive)
        );
        let path = self.path.join("objects").join(&name);
        let (mut file, mut temp) = self.temp_file()?;
        let size = fill(&mut file)?;
        drop(file);
        let made = &self.made_prefixes[usize::from(object.checksum.as_bytes()[0])];
        if !made.load(Ordering::Relaxed) {
            make_dir(&self.objects, &hex[..2], &self.path.join("objects"))?;
            made.store(true, Ordering::Relaxed);
        }
        let placed = rename_no_replace(&self.tmp, &temp.name, &self.objects, &name)
            .map_err(|e| PrepareError::io("store", path, e))?;
        if placed {
            temp.armed = false;
            Ok(Some(size))
        } else {
            Ok(None)
        }
    }

    /// Writes `bytes` to `relative` (a `/`-separated path under the repository, parents
    /// created), replacing what is there.
    pub(super) fn write_file(&self, relative: &str, bytes: &[u8]) -> Result<(), PrepareError> {
        let path = self.path.join(relative);
        let (parent_path, file_name) = relative.rsplit_once('/').unwrap_or(("", relative));
        let (mut file, mut temp) = self.temp_file()?;
        file.write_all(bytes)
            .map_err(|e| PrepareError::io("write", path.clone(), e))?;
        drop(file);
        let mut parent = self.reopen_dir()?;
        let mut walked = self.path.clone();
        for component in parent_path.split('/').filter(|c| !c.is_empty()) {
            make_dir(&parent, component, &walked)?;
            parent = open_dir(&parent, component, &walked)?;
            walked.push(component);
        }
        rename_replacing(&self.tmp, &temp.name, &parent, file_name)
            .map_err(|e| PrepareError::io("write", path, e))?;
        temp.armed = false;
        Ok(())
    }

    /// Removes `relative` when it exists.
    pub(super) fn remove_file(&self, relative: &str) -> Result<(), PrepareError> {
        match rustix::fs::unlinkat(&self.dir, relative, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(error) => Err(PrepareError::io(
                "remove",
                self.path.join(relative),
                error.into(),
            )),
        }
    }

    /// Every object file as (`XX`, `YYYY.ext`), read from `objects/` without following
    /// symlinks.
    pub(super) fn object_files(&self) -> Result<Vec<(String, String)>, PrepareError> {
        entries_of(&self.objects, &self.path.join("objects"), |prefix| {
            prefix.len() == 2 && prefix.bytes().all(|b| b.is_ascii_hexdigit())
        })
    }

    /// Removes `objects/PREFIX/NAME`.
    pub(super) fn remove_object(&self, prefix: &str, name: &str) -> Result<(), PrepareError> {
        let path = self.path.join("objects").join(prefix);
        let dir = open_dir(&self.objects, prefix, &self.path.join("objects"))?;
        match rustix::fs::unlinkat(&dir, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(error) => Err(PrepareError::io("remove", path.join(name), error.into())),
        }
    }

    /// The entries of the two-character directories under `top` (`deltas`, `delta-indexes`)
    /// as (`XX`, `NAME`), read without following symlinks; none when `top` does not exist.
    pub(super) fn entries_under(&self, top: &str) -> Result<Vec<(String, String)>, PrepareError> {
        let top_path = self.path.join(top);
        match open_dir_at(&self.dir, top) {
            Ok(top_dir) => entries_of(&top_dir, &top_path, |_| true),
            Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => Ok(Vec::new()),
            Err(error) => Err(PrepareError::io("open", top_path, error.into())),
        }
    }

    /// Removes `top/PREFIX/NAME`, a file or a directory of files (a delta's superblock and
    /// parts), then `top/PREFIX` when that leaves it empty. A directory holding more than
    /// files is emptied of its files and left.
    pub(super) fn remove_under(
        &self,
        top: &str,
        prefix: &str,
        name: &str,
    ) -> Result<(), PrepareError> {
        let prefix_path = self.path.join(top).join(prefix);
        // One component at a time, none followed if it is a link: this may run as root on
        // a drive whose directories can change under it.
        let top_dir = open_dir(&self.dir, top, &self.path)?;
        let prefix_dir = open_dir(&top_dir, prefix, &self.path.join(top))?;
        let path = prefix_path.join(name);
        let removed = match rustix::fs::unlinkat(&prefix_dir, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(Errno::ISDIR | Errno::PERM) => {
                let dir = open_dir(&prefix_dir, name, &prefix_path)?;
                for file in list_dir(&dir, &path)? {
                    match rustix::fs::unlinkat(&dir, file.as_str(), AtFlags::empty()) {
                        Ok(()) | Err(Errno::NOENT | Errno::ISDIR | Errno::PERM) => {}
                        Err(error) => {
                            return Err(PrepareError::io("remove", path.join(file), error.into()))
                        }
                    }
                }
                rustix::fs::unlinkat(&prefix_dir, name, AtFlags::REMOVEDIR)
            }
            Err(error) => Err(error),
        };
        match removed {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(Errno::NOTEMPTY | Errno::EXIST) => {
                tracing::warn!(path = %path.display(), "left in place: it holds directories");
            }
            Err(error) => return Err(PrepareError::io("remove", path, error.into())),
        }
        drop(prefix_dir);
        match rustix::fs::unlinkat(&top_dir, prefix, AtFlags::REMOVEDIR) {
            Ok(()) | Err(Errno::NOENT | Errno::NOTEMPTY | Errno::EXIST) => Ok(()),
            Err(error) => Err(PrepareError::io("remove", prefix_path, error.into())),
        }
    }

    /// Removes temporary files an interrupted run of this writer left in `tmp/`.
    pub(super) fn remove_stale_temporaries(&self) -> Result<(), PrepareError> {
        for name in list_dir(&self.tmp, &self.path.join("tmp"))? {
            if name.starts_with(TEMP_PREFIX) {
                match rustix::fs::unlinkat(&self.tmp, name.as_str(), AtFlags::empty()) {
                    Ok(()) | Err(Errno::NOENT | Errno::ISDIR) => {}
                    Err(error) => {
                        return Err(PrepareError::io(
                            "remove",
                            self.path.join("tmp").join(name),
                            error.into(),
                        ))
                    }
                }
            }
        }
        Ok(())
    }

    fn reopen_dir(&self) -> Result<OwnedFd, PrepareError> {
        rustix::fs::openat(
            &self.dir,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| PrepareError::io("open", self.path.clone(), e.into()))
    }

    /// Makes everything written durable: `syncfs`, then the repository directory itself.
    pub(super) fn sync(&self) -> Result<(), PrepareError> {
        rustix::fs::syncfs(&self.dir)
            .map_err(|e| PrepareError::io("sync", self.path.clone(), e.into()))?;
        // Some FUSE filesystems do not implement fsync on directories; syncfs covered them.
        match rustix::fs::fsync(&self.objects) {
            Ok(()) | Err(Errno::NOSYS | Errno::INVAL | Errno::NOTSUP | Errno::PERM) => Ok(()),
            Err(error) => Err(PrepareError::io(
                "sync",
                self.path.join("objects"),
                error.into(),
            )),
        }
    }
}

/// Whether a failed rename with flags means the flags are unsupported (kernel or FUSE
/// filesystem), not that the rename itself failed.
fn flags_unsupported(error: Errno) -> bool {
    matches!(
        error,
        Errno::INVAL | Errno::NOSYS | Errno::PERM | Errno::NOTSUP
    )
}

/// Renames unless `to` exists. Returns false (and leaves `from`) when it does.
fn rename_no_replace(
    from_dir: &OwnedFd,
    from: &str,
    to_dir: &OwnedFd,
    to: &str,
) -> io::Result<bool> {
    match rustix::fs::renameat_with(from_dir, from, to_dir, to, RenameFlags::NOREPLACE) {
        Ok(()) => return Ok(true),
        Err(Errno::EXIST) => return Ok(false),
        Err(error) if flags_unsupported(error) => {}
        Err(error) => return Err(error.into()),
    }
    match rustix::fs::statat(to_dir, to, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(_) => return Ok(false),
        Err(Errno::NOENT) => {}
        Err(error) => return Err(error.into()),
    }
    rustix::fs::renameat(from_dir, from, to_dir, to)?;
    Ok(true)
}

/// Renames over `to`. Filesystems that refuse to replace a file on rename get `to` removed
/// first; the moment between leaves the name absent, never half-written.
fn rename_replacing(from_dir: &OwnedFd, from: &str, to_dir: &OwnedFd, to: &str) -> io::Result<()> {
    match rustix::fs::renameat(from_dir, from, to_dir, to) {
        Ok(()) => Ok(()),
        Err(Errno::EXIST | Errno::PERM | Errno::ACCESS | Errno::NOTSUP) => {
            match rustix::fs::unlinkat(to_dir, to, AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(error) => return Err(error.into()),
            }
            rustix::fs::renameat(from_dir, from, to_dir, to)?;
            Ok(())
        }
        Err(error) => Err(error.into()),
    }
}
