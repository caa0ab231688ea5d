//! `ferryctl install` of an OS update from a drive into a fake sysroot, deployed by the real
//! `ostree admin deploy`.

mod install_support;

use std::path::Path;

use anyhow::{ensure, Result};
use ferry_engine::event::{Event, Phase};
use ferry_engine::schema::InstallStatus;
use ferry_tests::cmd::Tool;
use ferry_tests::compare::{assert_trees_equal, CompareOptions};
use ferry_tests::gpg::GpgKey;
use ferry_tests::ostree::{CheckoutMode, UsbDrive};
use ferry_tests::sysroot::{Sysroot, KARG, OS_REF, VERSION_FILE};
use install_support::{os_from_drive, Machine};

/// A machine at OS 1.0 (its sysroot under `base`) and a drive carrying the signed 2.0, whose
/// commit is returned.
fn os_1_0_with_2_0_on_a_drive(base: &Path) -> Result<(Sysroot, String, UsbDrive, Machine)> {
    let key = GpgKey::generate(&base.join("gnupg"), "OS Vendor <os@example.org>")?;
    let sysroot = Sysroot::create(base, &key)?;
    let v2 = sysroot.publish("2.0")?;
    let drive = sysroot.os.create_usb(&base.join("drive"))?;
    let machine = Machine::new(base, Vec::new())?;
    Ok((sysroot, v2, drive, machine))
}

#[test]
fn os_update_from_a_drive_becomes_the_default_deployment() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (sysroot, v2, drive, machine) = os_1_0_with_2_0_on_a_drive(tmp.path())?;

    let run = machine.install(&os_from_drive(&sysroot.path, &drive.root, &[]))?;
    ensure!(run.success(), "install failed:\n{run}");
    let result = run.expect(OS_REF, InstallStatus::Installed)?;
    // The test's sysroot is not the one this machine runs from: deployed for its next
    // boot, and this machine needs no restart for it.
    ensure!(
        !result.restart_required
            && result
                .message
                .as_deref()
                .is_some_and(|m| m.contains("next boot of this sysroot")),
        "an OS update of another sysroot asks this machine to restart: {result:?}"
    );
    ensure!(run.finished() == Some(true), "no successful finish:\n{run}");
    ensure!(
        run.events.iter().any(|e| matches!(
            e,
            Event::Phase {
                phase: Phase::Deploy,
                ..
            }
        )),
        "no deploy phase:\n{run}"
    );
    ensure!(
        run.events
            .iter()
            .any(|e| matches!(e, Event::Plan { updates, .. } if updates.len() == 1)),
        "no plan of one update:\n{run}"
    );

    // ostree admin itself shows v2 first, v1 kept as the second deployment.
    let deployments = sysroot.deployments()?;
    ensure!(deployments.len() == 2, "{deployments:?}");
    ensure!(
        deployments[0].commit == v2,
        "default is not v2: {deployments:?}"
    );
    ensure!(
        deployments[0].version.as_deref() == Some("2.0"),
        "{deployments:?}"
    );
    ensure!(deployments[1].commit == sysroot.v1, "{deployments:?}");
    ensure!(
        deployments[0].origin_refspec.as_deref() == Some(&format!("exampleos:{OS_REF}")),
        "{deployments:?}"
    );
    // The kernel arguments were kept.
    let entries = std::fs::read_dir(sysroot.path.join("boot/loader/entries"))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<Vec<_>>>()?;
    for entry in &entries {
        let text = std::fs::read_to_string(entry)?;
        ensure!(
            text.contains(KARG),
            "{} lost {KARG}:\n{text}",
            entry.display()
        );
    }

    // Its files are the v2 tree.
    let checkout = tmp.path().join("v2-checkout");
    sysroot
        .os
        .repo
        .checkout(&v2, &checkout, CheckoutMode::User)?;
    let deployed = sysroot.deployment_dir(&deployments[0]);
    let options = CompareOptions::content_and_modes();
    for dir in ["usr/bin", "usr/lib", "usr/share"] {
        assert_trees_equal(&checkout.join(dir), &deployed.join(dir), &options)?;
    }
    assert_trees_equal(&checkout.join("usr/etc"), &deployed.join("etc"), &options)?;
    ensure!(std::fs::read_to_string(deployed.join(VERSION_FILE))? == "2.0\n");

    // Nothing left to do: a clear "up to date", exit 0.
    let again = machine.install(&os_from_drive(&sysroot.path, &drive.root, &[]))?;
    ensure!(again.success(), "second install failed:\n{again}");
    ensure!(
        again.results().is_empty(),
        "nothing should be installed twice:\n{again}"
    );
    let text = machine
        .command(&os_from_drive(
            &sysroot.path,
            &drive.root,
            &["--offline", "--yes"],
        ))?
        .stdout()?;
    ensure!(text.contains("up to date"), "{text}");
    ensure!(sysroot.deployments()?.len() == 2);
    sysroot.repo().fsck()?;
    Ok(())
}

#[test]
fn refuses_without_a_terminal_or_yes() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (sysroot, _, drive, machine) = os_1_0_with_2_0_on_a_drive(tmp.path())?;
    let out = machine
        .command(&os_from_drive(&sysroot.path, &drive.root, &["--offline"]))?
        .output()?;
    ensure!(
        !out.success(),
        "installed without confirmation: {}",
        out.stdout
    );
    ensure!(out.stderr.contains("--yes"), "{}", out.stderr);
    ensure!(sysroot.deployments()?.len() == 1);
    Ok(())
}

#[test]
fn naming_nothing_to_install_is_bad_usage_that_says_what_to_do() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let machine = Machine::new(tmp.path(), Vec::new())?;
    let out = machine.command(&["--offline".as_ref()])?.output()?;
    ensure!(out.status.code() == Some(2), "{out:?}");
    ensure!(
        out.stderr
            .contains("name the updates to install, or use --all"),
        "{}",
        out.stderr
    );
    Ok(())
}

#[test]
fn a_person_reads_what_was_installed_by_name_and_version() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (sysroot, v2, drive, machine) = os_1_0_with_2_0_on_a_drive(tmp.path())?;
    let out = machine
        .command(&os_from_drive(
            &sysroot.path,
            &drive.root,
            &["--offline", "--yes"],
        ))?
        .output()?;
    ensure!(out.success(), "{}\n{}", out.stdout, out.stderr);
    let line = out
        .stdout
        .lines()
        .find(|line| line.ends_with(" installed"))
        .ok_or_else(|| anyhow::anyhow!("no result line:\n{}", out.stdout))?;
    ensure!(line.ends_with(": 2.0 installed"), "{line}");
    ensure!(
        !line.contains(&v2[..10]),
        "a checksum where a version is known: {line}"
    );
    Ok(())
}

/// A machine at 1.0 and a drive with 2.0 and a delta from 1.0 (written by `ferryctl delta
/// generate` in the publisher's repository, copied to the drive with its delta index).
fn os_1_0_with_a_delta_to_2_0_on_a_drive(base: &Path) -> Result<(Sysroot, UsbDrive, Machine)> {
    let (sysroot, v2, drive, machine) = os_1_0_with_2_0_on_a_drive(base)?;
    let publisher = &sysroot.os.repo.path;
    ferry_tests::bins::ferryctl()?
        .args(["delta", "generate", "--repo"])
        .arg(publisher)
        .arg(format!("--from={}", sysroot.v1))
        .arg(format!("--to={v2}"))
        .run()?;
    for dir in ["deltas", "delta-indexes"] {
        Tool::new("cp")
            .arg("-a")
            .arg(publisher.join(dir))
            .arg(drive.repo.path.join(dir))
            .run()?;
    }
    Ok((sysroot, drive, machine))
}

fn delta_messages(run: &install_support::InstallRun) -> Vec<&str> {
    run.events
        .iter()
        .filter_map(|event| match event {
            Event::Message { text, .. } if text.contains("static delta") => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

/// The drive's delta is applied by an install, and not even looked at with `--no-deltas`.
#[test]
fn install_uses_a_delta_on_the_drive_unless_told_not_to() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (sysroot, drive, machine) = os_1_0_with_a_delta_to_2_0_on_a_drive(&tmp.path().join("a"))?;
    let run = machine.install(&os_from_drive(&sysroot.path, &drive.root, &[]))?;
    ensure!(run.success(), "install failed:\n{run}");
    let messages = delta_messages(&run);
    ensure!(
        messages.len() == 1 && messages[0].starts_with("applying the static delta"),
        "the delta was not applied: {messages:?}"
    );

    let (sysroot, drive, machine) = os_1_0_with_a_delta_to_2_0_on_a_drive(&tmp.path().join("b"))?;
    let run = machine.install(&os_from_drive(&sysroot.path, &drive.root, &["--no-deltas"]))?;
    ensure!(run.success(), "install failed:\n{run}");
    run.expect(OS_REF, InstallStatus::Installed)?;
    let messages = delta_messages(&run);
    ensure!(messages.is_empty(), "a delta was used: {messages:?}");
    Ok(())
}
