//! Fixtures for the trust tests: `gpg` keys and `ostree` repositories from the `ferry-tests`
//! builders, and what speaks the engine's trust types: remotes read back as
//! `RemoteTrustConfig`, policies, and commits verified the way a pull sees them. Every helper
//! fails the test on error.

#![allow(
    dead_code,
    reason = "each test file uses a different part of the fixtures"
)]

use std::collections::BTreeMap;
use std::fs;
use std::ops::Deref;
use std::path::{Path, PathBuf};

use ferry_engine::object::Checksum;
use ferry_engine::trust::{
    CommitCandidate, Destination, RemotePolicy, RemoteTrustConfig, TrustError, TrustRoots, Verdict,
};
use ferry_tests::gpg::GpgKey;
use ferry_tests::ostree::{object_path_in, CommitSpec, OstreeRepo, RepoMode};
use ferry_tests::Tool;
use tempfile::TempDir;

/// Runs a tool and returns its trimmed stdout, failing the test with its output otherwise.
pub fn run(tool: Tool) -> String {
    tool.stdout()
        .unwrap_or_else(|error| panic!("{error}"))
        .trim()
        .to_owned()
}

/// Public keys written where a test wants them, after whatever the test did to the key.
pub trait ExportTo {
    /// The binary public key (`gpg --export`), into `path`.
    fn export(&self, path: &Path) -> PathBuf;
    /// The ASCII-armored public key, into `path`.
    fn export_armored(&self, path: &Path) -> PathBuf;
}

impl ExportTo for GpgKey {
    fn export(&self, path: &Path) -> PathBuf {
        self.export_public(path, false)
            .unwrap_or_else(|error| panic!("{error}"));
        path.to_owned()
    }

    fn export_armored(&self, path: &Path) -> PathBuf {
        self.export_public(path, true)
            .unwrap_or_else(|error| panic!("{error}"));
        path.to_owned()
    }
}

/// An archive-mode repository made by `ostree`, committing one-file trees and reading
/// objects back as the engine's types.
pub struct ServerRepo {
    pub repo: OstreeRepo,
}

impl Deref for ServerRepo {
    type Target = OstreeRepo;

    fn deref(&self) -> &OstreeRepo {
        &self.repo
    }
}

impl ServerRepo {
    pub fn init(path: &Path, collection_id: Option<&str>) -> Self {
        let repo = OstreeRepo::init(path, RepoMode::Archive, collection_id)
            .unwrap_or_else(|error| panic!("{error}"));
        Self { repo }
    }

    pub fn url(&self) -> String {
        format!("file://{}", self.path.display())
    }

    /// Commits a tree holding `usr/share/content.txt` = `content` to `branch`, with subject
    /// `content`, and returns its checksum. `extra` are further `ostree commit` arguments
    /// (`--timestamp=`, `--no-bindings`...).
    pub fn commit(&self, branch: &str, content: &str, extra: &[String]) -> Checksum {
        self.commit_spec(branch, content, None, extra)
    }

    /// Commits signed with `key` through gpgme (`--gpg-sign`, `--gpg-homedir`).
    pub fn commit_signed(
        &self,
        branch: &str,
        content: &str,
        key: &GpgKey,
        extra: &[String],
    ) -> Checksum {
        self.commit_spec(branch, content, Some(key), extra)
    }

    fn commit_spec(
        &self,
        branch: &str,
        content: &str,
        key: Option<&GpgKey>,
        extra: &[String],
    ) -> Checksum {
        let root = self
            .path
            .with_extension(format!("tree-{}", branch.replace('/', "_")));
        fs::create_dir_all(root.join("usr/share")).expect("tree");
        fs::write(root.join("usr/share/content.txt"), content).expect("tree file");
        let mut spec = CommitSpec::new(branch, &root).subject(content);
        if let Some(key) = key {
            spec = spec.sign(key);
        }
        for arg in extra {
            spec = spec.arg(arg);
        }
        let hex = self
            .repo
            .commit(&spec)
            .unwrap_or_else(|error| panic!("{error}"));
        Checksum::from_hex(&hex).expect("ostree prints the commit checksum")
    }

    /// `objects/XX/REST.KIND` (`commit`, `commitmeta`...), whether or not it exists.
    pub fn object_path(&self, checksum: &Checksum, kind: &str) -> PathBuf {
        object_path_in(&self.path, &checksum.to_hex(), kind)
    }

    pub fn commit_bytes(&self, checksum: &Checksum) -> Vec<u8> {
        fs::read(self.object_path(checksum, "commit")).expect("commit object")
    }

    pub fn commitmeta_bytes(&self, checksum: &Checksum) -> Option<Vec<u8>> {
        fs::read(self.object_path(checksum, "commitmeta")).ok()
    }
}

/// A destination repository with remotes added by `ostree remote add`, read back from its
/// `config` the way Ferry's repository code hands them to trust.
pub struct Client {
    pub repo: OstreeRepo,
}

impl Client {
    pub fn init(path: &Path) -> Self {
        let repo = OstreeRepo::init(path, RepoMode::BareUserOnly, None)
            .unwrap_or_else(|error| panic!("{error}"));
        Self { repo }
    }

    /// `ostree remote add [args] NAME URL`.
    pub fn add_remote(&self, name: &str, url: &str, args: &[String]) {
        run(self
            .repo
            .ostree()
            .args(["remote", "add"])
            .args(args)
            .args([name, url]));
    }

    /// The remote's options as written in the repository's `config`.
    pub fn remote_config(&self, name: &str) -> RemoteTrustConfig {
        let text = fs::read_to_string(self.repo.path.join("config")).expect("config");
        let header = format!("[remote \"{name}\"]");
        let mut options = BTreeMap::new();
        let mut inside = false;
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('[') {
                inside = line == header;
            } else if let (true, Some((key, value))) = (inside, line.split_once('=')) {
                options.insert(key.trim().to_owned(), value.trim().to_owned());
            }
        }
        assert!(!options.is_empty(), "remote {name} is in the config");
        RemoteTrustConfig {
            name: name.to_owned(),
            options,
        }
    }

    pub fn policy(&self, name: &str, roots: &TrustRoots) -> Result<RemotePolicy, TrustError> {
        RemotePolicy::load(
            &self.remote_config(name),
            &Destination::plain(&self.repo.path),
            roots,
        )
    }

    /// Whether libostree itself accepts the commit on `branch` of `source` for `remote`
    /// (`ostree pull-local --remote --gpg-verify`), to check Ferry agrees with it.
    pub fn libostree_accepts(&self, remote: &str, source: &OstreeRepo, branch: &str) -> bool {
        let remote = format!("--remote={remote}");
        self.repo
            .pull_local(&source.path, &[branch], &["--gpg-verify", &remote])
            .is_ok()
    }
}

pub const PUBLISHER: &str = "Publisher <publisher@example.org>";

/// A publisher key, a server repository and a client whose remote `origin` trusts the key
/// through `<repo>/origin.trustedkeys.gpg` (`ostree remote add --gpg-import`); both the
/// server and the remote have collection ID `org.example.Os`.
pub struct World {
    pub publisher: GpgKey,
    pub server: ServerRepo,
    pub client: Client,
    pub roots: TrustRoots,
    pub dir: TempDir,
}

/// The ref the trust tests commit to.
pub const OS_REF: &str = "os/x86_64/stable";

impl World {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let publisher = GpgKey::generate(&dir.path().join("gnupg-publisher"), PUBLISHER)
            .unwrap_or_else(|error| panic!("{error}"));
        let server = ServerRepo::init(&dir.path().join("server"), Some("org.example.Os"));
        let client = Client::init(&dir.path().join("client"));
        let key = publisher.export(&dir.path().join("publisher.gpg"));
        client.add_remote(
            "origin",
            &server.url(),
            &[import(&key), "--collection-id=org.example.Os".to_owned()],
        );
        let roots = empty_roots(&dir.path().join("roots"));
        Self {
            publisher,
            server,
            client,
            roots,
            dir,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A second key in its own GnuPG home, made by `gpg --quick-gen-key UID ALGO USAGE
    /// EXPIRE` with `conf` in `gpg.conf` first (`faked-system-time`, `digest-algo`), so the
    /// lines also apply when ostree signs through gpgme.
    pub fn key(
        &self,
        name: &str,
        uid: &str,
        algo: &str,
        usage: &str,
        expire: &str,
        conf: &[&str],
    ) -> GpgKey {
        let home = self.path(&format!("gnupg-{name}"));
        GpgKey::write_conf(&home, conf)
            .and_then(|()| GpgKey::generate_with_usage(&home, uid, algo, usage, expire))
            .unwrap_or_else(|error| panic!("{error}"))
    }

    /// A certify-only ed25519 key with an ed25519 signing subkey (gpg signs with the
    /// subkey); returns the key and the subkey's fingerprint.
    pub fn key_signing_with_subkey(&self, name: &str, uid: &str) -> (GpgKey, String) {
        let mut key = self.key(name, uid, "ed25519", "cert", "never", &[]);
        let subkey = key
            .add_subkey("ed25519", "sign", "never")
            .unwrap_or_else(|error| panic!("{error}"));
        (key, subkey)
    }

    /// An ed25519 signing key that never expires: what most tests need.
    pub fn signing_key(&self, name: &str, uid: &str) -> GpgKey {
        self.key(name, uid, "ed25519", "sign", "never", &[])
    }

    /// A commit of the OS ref on the server, with `subject`, signed by `key`.
    pub fn commit_by(&self, key: &GpgKey, subject: &str) -> Checksum {
        self.server.commit_signed(OS_REF, subject, key, &[])
    }

    /// Checks `commit` on the server as remote `name`, trusting `key`, would.
    pub fn verify_as(
        &self,
        name: &str,
        key: &GpgKey,
        commit: &Checksum,
    ) -> Result<Verdict, TrustError> {
        verify(&self.trust(name, key), &self.server, commit)
    }

    /// Whether libostree, pulling the OS ref from the server through remote `name`, accepts it.
    pub fn libostree_accepts(&self, name: &str) -> bool {
        self.client.libostree_accepts(name, &self.server, OS_REF)
    }

    /// Adds remote `name` trusting `key` (exported after whatever the test did to it).
    pub fn trust(&self, name: &str, key: &GpgKey) -> RemotePolicy {
        let exported = key.export(&self.path(&format!("{name}.gpg")));
        self.client
            .add_remote(name, &self.server.url(), &[import(&exported)]);
        self.client.policy(name, &self.roots).expect("policy loads")
    }

    pub fn origin(&self) -> RemotePolicy {
        self.client
            .policy("origin", &self.roots)
            .expect("policy loads")
    }
}

pub fn import(key: &Path) -> String {
    format!("--gpg-import={}", key.display())
}

/// System key directories inside a test directory, empty unless a test fills them.
pub fn empty_roots(dir: &Path) -> TrustRoots {
    let roots = TrustRoots {
        global_gpg_keyring_dir: dir.join("usr-share-ostree/trusted.gpg.d"),
        ed25519_dirs: vec![dir.join("etc-ostree"), dir.join("usr-share-ostree")],
    };
    for path in roots
        .ed25519_dirs
        .iter()
        .chain([&roots.global_gpg_keyring_dir])
    {
        fs::create_dir_all(path).expect("roots");
    }
    roots
}

/// Verifies the commit on `source` as Ferry's pull would see it.
pub fn verify(
    policy: &RemotePolicy,
    source: &ServerRepo,
    commit: &Checksum,
) -> Result<Verdict, TrustError> {
    let bytes = source.commit_bytes(commit);
    let meta = source.commitmeta_bytes(commit);
    let location = source.path.display().to_string();
    policy.verify_commit(&CommitCandidate {
        checksum: *commit,
        commit: &bytes,
        detached_metadata: meta.as_deref(),
        source: &location,
    })
}

/// The message of a refusal, for assertions on what a person reads.
pub fn refusal(result: Result<Verdict, TrustError>) -> TrustError {
    match result {
        Ok(verdict) => panic!("expected a refusal, got {verdict:?}"),
        Err(e) => e,
    }
}
