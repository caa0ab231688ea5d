//! Byte-for-byte comparison of two directory trees (typically two `ostree checkout`s): entry
//! set, file types, permission bits, symlink targets, contents and optionally xattrs and
//! ownership.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufReader, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{FixtureError, IoContext, Result};

/// What to compare beyond names, types, modes, symlink targets and contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompareOptions {
    pub xattrs: bool,
    pub ownership: bool,
    /// Xattrs left out of the comparison (for example `user.ostreemeta`, which bare-user
    /// checkouts with `-U` expose through hard links to the objects).
    pub ignored_xattrs: Vec<String>,
    /// Compare permission bits of directories too (not only files).
    pub directory_modes: bool,
}

impl CompareOptions {
    /// Names, types, modes, symlink targets and contents.
    pub fn content_and_modes() -> CompareOptions {
        CompareOptions {
            xattrs: false,
            ownership: false,
            ignored_xattrs: vec!["user.ostreemeta".into(), "security.selinux".into()],
            directory_modes: true,
        }
    }

    /// Everything, xattrs and ownership included.
    pub fn everything() -> CompareOptions {
        CompareOptions {
            xattrs: true,
            ownership: true,
            ..Self::content_and_modes()
        }
    }

    pub fn with_xattrs(mut self) -> Self {
        self.xattrs = true;
        self
    }

    pub fn with_ownership(mut self) -> Self {
        self.ownership = true;
        self
    }
}

/// The differences found, one line each, relative to the two roots.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeDiff {
    pub differences: Vec<String>,
}

impl TreeDiff {
    pub fn is_empty(&self) -> bool {
        self.differences.is_empty()
    }
}

impl std::fmt::Display for TreeDiff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for line in self.differences.iter().take(50) {
            writeln!(f, "  {line}")?;
        }
        if self.differences.len() > 50 {
            writeln!(f, "  … and {} more", self.differences.len() - 50)?;
        }
        Ok(())
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Entry {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    link_target: Option<PathBuf>,
    size: u64,
    xattrs: BTreeMap<String, Vec<u8>>,
}

/// Lists every difference between the trees under `left` and `right`.
pub fn diff_trees(left: &Path, right: &Path, options: &CompareOptions) -> Result<TreeDiff> {
    let a = scan(left, options)?;
    let b = scan(right, options)?;
    let mut differences = Vec::new();
    for (path, entry) in &a {
        let Some(other) = b.get(path) else {
            differences.push(format!("{}: only in {}", path.display(), left.display()));
            continue;
        };
        let shown = path.display();
        if entry.kind != other.kind {
            differences.push(format!("{shown}: {} vs {}", entry.kind, other.kind));
            continue;
        }
        let compare_mode =
            entry.kind != "symlink" && (entry.kind != "dir" || options.directory_modes);
        if compare_mode && entry.mode != other.mode {
            differences.push(format!(
                "{shown}: mode {:o} vs {:o}",
                entry.mode, other.mode
            ));
        }
        if options.ownership && (entry.uid, entry.gid) != (other.uid, other.gid) {
            differences.push(format!(
                "{shown}: owner {}:{} vs {}:{}",
                entry.uid, entry.gid, other.uid, other.gid
            ));
        }
        if entry.link_target != other.link_target {
            differences.push(format!(
                "{shown}: symlink to {:?} vs {:?}",
                entry.link_target, other.link_target
            ));
        }
        if options.xattrs && entry.xattrs != other.xattrs {
            differences.push(format!(
                "{shown}: xattrs {} vs {}",
                show_xattrs(&entry.xattrs),
                show_xattrs(&other.xattrs)
            ));
        }
        if entry.kind == "file" {
            if entry.size != other.size {
                differences.push(format!("{shown}: size {} vs {}", entry.size, other.size));
            } else if !same_contents(&left.join(path), &right.join(path))? {
                differences.push(format!("{shown}: contents differ"));
            }
        }
    }
    for path in b.keys().filter(|p| !a.contains_key(*p)) {
        differences.push(format!("{}: only in {}", path.display(), right.display()));
    }
    Ok(TreeDiff { differences })
}

/// Fails with the list of differences unless the trees are equal.
pub fn assert_trees_equal(left: &Path, right: &Path, options: &CompareOptions) -> Result<()> {
    let diff = diff_trees(left, right, options)?;
    if diff.is_empty() {
        Ok(())
    } else {
        Err(FixtureError::Unexpected(format!(
            "trees {} and {} differ:\n{diff}",
            left.display(),
            right.display()
        )))
    }
}

fn scan(root: &Path, options: &CompareOptions) -> Result<BTreeMap<PathBuf, Entry>> {
    let mut entries = BTreeMap::new();
    for item in walkdir::WalkDir::new(root).follow_links(false).min_depth(1) {
        let item =
            item.map_err(|e| FixtureError::Unexpected(format!("walk {}: {e}", root.display())))?;
        let path = item.path();
        let meta = fs::symlink_metadata(path).at("stat", path)?;
        let file_type = meta.file_type();
        let kind = if file_type.is_symlink() {
            "symlink"
        } else if file_type.is_dir() {
            "dir"
        } else if file_type.is_file() {
            "file"
        } else {
            "special"
        };
        let link_target = if file_type.is_symlink() {
            Some(fs::read_link(path).at("read symlink", path)?)
        } else {
            None
        };
        let mut xattrs = BTreeMap::new();
        if options.xattrs && !file_type.is_symlink() {
            for name in xattr::list(path).at("list xattrs of", path)? {
                let name = name.to_string_lossy().into_owned();
                if options.ignored_xattrs.contains(&name) {
                    continue;
                }
                let value = xattr::get(path, &name)
                    .at("read xattr of", path)?
                    .unwrap_or_default();
                xattrs.insert(name, value);
            }
        }
        let rel = path
            .strip_prefix(root)
            .map_err(|e| FixtureError::Unexpected(format!("{}: {e}", path.display())))?
            .to_path_buf();
        entries.insert(
            rel,
            Entry {
                kind,
                mode: meta.permissions().mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
                link_target,
                size: if file_type.is_file() { meta.len() } else { 0 },
                xattrs,
            },
        );
    }
    Ok(entries)
}

fn same_contents(a: &Path, b: &Path) -> Result<bool> {
    let mut left = BufReader::new(File::open(a).at("open", a)?);
    let mut right = BufReader::new(File::open(b).at("open", b)?);
    let mut buf_a = vec![0u8; 64 * 1024];
    let mut buf_b = vec![0u8; 64 * 1024];
    loop {
        let n = read_full(&mut left, &mut buf_a).at("read", a)?;
        let m = read_full(&mut right, &mut buf_b).at("read", b)?;
        if n != m || buf_a[..n] != buf_b[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

fn show_xattrs(xattrs: &BTreeMap<String, Vec<u8>>) -> String {
    let parts: Vec<String> = xattrs
        .iter()
        .map(|(k, v)| format!("{k}={}", String::from_utf8_lossy(v)))
        .collect();
    format!("{{{}}}", parts.join(", "))
}
