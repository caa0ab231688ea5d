//! Shared helpers of the `ferryctl pull` end-to-end tests: running the real binary, reading
//! its JSON event stream, and checking that a refused pull changed nothing.

#![allow(
    dead_code,
    reason = "each test file uses a different part of the helpers"
)]

pub mod delta_signing;
pub mod peer;

use std::ffi::OsStr;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use ferry_engine::event::{parse_line, Event};
use ferry_engine::schema::InstallResult;
use ferry_engine::schema::JsonLines;
use ferry_tests::cmd::{Output, Tool};
use ferry_tests::gpg::GpgKey;
use ferry_tests::ostree::{OstreeRepo, RefLocation, RemoteSpec, RepoMode};

#[allow(
    unused_imports,
    reason = "each test file uses a different part of the helpers"
)]
pub use ferry_tests::publisher::{Publisher, BRANCH, COLLECTION};
pub const REMOTE: &str = "origin";

/// `ferryctl`, with the machine-wide trust directories moved under `trust_root` (empty unless a
/// test fills it), so nothing on the host decides a test's outcome.
pub fn ferryctl(trust_root: &Path) -> Result<Tool> {
    std::fs::create_dir_all(trust_root)?;
    Ok(ferry_tests::bins::ferryctl()?
        .env("FERRY_TRUST_ROOT", trust_root)
        .env("LC_ALL", "C.UTF-8")
        .env_remove("FERRY_LOG"))
}

/// A finished `ferryctl pull --json` and the events it printed.
#[derive(Debug)]
pub struct PullRun {
    pub output: Output,
    pub events: Vec<Event>,
}

impl PullRun {
    pub fn success(&self) -> bool {
        self.output.success()
    }

    /// The last progress event's `(objects_done, objects_total, bytes_done, bytes_total)`.
    pub fn last_progress(&self) -> Option<(u64, u64, u64, u64)> {
        self.events.iter().rev().find_map(|event| match event {
            Event::Progress {
                objects_done,
                objects_total,
                bytes_done,
                bytes_total,
                ..
            } => Some((*objects_done, *objects_total, *bytes_done, *bytes_total)),
            _ => None,
        })
    }

    pub fn results(&self) -> Vec<InstallResult> {
        self.events
            .iter()
            .filter_map(|event| match event {
                Event::Result(result) => Some(result.clone()),
                _ => None,
            })
            .collect()
    }

    /// Fails with the whole output unless the pull succeeded.
    pub fn require_success(self) -> Result<Self> {
        ensure!(
            self.output.success(),
            "ferryctl pull failed ({:?}):\nstdout:\n{}\nstderr:\n{}",
            self.output.code(),
            self.output.stdout,
            self.output.stderr
        );
        Ok(self)
    }
}

/// The arguments of `ferryctl pull --json --repo DEST --from SOURCE... EXTRA... REF...`.
pub fn pull_args(
    dest: &Path,
    from: &[&OsStr],
    extra: &[&str],
    refs: &[&str],
) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> =
        vec!["pull".into(), "--json".into(), "--repo".into(), dest.into()];
    for source in from {
        args.push("--from".into());
        args.push((*source).into());
    }
    args.extend(extra.iter().map(|a| a.into()));
    args.extend(refs.iter().map(|r| r.into()));
    args
}

/// Runs `ferryctl pull --json` to completion.
pub fn pull(
    trust_root: &Path,
    dest: &Path,
    from: &[&OsStr],
    extra: &[&str],
    refs: &[&str],
) -> Result<PullRun> {
    let output = ferryctl(trust_root)?
        .args(pull_args(dest, from, extra, refs))
        .output()?;
    let events = parse_events(&output.stdout)?;
    Ok(PullRun { output, events })
}

/// Runs `ferryctl pull --json`, killing it when it is still running after `timeout`: `None`
/// then. For pulls a misbehaving source could hold up.
pub fn pull_within(
    timeout: Duration,
    trust_root: &Path,
    dest: &Path,
    from: &[&OsStr],
    extra: &[&str],
    refs: &[&str],
) -> Result<Option<PullRun>> {
    let Some(output) = ferryctl(trust_root)?
        .args(pull_args(dest, from, extra, refs))
        .output_within(timeout)?
    else {
        return Ok(None);
    };
    let events = parse_events(&output.stdout)?;
    Ok(Some(PullRun { output, events }))
}

/// `ferryctl pull --json --from SOURCE --remote origin REF`.
pub fn pull_remote(
    trust_root: &Path,
    dest: &Path,
    source: impl AsRef<OsStr>,
    refs: &[&str],
) -> Result<PullRun> {
    pull(
        trust_root,
        dest,
        &[source.as_ref()],
        &["--remote", REMOTE],
        refs,
    )
}

/// A destination with the publisher's branch installed: `ferryctl pull` of it from the
/// publisher's repository, which must succeed.
pub fn install_published(base: &Path, dest: &OstreeRepo, publisher: &Publisher) -> Result<()> {
    pull_remote(
        &trust_root(base),
        &dest.path,
        &publisher.repo.path,
        &[BRANCH],
    )?
    .require_success()?;
    Ok(())
}

pub use ferry_tests::bins::parse_events;

/// `refs/remotes/origin/REF`.
pub fn remote_ref(name: &str) -> RefLocation {
    RefLocation::Remote {
        remote: REMOTE.into(),
        name: name.into(),
    }
}

/// Checks what every refusal must leave behind: exit code 1 with one error line naming the
/// problem (`needles`), the destination ref as it was, and a repository `ostree fsck`
/// accepts.
pub fn assert_refused(
    run: &PullRun,
    dest: &OstreeRepo,
    location: &RefLocation,
    before: &Option<String>,
    needles: &[&str],
) -> Result<()> {
    ensure!(
        run.output.code() == Some(1),
        "expected exit code 1, got {:?}\nstdout:\n{}\nstderr:\n{}",
        run.output.code(),
        run.output.stdout,
        run.output.stderr
    );
    let errors: Vec<&str> = run
        .output
        .stderr
        .lines()
        .filter(|line| line.starts_with("error: "))
        .collect();
    ensure!(
        errors.len() == 1,
        "expected one error line, got:\n{}",
        run.output.stderr
    );
    for needle in needles {
        ensure!(
            errors[0].contains(needle),
            "the error does not mention {needle:?}:\n{}",
            errors[0]
        );
    }
    let now = dest.read_ref(location)?;
    ensure!(
        now == *before,
        "the destination ref changed from {before:?} to {now:?}"
    );
    dest.fsck().context("ostree fsck of the destination")?;
    Ok(())
}

/// A destination repository with remote `origin` of collection [`COLLECTION`], trusting `key`
/// through `origin.trustedkeys.gpg` (or verifying nothing when `key` is None).
pub fn client(path: &Path, mode: RepoMode, key: Option<&GpgKey>) -> Result<OstreeRepo> {
    let repo = OstreeRepo::init(path, mode, None)?;
    let mut remote = RemoteSpec::new(REMOTE, "http://127.0.0.1:9/unused").collection_id(COLLECTION);
    if let Some(key) = key {
        remote = remote.trust(key);
    }
    repo.remote_add(&remote)?;
    Ok(repo)
}

/// Number of object files in a repository, all kinds together.
pub fn object_count(repo: &OstreeRepo) -> Result<usize> {
    Ok(repo.count_objects()?.values().sum())
}

/// A spawned `ferryctl pull --json`, whose event lines are read as they come.
pub struct RunningPull {
    pub child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl RunningPull {
    pub fn spawn(trust_root: &Path, args: Vec<std::ffi::OsString>) -> Result<Self> {
        let mut child = ferryctl(trust_root)?.args(args).spawn()?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (send, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in JsonLines::new(BufReader::new(stdout)) {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Self { child, lines })
    }

    /// Waits for an event matching `wanted`, failing after `timeout` or when the output ends.
    pub fn wait_for_event(
        &mut self,
        timeout: Duration,
        mut wanted: impl FnMut(&Event) -> bool,
    ) -> Result<Event> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .context("no matching event before the deadline or the end of the output")?;
            let event = parse_line(&line).with_context(|| format!("bad event line {line}"))?;
            if wanted(&event) {
                return Ok(event);
            }
        }
    }
}

/// A fresh temporary directory for the machine-wide trust roots of one test.
pub fn trust_root(base: &Path) -> PathBuf {
    base.join("trust-root")
}

/// The object files under `repo/objects/`, by path.
pub fn object_files(repo: &Path) -> Result<std::collections::BTreeSet<PathBuf>> {
    let mut out = std::collections::BTreeSet::new();
    for dir in std::fs::read_dir(repo.join("objects"))? {
        for file in std::fs::read_dir(dir?.path())? {
            out.insert(file?.path());
        }
    }
    Ok(out)
}

/// A publisher at 1.0 that `dest` installed, then 2.0 committed with an `ostree static-delta
/// generate` delta from 1.0. The publisher's summary is not updated yet.
pub struct DeltaUpdate {
    pub publisher: Publisher,
    pub dest: OstreeRepo,
    pub v2: String,
    /// The content objects 2.0 added to the publisher's repository.
    pub new_content: Vec<PathBuf>,
}

impl DeltaUpdate {
    pub fn new(base: &Path) -> Result<Self> {
        let publisher = Publisher::new(
            &base.join("publisher"),
            ferry_tests::tree::TreeOptions::plain(),
        )?;
        let dest = client(&base.join("dest"), RepoMode::BareUser, Some(&publisher.key))?;
        install_published(base, &dest, &publisher)?;
        let before = object_files(&publisher.repo.path)?;
        publisher.tree.modify_for_second_commit(0)?;
        let v2 = publisher.repo.commit(
            &ferry_tests::ostree::CommitSpec::new(BRANCH, &publisher.tree.root)
                .version("2.0")
                .sign(&publisher.key),
        )?;
        publisher
            .repo
            .ostree()
            .args(["static-delta", "generate"])
            .arg(format!("--from={}", publisher.commit))
            .arg(format!("--to={v2}"))
            .run()?;
        let new_content = object_files(&publisher.repo.path)?
            .into_iter()
            .filter(|object| !before.contains(object))
            .filter(|object| object.extension() == Some(OsStr::new("filez")))
            .collect::<Vec<_>>();
        ensure!(!new_content.is_empty(), "2.0 adds no content object");
        Ok(Self {
            publisher,
            dest,
            v2,
            new_content,
        })
    }

    /// Deletes the content objects 2.0 added: only the delta carries them now.
    pub fn leave_only_the_delta(&self) -> Result<()> {
        for object in &self.new_content {
            std::fs::remove_file(object)?;
        }
        Ok(())
    }

    /// A copy of the destination at 1.0 at `path`, so several pulls can start from it.
    pub fn copy_of_dest(&self, path: &Path) -> Result<OstreeRepo> {
        Tool::new("cp")
            .arg("-a")
            .arg(&self.dest.path)
            .arg(path)
            .run()?;
        Ok(OstreeRepo::open(path))
    }

    /// Pulls 2.0 into `dest` from `source` (the publisher's repository by default), which
    /// must succeed and leave 2.0 installed and fsck-clean.
    pub fn pull_into(
        &self,
        base: &Path,
        dest: &OstreeRepo,
        source: Option<&OsStr>,
    ) -> Result<PullRun> {
        let source = source.unwrap_or(self.publisher.repo.path.as_os_str());
        let run =
            pull_remote(&trust_root(base), &dest.path, source, &[BRANCH])?.require_success()?;
        ensure!(dest.read_ref(&remote_ref(BRANCH))? == Some(self.v2.clone()));
        dest.fsck()?;
        Ok(run)
    }
}
