//! Reading a commit's tree from a source, checking every object read against its name:
//! metadata objects hash to their checksum, content objects through their header and bytes.

use std::io::Read;

use crate::object::{metadata_checksum, Checksum, ContentHasher, DirTree, FileHeader, ObjectKind};
use crate::source::{source_name, Interrupt, Source};

/// Path components deeper than this are not followed.
const MAX_PATH_DEPTH: usize = 16;

/// A metadata object from `source`, refused unless its bytes hash to `checksum`.
pub(crate) fn fetch_metadata(
    source: &dyn Source,
    kind: ObjectKind,
    checksum: &Checksum,
) -> Result<Vec<u8>, String> {
    let bytes = source
        .fetch_metadata(kind, checksum, &Interrupt::never())
        .map_err(|error| crate::causes::text(&error))?;
    let actual = metadata_checksum(&bytes);
    if actual != *checksum {
        return Err(format!(
            "{checksum}.{kind} on {} is damaged: its bytes hash to {}",
            source_name(source.info()),
            actual.short()
        ));
    }
    Ok(bytes)
}

/// A dirtree from `source`, checked and parsed.
pub(crate) fn fetch_dirtree(source: &dyn Source, checksum: &Checksum) -> Result<DirTree, String> {
    let bytes = fetch_metadata(source, ObjectKind::DirTree, checksum)?;
    DirTree::parse(&bytes).map_err(|error| {
        format!(
            "{checksum}.dirtree on {}: {}",
            source_name(source.info()),
            crate::causes::Causes(&error)
        )
    })
}

/// A regular file's bytes from `source`, at most `max_size` of them, refused unless header
/// and bytes hash to `checksum`.
pub(crate) fn fetch_file(
    source: &dyn Source,
    checksum: &Checksum,
    max_size: u64,
) -> Result<Vec<u8>, String> {
    let name = || source_name(source.info());
    let fetched = source
        .fetch_content(checksum, &Interrupt::never())
        .map_err(|error| crate::causes::text(&error))?;
    let header: FileHeader = fetched.header;
    if !header.is_regular() {
        return Err(format!(
            "{checksum}.file on {} is not a regular file",
            name()
        ));
    }
    if header.size > max_size {
        return Err(format!(
            "{checksum}.file on {} is {} bytes, more than the {max_size} read for it",
            name(),
            header.size
        ));
    }
    let mut hasher = ContentHasher::new(&header)
        .map_err(|error| format!("{checksum}.file on {}: {error}", name()))?;
    let mut bytes = Vec::new();
    fetched
        .body
        .take(max_size + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| format!("{checksum}.file on {}: {error}", name()))?;
    hasher.update(&bytes);
    let actual = hasher.finish();
    if actual != *checksum || bytes.len() as u64 != header.size {
        return Err(format!(
            "{checksum}.file on {} is damaged: it hashes to {}",
            name(),
            actual.short()
        ));
    }
    Ok(bytes)
}

/// The content checksum of the file at `path` (`/`-separated, relative) in the tree rooted at
/// `root`, or None when there is no such file.
pub(crate) fn lookup_file(
    source: &dyn Source,
    root: &Checksum,
    path: &str,
) -> Result<Option<Checksum>, String> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let Some((file_name, dirs)) = parts.split_last() else {
        return Ok(None);
    };
    if parts.len() > MAX_PATH_DEPTH {
        return Ok(None);
    }
    let mut tree = fetch_dirtree(source, root)?;
    for dir in dirs {
        let Some(entry) = tree.dirs.iter().find(|d| d.name == *dir) else {
            return Ok(None);
        };
        let next = entry.tree;
        tree = fetch_dirtree(source, &next)?;
    }
    Ok(tree
        .files
        .iter()
        .find(|f| f.name == *file_name)
        .map(|f| f.checksum))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::drive::test_drives;

    #[test]
    fn a_damaged_file_on_a_drive_says_why() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (source, checksum) = test_drives::with_a_damaged_object(dir.path());
        let why = fetch_file(&source, &checksum, 1024).expect_err("a damaged object was read");
        assert!(why.contains("bytes, more than"), "{why}");
    }
}
