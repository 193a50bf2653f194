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

/// What `corpus` wrote.
pub struct Corpus {
    pub first: i64,
    pub last: i64,
    /// Whether the full-text index was filled (the schema has one).
    pub indexed: bool,
    pub seconds_to_write: f64,
    pub seconds_to_index: f64,
}

/// Appends `count` messages of `vocabulary`'s text to the `rooms` in turn, each by one of
/// `authors` in turn, the newest now and each one `spacing_s` seconds before the next (so
/// date filters have a year to choose from), then fills the full-text index
/// (`message_search`, migration 0010) with them, as the migration fills it from what was there.
/// The rooms and accounts must exist; the server must be stopped.
pub async fn corpus(
    db: &Path,
    rooms: &[String],
    authors: &[String],
    count: u64,
    spacing_s: f64,
    vocabulary: &crate::words::Vocabulary,
) -> anyhow::Result<Corpus> {
    use std::time::Instant;

    const ROWS: usize = 256;
    let mut conn = SqliteConnectOptions::new()
        .filename(db)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Off)
        .connect()
        .await?;
    let mut room_ids = Vec::with_capacity(rooms.len());
    for room in rooms {
        room_ids.push(
            sqlx::query_scalar::<_, i64>("SELECT id FROM rooms WHERE name = ?")
                .bind(room)
                .fetch_one(&mut conn)
                .await?,
        );
    }
    let mut author_ids = Vec::with_capacity(authors.len());
    for author in authors {
        author_ids.push(
            sqlx::query_scalar::<_, i64>("SELECT id FROM users WHERE username = ?")
                .bind(author)
                .fetch_one(&mut conn)
                .await?,
        );
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs_f64();
    let started = Instant::now();
    let mut tx = conn.begin().await?;
    let first: i64 =
        sqlx::query_scalar("SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0) + 1")
            .fetch_one(&mut *tx)
            .await?;
    let row = "('message', 'room', ?, ?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', ?, 'unixepoch'))";
    let full = format!(
        "INSERT INTO events (kind, scope, room_id, user_id, body, created_at) VALUES {}",
        vec![row; ROWS].join(", ")
    );
    let mut rng = crate::stats::Rng::new(0x5ea7_c400);
    let mut texts: Vec<String> = (0..ROWS).map(|_| String::new()).collect();
    let mut k = 0u64;
    while k < count {
        let n = ROWS.min((count - k) as usize);
        let sql = if n == ROWS {
            full.clone()
        } else {
            format!(
                "INSERT INTO events (kind, scope, room_id, user_id, body, created_at) VALUES {}",
                vec![row; n].join(", ")
            )
        };
        for (j, text) in texts.iter_mut().take(n).enumerate() {
            let room = ((k + j as u64) % rooms.len() as u64) as usize;
            vocabulary.message(&mut rng, room, text);
        }
        // Built from the constant `row` alone: nothing in it comes from outside.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (j, text) in texts.iter().take(n).enumerate() {
            let i = k + j as u64;
            let room = (i % rooms.len() as u64) as usize;
            let author = (i / rooms.len() as u64 % authors.len() as u64) as usize;
            query = query
                .bind(room_ids[room])
                .bind(author_ids[author])
                .bind(text.as_str())
                .bind(now - (count - i) as f64 * spacing_s);
        }
        query.execute(&mut *tx).await?;
        k += n as u64;
    }
    let last: i64 = sqlx::query_scalar("SELECT max(id) FROM events")
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    let seconds_to_write = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let indexed: bool = sqlx::query_scalar("SELECT count(*) > 0 FROM sqlite_master WHERE name = 'message_search'")
        .fetch_one(&mut conn)
        .await?;
    if indexed {
        sqlx::query(
            "INSERT INTO message_search (rowid, text) \
             SELECT id, body FROM events WHERE kind = 'message' AND id BETWEEN ? AND ? ORDER BY id",
        )
        .bind(first)
        .bind(last)
        .execute(&mut conn)
        .await?;
    }
    let seconds_to_index = started.elapsed().as_secs_f64();
    conn.close().await?;
    Ok(Corpus {
        first,
        last,
        indexed,
        seconds_to_write,
        seconds_to_index,
    })
}
