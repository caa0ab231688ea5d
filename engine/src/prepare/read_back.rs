//! Reading written objects back from the device and re-hashing them, batch by batch.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::sync::Mutex;

use super::copy::{for_each_parallel, Copying, CHUNK};
use super::plan::Planned;
use super::PrepareError;
use crate::cancel::CancelToken;
use crate::object::{metadata_checksum, ContentHasher, Metadata, ObjectId, ObjectKind};
use crate::repo::Repo;

/// Bytes of objects written before they are synced and read back (while the next batch is
/// written).
const CHECK_BATCH_BYTES: u64 = 48 << 20;

/// `objects` cut into runs of about `bytes` each, in order.
fn batches(objects: &[Planned], bytes: u64) -> Vec<&[Planned]> {
    let mut runs = Vec::new();
    let mut start = 0;
    let mut size = 0u64;
    for (index, planned) in objects.iter().enumerate() {
        size = size.saturating_add(planned.size);
        if size >= bytes {
            runs.push(&objects[start..=index]);
            start = index + 1;
            size = 0;
        }
    }
    if start < objects.len() {
        runs.push(&objects[start..]);
    }
    runs
}

/// Writes `objects` in batches of about [`CHECK_BATCH_BYTES`]. Each batch is synced and read
/// back from the device while the next one is written, so writeback and read-back overlap
/// the writing instead of following it. Returns the objects that read back wrong; `drive`
/// names the drive in errors.
pub(super) fn write_read_back(
    copying: &Copying<'_>,
    drive_repo: &Repo,
    objects: &[Planned],
    threads: usize,
    drive: &Path,
) -> Result<Vec<ObjectId>, PrepareError> {
    let mut bad = Vec::new();
    std::thread::scope(|scope| -> Result<(), PrepareError> {
        let mut checking = None;
        for batch in batches(objects, CHECK_BATCH_BYTES) {
            let before = copying.written.count();
            copying.write_all(batch, threads)?;
            let batch_written = copying.written.since(before);
            if let Some(previous) = checking.take() {
                bad.extend(joined(previous, drive)?);
            }
            let (writer, cancel) = (copying.writer, copying.cancel);
            checking = Some(scope.spawn(move || {
                writer.sync()?;
                verify_objects(drive_repo, &batch_written, threads, cancel)
            }));
        }
        if let Some(previous) = checking.take() {
            bad.extend(joined(previous, drive)?);
        }
        Ok(())
    })?;
    Ok(bad)
}

/// The objects a read-back thread found bad, or its error.
fn joined(
    thread: std::thread::ScopedJoinHandle<'_, Result<Vec<ObjectId>, PrepareError>>,
    drive: &Path,
) -> Result<Vec<ObjectId>, PrepareError> {
    thread.join().unwrap_or_else(|_| {
        Err(PrepareError::io(
            "read back",
            drive.to_path_buf(),
            io::Error::other("a read-back worker stopped"),
        ))
    })
}

/// Reads `objects` back from `drive` past the page cache and hashes them again. Returns
/// those that no longer match their names or cannot be read.
pub fn verify_objects(
    drive: &Repo,
    objects: &[ObjectId],
    threads: usize,
    cancel: &CancelToken,
) -> Result<Vec<ObjectId>, PrepareError> {
    let bad: Mutex<Vec<ObjectId>> = Mutex::new(Vec::new());
    let buffer = || vec![0u8; CHUNK];
    for_each_parallel(objects, threads, cancel, buffer, |buffer, object| {
        if !read_back_matches(drive, *object, buffer) {
            if let Ok(mut list) = bad.lock() {
                list.push(*object);
            }
        }
        Ok(())
    })?;
    let mut bad = bad.into_inner().unwrap_or_else(|p| p.into_inner());
    bad.sort_by_key(|object| object.checksum);
    Ok(bad)
}

/// Whether an object on the drive, read from the device rather than the page cache, still
/// hashes to its name (detached metadata, which has no name of its own, must parse).
fn read_back_matches(drive: &Repo, object: ObjectId, buffer: &mut [u8]) -> bool {
    match object.kind {
        ObjectKind::File => {
            // Pages of a synced file are clean, so they can be dropped and read again from
            // the device.
            let Ok((header, mut content)) = drive.open_content_from_device(&object.checksum) else {
                return false;
            };
            let Ok(mut hasher) = ContentHasher::new(&header) else {
                return false;
            };
            loop {
                match content.read(buffer) {
                    Ok(0) => break,
                    Ok(read) => hasher.update(&buffer[..read]),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => return false,
                }
            }
            hasher.finish() == object.checksum
        }
        kind => {
            if let Ok(file) = File::open(drive.object_path(object)) {
                let _ = rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed);
            }
            match kind {
                ObjectKind::CommitMeta => drive
                    .read_metadata(ObjectKind::CommitMeta, &object.checksum)
                    .is_ok_and(|bytes| Metadata::parse(&bytes).is_ok()),
                kind => drive
                    .read_metadata(kind, &object.checksum)
                    .is_ok_and(|bytes| metadata_checksum(&bytes) == object.checksum),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::Checksum;
    use crate::repo::RepoMode;

    #[test]
    fn objects_are_cut_into_batches_of_about_the_size_in_order() {
        let planned = |size: u64, n: u8| Planned {
            object: ObjectId::new(Checksum::from_array([n; 32]), ObjectKind::File),
            source: 0,
            size,
        };
        let objects: Vec<Planned> = [10, 30, 5, 60, 1, 1]
            .iter()
            .zip(0u8..)
            .map(|(s, n)| planned(*s, n))
            .collect();
        let runs: Vec<Vec<u64>> = batches(&objects, 40)
            .iter()
            .map(|run| run.iter().map(|p| p.size).collect())
            .collect();
        assert_eq!(runs, vec![vec![10, 30], vec![5, 60], vec![1, 1]]);
        assert!(batches(&[], 40).is_empty());
    }

    #[test]
    fn read_back_reports_objects_the_drive_garbled_or_cut_short() {
        use crate::object::FileHeader;
        let dir = tempfile::tempdir().expect("temp dir");
        let repo = Repo::init(&dir.path().join("repo"), RepoMode::Archive, None).expect("init");
        let mut objects = Vec::new();
        for text in ["first file\n", "second file, a little longer\n"] {
            let header = FileHeader::regular(0, 0, 0o644, text.len() as u64);
            let checksum = ContentHasher::checksum(&header, text.as_bytes()).expect("hash");
            repo.write_content(&checksum, &header, text.as_bytes())
                .expect("write");
            objects.push(ObjectId::new(checksum, ObjectKind::File));
        }
        let cancel = CancelToken::new();
        let bad = verify_objects(&repo, &objects, 2, &cancel).expect("verify");
        assert!(bad.is_empty(), "{bad:?}");

        // The first object reads back as the second one's bytes; the second loses its end.
        let second = std::fs::read(repo.object_path(objects[1])).expect("read");
        std::fs::write(repo.object_path(objects[0]), &second).expect("write");
        std::fs::write(repo.object_path(objects[1]), &second[..second.len() - 4]).expect("cut");
        let mut expected = objects.clone();
        expected.sort_by_key(|object| object.checksum);
        let bad = verify_objects(&repo, &objects, 2, &cancel).expect("verify");
        assert_eq!(bad, expected);
    }
}
