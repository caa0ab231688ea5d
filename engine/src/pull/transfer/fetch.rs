//! Fetching one job from one source, storing it, and what a failure means for the source.

use std::io;

use super::{Job, Outcome, Run};
use crate::object::{metadata_checksum, DirMeta, DirTree, ObjectKind};
use crate::pull::progress::Counted;
use crate::pull::PullError;
use crate::repo::{RepoError, RepoMode, WriteOutcome};
use crate::schema::SourceKind;
use crate::source::drive::is_gone;
use crate::source::{FetchError, Interrupt};

impl Run<'_, '_, '_> {
    pub(super) fn fetch(&self, index: usize, job: &Job, interrupt: &Interrupt) -> Outcome {
        match job.object.kind {
            ObjectKind::File => self.fetch_content(index, job, interrupt),
            kind => self.fetch_metadata(index, kind, job, interrupt),
        }
    }

    pub(super) fn fetch_metadata(
        &self,
        index: usize,
        kind: ObjectKind,
        job: &Job,
        interrupt: &Interrupt,
    ) -> Outcome {
        let source = &self.transfer.sources[index];
        let checksum = &job.object.checksum;
        let bytes = match source.fetch_metadata(kind, checksum, interrupt) {
            Ok(bytes) => bytes,
            Err(error) => return self.after_fetch_error(job, error),
        };
        self.transfer
            .progress
            .metadata_read(index, bytes.len() as u64);
        let actual = metadata_checksum(&bytes);
        if actual != *checksum {
            return Outcome::Bad(format!(
                "it handed out {} ({}), whose bytes hash to {actual}, not to its name: the source \
                 is corrupt or has been tampered with",
                job.object, job.path
            ));
        }
        let parsed = match kind {
            ObjectKind::DirTree => DirTree::parse(&bytes).map(|_| ()),
            _ => DirMeta::parse(&bytes).map(|_| ()),
        };
        if let Err(error) = parsed {
            return Outcome::Bad(format!(
                "it handed out {} ({}), which is invalid ({}); refused",
                job.object,
                job.path,
                crate::causes::Causes(&error)
            ));
        }
        match self
            .transfer
            .transaction
            .write_metadata(kind, checksum, &bytes)
        {
            Ok(outcome) => Outcome::Stored {
                written: outcome == WriteOutcome::Written,
                listing: (kind == ObjectKind::DirTree).then_some(bytes),
            },
            Err(error) => self.after_store_error(index, job, error, interrupt, None),
        }
    }

    pub(super) fn fetch_content(&self, index: usize, job: &Job, interrupt: &Interrupt) -> Outcome {
        let source = &self.transfer.sources[index];
        let transaction = self.transfer.transaction;
        let checksum = &job.object.checksum;
        let mut read_failed: Option<io::Error> = None;
        let written = if self.transfer.dest.mode() == RepoMode::Archive {
            match source.fetch_archived_content(checksum, interrupt) {
                Ok(Some(archived)) => {
                    if !job.size_known {
                        self.transfer
                            .progress
                            .expect_bytes(archived.size.unwrap_or(0));
                    }
                    let stream = Counted {
                        inner: archived.stream,
                        progress: self.transfer.progress,
                        source: index,
                        interrupt,
                        read_failed: &mut read_failed,
                    };
                    Some(match job.unpacked {
                        Some(unpacked) => {
                            transaction.write_archived_content_sized(checksum, stream, unpacked)
                        }
                        None => transaction.write_archived_content(checksum, stream),
                    })
                }
                Ok(None) => None,
                Err(error) => return self.after_fetch_error(job, error),
            }
        } else {
            None
        };
        let written = match written {
            Some(written) => written,
            None => {
                let content = match source.fetch_content(checksum, interrupt) {
                    Ok(content) => content,
                    Err(error) => return self.after_fetch_error(job, error),
                };
                // A symlink's entry records its target's length, which its header does not
                // carry.
                let recorded = job.unpacked.filter(|_| content.header.is_regular());
                if let Some(unpacked) = recorded.filter(|u| *u != content.header.size) {
                    return Outcome::Bad(format!(
                        "it handed out {} ({}), whose header declares {} bytes, but the signed \
                         commit's ostree.sizes records {unpacked}: the source is corrupt or has \
                         been tampered with",
                        job.object, job.path, content.header.size
                    ));
                }
                if !job.size_known {
                    self.transfer.progress.expect_bytes(content.header.size);
                }
                let body = Counted {
                    inner: content.body,
                    progress: self.transfer.progress,
                    source: index,
                    interrupt,
                    read_failed: &mut read_failed,
                };
                transaction.write_content(checksum, &content.header, body)
            }
        };
        match written {
            Ok(outcome) => Outcome::Stored {
                written: outcome == WriteOutcome::Written,
                listing: None,
            },
            Err(error) => self.after_store_error(index, job, error, interrupt, read_failed),
        }
    }

    /// What a source's refusal to hand out an object means for it.
    pub(super) fn after_fetch_error(&self, job: &Job, error: FetchError) -> Outcome {
        match error {
            FetchError::NotFound { .. } => Outcome::Lacking,
            FetchError::Unavailable { reason, .. } => Outcome::Gone(crate::causes::text(&*reason)),
            FetchError::Broken { reason, .. } => Outcome::Broken(crate::causes::text(&*reason)),
            // Mid-pull it only answers 503 to a summary; treated as a peer that went away.
            FetchError::Busy { .. } => Outcome::Gone("busy with other computers".to_owned()),
            FetchError::Interrupted { .. } => Outcome::Interrupted,
            FetchError::Failed { reason, .. } => Outcome::Bad(format!(
                "{} ({}) cannot be read there ({}): the copy is damaged or has been \
                 tampered with",
                job.object,
                job.path,
                crate::causes::Causes(&*reason)
            )),
        }
    }

    /// What a failed write means: the source's bytes were bad, reading the source failed, or
    /// the destination failed.
    pub(super) fn after_store_error(
        &self,
        index: usize,
        job: &Job,
        error: RepoError,
        interrupt: &Interrupt,
        read_failed: Option<io::Error>,
    ) -> Outcome {
        if interrupt.is_interrupted() {
            return Outcome::Interrupted;
        }
        let drive = self.transfer.sources[index].info().kind == SourceKind::Drive;
        match error {
            RepoError::ChecksumMismatch { actual, .. } => Outcome::Bad(format!(
                "it handed out {} ({}), whose content hashes to {actual}, not to its name: the \
                 source is corrupt or has been tampered with",
                job.object, job.path
            )),
            RepoError::Format { source, .. } => Outcome::Bad(format!(
                "it handed out {} ({}), which is invalid ({}): the source is corrupt or \
                 has been tampered with",
                job.object,
                job.path,
                crate::causes::Causes(&source)
            )),
            RepoError::ReadContent { source: reason, .. } => match read_failed {
                Some(failure) if !is_malformed(&failure) && (!drive || is_gone(&failure)) => {
                    if drive {
                        Outcome::Gone(format!(
                            "it stopped answering ({failure}); was the drive removed?"
                        ))
                    } else {
                        Outcome::Broken(format!(
                            "the connection broke while it sent {}: {failure}",
                            job.object
                        ))
                    }
                }
                _ => Outcome::Bad(format!(
                    "{} ({}) cannot be read there ({reason}): the copy is damaged or has been \
                     tampered with",
                    job.object, job.path
                )),
            },
            RepoError::Cancelled => Outcome::Interrupted,
            other => Outcome::Fatal(PullError::Store {
                path: Some(job.path.clone()),
                error: other,
            }),
        }
    }
}

/// Whether a drop reason says the source handed out a bad object (as opposed to vanishing).
pub(super) fn is_bad_reason(reason: &str) -> bool {
    reason.starts_with("it handed out") || reason.contains("damaged or has been tampered")
}

/// Errors of the bytes themselves (a broken compressed stream), not of reading them.
pub(super) fn is_malformed(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput | io::ErrorKind::UnexpectedEof
    )
}
