//! The event log: the only writer, the hub that carries committed events to live streams, the
//! subscriptions that replay and then follow it, and the storage behind them, a module per
//! engine with its SQL: `sqlite/`, which the server runs on, and `postgres/`, being built for
//! several nodes sharing one log. Centrifuge's broker is the model for the seam: publish (the writer),
//! history (the store), subscribe with a stream position (the subscription).

mod change;
pub mod hub;
pub mod postgres;
pub mod sqlite;
pub mod subscription;
pub mod writer;

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use change::{MemberChange, NewRoom, NewSession, Post, Posted, RoomChange, StatusChange, WriteError};
pub use hub::{Hub, Live};
pub use sqlite::{Durability, Store};
pub use subscription::{Item, Subscribed};
pub use writer::Writer;

pub use change::{Admission, Edit, Invite, Join, Joined, NewInvite, React, ReadMark, Target};

use crate::domain::View;
use crate::metrics::Metrics;

/// The log as every other layer uses it. Cloning copies a few `Arc`s.
#[derive(Clone)]
pub struct EventLog {
    pub store: Store,
    pub writer: Writer,
    pub hub: Hub,
    metrics: Arc<Metrics>,
}

/// The tasks behind an open log, to be stopped once nothing writes any more.
pub struct Background {
    writer_stop: CancellationToken,
    writer: JoinHandle<()>,
    checkpointer_stop: CancellationToken,
    checkpointer: JoinHandle<()>,
}

impl EventLog {
    /// Opens (or creates) the database, brings its schema up to date, and starts the writer and
    /// the checkpoint task. `capacity` is each live feed's buffer, in events.
    pub async fn open(
        path: &Path,
        durability: Durability,
        capacity: usize,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<(Self, Background)> {
        let opened = sqlite::open(path, durability).await?;
        let store = opened.store;
        let head = store.head().await.context("cannot read the event log")?;
        let membership = store.membership().await.context("cannot read who is in which room")?;
        let hub = Hub::new(capacity, head, membership);
        let writer_stop = CancellationToken::new();
        let erased = Arc::new(tokio::sync::Notify::new());
        let (writer, writer_task) = writer::spawn(
            opened.writer,
            hub.clone(),
            Arc::clone(&metrics),
            Arc::clone(&erased),
            writer_stop.clone(),
        );
        let checkpointer_stop = CancellationToken::new();
        let checkpointer = tokio::spawn(sqlite::run_checkpointer(
            opened.checkpointer,
            erased,
            checkpointer_stop.clone(),
        ));
        let log = Self {
            store,
            writer,
            hub,
            metrics,
        };
        let background = Background {
            writer_stop,
            writer: writer_task,
            checkpointer_stop,
            checkpointer,
        };
        Ok((log, background))
    }

    /// Subscribes `view` to the hub; read from the database only after this.
    pub fn subscribe(&self, view: View) -> Subscribed {
        let (live, head) = self.hub.subscribe(view);
        Subscribed {
            store: self.store.clone(),
            hub: self.hub.clone(),
            metrics: Arc::clone(&self.metrics),
            view,
            live,
            head,
        }
    }
}

impl Background {
    /// Lets the writer finish its queue, checkpoints, and closes the database.
    pub async fn stop(self, store: &Store) {
        self.writer_stop.cancel();
        if let Err(error) = self.writer.await {
            tracing::error!(%error, "writer task failed");
        }
        self.checkpointer_stop.cancel();
        if let Err(error) = self.checkpointer.await {
            tracing::error!(%error, "checkpoint task failed");
        }
        store.close().await;
    }
}
