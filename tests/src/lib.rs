//! Fixture builders for Ferry's integration tests. Everything here drives the real tools:
//! `ostree`, `gpg`, `flatpak`, `ostree admin`, `mkfs.ext4`/`losetup`/`mount`. Each builder
//! takes a base directory (usually a [`tempfile::TempDir`] the test owns) and returns a typed
//! handle.
//!
//! - [`gpg::GpgKey`]: throwaway signing keys.
//! - [`tree::Tree`]: the standard tree, the "many files" tree, edits for a second commit.
//! - [`ostree::OstreeRepo`]: init, commit, summary, remotes, pulls, create-usb, refs, fsck,
//!   checkout, object paths.
//! - [`compare`]: byte-for-byte comparison of checkouts, with modes, xattrs and ownership.
//! - [`publisher::Publisher`]: an OS publisher's signed archive repository holding 1.0.
//! - [`tamper`]: well-formed tampered objects, truncated and missing objects, forbidden names.
//! - [`flatpak`]: isolated installations, a hand-made runtime and app, signed repos, drives
//!   written by `flatpak create-usb` from a peer.
//! - [`sysroot::Sysroot`]: a fake sysroot with OS v1 deployed by `ostree admin`.
//! - [`booted::BootedSystem`]: one of its deployments run as the booted system, in mount and
//!   PID namespaces (root only).
//! - [`fusefs`]: FAT32 and exFAT drives through FUSE (root only).
//! - [`loopdev`]: ext4 images on loop devices, tmpfs mounts (root only).
//! - [`bins`]: the workspace's own binaries (`ferryctl`, `ferry-hook`).
//! - [`machine::MachineEnv`]: an isolated machine (run dir, trust root, home, Flatpak
//!   directories) for running them.
//! - [`http::StaticServer`]: a loopback HTTP server standing for upstream or a peer.
//! - [`lan`]: networks of namespaces (a veth pair, a rate-limited switch) and `ferryctl serve`
//!   running in them.
//! - [`generate`]: deterministic trees of random files (tests and benchmarks).
//! - [`hostile`]: the hostile corpus: crafted drives and peers, and the check of a refusal.
//! - [`demo`]: the demo scene `scripts/demo.sh` shows.
//! - [`journal`]: a socket receiving the journal entries Ferry writes, and real journal files
//!   made from them (`systemd-journal-remote`).

pub mod bins;
pub mod booted;
pub mod cmd;
pub mod compare;
pub mod demo;
pub mod error;
pub mod flatpak;
pub mod fusefs;
pub mod generate;
pub mod gpg;
pub mod heavy;
pub mod hostile;
pub mod http;
pub mod journal;
pub mod lan;
pub mod loopdev;
pub mod machine;
pub mod ostree;
pub mod publisher;
pub mod sysroot;
pub mod tamper;
pub mod tree;

pub use cmd::{assert_root, is_root, require_root, wait_for, Output, Tool};
pub use error::{FixtureError, Result};
