//! An isolated machine for Ferry's binaries: its own run dir, sideload dir, trust root, cache,
//! home and Flatpak directories under one directory, and the environment that points Ferry at
//! them, so a test never reads or writes the real machine's.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};
use crate::Tool;

/// The directories and environment of one machine.
#[derive(Debug, Clone)]
pub struct MachineEnv {
    /// `FERRY_RUN_DIR`, with an empty `drives/` for drive records.
    pub run_dir: PathBuf,
    /// `XDG_CACHE_HOME`: this machine's, or the Flatpak environment's when one is given.
    pub cache: PathBuf,
    vars: Vec<(String, OsString)>,
}

/// Options for [`MachineEnv`]; [`MachineEnvBuilder::build`] creates the directories.
#[derive(Debug, Clone)]
pub struct MachineEnvBuilder {
    dir: PathBuf,
    flatpak: Option<Vec<(String, OsString)>>,
    extra: Vec<(String, OsString)>,
    log: String,
}

impl MachineEnv {
    /// A machine whose directories are under `dir`.
    pub fn builder(dir: &Path) -> MachineEnvBuilder {
        MachineEnvBuilder {
            dir: dir.to_owned(),
            flatpak: None,
            extra: Vec::new(),
            log: "warn,pgp=error".to_owned(),
        }
    }

    /// A machine under `dir` in the Flatpak environment of variables `vars`; without them,
    /// HOME and the Flatpak directories are empty folders under `dir`.
    pub fn in_flatpak_env(dir: &Path, vars: Vec<(String, OsString)>) -> Result<MachineEnv> {
        let builder = MachineEnv::builder(dir);
        if vars.is_empty() {
            builder.build()
        } else {
            builder.flatpak(vars).build()
        }
    }

    /// `ferryctl SUBCOMMAND` on this machine, with Flatpak's progress output plain.
    pub fn ferryctl(&self, subcommand: &str) -> Result<Tool> {
        Ok(crate::bins::ferryctl()?
            .envs(self.vars())
            .env_remove("FLATPAK_FANCY_OUTPUT")
            .arg(subcommand))
    }

    /// The variables to give every command that stands for this machine.
    pub fn vars(&self) -> impl Iterator<Item = (&str, &OsStr)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_os_str()))
    }

    /// The variables, owned, for helpers that take them as a list.
    pub fn into_vars(self) -> Vec<(String, OsString)> {
        self.vars
    }
}

impl MachineEnvBuilder {
    /// HOME, the XDG and Flatpak directories from a Flatpak environment
    /// ([`crate::flatpak::FlatpakEnv::vars`]) instead of empty ones of this machine.
    pub fn flatpak(mut self, vars: Vec<(String, OsString)>) -> Self {
        self.flatpak = Some(vars);
        self
    }

    /// `OSTREE_SYSROOT`: the sysroot whose OS is this machine's.
    pub fn sysroot(self, sysroot: &Path) -> Self {
        self.var("OSTREE_SYSROOT", sysroot)
    }

    /// `FERRY_CONFIG`: the machine's drive policy.
    pub fn config(self, config: &Path) -> Self {
        self.var("FERRY_CONFIG", config)
    }

    /// `FERRY_LOG`; `warn,pgp=error` unless set.
    pub fn log(mut self, filter: &str) -> Self {
        filter.clone_into(&mut self.log);
        self
    }

    /// Any other variable, set after the machine's own.
    pub fn var(mut self, name: &str, value: impl AsRef<OsStr>) -> Self {
        self.extra
            .push((name.to_owned(), value.as_ref().to_os_string()));
        self
    }

    /// Creates the directories and returns the machine.
    pub fn build(self) -> Result<MachineEnv> {
        let dir_var = |name: &str, sub: &str| -> Result<(String, OsString)> {
            let path = self.dir.join(sub);
            fs::create_dir_all(&path).at("create directory", &path)?;
            Ok((name.to_owned(), path.into_os_string()))
        };
        let run_dir = self.dir.join("ferry-run");
        let drives = run_dir.join("drives");
        fs::create_dir_all(&drives).at("create directory", &drives)?;
        let mut vars = vec![
            ("FERRY_RUN_DIR".to_owned(), run_dir.clone().into_os_string()),
            dir_var("FERRY_SIDELOAD_DIR", "sideload")?,
            dir_var("FERRY_TRUST_ROOT", "trust-root")?,
        ];
        match self.flatpak {
            Some(flatpak) => vars.extend(flatpak),
            None => {
                for (name, sub) in [
                    ("HOME", "home"),
                    ("FLATPAK_USER_DIR", "flatpak-user"),
                    ("FLATPAK_SYSTEM_DIR", "flatpak-system"),
                    ("FLATPAK_CONFIG_DIR", "flatpak-config"),
                ] {
                    vars.push(dir_var(name, sub)?);
                }
            }
        }
        let flatpak_cache = vars.iter().find(|(name, _)| name == "XDG_CACHE_HOME");
        let cache = match flatpak_cache {
            Some((_, value)) => PathBuf::from(value),
            None => {
                let cache = self.dir.join("cache");
                vars.push(("XDG_CACHE_HOME".to_owned(), cache.clone().into_os_string()));
                cache
            }
        };
        fs::create_dir_all(&cache).at("create directory", &cache)?;
        // Loopback servers must be reached directly, whatever proxy the machine has.
        for name in ["NO_PROXY", "no_proxy"] {
            vars.push((name.to_owned(), "127.0.0.1,localhost".into()));
        }
        vars.push(("LC_ALL".to_owned(), "C.UTF-8".into()));
        vars.push(("FERRY_LOG".to_owned(), self.log.into()));
        vars.extend(self.extra);
        Ok(MachineEnv {
            run_dir,
            cache,
            vars,
        })
    }
}
