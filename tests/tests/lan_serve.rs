//! `ferryctl serve`: a repository served read-only over HTTP to computers nearby and
//! advertised with DNS-SD. On loopback: pulls by `ferryctl pull` and by the real `ostree pull`,
//! and nothing outside the pull paths is served. Between two network namespaces joined by a
//! veth pair (the `serial_` tests, run alone by the nextest `serial` group): machine B finds machine A's newer OS commit
//! with no address given, lists it under a computer nearby and installs it from there, while a
//! computer that advertises a repository without a summary is dropped as a problem; a computer
//! with only an IPv6 link-local address is found and installed from the same way; and past 32
//! computers nearby the others are ignored and counted. With avahi-daemon running in both
//! namespaces (each on a private system bus), serving publishes and listing browses through
//! it, over IPv4 and over IPv6 link-local addresses alone, and libostree's own LAN finder (`ostree find-remotes --finders=lan --pull`) finds and
//! pulls from a machine that shares its bare repository.

mod install_support;
mod pull_support;
mod serve_support;

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use ferry_engine::object::Summary;
use ferry_engine::schema::{
    InstallStatus, ProblemKind, SourceInfo, SourceKind, Update, UpdateList,
};
use ferry_tests::bins;
use ferry_tests::cmd::{require_root, wait_for, Tool};
use ferry_tests::gpg::GpgKey;
use ferry_tests::lan::{Avahi, AvahiFamily, ServeOptions, ServeProcess, VethPair, LINK_LOCAL_A};
use ferry_tests::machine::MachineEnv;
use ferry_tests::ostree::{CommitSpec, OstreeRepo, RemoteSpec, RepoMode};
use ferry_tests::sysroot::{Sysroot, OS_COLLECTION_ID, OS_REF, OS_REMOTE};
use ferry_tests::tree::TreeOptions;
use install_support::InstallRun;
use pull_support::{
    client, pull_remote, remote_ref, trust_root, DeltaUpdate, Publisher, BRANCH, COLLECTION,
};
use serve_support::{get, start, start_as, Server, PROCESS_WAIT};
use tempfile::TempDir;

/// How long machine B keeps listing until machine A's advertisement has been seen.
const DISCOVERY_WAIT: Duration = Duration::from_secs(40);

#[test]
fn serves_a_signed_repository_read_only_to_ferry_and_ostree() -> Result<()> {
    let tmp = TempDir::new()?;
    let base = tmp.path();
    let publisher = Publisher::new(&base.join("publisher"), TreeOptions::full())?;
    let secret = base.join("secret");
    std::fs::write(&secret, "not for peers\n")?;
    std::os::unix::fs::symlink(&secret, publisher.repo.path.join("refs/heads/escape"))?;
    std::fs::write(publisher.repo.path.join("tmp-file"), "not for peers\n")?;
    // An object that is a symlink out of the repository.
    std::fs::create_dir_all(publisher.repo.path.join("objects/00"))?;
    let linked_object = format!("objects/00/{}.commit", "0".repeat(62));
    std::os::unix::fs::symlink(&secret, publisher.repo.path.join(&linked_object))?;
    // The publisher's own config names a remote with credentials in its URL.
    publisher.repo.remote_add(&RemoteSpec::new(
        "upstream",
        "https://builder:hunter2@updates.example.com/repo",
    ))?;
    let mut server = serve_on_loopback(base, &publisher.repo.path, &[])?;
    let port = server.port()?;

    for (path, expected) in [
        ("/config", 200),
        ("/summary", 200),
        ("/summary.sig", 200),
        ("/0/summary", 200),
        (&*format!("/refs/heads/{BRANCH}"), 200),
        ("/refs/heads/escape", 404),
        (&*format!("/{linked_object}"), 404),
        (&*format!("/0/{linked_object}"), 404),
        ("/0/refs/heads/escape", 404),
        ("/objects/../../secret", 404),
        ("/../secret", 404),
        ("/%2e%2e/secret", 404),
        ("/tmp-file", 404),
        ("/", 404),
        ("/objects/", 404),
        ("/refs/heads/", 404),
    ] {
        let (status, body) = get(port, path)?;
        ensure!(status == expected, "GET {path}: {status}, not {expected}");
        ensure!(
            !String::from_utf8_lossy(&body).contains("not for peers"),
            "GET {path} leaked a file outside the pull paths"
        );
    }

    // The config served is generated: mode and collection ID, none of the publisher's remotes.
    let (_, config) = get(port, "/config")?;
    let config = String::from_utf8_lossy(&config);
    ensure!(
        config.contains("mode=archive-z2")
            && config.contains(&format!("collection-id={COLLECTION}")),
        "served config:\n{config}"
    );
    ensure!(
        !config.contains("hunter2") && !config.contains("remote"),
        "the served config carries the publisher's remotes:\n{config}"
    );

    // Ferry pulls and verifies through it.
    let dest = client(&base.join("dest"), RepoMode::Bare, Some(&publisher.key))?;
    let run =
        pull_remote(&trust_root(base), &dest.path, &server.url, &[BRANCH])?.require_success()?;
    ensure!(run.results().len() == 1);
    ensure!(dest.read_ref(&remote_ref(BRANCH))? == Some(publisher.commit.clone()));
    dest.fsck()?;

    // And so does libostree, with GPG verification, at the advertised path `/0`.
    let theirs = OstreeRepo::init(&base.join("ostree-client"), RepoMode::BareUser, None)?;
    theirs.remote_add(
        &RemoteSpec::new("peer", &format!("{}/0", server.url))
            .collection_id(COLLECTION)
            .trust(&publisher.key),
    )?;
    theirs.pull("peer", &[BRANCH])?;
    ensure!(theirs.rev_parse(&format!("peer:{BRANCH}"))? == publisher.commit);

    let log = server.log_text();
    ensure!(
        log.contains("path=/objects/") && log.contains("path=/0/objects/"),
        "requests were not logged:\n{log}"
    );
    let status = server.terminate()?;
    ensure!(
        status.success(),
        "ferryctl serve exited {status} on SIGTERM"
    );
    Ok(())
}

/// Object files below a repository's `objects/`.
/// An update whose new content objects are gone from the served repository but carried by
/// an `ostree static-delta generate` delta: `ferryctl serve` hands out the delta and a pull
/// through it completes, asking for no content object.
#[test]
fn serves_static_deltas_that_a_pull_applies() -> Result<()> {
    let tmp = TempDir::new()?;
    let base = tmp.path();
    let DeltaUpdate {
        publisher,
        dest,
        v2,
        ..
    } = {
        let update = DeltaUpdate::new(base)?;
        update
            .publisher
            .repo
            .update_summary(Some(&update.publisher.key))?;
        update.leave_only_the_delta()?;
        update
    };
    let mut server = serve_on_loopback(base, &publisher.repo.path, &[])?;
    pull_remote(&trust_root(base), &dest.path, &server.url, &[BRANCH])?.require_success()?;
    ensure!(dest.read_ref(&remote_ref(BRANCH))? == Some(v2));
    dest.fsck()?;
    let log = server.log_text();
    ensure!(
        log.contains("path=/deltas/") && !log.contains(".filez"),
        "requests:\n{log}"
    );
    server.terminate()?;
    Ok(())
}

/// `ferryctl serve` of `repo` on 127.0.0.1 and a free port, not advertised, with `args`
/// added; its log in `base/serve.log`.
fn serve_on_loopback(base: &Path, repo: &Path, args: &[&str]) -> Result<Server> {
    let mut all = vec!["--address", "127.0.0.1", "--port", "0", "--no-advertise"];
    all.extend_from_slice(args);
    start(None, repo, &all, &base.join("serve.log"))
}

/// Descriptors the process `pid` has open.
fn open_fds(pid: u32) -> Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

#[test]
fn clients_that_trickle_bytes_neither_lock_out_others_nor_hold_descriptors() -> Result<()> {
    const CAP: usize = 16;
    const TRICKLERS: usize = CAP + 8;
    let header_timeout = Duration::from_secs(3);
    let tmp = TempDir::new()?;
    let base = tmp.path();
    let publisher = Publisher::new(&base.join("publisher"), TreeOptions::plain())?;
    let mut server = serve_on_loopback(
        base,
        &publisher.repo.path,
        &[
            "--max-connections",
            &CAP.to_string(),
            "--header-timeout",
            "3s",
        ],
    )?;
    let port = server.port()?;
    let pid = server.child.id();
    let idle_fds = open_fds(pid)?;

    // Each trickler opens a connection and sends one byte of a request head every 500 ms.
    let mut tricklers = Vec::new();
    for _ in 0..TRICKLERS {
        let mut stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.write_all(b"G")?;
        tricklers.push(stream);
    }
    let trickling = tricklers
        .iter()
        .map(TcpStream::try_clone)
        .collect::<std::io::Result<Vec<_>>>()?;
    let (stop_trickling, stopped) = mpsc::channel::<()>();
    let trickler = std::thread::spawn(move || {
        let mut trickling = trickling;
        while stopped.recv_timeout(Duration::from_millis(500)).is_err() {
            for stream in &mut trickling {
                let _ = stream.write_all(b"E");
            }
        }
    });

    // An honest client is answered at once, well before the header timeout frees anything.
    let started = Instant::now();
    let (status, body) = get(port, "/summary")?;
    let took = started.elapsed();
    ensure!(status == 200 && !body.is_empty(), "GET /summary: {status}");
    ensure!(
        took < header_timeout,
        "the summary took {took:?} behind {TRICKLERS} trickling connections"
    );
    let busy_fds = open_fds(pid)?;
    ensure!(
        busy_fds <= idle_fds + CAP + 1,
        "{busy_fds} descriptors open with {TRICKLERS} trickling connections (idle: {idle_fds}, \
         cap {CAP})"
    );

    // Past the header timeout every trickling connection has been closed by the server.
    wait_for(
        "the server to close the trickling connections",
        header_timeout + Duration::from_secs(10),
        || anyhow::Ok(open_fds(pid)? <= idle_fds),
    )?;
    let _ = stop_trickling.send(());
    let _ = trickler.join();
    for mut stream in tricklers {
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        // End of file (after any error response) or a reset: the server let it go.
        let mut answer = Vec::new();
        let closed = match stream.read_to_end(&mut answer) {
            Ok(_) => true,
            Err(error) => !matches!(
                error.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        };
        ensure!(closed, "a trickling connection is still open");
    }
    let (status, _) = get(port, "/config")?;
    ensure!(status == 200, "GET /config after the tricklers: {status}");
    server.terminate()?;
    Ok(())
}

#[test]
fn a_connection_displaced_at_the_cap_still_sends_what_it_answered() -> Result<()> {
    // Loopback of a namespace of its own, with an Ethernet-sized MTU: the server's socket
    // buffer then starts at tens of kilobytes (at loopback's 64 KiB MTU it holds megabytes),
    // and a client that reads nothing leaves most of an answer in the server's own buffer.
    ferry_tests::http::isolate_network()?;
    Tool::new("ip")
        .args(["link", "set", "lo", "mtu", "1500"])
        .run()?;
    let tmp = TempDir::new()?;
    let base = tmp.path();
    let publisher = Publisher::new(&base.join("publisher"), TreeOptions::plain())?;
    // Read whole and handed to the connection as one piece (under the server's 256 KiB), and
    // far more than the socket buffers of a client that reads nothing take: most of it waits
    // in the server's own buffer once the response counts as sent.
    let object = format!("objects/ee/{}.filez", "e".repeat(62));
    let body: Vec<u8> = (0..240 * 1024u32).map(|i| (i % 251) as u8).collect();
    std::fs::create_dir_all(publisher.repo.path.join("objects/ee"))?;
    std::fs::write(publisher.repo.path.join(&object), &body)?;
    let mut server = serve_on_loopback(base, &publisher.repo.path, &["--max-connections", "1"])?;
    let port = server.port()?;

    let mut first = TcpStream::connect(("127.0.0.1", port))?;
    rustix::net::sockopt::set_socket_recv_buffer_size(&first, 4096)?;
    write!(first, "GET /{object} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")?;
    first.set_read_timeout(Some(PROCESS_WAIT))?;
    // The start of the answer, so the request is known to be taken; then nothing is read.
    let mut answer = vec![0u8; 64];
    first.read_exact(&mut answer)?;
    // The only slot is the first client's; a second one gets in once the first counts as
    // waiting for its next request, and displaces it.
    wait_for("a second client to be answered", PROCESS_WAIT, || {
        anyhow::Ok(matches!(get(port, "/config"), Ok((200, _))))
    })?;
    // The end of the stream, or an error once the server closed it: what arrived is compared.
    let _ = first.read_to_end(&mut answer);
    let head_end = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no response head for the first client")?;
    let received = &answer[head_end + 4..];
    ensure!(
        received == body.as_slice(),
        "the displaced client got {} of the {} bytes it was answered",
        received.len(),
        body.len()
    );
    server.terminate()?;
    Ok(())
}

#[test]
fn a_client_that_stops_reading_is_dropped_after_the_idle_timeout() -> Result<()> {
    let idle_timeout = Duration::from_secs(2);
    let tmp = TempDir::new()?;
    let base = tmp.path();
    let publisher = Publisher::new(&base.join("publisher"), TreeOptions::plain())?;
    // Far more than loopback's socket buffers hold, so the server's writes stall.
    let big = format!("objects/ff/{}.filez", "f".repeat(62));
    std::fs::create_dir_all(publisher.repo.path.join("objects/ff"))?;
    std::fs::write(publisher.repo.path.join(&big), vec![0x5a; 64 << 20])?;
    let mut server = serve_on_loopback(base, &publisher.repo.path, &["--idle-timeout", "2s"])?;
    let port = server.port()?;
    let pid = server.child.id();
    let idle_fds = open_fds(pid)?;

    let mut stalled = TcpStream::connect(("127.0.0.1", port))?;
    write!(stalled, "GET /{big} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")?;
    wait_for("the server to answer", PROCESS_WAIT, || {
        anyhow::Ok(open_fds(pid)? > idle_fds)
    })?;
    let started = Instant::now();
    wait_for(
        "the server to drop the client that stopped reading",
        idle_timeout + Duration::from_secs(15),
        || anyhow::Ok(open_fds(pid)? <= idle_fds),
    )?;
    ensure!(
        started.elapsed() + Duration::from_millis(500) >= idle_timeout,
        "dropped after {:?}, before the idle timeout",
        started.elapsed()
    );
    drop(stalled);
    server.terminate()?;
    Ok(())
}

#[test]
fn refuses_to_serve_what_peers_cannot_use() -> Result<()> {
    let tmp = TempDir::new()?;
    let not_a_repo = tmp.path().join("not-a-repo");
    std::fs::create_dir_all(&not_a_repo)?;
    let output = bins::ferryctl()?
        .env("LC_ALL", "C.UTF-8")
        .args(["serve", "--no-advertise", "--port", "0", "--repo"])
        .arg(&not_a_repo)
        .run_failing()?;
    ensure!(
        output.stderr.contains("cannot open the repository"),
        "{}",
        output.stderr
    );
    // Advertising a repository needs its summary: peers would drop it otherwise.
    let archive = OstreeRepo::init(&tmp.path().join("archive"), RepoMode::Archive, None)?;
    let output = bins::ferryctl()?
        .env("LC_ALL", "C.UTF-8")
        .args(["serve", "--port", "0", "--repo"])
        .arg(&archive.path)
        .run_failing()?;
    ensure!(output.stderr.contains("summary"), "{}", output.stderr);
    Ok(())
}

/// A computer that installed a locale extension with some languages serves those parts:
/// listed apart in its summary, so `ostree` and `flatpak` never see a ref they could not
/// pull whole, and only the objects of those parts. An installation with the same language
/// updates from it through Ferry; one set for every language is told why it cannot.
#[test]
fn a_locale_extension_installed_in_part_is_served_in_those_parts() -> Result<()> {
    use ferry_tests::flatpak::{locale_text, FlatpakFixture, APP_ID, REMOTE};
    use install_support::Machine;
    let tmp = TempDir::new()?;
    let base = tmp.path();
    let fixture = FlatpakFixture::new(base)?;
    let (locale, v1) = fixture.repo.publish_locale(APP_ID, "v1", &["de", "fr"])?;
    fixture.client.install_languages(REMOTE, &locale, &["de"])?;
    // French installed, and no language set: flatpak's update would deploy them all.
    let french = fixture.peer("french")?;
    french.install(REMOTE, &[APP_ID], &[])?;
    french.install(REMOTE, &[&locale], &["--subpath=/fr"])?;
    let whole = fixture.peer("whole")?;
    whole.install(REMOTE, &[APP_ID], &[])?;
    whole.install(REMOTE, &[&locale], &[])?;
    let (_, v2) = fixture.repo.publish_locale(APP_ID, "v2", &["de", "fr"])?;
    let sharer = fixture.peer("sharer")?;
    sharer.install(REMOTE, &[APP_ID], &[])?;
    sharer.install_languages(REMOTE, &locale, &["de"])?;
    ensure!(sharer.installed_commit(&locale)? == v2);

    let installation = sharer.user_installation();
    let options = ServeOptions {
        env: vec![("FLATPAK_SYSTEM_DIR", installation.as_os_str())],
        ..ServeOptions::default()
    };
    let no_sysroot = base.join("no-sysroot");
    let server = ServeProcess::start(
        &options,
        &[
            OsStr::new("--system"),
            OsStr::new("--sysroot"),
            no_sysroot.as_os_str(),
            OsStr::new("--address"),
            OsStr::new("127.0.0.1"),
            OsStr::new("--port"),
            OsStr::new("0"),
            OsStr::new("--no-advertise"),
        ],
        &base.join("serve.log"),
    )?;
    let port = server.port()?;
    let (status, bytes) = get(port, "/0/summary")?;
    ensure!(status == 200, "summary: {status}");
    let summary = Summary::parse(&bytes)?;
    ensure!(
        summary.collection_refs().all(|(_, r)| r.name != locale),
        "the ref held in part is among the refs every client reads"
    );
    let held: Vec<(&str, String)> = summary
        .partial_refs()
        .map(|(_, r)| (r.name.as_str(), r.commit.to_hex()))
        .collect();
    ensure!(held == vec![(locale.as_str(), v2.clone())], "{held:?}");
    // `--repo` of an installation's repository reads what the installation deployed too.
    std::fs::create_dir_all(base.join("by-path"))?;
    let by_path = serve_on_loopback(&base.join("by-path"), &installation.join("repo"), &[])?;
    let (status, bytes) = get(by_path.port()?, "/summary")?;
    ensure!(status == 200, "summary of --repo: {status}");
    ensure!(
        Summary::parse(&bytes)?
            .partial_refs()
            .any(|(_, r)| r.name == locale && r.commit.to_hex() == v2),
        "--repo does not serve the ref held in part"
    );
    drop(by_path);
    // What lies outside the parts is not served, even once the repository holds it: the
    // French listing, put in the sharer's repository by hand.
    let dirtree_of = |repo: &OstreeRepo, path: &str| -> Result<String> {
        // `d00755 0 0 0 TREE META PATH`
        let line = repo.ostree().args(["ls", "-d", "-C", &v2, path]).stdout()?;
        line.split_whitespace()
            .nth(4)
            .map(str::to_owned)
            .with_context(|| format!("no dirtree in {line:?}"))
    };
    let served = |tree: &str| -> Result<u16> {
        Ok(get(
            port,
            &format!("/0/objects/{}/{}.dirtree", &tree[..2], &tree[2..]),
        )?
        .0)
    };
    let sharer_repo = sharer.user_repo();
    ensure!(served(&dirtree_of(&sharer_repo, "/files/de")?)? == 200);
    let french_tree = dirtree_of(&fixture.repo.repo, "/files/fr")?;
    let relative = format!(
        "objects/{}/{}.dirtree",
        &french_tree[..2],
        &french_tree[2..]
    );
    let copy = sharer_repo.path.join(&relative);
    std::fs::create_dir_all(copy.parent().context("an object path has a parent")?)?;
    std::fs::copy(fixture.repo.repo.path.join(&relative), &copy)?;
    ensure!(
        served(&french_tree)? == 404,
        "a listing outside the parts is served"
    );

    // The same language: updated from the computer nearby, in its parts.
    let from_sharer = [
        OsStr::new("--installation"),
        OsStr::new("user"),
        OsStr::new("--from"),
        OsStr::new(&server.url),
        OsStr::new("--all"),
    ];
    let german = Machine::new(base, fixture.client.vars())?;
    let run = german.install(&from_sharer)?;
    ensure!(run.success(), "install failed:\n{run}");
    ensure!(run.problems().is_empty(), "{run}");
    run.expect(&locale, InstallStatus::Installed)?;
    ensure!(fixture.client.installed_commit(&locale)? == v2);
    ensure!(fixture.client.deployed_locale_text(APP_ID, "de")? == Some(locale_text("de", "v2")));
    fixture.client.user_repo().fsck()?;

    // Every language wanted: not taken, and the problem says why.
    let elsewhere = Machine::new(&base.join("elsewhere"), french.vars())?;
    let run = elsewhere.install(&from_sharer)?;
    let refused = run.problem_of(&locale)?;
    ensure!(
        refused.kind == ProblemKind::PartialCommit && refused.reason.contains("set for all"),
        "{refused:?}"
    );
    ensure!(french.installed_commit(&locale)? == v1);

    // Installed whole: a computer holding the ref in part does not offer it, and that is
    // no problem to report.
    let listed =
        Machine::new(&base.join("whole-machine"), whole.vars())?.list(&from_sharer[..4])?;
    ensure!(
        listed.updates.iter().all(|u| u.ref_name != locale)
            && listed
                .problems
                .iter()
                .all(|p| p.ref_name.as_deref() != Some(&locale)),
        "{listed:?}"
    );
    Ok(())
}

/// What `ferryctl list` and `install` see of machine B: its own runtime dir, trust roots,
/// home and Flatpak directories under `base`.
fn machine_b(base: &Path) -> Result<Vec<(String, OsString)>> {
    Ok(MachineEnv::builder(&base.join("machine-b"))
        .build()?
        .into_vars())
}

/// The OS vendor's signing key, under `base`.
fn os_vendor_key(base: &Path) -> Result<GpgKey> {
    Ok(GpgKey::generate(
        &base.join("gnupg"),
        "OS Vendor <os@example.org>",
    )?)
}

/// Machine B's sysroot under `base`, deployed at 1.0 and trusting the OS vendor, and the
/// vendor's repository (`sysroot.os`) with 2.0 published; the sysroot and the 2.0 commit.
fn machine_b_at_1_0_with_2_0_published(base: &Path) -> Result<(Sysroot, String)> {
    let sysroot = Sysroot::create(base, &os_vendor_key(base)?)?;
    let v2 = sysroot.publish("2.0")?;
    Ok((sysroot, v2))
}

/// Machine A's sysroot under `base/a`, whose bare OS repository has pulled 2.0 from the
/// vendor signing with `key`; the sysroot and the 2.0 commit.
fn machine_a_with_2_0_installed(base: &Path, key: &GpgKey) -> Result<(Sysroot, String)> {
    let machine_a = Sysroot::create(&base.join("a"), key)?;
    let v2 = machine_a.publish("2.0")?;
    machine_a.repo().pull(OS_REMOTE, &[OS_REF])?;
    Ok((machine_a, v2))
}

/// `ferryctl serve` of `repo` on a free port in machine A's namespace, advertised by its
/// built-in responder; its log in `log`.
fn serve_on_a(lan: &VethPair, repo: &Path, log: &Path) -> Result<Server> {
    start(Some(&lan.a), repo, &["--port", "0"], log)
}

/// Requires `list` to hold one update, the OS at `commit`, offered by the computer nearby at
/// `peer_url`; returns the update and that offer.
fn expect_os_offered_by<'a>(
    list: &'a UpdateList,
    commit: &str,
    peer_url: &str,
) -> Result<(&'a Update, &'a SourceInfo)> {
    ensure!(list.updates.len() == 1, "{:#?}", list.updates);
    let os = &list.updates[0];
    ensure!(
        os.ref_name == OS_REF && os.commit.to_hex() == commit,
        "{os:#?}"
    );
    let offer = os
        .sources
        .iter()
        .find(|s| s.kind == SourceKind::Lan && s.location.trim_end_matches('/') == peer_url)
        .with_context(|| format!("not offered by {peer_url}: {:#?}", os.sources))?;
    Ok((os, offer))
}

/// Which objects [`ensure_a_served_objects`] looks for in machine A's log.
enum Served {
    AnyObjects,
    /// Content objects, which a bare repository's server converts on the fly.
    ContentObjects,
}

/// Requires machine A's server log `log` to show objects served from `/0/`.
fn ensure_a_served_objects(log: &str, served: Served) -> Result<()> {
    let content_only = matches!(served, Served::ContentObjects);
    ensure!(
        log.lines().any(|l| l.contains("path=/0/objects/")
            && (!content_only || l.contains(".filez"))
            && l.contains("status=200")),
        "machine A served no {}objects:\n{log}",
        if content_only { "content " } else { "" }
    );
    Ok(())
}

/// `ferryctl ARGS` run in namespace `namespace` on machine B.
fn ferryctl_in(namespace: &str, vars: &[(String, OsString)], args: &[&OsStr]) -> Result<Tool> {
    Ok(Tool::new("ip")
        .args(["netns", "exec", namespace])
        .arg(bins::binary("ferryctl")?)
        .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_os_str())))
        .args(args))
}

#[test]
fn serial_a_computer_nearby_is_found_listed_and_installed_from() -> Result<()> {
    require_root("network namespaces")?;
    let tmp = TempDir::new()?;
    let base = tmp.path();
    // Machine A serves the vendor's repository as is.
    let (sysroot, v2) = machine_b_at_1_0_with_2_0_published(base)?;
    // A second computer advertises a repository whose summary is gone by the time B asks.
    let stale = OstreeRepo::init(
        &base.join("stale"),
        RepoMode::Archive,
        Some(OS_COLLECTION_ID),
    )?;
    stale.commit(&CommitSpec::new("other/ref", &sysroot.os.data).subject("other"))?;
    stale.update_summary(None)?;

    let lan = VethPair::create()?;
    let peer = serve_on_a(&lan, &sysroot.os.repo.path, &base.join("serve-a.log"))?;
    let stale_server = serve_on_a(&lan, &stale.path, &base.join("serve-stale.log"))?;
    std::fs::remove_file(stale.path.join("summary"))?;
    let peer_url = format!("http://10.201.0.1:{}/0", peer.port()?);
    let stale_url = format!("http://10.201.0.1:{}/0", stale_server.port()?);

    let vars = machine_b(base)?;
    let (list, _) = list_on_b_until(&lan.b, &vars, &sysroot, |list| {
        !list.updates.is_empty() && list.problems.iter().any(|p| p.source.contains(&stale_url))
    })
    .with_context(|| format!("A's log:\n{}", peer.log_text()))?;
    let (os, _) = expect_os_offered_by(&list, &v2, &peer_url)?;
    ensure!(os.version.as_deref() == Some("2.0"));
    ensure!(os.signed);
    ensure!(
        os.sources.iter().any(|s| s
            .label
            .as_deref()
            .is_some_and(|l| l.starts_with("Ferry on"))),
        "the computer nearby is not named: {:#?}",
        os.sources
    );
    ensure!(
        list.problems.len() == 1 && list.problems[0].kind == ProblemKind::Unavailable,
        "only the computer without a summary is a problem: {:#?}",
        list.problems
    );

    // --offline leaves computers nearby out.
    let offline_args = [
        OsStr::new("list"),
        OsStr::new("--sysroot"),
        sysroot.path.as_os_str(),
        OsStr::new("--json"),
        OsStr::new("--offline"),
    ];
    let stdout = ferryctl_in(&lan.b, &vars, &offline_args)?.stdout()?;
    let offline: UpdateList = serde_json::from_str(&stdout)?;
    ensure!(
        offline.updates.is_empty() && offline.problems.is_empty(),
        "{offline:#?}"
    );

    install_os_on_b(&lan.b, &vars, &sysroot, &v2)?;
    // The objects came from machine A.
    ensure_a_served_objects(&peer.log_text(), Served::ContentObjects)?;

    // A new summary on machine A is announced again (its time is in the TXT records).
    publish_3_0_and_wait_for_a_to_refresh(&sysroot, &peer)?;
    drop(stale_server);
    drop(peer);
    drop(lan);
    Ok(())
}

#[test]
fn serial_a_computer_nearby_with_only_a_link_local_address_is_found_and_installed_from(
) -> Result<()> {
    require_root("network namespaces")?;
    let tmp = TempDir::new()?;
    let base = tmp.path();
    let (sysroot, v2) = machine_b_at_1_0_with_2_0_published(base)?;

    let lan = VethPair::link_local_only()?;
    // No address given: it listens on IPv6 as well as IPv4.
    let peer = serve_on_a(&lan, &sysroot.os.repo.path, &base.join("serve-a.log"))?;
    // B reaches A through its own end of the link.
    let peer_url = format!("http://[{LINK_LOCAL_A}%25veth-b]:{}/0", peer.port()?);

    let vars = machine_b(base)?;
    let (list, _) = list_on_b_until_found(&lan.b, &vars, &sysroot)?;
    let (os, _) = expect_os_offered_by(&list, &v2, &peer_url)?;
    ensure!(os.signed, "{os:#?}");
    ensure!(list.problems.is_empty(), "{:#?}", list.problems);

    install_os_on_b(&lan.b, &vars, &sysroot, &v2)?;
    ensure_a_served_objects(&peer.log_text(), Served::AnyObjects)?;
    drop(peer);
    drop(lan);
    Ok(())
}

#[test]
fn serial_past_32_computers_nearby_the_rest_are_ignored_and_counted() -> Result<()> {
    const SERVERS: usize = 34;
    require_root("network namespaces")?;
    let tmp = TempDir::new()?;
    let base = tmp.path();
    let (sysroot, _) = machine_b_at_1_0_with_2_0_published(base)?;
    let lan = VethPair::create()?;
    let mut servers = Vec::new();
    for n in 0..SERVERS {
        // Each under a host name of its own, as separate computers would be.
        servers.push(start_as(
            Some(&format!("peer-{n}")),
            Some(&lan.a),
            &sysroot.os.repo.path,
            &["--port", "0"],
            &base.join(format!("serve-{n}.log")),
        )?);
    }
    let vars = machine_b(base)?;
    let ignored = format!("{} more computers nearby", SERVERS - 32);
    let (list, _) = list_on_b_until(&lan.b, &vars, &sysroot, |list| {
        list.problems.iter().any(|p| p.reason.starts_with(&ignored))
    })
    .with_context(|| format!("machine B never saw all {SERVERS} computers nearby"))?;
    ensure!(list.updates.len() == 1, "{:#?}", list.updates);
    let peers = list.updates[0]
        .sources
        .iter()
        .filter(|s| s.kind == SourceKind::Lan)
        .count();
    ensure!(peers == 32, "{peers} computers nearby used, not 32");
    drop(servers);
    drop(lan);
    Ok(())
}

/// Machine A installed 2.0 from its vendor and shares its own bare OS repository the way the
/// units do: `ferryctl serve --system --no-advertise` serves it (and, at `/1/`, its
/// bare-user-only system Flatpak repository) and a second process, `--advertise-only`,
/// announces both; machine B, at 1.0, finds A, lists 2.0 offered by it at `/0/` and installs
/// it, the objects converted by A on the fly.
#[test]
fn serial_a_computer_nearby_shares_its_own_system_repositories() -> Result<()> {
    require_root("network namespaces")?;
    let tmp = TempDir::new()?;
    let base = tmp.path();
    let key = os_vendor_key(base)?;
    let machine_b_sysroot = Sysroot::create(&base.join("b"), &key)?;
    let (machine_a, v2) = machine_a_with_2_0_installed(base, &key)?;
    let flatpak_dir = base.join("a/flatpak-system");
    let publisher = Publisher::new(&base.join("apps"), TreeOptions::plain())?;
    publisher.pulled_into_system_flatpak(&flatpak_dir)?;

    let lan = VethPair::create()?;
    let machine_a_serve = |args: &[&str]| -> Result<Tool> {
        Ok(Tool::new("ip")
            .args(["netns", "exec", &lan.a])
            .arg(bins::binary("ferryctl")?)
            .env("FERRY_LOG", "info")
            .env("NO_COLOR", "1")
            .env("LC_ALL", "C.UTF-8")
            .env("FLATPAK_SYSTEM_DIR", &flatpak_dir)
            .env("FERRY_SERVE_CACHE", base.join("a/cache"))
            .args(["-v", "serve", "--system", "--sysroot"])
            .arg(&machine_a.path)
            .args(args))
    };
    let peer = Server::spawn(
        machine_a_serve(&["--no-advertise", "--port", "0"])?,
        &base.join("serve-a.log"),
    )?;
    let port = peer.port()?.to_string();
    let mut announcer = machine_a_serve(&["--advertise-only", "--port", &port])?
        .into_command()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(base.join("advertise-a.log"))?)
        .spawn()?;
    let announcer_log =
        || std::fs::read_to_string(base.join("advertise-a.log")).unwrap_or_default();
    let result = (|| -> Result<()> {
        let peer_url = format!("http://10.201.0.1:{port}/0");

        let vars = machine_b(base)?;
        let (list, _) = list_on_b_until_found(&lan.b, &vars, &machine_b_sysroot)?;
        expect_os_offered_by(&list, &v2, &peer_url)?;
        let log = announcer_log();
        ensure!(
            log.matches("advertising the repository").count() == 2,
            "machine A does not advertise both repositories:\n{log}"
        );

        install_os_on_b(&lan.b, &vars, &machine_b_sysroot, &v2)?;
        ensure_a_served_objects(&peer.log_text(), Served::ContentObjects)?;
        Ok(())
    })();
    Tool::new("kill")
        .args(["-TERM", &announcer.id().to_string()])
        .run()?;
    let stopped = announcer.wait()?;
    result.with_context(|| format!("the announcer's log:\n{}", announcer_log()))?;
    ensure!(
        stopped.success(),
        "the announcer exited {stopped}:\n{}",
        announcer_log()
    );
    // The server counted machine B for the Preferences switch, kept once it stopped.
    drop(peer);
    let config = base.join("a/ferry.conf");
    std::fs::write(&config, "[policy]\nshare-nearby = yes\n")?;
    let status = bins::ferryctl()?
        .env("FERRY_CONFIG", &config)
        .env("FERRY_SERVE_STATS", base.join("a/cache/today.json"))
        .env("FERRY_SYSTEMCTL", "false")
        .args(["sharing", "status", "--json"])
        .stdout()?;
    let status: ferry_engine::sharing::SharingStatus = serde_json::from_str(&status)?;
    ensure!(
        status.enabled && status.computers_today == 1 && status.bytes_today > 0,
        "{status:?}"
    );
    drop(lan);
    Ok(())
}

/// `ferry-hook --nearby` on machine B with `on-nearby = POLICY`, the sysroot as its OS.
fn hook_nearby_in(
    lan: &VethPair,
    vars: &[(String, OsString)],
    sysroot: &Sysroot,
    config: &Path,
) -> Result<ferry_tests::cmd::Output> {
    Ok(Tool::new("ip")
        .args(["netns", "exec", &lan.b])
        .arg(bins::binary("ferry-hook")?)
        .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_os_str())))
        .env("FERRY_CONFIG", config)
        .env("OSTREE_SYSROOT", &sysroot.path)
        .env("FERRY_LOG", "info,pgp=error")
        .arg("--nearby")
        .output()?)
}

#[test]
fn serial_on_nearby_install_installs_what_a_computer_nearby_offers_and_notify_does_not(
) -> Result<()> {
    require_root("network namespaces")?;
    let tmp = TempDir::new()?;
    let base = tmp.path();
    let (sysroot, v2) = machine_b_at_1_0_with_2_0_published(base)?;
    let v1 = sysroot.deployments()?[0].commit.clone();
    let lan = VethPair::create()?;
    let peer = serve_on_a(&lan, &sysroot.os.repo.path, &base.join("serve-a.log"))?;
    peer.port()?;
    let vars = machine_b(base)?;
    let run_dir = base.join("machine-b/ferry-run");
    let config = base.join("ferry.conf");

    // notify (the default) and ignore leave it to the person at the machine.
    for policy in ["notify", "ignore"] {
        std::fs::write(&config, format!("[policy]\non-nearby = {policy}\n"))?;
        let output = hook_nearby_in(&lan, &vars, &sysroot, &config)?;
        ensure!(output.status.success(), "{output:?}");
        ensure!(
            output.stderr.contains(&format!("on-nearby = {policy}")),
            "{output:?}"
        );
        ensure!(sysroot.deployments()?[0].commit == v1);
        ensure!(!run_dir.join("nearby.json").exists());
    }

    // install: machine B takes 2.0 from machine A. Announcements take a moment after a
    // responder starts, so a run that found nobody yet is repeated, as the timer would.
    std::fs::write(&config, "[policy]\non-nearby = install\n")?;
    let deadline = Instant::now() + DISCOVERY_WAIT;
    loop {
        let output = hook_nearby_in(&lan, &vars, &sysroot, &config)?;
        ensure!(output.status.success(), "{output:?}");
        if sysroot.deployments()?[0].commit == v2 {
            break;
        }
        if Instant::now() >= deadline {
            bail!(
                "machine B never installed from machine A: {}\nA's log:\n{}",
                output.stderr,
                peer.log_text()
            );
        }
    }
    sysroot.repo().fsck()?;
    let state: ferry_engine::schema::DriveInstall =
        serde_json::from_slice(&std::fs::read(run_dir.join("nearby.json"))?)?;
    ensure!(
        state.state == ferry_engine::schema::DriveInstallState::Succeeded,
        "{state:?}"
    );
    ensure!(
        state
            .results
            .iter()
            .any(|r| r.ref_name == OS_REF && r.status == InstallStatus::Installed),
        "{state:?}"
    );
    ensure!(
        peer.log_text()
            .lines()
            .any(|l| l.contains(".filez") && l.contains("status=200")),
        "machine A served no objects"
    );
    drop(peer);
    drop(lan);
    Ok(())
}

/// Machine B's variables with B's private system bus, where its avahi-daemon runs, and the
/// LAN module's debug log (which says which responder browses).
fn machine_b_with_avahi(base: &Path, avahi: &Avahi) -> Result<Vec<(String, OsString)>> {
    Ok(MachineEnv::builder(&base.join("machine-b"))
        .log("warn,pgp=error,ferry_engine::lan=debug")
        .var("DBUS_SYSTEM_BUS_ADDRESS", avahi.bus_address())
        .build()?
        .into_vars())
}

/// `avahi-browse -rpt _ostree_repo._tcp` in `namespace` through `avahi`: its resolved lines.
fn avahi_browse(namespace: &str, avahi: &Avahi) -> Result<Vec<String>> {
    let output = Tool::new("ip")
        .args(["netns", "exec", namespace, "timeout", "20"])
        .args(["avahi-browse", "-rpt", "_ostree_repo._tcp"])
        .env("DBUS_SYSTEM_BUS_ADDRESS", avahi.bus_address())
        .output()?;
    Ok(output
        .stdout
        .lines()
        .filter(|line| line.starts_with("=;"))
        .map(str::to_owned)
        .collect())
}

/// Two machines on `lan`, each with its avahi-daemon over `family`, and machine A serving
/// `repo` on a free port, publishing through its avahi-daemon with `env` added.
struct AvahiScene {
    peer: Server,
    avahi_b: Avahi,
    avahi_a: Avahi,
}

impl AvahiScene {
    fn start(
        base: &Path,
        lan: &VethPair,
        family: AvahiFamily,
        repo: &Path,
        env: &[(&'static str, &OsStr)],
    ) -> Result<Self> {
        let avahi_a = Avahi::start_on(&lan.a, "veth-a", "ferry-a", &base.join("avahi-a"), family)?;
        let avahi_b = Avahi::start_on(&lan.b, "veth-b", "ferry-b", &base.join("avahi-b"), family)?;
        let bus_a = OsString::from(avahi_a.bus_address());
        let mut vars = vec![("DBUS_SYSTEM_BUS_ADDRESS", bus_a.as_os_str())];
        vars.extend_from_slice(env);
        let peer = Server::start(
            &ServeOptions {
                namespace: Some(&lan.a),
                host: None,
                env: vars,
            },
            &[
                OsStr::new("--repo"),
                repo.as_os_str(),
                OsStr::new("--port"),
                OsStr::new("0"),
            ],
            &base.join("serve-a.log"),
        )?;
        Ok(AvahiScene {
            peer,
            avahi_b,
            avahi_a,
        })
    }

    /// Waits until B's avahi-daemon resolves an advert containing `published`; returns what
    /// `avahi-browse` printed then.
    fn wait_until_b_resolves(&self, lan: &VethPair, published: &str) -> Result<Vec<String>> {
        let mut seen = Vec::new();
        wait_for(
            "B's avahi-daemon to resolve A's advert",
            DISCOVERY_WAIT,
            || {
                seen = avahi_browse(&lan.b, &self.avahi_b)?;
                anyhow::Ok(seen.iter().any(|line| line.contains(published)))
            },
        )
        .with_context(|| {
            format!(
                "avahi-browse in B saw: {seen:#?}\nA's avahi:\n{}",
                self.avahi_a.log_text()
            )
        })?;
        Ok(seen)
    }
}

/// `ferryctl list --json` of `sysroot` on machine B, again until `found` holds for the
/// listing (announcements take a moment after a responder starts) or [`DISCOVERY_WAIT`] has
/// passed; the listing and what the command logged.
fn list_on_b_until(
    namespace: &str,
    vars: &[(String, OsString)],
    sysroot: &Sysroot,
    found: impl Fn(&UpdateList) -> bool,
) -> Result<(UpdateList, String)> {
    let list_args = [
        OsStr::new("list"),
        OsStr::new("--sysroot"),
        sysroot.path.as_os_str(),
        OsStr::new("--json"),
    ];
    let deadline = Instant::now() + DISCOVERY_WAIT;
    loop {
        let output = ferryctl_in(namespace, vars, &list_args)?.run()?;
        let list: UpdateList = serde_json::from_str(&output.stdout)
            .with_context(|| format!("not a listing: {}", output.stdout))?;
        if found(&list) {
            return Ok((list, output.stderr));
        }
        if Instant::now() >= deadline {
            bail!(
                "machine B never found what it looked for: {list:#?}\n{}",
                output.stderr
            );
        }
    }
}

/// [`list_on_b_until`] it lists an update.
fn list_on_b_until_found(
    namespace: &str,
    vars: &[(String, OsString)],
    sysroot: &Sysroot,
) -> Result<(UpdateList, String)> {
    list_on_b_until(namespace, vars, sysroot, |list| !list.updates.is_empty())
}

/// [`list_on_b_until_found`], requiring machine B to have browsed through its avahi-daemon.
fn list_on_b_through_avahi(
    namespace: &str,
    vars: &[(String, OsString)],
    sysroot: &Sysroot,
) -> Result<UpdateList> {
    let (list, log) = list_on_b_until_found(namespace, vars, sysroot)?;
    ensure!(
        log.lines()
            .any(|l| l.contains("browsing for computers nearby") && l.contains("avahi-daemon")),
        "machine B did not browse through avahi-daemon:\n{log}"
    );
    Ok(list)
}

/// Publishes 3.0 on the vendor's repository, which `peer` (machine A) serves, and waits
/// until A has refreshed its advertisement for the new summary.
fn publish_3_0_and_wait_for_a_to_refresh(sysroot: &Sysroot, peer: &Server) -> Result<()> {
    sysroot.publish("3.0")?;
    wait_for(
        "machine A to refresh its advertisement",
        DISCOVERY_WAIT,
        || anyhow::Ok(peer.log_text().contains("advertisement refreshed")),
    )
}

/// With avahi-daemon running on both machines (each on a system bus of its own), machine A's
/// `ferryctl serve` publishes through its avahi-daemon: B's avahi resolves the advert to A's
/// avahi host name, which the built-in responder never announces. Machine B lists and
/// installs A's update, browsing through its own avahi-daemon.
#[test]
fn serial_with_avahi_running_a_computer_nearby_publishes_and_browses_through_it() -> Result<()> {
    require_root("network namespaces")?;
    let tmp = TempDir::new()?;
    let base = tmp.path();
    let (sysroot, v2) = machine_b_at_1_0_with_2_0_published(base)?;

    let lan = VethPair::create()?;
    let scene = AvahiScene::start(base, &lan, AvahiFamily::Ipv4, &sysroot.os.repo.path, &[])?;
    let peer = &scene.peer;
    let port = peer.port()?;
    let peer_url = format!("http://10.201.0.1:{port}/0");
    let published = format!(";ferry-a.local;10.201.0.1;{port};");
    let mut seen = scene.wait_until_b_resolves(&lan, &published)?;
    ensure!(
        peer.log_text()
            .lines()
            .any(|l| l.contains("advertising the repository") && l.contains("avahi-daemon")),
        "machine A does not publish through avahi-daemon:\n{}",
        peer.log_text()
    );

    let vars = machine_b_with_avahi(base, &scene.avahi_b)?;
    let list = list_on_b_through_avahi(&lan.b, &vars, &sysroot)?;
    let (_, from_a) = expect_os_offered_by(&list, &v2, &peer_url)?;
    ensure!(
        from_a
            .label
            .as_deref()
            .is_some_and(|l| l.starts_with("Ferry on")),
        "{peer_url} is not offered under its name: {from_a:#?}"
    );

    install_os_on_b(&lan.b, &vars, &sysroot, &v2)?;
    ensure_a_served_objects(&peer.log_text(), Served::AnyObjects)?;

    // A new summary on machine A changes the TXT records avahi announces (`st`, `rb`).
    let before: Vec<String> = seen
        .iter()
        .filter(|line| line.contains(&published))
        .cloned()
        .collect();
    publish_3_0_and_wait_for_a_to_refresh(&sysroot, peer)?;
    wait_for(
        "B's avahi-daemon to see the new TXT records",
        DISCOVERY_WAIT,
        || {
            seen = avahi_browse(&lan.b, &scene.avahi_b)?;
            anyhow::Ok(
                seen.iter()
                    .any(|line| line.contains(&published) && !before.contains(line)),
            )
        },
    )
    .with_context(|| format!("avahi-browse in B saw: {seen:#?}\nbefore: {before:#?}"))?;
    drop(scene);
    drop(lan);
    Ok(())
}

/// With avahi-daemon running on both machines over IPv6 alone, on a link where each has only
/// a link-local address: B's avahi resolves A's advert to `fe80::…` on B's own interface,
/// and B lists and installs from `http://[fe80::…%25veth-b]:PORT/0`, the interface given by
/// avahi's index.
#[test]
fn serial_with_avahi_over_ipv6_a_link_local_computer_nearby_is_installed_from() -> Result<()> {
    require_root("network namespaces")?;
    let tmp = TempDir::new()?;
    let base = tmp.path();
    let (sysroot, v2) = machine_b_at_1_0_with_2_0_published(base)?;

    let lan = VethPair::link_local_only()?;
    let scene = AvahiScene::start(base, &lan, AvahiFamily::Ipv6, &sysroot.os.repo.path, &[])?;
    let port = scene.peer.port()?;
    let peer_url = format!("http://[{LINK_LOCAL_A}%25veth-b]:{port}/0");
    scene.wait_until_b_resolves(&lan, &format!(";ferry-a.local;{LINK_LOCAL_A};{port};"))?;

    let vars = machine_b_with_avahi(base, &scene.avahi_b)?;
    let list = list_on_b_through_avahi(&lan.b, &vars, &sysroot)?;
    expect_os_offered_by(&list, &v2, &peer_url)?;
    ensure!(list.problems.is_empty(), "{:#?}", list.problems);

    install_os_on_b(&lan.b, &vars, &sysroot, &v2)?;
    ensure_a_served_objects(&scene.peer.log_text(), Served::AnyObjects)?;
    drop(scene);
    drop(lan);
    Ok(())
}

/// Interoperability with libostree's own LAN finder (`OstreeRepoFinderAvahi`): machine A
/// shares its bare OS repository with `ferryctl serve --repo`, published through its
/// avahi-daemon; on machine B, `ostree find-remotes --finders=lan --pull` (which browses
/// through B's avahi-daemon) finds it by collection ID and ref, and pulls the signed commit.
#[test]
fn serial_ostree_find_remotes_finds_and_pulls_from_a_machine_sharing_its_bare_repo() -> Result<()> {
    require_root("network namespaces")?;
    let tmp = TempDir::new()?;
    let base = tmp.path();
    let key = os_vendor_key(base)?;
    let (machine_a, v2) = machine_a_with_2_0_installed(base, &key)?;
    let bare = machine_a.repo();
    ensure!(bare.mode()? == RepoMode::Bare, "{:?}", bare.mode()?);

    let lan = VethPair::create()?;
    let cache = base.join("a/cache");
    let scene = AvahiScene::start(
        base,
        &lan,
        AvahiFamily::Ipv4,
        &bare.path,
        &[("FERRY_SERVE_CACHE", cache.as_os_str())],
    )?;
    let peer = &scene.peer;

    // B knows the vendor's key and collection ID, but no reachable URL.
    let client = OstreeRepo::init(&base.join("client"), RepoMode::BareUser, None)?;
    client.remote_add(
        &RemoteSpec::new("origin", "http://127.0.0.1:1/offline")
            .collection_id(OS_COLLECTION_ID)
            .trust(&key),
    )?;
    let mut last = None;
    wait_for(
        "ostree find-remotes to pull from machine A",
        DISCOVERY_WAIT,
        || {
            let output = Tool::new("ip")
                .args(["netns", "exec", &lan.b, "ostree"])
                .arg(format!("--repo={}", client.path.display()))
                .args([
                    "find-remotes",
                    "--finders=lan",
                    "--pull",
                    OS_COLLECTION_ID,
                    OS_REF,
                ])
                .env("DBUS_SYSTEM_BUS_ADDRESS", scene.avahi_b.bus_address())
                .output()?;
            let pulled = output.success() && output.stdout.contains("Pulled 1/1 refs successfully");
            last = Some(output);
            anyhow::Ok(pulled)
        },
    )
    .with_context(|| format!("last attempt: {last:#?}\nA's log:\n{}", peer.log_text()))?;
    let found = last.map(|output| output.stdout).unwrap_or_default();
    ensure!(
        found.contains(&format!("http://10.201.0.1:{}/0", peer.port()?))
            && found.contains("OstreeRepoFinderAvahi"),
        "{found}"
    );
    ensure!(
        client
            .collection_refs()?
            .contains(&(OS_COLLECTION_ID.to_owned(), OS_REF.to_owned())),
        "{:?}",
        client.collection_refs()?
    );
    ensure!(client.rev_parse(OS_REF)? == v2);
    client.fsck()?;
    ensure_a_served_objects(&peer.log_text(), Served::ContentObjects)?;
    drop(scene);
    drop(lan);
    Ok(())
}

/// Cloned classroom machines share one host name, so their instance names ("Ferry on HOST")
/// collide: through avahi, a second server on the same machine, and a server on another
/// machine, take avahi's alternative names ("… #2") and all three stay announced.
#[test]
fn serial_with_avahi_servers_with_one_name_take_alternative_names() -> Result<()> {
    require_root("network namespaces")?;
    let tmp = TempDir::new()?;
    let base = tmp.path();
    let repo = OstreeRepo::init(
        &base.join("repo"),
        RepoMode::Archive,
        Some(OS_COLLECTION_ID),
    )?;
    let tree = base.join("tree");
    std::fs::create_dir_all(&tree)?;
    std::fs::write(tree.join("file"), "content")?;
    repo.commit(&CommitSpec::new(OS_REF, &tree).subject("one"))?;
    repo.update_summary(None)?;

    let lan = VethPair::create()?;
    let avahi_a = Avahi::start(&lan.a, "veth-a", "ferry-a", &base.join("avahi-a"))?;
    let avahi_b = Avahi::start(&lan.b, "veth-b", "ferry-b", &base.join("avahi-b"))?;
    let bus_a = OsString::from(avahi_a.bus_address());
    let bus_b = OsString::from(avahi_b.bus_address());
    let serve = |namespace: &str, bus: &OsStr, log: &str| {
        Server::start(
            &ServeOptions {
                namespace: Some(namespace),
                host: Some("classroom"),
                env: vec![
                    ("DBUS_SYSTEM_BUS_ADDRESS", bus),
                    ("FERRY_LOG", OsStr::new("info,ferry_engine::lan=debug")),
                ],
            },
            &[
                OsStr::new("--repo"),
                repo.path.as_os_str(),
                OsStr::new("--port"),
                OsStr::new("0"),
            ],
            &base.join(log),
        )
    };
    let servers = [
        serve(&lan.a, &bus_a, "serve-a1.log")?,
        serve(&lan.a, &bus_a, "serve-a2.log")?,
        serve(&lan.b, &bus_b, "serve-b.log")?,
    ];
    let mut names = std::collections::BTreeSet::new();
    let mut seen = Vec::new();
    wait_for("all three servers to be announced", DISCOVERY_WAIT, || {
        seen = avahi_browse(&lan.b, &avahi_b)?;
        names = seen
            .iter()
            .filter_map(|line| line.split(';').nth(3).map(str::to_owned))
            .collect();
        anyhow::Ok(names.len() == 3)
    })
    .with_context(|| {
        let logs: Vec<String> = servers.iter().map(Server::log_text).collect();
        format!("avahi-browse in B saw: {seen:#?}\nservers' logs: {logs:#?}")
    })?;
    ensure!(
        names
            .iter()
            .all(|name| name.starts_with("Ferry\\032on\\032classroom")),
        "{names:?}"
    );
    ensure!(
        names.contains("Ferry\\032on\\032classroom")
            // avahi-browse -p escapes ' ' and '#' as \032 and \035.
            && names.contains("Ferry\\032on\\032classroom\\032\\0352")
            && names.contains("Ferry\\032on\\032classroom\\032\\0353"),
        "{names:?}"
    );
    for server in &servers {
        let port = server.port()?;
        ensure!(
            seen.iter().any(|line| line.contains(&format!(";{port};"))),
            "the server on port {port} is not announced: {seen:#?}"
        );
    }
    drop(servers);
    drop(avahi_b);
    drop(avahi_a);
    drop(lan);
    Ok(())
}

/// `ferryctl install --sysroot SYSROOT --yes --json OS_REF` in namespace `namespace` on
/// machine B; requires the OS update installed, deployed as `commit` and `ostree fsck`-clean.
fn install_os_on_b(
    namespace: &str,
    vars: &[(String, OsString)],
    sysroot: &Sysroot,
    commit: &str,
) -> Result<()> {
    let output = ferryctl_in(
        namespace,
        vars,
        &[
            OsStr::new("install"),
            OsStr::new("--sysroot"),
            sysroot.path.as_os_str(),
            OsStr::new("--yes"),
            OsStr::new("--json"),
            OsStr::new(OS_REF),
        ],
    )?
    .output()?;
    let run = InstallRun {
        events: install_support::parse_events(&output.stdout)?,
        output,
    };
    ensure!(run.success(), "install failed:\n{run}");
    run.expect(OS_REF, InstallStatus::Installed)?;
    let deployments = sysroot.deployments()?;
    ensure!(deployments[0].commit == commit, "{deployments:?}");
    sysroot.repo().fsck()?;
    Ok(())
}
