//! Hostile edits of a repository's objects, as an attacker with write access to a drive would
//! make them: well-formed objects with other content, truncated or missing objects, and
//! metadata rewritten consistently (checksums recomputed) to carry forbidden names.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use flate2::read::DeflateDecoder;
use flate2::write::DeflateEncoder;
use flate2::Compression;
use sha2::{Digest, Sha256};

use crate::error::{FixtureError, IoContext, Result};
use crate::gpg::GpgKey;
use crate::ostree::{object_path_in, ObjectKind, OstreeRepo, RefLocation};

/// Replaces every `old` in the content of file `path` in commit `rev`, stored with
/// `extension`: `.filez` content is inflated and deflated again, `.file` content edited in
/// place. Returns the object's path.
fn replace_in_content(
    repo: &OstreeRepo,
    rev: &str,
    path: &str,
    extension: &str,
    old: &[u8],
    new: &[u8],
) -> Result<PathBuf> {
    same_length(old, new)?;
    let checksum = repo.content_checksum(rev, path)?;
    let object = object_path_in(&repo.path, &checksum, extension);
    let bytes = fs::read(&object).at("read", &object)?;
    let replace = |content: Vec<u8>| {
        replace_all(&content, old, new)
            .ok_or_else(|| bad_object(&object, "does not contain the text to replace"))
    };
    let out = if extension == "filez" {
        with_filez_content(&object, &bytes, replace)?
    } else {
        replace(bytes)?
    };
    rewrite(&object, &out)?;
    Ok(object)
}

/// The `.filez` object of file `path` in commit `rev`.
fn filez_path(repo: &OstreeRepo, rev: &str, path: &str) -> Result<PathBuf> {
    let checksum = repo.content_checksum(rev, path)?;
    Ok(object_path_in(&repo.path, &checksum, "filez"))
}

/// The bytes of `.filez` object `object` with its content inflated, passed through `change`
/// and deflated again behind the same header.
fn with_filez_content(
    object: &Path,
    bytes: &[u8],
    change: impl FnOnce(Vec<u8>) -> Result<Vec<u8>>,
) -> Result<Vec<u8>> {
    let body_start = filez_body_start(object, bytes)?;
    let mut content = Vec::new();
    DeflateDecoder::new(&bytes[body_start..])
        .read_to_end(&mut content)
        .at("inflate", object)?;
    let content = change(content)?;
    let mut encoder = DeflateEncoder::new(Vec::new(), Compression::new(6));
    encoder.write_all(&content).at("deflate", object)?;
    let mut out = bytes[..body_start].to_vec();
    out.extend(encoder.finish().at("deflate", object)?);
    Ok(out)
}

/// Rewrites the size the `.filez` header of file `path` in commit `rev` declares (the `t`
/// at the start of its `(tuuuusa(ayay))`), leaving the compressed content as it was: a
/// header that lies about what follows. Returns the object's path.
pub fn set_filez_size(repo: &OstreeRepo, rev: &str, path: &str, size: u64) -> Result<PathBuf> {
    let object = filez_path(repo, rev, path)?;
    let mut bytes = fs::read(&object).at("read", &object)?;
    let field = bytes
        .get_mut(8..16)
        .ok_or_else(|| bad_object(&object, "shorter than its header"))?;
    field.copy_from_slice(&size.to_be_bytes());
    rewrite(&object, &bytes)?;
    Ok(object)
}

/// Puts `blocks` empty stored deflate blocks in front of the compressed content of file
/// `path`'s `.filez` in commit `rev`. The content inflates to the same bytes, so the object
/// still hashes right, but it takes 5 bytes more per block: compressed padding no honest
/// compressor writes. Returns the object's path.
pub fn pad_filez(repo: &OstreeRepo, rev: &str, path: &str, blocks: usize) -> Result<PathBuf> {
    let object = filez_path(repo, rev, path)?;
    let bytes = fs::read(&object).at("read", &object)?;
    let body_start = filez_body_start(&object, &bytes)?;
    let mut out = bytes[..body_start].to_vec();
    // BFINAL=0, BTYPE=00 (stored), padded to the byte; LEN=0, NLEN=!0.
    for _ in 0..blocks {
        out.extend_from_slice(&[0x00, 0x00, 0x00, 0xff, 0xff]);
    }
    out.extend_from_slice(&bytes[body_start..]);
    rewrite(&object, &out)?;
    Ok(object)
}

/// The bytes of a `.filez` object with the last byte of its content flipped: the same header
/// and a valid raw-deflate stream of the same length, so the object is well formed and only
/// its hash shows it is not the object named. Fails for an object without content (a
/// symlink, an empty file).
pub fn change_filez_content(bytes: &[u8]) -> Result<Vec<u8>> {
    let object = Path::new("(filez bytes)");
    with_filez_content(object, bytes, |mut content| {
        let last = content
            .last_mut()
            .ok_or_else(|| bad_object(object, "has no content to change"))?;
        *last ^= 0x01;
        Ok(content)
    })
}

/// Where the compressed content of a `.filez` starts: after the 4-byte header length, 4
/// bytes of padding and the header.
fn filez_body_start(object: &Path, bytes: &[u8]) -> Result<usize> {
    let header_len = bytes
        .get(..4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_be_bytes)
        .ok_or_else(|| bad_object(object, "shorter than its header length"))?;
    8usize
        .checked_add(header_len as usize)
        .filter(|start| *start <= bytes.len())
        .ok_or_else(|| bad_object(object, "header longer than the file"))
}

/// Rewrites the content object of file `path` in commit `rev` so it stays well formed but its
/// content has every `old` replaced by `new` (same length, so the header's size stays right).
/// Only a checksum check can notice. An archive repository's `.filez` object keeps its header
/// and gets a valid raw-deflate stream again; a bare one's `.file` is edited in place (its
/// xattrs, such as `user.ostreemeta`, are kept). Returns the object's path.
pub fn tamper_content(
    repo: &OstreeRepo,
    rev: &str,
    path: &str,
    old: &[u8],
    new: &[u8],
) -> Result<PathBuf> {
    let extension = ferry_engine::object::ObjectKind::File.extension(repo.mode()?);
    replace_in_content(repo, rev, path, extension, old, new)
}

/// Makes commit `commit` an incomplete copy, as an interrupted pull leaves it: the content
/// object of `path` is removed and `state/COMMIT.commitpartial` is written. Returns the
/// removed object's path.
pub fn make_partial(repo: &OstreeRepo, commit: &str, path: &str) -> Result<PathBuf> {
    let checksum = repo.content_checksum(commit, path)?;
    let removed = remove_object(repo, &checksum, ObjectKind::Content)?;
    let state = repo.path.join("state");
    fs::create_dir_all(&state).at("create directory", &state)?;
    let marker = state.join(format!("{commit}.commitpartial"));
    fs::write(&marker, b"").at("write", &marker)?;
    Ok(removed)
}

/// Renames entry `old_name` to `new_name` (same length) in the dirtree object of directory
/// `dir` in `rev`, without fixing any checksum: the object stays well formed but no longer
/// matches its name. Returns the object's path.
pub fn tamper_dirtree(
    repo: &OstreeRepo,
    rev: &str,
    dir: &str,
    old_name: &str,
    new_name: &str,
) -> Result<PathBuf> {
    same_length(old_name.as_bytes(), new_name.as_bytes())?;
    let (dirtree, _) = repo.dir_checksums(rev, dir)?;
    let object = object_path_in(&repo.path, &dirtree, "dirtree");
    let bytes = fs::read(&object).at("read", &object)?;
    let out = replace_once(
        &bytes,
        name_bytes(old_name).as_slice(),
        &name_bytes(new_name),
    )
    .ok_or_else(|| bad_object(&object, &format!("has no single entry named {old_name:?}")))?;
    rewrite(&object, &out)?;
    Ok(object)
}

/// Cuts an object file down to `len` bytes (a new inode: hard links elsewhere keep the
/// whole object).
pub fn truncate_object(
    repo: &OstreeRepo,
    checksum: &str,
    kind: ObjectKind,
    len: u64,
) -> Result<PathBuf> {
    let object = repo.object_path(checksum, kind)?;
    let bytes = fs::read(&object).at("read", &object)?;
    let keep = usize::try_from(len).unwrap_or(usize::MAX).min(bytes.len());
    rewrite(&object, &bytes[..keep])?;
    Ok(object)
}

/// Deletes an object file.
pub fn remove_object(repo: &OstreeRepo, checksum: &str, kind: ObjectKind) -> Result<PathBuf> {
    let object = repo.object_path(checksum, kind)?;
    fs::remove_file(&object).at("remove", &object)?;
    Ok(object)
}

/// Renames entry `old_name` to `new_name` (same byte length; for example `ab` → `..`, or
/// `abc` → `a/b`) in directory `dir` of branch `branch`, then recomputes every checksum up to
/// a new commit, so the repository is consistent and only name validation can refuse it. The
/// new commit is signed with `key` when given, and `refs/heads/BRANCH` points at it. Returns
/// the new commit checksum.
pub fn rename_dirtree_entry(
    repo: &OstreeRepo,
    branch: &str,
    dir: &str,
    old_name: &str,
    new_name: &str,
    key: Option<&GpgKey>,
) -> Result<String> {
    same_length(old_name.as_bytes(), new_name.as_bytes())?;
    let commit = repo.rev_parse(branch)?;
    let (dirtree, _) = repo.dir_checksums(&commit, &normalize_dir(dir))?;
    let first = object_path_in(&repo.path, &dirtree, "dirtree");
    let bytes = fs::read(&first).at("read", &first)?;
    let replaced = replace_once(&bytes, &name_bytes(old_name), &name_bytes(new_name))
        .ok_or_else(|| bad_object(&first, &format!("has no single entry named {old_name:?}")))?;
    let new_commit = replace_dirtree(repo, &commit, dir, &replaced)?;
    publish(
        repo,
        &RefLocation::Head(branch.to_string()),
        &new_commit,
        key,
    )?;
    Ok(new_commit)
}

/// Stores `new_dirtree` (any bytes) as the dirtree of directory `dir` of commit `commit`, and
/// recomputes the dirtrees above it and the commit, so every checksum is right. Returns the
/// new commit, unsigned and on no ref (see [`publish`]).
pub fn replace_dirtree(
    repo: &OstreeRepo,
    commit: &str,
    dir: &str,
    new_dirtree: &[u8],
) -> Result<String> {
    // Directories from `dir` up to the root, with their dirtree checksums in the old commit.
    let mut chain = Vec::new();
    let mut current = normalize_dir(dir);
    loop {
        let (dirtree, _) = repo.dir_checksums(commit, &current)?;
        chain.push(dirtree);
        if current == "/" {
            break;
        }
        current = match current.rfind('/') {
            Some(0) | None => "/".to_string(),
            Some(i) => current[..i].to_string(),
        };
    }
    let mut new_checksum = store_metadata(repo, new_dirtree, "dirtree")?;
    let mut old_checksum = chain[0].clone();
    for parent in &chain[1..] {
        let object = object_path_in(&repo.path, parent, "dirtree");
        let bytes = fs::read(&object).at("read", &object)?;
        let replaced = replace_checksum(&bytes, &old_checksum, &new_checksum, &object)?;
        old_checksum = parent.clone();
        new_checksum = store_metadata(repo, &replaced, "dirtree")?;
    }
    replace_in_commit(repo, commit, &old_checksum, &new_checksum)
}

/// Replaces the checksum `old` (a root dirtree or dirmeta, a parent) by `new` in commit
/// `commit`, and stores the result. Returns the new commit, unsigned and on no ref.
pub fn replace_in_commit(repo: &OstreeRepo, commit: &str, old: &str, new: &str) -> Result<String> {
    let commit_object = object_path_in(&repo.path, commit, "commit");
    let bytes = fs::read(&commit_object).at("read", &commit_object)?;
    let new_commit_bytes = replace_checksum(&bytes, old, new, &commit_object)?;
    store_metadata(repo, &new_commit_bytes, "commit")
}

/// Points ref `location` of `repo` at `commit`, signing the commit with `key` first when given.
pub fn publish(
    repo: &OstreeRepo,
    location: &RefLocation,
    commit: &str,
    key: Option<&GpgKey>,
) -> Result<()> {
    if let Some(key) = key {
        repo.gpg_sign(commit, key)?;
    }
    let ref_path = repo.path.join(location.relative_path());
    if let Some(dir) = ref_path.parent() {
        fs::create_dir_all(dir).at("create directory", dir)?;
    }
    fs::write(&ref_path, format!("{commit}\n")).at("write ref", &ref_path)?;
    Ok(())
}

fn normalize_dir(dir: &str) -> String {
    let trimmed = dir.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".to_string()
    } else if trimmed.starts_with('/') {
        trimmed.to_string()
    } else {
        format!("/{trimmed}")
    }
}

/// Writes a metadata object under its SHA-256 name; returns the checksum.
pub fn store_metadata(repo: &OstreeRepo, bytes: &[u8], extension: &str) -> Result<String> {
    let checksum = hex::encode(Sha256::digest(bytes));
    let path = object_path_in(&repo.path, &checksum, extension);
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).at("create directory", dir)?;
    }
    fs::write(&path, bytes).at("write object", &path)?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).at("chmod", &path)?;
    Ok(checksum)
}

fn replace_checksum(bytes: &[u8], old: &str, new: &str, object: &Path) -> Result<Vec<u8>> {
    let decode = |c: &str| {
        hex::decode(c).map_err(|e| FixtureError::Unexpected(format!("bad checksum {c}: {e}")))
    };
    replace_once(bytes, &decode(old)?, &decode(new)?).ok_or_else(|| {
        bad_object(
            object,
            &format!("does not reference {old} exactly once (identical sibling directories?)"),
        )
    })
}

/// GVariant strings in dirtrees are NUL-terminated; matching the terminator avoids hitting
/// the same letters inside a longer name.
fn name_bytes(name: &str) -> Vec<u8> {
    let mut bytes = name.as_bytes().to_vec();
    bytes.push(0);
    bytes
}

fn same_length(old: &[u8], new: &[u8]) -> Result<()> {
    if old.len() == new.len() && !old.is_empty() {
        Ok(())
    } else {
        Err(FixtureError::Unexpected(format!(
            "replacement must be non-empty and keep the length: {:?} → {:?}",
            String::from_utf8_lossy(old),
            String::from_utf8_lossy(new)
        )))
    }
}

fn find_all(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    if needle.is_empty() || needle.len() > haystack.len() {
        return Vec::new();
    }
    (0..=haystack.len() - needle.len())
        .filter(|&i| &haystack[i..i + needle.len()] == needle)
        .collect()
}

fn replace_all(haystack: &[u8], old: &[u8], new: &[u8]) -> Option<Vec<u8>> {
    let hits = find_all(haystack, old);
    if hits.is_empty() {
        return None;
    }
    let mut out = haystack.to_vec();
    for at in hits {
        out[at..at + new.len()].copy_from_slice(new);
    }
    Some(out)
}

fn replace_once(haystack: &[u8], old: &[u8], new: &[u8]) -> Option<Vec<u8>> {
    match find_all(haystack, old).as_slice() {
        [at] => {
            let mut out = haystack.to_vec();
            out[*at..*at + new.len()].copy_from_slice(new);
            Some(out)
        }
        _ => None,
    }
}

/// Replaces a file with new bytes through a new inode renamed over it, so hard links to the
/// old one (`pull-local` between repos on one filesystem links objects, `checkout -U` too)
/// keep the genuine bytes. Mode, ownership and xattrs (`user.ostreemeta`) are carried over.
fn rewrite(path: &Path, bytes: &[u8]) -> Result<()> {
    let meta = fs::metadata(path).at("stat", path)?;
    let dir = path
        .parent()
        .ok_or_else(|| bad_object(path, "has no parent directory"))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).at("create temporary file in", dir)?;
    tmp.write_all(bytes).at("write", tmp.path())?;
    let names: Vec<_> = xattr::list(path).at("list xattrs of", path)?.collect();
    for name in names {
        if let Some(value) = xattr::get(path, &name).at("read xattr of", path)? {
            xattr::set(tmp.path(), &name, &value).at("set xattr on", tmp.path())?;
        }
    }
    if crate::cmd::is_root() {
        std::os::unix::fs::chown(tmp.path(), Some(meta.uid()), Some(meta.gid()))
            .at("chown", tmp.path())?;
    }
    fs::set_permissions(
        tmp.path(),
        fs::Permissions::from_mode(meta.permissions().mode()),
    )
    .at("chmod", tmp.path())?;
    tmp.persist(path).map_err(|e| e.error).at("replace", path)?;
    Ok(())
}

fn bad_object(path: &Path, what: &str) -> FixtureError {
    FixtureError::Unexpected(format!("object {} {what}", path.display()))
}
