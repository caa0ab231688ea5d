//! Refs: `refs/heads/<ref>` (the repository's own, in its `core.collection-id`),
//! `refs/remotes/<remote>/<ref>` and `refs/mirrors/<collection-id>/<ref>`. A ref file holds
//! 64 lowercase hex digits and an optional newline.

use std::fmt;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{AtFlags, Mode, OFlags};

use super::{open_beneath, open_beneath_mode, read_bounded, Repo, RepoError};
use crate::object::names::is_ref_fragment;
use crate::object::{validate_collection_id, validate_ref_name, validate_remote_name, Checksum};

/// Ref files are 65 bytes; anything much larger is not a ref.
const MAX_REF_FILE_SIZE: u64 = 128;
/// Deepest directory nesting under a refs directory that is listed.
const MAX_REF_DEPTH: usize = 32;
/// Most refs listed from one repository.
const MAX_REFS: usize = 100_000;

/// Where a ref lives in a repository.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RefLocation {
    /// `refs/heads/<name>`: the repository's own ref.
    Head {
        /// The ref's name.
        name: String,
    },
    /// `refs/remotes/<remote>/<name>`: a ref pulled from a configured remote.
    Remote {
        /// The remote.
        remote: String,
        /// The ref's name.
        name: String,
    },
    /// `refs/mirrors/<collection_id>/<name>`: a ref mirrored from another collection.
    Mirror {
        /// The collection.
        collection_id: String,
        /// The ref's name.
        name: String,
    },
}

impl RefLocation {
    /// `refs/heads/<name>`.
    pub fn head(name: &str) -> Self {
        Self::Head {
            name: name.to_owned(),
        }
    }

    /// `refs/remotes/<remote>/<name>`.
    pub fn remote(remote: &str, name: &str) -> Self {
        Self::Remote {
            remote: remote.to_owned(),
            name: name.to_owned(),
        }
    }

    /// `refs/mirrors/<collection_id>/<name>`.
    pub fn mirror(collection_id: &str, name: &str) -> Self {
        Self::Mirror {
            collection_id: collection_id.to_owned(),
            name: name.to_owned(),
        }
    }

    /// The ref name, without remote or collection.
    pub fn name(&self) -> &str {
        match self {
            Self::Head { name } | Self::Remote { name, .. } | Self::Mirror { name, .. } => name,
        }
    }

    /// Checks every part of the location against libostree's name rules.
    pub fn validate(&self) -> Result<(), RepoError> {
        match self {
            Self::Head { name } => validate_ref_name(name)?,
            Self::Remote { remote, name } => {
                validate_remote_name(remote)?;
                validate_ref_name(name)?;
            }
            Self::Mirror {
                collection_id,
                name,
            } => {
                validate_collection_id(collection_id)?;
                validate_ref_name(name)?;
            }
        }
        Ok(())
    }

    /// The ref file's path relative to the repository (valid names only).
    pub fn relative_path(&self) -> String {
        match self {
            Self::Head { name } => format!("refs/heads/{name}"),
            Self::Remote { remote, name } => format!("refs/remotes/{remote}/{name}"),
            Self::Mirror {
                collection_id,
                name,
            } => format!("refs/mirrors/{collection_id}/{name}"),
        }
    }
}

impl fmt::Display for RefLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Head { name } => f.write_str(name),
            Self::Remote { remote, name } => write!(f, "{remote}:{name}"),
            Self::Mirror {
                collection_id,
                name,
            } => write!(f, "({collection_id}, {name})"),
        }
    }
}

/// A ref named by collection, as collection-aware pulls and `scan` name them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CollectionRef {
    /// None for refs of a repository (or remote) without a collection ID.
    pub collection_id: Option<String>,
    /// The ref's name.
    pub name: String,
}

impl fmt::Display for CollectionRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.collection_id {
            Some(id) => write!(f, "({id}, {})", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// One ref file found while listing, with what it holds or why it cannot be read.
#[derive(Debug)]
pub struct RefEntry {
    /// Where the ref is.
    pub location: RefLocation,
    /// The commit it points at, or why its file could not be read.
    pub commit: Result<Checksum, RepoError>,
}

impl Repo {
    /// Reads the commit a ref points to; None when the ref does not exist.
    pub fn resolve_ref(&self, location: &RefLocation) -> Result<Option<Checksum>, RepoError> {
        location.validate()?;
        self.read_ref_file(&location.relative_path())
    }

    fn read_ref_file(&self, relative: &str) -> Result<Option<Checksum>, RepoError> {
        let path = self.path.join(relative);
        let fd = match open_beneath(&self.dir, relative, OFlags::RDONLY) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => return Ok(None),
            Err(rustix::io::Errno::ISDIR) => {
                return Err(RepoError::BadRef {
                    path,
                    reason: "it is a directory".into(),
                })
            }
            Err(rustix::io::Errno::XDEV) => {
                return Err(RepoError::BadRef {
                    path,
                    reason: "it is a symlink leading out of the repository".into(),
                })
            }
            Err(error) => return Err(RepoError::io("read", path, error)),
        };
        let stat = rustix::fs::fstat(&fd).map_err(|e| RepoError::io("read", &path, e))?;
        if stat.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(RepoError::BadRef {
                path,
                reason: "it is not a regular file".into(),
            });
        }
        let bytes = read_bounded(fd, MAX_REF_FILE_SIZE).map_err(|error| RepoError::BadRef {
            path: path.clone(),
            reason: error.into(),
        })?;
        parse_ref_contents(&bytes)
            .map(Some)
            .map_err(|reason| RepoError::BadRef {
                path,
                reason: reason.into(),
            })
    }

    /// Every ref file under `refs/heads`, `refs/remotes/*` and `refs/mirrors/*`, each with
    /// its commit or the reason it cannot be read. Entries whose names are not valid ref
    /// fragments are skipped, as libostree skips them. Fails only when a refs directory
    /// cannot be read.
    pub fn ref_entries(&self) -> Result<Vec<RefEntry>, RepoError> {
        let mut found: Vec<RefLocation> = Vec::new();
        self.walk_refs(
            "refs/heads",
            &mut |name| RefLocation::head(name),
            &mut found,
        )?;
        for remote in self.subdirectories("refs/remotes")? {
            if validate_remote_name(&remote).is_err() {
                continue;
            }
            let dir = format!("refs/remotes/{remote}");
            self.walk_refs(
                &dir,
                &mut |name| RefLocation::remote(&remote, name),
                &mut found,
            )?;
        }
        for collection_id in self.subdirectories("refs/mirrors")? {
            if validate_collection_id(&collection_id).is_err() {
                continue;
            }
            let dir = format!("refs/mirrors/{collection_id}");
            self.walk_refs(
                &dir,
                &mut |name| RefLocation::mirror(&collection_id, name),
                &mut found,
            )?;
        }
        found.sort();
        Ok(found
            .into_iter()
            .map(|location| {
                let commit = self
                    .read_ref_file(&location.relative_path())
                    .and_then(|commit| {
                        commit.ok_or_else(|| RepoError::BadRef {
                            path: self.path.join(location.relative_path()),
                            reason: "it disappeared while being read".into(),
                        })
                    });
                RefEntry { location, commit }
            })
            .collect())
    }

    /// Every ref with its commit; fails on the first ref file that cannot be read.
    pub fn list_refs(&self) -> Result<Vec<(RefLocation, Checksum)>, RepoError> {
        self.ref_entries()?
            .into_iter()
            .map(|entry| entry.commit.map(|commit| (entry.location, commit)))
            .collect()
    }

    /// The collection a ref belongs to: the repository's collection ID for heads, the
    /// remote's configured `collection-id` for remote refs, the directory for mirrors.
    pub fn collection_of(&self, location: &RefLocation) -> Option<String> {
        match location {
            RefLocation::Head { .. } => self.config.collection_id.clone(),
            RefLocation::Remote { remote, .. } => self
                .remote(remote)
                .and_then(|r| r.collection_id().map(str::to_owned))
                .filter(|id| validate_collection_id(id).is_ok()),
            RefLocation::Mirror { collection_id, .. } => Some(collection_id.clone()),
        }
    }

    /// Refs by collection, as libostree's `list_collection_refs` lists them: heads (in the
    /// repository's collection, or None without one), mirrors, and with `include_remotes`
    /// remote refs. A collection ref offered by several locations appears once: heads first,
    /// then mirrors, then remotes. Fails on the first unreadable ref file.
    pub fn collection_refs(
        &self,
        include_remotes: bool,
    ) -> Result<Vec<(CollectionRef, Checksum)>, RepoError> {
        let mut refs: Vec<(CollectionRef, Checksum)> = Vec::new();
        for (location, commit) in self.list_refs()? {
            if matches!(location, RefLocation::Remote { .. }) && !include_remotes {
                continue;
            }
            let key = CollectionRef {
                collection_id: self.collection_of(&location),
                name: location.name().to_owned(),
            };
            refs.push((key, commit));
        }
        dedup_collection_refs(&mut refs);
        Ok(refs)
    }

    /// The commit of a collection ref: `refs/heads` when the collection is the repository's
    /// own (or both are None), else `refs/mirrors/<id>`, else (with `include_remotes`) a remote
    /// whose `collection-id` matches.
    pub fn resolve_collection_ref(
        &self,
        collection_ref: &CollectionRef,
        include_remotes: bool,
    ) -> Result<Option<Checksum>, RepoError> {
        validate_ref_name(&collection_ref.name)?;
        let name = &collection_ref.name;
        if collection_ref.collection_id.as_deref() == self.collection_id() {
            if let Some(commit) = self.resolve_ref(&RefLocation::head(name))? {
                return Ok(Some(commit));
            }
        }
        if let Some(id) = &collection_ref.collection_id {
            validate_collection_id(id)?;
            if let Some(commit) = self.resolve_ref(&RefLocation::mirror(id, name))? {
                return Ok(Some(commit));
            }
        }
        if include_remotes {
            for remote in self.config.remotes() {
                if remote.collection_id() == collection_ref.collection_id.as_deref() {
                    if let Some(commit) =
                        self.resolve_ref(&RefLocation::remote(&remote.name, name))?
                    {
                        return Ok(Some(commit));
                    }
                }
            }
        }
        Ok(None)
    }

    /// Points a ref at `commit`, atomically: the file is written beside the ref, synced when
    /// `[core] fsync` is on, then renamed over it. Parent directories are created.
    pub fn write_ref(&self, location: &RefLocation, commit: &Checksum) -> Result<(), RepoError> {
        location.validate()?;
        if Checksum::from_hex(location.name()).is_ok() {
            return Err(RepoError::BadRef {
                path: self.path.join(location.relative_path()),
                reason: "a ref name may not look like a checksum".into(),
            });
        }
        let relative = location.relative_path();
        let (parent, file_name) = relative.rsplit_once('/').unwrap_or(("refs", &relative));
        self.ensure_dir(parent)?;
        let parent_fd = open_beneath(&self.dir, parent, OFlags::RDONLY | OFlags::DIRECTORY)
            .map_err(|e| RepoError::io("open", self.path.join(parent), e))?;
        let tmp_name = format!(".tmp-{}-{}", file_name, rand::random::<u64>());
        let path = self.path.join(&relative);
        let write = || -> Result<(), RepoError> {
            let fd: OwnedFd = open_beneath_mode(
                &parent_fd,
                &tmp_name,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL,
                Mode::from_raw_mode(0o644),
            )
            .map_err(|e| RepoError::io("write", &path, e))?;
            let mut file = std::fs::File::from(fd);
            file.write_all(format!("{commit}\n").as_bytes())
                .map_err(|e| RepoError::io("write", &path, e))?;
            if self.config.fsync {
                file.sync_data()
                    .map_err(|e| RepoError::io("sync", &path, e))?;
            }
            match rustix::fs::renameat(&parent_fd, tmp_name.as_str(), &parent_fd, file_name) {
                Ok(()) => Ok(()),
                Err(rustix::io::Errno::ISDIR | rustix::io::Errno::NOTEMPTY) => {
                    Err(RepoError::BadRef {
                        path: path.clone(),
                        reason: "a directory of other refs is in the way".into(),
                    })
                }
                Err(error) => Err(RepoError::io("write", &path, error)),
            }
        };
        let result = write();
        if result.is_err() {
            let _ = rustix::fs::unlinkat(&parent_fd, tmp_name.as_str(), AtFlags::empty());
        }
        result
    }

    /// Removes a ref; no error when it does not exist.
    pub fn delete_ref(&self, location: &RefLocation) -> Result<(), RepoError> {
        location.validate()?;
        let relative = location.relative_path();
        let (parent, file_name) = relative.rsplit_once('/').unwrap_or(("refs", &relative));
        // Removed from its parent opened beneath the repository, never through a symlink.
        let parent_fd = match open_beneath(&self.dir, parent, OFlags::RDONLY | OFlags::DIRECTORY) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => return Ok(()),
            Err(error) => return Err(RepoError::io("open", self.path.join(parent), error)),
        };
        match rustix::fs::unlinkat(&parent_fd, file_name, AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(error) => Err(RepoError::io("remove", self.path.join(relative), error)),
        }
    }

    /// Names of the subdirectories of `relative` (empty when it does not exist).
    fn subdirectories(&self, relative: &str) -> Result<Vec<String>, RepoError> {
        let Some(entries) = self.read_dir(relative)? else {
            return Ok(Vec::new());
        };
        Ok(entries
            .into_iter()
            .filter(|(_, file_type)| *file_type == rustix::fs::FileType::Directory)
            .map(|(name, _)| name)
            .collect())
    }

    /// The UTF-8 entries of a directory, with their types; None when it does not exist.
    fn read_dir(
        &self,
        relative: &str,
    ) -> Result<Option<Vec<(String, rustix::fs::FileType)>>, RepoError> {
        let path = self.path.join(relative);
        let fd = match open_beneath(&self.dir, relative, OFlags::RDONLY | OFlags::DIRECTORY) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => return Ok(None),
            Err(error) => return Err(RepoError::io("list", path, error)),
        };
        let mut dir =
            rustix::fs::Dir::read_from(&fd).map_err(|e| RepoError::io("list", &path, e))?;
        let mut entries = Vec::new();
        while let Some(entry) = dir.read() {
            let entry = entry.map_err(|e| RepoError::io("list", &path, e))?;
            let Ok(name) = entry.file_name().to_str() else {
                continue;
            };
            if name == "." || name == ".." {
                continue;
            }
            let mut file_type = entry.file_type();
            if file_type == rustix::fs::FileType::Unknown {
                file_type = match rustix::fs::statat(fd.as_fd(), name, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(stat) => rustix::fs::FileType::from_raw_mode(stat.st_mode),
                    Err(_) => continue,
                };
            }
            entries.push((name.to_owned(), file_type));
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Some(entries))
    }

    /// Collects ref files (regular files and symlinks, as libostree counts aliases) under
    /// `base`, recursively.
    fn walk_refs(
        &self,
        base: &str,
        make: &mut dyn FnMut(&str) -> RefLocation,
        found: &mut Vec<RefLocation>,
    ) -> Result<(), RepoError> {
        let mut pending: Vec<(String, usize)> = vec![(String::new(), 0)];
        while let Some((prefix, depth)) = pending.pop() {
            let dir = if prefix.is_empty() {
                base.to_owned()
            } else {
                format!("{base}/{prefix}")
            };
            let Some(entries) = self.read_dir(&dir)? else {
                continue;
            };
            for (name, file_type) in entries {
                if !is_ref_fragment(&name) {
                    continue;
                }
                let ref_name = if prefix.is_empty() {
                    name
                } else {
                    format!("{prefix}/{name}")
                };
                match file_type {
                    rustix::fs::FileType::Directory if depth < MAX_REF_DEPTH => {
                        pending.push((ref_name, depth + 1));
                    }
                    rustix::fs::FileType::RegularFile | rustix::fs::FileType::Symlink => {
                        if found.len() >= MAX_REFS {
                            return Err(RepoError::Unsupported {
                                path: self.path.clone(),
                                reason: format!("repository with more than {MAX_REFS} refs"),
                            });
                        }
                        found.push(make(&ref_name));
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

/// Keeps the first occurrence of each collection ref.
fn dedup_collection_refs(refs: &mut Vec<(CollectionRef, Checksum)>) {
    let mut seen = std::collections::HashSet::new();
    refs.retain(|(key, _)| seen.insert(key.clone()));
}

/// A ref file: exactly 64 lowercase hex digits, optionally followed by one newline.
fn parse_ref_contents(bytes: &[u8]) -> Result<Checksum, String> {
    let text = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let invalid = || {
        format!(
            "expected 64 lowercase hex digits and a newline, found {:?}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(80)])
        )
    };
    let text = std::str::from_utf8(text).map_err(|_| invalid())?;
    Checksum::from_hex(text).map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ref_never_makes_directories_through_a_symlink_out_of_the_repository() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("repo");
        let repo = Repo::init(&path, crate::repo::RepoMode::Archive, None).expect("init");
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).expect("create a directory");
        std::fs::remove_dir(path.join("refs/remotes")).expect("remove refs/remotes");
        std::os::unix::fs::symlink(&outside, path.join("refs/remotes")).expect("symlink");
        let commit = Checksum::from_hex(&"ab".repeat(32)).expect("checksum");
        let written = repo.write_ref(&RefLocation::remote("origin", "os/x86_64/stable"), &commit);
        assert!(written.is_err(), "a ref was written through the symlink");
        let made: Vec<_> = std::fs::read_dir(&outside)
            .expect("list")
            .filter_map(Result::ok)
            .map(|entry| entry.file_name())
            .collect();
        assert!(made.is_empty(), "made {made:?} outside the repository");
    }

    #[test]
    fn ref_contents_are_strict() {
        let hex = "ab".repeat(32);
        assert!(parse_ref_contents(hex.as_bytes()).is_ok());
        assert!(parse_ref_contents(format!("{hex}\n").as_bytes()).is_ok());
        for bad in [
            format!("{hex}\n\n"),
            hex.to_uppercase(),
            format!(" {hex}"),
            "not a ref".to_owned(),
            String::new(),
        ] {
            assert!(parse_ref_contents(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn locations_have_paths_and_names() {
        let mirror = RefLocation::mirror("org.example.Os", "os/stable");
        assert_eq!(
            mirror.relative_path(),
            "refs/mirrors/org.example.Os/os/stable"
        );
        assert_eq!(mirror.to_string(), "(org.example.Os, os/stable)");
        assert!(mirror.validate().is_ok());
        assert!(RefLocation::head("../x").validate().is_err());
        assert!(RefLocation::remote("a/b", "x").validate().is_err());
        assert!(RefLocation::mirror("nodots", "x").validate().is_err());
        assert_eq!(RefLocation::remote("origin", "x").to_string(), "origin:x");
    }

    #[test]
    fn symlinks_in_the_repository_lead_no_write_or_removal_outside() {
        use crate::repo::{Repo, RepoMode};
        let dir = tempfile::tempdir().expect("temp dir");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&outside).expect("create a directory");
        let repo = Repo::init(&dir.path().join("repo"), RepoMode::Archive, None).expect("init");
        let commit = Checksum::from_hex(&"ab".repeat(32)).expect("checksum");
        std::fs::create_dir_all(repo.path().join("refs/remotes")).expect("create a directory");
        std::os::unix::fs::symlink(&outside, repo.path().join("refs/remotes/origin"))
            .expect("create a symlink");
        std::fs::remove_dir_all(repo.path().join("state")).expect("remove state/");
        std::os::unix::fs::symlink(&outside, repo.path().join("state")).expect("symlink");
        let kept = ["x", &format!("{commit}.commitpartial")];
        for name in kept {
            std::fs::write(outside.join(name), "kept").expect("write");
        }

        assert!(repo
            .write_ref(&RefLocation::remote("origin", "app/x"), &commit)
            .is_err());
        assert!(repo
            .delete_ref(&RefLocation::remote("origin", "x"))
            .is_err());
        assert!(repo.clear_partial(&commit).is_err());
        // Nothing was created or removed through the symlinks.
        assert!(!outside.join("app").exists());
        for name in kept {
            assert!(outside.join(name).is_file(), "{name} was removed");
        }

        // Not even through one that stays inside the repository (a drive's, for root).
        std::fs::remove_file(repo.path().join("state")).expect("remove the symlink");
        std::os::unix::fs::symlink("tmp", repo.path().join("state")).expect("symlink");
        let marker = repo.path().join(format!("tmp/{commit}.commitpartial"));
        assert!(repo.mark_partial(&commit).is_err());
        assert!(!marker.exists());
        std::fs::write(&marker, "kept").expect("write");
        assert!(repo.clear_partial(&commit).is_err());
        assert!(marker.is_file());
    }
}
