//! Writing objects. Every object is streamed into a temporary file, hashed on the way,
//! compared with its expected checksum, and given its final mode, ownership and xattrs, so a
//! mismatch removes the temporary file and stores nothing.
//!
//! A direct write ([`Repo::write_content`] and its siblings) renames the file from `tmp/`
//! straight into `objects/XX/`, durable only after [`Repo::sync`]; a [`Transaction`]'s writes
//! stay staged until their batch is committed. How content is laid out depends on the
//! repository's mode (`archive.rs`, `bare.rs`), as in libostree's `write_content_object`.

mod archive;
mod bare;

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use rustix::fs::{AtFlags, Mode, OFlags, XattrFlags};

use super::space::{ChargedFile, SpaceBudget, SpaceCharge};
use super::transaction::Transaction;
use super::{open_beneath_mode, Repo, RepoError, RepoMode};
use crate::object::{
    metadata_checksum, Checksum, Commit, ContentHasher, DirMeta, DirTree, FileHeader, Metadata,
    ObjectId, ObjectKind, MAX_METADATA_SIZE,
};

/// Largest read or write chunk when streaming content.
const CHUNK: usize = 128 * 1024;

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The object was verified and stored.
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

impl TempEntry<'_> {
    /// Keeps the entry (it is to be moved into `objects/`) and gives its name.
    fn keep(mut self) -> String {
        self.armed = false;
        std::mem::take(&mut self.name)
    }
}

impl Drop for TempEntry<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = rustix::fs::unlinkat(self.dir, self.name.as_str(), AtFlags::empty());
        }
    }
}

pub(super) fn temp_name() -> String {
    format!("ferry-{:016x}", rand::random::<u64>())
}

/// A failure while copying content: reading the source, or writing the destination.
enum CopyError {
    Source(io::Error),
    Sink(io::Error),
}

thread_local! {
    /// Each writing thread's copy buffer: allocated and zeroed once, not for every object.
    static COPY_BUFFER: std::cell::RefCell<Box<[u8]>> = std::cell::RefCell::new(vec![0u8; CHUNK].into_boxed_slice());
}

/// Copies exactly `size` bytes of `content` into `sink`, then checks that nothing follows.
fn copy_exact(
    content: &mut impl Read,
    size: u64,
    mut sink: impl FnMut(&[u8]) -> io::Result<()>,
) -> Result<(), CopyError> {
    COPY_BUFFER.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buffer) => copy_exact_with(content, size, &mut sink, &mut buffer),
        // A sink that itself copies: it gets a buffer of its own.
        Err(_) => copy_exact_with(content, size, &mut sink, &mut vec![0u8; CHUNK]),
    })
}

fn copy_exact_with(
    content: &mut impl Read,
    size: u64,
    sink: &mut impl FnMut(&[u8]) -> io::Result<()>,
    buffer: &mut [u8],
) -> Result<(), CopyError> {
    let capacity = buffer.len();
    let mut remaining = size;
    while remaining > 0 {
        let want = usize::try_from(remaining).unwrap_or(capacity).min(capacity);
        let read = match content.read(&mut buffer[..want]) {
            Ok(0) => {
                return Err(CopyError::Source(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "the content ended after {} of {size} bytes",
                        size - remaining
                    ),
                )))
            }
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(CopyError::Source(error)),
        };
        sink(&buffer[..read]).map_err(CopyError::Sink)?;
        remaining -= read as u64;
    }
    let mut probe = [0u8; 1];
    loop {
        match content.read(&mut probe) {
            Ok(0) => return Ok(()),
            Ok(_) => {
                return Err(CopyError::Source(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("the content is longer than the {size} bytes its header says"),
                )))
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(CopyError::Source(error)),
        }
    }
}

impl Repo {
    /// The directory temporary files of `place` are made in, and a new name in it.
    fn temp_slot<'p>(
        &'p self,
        place: Place<'p>,
    ) -> Result<(BorrowedFd<'p>, PathBuf, String), RepoError> {
        match place {
            Place::Direct => Ok((self.tmp_dir()?, self.path.join("tmp"), temp_name())),
            Place::Staged(transaction) => Ok((
                transaction.staging_fd(),
                transaction.staging_path(),
                transaction.staged_temp_name(),
            )),
        }
    }

    fn create_temp_file<'p>(
        &'p self,
        place: Place<'p>,
    ) -> Result<(File, TempEntry<'p>), RepoError> {
        let (tmp, tmp_path, name) = self.temp_slot(place)?;
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
                transaction.stage(temp.keep(), object, size)
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
        let read_error = |source: io::Error| RepoError::ReadContent {
            object,
            source_name: "the source".to_owned(),
            source,
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
        let charge = SpaceCharge::begin(self, place.budget())?;
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
                let header_bytes = header
                    .archive_header_bytes()
                    .map_err(|source| RepoError::Format { object, source })?;
                self.write_archive_body(file, &header_bytes, header, &mut content, &mut hasher)
            }
            _ => self.write_bare_body(file, header, &mut content, &mut hasher),
        }
        .map_err(copy_error)?;
        let (file, written) = file.into_parts();
        let actual = hasher.finish();
        if actual != *expected {
            // `temp` is dropped here, removing the file; dropping `charge` releases its space.
            return Err(self.refuse_write_mismatch(object, actual));
        }
        self.apply_file_metadata(&file, header)
            .map_err(|e| self.metadata_error(object, e))?;
        charge.settle(written)?;
        self.place_entry(place, temp, object, Some(&file), header.size)?;
        Ok(WriteOutcome::Written)
    }

    fn metadata_error(&self, object: ObjectId, error: io::Error) -> RepoError {
        if error.kind() == io::ErrorKind::PermissionDenied && self.mode() == RepoMode::Bare {
            return RepoError::Unrepresentable {
                repo: self.path.clone(),
                object,
                mode: self.mode(),
                reason: "bare repositories keep real ownership and can only be written as root"
                    .to_owned(),
                source: Some(error),
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
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
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
}

/// Where a write puts a verified object.
#[derive(Clone, Copy)]
enum Place<'t> {
    /// Renamed into `objects/` at once.
    Direct,
    /// Staged in the transaction until its batch is committed.
    Staged(&'t Transaction<'t>),
}

impl<'t> Place<'t> {
    fn is_staged(self) -> bool {
        matches!(self, Self::Staged(_))
    }

    /// The budget content written here is charged to: the transaction's, or None for a
    /// direct write, which measures its own.
    fn budget(self) -> Option<&'t SpaceBudget> {
        match self {
            Self::Direct => None,
            Self::Staged(transaction) => Some(transaction.budget()),
        }
    }
}

/// The writes of a transaction: the same checks, with the object staged until its batch is
/// committed.
impl<'r> Transaction<'r> {
    /// [`Repo::write_metadata`], staged.
    pub fn write_metadata(
        &self,
        kind: ObjectKind,
        expected: &Checksum,
        bytes: &[u8],
    ) -> Result<WriteOutcome, RepoError> {
        self.repo()
            .write_metadata_at(Place::Staged(self), kind, expected, bytes)
    }

    /// [`Repo::write_commitmeta`], staged.
    pub fn write_commitmeta(&self, commit: &Checksum, bytes: &[u8]) -> Result<(), RepoError> {
        self.repo()
            .write_commitmeta_at(Place::Staged(self), commit, bytes)
    }

    /// [`Repo::write_content`], staged.
    pub fn write_content(
        &self,
        expected: &Checksum,
        header: &FileHeader,
        content: impl Read,
    ) -> Result<WriteOutcome, RepoError> {
        self.repo()
            .write_content_at(Place::Staged(self), expected, header, content)
    }

    /// [`Repo::write_archived_content`], staged.
    pub fn write_archived_content(
        &self,
        expected: &Checksum,
        filez: impl Read,
    ) -> Result<WriteOutcome, RepoError> {
        self.repo()
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
        self.repo()
            .write_archived_content_at(Place::Staged(self), expected, filez, Some(unpacked))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An endless source of zeros: what an object whose header lies would stream.
    struct Zeros;

    impl Read for Zeros {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            buf.fill(0);
            Ok(buf.len())
        }
    }

    #[test]
    fn a_bare_write_refused_for_ownership_keeps_the_system_error_as_its_cause() {
        let dir = tempfile::tempdir().expect("temp dir");
        let repo = Repo::init(&dir.path().join("bare"), RepoMode::Bare, None).expect("init");
        let object = ObjectId::new(
            Checksum::from_hex(&"ab".repeat(32)).expect("checksum"),
            ObjectKind::File,
        );
        let denied = io::Error::from(io::ErrorKind::PermissionDenied);
        let said = denied.to_string();
        let error = repo.metadata_error(object, denied);
        assert!(
            matches!(error, RepoError::Unrepresentable { .. }),
            "{error}"
        );
        let cause = std::error::Error::source(&error).expect("a cause");
        assert_eq!(cause.to_string(), said);
        assert!(!error.to_string().contains(&said), "{error}");
        let line = crate::causes::text(&error);
        assert_eq!(line.matches(&said).count(), 1, "{line}");
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

    /// A source that hands out a few bytes, then fails as a drive pulled out does.
    struct Unplugged(bool);

    impl Read for Unplugged {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if std::mem::replace(&mut self.0, true) {
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
            buf[0] = b'x';
            Ok(1)
        }
    }

    #[test]
    fn a_failed_read_keeps_its_io_error_as_the_cause() {
        let dir = tempfile::tempdir().expect("temp dir");
        for mode in [RepoMode::BareUserOnly, RepoMode::Archive] {
            let repo = Repo::init(&dir.path().join(mode.as_str()), mode, None).expect("init");
            let header = FileHeader::regular(0, 0, 0o644, 100);
            let checksum = Checksum::from_hex(&"ab".repeat(32)).expect("checksum");
            let error = repo
                .write_content(&checksum, &header, Unplugged(false))
                .expect_err("a failed read was stored");
            assert!(matches!(error, RepoError::ReadContent { .. }), "{error}");
            let cause = std::error::Error::source(&error)
                .and_then(|cause| cause.downcast_ref::<io::Error>())
                .unwrap_or_else(|| panic!("{error} does not expose the read error"));
            assert_eq!(cause.raw_os_error(), Some(libc::EIO));
            // The message says what failed; the cause follows it once where errors become
            // one line of text.
            assert!(!error.to_string().contains(&cause.to_string()), "{error}");
            let line = crate::causes::text(&error);
            assert!(line.ends_with(&format!(": {cause}")), "{line}");
            assert_eq!(line.matches(&cause.to_string()).count(), 1, "{line}");
        }
    }
}
