//! Applying a part: its bytes checked against its header and decompressed, then its
//! operation stream run, creating the objects the header names through the repository's
//! write path.

use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use super::frame::{self, var};
use super::superblock::{PartHeader, Superblock};
use super::{bspatch, checksum, DeltaError, MAX_ENTRIES, MAX_PART_SIZE};
use crate::object::{Checksum, FileHeader, ObjectKind, Xattr, S_IFLNK, S_IFMT, S_IFREG};
use crate::repo::{Repo, Transaction};

/// Checks a fetched part file against its header and returns its uncompressed payload
/// variant. Inline parts are part of the superblock, whose commit was verified; they carry
/// no checksum of their own.
pub fn open_part(
    superblock: &Superblock,
    index: usize,
    fetched: Option<&[u8]>,
) -> Result<Vec<u8>, DeltaError> {
    let header = superblock
        .parts
        .get(index)
        .ok_or(DeltaError::Malformed("no such part"))?;
    if header.size > MAX_PART_SIZE || header.uncompressed_size > MAX_PART_SIZE {
        return Err(DeltaError::TooLarge {
            index,
            size: header.size.max(header.uncompressed_size),
            max: MAX_PART_SIZE,
        });
    }
    let bytes = match (superblock.inline_part(index), fetched) {
        (Some(inline), _) => inline,
        (None, Some(fetched)) => {
            if fetched.len() as u64 != header.size {
                return Err(DeltaError::Malformed("part size differs from its header"));
            }
            let actual = Checksum::from_array(Sha256::digest(fetched).into());
            if actual != header.checksum {
                return Err(DeltaError::PartChecksum {
                    index,
                    expected: header.checksum,
                    actual,
                });
            }
            fetched
        }
        (None, None) => return Err(DeltaError::Malformed("part missing")),
    };
    let (compression, body) = bytes
        .split_first()
        .ok_or(DeltaError::Malformed("empty part"))?;
    if body.len() as u64 > MAX_PART_SIZE {
        return Err(DeltaError::TooLarge {
            index,
            size: body.len() as u64,
            max: MAX_PART_SIZE,
        });
    }
    match compression {
        0 => Ok(body.to_vec()),
        b'x' => {
            let mut out = Vec::new();
            let decoder = xz2::read::XzDecoder::new(body);
            decoder
                .take(MAX_PART_SIZE + 1)
                .read_to_end(&mut out)
                .map_err(DeltaError::Decompress)?;
            if out.len() as u64 > MAX_PART_SIZE {
                return Err(DeltaError::TooLarge {
                    index,
                    size: out.len() as u64,
                    max: MAX_PART_SIZE,
                });
            }
            Ok(out)
        }
        other => Err(DeltaError::Compression(*other)),
    }
}

/// What applying a part did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Applied {
    /// Metadata objects created (dirtree, dirmeta, commit).
    pub metadata_objects: u64,
    /// Content (file) objects created.
    pub content_objects: u64,
    /// Bytes of the objects created, unpacked.
    pub bytes_written: u64,
}

struct Ops<'a> {
    stream: &'a [u8],
    position: usize,
    op: char,
}

impl Ops<'_> {
    fn error(&self, reason: &'static str) -> DeltaError {
        DeltaError::Op {
            op: self.op,
            position: self.position,
            reason,
        }
    }

    fn varuint(&mut self) -> Result<u64, DeltaError> {
        let mut value: u64 = 0;
        for count in 0..10 {
            let byte = *self
                .stream
                .get(self.position)
                .ok_or_else(|| self.error("varint runs past the end"))?;
            self.position += 1;
            value |= u64::from(byte & 0x7f).checked_shl(7 * count).unwrap_or(0);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.error("varint too long"))
    }

    fn index(&mut self) -> Result<usize, DeltaError> {
        let value = self.varuint()?;
        usize::try_from(value).map_err(|_| self.error("value out of range"))
    }
}

/// Where a piece of a content object's bytes comes from.
enum Step<'a> {
    /// Bytes of the part's payload.
    Payload(&'a [u8]),
    /// A range of a source object (`w` while a read source is set).
    Source {
        source: ReadSource,
        offset: u64,
        length: u64,
        at: usize,
    },
    /// A bsdiff patch of a source object, giving the whole object (`B`).
    Patch { source: ReadSource, patch: &'a [u8] },
}

/// A read source set by `r`, and where, to place errors reading it.
#[derive(Clone, Copy)]
struct ReadSource {
    checksum: Checksum,
    at: usize,
}

/// One object a part creates, as its operations describe it; checked against the payload
/// and the part header, but not yet built.
enum Job<'a> {
    Metadata {
        kind: ObjectKind,
        checksum: Checksum,
        bytes: &'a [u8],
    },
    Content {
        object: Checksum,
        header: FileHeader,
        steps: Vec<Step<'a>>,
    },
}

impl Job<'_> {
    /// Bytes of the object, unpacked.
    fn size(&self) -> u64 {
        match self {
            Job::Metadata { bytes, .. } => bytes.len() as u64,
            Job::Content { header, .. } => header.size,
        }
    }
}

/// The content object being described by open / write / bspatch / close.
struct Open<'a> {
    object: Checksum,
    header: FileHeader,
    steps: Vec<Step<'a>>,
    /// Bytes the steps so far give it.
    written: u64,
}

/// Objects up to this size, from source objects up to this size, are built on worker
/// threads; larger ones one at a time after them, so a part of huge patched files holds at
/// most a few of them in memory.
const PARALLEL_MAX_SIZE: u64 = 8 * 1024 * 1024;

/// Applies one opened part (from [`open_part`]) whose header is part `index` of
/// `superblock`, writing the objects it creates through `transaction`. Sizes and offsets
/// are checked against the payload before anything is written; an operation that reads
/// outside it is refused. The objects are independent of one another, so up to `workers`
/// threads build and store them: reading the source objects of patches and hashing what is
/// written overlap instead of running one after another.
pub fn apply_part(
    transaction: &Transaction<'_>,
    superblock: &Superblock,
    index: usize,
    payload_variant: &[u8],
    workers: usize,
) -> Result<Applied, DeltaError> {
    let header = superblock
        .parts
        .get(index)
        .ok_or(DeltaError::Malformed("no such part"))?;
    if header.objects.is_empty() {
        return Ok(Applied::default());
    }
    let members = frame::tuple("part", payload_variant, &[var(4), var(1), var(1), var(1)])?;
    let modes = frame::fixed_array("part", members[0], 12)?;
    let xattr_lists = frame::var_array("part", members[1], 1, MAX_ENTRIES)?;
    let jobs = plan(header, &modes, &xattr_lists, members[2], members[3])?;
    run_jobs(transaction, &jobs, workers)
}

/// Reads a part's operation stream into the objects it creates, checking every offset and
/// size against the payload and the objects against the part header.
fn plan<'a>(
    header: &PartHeader,
    modes: &[&[u8]],
    xattr_lists: &[&[u8]],
    payload: &'a [u8],
    stream: &[u8],
) -> Result<Vec<Job<'a>>, DeltaError> {
    let mut ops = Ops {
        stream,
        position: 0,
        op: '?',
    };
    let mut jobs = Vec::with_capacity(header.objects.len());
    let mut read_source: Option<ReadSource> = None;
    let mut open: Option<Open<'a>> = None;

    let slice = |ops: &Ops<'_>, offset: u64, length: u64| -> Result<&'a [u8], DeltaError> {
        let start = usize::try_from(offset).map_err(|_| ops.error("offset out of range"))?;
        let length = usize::try_from(length).map_err(|_| ops.error("length out of range"))?;
        start
            .checked_add(length)
            .and_then(|end| payload.get(start..end))
            .ok_or_else(|| ops.error("reads outside the part's payload"))
    };
    let next_object = |ops: &Ops<'_>, created: usize| {
        header
            .objects
            .get(created)
            .copied()
            .ok_or_else(|| ops.error("more objects than the header lists"))
    };

    while let Some(&opcode) = ops.stream.get(ops.position) {
        let at = ops.position;
        ops.op = char::from(opcode);
        ops.position += 1;
        match opcode {
            b'S' => {
                if open.is_some() {
                    return Err(ops.error("an object is already open"));
                }
                let object = next_object(&ops, jobs.len())?;
                if object.kind.is_metadata() {
                    let length = ops.varuint()?;
                    let offset = ops.varuint()?;
                    let bytes = slice(&ops, offset, length)?;
                    if object.kind == ObjectKind::Commit {
                        return Err(ops.error("a part may not create a commit"));
                    }
                    jobs.push(Job::Metadata {
                        kind: object.kind,
                        checksum: object.checksum,
                        bytes,
                    });
                } else {
                    let file_header = content_header(&mut ops, modes, xattr_lists)?;
                    let size = ops.varuint()?;
                    let offset = ops.varuint()?;
                    let bytes = slice(&ops, offset, size)?;
                    jobs.push(Job::Content {
                        object: object.checksum,
                        header: FileHeader {
                            size,
                            ..file_header
                        },
                        steps: vec![Step::Payload(bytes)],
                    });
                }
                read_source = None;
            }
            b'o' => {
                if open.is_some() {
                    return Err(ops.error("an object is already open"));
                }
                let object = next_object(&ops, jobs.len())?;
                if object.kind != ObjectKind::File {
                    return Err(ops.error("only content objects are opened"));
                }
                let file_header = content_header(&mut ops, modes, xattr_lists)?;
                let size = ops.varuint()?;
                if size > MAX_PART_SIZE {
                    return Err(ops.error("object larger than allowed"));
                }
                open = Some(Open {
                    object: object.checksum,
                    header: FileHeader {
                        size,
                        ..file_header
                    },
                    steps: Vec::new(),
                    written: 0,
                });
            }
            b'w' => {
                let size = ops.varuint()?;
                let offset = ops.varuint()?;
                let target = open
                    .as_mut()
                    .ok_or_else(|| ops.error("no object is open"))?;
                let step = match read_source {
                    Some(source) => {
                        offset
                            .checked_add(size)
                            .filter(|end| *end <= MAX_PART_SIZE)
                            .ok_or_else(|| ops.error("reads outside the source object"))?;
                        Step::Source {
                            source,
                            offset,
                            length: size,
                            at,
                        }
                    }
                    None => Step::Payload(slice(&ops, offset, size)?),
                };
                if target.written.saturating_add(size) > target.header.size {
                    return Err(ops.error("writes more than the object's size"));
                }
                target.written += size;
                target.steps.push(step);
            }
            b'r' => {
                let offset = ops.varuint()?;
                let raw = slice(&ops, offset, 32)?;
                read_source = Some(ReadSource {
                    checksum: checksum("read source", raw)?,
                    at,
                });
            }
            b'R' => read_source = None,
            b'B' => {
                let offset = ops.varuint()?;
                let length = ops.varuint()?;
                let patch = slice(&ops, offset, length)?;
                let target = open
                    .as_mut()
                    .ok_or_else(|| ops.error("no object is open"))?;
                let source = read_source.ok_or_else(|| ops.error("no read source is set"))?;
                // The patch gives the whole object, replacing what was written before it.
                target.steps.push(Step::Patch { source, patch });
                target.written = target.header.size;
            }
            b'c' => {
                let done = open.take().ok_or_else(|| ops.error("no object is open"))?;
                if done.written != done.header.size {
                    return Err(ops.error("object closed before all its bytes were written"));
                }
                jobs.push(Job::Content {
                    object: done.object,
                    header: done.header,
                    steps: done.steps,
                });
                // As libostree's close: the read source ends with the object.
                read_source = None;
            }
            _ => return Err(ops.error("unknown operation")),
        }
    }
    if open.is_some() {
        return Err(ops.error("the operations end with an object open"));
    }
    if jobs.len() != header.objects.len() {
        return Err(DeltaError::Malformed(
            "a part created fewer objects than its header lists",
        ));
    }
    Ok(jobs)
}

/// Builds and stores `jobs`: those up to [`PARALLEL_MAX_SIZE`] on up to `workers` threads,
/// then the larger ones (or with a larger source) one at a time. The first failure stops
/// the rest.
fn run_jobs(
    transaction: &Transaction<'_>,
    jobs: &[Job<'_>],
    workers: usize,
) -> Result<Applied, DeltaError> {
    let (small, large): (Vec<&Job<'_>>, Vec<&Job<'_>>) =
        jobs.iter().partition(|job| job.size() <= PARALLEL_MAX_SIZE);
    let deferred: Mutex<Vec<&Job<'_>>> = Mutex::new(Vec::new());
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<DeltaError>> = Mutex::new(None);
    let totals: Mutex<Applied> = Mutex::new(Applied::default());
    let work = || {
        let mut applied = Applied::default();
        while !failed.load(Ordering::Relaxed) {
            let Some(job) = small.get(next.fetch_add(1, Ordering::Relaxed)) else {
                break;
            };
            match run_job(transaction, job, PARALLEL_MAX_SIZE, &mut applied) {
                Ok(true) => {}
                Ok(false) => lock(&deferred).push(*job),
                Err(error) => {
                    failed.store(true, Ordering::Relaxed);
                    lock(&first_error).get_or_insert(error);
                    break;
                }
            }
        }
        lock(&totals).add(applied);
    };
    let threads = workers.clamp(1, small.len().max(1));
    std::thread::scope(|scope| {
        // The calling thread works too; a thread that cannot start leaves its share to it.
        for _ in 1..threads {
            let _ = std::thread::Builder::new().spawn_scoped(scope, work);
        }
        work();
    });
    if let Some(error) = lock(&first_error).take() {
        return Err(error);
    }
    let mut applied = *lock(&totals);
    let deferred = std::mem::take(&mut *lock(&deferred));
    for job in large.into_iter().chain(deferred) {
        run_job(transaction, job, u64::MAX, &mut applied)?;
    }
    Ok(applied)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl Applied {
    fn add(&mut self, other: Applied) {
        self.metadata_objects += other.metadata_objects;
        self.content_objects += other.content_objects;
        self.bytes_written += other.bytes_written;
    }
}

/// Builds one object from its steps and stores it; `Ok(false)` (nothing done) when one of
/// its source objects is larger than `source_limit`.
fn run_job(
    transaction: &Transaction<'_>,
    job: &Job<'_>,
    source_limit: u64,
    applied: &mut Applied,
) -> Result<bool, DeltaError> {
    match job {
        Job::Metadata {
            kind,
            checksum,
            bytes,
        } => {
            transaction.write_metadata(*kind, checksum, bytes)?;
            applied.bytes_written += bytes.len() as u64;
            applied.metadata_objects += 1;
        }
        Job::Content {
            object,
            header,
            steps,
        } => {
            let data = match steps.as_slice() {
                // Spliced whole: written straight from the payload.
                [Step::Payload(bytes)] => std::borrow::Cow::Borrowed(*bytes),
                _ => match build(transaction.repo(), header.size, steps, source_limit)? {
                    Some(data) => std::borrow::Cow::Owned(data),
                    None => return Ok(false),
                },
            };
            write_file(transaction, object, header.clone(), &data)?;
            applied.bytes_written += data.len() as u64;
            applied.content_objects += 1;
        }
    }
    Ok(true)
}

/// The bytes of `source`, read unless `loaded` holds them already; `None` when it is
/// larger than `limit`.
fn load_source<'l>(
    repo: &Repo,
    loaded: &'l mut Option<(Checksum, Vec<u8>)>,
    source: &ReadSource,
    limit: u64,
) -> Result<Option<&'l [u8]>, DeltaError> {
    let error = |reason| DeltaError::Op {
        op: 'r',
        position: source.at,
        reason,
    };
    if loaded
        .as_ref()
        .is_none_or(|(checksum, _)| *checksum != source.checksum)
    {
        *loaded = None;
        let (header, mut reader) = repo.open_content(&source.checksum)?;
        if header.size > limit {
            return Ok(None);
        }
        // Sized from the header, so the object is read in one call instead of a dozen
        // doubling ones; the read below still stops at the bound whatever the header says.
        let expected = header.size.min(MAX_PART_SIZE + 1);
        let mut bytes = Vec::with_capacity(usize::try_from(expected).unwrap_or(0));
        (&mut reader)
            .take(MAX_PART_SIZE + 1)
            .read_to_end(&mut bytes)
            .map_err(|_| error("cannot read the source object"))?;
        if bytes.len() as u64 > MAX_PART_SIZE {
            return Err(error("source object larger than allowed"));
        }
        *loaded = Some((source.checksum, bytes));
    }
    match loaded {
        Some((_, bytes)) => Ok(Some(bytes)),
        None => Err(error("cannot read the source object")),
    }
}

/// The bytes of a content object of `size` bytes made by `steps`; `None` when a source
/// object is larger than `source_limit`.
fn build(
    repo: &Repo,
    size: u64,
    steps: &[Step<'_>],
    source_limit: u64,
) -> Result<Option<Vec<u8>>, DeltaError> {
    let op_error = |op: char, position: usize, reason: &'static str| DeltaError::Op {
        op,
        position,
        reason,
    };
    let size = usize::try_from(size).map_err(|_| DeltaError::Malformed("object too large"))?;
    let mut data = Vec::with_capacity(size);
    // The source object last read: a patch and the writes around it share one.
    let mut loaded: Option<(Checksum, Vec<u8>)> = None;
    for step in steps {
        match step {
            Step::Payload(bytes) => data.extend_from_slice(bytes),
            Step::Source {
                source,
                offset,
                length,
                at,
            } => {
                let Some(old) = load_source(repo, &mut loaded, source, source_limit)? else {
                    return Ok(None);
                };
                let range = usize::try_from(*offset)
                    .ok()
                    .zip(usize::try_from(*length).ok())
                    .and_then(|(start, length)| Some(start..start.checked_add(length)?))
                    .and_then(|range| old.get(range))
                    .ok_or_else(|| op_error('w', *at, "reads outside the source object"))?;
                data.extend_from_slice(range);
            }
            Step::Patch { source, patch } => {
                let Some(old) = load_source(repo, &mut loaded, source, source_limit)? else {
                    return Ok(None);
                };
                data = bspatch::apply(old, patch, size)?;
            }
        }
    }
    if data.len() != size {
        return Err(DeltaError::Malformed(
            "an object's operations give it a different size",
        ));
    }
    Ok(Some(data))
}

/// Reads the mode and xattr indexes of a content op.
fn content_header(
    ops: &mut Ops<'_>,
    modes: &[&[u8]],
    xattr_lists: &[&[u8]],
) -> Result<FileHeader, DeltaError> {
    let mode_index = ops.index()?;
    let xattr_index = ops.index()?;
    let mode = modes
        .get(mode_index)
        .ok_or_else(|| ops.error("mode index out of range"))?;
    let be = |at: usize| {
        let mut raw = [0u8; 4];
        raw.copy_from_slice(&mode[at..at + 4]);
        u32::from_be_bytes(raw)
    };
    let raw_xattrs = xattr_lists
        .get(xattr_index)
        .ok_or_else(|| ops.error("xattr index out of range"))?;
    let mut xattrs = Vec::new();
    for entry in frame::var_array("xattrs", raw_xattrs, 1, MAX_ENTRIES)? {
        let fields = frame::tuple("xattrs", entry, &[var(1), var(1)])?;
        let name = match fields[0].split_last() {
            Some((0, name)) => name,
            _ => return Err(ops.error("xattr name is not NUL-terminated")),
        };
        xattrs.push(Xattr::new(name, fields[1]));
    }
    Ok(FileHeader {
        uid: be(0),
        gid: be(4),
        mode: be(8),
        symlink_target: String::new(),
        xattrs,
        size: 0,
    })
}

/// Writes a regular file or symlink whose bytes (the target, for a symlink) are `data`.
fn write_file(
    transaction: &Transaction<'_>,
    object: &Checksum,
    mut header: FileHeader,
    data: &[u8],
) -> Result<(), DeltaError> {
    match header.mode & S_IFMT {
        S_IFREG => {
            header.size = data.len() as u64;
            transaction.write_content(object, &header, data)?;
        }
        S_IFLNK => {
            header.size = 0;
            header.symlink_target = std::str::from_utf8(data)
                .map_err(|_| DeltaError::Malformed("symlink target is not UTF-8"))?
                .to_owned();
            transaction.write_content(object, &header, std::io::empty())?;
        }
        _ => {
            return Err(DeltaError::Malformed(
                "content is neither a file nor a symlink",
            ))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::object::{ContentHasher, ObjectId};
    use crate::repo::RepoMode;

    /// A part payload `(a(uuu)aa(ayay)ayay)` with one mode (root, 0644 file), one empty xattr
    /// list, `payload` and `ops`; framing offsets are one byte (the tests keep it small).
    fn part_variant(payload: &[u8], ops: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for value in [0u32, 0, S_IFREG | 0o644] {
            out.extend(value.to_be_bytes());
        }
        let modes_end = out.len();
        out.push(0); // aa(ayay) holding one empty list: its one end offset.
        let xattrs_end = out.len();
        out.extend(payload);
        let payload_end = out.len();
        out.extend(ops);
        out.extend([payload_end as u8, xattrs_end as u8, modes_end as u8]);
        assert!(out.len() < 256);
        out
    }

    fn superblock_creating(object: Checksum) -> Superblock {
        Superblock {
            from: None,
            to: Checksum::from_array([0; 32]),
            commit: Vec::new(),
            parts: vec![PartHeader {
                checksum: Checksum::from_array([0; 32]),
                size: 0,
                uncompressed_size: 5,
                objects: vec![ObjectId::new(object, ObjectKind::File)],
            }],
            fallbacks: Vec::new(),
            inline_parts: BTreeMap::new(),
        }
    }

    fn hello_checksum() -> Checksum {
        ContentHasher::checksum(&FileHeader::regular(0, 0, 0o644, 5), b"hello").unwrap()
    }

    #[test]
    fn splices_a_file_and_refuses_reads_outside_the_payload() {
        let dir = tempfile::TempDir::new().unwrap();
        let repo = Repo::init(dir.path(), RepoMode::Archive, None).unwrap();
        let transaction = Transaction::begin(&repo, None).unwrap();
        let superblock = superblock_creating(hello_checksum());

        // Splice 6 bytes at 0, then 5 at 1, of a 5-byte payload; then a write past it.
        for ops in [
            &[b'S', 0, 0, 6, 0][..],
            &[b'S', 0, 0, 5, 1],
            &[b'o', 0, 0, 5, b'w', 5, 3, b'c'],
            &[
                b'S', 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0,
            ],
        ] {
            let error = apply_part(
                &transaction,
                &superblock,
                0,
                &part_variant(b"hello", ops),
                2,
            )
            .unwrap_err();
            assert!(matches!(error, DeltaError::Op { .. }), "{ops:?}: {error}");
        }
        // A varint running past the end of the operations.
        let error = apply_part(
            &transaction,
            &superblock,
            0,
            &part_variant(b"hello", &[b'S', 0, 0, 0x85]),
            2,
        )
        .unwrap_err();
        assert!(matches!(error, DeltaError::Op { .. }), "{error}");

        let done = apply_part(
            &transaction,
            &superblock,
            0,
            &part_variant(b"hello", &[b'S', 0, 0, 5, 0]),
            2,
        )
        .unwrap();
        assert_eq!(done.content_objects, 1);
        transaction.commit().unwrap();
        assert!(repo
            .has_object(ObjectId::new(hello_checksum(), ObjectKind::File))
            .unwrap());
    }

    fn part_creating(objects: &[Checksum]) -> Superblock {
        let mut superblock = superblock_creating(objects[0]);
        superblock.parts[0].objects = objects
            .iter()
            .map(|checksum| ObjectId::new(*checksum, ObjectKind::File))
            .collect();
        superblock
    }

    fn checksum_of(data: &[u8]) -> Checksum {
        ContentHasher::checksum(&FileHeader::regular(0, 0, 0o644, data.len() as u64), data).unwrap()
    }

    #[test]
    fn stores_nothing_of_a_part_whose_later_operation_reads_outside_the_payload() {
        let dir = tempfile::TempDir::new().unwrap();
        let repo = Repo::init(dir.path(), RepoMode::Archive, None).unwrap();
        let transaction = Transaction::begin(&repo, None).unwrap();
        let superblock = part_creating(&[hello_checksum(), checksum_of(b"hello!")]);
        let ops = [b'S', 0, 0, 5, 0, b'S', 0, 0, 6, 0];
        let error = apply_part(
            &transaction,
            &superblock,
            0,
            &part_variant(b"hello", &ops),
            4,
        )
        .unwrap_err();
        assert!(matches!(error, DeltaError::Op { op: 'S', .. }), "{error}");
        // The whole operation stream is checked before the first object is written.
        assert_eq!(transaction.staged_objects(), 0);
        transaction.commit().unwrap();
        assert!(!repo
            .has_object(ObjectId::new(hello_checksum(), ObjectKind::File))
            .unwrap());
    }

    #[test]
    fn builds_objects_from_a_read_source_on_several_threads() {
        let dir = tempfile::TempDir::new().unwrap();
        let repo = Repo::init(dir.path(), RepoMode::BareUserOnly, None).unwrap();
        let source = b"hello, world";
        let source_checksum = checksum_of(source);
        repo.write_content(
            &source_checksum,
            &FileHeader::regular(0, 0, 0o644, source.len() as u64),
            &source[..],
        )
        .unwrap();
        let transaction = Transaction::begin(&repo, None).unwrap();
        // Each object: set the read source, open, copy a range of the source, close.
        let ranges: [(u8, u8); 4] = [(0, 5), (7, 5), (3, 4), (0, 12)];
        let mut ops = Vec::new();
        for (offset, length) in ranges {
            ops.extend([b'r', 0, b'o', 0, 0, length, b'w', length, offset, b'c']);
        }
        let expected: Vec<Checksum> = ranges
            .iter()
            .map(|(offset, length)| {
                checksum_of(&source[usize::from(*offset)..usize::from(offset + length)])
            })
            .collect();
        let superblock = part_creating(&expected);
        let variant = part_variant(source_checksum.as_bytes(), &ops);
        let done = apply_part(&transaction, &superblock, 0, &variant, 4).unwrap();
        assert_eq!(done.content_objects, 4);
        assert_eq!(done.bytes_written, 26);
        transaction.commit().unwrap();
        for checksum in expected {
            assert!(repo
                .has_object(ObjectId::new(checksum, ObjectKind::File))
                .unwrap());
        }

        // An object whose source is larger than the threads take is built after them.
        let large: Vec<u8> = (0..PARALLEL_MAX_SIZE + 1)
            .map(|n| (n % 251) as u8)
            .collect();
        let large_checksum = checksum_of(&large);
        repo.write_content(
            &large_checksum,
            &FileHeader::regular(0, 0, 0o644, large.len() as u64),
            &large[..],
        )
        .unwrap();
        let transaction = Transaction::begin(&repo, None).unwrap();
        let mut payload = large_checksum.as_bytes().to_vec();
        payload.extend(source_checksum.as_bytes());
        // From the large source, then from the small one.
        let ops = [
            b'r', 0, b'o', 0, 0, 100, b'w', 100, 7, b'c', b'r', 32, b'o', 0, 0, 5, b'w', 5, 0, b'c',
        ];
        let expected = [checksum_of(&large[7..107]), checksum_of(b"hello")];
        let superblock = part_creating(&expected);
        let done = apply_part(
            &transaction,
            &superblock,
            0,
            &part_variant(&payload, &ops),
            4,
        )
        .unwrap();
        assert_eq!(done.content_objects, 2);
        transaction.commit().unwrap();
        for checksum in expected {
            assert!(repo
                .has_object(ObjectId::new(checksum, ObjectKind::File))
                .unwrap());
        }

        // A copy reaching past the end of the source object is refused.
        let transaction = Transaction::begin(&repo, None).unwrap();
        let superblock = part_creating(&[checksum_of(b"world!")]);
        let ops = [b'r', 0, b'o', 0, 0, 6, b'w', 6, 7, b'c'];
        let variant = part_variant(source_checksum.as_bytes(), &ops);
        let error = apply_part(&transaction, &superblock, 0, &variant, 4).unwrap_err();
        assert!(matches!(error, DeltaError::Op { op: 'w', .. }), "{error}");
    }

    #[test]
    fn refuses_an_object_that_is_not_what_the_header_names() {
        let dir = tempfile::TempDir::new().unwrap();
        let repo = Repo::init(dir.path(), RepoMode::Bare, None).unwrap();
        let transaction = Transaction::begin(&repo, None).unwrap();
        let claimed = Checksum::from_array([7; 32]);
        let superblock = superblock_creating(claimed);
        let error = apply_part(
            &transaction,
            &superblock,
            0,
            &part_variant(b"hello", &[b'S', 0, 0, 5, 0]),
            2,
        )
        .unwrap_err();
        assert!(matches!(error, DeltaError::Repo(_)), "{error}");
        transaction.commit().unwrap();
        assert!(!repo
            .has_object(ObjectId::new(claimed, ObjectKind::File))
            .unwrap());
        // More objects created than the header lists, or fewer, is refused too.
        let transaction = Transaction::begin(&repo, None).unwrap();
        let superblock = superblock_creating(hello_checksum());
        for ops in [&[b'S', 0, 0, 5, 0, b'S', 0, 0, 5, 0][..], &[]] {
            assert!(apply_part(
                &transaction,
                &superblock,
                0,
                &part_variant(b"hello", ops),
                2
            )
            .is_err());
        }
    }

    #[test]
    fn refuses_parts_of_the_wrong_or_an_oversized_size() {
        let mut superblock = superblock_creating(hello_checksum());
        superblock.parts[0].size = 10;
        let error = open_part(&superblock, 0, Some(&[0; 11])).unwrap_err();
        assert!(matches!(error, DeltaError::Malformed(_)), "{error}");
        let error = open_part(&superblock, 0, Some(&[0; 10])).unwrap_err();
        assert!(matches!(error, DeltaError::PartChecksum { .. }), "{error}");
        superblock.parts[0].uncompressed_size = MAX_PART_SIZE + 1;
        let error = open_part(&superblock, 0, Some(&[0; 10])).unwrap_err();
        assert!(matches!(error, DeltaError::TooLarge { .. }), "{error}");
    }
}
