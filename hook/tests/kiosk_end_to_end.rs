//! The kiosk for real: `on-insert = install` (installed by the hook itself, never through
//! `ferryctl`), a fake sysroot at OS 1.0
//! (named by OSTREE_SYSROOT, as `ostree admin` takes it) and a per-user Flatpak installation
//! with an app at v1, and one drive carrying OS 2.0 and the app v2 written by `ostree
//! create-usb` and `flatpak create-usb`. Afterwards `ostree admin status` and `flatpak info`
//! must show the new versions, and the drive record must say both installed.

mod common;

use common::*;
use ferry_schema::{DriveInstallState, InstallStatus, TargetKind};
use ferry_tests::flatpak::{app_ref, AppSpec, FlatpakFixture, APP_ID, BRANCH};
use ferry_tests::sysroot::{Sysroot, OS_REF};

/// `ferry-hook --mount DRIVE` for the fixture machine (its sysroot and per-user installation),
/// with machine-wide trust moved under `trust_root`. `FERRY_CTL` names a `ferryctl` that fails
/// and leaves [`ferryctl_marker`], so a hook that started one fails the test.
fn kiosk_hook(
    env: &HookEnv,
    fixture: &FlatpakFixture,
    sysroot: &Sysroot,
    trust_root: &std::path::Path,
    drive: &std::path::Path,
) -> std::process::Command {
    std::fs::create_dir_all(trust_root).expect("trust root directory");
    let mut command = env.command();
    command
        .envs(fixture.client.vars())
        .env("FLATPAK_USER_DIR", fixture.client.user_installation())
        .env("OSTREE_SYSROOT", &sysroot.path)
        .env("FERRY_CTL", tripwire_ferryctl(env))
        .env("FERRY_TRUST_ROOT", trust_root)
        .env("LC_ALL", "C.UTF-8")
        .arg("--mount")
        .arg(drive);
    command
}

fn ferryctl_marker(env: &HookEnv) -> std::path::PathBuf {
    env.dir.path().join("ferryctl-ran")
}

fn tripwire_ferryctl(env: &HookEnv) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let script = env.dir.path().join("ferryctl");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ntouch '{}'\nexit 1\n",
            ferryctl_marker(env).display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

#[test]
fn a_drive_with_an_os_and_an_app_update_ends_with_both_installed() {
    let tmp = tempfile::tempdir().unwrap();
    let fixture = FlatpakFixture::new(tmp.path()).expect("flatpak scene");
    let sysroot = Sysroot::create(tmp.path(), &fixture.key).expect("sysroot at 1.0");
    let os_v2 = sysroot.publish("2.0").expect("OS 2.0");
    let app_v2 = fixture.publish_app(&AppSpec::new("v2")).expect("app v2");
    // One drive, both updates.
    let drive = tmp.path().join("drive");
    sysroot.os.create_usb(&drive).expect("ostree create-usb");
    fixture
        .drive_from_peer("peer", &drive, &[APP_ID])
        .expect("flatpak create-usb");
    let app = app_ref(APP_ID, BRANCH).unwrap();
    assert_eq!(
        fixture.client.installed_commit(APP_ID).unwrap(),
        fixture.app_v1
    );
    assert_eq!(sysroot.default_deployment().unwrap().commit, sysroot.v1);

    let env = HookEnv::new("on-insert = install\nreboot-after-os-update = always\n");
    let trust_root = tmp.path().join("trust-root");
    let output = kiosk_hook(&env, &fixture, &sysroot, &trust_root, &drive)
        .output()
        .unwrap();
    let log = output_text(&output);
    assert!(
        !ferryctl_marker(&env).exists(),
        "ferryctl was started\n{log}"
    );
    assert!(output.status.success(), "{log}");

    // What ostree and flatpak themselves say.
    let deployments = sysroot.deployments().unwrap();
    assert_eq!(deployments[0].commit, os_v2, "{deployments:?}\n{log}");
    assert_eq!(deployments[0].version.as_deref(), Some("2.0"));
    assert_eq!(deployments[1].commit, sysroot.v1, "{deployments:?}");
    let info = fixture
        .client
        .flatpak()
        .env("FLATPAK_USER_DIR", fixture.client.user_installation())
        .args(["--user", "info", "--show-commit", APP_ID])
        .stdout()
        .unwrap();
    assert_eq!(info.trim(), app_v2, "{log}");

    // The record: both offered, both installed, the install succeeded.
    let records = env.records();
    assert_eq!(records.len(), 1, "{records:?}");
    let record = &records[0];
    let offered: Vec<(TargetKind, &str)> = record
        .updates
        .iter()
        .map(|u| (u.target, u.ref_name.as_str()))
        .collect();
    assert!(offered.contains(&(TargetKind::Os, OS_REF)), "{offered:?}");
    assert!(
        offered.contains(&(TargetKind::Flatpak, app.as_str())),
        "{offered:?}"
    );
    let install = record.install.as_ref().expect("the record has the install");
    assert_eq!(install.state, DriveInstallState::Succeeded, "{install:?}");
    for (target, ref_name) in [
        (TargetKind::Os, OS_REF),
        (TargetKind::Flatpak, app.as_str()),
    ] {
        let result = install
            .results
            .iter()
            .find(|r| r.ref_name == ref_name)
            .unwrap_or_else(|| panic!("no result for {ref_name}: {install:?}"));
        assert_eq!(result.target, target);
        assert_eq!(result.status, InstallStatus::Installed, "{result:?}");
    }
    assert!(
        install
            .results
            .iter()
            .all(|r| r.status == InstallStatus::Installed),
        "{install:?}"
    );
    // reboot-after-os-update = always, but the test's sysroot is not the one this machine
    // runs from: the engine says no restart is needed, so the kiosk does not restart.
    assert!(
        install.results.iter().all(|r| !r.restart_required),
        "{install:?}"
    );
    assert_eq!(env.reboots(), 0, "{log}");
}

#[test]
fn a_kiosk_install_takes_nothing_from_another_recorded_drive() {
    let tmp = tempfile::tempdir().unwrap();
    let fixture = FlatpakFixture::new(tmp.path()).expect("flatpak scene");
    let sysroot = Sysroot::create(tmp.path(), &fixture.key).expect("sysroot at 1.0");
    // Drive B carries OS 2.0; drive A, recorded earlier, carries the newer 3.0.
    let os_v2 = sysroot.publish("2.0").expect("OS 2.0");
    let drive_b = tmp.path().join("drive-b");
    sysroot
        .os
        .create_usb(&drive_b)
        .expect("ostree create-usb B");
    sysroot.publish("3.0").expect("OS 3.0");
    let drive_a = tmp.path().join("drive-a");
    sysroot
        .os
        .create_usb(&drive_a)
        .expect("ostree create-usb A");

    let env = HookEnv::new("on-insert = notify\n");
    let trust_root = tmp.path().join("trust-root");
    let hook = |drive: &std::path::Path| {
        let output = kiosk_hook(&env, &fixture, &sysroot, &trust_root, drive)
            .output()
            .unwrap();
        let log = output_text(&output);
        assert!(output.status.success(), "{log}");
        log
    };
    hook(&drive_a);
    assert_eq!(env.records().len(), 1);

    std::fs::write(
        &env.config,
        "on-insert = install\nreboot-after-os-update = never\n",
    )
    .unwrap();
    let log = hook(&drive_b);
    assert_eq!(env.records().len(), 2, "{log}");
    let deployments = sysroot.deployments().unwrap();
    assert_eq!(deployments[0].commit, os_v2, "{deployments:?}\n{log}");
    assert_eq!(deployments[0].version.as_deref(), Some("2.0"));
    // reboot-after-os-update = never.
    assert_eq!(env.reboots(), 0, "{log}");
    assert!(
        !ferryctl_marker(&env).exists(),
        "ferryctl was started\n{log}"
    );
}
