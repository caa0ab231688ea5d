//! New apps from a drive: `ferryctl list --available` and `ferryctl install APP-ID` of an app
//! this machine does not have, from drives written by `flatpak create-usb`, deployed by the
//! real `flatpak --no-pull` into a per-user installation.

mod install_support;
mod list_support;

use std::ffi::OsStr;

use anyhow::{ensure, Context, Result};
use ferry_engine::schema::{InstallStatus, ProblemKind};
use ferry_tests::flatpak::{
    app_ref, greeting, runtime_ref, AppSpec, FlatpakEnv, FlatpakFixture, FlatpakRepo, BRANCH,
    COLLECTION_ID, RUNTIME_ID,
};
use ferry_tests::gpg::GpgKey;
use ferry_tests::ostree::ObjectKind;
use ferry_tests::tamper::remove_object;
use tempfile::TempDir;

const NEW_APP_ID: &str = "org.example.Notes";
const NEW_APP_NAME: &str = "Example Notes";

fn listing_args(drive: &std::path::Path) -> Vec<&OsStr> {
    vec![
        OsStr::new("--installation"),
        OsStr::new("user"),
        OsStr::new("--offline"),
        OsStr::new("--available"),
        OsStr::new("--from"),
        drive.as_os_str(),
    ]
}

#[test]
fn a_new_app_and_the_runtime_it_needs_install_from_a_drive() -> Result<()> {
    let tmp = TempDir::new()?;
    let scene = FlatpakFixture::new(tmp.path())?;
    scene.publish_runtime("v2")?;
    let notes = AppSpec::new("v1")
        .id(NEW_APP_ID)
        .name(NEW_APP_NAME)
        .runtime_branch("v2");
    let notes_commit = scene.publish_app(&notes)?;
    let drive = scene.drive_from_peer("peer", &tmp.path().join("stick"), &[NEW_APP_ID])?;
    let notes_ref = app_ref(NEW_APP_ID, BRANCH)?;
    let runtime = runtime_ref(RUNTIME_ID, "v2")?;

    let machine = list_support::Machine::new(tmp.path(), scene.client.vars())?;
    let list = machine.list(&listing_args(&drive.root))?;
    ensure!(list.problems.is_empty(), "{:#?}", list.problems);
    // The runtime only the new app needs is not an update of what is installed.
    ensure!(list.updates.is_empty(), "{:#?}", list.updates);
    ensure!(list.unknown_available == 0);
    ensure!(list.available.len() == 1, "{:#?}", list.available);
    let offered = &list.available[0];
    ensure!(offered.app_id() == NEW_APP_ID);
    ensure!(offered.app.ref_name == notes_ref);
    ensure!(offered.app.commit.to_hex() == notes_commit);
    ensure!(offered.app.current_commit.is_none());
    ensure!(offered.app.installation.as_deref() == Some("user"));
    ensure!(offered.app.collection_id.as_deref() == Some(COLLECTION_ID));
    ensure!(offered.app.signed);
    ensure!(
        offered.app.needs == vec![runtime.clone()],
        "{:?}",
        offered.app.needs
    );
    let runtimes: Vec<&str> = offered
        .runtimes
        .iter()
        .map(|r| r.ref_name.as_str())
        .collect();
    ensure!(runtimes == [runtime.as_str()], "{runtimes:?}");
    let info = offered.app.app.as_ref().context("no AppStream data")?;
    ensure!(info.name.as_deref() == Some(NEW_APP_NAME), "{info:?}");
    ensure!(info.summary.is_some(), "{info:?}");
    ensure!(
        info.icon
            .as_deref()
            .is_some_and(|p| std::path::Path::new(p).is_file()),
        "{info:?}"
    );
    // The new runtime branch shares its files with the installed one; its commit and trees
    // still count.
    let runtime_size = offered.runtimes[0].download_size;
    ensure!(runtime_size > 0, "runtime size {runtime_size}");
    ensure!(
        offered.download_size == offered.app.download_size + runtime_size,
        "{} != {} + {runtime_size}",
        offered.download_size,
        offered.app.download_size
    );

    let text = machine.list_text(&listing_args(&drive.root))?;
    ensure!(
        text.contains(NEW_APP_NAME) && text.contains(NEW_APP_ID),
        "{text}"
    );

    let run = install_support::Machine::new(&scene.base, scene.client.vars())?.install(
        &install_support::user_app_from_drive(&drive.root, NEW_APP_ID),
    )?;
    ensure!(run.success(), "install failed:\n{run}");
    run.expect(&runtime, InstallStatus::Installed)?;
    run.expect(&notes_ref, InstallStatus::Installed)?;
    let order: Vec<&str> = run.results().iter().map(|r| r.ref_name.as_str()).collect();
    ensure!(order == [runtime.as_str(), notes_ref.as_str()], "{order:?}");

    ensure!(scene.client.run(NEW_APP_ID)? == greeting(&notes));
    ensure!(scene.client.installed_commit(NEW_APP_ID)? == notes_commit);
    let info = scene
        .client
        .flatpak()
        .args(["info", "--user", NEW_APP_ID])
        .stdout()?;
    ensure!(info.contains(&notes_commit), "{info}");

    // Installed now: no longer offered.
    let after = machine.list(&listing_args(&drive.root))?;
    ensure!(after.available.is_empty(), "{:#?}", after.available);
    Ok(())
}

#[test]
fn apps_of_unknown_collections_and_unsigned_apps_are_not_offered() -> Result<()> {
    let tmp = TempDir::new()?;
    let scene = FlatpakFixture::new(tmp.path())?;
    let notes = AppSpec::new("v1").id(NEW_APP_ID).name(NEW_APP_NAME);
    let notes_commit = scene.publish_app(&notes)?;
    // The commit's signatures are gone from the drive.
    let unsigned = scene.drive_from_peer("peer", &tmp.path().join("unsigned"), &[NEW_APP_ID])?;
    remove_object(&unsigned.repo, &notes_commit, ObjectKind::CommitMeta)?;
    // Signed, but the commit's bytes were changed after signing.
    let tampered = scene.drive_from_peer("peer2", &tmp.path().join("tampered"), &[NEW_APP_ID])?;
    let object = tampered
        .repo
        .object_path(&notes_commit, ObjectKind::Commit)?;
    let mut bytes = std::fs::read(&object)?;
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    // A new file: the object may be a hard link shared with the other drive.
    std::fs::remove_file(&object)?;
    std::fs::write(&object, bytes)?;

    // Another publisher, whose remote this machine does not have.
    let other_key = GpgKey::generate(&tmp.path().join("other-gnupg"), "Other <other@example.org>")?;
    let other = FlatpakRepo::new(
        &tmp.path().join("other-repo"),
        &tmp.path().join("other-staging"),
        "org.other.Apps",
        &other_key,
    )?;
    other.publish_runtime(BRANCH)?;
    other.publish_app(&AppSpec::new("v1").id("org.other.Game"))?;
    let other_peer = FlatpakEnv::new(&tmp.path().join("other-peer"))?;
    other_peer.remote_add(
        "other",
        &other.repo.path,
        &other_key,
        Some("org.other.Apps"),
    )?;
    other_peer.install("other", &["org.other.Game"], &[])?;
    let foreign = other_peer.create_usb(&tmp.path().join("foreign"), &["org.other.Game"])?;

    let machine = list_support::Machine::new(tmp.path(), scene.client.vars())?;
    let mut args = listing_args(&unsigned.root);
    for drive in [&foreign.root, &tampered.root] {
        args.push(OsStr::new("--from"));
        args.push(drive.as_os_str());
    }
    let list = machine.list(&args)?;
    ensure!(list.available.is_empty(), "{:#?}", list.available);
    // One app of an unknown collection (its runtime is not an app).
    ensure!(list.unknown_available == 1, "{}", list.unknown_available);
    let notes_ref = app_ref(NEW_APP_ID, BRANCH)?;
    ensure!(
        list.problems
            .iter()
            .any(|p| p.ref_name.as_deref() == Some(notes_ref.as_str())
                && p.kind == ProblemKind::UnsignedCommit),
        "{:#?}",
        list.problems
    );
    ensure!(
        list.problems
            .iter()
            .any(|p| p.ref_name.as_deref() == Some(notes_ref.as_str())
                && p.kind == ProblemKind::Corrupt
                && p.source.contains("tampered")),
        "{:#?}",
        list.problems
    );
    let text = machine.list_text(&args)?;
    ensure!(
        text.contains("1 app from sources this computer does not know"),
        "{text}"
    );

    // Nor can it be installed by name.
    let run = install_support::Machine::new(&scene.base, scene.client.vars())?.install(
        &install_support::user_app_from_drive(&unsigned.root, NEW_APP_ID),
    )?;
    ensure!(!run.success(), "an unsigned app was installed:\n{run}");
    ensure!(!scene
        .client
        .installed_refs()?
        .iter()
        .any(|r| r.contains(NEW_APP_ID)));
    Ok(())
}
