//! Finding computers nearby: browsing DNS-SD for OSTree repositories for a bounded time.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use mdns_sd::{ResolvedService, ScopedIp, ServiceDaemon, ServiceEvent};

use super::responder::Responder;
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
    /// The repository's index on the peer (`ri`), the `<ri>` of its URL.
    pub repo_index: u16,
    /// The summary time the peer advertises (`st`), when it does.
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

/// One address a service announced, with the interface it was seen on for IPv6 addresses
/// (name, else index; None when unknown).
type Announced = (IpAddr, Option<String>);

/// The URL to reach a repository announced at `addresses`: IPv4 first, then routable IPv6,
/// then link-local IPv6 with its zone (`[fe80::…%25IFACE]`); lowest address first within each.
/// A link-local address without a known interface cannot be reached and is passed over.
pub fn peer_url(addresses: &[Announced], port: u16, repo_index: u16) -> Option<String> {
    let lowest = |keep: &dyn Fn(&Announced) -> bool| {
        addresses
            .iter()
            .filter(|a| keep(a))
            .min_by(|a, b| a.0.cmp(&b.0))
    };
    let link_local =
        |address: &IpAddr| matches!(address, IpAddr::V6(v6) if v6.is_unicast_link_local());
    if let Some((address, _)) =
        lowest(&|(a, _)| a.is_ipv4()).or_else(|| lowest(&|(a, _)| a.is_ipv6() && !link_local(a)))
    {
        return Some(repo_url(*address, port, repo_index));
    }
    match lowest(&|(a, zone)| link_local(a) && zone.is_some())? {
        (IpAddr::V6(v6), Some(zone)) => {
            Some(super::zone::zoned_repo_url(*v6, zone, port, repo_index))
        }
        _ => None,
    }
}

fn announced(service: &ResolvedService) -> Vec<Announced> {
    service
        .get_addresses()
        .iter()
        .map(|scoped| match scoped {
            ScopedIp::V6(v6) => {
                let interface = v6.scope_id();
                let zone = if interface.index == 0 {
                    None
                } else if interface.name.is_empty() {
                    Some(interface.index.to_string())
                } else {
                    Some(interface.name.clone())
                };
                (IpAddr::V6(*v6.addr()), zone)
            }
            other => (other.to_ip_addr(), None),
        })
        .collect()
}

fn peer(service: &ResolvedService) -> Result<Peer, String> {
    let advertised = parse_txt(|key| service.get_property_val(key))?;
    let url = peer_url(
        &announced(service),
        service.get_port(),
        advertised.repo_index,
    )
    .ok_or_else(|| "it announces no usable address".to_owned())?;
    let fullname = service.get_fullname();
    let name = fullname
        .strip_suffix(SERVICE_TYPE)
        .map(|name| name.trim_end_matches('.'))
        .unwrap_or(fullname)
        .replace("\\ ", " ");
    Ok(Peer {
        name,
        url,
        summary_timestamp: advertised.summary_timestamp,
    })
}

/// Most repositories nearby a pull or listing connects to: the best-ranked ones
/// ([`rank_peers`]); the others are ignored, so a network flooded with advertisements
/// cannot make a listing open thousands of connections.
pub const MAX_PEERS: usize = 32;

/// Most advertisements remembered while browsing, before ranking; further ones are not
/// even kept, so memory stays bounded whatever the network sends.
pub const MAX_ADVERTISED: usize = 1024;

/// A summary time further ahead of this computer's clock than this ranks as unknown: an
/// unsigned claim of the far future must not push honest peers out.
pub const MAX_CLOCK_AHEAD: Duration = Duration::from_secs(24 * 60 * 60);

/// What browsing found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Browsed {
    /// At most [`MAX_PEERS`] repositories, best-ranked first.
    pub peers: Vec<Peer>,
    /// Repositories advertised beyond those, ignored.
    pub ignored: usize,
}

/// Orders `peers` best first and keeps `max` of them, returning how many were dropped: the
/// newest advertised summary first (a time missing, or more than [`MAX_CLOCK_AHEAD`] ahead of
/// `now`, counts as oldest), then by URL, so the choice is stable. The time is only a hint of
/// which peers are worth asking: whatever they serve is verified like any source.
pub fn rank_peers(peers: &mut Vec<Peer>, max: usize, now: u64) -> usize {
    let horizon = now.saturating_add(MAX_CLOCK_AHEAD.as_secs());
    let freshness = |peer: &Peer| peer.summary_timestamp.filter(|time| *time <= horizon);
    peers.sort_by(|a, b| {
        freshness(b)
            .cmp(&freshness(a))
            .then_with(|| a.url.cmp(&b.url))
    });
    let ignored = peers.len().saturating_sub(max);
    peers.truncate(max);
    ignored
}

/// Browses for `timeout` and returns the repositories advertised, ranked and bounded
/// ([`rank_peers`], [`MAX_PEERS`]). A service withdrawn meanwhile is left out; one whose TXT
/// records are malformed is logged and skipped. Goes through avahi-daemon when it runs
/// ([`Responder::choose`]); should browsing through it fail, the built-in responder browses.
pub fn browse(timeout: Duration) -> Result<Browsed, LanError> {
    match Responder::choose() {
        Responder::Avahi => browse_with(Responder::Avahi, timeout).or_else(|error| {
            tracing::warn!(error = %crate::causes::Causes(&error), "browsing with the built-in responder instead");
            browse_with(Responder::Builtin, timeout)
        }),
        Responder::Builtin => browse_with(Responder::Builtin, timeout),
    }
}

/// Browses for `timeout` through `responder`.
pub fn browse_with(responder: Responder, timeout: Duration) -> Result<Browsed, LanError> {
    tracing::debug!(%responder, "browsing for computers nearby");
    let (peers, unremembered) = match responder {
        Responder::Builtin => browse_builtin(timeout)?,
        Responder::Avahi => super::avahi::browse(Instant::now() + timeout, MAX_ADVERTISED)?,
    };
    Ok(ranked(peers, unremembered))
}

fn browse_builtin(timeout: Duration) -> Result<(Vec<Peer>, usize), LanError> {
    let daemon = ServiceDaemon::new()?;
    let events = daemon.browse(SERVICE_TYPE)?;
    let deadline = Instant::now() + timeout;
    let mut found: BTreeMap<String, Peer> = BTreeMap::new();
    let mut unremembered = 0usize;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match events.recv_timeout(left) {
            Ok(ServiceEvent::ServiceResolved(service))
                if found.len() >= MAX_ADVERTISED && !found.contains_key(service.get_fullname()) =>
            {
                unremembered = unremembered.saturating_add(1);
                tracing::debug!(service = %service.get_fullname(),
                    "ignoring an advertised repository: {MAX_ADVERTISED} already found");
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
    Ok((found.into_values().collect(), unremembered))
}

/// Deduplicated by URL, ranked and bounded; `unremembered` were not even kept.
fn ranked(mut peers: Vec<Peer>, unremembered: usize) -> Browsed {
    peers.sort_by(|a, b| a.url.cmp(&b.url));
    peers.dedup_by(|a, b| a.url == b.url);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |age| age.as_secs());
    let ignored = rank_peers(&mut peers, MAX_PEERS, now).saturating_add(unremembered);
    if ignored > 0 {
        tracing::info!(
            ignored,
            "ignoring computers nearby beyond the best {MAX_PEERS}"
        );
    }
    Browsed { peers, ignored }
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
    fn avahi_gets_the_same_txt_bytes_as_the_built_in_responder() {
        let advertisement = advertisement();
        let built_in: Vec<Vec<u8>> = advertisement
            .txt_properties()
            .iter()
            .map(|property| {
                let mut record = property.key().as_bytes().to_vec();
                record.push(b'=');
                record.extend(property.val().unwrap_or_default());
                record
            })
            .collect();
        assert_eq!(advertisement.txt_records(), built_in);
        let records = advertisement.txt_records();
        let map = super::super::avahi::txt_map(&records);
        let advertised = parse_txt(|key| map.get(key).copied()).expect("valid TXT");
        assert_eq!(advertised.repo_index, 3);
        assert_eq!(advertised.summary_timestamp, Some(1_700_000_123));
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

    fn announced(address: &str, zone: Option<&str>) -> Announced {
        (address.parse().expect("address"), zone.map(str::to_owned))
    }

    #[test]
    fn a_peer_with_only_a_link_local_address_is_reached_through_its_interface() {
        let link_local = announced("fe80::1", Some("veth-b"));
        assert_eq!(
            peer_url(std::slice::from_ref(&link_local), 43381, 0).as_deref(),
            Some("http://[fe80::1%25veth-b]:43381/0")
        );
        // Routable addresses are preferred, IPv4 first; a zone-less link-local one is unusable.
        let global = announced("fd00::1", None);
        let v4 = announced("10.0.0.9", None);
        assert_eq!(
            peer_url(&[link_local.clone(), global.clone()], 1, 2).as_deref(),
            Some("http://[fd00::1]:1/2")
        );
        assert_eq!(
            peer_url(&[global, link_local, v4], 1, 2).as_deref(),
            Some("http://10.0.0.9:1/2")
        );
        assert_eq!(peer_url(&[announced("fe80::1", None)], 1, 2), None);
    }

    fn nearby(url: &str, summary_timestamp: Option<u64>) -> Peer {
        Peer {
            name: url.to_owned(),
            url: url.to_owned(),
            summary_timestamp,
        }
    }

    #[test]
    fn the_freshest_peers_are_kept_and_the_others_counted() {
        let now = 1_700_000_000;
        let far_future = now + MAX_CLOCK_AHEAD.as_secs() + 1;
        let mut peers: Vec<Peer> = (0..40u64)
            .map(|i| nearby(&format!("http://10.0.{i}.1:1/0"), Some(now - 1000 + i)))
            .collect();
        peers.push(nearby("http://10.9.0.1:1/0", Some(far_future)));
        peers.push(nearby("http://10.9.0.2:1/0", None));
        peers.push(nearby("http://10.0.0.0:1/0", Some(now)));
        let ignored = rank_peers(&mut peers, MAX_PEERS, now);
        assert_eq!(ignored, 43 - MAX_PEERS);
        assert_eq!(peers.len(), MAX_PEERS);
        assert_eq!(peers[0].url, "http://10.0.0.0:1/0");
        // Then newest first: 39, 38, ... and the far-future and untimed ones are left out.
        assert_eq!(peers[1].url, "http://10.0.39.1:1/0");
        assert_eq!(peers[MAX_PEERS - 1].url, "http://10.0.9.1:1/0");
        assert!(peers.iter().all(|p| p.url.starts_with("http://10.0.")));
        // Equal times fall back to the URL, so the choice does not depend on arrival order.
        let mut tied = vec![nearby("http://b/", Some(5)), nearby("http://a/", Some(5))];
        assert_eq!(rank_peers(&mut tied, 1, now), 1);
        assert_eq!(tied[0].url, "http://a/");
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
