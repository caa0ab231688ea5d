//! The few fields trust reads from OSTree objects: signatures in detached metadata
//! (`.commitmeta`, `summary.sig`) and bindings and timestamp in a commit. Thin views over
//! [`crate::object::Metadata`] and [`crate::object::Commit`].

use crate::object::metadata::{ED25519_SIGNATURES_KEY, GPG_SIGNATURES_KEY};
use crate::object::{Commit, FormatError, Metadata};

/// Most signatures of one kind (GPG packets, or ed25519 signatures) an object may carry;
/// with more it is refused before any is checked. Real objects carry one or two (one per
/// signing key, a few during a key rotation), so 16 bounds the work a source can cause.
pub const MAX_SIGNATURES_PER_KIND: usize = 16;

/// Most trusted keys one signature that names no issuer is checked against (every ed25519
/// signature, and OpenPGP signatures without an issuer subpacket): at most
/// `MAX_SIGNATURES_PER_KIND` × `MAX_KEYS_PER_UNNAMED_SIGNATURE` = 512 checks per object.
/// Keys beyond it (in configuration order) cannot vouch for such signatures.
pub const MAX_KEYS_PER_UNNAMED_SIGNATURE: usize = 32;

/// The signatures found in a `.commitmeta` object or a `summary.sig` file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DetachedSignatures {
    /// `ostree.gpgsigs`; None when the key is absent (or not of type `aay`).
    pub gpg: Option<Vec<Vec<u8>>>,
    /// `ostree.sign.ed25519`; None when the key is absent (or not of type `aay`).
    pub ed25519: Option<Vec<Vec<u8>>>,
}

impl DetachedSignatures {
    /// From parsed detached metadata. Like libostree, the first entry with a key wins and an
    /// entry of another type counts as absent.
    pub fn from_metadata(metadata: &Metadata) -> Self {
        Self {
            gpg: metadata.get_byte_arrays(GPG_SIGNATURES_KEY),
            ed25519: metadata.get_byte_arrays(ED25519_SIGNATURES_KEY),
        }
    }

    /// From a serialized `a{sv}`; the error says why it cannot be read.
    pub fn parse(bytes: &[u8]) -> Result<Self, FormatError> {
        Metadata::parse(bytes).map(|metadata| Self::from_metadata(&metadata))
    }

    /// From an optional `.commitmeta` object: a commit without one has no signatures.
    pub fn parse_optional(bytes: Option<&[u8]>) -> Result<Self, FormatError> {
        bytes.map_or_else(|| Ok(Self::default()), Self::parse)
    }
}

/// What trust reads from a commit object: its bindings and timestamp.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitFacts {
    /// `ostree.ref-binding`, None when absent.
    pub ref_binding: Option<Vec<String>>,
    /// `ostree.collection-binding`, None when absent.
    pub collection_binding: Option<String>,
    /// Seconds since the Unix epoch.
    pub timestamp: u64,
}

impl CommitFacts {
    /// The facts of `commit`.
    pub fn from_commit(commit: &Commit) -> Self {
        Self {
            ref_binding: commit.ref_binding(),
            collection_binding: commit.collection_binding().map(str::to_owned),
            timestamp: commit.timestamp,
        }
    }

    /// From a serialized commit; the error says why it cannot be read.
    pub fn parse(commit_bytes: &[u8]) -> Result<Self, FormatError> {
        Commit::parse(commit_bytes).map(|commit| Self::from_commit(&commit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::MetadataValue;

    #[test]
    fn reads_both_signature_kinds_and_ignores_wrong_types() {
        let gpg = vec![vec![0x88u8, 1, 2]];
        let ed = vec![vec![7u8; 64], vec![8u8; 64]];
        let mut metadata = Metadata::new();
        metadata
            .insert(GPG_SIGNATURES_KEY, MetadataValue::byte_arrays(&gpg))
            .expect("insert");
        metadata
            .insert(ED25519_SIGNATURES_KEY, MetadataValue::byte_arrays(&ed))
            .expect("insert");
        let bytes = metadata.to_bytes().expect("serialises");
        let found = DetachedSignatures::parse(&bytes).expect("parses");
        assert_eq!(found.gpg, Some(gpg));
        assert_eq!(found.ed25519, Some(ed));

        let mut wrong = Metadata::new();
        wrong
            .insert_str(GPG_SIGNATURES_KEY, "not signatures")
            .expect("insert");
        let bytes = wrong.to_bytes().expect("serialises");
        assert_eq!(
            DetachedSignatures::parse(&bytes).expect("parses"),
            DetachedSignatures::default()
        );
        assert_eq!(
            DetachedSignatures::parse(b"").expect("empty is an empty dictionary"),
            DetachedSignatures::default()
        );
    }
}
