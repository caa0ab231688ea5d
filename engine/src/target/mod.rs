//! What is installed on this machine, and where updates go.
//!
//! A [`Target`] is one place updates are installed into: the OSTree sysroot's OS deployment,
//! a Flatpak installation, or a plain repository. For each it knows the repository, the
//! remotes with their collection IDs, the installed refs with their current commits, and what
//! the deploy step needs. Nothing here writes anything.
//!
//! - [`default_targets`]: what `ferryctl list` looks at without options: the OS of the sysroot
//!   `OSTREE_SYSROOT` names, else the booted OS (when `/run/ostree-booted` exists), and every
//!   Flatpak installation that exists.
//! - [`Target::os`], [`Target::flatpak`], [`Target::flatpak_selected`], [`Target::repo`]:
//!   the targets `--sysroot`, `--installation` and `--repo` name.

pub mod flatpak;
pub mod languages;
pub mod remotes;
pub mod sysroot;

pub(crate) mod commit;

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::object::{Checksum, FlatpakRef};
use crate::schema::{Problem, ProblemKind, TargetKind, EVERY_SUBPATH};
use crate::trust::Destination;

pub use flatpak::{
    DeployData, DeployedRef, FlatpakInstallation, FlatpakPaths, FlatpakScope, InstallationSelector,
};
pub use remotes::Remote;
pub use sysroot::{parse_refspec, BootState, Deployment, StagedDeployment, SysrootState};

use crate::repo::KeyFile;

/// The variable libostree reads for the sysroot `ostree admin` works on when `--sysroot` is
/// not given.
pub const ENV_OSTREE_SYSROOT: &str = "OSTREE_SYSROOT";

/// Where this machine keeps what Ferry updates. [`HostPaths::from_env`] gives the real
/// places, resolved as `ostree` and `flatpak` resolve them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPaths {
    /// Which root is running, and whether it was booted from OSTree.
    pub boot: BootState,
    /// The Flatpak installations' places.
    pub flatpak: FlatpakPaths,
    /// The sysroot whose OS [`default_targets`] lists instead of the booted one: set from a
    /// non-empty `OSTREE_SYSROOT`, as `ostree admin` honours it (image builders, kiosks
    /// preparing another disk, tests). The sysroot is booted only if it is the running root.
    pub os_sysroot: Option<PathBuf>,
}

impl HostPaths {
    /// From the process environment.
    pub fn from_env() -> Self {
        Self::from_vars(|name| std::env::var_os(name))
    }

    /// From the variables `var` returns: `OSTREE_SYSROOT` and those of
    /// [`FlatpakPaths::from_vars`].
    pub fn from_vars(var: impl Fn(&str) -> Option<OsString>) -> Self {
        Self {
            boot: BootState::default(),
            os_sysroot: var(ENV_OSTREE_SYSROOT)
                .filter(|value| !value.is_empty())
                .map(PathBuf::from),
            flatpak: FlatpakPaths::from_vars(var),
        }
    }

    /// The sysroot whose OS is this machine's OS target: [`HostPaths::os_sysroot`], else the
    /// running root when it was booted from OSTree, else none.
    pub fn os_target_sysroot(&self) -> Option<&Path> {
        match &self.os_sysroot {
            Some(sysroot) => Some(sysroot),
            None if self.boot.ostree_booted() => Some(&self.boot.root),
            None => None,
        }
    }
}

/// One ref installed in a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledRef {
    /// The remote it was installed from; None for an OS deployed from a local branch.
    pub remote: Option<String>,
    /// That remote's collection ID.
    pub collection_id: Option<String>,
    /// The ref, as in the repository's `refs/`.
    pub ref_name: String,
    /// The installed commit.
    pub commit: Checksum,
    /// The commit's time, seconds since the Unix epoch.
    pub timestamp: u64,
    /// The commit's `version` metadata.
    pub version: Option<String>,
    /// Flatpak: the only subdirectories installed (locale extensions); empty for a whole ref.
    pub subpaths: Vec<String>,
    /// Flatpak: the subdirectories its next update deploys: for a locale extension installed
    /// in part, [`InstalledRef::subpaths`] merged with the languages the installation is set
    /// for ([`languages`]), else the same as `subpaths`.
    pub deploy_subpaths: Vec<String>,
    /// Flatpak apps: the runtime ref the installed version runs on.
    pub runtime: Option<String>,
}

impl InstalledRef {
    /// The subpaths (languages) its next update deploys that are not deployed yet: those
    /// the installation was set for since a locale extension was installed in part, or
    /// [`EVERY_SUBPATH`] when it was set for all of them (flatpak then deploys it whole).
    pub fn added_subpaths(&self) -> Vec<String> {
        if self.subpaths.is_empty() {
            // Whole already: nothing to add.
            return Vec::new();
        }
        if self.deploy_subpaths.is_empty() {
            return vec![EVERY_SUBPATH.to_owned()];
        }
        self.deploy_subpaths
            .iter()
            .filter(|subpath| !self.subpaths.contains(subpath))
            .cloned()
            .collect()
    }
}

/// What the deploy step needs for a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeployTarget {
    /// `ostree admin deploy --sysroot … --os …`.
    Os(OsTarget),
    /// `flatpak update/install --no-pull` with [`FlatpakInstallation::flatpak_args`].
    Flatpak(FlatpakInstallation),
    /// A plain repository: pulling into it is all there is.
    Repo,
}

/// The OS of a sysroot and the deployment updates start from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsTarget {
    /// The sysroot and its deployments.
    pub state: SysrootState,
    /// Index into `state.deployments`: the booted deployment, else the default one.
    pub current: usize,
}

impl OsTarget {
    /// The sysroot's path.
    pub fn sysroot(&self) -> &Path {
        &self.state.sysroot
    }

    /// The deployment updates start from.
    pub fn deployment(&self) -> &Deployment {
        &self.state.deployments[self.current]
    }

    /// The stateroot, `--os` of `ostree admin deploy`.
    pub fn stateroot(&self) -> &str {
        &self.deployment().stateroot
    }

    /// The current kernel arguments, without `ostree=`.
    pub fn kernel_args(&self) -> &[String] {
        &self.deployment().kernel_args
    }

    /// Whether the running system is booted from this sysroot: deploy with `--stage` then.
    pub fn booted(&self) -> bool {
        self.state.booted
    }
}

/// A place updates are installed into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// What the target is: OS, Flatpak installation or plain repository.
    pub kind: TargetKind,
    /// `system`, `user`, an installation ID or directory for Flatpak; the sysroot for the
    /// OS; the repository for a plain repo.
    pub installation: String,
    /// The target's OSTree repository.
    pub repo: PathBuf,
    /// `archive`, `bare`, `bare-user` or `bare-user-only` (`archive-z2` is `archive`).
    pub repo_mode: String,
    /// The repository's remotes.
    pub remotes: Vec<Remote>,
    /// The refs installed.
    pub installed: Vec<InstalledRef>,
    /// Installed refs that could not be read, listed rather than dropped.
    pub problems: Vec<Problem>,
    /// Where the trust for this repository's remotes is configured.
    pub trust: Destination,
    /// Writing needs more rights than this process has (`access(2)` on the repository); the
    /// desktop app then goes through polkit.
    pub needs_root: bool,
    /// What the deploy step needs.
    pub deploy: DeployTarget,
}

impl Target {
    /// The OS deployment of `sysroot`: the booted one when the running system is booted from
    /// it, else the default one.
    pub fn os(sysroot: &Path, boot: &BootState) -> Result<Self, TargetError> {
        let state = SysrootState::load(sysroot, boot)?;
        let Some(current) = state.current_deployment().map(|d| d.index) else {
            return Err(TargetError::NoDeployment {
                sysroot: sysroot.to_owned(),
            });
        };
        let repo = sysroot.join("ostree/repo");
        let (repo_mode, remotes) = read_repo_config(&repo, state.remotes_config_dir().as_deref())?;
        let trust = Destination {
            repo: repo.clone(),
            remotes_config_dir: state.remotes_config_dir(),
            parents: Vec::new(),
        };
        let os = OsTarget { state, current };
        let deployment = os.deployment();
        let label = sysroot.display().to_string();
        let mut installed = Vec::new();
        let mut problems = Vec::new();
        match deployment.refspec.as_deref().map(parse_refspec) {
            Some(Ok((remote, ref_name))) => {
                match installed_ref(&repo, &remotes, remote, ref_name, deployment.commit, None) {
                    Ok(found) => installed.push(found),
                    Err(reason) => problems.push(problem(&label, ref_name, reason)),
                }
            }
            Some(Err(detail)) => problems.push(Problem {
                kind: ProblemKind::Unreadable,
                source: deployment.origin_path().display().to_string(),
                origin: None,
                ref_name: None,
                reason: format!("{detail}: fix the deployment's origin file"),
            }),
            None => problems.push(Problem {
                kind: ProblemKind::Unavailable,
                source: deployment.origin_path().display().to_string(),
                origin: None,
                ref_name: None,
                reason: format!(
                    "deployment {}.{} has no origin refspec, so Ferry cannot tell what to \
                     update it from: deploy it from a remote's ref",
                    deployment.commit, deployment.deploy_serial
                ),
            }),
        }
        Ok(Self {
            kind: TargetKind::Os,
            installation: label,
            needs_root: needs_root(&repo),
            repo,
            repo_mode,
            remotes,
            installed,
            problems,
            trust,
            deploy: DeployTarget::Os(os),
        })
    }

    /// A Flatpak installation and the refs deployed in it.
    pub fn flatpak(installation: FlatpakInstallation) -> Result<Self, TargetError> {
        if !installation.exists() {
            return Err(TargetError::NotAnInstallation {
                path: installation.path.clone(),
            });
        }
        let repo = installation.repo();
        // Flatpak opens its repositories without a remotes config directory.
        let (repo_mode, remotes) = read_repo_config(&repo, None)?;
        let label = installation.label();
        let (deployed, errors) = flatpak::deployed_refs(&installation.path)?;
        let mut problems: Vec<Problem> = errors.iter().map(TargetError::to_problem).collect();
        let mut installed = Vec::with_capacity(deployed.len());
        for found in deployed {
            let data = found.data;
            match installed_ref(
                &repo,
                &remotes,
                Some(&data.origin),
                &found.ref_name,
                data.commit,
                data.timestamp,
            ) {
                Ok(mut item) => {
                    item.deploy_subpaths.clone_from(&data.subpaths);
                    item.subpaths = data.subpaths;
                    item.runtime = data.runtime;
                    // Flatpak commits rarely carry a version; the app's AppStream data does.
                    if item.version.is_none() {
                        if let Some(app) =
                            FlatpakRef::parse(&found.ref_name).filter(|parsed| parsed.is_app)
                        {
                            item.version =
                                flatpak::installed_app_version(&found.deploy_dir, app.id);
                        }
                    }
                    installed.push(item);
                }
                Err(reason) => problems.push(problem(&label, &found.ref_name, reason)),
            }
        }
        // Asked only when some locale extension is installed in part: it runs flatpak.
        let in_part = |item: &InstalledRef| {
            !item.subpaths.is_empty() && FlatpakRef::is_locale_extension(&item.ref_name)
        };
        if installed.iter().any(in_part) {
            let set = languages::Languages::configured(&installation);
            for item in installed.iter_mut().filter(|item| in_part(item)) {
                item.deploy_subpaths = languages::deploy_subpaths(&item.subpaths, set.as_ref());
            }
        }
        Ok(Self {
            kind: TargetKind::Flatpak,
            installation: label,
            needs_root: needs_root(&repo),
            trust: Destination::plain(repo.clone()),
            repo,
            repo_mode,
            remotes,
            installed,
            problems,
            deploy: DeployTarget::Flatpak(installation),
        })
    }

    /// The installation `--installation user|system|ID|DIR` names.
    pub fn flatpak_selected(
        selector: &InstallationSelector,
        paths: &FlatpakPaths,
    ) -> Result<Self, TargetError> {
        Self::flatpak(flatpak::select_installation(selector, paths)?)
    }

    /// A plain repository (`--repo DIR`) and its remote refs (`refs/remotes/<remote>/<ref>`).
    pub fn repo(dir: &Path) -> Result<Self, TargetError> {
        // libostree reads /etc/ostree/remotes.d for the system repository only.
        let remotes_dir = is_system_repo(dir).then(|| PathBuf::from("/etc/ostree/remotes.d"));
        let (repo_mode, remotes) = read_repo_config(dir, remotes_dir.as_deref())?;
        let label = dir.display().to_string();
        let mut installed = Vec::new();
        let mut problems = Vec::new();
        for (remote, ref_name, commit) in remote_refs(dir)? {
            match installed_ref(dir, &remotes, Some(&remote), &ref_name, commit, None) {
                Ok(found) => installed.push(found),
                Err(reason) => problems.push(problem(&label, &ref_name, reason)),
            }
        }
        Ok(Self {
            kind: TargetKind::Repo,
            installation: label,
            needs_root: needs_root(dir),
            repo: dir.to_owned(),
            repo_mode,
            trust: Destination {
                repo: dir.to_owned(),
                remotes_config_dir: remotes_dir,
                parents: Vec::new(),
            },
            remotes,
            installed,
            problems,
            deploy: DeployTarget::Repo,
        })
    }

    /// The remote called `name`.
    pub fn remote(&self, name: &str) -> Option<&Remote> {
        self.remotes.iter().find(|remote| remote.name == name)
    }

    /// The installed ref `ref_name` from the remote with `collection_id` (any remote when
    /// None).
    pub fn installed_ref(
        &self,
        collection_id: Option<&str>,
        ref_name: &str,
    ) -> Option<&InstalledRef> {
        self.installed.iter().find(|item| {
            item.ref_name == ref_name
                && (collection_id.is_none() || item.collection_id.as_deref() == collection_id)
        })
    }

    /// The OS this target deploys, if it is an OS target.
    pub fn os_target(&self) -> Option<&OsTarget> {
        match &self.deploy {
            DeployTarget::Os(os) => Some(os),
            _ => None,
        }
    }

    /// The Flatpak installation, if it is a Flatpak target.
    pub fn flatpak_installation(&self) -> Option<&FlatpakInstallation> {
        match &self.deploy {
            DeployTarget::Flatpak(installation) => Some(installation),
            _ => None,
        }
    }
}

/// The targets found without options, and the ones that could not be read.
#[derive(Debug, Default)]
pub struct Discovery {
    /// The targets read.
    pub targets: Vec<Target>,
    /// The ones that could not be read.
    pub errors: Vec<TargetError>,
}

/// What `ferryctl list` looks at without target options: the OS of the sysroot `OSTREE_SYSROOT`
/// names ([`HostPaths::os_sysroot`]), else the booted OS when the running system was booted
/// from OSTree; then every Flatpak system installation (highest priority first) and the
/// per-user one, each when it exists.
pub fn default_targets(host: &HostPaths) -> Discovery {
    let mut found = Discovery::default();
    if let Some(sysroot) = host.os_target_sysroot() {
        match Target::os(sysroot, &host.boot) {
            Ok(target) => found.targets.push(target),
            Err(error) => found.errors.push(error),
        }
    }
    let (mut installations, errors) = flatpak::system_installations(&host.flatpak);
    found.errors.extend(errors);
    installations.push(flatpak::user_installation(&host.flatpak));
    let mut seen: Vec<PathBuf> = Vec::new();
    for installation in installations {
        if !installation.exists() {
            continue;
        }
        // One directory configured twice (say FLATPAK_USER_DIR = FLATPAK_SYSTEM_DIR) is read once.
        let canonical =
            std::fs::canonicalize(&installation.path).unwrap_or_else(|_| installation.path.clone());
        if seen.contains(&canonical) {
            continue;
        }
        seen.push(canonical);
        match Target::flatpak(installation) {
            Ok(target) => found.targets.push(target),
            Err(error) => found.errors.push(error),
        }
    }
    found
}

/// Why a target could not be read. Each names the file or directory and what to do.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// A file or directory could not be read.
    #[error("cannot read {}", path.display())]
    Io {
        /// The path that was read.
        path: PathBuf,
        /// The read error.
        #[source]
        error: std::io::Error,
    },
    /// A file is not in the form expected.
    #[error("{}: {detail}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// A ref file that does not hold a commit checksum.
    #[error("{} does not hold a commit checksum", path.display())]
    NotACommit {
        /// The ref file.
        path: PathBuf,
        /// What it holds instead.
        #[source]
        source: crate::object::InvalidChecksum,
    },
    /// The directory given as a sysroot has no `ostree/deploy`.
    #[error(
        "{} is not an OSTree sysroot (no ostree/deploy): give --sysroot the directory that \
         holds ostree/ and boot/",
        path.display()
    )]
    NotASysroot {
        /// The directory given.
        path: PathBuf,
    },
    /// The sysroot lists no deployment in its bootloader entries.
    #[error(
        "sysroot {} has no deployment in its bootloader entries: deploy an OS with \
         `ostree admin deploy` first",
        sysroot.display()
    )]
    NoDeployment {
        /// The sysroot.
        sysroot: PathBuf,
    },
    /// The system is booted from OSTree but none of the sysroot's deployments is the running one.
    #[error(
        "{} exists, but no deployment of sysroot {} is the booted one: the bootloader entries \
         do not match the running system",
        marker.display(),
        sysroot.display()
    )]
    BootedDeploymentMissing {
        /// The sysroot.
        sysroot: PathBuf,
        /// The file saying the system was booted from OSTree (`/run/ostree-booted`).
        marker: PathBuf,
    },
    /// The directory given as a Flatpak installation has no `repo/config`.
    #[error(
        "{} is not a Flatpak installation (no repo/config): install something into it with \
         flatpak first, or name another installation",
        path.display()
    )]
    NotAnInstallation {
        /// The directory given.
        path: PathBuf,
    },
    /// The directory given as a repository has no `config`.
    #[error("{} is not an OSTree repository (no config): give --repo a repository", path.display())]
    NotARepository {
        /// The directory given.
        path: PathBuf,
    },
    /// No Flatpak installation with this ID is configured.
    #[error(
        "no Flatpak installation '{id}' is configured in {}: use user, system, one of the IDs \
         configured there, or a directory",
        config_dir.display()
    )]
    UnknownInstallation {
        /// The ID asked for.
        id: String,
        /// Where installations are configured (`installations.d`).
        config_dir: PathBuf,
    },
}

impl TargetError {
    pub(crate) fn io(path: &Path, error: std::io::Error) -> Self {
        Self::Io {
            path: path.to_owned(),
            error,
        }
    }

    pub(crate) fn invalid(path: &Path, detail: impl Into<String>) -> Self {
        Self::Invalid {
            path: path.to_owned(),
            detail: detail.into(),
        }
    }

    /// The file or directory the error is about.
    pub fn path(&self) -> &Path {
        match self {
            Self::Io { path, .. }
            | Self::Invalid { path, .. }
            | Self::NotACommit { path, .. }
            | Self::NotASysroot { path }
            | Self::NotAnInstallation { path }
            | Self::NotARepository { path } => path,
            Self::NoDeployment { sysroot } | Self::BootedDeploymentMissing { sysroot, .. } => {
                sysroot
            }
            Self::UnknownInstallation { config_dir, .. } => config_dir,
        }
    }

    /// As a listing shows it.
    pub fn to_problem(&self) -> Problem {
        let kind = match self {
            Self::Io { .. } => ProblemKind::Unreadable,
            Self::Invalid { .. } | Self::NotACommit { .. } => ProblemKind::Corrupt,
            _ => ProblemKind::Unavailable,
        };
        Problem {
            kind,
            source: self.path().display().to_string(),
            origin: None,
            ref_name: None,
            reason: crate::causes::text(self),
        }
    }
}

fn problem(source: &str, ref_name: &str, reason: String) -> Problem {
    Problem {
        kind: ProblemKind::Unreadable,
        source: source.to_owned(),
        origin: None,
        ref_name: Some(ref_name.to_owned()),
        reason,
    }
}

/// An installed ref with its remote's collection ID and its commit's timestamp and version,
/// read from the target's repository. `fallback_timestamp` (Flatpak's deploy data) is used
/// when the commit object cannot be read.
fn installed_ref(
    repo: &Path,
    remotes: &[Remote],
    remote: Option<&str>,
    ref_name: &str,
    commit: Checksum,
    fallback_timestamp: Option<u64>,
) -> Result<InstalledRef, String> {
    let collection_id = remote
        .and_then(|name| remotes.iter().find(|r| r.name == name))
        .and_then(|r| r.collection_id.clone());
    let (timestamp, version) = match commit::read_commit(repo, &commit) {
        Ok(facts) => (facts.timestamp, facts.version),
        Err(detail) => match fallback_timestamp {
            Some(timestamp) => {
                tracing::debug!(%commit, ref_name, detail, "installed commit object unreadable; using deploy data");
                (timestamp, None)
            }
            None => {
                return Err(format!(
                    "the installed commit {commit} cannot be read from {} ({detail}): run \
                     `ostree fsck --repo={}`",
                    commit::commit_path(repo, &commit).display(),
                    repo.display()
                ))
            }
        },
    };
    Ok(InstalledRef {
        remote: remote.map(str::to_owned),
        collection_id,
        ref_name: ref_name.to_owned(),
        commit,
        timestamp,
        version,
        subpaths: Vec::new(),
        deploy_subpaths: Vec::new(),
        runtime: None,
    })
}

/// The repository's mode and remotes.
pub(crate) fn read_repo_config(
    repo: &Path,
    remotes_dir: Option<&Path>,
) -> Result<(String, Vec<Remote>), TargetError> {
    let config_path = repo.join("config");
    if !config_path.is_file() {
        return Err(TargetError::NotARepository {
            path: repo.to_owned(),
        });
    }
    let config = read_key_file(&config_path)?;
    let mode = config
        .get("core", "mode")
        .map_err(|detail| TargetError::invalid(&config_path, detail))?;
    // libostree's default mode is bare.
    let mode = match mode.as_deref().unwrap_or("bare") {
        "archive" | "archive-z2" => "archive",
        "bare" => "bare",
        "bare-user" => "bare-user",
        "bare-user-only" => "bare-user-only",
        other => {
            return Err(TargetError::invalid(
                &config_path,
                format!("[core] mode={other} is not a repository mode Ferry knows"),
            ))
        }
    };
    let remotes = remotes::load_remotes(&config, &config_path, remotes_dir)?;
    Ok((mode.to_owned(), remotes))
}

/// Refs under `refs/remotes/<remote>/`, as (remote, ref, commit).
fn remote_refs(repo: &Path) -> Result<Vec<(String, String, Checksum)>, TargetError> {
    const MAX_REFS: usize = 100_000;
    const MAX_DEPTH: usize = 32;
    let base = repo.join("refs/remotes");
    let mut found = Vec::new();
    let mut pending: Vec<(PathBuf, Vec<String>)> = vec![(base, Vec::new())];
    while let Some((dir, components)) = pending.pop() {
        let listing = match std::fs::read_dir(&dir) {
            Ok(listing) => listing,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => return Err(TargetError::io(&dir, error)),
        };
        for item in listing {
            let item = item.map_err(|error| TargetError::io(&dir, error))?;
            let name = item.file_name();
            let Some(name) = name.to_str().filter(|n| !n.starts_with('.')) else {
                continue;
            };
            let kind = item
                .file_type()
                .map_err(|error| TargetError::io(&item.path(), error))?;
            let mut path_parts = components.clone();
            path_parts.push(name.to_owned());
            if kind.is_dir() {
                if path_parts.len() > MAX_DEPTH {
                    return Err(TargetError::invalid(&item.path(), "refs nest too deeply"));
                }
                pending.push((item.path(), path_parts));
            } else if kind.is_file() && path_parts.len() >= 2 {
                if found.len() == MAX_REFS {
                    return Err(TargetError::invalid(
                        repo,
                        format!("holds more than {MAX_REFS} remote refs"),
                    ));
                }
                let path = item.path();
                let text = read_text(&path, 4096)?;
                let commit = Checksum::from_hex(text.trim_end_matches('\n')).map_err(|source| {
                    TargetError::NotACommit {
                        path: path.clone(),
                        source,
                    }
                })?;
                let remote = path_parts.remove(0);
                found.push((remote, path_parts.join("/"), commit));
            }
        }
    }
    found.sort();
    Ok(found)
}

pub(crate) fn is_system_repo(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(dir), std::fs::metadata("/ostree/repo")) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Whether this process lacks the right to write the repository.
fn needs_root(repo: &Path) -> bool {
    rustix::fs::access(repo, rustix::fs::Access::WRITE_OK).is_err()
}

/// Reads at most `limit` bytes of `path`; a longer file is refused.
pub(crate) fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, TargetError> {
    let file = std::fs::File::open(path).map_err(|error| TargetError::io(path, error))?;
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| TargetError::io(path, error))?;
    if bytes.len() as u64 > limit {
        return Err(TargetError::invalid(
            path,
            format!("is larger than the {limit} bytes such a file may have"),
        ));
    }
    Ok(bytes)
}

/// Reads a UTF-8 text file of at most `limit` bytes.
pub(crate) fn read_text(path: &Path, limit: u64) -> Result<String, TargetError> {
    String::from_utf8(read_limited(path, limit)?)
        .map_err(|_| TargetError::invalid(path, "is not UTF-8 text"))
}

pub(crate) fn read_key_file(path: &Path) -> Result<KeyFile, TargetError> {
    let text = read_text(path, crate::repo::MAX_CONFIG_SIZE as u64)?;
    KeyFile::parse(&text).map_err(|detail| TargetError::invalid(path, detail))
}
