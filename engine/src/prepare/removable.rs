//! Mounted removable drives: the mounts of `/proc/self/mountinfo` whose block device the
//! kernel calls removable or which sits on a USB bus, found through `/sys/dev/block`.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::space::{unescape_mount_path, MAX_MOUNTINFO};

/// One mounted filesystem of a removable block device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovableMount {
    /// Where the filesystem is mounted.
    pub mount_point: PathBuf,
    /// The whole device (`/dev/sdb`), what `udisksctl power-off -b` takes.
    pub device: PathBuf,
    /// The device holding the filesystem (`/dev/sdb1`), what `udisksctl unmount -b` takes.
    pub filesystem: PathBuf,
    /// The filesystem's type, e.g. `vfat`.
    pub fs_type: String,
}

/// The removable mounts of this process's mount namespace.
pub fn this_machines_removable_mounts() -> Vec<RemovableMount> {
    let mut text = String::new();
    let read = std::fs::File::open("/proc/self/mountinfo")
        .and_then(|file| file.take(MAX_MOUNTINFO).read_to_string(&mut text));
    if read.is_err() {
        return Vec::new();
    }
    removable_mounts(&text, Path::new("/sys/dev/block"))
}

/// The mounts in `mountinfo` (the text of `/proc/self/mountinfo`) whose device, looked up in
/// `sys_dev_block` by `major:minor`, is removable or on USB. Only whole filesystems (root
/// `/`) count: a bind mount of a folder is not a drive.
pub fn removable_mounts(mountinfo: &str, sys_dev_block: &Path) -> Vec<RemovableMount> {
    let mut found = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = left.split(' ').collect();
        let (Some(numbers), Some(root), Some(mount_point)) =
            (fields.get(2), fields.get(3), fields.get(4))
        else {
            continue;
        };
        if *root != "/" {
            continue;
        }
        let Some(fs_type) = right.split(' ').next() else {
            continue;
        };
        let Some((device, filesystem)) = removable_disk(sys_dev_block, numbers) else {
            continue;
        };
        found.push(RemovableMount {
            mount_point: PathBuf::from(unescape_mount_path(mount_point)),
            device,
            filesystem,
            fs_type: fs_type.to_owned(),
        });
    }
    found
}

/// `/dev/DISK` and `/dev/NAME` for a block device `major:minor` that is removable or on USB;
/// for a partition, its disk decides.
fn removable_disk(sys_dev_block: &Path, numbers: &str) -> Option<(PathBuf, PathBuf)> {
    let (major, minor) = numbers.split_once(':')?;
    if major.parse::<u32>().is_err() || minor.parse::<u32>().is_err() {
        return None;
    }
    let device = std::fs::canonicalize(sys_dev_block.join(numbers)).ok()?;
    let filesystem = Path::new("/dev").join(device.file_name()?);
    let disk = if device.join("partition").exists() {
        device.parent()?.to_path_buf()
    } else {
        device
    };
    let removable =
        std::fs::read_to_string(disk.join("removable")).is_ok_and(|text| text.trim() == "1");
    let on_usb = disk.components().any(|part| {
        part.as_os_str()
            .to_str()
            .is_some_and(|name| name.starts_with("usb"))
    });
    if !removable && !on_usb {
        return None;
    }
    let name = disk.file_name()?;
    Some((Path::new("/dev").join(name), filesystem))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A sysfs with a USB stick (8:16, partition 8:17), a fixed disk (8:0, partition 8:1)
    /// and an SD card reader flagged removable (179:0).
    fn fake_sysfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let devices = dir.path().join("devices");
        let stick = devices.join("pci0000:00/0000:00:14.0/usb1/1-2/1-2:1.0/host6/block/sdb");
        let fixed = devices.join("pci0000:00/0000:00:17.0/ata1/host0/block/sda");
        let card = devices.join("platform/mmc0/block/mmcblk0");
        for (disk, removable) in [(&stick, "0"), (&fixed, "0"), (&card, "1")] {
            std::fs::create_dir_all(disk).expect("mkdir");
            std::fs::write(disk.join("removable"), format!("{removable}\n")).expect("write");
        }
        for (disk, part) in [(&stick, "sdb1"), (&fixed, "sda1")] {
            std::fs::create_dir_all(disk.join(part)).expect("mkdir");
            std::fs::write(disk.join(part).join("partition"), "1\n").expect("write");
        }
        let links = dir.path().join("dev/block");
        std::fs::create_dir_all(&links).expect("mkdir");
        for (numbers, target) in [
            ("8:17", stick.join("sdb1")),
            ("8:1", fixed.join("sda1")),
            ("179:0", card.clone()),
        ] {
            symlink(target, links.join(numbers)).expect("symlink");
        }
        dir
    }

    const MOUNTINFO: &str = "\
22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw
40 22 8:17 / /run/media/ann/KINGSTON\\040USB rw - vfat /dev/sdb1 rw
41 22 8:17 /photos /home/ann/photos rw - vfat /dev/sdb1 rw
42 22 179:0 / /media/CARD rw - exfat /dev/mmcblk0 rw
43 22 0:52 / /tmp rw - tmpfs tmpfs rw
garbage line
";

    #[test]
    fn usb_and_removable_devices_are_drives_and_fixed_disks_and_bind_mounts_are_not() {
        let sysfs = fake_sysfs();
        let found = removable_mounts(MOUNTINFO, &sysfs.path().join("dev/block"));
        assert_eq!(
            found,
            [
                RemovableMount {
                    mount_point: PathBuf::from("/run/media/ann/KINGSTON USB"),
                    device: PathBuf::from("/dev/sdb"),
                    filesystem: PathBuf::from("/dev/sdb1"),
                    fs_type: "vfat".to_owned(),
                },
                RemovableMount {
                    mount_point: PathBuf::from("/media/CARD"),
                    device: PathBuf::from("/dev/mmcblk0"),
                    filesystem: PathBuf::from("/dev/mmcblk0"),
                    fs_type: "exfat".to_owned(),
                },
            ]
        );
    }
}
