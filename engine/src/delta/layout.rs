//! Where deltas live: their directories and files under `deltas/`, the `delta-indexes/`
//! files, and the summary's map of deltas.

use base64::Engine;

use super::checksum;
use crate::object::Checksum;

/// The metadata key of the summary's map of deltas to their superblock checksums.
pub const SUMMARY_STATIC_DELTAS_KEY: &str = "ostree.static-deltas";

/// OSTree's modified base64 of a checksum: `/` as `_`, no `=` padding.
fn modified_base64(checksum: &Checksum) -> String {
    base64::engine::general_purpose::STANDARD_NO_PAD
        .encode(checksum.as_bytes())
        .replace('/', "_")
}

/// The delta's directory relative to the repository, e.g. `deltas/ab/cdef…-ghij…`.
pub fn delta_dir(from: Option<&Checksum>, to: &Checksum) -> String {
    let to = modified_base64(to);
    match from {
        Some(from) => {
            let from = modified_base64(from);
            format!("deltas/{}/{}-{}", &from[..2], &from[2..], to)
        }
        None => format!("deltas/{}/{}", &to[..2], &to[2..]),
    }
}

/// The superblock's path relative to the repository.
pub fn superblock_path(from: Option<&Checksum>, to: &Checksum) -> String {
    format!("{}/superblock", delta_dir(from, to))
}

/// Part `index`'s path relative to the repository.
pub fn part_path(from: Option<&Checksum>, to: &Checksum, index: usize) -> String {
    format!("{}/{index}", delta_dir(from, to))
}

/// The summary's name for a delta: `FROM-TO` or `TO`, in hex.
pub fn delta_name(from: Option<&Checksum>, to: &Checksum) -> String {
    match from {
        Some(from) => format!("{from}-{to}"),
        None => to.to_hex(),
    }
}

/// The delta index of `to` relative to the repository (libostree's
/// `delta-indexes/<b64(to)[0:2]>/<b64(to)[2:]>.index`): an `a{sv}` holding the same
/// [`SUMMARY_STATIC_DELTAS_KEY`] map as a summary, for the deltas to `to` only.
pub fn index_path(to: &Checksum) -> String {
    let to = modified_base64(to);
    format!("delta-indexes/{}/{}.index", &to[..2], &to[2..])
}

/// The summary key saying deltas are listed in `delta-indexes/` rather than (only) in the
/// summary.
pub const SUMMARY_INDEXED_DELTAS_KEY: &str = "ostree.summary.indexed-deltas";

/// Largest delta index read: one entry per delta to one commit.
pub const MAX_INDEX_SIZE: u64 = 1024 * 1024;

/// A delta to some commit a listing names: from which commit (None: from scratch), and the
/// sha256 of its superblock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listed {
    /// The commit the delta starts from; None for a delta from scratch.
    pub from: Option<Checksum>,
    /// The checksum of the delta's superblock.
    pub superblock: Checksum,
}

/// The deltas to `to` in a `ostree.static-deltas` map (`a{sv}`: delta name to the `ay`
/// checksum of its superblock). Entries that are malformed are skipped.
pub fn listed_deltas(map: &crate::object::Metadata, to: &Checksum) -> Vec<Listed> {
    let to_hex = to.to_hex();
    let mut out = Vec::new();
    for (name, value) in map.entries() {
        let from = match name.split_once('-') {
            Some((from, target)) if target == to_hex => match Checksum::from_hex(from) {
                Ok(from) => Some(from),
                Err(_) => continue,
            },
            None if name == to_hex => None,
            _ => continue,
        };
        let Some(Ok(superblock)) = value.as_bytes().map(|raw| checksum("listing", raw)) else {
            continue;
        };
        out.push(Listed { from, superblock });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_use_modified_base64() {
        let to = Checksum::from_array([0xff; 32]);
        let from = Checksum::from_array([0; 32]);
        let b64_to = format!("{}8", "_".repeat(42));
        assert_eq!(
            superblock_path(None, &to),
            format!("deltas/__/{}/superblock", &b64_to[2..])
        );
        assert_eq!(
            part_path(Some(&from), &to, 3),
            format!("deltas/AA/{}-{b64_to}/3", "A".repeat(41))
        );
    }
}
