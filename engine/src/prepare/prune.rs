//! Removing what no ref on the drive needs any more: deltas to commits no ref points at,
//! and objects no ref reaches.

use std::collections::HashSet;

use super::drive::DriveWriter;
use super::PrepareError;
use crate::cancel::CancelToken;
use crate::object::{Checksum, DirTree, ObjectId, ObjectKind};
use crate::repo::{Repo, RepoMode};

/// Removes the static deltas under `deltas/` to commits no ref on the drive points at, and
/// the `delta-indexes/` entries of those commits: a pull from the drive only ever wants a
/// ref's commit. A delta's `from` commit is not looked at; machines hold it, not the drive.
/// Returns how many deltas were removed.
pub(super) fn remove_stale_deltas(drive: &Repo, writer: &DriveWriter) -> Result<u64, PrepareError> {
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
pub(super) fn remove_unreachable(
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
