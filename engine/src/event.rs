//! Progress as a stream of events.
//!
//! The engine never prints. Long operations take a [`Reporter`] and describe what they do with
//! [`Event`]s; `ferryctl` renders them as progress bars or as JSON lines (`--json`), and the
//! desktop app reads those same lines back. The events and their JSON shape are defined in
//! `ferry-schema` and re-exported here.

pub use ferry_schema::event::*;

/// Receives events from the engine. Implementations must be cheap: `on_event` is called from
/// worker threads, and progress may arrive many times a second.
pub trait Reporter: Send + Sync {
    /// Receives one event; called from any thread, so it must not block for long.
    fn on_event(&self, event: Event);
}

/// A reporter that drops everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct SilentReporter;

impl Reporter for SilentReporter {
    fn on_event(&self, _event: Event) {}
}

/// Bytes as messages write them: `1.5 GB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_read_them() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1_500_000), "1.5 MB");
    }
}
