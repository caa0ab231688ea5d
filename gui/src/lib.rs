//! Ferry's desktop app and background agent, as a library so tests can reach every part.
//!
//! - [`listing`]: what can be installed, by source (the engine's resolver, in-process).
//! - [`model`]: the state of an installation, from `ferryctl install --json` events.
//! - [`install`]: the installer child process.
//! - [`drive_copy`]: "Copy Updates to a Drive", from choosing a drive to removing it.
//! - [`sharing`]: the Preferences switch that shares this machine's updates nearby.
//! - [`history`]: the History page's entries, and going back to the previous OS version.
//! - [`agent`]: the drive watch and the notifications.
//! - [`app`]: the window.

// What a drive, peer or file supplies is never unwrapped; tests may.
#![deny(clippy::unwrap_used)]

pub mod agent;
pub mod app;
pub mod config;
pub mod drive_copy;
pub mod format;
pub mod history;
pub mod i18n;
pub mod install;
pub mod listing;
pub mod model;
pub mod sharing;
