//! Writing static deltas in libostree's format, so `ostree static-delta apply-offline` and
//! Ferry's own reader apply them: every object of the new commit's closure that the old
//! commit's closure lacks goes into xz-compressed parts, spliced whole or, for a file that
//! replaces another at the same path, as a bsdiff patch of the old one when that is smaller;
//! files too large for a part are listed as fallbacks, fetched on their own.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use base64::Engine;

use crate::object::commit::write_varuint64;
use crate::object::{Checksum, DirTree, Metadata, MetadataValue, ObjectId, ObjectKind};
use crate::repo::{Repo, RepoError};

use super::frame::{var, Layout, BYTE, U32, U64};
use super::{DeltaError, MAX_PART_SIZE, SUMMARY_STATIC_DELTAS_KEY};

/// Payload bytes after which a new part is started (libostree's default chunk size).
const PART_TARGET_SIZE: usize = 32 * 1024 * 1024;

/// What [`generate`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    /// Part files written.
    pub parts: usize,
    /// Objects carried in the parts.
    pub objects: usize,
    /// Objects left to be fetched on their own.
    pub fallbacks: usize,
    /// Objects written as a bsdiff patch of a file of the old commit.
    pub patched: usize,
    /// Bytes of the part files.
    pub compressed_size: u64,
    /// Bytes of the objects the parts create.
    pub uncompressed_size: u64,
    /// The sha256 of the superblock, as summaries and delta indexes list it.
    pub superblock: Checksum,
    /// The objects listed as fallbacks: a reader fetches them on their own.
    pub fallback_objects: Vec<ObjectId>,
}

fn offset_size(content: usize, offsets: usize) -> usize {
    for size in [1usize, 2, 4] {
        let limit = 1u64 << (8 * size);
        if ((content + offsets * size) as u64) < limit {
            return size;
        }
    }
    8
}

fn push_offsets(out: &mut Vec<u8>, ends: impl Iterator<Item = usize>, size: usize) {
    for end in ends {
        out.extend_from_slice(&(end as u64).to_le_bytes()[..size]);
    }
}

fn pad(out: &mut Vec<u8>, align: usize) {
    while !out.len().is_multiple_of(align) {
        out.push(0);
    }
}

/// A tuple of non-fixed size (each here has at least one variable-size member).
pub(super) fn tuple(members: &[(Layout, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut ends = Vec::new();
    for (index, (layout, bytes)) in members.iter().enumerate() {
        pad(&mut out, layout.align);
        out.extend_from_slice(bytes);
        if layout.fixed.is_none() && index + 1 < members.len() {
            ends.push(out.len());
        }
    }
    let size = offset_size(out.len(), ends.len());
    push_offsets(&mut out, ends.into_iter().rev(), size);
    out
}

/// An array of variable-size elements aligned to `align`.
fn var_array(align: usize, elements: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut ends = Vec::new();
    for element in elements {
        pad(&mut out, align);
        out.extend_from_slice(element);
        ends.push(out.len());
    }
    if ends.is_empty() {
        return out;
    }
    let size = offset_size(out.len(), ends.len());
    push_offsets(&mut out, ends.into_iter(), size);
    out
}

#[derive(Default)]
struct PartBuilder {
    modes: Vec<[u8; 12]>,
    mode_index: HashMap<[u8; 12], usize>,
    xattrs: Vec<Vec<u8>>,
    xattr_index: HashMap<Vec<u8>, usize>,
    payload: Vec<u8>,
    ops: Vec<u8>,
    objects: Vec<ObjectId>,
    uncompressed: u64,
    /// Whether the part's data compresses (see [`compresses`]).
    compress: bool,
}

impl PartBuilder {
    fn new(compress: bool) -> Self {
        Self {
            compress,
            ..Self::default()
        }
    }

    fn add_metadata(&mut self, object: ObjectId, bytes: &[u8]) {
        self.ops.push(b'S');
        write_varuint64(&mut self.ops, bytes.len() as u64);
        write_varuint64(&mut self.ops, self.payload.len() as u64);
        self.payload.extend_from_slice(bytes);
        self.objects.push(object);
        self.uncompressed += bytes.len() as u64;
    }

    /// The indexes of a mode and an xattr list, adding them when new.
    fn intern(&mut self, mode: [u8; 12], xattrs: Vec<u8>) -> (usize, usize) {
        let next = self.modes.len();
        let mode_index = *self.mode_index.entry(mode).or_insert(next);
        if mode_index == next {
            self.modes.push(mode);
        }
        let next = self.xattrs.len();
        let xattr_index = *self.xattr_index.entry(xattrs.clone()).or_insert(next);
        if xattr_index == next {
            self.xattrs.push(xattrs);
        }
        (mode_index, xattr_index)
    }

    fn add_content(&mut self, object: ObjectId, mode: [u8; 12], xattrs: Vec<u8>, data: &[u8]) {
        let (mode_index, xattr_index) = self.intern(mode, xattrs);
        self.ops.push(b'S');
        write_varuint64(&mut self.ops, mode_index as u64);
        write_varuint64(&mut self.ops, xattr_index as u64);
        write_varuint64(&mut self.ops, data.len() as u64);
        write_varuint64(&mut self.ops, self.payload.len() as u64);
        self.payload.extend_from_slice(data);
        self.objects.push(object);
        self.uncompressed += data.len() as u64;
    }

    /// A file made of `source` (a content object of the old commit) and a bsdiff patch, with
    /// libostree's sequence: set read source, open, bspatch, unset read source, close.
    fn add_patched(&mut self, object: ObjectId, file: FileParts, source: &Checksum, patch: &[u8]) {
        let (mode_index, xattr_index) = self.intern(file.mode, file.xattrs);
        let source_offset = self.payload.len();
        self.payload.extend_from_slice(source.as_bytes());
        self.ops.push(b'r');
        write_varuint64(&mut self.ops, source_offset as u64);
        self.ops.push(b'o');
        write_varuint64(&mut self.ops, mode_index as u64);
        write_varuint64(&mut self.ops, xattr_index as u64);
        write_varuint64(&mut self.ops, file.size);
        self.ops.push(b'B');
        write_varuint64(&mut self.ops, self.payload.len() as u64);
        write_varuint64(&mut self.ops, patch.len() as u64);
        self.payload.extend_from_slice(patch);
        self.ops.push(b'R');
        self.ops.push(b'c');
        self.objects.push(object);
        self.uncompressed += file.size;
    }

    /// The part file: `x`, then the xz-compressed `(a(uuu)aa(ayay)ayay)`. A part of data that
    /// does not compress is still xz (libostree cannot read uncompressed part files larger
    /// than 16 KiB: it maps them at offset 1), at the fastest preset: xz then stores its
    /// chunks as they are and a reader copies them instead of decoding them.
    fn finish(&self) -> Result<Vec<u8>, DeltaError> {
        let modes: Vec<u8> = self.modes.iter().flatten().copied().collect();
        let variant = tuple(&[
            (var(4), &modes),
            (var(1), &var_array(1, &self.xattrs)),
            (var(1), &self.payload),
            (var(1), &self.ops),
        ]);
        let preset = if self.compress { 6 } else { 0 };
        let mut encoder = xz2::write::XzEncoder::new(vec![b'x'], preset);
        encoder.write_all(&variant).map_err(DeltaError::Compress)?;
        encoder.finish().map_err(DeltaError::Compress)
    }
}

/// Files smaller than this are spliced whole: a patch would save next to nothing.
const MIN_PATCHED_SIZE: usize = 4 * 1024;
/// Files larger than this are spliced whole: bsdiff needs about 16 bytes of memory per byte
/// of the old file and time growing faster than its size.
const MAX_PATCHED_SIZE: usize = 64 * 1024 * 1024;

/// What a content object is made of besides its bytes.
struct FileParts {
    mode: [u8; 12],
    xattrs: Vec<u8>,
    size: u64,
}

/// A bsdiff patch turning the regular file `old` into `new`, when it compresses to less
/// than `new` itself does (both measured with fast deflate, standing for the part's xz).
fn patch_if_it_pays(
    repo: &Repo,
    old: &Checksum,
    new: &[u8],
) -> Result<Option<(Checksum, Vec<u8>)>, DeltaError> {
    if !(MIN_PATCHED_SIZE..=MAX_PATCHED_SIZE).contains(&new.len()) {
        return Ok(None);
    }
    let (header, mut reader) = repo.open_content(old)?;
    if header.is_symlink() || header.size > MAX_PATCHED_SIZE as u64 {
        return Ok(None);
    }
    let mut old_data = Vec::new();
    let path = repo.object_path(ObjectId::new(*old, ObjectKind::File));
    (&mut reader)
        .take(MAX_PATCHED_SIZE as u64 + 1)
        .read_to_end(&mut old_data)
        .map_err(|error| RepoError::io("read", &path, error))?;
    let mut patch = Vec::new();
    bsdiff::diff(&old_data, new, &mut patch).map_err(DeltaError::Bsdiff)?;
    if deflated_size(&patch) < deflated_size(new) {
        Ok(Some((*old, patch)))
    } else {
        Ok(None)
    }
}

/// Whether `bytes` compress: fast deflate saves at least a tenth of them. Data that does not
/// (random, already compressed) goes into parts of its own: mixed with data that compresses,
/// xz codes it byte by byte, and a reader decodes that at tens of MB/s; alone, xz stores it
/// as it is and a reader copies it.
fn compresses(bytes: &[u8]) -> bool {
    deflated_size(bytes).saturating_mul(10) < bytes.len().saturating_mul(9)
}

fn deflated_size(bytes: &[u8]) -> usize {
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing into a Vec cannot fail.
    match encoder.write_all(bytes).and_then(|()| encoder.finish()) {
        Ok(out) => out.len(),
        Err(_) => usize::MAX,
    }
}

/// Every regular file or symlink of `commit`'s tree: path to content object.
fn files_by_path(repo: &Repo, commit: &Checksum) -> Result<HashMap<String, Checksum>, DeltaError> {
    let parsed = repo.read_commit(commit)?;
    let mut files = HashMap::new();
    let mut pending = vec![(parsed.root_tree, String::new())];
    while let Some((tree, prefix)) = pending.pop() {
        let bytes = repo.read_metadata(ObjectKind::DirTree, &tree)?;
        let parsed = DirTree::parse(&bytes)
            .map_err(|_| DeltaError::Malformed("a dirtree of the commit is invalid"))?;
        for file in parsed.files {
            files.insert(format!("{prefix}/{}", file.name), file.checksum);
        }
        for dir in parsed.dirs {
            pending.push((dir.tree, format!("{prefix}/{}", dir.name)));
        }
    }
    Ok(files)
}

/// The objects of `commit`'s closure, metadata first, without the commit itself.
pub(crate) fn closure(repo: &Repo, commit: &Checksum) -> Result<Vec<ObjectId>, DeltaError> {
    let parsed = repo.read_commit(commit)?;
    let mut seen = HashSet::new();
    let mut metadata = Vec::new();
    let mut content = Vec::new();
    let mut pending = vec![(parsed.root_tree, parsed.root_meta)];
    while let Some((tree, meta)) = pending.pop() {
        let meta = ObjectId::new(meta, ObjectKind::DirMeta);
        if seen.insert(meta) {
            metadata.push(meta);
        }
        let tree_id = ObjectId::new(tree, ObjectKind::DirTree);
        if !seen.insert(tree_id) {
            continue;
        }
        metadata.push(tree_id);
        let bytes = repo.read_metadata(ObjectKind::DirTree, &tree)?;
        let parsed = DirTree::parse(&bytes)
            .map_err(|_| DeltaError::Malformed("a dirtree of the commit is invalid"))?;
        for file in &parsed.files {
            let object = ObjectId::new(file.checksum, ObjectKind::File);
            if seen.insert(object) {
                content.push(object);
            }
        }
        pending.extend(parsed.dirs.iter().map(|dir| (dir.tree, dir.meta)));
    }
    metadata.extend(content);
    Ok(metadata)
}

/// Writes the delta from `from` (None: from scratch) to `to` into `repo`'s `deltas/`,
/// replacing one already there, and lists it in `delta-indexes/`. Both commits' closures
/// must be complete in `repo`.
pub fn generate(
    repo: &Repo,
    from: Option<&Checksum>,
    to: &Checksum,
) -> Result<Generated, DeltaError> {
    let root = repo.path().to_path_buf();
    let generated = generate_with(repo, from, to, &mut |relative, bytes| {
        let path = root.join(relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|error| RepoError::io("create", parent, error))?;
        }
        write_file(&path, bytes)
    })?;
    write_index(repo, from, to, &generated.superblock)?;
    Ok(generated)
}

/// Where [`generate_with`] puts each file: its path relative to a repository
/// (`deltas/…/N`, then `deltas/…/superblock`) and its bytes.
pub type Sink<'a> = dyn FnMut(&str, &[u8]) -> Result<(), DeltaError> + 'a;

/// Builds the delta from `from` (None: from scratch) to `to` of `repo`'s commits and hands
/// each part, as it is finished, then the superblock to `sink`: at most one part is held in
/// memory. Lists nothing.
pub fn generate_with(
    repo: &Repo,
    from: Option<&Checksum>,
    to: &Checksum,
    sink: &mut Sink<'_>,
) -> Result<Generated, DeltaError> {
    let commit = repo.read_metadata(ObjectKind::Commit, to)?;
    let timestamp = repo.read_commit(to)?.timestamp;
    let old: HashSet<ObjectId> = match from {
        Some(from) => closure(repo, from)?.into_iter().collect(),
        None => HashSet::new(),
    };
    // New files at a path that held another regular file: candidates for bsdiff.
    let modified: HashMap<Checksum, Checksum> = match from {
        Some(from) => {
            let old_files = files_by_path(repo, from)?;
            files_by_path(repo, to)?
                .into_iter()
                .filter_map(|(path, new)| match old_files.get(&path) {
                    Some(old) if *old != new => Some((new, *old)),
                    _ => None,
                })
                .collect()
        }
        None => HashMap::new(),
    };
    let mut generated = Generated {
        parts: 0,
        objects: 0,
        fallbacks: 0,
        patched: 0,
        compressed_size: 0,
        uncompressed_size: 0,
        superblock: Checksum::from_array([0; 32]),
        fallback_objects: Vec::new(),
    };
    // Data that compresses and data that does not go into separate parts (see `compresses`).
    let mut packed = PartBuilder::new(true);
    let mut stored = PartBuilder::new(false);
    let mut headers = Vec::new();
    let mut fallbacks = Vec::new();
    let mut flush = |part: &PartBuilder, generated: &mut Generated| -> Result<(), DeltaError> {
        let bytes = part.finish()?;
        let index = generated.parts;
        sink(&super::part_path(from, to, index), &bytes)?;
        let checksum: [u8; 32] = Sha256::digest(&bytes).into();
        let objects: Vec<u8> = part
            .objects
            .iter()
            .flat_map(|object| {
                std::iter::once(object.kind.ostree_number())
                    .chain(object.checksum.as_bytes().iter().copied())
            })
            .collect();
        headers.push(tuple(&[
            (U32, &0u32.to_le_bytes()),
            (var(1), &checksum),
            (U64, &(bytes.len() as u64).to_le_bytes()),
            (U64, &part.uncompressed.to_le_bytes()),
            (var(1), &objects),
        ]));
        generated.parts += 1;
        generated.objects += part.objects.len();
        generated.compressed_size += bytes.len() as u64;
        generated.uncompressed_size += part.uncompressed;
        Ok(())
    };
    for object in closure(repo, to)? {
        if old.contains(&object) {
            continue;
        }
        for part in [&mut packed, &mut stored] {
            if part.payload.len() >= PART_TARGET_SIZE {
                flush(part, &mut generated)?;
                *part = PartBuilder::new(part.compress);
            }
        }
        if object.kind.is_metadata() {
            let bytes = repo.read_metadata(object.kind, &object.checksum)?;
            packed.add_metadata(object, &bytes);
        } else {
            let (header, mut reader) = repo.open_content(&object.checksum)?;
            if header.size > MAX_PART_SIZE {
                // Too big for a part readers accept: fetched on its own.
                let stored = fs::metadata(repo.object_path(object))
                    .map_err(|error| RepoError::io("stat", repo.object_path(object), error))?;
                // An estimate for a bare repository, which stores it uncompressed.
                fallbacks.push(tuple(&[
                    (BYTE, &[object.kind.ostree_number()]),
                    (var(1), object.checksum.as_bytes()),
                    (U64, &stored.len().to_le_bytes()),
                    (U64, &header.size.to_le_bytes()),
                ]));
                generated.fallback_objects.push(object);
                continue;
            }
            let mut data = Vec::new();
            if header.is_symlink() {
                data.extend_from_slice(header.symlink_target.as_bytes());
            } else {
                (&mut reader)
                    .take(MAX_PART_SIZE + 1)
                    .read_to_end(&mut data)
                    .map_err(|error| RepoError::io("read", repo.object_path(object), error))?;
                if data.len() as u64 > MAX_PART_SIZE {
                    return Err(DeltaError::Malformed("a file is too large for a delta"));
                }
            }
            let mut mode = [0u8; 12];
            mode[..4].copy_from_slice(&header.uid.to_be_bytes());
            mode[4..8].copy_from_slice(&header.gid.to_be_bytes());
            mode[8..].copy_from_slice(&header.mode.to_be_bytes());
            let mut sorted = header.xattrs.clone();
            sorted.sort();
            let xattrs: Vec<Vec<u8>> = sorted
                .iter()
                .map(|xattr| {
                    let mut name = xattr.name.clone();
                    name.push(0);
                    tuple(&[(var(1), &name), (var(1), &xattr.value)])
                })
                .collect();
            let xattrs = var_array(1, &xattrs);
            let patched = match modified.get(&object.checksum) {
                Some(old) if !header.is_symlink() => patch_if_it_pays(repo, old, &data)?,
                _ => None,
            };
            match patched {
                Some((old, patch)) => {
                    let file = FileParts {
                        mode,
                        xattrs,
                        size: data.len() as u64,
                    };
                    let part = if compresses(&patch) {
                        &mut packed
                    } else {
                        &mut stored
                    };
                    part.add_patched(object, file, &old, &patch);
                    generated.patched += 1;
                }
                None => {
                    let part = if compresses(&data) {
                        &mut packed
                    } else {
                        &mut stored
                    };
                    part.add_content(object, mode, xattrs, &data);
                }
            }
        }
    }
    for part in [&packed, &stored] {
        if !part.objects.is_empty() {
            flush(part, &mut generated)?;
        }
    }

    // Multi-byte numbers of the part headers are little-endian, as this says.
    let endianness = tuple(&[(var(1), b"ostree.endianness\0"), (var(8), &[b'l', 0, b'y'])]);
    let metadata = var_array(8, &[endianness]);
    let from_bytes: &[u8] = match from {
        Some(from) => from.as_bytes(),
        None => &[],
    };
    let superblock = tuple(&[
        (var(8), &metadata),
        (U64, &timestamp.to_be_bytes()),
        (var(1), from_bytes),
        (var(1), to.as_bytes()),
        (var(8), &commit),
        (var(1), &[]),
        (var(8), &var_array(8, &headers)),
        (var(8), &var_array(8, &fallbacks)),
    ]);
    sink(&super::superblock_path(from, to), &superblock)?;
    generated.fallbacks = fallbacks.len();
    generated.superblock = Checksum::from_array(Sha256::digest(&superblock).into());
    Ok(generated)
}

/// Lists the delta in `delta-indexes/` for `to`, as `ostree summary -u` does, keeping the
/// other deltas to `to` the index lists. Readers that find the delta through a summary
/// need the summary rewritten (see [`summary_value`]).
fn write_index(
    repo: &Repo,
    from: Option<&Checksum>,
    to: &Checksum,
    superblock: &Checksum,
) -> Result<(), DeltaError> {
    let relative = super::index_path(to);
    let existing = repo
        .read_delta_file(&relative, super::MAX_INDEX_SIZE)?
        .and_then(|bytes| Metadata::parse(&bytes).ok())
        .and_then(|index| index.get_metadata(SUMMARY_STATIC_DELTAS_KEY))
        .unwrap_or_default();
    let mut map = Metadata::new();
    for (name, value) in existing.entries() {
        map.insert(name, value.clone()).map_err(format_error)?;
    }
    map.insert(
        &super::delta_name(from, to),
        MetadataValue::bytes(superblock.as_bytes()),
    )
    .map_err(format_error)?;
    let mut index = Metadata::new();
    index
        .insert(
            SUMMARY_STATIC_DELTAS_KEY,
            MetadataValue::metadata(&map).map_err(format_error)?,
        )
        .map_err(format_error)?;
    let path = repo.path().join(&relative);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|error| RepoError::io("create", parent, error))?;
    }
    write_file(&path, &index.to_bytes().map_err(format_error)?)
}

fn format_error(_: crate::object::FormatError) -> DeltaError {
    DeltaError::Malformed("the delta listing cannot be written")
}

/// The `ostree.static-deltas` summary value listing every delta under `repo`'s `deltas/`
/// whose superblock is readable: delta name to the sha256 of its superblock. `None` when
/// there are none.
pub fn summary_value(repo: &Repo) -> Result<Option<MetadataValue>, DeltaError> {
    let mut map = Metadata::new();
    let deltas = repo.path().join("deltas");
    let prefixes = match fs::read_dir(&deltas) {
        Ok(prefixes) => prefixes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(RepoError::io("read", &deltas, error).into()),
    };
    for prefix in prefixes {
        let prefix = prefix.map_err(|error| RepoError::io("read", &deltas, error))?;
        let Ok(entries) = fs::read_dir(prefix.path()) else {
            continue;
        };
        for entry in entries.flatten() {
            let (Some(head), Some(tail)) = (
                prefix.file_name().to_str().map(str::to_owned),
                entry.file_name().to_str().map(str::to_owned),
            ) else {
                continue;
            };
            let Some(name) = name_of_dir(&head, &tail) else {
                continue;
            };
            let relative = format!("deltas/{head}/{tail}/superblock");
            let Some(bytes) = repo.read_delta_file(&relative, super::MAX_SUPERBLOCK_SIZE)? else {
                continue;
            };
            let digest: [u8; 32] = Sha256::digest(&bytes).into();
            map.insert(&name, MetadataValue::bytes(&digest))
                .map_err(format_error)?;
        }
    }
    if map.is_empty() {
        return Ok(None);
    }
    MetadataValue::metadata(&map)
        .map(Some)
        .map_err(format_error)
}

/// A checksum in OSTree's modified base64, as delta directories and index files name them.
fn decode_modified_base64(text: &str) -> Option<Checksum> {
    let raw = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(text.replace('_', "/"))
        .ok()?;
    let raw: [u8; 32] = raw.try_into().ok()?;
    Some(Checksum::from_array(raw))
}

/// The commits of the delta directory `deltas/<head>/<tail>`: where it starts (None: from
/// scratch) and where it leads.
pub(crate) fn delta_of_dir(head: &str, tail: &str) -> Option<(Option<Checksum>, Checksum)> {
    let joined = format!("{head}{tail}");
    match joined.split_once('-') {
        Some((from, to)) => Some((
            Some(decode_modified_base64(from)?),
            decode_modified_base64(to)?,
        )),
        None => Some((None, decode_modified_base64(&joined)?)),
    }
}

/// The commit the delta index `delta-indexes/<head>/<name>` lists deltas to.
pub(crate) fn commit_of_index(head: &str, name: &str) -> Option<Checksum> {
    decode_modified_base64(&format!("{head}{}", name.strip_suffix(".index")?))
}

/// The summary name (`FROM-TO` or `TO` in hex) of the delta directory
/// `deltas/<head>/<tail>`.
fn name_of_dir(head: &str, tail: &str) -> Option<String> {
    let (from, to) = delta_of_dir(head, tail)?;
    Some(super::delta_name(from.as_ref(), &to))
}

/// Writes `bytes` to `path` through a temporary file renamed into place.
fn write_file(path: &Path, bytes: &[u8]) -> Result<(), DeltaError> {
    let temporary = path.with_extension("tmp");
    let mut file =
        fs::File::create(&temporary).map_err(|error| RepoError::io("create", &temporary, error))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|error| RepoError::io("write", &temporary, error))?;
    fs::rename(&temporary, path).map_err(|error| RepoError::io("rename", path, error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delta_directories_name_their_deltas_and_listings_select_by_target() {
        let from = Checksum::from_array([0xab; 32]);
        let to = Checksum::from_array([0x3f; 32]);
        let other = Checksum::from_array([0x01; 32]);
        for start in [Some(&from), None] {
            let dir = super::super::delta_dir(start, &to);
            let mut parts = dir.trim_start_matches("deltas/").splitn(2, '/');
            let (head, tail) = (parts.next().unwrap(), parts.next().unwrap());
            assert_eq!(
                name_of_dir(head, tail),
                Some(super::super::delta_name(start, &to))
            );
        }
        assert_eq!(name_of_dir("AB", "not-base64!"), None);
        let index = super::super::index_path(&to);
        let mut parts = index.trim_start_matches("delta-indexes/").splitn(2, '/');
        let (head, name) = (parts.next().unwrap(), parts.next().unwrap());
        assert_eq!(commit_of_index(head, name), Some(to));
        assert_eq!(commit_of_index(head, name.trim_end_matches(".index")), None);

        let mut map = Metadata::new();
        for (name, superblock) in [
            (super::super::delta_name(Some(&from), &to), [1u8; 32]),
            (super::super::delta_name(None, &to), [2; 32]),
            (super::super::delta_name(Some(&from), &other), [3; 32]),
        ] {
            map.insert(&name, MetadataValue::bytes(&superblock))
                .unwrap();
        }
        // A checksum of the wrong length is skipped.
        map.insert(
            &super::super::delta_name(Some(&other), &to),
            MetadataValue::bytes(&[4; 31]),
        )
        .unwrap();
        let listed = super::super::listed_deltas(&map, &to);
        assert_eq!(listed.len(), 2, "{listed:?}");
        assert!(listed.contains(&super::super::Listed {
            from: Some(from),
            superblock: Checksum::from_array([1; 32]),
        }));
        assert!(listed.contains(&super::super::Listed {
            from: None,
            superblock: Checksum::from_array([2; 32]),
        }));
    }
}
