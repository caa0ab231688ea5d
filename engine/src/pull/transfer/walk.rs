//! Walking the commit: each dirtree fetched adds its files and subtrees as new work.

use super::{Job, NewWork, Run, MAX_PATH_LENGTH};
use crate::object::{child_path, Checksum, Commit, DirTree, ObjectId, ObjectKind, Reach};
use crate::pull::PullError;
use crate::repo::{RepoError, RepoMode};

impl Run<'_, '_, '_> {
    /// Where `path` stands against the parts pulled: everything is whole in a full pull.
    pub(super) fn reach(&self, path: &str) -> Reach {
        match self.transfer.parts {
            Some(parts) => parts.reach(path),
            None => Reach::Whole,
        }
    }

    /// Puts the root's dirmeta and dirtree on the board.
    pub(super) fn start(&self, commit: &Commit) -> Result<(), PullError> {
        let mut work = NewWork::default();
        self.add_meta(&mut work, commit.root_meta, "/")?;
        self.add_tree(&mut work, commit.root_tree, "/")?;
        self.post(work);
        Ok(())
    }

    /// Whether the object is met for the first time in this closure: each is looked at once,
    /// though the same subtree or file may appear under many names.
    pub(super) fn first_sight(&self, object: ObjectId) -> bool {
        let mut seen = match self.seen.lock() {
            Ok(seen) => seen,
            Err(poisoned) => poisoned.into_inner(),
        };
        match object.kind {
            ObjectKind::DirMeta => seen.metas.insert(object.checksum),
            ObjectKind::DirTree => seen.trees.insert(object.checksum),
            _ => seen.content.insert(object.checksum),
        }
    }

    /// Whether the destination has the object already (then counted as present).
    pub(super) fn present(&self, object: ObjectId) -> Result<bool, PullError> {
        let present = self.transfer.dest.has_object(object)?;
        if present {
            self.count(|counts| counts.present += 1);
        }
        Ok(present)
    }

    pub(super) fn add_meta(
        &self,
        work: &mut NewWork,
        meta: Checksum,
        path: &str,
    ) -> Result<(), PullError> {
        let object = ObjectId::new(meta, ObjectKind::DirMeta);
        if self.first_sight(object) && !self.present(object)? {
            self.add_job(work, Job::metadata(object, path));
        }
        Ok(())
    }

    pub(super) fn add_tree(
        &self,
        work: &mut NewWork,
        tree: Checksum,
        path: &str,
    ) -> Result<(), PullError> {
        let object = ObjectId::new(tree, ObjectKind::DirTree);
        // A tree on the way to a part is looked at for that part alone: the same tree met
        // again as a whole is looked at again.
        let along = self.reach(path) == Reach::Along;
        if !along && !self.first_sight(object) {
            return Ok(());
        }
        if self.present(object)? {
            work.local.push((tree, path.to_owned()));
            return Ok(());
        }
        self.add_job(work, Job::metadata(object, path));
        Ok(())
    }

    pub(super) fn add_file(
        &self,
        work: &mut NewWork,
        checksum: Checksum,
        path: String,
    ) -> Result<(), PullError> {
        let object = ObjectId::new(checksum, ObjectKind::File);
        if !self.first_sight(object) || self.present(object)? {
            return Ok(());
        }
        let size = self.sizes.as_ref().and_then(|map| map.get(&checksum));
        let download = size.map(|size| {
            if self.transfer.dest.mode() == RepoMode::Archive {
                size.archived
            } else {
                size.unpacked
            }
        });
        self.transfer.progress.expect(0, download.unwrap_or(0));
        self.add_job(
            work,
            Job {
                object,
                path,
                size_known: size.is_some(),
                unpacked: size.map(|size| size.unpacked),
                lacking: Vec::new(),
            },
        );
        Ok(())
    }

    /// Puts a dirtree's children on the board.
    pub(super) fn expand(
        &self,
        tree: &Checksum,
        bytes: &[u8],
        path: &str,
    ) -> Result<(), PullError> {
        let object = ObjectId::new(*tree, ObjectKind::DirTree);
        let listing = DirTree::parse(bytes).map_err(|source| {
            PullError::Destination(RepoError::Corrupt {
                repo: self.transfer.dest.path().to_path_buf(),
                object,
                source: Box::new(source),
            })
        })?;
        let mut work = NewWork::default();
        for file in &listing.files {
            let file_path = child_path(path, &file.name);
            if self.reach(&file_path) == Reach::Whole {
                self.add_file(&mut work, file.checksum, file_path)?;
            }
        }
        for dir in &listing.dirs {
            let child = child_path(path, &dir.name);
            if self.reach(&child) == Reach::Outside {
                continue;
            }
            if child.len() > MAX_PATH_LENGTH {
                return Err(PullError::BadObject {
                    object,
                    path: Some(path.to_owned()),
                    source_name: self.transfer.names.join(", "),
                    reason: format!(
                        "the tree nests deeper than {MAX_PATH_LENGTH} bytes of path; refused"
                    )
                    .into(),
                });
            }
            self.add_meta(&mut work, dir.meta, &child)?;
            self.add_tree(&mut work, dir.tree, &child)?;
        }
        self.post(work);
        Ok(())
    }
}
