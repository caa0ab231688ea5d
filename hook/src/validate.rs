//! Validation of a mounted drive: which repositories it holds, which updates it offers to this
//! machine, and what was refused. Only quick checks happen here (signatures, bindings, commit
//! completeness, no downgrade); every object is verified again at pull time.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferry_engine::resolve::{resolve, ResolveOptions};
use ferry_engine::source::drive::open_drive;
use ferry_engine::source::Source;
use ferry_engine::target::{default_targets, HostPaths};
use ferry_schema::{Problem, ProblemKind, RepoReport, SourceKind, Update};

use crate::beneath::DriveRoot;

/// What validation found on a drive.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Validation {
    /// Repositories accepted by the scan and by the containment check.
    pub repos: Vec<RepoReport>,
    /// Updates the drive offers this machine, in `ferryctl list --json`'s shape.
    pub updates: Vec<Update>,
    pub problems: Vec<Problem>,
    /// The repositories holding an offered update, with symlinks resolved: these are linked
    /// into the sideload directory.
    pub sideload: Vec<PathBuf>,
}

/// A problem with the drive as a whole, or a path on it; the record it goes into marks it as
/// the drive's ([`ferry_schema::DriveRecord::mark_sources`]).
fn problem(kind: ProblemKind, source: &Path, reason: String) -> Problem {
    Problem::about(kind, source.display().to_string(), None, reason)
}

/// Validates the drive mounted at `mount` against the machine's installed targets (the booted
/// OS and the Flatpak installations `ferryctl list` looks at without options).
pub fn validate(mount: &Path, label: Option<&str>) -> Validation {
    let mut validation = Validation::default();
    let unreadable = |error: &(dyn std::error::Error + 'static)| {
        problem(
            ProblemKind::Unreadable,
            mount,
            format!(
                "the drive could not be read: {}",
                ferry_engine::causes::Causes(error)
            ),
        )
    };
    let opened = match open_drive(mount, label, None) {
        Ok(opened) => opened,
        Err(error) => {
            validation.problems.push(unreadable(&error));
            return validation;
        }
    };
    validation.problems.extend(opened.report.problems);
    let root = match DriveRoot::open(mount) {
        Ok(root) => root,
        Err(error) => {
            validation.problems.push(unreadable(&error));
            return validation;
        }
    };
    let contained = accept_contained(&root, opened.report.repos, &mut validation);
    let sources: Vec<Arc<dyn Source>> = opened
        .sources
        .into_iter()
        .filter(|source| {
            contained
                .iter()
                .any(|(path, _)| *path == source.info().location)
        })
        .map(|source| Arc::new(source) as Arc<dyn Source>)
        .collect();

    let discovery = default_targets(&HostPaths::from_env());
    validation
        .problems
        .extend(discovery.errors.iter().map(|error| error.to_problem()));
    let options = ResolveOptions {
        quick: true,
        ..ResolveOptions::default()
    };
    let list = resolve(&discovery.targets, &sources, &options);
    validation.problems.extend(list.problems);
    validation.sideload = contained
        .into_iter()
        .filter(|(path, _)| offers_an_update(&list.updates, path))
        .map(|(_, resolved)| resolved)
        .collect();
    validation.updates = list.updates;
    validation
}

fn offers_an_update(updates: &[Update], repo_path: &str) -> bool {
    updates.iter().any(|update| {
        update
            .sources
            .iter()
            .any(|source| source.kind == SourceKind::Drive && source.location == repo_path)
    })
}

/// Keeps the repositories that resolve inside the drive, whatever the scan said: the sideload
/// links point at them and are followed by tools that run as root. Returns each kept
/// repository's path as reported, with its resolved path.
fn accept_contained(
    root: &DriveRoot,
    repos: Vec<RepoReport>,
    validation: &mut Validation,
) -> Vec<(String, PathBuf)> {
    let mut contained = Vec::new();
    for repo in repos {
        let path = Path::new(&repo.path);
        match root.resolve(path) {
            Ok(resolved) => {
                contained.push((repo.path.clone(), resolved));
                validation.repos.push(repo);
            }
            Err(error) => validation.problems.push(problem(
                ProblemKind::Unsafe,
                path,
                format!("refused: {}", ferry_engine::causes::Causes(&error)),
            )),
        }
    }
    contained
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(path: &Path) -> RepoReport {
        RepoReport {
            path: path.display().to_string(),
            mode: "archive".into(),
            refs: Vec::new(),
        }
    }

    #[test]
    fn repositories_outside_the_drive_are_refused_whoever_reported_them() {
        let dir = tempfile::tempdir().expect("temp dir");
        let drive = dir.path().join("drive");
        std::fs::create_dir_all(drive.join(".ostree/repo")).expect("create a directory");
        std::fs::create_dir_all(dir.path().join("elsewhere")).expect("create a directory");
        std::os::unix::fs::symlink("../elsewhere", drive.join("ostree")).expect("create a symlink");
        let root = DriveRoot::open(&drive).expect("open the drive");
        let mut validation = Validation::default();
        let contained = accept_contained(
            &root,
            vec![
                repo(&drive.join(".ostree/repo")),
                repo(&drive.join("ostree")),
                repo(&dir.path().join("elsewhere")),
            ],
            &mut validation,
        );
        assert_eq!(validation.repos, vec![repo(&drive.join(".ostree/repo"))]);
        assert_eq!(validation.problems.len(), 2);
        assert!(validation
            .problems
            .iter()
            .all(|p| p.kind == ProblemKind::Unsafe));
        assert_eq!(
            contained,
            vec![(
                drive.join(".ostree/repo").display().to_string(),
                drive.join(".ostree/repo")
            )]
        );
    }
}
