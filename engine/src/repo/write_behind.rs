//! Writing staged data back while a transaction goes on.
//!
//! The kernel starts writing dirty pages only past `vm.dirty_background_ratio` of memory (2.4 GB
//! on a machine with 24 GB), so without help a pull's data would all wait for the batch's
//! `syncfs`, and the disk would sit idle while the network or the drive is read. A
//! [`WriteBehind`] thread syncs the filesystem each time another [`WriteBehind::EVERY`] bytes
//! have been staged, so the batch's own sync finds little left to write. It only adds syncs;
//! what is durable when is still decided by the batches.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// What the thread waits on: how many syncs are asked for, and whether to stop.
#[derive(Default)]
struct Requests {
    wanted: u64,
    stop: bool,
}

#[derive(Default)]
struct Shared {
    requests: Mutex<Requests>,
    wake: Condvar,
    /// Syncs made, for tests.
    synced: AtomicU64,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Requests> {
        match self.requests.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

/// A thread that syncs one filesystem as staged bytes add up.
pub(super) struct WriteBehind {
    staged: AtomicU64,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl WriteBehind {
    /// Bytes staged between two syncs: large enough for the disk to write in long runs, small
    /// enough that a fast pull's final sync is short.
    pub(super) const EVERY: u64 = 32 << 20;

    /// Starts the thread, which syncs the filesystem holding `on`. `None` when no thread can be
    /// started: the batches' syncs are enough on their own.
    pub(super) fn start(on: OwnedFd) -> Option<Self> {
        let shared = Arc::new(Shared::default());
        let theirs = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("write-behind".into())
            .spawn(move || run(&on, &theirs))
            .map_err(|error| tracing::debug!("no write-behind thread: {error}"))
            .ok()?;
        Some(Self {
            staged: AtomicU64::new(0),
            shared,
            thread: Some(thread),
        })
    }

    /// Counts `bytes` more staged; asks for a sync each time another [`Self::EVERY`] is reached.
    pub(super) fn staged(&self, bytes: u64) {
        let before = self.staged.fetch_add(bytes, Ordering::Relaxed);
        if (before + bytes) / Self::EVERY > before / Self::EVERY {
            self.shared.lock().wanted += 1;
            self.shared.wake.notify_one();
        }
    }
}

fn run(on: &OwnedFd, shared: &Shared) {
    let mut done = 0;
    loop {
        {
            let mut requests = shared.lock();
            while requests.wanted == done && !requests.stop {
                requests = match shared.wake.wait(requests) {
                    Ok(guard) => guard,
                    Err(poisoned) => poisoned.into_inner(),
                };
            }
            if requests.stop {
                return;
            }
            // Requests made while a sync ran are served by the next one.
            done = requests.wanted;
        }
        if let Err(error) = rustix::fs::syncfs(on) {
            // The batch's own sync reports it; this one only starts the writing early.
            tracing::debug!("write-behind sync: {error}");
        }
        shared.synced.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for WriteBehind {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn staging() -> (tempfile::TempDir, OwnedFd) {
        let dir = tempfile::tempdir().expect("temp dir");
        let fd = OwnedFd::from(std::fs::File::open(dir.path()).expect("open"));
        (dir, fd)
    }

    #[test]
    fn a_sync_is_asked_for_each_time_another_share_is_staged() {
        let (_dir, fd) = staging();
        let behind = WriteBehind::start(fd).expect("thread");
        behind.staged(WriteBehind::EVERY - 1);
        assert_eq!(behind.shared.lock().wanted, 0);
        behind.staged(1);
        assert_eq!(behind.shared.lock().wanted, 1);
        behind.staged(2 * WriteBehind::EVERY + 5);
        assert_eq!(
            behind.shared.lock().wanted,
            2,
            "one request per crossing batch"
        );
    }

    #[test]
    fn the_thread_syncs_and_stops_when_dropped() {
        let (_dir, fd) = staging();
        let behind = WriteBehind::start(fd).expect("thread");
        let shared = Arc::clone(&behind.shared);
        behind.staged(WriteBehind::EVERY);
        let started = std::time::Instant::now();
        while shared.synced.load(Ordering::Relaxed) == 0 {
            assert!(started.elapsed().as_secs() < 30, "no sync was made");
            std::thread::yield_now();
        }
        for _ in 0..4 {
            behind.staged(WriteBehind::EVERY);
        }
        drop(behind);
        assert_eq!(Arc::strong_count(&shared), 1, "the thread is gone");
    }
}
