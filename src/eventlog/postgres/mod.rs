//! PostgreSQL behind the event log, for several nodes sharing one log (SCALE-OUT.md): opening
//! the database and bringing its schema (`migrations/postgres/`) up to date, and the facts of
//! that schema the code relies on. The server does not serve from it yet; SQLite
//! (`eventlog::sqlite`) is what it runs on.
//!
//! What this module promises, and `tests/api/postgres_log.rs` checks against a real cluster:
//! `events.id` is drawn by one appender at a time under `APPEND_LOCK`, so ids are in commit
//! order across every node and a reader resuming from its last id never skips one.

use std::str::FromStr;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

/// The key of the transaction-scoped advisory lock (`pg_advisory_xact_lock`) that every
/// transaction inserting events holds: the writer takes it first in each batch, and the
/// `events_append_lock` trigger takes it for any INSERT that did not. The migration's
/// `chat_append_lock()` names the same number; one key for the whole cluster.
pub const APPEND_LOCK: i64 = 7_316_512_000_000_000_001;

/// The schema, from `migrations/postgres/`, compiled in.
pub static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Connections a node keeps for reads (SCALE-OUT.md §3.8).
const READ_CONNECTIONS: u32 = 8;

/// Connects to the database at `url` (`postgres://user@host:port/database`) and brings its
/// schema up to date. Nodes starting at once are safe: the migrator holds an advisory lock of
/// its own while it works, so one applies and the others find it done.
pub async fn open(url: &str) -> anyhow::Result<PgPool> {
    let options = PgConnectOptions::from_str(url)
        .context("the database URL is not a PostgreSQL URL (postgres://user@host:port/database)")?
        .application_name("chat-server");
    // Named without the password the URL may carry.
    let name = format!(
        "postgres://{}@{}:{}/{}",
        options.get_username(),
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or(options.get_username())
    );
    let pool = PgPoolOptions::new()
        .max_connections(READ_CONNECTIONS)
        .connect_with(options)
        .await
        .with_context(|| format!("cannot connect to {name}"))?;
    MIGRATIONS.run(&pool).await.with_context(|| {
        format!("cannot bring the schema of {name} up to date (was it written by a newer chat-server?)")
    })?;
    Ok(pool)
}

/// The newest event id ever handed out, 0 before the first: what SQLite keeps in
/// `sqlite_sequence`. Never goes back, even when the newest events are deleted or their
/// transactions roll back, so a cursor past it is one this database never gave.
pub async fn head(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM events_id_seq")
        .fetch_one(pool)
        .await
}
