//! Writing objects onto the drive on many workers: archive objects as stored, bare ones
//! compressed.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use flate2::write::DeflateEncoder;
use flate2::Compression;

use super::drive::DriveWriter;
use super::plan::{Planned, SourceRepos};
use super::progress::Progress;
use super::PrepareError;
use crate::cancel::CancelToken;
use crate::object::stored::{self, looks_incompressible};
use crate::object::{metadata_checksum, ContentHasher, ObjectId, ObjectKind};
use crate::repo::{Repo, RepoMode};

/// zlib level for objects of bare-mode sources: fast; libostree reads any level.
const ZLIB_LEVEL: u32 = 1;

/// Largest read or write of content, from the source and back from the drive.
pub(super) const CHUNK: usize = 128 * 1024;

/// Runs `work` on every item on `threads` workers, each with its own state from `init`; the
/// first error (or a cancellation) stops them all.
pub(super) fn for_each_parallel<T: Sync, S>(
    items: &[T],
    threads: usize,
    cancel: &CancelToken,
    init: impl Fn() -> S + Sync,
    work: impl Fn(&mut S, &T) -> Result<(), PrepareError> + Sync,
) -> Result<(), PrepareError> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<PrepareError>> = Mutex::new(None);
    let worker = || {
        let mut state = init();
        loop {
            if failed.load(Ordering::Relaxed) {
                return;
            }
            let index = next.fetch_add(1, Ordering::Relaxed);
            let Some(item) = items.get(index) else {
                return;
            };
            let result = if cancel.is_cancelled() {
                Err(PrepareError::Cancelled)
            } else {
                work(&mut state, item)
            };
            if let Err(error) = result {
                failed.store(true, Ordering::Relaxed);
                if let Ok(mut slot) = first_error.lock() {
                    slot.get_or_insert(error);
                }
                return;
            }
        }
    };
    let threads = threads.clamp(1, items.len().max(1));
    std::thread::scope(|scope| {
        for _ in 1..threads {
            scope.spawn(worker);
        }
        worker();
    });
    match first_error.into_inner() {
        Ok(Some(error)) => Err(error),
        Ok(None) => Ok(()),
        Err(poisoned) => poisoned.into_inner().map_or(Ok(()), Err),
    }
}

/// What a writing worker keeps between objects. Allocated per object, the buffers (at the
/// allocator's mmap threshold) and the compressor's state cost more system time in page
/// faults and unmapping than the writes themselves.
struct Scratch {
    /// Bytes for the drive, written in large pieces.
    output: Vec<u8>,
    deflater: Deflater,
}

/// Buffers and compressor for turning content into raw deflate.
struct Deflater {
    /// Content read from the source, a chunk at a time.
    input: Vec<u8>,
    /// One stored block with its header.
    block: Vec<u8>,
    /// The compressor for content that compresses; reset between objects.
    encoder: DeflateEncoder<Vec<u8>>,
}

impl Scratch {
    pub(super) fn new() -> Self {
        Self {
            output: Vec::with_capacity(2 * CHUNK),
            deflater: Deflater {
                input: vec![0; CHUNK],
                block: Vec::with_capacity(stored::HEADER + stored::MAX_BLOCK),
                encoder: DeflateEncoder::new(
                    Vec::with_capacity(CHUNK),
                    Compression::new(ZLIB_LEVEL),
                ),
            },
        }
    }
}

/// The objects written so far, in the order they were written.
#[derive(Default)]
pub(super) struct Written(Mutex<Vec<ObjectId>>);

impl Written {
    fn list(&self) -> MutexGuard<'_, Vec<ObjectId>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn count(&self) -> usize {
        self.list().len()
    }

    /// The objects written from position `from` on.
    pub(super) fn since(&self, from: usize) -> Vec<ObjectId> {
        self.list().get(from..).unwrap_or_default().to_vec()
    }
}

/// What writing objects onto the drive needs, the same for every phase that writes.
pub(super) struct Copying<'a> {
    pub(super) writer: &'a DriveWriter,
    pub(super) sources: &'a SourceRepos,
    pub(super) progress: &'a Progress<'a>,
    pub(super) cancel: &'a CancelToken,
    /// Every object written, in order, to be read back.
    pub(super) written: Written,
}

impl Copying<'_> {
    /// Writes `objects` on `threads` workers, recording each object written.
    pub(super) fn write_all(
        &self,
        objects: &[Planned],
        threads: usize,
    ) -> Result<(), PrepareError> {
        for_each_parallel(
            objects,
            threads,
            self.cancel,
            Scratch::new,
            |scratch, planned| {
                let source = self.sources.get(planned.source);
                if let Some(bytes) = write_object(self.writer, source, planned.object, scratch)? {
                    self.progress.add(bytes);
                    self.written.list().push(planned.object);
                }
                Ok(())
            },
        )
    }
}

/// A reader that hashes what passes through it.
struct Hashing<'h, R> {
    inner: R,
    hasher: &'h mut ContentHasher,
}

impl<R: Read> Read for Hashing<'_, R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buffer)?;
        self.hasher.update(&buffer[..read]);
        Ok(read)
    }
}

/// Collects bytes for `file` and writes them in pieces of at least [`CHUNK`], so a small
/// object is one `write`.
struct Batched<'a> {
    file: &'a mut File,
    pending: &'a mut Vec<u8>,
    /// Bytes written to `file` so far.
    written: u64,
}

impl Write for Batched<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(bytes);
        if self.pending.len() >= CHUNK {
            self.flush()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.write_all(self.pending)?;
        self.written = self.written.saturating_add(self.pending.len() as u64);
        self.pending.clear();
        Ok(())
    }
}

/// Reads into `buffer` until it is full or `content` ends; returns the bytes read.
fn read_up_to(content: &mut impl Read, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match content.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Writes a regular file's `size` content bytes from `content` as raw deflate: stored
/// blocks when its first chunk looks incompressible, the fast zlib level otherwise.
fn deflate_content(
    content: &mut impl Read,
    size: u64,
    out: &mut Batched<'_>,
    scratch: &mut Deflater,
) -> io::Result<()> {
    let first = read_up_to(content, &mut scratch.input)?;
    if looks_incompressible(&scratch.input[..first]) {
        let rest = io::Cursor::new(&scratch.input[..first]).chain(content);
        return stored::write_framed_with(rest, size, out, &mut scratch.block);
    }
    let mut filled = first;
    loop {
        scratch.encoder.write_all(&scratch.input[..filled])?;
        out.write_all(scratch.encoder.get_ref())?;
        scratch.encoder.get_mut().clear();
        filled = read_up_to(content, &mut scratch.input)?;
        if filled == 0 {
            break;
        }
    }
    scratch.encoder.try_finish()?;
    out.write_all(scratch.encoder.get_ref())?;
    // Ready for the next object, keeping the compressor's state and buffer allocated.
    let mut output = std::mem::take(scratch.encoder.get_mut());
    output.clear();
    scratch.encoder.reset(output)?;
    Ok(())
}

/// Copies one object from `source` into the drive. Returns the bytes written, or None when
/// it was there already.
fn write_object(
    writer: &DriveWriter,
    source: &Repo,
    object: ObjectId,
    scratch: &mut Scratch,
) -> Result<Option<u64>, PrepareError> {
    let write_error = |path: PathBuf| move |e: io::Error| PrepareError::io("write", path, e);
    match object.kind {
        ObjectKind::File if source.mode() == RepoMode::Archive => {
            let mut stored = source.open_archived_content(&object.checksum)?;
            writer.write_object(object, |file| {
                io::copy(&mut stored.file, file).map_err(write_error(source.object_path(object)))
            })
        }
        ObjectKind::File => {
            let (header, content) = source.open_content(&object.checksum)?;
            let format = |source| PrepareError::Format { object, source };
            let header_bytes = header.archive_header_bytes().map_err(format)?;
            let mut hasher = ContentHasher::new(&header).map_err(format)?;
            writer.write_object(object, |file| {
                let path = source.object_path(object);
                let mut content = Hashing {
                    inner: content,
                    hasher: &mut hasher,
                };
                let mut out = Batched {
                    file,
                    pending: &mut scratch.output,
                    written: 0,
                };
                out.pending.clear();
                out.write_all(&header_bytes)
                    .map_err(write_error(path.clone()))?;
                if header.is_regular() {
                    // Reading the source and writing the drive fail alike here.
                    deflate_content(&mut content, header.size, &mut out, &mut scratch.deflater)
                        .map_err(|e| PrepareError::io("copy", path.clone(), e))?;
                }
                out.flush().map_err(write_error(path.clone()))?;
                if hasher.finish() != object.checksum {
                    return Err(PrepareError::SourceCorrupt {
                        repo: source.path().to_path_buf(),
                        object,
                    });
                }
                Ok(out.written)
            })
        }
        kind => {
            let bytes = source.read_metadata(kind, &object.checksum)?;
            if kind != ObjectKind::CommitMeta && metadata_checksum(&bytes) != object.checksum {
                return Err(PrepareError::SourceCorrupt {
                    repo: source.path().to_path_buf(),
                    object,
                });
            }
            if kind == ObjectKind::CommitMeta {
                // Replaced when the publisher's signatures changed; the only object that may.
                let relative = format!(
                    "objects/{}/{}.commitmeta",
                    &object.checksum.to_hex()[..2],
                    &object.checksum.to_hex()[2..]
                );
                writer.write_file(&relative, &bytes)?;
                return Ok(Some(bytes.len() as u64));
            }
            writer.write_object(object, |file| {
                file.write_all(&bytes)
                    .map(|()| bytes.len() as u64)
                    .map_err(write_error(source.object_path(object)))
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Raw deflate of `content` as one worker writes it, with `scratch` kept from before.
    fn deflated(content: &[u8], scratch: &mut Scratch) -> Vec<u8> {
        let path = std::env::temp_dir().join(format!("ferry-deflate-{}", rand::random::<u64>()));
        let mut file = File::create(&path).expect("create");
        let mut out = Batched {
            file: &mut file,
            pending: &mut scratch.output,
            written: 0,
        };
        deflate_content(
            &mut &content[..],
            content.len() as u64,
            &mut out,
            &mut scratch.deflater,
        )
        .expect("deflate");
        out.flush().expect("flush");
        let written = out.written;
        let bytes = std::fs::read(&path).expect("read");
        let _ = std::fs::remove_file(&path);
        assert_eq!(written, bytes.len() as u64, "bytes counted as written");
        bytes
    }

    #[test]
    fn one_worker_deflates_object_after_object_each_on_its_own() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut random = |len: usize| -> Vec<u8> {
            (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state >> 32) as u8
                })
                .collect()
        };
        let text = |len: usize| -> Vec<u8> {
            b"an object that compresses well; "
                .iter()
                .copied()
                .cycle()
                .take(len)
                .collect()
        };
        let contents = [
            text(333),
            random(3 * CHUNK + 17),
            text(0),
            text(2 * CHUNK + 5),
            random(700),
            text(40),
        ];
        let mut scratch = Scratch::new();
        for content in &contents {
            let deflated = deflated(content, &mut scratch);
            let mut inflated = Vec::new();
            flate2::read::DeflateDecoder::new(&deflated[..])
                .read_to_end(&mut inflated)
                .expect("inflate");
            assert_eq!(inflated.len(), content.len());
            assert!(
                inflated == *content,
                "{} bytes came back different",
                content.len()
            );
            if looks_incompressible(&content[..content.len().min(CHUNK)]) {
                // Stored blocks: the content and 5 bytes per block.
                assert_eq!(
                    deflated.len() as u64,
                    stored::framed_len(content.len() as u64)
                );
            } else if content.len() > 1000 {
                assert!(deflated.len() < content.len() / 4, "text was compressed");
            }
        }
    }
}
