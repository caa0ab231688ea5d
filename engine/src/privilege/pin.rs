//! Pinning a privileged run's drive. [`super::validate_drive`] checks a path, but the user may
//! own a directory on it and swap names or plant symlinks afterwards, while root writes
//! there by path. So root opens the checked directory once, without following links, checks
//! what it opened, and writes through a detached copy of that mount, limited to this
//! directory and with `MOUNT_ATTR_NOSYMFOLLOW`: names the user changes later are the user's
//! own, and no symlink below it is followed.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{Mode, OFlags, CWD};
use rustix::mount::OpenTreeFlags;

use super::{Caller, Refusal};
use crate::prepare::RemovableMount;

/// `MOUNT_ATTR_NOSYMFOLLOW` of `<linux/mount.h>` (Linux 5.10).
const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x0020_0000;

/// `struct mount_attr` of `<linux/mount.h>`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// A drive directory held open for a privileged run; [`PinnedDrive::path`] reaches it.
#[derive(Debug)]
pub struct PinnedDrive {
    pub(super) tree: OwnedFd,
    /// The user the run is for.
    pub(super) caller: Caller,
    /// The name people know it by, for messages.
    pub shown: PathBuf,
}

impl PinnedDrive {
    /// `/proc/self/fd/N`: the pinned directory, valid while this value lives.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.tree.as_raw_fd()))
    }
}

/// Opens `drive` (an absolute path without symlinks, as [`super::validate_drive`] returns it)
/// component by component without following links, checks that what was opened is a
/// directory `caller` owns or one of `removable`'s mount points, and detaches a copy of it
/// where symlinks are not followed.
// mount_setattr(2) has no wrapper in rustix.
#[allow(unsafe_code)]
pub fn pin_drive(
    caller: Caller,
    drive: &Path,
    removable: &[RemovableMount],
) -> Result<PinnedDrive, Refusal> {
    let refuse = |_| Refusal::Destination {
        uid: caller.uid,
        path: drive.to_path_buf(),
    };
    let opened = open_no_follow(drive).map_err(refuse)?;
    let stat = rustix::fs::fstat(&opened).map_err(refuse)?;
    let is_dir =
        rustix::fs::FileType::from_raw_mode(stat.st_mode) == rustix::fs::FileType::Directory;
    let mount_point = removable.iter().any(|mount| mount.mount_point == drive)
        && is_mount_root(&opened).unwrap_or(false);
    if !is_dir || (stat.st_uid != caller.uid && !mount_point) {
        return Err(refuse(rustix::io::Errno::PERM));
    }
    let tree = rustix::mount::open_tree(
        &opened,
        "",
        OpenTreeFlags::OPEN_TREE_CLONE
            | OpenTreeFlags::OPEN_TREE_CLOEXEC
            | OpenTreeFlags::AT_EMPTY_PATH,
    )
    .map_err(refuse)?;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_NOSYMFOLLOW,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let empty = c"";
    // SAFETY: mount_setattr(2) reads `attr` (its size is passed) and the empty path; both
    // outlive the call, and the descriptor is ours.
    let result = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if result != 0 {
        return Err(refuse(
            rustix::io::Errno::from_io_error(&std::io::Error::last_os_error())
                .unwrap_or(rustix::io::Errno::INVAL),
        ));
    }
    Ok(PinnedDrive {
        tree,
        caller,
        shown: drive.to_path_buf(),
    })
}

/// Opens an absolute path as `O_PATH`, refusing a symlink in any component.
fn open_no_follow(path: &Path) -> rustix::io::Result<OwnedFd> {
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut current = rustix::fs::openat(CWD, "/", flags, Mode::empty())?;
    for component in path.components() {
        match component {
            Component::RootDir => {}
            Component::Normal(name) => {
                current = rustix::fs::openat(&current, name.as_bytes(), flags, Mode::empty())?;
            }
            // A checked path is absolute and has neither `.` nor `..`.
            _ => return Err(rustix::io::Errno::INVAL),
        }
    }
    Ok(current)
}

/// Whether the directory is the root of a mount (its parent is on another device, or it is
/// its own parent).
fn is_mount_root(dir: &OwnedFd) -> rustix::io::Result<bool> {
    let parent = rustix::fs::openat(
        dir,
        "..",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let (here, above) = (rustix::fs::fstat(dir)?, rustix::fs::fstat(&parent)?);
    Ok(here.st_dev != above.st_dev || here.st_ino == above.st_ino)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CALLER: Caller = Caller { uid: 1000 };

    #[track_caller]
    fn users_folder(base: &Path) -> PathBuf {
        ferry_tests::assert_root("giving a folder to another user (chown)");
        let folder = base.join("for-stick");
        std::fs::create_dir_all(&folder).expect("mkdir");
        std::os::unix::fs::chown(&folder, Some(CALLER.uid), None).expect("chown");
        folder
    }

    #[test]
    fn writes_go_to_the_pinned_folder_even_after_the_user_swaps_its_name() {
        let base = tempfile::tempdir().expect("tempdir");
        let base = base.path().canonicalize().expect("canonical");
        let folder = users_folder(&base);
        let pinned = pin_drive(CALLER, &folder, &[]).expect("pinned");
        // The user moves the folder away and puts a link to root's directory in its place.
        let roots = base.join("roots");
        std::fs::create_dir(&roots).expect("mkdir");
        std::fs::rename(&folder, base.join("moved")).expect("rename");
        std::os::unix::fs::symlink(&roots, &folder).expect("symlink");
        std::fs::write(pinned.path().join("written"), b"x").expect("write");
        assert!(base.join("moved/written").is_file());
        assert!(!roots.join("written").exists());
    }

    #[test]
    fn no_symlink_below_the_pinned_folder_is_followed() {
        let base = tempfile::tempdir().expect("tempdir");
        let base = base.path().canonicalize().expect("canonical");
        let folder = users_folder(&base);
        let roots = base.join("roots");
        std::fs::create_dir(&roots).expect("mkdir");
        let pinned = pin_drive(CALLER, &folder, &[]).expect("pinned");
        std::os::unix::fs::symlink(&roots, folder.join(".ostree")).expect("symlink");
        let written = std::fs::create_dir_all(pinned.path().join(".ostree/repo"));
        assert!(written.is_err(), "followed the link");
        assert!(!roots.join("repo").exists());
        // Through the path itself the link would have been followed.
        std::fs::create_dir_all(folder.join(".ostree/repo")).expect("through the link");
        assert!(roots.join("repo").is_dir());
    }

    #[test]
    fn only_the_callers_folder_or_a_removable_mount_point_is_pinned() {
        let base = tempfile::tempdir().expect("tempdir");
        let base = base.path().canonicalize().expect("canonical");
        let roots = base.join("roots");
        std::fs::create_dir(&roots).expect("mkdir");
        assert!(matches!(
            pin_drive(CALLER, &roots, &[]),
            Err(Refusal::Destination { .. })
        ));
        // Named as a removable drive, but not a mount point.
        let named = [RemovableMount {
            mount_point: roots.clone(),
            device: PathBuf::from("/dev/sdb"),
            filesystem: PathBuf::from("/dev/sdb1"),
            fs_type: "vfat".to_owned(),
        }];
        assert!(matches!(
            pin_drive(CALLER, &roots, &named),
            Err(Refusal::Destination { .. })
        ));
        // A symlink in the path is refused even to the caller's own folder.
        let folder = users_folder(&base);
        let link = base.join("link");
        std::os::unix::fs::symlink(&folder, &link).expect("symlink");
        assert!(matches!(
            pin_drive(CALLER, &link.join("."), &[]),
            Err(Refusal::Destination { .. })
        ));
        assert!(matches!(
            pin_drive(CALLER, &link, &[]),
            Err(Refusal::Destination { .. })
        ));
    }
}
