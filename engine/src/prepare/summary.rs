//! The drive's unsigned summary, listing its refs as `ostree create-usb` lists them.

use std::collections::{BTreeMap, BTreeSet};

use super::drive::DriveWriter;
use super::PrepareError;
use crate::object::summary::{
    build_summary, collection_map_value, SummaryEntry, COLLECTION_MAP_KEY, COMMIT_TIMESTAMP_KEY,
    COMMIT_VERSION_KEY, LAST_MODIFIED_KEY,
};
use crate::object::{Checksum, Metadata, MetadataValue, ObjectId, ObjectKind, Summary};
use crate::repo::{RefLocation, Repo};

/// Writes an unsigned summary listing every mirrored ref whose commit the drive holds, as
/// libostree writes it for `create-usb`; a stale `summary.sig` is removed. Returns false when
/// the summary already listed exactly these refs.
pub(super) fn write_summary(drive: &Repo, writer: &DriveWriter) -> Result<bool, PrepareError> {
    let mut collections: BTreeMap<String, Vec<SummaryEntry>> = BTreeMap::new();
    let mut listed: BTreeSet<(String, String, Checksum)> = BTreeSet::new();
    for (location, commit) in drive.list_refs()? {
        let RefLocation::Mirror {
            collection_id,
            name,
        } = location
        else {
            continue;
        };
        let commit_id = ObjectId::new(commit, ObjectKind::Commit);
        let Some(size) = drive.metadata_size(commit_id)? else {
            continue;
        };
        let parsed = drive.read_commit(&commit)?;
        let mut metadata = Metadata::new();
        let format = |source| PrepareError::Format {
            object: commit_id,
            source,
        };
        metadata
            .insert(
                COMMIT_TIMESTAMP_KEY,
                MetadataValue::u64_big_endian(parsed.timestamp),
            )
            .map_err(format)?;
        if let Some(version) = parsed.version() {
            metadata
                .insert_str(COMMIT_VERSION_KEY, version)
                .map_err(format)?;
        }
        listed.insert((collection_id.clone(), name.clone(), commit));
        collections
            .entry(collection_id)
            .or_default()
            .push((name, commit, size, metadata));
    }
    let deltas = crate::delta::write::summary_value(drive)?;
    let previous = drive
        .read_summary()?
        .and_then(|bytes| Summary::parse(&bytes).ok());
    let previous_refs: Option<BTreeSet<(String, String, Checksum)>> =
        previous.as_ref().map(|summary| {
            summary
                .collection_refs()
                .filter_map(|(id, r)| id.map(|id| (id.to_owned(), r.name.clone(), r.commit)))
                .collect()
        });
    let previous_deltas = previous.as_ref().and_then(|summary| {
        summary
            .metadata
            .get(crate::delta::SUMMARY_STATIC_DELTAS_KEY)
    });
    if previous_refs.as_ref() == Some(&listed) && previous_deltas == deltas.as_ref() {
        return Ok(false);
    }
    let summary_error = PrepareError::Summary;
    let mut lists: Vec<(String, Vec<SummaryEntry>)> = collections.into_iter().collect();
    for (_, refs) in &mut lists {
        refs.sort_by(|a, b| a.0.cmp(&b.0));
    }
    let mut metadata = Metadata::new();
    metadata
        .insert(
            COLLECTION_MAP_KEY,
            collection_map_value(&lists).map_err(summary_error)?,
        )
        .map_err(summary_error)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    metadata
        .insert(LAST_MODIFIED_KEY, MetadataValue::u64_big_endian(now))
        .map_err(summary_error)?;
    metadata
        .insert_str("ostree.summary.mode", "archive-z2")
        .map_err(summary_error)?;
    if let Some(deltas) = deltas {
        metadata
            .insert(crate::delta::SUMMARY_STATIC_DELTAS_KEY, deltas)
            .map_err(summary_error)?;
    }
    metadata
        .insert(
            "ostree.summary.tombstone-commits",
            MetadataValue::bool(false),
        )
        .map_err(summary_error)?;
    let bytes = build_summary(&[], &metadata).map_err(summary_error)?;
    writer.remove_file("summary.sig")?;
    writer.write_file("summary", &bytes)?;
    Ok(true)
}
