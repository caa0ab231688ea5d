//! Static delta signatures checked as a remote asks: with `sign-verify-deltas=true`, a
//! superblock must carry an `ostree.sign.ed25519` signature, over the superblock's bytes, by
//! one of the remote's ed25519 keys; one unsigned or signed by another key is dropped with a
//! warning and the objects are fetched instead. Without the option the signatures are not
//! looked at. Superblocks are signed here as `ostree static-delta generate --sign` signs them
//! (see `pull_support::delta_signing`).

mod pull_support;

use anyhow::{ensure, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::SigningKey;
use ferry_engine::event::MessageLevel;
use ferry_tests::ostree::OstreeRepo;
use pull_support::delta_signing::{
    delta_messages, expect_delta_applied, sign_superblock, superblock_path, was_applied,
};
use pull_support::{DeltaUpdate, REMOTE};
use tempfile::TempDir;

/// The key the destination's remote trusts.
fn trusted_key() -> SigningKey {
    SigningKey::from_bytes(&[5u8; 32])
}

/// A key the destination knows nothing of.
fn other_key() -> SigningKey {
    SigningKey::from_bytes(&[6u8; 32])
}

/// Sets `verification-ed25519-key` to the trusted key on the destination's remote, and
/// `sign-verify-deltas=true` when `verify_deltas`.
fn configure_remote(dest: &OstreeRepo, verify_deltas: bool) -> Result<()> {
    let public = STANDARD.encode(trusted_key().verifying_key().as_bytes());
    dest.config_set(
        &format!("remote \"{REMOTE}\".verification-ed25519-key"),
        &public,
    )?;
    if verify_deltas {
        dest.config_set(&format!("remote \"{REMOTE}\".sign-verify-deltas"), "true")?;
    }
    Ok(())
}

/// Signs the publisher's delta with `key` and lists it in a re-signed summary.
fn sign_delta(update: &DeltaUpdate, key: &SigningKey) -> Result<()> {
    let publisher = &update.publisher;
    sign_superblock(&superblock_path(&publisher.repo.path)?, key)?;
    publisher.repo.update_summary(Some(&publisher.key))?;
    Ok(())
}

/// A delta signed by `key`, pulled by a destination whose remote trusts [`trusted_key`] and
/// sets `sign-verify-deltas` when `verify_deltas`, must be applied; the source no longer
/// holds 2.0's new content objects, so only the delta can have brought them.
fn expect_signed_delta_applied(key: &SigningKey, verify_deltas: bool) -> Result<()> {
    let tmp = TempDir::new()?;
    let base = tmp.path();
    let update = DeltaUpdate::new(base)?;
    sign_delta(&update, key)?;
    configure_remote(&update.dest, verify_deltas)?;
    update.leave_only_the_delta()?;
    let run = update.pull_into(base, &update.dest, None)?;
    expect_delta_applied(&run)
}

/// A delta signed by the remote's key is applied.
#[test]
fn delta_signed_by_the_remotes_key_is_applied() -> Result<()> {
    expect_signed_delta_applied(&trusted_key(), true)
}

/// An unsigned delta, then one signed by a key the remote does not trust: each is refused
/// with a warning saying why, and the pull completes from objects (the source keeps them).
#[test]
fn unsigned_delta_and_delta_signed_by_another_key_are_refused_for_objects() -> Result<()> {
    let tmp = TempDir::new()?;
    let base = tmp.path();
    let update = DeltaUpdate::new(base)?;
    configure_remote(&update.dest, true)?;
    let publisher = &update.publisher;
    publisher.repo.update_summary(Some(&publisher.key))?;
    let signed_by_other = |update: &DeltaUpdate| sign_delta(update, &other_key());

    for (name, prepare, expected) in [
        (
            "unsigned",
            None,
            "has no ed25519 signature, but remote 'origin' requires one (sign-verify-deltas)",
        ),
        (
            "other-key",
            Some(&signed_by_other),
            "has no ed25519 signature from a key remote 'origin' trusts",
        ),
    ] {
        if let Some(prepare) = prepare {
            prepare(&update)?;
        }
        let dest = update.copy_of_dest(&base.join(format!("dest-{name}")))?;
        let run = update.pull_into(base, &dest, None)?;
        let warnings = delta_messages(&run, MessageLevel::Warning);
        ensure!(
            warnings
                .iter()
                .any(|w| w.contains(expected) && w.contains("fetching objects instead")),
            "{name}: no warning saying {expected:?}: {warnings:?}"
        );
        ensure!(!was_applied(&run), "{name}: the delta was applied");
    }
    Ok(())
}

/// Without `sign-verify-deltas` (the remote's ed25519 key alone does not turn it on), a
/// delta signed by another key is applied as before: its signatures are not looked at.
#[test]
fn delta_signed_by_another_key_is_applied_without_the_option() -> Result<()> {
    expect_signed_delta_applied(&other_key(), false)
}
