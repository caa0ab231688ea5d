//! GPG trust: keys, signatures and policy checked against commits and summaries made by real
//! `gpg` and `ostree`. Where libostree should reach the same answer, the test asks it too.

mod trust_support;

use std::fs;

use ferry_engine::schema::ProblemKind;
use ferry_engine::trust::{
    Destination, Rejection, RemotePolicy, SignatureKind, Signer, SummaryVerdict, TrustError,
    Verdict,
};
use trust_support::{import, refusal, run, verify, ExportTo, World, PUBLISHER};

fn untrusted(err: &TrustError) -> &Rejection {
    match err {
        TrustError::Untrusted { rejection, .. } => rejection,
        other => panic!("expected an untrusted-signature refusal, got {other}"),
    }
}

#[test]
fn signed_by_trusted_key_is_accepted() {
    let world = World::new();
    let commit = world.commit_by(&world.publisher, "v1");
    assert!(
        world
            .client
            .repo
            .path
            .join("origin.trustedkeys.gpg")
            .is_file(),
        "ostree remote add --gpg-import writes <repo>/<remote>.trustedkeys.gpg"
    );

    let verdict = verify(&world.origin(), &world.server, &commit).expect("accepted");
    let Verdict::Signed { signers } = verdict else {
        panic!("a signed verdict")
    };
    match signers.as_slice() {
        [Signer::Gpg(signer)] => {
            assert_eq!(signer.primary_fingerprint, world.publisher.fingerprint);
            assert_eq!(signer.user_id.as_deref(), Some(PUBLISHER));
        }
        other => panic!("one GPG signer expected, got {other:?}"),
    }
    assert!(world.libostree_accepts("origin"));
}

#[test]
fn signed_by_unknown_key_is_refused() {
    let world = World::new();
    let stranger = world.signing_key("stranger", "Stranger <s@example.org>");
    let commit = world.commit_by(&stranger, "evil");

    let err = refusal(verify(&world.origin(), &world.server, &commit));
    assert_eq!(err.problem_kind(), ProblemKind::UntrustedSignature);
    assert!(matches!(untrusted(&err), Rejection::UnknownKey { .. }));
    let message = err.to_string();
    let expected = format!(
        "commit {}… on {} is signed by key 0x{}, which remote 'origin' does not trust",
        commit.short(),
        world.server.path.display(),
        stranger.fingerprint
    );
    assert!(message.starts_with(&expected), "{message}");
    assert!(!world.libostree_accepts("origin"));
}

#[test]
fn unsigned_commit_is_refused_when_remote_requires_signatures() {
    let world = World::new();
    let commit = world.server.commit("os/x86_64/stable", "unsigned", &[]);

    let err = refusal(verify(&world.origin(), &world.server, &commit));
    assert_eq!(err.problem_kind(), ProblemKind::UnsignedCommit);
    assert!(matches!(
        err,
        TrustError::Unsigned {
            kind: SignatureKind::Gpg,
            ..
        }
    ));
    assert!(err
        .to_string()
        .contains("has no GPG signature, but remote 'origin' requires one (gpg-verify)"));
    assert!(!world.libostree_accepts("origin"));
}

#[test]
fn expired_trusted_key_is_refused() {
    let world = World::new();
    // Made and used on 2020-01-01 with a one-day lifetime: expired long before now. The `!`
    // freezes gpg's clock there, so a slow key generation cannot date the key after the
    // signature that a later gpg process makes.
    let old = world.key(
        "old",
        "Old <old@example.org>",
        "ed25519",
        "sign",
        "1d",
        &["faked-system-time 20200101T000000!"],
    );
    let commit = world.commit_by(&old, "old");

    let err = refusal(world.verify_as("old", &old, &commit));
    assert!(
        matches!(untrusted(&err), Rejection::KeyExpired { key, .. } if key.contains(&old.fingerprint)),
        "{err}"
    );
    assert!(
        err.to_string().contains("which expired on 2020-01-02"),
        "{err}"
    );
    assert!(!world.libostree_accepts("old"));
}

#[test]
fn expired_signature_is_refused() {
    let world = World::new();
    let signer = world.key(
        "sigexp",
        "Short Sigs <short@example.org>",
        "ed25519",
        "sign",
        "never",
        &[
            "faked-system-time 20200101T000000!",
            "default-sig-expire 1d",
        ],
    );
    let commit = world.commit_by(&signer, "sig");

    let err = refusal(world.verify_as("sigexp", &signer, &commit));
    assert!(
        matches!(untrusted(&err), Rejection::SignatureExpired { .. }),
        "{err}"
    );
    assert!(!world.libostree_accepts("sigexp"));
}

#[test]
fn revoked_signing_subkey_is_refused() {
    let world = World::new();
    let (key, subkey) = world.key_signing_with_subkey("sub", "Sub <sub@example.org>");
    let commit = world.commit_by(&key, "sub");

    // Before the revocation the subkey's signature counts.
    let before = world.trust("before", &key);
    let Verdict::Signed { signers } = verify(&before, &world.server, &commit).expect("accepted")
    else {
        panic!("signed")
    };
    assert!(matches!(&signers[0], Signer::Gpg(s) if s.signing_fingerprint == subkey));

    key.edit_key(&["key 1", "revkey", "y", "0", "", "y", "save"])
        .expect("gpg --edit-key");
    let after = world.trust("after", &key);
    let err = refusal(verify(&after, &world.server, &commit));
    assert!(
        matches!(untrusted(&err), Rejection::KeyRevoked { key, .. } if key.starts_with(&format!("subkey 0x{subkey}"))),
        "{err}"
    );
    assert!(err.to_string().contains("which has been revoked"), "{err}");
    assert!(!world.libostree_accepts("after"));
}

#[test]
fn revoked_primary_key_is_refused() {
    let world = World::new();
    let key = world.signing_key("rev", "Revoked <rev@example.org>");
    let commit = world.commit_by(&key, "rev");
    key.revoke().expect("revoke the key");

    let err = refusal(world.verify_as("rev", &key, &commit));
    assert!(
        matches!(untrusted(&err), Rejection::KeyRevoked { .. }),
        "{err}"
    );
    assert!(!world.libostree_accepts("rev"));
}

#[test]
fn subkey_without_signing_flag_is_refused() {
    let world = World::new();
    // gpg will not sign with a subkey that lacks the sign flag, so the subkey signs first and
    // its owner then re-binds it for authentication only (`change-usage`): the newest binding
    // signature, which is what counts, no longer allows signing.
    let (key, subkey) = world.key_signing_with_subkey("usage", "Usage <usage@example.org>");
    let commit = world.commit_by(&key, "usage");
    key.edit_key(&["key 1", "change-usage", "S", "A", "Q", "save"])
        .expect("gpg --edit-key");
    let listing = run(key.command().args(["--list-keys", "--with-colons"]));
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("sub:") && l.split(':').nth(11) == Some("a")),
        "the subkey is now authentication-only:\n{listing}"
    );

    let err = refusal(world.verify_as("usage", &key, &commit));
    assert!(
        matches!(untrusted(&err), Rejection::NotForSigning { key } if key.contains(&subkey)),
        "{err}"
    );
    assert!(
        err.to_string().contains("which is not allowed to sign"),
        "{err}"
    );
    assert!(!world.libostree_accepts("usage"));
}

#[test]
fn sha1_signature_is_refused() {
    let world = World::new();
    let key = world.key(
        "sha1",
        "Old Hash <sha1@example.org>",
        "rsa2048",
        "sign",
        "never",
        &["digest-algo SHA1", "personal-digest-preferences SHA1"],
    );
    let commit = world.commit_by(&key, "sha1");

    let err = refusal(world.verify_as("sha1", &key, &commit));
    assert!(
        matches!(untrusted(&err), Rejection::WeakHash { hash, .. } if hash == "SHA1"),
        "{err}"
    );
    // The signature is otherwise good: libostree (with gpg 2.2) still takes it.
    assert!(world.libostree_accepts("sha1"));
}

#[test]
fn signature_over_a_different_commit_is_refused() {
    let world = World::new();
    let signed = world.commit_by(&world.publisher, "genuine");
    let forged = world.server.commit("os/x86_64/stable", "tampered", &[]);
    fs::copy(
        world.server.object_path(&signed, "commitmeta"),
        world.server.object_path(&forged, "commitmeta"),
    )
    .expect("signature copied onto the other commit");

    let err = refusal(verify(&world.origin(), &world.server, &forged));
    assert!(
        matches!(untrusted(&err), Rejection::BadSignature { .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("does not match its contents"),
        "{err}"
    );
    assert!(!world.libostree_accepts("origin"));
}

#[test]
fn signature_from_the_future_is_refused() {
    let world = World::new();
    let key = world.signing_key("future", "Future <f@example.org>");
    key.set_conf(&["faked-system-time 20990101T000000"])
        .expect("gpg.conf");
    let commit = world.commit_by(&key, "future");
    key.set_conf(&[]).expect("gpg.conf");

    let err = refusal(world.verify_as("future", &key, &commit));
    assert!(
        matches!(untrusted(&err), Rejection::CreatedInFuture { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("2099-01-01"), "{err}");
    // Otherwise a good signature: libostree (gpgme) takes it, Ferry does not.
    assert!(world.libostree_accepts("future"));
}

#[test]
fn one_valid_signature_suffices() {
    let world = World::new();
    let stranger = world.signing_key("stranger", "Stranger <s@example.org>");
    let commit = world.commit_by(&stranger, "both");
    run(world
        .server
        .ostree()
        .arg("gpg-sign")
        .arg(ferry_tests::cmd::opt_path(
            "--gpg-homedir",
            &world.publisher.homedir,
        ))
        .arg(commit.to_hex())
        .arg(&world.publisher.fingerprint));

    let verdict = verify(&world.origin(), &world.server, &commit).expect("accepted");
    assert!(verdict.is_signed());
}

#[test]
fn keyring_via_gpgkeypath_file_directory_and_list() {
    let world = World::new();
    let commit = world.commit_by(&world.publisher, "v1");
    let armored = world.publisher.export_armored(&world.path("publisher.asc"));
    let key_dir = world.path("keys.d");
    fs::create_dir_all(&key_dir).expect("key dir");
    world.publisher.export(&key_dir.join("publisher.gpg"));
    let other = world.signing_key("other", "Other <o@example.org>");
    let other_key = other.export_armored(&world.path("other.asc"));

    for (name, value) in [
        ("byfile", armored.display().to_string()),
        ("bydir", key_dir.display().to_string()),
        (
            "bylist",
            format!("{};{}", other_key.display(), armored.display()),
        ),
    ] {
        world.client.add_remote(
            name,
            &world.server.url(),
            &[format!("--set=gpgkeypath={value}")],
        );
        assert!(!world
            .client
            .repo
            .path
            .join(format!("{name}.trustedkeys.gpg"))
            .exists());
        let policy = world.client.policy(name, &world.roots).expect("policy");
        assert!(
            verify(&policy, &world.server, &commit)
                .expect("accepted")
                .is_signed(),
            "gpgkeypath={value}"
        );
        assert!(world
            .client
            .libostree_accepts(name, &world.server, "os/x86_64/stable"));
    }

    world.client.add_remote(
        "onlyother",
        &world.server.url(),
        &[format!("--set=gpgkeypath={}", other_key.display())],
    );
    let policy = world
        .client
        .policy("onlyother", &world.roots)
        .expect("policy");
    let err = refusal(verify(&policy, &world.server, &commit));
    assert!(matches!(untrusted(&err), Rejection::UnknownKey { .. }));

    world.client.add_remote(
        "missing",
        &world.server.url(),
        &[format!(
            "--set=gpgkeypath={}",
            world.path("nowhere.asc").display()
        )],
    );
    let err = world
        .client
        .policy("missing", &world.roots)
        .expect_err("a missing gpgkeypath is a configuration error");
    assert!(matches!(err, TrustError::Keys { .. }), "{err:?}");
    // The message names the remote; its cause the file, and why.
    let cause = std::error::Error::source(&err).expect("the key file's error is kept");
    assert!(cause.to_string().contains("nowhere.asc"), "{cause}");
    let line = ferry_engine::causes::text(&err);
    assert!(line.contains("No such file"), "{line}");
}

#[test]
fn keyring_in_remotes_config_dir_and_global_dir() {
    let world = World::new();
    let commit = world.commit_by(&world.publisher, "v1");
    world
        .client
        .add_remote("elsewhere", &world.server.url(), &[]);
    let config = world.client.remote_config("elsewhere");
    let plain = Destination::plain(&world.client.repo.path);

    // No keyring anywhere: nothing can vouch for the commit.
    let policy = RemotePolicy::load(&config, &plain, &world.roots).expect("policy");
    let err = refusal(verify(&policy, &world.server, &commit));
    assert!(
        matches!(
            err,
            TrustError::NoKeys {
                kind: SignatureKind::Gpg,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.problem_kind(), ProblemKind::UntrustedSignature);

    // <remotes.d>/<remote>.trustedkeys.gpg, as for /etc/ostree/remotes.d.
    let remotes_d = world.path("remotes.d");
    fs::create_dir_all(&remotes_d).expect("remotes.d");
    world
        .publisher
        .export(&remotes_d.join("elsewhere.trustedkeys.gpg"));
    let with_remotes_d = Destination {
        remotes_config_dir: Some(remotes_d.clone()),
        ..plain.clone()
    };
    let policy = RemotePolicy::load(&config, &with_remotes_d, &world.roots).expect("policy");
    assert!(verify(&policy, &world.server, &commit)
        .expect("accepted")
        .is_signed());

    // The global directory applies when the remote has no keyring of its own...
    world
        .publisher
        .export(&world.roots.global_gpg_keyring_dir.join("publisher.gpg"));
    let policy = RemotePolicy::load(&config, &plain, &world.roots).expect("policy");
    assert!(verify(&policy, &world.server, &commit)
        .expect("accepted")
        .is_signed());

    // ...and not when it has one, even one that trusts someone else.
    let other = world.signing_key("other", "Other <o@example.org>");
    other.export(&world.client.repo.path.join("elsewhere.trustedkeys.gpg"));
    let policy = RemotePolicy::load(&config, &plain, &world.roots).expect("policy");
    let err = refusal(verify(&policy, &world.server, &commit));
    assert!(
        matches!(untrusted(&err), Rejection::UnknownKey { .. }),
        "{err}"
    );
}

#[test]
fn summary_signature_is_checked() {
    let world = World::new();
    world.commit_by(&world.publisher, "v1");
    run(world
        .server
        .ostree()
        .args(["summary", "-u"])
        .arg(format!("--gpg-sign={}", world.publisher.fingerprint))
        .arg(ferry_tests::cmd::opt_path(
            "--gpg-homedir",
            &world.publisher.homedir,
        )));
    let summary = fs::read(world.server.path.join("summary")).expect("summary");
    let summary_sig = fs::read(world.server.path.join("summary.sig")).expect("summary.sig");
    let location = world.server.path.display().to_string();

    // Without gpg-verify-summary the summary only locates commits.
    assert_eq!(
        world
            .origin()
            .verify_summary(&summary, Some(&summary_sig), &location)
            .expect("not checked"),
        SummaryVerdict::NotRequired
    );

    world.client.add_remote(
        "checked",
        &world.server.url(),
        &[
            import(&world.publisher.export(&world.path("publisher-again.gpg"))),
            "--set=gpg-verify-summary=true".to_owned(),
        ],
    );
    let policy = world
        .client
        .policy("checked", &world.roots)
        .expect("policy");
    assert!(matches!(
        policy.verify_summary(&summary, Some(&summary_sig), &location),
        Ok(SummaryVerdict::Signed { .. })
    ));
    // A drive's summary made by create-usb carries no signature: it only locates commits.
    assert_eq!(
        policy
            .verify_summary(&summary, None, &location)
            .expect("unsigned"),
        SummaryVerdict::Unsigned
    );

    let mut tampered = summary.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let err = policy
        .verify_summary(&tampered, Some(&summary_sig), &location)
        .expect_err("tampered summary");
    assert!(
        matches!(untrusted(&err), Rejection::BadSignature { .. }),
        "{err}"
    );
    assert!(err.to_string().starts_with("the summary on "), "{err}");

    let stranger = world.signing_key("stranger", "Stranger <s@example.org>");
    run(world
        .server
        .ostree()
        .args(["summary", "-u"])
        .args(stranger.sign_args()));
    let summary = fs::read(world.server.path.join("summary")).expect("summary");
    let summary_sig = fs::read(world.server.path.join("summary.sig")).expect("summary.sig");
    let err = policy
        .verify_summary(&summary, Some(&summary_sig), &location)
        .expect_err("summary signed by a stranger");
    assert!(
        matches!(untrusted(&err), Rejection::UnknownKey { .. }),
        "{err}"
    );
}

#[test]
fn subkey_bound_by_another_primary_is_refused() {
    let world = World::new();
    let (thief, stolen) = world.key_signing_with_subkey("thief", "Thief <t@example.org>");
    let commit = world.commit_by(&thief, "graft");

    // A keyring that claims the thief's signing subkey belongs to the trusted publisher. The
    // subkey's binding signature was made by the thief's primary key, so it binds nothing to
    // the publisher's.
    world.client.add_remote("grafted", &world.server.url(), &[]);
    world
        .publisher
        .graft_subkeys_of(
            &thief,
            &world.client.repo.path.join("grafted.trustedkeys.gpg"),
        )
        .expect("keyring written");

    let policy = world
        .client
        .policy("grafted", &world.roots)
        .expect("policy");
    let err = refusal(verify(&policy, &world.server, &commit));
    assert!(
        matches!(untrusted(&err), Rejection::SubkeyNotBound { key } if key.contains(&stolen)),
        "{err}"
    );
}

/// A signature rPGP cannot parse, and detached metadata that is not a dictionary: each
/// refusal says what could not be read, and the parser's error follows once as its cause.
#[test]
fn unreadable_signatures_keep_the_parser_error_as_the_cause() {
    use ferry_engine::object::metadata::GPG_SIGNATURES_KEY;
    use ferry_engine::object::{Metadata, MetadataValue};
    use ferry_engine::trust::CommitCandidate;
    use std::error::Error;

    let world = World::new();
    let commit = world.commit_by(&world.publisher, "v1");
    let bytes = world.server.commit_bytes(&commit);
    let mut junk = Metadata::new();
    junk.insert(
        GPG_SIGNATURES_KEY,
        MetadataValue::byte_arrays(&[vec![0x88u8, 0x05, 0x00, 0x01]]),
    )
    .expect("insert");
    let junk = junk.to_bytes().expect("serialises");
    let not_a_dictionary = vec![0xffu8; 7];
    for (detached, says) in [
        (junk, "carries a signature Ferry cannot read"),
        (not_a_dictionary, "its detached metadata cannot be read"),
    ] {
        let err = world
            .origin()
            .verify_commit(&CommitCandidate {
                checksum: commit,
                commit: &bytes,
                detached_metadata: Some(&detached),
                source: "/media/stick",
            })
            .expect_err("refused");
        let message = err.to_string();
        assert!(message.contains(says), "{message}");
        let cause = err.source().expect("the parser's error is the cause");
        let cause = cause.to_string();
        assert!(!message.contains(&cause), "{message} repeats {cause}");
        let line = ferry_engine::causes::text(&err);
        assert_eq!(line.matches(&cause).count(), 1, "{line}");
    }
}
