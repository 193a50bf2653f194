//! Command-line flags. Every flag can also be set by an environment variable: `CHAT_` and the
//! flag's name in capitals, `-` as `_` (`--db` and `CHAT_DB`).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Parser)]
#[command(name = "chat-server", version, about = "A persistent real-time chat server")]
pub struct Config {
    /// The SQLite database file; created, with its schema, on first start.
    #[arg(long, env = "CHAT_DB", default_value = "chat.db")]
    pub db: PathBuf,

    /// The address to listen on (port 0 picks a free one).
    #[arg(long, env = "CHAT_BIND", default_value = "127.0.0.1:8080")]
    pub bind: String,

    /// SQLite's `synchronous` setting: `full` makes every acknowledged message survive power
    /// loss; `normal` survives a crash of the server but may lose the last commits on power loss.
    #[arg(long, env = "CHAT_SYNC", value_enum, default_value_t = Sync::Full)]
    pub sync: Sync,

    /// Events buffered per room for live delivery. A stream that falls further behind catches up
    /// from the database, so this bounds memory, not correctness.
    #[arg(long, env = "CHAT_HUB_CAPACITY", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub hub_capacity: u32,

    /// Seconds between keep-alive comments on an idle event stream.
    #[arg(long, env = "CHAT_KEEPALIVE", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..))]
    pub keepalive: u64,

    /// Seconds a user stays online after their last event stream closed, so that a reconnect
    /// does not flap their status.
    #[arg(long, env = "CHAT_PRESENCE_GRACE", default_value_t = 5)]
    pub presence_grace: u64,

    /// Largest request body accepted, in bytes (0: no limit).
    #[arg(long, env = "CHAT_MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    pub max_body_bytes: usize,
}

/// SQLite's `synchronous` pragma, as the flag `--sync` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Sync {
    Full,
    Normal,
}

impl Config {
    pub fn keepalive(&self) -> Duration {
        Duration::from_secs(self.keepalive)
    }

    pub fn presence_grace(&self) -> Duration {
        Duration::from_secs(self.presence_grace)
    }

    /// Defaults for a server on `db` listening wherever the caller bound.
    pub fn with_db(db: impl Into<PathBuf>) -> Self {
        let mut config = Self::parse_from(["chat-server"]);
        config.db = db.into();
        config
    }
}
