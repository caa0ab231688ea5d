//! Static deltas made by `ostree static-delta generate`, applied by `ferryctl pull`: an
//! update (with bsdiff on a changed library and a fallback object) into all four modes, a
//! from-scratch `--inline` delta, a corrupted part (the pull falls back to objects), and a
//! delta served over HTTP (no objects fetched beyond the fallback), and one listed by two
//! peers (its parts fetched from both; a peer serving corrupt parts dropped).
//!
//! To prove a delta was applied, the content objects it carries are deleted from the source
//! after it is generated: an object pull would then fail, as `--no-deltas` shows.

mod pull_support;

use std::collections::{BTreeSet, HashSet};
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use ferry_engine::event::{Event, MessageLevel};
use ferry_engine::schema::SourceState;
use ferry_tests::compare::{assert_trees_equal, CompareOptions};
use ferry_tests::generate::pseudo_random;
use ferry_tests::gpg::GpgKey;
use ferry_tests::ostree::{CheckoutMode, CommitSpec, OstreeRepo, RepoMode};
use ferry_tests::tree::{Tree, TreeOptions};
use pull_support::peer::{Behaviour, Peer, When};
use pull_support::{client, pull, remote_ref, trust_root, PullRun, BRANCH, COLLECTION, REMOTE};
use tempfile::TempDir;

/// A library changed slightly all over in v2: ostree encodes it with bsdiff.
const LIBRARY: &str = "usr/lib/libexample.so";
/// A file new in v2, larger than `--min-fallback-size=1` (MB): left as a fallback object.
const BIG_NEW_FILE: &str = "usr/share/big-new.bin";

/// A publisher's archive repository with v1 of the standard tree plus [`LIBRARY`], in a
/// temporary directory of its own, which also holds the test's destinations and checkouts.
struct Fixture {
    key: GpgKey,
    tree: Tree,
    repo: OstreeRepo,
    v1: String,
    tmp: TempDir,
}

/// v2 and its delta.
struct Update {
    v2: String,
    /// Objects v2 added to the publisher's repository (paths below it).
    new_objects: BTreeSet<PathBuf>,
    /// The fallback object's path below the repository.
    fallback: PathBuf,
    /// v2 checked out from the publisher before anything was deleted.
    reference: PathBuf,
}

fn object_files(repo: &Path) -> Result<BTreeSet<PathBuf>> {
    let mut out = BTreeSet::new();
    for dir in fs::read_dir(repo.join("objects"))? {
        let dir = dir?.path();
        for file in fs::read_dir(&dir)? {
            out.insert(file?.path().strip_prefix(repo)?.to_path_buf());
        }
    }
    Ok(out)
}

impl Fixture {
    /// The plain tree committed with canonical permissions, which every mode can hold.
    fn new() -> Result<Self> {
        Self::with(TreeOptions::plain())
    }

    /// The standard tree with `options`; canonical permissions only for the plain tree.
    fn with(options: TreeOptions) -> Result<Self> {
        let tmp = TempDir::new()?;
        let base = tmp.path();
        let key = GpgKey::generate(&base.join("gnupg"), "Publisher <publisher@example.org>")?;
        let tree = Tree::standard(&base.join("tree"), options)?;
        tree.write_file(LIBRARY, pseudo_random(96 * 1024, 1))?;
        let repo = OstreeRepo::init(&base.join("server"), RepoMode::Archive, Some(COLLECTION))?;
        repo.config_set("core.fsync", "false")?;
        let v1 = repo.commit(&Self::spec(&tree, options, "1.0").sign(&key))?;
        repo.update_summary(Some(&key))?;
        Ok(Self {
            key,
            tree,
            repo,
            v1,
            tmp,
        })
    }

    /// The test's directory.
    fn base(&self) -> &Path {
        self.tmp.path()
    }

    /// A destination of `mode` at `base/name`, trusting the publisher's key.
    fn client(&self, name: &str, mode: RepoMode) -> Result<OstreeRepo> {
        client(&self.base().join(name), mode, Some(&self.key))
    }

    /// A destination of `mode` at `base/name`, at 1.0 (pulled through Ferry).
    fn client_at_v1(&self, name: &str, mode: RepoMode) -> Result<OstreeRepo> {
        let dest = self.client(name, mode)?;
        self.pull_published(&dest)?;
        ensure!(dest.read_ref(&remote_ref(BRANCH))? == Some(self.v1.clone()));
        Ok(dest)
    }

    /// A destination at 1.0 in each of `modes`, named after its mode.
    fn clients_at_v1(&self, modes: &[RepoMode]) -> Result<Vec<OstreeRepo>> {
        modes
            .iter()
            .map(|&mode| self.client_at_v1(&format!("dest-{}", mode.as_str()), mode))
            .collect()
    }

    /// `ferryctl pull` of the branch into `dest` from every source in `from`, with `extra`
    /// arguments.
    fn pull(&self, dest: &OstreeRepo, from: &[&OsStr], extra: &[&str]) -> Result<PullRun> {
        let mut args = vec!["--remote", REMOTE];
        args.extend_from_slice(extra);
        pull(&trust_root(self.base()), &dest.path, from, &args, &[BRANCH])
    }

    /// A successful pull of the branch into `dest` from every source in `from`.
    fn pull_all(&self, dest: &OstreeRepo, from: &[&OsStr]) -> Result<PullRun> {
        self.pull(dest, from, &[])?.require_success()
    }

    /// A successful pull into `dest` from the publisher's repository itself.
    fn pull_published(&self, dest: &OstreeRepo) -> Result<PullRun> {
        self.pull_all(dest, &[self.repo.path.as_os_str()])
    }

    /// A successful pull of the branch into `dest` from `peers` at once.
    fn pull_from_peers(&self, dest: &OstreeRepo, peers: &[&Peer]) -> Result<PullRun> {
        let urls: Vec<String> = peers.iter().map(|peer| format!("{}/", peer.url)).collect();
        let from: Vec<&OsStr> = urls.iter().map(OsStr::new).collect();
        self.pull_all(dest, &from)
    }

    /// `dest` at v2, fsck-clean, its checkout the same as the publisher's in content and
    /// modes.
    fn check_result(&self, dest: &OstreeRepo, update: &Update, name: &str) -> Result<()> {
        self.check_result_with(dest, update, name, &CompareOptions::content_and_modes())
    }

    fn check_result_with(
        &self,
        dest: &OstreeRepo,
        update: &Update,
        name: &str,
        compare: &CompareOptions,
    ) -> Result<()> {
        dest.fsck().with_context(|| format!("fsck of {name}"))?;
        ensure!(dest.read_ref(&remote_ref(BRANCH))? == Some(update.v2.clone()));
        let checkout = self.base().join(format!("co-{name}"));
        dest.checkout(&update.v2, &checkout, CheckoutMode::Plain)?;
        assert_trees_equal(&update.reference, &checkout, compare)
            .with_context(|| format!("checkout from {name}"))?;
        fs::remove_dir_all(&checkout)?;
        Ok(())
    }

    /// `ostree static-delta show` of the delta from v1 to `update`.
    fn show_delta(&self, update: &Update) -> Result<String> {
        Ok(self
            .repo
            .ostree()
            .args([
                "static-delta",
                "show",
                &format!("{}-{}", self.v1, update.v2),
            ])
            .stdout()?)
    }

    fn spec<'a>(tree: &'a Tree, options: TreeOptions, version: &str) -> CommitSpec<'a> {
        let spec = CommitSpec::new(BRANCH, &tree.root).version(version);
        if options == TreeOptions::plain() {
            spec.canonical()
        } else {
            spec
        }
    }

    /// Commits v2 and runs `ostree static-delta generate` with `delta_args`.
    fn update(&self, delta_args: &[&str]) -> Result<Update> {
        let before = object_files(&self.repo.path)?;
        self.tree.modify_for_second_commit(0)?;
        let mut library = pseudo_random(96 * 1024, 1);
        // Small changes all over it: no rolling-checksum chunk survives, bsdiff does well.
        for byte in library.iter_mut().step_by(1500) {
            *byte ^= 0x5a;
        }
        self.tree.write_file(LIBRARY, library)?;
        // In the full tree the patched file has an owner and an xattr of its own too.
        if self.tree.options.foreign_owner {
            self.tree.chown(
                LIBRARY,
                ferry_tests::tree::standard::OWNER_UID,
                ferry_tests::tree::standard::OWNER_GID,
            )?;
        }
        if self.tree.options.xattrs {
            self.tree.set_xattr(LIBRARY, "user.delta", b"patched")?;
        }
        self.tree
            .write_file(BIG_NEW_FILE, pseudo_random(1_100_000, 2))?;
        let v2 = self
            .repo
            .commit(&Self::spec(&self.tree, self.tree.options, "2.0").sign(&self.key))?;
        self.repo
            .ostree()
            .args(["static-delta", "generate", "--min-fallback-size=1"])
            .arg(format!("--to={v2}"))
            .args(delta_args)
            .run()?;
        self.repo.update_summary(Some(&self.key))?;
        let new_objects: BTreeSet<PathBuf> = object_files(&self.repo.path)?
            .difference(&before)
            .cloned()
            .collect();
        let fallback = self.content_object(&v2, BIG_NEW_FILE)?;
        ensure!(new_objects.contains(&fallback));
        let reference = self.base().join("reference");
        self.repo.checkout(&v2, &reference, CheckoutMode::Plain)?;
        Ok(Update {
            v2,
            new_objects,
            fallback,
            reference,
        })
    }

    /// The path below the repository of the content object of `path` in `commit`.
    fn content_object(&self, commit: &str, path: &str) -> Result<PathBuf> {
        let checksum = self.repo.content_checksum(commit, path)?;
        Ok(PathBuf::from(format!(
            "objects/{}/{}.filez",
            &checksum[..2],
            &checksum[2..]
        )))
    }

    /// Deletes the content objects of v2 that the delta carries (all but the fallback).
    fn delete_delta_content(&self, update: &Update) -> Result<usize> {
        self.delete_delta_content_but(update, &[])
    }

    /// Deletes the new content objects of v2 but the fallback and `keep` (other fallbacks).
    fn delete_delta_content_but(&self, update: &Update, keep: &[PathBuf]) -> Result<usize> {
        let mut deleted = 0;
        for object in &update.new_objects {
            if object.extension() == Some(OsStr::new("filez"))
                && *object != update.fallback
                && !keep.contains(object)
            {
                fs::remove_file(self.repo.path.join(object))?;
                deleted += 1;
            }
        }
        ensure!(deleted >= 3, "only {deleted} content objects are new in v2");
        Ok(deleted)
    }

    /// The delta's directory below `deltas/`.
    fn delta_dir(&self) -> Result<PathBuf> {
        let deltas = self.repo.path.join("deltas");
        for prefix in fs::read_dir(&deltas)? {
            if let Some(entry) = fs::read_dir(prefix?.path())?.next() {
                return Ok(entry?.path());
            }
        }
        anyhow::bail!("no delta under {}", deltas.display())
    }

    /// The delta's directory, relative to the repository (and to its URL on a peer).
    fn delta_relative(&self) -> Result<PathBuf> {
        Ok(self
            .delta_dir()?
            .strip_prefix(&self.repo.path)?
            .to_path_buf())
    }
}

/// A copy of the repository at `from`, at `to` (`cp -a`: hard links and times kept).
fn copy_repo(from: &Path, to: &Path) -> Result<()> {
    ferry_tests::cmd::Tool::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .run()?;
    Ok(())
}

/// Flips one byte in the middle of the file at `path`.
fn corrupt(path: &Path) -> Result<()> {
    let mut bytes = fs::read(path)?;
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    fs::write(path, bytes)?;
    Ok(())
}

/// The fixture, a destination of `mode` at 1.0 (pulled through Ferry), and the update to 2.0
/// with its delta from 1.0.
fn updated_from_v1(mode: RepoMode) -> Result<(Fixture, OstreeRepo, Update)> {
    let fixture = Fixture::new()?;
    let dest = fixture.client_at_v1("dest", mode)?;
    let update = fixture.update(&[&format!("--from={}", fixture.v1)])?;
    Ok((fixture, dest, update))
}

/// The pull left no static delta aside.
fn expect_no_delta_warnings(run: &PullRun) -> Result<()> {
    let warnings = delta_warnings(run);
    ensure!(warnings.is_empty(), "{warnings:?}");
    Ok(())
}

fn delta_warnings(run: &PullRun) -> Vec<String> {
    run.events
        .iter()
        .filter_map(|event| match event {
            Event::Message {
                level: MessageLevel::Warning,
                text,
            } if text.contains("static delta") => Some(text.clone()),
            _ => None,
        })
        .collect()
}

/// The last progress event says everything expected was done.
fn check_progress(run: &PullRun) -> Result<()> {
    let (done, total, bytes_done, bytes_total) = run.last_progress().context("no progress")?;
    ensure!(
        done == total && bytes_done == bytes_total,
        "progress ends at {done}/{total} objects, {bytes_done}/{bytes_total} bytes"
    );
    Ok(())
}

#[test]
fn update_delta_with_bsdiff_applies_into_every_mode() -> Result<()> {
    let fixture = Fixture::new()?;
    let modes = [
        RepoMode::Bare,
        RepoMode::BareUser,
        RepoMode::BareUserOnly,
        RepoMode::Archive,
    ];
    let dests = fixture.clients_at_v1(&modes)?;
    let update = fixture.update(&[&format!("--from={}", fixture.v1)])?;
    let shown = fixture.show_delta(&update)?;
    // The changed library is a bsdiff patch, the big new file a fallback.
    ensure!(
        shown.contains("bspatch=") && !shown.contains("bspatch=0\n"),
        "no bspatch in the delta: {shown}"
    );
    ensure!(
        shown
            .lines()
            .any(|line| line.starts_with("Total Fallback Size: ")
                && !line.starts_with("Total Fallback Size: 0 ")),
        "no fallback in the delta: {shown}"
    );
    fixture.delete_delta_content(&update)?;

    // Without deltas the objects the delta carries are nowhere: the pull fails.
    let refused = fixture.pull(
        &dests[0],
        &[fixture.repo.path.as_os_str()],
        &["--no-deltas"],
    )?;
    ensure!(!refused.success(), "an object pull found deleted objects");

    for (mode, dest) in modes.iter().zip(&dests) {
        let run = fixture.pull_published(dest)?;
        check_progress(&run)?;
        expect_no_delta_warnings(&run)?;
        fixture.check_result(dest, &update, mode.as_str())?;
    }
    Ok(())
}

#[test]
fn from_scratch_inline_delta_installs_a_fresh_repository() -> Result<()> {
    let fixture = Fixture::new()?;
    let update = fixture.update(&["--empty", "--inline"])?;
    ensure!(
        !fixture.delta_dir()?.join("0").exists(),
        "the part is not inline"
    );
    // Every content object of v2 comes from the delta; v1's are not needed either.
    for object in object_files(&fixture.repo.path)? {
        if object.extension() == Some(OsStr::new("filez")) && object != update.fallback {
            fs::remove_file(fixture.repo.path.join(object))?;
        }
    }
    let dest = fixture.client("dest", RepoMode::BareUser)?;
    let run = fixture.pull_published(&dest)?;
    expect_no_delta_warnings(&run)?;
    fixture.check_result(&dest, &update, "scratch")
}

#[test]
fn corrupt_part_is_dropped_and_objects_are_fetched_instead() -> Result<()> {
    let (fixture, dest, update) = updated_from_v1(RepoMode::Bare)?;
    corrupt(&fixture.delta_dir()?.join("0"))?;

    let run = fixture.pull_published(&dest)?;
    check_progress(&run)?;
    let warnings = delta_warnings(&run);
    ensure!(
        warnings.iter().any(|w| w.contains("hashes to")),
        "no warning about the corrupt part: {warnings:?}"
    );
    fixture.check_result(&dest, &update, "fallback")
}

/// A delta of several parts: each is fetched and inflated while the one before it is
/// applied. All of them apply; with the last one corrupt, the parts before it still apply
/// and the pull completes from objects.
#[test]
fn every_part_of_a_delta_of_several_parts_applies() -> Result<()> {
    let fixture = Fixture::new()?;
    let good = fixture.client_at_v1("good", RepoMode::BareUserOnly)?;
    let bad = fixture.client_at_v1("bad", RepoMode::Bare)?;
    let (update, parts) = update_in_parts(&fixture, 4)?;
    ensure!(parts >= 3, "only {parts} parts");

    let last = fixture.delta_dir()?.join((parts - 1).to_string());
    let intact = fs::read(&last)?;
    let mut corrupt = intact.clone();
    corrupt[intact.len() / 2] ^= 0xff;
    fs::write(&last, &corrupt)?;
    let run = fixture.pull_published(&bad)?;
    check_progress(&run)?;
    let warnings = delta_warnings(&run);
    ensure!(
        warnings.len() == 1 && warnings[0].contains("hashes to"),
        "{warnings:?}"
    );
    fixture.check_result(&bad, &update, "corrupt-last-part")?;

    fs::write(&last, &intact)?;
    fixture.delete_delta_content(&update)?;
    let run = fixture.pull_published(&good)?;
    check_progress(&run)?;
    expect_no_delta_warnings(&run)?;
    fixture.check_result(&good, &update, "parts")
}

#[test]
fn delta_over_http_fetches_no_objects_beyond_the_fallback() -> Result<()> {
    let (fixture, dest, update) = updated_from_v1(RepoMode::BareUser)?;
    let server = Peer::serve(&fixture.repo.path)?;
    let run = fixture.pull_from_peers(&dest, &[&server])?;
    expect_no_delta_warnings(&run)?;
    let requests = server.requests();
    ensure!(
        requests.iter().any(|r| r.ends_with("/superblock")),
        "superblock never requested: {requests:?}"
    );
    let fallback = format!("/{}", update.fallback.display());
    let content: Vec<&String> = requests
        .iter()
        .filter(|r| r.ends_with(".filez") && **r != fallback)
        .collect();
    ensure!(
        content.is_empty(),
        "content objects fetched besides the fallback: {content:?}"
    );
    ensure!(
        requests.contains(&fallback),
        "the fallback was not fetched: {requests:?}"
    );
    fixture.check_result(&dest, &update, "http")
}

#[test]
fn superblock_with_another_commit_is_refused() -> Result<()> {
    let (fixture, dest, update) = updated_from_v1(RepoMode::Bare)?;
    // The embedded commit says version 2.1: it no longer hashes to the delta's target.
    let superblock = fixture.delta_dir()?.join("superblock");
    let mut bytes = fs::read(&superblock)?;
    let at = bytes
        .windows(4)
        .position(|w| w == b"2.0\0")
        .context("no version in the superblock's commit")?;
    bytes[at + 2] = b'1';
    fs::write(&superblock, bytes)?;
    // Listed as it now is: only the commit inside is wrong.
    fixture.repo.update_summary(Some(&fixture.key))?;

    let run = fixture.pull_published(&dest)?;
    let warnings = delta_warnings(&run);
    ensure!(
        warnings
            .iter()
            .any(|w| w.contains("not the delta's target")),
        "no warning about the superblock's commit: {warnings:?}"
    );
    fixture.check_result(&dest, &update, "other-commit")
}

/// A drive whose copy of the delta has a corrupt part, and a peer with a good copy: the
/// peer's part is applied; the drive, if it was asked for the part (both list the delta
/// alike, so whichever fetcher is first takes the delta's one part), is dropped with a
/// warning. Neither holds the content objects the delta carries, so only the peer's part
/// can complete the pull.
#[test]
fn corrupt_delta_on_one_source_good_on_another() -> Result<()> {
    let (fixture, dest, update) = updated_from_v1(RepoMode::BareUser)?;
    fixture.delete_delta_content(&update)?;
    let drive = fixture.base().join("drive-copy");
    copy_repo(&fixture.repo.path, &drive)?;
    corrupt(&drive.join(fixture.delta_relative()?).join("0"))?;
    let server = Peer::serve(&fixture.repo.path)?;
    let url = format!("{}/", server.url);

    let run = fixture.pull_all(&dest, &[drive.as_os_str(), OsStr::new(&url)])?;
    check_progress(&run)?;
    let warnings = delta_warnings(&run);
    ensure!(
        warnings
            .iter()
            .all(|w| w.contains("hashes to") && w.contains("drive-copy")),
        "a warning not about the drive's part: {warnings:?}"
    );
    ensure!(
        server.requests().iter().any(|r| r.ends_with("/0")),
        "the peer's part was not fetched: {:?}",
        server.requests()
    );
    fixture.check_result(&dest, &update, "two-sources")
}

/// Parts of a delta whose paths are in `requests`.
fn part_requests(requests: &[String]) -> Vec<&String> {
    requests
        .iter()
        .filter(|r| {
            r.contains("/deltas/")
                && r.rsplit('/')
                    .next()
                    .is_some_and(|last| last.parse::<u32>().is_ok())
        })
        .collect()
}

/// The URL paths of the delta's parts, as a peer serving the fixture's repository has them.
fn part_paths(fixture: &Fixture, parts: usize) -> Result<Vec<String>> {
    let relative = fixture.delta_relative()?.display().to_string();
    Ok((0..parts)
        .map(|part| format!("/{relative}/{part}"))
        .collect())
}

/// A peer serving `root` as `behaviour` says, whose answer to the first part waits until
/// `other` has been asked for a part: both peers are asked for one, whoever starts first.
fn peer_answering_after(
    other: &Peer,
    root: &Path,
    parts: &[String],
    behaviour: Behaviour,
) -> Result<Peer> {
    let other_log = other.log_watch();
    let part_set: HashSet<String> = parts.iter().cloned().collect();
    let first = parts.first().context("a delta without parts")?.clone();
    Peer::serve_with(
        root,
        behaviour.on(When::Path(first), move || {
            // On timeout the part is served anyway, and the caller's count fails.
            let _ = other_log.wait_for(Duration::from_secs(60), |log| {
                log.iter().any(|request| part_set.contains(&request.path))
            });
        }),
    )
}

/// The fixture at 2.0 with a delta from 1.0 of at least four parts (new files below the
/// 1 MB fallback size, more than a 1 MB part holds), the content it carries deleted from
/// the server, and a destination of `mode` at 1.0.
fn updated_in_parts(mode: RepoMode) -> Result<(Fixture, OstreeRepo, Update, usize)> {
    let scene = updated_in_parts_with_fallbacks(mode, 0)?;
    Ok((scene.fixture, scene.dest, scene.update, scene.parts))
}

/// [`updated_in_parts`], with more files in 2.0 above the fallback size.
struct InParts {
    fixture: Fixture,
    dest: OstreeRepo,
    update: Update,
    parts: usize,
    /// The URL paths of the fallback objects, which the server keeps: what the pull fetches
    /// as objects after the delta.
    fallbacks: Vec<String>,
}

impl InParts {
    /// [`Fixture::check_result`] of the destination.
    fn check_result(&self, name: &str) -> Result<()> {
        self.fixture.check_result(&self.dest, &self.update, name)
    }
}

/// [`updated_in_parts`] with `extra` more new files above the 1 MB fallback size.
fn updated_in_parts_with_fallbacks(mode: RepoMode, extra: u64) -> Result<InParts> {
    let fixture = Fixture::new()?;
    let dest = fixture.client_at_v1("dest", mode)?;
    let names: Vec<String> = (0..extra)
        .map(|index| format!("usr/share/big-extra-{index}.bin"))
        .collect();
    for (seed, name) in (100..).zip(&names) {
        fixture
            .tree
            .write_file(name, pseudo_random(1_100_000, seed))?;
    }
    let (update, parts) = update_in_parts(&fixture, 6)?;
    ensure!(parts >= 4, "only {parts} parts");
    let mut fallbacks = names
        .iter()
        .map(|name| fixture.content_object(&update.v2, name))
        .collect::<Result<Vec<_>>>()?;
    fixture.delete_delta_content_but(&update, &fallbacks)?;
    fallbacks.push(update.fallback.clone());
    let fallbacks = fallbacks
        .iter()
        .map(|path| format!("/{}", path.display()))
        .collect();
    Ok(InParts {
        fixture,
        dest,
        update,
        parts,
        fallbacks,
    })
}

/// A copy of the fixture's repository at `bad-copy` in its directory, with every part of its
/// delta corrupted.
fn copy_with_corrupt_parts(fixture: &Fixture, parts: usize) -> Result<PathBuf> {
    let copy = fixture.base().join("bad-copy");
    copy_repo(&fixture.repo.path, &copy)?;
    let delta_dir = copy.join(fixture.delta_relative()?);
    for part in 0..parts {
        corrupt(&delta_dir.join(part.to_string()))?;
    }
    Ok(copy)
}

/// The reason of the event that dropped the source whose name contains `name`.
fn dropped_reason(run: &PullRun, name: &str) -> Option<String> {
    run.events.iter().find_map(|event| match event {
        Event::SourceState {
            source,
            state: SourceState::Dropped,
            reason,
            ..
        } if source.contains(name) => Some(reason.clone().unwrap_or_default()),
        _ => None,
    })
}

/// The state and reason the pull's result gives the source whose name contains `name`.
fn source_in_result(run: &PullRun, name: &str) -> Result<(SourceState, Option<String>)> {
    let results = run.results();
    let source = results
        .iter()
        .flat_map(|result| &result.sources)
        .find(|source| source.source.contains(name))
        .with_context(|| format!("no source {name} in the results: {results:?}"))?;
    Ok((source.state, source.reason.clone()))
}

/// Publishes 2.0 with `files` new files below the 1 MB fallback size, more than a 1 MB part
/// holds, and a delta from 1.0 in 1 MB parts; the update and its number of parts.
fn update_in_parts(fixture: &Fixture, files: u64) -> Result<(Update, usize)> {
    for index in 0..files {
        fixture.tree.write_file(
            format!("usr/share/extra-{index}.bin"),
            pseudo_random(700_000, 10 + index),
        )?;
    }
    let update = fixture.update(&[&format!("--from={}", fixture.v1), "--max-chunk-size=1"])?;
    let mut parts = 0;
    while fixture.delta_dir()?.join(parts.to_string()).exists() {
        parts += 1;
    }
    Ok((update, parts))
}

/// Two peers list the same delta: its parts are fetched from both, and each part once.
#[test]
fn parts_of_a_delta_two_peers_list_are_fetched_from_both() -> Result<()> {
    let (fixture, dest, update, parts) = updated_in_parts(RepoMode::BareUser)?;
    let first = Peer::serve(&fixture.repo.path)?;
    let second = Peer::serve(&fixture.repo.path)?;
    let run = fixture.pull_from_peers(&dest, &[&first, &second])?;
    check_progress(&run)?;
    expect_no_delta_warnings(&run)?;
    let (from_first, from_second) = (first.requests(), second.requests());
    let (from_first, from_second) = (part_requests(&from_first), part_requests(&from_second));
    ensure!(
        !from_first.is_empty() && !from_second.is_empty(),
        "parts not fetched from both peers: {from_first:?} and {from_second:?}"
    );
    let mut all: Vec<&String> = from_first.iter().chain(&from_second).copied().collect();
    all.sort();
    all.dedup();
    ensure!(
        all.len() == parts && from_first.len() + from_second.len() == parts,
        "{parts} parts, fetched: {from_first:?} and {from_second:?}"
    );
    fixture.check_result(&dest, &update, "two-peers")
}

/// Of two peers listing the same delta, one serves corrupt copies of its parts: it is named
/// and dropped, the other serves every part, and the pull completes (the server holds none
/// of the delta's content objects, so only the delta can complete it).
#[test]
fn one_of_two_peers_serving_corrupt_parts_is_dropped() -> Result<()> {
    let (fixture, dest, update, parts) = updated_in_parts(RepoMode::Bare)?;
    let copy = copy_with_corrupt_parts(&fixture, parts)?;
    let bad = Peer::serve(&copy)?;
    let good = peer_answering_after(
        &bad,
        &fixture.repo.path,
        &part_paths(&fixture, parts)?,
        Behaviour::default(),
    )?;
    let run = fixture.pull_from_peers(&dest, &[&bad, &good])?;
    check_progress(&run)?;
    // Reported as the peer's drop, not as a delta left aside.
    let warnings = delta_warnings(&run);
    ensure!(warnings.is_empty(), "{warnings:?}");
    let reason = dropped_reason(&run, &bad.url).context("the bad peer was not dropped")?;
    ensure!(reason.contains("hashes to"), "{reason}");
    let from_bad = bad.requests();
    ensure!(
        part_requests(&from_bad).len() == 1,
        "the bad peer was asked for more than one part: {from_bad:?}"
    );
    let from_good = good.requests();
    ensure!(
        part_requests(&from_good).len() == parts,
        "the good peer did not serve every part: {from_good:?}"
    );
    fixture.check_result(&dest, &update, "one-bad-peer")
}

/// A peer caught serving a corrupt part is dropped for the rest of the pull, as one serving a
/// bad object is: the objects left after the delta (files above the fallback size) all come
/// from the other peer, and the result names the dropped peer and why.
#[test]
fn peer_serving_a_corrupt_part_is_not_asked_for_the_objects_after_the_delta() -> Result<()> {
    let scene = updated_in_parts_with_fallbacks(RepoMode::BareUser, 8)?;
    let copy = copy_with_corrupt_parts(&scene.fixture, scene.parts)?;
    let bad = Peer::serve(&copy)?;
    let good = peer_answering_after(
        &bad,
        &scene.fixture.repo.path,
        &part_paths(&scene.fixture, scene.parts)?,
        Behaviour::default(),
    )?;
    let run = scene.fixture.pull_from_peers(&scene.dest, &[&bad, &good])?;
    check_progress(&run)?;
    let from_bad = bad.requests();
    ensure!(
        part_requests(&from_bad).len() == 1,
        "the bad peer was not asked for exactly one part: {from_bad:?}"
    );
    let objects: Vec<&String> = from_bad
        .iter()
        .filter(|r| {
            [".filez", ".dirtree", ".dirmeta"]
                .iter()
                .any(|e| r.ends_with(e))
        })
        .collect();
    ensure!(
        objects.is_empty(),
        "the dropped peer was asked for objects after the delta: {objects:?}"
    );
    let served = good.served_objects();
    for fallback in &scene.fallbacks {
        ensure!(
            served.contains(fallback),
            "{fallback} did not come from the good peer: {served:?}"
        );
    }
    let (state, reason) = source_in_result(&run, &bad.url)?;
    ensure!(
        state == SourceState::Dropped
            && reason.as_deref().is_some_and(
                |reason| reason.contains("static delta") && reason.contains("hashes to")
            ),
        "the result does not give the bad peer as dropped for its part: {state:?} {reason:?}"
    );
    ensure!(
        dropped_reason(&run, &bad.url).is_some(),
        "no event dropped the bad peer"
    );
    ensure!(
        source_in_result(&run, &good.url)?.0 == SourceState::Active,
        "the good peer was not kept"
    );
    scene.check_result("dropped-for-the-pull")
}

/// A peer that lacks a part (a 404) is left out of that delta only: it stays in the pull
/// and serves objects after the delta.
#[test]
fn peer_lacking_the_parts_still_serves_the_objects_after_the_delta() -> Result<()> {
    let scene = updated_in_parts_with_fallbacks(RepoMode::BareUser, 8)?;
    let parts = part_paths(&scene.fixture, scene.parts)?;
    let lacking = Peer::serve_with(
        &scene.fixture.repo.path,
        Behaviour::default().not_found(parts.iter().cloned()),
    )?;
    // The good peer lacks half of the objects after the delta: the other must serve them.
    let (good_lacks, _) = scene.fallbacks.split_at(scene.fallbacks.len() / 2);
    let good = peer_answering_after(
        &lacking,
        &scene.fixture.repo.path,
        &parts,
        Behaviour::default().not_found(good_lacks.iter().cloned()),
    )?;
    let run = scene
        .fixture
        .pull_from_peers(&scene.dest, &[&lacking, &good])?;
    check_progress(&run)?;
    ensure!(
        part_requests(&lacking.requests()).len() == 1,
        "the peer lacking the parts was not asked for exactly one: {:?}",
        lacking.requests()
    );
    let (state, reason) = source_in_result(&run, &lacking.url)?;
    ensure!(
        state == SourceState::Active,
        "the peer lacking the parts was not kept: {state:?} {reason:?}"
    );
    let served = lacking.served_objects();
    ensure!(
        scene
            .fallbacks
            .iter()
            .any(|fallback| served.contains(fallback)),
        "the peer lacking the parts served none of the objects after the delta: {served:?}"
    );
    scene.check_result("lacking-parts")
}

/// A drive folder whose repository has no summary (its delta is found at its path, listed
/// nowhere), a peer, and a drive with a summary (`ostree create-usb` writes one) hold the
/// same delta: the delta's parts are fetched from all three. The drive with a summary ranks
/// first, so the delta is found there, and the drive without one is pooled only if its
/// superblock is compared.
#[test]
fn drive_without_summary_shares_the_parts_of_a_delta_with_a_peer() -> Result<()> {
    let scene = DrivesAndPeer::pull(false)?;
    expect_no_delta_warnings(&scene.run)?;
    scene.expect_applied_from(&[&scene.listed, &scene.unlisted, &scene.url])?;
    let from_peer = scene.peer.requests();
    ensure!(
        part_requests(&from_peer).len() < scene.delta.parts,
        "every one of the {} parts came from the peer: {from_peer:?}",
        scene.delta.parts
    );
    scene.delta.check_result("drives-and-peer")
}

/// The same drives and peer, with the superblock on the drive without a summary altered: it
/// does not hash to what the others list, so that drive is not given the delta's parts, and
/// the pull completes from the others.
#[test]
fn drive_without_summary_whose_superblock_differs_is_left_out_of_the_delta() -> Result<()> {
    let scene = DrivesAndPeer::pull(true)?;
    scene.expect_applied_from(&[&scene.listed, &scene.url])?;
    ensure!(
        !scene.applying()[0].contains(&scene.unlisted),
        "the drive with the altered superblock shared the delta: {:?}",
        scene.applying()
    );
    scene.delta.check_result("altered-superblock")
}

/// A drive with a summary, a drive folder without one (its delta is found at its path,
/// listed nowhere) and a peer, all holding the same delta, pulled from at once.
struct DrivesAndPeer {
    run: PullRun,
    peer: Peer,
    listed: String,
    unlisted: String,
    url: String,
    delta: InParts,
}

impl DrivesAndPeer {
    /// With `alter_superblock`, one byte of the summary-less drive's superblock is changed.
    fn pull(alter_superblock: bool) -> Result<Self> {
        let delta = updated_in_parts_with_fallbacks(RepoMode::BareUser, 0)?;
        let fixture = &delta.fixture;
        let listed = fixture.base().join("listed");
        let unlisted = fixture.base().join("unlisted");
        for drive in [&listed, &unlisted] {
            copy_repo(&fixture.repo.path, drive)?;
        }
        for file in ["summary", "summary.sig"] {
            fs::remove_file(unlisted.join(file))?;
        }
        if unlisted.join("delta-indexes").exists() {
            fs::remove_dir_all(unlisted.join("delta-indexes"))?;
        }
        if alter_superblock {
            corrupt(&unlisted.join(fixture.delta_relative()?).join("superblock"))?;
        }
        let peer = Peer::serve(&fixture.repo.path)?;
        let url = format!("{}/", peer.url);
        let run = fixture.pull_all(
            &delta.dest,
            &[listed.as_os_str(), unlisted.as_os_str(), OsStr::new(&url)],
        )?;
        check_progress(&run)?;
        Ok(Self {
            run,
            peer,
            listed: listed.to_string_lossy().into_owned(),
            unlisted: unlisted.to_string_lossy().into_owned(),
            url,
            delta,
        })
    }

    /// The "applying the static delta" messages, which name the sources the parts come from.
    fn applying(&self) -> Vec<&String> {
        self.run
            .events
            .iter()
            .filter_map(|event| match event {
                Event::Message { text, .. } if text.starts_with("applying the static delta") => {
                    Some(text)
                }
                _ => None,
            })
            .collect()
    }

    fn expect_applied_from(&self, sources: &[&String]) -> Result<()> {
        let applying = self.applying();
        ensure!(
            applying.len() == 1
                && sources
                    .iter()
                    .all(|source| applying[0].contains(&format!("{source},"))
                        || applying[0].contains(&format!("{source}:"))),
            "the delta was not fetched from all of {sources:?}: {applying:?}"
        );
        Ok(())
    }
}

/// `ferryctl delta generate` writes a delta that `ostree static-delta apply-offline` applies
/// (fsck-clean, same checkout), and that a Ferry pull applies from the drive.
#[test]
fn delta_written_by_ferry_is_applied_by_ostree_and_by_ferry() -> Result<()> {
    let (fixture, dest, update) = updated_from_v1(RepoMode::BareUser)?;
    // Only Ferry's delta from here on.
    fs::remove_dir_all(fixture.repo.path.join("deltas"))?;
    pull_support::ferryctl(&trust_root(fixture.base()))?
        .args(["delta", "generate", "--repo"])
        .arg(&fixture.repo.path)
        .arg(format!("--from={}", fixture.v1))
        .arg(format!("--to={}", update.v2))
        .run()?;
    let shown = fixture.show_delta(&update)?;
    // The data that compresses (metadata, the library's patch) and the data that does not
    // (the random new file) are in separate parts.
    ensure!(shown.contains("Number of parts: 2"), "{shown}");
    // The slightly changed library is a bsdiff patch of its old version.
    ensure!(
        shown.contains("bspatch=1"),
        "the changed library was not patched: {shown}"
    );
    // `PartMetaN: nobjects=… size=… usize=…`: the part with the patch is small, the one with
    // the random file about as large as it.
    let sizes: Vec<(u64, u64)> = shown
        .lines()
        .filter(|line| line.starts_with("PartMeta"))
        .map(|line| {
            let field = |name: &str| -> Result<u64> {
                let value = line
                    .split_whitespace()
                    .find_map(|word| word.strip_prefix(name))
                    .with_context(|| format!("no {name} in {line}"))?;
                Ok(value.parse()?)
            };
            Ok((field("size=")?, field("usize=")?))
        })
        .collect::<Result<_>>()?;
    ensure!(sizes.len() == 2, "{shown}");
    let (small, large) = (sizes[0].0.min(sizes[1].0), sizes[0].0.max(sizes[1].0));
    ensure!(
        small < 16 * 1024,
        "the part with the patch is {small} bytes: {shown}"
    );
    ensure!(
        (1_100_000..1_200_000).contains(&large),
        "the part with the random file is {large} bytes: {shown}"
    );

    // The signed summary still lists ostree's superblock under this name: Ferry's does not
    // hash to it, so it is not used and the objects are fetched instead.
    let other_path = fixture.base().join("dest-other");
    copy_repo(&dest.path, &other_path)?;
    let other = OstreeRepo::open(&other_path);
    let run = fixture.pull_published(&other)?;
    let warnings = delta_warnings(&run);
    ensure!(
        warnings.iter().any(|w| w.contains("listing says")),
        "the unlisted superblock was used: {warnings:?}"
    );
    fixture.check_result(&other, &update, "unlisted")?;
    fixture.repo.update_summary(Some(&fixture.key))?;

    let offline = OstreeRepo::init(&fixture.base().join("offline"), RepoMode::BareUser, None)?;
    offline.pull_local(&fixture.repo.path, &[&fixture.v1], &[])?;
    offline
        .ostree()
        .args(["static-delta", "apply-offline"])
        .arg(fixture.delta_dir()?)
        .run()?;
    offline.fsck()?;
    let checkout = fixture.base().join("co-offline");
    offline.checkout(&update.v2, &checkout, CheckoutMode::Plain)?;
    assert_trees_equal(
        &update.reference,
        &checkout,
        &CompareOptions::content_and_modes(),
    )?;

    // Every new content object is in the delta: a Ferry pull needs nothing else.
    for object in &update.new_objects {
        if object.extension() == Some(OsStr::new("filez")) {
            fs::remove_file(fixture.repo.path.join(object))?;
        }
    }
    let run = fixture.pull_published(&dest)?;
    expect_no_delta_warnings(&run)?;
    fixture.check_result(&dest, &update, "ferry-written")
}

/// A from-scratch delta whose objects the destination mostly has (it is at 1.0) is not
/// worth its part: the part is not fetched and the few new objects are. A fresh
/// destination fetches the part.
#[test]
fn delta_is_used_only_when_its_parts_cost_less_than_the_objects() -> Result<()> {
    let fixture = Fixture::new()?;
    let dest = fixture.client_at_v1("dest", RepoMode::BareUser)?;
    let update = fixture.update(&["--empty"])?;
    ensure!(
        fixture.delta_dir()?.join("0").exists(),
        "the part is inline"
    );
    let server = Peer::serve(&fixture.repo.path)?;
    let run = fixture.pull_from_peers(&dest, &[&server])?;
    check_progress(&run)?;
    let requests = server.requests();
    ensure!(
        requests.iter().any(|r| r.ends_with("/superblock")),
        "the listed delta was not considered: {requests:?}"
    );
    ensure!(
        !requests.iter().any(|r| r.ends_with("/0")),
        "the part was fetched for objects the destination has: {requests:?}"
    );
    fixture.check_result(&dest, &update, "not-worth-it")?;

    let fresh = fixture.client("fresh", RepoMode::BareUser)?;
    let before = server.requests().len();
    fixture.pull_from_peers(&fresh, &[&server])?;
    let requests = server.requests();
    ensure!(
        requests[before..].iter().any(|r| r.ends_with("/0")),
        "a fresh destination did not use the delta: {:?}",
        &requests[before..]
    );
    fixture.check_result(&fresh, &update, "fresh")
}

/// While a part is fetched (held back 1.5 s by the peer), progress is reported with the
/// part's bytes expected and none read yet: the app's progress covers the delta too.
#[test]
fn progress_is_reported_while_a_part_is_fetched() -> Result<()> {
    let (fixture, dest, update) = updated_from_v1(RepoMode::BareUser)?;
    let part = fixture.delta_dir()?.join("0");
    let part_size = fs::metadata(&part)?.len();
    let relative = fixture.delta_relative()?.join("0");
    let server = Peer::serve_with(
        &fixture.repo.path,
        pull_support::peer::Behaviour::default().on(
            pull_support::peer::When::Path(format!("/{}", relative.display())),
            || std::thread::sleep(std::time::Duration::from_millis(1500)),
        ),
    )?;
    let run = fixture.pull_from_peers(&dest, &[&server])?;
    ensure!(
        run.events.iter().any(|event| matches!(
            event,
            Event::Progress { bytes_done: 0, bytes_total, .. } if *bytes_total >= part_size
        )),
        "no progress while the part was fetched: {:?}",
        run.events
    );
    check_progress(&run)?;
    fixture.check_result(&dest, &update, "progress")
}

/// A FIFO planted where a drive's superblock belongs does not hold up the pull.
#[test]
fn fifo_superblock_on_a_drive_does_not_hang_the_pull() -> Result<()> {
    let (fixture, dest, update) = updated_from_v1(RepoMode::Bare)?;
    let superblock = fixture.delta_dir()?.join("superblock");
    fs::remove_file(&superblock)?;
    ferry_tests::cmd::Tool::new("mkfifo")
        .arg(&superblock)
        .run()?;
    let run = pull_support::pull_within(
        std::time::Duration::from_secs(60),
        &trust_root(fixture.base()),
        &dest.path,
        &[fixture.repo.path.as_os_str()],
        &["--remote", REMOTE],
        &[BRANCH],
    )?
    .context("the pull hung on the FIFO")?
    .require_success()?;
    check_progress(&run)?;
    fixture.check_result(&dest, &update, "fifo")
}

/// A peer that trickles its superblock is abandoned after the grace time (10 s plus 1 MiB at
/// 256 KiB/s) and the objects are fetched instead.
#[test]
fn trickled_superblock_is_abandoned_for_objects() -> Result<()> {
    let (fixture, dest, update) = updated_from_v1(RepoMode::BareUser)?;
    let relative = fixture.delta_relative()?.join("superblock");
    let server = Peer::serve_with(
        &fixture.repo.path,
        pull_support::peer::Behaviour::default().trickle_only(
            std::time::Duration::from_millis(200),
            [format!("/{}", relative.display())],
        ),
    )?;
    let url = format!("{}/", server.url);
    let started = std::time::Instant::now();
    let run = pull_support::pull_within(
        std::time::Duration::from_secs(60),
        &trust_root(fixture.base()),
        &dest.path,
        &[OsStr::new(&url)],
        &["--remote", REMOTE],
        &[BRANCH],
    )?
    .context("the pull waited on the trickled superblock")?
    .require_success()?;
    ensure!(
        started.elapsed() < std::time::Duration::from_secs(40),
        "took {:?}",
        started.elapsed()
    );
    ensure!(
        !delta_warnings(&run).is_empty(),
        "no warning about the abandoned delta"
    );
    check_progress(&run)?;
    fixture.check_result(&dest, &update, "trickled")
}

/// The full tree (xattrs, a foreign owner, private modes) through a delta into the modes
/// that keep them: the checkout matches in ownership and xattrs too.
#[test]
fn delta_keeps_xattrs_and_ownership() -> Result<()> {
    let fixture = Fixture::with(TreeOptions::full())?;
    let modes = [RepoMode::Bare, RepoMode::BareUser, RepoMode::Archive];
    let dests = fixture.clients_at_v1(&modes)?;
    let update = fixture.update(&[&format!("--from={}", fixture.v1)])?;
    fixture.delete_delta_content(&update)?;
    for (mode, dest) in modes.iter().zip(&dests) {
        let run = fixture.pull_published(dest)?;
        expect_no_delta_warnings(&run)?;
        fixture.check_result_with(dest, &update, mode.as_str(), &CompareOptions::everything())?;
    }
    Ok(())
}
