//! Trust end to end through `ferryctl pull --remote`: keys come from the destination's remote
//! configuration (never from the drive), and every refusal leaves the destination ref as it
//! was and the repository valid for `ostree fsck`. Keys and signatures are made by the real
//! `gpg` and `ostree`; ed25519 signatures, which Debian's ostree cannot make, are written in
//! libostree's detached-metadata format.

mod pull_support;

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey};
use ferry_engine::object::Metadata;
use ferry_engine::schema::InstallStatus;
use ferry_tests::gpg::GpgKey;
use ferry_tests::ostree::{object_path_in, CommitSpec, OstreeRepo, RefLocation, RepoMode};
use ferry_tests::tree::{Tree, TreeOptions};
use pull_support::peer::Peer;
use pull_support::{
    assert_refused, client, ferryctl, pull, pull_args, pull_remote, remote_ref, trust_root,
    PullRun, BRANCH, COLLECTION, REMOTE,
};
use tempfile::TempDir;

/// A publisher key, an archive repository of collection [`COLLECTION`] and a bare-user
/// destination whose remote `origin` trusts the key through `origin.trustedkeys.gpg`.
struct World {
    tmp: TempDir,
    key: GpgKey,
    tree: Tree,
    server: OstreeRepo,
    dest: OstreeRepo,
}

impl World {
    fn new() -> Result<Self> {
        let tmp = TempDir::new()?;
        let key = GpgKey::generate(&tmp.path().join("gnupg"), "Publisher <p@example.org>")?;
        let tree = Tree::standard(&tmp.path().join("tree"), TreeOptions::full())?;
        let server = OstreeRepo::init(
            &tmp.path().join("server"),
            RepoMode::Archive,
            Some(COLLECTION),
        )?;
        let dest = client(&tmp.path().join("dest"), RepoMode::BareUser, Some(&key))?;
        Ok(Self {
            tmp,
            key,
            tree,
            server,
            dest,
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn commit(&self, spec: CommitSpec<'_>) -> Result<String> {
        Ok(self.server.commit(&spec.version("1.0"))?)
    }

    fn pull(&self, refs: &[&str]) -> Result<PullRun> {
        pull_remote(
            &trust_root(self.tmp.path()),
            &self.dest.path,
            &self.server.path,
            refs,
        )
    }

    /// Pulls [`BRANCH`] from `source` into `dest` through remote `origin`.
    fn pull_into(&self, dest: &OstreeRepo, source: &Path) -> Result<PullRun> {
        pull_remote(&trust_root(self.tmp.path()), &dest.path, source, &[BRANCH])
    }

    /// Like [`World::pull_into`], and checks the pull was refused naming every needle, with
    /// nothing installed before.
    fn refused_into(&self, dest: &OstreeRepo, source: &Path, needles: &[&str]) -> Result<()> {
        let run = self.pull_into(dest, source)?;
        assert_refused(&run, dest, &remote_ref(BRANCH), &None, needles)
    }

    fn pull_with(&self, extra: &[&str]) -> Result<PullRun> {
        pull(
            &trust_root(self.tmp.path()),
            &self.dest.path,
            &[self.server.path.as_os_str()],
            &[&["--remote", REMOTE][..], extra].concat(),
            &[BRANCH],
        )
    }

    /// Pulls BRANCH and checks the refusal: the ref unchanged and fsck passing.
    fn refused(&self, before: &Option<String>, needles: &[&str]) -> Result<()> {
        let run = self.pull(&[BRANCH])?;
        assert_refused(&run, &self.dest, &remote_ref(BRANCH), before, needles)
    }
}

fn message(run: &PullRun) -> String {
    run.results()
        .first()
        .and_then(|r| r.message.clone())
        .unwrap_or_default()
}

#[test]
fn trusted_key_is_accepted_through_remote_trustedkeys() -> Result<()> {
    let world = World::new()?;
    ensure!(world.dest.path.join("origin.trustedkeys.gpg").is_file());
    let commit = world.commit(CommitSpec::new(BRANCH, &world.tree.root).sign(&world.key))?;
    let run = world.pull(&[BRANCH])?.require_success()?;
    ensure!(
        message(&run).contains(&format!("signed by key 0x{}", world.key.fingerprint)),
        "{}",
        message(&run)
    );
    ensure!(world.dest.read_ref(&remote_ref(BRANCH))? == Some(commit));
    world.dest.fsck()?;
    Ok(())
}

#[test]
fn keyring_through_gpgkeypath_is_used() -> Result<()> {
    let world = World::new()?;
    let commit = world.commit(CommitSpec::new(BRANCH, &world.tree.root).sign(&world.key))?;
    let dest = OstreeRepo::init(&world.path("dest-keypath"), RepoMode::BareUser, None)?;
    dest.ostree()
        .args(["remote", "add", &format!("--collection-id={COLLECTION}")])
        .arg(format!(
            "--set=gpgkeypath={}",
            world.key.public_keyring.display()
        ))
        .args([REMOTE, "http://127.0.0.1:9/unused"])
        .run()?;
    ensure!(!dest.path.join("origin.trustedkeys.gpg").exists());
    let run = world
        .pull_into(&dest, &world.server.path)?
        .require_success()?;
    ensure!(message(&run).contains("signed by key"), "{}", message(&run));
    ensure!(dest.read_ref(&remote_ref(BRANCH))? == Some(commit));

    // The same remote with a keyring that does not hold the publisher's key refuses.
    let other = GpgKey::generate(&world.path("gnupg-other"), "Other <o@example.org>")?;
    let strict = OstreeRepo::init(&world.path("dest-other-keypath"), RepoMode::BareUser, None)?;
    strict
        .ostree()
        .args(["remote", "add", &format!("--collection-id={COLLECTION}")])
        .arg(format!(
            "--set=gpgkeypath={}",
            other.public_keyring.display()
        ))
        .args([REMOTE, "http://127.0.0.1:9/unused"])
        .run()?;
    world.refused_into(&strict, &world.server.path, &["does not trust"])
}

#[test]
fn unknown_key_is_refused() -> Result<()> {
    let world = World::new()?;
    let stranger = GpgKey::generate(&world.path("gnupg-stranger"), "Stranger <s@example.org>")?;
    world.commit(CommitSpec::new(BRANCH, &world.tree.root).sign(&stranger))?;
    world.refused(
        &None,
        &[
            &stranger.fingerprint,
            "which remote 'origin' does not trust",
        ],
    )
}

#[test]
fn unsigned_commit_is_refused_when_the_remote_requires_signatures() -> Result<()> {
    let world = World::new()?;
    world.commit(CommitSpec::new(BRANCH, &world.tree.root))?;
    world.refused(&None, &["has no GPG signature", "gpg-verify"])
}

#[test]
fn expired_key_is_refused() -> Result<()> {
    let world = World::new()?;
    // Made and used on 2020-01-01 with a one-day lifetime.
    let home = world.path("gnupg-expired");
    fs::create_dir_all(&home)?;
    fs::write(
        home.join("gpg.conf"),
        "faked-system-time 20200101T000000!\n",
    )?;
    let expired = GpgKey::generate_with(&home, "Old <old@example.org>", "ed25519", "1d")?;
    world.commit(CommitSpec::new(BRANCH, &world.tree.root).sign(&expired))?;
    let dest = client(
        &world.path("dest-expired"),
        RepoMode::BareUser,
        Some(&expired),
    )?;
    world.refused_into(
        &dest,
        &world.server.path,
        &[&expired.fingerprint, "which expired on 2020-01-02"],
    )
}

#[test]
fn revoked_signing_subkey_is_refused() -> Result<()> {
    let world = World::new()?;
    let home = world.path("gnupg-subkey");
    let key = GpgKey::generate(&home, "Sub <sub@example.org>")?;
    key.command()
        .args(["--batch", "--passphrase", "", "--pinentry-mode", "loopback"])
        .args([
            "--quick-add-key",
            &key.fingerprint,
            "ed25519",
            "sign",
            "never",
        ])
        .run()?;
    world.commit(CommitSpec::new(BRANCH, &world.tree.root).sign(&key))?;

    // Before the revocation the subkey's signature counts.
    let before_revocation = world.path("sub-before.gpg");
    key.export_public(&before_revocation, false)?;
    let trusting = OstreeRepo::init(&world.path("dest-before"), RepoMode::BareUser, None)?;
    trusting
        .ostree()
        .args(["remote", "add", &format!("--collection-id={COLLECTION}")])
        .arg(format!("--gpg-import={}", before_revocation.display()))
        .args([REMOTE, "http://127.0.0.1:9/unused"])
        .run()?;
    pull_remote(
        &trust_root(world.tmp.path()),
        &trusting.path,
        &world.server.path,
        &[BRANCH],
    )?
    .require_success()?;

    key.command()
        .args(["--batch", "--passphrase", "", "--pinentry-mode", "loopback"])
        .args([
            "--command-fd",
            "0",
            "--status-fd",
            "2",
            "--edit-key",
            &key.fingerprint,
        ])
        .stdin("key 1\nrevkey\ny\n0\n\ny\nsave\n")
        .run()?;
    key.export_public(&key.public_keyring, false)?;
    let dest = client(&world.path("dest-revoked"), RepoMode::BareUser, Some(&key))?;
    world.refused_into(
        &dest,
        &world.server.path,
        &["subkey", "which has been revoked"],
    )
}

#[test]
fn signature_copied_from_another_commit_is_refused() -> Result<()> {
    let world = World::new()?;
    let signed = world.commit(CommitSpec::new(BRANCH, &world.tree.root).sign(&world.key))?;
    world.pull(&[BRANCH])?.require_success()?;
    world.tree.write_file("usr/share/hello.txt", "HACKD\n")?;
    let forged =
        world.commit(CommitSpec::new(BRANCH, &world.tree.root).timestamp("2030-01-01 00:00:00"))?;
    fs::copy(
        object_path_in(&world.server.path, &signed, "commitmeta"),
        object_path_in(&world.server.path, &forged, "commitmeta"),
    )?;
    world.refused(&Some(signed), &["does not match its contents"])
}

#[test]
fn collection_binding_mismatch_is_refused() -> Result<()> {
    let world = World::new()?;
    // A repository without collection ID whose commit claims another collection.
    let elsewhere = OstreeRepo::init(&world.path("elsewhere"), RepoMode::Archive, None)?;
    elsewhere.commit(
        &CommitSpec::new(BRANCH, &world.tree.root)
            .metadata("ostree.collection-binding", "org.other.Os")
            .sign(&world.key),
    )?;
    world.refused_into(
        &world.dest,
        &elsewhere.path,
        &["belongs to collection org.other.Os", COLLECTION],
    )
}

#[test]
fn ref_binding_mismatch_is_refused() -> Result<()> {
    let world = World::new()?;
    let commit = world.commit(CommitSpec::new(BRANCH, &world.tree.root).sign(&world.key))?;
    let other = "os/x86_64/other";
    world
        .server
        .ostree()
        .args(["refs", &format!("--create={other}"), &commit])
        .run()?;
    let run = world.pull(&[other])?;
    assert_refused(
        &run,
        &world.dest,
        &remote_ref(other),
        &None,
        &[&format!(
            "is bound to {BRANCH}, but it is offered as {other}"
        )],
    )
}

#[test]
fn older_commit_is_refused_unless_downgrades_are_allowed() -> Result<()> {
    let world = World::new()?;
    let old = world.commit(
        CommitSpec::new(BRANCH, &world.tree.root)
            .timestamp("2024-01-02 00:00:00")
            .sign(&world.key),
    )?;
    world.tree.write_file("usr/share/hello.txt", "newer\n")?;
    let new = world.commit(
        CommitSpec::new(BRANCH, &world.tree.root)
            .timestamp("2024-03-04 00:00:00")
            .sign(&world.key),
    )?;
    world.pull(&[BRANCH])?.require_success()?;
    ensure!(world.dest.read_ref(&remote_ref(BRANCH))? == Some(new.clone()));

    // The drive now offers the older commit.
    fs::write(
        world.server.path.join("refs/heads").join(BRANCH),
        format!("{old}\n"),
    )?;
    world.refused(
        &Some(new.clone()),
        &[
            "older than the installed version (2024-01-02 < 2024-03-04)",
            "--allow-downgrade",
        ],
    )?;
    let run = world.pull_with(&["--allow-downgrade"])?.require_success()?;
    ensure!(run.results()[0].status == InstallStatus::Installed);
    ensure!(world.dest.read_ref(&remote_ref(BRANCH))? == Some(old));
    world.dest.fsck()?;
    Ok(())
}

/// Adds ed25519 signatures by `keys` over the commit's bytes to its detached metadata.
fn sign_ed25519(repo: &OstreeRepo, commit: &str, keys: &[&SigningKey]) -> Result<()> {
    let bytes = fs::read(object_path_in(&repo.path, commit, "commit"))?;
    let signatures: Vec<Vec<u8>> = keys
        .iter()
        .map(|key| key.sign(&bytes).to_bytes().to_vec())
        .collect();
    let path = object_path_in(&repo.path, commit, "commitmeta");
    let mut metadata = match fs::read(&path) {
        Ok(existing) => Metadata::parse(&existing)?,
        Err(_) => Metadata::new(),
    };
    metadata.insert_byte_arrays("ostree.sign.ed25519", &signatures)?;
    fs::write(&path, metadata.to_bytes()?)?;
    Ok(())
}

fn public_b64(key: &SigningKey) -> String {
    STANDARD.encode(key.verifying_key().as_bytes())
}

/// A destination whose remote verifies ed25519 signatures only, with `options`.
fn ed25519_client(path: &Path, options: &[String]) -> Result<OstreeRepo> {
    let dest = OstreeRepo::init(path, RepoMode::BareUser, None)?;
    dest.ostree()
        .args(["remote", "add", "--no-gpg-verify"])
        .arg(format!("--collection-id={COLLECTION}"))
        .args(options)
        .args([REMOTE, "http://127.0.0.1:9/unused"])
        .run()?;
    Ok(dest)
}

#[test]
fn ed25519_trusted_key_is_accepted_and_revoked_key_is_refused() -> Result<()> {
    let world = World::new()?;
    let trusted = SigningKey::from_bytes(&[7u8; 32]);
    let revoked = SigningKey::from_bytes(&[9u8; 32]);
    let commit = world.commit(CommitSpec::new(BRANCH, &world.tree.root))?;
    sign_ed25519(&world.server, &commit, &[&trusted])?;

    let dest = ed25519_client(
        &world.path("dest-ed25519"),
        &[
            "--set=sign-verify=ed25519".to_owned(),
            format!("--set=verification-ed25519-key={}", public_b64(&trusted)),
        ],
    )?;
    let run = world
        .pull_into(&dest, &world.server.path)?
        .require_success()?;
    ensure!(
        message(&run).contains(&format!("signed by ed25519 key {}", public_b64(&trusted))),
        "{}",
        message(&run)
    );
    dest.fsck()?;

    // A newer commit signed by a key this machine lists as revoked, trusted through the
    // system's trusted.ed25519.d otherwise.
    world.tree.write_file("usr/share/hello.txt", "newer\n")?;
    let newer =
        world.commit(CommitSpec::new(BRANCH, &world.tree.root).timestamp("2035-01-01 00:00:00"))?;
    sign_ed25519(&world.server, &newer, &[&revoked])?;
    let root = trust_root(world.tmp.path());
    fs::create_dir_all(root.join("etc/ostree/trusted.ed25519.d"))?;
    fs::write(
        root.join("etc/ostree/trusted.ed25519.d/vendor"),
        format!("{}\n", public_b64(&revoked)),
    )?;
    fs::write(
        root.join("etc/ostree/revoked.ed25519"),
        format!("{}\n", public_b64(&revoked)),
    )?;
    let system = ed25519_client(
        &world.path("dest-system"),
        &["--set=sign-verify=true".to_owned()],
    )?;
    let run = pull_remote(&root, &system.path, &world.server.path, &[BRANCH])?;
    assert_refused(
        &run,
        &system,
        &remote_ref(BRANCH),
        &None,
        &[&public_b64(&revoked), "revoked"],
    )?;
    // The first destination refuses it too: only its own key counts there.
    let run = pull_remote(&root, &dest.path, &world.server.path, &[BRANCH])?;
    assert_refused(
        &run,
        &dest,
        &remote_ref(BRANCH),
        &Some(commit),
        &["ed25519"],
    )
}

#[test]
fn remote_without_verification_pulls_and_reports_unsigned() -> Result<()> {
    let world = World::new()?;
    let commit = world.commit(CommitSpec::new(BRANCH, &world.tree.root))?;
    let dest = client(&world.path("dest-unsigned"), RepoMode::BareUser, None)?;
    let run = world
        .pull_into(&dest, &world.server.path)?
        .require_success()?;
    ensure!(message(&run).contains("unsigned"), "{}", message(&run));
    ensure!(dest.read_ref(&remote_ref(BRANCH))? == Some(commit));
    dest.fsck()?;
    let human = pull_support::ferryctl(&trust_root(world.tmp.path()))?
        .args(["pull", "--repo"])
        .arg(&dest.path)
        .arg("--from")
        .arg(&world.server.path)
        .args(["--remote", REMOTE, BRANCH])
        .stdout()
        .context("human output")?;
    ensure!(human.contains("unsigned"), "{human}");
    Ok(())
}

/// With `gpg-verify-summary=true`, a peer whose `summary.sig` is not made by a trusted key is
/// refused even though the commit itself is signed; once the publisher signs the summary, the
/// same peer is accepted.
#[test]
fn summary_signatures_are_checked_when_the_remote_asks() -> Result<()> {
    let world = World::new()?;
    let commit = world.commit(CommitSpec::new(BRANCH, &world.tree.root).sign(&world.key))?;
    let stranger = GpgKey::generate(&world.path("gnupg-stranger"), "Stranger <s@example.org>")?;
    world.server.update_summary(Some(&stranger))?;
    let peer = Peer::serve(&world.server.path)?;
    let dest = OstreeRepo::init(&world.path("dest-summary"), RepoMode::BareUser, None)?;
    dest.ostree()
        .args(["remote", "add", &format!("--collection-id={COLLECTION}")])
        .arg(format!(
            "--gpg-import={}",
            world.key.public_keyring.display()
        ))
        .arg("--set=gpg-verify-summary=true")
        .args([REMOTE, &peer.url])
        .run()?;
    let from = [std::ffi::OsStr::new(&peer.url)];
    let run = pull(
        &trust_root(world.tmp.path()),
        &dest.path,
        &from,
        &["--remote", REMOTE],
        &[BRANCH],
    )?;
    assert_refused(
        &run,
        &dest,
        &remote_ref(BRANCH),
        &None,
        &["the summary", &stranger.fingerprint, "does not trust"],
    )?;

    world.server.update_summary(Some(&world.key))?;
    pull(
        &trust_root(world.tmp.path()),
        &dest.path,
        &from,
        &["--remote", REMOTE],
        &[BRANCH],
    )?
    .require_success()?;
    ensure!(dest.read_ref(&remote_ref(BRANCH))? == Some(commit));
    dest.fsck()?;
    Ok(())
}

/// `--mirror` and plain heads have no remote named: the remote of the destination whose
/// collection ID matches the ref's vouches for it, and without one the pull says what to do.
#[test]
fn mirror_and_head_refs_are_vouched_for_by_the_remote_of_their_collection() -> Result<()> {
    let world = World::new()?;
    let commit = world.commit(CommitSpec::new(BRANCH, &world.tree.root).sign(&world.key))?;
    let drive = world.path("drive");
    world.server.create_usb(&drive, &[(COLLECTION, BRANCH)])?;
    let root = trust_root(world.tmp.path());
    let from = [drive.as_os_str()];

    pull(&root, &world.dest.path, &from, &["--mirror"], &[BRANCH])?.require_success()?;
    let mirror = RefLocation::Mirror {
        collection_id: COLLECTION.into(),
        name: BRANCH.into(),
    };
    ensure!(world.dest.read_ref(&mirror)? == Some(commit.clone()));
    pull(&root, &world.dest.path, &from, &[], &[BRANCH])?.require_success()?;
    ensure!(world.dest.read_ref(&RefLocation::Head(BRANCH.into()))? == Some(commit));
    world.dest.fsck()?;

    let lonely = OstreeRepo::init(&world.path("dest-lonely"), RepoMode::BareUser, None)?;
    let run = pull(&root, &lonely.path, &from, &["--mirror"], &[BRANCH])?;
    assert_refused(
        &run,
        &lonely,
        &mirror,
        &None,
        &[&format!(
            "has collection ID {COLLECTION}: add the remote first"
        )],
    )?;

    // The collection's remote trusts only the publisher: a drive signed by anyone else is
    // refused for the mirror too.
    let stranger = GpgKey::generate(&world.path("gnupg-stranger"), "Stranger <s@example.org>")?;
    world.tree.write_file("usr/share/hello.txt", "newer\n")?;
    world.commit(
        CommitSpec::new(BRANCH, &world.tree.root)
            .timestamp("2035-01-01 00:00:00")
            .sign(&stranger),
    )?;
    let other_drive = world.path("drive-stranger");
    world
        .server
        .create_usb(&other_drive, &[(COLLECTION, BRANCH)])?;
    let before = world.dest.read_ref(&mirror)?;
    let run = pull(
        &root,
        &world.dest.path,
        &[other_drive.as_os_str()],
        &["--mirror"],
        &[BRANCH],
    )?;
    assert_refused(&run, &world.dest, &mirror, &before, &["does not trust"])
}

/// A keyring that cannot be read: the error says which remote's keys failed, its causes say
/// which file and why, each once; `-v` puts each cause on a line of its own.
#[test]
fn unreadable_keyring_names_each_cause_once() -> Result<()> {
    let world = World::new()?;
    world.commit(CommitSpec::new(BRANCH, &world.tree.root).sign(&world.key))?;
    // A directory where the keyring file should be: found, but reading it fails (EISDIR),
    // even as root.
    let keyring = world.dest.path.join("origin.trustedkeys.gpg");
    fs::remove_file(&keyring)?;
    fs::create_dir(&keyring)?;
    let why = "Is a directory";

    let run = world.pull(&[BRANCH])?;
    assert_refused(
        &run,
        &world.dest,
        &remote_ref(BRANCH),
        &None,
        &["remote 'origin'", "origin.trustedkeys.gpg", why],
    )?;
    let stderr = &run.output.stderr;
    ensure!(stderr.matches(why).count() == 1, "{stderr}");
    ensure!(
        stderr.matches("origin.trustedkeys.gpg").count() == 1,
        "{stderr}"
    );

    let verbose = ferryctl(&trust_root(world.tmp.path()))?
        .arg("-v")
        .args(pull_args(
            &world.dest.path,
            &[world.server.path.as_os_str()],
            &["--remote", REMOTE],
            &[BRANCH],
        ))
        .output()?;
    let stderr = &verbose.stderr;
    ensure!(!verbose.success(), "{stderr}");
    ensure!(stderr.matches(why).count() == 1, "{stderr}");
    ensure!(
        stderr
            .lines()
            .any(|line| line.trim_start() == format!("caused by: {why} (os error 21)")),
        "the read error is not listed as a cause:\n{stderr}"
    );
    Ok(())
}
