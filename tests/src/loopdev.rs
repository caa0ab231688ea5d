//! Real drives for tests that need a block device or a mount: ext4 images on loop devices and
//! small tmpfs mounts. All of it needs root; these helpers fail (not skip) without it, since
//! the test command and CI run as root.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};

use crate::cmd::{require_root, Tool};
use crate::error::{FixtureError, IoContext, Result};

/// An ext4 filesystem image file.
#[derive(Debug, Clone)]
pub struct LoopImage {
    pub image: PathBuf,
    pub label: String,
}

impl LoopImage {
    /// Creates a sparse `size_mib` MiB image at `image` and formats it ext4 with `label`,
    /// keeping mkfs's default 5% of blocks for root.
    pub fn create(image: &Path, size_mib: u64, label: &str) -> Result<LoopImage> {
        LoopImage::create_reserving(image, size_mib, label, 5)
    }

    /// As [`LoopImage::create`], with `root_percent` of the blocks kept for root (`mkfs -m`).
    pub fn create_reserving(
        image: &Path,
        size_mib: u64,
        label: &str,
        root_percent: u8,
    ) -> Result<LoopImage> {
        let reserve = root_percent.to_string();
        LoopImage::create_with(image, size_mib, label, &["-m".as_ref(), reserve.as_ref()])
    }

    /// As [`LoopImage::create`], with more `mkfs.ext4` arguments: `-d DIR` to fill the
    /// filesystem from a directory, `-U UUID` to give it a chosen UUID.
    pub fn create_with(
        image: &Path,
        size_mib: u64,
        label: &str,
        mkfs_args: &[&OsStr],
    ) -> Result<LoopImage> {
        let blank = LoopImage::unformatted(image, size_mib)?;
        Tool::new("mkfs.ext4")
            .args(["-q", "-F", "-L", label])
            .args(mkfs_args)
            .arg(&blank.image)
            .run()?;
        Ok(LoopImage {
            label: label.to_string(),
            ..blank
        })
    }

    /// A sparse `size_mib` MiB image with no filesystem at all (an empty label).
    pub fn unformatted(image: &Path, size_mib: u64) -> Result<LoopImage> {
        require_root("a loop-mounted drive image")?;
        if let Some(parent) = image.parent() {
            fs::create_dir_all(parent).at("create directory", parent)?;
        }
        let file = fs::File::create(image).at("create image", image)?;
        file.set_len(size_mib * 1024 * 1024)
            .at("size image", image)?;
        Ok(LoopImage {
            image: image.to_path_buf(),
            label: String::new(),
        })
    }

    /// The filesystem's UUID as `blkid` reads it.
    pub fn uuid(&self) -> Result<String> {
        let out = Tool::new("blkid")
            .args(["-o", "value", "-s", "UUID"])
            .arg(&self.image)
            .stdout()?;
        Ok(out.trim().to_string())
    }

    /// Attaches the image to a free loop device (`losetup -f --show`).
    pub fn attach(&self) -> Result<LoopDevice> {
        require_root("attaching a loop device")?;
        let out = Tool::new("losetup")
            .args(["-f", "--show"])
            .arg(&self.image)
            .stdout()?;
        let device = PathBuf::from(out.trim());
        if !device.starts_with("/dev/") {
            return Err(FixtureError::Unexpected(format!(
                "losetup printed {out:?} instead of a device"
            )));
        }
        Ok(LoopDevice { device })
    }

    /// Mounts the image at `mountpoint` (created), runs `fill` on it, and unmounts: the way to
    /// put `create-usb` content on the drive before a test "inserts" it.
    pub fn populate<T>(
        &self,
        mountpoint: &Path,
        fill: impl FnOnce(&Path) -> Result<T>,
    ) -> Result<T> {
        let device = self.attach()?;
        let mount = device.mount(mountpoint, &[])?;
        let result = fill(mountpoint);
        mount.unmount()?;
        device.detach()?;
        result
    }
}

/// An attached loop device; detached on drop.
#[derive(Debug)]
pub struct LoopDevice {
    /// `/dev/loopN`.
    pub device: PathBuf,
}

impl LoopDevice {
    /// Kernel name, `loopN`.
    pub fn kernel_name(&self) -> String {
        self.device
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// Mounts the device at `mountpoint` (created) with `-o` options such as `ro`.
    pub fn mount(&self, mountpoint: &Path, options: &[&str]) -> Result<Mount> {
        Mount::new(&self.device, mountpoint, None, options)
    }

    /// Detaches now, reporting errors (drop ignores them).
    pub fn detach(self) -> Result<()> {
        let device = self.device.clone();
        std::mem::forget(self);
        Tool::new("losetup").arg("-d").arg(&device).run()?;
        Ok(())
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        // Whatever is still mounted from it (a failed test, a mount made by the program under
        // test) would keep the device busy: detach those mounts lazily first.
        if let Ok(table) = fs::read_to_string("/proc/self/mountinfo") {
            let source = format!(" {} ", self.device.display());
            for line in table.lines().rev().filter(|line| line.contains(&source)) {
                if let Some(point) = line.split(' ').nth(4) {
                    let _ = Tool::new("umount").arg("-l").arg(point).output();
                }
            }
        }
        let _ = Tool::new("losetup").arg("-d").arg(&self.device).output();
    }
}

/// A mounted filesystem; unmounted on drop.
#[derive(Debug)]
pub struct Mount {
    pub target: PathBuf,
}

impl Mount {
    /// `mount [-t FSTYPE] [-o OPTIONS] SOURCE TARGET`; `target` is created.
    pub fn new(
        source: &Path,
        target: &Path,
        fstype: Option<&str>,
        options: &[&str],
    ) -> Result<Mount> {
        require_root("mounting a filesystem")?;
        fs::create_dir_all(target).at("create mount point", target)?;
        let mut tool = Tool::new("mount");
        if let Some(fstype) = fstype {
            tool = tool.args(["-t", fstype]);
        }
        if !options.is_empty() {
            tool = tool.arg("-o").arg(options.join(","));
        }
        tool.arg(source).arg(target).run()?;
        Ok(Mount {
            target: target.to_path_buf(),
        })
    }

    /// A tmpfs of `size` (as `mount -o size=` takes it: `8m`, `512k`) at `target`, for
    /// out-of-space tests.
    pub fn tmpfs(target: &Path, size: &str) -> Result<Mount> {
        Mount::new(
            Path::new("tmpfs"),
            target,
            Some("tmpfs"),
            &[&format!("size={size}")],
        )
    }

    /// Unmounts now, reporting errors (drop ignores them).
    pub fn unmount(self) -> Result<()> {
        let target = self.target.clone();
        std::mem::forget(self);
        Tool::new("umount").arg(&target).run()?;
        Ok(())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let busy = Tool::new("umount").arg(&self.target).output();
        if !matches!(busy, Ok(ref out) if out.success()) {
            // Something still holds it open (a test's child); detach it lazily.
            let _ = Tool::new("umount").arg("-l").arg(&self.target).output();
        }
    }
}

/// Polls the free space of the filesystem holding a path (as root sees it: `f_bfree`) in a
/// background thread, keeping the least seen, so a test can check a reserve was never
/// entered while something ran.
#[derive(Debug)]
pub struct FreeSpaceWatch {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Result<u64>>,
}

impl FreeSpaceWatch {
    pub fn start(path: &Path) -> FreeSpaceWatch {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let path = path.to_path_buf();
        let thread = std::thread::spawn(move || -> Result<u64> {
            let mut least = u64::MAX;
            loop {
                least = least.min(free_bytes(&path)?);
                if flag.load(Ordering::Relaxed) {
                    return Ok(least);
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        });
        FreeSpaceWatch { stop, thread }
    }

    /// Stops polling; the least free space seen, in bytes.
    pub fn stop(self) -> Result<u64> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap_or_else(|_| {
            Err(FixtureError::Unexpected(
                "the free-space watcher panicked".to_owned(),
            ))
        })
    }
}

/// Free bytes on the filesystem holding `path`, root's reserve included.
pub fn free_bytes(path: &Path) -> Result<u64> {
    let stat = rustix::fs::statvfs(path)
        .map_err(std::io::Error::from)
        .at("statvfs", path)?;
    Ok(stat.f_bfree * stat.f_frsize)
}

/// Cuts the mounted ext4 filesystem at `mountpoint` off its device, as pulling the drive out
/// does: every later open, read and directory listing on it fails with EIO, while the mount
/// stays until it is unmounted (`EXT4_IOC_SHUTDOWN`, without flushing the journal).
// The ioctl has no safe wrapper.
#[allow(unsafe_code)]
pub fn shut_down_ext4(mountpoint: &Path) -> Result<()> {
    use rustix::ioctl::{ioctl, opcode, Opcode, Setter};
    // EXT4_IOC_SHUTDOWN is _IOR('X', 125, __u32); EXT4_GOING_FLAGS_NOLOGFLUSH is 2.
    const SHUTDOWN: Opcode = opcode::read::<u32>(b'X', 125);
    const NO_LOG_FLUSH: u32 = 2;
    require_root("shutting down a filesystem")?;
    let dir = fs::File::open(mountpoint).at("open", mountpoint)?;
    // SAFETY: EXT4_IOC_SHUTDOWN reads one u32 of flags through the pointer it is given, and
    // the Setter passes a pointer to exactly that.
    unsafe { ioctl(&dir, Setter::<SHUTDOWN, u32>::new(NO_LOG_FLUSH)) }
        .map_err(std::io::Error::from)
        .at("shut down the filesystem at", mountpoint)
}
