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
        Self::generate_with_usage(homedir, uid, algo, "sign", expire)
    }

    /// Like [`GpgKey::generate_with`] with the primary key's usage as well: `cert` makes a
    /// primary key that cannot sign, for tests that sign with a subkey ([`GpgKey::add_subkey`]).
    pub fn generate_with_usage(
        homedir: &Path,
        uid: &str,
        algo: &str,
        usage: &str,
        expire: &str,
    ) -> Result<GpgKey> {
        fs::create_dir_all(homedir).at("create GNUPGHOME", homedir)?;
        fs::set_permissions(homedir, fs::Permissions::from_mode(0o700)).at("chmod 700", homedir)?;
        Self::gpg(homedir)
            .args(["--batch", "--passphrase", "", "--quick-gen-key", uid, algo])
            .args([usage, expire])
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

    /// Adds a subkey (`--quick-add-key FPR ALGO USAGE EXPIRE`), re-exports the public key and
    /// returns the subkey's fingerprint. gpg signs with the newest signing subkey.
    pub fn add_subkey(&mut self, algo: &str, usage: &str, expire: &str) -> Result<String> {
        self.command()
            .args(["--batch", "--passphrase", "", "--pinentry-mode", "loopback"])
            .args(["--quick-add-key", &self.fingerprint, algo, usage, expire])
            .run()?;
        let listing = self
            .command()
            .args(["--list-keys", "--with-colons"])
            .stdout()?;
        let subkey = listing
            .lines()
            .filter_map(|line| line.strip_prefix("fpr:"))
            .filter_map(|rest| rest.split(':').nth(8))
            .next_back()
            .filter(|fpr| *fpr != self.fingerprint)
            .ok_or_else(|| FixtureError::Unexpected(format!("no subkey listed:\n{listing}")))?
            .to_string();
        self.refresh_exports()?;
        Ok(subkey)
    }

    /// Runs `gpg --edit-key` with `commands` (one per line) and re-exports the public key.
    pub fn edit_key(&self, commands: &[&str]) -> Result<()> {
        self.command()
            .args(["--batch", "--passphrase", "", "--pinentry-mode", "loopback"])
            .args(["--command-fd", "0", "--status-fd", "2"])
            .args(["--edit-key", &self.fingerprint])
            .stdin(format!("{}\n", commands.join("\n")))
            .run()?;
        self.refresh_exports()
    }

    /// Revokes the primary key with the certificate gpg made when it generated the key, and
    /// re-exports the public key with the revocation.
    pub fn revoke(&self) -> Result<()> {
        let certificate = self
            .homedir
            .join("openpgp-revocs.d")
            .join(format!("{}.rev", self.fingerprint));
        let text = fs::read_to_string(&certificate).at("read", &certificate)?;
        // gpg prefixes the armour line with ':' so the certificate is not imported by mistake.
        let armored = text.replace(":-----BEGIN PGP", "-----BEGIN PGP");
        let path = self.homedir.join("revocation.asc");
        fs::write(&path, armored).at("write", &path)?;
        self.command()
            .arg("--batch")
            .arg("--import")
            .arg(&path)
            .run()?;
        self.refresh_exports()
    }

    /// Replaces `gpg.conf` (`faked-system-time`, `digest-algo`, …): it applies to `gpg` and to
    /// `ostree` signing through gpgme alike.
    pub fn set_conf(&self, lines: &[&str]) -> Result<()> {
        Self::write_conf(&self.homedir, lines)
    }

    /// Writes `gpg.conf` into a GNUPGHOME before a key is made in it.
    pub fn write_conf(homedir: &Path, lines: &[&str]) -> Result<()> {
        fs::create_dir_all(homedir).at("create GNUPGHOME", homedir)?;
        fs::set_permissions(homedir, fs::Permissions::from_mode(0o700)).at("chmod 700", homedir)?;
        let path = homedir.join("gpg.conf");
        let mut text = lines.join("\n");
        text.push('\n');
        fs::write(&path, text).at("write", &path)
    }

    /// A binary keyring holding this key's primary key and user IDs with `donor`'s subkeys
    /// (and their binding signatures, made by `donor`'s primary key): a keyring claiming a
    /// subkey that is not bound to the key it is listed under.
    pub fn graft_subkeys_of(&self, donor: &GpgKey, path: &Path) -> Result<()> {
        const PUBLIC_SUBKEY: u8 = 14;
        let own =
            openpgp_packets(&fs::read(&self.public_keyring).at("read", &self.public_keyring)?)?;
        let theirs =
            openpgp_packets(&fs::read(&donor.public_keyring).at("read", &donor.public_keyring)?)?;
        let mut out = Vec::new();
        for (_, bytes) in own.iter().take_while(|(tag, _)| *tag != PUBLIC_SUBKEY) {
            out.extend_from_slice(bytes);
        }
        for (_, bytes) in theirs.iter().skip_while(|(tag, _)| *tag != PUBLIC_SUBKEY) {
            out.extend_from_slice(bytes);
        }
        fs::write(path, out).at("write", path)
    }

    fn refresh_exports(&self) -> Result<()> {
        self.export_public(&self.public_keyring, false)?;
        self.export_public(&self.public_armored, true)
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

/// Splits a binary OpenPGP stream (RFC 4880 section 4.2) into `(tag, whole packet)` pairs.
fn openpgp_packets(bytes: &[u8]) -> Result<Vec<(u8, Vec<u8>)>> {
    let bad = |what: &str| FixtureError::Unexpected(format!("not an OpenPGP keyring: {what}"));
    let mut packets = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let ctb = bytes[at];
        if ctb & 0x80 == 0 {
            return Err(bad("packet without its marker bit"));
        }
        let byte = |i: usize| {
            bytes
                .get(i)
                .copied()
                .map(usize::from)
                .ok_or_else(|| bad("cut"))
        };
        let (tag, header, body) = if ctb & 0x40 != 0 {
            let first = byte(at + 1)?;
            match first {
                0..=191 => (ctb & 0x3f, 2, first),
                192..=223 => (ctb & 0x3f, 3, ((first - 192) << 8) + byte(at + 2)? + 192),
                255 => {
                    let mut len = 0;
                    for i in 0..4 {
                        len = (len << 8) | byte(at + 2 + i)?;
                    }
                    (ctb & 0x3f, 6, len)
                }
                _ => return Err(bad("partial body lengths")),
            }
        } else {
            let tag = (ctb >> 2) & 0x0f;
            let size = match ctb & 0x03 {
                0 => 1,
                1 => 2,
                2 => 4,
                _ => return Err(bad("indeterminate length")),
            };
            let mut len = 0;
            for i in 0..size {
                len = (len << 8) | byte(at + 1 + i)?;
            }
            (tag, 1 + size, len)
        };
        let end = at
            .checked_add(header + body)
            .filter(|end| *end <= bytes.len())
            .ok_or_else(|| bad("packet longer than the keyring"))?;
        packets.push((tag, bytes[at..end].to_vec()));
        at = end;
    }
    Ok(packets)
}
