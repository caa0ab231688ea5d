//! `ferryctl serve` for the serving tests: started on a repository, in a network namespace
//! or not ([`ferry_tests::lan::ServeProcess`]), and a raw HTTP GET.

#![allow(
    dead_code,
    reason = "each test file uses a different part of the helpers"
)]

use std::ffi::OsStr;
use std::path::Path;

use anyhow::Result;
pub use ferry_tests::lan::{http_get as get, ServeProcess as Server, PROCESS_WAIT};
use ferry_tests::lan::{ServeOptions, ServeProcess};

/// `[ip netns exec NAMESPACE] ferryctl -v serve --repo REPO ARGS...`, its log in `log`.
pub fn start(namespace: Option<&str>, repo: &Path, args: &[&str], log: &Path) -> Result<Server> {
    start_as(None, namespace, repo, args, log)
}

/// [`start`], with host name `host` (in a UTS namespace of its own) when given, so that it
/// advertises itself as "Ferry on HOST".
pub fn start_as(
    host: Option<&str>,
    namespace: Option<&str>,
    repo: &Path,
    args: &[&str],
    log: &Path,
) -> Result<Server> {
    let mut all: Vec<&OsStr> = vec![OsStr::new("--repo"), repo.as_os_str()];
    all.extend(args.iter().map(OsStr::new));
    let options = ServeOptions {
        namespace,
        host,
        ..ServeOptions::default()
    };
    Ok(ServeProcess::start(&options, &all, log)?)
}
