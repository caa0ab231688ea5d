//! Writing objects. Every object is streamed into a temporary file, hashed on the way,
//! compared with its expected checksum, and given its final mode, ownership and xattrs. A
//! mismatch removes the temporary file and writes nothing.
//!
//! Where the verified file goes:
//! - [`Repo::write_content`] and its siblings rename it from `tmp/` straight into
//!   `objects/XX/`; durable only after [`Repo::sync`].
//! - A [`Transaction`] (what a pull uses) keeps it in its staging directory
//!   `tmp/staging-<boot-id>-XXXXXX` until a batch is committed: the data is synced
//!   (`syncfs`, unless `[core] fsync=false`), then the batch is renamed into `objects/XX/`
//!   and those directories are fsynced, as libostree's `ostree_repo_commit_transaction` does.
//!   So after a power cut no object under `objects/` has incomplete content, and a ref is
//!   only written once everything it reaches is durable.
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
//! Regular files in the bare modes get mtime 0, as libostree gives them: in a staging
//! directory before the rename (libostree never expires files there), in `tmp/` after it
//! (since `ostree` deletes files in `tmp/` that look older than a day).

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use flate2::bufread::DeflateDecoder;
use flate2::write::DeflateEncoder;
use flate2::Compression;
use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags, Timespec, Timestamps, XattrFlags};

use super::lock::StagingLock;
use super::read::{read_archive_header, ArchiveHeaderError};
use super::{open_beneath, open_beneath_mode, LockKind, Repo, RepoError, RepoLock, RepoMode};
use crate::cancel::CancelToken;
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
    /// The directory temporary files of `place` are made in.
    fn temp_dir<'p>(&'p self, place: Place<'p>) -> Result<(BorrowedFd<'p>, PathBuf), RepoError> {
        match place {
            Place::Direct => Ok((self.tmp_dir()?, self.path.join("tmp"))),
            Place::Staged(transaction) => {
                Ok((transaction.staging.fd.as_fd(), transaction.staging_path()))
            }
        }
    }

    fn create_temp_file<'p>(
        &'p self,
        place: Place<'p>,
    ) -> Result<(File, TempEntry<'p>), RepoError> {
        let (tmp, tmp_path) = self.temp_dir(place)?;
        let name = temp_name();
        let fd: OwnedFd = open_beneath_mode(
            tmp,
            &name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOCTTY,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| RepoError::io("create a file in", tmp_path, e))?;
        Ok((
            File::from(fd),
            TempEntry {
                dir: tmp,
                name,
                armed: true,
            },
        ))
    }

    /// Puts a finished, verified temporary entry where `place` says: renamed into
    /// `objects/` at once, or staged for the transaction's next batch. `file` is the open
    /// regular file, `size` what it holds.
    fn place_entry(
        &self,
        place: Place<'_>,
        temp: TempEntry<'_>,
        object: ObjectId,
        file: Option<&File>,
        size: u64,
    ) -> Result<(), RepoError> {
        match place {
            Place::Direct => {
                self.commit_temp(temp, object)?;
                if let Some(file) = file {
                    self.finish_bare_file(file, object)?;
                }
                Ok(())
            }
            Place::Staged(transaction) => {
                if let Some(file) = file {
                    self.finish_bare_file(file, object)?;
                    if self.config.fsync && self.config.per_object_fsync {
                        rustix::fs::fsync(file).map_err(|e| {
                            RepoError::io("sync", transaction.staging_path().join(&temp.name), e)
                        })?;
                    }
                }
                transaction.stage(temp, object, size)
            }
        }
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
        self.write_metadata_at(Place::Direct, kind, expected, bytes)
    }

    fn write_metadata_at(
        &self,
        place: Place<'_>,
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
        self.write_small_object(place, object, bytes)?;
        Ok(WriteOutcome::Written)
    }

    /// Stores a commit's detached metadata (signatures), replacing any there is. The bytes
    /// must parse as an `a{sv}`.
    pub fn write_commitmeta(&self, commit: &Checksum, bytes: &[u8]) -> Result<(), RepoError> {
        self.write_commitmeta_at(Place::Direct, commit, bytes)
    }

    fn write_commitmeta_at(
        &self,
        place: Place<'_>,
        commit: &Checksum,
        bytes: &[u8],
    ) -> Result<(), RepoError> {
        let object = ObjectId::new(*commit, ObjectKind::CommitMeta);
        Metadata::parse(bytes).map_err(|source| RepoError::Format { object, source })?;
        self.write_small_object(place, object, bytes)
    }

    fn write_small_object(
        &self,
        place: Place<'_>,
        object: ObjectId,
        bytes: &[u8],
    ) -> Result<(), RepoError> {
        let (mut file, temp) = self.create_temp_file(place)?;
        let path = self.object_path(object);
        file.write_all(bytes)
            .map_err(|e| RepoError::io("write", &path, e))?;
        rustix::fs::fchmod(&file, Mode::from_raw_mode(0o644))
            .map_err(|e| RepoError::io("set the mode of", &path, e))?;
        if place.is_staged() && self.config.fsync && self.config.per_object_fsync {
            rustix::fs::fsync(&file).map_err(|e| RepoError::io("sync", &path, e))?;
        }
        drop(file);
        self.place_entry(place, temp, object, None, bytes.len() as u64)
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
        content: impl Read,
    ) -> Result<WriteOutcome, RepoError> {
        self.write_content_at(Place::Direct, expected, header, content)
    }

    fn write_content_at(
        &self,
        place: Place<'_>,
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
            return self.store_symlink(place, object, header);
        }

        // What the object will take, charged before anything is written.
        let declared = if header.is_symlink() {
            header.symlink_target.len() as u64 + 1
        } else {
            header.size
        };
        let charge = SpaceCharge::begin(self, place)?;
        charge.reserve(declared)?;
        let (file, temp) = self.create_temp_file(place)?;
        let file = ChargedFile::new(file, &charge);
        let write_error = |error: io::Error| charge.refusal().unwrap_or_else(|| write_error(error));
        let copy_error = |error: CopyError| match error {
            CopyError::Source(reason) => read_error(reason),
            CopyError::Sink(error) => write_error(error),
        };
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
        let file = file.into_inner();
        let actual = hasher.finish();
        if actual != *expected {
            // `temp` is dropped here, removing the file; dropping `charge` releases its space.
            return Err(self.refuse_write_mismatch(object, actual));
        }
        self.apply_file_metadata(&file, header)
            .map_err(|e| self.metadata_error(object, e))?;
        charge.settle(&file)?;
        self.place_entry(place, temp, object, Some(&file), header.size)?;
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
        place: Place<'_>,
        object: ObjectId,
        header: &FileHeader,
    ) -> Result<WriteOutcome, RepoError> {
        let (tmp, tmp_path) = self.temp_dir(place)?;
        let name = temp_name();
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

    /// Stores an archive `.filez` as it comes (from another archive repository's
    /// [`Repo::open_archived_content`]), without recompressing it. The header is parsed and
    /// the content inflated and hashed on the way; a mismatch, data after the compressed
    /// stream, or a size other than the header's, stores nothing.
    pub fn write_archived_content(
        &self,
        expected: &Checksum,
        filez: impl Read,
    ) -> Result<WriteOutcome, RepoError> {
        self.write_archived_content_at(Place::Direct, expected, filez, None)
    }

    /// `unpacked`, when known (from the commit's `ostree.sizes`), is the size the header
    /// must declare.
    fn write_archived_content_at(
        &self,
        place: Place<'_>,
        expected: &Checksum,
        filez: impl Read,
        unpacked: Option<u64>,
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
        // The header is read (and copied) within the budget's first block and the bound on
        // headers; the content's declared size is then charged before any of it is copied.
        let charge = SpaceCharge::begin(self, place)?;
        let write_error = |error: io::Error| {
            charge
                .refusal()
                .unwrap_or_else(|| RepoError::io("write", &path, error))
        };
        let (file, temp) = self.create_temp_file(place)?;
        let mut tee = BufReader::with_capacity(
            CHUNK,
            Tee {
                inner: Bounded {
                    inner: filez,
                    limit: MAX_HEADER_BYTES + CHUNK as u64,
                    read: 0,
                },
                out: BufWriter::with_capacity(CHUNK, ChargedFile::new(file, &charge)),
                error: None,
            },
        );
        let header = read_archive_header(&mut tee).map_err(|error| match error {
            ArchiveHeaderError::Io(error) => read_error(error.to_string()),
            ArchiveHeaderError::Format(source) => RepoError::Format { object, source },
        })?;
        // A symlink's entry records its target's length, which its header does not carry.
        let recorded = unpacked.filter(|_| header.is_regular());
        if let Some(unpacked) = recorded.filter(|size| *size != header.size) {
            return Err(read_error(format!(
                "its header declares {} bytes, but the signed commit's ostree.sizes records \
                 {unpacked}",
                header.size
            )));
        }
        charge.reserve(header.size)?;
        // No more compressed bytes than deflate can need for the declared size.
        let header_end = tee.get_ref().inner.read - tee.buffer().len() as u64;
        let body_bound = if header.is_regular() {
            deflate_bound(header.size)
        } else {
            0
        };
        tee.get_mut().inner.limit = header_end.saturating_add(body_bound);
        let mut hasher =
            ContentHasher::new(&header).map_err(|source| RepoError::Format { object, source })?;
        let mut tee = if header.is_regular() {
            let mut decoder = DeflateDecoder::new(tee);
            copy_exact(&mut decoder, header.size, |chunk| {
                hasher.update(chunk);
                Ok(())
            })
            .map_err(|error| match error {
                CopyError::Source(reason) => charge.refusal().unwrap_or_else(|| read_error(reason)),
                CopyError::Sink(error) => write_error(error),
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
            return Err(write_error(error));
        }
        let file = out
            .into_inner()
            .map_err(|e| write_error(e.into_error()))?
            .into_inner();
        let actual = hasher.finish();
        if actual != *expected {
            return Err(self.refuse_write_mismatch(object, actual));
        }
        self.apply_file_metadata(&file, &header)
            .map_err(|e| self.metadata_error(object, e))?;
        if place.is_staged() && self.config.fsync && self.config.per_object_fsync {
            rustix::fs::fsync(&file).map_err(|e| RepoError::io("sync", &path, e))?;
        }
        charge.settle(&file)?;
        drop(file);
        self.place_entry(place, temp, object, None, header.size)?;
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

/// Where a write puts a verified object.
#[derive(Clone, Copy)]
enum Place<'t> {
    /// Renamed into `objects/` at once.
    Direct,
    /// Staged in the transaction until its batch is committed.
    Staged(&'t Transaction<'t>),
}

impl Place<'_> {
    fn is_staged(self) -> bool {
        matches!(self, Self::Staged(_))
    }
}

/// What content objects may still take before the repository's reserve is reached, counted
/// as libostree counts it (`txn.max_blocks`): measured when the transaction begins (or, for
/// a write outside a transaction, when it begins), and each content object takes its size
/// in blocks, plus one. An object's declared size is charged before it is written, what it
/// writes beyond that is charged as it is written, and the charge is settled to what the
/// stored file takes. Metadata objects are small and not counted, as in libostree.
struct SpaceBudget {
    remaining: Mutex<u64>,
    block_size: u64,
    reserved: u64,
}

impl SpaceBudget {
    fn measure(repo: &Repo) -> Result<Self, RepoError> {
        let space = repo.free_space()?;
        Ok(Self {
            remaining: Mutex::new(space.usable()),
            block_size: space.block_size,
            reserved: space.reserved,
        })
    }

    fn remaining(&self) -> MutexGuard<'_, u64> {
        match self.remaining.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// What `size` bytes take, in whole blocks plus one, as libostree counts them.
    fn blocks(&self, size: u64) -> u64 {
        (size / self.block_size)
            .saturating_add(1)
            .saturating_mul(self.block_size)
    }
}

/// The budget a write charges: the transaction's, or one measured for this write alone.
enum BudgetRef<'b> {
    Shared(&'b SpaceBudget),
    Own(SpaceBudget),
}

impl std::ops::Deref for BudgetRef<'_> {
    type Target = SpaceBudget;
    fn deref(&self) -> &SpaceBudget {
        match self {
            Self::Shared(budget) => budget,
            Self::Own(budget) => budget,
        }
    }
}

/// What one content object has taken from the budget while it is written. Dropped without
/// [`SpaceCharge::settle`] (a refused object), it gives everything back.
struct SpaceCharge<'b> {
    budget: BudgetRef<'b>,
    path: &'b Path,
    claimed: std::cell::Cell<u64>,
    /// Set when a write went past the budget: the bytes that would have been needed.
    refused: std::cell::Cell<Option<(u64, u64)>>,
}

impl<'b> SpaceCharge<'b> {
    fn begin(repo: &'b Repo, place: Place<'b>) -> Result<Self, RepoError> {
        let budget = match place {
            Place::Staged(transaction) => BudgetRef::Shared(&transaction.budget),
            Place::Direct => BudgetRef::Own(SpaceBudget::measure(repo)?),
        };
        Ok(Self {
            budget,
            path: &repo.path,
            claimed: std::cell::Cell::new(0),
            refused: std::cell::Cell::new(None),
        })
    }

    /// Makes sure `size` bytes are charged, taking more from the budget if needed. Refuses,
    /// taking nothing, when the budget does not hold them.
    fn reserve(&self, size: u64) -> Result<(), RepoError> {
        let wanted = self.budget.blocks(size);
        let claimed = self.claimed.get();
        if wanted <= claimed {
            return Ok(());
        }
        let mut remaining = self.budget.remaining();
        if wanted - claimed > *remaining {
            let usable = *remaining + claimed;
            drop(remaining);
            self.refused.set(Some((size, usable)));
            return Err(self.no_space(size, usable));
        }
        *remaining -= wanted - claimed;
        self.claimed.set(wanted);
        Ok(())
    }

    fn no_space(&self, needed: u64, usable: u64) -> RepoError {
        RepoError::NoSpace {
            path: self.path.to_path_buf(),
            needed,
            usable,
            reserved: self.budget.reserved,
        }
    }

    /// The refusal, when a write failed because the budget was spent.
    fn refusal(&self) -> Option<RepoError> {
        self.refused
            .get()
            .map(|(needed, usable)| self.no_space(needed, usable))
    }

    /// Settles the charge to what the finished `file` takes and keeps it.
    fn settle(self, file: &File) -> Result<(), RepoError> {
        let size = file
            .metadata()
            .map_err(|e| RepoError::io("measure", self.path, e))?
            .len();
        let wanted = self.budget.blocks(size);
        let claimed = self.claimed.get();
        if wanted > claimed {
            self.reserve(size)?;
        } else {
            *self.budget.remaining() += claimed - wanted;
        }
        self.claimed.set(0);
        Ok(())
    }
}

impl Drop for SpaceCharge<'_> {
    fn drop(&mut self) {
        let claimed = self.claimed.get();
        if claimed > 0 {
            *self.budget.remaining() += claimed;
        }
    }
}

/// A temporary file that charges every byte written to it against a [`SpaceCharge`] first,
/// so a write stops at the budget instead of at a full filesystem.
struct ChargedFile<'c, 'b> {
    file: File,
    charge: &'c SpaceCharge<'b>,
    written: u64,
}

impl<'c, 'b> ChargedFile<'c, 'b> {
    fn new(file: File, charge: &'c SpaceCharge<'b>) -> Self {
        Self {
            file,
            charge,
            written: 0,
        }
    }

    fn into_inner(self) -> File {
        self.file
    }
}

impl Write for ChargedFile<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let total = self.written.saturating_add(buf.len() as u64);
        if self.charge.reserve(total).is_err() {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "the repository's free-space reserve would be reached",
            ));
        }
        let written = self.file.write(buf)?;
        self.written += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Reads at most `limit` bytes from `inner`; a byte more is an error.
struct Bounded<R> {
    inner: R,
    limit: u64,
    read: u64,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.limit.saturating_sub(self.read);
        if left == 0 {
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "the object is longer than the {} bytes its header allows",
                        self.limit
                    ),
                )),
            };
        }
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        let read = self.inner.read(&mut buf[..want])?;
        self.read += read as u64;
        Ok(read)
    }
}

/// Longest archive header: its length prefix and the largest variant accepted.
const MAX_HEADER_BYTES: u64 = 8 + crate::object::ARCHIVE_HEADER_MAX_SIZE as u64;

/// The most raw-deflate bytes any compressor needs for `size` bytes: zlib's conservative
/// `deflateBound` (fixed-Huffman codes of 9 bits a byte, plus block overhead), with room to
/// spare for encoders that end with an empty block.
fn deflate_bound(size: u64) -> u64 {
    size.saturating_add(size.div_ceil(8))
        .saturating_add(size.div_ceil(64))
        .saturating_add(5 * size.div_ceil(16383))
        .saturating_add(64)
}

/// A batch is committed once it holds this many objects...
pub const BATCH_OBJECTS: usize = 8192;
/// ...or this many bytes of content, whichever comes first. Bounds what a killed pull loses
/// and how much unsynced data is waiting at once; the list itself stays small.
pub const BATCH_BYTES: u64 = 256 << 20;

/// libostree's prefix for transaction staging directories under `tmp/`
/// (`OSTREE_REPO_TMPDIR_STAGING`).
pub const STAGING_PREFIX: &str = "staging-";

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
    Adopted { discarded: u64 },
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
        let budget = SpaceBudget::measure(repo)?;
        Ok(Self {
            repo,
            staging,
            origin,
            removed_stale,
            batch: Mutex::new(Batch::default()),
            limits: (BATCH_OBJECTS, BATCH_BYTES),
            budget,
            _lock: lock,
        })
    }

    /// Commits a batch once it holds `objects` objects or `bytes` bytes.
    pub fn with_batch_limits(mut self, objects: usize, bytes: u64) -> Self {
        self.limits = (objects.max(1), bytes.max(1));
        self
    }

    pub fn repo(&self) -> &'r Repo {
        self.repo
    }

    /// The staging directory's path.
    pub fn staging_path(&self) -> PathBuf {
        self.repo.path.join("tmp").join(&self.staging.name)
    }

    /// Whether the staging directory was created or adopted.
    pub fn origin(&self) -> StagingOrigin {
        self.origin
    }

    /// Staging directories of other boots removed when the transaction began.
    pub fn removed_stale(&self) -> u64 {
        self.removed_stale
    }

    /// [`Repo::write_metadata`], staged.
    pub fn write_metadata(
        &self,
        kind: ObjectKind,
        expected: &Checksum,
        bytes: &[u8],
    ) -> Result<WriteOutcome, RepoError> {
        self.repo
            .write_metadata_at(Place::Staged(self), kind, expected, bytes)
    }

    /// [`Repo::write_commitmeta`], staged.
    pub fn write_commitmeta(&self, commit: &Checksum, bytes: &[u8]) -> Result<(), RepoError> {
        self.repo
            .write_commitmeta_at(Place::Staged(self), commit, bytes)
    }

    /// [`Repo::write_content`], staged.
    pub fn write_content(
        &self,
        expected: &Checksum,
        header: &FileHeader,
        content: impl Read,
    ) -> Result<WriteOutcome, RepoError> {
        self.repo
            .write_content_at(Place::Staged(self), expected, header, content)
    }

    /// [`Repo::write_archived_content`], staged.
    pub fn write_archived_content(
        &self,
        expected: &Checksum,
        filez: impl Read,
    ) -> Result<WriteOutcome, RepoError> {
        self.repo
            .write_archived_content_at(Place::Staged(self), expected, filez, None)
    }

    /// [`Transaction::write_archived_content`] of an object whose header must declare
    /// `unpacked` bytes (the signed commit's `ostree.sizes` says so); any other size is
    /// refused before the content is read.
    pub fn write_archived_content_sized(
        &self,
        expected: &Checksum,
        filez: impl Read,
        unpacked: u64,
    ) -> Result<WriteOutcome, RepoError> {
        self.repo
            .write_archived_content_at(Place::Staged(self), expected, filez, Some(unpacked))
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

    /// Records a verified entry of the staging directory; commits the batch when full.
    fn stage(&self, mut temp: TempEntry<'_>, object: ObjectId, size: u64) -> Result<(), RepoError> {
        let entry = StagedEntry {
            temp: std::mem::take(&mut temp.name),
            object: self.repo.object_name(object),
            replace: object.kind == ObjectKind::CommitMeta,
        };
        temp.armed = false;
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
        let mut created_dir = false;
        for entry in &batch.entries {
            let prefix = &entry.object[..2];
            let index = usize::from_str_radix(prefix, 16).unwrap_or(0) & 0xff;
            if !prefixes[index] {
                match rustix::fs::mkdirat(&repo.objects, prefix, Mode::from_raw_mode(0o777)) {
                    Ok(()) => created_dir = true,
                    Err(rustix::io::Errno::EXIST) => {}
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
        if fsync {
            for (index, _) in prefixes.iter().enumerate().filter(|(_, used)| **used) {
                let prefix = format!("{index:02x}");
                let path = || repo.path.join("objects").join(&prefix);
                let dir = open_beneath(&repo.objects, &prefix, OFlags::RDONLY | OFlags::DIRECTORY)
                    .map_err(|e| RepoError::io("open", path(), e))?;
                rustix::fs::fsync(&dir).map_err(|e| RepoError::io("sync", path(), e))?;
            }
            if created_dir {
                rustix::fs::fsync(&repo.objects)
                    .map_err(|e| RepoError::io("sync", repo.path.join("objects"), e))?;
            }
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

/// Removes everything inside a directory; returns how many entries there were.
fn empty_dir(dir: &OwnedFd, path: &Path) -> Result<u64, RepoError> {
    let list_error = |e: rustix::io::Errno| RepoError::io("list", path, e);
    let mut count = 0;
    for entry in rustix::fs::Dir::read_from(dir).map_err(list_error)? {
        let entry = entry.map_err(list_error)?;
        let name = entry.file_name();
        if name.to_bytes() == b"." || name.to_bytes() == b".." {
            continue;
        }
        count += 1;
        match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
            Ok(()) => {}
            Err(rustix::io::Errno::ISDIR | rustix::io::Errno::PERM) => {
                let child = path.join(std::ffi::OsStr::from_bytes(name.to_bytes()));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deflate_bound_covers_incompressible_data_at_every_level() {
        let data: Vec<u8> = (0..(1 << 20)).map(|_| rand::random::<u8>()).collect();
        for size in [0, 1, 100, 16383, 16384, 65536, 1 << 20] {
            for level in [0, 1, 6, 9] {
                let mut encoder = DeflateEncoder::new(Vec::new(), Compression::new(level));
                encoder.write_all(&data[..size]).expect("deflate");
                let packed = encoder.finish().expect("deflate").len() as u64;
                assert!(
                    packed <= deflate_bound(size as u64),
                    "{size} bytes at level {level} took {packed}"
                );
            }
        }
    }

    /// An endless source of zeros: what an object whose header lies would stream.
    struct Zeros;

    impl Read for Zeros {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            buf.fill(0);
            Ok(buf.len())
        }
    }

    #[test]
    fn a_direct_write_larger_than_the_free_space_is_refused_before_writing() {
        let dir = tempfile::tempdir().expect("temp dir");
        for mode in [RepoMode::BareUserOnly, RepoMode::Archive] {
            let path = dir.path().join(mode.as_str());
            let repo = Repo::init(&path, mode, None).expect("init");
            let header = FileHeader::regular(0, 0, 0o644, 1 << 60);
            let checksum = Checksum::from_hex(&"ab".repeat(32)).expect("checksum");
            let error = repo
                .write_content(&checksum, &header, Zeros)
                .expect_err("a 1 EiB object was accepted");
            assert!(matches!(error, RepoError::NoSpace { .. }), "{error}");
            let left: Vec<_> = std::fs::read_dir(path.join("tmp"))
                .expect("list tmp")
                .filter_map(Result::ok)
                .filter(|entry| entry.file_name().to_string_lossy().starts_with("ferry-"))
                .collect();
            assert!(left.is_empty(), "temporary files were written: {left:?}");
        }
    }

    #[test]
    fn a_refused_charge_is_given_back_and_a_settled_one_kept() {
        let dir = tempfile::tempdir().expect("temp dir");
        let repo = Repo::init(dir.path(), RepoMode::Archive, None).expect("init");
        let transaction = Transaction::begin(&repo, None).expect("begin");
        let budget = &transaction.budget;
        let start = *budget.remaining();
        {
            let charge = SpaceCharge::begin(&repo, Place::Staged(&transaction)).expect("charge");
            charge.reserve(10 * budget.block_size).expect("reserve");
            assert_eq!(
                *budget.remaining(),
                start - budget.blocks(10 * budget.block_size)
            );
            assert!(charge.reserve(start.saturating_mul(2)).is_err());
            assert!(charge.refusal().is_some());
        }
        assert_eq!(*budget.remaining(), start, "a dropped charge keeps space");
        let charge = SpaceCharge::begin(&repo, Place::Staged(&transaction)).expect("charge");
        charge.reserve(1 << 20).expect("reserve");
        let file = tempfile::tempfile().expect("temp file");
        file.set_len(100).expect("size");
        charge.settle(&file).expect("settle");
        assert_eq!(*budget.remaining(), start - budget.blocks(100));
    }
}
