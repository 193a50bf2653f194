//! SQLite behind the event log: opening the file (pragmas, migrations), every read
//! (`reads.rs`), the SQL the writer applies (`writes.rs`), the operator's commands
//! (`operator.rs`, and `import.rs` for `chat-server import`), and the checkpoint task. All the
//! SQLite SQL of the crate is here.
//!
//! Writes belong to the writer task (`eventlog::writer`), which owns the one connection allowed
//! to write; the read pool is `query_only`, so a read path that tried to write would fail
//! loudly.

pub mod import;
pub mod operator;
mod reads;
mod search;
pub(super) mod writes;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use reads::{
    Account, AccountListing, Found, HistoryPage, Room, SearchPage, SessionRow, Store, StoredStatus, Unread,
};
pub use search::refused_query;

/// SQLite's `synchronous` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `FULL`: a commit survives power loss.
    Full,
    /// `NORMAL`: a commit survives a crash of the server, not always a power cut.
    Normal,
}

/// Everything `open` hands out: reads, and the two connections that may touch the file.
pub struct Opened {
    pub store: Store,
    /// For the writer task alone.
    pub writer: SqliteConnection,
    /// For the checkpoint task alone.
    pub checkpointer: SqliteConnection,
}

/// How long a statement waits for a lock another connection holds before it fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

fn connect_options(path: &Path, sync: Durability) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(match sync {
            Durability::Full => SqliteSynchronous::Full,
            Durability::Normal => SqliteSynchronous::Normal,
        })
        .busy_timeout(BUSY_TIMEOUT)
        .foreign_keys(true)
        // Commits must never wait for a checkpoint: the checkpoint task does that work.
        .pragma("wal_autocheckpoint", "0")
        // What is deleted is overwritten, not only unlinked: a deleted message's text does
        // not stay in free space.
        .pragma("secure_delete", "ON")
        // After a burst, the WAL goes back to this size at the next checkpoint instead of
        // keeping its high-water mark on disk.
        .pragma("journal_size_limit", "67108864")
}

/// The longest a truncating checkpoint waits for the writer and for readers before it gives
/// up until its next tick: what a commit may wait for it.
const CHECKPOINT_WAIT: Duration = Duration::from_millis(100);

/// The schema, from `migrations/sqlite/`, compiled in.
static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Opens (or creates) the database, brings its schema up to date, and checks it is sound
/// enough to serve.
pub async fn open(path: &Path, durability: Durability) -> anyhow::Result<Opened> {
    create_private(path).map_err(|error| {
        anyhow::Error::new(error).context(format!(
            "{} cannot be opened: check that its directory exists and is writable",
            path.display()
        ))
    })?;
    let options = connect_options(path, durability);
    let mut writer = options
        .clone()
        .connect()
        .await
        .map_err(|error| explain(error, path, "cannot open the database"))?;
    MIGRATIONS.run(&mut writer).await.map_err(|error| match error {
        sqlx::migrate::MigrateError::Execute(error) => explain(error, path, "cannot bring the schema up to date"),
        other => anyhow::Error::new(other).context(format!(
            "cannot bring the schema of {} up to date (was it written by a newer chat-server?)",
            path.display()
        )),
    })?;
    // A truncating checkpoint holds the write lock while it waits for readers of older
    // pages (a backup, an export, someone at the `sqlite3` prompt), so the writer waits as
    // long as it does: it gives up soon and tries again at its next tick instead.
    let checkpointer = options
        .clone()
        .busy_timeout(CHECKPOINT_WAIT)
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
        store: Store::new(pool),
        writer,
        checkpointer,
    })
}

/// Opens an existing database file for an operator's command (`backup`, `export`), beside a
/// running server if there is one: never creating the file (a mistyped path is an error, not
/// a new empty chat) and never changing its schema. Fails, with what to do, unless it is an
/// SQLite file.
pub async fn open_existing(path: &Path) -> anyhow::Result<SqliteConnection> {
    let mut conn = existing_options(path)?
        .connect()
        .await
        .map_err(|error| explain(error, path, "cannot open the database"))?;
    // Opening reads nothing; the first statement reads the header.
    sqlx::query("SELECT count(*) FROM sqlite_schema")
        .execute(&mut conn)
        .await
        .map_err(|error| explain(error, path, "cannot read the database"))?;
    Ok(conn)
}

/// Reads for an operator's command (`export`) on an existing database, as `open_existing`
/// opens it, whose schema must be this version's: one read-only connection.
pub async fn open_for_reading(path: &Path) -> anyhow::Result<Store> {
    let mut conn = open_existing(path).await?;
    let applied: Option<i64> = sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
        .fetch_one(&mut conn)
        .await
        .map_err(|error| anyhow::Error::new(error).context(format!("{} is not a chat database", path.display())))?;
    let latest = MIGRATIONS.iter().map(|migration| migration.version).max();
    match applied.cmp(&latest) {
        std::cmp::Ordering::Less => anyhow::bail!(
            "the schema of {} is older than this chat-server's: start the server on it once to bring it up to date",
            path.display()
        ),
        std::cmp::Ordering::Greater => anyhow::bail!(
            "{} was written by a newer chat-server: use that version",
            path.display()
        ),
        std::cmp::Ordering::Equal => {}
    }
    let _ = conn.close().await;
    // A page of rows is handed over whole rather than fifty at a time: half the CPU of an
    // export of a million messages goes to the two threads waking each other otherwise.
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(existing_options(path)?.pragma("query_only", "ON").row_buffer_size(1024))
        .await
        .map_err(|error| explain(error, path, "cannot open the database"))?;
    Ok(Store::new(pool))
}

/// How `open_existing` opens `path`: never creating it, leaving its journal mode as it is.
fn existing_options(path: &Path) -> anyhow::Result<SqliteConnectOptions> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => {}
        Ok(_) => anyhow::bail!("{} is not a file", path.display()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            anyhow::bail!("there is no database at {}", path.display())
        }
        Err(error) => {
            return Err(anyhow::Error::new(error).context(format!("cannot open {}", path.display())));
        }
    }
    Ok(SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(false)
        .busy_timeout(BUSY_TIMEOUT))
}

/// Creates the database file, if it does not exist yet, readable and writable by its owner
/// only; SQLite gives its `-wal` and `-shm` files the same permissions.
fn create_private(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(error),
    }
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

/// Copies the WAL back into the database file now and then, off the writer's path, so that
/// no commit ever waits for a checkpoint and the WAL does not grow without bound. When text
/// was erased (`erased` is notified), it also truncates the WAL, which holds the pages as they
/// were before: until then a deleted message's text is still in the file. On `stop` it
/// truncates the WAL, leaving a tidy file for `sqlite3`.
pub async fn run_checkpointer(mut conn: SqliteConnection, erased: Arc<Notify>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Text was erased and the WAL not yet truncated since.
    let mut to_truncate = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = erased.notified() => to_truncate = true,
            () = stop.cancelled() => break,
        }
        if to_truncate {
            // Waits (up to `CHECKPOINT_WAIT`) for readers of older pages and for the writer;
            // a reader still holding a snapshot makes it give up, to be tried again.
            match truncate(&mut conn).await {
                Ok(true) => to_truncate = false,
                Ok(false) => tracing::debug!("the WAL could not be truncated yet"),
                Err(error) => tracing::warn!(%error, "checkpoint failed"),
            }
        } else {
            // PASSIVE never blocks the writer or readers; it copies what it can.
            match sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)")
                .fetch_one(&mut conn)
                .await
            {
                // Under writes that never pause, some reader always holds a snapshot the WAL's
                // end has passed, so the WAL is never started over and grows for good (by
                // 190 MiB in 20 s of 1,400 marks of read a second). Past its limit, it is
                // truncated, waiting at most `CHECKPOINT_WAIT` for the writer and the readers.
                Ok((_, frames, _)) if frames > WAL_FRAMES_KEPT => match truncate(&mut conn).await {
                    Ok(true) => tracing::debug!(frames, "the WAL was started over"),
                    Ok(false) => tracing::debug!(frames, "the WAL could not be started over yet"),
                    Err(error) => tracing::warn!(%error, "checkpoint failed"),
                },
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "checkpoint failed"),
            }
        }
    }
    if let Err(error) = truncate(&mut conn).await {
        tracing::warn!(%error, "final checkpoint failed");
    }
    let _ = conn.close().await;
}

/// WAL frames (pages of 4 KiB) past which the checkpoint task truncates it: `journal_size_limit`.
const WAL_FRAMES_KEPT: i64 = 16_384;

/// Copies the whole WAL into the database file and truncates it to nothing; whether it could
/// (no reader was still using a page of it).
async fn truncate(conn: &mut SqliteConnection) -> Result<bool, sqlx::Error> {
    let (busy, _, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
        .fetch_one(conn)
        .await?;
    Ok(busy == 0)
}
