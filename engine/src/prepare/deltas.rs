//! OS refs carried as static deltas from a commit machines already have.

use std::collections::HashSet;

use super::copy::Copying;
use super::plan::{walk_commit, Chosen, Planned, Walk};
use super::{DeltaFrom, PrepareError};
use crate::event::{human_bytes, Event, MessageLevel, Reporter};
use crate::object::{Checksum, ObjectId, ObjectKind};
use crate::repo::Repo;
use crate::target::Target;

/// A delta to write for one OS ref.
pub(super) struct DeltaJob {
    pub(super) source: usize,
    pub(super) from: Checksum,
    pub(super) to: Checksum,
}

/// The commit the delta of OS ref `item` starts from, when `from` names one the source
/// holds complete; otherwise the ref is carried as objects, said so.
pub(super) fn delta_start(
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
pub(super) fn plan_delta(
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

/// Writes `job`'s delta, part by part, then the objects it lists as
/// fallbacks.
pub(super) fn write_delta(copying: &Copying<'_>, job: &DeltaJob) -> Result<(), PrepareError> {
    let Copying {
        writer,
        progress,
        cancel,
        ..
    } = copying;
    let source = copying.sources.get(job.source);
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
            source: job.source,
            size: 0,
        })
        .collect();
    copying.write_all(&fallbacks, 1)
}
