//! OSTree object formats: checksums, object kinds, GVariant views of metadata objects,
//! content headers and name validation. Pure functions over bytes; no I/O.
//!
//! Every parser here takes untrusted bytes. GVariant readers return default values for
//! malformed data instead of failing, so each parser re-serialises what it read and refuses
//! anything that is not byte-for-byte the normal form, then checks the rules libostree's
//! `ostree_validate_structureof_*` functions impose (checksum lengths, file names, modes,
//! xattr order).

pub mod checksum;
pub mod commit;
pub mod content;
pub mod dirtree;
pub mod metadata;
pub mod mode;
pub mod names;
pub mod stored;
pub mod subdirs;
pub mod summary;
#[cfg(test)]
pub(crate) mod test_trees;
mod variant;

use std::fmt;

pub use checksum::{Checksum, InvalidChecksum};
pub use commit::{Commit, ObjectSize, RelatedObject};
pub use content::{
    ContentHasher, FileHeader, Xattr, ARCHIVE_HEADER_MAX_SIZE, MAX_SYMLINK_TARGET_LEN, S_IFDIR,
    S_IFLNK, S_IFMT, S_IFREG,
};
pub use dirtree::{DirMeta, DirTree, DirTreeDir, DirTreeFile};
pub use metadata::{Metadata, MetadataValue};
pub use mode::RepoMode;
pub use names::{
    validate_collection_id, validate_file_name, validate_ref_name, validate_remote_name,
    FlatpakRef, InvalidName, NameKind,
};
pub use subdirs::{child_path, InvalidSubpath, Reach, Subdirs};
pub use summary::{Summary, SummaryRef};

/// libostree's `OSTREE_MAX_METADATA_SIZE`: larger metadata objects, summaries and detached
/// metadata are refused before they are read.
pub const MAX_METADATA_SIZE: u64 = 128 * 1024 * 1024;

/// Largest commit object read from anywhere. A commit is small except for `ostree.sizes`,
/// about 44 bytes per object of its tree: 12 MiB holds the sizes of ~285,000 objects, more
/// than a whole OS tree and several times the largest Flatpak runtime. Parsing a commit takes
/// about three times its size, so this keeps one parse, with the rest of a listing, within
/// 64 MiB.
pub const MAX_COMMIT_SIZE: u64 = 12 * 1024 * 1024;

/// Largest detached metadata (`.commitmeta`) read from anywhere. It holds the signatures: an
/// OpenPGP signature by an RSA-4096 key is ~600 bytes, an ed25519 one 64, so 64 KiB is over
/// three times what [`crate::trust::MAX_SIGNATURES_PER_KIND`] signatures of each kind take.
pub const MAX_DETACHED_METADATA_SIZE: u64 = 64 * 1024;

/// Most refs a summary may list (main list and collection map together); a summary with more
/// is refused before its refs are read. Flathub, the largest public remote, lists tens of
/// thousands.
pub const MAX_SUMMARY_REFS: usize = 500_000;

/// The kinds of object a repository stores under `objects/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectKind {
    /// Content: a regular file or a symlink, with its ownership, mode and xattrs.
    File,
    /// A directory listing: names of files and subdirectories with their checksums.
    DirTree,
    /// A directory's ownership, mode and xattrs.
    DirMeta,
    /// A commit.
    Commit,
    /// Detached metadata of a commit (signatures); named after the commit's checksum.
    CommitMeta,
}

impl ObjectKind {
    /// Every kind of object.
    pub const ALL: [ObjectKind; 5] = [
        Self::File,
        Self::DirTree,
        Self::DirMeta,
        Self::Commit,
        Self::CommitMeta,
    ];

    /// Metadata objects are GVariants named after the SHA-256 of their bytes (except
    /// [`ObjectKind::CommitMeta`], which is named after its commit).
    pub fn is_metadata(self) -> bool {
        !matches!(self, Self::File)
    }

    /// The object's file extension in a repository of `mode`: content is `filez` in archive
    /// repositories and `file` in the bare ones.
    pub fn extension(self, mode: RepoMode) -> &'static str {
        match self {
            Self::File if mode == RepoMode::Archive => "filez",
            Self::File => "file",
            Self::DirTree => "dirtree",
            Self::DirMeta => "dirmeta",
            Self::Commit => "commit",
            Self::CommitMeta => "commitmeta",
        }
    }

    /// The kind stored with `extension` in a repository of `mode`: the inverse of
    /// [`ObjectKind::extension`].
    pub fn from_extension(extension: &str, mode: RepoMode) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.extension(mode) == extension)
    }

    /// The name libostree uses in messages and in `ostree fsck` output.
    pub fn name(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::DirTree => "dirtree",
            Self::DirMeta => "dirmeta",
            Self::Commit => "commit",
            Self::CommitMeta => "commitmeta",
        }
    }

    /// libostree's `OstreeObjectType` number, as stored in `ostree.sizes`.
    pub fn ostree_number(self) -> u8 {
        match self {
            Self::File => 1,
            Self::DirTree => 2,
            Self::DirMeta => 3,
            Self::Commit => 4,
            Self::CommitMeta => 6,
        }
    }

    /// The kind for a libostree `OstreeObjectType` number, if Ferry handles it.
    pub fn from_ostree_number(number: u8) -> Option<Self> {
        match number {
            1 => Some(Self::File),
            2 => Some(Self::DirTree),
            3 => Some(Self::DirMeta),
            4 => Some(Self::Commit),
            6 => Some(Self::CommitMeta),
            _ => None,
        }
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One object: its checksum and kind. Displays as libostree does, `<checksum>.<kind>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId {
    /// The object's SHA-256 name.
    pub checksum: Checksum,
    /// Commit, dirtree, dirmeta, file or detached metadata.
    pub kind: ObjectKind,
}

impl ObjectId {
    /// The object `checksum` of type `kind`.
    pub fn new(checksum: Checksum, kind: ObjectKind) -> Self {
        Self { checksum, kind }
    }

    /// The object a repository of `mode` stores as `objects/DIR/FILE`, if that names one:
    /// DIR holds the checksum's first two hex digits, FILE the other 62 and the extension.
    pub fn from_object_path(dir: &str, file: &str, mode: RepoMode) -> Option<Self> {
        let (rest, extension) = file.split_once('.')?;
        if dir.len() != 2 || rest.len() != 62 {
            return None;
        }
        let checksum = Checksum::from_hex(&format!("{dir}{rest}")).ok()?;
        Some(Self::new(
            checksum,
            ObjectKind::from_extension(extension, mode)?,
        ))
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.checksum, self.kind)
    }
}

/// Bytes that are not a valid object of the expected format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// Bytes longer than Ferry reads for their type.
    #[error("{what} is {size} bytes, more than the {max} allowed")]
    TooLarge {
        /// What was being read.
        what: &'static str,
        /// Its length.
        size: u64,
        /// The longest accepted.
        max: u64,
    },
    /// Bytes that are not a GVariant of the expected type in normal form.
    #[error("{what} is not a well-formed GVariant of type {type_str} (not in normal form)")]
    NotNormalForm {
        /// What was being read.
        what: &'static str,
        /// The GVariant type expected.
        type_str: &'static str,
    },
    /// A name in the bytes (a ref, a collection ID, a file name) that libostree would refuse.
    #[error("{what} holds an invalid name")]
    Name {
        /// What was being read.
        what: &'static str,
        /// The name and the rule it breaks.
        #[source]
        source: Box<InvalidName>,
    },
    /// A part of the bytes (a metadata dictionary, one of its values) that is not valid.
    #[error("{what}: {part} is invalid")]
    Part {
        /// What was being read.
        what: &'static str,
        /// Which part, as a person would name it.
        part: String,
        /// What is wrong with it.
        #[source]
        source: Box<FormatError>,
    },
    /// A value GVariant cannot represent, such as a string holding a NUL byte.
    #[error("{what} cannot be serialised")]
    Unserialisable {
        /// What was being written.
        what: &'static str,
        /// The serialiser's error (shared: format errors are cloned).
        #[source]
        source: crate::causes::Shared<std::io::Error>,
    },
    /// Bytes that parse but break a rule of the format.
    #[error("{what}: {reason}")]
    Invalid {
        /// What was being read.
        what: &'static str,
        /// The rule broken.
        reason: String,
    },
}

impl FormatError {
    pub(crate) fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            what,
            reason: reason.into(),
        }
    }

    pub(crate) fn name(what: &'static str, source: InvalidName) -> Self {
        Self::Name {
            what,
            source: Box::new(source),
        }
    }

    pub(crate) fn part(what: &'static str, part: impl Into<String>, source: FormatError) -> Self {
        Self::Part {
            what,
            part: part.into(),
            source: Box::new(source),
        }
    }

    pub(crate) fn check_size(what: &'static str, size: usize, max: u64) -> Result<(), Self> {
        let size = size as u64;
        if size > max {
            return Err(Self::TooLarge { what, size, max });
        }
        Ok(())
    }
}

/// The SHA-256 of a metadata object's bytes, which is its name.
pub fn metadata_checksum(bytes: &[u8]) -> Checksum {
    use sha2::{Digest, Sha256};
    Checksum::from_array(Sha256::digest(bytes).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_follow_the_repo_mode() {
        assert_eq!(ObjectKind::File.extension(RepoMode::Archive), "filez");
        assert_eq!(ObjectKind::File.extension(RepoMode::BareUser), "file");
        assert_eq!(ObjectKind::DirTree.extension(RepoMode::Archive), "dirtree");
        assert_eq!(
            ObjectKind::CommitMeta.extension(RepoMode::Bare),
            "commitmeta"
        );
    }

    #[test]
    fn object_paths_name_objects_of_their_mode() {
        let hex = "ab".repeat(32);
        let checksum = Checksum::from_hex(&hex).expect("checksum");
        let file = |extension: &str| format!("{}.{extension}", &hex[2..]);
        for mode in [RepoMode::Archive, RepoMode::BareUser] {
            for kind in ObjectKind::ALL {
                assert_eq!(
                    ObjectId::from_object_path("ab", &file(kind.extension(mode)), mode),
                    Some(ObjectId::new(checksum, kind))
                );
            }
        }
        for (dir, file, mode) in [
            ("ab", file("file"), RepoMode::Archive),
            ("ab", file("filez"), RepoMode::Bare),
            ("ab", file("commitpartial"), RepoMode::Archive),
            ("a", format!("b{}.commit", &hex[2..]), RepoMode::Archive),
            ("ab", "short.filez".to_owned(), RepoMode::Archive),
        ] {
            assert_eq!(
                ObjectId::from_object_path(dir, &file, mode),
                None,
                "{dir}/{file}"
            );
        }
    }

    #[test]
    fn ostree_numbers_round_trip() {
        for kind in ObjectKind::ALL {
            assert_eq!(
                ObjectKind::from_ostree_number(kind.ostree_number()),
                Some(kind)
            );
        }
        assert_eq!(ObjectKind::from_ostree_number(5), None);
    }

    #[test]
    fn metadata_checksum_is_sha256() {
        assert_eq!(
            metadata_checksum(b"").to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
