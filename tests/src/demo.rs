//! The demo scene `scripts/demo.sh` builds with `ferry-fixture demo DIR`: a signed OS update
//! on a drive written by `ostree create-usb`, and machines to apply it to.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};
use crate::gpg::GpgKey;
use crate::ostree::{OstreeRepo, RemoteSpec, RepoMode, UsbDrive};
use crate::sysroot::{Sysroot, OS_COLLECTION_ID, OS_REF, OS_REMOTE};

/// Everything the demo made, under one directory.
#[derive(Debug)]
pub struct DemoScene {
    pub dir: PathBuf,
    pub key: GpgKey,
    /// The update drive: OS version 2.0, signed, in `.ostree/repo`.
    pub drive: UsbDrive,
    /// A plain bare-user repository with remote [`OS_REMOTE`] trusting the vendor key, at
    /// version 1.0: the destination for `ferryctl pull`.
    pub target_repo: OstreeRepo,
    /// A fake sysroot with OS 1.0 deployed.
    pub sysroot: Sysroot,
    pub v1: String,
    pub v2: String,
}

/// Builds the scene in `dir` (created; must be empty or absent).
pub fn build(dir: &Path) -> Result<DemoScene> {
    fs::create_dir_all(dir).at("create demo directory", dir)?;
    let key = GpgKey::generate(
        &dir.join("vendor-gnupg"),
        "ExampleOS Vendor <os@example.org>",
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

    let v2 = sysroot.publish("2.0")?;
    let drive = sysroot.os.create_usb(&dir.join("drive"))?;
    Ok(DemoScene {
        dir: dir.to_path_buf(),
        key,
        drive,
        target_repo,
        sysroot,
        v1,
        v2,
    })
}
