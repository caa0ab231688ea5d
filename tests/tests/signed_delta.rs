//! Signed static deltas: a superblock wrapped in libostree's signed-delta format
//! (`OSTREE_STATIC_DELTA_SIGNED_FORMAT`, `(taya{sv})`: the magic `OSTSGNDT`, the superblock's
//! bytes, and `ostree.sign.ed25519` signatures of them), as `ostree static-delta generate
//! --sign-type=ed25519 --sign=KEY` writes it. The ostree here (Debian's 2022.7) is built
//! without ed25519 signing ("Requested signature type is not implemented"), so the delta is
//! made by `ostree static-delta generate` and its superblock wrapped and signed here as
//! libostree's `ostree_repo_static_delta_generate` does; `ostree static-delta show` reads the
//! result as signed. The pull takes the superblock inside; the commit in it is verified as
//! before, and a wrapper whose body is cut or altered is refused for objects.

mod pull_support;

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use ed25519_dalek::SigningKey;
use ferry_engine::event::MessageLevel;
use ferry_tests::lan::{ServeOptions, ServeProcess};
use pull_support::delta_signing::{
    delta_messages, expect_delta_applied, sign_superblock, superblock_path,
};
use pull_support::{pull_remote, remote_ref, trust_root, DeltaUpdate, BRANCH};
use tempfile::TempDir;

/// A publisher at 1.0, a destination that installed it, and 2.0 committed with a delta from
/// 1.0 whose superblock is signed.
struct SignedUpdate {
    delta: DeltaUpdate,
    superblock: PathBuf,
}

impl std::ops::Deref for SignedUpdate {
    type Target = DeltaUpdate;

    fn deref(&self) -> &DeltaUpdate {
        &self.delta
    }
}

impl SignedUpdate {
    fn new(base: &Path) -> Result<Self> {
        let delta = DeltaUpdate::new(base)?;
        let publisher = &delta.publisher;
        let superblock = superblock_path(&publisher.repo.path)?;
        sign_superblock(&superblock, &SigningKey::from_bytes(&[5u8; 32]))?;
        let shown = publisher
            .repo
            .ostree()
            .args(["static-delta", "show"])
            .arg(format!("{}-{}", publisher.commit, delta.v2))
            .stdout()?;
        ensure!(
            shown.contains("Signed: yes"),
            "ostree does not read the superblock as signed:\n{shown}"
        );
        // The summary lists the checksum of the signed file, as `ostree summary -u` computes it.
        publisher.repo.update_summary(Some(&publisher.key))?;
        Ok(Self { delta, superblock })
    }

    fn check_installed(&self) -> Result<()> {
        ensure!(self.dest.read_ref(&remote_ref(BRANCH))? == Some(self.v2.clone()));
        self.dest.fsck()?;
        Ok(())
    }
}

/// A drive (an archive repository in a folder) whose delta's superblock is signed: the delta
/// is applied, and since the drive no longer holds 2.0's new content objects, nothing else
/// could have brought them.
#[test]
fn signed_delta_on_a_drive_is_applied() -> Result<()> {
    let tmp = TempDir::new()?;
    let base = tmp.path();
    let update = SignedUpdate::new(base)?;
    update.leave_only_the_delta()?;
    let run = update.pull_into(base, &update.dest, None)?;
    expect_delta_applied(&run)
}

/// The same delta over HTTP from `ferryctl serve`: the superblock and its part are fetched,
/// and no content object is asked for.
#[test]
fn signed_delta_served_by_ferryctl_serve_is_applied() -> Result<()> {
    let tmp = TempDir::new()?;
    let base = tmp.path();
    let update = SignedUpdate::new(base)?;
    update.leave_only_the_delta()?;
    let repo = update.publisher.repo.path.as_os_str();
    let args = [
        OsStr::new("--repo"),
        repo,
        OsStr::new("--address"),
        OsStr::new("127.0.0.1"),
        OsStr::new("--port"),
        OsStr::new("0"),
        OsStr::new("--no-advertise"),
    ];
    let mut server = ServeProcess::start(&ServeOptions::default(), &args, &base.join("serve.log"))?;
    let run = pull_remote(&trust_root(base), &update.dest.path, &server.url, &[BRANCH])?
        .require_success()?;
    expect_delta_applied(&run)?;
    update.check_installed()?;
    let log = server.log_text();
    ensure!(
        log.contains("/superblock") && !log.contains(".filez"),
        "requests:\n{log}"
    );
    server.terminate()?;
    Ok(())
}

/// Signed wrappers whose body is cut short or whose commit inside was altered, listed in a
/// summary re-signed over them (so the listing's checksum matches and the wrapper itself is
/// what is judged): each is refused with a warning and the pull completes from objects.
#[test]
fn signed_superblock_with_a_bad_body_is_refused_for_objects() -> Result<()> {
    let tmp = TempDir::new()?;
    let base = tmp.path();
    let update = SignedUpdate::new(base)?;
    let signed = fs::read(&update.superblock)?;
    let commit = fs::read(update.publisher.repo.path.join(format!(
        "objects/{}/{}.commit",
        &update.v2[..2],
        &update.v2[2..]
    )))?;
    let commit_at = signed
        .windows(commit.len())
        .position(|window| window == commit.as_slice())
        .context("the commit is not inside the signed superblock")?;
    let mut altered = signed.clone();
    altered[commit_at + commit.len() / 2] ^= 0xff;
    let truncated = signed[..signed.len() / 2].to_vec();

    for (name, bytes, expected) in [
        ("altered", altered, "hashes to"),
        ("truncated", truncated, "malformed"),
    ] {
        fs::write(&update.superblock, &bytes)?;
        update
            .publisher
            .repo
            .update_summary(Some(&update.publisher.key))?;
        // A destination at 1.0 of its own for each.
        let dest = update.copy_of_dest(&base.join(format!("dest-{name}")))?;
        let run = update.pull_into(base, &dest, None)?;
        let warnings = delta_messages(&run, MessageLevel::Warning);
        ensure!(
            warnings.iter().any(|w| w.contains(expected)),
            "{name}: no warning saying {expected:?}: {warnings:?}"
        );
    }
    Ok(())
}
