//! `ferryctl install` into a sysroot on a small loop-mounted ext4 filesystem: an OS update
//! larger than the free space is refused before any work, with how much is missing; one that
//! fits only into the blocks ext4 keeps for root installs, as it would with `ostree` as root.

mod install_support;

use std::path::PathBuf;

use anyhow::{ensure, Result};
use ferry_tests::generate::{generate_tree, Bucket, GenSpec};
use ferry_tests::gpg::GpgKey;
use ferry_tests::loopdev::{LoopDevice, LoopImage, Mount};
use ferry_tests::sysroot::Sysroot;
use install_support::{os_from_drive, InstallRun, Machine};
use tempfile::TempDir;

/// The fixture sysroot on its own ext4 image, with OS 2.0 on a drive outside it.
struct SysrootOnImage {
    tmp: TempDir,
    device: LoopDevice,
    mount: Mount,
    sysroot: Sysroot,
    /// The drive's root.
    drive: PathBuf,
    /// The commit of OS 2.0.
    v2: String,
}

impl SysrootOnImage {
    /// An image of `size_mib` MiB keeping `root_percent` of its blocks for root; OS 2.0
    /// adds `payload_files` files of `file_mib` MiB of random data.
    fn create(
        size_mib: u64,
        root_percent: u8,
        payload_files: usize,
        file_mib: u64,
    ) -> Result<Self> {
        ferry_tests::require_root("a loop-mounted filesystem holding the sysroot")?;
        let tmp = tempfile::tempdir()?;
        let key = GpgKey::generate(&tmp.path().join("gnupg"), "OS Vendor <os@example.org>")?;
        let image = LoopImage::create_reserving(
            &tmp.path().join("sysroot.img"),
            size_mib,
            "SMALL",
            root_percent,
        )?;
        let device = image.attach()?;
        let mount = device.mount(&tmp.path().join("sysroot"), &[])?;
        let sysroot = Sysroot::create(tmp.path(), &key)?;
        let payload = GenSpec {
            buckets: vec![Bucket {
                count: payload_files,
                min: file_mib * 1024 * 1024,
                max: file_mib * 1024 * 1024,
            }],
            files_per_dir: 100,
            seed: 3,
        };
        generate_tree(&sysroot.os.data.join("usr/share/payload"), &payload)?;
        let v2 = sysroot.publish("2.0")?;
        let drive = sysroot.os.create_usb(&tmp.path().join("drive"))?.root;
        Ok(SysrootOnImage {
            tmp,
            device,
            mount,
            sysroot,
            drive,
            v2,
        })
    }

    /// `ferryctl install --sysroot … --from DRIVE OS_REF`.
    fn install(&self) -> Result<InstallRun> {
        Machine::new(self.tmp.path(), Vec::new())?.install(&os_from_drive(
            &self.sysroot.path,
            &self.drive,
            &[],
        ))
    }

    /// Unmounts and detaches, reporting errors.
    fn remove(self) -> Result<()> {
        self.sysroot.release_immutable()?;
        drop(self.sysroot);
        self.mount.unmount()?;
        self.device.detach()?;
        Ok(())
    }
}

#[test]
fn too_little_space_is_refused_and_changes_nothing() -> Result<()> {
    // 48 MiB of update for a 32 MiB filesystem.
    let machine = SysrootOnImage::create(32, 5, 12, 4)?;
    let repo = machine.sysroot.repo();
    let refs_before = repo.refs()?;
    let objects_before = repo.count_objects()?;

    let run = machine.install()?;
    ensure!(!run.success(), "installed without the space for it:\n{run}");
    let stderr = &run.output.stderr;
    ensure!(stderr.contains("not enough free space"), "{stderr}");
    ensure!(stderr.contains("bytes are missing"), "{stderr}");
    ensure!(run.finished() == Some(false), "{run}");
    ensure!(run.results().is_empty(), "{run}");

    let sysroot = &machine.sysroot;
    ensure!(sysroot.deployments()?.len() == 1);
    ensure!(sysroot.default_deployment()?.commit == sysroot.v1);
    ensure!(repo.refs()? == refs_before);
    ensure!(repo.count_objects()? == objects_before);
    repo.fsck()?;
    machine.remove()
}

/// libostree lets root write into the blocks ext4 keeps for root; so does Ferry. Only the
/// filesystem's root reserve is left free here, and the update still installs.
#[test]
fn root_installs_into_the_blocks_kept_for_root() -> Result<()> {
    // A quarter of the 64 MiB is kept for root; the update is 4 MiB.
    let machine = SysrootOnImage::create(64, 25, 2, 2)?;
    let sysroot = &machine.sysroot;
    sysroot
        .repo()
        .config_set("core.min-free-space-size", "1MB")?;

    // Fill what unprivileged users may use.
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

    let run = machine.install()?;
    ensure!(run.success(), "{run}");
    ensure!(sysroot.default_deployment()?.commit == machine.v2, "{run}");
    sysroot.repo().fsck()?;
    drop(filler);
    machine.remove()
}
