//! Ferry takes the repository lock as libostree does, so Ferry and `ostree` work on one
//! repository at once: shared holders coexist, an exclusive holder keeps others out.

mod repo_support;

use std::time::{Duration, Instant};

use ferry_engine::object::Checksum;
use ferry_engine::repo::{LockKind, Repo, RepoError, RepoMode};
use repo_support::*;
use tempfile::TempDir;

fn set_lock_timeout(repo: &std::path::Path, seconds: &str) {
    ostree(&[
        "config",
        &repo_arg(repo),
        "set",
        "core.lock-timeout-secs",
        seconds,
    ]);
}

#[test]
fn ferry_and_ostree_pull_local_write_one_repository_together() {
    let work = TempDir::new().expect("tempdir");
    let tree = work.path().join("tree");
    make_tree(&tree, true);
    let source_path = work.path().join("source");
    init_repo(&source_path, RepoMode::Archive, None);
    let ferry_commit = commit(
        &source_path,
        CommitSpec::new("for/ferry", &tree).subject("ferry"),
    );
    std::fs::write(tree.join("usr/share/extra"), b"only in the ostree branch\n").expect("write");
    commit(
        &source_path,
        CommitSpec::new("for/ostree", &tree).subject("ostree"),
    );

    let dest_path = work.path().join("dest");
    let dest = Repo::init(&dest_path, RepoMode::BareUser, None).expect("init");
    let source = Repo::open(&source_path).expect("open");
    let lock = dest.lock(LockKind::Shared, None).expect("shared lock");

    // ostree pulls while Ferry holds its shared lock and writes.
    let ostree_pull = std::process::Command::new("ostree")
        .args([
            "pull-local",
            &repo_arg(&dest_path),
            &source_path.display().to_string(),
            "for/ostree",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn ostree");
    let written = copy_commit(
        &source,
        &dest,
        &Checksum::from_hex(&ferry_commit).expect("hex"),
        "for/ferry",
    );
    assert!(written > 0);
    let output = ostree_pull.wait_with_output().expect("ostree finishes");
    assert!(
        output.status.success(),
        "ostree pull-local failed beside Ferry's shared lock: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    drop(lock);
    assert_fsck(&dest_path);
    let refs = ostree(&["refs", &repo_arg(&dest_path)]);
    assert!(
        refs.contains("for/ferry") && refs.contains("for/ostree"),
        "{refs}"
    );
}

#[test]
fn an_exclusive_lock_keeps_ostree_out_until_released() {
    let work = TempDir::new().expect("tempdir");
    let tree = work.path().join("tree");
    make_tree(&tree, false);
    let source_path = work.path().join("source");
    init_repo(&source_path, RepoMode::Archive, None);
    commit(&source_path, CommitSpec::new("main", &tree));
    let dest_path = work.path().join("dest");
    init_repo(&dest_path, RepoMode::BareUser, None);
    set_lock_timeout(&dest_path, "1");
    let dest = Repo::open(&dest_path).expect("open");

    let exclusive = dest.lock(LockKind::Exclusive, None).expect("exclusive");
    let pull = [
        "pull-local",
        &repo_arg(&dest_path),
        &source_path.display().to_string(),
        "main",
    ];
    let started = Instant::now();
    let output = ostree_output(&pull);
    assert!(
        !output.status.success(),
        "ostree pulled while Ferry held the exclusive lock"
    );
    let stderr = &output.stderr;
    assert!(stderr.to_lowercase().contains("lock"), "{stderr}");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "ostree waited its timeout"
    );
    drop(exclusive);
    ostree(&pull);
    assert_fsck(&dest_path);
}

#[test]
fn locks_follow_libostree_semantics_between_holders() {
    let work = TempDir::new().expect("tempdir");
    let path = work.path().join("repo");
    init_repo(&path, RepoMode::Archive, None);
    set_lock_timeout(&path, "1");
    // Two opens of one repository are two lock holders, as two processes would be.
    let first = Repo::open(&path).expect("open");
    let second = Repo::open(&path).expect("open");

    let shared_a = first.lock(LockKind::Shared, None).expect("shared");
    let shared_b = second.try_lock(LockKind::Shared).expect("try");
    assert!(shared_b.is_some(), "shared locks coexist");
    assert!(second.try_lock(LockKind::Exclusive).expect("try").is_none());
    drop(shared_b);
    let upgraded = first.try_lock(LockKind::Exclusive).expect("try");
    assert!(
        upgraded.is_some(),
        "with the other holder gone, shared upgrades"
    );
    drop(upgraded);
    drop(shared_a);

    // Within one repository, exclusive on top of shared upgrades; dropping it returns to
    // shared, which other holders may share but not exclude.
    let shared = first.lock(LockKind::Shared, None).expect("shared");
    let exclusive = first.lock(LockKind::Exclusive, None).expect("upgrade");
    assert!(second.try_lock(LockKind::Shared).expect("try").is_none());
    let started = Instant::now();
    let error = second.lock(LockKind::Shared, None).expect_err("times out");
    assert!(
        matches!(error, RepoError::LockTimeout { seconds: 1, .. }),
        "{error}"
    );
    assert!(started.elapsed() >= Duration::from_secs(1));
    drop(exclusive);
    let other_shared = second.try_lock(LockKind::Shared).expect("try");
    assert!(other_shared.is_some(), "back to shared");
    assert!(second.try_lock(LockKind::Exclusive).expect("try").is_none());
    drop(other_shared);
    drop(shared);
    let exclusive = second.try_lock(LockKind::Exclusive).expect("try");
    assert!(exclusive.is_some(), "everything released");

    // Waiting for a lock stops when cancelled.
    let cancel = ferry_engine::cancel::CancelToken::new();
    cancel.cancel();
    assert!(matches!(
        first.lock(LockKind::Shared, Some(&cancel)),
        Err(RepoError::Cancelled)
    ));
}
