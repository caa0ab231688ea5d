//! What a repository that is not an archive may give out: only the objects of advertised
//! commits. A repository can hold private commits (a local branch, an unfinished build), and
//! those are never served.
//!
//! Advertised refs are the refs under `refs/remotes/<remote>/` whose remote has a collection
//! ID, and those under `refs/mirrors/<collection ID>/`; local branches (`refs/heads`) are not.
//! The commits a sysroot has deployed are served too (not listed in the summary). The index
//! holds every object of those commits: commit, detached metadata, dirtrees, dirmetas and
//! content. A commit a Flatpak installation deployed in part (a locale extension with some
//! languages) is indexed in those parts alone, as a pull of them walks it.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use crate::object::subdirs::{child_path, InvalidSubpath, Reach, Subdirs};
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
    /// Commits the installation deployed in part, with their Flatpak subpaths (`/de`),
    /// sorted.
    pub deployed_in_part: Vec<(Checksum, Vec<String>)>,
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
        let mut deployed_in_part = Vec::new();
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
            for deployment in refs {
                if deployment.data.subpaths.is_empty() {
                    deployed.push(deployment.data.commit);
                } else {
                    deployed_in_part.push((deployment.data.commit, deployment.data.subpaths));
                }
            }
        }
        deployed.sort();
        deployed.dedup();
        deployed_in_part.sort();
        deployed_in_part.dedup();
        Ok(Self {
            refs,
            remotes,
            deployed,
            deployed_in_part,
        })
    }

    /// The Flatpak subpaths `commit` is deployed with, when it is deployed in part.
    pub fn deployed_parts(&self, commit: &Checksum) -> Option<&[String]> {
        // Sorted by commit when read: a search, not a scan per advertised ref.
        let found = self
            .deployed_in_part
            .binary_search_by(|(deployed, _)| deployed.cmp(commit))
            .ok()?;
        self.deployed_in_part
            .get(found)
            .map(|(_, subpaths)| subpaths.as_slice())
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
    /// The parts to index are not valid subpaths.
    #[error(transparent)]
    Parts(#[from] InvalidSubpath),
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
    /// Dirtrees indexed only on the way to a part: their listing, not all of their entries.
    listing_only: HashSet<Checksum>,
}

/// What one commit's walk changed, undone when it fails.
#[derive(Default)]
struct Added {
    objects: Vec<ObjectId>,
    listed_only: Vec<Checksum>,
    completed: Vec<Checksum>,
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
        self.add_walk(repo, commit, None)
    }

    /// Adds the objects of `commit` that a pull of the Flatpak `subpaths` (`/de`) takes:
    /// the commit, its detached metadata, the tree down to each part and everything inside
    /// the parts. The commit may be marked partial; every part must be there. On failure
    /// nothing of it is kept.
    pub fn add_commit_in_part(
        &mut self,
        repo: &Repo,
        commit: &Checksum,
        subpaths: &[String],
    ) -> Result<(), IndexError> {
        let parts = Subdirs::for_flatpak(subpaths)?;
        self.add_walk(repo, commit, parts.as_ref())
    }

    fn add_walk(
        &mut self,
        repo: &Repo,
        commit: &Checksum,
        parts: Option<&Subdirs>,
    ) -> Result<(), IndexError> {
        let mut added = Added::default();
        let result = self.walk_commit(repo, commit, parts, &mut added);
        if result.is_err() {
            for object in added.objects {
                self.objects.remove(&object);
            }
            for tree in added.listed_only {
                self.listing_only.remove(&tree);
            }
            self.listing_only.extend(added.completed);
        }
        result
    }

    fn insert(&mut self, object: ObjectId, added: &mut Added) -> Result<bool, IndexError> {
        if self.objects.contains(&object) {
            return Ok(false);
        }
        if self.objects.len() >= MAX_INDEXED_OBJECTS {
            return Err(IndexError::TooMany);
        }
        self.objects.insert(object);
        added.objects.push(object);
        Ok(true)
    }

    fn walk_commit(
        &mut self,
        repo: &Repo,
        commit: &Checksum,
        parts: Option<&Subdirs>,
        added: &mut Added,
    ) -> Result<(), IndexError> {
        let id = ObjectId::new(*commit, ObjectKind::Commit);
        let parsed = repo.read_commit(commit)?;
        self.insert(id, added)?;
        if repo.has_object(ObjectId::new(*commit, ObjectKind::CommitMeta))? {
            self.insert(ObjectId::new(*commit, ObjectKind::CommitMeta), added)?;
        }
        self.insert(ObjectId::new(parsed.root_meta, ObjectKind::DirMeta), added)?;
        let reach = |path: &str| parts.map_or(Reach::Whole, |parts| parts.reach(path));
        // Trees on the way to a part, by path: each is looked at once per path (a tree
        // inside a part is looked at once whatever its path).
        let mut seen_along: HashSet<(Checksum, String)> = HashSet::new();
        // Iterative, so a deep tree cannot exhaust the stack.
        let mut pending = vec![(parsed.root_tree, "/".to_owned(), 0usize)];
        while let Some((tree, path, depth)) = pending.pop() {
            if depth > MAX_DEPTH {
                return Err(IndexError::TooDeep);
            }
            let object = ObjectId::new(tree, ObjectKind::DirTree);
            let along = reach(&path) == Reach::Along;
            let new = self.insert(object, added)?;
            if along {
                if new {
                    self.listing_only.insert(tree);
                    added.listed_only.push(tree);
                }
                if !seen_along.insert((tree, path.clone())) {
                    continue;
                }
            } else if self.listing_only.remove(&tree) {
                // Met whole now: its entries are added below.
                added.completed.push(tree);
            } else if !new {
                continue;
            }
            let bytes = repo.read_metadata(ObjectKind::DirTree, &tree)?;
            let listing =
                DirTree::parse(&bytes).map_err(|source| IndexError::Format { object, source })?;
            for file in &listing.files {
                if !along || reach(&child_path(&path, &file.name)) == Reach::Whole {
                    self.insert(ObjectId::new(file.checksum, ObjectKind::File), added)?;
                }
            }
            for dir in &listing.dirs {
                let child = if along || parts.is_some() {
                    child_path(&path, &dir.name)
                } else {
                    // Unused for a whole commit: every path is inside.
                    String::new()
                };
                if along && reach(&child) == Reach::Outside {
                    continue;
                }
                self.insert(ObjectId::new(dir.meta, ObjectKind::DirMeta), added)?;
                pending.push((dir.tree, child, depth + 1));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::test_trees::{write_meta, write_tree};
    use crate::object::{Commit, ContentHasher, FileHeader, Metadata, RepoMode};

    /// A commit of a locale extension's tree, with a file outside `files` too.
    fn locale_commit(repo: &Repo) -> Checksum {
        let (root_tree, root_meta) = write_tree(
            repo,
            &[
                ("metadata", b"[Runtime]".to_vec()),
                ("README", b"outside every part".to_vec()),
                ("files/de/messages.mo", b"Hallo".to_vec()),
                ("files/fr/messages.mo", b"Bonjour".to_vec()),
            ],
        );
        let commit = Commit {
            metadata: Metadata::new(),
            parent: None,
            related: Vec::new(),
            subject: "Locale".into(),
            body: String::new(),
            timestamp: 1,
            root_tree,
            root_meta,
        };
        write_meta(
            repo,
            ObjectKind::Commit,
            &commit.to_bytes().expect("commit"),
        )
    }

    fn file(bytes: &[u8]) -> ObjectId {
        let header = FileHeader::regular(0, 0, 0o644, bytes.len() as u64);
        ObjectId::new(
            ContentHasher::checksum(&header, bytes).expect("checksum"),
            ObjectKind::File,
        )
    }

    fn subtree(repo: &Repo, tree: Checksum, name: &str) -> Checksum {
        let bytes = repo
            .read_metadata(ObjectKind::DirTree, &tree)
            .expect("dirtree");
        let listing = DirTree::parse(&bytes).expect("parse");
        listing
            .dirs
            .iter()
            .find(|dir| dir.name == name)
            .map(|dir| dir.tree)
            .expect("subdirectory")
    }

    #[test]
    fn a_commit_deployed_in_part_is_indexed_in_those_parts_until_met_whole() {
        let dir = tempfile::tempdir().expect("temp dir");
        let repo =
            Repo::init(&dir.path().join("repo"), RepoMode::BareUserOnly, None).expect("init");
        let commit = locale_commit(&repo);
        let root = repo.read_commit(&commit).expect("commit").root_tree;
        let files = subtree(&repo, root, "files");
        let french = ObjectId::new(subtree(&repo, files, "fr"), ObjectKind::DirTree);

        let mut index = AllowedIndex::default();
        index
            .add_commit_in_part(&repo, &commit, &["/de".to_owned()])
            .expect("indexed in part");
        for (object, served) in [
            (ObjectId::new(commit, ObjectKind::Commit), true),
            (ObjectId::new(files, ObjectKind::DirTree), true),
            (file(b"[Runtime]"), true),
            (file(b"Hallo"), true),
            (french, false),
            (file(b"Bonjour"), false),
            (file(b"outside every part"), false),
        ] {
            assert_eq!(index.contains(&object), served, "{object}");
        }
        // Met whole later (another installation's ref): the trees first listed on the way
        // to a part are walked in full now.
        index.add_commit(&repo, &commit).expect("indexed whole");
        for object in [french, file(b"Bonjour"), file(b"outside every part")] {
            assert!(index.contains(&object), "{object}");
        }

        // A part that is not there: nothing of the commit is kept.
        let german = ObjectId::new(subtree(&repo, files, "de"), ObjectKind::DirTree);
        std::fs::remove_file(repo.object_path(german)).expect("remove the German listing");
        let mut index = AllowedIndex::default();
        assert!(index
            .add_commit_in_part(&repo, &commit, &["/de".to_owned()])
            .is_err());
        assert!(index.is_empty(), "{} objects kept", index.len());
        // Subpaths that are not paths are refused.
        assert!(matches!(
            index.add_commit_in_part(&repo, &commit, &["/../de".to_owned()]),
            Err(IndexError::Parts(_))
        ));
    }

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
            deployed_in_part: Vec::new(),
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
