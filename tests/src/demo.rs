//! The demo scene `scripts/demo.sh` builds with `ferry-fixture demo DIR`, and the end-to-end
//! test replays: one update drive, written the way `ostree create-usb` and
//! `flatpak create-usb` write it, holding a signed OS update and two app updates (with the
//! runtime they now need), and a machine at the older versions to apply them to.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{FixtureError, IoContext, Result};
use crate::flatpak::{self, AppSpec, FlatpakEnv, FlatpakRepo};
use crate::generate::{Bucket, GenSpec};
use crate::gpg::GpgKey;
use crate::ostree::{OstreeRepo, RemoteSpec, RepoMode, UsbDrive};
use crate::sysroot::{Sysroot, OS_COLLECTION_ID, OS_REF, OS_REMOTE};

/// The drive's directory name; without a filesystem label it is what the desktop shows.
pub const DRIVE_NAME: &str = "EXAMPLE-USB";
/// The Flatpak remote the machine's apps come from.
pub const APPS_REMOTE: &str = flatpak::REMOTE;
/// The runtime branch the installed apps run on, and the one their updates need.
pub const OLD_RUNTIME_BRANCH: &str = "23.08";
pub const NEW_RUNTIME_BRANCH: &str = "24.08";

/// One app of the demo: installed at `old`, offered at `new`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoApp {
    pub id: &'static str,
    pub name: &'static str,
    pub old: &'static str,
    pub new: &'static str,
}

/// The two apps, with the names AppStream gives them.
pub const APPS: [DemoApp; 2] = [
    DemoApp {
        id: "org.example.Notes",
        name: "Notes",
        old: "1.0",
        new: "1.1",
    },
    DemoApp {
        id: "org.example.Weather",
        name: "Weather",
        old: "3.1",
        new: "3.2",
    },
];

impl DemoApp {
    fn spec(&self, version: &str, runtime_branch: &str) -> AppSpec {
        AppSpec::new(version)
            .id(self.id)
            .name(self.name)
            .runtime_branch(runtime_branch)
    }
}

/// About 8 MB of new files in each app update, so progress has something to show.
fn update_payload(seed: u64) -> GenSpec {
    GenSpec {
        buckets: vec![
            Bucket {
                count: 200,
                min: 8 * 1024,
                max: 32 * 1024,
            },
            Bucket {
                count: 2,
                min: 1536 * 1024,
                max: 2560 * 1024,
            },
        ],
        files_per_dir: 50,
        seed,
    }
}

/// An app's commits: the one installed and the one on the drive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppCommits {
    pub app: DemoApp,
    pub installed: String,
    pub offered: String,
}

/// Everything the demo made, under one directory.
#[derive(Debug)]
pub struct DemoScene {
    pub dir: PathBuf,
    /// The OS vendor's key; the machine's sysroot trusts it.
    pub key: GpgKey,
    /// The app vendor's key; the machine's Flatpak remote trusts it.
    pub apps_key: GpgKey,
    /// The update drive, `DIR/EXAMPLE-USB`: OS 2.0 and both apps' new versions, with the
    /// runtime branch they need and the AppStream data, all in `.ostree/repo`.
    pub drive: UsbDrive,
    /// A plain bare-user repository with remote [`OS_REMOTE`] trusting the vendor key, at
    /// version 1.0: the destination for `ferryctl pull`.
    pub target_repo: OstreeRepo,
    /// The machine's fake sysroot with OS 1.0 deployed.
    pub sysroot: Sysroot,
    /// The machine's user: HOME, XDG and FLATPAK directories in `DIR/machine/user`, with
    /// both apps installed per-user at their old versions on runtime branch
    /// [`OLD_RUNTIME_BRANCH`].
    pub user: FlatpakEnv,
    pub v1: String,
    pub v2: String,
    pub apps: Vec<AppCommits>,
}

impl DemoScene {
    /// The per-user Flatpak installation (`FLATPAK_USER_DIR`).
    pub fn user_installation(&self) -> PathBuf {
        self.user.user_installation()
    }

    /// What a process needs to see this machine as its own: the user's HOME, XDG and
    /// FLATPAK directories (`FLATPAK_USER_DIR` included), and `OSTREE_SYSROOT`.
    pub fn machine_vars(&self) -> Vec<(String, OsString)> {
        let mut vars = self.user.vars();
        vars.push((
            "FLATPAK_USER_DIR".into(),
            self.user_installation().into_os_string(),
        ));
        vars.push((
            "OSTREE_SYSROOT".into(),
            self.sysroot.path.clone().into_os_string(),
        ));
        vars
    }
}

/// Builds the scene in `dir` (created; must be empty or absent).
pub fn build(dir: &Path) -> Result<DemoScene> {
    if fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(FixtureError::Unexpected(format!(
            "{} is not empty; choose a new folder for the demo, or remove this one with `ferry-fixture clean`",
            dir.display()
        )));
    }
    fs::create_dir_all(dir).at("create demo directory", dir)?;
    let key = GpgKey::generate(
        &dir.join("vendor-gnupg"),
        "ExampleOS Vendor <os@example.org>",
    )?;
    let apps_key = GpgKey::generate(
        &dir.join("apps-vendor-gnupg"),
        "Example Apps <apps@example.org>",
    )?;
    let machine = dir.join("machine");
    let sysroot = Sysroot::create(&machine, &key)?;
    let v1 = sysroot.v1.clone();

    let target_repo = OstreeRepo::init(&dir.join("target-repo"), RepoMode::BareUser, None)?;
    target_repo.remote_add(
        &RemoteSpec::file(OS_REMOTE, &sysroot.os.repo.path)
            .collection_id(OS_COLLECTION_ID)
            .trust(&key),
    )?;
    target_repo.pull(OS_REMOTE, &[OS_REF])?;

    // The app vendor publishes the old versions; the machine's user installs them.
    let vendor = dir.join("apps-vendor");
    let apps_repo = FlatpakRepo::new(
        &vendor.join("repo"),
        &vendor.join("staging"),
        flatpak::COLLECTION_ID,
        &apps_key,
    )?;
    apps_repo.publish_runtime(OLD_RUNTIME_BRANCH)?;
    let mut installed = Vec::new();
    for app in &APPS {
        installed.push(apps_repo.publish_app(&app.spec(app.old, OLD_RUNTIME_BRANCH))?);
    }
    let user = FlatpakEnv::new(&machine.join("user"))?;
    user.remote_add(
        APPS_REMOTE,
        &apps_repo.repo.path,
        &apps_key,
        Some(flatpak::COLLECTION_ID),
    )?;
    let ids: Vec<&str> = APPS.iter().map(|app| app.id).collect();
    user.install(APPS_REMOTE, &ids, &[])?;

    // Then the new versions, on a runtime branch the machine does not have. A peer
    // installs them and writes the drive; the OS vendor adds OS 2.0 to the same drive.
    apps_repo.publish_runtime(NEW_RUNTIME_BRANCH)?;
    let mut apps = Vec::new();
    for ((app, installed), seed) in APPS.iter().zip(installed).zip(1..) {
        let spec = app
            .spec(app.new, NEW_RUNTIME_BRANCH)
            .payload(update_payload(seed));
        let offered = apps_repo.publish_app(&spec)?;
        apps.push(AppCommits {
            app: app.clone(),
            installed,
            offered,
        });
    }
    let peer = FlatpakEnv::new(&vendor.join("peer"))?;
    peer.remote_add(
        APPS_REMOTE,
        &apps_repo.repo.path,
        &apps_key,
        Some(flatpak::COLLECTION_ID),
    )?;
    peer.install(APPS_REMOTE, &ids, &[])?;
    let drive_root = dir.join(DRIVE_NAME);
    peer.create_usb(&drive_root, &ids)?;

    let v2 = sysroot.publish("2.0")?;
    let drive = sysroot.os.create_usb(&drive_root)?;
    Ok(DemoScene {
        dir: dir.to_path_buf(),
        key,
        apps_key,
        drive,
        target_repo,
        sysroot,
        user,
        v1,
        v2,
        apps,
    })
}
