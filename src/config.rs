//! Command-line flags. Every flag can also be set by an environment variable: `CHAT_` and the
//! flag's name in capitals, `-` as `_` (`--db` and `CHAT_DB`).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Clone, Parser)]
#[command(name = "chat-server", version, about = "A persistent real-time chat server")]
pub struct Config {
    /// What to do instead of serving: `admin ...`, `backup`, `export` or `import`, for the
    /// operator.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// The SQLite database file; created, with its schema, on first start.
    #[arg(long, env = "CHAT_DB", default_value = "chat.db", global = true)]
    pub db: PathBuf,

    /// The address to listen on (port 0 picks a free one).
    #[arg(long, env = "CHAT_BIND", default_value = "127.0.0.1:8080")]
    pub bind: String,

    /// Serve HTTPS (HTTP/2 and HTTP/1.1) with this certificate chain, a PEM file, the
    /// server's own certificate first. Read again, with `--tls-key`, on SIGHUP.
    #[arg(long, env = "CHAT_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The private key of `--tls-cert`, a PEM file (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "CHAT_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Send `Strict-Transport-Security` over TLS, for a year: browsers then never reach
    /// this host by plain http again. Needs `--tls-cert`.
    #[arg(long, env = "CHAT_HSTS", requires = "tls_cert")]
    pub hsts: bool,

    /// `--hsts` for this many seconds instead of a year (`0` tells browsers to forget it).
    #[arg(long, env = "CHAT_HSTS_MAX_AGE", requires = "tls_cert")]
    pub hsts_max_age: Option<u64>,

    /// Also listen for plain HTTP at this address, answering every request with a `308` to
    /// the same path over https, and nothing else. Needs `--tls-cert`.
    #[arg(long, env = "CHAT_REDIRECT_HTTP", requires = "tls_cert")]
    pub redirect_http: Option<String>,

    /// SQLite's `synchronous` setting: `full` makes every acknowledged message survive power
    /// loss; `normal` survives a crash of the server but may lose the last commits on power loss.
    #[arg(long, env = "CHAT_SYNC", value_enum, default_value_t = Sync::Full)]
    pub sync: Sync,

    /// The most events a live feed (one per room and per user with open streams) buffers; a
    /// feed starts small and grows when a stream falls behind it. A stream that falls further
    /// behind catches up from the database, so this bounds memory, not correctness.
    #[arg(long, env = "CHAT_HUB_CAPACITY", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub hub_capacity: u32,

    /// Seconds an event stream may send nothing before it sends a `ping`, so clients can tell a
    /// live stream from a dead one and proxies keep it open.
    #[arg(long, env = "CHAT_KEEPALIVE", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..))]
    pub keepalive: u64,

    /// Seconds a user stays online after their last event stream closed, so that a reconnect
    /// does not flap their status.
    #[arg(long, env = "CHAT_PRESENCE_GRACE", default_value_t = 5)]
    pub presence_grace: u64,

    /// Largest request body accepted, in bytes (0: no limit).
    #[arg(long, env = "CHAT_MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    pub max_body_bytes: usize,

    /// Longest message, in characters (0: no limit but the body size).
    #[arg(long, env = "CHAT_MAX_MESSAGE_CHARS", default_value_t = 4000)]
    pub max_message_chars: usize,

    /// Messages per second each user may send, sustained (0: no limit).
    #[arg(long, env = "CHAT_MESSAGE_RATE", default_value_t = 5)]
    pub message_rate: u32,

    /// Messages a user may send at once before `--message-rate` applies.
    #[arg(long, env = "CHAT_MESSAGE_BURST", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub message_burst: u32,

    /// Sign-in attempts per minute from each client address, whatever the names (0: no limit).
    #[arg(long, env = "CHAT_SIGNIN_RATE", default_value_t = 20)]
    pub signin_rate: u32,

    /// Wrong passwords for one name from one client address before each further attempt
    /// waits, a second and doubling up to a quarter of an hour (0: never). Counted per address,
    /// so nobody elsewhere can make the owner wait.
    #[arg(long, env = "CHAT_SIGNIN_FAILURES", default_value_t = 5)]
    pub signin_failures: u32,

    /// Accounts made per hour from each client address (0: no limit).
    #[arg(long, env = "CHAT_SIGNUP_RATE", default_value_t = 10)]
    pub signup_rate: u32,

    /// Who may make an account once the server has its first (its admin, made by whoever
    /// signs up first): `invite` someone an admin invited; `open` anyone who reaches it;
    /// `closed` only an admin, for someone else. An admin may make accounts in every mode.
    #[arg(long, env = "CHAT_SIGNUP", value_enum, default_value_t = Signup::Invite)]
    pub signup: Signup,

    /// Invites each admin may make or revoke per minute (0: no limit).
    #[arg(long, env = "CHAT_INVITE_RATE", default_value_t = 20)]
    pub invite_rate: u32,

    /// Password hashes that may wait for a thread at once; beyond it, sign-in answers `503`
    /// (0: no bound). Each takes tens of milliseconds and 19 MiB.
    #[arg(long, env = "CHAT_MAX_QUEUED_HASHES", default_value_t = 32)]
    pub max_queued_hashes: usize,

    /// Status changes per minute each user may make (0: no limit). Choosing the status one
    /// already shows stores nothing and is not counted.
    #[arg(long, env = "CHAT_STATUS_RATE", default_value_t = 20)]
    pub status_rate: u32,

    /// Rooms each user may make or change (topic, archived) per hour (0: no limit).
    #[arg(long, env = "CHAT_ROOM_RATE", default_value_t = 10)]
    pub room_rate: u32,

    /// Direct-message rooms each user may start per hour (0: no limit). Opening one that
    /// exists is not counted.
    #[arg(long, env = "CHAT_DM_RATE", default_value_t = 60)]
    pub dm_rate: u32,

    /// Members each user may add to or remove from private rooms per minute, leaving
    /// included (0: no limit).
    #[arg(long, env = "CHAT_MEMBER_RATE", default_value_t = 60)]
    pub member_rate: u32,

    /// Messages each user may edit or delete per minute (0: no limit).
    #[arg(long, env = "CHAT_EDIT_RATE", default_value_t = 60)]
    pub edit_rate: u32,

    /// Reactions each user may add or take back per minute (0: no limit).
    #[arg(long, env = "CHAT_REACTION_RATE", default_value_t = 120)]
    pub reaction_rate: u32,

    /// Times each user may mark a room read, or change how loudly a room notifies them, per
    /// minute (0: no limit). The page marks a room read at most about once a second while
    /// new messages arrive in front of its reader.
    #[arg(long, env = "CHAT_READ_RATE", default_value_t = 300)]
    pub read_rate: u32,

    /// Searches each user may run per minute, pages of results included (0: no limit). A
    /// search reads the index; a page costs a bounded amount of work, and this bounds how
    /// many pages.
    #[arg(long, env = "CHAT_SEARCH_RATE", default_value_t = 30)]
    pub search_rate: u32,

    /// Event streams each user may open per minute, all their devices together (0: no
    /// limit). A browser holds one for all its tabs; this bounds reconnect storms and replays.
    #[arg(long, env = "CHAT_STREAM_RATE", default_value_t = 60)]
    pub stream_rate: u32,

    /// Changes to accounts and sessions each user may make per minute: password changes,
    /// sessions ended, an admin's changes to accounts (0: no limit).
    #[arg(long, env = "CHAT_ACCOUNT_RATE", default_value_t = 30)]
    pub account_rate: u32,

    /// The most events a stream replays from the cursor it opens with (0: no limit). A
    /// cursor further behind gets `event: reset`, and the page reloads its history instead:
    /// a replay costs the server its whole length, and a user may open `--stream-rate` a
    /// minute. A stream that falls behind while open always catches up in full.
    #[arg(long, env = "CHAT_MAX_REPLAY", default_value_t = 10_000)]
    pub max_replay: u32,

    /// `off` turns every per-user and per-address rate limit off at once, for load tests and
    /// benchmarks. The connection and stream caps stay.
    #[arg(long, env = "CHAT_RATE_LIMITS", value_enum, default_value_t = Switch::On)]
    pub rate_limits: Switch,

    /// Client connections open at once, in all (0: no limit). Beyond it, a new connection is
    /// answered `503` with `Retry-After` and closed. Default: the open-file limit (raised to
    /// its hard limit at start-up) less 128 kept for the database and the server.
    #[arg(long, env = "CHAT_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// Client connections open at once from one address, an IPv6 /64 counting as one (0: no
    /// limit). Beyond it, `429` and closed. Default: 1024, or `--max-connections` if lower.
    /// Behind a reverse proxy every client has the proxy's address: raise it or set `0`.
    #[arg(long, env = "CHAT_MAX_CONNECTIONS_PER_ADDRESS")]
    pub max_connections_per_address: Option<usize>,

    /// Open event streams in all (0: no limit). Beyond it, `503` with `Retry-After`. Default:
    /// nine tenths of `--max-connections`, so the refusal can always be sent.
    #[arg(long, env = "CHAT_MAX_STREAMS")]
    pub max_streams: Option<usize>,

    /// Open event streams per user, over all their tabs (0: no limit). Beyond it, `429`.
    #[arg(long, env = "CHAT_MAX_STREAMS_PER_USER", default_value_t = 64)]
    pub max_streams_per_user: usize,

    /// Seconds a client has to send a whole request, and that an idle keep-alive connection
    /// stays open (0: no limit).
    #[arg(long, env = "CHAT_REQUEST_TIMEOUT", default_value_t = 30)]
    pub request_timeout: u64,

    /// Seconds a new connection may stay silent, sending nothing, before it is closed (0: no
    /// limit but `--request-timeout`): idle sockets held open cost a file each.
    #[arg(long, env = "CHAT_SILENT_TIMEOUT", default_value_t = 10)]
    pub silent_timeout: u64,

    /// Seconds a connection may make no progress writing before it is closed: a client that
    /// stopped reading, or vanished (0: no limit).
    #[arg(long, env = "CHAT_WRITE_TIMEOUT", default_value_t = 15)]
    pub write_timeout: u64,

    /// The origins the server is reached at, such as `https://chat.example.com` behind a proxy
    /// (several: separate them with commas). Besides these, only `http://` with an IP address
    /// or `localhost` on the port it listens on: requests for any other host are refused (DNS
    /// rebinding), and a browser's writes must come from one of them.
    #[arg(long, env = "CHAT_PUBLIC_ORIGIN", value_delimiter = ',')]
    pub public_origin: Vec<String>,

    /// The reverse proxies in front of the server (addresses or CIDR blocks, IPv4 or IPv6;
    /// several: separate them with commas or repeat the flag). Only a request whose TCP peer is
    /// one of them is taken to come from the client its `--trust-proxy-header` names; from any
    /// other peer that header is ignored. The per-address limits, the logs, the sessions' list
    /// and `/metrics`' local-only rule then see the real client, and a trusted proxy is not
    /// held to `--max-connections-per-address`.
    #[arg(long, env = "CHAT_TRUST_PROXY", value_delimiter = ',', value_parser = parse_net)]
    pub trust_proxy: Vec<ipnet::IpNet>,

    /// The header a `--trust-proxy` proxy names the client in: `x-forwarded-for` (what nginx,
    /// Caddy and HAProxy send) or `forwarded` (RFC 7239 `for=`). Only the one the proxy sets
    /// is read: the other passes through from the client untouched, and could say anything.
    #[arg(long, env = "CHAT_TRUST_PROXY_HEADER", value_enum, default_value_t = ForwardedHeader::XForwardedFor)]
    pub trust_proxy_header: ForwardedHeader,

    /// How the log on standard error is written: `text`, a line for people, or `json`, one
    /// JSON object a line for a log collector (`RUST_LOG` decides what is logged either way).
    #[arg(long, env = "CHAT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// A token that lets its bearer read `/metrics` from anywhere; without it, only local
    /// addresses may.
    #[arg(long, env = "CHAT_METRICS_TOKEN")]
    pub metrics_token: Option<String>,

    /// Serve each event stream on a connection of its own once its response is decided (`on`),
    /// which frees the HTTP server's buffers for it; `off` streams through the HTTP server.
    #[arg(long, env = "CHAT_STREAM_HANDOFF", value_enum, default_value_t = Switch::On)]
    pub stream_handoff: Switch,

    /// Seconds a session lasts unused before it expires (default: 30 days).
    #[arg(long, env = "CHAT_SESSION_IDLE", default_value_t = 30 * 24 * 3600, value_parser = clap::value_parser!(u64).range(1..))]
    pub session_idle: u64,

    /// Seconds a session lasts at most, however much it is used (default: 90 days); then its
    /// user signs in again.
    #[arg(long, env = "CHAT_SESSION_LIFETIME", default_value_t = 90 * 24 * 3600, value_parser = clap::value_parser!(u64).range(1..))]
    pub session_lifetime: u64,

    /// Days a message is kept (0: for good). An older one is deleted as its author would delete
    /// it: its text, every version and its search entry leave the file, and its `delete` event
    /// stays. Streams that resume from before the deleted messages reload their history.
    #[arg(long, env = "CHAT_RETAIN_DAYS", default_value_t = 0)]
    pub retain_days: u32,

    /// Rooms kept for another number of days than `--retain-days`, as `ROOM=DAYS`
    /// (comma-separated or repeated; `0` keeps a room's messages for good).
    #[arg(long, env = "CHAT_RETAIN_ROOM", value_delimiter = ',', value_parser = parse_room_days)]
    pub retain_room: Vec<(String, u32)>,

    /// Seconds between two looks for messages past their time (each look deletes them in small
    /// batches, the writer free between two).
    #[arg(long, env = "CHAT_RETENTION_INTERVAL", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    pub retention_interval: u64,
}

/// What `chat-server` does instead of serving.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Change accounts in the database file, for an operator who has lost the admin password.
    /// Works while the server runs; a password read from standard input, one line.
    Admin {
        #[command(subcommand)]
        action: AdminAction,
    },
    /// Copies the database to OUT while the server runs and writes: one consistent moment of
    /// it, in a single file that opens on its own (no `-wal` beside it) and has passed
    /// `PRAGMA integrity_check`. The copy is written under a temporary name beside OUT and
    /// renamed when whole, so a half-made copy never looks like a backup. The server's writes
    /// go on meanwhile.
    Backup {
        /// Where the copy goes. An existing file is left alone unless `--force` is given.
        out: PathBuf,
        /// Replace OUT if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Writes messages in their current state (edits applied, deleted ones left out) to
    /// standard output, oldest first. `jsonl`: one JSON object a line, each message as
    /// `GET /api/messages/{id}` shows it, and before the first message of each room made
    /// through the API a `"type":"room"` line saying what `import` needs to make it again
    /// (its kind, topic, members). `csv`: a header row, then a row a message. Works while
    /// the server runs; memory stays bounded however long the history.
    Export {
        /// Only this room's messages.
        #[arg(long)]
        room: Option<String>,
        /// Only messages sent at or after this time: a date (`2026-11-21`, UTC) or a date and
        /// time (`2026-11-21T09:30Z`, `2026-11-21T09:30:00+01:00`).
        #[arg(long, value_name = "ISO-TIME", value_parser = parse_since)]
        since: Option<crate::domain::Timestamp>,
        /// Only messages with an id above this one (to go on from an earlier export).
        #[arg(long, value_name = "ID", value_parser = clap::value_parser!(i64).range(0..))]
        after: Option<i64>,
        /// `jsonl` (JSON lines, what `import` reads) or `csv`.
        #[arg(long, value_enum)]
        format: ExportFormat,
    },
    /// Reads an export in JSON lines (`export --format jsonl`) into a new or empty database
    /// (`--db`), keeping every message's id, author, room, times, current text, reply and
    /// reactions. Accounts it does not know are made without a password: nobody can sign in
    /// as one until `chat-server admin reset-password NAME` gives it one (and `admin promote
    /// NAME` makes an admin). Refuses a database that already holds messages. Run it before
    /// starting a server on the database.
    Import {
        /// The export to read; `-` for standard input.
        file: PathBuf,
    },
}

/// What `chat-server export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// One JSON object a line: what `import` reads.
    Jsonl,
    /// Comma-separated values with a header row.
    Csv,
}

/// `--since` as the log stores times.
fn parse_since(raw: &str) -> Result<crate::domain::Timestamp, String> {
    crate::domain::Timestamp::parse("--since", raw).map_err(|invalid| invalid.to_string())
}

#[derive(Debug, Clone, Subcommand)]
pub enum AdminAction {
    /// Sets USERNAME's password to the line read from standard input, and ends every session
    /// of theirs.
    ResetPassword { username: String },
    /// Makes the account USERNAME with the password read from standard input (the first
    /// account of a server is its admin).
    CreateUser {
        username: String,
        /// Make it an admin.
        #[arg(long)]
        admin: bool,
    },
    /// Makes USERNAME an admin, and active again if deactivated.
    Promote { username: String },
    /// Deactivates USERNAME: their sessions end and they cannot sign in; their messages stay.
    /// The last active admin cannot be deactivated.
    Deactivate { username: String },
    /// Makes an invite and prints its code and the path of its join page (`/join/CODE`; the
    /// whole link with `--public-origin` or CHAT_PUBLIC_ORIGIN set).
    Invite {
        /// How many accounts it makes, 1 to 1000.
        #[arg(long, default_value_t = crate::domain::DEFAULT_INVITE_USES)]
        uses: u32,
        /// How long it lasts, 1 to 8760 hours (a year).
        #[arg(long, default_value_t = crate::domain::DEFAULT_INVITE_HOURS)]
        expires_in_hours: u32,
    },
}

/// Who may make an account, as `--signup` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Signup {
    /// With an invite an admin made.
    Invite,
    /// Anyone who can reach the server.
    Open,
    /// Only an admin, for someone else.
    Closed,
}

/// Which header a trusted proxy names the client in, as `--trust-proxy-header` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2`.
    XForwardedFor,
    /// `Forwarded: for=client, for=proxy1` (RFC 7239).
    Forwarded,
}

/// A network for `--trust-proxy`: `10.0.0.0/8`, `fd00::/8`, or one address (`127.0.0.1`,
/// `::1`) standing for itself alone.
fn parse_net(raw: &str) -> Result<ipnet::IpNet, String> {
    let raw = raw.trim();
    raw.parse::<ipnet::IpNet>()
        .map(|net| net.trunc())
        .or_else(|_| raw.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{raw:?} is neither an address nor a network such as 10.0.0.0/8 or fd00::/8"))
}

/// A room and its days for `--retain-room`: `general=30`.
fn parse_room_days(raw: &str) -> Result<(String, u32), String> {
    let (room, days) = raw
        .trim()
        .split_once('=')
        .ok_or_else(|| format!("{raw:?} is not ROOM=DAYS, such as general=30"))?;
    let days = days
        .trim()
        .parse()
        .map_err(|_| format!("{days:?} is not a number of days (0 keeps the room's messages for good)"))?;
    Ok((room.trim().to_owned(), days))
}

/// SQLite's `synchronous` pragma, as the flag `--sync` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Sync {
    Full,
    Normal,
}

/// The log's format, as `--log-format` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// A feature turned `on` or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    On,
    Off,
}

impl Switch {
    pub fn then<T>(self, value: impl FnOnce() -> T) -> Option<T> {
        (self == Self::On).then(value)
    }
}

impl Config {
    pub fn keepalive(&self) -> Duration {
        Duration::from_secs(self.keepalive)
    }

    pub fn presence_grace(&self) -> Duration {
        Duration::from_secs(self.presence_grace)
    }

    /// `None` for a timeout the flag turned off with `0`.
    pub fn request_timeout(&self) -> Option<Duration> {
        (self.request_timeout > 0).then(|| Duration::from_secs(self.request_timeout))
    }

    pub fn silent_timeout(&self) -> Option<Duration> {
        (self.silent_timeout > 0).then(|| Duration::from_secs(self.silent_timeout))
    }

    pub fn write_timeout(&self) -> Option<Duration> {
        (self.write_timeout > 0).then(|| Duration::from_secs(self.write_timeout))
    }

    pub fn session_idle(&self) -> Duration {
        Duration::from_secs(self.session_idle)
    }

    pub fn retention_interval(&self) -> Duration {
        Duration::from_secs(self.retention_interval)
    }

    pub fn session_lifetime(&self) -> Duration {
        Duration::from_secs(self.session_lifetime)
    }

    /// The `max-age` of `Strict-Transport-Security`, if it is sent at all.
    pub fn hsts_max_age(&self) -> Option<u64> {
        const A_YEAR: u64 = 365 * 24 * 3600;
        self.hsts_max_age.or(self.hsts.then_some(A_YEAR))
    }

    /// Defaults for a server on `db` listening wherever the caller bound.
    pub fn with_db(db: impl Into<PathBuf>) -> Self {
        let mut config = Self::parse_from(["chat-server"]);
        config.db = db.into();
        config
    }
}
