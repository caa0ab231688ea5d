//! Durable writes: objects written through a [`Transaction`] stay in a locked staging
//! directory under `tmp/` until their batch is committed (synced, then renamed into
//! `objects/`), so nothing incomplete ever sits under an object's final name. A transaction
//! dropped before its commit leaves no object; a staging directory left by a killed writer is
//! emptied, never moved into `objects/`; libostree's own tmp cleanup never deletes a held
//! staging directory.

mod repo_support;

use std::fs;
use std::path::{Path, PathBuf};

use ferry_engine::object::{Checksum, ObjectKind};
use ferry_engine::repo::{
    RefLocation, Repo, RepoMode, StagingOrigin, Transaction, WriteOutcome, STAGING_PREFIX,
};
use repo_support::*;
use tempfile::TempDir;

/// Regular files and symlinks under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return found;
    };
    for entry in entries {
        let entry = entry.expect("read a directory entry");
        let kind = entry.file_type().expect("file type");
        if kind.is_dir() {
            found.extend(files_under(&entry.path()));
        } else {
            found.push(entry.path());
        }
    }
    found
}

/// Entries of `tmp/` that are staging directories.
fn staging_dirs(repo: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(repo.join("tmp"))
        .expect("list tmp")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.starts_with(STAGING_PREFIX) && !name.ends_with("-lock"))
        .collect();
    names.sort();
    names
}

fn boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .expect("read the boot ID")
        .trim()
        .to_owned()
}

/// A source archive repository with a commit of the test tree.
fn source_commit(work: &Path) -> (Repo, Checksum) {
    let tree = work.join("tree");
    make_tree(&tree, false);
    let path = work.join("source");
    init_repo(&path, RepoMode::Archive, None);
    let checksum = commit(&path, CommitSpec::new("main", &tree).subject("durable"));
    let repo = Repo::open(&path).expect("open the source");
    (repo, checksum.parse().expect("a checksum"))
}

/// Writes every object of the commit's closure through `transaction`.
fn write_closure(source: &Repo, transaction: &Transaction<'_>, commit: &Checksum) -> usize {
    let mut written = 0;
    for object in closure(source, commit) {
        let outcome = match object.kind {
            ObjectKind::File => {
                let (header, reader) = source.open_content(&object.checksum).expect("open");
                transaction
                    .write_content(&object.checksum, &header, reader)
                    .unwrap_or_else(|error| panic!("write {object}: {error}"))
            }
            kind => {
                let bytes = source.read_metadata(kind, &object.checksum).expect("read");
                transaction
                    .write_metadata(kind, &object.checksum, &bytes)
                    .unwrap_or_else(|error| panic!("write {object}: {error}"))
            }
        };
        if outcome == WriteOutcome::Written {
            written += 1;
        }
    }
    written
}

#[test]
fn a_dropped_transaction_leaves_no_object_and_a_committed_one_every_object() {
    for mode in [
        RepoMode::Archive,
        RepoMode::BareUser,
        RepoMode::BareUserOnly,
    ] {
        let work = TempDir::new().expect("tempdir");
        let (source, commit) = source_commit(work.path());
        let dest_path = work.path().join("dest");
        let dest = Repo::init(&dest_path, mode, None).expect("init");
        dest.mark_partial(&commit).expect("mark partial");

        let transaction = Transaction::begin(&dest, None).expect("begin");
        assert_eq!(transaction.origin(), StagingOrigin::Created);
        let staging = transaction.staging_path();
        let written = write_closure(&source, &transaction, &commit);
        assert!(written > 20, "{mode}: only {written} objects written");
        assert_eq!(transaction.staged_objects(), written, "{mode}");
        assert_eq!(files_under(&staging).len(), written, "{mode}: staged files");
        assert!(
            files_under(&dest_path.join("objects")).is_empty(),
            "{mode}: objects appeared before the commit"
        );
        // Writing the staged data ahead of the batch's sync publishes nothing.
        transaction.write_ahead().expect("write ahead");
        assert_eq!(transaction.staged_objects(), written, "{mode}");
        assert!(
            files_under(&dest_path.join("objects")).is_empty(),
            "{mode}: objects appeared after writing ahead"
        );
        drop(transaction);
        assert!(
            files_under(&dest_path.join("objects")).is_empty(),
            "{mode}: a dropped transaction left objects"
        );
        assert!(!staging.exists(), "{mode}: the staging directory is left");
        assert_eq!(staging_dirs(&dest_path), Vec::<String>::new(), "{mode}");
        assert_fsck(&dest_path);

        // The same closure committed in batches of 7 objects.
        let transaction = Transaction::begin(&dest, None)
            .expect("begin")
            .with_batch_limits(7, u64::MAX);
        let written = write_closure(&source, &transaction, &commit);
        let committed = files_under(&dest_path.join("objects")).len();
        assert_eq!(committed, written / 7 * 7, "{mode}: whole batches only");
        assert_eq!(transaction.staged_objects(), written % 7, "{mode}");
        // The commit went out with the first batch, marked partial; what is in `objects/`
        // is whole.
        let fsck = ostree(&["fsck", &repo_arg(&dest_path)]);
        assert!(
            fsck.contains("partial commits not verified"),
            "{mode}: {fsck}"
        );
        transaction.commit().expect("commit");
        assert_eq!(files_under(&dest_path.join("objects")).len(), written);
        assert_eq!(staging_dirs(&dest_path), Vec::<String>::new(), "{mode}");
        for object in closure(&source, &commit) {
            assert!(dest.has_object(object).expect("check"), "{mode}: {object}");
        }
        dest.clear_partial(&commit).expect("clear partial");
        dest.write_ref(&RefLocation::head("main"), &commit)
            .expect("write ref");
        assert_fsck(&dest_path);
        let (theirs, ours) = (work.path().join("co-source"), work.path().join("co-dest"));
        checkout(source.path(), &commit.to_string(), &theirs);
        checkout(&dest_path, &commit.to_string(), &ours);
        assert_same_tree(&theirs, &ours);
    }
}

#[test]
fn a_torn_object_left_in_a_staging_dir_is_never_moved_into_objects() {
    let work = TempDir::new().expect("tempdir");
    let (source, commit) = source_commit(work.path());
    let dest_path = work.path().join("dest");
    let dest = Repo::init(&dest_path, RepoMode::BareUser, None).expect("init");
    let victim = closure(&source, &commit)
        .into_iter()
        .find(|object| object.kind == ObjectKind::File)
        .expect("a content object");
    let name = dest
        .object_relative_path(victim)
        .trim_start_matches("objects/")
        .to_owned();
    let torn = b"only the first bytes";

    // What a writer of this boot killed midway leaves: its staging directory and lock file
    // (unlocked now), unfinished temporary files (libostree's and one in a Ferry writer's
    // lane), and an object under its final name in libostree's staging layout with
    // incomplete content. And a staging directory of another boot, whose data may never
    // have reached the disk.
    let ours = format!("{STAGING_PREFIX}{}-torn01", boot_id());
    let theirs = format!("{STAGING_PREFIX}00000000-0000-0000-0000-000000000000-old001");
    for dir in [&ours, &theirs] {
        let staging = dest_path.join("tmp").join(dir);
        fs::create_dir_all(staging.join(&name[..2])).expect("mkdir");
        fs::write(staging.join(&name), torn).expect("write");
        fs::write(staging.join("tmp-unfinished"), torn).expect("write");
        fs::create_dir_all(staging.join("lane-3")).expect("mkdir");
        fs::write(staging.join("lane-3/ferry-0123456789abcdef"), torn).expect("write");
        fs::write(dest_path.join("tmp").join(format!("{dir}-lock")), b"").expect("lock file");
    }

    let transaction = Transaction::begin(&dest, None).expect("begin");
    assert_eq!(
        transaction.origin(),
        StagingOrigin::Adopted { discarded: 3 },
        "the leftover directory of this boot is reused and emptied"
    );
    assert_eq!(
        transaction.staging_path(),
        dest_path.join("tmp").join(&ours)
    );
    assert_eq!(transaction.removed_stale(), 1);
    assert!(!dest_path.join("tmp").join(&theirs).exists());
    assert!(files_under(&transaction.staging_path()).is_empty());
    transaction.commit().expect("commit an empty transaction");
    assert!(
        !dest.has_object(victim).expect("check"),
        "the torn object was moved"
    );
    assert!(files_under(&dest_path.join("objects")).is_empty());
    assert_eq!(staging_dirs(&dest_path), Vec::<String>::new());

    // Torn again, then a real write of the closure: the stored object is the verified one.
    let staging = dest_path.join("tmp").join(&ours);
    fs::create_dir_all(staging.join(&name[..2])).expect("mkdir");
    fs::write(staging.join(&name), torn).expect("write");
    dest.mark_partial(&commit).expect("mark partial");
    let transaction = Transaction::begin(&dest, None).expect("begin");
    assert_eq!(
        transaction.origin(),
        StagingOrigin::Adopted { discarded: 1 }
    );
    write_closure(&source, &transaction, &commit);
    transaction.commit().expect("commit");
    let stored = fs::read(dest.object_path(victim)).expect("read the stored object");
    assert_ne!(stored.as_slice(), torn.as_slice());
    dest.clear_partial(&commit).expect("clear partial");
    dest.write_ref(&RefLocation::head("main"), &commit)
        .expect("write ref");
    assert_fsck(&dest_path);
}

#[test]
fn ostree_never_deletes_a_held_staging_dir() {
    let work = TempDir::new().expect("tempdir");
    let (source, commit) = source_commit(work.path());
    let tree = work.path().join("tree");
    fs::write(tree.join("usr/share/extra"), b"only in the other branch\n").expect("write");
    let other = crate::commit(
        source.path(),
        CommitSpec::new("other", &tree).subject("other"),
    );
    let dest_path = work.path().join("dest");
    let dest = Repo::init(&dest_path, RepoMode::BareUser, None).expect("init");

    dest.mark_partial(&commit).expect("mark partial");
    let transaction = Transaction::begin(&dest, None).expect("begin");
    let written = write_closure(&source, &transaction, &commit);
    // An unheld staging directory named like ours, for comparison.
    let unheld = dest_path
        .join("tmp")
        .join(format!("{STAGING_PREFIX}{}-unheld", boot_id()));
    fs::create_dir(&unheld).expect("mkdir");
    // To an `ostree` that believes it runs in another boot, both are stale staging
    // directories: its tmp cleanup deletes every one it can lock.
    let output = std::process::Command::new("ostree")
        .env("OSTREE_BOOTID", "11111111-2222-3333-4444-555555555555")
        .args(["pull-local", &repo_arg(&dest_path)])
        .arg(source.path())
        .arg("other")
        .output()
        .expect("run ostree");
    assert!(
        output.status.success(),
        "ostree pull-local failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !unheld.exists(),
        "ostree kept an unheld stale staging directory"
    );
    assert!(
        transaction.staging_path().is_dir(),
        "ostree deleted a held one"
    );
    assert_eq!(files_under(&transaction.staging_path()).len(), written);
    transaction.commit().expect("commit");
    dest.clear_partial(&commit).expect("clear partial");
    dest.write_ref(&RefLocation::head("main"), &commit)
        .expect("write ref");
    assert_fsck(&dest_path);
    assert_eq!(
        ostree(&["rev-parse", &repo_arg(&dest_path), "other"]),
        other
    );
    assert_eq!(staging_dirs(&dest_path), Vec::<String>::new());
}

/// `core.fsync=false` (no syncing at all) and `core.per-object-fsync=true` (each object
/// fsynced as it is written, then the batch synced too, as libostree does) commit the same.
#[test]
fn transactions_commit_under_every_fsync_setting() {
    for (key, value) in [("core.fsync", "false"), ("core.per-object-fsync", "true")] {
        let work = TempDir::new().expect("tempdir");
        let (source, commit) = source_commit(work.path());
        let dest_path = work.path().join("dest");
        drop(Repo::init(&dest_path, RepoMode::BareUser, None).expect("init"));
        ostree(&["config", &repo_arg(&dest_path), "set", key, value]);
        let dest = Repo::open(&dest_path).expect("open");
        dest.mark_partial(&commit).expect("mark partial");
        let transaction = Transaction::begin(&dest, None)
            .expect("begin")
            .with_batch_limits(5, u64::MAX);
        let written = write_closure(&source, &transaction, &commit);
        transaction.commit().expect("commit");
        assert_eq!(
            files_under(&dest_path.join("objects")).len(),
            written,
            "{key}"
        );
        dest.clear_partial(&commit).expect("clear partial");
        dest.write_ref(&RefLocation::head("main"), &commit)
            .expect("write ref");
        assert_fsck(&dest_path);
        assert_eq!(staging_dirs(&dest_path), Vec::<String>::new(), "{key}");
    }
}

/// As libostree: with the repository's reserve out of reach, a transaction still writes
/// metadata objects, and refuses content objects with an error saying what is missing. For
/// every mode, archive included (where compressed objects are copied as they are).
#[test]
fn content_beyond_the_reserve_is_refused_and_metadata_still_written() {
    for mode in [RepoMode::Archive, RepoMode::BareUserOnly] {
        let work = TempDir::new().expect("tempdir");
        let (source, commit) = source_commit(work.path());
        let dest_path = work.path().join("dest");
        Repo::init(&dest_path, mode, None).expect("init");
        let config = dest_path.join("config");
        let text = fs::read_to_string(&config).expect("read config");
        let text = text.replacen("[core]\n", "[core]\nmin-free-space-size=999999999TB\n", 1);
        fs::write(&config, text).expect("write config");
        let dest = Repo::open(&dest_path).expect("open");

        let transaction = Transaction::begin(&dest, None).expect("begin");
        let mut refused = 0;
        for object in closure(&source, &commit) {
            match object.kind {
                ObjectKind::File => {
                    let result = if mode == RepoMode::Archive {
                        let filez = source
                            .open_archived_content(&object.checksum)
                            .expect("open");
                        transaction.write_archived_content(&object.checksum, filez.file)
                    } else {
                        let (header, reader) = source.open_content(&object.checksum).expect("open");
                        let result = transaction.write_content(&object.checksum, &header, reader);
                        if header.is_symlink() {
                            // A symbolic link takes no data blocks; libostree lets it through.
                            result.expect("a symbolic link");
                            continue;
                        }
                        result
                    };
                    let error = result.expect_err(&format!("{mode:?}: {object} past the reserve"));
                    assert!(
                        error.to_string().contains("not enough free space"),
                        "{error}"
                    );
                    refused += 1;
                }
                kind => {
                    let bytes = source.read_metadata(kind, &object.checksum).expect("read");
                    transaction
                        .write_metadata(kind, &object.checksum, &bytes)
                        .unwrap_or_else(|error| panic!("metadata {object}: {error}"));
                }
            }
        }
        assert!(refused > 0, "the tree has content objects");
        transaction.commit().expect("commit the metadata");
        assert!(dest
            .has_object(ferry_engine::object::ObjectId::new(
                commit,
                ObjectKind::Commit
            ))
            .expect("check"));
    }
}
