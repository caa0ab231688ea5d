//! ed25519 trust. Debian's ostree cannot sign with ed25519, so the tests sign real ostree
//! commits and summaries with ed25519-dalek and write `ostree.sign.ed25519` in libostree's
//! exact detached-metadata format, which `ostree show` then reads back.

mod trust_support;

use std::fs;
use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey};
use ferry_engine::object::Checksum;
use ferry_engine::schema::ProblemKind;
use ferry_engine::trust::{
    DetachedSignatures, Rejection, RemotePolicy, SignatureKind, Signer, SummaryVerdict, TrustError,
    Verdict,
};
use gvariant::{gv, Marker, VariantWrap};
use trust_support::{refusal, run, verify, ServerRepo, World};

const STABLE: &str = "os/x86_64/stable";

fn new_key() -> SigningKey {
    SigningKey::from_bytes(&rand::random::<[u8; 32]>())
}

fn public_b64(key: &SigningKey) -> String {
    STANDARD.encode(key.verifying_key().as_bytes())
}

/// Serialises detached metadata `a{sv}` as libostree writes it.
fn detached_metadata(gpg: &[Vec<u8>], ed25519: &[Vec<u8>]) -> Vec<u8> {
    let aay = gv!("aay");
    let mut entries = Vec::new();
    if !gpg.is_empty() {
        entries.push(("ostree.gpgsigs", VariantWrap(aay, gpg)));
    }
    if !ed25519.is_empty() {
        entries.push(("ostree.sign.ed25519", VariantWrap(aay, ed25519)));
    }
    gv!("a{sv}").serialize_to_vec(&entries)
}

/// Adds ed25519 signatures by `keys` to the commit's detached metadata, keeping its GPG
/// signatures, and checks libostree reads back exactly what was written.
fn sign_commit(repo: &ServerRepo, commit: &Checksum, keys: &[&SigningKey]) {
    let bytes = repo.commit_bytes(commit);
    let existing = DetachedSignatures::parse_optional(repo.commitmeta_bytes(commit).as_deref())
        .expect("existing metadata parses");
    let signatures: Vec<Vec<u8>> = keys
        .iter()
        .map(|key| key.sign(&bytes).to_bytes().to_vec())
        .collect();
    let meta = detached_metadata(&existing.gpg.unwrap_or_default(), &signatures);
    fs::write(repo.object_path(commit, "commitmeta"), meta).expect("commitmeta written");

    let shown = run(repo
        .ostree()
        .args(["show", "--print-detached-metadata-key=ostree.sign.ed25519"])
        .arg(commit.to_hex()));
    assert_eq!(
        bytes_in(&shown),
        signatures.concat(),
        "ostree reads the signatures Ferry's tests wrote"
    );
}

/// The bytes in `ostree show`'s GVariant text of an `aay`. Each `ay` prints as a list
/// (`[byte 0x12, 0x34]`), or, when it ends in its only zero byte, as a `g_strescape`d byte
/// string (`b'...'`) whose terminating zero is implied.
fn bytes_in(text: &str) -> Vec<u8> {
    let chars: Vec<char> = text.chars().collect();
    let mut bytes = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match (chars[i], chars.get(i + 1).copied()) {
            ('0', Some('x')) => {
                let hex: String = chars[i + 2..i + 4].iter().collect();
                bytes.push(u8::from_str_radix(&hex, 16).expect("a hex byte"));
                i += 4;
            }
            ('b', Some(quote @ ('\'' | '"'))) => {
                i += 2;
                while chars[i] != quote {
                    if chars[i] != '\\' {
                        bytes.push(u8::try_from(chars[i]).expect("ASCII"));
                        i += 1;
                        continue;
                    }
                    let escaped = chars[i + 1];
                    i += 2;
                    let byte = match escaped {
                        'b' => 8,
                        'f' => 12,
                        'n' => 10,
                        'r' => 13,
                        't' => 9,
                        'v' => 11,
                        '0'..='7' => {
                            let mut value = escaped.to_digit(8).expect("octal");
                            for _ in 0..2 {
                                if let Some(digit) = chars.get(i).and_then(|c| c.to_digit(8)) {
                                    value = value * 8 + digit;
                                    i += 1;
                                }
                            }
                            u8::try_from(value).expect("an octal byte")
                        }
                        other => u8::try_from(other).expect("ASCII"),
                    };
                    bytes.push(byte);
                }
                bytes.push(0);
                i += 1;
            }
            _ => i += 1,
        }
    }
    bytes
}

#[test]
fn reads_both_ways_gvariant_prints_byte_arrays() {
    // As GLib prints `[b"a\\\x01\n\xff\0", b"'\0", b"\x01\x02"]` typed `aay`.
    assert_eq!(
        bytes_in(r#"[b'a\\\001\n\377', b"'", [byte 0x01, 0x02]]"#),
        vec![b'a', b'\\', 1, b'\n', 0xff, 0, b'\'', 0, 1, 2]
    );
}

fn add_ed25519_remote(world: &World, name: &str, options: &[&str]) {
    let args: Vec<String> = options.iter().map(|o| format!("--set={o}")).collect();
    world.client.add_remote(name, &world.server.url(), &args);
}

/// Adds remote `name` with `options` and loads its policy.
fn ed25519_policy(world: &World, name: &str, options: &[&str]) -> RemotePolicy {
    add_ed25519_remote(world, name, options);
    world.client.policy(name, &world.roots).expect("policy")
}

/// The remote option trusting `key`.
fn key_option(key: &SigningKey) -> String {
    format!("verification-ed25519-key={}", public_b64(key))
}

fn untrusted(err: &TrustError) -> &Rejection {
    match err {
        TrustError::Untrusted { rejection, .. } => rejection,
        other => panic!("expected an untrusted-signature refusal, got {other}"),
    }
}

#[test]
fn accepted_key_is_accepted_and_revoked_key_is_refused() {
    let world = World::new();
    let key = new_key();
    let commit = world.server.commit(STABLE, "ed", &[]);
    sign_commit(&world.server, &commit, &[&key]);
    let policy = ed25519_policy(
        &world,
        "ed",
        &["gpg-verify=false", "sign-verify=true", &key_option(&key)],
    );
    let verdict = verify(&policy, &world.server, &commit).expect("accepted");
    assert_eq!(
        verdict,
        Verdict::Signed {
            signers: vec![Signer::Ed25519(public_b64(&key))]
        }
    );

    let revoked = world.roots.ed25519_dirs[0].join("revoked.ed25519");
    fs::write(&revoked, format!("{}\n", public_b64(&key))).expect("revoked list");
    let policy = world.client.policy("ed", &world.roots).expect("policy");
    let err = refusal(verify(&policy, &world.server, &commit));
    assert_eq!(err.problem_kind(), ProblemKind::UntrustedSignature);
    assert!(
        matches!(untrusted(&err), Rejection::Ed25519Revoked { key: k } if *k == public_b64(&key)),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("which this machine lists as revoked"),
        "{err}"
    );
}

#[test]
fn system_keys_apply_only_when_the_remote_names_none() {
    let world = World::new();
    let key = new_key();
    let commit = world.server.commit(STABLE, "ed", &[]);
    sign_commit(&world.server, &commit, &[&key]);
    let policy = ed25519_policy(&world, "sys", &["gpg-verify=false", "sign-verify=true"]);

    let err = refusal(verify(&policy, &world.server, &commit));
    assert!(
        matches!(
            err,
            TrustError::NoKeys {
                kind: SignatureKind::Ed25519,
                ..
            }
        ),
        "{err}"
    );

    let trusted_d = world.roots.ed25519_dirs[1].join("trusted.ed25519.d");
    fs::create_dir_all(&trusted_d).expect("trusted.ed25519.d");
    fs::write(
        trusted_d.join("publisher"),
        format!("# publisher\n\n{}\n", public_b64(&key)),
    )
    .expect("key file");
    let policy = world.client.policy("sys", &world.roots).expect("policy");
    assert!(verify(&policy, &world.server, &commit)
        .expect("accepted")
        .is_signed());

    // A remote with its own key ignores the system directories.
    let other = new_key();
    let policy = ed25519_policy(
        &world,
        "own",
        &[
            "gpg-verify=false",
            "sign-verify=ed25519",
            &key_option(&other),
        ],
    );
    let err = refusal(verify(&policy, &world.server, &commit));
    assert!(
        matches!(
            untrusted(&err),
            Rejection::Ed25519NoMatch {
                signatures: 1,
                keys: 1
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("has no ed25519 signature from a key remote 'own' trusts"),
        "{err}"
    );

    // verification-ed25519-file: one key per line.
    let key_file = world.path("ed25519.pub");
    fs::write(
        &key_file,
        format!("{}\n{}\n", public_b64(&other), public_b64(&key)),
    )
    .expect("key file");
    let file_option = format!("verification-ed25519-file={}", key_file.display());
    let policy = ed25519_policy(
        &world,
        "file",
        &["gpg-verify=false", "sign-verify=ed25519", &file_option],
    );
    assert!(verify(&policy, &world.server, &commit)
        .expect("accepted")
        .is_signed());

    let missing = format!(
        "verification-ed25519-file={}",
        world.path("none.pub").display()
    );
    add_ed25519_remote(
        &world,
        "missing",
        &["gpg-verify=false", "sign-verify=true", &missing],
    );
    assert!(matches!(
        world.client.policy("missing", &world.roots),
        Err(TrustError::Keys { .. })
    ));
}

#[test]
fn gpg_and_ed25519_are_both_required_when_both_are_on() {
    let world = World::new();
    let key = new_key();
    add_ed25519_remote(&world, "both", &["sign-verify=true", &key_option(&key)]);
    fs::copy(
        world.client.repo.path.join("origin.trustedkeys.gpg"),
        world.client.repo.path.join("both.trustedkeys.gpg"),
    )
    .expect("keyring");
    let policy = world.client.policy("both", &world.roots).expect("policy");

    let gpg_only = world
        .server
        .commit_signed(STABLE, "gpg only", &world.publisher, &[]);
    let err = refusal(verify(&policy, &world.server, &gpg_only));
    assert!(
        matches!(
            err,
            TrustError::Unsigned {
                kind: SignatureKind::Ed25519,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.problem_kind(), ProblemKind::UnsignedCommit);

    sign_commit(&world.server, &gpg_only, &[&key]);
    let Verdict::Signed { signers } = verify(&policy, &world.server, &gpg_only).expect("both")
    else {
        panic!("signed")
    };
    assert!(matches!(
        signers.as_slice(),
        [Signer::Gpg(_), Signer::Ed25519(_)]
    ));
}

#[test]
fn malformed_signatures_are_refused() {
    let world = World::new();
    let key = new_key();
    let commit = world.server.commit(STABLE, "short", &[]);
    fs::write(
        world.server.object_path(&commit, "commitmeta"),
        detached_metadata(&[], &[vec![0u8; 63]]),
    )
    .expect("commitmeta");
    let policy = ed25519_policy(
        &world,
        "ed",
        &["gpg-verify=false", "sign-verify=true", &key_option(&key)],
    );
    let err = refusal(verify(&policy, &world.server, &commit));
    assert!(err.to_string().contains("63 bytes instead of 64"), "{err}");
}

#[test]
fn summary_signature_is_checked() {
    let world = World::new();
    let key = new_key();
    world.server.commit(STABLE, "v1", &[]);
    run(world.server.ostree().args(["summary", "-u"]));
    let summary = fs::read(world.server.path.join("summary")).expect("summary");
    let write_sig = |path: &Path, data: &[u8]| {
        let signature = key.sign(data).to_bytes().to_vec();
        fs::write(path, detached_metadata(&[], &[signature])).expect("summary.sig");
    };
    let sig_path = world.server.path.join("summary.sig");
    write_sig(&sig_path, &summary);
    let summary_sig = fs::read(&sig_path).expect("summary.sig");
    let policy = ed25519_policy(
        &world,
        "ed",
        &[
            "gpg-verify=false",
            "sign-verify-summary=true",
            &key_option(&key),
        ],
    );
    let location = world.server.path.display().to_string();

    assert!(matches!(
        policy.verify_summary(&summary, Some(&summary_sig), &location),
        Ok(SummaryVerdict::Signed { .. })
    ));
    let mut altered = summary.clone();
    altered[0] ^= 1;
    let err = policy
        .verify_summary(&altered, Some(&summary_sig), &location)
        .expect_err("altered summary");
    assert!(
        matches!(untrusted(&err), Rejection::Ed25519NoMatch { .. }),
        "{err}"
    );
}
