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

/// libostree lets root write into the blocks ext4 keeps for root; so does Ferry. Only the
/// filesystem's root reserve is left free here, and the update still installs.
#[test]
fn root_installs_into_the_blocks_kept_for_root() -> Result<()> {
    ferry_tests::require_root("a loop-mounted filesystem holding the sysroot")?;
    let tmp = tempfile::tempdir()?;
    let key = GpgKey::generate(&tmp.path().join("gnupg"), "OS Vendor <os@example.org>")?;
    // A quarter of the 64 MiB is kept for root.
    let image = LoopImage::create_reserving(&tmp.path().join("reserving.img"), 64, "ROOTONLY", 25)?;
    let device = image.attach()?;
    let mount = device.mount(&tmp.path().join("sysroot"), &[])?;
    let sysroot = Sysroot::create(tmp.path(), &key)?;
    sysroot
        .repo()
        .config_set("core.min-free-space-size", "1MB")?;

    let payload = GenSpec {
        buckets: vec![Bucket {
            count: 2,
            min: 2 * 1024 * 1024,
            max: 2 * 1024 * 1024,
        }],
        files_per_dir: 100,
        seed: 4,
    };
    generate_tree(&sysroot.os.data.join("usr/share/payload"), &payload)?;
    let v2 = sysroot.publish("2.0")?;
    let drive = sysroot.os.create_usb(&tmp.path().join("drive"))?;

    // Fill what unprivileged users may use; root's reserve stays.
    let filler = std::fs::File::create(sysroot.path.join("filler"))?;
    let disk = rustix::fs::statvfs(&sysroot.path)?;
    rustix::fs::fallocate(
        &filler,
        rustix::fs::FallocateFlags::empty(),
        0,
        disk.f_bavail * disk.f_frsize,
    )?;
    let disk = rustix::fs::statvfs(&sysroot.path)?;
    let unprivileged = disk.f_bavail * disk.f_frsize;
    ensure!(
        unprivileged < 4 * 1024 * 1024,
        "{unprivileged} bytes left to users"
    );

    let run = Machine::new(tmp.path(), Vec::new())?.install(&args(&[
        &"--sysroot",
        &sysroot.path,
        &"--from",
        &drive.root,
        &OS_REF,
    ]))?;
    ensure!(run.success(), "{run}");
    ensure!(sysroot.default_deployment()?.commit == v2, "{run}");
    sysroot.repo().fsck()?;

    drop(filler);
    sysroot.release_immutable()?;
    drop(sysroot);
    mount.unmount()?;
    device.detach()?;
    Ok(())
}
