//! Publishing and browsing through avahi-daemon's D-Bus API (`org.freedesktop.Avahi` on the
//! system bus), so that on a desktop where it runs, one responder owns UDP port 5353.
//!
//! The calls are avahi's documented interfaces: `Server.EntryGroupNew`, `EntryGroup.AddService`,
//! `UpdateServiceTxt`, `Commit`, `Free`; `Server.ServiceBrowserNew` with its `ItemNew` and
//! `ItemRemove` signals, and `Server.ResolveService`. Every call is bounded in time.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::time::{Duration, Instant};

use futures_core::Stream;
use zbus::message::Type as MessageType;
use zbus::{Connection, MatchRule, Message, MessageStream, OwnedObjectPath};

use super::discover::{peer_url, Peer};
use super::LanError;

const AVAHI: &str = "org.freedesktop.Avahi";
const SERVER: &str = "org.freedesktop.Avahi.Server";
const ENTRY_GROUP: &str = "org.freedesktop.Avahi.EntryGroup";
const SERVICE_BROWSER: &str = "org.freedesktop.Avahi.ServiceBrowser";
/// `AVAHI_IF_UNSPEC` and `AVAHI_PROTO_UNSPEC`: every interface, both IPv4 and IPv6.
const UNSPECIFIED: i32 = -1;
/// How many alternative names are tried when the name is taken.
const MAX_RENAMES: usize = 16;
/// `AVAHI_ENTRY_GROUP_ESTABLISHED`, `_COLLISION` and `_FAILURE`.
const ESTABLISHED: i32 = 2;
const COLLISION: i32 = 3;
const FAILURE: i32 = 4;
/// The service type as avahi spells it: without the domain.
pub const AVAHI_SERVICE_TYPE: &str = "_ostree_repo._tcp";
const DOMAIN: &str = "local";
/// How long any one call to avahi-daemon may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

impl From<zbus::Error> for LanError {
    fn from(error: zbus::Error) -> Self {
        LanError::AvahiBus(error.into())
    }
}

async fn connect() -> Result<Connection, LanError> {
    Ok(zbus::connection::Builder::system()
        .method_timeout(CALL_TIMEOUT)
        .build()
        .await?)
}

async fn call<B>(
    connection: &Connection,
    path: &str,
    interface: &str,
    method: &str,
    body: &B,
) -> Result<Message, LanError>
where
    B: serde::Serialize + zbus::wire::DynamicType,
{
    Ok(connection
        .call_method(Some(AVAHI), path, Some(interface), method, body)
        .await?)
}

/// Waits for the committed entry group's state: Ok(true) on a name collision, Ok(false) once
/// established (or when avahi says nothing within [`CALL_TIMEOUT`]: probing takes about a
/// second).
async fn collided_while_probing(
    runtime: &zruntime::SharedRuntime,
    states: &mut MessageStream,
) -> Result<bool, LanError> {
    let deadline = Instant::now() + CALL_TIMEOUT;
    loop {
        let next = std::future::poll_fn(|cx| Pin::new(&mut *states).poll_next(cx));
        let message = match runtime.timeout_at(deadline, next).await {
            Ok(Some(Ok(message))) => message,
            other => {
                tracing::debug!(?other, "no entry group state");
                return Ok(false);
            }
        };
        let Ok((state, error)) = message.body().deserialize::<(i32, String)>() else {
            continue;
        };
        tracing::debug!(state, "avahi entry group state");
        match state {
            ESTABLISHED => return Ok(false),
            COLLISION => return Ok(true),
            FAILURE => return Err(LanError::Avahi(format!("publishing failed: {error}"))),
            _ => {}
        }
    }
}

/// Whether avahi-daemon runs: its name has an owner on the system bus. No system bus, or
/// no answer within a second, counts as no.
pub fn running() -> bool {
    let check = async {
        let connection = connect().await.ok()?;
        let reply = connection
            .call_method(
                Some("org.freedesktop.DBus"),
                "/org/freedesktop/DBus",
                Some("org.freedesktop.DBus"),
                "NameHasOwner",
                &(AVAHI,),
            )
            .await
            .ok()?;
        reply.body().deserialize::<bool>().ok()
    };
    zbus::block_on(async {
        let runtime = zruntime::SharedRuntime::current().ok()?;
        runtime
            .timeout(Duration::from_secs(1), check)
            .await
            .ok()
            .flatten()
    })
    .unwrap_or(false)
}

/// A service published through avahi-daemon. Avahi withdraws it when [`stop`](Self::stop)
/// frees the entry group, or when this connection closes.
pub struct Published {
    connection: Connection,
    group: OwnedObjectPath,
    name: String,
}

impl Published {
    /// Publishes `name` on `port` with `txt` ("key=value" records) on every interface avahi
    /// serves. When another service has that name, here or on the network (two machines with
    /// one host name), avahi's alternative name is taken ("NAME #2"), as GNOME's services do.
    pub fn start(name: &str, port: u16, txt: Vec<Vec<u8>>) -> Result<Self, LanError> {
        zbus::block_on(async {
            let runtime = zruntime::SharedRuntime::current()
                .map_err(|error| LanError::AvahiBus(error.into()))?;
            let connection = connect().await?;
            let group: OwnedObjectPath = call(&connection, "/", SERVER, "EntryGroupNew", &())
                .await?
                .body()
                .deserialize()?;
            let rule = MatchRule::builder()
                .msg_type(MessageType::Signal)
                .sender(AVAHI)
                .path(group.as_str())
                .interface(ENTRY_GROUP)
                .member("StateChanged")
                .build()?;
            let mut states = MessageStream::for_match_rule(rule, &connection, None).await?;
            let mut name = name.to_owned();
            for _ in 0..MAX_RENAMES {
                let added = connection
                    .call_method(
                        Some(AVAHI),
                        group.as_str(),
                        Some(ENTRY_GROUP),
                        "AddService",
                        &(
                            UNSPECIFIED,
                            UNSPECIFIED,
                            0u32,
                            name.as_str(),
                            AVAHI_SERVICE_TYPE,
                            "",
                            "",
                            port,
                            &txt,
                        ),
                    )
                    .await;
                let collided = match added {
                    Ok(_) => {
                        call(&connection, group.as_str(), ENTRY_GROUP, "Commit", &()).await?;
                        collided_while_probing(&runtime, &mut states).await?
                    }
                    Err(zbus::Error::MethodError(error, _, _))
                        if error.as_str() == "org.freedesktop.Avahi.CollisionError" =>
                    {
                        true
                    }
                    Err(error) => return Err(error.into()),
                };
                if !collided {
                    return Ok(Self {
                        connection,
                        group,
                        name,
                    });
                }
                call(&connection, group.as_str(), ENTRY_GROUP, "Reset", &()).await?;
                let alternative: String = call(
                    &connection,
                    "/",
                    SERVER,
                    "GetAlternativeServiceName",
                    &(name.as_str(),),
                )
                .await?
                .body()
                .deserialize()?;
                tracing::info!(taken = %name, instead = %alternative, "the name is taken nearby");
                name = alternative;
            }
            Err(LanError::Avahi(format!(
                "every name up to {name:?} is taken on the network"
            )))
        })
    }

    /// The instance name published (avahi's alternative when the one asked for was taken).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Replaces the TXT records.
    pub fn update_txt(&self, txt: Vec<Vec<u8>>) -> Result<(), LanError> {
        zbus::block_on(async {
            call(
                &self.connection,
                self.group.as_str(),
                ENTRY_GROUP,
                "UpdateServiceTxt",
                &(
                    UNSPECIFIED,
                    UNSPECIFIED,
                    0u32,
                    self.name.as_str(),
                    AVAHI_SERVICE_TYPE,
                    "",
                    txt,
                ),
            )
            .await?;
            Ok(())
        })
    }

    /// Withdraws the service (avahi sends the goodbye).
    pub fn stop(&self) {
        let _ = zbus::block_on(async {
            call(
                &self.connection,
                self.group.as_str(),
                ENTRY_GROUP,
                "Free",
                &(),
            )
            .await?;
            self.connection.clone().close().await?;
            Ok::<(), LanError>(())
        });
    }
}

/// One `ItemNew`/`ItemRemove` signal's body: interface, protocol, name, type, domain, flags.
type Item = (i32, i32, String, String, String, u32);

/// `ResolveService`'s reply: interface, protocol, name, type, domain, host, address protocol,
/// address, port, TXT records, flags.
type Resolved = (
    i32,
    i32,
    String,
    String,
    String,
    String,
    i32,
    String,
    u16,
    Vec<Vec<u8>>,
    u32,
);

/// What one advertised instance resolved to so far: its addresses (with their interface for
/// IPv6) and its last port and TXT records.
#[derive(Default)]
struct Instance {
    addresses: Vec<(IpAddr, Option<String>)>,
    port: u16,
    txt: Vec<Vec<u8>>,
}

/// Most addresses kept for one instance (one per interface and protocol is usual).
const MAX_ADDRESSES: usize = 16;

/// Browses through avahi-daemon until `deadline`: each instance seen is resolved, and its
/// peer returned by name (instances withdrawn meanwhile are left out). At most `max` instances
/// are kept; the number of further ones is returned as well.
pub fn browse(deadline: Instant, max: usize) -> Result<(Vec<Peer>, usize), LanError> {
    zbus::block_on(async {
        let runtime =
            zruntime::SharedRuntime::current().map_err(|error| LanError::AvahiBus(error.into()))?;
        let connection = connect().await?;
        // Subscribed before the browser exists: avahi may signal its first items at once.
        let rule = MatchRule::builder()
            .msg_type(MessageType::Signal)
            .sender(AVAHI)
            .interface(SERVICE_BROWSER)
            .build()?;
        let mut signals = MessageStream::for_match_rule(rule, &connection, None).await?;
        let browser: OwnedObjectPath = call(
            &connection,
            "/",
            SERVER,
            "ServiceBrowserNew",
            &(UNSPECIFIED, UNSPECIFIED, AVAHI_SERVICE_TYPE, DOMAIN, 0u32),
        )
        .await?
        .body()
        .deserialize()?;
        let mut found: BTreeMap<String, Instance> = BTreeMap::new();
        let mut unremembered = 0usize;
        loop {
            let next = std::future::poll_fn(|cx| Pin::new(&mut signals).poll_next(cx));
            let Ok(Some(Ok(message))) = runtime.timeout_at(deadline, next).await else {
                break;
            };
            let header = message.header();
            if header.path().map(|path| path.as_str()) != Some(browser.as_str()) {
                continue;
            }
            let member = header.member().map(|member| member.to_string());
            match member.as_deref() {
                Some("ItemNew") => {
                    let Ok(item) = message.body().deserialize::<Item>() else {
                        continue;
                    };
                    if found.len() >= max && !found.contains_key(&item.2) {
                        unremembered = unremembered.saturating_add(1);
                        continue;
                    }
                    let left = deadline.saturating_duration_since(Instant::now());
                    let resolving = resolve(&connection, &item);
                    match runtime.timeout(left, resolving).await {
                        Ok(Ok((address, zone, port, txt))) => {
                            let instance = found.entry(item.2.clone()).or_default();
                            if instance.addresses.len() < MAX_ADDRESSES
                                && !instance.addresses.contains(&(address, zone.clone()))
                            {
                                instance.addresses.push((address, zone));
                            }
                            instance.port = port;
                            instance.txt = txt;
                        }
                        Ok(Err(error)) => {
                            tracing::info!(service = %item.2, error = %crate::causes::Causes(&error), "cannot resolve an advertised repository");
                        }
                        Err(_) => break,
                    }
                }
                Some("ItemRemove") => {
                    if let Ok(item) = message.body().deserialize::<Item>() {
                        found.remove(&item.2);
                    }
                }
                Some("Failed") => {
                    let reason = message.body().deserialize::<String>().unwrap_or_default();
                    return Err(LanError::Avahi(format!("browsing failed: {reason}")));
                }
                _ => {}
            }
        }
        let _ = call(&connection, browser.as_str(), SERVICE_BROWSER, "Free", &()).await;
        let _ = connection.close().await;
        let peers = found
            .into_iter()
            .filter_map(|(name, instance)| match peer(&name, &instance) {
                Ok(peer) => Some(peer),
                Err(reason) => {
                    tracing::info!(service = %name, %reason, "ignoring an advertised repository");
                    None
                }
            })
            .collect();
        Ok((peers, unremembered))
    })
}

/// Resolves one instance to an address (with its interface name for IPv6), port and TXT.
/// The address is of the family the advert came over: asked for either, avahi answers with
/// whichever record arrives first, and hosts announce their IPv6 addresses over IPv4 too, so
/// the same peer would be reached at a different address from one listing to the next.
async fn resolve(
    connection: &Connection,
    item: &Item,
) -> Result<(IpAddr, Option<String>, u16, Vec<Vec<u8>>), LanError> {
    let (interface, protocol, name, kind, domain, _) = item;
    let resolved: Resolved = call(
        connection,
        "/",
        SERVER,
        "ResolveService",
        &(
            *interface,
            *protocol,
            name.as_str(),
            kind.as_str(),
            domain.as_str(),
            *protocol,
            0u32,
        ),
    )
    .await?
    .body()
    .deserialize()?;
    let address: IpAddr = resolved
        .7
        .parse()
        .map_err(|_| LanError::Avahi(format!("invalid address {:?}", resolved.7)))?;
    let zone = match address {
        IpAddr::V6(_) => Some(
            call(
                connection,
                "/",
                SERVER,
                "GetNetworkInterfaceNameByIndex",
                &(resolved.0,),
            )
            .await
            .ok()
            .and_then(|reply| reply.body().deserialize::<String>().ok())
            .unwrap_or_else(|| resolved.0.to_string()),
        ),
        IpAddr::V4(_) => None,
    };
    Ok((address, zone, resolved.8, resolved.9))
}

/// Splits "key=value" TXT records; a record without `=` is a key without a value.
pub fn txt_map(records: &[Vec<u8>]) -> BTreeMap<&str, Option<&[u8]>> {
    let mut map = BTreeMap::new();
    for record in records {
        let (key, value) = match record.iter().position(|byte| *byte == b'=') {
            Some(at) => (&record[..at], Some(&record[at + 1..])),
            None => (&record[..], None),
        };
        if let Ok(key) = std::str::from_utf8(key) {
            // The first record of a key counts, as RFC 6763 §6.4 says.
            map.entry(key).or_insert(value);
        }
    }
    map
}

fn peer(name: &str, instance: &Instance) -> Result<Peer, String> {
    let txt = txt_map(&instance.txt);
    let advertised = super::discover::parse_txt(|key| txt.get(key).copied())?;
    let url = peer_url(&instance.addresses, instance.port, advertised.repo_index)
        .ok_or_else(|| "it announces no usable address".to_owned())?;
    Ok(Peer {
        name: name.to_owned(),
        url,
        summary_timestamp: advertised.summary_timestamp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txt_records_split_at_the_first_equals_sign() {
        let records = vec![
            b"v=\x01".to_vec(),
            b"rb=a=b".to_vec(),
            b"flag".to_vec(),
            b"v=\x02".to_vec(),
        ];
        let map = txt_map(&records);
        assert_eq!(map.get("v"), Some(&Some(&b"\x01"[..])));
        assert_eq!(map.get("rb"), Some(&Some(&b"a=b"[..])));
        assert_eq!(map.get("flag"), Some(&None));
    }
}
