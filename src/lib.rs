//! A persistent real-time chat server: every event is committed to SQLite by one writer, then
//! published to the live streams of its room; a stream that reconnects replays what it missed
//! from the database. See the README's architecture section.

pub mod auth;
pub mod config;
pub mod error;
pub mod hub;
pub mod limits;
pub mod metrics;
pub mod model;
pub mod net;
pub mod render;
pub mod sse;
pub mod store;
pub mod telemetry;
pub mod web;
pub mod writer;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use poem::Server;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use crate::config::Config;
use crate::error::AppError;
use crate::hub::Hub;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::model::Password;
use crate::net::{GuardedAcceptor, Handoffs, Timeouts};
use crate::store::Store;
use crate::web::stream::Streams;
use crate::writer::Writer;

/// How long shutdown waits for open requests once the streams are told to end.
const SHUTDOWN_BACKSTOP: Duration = Duration::from_secs(5);

/// What every handler shares. Cloning copies a handful of `Arc`s.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub hub: Hub,
    pub writer: Writer,
    pub metrics: Arc<Metrics>,
    pub keepalive: Duration,
    pub limits: Arc<Limits>,
    pub sessions: Arc<auth::SessionCache>,
    pub max_message_chars: usize,
    pub session_idle: Duration,
    max_body_bytes: usize,
    /// argon2 takes 19 MiB and tens of milliseconds a hash: a few at a time, off the async
    /// threads, so a burst of sign-ins cannot starve everything else or exhaust memory.
    hashing: Arc<Semaphore>,
}

impl AppState {
    /// The request body limit; the flag's `0` means none.
    pub fn body_limit(&self) -> usize {
        match self.max_body_bytes {
            0 => usize::MAX,
            n => n,
        }
    }

    pub async fn hash_password(&self, password: &Password) -> Result<String, AppError> {
        let password = Password::parse(String::from_utf8_lossy(password.as_bytes()).into_owned())?;
        self.blocking_hash(move || auth::hash_password(&password)).await?
    }

    pub async fn verify_password(&self, password: &Password, stored: &str) -> Result<bool, AppError> {
        let password = Password::parse(String::from_utf8_lossy(password.as_bytes()).into_owned())?;
        let stored = stored.to_owned();
        self.blocking_hash(move || auth::verify_password(&password, &stored))
            .await
    }

    async fn blocking_hash<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T, AppError> {
        let _permit = self
            .hashing
            .acquire()
            .await
            .map_err(|_| AppError::Internal("hashing pool closed".into()))?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| AppError::Internal(format!("hashing task failed: {e}")))
    }
}

/// Serves the chat on `listener` until `shutdown` resolves, then ends every stream, lets the
/// writer finish its queue, and closes the database. The caller binds, so tests can use port 0;
/// `ready` is called once the database is open and requests will be served.
pub async fn run(
    config: Config,
    listener: TcpListener,
    ready: impl FnOnce(),
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let opened = store::open(&config).await?;
    let store = opened.store;
    let head = store.head().await.context("cannot read the event log")?;
    let statuses = store.latest_statuses().await.context("cannot read statuses")?;
    let metrics = Arc::new(Metrics::new());
    let hub = Hub::new(config.hub_capacity as usize, head);

    let writer_stop = CancellationToken::new();
    let (writer, writer_task) = writer::spawn(
        opened.writer,
        hub.clone(),
        Arc::clone(&metrics),
        statuses,
        config.presence_grace(),
        writer_stop.clone(),
    );
    let checkpoint_stop = CancellationToken::new();
    let checkpointer = tokio::spawn(store::run_checkpointer(opened.checkpointer, checkpoint_stop.clone()));

    tokio::spawn(auth::run_session_sweeper(
        writer.clone(),
        config.session_idle(),
        hub.shutdown_token().clone(),
    ));
    let limits = Arc::new(Limits::new(&config, &metrics));
    tokio::spawn(limits::run_janitor(Arc::clone(&limits), hub.shutdown_token().clone()));

    let state = AppState {
        store: store.clone(),
        hub: hub.clone(),
        writer,
        metrics: Arc::clone(&metrics),
        keepalive: config.keepalive(),
        limits,
        sessions: Arc::default(),
        max_message_chars: config.max_message_chars,
        session_idle: config.session_idle(),
        max_body_bytes: config.max_body_bytes,
        hashing: Arc::new(Semaphore::new(
            std::thread::available_parallelism().map_or(2, |n| n.get()),
        )),
    };
    tracing::info!(db = %config.db.display(), head, "serving");

    let handoffs = Arc::new(Handoffs::default());
    let streams = Arc::new(Streams {
        handoffs: Arc::clone(&handoffs),
        tasks: TaskTracker::new(),
        write_timeout: config.write_timeout(),
        metrics: Arc::clone(&metrics),
    });
    let app = web::build_app(state, Arc::clone(&streams));
    let signal = {
        let hub = hub.clone();
        async move {
            shutdown.await;
            hub.close(); // ends every open event stream
        }
    };
    let timeouts = Timeouts::new(config.request_timeout(), config.write_timeout(), config.keepalive());
    let acceptor = GuardedAcceptor::new(listener, timeouts, Arc::clone(&metrics), handoffs)?;
    ready();
    let served = Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(app, signal, Some(SHUTDOWN_BACKSTOP))
        .await;
    hub.close();
    // The streams served on their own connections are not the HTTP server's to wait for.
    streams.tasks.close();
    if tokio::time::timeout(SHUTDOWN_BACKSTOP, streams.tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(left = streams.tasks.len(), "streams still open at shutdown");
    }

    writer_stop.cancel();
    if let Err(error) = writer_task.await {
        tracing::error!(%error, "writer task failed");
    }
    checkpoint_stop.cancel();
    if let Err(error) = checkpointer.await {
        tracing::error!(%error, "checkpoint task failed");
    }
    store.close().await;
    tracing::info!("stopped");
    served.context("server failed")
}
