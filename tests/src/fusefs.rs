//! FAT32 and exFAT drives through FUSE, for kernels without those drivers: `mkfs.vfat` with
//! `fusefat -o rw+ IMAGE DIR`, and `mkfs.exfat` on a loop device with `mount.exfat-fuse`.
//! Both behave as real sticks do for Ferry's purposes: no symlinks, no hard links, modes
//! that cannot be set. Root only (loop devices, FUSE mounts).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cmd::{require_root, wait_for, Tool};
use crate::error::{IoContext, Result};

/// Which filesystem a [`FuseDrive`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FatKind {
    Fat32,
    Exfat,
}

/// A mounted FUSE FAT32 or exFAT filesystem on an image file; unmounted (and its loop device
/// detached) on drop.
#[derive(Debug)]
pub struct FuseDrive {
    pub mountpoint: PathBuf,
    pub image: PathBuf,
    loop_device: Option<PathBuf>,
    mounted: bool,
}

impl FuseDrive {
    /// Creates a `size_mib` MiB image at `image`, formats it as `kind` (exFAT on the image
    /// file, as mkfs.exfat allows) and mounts it at `mountpoint` (created).
    pub fn create(kind: FatKind, image: &Path, mountpoint: &Path, size_mib: u64) -> Result<Self> {
        require_root("a FUSE FAT drive")?;
        if let Some(parent) = image.parent() {
            fs::create_dir_all(parent).at("create directory", parent)?;
        }
        let file = fs::File::create(image).at("create image", image)?;
        file.set_len(size_mib * 1024 * 1024)
            .at("size image", image)?;
        drop(file);
        match kind {
            FatKind::Fat32 => {
                Tool::new("mkfs.vfat")
                    .args(["-F", "32", "-n", "FERRYTEST"])
                    .arg(image)
                    .run()?;
            }
            FatKind::Exfat => {
                Tool::new("mkfs.exfat")
                    .args(["-L", "FERRYTEST"])
                    .arg(image)
                    .run()?;
            }
        }
        FuseDrive::create_existing(kind, image, mountpoint)
    }

    /// Mounts the formatted image `image` at `mountpoint` (created).
    pub fn create_existing(kind: FatKind, image: &Path, mountpoint: &Path) -> Result<Self> {
        require_root("a FUSE FAT drive")?;
        fs::create_dir_all(mountpoint).at("create mount point", mountpoint)?;
        let mut drive = FuseDrive {
            mountpoint: mountpoint.to_path_buf(),
            image: image.to_path_buf(),
            loop_device: None,
            mounted: false,
        };
        match kind {
            FatKind::Fat32 => {
                Tool::new("fusefat")
                    .args(["-o", "rw+"])
                    .arg(image)
                    .arg(mountpoint)
                    .run()?;
            }
            FatKind::Exfat => {
                let device = Tool::new("losetup")
                    .args(["-f", "--show"])
                    .arg(image)
                    .stdout()?;
                let device = PathBuf::from(device.trim());
                drive.loop_device = Some(device.clone());
                Tool::new("mount.exfat-fuse")
                    .arg(&device)
                    .arg(mountpoint)
                    .run()?;
            }
        }
        drive.mounted = true;
        let target = mountpoint.to_path_buf();
        wait_for::<crate::error::FixtureError>(
            "the FUSE mount to appear",
            Duration::from_secs(10),
            || Ok(is_mount_point(&target)),
        )?;
        Ok(drive)
    }

    /// Unmounts (waiting for the FUSE daemon to write everything) and detaches the loop device.
    pub fn unmount(mut self) -> Result<()> {
        self.release()
    }

    fn release(&mut self) -> Result<()> {
        if self.mounted {
            self.mounted = false;
            Tool::new("umount").arg(&self.mountpoint).run()?;
        }
        if let Some(device) = self.loop_device.take() {
            // The FUSE daemon may still hold the device for a moment after umount returns.
            let mut last = Ok(());
            for _ in 0..50 {
                last = Tool::new("losetup")
                    .arg("-d")
                    .arg(&device)
                    .run()
                    .map(|_| ());
                if last.is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            last?;
        }
        Ok(())
    }
}

impl Drop for FuseDrive {
    fn drop(&mut self) {
        let _ = self.release();
    }
}

/// True when `path` is listed as a mount point in `/proc/self/mounts`.
fn is_mount_point(path: &Path) -> bool {
    let Ok(mounts) = fs::read_to_string("/proc/self/mounts") else {
        return false;
    };
    let wanted = path.to_string_lossy();
    mounts
        .lines()
        .filter_map(|line| line.split_whitespace().nth(1))
        .any(|target| target == wanted)
}
