//! Parts of a commit's tree: what a pull or a drive carries of a ref installed in part.
//!
//! Flatpak installs a locale extension with only the languages in use. It records them as
//! subpaths (`/de`, `/fr`) of the ref's `files` directory and pulls only `/metadata` and
//! `/files/<subpath>`, leaving the commit marked partial. [`Subdirs`] names those parts and
//! says, for each directory of the tree, whether it is inside one, on the way to one, or
//! outside them all.

use std::fmt;

/// Most parts one selection may name; Flatpak's languages are a handful.
pub const MAX_SUBDIRS: usize = 256;

/// Longest part path accepted.
const MAX_SUBDIR_LENGTH: usize = 1024;

/// Where a directory stands against a [`Subdirs`] selection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Inside a selected part: everything below it is carried.
    Whole,
    /// An ancestor of a selected part: its listing and metadata are carried, and of its
    /// entries only the directories leading to a part.
    Along,
    /// Outside every part: nothing of it is carried.
    Outside,
}

/// Absolute directory paths of a tree (`/metadata`, `/files/de`), sorted, without repeats.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Subdirs(Vec<String>);

/// A subpath that does not name a directory of a tree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid subpath {path:?}: {reason}")]
pub struct InvalidSubpath {
    /// The subpath as given.
    pub path: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl Subdirs {
    /// The parts Flatpak pulls of a ref installed with `subpaths` (`/de`): `/metadata` and
    /// `/files/<subpath>`. None when `subpaths` is empty: the whole ref.
    pub fn for_flatpak(subpaths: &[String]) -> Result<Option<Self>, InvalidSubpath> {
        if subpaths.is_empty() {
            return Ok(None);
        }
        if subpaths.len() > MAX_SUBDIRS {
            return Err(InvalidSubpath {
                path: format!("{} subpaths", subpaths.len()),
                reason: "too many",
            });
        }
        let mut paths = vec!["/metadata".to_owned()];
        for subpath in subpaths {
            let normal = normalise(subpath)?;
            if normal == "/" {
                // The whole of `files`: the ref's every part that matters.
                paths.push("/files".to_owned());
            } else {
                paths.push(format!("/files{normal}"));
            }
        }
        paths.sort();
        paths.dedup();
        Ok(Some(Self(paths)))
    }

    /// The Flatpak subpaths these parts came from (`/de`), for messages and deploy data.
    pub fn flatpak_subpaths(&self) -> Vec<String> {
        self.0
            .iter()
            .filter_map(|path| path.strip_prefix("/files"))
            .filter(|rest| rest.starts_with('/'))
            .map(str::to_owned)
            .collect()
    }

    /// The selected directories.
    pub fn paths(&self) -> &[String] {
        &self.0
    }

    /// Where the directory at `path` (absolute, `/` for the root) stands.
    pub fn reach(&self, path: &str) -> Reach {
        let mut along = false;
        for part in &self.0 {
            if is_within(path, part) {
                return Reach::Whole;
            }
            along |= is_within(part, path);
        }
        if along {
            Reach::Along
        } else {
            Reach::Outside
        }
    }
}

impl fmt::Display for Subdirs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.flatpak_subpaths().join(", "))
    }
}

/// The path of entry `name` of directory `dir` (`/` for the root): `/a/b` of `/a` and `b`.
pub fn child_path(dir: &str, name: &str) -> String {
    if dir.ends_with('/') || dir.is_empty() {
        format!("{}/{name}", dir.trim_end_matches('/'))
    } else {
        format!("{dir}/{name}")
    }
}

/// Whether `path` is `ancestor` or below it.
fn is_within(path: &str, ancestor: &str) -> bool {
    if ancestor == "/" {
        return true;
    }
    match path.strip_prefix(ancestor) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// `/de` for `de`, `/de/`, `//de`; refuses `..`, `.` and empty or oversized names.
fn normalise(subpath: &str) -> Result<String, InvalidSubpath> {
    let invalid = |reason| InvalidSubpath {
        path: subpath.to_owned(),
        reason,
    };
    if subpath.len() > MAX_SUBDIR_LENGTH {
        return Err(invalid("too long"));
    }
    let mut normal = String::with_capacity(subpath.len() + 1);
    for component in subpath.split('/').filter(|c| !c.is_empty()) {
        if component == "." || component == ".." {
            return Err(invalid("it may not contain . or .."));
        }
        if component.contains('\0') {
            return Err(invalid("it may not contain a NUL byte"));
        }
        normal.push('/');
        normal.push_str(component);
    }
    if normal.is_empty() {
        normal.push('/');
    }
    Ok(normal)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn langs(list: &[&str]) -> Subdirs {
        let owned: Vec<String> = list.iter().map(|s| (*s).to_owned()).collect();
        Subdirs::for_flatpak(&owned).unwrap().unwrap()
    }

    #[test]
    fn flatpak_subpaths_select_metadata_and_their_files() {
        let parts = langs(&["/fr", "de", "/de/"]);
        assert_eq!(parts.paths(), ["/files/de", "/files/fr", "/metadata"]);
        assert_eq!(parts.flatpak_subpaths(), ["/de", "/fr"]);
        assert_eq!(parts.to_string(), "/de, /fr");
        assert_eq!(Subdirs::for_flatpak(&[]).unwrap(), None);
    }

    #[test]
    fn directories_are_inside_along_or_outside() {
        let parts = langs(&["/de"]);
        assert_eq!(parts.reach("/"), Reach::Along);
        assert_eq!(parts.reach("/files"), Reach::Along);
        assert_eq!(parts.reach("/files/de"), Reach::Whole);
        assert_eq!(parts.reach("/files/de/share/x"), Reach::Whole);
        assert_eq!(parts.reach("/metadata"), Reach::Whole);
        assert_eq!(parts.reach("/files/dev"), Reach::Outside);
        assert_eq!(parts.reach("/files/fr"), Reach::Outside);
        assert_eq!(parts.reach("/export"), Reach::Outside);
        assert_eq!(langs(&["/"]).reach("/files/fr"), Reach::Whole);
        assert_eq!(child_path("/", "files"), "/files");
        assert_eq!(child_path("/files", "de"), "/files/de");
    }

    #[test]
    fn climbing_and_oversized_subpaths_are_refused() {
        for bad in ["/../etc", "/de/./x", &"a".repeat(2000)] {
            assert!(Subdirs::for_flatpak(&[bad.to_owned()]).is_err(), "{bad}");
        }
        let many: Vec<String> = (0..=MAX_SUBDIRS).map(|i| format!("/l{i}")).collect();
        assert!(Subdirs::for_flatpak(&many).is_err());
    }
}
