//! Counting what is written, and reporting it now and then.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::event::{Event, Reporter};

/// How often progress is reported.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(200);

/// Counts what is written and reports it now and then.
pub(super) struct Progress<'r> {
    pub(super) reporter: &'r dyn Reporter,
    objects_total: u64,
    bytes_total: u64,
    pub(super) objects: AtomicU64,
    pub(super) bytes: AtomicU64,
    started: Instant,
    last: Mutex<Instant>,
    label: String,
}

impl<'r> Progress<'r> {
    pub(super) fn new(
        reporter: &'r dyn Reporter,
        objects_total: u64,
        bytes_total: u64,
        drive: &Path,
    ) -> Self {
        let now = Instant::now();
        Self {
            reporter,
            objects_total,
            bytes_total,
            objects: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            started: now,
            last: Mutex::new(now),
            label: drive.display().to_string(),
        }
    }

    pub(super) fn add(&self, bytes: u64) {
        self.objects.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.report(false);
    }

    /// Bytes of a file that is not an object (a delta part or superblock).
    pub(super) fn add_bytes(&self, bytes: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.report(false);
    }

    pub(super) fn report(&self, force: bool) {
        {
            let Ok(mut last) = self.last.try_lock() else {
                if !force {
                    return;
                }
                return self.emit();
            };
            if !force && last.elapsed() < PROGRESS_INTERVAL {
                return;
            }
            *last = Instant::now();
        }
        self.emit();
    }

    fn emit(&self) {
        let bytes_done = self.bytes.load(Ordering::Relaxed);
        let elapsed = self.started.elapsed().as_secs_f64();
        let rate = if elapsed > 0.0 {
            (bytes_done as f64 / elapsed) as u64
        } else {
            0
        };
        let eta_seconds =
            (rate > 0).then(|| self.bytes_total.saturating_sub(bytes_done) / rate.max(1));
        self.reporter.on_event(Event::Progress {
            update: None,
            objects_done: self.objects.load(Ordering::Relaxed),
            objects_total: self.objects_total,
            bytes_done,
            bytes_total: self.bytes_total.max(bytes_done),
            rate,
            eta_seconds,
            source: Some(self.label.clone()),
            sources: Vec::new(),
        });
    }
}
