//! Flatpak installations, found and read as Flatpak 1.14 does (`common/flatpak-dir.c`): the
//! default system installation (`$FLATPAK_SYSTEM_DIR`, else `/var/lib/flatpak`), the per-user
//! one (`$FLATPAK_USER_DIR`, else `$XDG_DATA_HOME/flatpak`, else
//! `~/.local/share/flatpak`) and the system installations of
//! `$FLATPAK_CONFIG_DIR/installations.d/*.conf` (else `/etc/flatpak/installations.d`).
//! A deployed ref is `<installation>/{app,runtime}/<name>/<arch>/<branch>/active/deploy`,
//! a GVariant `(ssasta{sv})` naming its origin remote and commit.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::path::{Path, PathBuf};

use gvariant::aligned_bytes::copy_to_align;
use gvariant::{gv, Marker, Structure};

use super::{read_key_file, read_limited, TargetError};
use crate::object::Checksum;
use crate::repo::KeyFile;

/// Largest `deploy` file read; real ones are a few kilobytes.
const MAX_DEPLOY_DATA_SIZE: u64 = 1024 * 1024;
/// Deployed refs beyond this many per installation are an error rather than a long wait.
const MAX_DEPLOYED_REFS: usize = 20_000;
/// Installation IDs longer than this are refused, as Flatpak does.
const MAX_INSTALLATION_ID_LEN: usize = 80;

/// Where Flatpak keeps its installations on this machine, resolved from the environment the
/// way `flatpak` resolves it, so Ferry and the `flatpak` it runs agree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlatpakPaths {
    /// The default system installation.
    pub system_dir: PathBuf,
    /// The per-user installation.
    pub user_dir: PathBuf,
    /// Holds `installations.d/` (and `remotes.d/`).
    pub config_dir: PathBuf,
}

impl FlatpakPaths {
    /// From the process environment.
    pub fn from_env() -> Self {
        Self::from_vars(|name| std::env::var_os(name))
    }

    /// From the variables `var` returns (`FLATPAK_SYSTEM_DIR`, `FLATPAK_USER_DIR`,
    /// `XDG_DATA_HOME`, `HOME`, `FLATPAK_CONFIG_DIR`).
    pub fn from_vars(var: impl Fn(&str) -> Option<OsString>) -> Self {
        let non_empty = |name: &str| var(name).filter(|value| !value.is_empty());
        // Flatpak takes FLATPAK_SYSTEM_DIR and FLATPAK_CONFIG_DIR even when empty.
        let system_dir = var("FLATPAK_SYSTEM_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/lib/flatpak"));
        let config_dir = var("FLATPAK_CONFIG_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/etc/flatpak"));
        let user_dir = match non_empty("FLATPAK_USER_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => {
                let data_home = non_empty("XDG_DATA_HOME")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| home_dir(&var).join(".local/share"));
                data_home.join("flatpak")
            }
        };
        Self {
            system_dir,
            user_dir,
            config_dir,
        }
    }

    /// `<config_dir>/installations.d`.
    pub fn installations_dir(&self) -> PathBuf {
        self.config_dir.join("installations.d")
    }
}

/// GLib's home directory: `$HOME`, else the password database.
fn home_dir(var: &impl Fn(&str) -> Option<OsString>) -> PathBuf {
    if let Some(home) = var("HOME").filter(|home| !home.is_empty()) {
        return PathBuf::from(home);
    }
    std::env::home_dir().unwrap_or_else(|| PathBuf::from("/"))
}

/// Which installation, as the `flatpak` command names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlatpakScope {
    /// `--user`.
    User,
    /// The default system installation, `--system`.
    System,
    /// A system installation of `installations.d`, `--installation=ID`.
    Configured {
        /// The installation's ID.
        id: String,
        /// Its `DisplayName`.
        display_name: Option<String>,
        /// Its `Priority`.
        priority: i32,
    },
    /// Any other directory: `flatpak` reaches it as a per-user installation with
    /// `FLATPAK_USER_DIR` pointing at it.
    Directory,
}

/// A Flatpak installation directory and how to address it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlatpakInstallation {
    /// How `flatpak` addresses it.
    pub scope: FlatpakScope,
    /// The installation directory.
    pub path: PathBuf,
}

impl FlatpakInstallation {
    /// `user`, `system`, the installation ID, or the directory.
    pub fn label(&self) -> String {
        match &self.scope {
            FlatpakScope::User => "user".to_owned(),
            FlatpakScope::System => "system".to_owned(),
            FlatpakScope::Configured { id, .. } => id.clone(),
            FlatpakScope::Directory => self.path.display().to_string(),
        }
    }

    /// The installation's repository.
    pub fn repo(&self) -> PathBuf {
        self.path.join("repo")
    }

    /// The options that make `flatpak` act on this installation.
    pub fn flatpak_args(&self) -> Vec<OsString> {
        match &self.scope {
            FlatpakScope::User | FlatpakScope::Directory => vec!["--user".into()],
            FlatpakScope::System => vec!["--system".into()],
            FlatpakScope::Configured { id, .. } => vec![format!("--installation={id}").into()],
        }
    }

    /// Environment variables `flatpak` needs besides [`Self::flatpak_args`].
    pub fn flatpak_env(&self) -> Vec<(OsString, OsString)> {
        match &self.scope {
            FlatpakScope::Directory => vec![(
                OsString::from("FLATPAK_USER_DIR"),
                self.path.clone().into_os_string(),
            )],
            _ => Vec::new(),
        }
    }

    /// Whether the installation has been created (its repository has a config).
    pub fn exists(&self) -> bool {
        self.repo().join("config").is_file()
    }
}

/// What `--installation` names: `user`, `system`, a configured installation ID, or a
/// directory (anything with a `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallationSelector {
    /// The per-user installation.
    User,
    /// The default system installation.
    System,
    /// A configured installation, by ID.
    Id(String),
    /// A directory.
    Directory(PathBuf),
}

impl InstallationSelector {
    /// What `--installation TEXT` names: `user`, `system`, a directory (containing `/`, or `.` or `..`), else an ID.
    pub fn parse(text: &str) -> Self {
        match text {
            "user" => Self::User,
            "system" => Self::System,
            _ if text.contains('/') || text == "." || text == ".." => {
                Self::Directory(PathBuf::from(text))
            }
            _ => Self::Id(text.to_owned()),
        }
    }
}

/// The per-user installation.
pub fn user_installation(paths: &FlatpakPaths) -> FlatpakInstallation {
    FlatpakInstallation {
        scope: FlatpakScope::User,
        path: paths.user_dir.clone(),
    }
}

/// The system installations in Flatpak's order: highest `Priority` first, the default one
/// with priority 0. Files or entries that cannot be used are returned as errors beside them.
pub fn system_installations(paths: &FlatpakPaths) -> (Vec<FlatpakInstallation>, Vec<TargetError>) {
    let (mut installations, errors) = configured_installations(paths);
    installations.push(FlatpakInstallation {
        scope: FlatpakScope::System,
        path: paths.system_dir.clone(),
    });
    // Stable, so equal priorities keep the configuration order and the default comes last
    // among them, as in Flatpak.
    installations.sort_by_key(|installation| match &installation.scope {
        FlatpakScope::Configured { priority, .. } => -i64::from(*priority),
        _ => 0,
    });
    (installations, errors)
}

/// The installations of `installations.d/*.conf`, in file-name order.
pub fn configured_installations(
    paths: &FlatpakPaths,
) -> (Vec<FlatpakInstallation>, Vec<TargetError>) {
    let dir = paths.installations_dir();
    let mut installations: Vec<FlatpakInstallation> = Vec::new();
    let mut errors = Vec::new();
    let listing = match std::fs::read_dir(&dir) {
        Ok(listing) => listing,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return (installations, errors)
        }
        Err(error) => {
            errors.push(TargetError::io(&dir, error));
            return (installations, errors);
        }
    };
    let mut files = Vec::new();
    for item in listing {
        match item {
            Ok(item) => {
                let is_conf = item
                    .file_name()
                    .to_str()
                    .is_some_and(|name| name.ends_with(".conf"));
                if is_conf && item.file_type().is_ok_and(|kind| kind.is_file()) {
                    files.push(item.path());
                }
            }
            Err(error) => errors.push(TargetError::io(&dir, error)),
        }
    }
    files.sort();
    for file in files {
        let parsed = match read_key_file(&file) {
            Ok(parsed) => parsed,
            Err(error) => {
                errors.push(error);
                continue;
            }
        };
        for found in installations_in(&parsed, &file) {
            match found {
                Ok(installation) => {
                    let duplicate = installations
                        .iter()
                        .any(|known| known.scope_id() == installation.scope_id());
                    if duplicate {
                        errors.push(TargetError::invalid(
                            &file,
                            format!(
                                "installation '{}' is defined twice; Flatpak ignores the second \
                                 definition: remove it",
                                installation.label()
                            ),
                        ));
                    } else {
                        installations.push(installation);
                    }
                }
                Err(error) => errors.push(error),
            }
        }
    }
    (installations, errors)
}

impl FlatpakInstallation {
    fn scope_id(&self) -> Option<&str> {
        match &self.scope {
            FlatpakScope::Configured { id, .. } => Some(id),
            _ => None,
        }
    }
}

fn installations_in(file: &KeyFile, path: &Path) -> Vec<Result<FlatpakInstallation, TargetError>> {
    let mut found = Vec::new();
    for group in file.groups() {
        let Some(quoted) = group.strip_prefix("Installation ") else {
            continue;
        };
        let Some(id) = quoted
            .strip_prefix('"')
            .and_then(|rest| rest.strip_suffix('"'))
        else {
            found.push(Err(TargetError::invalid(
                path,
                format!("group [{group}] needs the ID in quotes: [Installation \"ID\"]"),
            )));
            continue;
        };
        if !is_good_installation_id(id) {
            found.push(Err(TargetError::invalid(
                path,
                format!(
                    "installation ID {id:?} is not allowed (empty, user, system, default, or \
                     not plain ASCII without spaces and slashes): rename it"
                ),
            )));
            continue;
        }
        let entry = |key: &str| {
            file.get(group, key)
                .map_err(|detail| TargetError::invalid(path, detail))
        };
        let installation = (|| {
            let Some(dir) = entry("Path")? else {
                return Err(TargetError::invalid(
                    path,
                    format!("installation '{id}' has no Path=: add the installation's directory"),
                ));
            };
            let priority = entry("Priority")?
                .map(|text| leading_integer(&text))
                .unwrap_or(0);
            Ok(FlatpakInstallation {
                scope: FlatpakScope::Configured {
                    id: id.to_owned(),
                    display_name: entry("DisplayName")?,
                    priority,
                },
                path: PathBuf::from(dir),
            })
        })();
        found.push(installation);
    }
    found
}

/// Flatpak's `is_good_installation_id`.
fn is_good_installation_id(id: &str) -> bool {
    !matches!(id, "" | "user" | "default" | "system")
        && id.is_ascii()
        && !id.contains([' ', '/', '\n'])
        && id.len() <= MAX_INSTALLATION_ID_LEN
}

/// `g_ascii_strtoll(text, NULL, 10)` clamped to `i32`: leading spaces, a sign, digits.
fn leading_integer(text: &str) -> i32 {
    let text = text.trim_start();
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let mut value: i64 = 0;
    for digit in digits.bytes().take_while(u8::is_ascii_digit) {
        value = (value * 10 + i64::from(digit - b'0')).min(i64::from(i32::MAX) + 1);
    }
    let value = if negative { -value } else { value };
    value.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
}

/// Finds the installation `selector` names.
pub fn select_installation(
    selector: &InstallationSelector,
    paths: &FlatpakPaths,
) -> Result<FlatpakInstallation, TargetError> {
    match selector {
        InstallationSelector::User => Ok(user_installation(paths)),
        InstallationSelector::System => Ok(FlatpakInstallation {
            scope: FlatpakScope::System,
            path: paths.system_dir.clone(),
        }),
        InstallationSelector::Id(id) => {
            let (configured, _) = configured_installations(paths);
            configured
                .into_iter()
                .find(|installation| installation.scope_id() == Some(id.as_str()))
                .ok_or_else(|| TargetError::UnknownInstallation {
                    id: id.clone(),
                    config_dir: paths.installations_dir(),
                })
        }
        InstallationSelector::Directory(dir) => {
            // A directory that is a known installation is addressed the way flatpak names it.
            let (mut known, _) = system_installations(paths);
            known.push(user_installation(paths));
            let wanted = std::fs::canonicalize(dir).map_err(|error| TargetError::io(dir, error))?;
            let known = known.into_iter().find(|installation| {
                std::fs::canonicalize(&installation.path).is_ok_and(|path| path == wanted)
            });
            Ok(match known {
                Some(installation) => installation,
                None => FlatpakInstallation {
                    scope: FlatpakScope::Directory,
                    path: wanted,
                },
            })
        }
    }
}

/// A ref deployed in an installation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployedRef {
    /// `app/<name>/<arch>/<branch>` or `runtime/<name>/<arch>/<branch>`.
    pub ref_name: String,
    /// The active deployment directory, `<installation>/<ref>/<commit>`.
    pub deploy_dir: PathBuf,
    /// The deployment's `deploy` file.
    pub data: DeployData,
}

/// The `deploy` file of a deployment: `(ssasta{sv})`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployData {
    /// The remote the ref was installed from.
    pub origin: String,
    /// The deployed commit.
    pub commit: Checksum,
    /// The subdirectories installed when only part of the ref was (locale extensions); empty
    /// for a whole ref.
    pub subpaths: Vec<String>,
    /// Disk space the deployment takes, in bytes, as Flatpak recorded it.
    pub installed_size: u64,
    /// The commit's timestamp, when Flatpak recorded it.
    pub timestamp: Option<u64>,
    /// For apps: the runtime they run on, as a full ref (`runtime/<name>/<arch>/<branch>`).
    pub runtime: Option<String>,
    /// The end-of-life notice the publisher attached, if any.
    pub end_of_life: Option<String>,
}

impl DeployData {
    /// Reads a `deploy` file.
    pub fn read(path: &Path) -> Result<Self, TargetError> {
        let bytes = read_limited(path, MAX_DEPLOY_DATA_SIZE)?;
        Self::parse(&bytes).map_err(|detail| TargetError::invalid(path, detail))
    }

    /// Parses the serialized `(ssasta{sv})`.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let aligned = copy_to_align(bytes);
        let data = gv!("(ssasta{sv})").cast(aligned.as_ref());
        let (origin, commit, subpaths, installed_size, metadata) = data.to_tuple();
        let origin = origin.to_str();
        if origin.is_empty() {
            return Err("names no origin remote: the file is damaged or not a deploy file".into());
        }
        let commit = Checksum::from_hex(commit.to_str()).map_err(|error| error.to_string())?;
        let mut timestamp = None;
        let mut runtime = None;
        let mut end_of_life = None;
        for entry in metadata {
            let (key, value) = entry.to_tuple();
            match key.to_str() {
                "timestamp" if timestamp.is_none() => timestamp = value.get(gv!("t")).copied(),
                // The app metadata's `runtime=`, `<name>/<arch>/<branch>`.
                "runtime" if runtime.is_none() => {
                    runtime = value
                        .get(gv!("s"))
                        .map(|s| format!("runtime/{}", s.to_str()))
                }
                "eol" if end_of_life.is_none() => {
                    end_of_life = value.get(gv!("s")).map(|s| s.to_str().to_owned())
                }
                _ => {}
            }
        }
        Ok(Self {
            origin: origin.to_owned(),
            commit,
            subpaths: subpaths.iter().map(|s| s.to_str().to_owned()).collect(),
            // Flatpak stores it big-endian inside the little-endian serialization.
            installed_size: u64::from_be(*installed_size),
            timestamp,
            runtime,
            end_of_life,
        })
    }
}

/// The refs deployed in `installation`, sorted by name. Refs whose deploy data cannot be read
/// are returned as errors beside them.
pub fn deployed_refs(
    installation: &Path,
) -> Result<(Vec<DeployedRef>, Vec<TargetError>), TargetError> {
    let mut refs = Vec::new();
    let mut errors = Vec::new();
    for kind in ["app", "runtime"] {
        let base = installation.join(kind);
        for name in subdirectories(&base)? {
            let name_dir = base.join(&name);
            for arch in subdirectories(&name_dir)? {
                // Old installations have a `data` directory here.
                if arch == "data" {
                    continue;
                }
                let arch_dir = name_dir.join(&arch);
                for branch in subdirectories(&arch_dir)? {
                    let active = arch_dir.join(&branch).join("active");
                    let deploy_file = active.join("deploy");
                    if !deploy_file.exists() {
                        continue;
                    }
                    let (Some(name), Some(arch), Some(branch)) =
                        (valid_part(&name), valid_part(&arch), valid_part(&branch))
                    else {
                        continue;
                    };
                    if refs.len() + errors.len() >= MAX_DEPLOYED_REFS {
                        return Err(TargetError::invalid(
                            installation,
                            format!("holds more than {MAX_DEPLOYED_REFS} deployed refs"),
                        ));
                    }
                    let ref_name = format!("{kind}/{name}/{arch}/{branch}");
                    match DeployData::read(&deploy_file) {
                        Ok(data) => {
                            let deploy_dir = std::fs::read_link(&active)
                                .map(|target| active.with_file_name(target))
                                .unwrap_or(active);
                            refs.push(DeployedRef {
                                ref_name,
                                deploy_dir,
                                data,
                            });
                        }
                        Err(error) => errors.push(error),
                    }
                }
            }
        }
    }
    refs.sort_by(|a, b| a.ref_name.cmp(&b.ref_name));
    Ok((refs, errors))
}

/// Names of the real (not symlinked) directories in `dir`; none when it does not exist.
fn subdirectories(dir: &Path) -> Result<Vec<OsString>, TargetError> {
    let listing = match std::fs::read_dir(dir) {
        Ok(listing) => listing,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(TargetError::io(dir, error)),
    };
    let mut names = Vec::new();
    for item in listing {
        let item = item.map_err(|error| TargetError::io(dir, error))?;
        if item.file_type().is_ok_and(|kind| kind.is_dir()) {
            names.push(item.file_name());
        }
    }
    Ok(names)
}

/// A ref component Flatpak would accept: UTF-8, not hidden, no separators or spaces.
fn valid_part(part: &OsStr) -> Option<&str> {
    let text = part.to_str()?;
    let valid = !text.is_empty()
        && !text.starts_with('.')
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    valid.then_some(text)
}

/// Largest AppStream file of an installed app read.
const MAX_APP_APPSTREAM_BYTES: u64 = 4 * 1024 * 1024;

/// The version an installed app's own AppStream data gives: its metainfo (or older appdata)
/// file, else the collection Flatpak composed at build time. None when it has neither or
/// they name no release; never an error, since the version only labels the listing.
pub(crate) fn installed_app_version(deploy_dir: &Path, app_id: &str) -> Option<String> {
    let share = deploy_dir.join("files/share");
    let plain = [
        share.join(format!("metainfo/{app_id}.metainfo.xml")),
        share.join(format!("appdata/{app_id}.appdata.xml")),
    ];
    let composed = share.join(format!("app-info/xmls/{app_id}.xml.gz"));
    let documents = plain
        .iter()
        .filter_map(|path| read_limited(path, MAX_APP_APPSTREAM_BYTES).ok())
        .chain(
            read_limited(&composed, MAX_APP_APPSTREAM_BYTES)
                .ok()
                .and_then(|compressed| {
                    let mut xml = Vec::new();
                    flate2::read::GzDecoder::new(compressed.as_slice())
                        .take(MAX_APP_APPSTREAM_BYTES + 1)
                        .read_to_end(&mut xml)
                        .ok()
                        .filter(|_| xml.len() as u64 <= MAX_APP_APPSTREAM_BYTES)
                        .map(|_| xml)
                }),
        );
    for xml in documents {
        match crate::appstream::Catalog::parse(&xml) {
            Ok(catalog) => {
                if let Some(version) = catalog.get(app_id).and_then(|app| app.version.clone()) {
                    return Some(version);
                }
            }
            Err(reason) => tracing::debug!(app_id, %reason, "installed AppStream data unreadable"),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_flatpak_environment_rules() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| OsString::from(value))
            }
        };
        let paths = FlatpakPaths::from_vars(vars(&[("HOME", "/home/a")]));
        assert_eq!(paths.system_dir, Path::new("/var/lib/flatpak"));
        assert_eq!(paths.user_dir, Path::new("/home/a/.local/share/flatpak"));
        assert_eq!(paths.config_dir, Path::new("/etc/flatpak"));

        let paths = FlatpakPaths::from_vars(vars(&[
            ("HOME", "/home/a"),
            ("XDG_DATA_HOME", "/data"),
            ("FLATPAK_USER_DIR", ""),
            ("FLATPAK_SYSTEM_DIR", "/sys-fp"),
            ("FLATPAK_CONFIG_DIR", "/conf"),
        ]));
        assert_eq!(paths.user_dir, Path::new("/data/flatpak"));
        assert_eq!(paths.system_dir, Path::new("/sys-fp"));
        assert_eq!(
            paths.installations_dir(),
            Path::new("/conf/installations.d")
        );

        let paths = FlatpakPaths::from_vars(vars(&[
            ("XDG_DATA_HOME", "/data"),
            ("FLATPAK_USER_DIR", "/fp-user"),
        ]));
        assert_eq!(paths.user_dir, Path::new("/fp-user"));
    }

    #[test]
    fn installation_ids_follow_flatpak_rules() {
        assert!(is_good_installation_id("extra"));
        for bad in ["", "user", "system", "default", "a b", "a/b", "é"] {
            assert!(!is_good_installation_id(bad), "{bad:?}");
        }
        assert!(!is_good_installation_id(&"x".repeat(81)));
        assert_eq!(leading_integer(" 10x"), 10);
        assert_eq!(leading_integer("-3"), -3);
        assert_eq!(leading_integer("abc"), 0);
        assert_eq!(leading_integer("99999999999"), i32::MAX);
    }

    #[test]
    fn selectors() {
        assert_eq!(
            InstallationSelector::parse("user"),
            InstallationSelector::User
        );
        assert_eq!(
            InstallationSelector::parse("system"),
            InstallationSelector::System
        );
        assert_eq!(
            InstallationSelector::parse("extra"),
            InstallationSelector::Id("extra".into())
        );
        assert_eq!(
            InstallationSelector::parse("/srv/fp"),
            InstallationSelector::Directory("/srv/fp".into())
        );
    }

    #[test]
    fn deploy_data_rejects_garbage() {
        assert!(DeployData::parse(b"").is_err());
        assert!(DeployData::parse(&[0xff; 100]).is_err());
    }
}
