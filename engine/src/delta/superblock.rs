//! A delta's superblock: its commit, its parts' headers and its fallback objects, read
//! within bounds, from a plain or a signed superblock file.

use std::collections::BTreeMap;

use super::frame::{self, var, BYTE, U32, U64};
use super::layout::delta_dir;
use super::{checksum, DeltaError, MAX_ENTRIES};
use crate::object::{Checksum, ObjectId, ObjectKind};

/// Largest superblock read. Real ones hold the commit and a few dozen part headers (each
/// listing the objects of its part, 33 bytes apiece): a from-scratch delta of a 300,000
/// object tree is ~10 MiB.
pub const MAX_SUPERBLOCK_SIZE: u64 = 32 * 1024 * 1024;

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
    pub(super) inline_parts: BTreeMap<usize, Vec<u8>>,
}

fn object_kind(number: u8) -> Result<ObjectKind, DeltaError> {
    match ObjectKind::from_ostree_number(number) {
        Some(kind @ (ObjectKind::File | ObjectKind::DirTree | ObjectKind::DirMeta)) => Ok(kind),
        Some(ObjectKind::Commit) => Ok(ObjectKind::Commit),
        _ => Err(DeltaError::Malformed("unknown object type")),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delta::{open_part, write};

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
}
