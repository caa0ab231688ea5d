//! `ferryctl prepare-drive` re-run on a drive whose OS ref moves on: the static deltas to the
//! commit it left, and their `delta-indexes/` entries, go with its other unneeded files
//! unless `--keep-old` is given, and the drive's summary no longer lists them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Result};
use ferry_tests::bins;
use ferry_tests::cmd::{Output, Tool};
use ferry_tests::generate::pseudo_random;
use ferry_tests::gpg::GpgKey;
use ferry_tests::ostree::OstreeRepo;
use ferry_tests::sysroot::Sysroot;
use tempfile::TempDir;

/// `ferryctl prepare-drive DRIVE --sysroot SYSROOT --os --delta-from installed ARGS --json`,
/// which must succeed.
fn prepare_with_delta(drive: &Path, sysroot: &Path, args: &[&str]) -> Result<Output> {
    let output = bins::ferryctl()?
        .env("LC_ALL", "C.UTF-8")
        .arg("prepare-drive")
        .arg(drive)
        .arg("--sysroot")
        .arg(sysroot)
        .args(["--os", "--delta-from", "installed"])
        .args(args)
        .arg("--json")
        .output()?;
    ensure!(output.success(), "prepare-drive failed:\n{output:?}");
    Ok(output)
}

/// Relative paths of the files and directories under `repo/dir`.
fn entries(repo: &Path, dir: &str) -> Result<BTreeSet<PathBuf>> {
    let mut out = BTreeSet::new();
    let mut pending = vec![repo.join(dir)];
    while let Some(path) = pending.pop() {
        let Ok(listing) = std::fs::read_dir(&path) else {
            continue;
        };
        for entry in listing {
            let path = entry?.path();
            out.insert(path.strip_prefix(repo)?.to_path_buf());
            if path.is_dir() {
                pending.push(path);
            }
        }
    }
    Ok(out)
}

/// The delta names (`FROM-TO`) `ostree summary --view` shows for the repository.
fn summary_view(repo: &Path) -> Result<String> {
    Ok(OstreeRepo::open(repo)
        .ostree()
        .args(["summary", "--view"])
        .stdout()?)
}

fn delta_dirs(repo: &Path) -> Result<Vec<PathBuf>> {
    Ok(entries(repo, "deltas")?
        .into_iter()
        .filter(|path| path.components().count() == 3)
        .collect())
}

#[test]
fn deltas_to_a_commit_no_ref_points_at_are_removed_unless_kept() -> Result<()> {
    let tmp = TempDir::new()?;
    let base = tmp.path();
    let key = GpgKey::generate(&base.join("gnupg"), "OS Vendor <os@example.org>")?;
    let source = Sysroot::create(&base.join("source"), &key)?;
    let lib = source.os.data.join("usr/lib");
    std::fs::create_dir_all(&lib)?;
    let mut library = pseudo_random(128 << 10, 2);
    std::fs::write(lib.join("libexample.so"), &library)?;
    let v1_0 = source.publish("1.0.1")?;
    source.upgrade()?;
    for byte in library.iter_mut().step_by(1500) {
        *byte ^= 0x5a;
    }
    std::fs::write(lib.join("libexample.so"), &library)?;
    let v1_1 = source.publish("1.1")?;
    source.upgrade()?;

    // The drive carries 1.1 as a delta from 1.0.1, listed in its summary and (as
    // `ostree summary -u` lists deltas) in `delta-indexes/`.
    let drive = base.join("drive");
    std::fs::create_dir_all(&drive)?;
    let repo = drive.join(".ostree/repo");
    prepare_with_delta(&drive, &source.path, &[])?;
    OstreeRepo::open(&repo)
        .ostree()
        .args(["summary", "-u"])
        .run()?;
    let old_deltas = delta_dirs(&repo)?;
    ensure!(old_deltas.len() == 1, "{old_deltas:?}");
    let old_indexes = entries(&repo, "delta-indexes")?;
    ensure!(!old_indexes.is_empty(), "ostree summary -u wrote no index");
    let old_name = format!("{v1_0}-{v1_1}");
    ensure!(summary_view(&repo)?.contains(&old_name));

    // The OS moves on to 2.0; a copy of the drive is prepared with --keep-old.
    library[7] ^= 0xff;
    std::fs::write(lib.join("libexample.so"), &library)?;
    let v2 = source.publish("2.0")?;
    source.upgrade()?;
    let kept = base.join("kept");
    Tool::new("cp").arg("-a").arg(&drive).arg(&kept).run()?;
    let kept_repo = kept.join(".ostree/repo");
    // A hostile copy whose `deltas` is a link to a folder outside the drive holding the same
    // stale delta: the clean-up must not follow it.
    let linked = base.join("linked");
    Tool::new("cp").arg("-a").arg(&drive).arg(&linked).run()?;
    let outside = base.join("outside-deltas");
    std::fs::rename(linked.join(".ostree/repo/deltas"), &outside)?;
    std::os::unix::fs::symlink(&outside, linked.join(".ostree/repo/deltas"))?;
    let outside_files = walk_files(&outside)?;
    ensure!(!outside_files.is_empty());

    let output = prepare_with_delta(&drive, &source.path, &[])?;
    ensure!(
        output
            .stdout
            .contains("Removed 1 static delta to a commit no ref on the drive points at"),
        "the run does not say it removed the old delta:\n{}",
        output.stdout
    );
    let new_name = format!("{v1_1}-{v2}");
    let view = summary_view(&repo)?;
    ensure!(
        view.contains(&new_name) && !view.contains(&old_name),
        "the summary should list {new_name} only:\n{view}"
    );
    let deltas = delta_dirs(&repo)?;
    ensure!(
        deltas.len() == 1 && !old_deltas.contains(&deltas[0]),
        "deltas left: {deltas:?} (the old one was {old_deltas:?})"
    );
    let indexes = entries(&repo, "delta-indexes")?;
    ensure!(
        indexes
            .iter()
            .all(|path| !old_indexes.contains(path) || path.components().count() < 3),
        "the old delta's index is still there: {indexes:?}"
    );
    let prefixes: Vec<PathBuf> = entries(&repo, "deltas")?
        .into_iter()
        .filter(|path| path.components().count() == 2)
        .collect();
    ensure!(
        prefixes.iter().all(|prefix| deltas[0].starts_with(prefix)),
        "empty directories left under deltas/: {prefixes:?}"
    );

    // Whether the run on the linked copy succeeds or refuses, nothing outside is removed.
    let _ = bins::ferryctl()?
        .env("LC_ALL", "C.UTF-8")
        .arg("prepare-drive")
        .arg(&linked)
        .arg("--sysroot")
        .arg(&source.path)
        .args(["--os", "--delta-from", "installed", "--json"])
        .output()?;
    ensure!(
        walk_files(&outside)? == outside_files,
        "files outside the drive were removed through the link"
    );

    let output = prepare_with_delta(&kept, &source.path, &["--keep-old"])?;
    ensure!(
        !output.stdout.contains("Removed 1 static delta"),
        "with --keep-old nothing is removed:\n{}",
        output.stdout
    );
    let view = summary_view(&kept_repo)?;
    ensure!(
        view.contains(&new_name) && view.contains(&old_name),
        "with --keep-old the summary should list both deltas:\n{view}"
    );
    let kept_deltas = delta_dirs(&kept_repo)?;
    ensure!(
        kept_deltas.len() == 2 && kept_deltas.contains(&old_deltas[0]),
        "{kept_deltas:?}"
    );
    ensure!(
        old_indexes.is_subset(&entries(&kept_repo, "delta-indexes")?),
        "an index was removed despite --keep-old"
    );
    Ok(())
}

/// Every file below `dir`, recursively.
fn walk_files(dir: &Path) -> Result<BTreeSet<PathBuf>> {
    let mut files = BTreeSet::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                pending.push(entry.path());
            } else {
                files.insert(entry.path());
            }
        }
    }
    Ok(files)
}
