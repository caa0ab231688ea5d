//! The machine's policy, `/etc/ferry/ferry.conf`: what happens when a drive is inserted or a
//! computer nearby offers updates, and whether this machine shares its own.
//!
//! A small keyfile: `key = value` lines, `#` or `;` comments, and an optional `[policy]` group
//! header. Every key and value is checked, and an error names the line, because a typo in a
//! kiosk's policy must not silently change what happens when a drive is inserted.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// A policy file larger than this is refused rather than read.
const MAX_POLICY_BYTES: u64 = 64 * 1024;

/// What the hook does once it has validated a drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnInsert {
    /// Record the drive; the desktop agent tells the user.
    Notify,
    /// Install everything the drive offers (kiosks).
    Install,
    /// Do nothing at all.
    Ignore,
}

/// What `ferry-hook --nearby` (run by `ferry-nearby.timer`) does with updates that computers
/// nearby offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnNearby {
    /// Nothing: the desktop agent tells the user, who installs them.
    Notify,
    /// Install everything computers nearby offer (labs, kiosks), verified as always.
    Install,
    /// Do not look for computers nearby.
    Ignore,
}

/// Where a kiosk install (`on-insert = install`) may take updates from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KioskSources {
    /// Only the drive just inserted: no other recorded drive, server or computer nearby.
    InsertedDrive,
    /// Everything `ferryctl install` would use: every recorded drive and the network too.
    All,
}

/// Whether a kiosk restarts after an OS update was deployed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebootPolicy {
    /// Never restart.
    Never,
    /// Restart only when nobody is logged in.
    WhenIdle,
    /// Restart at once.
    Always,
}

/// Who mounts the drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountMode {
    /// Wait for the desktop (udisks) or an automounter to mount it.
    Wait,
    /// Mount it read-only under the runtime directory (kiosks without udisks).
    SelfMount,
}

/// The hook's configuration (`ferry.conf`); each field is one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// `on-insert`: what to do with a validated drive.
    pub on_insert: OnInsert,
    /// `reboot-after-os-update`: whether a kiosk restarts after an OS update.
    pub reboot_after_os_update: RebootPolicy,
    /// `mount`: who mounts the drive.
    pub mount: MountMode,
    /// `mount-timeout-seconds`: how long to wait for the drive to be mounted.
    pub mount_timeout: Duration,
    /// Total time allowed to validate one drive once it is mounted.
    pub validation_timeout: Duration,
    /// Only consider removable media (USB, SD cards). Fixed disks and loop devices are
    /// skipped unless this is false.
    pub removable_only: bool,
    /// `kiosk-sources`: where a kiosk install takes updates from.
    pub kiosk_sources: KioskSources,
    /// `on-nearby`: what to do with updates computers nearby offer.
    pub on_nearby: OnNearby,
    /// Serve this machine's own repositories to computers nearby (`ferry-serve.socket`).
    pub share_nearby: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            on_insert: OnInsert::Notify,
            reboot_after_os_update: RebootPolicy::Never,
            mount: MountMode::Wait,
            mount_timeout: Duration::from_secs(120),
            validation_timeout: Duration::from_secs(60),
            removable_only: true,
            kiosk_sources: KioskSources::InsertedDrive,
            on_nearby: OnNearby::Notify,
            share_nearby: false,
        }
    }
}

/// Why a policy file was refused.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A line is wrong.
    #[error("{path}:{line}: {message}")]
    Line {
        /// The policy file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// What is wrong with the line.
        message: String,
    },
    /// The file cannot be read.
    #[error("{path}: cannot read it")]
    Unreadable {
        /// The policy file.
        path: PathBuf,
        /// The read error.
        #[source]
        source: std::io::Error,
    },
    /// The file as a whole cannot be used (too large, not text).
    #[error("{path}: {message}")]
    File {
        /// The policy file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl PolicyError {
    /// The 1-based line the error is on, when it is about one line.
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::Line { line, .. } => Some(*line),
            Self::File { .. } | Self::Unreadable { .. } => None,
        }
    }
}

struct Choice<T: 'static> {
    names: &'static [(&'static str, T)],
}

impl<T: Copy> Choice<T> {
    fn parse(&self, value: &str) -> Result<T, String> {
        self.names
            .iter()
            .find(|(name, _)| *name == value)
            .map(|(_, v)| *v)
            .ok_or_else(|| {
                let expected: Vec<&str> = self.names.iter().map(|(n, _)| *n).collect();
                format!("'{value}' is not one of: {}", expected.join(", "))
            })
    }
}

const ON_INSERT: Choice<OnInsert> = Choice {
    names: &[
        ("notify", OnInsert::Notify),
        ("install", OnInsert::Install),
        ("ignore", OnInsert::Ignore),
    ],
};
const REBOOT: Choice<RebootPolicy> = Choice {
    names: &[
        ("never", RebootPolicy::Never),
        ("when-idle", RebootPolicy::WhenIdle),
        ("always", RebootPolicy::Always),
    ],
};
const MOUNT: Choice<MountMode> = Choice {
    names: &[("wait", MountMode::Wait), ("self", MountMode::SelfMount)],
};
const KIOSK_SOURCES: Choice<KioskSources> = Choice {
    names: &[
        ("inserted-drive", KioskSources::InsertedDrive),
        ("all", KioskSources::All),
    ],
};
const ON_NEARBY: Choice<OnNearby> = Choice {
    names: &[
        ("notify", OnNearby::Notify),
        ("install", OnNearby::Install),
        ("ignore", OnNearby::Ignore),
    ],
};
const BOOLEAN: Choice<bool> = Choice {
    names: &[
        ("true", true),
        ("yes", true),
        ("1", true),
        ("false", false),
        ("no", false),
        ("0", false),
    ],
};

fn parse_seconds(value: &str) -> Result<Duration, String> {
    match u64::from_str(value) {
        Ok(seconds) if (1..=86_400).contains(&seconds) => Ok(Duration::from_secs(seconds)),
        _ => Err(format!(
            "'{value}' is not a number of seconds between 1 and 86400"
        )),
    }
}

impl Policy {
    /// Parses a policy file's text. `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, PolicyError> {
        let mut policy = Policy::default();
        let mut seen: Vec<&str> = Vec::new();
        let error = |line: usize, message: String| PolicyError::Line {
            path: path.to_path_buf(),
            line,
            message,
        };
        for (index, raw) in text.lines().enumerate() {
            let line_no = index + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(group) = line.strip_prefix('[') {
                match group.strip_suffix(']') {
                    Some("policy") => continue,
                    Some(other) => {
                        return Err(error(
                            line_no,
                            format!("unknown group [{other}]; the only group is [policy]"),
                        ))
                    }
                    None => return Err(error(line_no, "group header is missing ']'".into())),
                }
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(error(
                    line_no,
                    format!("expected 'key = value', found '{line}'"),
                ));
            };
            let key = key.trim();
            let value = value.trim();
            if seen.contains(&key) {
                return Err(error(line_no, format!("'{key}' is set twice")));
            }
            let result = match key {
                "on-insert" => ON_INSERT.parse(value).map(|v| policy.on_insert = v),
                "reboot-after-os-update" => REBOOT
                    .parse(value)
                    .map(|v| policy.reboot_after_os_update = v),
                "mount" => MOUNT.parse(value).map(|v| policy.mount = v),
                "mount-timeout-seconds" => parse_seconds(value).map(|v| policy.mount_timeout = v),
                "validation-timeout-seconds" => {
                    parse_seconds(value).map(|v| policy.validation_timeout = v)
                }
                "removable-only" => BOOLEAN.parse(value).map(|v| policy.removable_only = v),
                "kiosk-sources" => KIOSK_SOURCES.parse(value).map(|v| policy.kiosk_sources = v),
                "on-nearby" => ON_NEARBY.parse(value).map(|v| policy.on_nearby = v),
                "share-nearby" => BOOLEAN.parse(value).map(|v| policy.share_nearby = v),
                _ => Err(format!(
                    "unknown key '{key}'; known keys are on-insert, reboot-after-os-update, \
                     mount, mount-timeout-seconds, validation-timeout-seconds, removable-only, \
                     kiosk-sources, on-nearby, share-nearby"
                )),
            };
            result.map_err(|message| error(line_no, format!("{key}: {message}")))?;
            seen.push(key);
        }
        Ok(policy)
    }

    /// Reads the policy file. A missing file means the defaults.
    pub fn read(path: &Path) -> Result<Self, PolicyError> {
        let file_error = |message: String| PolicyError::File {
            path: path.to_path_buf(),
            message,
        };
        let file = match std::fs::File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => {
                return Err(PolicyError::Unreadable {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        let mut bytes = Vec::new();
        file.take(MAX_POLICY_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|source| PolicyError::Unreadable {
                path: path.to_path_buf(),
                source,
            })?;
        if bytes.len() as u64 > MAX_POLICY_BYTES {
            return Err(file_error(format!(
                "larger than {MAX_POLICY_BYTES} bytes; is this the right file?"
            )));
        }
        let text = String::from_utf8(bytes).map_err(|e| {
            file_error(format!(
                "not UTF-8 text (byte {})",
                e.utf8_error().valid_up_to()
            ))
        })?;
        Self::parse(&text, path)
    }

    /// Reads the policy, or falls back to the defaults (`on-insert = notify`) with the error,
    /// so a broken file never turns a kiosk into something else.
    pub fn read_or_default(path: &Path) -> (Self, Option<PolicyError>) {
        match Self::read(path) {
            Ok(policy) => (policy, None),
            Err(error) => (Self::default(), Some(error)),
        }
    }
}

/// `text` with `key = value`: the line that sets `key` is replaced, or the line appended when
/// no line sets it. Comments, blank lines and every other line stay as they were.
pub fn with_value(text: &str, key: &str, value: &str) -> String {
    let setting = format!("{key} = {value}");
    let mut replaced = false;
    let mut lines: Vec<String> = text
        .lines()
        .map(|line| {
            let sets_key = line
                .split_once('=')
                .is_some_and(|(name, _)| name.trim() == key && !is_comment(line));
            if sets_key && !replaced {
                replaced = true;
                setting.clone()
            } else {
                line.to_owned()
            }
        })
        .collect();
    if !replaced {
        lines.push(setting);
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

fn is_comment(line: &str) -> bool {
    let line = line.trim_start();
    line.starts_with('#') || line.starts_with(';')
}

impl fmt::Display for OnInsert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Notify => "notify",
            Self::Install => "install",
            Self::Ignore => "ignore",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Policy, PolicyError> {
        Policy::parse(text, Path::new("/etc/ferry/ferry.conf"))
    }

    #[test]
    fn with_value_replaces_the_setting_or_appends_it() {
        let text = "# share-nearby = yes\n[policy]\nshare-nearby=no\non-insert = notify";
        assert_eq!(
            with_value(text, "share-nearby", "yes"),
            "# share-nearby = yes\n[policy]\nshare-nearby = yes\non-insert = notify\n"
        );
        assert_eq!(
            with_value("[policy]\n", "on-nearby", "install"),
            "[policy]\non-nearby = install\n"
        );
        let policy = parse(&with_value("", "share-nearby", "yes")).expect("parse the policy");
        assert!(policy.share_nearby);
    }

    #[test]
    fn empty_text_gives_defaults() {
        assert_eq!(parse("").expect("parse the policy"), Policy::default());
        assert_eq!(
            parse("# only comments\n; and this\n\n").expect("parse the policy"),
            Policy::default()
        );
    }

    #[test]
    fn reads_every_key_with_and_without_group() {
        let text = "[policy]\non-insert = install\nreboot-after-os-update=when-idle\n\
                    mount = self\nmount-timeout-seconds = 30\nvalidation-timeout-seconds=5\n\
                    removable-only = no\nkiosk-sources = all\non-nearby = install\n\
                    share-nearby = yes\n";
        let policy = parse(text).expect("parse the policy");
        assert_eq!(policy.kiosk_sources, KioskSources::All);
        assert_eq!(policy.on_nearby, OnNearby::Install);
        assert!(policy.share_nearby);
        assert_eq!(Policy::default().on_nearby, OnNearby::Notify);
        assert!(!Policy::default().share_nearby);
        assert_eq!(Policy::default().kiosk_sources, KioskSources::InsertedDrive);
        assert_eq!(policy.on_insert, OnInsert::Install);
        assert_eq!(policy.reboot_after_os_update, RebootPolicy::WhenIdle);
        assert_eq!(policy.mount, MountMode::SelfMount);
        assert_eq!(policy.mount_timeout, Duration::from_secs(30));
        assert_eq!(policy.validation_timeout, Duration::from_secs(5));
        assert!(!policy.removable_only);
        assert_eq!(
            parse("on-insert = ignore")
                .expect("parse the policy")
                .on_insert,
            OnInsert::Ignore
        );
    }

    #[test]
    fn errors_name_the_line() {
        let cases = [
            (
                "on-insert = notify\n\non-insert = install\n",
                3,
                "set twice",
            ),
            (
                "# c\non-insert = sometimes\n",
                2,
                "'sometimes' is not one of",
            ),
            ("on_insert = notify\n", 1, "unknown key 'on_insert'"),
            ("\n\njust words\n", 3, "expected 'key = value'"),
            ("[drives]\n", 1, "unknown group"),
            ("[policy\n", 1, "missing ']'"),
            ("mount-timeout-seconds = 0\n", 1, "between 1 and 86400"),
            ("mount-timeout-seconds = -3\n", 1, "between 1 and 86400"),
            ("removable-only = maybe\n", 1, "not one of"),
            ("on-nearby = always\n", 1, "not one of"),
            ("share-nearby = perhaps\n", 1, "not one of"),
        ];
        for (text, line, needle) in cases {
            let error = parse(text).expect_err(text);
            assert_eq!(error.line(), Some(line), "{text:?}: {error}");
            let message = error.to_string();
            assert!(message.contains(needle), "{text:?}: {message}");
            assert!(
                message.starts_with(&format!("/etc/ferry/ferry.conf:{line}: ")),
                "{message}"
            );
        }
    }

    #[test]
    fn the_example_file_is_valid_and_says_the_defaults() {
        let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/ferry.conf");
        let policy = Policy::read(Path::new(example)).expect("read the policy");
        assert_eq!(policy, Policy::default());
    }

    #[test]
    fn bad_or_missing_files_fall_back_to_notify() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("none.conf");
        let (policy, error) = Policy::read_or_default(&missing);
        assert!(error.is_none());
        assert_eq!(policy.on_insert, OnInsert::Notify);

        let bad = dir.path().join("bad.conf");
        std::fs::write(&bad, "on-insert = install\nmount = sometimes\n").expect("write a file");
        let (policy, error) = Policy::read_or_default(&bad);
        assert_eq!(policy.on_insert, OnInsert::Notify);
        assert_eq!(error.and_then(|e| e.line()), Some(2));

        let huge = dir.path().join("huge.conf");
        std::fs::write(&huge, "#".repeat(100_000)).expect("write a file");
        assert!(Policy::read(&huge).is_err());
    }
}
