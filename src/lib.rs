//! A persistent real-time chat server: every event is committed to SQLite by one writer, then
//! published to the live streams that may see it; a stream that reconnects replays what it
//! missed from the database.
//!
//! The layers point one way: `domain` ← `wire` ← `eventlog` ← `app` ← `http`. The domain is
//! the vocabulary (ids, names, events and their scopes), with no I/O; `wire` is what goes to a
//! client (SSE frames, JSON, HTML); `eventlog` is the writer, the hub, subscriptions and the
//! storage; `app` is the chat's operations; `http` is poem.

pub mod admin;
pub mod app;
pub mod config;
pub mod domain;
pub mod eventlog;
pub mod http;
pub mod metrics;
pub mod operations;
pub mod telemetry;
pub mod wire;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::app::App;
pub use crate::config::Config;
use crate::http::transport::admission::{Caps, raise_file_limit};
use crate::metrics::Metrics;

/// Serves the chat on `listener` until `shutdown` resolves, then ends every stream, lets the
/// writer finish its queue, and closes the database. The caller binds, so tests can use port 0;
/// `ready` is called once the database is open and requests will be served.
pub async fn run(
    mut config: Config,
    listener: TcpListener,
    ready: impl FnOnce(),
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let file_limit = raise_file_limit().unwrap_or_else(|error| {
        tracing::warn!(%error, "cannot read the open-file limit");
        u64::MAX
    });
    let caps = Caps::derive(&config, file_limit);
    tracing::info!(
        file_limit,
        max_connections = caps.connections,
        max_connections_per_address = caps.per_address,
        max_streams = caps.streams,
        "connection caps"
    );
    caps.settle(&mut config);
    let metrics = Arc::new(Metrics::new());
    let (app, background) = App::start(&config, metrics).await?;
    tracing::info!(db = %config.db.display(), head = %app.head(), "serving");
    let served = http::serve(app.clone(), &config, listener, ready, shutdown).await;
    background.stop(&app).await;
    tracing::info!("stopped");
    served
}
