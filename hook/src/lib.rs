//! `ferry-hook`: runs as root when a drive appears, validates it, and records what it offers
//! for the desktop agent, `ferryctl` and Flatpak. See `run` for the steps of each command.

// What a drive, peer or file supplies is never unwrapped; tests may.
#![deny(clippy::unwrap_used)]

pub mod beneath;
pub mod device;
pub mod kiosk;
pub mod mountinfo;
pub mod reboot;
pub mod record;
pub mod run;
pub mod selfmount;
pub mod sideload;

pub mod validate;
