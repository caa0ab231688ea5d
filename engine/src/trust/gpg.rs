//! OpenPGP verification of `ostree.gpgsigs` and `summary.sig` with rPGP, plus the policy rPGP
//! leaves to its users: key and subkey validity, revocation, expiry, signing capability,
//! binding signatures, digest strength and signature times.
//!
//! One valid signature by a trusted key suffices, as in libostree.

use std::collections::HashMap;
use std::io::{self, Read};
use std::path::PathBuf;

use pgp::armor::Dearmor;
use pgp::composed::{Deserializable, DetachedSignature, SignedPublicKey, SignedPublicSubKey};
use pgp::crypto::hash::HashAlgorithm;
use pgp::packet::{Packet, PacketParser, RevocationCode, Signature, SignatureType, SubpacketData};
use pgp::types::{KeyDetails, Tag};

use super::error::Rejection;
use super::metadata::{MAX_KEYS_PER_UNNAMED_SIGNATURE, MAX_SIGNATURES_PER_KIND};
use crate::causes::Causes;

/// One OpenPGP signature packet is at most a few kilobytes (RSA-16384 is 2 KiB).
pub const MAX_SIGNATURE_BLOB: usize = 64 * 1024;

/// What a signature rPGP cannot parse is; rPGP's error says why.
const UNPARSABLE_SIGNATURE: &str = "not a well-formed OpenPGP signature";

/// The key that made a valid signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpgSigner {
    /// Fingerprint of the primary key, upper-case hex.
    pub primary_fingerprint: String,
    /// Fingerprint of the key that signed: the primary key or one of its subkeys.
    pub signing_fingerprint: String,
    /// The primary User ID, when the key has one.
    pub user_id: Option<String>,
    /// When the signature was made, seconds since the Unix epoch.
    pub signed_at: u64,
}

/// The OpenPGP keys a remote trusts. Copies of one key from several files are merged, so a
/// revocation in any of them applies.
#[derive(Debug, Clone, Default)]
pub struct GpgKeyring {
    certs: Vec<SignedPublicKey>,
    origins: Vec<PathBuf>,
}

impl GpgKeyring {
    /// Parses key files (binary keyrings as `gpg --export` writes them, or ASCII-armored
    /// keys). Keys that cannot be parsed are skipped with a warning; they cannot vouch for
    /// anything.
    pub fn from_files(files: Vec<(PathBuf, Vec<u8>)>) -> Self {
        let mut by_fingerprint: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut keyring = Self::default();
        for (path, bytes) in files {
            let parsed = match parse_keys(&bytes) {
                Ok(keys) => keys,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %Causes(&e), "unreadable keyring");
                    continue;
                }
            };
            for key in parsed {
                let key = match key {
                    Ok(key) => key,
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %Causes(&e), "skipping unreadable key");
                        continue;
                    }
                };
                let fingerprint = key.primary_key.fingerprint().as_bytes().to_vec();
                match by_fingerprint.get(&fingerprint) {
                    Some(&index) => merge_cert(&mut keyring.certs[index], key),
                    None => {
                        by_fingerprint.insert(fingerprint, keyring.certs.len());
                        keyring.certs.push(key);
                    }
                }
            }
            keyring.origins.push(path);
        }
        keyring
    }

    /// Whether the keyring holds no key.
    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }

    /// Number of distinct primary keys.
    pub fn len(&self) -> usize {
        self.certs.len()
    }

    /// The files the keys came from.
    pub fn origins(&self) -> &[PathBuf] {
        &self.origins
    }

    /// Primary key fingerprints, upper-case hex.
    pub fn fingerprints(&self) -> Vec<String> {
        self.certs
            .iter()
            .map(|cert| fingerprint_hex(&cert.primary_key))
            .collect()
    }

    /// Checks detached signatures (each blob one or more binary signature packets) over
    /// `data` at time `now` (seconds since the Unix epoch). Returns the first valid signer, or
    /// why each signature was refused.
    pub fn verify(
        &self,
        data: &[u8],
        signatures: &[Vec<u8>],
        now: u64,
    ) -> Result<GpgSigner, Vec<Rejection>> {
        let mut rejections = Vec::new();
        let mut packets_found = 0usize;
        let mut readable = Vec::new();
        for blob in signatures {
            if blob.len() > MAX_SIGNATURE_BLOB {
                packets_found += 1;
                rejections.push(Rejection::malformed(format!(
                    "a {}-byte OpenPGP signature",
                    blob.len()
                )));
                continue;
            }
            let packets = match DetachedSignature::from_bytes_many(&blob[..]) {
                Ok(packets) => packets,
                Err(e) => {
                    packets_found += 1;
                    rejections.push(Rejection::unreadable(UNPARSABLE_SIGNATURE, e));
                    continue;
                }
            };
            for packet in packets {
                packets_found += 1;
                if packets_found > MAX_SIGNATURES_PER_KIND {
                    // Counted, not kept: the refusal says how many there were.
                    continue;
                }
                match packet {
                    Ok(detached) => readable.push(detached),
                    Err(e) => rejections.push(Rejection::unreadable(UNPARSABLE_SIGNATURE, e)),
                }
            }
        }
        if packets_found > MAX_SIGNATURES_PER_KIND {
            return Err(vec![Rejection::TooManySignatures {
                count: packets_found,
                max: MAX_SIGNATURES_PER_KIND,
            }]);
        }
        for detached in readable {
            match self.check_signature(&detached.signature, data, now) {
                Ok(signer) => return Ok(signer),
                Err(rejection) => rejections.push(rejection),
            }
        }
        Err(rejections)
    }

    fn check_signature(
        &self,
        signature: &Signature,
        data: &[u8],
        now: u64,
    ) -> Result<GpgSigner, Rejection> {
        if signature.typ() != Some(SignatureType::Binary) {
            return Err(Rejection::malformed(format!(
                "a {:?} signature, not one over binary data",
                signature.typ()
            )));
        }
        let mut best: Option<Rejection> = None;
        let names_issuer =
            !signature.issuer_fingerprint().is_empty() || !signature.issuer_key_id().is_empty();
        let mut unnamed_tries = 0usize;
        for cert in &self.certs {
            for component in components(cert) {
                if !issued_by(signature, cert, &component) {
                    continue;
                }
                if !names_issuer {
                    unnamed_tries += 1;
                    if unnamed_tries > MAX_KEYS_PER_UNNAMED_SIGNATURE {
                        break;
                    }
                }
                let outcome = check_with_component(cert, &component, signature, data, now);
                match outcome {
                    Ok(signer) => return Ok(signer),
                    Err(rejection) => {
                        if best
                            .as_ref()
                            .is_none_or(|b| rejection.weight() > b.weight())
                        {
                            best = Some(rejection);
                        }
                    }
                }
            }
        }
        Err(best.unwrap_or_else(|| Rejection::UnknownKey {
            key: issuer_label(signature),
        }))
    }
}

/// Parses transferable public keys from binary or ASCII-armored data. GnuPG keyrings (and
/// those libostree writes with `remote gpg-import`) interleave trust packets, which carry
/// local trust caches, not key material; they are dropped before the keys are assembled.
fn parse_keys(bytes: &[u8]) -> io::Result<Vec<pgp::errors::Result<SignedPublicKey>>> {
    let binary = if bytes.first().is_some_and(|b| b & 0x80 != 0) {
        bytes.to_vec()
    } else {
        let mut dearmored = Vec::new();
        Dearmor::new(bytes).read_to_end(&mut dearmored)?;
        dearmored
    };
    let packets = PacketParser::new(&binary[..])
        .filter(|packet| {
            !matches!(
                packet,
                Ok(Packet::Trust(_) | Packet::Marker(_) | Packet::Padding(_))
                    | Err(pgp::errors::Error::Unsupported { .. })
            )
        })
        .peekable();
    Ok(SignedPublicKey::from_packets(packets).collect())
}

/// The primary key or one subkey of a certificate.
enum Component<'a> {
    Primary,
    Subkey(&'a SignedPublicSubKey),
}

fn components(cert: &SignedPublicKey) -> impl Iterator<Item = Component<'_>> {
    std::iter::once(Component::Primary).chain(cert.public_subkeys.iter().map(Component::Subkey))
}

fn component_details<'a>(
    cert: &'a SignedPublicKey,
    component: &'a Component<'a>,
) -> &'a dyn KeyDetails {
    match component {
        Component::Primary => &cert.primary_key,
        Component::Subkey(sub) => &sub.key,
    }
}

/// Whether the signature names this key as its issuer (or names no issuer at all).
fn issued_by(signature: &Signature, cert: &SignedPublicKey, component: &Component<'_>) -> bool {
    let fingerprints = signature.issuer_fingerprint();
    let key_ids = signature.issuer_key_id();
    if fingerprints.is_empty() && key_ids.is_empty() {
        return true;
    }
    let details = component_details(cert, component);
    let (fingerprint, key_id) = (details.fingerprint(), details.legacy_key_id());
    fingerprints.iter().any(|f| **f == fingerprint) || key_ids.iter().any(|k| **k == key_id)
}

fn check_with_component(
    cert: &SignedPublicKey,
    component: &Component<'_>,
    signature: &Signature,
    data: &[u8],
    now: u64,
) -> Result<GpgSigner, Rejection> {
    let label = component_label(cert, component);
    let verified = match component {
        Component::Primary => signature.verify(&cert.primary_key, data),
        Component::Subkey(sub) => signature.verify(&sub.key, data),
    };
    if verified.is_err() {
        return Err(Rejection::BadSignature { key: label });
    }

    if let Some(hash) = signature.hash_alg().filter(|h| is_weak_hash(*h)) {
        return Err(Rejection::WeakHash {
            key: label,
            hash: hash.to_string(),
        });
    }
    let Some(created) = signature.created().map(|t| u64::from(t.as_secs())) else {
        return Err(Rejection::malformed("a signature without a creation time"));
    };
    if created > now {
        return Err(Rejection::CreatedInFuture {
            key: label,
            created_at: created,
        });
    }
    if let Some(expires) = expiry(created, signature.signature_expiration_time()) {
        if now >= expires {
            return Err(Rejection::SignatureExpired {
                key: label,
                expired_at: expires,
            });
        }
    }
    let key_created = u64::from(component_details(cert, component).created_at().as_secs());
    if key_created > created {
        return Err(Rejection::KeyNewerThanSignature { key: label });
    }

    let primary = check_primary(cert, now)?;
    match component {
        Component::Primary => {
            if primary.flags_present && !primary.can_sign {
                return Err(Rejection::NotForSigning { key: label });
            }
        }
        Component::Subkey(sub) => check_subkey(cert, sub, &label, now)?,
    }
    Ok(GpgSigner {
        primary_fingerprint: fingerprint_hex(&cert.primary_key),
        signing_fingerprint: fingerprint_hex(component_details(cert, component)),
        user_id: primary_user_id(cert),
        signed_at: created,
    })
}

struct PrimaryState {
    flags_present: bool,
    can_sign: bool,
}

/// The primary key is usable: not revoked, carries a valid self-signature, not expired.
fn check_primary(cert: &SignedPublicKey, now: u64) -> Result<PrimaryState, Rejection> {
    let primary = &cert.primary_key;
    let label = || component_label(cert, &Component::Primary);
    for revocation in &cert.details.revocation_signatures {
        if revocation.typ() == Some(SignatureType::KeyRevocation)
            && usable_self_signature(revocation, now)
            && revocation.verify_key(primary).is_ok()
        {
            return Err(Rejection::KeyRevoked {
                key: label(),
                reason: revocation_reason(revocation),
            });
        }
    }

    let direct = cert
        .details
        .direct_signatures
        .iter()
        .filter(|sig| sig.typ() == Some(SignatureType::Key))
        .filter(|sig| usable_self_signature(sig, now) && sig.verify_key(primary).is_ok());
    let certifications = cert.details.users.iter().flat_map(|user| {
        user.signatures
            .iter()
            .filter(|sig| {
                sig.is_certification() && sig.typ() != Some(SignatureType::CertRevocation)
            })
            .filter(move |sig| {
                usable_self_signature(sig, now)
                    && sig
                        .verify_certification(primary, Tag::UserId, &user.id)
                        .is_ok()
            })
    });
    let Some(newest) = direct
        .chain(certifications)
        .max_by_key(|sig| created_secs(sig))
    else {
        return Err(Rejection::NoSelfSignature { key: label() });
    };

    let key_created = u64::from(primary.created_at().as_secs());
    if let Some(expires) = expiry(key_created, newest.key_expiration_time()) {
        if now >= expires {
            return Err(Rejection::KeyExpired {
                key: label(),
                expired_at: expires,
            });
        }
    }
    Ok(PrimaryState {
        flags_present: has_key_flags(newest),
        can_sign: newest.key_flags().sign(),
    })
}

/// The subkey is bound by a valid binding signature (with the subkey's back-signature),
/// allowed to sign, not revoked and not expired.
fn check_subkey(
    cert: &SignedPublicKey,
    sub: &SignedPublicSubKey,
    label: &str,
    now: u64,
) -> Result<(), Rejection> {
    let primary = &cert.primary_key;
    for revocation in &sub.signatures {
        if revocation.typ() == Some(SignatureType::SubkeyRevocation)
            && usable_self_signature(revocation, now)
            && revocation.verify_subkey_binding(primary, &sub.key).is_ok()
        {
            return Err(Rejection::KeyRevoked {
                key: label.to_owned(),
                reason: revocation_reason(revocation),
            });
        }
    }
    let binding = sub
        .signatures
        .iter()
        .filter(|sig| sig.typ() == Some(SignatureType::SubkeyBinding))
        .filter(|sig| {
            usable_self_signature(sig, now) && sig.verify_subkey_binding(primary, &sub.key).is_ok()
        })
        .max_by_key(|sig| created_secs(sig));
    let Some(binding) = binding else {
        return Err(Rejection::SubkeyNotBound {
            key: label.to_owned(),
        });
    };
    if !binding.key_flags().sign() {
        return Err(Rejection::NotForSigning {
            key: label.to_owned(),
        });
    }
    // A signing subkey must sign its primary back, or anyone could claim someone else's key.
    let back_signed = binding
        .embedded_signature()
        .is_some_and(|back| back.verify_primary_key_binding(&sub.key, primary).is_ok());
    if !back_signed {
        return Err(Rejection::SubkeyNotBound {
            key: label.to_owned(),
        });
    }
    let sub_created = u64::from(sub.key.created_at().as_secs());
    if let Some(expires) = expiry(sub_created, binding.key_expiration_time()) {
        if now >= expires {
            return Err(Rejection::KeyExpired {
                key: label.to_owned(),
                expired_at: expires,
            });
        }
    }
    Ok(())
}

/// MD5, SHA-1 and RIPEMD-160 admit practical collisions (or are close to it); a signature over
/// data with one of them can be transplanted onto other data.
fn is_weak_hash(hash: HashAlgorithm) -> bool {
    matches!(
        hash,
        HashAlgorithm::None | HashAlgorithm::Md5 | HashAlgorithm::Sha1 | HashAlgorithm::Ripemd160
    )
}

/// Self-signatures (bindings, certifications, revocations) count when they were made by now
/// and do not use MD5. SHA-1 stays accepted here: forging one needs a second preimage, and
/// many long-lived publisher keys still carry SHA-1 bindings.
fn usable_self_signature(signature: &Signature, now: u64) -> bool {
    let hash_ok = !matches!(
        signature.hash_alg(),
        Some(HashAlgorithm::None | HashAlgorithm::Md5) | None
    );
    hash_ok
        && signature
            .created()
            .is_some_and(|t| u64::from(t.as_secs()) <= now)
}

fn created_secs(signature: &Signature) -> u32 {
    signature.created().map(|t| t.as_secs()).unwrap_or(0)
}

/// `start + duration`, or None when the duration is absent or zero (never expires).
fn expiry(start: u64, duration: Option<pgp::types::Duration>) -> Option<u64> {
    duration
        .map(|d| u64::from(d.as_secs()))
        .filter(|secs| *secs > 0)
        .map(|secs| start.saturating_add(secs))
}

fn has_key_flags(signature: &Signature) -> bool {
    signature.config().is_some_and(|config| {
        config
            .hashed_subpackets()
            .any(|packet| matches!(packet.data, SubpacketData::KeyFlags(_)))
    })
}

fn revocation_reason(signature: &Signature) -> Option<String> {
    let code = signature.revocation_reason_code().map(|code| match code {
        RevocationCode::NoReason => "no reason given".to_owned(),
        RevocationCode::KeySuperseded => "superseded".to_owned(),
        RevocationCode::KeyCompromised => "compromised".to_owned(),
        RevocationCode::KeyRetired => "retired".to_owned(),
        other => format!("reason {}", u8::from(*other)),
    });
    let text = signature
        .revocation_reason_string()
        .map(|s| {
            String::from_utf8_lossy(s)
                .trim()
                .chars()
                .take(200)
                .collect::<String>()
        })
        .filter(|s| !s.is_empty());
    match (code, text) {
        (Some(code), Some(text)) => Some(format!("{code}: {text}")),
        (code, text) => code.or(text),
    }
}

fn fingerprint_hex(key: &(impl KeyDetails + ?Sized)) -> String {
    format!("{:X}", key.fingerprint())
}

fn primary_user_id(cert: &SignedPublicKey) -> Option<String> {
    let users = &cert.details.users;
    let chosen = users
        .iter()
        .find(|user| user.signatures.iter().any(|sig| sig.is_primary()))
        .or_else(|| users.first())?;
    let id = String::from_utf8_lossy(chosen.id.id());
    Some(id.chars().take(200).collect())
}

/// `key 0xFPR (User ID)` or `subkey 0xSUBFPR of key 0xFPR (User ID)`.
fn component_label(cert: &SignedPublicKey, component: &Component<'_>) -> String {
    let primary = fingerprint_hex(&cert.primary_key);
    let user = primary_user_id(cert)
        .map(|id| format!(" ({id})"))
        .unwrap_or_default();
    match component {
        Component::Primary => format!("key 0x{primary}{user}"),
        Component::Subkey(sub) => {
            format!(
                "subkey 0x{} of key 0x{primary}{user}",
                fingerprint_hex(&sub.key)
            )
        }
    }
}

/// How an unknown signer names itself: its fingerprint when it gives one, else its key ID.
fn issuer_label(signature: &Signature) -> String {
    if let Some(fingerprint) = signature.issuer_fingerprint().first() {
        return format!("key 0x{fingerprint:X}");
    }
    match signature.issuer_key_id().first() {
        Some(key_id) => format!("key 0x{}", hex::encode_upper(key_id.as_ref())),
        None => "a key that does not name itself".to_owned(),
    }
}

/// Folds another copy of the same primary key into `into`: every signature and subkey of both
/// counts.
fn merge_cert(into: &mut SignedPublicKey, other: SignedPublicKey) {
    into.details
        .revocation_signatures
        .extend(other.details.revocation_signatures);
    into.details
        .direct_signatures
        .extend(other.details.direct_signatures);
    into.details.users.extend(other.details.users);
    into.details
        .user_attributes
        .extend(other.details.user_attributes);
    for sub in other.public_subkeys {
        match into
            .public_subkeys
            .iter_mut()
            .find(|existing| existing.key.fingerprint() == sub.key.fingerprint())
        {
            Some(existing) => existing.signatures.extend(sub.signatures),
            None => into.public_subkeys.push(sub),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_of_signatures_are_refused_without_checking_them() {
        let keyring = GpgKeyring::from_files(Vec::new());
        let junk = vec![vec![0xffu8; 8]; 3000];
        let refused = keyring.verify(b"commit", &junk, 0).expect_err("refused");
        assert_eq!(
            refused,
            vec![Rejection::TooManySignatures {
                count: 3000,
                max: MAX_SIGNATURES_PER_KIND
            }]
        );
        // Up to the limit each is looked at, and refused for what it is.
        let refused = keyring
            .verify(b"commit", &junk[..MAX_SIGNATURES_PER_KIND], 0)
            .expect_err("refused");
        assert_eq!(refused.len(), MAX_SIGNATURES_PER_KIND);
        assert!(refused
            .iter()
            .all(|r| matches!(r, Rejection::Malformed { .. })));
    }
}
