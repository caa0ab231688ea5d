//! Locating Ferry's own binaries (`ferryctl`, `ferry-hook`, `ferry`) from a test, and reading
//! the events they print.
//!
//! Cargo gives integration tests the paths of their own package's binaries only, so the
//! binaries are found next to the running test executable: `target/<profile>/deps/<test>`
//! → `target/<profile>/<binary>`. `FERRY_BIN_DIR` overrides the directory.

use std::path::PathBuf;

use crate::cmd::Tool;
use crate::error::{FixtureError, Result};

/// The directory holding the workspace's binaries for the current build profile.
pub fn bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("FERRY_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let exe = std::env::current_exe().map_err(|e| {
        FixtureError::Requirement(format!("cannot find the running test executable: {e}"))
    })?;
    let dir = exe.parent().ok_or_else(|| {
        FixtureError::Requirement(format!("test executable {} has no parent", exe.display()))
    })?;
    let dir = if dir.ends_with("deps") {
        dir.parent().unwrap_or(dir)
    } else {
        dir
    };
    Ok(dir.to_path_buf())
}

/// Path of the workspace binary `name`; fails with what to run when it was not built.
pub fn binary(name: &str) -> Result<PathBuf> {
    let path = bin_dir()?.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(FixtureError::Requirement(format!(
            "{} does not exist: build the workspace first with `cargo build --workspace` (or set \
             FERRY_BIN_DIR to the directory holding {name})",
            path.display()
        )))
    }
}

/// `ferryctl`, ready for arguments.
pub fn ferryctl() -> Result<Tool> {
    Ok(Tool::new(binary("ferryctl")?))
}

/// `ferry-hook`, ready for arguments.
pub fn ferry_hook() -> Result<Tool> {
    Ok(Tool::new(binary("ferry-hook")?))
}

/// The events of a `--json` run's standard output, one JSON line each (blank lines skipped).
pub fn parse_events(stdout: &str) -> Result<Vec<ferry_engine::event::Event>> {
    stdout
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            ferry_engine::event::parse_line(line).map_err(|error| {
                FixtureError::Unexpected(format!("not an event line ({error}): {line}"))
            })
        })
        .collect()
}
