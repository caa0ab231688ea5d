//! Running the real tools (ostree, gpg, flatpak, …) with errors that show the whole command
//! line and its output.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};

use crate::error::{FixtureError, Result};

/// A command to run. Standard input is empty unless [`Tool::stdin`] is given, so a tool that
/// would prompt fails instead of hanging.
#[derive(Debug)]
pub struct Tool {
    command: Command,
    stdin: Option<Vec<u8>>,
}

/// What a finished command printed, decoded lossily as UTF-8.
#[derive(Debug, Clone)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// What a command that ended with `status` printed, decoded lossily.
    fn decoded(status: ExitStatus, stdout: &[u8], stderr: &[u8]) -> Self {
        Output {
            status,
            stdout: String::from_utf8_lossy(stdout).into_owned(),
            stderr: String::from_utf8_lossy(stderr).into_owned(),
        }
    }

    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Exit code, or `None` when the process was killed by a signal.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

impl Tool {
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Tool {
            command: Command::new(program),
            stdin: None,
        }
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.command.arg(arg);
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command.args(args);
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.command.env(key, value);
        self
    }

    pub fn envs<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        self.command.envs(vars);
        self
    }

    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.command.env_remove(key);
        self
    }

    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.command.current_dir(dir);
        self
    }

    /// Bytes fed to the command's standard input.
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    /// The command line as a person would type it, for messages.
    pub fn display(&self) -> String {
        display_command(&self.command)
    }

    /// Runs to completion whatever the exit status.
    pub fn output(mut self) -> Result<Output> {
        let display = self.display();
        let stdin = if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        };
        let mut child = self.spawn_piped(stdin)?;
        if let (Some(bytes), Some(mut pipe)) = (self.stdin.take(), child.stdin.take()) {
            // A tool that exits without reading everything closes the pipe; its status tells.
            let _ = pipe.write_all(&bytes);
        }
        let out = child
            .wait_with_output()
            .map_err(|source| FixtureError::Spawn {
                command: display,
                source,
            })?;
        Ok(Output::decoded(out.status, &out.stdout, &out.stderr))
    }

    /// Starts the command with `stdin` and its output piped.
    fn spawn_piped(&mut self, stdin: Stdio) -> Result<Child> {
        self.command
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| FixtureError::Spawn {
                command: self.display(),
                source,
            })
    }

    /// Runs to completion whatever the exit status, killing the command when it is still
    /// running after `timeout`: `None` then. For inputs that could make a tool hang.
    pub fn output_within(mut self, timeout: std::time::Duration) -> Result<Option<Output>> {
        let display = self.display();
        let mut child = self.spawn_piped(Stdio::null())?;
        let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                if let Some(mut pipe) = pipe {
                    let _ = pipe.read_to_end(&mut bytes);
                }
                bytes
            })
        };
        let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
        let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
        let deadline = std::time::Instant::now() + timeout;
        let spawn_error = |source| FixtureError::Spawn {
            command: display.clone(),
            source,
        };
        let status = loop {
            if let Some(status) = child.try_wait().map_err(spawn_error)? {
                break Some(status);
            }
            if std::time::Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let stdout = stdout.join().unwrap_or_default();
        let stderr = stderr.join().unwrap_or_default();
        Ok(status.map(|status| Output::decoded(status, &stdout, &stderr)))
    }

    /// Runs and requires success.
    pub fn run(self) -> Result<Output> {
        let display = self.display();
        let out = self.output()?;
        if out.success() {
            Ok(out)
        } else {
            Err(FixtureError::Command {
                command: display,
                status: out.status.to_string(),
                stdout: out.stdout,
                stderr: out.stderr,
            })
        }
    }

    /// Runs, requires success and returns standard output.
    pub fn stdout(self) -> Result<String> {
        Ok(self.run()?.stdout)
    }

    /// Runs and requires failure; returns the output so the caller can check the message.
    pub fn run_failing(self) -> Result<Output> {
        let display = self.display();
        let out = self.output()?;
        if out.success() {
            Err(FixtureError::UnexpectedSuccess {
                command: display,
                stdout: out.stdout,
                stderr: out.stderr,
            })
        } else {
            Ok(out)
        }
    }

    /// Starts the command in the background with its output piped, for tests that kill it
    /// midway.
    pub fn spawn(mut self) -> Result<Child> {
        let display = self.display();
        self.command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        self.command.spawn().map_err(|source| FixtureError::Spawn {
            command: display,
            source,
        })
    }

    /// The underlying command, for what this wrapper does not offer.
    pub fn into_command(self) -> Command {
        self.command
    }
}

fn display_command(command: &Command) -> String {
    let mut parts: Vec<String> = Vec::new();
    for (key, value) in command.get_envs() {
        if let Some(value) = value {
            parts.push(format!("{}={}", key.to_string_lossy(), quote(value)));
        }
    }
    parts.push(quote(command.get_program()));
    parts.extend(command.get_args().map(quote));
    parts.join(" ")
}

fn quote(word: &OsStr) -> String {
    let text = word.to_string_lossy();
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        text.into_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// Builds an `--option=value` argument from a path.
pub fn opt_path(option: &str, path: &Path) -> OsString {
    let mut arg = OsString::from(option);
    arg.push("=");
    arg.push(path.as_os_str());
    arg
}

/// Whether the current process runs as root.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Fails with a clear message unless running as root. Ferry's CI runs as root, so tests that
/// need root assert it instead of skipping.
pub fn require_root(what: &str) -> Result<()> {
    if is_root() {
        Ok(())
    } else {
        Err(FixtureError::Requirement(format!(
            "{what} needs root (loop devices, mounts, ownership); run the tests as root, as \
             scripts/test.sh and CI do"
        )))
    }
}

/// Panics with [`require_root`]'s message unless running as root: for tests that do not
/// return a `Result`. A test that needs root never passes for having checked less.
#[track_caller]
pub fn assert_root(what: &str) {
    if let Err(error) = require_root(what) {
        panic!("{error}");
    }
}

/// Polls `check` every 20 ms until it returns `true`, failing after `timeout` with a message
/// naming `what`. Tests use it instead of fixed sleeps: waiting for a record file, a mount, a
/// child process reaching some point.
pub fn wait_for<E: From<FixtureError>>(
    what: &str,
    timeout: std::time::Duration,
    mut check: impl FnMut() -> std::result::Result<bool, E>,
) -> std::result::Result<(), E> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if check()? {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(FixtureError::Unexpected(format!(
                "timed out after {timeout:?} waiting for {what}"
            ))
            .into());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
