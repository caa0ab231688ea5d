//! Fixtures for the repository tests. Trees, repositories, commits and the comparison of
//! checkouts come from the `ferry-tests` builders (the real `ostree`); what is here speaks
//! engine types: a closure copy written with Ferry's read and write API, and a check that
//! every object Ferry wrote recomputes to its name. Every helper fails the test on error.

#![allow(
    dead_code,
    reason = "each test file uses a different part of the fixtures"
)]

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use ferry_engine::object::{Checksum, Commit, DirTree, ObjectId, ObjectKind};
use ferry_engine::repo::{Repo, RepoMode, WriteOutcome};
use ferry_tests::compare::{assert_trees_equal, CompareOptions};
pub use ferry_tests::ostree::CommitSpec;
use ferry_tests::ostree::{CheckoutMode, OstreeRepo};
use ferry_tests::tree::{Tree, TreeOptions};
use ferry_tests::{Output, Tool};

pub use ferry_tests::is_root;

/// Runs `ostree ARGS` and returns its output, whatever its status.
pub fn ostree_output(args: &[&str]) -> Output {
    Tool::new("ostree")
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("{error}"))
}

/// Runs `ostree ARGS`, failing the test unless it succeeds; returns its trimmed stdout.
pub fn ostree(args: &[&str]) -> String {
    Tool::new("ostree")
        .args(args)
        .stdout()
        .unwrap_or_else(|error| panic!("{error}"))
        .trim()
        .to_owned()
}

pub fn repo_arg(repo: &Path) -> String {
    format!("--repo={}", repo.display())
}

/// `ostree init` of a repository of `mode`.
pub fn init_repo(path: &Path, mode: RepoMode, collection_id: Option<&str>) -> OstreeRepo {
    OstreeRepo::init(path, mode, collection_id).unwrap_or_else(|error| panic!("{error}"))
}

/// `ostree commit` of `spec`; returns the commit checksum.
pub fn commit(repo: &Path, spec: CommitSpec<'_>) -> String {
    OstreeRepo::open(repo)
        .commit(&spec)
        .unwrap_or_else(|error| panic!("{error}"))
}

/// `ostree fsck` must pass.
pub fn assert_fsck(repo: &Path) {
    if let Err(error) = OstreeRepo::open(repo).fsck() {
        panic!("{error}");
    }
}

/// `ostree checkout` (as root, with ownership and xattrs) or `-U` otherwise.
pub fn checkout(repo: &Path, rev: &str, dest: &Path) {
    let mode = if is_root() {
        CheckoutMode::Plain
    } else {
        CheckoutMode::User
    };
    if let Err(error) = OstreeRepo::open(repo).checkout(rev, dest, mode) {
        panic!("{error}");
    }
}

/// The fixture crate's standard tree (with a `user.*` xattr when `xattrs`, one owner) and
/// what stresses object storage: a large file spanning many compression chunks, many small
/// files, an empty file, a relative symlink.
pub fn make_tree(root: &Path, xattrs: bool) -> Tree {
    let options = TreeOptions {
        xattrs,
        foreign_owner: false,
    };
    let tree = Tree::standard(root, options).unwrap_or_else(|error| panic!("{error}"));
    if let Err(error) = tree.add_storage_edge_cases() {
        panic!("{error}");
    }
    tree
}

/// Fails the test with the differences when two checkouts differ: entries, types, modes,
/// ownership, contents and every xattr.
pub fn assert_same_tree(expected: &Path, actual: &Path) {
    let options = CompareOptions {
        ignored_xattrs: Vec::new(),
        ..CompareOptions::everything()
    };
    if let Err(error) = assert_trees_equal(expected, actual, &options) {
        panic!("{error}");
    }
}

/// Every object of a commit's closure: the commit, then dirtrees, dirmetas and files.
pub fn closure(repo: &Repo, commit: &Checksum) -> Vec<ObjectId> {
    let mut objects = vec![ObjectId::new(*commit, ObjectKind::Commit)];
    let parsed = repo.read_commit(commit).expect("read the commit");
    let mut pending = vec![(parsed.root_tree, parsed.root_meta)];
    let mut seen = std::collections::HashSet::new();
    while let Some((tree, meta)) = pending.pop() {
        if seen.insert(ObjectId::new(meta, ObjectKind::DirMeta)) {
            objects.push(ObjectId::new(meta, ObjectKind::DirMeta));
        }
        if !seen.insert(ObjectId::new(tree, ObjectKind::DirTree)) {
            continue;
        }
        objects.push(ObjectId::new(tree, ObjectKind::DirTree));
        let bytes = repo
            .read_metadata(ObjectKind::DirTree, &tree)
            .expect("read a dirtree");
        let parsed = DirTree::parse(&bytes).expect("parse a dirtree");
        for file in parsed.files {
            let id = ObjectId::new(file.checksum, ObjectKind::File);
            if seen.insert(id) {
                objects.push(id);
            }
        }
        for dir in parsed.dirs {
            pending.push((dir.tree, dir.meta));
        }
    }
    objects
}

/// Copies a commit's closure from `source` to `dest` with Ferry's API, the way a pull
/// stores objects (without a pull engine): metadata re-hashed by `write_metadata`, content
/// streamed through `write_content`. Then points `ref_name` at it. Returns how many objects
/// were written.
pub fn copy_commit(source: &Repo, dest: &Repo, commit: &Checksum, ref_name: &str) -> usize {
    dest.mark_partial(commit).expect("mark partial");
    let mut written = 0;
    for object in closure(source, commit) {
        if copy_object(source, dest, object) == WriteOutcome::Written {
            written += 1;
        }
    }
    if let Some(meta) = source.read_commitmeta(commit).expect("read commitmeta") {
        dest.write_commitmeta(commit, &meta)
            .expect("write commitmeta");
    }
    dest.sync().expect("sync");
    dest.clear_partial(commit).expect("clear partial");
    dest.write_ref(&ferry_engine::repo::RefLocation::head(ref_name), commit)
        .expect("write ref");
    written
}

/// Copies one object with Ferry's read and write API: content through its header and
/// reader, metadata as bytes.
pub fn copy_object(source: &Repo, dest: &Repo, object: ObjectId) -> WriteOutcome {
    match object.kind {
        ObjectKind::File => {
            let (header, reader) = source.open_content(&object.checksum).expect("open content");
            dest.write_content(&object.checksum, &header, reader)
                .unwrap_or_else(|error| panic!("write {object}: {error}"))
        }
        kind => {
            let bytes = source
                .read_metadata(kind, &object.checksum)
                .expect("read metadata");
            dest.write_metadata(kind, &object.checksum, &bytes)
                .unwrap_or_else(|error| panic!("write {object}: {error}"))
        }
    }
}

/// Parses every object file in a repository and checks that each recomputes to its name.
/// Returns how many objects of each kind were checked.
pub fn verify_every_object(repo: &Repo) -> BTreeMap<&'static str, usize> {
    use ferry_engine::object::{metadata_checksum, ContentHasher, DirMeta, Metadata};
    let mut counts = BTreeMap::new();
    let objects_dir = repo.path().join("objects");
    for prefix in fs::read_dir(&objects_dir).expect("objects dir") {
        let prefix = prefix.expect("entry").path();
        if !prefix.is_dir() {
            continue;
        }
        for item in fs::read_dir(&prefix).expect("prefix dir") {
            let path = item.expect("entry").path();
            let file_name = path
                .file_name()
                .and_then(|n| n.to_str())
                .expect("utf-8 name");
            let (rest, extension) = file_name.split_once('.').expect("an extension");
            let hex = format!(
                "{}{rest}",
                prefix.file_name().and_then(|n| n.to_str()).expect("prefix")
            );
            let checksum = Checksum::from_hex(&hex).expect("hex name");
            match extension {
                "commit" => {
                    let commit: Commit = repo.read_commit(&checksum).expect("commit");
                    assert_eq!(
                        metadata_checksum(&commit.to_bytes().expect("serialise")),
                        checksum,
                        "a parsed commit serialises back to its bytes"
                    );
                }
                "dirtree" | "dirmeta" => {
                    let kind = if extension == "dirtree" {
                        ObjectKind::DirTree
                    } else {
                        ObjectKind::DirMeta
                    };
                    let bytes = repo.read_metadata(kind, &checksum).expect("read");
                    assert_eq!(metadata_checksum(&bytes), checksum, "{}", path.display());
                    let reserialised = if kind == ObjectKind::DirTree {
                        DirTree::parse(&bytes).expect("dirtree").to_bytes()
                    } else {
                        DirMeta::parse(&bytes).expect("dirmeta").to_bytes()
                    };
                    assert_eq!(reserialised.expect("serialise"), bytes);
                }
                "commitmeta" => {
                    let bytes = repo
                        .read_commitmeta(&checksum)
                        .expect("read")
                        .expect("present");
                    Metadata::parse(&bytes).expect("commitmeta parses");
                }
                "file" | "filez" => {
                    let (header, mut reader) = repo.open_content(&checksum).expect("open");
                    let mut hasher = ContentHasher::new(&header).expect("hasher");
                    std::io::copy(&mut reader, &mut hasher).expect("read content");
                    assert_eq!(hasher.finish(), checksum, "{}", path.display());
                }
                other => panic!("unexpected object {other} at {}", path.display()),
            }
            let key: &'static str = match extension {
                "commit" => "commit",
                "dirtree" => "dirtree",
                "dirmeta" => "dirmeta",
                "commitmeta" => "commitmeta",
                _ => "file",
            };
            *counts.entry(key).or_insert(0) += 1;
        }
    }
    counts
}
