//! Progress as a stream of events.
//!
//! The engine never prints. Long operations take a [`Reporter`] and describe what they do with
//! [`Event`]s; `ferryctl` renders them as progress bars or as JSON lines (`--json`), and the
//! desktop app reads those same lines back with [`parse_line`]. The serialised shape is
//! versioned (`"v": 1`) so a reader can refuse a stream it does not understand.

use std::io::{self, BufRead};

use serde::{Deserialize, Serialize};

use crate::schema::{InstallResult, Problem, SourceState, SourceUse, Update};

/// The version of the JSON event stream. Bump it on any incompatible change.
pub const EVENT_STREAM_VERSION: u32 = 1;

/// The phase an operation is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Scan,
    Resolve,
    Pull,
    Deploy,
    Done,
}

/// One thing that happened. Serialised with an `event` tag, e.g. `{"event":"progress",...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// An operation, or one update within it (`update` = [`Update::id`]), entered a phase.
    Phase {
        phase: Phase,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        update: Option<String>,
    },
    /// What an install is about to do.
    Plan {
        updates: Vec<Update>,
        #[serde(default)]
        problems: Vec<Problem>,
    },
    /// Transfer progress. Totals may grow while a commit's closure is still being walked.
    Progress {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        update: Option<String>,
        objects_done: u64,
        objects_total: u64,
        bytes_done: u64,
        bytes_total: u64,
        /// Bytes per second over the last few seconds.
        #[serde(default)]
        rate: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        eta_seconds: Option<u64>,
        /// The source objects are currently read from, as a person would name it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source: Option<String>,
        /// Every source of the pull, with its share so far.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        sources: Vec<SourceUse>,
    },
    /// A source was set aside or dropped during a pull (or taken back into use).
    SourceState {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        update: Option<String>,
        source: String,
        state: SourceState,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Something a person should read, that is not an error of the whole operation.
    Message { level: MessageLevel, text: String },
    /// How one update ended. An install emits exactly one per planned update.
    Result(InstallResult),
    /// What `prepare-drive` will write, computed before writing (and all a dry run does).
    DrivePlan(crate::prepare::DrivePlan),
    /// The operation as a whole is over.
    Finished { ok: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageLevel {
    Info,
    Warning,
    Error,
}

/// An [`Event`] with the stream version, as written on one line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub v: u32,
    #[serde(flatten)]
    pub event: Event,
}

/// Receives events from the engine. Implementations must be cheap: `on_event` is called from
/// worker threads, and progress may arrive many times a second.
pub trait Reporter: Send + Sync {
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

/// Serialises an event as one JSON line, without the trailing newline.
pub fn to_line(event: &Event) -> String {
    let envelope = Envelope {
        v: EVENT_STREAM_VERSION,
        event: event.clone(),
    };
    // Serialising these plain data types cannot fail.
    serde_json::to_string(&envelope).unwrap_or_else(|_| String::from("{}"))
}

/// Why a line of an event stream was not understood.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("event stream version {found} is not supported (expected {EVENT_STREAM_VERSION})")]
    Version { found: u32 },
    #[error("malformed event line: {0}")]
    Malformed(#[from] serde_json::Error),
}

/// Parses one line of a `--json` event stream.
pub fn parse_line(line: &str) -> Result<Event, StreamError> {
    #[derive(Deserialize)]
    struct VersionOnly {
        v: u32,
    }
    let version: VersionOnly = serde_json::from_str(line)?;
    if version.v != EVENT_STREAM_VERSION {
        return Err(StreamError::Version { found: version.v });
    }
    let envelope: Envelope = serde_json::from_str(line)?;
    Ok(envelope.event)
}

/// What [`read_line_bounded`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum LineRead {
    Line,
    TooLong,
    Eof,
}

/// Reads up to the next newline into `line` (without it), refusing to hold more than `max`
/// bytes: an overlong line is consumed and reported, never buffered.
pub fn read_line_bounded(
    reader: &mut impl BufRead,
    line: &mut Vec<u8>,
    max: usize,
) -> io::Result<LineRead> {
    line.clear();
    let mut too_long = false;
    let mut read_any = false;
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            return Ok(match (read_any, too_long) {
                (false, _) => LineRead::Eof,
                (true, true) => LineRead::TooLong,
                (true, false) => LineRead::Line,
            });
        }
        read_any = true;
        let (chunk, consumed, end) = match available.iter().position(|&byte| byte == b'\n') {
            Some(at) => (&available[..at], at + 1, true),
            None => (available, available.len(), false),
        };
        if !too_long && line.len() + chunk.len() <= max {
            line.extend_from_slice(chunk);
        } else {
            too_long = true;
            line.clear();
        }
        reader.consume(consumed);
        if end {
            return Ok(if too_long {
                LineRead::TooLong
            } else {
                LineRead::Line
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_round_trips_through_a_line() {
        let event = Event::Progress {
            update: Some("flatpak:user:app/org.example.App/x86_64/stable".into()),
            objects_done: 3,
            objects_total: 10,
            bytes_done: 300,
            bytes_total: 1000,
            rate: 100,
            eta_seconds: Some(7),
            source: Some("KINGSTON".into()),
            sources: Vec::new(),
        };
        let line = to_line(&event);
        assert!(
            line.starts_with("{\"v\":1,\"event\":\"progress\""),
            "{line}"
        );
        assert_eq!(parse_line(&line).expect("parses"), event);
    }

    #[test]
    fn refuses_other_versions_and_garbage() {
        assert!(matches!(
            parse_line(r#"{"v":2,"event":"finished","ok":true}"#),
            Err(StreamError::Version { found: 2 })
        ));
        assert!(parse_line("not json").is_err());
        assert!(parse_line(r#"{"v":1,"event":"no_such_event"}"#).is_err());
    }

    #[test]
    fn bounded_lines_skip_what_is_too_long() {
        let mut reader =
            std::io::Cursor::new(b"short\nthis line is far too long\nok\nlast".to_vec());
        let mut line = Vec::new();
        let mut seen = Vec::new();
        loop {
            let read = read_line_bounded(&mut reader, &mut line, 10).expect("read");
            if read == LineRead::Eof {
                break;
            }
            seen.push((read, String::from_utf8_lossy(&line).into_owned()));
        }
        assert_eq!(
            seen,
            [
                (LineRead::Line, "short".to_owned()),
                (LineRead::TooLong, String::new()),
                (LineRead::Line, "ok".to_owned()),
                (LineRead::Line, "last".to_owned()),
            ]
        );
    }
}
