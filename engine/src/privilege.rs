//! What `ferryctl install` accepts when it runs as root on behalf of a user.
//!
//! The desktop app elevates with `pkexec` (polkit action [`INSTALL_ACTION`]). Whoever passes
//! that action must not be able to point root at what they own, so a privileged run
//! ([`Caller::detect`]: effective UID 0 with `PKEXEC_UID` set) is restricted:
//!
//! - Targets: the running system's sysroot `/` and the system Flatpak installations (the
//!   default one and those of `/etc/flatpak/installations.d`). Never `user`, another
//!   directory, or a sysroot other than `/`.
//! - Sources: the drives the hook recorded under `/run/ferry/drives` (a root-only
//!   directory), computers nearby, the remotes' servers, and `http(s)://` peers, whose data
//!   is verified like any peer's. A `--from` path must be exactly a recorded drive's mount.
//! - Environment: [`IGNORED_VARIABLES`] are dropped; the fixed places of [`Machine::fixed`]
//!   are used.
//! - Downgrades and updates from remotes that do not verify signatures need the separate
//!   action [`ADMIN_ACTION`] (`auth_admin` always), asked with `pkcheck` for the process
//!   that ran `pkexec` ([`authorize_admin`]).
//!
//! - `prepare-drive` has its own action, [`PREPARE_DRIVE_ACTION`], and its own rules
//!   ([`validate_drive`]): it writes only to a mounted removable drive or a folder the caller
//!   owns (never through a symlinked `.ostree`), and reads only the running system's sysroot
//!   and the system Flatpak installations. What it wrote in the user's folder is then given
//!   to the user ([`PinnedDrive::hand_over`]), so that their own run can add to it.
//!
//! Only pkexec is recognised: `sudo` is used by administrators, who may do all this anyway.

use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::causes::Shared;
use crate::prepare::RemovableMount;
use crate::resolve::sources;
use crate::schema::Update;
use crate::target::flatpak::{configured_installations, FlatpakScope};
use crate::target::{BootState, FlatpakPaths, HostPaths, InstallationSelector};
use crate::trust::TrustRoots;

/// The polkit action `pkexec` checks for `ferryctl`.
pub const INSTALL_ACTION: &str = "io.github.ferry.Ferry.install";
/// The polkit action `pkexec` checks for `ferryctl sharing` (the Preferences switch).
pub const SHARING_ACTION: &str = "io.github.ferry.Ferry.share-nearby";
/// The polkit action `pkexec` checks for `ferryctl rollback` (the app's "Go Back to the
/// Previous Version").
pub const ROLLBACK_ACTION: &str = "io.github.ferry.Ferry.rollback";
/// The polkit action for downgrades and unsigned remotes: an administrator every time.
pub const ADMIN_ACTION: &str = "io.github.ferry.Ferry.install-downgrade";
/// The polkit action `pkexec` checks for `ferryctl prepare-drive` (its own, so an
/// administrator can allow making drives apart from installing).
pub const PREPARE_DRIVE_ACTION: &str = "io.github.ferry.Ferry.prepare-drive";
/// Set by pkexec to the UID of the user who ran it.
pub const ENV_PKEXEC_UID: &str = "PKEXEC_UID";

/// Variables that move what Ferry, `ostree` or `flatpak` read or write. A privileged run
/// removes them before it does anything (pkexec clears most already).
pub const IGNORED_VARIABLES: &[&str] = &[
    "OSTREE_SYSROOT",
    "OSTREE_REPO",
    "OSTREE_BOOTID",
    "FLATPAK_SYSTEM_DIR",
    "FLATPAK_USER_DIR",
    "FLATPAK_CONFIG_DIR",
    "FLATPAK_SYSTEM_HELPER_ON_SESSION",
    "XDG_DATA_HOME",
    "XDG_CONFIG_HOME",
    "XDG_CACHE_HOME",
    "FERRY_RUN_DIR",
    "FERRY_TRUST_ROOT",
    "FERRY_CONFIG",
    "FERRY_SYSTEMCTL",
    "FERRY_SERVE_STATS",
    "GNUPGHOME",
    "FERRY_JOURNAL_SOCKET",
    "FERRY_JOURNAL_DIR",
];

/// The user a privileged run acts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// The user's ID, from `PKEXEC_UID`.
    pub uid: u32,
}

impl Caller {
    /// The caller when this process runs as root through pkexec; None otherwise.
    pub fn detect() -> Result<Option<Self>, Refusal> {
        Self::from_parts(
            rustix::process::geteuid().is_root(),
            std::env::var_os(ENV_PKEXEC_UID).as_deref(),
        )
    }

    /// From the effective UID being 0 and the value of `PKEXEC_UID`.
    pub fn from_parts(
        euid_is_root: bool,
        pkexec_uid: Option<&OsStr>,
    ) -> Result<Option<Self>, Refusal> {
        if !euid_is_root {
            return Ok(None);
        }
        let Some(value) = pkexec_uid else {
            return Ok(None);
        };
        value
            .to_str()
            .and_then(|text| text.parse::<u32>().ok())
            .map(|uid| Some(Self { uid }))
            .ok_or_else(|| Refusal::BadCaller {
                value: value.to_string_lossy().into_owned(),
            })
    }
}

/// The places a privileged run uses, whatever the environment says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    /// Where the OS and the system Flatpak installations are.
    pub host: HostPaths,
    /// Holds `drives/`, the hook's records.
    pub run_dir: PathBuf,
    /// The keys that decide what the machine trusts.
    pub trust_roots: TrustRoots,
    /// Who must own the record directories: root.
    pub records_owner: u32,
}

impl Machine {
    /// `/`, `/var/lib/flatpak`, `/etc/flatpak`, `/run/ferry` and the default trust roots.
    pub fn fixed() -> Self {
        let mut flatpak = FlatpakPaths::from_vars(|_| None);
        // Never used (`user` is refused) but must not follow $HOME either.
        flatpak.user_dir = PathBuf::from("/root/.local/share/flatpak");
        Self {
            host: HostPaths {
                boot: BootState::default(),
                flatpak,
                os_sysroot: None,
            },
            run_dir: crate::paths::Paths::defaults().run_dir,
            trust_roots: TrustRoots::default(),
            records_owner: 0,
        }
    }
}

/// What the command line asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// `--sysroot`: the sysroot to update; None for the running system.
    pub sysroot: Option<PathBuf>,
    /// `--installation`: the Flatpak installations to update.
    pub installations: Vec<String>,
    /// `--from`: the sources to read, as given.
    pub from: Vec<String>,
    /// `--allow-downgrade`: install updates older than what is installed.
    pub allow_downgrade: bool,
}

/// Why a privileged run refused. One line each, naming what was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refusal {
    /// `PKEXEC_UID` is set but is not a user ID.
    #[error("refused as root: PKEXEC_UID {value:?} is not a user ID")]
    BadCaller {
        /// Its value.
        value: String,
    },
    /// The sysroot asked for is not the running system's.
    #[error(
        "refused as root for user {uid}: --sysroot {} is not the running system's sysroot /",
        path.display()
    )]
    Sysroot {
        /// The caller.
        uid: u32,
        /// The sysroot asked for.
        path: PathBuf,
    },
    /// The installation asked for is not a system one.
    #[error(
        "refused as root for user {uid}: --installation {name} is not a system installation \
         (system, or one configured in /etc/flatpak/installations.d)"
    )]
    Installation {
        /// The caller.
        uid: u32,
        /// The installation asked for.
        name: String,
    },
    /// The source asked for is neither a recorded drive nor an http(s) URL.
    #[error(
        "refused as root for user {uid}: --from {source_name} is neither a recorded drive's mount \
         point nor an http(s) URL"
    )]
    Source {
        /// The caller.
        uid: u32,
        /// The source asked for.
        source_name: String,
    },
    /// The drive folder is neither a removable drive's mount point nor the caller's own.
    #[error(
        "refused as root for user {uid}: {} is neither a mounted removable drive nor a folder \
         user {uid} owns",
        path.display()
    )]
    Destination {
        /// The caller.
        uid: u32,
        /// The folder asked for.
        path: PathBuf,
    },
    /// The run directory or its drive records under it can be written by someone other than root.
    #[error("refused as root for user {uid}: {} is not a directory only root can write", path.display())]
    Records {
        /// The caller.
        uid: u32,
        /// The records directory.
        path: PathBuf,
    },
    /// Polkit did not authorize the caller for the action.
    #[error(
        "refused as root for user {uid}: {what} needs an administrator ({ADMIN_ACTION}): {detail}"
    )]
    NotAuthorized {
        /// The caller.
        uid: u32,
        /// What needs an administrator, comma-separated.
        what: String,
        /// Why authorization failed: polkit's answer, or why it could not be asked.
        detail: String,
        /// The system error that kept polkit from being asked, if one did.
        #[source]
        source: Option<Shared<std::io::Error>>,
    },
}

/// Checks `request` for a run on behalf of `caller`, and returns it with every target and
/// source named as the machine names it (`--sysroot /`, installation IDs), so nothing the
/// caller can change after this check is used.
pub fn validate(caller: Caller, request: &Request, machine: &Machine) -> Result<Request, Refusal> {
    let uid = caller.uid;
    let sysroot = match &request.sysroot {
        None => None,
        Some(path) => {
            if !same_directory(path, &machine.host.boot.root) {
                return Err(Refusal::Sysroot {
                    uid,
                    path: path.clone(),
                });
            }
            Some(machine.host.boot.root.clone())
        }
    };
    let mut installations = Vec::new();
    for name in &request.installations {
        let label = system_installation(name, &machine.host.flatpak).ok_or_else(|| {
            Refusal::Installation {
                uid,
                name: name.clone(),
            }
        })?;
        if !installations.contains(&label) {
            installations.push(label);
        }
    }
    let records_dir = machine.run_dir.join("drives");
    for dir in [&machine.run_dir, &records_dir] {
        if !owned_by_only(dir, machine.records_owner) {
            return Err(Refusal::Records {
                uid,
                path: dir.clone(),
            });
        }
    }
    let (records, _) = sources::drive_records(&machine.run_dir);
    for source in &request.from {
        let url = source.starts_with("http://") || source.starts_with("https://");
        if !url && !records.iter().any(|record| record.mount == *source) {
            return Err(Refusal::Source {
                uid,
                source_name: source.clone(),
            });
        }
    }
    Ok(Request {
        sysroot,
        installations,
        from: request.from.clone(),
        allow_downgrade: request.allow_downgrade,
    })
}

/// What `ferryctl prepare-drive` asked for: where to write, and what to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DriveRequest {
    /// The drive's mount point or folder to write to.
    pub drive: PathBuf,
    /// `--sysroot`: the sysroot to read the OS from; None for the running system.
    pub sysroot: Option<PathBuf>,
    /// `--installation`: the Flatpak installations to read apps from.
    pub installations: Vec<String>,
}

/// Checks a `prepare-drive` run on behalf of `caller`. The drive must be the mount point of
/// one of `removable` (this machine's mounted removable drives) or a directory `caller` owns,
/// and its `.ostree` and `.ostree/repo`, where they exist, real directories; sources are the
/// running system's sysroot and system installations only, as for installs. Returns the
/// request with the drive's canonical path and the machine's names for the sources.
pub fn validate_drive(
    caller: Caller,
    request: &DriveRequest,
    machine: &Machine,
    removable: &[RemovableMount],
) -> Result<DriveRequest, Refusal> {
    let uid = caller.uid;
    let refuse = || Refusal::Destination {
        uid,
        path: request.drive.clone(),
    };
    let drive = std::fs::canonicalize(&request.drive).map_err(|_| refuse())?;
    let on_removable = removable.iter().any(|mount| {
        std::fs::canonicalize(&mount.mount_point).is_ok_and(|mount_point| mount_point == drive)
    });
    let owned =
        std::fs::symlink_metadata(&drive).is_ok_and(|meta| meta.is_dir() && meta.uid() == uid);
    if !on_removable && !owned {
        return Err(refuse());
    }
    // The repository's directories are opened by path later; a symlink there would point
    // root's writes elsewhere.
    for inner in [".ostree", ".ostree/repo"] {
        match std::fs::symlink_metadata(drive.join(inner)) {
            Ok(meta) if !meta.is_dir() => return Err(refuse()),
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => break,
            Err(_) => return Err(refuse()),
        }
    }
    let targets = validate(
        caller,
        &Request {
            sysroot: request.sysroot.clone(),
            installations: request.installations.clone(),
            from: Vec::new(),
            allow_downgrade: false,
        },
        machine,
    )?;
    Ok(DriveRequest {
        drive,
        sysroot: targets.sysroot,
        installations: targets.installations,
    })
}

/// What needs [`ADMIN_ACTION`]: `--allow-downgrade`, and each update from a remote that does
/// not verify signatures. Empty when nothing does.
pub fn admin_reasons<'a>(
    allow_downgrade: bool,
    updates: impl IntoIterator<Item = &'a Update>,
) -> Vec<String> {
    let mut reasons = Vec::new();
    if allow_downgrade {
        reasons.push("--allow-downgrade".to_owned());
    }
    for update in updates {
        if !update.signed {
            reasons.push(format!("unsigned {}", update.ref_name));
        }
    }
    reasons
}

/// Asks polkit whether the process that ran pkexec (our parent: pkexec execs us) may do
/// [`ADMIN_ACTION`], letting its authentication agent ask for an administrator's password.
///
/// pkexec picks its action by program path, so a second action for the same program is
/// checked here with `pkcheck`, which polkit ships beside pkexec, rather than through a
/// second program. The subject is the parent process by PID and start time, as pkexec's own
/// subject; its UID must still be the caller's, so a parent that exited (and left us to
/// init) is refused rather than asked about.
pub fn authorize_admin(caller: Caller, reasons: &[String]) -> Result<(), Refusal> {
    ask_polkit(caller, reasons, Path::new("/proc"), OsStr::new("pkcheck"))
}

/// [`authorize_admin`] with the process table at `proc_dir` and polkit's checker `pkcheck`.
fn ask_polkit(
    caller: Caller,
    reasons: &[String],
    proc_dir: &Path,
    pkcheck: &OsStr,
) -> Result<(), Refusal> {
    if reasons.is_empty() {
        return Ok(());
    }
    let refuse_because = |detail: String, source: Option<std::io::Error>| Refusal::NotAuthorized {
        uid: caller.uid,
        what: reasons.join(", "),
        detail,
        source: source.map(Shared::new),
    };
    let refuse = |detail: String| refuse_because(detail, None);
    let parent = rustix::process::getppid()
        .map(|pid| pid.as_raw_nonzero().get())
        .ok_or_else(|| refuse("no parent process".to_owned()))?;
    let process = ParentProcess::read(proc_dir, parent)
        .map_err(|error| refuse_because(format!("cannot read process {parent}"), Some(error)))?;
    if process.uid != caller.uid {
        return Err(refuse(format!(
            "the process that ran pkexec ({parent}) is no longer user {}'s",
            caller.uid
        )));
    }
    let output = Command::new(pkcheck)
        .args(["--action-id", ADMIN_ACTION, "--process"])
        .arg(format!("{parent},{},{}", process.start_time, caller.uid))
        .arg("--allow-user-interaction")
        .output()
        .map_err(|error| refuse_because("cannot run pkcheck".to_owned(), Some(error)))?;
    if output.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&output.stderr);
    let first = said
        .lines()
        .find(|line| !line.trim().is_empty())
        .unwrap_or("");
    Err(refuse(format!(
        "polkit said no (pkcheck {}){}",
        output.status,
        if first.is_empty() {
            String::new()
        } else {
            format!(": {}", first.trim())
        }
    )))
}

/// The parts of `/proc/PID` polkit identifies a process by.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ParentProcess {
    uid: u32,
    start_time: u64,
}

impl ParentProcess {
    fn read(proc_dir: &Path, pid: i32) -> std::io::Result<Self> {
        let dir = proc_dir.join(pid.to_string());
        let uid = std::fs::metadata(&dir)?.uid();
        let stat = read_small(&dir.join("stat"))?;
        let start_time = parse_start_time(&stat).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "unreadable stat")
        })?;
        Ok(Self { uid, start_time })
    }
}

fn read_small(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(64 * 1024)
        .read_to_string(&mut text)?;
    Ok(text)
}

/// Field 22 of `/proc/PID/stat`, counting after the command name, which may hold spaces and
/// parentheses.
fn parse_start_time(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // Fields 3.. follow the name; start time is field 22.
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// The installation label `flatpak` knows a system installation by, or None when `name`
/// is not one.
fn system_installation(name: &str, paths: &FlatpakPaths) -> Option<String> {
    let (configured, _) = configured_installations(paths);
    let configured_id =
        |installation: &crate::target::FlatpakInstallation| match &installation.scope {
            FlatpakScope::Configured { id, .. } => Some(id.clone()),
            _ => None,
        };
    match InstallationSelector::parse(name) {
        InstallationSelector::User => None,
        InstallationSelector::System => Some("system".to_owned()),
        InstallationSelector::Id(id) => configured
            .iter()
            .filter_map(configured_id)
            .find(|known| *known == id),
        InstallationSelector::Directory(dir) => {
            if same_directory(&dir, &paths.system_dir) {
                return Some("system".to_owned());
            }
            configured
                .iter()
                .find(|installation| same_directory(&dir, &installation.path))
                .and_then(configured_id)
        }
    }
}

fn same_directory(named: &Path, allowed: &Path) -> bool {
    match (std::fs::canonicalize(named), std::fs::canonicalize(allowed)) {
        (Ok(named), Ok(allowed)) => named == allowed,
        _ => false,
    }
}

/// Owned by `owner` and writable by no one else: a directory the caller cannot have
/// filled. A directory that does not exist holds nothing, so it passes.
fn owned_by_only(dir: &Path, owner: u32) -> bool {
    match std::fs::symlink_metadata(dir) {
        Ok(meta) => meta.is_dir() && meta.uid() == owner && meta.mode() & 0o022 == 0,
        Err(error) => error.kind() == std::io::ErrorKind::NotFound,
    }
}

mod hand_over;
mod pin;
pub use hand_over::HandOverError;
pub use pin::{pin_drive, PinnedDrive};

#[cfg(test)]
mod tests;
