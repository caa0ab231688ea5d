//! Drive scanning: repositories where libostree's mount finder looks, refs with commit,
//! timestamp and version, repositories leaving the drive refused, nothing written.

mod repo_support;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};

use ferry_engine::repo::{Repo, RepoMode};
use ferry_engine::scan::scan;
use ferry_engine::schema::ProblemKind;
use ferry_tests::assert_root;
use ferry_tests::loopdev::Mount;
use repo_support::*;
use tempfile::TempDir;

const COLLECTION: &str = "org.example.Os";

/// Path → (size, mtime, mode) of everything under `root`, to prove a scan wrote nothing.
fn fingerprint(root: &Path) -> BTreeMap<PathBuf, (u64, i64, u32)> {
    let mut entries = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for item in fs::read_dir(&dir).expect("read dir") {
            let path = item.expect("entry").path();
            let metadata = fs::symlink_metadata(&path).expect("lstat");
            if metadata.is_dir() {
                pending.push(path.clone());
            }
            entries.insert(
                path,
                (
                    metadata.len(),
                    metadata.mtime_nsec() + metadata.mtime() * 1_000_000_000,
                    metadata.mode(),
                ),
            );
        }
    }
    entries
}

fn source_repo(work: &Path) -> (PathBuf, String, String) {
    let tree = work.join("tree");
    make_tree(&tree, false);
    let path = work.join("source");
    init_repo(&path, RepoMode::Archive, Some(COLLECTION));
    let stable = commit(&path, CommitSpec::new("os/stable", &tree).version("3.1"));
    let beta = commit(&path, CommitSpec::new("os/beta", &tree).subject("beta"));
    (path, stable, beta)
}

#[test]
fn scans_a_create_usb_drive() {
    let work = TempDir::new().expect("tempdir");
    let (source, stable, beta) = source_repo(work.path());
    let drive = work.path().join("drive");
    fs::create_dir(&drive).expect("drive");
    ostree(&[
        "create-usb",
        &repo_arg(&source),
        &drive.display().to_string(),
        COLLECTION,
        "os/stable",
        COLLECTION,
        "os/beta",
    ]);
    let before = fingerprint(&drive);
    let report = scan(&drive).expect("scan");
    assert_eq!(fingerprint(&drive), before, "the scan wrote to the drive");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.repos.len(), 1);
    let repo = &report.repos[0];
    assert_eq!(
        PathBuf::from(&repo.path),
        fs::canonicalize(drive.join(".ostree/repo")).expect("canonical")
    );
    assert_eq!(repo.mode, "archive", "archive-z2 is reported as archive");
    let refs: Vec<(Option<&str>, &str, String, Option<&str>)> = repo
        .refs
        .iter()
        .map(|r| {
            (
                r.collection_id.as_deref(),
                r.ref_name.as_str(),
                r.commit.to_hex(),
                r.version.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        refs,
        vec![
            (Some(COLLECTION), "os/beta", beta.clone(), None),
            (Some(COLLECTION), "os/stable", stable.clone(), Some("3.1")),
        ]
    );
    let source_repo = Repo::open(&source).expect("open");
    let commit = source_repo
        .read_commit(&repo.refs[1].commit)
        .expect("commit");
    assert_eq!(repo.refs[1].timestamp, commit.timestamp);

    // The JSON shape scripts rely on.
    let json = serde_json::to_value(&report).expect("json");
    assert_eq!(json["repos"][0]["refs"][1]["ref"], "os/stable");
    assert_eq!(json["repos"][0]["refs"][1]["collection_id"], COLLECTION);
    assert_eq!(json["repos"][0]["refs"][1]["commit"], stable);
}

#[test]
fn scans_a_path_that_is_itself_a_repository() {
    let work = TempDir::new().expect("tempdir");
    let (source, stable, _) = source_repo(work.path());
    let report = scan(&source).expect("scan");
    assert_eq!(report.repos.len(), 1);
    let names: Vec<&str> = report.repos[0]
        .refs
        .iter()
        .map(|r| r.ref_name.as_str())
        .collect();
    assert_eq!(names, vec!["os/beta", "os/stable"]);
    assert!(report.repos[0]
        .refs
        .iter()
        .all(|r| r.collection_id.as_deref() == Some(COLLECTION)));
    assert_eq!(report.repos[0].refs[1].commit.to_hex(), stable);

    // A bare-user repository holding the ref as a remote ref, without a collection ID.
    let client = work.path().join("client");
    init_repo(&client, RepoMode::BareUser, None);
    ostree(&[
        "remote",
        "add",
        &repo_arg(&client),
        "--no-gpg-verify",
        "origin",
        &format!("file://{}", source.display()),
    ]);
    ostree(&["pull", &repo_arg(&client), "origin", "os/stable"]);
    let report = scan(&client).expect("scan");
    assert_eq!(report.repos[0].mode, "bare-user");
    assert_eq!(report.repos[0].refs.len(), 1);
    assert_eq!(report.repos[0].refs[0].ref_name, "os/stable");
    assert_eq!(report.repos[0].refs[0].collection_id, None);
    assert_eq!(report.repos[0].refs[0].version.as_deref(), Some("3.1"));
}

#[test]
fn finds_repositories_in_order_once_and_refuses_escapes() {
    let work = TempDir::new().expect("tempdir");
    let (source, _, _) = source_repo(work.path());
    let drive = work.path().join("drive");
    fs::create_dir_all(drive.join(".ostree/repos.d")).expect("repos.d");
    // Well-known location, also reachable through repos.d: listed once, at its first sighting.
    fs::create_dir_all(drive.join("ostree")).expect("ostree dir");
    ostree(&[
        "pull-local",
        &repo_arg(&{
            let path = drive.join("ostree/repo");
            init_repo(&path, RepoMode::Archive, Some(COLLECTION));
            path
        }),
        &source.display().to_string(),
        "os/stable",
    ]);
    let other = drive.join("elsewhere/repo");
    fs::create_dir_all(other.parent().expect("parent")).expect("dir");
    init_repo(&other, RepoMode::BareUserOnly, Some("org.example.Other"));
    symlink(
        "../../elsewhere/repo",
        drive.join(".ostree/repos.d/20-other"),
    )
    .expect("symlink");
    symlink("../../ostree/repo", drive.join(".ostree/repos.d/10-again")).expect("symlink");
    // Escaping the drive: an absolute symlink and a relative one climbing out.
    symlink(&source, drive.join(".ostree/repos.d/00-escape")).expect("symlink");
    symlink("../../../source", drive.join(".ostree/repos.d/05-climb")).expect("symlink");
    fs::create_dir(drive.join(".ostree/repos.d/30-not-a-repo")).expect("dir");
    // A bad ref file is a problem of that ref only.
    fs::write(drive.join("ostree/repo/refs/heads/broken"), "oops\n").expect("bad ref");

    let before = fingerprint(&drive);
    let report = scan(&drive).expect("scan");
    assert_eq!(fingerprint(&drive), before, "the scan wrote to the drive");
    let canonical = |p: &Path| {
        fs::canonicalize(p)
            .expect("canonical")
            .display()
            .to_string()
    };
    let paths: Vec<&str> = report.repos.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        vec![canonical(&drive.join("ostree/repo")), canonical(&other)],
        "repos.d in lexical order, each repository once"
    );
    assert_eq!(report.repos[1].mode, "bare-user-only");
    assert_eq!(report.repos[0].refs.len(), 1);

    let unsafe_sources: Vec<&str> = report
        .problems
        .iter()
        .filter(|p| p.kind == ProblemKind::Unsafe)
        .map(|p| p.source.as_str())
        .collect();
    assert_eq!(unsafe_sources.len(), 2, "{:?}", report.problems);
    assert!(unsafe_sources.iter().any(|s| s.ends_with("00-escape")));
    assert!(unsafe_sources.iter().any(|s| s.ends_with("05-climb")));
    assert!(report
        .problems
        .iter()
        .any(|p| p.source.ends_with("30-not-a-repo") && p.kind == ProblemKind::Unreadable));
    assert!(report
        .problems
        .iter()
        .any(|p| p.ref_name.as_deref() == Some("broken") && p.kind == ProblemKind::Corrupt));
    // The escaping repository's refs were not read into the report.
    assert!(!report.repos.iter().any(|r| r.path == canonical(&source)));
}

#[test]
fn refuses_a_repository_on_another_filesystem() {
    assert_root("mounting a second filesystem");
    let work = TempDir::new().expect("tempdir");
    let drive = work.path().join("drive");
    let mount_point = drive.join("mnt");
    fs::create_dir_all(&mount_point).expect("mount point");
    fs::create_dir_all(drive.join(".ostree/repos.d")).expect("repos.d");
    let _mount = Mount::tmpfs(&mount_point, "8m").expect("mount a tmpfs");
    Repo::init(&mount_point.join("repo"), RepoMode::Archive, None).expect("init");
    symlink("../../mnt/repo", drive.join(".ostree/repos.d/00-mounted")).expect("symlink");
    let report = scan(&drive).expect("scan");
    assert!(report.repos.is_empty(), "{:?}", report.repos);
    assert_eq!(report.problems.len(), 1);
    assert_eq!(report.problems[0].kind, ProblemKind::Unsafe);
    assert!(report.problems[0].reason.contains("another filesystem"));
}

/// Opens of files in `dir` while `action` runs, by name (inotify).
fn opens_during(dir: &Path, action: impl FnOnce()) -> BTreeMap<String, usize> {
    use rustix::fs::inotify;
    let fd = inotify::init(inotify::CreateFlags::NONBLOCK | inotify::CreateFlags::CLOEXEC)
        .expect("inotify_init1");
    // Closes too: the kernel merges identical events in a row, never an open after a close.
    inotify::add_watch(
        &fd,
        dir,
        inotify::WatchFlags::OPEN | inotify::WatchFlags::CLOSE_NOWRITE,
    )
    .expect("inotify_add_watch");
    action();
    let mut opens = BTreeMap::new();
    let mut buffer = [std::mem::MaybeUninit::<u8>::uninit(); 64 * 1024];
    let mut events = inotify::Reader::new(&fd, &mut buffer);
    while let Ok(event) = events.next() {
        if event.events().contains(inotify::ReadFlags::OPEN) {
            let name = event
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default();
            *opens.entry(name).or_insert(0) += 1;
        }
    }
    opens
}

#[test]
fn a_commit_named_by_many_refs_is_read_once_per_scan() {
    let work = TempDir::new().expect("tempdir");
    let (repo, stable, _) = source_repo(work.path());
    for alias in 0..20 {
        fs::write(
            repo.join(format!("refs/heads/alias-{alias}")),
            format!("{stable}\n"),
        )
        .expect("ref written");
    }
    let objects = repo.join("objects").join(&stable[..2]);
    let commit_file = format!("{}.commit", &stable[2..]);
    let opens = opens_during(&objects, || {
        let report = scan(&repo).expect("scan");
        assert_eq!(report.repos[0].refs.len(), 22, "{report:#?}");
    });
    assert_eq!(opens.get(&commit_file), Some(&1), "{opens:?}");
}
