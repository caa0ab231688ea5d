//! A repository's `config`: a GLib key file with a `[core]` group and one
//! `[remote "NAME"]` group per remote. Parsed with GKeyFile's rules (comments, escapes,
//! booleans, repeated groups merged, the last repeated key wins) and kept in file order so
//! it can be written back unchanged.

use std::fmt::Write as _;

use super::RepoMode;
use crate::object::{validate_collection_id, validate_remote_name};

/// Config files larger than this are refused; real ones are a few hundred bytes.
pub const MAX_CONFIG_SIZE: usize = 1024 * 1024;

/// libostree's default `lock-timeout-secs`.
const DEFAULT_LOCK_TIMEOUT_SECS: u64 = 300;
/// libostree's default `min-free-space-percent` when neither limit is set.
const DEFAULT_MIN_FREE_SPACE_PERCENT: u8 = 3;

/// A key file: groups in file order, each with its keys in file order. Values are stored
/// raw (escapes unresolved); [`KeyFile::get`] resolves them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyFile {
    groups: Vec<(String, Vec<(String, String)>)>,
}

impl KeyFile {
    /// Parses `text`; the error names the offending line.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.len() > MAX_CONFIG_SIZE {
            return Err(format!(
                "{} bytes, more than the {MAX_CONFIG_SIZE} allowed",
                text.len()
            ));
        }
        let mut file = Self::default();
        let mut current: Option<usize> = None;
        for (index, raw_line) in text.lines().enumerate() {
            let line_number = index + 1;
            let line = raw_line.trim_start_matches([' ', '\t']);
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(rest) = line.strip_prefix('[') {
                let rest = rest.trim_end_matches([' ', '\t']);
                let Some(name) = rest.strip_suffix(']') else {
                    return Err(format!("line {line_number}: group header without ']'"));
                };
                if name.is_empty()
                    || name.contains(['[', ']'])
                    || name.chars().any(char::is_control)
                {
                    return Err(format!("line {line_number}: invalid group name {name:?}"));
                }
                current = Some(file.group_index_or_insert(name));
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(format!(
                    "line {line_number}: neither a [group], a key=value pair nor a # comment"
                ));
            };
            let key = key.trim_end_matches([' ', '\t']);
            if key.is_empty() || key.chars().any(char::is_control) {
                return Err(format!("line {line_number}: invalid key {key:?}"));
            }
            let value = value.trim_start_matches([' ', '\t']);
            let Some(group) = current else {
                return Err(format!(
                    "line {line_number}: key {key:?} before any [group]"
                ));
            };
            let keys = &mut file.groups[group].1;
            match keys.iter_mut().find(|(name, _)| name == key) {
                Some(entry) => entry.1 = value.to_owned(),
                None => keys.push((key.to_owned(), value.to_owned())),
            }
        }
        Ok(file)
    }

    fn group_index_or_insert(&mut self, name: &str) -> usize {
        match self.groups.iter().position(|(group, _)| group == name) {
            Some(index) => index,
            None => {
                self.groups.push((name.to_owned(), Vec::new()));
                self.groups.len() - 1
            }
        }
    }

    /// Group names in file order.
    pub fn groups(&self) -> impl Iterator<Item = &str> {
        self.groups.iter().map(|(name, _)| name.as_str())
    }

    /// The keys and raw values of `group`, in file order.
    pub fn entries(&self, group: &str) -> &[(String, String)] {
        self.groups
            .iter()
            .find(|(name, _)| name == group)
            .map_or(&[], |(_, keys)| keys.as_slice())
    }

    /// A value with GKeyFile's escapes (`\s`, `\n`, `\t`, `\r`, `\\`) resolved.
    pub fn get(&self, group: &str, key: &str) -> Result<Option<String>, String> {
        match self.raw(group, key) {
            None => Ok(None),
            Some(raw) => unescape(raw)
                .map(Some)
                .map_err(|reason| format!("[{group}] {key}: {reason}")),
        }
    }

    /// Every key of `group` with its escapes resolved, sorted by key.
    pub fn entries_unescaped(&self, group: &str) -> Result<Vec<(String, String)>, String> {
        let mut out = self
            .entries(group)
            .iter()
            .map(|(key, raw)| {
                unescape(raw)
                    .map(|value| (key.clone(), value))
                    .map_err(|reason| format!("[{group}] {key}: {reason}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        out.sort();
        Ok(out)
    }

    /// The value exactly as written.
    pub fn raw(&self, group: &str, key: &str) -> Option<&str> {
        self.entries(group)
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.as_str())
    }

    /// A boolean as GKeyFile reads it: `true`/`1` or `false`/`0`.
    pub fn get_bool(&self, group: &str, key: &str) -> Result<Option<bool>, String> {
        match self.raw(group, key) {
            None => Ok(None),
            Some(raw) => parse_bool(raw)
                .map(Some)
                .ok_or_else(|| format!("[{group}] {key}={raw:?} is not true or false")),
        }
    }

    /// Sets a value, escaping it; adds the group and key at the end when new.
    pub fn set(&mut self, group: &str, key: &str, value: &str) {
        let index = self.group_index_or_insert(group);
        let escaped = escape(value);
        let keys = &mut self.groups[index].1;
        match keys.iter_mut().find(|(name, _)| name == key) {
            Some(entry) => entry.1 = escaped,
            None => keys.push((key.to_owned(), escaped)),
        }
    }

    /// The file as text, groups and keys in order.
    pub fn to_text(&self) -> String {
        let mut text = String::new();
        for (index, (group, keys)) in self.groups.iter().enumerate() {
            if index > 0 {
                text.push('\n');
            }
            let _ = writeln!(text, "[{group}]");
            for (key, value) in keys {
                let _ = writeln!(text, "{key}={value}");
            }
        }
        text
    }
}

fn parse_bool(raw: &str) -> Option<bool> {
    match raw.trim_end_matches([' ', '\t']) {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

fn unescape(raw: &str) -> Result<String, &'static str> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('s') => out.push(' '),
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('\\') => out.push('\\'),
            // List separators stay escaped for list parsing; a plain string keeps them.
            Some(';') => out.push_str("\\;"),
            Some(',') => out.push_str("\\,"),
            _ => return Err("invalid escape sequence"),
        }
    }
    Ok(out)
}

fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (index, c) in value.chars().enumerate() {
        match c {
            ' ' if index == 0 => out.push_str("\\s"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out
}

/// How long to wait for the repository lock (`[core] locking`, `lock-timeout-secs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockTimeout {
    /// `locking=false`: no lock is taken.
    Disabled,
    /// `lock-timeout-secs=-1`: wait as long as it takes.
    Blocking,
    /// Give up after this many seconds (0: try once).
    Seconds(u64),
}

/// Space to leave free on the repository's filesystem (`min-free-space-percent` or
/// `min-free-space-size`; the size wins when both are set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinFreeSpace {
    /// Percent of the filesystem's total size.
    Percent(u8),
    /// Mebibytes.
    Megabytes(u64),
}

/// One `[remote "NAME"]` group: its options in file order, escapes resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteConfig {
    /// The remote's name.
    pub name: String,
    /// Its options, in file order.
    pub options: Vec<(String, String)>,
}

impl RemoteConfig {
    /// An option's value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.options
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.as_str())
    }

    /// A boolean option; an error names the remote and option when the value is not a
    /// boolean.
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(value) => parse_bool(value).map(Some).ok_or_else(|| {
                format!(
                    "remote {:?}: {key}={value:?} is not true or false",
                    self.name
                )
            }),
        }
    }

    /// The remote's `url`.
    pub fn url(&self) -> Option<&str> {
        self.get("url")
    }

    /// The remote's `collection-id`, when set.
    pub fn collection_id(&self) -> Option<&str> {
        self.get("collection-id").filter(|id| !id.is_empty())
    }

    /// `gpg-verify`, true unless set to false (libostree's default).
    pub fn gpg_verify(&self) -> Result<bool, String> {
        Ok(self.get_bool("gpg-verify")?.unwrap_or(true))
    }

    /// `gpg-verify-summary`, false unless set.
    pub fn gpg_verify_summary(&self) -> Result<bool, String> {
        Ok(self.get_bool("gpg-verify-summary")?.unwrap_or(false))
    }
}

/// A parsed repository config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoConfig {
    /// `[core] mode`.
    pub mode: RepoMode,
    /// `[core] collection-id`: the collection of the repository's own refs.
    pub collection_id: Option<String>,
    /// `[core] fsync` (default true): sync objects before refs point at them.
    pub fsync: bool,
    /// `[core] per-object-fsync` (default false).
    pub per_object_fsync: bool,
    /// `[core] min-free-space-percent` or `min-free-space-size`.
    pub min_free_space: MinFreeSpace,
    /// `[core] locking` and `lock-timeout-secs`.
    pub lock_timeout: LockTimeout,
    /// `[archive] zlib-level`, when set.
    pub zlib_level: Option<u32>,
    /// The whole file, for options without a typed field.
    pub keyfile: KeyFile,
}

/// The group name of a remote.
pub fn remote_group(name: &str) -> String {
    format!("remote \"{name}\"")
}

impl RepoConfig {
    /// Parses a config's text. `bare-split-xattrs` and the legacy `archive=true` are refused
    /// with a message saying so.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let keyfile = KeyFile::parse(text).map_err(ConfigError::Invalid)?;
        let core = |key: &str| keyfile.get("core", key).map_err(ConfigError::Invalid);
        match core("repo_version")?.as_deref() {
            Some("1") => {}
            Some(other) => {
                return Err(ConfigError::Unsupported(format!(
                    "repository version {other:?}; only version 1 is known"
                )))
            }
            None => {
                return Err(ConfigError::Invalid(
                    "[core] has no repo_version".to_owned(),
                ))
            }
        }
        if keyfile
            .get_bool("core", "archive")
            .map_err(ConfigError::Invalid)?
            .unwrap_or(false)
        {
            return Err(ConfigError::Unsupported(
                "legacy archive=true repositories; convert it with a current ostree".to_owned(),
            ));
        }
        let mode = match core("mode")?.as_deref().unwrap_or("bare") {
            "archive" | "archive-z2" => RepoMode::Archive,
            "bare" => RepoMode::Bare,
            "bare-user" => RepoMode::BareUser,
            "bare-user-only" => RepoMode::BareUserOnly,
            "bare-split-xattrs" => {
                return Err(ConfigError::Unsupported(
                    "mode bare-split-xattrs (experimental in ostree); use archive, bare, \
                     bare-user or bare-user-only"
                        .to_owned(),
                ))
            }
            other => return Err(ConfigError::Invalid(format!("unknown mode {other:?}"))),
        };
        let collection_id = match core("collection-id")? {
            Some(id) if !id.is_empty() => {
                validate_collection_id(&id).map_err(ConfigError::Name)?;
                Some(id)
            }
            _ => None,
        };
        let bool_or = |key: &str, default: bool| -> Result<bool, ConfigError> {
            Ok(keyfile
                .get_bool("core", key)
                .map_err(ConfigError::Invalid)?
                .unwrap_or(default))
        };
        let fsync = bool_or("fsync", true)?;
        let per_object_fsync = bool_or("per-object-fsync", false)?;
        let lock_timeout = if !bool_or("locking", true)? {
            LockTimeout::Disabled
        } else {
            match core("lock-timeout-secs")? {
                None => LockTimeout::Seconds(DEFAULT_LOCK_TIMEOUT_SECS),
                Some(text) => match text.trim().parse::<i64>() {
                    Ok(-1) => LockTimeout::Blocking,
                    Ok(seconds) if seconds >= 0 => LockTimeout::Seconds(seconds.unsigned_abs()),
                    _ => {
                        return Err(ConfigError::Invalid(format!(
                            "[core] lock-timeout-secs={text:?} is not a number of seconds or -1"
                        )))
                    }
                },
            }
        };
        let min_free_space = parse_min_free_space(&keyfile)?;
        let zlib_level = match keyfile
            .get("archive", "zlib-level")
            .map_err(ConfigError::Invalid)?
        {
            None => None,
            Some(text) => match text.trim().parse::<u32>() {
                Ok(level) if (1..=9).contains(&level) => Some(level),
                _ => {
                    return Err(ConfigError::Invalid(format!(
                        "[archive] zlib-level={text:?} is not between 1 and 9"
                    )))
                }
            },
        };
        Ok(Self {
            mode,
            collection_id,
            fsync,
            per_object_fsync,
            min_free_space,
            lock_timeout,
            zlib_level,
            keyfile,
        })
    }

    /// The text of a new repository's config, as `ostree init` writes it.
    pub fn new_text(mode: RepoMode, collection_id: Option<&str>) -> String {
        let mode = match mode {
            RepoMode::Archive => "archive-z2",
            other => other.as_str(),
        };
        let mut text = format!("[core]\nrepo_version=1\nmode={mode}\n");
        if let Some(id) = collection_id {
            let _ = writeln!(text, "collection-id={id}");
        }
        text
    }

    /// Every `[remote "NAME"]` group with a valid remote name, in file order.
    pub fn remotes(&self) -> Vec<RemoteConfig> {
        self.keyfile
            .groups()
            .filter_map(|group| {
                let name = group.strip_prefix("remote \"")?.strip_suffix('"')?;
                if let Err(error) = validate_remote_name(name) {
                    tracing::warn!("ignoring config group [{group}]: {error}");
                    return None;
                }
                self.remote(name)
            })
            .collect()
    }

    /// The remote called `name`, if configured.
    pub fn remote(&self, name: &str) -> Option<RemoteConfig> {
        let group = remote_group(name);
        if !self.keyfile.groups().any(|g| g == group) {
            return None;
        }
        let options = self
            .keyfile
            .entries(&group)
            .iter()
            .map(|(key, raw)| {
                let value = unescape(raw).unwrap_or_else(|_| raw.clone());
                (key.clone(), value)
            })
            .collect();
        Some(RemoteConfig {
            name: name.to_owned(),
            options,
        })
    }
}

fn parse_min_free_space(keyfile: &KeyFile) -> Result<MinFreeSpace, ConfigError> {
    let size = keyfile
        .get("core", "min-free-space-size")
        .map_err(ConfigError::Invalid)?;
    let percent = keyfile
        .get("core", "min-free-space-percent")
        .map_err(ConfigError::Invalid)?;
    let percent = match percent {
        None => None,
        Some(text) => match text.parse::<u8>() {
            Ok(value) if value <= 99 && text.bytes().all(|b| b.is_ascii_digit()) => Some(value),
            _ => {
                return Err(ConfigError::Invalid(format!(
                    "[core] min-free-space-percent={text:?} is not a number from 0 to 99"
                )))
            }
        },
    };
    if let Some(text) = size {
        let invalid = || {
            ConfigError::Invalid(format!(
                "[core] min-free-space-size={text:?} should look like 500MB, 2GB or 1TB"
            ))
        };
        let (number, shift) = if let Some(n) = text.strip_suffix("MB") {
            (n, 0)
        } else if let Some(n) = text.strip_suffix("GB") {
            (n, 10)
        } else if let Some(n) = text.strip_suffix("TB") {
            (n, 20)
        } else {
            return Err(invalid());
        };
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        let value: u64 = number.parse().map_err(|_| invalid())?;
        let megabytes = value.checked_shl(shift).filter(|v| v >> shift == value);
        let megabytes = megabytes.ok_or_else(invalid)?;
        // As in libostree: a non-zero size wins over the percentage.
        if megabytes > 0 || percent.is_none() {
            return Ok(MinFreeSpace::Megabytes(megabytes));
        }
    }
    Ok(MinFreeSpace::Percent(
        percent.unwrap_or(DEFAULT_MIN_FREE_SPACE_PERCENT),
    ))
}

/// A config that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// A value is not valid; what is wrong.
    Invalid(String),
    /// A name in the config (the collection ID) that libostree would refuse.
    Name(crate::object::InvalidName),
    /// A value is valid but names a feature Ferry does not handle.
    Unsupported(String),
}

#[cfg(test)]
mod tests {

    #[test]
    fn repeated_groups_merge_and_repeated_keys_keep_the_last_value() {
        let file = KeyFile::parse(
            "# comment\n[core]\nmode = bare-user-only\r\n\n[remote \"x\"]\nurl=file:///a\\sb\n\
             gpg-verify=false\n[core]\nmode=archive-z2\n",
        )
        .expect("valid");
        assert_eq!(file.groups().collect::<Vec<_>>(), ["core", "remote \"x\""]);
        assert_eq!(
            file.get("core", "mode").expect("valid").as_deref(),
            Some("archive-z2")
        );
        assert_eq!(
            file.entries_unescaped("remote \"x\"").expect("valid"),
            [
                ("gpg-verify".to_owned(), "false".to_owned()),
                ("url".to_owned(), "file:///a b".to_owned())
            ]
        );
        let bad = KeyFile::parse("[g]\nb=yes\ns=a\\q\n").expect("valid");
        assert!(bad.get_bool("g", "b").is_err());
        assert!(bad.entries_unescaped("g").is_err());
    }

    use super::*;

    const SAMPLE: &str = "# comment\n[core]\nrepo_version=1\nmode=archive-z2\n\
        collection-id=org.example.Os\nlock-timeout-secs=-1\n\n\
        [remote \"origin\"]\nurl=file:///srv/repo\ngpg-verify=false\n\
        xa.title=My\\sRemote\n[core]\nfsync=false\n";

    #[test]
    fn parses_core_and_remotes() {
        let config = RepoConfig::parse(SAMPLE).expect("parse");
        assert_eq!(config.mode, RepoMode::Archive);
        assert_eq!(config.collection_id.as_deref(), Some("org.example.Os"));
        assert!(!config.fsync, "a repeated [core] group is merged");
        assert_eq!(config.lock_timeout, LockTimeout::Blocking);
        assert_eq!(config.min_free_space, MinFreeSpace::Percent(3));
        let remotes = config.remotes();
        assert_eq!(remotes.len(), 1);
        assert_eq!(remotes[0].name, "origin");
        assert_eq!(remotes[0].url(), Some("file:///srv/repo"));
        assert_eq!(remotes[0].gpg_verify(), Ok(false));
        assert_eq!(remotes[0].gpg_verify_summary(), Ok(false));
        assert_eq!(remotes[0].get("xa.title"), Some("My Remote"));
        assert!(config.remote("missing").is_none());
    }

    #[test]
    fn refuses_unsupported_modes_and_bad_values() {
        let split = "[core]\nrepo_version=1\nmode=bare-split-xattrs\n";
        assert!(matches!(
            RepoConfig::parse(split),
            Err(ConfigError::Unsupported(_))
        ));
        assert!(RepoConfig::parse("[core]\nmode=bare\n").is_err());
        assert!(RepoConfig::parse("[core]\nrepo_version=1\nmode=weird\n").is_err());
        assert!(RepoConfig::parse("[core]\nrepo_version=1\nfsync=maybe\n").is_err());
        assert!(RepoConfig::parse("key=value\n").is_err());
        assert_eq!(
            RepoConfig::parse("[core]\nrepo_version=1\n")
                .expect("default")
                .mode,
            RepoMode::Bare
        );
    }

    #[test]
    fn reads_free_space_limits() {
        let parse = |extra: &str| {
            RepoConfig::parse(&format!("[core]\nrepo_version=1\n{extra}"))
                .map(|config| config.min_free_space)
        };
        assert_eq!(
            parse("min-free-space-percent=10\n"),
            Ok(MinFreeSpace::Percent(10))
        );
        assert_eq!(
            parse("min-free-space-size=2GB\n"),
            Ok(MinFreeSpace::Megabytes(2048))
        );
        assert_eq!(
            parse("min-free-space-size=0MB\nmin-free-space-percent=5\n"),
            Ok(MinFreeSpace::Percent(5))
        );
        assert!(parse("min-free-space-size=2gb\n").is_err());
        assert!(parse("min-free-space-percent=100\n").is_err());
    }

    #[test]
    fn new_config_round_trips() {
        let text = RepoConfig::new_text(RepoMode::Archive, Some("org.example.Os"));
        assert_eq!(
            text,
            "[core]\nrepo_version=1\nmode=archive-z2\ncollection-id=org.example.Os\n"
        );
        let config = RepoConfig::parse(&text).expect("parse");
        assert_eq!(config.mode, RepoMode::Archive);
        let mut keyfile = config.keyfile.clone();
        keyfile.set("remote \"x\"", "url", " leading");
        assert!(keyfile.to_text().contains("url=\\sleading"));
    }
}
