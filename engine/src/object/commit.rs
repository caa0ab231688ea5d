//! Commit objects: `(a{sv}aya(say)sstayay)` = metadata, parent checksum (32 bytes or empty),
//! related objects, subject, body, timestamp (big-endian), root dirtree checksum, root dirmeta
//! checksum.

use gvariant::aligned_bytes::copy_to_align;
use gvariant::{gv, Marker, Structure};

use super::metadata::{Metadata, COLLECTION_BINDING_KEY, REF_BINDING_KEY, SIZES_KEY, VERSION_KEY};
use super::variant::{ensure_normal_form, serialize};
use super::{Checksum, FormatError, ObjectKind, MAX_COMMIT_SIZE};

/// An entry of a commit's related objects (unused by current OSTree, kept for round trips).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelatedObject {
    /// The ref name recorded.
    pub name: String,
    /// The commit it pointed at.
    pub checksum: Checksum,
}

/// One entry of a commit's `ostree.sizes` metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectSize {
    /// The object's checksum.
    pub checksum: Checksum,
    /// Bytes the object takes in an archive repository (compressed for content).
    pub archived: u64,
    /// Bytes of the object once unpacked.
    pub unpacked: u64,
    /// File, dirtree or dirmeta; entries of old commits without a type byte are files.
    pub kind: ObjectKind,
}

/// A commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// The `a{sv}` metadata (version, bindings, sizes, ...).
    pub metadata: Metadata,
    /// The parent commit, if any.
    pub parent: Option<Checksum>,
    /// Related objects (empty in current OSTree).
    pub related: Vec<RelatedObject>,
    /// The subject line.
    pub subject: String,
    /// The body text.
    pub body: String,
    /// Seconds since the Unix epoch (stored big-endian; this is the value).
    pub timestamp: u64,
    /// The root dirtree.
    pub root_tree: Checksum,
    /// The root dirmeta.
    pub root_meta: Checksum,
}

impl Commit {
    /// Parses and validates a commit: at most [`MAX_COMMIT_SIZE`] bytes, normal form,
    /// non-empty metadata keys, and 32-byte checksums (the parent may be absent), as
    /// `ostree_validate_structureof_commit` requires.
    pub fn parse(bytes: &[u8]) -> Result<Self, FormatError> {
        const WHAT: &str = "commit";
        FormatError::check_size(WHAT, bytes.len(), MAX_COMMIT_SIZE)?;
        let aligned = copy_to_align(bytes);
        let (metadata, parent, related, subject, body, timestamp, root_tree, root_meta) =
            gv!("(a{sv}aya(say)sstayay)")
                .cast(aligned.as_ref())
                .to_tuple();
        let metadata = Metadata::from_dict(metadata, 0)
            .map_err(|error| FormatError::part(WHAT, "its metadata", error))?;
        let raw_related: Vec<(&str, &[u8])> = related
            .iter()
            .map(|entry| {
                let (name, checksum) = entry.to_tuple();
                (name.to_str(), checksum)
            })
            .collect();
        let again = serialize(
            WHAT,
            gv!("(a{sv}aya(say)sstayay)"),
            &(
                &metadata.serializable(),
                parent,
                &raw_related,
                subject.to_str(),
                body.to_str(),
                *timestamp,
                root_tree,
                root_meta,
            ),
        )?;
        ensure_normal_form(WHAT, "(a{sv}aya(say)sstayay)", bytes, &again)?;

        let checksum = |bytes: &[u8], field: &str| {
            Checksum::from_slice(bytes).map_err(|_| {
                FormatError::invalid(
                    WHAT,
                    format!("{field} checksum is {} bytes, expected 32", bytes.len()),
                )
            })
        };
        let parent = if parent.is_empty() {
            None
        } else {
            Some(checksum(parent, "parent")?)
        };
        let related = raw_related
            .into_iter()
            .map(|(name, sum)| {
                Ok(RelatedObject {
                    name: name.to_owned(),
                    checksum: checksum(sum, "related object")?,
                })
            })
            .collect::<Result<Vec<_>, FormatError>>()?;
        Ok(Self {
            metadata,
            parent,
            related,
            subject: subject.to_str().to_owned(),
            body: body.to_str().to_owned(),
            timestamp: u64::from_be(*timestamp),
            root_tree: checksum(root_tree, "root tree")?,
            root_meta: checksum(root_meta, "root dirmeta")?,
        })
    }

    /// A commit's timestamp and `version`, read without copying or checking the rest: for
    /// describing commits nobody has verified yet (a drive scan), which [`Commit::parse`]
    /// checks fully before they are used. Costs no memory beyond `bytes`.
    pub fn peek_timestamp_and_version(bytes: &[u8]) -> Result<(u64, Option<String>), FormatError> {
        FormatError::check_size("commit", bytes.len(), MAX_COMMIT_SIZE)?;
        let aligned = copy_to_align(bytes);
        let (metadata, _, _, _, _, timestamp, _, _) = gv!("(a{sv}aya(say)sstayay)")
            .cast(aligned.as_ref())
            .to_tuple();
        let mut version = None;
        for entry in metadata {
            let (key, value) = entry.to_tuple();
            if key.to_str() != VERSION_KEY {
                continue;
            }
            // As `Metadata::get`: the first entry counts; one of another type is no version.
            let (type_str, data) = value.split();
            if type_str == b"s" {
                version = super::MetadataValue::from_parts("s", data.to_vec())
                    .ok()
                    .and_then(|value| value.as_str().map(str::to_owned));
            }
            break;
        }
        Ok((u64::from_be(*timestamp), version))
    }

    /// Serialises the commit; its SHA-256 is the commit's checksum. Fails only for strings
    /// holding NUL.
    pub fn to_bytes(&self) -> Result<Vec<u8>, FormatError> {
        let parent: &[u8] = match &self.parent {
            Some(parent) => parent.as_bytes(),
            None => &[],
        };
        let related: Vec<(&str, &[u8])> = self
            .related
            .iter()
            .map(|r| (r.name.as_str(), r.checksum.as_bytes().as_slice()))
            .collect();
        serialize(
            "commit",
            gv!("(a{sv}aya(say)sstayay)"),
            &(
                &self.metadata.serializable(),
                parent,
                &related,
                self.subject.as_str(),
                self.body.as_str(),
                self.timestamp.to_be(),
                self.root_tree.as_bytes().as_slice(),
                self.root_meta.as_bytes().as_slice(),
            ),
        )
    }

    /// The `version` metadata string.
    pub fn version(&self) -> Option<&str> {
        self.metadata.get_str(VERSION_KEY)
    }

    /// `ostree.collection-binding`: the collection this commit may be published in.
    pub fn collection_binding(&self) -> Option<&str> {
        self.metadata.get_str(COLLECTION_BINDING_KEY)
    }

    /// `ostree.ref-binding`: the refs this commit may be published under.
    pub fn ref_binding(&self) -> Option<Vec<String>> {
        self.metadata.get_str_array(REF_BINDING_KEY)
    }

    /// `ostree.sizes`, if the commit has it. Each entry is a 32-byte checksum, two varints
    /// (archived and unpacked size) and, on newer commits, an object type byte.
    pub fn sizes(&self) -> Result<Option<Vec<ObjectSize>>, FormatError> {
        const WHAT: &str = "ostree.sizes";
        let Some(entries) = self.metadata.get_byte_arrays(SIZES_KEY) else {
            return Ok(None);
        };
        let mut sizes = Vec::with_capacity(entries.len());
        for (index, entry) in entries.iter().enumerate() {
            let bad = |reason: &str| FormatError::invalid(WHAT, format!("entry {index}: {reason}"));
            if entry.len() < Checksum::LEN + 2 {
                return Err(bad("too short"));
            }
            let (checksum, mut rest) = entry.split_at(Checksum::LEN);
            let checksum = Checksum::from_slice(checksum).map_err(|_| bad("bad checksum"))?;
            let archived = read_varuint64(&mut rest).ok_or_else(|| bad("truncated size"))?;
            let unpacked = read_varuint64(&mut rest).ok_or_else(|| bad("truncated size"))?;
            let kind = match rest.first() {
                None => ObjectKind::File,
                Some(&number) => ObjectKind::from_ostree_number(number)
                    .ok_or_else(|| bad(&format!("unknown object type {number}")))?,
            };
            sizes.push(ObjectSize {
                checksum,
                archived,
                unpacked,
                kind,
            });
        }
        Ok(Some(sizes))
    }
}

/// Protocol-buffers style varint, at most 10 bytes, as libostree's `_ostree_read_varuint64`.
fn read_varuint64(input: &mut &[u8]) -> Option<u64> {
    let mut result: u64 = 0;
    for count in 0..10 {
        let (&byte, rest) = input.split_first()?;
        *input = rest;
        result |= u64::from(byte & 0x7f).checked_shl(7 * count).unwrap_or(0);
        if byte & 0x80 == 0 {
            return Some(result);
        }
    }
    None
}

/// Encodes a varint as `ostree.sizes` and static delta operation streams store it.
pub(crate) fn write_varuint64(out: &mut Vec<u8>, mut value: u64) {
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

impl ObjectSize {
    /// The `ostree.sizes` entry for this size.
    pub fn to_entry(&self) -> Vec<u8> {
        let mut entry = self.checksum.as_bytes().to_vec();
        write_varuint64(&mut entry, self.archived);
        write_varuint64(&mut entry, self.unpacked);
        entry.push(self.kind.ostree_number());
        entry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Commit {
        let mut metadata = Metadata::new();
        metadata.insert_str(VERSION_KEY, "1.0").expect("version");
        metadata
            .insert_str_array(REF_BINDING_KEY, &["os/stable"])
            .expect("binding");
        metadata
            .insert_str(COLLECTION_BINDING_KEY, "org.example.Os")
            .expect("collection");
        let size = ObjectSize {
            checksum: Checksum::from_array([9; 32]),
            archived: 300,
            unpacked: 1 << 40,
            kind: ObjectKind::DirTree,
        };
        metadata
            .insert_byte_arrays(SIZES_KEY, &[size.to_entry()])
            .expect("sizes");
        Commit {
            metadata,
            parent: Some(Checksum::from_array([1; 32])),
            related: vec![],
            subject: "first".into(),
            body: "body".into(),
            timestamp: 1_700_000_000,
            root_tree: Checksum::from_array([2; 32]),
            root_meta: Checksum::from_array([3; 32]),
        }
    }

    #[test]
    fn round_trips_with_accessors() {
        let commit = sample();
        let bytes = commit.to_bytes().expect("serialise");
        let parsed = Commit::parse(&bytes).expect("parse");
        assert_eq!(parsed, commit);
        assert_eq!(parsed.version(), Some("1.0"));
        assert_eq!(parsed.collection_binding(), Some("org.example.Os"));
        assert_eq!(parsed.ref_binding(), Some(vec!["os/stable".to_owned()]));
        let sizes = parsed.sizes().expect("sizes").expect("present");
        assert_eq!(sizes.len(), 1);
        assert_eq!(sizes[0].unpacked, 1 << 40);
        assert_eq!(sizes[0].kind, ObjectKind::DirTree);
    }

    #[test]
    fn timestamp_is_big_endian_on_disk() {
        let bytes = sample().to_bytes().expect("serialise");
        let ts = 1_700_000_000u64.to_be_bytes();
        assert!(bytes.windows(8).any(|w| w == ts));
    }

    #[test]
    fn refuses_truncation_and_bad_checksums() {
        let bytes = sample().to_bytes().expect("serialise");
        for cut in 0..bytes.len() {
            assert!(Commit::parse(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let short_tree = serialize(
            "test",
            gv!("(a{sv}aya(say)sstayay)"),
            &(
                &Vec::<(&str, &crate::object::MetadataValue)>::new(),
                &[][..],
                &Vec::<(&str, &[u8])>::new(),
                "s",
                "b",
                0u64,
                &[1u8; 31][..],
                &[1u8; 32][..],
            ),
        )
        .expect("serialise");
        assert!(Commit::parse(&short_tree).is_err());
    }

    #[test]
    fn varints_round_trip() {
        for value in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut out = Vec::new();
            write_varuint64(&mut out, value);
            let mut input = out.as_slice();
            assert_eq!(read_varuint64(&mut input), Some(value));
            assert!(input.is_empty());
        }
        assert_eq!(read_varuint64(&mut &[0x80u8; 11][..]), None);
    }
}
