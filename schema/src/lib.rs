//! The data Ferry's processes exchange, defined once so no binary formats JSON by hand:
//! - drive records the hook writes under the runtime dir ([`DriveRecord`]);
//! - listings (`ferryctl list --json`: [`UpdateList`] of [`Update`]s and [`Problem`]s) and
//!   scans ([`ScanReport`]);
//! - install results ([`InstallResult`]) and the versioned JSON event stream ([`event`]);
//! - the one bounded reader of JSON lines ([`JsonLines`]).
//!
//! It depends on serde alone, so every front end can read these without the engine's weight.

// What a drive, peer or file supplies is never unwrapped; tests may.
#![deny(clippy::unwrap_used)]

mod checksum;
pub mod event;
mod flatpak_ref;
pub mod lines;
mod records;

pub use checksum::{Checksum, InvalidChecksum};
pub use flatpak_ref::FlatpakRef;
pub use lines::{JsonLines, LineError, MAX_JSON_LINE_BYTES};
pub use records::*;
