//! Ferry reads what the real `ostree` writes: every object of repositories in each mode
//! parses and recomputes to its name, refs and configs read back, and summaries (with a
//! collection map, from `ostree summary -u` and `ostree create-usb`) parse.

mod repo_support;

use std::fs;

use ferry_engine::object::{Checksum, Summary};
use ferry_engine::repo::{CollectionRef, RefLocation, Repo, RepoMode};
use ferry_tests::assert_root;
use repo_support::*;
use tempfile::TempDir;

const COLLECTION: &str = "org.example.Os";

#[test]
fn every_object_of_real_repositories_verifies_in_each_mode() {
    let work = TempDir::new().expect("tempdir");
    let tree = work.path().join("tree");
    make_tree(&tree, true);
    let plain_tree = work.path().join("plain-tree");
    make_tree(&plain_tree, false);
    for mode in RepoMode::ALL {
        if mode == RepoMode::Bare {
            assert_root("a bare repository");
        }
        let path = work.path().join(format!("repo-{mode}"));
        init_repo(&path, mode, Some(COLLECTION));
        // bare-user-only cannot hold xattrs; ostree itself would store them wrongly.
        let source_tree = if mode == RepoMode::BareUserOnly {
            &plain_tree
        } else {
            &tree
        };
        let first = commit(
            &path,
            CommitSpec::new("os/stable", source_tree)
                .subject("first")
                .version("1.0")
                .generate_sizes(),
        );
        fs::write(source_tree.join("usr/share/second.txt"), b"second\n").expect("write");
        let second = commit(
            &path,
            CommitSpec::new("os/stable", source_tree).subject("second"),
        );
        fs::remove_file(source_tree.join("usr/share/second.txt")).expect("remove");

        let repo = Repo::open(&path).expect("open");
        assert_eq!(repo.mode(), mode);
        assert_eq!(repo.collection_id(), Some(COLLECTION));
        let counts = verify_every_object(&repo);
        assert_eq!(counts.get("commit"), Some(&2), "{mode}: {counts:?}");
        assert!(
            counts.get("file").copied().unwrap_or(0) > 25,
            "{mode}: {counts:?}"
        );
        assert!(
            counts.get("dirtree").copied().unwrap_or(0) > 5,
            "{mode}: {counts:?}"
        );

        let head = RefLocation::head("os/stable");
        let second_sum = Checksum::from_hex(&second).expect("hex");
        assert_eq!(repo.resolve_ref(&head).expect("resolve"), Some(second_sum));
        let commit = repo.read_commit(&second_sum).expect("commit");
        assert_eq!(
            commit.parent,
            Some(Checksum::from_hex(&first).expect("hex"))
        );
        assert_eq!(commit.subject, "second");
        let first_commit = repo
            .read_commit(&Checksum::from_hex(&first).expect("hex"))
            .expect("first");
        assert_eq!(first_commit.version(), Some("1.0"));
        if mode == RepoMode::Archive {
            let sizes = first_commit.sizes().expect("sizes").expect("present");
            assert!(sizes.len() > 25, "{} sizes", sizes.len());
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        assert!(
            commit.timestamp <= now && commit.timestamp + 3600 > now,
            "timestamp {} read big-endian",
            commit.timestamp
        );
        let collection_refs = repo.collection_refs(false).expect("collection refs");
        assert_eq!(
            collection_refs,
            vec![(
                CollectionRef {
                    collection_id: Some(COLLECTION.to_owned()),
                    name: "os/stable".to_owned()
                },
                second_sum
            )]
        );
    }
}

#[test]
fn archive_symlink_and_xattr_headers_match_ostree() {
    let work = TempDir::new().expect("tempdir");
    let tree = work.path().join("tree");
    make_tree(&tree, true);
    let path = work.path().join("repo");
    init_repo(&path, RepoMode::Archive, None);
    commit(&path, CommitSpec::new("main", &tree));
    let repo = Repo::open(&path).expect("open");
    // `ostree ls -C` prints each file's content checksum: find the symlink and xattr file.
    let listing = ostree(&["ls", &repo_arg(&path), "-R", "-C", "-X", "main"]);
    let mut seen_symlink = false;
    let mut seen_xattrs = false;
    for line in listing.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if line.ends_with("/usr/share/link -> hello.txt") {
            let (header, _) = repo
                .open_content(&Checksum::from_hex(fields[4]).expect("hex"))
                .expect("open symlink");
            assert!(header.is_symlink());
            assert_eq!(header.symlink_target, "hello.txt");
            seen_symlink = true;
        }
        if line.ends_with("/usr/share/xattr.txt") {
            let (header, _) = repo
                .open_content(&Checksum::from_hex(fields[4]).expect("hex"))
                .expect("open");
            let names: Vec<&[u8]> = header.xattrs.iter().map(|x| x.name.as_slice()).collect();
            assert_eq!(names, vec![&b"user.other"[..], &b"user.test"[..]]);
            assert_eq!(header.xattrs[1].value, b"value1");
            seen_xattrs = true;
        }
    }
    assert!(seen_symlink && seen_xattrs, "listing:\n{listing}");
}

#[test]
fn summaries_with_collection_ids_and_maps_parse() {
    let work = TempDir::new().expect("tempdir");
    let tree = work.path().join("tree");
    make_tree(&tree, false);
    let path = work.path().join("repo");
    init_repo(&path, RepoMode::Archive, Some(COLLECTION));
    let stable = commit(&path, CommitSpec::new("os/stable", &tree).version("2.5"));
    let beta = commit(&path, CommitSpec::new("os/beta", &tree).subject("beta"));
    ostree(&["summary", &repo_arg(&path), "-u"]);

    let bytes = fs::read(path.join("summary")).expect("summary");
    let summary = Summary::parse(&bytes).expect("parse summary");
    assert_eq!(summary.collection_id.as_deref(), Some(COLLECTION));
    let names: Vec<&str> = summary.refs.iter().map(|r| r.name.as_str()).collect();
    // With a collection ID, `summary -u` also makes the ostree-metadata ref.
    assert_eq!(names, vec!["os/beta", "os/stable", "ostree-metadata"]);
    let stable_ref = summary
        .lookup(Some(COLLECTION), "os/stable")
        .expect("stable");
    assert_eq!(stable_ref.commit.to_hex(), stable);
    assert_eq!(stable_ref.version(), Some("2.5"));
    let repo = Repo::open(&path).expect("open");
    let commit_bytes = repo
        .read_metadata(
            ferry_engine::object::ObjectKind::Commit,
            &Checksum::from_hex(&stable).expect("hex"),
        )
        .expect("commit bytes");
    assert_eq!(
        stable_ref.commit_size,
        commit_bytes.len() as u64,
        "size is not byte-swapped"
    );
    let commit = repo.read_commit(&stable_ref.commit).expect("commit");
    assert_eq!(stable_ref.timestamp(), Some(commit.timestamp));
    assert_eq!(
        summary.lookup(None, "os/beta").map(|r| r.commit.to_hex()),
        Some(beta.clone())
    );
    let last_modified = summary.last_modified().expect("last-modified");
    assert!(last_modified >= commit.timestamp);

    // create-usb: a mirror repository whose summary lists the refs in a collection map.
    let usb = work.path().join("usb");
    fs::create_dir(&usb).expect("usb dir");
    ostree(&[
        "create-usb",
        &repo_arg(&path),
        &usb.display().to_string(),
        COLLECTION,
        "os/stable",
        COLLECTION,
        "os/beta",
    ]);
    let mirror_path = usb.join(".ostree/repo");
    let bytes = fs::read(mirror_path.join("summary")).expect("usb summary");
    let summary = Summary::parse(&bytes).expect("parse usb summary");
    assert_eq!(summary.collection_id, None);
    assert!(summary.refs.is_empty(), "{:?}", summary.refs);
    assert_eq!(summary.collection_map.len(), 1);
    assert_eq!(summary.collection_map[0].0, COLLECTION);
    let mapped: Vec<(Option<&str>, &str, String)> = summary
        .collection_refs()
        .map(|(cid, r)| (cid, r.name.as_str(), r.commit.to_hex()))
        .collect();
    assert_eq!(
        mapped,
        vec![
            (Some(COLLECTION), "os/beta", beta.clone()),
            (Some(COLLECTION), "os/stable", stable.clone())
        ]
    );
    let mirror = Repo::open(&mirror_path).expect("open usb repo");
    assert_eq!(mirror.mode(), RepoMode::Archive);
    assert_eq!(mirror.collection_id(), None);
    assert_eq!(
        mirror
            .resolve_collection_ref(
                &CollectionRef {
                    collection_id: Some(COLLECTION.to_owned()),
                    name: "os/stable".to_owned()
                },
                false
            )
            .expect("resolve"),
        Some(Checksum::from_hex(&stable).expect("hex"))
    );
    let counts = verify_every_object(&mirror);
    assert_eq!(counts.get("commit"), Some(&2));
}

#[test]
fn config_remotes_and_refs_written_by_ostree_read_back() {
    let work = TempDir::new().expect("tempdir");
    let path = work.path().join("repo");
    init_repo(&path, RepoMode::BareUser, None);
    ostree(&[
        "remote",
        "add",
        &repo_arg(&path),
        "--no-gpg-verify",
        "--collection-id=org.example.Os",
        "origin",
        "https://example.org/repo",
    ]);
    ostree(&[
        "config",
        &repo_arg(&path),
        "set",
        "core.min-free-space-size",
        "12MB",
    ]);
    let tree = work.path().join("tree");
    make_tree(&tree, false);
    let head = commit(&path, CommitSpec::new("local/ref", &tree));
    ostree(&["refs", &repo_arg(&path), "--create=origin:os/stable", &head]);

    let repo = Repo::open(&path).expect("open");
    let remote = repo.remote("origin").expect("origin");
    assert_eq!(remote.url(), Some("https://example.org/repo"));
    assert_eq!(remote.gpg_verify(), Ok(false));
    assert_eq!(remote.collection_id(), Some("org.example.Os"));
    assert_eq!(
        repo.config().min_free_space,
        ferry_engine::repo::MinFreeSpace::Megabytes(12)
    );
    let head = Checksum::from_hex(&head).expect("hex");
    let refs = repo.list_refs().expect("refs");
    assert_eq!(
        refs,
        vec![
            (RefLocation::head("local/ref"), head),
            (RefLocation::remote("origin", "os/stable"), head)
        ]
    );
    // Remote refs carry the remote's collection ID.
    let with_remotes = repo.collection_refs(true).expect("collection refs");
    assert!(with_remotes.contains(&(
        CollectionRef {
            collection_id: Some("org.example.Os".to_owned()),
            name: "os/stable".to_owned()
        },
        head
    )));
    assert_eq!(repo.collection_refs(false).expect("refs").len(), 1);

    // A ref Ferry writes is one ostree reads.
    repo.write_ref(&RefLocation::mirror("org.example.Other", "a/b/c"), &head)
        .expect("write ref");
    let listed = ostree(&["refs", &repo_arg(&path), "--collections"]);
    assert!(listed.contains("(org.example.Other, a/b/c)"), "{listed}");
    assert_eq!(
        ostree(&["rev-parse", &repo_arg(&path), "origin:os/stable"]),
        head.to_hex()
    );
    repo.delete_ref(&RefLocation::remote("origin", "os/stable"))
        .expect("delete");
    assert_eq!(
        repo.resolve_ref(&RefLocation::remote("origin", "os/stable"))
            .expect("resolve"),
        None
    );
}

#[test]
fn a_repository_ferry_creates_is_one_ostree_accepts() {
    let work = TempDir::new().expect("tempdir");
    for mode in RepoMode::ALL {
        let path = work.path().join(format!("ferry-{mode}"));
        let repo = Repo::init(&path, mode, Some(COLLECTION)).expect("init");
        assert_eq!(repo.mode(), mode);
        let expected_mode = if mode == RepoMode::Archive {
            "archive-z2"
        } else {
            mode.as_str()
        };
        assert_eq!(
            ostree(&["config", &repo_arg(&path), "get", "core.mode"]),
            expected_mode
        );
        assert_eq!(
            ostree(&["config", &repo_arg(&path), "get", "core.collection-id"]),
            COLLECTION
        );
        assert_fsck(&path);
        assert!(Repo::init(&path, mode, None).is_err(), "init twice");
    }
}

#[test]
fn partial_markers_summary_files_and_free_space() {
    let work = TempDir::new().expect("tempdir");
    let tree = work.path().join("tree");
    make_tree(&tree, false);
    let path = work.path().join("repo");
    init_repo(&path, RepoMode::Archive, Some(COLLECTION));
    let head =
        Checksum::from_hex(&commit(&path, CommitSpec::new("os/stable", &tree))).expect("hex");
    let repo = Repo::open(&path).expect("open");

    // ostree sees Ferry's commitpartial marker.
    assert!(!repo.is_partial(&head).expect("partial"));
    repo.mark_partial(&head).expect("mark");
    repo.mark_partial(&head).expect("marking twice is fine");
    assert!(repo.is_partial(&head).expect("partial"));
    let fsck = ostree(&["fsck", &repo_arg(&path)]);
    assert!(fsck.contains("1 partial commits not verified"), "{fsck}");
    repo.clear_partial(&head).expect("clear");
    repo.clear_partial(&head).expect("clearing twice is fine");
    assert!(!repo.is_partial(&head).expect("partial"));
    let fsck = ostree(&["fsck", &repo_arg(&path)]);
    assert!(!fsck.contains("partial"), "{fsck}");

    assert_eq!(repo.read_summary().expect("summary"), None);
    ostree(&["summary", &repo_arg(&path), "-u"]);
    let bytes = repo.read_summary().expect("summary").expect("present");
    let summary = Summary::parse(&bytes).expect("parse");
    assert_eq!(
        summary
            .lookup(Some(COLLECTION), "os/stable")
            .map(|r| r.commit),
        Some(head)
    );
    assert_eq!(repo.read_summary_signatures().expect("sig"), None);

    // The default reserve is 3% of the filesystem, whatever the disk holds today.
    let space = repo.free_space().expect("space");
    let disk = rustix::fs::statvfs(&path).expect("statvfs");
    let total = disk.f_blocks * disk.f_frsize;
    assert_eq!(space.reserved, total / 100 * 3, "{space:?}");
    assert!(matches!(
        repo.check_free_space(space.usable() + 1),
        Err(ferry_engine::repo::RepoError::NoSpace { .. })
    ));
    // Without a reserve one byte fits; a reserve larger than the disk refuses.
    ostree(&[
        "config",
        &repo_arg(&path),
        "set",
        "core.min-free-space-size",
        "0MB",
    ]);
    let repo = Repo::open(&path).expect("reopen");
    assert_eq!(repo.free_space().expect("space").reserved, 0);
    repo.check_free_space(1).expect("one byte fits");
    ostree(&[
        "config",
        &repo_arg(&path),
        "set",
        "core.min-free-space-size",
        "999999999TB",
    ]);
    let repo = Repo::open(&path).expect("reopen");
    assert!(repo.check_free_space(1).is_err());
}
