//! Where Ferry keeps its run-time state and reads its configuration: one value, read from the
//! environment once, that the CLI, the hook and the app pass on.

use std::ffi::OsString;
use std::path::PathBuf;

/// Environment variables that move Ferry's paths (tests, other layouts). A privileged run
/// ignores them ([`crate::privilege::IGNORED_VARIABLES`]) and uses [`Paths::defaults`].
pub const ENV_RUN_DIR: &str = "FERRY_RUN_DIR";
/// Overrides [`DEFAULT_SIDELOAD_DIR`].
pub const ENV_SIDELOAD_DIR: &str = "FERRY_SIDELOAD_DIR";
/// Overrides [`DEFAULT_CONFIG`].
pub const ENV_CONFIG: &str = "FERRY_CONFIG";

/// Where the hook keeps its records and mounts.
pub const DEFAULT_RUN_DIR: &str = "/run/ferry";
/// Where `flatpak` looks for repositories to sideload from.
pub const DEFAULT_SIDELOAD_DIR: &str = "/run/flatpak/sideload-repos";
/// The machine's drive policy.
pub const DEFAULT_CONFIG: &str = "/etc/ferry/ferry.conf";

/// Ferry's own places on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// The hook's drive records (`drives/`) and its own mounts (`mnt/`).
    pub run_dir: PathBuf,
    /// Links to drive repositories for `flatpak`.
    pub sideload_dir: PathBuf,
    /// The machine's drive policy, `ferry.conf`.
    pub config: PathBuf,
}

impl Paths {
    /// `$FERRY_RUN_DIR`, `$FERRY_SIDELOAD_DIR` and `$FERRY_CONFIG`, each else its default.
    pub fn from_env() -> Self {
        Self::from_vars(|name| std::env::var_os(name))
    }

    /// As [`Paths::from_env`], with variables from `var`; an empty one counts as unset.
    pub fn from_vars(var: impl Fn(&str) -> Option<OsString>) -> Self {
        let path = |name: &str, default: &str| {
            var(name)
                .filter(|value| !value.is_empty())
                .map_or_else(|| PathBuf::from(default), PathBuf::from)
        };
        Self {
            run_dir: path(ENV_RUN_DIR, DEFAULT_RUN_DIR),
            sideload_dir: path(ENV_SIDELOAD_DIR, DEFAULT_SIDELOAD_DIR),
            config: path(ENV_CONFIG, DEFAULT_CONFIG),
        }
    }

    /// The compiled-in places, whatever the environment says.
    pub fn defaults() -> Self {
        Self::from_vars(|_| None)
    }

    /// One JSON record per inserted drive.
    pub fn drives_dir(&self) -> PathBuf {
        self.run_dir.join("drives")
    }

    /// Where the hook mounts drives itself (`mount = self`).
    pub fn mount_dir(&self) -> PathBuf {
        self.run_dir.join("mnt")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_path_comes_from_its_variable_else_its_default() {
        let paths = Paths::from_vars(|name| match name {
            ENV_RUN_DIR => Some("/tmp/run".into()),
            ENV_CONFIG => Some(OsString::new()),
            _ => None,
        });
        assert_eq!(paths.run_dir, PathBuf::from("/tmp/run"));
        assert_eq!(paths.drives_dir(), PathBuf::from("/tmp/run/drives"));
        assert_eq!(paths.sideload_dir, PathBuf::from(DEFAULT_SIDELOAD_DIR));
        assert_eq!(
            paths.config,
            PathBuf::from(DEFAULT_CONFIG),
            "empty is unset"
        );
        assert_eq!(Paths::defaults().run_dir, PathBuf::from("/run/ferry"));
    }
}
