//! Giving what a privileged run wrote in a user's folder to that user. Root writes the drive's
//! repository there (the OS's bare objects need root to read), and the user's own run that
//! follows, for the apps only they have, must be able to add to it.
//!
//! Only what this run made is given: entries root owns, born since the run began (their
//! birth time, which moving an entry in from elsewhere does not change, where the filesystem
//! keeps one; else their change time), each changed through a descriptor of the entry itself
//! (so a name swapped meanwhile cannot redirect it). A file with more than one name is left
//! alone, since it could be a hard link the user made to a file of root's elsewhere.

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, StatxFlags, Uid};
use rustix::io::Errno;

use super::PinnedDrive;

/// The folder the repository is written under, relative to the drive.
const WRITTEN_TOP: &str = ".ostree";
/// Deeper than any repository path Ferry writes (refs have a few components).
const MAX_DEPTH: usize = 32;

/// Why the hand-over stopped.
#[derive(Debug, thiserror::Error)]
pub enum HandOverError {
    /// A system call failed on `path`.
    #[error("cannot give {path} to user {uid}: {source}")]
    Io {
        /// The entry, as the drive's path and the path below it.
        path: String,
        /// The user it was for.
        uid: u32,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// Folders nest deeper than any Ferry writes.
    #[error("cannot give {path} to user {uid}: more than {MAX_DEPTH} folders deep")]
    TooDeep {
        /// The folder too deep.
        path: String,
        /// The user it was for.
        uid: u32,
    },
}

#[derive(Clone, Copy)]
struct Owner {
    uid: Uid,
    gid: Gid,
    /// Entries born before this were not made by this run.
    since: SystemTime,
}

/// What the hand-over looks at of an entry.
struct Seen {
    uid: u32,
    links: u32,
    kind: FileType,
    /// Its birth time, or where the filesystem keeps none, its change time.
    born: SystemTime,
}

/// `statx` of `name` in `dir` (or of `dir` itself for an empty name), never following a
/// symlink.
fn seen(dir: impl AsFd, name: &CStr) -> Result<Seen, Errno> {
    let flags = if name.is_empty() {
        AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW
    } else {
        AtFlags::SYMLINK_NOFOLLOW
    };
    let stat = rustix::fs::statx(
        dir,
        name,
        flags,
        StatxFlags::BASIC_STATS | StatxFlags::BTIME,
    )?;
    let time = if stat.stx_mask & StatxFlags::BTIME.bits() != 0 {
        stat.stx_btime
    } else {
        stat.stx_ctime
    };
    let born = u64::try_from(time.tv_sec).map_or(UNIX_EPOCH, |seconds| {
        UNIX_EPOCH + Duration::new(seconds, time.tv_nsec.min(999_999_999))
    });
    Ok(Seen {
        uid: stat.stx_uid,
        links: stat.stx_nlink,
        kind: FileType::from_raw_mode(u32::from(stat.stx_mode)),
        born,
    })
}

impl PinnedDrive {
    /// Gives the entries under the drive's `.ostree` that this run made (root's, born since
    /// `since`) to the caller, with the drive folder's group, when the folder is the
    /// caller's. A removable drive's root that is not theirs is left as it is. Returns how
    /// many entries were given. Filesystems stamp times from a coarse clock, so `since`
    /// should be a little before the run began.
    pub fn hand_over(&self, since: SystemTime) -> Result<u64, HandOverError> {
        let caller = self.caller;
        let error = |path: &str, source: Errno| HandOverError::Io {
            path: format!("{}/{path}", self.shown.display()),
            uid: caller.uid,
            source: source.into(),
        };
        let folder = rustix::fs::fstat(&self.tree).map_err(|e| error("", e))?;
        if folder.st_uid != caller.uid {
            return Ok(0);
        }
        let owner = Owner {
            uid: Uid::from_raw(caller.uid),
            gid: Gid::from_raw(folder.st_gid),
            since,
        };
        let top = match open_dir(&self.tree, WRITTEN_TOP) {
            Ok(top) => top,
            Err(Errno::NOENT) => return Ok(0),
            Err(e) => return Err(error(WRITTEN_TOP, e)),
        };
        let mut given = 0;
        give_dir(&top, WRITTEN_TOP, owner, 0, &mut given).map_err(|failure| match failure {
            Failure::Io(path, e) => error(&path, e),
            Failure::TooDeep(path) => HandOverError::TooDeep {
                path: format!("{}/{path}", self.shown.display()),
                uid: caller.uid,
            },
        })?;
        Ok(given)
    }
}

enum Failure {
    Io(String, Errno),
    TooDeep(String),
}

fn open_dir<P: rustix::path::Arg>(parent: &OwnedFd, name: P) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Whether this run made the entry: root's, and born since the run began.
fn made_by_this_run(seen: &Seen, owner: Owner) -> bool {
    seen.uid == 0 && seen.born >= owner.since
}

/// Gives `dir`'s entries, then `dir` itself, so that while its entries are given a folder of
/// root's is still root's and nobody else can change them.
fn give_dir(
    dir: &OwnedFd,
    path: &str,
    owner: Owner,
    depth: usize,
    given: &mut u64,
) -> Result<(), Failure> {
    if depth > MAX_DEPTH {
        return Err(Failure::TooDeep(path.to_owned()));
    }
    let io = |name: &str, e: Errno| Failure::Io(format!("{path}/{name}"), e);
    let mut names = Vec::new();
    let mut listing = rustix::fs::Dir::read_from(dir).map_err(|e| io("", e))?;
    while let Some(entry) = listing.read() {
        let entry = entry.map_err(|e| io("", e))?;
        let name = entry.file_name();
        if name != c"." && name != c".." {
            names.push(name.to_owned());
        }
    }
    for name in names {
        let shown = name.to_string_lossy().into_owned();
        let stat = match seen(dir, &name) {
            Ok(stat) => stat,
            Err(Errno::NOENT) => continue,
            Err(e) => return Err(io(&shown, e)),
        };
        match stat.kind {
            FileType::Directory => match open_dir(dir, name.as_c_str()) {
                Ok(sub) => give_dir(&sub, &format!("{path}/{shown}"), owner, depth + 1, given)?,
                // Gone or swapped for something else since it was listed.
                Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => {}
                Err(e) => return Err(io(&shown, e)),
            },
            FileType::RegularFile if made_by_this_run(&stat, owner) => {
                give_file(dir, &name, owner, given).map_err(|e| io(&shown, e))?
            }
            _ => {}
        }
    }
    let own = seen(dir, c"").map_err(|e| io("", e))?;
    if own.kind == FileType::Directory && made_by_this_run(&own, owner) {
        rustix::fs::fchown(dir, Some(owner.uid), Some(owner.gid)).map_err(|e| io("", e))?;
        *given += 1;
    }
    Ok(())
}

/// Gives one file, checked and changed through a descriptor of it.
fn give_file(dir: &OwnedFd, name: &CString, owner: Owner, given: &mut u64) -> Result<(), Errno> {
    let file = match rustix::fs::openat(
        dir,
        name.as_c_str(),
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(file) => file,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e),
    };
    let stat = seen(&file, c"")?;
    if stat.kind == FileType::RegularFile && stat.links == 1 && made_by_this_run(&stat, owner) {
        rustix::fs::chownat(
            &file,
            c"",
            Some(owner.uid),
            Some(owner.gid),
            AtFlags::EMPTY_PATH,
        )?;
        *given += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use super::*;
    use crate::privilege::{pin_drive, Caller};

    const CALLER: Caller = Caller { uid: 1000 };
    const GROUP: u32 = 1001;

    fn owner_of(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).expect("stat").uid()
    }

    /// A scratch directory (kept while the first value lives), its canonical path, and in it
    /// a folder of the caller's holding what a run as root would write, with traps beside it.
    fn scene() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().canonicalize().expect("canonical");
        let folder = written_folder(&base);
        (dir, base, folder)
    }

    fn written_folder(base: &Path) -> PathBuf {
        ferry_tests::assert_root("files of several users (chown)");
        let folder = base.join("for-stick");
        let objects = folder.join(".ostree/repo/objects/ab");
        std::fs::create_dir_all(&objects).expect("mkdir");
        std::os::unix::fs::chown(&folder, Some(CALLER.uid), Some(GROUP)).expect("chown");
        std::fs::write(objects.join("cdef.filez"), b"object").expect("write");
        std::fs::write(folder.join(".ostree/repo/config"), b"[core]\n").expect("write");
        // Root's files elsewhere, reached by a hard link and a symlink from the drive.
        std::fs::write(base.join("roots-secret"), b"secret").expect("write");
        std::fs::hard_link(base.join("roots-secret"), objects.join("linked.filez")).expect("link");
        std::os::unix::fs::symlink(base.join("roots-secret"), objects.join("pointing.filez"))
            .expect("symlink");
        // Another user's file stays theirs.
        let others = folder.join(".ostree/repo/others");
        std::fs::write(&others, b"theirs").expect("write");
        std::os::unix::fs::chown(&others, Some(2000), Some(2000)).expect("chown");
        folder
    }

    #[test]
    fn what_root_made_in_the_callers_folder_becomes_theirs_and_nothing_else() {
        let (_dir, base, folder) = scene();
        let began = SystemTime::now() - Duration::from_secs(5);
        let pinned = pin_drive(CALLER, &folder, &[]).expect("pinned");

        let given = pinned.hand_over(began).expect("handed over");
        // .ostree, repo, objects, ab, the object and the config.
        assert_eq!(given, 6);
        for made in [
            ".ostree",
            ".ostree/repo",
            ".ostree/repo/objects/ab",
            ".ostree/repo/objects/ab/cdef.filez",
            ".ostree/repo/config",
        ] {
            let meta = std::fs::symlink_metadata(folder.join(made)).expect("stat");
            assert_eq!((meta.uid(), meta.gid()), (CALLER.uid, GROUP), "{made}");
        }
        assert_eq!(owner_of(&base.join("roots-secret")), 0);
        assert_eq!(
            owner_of(&folder.join(".ostree/repo/objects/ab/pointing.filez")),
            0
        );
        assert_eq!(owner_of(&folder.join(".ostree/repo/others")), 2000);
    }

    #[test]
    fn nothing_older_than_the_run_and_nothing_on_a_folder_not_the_callers_is_given() {
        let (_dir, _, folder) = scene();
        let pinned = pin_drive(CALLER, &folder, &[]).expect("pinned");
        let later = SystemTime::now() + Duration::from_secs(60);
        assert_eq!(pinned.hand_over(later).expect("handed over"), 0);
        assert_eq!(owner_of(&folder.join(".ostree/repo/config")), 0);

        // The folder given to someone else after the check: not the caller's to receive.
        std::os::unix::fs::chown(&folder, Some(2000), None).expect("chown");
        let began = SystemTime::now() - Duration::from_secs(5);
        assert_eq!(pinned.hand_over(began).expect("handed over"), 0);
        assert_eq!(owner_of(&folder.join(".ostree/repo/config")), 0);
    }

    fn born(path: &Path) -> SystemTime {
        std::fs::metadata(path)
            .expect("stat")
            .created()
            .expect("birth time")
    }

    /// A file of root's born before the run and moved into the folder during it keeps its
    /// owner: moving it in changed its change time, not its birth time.
    #[test]
    fn what_was_born_before_the_run_stays_as_it_was_though_moved_in() {
        let (_dir, base, folder) = scene();
        let old = base.join("roots-older-file");
        std::fs::write(&old, b"old").expect("write");
        // The run begins once the filesystem's clock has moved past the old file's birth.
        let marker = base.join("marker");
        let since = (0..1_000_000)
            .find_map(|_| {
                std::fs::write(&marker, b"").expect("write");
                let now = born(&marker);
                std::fs::remove_file(&marker).expect("remove");
                (now > born(&old)).then_some(now)
            })
            .expect("the clock moves");
        let fresh = folder.join(".ostree/repo/fresh");
        std::fs::write(&fresh, b"new").expect("write");
        let moved_in = folder.join(".ostree/repo/moved-in");
        std::fs::rename(&old, &moved_in).expect("rename");
        let pinned = pin_drive(CALLER, &folder, &[]).expect("pinned");

        assert_eq!(pinned.hand_over(since).expect("handed over"), 1);
        assert_eq!(owner_of(&fresh), CALLER.uid);
        assert_eq!(owner_of(&moved_in), 0);
    }

    #[test]
    fn folders_nested_past_the_limit_are_refused() {
        let (_dir, _, folder) = scene();
        let deep: PathBuf = std::iter::repeat_n("d", MAX_DEPTH + 2).collect();
        std::fs::create_dir_all(folder.join(".ostree").join(deep)).expect("mkdir");
        let pinned = pin_drive(CALLER, &folder, &[]).expect("pinned");
        let began = SystemTime::now() - Duration::from_secs(5);
        let refused = pinned.hand_over(began).expect_err("too deep");
        assert!(
            matches!(refused, HandOverError::TooDeep { .. }),
            "{refused}"
        );
    }
}
