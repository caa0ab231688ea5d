//! How many bytes an update needs to fetch: the objects of the new commit that the target's
//! repository does not have yet.
//!
//! With `ostree.sizes` in the commit this is a lookup per object. Without it the commit's
//! tree is walked on the source, counting objects as the source stores them, unless the
//! listing is quick (drive insertion), where Flatpak's `xa.download-size` or the commit's own
//! size has to do.

use std::collections::HashSet;

use super::flatpak::recorded_download_size;
use super::tree::fetch_metadata;
use crate::object::{child_path, Checksum, Commit, DirTree, ObjectId, ObjectKind, Reach, Subdirs};
use crate::repo::Repo;
use crate::schema::SourceKind;
use crate::source::{Interrupt, Source};

/// Objects visited by one walk at most; a tree larger than this is not measured further.
const MAX_WALKED_OBJECTS: usize = 4_000_000;

/// The target repository objects are checked against; None when it could not be opened,
/// in which case every object counts as missing.
pub(crate) struct LocalObjects<'a>(pub Option<&'a Repo>);

impl LocalObjects<'_> {
    fn missing(&self, object: ObjectId) -> bool {
        match self.0 {
            Some(repo) => !repo.has_object(object).unwrap_or(false),
            None => true,
        }
    }
}

/// The outcome of a measurement: the bytes, and why the figure may be short when the walk
/// could not finish.
pub(crate) struct Measured {
    pub bytes: u64,
    pub incomplete: Option<String>,
}

/// Bytes to fetch for `commit` (whose object is `commit_len` bytes) from `source`.
pub(crate) fn download_size(
    checksum: &Checksum,
    commit: &Commit,
    commit_len: u64,
    local: &LocalObjects<'_>,
    source: &dyn Source,
    quick: bool,
    parts: Option<&Subdirs>,
) -> Measured {
    let own = if local.missing(ObjectId::new(*checksum, ObjectKind::Commit)) {
        commit_len
    } else {
        0
    };
    let done = |bytes| Measured {
        bytes,
        incomplete: None,
    };
    // A ref installed in part: the few objects of its parts are walked, whatever the commit
    // records of the whole.
    if let (Ok(Some(sizes)), None) = (commit.sizes(), parts) {
        let objects: u64 = sizes
            .iter()
            .filter(|size| local.missing(ObjectId::new(size.checksum, size.kind)))
            .map(|size| size.archived)
            .fold(0, u64::saturating_add);
        return done(own.saturating_add(objects));
    }
    if quick && parts.is_none() {
        return done(recorded_download_size(commit).map_or(own, |recorded| recorded.max(own)));
    }
    let mut walk = Walk {
        source,
        local,
        seen: HashSet::new(),
        bytes: own,
        files: Vec::new(),
        parts,
    };
    let walked = walk.tree(commit.root_tree, commit.root_meta);
    // What the walk found of the files, even when it stopped early.
    let files = walk.files_size();
    let bytes = walk.bytes;
    match walked.and(files) {
        Ok(()) => done(bytes),
        Err(reason) => Measured {
            bytes,
            incomplete: Some(reason),
        },
    }
}

/// Threads looking up content objects' sizes on a drive: their inodes are read cold, and a
/// drive answers many such reads at once.
const DRIVE_LOOKUP_THREADS: usize = 16;
/// The same over the network: as many as a pull keeps in flight per peer.
const NETWORK_LOOKUP_THREADS: usize = 4;

struct Walk<'a> {
    source: &'a dyn Source,
    local: &'a LocalObjects<'a>,
    seen: HashSet<ObjectId>,
    bytes: u64,
    /// Content objects met, looked up together after the metadata walk.
    files: Vec<Checksum>,
    /// The parts of the tree wanted; None for all of it.
    parts: Option<&'a Subdirs>,
}

impl Walk<'_> {
    /// Adds what is missing of the tree rooted at (`tree`, `meta`). Trees the target already
    /// has are taken as complete there, as a pull takes them.
    fn tree(&mut self, tree: Checksum, meta: Checksum) -> Result<(), String> {
        let mut pending = vec![(tree, meta, "/".to_owned())];
        while let Some((tree, meta, path)) = pending.pop() {
            if self.seen.len() > MAX_WALKED_OBJECTS {
                return Err(format!(
                    "the tree has more than {MAX_WALKED_OBJECTS} objects; the size shown is \
                     only part of it"
                ));
            }
            let meta_id = ObjectId::new(meta, ObjectKind::DirMeta);
            if self.seen.insert(meta_id) && self.local.missing(meta_id) {
                let bytes = fetch_metadata(self.source, ObjectKind::DirMeta, &meta)?;
                self.add(bytes.len() as u64);
            }
            let tree_id = ObjectId::new(tree, ObjectKind::DirTree);
            if !self.seen.insert(tree_id) || !self.local.missing(tree_id) {
                continue;
            }
            let bytes = fetch_metadata(self.source, ObjectKind::DirTree, &tree)?;
            self.add(bytes.len() as u64);
            let listing = DirTree::parse(&bytes)
                .map_err(|error| format!("{tree_id}: {}", crate::causes::Causes(&error)))?;
            let reach = |name: &str| match self.parts {
                Some(parts) => parts.reach(&child_path(&path, name)),
                None => Reach::Whole,
            };
            for file in &listing.files {
                if reach(&file.name) == Reach::Whole
                    && self
                        .seen
                        .insert(ObjectId::new(file.checksum, ObjectKind::File))
                {
                    self.files.push(file.checksum);
                }
            }
            for dir in &listing.dirs {
                if reach(&dir.name) != Reach::Outside {
                    let child = match self.parts {
                        Some(_) => child_path(&path, &dir.name),
                        None => String::new(),
                    };
                    pending.push((dir.tree, dir.meta, child));
                }
            }
        }
        Ok(())
    }

    /// Adds the stored size of every content object met that the target lacks, looked up
    /// on a few threads; the first failure ends the count.
    fn files_size(&mut self) -> Result<(), String> {
        let files = std::mem::take(&mut self.files);
        let (source, local) = (self.source, self.local);
        let threads = match source.info().kind {
            SourceKind::Drive => DRIVE_LOOKUP_THREADS,
            SourceKind::Lan | SourceKind::Upstream => NETWORK_LOOKUP_THREADS,
        };
        let sizes = crate::parallel::map_chunked(&files, threads, 64, |checksum| {
            if local.missing(ObjectId::new(*checksum, ObjectKind::File)) {
                stored_size(source, checksum)
            } else {
                Ok(0)
            }
        })
        .ok_or_else(|| "a thread looking up object sizes stopped".to_owned())?;
        for size in sizes {
            self.add(size?);
        }
        Ok(())
    }

    fn add(&mut self, bytes: u64) {
        self.bytes = self.bytes.saturating_add(bytes);
    }
}

/// A content object's size as the source stores it: the `.filez` size of an archive
/// repository, else the file's own size.
fn stored_size(source: &dyn Source, checksum: &Checksum) -> Result<u64, String> {
    if let Ok(Some(archived)) = source.fetch_archived_content(checksum, &Interrupt::never()) {
        if let Some(size) = archived.size {
            return Ok(size);
        }
    }
    source
        .fetch_content(checksum, &Interrupt::never())
        .map(|fetched| fetched.header.size)
        .map_err(|error| crate::causes::text(&error))
}
