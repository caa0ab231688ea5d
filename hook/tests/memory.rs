//! Memory on hostile drives: a drive whose repositories each offer the installed app at a
//! distinct unsigned commit padded to just under the size Ferry accepts, plus one padded
//! toward libostree's 128 MiB limit with oversized detached metadata. Validating it
//! (`ferry-hook --mount`) and listing it (`ferryctl list --offline --from`) must stay within
//! 64 MiB of peak memory, refuse every such commit, and say why.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use ferry_engine::object::{MAX_COMMIT_SIZE, MAX_DETACHED_METADATA_SIZE};
use ferry_schema::{Problem, ProblemKind, UpdateList};
use ferry_tests::flatpak::{app_ref, FlatpakFixture, APP_ID, BRANCH, COLLECTION_ID};
use ferry_tests::heavy::{run_measuring_memory, write_padded_commit, Padding};
use ferry_tests::ostree::{OstreeRepo, RepoMode};

/// The target: the hook and a listing stay within this, whatever the drive holds.
const PEAK_RSS_LIMIT_KIB: u64 = 64 * 1024;
/// Repositories with commits just under the cap.
const NEAR_CAP_REPOS: usize = 4;

/// Builds the hostile drive under `dir`; returns its root and the hostile commits.
fn hostile_drive(dir: &Path, fixture: &FlatpakFixture) -> (PathBuf, Vec<String>) {
    let root = dir.join("HOSTILE");
    let repos_d = root.join(".ostree/repos.d");
    std::fs::create_dir_all(&repos_d).unwrap();
    let app = app_ref(APP_ID, BRANCH).unwrap();
    let near_cap = usize::try_from(MAX_COMMIT_SIZE).unwrap() - 64 * 1024;
    let old_cap = 100 * 1024 * 1024;
    let mut commits = Vec::new();
    for index in 0..=NEAR_CAP_REPOS {
        let path = root.join(format!("repo-{index}"));
        let repo = OstreeRepo::init(&path, RepoMode::Archive, Some(COLLECTION_ID)).unwrap();
        repo.pull_local(&fixture.repo.repo.path, &[&app], &[])
            .unwrap();
        // The last one is far past the cap, with detached metadata far past its cap too.
        let padding = if index == NEAR_CAP_REPOS {
            Padding {
                commit: old_cap,
                detached: Some(usize::try_from(MAX_DETACHED_METADATA_SIZE).unwrap() * 64),
                newer_by: 1000,
            }
        } else {
            Padding {
                commit: near_cap,
                detached: Some(usize::try_from(MAX_DETACHED_METADATA_SIZE).unwrap() - 1024),
                newer_by: 10 + index as u64,
            }
        };
        let commit = write_padded_commit(&path, &fixture.app_v1, &app, padding).unwrap();
        // Many refs naming the same commit: the scan reads it once.
        for alias in 0..50 {
            std::fs::write(
                path.join(format!("refs/heads/alias-{alias}")),
                format!("{commit}\n"),
            )
            .unwrap();
        }
        std::os::unix::fs::symlink(
            format!("../../repo-{index}"),
            repos_d.join(format!("{index:02}")),
        )
        .unwrap();
        commits.push(commit);
    }
    (root, commits)
}

/// Every hostile commit on a near-cap repository is refused with a reason naming its source.
fn refused_every(problems: &[Problem], drive: &Path, what: &str) {
    let app = app_ref(APP_ID, BRANCH).unwrap();
    for index in 0..NEAR_CAP_REPOS {
        let repo = std::fs::canonicalize(drive.join(format!("repo-{index}"))).unwrap();
        let repo = repo.display().to_string();
        assert!(
            problems
                .iter()
                .any(|p| p.kind == ProblemKind::UnsignedCommit
                    && p.source.contains(&repo)
                    && p.ref_name.as_deref() == Some(app.as_str())),
            "{what}: no refusal of the commit on {repo}:\n{problems:#?}"
        );
    }
}

#[test]
fn a_drive_of_oversized_commits_costs_the_hook_and_a_listing_under_64_mib() {
    let env = HookEnv::new("");
    let fixture = FlatpakFixture::new(&env.dir.path().join("flatpak")).unwrap();
    let (drive, commits) = hostile_drive(env.dir.path(), &fixture);

    let mut hook = env.command();
    hook.envs(fixture.client.vars()).arg("--mount").arg(&drive);
    let (output, hook_kib) = run_measuring_memory(&hook, env.dir.path()).unwrap();
    assert!(
        hook_kib <= PEAK_RSS_LIMIT_KIB,
        "ferry-hook --mount peaked at {hook_kib} KiB"
    );
    assert!(output.status.success(), "{}", output_text(&output));
    let records = env.records();
    assert_eq!(records.len(), 1, "{}", output_text(&output));
    let record = &records[0];
    assert!(record.updates.is_empty(), "{:#?}", record.updates);
    assert!(env.sideload_links().is_empty());
    refused_every(&record.problems, &drive, "ferry-hook");
    let oversized = commits.last().unwrap();
    assert!(
        record
            .problems
            .iter()
            .any(|p| p.reason.contains("bytes allowed")),
        "the oversized commit {oversized} is not refused for its size: {:#?}",
        record.problems
    );

    let mut list = Command::new(ferry_tests::bins::binary("ferryctl").unwrap());
    list.envs(fixture.client.vars())
        .env("FERRY_RUN_DIR", env.dir.path().join("list-run"))
        .env("FERRY_LOG", "warn,pgp=error")
        .args(["list", "--offline", "--json", "--from"])
        .arg(&drive);
    let (output, list_kib) = run_measuring_memory(&list, env.dir.path()).unwrap();
    assert!(
        list_kib <= PEAK_RSS_LIMIT_KIB,
        "ferryctl list peaked at {list_kib} KiB"
    );
    assert!(output.status.success(), "{}", output_text(&output));
    let listing: UpdateList = serde_json::from_slice(&output.stdout).unwrap();
    assert!(listing.updates.is_empty(), "{:#?}", listing.updates);
    refused_every(&listing.problems, &drive, "ferryctl list");

    eprintln!("peak memory: ferry-hook {hook_kib} KiB, ferryctl list {list_kib} KiB");
}
