//! The drive's filesystem: its free space, its block size, and whether it is FAT32.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use super::plan::Planning;
use super::PrepareError;

/// The largest file FAT32 can hold.
const FAT32_MAX_FILE: u64 = (4 << 30) - 1;

/// `statfs` type of the kernel's FAT driver.
const MSDOS_SUPER_MAGIC: u64 = 0x4d44;

pub(super) struct DriveSpace {
    /// None when the filesystem does not report it (fusefat reports no blocks at all).
    pub(super) free: Option<u64>,
    block_size: u64,
    fat32: bool,
}

pub(super) fn drive_space(drive: &Path) -> Result<DriveSpace, PrepareError> {
    let stat = rustix::fs::statvfs(drive)
        .map_err(|e| PrepareError::io("measure free space of", drive.to_path_buf(), e.into()))?;
    let fs_type = rustix::fs::statfs(drive)
        .map(|s| s.f_type as u64)
        .unwrap_or(0);
    // FUSE filesystems all share one statfs type; their mount entry names them.
    let mounted_type = std::fs::canonicalize(drive).ok().and_then(|path| {
        let mut text = String::new();
        File::open("/proc/self/mountinfo")
            .and_then(|file| file.take(MAX_MOUNTINFO).read_to_string(&mut text))
            .ok()?;
        mount_type_of(&text, &path)
    });
    let fat_by_name = mounted_type
        .as_deref()
        .is_some_and(|name| matches!(name, "vfat" | "msdos" | "fuse.fusefat"));
    Ok(DriveSpace {
        free: (stat.f_blocks > 0).then(|| stat.f_bavail.saturating_mul(stat.f_frsize)),
        block_size: stat.f_bsize,
        fat32: fs_type == MSDOS_SUPER_MAGIC || fat_by_name,
    })
}

/// The largest `/proc/self/mountinfo` read.
pub(super) const MAX_MOUNTINFO: u64 = 4 << 20;

/// The filesystem type (`vfat`, `fuse.fusefat`, …) of the mount holding `path`, from the
/// text of `/proc/self/mountinfo`: the entry with the longest mount point above `path`, the
/// last one when mounts are stacked.
fn mount_type_of(mountinfo: &str, path: &Path) -> Option<String> {
    let mut best: Option<(usize, String)> = None;
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let Some(mount_point) = left.split(' ').nth(4) else {
            continue;
        };
        let Some(fs_type) = right.split(' ').next() else {
            continue;
        };
        let mount_point = unescape_mount_path(mount_point);
        if !path.starts_with(&mount_point) {
            continue;
        }
        let depth = Path::new(&mount_point).components().count();
        if best
            .as_ref()
            .is_none_or(|(best_depth, _)| depth >= *best_depth)
        {
            best = Some((depth, fs_type.to_owned()));
        }
    }
    best.map(|(_, fs_type)| fs_type)
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
pub(super) fn unescape_mount_path(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = bytes.get(index + 1..index + 4).and_then(|digits| {
            let digits = std::str::from_utf8(digits).ok()?;
            u8::from_str_radix(digits, 8).ok()
        });
        match (bytes[index], escaped) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                index += 4;
            }
            (byte, _) => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The bytes writing `planning` takes on the drive, each file rounded up to the drive's
/// blocks; refused up front when an object is larger than FAT32 can hold.
pub(super) fn bytes_to_write(space: &DriveSpace, planning: &Planning) -> Result<u64, PrepareError> {
    let cluster = space.block_size.max(512);
    let round = |size: u64| size.div_ceil(cluster).saturating_mul(cluster);
    let mut bytes: u64 = 0;
    let mut prefixes: BTreeSet<u8> = BTreeSet::new();
    for planned in planning.objects.iter().chain(&planning.commits) {
        let size = planned.size;
        if space.fat32 && size > FAT32_MAX_FILE {
            return Err(PrepareError::TooLargeForFat {
                object: planned.object,
                size,
            });
        }
        bytes = bytes.saturating_add(round(size));
        prefixes.insert(planned.object.checksum.as_bytes()[0]);
    }
    bytes = bytes.saturating_add(round(planning.delta_bytes));
    // New object directories, ref files with their directories, config, summary, and a
    // superblock and directories per delta.
    let overhead_files = prefixes.len() as u64
        + 4 * planning.carried.len() as u64
        + 16
        + 4 * planning.deltas.len() as u64;
    Ok(bytes.saturating_add(overhead_files.saturating_mul(cluster)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mount_holding_a_drive_names_its_filesystem() {
        let mountinfo = "\
22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw
51 22 0:41 / /media/my\\040stick rw,nosuid - fuse.fusefat fusefat rw,user_id=0
52 22 0:42 / /media/other rw - vfat /dev/sdb1 rw
";
        let of = |path: &str| mount_type_of(mountinfo, Path::new(path));
        assert_eq!(
            of("/media/my stick/.ostree").as_deref(),
            Some("fuse.fusefat")
        );
        assert_eq!(of("/media/other").as_deref(), Some("vfat"));
        assert_eq!(of("/media/otherwise").as_deref(), Some("ext4"));
        assert_eq!(of("/home/user").as_deref(), Some("ext4"));
    }
}
