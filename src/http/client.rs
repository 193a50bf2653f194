//! Who a request comes from: the TCP peer, or, when that peer is a reverse proxy named by
//! `--trust-proxy`, the client the proxy says it forwards for. Every per-address rule (sign-in
//! and sign-up allowances, wrong-password back-off, the address a session was last used from,
//! `/metrics` for local addresses only) and the request's log line read it here, through
//! `client_ip`, never from `Request::remote_addr` (which stays the TCP peer: the stream
//! transport names a connection by it).
//!
//! The header is believed only as far as trusted proxies wrote it. Each proxy appends the
//! address it was connected from, so the hops are read from the right: the right-most address
//! that is not itself a trusted proxy is the client, and whatever stands to its left is what
//! that client claimed, never looked at. Without `--trust-proxy`, or from any other peer, the
//! header is ignored: anyone can send one. (poem's own `RealIp` and `Tracing` take the
//! left-most address of `X-Forwarded-For` or `X-Real-IP` from anybody, which is why the
//! request log is written here instead.)
//!
//! Every request has an id, in its `X-Request-Id` answer and on every line logged for it and
//! for the stream it opens: the one a trusted proxy sent (so its access log and ours name the
//! request alike), else one made here.

use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use ipnet::IpNet;
use poem::http::{HeaderMap, HeaderValue};
use poem::{Endpoint, IntoResponse, Request, Response};
use tracing::Instrument;

use crate::config::{Config, ForwardedHeader};
use crate::metrics::Metrics;

/// The header a request's id comes in (from a trusted proxy) and goes back out in.
pub const REQUEST_ID: &str = "x-request-id";

/// The longest request id taken from a proxy.
const MAX_REQUEST_ID: usize = 128;

/// Hops read from the right at most: a chain of trusted proxies longer than this is not a
/// deployment but a header made to cost us work.
const MAX_HOPS: usize = 16;

/// The proxies whose forwarding headers are believed, and which header they set.
#[derive(Debug, Clone)]
pub struct Proxies {
    trusted: Vec<IpNet>,
    header: ForwardedHeader,
}

/// The client a request comes from, as `Proxies::client` decided; in the request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

impl Proxies {
    pub fn new(trusted: Vec<IpNet>, header: ForwardedHeader) -> Self {
        Self { trusted, header }
    }

    /// `--trust-proxy` and `--trust-proxy-header`.
    pub fn of(config: &Config) -> Self {
        Self::new(config.trust_proxy.clone(), config.trust_proxy_header)
    }

    /// Whether `address` is one of the trusted proxies. An IPv4 address written as IPv6
    /// (`::ffff:127.0.0.1`, what a listener on `[::]` sees) is the IPv4 address.
    pub fn trusts(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        self.trusted.iter().any(|net| net.contains(&address))
    }

    /// The client of a request from `peer` carrying `headers`: `peer` itself unless it is a
    /// trusted proxy; else, walking the header's hops from the right, the first that is not a
    /// trusted proxy. A hop that is not an address (garbage, `unknown`, an obfuscated name)
    /// ends the walk at the last address a trusted proxy vouched for, and so does a chain of
    /// trusted proxies longer than `MAX_HOPS`.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.trusts(client) {
            return client;
        }
        let hops: Box<dyn Iterator<Item = Option<IpAddr>> + '_> = match self.header {
            ForwardedHeader::XForwardedFor => Box::new(headers.get_all("x-forwarded-for").iter().rev().flat_map(
                |value| match value.to_str() {
                    Ok(text) => Box::new(text.rsplit(',').map(|hop| parse_hop(hop.trim())))
                        as Box<dyn Iterator<Item = Option<IpAddr>>>,
                    Err(_) => Box::new(std::iter::once(None)),
                },
            )),
            ForwardedHeader::Forwarded => {
                Box::new(
                    headers
                        .get_all("forwarded")
                        .iter()
                        .rev()
                        .flat_map(|value| match value.to_str() {
                            Ok(text) => Box::new(rfc7239::parse(text).rev().map(|element| {
                                match element.ok()?.forwarded_for?.name {
                                    rfc7239::NodeName::Ip(ip) => Some(ip),
                                    rfc7239::NodeName::Unknown | rfc7239::NodeName::Obfuscated(_) => None,
                                }
                            })) as Box<dyn Iterator<Item = Option<IpAddr>>>,
                            Err(_) => Box::new(std::iter::once(None)),
                        }),
                )
            }
        };
        for hop in hops.take(MAX_HOPS) {
            let Some(hop) = hop else {
                return client;
            };
            client = hop.to_canonical();
            if !self.trusts(client) {
                return client;
            }
        }
        client
    }
}

/// One hop of `X-Forwarded-For`: an address, perhaps with a port (`192.0.2.1:4711`,
/// `[2001:db8::1]:4711`), an IPv6 one perhaps in brackets. Anything else is not an address.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(socket) = hop.parse::<SocketAddr>() {
        return Some(socket.ip());
    }
    let bracketed = hop.strip_prefix('[')?.strip_suffix(']')?;
    bracketed.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6)
}

/// The client address of `req`: what the `identify` middleware decided, else the TCP peer.
pub fn client_ip(req: &Request) -> Option<IpAddr> {
    req.data::<ClientAddr>()
        .map(|client| client.0)
        .or_else(|| req.remote_addr().as_socket_addr().map(|addr| addr.ip().to_canonical()))
}

/// The request's id, as `identify` decided it; in the request's extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub HeaderValue);

/// An id a proxy may give a request: 1 to `MAX_REQUEST_ID` letters, digits and `-._:`, which
/// covers nginx's `$request_id`, Caddy's UUIDs and HAProxy's `unique-id`, and keeps a log line
/// free of anything a client could make look like another field.
fn valid_request_id(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    (1..=MAX_REQUEST_ID).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':'))
}

/// A new request id: 16 hex digits, none repeated within the process (a counter through a
/// bijective mix) and unlike another process's (the counter starts from a random seed).
fn new_request_id() -> HeaderValue {
    static SEED: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let seed = *SEED.get_or_init(|| {
        let mut bytes = [0; 8];
        // Without randomness, ids are still unique in this process: they start at the time.
        match getrandom::fill(&mut bytes) {
            Ok(()) => u64::from_le_bytes(bytes),
            Err(_) => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_nanos() as u64),
        }
    });
    // splitmix64's finaliser: a bijection on u64, so distinct counters give distinct ids.
    let mut z = seed.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    HeaderValue::from_str(&format!("{z:016x}")).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

/// Decides the request's client (`ClientAddr`) and id (`RequestId`), both in its extensions,
/// and serves it inside a `request` span naming them, so every line logged for it says which
/// request it was and who asked; the answer carries the id in `X-Request-Id`, and is counted
/// in the metrics by its status and time.
pub async fn identify<E: Endpoint>(
    next: E,
    mut req: Request,
    proxies: std::sync::Arc<Proxies>,
    metrics: std::sync::Arc<Metrics>,
) -> poem::Result<Response> {
    let peer = req.remote_addr().as_socket_addr().map(|peer| peer.ip());
    let client = peer.map(|peer| proxies.client(peer, req.headers()));
    if let Some(client) = client {
        req.set_data(ClientAddr(client));
    }
    let id = match req.headers().get(REQUEST_ID) {
        Some(id) if peer.is_some_and(|peer| proxies.trusts(peer)) && valid_request_id(id) => id.clone(),
        _ => new_request_id(),
    };
    req.set_data(RequestId(id.clone()));
    let span = tracing::info_span!(
        "request",
        request_id = %id.to_str().unwrap_or("-"),
        client = %client.map_or_else(|| "-".to_owned(), |ip| ip.to_string()),
        method = %req.method(),
        uri = %req.original_uri(),
    );
    async move {
        let started = Instant::now();
        let mut response = match next.call(req).await {
            Ok(response) => response.into_response(),
            Err(error) => error.into_response(),
        };
        let elapsed = started.elapsed();
        metrics.requests.answered(response.status().as_u16(), elapsed);
        tracing::debug!(status = %response.status(), ?elapsed, "response");
        response.headers_mut().insert(REQUEST_ID, id);
        Ok(response)
    }
    .instrument(span)
    .await
}

#[cfg(test)]
mod tests {
    use poem::http::HeaderValue;

    use super::*;

    fn proxies(nets: &[&str], header: ForwardedHeader) -> Proxies {
        Proxies::new(nets.iter().map(|net| net.parse().unwrap()).collect(), header)
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("x-forwarded-for", HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    const LOCAL: &[&str] = &["127.0.0.0/8", "::1/128"];

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_says() {
        let p = proxies(LOCAL, ForwardedHeader::XForwardedFor);
        assert_eq!(p.client(ip("203.0.113.9"), &xff(&["198.51.100.1"])), ip("203.0.113.9"));
        let none = proxies(&[], ForwardedHeader::XForwardedFor);
        assert_eq!(none.client(ip("127.0.0.1"), &xff(&["198.51.100.1"])), ip("127.0.0.1"));
    }

    #[test]
    fn a_trusted_peer_names_the_right_most_untrusted_hop() {
        let p = proxies(&["127.0.0.1/32", "10.0.0.0/8"], ForwardedHeader::XForwardedFor);
        // The client claimed 1.1.1.1; the first proxy saw it come from 198.51.100.7 and a
        // second, trusted one, from the first.
        let headers = xff(&["1.1.1.1, 198.51.100.7, 10.0.0.5"]);
        assert_eq!(p.client(ip("127.0.0.1"), &headers), ip("198.51.100.7"));
        // Several header lines are one list, in order.
        let headers = xff(&["1.1.1.1", "198.51.100.7", "10.0.0.5"]);
        assert_eq!(p.client(ip("127.0.0.1"), &headers), ip("198.51.100.7"));
        // No header from a trusted peer: the peer is the client (a health check on the box).
        assert_eq!(p.client(ip("127.0.0.1"), &HeaderMap::new()), ip("127.0.0.1"));
        // Every hop trusted: the left-most.
        assert_eq!(p.client(ip("127.0.0.1"), &xff(&["10.1.1.1, 10.0.0.5"])), ip("10.1.1.1"));
    }

    #[test]
    fn ports_brackets_and_mapped_addresses_are_read() {
        let p = proxies(LOCAL, ForwardedHeader::XForwardedFor);
        for (hop, client) in [
            ("198.51.100.7:4711", "198.51.100.7"),
            ("2001:db8::7", "2001:db8::7"),
            ("[2001:db8::7]", "2001:db8::7"),
            ("[2001:db8::7]:4711", "2001:db8::7"),
            ("::ffff:198.51.100.7", "198.51.100.7"),
            (" 198.51.100.7 ", "198.51.100.7"),
        ] {
            assert_eq!(p.client(ip("::1"), &xff(&[hop])), ip(client), "{hop}");
        }
        // A listener on [::] sees an IPv4 proxy as a mapped address; it is still trusted.
        assert_eq!(
            p.client(ip("::ffff:127.0.0.1"), &xff(&["198.51.100.7"])),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn garbage_stops_at_the_last_address_a_trusted_proxy_gave() {
        let p = proxies(LOCAL, ForwardedHeader::XForwardedFor);
        for value in [
            "not an address",
            "",
            "198.51.100.7, unknown",
            "198.51.100.7,,",
            "fe80::1%eth0",
            "[198.51.100.7]",
            "2001:db8::7]",
            "198.51.100.7:99999",
            "198.51.100.7 10.0.0.1",
        ] {
            assert_eq!(p.client(ip("127.0.0.1"), &xff(&[value])), ip("127.0.0.1"), "{value:?}");
        }
        // Behind it, garbage the client wrote is never reached.
        assert_eq!(
            p.client(ip("127.0.0.1"), &xff(&["<script>, 198.51.100.7"])),
            ip("198.51.100.7")
        );
        // A header that is not text.
        let mut headers = HeaderMap::new();
        headers.append("x-forwarded-for", HeaderValue::from_bytes(b"198.51.100.7\xff").unwrap());
        assert_eq!(p.client(ip("127.0.0.1"), &headers), ip("127.0.0.1"));
    }

    #[test]
    fn too_many_trusted_hops_end_the_walk() {
        let p = proxies(&["10.0.0.0/8", "127.0.0.1/32"], ForwardedHeader::XForwardedFor);
        let mut hops: Vec<String> = vec!["198.51.100.7".into()];
        hops.extend((0..100).map(|n| format!("10.0.{}.{}", n / 250, n % 250)));
        let headers = xff(&[&hops.join(", ")]);
        let client = p.client(ip("127.0.0.1"), &headers);
        assert!(p.trusts(client), "stops inside the trusted chain: {client}");
        assert_ne!(client, ip("198.51.100.7"), "not walked past {MAX_HOPS} hops");
        // A long chain of untrusted hops costs one step.
        let spoofed: Vec<String> = (0..5000).map(|n| format!("192.0.2.{}", n % 250)).collect();
        let headers = xff(&[&spoofed.join(",")]);
        assert_eq!(p.client(ip("127.0.0.1"), &headers), ip("192.0.2.249"));
    }

    #[test]
    fn forwarded_for_is_read_only_when_chosen() {
        let mut headers = HeaderMap::new();
        headers.append(
            "forwarded",
            HeaderValue::from_static(r#"for=1.1.1.1, for="[2001:db8::7]:4711";proto=https, for=127.0.0.1"#),
        );
        headers.append("x-forwarded-for", HeaderValue::from_static("203.0.113.50"));
        let forwarded = proxies(LOCAL, ForwardedHeader::Forwarded);
        assert_eq!(forwarded.client(ip("127.0.0.1"), &headers), ip("2001:db8::7"));
        let xff_only = proxies(LOCAL, ForwardedHeader::XForwardedFor);
        assert_eq!(xff_only.client(ip("127.0.0.1"), &headers), ip("203.0.113.50"));
        for value in ["for=unknown", "for=_hidden", "for", "nonsense=1", "for=999.1.1.1"] {
            let mut headers = HeaderMap::new();
            headers.append("forwarded", HeaderValue::from_str(value).unwrap());
            assert_eq!(forwarded.client(ip("127.0.0.1"), &headers), ip("127.0.0.1"), "{value}");
        }
    }

    #[test]
    fn trust_is_by_network() {
        let p = proxies(&["10.0.0.0/8", "fd00::/8"], ForwardedHeader::XForwardedFor);
        assert!(p.trusts(ip("10.200.3.4")));
        assert!(p.trusts(ip("fd12::1")));
        assert!(p.trusts(ip("::ffff:10.0.0.1")));
        assert!(!p.trusts(ip("11.0.0.1")));
        assert!(!p.trusts(ip("fe80::1")));
    }
}
