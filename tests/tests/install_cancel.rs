//! `ferryctl install --cancel-on-stdin-eof`: closing standard input cancels the installation
//! the way SIGTERM does. This is how the desktop app stops a `ferryctl` it started as root
//! through pkexec, which it cannot signal.

mod install_support;

use std::fs::File;
use std::io::BufReader;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use ferry_engine::event::{parse_line, Event};
use ferry_engine::schema::InstallStatus;
use ferry_engine::schema::JsonLines;
use ferry_tests::generate::{generate_tree, Bucket, GenSpec};
use ferry_tests::gpg::GpgKey;
use ferry_tests::sysroot::{Sysroot, OS_REF};
use install_support::{os_from_drive, Machine};

/// How long the whole installation may take before the test gives up on it.
const DEADLINE: Duration = Duration::from_secs(300);

/// About 20 MB in 3,000 files added to the OS: a pull long enough to be cancelled midway.
fn payload() -> GenSpec {
    GenSpec {
        buckets: vec![Bucket {
            count: 3000,
            min: 1024,
            max: 12 * 1024,
        }],
        files_per_dir: 100,
        seed: 11,
    }
}

#[test]
fn closing_stdin_cancels_and_leaves_the_sysroot_intact() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let key = GpgKey::generate(&tmp.path().join("gnupg"), "OS Vendor <os@example.org>")?;
    let sysroot = Sysroot::create(tmp.path(), &key)?;
    generate_tree(&sysroot.os.data.join("usr/share/payload"), &payload())?;
    sysroot.publish("2.0")?;
    let drive = sysroot.os.create_usb(&tmp.path().join("drive"))?;
    let machine = Machine::new(tmp.path(), Vec::new())?;
    let before = sysroot.deployments()?;
    ensure!(before.len() == 1, "{before:?}");

    let stderr_path = tmp.path().join("ferryctl.stderr");
    let mut command = machine
        .command(&os_from_drive(
            &sysroot.path,
            &drive.root,
            &["--offline", "--yes", "--json", "--cancel-on-stdin-eof"],
        ))?
        .into_command();
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(File::create(&stderr_path)?);
    let mut child = command.spawn().context("cannot start ferryctl")?;
    let run = follow(&mut child);
    let status = child.wait()?;
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let (events, closed_after_progress) = run.with_context(|| format!("stderr:\n{stderr}"))?;
    let report = || format!("exit {status}\nevents: {events:#?}\nstderr:\n{stderr}");
    ensure!(
        closed_after_progress,
        "the install ended before any progress:\n{}",
        report()
    );

    // Exit code 1 and a `cancelled` result, as on SIGTERM.
    ensure!(status.code() == Some(1), "{}", report());
    let results: Vec<_> = events
        .iter()
        .filter_map(|event| match event {
            Event::Result(result) => Some(result),
            _ => None,
        })
        .collect();
    ensure!(results.len() == 1, "{}", report());
    ensure!(results[0].ref_name == OS_REF, "{}", report());
    ensure!(
        results[0].status == InstallStatus::Cancelled,
        "expected a cancelled result:\n{}",
        report()
    );
    let finished = events.iter().rev().find_map(|event| match event {
        Event::Finished { ok } => Some(*ok),
        _ => None,
    });
    ensure!(finished == Some(false), "{}", report());

    // Nothing was deployed, and the sysroot's repository is consistent.
    let after = sysroot.deployments()?;
    ensure!(
        after == before,
        "deployments changed: {before:?} -> {after:?}"
    );
    ensure!(after[0].commit == sysroot.v1, "{after:?}");
    sysroot.repo().fsck()?;
    Ok(())
}

/// Reads `child`'s events; after the first progress event, closes its stdin. Returns every
/// event and whether stdin was closed that way. Kills the child past [`DEADLINE`].
fn follow(child: &mut Child) -> Result<(Vec<Event>, bool)> {
    let stdout = child.stdout.take().context("stdout is not piped")?;
    let mut stdin = Some(child.stdin.take().context("stdin is not piped")?);
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in JsonLines::new(BufReader::new(stdout)) {
            if sender.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + DEADLINE;
    let mut events = Vec::new();
    let mut closed_after_progress = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = match receiver.recv_timeout(left) {
            Ok(line) => line.context("cannot read ferryctl's output")?,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                bail!("ferryctl did not finish within {DEADLINE:?}; events: {events:#?}");
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let event = parse_line(&line).with_context(|| format!("bad event line: {line}"))?;
        if matches!(event, Event::Progress { .. }) && stdin.is_some() {
            // Dropping the only handle closes the pipe: ferryctl reads end-of-file.
            drop(stdin.take());
            closed_after_progress = true;
        }
        events.push(event);
    }
    Ok((events, closed_after_progress))
}
