//! Watching `$FERRY_RUN_DIR/drives` with inotify: a thread blocks in poll(2) on the inotify
//! descriptor, so changes arrive as they happen, with no polling interval.
//!
//! The directory may not exist yet (the runtime dir is created when the first drive
//! appears, or by tmpfiles at boot). Then the nearest existing ancestor is watched until the
//! directory is created, and watching falls back there again if it is removed.

use std::io;
use std::path::{Path, PathBuf};
use std::thread;

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};
use rustix::event::{PollFd, PollFlags};

/// The watching thread; it lives as long as the process.
pub struct DriveWatcher {
    _thread: thread::JoinHandle<()>,
}

impl DriveWatcher {
    /// Calls `on_change` (from the watching thread) whenever records may have appeared,
    /// changed or gone.
    pub fn start(drives_dir: PathBuf, on_change: impl Fn() + Send + 'static) -> io::Result<Self> {
        let mut state = WatchState::new(drives_dir)?;
        let thread = thread::Builder::new()
            .name("drive-watch".into())
            .spawn(move || loop {
                let mut fds = [PollFd::new(&state.inotify, PollFlags::IN)];
                match rustix::event::poll(&mut fds, None) {
                    Ok(_) | Err(rustix::io::Errno::INTR) => {}
                    Err(error) => {
                        tracing::error!(%error, "watching the drive records failed; restart Ferry to see new drives");
                        return;
                    }
                }
                if state.take_changes() {
                    on_change();
                }
            })?;
        Ok(Self { _thread: thread })
    }
}

/// The inotify instance and what it watches; usable without a main loop (tests).
pub struct WatchState {
    inotify: Inotify,
    target: PathBuf,
    watch: Option<(WatchDescriptor, PathBuf)>,
    buffer: Vec<u8>,
}

impl WatchState {
    pub fn new(target: PathBuf) -> io::Result<Self> {
        let mut state = Self {
            inotify: Inotify::init()?,
            target,
            watch: None,
            buffer: vec![0; 16 * 1024],
        };
        state.arm();
        Ok(state)
    }

    /// The directory watched now: the drives dir, or its nearest existing ancestor.
    pub fn watched(&self) -> Option<&Path> {
        self.watch.as_ref().map(|(_, path)| path.as_path())
    }

    /// Watches the drives dir, or its nearest existing ancestor. A directory on the way may
    /// appear between looking for it and watching its parent, unseen by the new watch (the
    /// writer makes the whole path at once); then the watch moves down until none did.
    fn arm(&mut self) {
        // Bounded: each round finds the path one level deeper, or it was removed again.
        for _ in 0..=self.target.components().count() {
            self.arm_nearest();
            let Some(watched) = self.watched() else {
                return;
            };
            let below = self
                .target
                .ancestors()
                .find(|dir| dir.parent() == Some(watched));
            if !below.is_some_and(Path::is_dir) {
                return;
            }
        }
    }

    fn arm_nearest(&mut self) {
        let mut watches = self.inotify.watches();
        if let Some((descriptor, _)) = self.watch.take() {
            // Already gone when the directory was removed; nothing to undo then.
            let _ = watches.remove(descriptor);
        }
        for dir in self.target.ancestors() {
            let mask = if dir == self.target {
                WatchMask::CLOSE_WRITE
                    | WatchMask::MOVED_TO
                    | WatchMask::MOVED_FROM
                    | WatchMask::DELETE
                    | WatchMask::DELETE_SELF
                    | WatchMask::MOVE_SELF
                    | WatchMask::ONLYDIR
            } else {
                WatchMask::CREATE
                    | WatchMask::MOVED_TO
                    | WatchMask::DELETE_SELF
                    | WatchMask::MOVE_SELF
                    | WatchMask::ONLYDIR
            };
            match watches.add(dir, mask) {
                Ok(descriptor) => {
                    tracing::debug!(dir = %dir.display(), "watching for drive records");
                    self.watch = Some((descriptor, dir.to_path_buf()));
                    return;
                }
                Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                Err(error) => {
                    tracing::warn!(dir = %dir.display(), %error, "cannot watch for drive records");
                    return;
                }
            }
        }
    }

    /// Reads the queued events. True when the records may have changed; re-arms the watch
    /// when the directory appeared or went away.
    pub fn take_changes(&mut self) -> bool {
        let mut changed = false;
        let mut rearm = false;
        let watching_target = self.watched() == Some(self.target.as_path());
        let current = self
            .watch
            .as_ref()
            .map(|(descriptor, _)| descriptor.clone());
        loop {
            let events = match self.inotify.read_events(&mut self.buffer) {
                Ok(events) => events,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) => {
                    tracing::warn!(%error, "reading inotify events failed");
                    break;
                }
            };
            let mut any = false;
            for event in events {
                any = true;
                if event.mask.contains(EventMask::Q_OVERFLOW) {
                    rearm = true;
                    changed = true;
                    continue;
                }
                // Events of a watch given up on earlier (its final IGNORED) say nothing new.
                if current.as_ref() != Some(&event.wd) {
                    continue;
                }
                if event
                    .mask
                    .intersects(EventMask::DELETE_SELF | EventMask::MOVE_SELF | EventMask::IGNORED)
                {
                    rearm = true;
                    changed = true;
                } else if watching_target {
                    changed = true;
                } else {
                    // Something appeared next to or above the drives dir: maybe the path to it.
                    rearm = true;
                }
            }
            if !any {
                break;
            }
        }
        if rearm {
            let before = self.watched().map(Path::to_path_buf);
            self.arm();
            let now_target = self.watched() == Some(self.target.as_path());
            // Records may already be in a directory that just appeared.
            changed |= now_target || before.as_deref() == Some(self.target.as_path());
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn write_atomically(dir: &Path, name: &str, text: &str) {
        let temporary = dir.join(format!(".{name}.tmp"));
        fs::write(&temporary, text).expect("write");
        fs::rename(&temporary, dir.join(name)).expect("rename");
    }

    #[test]
    fn follows_the_drives_dir_from_creation_to_removal() {
        let run = tempfile::tempdir().expect("tempdir");
        let drives = run.path().join("ferry/drives");
        let mut state = WatchState::new(drives.clone()).expect("inotify");
        assert_eq!(state.watched(), Some(run.path()));
        assert!(!state.take_changes(), "nothing happened yet");

        fs::create_dir(run.path().join("ferry")).expect("mkdir");
        state.take_changes();
        assert_eq!(state.watched(), Some(run.path().join("ferry").as_path()));

        fs::create_dir(&drives).expect("mkdir");
        assert!(state.take_changes(), "the drives dir appeared");
        assert_eq!(state.watched(), Some(drives.as_path()));

        write_atomically(&drives, "kingston.json", "{}");
        assert!(state.take_changes(), "a record was written");
        assert!(!state.take_changes(), "events are consumed");

        fs::write(drives.join("direct.json"), "{}").expect("write");
        assert!(state.take_changes(), "a record written in place");

        fs::remove_file(drives.join("kingston.json")).expect("rm");
        assert!(state.take_changes(), "a record was removed");

        fs::remove_file(drives.join("direct.json")).expect("rm");
        fs::remove_dir(&drives).expect("rmdir");
        assert!(state.take_changes(), "the drives dir went away");
        assert_eq!(state.watched(), Some(run.path().join("ferry").as_path()));

        fs::create_dir(&drives).expect("mkdir");
        write_atomically(&drives, "again.json", "{}");
        assert!(state.take_changes());
        assert_eq!(state.watched(), Some(drives.as_path()));
    }
}
