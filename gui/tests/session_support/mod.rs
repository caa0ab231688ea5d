//! What the GUI tests share when they drive a desktop session: running a command for its
//! output, and the `gdbus` calls that wait for a bus name or call a method.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of the helpers"
)]

use std::process::Command;

use anyhow::{ensure, Context as _, Result};

/// Runs `command` to its end; its stdout, or an error with its status and stderr.
pub fn stdout_of(command: &mut Command) -> Result<String> {
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    ensure!(
        output.status.success(),
        "{command:?} failed with {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `gdbus wait --session --timeout 30 NAME`: returns once `name` is owned on the bus.
pub fn gdbus_wait(name: &str) -> Command {
    let mut command = Command::new("gdbus");
    command.args(["wait", "--session", "--timeout", "30", name]);
    command
}

/// `gdbus call --session` of `method` on `object_path` at `dest`, with `args`.
pub fn gdbus_call(dest: &str, object_path: &str, method: &str, args: &[&str]) -> Command {
    let mut command = Command::new("gdbus");
    command
        .args(["call", "--session", "--dest", dest])
        .args(["--object-path", object_path, "--method", method])
        .args(args);
    command
}
