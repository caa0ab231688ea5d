//! Finding OSTree repositories on a drive without leaving it.
//!
//! [`scan`] looks where libostree's mount finder looks (`ostree-repo-finder-mount.c`): every
//! entry of `.ostree/repos.d/` in lexical order (symlinks followed), then `.ostree/repo`,
//! `ostree/repo` and `var/lib/flatpak/repo`; or, when the path given is itself a repository,
//! just that. A repository that resolves outside the drive root or onto another filesystem is
//! refused and listed as a problem, as is anything unreadable; the same repository found twice
//! is listed once. Nothing on the drive is written.

use std::collections::{HashMap, HashSet};
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::object::{Checksum, Commit, ObjectId, ObjectKind};
use crate::repo::{CollectionRef, RefLocation, Repo, RepoError};
use crate::schema::{Problem, ProblemKind, RefReport, RepoReport, ScanReport};

/// Where repositories are looked for under a drive's root, after `.ostree/repos.d/*`.
const WELL_KNOWN: [&str; 3] = [".ostree/repo", "ostree/repo", "var/lib/flatpak/repo"];
/// Entries of `.ostree/repos.d` beyond this many are ignored.
const MAX_REPOS_D_ENTRIES: usize = 256;

/// The path given to [`scan`] cannot be scanned at all.
#[derive(Debug, thiserror::Error)]
#[error("cannot scan {path}")]
pub struct ScanError {
    /// The directory being scanned.
    pub path: PathBuf,
    /// The read error.
    #[source]
    pub source: std::io::Error,
}

/// Lists the repositories under `root` (a drive's mount point, or a repository) and the refs
/// each offers, with commit, timestamp and version read from the commit objects.
pub fn scan(root: &Path) -> Result<ScanReport, ScanError> {
    let fail = |source| ScanError {
        path: root.to_path_buf(),
        source,
    };
    let canonical_root = std::fs::canonicalize(root).map_err(fail)?;
    let root_metadata = std::fs::metadata(&canonical_root).map_err(fail)?;
    if !root_metadata.is_dir() {
        return Err(fail(std::io::Error::new(
            std::io::ErrorKind::NotADirectory,
            "not a directory",
        )));
    }
    let mut scanner = Scanner {
        root: canonical_root.clone(),
        root_dev: root_metadata.dev(),
        seen: HashSet::new(),
        report: ScanReport::default(),
    };
    if looks_like_repo(&canonical_root) {
        scanner.consider(&canonical_root, true);
        return Ok(scanner.report);
    }
    let repos_d = canonical_root.join(".ostree/repos.d");
    match std::fs::read_dir(&repos_d) {
        Ok(entries) => {
            let mut names: Vec<std::ffi::OsString> = entries
                .filter_map(Result::ok)
                .map(|entry| entry.file_name())
                .take(MAX_REPOS_D_ENTRIES)
                .collect();
            names.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
            for name in names {
                scanner.consider(&repos_d.join(name), true);
            }
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => scanner.problem(
            ProblemKind::Unreadable,
            &repos_d,
            None,
            format!("cannot list it: {error}"),
        ),
    }
    for relative in WELL_KNOWN {
        scanner.consider(&canonical_root.join(relative), false);
    }
    Ok(scanner.report)
}

fn looks_like_repo(path: &Path) -> bool {
    path.join("config").is_file() && path.join("objects").is_dir()
}

/// The kind of problem and why.
type Refusal = (ProblemKind, String);

/// A commit's timestamp and version, or the kind of problem and why.
/// Timestamp, version and whether the commit is marked partial.
type Described = Result<(u64, Option<String>, bool), Refusal>;

struct Scanner {
    root: PathBuf,
    root_dev: u64,
    /// (device, inode) of repositories already reported.
    seen: HashSet<(u64, u64)>,
    report: ScanReport,
}

impl Scanner {
    fn problem(
        &mut self,
        kind: ProblemKind,
        source: &Path,
        ref_name: Option<String>,
        reason: String,
    ) {
        self.report.problems.push(Problem {
            kind,
            source: source.display().to_string(),
            origin: None,
            ref_name,
            reason,
        });
    }

    /// Looks at one candidate location. `explicit` candidates (repos.d entries, the root
    /// itself) that are not repositories are reported; missing well-known paths are not.
    fn consider(&mut self, candidate: &Path, explicit: bool) {
        let (resolved, metadata) = match self.resolve_on_drive(candidate) {
            Ok(Some(found)) => found,
            Ok(None) => return,
            Err((kind, reason)) => {
                self.problem(kind, candidate, None, reason);
                return;
            }
        };
        let identity = (metadata.dev(), metadata.ino());
        if self.seen.contains(&identity) {
            return;
        }
        if !metadata.is_dir() || !looks_like_repo(&resolved) {
            if explicit {
                self.problem(
                    ProblemKind::Unreadable,
                    candidate,
                    None,
                    "it is not an OSTree repository".to_owned(),
                );
            }
            return;
        }
        let repo = match Repo::open(&resolved) {
            Ok(repo) => repo,
            Err(error) => {
                let kind = match error {
                    RepoError::Unsupported { .. } => ProblemKind::Other,
                    _ => ProblemKind::Unreadable,
                };
                self.problem(kind, candidate, None, crate::causes::text(&error));
                return;
            }
        };
        // The path was checked, then opened: make sure what was opened is what was checked.
        match std::fs::metadata(repo.path()) {
            Ok(opened) if (opened.dev(), opened.ino()) == identity => {}
            _ => {
                self.problem(
                    ProblemKind::Unsafe,
                    candidate,
                    None,
                    "it changed while being scanned; refused".to_owned(),
                );
                return;
            }
        }
        self.seen.insert(identity);
        let refs = self.list_refs(&repo);
        self.report.repos.push(RepoReport {
            path: resolved.display().to_string(),
            mode: repo.mode().as_str().to_owned(),
            refs,
        });
    }

    /// Where `candidate` leads and what is there, when it leads somewhere on the drive's
    /// filesystem; None when there is nothing at all.
    fn resolve_on_drive(&self, candidate: &Path) -> Result<Option<(PathBuf, Metadata)>, Refusal> {
        let unreadable =
            |error: std::io::Error| (ProblemKind::Unreadable, format!("cannot read it: {error}"));
        if let Err(error) = std::fs::symlink_metadata(candidate) {
            if error.kind() == std::io::ErrorKind::NotFound {
                return Ok(None);
            }
            return Err(unreadable(error));
        }
        let resolved = std::fs::canonicalize(candidate).map_err(|error| {
            (
                ProblemKind::Unreadable,
                format!("cannot resolve it (a dangling symlink?): {error}"),
            )
        })?;
        if !resolved.starts_with(&self.root) {
            return Err((
                ProblemKind::Unsafe,
                format!(
                    "it leads to {}, outside the drive {}; refused",
                    resolved.display(),
                    self.root.display()
                ),
            ));
        }
        let metadata = std::fs::metadata(&resolved).map_err(unreadable)?;
        if metadata.dev() != self.root_dev {
            return Err((
                ProblemKind::Unsafe,
                format!(
                    "it is on another filesystem than the drive {}; refused",
                    self.root.display()
                ),
            ));
        }
        Ok(Some((resolved, metadata)))
    }

    fn list_refs(&mut self, repo: &Repo) -> Vec<RefReport> {
        let source = repo.path().to_path_buf();
        let entries = match repo.ref_entries() {
            Ok(entries) => entries,
            Err(error) => {
                self.problem(
                    ProblemKind::Unreadable,
                    &source,
                    None,
                    crate::causes::text(&error),
                );
                return Vec::new();
            }
        };
        // Heads and mirrors before remotes: a collection ref is listed from the first.
        let mut ordered: Vec<_> = entries.into_iter().collect();
        ordered.sort_by_key(|entry| matches!(entry.location, RefLocation::Remote { .. }));
        let mut seen: HashSet<CollectionRef> = HashSet::new();
        // Many refs may name one commit: it is read and hashed once per scan of the repository.
        let mut described: HashMap<Checksum, Described> = HashMap::new();
        let mut refs = Vec::new();
        for entry in ordered {
            let key = CollectionRef {
                collection_id: repo.collection_of(&entry.location),
                name: entry.location.name().to_owned(),
            };
            let commit = match entry.commit {
                Ok(commit) => commit,
                Err(error) => {
                    self.problem(
                        ProblemKind::Corrupt,
                        &source,
                        Some(entry.location.name().to_owned()),
                        crate::causes::text(&error),
                    );
                    continue;
                }
            };
            if seen.contains(&key) {
                continue;
            }
            let description = described
                .entry(commit)
                .or_insert_with(|| Self::describe_commit(repo, &commit))
                .clone();
            match description {
                // Flatpak refs are carried in part (some languages); anything else marked
                // partial is an interrupted copy.
                Ok((_, _, true)) if crate::object::FlatpakRef::parse(&key.name).is_none() => {
                    self.problem(
                        ProblemKind::PartialCommit,
                        &source,
                        Some(key.name),
                        format!("commit {} is only partly present", commit.short()),
                    );
                }
                Ok((timestamp, version, partial)) => {
                    seen.insert(key.clone());
                    refs.push(RefReport {
                        collection_id: key.collection_id,
                        ref_name: key.name,
                        commit,
                        timestamp,
                        version,
                        partial,
                    });
                }
                Err((kind, reason)) => {
                    self.problem(kind, &source, Some(key.name), reason);
                }
            }
        }
        refs.sort_by(|a, b| (&a.collection_id, &a.ref_name).cmp(&(&b.collection_id, &b.ref_name)));
        refs
    }

    fn describe_commit(repo: &Repo, commit: &Checksum) -> Described {
        let partial = match repo.is_partial(commit) {
            Ok(partial) => partial,
            Err(error) => return Err((ProblemKind::Unreadable, crate::causes::text(&error))),
        };
        // Read and hashed, but only peeked at: nothing on a drive is parsed in full before it
        // verifies (see `resolve`).
        let bytes = match repo.read_metadata(ObjectKind::Commit, commit) {
            Ok(bytes) => bytes,
            Err(error @ RepoError::Missing { .. }) => {
                return Err((ProblemKind::Unavailable, crate::causes::text(&error)))
            }
            Err(error) => return Err((ProblemKind::Corrupt, crate::causes::text(&error))),
        };
        let actual = crate::object::metadata_checksum(&bytes);
        if actual != *commit {
            let error = RepoError::ChecksumMismatch {
                object: ObjectId::new(*commit, ObjectKind::Commit),
                actual,
                source_name: repo.path().display().to_string(),
            };
            return Err((ProblemKind::Corrupt, crate::causes::text(&error)));
        }
        Commit::peek_timestamp_and_version(&bytes)
            .map(|(timestamp, version)| (timestamp, version, partial))
            .map_err(|error| (ProblemKind::Corrupt, crate::causes::text(&error)))
    }
}
