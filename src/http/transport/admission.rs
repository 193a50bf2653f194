//! Which connections the server takes: at most `--max-connections` open at once, and at most
//! `--max-connections-per-address` from one client address, both kept below the process's file
//! limit, so `accept` never fails for want of a file descriptor and the database can always
//! open its files.
//!
//! At start-up the soft `RLIMIT_NOFILE` is raised to the hard one, and the defaults are derived
//! from what it then is (`Caps::derive`). A connection past a limit is answered at once with a
//! small canned `503` (in all) or `429` (this address), with `Retry-After`, and closed: the
//! answer costs one non-blocking write and no task, so a flood pays for itself.
//!
//! A connection from a `--trust-proxy` proxy is not held to the per-address cap: it carries
//! many clients, whose addresses are known only once a request's headers are read, long after
//! `accept`; the per-address rules that can wait for them (sign-in, sign-up) count those
//! clients instead. It still counts towards `--max-connections`.
//!
//! Each accepted socket holds a `Slot` until it closes, wherever it is served (by the HTTP
//! server, or handed off to a stream's task and back).

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::net::TcpStream;

use crate::app::limits::client_group;
use crate::config::Config;
use crate::http::client::Proxies;
use crate::metrics::Metrics;

/// File descriptors kept back from connections: the database and its WAL for the writer and
/// every reader, the listener, the runtime's own, and log files.
const RESERVED_FILES: u64 = 128;
/// Connections one address may hold by default: a few hundred browsers behind one NAT, each
/// holding one stream and a few requests. A server behind a proxy sees one address for all.
const DEFAULT_PER_ADDRESS: usize = 1024;

/// Raises this process's soft limit on open files to its hard limit, and returns the limit in
/// effect (`u64::MAX` for none). Failing to raise it is not fatal: the limits derived from the
/// lower one still hold.
pub fn raise_file_limit() -> io::Result<u64> {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit only writes the struct it is given.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            return Err(io::Error::last_os_error());
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            // SAFETY: setrlimit only reads the struct it is given.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                limit = raised;
            } else {
                // macOS refuses more than OPEN_MAX whatever the hard limit says.
                tracing::warn!(error = %io::Error::last_os_error(), soft = limit.rlim_cur, "cannot raise the open-file limit");
            }
        }
        Ok(if limit.rlim_cur == libc::RLIM_INFINITY {
            u64::MAX
        } else {
            limit.rlim_cur
        })
    }
    #[cfg(not(unix))]
    Ok(u64::MAX)
}

/// The connection and stream caps in effect; `0` is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub connections: usize,
    pub per_address: usize,
    pub streams: usize,
}

impl Caps {
    /// The flags' values, with each one not given derived from `file_limit`: connections up to
    /// the limit less `RESERVED_FILES` (a quarter of it, for a small limit), streams nine
    /// tenths of connections so that `--max-streams` answers `503` while a connection to say
    /// it on is still free.
    pub fn derive(config: &Config, file_limit: u64) -> Self {
        let reserve = RESERVED_FILES.min(file_limit / 4);
        let usable = usize::try_from(file_limit - reserve).unwrap_or(usize::MAX).max(1);
        let connections = config.max_connections.unwrap_or(usable);
        let bounded = |n: usize| if connections == 0 { n } else { n.min(connections) };
        let per_address = config
            .max_connections_per_address
            .unwrap_or_else(|| bounded(DEFAULT_PER_ADDRESS));
        let streams = config.max_streams.unwrap_or_else(|| {
            let base = if connections == 0 { usable } else { connections };
            (base - base / 10).max(1)
        });
        if connections == 0 {
            tracing::info!(file_limit, "no connection cap: past the open-file limit, accept fails");
        } else if connections > usable {
            tracing::warn!(
                max_connections = connections,
                file_limit,
                "--max-connections is above what the open-file limit allows: accept may fail"
            );
        }
        Self {
            connections,
            per_address,
            streams,
        }
    }
}

impl Caps {
    /// Writes the caps into `config`, so every part of the server reads the same ones.
    pub fn settle(self, config: &mut Config) {
        config.max_connections = Some(self.connections);
        config.max_connections_per_address = Some(self.per_address);
        config.max_streams = Some(self.streams);
    }

    /// The caps of a settled `config` (a flag not settled is no limit).
    pub fn of(config: &Config) -> Self {
        Self {
            connections: config.max_connections.unwrap_or(0),
            per_address: config.max_connections_per_address.unwrap_or(0),
            streams: config.max_streams.unwrap_or(0),
        }
    }
}

/// The open connections, in all and by client address.
pub struct Admission {
    caps: Caps,
    /// Peers exempt from the per-address cap.
    proxies: Option<Arc<Proxies>>,
    open: Mutex<Open>,
    gauge: Gauge,
    refused: Counter,
}

#[derive(Default)]
struct Open {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// Why a connection was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `--max-connections` are open.
    Full,
    /// `--max-connections-per-address` are open from this client.
    ThisAddress,
}

impl Refusal {
    /// The whole answer written to a refused connection.
    fn response(self) -> &'static [u8] {
        match self {
            Self::Full => concat!(
                "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n",
                "retry-after: 5\r\ncontent-length: 58\r\nconnection: close\r\n\r\n",
                r#"{"error":"the server has all the connections it can take"}"#,
            )
            .as_bytes(),
            Self::ThisAddress => concat!(
                "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\n",
                "retry-after: 5\r\ncontent-length: 50\r\nconnection: close\r\n\r\n",
                r#"{"error":"too many connections from this address"}"#,
            )
            .as_bytes(),
        }
    }

    /// Tells the client, as far as its socket takes it now without waiting, and closes.
    pub fn answer(self, socket: TcpStream) {
        let _ = socket.try_write(self.response());
    }
}

/// One open connection's place; dropping it gives the place back.
pub struct Slot {
    admission: Arc<Admission>,
    address: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.admission.lock();
        open.total -= 1;
        if let Some(n) = open.by_address.get_mut(&self.address) {
            *n -= 1;
            if *n == 0 {
                open.by_address.remove(&self.address);
            }
        }
        self.admission.gauge.set(i64::try_from(open.total).unwrap_or(i64::MAX));
    }
}

impl Admission {
    /// Publishes the open connections as `chat_open_connections` and counts refusals in
    /// `chat_connections_refused`.
    pub fn new(caps: Caps, metrics: &Metrics) -> Arc<Self> {
        Self::with_proxies(caps, None, metrics)
    }

    /// As `new`, for a server behind `proxies`, whose connections only `caps.connections` bounds.
    pub fn behind(caps: Caps, proxies: Arc<Proxies>, metrics: &Metrics) -> Arc<Self> {
        Self::with_proxies(caps, Some(proxies), metrics)
    }

    fn with_proxies(caps: Caps, proxies: Option<Arc<Proxies>>, metrics: &Metrics) -> Arc<Self> {
        Arc::new(Self {
            caps,
            proxies,
            open: Mutex::default(),
            gauge: metrics.open_connections.clone(),
            refused: metrics.connections_refused.clone(),
        })
    }

    /// A place for a connection from `peer`, or why there is none.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Slot, Refusal> {
        let address = client_group(peer);
        let mut open = self.lock();
        let refusal = if self.caps.connections > 0 && open.total >= self.caps.connections {
            Some(Refusal::Full)
        } else if self.caps.per_address > 0
            && !self.proxies.as_ref().is_some_and(|proxies| proxies.trusts(peer))
            && open
                .by_address
                .get(&address)
                .is_some_and(|&n| n >= self.caps.per_address)
        {
            Some(Refusal::ThisAddress)
        } else {
            None
        };
        if let Some(refusal) = refusal {
            self.refused.inc();
            return Err(refusal);
        }
        open.total += 1;
        *open.by_address.entry(address).or_default() += 1;
        self.gauge.set(i64::try_from(open.total).unwrap_or(i64::MAX));
        Ok(Slot {
            admission: Arc::clone(self),
            address,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        // Counts only, each change whole: a panic cannot leave them inconsistent.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn caps(args: &[&str], file_limit: u64) -> Caps {
        let config = Config::parse_from([&["chat-server"], args].concat());
        Caps::derive(&config, file_limit)
    }

    #[test]
    fn the_defaults_stay_below_the_file_limit() {
        let derived = caps(&[], 20_000);
        assert_eq!(derived.connections, 20_000 - 128);
        assert_eq!(derived.per_address, 1024);
        assert!(derived.streams < derived.connections);
        let small = caps(&[], 256);
        assert_eq!(small.connections, 192);
        assert_eq!(small.per_address, 192);
        assert_eq!(small.streams, 173);
    }

    #[test]
    fn flags_win_and_zero_is_no_limit() {
        let given = caps(
            &[
                "--max-connections",
                "500",
                "--max-connections-per-address",
                "0",
                "--max-streams",
                "7",
            ],
            20_000,
        );
        assert_eq!(
            given,
            Caps {
                connections: 500,
                per_address: 0,
                streams: 7
            }
        );
        let streams_follow = caps(&["--max-connections", "100"], 20_000);
        assert_eq!((streams_follow.per_address, streams_follow.streams), (100, 90));
    }

    #[test]
    fn a_full_server_or_address_refuses_until_a_place_is_given_back() {
        let metrics = Metrics::new();
        let admission = Admission::new(
            Caps {
                connections: 3,
                per_address: 2,
                streams: 0,
            },
            &metrics,
        );
        let one: IpAddr = "10.0.0.1".parse().unwrap();
        let two: IpAddr = "10.0.0.2".parse().unwrap();
        let a = admission.admit(one).unwrap();
        let _b = admission.admit(one).unwrap();
        assert_eq!(admission.admit(one).err(), Some(Refusal::ThisAddress));
        let _c = admission.admit(two).unwrap();
        assert_eq!(admission.admit(two).err(), Some(Refusal::Full));
        drop(a);
        assert!(admission.admit(one).is_ok());
        assert_eq!(metrics.connections_refused.get(), 2);
    }

    #[test]
    fn one_ipv6_64_is_one_address() {
        let metrics = Metrics::new();
        let admission = Admission::new(
            Caps {
                connections: 0,
                per_address: 1,
                streams: 0,
            },
            &metrics,
        );
        let _held = admission.admit("2001:db8::1".parse().unwrap()).unwrap();
        assert!(admission.admit("2001:db8::2".parse().unwrap()).is_err());
        assert!(admission.admit("2001:db8:0:1::1".parse().unwrap()).is_ok());
    }

    #[test]
    fn a_trusted_proxy_is_held_only_to_the_total() {
        let metrics = Metrics::new();
        let proxies = Proxies::new(
            vec!["127.0.0.0/8".parse().unwrap()],
            crate::config::ForwardedHeader::XForwardedFor,
        );
        let admission = Admission::behind(
            Caps {
                connections: 4,
                per_address: 1,
                streams: 0,
            },
            Arc::new(proxies),
            &metrics,
        );
        let proxy: IpAddr = "127.0.0.1".parse().unwrap();
        let held: Vec<Slot> = (0..3).map(|_| admission.admit(proxy).unwrap()).collect();
        let other: IpAddr = "10.0.0.1".parse().unwrap();
        let _one = admission.admit(other).unwrap();
        assert_eq!(
            admission.admit(proxy).err(),
            Some(Refusal::Full),
            "the total still holds"
        );
        drop(held);
        assert_eq!(
            admission.admit(other).err(),
            Some(Refusal::ThisAddress),
            "others keep their cap"
        );
    }

    #[test]
    fn the_canned_answers_say_their_length() {
        for refusal in [Refusal::Full, Refusal::ThisAddress] {
            let text = std::str::from_utf8(refusal.response()).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            assert!(head.contains(&format!("content-length: {}\r\n", body.len())), "{text}");
            assert!(head.contains("retry-after: 5\r\n"), "{text}");
            assert!(serde_json::from_str::<serde_json::Value>(body).is_ok(), "{body}");
        }
    }
}
