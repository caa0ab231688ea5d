//! Deploying a remote's AppStream branch the way Flatpak deploys it after its own pull, so
//! software centres show what a drive brought without a network.
//!
//! Flatpak has no `--no-pull` for AppStream (`flatpak update --appstream` always fetches
//! from the remote's URL first), so Ferry does what Flatpak's own deploy step does: check
//! the commit of `refs/remotes/<remote>/appstream2/<arch>` out in user mode into
//! `appstream/<remote>/<arch>/<commit>` (through a temporary directory), point the `active`
//! symlink at it with an atomic rename, touch `.timestamp`, drop the previous checkout, and
//! touch `appstream/` so readers re-scan.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use flate2::write::GzEncoder;
use flate2::Compression;

use super::{appstream_dir, path_option, run, DeployError};
use crate::object::Checksum;
use crate::target::FlatpakInstallation;

#[derive(Debug, thiserror::Error)]
pub enum AppstreamError {
    #[error("cannot update the AppStream data in {}: {error}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },

    #[error("cannot check out the AppStream data: {0}")]
    Checkout(#[from] DeployError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AppstreamError + '_ {
    move |error| AppstreamError::Io {
        path: path.to_owned(),
        error,
    }
}

/// Makes `commit` (already in the installation's repository) the active AppStream data of
/// `remote` for `arch`. Returns false when it already was.
pub fn deploy_appstream(
    installation: &FlatpakInstallation,
    remote: &str,
    arch: &str,
    commit: &Checksum,
) -> Result<bool, AppstreamError> {
    let arch_dir = appstream_dir(installation, remote, arch);
    fs::create_dir_all(&arch_dir).map_err(io(&arch_dir))?;
    let active = arch_dir.join("active");
    let timestamp = arch_dir.join(".timestamp");
    let name = commit.to_string();
    let checkout = arch_dir.join(&name);
    let previous = fs::read_link(&active)
        .ok()
        .and_then(|target| target.to_str().map(str::to_owned));
    if previous.as_deref() == Some(name.as_str()) && checkout.is_dir() {
        fs::write(&timestamp, b"").map_err(io(&timestamp))?;
        return Ok(false);
    }

    if !checkout.is_dir() {
        // A leftover of an interrupted run is removed; ostree creates the directory.
        let staged = arch_dir.join(format!(".{name}-{}", std::process::id()));
        if staged.exists() {
            fs::remove_dir_all(&staged).map_err(io(&staged))?;
        }
        let mut command = Command::new("ostree");
        command
            .arg("checkout")
            .arg(path_option("--repo", &installation.repo()))
            .args(["--user-mode", "--union"])
            .arg(&name)
            .arg(&staged);
        run(command, "ostree")?;
        compress_catalog(&staged)?;
        fs::rename(&staged, &checkout).map_err(io(&checkout))?;
    }
    let link = arch_dir.join(format!(".active-{}", std::process::id()));
    let _ = fs::remove_file(&link);
    symlink(&name, &link).map_err(io(&link))?;
    fs::rename(&link, &active).map_err(io(&active))?;
    if let Some(old) = previous.filter(|old| old != &name && !old.contains('/')) {
        if let Err(error) = fs::remove_dir_all(arch_dir.join(&old)) {
            tracing::warn!(%error, old, "cannot remove the previous AppStream checkout");
        }
    }
    fs::write(&timestamp, b"").map_err(io(&timestamp))?;
    let top = installation.path.join("appstream");
    let now = fs::File::open(&top).and_then(|dir| dir.set_modified(std::time::SystemTime::now()));
    if let Err(error) = now {
        tracing::debug!(%error, "cannot touch the AppStream directory");
    }
    Ok(true)
}

/// Flatpak also deploys the `appstream2` catalogue gzipped as `appstream.xml.gz`, the name
/// older readers look for.
fn compress_catalog(checkout: &Path) -> Result<(), AppstreamError> {
    let plain = checkout.join("appstream.xml");
    let packed = checkout.join("appstream.xml.gz");
    if !plain.is_file() || packed.exists() {
        return Ok(());
    }
    let mut input = fs::File::open(&plain).map_err(io(&plain))?;
    let output = fs::File::create(&packed).map_err(io(&packed))?;
    let mut encoder = GzEncoder::new(output, Compression::default());
    std::io::copy(&mut input, &mut encoder).map_err(io(&packed))?;
    encoder.finish().map_err(io(&packed))?;
    Ok(())
}
