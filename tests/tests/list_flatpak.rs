//! `ferryctl list` for Flatpak apps, against real `flatpak` installations and drives written by
//! `flatpak create-usb`.

mod list_support;

use std::ffi::OsStr;

use anyhow::{ensure, Result};
use ferry_engine::schema::{ProblemKind, SourceKind, TargetKind};
use ferry_tests::flatpak::{
    self, AppSpec, FlatpakFixture, APP_ID, APP_NAME, APP_SUMMARY, BRANCH, COLLECTION_ID, REMOTE,
    RUNTIME_ID,
};
use ferry_tests::http::StaticServer;
use list_support::{location, problem, sources, update, Machine};
use tempfile::TempDir;

#[test]
fn a_drive_from_another_installation_offers_the_app_update_with_its_appstream_name() -> Result<()> {
    let tmp = TempDir::new()?;
    let scene = FlatpakFixture::new(tmp.path())?;
    let v2 = scene.publish_app(&AppSpec::new("v2"))?;
    let drive = scene.drive_from_peer("peer", &tmp.path().join("stick"), &[APP_ID])?;
    let machine = Machine::new(tmp.path(), scene.client.vars())?;
    let app_ref = flatpak::app_ref(APP_ID, BRANCH)?;

    let list = machine.list(&[
        OsStr::new("--installation"),
        OsStr::new("user"),
        OsStr::new("--from"),
        drive.root.as_os_str(),
    ])?;
    ensure!(list.problems.is_empty(), "{:#?}", list.problems);
    ensure!(list.updates.len() == 1, "{:#?}", list.updates);
    let app = update(&list, &app_ref)?;
    ensure!(app.target == TargetKind::Flatpak);
    ensure!(app.installation.as_deref() == Some("user"));
    ensure!(app.remote == REMOTE);
    ensure!(app.collection_id.as_deref() == Some(COLLECTION_ID));
    ensure!(app.current_commit.map(|c| c.to_hex()) == Some(scene.app_v1.clone()));
    ensure!(app.commit.to_hex() == v2, "{} != {v2}", app.commit);
    ensure!(app.commit.to_hex() == drive.mirror_commit(COLLECTION_ID, &app_ref)?);
    ensure!(app.id == format!("flatpak:user:{app_ref}"));
    ensure!(app.signed);
    ensure!(
        app.needs.is_empty(),
        "the runtime is installed: {:?}",
        app.needs
    );
    ensure!(sources(app) == vec![location(&drive.repo.path)?]);
    ensure!(app.sources[0].kind == SourceKind::Drive);
    // v1 and v2 share the runtime and most of the app; what differs is small but not nothing.
    ensure!(
        app.download_size > 0 && app.download_size < 64 * 1024,
        "download size {}",
        app.download_size
    );
    let info = app.app.as_ref().expect("AppStream data for the app");
    ensure!(info.name.as_deref() == Some(APP_NAME), "{info:?}");
    ensure!(info.summary.as_deref() == Some(APP_SUMMARY), "{info:?}");
    // Versions come from AppStream: the drive's catalog, and the installed app's own file.
    ensure!(info.version.as_deref() == Some("v2"), "{info:?}");
    ensure!(
        app.version.as_deref() == Some("v2") && app.current_version.as_deref() == Some("v1"),
        "{:?} -> {:?}",
        app.current_version,
        app.version
    );
    let icon = info.icon.as_deref().expect("an icon");
    ensure!(
        icon.starts_with(&machine.cache.display().to_string()),
        "{icon}"
    );
    let png = std::fs::read(icon)?;
    ensure!(png.starts_with(b"\x89PNG"), "the cached icon is not a PNG");

    let text = machine.list_text(&[
        OsStr::new("--installation"),
        OsStr::new("user"),
        OsStr::new("--from"),
        drive.root.as_os_str(),
    ])?;
    ensure!(text.contains(APP_NAME), "{text}");
    ensure!(text.contains("v1 → v2"), "{text}");
    Ok(())
}

#[test]
fn an_app_update_needing_a_runtime_that_is_not_installed_brings_it() -> Result<()> {
    let tmp = TempDir::new()?;
    let scene = FlatpakFixture::new(tmp.path())?;
    let next_runtime = scene.publish_runtime("next")?;
    scene.publish_app(&AppSpec::new("v2").runtime_branch("next"))?;
    let drive = scene.drive_from_peer("peer", &tmp.path().join("stick"), &[APP_ID])?;
    let machine = Machine::new(tmp.path(), scene.client.vars())?;
    let app_ref = flatpak::app_ref(APP_ID, BRANCH)?;
    let runtime_ref = flatpak::runtime_ref(RUNTIME_ID, "next")?;

    let list = machine.list(&[
        OsStr::new("--installation"),
        OsStr::new("user"),
        OsStr::new("--from"),
        drive.root.as_os_str(),
        OsStr::new("--offline"),
    ])?;
    ensure!(list.problems.is_empty(), "{:#?}", list.problems);
    let app = update(&list, &app_ref)?;
    ensure!(app.needs == vec![runtime_ref.clone()], "{:?}", app.needs);
    let runtime = update(&list, &runtime_ref)?;
    ensure!(runtime.current_commit.is_none());
    ensure!(runtime.commit.to_hex() == next_runtime);
    ensure!(runtime.remote == REMOTE);
    ensure!(sources(runtime) == vec![location(&drive.repo.path)?]);
    ensure!(runtime.download_size > 0);
    ensure!(list.updates.len() == 2, "{:#?}", list.updates);
    Ok(())
}

#[test]
fn a_runtime_that_is_not_installed_comes_from_a_drive_only_if_current_or_offline() -> Result<()> {
    ferry_tests::http::isolate_network()?;
    let tmp = TempDir::new()?;
    let scene = FlatpakFixture::new(tmp.path())?;
    let drive_runtime = scene.publish_runtime("next")?;
    scene.publish_app(&AppSpec::new("v2").runtime_branch("next"))?;
    let drive = scene.drive_from_peer("peer", &tmp.path().join("stick"), &[APP_ID])?;
    let server = StaticServer::serve(&scene.repo.repo.path)?;
    scene.client.set_remote_url(REMOTE, &server.url)?;
    let machine = Machine::new(tmp.path(), scene.client.vars())?;
    let app_ref = flatpak::app_ref(APP_ID, BRANCH)?;
    let runtime_ref = flatpak::runtime_ref(RUNTIME_ID, "next")?;
    let drive_location = location(&drive.repo.path)?;
    let list_args = [
        OsStr::new("--installation"),
        OsStr::new("user"),
        OsStr::new("--from"),
        drive.root.as_os_str(),
    ];

    // The server offers the drive's commit: the drive is as new, and comes first.
    let list = machine.list(&list_args)?;
    ensure!(list.problems.is_empty(), "{:#?}", list.problems);
    let runtime = update(&list, &runtime_ref)?;
    ensure!(runtime.commit.to_hex() == drive_runtime);
    ensure!(
        sources(runtime) == vec![drive_location.clone(), server.url.clone()],
        "{:?}",
        sources(runtime)
    );

    // The server moves on: its newer commit is the one taken.
    let server_runtime = scene.publish_runtime("next")?;
    let list = machine.list(&list_args)?;
    let runtime = update(&list, &runtime_ref)?;
    ensure!(runtime.commit.to_hex() == server_runtime);
    ensure!(sources(runtime) == vec![server.url.clone()]);

    // The server no longer offers the runtime: nothing shows the drive's copy is current.
    scene
        .repo
        .repo
        .ostree()
        .args(["refs", "--delete"])
        .arg(&runtime_ref)
        .run()?;
    scene.repo.update_repo()?;
    let list = machine.list(&list_args)?;
    ensure!(
        list.updates.iter().all(|u| u.ref_name != runtime_ref),
        "{:#?}",
        list.updates
    );
    ensure!(update(&list, &app_ref)?.needs == vec![runtime_ref.clone()]);
    let refusal = problem(&list, ProblemKind::Unavailable, &drive_location)?;
    ensure!(refusal.ref_name.as_deref() == Some(runtime_ref.as_str()));
    ensure!(
        refusal.reason.contains(&server.url) && refusal.reason.contains("--offline"),
        "{}",
        refusal.reason
    );

    // Offline, by choice or because the server is gone, the drive's runtime is taken.
    let offline = machine.list_offline(&list_args)?;
    ensure!(offline.problems.is_empty(), "{:#?}", offline.problems);
    ensure!(update(&offline, &runtime_ref)?.commit.to_hex() == drive_runtime);
    let gone = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        format!("http://127.0.0.1:{}", listener.local_addr()?.port())
    };
    scene.client.set_remote_url(REMOTE, &gone)?;
    let unreachable = machine.list(&list_args)?;
    ensure!(update(&unreachable, &runtime_ref)?.commit.to_hex() == drive_runtime);
    problem(&unreachable, ProblemKind::Unavailable, &gone)?;
    Ok(())
}
