//! Pulling from an archive repository served over HTTP on loopback, alone and beside a drive:
//! drives are read first, a peer that lacks an object (404) stays in use, one that refuses
//! connections is dropped, and everything it serves is verified like a drive's objects.
//! The peer is [`Peer`], a server with a thread per connection like real peers.

mod pull_support;

use std::ffi::OsStr;
use std::fs;

use anyhow::{ensure, Result};
use ferry_tests::compare::{assert_trees_equal, CompareOptions};
use ferry_tests::ostree::{CheckoutMode, CommitSpec, ObjectKind, RepoMode};
use ferry_tests::tamper;
use ferry_tests::tree::{standard, TreeOptions};
use pull_support::peer::Peer;
use pull_support::{
    assert_refused, client, pull, pull_remote, remote_ref, trust_root, Publisher, BRANCH,
};
use tempfile::TempDir;

#[test]
fn pulls_from_a_peer_over_http() -> Result<()> {
    let tmp = TempDir::new()?;
    let base = tmp.path();
    let publisher = Publisher::new(&base.join("publisher"), TreeOptions::full())?;
    let server = Peer::serve(&publisher.repo.path)?;
    let dest = client(&base.join("dest"), RepoMode::Bare, Some(&publisher.key))?;
    let run = pull_remote(
        &trust_root(base),
        &dest.path,
        format!("{}/", server.url),
        &[BRANCH],
    )?
    .require_success()?;
    ensure!(run.results().len() == 1);
    dest.fsck()?;
    ensure!(dest.read_ref(&remote_ref(BRANCH))? == Some(publisher.commit.clone()));
    let requests = server.requests();
    for wanted in ["/config", "/summary", ".commit", ".dirtree", ".filez"] {
        ensure!(
            requests.iter().any(|r| r.ends_with(wanted) || r == wanted),
            "{wanted} never requested: {requests:?}"
        );
    }
    let (theirs, ours) = (base.join("co-source"), base.join("co-dest"));
    publisher
        .repo
        .checkout(&publisher.commit, &theirs, CheckoutMode::Plain)?;
    dest.checkout(&publisher.commit, &ours, CheckoutMode::Plain)?;
    assert_trees_equal(&theirs, &ours, &CompareOptions::everything())?;
    Ok(())
}

/// A drive missing one object and a peer holding everything: the drive is read first, the
/// peer only for what the drive lacks. A peer refusing connections is dropped with a warning.
#[test]
fn drive_first_then_peer_for_what_the_drive_lacks() -> Result<()> {
    let tmp = TempDir::new()?;
    let base = tmp.path();
    let publisher = Publisher::new(&base.join("publisher"), TreeOptions::full())?;
    let drive = base.join("drive");
    let usb = publisher
        .repo
        .create_usb(&drive, &[(pull_support::COLLECTION, BRANCH)])?;
    let lacking = publisher
        .repo
        .content_checksum(&publisher.commit, &format!("/{}", standard::HELLO))?;
    tamper::remove_object(&usb.repo, &lacking, ObjectKind::Content)?;
    let server = Peer::serve(&publisher.repo.path)?;
    let dest = client(&base.join("dest"), RepoMode::BareUser, Some(&publisher.key))?;
    let run = pull(
        &trust_root(base),
        &dest.path,
        &[
            OsStr::new(&server.url),
            drive.as_os_str(),
            OsStr::new("http://127.0.0.1:1/refused"),
        ],
        &["--remote", "origin"],
        &[BRANCH],
    )?
    .require_success()?;
    dest.fsck()?;
    ensure!(dest.read_ref(&remote_ref(BRANCH))? == Some(publisher.commit.clone()));
    let fetched: Vec<String> = server
        .requests()
        .into_iter()
        .filter(|r| r.ends_with(".filez"))
        .collect();
    let expected = format!("/objects/{}/{}.filez", &lacking[..2], &lacking[2..]);
    ensure!(
        fetched == vec![expected],
        "the peer was asked for {fetched:?}"
    );
    ensure!(
        run.events.iter().any(|event| matches!(event,
            ferry_engine::event::Event::Message { text, .. } if text.contains("127.0.0.1:1"))),
        "no warning about the refused peer: {:?}",
        run.events
    );
    Ok(())
}

#[test]
fn tampered_object_from_a_peer_is_refused() -> Result<()> {
    let tmp = TempDir::new()?;
    let base = tmp.path();
    let publisher = Publisher::new(&base.join("publisher"), TreeOptions::full())?;
    tamper::tamper_content(
        &publisher.repo,
        &publisher.commit,
        &format!("/{}", standard::HELLO),
        b"hello",
        b"HACKD",
    )?;
    let server = Peer::serve(&publisher.repo.path)?;
    let dest = client(&base.join("dest"), RepoMode::BareUser, Some(&publisher.key))?;
    let run = pull_remote(&trust_root(base), &dest.path, &server.url, &[BRANCH])?;
    let object = publisher
        .repo
        .content_checksum(&publisher.commit, &format!("/{}", standard::HELLO))?;
    assert_refused(
        &run,
        &dest,
        &remote_ref(BRANCH),
        &None,
        &[&object, standard::HELLO, &server.url, "tampered"],
    )?;

    // A peer that serves nothing at all: no usable source.
    let empty = base.join("empty");
    fs::create_dir_all(&empty)?;
    let nothing = Peer::serve(&empty)?;
    let run = pull_remote(&trust_root(base), &dest.path, &nothing.url, &[BRANCH])?;
    assert_refused(
        &run,
        &dest,
        &remote_ref(BRANCH),
        &None,
        &["no usable source", "unavailable"],
    )
}

/// The listing and the pull check commits against the same keys: a key found only in the
/// global keyring under `FERRY_TRUST_ROOT` makes `ferryctl list --repo` offer the update that
/// `ferryctl pull` then accepts. (The listing once used the machine's default roots.)
#[test]
fn listing_and_pull_trust_the_same_keys() -> Result<()> {
    let tmp = TempDir::new()?;
    let base = tmp.path();
    let publisher = Publisher::new(&base.join("publisher"), TreeOptions::full())?;
    let server = Peer::serve(&publisher.repo.path)?;
    // The remote verifies signatures but carries no key: only the global keyring has it.
    let dest = client(&base.join("dest"), RepoMode::BareUser, None)?;
    dest.ostree()
        .args(["config", "set", "remote \"origin\".gpg-verify", "true"])
        .run()?;
    let keyring = trust_root(base).join("usr/share/ostree/trusted.gpg.d");
    fs::create_dir_all(&keyring)?;
    publisher
        .key
        .export_public(&keyring.join("publisher.gpg"), false)?;
    // Version 1.0 installed; 2.0 published.
    pull_remote(&trust_root(base), &dest.path, &server.url, &[BRANCH])?.require_success()?;
    let second = publisher.repo.commit(
        &CommitSpec::new(BRANCH, &publisher.tree.root)
            .subject("second")
            .version("2.0")
            .sign(&publisher.key),
    )?;
    publisher.repo.update_summary(Some(&publisher.key))?;

    let listed = pull_support::ferryctl(&trust_root(base))?
        .args(["list", "--json", "--offline", "--repo"])
        .arg(&dest.path)
        .arg("--from")
        .arg(&server.url)
        .stdout()?;
    let listing: ferry_engine::schema::UpdateList = serde_json::from_str(&listed)?;
    ensure!(
        listing
            .updates
            .iter()
            .any(|update| update.ref_name == BRANCH && update.signed),
        "the listing does not offer the signed update: {listed}"
    );
    pull_remote(&trust_root(base), &dest.path, &server.url, &[BRANCH])?.require_success()?;
    ensure!(dest.read_ref(&remote_ref(BRANCH))? == Some(second));
    Ok(())
}

/// A plain-HTTP source is opened without the system's certificates, so it may not move the
/// pull to https://: a redirect there is refused with a message that says what to do.
#[test]
fn http_source_redirecting_to_https_is_refused_with_the_reason() -> Result<()> {
    use std::io::{Read, Write};
    let tmp = TempDir::new()?;
    let base = tmp.path();
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    // Every request is answered with a redirect to the same path over https://.
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut request = [0u8; 4096];
            let read = stream.read(&mut request).unwrap_or(0);
            let head = String::from_utf8_lossy(&request[..read]);
            let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
            let _ = write!(
                stream,
                "HTTP/1.1 301 Moved Permanently\r\nLocation: https://127.0.0.1:1{path}\r\n\
                 Content-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    let dest = client(&base.join("dest"), RepoMode::Bare, None)?;
    let run = pull_remote(
        &trust_root(base),
        &dest.path,
        format!("http://127.0.0.1:{port}/repo/"),
        &[BRANCH],
    )?;
    ensure!(!run.success(), "a pull with no usable source succeeded");
    let said = format!("{:?}\n{:?}", run.events, run.output);
    ensure!(
        said.contains("redirects to https://; use that address instead"),
        "the reason is not given:\n{said}"
    );
    ensure!(dest.read_ref(&remote_ref(BRANCH))?.is_none());
    Ok(())
}
