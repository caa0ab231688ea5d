//! IPv6 link-local peers: `http://[fe80::1%25veth0]:43381/0`.
//!
//! A link-local address means nothing without the interface it was seen on (its zone, RFC
//! 6874). The URL parser HTTP requests go through (WHATWG's) refuses zones, so such a URL is
//! rewritten to a stand-in host name that the HTTP client resolves to the address with its
//! scope ID.

use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};

/// A URL whose host is an IPv6 address with a zone, ready for an HTTP client that cannot
/// parse zones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZonedUrl {
    /// The URL with the stand-in host in place of `[ADDRESS%25ZONE]`.
    pub url: String,
    /// The stand-in host name (under `.invalid`, so it never reaches DNS).
    pub host: String,
    /// The address, its scope ID and the URL's port.
    pub address: SocketAddr,
}

/// The URL of a repository at `address` on interface `zone` (a name, or an index in
/// decimal), port `port`, index `repo_index`.
pub fn zoned_repo_url(address: Ipv6Addr, zone: &str, port: u16, repo_index: u16) -> String {
    format!("http://[{address}%25{zone}]:{port}/{repo_index}")
}

impl ZonedUrl {
    /// Reads `url` when its host is `[ADDRESS%25ZONE]`: Ok(None) for any other URL, an error
    /// for a zone that names no interface here or an address that is not IPv6.
    pub fn parse(url: &str) -> Result<Option<ZonedUrl>, String> {
        let Some((scheme, rest)) = url.split_once("://") else {
            return Ok(None);
        };
        let Some(bracketed) = rest.strip_prefix('[') else {
            return Ok(None);
        };
        let Some((inside, after)) = bracketed.split_once(']') else {
            return Ok(None);
        };
        let Some((address, zone)) = inside.split_once("%25") else {
            return Ok(None);
        };
        let address: Ipv6Addr = address
            .parse()
            .map_err(|_| format!("{url}: {address} is not an IPv6 address"))?;
        let scope_id = interface_index(zone)
            .ok_or_else(|| format!("{url}: there is no network interface {zone} here"))?;
        let (port, path) = match after.strip_prefix(':') {
            Some(port_and_path) => {
                let end = port_and_path.find('/').unwrap_or(port_and_path.len());
                let port: u16 = port_and_path[..end]
                    .parse()
                    .map_err(|_| format!("{url}: invalid port"))?;
                (port, &port_and_path[end..])
            }
            None => match scheme {
                "http" => (80, after),
                "https" => (443, after),
                _ => return Ok(None),
            },
        };
        let host = format!(
            "link-local-{}-{scope_id}.invalid",
            hex::encode(address.octets())
        );
        Ok(Some(ZonedUrl {
            url: format!("{scheme}://{host}:{port}{path}"),
            host,
            address: SocketAddr::V6(SocketAddrV6::new(address, port, 0, scope_id)),
        }))
    }
}

/// The index of interface `zone`, given by name or as a decimal index.
// if_nametoindex has no safe wrapper in the crates used here.
#[allow(unsafe_code)]
fn interface_index(zone: &str) -> Option<u32> {
    if let Ok(index) = zone.parse::<u32>() {
        return (index != 0).then_some(index);
    }
    let name = std::ffi::CString::new(zone).ok()?;
    // SAFETY: `name` is a valid NUL-terminated string that outlives the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zoned_url_becomes_a_stand_in_host_resolving_to_the_scoped_address() {
        let url = zoned_repo_url("fe80::1".parse().expect("v6"), "lo", 43381, 0);
        assert_eq!(url, "http://[fe80::1%25lo]:43381/0");
        let zoned = ZonedUrl::parse(&url).expect("parsed").expect("zoned");
        let SocketAddr::V6(address) = zoned.address else {
            panic!("not IPv6: {:?}", zoned.address);
        };
        assert_eq!(*address.ip(), "fe80::1".parse::<Ipv6Addr>().expect("v6"));
        assert_eq!(address.port(), 43381);
        assert_eq!(address.scope_id(), interface_index("lo").expect("lo"));
        assert_eq!(zoned.url, format!("http://{}:43381/0", zoned.host));
        assert!(zoned.host.ends_with(".invalid"));
        // The stand-in is an ordinary URL, and one zone's stand-in is not another's.
        assert!(reqwest::Url::parse(&zoned.url).is_ok());
        assert!(reqwest::Url::parse(&url).is_err());
        let by_index = ZonedUrl::parse(&format!("http://[fe80::1%25{}]/", address.scope_id()))
            .expect("parsed")
            .expect("zoned");
        assert_eq!(by_index.address.port(), 80);
        assert_eq!(by_index.host, zoned.host);
        let other = ZonedUrl::parse("http://[fe80::2%25lo]:43381/0")
            .expect("parsed")
            .expect("zoned");
        assert_ne!(other.host, zoned.host);
    }

    #[test]
    fn urls_without_a_zone_are_left_alone_and_bad_zones_refused() {
        for url in [
            "http://10.0.0.1:43381/0",
            "http://[fd00::1]:43381/0",
            "https://example.org/repo",
            "not a url",
        ] {
            assert_eq!(ZonedUrl::parse(url), Ok(None), "{url}");
        }
        assert!(ZonedUrl::parse("http://[fe80::1%25no-such-interface0]:1/").is_err());
        assert!(ZonedUrl::parse("http://[fe80::1%250]:1/").is_err());
        assert!(ZonedUrl::parse("http://[not-v6%25lo]:1/").is_err());
        assert!(ZonedUrl::parse("http://[fe80::1%25lo]:port/").is_err());
    }
}
