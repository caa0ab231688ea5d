//! Computers nearby: advertising a repository on the local network with DNS-SD, and finding
//! the computers that do.
//!
//! The service type and TXT records are those of eos-updater and libostree's LAN finder
//! (`OstreeRepoFinderAvahi`), so either side interoperates with them: type
//! `_ostree_repo._tcp`, TXT `v` (version 1), `rb` (a bloom filter of the collection-refs),
//! `st` (the summary's last-modified time) and `ri` (the repository index; the repository
//! is served at `http://ADDRESS:PORT/<ri>/`; an IPv6 link-local address carries its interface,
//! `http://[fe80::…%25IFACE]:PORT/<ri>/`, see [`zone`]). Each value is a serialized GVariant of a fixed
//! type. Peers are untrusted transport: whatever they serve is verified like any source.

pub mod advertise;
pub mod avahi;
pub mod discover;
pub mod responder;
pub mod zone;

/// The DNS-SD service type OSTree repositories are advertised under.
pub const SERVICE_TYPE: &str = "_ostree_repo._tcp.local.";
/// The port eos-update-server listens on, used unless another is chosen.
pub const DEFAULT_PORT: u16 = 43381;
/// The only TXT format version there is.
pub const TXT_VERSION: u8 = 1;

/// Why advertising or browsing failed.
#[derive(Debug, thiserror::Error)]
pub enum LanError {
    /// The repository's summary could not be read for the TXT record.
    #[error("cannot read the repository's summary at {path}: {reason}")]
    Summary {
        /// The repository.
        path: String,
        /// The read error.
        reason: String,
    },
    /// The built-in mDNS responder failed.
    #[error("DNS-SD (mDNS) failed: {0}")]
    Mdns(String),
    /// avahi-daemon could not be used over D-Bus.
    #[error("avahi-daemon (over D-Bus) failed: {0}")]
    Avahi(String),
}

impl From<mdns_sd::Error> for LanError {
    fn from(error: mdns_sd::Error) -> Self {
        LanError::Mdns(error.to_string())
    }
}
