//! Hostile repositories: dirtrees naming `..`, `a/b` or nothing, truncated and swapped
//! objects, ref files that are not checksums. Each is refused with an error that says what
//! and where, and nothing of it is stored.

mod repo_support;

use std::fs;

use ferry_engine::object::{
    metadata_checksum, Checksum, Commit, DirTree, DirTreeDir, DirTreeFile, FormatError, Metadata,
    ObjectId, ObjectKind,
};
use ferry_engine::repo::{RefLocation, Repo, RepoError, RepoMode};
use repo_support::*;
use tempfile::TempDir;

fn source_repo(work: &std::path::Path) -> (Repo, Checksum) {
    let tree = work.join("tree");
    make_tree(&tree, false);
    let path = work.join("source");
    init_repo(&path, RepoMode::Archive, None);
    let head = commit(&path, CommitSpec::new("os/stable", &tree));
    (
        Repo::open(&path).expect("open"),
        Checksum::from_hex(&head).expect("hex"),
    )
}

/// Writes `bytes` as an object file of `source`, bypassing every check.
fn plant(repo: &Repo, kind: ObjectKind, bytes: &[u8]) -> Checksum {
    let checksum = metadata_checksum(bytes);
    let path = repo.object_path(ObjectId::new(checksum, kind));
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    fs::write(&path, bytes).expect("plant");
    checksum
}

#[test]
fn dirtrees_naming_escapes_are_refused() {
    let work = TempDir::new().expect("tempdir");
    let (source, head) = source_repo(work.path());
    let real = source.read_commit(&head).expect("commit");
    let dest = Repo::init(&work.path().join("dest"), RepoMode::BareUser, None).expect("init");
    let some_file = closure(&source, &head)
        .into_iter()
        .find(|o| o.kind == ObjectKind::File)
        .expect("a file");
    for hostile in ["..", "a/b", "", "."] {
        for as_dir in [false, true] {
            let tree = if as_dir {
                DirTree {
                    files: vec![],
                    dirs: vec![DirTreeDir {
                        name: hostile.to_owned(),
                        tree: real.root_tree,
                        meta: real.root_meta,
                    }],
                }
            } else {
                DirTree {
                    files: vec![DirTreeFile {
                        name: hostile.to_owned(),
                        checksum: some_file.checksum,
                    }],
                    dirs: vec![],
                }
            };
            let bytes = tree.to_bytes().expect("serialise");
            let checksum = plant(&source, ObjectKind::DirTree, &bytes);
            // A commit pointing at it, as an attacker would publish.
            let evil = Commit {
                root_tree: checksum,
                parent: None,
                ..real.clone()
            };
            let commit_bytes = evil.to_bytes().expect("serialise");
            let evil_sum = plant(&source, ObjectKind::Commit, &commit_bytes);
            assert_eq!(
                source.read_commit(&evil_sum).expect("commit").root_tree,
                checksum
            );

            let read = source
                .read_metadata(ObjectKind::DirTree, &checksum)
                .expect("read");
            let error = DirTree::parse(&read).expect_err("refused");
            assert!(
                matches!(&error, FormatError::Name { source, .. } if source.to_string().contains("file name")),
                "{hostile:?}: {error}"
            );
            let error = dest
                .write_metadata(ObjectKind::DirTree, &checksum, &read)
                .expect_err("not stored");
            assert!(matches!(error, RepoError::Format { .. }), "{error}");
            assert!(!dest
                .has_object(ObjectId::new(checksum, ObjectKind::DirTree))
                .expect("has"));
        }
    }
}

#[test]
fn truncated_and_swapped_objects_are_refused() {
    let work = TempDir::new().expect("tempdir");
    let (source, head) = source_repo(work.path());
    let objects = closure(&source, &head);
    let dest = Repo::init(&work.path().join("dest"), RepoMode::BareUserOnly, None).expect("init");

    // A truncated .filez: the header or the compressed stream ends early.
    let big = objects
        .iter()
        .filter(|o| o.kind == ObjectKind::File)
        .max_by_key(|o| fs::metadata(source.object_path(**o)).expect("stat").len())
        .copied()
        .expect("a file");
    let big_path = source.object_path(big);
    let original = fs::read(&big_path).expect("read");
    for cut in [4, 20, original.len() / 2, original.len() - 1] {
        fs::write(&big_path, &original[..cut]).expect("truncate");
        let result = source
            .open_content(&big.checksum)
            .and_then(|(header, reader)| dest.write_content(&big.checksum, &header, reader));
        let error = result.expect_err("a truncated object is refused");
        let message = error.to_string();
        assert!(
            message.contains(&big.checksum.to_hex()),
            "the error names the object: {message}"
        );
        assert!(!dest.has_object(big).expect("has"));
    }
    // Extra bytes after the compressed stream are refused too.
    let mut extended = original.clone();
    extended.extend_from_slice(b"trailing");
    fs::write(&big_path, &extended).expect("extend");
    let (header, reader) = source.open_content(&big.checksum).expect("open");
    assert!(dest.write_content(&big.checksum, &header, reader).is_err());
    fs::write(&big_path, &original).expect("restore");

    // A well-formed .filez holding another object's content.
    let files: Vec<ObjectId> = objects
        .iter()
        .filter(|o| o.kind == ObjectKind::File)
        .copied()
        .collect();
    let (victim, impostor) = (files[0], files[1]);
    let victim_path = source.object_path(victim);
    let saved = fs::read(&victim_path).expect("read");
    fs::copy(source.object_path(impostor), &victim_path).expect("swap");
    let (header, reader) = source.open_content(&victim.checksum).expect("open");
    let error = dest
        .write_content(&victim.checksum, &header, reader)
        .expect_err("swapped content refused")
        .with_source(&source.path().display().to_string());
    let message = error.to_string();
    assert!(
        message.contains(&victim.checksum.to_hex())
            && message.contains(&impostor.checksum.to_hex())
            && message.contains(&source.path().display().to_string()),
        "{message}"
    );
    assert!(!dest.has_object(victim).expect("has"));
    fs::write(&victim_path, saved).expect("restore");

    // A truncated dirtree and commit.
    let tree = objects
        .iter()
        .find(|o| o.kind == ObjectKind::DirTree)
        .copied()
        .expect("a dirtree");
    let tree_path = source.object_path(tree);
    let bytes = fs::read(&tree_path).expect("read");
    fs::write(&tree_path, &bytes[..bytes.len() - 3]).expect("truncate");
    let read = source
        .read_metadata(ObjectKind::DirTree, &tree.checksum)
        .expect("read");
    assert!(DirTree::parse(&read).is_err());
    assert!(matches!(
        dest.write_metadata(ObjectKind::DirTree, &tree.checksum, &read),
        Err(RepoError::ChecksumMismatch { .. })
    ));
    let commit_path = source.object_path(ObjectId::new(head, ObjectKind::Commit));
    let bytes = fs::read(&commit_path).expect("read");
    fs::write(&commit_path, &bytes[..bytes.len() / 2]).expect("truncate");
    assert!(source.read_commit(&head).is_err());

    // A missing object is reported as missing.
    let error = source
        .read_metadata(ObjectKind::DirMeta, &Checksum::from_array([7; 32]))
        .expect_err("missing");
    assert!(error.is_missing(), "{error}");
}

#[test]
fn ref_files_that_are_not_checksums_are_refused() {
    let work = TempDir::new().expect("tempdir");
    let (source, head) = source_repo(work.path());
    let bad = source.path().join("refs/heads/os/broken");
    for contents in [
        "not hex at all\n".to_owned(),
        head.to_hex().to_uppercase(),
        format!("{head}\n\n"),
        head.to_hex()[..63].to_owned(),
    ] {
        fs::write(&bad, &contents).expect("write");
        let error = source
            .resolve_ref(&RefLocation::head("os/broken"))
            .expect_err("refused");
        assert!(
            matches!(&error, RepoError::BadRef { path, .. } if path.ends_with("refs/heads/os/broken")),
            "{error}"
        );
        // Listing reports the bad ref and still reads the good one.
        let entries = source.ref_entries().expect("list");
        assert_eq!(entries.len(), 2);
        assert!(entries
            .iter()
            .any(|e| e.location == RefLocation::head("os/stable")
                && e.commit.as_ref().ok() == Some(&head)));
        assert!(entries
            .iter()
            .any(|e| e.location == RefLocation::head("os/broken") && e.commit.is_err()));
        assert!(source.list_refs().is_err());
    }
    // Ref names that leave refs/ are refused before touching the disk.
    for name in ["../../config", "/etc/passwd", "a//b", ""] {
        assert!(matches!(
            source.resolve_ref(&RefLocation::head(name)),
            Err(RepoError::InvalidName(_))
        ));
        assert!(source.write_ref(&RefLocation::head(name), &head).is_err());
    }
    // A symlinked ref leading out of the repository is not followed.
    fs::remove_file(&bad).expect("remove");
    let outside = work.path().join("outside-ref");
    fs::write(&outside, format!("{head}\n")).expect("write");
    std::os::unix::fs::symlink(&outside, &bad).expect("symlink");
    assert!(source.resolve_ref(&RefLocation::head("os/broken")).is_err());
    // A name that looks like a checksum is refused, as ostree refuses it.
    assert!(source
        .write_ref(&RefLocation::head(&head.to_hex()), &head)
        .is_err());
}

#[test]
fn detached_metadata_round_trips_in_ostree_format() {
    let work = TempDir::new().expect("tempdir");
    let (source, head) = source_repo(work.path());
    let mut meta = Metadata::new();
    meta.insert_byte_arrays("ostree.sign.ed25519", &[[0x42u8; 64]])
        .expect("insert");
    let bytes = meta.to_bytes().expect("serialise");
    source.write_commitmeta(&head, &bytes).expect("write");
    assert_eq!(source.read_commitmeta(&head).expect("read"), Some(bytes));
    // ostree reads it back.
    let shown = ostree(&[
        "show",
        &repo_arg(source.path()),
        "--print-detached-metadata-key=ostree.sign.ed25519",
        "os/stable",
    ]);
    assert!(shown.contains("0x42"), "{shown}");
    assert!(source.write_commitmeta(&head, b"\x01garbage").is_err());
}
