//! Running `ferryctl install` from the `install_*` tests: an isolated machine (runtime dir,
//! trust roots, Flatpak directories), and the JSON event stream parsed with the engine's own
//! reader.

#![allow(
    dead_code,
    reason = "each test file uses a different part of the helpers"
)]

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use ferry_engine::event::{parse_line, Event};
use ferry_engine::schema::JsonLines;
use ferry_engine::schema::{InstallResult, InstallStatus, Problem, UpdateList};
use ferry_tests::cmd::{Output, Tool};
use ferry_tests::machine::MachineEnv;
use ferry_tests::sysroot::OS_REF;

/// What `ferryctl install` sees of the machine.
pub struct Machine {
    env: MachineEnv,
}

impl Machine {
    /// A machine under `base` with a Flatpak environment's variables `vars`; without them,
    /// HOME and the Flatpak directories point at empty folders under `base`.
    pub fn new(base: &Path, vars: Vec<(String, OsString)>) -> Result<Machine> {
        Ok(Machine {
            env: MachineEnv::in_flatpak_env(&base.join("machine"), vars)?,
        })
    }

    /// `ferryctl install ARGS` in this machine.
    pub fn command(&self, args: &[&OsStr]) -> Result<Tool> {
        Ok(self.env.ferryctl("install")?.args(args))
    }

    /// `ferryctl install ARGS --offline --yes --json`, finished, with its events.
    pub fn install(&self, args: &[&OsStr]) -> Result<InstallRun> {
        let mut all = args.to_vec();
        all.extend([OsStr::new("--offline"), "--yes".as_ref(), "--json".as_ref()]);
        let output = self.command(&all)?.output()?;
        let events = parse_events(&output.stdout)?;
        Ok(InstallRun { output, events })
    }

    /// `ferryctl list ARGS --offline --json` in this machine: what it offers.
    pub fn list(&self, args: &[&OsStr]) -> Result<UpdateList> {
        let output = self
            .env
            .ferryctl("list")?
            .args(args)
            .args(["--offline", "--json"])
            .output()?;
        ensure!(output.success(), "ferryctl list failed: {}", output.stderr);
        serde_json::from_str(&output.stdout).context("ferryctl list --json output")
    }

    /// Starts `ferryctl install ARGS --offline --yes --json` with stdout piped.
    pub fn spawn(&self, args: &[&OsStr]) -> Result<Child> {
        let mut all = args.to_vec();
        all.extend([OsStr::new("--offline"), "--yes".as_ref(), "--json".as_ref()]);
        let mut command = self.command(&all)?.into_command();
        command.stdout(Stdio::piped()).stderr(Stdio::null());
        Ok(command.spawn()?)
    }
}

/// A finished `ferryctl install --json` and the events it printed.
#[derive(Debug)]
pub struct InstallRun {
    pub output: Output,
    pub events: Vec<Event>,
}

impl InstallRun {
    pub fn success(&self) -> bool {
        self.output.success()
    }

    pub fn results(&self) -> Vec<&InstallResult> {
        self.events
            .iter()
            .filter_map(|event| match event {
                Event::Result(result) => Some(result),
                _ => None,
            })
            .collect()
    }

    /// The problems the plan listed.
    pub fn problems(&self) -> Vec<&Problem> {
        self.events
            .iter()
            .filter_map(|event| match event {
                Event::Plan { problems, .. } => Some(problems),
                _ => None,
            })
            .flatten()
            .collect()
    }

    /// The first problem the plan listed about `ref_name`.
    pub fn problem_of(&self, ref_name: &str) -> Result<&Problem> {
        self.problems()
            .into_iter()
            .find(|problem| problem.ref_name.as_deref() == Some(ref_name))
            .with_context(|| format!("no problem for {ref_name}:\n{self}"))
    }

    /// The one result of `ref_name`.
    pub fn result(&self, ref_name: &str) -> Result<&InstallResult> {
        let found: Vec<&InstallResult> = self
            .results()
            .into_iter()
            .filter(|r| r.ref_name == ref_name)
            .collect();
        ensure!(
            found.len() == 1,
            "expected one result of {ref_name}: {self}"
        );
        Ok(found[0])
    }

    /// Asserts `ref_name` ended with `status`.
    pub fn expect(&self, ref_name: &str, status: InstallStatus) -> Result<&InstallResult> {
        let result = self.result(ref_name)?;
        ensure!(
            result.status == status,
            "{ref_name}: expected {status:?}, got {result:?}\n{self}"
        );
        Ok(result)
    }

    pub fn finished(&self) -> Option<bool> {
        self.events.iter().rev().find_map(|event| match event {
            Event::Finished { ok } => Some(*ok),
            _ => None,
        })
    }
}

impl std::fmt::Display for InstallRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\nstdout:\n{}\nstderr:\n{}",
            self.output.code(),
            self.output.stdout,
            self.output.stderr
        )
    }
}

pub use ferry_tests::bins::parse_events;

/// Reads `child`'s stdout until `count` progress events with transferred bytes arrived, then
/// kills it with SIGKILL. Fails when the stream ends first or after `timeout`.
pub fn kill_after_progress(mut child: Child, count: usize, timeout: Duration) -> Result<()> {
    let stdout = child.stdout.take().context("stdout is not piped")?;
    let deadline = Instant::now() + timeout;
    let mut seen = 0;
    let mut lines = JsonLines::new(BufReader::new(stdout));
    loop {
        ensure!(Instant::now() < deadline, "no progress within {timeout:?}");
        let Some(line) = lines.next() else {
            let _ = child.wait();
            bail!("ferryctl ended after {seen} progress events, before it could be killed");
        };
        if let Ok(Event::Progress { bytes_done, .. }) = parse_line(&line?) {
            if bytes_done > 0 {
                seen += 1;
            }
        }
        if seen >= count {
            child.kill()?;
            child.wait()?;
            return Ok(());
        }
    }
}

/// `["--sysroot", path]`-style argument lists without the noise.
pub fn args<'a>(items: &'a [&'a dyn AsRef<OsStr>]) -> Vec<&'a OsStr> {
    items.iter().map(|item| item.as_ref()).collect()
}

/// `--installation user --from DRIVE APP_ID`: one app into the user's installation, from one
/// drive.
pub fn user_app_from_drive<'a>(drive: &'a Path, app_id: &'a str) -> Vec<&'a OsStr> {
    vec![
        OsStr::new("--installation"),
        OsStr::new("user"),
        OsStr::new("--from"),
        drive.as_os_str(),
        OsStr::new(app_id),
    ]
}

/// `--installation user --from DRIVE --all`: every update of the user's installation, from one
/// drive.
pub fn user_updates_from_drive(drive: &Path) -> Vec<&OsStr> {
    vec![
        OsStr::new("--installation"),
        OsStr::new("user"),
        OsStr::new("--from"),
        drive.as_os_str(),
        OsStr::new("--all"),
    ]
}

/// `--sysroot SYSROOT --from DRIVE EXTRA... OS_REF`: the fixture OS, from one drive.
pub fn os_from_drive<'a>(sysroot: &'a Path, drive: &'a Path, extra: &[&'a str]) -> Vec<&'a OsStr> {
    let mut all = vec![
        OsStr::new("--sysroot"),
        sysroot.as_os_str(),
        OsStr::new("--from"),
        drive.as_os_str(),
    ];
    all.extend(extra.iter().map(|arg| OsStr::new(*arg)));
    all.push(OsStr::new(OS_REF));
    all
}

/// Every file of `dir` (relative path and content), for before/after comparisons.
pub fn snapshot(dir: &Path) -> Result<Vec<(PathBuf, Vec<u8>)>> {
    let mut out = Vec::new();
    for entry in walkdir(dir)? {
        if entry.1.is_file() && !entry.1.is_symlink() {
            out.push((entry.0.clone(), fs::read(&entry.1)?));
        }
    }
    out.sort();
    Ok(out)
}

fn walkdir(dir: &Path) -> Result<Vec<(PathBuf, PathBuf)>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in fs::read_dir(&current)? {
            let entry = entry?;
            let path = entry.path();
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(path.clone());
            }
            out.push((path.strip_prefix(dir)?.to_path_buf(), path));
        }
    }
    Ok(out)
}
