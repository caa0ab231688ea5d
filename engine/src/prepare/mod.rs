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

mod drive;
mod removable;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use flate2::write::DeflateEncoder;
use flate2::Compression;
use serde::Serialize;

use crate::cancel::CancelToken;
use crate::event::{human_bytes, Event, MessageLevel, Reporter};
use crate::object::stored::{self, looks_incompressible};
use crate::object::summary::{
    build_summary, collection_map_value, SummaryEntry, COLLECTION_MAP_KEY, COMMIT_TIMESTAMP_KEY,
    COMMIT_VERSION_KEY, LAST_MODIFIED_KEY,
};
use crate::object::{
    metadata_checksum, Checksum, ContentHasher, DirTree, FormatError, Metadata, MetadataValue,
    ObjectId, ObjectKind, Reach, Subdirs, Summary,
};
use crate::repo::{LockKind, RefLocation, Repo, RepoError, RepoMode};
use crate::schema::{InstallResult, InstallStatus, TargetKind};
use crate::target::Target;
use drive::DriveWriter;
pub use removable::{removable_mounts, this_machines_removable_mounts, RemovableMount};

/// Where the repository goes on a drive, as `ostree create-usb` puts it.
pub const DRIVE_REPO_PATH: &str = ".ostree/repo";
/// zlib level for objects of bare-mode sources: fast; libostree reads any level.
const ZLIB_LEVEL: u32 = 1;
/// The largest file FAT32 can hold.
const FAT32_MAX_FILE: u64 = (4 << 30) - 1;
/// `statfs` type of the kernel's FAT driver.
const MSDOS_SUPER_MAGIC: u64 = 0x4d44;
/// Header bytes allowed per archived object when estimating the size of a bare one.
const ARCHIVE_HEADER_ESTIMATE: u64 = 512;
/// Workers reading, compressing and writing objects, and reading them back. Far more than
/// cores: most of a worker's time is spent waiting on cold reads of small files, and the
/// device serves many at once (bench/prepare.sh: the writing phase took 1.5–2.0 s with 32,
/// 2.35 s with 8, ~5 s with one per core). Each holds about 1 MiB of buffers.
const WORKERS: usize = 32;
/// How often progress is reported.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(200);
const CHUNK: usize = 128 * 1024;

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
    /// Worker threads for writing objects; 0 means [`WORKERS`].
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

/// A delta to write for one OS ref.
struct DeltaJob {
    source: usize,
    from: Checksum,
    to: Checksum,
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

/// A ref chosen from a target.
#[derive(Debug, Clone)]
struct Chosen {
    target: usize,
    collection_id: String,
    ref_name: String,
    commit: Checksum,
    /// Flatpak subpaths installed (some languages of a locale extension); empty: all.
    subpaths: Vec<String>,
    /// The parts of the tree carried; None for all of it.
    parts: Option<Subdirs>,
}

/// An object to write, where it is read from, and the bytes it will take.
#[derive(Debug, Clone, Copy)]
struct Planned {
    object: ObjectId,
    source: usize,
    size: u64,
}

/// What walking the chosen commits found to write.
#[derive(Default)]
struct Walk {
    seen: HashSet<ObjectId>,
    /// Trees planned only as the way to a part of a commit (not walked whole).
    on_the_way: HashSet<ObjectId>,
    /// Dirtrees, dirmeta and content, written first.
    objects: Vec<Planned>,
    /// Commits and their detached metadata, written once everything else is.
    commits: Vec<Planned>,
}

impl Walk {
    fn planned_bytes(&self) -> u64 {
        self.objects
            .iter()
            .chain(&self.commits)
            .fold(0u64, |sum, planned| sum.saturating_add(planned.size))
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
    // Each target read from, opened once; `Planned::source` indexes `sources`.
    let mut sources: Vec<Repo> = Vec::new();
    let mut source_index: HashMap<usize, usize> = HashMap::new();
    for item in &chosen {
        if let std::collections::hash_map::Entry::Vacant(slot) = source_index.entry(item.target) {
            slot.insert(sources.len());
            sources.push(Repo::open(&targets[item.target].repo)?);
        }
    }
    let source_of = |index: usize| -> &Repo { &sources[index] };
    // Refs installed in part (Flatpak's locale extensions with some languages) are carried
    // in that part, as `flatpak` pulls them; `--locale` narrows locale extensions further.
    let mut kept = Vec::with_capacity(chosen.len());
    for mut item in chosen {
        let source = source_of(source_index[&item.target]);
        let installation = &targets[item.target].installation;
        match carried_parts(&item, source.is_partial(&item.commit)?, &request.selection) {
            Ok(parts) => {
                if let Some(parts) = &parts {
                    reporter.on_event(Event::Message {
                        level: MessageLevel::Info,
                        text: format!(
                            "{} is put on the drive with only {parts} (of {installation})",
                            item.ref_name
                        ),
                    });
                }
                item.parts = parts;
                kept.push(item);
            }
            Err(why) => reporter.on_event(Event::Message {
                level: MessageLevel::Warning,
                text: format!(
                    "{} is installed only in part in {installation} ({why}); it is not put on \
                     the drive",
                    item.ref_name
                ),
            }),
        }
    }
    let chosen = kept;
    if chosen.is_empty() {
        return Err(PrepareError::NothingSelected(
            "no OS deployment or installed app was found in the chosen places".to_owned(),
        ));
    }
    let repo_path = request.drive.join(DRIVE_REPO_PATH);
    let existing = open_existing_drive_repo(&repo_path)?;

    // The closure of every commit the drive does not hold completely yet.
    let mut walk = Walk::default();
    let mut carried = Vec::new();
    let mut deltas: Vec<DeltaJob> = Vec::new();
    // Planned bytes of the objects the deltas carry: a delta is about this size or smaller.
    let mut delta_bytes: u64 = 0;
    for item in &chosen {
        if cancel.is_cancelled() {
            return Err(PrepareError::Cancelled);
        }
        let index = source_index[&item.target];
        let location = RefLocation::mirror(&item.collection_id, &item.ref_name);
        let on_drive = match &existing {
            Some(drive) => drive.resolve_ref(&location)?,
            None => None,
        };
        carried.push(CarriedRef {
            collection_id: item.collection_id.clone(),
            ref_name: item.ref_name.clone(),
            commit: item.commit.to_hex(),
            target: targets[item.target].kind,
            source: targets[item.target].installation.clone(),
            up_to_date: on_drive == Some(item.commit),
            new_bytes: 0,
            subpaths: item
                .parts
                .as_ref()
                .map(Subdirs::flatpak_subpaths)
                .unwrap_or_default(),
        });
        let before = walk.planned_bytes();
        let delta_from = match request.delta_from {
            Some(from) if on_drive != Some(item.commit) && item.parts.is_none() => delta_start(
                &targets[item.target],
                source_of(index),
                item,
                from,
                reporter,
            )?,
            _ => None,
        };
        match delta_from {
            Some(from) => {
                let estimate = plan_delta(
                    source_of(index),
                    index,
                    &item.commit,
                    &from,
                    existing.as_ref(),
                    &mut walk,
                )?;
                delta_bytes = delta_bytes.saturating_add(estimate);
                deltas.push(DeltaJob {
                    source: index,
                    from,
                    to: item.commit,
                });
                if let Some(last) = carried.last_mut() {
                    last.new_bytes = walk
                        .planned_bytes()
                        .saturating_sub(before)
                        .saturating_add(estimate);
                }
            }
            None => {
                walk_commit(
                    source_of(index),
                    index,
                    &item.commit,
                    item.parts.as_ref(),
                    existing.as_ref(),
                    &mut walk,
                )?;
                if let Some(last) = carried.last_mut() {
                    last.new_bytes = walk.planned_bytes().saturating_sub(before);
                }
            }
        }
    }

    let Walk {
        objects, commits, ..
    } = walk;

    // Space, counted in the drive's blocks.
    let space = drive_space(&request.drive)?;
    let cluster = space.block_size.max(512);
    let round = |size: u64| size.div_ceil(cluster).saturating_mul(cluster);
    let mut bytes_to_write: u64 = 0;
    let mut prefixes: BTreeSet<u8> = BTreeSet::new();
    for planned in objects.iter().chain(&commits) {
        let size = planned.size;
        if space.fat32 && size > FAT32_MAX_FILE {
            return Err(PrepareError::TooLargeForFat {
                object: planned.object,
                size,
            });
        }
        bytes_to_write = bytes_to_write.saturating_add(round(size));
        prefixes.insert(planned.object.checksum.as_bytes()[0]);
    }
    bytes_to_write = bytes_to_write.saturating_add(round(delta_bytes));
    // New object directories, ref files with their directories, config, summary, and a
    // superblock and directories per delta.
    let overhead_files =
        prefixes.len() as u64 + 4 * carried.len() as u64 + 16 + 4 * deltas.len() as u64;
    bytes_to_write = bytes_to_write.saturating_add(overhead_files.saturating_mul(cluster));
    let plan = DrivePlan {
        repo: repo_path.clone(),
        refs: carried,
        objects_to_write: (objects.len() + commits.len()) as u64,
        bytes_to_write,
        free_bytes: space.free,
    };
    reporter.on_event(Event::DrivePlan(plan.clone()));
    let nothing_new = objects.is_empty() && commits.is_empty();
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
    let written: Mutex<Vec<Planned>> = Mutex::new(Vec::new());
    // The objects written from position `from` on, without copying the whole list.
    let written_since = |from: usize| -> Vec<ObjectId> {
        written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(from..)
            .unwrap_or_default()
            .iter()
            .map(|planned| planned.object)
            .collect()
    };
    let written_count = || {
        written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    };
    // Objects go in batches. Each batch is synced and read back from the device while the
    // next one is written, so writeback and read-back overlap the writing instead of
    // following it.
    let mut bad: Vec<ObjectId> = Vec::new();
    std::thread::scope(|scope| -> Result<(), PrepareError> {
        let mut checking = None;
        for batch in batches(&objects, CHECK_BATCH_BYTES) {
            let before = written_count();
            write_all(
                &writer, batch, &source_of, &progress, threads, cancel, &written,
            )?;
            let batch_written = written_since(before);
            if let Some(previous) = checking.take() {
                bad.extend(joined(previous, &request.drive)?);
            }
            let (writer, drive_repo) = (&writer, &drive_repo);
            checking = Some(scope.spawn(move || {
                writer.sync()?;
                verify_objects(drive_repo, &batch_written, threads, cancel)
            }));
        }
        if let Some(previous) = checking.take() {
            bad.extend(joined(previous, &request.drive)?);
        }
        Ok(())
    })?;
    let checked = written_count();
    for job in &deltas {
        write_delta(
            &writer,
            source_of(job.source),
            job,
            &progress,
            cancel,
            &written,
        )?;
    }
    writer.sync()?;
    // A commit carried in part is marked so before it appears; one now carried whole loses
    // the mark once everything it reaches is durable.
    for item in &chosen {
        let held_whole = drive_repo.has_object(ObjectId::new(item.commit, ObjectKind::Commit))?
            && !drive_repo.is_partial(&item.commit)?;
        match &item.parts {
            Some(_) if !held_whole => drive_repo.mark_partial(&item.commit)?,
            Some(_) => {}
            None => drive_repo.clear_partial(&item.commit)?,
        }
    }
    // Commits last: a commit on the drive means everything it reaches is there (or, for a
    // ref carried as a delta, everything a machine with the delta's start lacks; or, marked
    // partial, the parts carried).
    write_all(
        &writer, &commits, &source_of, &progress, 1, cancel, &written,
    )?;
    progress.report(true);

    let mut refs_written = 0;
    for item in &chosen {
        let location = RefLocation::mirror(&item.collection_id, &item.ref_name);
        if drive_repo.resolve_ref(&location)? == Some(item.commit) {
            continue;
        }
        writer.write_file(
            &location.relative_path(),
            format!("{}\n", item.commit).as_bytes(),
        )?;
        refs_written += 1;
    }
    // Refs that moved on leave what only their old commits needed: deltas to those commits
    // go before the summary is written, so that it no longer lists them, and their objects
    // after it.
    let prune = !request.keep_old && refs_written > 0;
    let removing = if prune {
        Some(drive_repo.lock(LockKind::Exclusive, Some(cancel))?)
    } else {
        None
    };
    let deltas_removed = if prune {
        remove_stale_deltas(&drive_repo, &writer)?
    } else {
        0
    };
    let summary_written = write_summary(&drive_repo, &writer)?;
    writer.sync()?;
    let objects_removed = if prune {
        let removed = remove_unreachable(&drive_repo, &writer, cancel)?;
        writer.sync()?;
        removed
    } else {
        0
    };
    drop(removing);

    // Everything is on the drive; read it back from the device to catch a stick that
    // loses or garbles writes.
    // Objects were read back batch by batch; deltas and commits are read back now.
    let written: Vec<ObjectId> = written
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .skip(checked)
        .map(|planned| planned.object)
        .collect();
    bad.extend(verify_objects(&drive_repo, &written, threads, cancel)?);
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

    for carried in &plan.refs {
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
    Ok(PrepareOutcome {
        plan,
        dry_run: false,
        objects_written: progress.objects.load(Ordering::Relaxed),
        bytes_written: progress.bytes.load(Ordering::Relaxed),
        refs_written,
        summary_written,
        objects_removed,
        deltas_removed,
    })
}

/// The commit the delta of OS ref `item` starts from, when `from` names one the source
/// holds complete; otherwise the ref is carried as objects, said so.
fn delta_start(
    target: &Target,
    source: &Repo,
    item: &Chosen,
    from: DeltaFrom,
    reporter: &dyn Reporter,
) -> Result<Option<Checksum>, PrepareError> {
    let crate::target::DeployTarget::Os(os) = &target.deploy else {
        return Ok(None);
    };
    let start = match from {
        DeltaFrom::Commit(commit) => Some(commit),
        DeltaFrom::Installed => os
            .state
            .deployments
            .iter()
            .find(|d| d.stateroot == os.stateroot() && d.commit != item.commit)
            .map(|d| d.commit),
    };
    let usable = match start {
        Some(start) if start != item.commit => {
            source.has_object(ObjectId::new(start, ObjectKind::Commit))?
                && !source.is_partial(&start)?
        }
        _ => false,
    };
    if !usable {
        reporter.on_event(Event::Message {
            level: MessageLevel::Warning,
            text: format!(
                "no static delta for {}: {} is not a complete commit of {}; its objects are \
                 put on the drive instead",
                item.ref_name,
                start.map_or_else(|| "no earlier deployment".to_owned(), |c| c.to_hex()),
                target.installation
            ),
        });
        return Ok(None);
    }
    Ok(start)
}

/// Plans OS commit `to` carried as a delta from `from`: its commit and detached metadata
/// go into `walk`, its other objects into the delta. Returns the planned bytes of the
/// objects the delta carries (those `from` lacks), which the delta does not exceed by much.
fn plan_delta(
    source: &Repo,
    source_index: usize,
    to: &Checksum,
    from: &Checksum,
    drive: Option<&Repo>,
    walk: &mut Walk,
) -> Result<u64, PrepareError> {
    let mut own = Walk::default();
    walk_commit(source, source_index, to, None, drive, &mut own)?;
    let old: HashSet<ObjectId> = crate::delta::write::closure(source, from)?
        .into_iter()
        .collect();
    for planned in own.commits {
        if walk.seen.insert(planned.object) {
            walk.commits.push(planned);
        }
    }
    Ok(own
        .objects
        .iter()
        .filter(|planned| !old.contains(&planned.object))
        .fold(0u64, |sum, planned| sum.saturating_add(planned.size)))
}

/// Writes `job`'s delta through `writer`, part by part, then the objects it lists as
/// fallbacks.
fn write_delta(
    writer: &DriveWriter,
    source: &Repo,
    job: &DeltaJob,
    progress: &Progress<'_>,
    cancel: &CancelToken,
    written: &Mutex<Vec<Planned>>,
) -> Result<(), PrepareError> {
    let mut failed: Option<PrepareError> = None;
    let generated = crate::delta::write::generate_with(
        source,
        Some(&job.from),
        &job.to,
        &mut |relative, bytes| {
            if cancel.is_cancelled() {
                failed = Some(PrepareError::Cancelled);
            } else if let Err(error) = writer.write_file(relative, bytes) {
                failed = Some(error);
            }
            if failed.is_some() {
                return Err(crate::delta::DeltaError::Malformed("not written"));
            }
            progress.add_bytes(bytes.len() as u64);
            Ok(())
        },
    );
    if let Some(error) = failed {
        return Err(error);
    }
    let generated = generated?;
    progress.reporter.on_event(Event::Message {
        level: MessageLevel::Info,
        text: format!(
            "wrote the static delta from {} to {}: {} parts, {} ({} objects, {} as bsdiff \
             patches)",
            job.from.short(),
            job.to.short(),
            generated.parts,
            human_bytes(generated.compressed_size),
            generated.objects,
            generated.patched
        ),
    });
    let fallbacks: Vec<Planned> = generated
        .fallback_objects
        .iter()
        .map(|object| Planned {
            object: *object,
            source: 0,
            size: 0,
        })
        .collect();
    write_all(
        writer,
        &fallbacks,
        &|_| source,
        progress,
        1,
        cancel,
        written,
    )
}

/// Removes the static deltas under `deltas/` to commits no ref on the drive points at, and
/// the `delta-indexes/` entries of those commits: a pull from the drive only ever wants a
/// ref's commit. A delta's `from` commit is not looked at; machines hold it, not the drive.
/// Returns how many deltas were removed.
fn remove_stale_deltas(drive: &Repo, writer: &DriveWriter) -> Result<u64, PrepareError> {
    let targets: HashSet<Checksum> = drive
        .list_refs()?
        .into_iter()
        .map(|(_, commit)| commit)
        .collect();
    let mut removed = 0;
    for (prefix, name) in writer.entries_under("deltas")? {
        let Some((_, to)) = crate::delta::write::delta_of_dir(&prefix, &name) else {
            continue;
        };
        if !targets.contains(&to) {
            writer.remove_under("deltas", &prefix, &name)?;
            removed += 1;
        }
    }
    for (prefix, name) in writer.entries_under("delta-indexes")? {
        let Some(to) = crate::delta::write::commit_of_index(&prefix, &name) else {
            continue;
        };
        if !targets.contains(&to) {
            writer.remove_under("delta-indexes", &prefix, &name)?;
        }
    }
    Ok(removed)
}

/// Removes the object files no ref on the drive reaches (older commits the refs moved
/// away from). Missing objects are no error: a ref another tool left partial keeps what
/// it has.
fn remove_unreachable(
    drive: &Repo,
    writer: &DriveWriter,
    cancel: &CancelToken,
) -> Result<u64, PrepareError> {
    let mut reachable: HashSet<ObjectId> = HashSet::new();
    for (_, commit) in drive.list_refs()? {
        if cancel.is_cancelled() {
            return Err(PrepareError::Cancelled);
        }
        mark_reachable(drive, &commit, &mut reachable)?;
    }
    let mut removed = 0;
    for (prefix, name) in writer.object_files()? {
        let Some(object) = ObjectId::from_object_path(&prefix, &name, RepoMode::Archive) else {
            continue;
        };
        if !reachable.contains(&object) {
            writer.remove_object(&prefix, &name)?;
            removed += 1;
        }
    }
    Ok(removed)
}

fn mark_reachable(
    drive: &Repo,
    commit: &Checksum,
    reachable: &mut HashSet<ObjectId>,
) -> Result<(), PrepareError> {
    let commit_id = ObjectId::new(*commit, ObjectKind::Commit);
    if !reachable.insert(commit_id) {
        return Ok(());
    }
    reachable.insert(ObjectId::new(*commit, ObjectKind::CommitMeta));
    let parsed = match drive.read_commit(commit) {
        Ok(parsed) => parsed,
        Err(error) if error.is_missing() => return Ok(()),
        Err(error) => return Err(error.into()),
    };
    let mut pending = vec![(parsed.root_tree, parsed.root_meta)];
    while let Some((tree, meta)) = pending.pop() {
        reachable.insert(ObjectId::new(meta, ObjectKind::DirMeta));
        let tree_id = ObjectId::new(tree, ObjectKind::DirTree);
        if !reachable.insert(tree_id) {
            continue;
        }
        let bytes = match drive.read_metadata(ObjectKind::DirTree, &tree) {
            Ok(bytes) => bytes,
            Err(error) if error.is_missing() => continue,
            Err(error) => return Err(error.into()),
        };
        let parsed_tree = DirTree::parse(&bytes).map_err(|source| PrepareError::Format {
            object: tree_id,
            source,
        })?;
        for file in &parsed_tree.files {
            reachable.insert(ObjectId::new(file.checksum, ObjectKind::File));
        }
        pending.extend(parsed_tree.dirs.iter().map(|dir| (dir.tree, dir.meta)));
    }
    Ok(())
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

/// The refs `selection` names in `targets`, with the runtimes and extensions apps need and
/// the AppStream and `ostree-metadata` refs of the remotes carried.
fn choose_refs(targets: &[Target], selection: &Selection) -> Result<Vec<Chosen>, PrepareError> {
    let everything = selection.everything();
    let mut wanted: Vec<(usize, &crate::target::InstalledRef)> = Vec::new();
    let mut found_apps: HashSet<&str> = HashSet::new();
    for (index, target) in targets.iter().enumerate() {
        match target.kind {
            TargetKind::Os if everything || selection.os => {
                wanted.extend(target.installed.iter().map(|r| (index, r)));
            }
            TargetKind::Flatpak => {
                let mut names: BTreeSet<String> = BTreeSet::new();
                for installed in &target.installed {
                    let Some(runtime_id) = flatpak_id(&installed.ref_name, "runtime/") else {
                        continue;
                    };
                    let named = selection
                        .runtimes
                        .iter()
                        .find(|name| *name == runtime_id || **name == installed.ref_name);
                    if let Some(name) = named {
                        found_apps.insert(name.as_str());
                        names.insert(installed.ref_name.clone());
                        let prefix = format!("{runtime_id}.");
                        for other in &target.installed {
                            if flatpak_id(&other.ref_name, "runtime/")
                                .is_some_and(|id| id.starts_with(&prefix))
                            {
                                names.insert(other.ref_name.clone());
                            }
                        }
                    }
                }
                for installed in &target.installed {
                    let Some(app_id) = flatpak_id(&installed.ref_name, "app/") else {
                        if everything {
                            names.insert(installed.ref_name.clone());
                        }
                        continue;
                    };
                    let named = selection
                        .apps
                        .iter()
                        .find(|app| *app == app_id || **app == installed.ref_name);
                    if let Some(app) = named {
                        found_apps.insert(app.as_str());
                    }
                    if !(everything || selection.all_apps || named.is_some()) {
                        continue;
                    }
                    names.insert(installed.ref_name.clone());
                    let mut prefixes = vec![format!("{app_id}.")];
                    if let Some(runtime) = &installed.runtime {
                        names.insert(runtime.clone());
                        if let Some(runtime_id) = flatpak_id(runtime, "runtime/") {
                            prefixes.push(format!("{runtime_id}."));
                        }
                    }
                    // Extensions and locales: runtimes named after the app or its runtime.
                    for other in &target.installed {
                        if let Some(id) = flatpak_id(&other.ref_name, "runtime/") {
                            if prefixes
                                .iter()
                                .any(|prefix| id.starts_with(prefix.as_str()))
                            {
                                names.insert(other.ref_name.clone());
                            }
                        }
                    }
                }
                wanted.extend(
                    target
                        .installed
                        .iter()
                        .filter(|r| names.contains(&r.ref_name))
                        .map(|r| (index, r)),
                );
            }
            _ => {}
        }
    }
    if let Some(missing) = selection
        .apps
        .iter()
        .chain(&selection.runtimes)
        .find(|name| !found_apps.contains(name.as_str()))
    {
        return Err(PrepareError::NotInstalled(missing.clone()));
    }

    let mut chosen: Vec<Chosen> = Vec::new();
    let mut keys: HashSet<(String, String)> = HashSet::new();
    let mut refused: BTreeMap<(usize, String), Vec<String>> = BTreeMap::new();
    let mut remotes: BTreeSet<(usize, String, String)> = BTreeSet::new();
    for (index, installed) in wanted {
        let remote = installed.remote.clone().unwrap_or_default();
        let Some(collection_id) = installed.collection_id.clone() else {
            refused
                .entry((index, remote))
                .or_default()
                .push(installed.ref_name.clone());
            continue;
        };
        remotes.insert((index, remote, collection_id.clone()));
        if keys.insert((collection_id.clone(), installed.ref_name.clone())) {
            chosen.push(Chosen {
                target: index,
                collection_id,
                ref_name: installed.ref_name.clone(),
                commit: installed.commit,
                subpaths: installed.subpaths.clone(),
                parts: None,
            });
        }
    }
    if let Some(((index, remote), refs)) = refused.into_iter().next() {
        let target = &targets[index];
        let fix = match target.kind {
            TargetKind::Flatpak => format!(
                "Set one with `flatpak remote-modify --collection-id=ID {remote}` (or \
                 DeploySideloadCollectionID in the remote's .flatpakrepo file)"
            ),
            _ => format!(
                "Set one with `ostree --repo={} config set --group='remote \"{remote}\"' \
                 collection-id ID`",
                target.repo.display()
            ),
        };
        let remote = if remote.is_empty() {
            "(none: deployed from a local branch)".to_owned()
        } else {
            remote
        };
        return Err(PrepareError::NoCollectionId {
            remote,
            refs: refs.join(", "),
            source_label: target.installation.clone(),
            fix,
        });
    }

    // AppStream and ostree-metadata of each remote carried, where the source has them.
    for (index, remote, collection_id) in remotes {
        let Ok(repo) = Repo::open(&targets[index].repo) else {
            continue;
        };
        for (location, commit) in repo.list_refs()? {
            let RefLocation::Remote {
                remote: ref_remote,
                name,
            } = &location
            else {
                continue;
            };
            let extra = name.starts_with("appstream2/")
                || name.starts_with("appstream/")
                || name == "ostree-metadata";
            if *ref_remote != remote || !extra {
                continue;
            }
            // A partial commit (flatpak pulls appstream whole, but be safe) is left behind.
            if repo.is_partial(&commit)? {
                continue;
            }
            if keys.insert((collection_id.clone(), name.clone())) {
                chosen.push(Chosen {
                    target: index,
                    collection_id: collection_id.clone(),
                    ref_name: name.clone(),
                    commit,
                    subpaths: Vec::new(),
                    parts: None,
                });
            }
        }
    }
    Ok(chosen)
}

/// `org.example.App` of `app/org.example.App/x86_64/stable` (with `prefix` `app/`).
fn flatpak_id<'r>(ref_name: &'r str, prefix: &str) -> Option<&'r str> {
    let parsed = crate::object::FlatpakRef::parse(ref_name)?;
    (parsed.is_app == (prefix == "app/")).then_some(parsed.id)
}

/// The parts of `item`'s tree to carry (None: all of it), or why it is left behind.
/// `partial`: the source holds only part of the commit.
fn carried_parts(
    item: &Chosen,
    partial: bool,
    selection: &Selection,
) -> Result<Option<Subdirs>, String> {
    let installed = if partial {
        if item.subpaths.is_empty() {
            return Err("its commit is marked partial, with no subpaths recorded".to_owned());
        }
        Some(item.subpaths.clone())
    } else {
        None
    };
    let is_locale = crate::object::FlatpakRef::is_locale_extension(&item.ref_name);
    let subpaths = match installed {
        Some(have) if is_locale && !selection.locales.is_empty() => {
            let narrowed: Vec<String> = have
                .into_iter()
                .filter(|subpath| {
                    let language = subpath.trim_matches('/');
                    selection.locales.iter().any(|wanted| wanted == language)
                })
                .collect();
            if narrowed.is_empty() {
                return Err(format!(
                    "none of the languages {} is installed",
                    selection.locales.join(", ")
                ));
            }
            Some(narrowed)
        }
        None if is_locale && !selection.locales.is_empty() => Some(
            selection
                .locales
                .iter()
                .map(|language| format!("/{language}"))
                .collect(),
        ),
        other => other,
    };
    match subpaths {
        Some(subpaths) => Subdirs::for_flatpak(&subpaths).map_err(|error| error.to_string()),
        None => Ok(None),
    }
}

/// Adds the objects of `commit`'s closure that `drive` lacks, or of `parts` of it. A commit
/// the drive holds, not marked partial, is complete there and not walked.
fn walk_commit(
    source: &Repo,
    source_index: usize,
    commit: &Checksum,
    parts: Option<&Subdirs>,
    drive: Option<&Repo>,
    walk: &mut Walk,
) -> Result<(), PrepareError> {
    let Walk {
        seen,
        on_the_way,
        objects,
        commits,
    } = walk;
    let reach = |path: &str| parts.map_or(Reach::Whole, |parts| parts.reach(path));
    let commit_id = ObjectId::new(*commit, ObjectKind::Commit);
    if !seen.insert(commit_id) {
        return Ok(());
    }
    let meta_id = ObjectId::new(*commit, ObjectKind::CommitMeta);
    let source_meta = source.read_commitmeta(commit)?;
    let planned = |object, size| Planned {
        object,
        source: source_index,
        size,
    };
    let has = |object: ObjectId| -> Result<bool, PrepareError> {
        Ok(match drive {
            Some(drive) => drive.has_object(object)?,
            None => false,
        })
    };
    // Detached metadata as the source has it now, byte for byte.
    if let Some(bytes) = &source_meta {
        let same = match drive {
            Some(drive) => drive.read_commitmeta(commit)?.as_ref() == Some(bytes),
            None => false,
        };
        if !same {
            commits.push(planned(meta_id, bytes.len() as u64));
        }
    }
    let parsed = source.read_commit(commit)?;
    // A commit carried as a delta (`--delta-from`) is on the drive without its trees.
    let complete_on_drive = match drive {
        Some(drive) => {
            drive.has_object(commit_id)?
                && !drive.is_partial(commit)?
                && drive.has_object(ObjectId::new(parsed.root_tree, ObjectKind::DirTree))?
        }
        None => false,
    };
    if complete_on_drive {
        return Ok(());
    }
    let archived_sizes: HashMap<Checksum, u64> = parsed
        .sizes()
        .ok()
        .flatten()
        .unwrap_or_default()
        .into_iter()
        .filter(|size| size.kind == ObjectKind::File)
        .map(|size| (size.checksum, size.archived))
        .collect();
    let mut pending_trees: Vec<(Checksum, Checksum, String)> =
        vec![(parsed.root_tree, parsed.root_meta, "/".to_owned())];
    let mut files: Vec<ObjectId> = Vec::new();
    while let Some((tree, meta, path)) = pending_trees.pop() {
        let meta_id = ObjectId::new(meta, ObjectKind::DirMeta);
        if seen.insert(meta_id) && !has(meta_id)? {
            let size = source.metadata_size(meta_id)?.unwrap_or(0);
            objects.push(planned(meta_id, size));
        }
        let tree_id = ObjectId::new(tree, ObjectKind::DirTree);
        // A tree on the way to a part is walked for that part alone; met again as a whole,
        // it is walked again.
        let along = reach(&path) == Reach::Along;
        let plan_tree = if along {
            !seen.contains(&tree_id) && on_the_way.insert(tree_id)
        } else {
            if !seen.insert(tree_id) {
                continue;
            }
            !on_the_way.contains(&tree_id)
        };
        let bytes = source.read_metadata(ObjectKind::DirTree, &tree)?;
        if metadata_checksum(&bytes) != tree {
            return Err(PrepareError::SourceCorrupt {
                repo: source.path().to_path_buf(),
                object: tree_id,
            });
        }
        let parsed_tree = DirTree::parse(&bytes).map_err(|source| PrepareError::Format {
            object: tree_id,
            source,
        })?;
        if plan_tree && !has(tree_id)? {
            objects.push(planned(tree_id, bytes.len() as u64));
        }
        // Paths matter only when some parts are carried.
        let child_path = |name: &str| match parts {
            Some(_) => crate::object::child_path(&path, name),
            None => String::new(),
        };
        for file in &parsed_tree.files {
            if along && reach(&child_path(&file.name)) != Reach::Whole {
                continue;
            }
            let file_id = ObjectId::new(file.checksum, ObjectKind::File);
            if seen.insert(file_id) {
                files.push(file_id);
            }
        }
        for dir in &parsed_tree.dirs {
            let child = child_path(&dir.name);
            if along && reach(&child) == Reach::Outside {
                continue;
            }
            pending_trees.push((dir.tree, dir.meta, child));
        }
    }
    // Looking up every content object is a cold metadata read each: done by many workers.
    let estimated = estimate_files(source, drive, &files, &archived_sizes)?;
    objects.extend(
        files
            .iter()
            .zip(estimated)
            .filter_map(|(file_id, size)| size.map(|size| planned(*file_id, size))),
    );
    let size = source.metadata_size(commit_id)?.unwrap_or_default();
    commits.push(planned(commit_id, size));
    Ok(())
}

/// For each of `files`, None when `drive` has it already, else the bytes it will take there
/// ([`content_estimate`]); in order, looked up by [`WORKERS`] threads.
fn estimate_files(
    source: &Repo,
    drive: Option<&Repo>,
    files: &[ObjectId],
    archived_sizes: &HashMap<Checksum, u64>,
) -> Result<Vec<Option<u64>>, PrepareError> {
    let estimate = |file_id: &ObjectId| -> Result<Option<u64>, PrepareError> {
        if let Some(drive) = drive {
            if drive.has_object(*file_id)? {
                return Ok(None);
            }
        }
        let archived = archived_sizes.get(&file_id.checksum);
        content_estimate(source, *file_id, archived).map(Some)
    };
    let sizes = crate::parallel::map_chunked(files, WORKERS, 64, estimate).ok_or_else(|| {
        PrepareError::io(
            "read",
            source.path().to_path_buf(),
            io::Error::other("a worker looking up objects stopped"),
        )
    })?;
    sizes.into_iter().collect()
}

/// The bytes a content object takes in archive form: its file in an archive source, the
/// commit's `ostree.sizes` entry, else its size with deflate's worst case added.
fn content_estimate(
    source: &Repo,
    object: ObjectId,
    archived: Option<&u64>,
) -> Result<u64, PrepareError> {
    let path = source.object_path(object);
    let stat = match std::fs::symlink_metadata(&path) {
        Ok(stat) => stat,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Err(RepoError::Missing {
                repo: source.path().to_path_buf(),
                object,
            }
            .into())
        }
        Err(error) => return Err(PrepareError::io("read", path, error)),
    };
    if source.mode() == RepoMode::Archive {
        return Ok(stat.len());
    }
    if let Some(archived) = archived {
        return Ok(*archived);
    }
    let size = stat.len();
    Ok(ARCHIVE_HEADER_ESTIMATE + size + size / 16_384 * 5 + 5)
}

struct DriveSpace {
    /// None when the filesystem does not report it (fusefat reports no blocks at all).
    free: Option<u64>,
    block_size: u64,
    fat32: bool,
}

fn drive_space(drive: &Path) -> Result<DriveSpace, PrepareError> {
    let stat = rustix::fs::statvfs(drive)
        .map_err(|e| PrepareError::io("measure free space of", drive.to_path_buf(), e.into()))?;
    let fs_type = rustix::fs::statfs(drive)
        .map(|s| s.f_type as u64)
        .unwrap_or(0);
    // FUSE filesystems all share one statfs type; their mount entry names them.
    let mounted_type = std::fs::canonicalize(drive).ok().and_then(|path| {
        let mut text = String::new();
        File::open("/proc/self/mountinfo")
            .and_then(|file| file.take(MAX_MOUNTINFO).read_to_string(&mut text))
            .ok()?;
        mount_type_of(&text, &path)
    });
    let fat_by_name = mounted_type
        .as_deref()
        .is_some_and(|name| matches!(name, "vfat" | "msdos" | "fuse.fusefat"));
    Ok(DriveSpace {
        free: (stat.f_blocks > 0).then(|| stat.f_bavail.saturating_mul(stat.f_frsize)),
        block_size: stat.f_bsize,
        fat32: fs_type == MSDOS_SUPER_MAGIC || fat_by_name,
    })
}

/// The largest `/proc/self/mountinfo` read.
const MAX_MOUNTINFO: u64 = 4 << 20;

/// The filesystem type (`vfat`, `fuse.fusefat`, …) of the mount holding `path`, from the
/// text of `/proc/self/mountinfo`: the entry with the longest mount point above `path`, the
/// last one when mounts are stacked.
fn mount_type_of(mountinfo: &str, path: &Path) -> Option<String> {
    let mut best: Option<(usize, String)> = None;
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let Some(mount_point) = left.split(' ').nth(4) else {
            continue;
        };
        let Some(fs_type) = right.split(' ').next() else {
            continue;
        };
        let mount_point = unescape_mount_path(mount_point);
        if !path.starts_with(&mount_point) {
            continue;
        }
        let depth = Path::new(&mount_point).components().count();
        if best
            .as_ref()
            .is_none_or(|(best_depth, _)| depth >= *best_depth)
        {
            best = Some((depth, fs_type.to_owned()));
        }
    }
    best.map(|(_, fs_type)| fs_type)
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
pub(crate) fn unescape_mount_path(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = bytes.get(index + 1..index + 4).and_then(|digits| {
            let digits = std::str::from_utf8(digits).ok()?;
            u8::from_str_radix(digits, 8).ok()
        });
        match (bytes[index], escaped) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                index += 4;
            }
            (byte, _) => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Counts what is written and reports it now and then.
struct Progress<'r> {
    reporter: &'r dyn Reporter,
    objects_total: u64,
    bytes_total: u64,
    objects: AtomicU64,
    bytes: AtomicU64,
    started: Instant,
    last: Mutex<Instant>,
    label: String,
}

impl<'r> Progress<'r> {
    fn new(reporter: &'r dyn Reporter, objects_total: u64, bytes_total: u64, drive: &Path) -> Self {
        let now = Instant::now();
        Self {
            reporter,
            objects_total,
            bytes_total,
            objects: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            started: now,
            last: Mutex::new(now),
            label: drive.display().to_string(),
        }
    }

    fn add(&self, bytes: u64) {
        self.objects.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.report(false);
    }

    /// Bytes of a file that is not an object (a delta part or superblock).
    fn add_bytes(&self, bytes: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.report(false);
    }

    fn report(&self, force: bool) {
        {
            let Ok(mut last) = self.last.try_lock() else {
                if !force {
                    return;
                }
                return self.emit();
            };
            if !force && last.elapsed() < PROGRESS_INTERVAL {
                return;
            }
            *last = Instant::now();
        }
        self.emit();
    }

    fn emit(&self) {
        let bytes_done = self.bytes.load(Ordering::Relaxed);
        let elapsed = self.started.elapsed().as_secs_f64();
        let rate = if elapsed > 0.0 {
            (bytes_done as f64 / elapsed) as u64
        } else {
            0
        };
        let eta_seconds =
            (rate > 0).then(|| self.bytes_total.saturating_sub(bytes_done) / rate.max(1));
        self.reporter.on_event(Event::Progress {
            update: None,
            objects_done: self.objects.load(Ordering::Relaxed),
            objects_total: self.objects_total,
            bytes_done,
            bytes_total: self.bytes_total.max(bytes_done),
            rate,
            eta_seconds,
            source: Some(self.label.clone()),
            sources: Vec::new(),
        });
    }
}

/// Runs `work` on every item on `threads` workers, each with its own state from `init`; the
/// first error (or a cancellation) stops them all.
fn for_each_parallel<T: Sync, S>(
    items: &[T],
    threads: usize,
    cancel: &CancelToken,
    init: impl Fn() -> S + Sync,
    work: impl Fn(&mut S, &T) -> Result<(), PrepareError> + Sync,
) -> Result<(), PrepareError> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<PrepareError>> = Mutex::new(None);
    let worker = || {
        let mut state = init();
        loop {
            if failed.load(Ordering::Relaxed) {
                return;
            }
            let index = next.fetch_add(1, Ordering::Relaxed);
            let Some(item) = items.get(index) else {
                return;
            };
            let result = if cancel.is_cancelled() {
                Err(PrepareError::Cancelled)
            } else {
                work(&mut state, item)
            };
            if let Err(error) = result {
                failed.store(true, Ordering::Relaxed);
                if let Ok(mut slot) = first_error.lock() {
                    slot.get_or_insert(error);
                }
                return;
            }
        }
    };
    let threads = threads.clamp(1, items.len().max(1));
    std::thread::scope(|scope| {
        for _ in 1..threads {
            scope.spawn(worker);
        }
        worker();
    });
    match first_error.into_inner() {
        Ok(Some(error)) => Err(error),
        Ok(None) => Ok(()),
        Err(poisoned) => poisoned.into_inner().map_or(Ok(()), Err),
    }
}

/// Bytes of objects written before they are synced and read back (while the next batch is
/// written).
const CHECK_BATCH_BYTES: u64 = 48 << 20;

/// `objects` cut into runs of about `bytes` each, in order.
fn batches(objects: &[Planned], bytes: u64) -> Vec<&[Planned]> {
    let mut runs = Vec::new();
    let mut start = 0;
    let mut size = 0u64;
    for (index, planned) in objects.iter().enumerate() {
        size = size.saturating_add(planned.size);
        if size >= bytes {
            runs.push(&objects[start..=index]);
            start = index + 1;
            size = 0;
        }
    }
    if start < objects.len() {
        runs.push(&objects[start..]);
    }
    runs
}

/// The objects a read-back thread found bad, or its error.
fn joined(
    thread: std::thread::ScopedJoinHandle<'_, Result<Vec<ObjectId>, PrepareError>>,
    drive: &Path,
) -> Result<Vec<ObjectId>, PrepareError> {
    thread.join().unwrap_or_else(|_| {
        Err(PrepareError::io(
            "read back",
            drive.to_path_buf(),
            io::Error::other("a read-back worker stopped"),
        ))
    })
}

/// What a writing worker keeps between objects. Allocated per object, the buffers (at the
/// allocator's mmap threshold) and the compressor's state cost more system time in page
/// faults and unmapping than the writes themselves.
struct Scratch {
    /// Bytes for the drive, written in large pieces.
    output: Vec<u8>,
    deflater: Deflater,
}

/// Buffers and compressor for turning content into raw deflate.
struct Deflater {
    /// Content read from the source, a chunk at a time.
    input: Vec<u8>,
    /// One stored block with its header.
    block: Vec<u8>,
    /// The compressor for content that compresses; reset between objects.
    encoder: DeflateEncoder<Vec<u8>>,
}

impl Scratch {
    fn new() -> Self {
        Self {
            output: Vec::with_capacity(2 * CHUNK),
            deflater: Deflater {
                input: vec![0; CHUNK],
                block: Vec::with_capacity(stored::HEADER + stored::MAX_BLOCK),
                encoder: DeflateEncoder::new(
                    Vec::with_capacity(CHUNK),
                    Compression::new(ZLIB_LEVEL),
                ),
            },
        }
    }
}

/// Writes `objects` on `threads` workers, adding each object written to `written`.
fn write_all<'s>(
    writer: &DriveWriter,
    objects: &[Planned],
    source_of: &(dyn Fn(usize) -> &'s Repo + Sync),
    progress: &Progress<'_>,
    threads: usize,
    cancel: &CancelToken,
    written: &Mutex<Vec<Planned>>,
) -> Result<(), PrepareError> {
    for_each_parallel(
        objects,
        threads,
        cancel,
        Scratch::new,
        |scratch, planned| {
            let source = source_of(planned.source);
            if let Some(bytes) = write_object(writer, source, planned.object, scratch)? {
                progress.add(bytes);
                if let Ok(mut list) = written.lock() {
                    list.push(*planned);
                }
            }
            Ok(())
        },
    )
}

/// Reads `objects` back from `drive` past the page cache and hashes them again. Returns
/// those that no longer match their names or cannot be read.
pub fn verify_objects(
    drive: &Repo,
    objects: &[ObjectId],
    threads: usize,
    cancel: &CancelToken,
) -> Result<Vec<ObjectId>, PrepareError> {
    let bad: Mutex<Vec<ObjectId>> = Mutex::new(Vec::new());
    let buffer = || vec![0u8; CHUNK];
    for_each_parallel(objects, threads, cancel, buffer, |buffer, object| {
        if !read_back_matches(drive, *object, buffer) {
            if let Ok(mut list) = bad.lock() {
                list.push(*object);
            }
        }
        Ok(())
    })?;
    let mut bad = bad.into_inner().unwrap_or_else(|p| p.into_inner());
    bad.sort_by_key(|object| object.checksum);
    Ok(bad)
}

/// Whether an object on the drive, read from the device rather than the page cache, still
/// hashes to its name (detached metadata, which has no name of its own, must parse).
fn read_back_matches(drive: &Repo, object: ObjectId, buffer: &mut [u8]) -> bool {
    match object.kind {
        ObjectKind::File => {
            // Pages of a synced file are clean, so they can be dropped and read again from
            // the device.
            let Ok((header, mut content)) = drive.open_content_from_device(&object.checksum) else {
                return false;
            };
            let Ok(mut hasher) = ContentHasher::new(&header) else {
                return false;
            };
            loop {
                match content.read(buffer) {
                    Ok(0) => break,
                    Ok(read) => hasher.update(&buffer[..read]),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => return false,
                }
            }
            hasher.finish() == object.checksum
        }
        kind => {
            if let Ok(file) = File::open(drive.object_path(object)) {
                let _ = rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed);
            }
            match kind {
                ObjectKind::CommitMeta => drive
                    .read_metadata(ObjectKind::CommitMeta, &object.checksum)
                    .is_ok_and(|bytes| Metadata::parse(&bytes).is_ok()),
                kind => drive
                    .read_metadata(kind, &object.checksum)
                    .is_ok_and(|bytes| metadata_checksum(&bytes) == object.checksum),
            }
        }
    }
}

/// A reader that hashes what passes through it.
struct Hashing<'h, R> {
    inner: R,
    hasher: &'h mut ContentHasher,
}

impl<R: Read> Read for Hashing<'_, R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buffer)?;
        self.hasher.update(&buffer[..read]);
        Ok(read)
    }
}

/// Collects bytes for `file` and writes them in pieces of at least [`CHUNK`], so a small
/// object is one `write`.
struct Batched<'a> {
    file: &'a mut File,
    pending: &'a mut Vec<u8>,
    /// Bytes written to `file` so far.
    written: u64,
}

impl Write for Batched<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(bytes);
        if self.pending.len() >= CHUNK {
            self.flush()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.write_all(self.pending)?;
        self.written = self.written.saturating_add(self.pending.len() as u64);
        self.pending.clear();
        Ok(())
    }
}

/// Reads into `buffer` until it is full or `content` ends; returns the bytes read.
fn read_up_to(content: &mut impl Read, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match content.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Writes a regular file's `size` content bytes from `content` as raw deflate: stored
/// blocks when its first chunk looks incompressible, the fast zlib level otherwise.
fn deflate_content(
    content: &mut impl Read,
    size: u64,
    out: &mut Batched<'_>,
    scratch: &mut Deflater,
) -> io::Result<()> {
    let first = read_up_to(content, &mut scratch.input)?;
    if looks_incompressible(&scratch.input[..first]) {
        let rest = io::Cursor::new(&scratch.input[..first]).chain(content);
        return stored::write_framed_with(rest, size, out, &mut scratch.block);
    }
    let mut filled = first;
    loop {
        scratch.encoder.write_all(&scratch.input[..filled])?;
        out.write_all(scratch.encoder.get_ref())?;
        scratch.encoder.get_mut().clear();
        filled = read_up_to(content, &mut scratch.input)?;
        if filled == 0 {
            break;
        }
    }
    scratch.encoder.try_finish()?;
    out.write_all(scratch.encoder.get_ref())?;
    // Ready for the next object, keeping the compressor's state and buffer allocated.
    let mut output = std::mem::take(scratch.encoder.get_mut());
    output.clear();
    scratch.encoder.reset(output)?;
    Ok(())
}

/// Copies one object from `source` into the drive. Returns the bytes written, or None when
/// it was there already.
fn write_object(
    writer: &DriveWriter,
    source: &Repo,
    object: ObjectId,
    scratch: &mut Scratch,
) -> Result<Option<u64>, PrepareError> {
    let write_error = |path: PathBuf| move |e: io::Error| PrepareError::io("write", path, e);
    match object.kind {
        ObjectKind::File if source.mode() == RepoMode::Archive => {
            let mut stored = source.open_archived_content(&object.checksum)?;
            writer.write_object(object, |file| {
                io::copy(&mut stored.file, file).map_err(write_error(source.object_path(object)))
            })
        }
        ObjectKind::File => {
            let (header, content) = source.open_content(&object.checksum)?;
            let format = |source| PrepareError::Format { object, source };
            let header_bytes = header.archive_header_bytes().map_err(format)?;
            let mut hasher = ContentHasher::new(&header).map_err(format)?;
            writer.write_object(object, |file| {
                let path = source.object_path(object);
                let mut content = Hashing {
                    inner: content,
                    hasher: &mut hasher,
                };
                let mut out = Batched {
                    file,
                    pending: &mut scratch.output,
                    written: 0,
                };
                out.pending.clear();
                out.write_all(&header_bytes)
                    .map_err(write_error(path.clone()))?;
                if header.is_regular() {
                    // Reading the source and writing the drive fail alike here.
                    deflate_content(&mut content, header.size, &mut out, &mut scratch.deflater)
                        .map_err(|e| PrepareError::io("copy", path.clone(), e))?;
                }
                out.flush().map_err(write_error(path.clone()))?;
                if hasher.finish() != object.checksum {
                    return Err(PrepareError::SourceCorrupt {
                        repo: source.path().to_path_buf(),
                        object,
                    });
                }
                Ok(out.written)
            })
        }
        kind => {
            let bytes = source.read_metadata(kind, &object.checksum)?;
            if kind != ObjectKind::CommitMeta && metadata_checksum(&bytes) != object.checksum {
                return Err(PrepareError::SourceCorrupt {
                    repo: source.path().to_path_buf(),
                    object,
                });
            }
            if kind == ObjectKind::CommitMeta {
                // Replaced when the publisher's signatures changed; the only object that may.
                let relative = format!(
                    "objects/{}/{}.commitmeta",
                    &object.checksum.to_hex()[..2],
                    &object.checksum.to_hex()[2..]
                );
                writer.write_file(&relative, &bytes)?;
                return Ok(Some(bytes.len() as u64));
            }
            writer.write_object(object, |file| {
                file.write_all(&bytes)
                    .map(|()| bytes.len() as u64)
                    .map_err(write_error(source.object_path(object)))
            })
        }
    }
}

/// Writes an unsigned summary listing every mirrored ref whose commit the drive holds, as
/// libostree writes it for `create-usb`; a stale `summary.sig` is removed. Returns false when
/// the summary already listed exactly these refs.
fn write_summary(drive: &Repo, writer: &DriveWriter) -> Result<bool, PrepareError> {
    let mut collections: BTreeMap<String, Vec<SummaryEntry>> = BTreeMap::new();
    let mut listed: BTreeSet<(String, String, Checksum)> = BTreeSet::new();
    for (location, commit) in drive.list_refs()? {
        let RefLocation::Mirror {
            collection_id,
            name,
        } = location
        else {
            continue;
        };
        let commit_id = ObjectId::new(commit, ObjectKind::Commit);
        let Some(size) = drive.metadata_size(commit_id)? else {
            continue;
        };
        let parsed = drive.read_commit(&commit)?;
        let mut metadata = Metadata::new();
        let format = |source| PrepareError::Format {
            object: commit_id,
            source,
        };
        metadata
            .insert(
                COMMIT_TIMESTAMP_KEY,
                MetadataValue::u64_big_endian(parsed.timestamp),
            )
            .map_err(format)?;
        if let Some(version) = parsed.version() {
            metadata
                .insert_str(COMMIT_VERSION_KEY, version)
                .map_err(format)?;
        }
        listed.insert((collection_id.clone(), name.clone(), commit));
        collections
            .entry(collection_id)
            .or_default()
            .push((name, commit, size, metadata));
    }
    let deltas = crate::delta::write::summary_value(drive)?;
    let previous = drive
        .read_summary()?
        .and_then(|bytes| Summary::parse(&bytes).ok());
    let previous_refs: Option<BTreeSet<(String, String, Checksum)>> =
        previous.as_ref().map(|summary| {
            summary
                .collection_refs()
                .filter_map(|(id, r)| id.map(|id| (id.to_owned(), r.name.clone(), r.commit)))
                .collect()
        });
    let previous_deltas = previous.as_ref().and_then(|summary| {
        summary
            .metadata
            .get(crate::delta::SUMMARY_STATIC_DELTAS_KEY)
    });
    if previous_refs.as_ref() == Some(&listed) && previous_deltas == deltas.as_ref() {
        return Ok(false);
    }
    let summary_error = PrepareError::Summary;
    let mut lists: Vec<(String, Vec<SummaryEntry>)> = collections.into_iter().collect();
    for (_, refs) in &mut lists {
        refs.sort_by(|a, b| a.0.cmp(&b.0));
    }
    let mut metadata = Metadata::new();
    metadata
        .insert(
            COLLECTION_MAP_KEY,
            collection_map_value(&lists).map_err(summary_error)?,
        )
        .map_err(summary_error)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    metadata
        .insert(LAST_MODIFIED_KEY, MetadataValue::u64_big_endian(now))
        .map_err(summary_error)?;
    metadata
        .insert_str("ostree.summary.mode", "archive-z2")
        .map_err(summary_error)?;
    if let Some(deltas) = deltas {
        metadata
            .insert(crate::delta::SUMMARY_STATIC_DELTAS_KEY, deltas)
            .map_err(summary_error)?;
    }
    metadata
        .insert(
            "ostree.summary.tombstone-commits",
            MetadataValue::bool(false),
        )
        .map_err(summary_error)?;
    let bytes = build_summary(&[], &metadata).map_err(summary_error)?;
    writer.remove_file("summary.sig")?;
    writer.write_file("summary", &bytes)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Raw deflate of `content` as one worker writes it, with `scratch` kept from before.
    fn deflated(content: &[u8], scratch: &mut Scratch) -> Vec<u8> {
        let path = std::env::temp_dir().join(format!("ferry-deflate-{}", rand::random::<u64>()));
        let mut file = File::create(&path).expect("create");
        let mut out = Batched {
            file: &mut file,
            pending: &mut scratch.output,
            written: 0,
        };
        deflate_content(
            &mut &content[..],
            content.len() as u64,
            &mut out,
            &mut scratch.deflater,
        )
        .expect("deflate");
        out.flush().expect("flush");
        let written = out.written;
        let bytes = std::fs::read(&path).expect("read");
        let _ = std::fs::remove_file(&path);
        assert_eq!(written, bytes.len() as u64, "bytes counted as written");
        bytes
    }

    #[test]
    fn one_worker_deflates_object_after_object_each_on_its_own() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut random = |len: usize| -> Vec<u8> {
            (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state >> 32) as u8
                })
                .collect()
        };
        let text = |len: usize| -> Vec<u8> {
            b"an object that compresses well; "
                .iter()
                .copied()
                .cycle()
                .take(len)
                .collect()
        };
        let contents = [
            text(333),
            random(3 * CHUNK + 17),
            text(0),
            text(2 * CHUNK + 5),
            random(700),
            text(40),
        ];
        let mut scratch = Scratch::new();
        for content in &contents {
            let deflated = deflated(content, &mut scratch);
            let mut inflated = Vec::new();
            flate2::read::DeflateDecoder::new(&deflated[..])
                .read_to_end(&mut inflated)
                .expect("inflate");
            assert_eq!(inflated.len(), content.len());
            assert!(
                inflated == *content,
                "{} bytes came back different",
                content.len()
            );
            if looks_incompressible(&content[..content.len().min(CHUNK)]) {
                // Stored blocks: the content and 5 bytes per block.
                assert_eq!(
                    deflated.len() as u64,
                    stored::framed_len(content.len() as u64)
                );
            } else if content.len() > 1000 {
                assert!(deflated.len() < content.len() / 4, "text was compressed");
            }
        }
    }

    #[test]
    fn objects_are_cut_into_batches_of_about_the_size_in_order() {
        let planned = |size: u64, n: u8| Planned {
            object: ObjectId::new(Checksum::from_array([n; 32]), ObjectKind::File),
            source: 0,
            size,
        };
        let objects: Vec<Planned> = [10, 30, 5, 60, 1, 1]
            .iter()
            .zip(0u8..)
            .map(|(s, n)| planned(*s, n))
            .collect();
        let runs: Vec<Vec<u64>> = batches(&objects, 40)
            .iter()
            .map(|run| run.iter().map(|p| p.size).collect())
            .collect();
        assert_eq!(runs, vec![vec![10, 30], vec![5, 60], vec![1, 1]]);
        assert!(batches(&[], 40).is_empty());
    }

    #[test]
    fn locale_extensions_go_with_the_languages_installed_or_asked_for() {
        let item = |ref_name: &str, subpaths: &[&str]| Chosen {
            target: 0,
            collection_id: "org.example.Apps".to_owned(),
            ref_name: ref_name.to_owned(),
            commit: Checksum::from_array([7; 32]),
            subpaths: subpaths.iter().map(|s| (*s).to_owned()).collect(),
            parts: None,
        };
        let asking = |languages: &[&str]| Selection {
            locales: languages.iter().map(|s| (*s).to_owned()).collect(),
            ..Selection::default()
        };
        let locale = "runtime/org.example.App.Locale/x86_64/stable";
        let subpaths = |parts: Option<Subdirs>| parts.map(|p| p.flatpak_subpaths());
        let none = Selection::default();

        // Whole: all of it, unless languages are asked for.
        assert_eq!(carried_parts(&item(locale, &[]), false, &none), Ok(None));
        let french = carried_parts(&item(locale, &[]), false, &asking(&["fr"])).map(subpaths);
        assert_eq!(french, Ok(Some(vec!["/fr".to_owned()])));
        // In part: the languages installed, narrowed by those asked for.
        let installed = item(locale, &["/de", "/fr"]);
        let both = carried_parts(&installed, true, &none).map(subpaths);
        assert_eq!(both, Ok(Some(vec!["/de".to_owned(), "/fr".to_owned()])));
        let german = carried_parts(&installed, true, &asking(&["de", "it"])).map(subpaths);
        assert_eq!(german, Ok(Some(vec!["/de".to_owned()])));
        assert!(carried_parts(&installed, true, &asking(&["it"])).is_err());
        // Marked partial with no subpaths: an interrupted pull, left behind.
        assert!(carried_parts(&item(locale, &[]), true, &none).is_err());
        // Languages leave other refs whole.
        let app = item("app/org.example.App/x86_64/stable", &[]);
        assert_eq!(carried_parts(&app, false, &asking(&["fr"])), Ok(None));
    }

    #[test]
    fn flatpak_ids_come_from_the_second_component() {
        assert_eq!(
            flatpak_id("app/org.example.App/x86_64/stable", "app/"),
            Some("org.example.App")
        );
        assert_eq!(
            flatpak_id("runtime/org.example.App/x86_64/stable", "app/"),
            None
        );
    }

    #[test]
    fn read_back_reports_objects_the_drive_garbled_or_cut_short() {
        use crate::object::FileHeader;
        let dir = tempfile::tempdir().expect("temp dir");
        let repo = Repo::init(&dir.path().join("repo"), RepoMode::Archive, None).expect("init");
        let mut objects = Vec::new();
        for text in ["first file\n", "second file, a little longer\n"] {
            let header = FileHeader::regular(0, 0, 0o644, text.len() as u64);
            let checksum = ContentHasher::checksum(&header, text.as_bytes()).expect("hash");
            repo.write_content(&checksum, &header, text.as_bytes())
                .expect("write");
            objects.push(ObjectId::new(checksum, ObjectKind::File));
        }
        let cancel = CancelToken::new();
        let bad = verify_objects(&repo, &objects, 2, &cancel).expect("verify");
        assert!(bad.is_empty(), "{bad:?}");

        // The first object reads back as the second one's bytes; the second loses its end.
        let second = std::fs::read(repo.object_path(objects[1])).expect("read");
        std::fs::write(repo.object_path(objects[0]), &second).expect("write");
        std::fs::write(repo.object_path(objects[1]), &second[..second.len() - 4]).expect("cut");
        let mut expected = objects.clone();
        expected.sort_by_key(|object| object.checksum);
        let bad = verify_objects(&repo, &objects, 2, &cancel).expect("verify");
        assert_eq!(bad, expected);
    }

    #[test]
    fn the_mount_holding_a_drive_names_its_filesystem() {
        let mountinfo = "\
22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw
51 22 0:41 / /media/my\\040stick rw,nosuid - fuse.fusefat fusefat rw,user_id=0
52 22 0:42 / /media/other rw - vfat /dev/sdb1 rw
";
        let of = |path: &str| mount_type_of(mountinfo, Path::new(path));
        assert_eq!(
            of("/media/my stick/.ostree").as_deref(),
            Some("fuse.fusefat")
        );
        assert_eq!(of("/media/other").as_deref(), Some("vfat"));
        assert_eq!(of("/media/otherwise").as_deref(), Some("ext4"));
        assert_eq!(of("/home/user").as_deref(), Some("ext4"));
    }

    #[test]
    fn sizes_read_as_people_read_them() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1_500_000), "1.5 MB");
    }
}
