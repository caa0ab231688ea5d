//! Signing a static delta's superblock as `ostree static-delta generate --sign-type=ed25519
//! --sign=KEY` does: libostree's signed-delta format (`OSTREE_STATIC_DELTA_SIGNED_FORMAT`,
//! `(taya{sv})`: the magic `OSTSGNDT`, the superblock's bytes, and `ostree.sign.ed25519`
//! signatures of them). The ostree here (Debian's 2022.7) is built without ed25519 signing, so
//! the tests wrap and sign superblocks `ostree static-delta generate` wrote.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Result};
use ed25519_dalek::{Signer as _, SigningKey};
use ferry_engine::event::{Event, MessageLevel};
use ferry_engine::object::Metadata;

use super::PullRun;

/// The magic libostree writes first in a signed superblock (`0x4F535453474E4454`, big-endian).
pub const SIGNED_MAGIC: &[u8; 8] = b"OSTSGNDT";

/// The one superblock under `repo/deltas/`.
pub fn superblock_path(repo: &Path) -> Result<PathBuf> {
    for prefix in fs::read_dir(repo.join("deltas"))? {
        for delta in fs::read_dir(prefix?.path())? {
            let superblock = delta?.path().join("superblock");
            if superblock.is_file() {
                return Ok(superblock);
            }
        }
    }
    anyhow::bail!("no superblock under {}", repo.display())
}

/// GVariant's offset size for a container of `content` bytes with `offsets` offsets.
fn offset_size(content: usize, offsets: usize) -> usize {
    [1usize, 2, 4]
        .into_iter()
        .find(|size| ((content + offsets * size) as u64) < 1u64 << (8 * size))
        .unwrap_or(8)
}

/// Rewrites the superblock at `path` as libostree's signed format: `(taya{sv})` with the
/// magic, the superblock's bytes, and `{"ostree.sign.ed25519": <[signature]>}` where the
/// signature is `key`'s over the superblock's bytes.
pub fn sign_superblock(path: &Path, key: &SigningKey) -> Result<()> {
    let superblock = fs::read(path)?;
    ensure!(!superblock.starts_with(SIGNED_MAGIC), "already signed");
    let signature = key.sign(&superblock).to_bytes();
    let mut signatures = Metadata::new();
    signatures.insert_byte_arrays("ostree.sign.ed25519", &[signature])?;
    let signatures = signatures.to_bytes()?;

    let mut out = SIGNED_MAGIC.to_vec();
    out.extend_from_slice(&superblock);
    let superblock_end = out.len();
    while !out.len().is_multiple_of(8) {
        out.push(0);
    }
    out.extend_from_slice(&signatures);
    // One framing offset: the end of the `ay`, the only variable-size member before the last.
    let size = offset_size(out.len(), 1);
    out.extend_from_slice(&(superblock_end as u64).to_le_bytes()[..size]);
    fs::write(path, out)?;
    Ok(())
}

/// The pull's messages at `level` that speak of a static delta.
pub fn delta_messages(run: &PullRun, level: MessageLevel) -> Vec<String> {
    run.events
        .iter()
        .filter_map(|event| match event {
            Event::Message { level: got, text }
                if *got == level && text.contains("static delta") =>
            {
                Some(text.clone())
            }
            _ => None,
        })
        .collect()
}

/// Requires the pull to have applied a static delta, with no warning about one.
pub fn expect_delta_applied(run: &PullRun) -> Result<()> {
    let warnings = delta_messages(run, MessageLevel::Warning);
    ensure!(warnings.is_empty(), "{warnings:?}");
    ensure!(
        was_applied(run),
        "the delta was not applied: {:?}",
        delta_messages(run, MessageLevel::Info)
    );
    Ok(())
}

/// Whether the pull says it applied a static delta.
pub fn was_applied(run: &PullRun) -> bool {
    delta_messages(run, MessageLevel::Info)
        .iter()
        .any(|text| text.contains("applying the static delta"))
}
