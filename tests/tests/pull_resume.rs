//! Interrupted and concurrent pulls: `ferryctl pull` killed midway leaves a repository that
//! `ostree fsck` accepts and that the next pull completes (objects wait in a staging directory
//! under `tmp/` until a batch is synced, and what a killed pull left there is discarded, never
//! moved into `objects/`); `ostree pull-local` into the same repository at the same time does
//! not disturb it (both take libostree's shared lock), and `ostree prune` waits for it.

mod pull_support;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use ferry_engine::event::Event;
use ferry_tests::compare::{assert_trees_equal, CompareOptions};
use ferry_tests::generate::{Bucket, GenSpec};
use ferry_tests::gpg::GpgKey;
use ferry_tests::ostree::{CheckoutMode, CommitSpec, OstreeRepo, RefLocation, RepoMode};
use ferry_tests::tree::{Tree, TreeOptions};
use pull_support::{
    client, object_count, pull_args, pull_remote, remote_ref, trust_root, RunningPull, BRANCH,
    COLLECTION,
};
use tempfile::TempDir;

/// A signed archive repository holding a tree of a few thousand files (about 12 MiB), big
/// enough for a pull to be caught midway.
fn big_publisher(base: &Path) -> Result<(GpgKey, OstreeRepo, String)> {
    let key = GpgKey::generate(&base.join("gnupg"), "Publisher <publisher@example.org>")?;
    let spec = GenSpec {
        buckets: vec![
            Bucket {
                count: 3000,
                min: 512,
                max: 4096,
            },
            Bucket {
                count: 4,
                min: 1 << 20,
                max: 2 << 20,
            },
        ],
        files_per_dir: 100,
        seed: 99,
    };
    let tree = Tree::with_generated(&base.join("tree"), TreeOptions::full(), spec)?;
    let repo = OstreeRepo::init(&base.join("publisher"), RepoMode::Archive, Some(COLLECTION))?;
    // The fixture need not survive a power cut; syncing it only slows the test.
    repo.config_set("core.fsync", "false")?;
    let commit = repo.commit(
        &CommitSpec::new(BRANCH, &tree.root)
            .version("1.0")
            .generate_sizes()
            .sign(&key),
    )?;
    Ok((key, repo, commit))
}

/// A running `ferryctl pull` of a big commit from its publisher into a client repository
/// that trusts the publisher.
struct BigPull {
    source: OstreeRepo,
    commit: String,
    dest: OstreeRepo,
    running: RunningPull,
}

impl BigPull {
    /// Publishes the big commit under `base` and starts pulling it into a `mode` client.
    fn start(base: &Path, mode: RepoMode) -> Result<BigPull> {
        let (key, source, commit) = big_publisher(base)?;
        let dest = client(&base.join("dest"), mode, Some(&key))?;
        let args = pull_args(
            &dest.path,
            &[source.path.as_os_str()],
            &["--remote", "origin"],
            &[BRANCH],
        );
        let running = RunningPull::spawn(&trust_root(base), args)?;
        Ok(BigPull {
            source,
            commit,
            dest,
            running,
        })
    }

    /// Waits for progress of at least `done` objects, with more to come; returns it.
    fn wait_until_midway(&mut self, done: u64) -> Result<Event> {
        self.running
            .wait_for_event(Duration::from_secs(120), |event| {
                matches!(event, Event::Progress { objects_done, objects_total, .. }
                    if *objects_done >= done && objects_done < objects_total)
            })
    }

    /// The destination passes fsck, its remote ref names the commit, and its checkout equals
    /// the source's (into `base/co-source` and `base/co-dest`).
    fn expect_whole(&self, base: &Path) -> Result<()> {
        self.dest.fsck()?;
        ensure!(self.dest.read_ref(&remote_ref(BRANCH))? == Some(self.commit.clone()));
        let (theirs, ours) = (base.join("co-source"), base.join("co-dest"));
        self.source
            .checkout(&self.commit, &theirs, CheckoutMode::Plain)?;
        self.dest
            .checkout(&self.commit, &ours, CheckoutMode::Plain)?;
        assert_trees_equal(&theirs, &ours, &CompareOptions::everything())?;
        Ok(())
    }
}

/// What a torn write left: the start of an object's content.
const TORN: &[u8] = b"only the first bytes";

/// Staging directories under a repository's `tmp/`.
fn staging_dirs(repo: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(repo.join("tmp"))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("staging-") && !name.ends_with("-lock") && entry.file_type()?.is_dir() {
            found.push(entry.path());
        }
    }
    Ok(found)
}

/// Files under `dir`, recursively.
fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            found.extend(files_under(&entry.path())?);
        } else {
            found.push(entry.path());
        }
    }
    Ok(found)
}

/// Writes a torn copy of one of the source's content objects into `staging`, named as the
/// bare-user destination names it (libostree's staging layout `XX/YYYY.file`). Returns that
/// name and the planted file's path.
fn plant_torn_object(source: &OstreeRepo, staging: &Path) -> Result<(String, PathBuf)> {
    let filez = files_under(&source.path.join("objects"))?
        .into_iter()
        .find(|path| path.extension().is_some_and(|ext| ext == "filez"))
        .context("no content object in the source")?;
    let prefix = filez
        .parent()
        .and_then(Path::file_name)
        .context("object directory")?
        .to_string_lossy()
        .into_owned();
    let stem = filez
        .file_stem()
        .context("object name")?
        .to_string_lossy()
        .into_owned();
    let name = format!("{prefix}/{stem}.file");
    std::fs::create_dir_all(staging.join(&prefix))?;
    let path = staging.join(&name);
    std::fs::write(&path, TORN)?;
    Ok((name, path))
}

/// Runs `ostree` with `args` on `dest` while `ferry` pulls, then waits for both: each must
/// succeed.
fn ostree_beside_the_pull(
    dest: &OstreeRepo,
    args: &[&OsStr],
    ferry: &mut RunningPull,
) -> Result<()> {
    let output = dest.ostree().args(args).spawn()?.wait_with_output()?;
    ensure!(
        output.status.success(),
        "ostree {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    ferry.wait_for_event(Duration::from_secs(300), |event| {
        matches!(event, Event::Finished { .. })
    })?;
    let status = ferry.child.wait()?;
    ensure!(status.success(), "ferryctl pull failed: {status}");
    Ok(())
}

#[test]
fn killed_pull_leaves_a_valid_repo_and_the_next_pull_completes() -> Result<()> {
    let tmp = TempDir::new()?;
    let base = tmp.path();
    let mut pull = BigPull::start(base, RepoMode::BareUser)?;
    let event = pull.wait_until_midway(50)?;
    pull.running.child.kill()?;
    let status = pull.running.child.wait()?;
    let (source, commit, dest) = (&pull.source, &pull.commit, &pull.dest);
    ensure!(!status.success(), "the pull ended before it was killed");
    ensure!(
        dest.read_ref(&remote_ref(BRANCH))?.is_none(),
        "the ref was written by a pull killed at {event:?}"
    );
    // Objects of committed batches are in `objects/`; the rest wait, complete or not, in the
    // killed pull's staging directory.
    let stored = object_count(dest)?;
    let leftovers = staging_dirs(&dest.path)?;
    ensure!(
        leftovers.len() == 1,
        "expected the killed pull's staging directory, found {leftovers:?}"
    );
    let staged = files_under(&leftovers[0])?.len();
    ensure!(
        stored + staged >= 50,
        "only {stored} objects stored and {staged} staged before the kill"
    );
    // A torn object under its final name in the leftover directory (as a power cut could
    // leave one) must not reach `objects/`.
    let (torn_name, torn_path) = plant_torn_object(source, &leftovers[0])?;
    ensure!(
        dest.path
            .join(format!("state/{commit}.commitpartial"))
            .exists(),
        "the interrupted commit is not marked partial"
    );
    // Every object under `objects/` is whole; the commit itself is there only if a batch
    // was committed before the kill, and then it is marked partial.
    let fsck = dest.fsck().context("fsck after the kill")?;
    let commit_stored = dest
        .path
        .join(format!("objects/{}/{}.commit", &commit[..2], &commit[2..]))
        .exists();
    ensure!(
        !commit_stored || fsck.stdout.contains("partial commits not verified"),
        "{}",
        fsck.stdout
    );

    let run =
        pull_remote(&trust_root(base), &dest.path, &source.path, &[BRANCH])?.require_success()?;
    let (done, total, _, _) = run.last_progress().context("no progress")?;
    let all = object_count(dest)?;
    ensure!(
        done == total && (done as usize) + stored == all,
        "resumed pull fetched {done}/{total}; {stored} were stored before, {all} now"
    );
    pull.expect_whole(base)?;
    ensure!(!dest
        .path
        .join(format!("state/{commit}.commitpartial"))
        .exists());
    ensure!(
        !torn_path.exists(),
        "the leftover staging directory was kept"
    );
    let stored_object = std::fs::read(dest.path.join("objects").join(&torn_name))?;
    ensure!(
        stored_object != TORN,
        "the torn object {torn_name} was moved into objects/"
    );
    ensure!(
        staging_dirs(&dest.path)?.is_empty(),
        "a staging directory is left"
    );
    Ok(())
}

/// SIGTERM (as SIGINT) cancels between objects: exit code 1 with one line saying so, the
/// ref unchanged, a valid repository, and the next pull completes it.
#[test]
fn sigterm_cancels_cleanly() -> Result<()> {
    let tmp = TempDir::new()?;
    let base = tmp.path();
    let mut pull = BigPull::start(base, RepoMode::Archive)?;
    pull.wait_until_midway(20)?;
    let BigPull {
        source,
        commit,
        dest,
        mut running,
    } = pull;
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&running.child),
        rustix::process::Signal::TERM,
    )?;
    let cancelled = running.wait_for_event(Duration::from_secs(60), |event| {
        matches!(event, Event::Result(_))
    })?;
    let output = running.child.wait_with_output()?;
    ensure!(
        output.status.code() == Some(1),
        "exit status {:?} after SIGTERM",
        output.status
    );
    let Event::Result(result) = cancelled else {
        unreachable!("matched above")
    };
    ensure!(
        result.status == ferry_engine::schema::InstallStatus::Cancelled,
        "{result:?}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(stderr.contains("cancelled"), "{stderr}");
    ensure!(dest.read_ref(&remote_ref(BRANCH))?.is_none());
    dest.fsck().context("fsck after cancelling")?;

    pull_remote(&trust_root(base), &dest.path, &source.path, &[BRANCH])?.require_success()?;
    dest.fsck()?;
    ensure!(dest.read_ref(&remote_ref(BRANCH))? == Some(commit));
    Ok(())
}

#[test]
fn ostree_pull_local_at_the_same_time_succeeds_too() -> Result<()> {
    let tmp = TempDir::new()?;
    let base = tmp.path();
    let mut pull = BigPull::start(base, RepoMode::BareUser)?;
    let pull_local = [
        OsStr::new("pull-local"),
        OsStr::new("--untrusted"),
        pull.source.path.as_os_str(),
        OsStr::new(BRANCH),
    ];
    ostree_beside_the_pull(&pull.dest, &pull_local, &mut pull.running)?;

    pull.expect_whole(base)?;
    ensure!(pull.dest.read_ref(&RefLocation::Head(BRANCH.into()))? == Some(pull.commit.clone()));
    Ok(())
}

/// `ostree prune` started during a pull waits for the pull's shared lock, then prunes nothing
/// the pull wrote: both succeed and the repository is whole.
#[test]
fn ostree_prune_at_the_same_time_succeeds_too() -> Result<()> {
    let tmp = TempDir::new()?;
    let base = tmp.path();
    let mut pull = BigPull::start(base, RepoMode::BareUser)?;
    pull.wait_until_midway(20)?;
    let prune = [OsStr::new("prune"), OsStr::new("--refs-only")];
    ostree_beside_the_pull(&pull.dest, &prune, &mut pull.running)?;
    pull.expect_whole(base)?;
    ensure!(
        staging_dirs(&pull.dest.path)?.is_empty(),
        "a staging directory is left"
    );
    Ok(())
}
