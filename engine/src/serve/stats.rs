//! The day's count of computers that fetched objects from this one and the bytes they took
//! ([`crate::sharing::DayStats`]), kept in a file so the Preferences switch can show it after
//! a socket-activated server has exited.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::sharing::DayStats;

/// The file is rewritten at most this often while requests come in, and once at the end.
const WRITE_EVERY: Duration = Duration::from_secs(2);

/// Counts object requests and keeps the count in a file.
#[derive(Debug)]
pub struct ServeStats {
    path: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    day: DayStats,
    last_write: Option<Instant>,
    unwritten: bool,
}

impl ServeStats {
    /// Goes on from what `path` holds (a server started again the same day).
    pub fn open(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            state: Mutex::new(State {
                day: DayStats::read(path).unwrap_or_default(),
                last_write: None,
                unwritten: false,
            }),
        }
    }

    /// One object of `bytes` sent to `client`.
    pub fn record(&self, client: IpAddr, bytes: u64) {
        let mut state = self.lock();
        state.day.record(client, bytes);
        state.unwritten = true;
        if state
            .last_write
            .is_none_or(|last| last.elapsed() >= WRITE_EVERY)
        {
            self.write(&mut state);
        }
    }

    /// Writes what was counted since the last write.
    pub fn flush(&self) {
        let mut state = self.lock();
        if state.unwritten {
            self.write(&mut state);
        }
    }

    fn write(&self, state: &mut State) {
        if let Err(error) = state.day.write(&self.path) {
            tracing::warn!(error = %crate::causes::Causes(&error), path = %self.path.display(), "cannot keep the day's count");
        }
        state.last_write = Some(Instant::now());
        state.unwritten = false;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_survive_a_restart_of_the_server() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("today.json");
        let stats = ServeStats::open(&path);
        stats.record("10.0.0.2".parse().expect("address"), 10);
        stats.record("10.0.0.3".parse().expect("address"), 5);
        stats.flush();
        let again = ServeStats::open(&path);
        again.record("10.0.0.2".parse().expect("address"), 1);
        again.flush();
        let day = DayStats::read(&path).expect("stats");
        assert_eq!((day.computers, day.bytes), (2, 16));
    }
}
