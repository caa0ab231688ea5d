//! Fixtures for the trust tests: real `gpg` keys and signatures, real `ostree` repositories,
//! commits and detached metadata. Every helper asserts the tool succeeded.

#![allow(
    dead_code,
    reason = "each test file uses a different part of the fixtures"
)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ferry_engine::object::Checksum;
use ferry_engine::trust::{
    CommitCandidate, Destination, RemotePolicy, RemoteTrustConfig, TrustError, TrustRoots, Verdict,
};
use tempfile::TempDir;

/// Runs a command and returns its stdout, failing the test with its stderr otherwise.
pub fn run(command: &mut Command) -> String {
    let output = command.output().expect("the tool runs");
    assert_success(command, &output);
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn assert_success(command: &Command, output: &Output) {
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A throwaway GnuPG home with one primary key.
pub struct Gpg {
    pub home: PathBuf,
    pub fingerprint: String,
}

impl Gpg {
    /// A GnuPG home at `home` with a key made by `gpg --quick-gen-key UID ALGO USAGE EXPIRE`,
    /// e.g. `("ed25519", "sign", "never")`. Lines in `conf` go to `gpg.conf` first
    /// (`faked-system-time`, `digest-algo`), so they also apply when ostree drives gpg through
    /// gpgme.
    pub fn new(
        home: &Path,
        uid: &str,
        algo: &str,
        usage: &str,
        expire: &str,
        conf: &[&str],
    ) -> Self {
        let home = home.to_owned();
        fs::create_dir_all(&home).expect("gnupg home");
        let mut perms = fs::metadata(&home).expect("home").permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o700);
        fs::set_permissions(&home, perms).expect("chmod gnupg home");
        let mut gpg = Self {
            home,
            fingerprint: String::new(),
        };
        gpg.set_conf(conf);
        run(gpg.command().args([
            "--passphrase",
            "",
            "--quick-gen-key",
            uid,
            algo,
            usage,
            expire,
        ]));
        let listing = run(gpg.command().args(["--list-keys", "--with-colons"]));
        gpg.fingerprint = listing
            .lines()
            .find_map(|line| line.strip_prefix("fpr:::::::::"))
            .and_then(|rest| rest.split(':').next())
            .expect("a fingerprint")
            .to_owned();
        gpg
    }

    pub fn command(&self) -> Command {
        let mut command = Command::new("gpg");
        command.arg("--homedir").arg(&self.home).args([
            "--batch",
            "--no-tty",
            "--pinentry-mode",
            "loopback",
        ]);
        command
    }

    /// Replaces `gpg.conf`.
    pub fn set_conf(&self, lines: &[&str]) {
        let mut text = lines.join("\n");
        text.push('\n');
        fs::write(self.home.join("gpg.conf"), text).expect("gpg.conf");
    }

    /// Adds a subkey (`--quick-add-key FPR ALGO USAGE EXPIRE`) and returns its fingerprint.
    pub fn add_subkey(&self, algo: &str, usage: &str, expire: &str) -> String {
        run(self.command().args([
            "--passphrase",
            "",
            "--quick-add-key",
            &self.fingerprint,
            algo,
            usage,
            expire,
        ]));
        let listing = run(self.command().args(["--list-keys", "--with-colons"]));
        listing
            .lines()
            .rev()
            .filter_map(|line| line.strip_prefix("fpr:::::::::"))
            .find_map(|rest| rest.split(':').next())
            .expect("a subkey fingerprint")
            .to_owned()
    }

    /// Runs `--edit-key` with `commands` fed on the command fd, one per line.
    pub fn edit_key(&self, commands: &[&str]) {
        let mut child = self
            .command()
            .args(["--passphrase", "", "--command-fd", "0", "--status-fd", "2"])
            .args(["--edit-key", &self.fingerprint])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("gpg --edit-key runs");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("stdin");
            stdin
                .write_all(format!("{}\n", commands.join("\n")).as_bytes())
                .expect("commands written");
        }
        let output = child.wait_with_output().expect("gpg --edit-key ends");
        assert!(
            output.status.success(),
            "gpg --edit-key failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// The public key as `gpg --export` writes it (binary), into `path`.
    pub fn export(&self, path: &Path) -> PathBuf {
        run(self
            .command()
            .arg("--export")
            .arg("--output")
            .arg(path)
            .arg(&self.fingerprint));
        path.to_owned()
    }

    /// The public key ASCII-armored, into `path`.
    pub fn export_armored(&self, path: &Path) -> PathBuf {
        run(self
            .command()
            .args(["--armor", "--export", "--output"])
            .arg(path)
            .arg(&self.fingerprint));
        path.to_owned()
    }

    /// Imports the revocation certificate gpg made at key generation, revoking the key.
    pub fn revoke_primary(&self) {
        let cert_path = self
            .home
            .join("openpgp-revocs.d")
            .join(format!("{}.rev", self.fingerprint));
        let text = fs::read_to_string(&cert_path).expect("revocation certificate");
        // gpg stores it with a leading ':' on the armor line so it is not imported by mistake.
        let armored = text.replace(
            ":-----BEGIN PGP PUBLIC KEY BLOCK-----",
            "-----BEGIN PGP PUBLIC KEY BLOCK-----",
        );
        let path = self.home.join("revoke.asc");
        fs::write(&path, armored).expect("revocation written");
        run(self.command().arg("--import").arg(&path));
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        // gpg starts an agent per home; stop it so nothing outlives the test.
        let _ = Command::new("gpgconf")
            .arg("--homedir")
            .arg(&self.home)
            .args(["--kill", "gpg-agent"])
            .output();
    }
}

/// An archive-mode repository made by `ostree`.
pub struct OstreeRepo {
    pub path: PathBuf,
}

impl OstreeRepo {
    pub fn init(path: &Path, collection_id: Option<&str>) -> Self {
        let mut command = Command::new("ostree");
        command
            .arg("init")
            .arg("--mode=archive")
            .arg(format!("--repo={}", path.display()));
        if let Some(id) = collection_id {
            command.arg(format!("--collection-id={id}"));
        }
        run(&mut command);
        Self {
            path: path.to_owned(),
        }
    }

    pub fn url(&self) -> String {
        format!("file://{}", self.path.display())
    }

    pub fn ostree(&self) -> Command {
        let mut command = Command::new("ostree");
        command.arg(format!("--repo={}", self.path.display()));
        command
    }

    /// Commits a small tree to `branch` and returns its checksum. `extra` are further
    /// `ostree commit` arguments (`--gpg-sign=`, `--timestamp=`, `--no-bindings`...).
    pub fn commit(&self, branch: &str, content: &str, extra: &[String]) -> Checksum {
        let tree = self
            .path
            .with_extension(format!("tree-{}", branch.replace('/', "_")));
        fs::create_dir_all(tree.join("usr/share")).expect("tree");
        fs::write(tree.join("usr/share/content.txt"), content).expect("tree file");
        let out = run(self
            .ostree()
            .args(["commit", "-b", branch, "-s", content])
            .args(extra)
            .arg(&tree));
        Checksum::from_hex(out.trim()).expect("ostree prints the commit checksum")
    }

    /// Commits signed with `gpg`'s key through gpgme (`--gpg-sign`, `--gpg-homedir`).
    pub fn commit_signed(
        &self,
        branch: &str,
        content: &str,
        gpg: &Gpg,
        extra: &[String],
    ) -> Checksum {
        let mut args = vec![
            format!("--gpg-sign={}", gpg.fingerprint),
            format!("--gpg-homedir={}", gpg.home.display()),
        ];
        args.extend_from_slice(extra);
        self.commit(branch, content, &args)
    }

    pub fn object_path(&self, checksum: &Checksum, kind: &str) -> PathBuf {
        let hex = checksum.to_hex();
        self.path
            .join("objects")
            .join(&hex[..2])
            .join(format!("{}.{kind}", &hex[2..]))
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
        run(Command::new("ostree")
            .arg("init")
            .arg("--mode=bare-user-only")
            .arg(format!("--repo={}", path.display())));
        Self {
            repo: OstreeRepo {
                path: path.to_owned(),
            },
        }
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
        Command::new("ostree")
            .arg(format!("--repo={}", self.repo.path.display()))
            .args(["pull-local", "--gpg-verify"])
            .arg(format!("--remote={remote}"))
            .arg(&source.path)
            .arg(branch)
            .output()
            .expect("ostree pull-local runs")
            .status
            .success()
    }
}

pub const PUBLISHER: &str = "Publisher <publisher@example.org>";

/// A publisher key, a server repository and a client whose remote `origin` trusts the key
/// through `<repo>/origin.trustedkeys.gpg` (`ostree remote add --gpg-import`); both the
/// server and the remote have collection ID `org.example.Os`.
pub struct World {
    pub publisher: Gpg,
    pub server: OstreeRepo,
    pub client: Client,
    pub roots: TrustRoots,
    pub dir: TempDir,
}

/// The ref the trust tests commit to.
pub const OS_REF: &str = "os/x86_64/stable";

impl World {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let publisher = Gpg::new(
            &dir.path().join("gnupg-publisher"),
            PUBLISHER,
            "ed25519",
            "sign",
            "never",
            &[],
        );
        let server = OstreeRepo::init(&dir.path().join("server"), Some("org.example.Os"));
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

    /// A second key in its own GnuPG home.
    pub fn key(
        &self,
        name: &str,
        uid: &str,
        algo: &str,
        usage: &str,
        expire: &str,
        conf: &[&str],
    ) -> Gpg {
        Gpg::new(
            &self.path(&format!("gnupg-{name}")),
            uid,
            algo,
            usage,
            expire,
            conf,
        )
    }

    /// An ed25519 signing key that never expires: what most tests need.
    pub fn signing_key(&self, name: &str, uid: &str) -> Gpg {
        self.key(name, uid, "ed25519", "sign", "never", &[])
    }

    /// A commit of the OS ref on the server, with `subject`, signed by `key`.
    pub fn commit_by(&self, key: &Gpg, subject: &str) -> Checksum {
        self.server.commit_signed(OS_REF, subject, key, &[])
    }

    /// Checks `commit` on the server as remote `name`, trusting `key`, would.
    pub fn verify_as(
        &self,
        name: &str,
        key: &Gpg,
        commit: &Checksum,
    ) -> Result<Verdict, TrustError> {
        verify(&self.trust(name, key), &self.server, commit)
    }

    /// Whether libostree, pulling the OS ref from the server through remote `name`, accepts it.
    pub fn libostree_accepts(&self, name: &str) -> bool {
        self.client.libostree_accepts(name, &self.server, OS_REF)
    }

    /// Adds remote `name` trusting `key` (exported after whatever the test did to it).
    pub fn trust(&self, name: &str, key: &Gpg) -> RemotePolicy {
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
    source: &OstreeRepo,
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
