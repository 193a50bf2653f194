//! The chat itself: typed operations, one file per feature, that every front end calls (the
//! JSON API, the pages, and later the command line and webhooks). An operation takes the `App`
//! and, where someone asks, their `Session`; it checks the rules and access, writes through
//! the event log, and answers in domain types or an `Error`.

pub mod accounts;
mod error;
pub mod invites;
pub mod limits;
pub mod messages;
pub mod presence;
pub mod reads;
pub mod retention;
pub mod rooms;
pub mod search;
pub mod sessions;
pub mod status;
pub mod streams;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

pub use error::Error;

use crate::config::{self, Config};
use crate::domain::EventId;
use crate::eventlog::{self, Durability, EventLog};
use crate::metrics::Metrics;
use limits::Limits;
use presence::Presence;
use sessions::SessionCache;

/// The rules a deployment sets.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Longest message, in characters (0: no limit).
    pub max_message_chars: usize,
    /// A session unused this long has expired.
    pub session_idle: Duration,
    /// A session this old has expired, however much it was used.
    pub session_lifetime: Duration,
    /// Who may make an account (`--signup`).
    pub signup: config::Signup,
}

/// What every operation shares. Cloning copies a handful of `Arc`s.
#[derive(Clone)]
pub struct App {
    pub log: EventLog,
    pub presence: Presence,
    pub metrics: Arc<Metrics>,
    pub settings: Arc<Settings>,
    limits: Arc<Limits>,
    sessions: Arc<SessionCache>,
    /// argon2 takes 19 MiB and tens of milliseconds a hash: at most one per core at a time,
    /// and a bounded number waiting.
    hashing: Arc<Hashing>,
}

/// The app's background work, stopped at the end of `App::start`'s life.
pub struct Background {
    log: eventlog::Background,
    stop: CancellationToken,
}

impl App {
    /// Opens the database and starts the writer, presence and the housekeeping tasks.
    pub async fn start(config: &Config, metrics: Arc<Metrics>) -> anyhow::Result<(Self, Background)> {
        let durability = match config.sync {
            config::Sync::Full => Durability::Full,
            config::Sync::Normal => Durability::Normal,
        };
        let (log, log_background) = EventLog::open(
            &config.db,
            durability,
            config.hub_capacity as usize,
            Arc::clone(&metrics),
        )
        .await?;
        let statuses = log.store.statuses().await.context("cannot read statuses")?;
        let (presence, _) = Presence::spawn(
            log.writer.clone(),
            statuses,
            config.presence_grace(),
            log.hub.closed().clone(),
        );
        let stop = CancellationToken::new();
        tokio::spawn(sessions::run_sweeper(
            log.writer.clone(),
            config.session_idle(),
            config.session_lifetime(),
            stop.clone(),
        ));
        tokio::spawn(retention::run(
            log.clone(),
            retention::Policy::new(config.retain_days, &config.retain_room),
            config.retention_interval(),
            stop.clone(),
        ));
        let limits = Arc::new(Limits::new(config, &metrics));
        tokio::spawn(limits::run_janitor(Arc::clone(&limits), stop.clone()));
        let app = Self {
            log,
            presence,
            metrics,
            settings: Arc::new(Settings {
                max_message_chars: config.max_message_chars,
                session_idle: config.session_idle(),
                session_lifetime: config.session_lifetime(),
                signup: config.signup,
            }),
            limits,
            sessions: Arc::default(),
            hashing: Arc::new(Hashing {
                threads: Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get())),
                queued: AtomicUsize::new(0),
                max_queued: config.max_queued_hashes,
            }),
        };
        Ok((
            app,
            Background {
                log: log_background,
                stop,
            },
        ))
    }

    /// The newest event published. Whatever is read after this, a stream from here brings the
    /// rest.
    pub fn head(&self) -> EventId {
        self.log.hub.head()
    }

    /// Answers when the database answers.
    pub async fn healthy(&self) -> Result<(), Error> {
        Ok(self.log.store.ping().await?)
    }

    /// Brings the metrics of the database up to date: its file's and log's sizes and the age
    /// of the last backup, read now (for `/metrics`, as it is asked for).
    pub async fn observe_storage(&self) -> Result<(), Error> {
        let storage = self.log.store.storage().await?;
        self.metrics
            .storage
            .observe(storage.database_bytes, storage.wal_bytes, storage.last_backup);
        Ok(())
    }

    /// Ends every open stream once it has sent what was published before. Nothing is sent
    /// live after this.
    pub fn close_streams(&self) {
        self.log.hub.close();
    }

    /// Runs `work` on a blocking thread, at most one per core at a time; refused (`Busy`) when
    /// as many are already waiting as `--max-queued-hashes` allows.
    async fn off_thread<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T, Error> {
        let hashing = &self.hashing;
        let queued = hashing.queued.fetch_add(1, Ordering::AcqRel);
        let _queued = Queued(&hashing.queued);
        if hashing.max_queued > 0 && queued >= hashing.max_queued {
            self.metrics.refusals.count(crate::metrics::Limit::Hashing);
            return Err(Error::Busy {
                what: "sign-ins",
                retry_after: Duration::from_secs(2),
            });
        }
        let _permit = hashing
            .threads
            .acquire()
            .await
            .map_err(|_| Error::Internal("hashing pool closed".into()))?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| Error::Internal(format!("hashing task failed: {e}")))
    }
}

/// The password hashes running and waiting.
struct Hashing {
    threads: Semaphore,
    /// Running or waiting now.
    queued: AtomicUsize,
    max_queued: usize,
}

/// Counts a hash as queued until dropped.
struct Queued<'a>(&'a AtomicUsize);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Background {
    /// Stops the housekeeping, lets the writer finish its queue, and closes the database.
    pub async fn stop(self, app: &App) {
        self.stop.cancel();
        self.log.stop(&app.log.store).await;
    }
}
