//! Install history in the journal and OS rollback, on the fake sysroot, unbooted and as the
//! booted system ([`BootedSystem`]: those tests mount, so they are serial). No journald runs
//! here: the test binds the socket `FERRY_JOURNAL_SOCKET` names, receives what Ferry writes,
//! stores it as real journal files with `systemd-journal-remote`, and reads them back with
//! `ferryctl history --directory` (which runs `journalctl`).

mod install_support;

use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use ferry_engine::history::{HistoryAction, HistoryEntry, HistoryStatus, MESSAGE_ID};
use ferry_engine::schema::{InstallStatus, SourceKind};
use ferry_tests::bins;
use ferry_tests::booted::BootedSystem;
use ferry_tests::cmd::Tool;
use ferry_tests::gpg::GpgKey;
use ferry_tests::journal::{write_journal_files, JournalSink};
use ferry_tests::sysroot::{OsRepo, Sysroot, KARG, OS_NAME, OS_REF, OS_REMOTE};
use install_support::{os_from_drive, parse_events, Machine};

const SOCKET_VAR: &str = "FERRY_JOURNAL_SOCKET";

fn rollback(sysroot: &Path, sink: &JournalSink, extra: &[&str]) -> Result<Tool> {
    Ok(bins::ferryctl()?
        .env(SOCKET_VAR, &sink.path)
        .env("LC_ALL", "C.UTF-8")
        .arg("rollback")
        .arg("--sysroot")
        .arg(sysroot)
        .args(extra))
}

#[test]
fn an_os_install_is_journalled_and_rolled_back() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let base = tmp.path();
    let key = GpgKey::generate(&base.join("gnupg"), "OS Vendor <os@example.org>")?;
    let sysroot = Sysroot::create(base, &key)?;
    let v2 = sysroot.publish("2.0")?;
    let drive = sysroot.os.create_usb(&base.join("drive"))?;
    let machine = Machine::new(base, Vec::new())?;
    let sink = JournalSink::bind(&base.join("journal"))?;

    // The install writes one entry.
    let mut args = os_from_drive(&sysroot.path, &drive.root, &[]);
    args.extend(["--offline", "--yes", "--json"].map(std::ffi::OsStr::new));
    let output = machine
        .command(&args)?
        .env(SOCKET_VAR, &sink.path)
        .output()?;
    ensure!(output.success(), "install failed:\n{output:?}");
    let events = parse_events(&output.stdout)?;
    ensure!(
        events.iter().any(|e| matches!(e,
            ferry_engine::event::Event::Result(r) if r.status == InstallStatus::Installed)),
        "not installed:\n{output:?}"
    );
    let mut received = sink.receive(Duration::from_secs(5))?;
    ensure!(received.len() == 1, "{received:?}");
    let install = &received[0];
    ensure!(install.value("MESSAGE_ID").as_deref() == Some(MESSAGE_ID));
    let expect = |name: &str, value: &str| -> Result<()> {
        ensure!(
            install.value(name).as_deref() == Some(value),
            "{name} is {:?}, not {value:?}: {install:?}",
            install.value(name)
        );
        Ok(())
    };
    expect("FERRY_ACTION", "install")?;
    expect("FERRY_STATUS", "installed")?;
    expect("FERRY_TARGET", "os")?;
    expect("FERRY_REF", OS_REF)?;
    expect("FERRY_FROM_COMMIT", &sysroot.v1)?;
    expect("FERRY_TO_COMMIT", &v2)?;
    expect("FERRY_FROM_VERSION", "1.0")?;
    expect("FERRY_TO_VERSION", "2.0")?;
    let sources = install.values("FERRY_SOURCE");
    ensure!(
        sources.len() == 1 && sources[0].starts_with("drive "),
        "{sources:?}"
    );
    let message = install.value("MESSAGE").unwrap_or_default();
    ensure!(message.contains("1.0 → 2.0"), "{message}");

    // Rollback: 1.0 is the default again, 2.0 kept second.
    let output = rollback(&sysroot.path, &sink, &["--yes"])?.output()?;
    ensure!(output.success(), "rollback failed:\n{output:?}");
    let deployments = sysroot.deployments()?;
    ensure!(deployments.len() == 2, "{deployments:?}");
    ensure!(
        deployments[0].commit == sysroot.v1 && deployments[0].version.as_deref() == Some("1.0"),
        "1.0 is not the default:\n{}",
        sysroot.status()?
    );
    ensure!(deployments[1].commit == v2, "{deployments:?}");
    ensure!(
        deployments[0].origin_refspec.as_deref() == Some(&format!("{OS_REMOTE}:{OS_REF}")),
        "the origin was not kept: {deployments:?}"
    );
    let entries = std::fs::read_dir(sysroot.path.join("boot/loader/entries"))?;
    for entry in entries {
        let text = std::fs::read_to_string(entry?.path())?;
        ensure!(text.contains(KARG), "{text}");
    }
    let rolled = sink.receive(Duration::from_secs(5))?;
    ensure!(rolled.len() == 1, "{rolled:?}");
    ensure!(rolled[0].value("FERRY_ACTION").as_deref() == Some("rollback"));
    ensure!(rolled[0].value("FERRY_STATUS").as_deref() == Some("rolled_back"));
    ensure!(rolled[0].value("FERRY_TO_VERSION").as_deref() == Some("1.0"));
    received.extend(rolled);

    // Going back once more is going forward: 2.0 is the default again, 1.0 second.
    let output = rollback(&sysroot.path, &sink, &["--yes"])?.output()?;
    ensure!(output.success(), "second rollback failed:\n{output:?}");
    let deployments = sysroot.deployments()?;
    ensure!(
        deployments.len() == 2
            && deployments[0].commit == v2
            && deployments[1].commit == sysroot.v1,
        "{}",
        sysroot.status()?
    );
    sysroot.repo().fsck()?;
    let forward = sink.receive(Duration::from_secs(5))?;
    ensure!(forward.len() == 1, "{forward:?}");

    // Read back from real journal files, newest first.
    let journal_dir = base.join("journal-files");
    write_journal_files(&journal_dir, &received)?;
    let json = bins::ferryctl()?
        .args(["history", "--json", "--directory"])
        .arg(&journal_dir)
        .stdout()?;
    let history: Vec<HistoryEntry> =
        serde_json::from_str(&json).with_context(|| format!("not a history: {json}"))?;
    ensure!(history.len() == 2, "{history:?}");
    ensure!(
        history[0].action == HistoryAction::Rollback
            && history[0].status == HistoryStatus::RolledBack
            && history[0].from_version.as_deref() == Some("2.0")
            && history[0].to_version.as_deref() == Some("1.0"),
        "{history:?}"
    );
    ensure!(
        history[1].action == HistoryAction::Install
            && history[1].status == HistoryStatus::Installed
            && history[1].to_commit.as_deref() == Some(v2.as_str())
            && history[1].sources.len() == 1
            && history[1].sources[0].kind == SourceKind::Drive,
        "{history:?}"
    );
    ensure!(history[1].time >= history[0].time.saturating_sub(60) && history[1].time > 0);
    let text = bins::ferryctl()?
        .env("LC_ALL", "C.UTF-8")
        .env("FERRY_JOURNAL_DIR", &journal_dir)
        .arg("history")
        .stdout()?;
    let lines: Vec<&str> = text.lines().collect();
    ensure!(
        lines.len() == 2 && lines[0].contains("Rolled back") && lines[1].contains("1.0 → 2.0"),
        "{text}"
    );
    Ok(())
}

#[test]
fn rollback_with_one_deployment_fails_cleanly() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let key = GpgKey::generate(&tmp.path().join("gnupg"), "OS Vendor <os@example.org>")?;
    let sysroot = Sysroot::create(tmp.path(), &key)?;
    let sink = JournalSink::bind(&tmp.path().join("journal"))?;
    let before = sysroot.status()?;

    let output = rollback(&sysroot.path, &sink, &["--yes"])?.run_failing()?;
    ensure!(
        output.stderr.contains("no previous version"),
        "unclear refusal:\n{output:?}"
    );
    // Through pkexec only the running system's sysroot is acted on.
    let output = rollback(&sysroot.path, &sink, &["--yes"])?
        .env("PKEXEC_UID", "1000")
        .run_failing()?;
    ensure!(
        output
            .stderr
            .contains("is not the running system's sysroot /"),
        "{output:?}"
    );
    // Without --yes and no terminal to ask on: refused, nothing done.
    let v2 = sysroot.publish("2.0")?;
    sysroot.upgrade()?;
    let output = rollback(&sysroot.path, &sink, &[])?.run_failing()?;
    ensure!(output.stderr.contains("--yes"), "{output:?}");
    ensure!(sysroot.default_deployment()?.commit == v2);
    ensure!(before != sysroot.status()?);
    ensure!(
        sink.receive(Duration::from_millis(200))?.is_empty(),
        "a refused rollback wrote to the journal"
    );
    Ok(())
}

/// A sysroot whose trees can be a running root, with 1.0 and then 2.0 deployed (2.0 the
/// default), and the journal sink `ferryctl` inside writes to.
struct BootedFixture {
    sysroot: Sysroot,
    v2: String,
    sink: JournalSink,
}

impl BootedFixture {
    fn create(base: &Path) -> Result<BootedFixture> {
        let key = GpgKey::generate(&base.join("gnupg"), "OS Vendor <os@example.org>")?;
        let os = OsRepo::create(base, &key)?;
        os.add_root_layout()?;
        let sysroot = Sysroot::create_from(base, os)?;
        let v2 = sysroot.publish("2.0")?;
        sysroot.upgrade()?;
        let sink = JournalSink::bind(&base.join("journal"))?;
        Ok(BootedFixture { sysroot, v2, sink })
    }

    /// The default deployment (2.0) booted; the sink's directory at `/tmp/journal`.
    fn boot_default(&self, base: &Path) -> Result<BootedSystem> {
        let journal_dir = self
            .sink
            .path
            .parent()
            .context("socket without a directory")?;
        Ok(
            BootedSystem::new(base, &self.sysroot, &self.sysroot.default_deployment()?)?
                .bind(journal_dir, "journal"),
        )
    }

    /// Publishes `version`, pulls it and stages it inside (`ostree admin deploy --stage`).
    fn stage(&self, system: &BootedSystem, version: &str) -> Result<String> {
        let commit = self.sysroot.publish(version)?;
        self.sysroot.repo().pull(OS_REMOTE, &[OS_REF])?;
        system
            .admin("deploy")?
            .args(["--stage", &format!("--os={OS_NAME}")])
            .arg(format!("{OS_REMOTE}:{OS_REF}"))
            .run()?;
        let inside = system.deployments()?;
        ensure!(
            inside[0].commit == commit && inside[0].flags == ["(staged)"],
            "{version} is not staged: {inside:?}"
        );
        ensure!(system.run_dir().join("ostree/staged-deployment").is_file());
        Ok(commit)
    }

    /// `ferryctl rollback --yes` inside, on the booted sysroot `/`; its output.
    fn rollback(&self, system: &BootedSystem) -> Result<String> {
        let socket = format!(
            "/tmp/journal/{}",
            self.sink
                .path
                .file_name()
                .context("socket without a name")?
                .to_string_lossy()
        );
        let output = system
            .ferryctl(&[("FERRY_JOURNAL_SOCKET", &socket)])?
            .args(["rollback", "--yes"])
            .output()?;
        ensure!(output.success(), "rollback failed:\n{output:?}");
        Ok(output.stdout)
    }

    /// The one journal entry the last rollback wrote: a rollback to `to` from `from`.
    fn expect_journalled(&self, from: &str, to: &str) -> Result<()> {
        let entries = self.sink.receive(Duration::from_secs(5))?;
        ensure!(entries.len() == 1, "{entries:?}");
        let entry = &entries[0];
        for (name, value) in [
            ("FERRY_ACTION", "rollback"),
            ("FERRY_STATUS", "rolled_back"),
            ("FERRY_INSTALLATION", "/"),
            ("FERRY_FROM_COMMIT", from),
            ("FERRY_TO_COMMIT", to),
        ] {
            ensure!(
                entry.value(name).as_deref() == Some(value),
                "{name} is {:?}, not {value:?}: {entry:?}",
                entry.value(name)
            );
        }
        Ok(())
    }
}

/// What `ferryctl rollback` prints when `version` (`commit`) is the default again.
fn says_default(stdout: &str, version: &str, commit: &str) -> bool {
    stdout.contains(&format!(
        "{version} ({}) is the default deployment of / again",
        &commit[..10]
    ))
}

#[test]
fn serial_on_a_booted_system_rollback_drops_the_staged_update() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let base = tmp.path();
    let fixture = BootedFixture::create(base)?;
    let (v1, v2) = (fixture.sysroot.v1.clone(), fixture.v2.clone());
    let system = fixture.boot_default(base)?;
    let inside = system.deployments()?;
    ensure!(
        inside.len() == 2 && inside[0].booted && inside[0].commit == v2 && !inside[1].booted,
        "2.0 is not the booted default: {inside:?}"
    );
    let booted = inside[0].clone();
    let v3 = fixture.stage(&system, "3.0")?;

    let stdout = fixture.rollback(&system)?;
    ensure!(says_default(&stdout, "2.0", &v2), "{stdout}");
    ensure!(!system.run_dir().join("ostree/staged-deployment").exists());
    let inside = system.deployments()?;
    ensure!(
        inside.len() == 2
            && inside[0] == booted
            && inside[1].commit == v1
            && !inside.iter().any(|d| d.commit == v3),
        "{inside:?}"
    );
    let outside = fixture.sysroot.deployments()?;
    ensure!(
        outside.len() == 2 && outside[0].commit == v2 && outside[1].commit == v1,
        "{outside:?}"
    );
    ensure!(fixture.sysroot.deployment_dir(&booted).is_dir());
    fixture.expect_journalled(&v3, &v2)?;
    fixture.sysroot.repo().fsck()?;
    Ok(())
}

#[test]
fn serial_on_a_booted_system_rollback_redeploys_and_keeps_the_booted_deployment() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let base = tmp.path();
    let fixture = BootedFixture::create(base)?;
    let (v1, v2) = (fixture.sysroot.v1.clone(), fixture.v2.clone());
    let system = fixture.boot_default(base)?;
    let booted = system.deployments()?[0].clone();
    ensure!(booted.booted && booted.commit == v2, "{booted:?}");

    // 1.0 becomes the default, as a new deployment whose old copy is gone; 2.0 runs on.
    let stdout = fixture.rollback(&system)?;
    ensure!(says_default(&stdout, "1.0", &v1), "{stdout}");
    let inside = system.deployments()?;
    ensure!(
        inside.len() == 2 && inside[0].commit == v1 && !inside[0].booted && inside[1] == booted,
        "{inside:?}"
    );
    ensure!(
        inside[0].serial == 1,
        "the old copy of 1.0 was kept: {inside:?}"
    );
    fixture.expect_journalled(&v2, &v1)?;

    // An update staged now is dropped, and what boots next is what was the default before
    // it was staged: 1.0, not the running 2.0.
    let v3 = fixture.stage(&system, "3.0")?;
    let stdout = fixture.rollback(&system)?;
    let inside = system.deployments()?;
    ensure!(
        inside.len() == 2 && inside[0].commit == v1 && inside[1] == booted,
        "{inside:?}"
    );
    ensure!(
        says_default(&stdout, "1.0", &v1),
        "1.0 is the default, but ferryctl says: {stdout}"
    );
    fixture.expect_journalled(&v3, &v1)?;

    // Back to the running 2.0: it cannot be undeployed, so it stays beside its new copy.
    let stdout = fixture.rollback(&system)?;
    ensure!(says_default(&stdout, "2.0", &v2), "{stdout}");
    let inside = system.deployments()?;
    ensure!(
        inside.len() == 3
            && inside[0].commit == v2
            && !inside[0].booted
            && inside[1].commit == v1
            && inside[2] == booted,
        "{inside:?}"
    );
    ensure!(fixture.sysroot.deployment_dir(&booted).is_dir());
    fixture.expect_journalled(&v1, &v2)?;
    fixture.sysroot.repo().fsck()?;
    Ok(())
}
