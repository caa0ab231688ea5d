//! `a{sv}` dictionaries: commit metadata, detached commit metadata (`.commitmeta`),
//! `summary.sig` and the metadata of a summary and of its refs.
//!
//! Values keep their serialised bytes and type string, so a dictionary read from disk
//! serialises back to the same bytes and unknown keys survive untouched. Typed getters follow
//! `g_variant_lookup_value`: the first entry with the key wins, and an entry of another type
//! counts as absent.

use std::fmt;

use gvariant::aligned_bytes::{copy_to_align, AsAligned};
use gvariant::{gv, Cast, Marker, NonFixedWidthArray, SerializeTo, Str, Structure, Variant};

use super::variant::{ensure_normal_form, is_single_complete_type, serialize};
use super::{FormatError, MAX_METADATA_SIZE};

/// libostree's commit metadata key for the version (`s`).
pub const VERSION_KEY: &str = "version";
/// Refs a commit may be published under (`as`).
pub const REF_BINDING_KEY: &str = "ostree.ref-binding";
/// The collection a commit belongs to (`s`).
pub const COLLECTION_BINDING_KEY: &str = "ostree.collection-binding";
/// Object sizes of a commit (`aay`).
pub const SIZES_KEY: &str = "ostree.sizes";
/// OpenPGP signatures in detached metadata (`aay`).
pub const GPG_SIGNATURES_KEY: &str = "ostree.gpgsigs";
/// ed25519 signatures in detached metadata (`aay`, 64 bytes each).
pub const ED25519_SIGNATURES_KEY: &str = "ostree.sign.ed25519";

/// Nested `a{sv}` values are checked down to this depth; deeper ones are kept as opaque bytes.
const MAX_NESTED_DEPTH: usize = 8;

/// One value of an `a{sv}`: its GVariant type string and serialised bytes (normal form).
#[derive(Clone, PartialEq, Eq)]
pub struct MetadataValue {
    type_str: String,
    data: Vec<u8>,
}

impl fmt::Debug for MetadataValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "MetadataValue({}, {} bytes)",
            self.type_str,
            self.data.len()
        )
    }
}

impl MetadataValue {
    /// A value from its type string and serialised bytes. The bytes are checked to be in
    /// normal form for the common types (`s`, `as`, `ay`, `aay`, `t`, `u`, `b`, `a{sv}`, ...);
    /// values of other types only need a valid type string.
    pub fn from_parts(type_str: &str, data: Vec<u8>) -> Result<Self, FormatError> {
        let value = Self {
            type_str: type_str.to_owned(),
            data,
        };
        value.check(0)?;
        Ok(value)
    }

    /// A string (`s`). Fails when the string holds a NUL byte.
    pub fn string(value: &str) -> Result<Self, FormatError> {
        Ok(Self::unchecked(
            "s",
            serialize("string value", gv!("s"), value)?,
        ))
    }

    /// A string array (`as`).
    pub fn string_array<S: AsRef<str>>(values: &[S]) -> Result<Self, FormatError> {
        let values: Vec<&str> = values.iter().map(AsRef::as_ref).collect();
        Ok(Self::unchecked(
            "as",
            serialize("string array value", gv!("as"), &values)?,
        ))
    }

    /// A byte array (`ay`).
    pub fn bytes(value: &[u8]) -> Self {
        Self::unchecked("ay", value.to_vec())
    }

    /// An array of byte arrays (`aay`), as signatures and `ostree.sizes` are stored.
    pub fn byte_arrays<B: AsRef<[u8]>>(values: &[B]) -> Self {
        let values: Vec<&[u8]> = values.iter().map(AsRef::as_ref).collect();
        let mut data = Vec::new();
        // Byte arrays hold no strings, so serialising them cannot fail.
        let _ = gv!("aay").serialize(values.iter().copied(), &mut data);
        Self::unchecked("aay", data)
    }

    /// A 64-bit unsigned integer (`t`), stored as GVariant does (little-endian).
    pub fn u64(value: u64) -> Self {
        Self::unchecked("t", value.to_le_bytes().to_vec())
    }

    /// A 64-bit unsigned integer (`t`) byte-swapped first, as OSTree stores timestamps.
    pub fn u64_big_endian(value: u64) -> Self {
        Self::unchecked("t", value.to_be_bytes().to_vec())
    }

    /// A 32-bit unsigned integer (`u`).
    pub fn u32(value: u32) -> Self {
        Self::unchecked("u", value.to_le_bytes().to_vec())
    }

    /// A boolean (`b`).
    pub fn bool(value: bool) -> Self {
        Self::unchecked("b", vec![u8::from(value)])
    }

    /// A nested dictionary (`a{sv}`).
    pub fn metadata(value: &Metadata) -> Result<Self, FormatError> {
        Ok(Self::unchecked("a{sv}", value.to_bytes()?))
    }

    fn unchecked(type_str: &str, data: Vec<u8>) -> Self {
        Self {
            type_str: type_str.to_owned(),
            data,
        }
    }

    /// The GVariant type string, for example `s` or `aay`.
    pub fn type_str(&self) -> &str {
        &self.type_str
    }

    /// The serialised bytes of the value.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The value as a string, if it is one.
    pub fn as_str(&self) -> Option<&str> {
        if self.type_str != "s" {
            return None;
        }
        Some(gv!("s").cast(self.data.as_slice().as_aligned()).to_str())
    }

    /// The value as a string array, if it is one.
    pub fn as_str_array(&self) -> Option<Vec<String>> {
        if self.type_str != "as" {
            return None;
        }
        let aligned = copy_to_align(&self.data);
        let array = gv!("as").cast(aligned.as_ref());
        Some(array.iter().map(|s| s.to_str().to_owned()).collect())
    }

    /// The value as a byte array, if it is one.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        (self.type_str == "ay").then_some(self.data.as_slice())
    }

    /// The value as an array of byte arrays, if it is one.
    pub fn as_byte_arrays(&self) -> Option<Vec<Vec<u8>>> {
        if self.type_str != "aay" {
            return None;
        }
        let aligned = copy_to_align(&self.data);
        let array = gv!("aay").cast(aligned.as_ref());
        Some(array.iter().map(|item| item.to_vec()).collect())
    }

    /// The value as a `t`, read as GVariant stores it.
    pub fn as_u64(&self) -> Option<u64> {
        if self.type_str != "t" {
            return None;
        }
        let bytes: [u8; 8] = self.data.as_slice().try_into().ok()?;
        Some(u64::from_le_bytes(bytes))
    }

    /// The value as a `u`.
    pub fn as_u32(&self) -> Option<u32> {
        if self.type_str != "u" {
            return None;
        }
        let bytes: [u8; 4] = self.data.as_slice().try_into().ok()?;
        Some(u32::from_le_bytes(bytes))
    }

    /// The value as a `b`.
    pub fn as_bool(&self) -> Option<bool> {
        if self.type_str != "b" {
            return None;
        }
        match self.data.as_slice() {
            [0] => Some(false),
            [1] => Some(true),
            _ => None,
        }
    }

    /// The value as a nested `a{sv}`.
    pub fn as_metadata(&self) -> Option<Metadata> {
        if self.type_str != "a{sv}" {
            return None;
        }
        Metadata::parse_at_depth(&self.data, 1).ok()
    }

    /// Checks the type string, and the bytes of the common types, like GLib's
    /// `g_variant_is_normal_form`.
    fn check(&self, depth: usize) -> Result<(), FormatError> {
        const WHAT: &str = "metadata value";
        if !is_single_complete_type(self.type_str.as_bytes()) {
            return Err(FormatError::invalid(
                WHAT,
                format!("invalid GVariant type {:?}", self.type_str),
            ));
        }
        let data = self.data.as_slice();
        let fixed_size = match self.type_str.as_str() {
            "b" | "y" => Some(1),
            "n" | "q" => Some(2),
            "i" | "u" | "h" => Some(4),
            "x" | "t" | "d" => Some(8),
            _ => None,
        };
        if let Some(size) = fixed_size {
            if data.len() != size || (self.type_str == "b" && data[0] > 1) {
                return Err(FormatError::NotNormalForm {
                    what: WHAT,
                    type_str: "fixed-size value",
                });
            }
            return Ok(());
        }
        match self.type_str.as_str() {
            "s" | "o" | "g" => {
                let text = gv!("s").cast(data.as_aligned()).to_str();
                let again = serialize(WHAT, gv!("s"), text)?;
                ensure_normal_form(WHAT, "s", data, &again)
            }
            "as" => {
                let aligned = copy_to_align(data);
                let items: Vec<&str> = gv!("as")
                    .cast(aligned.as_ref())
                    .iter()
                    .map(Str::to_str)
                    .collect();
                let again = serialize(WHAT, gv!("as"), &items)?;
                ensure_normal_form(WHAT, "as", data, &again)
            }
            "aay" => {
                let aligned = copy_to_align(data);
                let items: Vec<&[u8]> = gv!("aay").cast(aligned.as_ref()).iter().collect();
                let again = serialize(WHAT, gv!("aay"), items.iter().copied())?;
                ensure_normal_form(WHAT, "aay", data, &again)
            }
            "at" | "au" => {
                let width = if self.type_str == "at" { 8 } else { 4 };
                if !data.len().is_multiple_of(width) {
                    return Err(FormatError::NotNormalForm {
                        what: WHAT,
                        type_str: "fixed-width array",
                    });
                }
                Ok(())
            }
            "a{sv}" if depth < MAX_NESTED_DEPTH => {
                Metadata::parse_at_depth(data, depth + 1).map(|_| ())
            }
            _ => Ok(()),
        }
    }
}

/// A serialised `a{sv}` key/value writer for [`Metadata::to_bytes`]: writes the value bytes,
/// a NUL and the type string, which is how GVariant frames a `v`.
impl SerializeTo<Variant> for &MetadataValue {
    fn serialize(self, f: &mut impl std::io::Write) -> std::io::Result<usize> {
        f.write_all(&self.data)?;
        f.write_all(b"\0")?;
        f.write_all(self.type_str.as_bytes())?;
        Ok(self.data.len() + 1 + self.type_str.len())
    }
}

/// An `a{sv}` dictionary, in the order it was read or built.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    entries: Vec<(String, MetadataValue)>,
}

impl Metadata {
    /// Empty metadata.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses a serialised `a{sv}` (a `.commitmeta` object or `summary.sig`), refusing more
    /// than [`MAX_METADATA_SIZE`] bytes, data not in normal form and empty keys.
    pub fn parse(bytes: &[u8]) -> Result<Self, FormatError> {
        Self::parse_at_depth(bytes, 0)
    }

    fn parse_at_depth(bytes: &[u8], depth: usize) -> Result<Self, FormatError> {
        const WHAT: &str = "metadata dictionary";
        FormatError::check_size(WHAT, bytes.len(), MAX_METADATA_SIZE)?;
        let aligned = copy_to_align(bytes);
        let dict = gv!("a{sv}").cast(aligned.as_ref());
        let metadata = Self::from_dict(dict, depth)?;
        ensure_normal_form(WHAT, "a{sv}", bytes, &metadata.to_bytes()?)?;
        Ok(metadata)
    }

    /// Reads the entries of an `a{sv}` nested in a larger GVariant. The caller checks the
    /// normal form of the whole by re-serialising it.
    pub(crate) fn from_dict<'a, E>(
        dict: &'a NonFixedWidthArray<E>,
        depth: usize,
    ) -> Result<Self, FormatError>
    where
        E: Cast + ?Sized + 'static + Structure<'a, RefTuple = (&'a Str, &'a Variant)>,
    {
        let mut entries = Vec::new();
        for entry in dict {
            let (key, value) = entry.to_tuple();
            let key = key.to_str();
            if key.is_empty() {
                return Err(FormatError::invalid(
                    "metadata dictionary",
                    "empty or malformed metadata key",
                ));
            }
            let (type_str, data) = value.split();
            let type_str = std::str::from_utf8(type_str).map_err(|_| {
                FormatError::invalid("metadata dictionary", format!("key {key:?}: bad type"))
            })?;
            let value = MetadataValue {
                type_str: type_str.to_owned(),
                data: data.to_vec(),
            };
            value.check(depth).map_err(|error| {
                FormatError::part("metadata dictionary", format!("key {key:?}"), error)
            })?;
            entries.push((key.to_owned(), value));
        }
        Ok(Self { entries })
    }

    /// Serialises the dictionary as an `a{sv}`.
    pub fn to_bytes(&self) -> Result<Vec<u8>, FormatError> {
        serialize("metadata dictionary", gv!("a{sv}"), &self.serializable())
    }

    /// The entries in the shape `gvariant` serialises as `a{sv}`.
    pub(crate) fn serializable(&self) -> Vec<(&str, &MetadataValue)> {
        self.entries
            .iter()
            .map(|(key, value)| (key.as_str(), value))
            .collect()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many entries there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Keys in order; a key appears once per entry holding it.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(key, _)| key.as_str())
    }

    /// All entries in order.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &MetadataValue)> {
        self.entries
            .iter()
            .map(|(key, value)| (key.as_str(), value))
    }

    /// The first value stored under `key`.
    pub fn get(&self, key: &str) -> Option<&MetadataValue> {
        self.entries
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value)
    }

    /// A string (`s`); None when absent or of another type.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(MetadataValue::as_str)
    }

    /// A string array (`as`); None when absent or of another type.
    pub fn get_str_array(&self, key: &str) -> Option<Vec<String>> {
        self.get(key).and_then(MetadataValue::as_str_array)
    }

    /// A byte array (`ay`); None when absent or of another type.
    pub fn get_bytes(&self, key: &str) -> Option<&[u8]> {
        self.get(key).and_then(MetadataValue::as_bytes)
    }

    /// An array of byte arrays (`aay`), such as `ostree.gpgsigs` or `ostree.sign.ed25519`;
    /// None when absent or of another type.
    pub fn get_byte_arrays(&self, key: &str) -> Option<Vec<Vec<u8>>> {
        self.get(key).and_then(MetadataValue::as_byte_arrays)
    }

    /// A `t` as GVariant stores it (little-endian); None when absent or of another type.
    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(MetadataValue::as_u64)
    }

    /// A `t` that OSTree byte-swapped before storing (timestamps such as
    /// `ostree.commit.timestamp` and `ostree.summary.last-modified`).
    pub fn get_u64_big_endian(&self, key: &str) -> Option<u64> {
        self.get_u64(key).map(u64::swap_bytes)
    }

    /// A `u`; None when absent or of another type.
    pub fn get_u32(&self, key: &str) -> Option<u32> {
        self.get(key).and_then(MetadataValue::as_u32)
    }

    /// A `b`; None when absent or of another type.
    pub fn get_bool(&self, key: &str) -> Option<bool> {
        self.get(key).and_then(MetadataValue::as_bool)
    }

    /// A nested `a{sv}`; None when absent or of another type.
    pub fn get_metadata(&self, key: &str) -> Option<Metadata> {
        self.get(key).and_then(MetadataValue::as_metadata)
    }

    /// Sets `key` to `value`, replacing every entry with that key (the first keeps its place).
    pub fn insert(&mut self, key: &str, value: MetadataValue) -> Result<(), FormatError> {
        if key.is_empty() || key.contains('\0') {
            return Err(FormatError::invalid(
                "metadata dictionary",
                format!("invalid key {key:?}"),
            ));
        }
        match self.entries.iter().position(|(name, _)| name == key) {
            Some(index) => {
                self.entries[index].1 = value;
                let mut seen = false;
                self.entries.retain(|(name, _)| {
                    if name != key {
                        return true;
                    }
                    let keep = !seen;
                    seen = true;
                    keep
                });
            }
            None => self.entries.push((key.to_owned(), value)),
        }
        Ok(())
    }

    /// Sets a string value.
    pub fn insert_str(&mut self, key: &str, value: &str) -> Result<(), FormatError> {
        self.insert(key, MetadataValue::string(value)?)
    }

    /// Sets a string array value.
    pub fn insert_str_array<S: AsRef<str>>(
        &mut self,
        key: &str,
        values: &[S],
    ) -> Result<(), FormatError> {
        self.insert(key, MetadataValue::string_array(values)?)
    }

    /// Sets an array of byte arrays, as `ostree.gpgsigs` and `ostree.sign.ed25519` are.
    pub fn insert_byte_arrays<B: AsRef<[u8]>>(
        &mut self,
        key: &str,
        values: &[B],
    ) -> Result<(), FormatError> {
        self.insert(key, MetadataValue::byte_arrays(values))
    }

    /// Removes every entry with `key`; returns whether there was one.
    pub fn remove(&mut self, key: &str) -> bool {
        let before = self.entries.len();
        self.entries.retain(|(name, _)| name != key);
        before != self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Metadata {
        let mut metadata = Metadata::new();
        metadata.insert_str("version", "1.0").expect("string");
        metadata
            .insert_str_array(REF_BINDING_KEY, &["os/x86_64/stable"])
            .expect("array");
        metadata
            .insert_byte_arrays(ED25519_SIGNATURES_KEY, &[[7u8; 64]])
            .expect("aay");
        metadata
            .insert(
                "ostree.commit.timestamp",
                MetadataValue::u64_big_endian(1_700_000_000),
            )
            .expect("t");
        metadata
            .insert("flag", MetadataValue::bool(true))
            .expect("b");
        metadata
    }

    #[test]
    fn round_trips_and_reads_typed_values() {
        let metadata = sample();
        let bytes = metadata.to_bytes().expect("serialise");
        let parsed = Metadata::parse(&bytes).expect("parse");
        assert_eq!(parsed, metadata);
        assert_eq!(parsed.get_str("version"), Some("1.0"));
        assert_eq!(
            parsed.get_str_array(REF_BINDING_KEY),
            Some(vec!["os/x86_64/stable".to_owned()])
        );
        assert_eq!(
            parsed.get_byte_arrays(ED25519_SIGNATURES_KEY),
            Some(vec![vec![7u8; 64]])
        );
        assert_eq!(
            parsed.get_u64_big_endian("ostree.commit.timestamp"),
            Some(1_700_000_000)
        );
        assert_eq!(parsed.get_bool("flag"), Some(true));
        // Another type counts as absent.
        assert_eq!(parsed.get_str(REF_BINDING_KEY), None);
        assert_eq!(parsed.get_str("missing"), None);
    }

    #[test]
    fn insert_replaces_and_remove_deletes() {
        let mut metadata = sample();
        metadata.insert_str("version", "2.0").expect("string");
        assert_eq!(metadata.get_str("version"), Some("2.0"));
        assert_eq!(metadata.keys().filter(|k| *k == "version").count(), 1);
        assert!(metadata.remove("version"));
        assert!(!metadata.remove("version"));
        assert!(metadata.insert_str("bad", "a\0b").is_err());
        assert!(metadata.insert_str("", "x").is_err());
    }

    #[test]
    fn refuses_non_normal_and_truncated_data() {
        let bytes = sample().to_bytes().expect("serialise");
        for cut in 1..bytes.len() {
            assert!(
                Metadata::parse(&bytes[..cut]).is_err(),
                "truncated to {cut} bytes"
            );
        }
        let mut padded = bytes.clone();
        padded.push(0);
        assert!(Metadata::parse(&padded).is_err());
        // The empty dictionary is the empty byte string.
        assert_eq!(Metadata::parse(&[]).expect("empty"), Metadata::new());
    }

    #[test]
    fn refuses_bad_nested_values() {
        // A `b` holding 2 is not in normal form.
        let mut metadata = Metadata::new();
        metadata
            .insert(
                "flag",
                MetadataValue {
                    type_str: "b".into(),
                    data: vec![2],
                },
            )
            .expect("insert");
        let bytes = metadata.to_bytes().expect("serialise");
        assert!(Metadata::parse(&bytes).is_err());
        assert!(MetadataValue::from_parts("zz", vec![]).is_err());
        assert!(MetadataValue::from_parts("s", b"abc".to_vec()).is_err());
        assert!(MetadataValue::from_parts("s", b"abc\0".to_vec()).is_ok());
    }
}
