//! `ferryctl install` into a sysroot on a small loop-mounted ext4 filesystem: an OS update
//! larger than the free space is refused before any work, with how much is missing; one that
//! grows past the repository's reserve as it is unpacked stops there; one that fits only into
//! the blocks ext4 keeps for root installs, as it would with `ostree` as root.

mod install_support;

use std::path::{Path, PathBuf};

use anyhow::{ensure, Result};
use ferry_engine::schema::InstallStatus;
use ferry_tests::generate::{generate_tree, Bucket, GenSpec};
use ferry_tests::gpg::GpgKey;
use ferry_tests::loopdev::{FreeSpaceWatch, LoopDevice, LoopImage, Mount};
use ferry_tests::sysroot::{Sysroot, OS_REF};
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
    /// adds what `fill` writes into the directory it is given.
    fn create(
        size_mib: u64,
        root_percent: u8,
        fill: impl FnOnce(&Path) -> Result<()>,
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
        let payload = sysroot.os.data.join("usr/share/payload");
        std::fs::create_dir_all(&payload)?;
        fill(&payload)?;
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

/// `count` files of `mib` MiB of random data, which does not compress.
fn random_files(count: usize, mib: u64) -> impl FnOnce(&Path) -> Result<()> {
    move |dir| {
        let spec = GenSpec {
            buckets: vec![Bucket {
                count,
                min: mib * 1024 * 1024,
                max: mib * 1024 * 1024,
            }],
            files_per_dir: 100,
            seed: 3,
        };
        generate_tree(dir, &spec)?;
        Ok(())
    }
}

/// The refused install left the machine as it was: v1 is still the only deployment, and
/// the repository's refs are as they were and it passes fsck.
fn expect_unchanged(machine: &SysrootOnImage, refs_before: &[String]) -> Result<()> {
    let sysroot = &machine.sysroot;
    let repo = sysroot.repo();
    ensure!(sysroot.deployments()?.len() == 1);
    ensure!(sysroot.default_deployment()?.commit == sysroot.v1);
    ensure!(repo.refs()? == refs_before);
    repo.fsck()?;
    Ok(())
}

#[test]
fn too_little_space_is_refused_and_changes_nothing() -> Result<()> {
    // 48 MiB of update for a 32 MiB filesystem.
    let machine = SysrootOnImage::create(32, 5, random_files(12, 4))?;
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
    expect_unchanged(&machine, &refs_before)?;
    // Refused before any work: not one object was written.
    ensure!(repo.count_objects()? == objects_before);
    machine.remove()
}

/// An update that compresses well looks small on the drive and grows as it is unpacked. The
/// pull counts what it writes, as libostree does, and stops before the repository's reserve.
#[test]
fn an_update_that_grows_when_unpacked_stops_at_the_reserve() -> Result<()> {
    // Three 16 MiB files of one repeated byte each: a few KiB on the drive.
    let machine = SysrootOnImage::create(64, 5, |dir| {
        for byte in 1..=3u8 {
            std::fs::write(dir.join(format!("fill-{byte}")), vec![byte; 16 << 20])?;
        }
        Ok(())
    })?;
    let sysroot = &machine.sysroot;
    let reserve = 24u64 << 20;
    sysroot
        .repo()
        .config_set("core.min-free-space-size", "24MB")?;
    let refs_before = sysroot.repo().refs()?;
    let free = |path: &Path| -> Result<u64> {
        let disk = rustix::fs::statvfs(path)?;
        Ok(disk.f_bfree * disk.f_frsize)
    };
    let before = free(&sysroot.path)?;
    ensure!(
        before > reserve && before - reserve < 48 << 20,
        "the image leaves {before} bytes: the update would fit"
    );

    let watch = FreeSpaceWatch::start(&sysroot.path);
    let run = machine.install();
    let least = watch.stop()?;
    let run = run?;
    ensure!(!run.success(), "installed into the reserve:\n{run}");
    // Each object is charged before it is written, so the reserve is never entered.
    ensure!(least >= reserve, "free space went down to {least} bytes");
    let result = run.expect(OS_REF, InstallStatus::Failed)?;
    let message = result.message.as_deref().unwrap_or_default();
    ensure!(message.contains("not enough free space"), "{message}");
    expect_unchanged(&machine, &refs_before)?;
    // What the pull verified before it stopped may stay for the next try; the reserve stays.
    let after = free(&sysroot.path)?;
    ensure!(after >= reserve, "only {after} bytes are left");
    machine.remove()
}

/// libostree lets root write into the blocks ext4 keeps for root; so does Ferry. Only the
/// filesystem's root reserve is left free here, and the update still installs.
#[test]
fn root_installs_into_the_blocks_kept_for_root() -> Result<()> {
    // A quarter of the 64 MiB is kept for root; the update is 4 MiB.
    let machine = SysrootOnImage::create(64, 25, random_files(2, 2))?;
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
