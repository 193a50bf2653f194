//! Prometheus metrics, served as text at `/metrics`. Every metric is an atomic: recording one
//! costs an atomic add, no lock and no allocation.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

pub struct Metrics {
    registry: Registry,
    pub open_streams: Gauge,
    pub events_written: Counter,
    pub frames_sent: Counter,
    pub lag_recoveries: Counter,
    pub replayed_events: Counter,
    pub stream_resets: Counter,
    pub write_batch_size: Histogram,
    pub connections_timed_out: Counter,
    pub refused_by_limits: Counter,
    pub open_connections: Gauge,
    pub connections_refused: Counter,
    pub tls_handshakes: Counter,
    pub tls_handshake_failures: Counter,
    pub tls_reloads: Counter,
    pub tls_reload_failures: Counter,
}

impl Metrics {
    pub fn new() -> Self {
        let open_streams = Gauge::default();
        let events_written = Counter::default();
        let frames_sent = Counter::default();
        let lag_recoveries = Counter::default();
        let replayed_events = Counter::default();
        let stream_resets = Counter::default();
        let write_batch_size = Histogram::new(exponential_buckets(1.0, 2.0, 12));
        let connections_timed_out = Counter::default();
        let refused_by_limits = Counter::default();
        let open_connections = Gauge::default();
        let connections_refused = Counter::default();
        let tls_handshakes = Counter::default();
        let tls_handshake_failures = Counter::default();
        let tls_reloads = Counter::default();
        let tls_reload_failures = Counter::default();
        let mut registry = Registry::with_prefix("chat");
        registry.register("open_streams", "Event streams open now", open_streams.clone());
        registry.register("events_written", "Events committed to the log", events_written.clone());
        registry.register(
            "frames_sent",
            "Events sent on event streams, live or replayed",
            frames_sent.clone(),
        );
        registry.register(
            "lag_recoveries",
            "Times a stream fell behind the live channel and caught up from the database",
            lag_recoveries.clone(),
        );
        registry.register(
            "replayed_events",
            "Events sent to streams from the database",
            replayed_events.clone(),
        );
        registry.register(
            "stream_resets",
            "Streams opened with a cursor the server could not honour (sent `event: reset`)",
            stream_resets.clone(),
        );
        registry.register(
            "write_batch_size",
            "Requests committed per transaction",
            write_batch_size.clone(),
        );
        registry.register(
            "connections_timed_out",
            "Connections closed because a request did not arrive in time or writes stalled",
            connections_timed_out.clone(),
        );
        registry.register(
            "refused_by_limits",
            "Requests refused by a rate or stream limit (429, or 503 for --max-streams)",
            refused_by_limits.clone(),
        );
        registry.register(
            "open_connections",
            "Client connections open now, streams included",
            open_connections.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections turned away at accept by --max-connections or --max-connections-per-address",
            connections_refused.clone(),
        );
        registry.register(
            "tls_handshakes",
            "TLS handshakes completed (with --tls-cert)",
            tls_handshakes.clone(),
        );
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes that failed: a client that does not trust the certificate, speaks no TLS, or gave up",
            tls_handshake_failures.clone(),
        );
        registry.register(
            "tls_reloads",
            "Times SIGHUP put a newly read certificate and key in service",
            tls_reloads.clone(),
        );
        registry.register(
            "tls_reload_failures",
            "Times SIGHUP found a certificate or key that could not be used (the one in service stays)",
            tls_reload_failures.clone(),
        );
        Self {
            registry,
            open_streams,
            events_written,
            frames_sent,
            lag_recoveries,
            replayed_events,
            stream_resets,
            write_batch_size,
            connections_timed_out,
            refused_by_limits,
            open_connections,
            connections_refused,
            tls_handshakes,
            tls_handshake_failures,
            tls_reloads,
            tls_reload_failures,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a `String` cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
