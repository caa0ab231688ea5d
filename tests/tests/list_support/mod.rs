//! Running `ferryctl list` from the `list_*` tests: an isolated machine (runtime dir, caches,
//! Flatpak directories, no proxies), JSON parsed into the engine's own schema types.

#![allow(
    dead_code,
    reason = "each test file uses a different part of the helpers"
)]

use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use ferry_engine::schema::{DriveRecord, Problem, ProblemKind, Update, UpdateList};
use ferry_tests::machine::MachineEnv;

/// What `ferryctl list` sees of the machine: the runtime dir with drive records, the icon
/// cache, and the environment (Flatpak directories, HOME) the test sets up.
pub struct Machine {
    pub run_dir: PathBuf,
    pub cache: PathBuf,
    env: MachineEnv,
}

impl Machine {
    /// A machine under `base` with a Flatpak environment's variables `vars`; without them,
    /// HOME and the Flatpak directories point at empty folders under `base`.
    pub fn new(base: &Path, vars: Vec<(String, OsString)>) -> Result<Machine> {
        let env = MachineEnv::in_flatpak_env(&base.join("machine"), vars)?;
        Ok(Machine {
            run_dir: env.run_dir.clone(),
            cache: env.cache.clone(),
            env,
        })
    }

    fn command(&self, args: &[&OsStr]) -> Result<ferry_tests::Tool> {
        Ok(self.env.ferryctl("list")?.args(args))
    }

    /// `ferryctl list ARGS --offline --json`, parsed.
    pub fn list_offline(&self, args: &[&OsStr]) -> Result<UpdateList> {
        let mut offline = args.to_vec();
        offline.push(OsStr::new("--offline"));
        self.list(&offline)
    }

    /// `ferryctl list ARGS --json`, parsed.
    pub fn list(&self, args: &[&OsStr]) -> Result<UpdateList> {
        let mut with_json: Vec<&OsStr> = args.to_vec();
        with_json.push(OsStr::new("--json"));
        let stdout = self.command(&with_json)?.stdout()?;
        serde_json::from_str(&stdout)
            .with_context(|| format!("`ferryctl list --json` printed no listing:\n{stdout}"))
    }

    /// `ferryctl list ARGS`, as a person reads it.
    pub fn list_text(&self, args: &[&OsStr]) -> Result<String> {
        Ok(self.command(args)?.stdout()?)
    }

    /// Records a drive the way the hook does: `drives/<id>.json` with its mount point.
    pub fn record_drive(&self, id: &str, mount: &Path, label: &str) -> Result<()> {
        let record = DriveRecord {
            label: Some(label.to_owned()),
            ..DriveRecord::new(id, mount.display().to_string())
        };
        let path = self.run_dir.join("drives").join(format!("{id}.json"));
        fs::write(&path, serde_json::to_vec_pretty(&record)?)?;
        Ok(())
    }
}

/// The repository path a drive source is listed under (symlinks resolved).
pub fn location(repo: &Path) -> Result<String> {
    Ok(fs::canonicalize(repo)
        .with_context(|| format!("resolve {}", repo.display()))?
        .display()
        .to_string())
}

/// The one update of `ref_name`.
pub fn update<'a>(list: &'a UpdateList, ref_name: &str) -> Result<&'a Update> {
    let found: Vec<&Update> = list
        .updates
        .iter()
        .filter(|u| u.ref_name == ref_name)
        .collect();
    ensure!(
        found.len() == 1,
        "expected one update of {ref_name}, found {}: {list:#?}",
        found.len()
    );
    Ok(found[0])
}

/// The locations of an update's sources, in order.
pub fn sources(update: &Update) -> Vec<String> {
    update.sources.iter().map(|s| s.location.clone()).collect()
}

/// The problem of `kind` whose source is `source` (a repository path).
pub fn problem<'a>(list: &'a UpdateList, kind: ProblemKind, source: &str) -> Result<&'a Problem> {
    list.problems
        .iter()
        .find(|p| p.kind == kind && p.source == source)
        .with_context(|| format!("no {kind:?} problem for {source}: {:#?}", list.problems))
}
