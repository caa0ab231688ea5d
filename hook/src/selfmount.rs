//! Mounting a drive ourselves, for kiosks that have no udisks: read-only, `nosuid`, `nodev`,
//! `noexec`, under `$FERRY_RUN_DIR/mnt/<id>`.
//!
//! Inside `ferry-hook@.service` the hook runs in a mount namespace of its own (that is what
//! `ProtectSystem=` does), and a mount made there would be seen by nobody else. There it asks
//! systemd to mount through `systemd-mount`, whose mount unit lives in the host namespace and
//! is stopped with the device. Run directly (tests, other init systems), it calls mount(2).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use rustix::mount::{MountFlags, UnmountFlags};

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("cannot create the mount point {path}: {source}")]
    MountPoint {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot mount {device} on {path}: {message}")]
    Mount {
        device: PathBuf,
        path: PathBuf,
        message: String,
    },
    #[error("cannot unmount {path}: {message}")]
    Unmount { path: PathBuf, message: String },
}

/// How to mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mounter {
    /// mount(2) in this process's namespace.
    Direct,
    /// `systemd-mount`, for the host namespace.
    Systemd,
}

const OPTIONS: &str = "ro,nosuid,nodev,noexec";

/// Filesystems whose read-only mount would still replay a journal onto the device unless
/// told not to. The hook never writes to a drive.
fn no_journal_replay(fs_type: &str) -> Option<&'static str> {
    match fs_type {
        "ext3" | "ext4" => Some("noload"),
        "xfs" => Some("norecovery"),
        _ => None,
    }
}

/// Filesystems the kernel can mount from a block device, from `/proc/filesystems`.
fn block_filesystems() -> Vec<String> {
    let mut text = String::new();
    let read = std::fs::File::open("/proc/filesystems")
        .and_then(|f| f.take(64 * 1024).read_to_string(&mut text));
    if read.is_err() {
        return Vec::new();
    }
    text.lines()
        .filter(|line| !line.starts_with("nodev"))
        .map(|line| line.trim().to_owned())
        .filter(|name| !name.is_empty())
        .collect()
}

/// Mounts `device` on `target` read-only. `fs_type` comes from udev; without it the kernel's
/// block filesystems are tried in turn, as mount(8) does.
pub fn mount(
    mounter: Mounter,
    device: &Path,
    target: &Path,
    fs_type: Option<&str>,
) -> Result<(), MountError> {
    std::fs::create_dir_all(target).map_err(|source| MountError::MountPoint {
        path: target.to_path_buf(),
        source,
    })?;
    let mount_error = |message: String| MountError::Mount {
        device: device.to_path_buf(),
        path: target.to_path_buf(),
        message,
    };
    match mounter {
        Mounter::Systemd => {
            let mut options = OPTIONS.to_owned();
            if let Some(extra) = fs_type.and_then(no_journal_replay) {
                options.push(',');
                options.push_str(extra);
            }
            let mut command = Command::new("systemd-mount");
            // No fsck: it would write to the drive.
            command.args([
                "--no-block",
                "--collect",
                "--fsck=no",
                "--options",
                &options,
            ]);
            if let Some(fs_type) = fs_type {
                command.args(["--type", fs_type]);
            }
            command.arg(device).arg(target);
            run(command).map_err(mount_error)
        }
        Mounter::Direct => {
            let candidates = match fs_type {
                Some(fs_type) => vec![fs_type.to_owned()],
                None => block_filesystems(),
            };
            let flags =
                MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
            let mut last = String::from("no filesystem type to try");
            for fs_type in &candidates {
                let data = no_journal_replay(fs_type)
                    .map(|option| std::ffi::CString::new(option).unwrap_or_default());
                match rustix::mount::mount(device, target, fs_type.as_str(), flags, data.as_deref())
                {
                    Ok(()) => return Ok(()),
                    Err(errno) => last = format!("{fs_type}: {}", std::io::Error::from(errno)),
                }
            }
            let _ = std::fs::remove_dir(target);
            Err(mount_error(last))
        }
    }
}

/// Unmounts what [`mount`] mounted and removes the mount point.
pub fn unmount(mounter: Mounter, target: &Path) -> Result<(), MountError> {
    let unmount_error = |message: String| MountError::Unmount {
        path: target.to_path_buf(),
        message,
    };
    match mounter {
        Mounter::Systemd => {
            let mut command = Command::new("systemd-mount");
            command.arg("--umount").arg(target);
            run(command).map_err(unmount_error)?;
        }
        Mounter::Direct => match rustix::mount::unmount(target, UnmountFlags::DETACH) {
            Ok(()) | Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOENT) => {}
            Err(errno) => return Err(unmount_error(std::io::Error::from(errno).to_string())),
        },
    }
    let _ = std::fs::remove_dir(target);
    Ok(())
}

fn run(mut command: Command) -> Result<(), String> {
    let program = format!("{:?}", command.get_program());
    let output = command
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        Err(format!(
            "{program} failed ({}): {}",
            output.status,
            stderr.trim()
        ))
    }
}
