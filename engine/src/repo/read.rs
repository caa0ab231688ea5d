//! Reading objects in every repository mode.
//!
//! - archive: `.filez` = header + raw deflate; [`Repo::open_content`] inflates while reading.
//! - bare: real files and symlinks; ownership, mode and xattrs from the filesystem.
//! - bare-user: ownership, mode and xattrs from the `user.ostreemeta` xattr; symlinks are
//!   regular files holding the target.
//! - bare-user-only: mode from the filesystem, uid and gid 0, no xattrs; real symlinks.
//!
//! Nothing here verifies checksums: callers hash what they read ([`crate::object::ContentHasher`],
//! [`crate::object::metadata_checksum`]), since only they know whether the source is trusted.

use std::ffi::CStr;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use flate2::bufread::DeflateDecoder;
use rustix::fs::{AtFlags, OFlags, Stat};

use super::{open_beneath, read_bounded, Repo, RepoError, RepoMode};
use crate::object::content::{MAX_SYMLINK_TARGET_LEN, S_IFLNK, S_IFMT, S_IFREG};
use crate::object::{
    Checksum, Commit, FileHeader, FormatError, ObjectId, ObjectKind, Xattr, MAX_COMMIT_SIZE,
    MAX_DETACHED_METADATA_SIZE, MAX_METADATA_SIZE,
};

/// Largest total of xattr names, and largest single value, that Linux allows.
const XATTR_LIST_MAX: usize = 65536;
const XATTR_SIZE_MAX: usize = 65536;

/// The bytes of a content object, as a stream.
pub struct ContentReader {
    inner: Inner,
}

enum Inner {
    /// A symlink: no bytes.
    Empty,
    /// A plain file, expected to hold exactly `remaining` more bytes.
    Plain {
        file: File,
        remaining: u64,
        path: PathBuf,
    },
    /// An archive object's compressed content.
    /// Read no further than the file's size when opened, so that its end costs no `read`.
    Archive(Box<ArchiveContent<BufReader<io::Take<File>>>>),
}

impl ContentReader {
    fn empty() -> Self {
        Self {
            inner: Inner::Empty,
        }
    }

    /// The open file and the bytes it holds, when the content is a plain file (bare modes), so
    /// it can be sent without this reader; None for a symlink or an archive object.
    pub fn into_plain_file(self) -> Option<(File, u64)> {
        match self.inner {
            Inner::Plain {
                file, remaining, ..
            } => Some((file, remaining)),
            Inner::Empty | Inner::Archive(_) => None,
        }
    }
}

fn corrupt(path: &std::path::Path, reason: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: {reason}", path.display()),
    )
}

impl Read for ContentReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Empty => Ok(0),
            Inner::Plain {
                file,
                remaining,
                path,
            } => {
                if *remaining == 0 {
                    return Ok(0);
                }
                let want = buf
                    .len()
                    .min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                let read = file.read(&mut buf[..want])?;
                if read == 0 {
                    return Err(corrupt(path, "the file is shorter than its size"));
                }
                *remaining -= read as u64;
                Ok(read)
            }
            Inner::Archive(content) => content.read(buf),
        }
    }
}

/// The content of an archive object (or of a `.filez` stream from a peer): raw deflate data
/// that must inflate to exactly the size its header gives, with nothing after the compressed
/// stream. Reading past either limit fails with `InvalidData`.
pub struct ArchiveContent<R: BufRead> {
    decoder: DeflateDecoder<R>,
    remaining: u64,
    /// Names the data in errors.
    origin: String,
}

impl<R: BufRead> ArchiveContent<R> {
    fn new(reader: R, size: u64, origin: String) -> Self {
        Self {
            decoder: DeflateDecoder::new(reader),
            remaining: size,
            origin,
        }
    }

    fn invalid(&self, reason: &str) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {reason}", self.origin),
        )
    }
}

impl<R: BufRead> Read for ArchiveContent<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.remaining == 0 {
            // The header's size is reached: the deflate stream must end here, with nothing
            // after it.
            let mut probe = [0u8; 1];
            if self.decoder.read(&mut probe)? != 0 {
                return Err(self.invalid("content is longer than its header says"));
            }
            if !self.decoder.get_mut().fill_buf()?.is_empty() {
                return Err(self.invalid("data follows the compressed content"));
            }
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let read = self.decoder.read(&mut buf[..want])?;
        if read == 0 {
            return Err(self.invalid("content is shorter than its header says"));
        }
        self.remaining -= read as u64;
        Ok(read)
    }
}

/// Error reading the header of a `.filez` stream.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveHeaderError {
    /// The header could not be read.
    #[error("cannot read the header")]
    Io(#[source] io::Error),
    /// The header does not parse.
    #[error(transparent)]
    Format(#[from] FormatError),
}

/// Splits an archive `.filez` stream (from a file or a peer) into its header and its
/// content, which inflates while read ([`ArchiveContent`]). A symlink has no content; its
/// reader yields nothing and refuses trailing data. `origin` names the stream in errors.
pub fn read_archive_stream<R: BufRead>(
    mut reader: R,
    origin: &str,
) -> Result<(FileHeader, ArchiveContent<R>), ArchiveHeaderError> {
    let header = read_archive_header(&mut reader)?;
    let size = if header.is_regular() { header.size } else { 0 };
    let content = ArchiveContent::new(reader, size, origin.to_owned());
    Ok((header, content))
}

/// An archive `.filez` object exactly as stored, for copying into another archive
/// repository without inflating and deflating it again.
pub struct ArchivedContent {
    /// The `.filez` file, at its start.
    pub file: File,
    /// Its size in bytes.
    pub size: u64,
}

impl Repo {
    /// True when the object exists in this repository.
    pub fn has_object(&self, object: ObjectId) -> Result<bool, RepoError> {
        match rustix::fs::statat(
            &self.objects,
            self.object_name(object).as_str(),
            AtFlags::SYMLINK_NOFOLLOW,
        ) {
            Ok(_) => Ok(true),
            Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => Ok(false),
            Err(error) => Err(RepoError::io("check", self.object_path(object), error)),
        }
    }

    /// The object's file and its stat, or None when it is absent; anything but a regular file
    /// is corrupt.
    fn open_object(&self, object: ObjectId) -> Result<Option<(OwnedFd, Stat)>, RepoError> {
        // NONBLOCK: opening a FIFO planted on a drive would otherwise wait for a writer forever.
        let fd = match open_beneath(
            &self.objects,
            &self.object_name(object),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK,
        ) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => return Ok(None),
            Err(error) => return Err(RepoError::io("open", self.object_path(object), error)),
        };
        let stat = rustix::fs::fstat(&fd)
            .map_err(|error| RepoError::io("stat", self.object_path(object), error))?;
        if stat.st_mode & S_IFMT != S_IFREG {
            return Err(self.corrupt_object(object, "it is not a regular file"));
        }
        read_ahead(&fd, &stat);
        Ok(Some((fd, stat)))
    }

    /// [`Repo::open_object`] of an object that must be there.
    fn open_existing_object(&self, object: ObjectId) -> Result<(OwnedFd, Stat), RepoError> {
        self.open_object(object)?
            .ok_or_else(|| self.missing(object))
    }

    fn missing(&self, object: ObjectId) -> RepoError {
        RepoError::Missing {
            repo: self.path.clone(),
            object,
        }
    }

    /// `source` says what is wrong: the error met reading or parsing, or a description.
    fn corrupt_object(
        &self,
        object: ObjectId,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> RepoError {
        RepoError::Corrupt {
            repo: self.path.clone(),
            object,
            source: source.into(),
        }
    }

    /// The size in bytes of a metadata object's file, or None when it is absent. A cheap
    /// look (one `fstat`), so readers can plan memory before reading.
    pub fn metadata_size(&self, object: ObjectId) -> Result<Option<u64>, RepoError> {
        Ok(self
            .open_object(object)?
            .map(|(_, stat)| u64::try_from(stat.st_size).unwrap_or(0)))
    }

    /// Reads a metadata object's bytes (dirtree, dirmeta, commit or commitmeta), refusing
    /// commits over [`MAX_COMMIT_SIZE`], detached metadata over
    /// [`MAX_DETACHED_METADATA_SIZE`] and others over 128 MiB. Does not parse or verify them.
    pub fn read_metadata(
        &self,
        kind: ObjectKind,
        checksum: &Checksum,
    ) -> Result<Vec<u8>, RepoError> {
        let object = ObjectId::new(*checksum, kind);
        if !kind.is_metadata() {
            return Err(RepoError::ModeMismatch {
                mode: self.mode(),
                reason: format!("{object} is content; use open_content"),
            });
        }
        let (fd, _) = self.open_existing_object(object)?;
        let max = match kind {
            ObjectKind::Commit => MAX_COMMIT_SIZE,
            ObjectKind::CommitMeta => MAX_DETACHED_METADATA_SIZE,
            _ => MAX_METADATA_SIZE,
        };
        read_bounded(fd, max).map_err(|error| {
            if error.kind() == io::ErrorKind::InvalidData {
                self.corrupt_object(object, error)
            } else {
                RepoError::io("read", self.object_path(object), error)
            }
        })
    }

    /// Reads a commit, checks that its bytes hash to `checksum` and parses it.
    pub fn read_commit(&self, checksum: &Checksum) -> Result<Commit, RepoError> {
        let object = ObjectId::new(*checksum, ObjectKind::Commit);
        let bytes = self.read_metadata(ObjectKind::Commit, checksum)?;
        let actual = crate::object::metadata_checksum(&bytes);
        if actual != *checksum {
            return Err(RepoError::ChecksumMismatch {
                object,
                actual,
                source_name: self.path.display().to_string(),
            });
        }
        Commit::parse(&bytes).map_err(|source| RepoError::Format { object, source })
    }

    /// A commit's detached metadata (`.commitmeta`, signatures), or None when it has none.
    pub fn read_commitmeta(&self, commit: &Checksum) -> Result<Option<Vec<u8>>, RepoError> {
        match self.read_metadata(ObjectKind::CommitMeta, commit) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(RepoError::Missing { .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// The repository's `summary` file, or None when it has none (at most 128 MiB; parse it
    /// with [`crate::object::Summary::parse`]).
    pub fn read_summary(&self) -> Result<Option<Vec<u8>>, RepoError> {
        self.read_top_level_file("summary")
    }

    /// The `summary.sig` file (signatures over `summary`), or None when it has none.
    pub fn read_summary_signatures(&self) -> Result<Option<Vec<u8>>, RepoError> {
        self.read_top_level_file("summary.sig")
    }

    /// The `summary` file when it is at most `max` bytes; larger ones are an error.
    pub fn read_summary_at_most(&self, max: u64) -> Result<Option<Vec<u8>>, RepoError> {
        self.read_top_level_file_at_most("summary", max)
    }

    /// A static delta file (`deltas/…`) when it is at most `max` bytes, read beneath the
    /// repository and without waiting on a FIFO; None when it does not exist.
    pub fn read_delta_file(
        &self,
        relative_path: &str,
        max: u64,
    ) -> Result<Option<Vec<u8>>, RepoError> {
        if !relative_path.starts_with("deltas/") && !relative_path.starts_with("delta-indexes/") {
            return Ok(None);
        }
        self.read_top_level_file_at_most(relative_path, max)
    }

    fn read_top_level_file(&self, name: &str) -> Result<Option<Vec<u8>>, RepoError> {
        self.read_top_level_file_at_most(name, MAX_METADATA_SIZE)
    }

    fn read_top_level_file_at_most(
        &self,
        name: &str,
        max: u64,
    ) -> Result<Option<Vec<u8>>, RepoError> {
        let path = self.path.join(name);
        // NONBLOCK: opening a FIFO planted on a drive would otherwise wait for a writer forever.
        let fd = match open_beneath(&self.dir, name, OFlags::RDONLY | OFlags::NONBLOCK) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => return Ok(None),
            Err(error) => return Err(RepoError::io("open", path, error)),
        };
        read_bounded(fd, max)
            .map(Some)
            .map_err(|error| RepoError::io("read", path, error))
    }

    /// Opens a content object: its header (ownership, mode, xattrs, symlink target, size)
    /// and a reader of its bytes (empty for a symlink). The reader fails if the stored data
    /// is shorter or longer than the header says.
    pub fn open_content(
        &self,
        checksum: &Checksum,
    ) -> Result<(FileHeader, ContentReader), RepoError> {
        let object = ObjectId::new(*checksum, ObjectKind::File);
        match self.mode() {
            RepoMode::Archive => self.open_archive_content(object, false),
            RepoMode::Bare | RepoMode::BareUserOnly => self.open_bare_content(object),
            RepoMode::BareUser => self.open_bare_user_content(object),
        }
    }

    /// As [`Repo::open_content`], with the object's clean pages first dropped from the page
    /// cache, so that its bytes are read from the device: for checking what was just written
    /// and synced. A filesystem that keeps its pages is read as it is.
    pub fn open_content_from_device(
        &self,
        checksum: &Checksum,
    ) -> Result<(FileHeader, ContentReader), RepoError> {
        let object = ObjectId::new(*checksum, ObjectKind::File);
        if self.mode() == RepoMode::Archive {
            return self.open_archive_content(object, true);
        }
        if let Ok(Some((fd, _))) = self.open_object(object) {
            let _ = rustix::fs::fadvise(&fd, 0, None, rustix::fs::Advice::DontNeed);
        }
        self.open_content(checksum)
    }

    /// Opens an archive repository's `.filez` as stored, for an archive-to-archive copy
    /// ([`Repo::write_archived_content`] verifies it).
    pub fn open_archived_content(&self, checksum: &Checksum) -> Result<ArchivedContent, RepoError> {
        let object = ObjectId::new(*checksum, ObjectKind::File);
        if self.mode() != RepoMode::Archive {
            return Err(RepoError::ModeMismatch {
                mode: self.mode(),
                reason: "only archive repositories store compressed objects".to_owned(),
            });
        }
        let (fd, stat) = self.open_existing_object(object)?;
        Ok(ArchivedContent {
            file: File::from(fd),
            size: stat.st_size as u64,
        })
    }

    /// `from_device`: see [`Repo::open_content_from_device`].
    fn open_archive_content(
        &self,
        object: ObjectId,
        from_device: bool,
    ) -> Result<(FileHeader, ContentReader), RepoError> {
        let path = self.object_path(object);
        let (fd, stat) = self.open_existing_object(object)?;
        if from_device {
            let _ = rustix::fs::fadvise(&fd, 0, None, rustix::fs::Advice::DontNeed);
        }
        let size = u64::try_from(stat.st_size).unwrap_or(0);
        let reader = BufReader::with_capacity(64 * 1024, File::from(fd).take(size));
        let (header, content) = read_archive_stream(reader, &path.display().to_string()).map_err(
            |error| match error {
                ArchiveHeaderError::Io(error) if error.kind() == io::ErrorKind::UnexpectedEof => {
                    self.corrupt_object(object, "truncated header")
                }
                ArchiveHeaderError::Io(error) => RepoError::io("read", &path, error),
                ArchiveHeaderError::Format(error) => self.corrupt_object(object, error),
            },
        )?;
        if header.is_symlink() {
            return Ok((header, ContentReader::empty()));
        }
        Ok((
            header,
            ContentReader {
                inner: Inner::Archive(Box::new(content)),
            },
        ))
    }

    /// The directory holding an object and the object's name in it, for `*at` calls that
    /// must not follow the final symlink.
    fn object_dir(&self, object: ObjectId) -> Result<Option<(OwnedFd, String)>, RepoError> {
        let name = self.object_name(object);
        let (dir, file) = name.split_once('/').unwrap_or(("", &name));
        match open_beneath(&self.objects, dir, OFlags::RDONLY | OFlags::DIRECTORY) {
            Ok(fd) => Ok(Some((fd, file.to_owned()))),
            Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => Ok(None),
            Err(error) => Err(RepoError::io("open", self.object_path(object), error)),
        }
    }

    fn open_bare_content(
        &self,
        object: ObjectId,
    ) -> Result<(FileHeader, ContentReader), RepoError> {
        let path = self.object_path(object);
        let (dir, name) = self
            .object_dir(object)?
            .ok_or_else(|| self.missing(object))?;
        let stat = match rustix::fs::statat(&dir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => stat,
            Err(rustix::io::Errno::NOENT) => return Err(self.missing(object)),
            Err(error) => return Err(RepoError::io("read", &path, error)),
        };
        let only_user = self.mode() == RepoMode::BareUserOnly;
        let (uid, gid) = if only_user {
            (0, 0)
        } else {
            (stat.st_uid, stat.st_gid)
        };
        match stat.st_mode & S_IFMT {
            S_IFLNK => {
                let target = rustix::fs::readlinkat(&dir, name.as_str(), Vec::new())
                    .map_err(|e| RepoError::io("read", &path, e))?;
                let target = target
                    .into_string()
                    .map_err(|_| self.corrupt_object(object, "symlink target is not UTF-8"))?;
                let xattrs = if only_user {
                    Vec::new()
                } else {
                    let proc_path = proc_path(dir.as_fd(), &name);
                    read_xattrs(XattrSource::Path(&proc_path))
                        .map_err(|e| RepoError::io("read xattrs of", &path, e))?
                };
                let header = FileHeader {
                    uid,
                    gid,
                    mode: stat.st_mode,
                    symlink_target: target,
                    xattrs,
                    size: 0,
                };
                header
                    .validate()
                    .map_err(|e| self.corrupt_object(object, e))?;
                Ok((header, ContentReader::empty()))
            }
            S_IFREG => {
                let fd = super::open_beneath(&dir, &name, OFlags::RDONLY | OFlags::NOFOLLOW)
                    .map_err(|e| RepoError::io("open", &path, e))?;
                let stat = rustix::fs::fstat(&fd).map_err(|e| RepoError::io("read", &path, e))?;
                read_ahead(&fd, &stat);
                let xattrs = if only_user {
                    Vec::new()
                } else {
                    read_xattrs(XattrSource::Fd(fd.as_fd()))
                        .map_err(|e| RepoError::io("read xattrs of", &path, e))?
                };
                let header = FileHeader {
                    uid,
                    gid,
                    mode: stat.st_mode,
                    symlink_target: String::new(),
                    xattrs,
                    size: stat.st_size as u64,
                };
                header
                    .validate()
                    .map_err(|e| self.corrupt_object(object, e))?;
                Ok(plain_reader(header, fd, &stat, path))
            }
            _ => Err(self.corrupt_object(object, "neither a regular file nor a symlink")),
        }
    }

    fn open_bare_user_content(
        &self,
        object: ObjectId,
    ) -> Result<(FileHeader, ContentReader), RepoError> {
        let path = self.object_path(object);
        let (fd, stat) = self.open_existing_object(object)?;
        let meta = read_xattr(fd.as_fd(), c"user.ostreemeta")
            .map_err(|e| RepoError::io("read user.ostreemeta of", &path, e))?
            .ok_or_else(|| self.corrupt_object(object, "it has no user.ostreemeta xattr"))?;
        let size = stat.st_size as u64;
        // A symlink is stored as a regular file holding its target (and a NUL).
        let mode = FileHeader::ostreemeta_mode(&meta).map_err(|e| self.format_error(object, e))?;
        let is_symlink = mode & S_IFMT == S_IFLNK;
        if is_symlink {
            let bytes = read_bounded(fd, MAX_SYMLINK_TARGET_LEN as u64 + 1).map_err(|e| {
                self.corrupt_object(
                    object,
                    crate::causes::Because::new("cannot read the symlink target", e),
                )
            })?;
            let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
            let target = std::str::from_utf8(&bytes[..end])
                .map_err(|_| self.corrupt_object(object, "symlink target is not UTF-8"))?;
            let header = FileHeader::parse_ostreemeta(&meta, Some(target), 0)
                .map_err(|e| self.format_error(object, e))?;
            return Ok((header, ContentReader::empty()));
        }
        let header = FileHeader::parse_ostreemeta(&meta, None, size)
            .map_err(|e| self.format_error(object, e))?;
        Ok(plain_reader(header, fd, &stat, path))
    }

    fn format_error(&self, object: ObjectId, error: FormatError) -> RepoError {
        self.corrupt_object(object, error)
    }
}

/// Objects at least this large are read ahead whole when opened.
const READ_AHEAD_MIN: i64 = 256 * 1024;

/// Asks the kernel to read a large object whole at once, in as few requests as the device
/// takes, instead of growing its readahead window from the first small read; the reads that
/// follow find it in memory. Only a hint: failure changes nothing.
fn read_ahead(fd: &OwnedFd, stat: &Stat) {
    if stat.st_size >= READ_AHEAD_MIN {
        let _ = rustix::fs::fadvise(fd, 0, None, rustix::fs::Advice::WillNeed);
    }
}

fn plain_reader(
    header: FileHeader,
    fd: OwnedFd,
    stat: &Stat,
    path: PathBuf,
) -> (FileHeader, ContentReader) {
    let reader = ContentReader {
        inner: Inner::Plain {
            file: File::from(fd),
            remaining: stat.st_size as u64,
            path,
        },
    };
    (header, reader)
}

/// Reads the length-prefixed `(tuuuusa(ayay))` header at the start of a `.filez`.
pub(crate) fn read_archive_header(
    reader: &mut impl Read,
) -> Result<FileHeader, ArchiveHeaderError> {
    let mut prefix = [0u8; 8];
    reader
        .read_exact(&mut prefix)
        .map_err(ArchiveHeaderError::Io)?;
    let length = FileHeader::prefix_length(prefix)?;
    let mut variant = vec![0u8; length as usize];
    reader
        .read_exact(&mut variant)
        .map_err(ArchiveHeaderError::Io)?;
    Ok(FileHeader::parse_archive(&variant)?)
}

/// `/proc/self/fd/<dir>/<name>`: a path naming `name` in an open directory without
/// resolving the directory's path again, for the `l*xattr` calls that have no `*at` form.
fn proc_path(dir: BorrowedFd<'_>, name: &str) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}/{name}", dir.as_raw_fd()))
}

pub(crate) enum XattrSource<'a> {
    Fd(BorrowedFd<'a>),
    /// A path whose final component is not followed.
    Path(&'a std::path::Path),
}

/// First buffer for an xattr call: most files have no xattrs or a few short ones, and
/// zeroing the largest size the kernel allows for every object read costs more than the reads.
const XATTR_FIRST_TRY: usize = 1024;

/// Calls `get` with a small buffer, and again with `max` bytes when that is too small
/// (`ERANGE`). Returns the buffer cut to what `get` filled.
fn xattr_call(
    max: usize,
    mut get: impl FnMut(&mut [u8]) -> rustix::io::Result<usize>,
) -> rustix::io::Result<Vec<u8>> {
    let mut buffer = vec![0u8; XATTR_FIRST_TRY];
    let size = match get(&mut buffer) {
        Err(rustix::io::Errno::RANGE) => {
            buffer = vec![0u8; max];
            get(&mut buffer)?
        }
        other => other?,
    };
    buffer.truncate(size);
    Ok(buffer)
}

/// All xattrs of a file, sorted by name, as libostree's `glnx_fd_get_all_xattrs` reads them.
pub(crate) fn read_xattrs(source: XattrSource<'_>) -> io::Result<Vec<Xattr>> {
    let names = xattr_call(XATTR_LIST_MAX, |buffer| match &source {
        XattrSource::Fd(fd) => rustix::fs::flistxattr(fd, buffer),
        XattrSource::Path(path) => rustix::fs::llistxattr(*path, buffer),
    });
    let names = match names {
        Ok(names) => names,
        Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
        Err(error) => return Err(error.into()),
    };
    let mut xattrs = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name_c = std::ffi::CString::new(name)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad xattr name"))?;
        let got = xattr_call(XATTR_SIZE_MAX, |buffer| match &source {
            XattrSource::Fd(fd) => rustix::fs::fgetxattr(fd, name_c.as_c_str(), buffer),
            XattrSource::Path(path) => rustix::fs::lgetxattr(*path, name_c.as_c_str(), buffer),
        });
        match got {
            Ok(value) => xattrs.push(Xattr::new(name, value)),
            // Removed between listing and reading.
            Err(rustix::io::Errno::NODATA) => {}
            Err(error) => return Err(error.into()),
        }
    }
    xattrs.sort();
    Ok(xattrs)
}

/// One xattr's value; None when the file does not have it.
pub(crate) fn read_xattr(fd: BorrowedFd<'_>, name: &CStr) -> io::Result<Option<Vec<u8>>> {
    match xattr_call(XATTR_SIZE_MAX, |buffer| {
        rustix::fs::fgetxattr(fd, name, buffer)
    }) {
        Ok(value) => Ok(Some(value)),
        Err(rustix::io::Errno::NODATA | rustix::io::Errno::NOTSUP) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::{Checksum, ContentHasher, FileHeader, ObjectKind};

    /// Bytes of `path` in the page cache, as util-linux `fincore` counts them.
    fn resident_bytes(path: &std::path::Path) -> u64 {
        let output = std::process::Command::new("fincore")
            .args(["--bytes", "--noheadings", "--output", "RES"])
            .arg(path)
            .output()
            .expect("run fincore");
        assert!(output.status.success(), "fincore failed: {output:?}");
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .expect("fincore prints a number")
    }

    /// Sets `xattrs` on a new file in `dir`; None when the filesystem has no user xattrs.
    fn file_with_xattrs(
        dir: &std::path::Path,
        name: &str,
        xattrs: &[(String, Vec<u8>)],
    ) -> Option<File> {
        let file = File::create(dir.join(name)).expect("create");
        for (name, value) in xattrs {
            let set =
                rustix::fs::fsetxattr(&file, name.as_str(), value, rustix::fs::XattrFlags::empty());
            if set == Err(rustix::io::Errno::NOTSUP) {
                return None;
            }
            set.expect("set an xattr");
        }
        Some(file)
    }

    #[test]
    fn an_xattr_that_outgrows_the_largest_buffer_fails_after_two_calls() {
        // A value that keeps growing between calls (or a kernel that always says ERANGE) is
        // an error, not a loop of ever larger buffers.
        let mut sizes = Vec::new();
        let got = xattr_call(XATTR_SIZE_MAX, |buffer| {
            sizes.push(buffer.len());
            Err(rustix::io::Errno::RANGE)
        });
        assert_eq!(got, Err(rustix::io::Errno::RANGE));
        assert_eq!(sizes, vec![XATTR_FIRST_TRY, XATTR_SIZE_MAX]);
        // A value that fits the first buffer is read with one call.
        let mut calls = 0;
        let got = xattr_call(XATTR_SIZE_MAX, |buffer| {
            calls += 1;
            buffer[..3].copy_from_slice(b"abc");
            Ok(3)
        });
        assert_eq!(got.as_deref(), Ok(&b"abc"[..]));
        assert_eq!(calls, 1);
    }

    #[test]
    fn xattrs_longer_than_the_first_buffer_are_read_whole() {
        let dir = tempfile::tempdir_in("/var/tmp").expect("temp dir");
        let long_value: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        let long = [("user.long".to_owned(), long_value.clone())];
        // Enough names that the list alone outgrows the first buffer.
        let many: Vec<(String, Vec<u8>)> = (0..40)
            .map(|i| {
                (
                    format!("user.ferry-test-{i:02}-{}", "n".repeat(20)),
                    vec![i],
                )
            })
            .collect();
        let (Some(long_file), Some(many_file)) = (
            file_with_xattrs(dir.path(), "long", &long),
            file_with_xattrs(dir.path(), "many", &many),
        ) else {
            eprintln!("skipped: this filesystem has no user xattrs");
            return;
        };
        let read = read_xattrs(XattrSource::Fd(long_file.as_fd())).expect("read xattrs");
        assert_eq!(
            read,
            vec![Xattr::new(b"user.long".as_slice(), long_value.clone())]
        );
        let through_path =
            read_xattrs(XattrSource::Path(&dir.path().join("long"))).expect("by path");
        assert_eq!(through_path, read);
        let one = read_xattr(long_file.as_fd(), c"user.long").expect("read one");
        assert_eq!(one.as_deref(), Some(long_value.as_slice()));
        assert_eq!(
            read_xattr(long_file.as_fd(), c"user.absent").expect("absent"),
            None
        );

        let read = read_xattrs(XattrSource::Fd(many_file.as_fd())).expect("read many");
        let expected: Vec<Xattr> = many
            .iter()
            .map(|(name, value)| Xattr::new(name.as_bytes(), value.clone()))
            .collect();
        assert_eq!(read, expected);
    }

    #[test]
    fn opening_a_large_object_reads_it_ahead_whole() {
        let dir = tempfile::tempdir_in("/var/tmp").expect("temp dir");
        let repo = Repo::init(dir.path(), RepoMode::BareUserOnly, None).expect("init");
        let data: Vec<u8> = (0..(2 << 20)).map(|_| rand::random::<u8>()).collect();
        let header = FileHeader::regular(0, 0, 0o644, data.len() as u64);
        let checksum: Checksum = ContentHasher::checksum(&header, &data).expect("checksum");
        repo.write_content(&checksum, &header, data.as_slice())
            .expect("write");
        let path = repo.object_path(ObjectId::new(checksum, ObjectKind::File));
        let file = File::open(&path).expect("open the object");
        rustix::fs::fsync(&file).expect("sync");
        rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).expect("evict");
        if resident_bytes(&path) > 0 {
            eprintln!("skipped: this filesystem keeps the object's pages in memory");
            return;
        }

        let (opened, _reader) = repo.open_content(&checksum).expect("open content");
        assert_eq!(opened.size, data.len() as u64);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut resident = resident_bytes(&path);
        while resident < data.len() as u64 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
            resident = resident_bytes(&path);
        }
        assert_eq!(resident, data.len() as u64, "the object was not read ahead");
    }
}
