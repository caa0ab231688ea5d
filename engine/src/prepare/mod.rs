//! Making update drives: the OS and apps of this machine written to an archive repository at
//! `DRIVE/.ostree/repo`, laid out as `ostree create-usb` lays it out, so that libostree's
//! mount finder, `flatpak --sideload-repo`, eos-updater and Ferry all read it.
//!
//! - Refs go under `refs/mirrors/<collection-id>/`; only refs of remotes with a collection ID
//!   can be carried.
//! - Each commit goes with its complete closure and its detached metadata byte for byte
//!   (the publisher's signatures; Ferry never signs). Apps take their runtime and extensions
//!   along, and each carried remote's `appstream2`/`appstream` and `ostree-metadata` refs.
//! - Archive-mode sources are copied as stored; objects of bare-mode sources are compressed
//!   on every core at zlib level 1 (any level is valid in archive mode).
//! - Objects already on the drive are not written again; a commit on the drive is complete
//!   once present, since commits are written after everything they reach.
//! - The bytes to write, rounded up to the drive's blocks, are checked against its free space
//!   before anything is written.
//! - Order of writing: objects, sync, commits, refs, the unsigned summary, sync.
//!
//! [`prepare_drive`] runs the phases: `plan` (the refs and the objects the drive lacks),
//! `space` (the bytes in the drive's blocks against its free space), `copy` (objects onto
//! the drive, through `drive`'s FAT-safe writer), `read_back` (each batch re-hashed from the
//! device), `deltas` (OS refs as static deltas), `summary` and `prune` (what no ref needs).

mod copy;
mod deltas;
mod drive;
mod plan;
mod progress;
mod prune;
mod read_back;
mod removable;
mod space;
mod summary;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use serde::Serialize;

use crate::cancel::CancelToken;
use crate::event::{human_bytes, Event, MessageLevel, Reporter};
use crate::object::{Checksum, FormatError, ObjectId, ObjectKind};
use crate::repo::{LockKind, RefLocation, Repo, RepoError, RepoMode};
use crate::schema::{InstallResult, InstallStatus};
use crate::target::Target;
use copy::{Copying, Written};
use deltas::write_delta;
use drive::DriveWriter;
use plan::{choose_refs, keep_carried, plan_refs, Chosen, SourceRepos};
use progress::Progress;
use prune::{remove_stale_deltas, remove_unreachable};
use read_back::{verify_objects, write_read_back};
pub use removable::{removable_mounts, this_machines_removable_mounts, RemovableMount};
use space::{bytes_to_write, drive_space};
use summary::write_summary;

/// Where the repository goes on a drive, as `ostree create-usb` puts it.
pub const DRIVE_REPO_PATH: &str = ".ostree/repo";
/// Workers reading, compressing and writing objects, and reading them back. Far more than
/// cores: most of a worker's time is spent waiting on cold reads of small files, and the
/// device serves many at once (bench/prepare.sh: the writing phase took 1.5–2.0 s with 32,
/// 2.35 s with 8, ~5 s with one per core). Each holds about 1 MiB of buffers.
const WORKERS: usize = 32;
/// What to put on the drive. All empty means the OS and every installed app.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Put the OS (every OS ref of the sysroot) on the drive.
    pub os: bool,
    /// App IDs (`org.example.App`) or full refs (`app/org.example.App/x86_64/stable`).
    pub apps: Vec<String>,
    /// Put every installed app on the drive.
    pub all_apps: bool,
    /// Runtime IDs or full refs (`runtime/org.example.Platform/x86_64/stable`), with their
    /// installed extensions.
    pub runtimes: Vec<String>,
    /// Languages (`de`, `pt_BR`) of the locale extensions to carry; empty: every language
    /// the source holds.
    pub locales: Vec<String>,
}

impl Selection {
    fn everything(&self) -> bool {
        !self.os && self.apps.is_empty() && !self.all_apps && self.runtimes.is_empty()
    }
}

/// A `prepare-drive` request.
#[derive(Debug, Clone)]
pub struct PrepareRequest {
    /// A mount point or a plain folder; the repository goes to `DRIVE/.ostree/repo`.
    pub drive: PathBuf,
    /// What to put on the drive.
    pub selection: Selection,
    /// Plan only: nothing is created or written.
    pub dry_run: bool,
    /// Worker threads for writing objects; 0 means the default, `WORKERS`.
    pub threads: usize,
    /// Keep objects no ref on the drive needs any more (by default they are removed once
    /// a ref moved).
    pub keep_old: bool,
    /// Carry each OS ref as a static delta from this commit instead of its objects: the
    /// drive then updates machines that have that commit.
    pub delta_from: Option<DeltaFrom>,
}

/// The commit an OS delta on a drive starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeltaFrom {
    /// The commit of the newest other deployment of the OS: what this machine ran before its
    /// last update, and machines that have not updated yet still run.
    Installed,
    /// This commit of the OS ref.
    Commit(Checksum),
}

pub use crate::schema::{CarriedRef, DrivePlan};

/// How a run ended.
#[derive(Debug, Clone, Serialize)]
pub struct PrepareOutcome {
    /// What the drive carries, per ref.
    pub plan: DrivePlan,
    /// Whether this was a plan only (nothing written).
    pub dry_run: bool,
    /// Object files written (commits and detached metadata included).
    pub objects_written: u64,
    /// Bytes of the object files written.
    pub bytes_written: u64,
    /// Refs created or moved on the drive.
    pub refs_written: u64,
    /// Whether the drive's summary was written anew.
    pub summary_written: bool,
    /// Object files removed because no ref on the drive needs them any more.
    pub objects_removed: u64,
    /// Static deltas removed because no ref on the drive points at their `to` commit.
    pub deltas_removed: u64,
}

/// Why a drive could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// A remote of the source has no collection ID, so its refs could not be found on the drive.
    #[error(
        "{refs} cannot be put on a drive: remote '{remote}' of {source_label} has no collection \
         ID. {fix}"
    )]
    NoCollectionId {
        /// The remote.
        remote: String,
        /// The refs from it, comma-separated.
        refs: String,
        /// The installation or repository the refs come from.
        source_label: String,
        /// What to do about it, as a sentence.
        fix: String,
    },
    /// An app or runtime asked for is not installed.
    #[error("{0} is not installed in any chosen installation")]
    NotInstalled(String),
    /// The selection names nothing installed; why.
    #[error("nothing to put on the drive: {0}")]
    NothingSelected(String),
    /// The drive lacks free space for the objects to write.
    #[error(
        "the drive needs {} ({needed} bytes), {} ({free} bytes) free; free some space or use a \
         larger drive",
        human_bytes(*needed),
        human_bytes(*free)
    )]
    NoSpace {
        /// Bytes to write.
        needed: u64,
        /// Bytes free on the drive.
        free: u64,
    },
    /// An object exceeds FAT32's 4 GiB file size limit.
    #[error(
        "object {object} is {size} bytes, more than a FAT32 file can hold (4 GiB); format the \
         drive as exFAT"
    )]
    TooLargeForFat {
        /// The object.
        object: ObjectId,
        /// Its size as an archive object file.
        size: u64,
    },
    /// The drive already holds a repository that is not an archive one.
    #[error("{path} is a {mode} repository; a drive needs an archive repository")]
    NotArchive {
        /// The repository on the drive.
        path: PathBuf,
        /// Its mode.
        mode: RepoMode,
    },
    /// An object of the source repository does not hash to its name.
    #[error("object {object} of {repo} does not hash to its name; run `ostree fsck` there")]
    SourceCorrupt {
        /// The source repository.
        repo: PathBuf,
        /// The object.
        object: ObjectId,
    },
    /// A repository operation failed, or a file or directory operation
    /// ([`RepoError::Io`]).
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// An object of the source repository does not parse.
    #[error("invalid object {object}")]
    Format {
        /// The object.
        object: ObjectId,
        /// The parse error.
        #[source]
        source: FormatError,
    },
    /// Objects read back from the drive differ from what was written.
    #[error(
        "{count} objects read back from {drive} differ from what was written ({objects}); the \
         drive may be failing: use another one"
    )]
    BadDrive {
        /// The drive's mount point or folder.
        drive: PathBuf,
        /// How many objects differ.
        count: usize,
        /// The first ten of them, comma-separated.
        objects: String,
    },
    /// The drive's summary could not be serialized.
    #[error("cannot build the drive's summary")]
    Summary(#[source] FormatError),
    /// A static delta could not be written.
    #[error("cannot write the static delta")]
    Delta(#[from] crate::delta::DeltaError),
    /// The run was cancelled through its [`crate::cancel::CancelToken`].
    #[error("cancelled")]
    Cancelled,
}

impl PrepareError {
    fn io(action: &'static str, path: PathBuf, source: io::Error) -> Self {
        Self::Repo(RepoError::io(action, path, source))
    }
}

/// Plans and, unless `request.dry_run`, writes the drive. `targets` are the sysroot and
/// installations to read from.
pub fn prepare_drive(
    targets: &[Target],
    request: &PrepareRequest,
    reporter: &dyn Reporter,
    cancel: &CancelToken,
) -> Result<PrepareOutcome, PrepareError> {
    reporter.on_event(Event::Phase {
        phase: crate::event::Phase::Scan,
        update: None,
    });
    let chosen = choose_refs(targets, &request.selection)?;
    let sources = SourceRepos::open(targets, &chosen)?;
    let chosen = keep_carried(chosen, &sources, targets, &request.selection, reporter)?;
    let repo_path = request.drive.join(DRIVE_REPO_PATH);
    let existing = open_existing_drive_repo(&repo_path)?;
    let planning = plan_refs(
        targets,
        &sources,
        &chosen,
        request.delta_from,
        existing.as_ref(),
        reporter,
        cancel,
    )?;

    let space = drive_space(&request.drive)?;
    let bytes_to_write = bytes_to_write(&space, &planning)?;
    let plan = DrivePlan {
        repo: repo_path.clone(),
        refs: planning.carried.clone(),
        objects_to_write: (planning.objects.len() + planning.commits.len()) as u64,
        bytes_to_write,
        free_bytes: space.free,
    };
    reporter.on_event(Event::DrivePlan(plan.clone()));
    let nothing_new = planning.objects.is_empty() && planning.commits.is_empty();
    match space.free {
        Some(free) if !nothing_new && bytes_to_write > free => {
            return Err(PrepareError::NoSpace {
                needed: bytes_to_write,
                free,
            });
        }
        Some(_) => {}
        None => reporter.on_event(Event::Message {
            level: MessageLevel::Warning,
            text: format!(
                "{} does not report its free space; writing {} without checking it",
                request.drive.display(),
                human_bytes(bytes_to_write)
            ),
        }),
    }
    if request.dry_run {
        return Ok(PrepareOutcome {
            plan,
            dry_run: true,
            objects_written: 0,
            bytes_written: 0,
            refs_written: 0,
            summary_written: false,
            objects_removed: 0,
            deltas_removed: 0,
        });
    }

    let drive_repo = match existing {
        Some(repo) => repo,
        None => {
            std::fs::create_dir_all(&repo_path)
                .map_err(|e| PrepareError::io("create", repo_path.clone(), e))?;
            Repo::init(&repo_path, RepoMode::Archive, None)?
        }
    };
    // The lock `ostree` and `flatpak` take: shared while objects are added, exclusive while
    // unneeded ones are removed.
    let _writing = drive_repo.lock(LockKind::Shared, Some(cancel))?;
    let writer = DriveWriter::open(&repo_path)?;
    writer.remove_stale_temporaries()?;
    reporter.on_event(Event::Phase {
        phase: crate::event::Phase::Pull,
        update: None,
    });
    let progress = Progress::new(
        reporter,
        plan.objects_to_write,
        bytes_to_write,
        &request.drive,
    );
    let threads = if request.threads == 0 {
        WORKERS
    } else {
        request.threads
    };
    let copying = Copying {
        writer: &writer,
        sources: &sources,
        progress: &progress,
        cancel,
        written: Written::default(),
    };
    let mut bad = write_read_back(
        &copying,
        &drive_repo,
        &planning.objects,
        threads,
        &request.drive,
    )?;
    let checked = copying.written.count();
    for job in &planning.deltas {
        write_delta(&copying, job)?;
    }
    writer.sync()?;
    mark_partial_commits(&drive_repo, &chosen)?;
    // Commits last: a commit on the drive means everything it reaches is there (or, for a
    // ref carried as a delta, everything a machine with the delta's start lacks; or, marked
    // partial, the parts carried).
    copying.write_all(&planning.commits, 1)?;
    progress.report(true);

    let refs_written = write_refs(&writer, &drive_repo, &chosen)?;
    let published = publish(
        &drive_repo,
        &writer,
        !request.keep_old && refs_written > 0,
        cancel,
    )?;

    // Everything is on the drive; read it back from the device to catch a stick that
    // loses or garbles writes. Objects were read back batch by batch; deltas and commits
    // are read back now.
    let rest = copying.written.since(checked);
    bad.extend(verify_objects(&drive_repo, &rest, threads, cancel)?);
    bad.sort_by_key(|object| object.checksum);
    if !bad.is_empty() {
        return Err(PrepareError::BadDrive {
            drive: request.drive.clone(),
            count: bad.len(),
            objects: bad
                .iter()
                .take(10)
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        });
    }

    report_carried(reporter, &plan.refs);
    Ok(PrepareOutcome {
        plan,
        dry_run: false,
        objects_written: progress.objects.load(Ordering::Relaxed),
        bytes_written: progress.bytes.load(Ordering::Relaxed),
        refs_written,
        summary_written: published.summary_written,
        objects_removed: published.objects_removed,
        deltas_removed: published.deltas_removed,
    })
}

/// A commit carried in part is marked so before it appears; one now carried whole loses
/// the mark once everything it reaches is durable.
fn mark_partial_commits(drive: &Repo, chosen: &[Chosen]) -> Result<(), PrepareError> {
    for item in chosen {
        let held_whole = drive.has_object(ObjectId::new(item.commit, ObjectKind::Commit))?
            && !drive.is_partial(&item.commit)?;
        match &item.parts {
            Some(_) if !held_whole => drive.mark_partial(&item.commit)?,
            Some(_) => {}
            None => drive.clear_partial(&item.commit)?,
        }
    }
    Ok(())
}

/// Points each chosen ref's mirror at its commit; returns how many were created or moved.
fn write_refs(writer: &DriveWriter, drive: &Repo, chosen: &[Chosen]) -> Result<u64, PrepareError> {
    let mut written = 0;
    for item in chosen {
        let location = RefLocation::mirror(&item.collection_id, &item.ref_name);
        if drive.resolve_ref(&location)? == Some(item.commit) {
            continue;
        }
        writer.write_file(
            &location.relative_path(),
            format!("{}\n", item.commit).as_bytes(),
        )?;
        written += 1;
    }
    Ok(written)
}

/// What [`publish`] changed.
struct Published {
    summary_written: bool,
    objects_removed: u64,
    deltas_removed: u64,
}

/// Writes the summary, and with `prune` removes what only the refs' old commits needed:
/// deltas to those commits before the summary is written, so that it no longer lists them,
/// and their objects after it.
fn publish(
    drive: &Repo,
    writer: &DriveWriter,
    prune: bool,
    cancel: &CancelToken,
) -> Result<Published, PrepareError> {
    let _removing = if prune {
        Some(drive.lock(LockKind::Exclusive, Some(cancel))?)
    } else {
        None
    };
    let deltas_removed = if prune {
        remove_stale_deltas(drive, writer)?
    } else {
        0
    };
    let summary_written = write_summary(drive, writer)?;
    writer.sync()?;
    let objects_removed = if prune {
        let removed = remove_unreachable(drive, writer, cancel)?;
        writer.sync()?;
        removed
    } else {
        0
    };
    Ok(Published {
        summary_written,
        objects_removed,
        deltas_removed,
    })
}

/// One result per ref the drive now carries.
fn report_carried(reporter: &dyn Reporter, carried: &[CarriedRef]) {
    for carried in carried {
        reporter.on_event(Event::Result(InstallResult {
            update: carried.ref_name.clone(),
            ref_name: carried.ref_name.clone(),
            target: carried.target,
            status: if carried.up_to_date {
                InstallStatus::UpToDate
            } else {
                InstallStatus::Installed
            },
            message: Some(format!(
                "({}, {}) at {}",
                carried.collection_id, carried.ref_name, carried.commit
            )),
            restart_required: false,
            sources: Vec::new(),
        }));
    }
    reporter.on_event(Event::Phase {
        phase: crate::event::Phase::Done,
        update: None,
    });
}

/// The drive's repository when there is one; refused when it is not an archive one.
fn open_existing_drive_repo(path: &Path) -> Result<Option<Repo>, PrepareError> {
    if !path.join("config").exists() {
        return Ok(None);
    }
    let repo = Repo::open(path)?;
    if repo.mode() != RepoMode::Archive {
        return Err(PrepareError::NotArchive {
            path: path.to_path_buf(),
            mode: repo.mode(),
        });
    }
    Ok(Some(repo))
}
