//! Handing pulled commits over to the tools that own deployment: `ostree admin deploy` for
//! the OS and `flatpak update/install --no-pull` for apps and runtimes. Ferry fetches and
//! verifies; these tools then do exactly what they would do after their own pull, so the
//! result is what they would have produced.

mod appstream;

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub use appstream::{deploy_appstream, AppstreamError};

use crate::target::{FlatpakInstallation, OsTarget};

/// How much of a failing tool's stderr is kept for the error message.
const MAX_STDERR: usize = 16 * 1024;

/// Why handing over to `ostree admin` or `flatpak` failed.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// A program could not be started.
    #[error("cannot run {program}; install it (it is part of the {package} package)")]
    Spawn {
        /// The program.
        program: String,
        /// The distribution package that provides it.
        package: &'static str,
        /// The spawn error.
        #[source]
        error: std::io::Error,
    },

    /// A command ran and exited with an error.
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },

    /// `FERRY_REBOOT_COMMAND` is set but empty.
    #[error("the restart command is empty; set FERRY_REBOOT_COMMAND to a command, or unset it")]
    EmptyRebootCommand,
}

/// `ostree admin deploy` of `remote:ref_name` for the OS of `os`, keeping its kernel
/// arguments: the running kernel's command line when booted (and then staged, finalised at
/// shutdown), else the current deployment's arguments.
pub fn os_deploy_command(os: &OsTarget, remote: &str, ref_name: &str) -> Command {
    let mut command = Command::new("ostree");
    command
        .args(["admin", "deploy"])
        .arg(path_option("--sysroot", os.sysroot()))
        .arg(format!("--os={}", os.stateroot()));
    if os.booted() {
        command.args(["--stage", "--karg-proc-cmdline"]);
    } else {
        for karg in os.kernel_args() {
            command.arg(format!("--karg={karg}"));
        }
    }
    command.arg(format!("{remote}:{ref_name}"));
    command
}

/// Deploys `remote:ref_name` (already pulled to `refs/remotes/<remote>/<ref_name>` of the
/// sysroot repository) as the new default deployment.
pub fn deploy_os(os: &OsTarget, remote: &str, ref_name: &str) -> Result<(), DeployError> {
    run(os_deploy_command(os, remote, ref_name), "ostree")
}

/// `flatpak update --no-pull` of an installed ref, or `flatpak install --no-pull` of one not
/// installed yet (a runtime an app needs), against `installation`.
pub fn flatpak_deploy_command(
    installation: &FlatpakInstallation,
    remote: &str,
    ref_name: &str,
    installed: bool,
) -> Command {
    let mut command = Command::new("flatpak");
    command.envs(installation.flatpak_env());
    command.arg(if installed { "update" } else { "install" });
    command.args(installation.flatpak_args());
    command.args(["--no-pull", "--noninteractive", "-y"]);
    if !installed {
        command.arg(remote);
    }
    command.arg(ref_name);
    command
}

/// Deploys the commit pulled to `refs/remotes/<remote>/<ref_name>` of the installation's
/// repository.
pub fn deploy_flatpak(
    installation: &FlatpakInstallation,
    remote: &str,
    ref_name: &str,
    installed: bool,
) -> Result<(), DeployError> {
    run(
        flatpak_deploy_command(installation, remote, ref_name, installed),
        "flatpak",
    )
}

/// Replaces the restart command (tests, machines without systemd), split at whitespace.
pub const ENV_REBOOT_COMMAND: &str = "FERRY_REBOOT_COMMAND";
const DEFAULT_REBOOT_COMMAND: [&str; 2] = ["systemctl", "reboot"];

/// The one way Ferry restarts the machine into a new OS deployment (`ferryctl install
/// --reboot`, the hook's kiosk and nearby installs): `FERRY_REBOOT_COMMAND`, else
/// `systemctl reboot`.
pub fn reboot() -> Result<(), DeployError> {
    let command = reboot_command();
    let Some((program, args)) = command.split_first() else {
        return Err(DeployError::EmptyRebootCommand);
    };
    let mut command = Command::new(program);
    command.args(args);
    run(command, "systemd")
}

/// The restart command [`reboot`] runs.
pub fn reboot_command() -> Vec<std::ffi::OsString> {
    let configured: Vec<std::ffi::OsString> = std::env::var(ENV_REBOOT_COMMAND)
        .ok()
        .map(|text| text.split_whitespace().map(Into::into).collect())
        .unwrap_or_default();
    if configured.is_empty() {
        DEFAULT_REBOOT_COMMAND.map(Into::into).to_vec()
    } else {
        configured
    }
}

/// Runs `command` to completion, with stdin closed and stdout discarded (the event stream
/// is Ferry's own); a failure carries the tool's stderr.
pub(crate) fn run(mut command: Command, package: &'static str) -> Result<(), DeployError> {
    let shown = show(&command);
    tracing::info!(command = %shown, "running");
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command.spawn().map_err(|error| DeployError::Spawn {
        program: command.get_program().to_string_lossy().into_owned(),
        package,
        error,
    })?;
    let mut stderr = Vec::new();
    if let Some(pipe) = child.stderr.take() {
        // Read to the end so the tool never blocks on a full pipe; keep only the start.
        let mut limited = pipe.take(MAX_STDERR as u64);
        let _ = limited.read_to_end(&mut stderr);
        let _ = std::io::copy(&mut limited.into_inner(), &mut std::io::sink());
    }
    let status = child.wait().map_err(|error| DeployError::Spawn {
        program: command.get_program().to_string_lossy().into_owned(),
        package,
        error,
    })?;
    if status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&stderr).trim().to_owned();
    Err(DeployError::Failed {
        command: shown,
        status: status.to_string(),
        stderr: if stderr.is_empty() {
            "no error output".to_owned()
        } else {
            stderr
        },
    })
}

pub(crate) fn path_option(option: &str, path: &Path) -> OsString {
    let mut text = OsString::from(option);
    text.push("=");
    text.push(path);
    text
}

/// The command line as a person would type it, for logs and errors.
fn show(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `<installation>/appstream/<remote>/<arch>`: where Flatpak keeps the deployed AppStream
/// data of a remote.
pub fn appstream_dir(installation: &FlatpakInstallation, remote: &str, arch: &str) -> PathBuf {
    installation.path.join("appstream").join(remote).join(arch)
}
