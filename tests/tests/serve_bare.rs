//! `ferryctl serve` of bare, bare-user and bare-user-only repositories, viewed as archive
//! ones: the real `ostree pull` (with GPG verification) and Ferry's pull both take the
//! advertised ref from them and check out what the source holds; a local branch's objects
//! are refused; converted objects are cached and never served stale; a socket passed by the
//! service manager is used and the server exits when idle; `--system` serves a sysroot's OS
//! repository at `/0/` and the system Flatpak repository at `/1/`.

mod pull_support;
mod serve_support;

use std::io::{BufReader, Read};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use ferry_engine::object::{Checksum, ContentHasher, Summary};
use ferry_engine::repo::read_archive_stream;
use ferry_tests::bins;
use ferry_tests::cmd::{wait_for, Tool};
use ferry_tests::compare::{assert_trees_equal, CompareOptions};
use ferry_tests::gpg::GpgKey;
use ferry_tests::ostree::{CheckoutMode, CommitSpec, ObjectKind, OstreeRepo, RemoteSpec, RepoMode};
use ferry_tests::sysroot::{Sysroot, OS_COLLECTION_ID, OS_REF, OS_REMOTE};
use ferry_tests::tree::{Tree, TreeOptions};
use pull_support::{client, pull_remote, remote_ref, trust_root, Publisher, BRANCH, COLLECTION};
use serve_support::{get, Server, PROCESS_WAIT};
use tempfile::TempDir;

/// The private branch committed next to the advertised ref, and its only file.
const PRIVATE_BRANCH: &str = "private/stuff";
const PRIVATE_FILE: &str = "/secret.txt";

/// A repository of `mode` holding the publisher's signed commit as `origin:BRANCH` (origin has
/// the collection ID, so the ref is advertised) and a private branch.
struct Source {
    publisher: Publisher,
    repo: OstreeRepo,
    private_commit: String,
}

impl Source {
    fn create(base: &Path, mode: RepoMode, tree: Option<Tree>) -> Result<Source> {
        // bare-user-only keeps no ownership or xattrs, so its tree has none.
        let options = if mode == RepoMode::BareUserOnly {
            TreeOptions::plain()
        } else {
            TreeOptions::full()
        };
        let publisher = match tree {
            Some(tree) => {
                let key = GpgKey::generate(
                    &base.join("publisher/gnupg"),
                    "Publisher <publisher@example.org>",
                )?;
                Publisher::with(&base.join("publisher"), key, tree)?
            }
            None => Publisher::new(&base.join("publisher"), options)?,
        };
        let repo = OstreeRepo::init(&base.join("source"), mode, None)?;
        repo.remote_add(
            &RemoteSpec::file("origin", &publisher.repo.path)
                .collection_id(COLLECTION)
                .trust(&publisher.key),
        )?;
        repo.pull("origin", &[BRANCH])?;
        let private_tree = base.join("private-tree");
        std::fs::create_dir_all(&private_tree)?;
        std::fs::write(
            private_tree.join(PRIVATE_FILE.trim_start_matches('/')),
            "only on this machine\n",
        )?;
        let private_commit = repo.commit(&CommitSpec::new(PRIVATE_BRANCH, &private_tree))?;
        Ok(Source {
            publisher,
            repo,
            private_commit,
        })
    }

    /// `ferryctl serve --repo SOURCE` on 127.0.0.1, caching in `base/cache`.
    fn serve(&self, base: &Path, extra: &[&str]) -> Result<Server> {
        let tool = serve_tool(base)?
            .arg("--repo")
            .arg(&self.repo.path)
            .args(extra);
        Ok(Server::spawn(tool, &base.join("serve.log"))?)
    }
}

/// `ferryctl -v serve --address 127.0.0.1 --port 0 --no-advertise`, logging every request and
/// caching in `base/cache`.
fn serve_tool(base: &Path) -> Result<Tool> {
    Ok(Tool::new(bins::binary("ferryctl")?)
        .env("FERRY_LOG", "info")
        .env("NO_COLOR", "1")
        .env("LC_ALL", "C.UTF-8")
        .env("FERRY_SERVE_CACHE", base.join("cache"))
        .args(["-v", "serve", "--address", "127.0.0.1", "--port", "0"])
        .arg("--no-advertise"))
}

/// `objects/XX/YYY.EXT` of an archive repository.
fn archive_path(checksum: &str, extension: &str) -> String {
    format!("objects/{}/{}.{extension}", &checksum[..2], &checksum[2..])
}

/// Checks that `bytes` is a valid `.filez` of content object `checksum`.
fn check_filez(bytes: &[u8], checksum: &str) -> Result<()> {
    let (header, mut content) = read_archive_stream(BufReader::new(bytes), "served object")?;
    let mut hasher = ContentHasher::new(&header)?;
    let mut data = Vec::new();
    content.read_to_end(&mut data)?;
    hasher.update(&data);
    ensure!(
        hasher.finish() == Checksum::from_hex(checksum)?,
        "the served .filez does not hash to {checksum}"
    );
    Ok(())
}

/// Serves a repository of `mode`: libostree pulls into an archive and a bare-user repository
/// with GPG verification, Ferry pulls, checkouts match the source, and the private branch is
/// neither listed nor served.
fn serve_and_pull(mode: RepoMode) -> Result<()> {
    let tmp = TempDir::new()?;
    let base = tmp.path();
    let options = if mode == RepoMode::BareUserOnly {
        TreeOptions::plain()
    } else {
        TreeOptions::full()
    };
    let tree = Tree::standard(&base.join("tree"), options)?;
    // Large enough to be framed as several stored blocks while it is sent, and of no round
    // size.
    let large: Vec<u8> = (0..200_003u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    tree.write_file("usr/share/large.bin", &large)?;
    let source = Source::create(base, mode, Some(tree))?;
    let commit = source.publisher.commit.clone();
    let mut server = source.serve(base, &[])?;
    let port = server.port()?;

    let (status, config) = get(port, "/config")?;
    let config = String::from_utf8_lossy(&config);
    ensure!(
        status == 200
            && config.contains("mode=archive-z2")
            && config.contains(&format!("collection-id={COLLECTION}")),
        "served config ({status}):\n{config}"
    );
    let summary = served_summary(port, "/summary")?;
    let listed = listed_refs(&summary);
    ensure!(
        listed == vec![(Some(COLLECTION), BRANCH)],
        "the summary lists {listed:?}"
    );

    // Nothing of the private branch is served, its signature neither.
    source
        .repo
        .gpg_sign(&source.private_commit, &source.publisher.key)?;
    let private_content = source
        .repo
        .content_checksum(&source.private_commit, PRIVATE_FILE)?;
    for path in [
        archive_path(&source.private_commit, "commit"),
        archive_path(&source.private_commit, "commitmeta"),
        archive_path(&private_content, "filez"),
        archive_path(&private_content, "file"),
    ] {
        let (status, _) = get(port, &format!("/{path}"))?;
        ensure!(status == 404, "GET /{path}: {status}, not 404");
    }
    // While the advertised commit is, its detached metadata byte for byte.
    let (status, _) = get(port, &format!("/0/{}", archive_path(&commit, "commit")))?;
    ensure!(status == 200, "GET the advertised commit: {status}");
    let (status, served) = get(port, &format!("/0/{}", archive_path(&commit, "commitmeta")))?;
    let stored = std::fs::read(source.repo.object_path(&commit, ObjectKind::CommitMeta)?)?;
    ensure!(
        status == 200 && served == stored,
        "GET the advertised commit's detached metadata: {status}"
    );

    // libostree pulls with GPG verification, into an archive and a bare-user repository.
    let mut checkouts = Vec::new();
    for (name, client_mode) in [
        ("archive", RepoMode::Archive),
        ("bare-user", RepoMode::BareUser),
    ] {
        let theirs = OstreeRepo::init(&base.join(format!("ostree-{name}")), client_mode, None)?;
        theirs.remote_add(
            &RemoteSpec::new("peer", &format!("{}/0", server.url))
                .collection_id(COLLECTION)
                .trust(&source.publisher.key),
        )?;
        theirs.pull("peer", &[BRANCH])?;
        ensure!(theirs.rev_parse(&format!("peer:{BRANCH}"))? == commit);
        theirs.fsck()?;
        let checkout = base.join(format!("checkout-{name}"));
        theirs.checkout(&commit, &checkout, CheckoutMode::Plain)?;
        checkouts.push(checkout);
    }

    // And so does Ferry.
    let dest = ferry_pulls_into_bare(base, &server.url, &source.publisher.key, &commit)?;
    let checkout = base.join("checkout-ferry");
    dest.checkout(&commit, &checkout, CheckoutMode::Plain)?;
    checkouts.push(checkout);

    let original = base.join("checkout-source");
    source
        .repo
        .checkout(&commit, &original, CheckoutMode::Plain)?;
    let options = if mode == RepoMode::BareUserOnly {
        CompareOptions::content_and_modes()
    } else {
        CompareOptions::everything()
    };
    for checkout in &checkouts {
        assert_trees_equal(&original, checkout, &options)?;
    }
    let log = server.log_text();
    ensure!(log.contains(".filez"), "no content was asked for:\n{log}");
    server.terminate()?;
    Ok(())
}

#[test]
fn a_bare_repository_is_served_as_an_archive() -> Result<()> {
    serve_and_pull(RepoMode::Bare)
}

#[test]
fn a_bare_user_repository_is_served_as_an_archive() -> Result<()> {
    serve_and_pull(RepoMode::BareUser)
}

#[test]
fn a_bare_user_only_repository_is_served_as_an_archive() -> Result<()> {
    serve_and_pull(RepoMode::BareUserOnly)
}

/// A mirrored ref (`refs/mirrors/COLLECTION/REF`) is advertised next to the remote's ref: the
/// summary lists each under its collection (one in the main list with
/// `ostree.summary.collection-id`, the other in `ostree.summary.collection-map`); libostree
/// pulls the main list's ref and Ferry the collection map's.
#[test]
fn mirrored_refs_are_listed_by_collection_and_pulled() -> Result<()> {
    const MIRROR_COLLECTION: &str = "org.example.Mirror";
    const MIRROR_REF: &str = "mirror/ref";
    let tmp = TempDir::new()?;
    let base = tmp.path();
    let source = Source::create(base, RepoMode::BareUser, None)?;
    // A commit bound to the mirror's collection (as one pulled with --mirror would be), then
    // moved from refs/heads to refs/mirrors.
    let mirrored = source.repo.commit(
        &CommitSpec::new(MIRROR_REF, &base.join("private-tree"))
            .metadata("ostree.collection-binding", MIRROR_COLLECTION),
    )?;
    let mirror_ref = source
        .repo
        .path
        .join("refs/mirrors")
        .join(MIRROR_COLLECTION)
        .join(MIRROR_REF);
    std::fs::create_dir_all(mirror_ref.parent().context("no parent")?)?;
    std::fs::rename(
        source.repo.path.join("refs/heads").join(MIRROR_REF),
        &mirror_ref,
    )?;
    let server = source.serve(base, &[])?;
    let port = server.port()?;

    let summary = served_summary(port, "/summary")?;
    let mut listed: Vec<(Option<&str>, &str, String)> = summary
        .collection_refs()
        .map(|(id, r)| (id, r.name.as_str(), r.commit.to_hex()))
        .collect();
    listed.sort();
    ensure!(
        listed
            == vec![
                (Some(MIRROR_COLLECTION), MIRROR_REF, mirrored.clone()),
                (Some(COLLECTION), BRANCH, source.publisher.commit.clone()),
            ],
        "the summary lists {listed:?}"
    );
    ensure!(
        summary.refs.len() == 1 && summary.collection_map.len() == 1,
        "main list {:?}, collection map {:?}",
        summary.refs,
        summary.collection_map
    );

    // One ref each: the main list takes the first collection by name, the mirror's. A plain
    // `ostree pull` looks in the main list, as in summaries libostree writes itself.
    ensure!(
        summary.collection_id.as_deref() == Some(MIRROR_COLLECTION),
        "main collection {:?}",
        summary.collection_id
    );
    let theirs = OstreeRepo::init(&base.join("ostree-client"), RepoMode::Archive, None)?;
    theirs.remote_add(
        &RemoteSpec::new("peer", &format!("{}/0", server.url)).collection_id(MIRROR_COLLECTION),
    )?;
    theirs.pull("peer", &[MIRROR_REF])?;
    ensure!(theirs.rev_parse(&format!("peer:{MIRROR_REF}"))? == mirrored);
    theirs.fsck()?;
    // Ferry asks by collection: it finds the other ref in the collection map.
    ferry_pulls_into_bare(
        base,
        &server.url,
        &source.publisher.key,
        &source.publisher.commit,
    )?;
    Ok(())
}

/// How the server says it answered `path`: `from="cache"`, `from="converted"`, ….
fn answered_from(log: &str, path: &str) -> Vec<String> {
    log.lines()
        .filter(|line| line.contains(&format!("path={path} ")))
        .filter_map(|line| line.split("from=").nth(1))
        .map(|rest| {
            rest.split_whitespace()
                .next()
                .unwrap_or("")
                .trim_matches('"')
                .to_owned()
        })
        .collect()
}

/// A large object is converted once and then served from the cache; a cache entry written to
/// afterwards, or a source object whose time changed, is converted again, never served stale.
/// A new commit on the advertised ref is listed and served without a restart.
#[test]
fn converted_objects_are_cached_and_never_served_stale() -> Result<()> {
    let tmp = TempDir::new()?;
    let base = tmp.path();
    let tree = Tree::standard(&base.join("tree"), TreeOptions::plain())?;
    let big: Vec<u8> = (0..1_048_576u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    tree.write_file("usr/share/big.bin", &big)?;
    let source = Source::create(base, RepoMode::BareUser, Some(tree))?;
    let commit = source.publisher.commit.clone();
    let big_checksum = source
        .repo
        .content_checksum(&commit, "/usr/share/big.bin")?;
    let path = format!("/{}", archive_path(&big_checksum, "filez"));
    let server = source.serve(base, &["--cache-size", "1073741824"])?;
    let port = server.port()?;

    let (status, first) = get(port, &path)?;
    ensure!(status == 200, "GET {path}: {status}");
    check_filez(&first, &big_checksum)?;
    let (_, second) = get(port, &path)?;
    ensure!(
        second == first,
        "the cached object differs from the converted one"
    );
    ensure!(
        answered_from(&server.log_text(), &path) == ["converted", "cache"],
        "{:?}",
        answered_from(&server.log_text(), &path)
    );

    // Someone writes to the cache entry: it is not served.
    let entry = base
        .join("cache/objects")
        .join(&big_checksum[..2])
        .join(format!("{}.filez", &big_checksum[2..]));
    let mut bytes = std::fs::read(&entry).context("the cache entry")?;
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&entry, &bytes)?;
    let (_, third) = get(port, &path)?;
    check_filez(&third, &big_checksum)?;

    // The source object's time changes: the entry made from it before is not served.
    let object = source
        .repo
        .object_path(&big_checksum, ObjectKind::Content)?;
    Tool::new("touch")
        .args(["-m", "-d", "@1000000000"])
        .arg(&object)
        .run()?;
    let (_, fourth) = get(port, &path)?;
    check_filez(&fourth, &big_checksum)?;
    let (_, fifth) = get(port, &path)?;
    check_filez(&fifth, &big_checksum)?;
    let answers = answered_from(&server.log_text(), &path);
    ensure!(
        answers == ["converted", "cache", "converted", "converted", "cache"],
        "{answers:?}"
    );

    // A new commit on the advertised ref: listed and served, without a restart.
    source
        .publisher
        .tree
        .write_file("usr/share/new.txt", "2.0\n")?;
    let v2 = source.publisher.repo.commit(
        &CommitSpec::new(BRANCH, &source.publisher.tree.root)
            .version("2.0")
            .sign(&source.publisher.key),
    )?;
    source
        .publisher
        .repo
        .update_summary(Some(&source.publisher.key))?;
    let (status, _) = get(port, &format!("/{}", archive_path(&v2, "commit")))?;
    ensure!(
        status == 404,
        "a commit not yet pulled was served: {status}"
    );
    source.repo.pull("origin", &[BRANCH])?;
    let summary = served_summary(port, "/summary")?;
    ensure!(
        summary.refs.iter().any(|r| r.commit.to_hex() == v2),
        "the summary still lists the old commit"
    );
    let (status, _) = get(port, &format!("/{}", archive_path(&v2, "commit")))?;
    ensure!(status == 200, "the new commit is not served: {status}");
    Ok(())
}

/// A free TCP port on 127.0.0.1 (bound, then released).
fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Started by `systemd-socket-activate` with the listening socket as descriptor 3, the server
/// answers on it (its own `--port` is the same, taken, port: binding it would fail) and exits
/// on its own once idle for `--idle-exit`.
#[test]
fn a_socket_passed_by_the_service_manager_is_served_until_idle() -> Result<()> {
    let tmp = TempDir::new()?;
    let base = tmp.path();
    let source = Source::create(base, RepoMode::BareUser, None)?;
    let port = free_port()?;
    let log = base.join("serve.log");
    let ferryctl = bins::binary("ferryctl")?;
    let mut child = Tool::new("systemd-socket-activate")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--setenv=FERRY_LOG=info")
        .arg("--setenv=LC_ALL=C.UTF-8")
        .arg(format!(
            "--setenv=FERRY_SERVE_CACHE={}",
            base.join("cache").display()
        ))
        .arg(&ferryctl)
        .args(["serve", "--no-advertise", "--idle-exit", "2"])
        .args(["--address", "127.0.0.1", "--port", &port.to_string()])
        .arg("--repo")
        .arg(&source.repo.path)
        .into_command()
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()?;
    let mut stopped = None;
    let result = (|| -> Result<()> {
        wait_for("the activation socket", PROCESS_WAIT, || {
            anyhow::Ok(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok())
        })?;
        let (status, config) = get(port, "/config")?;
        ensure!(
            status == 200 && String::from_utf8_lossy(&config).contains("mode=archive-z2"),
            "GET /config through the passed socket: {status}"
        );
        let (status, _) = get(
            port,
            &format!("/{}", archive_path(&source.publisher.commit, "commit")),
        )?;
        ensure!(status == 200, "GET the commit: {status}");
        let asked = Instant::now();
        wait_for("the idle server to exit", PROCESS_WAIT, || {
            stopped = child.try_wait()?;
            anyhow::Ok(stopped.is_some())
        })?;
        ensure!(
            asked.elapsed() >= Duration::from_secs(2),
            "it exited before the idle time"
        );
        Ok(())
    })();
    if stopped.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    result.with_context(|| format!("log:\n{text}"))?;
    let status = stopped.context("no exit status")?;
    ensure!(status.success(), "exited {status}:\n{text}");
    ensure!(
        text.contains("using the socket passed by the service manager"),
        "log:\n{text}"
    );
    Ok(())
}

/// `--system` on a fake sysroot: its bare OS repository at `/0/` (the remote's ref, and the
/// deployed commit even once no ref points at it) and a bare-user-only system Flatpak
/// repository at `/1/`, both pulled by libostree with GPG verification.
#[test]
fn system_serves_the_os_at_0_and_flatpak_at_1() -> Result<()> {
    let tmp = TempDir::new()?;
    let base = tmp.path();
    let key = GpgKey::generate(&base.join("gnupg"), "OS Vendor <os@example.org>")?;
    let sysroot = Sysroot::create(base, &key)?;
    // The system Flatpak installation's repository: bare-user-only, from a remote with a
    // collection ID.
    let flatpak_dir = base.join("flatpak-system");
    let publisher = Publisher::new(&base.join("apps"), TreeOptions::plain())?;
    publisher.pulled_into_system_flatpak(&flatpak_dir)?;

    let tool = serve_tool(base)?
        .env("FLATPAK_SYSTEM_DIR", &flatpak_dir)
        .arg("--system")
        .arg("--sysroot")
        .arg(&sysroot.path);
    let server = Server::spawn(tool, &base.join("serve.log"))?;
    let port = server.port()?;

    for (index, collection, name) in [(0, OS_COLLECTION_ID, OS_REF), (1, COLLECTION, BRANCH)] {
        let summary = served_summary(port, &format!("/{index}/summary"))?;
        let listed = listed_refs(&summary);
        ensure!(
            listed == vec![(Some(collection), name)],
            "/{index}/: {listed:?}"
        );
    }
    for (index, collection, name, trusted, commit) in [
        (0, OS_COLLECTION_ID, OS_REF, &key, &sysroot.v1),
        (1, COLLECTION, BRANCH, &publisher.key, &publisher.commit),
    ] {
        let theirs = OstreeRepo::init(
            &base.join(format!("client-{index}")),
            RepoMode::BareUser,
            None,
        )?;
        theirs.remote_add(
            &RemoteSpec::new("peer", &format!("{}/{index}", server.url))
                .collection_id(collection)
                .trust(trusted),
        )?;
        theirs.pull("peer", &[name])?;
        ensure!(theirs.rev_parse(&format!("peer:{name}"))? == *commit);
        theirs.fsck()?;
    }

    // The deployed commit stays served once no ref points at it; it is not listed.
    sysroot
        .repo()
        .ostree()
        .args(["refs", "--delete", &format!("{OS_REMOTE}:{OS_REF}")])
        .run()?;
    ensure!(
        served_summary(port, "/0/summary")?.refs.is_empty(),
        "the deleted ref is listed"
    );
    let (status, _) = get(port, &format!("/0/{}", archive_path(&sysroot.v1, "commit")))?;
    ensure!(status == 200, "the deployed commit is not served: {status}");
    Ok(())
}

/// `serve --system` serves the commit a Flatpak app is deployed at even when no remote ref
/// points at it any more (Flatpak's own `deploy/` branch is local, never advertised); the
/// ref is not listed.
#[test]
fn system_serves_the_flatpak_commits_deployed_even_without_a_ref() -> Result<()> {
    use ferry_tests::flatpak::{app_ref, FlatpakFixture, APP_ID, BRANCH as APP_BRANCH, REMOTE};
    let tmp = TempDir::new()?;
    let base = tmp.path();
    let fixture = FlatpakFixture::new(base)?;
    let installation = fixture.client.user_installation();
    let app = app_ref(APP_ID, APP_BRANCH)?;
    let repo = fixture.client.user_repo();
    repo.ostree()
        .args(["refs", "--delete", &format!("{REMOTE}:{app}")])
        .run()?;

    let tool = serve_tool(base)?
        .env("FLATPAK_SYSTEM_DIR", &installation)
        .arg("--system")
        .arg("--sysroot")
        .arg(base.join("no-sysroot"));
    let server = Server::spawn(tool, &base.join("serve.log"))?;
    let port = server.port()?;
    ensure!(
        served_summary(port, "/0/summary")?
            .refs
            .iter()
            .all(|r| r.name != app),
        "the deleted ref is listed"
    );
    let (status, _) = get(
        port,
        &format!("/0/{}", archive_path(&fixture.app_v1, "commit")),
    )?;
    ensure!(
        status == 200,
        "the deployed app commit is not served: {status}"
    );
    Ok(())
}

/// `curl` of `url` from the local address `from` (every 127.x address is this machine's, so
/// each stands for another computer): the status and the `Retry-After` header.
fn get_from(from: &str, url: &str) -> Result<(u16, Option<String>)> {
    let output = Tool::new("curl")
        .args([
            "--silent",
            "--show-error",
            "--output",
            "/dev/null",
            "--dump-header",
            "-",
        ])
        .args(["--interface", from, url])
        .run()?;
    let mut lines = output.stdout.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .context("no status line")?;
    let retry_after = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("retry-after"))
        .map(|(_, value)| value.trim().to_owned());
    Ok((status, retry_after))
}

/// `--max-clients 1`: while one computer pulls, another that starts a pull (`config`, the
/// summary) is asked to come back with 503 and `Retry-After`; the one pulling is still
/// served, and so is the other once the first has been quiet for a few seconds.
#[test]
fn a_server_at_its_client_limit_asks_new_computers_to_come_back() -> Result<()> {
    let tmp = TempDir::new()?;
    let base = tmp.path();
    let source = Source::create(base, RepoMode::BareUser, None)?;
    let server = source.serve(base, &["--max-clients", "1"])?;
    let commit = format!(
        "{}/{}",
        server.url,
        archive_path(&source.publisher.commit, "commit")
    );
    let first = "127.0.0.2";
    let second = "127.0.0.3";
    ensure!(get_from(first, &format!("{}/config", server.url))?.0 == 200);
    ensure!(get_from(first, &commit)?.0 == 200);
    for path in ["config", "summary"] {
        let (status, retry_after) = get_from(second, &format!("{}/{path}", server.url))?;
        ensure!(status == 503, "{path} for the second computer: {status}");
        ensure!(
            retry_after.as_deref() == Some("2"),
            "{path}: Retry-After {retry_after:?}"
        );
    }
    ensure!(get_from(first, &format!("{}/summary", server.url))?.0 == 200);
    // The first one is done; once it has been quiet for the idle time, the second gets in.
    wait_for("the second computer to be let in", PROCESS_WAIT, || {
        Ok::<_, anyhow::Error>(get_from(second, &format!("{}/config", server.url))?.0 == 200)
    })?;
    let (status, _) = get_from(first, &format!("{}/config", server.url))?;
    ensure!(
        status == 503,
        "the first came back while the second pulls: {status}"
    );
    Ok(())
}

/// The socket and service units `make install` installs pass `systemd-analyze verify`: the
/// socket on port 43381 pulls in the announcer, which stops with it; the served process is
/// socket-activated and exits when idle; both run as one dynamic user holding only
/// `CAP_DAC_READ_SEARCH`.
#[test]
fn the_serve_units_verify() -> Result<()> {
    let tmp = TempDir::new()?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let ferryctl = bins::binary("ferryctl")?;
    let mut units = Vec::new();
    for name in [
        "ferry-serve.socket",
        "ferry-serve.service",
        "ferry-serve-advertise.service",
    ] {
        let text = std::fs::read_to_string(root.join("data/systemd").join(name))?;
        let text = text.replace("/usr/bin/ferryctl", &ferryctl.display().to_string());
        let path = tmp.path().join(name);
        std::fs::write(&path, &text)?;
        units.push((path, text));
    }
    let expect = |index: usize, needles: &[&str]| -> Result<()> {
        for needle in needles {
            ensure!(
                units[index].1.lines().any(|line| line.trim() == *needle
                    || line.starts_with(&format!("ExecStart={}", ferryctl.display()))
                        && line.ends_with(needle)),
                "{} lacks {needle}",
                units[index].0.display()
            );
        }
        Ok(())
    };
    expect(
        0,
        &["ListenStream=43381", "Wants=ferry-serve-advertise.service"],
    )?;
    let hardened = [
        "DynamicUser=yes",
        "User=ferry-serve",
        "AmbientCapabilities=CAP_DAC_READ_SEARCH",
        "CapabilityBoundingSet=CAP_DAC_READ_SEARCH",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "CacheDirectory=ferry",
    ];
    expect(1, &hardened)?;
    expect(1, &["serve --system --no-advertise --idle-exit 300"])?;
    expect(2, &hardened)?;
    expect(
        2,
        &[
            "serve --system --advertise-only --port 43381",
            "BindsTo=ferry-serve.socket",
        ],
    )?;
    let output = Tool::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(units.iter().map(|(path, _)| path))
        .output()?;
    ensure!(
        output.success() && output.stderr.trim().is_empty(),
        "systemd-analyze verify:\n{}",
        output.stderr
    );
    Ok(())
}

/// The summary the server on `port` serves at `path`, required to be there.
fn served_summary(port: u16, path: &str) -> Result<Summary> {
    let (status, bytes) = get(port, path)?;
    ensure!(status == 200, "GET {path}: {status}");
    Ok(Summary::parse(&bytes)?)
}

/// The (collection ID, ref) pairs `summary` lists.
fn listed_refs(summary: &Summary) -> Vec<(Option<&str>, &str)> {
    summary
        .collection_refs()
        .map(|(id, r)| (id, r.name.as_str()))
        .collect()
}

/// Ferry pulls [`BRANCH`] from `url` into a new bare repository trusting `key`: the pull
/// must succeed and end at `commit`, in a repository `ostree fsck` accepts.
fn ferry_pulls_into_bare(base: &Path, url: &str, key: &GpgKey, commit: &str) -> Result<OstreeRepo> {
    let dest = client(&base.join("dest"), RepoMode::Bare, Some(key))?;
    pull_remote(&trust_root(base), &dest.path, url, &[BRANCH])?.require_success()?;
    ensure!(dest.read_ref(&remote_ref(BRANCH))? == Some(commit.to_owned()));
    dest.fsck()?;
    Ok(dest)
}
