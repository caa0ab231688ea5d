//! Archive mode: each content object is a length-prefixed `(tuuuusa(ayay))` header, then
//! its content as raw deflate, mode 0644 (libostree's `archive-z2`). A `.filez` from another
//! archive repository is stored as it comes, inflated only to hash it, and within bounds so a
//! header that lies about its size cannot make a write run on.

use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};

use flate2::bufread::DeflateDecoder;
use flate2::write::DeflateEncoder;
use flate2::Compression;

use super::{copy_exact, CopyError, Place, WriteOutcome, CHUNK};
use crate::object::{Checksum, ContentHasher, FileHeader, ObjectId, ObjectKind};
use crate::repo::read::{read_archive_header, ArchiveHeaderError};
use crate::repo::space::{ChargedFile, SpaceCharge};
use crate::repo::{Repo, RepoError, RepoMode};

impl Repo {
    /// Writes an archive content object into `out`: `header_bytes`, then the content
    /// deflated at the configured level, hashed on the way.
    pub(super) fn write_archive_body<W: Write>(
        &self,
        out: W,
        header_bytes: &[u8],
        header: &FileHeader,
        content: &mut impl Read,
        hasher: &mut ContentHasher,
    ) -> Result<W, CopyError> {
        let mut out = BufWriter::with_capacity(CHUNK, out);
        out.write_all(header_bytes).map_err(CopyError::Sink)?;
        if header.is_regular() {
            let level = self.config.zlib_level.unwrap_or(DEFAULT_ZLIB_LEVEL);
            let mut encoder = DeflateEncoder::new(out, Compression::new(level));
            copy_exact(content, header.size, |chunk| {
                hasher.update(chunk);
                encoder.write_all(chunk)
            })?;
            out = encoder.finish().map_err(CopyError::Sink)?;
        } else {
            copy_exact(content, 0, |_| Ok(()))?;
        }
        out.into_inner()
            .map_err(|e| CopyError::Sink(e.into_error()))
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
    pub(super) fn write_archived_content_at(
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
        let read_error = |source: io::Error| RepoError::ReadContent {
            object,
            source_name: "the source".to_owned(),
            source,
        };
        // The header is read (and copied) within the budget's first block and the bound on
        // headers; the content's declared size is then charged before any of it is copied.
        let charge = SpaceCharge::begin(self, place.budget())?;
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
            ArchiveHeaderError::Io(error) => read_error(error),
            ArchiveHeaderError::Format(source) => RepoError::Format { object, source },
        })?;
        // A symlink's entry records its target's length, which its header does not carry.
        let recorded = unpacked.filter(|_| header.is_regular());
        if let Some(unpacked) = recorded.filter(|size| *size != header.size) {
            return Err(read_error(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "its header declares {} bytes, but the signed commit's ostree.sizes \
                     records {unpacked}",
                    header.size
                ),
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
        let trailing = tee.fill_buf().map_err(read_error)?.len();
        if trailing > 0 {
            return Err(read_error(io::Error::new(
                io::ErrorKind::InvalidData,
                "data follows the compressed content",
            )));
        }
        let Tee { out, error, .. } = tee.into_inner();
        if let Some(error) = error {
            return Err(write_error(error));
        }
        let (file, written) = out
            .into_inner()
            .map_err(|e| write_error(e.into_error()))?
            .into_parts();
        let actual = hasher.finish();
        if actual != *expected {
            return Err(self.refuse_write_mismatch(object, actual));
        }
        self.apply_file_metadata(&file, &header)
            .map_err(|e| self.metadata_error(object, e))?;
        if place.is_staged() && self.config.fsync && self.config.per_object_fsync {
            rustix::fs::fsync(&file).map_err(|e| RepoError::io("sync", &path, e))?;
        }
        charge.settle(written)?;
        drop(file);
        self.place_entry(place, temp, object, None, header.size)?;
        Ok(WriteOutcome::Written)
    }
}

/// Compression level for archive objects when the config sets none: fast. ostree reads any
/// level; its own default is 6.
const DEFAULT_ZLIB_LEVEL: u32 = 1;

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
}
