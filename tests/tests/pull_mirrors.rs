//! Every source of a pull is a mirror of the same signed content, so one bad, slow or
//! vanishing source never decides the outcome (issue 11). Each test runs `ferryctl pull` against
//! real peers ([`Peer`], misbehaving as told) in a network namespace of its own, and drives.
//!
//! What each test proves:
//! - `tampering_peer_is_dropped_and_the_honest_ones_complete_the_pull`: a peer serving
//!   well-formed objects that hash to other names is dropped with a reason naming the hash,
//!   its objects come from the two honest peers, and the destination is `ostree fsck`-clean.
//! - `slow_peer_does_not_hold_the_pull`: a peer sending one byte every 3 s among two honest
//!   ones is not waited for; the pull completes in well under the time its bytes would take.
//! - `sigterm_stops_a_pull_from_a_trickling_peer_within_two_seconds`: with only that peer,
//!   SIGTERM ends `ferryctl` within 2 s while it waits for bytes; the ref is unchanged and the
//!   destination fsck-clean.
//! - `vanishing_peer_is_dropped_and_the_others_complete_the_pull`: a peer that cuts an object
//!   halfway and disappears (connections closed, port refusing) is dropped; the other peer
//!   completes the pull.
//! - `a_connection_broken_mid_body_is_fetched_again_from_the_same_peer`: a lone peer that
//!   cuts two objects' first answers halfway (closing those connections, then answering
//!   again) completes the pull, into a bare and into an archive repository, and stays active.
//! - `a_peer_whose_connections_keep_breaking_is_dropped`: one that cuts every object's first
//!   answer is dropped for it, and an honest peer completes the pull.
//! - `partial_peer_stays_in_use`: a peer answering 404 for half the objects keeps serving the
//!   other half after its first 404, and the result reports it active with objects > 0.
//! - `drive_and_peer_each_give_their_part`: a drive with half the content objects and a peer
//!   holding only the rest complete the pull together; the peer is asked for exactly the
//!   objects the drive lacks.
//! - `serial_drive_pulled_out_mid_pull_is_dropped_and_the_peer_completes_it`: an ext4 drive
//!   on a loop device is cut off (every read EIO) while the pull walks it; the pull completes
//!   from a peer holding everything and reports the drive dropped.
//! - `every_source_lacking_an_object_fails_naming_each_one`: when a drive and two peers all
//!   lack one object, the pull fails naming all three; ref unchanged, fsck-clean.
//! - `every_source_bad_for_an_object_fails_naming_each_one_and_why`: a drive lacking an
//!   object, a peer answering 404 for it and a peer tampering with it: the pull fails, the one
//!   error names all three sources and the tampering; ref unchanged, fsck-clean.
//! - `past_32_peers_the_rest_are_left_out_and_counted`: given 34 peers, a pull asks objects
//!   of 32 at most and says that 2 were left out.
//! - `test_peer_misbehaves_as_told`: the peer fixture does what each behaviour says (tampered
//!   body with the genuine header, 404, trickle, trigger at the n-th object, a cut object then
//!   refused connections), so a failure above is the pull's, not the fixture's.

mod pull_support;

use std::collections::{BTreeSet, HashSet};
use std::ffi::OsStr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use ferry_engine::event::Event;
use ferry_engine::schema::{InstallResult, InstallStatus, SourceState, SourceUse};
use ferry_tests::compare::{assert_trees_equal, CompareOptions};
use ferry_tests::generate::{Bucket, GenSpec};
use ferry_tests::gpg::GpgKey;
use ferry_tests::loopdev::{shut_down_ext4, LoopImage};
use ferry_tests::ostree::{CheckoutMode, ObjectKind, OstreeRepo, RepoMode};
use ferry_tests::tamper;
use ferry_tests::tree::{standard, Tree, TreeOptions};
use pull_support::peer::{object_path, Behaviour, Peer, When};
use pull_support::{
    assert_refused, client, pull_args, pull_within, remote_ref, trust_root, Publisher, PullRun,
    RunningPull, BRANCH, COLLECTION, REMOTE,
};
use tempfile::TempDir;

/// Longest a pull of these small trees may take, whatever its sources do.
const PULL_DEADLINE: Duration = Duration::from_secs(60);
/// The generated directory whose dirtree gates the drive-removal test.
const GATE_DIR: &str = "/usr/share/data/d003";

/// The standard tree plus 40 small files in 4 directories: enough objects for several sources
/// to share, still pulled in a second.
fn publisher(base: &Path) -> Result<Publisher> {
    let key = GpgKey::generate(&base.join("gnupg"), "Publisher <publisher@example.org>")?;
    let spec = GenSpec {
        buckets: vec![Bucket {
            count: 40,
            min: 256,
            max: 4096,
        }],
        files_per_dir: 10,
        seed: 11,
    };
    let tree = Tree::with_generated(&base.join("tree"), TreeOptions::plain(), spec)?;
    Ok(Publisher::with(base, key, tree)?)
}

/// A content object of a commit.
#[derive(Debug, Clone)]
struct Content {
    path: String,
    checksum: String,
    /// A regular file with content (not a symlink).
    regular: bool,
}

impl Content {
    fn url_path(&self) -> String {
        object_path(&self.checksum, "filez")
    }
}

/// Every content object of `commit`, in `ostree ls -R` order, each checksum once.
fn content_objects(repo: &OstreeRepo, commit: &str) -> Result<Vec<Content>> {
    let listing = repo.ostree().args(["ls", "-R", "-C", commit]).stdout()?;
    let mut seen = HashSet::new();
    let mut objects = Vec::new();
    for line in listing.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let (Some(kind), Some(checksum), Some(path)) =
            (line.chars().next(), words.get(4), words.get(5))
        else {
            bail!("unexpected `ostree ls` line {line:?}");
        };
        if kind == 'd' || !seen.insert(checksum.to_string()) {
            continue;
        }
        let size: u64 = words.get(3).and_then(|s| s.parse().ok()).unwrap_or(0);
        objects.push(Content {
            path: path.to_string(),
            checksum: checksum.to_string(),
            regular: kind == '-' && size > 0,
        });
    }
    ensure!(objects.len() > 40, "too few content objects: {objects:?}");
    Ok(objects)
}

/// URL paths of the content objects of the scene's commit that are files with content
/// (whose body can be cut halfway); at least two.
fn regular_file_objects(scene: &Scene) -> Result<Vec<String>> {
    let publisher = &scene.publisher;
    let objects = content_objects(&publisher.repo, &publisher.commit)?;
    let paths: Vec<String> = objects
        .iter()
        .filter(|object| object.regular)
        .map(Content::url_path)
        .collect();
    ensure!(paths.len() >= 2, "too few regular files: {objects:?}");
    Ok(paths)
}

/// URL paths of every object file in an archive repository.
fn all_object_paths(repo: &OstreeRepo) -> Result<BTreeSet<String>> {
    let mut paths = BTreeSet::new();
    for dir in std::fs::read_dir(repo.path.join("objects"))? {
        let dir = dir?;
        for object in std::fs::read_dir(dir.path())? {
            let object = object?;
            paths.insert(format!(
                "/objects/{}/{}",
                dir.file_name().to_string_lossy(),
                object.file_name().to_string_lossy()
            ));
        }
    }
    Ok(paths)
}

/// Whether a source name names `needle` (a URL or path) and not a longer one it prefixes
/// (port 4000 in a name for port 40001).
fn names(source: &str, needle: &str) -> bool {
    source.match_indices(needle).any(|(at, _)| {
        !source[at + needle.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
    })
}

fn the_result(run: &PullRun) -> Result<InstallResult> {
    match run.results().as_slice() {
        [result] => Ok(result.clone()),
        other => bail!("expected one result, got {other:?}"),
    }
}

/// The result's account of the source named by `needle`.
fn source_use(result: &InstallResult, needle: &str) -> Result<SourceUse> {
    result
        .sources
        .iter()
        .find(|used| names(&used.source, needle))
        .cloned()
        .with_context(|| format!("the result lists no source {needle}: {:?}", result.sources))
}

/// The state changes the events report for the source named by `needle`.
fn state_events(run: &PullRun, needle: &str) -> Vec<(SourceState, Option<String>)> {
    run.events
        .iter()
        .filter_map(|event| match event {
            Event::SourceState {
                source,
                state,
                reason,
                ..
            } if names(source, needle) => Some((*state, reason.clone())),
            _ => None,
        })
        .collect()
}

fn blames_the_hash(reason: &str) -> bool {
    let reason = reason.to_lowercase();
    reason.contains("hash") || reason.contains("tampered")
}

/// One test's world: the network isolated, a scratch directory, and the [`publisher`] whose
/// commit every source mirrors.
struct Scene {
    tmp: TempDir,
    publisher: Publisher,
}

impl Scene {
    fn new() -> Result<Self> {
        ferry_tests::http::isolate_network()?;
        let tmp = TempDir::new()?;
        let publisher = publisher(&tmp.path().join("publisher"))?;
        Ok(Scene { tmp, publisher })
    }

    fn base(&self) -> &Path {
        self.tmp.path()
    }

    /// A peer serving the publisher's repository, misbehaving as `behaviour` says.
    fn peer(&self, behaviour: Behaviour) -> Result<Peer> {
        Peer::serve_with(&self.publisher.repo.path, behaviour)
    }

    fn honest_peer(&self) -> Result<Peer> {
        self.peer(Behaviour::default())
    }

    /// The destination repository, trusting the publisher's key.
    fn dest(&self, mode: RepoMode) -> Result<OstreeRepo> {
        client(&self.base().join("dest"), mode, Some(&self.publisher.key))
    }

    /// Runs the pull, failing when it does not end within [`PULL_DEADLINE`].
    fn pull(&self, dest: &OstreeRepo, from: &[&OsStr]) -> Result<PullRun> {
        let started = Instant::now();
        pull_within(
            PULL_DEADLINE,
            &trust_root(self.base()),
            &dest.path,
            from,
            &["--remote", REMOTE],
            &[BRANCH],
        )?
        .with_context(|| format!("the pull was still running after {:?}", started.elapsed()))
    }

    /// [`Scene::pull`], then [`Scene::assert_complete`].
    fn pull_completes(&self, dest: &OstreeRepo, from: &[&OsStr]) -> Result<PullRun> {
        self.assert_complete(self.pull(dest, from)?, dest)
    }

    /// The pull succeeded, the ref points at the commit, `ostree fsck` is clean and the
    /// checkout matches the publisher's byte for byte.
    fn assert_complete(&self, run: PullRun, dest: &OstreeRepo) -> Result<PullRun> {
        let publisher = &self.publisher;
        let run = run.require_success()?;
        ensure!(
            dest.read_ref(&remote_ref(BRANCH))? == Some(publisher.commit.clone()),
            "the ref does not point at the published commit"
        );
        dest.fsck().context("ostree fsck of the destination")?;
        let (theirs, ours) = (
            self.base().join("co-publisher"),
            self.base().join("co-dest"),
        );
        publisher
            .repo
            .checkout(&publisher.commit, &theirs, CheckoutMode::Plain)?;
        dest.checkout(&publisher.commit, &ours, CheckoutMode::Plain)?;
        assert_trees_equal(&theirs, &ours, &CompareOptions::everything())?;
        Ok(run)
    }
}

fn url(peer: &Peer) -> &OsStr {
    OsStr::new(&peer.url)
}

#[test]
fn tampering_peer_is_dropped_and_the_honest_ones_complete_the_pull() -> Result<()> {
    let scene = Scene::new()?;
    let publisher = &scene.publisher;
    let tampered: HashSet<String> = content_objects(&publisher.repo, &publisher.commit)?
        .iter()
        .filter(|object| object.regular)
        .map(Content::url_path)
        .collect();
    let liar = scene.peer(Behaviour::default().tamper(tampered.iter().cloned()))?;
    let honest = [scene.honest_peer()?, scene.honest_peer()?];
    let dest = scene.dest(RepoMode::Bare)?;
    let run = scene.pull_completes(&dest, &[url(&honest[0]), url(&liar), url(&honest[1])])?;

    ensure!(
        liar.served_objects()
            .iter()
            .any(|path| tampered.contains(path)),
        "the tampering peer never handed out a tampered object: {:?}",
        liar.log()
    );
    let result = the_result(&run)?;
    let dropped = source_use(&result, &liar.url)?;
    ensure!(
        dropped.state == SourceState::Dropped
            && dropped.reason.as_deref().is_some_and(blames_the_hash),
        "the tampering peer is not reported dropped for a bad hash: {dropped:?}"
    );
    for peer in &honest {
        let used = source_use(&result, &peer.url)?;
        ensure!(
            used.state == SourceState::Active,
            "an honest peer was not kept: {used:?}"
        );
    }
    ensure!(
        honest
            .iter()
            .map(|peer| source_use(&result, &peer.url).map(|used| used.objects))
            .sum::<Result<u64>>()?
            > 0,
        "the honest peers are reported to have served nothing: {:?}",
        result.sources
    );
    ensure!(
        state_events(&run, &liar.url)
            .iter()
            .any(|(state, reason)| *state == SourceState::Dropped
                && reason.as_deref().is_some_and(blames_the_hash)),
        "no event says the tampering peer was dropped for a bad hash: {:?}",
        run.events
    );
    Ok(())
}

#[test]
fn slow_peer_does_not_hold_the_pull() -> Result<()> {
    let scene = Scene::new()?;
    let slow = scene.peer(Behaviour::default().trickle(Duration::from_secs(3)))?;
    let honest = [scene.honest_peer()?, scene.honest_peer()?];
    let dest = scene.dest(RepoMode::Bare)?;
    // Any object the slow peer sends takes minutes at its rate: only a pull that takes the
    // work back from it ends before the deadline.
    let run = scene.pull_completes(&dest, &[url(&slow), url(&honest[0]), url(&honest[1])])?;
    ensure!(
        !slow.object_requests().is_empty(),
        "the slow peer was never given work, so nothing was shown: {:?}",
        slow.log()
    );
    let used = source_use(&the_result(&run)?, &slow.url)?;
    ensure!(
        used.state != SourceState::Dropped,
        "a slow peer is not an error, yet it was dropped: {used:?}"
    );
    Ok(())
}

#[test]
fn sigterm_stops_a_pull_from_a_trickling_peer_within_two_seconds() -> Result<()> {
    let scene = Scene::new()?;
    let slow = scene.peer(Behaviour::default().trickle(Duration::from_secs(3)))?;
    let dest = scene.dest(RepoMode::Bare)?;
    let before = dest.read_ref(&remote_ref(BRANCH))?;
    let mut running = RunningPull::spawn(
        &trust_root(scene.base()),
        pull_args(&dest.path, &[url(&slow)], &["--remote", REMOTE], &[BRANCH]),
    )?;
    // The peer has started trickling an object: the pull is waiting on its bytes.
    let trickling = slow.wait_for(Duration::from_secs(30), |log| {
        log.iter()
            .any(|r| r.path.starts_with("/objects/") && r.status == 200)
    });
    if let Err(error) = trickling {
        let _ = running.child.kill();
        let _ = running.child.wait();
        return Err(error);
    }
    let pid = rustix::process::Pid::from_raw(running.child.id().try_into()?)
        .context("ferryctl has no pid")?;
    let sent = Instant::now();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM)?;
    let status = loop {
        if let Some(status) = running.child.try_wait()? {
            break status;
        }
        if sent.elapsed() > Duration::from_secs(10) {
            let _ = running.child.kill();
            let _ = running.child.wait();
            bail!("ferryctl was still running 10 s after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let took = sent.elapsed();
    ensure!(
        took <= Duration::from_secs(2),
        "ferryctl took {took:?} to end after SIGTERM"
    );
    ensure!(!status.success(), "a cancelled pull exited successfully");
    let cancelled = running.wait_for_event(
        Duration::from_secs(5),
        |event| matches!(event, Event::Result(result) if result.status == InstallStatus::Cancelled),
    );
    ensure!(
        cancelled.is_ok(),
        "no cancelled result was reported: {cancelled:?}"
    );
    let now = dest.read_ref(&remote_ref(BRANCH))?;
    ensure!(now == before, "the ref moved from {before:?} to {now:?}");
    dest.fsck().context("ostree fsck of the destination")?;
    Ok(())
}

#[test]
fn vanishing_peer_is_dropped_and_the_others_complete_the_pull() -> Result<()> {
    let scene = Scene::new()?;
    let vanishing = scene.peer(Behaviour::default().vanish_after(3))?;
    let honest = scene.honest_peer()?;
    let dest = scene.dest(RepoMode::Bare)?;
    let run = scene.pull_completes(&dest, &[url(&vanishing), url(&honest)])?;
    ensure!(
        vanishing
            .log()
            .iter()
            .any(|r| r.path.starts_with("/objects/") && r.status == 200 && !r.complete),
        "the peer never vanished mid-object: {:?}",
        vanishing.log()
    );
    let used = source_use(&the_result(&run)?, &vanishing.url)?;
    ensure!(
        used.state == SourceState::Dropped,
        "the vanished peer is not reported dropped: {used:?}"
    );
    Ok(())
}

#[test]
fn a_connection_broken_mid_body_is_fetched_again_from_the_same_peer() -> Result<()> {
    // A bare destination reads the object's header off the body itself; an archive one
    // streams the archived object through.
    for mode in [RepoMode::Bare, RepoMode::Archive] {
        let scene = Scene::new()?;
        let cut: Vec<String> = regular_file_objects(&scene)?.into_iter().take(2).collect();
        let peer = scene.peer(Behaviour::default().cut_once(cut.iter().cloned()))?;
        let dest = scene.dest(mode)?;
        // The peer is the only source: dropping it for a broken connection would fail the pull.
        let run = scene.pull_completes(&dest, &[url(&peer)])?;
        let log = peer.log();
        for path in &cut {
            let answers: Vec<bool> = log
                .iter()
                .filter(|r| &r.path == path && r.status == 200)
                .map(|r| r.complete)
                .collect();
            ensure!(
                answers == [false, true],
                "{mode:?}, {path}: expected one cut answer, then a whole one: {answers:?}"
            );
        }
        let used = source_use(&the_result(&run)?, &peer.url)?;
        ensure!(
            used.state == SourceState::Active,
            "{mode:?}: the peer is not reported active: {used:?}"
        );
    }
    Ok(())
}

/// Connections that keep breaking are a peer going away: with another source, it is dropped
/// and the other completes the pull.
#[test]
fn a_peer_whose_connections_keep_breaking_is_dropped() -> Result<()> {
    let scene = Scene::new()?;
    let breaking = scene.peer(Behaviour::default().cut_once(regular_file_objects(&scene)?))?;
    let honest = scene.honest_peer()?;
    let dest = scene.dest(RepoMode::Bare)?;
    let run = scene.pull_completes(&dest, &[url(&breaking), url(&honest)])?;
    let used = source_use(&the_result(&run)?, &breaking.url)?;
    ensure!(
        used.state == SourceState::Dropped
            && used
                .reason
                .as_deref()
                .is_some_and(|r| r.contains("connections broke")),
        "a peer breaking every body is not dropped for it: {used:?}"
    );
    Ok(())
}

#[test]
fn partial_peer_stays_in_use() -> Result<()> {
    let scene = Scene::new()?;
    let publisher = &scene.publisher;
    let objects = content_objects(&publisher.repo, &publisher.commit)?;
    let lacking: HashSet<String> = objects.iter().step_by(2).map(Content::url_path).collect();
    let partial = scene.peer(Behaviour::default().not_found(lacking.iter().cloned()))?;
    let full = scene.honest_peer()?;
    let dest = scene.dest(RepoMode::Bare)?;
    let run = scene.pull_completes(&dest, &[url(&partial), url(&full)])?;

    let log = partial.log();
    let first_miss = log
        .iter()
        .position(|r| r.path.starts_with("/objects/") && r.status == 404)
        .with_context(|| format!("the partial peer was never asked for what it lacks: {log:?}"))?;
    ensure!(
        log[first_miss..]
            .iter()
            .any(|r| r.path.starts_with("/objects/") && r.status == 200 && r.complete),
        "the partial peer served nothing after its first 404: {log:?}"
    );
    let used = source_use(&the_result(&run)?, &partial.url)?;
    ensure!(
        used.state == SourceState::Active && used.objects > 0,
        "the partial peer is not reported active with objects: {used:?}"
    );
    Ok(())
}

#[test]
fn past_32_peers_the_rest_are_left_out_and_counted() -> Result<()> {
    let scene = Scene::new()?;
    let peers = (0..34)
        .map(|_| scene.honest_peer())
        .collect::<Result<Vec<_>>>()?;
    let dest = scene.dest(RepoMode::Bare)?;
    let urls: Vec<&OsStr> = peers.iter().map(url).collect();
    let run = scene.pull_completes(&dest, &urls)?;
    let asked = peers
        .iter()
        .filter(|peer| !peer.object_requests().is_empty())
        .count();
    ensure!(asked <= 32, "{asked} peers were asked for objects");
    ensure!(
        run.events.iter().any(|event| matches!(event,
            Event::Message { text, .. } if text.starts_with("2 more") && text.contains("32"))),
        "no word of the 2 peers left out: {:?}",
        run.events
    );
    Ok(())
}

#[test]
fn drive_and_peer_each_give_their_part() -> Result<()> {
    let scene = Scene::new()?;
    let publisher = &scene.publisher;
    let objects = content_objects(&publisher.repo, &publisher.commit)?;
    let drive = scene.base().join("drive");
    let usb = publisher.repo.create_usb(&drive, &[(COLLECTION, BRANCH)])?;
    let mut drive_lacks = BTreeSet::new();
    for object in objects.iter().step_by(2) {
        tamper::remove_object(&usb.repo, &object.checksum, ObjectKind::Content)?;
        drive_lacks.insert(object.url_path());
    }
    // The peer holds only the rest: it answers 404 for everything the drive has.
    let drive_has: Vec<String> = all_object_paths(&publisher.repo)?
        .into_iter()
        .filter(|path| !drive_lacks.contains(path))
        .collect();
    let peer = scene.peer(Behaviour::default().not_found(drive_has))?;
    let dest = scene.dest(RepoMode::BareUser)?;
    scene.pull_completes(&dest, &[drive.as_os_str(), url(&peer)])?;

    let asked_set: BTreeSet<String> = peer.object_requests().into_iter().collect();
    ensure!(
        asked_set == drive_lacks,
        "the peer was asked for {} objects, not exactly the {} the drive lacks:\nasked but on \
         the drive: {:?}\nlacking but never asked: {:?}",
        asked_set.len(),
        drive_lacks.len(),
        asked_set.difference(&drive_lacks).collect::<Vec<_>>(),
        drive_lacks.difference(&asked_set).collect::<Vec<_>>()
    );
    Ok(())
}

#[test]
fn serial_drive_pulled_out_mid_pull_is_dropped_and_the_peer_completes_it() -> Result<()> {
    let scene = Scene::new()?;
    let publisher = &scene.publisher;
    let (gate_tree, _) = publisher.repo.dir_checksums(&publisher.commit, GATE_DIR)?;
    let gated: Vec<String> = content_objects(&publisher.repo, &publisher.commit)?
        .into_iter()
        .filter(|object| object.path.starts_with(&format!("{GATE_DIR}/")))
        .map(|object| object.url_path())
        .collect();
    ensure!(!gated.is_empty(), "nothing under {GATE_DIR}");

    // The drive holds everything but the gate directory's dirtree: its files, which the drive
    // also holds, are only found once the peer has sent that dirtree, and the peer pulls the
    // drive out just before it does.
    let image = LoopImage::create(&scene.base().join("drive.img"), 64, "FERRYDRIVE")?;
    image.populate(&scene.base().join("fill"), |mountpoint| {
        let usb = publisher
            .repo
            .create_usb(mountpoint, &[(COLLECTION, BRANCH)])?;
        tamper::remove_object(&usb.repo, &gate_tree, ObjectKind::DirTree)?;
        Ok(())
    })?;
    let device = image.attach()?;
    let mountpoint = scene.base().join("drive");
    let mount = device.mount(&mountpoint, &["ro"])?;

    let pulled_out: Arc<Mutex<Option<Result<(), String>>>> = Arc::default();
    let peer = {
        let (pulled_out, mountpoint) = (pulled_out.clone(), mountpoint.clone());
        scene.peer(Behaviour::default().on(
            When::Path(object_path(&gate_tree, "dirtree")),
            move || {
                let outcome = shut_down_ext4(&mountpoint).map_err(|e| e.to_string());
                if let Ok(mut slot) = pulled_out.lock() {
                    *slot = Some(outcome);
                }
            },
        ))?
    };
    let dest = scene.dest(RepoMode::BareUser)?;
    let run = scene.pull(&dest, &[mountpoint.as_os_str(), url(&peer)]);
    drop(peer);
    let unmounted = mount.unmount();
    let detached = device.detach();
    let run = run?;
    unmounted?;
    detached?;

    match pulled_out.lock().map(|slot| slot.clone()) {
        Ok(Some(Ok(()))) => {}
        Ok(Some(Err(error))) => bail!("the drive could not be pulled out: {error}"),
        _ => bail!(
            "the pull never asked the peer for the gate dirtree, so the drive stayed in: {}",
            run.output.stderr
        ),
    }
    let run = scene.assert_complete(run, &dest)?;
    let result = the_result(&run)?;
    let drive = mountpoint.to_string_lossy();
    let used = source_use(&result, &drive)?;
    ensure!(
        used.state == SourceState::Dropped,
        "the pulled-out drive is not reported dropped: {used:?}"
    );
    ensure!(
        state_events(&run, &drive)
            .iter()
            .any(|(state, _)| *state == SourceState::Dropped),
        "no event says the drive was dropped: {:?}",
        run.events
    );
    Ok(())
}

/// A drive lacking `hello.txt`'s object, and two peers: one answering 404 for it, the other
/// as `second` says. Returns the run and the sources' names.
fn pull_with_every_source_failing_hello(
    scene: &Scene,
    second: impl FnOnce(String) -> Behaviour,
) -> Result<(PullRun, OstreeRepo, Vec<String>, String)> {
    let publisher = &scene.publisher;
    let hello = publisher
        .repo
        .content_checksum(&publisher.commit, &format!("/{}", standard::HELLO))?;
    let drive = scene.base().join("drive");
    let usb = publisher.repo.create_usb(&drive, &[(COLLECTION, BRANCH)])?;
    tamper::remove_object(&usb.repo, &hello, ObjectKind::Content)?;
    let hello_path = object_path(&hello, "filez");
    let lacking = scene.peer(Behaviour::default().not_found([hello_path.clone()]))?;
    let other = scene.peer(second(hello_path))?;
    let dest = scene.dest(RepoMode::BareUser)?;
    let run = scene.pull(&dest, &[drive.as_os_str(), url(&lacking), url(&other)])?;
    let names = vec![
        drive.to_string_lossy().into_owned(),
        lacking.url.clone(),
        other.url.clone(),
    ];
    Ok((run, dest, names, hello))
}

/// The pull was refused and changed nothing, its error naming every source and the object.
fn assert_refused_naming(
    run: &PullRun,
    dest: &OstreeRepo,
    sources: &[String],
    object: &str,
) -> Result<()> {
    let mut needles: Vec<&str> = sources.iter().map(String::as_str).collect();
    needles.push(object);
    assert_refused(run, dest, &remote_ref(BRANCH), &None, &needles)
}

#[test]
fn every_source_lacking_an_object_fails_naming_each_one() -> Result<()> {
    let scene = Scene::new()?;
    let (run, dest, names, hello) = pull_with_every_source_failing_hello(&scene, |path| {
        Behaviour::default().not_found([path])
    })?;
    assert_refused_naming(&run, &dest, &names, &hello)
}

#[test]
fn every_source_bad_for_an_object_fails_naming_each_one_and_why() -> Result<()> {
    let scene = Scene::new()?;
    let (run, dest, names, hello) =
        pull_with_every_source_failing_hello(&scene, |path| Behaviour::default().tamper([path]))?;
    assert_refused_naming(&run, &dest, &names, &hello)?;
    let error = run
        .output
        .stderr
        .lines()
        .find(|line| line.starts_with("error: "))
        .unwrap_or_default();
    ensure!(
        blames_the_hash(error),
        "the error does not say the tampering peer's object failed its hash: {error}"
    );
    Ok(())
}

/// `GET path` on a connection of its own: the status and the body bytes that arrived before the
/// connection closed or stayed silent for `quiet`.
fn get(peer: &Peer, path: &str, quiet: Duration) -> Result<(u16, Vec<u8>)> {
    use std::io::{Read, Write};
    let address = peer.url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address)?;
    stream.set_read_timeout(Some(quiet))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )?;
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
        }
    }
    let head_end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .with_context(|| format!("no response head for {path}: {bytes:?}"))?;
    let head = String::from_utf8_lossy(&bytes[..head_end]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status in {head:?}"))?;
    Ok((status, bytes[head_end + 4..].to_vec()))
}

/// The fixture itself: each behaviour the tests above rely on does what it says.
#[test]
fn test_peer_misbehaves_as_told() -> Result<()> {
    let scene = Scene::new()?;
    let publisher = &scene.publisher;
    let objects: Vec<Content> = content_objects(&publisher.repo, &publisher.commit)?
        .into_iter()
        .filter(|object| object.regular)
        .collect();
    let [tampered, missing, slow, honest, ..] = objects.as_slice() else {
        bail!("too few objects");
    };
    let file = |object: &Content| {
        std::fs::read(
            publisher
                .repo
                .path
                .join(object.url_path().trim_start_matches('/')),
        )
    };
    let fired = Arc::new(Mutex::new(false));
    let peer = {
        let fired = fired.clone();
        scene.peer(
            Behaviour::default()
                .tamper([tampered.url_path()])
                .not_found([missing.url_path()])
                .trickle_only(Duration::from_secs(1), [slow.url_path()])
                .on(When::NthObject(2), move || {
                    if let Ok(mut fired) = fired.lock() {
                        *fired = true;
                    }
                }),
        )?
    };
    let quick = Duration::from_millis(500);

    let (status, body) = get(&peer, &honest.url_path(), quick)?;
    ensure!(
        status == 200 && body == file(honest)?,
        "honest object changed"
    );
    ensure!(
        !*lock(&fired),
        "the trigger fired on the first object request"
    );
    let (status, body) = get(&peer, &tampered.url_path(), quick)?;
    let genuine = file(tampered)?;
    ensure!(
        status == 200 && body != genuine && body[..16] == genuine[..16],
        "the tampered object is not a changed object with the same header"
    );
    ensure!(
        *lock(&fired),
        "the trigger did not fire on the second object request"
    );
    ensure!(get(&peer, &missing.url_path(), quick)?.0 == 404);
    let (status, body) = get(&peer, &slow.url_path(), quick)?;
    ensure!(
        status == 200 && !body.is_empty() && body.len() < file(slow)?.len(),
        "the trickled body came at once ({} bytes)",
        body.len()
    );
    ensure!(peer.served_objects() == vec![honest.url_path(), tampered.url_path()]);

    let vanishing = scene.peer(Behaviour::default().vanish_after(1))?;
    ensure!(get(&vanishing, &honest.url_path(), quick)?.1 == file(honest)?);
    let (status, body) = get(&vanishing, &tampered.url_path(), quick)?;
    ensure!(
        status == 200 && body.len() < genuine.len(),
        "the object after the last one was not cut"
    );
    let address = vanishing.url.trim_start_matches("http://");
    ensure!(
        std::net::TcpStream::connect(address).is_err(),
        "the vanished peer still accepts connections"
    );
    Ok(())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}
