//! `ferry-hook --mount` on plain directories standing in for mounted drives.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use ferry_schema::ProblemKind;
use ferry_tests::sysroot::OS_REF;

#[test]
fn an_empty_drive_gets_a_record_without_repos_or_links() {
    let env = HookEnv::new("");
    let drive = env.dir.path().join("EMPTY");
    std::fs::create_dir_all(&drive).unwrap();
    let output = env.hook([Path::new("--mount"), &drive]);
    assert!(output.status.success(), "{}", output_text(&output));
    let records = env.records();
    assert_eq!(records.len(), 1, "{}", output_text(&output));
    let record = &records[0];
    assert_eq!(
        Path::new(&record.mount),
        std::fs::canonicalize(&drive).unwrap()
    );
    assert!(record.repos.is_empty(), "{record:?}");
    assert!(record.updates.is_empty());
    assert!(record.sideload_links.is_empty());
    assert!(env.sideload_links().is_empty());
    assert_eq!(record.device, None);
}

#[test]
fn repos_d_entries_are_found_and_a_symlink_out_of_the_drive_is_refused() {
    let env = HookEnv::new("");
    let os = signed_os_repo(env.dir.path());
    let drive = std::fs::canonicalize(env.dir.path()).unwrap().join("STICK");
    create_usb_at(&os, &drive, "updates/os");
    let generated = drive.join(".ostree/repos.d/00-generated");
    assert!(
        std::fs::symlink_metadata(&generated).unwrap().is_symlink(),
        "ostree create-usb made no repos.d link"
    );
    // A second entry pointing at a valid repository outside the drive.
    std::os::unix::fs::symlink(&os.repo.path, drive.join(".ostree/repos.d/01-escape")).unwrap();
    std::os::unix::fs::symlink("../../../osrepo", drive.join(".ostree/repos.d/02-up")).unwrap();

    let output = env.hook([Path::new("--mount"), &drive]);
    assert!(output.status.success(), "{}", output_text(&output));
    let records = env.records();
    assert_eq!(records.len(), 1, "{}", output_text(&output));
    let record = &records[0];

    let inside = drive.join("updates/os");
    let accepted: Vec<PathBuf> = record
        .repos
        .iter()
        .map(|r| std::fs::canonicalize(&r.path).unwrap())
        .collect();
    assert_eq!(accepted, vec![inside.clone()], "{record:?}");
    assert_eq!(record.repos[0].refs.len(), 1);
    assert_eq!(
        record.repos[0].refs[0].commit.to_hex(),
        os.repo.rev_parse(OS_REF).unwrap()
    );

    let refused: Vec<&str> = record
        .problems
        .iter()
        .filter(|p| p.kind == ProblemKind::Unsafe)
        .map(|p| p.source.as_str())
        .collect();
    assert_eq!(refused.len(), 2, "{:?}", record.problems);
    assert!(
        refused.iter().any(|s| s.contains("01-escape")),
        "{refused:?}"
    );
    assert!(refused.iter().any(|s| s.contains("02-up")), "{refused:?}");

    // Nothing installed here follows org.example.Os, so the drive offers no update and
    // Flatpak gets no link (validation.rs covers a drive that does).
    assert!(record.updates.is_empty());
    assert!(env.sideload_links().is_empty());
}

#[test]
fn remove_deletes_the_record_and_links_and_stale_records_are_cleaned() {
    let env = HookEnv::new("");
    let os = signed_os_repo(env.dir.path());
    let first = env.dir.path().join("FIRST");
    let second = env.dir.path().join("SECOND");
    os.create_usb(&first).unwrap();
    os.create_usb(&second).unwrap();
    for drive in [&first, &second] {
        let output = env.hook([Path::new("--mount"), drive]);
        assert!(output.status.success(), "{}", output_text(&output));
    }
    assert_eq!(env.records().len(), 2);
    // Links of both drives, as a crashed earlier run could have left them.
    std::fs::create_dir_all(&env.sideload_dir).unwrap();
    for record in env.records() {
        std::os::unix::fs::symlink(
            &record.mount,
            env.sideload_dir.join(format!("ferry-{}-0", record.id)),
        )
        .unwrap();
    }

    let output = env.hook([Path::new("--remove"), Path::new("--mount"), &first]);
    assert!(output.status.success(), "{}", output_text(&output));
    let records = env.records();
    assert_eq!(records.len(), 1);
    assert_eq!(
        Path::new(&records[0].mount),
        std::fs::canonicalize(&second).unwrap()
    );
    assert_eq!(env.sideload_links().len(), 1);

    // The second drive disappears without a removal; the next run cleans up after it.
    std::fs::remove_dir_all(&second).unwrap();
    let third = env.dir.path().join("THIRD");
    std::fs::create_dir_all(&third).unwrap();
    let output = env.hook([Path::new("--mount"), &third]);
    assert!(output.status.success(), "{}", output_text(&output));
    let records = env.records();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(
        Path::new(&records[0].mount),
        std::fs::canonicalize(&third).unwrap()
    );
    assert!(env.sideload_links().is_empty());
}

#[test]
fn on_insert_ignore_records_nothing() {
    let env = HookEnv::new("on-insert = ignore\n");
    let drive = env.dir.path().join("IGNORED");
    std::fs::create_dir_all(&drive).unwrap();
    let output = env.hook([Path::new("--mount"), &drive]);
    assert!(output.status.success(), "{}", output_text(&output));
    assert!(env.records().is_empty());
}

#[test]
fn the_hook_never_writes_to_the_drive() {
    let env = HookEnv::new("");
    let os = signed_os_repo(env.dir.path());
    let drive = env.dir.path().join("READONLY");
    os.create_usb(&drive).unwrap();
    let before = tree_listing(&drive);
    let output = env.hook([Path::new("--mount"), &drive]);
    assert!(output.status.success(), "{}", output_text(&output));
    assert_eq!(env.records()[0].repos.len(), 1);
    assert_eq!(tree_listing(&drive), before);
}

/// Every path below `dir` with its size and modification time.
fn tree_listing(dir: &Path) -> Vec<(PathBuf, u64, i64)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        out.push((
            path.clone(),
            meta.size(),
            meta.mtime_nsec() + meta.mtime() * 1_000_000_000,
        ));
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
        }
    }
    out.sort();
    out
}
