//! Trust: keys from the local machine, signature checks, bindings and anti-downgrade.
//!
//! Everything a drive or a peer offers is untrusted. Ferry accepts a commit only when the
//! destination's own configuration vouches for it, resolved the way libostree resolves it:
//!
//! - [`RemotePolicy::load`] reads a remote's options (`gpg-verify`, `sign-verify`,
//!   `gpgkeypath`, `verification-ed25519-*`, `collection-id`, ...) and the keys the machine
//!   trusts for it ([`keyring`]); nothing is ever read from the source.
//! - [`RemotePolicy::verify_commit`] checks `ostree.gpgsigs` ([`gpg`]) and
//!   `ostree.sign.ed25519` ([`ed25519`]) over the commit bytes and remembers each verdict by
//!   checksum, so a commit is verified once per policy.
//! - [`RemotePolicy::verify_summary`] checks `summary.sig` when the remote asks for it, and
//!   [`RemotePolicy::verify_delta`] a static delta's signatures (`sign-verify-deltas`).
//! - [`check_bindings`] and [`check_timestamp`] refuse commits bound to another collection or
//!   ref, and updates older than what is installed.
//! - [`RemotePolicy::check_commit_for_ref`] runs all of it for one pulled ref.
//!
//! Every refusal is a [`TrustError`] that says what, where and what to do, and maps to a
//! [`crate::schema::ProblemKind`] so listings can show it.

pub mod bindings;
pub mod downgrade;
pub mod ed25519;
pub mod error;
pub mod gpg;
pub mod keyring;
pub mod metadata;
pub mod policy;

use std::path::{Path, PathBuf};

pub use bindings::{check_bindings, find_remote_for_collection, Bindings, RemoteCollection};
pub use downgrade::{check_timestamp, InstalledCommit, UpdateKind};
pub use ed25519::{Ed25519Keys, ED25519_PUBLIC_KEY_LEN, ED25519_SIGNATURE_LEN};
pub use error::{DeltaCommits, Rejection, SignatureKind, SignedObject, TrustError};
pub use gpg::{GpgKeyring, GpgSigner};
pub use metadata::{
    CommitFacts, DetachedSignatures, MAX_KEYS_PER_UNNAMED_SIGNATURE, MAX_SIGNATURES_PER_KIND,
};
pub use policy::{
    Accepted, CommitCandidate, DeltaCandidate, RemotePolicy, RemoteTrustConfig, Signer,
    SummaryVerdict, Verdict,
};

/// Machine-wide places keys live, outside any repository. The defaults are libostree's;
/// tests point them into temporary directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustRoots {
    /// Deprecated global GPG keyring directory (`*.gpg` files), used only for remotes without a
    /// `<remote>.trustedkeys.gpg` keyring of their own.
    pub global_gpg_keyring_dir: PathBuf,
    /// Directories holding `trusted.ed25519`, `trusted.ed25519.d/`, `revoked.ed25519` and
    /// `revoked.ed25519.d/`, in the order they are read.
    pub ed25519_dirs: Vec<PathBuf>,
}

impl Default for TrustRoots {
    fn default() -> Self {
        Self {
            global_gpg_keyring_dir: PathBuf::from("/usr/share/ostree/trusted.gpg.d"),
            ed25519_dirs: vec![
                PathBuf::from("/etc/ostree"),
                PathBuf::from("/usr/share/ostree"),
            ],
        }
    }
}

impl TrustRoots {
    /// The machine's roots, or those under `$FERRY_TRUST_ROOT` when it is set (a directory laid
    /// out like `/`, for tests and image builders).
    pub fn from_env() -> Self {
        match std::env::var_os("FERRY_TRUST_ROOT") {
            Some(root) if !root.is_empty() => Self::under(Path::new(&root)),
            _ => Self::default(),
        }
    }

    /// The default roots below `root` instead of `/`.
    pub fn under(root: &Path) -> Self {
        Self {
            global_gpg_keyring_dir: root.join("usr/share/ostree/trusted.gpg.d"),
            ed25519_dirs: vec![root.join("etc/ostree"), root.join("usr/share/ostree")],
        }
    }
}

/// The repository a pull writes into, and where libostree looks for its remotes' keyrings:
/// `<repo>/<remote>.trustedkeys.gpg`, then `<remotes_config_dir>/<remote>.trustedkeys.gpg`,
/// then the same in each parent repository (`core.parent`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// The repository written to.
    pub repo: PathBuf,
    /// libostree's remotes config directory: `<sysroot>/etc/ostree/remotes.d` for the OS
    /// repository, `/etc/flatpak/remotes.d` for the system Flatpak installation (when it
    /// exists), none for other repositories.
    pub remotes_config_dir: Option<PathBuf>,
    /// Parent repositories, nearest first, each with its own remotes config directory.
    pub parents: Vec<(PathBuf, Option<PathBuf>)>,
}

impl Destination {
    /// A repository with no remotes config directory and no parent.
    pub fn plain(repo: impl Into<PathBuf>) -> Self {
        Self {
            repo: repo.into(),
            remotes_config_dir: None,
            parents: Vec::new(),
        }
    }

    /// The OS repository of a sysroot (`<sysroot>/ostree/repo`), whose remotes may live in
    /// `<sysroot>/etc/ostree/remotes.d`.
    pub fn os_sysroot(sysroot: &Path) -> Self {
        Self {
            repo: sysroot.join("ostree/repo"),
            remotes_config_dir: Some(sysroot.join("etc/ostree/remotes.d")),
            parents: Vec::new(),
        }
    }

    /// The system Flatpak repository; Flatpak hands libostree `/etc/flatpak/remotes.d` when
    /// that directory exists.
    pub fn flatpak_system(repo: impl Into<PathBuf>) -> Self {
        let remotes_d = PathBuf::from("/etc/flatpak/remotes.d");
        Self {
            repo: repo.into(),
            remotes_config_dir: remotes_d.is_dir().then_some(remotes_d),
            parents: Vec::new(),
        }
    }
}
