//! Repository summaries: `(a(s(taya{sv}))a{sv})` = refs sorted by name, each with the
//! commit's size, checksum and metadata (`ostree.commit.timestamp` big-endian,
//! `ostree.commit.version`), then the summary's own metadata (`ostree.summary.collection-id`,
//! `ostree.summary.collection-map` `a{sa(s(taya{sv}))}`, `ostree.summary.last-modified`, ...).
//!
//! The per-ref commit size is stored as GVariant stores a `t` (little-endian); OSTree does not
//! byte-swap it, unlike the timestamps.

use gvariant::aligned_bytes::copy_to_align;
use gvariant::{gv, Marker, Structure};

use super::metadata::{Metadata, MetadataValue};
use super::names::{validate_collection_id, validate_ref_name};
use super::variant::{ensure_normal_form, serialize};
use super::{Checksum, FormatError, MAX_METADATA_SIZE, MAX_SUMMARY_REFS};

/// Summary metadata key: the collection ID of the refs the summary lists.
pub const COLLECTION_ID_KEY: &str = "ostree.summary.collection-id";
/// Summary metadata key: refs of other collections, by collection ID.
pub const COLLECTION_MAP_KEY: &str = "ostree.summary.collection-map";
/// Summary metadata key: when the summary was written, seconds since the Unix epoch.
pub const LAST_MODIFIED_KEY: &str = "ostree.summary.last-modified";
/// Summary metadata key: when the summary stops being valid.
pub const EXPIRES_KEY: &str = "ostree.summary.expires";
/// Summary metadata key (Ferry's own): refs whose commits the server holds only in part (a
/// locale extension installed with some languages), by collection ID, as
/// `ostree.summary.collection-map` lists refs. Kept apart so tools that cannot pull a part
/// never see them; Ferry offers them only to refs installed in part.
pub const PARTIAL_COLLECTION_MAP_KEY: &str = "ferry.partial-collection-map";
/// Per-ref summary metadata key: the commit's timestamp.
pub const COMMIT_TIMESTAMP_KEY: &str = "ostree.commit.timestamp";
/// Per-ref summary metadata key: the commit's `version`.
pub const COMMIT_VERSION_KEY: &str = "ostree.commit.version";

const COLLECTION_MAP_TYPE: &str = "a{sa(s(taya{sv}))}";

/// One ref listed in a summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryRef {
    /// The ref's name.
    pub name: String,
    /// The commit it points at.
    pub commit: Checksum,
    /// Size of the commit object in bytes.
    pub commit_size: u64,
    /// The ref's metadata; [`SummaryRef::timestamp`] and [`SummaryRef::version`] read it.
    pub metadata: Metadata,
}

impl SummaryRef {
    /// `ostree.commit.timestamp`, seconds since the Unix epoch.
    pub fn timestamp(&self) -> Option<u64> {
        self.metadata.get_u64_big_endian(COMMIT_TIMESTAMP_KEY)
    }

    /// `ostree.commit.version`.
    pub fn version(&self) -> Option<&str> {
        self.metadata.get_str(COMMIT_VERSION_KEY)
    }
}

/// A parsed summary file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The main ref list; its refs belong to [`Summary::collection_id`] when there is one.
    pub refs: Vec<SummaryRef>,
    /// `ostree.summary.collection-id`.
    pub collection_id: Option<String>,
    /// `ostree.summary.collection-map`: refs of other collections (mirrors), by collection.
    pub collection_map: Vec<(String, Vec<SummaryRef>)>,
    /// [`PARTIAL_COLLECTION_MAP_KEY`]: refs whose commits are held only in part.
    pub partial_map: Vec<(String, Vec<SummaryRef>)>,
    /// The summary's whole metadata dictionary.
    pub metadata: Metadata,
}

impl Summary {
    /// Parses a summary: at most [`MAX_METADATA_SIZE`] bytes, normal form, valid ref names,
    /// collection IDs and 32-byte checksums.
    pub fn parse(bytes: &[u8]) -> Result<Self, FormatError> {
        Self::parse_listing_at_most(bytes, MAX_SUMMARY_REFS)
    }

    /// [`Summary::parse`], refusing more than `max_refs` refs in all.
    fn parse_listing_at_most(bytes: &[u8], max_refs: usize) -> Result<Self, FormatError> {
        const WHAT: &str = "summary";
        FormatError::check_size(WHAT, bytes.len(), MAX_METADATA_SIZE)?;
        let aligned = copy_to_align(bytes);
        let (refs, metadata) = gv!("(a(s(taya{sv}))a{sv})")
            .cast(aligned.as_ref())
            .to_tuple();
        let metadata = Metadata::from_dict(metadata, 0)
            .map_err(|error| FormatError::part(WHAT, "its metadata", error))?;
        // Counted before any ref is read: the array's length comes from its framing.
        if refs.len() > max_refs {
            return Err(too_many_refs(refs.len(), max_refs));
        }
        let mut main_refs = Vec::new();
        let mut raw_refs = Vec::new();
        for entry in refs {
            let (name, (size, checksum, ref_metadata)) = {
                let (name, details) = entry.to_tuple();
                (name.to_str(), details.to_tuple())
            };
            let ref_metadata = Metadata::from_dict(ref_metadata, 0).map_err(|error| {
                FormatError::part(WHAT, format!("the metadata of ref {name:?}"), error)
            })?;
            raw_refs.push((name, *size, checksum, ref_metadata));
        }
        let again = with_ref_items(&raw_refs, |items| {
            serialize(
                WHAT,
                gv!("(a(s(taya{sv}))a{sv})"),
                &(items, &metadata.serializable()),
            )
        })?;
        ensure_normal_form(WHAT, "(a(s(taya{sv}))a{sv})", bytes, &again)?;
        for (name, size, checksum, ref_metadata) in raw_refs {
            main_refs.push(summary_ref(WHAT, name, size, checksum, ref_metadata)?);
        }

        let collection_id = match metadata.get(COLLECTION_ID_KEY) {
            None => None,
            Some(value) => {
                let id = value.as_str().ok_or_else(|| {
                    FormatError::invalid(WHAT, format!("{COLLECTION_ID_KEY} is not a string"))
                })?;
                validate_collection_id(id).map_err(|error| FormatError::name(WHAT, error))?;
                Some(id.to_owned())
            }
        };
        let collection_map = match metadata.get(COLLECTION_MAP_KEY) {
            None => Vec::new(),
            Some(value) => parse_collection_map(value, main_refs.len(), max_refs)?,
        };
        let listed = main_refs.len()
            + collection_map
                .iter()
                .map(|(_, refs)| refs.len())
                .sum::<usize>();
        let partial_map = match metadata.get(PARTIAL_COLLECTION_MAP_KEY) {
            None => Vec::new(),
            Some(value) => parse_collection_map(value, listed, max_refs)?,
        };
        Ok(Self {
            refs: main_refs,
            collection_id,
            collection_map,
            partial_map,
            metadata,
        })
    }

    /// `ostree.summary.last-modified` of a serialized summary, reading only its metadata
    /// (not its refs, nor checking it further): enough to rank sources, cheap on any size.
    pub fn last_modified_of(bytes: &[u8]) -> Option<u64> {
        Self::metadata_of(bytes)?.get_u64_big_endian(LAST_MODIFIED_KEY)
    }

    /// The metadata dictionary of a serialized summary, reading only it (not its refs).
    pub fn metadata_of(bytes: &[u8]) -> Option<Metadata> {
        if bytes.len() as u64 > MAX_METADATA_SIZE {
            return None;
        }
        let aligned = copy_to_align(bytes);
        let (_, metadata) = gv!("(a(s(taya{sv}))a{sv})")
            .cast(aligned.as_ref())
            .to_tuple();
        Metadata::from_dict(metadata, 0).ok()
    }

    /// `ostree.summary.last-modified`, seconds since the Unix epoch.
    pub fn last_modified(&self) -> Option<u64> {
        self.metadata.get_u64_big_endian(LAST_MODIFIED_KEY)
    }

    /// `ostree.summary.expires`, seconds since the Unix epoch.
    pub fn expires(&self) -> Option<u64> {
        self.metadata.get_u64_big_endian(EXPIRES_KEY)
    }

    /// Every ref with its collection: the main list under [`Summary::collection_id`], then
    /// the collection map.
    pub fn collection_refs(&self) -> impl Iterator<Item = (Option<&str>, &SummaryRef)> {
        let main = self.refs.iter().map(|r| (self.collection_id.as_deref(), r));
        let mapped = self
            .collection_map
            .iter()
            .flat_map(|(id, refs)| refs.iter().map(move |r| (Some(id.as_str()), r)));
        main.chain(mapped)
    }

    /// Every ref listed as held only in part, with its collection.
    pub fn partial_refs(&self) -> impl Iterator<Item = (&str, &SummaryRef)> {
        self.partial_map
            .iter()
            .flat_map(|(id, refs)| refs.iter().map(move |r| (id.as_str(), r)))
    }

    /// The commit of `ref_name` in `collection_id` (None: the main list whatever its
    /// collection).
    pub fn lookup(&self, collection_id: Option<&str>, ref_name: &str) -> Option<&SummaryRef> {
        match collection_id {
            None => self.refs.iter().find(|r| r.name == ref_name),
            Some(id) => self
                .collection_refs()
                .find(|(cid, r)| *cid == Some(id) && r.name == ref_name)
                .map(|(_, r)| r),
        }
    }
}

fn summary_ref(
    what: &'static str,
    name: &str,
    size: u64,
    checksum: &[u8],
    metadata: Metadata,
) -> Result<SummaryRef, FormatError> {
    validate_ref_name(name).map_err(|error| FormatError::name(what, error))?;
    let commit = Checksum::from_slice(checksum).map_err(|_| {
        FormatError::invalid(
            what,
            format!("ref {name:?} has a checksum of {} bytes", checksum.len()),
        )
    })?;
    Ok(SummaryRef {
        name: name.to_owned(),
        commit,
        commit_size: size,
        metadata,
    })
}

fn too_many_refs(count: usize, max_refs: usize) -> FormatError {
    FormatError::invalid(
        "summary",
        format!("it lists {count} refs or more, more than the {max_refs} allowed"),
    )
}

/// The collection map, refused when it and the `listed` refs of the main list together
/// list more than `max_refs`.
fn parse_collection_map(
    value: &MetadataValue,
    listed: usize,
    max_refs: usize,
) -> Result<Vec<(String, Vec<SummaryRef>)>, FormatError> {
    const WHAT: &str = "summary collection map";
    if value.type_str() != COLLECTION_MAP_TYPE {
        return Err(FormatError::invalid(
            WHAT,
            format!(
                "has type {}, expected {COLLECTION_MAP_TYPE}",
                value.type_str()
            ),
        ));
    }
    let aligned = copy_to_align(value.data());
    let map = gv!("a{sa(s(taya{sv}))}").cast(aligned.as_ref());
    let mut listed = listed;
    for entry in map {
        listed = listed.saturating_add(entry.to_tuple().1.len());
        if listed > max_refs {
            return Err(too_many_refs(listed, max_refs));
        }
    }
    let mut collections: Vec<(String, Vec<SummaryRef>)> = Vec::new();
    let mut raw = Vec::new();
    for entry in map {
        let (collection_id, refs) = entry.to_tuple();
        let collection_id = collection_id.to_str();
        let mut list = Vec::new();
        for r in refs {
            let (name, details) = r.to_tuple();
            let (size, checksum, metadata) = details.to_tuple();
            let metadata = Metadata::from_dict(metadata, 0)?;
            list.push((name.to_str(), *size, checksum, metadata));
        }
        raw.push((collection_id, list));
    }
    let again = serialize_collection_map(WHAT, &raw)?;
    ensure_normal_form(WHAT, COLLECTION_MAP_TYPE, value.data(), &again)?;
    for (collection_id, list) in raw {
        validate_collection_id(collection_id).map_err(|error| FormatError::name(WHAT, error))?;
        let mut refs = Vec::new();
        for (name, size, checksum, metadata) in list {
            refs.push(summary_ref(WHAT, name, size, checksum, metadata)?);
        }
        collections.push((collection_id.to_owned(), refs));
    }
    Ok(collections)
}

/// Builds summaries in OSTree's format, for tests and demos; [`Summary::parse`] reads them.
pub fn build_summary(refs: &[SummaryEntry], metadata: &Metadata) -> Result<Vec<u8>, FormatError> {
    let raw = raw_refs(refs);
    with_ref_items(&raw, |items| {
        serialize(
            "summary",
            gv!("(a(s(taya{sv}))a{sv})"),
            &(items, &metadata.serializable()),
        )
    })
}

/// A ref as a summary lists it: name, commit, commit size, metadata.
pub type SummaryEntry = (String, Checksum, u64, Metadata);

/// The `ostree.summary.collection-map` value listing `collections` (collection ID, then its
/// refs as name, commit, commit size, metadata), as libostree writes it for mirrored refs.
pub fn collection_map_value(
    collections: &[(String, Vec<SummaryEntry>)],
) -> Result<MetadataValue, FormatError> {
    let raw: Vec<(&str, Vec<RawRef<'_>>)> = collections
        .iter()
        .map(|(id, refs)| (id.as_str(), raw_refs(refs)))
        .collect();
    let data = serialize_collection_map("summary collection map", &raw)?;
    MetadataValue::from_parts(COLLECTION_MAP_TYPE, data)
}

/// Serialises a collection map (`a{sa(s(taya{sv}))}`): each collection ID with its refs.
fn serialize_collection_map(
    what: &'static str,
    raw: &[(&str, Vec<RawRef<'_>>)],
) -> Result<Vec<u8>, FormatError> {
    let entries: Vec<Vec<Entries<'_>>> = raw
        .iter()
        .map(|(_, list)| list.iter().map(|r| r.3.serializable()).collect())
        .collect();
    let details: Vec<Vec<RefDetails<'_>>> = raw
        .iter()
        .zip(&entries)
        .map(|((_, list), entries)| {
            list.iter()
                .zip(entries)
                .map(|(r, e)| (r.1, r.2, e))
                .collect()
        })
        .collect();
    let items: Vec<Vec<RefItem<'_>>> = raw
        .iter()
        .zip(&details)
        .map(|((_, list), details)| list.iter().zip(details).map(|(r, d)| (r.0, d)).collect())
        .collect();
    let outer: Vec<(&str, &Vec<RefItem<'_>>)> = raw
        .iter()
        .zip(&items)
        .map(|((id, _), list)| (*id, list))
        .collect();
    serialize(what, gv!("a{sa(s(taya{sv}))}"), &outer)
}

/// A ref as read from a summary: name, commit size, checksum bytes, metadata.
type RawRef<'a> = (&'a str, u64, &'a [u8], Metadata);

/// `refs` in the order of the GVariant's fields: name, size, commit bytes, metadata.
fn raw_refs(refs: &[SummaryEntry]) -> Vec<RawRef<'_>> {
    refs.iter()
        .map(|(name, commit, size, metadata)| {
            (
                name.as_str(),
                *size,
                commit.as_bytes().as_slice(),
                metadata.clone(),
            )
        })
        .collect()
}
/// A metadata dictionary's entries in the shape `gvariant` serialises.
type Entries<'a> = Vec<(&'a str, &'a MetadataValue)>;
/// A ref's `(taya{sv})` in the shape `gvariant` serialises.
type RefDetails<'a> = (u64, &'a [u8], &'a Entries<'a>);
/// A ref's `(s(taya{sv}))` in the shape `gvariant` serialises.
type RefItem<'a> = (&'a str, &'a RefDetails<'a>);

/// Calls `f` with a ref list shaped for serialisation (the borrowed pieces live here).
fn with_ref_items<R>(raw: &[RawRef<'_>], f: impl FnOnce(&Vec<RefItem<'_>>) -> R) -> R {
    let entries: Vec<Entries<'_>> = raw.iter().map(|r| r.3.serializable()).collect();
    let details: Vec<RefDetails<'_>> = raw
        .iter()
        .zip(&entries)
        .map(|(r, e)| (r.1, r.2, e))
        .collect();
    let items: Vec<RefItem<'_>> = raw.iter().zip(&details).map(|(r, d)| (r.0, d)).collect();
    f(&items)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ref_metadata(timestamp: u64, version: Option<&str>) -> Metadata {
        let mut metadata = Metadata::new();
        metadata
            .insert(
                COMMIT_TIMESTAMP_KEY,
                MetadataValue::u64_big_endian(timestamp),
            )
            .expect("timestamp");
        if let Some(version) = version {
            metadata
                .insert_str(COMMIT_VERSION_KEY, version)
                .expect("version");
        }
        metadata
    }

    #[test]
    fn a_summary_listing_more_refs_than_allowed_is_refused_before_they_are_read() {
        let refs: Vec<_> = (0..11)
            .map(|index| {
                (
                    format!("app/{index}"),
                    Checksum::from_array([index; 32]),
                    100,
                    ref_metadata(1_700_000_000, None),
                )
            })
            .collect();
        let bytes = build_summary(&refs, &Metadata::new()).expect("build");
        assert_eq!(
            Summary::parse_listing_at_most(&bytes, 11)
                .expect("at the limit")
                .refs
                .len(),
            11
        );
        let error = Summary::parse_listing_at_most(&bytes, 10)
            .expect_err("one ref over the limit")
            .to_string();
        assert!(
            error.contains("11 refs") && error.contains("10 allowed"),
            "{error}"
        );
        // The limit is checked before any ref: the refs' names are not even looked at.
        let bad_names: Vec<_> = refs
            .iter()
            .map(|(_, commit, size, metadata)| {
                ("..bad".to_owned(), *commit, *size, metadata.clone())
            })
            .collect();
        let bytes = build_summary(&bad_names, &Metadata::new()).expect("build");
        let error = Summary::parse_listing_at_most(&bytes, 10)
            .expect_err("over the limit")
            .to_string();
        assert!(error.contains("10 allowed"), "{error}");
        const { assert!(MAX_SUMMARY_REFS < 2_000_000) };
    }

    #[test]
    fn round_trips_a_summary() {
        let mut metadata = Metadata::new();
        metadata
            .insert_str(COLLECTION_ID_KEY, "org.example.Os")
            .expect("cid");
        metadata
            .insert(
                LAST_MODIFIED_KEY,
                MetadataValue::u64_big_endian(1_700_000_100),
            )
            .expect("last modified");
        let refs = vec![
            (
                "os/stable".to_owned(),
                Checksum::from_array([4; 32]),
                158,
                ref_metadata(1_700_000_000, Some("1.0")),
            ),
            (
                "ostree-metadata".to_owned(),
                Checksum::from_array([5; 32]),
                190,
                ref_metadata(1_700_000_001, None),
            ),
        ];
        let bytes = build_summary(&refs, &metadata).expect("build");
        let summary = Summary::parse(&bytes).expect("parse");
        assert_eq!(summary.collection_id.as_deref(), Some("org.example.Os"));
        assert_eq!(summary.last_modified(), Some(1_700_000_100));
        assert_eq!(summary.refs.len(), 2);
        assert_eq!(summary.refs[0].commit_size, 158);
        assert_eq!(summary.refs[0].timestamp(), Some(1_700_000_000));
        assert_eq!(summary.refs[0].version(), Some("1.0"));
        let found = summary
            .lookup(Some("org.example.Os"), "os/stable")
            .expect("ref");
        assert_eq!(found.commit, Checksum::from_array([4; 32]));
        for cut in 0..bytes.len() {
            assert!(Summary::parse(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn refs_held_in_part_are_listed_apart_and_counted_in_the_limit() {
        let entry = |name: &str, byte: u8| {
            (
                name.to_owned(),
                Checksum::from_array([byte; 32]),
                100,
                ref_metadata(1_700_000_000, None),
            )
        };
        let mut metadata = Metadata::new();
        metadata
            .insert_str(COLLECTION_ID_KEY, "org.example.Apps")
            .expect("cid");
        let partial = vec![(
            "org.example.Apps".to_owned(),
            vec![entry("runtime/org.example.App.Locale/x86_64/stable", 7)],
        )];
        metadata
            .insert(
                PARTIAL_COLLECTION_MAP_KEY,
                collection_map_value(&partial).expect("map"),
            )
            .expect("partial map");
        let main = vec![entry("app/org.example.App/x86_64/stable", 6)];
        let bytes = build_summary(&main, &metadata).expect("build");
        let summary = Summary::parse(&bytes).expect("parse");
        // Not among the refs every client reads.
        assert_eq!(summary.collection_refs().count(), 1);
        let held_in_part: Vec<(&str, &str)> = summary
            .partial_refs()
            .map(|(id, r)| (id, r.name.as_str()))
            .collect();
        assert_eq!(
            held_in_part,
            vec![(
                "org.example.Apps",
                "runtime/org.example.App.Locale/x86_64/stable"
            )]
        );
        let error = Summary::parse_listing_at_most(&bytes, 1)
            .expect_err("two refs in all, one allowed")
            .to_string();
        assert!(error.contains("1 allowed"), "{error}");

        // A peer's map is checked as the main list is: names and checksums.
        let listing = |name: &str| -> Vec<u8> {
            let mut metadata = Metadata::new();
            let map =
                collection_map_value(&[("org.example.Apps".to_owned(), vec![entry(name, 7)])])
                    .expect("map");
            metadata
                .insert(PARTIAL_COLLECTION_MAP_KEY, map)
                .expect("partial map");
            build_summary(&main, &metadata).expect("build")
        };
        let error = Summary::parse(&listing("../../escape"))
            .expect_err("a bad ref name")
            .to_string();
        assert!(error.contains("invalid name"), "{error}");
        let whole = listing("runtime/ok/x86_64/stable");
        assert!(Summary::parse(&whole).is_ok());
        for cut in 0..whole.len() {
            assert!(Summary::parse(&whole[..cut]).is_err(), "cut at {cut}");
        }
        let mut wrong_type = Metadata::new();
        wrong_type
            .insert_str(PARTIAL_COLLECTION_MAP_KEY, "not a map")
            .expect("string");
        let bytes = build_summary(&main, &wrong_type).expect("build");
        let error = Summary::parse(&bytes).expect_err("a string").to_string();
        assert!(error.contains("expected a{sa(s(taya{sv}))}"), "{error}");
    }
}
