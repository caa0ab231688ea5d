//! The kiosk policy, `on-insert = install`: the hook runs `ferryctl install` and keeps its
//! progress and result in the drive record. `ferryctl` is replaced here by a script that
//! checks its arguments and replays an event stream written with the engine's own types.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::*;
use ferry_engine::event::{to_line, Event, Phase};
use ferry_engine::object::checksum::Checksum;
use ferry_engine::schema::{
    DriveInstallState, InstallResult, InstallStatus, SourceInfo, SourceKind, TargetKind, Update,
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
        sources: vec![SourceInfo {
            kind: SourceKind::Drive,
            location: "/media/stick/.ostree/repo".into(),
            label: Some("STICK".into()),
        }],
        needs: Vec::new(),
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

/// Writes a fake `ferryctl` that records its arguments and prints `events`.
fn fake_ferryctl(dir: &Path, events: &[Event], exit_code: i32) -> (PathBuf, PathBuf) {
    let stream = dir.join("stream.jsonl");
    let lines: Vec<String> = events.iter().map(to_line).collect();
    std::fs::write(&stream, lines.join("\n") + "\nthis line is not an event\n").unwrap();
    let args = dir.join("ferryctl-args");
    let script = dir.join("ferryctl");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > '{}'\ncat '{}'\nexit {exit_code}\n",
            args.display(),
            stream.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (script, args)
}

#[test]
fn an_install_that_succeeds_ends_succeeded_with_every_result() {
    let env = HookEnv::new("on-insert = install\nreboot-after-os-update = never\n");
    let (events, results) = stream(InstallStatus::Installed, true);
    let (output, args, drive) = kiosk_run_with(&env, &events, 0, &[]);
    assert!(output.status.success(), "{}", output_text(&output));

    assert_eq!(
        args,
        [
            "install",
            "--all",
            "--yes",
            "--json",
            "--only-from",
            "--from",
            drive.to_str().unwrap()
        ]
    );
    let records = env.records();
    assert_eq!(records.len(), 1);
    let install = records[0]
        .install
        .as_ref()
        .expect("the record has the install");
    assert_eq!(install.state, DriveInstallState::Succeeded);
    assert_eq!(install.results, results);
    assert_eq!((install.bytes_done, install.bytes_total), (5000, 5000));
    let log = output_text(&output);
    assert!(log.contains("ignoring a line ferryctl printed"), "{log}");
    assert!(log.contains("succeeded"), "{log}");
}

#[test]
fn a_failed_update_or_exit_code_ends_failed() {
    for (app_status, ok, exit_code) in [
        (InstallStatus::Failed, false, 1),
        (InstallStatus::Installed, true, 1),
    ] {
        let env = HookEnv::new("on-insert = install\n");
        let (events, results) = stream(app_status, ok);
        let (output, _) = kiosk_run(&env, &events, exit_code);
        assert!(!output.status.success(), "{}", output_text(&output));
        let install = env.records()[0].install.clone().expect("install recorded");
        assert_eq!(install.state, DriveInstallState::Failed);
        assert_eq!(install.results, results);
    }
}

/// Runs the hook on an empty drive directory with `ferryctl` replaying `events`.
fn kiosk_run(
    env: &HookEnv,
    events: &[Event],
    exit_code: i32,
) -> (std::process::Output, Vec<String>) {
    let (output, args, _) = kiosk_run_with(env, events, exit_code, &[]);
    (output, args)
}

/// [`kiosk_run`] with the variables `vars` on top; also returns the drive's path.
fn kiosk_run_with(
    env: &HookEnv,
    events: &[Event],
    exit_code: i32,
    vars: &[(&str, &str)],
) -> (std::process::Output, Vec<String>, PathBuf) {
    let (ferryctl, args_file) = fake_ferryctl(env.dir.path(), events, exit_code);
    let (output, drive) = env.run_on_new_drive("KIOSK", &ferryctl, vars);
    let args = std::fs::read_to_string(&args_file)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect();
    (output, args, drive)
}

#[test]
fn a_stream_cut_short_ends_failed_and_the_deployed_os_still_gets_its_restart() {
    let env = HookEnv::new("on-insert = install\nreboot-after-os-update = always\n");
    let (events, _) = stream(InstallStatus::Installed, true);
    // ferryctl killed after the OS result: no app result and no `finished`.
    let (output, args) = kiosk_run(&env, &events[..7], 0);
    assert!(!output.status.success(), "{}", output_text(&output));
    // Restarting is the hook's decision, not ferryctl's.
    assert!(!args.iter().any(|a| a == "--reboot"), "{args:?}");
    let install = env.records()[0].install.clone().expect("install recorded");
    assert_eq!(install.state, DriveInstallState::Failed);
    assert_eq!(install.results.len(), 1);
    assert_eq!(env.reboots(), 1, "{}", output_text(&output));
}

#[test]
fn reboot_always_restarts_after_an_os_update_and_only_then() {
    let env = HookEnv::new("on-insert = install\nreboot-after-os-update = always\n");
    let (events, _) = stream(InstallStatus::Installed, true);
    let (output, _) = kiosk_run(&env, &events, 0);
    assert!(output.status.success(), "{}", output_text(&output));
    assert_eq!(env.reboots(), 1, "{}", output_text(&output));
    // The record says the install succeeded before the machine goes down.
    let install = env.records()[0].install.clone().expect("install recorded");
    assert_eq!(install.state, DriveInstallState::Succeeded);

    // Only an app updated: nothing to restart for.
    let env = HookEnv::new("on-insert = install\nreboot-after-os-update = always\n");
    let (mut events, _) = stream(InstallStatus::Installed, true);
    for event in &mut events {
        if let Event::Result(result) = event {
            result.restart_required = false;
        }
    }
    let (output, _) = kiosk_run(&env, &events, 0);
    assert!(output.status.success(), "{}", output_text(&output));
    assert_eq!(env.reboots(), 0, "{}", output_text(&output));
}

#[test]
fn reboot_never_leaves_the_os_update_for_the_next_boot() {
    let env = HookEnv::new("on-insert = install\nreboot-after-os-update = never\n");
    let (events, _) = stream(InstallStatus::Installed, true);
    let (output, _) = kiosk_run(&env, &events, 0);
    assert!(output.status.success(), "{}", output_text(&output));
    assert_eq!(env.reboots(), 0, "{}", output_text(&output));
    let log = output_text(&output);
    assert!(log.contains("reboot-after-os-update = never"), "{log}");
}

#[test]
fn a_failing_restart_command_is_an_error_that_says_so() {
    let env = HookEnv::new("on-insert = install\nreboot-after-os-update = always\n");
    let (events, _) = stream(InstallStatus::Installed, true);
    let (output, _, _) = kiosk_run_with(&env, &events, 0, &[("FERRY_REBOOT_COMMAND", "false")]);
    assert!(!output.status.success(), "{}", output_text(&output));
    let log = output_text(&output);
    assert!(log.contains("restart the machine"), "{log}");
}

#[test]
fn a_missing_ferryctl_is_reported_and_recorded_as_failed() {
    let env = HookEnv::new("on-insert = install\n");
    let missing = env.dir.path().join("no-such-ferryctl");
    let (output, _) = env.run_on_new_drive("KIOSK", &missing, &[]);
    assert!(!output.status.success());
    let text = output_text(&output);
    assert!(text.contains("set FERRY_CTL"), "{text}");
    let install = env.records()[0].install.clone().expect("install recorded");
    assert_eq!(install.state, DriveInstallState::Failed);
}
