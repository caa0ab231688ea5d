//! ed25519 verification of `ostree.sign.ed25519` (64-byte signatures over the same bytes as
//! GPG signatures) with strict verification. Keys are base64 public keys, one per line.

use std::collections::HashSet;
use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::{Signature, VerifyingKey};

use super::error::Rejection;
use super::keyring::{read_key_file, Ed25519KeySources, KeySourceError};
use super::metadata::{MAX_KEYS_PER_UNNAMED_SIGNATURE, MAX_SIGNATURES_PER_KIND};

/// Bytes of an ed25519 public key.
pub const ED25519_PUBLIC_KEY_LEN: usize = 32;
/// Bytes of an ed25519 signature.
pub const ED25519_SIGNATURE_LEN: usize = 64;

/// Trusted and revoked ed25519 public keys.
#[derive(Debug, Clone, Default)]
pub struct Ed25519Keys {
    trusted: Vec<VerifyingKey>,
    revoked: HashSet<[u8; ED25519_PUBLIC_KEY_LEN]>,
}

impl Ed25519Keys {
    /// Loads keys as libostree does: the remote's inline key and key file must be readable and
    /// hold a key; unreadable system files are skipped. Revoked lists apply to every key.
    pub fn load(sources: &Ed25519KeySources) -> Result<Self, KeySourceError> {
        let mut keys = Self::default();
        if let Some(inline) = &sources.inline_key {
            let key = decode_public_key(inline).ok_or_else(|| {
                KeySourceError::Invalid(
                    "verification-ed25519-key is not a base64-encoded 32-byte ed25519 public key"
                        .to_owned(),
                )
            })?;
            keys.add_trusted(key);
        }
        if let Some(path) = &sources.key_file {
            let found = read_key_list(path)?;
            if found.is_empty() {
                return Err(KeySourceError::Invalid(format!(
                    "verification-ed25519-file {} holds no ed25519 public key",
                    path.display()
                )));
            }
            found.into_iter().for_each(|key| keys.add_trusted(key));
        }
        for path in &sources.system_trusted {
            match read_key_list(path) {
                Ok(found) => found.into_iter().for_each(|key| keys.add_trusted(key)),
                Err(e) => {
                    tracing::debug!(error = %crate::causes::Causes(&e), "skipping ed25519 key file")
                }
            }
        }
        for path in &sources.revoked {
            match read_key_list(path) {
                Ok(found) => keys.revoked.extend(found),
                Err(e) => {
                    tracing::warn!(error = %crate::causes::Causes(&e), "unreadable revoked ed25519 key file")
                }
            }
        }
        Ok(keys)
    }

    /// Keys given directly, for callers that already hold them.
    pub fn from_keys(
        trusted: impl IntoIterator<Item = [u8; ED25519_PUBLIC_KEY_LEN]>,
        revoked: impl IntoIterator<Item = [u8; ED25519_PUBLIC_KEY_LEN]>,
    ) -> Self {
        let mut keys = Self {
            trusted: Vec::new(),
            revoked: revoked.into_iter().collect(),
        };
        trusted.into_iter().for_each(|key| keys.add_trusted(key));
        keys
    }

    fn add_trusted(&mut self, key: [u8; ED25519_PUBLIC_KEY_LEN]) {
        match VerifyingKey::from_bytes(&key) {
            Ok(verifying) if !self.trusted.contains(&verifying) => self.trusted.push(verifying),
            Ok(_) => {}
            Err(_) => tracing::warn!(key = %STANDARD.encode(key), "not an ed25519 public key"),
        }
    }

    /// Whether no trusted key was loaded at all (revoked or not).
    pub fn is_empty(&self) -> bool {
        self.trusted.is_empty()
    }

    /// Trusted keys that are not revoked.
    pub fn usable_count(&self) -> usize {
        self.trusted
            .iter()
            .filter(|key| !self.revoked.contains(key.as_bytes()))
            .count()
    }

    /// Returns the base64 public key of the first trusted, unrevoked key that made one of the
    /// signatures, or why none counts.
    pub fn verify(&self, data: &[u8], signatures: &[Vec<u8>]) -> Result<String, Vec<Rejection>> {
        if signatures.len() > MAX_SIGNATURES_PER_KIND {
            return Err(vec![Rejection::TooManySignatures {
                count: signatures.len(),
                max: MAX_SIGNATURES_PER_KIND,
            }]);
        }
        let mut rejections = Vec::new();
        let mut checked = 0;
        for blob in signatures {
            let Ok(bytes) = <[u8; ED25519_SIGNATURE_LEN]>::try_from(blob.as_slice()) else {
                rejections.push(Rejection::malformed(format!(
                    "an ed25519 signature of {} bytes instead of {ED25519_SIGNATURE_LEN}",
                    blob.len()
                )));
                continue;
            };
            checked += 1;
            let signature = Signature::from_bytes(&bytes);
            // Ed25519 signatures name no key: each is tried against a bounded number.
            for key in self.trusted.iter().take(MAX_KEYS_PER_UNNAMED_SIGNATURE) {
                if key.verify_strict(data, &signature).is_err() {
                    continue;
                }
                if self.revoked.contains(key.as_bytes()) {
                    rejections.push(Rejection::Ed25519Revoked {
                        key: STANDARD.encode(key.as_bytes()),
                    });
                } else {
                    return Ok(STANDARD.encode(key.as_bytes()));
                }
            }
        }
        let revoked = rejections
            .iter()
            .any(|r| matches!(r, Rejection::Ed25519Revoked { .. }));
        if checked > 0 && !revoked {
            rejections.push(Rejection::Ed25519NoMatch {
                signatures: checked,
                keys: self.usable_count(),
            });
        }
        Err(rejections)
    }
}

/// One base64 key per line; blank lines and `#` comments are skipped, lines that are not a
/// 32-byte key are skipped with a warning.
fn read_key_list(path: &Path) -> Result<Vec<[u8; ED25519_PUBLIC_KEY_LEN]>, KeySourceError> {
    let bytes = read_key_file(path)?;
    let text = String::from_utf8_lossy(&bytes);
    let mut keys = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match decode_public_key(line) {
            Some(key) => keys.push(key),
            None => tracing::warn!(
                path = %path.display(),
                line = number + 1,
                "not a base64-encoded ed25519 public key"
            ),
        }
    }
    Ok(keys)
}

fn decode_public_key(text: &str) -> Option<[u8; ED25519_PUBLIC_KEY_LEN]> {
    let bytes = STANDARD.decode(text.trim()).ok()?;
    <[u8; ED25519_PUBLIC_KEY_LEN]>::try_from(bytes.as_slice()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer as _, SigningKey};

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn thousands_of_signatures_are_refused_without_checking_them() {
        let signer = key(1);
        let keys = Ed25519Keys::from_keys([signer.verifying_key().to_bytes()], []);
        let data = b"commit bytes";
        let mut signatures = vec![vec![7u8; ED25519_SIGNATURE_LEN]; 5000];
        // A valid signature among them does not help: the object is refused as a whole.
        signatures.push(signer.sign(data).to_bytes().to_vec());
        let refused = keys.verify(data, &signatures).expect_err("too many");
        assert_eq!(
            refused,
            vec![Rejection::TooManySignatures {
                count: 5001,
                max: MAX_SIGNATURES_PER_KIND
            }]
        );
        assert!(refused[0].describe("os").contains("5001 signatures"));

        // At the limit they are all checked, and the valid one counts.
        signatures.drain(..signatures.len() - MAX_SIGNATURES_PER_KIND);
        assert!(keys.verify(data, &signatures).is_ok());
    }

    #[test]
    fn each_signature_is_tried_against_a_bounded_number_of_keys() {
        let count = u8::try_from(MAX_KEYS_PER_UNNAMED_SIGNATURE + 1).expect("small");
        let signers: Vec<SigningKey> = (1..=count).map(key).collect();
        let keys = Ed25519Keys::from_keys(signers.iter().map(|k| k.verifying_key().to_bytes()), []);
        let data = b"commit bytes";
        let first = signers.first().expect("keys");
        let last = signers.last().expect("keys");
        assert!(keys
            .verify(data, &[first.sign(data).to_bytes().to_vec()])
            .is_ok());
        assert!(keys
            .verify(data, &[last.sign(data).to_bytes().to_vec()])
            .is_err());
    }
}
