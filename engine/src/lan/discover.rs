//! Finding computers nearby: browsing DNS-SD for OSTree repositories for a bounded time.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use mdns_sd::{ResolvedService, ServiceDaemon, ServiceEvent};

use super::{LanError, SERVICE_TYPE, TXT_VERSION};

/// A computer nearby that advertises a repository. Nothing here is trusted: it only says
/// where to look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The DNS-SD instance name, e.g. "Ferry on classroom-1".
    pub name: String,
    /// The repository's base URL: `http://ADDRESS:PORT/<ri>`.
    pub url: String,
    /// The summary time the peer advertises (`st`), when it does.
    pub summary_timestamp: Option<u64>,
}

/// What the TXT records say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advertised {
    pub repo_index: u16,
    pub summary_timestamp: Option<u64>,
}

/// Reads the TXT records as libostree does: `v` must be the byte 1, `ri` a big-endian u16;
/// `st`, a big-endian u64, is optional. `get(key)` gives a record's value.
pub fn parse_txt<'a>(get: impl Fn(&str) -> Option<Option<&'a [u8]>>) -> Result<Advertised, String> {
    match get("v") {
        Some(Some([version])) if *version == TXT_VERSION => {}
        Some(Some(other)) => return Err(format!("unsupported TXT version {other:?}")),
        _ => return Err("no TXT version (v)".to_owned()),
    }
    let repo_index = match get("ri") {
        Some(Some(&[high, low])) => u16::from_be_bytes([high, low]),
        _ => return Err("no valid repository index (ri)".to_owned()),
    };
    let summary_timestamp = match get("st") {
        Some(Some(bytes)) => Some(u64::from_be_bytes(
            <[u8; 8]>::try_from(bytes).map_err(|_| "invalid summary time (st)".to_owned())?,
        )),
        _ => None,
    };
    Ok(Advertised {
        repo_index,
        summary_timestamp,
    })
}

/// The URL of a repository at `address`:`port`, index `repo_index`.
pub fn repo_url(address: IpAddr, port: u16, repo_index: u16) -> String {
    match address {
        IpAddr::V4(v4) => format!("http://{v4}:{port}/{repo_index}"),
        IpAddr::V6(v6) => format!("http://[{v6}]:{port}/{repo_index}"),
    }
}

fn peer(service: &ResolvedService) -> Result<Peer, String> {
    let advertised = parse_txt(|key| service.get_property_val(key))?;
    let addresses: Vec<IpAddr> = service
        .get_addresses()
        .iter()
        .map(|scoped| scoped.to_ip_addr())
        .collect();
    // IPv4 first; IPv6 link-local addresses need a scope URLs cannot carry portably.
    let address = addresses
        .iter()
        .filter(|a| a.is_ipv4())
        .min()
        .or_else(|| {
            addresses
                .iter()
                .filter(|a| matches!(a, IpAddr::V6(v6) if !v6.is_unicast_link_local()))
                .min()
        })
        .copied()
        .ok_or_else(|| "it announces no usable address".to_owned())?;
    let fullname = service.get_fullname();
    let name = fullname
        .strip_suffix(SERVICE_TYPE)
        .map(|name| name.trim_end_matches('.'))
        .unwrap_or(fullname)
        .replace("\\ ", " ");
    Ok(Peer {
        name,
        url: repo_url(address, service.get_port(), advertised.repo_index),
        summary_timestamp: advertised.summary_timestamp,
    })
}

/// Most repositories nearby a listing connects to; further ones are ignored, so a network
/// flooded with advertisements cannot make a listing open thousands of connections.
pub const MAX_PEERS: usize = 64;

/// Browses for `timeout` and returns every repository advertised, sorted by URL. A service
/// withdrawn meanwhile is left out; one whose TXT records are malformed is logged and skipped.
pub fn browse(timeout: Duration) -> Result<Vec<Peer>, LanError> {
    let daemon = ServiceDaemon::new()?;
    let events = daemon.browse(SERVICE_TYPE)?;
    let deadline = Instant::now() + timeout;
    let mut found: BTreeMap<String, Peer> = BTreeMap::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match events.recv_timeout(left) {
            Ok(ServiceEvent::ServiceResolved(service))
                if found.len() >= MAX_PEERS && !found.contains_key(service.get_fullname()) =>
            {
                tracing::info!(service = %service.get_fullname(),
                    "ignoring an advertised repository: {MAX_PEERS} already found");
            }
            Ok(ServiceEvent::ServiceResolved(service)) => match peer(&service) {
                Ok(peer) => {
                    tracing::debug!(url = %peer.url, name = %peer.name, "found a computer nearby");
                    found.insert(service.get_fullname().to_owned(), peer);
                }
                Err(reason) => {
                    tracing::info!(service = %service.get_fullname(), %reason, "ignoring an advertised repository");
                }
            },
            Ok(ServiceEvent::ServiceRemoved(_, fullname)) => {
                found.remove(&fullname);
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let _ = daemon.stop_browse(SERVICE_TYPE);
    if let Ok(done) = daemon.shutdown() {
        let _ = done.recv_timeout(Duration::from_secs(1));
    }
    let mut peers: Vec<Peer> = found.into_values().collect();
    peers.sort_by(|a, b| a.url.cmp(&b.url));
    peers.dedup_by(|a, b| a.url == b.url);
    Ok(peers)
}

#[cfg(test)]
mod tests {
    use super::super::advertise::{
        bloom_filter, bloom_hash, service_info, AdvertiseOptions, Advertisement, BLOOM_BYTES,
    };
    use super::*;

    fn advertisement() -> Advertisement {
        Advertisement {
            summary_timestamp: 1_700_000_123,
            collection_refs: vec![("org.example.Os".into(), "os/x86_64/stable".into())],
            repo_index: 3,
        }
    }

    #[test]
    fn txt_records_read_back_as_advertised() {
        let options = AdvertiseOptions {
            instance_name: "Ferry on test".into(),
            port: 43381,
            addresses: vec!["10.0.0.1".parse().expect("address")],
        };
        let info = service_info(&advertisement(), &options).expect("service info");
        assert_eq!(info.get_type(), SERVICE_TYPE);
        assert_eq!(info.get_property_val("v"), Some(Some(&[1u8][..])));
        assert_eq!(
            info.get_property_val("st"),
            Some(Some(&1_700_000_123u64.to_be_bytes()[..]))
        );
        let rb = info.get_property_val("rb").flatten().expect("rb");
        assert_eq!(rb.len(), 2 + BLOOM_BYTES);
        assert_eq!(&rb[..2], &[1, 1]);
        let parsed = parse_txt(|key| info.get_property_val(key)).expect("parsed");
        assert_eq!(
            parsed,
            Advertised {
                repo_index: 3,
                summary_timestamp: Some(1_700_000_123)
            }
        );
        // Every TXT string fits the 255 bytes DNS allows.
        for property in info.get_properties().iter() {
            assert!(property.key().len() + 1 + property.val().map_or(0, <[u8]>::len) <= 255);
        }
    }

    #[test]
    fn malformed_txt_records_are_refused() {
        let none = |_: &str| None;
        assert!(parse_txt(none).is_err());
        let wrong_version = |key: &str| match key {
            "v" => Some(Some(&[2u8][..])),
            "ri" => Some(Some(&[0u8, 0][..])),
            _ => None,
        };
        assert!(parse_txt(wrong_version).is_err());
        let short_index = |key: &str| match key {
            "v" => Some(Some(&[1u8][..])),
            "ri" => Some(Some(&[0u8][..])),
            _ => None,
        };
        assert!(parse_txt(short_index).is_err());
        let bad_time = |key: &str| match key {
            "v" => Some(Some(&[1u8][..])),
            "ri" => Some(Some(&[0u8, 7][..])),
            "st" => Some(Some(&[1u8, 2, 3][..])),
            _ => None,
        };
        assert!(parse_txt(bad_time).is_err());
    }

    #[test]
    fn bloom_hash_is_siphash_2_4() {
        // The SipHash paper's test vector: key 00..0f, message 00..0e.
        let key: [u8; 16] = std::array::from_fn(|i| i as u8);
        let message: Vec<u8> = (0u8..15).collect();
        let hash = siphasher::sip::SipHasher24::new_with_key(&key).hash(&message);
        assert_eq!(hash, 0xa129_ca61_49be_45e5);
        // A ref's bit is set, and the xor of both hashes picks it.
        let refs = vec![("org.example.Os".to_owned(), "os/x86_64/stable".to_owned())];
        let bits = bloom_filter(&refs, BLOOM_BYTES, 1);
        let bit = bloom_hash("org.example.Os", "os/x86_64/stable", 0) % (BLOOM_BYTES as u64 * 8);
        assert_ne!(bits[(bit / 8) as usize] & (1 << (bit % 8)), 0);
        assert_eq!(bits.iter().map(|b| b.count_ones()).sum::<u32>(), 1);
    }

    #[test]
    fn urls_name_the_repository_index() {
        assert_eq!(
            repo_url("10.99.0.1".parse().expect("v4"), 43381, 0),
            "http://10.99.0.1:43381/0"
        );
        assert_eq!(
            repo_url("fd00::1".parse().expect("v6"), 8080, 2),
            "http://[fd00::1]:8080/2"
        );
    }
}
