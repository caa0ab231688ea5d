//! Fixtures for the repository tests: trees, repositories and commits made by the real
//! `ostree`, a closure copy written with Ferry's read and write API, and a byte-for-byte
//! comparison of checkouts. Every helper asserts the tool succeeded.

#![allow(
    dead_code,
    reason = "each test file uses a different part of the fixtures"
)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ferry_engine::object::{Checksum, Commit, DirTree, ObjectId, ObjectKind};
use ferry_engine::repo::{Repo, RepoMode, WriteOutcome};

pub const ALL_MODES: [RepoMode; 4] = [
    RepoMode::Archive,
    RepoMode::Bare,
    RepoMode::BareUser,
    RepoMode::BareUserOnly,
];

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Fails the test, with what needs root, unless it runs as root: a test never passes for
/// having checked less.
pub fn require_root(what: &str) {
    assert!(
        is_root(),
        "{what} needs root: run the tests as root (scripts/test.sh does)"
    );
}

/// Runs `ostree ARGS` and returns its output, whatever its status.
pub fn ostree_output(args: &[&str]) -> Output {
    Command::new("ostree")
        .args(args)
        .output()
        .expect("ostree runs (install it with scripts/install-deps.sh)")
}

/// Runs `ostree ARGS`, failing the test unless it succeeds; returns its trimmed stdout.
pub fn ostree(args: &[&str]) -> String {
    let output = ostree_output(args);
    assert!(
        output.status.success(),
        "ostree {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

pub fn repo_arg(repo: &Path) -> String {
    format!("--repo={}", repo.display())
}

/// `ostree init` of a repository of `mode`.
pub fn init_repo(path: &Path, mode: RepoMode, collection_id: Option<&str>) {
    let mut args = vec![
        "init".to_owned(),
        repo_arg(path),
        format!("--mode={}", mode.as_str()),
    ];
    if let Some(id) = collection_id {
        args.push(format!("--collection-id={id}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ostree(&args);
}

/// `ostree commit -b BRANCH TREE` plus `extra` options; returns the commit checksum.
pub fn commit(repo: &Path, branch: &str, tree: &Path, extra: &[&str]) -> String {
    let repo = repo_arg(repo);
    let branch = format!("--branch={branch}");
    let tree = tree.display().to_string();
    let mut args = vec!["commit", repo.as_str(), branch.as_str()];
    args.extend_from_slice(extra);
    args.push(tree.as_str());
    ostree(&args)
}

/// `ostree fsck` must pass.
pub fn assert_fsck(repo: &Path) {
    let output = ostree_output(&["fsck", &repo_arg(repo)]);
    assert!(
        output.status.success(),
        "ostree fsck of {} failed: {}\n{}",
        repo.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `ostree checkout` (as root, with ownership and xattrs) or `-U` otherwise.
pub fn checkout(repo: &Path, rev: &str, dest: &Path) {
    let dest = dest.display().to_string();
    let repo = repo_arg(repo);
    if is_root() {
        ostree(&["checkout", &repo, rev, &dest]);
    } else {
        ostree(&["checkout", "-U", &repo, rev, &dest]);
    }
}

/// Writes a file and sets its permission bits.
pub fn write_file(path: &Path, contents: &[u8], mode: u32) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("create parent");
    }
    fs::write(path, contents).expect("write file");
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    rustix::fs::lsetxattr(path, name, value, rustix::fs::XattrFlags::empty())
        .expect("set an xattr (the filesystem must support user xattrs)");
}

/// A tree with a symlink, an executable, an empty directory, a file with a `user.*` xattr
/// (when `xattrs`), a file large enough to span many compression chunks, and some nesting.
pub fn make_tree(root: &Path, xattrs: bool) {
    write_file(&root.join("usr/share/hello.txt"), b"hello\n", 0o644);
    write_file(&root.join("usr/bin/hi"), b"#!/bin/sh\necho hi\n", 0o755);
    fs::create_dir_all(root.join("usr/share/empty")).expect("empty dir");
    symlink("hello.txt", root.join("usr/share/link")).expect("symlink");
    symlink("../share/hello.txt", root.join("usr/bin/relative-link")).expect("symlink");
    write_file(&root.join("usr/share/xattr.txt"), b"with xattrs\n", 0o644);
    if xattrs {
        set_xattr(&root.join("usr/share/xattr.txt"), "user.test", b"value1");
        set_xattr(
            &root.join("usr/share/xattr.txt"),
            "user.other",
            b"\x00\x01binary",
        );
    }
    write_file(&root.join("etc/empty-file"), b"", 0o600);
    write_file(&root.join("etc/group-writable"), b"gw\n", 0o664);
    // 600 KB of poorly compressible bytes.
    let mut state: u32 = 12345;
    let big: Vec<u8> = (0..600_000)
        .map(|_| {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (state >> 16) as u8
        })
        .collect();
    write_file(&root.join("usr/lib/big.bin"), &big, 0o644);
    for index in 0..20 {
        write_file(
            &root.join(format!("usr/lib/many/file{index:02}")),
            format!("file {index}\n").repeat(index + 1).as_bytes(),
            0o644,
        );
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
        let outcome = match object.kind {
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
        };
        if outcome == WriteOutcome::Written {
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

/// What a checkout entry is, for comparison: everything but times and link counts.
#[derive(Debug, PartialEq, Eq)]
pub struct Entry {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    contents: Vec<u8>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

fn xattrs_of(path: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut names = vec![0u8; 65536];
    let length = rustix::fs::llistxattr(path, &mut names[..]).expect("list xattrs");
    let mut xattrs: Vec<(Vec<u8>, Vec<u8>)> = names[..length]
        .split(|&b| b == 0)
        .filter(|name| !name.is_empty())
        .map(|name| {
            let mut value = vec![0u8; 65536];
            let size = rustix::fs::lgetxattr(path, name, &mut value[..]).expect("get xattr");
            (name.to_vec(), value[..size].to_vec())
        })
        .collect();
    xattrs.sort();
    xattrs
}

/// Every entry under `root`, by relative path.
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, Entry> {
    let mut entries = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for item in fs::read_dir(&dir).expect("read dir") {
            let path = item.expect("dir entry").path();
            let metadata = fs::symlink_metadata(&path).expect("lstat");
            let (kind, contents) = if metadata.file_type().is_symlink() {
                let target = fs::read_link(&path).expect("readlink");
                ("symlink", target.into_os_string().into_encoded_bytes())
            } else if metadata.is_dir() {
                pending.push(path.clone());
                ("dir", Vec::new())
            } else {
                ("file", fs::read(&path).expect("read"))
            };
            let relative = path.strip_prefix(root).expect("under root").to_path_buf();
            entries.insert(
                relative,
                Entry {
                    kind,
                    mode: metadata.mode(),
                    uid: metadata.uid(),
                    gid: metadata.gid(),
                    contents,
                    xattrs: xattrs_of(&path),
                },
            );
        }
    }
    entries
}

/// Fails the test with the first differences when two checkouts differ.
pub fn assert_same_tree(expected: &Path, actual: &Path) {
    let expected_entries = snapshot(expected);
    let actual_entries = snapshot(actual);
    assert!(
        !expected_entries.is_empty(),
        "the expected checkout is empty"
    );
    let mut differences = Vec::new();
    for (path, entry) in &expected_entries {
        match actual_entries.get(path) {
            None => differences.push(format!("{} is missing", path.display())),
            Some(other) if other != entry => differences.push(format!(
                "{} differs: expected {:?}, got {:?}",
                path.display(),
                summary(entry),
                summary(other)
            )),
            Some(_) => {}
        }
    }
    for path in actual_entries.keys() {
        if !expected_entries.contains_key(path) {
            differences.push(format!("{} is unexpected", path.display()));
        }
    }
    assert!(
        differences.is_empty(),
        "{} and {} differ:\n{}",
        expected.display(),
        actual.display(),
        differences.join("\n")
    );
}

fn summary(entry: &Entry) -> String {
    format!(
        "{} mode {:o} {}:{} {} bytes xattrs {:?}",
        entry.kind,
        entry.mode,
        entry.uid,
        entry.gid,
        entry.contents.len(),
        entry.xattrs
    )
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
