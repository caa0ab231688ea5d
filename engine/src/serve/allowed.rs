//! What a repository that is not an archive may give out: only the objects of advertised
//! commits. A repository can hold private commits (a local branch, an unfinished build), and
//! those are never served.
//!
//! Advertised refs are the refs under `refs/remotes/<remote>/` whose remote has a collection
//! ID, and those under `refs/mirrors/<collection ID>/`; local branches (`refs/heads`) are not.
//! The commits a sysroot has deployed are served too (not listed in the summary). The index
//! holds every object of those commits: commit, detached metadata, dirtrees, dirmetas and
//! content.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use crate::object::{Checksum, DirTree, FormatError, ObjectId, ObjectKind};
use crate::repo::{CollectionRef, RefLocation, Repo, RepoError};
use crate::target::{BootState, SysrootState, TargetError};

/// Objects indexed at most: far more than an OS and its apps hold, so a damaged or hostile
/// tree cannot make the index grow without end.
pub const MAX_INDEXED_OBJECTS: usize = 20_000_000;
/// Directory depth walked at most (libostree allows 256).
const MAX_DEPTH: usize = 256;

/// What decides the advertised refs and deployed commits; when it changes the index is
/// rebuilt.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fingerprint {
    /// The repository's refs and the commits they point at.
    pub refs: Vec<(RefLocation, Checksum)>,
    /// Remote name and collection ID.
    pub remotes: Vec<(String, Option<String>)>,
    /// The commits of the sysroot's deployments.
    pub deployed: Vec<Checksum>,
}

impl Fingerprint {
    /// Reads the refs of `repo`, its remotes (and those of `remotes_dir`) and the commits
    /// deployed in `sysroot` and in the Flatpak `installation`.
    pub fn read(
        repo: &Repo,
        remotes_dir: Option<&Path>,
        sysroot: Option<&Path>,
        installation: Option<&Path>,
    ) -> Result<Self, FingerprintError> {
        let refs = repo.list_refs()?;
        let (_, remotes) = crate::target::read_repo_config(repo.path(), remotes_dir)
            .map_err(FingerprintError::Remotes)?;
        let mut remotes: Vec<(String, Option<String>)> = remotes
            .into_iter()
            .filter(|remote| !remote.disabled)
            .map(|remote| (remote.name, remote.collection_id))
            .collect();
        remotes.sort();
        let mut deployed = Vec::new();
        if let Some(sysroot) = sysroot {
            let state = SysrootState::load(sysroot, &BootState::default())
                .map_err(FingerprintError::Deployed)?;
            deployed.extend(state.deployments.iter().map(|d| d.commit));
            if let Some(staged) = &state.staged {
                deployed.push(staged.commit);
            }
        }
        if let Some(installation) = installation {
            let (refs, unreadable) = crate::target::flatpak::deployed_refs(installation)
                .map_err(FingerprintError::Deployed)?;
            for error in unreadable {
                tracing::warn!(error = %crate::causes::Causes(&error), "not serving a deployment whose data cannot be read");
            }
            // A ref installed in part (a locale extension with some languages) is not whole
            // in the repository; it is not served.
            deployed.extend(
                refs.iter()
                    .filter(|deployed| deployed.data.subpaths.is_empty())
                    .map(|deployed| deployed.data.commit),
            );
        }
        deployed.sort();
        deployed.dedup();
        Ok(Self {
            refs,
            remotes,
            deployed,
        })
    }

    /// The advertised collection refs and their commits, sorted; a collection ref offered by
    /// a mirror and a remote is taken from the mirror.
    pub fn advertised(&self) -> Vec<(CollectionRef, Checksum)> {
        let mut found: BTreeMap<CollectionRef, Checksum> = BTreeMap::new();
        for (location, commit) in &self.refs {
            let collection_id = match location {
                RefLocation::Head { .. } => continue,
                RefLocation::Mirror { collection_id, .. } => collection_id.clone(),
                RefLocation::Remote { remote, .. } => {
                    let configured = self
                        .remotes
                        .iter()
                        .find(|(name, _)| name == remote)
                        .and_then(|(_, id)| id.clone());
                    match configured {
                        Some(id) => id,
                        None => continue,
                    }
                }
            };
            let key = CollectionRef {
                collection_id: Some(collection_id),
                name: location.name().to_owned(),
            };
            let from_mirror = matches!(location, RefLocation::Mirror { .. });
            if from_mirror || !found.contains_key(&key) {
                found.insert(key, *commit);
            }
        }
        found.into_iter().collect()
    }
}

/// Why what a repository serves could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FingerprintError {
    /// Its refs could not be listed.
    #[error("cannot list the refs")]
    Refs(#[from] RepoError),
    /// Its remotes' configuration could not be read.
    #[error("cannot read the remotes")]
    Remotes(#[source] TargetError),
    /// The deployments of the sysroot or installation could not be read.
    #[error("cannot read what is deployed")]
    Deployed(#[source] TargetError),
}

/// Why a commit's objects could not all be indexed.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The repository could not be read.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// The commit is marked partial: some of its objects are missing.
    #[error("{0} is incomplete (a partial pull)")]
    Partial(Checksum),
    /// An object does not parse.
    #[error("{object} is damaged")]
    Format {
        /// The object.
        object: ObjectId,
        /// What is wrong with it.
        #[source]
        source: FormatError,
    },
    /// The commits reach more objects than the index holds.
    #[error("more than {MAX_INDEXED_OBJECTS} objects")]
    TooMany,
    /// The directory tree nests deeper than Ferry walks.
    #[error("directories nest deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

/// The set of objects that may be served.
#[derive(Debug, Default)]
pub struct AllowedIndex {
    objects: HashSet<ObjectId>,
}

impl AllowedIndex {
    /// Whether `object` may be served.
    pub fn contains(&self, object: &ObjectId) -> bool {
        self.objects.contains(object)
    }

    /// How many objects may be served.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// Whether nothing may be served.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// Adds every object of `commit`. On failure nothing of the commit is kept, so a commit
    /// is served whole or not at all.
    pub fn add_commit(&mut self, repo: &Repo, commit: &Checksum) -> Result<(), IndexError> {
        if repo.is_partial(commit)? {
            return Err(IndexError::Partial(*commit));
        }
        let mut added = Vec::new();
        let result = self.walk_commit(repo, commit, &mut added);
        if result.is_err() {
            for object in added {
                self.objects.remove(&object);
            }
        }
        result
    }

    fn insert(&mut self, object: ObjectId, added: &mut Vec<ObjectId>) -> Result<bool, IndexError> {
        if self.objects.contains(&object) {
            return Ok(false);
        }
        if self.objects.len() >= MAX_INDEXED_OBJECTS {
            return Err(IndexError::TooMany);
        }
        self.objects.insert(object);
        added.push(object);
        Ok(true)
    }

    fn walk_commit(
        &mut self,
        repo: &Repo,
        commit: &Checksum,
        added: &mut Vec<ObjectId>,
    ) -> Result<(), IndexError> {
        let id = ObjectId::new(*commit, ObjectKind::Commit);
        if self.objects.contains(&id) {
            return Ok(());
        }
        let parsed = repo.read_commit(commit)?;
        self.insert(id, added)?;
        if repo.has_object(ObjectId::new(*commit, ObjectKind::CommitMeta))? {
            self.insert(ObjectId::new(*commit, ObjectKind::CommitMeta), added)?;
        }
        self.insert(ObjectId::new(parsed.root_meta, ObjectKind::DirMeta), added)?;
        // Iterative, so a deep tree cannot exhaust the stack.
        let mut pending = vec![(parsed.root_tree, 0usize)];
        while let Some((tree, depth)) = pending.pop() {
            if depth > MAX_DEPTH {
                return Err(IndexError::TooDeep);
            }
            let object = ObjectId::new(tree, ObjectKind::DirTree);
            if !self.insert(object, added)? {
                continue;
            }
            let bytes = repo.read_metadata(ObjectKind::DirTree, &tree)?;
            let parsed =
                DirTree::parse(&bytes).map_err(|source| IndexError::Format { object, source })?;
            for file in &parsed.files {
                self.insert(ObjectId::new(file.checksum, ObjectKind::File), added)?;
            }
            for dir in &parsed.dirs {
                self.insert(ObjectId::new(dir.meta, ObjectKind::DirMeta), added)?;
                pending.push((dir.tree, depth + 1));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(byte: u8) -> Checksum {
        Checksum::from_slice(&[byte; 32]).expect("checksum")
    }

    #[test]
    fn only_refs_of_remotes_with_a_collection_id_and_mirrors_are_advertised() {
        let fingerprint = Fingerprint {
            refs: vec![
                (RefLocation::head("private/stuff"), commit(1)),
                (RefLocation::remote("plain", "os/stable"), commit(2)),
                (RefLocation::remote("origin", "os/stable"), commit(3)),
                (RefLocation::remote("gone", "os/old"), commit(4)),
                (
                    RefLocation::mirror("org.example.Apps", "app/stable"),
                    commit(5),
                ),
                (RefLocation::remote("apps", "app/stable"), commit(6)),
            ],
            remotes: vec![
                ("apps".into(), Some("org.example.Apps".into())),
                ("origin".into(), Some("org.example.Os".into())),
                ("plain".into(), None),
            ],
            deployed: Vec::new(),
        };
        let collection_ref = |id: &str, name: &str| CollectionRef {
            collection_id: Some(id.to_owned()),
            name: name.to_owned(),
        };
        assert_eq!(
            fingerprint.advertised(),
            vec![
                (collection_ref("org.example.Apps", "app/stable"), commit(5)),
                (collection_ref("org.example.Os", "os/stable"), commit(3)),
            ]
        );
    }
}
