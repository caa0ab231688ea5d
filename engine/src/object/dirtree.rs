//! Directory objects: `.dirtree` `(a(say)a(sayay))` lists a directory's files (name, content
//! checksum) and subdirectories (name, dirtree checksum, dirmeta checksum), each sorted by
//! name; `.dirmeta` `(uuua(ayay))` holds a directory's uid, gid, mode (big-endian) and xattrs.

use gvariant::aligned_bytes::copy_to_align;
use gvariant::{gv, Marker, Structure};

use super::content::{ensure_sorted_xattrs, xattrs_from_stored, Xattr, S_IFDIR, S_IFMT};
use super::names::validate_file_name;
use super::variant::{ensure_normal_form, serialize};
use super::{Checksum, FormatError, MAX_METADATA_SIZE};

/// A file entry of a dirtree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirTreeFile {
    /// The file's name in the directory.
    pub name: String,
    /// The content object.
    pub checksum: Checksum,
}

/// A subdirectory entry of a dirtree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirTreeDir {
    /// The subdirectory's name.
    pub name: String,
    /// The subdirectory's dirtree object.
    pub tree: Checksum,
    /// The subdirectory's dirmeta object.
    pub meta: Checksum,
}

/// A directory listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirTree {
    /// Files, sorted by name.
    pub files: Vec<DirTreeFile>,
    /// Subdirectories, sorted by name.
    pub dirs: Vec<DirTreeDir>,
}

impl DirTree {
    /// Parses and validates a dirtree: normal form, 32-byte checksums, names that are not
    /// empty, `.` or `..` and hold no `/` or NUL, each list strictly sorted, and no name both
    /// a file and a directory.
    pub fn parse(bytes: &[u8]) -> Result<Self, FormatError> {
        const WHAT: &str = "dirtree";
        FormatError::check_size(WHAT, bytes.len(), MAX_METADATA_SIZE)?;
        let aligned = copy_to_align(bytes);
        let (files, dirs) = gv!("(a(say)a(sayay))").cast(aligned.as_ref()).to_tuple();
        let raw_files: Vec<(&str, &[u8])> = files
            .iter()
            .map(|entry| {
                let (name, checksum) = entry.to_tuple();
                (name.to_str(), checksum)
            })
            .collect();
        let raw_dirs: Vec<(&str, &[u8], &[u8])> = dirs
            .iter()
            .map(|entry| {
                let (name, tree, meta) = entry.to_tuple();
                (name.to_str(), tree, meta)
            })
            .collect();
        let again = serialize(WHAT, gv!("(a(say)a(sayay))"), &(&raw_files, &raw_dirs))?;
        ensure_normal_form(WHAT, "(a(say)a(sayay))", bytes, &again)?;

        let checksum = |bytes: &[u8], name: &str| {
            Checksum::from_slice(bytes).map_err(|_| {
                FormatError::invalid(
                    WHAT,
                    format!("entry {name:?} has a checksum of {} bytes", bytes.len()),
                )
            })
        };
        let mut tree = DirTree::default();
        for (name, content) in raw_files {
            tree.files.push(DirTreeFile {
                name: name.to_owned(),
                checksum: checksum(content, name)?,
            });
        }
        for (name, subtree, meta) in raw_dirs {
            tree.dirs.push(DirTreeDir {
                name: name.to_owned(),
                tree: checksum(subtree, name)?,
                meta: checksum(meta, name)?,
            });
        }
        tree.validate()?;
        Ok(tree)
    }

    /// Checks the names: valid file names, strictly sorted, no name used twice.
    pub fn validate(&self) -> Result<(), FormatError> {
        const WHAT: &str = "dirtree";
        for name in self.names() {
            validate_file_name(name).map_err(|error| FormatError::name(WHAT, error))?;
        }
        let sorted = |names: &mut dyn Iterator<Item = &str>| {
            let names: Vec<&str> = names.collect();
            names
                .windows(2)
                .all(|pair| pair[0].as_bytes() < pair[1].as_bytes())
        };
        if !sorted(&mut self.files.iter().map(|f| f.name.as_str())) {
            return Err(FormatError::invalid(
                WHAT,
                "file entries are not strictly sorted by name",
            ));
        }
        if !sorted(&mut self.dirs.iter().map(|d| d.name.as_str())) {
            return Err(FormatError::invalid(
                WHAT,
                "directory entries are not strictly sorted by name",
            ));
        }
        for dir in &self.dirs {
            if self
                .files
                .binary_search_by(|file| file.name.as_bytes().cmp(dir.name.as_bytes()))
                .is_ok()
            {
                return Err(FormatError::invalid(
                    WHAT,
                    format!("{:?} is both a file and a directory", dir.name),
                ));
            }
        }
        Ok(())
    }

    /// Every name in the listing, files first.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.files
            .iter()
            .map(|f| f.name.as_str())
            .chain(self.dirs.iter().map(|d| d.name.as_str()))
    }

    /// Serialises the listing as given, without validating it (tests build hostile trees
    /// with it); fails only for names holding NUL, which GVariant cannot represent.
    pub fn to_bytes(&self) -> Result<Vec<u8>, FormatError> {
        let files: Vec<(&str, &[u8])> = self
            .files
            .iter()
            .map(|f| (f.name.as_str(), f.checksum.as_bytes().as_slice()))
            .collect();
        let dirs: Vec<(&str, &[u8], &[u8])> = self
            .dirs
            .iter()
            .map(|d| {
                (
                    d.name.as_str(),
                    d.tree.as_bytes().as_slice(),
                    d.meta.as_bytes().as_slice(),
                )
            })
            .collect();
        serialize("dirtree", gv!("(a(say)a(sayay))"), &(&files, &dirs))
    }
}

/// A directory's ownership, mode and xattrs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirMeta {
    /// Owner user ID.
    pub uid: u32,
    /// Owner group ID.
    pub gid: u32,
    /// The full `st_mode`, including `S_IFDIR`.
    pub mode: u32,
    /// Extended attributes.
    pub xattrs: Vec<Xattr>,
}

impl DirMeta {
    /// Parses and validates a dirmeta: normal form, a directory mode with only permission
    /// bits, xattrs with names, sorted and distinct (`ostree_validate_structureof_dirmeta`).
    pub fn parse(bytes: &[u8]) -> Result<Self, FormatError> {
        const WHAT: &str = "dirmeta";
        FormatError::check_size(WHAT, bytes.len(), MAX_METADATA_SIZE)?;
        let aligned = copy_to_align(bytes);
        let (uid, gid, mode, xattrs) = gv!("(uuua(ayay))").cast(aligned.as_ref()).to_tuple();
        let stored: Vec<(&[u8], &[u8])> = xattrs.iter().map(|x| x.to_tuple()).collect();
        let again = serialize(WHAT, gv!("(uuua(ayay))"), &(*uid, *gid, *mode, &stored))?;
        ensure_normal_form(WHAT, "(uuua(ayay))", bytes, &again)?;
        let meta = Self {
            uid: u32::from_be(*uid),
            gid: u32::from_be(*gid),
            mode: u32::from_be(*mode),
            xattrs: xattrs_from_stored(WHAT, stored.into_iter())?,
        };
        meta.validate()?;
        Ok(meta)
    }

    /// Checks that the dirmeta is a directory with valid permission bits and xattrs.
    pub fn validate(&self) -> Result<(), FormatError> {
        const WHAT: &str = "dirmeta";
        if self.mode & S_IFMT != S_IFDIR {
            return Err(FormatError::invalid(
                WHAT,
                format!("mode 0{:o} is not a directory", self.mode),
            ));
        }
        if self.mode & !(S_IFMT | 0o7777) != 0 {
            return Err(FormatError::invalid(
                WHAT,
                format!("mode 0{:o} has invalid bits", self.mode),
            ));
        }
        ensure_sorted_xattrs(WHAT, &self.xattrs)
    }

    /// Serialises as given (xattrs in their order), without validating.
    pub fn to_bytes(&self) -> Result<Vec<u8>, FormatError> {
        let names: Vec<Vec<u8>> = self
            .xattrs
            .iter()
            .map(|x| {
                let mut name = x.name.clone();
                name.push(0);
                name
            })
            .collect();
        let stored: Vec<(&[u8], &[u8])> = names
            .iter()
            .zip(&self.xattrs)
            .map(|(name, x)| (name.as_slice(), x.value.as_slice()))
            .collect();
        serialize(
            "dirmeta",
            gv!("(uuua(ayay))"),
            &(
                self.uid.to_be(),
                self.gid.to_be(),
                self.mode.to_be(),
                &stored,
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(byte: u8) -> Checksum {
        Checksum::from_array([byte; 32])
    }

    fn tree(file_names: &[&str], dir_names: &[&str]) -> DirTree {
        DirTree {
            files: file_names
                .iter()
                .map(|name| DirTreeFile {
                    name: (*name).to_owned(),
                    checksum: sum(1),
                })
                .collect(),
            dirs: dir_names
                .iter()
                .map(|name| DirTreeDir {
                    name: (*name).to_owned(),
                    tree: sum(2),
                    meta: sum(3),
                })
                .collect(),
        }
    }

    #[test]
    fn round_trips() {
        let original = tree(&["a", "b.txt"], &["etc", "usr"]);
        let bytes = original.to_bytes().expect("serialise");
        assert_eq!(DirTree::parse(&bytes).expect("parse"), original);
        assert_eq!(
            DirTree::parse(&DirTree::default().to_bytes().expect("empty")).expect("parse"),
            DirTree::default()
        );
    }

    #[test]
    fn refuses_hostile_names() {
        for bad in ["..", ".", "a/b", ""] {
            let bytes = tree(&[bad], &[]).to_bytes().expect("serialise");
            assert!(DirTree::parse(&bytes).is_err(), "file {bad:?}");
            let bytes = tree(&[], &[bad]).to_bytes().expect("serialise");
            assert!(DirTree::parse(&bytes).is_err(), "dir {bad:?}");
        }
        let unsorted = tree(&["b", "a"], &[]).to_bytes().expect("serialise");
        assert!(DirTree::parse(&unsorted).is_err());
        let repeated = tree(&["a", "a"], &[]).to_bytes().expect("serialise");
        assert!(DirTree::parse(&repeated).is_err());
        let both = tree(&["a"], &["a"]).to_bytes().expect("serialise");
        assert!(DirTree::parse(&both).is_err());
    }

    #[test]
    fn refuses_truncated_and_short_checksums() {
        let bytes = tree(&["a"], &["d"]).to_bytes().expect("serialise");
        for cut in 0..bytes.len() {
            assert!(DirTree::parse(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let short = serialize(
            "test",
            gv!("(a(say)a(sayay))"),
            &(
                &vec![("a", &[1u8; 31][..])],
                &Vec::<(&str, &[u8], &[u8])>::new(),
            ),
        )
        .expect("serialise");
        assert!(DirTree::parse(&short).is_err());
    }

    #[test]
    fn dirmeta_must_be_a_directory() {
        let meta = DirMeta {
            uid: 0,
            gid: 0,
            mode: S_IFDIR | 0o755,
            xattrs: vec![Xattr::new("user.a", "1")],
        };
        let bytes = meta.to_bytes().expect("serialise");
        assert_eq!(DirMeta::parse(&bytes).expect("parse"), meta);
        let file = DirMeta {
            mode: 0o100_644,
            ..meta.clone()
        };
        assert!(DirMeta::parse(&file.to_bytes().expect("serialise")).is_err());
        let unsorted = DirMeta {
            xattrs: vec![Xattr::new("user.b", "1"), Xattr::new("user.a", "1")],
            ..meta
        };
        assert!(DirMeta::parse(&unsorted.to_bytes().expect("serialise")).is_err());
    }
}
