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
    /// The repository has no summary to read the TXT record from.
    #[error(
        "cannot read the repository's summary at {path}; run `ostree summary --update \
         --repo={repo}` first"
    )]
    NoSummary {
        /// The summary file.
        path: String,
        /// The repository.
        repo: String,
        /// The open error.
        #[source]
        source: std::io::Error,
    },
    /// The repository's summary could not be read for the TXT record.
    #[error("cannot read the repository's summary at {path}")]
    Summary {
        /// The summary file, or the repository.
        path: String,
        /// The read or parse error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The repository's summary is larger than any summary Ferry reads.
    #[error("the repository's summary at {path} is larger than the {max} bytes allowed")]
    SummaryTooLarge {
        /// The summary file.
        path: String,
        /// The largest accepted.
        max: u64,
    },
    /// The built-in mDNS responder failed.
    #[error("DNS-SD (mDNS) failed")]
    Mdns(#[from] mdns_sd::Error),
    /// avahi-daemon could not be reached or answered in a way Ferry does not understand.
    #[error("avahi-daemon (over D-Bus) cannot be used")]
    AvahiBus(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// avahi-daemon refused; says what it refused, in avahi's words where it gave any.
    #[error("avahi-daemon (over D-Bus) failed: {0}")]
    Avahi(String),
}
