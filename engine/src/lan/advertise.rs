//! What a serving computer tells the network: its repository's refs (as a bloom filter),
//! summary time and index, in eos-updater's TXT format, published with DNS-SD.

use std::io::Read;
use std::net::IpAddr;
use std::path::Path;

use mdns_sd::{ServiceDaemon, ServiceInfo, TxtProperty};
use siphasher::sip::SipHasher24;

use super::avahi::Published;
use super::responder::Responder;
use super::{LanError, SERVICE_TYPE, TXT_VERSION};
use crate::object::{Summary, MAX_METADATA_SIZE};

/// Bloom filter size eos-updater uses: what fits one TXT string of 255 bytes after `rb=`
/// and the two leading bytes.
pub const BLOOM_BYTES: usize = 250;
/// Number of hash functions eos-updater uses.
pub const BLOOM_HASHES: u8 = 1;
/// libostree's `OSTREE_BLOOM_HASH_STR`: siphash over collection ID and ref name.
const BLOOM_HASH_ID: u8 = 1;

/// What is advertised for one repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advertisement {
    /// The summary's `ostree.summary.last-modified`, else the summary file's modification time.
    pub summary_timestamp: u64,
    /// (collection ID, ref) pairs the summary lists.
    pub collection_refs: Vec<(String, String)>,
    /// Where below the server the repository lives: `/<repo_index>/`.
    pub repo_index: u16,
}

impl Advertisement {
    /// Reads `repo/summary`. A repository without a summary cannot be advertised: peers
    /// would drop it anyway.
    pub fn from_repo(repo: &Path, repo_index: u16) -> Result<Self, LanError> {
        let path = repo.join("summary");
        let failed = |source: Box<dyn std::error::Error + Send + Sync>| LanError::Summary {
            path: path.display().to_string(),
            source,
        };
        let file = std::fs::File::open(&path).map_err(|source| LanError::NoSummary {
            path: path.display().to_string(),
            repo: repo.display().to_string(),
            source,
        })?;
        let modified = file
            .metadata()
            .and_then(|meta| meta.modified())
            .ok()
            .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|age| age.as_secs());
        let mut bytes = Vec::new();
        file.take(MAX_METADATA_SIZE + 1)
            .read_to_end(&mut bytes)
            .map_err(|error| failed(error.into()))?;
        if bytes.len() as u64 > MAX_METADATA_SIZE {
            return Err(LanError::SummaryTooLarge {
                path: path.display().to_string(),
                max: MAX_METADATA_SIZE,
            });
        }
        let summary = Summary::parse(&bytes).map_err(|error| failed(error.into()))?;
        Ok(Self::from_summary(
            &summary,
            modified.unwrap_or(0),
            repo_index,
        ))
    }

    /// The advertisement of a parsed summary; `file_time` stands in for a summary that
    /// records no last-modified time.
    pub fn from_summary(summary: &Summary, file_time: u64, repo_index: u16) -> Self {
        // Refs held in part are advertised too: peers holding a ref in part look for them.
        let held_in_part = summary
            .partial_refs()
            .map(|(collection, summary_ref)| (Some(collection), summary_ref));
        let mut collection_refs: Vec<(String, String)> = summary
            .collection_refs()
            .chain(held_in_part)
            .filter_map(|(collection, summary_ref)| {
                let collection = collection.filter(|c| !c.is_empty())?;
                Some((collection.to_owned(), summary_ref.name.clone()))
            })
            .collect();
        collection_refs.sort();
        collection_refs.dedup();
        Self {
            summary_timestamp: summary.last_modified().unwrap_or(file_time),
            collection_refs,
            repo_index,
        }
    }

    /// The TXT records: `v`, `rb`, `st`, `ri`, each a serialized GVariant.
    pub fn txt_properties(&self) -> Vec<TxtProperty> {
        self.txt_pairs()
            .into_iter()
            .map(|(key, value)| TxtProperty::from((key, value)))
            .collect()
    }

    /// The same TXT records as "key=value" strings, as avahi takes them.
    pub fn txt_records(&self) -> Vec<Vec<u8>> {
        self.txt_pairs()
            .into_iter()
            .map(|(key, value)| {
                let mut record = key.as_bytes().to_vec();
                record.push(b'=');
                record.extend(value);
                record
            })
            .collect()
    }

    fn txt_pairs(&self) -> Vec<(&'static str, Vec<u8>)> {
        let mut bloom = vec![BLOOM_HASHES, BLOOM_HASH_ID];
        bloom.extend(bloom_filter(
            &self.collection_refs,
            BLOOM_BYTES,
            BLOOM_HASHES,
        ));
        vec![
            ("v", vec![TXT_VERSION]),
            ("rb", bloom),
            ("st", self.summary_timestamp.to_be_bytes().to_vec()),
            ("ri", self.repo_index.to_be_bytes().to_vec()),
        ]
    }
}

/// libostree's `ostree_str_bloom_hash` for function `k`: siphash-2-4 keyed with sixteen
/// bytes of `k`, of the collection ID xor of the ref name.
pub fn bloom_hash(collection_id: &str, ref_name: &str, k: u8) -> u64 {
    let hasher = SipHasher24::new_with_key(&[k; 16]);
    hasher.hash(collection_id.as_bytes()) ^ hasher.hash(ref_name.as_bytes())
}

/// The bloom filter's bits (`bytes` long) for `refs`, with `hashes` functions.
pub fn bloom_filter(refs: &[(String, String)], bytes: usize, hashes: u8) -> Vec<u8> {
    let mut bits = vec![0u8; bytes];
    let width = (bytes as u64) * 8;
    if width == 0 {
        return bits;
    }
    for (collection_id, ref_name) in refs {
        for k in 0..hashes {
            let bit = bloom_hash(collection_id, ref_name, k) % width;
            bits[(bit / 8) as usize] |= 1 << (bit % 8);
        }
    }
    bits
}

/// Where and how to publish.
#[derive(Debug, Clone)]
pub struct AdvertiseOptions {
    /// The instance name people see, e.g. "Ferry on classroom-1".
    pub instance_name: String,
    /// The TCP port the repository is served on.
    pub port: u16,
    /// The addresses to announce; empty announces every address of every interface, and
    /// follows them as they change.
    pub addresses: Vec<IpAddr>,
}

impl AdvertiseOptions {
    /// "Ferry on \<host name\>" on `port`, on every interface.
    pub fn for_this_host(port: u16) -> Self {
        Self {
            instance_name: format!("Ferry on {}", host_name()),
            port,
            addresses: Vec::new(),
        }
    }
}

/// This computer's host name, as DNS-SD knows it without `.local.`.
pub fn host_name() -> String {
    let mut name = String::new();
    if let Ok(file) = std::fs::File::open("/proc/sys/kernel/hostname") {
        let _ = file.take(256).read_to_string(&mut name);
    }
    let name = name.trim();
    let name: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    if name.trim_matches('-').is_empty() {
        "ferry".to_owned()
    } else {
        name
    }
}

/// A running advertisement; [`stop`](Advertiser::stop)ped, it says goodbye.
pub struct Advertiser {
    publisher: Publisher,
    options: AdvertiseOptions,
    fullname: String,
}

enum Publisher {
    Builtin(ServiceDaemon),
    Avahi(Published),
}

impl Advertiser {
    /// Announces `advertisement` through avahi-daemon when it runs, else (or when avahi
    /// refuses) through a built-in mDNS responder ([`Responder::choose`]).
    pub fn start(
        advertisement: &Advertisement,
        options: AdvertiseOptions,
    ) -> Result<Self, LanError> {
        match Responder::choose() {
            Responder::Avahi => Self::start_with(Responder::Avahi, advertisement, options.clone())
                .or_else(|error| {
                    tracing::warn!(error = %crate::causes::Causes(&error), "publishing with the built-in responder instead");
                    Self::start_with(Responder::Builtin, advertisement, options)
                }),
            Responder::Builtin => Self::start_with(Responder::Builtin, advertisement, options),
        }
    }

    /// Announces `advertisement` through `responder`.
    pub fn start_with(
        responder: Responder,
        advertisement: &Advertisement,
        options: AdvertiseOptions,
    ) -> Result<Self, LanError> {
        let (publisher, fullname) = match responder {
            Responder::Builtin => {
                let daemon = ServiceDaemon::new()?;
                let info = service_info(advertisement, &options)?;
                let fullname = info.get_fullname().to_owned();
                daemon.register(info)?;
                (Publisher::Builtin(daemon), fullname)
            }
            Responder::Avahi => {
                if !options.addresses.is_empty() {
                    // Avahi announces the addresses of the interfaces it is configured for.
                    tracing::info!("avahi-daemon announces its own interfaces' addresses");
                }
                let published = Published::start(
                    &options.instance_name,
                    options.port,
                    advertisement.txt_records(),
                )?;
                let fullname = format!("{}.{SERVICE_TYPE}", published.name());
                (Publisher::Avahi(published), fullname)
            }
        };
        tracing::info!(service = %fullname, port = options.port, %responder, "advertising the repository");
        Ok(Self {
            publisher,
            options,
            fullname,
        })
    }

    /// The DNS-SD instance's full name.
    pub fn fullname(&self) -> &str {
        &self.fullname
    }

    /// The responder that publishes.
    pub fn responder(&self) -> Responder {
        match self.publisher {
            Publisher::Builtin(_) => Responder::Builtin,
            Publisher::Avahi(_) => Responder::Avahi,
        }
    }

    /// Announces new TXT records (after the summary changed).
    pub fn refresh(&self, advertisement: &Advertisement) -> Result<(), LanError> {
        match &self.publisher {
            Publisher::Builtin(daemon) => {
                daemon.register(service_info(advertisement, &self.options)?)?;
            }
            Publisher::Avahi(published) => published.update_txt(advertisement.txt_records())?,
        }
        tracing::info!(
            service = %self.fullname,
            summary_timestamp = advertisement.summary_timestamp,
            "advertisement refreshed"
        );
        Ok(())
    }

    /// Withdraws the advertisement and stops the responder, waiting a little for the goodbye.
    pub fn stop(&self) {
        match &self.publisher {
            Publisher::Builtin(daemon) => {
                let timeout = std::time::Duration::from_secs(1);
                if let Ok(done) = daemon.unregister(&self.fullname) {
                    let _ = done.recv_timeout(timeout);
                }
                if let Ok(done) = daemon.shutdown() {
                    let _ = done.recv_timeout(timeout);
                }
            }
            Publisher::Avahi(published) => published.stop(),
        }
    }
}

/// The DNS-SD service for `advertisement` under `options`.
pub fn service_info(
    advertisement: &Advertisement,
    options: &AdvertiseOptions,
) -> Result<ServiceInfo, LanError> {
    let host = format!("{}.local.", host_name());
    let info = ServiceInfo::new(
        SERVICE_TYPE,
        &options.instance_name,
        &host,
        &options.addresses[..],
        options.port,
        advertisement.txt_properties(),
    )?;
    Ok(if options.addresses.is_empty() {
        info.enable_addr_auto()
    } else {
        info
    })
}
