//! Which site a request is for and from: the `Host` it names (DNS rebinding), the `Origin` of
//! a state-changing request (cross-site forms and scripts), and the fetch metadata of a request
//! for the API (a cross-site page that makes a signed-in browser open a stream).
//!
//! The server's own origins are `--public-origin` (one or more, behind a proxy or under a name),
//! and what reaching it directly looks like: `http://` (`https://` with `--tls-cert`) and an IP
//! literal or `localhost`, with the port it listens on (which no DNS can make a browser send
//! for another site's name). A name an attacker's DNS points at us is none of these.

use poem::http::{Method, StatusCode, Uri, Version, header};
use poem::{Endpoint, IntoResponse, Request, Response};

use super::error::{ApiError, json_error};

/// An origin: scheme, host (lowercased) and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    /// As a URL's start: `https://chat.example.com`, the port only where it is not the
    /// scheme's own.
    pub fn url(&self) -> String {
        let default = if self.scheme == "https" { 443 } else { 80 };
        if self.port == default {
            format!("{}://{}", self.scheme, self.host)
        } else {
            format!("{}://{}:{}", self.scheme, self.host, self.port)
        }
    }

    /// `http://host[:port]` or `https://…`; nothing after the authority.
    pub fn parse(raw: &str) -> Option<Self> {
        let (scheme, rest) = raw.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        let default = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return None,
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = split_authority(authority, default)?;
        Some(Self { scheme, host, port })
    }
}

/// `host[:port]` (a bracketed IPv6 literal included) as a lowercased host and a port.
fn split_authority(authority: &str, default_port: u16) -> Option<(String, u16)> {
    if authority.is_empty() || authority.contains(['/', '@', '?', '#', ' ']) {
        return None;
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(':') && (host.starts_with('[') == host.ends_with(']')) => {
            (host, port.parse().ok()?)
        }
        _ => (authority, default_port),
    };
    if host.is_empty() {
        return None;
    }
    Some((host.to_ascii_lowercase(), port))
}

fn is_ip_literal(host: &str) -> bool {
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    bare.parse::<std::net::IpAddr>().is_ok()
}

/// The origins this server answers as.
#[derive(Debug, Clone)]
pub struct Origins {
    /// `--public-origin`; empty: reached directly.
    public: Vec<Origin>,
    /// The port it listens on.
    port: u16,
    /// How it is reached directly: `https` when it serves TLS itself, else `http`.
    scheme: &'static str,
}

impl Origins {
    pub fn new(public: Vec<Origin>, port: u16, tls: bool) -> Self {
        let scheme = if tls { "https" } else { "http" };
        Self { public, port, scheme }
    }

    /// Where links to this server start, for a request to `authority` (which the guard has
    /// checked): the first `--public-origin`, else the server as it was reached directly.
    pub fn base_url(&self, authority: Option<&str>) -> String {
        match (self.public.first(), authority) {
            (Some(public), _) => public.url(),
            (None, Some(authority)) => format!("{}://{authority}", self.scheme),
            (None, None) => format!("{}://127.0.0.1:{}", self.scheme, self.port),
        }
    }

    /// Where a plain-http request for `authority` (to the `--redirect-http` listener) goes
    /// over https: the `https` public origin of that host, or, for an IP address or
    /// `localhost`, that host on the port this server listens on. `None` for a host that is
    /// not ours, which gets no redirect (it would send a browser to someone else's name).
    pub fn secure_base_for(&self, authority: &str) -> Option<String> {
        let (host, _) = split_authority(authority, 80)?;
        if let Some(public) = self.public.iter().find(|o| o.scheme == "https" && o.host == host) {
            return Some(public.url());
        }
        (host == "localhost" || is_ip_literal(&host)).then(|| {
            Origin {
                scheme: "https".into(),
                host,
                port: self.port,
            }
            .url()
        })
    }

    /// Whether `authority` is how this server is reached directly.
    fn direct(&self, authority: &str) -> bool {
        split_authority(authority, 80)
            .is_some_and(|(host, port)| port == self.port && (host == "localhost" || is_ip_literal(&host)))
    }

    /// Whether a `Host` (or HTTP/2 `:authority`) names this server.
    fn host_allowed(&self, authority: &str) -> bool {
        self.direct(authority)
            || self.public.iter().any(|origin| {
                let default = if origin.scheme == "https" { 443 } else { 80 };
                split_authority(authority, default)
                    .is_some_and(|(host, port)| host == origin.host && port == origin.port)
            })
    }

    /// Whether an `Origin` header is this server's own, for a request to `authority`.
    fn origin_allowed(&self, origin: &str, authority: &str) -> bool {
        let Some(origin) = Origin::parse(origin) else {
            return false;
        };
        let same_as_direct = origin.scheme == self.scheme
            && self.direct(authority)
            && split_authority(authority, 80).is_some_and(|(host, port)| host == origin.host && port == origin.port);
        same_as_direct || self.public.contains(&origin)
    }
}

/// Paths any `Host` may ask for: a load balancer's or a monitor's probe.
fn any_host(uri: &Uri) -> bool {
    matches!(uri.path(), "/healthz" | "/metrics")
}

/// The authority a request is for: its one `Host`, or HTTP/2's `:authority`. `Err` for a
/// request that has none where it must, or two, or, on HTTP/2, a `Host` that names another
/// authority than `:authority` (RFC 9113 calls it malformed): two names, one of them checked
/// and the other used, are how requests get past a host check.
pub fn authority(req: &Request) -> Result<Option<String>, &'static str> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => Err("a request names one Host"),
        (Some(host), None) => {
            let host = host.to_str().map_err(|_| "the Host header is not text")?;
            if req.version() >= Version::HTTP_2
                && let Some(own) = req.uri().authority()
                && !own.as_str().eq_ignore_ascii_case(host)
            {
                return Err("the Host header names another host than the request");
            }
            Ok(Some(host.to_owned()))
        }
        (None, _) => match req.uri().authority() {
            Some(authority) => Ok(Some(authority.as_str().to_owned())),
            None if req.version() <= Version::HTTP_10 => Ok(None),
            None => Err("a request names its Host"),
        },
    }
}

/// The guard every request passes: a `Host` of ours; for a state-changing request a browser
/// sent with its cookie, an `Origin` of ours; and the API refuses what another site's page
/// asked a browser to fetch. Bearer-token requests (a browser never adds those on its own)
/// need no `Origin`.
pub async fn guard<E: Endpoint>(next: E, req: Request, origins: std::sync::Arc<Origins>) -> poem::Result<Response> {
    let origins = Some(origins);
    let authority = match authority(&req) {
        Ok(authority) => authority,
        Err(why) => return Ok(json_error(StatusCode::BAD_REQUEST, why)),
    };
    if let (Some(origins), Some(authority)) = (&origins, &authority)
        && !any_host(req.uri())
        && !origins.host_allowed(authority)
    {
        return Ok(json_error(
            StatusCode::MISDIRECTED_REQUEST,
            "this server does not answer for that host (see --public-origin)",
        ));
    }
    let bearer = req
        .header(header::AUTHORIZATION)
        .is_some_and(|v| v.get(..7).is_some_and(|scheme| scheme.eq_ignore_ascii_case("bearer ")));
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe
        && !bearer
        && let Some(origin) = req.header(header::ORIGIN)
        && !origins
            .as_ref()
            .is_some_and(|o| o.origin_allowed(origin, authority.as_deref().unwrap_or_default()))
    {
        return Err(ApiError::CrossSite.into());
    }
    // Another site's page cannot use the API with this browser's cookie, not even to open a
    // stream (which would show its user online): fetch metadata says who asked.
    let cross_site = matches!(req.header("sec-fetch-site"), Some("cross-site" | "same-site"));
    if cross_site && !bearer && req.uri().path().starts_with("/api/") {
        return Err(ApiError::CrossSite.into());
    }
    Ok(next.call(req).await?.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn direct() -> Origins {
        Origins::new(vec![], 8080, false)
    }

    #[test]
    fn reached_directly_only_ip_literals_and_localhost_on_our_port_are_us() {
        let o = direct();
        for ok in ["127.0.0.1:8080", "LOCALHOST:8080", "[::1]:8080", "192.168.1.5:8080"] {
            assert!(o.host_allowed(ok), "{ok}");
        }
        for bad in [
            "evil.example:8080",
            "127.0.0.1:8081",
            "127.0.0.1",
            "",
            "a b:8080",
            "127.0.0.1:x",
        ] {
            assert!(!o.host_allowed(bad), "{bad}");
        }
    }

    #[test]
    fn origins_match_in_scheme_host_and_port() {
        let o = direct();
        assert!(o.origin_allowed("http://127.0.0.1:8080", "127.0.0.1:8080"));
        assert!(o.origin_allowed("HTTP://LocalHost:8080", "localhost:8080"));
        assert!(!o.origin_allowed("https://127.0.0.1:8080", "127.0.0.1:8080"), "scheme");
        assert!(!o.origin_allowed("http://127.0.0.1:8081", "127.0.0.1:8080"), "port");
        assert!(!o.origin_allowed("http://evil.example", "127.0.0.1:8080"));
        assert!(!o.origin_allowed("null", "127.0.0.1:8080"));
        assert!(!o.origin_allowed("127.0.0.1:8080", "127.0.0.1:8080"));
    }

    #[test]
    fn a_public_origin_is_answered_beside_direct_access() {
        let public = Origin::parse("https://Chat.Example.com/").unwrap();
        let o = Origins::new(vec![public], 8080, false);
        assert!(o.host_allowed("chat.example.com"));
        assert!(o.host_allowed("chat.example.com:443"));
        assert!(!o.host_allowed("chat.example.com:8080"));
        assert!(!o.host_allowed("elsewhere.example.com"));
        assert!(o.host_allowed("127.0.0.1:8080"), "and directly, as always");
        assert!(o.origin_allowed("https://chat.example.com", "chat.example.com"));
        assert!(
            o.origin_allowed("https://chat.example.com", "127.0.0.1:8080"),
            "a proxy may pass the backend's Host"
        );
        assert!(!o.origin_allowed("http://chat.example.com", "chat.example.com"));
        assert!(Origin::parse("ftp://x").is_none());
        assert!(Origin::parse("https://x/path").is_none());
    }

    #[test]
    fn with_tls_the_direct_origin_is_https() {
        let o = Origins::new(vec![], 8443, true);
        assert!(o.host_allowed("127.0.0.1:8443"));
        assert!(o.origin_allowed("https://127.0.0.1:8443", "127.0.0.1:8443"));
        assert!(!o.origin_allowed("http://127.0.0.1:8443", "127.0.0.1:8443"), "scheme");
        assert_eq!(o.base_url(Some("localhost:8443")), "https://localhost:8443");
    }

    #[test]
    fn plain_http_is_sent_to_the_https_origin_of_its_host_and_only_for_hosts_of_ours() {
        let public = Origin::parse("https://chat.example.com").unwrap();
        let o = Origins::new(vec![public], 8443, true);
        assert_eq!(
            o.secure_base_for("chat.example.com").as_deref(),
            Some("https://chat.example.com")
        );
        assert_eq!(
            o.secure_base_for("Chat.Example.com:80").as_deref(),
            Some("https://chat.example.com")
        );
        assert_eq!(
            o.secure_base_for("127.0.0.1:8080").as_deref(),
            Some("https://127.0.0.1:8443")
        );
        assert_eq!(o.secure_base_for("[::1]:8080").as_deref(), Some("https://[::1]:8443"));
        assert_eq!(o.secure_base_for("evil.example"), None);
        assert_eq!(o.secure_base_for("a b"), None);
        let on_443 = Origins::new(vec![], 443, true);
        assert_eq!(
            on_443.secure_base_for("localhost").as_deref(),
            Some("https://localhost")
        );
    }
}
