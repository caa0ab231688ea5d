//! Validation against the machine's trust: a per-user Flatpak installation with app v1 from a
//! signed remote (collection ID set), and drives written by `flatpak create-usb`. Only a drive
//! whose commit this machine vouches for offers an update and gets a sideload link.

mod common;

use std::path::Path;

use common::*;
use ferry_schema::{DriveRecord, ProblemKind, SourceKind};
use ferry_tests::flatpak::{app_ref, AppSpec, FlatpakFixture, APP_ID, BRANCH};
use ferry_tests::ostree::{ObjectKind, UsbDrive};
use ferry_tests::tamper::truncate_object;

/// `fixture` publishes the app's v2 and a peer that installed it writes it to a drive,
/// `STICK`; the v2 commit and the drive.
fn app_v2_on_a_stick(env: &HookEnv, fixture: &FlatpakFixture) -> (String, UsbDrive) {
    let v2 = fixture.publish_app(&AppSpec::new("v2")).unwrap();
    let drive = fixture
        .drive_from_peer("peer", &env.dir.path().join("STICK"), &[APP_ID])
        .unwrap();
    (v2, drive)
}

/// Runs `ferry-hook --mount DRIVE` as seen from `fixture`'s installation.
fn hook_for(env: &HookEnv, fixture: &FlatpakFixture, drive: &UsbDrive) -> DriveRecord {
    let mut command = env.command();
    command
        .envs(fixture.client.vars())
        .arg("--mount")
        .arg(&drive.root);
    let output = command.output().unwrap();
    assert!(output.status.success(), "{}", output_text(&output));
    let mut records = env.records();
    assert_eq!(records.len(), 1, "{}", output_text(&output));
    records.remove(0)
}

#[test]
fn a_drive_with_a_trusted_newer_app_offers_it_and_is_linked() {
    let env = HookEnv::new("");
    let fixture = FlatpakFixture::new(&env.dir.path().join("flatpak")).unwrap();
    let (v2, drive) = app_v2_on_a_stick(&env, &fixture);

    let record = hook_for(&env, &fixture, &drive);
    let app = app_ref(APP_ID, BRANCH).unwrap();
    let update = record
        .updates
        .iter()
        .find(|u| u.ref_name == app)
        .unwrap_or_else(|| panic!("no update of {app}: {record:#?}"));
    assert_eq!(update.commit.to_hex(), v2);
    assert_eq!(
        update.current_commit.map(|c| c.to_hex()),
        Some(fixture.app_v1.clone())
    );
    assert!(update.signed);
    let repo = std::fs::canonicalize(drive.root.join(".ostree/repo")).unwrap();
    assert!(
        update
            .sources
            .iter()
            .any(|s| s.kind == SourceKind::Drive && Path::new(&s.location) == repo),
        "{:?}",
        update.sources
    );
    assert_eq!(
        env.sideload_links(),
        vec![(format!("ferry-{}-0", record.id), repo)]
    );
}

#[test]
fn an_untrusted_drive_shows_the_problem_and_gets_no_link() {
    let env = HookEnv::new("");
    let fixture = FlatpakFixture::new(&env.dir.path().join("flatpak")).unwrap();
    // Same collection ID, another vendor key: this machine does not trust it.
    let stranger = FlatpakFixture::new(&env.dir.path().join("stranger")).unwrap();
    stranger.publish_app(&AppSpec::new("v2")).unwrap();
    let drive = stranger
        .drive_from_peer("peer", &env.dir.path().join("STICK"), &[APP_ID])
        .unwrap();

    let record = hook_for(&env, &fixture, &drive);
    assert!(record.updates.is_empty(), "{:#?}", record.updates);
    assert!(
        record
            .problems
            .iter()
            .any(|p| p.kind == ProblemKind::UntrustedSignature),
        "{:#?}",
        record.problems
    );
    assert_eq!(record.repos.len(), 1);
    assert!(record.sideload_links.is_empty());
    assert!(env.sideload_links().is_empty());
}

#[test]
fn a_tampered_drive_shows_the_problem_and_gets_no_link() {
    let env = HookEnv::new("");
    let fixture = FlatpakFixture::new(&env.dir.path().join("flatpak")).unwrap();
    let (v2, drive) = app_v2_on_a_stick(&env, &fixture);
    truncate_object(&drive.repo, &v2, ObjectKind::Commit, 40).unwrap();

    let record = hook_for(&env, &fixture, &drive);
    assert!(record.updates.is_empty(), "{:#?}", record.updates);
    let app = app_ref(APP_ID, BRANCH).unwrap();
    assert!(
        record
            .problems
            .iter()
            .any(|p| p.kind == ProblemKind::Corrupt && p.ref_name.as_deref() == Some(app.as_str())),
        "{:#?}",
        record.problems
    );
    assert!(env.sideload_links().is_empty());
}

#[test]
fn a_repository_behind_repos_d_is_linked_where_it_really_is_and_escapes_are_refused() {
    let env = HookEnv::new("");
    let fixture = FlatpakFixture::new(&env.dir.path().join("flatpak")).unwrap();
    let (_, drive) = app_v2_on_a_stick(&env, &fixture);
    // The layout `create-usb --destination-repo=updates/apps` writes.
    let moved = drive.root.join("updates/apps");
    std::fs::create_dir_all(moved.parent().unwrap()).unwrap();
    std::fs::rename(drive.root.join(".ostree/repo"), &moved).unwrap();
    drive
        .add_repos_d_symlink("00-generated", Path::new("../../updates/apps"))
        .unwrap();
    // And an entry leading to a trusted repository off the drive.
    drive
        .add_repos_d_symlink("01-escape", &fixture.repo.repo.path)
        .unwrap();

    let record = hook_for(&env, &fixture, &drive);
    let moved = std::fs::canonicalize(&moved).unwrap();
    assert_eq!(record.repos.len(), 1, "{record:#?}");
    assert_eq!(Path::new(&record.repos[0].path), moved);
    assert!(
        record
            .problems
            .iter()
            .any(|p| p.kind == ProblemKind::Unsafe && p.source.ends_with("01-escape")),
        "{:#?}",
        record.problems
    );
    assert!(!record.updates.is_empty());
    assert!(record
        .updates
        .iter()
        .flat_map(|u| &u.sources)
        .all(|s| Path::new(&s.location).starts_with(&drive.root)));
    assert_eq!(
        env.sideload_links(),
        vec![(format!("ferry-{}-0", record.id), moved)]
    );
}
