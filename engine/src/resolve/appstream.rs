//! Reading a remote's AppStream branch (`appstream2/<arch>`, or `appstream/<arch>`) from a
//! source: the catalog and the apps' icons.
//!
//! The branch's tree holds `appstream.xml` (`appstream.xml.gz` in the older branch) and
//! `icons/64x64/<app-id>.png`. Its commit is verified like any other before anything in it
//! is read, and every file read is checked against its checksum.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

use super::tree::{fetch_file, lookup_file};
use crate::appstream::{Catalog, MAX_ICON_BYTES, MAX_XML_BYTES, MAX_XML_GZ_BYTES};
use crate::object::Checksum;
use crate::source::Source;

/// Reads the AppStream document of the tree rooted at `root` on `source`.
pub(crate) fn read_catalog(source: &dyn Source, root: &Checksum) -> Result<Catalog, String> {
    if let Some(file) = lookup_file(source, root, "appstream.xml")? {
        let xml = fetch_file(source, &file, MAX_XML_BYTES)?;
        return Catalog::parse(&xml);
    }
    if let Some(file) = lookup_file(source, root, "appstream.xml.gz")? {
        let compressed = fetch_file(source, &file, MAX_XML_GZ_BYTES)?;
        let mut xml = Vec::new();
        GzDecoder::new(compressed.as_slice())
            .take(MAX_XML_BYTES + 1)
            .read_to_end(&mut xml)
            .map_err(|error| format!("appstream.xml.gz cannot be decompressed: {error}"))?;
        if xml.len() as u64 > MAX_XML_BYTES {
            return Err(format!(
                "appstream.xml.gz holds more than the {MAX_XML_BYTES} bytes read"
            ));
        }
        return Catalog::parse(&xml);
    }
    Err("the AppStream branch has neither appstream.xml nor appstream.xml.gz".to_owned())
}

/// Copies `icons/64x64/<app_id>.png` of the tree rooted at `root` into `cache_dir`, named by
/// its checksum, and returns the copy's path; None when the tree has no such icon.
pub(crate) fn cache_icon(
    source: &dyn Source,
    root: &Checksum,
    app_id: &str,
    cache_dir: &Path,
) -> Result<Option<PathBuf>, String> {
    if app_id.contains('/') || app_id.starts_with('.') {
        return Ok(None);
    }
    let Some(file) = lookup_file(source, root, &format!("icons/64x64/{app_id}.png"))? else {
        return Ok(None);
    };
    let path = cache_dir.join(format!("{file}.png"));
    let bytes = fetch_file(source, &file, MAX_ICON_BYTES)?;
    write_atomically(cache_dir, &path, &bytes)
        .map_err(|error| format!("cannot cache the icon in {}: {error}", path.display()))?;
    Ok(Some(path))
}

fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    file.write_all(bytes)?;
    drop(file);
    std::fs::rename(&tmp, path)
}
