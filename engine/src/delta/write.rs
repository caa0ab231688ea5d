//! Writing static deltas in libostree's format, so `ostree static-delta apply-offline` and
//! Ferry's own reader apply them: every object of the new commit's closure that the old
//! commit's closure lacks is spliced whole into xz-compressed parts (no bsdiff yet); files
//! too large for a part are listed as fallbacks, fetched on their own.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::object::{Checksum, DirTree, ObjectId, ObjectKind};
use crate::repo::{Repo, RepoError};

use super::frame::{var, Layout, BYTE, U32, U64};
use super::{delta_dir, DeltaError, MAX_PART_SIZE};

/// Payload bytes after which a new part is started (libostree's default chunk size).
const PART_TARGET_SIZE: usize = 32 * 1024 * 1024;

/// What [`generate`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Generated {
    pub parts: usize,
    pub objects: usize,
    pub fallbacks: usize,
    /// Bytes of the part files.
    pub compressed_size: u64,
    /// Bytes of the objects the parts create.
    pub uncompressed_size: u64,
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
fn tuple(members: &[(Layout, &[u8])]) -> Vec<u8> {
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

fn write_varuint(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
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
}

impl PartBuilder {
    fn add_metadata(&mut self, object: ObjectId, bytes: &[u8]) {
        self.ops.push(b'S');
        write_varuint(&mut self.ops, bytes.len() as u64);
        write_varuint(&mut self.ops, self.payload.len() as u64);
        self.payload.extend_from_slice(bytes);
        self.objects.push(object);
        self.uncompressed += bytes.len() as u64;
    }

    fn add_content(&mut self, object: ObjectId, mode: [u8; 12], xattrs: Vec<u8>, data: &[u8]) {
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
        self.ops.push(b'S');
        write_varuint(&mut self.ops, mode_index as u64);
        write_varuint(&mut self.ops, xattr_index as u64);
        write_varuint(&mut self.ops, data.len() as u64);
        write_varuint(&mut self.ops, self.payload.len() as u64);
        self.payload.extend_from_slice(data);
        self.objects.push(object);
        self.uncompressed += data.len() as u64;
    }

    /// The part file: `x`, then the xz-compressed `(a(uuu)aa(ayay)ayay)`.
    fn finish(&self) -> Result<Vec<u8>, DeltaError> {
        let modes: Vec<u8> = self.modes.iter().flatten().copied().collect();
        let variant = tuple(&[
            (var(4), &modes),
            (var(1), &var_array(1, &self.xattrs)),
            (var(1), &self.payload),
            (var(1), &self.ops),
        ]);
        let mut encoder = xz2::write::XzEncoder::new(vec![b'x'], 6);
        encoder
            .write_all(&variant)
            .map_err(|error| DeltaError::Decompress(error.to_string()))?;
        encoder
            .finish()
            .map_err(|error| DeltaError::Decompress(error.to_string()))
    }
}

/// The objects of `commit`'s closure, metadata first, without the commit itself.
fn closure(repo: &Repo, commit: &Checksum) -> Result<Vec<ObjectId>, DeltaError> {
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
/// replacing one already there. Both commits' closures must be complete in `repo`.
pub fn generate(
    repo: &Repo,
    from: Option<&Checksum>,
    to: &Checksum,
) -> Result<Generated, DeltaError> {
    let commit = repo.read_metadata(ObjectKind::Commit, to)?;
    let timestamp = repo.read_commit(to)?.timestamp;
    let old: HashSet<ObjectId> = match from {
        Some(from) => closure(repo, from)?.into_iter().collect(),
        None => HashSet::new(),
    };
    let mut parts = vec![PartBuilder::default()];
    let mut fallbacks = Vec::new();
    for object in closure(repo, to)? {
        if old.contains(&object) {
            continue;
        }
        let current = parts.len() - 1;
        if parts[current].payload.len() >= PART_TARGET_SIZE {
            parts.push(PartBuilder::default());
        }
        let part = parts.last_mut().ok_or(DeltaError::Malformed("no part"))?;
        if object.kind.is_metadata() {
            let bytes = repo.read_metadata(object.kind, &object.checksum)?;
            part.add_metadata(object, &bytes);
        } else {
            let (header, mut reader) = repo.open_content(&object.checksum)?;
            if header.size > MAX_PART_SIZE {
                // Too big for a part readers accept: fetched on its own.
                let stored = fs::metadata(repo.object_path(object))
                    .map_err(|error| RepoError::io("stat", repo.object_path(object), error))?;
                fallbacks.push(tuple(&[
                    (BYTE, &[object.kind.ostree_number()]),
                    (var(1), object.checksum.as_bytes()),
                    (U64, &stored.len().to_le_bytes()),
                    (U64, &header.size.to_le_bytes()),
                ]));
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
            part.add_content(object, mode, var_array(1, &xattrs), &data);
        }
    }
    if parts.len() == 1 && parts[0].objects.is_empty() {
        parts.clear();
    }

    let dir = repo.path().join(delta_dir(from, to));
    fs::create_dir_all(&dir).map_err(|error| RepoError::io("create", &dir, error))?;
    let mut generated = Generated::default();
    let mut headers = Vec::new();
    for (index, part) in parts.iter().enumerate() {
        let bytes = part.finish()?;
        write_file(&dir.join(index.to_string()), &bytes)?;
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
    write_file(&dir.join("superblock"), &superblock)?;
    generated.fallbacks = fallbacks.len();
    Ok(generated)
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
