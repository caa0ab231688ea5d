//! The bare modes, which store content as plain files (libostree's
//! `commit_loose_regfile_object`):
//! - bare: the file with its real uid, gid, mode and xattrs; symlinks as symlinks.
//! - bare-user: the file with mode `(mode & 0775) | 0400` and a `user.ostreemeta` xattr;
//!   a symlink is a 0644 regular file holding its target and a NUL.
//! - bare-user-only: the file with its mode; symlinks as symlinks. Content this mode cannot
//!   represent (xattrs, an owner other than root, setuid/setgid/sticky or world-writable
//!   bits) is refused, since `ostree fsck` would report it corrupt.
//!
//! Regular files get mtime 0, as libostree gives them: in a staging directory before the
//! rename (libostree never expires files there), in `tmp/` after it (since `ostree` deletes
//! files in `tmp/` that look older than a day).

use std::fs::File;
use std::io::{self, Read, Write};

use rustix::fs::{AtFlags, Timespec, Timestamps, XattrFlags};

use super::{copy_exact, CopyError, Place, TempEntry, WriteOutcome};
use crate::object::{ContentHasher, FileHeader, ObjectId};
use crate::repo::{Repo, RepoError, RepoMode};

impl Repo {
    /// Writes a content object's file in a bare mode into `file`: the content, hashed on the
    /// way, or in bare-user a symlink's target and a NUL.
    pub(super) fn write_bare_body<W: Write>(
        &self,
        mut file: W,
        header: &FileHeader,
        content: &mut impl Read,
        hasher: &mut ContentHasher,
    ) -> Result<W, CopyError> {
        if self.mode() == RepoMode::BareUser && header.is_symlink() {
            copy_exact(content, 0, |_| Ok(()))?;
            let mut stored = header.symlink_target.as_bytes().to_vec();
            stored.push(0);
            file.write_all(&stored).map_err(CopyError::Sink)?;
        } else {
            copy_exact(content, header.size, |chunk| {
                hasher.update(chunk);
                file.write_all(chunk)
            })?;
        }
        Ok(file)
    }

    /// Refuses content that the repository's mode cannot store faithfully.
    pub(super) fn check_representable(
        &self,
        object: ObjectId,
        header: &FileHeader,
    ) -> Result<(), RepoError> {
        if self.mode() != RepoMode::BareUserOnly {
            return Ok(());
        }
        let reason = if !header.xattrs.is_empty() {
            let names: Vec<String> = header
                .xattrs
                .iter()
                .map(|x| String::from_utf8_lossy(&x.name).into_owned())
                .collect();
            format!("it has extended attributes ({})", names.join(", "))
        } else if header.uid != 0 || header.gid != 0 {
            format!(
                "it is owned by {}:{}, and only root-owned content can be stored",
                header.uid, header.gid
            )
        } else if header.is_regular() && header.permissions() & !0o775 != 0 {
            format!(
                "its mode 0{:o} has bits outside 0775 (setuid, setgid, sticky or \
                 world-writable)",
                header.permissions()
            )
        } else {
            return Ok(());
        };
        Err(RepoError::Unrepresentable {
            repo: self.path.clone(),
            object,
            mode: self.mode(),
            reason: format!("{reason}; use a bare-user or archive repository for such content"),
            source: None,
        })
    }

    /// Gives a stored regular file in a bare mode the mtime 0 libostree gives them
    /// (`OSTREE_TIMESTAMP`). Done after the rename: `ostree` deletes files in `tmp/` that look
    /// older than a day.
    pub(super) fn finish_bare_file(&self, file: &File, object: ObjectId) -> Result<(), RepoError> {
        if self.mode() == RepoMode::Archive {
            return Ok(());
        }
        rustix::fs::futimens(
            file,
            &Timestamps {
                last_access: Timespec {
                    tv_sec: 0,
                    tv_nsec: rustix::fs::UTIME_OMIT,
                },
                last_modification: Timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                },
            },
        )
        .map_err(|e| RepoError::io("set the time of", self.object_path(object), e))
    }

    /// Stores a symlink object in a bare or bare-user-only repository.
    pub(super) fn store_symlink(
        &self,
        place: Place<'_>,
        object: ObjectId,
        header: &FileHeader,
    ) -> Result<WriteOutcome, RepoError> {
        let (tmp, tmp_path, name) = self.temp_slot(place)?;
        rustix::fs::symlinkat(header.symlink_target.as_str(), tmp, name.as_str())
            .map_err(|e| RepoError::io("create a symlink in", tmp_path, e))?;
        let temp = TempEntry {
            dir: tmp,
            name,
            armed: true,
        };
        if self.mode() == RepoMode::Bare {
            let apply = || -> io::Result<()> {
                rustix::fs::chownat(
                    tmp,
                    temp.name.as_str(),
                    Some(rustix::fs::Uid::from_raw(header.uid)),
                    Some(rustix::fs::Gid::from_raw(header.gid)),
                    AtFlags::SYMLINK_NOFOLLOW,
                )?;
                let path = std::path::PathBuf::from(format!(
                    "/proc/self/fd/{}/{}",
                    std::os::fd::AsRawFd::as_raw_fd(&tmp),
                    temp.name
                ));
                for xattr in &header.xattrs {
                    let xattr_name = std::ffi::CString::new(xattr.name.as_slice())
                        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
                    rustix::fs::lsetxattr(
                        &path,
                        xattr_name.as_c_str(),
                        &xattr.value,
                        XattrFlags::empty(),
                    )?;
                }
                Ok(())
            };
            apply().map_err(|e| self.metadata_error(object, e))?;
        }
        self.place_entry(place, temp, object, None, 0)?;
        Ok(WriteOutcome::Written)
    }
}
