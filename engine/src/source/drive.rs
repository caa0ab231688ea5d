//! Repositories on a drive (or any local path), in every mode, as sources.
//!
//! A [`DriveSource`] reads through [`Repo`], whose every path is resolved beneath the
//! repository, so a symlink planted on a drive cannot make Ferry read elsewhere; [`open_drive`]
//! finds the repositories with [`crate::scan::scan`], which refuses those leading off the drive.

use std::collections::HashSet;
use std::fmt::Display;
use std::path::Path;

use super::{
    source_name, Because, FetchError, FetchedArchive, FetchedContent, FetchedSummary, Interrupt,
    OfferedRef, Source, SourceRank,
};
use crate::object::{Checksum, ObjectId, ObjectKind, Summary};
use crate::repo::{CollectionRef, RefLocation, Repo, RepoError, RepoMode};
use crate::scan::{scan, ScanError};
use crate::schema::{Problem, ProblemKind, ScanReport, SourceInfo, SourceKind};

/// Largest drive summary read to rank the drive: summaries `create-usb` writes list the few
/// refs on the drive and take kilobytes.
const MAX_RANKING_SUMMARY_SIZE: u64 = 16 * 1024 * 1024;

/// A repository on a drive or at a local path.
pub struct DriveSource {
    repo: Repo,
    info: SourceInfo,
    rank: SourceRank,
}

impl std::fmt::Debug for DriveSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriveSource")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl DriveSource {
    /// Opens the repository at `path` (already found safe by a scan). `label` is how people
    /// know the drive, for example its filesystem label.
    pub fn open(path: &Path, label: Option<String>) -> Result<Self, RepoError> {
        let repo = Repo::open(path)?;
        // The summary only ranks drives against each other; a bad or oversized one ranks as
        // none, and only its metadata is read.
        let summary_timestamp = repo
            .read_summary_at_most(MAX_RANKING_SUMMARY_SIZE)
            .ok()
            .flatten()
            .and_then(|bytes| Summary::last_modified_of(&bytes));
        let info = SourceInfo::new(SourceKind::Drive, path.display().to_string(), label);
        Ok(Self {
            repo,
            info,
            rank: SourceRank {
                kind: SourceKind::Drive,
                summary_timestamp,
            },
        })
    }

    /// The repository read from.
    pub fn repo(&self) -> &Repo {
        &self.repo
    }

    fn name(&self) -> String {
        source_name(&self.info)
    }

    /// Local reads take milliseconds: an interrupt is honoured before each one starts.
    fn check(&self, interrupt: &Interrupt) -> Result<(), FetchError> {
        if interrupt.is_interrupted() {
            return Err(interrupt.error(&self.info));
        }
        Ok(())
    }

    /// Sorts a repository error into what the pull does next: a missing object is looked for
    /// elsewhere; a drive that stopped answering is dropped; anything else is a failure.
    fn fetch_error(&self, object: impl Display, error: RepoError) -> FetchError {
        match error {
            RepoError::Missing { .. } => FetchError::not_found(object, &self.info),
            RepoError::Io { source, .. } if is_gone(&source) => FetchError::unavailable(
                &self.info,
                Because::new("it stopped answering; was the drive removed?", source),
            ),
            RepoError::Corrupt { source, .. } => FetchError::failed(&self.info, source),
            other => FetchError::failed(&self.info, other.with_source(&self.name())),
        }
    }
}

/// Errors that mean the device went away rather than one file being bad.
pub(crate) fn is_gone(error: &std::io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EIO | libc::ENODEV | libc::ENXIO | libc::ESTALE | libc::ENOTCONN)
    )
}

impl Source for DriveSource {
    fn info(&self) -> &SourceInfo {
        &self.info
    }

    fn rank(&self) -> SourceRank {
        self.rank
    }

    /// Heads, then mirrors, then remote refs; a collection ref offered twice is listed once.
    /// Ref files that cannot be read are skipped (a scan lists them as problems).
    fn refs(&self) -> Result<Vec<OfferedRef>, FetchError> {
        let entries = self
            .repo
            .ref_entries()
            .map_err(|error| self.fetch_error("the refs", error))?;
        let order = |location: &RefLocation| match location {
            RefLocation::Head { .. } => 0,
            RefLocation::Mirror { .. } => 1,
            RefLocation::Remote { .. } => 2,
        };
        let mut entries: Vec<_> = entries.into_iter().collect();
        entries.sort_by_key(|entry| order(&entry.location));
        let mut seen: HashSet<CollectionRef> = HashSet::new();
        let mut offered = Vec::new();
        for entry in entries {
            let commit = match entry.commit {
                Ok(commit) => commit,
                Err(error) => {
                    tracing::warn!(source = %self.name(), "skipping a ref: {error}");
                    continue;
                }
            };
            let key = CollectionRef {
                collection_id: self.repo.collection_of(&entry.location),
                name: entry.location.name().to_owned(),
            };
            if seen.insert(key.clone()) {
                offered.push(OfferedRef {
                    collection_id: key.collection_id,
                    ref_name: key.name,
                    commit,
                });
            }
        }
        Ok(offered)
    }

    fn fetch_metadata(
        &self,
        kind: ObjectKind,
        checksum: &Checksum,
        interrupt: &Interrupt,
    ) -> Result<Vec<u8>, FetchError> {
        self.check(interrupt)?;
        self.repo
            .read_metadata(kind, checksum)
            .map_err(|error| self.fetch_error(ObjectId::new(*checksum, kind), error))
    }

    fn fetch_commitmeta(
        &self,
        commit: &Checksum,
        interrupt: &Interrupt,
    ) -> Result<Option<Vec<u8>>, FetchError> {
        self.check(interrupt)?;
        self.repo.read_commitmeta(commit).map_err(|error| {
            self.fetch_error(ObjectId::new(*commit, ObjectKind::CommitMeta), error)
        })
    }

    fn fetch_content(
        &self,
        checksum: &Checksum,
        interrupt: &Interrupt,
    ) -> Result<FetchedContent, FetchError> {
        self.check(interrupt)?;
        let (header, body) = self
            .repo
            .open_content(checksum)
            .map_err(|error| self.fetch_error(ObjectId::new(*checksum, ObjectKind::File), error))?;
        Ok(FetchedContent {
            header,
            body: Box::new(body),
        })
    }

    fn commit_is_complete(&self, commit: &Checksum) -> Result<bool, FetchError> {
        self.repo
            .is_partial(commit)
            .map(|partial| !partial)
            .map_err(|error| self.fetch_error(ObjectId::new(*commit, ObjectKind::Commit), error))
    }

    fn metadata_size(&self, object: ObjectId) -> Option<u64> {
        self.repo.metadata_size(object).ok().flatten()
    }

    fn has_object(&self, object: ObjectId) -> Option<bool> {
        self.repo.has_object(object).ok()
    }

    fn fetch_archived_content(
        &self,
        checksum: &Checksum,
        interrupt: &Interrupt,
    ) -> Result<Option<FetchedArchive>, FetchError> {
        self.check(interrupt)?;
        if self.repo.mode() != RepoMode::Archive {
            return Ok(None);
        }
        let archived = self
            .repo
            .open_archived_content(checksum)
            .map_err(|error| self.fetch_error(ObjectId::new(*checksum, ObjectKind::File), error))?;
        Ok(Some(FetchedArchive {
            size: Some(archived.size),
            stream: Box::new(archived.file),
        }))
    }

    fn fetch_delta_file(
        &self,
        relative_path: &str,
        max: u64,
        interrupt: &Interrupt,
    ) -> Result<Option<Vec<u8>>, FetchError> {
        self.check(interrupt)?;
        self.repo
            .read_delta_file(relative_path, max)
            .map_err(|error| self.fetch_error(relative_path, error))
    }

    fn filesystem(&self) -> Option<u64> {
        self.repo.filesystem()
    }

    fn fetch_summary(&self) -> Result<Option<FetchedSummary>, FetchError> {
        let Some(summary) = self
            .repo
            .read_summary()
            .map_err(|error| self.fetch_error("the summary", error))?
        else {
            return Ok(None);
        };
        let signatures = self
            .repo
            .read_summary_signatures()
            .map_err(|error| self.fetch_error("the summary signatures", error))?;
        Ok(Some(FetchedSummary {
            summary,
            signatures,
        }))
    }
}

/// The repositories found on a drive, opened as sources, and what the scan reported
/// (including repositories it refused and any that could not be opened).
#[derive(Debug)]
pub struct OpenedDrive {
    /// A source for each repository opened.
    pub sources: Vec<DriveSource>,
    /// What the scan found and refused.
    pub report: ScanReport,
}

/// Scans `path` (a drive's root or a repository) and opens every repository found. A
/// repository that resolves off the drive is refused by the scan and only listed as a problem.
/// `record` is the hook's record of the drive ([`DriveRecord::id`](crate::schema::DriveRecord)),
/// when it has one: every source and problem found carries it.
pub fn open_drive(
    path: &Path,
    label: Option<&str>,
    record: Option<&str>,
) -> Result<OpenedDrive, ScanError> {
    let mut report = scan(path)?;
    let on_drive = |location: &str| SourceInfo {
        drive: record.map(str::to_owned),
        ..SourceInfo::new(SourceKind::Drive, location, label.map(str::to_owned))
    };
    // The scan names the paths it refused; they are on this drive.
    for problem in &mut report.problems {
        problem.origin = Some(Box::new(on_drive(&problem.source)));
    }
    let mut sources = Vec::new();
    for repo in &report.repos {
        match DriveSource::open(Path::new(&repo.path), label.map(str::to_owned)) {
            Ok(mut source) => {
                source.info.drive = record.map(str::to_owned);
                sources.push(source);
            }
            Err(error) => report.problems.push(Problem {
                source: repo.path.clone(),
                ..Problem::on_source(
                    ProblemKind::Unreadable,
                    &on_drive(&repo.path),
                    None,
                    crate::causes::text(&error),
                )
            }),
        }
    }
    Ok(OpenedDrive { sources, report })
}

/// Drives for other modules' tests.
#[cfg(test)]
pub(crate) mod test_drives {
    use super::*;

    /// An archive repository in `dir` holding one content object whose header declares a
    /// length larger than any content header may be, opened as a drive.
    pub(crate) fn with_a_damaged_object(dir: &Path) -> (DriveSource, Checksum) {
        let path = dir.join("repo");
        let repo = Repo::init(&path, RepoMode::Archive, None).expect("init");
        let checksum = Checksum::from_hex(&"ab".repeat(32)).expect("checksum");
        let object = repo.object_path(ObjectId::new(checksum, ObjectKind::File));
        std::fs::create_dir_all(object.parent().expect("objects dir")).expect("objects dir");
        std::fs::write(&object, [0xff; 8]).expect("write the object");
        (DriveSource::open(&path, None).expect("open"), checksum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::FormatError;

    #[test]
    fn a_damaged_object_on_a_drive_keeps_its_parse_error_as_the_cause() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (source, checksum) = test_drives::with_a_damaged_object(dir.path());
        let error = match source.fetch_content(&checksum, &Interrupt::never()) {
            Ok(_) => panic!("a damaged object was handed out"),
            Err(error) => error,
        };
        assert!(matches!(error, FetchError::Failed { .. }), "{error}");
        let cause = std::error::Error::source(&error)
            .and_then(|cause| cause.downcast_ref::<FormatError>())
            .unwrap_or_else(|| panic!("{error} does not expose the parse error"));
        assert!(matches!(cause, FormatError::TooLarge { .. }), "{cause}");
    }
}
