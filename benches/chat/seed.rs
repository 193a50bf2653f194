//! Filling a stopped server's database directly with SQL: a million events in seconds, where
//! posting them over HTTP would take minutes.

use std::path::Path;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection};

/// Appends `count` messages (`message 1`, `message 2`, ...) to `room` as the user `seed`,
/// creating both if needed, in one transaction. The server must be stopped (its schema made).
/// Returns the ids of the first and the last event added.
pub async fn messages(db: &Path, room: &str, count: u64) -> anyhow::Result<(i64, i64)> {
    let mut conn = SqliteConnectOptions::new()
        .filename(db)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Off)
        .connect()
        .await?;
    let mut tx = conn.begin().await?;
    // Nobody signs in as `seed`: its password hash is a placeholder.
    sqlx::query("INSERT OR IGNORE INTO users (username, password_hash) VALUES ('seed', 'not a hash')")
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT OR IGNORE INTO rooms (name) VALUES (?)")
        .bind(room)
        .execute(&mut *tx)
        .await?;
    let first: i64 =
        sqlx::query_scalar("SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0) + 1")
            .fetch_one(&mut *tx)
            .await?;
    // A log addressed by scope (since migration 0004) says who sees each row; one from before
    // does not, and a run against an older server binary still seeds it.
    let scoped: bool = sqlx::query_scalar("SELECT count(*) > 0 FROM pragma_table_info('events') WHERE name = 'scope'")
        .fetch_one(&mut *tx)
        .await?;
    let insert = if scoped {
        "INSERT INTO events (kind, scope, room_id, user_id, body) \
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1) \
         SELECT 'message', 'room', (SELECT id FROM rooms WHERE name = ?2), \
                (SELECT id FROM users WHERE username = 'seed'), 'message ' || i FROM n"
    } else {
        "INSERT INTO events (kind, room_id, user_id, body) \
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1) \
         SELECT 'message', (SELECT id FROM rooms WHERE name = ?2), \
                (SELECT id FROM users WHERE username = 'seed'), 'message ' || i FROM n"
    };
    sqlx::query(insert)
        .bind(count as i64)
        .bind(room)
        .execute(&mut *tx)
        .await?;
    let last: i64 = sqlx::query_scalar("SELECT max(id) FROM events")
        .fetch_one(&mut *tx)
        .await?;
    // The search index, where the schema has one, holds them as the writer would have put
    // them there (none of these texts holds the characters it stores as spaces).
    let indexed: bool = sqlx::query_scalar("SELECT count(*) > 0 FROM sqlite_master WHERE name = 'message_search'")
        .fetch_one(&mut *tx)
        .await?;
    if indexed {
        sqlx::query(
            "INSERT INTO message_search (rowid, text) SELECT id, body FROM events \
             WHERE id BETWEEN ?1 AND ?2 AND kind = 'message'",
        )
        .bind(first)
        .bind(last)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    // Closing the last connection checkpoints the WAL into the file, as a stopped server leaves it.
    conn.close().await?;
    Ok((first, last))
}
