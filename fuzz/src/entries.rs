//! One entry per fuzz target: hands untrusted bytes to a parser exactly as Ferry receives
//! them, then uses what was accepted. A panic, a hang or unbounded memory is a bug; an `Err`
//! is the parser doing its job. The fuzz targets and the replay test
//! (`hook/tests/fuzz_corpus.rs`) both compile this file, so they run identical code.

use std::io::{self, BufReader, Read};
use std::path::Path;

use ferry_engine::event::parse_line;
use ferry_engine::lan::discover::parse_txt;
use ferry_engine::object::{
    Commit, ContentHasher, DirMeta, DirTree, FileHeader, Metadata, MetadataValue, Summary,
};
use ferry_engine::policy::Policy;
use ferry_engine::repo::read_archive_stream;
use ferry_engine::schema::lines::{read_line_bounded, LineRead};
use ferry_engine::schema::DriveRecord;
use ferry_engine::trust::metadata::{CommitFacts, DetachedSignatures};

/// A target's entry: takes any bytes, panics only on a bug.
pub type Entry = fn(&[u8]);

/// Every target by name: `fuzz/fuzz_targets/<name>.rs` calls the function, and
/// `fuzz/corpus/<name>/` holds its seeds.
pub const TARGETS: &[(&str, Entry)] = &[
    ("commit", commit),
    ("dirtree", dirtree),
    ("dirmeta", dirmeta),
    ("summary", summary),
    ("commitmeta", commitmeta),
    ("filez", filez),
    ("content_header", content_header),
    ("txt", txt),
    ("drive_record", drive_record),
    ("policy", policy),
    ("events", events),
    ("delta", delta),
];

/// A commit object from a drive or peer, and what trust reads from it.
pub fn commit(data: &[u8]) {
    let Ok(commit) = Commit::parse(data) else {
        return;
    };
    let _ = commit.version();
    let _ = commit.collection_binding();
    let _ = commit.ref_binding();
    let _ = commit.sizes();
    let _ = CommitFacts::from_commit(&commit);
    // Only the normal form is accepted, so it must serialise back to the same bytes: the
    // checksum Ferry computes is over these bytes.
    assert_eq!(commit.to_bytes().ok().as_deref(), Some(data));
}

pub fn dirtree(data: &[u8]) {
    let Ok(tree) = DirTree::parse(data) else {
        return;
    };
    assert!(tree.validate().is_ok());
    let _ = tree.names().count();
    assert_eq!(tree.to_bytes().ok().as_deref(), Some(data));
}

pub fn dirmeta(data: &[u8]) {
    let Ok(meta) = DirMeta::parse(data) else {
        return;
    };
    assert!(meta.validate().is_ok());
    assert_eq!(meta.to_bytes().ok().as_deref(), Some(data));
}

/// A repository's `summary`, with the lookups a pull and a listing make.
pub fn summary(data: &[u8]) {
    let Ok(summary) = Summary::parse(data) else {
        return;
    };
    let _ = summary.last_modified();
    let _ = summary.expires();
    for (collection_id, summary_ref) in summary.collection_refs() {
        let _ = summary_ref.timestamp();
        let _ = summary_ref.version();
        assert!(summary.lookup(collection_id, &summary_ref.name).is_some());
    }
    use_metadata(&summary.metadata);
}

/// A `.commitmeta` object (detached metadata: signatures) or `summary.sig`.
pub fn commitmeta(data: &[u8]) {
    let _ = DetachedSignatures::parse(data);
    let Ok(metadata) = Metadata::parse(data) else {
        return;
    };
    use_metadata(&metadata);
    assert_eq!(metadata.to_bytes().ok().as_deref(), Some(data));
}

/// Reads every value with every accessor, as the callers that look keys up do.
fn use_metadata(metadata: &Metadata) {
    for (_, value) in metadata.entries() {
        use_value(value);
    }
}

fn use_value(value: &MetadataValue) {
    let _ = value.as_str();
    let _ = value.as_str_array();
    let _ = value.as_bytes();
    let _ = value.as_byte_arrays();
    let _ = value.as_u64();
    let _ = value.as_u32();
    let _ = value.as_bool();
    if let Some(nested) = value.as_metadata() {
        use_metadata(&nested);
    }
}

/// An archive `.filez` object from a drive or a peer: header, then deflated content that
/// must inflate to exactly the declared size, hashed as a pull does.
pub fn filez(data: &[u8]) {
    let Ok((header, mut content)) = read_archive_stream(data, "fuzz") else {
        return;
    };
    let Ok(mut hasher) = ContentHasher::new(&header) else {
        return;
    };
    let mut buffer = [0u8; 8192];
    loop {
        match content.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => hasher.update(&buffer[..read]),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
    }
    // A stream that read to its end inflated to exactly the declared size.
    let expected = if header.is_regular() { header.size } else { 0 };
    assert_eq!(hasher.content_bytes(), expected);
    let _ = hasher.finish();
}

/// The headers of bare and bare-user objects on a drive: the checksum header and the
/// `user.ostreemeta` xattr. The first 8 bytes give the content size.
pub fn content_header(data: &[u8]) {
    let Some((size, variant)) = data.split_first_chunk::<8>() else {
        return;
    };
    let size = u64::from_le_bytes(*size);
    if let Ok(header) = FileHeader::parse_checksum_header(variant, size) {
        let _ = header.checksum_header_bytes();
    }
    if FileHeader::ostreemeta_mode(variant).is_ok() {
        let target = std::str::from_utf8(variant).ok();
        if let Ok(header) = FileHeader::parse_ostreemeta(variant, target, size) {
            let _ = header.ostreemeta_bytes();
        }
    }
}

/// DNS-SD TXT records in wire form (length-prefixed `key=value` strings), as a computer
/// nearby advertises them. The first record with a key wins (RFC 6763 §6.4).
pub fn txt(data: &[u8]) {
    let mut records: Vec<(&[u8], Option<&[u8]>)> = Vec::new();
    let mut rest = data;
    while let Some((&length, tail)) = rest.split_first() {
        let length = usize::from(length).min(tail.len());
        let (record, tail) = tail.split_at(length);
        rest = tail;
        match record.iter().position(|&byte| byte == b'=') {
            Some(at) => records.push((&record[..at], Some(&record[at + 1..]))),
            None => records.push((record, None)),
        }
    }
    let _ = parse_txt(|key| {
        records
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(key.as_bytes()))
            .map(|(_, value)| *value)
    });
}

/// `$FERRY_RUN_DIR/drives/<id>.json`, which the app and `ferryctl` read.
pub fn drive_record(data: &[u8]) {
    let Ok(record) = DriveRecord::parse(data) else {
        return;
    };
    let _ = record.display_name();
    // What was read writes back to a record that reads the same.
    let Ok(again) = serde_json::to_vec(&record) else {
        panic!("an accepted drive record does not serialise");
    };
    assert_eq!(DriveRecord::parse(&again).ok(), Some(record));
}

/// `/etc/ferry/ferry.conf`, as `Policy::read` hands it over after its size check.
pub fn policy(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(error) = Policy::parse(text, Path::new("/etc/ferry/ferry.conf")) {
        let _ = error.to_string();
    }
}

/// The `ferryctl install --json` output the app reads: bounded lines, each an event. The
/// first byte picks the line limit and the read buffer size, so lines cross buffer ends.
pub fn events(data: &[u8]) {
    let Some((&shape, stream)) = data.split_first() else {
        return;
    };
    let max = usize::from(shape & 0x3f) * 64 + 1;
    let capacity = usize::from(shape >> 6) * 7 + 1;
    let mut reader = BufReader::with_capacity(capacity, stream);
    let mut line = Vec::new();
    let mut lines = 0usize;
    loop {
        match read_line_bounded(&mut reader, &mut line, max) {
            Ok(LineRead::Eof) => break,
            Ok(LineRead::TooLong) => assert!(line.is_empty()),
            Ok(LineRead::Line) => {
                assert!(line.len() <= max && !line.contains(&b'\n'));
                let text = String::from_utf8_lossy(&line);
                let text = text.strip_suffix('\r').unwrap_or(&text);
                let _ = parse_line(text);
            }
            Err(_) => break,
        }
        lines += 1;
        // Each read consumes at least one byte, so the stream ends.
        assert!(lines <= stream.len());
    }
}

/// A static delta superblock from a drive or peer. Parts are not inflated here: an inline
/// part may legitimately inflate to 512 MiB, past the fuzzer's memory limit.
pub fn delta(data: &[u8]) {
    let Ok(superblock) = ferry_engine::delta::Superblock::parse(data) else {
        return;
    };
    // Accepted only when its commit is the delta's target.
    assert_eq!(
        ferry_engine::object::metadata_checksum(&superblock.commit),
        superblock.to
    );
    let _ = superblock.external_parts_size();
    for index in 0..superblock.parts.len() {
        let _ = superblock.inline_part(index);
    }
}
