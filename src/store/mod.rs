//! The database: opening it (pragmas, migrations) and every read. Writes belong to the writer
//! task (`crate::writer`), which owns the one connection allowed to write; the read pool is
//! `query_only`, so a read path that tried to write would fail loudly.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, FromRow, SqlitePool};

use crate::config::{Config, Sync};
use crate::model::{Event, EventId, EventKind, RoomId, Status, UserId};

/// Read access to the log, shared by every request. Cloning copies one `Arc`.
#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
    /// Rooms by name. A room is never renamed or removed, so once read it is known for good:
    /// posting to a room costs no query.
    rooms: Arc<Mutex<HashMap<String, Room>>>,
}

/// Everything `open` hands out: reads, and the two connections that may touch the file.
pub struct Opened {
    pub store: Store,
    /// For the writer task alone.
    pub writer: SqliteConnection,
    /// For the checkpoint task alone.
    pub checkpointer: SqliteConnection,
}

fn connect_options(path: &Path, sync: Sync) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(match sync {
            Sync::Full => SqliteSynchronous::Full,
            Sync::Normal => SqliteSynchronous::Normal,
        })
        .busy_timeout(Duration::from_secs(5))
        .foreign_keys(true)
        // Commits must never wait for a checkpoint: the checkpoint task does that work.
        .pragma("wal_autocheckpoint", "0")
}

/// Opens (or creates) the database, brings its schema up to date, and checks it is sound
/// enough to serve.
pub async fn open(config: &Config) -> anyhow::Result<Opened> {
    let path = &config.db;
    let options = connect_options(path, config.sync);
    let mut writer = options
        .clone()
        .connect()
        .await
        .map_err(|error| explain(error, path, "cannot open the database"))?;
    sqlx::migrate!("./migrations")
        .run(&mut writer)
        .await
        .map_err(|error| match error {
            sqlx::migrate::MigrateError::Execute(error) => explain(error, path, "cannot bring the schema up to date"),
            other => anyhow::Error::new(other).context(format!(
                "cannot bring the schema of {} up to date (was it written by a newer chat-server?)",
                path.display()
            )),
        })?;
    let checkpointer = options
        .clone()
        .connect()
        .await
        .map_err(|error| explain(error, path, "cannot open the database"))?;
    let pool = SqlitePoolOptions::new()
        .max_connections(8)
        .min_connections(1)
        .connect_with(options.pragma("query_only", "ON"))
        .await
        .map_err(|error| explain(error, path, "cannot open read connections"))?;
    Ok(Opened {
        store: Store {
            pool,
            rooms: Arc::default(),
        },
        writer,
        checkpointer,
    })
}

/// A start-up failure as someone at the console can act on it: what went wrong with which file,
/// and what to do, for the SQLite errors a misplaced or damaged file gives.
fn explain(error: sqlx::Error, path: &Path, doing: &str) -> anyhow::Error {
    let primary = error
        .as_database_error()
        .and_then(|db| db.code())
        .and_then(|code| code.parse::<i32>().ok())
        .map(|code| code & 0xff);
    let path = path.display();
    let advice = match primary {
        Some(5 | 6) => format!("{path} is locked by another process (is another chat-server using it?)"),
        Some(8) => format!("{path} is read-only: the server must be able to write it, and its -wal and -shm files"),
        Some(11) => format!("{path} is damaged: restore it from a backup, or try `sqlite3 {path} .recover`"),
        Some(13) => format!("the disk holding {path} is full"),
        Some(14) => format!("{path} cannot be opened: check that its directory exists and is writable"),
        Some(26) => {
            format!("{path} is not a chat database (not SQLite, or damaged): move it aside or point --db elsewhere")
        }
        _ => format!("{doing}: {path}"),
    };
    anyhow::Error::new(error).context(advice)
}

/// How an event row reads back, names joined in.
#[derive(FromRow)]
struct EventRow {
    id: EventId,
    kind: String,
    room_id: Option<RoomId>,
    room: Option<String>,
    username: String,
    body: String,
    created_at: String,
}

impl TryFrom<EventRow> for Event {
    type Error = sqlx::Error;

    fn try_from(row: EventRow) -> Result<Self, sqlx::Error> {
        let kind = match (row.kind.as_str(), row.room_id, row.room) {
            ("message", Some(room_id), Some(room)) => EventKind::Message {
                room_id,
                room,
                content: row.body,
            },
            ("status", None, _) => EventKind::Status {
                status: Status::from_str(&row.body).map_err(|e| sqlx::Error::Decode(e.into()))?,
            },
            (kind, ..) => {
                return Err(sqlx::Error::Decode(
                    format!("event {} has an unknown shape ({kind})", row.id).into(),
                ));
            }
        };
        Ok(Event {
            id: row.id,
            username: row.username,
            created_at: row.created_at,
            kind,
        })
    }
}

/// `SELECT` of whole events, names joined in, followed by the rest of the query.
macro_rules! select_events {
    ($($rest:literal),*) => {
        concat!(
            "SELECT e.id, e.kind, e.room_id, r.name AS room, u.username, e.body, e.created_at \
             FROM events AS e JOIN users AS u ON u.id = e.user_id LEFT JOIN rooms AS r ON r.id = e.room_id ",
            $($rest),*
        )
    };
}

#[derive(Debug, Clone, FromRow, serde::Serialize)]
pub struct Room {
    #[serde(skip)]
    pub id: RoomId,
    pub name: String,
    pub created_at: String,
}

/// A signed-in user, as a session token resolves.
#[derive(Debug, Clone, FromRow)]
pub struct SessionUser {
    pub user_id: UserId,
    pub username: String,
    /// Seconds since the session was last used (as far as it was recorded).
    pub idle_secs: f64,
}

#[derive(Debug, Clone, FromRow)]
pub struct Account {
    pub id: UserId,
    pub username: String,
    pub password_hash: String,
}

impl Store {
    /// The events a stream of `room` shows (its messages and every status change) after
    /// `after`, oldest first, at most `limit`.
    pub async fn events_after(&self, room: RoomId, after: EventId, limit: u32) -> Result<Vec<Event>, sqlx::Error> {
        // Two ordered range scans of (room_id, id), merged: no sort, and no scan of other rooms.
        const SQL: &str = concat!(
            "SELECT * FROM (",
            select_events!("WHERE e.room_id = ?1 AND e.id > ?2"),
            " UNION ALL ",
            select_events!("WHERE e.room_id IS NULL AND e.id > ?2"),
            ") ORDER BY id LIMIT ?3"
        );
        let rows: Vec<EventRow> = sqlx::query_as(SQL)
            .bind(room)
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(Event::try_from).collect()
    }

    /// A page of a room's messages, oldest first: the newest `limit` before `before` (or
    /// the newest of all), or, given `after`, the oldest `limit` after it.
    pub async fn history(
        &self,
        room: RoomId,
        before: Option<EventId>,
        after: Option<EventId>,
        limit: u32,
    ) -> Result<Vec<Event>, sqlx::Error> {
        let before = before.unwrap_or(EventId::MAX);
        let rows: Vec<EventRow> = match after {
            Some(after) => {
                const SQL: &str =
                    select_events!("WHERE e.room_id = ?1 AND e.id > ?2 AND e.id < ?3 ORDER BY e.id LIMIT ?4");
                sqlx::query_as(SQL)
                    .bind(room)
                    .bind(after)
                    .bind(before)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                const SQL: &str = concat!(
                    "SELECT * FROM (",
                    select_events!("WHERE e.room_id = ?1 AND e.id < ?2 ORDER BY e.id DESC LIMIT ?3"),
                    ") ORDER BY id"
                );
                sqlx::query_as(SQL)
                    .bind(room)
                    .bind(before)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.into_iter().map(Event::try_from).collect()
    }

    /// The newest id ever handed out, even if its row has since been deleted (AUTOINCREMENT
    /// keeps it in `sqlite_sequence`); 0 for an empty log.
    pub async fn head(&self) -> Result<EventId, sqlx::Error> {
        let seq: Option<EventId> = sqlx::query_scalar("SELECT seq FROM sqlite_sequence WHERE name = 'events'")
            .fetch_optional(&self.pool)
            .await?;
        Ok(seq.unwrap_or(0))
    }

    /// The oldest event still kept, if any.
    pub async fn oldest_event_id(&self) -> Result<Option<EventId>, sqlx::Error> {
        sqlx::query_scalar("SELECT min(id) FROM events")
            .fetch_one(&self.pool)
            .await
    }

    pub async fn room(&self, name: &str) -> Result<Option<Room>, sqlx::Error> {
        if let Some(room) = self.known_rooms().get(name) {
            return Ok(Some(room.clone()));
        }
        let room: Option<Room> = sqlx::query_as("SELECT id, name, created_at FROM rooms WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        if let Some(room) = &room {
            self.known_rooms().insert(room.name.clone(), room.clone());
        }
        Ok(room)
    }

    fn known_rooms(&self) -> std::sync::MutexGuard<'_, HashMap<String, Room>> {
        // Entries are inserted whole: a panic elsewhere cannot leave one half-written.
        self.rooms.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub async fn rooms(&self) -> Result<Vec<Room>, sqlx::Error> {
        sqlx::query_as("SELECT id, name, created_at FROM rooms ORDER BY name")
            .fetch_all(&self.pool)
            .await
    }

    pub async fn account(&self, username: &str) -> Result<Option<Account>, sqlx::Error> {
        sqlx::query_as("SELECT id, username, password_hash FROM users WHERE username = ?")
            .bind(username)
            .fetch_optional(&self.pool)
            .await
    }

    /// The user of a session unused for at most `idle` (an older one has expired).
    pub async fn session_user(&self, token_hash: &[u8], idle: Duration) -> Result<Option<SessionUser>, sqlx::Error> {
        sqlx::query_as(
            "SELECT u.id AS user_id, u.username, \
                    (julianday('now') - julianday(s.last_seen_at)) * 86400.0 AS idle_secs \
             FROM sessions AS s JOIN users AS u ON u.id = s.user_id \
             WHERE s.token_hash = ? AND s.last_seen_at >= strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?)",
        )
        .bind(token_hash)
        .bind(format!("-{} seconds", idle.as_secs()))
        .fetch_optional(&self.pool)
        .await
    }

    /// Every user with their current status, online first, then by name.
    pub async fn members(&self) -> Result<Vec<(String, Status)>, sqlx::Error> {
        let rows: Vec<(String, Option<String>)> = sqlx::query_as(
            "SELECT u.username, (SELECT e.body FROM events AS e WHERE e.kind = 'status' AND e.user_id = u.id \
                                 ORDER BY e.id DESC LIMIT 1) \
             FROM users AS u ORDER BY u.username COLLATE NOCASE",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut members: Vec<(String, Status)> = rows
            .into_iter()
            .map(|(name, status)| (name, status.and_then(|s| s.parse().ok()).unwrap_or(Status::Offline)))
            .collect();
        // Stable: names stay in order within each status.
        members.sort_by_key(|(_, status)| *status as u8);
        Ok(members)
    }

    /// Every user's newest status, for presence to start from after a restart.
    pub async fn latest_statuses(&self) -> Result<Vec<(UserId, String, Status)>, sqlx::Error> {
        // SQLite returns the bare columns of the row holding max(id).
        let rows: Vec<(UserId, String, String, EventId)> = sqlx::query_as(
            "SELECT e.user_id, u.username, e.body, max(e.id) FROM events AS e JOIN users AS u ON u.id = e.user_id \
             WHERE e.kind = 'status' GROUP BY e.user_id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(user, name, status, _)| Some((user, name, Status::from_str(&status).ok()?)))
            .collect())
    }

    /// Answers when the database answers.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1 FROM rooms LIMIT 1")
            .execute(&self.pool)
            .await
            .map(drop)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Copies the WAL back into the database file now and then, off the writer's path, so that
/// no commit ever waits for a checkpoint and the WAL does not grow without bound. On `stop`
/// it truncates the WAL, leaving a tidy file for `sqlite3`.
pub async fn run_checkpointer(mut conn: SqliteConnection, stop: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                // PASSIVE never blocks the writer or readers; it copies what it can.
                if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&mut conn).await {
                    tracing::warn!(%error, "checkpoint failed");
                }
            }
            () = stop.cancelled() => break,
        }
    }
    if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&mut conn).await {
        tracing::warn!(%error, "final checkpoint failed");
    }
    let _ = sqlx::Connection::close(conn).await;
}
