//! OSTree static deltas, read and applied in libostree's format.
//!
//! A delta from commit A to B (or from nothing to B) lives at
//! `deltas/<b64(A)[0:2]>/<b64(A)[2:]>-<b64(B)>/` (from scratch: `deltas/<b64(B)[0:2]>/<b64(B)[2:]>/`),
//! with checksums in OSTree's modified base64 (`/` written `_`, no padding). It holds a
//! `superblock` (metadata, from, to, the whole new commit, part headers, fallback objects)
//! and numbered parts, unless the parts are inlined in the superblock's metadata.
//!
//! A part is a compression byte (`0` none, `x` xz) and `(a(uuu)aa(ayay)ayay)`: modes,
//! xattrs, payload and an operation stream that creates, in order, the objects its header
//! names. Every object goes through the repository's normal write path, which hashes it
//! against its name, so a delta can create nothing an object pull would not.

mod bspatch;
mod frame;
pub mod write;

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use base64::Engine;
use sha2::{Digest, Sha256};

use crate::object::{Checksum, FileHeader, ObjectId, ObjectKind, Xattr, S_IFLNK, S_IFMT, S_IFREG};
use crate::repo::{Repo, RepoError, Transaction};

use frame::{var, BYTE, U32, U64};

/// Largest superblock read. Real ones hold the commit and a few dozen part headers (each
/// listing the objects of its part, 33 bytes apiece): a from-scratch delta of a 300,000
/// object tree is ~10 MiB.
pub const MAX_SUPERBLOCK_SIZE: u64 = 32 * 1024 * 1024;

/// Largest part, compressed or not, and largest object a part creates. libostree cuts parts
/// at 32 MiB by default, but never splits a file, so this leaves room for big files; a part
/// held in memory while it is applied costs at most about three times this. Beyond it the
/// objects are pulled one by one instead.
pub const MAX_PART_SIZE: u64 = 256 * 1024 * 1024;

/// Most parts, fallbacks or objects of one part a delta may list.
const MAX_ENTRIES: usize = 1_000_000;

/// The metadata key of the summary's map of deltas to their superblock checksums.
pub const SUMMARY_STATIC_DELTAS_KEY: &str = "ostree.static-deltas";

/// Why a static delta could not be read or applied.
#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    /// The delta's structure is not what OSTree writes; what is wrong.
    #[error("malformed static delta: {0}")]
    Malformed(&'static str),
    /// A list in the delta is longer than Ferry reads.
    #[error("static delta lists too many entries in {what} ({count})")]
    TooMany {
        /// Which list.
        what: &'static str,
        /// Its length.
        count: usize,
    },
    /// A part is larger than Ferry reads.
    #[error("static delta part {index} is {size} bytes, more than the {max} allowed")]
    TooLarge {
        /// The part's index in the superblock.
        index: usize,
        /// The part's size.
        size: u64,
        /// The largest size allowed.
        max: u64,
    },
    /// A part does not hash to the checksum the superblock lists.
    #[error("static delta part {index} hashes to {actual}, not {expected}")]
    PartChecksum {
        /// The part's index in the superblock.
        index: usize,
        /// The checksum the superblock lists.
        expected: Checksum,
        /// The checksum of the bytes read.
        actual: Checksum,
    },
    /// The commit in the superblock does not hash to the delta's target.
    #[error("the superblock's commit hashes to {actual}, not the delta's target {expected}")]
    CommitMismatch {
        /// The delta's target commit.
        expected: Checksum,
        /// The checksum of the commit bytes in the superblock.
        actual: Checksum,
    },
    /// A part in a format version Ferry does not read.
    #[error("static delta part {index} has unsupported version {version}")]
    PartVersion {
        /// The part's index in the superblock.
        index: usize,
        /// The part's version.
        version: u32,
    },
    /// A part compressed with a method other than none (0) or xz (`x`).
    #[error("static delta part uses unknown compression {0:#04x}")]
    Compression(u8),
    /// A part's compressed bytes do not decompress.
    #[error("static delta part does not decompress")]
    Decompress(#[source] std::io::Error),
    /// A part being written could not be compressed.
    #[error("cannot compress a static delta part")]
    Compress(#[source] std::io::Error),
    /// A bsdiff patch between two versions of a file could not be made.
    #[error("cannot make a bsdiff patch")]
    Bsdiff(#[source] std::io::Error),
    /// An operation of a part cannot be carried out.
    #[error("static delta operation {op} at {position}: {reason}")]
    Op {
        /// The operation's code.
        op: char,
        /// Its offset in the part's operation stream.
        position: usize,
        /// Why it cannot be carried out.
        reason: &'static str,
    },
    /// A bsdiff patch in a part is malformed; what is wrong.
    #[error("bsdiff patch in static delta: {0}")]
    Bspatch(&'static str),
    /// Reading or writing the repository failed.
    #[error(transparent)]
    Repo(#[from] RepoError),
}

/// OSTree's modified base64 of a checksum: `/` as `_`, no `=` padding.
fn modified_base64(checksum: &Checksum) -> String {
    base64::engine::general_purpose::STANDARD_NO_PAD
        .encode(checksum.as_bytes())
        .replace('/', "_")
}

/// The delta's directory relative to the repository, e.g. `deltas/ab/cdef…-ghij…`.
pub fn delta_dir(from: Option<&Checksum>, to: &Checksum) -> String {
    let to = modified_base64(to);
    match from {
        Some(from) => {
            let from = modified_base64(from);
            format!("deltas/{}/{}-{}", &from[..2], &from[2..], to)
        }
        None => format!("deltas/{}/{}", &to[..2], &to[2..]),
    }
}

/// The superblock's path relative to the repository.
pub fn superblock_path(from: Option<&Checksum>, to: &Checksum) -> String {
    format!("{}/superblock", delta_dir(from, to))
}

/// Part `index`'s path relative to the repository.
pub fn part_path(from: Option<&Checksum>, to: &Checksum, index: usize) -> String {
    format!("{}/{index}", delta_dir(from, to))
}

/// The summary's name for a delta: `FROM-TO` or `TO`, in hex.
pub fn delta_name(from: Option<&Checksum>, to: &Checksum) -> String {
    match from {
        Some(from) => format!("{from}-{to}"),
        None => to.to_hex(),
    }
}

/// The delta index of `to` relative to the repository (libostree's
/// `delta-indexes/<b64(to)[0:2]>/<b64(to)[2:]>.index`): an `a{sv}` holding the same
/// [`SUMMARY_STATIC_DELTAS_KEY`] map as a summary, for the deltas to `to` only.
pub fn index_path(to: &Checksum) -> String {
    let to = modified_base64(to);
    format!("delta-indexes/{}/{}.index", &to[..2], &to[2..])
}

/// The summary key saying deltas are listed in `delta-indexes/` rather than (only) in the
/// summary.
pub const SUMMARY_INDEXED_DELTAS_KEY: &str = "ostree.summary.indexed-deltas";

/// Largest delta index read: one entry per delta to one commit.
pub const MAX_INDEX_SIZE: u64 = 1024 * 1024;

/// A delta to some commit a listing names: from which commit (None: from scratch), and the
/// sha256 of its superblock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listed {
    /// The commit the delta starts from; None for a delta from scratch.
    pub from: Option<Checksum>,
    /// The checksum of the delta's superblock.
    pub superblock: Checksum,
}

/// The deltas to `to` in a `ostree.static-deltas` map (`a{sv}`: delta name to the `ay`
/// checksum of its superblock). Entries that are malformed are skipped.
pub fn listed_deltas(map: &crate::object::Metadata, to: &Checksum) -> Vec<Listed> {
    let to_hex = to.to_hex();
    let mut out = Vec::new();
    for (name, value) in map.entries() {
        let from = match name.split_once('-') {
            Some((from, target)) if target == to_hex => match Checksum::from_hex(from) {
                Ok(from) => Some(from),
                Err(_) => continue,
            },
            None if name == to_hex => None,
            _ => continue,
        };
        let Some(Ok(superblock)) = value.as_bytes().map(|raw| checksum("listing", raw)) else {
            continue;
        };
        out.push(Listed { from, superblock });
    }
    out
}

/// One part as the superblock describes it.
#[derive(Debug, Clone)]
pub struct PartHeader {
    /// The part's checksum, as listed in the superblock.
    pub checksum: Checksum,
    /// Bytes of the part file.
    pub size: u64,
    /// Bytes of the objects it creates, unpacked.
    pub uncompressed_size: u64,
    /// The objects it creates, in the order its operations create them.
    pub objects: Vec<ObjectId>,
}

/// An object the delta leaves to be fetched on its own.
#[derive(Debug, Clone)]
pub struct Fallback {
    /// The object.
    pub object: ObjectId,
    /// Its size as an archive object, the form the fallback fetches.
    pub compressed_size: u64,
    /// Its size unpacked.
    pub uncompressed_size: u64,
}

/// A parsed superblock.
#[derive(Debug, Clone)]
pub struct Superblock {
    /// The commit the delta starts from; None for a delta from scratch.
    pub from: Option<Checksum>,
    /// The commit the delta leads to.
    pub to: Checksum,
    /// The new commit's bytes, as they hash to `to`.
    pub commit: Vec<u8>,
    /// The parts, in the order they are applied.
    pub parts: Vec<PartHeader>,
    /// Objects the delta does not carry.
    pub fallbacks: Vec<Fallback>,
    /// Parts carried inside the superblock (`--inline`), by index.
    inline_parts: BTreeMap<usize, Vec<u8>>,
}

fn object_kind(number: u8) -> Result<ObjectKind, DeltaError> {
    match ObjectKind::from_ostree_number(number) {
        Some(kind @ (ObjectKind::File | ObjectKind::DirTree | ObjectKind::DirMeta)) => Ok(kind),
        Some(ObjectKind::Commit) => Ok(ObjectKind::Commit),
        _ => Err(DeltaError::Malformed("unknown object type")),
    }
}

fn checksum(what: &'static str, bytes: &[u8]) -> Result<Checksum, DeltaError> {
    Checksum::from_slice(bytes).map_err(|_| DeltaError::Malformed(what))
}

/// The first bytes of a signed superblock: libostree's `OSTREE_STATIC_DELTA_SIGNED_MAGIC`
/// (`0x4F535453474E4454`), which it stores big-endian.
const SIGNED_MAGIC: &[u8; 8] = b"OSTSGNDT";

/// A superblock file split into the superblock and, when `ostree static-delta generate
/// --sign` wrapped it in libostree's signed format (`(taya{sv})`: the magic, the superblock's
/// bytes, and signatures of those bytes by type), the signatures.
#[derive(Debug, Clone, Copy)]
pub struct SuperblockFile<'a> {
    /// The superblock's bytes: the file itself, or the bytes inside the wrapper (what the
    /// signatures cover).
    pub superblock: &'a [u8],
    /// The wrapper's `a{sv}` of `ostree.sign.<type>` signatures; None for a plain file.
    pub signatures: Option<&'a [u8]>,
}

impl<'a> SuperblockFile<'a> {
    /// Splits a superblock file, checking the wrapper's framing. Its signatures are checked
    /// only where the remote asks (`sign-verify-deltas`, [`crate::trust::RemotePolicy`]):
    /// the superblock's commit is verified like any other commit, and every object is
    /// hashed against its name.
    pub fn split(bytes: &'a [u8]) -> Result<Self, DeltaError> {
        const WHAT: &str = "signed superblock";
        if bytes.len() as u64 > MAX_SUPERBLOCK_SIZE {
            return Err(DeltaError::Malformed("superblock too large"));
        }
        if !bytes.starts_with(SIGNED_MAGIC) {
            return Ok(Self {
                superblock: bytes,
                signatures: None,
            });
        }
        let members = frame::tuple(WHAT, bytes, &[U64, var(1), var(8)])?;
        // As libostree, a wrapper must hold at least one signature.
        let signatures = frame::vardict(WHAT, members[2], MAX_ENTRIES)?;
        if !signatures
            .iter()
            .any(|(key, _, _)| key.starts_with("ostree.sign."))
        {
            return Err(DeltaError::Malformed(
                "signed superblock without a signature",
            ));
        }
        let inner = members[1];
        if inner.starts_with(SIGNED_MAGIC) {
            return Err(DeltaError::Malformed(
                "signed superblock inside a signed superblock",
            ));
        }
        Ok(Self {
            superblock: inner,
            signatures: Some(members[2]),
        })
    }
}

impl Superblock {
    /// Parses a superblock, signed or not, and checks that its commit hashes to its `to`
    /// checksum.
    pub fn parse(bytes: &[u8]) -> Result<Self, DeltaError> {
        const WHAT: &str = "superblock";
        let bytes = SuperblockFile::split(bytes)?.superblock;
        // (a{sv} t ay ay (commit) ay a(uayttay) a(yaytt))
        let members = frame::tuple(
            WHAT,
            bytes,
            &[var(8), U64, var(1), var(1), var(8), var(1), var(8), var(8)],
        )?;
        let metadata = frame::vardict(WHAT, members[0], MAX_ENTRIES)?;
        let mut swap = false;
        for (key, value, type_str) in &metadata {
            if *key == "ostree.endianness" && *type_str == b"y" {
                swap = value.first() == Some(&b'B');
            }
        }
        let from = match members[2] {
            [] => None,
            raw => Some(checksum("from checksum", raw)?),
        };
        let to = checksum("to checksum", members[3])?;
        let commit = members[4].to_vec();
        let actual = crate::object::metadata_checksum(&commit);
        if actual != to {
            return Err(DeltaError::CommitMismatch {
                expected: to,
                actual,
            });
        }
        if !members[5].is_empty() {
            return Err(DeltaError::Malformed("recursive deltas are not supported"));
        }
        let u64_of = |raw: &[u8]| {
            let value = frame::u64_le(raw);
            if swap {
                value.swap_bytes()
            } else {
                value
            }
        };
        let mut parts = Vec::new();
        for entry in frame::var_array(WHAT, members[6], 8, MAX_ENTRIES)? {
            let fields = frame::tuple(WHAT, entry, &[U32, var(1), U64, U64, var(1)])?;
            let version = frame::u32_le(fields[0]);
            let version = if swap { version.swap_bytes() } else { version };
            if version != 0 {
                return Err(DeltaError::PartVersion {
                    index: parts.len(),
                    version,
                });
            }
            let mut objects = Vec::new();
            for raw in frame::fixed_array(WHAT, fields[4], 33)? {
                objects.push(ObjectId::new(
                    checksum("part object", &raw[1..])?,
                    object_kind(raw[0])?,
                ));
            }
            parts.push(PartHeader {
                checksum: checksum("part checksum", fields[1])?,
                size: u64_of(fields[2]),
                uncompressed_size: u64_of(fields[3]),
                objects,
            });
        }
        let mut fallbacks = Vec::new();
        for entry in frame::var_array(WHAT, members[7], 8, MAX_ENTRIES)? {
            let fields = frame::tuple(WHAT, entry, &[BYTE, var(1), U64, U64])?;
            fallbacks.push(Fallback {
                object: ObjectId::new(checksum("fallback", fields[1])?, object_kind(fields[0][0])?),
                compressed_size: u64_of(fields[2]),
                uncompressed_size: u64_of(fields[3]),
            });
        }
        let mut inline_parts = BTreeMap::new();
        let prefix = format!("{}/", delta_dir(from.as_ref(), &to));
        for (key, value, type_str) in metadata {
            if let Some(index) = key.strip_prefix(&prefix) {
                if type_str != b"(yay)" {
                    continue;
                }
                if let Ok(index) = index.parse::<usize>() {
                    inline_parts.insert(index, value.to_vec());
                }
            }
        }
        Ok(Self {
            from,
            to,
            commit,
            parts,
            fallbacks,
            inline_parts,
        })
    }

    /// The bytes of part `index` when the superblock carries it.
    pub fn inline_part(&self, index: usize) -> Option<&[u8]> {
        self.inline_parts.get(&index).map(Vec::as_slice)
    }

    /// Bytes of the parts to fetch (inline parts cost nothing more).
    pub fn external_parts_size(&self) -> u64 {
        self.parts
            .iter()
            .enumerate()
            .filter(|(index, _)| !self.inline_parts.contains_key(index))
            .map(|(_, part)| part.size)
            .sum()
    }
}

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
    use super::*;
    use crate::object::ContentHasher;
    use crate::repo::{Repo, RepoMode};

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

    /// Superblocks written by `ostree static-delta generate` (scripts/fuzz-corpus.sh): one
    /// from scratch with its part inline, one from a parent with a part file.
    #[test]
    fn parses_superblocks_written_by_ostree() {
        let mut inline = 0;
        for bytes in [
            &include_bytes!("../../../fuzz/corpus/delta/1.superblock")[..],
            &include_bytes!("../../../fuzz/corpus/delta/2.superblock")[..],
        ] {
            let superblock = Superblock::parse(bytes).unwrap();
            assert_eq!(
                crate::object::metadata_checksum(&superblock.commit),
                superblock.to
            );
            assert_eq!(superblock.parts.len(), 1);
            assert!(!superblock.parts[0].objects.is_empty());
            if superblock.inline_part(0).is_some() {
                inline += 1;
                assert!(superblock.from.is_none());
                let payload = open_part(&superblock, 0, None).unwrap();
                assert!(payload.len() as u64 >= superblock.parts[0].uncompressed_size / 2);
            } else {
                assert!(superblock.from.is_some());
                assert!(open_part(&superblock, 0, None).is_err());
            }
            let mut truncated = bytes.to_vec();
            truncated.truncate(bytes.len() - 1);
            assert!(Superblock::parse(&truncated).is_err());
        }
        assert_eq!(inline, 1);
    }

    /// `superblock` wrapped as `ostree static-delta generate --sign` wraps it, with
    /// `signatures` under their `ostree.sign.*` keys.
    fn signed(superblock: &[u8], signatures: &[(&str, &[u8])]) -> Vec<u8> {
        let mut metadata = crate::object::Metadata::new();
        for (key, signature) in signatures {
            metadata.insert_byte_arrays(key, &[signature]).unwrap();
        }
        let metadata = metadata.to_bytes().unwrap();
        write::tuple(&[
            (U64, SIGNED_MAGIC),
            (var(1), superblock),
            (var(8), &metadata),
        ])
    }

    #[test]
    fn reads_the_superblock_inside_a_signed_one() {
        let plain = &include_bytes!("../../../fuzz/corpus/delta/2.superblock")[..];
        let expected = Superblock::parse(plain).unwrap();
        let wrapped = signed(plain, &[("ostree.sign.ed25519", &[7; 64])]);
        assert_eq!(&wrapped[..8], b"OSTSGNDT");
        // The signatures cover the superblock's bytes, handed out as they are in the wrapper.
        let file = SuperblockFile::split(&wrapped).unwrap();
        assert_eq!(file.superblock, plain);
        let signatures = crate::object::Metadata::parse(file.signatures.unwrap()).unwrap();
        assert_eq!(
            signatures.get_byte_arrays("ostree.sign.ed25519"),
            Some(vec![vec![7; 64]])
        );
        assert!(SuperblockFile::split(plain).unwrap().signatures.is_none());
        let superblock = Superblock::parse(&wrapped).unwrap();
        assert_eq!(superblock.to, expected.to);
        assert_eq!(superblock.from, expected.from);
        assert_eq!(superblock.commit, expected.commit);
        let checksums = |superblock: &Superblock| -> Vec<Checksum> {
            superblock.parts.iter().map(|part| part.checksum).collect()
        };
        assert_eq!(checksums(&superblock), checksums(&expected));

        // Cut anywhere, the framing or the superblock inside no longer holds.
        for cut in [1, 9, wrapped.len() / 2, wrapped.len() - 1] {
            assert!(Superblock::parse(&wrapped[..cut]).is_err(), "cut at {cut}");
        }
        // A byte of the commit inside changed: the commit no longer hashes to `to`.
        let mut altered = wrapped.clone();
        let commit_at = 8 + plain
            .windows(expected.commit.len())
            .position(|window| window == expected.commit.as_slice())
            .unwrap();
        altered[commit_at + expected.commit.len() / 2] ^= 0xff;
        let error = Superblock::parse(&altered).unwrap_err();
        assert!(
            matches!(error, DeltaError::CommitMismatch { .. }),
            "{error}"
        );
        // No signature, or a signed superblock inside another: not what libostree writes.
        assert!(Superblock::parse(&signed(plain, &[])).is_err());
        assert!(Superblock::parse(&signed(plain, &[("other", &[1])])).is_err());
        let nested = signed(&wrapped, &[("ostree.sign.ed25519", &[7; 64])]);
        assert!(Superblock::parse(&nested).is_err());
    }

    /// A superblock listing deltas to apply before it (libostree's recursive deltas, which
    /// it neither writes nor follows) is refused.
    #[test]
    fn refuses_a_superblock_listing_deltas_to_apply_first() {
        let plain = &include_bytes!("../../../fuzz/corpus/delta/2.superblock")[..];
        let layouts = [var(8), U64, var(1), var(1), var(8), var(1), var(8), var(8)];
        let members = frame::tuple("test", plain, &layouts).unwrap();
        let rebuilt = |recursive: &[u8]| {
            let mut with: Vec<(frame::Layout, &[u8])> = layouts
                .iter()
                .copied()
                .zip(members.iter().copied())
                .collect();
            with[5].1 = recursive;
            write::tuple(&with)
        };
        assert!(Superblock::parse(&rebuilt(&[])).is_ok());
        let error = Superblock::parse(&rebuilt(&[0xab; 64])).unwrap_err();
        assert!(
            matches!(error, DeltaError::Malformed(reason) if reason.contains("recursive")),
            "{error}"
        );
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

    #[test]
    fn paths_use_modified_base64() {
        let to = Checksum::from_array([0xff; 32]);
        let from = Checksum::from_array([0; 32]);
        let b64_to = format!("{}8", "_".repeat(42));
        assert_eq!(
            superblock_path(None, &to),
            format!("deltas/__/{}/superblock", &b64_to[2..])
        );
        assert_eq!(
            part_path(Some(&from), &to, 3),
            format!("deltas/AA/{}-{b64_to}/3", "A".repeat(41))
        );
    }
}
