//! Drives built to cost a reader memory: commits and detached metadata padded toward, or
//! past, what Ferry accepts. Padding is zeros written as holes, so a 100 MiB commit takes a
//! few kilobytes of disk. Also measures a command's peak memory with `/usr/bin/time`.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::process::Command;

use ferry_engine::object::{metadata_checksum, Commit, Metadata, MetadataValue};

use crate::error::{FixtureError, IoContext, Result};
use crate::ostree::object_path_in;

/// Metadata key holding the padding.
pub const PADDING_KEY: &str = "org.example.padding";

/// How [`write_padded_commit`] bloats a commit.
#[derive(Debug, Clone, Copy)]
pub struct Padding {
    /// Zero bytes added to the commit's metadata.
    pub commit: usize,
    /// Zero bytes in its detached metadata (None: no detached metadata).
    pub detached: Option<usize>,
    /// Seconds added to the base commit's timestamp, so each copy is a distinct commit.
    pub newer_by: u64,
}

/// Writes into the repository `repo` (which holds commit `base` and its tree) a copy of
/// `base` padded as `padding` says, and points `refs/heads/REF_NAME` at it. The copy is not
/// signed. Returns its checksum.
pub fn write_padded_commit(
    repo: &Path,
    base: &str,
    ref_name: &str,
    padding: Padding,
) -> Result<String> {
    let base_path = object_path_in(repo, base, "commit");
    let bytes = std::fs::read(&base_path).at("read", &base_path)?;
    let mut commit = Commit::parse(&bytes).map_err(unexpected)?;
    commit
        .metadata
        .insert(
            PADDING_KEY,
            MetadataValue::bytes(&vec![0u8; padding.commit]),
        )
        .map_err(unexpected)?;
    commit.timestamp += padding.newer_by;
    let bytes = commit.to_bytes().map_err(unexpected)?;
    let checksum = metadata_checksum(&bytes).to_hex();
    write_sparse(&object_path_in(repo, &checksum, "commit"), &bytes)?;
    if let Some(size) = padding.detached {
        let mut detached = Metadata::new();
        detached
            .insert(PADDING_KEY, MetadataValue::bytes(&vec![0u8; size]))
            .map_err(unexpected)?;
        let bytes = detached.to_bytes().map_err(unexpected)?;
        write_sparse(&object_path_in(repo, &checksum, "commitmeta"), &bytes)?;
    }
    let ref_path = repo.join("refs/heads").join(ref_name);
    if let Some(parent) = ref_path.parent() {
        std::fs::create_dir_all(parent).at("create directory", parent)?;
    }
    std::fs::write(&ref_path, format!("{checksum}\n")).at("write", &ref_path)?;
    Ok(checksum)
}

/// Writes `bytes` to `path`, leaving runs of zeros as holes.
fn write_sparse(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).at("create directory", parent)?;
    }
    let mut file = File::create(path).at("create", path)?;
    const BLOCK: usize = 64 * 1024;
    for (index, block) in bytes.chunks(BLOCK).enumerate() {
        if block.iter().all(|&b| b == 0) {
            continue;
        }
        file.seek(SeekFrom::Start((index * BLOCK) as u64))
            .at("seek in", path)?;
        file.write_all(block).at("write", path)?;
    }
    file.set_len(bytes.len() as u64).at("size", path)?;
    Ok(())
}

fn unexpected(error: impl std::fmt::Display) -> FixtureError {
    FixtureError::Unexpected(error.to_string())
}

/// Runs `command` under `/usr/bin/time` and returns its output and its peak resident memory
/// in KiB.
pub fn run_measuring_memory(command: &Command, dir: &Path) -> Result<(std::process::Output, u64)> {
    let report = dir.join("peak-rss");
    let mut timed = Command::new("/usr/bin/time");
    timed
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&report)
        .arg(command.get_program())
        .args(command.get_args());
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => timed.env(key, value),
            None => timed.env_remove(key),
        };
    }
    if let Some(cwd) = command.get_current_dir() {
        timed.current_dir(cwd);
    }
    let output = timed.output().map_err(|source| FixtureError::Spawn {
        command: format!("{command:?}"),
        source,
    })?;
    let text = std::fs::read_to_string(&report).at("read", &report)?;
    let kib = text
        .lines()
        .filter_map(|line| line.trim().parse::<u64>().ok())
        .next_back()
        .ok_or_else(|| unexpected(format!("/usr/bin/time wrote no peak memory: {text:?}")))?;
    Ok((output, kib))
}
