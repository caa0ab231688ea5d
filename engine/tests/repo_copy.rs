//! Objects Ferry writes are objects ostree accepts: a commit's closure copied with Ferry's
//! read and write API, from an archive and from a bare-user repository into fresh
//! repositories of all four modes, passes `ostree fsck`, and `ostree checkout` of the copy
//! equals the checkout of the source byte for byte, with modes, xattrs and (as root)
//! ownership.

mod repo_support;

use std::fs;
use std::sync::Arc;

use ferry_engine::object::{Checksum, FileHeader, ObjectKind, Xattr};
use ferry_engine::repo::{RefLocation, Repo, RepoError, RepoMode, WriteOutcome};
use ferry_tests::assert_root;
use ferry_tests::tree::standard;
use repo_support::*;
use tempfile::TempDir;

struct Source {
    path: std::path::PathBuf,
    /// A commit of a tree with xattrs.
    full: Checksum,
    /// A commit of the same tree without xattrs, for bare-user-only.
    plain: Checksum,
}

fn make_source(work: &std::path::Path, mode: RepoMode) -> Source {
    let tree = work.join(format!("tree-{mode}"));
    make_tree(&tree, true);
    let plain_tree = work.join(format!("plain-tree-{mode}"));
    make_tree(&plain_tree, false);
    let path = work.join(format!("source-{mode}"));
    init_repo(&path, mode, None);
    let full = commit(&path, CommitSpec::new("os/full", &tree).subject("full"));
    let plain = commit(
        &path,
        CommitSpec::new("os/plain", &plain_tree).subject("plain"),
    );
    Source {
        path,
        full: Checksum::from_hex(&full).expect("hex"),
        plain: Checksum::from_hex(&plain).expect("hex"),
    }
}

#[test]
fn closures_copied_into_every_mode_check_out_identically() {
    let work = TempDir::new().expect("tempdir");
    for source_mode in [RepoMode::Archive, RepoMode::BareUser] {
        let source = make_source(work.path(), source_mode);
        let source_repo = Repo::open(&source.path).expect("open source");
        for dest_mode in RepoMode::ALL {
            if dest_mode == RepoMode::Bare {
                assert_root("a bare destination");
            }
            let (commit, branch) = if dest_mode == RepoMode::BareUserOnly {
                (source.plain, "os/plain")
            } else {
                (source.full, "os/full")
            };
            let dest_path = work.path().join(format!("{source_mode}-to-{dest_mode}"));
            let dest = Repo::init(&dest_path, dest_mode, None).expect("init dest");
            let written = copy_commit(&source_repo, &dest, &commit, branch);
            assert!(
                written > 25,
                "{source_mode} -> {dest_mode}: {written} written"
            );
            assert!(!dest.is_partial(&commit).expect("partial"));
            assert_fsck(&dest_path);

            let expected = work
                .path()
                .join(format!("co-{source_mode}-{dest_mode}-source"));
            let actual = work
                .path()
                .join(format!("co-{source_mode}-{dest_mode}-dest"));
            checkout(&source.path, branch, &expected);
            checkout(&dest_path, branch, &actual);
            assert_same_tree(&expected, &actual);
            if dest_mode != RepoMode::BareUserOnly {
                let xattrs = fs::read(actual.join(standard::XATTR_FILE)).expect("read");
                assert_eq!(xattrs, standard::XATTR_FILE_CONTENT.as_bytes());
            }

            // Copying again writes nothing: every object is already there.
            assert_eq!(copy_commit(&source_repo, &dest, &commit, branch), 0);
            // And Ferry reads back what it wrote.
            let counts = verify_every_object(&dest);
            assert_eq!(counts.get("commit"), Some(&1));
        }
    }
}

#[test]
fn archive_objects_copy_without_recompressing() {
    let work = TempDir::new().expect("tempdir");
    let source = make_source(work.path(), RepoMode::Archive);
    let source_repo = Repo::open(&source.path).expect("open");
    let dest_path = work.path().join("dest");
    let dest = Repo::init(&dest_path, RepoMode::Archive, None).expect("init");
    for object in closure(&source_repo, &source.full) {
        if object.kind == ObjectKind::File {
            let archived = source_repo
                .open_archived_content(&object.checksum)
                .expect("open archived");
            assert_eq!(
                dest.write_archived_content(&object.checksum, archived.file)
                    .expect("write archived"),
                WriteOutcome::Written
            );
            assert_eq!(
                fs::read(source_repo.object_path(object)).expect("source"),
                fs::read(dest.object_path(object)).expect("dest"),
                "copied as is"
            );
        } else {
            copy_object(&source_repo, &dest, object);
        }
    }
    dest.write_ref(&RefLocation::head("os/full"), &source.full)
        .expect("ref");
    assert_fsck(&dest_path);

    // A well-formed .filez holding other content is refused and leaves nothing behind.
    let objects = closure(&source_repo, &source.full);
    let files: Vec<_> = objects
        .iter()
        .filter(|o| o.kind == ObjectKind::File)
        .collect();
    let other_dest = Repo::init(&work.path().join("other"), RepoMode::Archive, None).expect("init");
    let victim = files[0];
    let impostor = files[1];
    let bytes = fs::read(source_repo.object_path(*impostor)).expect("read");
    let error = other_dest
        .write_archived_content(&victim.checksum, bytes.as_slice())
        .expect_err("mismatch refused");
    assert!(
        matches!(error, RepoError::ChecksumMismatch { actual, .. } if actual == impostor.checksum),
        "{error}"
    );
    assert!(!other_dest.has_object(*victim).expect("has"));
    assert_no_temp_files(other_dest.path());
}

fn assert_no_temp_files(repo: &std::path::Path) {
    let leftovers: Vec<_> = fs::read_dir(repo.join("tmp"))
        .expect("tmp")
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .filter(|name| name.to_string_lossy().starts_with("ferry-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn bare_user_only_refuses_content_it_cannot_represent() {
    let work = TempDir::new().expect("tempdir");
    let source = make_source(work.path(), RepoMode::Archive);
    let source_repo = Repo::open(&source.path).expect("open");
    let dest = Repo::init(&work.path().join("buo"), RepoMode::BareUserOnly, None).expect("init");

    // The xattr tree's file with user.* xattrs: refused with a clear error.
    let listing = ostree(&[
        "ls",
        &repo_arg(&source.path),
        "-R",
        "-C",
        "os/full",
        "/usr/share/xattr.txt",
    ]);
    let checksum = listing
        .split_whitespace()
        .nth(4)
        .and_then(|hex| Checksum::from_hex(hex).ok())
        .expect("checksum in listing");
    let (header, reader) = source_repo.open_content(&checksum).expect("open");
    assert!(!header.xattrs.is_empty());
    let error = dest
        .write_content(&checksum, &header, reader)
        .expect_err("xattrs refused");
    let message = error.to_string();
    assert!(
        matches!(error, RepoError::Unrepresentable { .. }) && message.contains("user.test"),
        "{message}"
    );
    assert!(!dest
        .has_object(ferry_engine::object::ObjectId::new(
            checksum,
            ObjectKind::File
        ))
        .expect("has"));

    // Ownership and setuid bits are refused too.
    let content = b"suid\n";
    let suid = FileHeader::regular(0, 0, 0o4755, content.len() as u64);
    let suid_sum = ferry_engine::object::ContentHasher::checksum(&suid, content).expect("sum");
    assert!(matches!(
        dest.write_content(&suid_sum, &suid, &content[..]),
        Err(RepoError::Unrepresentable { .. })
    ));
    let owned = FileHeader::regular(1000, 1000, 0o644, content.len() as u64);
    let owned_sum = ferry_engine::object::ContentHasher::checksum(&owned, content).expect("sum");
    assert!(matches!(
        dest.write_content(&owned_sum, &owned, &content[..]),
        Err(RepoError::Unrepresentable { .. })
    ));
    // Plain root-owned content goes in.
    let plain = FileHeader::regular(0, 0, 0o755, content.len() as u64);
    let plain_sum = ferry_engine::object::ContentHasher::checksum(&plain, content).expect("sum");
    assert_eq!(
        dest.write_content(&plain_sum, &plain, &content[..])
            .expect("write"),
        WriteOutcome::Written
    );
    assert_no_temp_files(dest.path());
}

#[test]
fn wrong_checksums_and_sizes_store_nothing() {
    let work = TempDir::new().expect("tempdir");
    for mode in RepoMode::ALL {
        if mode == RepoMode::Bare {
            assert_root("a bare repository");
        }
        let repo = Repo::init(&work.path().join(format!("repo-{mode}")), mode, None).expect("init");
        let content = b"real content\n";
        let header = FileHeader::regular(0, 0, 0o644, content.len() as u64);
        let right = ferry_engine::object::ContentHasher::checksum(&header, content).expect("sum");
        let wrong = Checksum::from_array([0xab; 32]);
        let error = repo
            .write_content(&wrong, &header, &content[..])
            .expect_err("mismatch refused");
        let message = error.to_string();
        assert!(
            message.contains(&wrong.to_hex()) && message.contains(&right.to_hex()),
            "the error names both checksums: {message}"
        );
        assert!(!repo
            .has_object(ferry_engine::object::ObjectId::new(wrong, ObjectKind::File))
            .expect("has"));
        assert!(!repo
            .object_path(ferry_engine::object::ObjectId::new(wrong, ObjectKind::File))
            .exists());
        assert_no_temp_files(repo.path());

        // Content shorter or longer than its header says is refused.
        let short = FileHeader::regular(0, 0, 0o644, content.len() as u64 + 5);
        let short_sum =
            ferry_engine::object::ContentHasher::checksum(&short, content).expect("sum");
        assert!(matches!(
            repo.write_content(&short_sum, &short, &content[..]),
            Err(RepoError::ReadContent { .. })
        ));
        let long = FileHeader::regular(0, 0, 0o644, 4);
        let long_sum =
            ferry_engine::object::ContentHasher::checksum(&long, &content[..4]).expect("sum");
        assert!(matches!(
            repo.write_content(&long_sum, &long, &content[..]),
            Err(RepoError::ReadContent { .. })
        ));
        assert_no_temp_files(repo.path());

        // Metadata that does not hash to its name is refused.
        let error = repo
            .write_metadata(ObjectKind::DirMeta, &wrong, b"not a dirmeta")
            .expect_err("mismatch refused");
        assert!(
            matches!(error, RepoError::ChecksumMismatch { .. }),
            "{error}"
        );
        assert_no_temp_files(repo.path());

        // The right checksum works, symlinks included, and names are what ostree expects.
        assert_eq!(
            repo.write_content(&right, &header, &content[..])
                .expect("write"),
            WriteOutcome::Written
        );
        let link = FileHeader::symlink(0, 0, "target/of/link");
        let link_sum = ferry_engine::object::ContentHasher::checksum(&link, b"").expect("sum");
        repo.write_content(&link_sum, &link, &b""[..])
            .expect("symlink");
        let (read_back, _) = repo.open_content(&link_sum).expect("read symlink");
        assert_eq!(read_back, link);
    }
}

#[test]
fn several_threads_write_into_one_repository() {
    let work = TempDir::new().expect("tempdir");
    let source = make_source(work.path(), RepoMode::Archive);
    let source_repo = Arc::new(Repo::open(&source.path).expect("open"));
    let dest_path = work.path().join("dest");
    let dest = Arc::new(Repo::init(&dest_path, RepoMode::BareUser, None).expect("init"));
    let objects = Arc::new(closure(&source_repo, &source.full));
    let lock = dest
        .lock(ferry_engine::repo::LockKind::Shared, None)
        .expect("lock");
    let workers: Vec<_> = (0..3)
        .map(|worker| {
            let (source_repo, dest, objects) = (source_repo.clone(), dest.clone(), objects.clone());
            std::thread::spawn(move || {
                // Every worker writes every object, so they race on the same names.
                for object in objects.iter().skip(worker) {
                    copy_object(&source_repo, &dest, *object);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("worker");
    }
    drop(lock);
    dest.sync().expect("sync");
    dest.write_ref(&RefLocation::head("os/full"), &source.full)
        .expect("ref");
    assert_fsck(&dest_path);
    assert_no_temp_files(&dest_path);
}

#[test]
fn xattr_round_trip_in_bare_user_metadata() {
    // user.ostreemeta written by Ferry is read by ostree: checked through `ostree ls -X`.
    let work = TempDir::new().expect("tempdir");
    let path = work.path().join("repo");
    let repo = Repo::init(&path, RepoMode::BareUser, None).expect("init");
    let content = b"x\n";
    let header = FileHeader::regular(1234, 5678, 0o640, 2).with_xattrs(vec![
        Xattr::new("user.z", "last"),
        Xattr::new("security.a", "first"),
    ]);
    let sum = ferry_engine::object::ContentHasher::checksum(&header, content).expect("sum");
    repo.write_content(&sum, &header, &content[..])
        .expect("write");
    let (read_back, mut reader) = repo.open_content(&sum).expect("open");
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut reader, &mut bytes).expect("read");
    assert_eq!(bytes, content);
    assert_eq!(read_back.uid, 1234);
    assert_eq!(read_back.gid, 5678);
    assert_eq!(read_back.permissions(), 0o640);
    assert_eq!(read_back.xattrs[0].name, b"security.a", "sorted by name");
    // The file itself is readable by its owner, whatever the recorded mode.
    let mode =
        fs::metadata(repo.object_path(ferry_engine::object::ObjectId::new(sum, ObjectKind::File)))
            .expect("stat")
            .permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o7777,
        0o640 | 0o400
    );
}
