//! What `list` and `install` share: the targets a command line names, and the sources it
//! adds, handed to the engine's one way of listing ([`sources::gather`]), so both commands
//! always agree on what is offered.

use std::path::{Path, PathBuf};

use ferry_engine::resolve::sources::{
    self, GatherOptions, Gathered, TargetChoice, NEARBY_TIMEOUT, UPSTREAM_TIMEOUT,
};
use ferry_engine::target::{HostPaths, InstallationSelector, Target};
use ferry_engine::trust::TrustRoots;

/// The target options of a command line; all empty means "this machine's defaults".
#[derive(Debug, Clone, Copy, Default)]
pub struct TargetOptions<'a> {
    pub sysroot: Option<&'a Path>,
    pub installations: &'a [String],
    pub repo: Option<&'a Path>,
}

/// Where updates may come from besides the targets themselves.
#[derive(Debug, Clone, Copy)]
pub struct SourceOptions<'a> {
    /// `--from`: drives, repositories and URLs of computers nearby.
    pub named: &'a [String],
    /// `--offline`: leave the network out: the remotes' own servers, and computers nearby
    /// (found with DNS-SD otherwise).
    pub offline: bool,
    /// `--only-from`: the named sources and nothing else (no recorded drives, no network).
    pub only_named: bool,
}

/// Opens the recorded drives and the named sources, then lists updates for the chosen
/// targets. A target that cannot be read is an error (the person named it).
pub fn gather(
    targets: TargetOptions<'_>,
    from: SourceOptions<'_>,
    icon_cache: Option<PathBuf>,
    trust_roots: &TrustRoots,
) -> anyhow::Result<Gathered> {
    gather_on(
        &HostPaths::from_env(),
        &sources::run_dir(),
        targets,
        from,
        icon_cache,
        trust_roots,
    )
}

/// As [`gather`], with the machine's places and the drive records' directory given rather
/// than taken from the environment (a privileged run fixes them).
pub fn gather_on(
    host: &HostPaths,
    run_dir: &Path,
    targets: TargetOptions<'_>,
    from: SourceOptions<'_>,
    icon_cache: Option<PathBuf>,
    trust_roots: &TrustRoots,
) -> anyhow::Result<Gathered> {
    let choice = if targets.sysroot.is_none()
        && targets.installations.is_empty()
        && targets.repo.is_none()
    {
        TargetChoice::MachineDefaults
    } else {
        TargetChoice::Chosen(chosen_targets(targets, host)?)
    };
    let mut set = if from.only_named {
        Default::default()
    } else {
        sources::recorded_drives(run_dir)
    };
    set.extend(sources::named(from.named));
    let network = !from.offline && !from.only_named;
    let options = GatherOptions {
        upstream: network.then_some(UPSTREAM_TIMEOUT),
        nearby: network.then_some(NEARBY_TIMEOUT),
        quick: false,
        icon_cache,
        trust_roots: trust_roots.clone(),
    };
    Ok(sources::gather(host, choice, set, options))
}

fn chosen_targets(options: TargetOptions<'_>, host: &HostPaths) -> anyhow::Result<Vec<Target>> {
    let mut targets = Vec::new();
    if let Some(sysroot) = options.sysroot {
        targets.push(Target::os(sysroot, &host.boot)?);
    }
    for installation in options.installations {
        let selector = InstallationSelector::parse(installation);
        targets.push(Target::flatpak_selected(&selector, &host.flatpak)?);
    }
    if let Some(repo) = options.repo {
        targets.push(Target::repo(repo)?);
    }
    Ok(targets)
}
