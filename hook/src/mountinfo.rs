//! The mount table of this process's namespace, `/proc/self/mountinfo`, and waiting for it to
//! change. The kernel flags the file with `POLLPRI` on every mount or unmount, which is what
//! libmount and systemd watch too, so waiting needs no timer loop.

use std::io::{Read, Seek, SeekFrom};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags};

const MOUNTINFO: &str = "/proc/self/mountinfo";
/// Far above any real mount table; a larger one is refused rather than read.
const MAX_MOUNTINFO_BYTES: u64 = 16 * 1024 * 1024;

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// `major:minor` of the mounted filesystem (an anonymous number for btrfs and friends).
    pub major: u32,
    pub minor: u32,
    /// The directory within the filesystem that is mounted (`/` for a whole filesystem).
    pub root: PathBuf,
    pub mount_point: PathBuf,
    pub fs_type: String,
    /// The device or other source, as the filesystem names it (`/dev/sdb1`).
    pub source: String,
}

/// Undoes the octal escapes the kernel uses for space, tab, newline and backslash.
fn unescape_bytes(field: &str) -> Vec<u8> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let digits = &bytes[i + 1..i + 4];
            if digits.iter().all(|b| (b'0'..=b'7').contains(b)) {
                let value = digits
                    .iter()
                    .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
                if let Ok(value) = u8::try_from(value) {
                    out.push(value);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

fn unescape(field: &str) -> String {
    String::from_utf8_lossy(&unescape_bytes(field)).into_owned()
}

/// Paths may hold any bytes but NUL and '/'-separators; keep them exact.
fn unescape_path(field: &str) -> PathBuf {
    PathBuf::from(std::ffi::OsString::from_vec(unescape_bytes(field)))
}

/// Parses one mountinfo line; None for a line that does not have the documented shape.
pub fn parse_line(line: &str) -> Option<MountEntry> {
    let (before, after) = line.split_once(" - ")?;
    let mut fields = before.split(' ');
    let _mount_id = fields.next()?;
    let _parent_id = fields.next()?;
    let (major, minor) = fields.next()?.split_once(':')?;
    let root = fields.next()?;
    let mount_point = fields.next()?;
    let mut rest = after.split(' ');
    let fs_type = rest.next()?;
    let source = rest.next()?;
    Some(MountEntry {
        major: major.parse().ok()?,
        minor: minor.parse().ok()?,
        root: unescape_path(root),
        mount_point: unescape_path(mount_point),
        fs_type: unescape(fs_type),
        source: unescape(source),
    })
}

/// Parses a whole mount table, skipping lines that do not parse.
pub fn parse(text: &str) -> Vec<MountEntry> {
    text.lines().filter_map(parse_line).collect()
}

/// Reads the current mount table.
pub fn read() -> std::io::Result<Vec<MountEntry>> {
    let mut file = std::fs::File::open(MOUNTINFO)?;
    read_from(&mut file)
}

fn read_from(file: &mut std::fs::File) -> std::io::Result<Vec<MountEntry>> {
    file.seek(SeekFrom::Start(0))?;
    let mut text = String::new();
    file.take(MAX_MOUNTINFO_BYTES).read_to_string(&mut text)?;
    Ok(parse(&text))
}

/// Where the block device `devnum` with filesystem `fs_type` (udev's `ID_FS_TYPE`) is
/// mounted, first mount first. Only whole-filesystem mounts count, not bind mounts of a
/// subdirectory.
///
/// The device number the kernel gives the mounted filesystem decides, and the mount point's
/// own `st_dev` must agree: the source string is whatever the mounter said (a FUSE or tmpfs
/// mount can name `/dev/sdb1`). Filesystems that report an anonymous device number (btrfs)
/// are matched by source only when the kernel's filesystem type is that same block
/// filesystem, which no FUSE or tmpfs mount can claim.
pub fn mounts_of_device(
    table: &[MountEntry],
    devnum: (u32, u32),
    devnode: &Path,
    fs_type: Option<&str>,
) -> Vec<PathBuf> {
    let canonical_node = std::fs::canonicalize(devnode).unwrap_or_else(|_| devnode.to_path_buf());
    table
        .iter()
        .filter(|entry| entry.root == Path::new("/"))
        .filter(|entry| {
            if (entry.major, entry.minor) == devnum {
                return st_dev_of(&entry.mount_point) == Some(devnum);
            }
            let named =
                Path::new(&entry.source) == devnode || Path::new(&entry.source) == canonical_node;
            named
                && entry.major == 0
                && ANONYMOUS_DEVICE_FILESYSTEMS.contains(&entry.fs_type.as_str())
                && fs_type == Some(entry.fs_type.as_str())
        })
        .map(|entry| entry.mount_point.clone())
        .collect()
}

/// Block filesystems whose mounts carry an anonymous device number, not the device's.
const ANONYMOUS_DEVICE_FILESYSTEMS: &[&str] = &["btrfs"];

/// The device number of the filesystem mounted at `path`.
fn st_dev_of(path: &Path) -> Option<(u32, u32)> {
    let stat = rustix::fs::stat(path).ok()?;
    Some((
        rustix::fs::major(stat.st_dev),
        rustix::fs::minor(stat.st_dev),
    ))
}

/// Whether `path` is a mount point in `table`.
pub fn is_mount_point(table: &[MountEntry], path: &Path) -> bool {
    table.iter().any(|entry| entry.mount_point == path)
}

/// The entry mounted exactly at `path`, the topmost one when several are stacked.
pub fn entry_at<'a>(table: &'a [MountEntry], path: &Path) -> Option<&'a MountEntry> {
    table.iter().rev().find(|entry| entry.mount_point == path)
}

/// Watches the mount table for changes.
pub struct MountWatcher {
    file: std::fs::File,
}

impl MountWatcher {
    /// Opens the table. Changes after this call are seen by [`MountWatcher::wait_until`].
    pub fn open() -> std::io::Result<Self> {
        Ok(Self {
            file: std::fs::File::open(MOUNTINFO)?,
        })
    }

    /// The current table.
    pub fn table(&mut self) -> std::io::Result<Vec<MountEntry>> {
        read_from(&mut self.file)
    }

    /// Re-reads the table until `found` returns Some, waking on each change, or until
    /// `deadline` passes (then None).
    pub fn wait_until<T>(
        &mut self,
        deadline: Instant,
        mut found: impl FnMut(&[MountEntry]) -> Option<T>,
    ) -> std::io::Result<Option<T>> {
        loop {
            let table = self.table()?;
            if let Some(result) = found(&table) {
                return Ok(Some(result));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            self.wait_for_change(deadline - now)?;
        }
    }

    /// Blocks until the table changes or `timeout` passes.
    fn wait_for_change(&self, timeout: Duration) -> std::io::Result<()> {
        let timeout = rustix::event::Timespec {
            tv_sec: timeout.as_secs().try_into().unwrap_or(i64::MAX),
            tv_nsec: timeout.subsec_nanos().into(),
        };
        let fd = self.file.as_fd();
        let mut fds = [PollFd::new(&fd, PollFlags::PRI)];
        match poll(&mut fds, Some(&timeout)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines_with_optional_fields_and_escapes() {
        let line = "36 35 8:17 / /run/media/ann/MY\\040STICK rw,nosuid,nodev shared:1 master:2 \
                    - vfat /dev/sdb1 rw,uid=1000";
        let entry = parse_line(line).expect("parse the line");
        assert_eq!((entry.major, entry.minor), (8, 17));
        assert_eq!(entry.mount_point, PathBuf::from("/run/media/ann/MY STICK"));
        assert_eq!(entry.root, PathBuf::from("/"));
        assert_eq!(entry.fs_type, "vfat");
        assert_eq!(entry.source, "/dev/sdb1");
        assert_eq!(unescape("a\\134b\\011c"), "a\\b\tc");
        assert_eq!(unescape("trailing\\04"), "trailing\\04");
        assert!(parse_line("garbage").is_none());
        assert!(parse_line("1 2 x:y / /m rw - ext4 /dev/x rw").is_none());
    }

    #[test]
    fn finds_the_mounts_of_a_device_but_not_bind_mounts_of_subdirectories() {
        // `/` stands in for a mount whose st_dev is the device's: the root filesystem's own.
        let root_dev = st_dev_of(Path::new("/")).expect("stat /");
        let table = parse(&format!(
            "1 0 {}:{} / / rw - ext4 /dev/vda rw\n\
             2 1 7:0 / /mnt/a rw - ext4 /dev/loop0 rw\n\
             3 1 7:0 /sub /mnt/b rw - ext4 /dev/loop0 rw\n\
             4 1 0:55 / /mnt/c rw - btrfs /dev/loop1 rw\n\
             5 1 0:56 / /mnt/d rw - tmpfs /dev/loop2 rw\n\
             6 1 0:57 / /mnt/e rw - fuse.btrfs /dev/loop1 rw\n",
            root_dev.0, root_dev.1
        ));
        assert_eq!(
            mounts_of_device(&table, root_dev, Path::new("/dev/vda"), Some("ext4")),
            vec![PathBuf::from("/")]
        );
        // The table says 7:0, but nothing mounted at /mnt/a has that device number.
        assert!(mounts_of_device(&table, (7, 0), Path::new("/dev/loop0"), Some("ext4")).is_empty());
        assert_eq!(
            mounts_of_device(&table, (7, 1), Path::new("/dev/loop1"), Some("btrfs")),
            vec![PathBuf::from("/mnt/c")]
        );
        // Sources that name a device prove nothing.
        assert!(mounts_of_device(&table, (7, 2), Path::new("/dev/loop2"), Some("ext4")).is_empty());
        assert!(mounts_of_device(&table, (7, 1), Path::new("/dev/loop1"), Some("ext4")).is_empty());
        assert!(is_mount_point(&table, Path::new("/mnt/b")));
        assert!(!is_mount_point(&table, Path::new("/mnt")));
    }

    #[test]
    fn reads_this_process_table_and_times_out_without_changes() {
        let mut watcher = MountWatcher::open().expect("watch mounts");
        assert!(is_mount_point(
            &watcher.table().expect("read the mount table"),
            Path::new("/")
        ));
        let start = Instant::now();
        let found: Option<()> = watcher
            .wait_until(start + Duration::from_millis(200), |_| None)
            .expect("wait on the mount table");
        assert!(found.is_none());
        assert!(start.elapsed() >= Duration::from_millis(200));
    }
}
