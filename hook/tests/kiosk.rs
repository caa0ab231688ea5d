//! The kiosk policy, `on-insert = install`: the hook installs in its own process through the
//! engine and keeps the progress and result in the drive record. The record keeping is fed
//! here an event stream written with the engine's own types; the hook itself is run on an
//! empty drive, with a `ferryctl` that must never be started.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::*;
use std::sync::Mutex;

use ferry_engine::event::Reporter;
use ferry_engine::object::checksum::Checksum;
use ferry_hook::kiosk::RecordReporter;
use ferry_hook::reboot::os_update_needs_restart;
use ferry_schema::event::{Event, Phase};
use ferry_schema::{
    DriveInstall, DriveInstallState, InstallResult, InstallStatus, SourceInfo, SourceKind,
    TargetKind, Update,
};

fn update(id: &str, target: TargetKind, ref_name: &str, size: u64) -> Update {
    Update {
        id: id.into(),
        target,
        installation: Some("system".into()),
        remote: "origin".into(),
        collection_id: Some("org.example.Os".into()),
        ref_name: ref_name.into(),
        current_commit: Some(Checksum::from_hex(&"a".repeat(64)).unwrap()),
        commit: Checksum::from_hex(&"b".repeat(64)).unwrap(),
        current_version: Some("1.0".into()),
        version: Some("2.0".into()),
        timestamp: 1_700_000_000,
        subject: "v2".into(),
        body: String::new(),
        download_size: size,
        signed: true,
        sources: vec![SourceInfo::new(
            SourceKind::Drive,
            "/media/stick/.ostree/repo",
            Some("STICK".into()),
        )],
        needs: Vec::new(),
        adds_subpaths: Vec::new(),
        app: None,
    }
}

fn result(update: &Update, status: InstallStatus, restart: bool) -> InstallResult {
    InstallResult {
        update: update.id.clone(),
        ref_name: update.ref_name.clone(),
        target: update.target,
        status,
        message: None,
        restart_required: restart,
        sources: Vec::new(),
    }
}

fn progress(update: &Update, done: u64) -> Event {
    Event::Progress {
        update: Some(update.id.clone()),
        objects_done: done / 100,
        objects_total: update.download_size / 100,
        bytes_done: done,
        bytes_total: update.download_size,
        rate: 1000,
        eta_seconds: Some(1),
        source: Some("STICK".into()),
        sources: Vec::new(),
    }
}

/// A stream like `ferryctl install --json` prints for an OS and an app update.
fn stream(app_status: InstallStatus, ok: bool) -> (Vec<Event>, Vec<InstallResult>) {
    let os = update(
        "os:/:origin:os/x86_64/stable",
        TargetKind::Os,
        "os/x86_64/stable",
        4000,
    );
    let app = update(
        "flatpak:system:origin:app/org.example.App/x86_64/stable",
        TargetKind::Flatpak,
        "app/org.example.App/x86_64/stable",
        1000,
    );
    let results = vec![
        result(&os, InstallStatus::Installed, true),
        result(&app, app_status, false),
    ];
    let events = vec![
        Event::Phase {
            phase: Phase::Resolve,
            update: None,
        },
        Event::Plan {
            updates: vec![os.clone(), app.clone()],
            problems: Vec::new(),
        },
        Event::Phase {
            phase: Phase::Pull,
            update: Some(os.id.clone()),
        },
        progress(&os, 2000),
        progress(&os, 4000),
        Event::Phase {
            phase: Phase::Deploy,
            update: Some(os.id.clone()),
        },
        Event::Result(results[0].clone()),
        progress(&app, 1000),
        Event::Result(results[1].clone()),
        Event::Finished { ok },
    ];
    (events, results)
}

/// Feeds `events` to the hook's reporter; returns every state it wrote and the final one.
fn record(events: &[Event], ended_ok: bool) -> (Vec<DriveInstall>, DriveInstall) {
    let written = Mutex::new(Vec::new());
    let reporter = RecordReporter::new(|install: &DriveInstall| {
        written.lock().unwrap().push(install.clone());
    });
    for event in events {
        reporter.on_event(event.clone());
    }
    let install = reporter.finish(ended_ok);
    (written.into_inner().unwrap(), install)
}

#[test]
fn an_install_that_succeeds_ends_succeeded_with_every_result() {
    let (events, results) = stream(InstallStatus::Installed, true);
    let (written, install) = record(&events, true);
    assert_eq!(install.state, DriveInstallState::Succeeded);
    assert_eq!(install.results, results);
    assert_eq!((install.bytes_done, install.bytes_total), (5000, 5000));
    assert_eq!(written.first().unwrap().state, DriveInstallState::Running);
    assert_eq!(written.last().unwrap(), &install);
}

#[test]
fn progress_is_written_at_most_twice_a_second_and_everything_else_at_once() {
    let (events, _) = stream(InstallStatus::Installed, true);
    let (written, _) = record(&events, true);
    // Running; the plan, two results and `finished`; the final state. The three progress
    // events come within 500 ms of a write, so they wait for the next one.
    assert_eq!(written.len(), 6, "{written:#?}");
    assert_eq!((written[1].bytes_done, written[1].bytes_total), (0, 5000));
    // The first result's write carries the progress that came before it.
    assert_eq!(written[2].bytes_done, 4000);
    assert_eq!(written[2].results.len(), 1);
}

#[test]
fn a_failed_update_or_a_failed_end_ends_failed() {
    for (app_status, ok, ended_ok) in [
        (InstallStatus::Failed, false, false),
        (InstallStatus::Installed, true, false),
        (InstallStatus::Cancelled, false, false),
    ] {
        let (events, results) = stream(app_status, ok);
        let (_, install) = record(&events, ended_ok);
        assert_eq!(install.state, DriveInstallState::Failed, "{app_status:?}");
        assert_eq!(install.results, results);
    }
}

#[test]
fn an_install_cut_short_ends_failed_and_the_deployed_os_still_gets_its_restart() {
    let (events, _) = stream(InstallStatus::Installed, true);
    // Ended after the OS result: no app result and no `finished`.
    let (_, install) = record(&events[..7], true);
    assert_eq!(install.state, DriveInstallState::Failed);
    assert_eq!(install.results.len(), 1);
    assert!(os_update_needs_restart(&install.results));
}

/// A `ferryctl` that leaves `marker` and fails, were it ever started.
fn tripwire_ferryctl(dir: &Path, marker: &Path) -> PathBuf {
    let script = dir.join("ferryctl");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh
touch '{}'
exit 1
",
            marker.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

#[test]
fn the_kiosk_install_runs_in_the_hook_without_starting_ferryctl() {
    let env = HookEnv::new(
        "on-insert = install
reboot-after-os-update = always
",
    );
    let marker = env.dir.path().join("ferryctl-ran");
    let ferryctl = tripwire_ferryctl(env.dir.path(), &marker);
    // A machine with empty Flatpak installations and no OS target; the drive offers nothing.
    let flatpak = env.dir.path().join("flatpak");
    let vars: Vec<(String, PathBuf)> = [
        "FLATPAK_SYSTEM_DIR",
        "FLATPAK_USER_DIR",
        "FLATPAK_CONFIG_DIR",
    ]
    .into_iter()
    .map(|name| (name.to_owned(), flatpak.join(name)))
    .collect();
    for (_, dir) in &vars {
        std::fs::create_dir_all(dir).unwrap();
    }
    let drive = env.dir.path().join("KIOSK");
    std::fs::create_dir_all(&drive).unwrap();
    let output = env
        .command()
        .env("FERRY_CTL", &ferryctl)
        .env(
            "PATH",
            format!("{}:/usr/bin:/bin", env.dir.path().display()),
        )
        .env_remove("OSTREE_SYSROOT")
        .envs(vars)
        .arg("--mount")
        .arg(&drive)
        .output()
        .unwrap();
    let log = output_text(&output);
    assert!(!marker.exists(), "ferryctl was started\n{log}");
    assert!(output.status.success(), "{log}");
    let install = env.records()[0].install.clone().expect("install recorded");
    assert_eq!(install.state, DriveInstallState::Succeeded, "{log}");
    assert!(install.results.is_empty());
    assert_eq!(env.reboots(), 0, "{log}");
}

#[test]
fn sigterm_cancels_the_install_instead_of_killing_the_hook() {
    let cancel = ferry_hook::kiosk::cancel_on_signals().unwrap();
    assert!(!cancel.is_cancelled());
    // What systemd sends when the drive of ferry-install@.service goes away.
    let status = std::process::Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !cancel.is_cancelled() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(cancel.is_cancelled());
}
