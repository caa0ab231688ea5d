//! A remote's trust policy, read from its configuration the way libostree reads it, and the
//! checks every pulled commit and summary goes through.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use super::bindings::check_bindings;
use super::downgrade::{check_timestamp, InstalledCommit, UpdateKind};
use super::ed25519::Ed25519Keys;
use super::error::{DeltaCommits, Rejection, SignatureKind, SignedObject, TrustError};
use super::gpg::{GpgKeyring, GpgSigner};
use super::keyring::{Ed25519KeySources, GpgKeySources, KeySourceError};
use super::metadata::{CommitFacts, DetachedSignatures};
use super::{Destination, TrustRoots};
use crate::object::Checksum;

/// What the destination's configuration says about one remote: its name and its options
/// (`url`, `gpg-verify`, `collection-id`, ...) with values unescaped, as in the repository's
/// `config` or a `remotes.d/*.conf` file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteTrustConfig {
    /// The remote's name.
    pub name: String,
    /// Its `[remote "NAME"]` options, such as `gpg-verify` or `sign-verify`.
    pub options: BTreeMap<String, String>,
}

impl RemoteTrustConfig {
    /// The remote `name` with `options`.
    pub fn new<K: Into<String>, V: Into<String>>(
        name: impl Into<String>,
        options: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            name: name.into(),
            options: options
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.options.get(key).map(String::as_str)
    }

    /// The remote's collection ID; an empty value counts as none.
    pub fn collection_id(&self) -> Option<&str> {
        self.get("collection-id").filter(|id| !id.is_empty())
    }

    /// A GKeyFile boolean (`true`, `false`, `1`, `0`, trailing spaces ignored).
    fn boolean(&self, key: &str, default: bool) -> Result<bool, TrustError> {
        match self.get(key).map(str::trim_end) {
            None => Ok(default),
            Some("true" | "1") => Ok(true),
            Some("false" | "0") => Ok(false),
            Some(other) => Err(self.config_error(format!(
                "{key}={other} is not a boolean (use true or false)"
            ))),
        }
    }

    /// `sign-verify` / `sign-verify-summary`: a boolean, or a `;`-separated list of signature
    /// types. Returns whether ed25519 is required and whether keys must come from the remote
    /// itself (an explicit list makes libostree require them there).
    fn sign_verify(&self, key: &str) -> Result<Option<SignVerify>, TrustError> {
        let Some(value) = self.get(key).filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        match value {
            "true" | "1" => return Ok(Some(SignVerify::AnyType)),
            "false" | "0" => return Ok(None),
            _ => {}
        }
        let types: Vec<&str> = value
            .split(';')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .collect();
        for unsupported in types.iter().filter(|t| **t != "ed25519") {
            tracing::warn!(remote = %self.name, sign_type = %unsupported,
                "signature type cannot be verified by Ferry; only ed25519 signatures will count");
        }
        if types.contains(&"ed25519") {
            Ok(Some(SignVerify::Listed))
        } else {
            Err(self.config_error(format!(
                "{key}={value} names no signature type Ferry can verify (Ferry verifies ed25519)"
            )))
        }
    }

    fn keys_error(&self, source: KeySourceError) -> TrustError {
        TrustError::Keys {
            remote: self.name.as_str().into(),
            source,
        }
    }

    fn config_error(&self, detail: String) -> TrustError {
        TrustError::Config {
            remote: self.name.as_str().into(),
            detail,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SignVerify {
    /// `true`: any supported type, keys from the remote or the system directories.
    AnyType,
    /// An explicit list naming ed25519: keys must be configured on the remote.
    Listed,
}

/// Which kind of signature an accepted object carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signer {
    /// An OpenPGP key.
    Gpg(GpgSigner),
    /// The base64 public key.
    Ed25519(String),
}

/// The outcome of a commit check that passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every kind of signature the remote requires was found valid.
    Signed {
        /// The keys whose signatures were valid.
        signers: Vec<Signer>,
    },
    /// The remote verifies no signatures (`gpg-verify=false`, no `sign-verify`). Accepted,
    /// with every checksum still checked; listings show it as unsigned.
    Unsigned,
}

impl Verdict {
    /// For [`crate::schema::Update::signed`].
    pub fn is_signed(&self) -> bool {
        matches!(self, Self::Signed { .. })
    }
}

/// The outcome of a summary check that passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SummaryVerdict {
    /// `summary.sig` carries a valid signature of every required kind.
    Signed {
        /// The keys whose signatures were valid.
        signers: Vec<Signer>,
    },
    /// The remote does not ask for summary signatures: use the summary only to locate
    /// commits; each commit's own signature decides.
    NotRequired,
    /// The remote asks for summary signatures but the source has no `summary.sig` (drives
    /// made by `create-usb` never do): use the summary only to locate commits.
    Unsigned,
}

/// A commit offered by a source.
#[derive(Debug, Clone, Copy)]
pub struct CommitCandidate<'a> {
    /// The commit's checksum.
    pub checksum: Checksum,
    /// The `.commit` object's bytes.
    pub commit: &'a [u8],
    /// The `.commitmeta` object's bytes, when the source has one.
    pub detached_metadata: Option<&'a [u8]>,
    /// Where it comes from, as a person would name it (a repository path, a URL).
    pub source: &'a str,
}

/// A static delta's superblock offered by a source, split from its signed wrapper
/// ([`crate::delta::SuperblockFile`]).
#[derive(Debug, Clone, Copy)]
pub struct DeltaCandidate<'a> {
    /// The commit the delta starts from; None for a delta from scratch.
    pub from: Option<Checksum>,
    /// The commit the delta leads to.
    pub to: Checksum,
    /// The superblock's bytes, which the signatures cover.
    pub superblock: &'a [u8],
    /// The signed wrapper's `a{sv}` of signatures; None when the superblock is not signed.
    pub signatures: Option<&'a [u8]>,
    /// Where it comes from, as a person would name it.
    pub source: &'a str,
}

/// A commit that passed every check for a ref.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// Signed, or from a remote that verifies no signatures.
    pub verdict: Verdict,
    /// How the commit relates to the installed one.
    pub update: UpdateKind,
    /// The commit's timestamp, now that its signature vouches for it.
    pub timestamp: u64,
}

/// A remote's trust policy and keys. Verdicts are remembered per commit checksum, so one
/// policy verifies each commit once; build one policy per remote per operation.
#[derive(Debug)]
pub struct RemotePolicy {
    remote: String,
    collection_id: Option<String>,
    gpg_commits: bool,
    gpg_summary: bool,
    ed25519_commits: bool,
    ed25519_summary: bool,
    ed25519_deltas: bool,
    gpg: GpgKeyring,
    gpg_looked_in: Vec<PathBuf>,
    ed25519: Ed25519Keys,
    ed25519_looked_in: Vec<PathBuf>,
    verified: Mutex<HashMap<Checksum, Verdict>>,
}

impl RemotePolicy {
    /// Reads the remote's policy and loads the keys it trusts on this machine.
    pub fn load(
        config: &RemoteTrustConfig,
        destination: &Destination,
        roots: &TrustRoots,
    ) -> Result<Self, TrustError> {
        let gpg_commits = config.boolean("gpg-verify", true)?;
        let gpg_summary = config.boolean("gpg-verify-summary", false)?;
        let sign_commits = config.sign_verify("sign-verify")?;
        let sign_summary = config.sign_verify("sign-verify-summary")?;
        // A boolean, as libostree's `core.sign-verify-deltas`; deltas are only ever signed
        // with ed25519 (libostree has no GPG delta signatures).
        let sign_deltas = config.boolean("sign-verify-deltas", false)?;

        let mut policy = Self {
            remote: config.name.clone(),
            collection_id: config.collection_id().map(str::to_owned),
            gpg_commits,
            gpg_summary,
            ed25519_commits: sign_commits.is_some(),
            ed25519_summary: sign_summary.is_some(),
            ed25519_deltas: sign_deltas,
            gpg: GpgKeyring::default(),
            gpg_looked_in: Vec::new(),
            ed25519: Ed25519Keys::default(),
            ed25519_looked_in: Vec::new(),
            verified: Mutex::new(HashMap::new()),
        };

        if gpg_commits || gpg_summary {
            let sources =
                GpgKeySources::resolve(&config.name, config.get("gpgkeypath"), destination, roots)
                    .map_err(|error| config.keys_error(error))?;
            let files = sources
                .read_all()
                .map_err(|error| config.keys_error(error))?;
            policy.gpg = GpgKeyring::from_files(files);
            policy.gpg_looked_in = sources.looked_in;
        }

        if sign_commits.is_some() || sign_summary.is_some() || sign_deltas {
            let inline_key = config.get("verification-ed25519-key");
            let key_file = config.get("verification-ed25519-file");
            let listed = [sign_commits, sign_summary].contains(&Some(SignVerify::Listed));
            if listed && inline_key.is_none() && key_file.is_none() {
                return Err(config.config_error(
                    "sign-verify lists ed25519 but neither verification-ed25519-key nor \
                     verification-ed25519-file is set"
                        .to_owned(),
                ));
            }
            let sources = Ed25519KeySources::resolve(inline_key, key_file, roots)
                .map_err(|error| config.keys_error(error))?;
            policy.ed25519 =
                Ed25519Keys::load(&sources).map_err(|error| config.keys_error(error))?;
            policy.ed25519_looked_in = sources.looked_in(roots);
        }
        Ok(policy)
    }

    /// The remote's name.
    pub fn remote(&self) -> &str {
        &self.remote
    }

    /// The remote's collection ID, if it has one.
    pub fn collection_id(&self) -> Option<&str> {
        self.collection_id.as_deref()
    }

    /// Whether commits must carry signatures; false means every verdict is
    /// [`Verdict::Unsigned`].
    pub fn requires_signatures(&self) -> bool {
        self.gpg_commits || self.ed25519_commits
    }

    /// Whether a `summary.sig`, when present, must carry valid signatures.
    pub fn checks_summary(&self) -> bool {
        self.gpg_summary || self.ed25519_summary
    }

    /// The GPG keys loaded for this remote.
    pub fn gpg_keyring(&self) -> &GpgKeyring {
        &self.gpg
    }

    /// A verdict already reached for this commit by this policy.
    pub fn cached_verdict(&self, checksum: &Checksum) -> Option<Verdict> {
        self.verified
            .lock()
            .ok()
            .and_then(|cache| cache.get(checksum).cloned())
    }

    /// Checks a commit's signatures against what the remote requires. Accepted verdicts are
    /// remembered by checksum; refusals are not, since another source may offer the same
    /// commit with valid detached metadata.
    pub fn verify_commit(&self, candidate: &CommitCandidate<'_>) -> Result<Verdict, TrustError> {
        if let Some(verdict) = self.cached_verdict(&candidate.checksum) {
            return Ok(verdict);
        }
        let object = SignedObject::Commit(candidate.checksum);
        let actual = Checksum::from_array(Sha256::digest(candidate.commit).into());
        if actual != candidate.checksum {
            return Err(TrustError::Malformed {
                object,
                location: candidate.source.into(),
                detail: format!("its bytes hash to {}", actual.short()),
                source: None,
            });
        }
        let verdict = if self.requires_signatures() {
            let signatures = DetachedSignatures::parse_optional(candidate.detached_metadata)
                .map_err(|error| TrustError::Malformed {
                    object: object.clone(),
                    location: candidate.source.into(),
                    detail: "its detached metadata cannot be read".to_owned(),
                    source: Some(Box::new(error)),
                })?;
            let signers = self.check_signatures(
                &object,
                candidate.source,
                candidate.commit,
                &signatures,
                self.gpg_commits,
                self.ed25519_commits,
                false,
            )?;
            Verdict::Signed { signers }
        } else {
            Verdict::Unsigned
        };
        if let Ok(mut cache) = self.verified.lock() {
            cache.insert(candidate.checksum, verdict.clone());
        }
        Ok(verdict)
    }

    /// Checks `summary.sig` (when the source has one) over the summary bytes, if the remote
    /// asks for summary signatures.
    pub fn verify_summary(
        &self,
        summary: &[u8],
        summary_sig: Option<&[u8]>,
        source: &str,
    ) -> Result<SummaryVerdict, TrustError> {
        if !self.checks_summary() {
            return Ok(SummaryVerdict::NotRequired);
        }
        let Some(sig_bytes) = summary_sig else {
            return Ok(SummaryVerdict::Unsigned);
        };
        let object = SignedObject::Summary;
        let signatures =
            DetachedSignatures::parse(sig_bytes).map_err(|error| TrustError::Malformed {
                object: object.clone(),
                location: source.into(),
                detail: "its summary.sig cannot be read".to_owned(),
                source: Some(Box::new(error)),
            })?;
        let signers = self.check_signatures(
            &object,
            source,
            summary,
            &signatures,
            self.gpg_summary,
            self.ed25519_summary,
            true,
        )?;
        Ok(SummaryVerdict::Signed { signers })
    }

    /// Checks a static delta's superblock signatures when the remote sets
    /// `sign-verify-deltas`: an unsigned superblock, or one without an ed25519 signature by a
    /// trusted key over its bytes, is refused. `Ok(None)` when the remote does not ask.
    pub fn verify_delta(&self, delta: &DeltaCandidate<'_>) -> Result<Option<Signer>, TrustError> {
        if !self.ed25519_deltas {
            return Ok(None);
        }
        let object = SignedObject::Delta(Box::new(DeltaCommits {
            from: delta.from,
            to: delta.to,
        }));
        let signatures = DetachedSignatures::parse_optional(delta.signatures).map_err(|error| {
            TrustError::Malformed {
                object: object.clone(),
                location: delta.source.into(),
                detail: "its signatures cannot be read".to_owned(),
                source: Some(Box::new(error)),
            }
        })?;
        let signers = self.check_signatures(
            &object,
            delta.source,
            delta.superblock,
            &signatures,
            false,
            true,
            false,
        )?;
        Ok(signers.into_iter().next())
    }

    /// Verifies, binds and compares a commit pulled for `ref_name`: the one call a pull makes
    /// per ref before moving it. `installed` is what the destination ref points at now.
    pub fn check_commit_for_ref(
        &self,
        candidate: &CommitCandidate<'_>,
        ref_name: &str,
        installed: Option<InstalledCommit>,
        allow_downgrade: bool,
    ) -> Result<Accepted, TrustError> {
        let verdict = self.verify_commit(candidate)?;
        let commit = crate::object::Commit::parse(candidate.commit).map_err(|error| {
            TrustError::Malformed {
                object: SignedObject::Commit(candidate.checksum),
                location: candidate.source.into(),
                detail: "it cannot be read".to_owned(),
                source: Some(Box::new(error)),
            }
        })?;
        self.check_verified_commit_for_ref(
            &candidate.checksum,
            &commit,
            verdict,
            candidate.source,
            ref_name,
            installed,
            allow_downgrade,
        )
    }

    /// [`RemotePolicy::check_commit_for_ref`] for a commit [`RemotePolicy::verify_commit`]
    /// already accepted (its `verdict`), from its parsed `commit`: bindings and timestamp. Lets
    /// a caller drop the commit's bytes and signatures once they verified.
    #[allow(clippy::too_many_arguments)]
    pub fn check_verified_commit_for_ref(
        &self,
        checksum: &Checksum,
        commit: &crate::object::Commit,
        verdict: Verdict,
        source: &str,
        ref_name: &str,
        installed: Option<InstalledCommit>,
        allow_downgrade: bool,
    ) -> Result<Accepted, TrustError> {
        let facts = CommitFacts::from_commit(commit);
        check_bindings(
            checksum,
            facts.bindings(),
            &self.remote,
            self.collection_id(),
            Some(ref_name),
            source,
        )?;
        let update = check_timestamp(
            ref_name,
            installed,
            checksum,
            facts.timestamp,
            allow_downgrade,
        )?;
        Ok(Accepted {
            verdict,
            update,
            timestamp: facts.timestamp,
        })
    }

    /// Requires one valid signature of each kind asked for (libostree requires both when both
    /// GPG and sign verification are on).
    #[allow(clippy::too_many_arguments)]
    fn check_signatures(
        &self,
        object: &SignedObject,
        source: &str,
        data: &[u8],
        signatures: &DetachedSignatures,
        want_gpg: bool,
        want_ed25519: bool,
        summary: bool,
    ) -> Result<Vec<Signer>, TrustError> {
        let now = unix_now();
        let mut signers = Vec::new();
        let unsigned = |kind| TrustError::Unsigned {
            object: object.clone(),
            location: source.into(),
            remote: self.remote.as_str().into(),
            kind,
            summary,
        };
        let untrusted = |rejections: Vec<Rejection>| self.untrusted(object, source, rejections);

        // Signatures of a kind are checked only when there are some and keys to check them:
        // the blobs of `kind` to verify.
        let checkable = |kind| {
            let (blobs, no_keys, looked_in) = match kind {
                SignatureKind::Gpg => (&signatures.gpg, self.gpg.is_empty(), &self.gpg_looked_in),
                SignatureKind::Ed25519 => (
                    &signatures.ed25519,
                    self.ed25519.is_empty(),
                    &self.ed25519_looked_in,
                ),
            };
            let blobs = blobs.as_deref().unwrap_or_default();
            if blobs.is_empty() {
                return Err(unsigned(kind));
            }
            if no_keys {
                return Err(TrustError::NoKeys {
                    remote: self.remote.as_str().into(),
                    kind,
                    looked_in: looked_in.clone(),
                });
            }
            Ok(blobs)
        };
        if want_gpg {
            let blobs = checkable(SignatureKind::Gpg)?;
            let signer = self.gpg.verify(data, blobs, now).map_err(untrusted)?;
            signers.push(Signer::Gpg(signer));
        }
        if want_ed25519 {
            let blobs = checkable(SignatureKind::Ed25519)?;
            let key = self.ed25519.verify(data, blobs).map_err(untrusted)?;
            signers.push(Signer::Ed25519(key));
        }
        Ok(signers)
    }

    fn untrusted(
        &self,
        object: &SignedObject,
        source: &str,
        rejections: Vec<Rejection>,
    ) -> TrustError {
        let others = rejections.len().saturating_sub(1);
        let rejection = rejections
            .into_iter()
            .enumerate()
            .max_by_key(|(index, r)| (r.weight(), std::cmp::Reverse(*index)))
            .map(|(_, r)| r)
            .unwrap_or_else(|| Rejection::malformed("no signature could be read"));
        TrustError::Untrusted {
            object: object.clone(),
            location: source.into(),
            remote: self.remote.as_str().into(),
            unreadable: rejection.cause().cloned(),
            rejection: Box::new(rejection),
            others,
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use ed25519_dalek::{Signer as _, SigningKey};

    fn policy(roots: &Path, options: &[(&str, String)]) -> Result<RemotePolicy, TrustError> {
        let config = RemoteTrustConfig::new("origin", options.iter().cloned());
        RemotePolicy::load(
            &config,
            &Destination::plain(roots.join("repo")),
            &TrustRoots::under(roots),
        )
    }

    fn signatures(key: &SigningKey, data: &[u8]) -> Vec<u8> {
        let mut metadata = crate::object::Metadata::new();
        metadata
            .insert_byte_arrays("ostree.sign.ed25519", &[key.sign(data).to_bytes()])
            .unwrap();
        metadata.to_bytes().unwrap()
    }

    #[test]
    fn delta_signatures_count_only_when_the_remote_asks() {
        let roots = tempfile::TempDir::new().unwrap();
        let trusted = SigningKey::from_bytes(&[5; 32]);
        let other = SigningKey::from_bytes(&[6; 32]);
        let key = (
            "verification-ed25519-key",
            STANDARD.encode(trusted.verifying_key().as_bytes()),
        );
        let superblock = b"superblock bytes";
        let by_trusted = signatures(&trusted, superblock);
        let by_other = signatures(&other, superblock);
        let delta = |signatures| DeltaCandidate {
            from: None,
            to: Checksum::from_array([1; 32]),
            superblock,
            signatures,
            source: "drive",
        };

        let off = policy(roots.path(), std::slice::from_ref(&key)).unwrap();
        assert_eq!(off.verify_delta(&delta(Some(&by_other))).unwrap(), None);
        assert_eq!(off.verify_delta(&delta(None)).unwrap(), None);

        let on = policy(
            roots.path(),
            &[key, ("sign-verify-deltas", "true".to_owned())],
        )
        .unwrap();
        assert!(matches!(
            on.verify_delta(&delta(Some(&by_trusted))),
            Ok(Some(Signer::Ed25519(_)))
        ));
        let error = on.verify_delta(&delta(Some(&by_other))).unwrap_err();
        assert!(matches!(error, TrustError::Untrusted { .. }), "{error}");
        let error = on.verify_delta(&delta(None)).unwrap_err();
        assert!(
            error.to_string().contains("(sign-verify-deltas)"),
            "{error}"
        );
        // Signed over other bytes: the superblock was altered after signing.
        let altered = DeltaCandidate {
            superblock: b"superblock bytez",
            ..delta(Some(&by_trusted))
        };
        assert!(on.verify_delta(&altered).is_err());

        // No key at all: every delta is refused, naming where keys were looked for.
        let keyless = policy(roots.path(), &[("sign-verify-deltas", "1".to_owned())]).unwrap();
        let error = keyless.verify_delta(&delta(Some(&by_trusted))).unwrap_err();
        assert!(matches!(error, TrustError::NoKeys { .. }), "{error}");
        assert!(policy(roots.path(), &[("sign-verify-deltas", "yes".to_owned())]).is_err());
    }
}
