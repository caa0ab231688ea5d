//! Where the keys a remote trusts live on this machine, resolved the way libostree resolves
//! them (`find_keyring` and `_ostree_repo_gpg_prepare_verifier` in ostree-repo.c,
//! `_signapi_load_public_keys` in ostree-repo-pull-verify.c, `_ed25519_load_pk` in
//! ostree-sign-ed25519.c). Keys never come from the source being pulled.

use super::{Destination, TrustRoots};
use crate::causes::Shared;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Key files larger than this are refused; real keyrings are a few kilobytes.
pub const MAX_KEY_FILE_SIZE: u64 = 32 * 1024 * 1024;
/// Directory entries beyond this many are not read.
pub const MAX_KEY_DIR_ENTRIES: usize = 4096;

/// Why the keys a remote trusts cannot be read from where its configuration says they are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeySourceError {
    /// A key file or directory could not be read.
    #[error("{} cannot be read", path.display())]
    Unreadable {
        /// The file or directory.
        path: PathBuf,
        /// The read error (shared: trust errors are cloned into each verdict).
        #[source]
        source: Shared<io::Error>,
    },
    /// A file far larger than any keyring.
    #[error("{} is larger than {MAX_KEY_FILE_SIZE} bytes; it is not a key file", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// A setting that cannot be used as written; says which and why.
    #[error("{0}")]
    Invalid(String),
}

impl KeySourceError {
    fn unreadable(path: &Path, source: io::Error) -> Self {
        Self::Unreadable {
            path: path.to_path_buf(),
            source: Shared::new(source),
        }
    }
}

/// The files holding a remote's trusted GPG keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GpgKeySources {
    /// `<remote>.trustedkeys.gpg`: the first found in the repository, its remotes config
    /// directory, then each parent repository.
    pub remote_keyring: Option<PathBuf>,
    /// The `gpgkeypath=` entries, in order. Each is a key file (armored or binary) or a
    /// directory whose regular files are all key files.
    pub key_paths: Vec<PathBuf>,
    /// The global keyring directory, used only when the remote has no `<remote>.trustedkeys.gpg`
    /// (libostree adds it even when `gpgkeypath=` is set).
    pub global_dir: Option<PathBuf>,
    /// Every place looked at, for messages.
    pub looked_in: Vec<PathBuf>,
}

impl GpgKeySources {
    /// Resolves the sources for `remote`. `gpgkeypath` is the raw option value: one path, or
    /// several separated by `;` or `,` (one kind of separator only, as libostree requires).
    pub fn resolve(
        remote: &str,
        gpgkeypath: Option<&str>,
        destination: &Destination,
        roots: &TrustRoots,
    ) -> Result<Self, KeySourceError> {
        let keyring_name = format!("{remote}.trustedkeys.gpg");
        let mut sources = Self::default();

        let mut repos = vec![(
            destination.repo.as_path(),
            destination.remotes_config_dir.as_deref(),
        )];
        repos.extend(
            destination
                .parents
                .iter()
                .map(|(repo, remotes_d)| (repo.as_path(), remotes_d.as_deref())),
        );
        'search: for (repo, remotes_d) in repos {
            for dir in std::iter::once(repo).chain(remotes_d) {
                let candidate = dir.join(&keyring_name);
                sources.looked_in.push(candidate.clone());
                if path_exists(&candidate)? {
                    sources.remote_keyring = Some(candidate);
                    break 'search;
                }
            }
        }

        if let Some(value) = gpgkeypath {
            for path in split_path_list(value)? {
                sources.looked_in.push(path.clone());
                sources.key_paths.push(path);
            }
        }

        if sources.remote_keyring.is_none() {
            sources.looked_in.push(roots.global_gpg_keyring_dir.clone());
            if roots.global_gpg_keyring_dir.is_dir() {
                sources.global_dir = Some(roots.global_gpg_keyring_dir.clone());
            }
        }
        Ok(sources)
    }

    /// Reads every source: `(path, bytes)` per key file. A missing `gpgkeypath=` entry is an
    /// error, as in libostree; a missing global directory is not.
    pub fn read_all(&self) -> Result<Vec<(PathBuf, Vec<u8>)>, KeySourceError> {
        let mut files = Vec::new();
        if let Some(path) = &self.remote_keyring {
            files.push((path.clone(), read_key_file(path)?));
        }
        for path in &self.key_paths {
            let meta = fs::metadata(path).map_err(|e| KeySourceError::unreadable(path, e))?;
            if meta.is_dir() {
                for file in regular_files(path, |_| true)? {
                    let bytes = read_key_file(&file)?;
                    files.push((file, bytes));
                }
            } else {
                files.push((path.clone(), read_key_file(path)?));
            }
        }
        if let Some(dir) = &self.global_dir {
            let is_keyring = |name: &str| {
                name.ends_with(".gpg") && name != "trustdb.gpg" && name != "secring.gpg"
            };
            for file in regular_files(dir, is_keyring)? {
                let bytes = read_key_file(&file)?;
                files.push((file, bytes));
            }
        }
        Ok(files)
    }
}

/// The files and options holding a remote's trusted and revoked ed25519 keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ed25519KeySources {
    /// `verification-ed25519-key=`: one base64 public key.
    pub inline_key: Option<String>,
    /// `verification-ed25519-file=`: one base64 public key per line.
    pub key_file: Option<PathBuf>,
    /// `trusted.ed25519` and `trusted.ed25519.d/*` under each system directory; used only when
    /// the remote configures no key of its own (libostree loads them lazily in that case).
    pub system_trusted: Vec<PathBuf>,
    /// `revoked.ed25519` and `revoked.ed25519.d/*` under each system directory. Ferry honours
    /// them for every key, including the remote's own.
    pub revoked: Vec<PathBuf>,
}

impl Ed25519KeySources {
    /// Where the remote's ed25519 keys are: its own `verification-ed25519-*` options, else the system's trusted key files under `roots`; revoked key files always.
    pub fn resolve(
        inline_key: Option<&str>,
        key_file: Option<&str>,
        roots: &TrustRoots,
    ) -> Result<Self, KeySourceError> {
        let mut sources = Self {
            inline_key: inline_key.map(str::to_owned),
            key_file: key_file.map(PathBuf::from),
            ..Self::default()
        };
        let remote_has_keys = sources.inline_key.is_some() || sources.key_file.is_some();
        for dir in &roots.ed25519_dirs {
            if !remote_has_keys {
                sources
                    .system_trusted
                    .extend(key_list_files(dir, "trusted.ed25519")?);
            }
            sources
                .revoked
                .extend(key_list_files(dir, "revoked.ed25519")?);
        }
        Ok(sources)
    }

    /// Every place trusted keys were looked for, for messages.
    pub fn looked_in(&self, roots: &TrustRoots) -> Vec<PathBuf> {
        let mut places: Vec<PathBuf> = self.key_file.iter().cloned().collect();
        if self.inline_key.is_none() && self.key_file.is_none() {
            for dir in &roots.ed25519_dirs {
                places.push(dir.join("trusted.ed25519"));
                places.push(dir.join("trusted.ed25519.d"));
            }
        }
        places
    }
}

/// `<dir>/<name>` when it exists, then every entry of `<dir>/<name>.d/` in name order.
fn key_list_files(dir: &Path, name: &str) -> Result<Vec<PathBuf>, KeySourceError> {
    let mut files = Vec::new();
    let single = dir.join(name);
    if path_exists(&single)? {
        files.push(single);
    }
    let list_dir = dir.join(format!("{name}.d"));
    if list_dir.is_dir() {
        files.extend(regular_files(&list_dir, |_| true)?);
    }
    Ok(files)
}

/// `;`- or `,`-separated paths; mixing both separators is refused, like libostree does.
fn split_path_list(value: &str) -> Result<Vec<PathBuf>, KeySourceError> {
    let has_semicolon = value.contains(';');
    let has_comma = value.contains(',');
    let separator = match (has_semicolon, has_comma) {
        (true, true) => {
            return Err(KeySourceError::Invalid(format!(
                "gpgkeypath={value} mixes ';' and ',' separators; use only one"
            )))
        }
        (true, false) => Some(';'),
        (false, true) => Some(','),
        (false, false) => None,
    };
    let parts: Vec<&str> = match separator {
        Some(sep) => value.split(sep).collect(),
        None => vec![value],
    };
    Ok(parts
        .into_iter()
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(PathBuf::from)
        .collect())
}

/// Whether `path` exists, following symlinks (a dangling link counts as absent, as it does
/// for libostree's `openat`).
fn path_exists(path: &Path) -> Result<bool, KeySourceError> {
    match fs::metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(KeySourceError::unreadable(path, e)),
    }
}

/// Regular files directly in `dir` (symlinks and subdirectories skipped, as libostree
/// does), sorted by name, filtered by `keep(name)`.
fn regular_files(dir: &Path, keep: impl Fn(&str) -> bool) -> Result<Vec<PathBuf>, KeySourceError> {
    let entries = fs::read_dir(dir).map_err(|e| KeySourceError::unreadable(dir, e))?;
    let mut files = Vec::new();
    for entry in entries.take(MAX_KEY_DIR_ENTRIES) {
        let entry = entry.map_err(|e| KeySourceError::unreadable(dir, e))?;
        let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
        let name = entry.file_name();
        if is_file && name.to_str().is_some_and(&keep) {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

/// Reads a key file, refusing anything larger than [`MAX_KEY_FILE_SIZE`].
pub(crate) fn read_key_file(path: &Path) -> Result<Vec<u8>, KeySourceError> {
    let file = fs::File::open(path).map_err(|e| KeySourceError::unreadable(path, e))?;
    let mut bytes = Vec::new();
    file.take(MAX_KEY_FILE_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| KeySourceError::unreadable(path, e))?;
    if bytes.len() as u64 > MAX_KEY_FILE_SIZE {
        return Err(KeySourceError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_lists_follow_libostree_separators() {
        assert_eq!(
            split_path_list("/a.asc;/b.asc;").expect("semicolons"),
            vec![PathBuf::from("/a.asc"), PathBuf::from("/b.asc")]
        );
        assert_eq!(
            split_path_list("/a.asc,/b").expect("commas"),
            vec![PathBuf::from("/a.asc"), PathBuf::from("/b")]
        );
        assert_eq!(
            split_path_list("/only").expect("single"),
            vec![PathBuf::from("/only")]
        );
        assert!(split_path_list("/a;/b,/c").is_err());
    }
}
