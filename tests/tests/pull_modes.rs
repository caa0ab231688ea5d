//! `ferryctl scan` and `ferryctl pull` against real ostree: a drive written by
//! `ostree create-usb`, a plain archive repository and a bare-user repository, each pulled
//! into all four destination modes. Every result must pass `ostree fsck`, and its checkout must
//! equal the source's, byte for byte, with modes, xattrs and (for bare) ownership.

mod pull_support;

use std::path::Path;

use anyhow::{ensure, Context, Result};
use ferry_engine::schema::{InstallStatus, ScanReport};
use ferry_tests::compare::{assert_trees_equal, CompareOptions};
use ferry_tests::gpg::GpgKey;
use ferry_tests::ostree::{CheckoutMode, CommitSpec, OstreeRepo, RepoMode};
use ferry_tests::tree::{Tree, TreeOptions};
use pull_support::{
    assert_refused, client, ferryctl, object_count, pull_remote, remote_ref, trust_root, BRANCH,
    COLLECTION,
};
use tempfile::TempDir;

/// The ref holding the tree without xattrs or foreign owners, which bare-user-only can store.
const PLAIN_BRANCH: &str = "os/x86_64/plain";
/// The ref holding a tree whose only unusual content is a file with an xattr.
const XATTR_BRANCH: &str = "os/x86_64/xattrs";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SourceKind {
    CreateUsb,
    Archive,
    BareUser,
}

/// A source holding [`BRANCH`] (the "many files" tree with xattrs and, as root, a foreign
/// owner) and [`PLAIN_BRANCH`] (the standard tree without either), both signed.
struct Source {
    /// What `ferryctl pull --from` is given: the drive root or the repository.
    from: std::path::PathBuf,
    /// The repository holding the commits, for reference checkouts.
    repo: OstreeRepo,
    full: String,
    plain: String,
}

fn make_source(base: &Path, kind: SourceKind, key: &GpgKey) -> Result<Source> {
    let full_tree = Tree::many_files(&base.join("full-tree"), TreeOptions::full(), 11)?;
    let plain_tree = Tree::standard(&base.join("plain-tree"), TreeOptions::plain())?;
    let xattr_tree = Tree::standard(
        &base.join("xattr-tree"),
        TreeOptions {
            xattrs: true,
            foreign_owner: false,
        },
    )?;
    let mode = match kind {
        SourceKind::BareUser => RepoMode::BareUser,
        _ => RepoMode::Archive,
    };
    let repo = OstreeRepo::init(&base.join("publisher"), mode, Some(COLLECTION))?;
    // The fixture need not survive a power cut; syncing it only slows the test.
    repo.config_set("core.fsync", "false")?;
    let full = repo.commit(
        &CommitSpec::new(BRANCH, &full_tree.root)
            .version("1.0")
            .sign(key),
    )?;
    let plain = repo.commit(
        &CommitSpec::new(PLAIN_BRANCH, &plain_tree.root)
            .version("1.0")
            .canonical()
            .sign(key),
    )?;
    repo.commit(
        &CommitSpec::new(XATTR_BRANCH, &xattr_tree.root)
            .version("1.0")
            .sign(key),
    )?;
    repo.update_summary(None)?;
    if kind != SourceKind::CreateUsb {
        return Ok(Source {
            from: repo.path.clone(),
            repo,
            full,
            plain,
        });
    }
    let drive = base.join("drive");
    let usb = repo.create_usb(
        &drive,
        &[
            (COLLECTION, BRANCH),
            (COLLECTION, PLAIN_BRANCH),
            (COLLECTION, XATTR_BRANCH),
        ],
    )?;
    ensure!(usb.mirror_commit(COLLECTION, BRANCH)? == full);
    Ok(Source {
        from: drive,
        repo: usb.repo,
        full,
        plain,
    })
}

/// `ferryctl scan --json` finds the source's repository with both refs, their commits and
/// versions.
fn check_scan(base: &Path, source: &Source, mode: &str) -> Result<()> {
    let out = ferryctl(&trust_root(base))?
        .arg("scan")
        .arg("--json")
        .arg(&source.from)
        .stdout()?;
    let report: ScanReport = serde_json::from_str(&out).context("scan --json output")?;
    ensure!(report.repos.len() == 1, "{report:?}");
    let repo = &report.repos[0];
    ensure!(repo.mode == mode, "mode {} instead of {mode}", repo.mode);
    ensure!(
        Path::new(&repo.path) == std::fs::canonicalize(&source.repo.path)?,
        "path {}",
        repo.path
    );
    for (name, commit) in [(BRANCH, &source.full), (PLAIN_BRANCH, &source.plain)] {
        let found = repo
            .refs
            .iter()
            .find(|r| r.ref_name == name)
            .with_context(|| format!("{name} not in {report:?}"))?;
        ensure!(found.commit.to_hex() == *commit);
        ensure!(found.collection_id.as_deref() == Some(COLLECTION));
        ensure!(found.version.as_deref() == Some("1.0"));
        ensure!(found.timestamp > 0);
    }
    let human = ferryctl(&trust_root(base))?
        .arg("scan")
        .arg(&source.from)
        .stdout()?;
    ensure!(
        human.contains(BRANCH) && human.contains(&source.full[..10]),
        "{human}"
    );
    Ok(())
}

/// Pulls the source into a fresh repository of each mode and compares the results.
fn pull_into_every_mode(kind: SourceKind) -> Result<()> {
    ferry_tests::require_root("pulling into a bare repository")?;
    let tmp = TempDir::new()?;
    let base = tmp.path();
    let key = GpgKey::generate(&base.join("gnupg"), "Publisher <publisher@example.org>")?;
    let source = make_source(base, kind, &key)?;
    let scanned_mode = match kind {
        SourceKind::BareUser => "bare-user",
        _ => "archive",
    };
    check_scan(base, &source, scanned_mode)?;

    let reference = base.join("co-source");
    source
        .repo
        .checkout(&source.full, &reference, CheckoutMode::Plain)?;
    let plain_reference = base.join("co-source-plain");
    source
        .repo
        .checkout(&source.plain, &plain_reference, CheckoutMode::User)?;

    for mode in RepoMode::ALL {
        let dest = client(&base.join(format!("dest-{mode}")), mode, Some(&key))?;
        let (name, commit) = if mode == RepoMode::BareUserOnly {
            (PLAIN_BRANCH, &source.plain)
        } else {
            (BRANCH, &source.full)
        };
        let run = pull_remote(&trust_root(base), &dest.path, &source.from, &[name])?
            .require_success()
            .with_context(|| format!("pull into {mode}"))?;
        let results = run.results();
        ensure!(
            results.len() == 1 && results[0].status == InstallStatus::Installed,
            "{results:?}"
        );
        dest.fsck().with_context(|| format!("fsck of {mode}"))?;
        ensure!(dest.read_ref(&remote_ref(name))?.as_ref() == Some(commit));
        ensure!(
            !dest
                .path
                .join(format!("state/{commit}.commitpartial"))
                .exists(),
            "commitpartial left behind in {mode}"
        );

        let checkout = base.join(format!("co-{mode}"));
        if mode == RepoMode::BareUserOnly {
            dest.checkout(commit, &checkout, CheckoutMode::User)?;
            assert_trees_equal(
                &plain_reference,
                &checkout,
                &CompareOptions::content_and_modes(),
            )
            .context("checkout from bare-user-only")?;
        } else {
            dest.checkout(commit, &checkout, CheckoutMode::Plain)?;
            assert_trees_equal(&reference, &checkout, &CompareOptions::everything())
                .with_context(|| format!("checkout from {mode}"))?;
        }
    }

    // bare-user-only cannot store xattrs: ostree would write a repository its own fsck
    // refuses, Ferry refuses to pull instead.
    let dest = client(
        &base.join("dest-buo-xattrs"),
        RepoMode::BareUserOnly,
        Some(&key),
    )?;
    let run = pull_remote(&trust_root(base), &dest.path, &source.from, &[XATTR_BRANCH])?;
    assert_refused(
        &run,
        &dest,
        &remote_ref(XATTR_BRANCH),
        &None,
        &["bare-user-only", "extended attributes", "user.test"],
    )?;
    Ok(())
}

#[test]
fn create_usb_drive_pulls_into_every_mode() -> Result<()> {
    pull_into_every_mode(SourceKind::CreateUsb)
}

#[test]
fn archive_repo_pulls_into_every_mode() -> Result<()> {
    pull_into_every_mode(SourceKind::Archive)
}

#[test]
fn bare_user_repo_pulls_into_every_mode() -> Result<()> {
    pull_into_every_mode(SourceKind::BareUser)
}

/// The second commit shares most objects with the first: only the new ones are fetched, and
/// the progress counts say so exactly. Pulling again changes nothing.
#[test]
fn incremental_pull_fetches_only_new_objects() -> Result<()> {
    let tmp = TempDir::new()?;
    let base = tmp.path();
    let key = GpgKey::generate(&base.join("gnupg"), "Publisher <publisher@example.org>")?;
    let tree = Tree::many_files(&base.join("tree"), TreeOptions::full(), 5)?;
    let repo = OstreeRepo::init(&base.join("publisher"), RepoMode::Archive, Some(COLLECTION))?;
    let first = repo.commit(&CommitSpec::new(BRANCH, &tree.root).version("1").sign(&key))?;
    let dest = client(&base.join("dest"), RepoMode::BareUser, Some(&key))?;
    let run =
        pull_remote(&trust_root(base), &dest.path, &repo.path, &[BRANCH])?.require_success()?;
    let (done, total, bytes_done, bytes_total) = run.last_progress().context("no progress")?;
    let after_first = object_count(&dest)?;
    ensure!(
        done == total && done as usize == after_first,
        "first pull: {done}/{total} objects reported, {after_first} stored"
    );
    ensure!(bytes_done == bytes_total && bytes_done > 3 << 20);

    tree.modify_for_second_commit(5)?;
    let second = repo.commit(&CommitSpec::new(BRANCH, &tree.root).version("2").sign(&key))?;
    ensure!(first != second);
    let run =
        pull_remote(&trust_root(base), &dest.path, &repo.path, &[BRANCH])?.require_success()?;
    let (done, total, _, _) = run.last_progress().context("no progress")?;
    let added = object_count(&dest)? - after_first;
    ensure!(
        done == total && done as usize == added,
        "second pull: {done}/{total} objects reported, {added} added"
    );
    // The commit and its signature, the changed directories (/, usr, usr/share and the data
    // directories of the rewritten files) and at most 8 new files: nothing like the 2500.
    ensure!(added < 40, "{added} objects for a small change");
    dest.fsck()?;
    ensure!(dest.read_ref(&remote_ref(BRANCH))? == Some(second.clone()));

    let run =
        pull_remote(&trust_root(base), &dest.path, &repo.path, &[BRANCH])?.require_success()?;
    let results = run.results();
    ensure!(
        results.len() == 1 && results[0].status == InstallStatus::UpToDate,
        "{results:?}"
    );
    ensure!(object_count(&dest)? == after_first + added);
    let human = ferryctl(&trust_root(base))?
        .args(["pull", "--repo"])
        .arg(&dest.path)
        .arg("--from")
        .arg(&repo.path)
        .args(["--remote", "origin", BRANCH])
        .stdout()?;
    ensure!(human.contains("already up to date"), "{human}");
    Ok(())
}
