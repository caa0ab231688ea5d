//! A repository's remotes as libostree loads them: `[remote "NAME"]` groups of the repo's
//! `config`, then every `*.conf` in the remotes config directory when the repository has one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{read_key_file, TargetError};
use crate::repo::KeyFile;
use crate::trust::RemoteTrustConfig;

/// A remote configured in a target's repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    /// The remote's name.
    pub name: String,
    /// `collection-id`; an empty value counts as none, as in Flatpak.
    pub collection_id: Option<String>,
    /// The remote's `url`, if any.
    pub url: Option<String>,
    /// Flatpak's `xa.disable=true`: the remote is kept but not used.
    pub disabled: bool,
    /// The file that defines the remote: the repo's `config` or a `remotes.d/*.conf`.
    pub defined_in: PathBuf,
    /// Every option of the remote, unescaped: what trust decisions are made from.
    pub options: BTreeMap<String, String>,
}

impl Remote {
    /// The remote's configuration as [`crate::trust::RemotePolicy::load`] takes it.
    pub fn trust_config(&self) -> RemoteTrustConfig {
        RemoteTrustConfig {
            name: self.name.clone(),
            options: self.options.clone(),
        }
    }
}

/// Reads the remotes of the repository whose parsed config is `config` (read from
/// `config_path`), adding those of `remotes_dir` when given. A remote defined twice is an
/// error, as in libostree.
pub(crate) fn load_remotes(
    config: &KeyFile,
    config_path: &Path,
    remotes_dir: Option<&Path>,
) -> Result<Vec<Remote>, TargetError> {
    let mut remotes = remotes_in(config, config_path)?;
    let Some(dir) = remotes_dir else {
        return Ok(remotes);
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(remotes),
        Err(error) => return Err(TargetError::io(dir, error)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| TargetError::io(dir, error))?;
        let name = entry.file_name();
        let is_conf = name.to_str().is_some_and(|name| name.ends_with(".conf"));
        let is_file = entry.file_type().is_ok_and(|kind| kind.is_file());
        if is_conf && is_file {
            files.push(entry.path());
        }
    }
    files.sort();
    for file in files {
        let parsed = read_key_file(&file)?;
        for remote in remotes_in(&parsed, &file)? {
            if let Some(existing) = remotes.iter().find(|r| r.name == remote.name) {
                return Err(TargetError::invalid(
                    &file,
                    format!(
                        "remote '{}' is also defined in {}: remove one of the two definitions",
                        remote.name,
                        existing.defined_in.display()
                    ),
                ));
            }
            remotes.push(remote);
        }
    }
    Ok(remotes)
}

fn remotes_in(file: &KeyFile, path: &Path) -> Result<Vec<Remote>, TargetError> {
    let mut remotes = Vec::new();
    for group in file.groups() {
        let Some(name) = group
            .strip_prefix("remote \"")
            .and_then(|rest| rest.strip_suffix('"'))
            .filter(|name| !name.is_empty())
        else {
            continue;
        };
        let bad = |detail: String| TargetError::invalid(path, detail);
        let collection_id = file
            .get(group, "collection-id")
            .map_err(bad)?
            .filter(|id| !id.is_empty());
        let url = file.get(group, "url").map_err(bad)?;
        let disabled = file
            .get_bool(group, "xa.disable")
            .map_err(bad)?
            .unwrap_or(false);
        let options = file
            .entries_unescaped(group)
            .map_err(bad)?
            .into_iter()
            .collect();
        remotes.push(Remote {
            name: name.to_owned(),
            collection_id,
            url,
            disabled,
            defined_in: path.to_owned(),
            options,
        });
    }
    Ok(remotes)
}
