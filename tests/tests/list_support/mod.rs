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
use ferry_tests::bins;

/// What `ferryctl list` sees of the machine: the runtime dir with drive records, the icon
/// cache, and the environment (Flatpak directories, HOME) the test sets up.
pub struct Machine {
    pub run_dir: PathBuf,
    pub cache: PathBuf,
    vars: Vec<(String, OsString)>,
}

impl Machine {
    /// A machine under `base` with the variables `vars` (for example a Flatpak environment's);
    /// without them, HOME and the Flatpak directories point at empty folders under `base`.
    pub fn new(base: &Path, vars: Vec<(String, OsString)>) -> Result<Machine> {
        let run_dir = base.join("ferry-run");
        let cache = base.join("ferry-cache");
        fs::create_dir_all(run_dir.join("drives"))?;
        fs::create_dir_all(&cache)?;
        let mut all: Vec<(String, OsString)> = Vec::new();
        let defaults: &[(&str, &str)] = if vars.is_empty() {
            &[
                ("HOME", "home"),
                ("FLATPAK_USER_DIR", "flatpak-user"),
                ("FLATPAK_SYSTEM_DIR", "flatpak-system"),
                ("FLATPAK_CONFIG_DIR", "flatpak-config"),
            ]
        } else {
            &[]
        };
        for &(name, dir) in defaults {
            let path = base.join("empty").join(dir);
            fs::create_dir_all(&path)?;
            all.push((name.to_owned(), path.into_os_string()));
        }
        all.extend(vars);
        all.push(("FERRY_RUN_DIR".to_owned(), run_dir.clone().into_os_string()));
        all.push(("XDG_CACHE_HOME".to_owned(), cache.clone().into_os_string()));
        // Loopback servers must be reached directly, whatever proxy the machine has.
        for name in ["NO_PROXY", "no_proxy"] {
            all.push((name.to_owned(), "127.0.0.1,localhost".into()));
        }
        Ok(Machine {
            run_dir,
            cache,
            vars: all,
        })
    }

    fn command(&self, args: &[&OsStr]) -> Result<ferry_tests::Tool> {
        Ok(bins::ferryctl()?
            .envs(self.vars.iter().map(|(k, v)| (k.as_str(), v.as_os_str())))
            .env_remove("FLATPAK_FANCY_OUTPUT")
            .env("FERRY_LOG", "warn,pgp=error")
            .arg("list")
            .args(args))
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
