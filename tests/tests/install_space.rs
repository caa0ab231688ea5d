//! `ferryctl install` into a sysroot on a small loop-mounted ext4 filesystem, with an OS
//! update larger than the free space: refused before any work, with how much is missing.

mod install_support;

use anyhow::{ensure, Result};
use ferry_tests::generate::{generate_tree, Bucket, GenSpec};
use ferry_tests::gpg::GpgKey;
use ferry_tests::loopdev::LoopImage;
use ferry_tests::sysroot::{Sysroot, OS_REF};
use install_support::{args, Machine};

#[test]
fn too_little_space_is_refused_and_changes_nothing() -> Result<()> {
    ferry_tests::require_root("a loop-mounted filesystem holding the sysroot")?;
    let tmp = tempfile::tempdir()?;
    let key = GpgKey::generate(&tmp.path().join("gnupg"), "OS Vendor <os@example.org>")?;
    let image = LoopImage::create(&tmp.path().join("small.img"), 32, "SMALL")?;
    let device = image.attach()?;
    let mount = device.mount(&tmp.path().join("sysroot"), &[])?;
    let sysroot = Sysroot::create(tmp.path(), &key)?;

    // v2 carries 48 MiB of random data: more than the 32 MiB filesystem holds.
    let payload = GenSpec {
        buckets: vec![Bucket {
            count: 12,
            min: 4 * 1024 * 1024,
            max: 4 * 1024 * 1024,
        }],
        files_per_dir: 100,
        seed: 3,
    };
    generate_tree(&sysroot.os.data.join("usr/share/payload"), &payload)?;
    sysroot.publish("2.0")?;
    let drive = sysroot.os.create_usb(&tmp.path().join("drive"))?;
    let repo = sysroot.repo();
    let refs_before = repo.refs()?;
    let objects_before = repo.count_objects()?;

    let run = Machine::new(tmp.path(), Vec::new())?.install(&args(&[
        &"--sysroot",
        &sysroot.path,
        &"--from",
        &drive.root,
        &OS_REF,
    ]))?;
    ensure!(!run.success(), "installed without the space for it:\n{run}");
    let stderr = &run.output.stderr;
    ensure!(stderr.contains("not enough free space"), "{stderr}");
    ensure!(stderr.contains("bytes are missing"), "{stderr}");
    ensure!(run.finished() == Some(false), "{run}");
    ensure!(run.results().is_empty(), "{run}");

    ensure!(sysroot.deployments()?.len() == 1);
    ensure!(sysroot.default_deployment()?.commit == sysroot.v1);
    ensure!(repo.refs()? == refs_before);
    ensure!(repo.count_objects()? == objects_before);
    repo.fsck()?;

    sysroot.release_immutable()?;
    drop(sysroot);
    mount.unmount()?;
    device.detach()?;
    Ok(())
}
