//! Remote policy, bindings, anti-downgrade and verdict caching, with commits made by real
//! `ostree` and signed by real `gpg`.

mod trust_support;

use ferry_engine::object::Checksum;
use ferry_engine::schema::{ProblemKind, SourceInfo, SourceKind};
use ferry_engine::trust::{
    CommitCandidate, CommitFacts, InstalledCommit, RemotePolicy, RemoteTrustConfig, TrustError,
    UpdateKind, Verdict,
};
use trust_support::{import, verify, ExportTo, ServerRepo, World};

const STABLE: &str = "os/x86_64/stable";

fn check_for_ref(
    policy: &RemotePolicy,
    repo: &ServerRepo,
    commit: &Checksum,
    ref_name: &str,
    installed: Option<InstalledCommit>,
    allow_downgrade: bool,
) -> Result<ferry_engine::trust::Accepted, TrustError> {
    let bytes = repo.commit_bytes(commit);
    let meta = repo.commitmeta_bytes(commit);
    let location = repo.path.display().to_string();
    policy.check_commit_for_ref(
        &CommitCandidate {
            checksum: *commit,
            commit: &bytes,
            detached_metadata: meta.as_deref(),
            source: &location,
        },
        ref_name,
        installed,
        allow_downgrade,
    )
}

fn installed(repo: &ServerRepo, commit: &Checksum) -> InstalledCommit {
    let facts = CommitFacts::parse(&repo.commit_bytes(commit)).expect("commit parses");
    InstalledCommit {
        checksum: *commit,
        timestamp: facts.timestamp,
    }
}

#[test]
fn gpg_verify_false_gives_unsigned_verdict() {
    let world = World::new();
    world
        .client
        .add_remote("open", &world.server.url(), &["--no-gpg-verify".to_owned()]);
    let commit = world.server.commit(STABLE, "unsigned", &[]);

    let policy = world.client.policy("open", &world.roots).expect("policy");
    assert!(!policy.requires_signatures());
    let accepted = check_for_ref(&policy, &world.server, &commit, STABLE, None, false)
        .expect("an unverified remote still accepts, marked unsigned");
    assert_eq!(accepted.verdict, Verdict::Unsigned);
    assert!(!accepted.verdict.is_signed());
    assert_eq!(accepted.update, UpdateKind::New);
}

#[test]
fn collection_binding_naming_another_collection_is_refused() {
    let world = World::new();
    let other = ServerRepo::init(&world.path("other-server"), Some("org.other.Os"));
    let commit = other.commit_signed(STABLE, "other", &world.publisher, &[]);
    let policy = world.origin();

    // The signature is good: only the binding is wrong.
    assert!(verify(&policy, &other, &commit)
        .expect("signed")
        .is_signed());
    let err = check_for_ref(&policy, &other, &commit, STABLE, None, false)
        .expect_err("bound to another collection");
    assert_eq!(err.problem_kind(), ProblemKind::BindingMismatch);
    assert!(
        err.to_string().contains(
            "belongs to collection org.other.Os, but remote 'origin' has collection ID \
             org.example.Os"
        ),
        "{err}"
    );
}

#[test]
fn ref_binding_not_listing_the_ref_is_refused() {
    let world = World::new();
    let devel = world
        .server
        .commit_signed("os/x86_64/devel", "devel", &world.publisher, &[]);
    let policy = world.origin();

    assert!(check_for_ref(
        &policy,
        &world.server,
        &devel,
        "os/x86_64/devel",
        None,
        false
    )
    .is_ok());
    let err = check_for_ref(&policy, &world.server, &devel, STABLE, None, false)
        .expect_err("offered under another ref");
    assert_eq!(err.problem_kind(), ProblemKind::BindingMismatch);
    assert!(
        err.to_string()
            .contains("is bound to os/x86_64/devel, but it is offered as os/x86_64/stable"),
        "{err}"
    );

    // Without bindings, a remote with a collection ID refuses; one without accepts.
    let unbound = world.server.commit_signed(
        STABLE,
        "unbound",
        &world.publisher,
        &["--no-bindings".to_owned()],
    );
    let err = check_for_ref(&policy, &world.server, &unbound, STABLE, None, false)
        .expect_err("a collection remote requires bindings");
    assert!(
        matches!(err, TrustError::RefBinding { bound: None, .. }),
        "{err}"
    );
    world.client.add_remote(
        "nocollection",
        &world.server.url(),
        &[import(&world.publisher.export(&world.path("nc.gpg")))],
    );
    let plain = world
        .client
        .policy("nocollection", &world.roots)
        .expect("policy");
    assert!(check_for_ref(&plain, &world.server, &unbound, STABLE, None, false).is_ok());
}

#[test]
fn older_commit_is_refused_and_accepted_with_allow_downgrade() {
    let world = World::new();
    let signed_at = |when: &str| vec![format!("--timestamp={when}")];
    let newer = world.server.commit_signed(
        STABLE,
        "march",
        &world.publisher,
        &signed_at("2024-03-04T00:00:00Z"),
    );
    let older = world.server.commit_signed(
        STABLE,
        "january",
        &world.publisher,
        &signed_at("2024-01-02T00:00:00Z"),
    );
    let current = installed(&world.server, &newer);
    assert_eq!(current.timestamp, 1_709_510_400, "2024-03-04T00:00:00Z");
    let policy = world.origin();

    let err = check_for_ref(&policy, &world.server, &older, STABLE, Some(current), false)
        .expect_err("older than installed");
    assert_eq!(err.problem_kind(), ProblemKind::Downgrade);
    assert_eq!(
        err.to_string(),
        "update of os/x86_64/stable is older than the installed version (2024-01-02 < \
         2024-03-04); use --allow-downgrade to install it anyway"
    );

    let accepted = check_for_ref(&policy, &world.server, &older, STABLE, Some(current), true)
        .expect("allowed downgrade");
    assert_eq!(accepted.update, UpdateKind::Downgrade);
    assert_eq!(accepted.timestamp, 1_704_153_600);

    let same = check_for_ref(&policy, &world.server, &newer, STABLE, Some(current), false)
        .expect("the installed commit");
    assert_eq!(same.update, UpdateKind::UpToDate);
    assert!(!same.update.changes_ref());

    let back = installed(&world.server, &older);
    let upgrade =
        check_for_ref(&policy, &world.server, &newer, STABLE, Some(back), false).expect("newer");
    assert_eq!(upgrade.update, UpdateKind::Upgrade);
}

#[test]
fn accepted_verdicts_are_cached_and_refusals_are_not() {
    let world = World::new();
    let genuine = world
        .server
        .commit_signed(STABLE, "genuine", &world.publisher, &[]);
    let other = world
        .server
        .commit_signed(STABLE, "other", &world.publisher, &[]);
    let policy = world.origin();
    let bytes = world.server.commit_bytes(&genuine);
    let good_meta = world.server.commitmeta_bytes(&genuine).expect("commitmeta");
    let wrong_meta = world.server.commitmeta_bytes(&other).expect("commitmeta");
    fn candidate<'a>(
        checksum: Checksum,
        commit: &'a [u8],
        meta: Option<&'a [u8]>,
    ) -> CommitCandidate<'a> {
        CommitCandidate {
            checksum,
            commit,
            detached_metadata: meta,
            source: "/media/stick",
        }
    }

    // A source offering a bad signature does not spoil the commit for a better source.
    assert!(policy
        .verify_commit(&candidate(genuine, &bytes, Some(&wrong_meta)))
        .is_err());
    assert_eq!(policy.cached_verdict(&genuine), None);
    let verdict = policy
        .verify_commit(&candidate(genuine, &bytes, Some(&good_meta)))
        .expect("accepted");
    assert_eq!(policy.cached_verdict(&genuine), Some(verdict.clone()));
    // Verified once: later checks of the same checksum reuse the verdict.
    assert_eq!(
        policy
            .verify_commit(&candidate(genuine, &bytes, None))
            .expect("cached"),
        verdict
    );
}

#[test]
fn bytes_that_do_not_match_their_checksum_are_corrupt() {
    let world = World::new();
    let commit = world
        .server
        .commit_signed(STABLE, "v1", &world.publisher, &[]);
    let mut bytes = world.server.commit_bytes(&commit);
    bytes[0] ^= 1;
    let err = world
        .origin()
        .verify_commit(&CommitCandidate {
            checksum: commit,
            commit: &bytes,
            detached_metadata: None,
            source: "/media/stick",
        })
        .expect_err("altered bytes");
    assert_eq!(err.problem_kind(), ProblemKind::Corrupt);
    let stick = SourceInfo::new(SourceKind::Drive, "/media/stick", None);
    let problem = err.to_problem(&stick, Some(STABLE));
    assert_eq!(problem.origin.as_deref(), Some(&stick));
    assert_eq!(problem.kind, ProblemKind::Corrupt);
    assert_eq!(problem.ref_name.as_deref(), Some(STABLE));
    assert!(problem
        .reason
        .starts_with(&format!("commit {}… on /media/stick", commit.short())));
}

#[test]
fn unusable_configuration_is_reported() {
    let world = World::new();
    let load = |options: &[(&str, &str)]| {
        RemotePolicy::load(
            &RemoteTrustConfig::new("broken", options.iter().copied()),
            &ferry_engine::trust::Destination::plain(&world.client.repo.path),
            &world.roots,
        )
    };
    let err = load(&[("gpg-verify", "maybe")]).expect_err("not a boolean");
    assert_eq!(
        err.to_string(),
        "remote 'broken': gpg-verify=maybe is not a boolean (use true or false): fix the \
         remote's configuration"
    );
    assert!(matches!(
        load(&[("gpg-verify", "false"), ("sign-verify", "ed25519")]),
        Err(TrustError::Config { .. })
    ));
    assert!(matches!(
        load(&[("gpg-verify", "false"), ("sign-verify", "spki")]),
        Err(TrustError::Config { .. })
    ));
    assert!(matches!(
        load(&[
            ("gpg-verify", "false"),
            ("verification-ed25519-key", "x"),
            ("sign-verify", "true")
        ]),
        Err(TrustError::Keys { .. })
    ));
    let open = load(&[("gpg-verify", "false")]).expect("nothing to verify");
    assert!(!open.requires_signatures());
    assert!(load(&[])
        .expect("gpg-verify defaults to true")
        .requires_signatures());
}
