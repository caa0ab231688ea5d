//! Hostile drives: tampered, truncated and missing objects, dirtrees with forbidden names, a
//! ref file that is not a checksum, and a repository that leads off the drive. Each pull must
//! fail with a clear error naming what is wrong, leave the destination ref as it was, and
//! leave a repository `ostree fsck` accepts.

mod pull_support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{ensure, Context, Result};
use ferry_engine::object::{Checksum, Commit, DirTree, DirTreeFile};
use ferry_engine::schema::{ProblemKind, ScanReport};
use ferry_tests::ostree::{object_path_in, ObjectKind, OstreeRepo, RefLocation, RepoMode};
use ferry_tests::tamper;
use ferry_tests::tree::{standard, TreeOptions};
use pull_support::{
    assert_refused, client, ferryctl, install_published, pull_remote, remote_ref, trust_root,
    Publisher, BRANCH,
};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

/// A signed publisher repository and a bare-user destination trusting its key, with the
/// publisher's commit already in place at `origin:BRANCH` when `installed`.
/// Pulls [`BRANCH`] from the publisher into `dest` and checks that it was refused, naming
/// every needle, with `dest` as it was.
fn pull_of_branch_is_refused(
    base: &Path,
    publisher: &Publisher,
    dest: &OstreeRepo,
    before: &Option<String>,
    needles: &[&str],
) -> Result<()> {
    let run = pull_remote(
        &trust_root(base),
        &dest.path,
        &publisher.repo.path,
        &[BRANCH],
    )?;
    assert_refused(&run, dest, &remote_ref(BRANCH), before, needles)
}

fn setup(base: &Path, installed: bool) -> Result<(Publisher, OstreeRepo, Option<String>)> {
    let publisher = Publisher::new(&base.join("publisher"), TreeOptions::full())?;
    let dest = client(&base.join("dest"), RepoMode::BareUser, Some(&publisher.key))?;
    let mut before = None;
    if installed {
        install_published(base, &dest, &publisher)?;
        before = Some(publisher.commit.clone());
    }
    Ok((publisher, dest, before))
}

/// A newer signed commit on the publisher's branch with `usr/share/hello.txt` changed, so
/// a pull has content to fetch.
fn second_commit(publisher: &Publisher) -> Result<String> {
    publisher
        .tree
        .write_file(standard::HELLO, standard::HELLO_V2)?;
    publisher
        .tree
        .write_file(standard::ADDED_IN_V2, "new in the second commit\n")?;
    Ok(publisher.repo.commit(
        &ferry_tests::ostree::CommitSpec::new(BRANCH, &publisher.tree.root)
            .version("2.0")
            .timestamp("2030-01-01 00:00:00")
            .sign(&publisher.key),
    )?)
}

#[test]
fn tampered_filez_is_refused_naming_the_object_path_and_source() -> Result<()> {
    let tmp = TempDir::new()?;
    let (publisher, dest, before) = setup(tmp.path(), true)?;
    let commit = second_commit(&publisher)?;
    tamper::tamper_content(
        &publisher.repo,
        &commit,
        "/usr/share/hello.txt",
        b"hello",
        b"HACKD",
    )?;
    let object = publisher
        .repo
        .content_checksum(&commit, "/usr/share/hello.txt")?;
    let source = fs::canonicalize(&publisher.repo.path)?;
    pull_of_branch_is_refused(
        tmp.path(),
        &publisher,
        &dest,
        &before,
        &[
            &object,
            "/usr/share/hello.txt",
            &source.display().to_string(),
            "tampered",
        ],
    )?;
    ensure!(
        !dest.object_path(&object, ObjectKind::Content)?.exists(),
        "the tampered object was stored"
    );
    Ok(())
}

#[test]
fn tampered_dirtree_is_refused() -> Result<()> {
    let tmp = TempDir::new()?;
    let (publisher, dest, before) = setup(tmp.path(), true)?;
    let commit = second_commit(&publisher)?;
    let (dirtree, _) = publisher.repo.dir_checksums(&commit, "/usr/share")?;
    tamper::tamper_dirtree(
        &publisher.repo,
        &commit,
        "/usr/share",
        "hello.txt",
        "hellp.txt",
    )?;
    pull_of_branch_is_refused(
        tmp.path(),
        &publisher,
        &dest,
        &before,
        &[&dirtree, "dirtree", "/usr/share", "tampered"],
    )
}

#[test]
fn truncated_objects_are_refused() -> Result<()> {
    let tmp = TempDir::new()?;
    let (publisher, dest, before) = setup(tmp.path(), false)?;
    // Cut inside the header, then inside the compressed content.
    let header_cut = publisher
        .repo
        .content_checksum(&publisher.commit, "/usr/bin/hi")?;
    tamper::truncate_object(&publisher.repo, &header_cut, ObjectKind::Content, 10)?;
    pull_of_branch_is_refused(
        tmp.path(),
        &publisher,
        &dest,
        &before,
        &[&header_cut, "/usr/bin/hi", "truncated"],
    )?;

    let tmp = TempDir::new()?;
    let (publisher, dest, before) = setup(tmp.path(), false)?;
    let body_cut = publisher
        .repo
        .content_checksum(&publisher.commit, "/usr/share/nested/a/b/c/deep.txt")?;
    let path = publisher.repo.object_path(&body_cut, ObjectKind::Content)?;
    let length = fs::metadata(&path)?.len();
    tamper::truncate_object(&publisher.repo, &body_cut, ObjectKind::Content, length - 3)?;
    pull_of_branch_is_refused(
        tmp.path(),
        &publisher,
        &dest,
        &before,
        &[
            &body_cut,
            "/usr/share/nested/a/b/c/deep.txt",
            "cannot be read",
        ],
    )
}

#[test]
fn missing_object_is_refused() -> Result<()> {
    let tmp = TempDir::new()?;
    let (publisher, dest, before) = setup(tmp.path(), true)?;
    let commit = second_commit(&publisher)?;
    let object = publisher
        .repo
        .content_checksum(&commit, standard::ADDED_IN_V2)?;
    tamper::remove_object(&publisher.repo, &object, ObjectKind::Content)?;
    pull_of_branch_is_refused(
        tmp.path(),
        &publisher,
        &dest,
        &before,
        &[&object, standard::ADDED_IN_V2, "is on none of the sources"],
    )
}

/// Dirtree entries named `..` and `a/b`, rewritten consistently (every checksum right) and
/// signed again by the publisher: only name validation can refuse them.
#[test]
fn forbidden_names_in_dirtrees_are_refused() -> Result<()> {
    for (dir, old, new) in [("/usr/bin", "hi", ".."), ("/", "bin", "a/b")] {
        let tmp = TempDir::new()?;
        let (publisher, dest, before) = setup(tmp.path(), true)?;
        tamper::rename_dirtree_entry(&publisher.repo, BRANCH, dir, old, new, Some(&publisher.key))?;
        pull_of_branch_is_refused(
            tmp.path(),
            &publisher,
            &dest,
            &before,
            &[dir, &format!("{new:?}"), "invalid file name"],
        )
        .with_context(|| format!("entry {new:?}"))?;
    }
    Ok(())
}

/// Writes a metadata object under its SHA-256 name; returns the checksum.
fn store(repo: &Path, bytes: &[u8], extension: &str) -> Result<Checksum> {
    let checksum = Checksum::from_array(Sha256::digest(bytes).into());
    let path = object_path_in(repo, &checksum.to_hex(), extension);
    fs::create_dir_all(path.parent().context("object directory")?)?;
    fs::write(&path, bytes)?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644))?;
    Ok(checksum)
}

/// A commit whose root dirtree holds a file with an empty name, made with the object API
/// (ostree cannot make one) and signed by the publisher.
#[test]
fn empty_name_in_dirtree_is_refused() -> Result<()> {
    let tmp = TempDir::new()?;
    let (publisher, dest, before) = setup(tmp.path(), true)?;
    let repo = &publisher.repo;
    let content = Checksum::from_hex(&repo.content_checksum(&publisher.commit, standard::HELLO)?)?;
    let tree = DirTree {
        files: vec![DirTreeFile {
            name: String::new(),
            checksum: content,
        }],
        dirs: Vec::new(),
    };
    let root = store(&repo.path, &tree.to_bytes()?, "dirtree")?;
    let original = Checksum::from_hex(&publisher.commit)?;
    let bytes = fs::read(object_path_in(&repo.path, &publisher.commit, "commit"))?;
    let mut commit = Commit::parse(&bytes)?;
    commit.root_tree = root;
    commit.parent = Some(original);
    commit.timestamp += 60;
    let hostile = store(&repo.path, &commit.to_bytes()?, "commit")?;
    fs::write(
        repo.path
            .join(RefLocation::Head(BRANCH.into()).relative_path()),
        format!("{hostile}\n"),
    )?;
    repo.gpg_sign(&hostile.to_hex(), &publisher.key)?;
    let run = pull_remote(&trust_root(tmp.path()), &dest.path, &repo.path, &[BRANCH])?;
    assert_refused(
        &run,
        &dest,
        &remote_ref(BRANCH),
        &before,
        &[&root.to_hex(), "invalid file name \"\"", "it is empty"],
    )
}

#[test]
fn ref_file_that_is_not_a_checksum_is_refused() -> Result<()> {
    let tmp = TempDir::new()?;
    let (publisher, dest, before) = setup(tmp.path(), false)?;
    let ref_file = publisher
        .repo
        .path
        .join(RefLocation::Head(BRANCH.into()).relative_path());
    fs::write(&ref_file, "not a checksum\n")?;

    let out = ferryctl(&trust_root(tmp.path()))?
        .args(["scan", "--json"])
        .arg(&publisher.repo.path)
        .stdout()?;
    let report: ScanReport = serde_json::from_str(&out)?;
    ensure!(
        report.repos.len() == 1 && report.repos[0].refs.iter().all(|r| r.ref_name != BRANCH),
        "{report:?}"
    );
    ensure!(
        report
            .problems
            .iter()
            .any(|p| p.kind == ProblemKind::Corrupt && p.reason.contains("hex digits")),
        "{report:?}"
    );

    pull_of_branch_is_refused(
        tmp.path(),
        &publisher,
        &dest,
        &before,
        &[BRANCH, "is not offered"],
    )
}

/// `.ostree/repo` on the drive is a symlink to a repository outside it: scan and pull refuse
/// it, though the repository itself is genuine.
#[test]
fn symlinked_repo_leaving_the_drive_is_refused() -> Result<()> {
    let tmp = TempDir::new()?;
    let (publisher, dest, before) = setup(tmp.path(), false)?;
    let drive = tmp.path().join("drive");
    fs::create_dir_all(drive.join(".ostree"))?;
    std::os::unix::fs::symlink(&publisher.repo.path, drive.join(".ostree/repo"))?;

    let out = ferryctl(&trust_root(tmp.path()))?
        .args(["scan", "--json"])
        .arg(&drive)
        .stdout()?;
    let report: ScanReport = serde_json::from_str(&out)?;
    ensure!(report.repos.is_empty(), "{report:?}");
    ensure!(
        report
            .problems
            .iter()
            .any(|p| p.kind == ProblemKind::Unsafe && p.reason.contains("outside the drive")),
        "{report:?}"
    );

    let run = pull_remote(&trust_root(tmp.path()), &dest.path, &drive, &[BRANCH])?;
    assert_refused(
        &run,
        &dest,
        &remote_ref(BRANCH),
        &before,
        &["no usable source", "outside the drive"],
    )
}

/// `ferryctl [-v] pull` of the branch from `from` into `dest`, which must fail: its stderr.
fn failed_pull(base: &Path, dest: &Path, from: &Path, verbose: bool) -> Result<String> {
    let mut tool = ferryctl(&trust_root(base))?;
    if verbose {
        tool = tool.arg("-v");
    }
    let output = tool
        .args(["pull", "--repo"])
        .arg(dest)
        .arg("--from")
        .arg(from)
        .args(["--remote", "origin", BRANCH])
        .output()?;
    ensure!(output.code() == Some(1), "{}", output.stderr);
    Ok(output.stderr)
}

/// A destination whose config cannot be read: the error says the destination cannot be opened,
/// then which file could not be read, then why, each once; `-v` lists the causes on lines of
/// their own.
#[test]
fn unreadable_destination_config_names_each_cause_once() -> Result<()> {
    let tmp = TempDir::new()?;
    let (publisher, dest, _) = setup(tmp.path(), false)?;
    // A directory in place of the config file: opened, but reading it fails (EISDIR), even
    // as root.
    let config = dest.path.join("config");
    fs::remove_file(&config)?;
    fs::create_dir(&config)?;
    let why = "Is a directory (os error 21)";
    for verbose in [false, true] {
        let stderr = &failed_pull(tmp.path(), &dest.path, &publisher.repo.path, verbose)?;
        ensure!(stderr.contains("cannot open the destination"), "{stderr}");
        ensure!(
            stderr.matches(&format!("{}", config.display())).count() == 1,
            "{stderr}"
        );
        ensure!(stderr.matches(why).count() == 1, "{stderr}");
        if verbose {
            ensure!(
                stderr
                    .lines()
                    .any(|line| line.trim_start() == format!("caused by: {why}")),
                "the read error is not listed as a cause:\n{stderr}"
            );
        }
    }
    Ok(())
}

/// A tampered object from a drive: the error names the source, the object and why it was
/// refused, each once; `-v` puts why on a line of its own.
#[test]
fn tampered_object_names_each_cause_once() -> Result<()> {
    let tmp = TempDir::new()?;
    let (publisher, dest, _) = setup(tmp.path(), true)?;
    let commit = second_commit(&publisher)?;
    tamper::tamper_content(
        &publisher.repo,
        &commit,
        standard::HELLO,
        b"hello",
        b"HACKD",
    )?;
    let why = "not to its name: the source is corrupt or has been tampered with";
    for verbose in [false, true] {
        let stderr = &failed_pull(tmp.path(), &dest.path, &publisher.repo.path, verbose)?;
        // The error's lines, without the warning logged when the source was dropped.
        let error: Vec<&str> = stderr
            .lines()
            .filter(|line| line.starts_with("error: ") || line.starts_with("  caused by: "))
            .collect();
        let error = error.join("\n");
        ensure!(error.matches(why).count() == 1, "{stderr}");
        ensure!(error.matches("server").count() == 1, "{stderr}");
        if verbose {
            ensure!(
                error
                    .lines()
                    .any(|line| line.starts_with("  caused by: ") && line.ends_with(why)),
                "why the object was refused is not listed as a cause:\n{stderr}"
            );
        }
    }
    Ok(())
}
