//! `ferryctl install` of Flatpak updates from drives written by `flatpak create-usb`, into a
//! per-user installation, deployed by the real `flatpak --no-pull`.

mod install_support;

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use ferry_engine::event::{Event, Phase};
use ferry_engine::schema::InstallStatus;
use ferry_tests::flatpak::{
    app_ref, appstream2_ref, default_arch, greeting, runtime_ref, AppSpec, FlatpakFixture, APP_ID,
    BRANCH, COLLECTION_ID, REMOTE, RUNTIME_ID,
};
use ferry_tests::generate::{Bucket, GenSpec};
use ferry_tests::ostree::{ObjectKind, RefLocation};
use ferry_tests::sysroot::{Sysroot, OS_REF};
use ferry_tests::tamper::{remove_object, tamper_content};
use install_support::{args, kill_after_progress, user_app_from_drive, Machine};

fn machine(fixture: &FlatpakFixture) -> Result<Machine> {
    Machine::new(&fixture.base, fixture.client.vars())
}

#[test]
fn app_update_with_a_runtime_it_needs() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let fixture = FlatpakFixture::new(tmp.path())?;
    fixture.publish_runtime("v2")?;
    let v2 = AppSpec::new("v2").runtime_branch("v2");
    let v2_commit = fixture.publish_app(&v2)?;
    let drive = fixture.drive_from_peer("peer", &tmp.path().join("drive"), &[APP_ID])?;
    let runtime = runtime_ref(RUNTIME_ID, "v2")?;
    let app = app_ref(APP_ID, BRANCH)?;
    // `flatpak list` shows refs without their kind.
    let listed = runtime.trim_start_matches("runtime/").to_owned();
    ensure!(!fixture.client.installed_refs()?.contains(&listed));

    let run = machine(&fixture)?.install(&user_app_from_drive(&drive.root, APP_ID))?;
    ensure!(run.success(), "install failed:\n{run}");
    run.expect(&runtime, InstallStatus::Installed)?;
    run.expect(&app, InstallStatus::Installed)?;
    // The runtime came first.
    let order: Vec<&str> = run.results().iter().map(|r| r.ref_name.as_str()).collect();
    ensure!(order == [runtime.as_str(), app.as_str()], "{order:?}");
    // The app was being fetched while the runtime deployed: its pull began before the
    // runtime's result, which comes after the runtime's `flatpak --no-pull` ended.
    let position = |wanted: &dyn Fn(&Event) -> bool| run.events.iter().position(wanted);
    let app_pull = position(
        &|event| matches!(event, Event::Phase { phase: Phase::Pull, update: Some(id) } if id.ends_with(&app)),
    );
    let runtime_deploy = position(
        &|event| matches!(event, Event::Phase { phase: Phase::Deploy, update: Some(id) } if id.ends_with(&runtime)),
    );
    let runtime_result =
        position(&|event| matches!(event, Event::Result(result) if result.ref_name == runtime));
    ensure!(
        matches!((app_pull, runtime_deploy, runtime_result), (Some(pull), Some(_), Some(result)) if pull < result),
        "the app's pull did not overlap the runtime's deploy (pull at {app_pull:?}, runtime \
         deploy at {runtime_deploy:?}, its result at {runtime_result:?}):\n{run}"
    );

    ensure!(
        fixture.client.run(APP_ID)? == greeting(&v2),
        "{}",
        fixture.client.run(APP_ID)?
    );
    ensure!(fixture.client.installed_commit(APP_ID)? == v2_commit);
    let installed = fixture.client.installed_refs()?;
    ensure!(installed.contains(&listed), "{installed:?}");

    // The remote's AppStream data is the drive's, deployed where Flatpak reads it.
    let appstream = drive
        .repo
        .read_ref(&RefLocation::Mirror {
            collection_id: COLLECTION_ID.to_owned(),
            name: appstream2_ref()?,
        })?
        .context("the drive has no appstream2 branch")?;
    let arch_dir = fixture
        .client
        .user_installation()
        .join("appstream")
        .join(REMOTE)
        .join(default_arch()?);
    let active = std::fs::read_link(arch_dir.join("active"))?;
    ensure!(
        active.to_str() == Some(appstream.as_str()),
        "{active:?} != {appstream}"
    );
    let catalog = std::fs::read_to_string(arch_dir.join("active/appstream.xml"))?;
    ensure!(catalog.contains("version=\"v2\""), "{catalog}");
    ensure!(arch_dir.join("active/appstream.xml.gz").is_file());
    ensure!(arch_dir.join(".timestamp").is_file());
    fixture.client.user_repo().fsck()?;
    Ok(())
}

#[test]
fn tampered_drive_fails_naming_the_object_and_changes_nothing() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let fixture = FlatpakFixture::new(tmp.path())?;
    let v2 = fixture.publish_app(&AppSpec::new("v2"))?;
    let drive = fixture.drive_from_peer("peer", &tmp.path().join("drive"), &[APP_ID])?;
    let object = drive.repo.content_checksum(&v2, "/files/bin/hello.sh")?;
    tamper_content(&drive.repo, &v2, "/files/bin/hello.sh", b"v2", b"XX")?;
    let app = app_ref(APP_ID, BRANCH)?;

    let run = machine(&fixture)?.install(&user_app_from_drive(&drive.root, APP_ID))?;
    ensure!(!run.success(), "a tampered drive was installed:\n{run}");
    ensure!(run.finished() == Some(false), "{run}");
    let result = run.expect(&app, InstallStatus::Failed)?;
    let message = result.message.clone().unwrap_or_default();
    ensure!(
        message.contains(&object),
        "the object is not named: {message}"
    );

    ensure!(fixture.client.run(APP_ID)? == greeting(&AppSpec::new("v1")));
    ensure!(fixture.client.installed_commit(APP_ID)? == fixture.app_v1);
    fixture.client.user_repo().fsck()?;
    Ok(())
}

/// About 40 MB in 5,000 files: long enough to be killed mid-pull.
fn payload() -> GenSpec {
    GenSpec {
        buckets: vec![
            Bucket {
                count: 5000,
                min: 1024,
                max: 8 * 1024,
            },
            Bucket {
                count: 6,
                min: 2 * 1024 * 1024,
                max: 4 * 1024 * 1024,
            },
        ],
        files_per_dir: 100,
        seed: 7,
    }
}

#[test]
fn killed_midway_then_run_again_completes() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let fixture = FlatpakFixture::new(tmp.path())?;
    let v2 = AppSpec::new("v2").payload(payload());
    let v2_commit = fixture.publish_app(&v2)?;
    let drive = fixture.drive_from_peer("peer", &tmp.path().join("drive"), &[APP_ID])?;
    let machine = machine(&fixture)?;
    let install_args = user_app_from_drive(&drive.root, APP_ID);

    let child = machine.spawn(&install_args)?;
    kill_after_progress(child, 1, Duration::from_secs(300))?;
    // Killed mid-pull: v1 still runs and the repository is consistent.
    ensure!(fixture.client.run(APP_ID)? == greeting(&AppSpec::new("v1")));
    let repo = fixture.client.user_repo();
    let remote_ref = RefLocation::Remote {
        remote: REMOTE.to_owned(),
        name: app_ref(APP_ID, BRANCH)?,
    };
    ensure!(repo.read_ref(&remote_ref)?.as_deref() != Some(v2_commit.as_str()));
    repo.fsck()?;

    let run = machine.install(&install_args)?;
    ensure!(run.success(), "second install failed:\n{run}");
    run.expect(&app_ref(APP_ID, BRANCH)?, InstallStatus::Installed)?;
    ensure!(fixture.client.run(APP_ID)? == greeting(&v2));
    ensure!(fixture.client.installed_commit(APP_ID)? == v2_commit);
    repo.fsck()?;
    Ok(())
}

#[test]
fn all_with_one_incomplete_app_installs_the_others() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let fixture = FlatpakFixture::new(tmp.path())?;
    let other = AppSpec::new("v1").id("org.example.Other");
    fixture.publish_app(&other)?;
    fixture
        .client
        .install(REMOTE, &["org.example.Other"], &[])?;
    let app_v2 = fixture.publish_app(&AppSpec::new("v2"))?;
    let other_v2 = fixture.publish_app(&AppSpec::new("v2").id("org.example.Other"))?;
    let drive = fixture.drive_from_peer(
        "peer",
        &tmp.path().join("drive"),
        &[APP_ID, "org.example.Other"],
    )?;
    let broken = drive
        .repo
        .content_checksum(&other_v2, "/files/bin/hello.sh")?;
    remove_object(&drive.repo, &broken, ObjectKind::Content)?;
    // And an OS update on a drive of its own.
    let sysroot = Sysroot::create(tmp.path(), &fixture.key)?;
    let os_v2 = sysroot.publish("2.0")?;
    let os_drive = sysroot.os.create_usb(&tmp.path().join("os-drive"))?;

    let run = machine(&fixture)?.install(&args(&[
        &"--sysroot",
        &sysroot.path,
        &"--installation",
        &"user",
        &"--from",
        &drive.root,
        &"--from",
        &os_drive.root,
        &"--all",
    ]))?;
    ensure!(!run.success(), "{run}");
    ensure!(run.results().len() == 3, "{run}");
    run.expect(OS_REF, InstallStatus::Installed)?;
    ensure!(sysroot.default_deployment()?.commit == os_v2);
    run.expect(&app_ref(APP_ID, BRANCH)?, InstallStatus::Installed)?;
    let failed = run.expect(
        &app_ref("org.example.Other", BRANCH)?,
        InstallStatus::Failed,
    )?;
    ensure!(
        failed
            .message
            .as_deref()
            .unwrap_or_default()
            .contains(&broken),
        "{failed:?}"
    );
    ensure!(fixture.client.installed_commit(APP_ID)? == app_v2);
    ensure!(fixture.client.run("org.example.Other")? == greeting(&other));
    fixture.client.user_repo().fsck()?;
    Ok(())
}
