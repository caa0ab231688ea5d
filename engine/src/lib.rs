//! Ferry's engine: everything Ferry knows about OSTree repositories, trust, update sources,
//! resolution and installation. No GTK and no terminal here; binaries render what the engine
//! reports through [`event::Reporter`].
//!
//! The module tree follows the data flow of an update:
//! - [`object`]: OSTree object formats (checksums, GVariant views, content headers, validation).
//! - [`repo`]: a repository on disk: config, refs, locks, reading and writing objects.
//! - [`scan`]: finding repositories on a drive without leaving it.
//! - [`trust`]: keys from the local machine, signature checks, bindings and anti-downgrade.
//! - [`source`]: where objects come from (drives, computers nearby, servers), behind one trait.
//! - [`lan`]: computers nearby: advertising a repository with DNS-SD and finding others.
//! - [`serve`]: serving an archive repository read-only to computers nearby, within limits.
//! - [`pull`]: choosing a commit, then fetching its closure from every source at once,
//!   verifying and storing it.
//! - [`appstream`]: AppStream catalogs of Flatpak apps (names, summaries, versions).
//! - [`target`]: what is installed: OS deployments, Flatpak installations, plain repositories.
//! - [`resolve`]: for each installed ref, the newest commit the machine trusts, over all sources.
//! - [`install`]: the install transaction: plan, checks, pull, then deploy.
//! - [`prepare`]: making update drives from this machine's OS and apps.
//! - [`deploy`]: handing a pulled commit to `ostree admin` and `flatpak`.
//! - [`privilege`]: what a run as root on a user's behalf (pkexec) may target and read.
//! - [`event`]: progress and results as a stream of events.
//! - [`schema`]: the JSON shapes shared with other processes (CLI output, drive records),
//!   re-exported from the `ferry-schema` crate.
//! - [`cancel`]: cooperative cancellation.
//! - [`causes`]: an error and its causes as one line of text.
//! - [`paths`]: Ferry's run dir, sideload dir and configuration file, read from the environment once.

// What a drive, peer or file supplies is never unwrapped; tests may.
#![deny(clippy::unwrap_used)]
// Every public item says what it is: `[lints] workspace = true` admits no per-crate
// additions, so the engine asks for this here.
#![warn(missing_docs)]

pub mod appstream;
pub mod cancel;
pub mod causes;
pub mod delta;
pub mod deploy;
pub mod event;
pub mod history;
pub mod install;
pub mod lan;
pub mod memory;
pub mod object;
mod parallel;
pub mod paths;
pub mod policy;
pub mod prepare;
pub mod privilege;
pub mod pull;
pub mod repo;
pub mod resolve;
pub mod scan;
pub mod serve;
pub mod sharing;
pub mod source;
pub mod target;
pub mod trust;

pub use ferry_schema as schema;
