//! What `list` and `install` share: the targets a command line names, and the sources it
//! adds, handed to the engine's one way of listing ([`sources::gather`]), so both commands
//! always agree on what is offered.

use std::path::{Path, PathBuf};

use ferry_engine::paths::Paths;
pub use ferry_engine::resolve::sources::SourceOptions;
use ferry_engine::resolve::sources::{self, Gathered, TargetChoice};
use ferry_engine::target::{HostPaths, InstallationSelector, Target};
use ferry_engine::trust::TrustRoots;

/// The target options of a command line; all empty means "this machine's defaults".
#[derive(Debug, Clone, Copy, Default)]
pub struct TargetOptions<'a> {
    pub sysroot: Option<&'a Path>,
    pub installations: &'a [String],
    pub repo: Option<&'a Path>,
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
        &Paths::from_env().run_dir,
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
    Ok(sources::gather_from(
        host,
        run_dir,
        choice,
        from,
        icon_cache,
        trust_roots,
    ))
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
