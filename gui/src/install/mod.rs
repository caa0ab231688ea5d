//! Installing runs `ferryctl install --json` as a child process, through `pkexec` when the
//! target needs root, and turns its event stream into [`crate::model::InstallRun`] updates.

pub mod request;
pub mod runner;

pub use request::{InstallRequest, Launch};
pub use runner::{RunnerEvent, RunningInstall};
