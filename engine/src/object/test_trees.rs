//! Trees written into repositories for other modules' tests: files, dirmetas and
//! dirtrees made with the engine's own writer.

use std::collections::BTreeMap;

use super::{
    metadata_checksum, Checksum, ContentHasher, DirMeta, DirTree, DirTreeDir, DirTreeFile,
    FileHeader, ObjectKind, S_IFDIR,
};
use crate::repo::Repo;

pub(crate) fn write_file(repo: &Repo, bytes: &[u8]) -> Checksum {
    let header = FileHeader::regular(0, 0, 0o644, bytes.len() as u64);
    let checksum = ContentHasher::checksum(&header, bytes).expect("checksum");
    repo.write_content(&checksum, &header, bytes)
        .expect("write content");
    checksum
}

pub(crate) fn write_meta(repo: &Repo, kind: ObjectKind, bytes: &[u8]) -> Checksum {
    let checksum = metadata_checksum(bytes);
    repo.write_metadata(kind, &checksum, bytes)
        .expect("write metadata");
    checksum
}

pub(crate) fn dirmeta(repo: &Repo) -> Checksum {
    let meta = DirMeta {
        uid: 0,
        gid: 0,
        mode: S_IFDIR | 0o755,
        xattrs: Vec::new(),
    };
    write_meta(
        repo,
        ObjectKind::DirMeta,
        &meta.to_bytes().expect("dirmeta"),
    )
}

/// A directory being built: files and subdirectories by name.
#[derive(Default)]
pub(crate) struct Node {
    pub(crate) files: BTreeMap<String, Checksum>,
    pub(crate) dirs: BTreeMap<String, Node>,
}

impl Node {
    pub(crate) fn write(&self, repo: &Repo, meta: Checksum) -> Checksum {
        let tree = DirTree {
            files: self
                .files
                .iter()
                .map(|(name, checksum)| DirTreeFile {
                    name: name.clone(),
                    checksum: *checksum,
                })
                .collect(),
            dirs: self
                .dirs
                .iter()
                .map(|(name, node)| DirTreeDir {
                    name: name.clone(),
                    tree: node.write(repo, meta),
                    meta,
                })
                .collect(),
        };
        write_meta(
            repo,
            ObjectKind::DirTree,
            &tree.to_bytes().expect("dirtree"),
        )
    }
}

/// Writes a tree of files (`/`-separated paths) and returns its root dirtree and dirmeta.
pub(crate) fn write_tree(repo: &Repo, files: &[(&str, Vec<u8>)]) -> (Checksum, Checksum) {
    let meta = dirmeta(repo);
    let mut root = Node::default();
    for (path, bytes) in files {
        let checksum = write_file(repo, bytes);
        let mut parts: Vec<&str> = path.split('/').collect();
        let name = parts.pop().expect("a file name");
        let mut node = &mut root;
        for dir in parts {
            node = node.dirs.entry(dir.to_owned()).or_default();
        }
        node.files.insert(name.to_owned(), checksum);
    }
    (root.write(repo, meta), meta)
}
