//! Self-tests of the fixture builders: each builder produces what the real tools accept, and
//! each hostile edit is caught by the real tools.
//!
//! The `serial_*` tests mount filesystems or attach loop devices; `.config/nextest.toml`
//! names them in its `serial` test group, which runs them one at a time.

use std::fs;
use std::path::Path;

use anyhow::{ensure, Context, Result};
use ferry_tests::compare::{assert_trees_equal, diff_trees, CompareOptions};
use ferry_tests::flatpak::{self, AppSpec, FlatpakFixture, APP_ID, COLLECTION_ID, RUNTIME_ID};
use ferry_tests::gpg::GpgKey;
use ferry_tests::loopdev::{LoopImage, Mount};
use ferry_tests::ostree::{
    CheckoutMode, CommitSpec, ObjectKind, OstreeRepo, RefLocation, RemoteSpec, RepoMode,
};
use ferry_tests::publisher::{Publisher, BRANCH, COLLECTION};
use ferry_tests::sysroot::{Sysroot, OS_COLLECTION_ID, OS_REF, VERSION_FILE};
use ferry_tests::tamper;
use ferry_tests::tree::{standard, Tree, TreeOptions};
use ferry_tests::{bins, demo};
use tempfile::TempDir;

/// The publisher's key, tree, signed archive repository and 1.0 commit.
fn signed_repo(base: &Path) -> Result<(GpgKey, Tree, OstreeRepo, String)> {
    let publisher = Publisher::new(base, TreeOptions::full())?;
    Ok((
        publisher.key,
        publisher.tree,
        publisher.repo,
        publisher.commit,
    ))
}

#[test]
fn gpg_signed_commit_is_verified_by_ostree_and_other_keys_are_refused() -> Result<()> {
    let tmp = TempDir::new()?;
    let (key, _tree, repo, commit) = signed_repo(tmp.path())?;
    ensure!(key.fingerprint.len() == 40 && key.fingerprint.ends_with(&key.key_id));
    ensure!(key.public_keyring.is_file() && key.public_armored.is_file());
    ensure!(
        repo.path.join("summary.sig").is_file(),
        "summary is not signed"
    );
    repo.fsck()?;

    let client = OstreeRepo::init(&tmp.path().join("client"), RepoMode::BareUser, None)?;
    client.remote_add(
        &RemoteSpec::file("origin", &repo.path)
            .collection_id(COLLECTION)
            .trust(&key),
    )?;
    client.pull("origin", &[BRANCH])?;
    ensure!(client.rev_parse(&format!("origin:{BRANCH}"))? == commit);
    let location = RefLocation::Remote {
        remote: "origin".into(),
        name: BRANCH.into(),
    };
    ensure!(client.read_ref(&location)? == Some(commit.clone()));
    ensure!(repo.commit_metadata(&commit, "version")?.as_deref() == Some("1.0"));
    ensure!(repo.commit_metadata(&commit, "no.such.key")?.is_none());

    // The same content signed by a key the client does not trust is refused by ostree.
    let evil = GpgKey::generate(&tmp.path().join("evil-gnupg"), "Evil <evil@example.org>")?;
    ensure!(evil.fingerprint != key.fingerprint);
    let evil_repo = OstreeRepo::init(
        &tmp.path().join("evil"),
        RepoMode::Archive,
        Some(COLLECTION),
    )?;
    evil_repo.commit(&CommitSpec::new(BRANCH, &tmp.path().join("tree")).sign(&evil))?;
    evil_repo.update_summary(None)?;
    client.remote_add(
        &RemoteSpec::file("evilremote", &evil_repo.path)
            .collection_id(COLLECTION)
            .trust(&key),
    )?;
    let refused = client
        .ostree()
        .args(["pull", "evilremote", BRANCH])
        .run_failing()?;
    ensure!(
        refused.stderr.contains("public key not found"),
        "unexpected error: {}",
        refused.stderr
    );
    Ok(())
}

#[test]
fn standard_tree_survives_every_repo_mode_and_the_comparison_sees_changes() -> Result<()> {
    let tmp = TempDir::new()?;
    let (_key, tree, repo, commit) = signed_repo(tmp.path())?;
    for entry in [
        standard::HELLO,
        standard::EXECUTABLE,
        standard::XATTR_FILE,
        standard::DEEP_FILE,
    ] {
        ensure!(tree.path(entry).is_file(), "{entry} missing");
    }
    ensure!(fs::read_link(tree.path(standard::SYMLINK))? == Path::new(standard::SYMLINK_TARGET));
    ensure!(fs::read_dir(tree.path(standard::EMPTY_DIR))?
        .next()
        .is_none());
    ensure!(
        xattr::get(tree.path(standard::XATTR_FILE), standard::XATTR_NAME)?.as_deref()
            == Some(standard::XATTR_VALUE_V1)
    );

    let source_checkout = tmp.path().join("co-source");
    repo.checkout(&commit, &source_checkout, CheckoutMode::Plain)?;
    // Ownership only survives when the tree could be given a foreign owner (root).
    let full = if ferry_tests::is_root() {
        CompareOptions::everything()
    } else {
        CompareOptions::content_and_modes().with_xattrs()
    };
    assert_trees_equal(&tree.root, &source_checkout, &full)?;

    // bare-user-only stores neither xattrs nor ownership, so it only takes canonical commits
    // (checked below with the plain tree).
    for mode in [RepoMode::Archive, RepoMode::Bare, RepoMode::BareUser] {
        let dest = OstreeRepo::init(&tmp.path().join(format!("dest-{mode}")), mode, None)?;
        dest.pull_local(&repo.path, &[BRANCH], &["--untrusted"])?;
        dest.fsck()?;
        ensure!(dest.mode()? == mode);
        ensure!(dest.read_ref(&RefLocation::Head(BRANCH.into()))? == Some(commit.clone()));
        let content = dest.content_checksum(&commit, "/usr/share/hello.txt")?;
        ensure!(dest.object_path(&content, ObjectKind::Content)?.is_file());

        let checkout = tmp.path().join(format!("co-{mode}"));
        dest.checkout(&commit, &checkout, CheckoutMode::Plain)?;
        assert_trees_equal(&source_checkout, &checkout, &full)
            .with_context(|| format!("checkout from {mode}"))?;

        let user_checkout = tmp.path().join(format!("co-user-{mode}"));
        dest.checkout(&commit, &user_checkout, CheckoutMode::User)?;
        assert_trees_equal(
            &source_checkout,
            &user_checkout,
            &CompareOptions::content_and_modes(),
        )?;
    }

    let plain = Tree::standard(&tmp.path().join("plain-tree"), TreeOptions::plain())?;
    let canonical = repo.commit(&CommitSpec::new("plain", &plain.root).canonical())?;
    let buo = OstreeRepo::init(&tmp.path().join("dest-buo"), RepoMode::BareUserOnly, None)?;
    buo.pull_local(&repo.path, &[&canonical], &["--untrusted"])?;
    buo.fsck()?;
    let (buo_checkout, plain_checkout) = (tmp.path().join("co-buo"), tmp.path().join("co-plain"));
    buo.checkout(&canonical, &buo_checkout, CheckoutMode::User)?;
    repo.checkout(&canonical, &plain_checkout, CheckoutMode::User)?;
    assert_trees_equal(
        &plain_checkout,
        &buo_checkout,
        &CompareOptions::content_and_modes(),
    )?;

    // The comparison must notice content, mode, symlink and xattr changes.
    let altered = tmp.path().join("co-altered");
    repo.checkout(&commit, &altered, CheckoutMode::Plain)?;
    let altered_tree = Tree {
        root: altered.clone(),
        options: tree.options,
        generated: None,
    };
    altered_tree.write_file(standard::HELLO, "hellO\n")?;
    altered_tree.set_mode(standard::EXECUTABLE, 0o744)?;
    altered_tree.remove(standard::SYMLINK)?;
    altered_tree.symlink(standard::SYMLINK, "elsewhere")?;
    altered_tree.set_xattr(standard::XATTR_FILE, standard::XATTR_NAME, b"other")?;
    let diff = diff_trees(&source_checkout, &altered, &full)?;
    let text = diff.to_string();
    for expected in [
        "usr/share/hello.txt: contents differ",
        "usr/bin/hi: mode 755 vs 744",
        "usr/share/link: symlink",
        "usr/share/xattr.txt: xattrs",
    ] {
        ensure!(text.contains(expected), "diff misses {expected:?}:\n{text}");
    }
    ensure!(
        diff.differences.len() == 4,
        "unexpected differences:\n{text}"
    );
    Ok(())
}

#[test]
fn many_files_tree_and_second_commit_share_most_objects() -> Result<()> {
    let tmp = TempDir::new()?;
    let tree = Tree::many_files(&tmp.path().join("tree"), TreeOptions::full(), 7)?;
    let (spec, stats) = tree.generated.clone().context("generated part missing")?;
    ensure!(stats.files == spec.file_count() && stats.files > 2000);
    ensure!(
        stats.bytes > 3 * 1024 * 1024,
        "large files missing: {} bytes",
        stats.bytes
    );

    let repo = OstreeRepo::init(&tmp.path().join("repo"), RepoMode::Archive, None)?;
    let v1 = repo.commit(&CommitSpec::new("data", &tree.root).version("1"))?;
    let changed = tree.modify_for_second_commit(5)?;
    ensure!(changed.len() == 5);
    let v2 = repo.commit(&CommitSpec::new("data", &tree.root).version("2"))?;
    ensure!(v1 != v2);
    ensure!(repo.rev_parse("data")? == v2);
    ensure!(
        repo.rev_parse(&format!("{v2}^"))? == v1,
        "second commit's parent is not the first"
    );

    let dest = OstreeRepo::init(&tmp.path().join("dest"), RepoMode::BareUser, None)?;
    dest.pull_local(&repo.path, &[&v1], &[])?;
    let before = dest.count_objects()?;
    dest.pull_local(&repo.path, &["data"], &[])?;
    let after = dest.count_objects()?;
    let new_files =
        after.get("file").copied().unwrap_or(0) - before.get("file").copied().unwrap_or(0);
    // 5 rewritten data files, hello.txt, the added file; the xattr change makes a new object too.
    ensure!(
        (5..=8).contains(&new_files),
        "second commit added {new_files} content objects"
    );
    dest.fsck()?;
    Ok(())
}

#[test]
fn create_usb_writes_the_standard_layout_and_repos_d_variant() -> Result<()> {
    let tmp = TempDir::new()?;
    let (_key, _tree, repo, commit) = signed_repo(tmp.path())?;

    let drive = repo.create_usb(&tmp.path().join("usb"), &[(COLLECTION, BRANCH)])?;
    ensure!(drive.repo.path == tmp.path().join("usb/.ostree/repo"));
    ensure!(drive.mirror_commit(COLLECTION, BRANCH)? == commit);
    ensure!(drive.repo.path.join("summary").is_file());
    ensure!(
        !drive.repo.path.join("summary.sig").exists(),
        "create-usb signs no summary"
    );
    ensure!(drive.repo.mode()? == RepoMode::Archive);
    ensure!(drive
        .repo
        .collection_refs()?
        .contains(&(COLLECTION.to_string(), BRANCH.to_string())));
    drive.repo.fsck()?;

    let drive2 = repo.create_usb_repos_d(
        &tmp.path().join("usb2"),
        "updates/os",
        &[(COLLECTION, BRANCH)],
    )?;
    let link = tmp.path().join("usb2/.ostree/repos.d/00-generated");
    ensure!(fs::read_link(&link)? == Path::new("../../updates/os"));
    ensure!(drive2.repo.path == tmp.path().join("usb2/updates/os"));
    ensure!(drive2.mirror_commit(COLLECTION, BRANCH)? == commit);

    let outside = drive2.add_repos_d_symlink("10-escape", &repo.path)?;
    ensure!(fs::read_link(&outside)? == repo.path);
    Ok(())
}

#[test]
fn tampered_objects_are_well_formed_but_fail_fsck() -> Result<()> {
    let tmp = TempDir::new()?;
    let (_key, _tree, repo, commit) = signed_repo(tmp.path())?;

    // A copy per tamper kind, so each failure is attributable.
    let copy = |name: &str, mode: RepoMode| -> Result<OstreeRepo> {
        let dest = OstreeRepo::init(&tmp.path().join(name), mode, Some(COLLECTION))?;
        dest.pull_local(&repo.path, &[BRANCH], &[])?;
        dest.fsck()?;
        Ok(dest)
    };

    let filez = copy("filez", RepoMode::Archive)?;
    let object =
        tamper::tamper_content(&filez, &commit, "/usr/share/hello.txt", b"hello", b"HACKD")?;
    ensure!(object.extension().is_some_and(|e| e == "filez"));
    let cat = filez
        .ostree()
        .args(["cat", &commit, "/usr/share/hello.txt"])
        .stdout()?;
    ensure!(
        cat == "HACKD\n",
        "tampered object is not readable as HACKD: {cat:?}"
    );
    let fsck = filez.fsck_output()?;
    ensure!(
        !fsck.success() && fsck.stderr.contains("Corrupted file object"),
        "{fsck:?}"
    );

    let bare = copy("bare-user", RepoMode::BareUser)?;
    tamper::tamper_content(&bare, &commit, "/usr/share/hello.txt", b"hello", b"HACKD")?;
    let fsck = bare.fsck_output()?;
    ensure!(
        !fsck.success() && fsck.stderr.contains("Corrupted file object"),
        "{fsck:?}"
    );

    let dirtree = copy("dirtree", RepoMode::Archive)?;
    tamper::tamper_dirtree(&dirtree, &commit, "/usr/share", "hello.txt", "hellp.txt")?;
    let fsck = dirtree.fsck_output()?;
    ensure!(
        !fsck.success() && fsck.stderr.contains("Corrupted dirtree"),
        "{fsck:?}"
    );

    let truncated = copy("truncated", RepoMode::Archive)?;
    let content = truncated.content_checksum(&commit, "/usr/bin/hi")?;
    let path = tamper::truncate_object(&truncated, &content, ObjectKind::Content, 10)?;
    ensure!(fs::metadata(path)?.len() == 10);
    ensure!(
        !truncated.fsck_output()?.success(),
        "fsck accepted a truncated object"
    );

    let partial = copy("partial", RepoMode::Archive)?;
    tamper::make_partial(&partial, &commit, "/usr/share/hello.txt")?;
    let fsck = partial.fsck_output()?;
    ensure!(
        fsck.stdout.contains("1 partial commits not verified"),
        "{fsck:?}"
    );

    let missing = copy("missing", RepoMode::Archive)?;
    let content = missing.content_checksum(&commit, "/usr/share/hello.txt")?;
    tamper::remove_object(&missing, &content, ObjectKind::Content)?;
    ensure!(
        !missing.fsck_output()?.success(),
        "fsck accepted a missing object"
    );
    Ok(())
}

#[test]
fn ferry_fixture_tamper_filez_alters_a_hard_linked_copy_only() -> Result<()> {
    let tmp = TempDir::new()?;
    let (_key, tree, repo, commit) = signed_repo(tmp.path())?;
    let copy_path = tmp.path().join("copy");
    ferry_tests::Tool::new("cp")
        .arg("-al")
        .arg(&repo.path)
        .arg(&copy_path)
        .run()?;
    let file = "/usr/share/hello.txt";
    let object = ferry_tests::Tool::new(env!("CARGO_BIN_EXE_ferry-fixture"))
        .args(["tamper-filez"])
        .arg(&copy_path)
        .args([commit.as_str(), file])
        .arg(tree.root.join("usr/share/hello.txt"))
        .stdout()?;
    ensure!(object.trim().ends_with(".filez"), "{object}");
    let copy = OstreeRepo::open(&copy_path);
    let fsck = copy.fsck_output()?;
    ensure!(
        !fsck.success() && fsck.stderr.contains("Corrupted file object"),
        "{fsck:?}"
    );
    // The original, whose objects the copy's are hard links of, is untouched.
    repo.fsck()?;
    let original = repo.ostree().args(["cat", &commit, file]).stdout()?;
    ensure!(original == fs::read_to_string(tree.root.join("usr/share/hello.txt"))?);
    Ok(())
}

#[test]
fn renamed_dirtree_entry_gives_a_consistent_signed_commit() -> Result<()> {
    let tmp = TempDir::new()?;
    let (key, _tree, repo, commit) = signed_repo(tmp.path())?;
    let new_commit =
        tamper::rename_dirtree_entry(&repo, BRANCH, "/usr/share", "link", "l/nk", Some(&key))?;
    ensure!(new_commit != commit);
    ensure!(repo.rev_parse(BRANCH)? == new_commit);
    // Every checksum in the chain is right: fsck objects to the name, not to corruption.
    let fsck = repo.fsck_output()?;
    ensure!(!fsck.success(), "fsck accepted a / in a file name");
    ensure!(
        fsck.stderr.contains("Invalid / in filename l/nk") && !fsck.stderr.contains("Corrupted"),
        "{}",
        fsck.stderr
    );
    let verify = repo
        .ostree()
        .args(["show", &new_commit])
        .arg(format!("--gpg-homedir={}", key.homedir.display()))
        .stdout()?;
    ensure!(
        verify.contains("Good signature"),
        "new commit not signed:\n{verify}"
    );
    Ok(())
}

#[test]
fn commit_options_reach_the_commit() -> Result<()> {
    let tmp = TempDir::new()?;
    let tree = Tree::standard(&tmp.path().join("tree"), TreeOptions::plain())?;
    ensure!(xattr::list(tree.path(standard::XATTR_FILE))?
        .next()
        .is_none());
    let repo = OstreeRepo::init(&tmp.path().join("repo"), RepoMode::Archive, None)?;
    let commit = repo.commit(
        &CommitSpec::new("app", &tree.root)
            .subject("subject line")
            .body("body text")
            .metadata("ostree.ref-binding-test", "x")
            .timestamp("2024-01-02 03:04:05 +0000")
            .canonical()
            .generate_sizes(),
    )?;
    ensure!(
        repo.commit_metadata(&commit, "ostree.ref-binding-test")?
            .as_deref()
            == Some("x")
    );
    ensure!(repo.commit_metadata(&commit, "ostree.sizes")?.is_some());
    let show = repo.ostree().args(["show", &commit]).stdout()?;
    ensure!(
        show.contains("2024-01-02 03:04:05"),
        "timestamp not applied:\n{show}"
    );
    ensure!(
        show.contains("subject line") && show.contains("body text"),
        "{show}"
    );
    Ok(())
}

#[test]
fn flatpak_fixture_installs_runs_and_writes_drives_from_a_peer() -> Result<()> {
    let tmp = TempDir::new()?;
    let fixture = FlatpakFixture::new(tmp.path())?;
    let client = &fixture.client;
    ensure!(client.run(APP_ID)? == flatpak::greeting(&AppSpec::new("v1")));
    ensure!(client.installed_commit(APP_ID)? == fixture.app_v1);
    let installed = client.installed_refs()?;
    ensure!(
        installed.iter().any(|r| r.starts_with(RUNTIME_ID)),
        "{installed:?}"
    );
    ensure!(client.user_repo().mode()? == RepoMode::BareUserOnly);
    ensure!(client.user_installation().join("repo/config").is_file());

    let v2 = fixture.publish_app(&AppSpec::new("v2"))?;
    let drive = fixture.drive_from_peer("peer", &tmp.path().join("usb"), &[APP_ID])?;
    let app_ref = flatpak::app_ref(APP_ID, flatpak::BRANCH)?;
    ensure!(drive.mirror_commit(COLLECTION_ID, &app_ref)? == v2);
    drive.mirror_commit(
        COLLECTION_ID,
        &flatpak::runtime_ref(RUNTIME_ID, flatpak::BRANCH)?,
    )?;
    let appstream = flatpak::appstream2_ref()?;
    drive.mirror_commit(COLLECTION_ID, &appstream)?;
    let xml = drive
        .repo
        .ostree()
        .args([
            "cat",
            &drive.mirror_commit(COLLECTION_ID, &appstream)?,
            "/appstream.xml",
        ])
        .stdout()?;
    ensure!(
        xml.contains(flatpak::APP_NAME),
        "app name missing from appstream:\n{xml}"
    );
    ensure!(
        xml.contains(r#"version="v2""#),
        "release version missing from appstream:\n{xml}"
    );
    drive.repo.fsck()?;

    // The client still runs v1 until it updates, and the fixture's update path works.
    ensure!(client.run(APP_ID)? == flatpak::greeting(&AppSpec::new("v1")));
    client.update(&[])?;
    ensure!(client.run(APP_ID)? == flatpak::greeting(&AppSpec::new("v2")));
    Ok(())
}

#[test]
fn sysroot_has_v1_deployed_and_cleans_up() -> Result<()> {
    let tmp = TempDir::new()?;
    let key = GpgKey::generate(&tmp.path().join("gnupg"), "OS Vendor <os@example.org>")?;
    let sysroot = Sysroot::create(tmp.path(), &key)?;
    let status = sysroot.status()?;
    ensure!(status.contains("Version: 1.0"), "{status}");
    let deployment = sysroot.default_deployment()?;
    ensure!(deployment.commit == sysroot.v1);
    ensure!(deployment.version.as_deref() == Some("1.0"));
    ensure!(deployment.origin_refspec.as_deref() == Some(&format!("exampleos:{OS_REF}")[..]));
    let root = sysroot.deployment_dir(&deployment);
    ensure!(fs::read_to_string(root.join(VERSION_FILE))? == "1.0\n");
    ensure!(
        sysroot
            .repo()
            .config_get("remote \"exampleos\".collection-id")?
            == OS_COLLECTION_ID
    );

    let v2 = sysroot.publish("2.0")?;
    let drive = sysroot.os.create_usb(&tmp.path().join("usb"))?;
    ensure!(drive.mirror_commit(OS_COLLECTION_ID, OS_REF)? == v2);

    drop(sysroot);
    // The immutable deployment root was released: the whole directory can be removed.
    fs::remove_dir_all(tmp.path()).context("removing the sysroot after drop")?;
    Ok(())
}

#[test]
fn demo_scene_has_an_update_on_the_drive() -> Result<()> {
    let tmp = TempDir::new()?;
    let scene = demo::build(&tmp.path().join("demo"))?;
    ensure!(scene.drive.mirror_commit(OS_COLLECTION_ID, OS_REF)? == scene.v2);
    ensure!(
        scene
            .target_repo
            .rev_parse(&format!("exampleos:{OS_REF}"))?
            == scene.v1
    );
    ensure!(scene.sysroot.default_deployment()?.commit == scene.v1);
    Ok(())
}

#[test]
fn binaries_are_found_next_to_the_test_or_explained() -> Result<()> {
    let dir = bins::bin_dir()?;
    ensure!(
        dir.join("deps").is_dir(),
        "{} is not a cargo profile dir",
        dir.display()
    );
    let missing = bins::binary("ferry-no-such-binary")
        .err()
        .context("found a binary that cannot exist")?;
    ensure!(
        missing.to_string().contains("cargo build --workspace"),
        "{missing}"
    );
    Ok(())
}

#[test]
fn static_server_serves_a_repo_that_ostree_pulls() -> Result<()> {
    let tmp = TempDir::new()?;
    let (key, _tree, repo, commit) = signed_repo(tmp.path())?;
    let server = ferry_tests::http::StaticServer::serve(&repo.path)?;
    let client = OstreeRepo::init(&tmp.path().join("client"), RepoMode::BareUser, None)?;
    client.remote_add(
        &RemoteSpec::new("origin", &server.url)
            .collection_id(COLLECTION)
            .trust(&key),
    )?;
    client.pull("origin", &[BRANCH])?;
    ensure!(client.rev_parse(&format!("origin:{BRANCH}"))? == commit);
    let requests = server.requests();
    ensure!(requests.iter().any(|r| r == "/summary"), "{requests:?}");
    ensure!(
        requests.iter().any(|r| r.ends_with(".filez")),
        "{requests:?}"
    );
    server.clear_requests();
    ensure!(server.requests().is_empty());
    Ok(())
}

#[test]
fn wait_for_polls_until_true_and_times_out() -> Result<()> {
    let mut calls = 0;
    ferry_tests::wait_for("the third call", std::time::Duration::from_secs(5), || {
        calls += 1;
        anyhow::Ok(calls == 3)
    })?;
    ensure!(calls == 3);
    let err = ferry_tests::wait_for("never", std::time::Duration::from_millis(50), || {
        Ok::<_, ferry_tests::FixtureError>(false)
    })
    .err()
    .context("wait_for returned without its condition")?;
    ensure!(err.to_string().contains("waiting for never"), "{err}");
    Ok(())
}

#[test]
fn serial_loop_drive_carries_create_usb_content() -> Result<()> {
    let tmp = TempDir::new()?;
    let (_key, _tree, repo, commit) = signed_repo(tmp.path())?;
    let image = LoopImage::create(&tmp.path().join("usb.img"), 64, "FERRYTEST")?;
    image.populate(&tmp.path().join("fill"), |mnt| {
        repo.create_usb(mnt, &[(COLLECTION, BRANCH)])?;
        Ok(())
    })?;

    let device = image.attach()?;
    ensure!(device.device.exists() && device.kernel_name().starts_with("loop"));
    let label = ferry_tests::Tool::new("blkid")
        .args(["-o", "value", "-s", "LABEL"])
        .arg(&device.device)
        .stdout()?;
    ensure!(label.trim() == "FERRYTEST", "label {label:?}");
    let mnt = tmp.path().join("mnt");
    let mount = device.mount(&mnt, &["ro"])?;
    let on_drive = OstreeRepo::open(&mnt.join(".ostree/repo"));
    ensure!(
        on_drive.read_ref(&RefLocation::Mirror {
            collection_id: COLLECTION.into(),
            name: BRANCH.into()
        })? == Some(commit)
    );
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")?;
    ensure!(mountinfo.contains(&mnt.display().to_string()));
    mount.unmount()?;
    device.detach()?;
    ensure!(!fs::read_to_string("/proc/self/mountinfo")?.contains(&mnt.display().to_string()));
    Ok(())
}

#[test]
fn serial_tmpfs_mount_runs_out_of_space() -> Result<()> {
    let tmp = TempDir::new()?;
    let mnt = tmp.path().join("small");
    let mount = Mount::tmpfs(&mnt, "1m")?;
    let err = fs::write(mnt.join("big"), vec![0u8; 2 * 1024 * 1024])
        .err()
        .context("2 MiB fitted on a 1 MiB tmpfs")?;
    ensure!(err.raw_os_error() == Some(28), "expected ENOSPC, got {err}");
    drop(mount);
    ensure!(!fs::read_to_string("/proc/self/mountinfo")?.contains(&mnt.display().to_string()));
    Ok(())
}

#[test]
fn storage_edge_cases_survive_a_commit_and_checkout() -> Result<()> {
    let tmp = TempDir::new()?;
    let options = TreeOptions {
        xattrs: true,
        foreign_owner: false,
    };
    let tree = Tree::standard(&tmp.path().join("tree"), options)?;
    tree.add_storage_edge_cases()?;
    let repo = OstreeRepo::init(&tmp.path().join("repo"), RepoMode::Archive, None)?;
    let commit = repo.commit(&CommitSpec::new(BRANCH, &tree.root))?;
    let out = tmp.path().join("out");
    repo.checkout(&commit, &out, CheckoutMode::Plain)?;
    assert_trees_equal(
        &tree.root,
        &out,
        &CompareOptions::content_and_modes().with_xattrs(),
    )?;

    ensure!(fs::metadata(out.join(standard::LARGE_FILE))?.len() == 600_000);
    // Incompressible: it spans many of the archive's compression chunks.
    let large = repo.content_checksum(&commit, &format!("/{}", standard::LARGE_FILE))?;
    let stored = fs::metadata(repo.object_path(&large, ObjectKind::Content)?)?.len();
    ensure!(
        stored > 590_000,
        "the large file compressed to {stored} bytes"
    );
    ensure!(fs::read_dir(out.join("usr/lib/many"))?.count() == 20);
    ensure!(fs::metadata(out.join("etc/empty-file"))?.len() == 0);
    ensure!(
        fs::read_link(out.join(standard::RELATIVE_SYMLINK))?
            == Path::new(standard::RELATIVE_SYMLINK_TARGET)
    );
    let binary = xattr_of(&out.join(standard::XATTR_FILE), standard::BINARY_XATTR_NAME)?;
    ensure!(binary == standard::BINARY_XATTR_VALUE, "{binary:?}");
    Ok(())
}

fn xattr_of(path: &Path, name: &str) -> Result<Vec<u8>> {
    let mut value = vec![0u8; 256];
    let size = rustix::fs::lgetxattr(path, name, &mut value[..])
        .with_context(|| format!("{name} of {}", path.display()))?;
    value.truncate(size);
    Ok(value)
}

#[test]
fn a_key_made_for_certification_only_signs_through_its_subkey() -> Result<()> {
    let tmp = TempDir::new()?;
    let mut key = GpgKey::generate_with_usage(
        &tmp.path().join("gnupg"),
        "Cert <c@example.org>",
        "ed25519",
        "cert",
        "never",
    )?;
    let listing = key
        .command()
        .args(["--list-keys", "--with-colons"])
        .stdout()?;
    let primary = listing
        .lines()
        .find(|line| line.starts_with("pub:"))
        .context("no primary key listed")?;
    // Field 12 holds the key's capabilities: certification only, no signing.
    ensure!(primary.split(':').nth(11) == Some("cC"), "{primary}");
    let subkey = key.add_subkey("ed25519", "sign", "never")?;

    let tree = Tree::standard(&tmp.path().join("tree"), TreeOptions::plain())?;
    let repo = OstreeRepo::init(&tmp.path().join("repo"), RepoMode::Archive, None)?;
    let commit = repo.commit(&CommitSpec::new(BRANCH, &tree.root).sign(&key))?;
    let shown = repo.ostree().args(["show", &commit]).stdout()?;
    ensure!(
        shown.contains(&subkey[subkey.len() - 16..]),
        "the commit is not signed by the subkey {subkey}:\n{shown}"
    );
    Ok(())
}

#[test]
fn serial_loop_image_takes_mkfs_arguments_and_a_dropped_device_leaves_no_mount() -> Result<()> {
    let tmp = TempDir::new()?;
    let content = tmp.path().join("content");
    fs::create_dir_all(&content)?;
    fs::write(content.join("hello.txt"), "hello\n")?;
    let uuid = "0b6c3a53-5d0e-4a8f-9a0e-3b2f7c1d9e45";
    let image = LoopImage::create_with(
        &tmp.path().join("drive.img"),
        16,
        "WITHARGS",
        &[
            "-U".as_ref(),
            uuid.as_ref(),
            "-d".as_ref(),
            content.as_os_str(),
        ],
    )?;
    ensure!(image.uuid()? == uuid);

    let device = image.attach()?;
    let mnt = tmp.path().join("mnt");
    let mount = device.mount(&mnt, &["ro"])?;
    ensure!(fs::read_to_string(mnt.join("hello.txt"))? == "hello\n");
    // Dropping the device while its filesystem is still mounted (a failed test, a mount the
    // program under test made) detaches the mount too.
    std::mem::forget(mount);
    drop(device);
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")?;
    ensure!(
        !mountinfo.contains(&mnt.display().to_string()),
        "{mountinfo}"
    );
    let attached = ferry_tests::Tool::new("losetup")
        .arg("-j")
        .arg(&image.image)
        .stdout()?;
    ensure!(attached.trim().is_empty(), "still attached: {attached}");

    let blank = LoopImage::unformatted(&tmp.path().join("blank.img"), 16)?;
    ensure!(fs::metadata(&blank.image)?.len() == 16 * 1024 * 1024);
    let probe = ferry_tests::Tool::new("blkid").arg(&blank.image).output()?;
    ensure!(
        !probe.success(),
        "blkid found a filesystem: {}",
        probe.stdout
    );
    Ok(())
}
