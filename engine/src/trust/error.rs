//! Why Ferry refuses something, in words a person can act on.

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use crate::causes::Shared;
use crate::object::{Checksum, FormatError};
use crate::schema::{Problem, ProblemKind, SourceInfo};

/// What a signature covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignedObject {
    /// A commit, named by its checksum.
    Commit(Checksum),
    /// A repository's summary file.
    Summary,
    /// A static delta's superblock (boxed: errors carrying this stay small).
    Delta(Box<DeltaCommits>),
}

/// The commits a static delta leads from and to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaCommits {
    /// The commit the delta starts from; None for a delta from scratch.
    pub from: Option<Checksum>,
    /// The commit the delta leads to.
    pub to: Checksum,
}

impl fmt::Display for SignedObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Commit(checksum) => write!(f, "commit {}…", checksum.short()),
            Self::Summary => f.write_str("the summary"),
            Self::Delta(delta) => match &delta.from {
                Some(from) => write!(
                    f,
                    "the static delta from commit {}… to {}…",
                    from.short(),
                    delta.to.short()
                ),
                None => write!(f, "the static delta to commit {}…", delta.to.short()),
            },
        }
    }
}

/// Why one signature did not count. Keys are named as `key 0xFINGERPRINT (User ID)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// Made by a key the remote does not trust.
    UnknownKey {
        /// The key that made the signature.
        key: String,
    },
    /// Made by a trusted key, but over other bytes: the object or the signature was altered.
    BadSignature {
        /// The key that made the signature.
        key: String,
    },
    /// A digest that can be forged (MD5, SHA-1, RIPEMD-160).
    WeakHash {
        /// The key that made the signature.
        key: String,
        /// The digest algorithm the signature uses.
        hash: String,
    },
    /// Made by a trusted key that has expired.
    KeyExpired {
        /// The expired key.
        key: String,
        /// When the key expired, in seconds since the Unix epoch.
        expired_at: u64,
    },
    /// Made by a trusted key that has been revoked.
    KeyRevoked {
        /// The revoked key.
        key: String,
        /// The reason the revocation gives, if any.
        reason: Option<String>,
    },
    /// The key is not allowed to sign (its key flags lack "sign").
    NotForSigning {
        /// The subkey that made the signature.
        key: String,
    },
    /// A subkey without a valid binding signature from its primary key (or without the
    /// subkey's own back-signature).
    SubkeyNotBound {
        /// The subkey that made the signature.
        key: String,
    },
    /// A signature past its own expiry time.
    SignatureExpired {
        /// The key that made the signature.
        key: String,
        /// When the signature expired, in seconds since the Unix epoch.
        expired_at: u64,
    },
    /// A signature dated later than this machine's clock.
    CreatedInFuture {
        /// The key that made the signature.
        key: String,
        /// The signature's creation time, in seconds since the Unix epoch.
        created_at: u64,
    },
    /// The signature claims to predate the key that made it.
    KeyNewerThanSignature {
        /// The key that made the signature.
        key: String,
    },
    /// The trusted key carries no valid self-signature, so its validity cannot be known.
    NoSelfSignature {
        /// The key without a self-signature.
        key: String,
    },
    /// Not a readable binary-data OpenPGP signature, or an ed25519 signature of the wrong size.
    Malformed {
        /// What could not be read.
        detail: String,
        /// The OpenPGP parser's error, when it is one.
        cause: Option<Shared<pgp::errors::Error>>,
    },
    /// Made by an ed25519 key this machine lists as revoked.
    Ed25519Revoked {
        /// The revoked key.
        key: String,
    },
    /// No ed25519 signature matched any trusted key.
    Ed25519NoMatch {
        /// How many ed25519 signatures were checked.
        signatures: usize,
        /// How many trusted keys they were checked against.
        keys: usize,
    },
    /// More signatures than [`super::metadata::MAX_SIGNATURES_PER_KIND`]: refused unread, so a
    /// source cannot make verification take long.
    TooManySignatures {
        /// How many signatures of that kind the object carries.
        count: usize,
        /// The most Ferry checks.
        max: usize,
    },
}

impl Rejection {
    /// A signature that could not be read, in Ferry's words alone.
    pub(crate) fn malformed(detail: impl Into<String>) -> Self {
        Self::Malformed {
            detail: detail.into(),
            cause: None,
        }
    }

    /// A signature that could not be read, in Ferry's words, with the parser's error.
    pub(crate) fn unreadable(detail: &str, cause: pgp::errors::Error) -> Self {
        Self::Malformed {
            detail: detail.to_owned(),
            cause: Some(Shared::new(cause)),
        }
    }

    /// The parser's error that made the signature unreadable, if any.
    pub(crate) fn cause(&self) -> Option<&Shared<pgp::errors::Error>> {
        match self {
            Self::Malformed { cause, .. } => cause.as_ref(),
            _ => None,
        }
    }

    /// How much the rejection tells a person about a key they trust; the most telling one is
    /// shown when several signatures fail.
    pub(crate) fn weight(&self) -> u8 {
        match self {
            Self::Malformed { .. } | Self::TooManySignatures { .. } => 0,
            Self::UnknownKey { .. } | Self::Ed25519NoMatch { .. } => 1,
            Self::BadSignature { .. } => 2,
            _ => 3,
        }
    }

    pub(crate) fn describe(&self, remote: &str) -> String {
        match self {
            Self::UnknownKey { key } => format!(
                "is signed by {key}, which remote '{remote}' does not trust: use an update \
                 signed by the publisher of '{remote}', or import that key for '{remote}' if \
                 you trust it"
            ),
            Self::BadSignature { key } => format!(
                "carries a signature by {key} that does not match its contents: the object or \
                 its signature was altered; do not use this source"
            ),
            Self::WeakHash { key, hash } => format!(
                "is signed by {key} with {hash}, which can be forged and is refused: ask the \
                 publisher of '{remote}' to sign with SHA-256 or stronger"
            ),
            Self::KeyExpired { key, expired_at } => format!(
                "is signed by {key}, which expired on {}: get an update signed with the \
                 publisher's current key, or refresh the keyring of remote '{remote}' if the \
                 key was extended",
                format_date(*expired_at)
            ),
            Self::KeyRevoked { key, reason } => format!(
                "is signed by {key}, which has been revoked{}: do not install it; get an \
                 update signed with the current key of the publisher of '{remote}'",
                reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            ),
            Self::NotForSigning { key } => format!(
                "is signed by {key}, which is not allowed to sign: get an update signed with a \
                 signing key of the publisher of '{remote}'"
            ),
            Self::SubkeyNotBound { key } => format!(
                "is signed by {key}, which is not validly bound to its primary key: do not use \
                 this source"
            ),
            Self::SignatureExpired { key, expired_at } => format!(
                "carries a signature by {key} that expired on {}: get a freshly signed update",
                format_date(*expired_at)
            ),
            Self::CreatedInFuture { key, created_at } => format!(
                "carries a signature by {key} made on {}, which is in the future for this \
                 machine: check this machine's date and time",
                format_time(*created_at)
            ),
            Self::KeyNewerThanSignature { key } => format!(
                "carries a signature by {key} dated before that key was created: do not use \
                 this source"
            ),
            Self::NoSelfSignature { key } => format!(
                "is signed by {key}, but that key has no valid self-signature in the keyring \
                 of remote '{remote}': re-import the publisher's key"
            ),
            Self::Malformed { detail, .. } => {
                format!("carries a signature Ferry cannot read ({detail}): use another source")
            }
            Self::Ed25519Revoked { key } => format!(
                "is signed by ed25519 key {key}, which this machine lists as revoked: do not \
                 install it; get an update signed with the current key of the publisher of \
                 '{remote}'"
            ),
            Self::Ed25519NoMatch { signatures, keys } => format!(
                "has no ed25519 signature from a key remote '{remote}' trusts ({signatures} \
                 signature(s) checked against {keys} key(s)): use an update signed by the \
                 publisher of '{remote}'"
            ),
            Self::TooManySignatures { count, max } => format!(
                "carries {count} signatures of one kind, more than the {max} Ferry checks; \
                 real updates carry one or two, so it is refused: use another source"
            ),
        }
    }
}

/// The kinds of signature a remote can require.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignatureKind {
    /// OpenPGP signatures (`gpg-verify`).
    Gpg,
    /// ed25519 signatures (`sign-verify`).
    Ed25519,
}

impl SignatureKind {
    /// The option that turns this requirement on, for messages.
    pub fn option(self) -> &'static str {
        match self {
            Self::Gpg => "gpg-verify",
            Self::Ed25519 => "sign-verify",
        }
    }
}

impl fmt::Display for SignatureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Gpg => "GPG",
            Self::Ed25519 => "ed25519",
        })
    }
}

/// A refusal. Display gives one sentence: what, where, and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    /// Signatures are present but none counts.
    #[error("{object} on {location} {}{}", rejection.describe(remote), others_note(*others))]
    Untrusted {
        /// What the signatures cover.
        object: SignedObject,
        /// Where the object came from, as a person would name it.
        location: Box<str>,
        /// The remote whose keys were used.
        remote: Box<str>,
        /// The most telling rejection.
        rejection: Box<Rejection>,
        /// How many other signatures were rejected too.
        others: usize,
        /// Why the rejected signature could not be read, when a parser said (the rejection's
        /// cause, shared).
        #[source]
        unreadable: Option<Shared<pgp::errors::Error>>,
    },

    /// The remote requires a kind of signature the object does not carry.
    #[error(
        "{object} on {location} has no {kind} signature, but remote '{remote}' requires one \
         ({}): use a source that carries the publisher's signed {}",
        required_by(*kind, object, *summary),
        signed_things(object, *summary)
    )]
    Unsigned {
        /// What lacks the signature.
        object: SignedObject,
        /// Where the object came from, as a person would name it.
        location: Box<str>,
        /// The remote that requires it.
        remote: Box<str>,
        /// The kind of signature required.
        kind: SignatureKind,
        /// Whether the requirement is on the summary (`*-summary`) rather than on commits.
        summary: bool,
    },

    /// The remote requires signatures but the machine holds no key for it.
    #[error(
        "remote '{remote}' requires {kind} signatures, but this machine has no {kind} key for \
         it (looked in {}): import the publisher's key for '{remote}'",
        list_paths(looked_in)
    )]
    NoKeys {
        /// The remote that requires signatures.
        remote: Box<str>,
        /// The kind of signature required.
        kind: SignatureKind,
        /// The keyring files and directories that were searched.
        looked_in: Vec<PathBuf>,
    },

    /// The remote's configuration cannot be used as written.
    #[error("remote '{remote}': {detail}: fix the remote's configuration")]
    Config {
        /// The remote with the unusable configuration.
        remote: Box<str>,
        /// What is wrong with it.
        detail: String,
    },

    /// The keys the remote's configuration points at cannot be read or used.
    #[error("remote '{remote}': its trusted keys cannot be loaded; fix the remote's configuration or its key files")]
    Keys {
        /// The remote whose keys these are.
        remote: Box<str>,
        /// Which file and why.
        #[source]
        source: super::keyring::KeySourceError,
    },

    /// Commit or detached metadata that cannot be parsed, or bytes that do not match their
    /// checksum.
    #[error("{object} on {location} is damaged ({detail}): use another source")]
    Malformed {
        /// What is damaged.
        object: SignedObject,
        /// Where the object came from, as a person would name it.
        location: Box<str>,
        /// What is wrong with it.
        detail: String,
        /// The parse error, when it is one.
        #[source]
        source: Option<Box<FormatError>>,
    },

    /// No remote of the repository carries the collection ID asked for.
    #[error("no remote in {} has collection ID {collection_id}: add the remote first", repo.display())]
    UnknownCollection {
        /// The repository whose remotes were searched.
        repo: PathBuf,
        /// The collection ID asked for.
        collection_id: String,
    },

    /// `ostree.collection-binding` differs from the remote's collection ID, or is missing.
    #[error(
        "commit {}… on {location} {}, but remote '{remote}' has collection ID {expected}: it was \
         not published for '{remote}'; do not install it from this source",
        commit.short(),
        match found {
            Some(found) => format!("belongs to collection {found}"),
            None => "carries no collection binding".to_owned(),
        }
    )]
    CollectionBinding {
        /// The refused commit.
        commit: Checksum,
        /// Where the object came from, as a person would name it.
        location: Box<str>,
        /// The remote the commit was pulled for.
        remote: Box<str>,
        /// The remote's collection ID.
        expected: String,
        /// The commit's collection binding; None when it carries none.
        found: Option<String>,
    },

    /// `ostree.ref-binding` does not list the ref being pulled, or is missing although the
    /// remote has a collection ID.
    #[error("commit {}… on {location} {}", commit.short(), ref_binding_problem(remote, ref_name.as_deref(), bound.as_deref()))]
    RefBinding {
        /// The refused commit.
        commit: Checksum,
        /// Where the object came from, as a person would name it.
        location: Box<str>,
        /// The remote the commit was pulled for.
        remote: Box<str>,
        /// The ref being pulled; None when pulling a commit by checksum.
        ref_name: Option<String>,
        /// The refs the commit is bound to; None when it carries no ref binding.
        bound: Option<Vec<String>>,
    },

    /// The new commit is older than the installed one.
    #[error(
        "update of {ref_name} is older than the installed version ({}); use --allow-downgrade \
         to install it anyway",
        compare_times(*new_timestamp, *current_timestamp)
    )]
    Downgrade {
        /// The ref being updated.
        ref_name: String,
        /// The offered commit.
        new_commit: Checksum,
        /// The offered commit's timestamp, in seconds since the Unix epoch.
        new_timestamp: u64,
        /// The installed commit.
        current_commit: Checksum,
        /// The installed commit's timestamp, in seconds since the Unix epoch.
        current_timestamp: u64,
    },
}

impl TrustError {
    /// The kind listings show for this refusal.
    pub fn problem_kind(&self) -> ProblemKind {
        match self {
            Self::Untrusted { .. } | Self::NoKeys { .. } => ProblemKind::UntrustedSignature,
            Self::Unsigned { .. } => ProblemKind::UnsignedCommit,
            Self::UnknownCollection { .. } => ProblemKind::UnknownCollection,
            Self::CollectionBinding { .. } | Self::RefBinding { .. } => {
                ProblemKind::BindingMismatch
            }
            Self::Downgrade { .. } => ProblemKind::Downgrade,
            Self::Malformed { .. } => ProblemKind::Corrupt,
            Self::Config { .. } | Self::Keys { .. } => ProblemKind::Other,
        }
    }

    /// A listing entry for this refusal.
    pub fn to_problem(&self, origin: &SourceInfo, ref_name: Option<&str>) -> Problem {
        Problem::on_source(
            self.problem_kind(),
            origin,
            ref_name.map(str::to_owned),
            crate::causes::text(self),
        )
    }
}

/// The option that made a signature of `kind` required on `object`.
fn required_by(kind: SignatureKind, object: &SignedObject, summary: bool) -> String {
    match object {
        SignedObject::Delta(_) => "sign-verify-deltas".to_owned(),
        _ if summary => format!("{}-summary", kind.option()),
        _ => kind.option().to_owned(),
    }
}

/// What a source should carry signed instead, for messages.
fn signed_things(object: &SignedObject, summary: bool) -> &'static str {
    match object {
        SignedObject::Delta(_) => "static deltas",
        _ if summary => "summary",
        _ => "commits",
    }
}

fn others_note(others: usize) -> String {
    match others {
        0 => String::new(),
        1 => " (1 other signature was refused too)".to_owned(),
        n => format!(" ({n} other signatures were refused too)"),
    }
}

fn ref_binding_problem(remote: &str, ref_name: Option<&str>, bound: Option<&[String]>) -> String {
    match bound {
        None => format!(
            "carries no ref binding, which remote '{remote}' requires because it has a \
             collection ID: it was not published for '{remote}'; do not install it from this \
             source"
        ),
        Some(refs) => format!(
            "is bound to {}, but it is offered as {}: it was published under another name; do \
             not install it from this source",
            if refs.is_empty() {
                "no ref".to_owned()
            } else {
                refs.join(", ")
            },
            ref_name.unwrap_or("another ref")
        ),
    }
}

fn list_paths(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "no configured location".to_owned();
    }
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `2024-01-02T03:04:05Z`.
pub(crate) fn format_time(unix_seconds: u64) -> String {
    match UNIX_EPOCH.checked_add(Duration::from_secs(unix_seconds)) {
        Some(time) => humantime::format_rfc3339_seconds(time).to_string(),
        None => format!("{unix_seconds} seconds after 1970"),
    }
}

/// `2024-01-02`.
pub(crate) fn format_date(unix_seconds: u64) -> String {
    let full = format_time(unix_seconds);
    match full.split_once('T') {
        Some((date, _)) => date.to_owned(),
        None => full,
    }
}

/// `2024-01-02 < 2024-03-04`, with times when the dates alone would look equal.
fn compare_times(new: u64, current: u64) -> String {
    let (new_date, current_date) = (format_date(new), format_date(current));
    if new_date == current_date {
        format!("{} < {}", format_time(new), format_time(current))
    } else {
        format!("{new_date} < {current_date}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_days_with_times_when_needed() {
        assert_eq!(format_date(1_704_153_600), "2024-01-02");
        assert_eq!(
            compare_times(1_704_153_600, 1_709_510_400),
            "2024-01-02 < 2024-03-04"
        );
        assert_eq!(
            compare_times(1_704_153_600, 1_704_157_200),
            "2024-01-02T00:00:00Z < 2024-01-02T01:00:00Z"
        );
    }

    #[test]
    fn downgrade_message_says_what_to_do() {
        let err = TrustError::Downgrade {
            ref_name: "app/org.example.App/x86_64/stable".into(),
            new_commit: Checksum::from_array([1; 32]),
            new_timestamp: 1_704_153_600,
            current_commit: Checksum::from_array([2; 32]),
            current_timestamp: 1_709_510_400,
        };
        assert_eq!(
            err.to_string(),
            "update of app/org.example.App/x86_64/stable is older than the installed version \
             (2024-01-02 < 2024-03-04); use --allow-downgrade to install it anyway"
        );
        assert_eq!(err.problem_kind(), ProblemKind::Downgrade);
    }
}
