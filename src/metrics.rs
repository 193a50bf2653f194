//! Prometheus metrics, served as text at `/metrics`. Recording one on a hot path (a frame sent,
//! a request answered, a commit) costs an atomic add, no lock and no allocation: a labelled
//! counter there is looked up once, here, and kept. The gauges of the database file, the last
//! backup and the process are read when `/metrics` is asked for (`Metrics::observe_*`).

use std::fmt::Write as _;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::domain::Scope;

/// Every metric of the server.
pub struct Metrics {
    registry: Registry,
    pub open_streams: Gauge,
    pub events_written: Counter,
    /// Events sent on event streams, live or replayed, by the scope of the event.
    pub deliveries: Deliveries,
    pub lag_recoveries: Counter,
    pub replayed_events: Counter,
    pub resumed_streams: Counter,
    pub stream_resets: Counter,
    pub write_batch_size: Histogram,
    pub commit_seconds: Histogram,
    pub connections_timed_out: Counter,
    pub refusals: Refusals,
    pub open_connections: Gauge,
    pub connections_refused: Counter,
    pub requests: Requests,
    pub tls_handshakes: Counter,
    pub tls_handshake_failures: Counter,
    pub tls_reloads: Counter,
    pub tls_reload_failures: Counter,
    pub storage: Storage,
    process: Process,
}

/// `chat_deliveries_total{scope}`, one counter per scope, looked up once.
pub struct Deliveries {
    room: Counter,
    user: Counter,
    everyone: Counter,
}

impl Deliveries {
    fn new(family: &Family<ScopeLabels, Counter>) -> Self {
        let counter = |scope| family.get_or_create(&ScopeLabels { scope }).clone();
        Self {
            room: counter(ScopeLabel::Room),
            user: counter(ScopeLabel::User),
            everyone: counter(ScopeLabel::Everyone),
        }
    }

    /// One event of `scope` sent on a stream.
    pub fn sent(&self, scope: Scope) {
        match scope {
            Scope::Room(_) => &self.room,
            Scope::User(_) => &self.user,
            Scope::Everyone => &self.everyone,
        }
        .inc();
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScopeLabels {
    scope: ScopeLabel,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
enum ScopeLabel {
    Room,
    User,
    Everyone,
}

impl EncodeLabelValue for ScopeLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(match self {
            Self::Room => "room",
            Self::User => "user",
            Self::Everyone => "everyone",
        })
    }
}

/// The limit a request was refused by, as `chat_refused_by_limits_total{limit}` names it.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Limit {
    Messages,
    Statuses,
    Rooms,
    Dms,
    MemberChanges,
    Edits,
    Reactions,
    Reads,
    Searches,
    StreamOpens,
    AccountChanges,
    Invites,
    SignIns,
    SignInFailures,
    SignUps,
    /// `--max-streams`: the server is full.
    Streams,
    /// `--max-streams-per-user`.
    StreamsPerUser,
    /// `--max-queued-hashes`: too many sign-ins waiting for a core.
    Hashing,
}

impl Limit {
    pub const ALL: [Self; 18] = [
        Self::Messages,
        Self::Statuses,
        Self::Rooms,
        Self::Dms,
        Self::MemberChanges,
        Self::Edits,
        Self::Reactions,
        Self::Reads,
        Self::Searches,
        Self::StreamOpens,
        Self::AccountChanges,
        Self::Invites,
        Self::SignIns,
        Self::SignInFailures,
        Self::SignUps,
        Self::Streams,
        Self::StreamsPerUser,
        Self::Hashing,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Messages => "messages",
            Self::Statuses => "statuses",
            Self::Rooms => "rooms",
            Self::Dms => "dms",
            Self::MemberChanges => "member_changes",
            Self::Edits => "edits",
            Self::Reactions => "reactions",
            Self::Reads => "reads",
            Self::Searches => "searches",
            Self::StreamOpens => "stream_opens",
            Self::AccountChanges => "account_changes",
            Self::Invites => "invites",
            Self::SignIns => "sign_ins",
            Self::SignInFailures => "sign_in_failures",
            Self::SignUps => "sign_ups",
            Self::Streams => "streams",
            Self::StreamsPerUser => "streams_per_user",
            Self::Hashing => "hashing",
        }
    }
}

impl EncodeLabelValue for Limit {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    limit: Limit,
}

/// `chat_refused_by_limits_total{limit}`: requests turned away (429, or 503 for the server's
/// caps). Not a hot path: a refusal looks its counter up.
#[derive(Clone)]
pub struct Refusals(Family<LimitLabels, Counter>);

impl Refusals {
    pub fn count(&self, limit: Limit) {
        self.0.get_or_create(&LimitLabels { limit }).inc();
    }
}

/// `chat_http_requests_total{class}` and `chat_http_request_duration_seconds`: every answer,
/// by the first digit of its status, and how long it took to decide (a stream's, until its
/// head is ready).
pub struct Requests {
    by_class: [Counter; 5],
    duration: Histogram,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabels {
    class: &'static str,
}

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

impl Requests {
    /// One request answered with `status` after `elapsed`.
    pub fn answered(&self, status: u16, elapsed: Duration) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.by_class[class].inc();
        self.duration.observe(elapsed.as_secs_f64());
    }
}

/// What the database file and its backups look like, set when `/metrics` is read.
#[derive(Default)]
pub struct Storage {
    database_bytes: Gauge,
    wal_bytes: Gauge,
    last_backup: Gauge,
}

impl Storage {
    /// The sizes of the database file and of its write-ahead log, and the Unix time of the
    /// newest backup `chat-server backup` recorded (`None`: none yet).
    pub fn observe(&self, database: u64, wal: u64, last_backup: Option<i64>) {
        self.database_bytes.set(i64::try_from(database).unwrap_or(i64::MAX));
        self.wal_bytes.set(i64::try_from(wal).unwrap_or(i64::MAX));
        self.last_backup.set(last_backup.unwrap_or(0));
    }
}

/// The process's own memory, CPU time and open files, from `/proc` (Linux; elsewhere they
/// stay 0), under the names Prometheus' own clients give them.
#[derive(Default)]
struct Process {
    resident_memory_bytes: Gauge,
    /// Moved up to the kernel's count at each reading, one reading at a time.
    cpu_seconds: Counter<f64, std::sync::atomic::AtomicU64>,
    reading: std::sync::Mutex<()>,
    open_fds: Gauge,
}

impl Process {
    fn observe(&self) {
        let _one_at_a_time = self.reading.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Ok(statm) = std::fs::read_to_string("/proc/self/statm")
            && let Some(pages) = statm.split_whitespace().nth(1).and_then(|n| n.parse::<i64>().ok())
        {
            // SAFETY: sysconf only reads a configuration value.
            let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
            self.resident_memory_bytes.set(pages.saturating_mul(page));
        }
        // Fields 14 and 15 of /proc/self/stat, after the command name in parentheses.
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat")
            && let Some((_, rest)) = stat.rsplit_once(')')
        {
            let mut fields = rest.split_whitespace().skip(11);
            if let (Some(user), Some(system)) = (fields.next(), fields.next())
                && let (Ok(user), Ok(system)) = (user.parse::<u64>(), system.parse::<u64>())
            {
                // SAFETY: sysconf only reads a configuration value.
                let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
                let used = (user + system) as f64 / ticks as f64;
                let since = used - self.cpu_seconds.get();
                if since > 0.0 {
                    self.cpu_seconds.inc_by(since);
                }
            }
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds.set(i64::try_from(fds.count()).unwrap_or(i64::MAX));
        }
    }
}

/// Buckets for durations: 0.5 ms to about 4 s.
fn duration_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.0005, 2.0, 14)
}

impl Metrics {
    pub fn new() -> Self {
        let deliveries = Family::<ScopeLabels, Counter>::default();
        let refusals = Family::<LimitLabels, Counter>::default();
        // Every limit is served from the start, at 0: a rate of a series that appears only at
        // the first refusal would miss it.
        for limit in Limit::ALL {
            drop(refusals.get_or_create(&LimitLabels { limit }));
        }
        let classes = Family::<ClassLabels, Counter>::default();
        let requests = Requests {
            by_class: CLASSES.map(|class| classes.get_or_create(&ClassLabels { class }).clone()),
            duration: Histogram::new(duration_buckets()),
        };
        let metrics = Self {
            registry: Registry::default(),
            open_streams: Gauge::default(),
            events_written: Counter::default(),
            deliveries: Deliveries::new(&deliveries),
            lag_recoveries: Counter::default(),
            replayed_events: Counter::default(),
            resumed_streams: Counter::default(),
            stream_resets: Counter::default(),
            write_batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            commit_seconds: Histogram::new(duration_buckets()),
            connections_timed_out: Counter::default(),
            refusals: Refusals(refusals.clone()),
            open_connections: Gauge::default(),
            connections_refused: Counter::default(),
            requests,
            tls_handshakes: Counter::default(),
            tls_handshake_failures: Counter::default(),
            tls_reloads: Counter::default(),
            tls_reload_failures: Counter::default(),
            storage: Storage::default(),
            process: Process::default(),
        };
        let mut registry = Registry::default();
        let process = &metrics.process;
        registry.register_with_unit(
            "process_resident_memory",
            "Resident memory of the server process",
            Unit::Bytes,
            process.resident_memory_bytes.clone(),
        );
        registry.register(
            "process_cpu_seconds",
            "CPU time the server process has used, user and system",
            process.cpu_seconds.clone(),
        );
        registry.register(
            "process_open_fds",
            "Files the server process has open",
            process.open_fds.clone(),
        );
        let chat = registry.sub_registry_with_prefix("chat");
        let m = &metrics;
        chat.register("open_streams", "Event streams open now", m.open_streams.clone());
        chat.register(
            "events_written",
            "Events committed to the log",
            m.events_written.clone(),
        );
        chat.register(
            "deliveries",
            "Events sent on event streams, live or replayed, by the scope of the event (room, user, everyone)",
            deliveries,
        );
        chat.register(
            "lag_recoveries",
            "Times a stream fell behind the live channel and caught up from the database",
            m.lag_recoveries.clone(),
        );
        chat.register(
            "replayed_events",
            "Events sent to streams from the database",
            m.replayed_events.clone(),
        );
        chat.register(
            "resumed_streams",
            "Streams opened with a cursor (Last-Event-ID or ?after=) and replayed from it",
            m.resumed_streams.clone(),
        );
        chat.register(
            "stream_resets",
            "Streams opened with a cursor the server could not honour (sent `event: reset`)",
            m.stream_resets.clone(),
        );
        chat.register(
            "write_batch_size",
            "Requests committed per transaction",
            m.write_batch_size.clone(),
        );
        chat.register_with_unit(
            "commit_duration",
            "Time from the start of a batch's transaction to its commit, synced to disk",
            Unit::Seconds,
            m.commit_seconds.clone(),
        );
        chat.register(
            "connections_timed_out",
            "Connections closed because a request did not arrive in time or writes stalled",
            m.connections_timed_out.clone(),
        );
        chat.register(
            "refused_by_limits",
            "Requests refused by a rate or stream limit (429, or 503 for --max-streams), by limit",
            refusals,
        );
        chat.register(
            "open_connections",
            "Client connections open now, streams included",
            m.open_connections.clone(),
        );
        chat.register(
            "connections_refused",
            "Connections turned away at accept by --max-connections or --max-connections-per-address",
            m.connections_refused.clone(),
        );
        chat.register(
            "http_requests",
            "Requests answered, by the class of their status (2xx, 4xx...)",
            classes,
        );
        chat.register_with_unit(
            "http_request_duration",
            "Time from a request's head to its answer's (a stream's: to the start of its body)",
            Unit::Seconds,
            m.requests.duration.clone(),
        );
        chat.register(
            "tls_handshakes",
            "TLS handshakes completed (with --tls-cert)",
            m.tls_handshakes.clone(),
        );
        chat.register(
            "tls_handshake_failures",
            "TLS handshakes that failed: a client that does not trust the certificate, speaks no TLS, or gave up",
            m.tls_handshake_failures.clone(),
        );
        chat.register(
            "tls_reloads",
            "Times SIGHUP put a newly read certificate and key in service",
            m.tls_reloads.clone(),
        );
        chat.register(
            "tls_reload_failures",
            "Times SIGHUP found a certificate or key that could not be used (the one in service stays)",
            m.tls_reload_failures.clone(),
        );
        chat.register_with_unit(
            "database",
            "Size of the database file",
            Unit::Bytes,
            m.storage.database_bytes.clone(),
        );
        chat.register_with_unit(
            "wal",
            "Size of the database's write-ahead log",
            Unit::Bytes,
            m.storage.wal_bytes.clone(),
        );
        chat.register(
            "last_backup_timestamp_seconds",
            "Unix time at which `chat-server backup` last finished a checked copy (0: never)",
            m.storage.last_backup.clone(),
        );
        Self { registry, ..metrics }
    }

    /// The Prometheus text exposition of every metric, the process's read now.
    pub fn render(&self) -> String {
        self.process.observe();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{RoomId, UserId};

    #[test]
    fn labelled_counters_render_under_one_name_each() {
        let metrics = Metrics::new();
        metrics.deliveries.sent(Scope::Room(RoomId(1)));
        metrics.deliveries.sent(Scope::Room(RoomId(2)));
        metrics.deliveries.sent(Scope::User(UserId(1)));
        metrics.refusals.count(Limit::Messages);
        metrics.requests.answered(404, Duration::from_millis(2));
        metrics.requests.answered(999, Duration::from_millis(2));
        metrics.storage.observe(4096, 0, Some(1_700_000_000));
        let text = metrics.render();
        for line in [
            r#"chat_deliveries_total{scope="room"} 2"#,
            r#"chat_deliveries_total{scope="user"} 1"#,
            r#"chat_deliveries_total{scope="everyone"} 0"#,
            r#"chat_refused_by_limits_total{limit="messages"} 1"#,
            r#"chat_http_requests_total{class="4xx"} 1"#,
            r#"chat_http_requests_total{class="5xx"} 1"#,
            "chat_http_request_duration_seconds_count 2",
            "chat_database_bytes 4096",
            "chat_last_backup_timestamp_seconds 1700000000",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        assert!(text.contains("process_resident_memory_bytes "), "{text}");
    }
}
