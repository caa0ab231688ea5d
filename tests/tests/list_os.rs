//! `ferryctl list --sysroot` for the operating system, against a fake sysroot deployed with
//! the real `ostree admin`, drives written by `ostree create-usb`, and an upstream server on
//! loopback.

mod list_support;

use std::ffi::OsStr;

use anyhow::{ensure, Result};
use ferry_engine::schema::{ProblemKind, SourceKind, TargetKind};
use ferry_tests::gpg::GpgKey;
use ferry_tests::http::StaticServer;
use ferry_tests::ostree::{CommitSpec, OstreeRepo, RepoMode};
use ferry_tests::sysroot::{OsRepo, Sysroot, OS_COLLECTION_ID, OS_REF, OS_REMOTE};
use list_support::{location, problem, sources, update, Machine};
use tempfile::TempDir;

fn os_scene(base: &std::path::Path) -> Result<Sysroot> {
    let key = GpgKey::generate(&base.join("gnupg"), "OS Vendor <os@example.org>")?;
    Ok(Sysroot::create(base, &key)?)
}

#[test]
fn a_recorded_drive_offers_the_next_os_version() -> Result<()> {
    let tmp = TempDir::new()?;
    let sysroot = os_scene(tmp.path())?;
    let v2 = sysroot.publish("2.0")?;
    let drive = sysroot.os.create_usb(&tmp.path().join("stick"))?;
    let machine = Machine::new(tmp.path(), Vec::new())?;
    // The hook's record is all `list` needs to find the drive.
    machine.record_drive("stick-uuid", &drive.root, "KINGSTON")?;

    let list = machine.list(&[OsStr::new("--sysroot"), sysroot.path.as_os_str()])?;
    ensure!(list.problems.is_empty(), "{:#?}", list.problems);
    ensure!(list.updates.len() == 1, "{:#?}", list.updates);
    let os = update(&list, OS_REF)?;
    ensure!(os.target == TargetKind::Os);
    ensure!(os.remote == OS_REMOTE);
    ensure!(os.collection_id.as_deref() == Some(OS_COLLECTION_ID));
    ensure!(os.current_commit.map(|c| c.to_hex()) == Some(sysroot.v1.clone()));
    ensure!(os.commit.to_hex() == v2);
    ensure!(os.current_version.as_deref() == Some("1.0"));
    ensure!(os.version.as_deref() == Some("2.0"));
    ensure!(os.subject == "ExampleOS 2.0");
    ensure!(os.signed);
    ensure!(sources(os) == vec![location(&drive.repo.path)?]);
    ensure!(os.sources[0].label.as_deref() == Some("KINGSTON"));
    // v2 rewrites three files; the commit, its new directories and those files are fetched.
    ensure!(
        os.download_size > 0 && os.download_size < 16 * 1024,
        "download size {}",
        os.download_size
    );

    let text = machine.list_text(&[OsStr::new("--sysroot"), sysroot.path.as_os_str()])?;
    ensure!(
        text.contains(OS_REF) && text.contains("1.0 → 2.0"),
        "{text}"
    );
    ensure!(text.contains("KINGSTON"), "{text}");
    sysroot.release_immutable()?;
    Ok(())
}

#[test]
fn of_two_drives_only_the_one_with_the_newest_commit_is_a_source() -> Result<()> {
    let tmp = TempDir::new()?;
    let sysroot = os_scene(tmp.path())?;
    sysroot.publish("2.0")?;
    let old = sysroot.os.create_usb(&tmp.path().join("old"))?;
    let v3 = sysroot.publish("3.0")?;
    let new = sysroot.os.create_usb(&tmp.path().join("new"))?;
    let copy = sysroot.os.create_usb(&tmp.path().join("copy"))?;
    let machine = Machine::new(tmp.path(), Vec::new())?;

    let list = machine.list(&[
        OsStr::new("--sysroot"),
        sysroot.path.as_os_str(),
        OsStr::new("--from"),
        old.root.as_os_str(),
        OsStr::new("--from"),
        new.root.as_os_str(),
    ])?;
    ensure!(list.problems.is_empty(), "{:#?}", list.problems);
    let os = update(&list, OS_REF)?;
    ensure!(os.commit.to_hex() == v3);
    ensure!(os.version.as_deref() == Some("3.0"));
    ensure!(
        sources(os) == vec![location(&new.repo.path)?],
        "{:?}",
        sources(os)
    );

    let list = machine.list(&[
        OsStr::new("--sysroot"),
        sysroot.path.as_os_str(),
        OsStr::new("--from"),
        new.root.as_os_str(),
        OsStr::new("--from"),
        old.root.as_os_str(),
        OsStr::new("--from"),
        copy.root.as_os_str(),
    ])?;
    let os = update(&list, OS_REF)?;
    ensure!(os.commit.to_hex() == v3);
    // Both v3 drives, in the order of their summaries' freshness; never the old one.
    let mut found = sources(os);
    found.sort();
    let mut expected = vec![location(&new.repo.path)?, location(&copy.repo.path)?];
    expected.sort();
    ensure!(found == expected, "{found:?}");
    sysroot.release_immutable()?;
    Ok(())
}

#[test]
fn upstream_is_used_when_newer_and_a_drive_is_preferred_on_a_tie() -> Result<()> {
    // Online listings also browse for computers nearby; keep that multicast off the host's links.
    ferry_tests::http::isolate_network()?;
    let tmp = TempDir::new()?;
    let sysroot = os_scene(tmp.path())?;
    let v3 = sysroot.publish("3.0")?;
    let drive = sysroot.os.create_usb(&tmp.path().join("stick"))?;
    let server = StaticServer::serve(&sysroot.os.repo.path)?;
    sysroot
        .repo()
        .config_set(&format!("remote \"{OS_REMOTE}\".url"), &server.url)?;
    let machine = Machine::new(tmp.path(), Vec::new())?;
    let list_args = [
        OsStr::new("--sysroot"),
        sysroot.path.as_os_str(),
        OsStr::new("--from"),
        drive.root.as_os_str(),
    ];

    // Both hold v3: the drive comes first, upstream is kept as a fallback.
    let list = machine.list(&list_args)?;
    ensure!(list.problems.is_empty(), "{:#?}", list.problems);
    let os = update(&list, OS_REF)?;
    ensure!(os.commit.to_hex() == v3);
    ensure!(
        sources(os) == vec![location(&drive.repo.path)?, server.url.clone()],
        "{:?}",
        sources(os)
    );
    ensure!(os.sources[1].kind == SourceKind::Upstream);
    ensure!(
        server.requests().iter().any(|path| path == "/summary"),
        "upstream's summary was not fetched: {:?}",
        server.requests()
    );

    // Upstream moves on to v4: it wins, and the drive no longer holds the update.
    let v4 = sysroot.publish("4.0")?;
    let list = machine.list(&list_args)?;
    let os = update(&list, OS_REF)?;
    ensure!(
        os.commit.to_hex() == v4,
        "upstream's v4 was not chosen: {:#?} {:#?} {:?}",
        os.sources,
        list.problems,
        server.requests()
    );
    ensure!(sources(os) == vec![server.url.clone()], "{:?}", sources(os));

    // Offline, the drive's v3 is what there is, and upstream is not asked.
    server.clear_requests();
    let list = machine.list_offline(&list_args)?;
    let os = update(&list, OS_REF)?;
    ensure!(os.commit.to_hex() == v3);
    ensure!(sources(os) == vec![location(&drive.repo.path)?]);
    ensure!(server.requests().is_empty(), "{:?}", server.requests());

    // A server that is gone is a problem, not a failure.
    drop(server);
    let list = machine.list(&list_args)?;
    ensure!(update(&list, OS_REF)?.commit.to_hex() == v3);
    ensure!(
        list.problems
            .iter()
            .any(|p| p.kind == ProblemKind::Unavailable),
        "{:#?}",
        list.problems
    );
    sysroot.release_immutable()?;
    Ok(())
}

#[test]
fn rejected_candidates_are_listed_as_problems_with_their_reason() -> Result<()> {
    let tmp = TempDir::new()?;
    let sysroot = os_scene(tmp.path())?;

    // Signed by a key the machine does not trust, under the right collection and ref.
    let stranger = GpgKey::generate(
        &tmp.path().join("stranger-gnupg"),
        "Mallory <m@example.org>",
    )?;
    let forged = OsRepo::create(&tmp.path().join("forger"), &stranger)?;
    forged.commit_version("2.0")?;
    let untrusted = forged.create_usb(&tmp.path().join("untrusted"))?;

    // A collection no remote on this machine has.
    let other = OstreeRepo::init(
        &tmp.path().join("other-repo"),
        RepoMode::Archive,
        Some("org.example.Unknown"),
    )?;
    other.commit(
        &CommitSpec::new("other/x86_64/stable", &sysroot.os.data)
            .version("1.0")
            .sign(&sysroot.os.key),
    )?;
    let unknown = other.create_usb(
        &tmp.path().join("unknown"),
        &[("org.example.Unknown", "other/x86_64/stable")],
    )?;

    // A drive holding only part of v2.
    let v2 = sysroot.publish("2.0")?;
    let partial = sysroot.os.create_usb(&tmp.path().join("partial"))?;
    std::fs::create_dir_all(partial.repo.path.join("state"))?;
    std::fs::write(
        partial.repo.path.join(format!("state/{v2}.commitpartial")),
        "",
    )?;

    // An older build than what is deployed.
    sysroot
        .os
        .commit_version_with("0.9", |spec| spec.timestamp("2001-01-01T00:00:00Z"))?;
    let older = sysroot.os.create_usb(&tmp.path().join("older"))?;

    let machine = Machine::new(tmp.path(), Vec::new())?;
    let mut args = vec![OsStr::new("--sysroot"), sysroot.path.as_os_str()];
    for drive in [&untrusted, &unknown, &partial, &older] {
        args.push(OsStr::new("--from"));
        args.push(drive.root.as_os_str());
    }
    let list = machine.list(&args)?;
    ensure!(list.updates.is_empty(), "{:#?}", list.updates);

    let refused = problem(
        &list,
        ProblemKind::UntrustedSignature,
        &location(&untrusted.repo.path)?,
    )?;
    ensure!(refused.ref_name.as_deref() == Some(OS_REF));
    ensure!(
        refused.reason.contains(&stranger.key_id) || refused.reason.contains(&stranger.fingerprint),
        "the reason names the key: {}",
        refused.reason
    );
    ensure!(refused.reason.contains(OS_REMOTE), "{}", refused.reason);

    let unknown_problem = problem(
        &list,
        ProblemKind::UnknownCollection,
        &location(&unknown.repo.path)?,
    )?;
    ensure!(
        unknown_problem
            .reason
            .contains("has collection ID org.example.Unknown: add the remote first"),
        "{}",
        unknown_problem.reason
    );

    let partial_problem = problem(
        &list,
        ProblemKind::PartialCommit,
        &location(&partial.repo.path)?,
    )?;
    ensure!(partial_problem.ref_name.as_deref() == Some(OS_REF));
    ensure!(
        partial_problem.reason.contains(&v2),
        "{}",
        partial_problem.reason
    );

    let older_problem = problem(&list, ProblemKind::Downgrade, &location(&older.repo.path)?)?;
    ensure!(
        older_problem
            .reason
            .contains("older than the installed version"),
        "{}",
        older_problem.reason
    );
    ensure!(
        older_problem.reason.contains("2001-01-01"),
        "{}",
        older_problem.reason
    );
    sysroot.release_immutable()?;
    Ok(())
}
