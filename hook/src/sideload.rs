//! Links in Flatpak's sideload directory (`/run/flatpak/sideload-repos`), so `flatpak` and
//! GNOME Software use the repositories of an inserted drive too. Every link is named
//! `ferry-<drive id>-<n>` so Ferry only ever touches its own.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SideloadError {
    #[error("cannot link {target} into {dir}: {source}")]
    Link {
        dir: PathBuf,
        target: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot remove {path}: {source}")]
    Remove {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn prefix(id: &str) -> String {
    format!("ferry-{id}-")
}

/// The names [`link`] gives to `count` repositories of drive `id`.
pub fn link_names(id: &str, count: usize) -> Vec<String> {
    (0..count)
        .map(|index| format!("{}{index}", prefix(id)))
        .collect()
}

/// Links `repos` into `dir` as `ferry-<id>-0`, `ferry-<id>-1`, …, replacing older links of
/// the same drive. Returns the link names.
pub fn link(dir: &Path, id: &str, repos: &[PathBuf]) -> Result<Vec<String>, SideloadError> {
    unlink_all(dir, id)?;
    let names = link_names(id, repos.len());
    for (name, target) in names.iter().zip(repos) {
        let link_error = |source: std::io::Error| SideloadError::Link {
            dir: dir.to_path_buf(),
            target: target.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(link_error)?;
        let tmp = dir.join(format!(".{name}.{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(target, &tmp).map_err(link_error)?;
        if let Err(source) = std::fs::rename(&tmp, dir.join(name)) {
            let _ = std::fs::remove_file(&tmp);
            return Err(link_error(source));
        }
    }
    Ok(names)
}

/// Removes every link of drive `id`. Only symlinks named `ferry-<id>-*` are touched.
pub fn unlink_all(dir: &Path, id: &str) -> Result<(), SideloadError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(SideloadError::Remove {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let prefix = prefix(id);
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(suffix) = name.strip_prefix(&prefix) else {
            continue;
        };
        // `ferry-<id>-<n>` only: another drive's id may start with this one's.
        if suffix.is_empty() || !suffix.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if !entry.file_type().is_ok_and(|t| t.is_symlink()) {
            continue;
        }
        let path = entry.path();
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(SideloadError::Remove { path, source }),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_and_unlinks_only_its_own() {
        let dir = tempfile::tempdir().expect("temp dir");
        let sideload = dir.path().join("sideload-repos");
        std::fs::create_dir(&sideload).expect("create a directory");
        std::os::unix::fs::symlink("/elsewhere", sideload.join("automount-x"))
            .expect("create a symlink");
        std::os::unix::fs::symlink("/other", sideload.join("ferry-ab-cd-0"))
            .expect("create a symlink");
        let names = link(
            &sideload,
            "ab",
            &[
                PathBuf::from("/m/.ostree/repo"),
                PathBuf::from("/m/ostree/repo"),
            ],
        )
        .expect("make the links");
        assert_eq!(names, ["ferry-ab-0", "ferry-ab-1"]);
        assert_eq!(
            std::fs::read_link(sideload.join("ferry-ab-1")).expect("read a link"),
            PathBuf::from("/m/ostree/repo")
        );
        // Re-linking with fewer repos drops the old extra link.
        link(&sideload, "ab", &[PathBuf::from("/m/.ostree/repo")]).expect("make the links");
        assert!(std::fs::symlink_metadata(sideload.join("ferry-ab-1")).is_err());
        unlink_all(&sideload, "ab").expect("remove the links");
        let mut left: Vec<String> = std::fs::read_dir(&sideload)
            .expect("list the directory")
            .map(|e| {
                e.expect("a directory entry")
                    .file_name()
                    .into_string()
                    .expect("a UTF-8 name")
            })
            .collect();
        left.sort();
        assert_eq!(left, ["automount-x", "ferry-ab-cd-0"]);
    }
}
