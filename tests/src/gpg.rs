//! Throwaway OpenPGP keys made by the real `gpg`, in their own GNUPGHOME.

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cmd::{opt_path, Tool};
use crate::error::{FixtureError, IoContext, Result};

/// A signing key in a GNUPGHOME of its own, with its public part exported. Clones share the
/// GNUPGHOME; its gpg-agent is stopped when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct GpgKey {
    /// The GNUPGHOME holding the secret key.
    pub homedir: PathBuf,
    /// Primary key fingerprint, 40 upper-case hex digits.
    pub fingerprint: String,
    /// Long key ID: the last 16 hex digits of the fingerprint.
    pub key_id: String,
    /// The user ID the key was made with.
    pub uid: String,
    /// Binary public keyring (`gpg --export`), what `ostree remote add --gpg-import` takes.
    pub public_keyring: PathBuf,
    /// ASCII-armoured public key.
    pub public_armored: PathBuf,
    _agent: Arc<AgentGuard>,
}

#[derive(Debug)]
struct AgentGuard {
    homedir: PathBuf,
}

impl GpgKey {
    /// Makes an ed25519 signing key that never expires. `homedir` becomes the GNUPGHOME
    /// (created, mode 0700); the exported public keys are written inside it.
    pub fn generate(homedir: &Path, uid: &str) -> Result<GpgKey> {
        Self::generate_with(homedir, uid, "ed25519", "never")
    }

    /// Like [`GpgKey::generate`] with another algorithm (`rsa3072`, …) or expiry (`1d`,
    /// `seconds=2`, an ISO date), as `gpg --quick-gen-key` takes them.
    pub fn generate_with(homedir: &Path, uid: &str, algo: &str, expire: &str) -> Result<GpgKey> {
        fs::create_dir_all(homedir).at("create GNUPGHOME", homedir)?;
        fs::set_permissions(homedir, fs::Permissions::from_mode(0o700)).at("chmod 700", homedir)?;
        Self::gpg(homedir)
            .args(["--batch", "--passphrase", "", "--quick-gen-key", uid, algo])
            .args(["sign", expire])
            .run()?;
        let listing = Self::gpg(homedir)
            .args(["--list-keys", "--with-colons"])
            .stdout()?;
        let fingerprint = listing
            .lines()
            .find(|line| line.starts_with("fpr:"))
            .and_then(|line| line.split(':').nth(9))
            .filter(|fpr| fpr.len() == 40)
            .ok_or_else(|| {
                FixtureError::Unexpected(format!(
                    "no fingerprint in `gpg --list-keys --with-colons` output:\n{listing}"
                ))
            })?
            .to_string();
        let key_id = fingerprint[24..].to_string();
        let public_keyring = homedir.join("exported-public.gpg");
        let public_armored = homedir.join("exported-public.asc");
        let key = GpgKey {
            homedir: homedir.to_path_buf(),
            fingerprint,
            key_id,
            uid: uid.to_string(),
            public_keyring,
            public_armored,
            _agent: Arc::new(AgentGuard {
                homedir: homedir.to_path_buf(),
            }),
        };
        key.export_public(&key.public_keyring, false)?;
        key.export_public(&key.public_armored, true)?;
        Ok(key)
    }

    /// Writes the public key (and its current signatures: revocations, new subkeys) to `path`.
    pub fn export_public(&self, path: &Path, armor: bool) -> Result<()> {
        let mut tool = self
            .command()
            .arg("--batch")
            .arg(opt_path("--output", path));
        if armor {
            tool = tool.arg("--armor");
        }
        if path.exists() {
            fs::remove_file(path).at("remove old export", path)?;
        }
        tool.args(["--export", &self.fingerprint]).run()?;
        Ok(())
    }

    /// `gpg` with this key's GNUPGHOME, for variants the tests make themselves (subkeys,
    /// revocations, expiry changes).
    pub fn command(&self) -> Tool {
        Self::gpg(&self.homedir)
    }

    /// The two arguments `ostree commit`, `ostree summary`, `flatpak build-export` and
    /// `flatpak build-update-repo` take to sign with this key.
    pub fn sign_args(&self) -> [OsString; 2] {
        [
            OsString::from(format!("--gpg-sign={}", self.fingerprint)),
            opt_path("--gpg-homedir", &self.homedir),
        ]
    }

    fn gpg(homedir: &Path) -> Tool {
        Tool::new("gpg").env("GNUPGHOME", homedir).arg("--quiet")
    }
}

impl Drop for AgentGuard {
    fn drop(&mut self) {
        // Each GNUPGHOME starts its own gpg-agent; stop it so tests leave no daemons behind.
        let _ = Tool::new("gpgconf")
            .env("GNUPGHOME", &self.homedir)
            .args(["--kill", "all"])
            .output();
    }
}
