//! Progress as a stream of events: what `ferryctl --json` writes one per line and the desktop
//! app reads back with [`parse_line`]. The serialised shape is versioned (`"v": 1`) so a reader
//! can refuse a stream it does not understand.

use serde::{Deserialize, Serialize};

use crate::{DrivePlan, InstallResult, Problem, SourceState, SourceUse, Update};

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
    DrivePlan(DrivePlan),
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
}
