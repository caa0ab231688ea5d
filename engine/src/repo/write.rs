//! Writing objects. Every object is streamed into a file under `tmp/`, hashed on the way,
//! compared with its expected checksum, given its final mode, ownership and xattrs, and only
//! then renamed into `objects/XX/`. A mismatch removes the temporary file and writes nothing.
//!
//! Content is stored as each mode requires (libostree's `commit_loose_regfile_object` and
//! `write_content_object`):
//! - archive: length-prefixed `(tuuuusa(ayay))` header, then raw deflate; mode 0644.
//! - bare: the file with its real uid, gid, mode and xattrs; symlinks as symlinks.
//! - bare-user: the file with mode `(mode & 0775) | 0400` and a `user.ostreemeta` xattr;
//!   a symlink is a 0644 regular file holding its target and a NUL.
//! - bare-user-only: the file with its mode; symlinks as symlinks. Content this mode cannot
//!   represent (xattrs, an owner other than root, setuid/setgid/sticky or world-writable
//!   bits) is refused, since `ostree fsck` would report it corrupt.
//!
//! Regular files in the bare modes get mtime 0, as libostree gives them (after the rename,
//! since `ostree` deletes files in `tmp/` that look older than a day).

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use flate2::bufread::DeflateDecoder;
use flate2::write::DeflateEncoder;
use flate2::Compression;
use rustix::fs::{AtFlags, Mode, OFlags, Timespec, Timestamps, XattrFlags};

use super::read::{read_archive_header, ArchiveHeaderError};
use super::{open_beneath_mode, Repo, RepoError, RepoMode};
use crate::object::{
    metadata_checksum, Checksum, Commit, ContentHasher, DirMeta, DirTree, FileHeader, Metadata,
    ObjectId, ObjectKind, MAX_METADATA_SIZE,
};

/// Compression level for archive objects when the config sets none: fast. ostree reads any
/// level; its own default is 6.
const DEFAULT_ZLIB_LEVEL: u32 = 1;
/// Largest read or write chunk when streaming content.
const CHUNK: usize = 128 * 1024;

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    Written,
    /// The object was already in the repository; nothing was read or written.
    AlreadyPresent,
}

/// A file or symlink under `tmp/`, removed on drop unless renamed into place.
struct TempEntry<'a> {
    dir: BorrowedFd<'a>,
    name: String,
    armed: bool,
}

impl Drop for TempEntry<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = rustix::fs::unlinkat(self.dir, self.name.as_str(), AtFlags::empty());
        }
    }
}

fn temp_name() -> String {
    format!("ferry-{:016x}", rand::random::<u64>())
}

/// A failure while copying content: from the source, or writing the destination.
enum CopyError {
    Source(String),
    Sink(io::Error),
}

/// Copies exactly `size` bytes of `content` into `sink`, then checks that nothing follows.
fn copy_exact(
    content: &mut impl Read,
    size: u64,
    mut sink: impl FnMut(&[u8]) -> io::Result<()>,
) -> Result<(), CopyError> {
    let capacity = usize::try_from(size).unwrap_or(CHUNK).clamp(1, CHUNK);
    let mut buffer = vec![0u8; capacity];
    let mut remaining = size;
    while remaining > 0 {
        let want = usize::try_from(remaining).unwrap_or(capacity).min(capacity);
        let read = match content.read(&mut buffer[..want]) {
            Ok(0) => {
                return Err(CopyError::Source(format!(
                    "the content ended after {} of {size} bytes",
                    size - remaining
                )))
            }
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(CopyError::Source(error.to_string())),
        };
        sink(&buffer[..read]).map_err(CopyError::Sink)?;
        remaining -= read as u64;
    }
    let mut probe = [0u8; 1];
    loop {
        match content.read(&mut probe) {
            Ok(0) => return Ok(()),
            Ok(_) => {
                return Err(CopyError::Source(format!(
                    "the content is longer than the {size} bytes its header says"
                )))
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(CopyError::Source(error.to_string())),
        }
    }
}

impl Repo {
    fn create_temp_file(&self) -> Result<(File, TempEntry<'_>), RepoError> {
        let tmp = self.tmp_dir()?;
        let name = temp_name();
        let fd: OwnedFd = open_beneath_mode(
            tmp,
            &name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOCTTY,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| RepoError::io("create a file in", self.path.join("tmp"), e))?;
        Ok((
            File::from(fd),
            TempEntry {
                dir: tmp,
                name,
                armed: true,
            },
        ))
    }

    /// Renames a finished temporary entry to the object's path.
    fn commit_temp(&self, mut temp: TempEntry<'_>, object: ObjectId) -> Result<(), RepoError> {
        let name = self.object_name(object);
        let prefix = &name[..2];
        match rustix::fs::mkdirat(&self.objects, prefix, Mode::from_raw_mode(0o777)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(error) => {
                return Err(RepoError::io(
                    "create",
                    self.path.join("objects").join(prefix),
                    error,
                ))
            }
        }
        rustix::fs::renameat(temp.dir, temp.name.as_str(), &self.objects, name.as_str())
            .map_err(|e| RepoError::io("store", self.object_path(object), e))?;
        temp.armed = false;
        Ok(())
    }

    fn refuse_write_mismatch(&self, object: ObjectId, actual: Checksum) -> RepoError {
        RepoError::ChecksumMismatch {
            object,
            actual,
            source_name: "the source".to_owned(),
        }
    }

    /// Stores a metadata object (dirtree, dirmeta or commit) after checking that `bytes`
    /// hash to `expected` and parse as a valid object of `kind`.
    pub fn write_metadata(
        &self,
        kind: ObjectKind,
        expected: &Checksum,
        bytes: &[u8],
    ) -> Result<WriteOutcome, RepoError> {
        let object = ObjectId::new(*expected, kind);
        if matches!(kind, ObjectKind::File | ObjectKind::CommitMeta) {
            return Err(RepoError::ModeMismatch {
                mode: self.mode(),
                reason: format!(
                    "{object} is not a checksummed metadata object; use write_content or \
                     write_commitmeta"
                ),
            });
        }
        if bytes.len() as u64 > MAX_METADATA_SIZE {
            return Err(RepoError::Format {
                object,
                source: crate::object::FormatError::TooLarge {
                    what: "metadata object",
                    size: bytes.len() as u64,
                    max: MAX_METADATA_SIZE,
                },
            });
        }
        let actual = metadata_checksum(bytes);
        if actual != *expected {
            return Err(self.refuse_write_mismatch(object, actual));
        }
        let parsed = match kind {
            ObjectKind::DirTree => DirTree::parse(bytes).map(|_| ()),
            ObjectKind::DirMeta => DirMeta::parse(bytes).map(|_| ()),
            _ => Commit::parse(bytes).map(|_| ()),
        };
        parsed.map_err(|source| RepoError::Format { object, source })?;
        if self.has_object(object)? {
            return Ok(WriteOutcome::AlreadyPresent);
        }
        self.write_small_object(object, bytes)?;
        Ok(WriteOutcome::Written)
    }

    /// Stores a commit's detached metadata (signatures), replacing any there is. The bytes
    /// must parse as an `a{sv}`.
    pub fn write_commitmeta(&self, commit: &Checksum, bytes: &[u8]) -> Result<(), RepoError> {
        let object = ObjectId::new(*commit, ObjectKind::CommitMeta);
        Metadata::parse(bytes).map_err(|source| RepoError::Format { object, source })?;
        self.write_small_object(object, bytes)
    }

    fn write_small_object(&self, object: ObjectId, bytes: &[u8]) -> Result<(), RepoError> {
        let (mut file, temp) = self.create_temp_file()?;
        let path = self.object_path(object);
        file.write_all(bytes)
            .map_err(|e| RepoError::io("write", &path, e))?;
        rustix::fs::fchmod(&file, Mode::from_raw_mode(0o644))
            .map_err(|e| RepoError::io("set the mode of", &path, e))?;
        drop(file);
        self.commit_temp(temp, object)
    }

    /// Refuses content that the repository's mode cannot store faithfully.
    fn check_representable(&self, object: ObjectId, header: &FileHeader) -> Result<(), RepoError> {
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
        })
    }

    /// Stores a content object read from `content`, which must hold exactly `header.size`
    /// bytes (nothing for a symlink). The content is hashed while it is written; if it does
    /// not hash to `expected` the object is not stored and the error names both checksums.
    /// Returns at once when the object is already present.
    pub fn write_content(
        &self,
        expected: &Checksum,
        header: &FileHeader,
        mut content: impl Read,
    ) -> Result<WriteOutcome, RepoError> {
        let object = ObjectId::new(*expected, ObjectKind::File);
        header
            .validate()
            .map_err(|source| RepoError::Format { object, source })?;
        if self.has_object(object)? {
            return Ok(WriteOutcome::AlreadyPresent);
        }
        self.check_representable(object, header)?;
        let mut hasher =
            ContentHasher::new(header).map_err(|source| RepoError::Format { object, source })?;
        let path = self.object_path(object);
        let write_error = |error: io::Error| RepoError::io("write", &path, error);
        let read_error = |reason: String| RepoError::ReadContent {
            object,
            source_name: "the source".to_owned(),
            reason,
        };
        let copy_error = |error: CopyError| match error {
            CopyError::Source(reason) => read_error(reason),
            CopyError::Sink(error) => write_error(error),
        };

        let symlink_in_place =
            header.is_symlink() && matches!(self.mode(), RepoMode::Bare | RepoMode::BareUserOnly);
        if symlink_in_place {
            copy_exact(&mut content, 0, |_| Ok(())).map_err(copy_error)?;
            let actual = hasher.finish();
            if actual != *expected {
                return Err(self.refuse_write_mismatch(object, actual));
            }
            return self.store_symlink(object, header);
        }

        let (file, temp) = self.create_temp_file()?;
        let file = match self.mode() {
            RepoMode::Archive => {
                let mut out = BufWriter::with_capacity(CHUNK, file);
                let header_bytes = header
                    .archive_header_bytes()
                    .map_err(|source| RepoError::Format { object, source })?;
                out.write_all(&header_bytes).map_err(write_error)?;
                if header.is_regular() {
                    let level = self.config.zlib_level.unwrap_or(DEFAULT_ZLIB_LEVEL);
                    let mut encoder = DeflateEncoder::new(out, Compression::new(level));
                    copy_exact(&mut content, header.size, |chunk| {
                        hasher.update(chunk);
                        encoder.write_all(chunk)
                    })
                    .map_err(copy_error)?;
                    out = encoder.finish().map_err(write_error)?;
                } else {
                    copy_exact(&mut content, 0, |_| Ok(())).map_err(copy_error)?;
                }
                out.into_inner().map_err(|e| write_error(e.into_error()))?
            }
            RepoMode::BareUser if header.is_symlink() => {
                copy_exact(&mut content, 0, |_| Ok(())).map_err(copy_error)?;
                let mut file = file;
                let mut stored = header.symlink_target.as_bytes().to_vec();
                stored.push(0);
                file.write_all(&stored).map_err(write_error)?;
                file
            }
            _ => {
                let mut file = file;
                copy_exact(&mut content, header.size, |chunk| {
                    hasher.update(chunk);
                    file.write_all(chunk)
                })
                .map_err(copy_error)?;
                file
            }
        };
        let actual = hasher.finish();
        if actual != *expected {
            // `temp` is dropped here, removing the file.
            return Err(self.refuse_write_mismatch(object, actual));
        }
        self.apply_file_metadata(&file, header)
            .map_err(|e| self.metadata_error(object, e))?;
        self.commit_temp(temp, object)?;
        self.finish_bare_file(&file, object)?;
        Ok(WriteOutcome::Written)
    }

    fn metadata_error(&self, object: ObjectId, error: io::Error) -> RepoError {
        if error.kind() == io::ErrorKind::PermissionDenied && self.mode() == RepoMode::Bare {
            return RepoError::Unrepresentable {
                repo: self.path.clone(),
                object,
                mode: self.mode(),
                reason: format!(
                    "{error}; bare repositories keep real ownership and can only be written \
                     as root"
                ),
            };
        }
        RepoError::io("set the metadata of", self.object_path(object), error)
    }

    /// Gives a finished temporary regular file its final mode, ownership and xattrs.
    fn apply_file_metadata(&self, file: &File, header: &FileHeader) -> io::Result<()> {
        let fd = file.as_fd();
        match self.mode() {
            RepoMode::Archive => {
                rustix::fs::fchmod(fd, Mode::from_raw_mode(0o644))?;
            }
            RepoMode::Bare => {
                rustix::fs::fchown(
                    fd,
                    Some(rustix::fs::Uid::from_raw(header.uid)),
                    Some(rustix::fs::Gid::from_raw(header.gid)),
                )?;
                // After chown, which clears setuid and setgid bits.
                rustix::fs::fchmod(fd, Mode::from_raw_mode(header.permissions()))?;
                for xattr in &header.xattrs {
                    let name = std::ffi::CString::new(xattr.name.as_slice())
                        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
                    rustix::fs::fsetxattr(fd, name.as_c_str(), &xattr.value, XattrFlags::empty())?;
                }
            }
            RepoMode::BareUser => {
                let meta = header
                    .ostreemeta_bytes()
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
                rustix::fs::fsetxattr(fd, c"user.ostreemeta", &meta, XattrFlags::empty())?;
                let mode = if header.is_regular() {
                    (header.permissions() & 0o775) | 0o400
                } else {
                    0o644
                };
                rustix::fs::fchmod(fd, Mode::from_raw_mode(mode))?;
            }
            RepoMode::BareUserOnly => {
                rustix::fs::fchmod(fd, Mode::from_raw_mode(header.permissions()))?;
            }
        }
        Ok(())
    }

    /// Gives a stored regular file in a bare mode the mtime 0 libostree gives them
    /// (`OSTREE_TIMESTAMP`). Done after the rename: `ostree` deletes files in `tmp/` that look
    /// older than a day.
    fn finish_bare_file(&self, file: &File, object: ObjectId) -> Result<(), RepoError> {
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
    fn store_symlink(
        &self,
        object: ObjectId,
        header: &FileHeader,
    ) -> Result<WriteOutcome, RepoError> {
        let tmp = self.tmp_dir()?;
        let name = temp_name();
        rustix::fs::symlinkat(header.symlink_target.as_str(), tmp, name.as_str())
            .map_err(|e| RepoError::io("create a symlink in", self.path.join("tmp"), e))?;
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
        self.commit_temp(temp, object)?;
        Ok(WriteOutcome::Written)
    }

    /// Stores an archive `.filez` as it comes (from another archive repository's
    /// [`Repo::open_archived_content`]), without recompressing it. The header is parsed and
    /// the content inflated and hashed on the way; a mismatch, data after the compressed
    /// stream, or a size other than the header's, stores nothing.
    pub fn write_archived_content(
        &self,
        expected: &Checksum,
        filez: impl Read,
    ) -> Result<WriteOutcome, RepoError> {
        let object = ObjectId::new(*expected, ObjectKind::File);
        if self.mode() != RepoMode::Archive {
            return Err(RepoError::ModeMismatch {
                mode: self.mode(),
                reason: "compressed objects can only be copied into archive repositories"
                    .to_owned(),
            });
        }
        if self.has_object(object)? {
            return Ok(WriteOutcome::AlreadyPresent);
        }
        let path = self.object_path(object);
        let read_error = |reason: String| RepoError::ReadContent {
            object,
            source_name: "the source".to_owned(),
            reason,
        };
        let (file, temp) = self.create_temp_file()?;
        let mut tee = BufReader::with_capacity(
            CHUNK,
            Tee {
                inner: filez,
                out: BufWriter::with_capacity(CHUNK, file),
                error: None,
            },
        );
        let header = read_archive_header(&mut tee).map_err(|error| match error {
            ArchiveHeaderError::Io(error) => read_error(error.to_string()),
            ArchiveHeaderError::Format(source) => RepoError::Format { object, source },
        })?;
        let mut hasher =
            ContentHasher::new(&header).map_err(|source| RepoError::Format { object, source })?;
        let mut tee = if header.is_regular() {
            let mut decoder = DeflateDecoder::new(tee);
            copy_exact(&mut decoder, header.size, |chunk| {
                hasher.update(chunk);
                Ok(())
            })
            .map_err(|error| match error {
                CopyError::Source(reason) => read_error(reason),
                CopyError::Sink(error) => RepoError::io("write", &path, error),
            })?;
            decoder.into_inner()
        } else {
            tee
        };
        let trailing = tee.fill_buf().map_err(|e| read_error(e.to_string()))?.len();
        if trailing > 0 {
            return Err(read_error("data follows the compressed content".to_owned()));
        }
        let Tee { out, error, .. } = tee.into_inner();
        if let Some(error) = error {
            return Err(RepoError::io("write", &path, error));
        }
        let file = out
            .into_inner()
            .map_err(|e| RepoError::io("write", &path, e.into_error()))?;
        let actual = hasher.finish();
        if actual != *expected {
            return Err(self.refuse_write_mismatch(object, actual));
        }
        self.apply_file_metadata(&file, &header)
            .map_err(|e| self.metadata_error(object, e))?;
        drop(file);
        self.commit_temp(temp, object)?;
        Ok(WriteOutcome::Written)
    }
}

/// Passes bytes read from `inner` through, writing a copy of each to `out`.
struct Tee<R, W> {
    inner: R,
    out: W,
    /// The first write error; reported after reading, so read errors stay distinct.
    error: Option<io::Error>,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
        if self.error.is_none() {
            if let Err(error) = self.out.write_all(&buf[..read]) {
                self.error = Some(error);
            }
        }
        Ok(read)
    }
}
