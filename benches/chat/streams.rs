//! Many event streams at once: opening them without flooding the server's accept queue,
//! following them, and adding up what they saw.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::client::{self, End, Endpoint};
use crate::sse::{Event, Parser};
use crate::stats::{Latencies, Progress, Tracker, now_ns};

/// Connections being set up at once; the rest wait their turn. Below the server's listen
/// backlog (128: what `tokio::net::TcpListener::bind` asks for), so that set-up does not
/// overflow its accept queue and wait out SYN retransmits.
const CONNECTING_AT_ONCE: usize = 64;

/// What every stream of a scenario shares.
pub struct Shared {
    pub opened: AtomicUsize,
    /// Connections that could not be opened (first ones and reconnects).
    pub failed: AtomicUsize,
    /// Connections made after the first, all streams together.
    pub reconnects: AtomicUsize,
    /// Streams the server ended on its own.
    pub ended_by_server: AtomicUsize,
    pub progress: Progress,
    pub latencies: Latencies,
    pub stop: CancellationToken,
    first_error: Mutex<Option<String>>,
    gate: Arc<Semaphore>,
}

impl Shared {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            opened: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            reconnects: AtomicUsize::new(0),
            ended_by_server: AtomicUsize::new(0),
            progress: Progress::default(),
            latencies: Latencies::new(),
            stop: CancellationToken::new(),
            first_error: Mutex::new(None),
            gate: Arc::new(Semaphore::new(CONNECTING_AT_ONCE)),
        })
    }

    fn fail(&self, error: &anyhow::Error) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_error.lock().unwrap_or_else(PoisonError::into_inner);
        if first.is_none() {
            eprintln!("  a stream failed: {error:#}");
            *first = Some(format!("{error:#}"));
        }
    }

    pub fn opened(&self) -> usize {
        self.opened.load(Ordering::Relaxed)
    }

    pub fn failed(&self) -> usize {
        self.failed.load(Ordering::Relaxed)
    }

    /// Waits until each of `total` streams has opened or failed (at most `limit`).
    pub async fn wait_open(&self, total: usize, limit: Duration) -> usize {
        let started = Instant::now();
        let mut reported = Instant::now();
        while self.opened() + self.failed() < total && started.elapsed() < limit {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if reported.elapsed() > Duration::from_secs(5) {
                eprintln!("  {} of {total} streams open", self.opened());
                reported = Instant::now();
            }
        }
        self.opened()
    }
}

/// Where a stream reads and as whom.
#[derive(Clone)]
pub struct Spec {
    pub endpoint: Arc<Endpoint>,
    /// `/api/rooms/{room}/events`, with a query if any.
    pub path: Arc<str>,
    pub token: Arc<str>,
    /// Messages the stream expects (sizes its tracker).
    pub messages: u64,
}

/// A stream that checks every stamped message, until `shared.stop`. With `reconnect`, each
/// notification closes the connection and opens a new one with `Last-Event-ID`, as a browser
/// does. Returns its tracker.
pub fn spawn_tracked(spec: Spec, shared: Arc<Shared>, reconnect: Option<Arc<Notify>>) -> JoinHandle<Tracker> {
    tokio::spawn(async move {
        let mut tracker = Tracker::new(spec.messages, None);
        let mut first = true;
        while !shared.stop.is_cancelled() {
            // Only first connections queue at the gate; reconnects are few and spread out.
            let permit = if first {
                Some(Arc::clone(&shared.gate).acquire_owned().await)
            } else {
                None
            };
            let stop = async {
                match &reconnect {
                    Some(notify) => tokio::select! {
                        () = shared.stop.cancelled() => {},
                        () = notify.notified() => {},
                    },
                    None => shared.stop.cancelled().await,
                }
            };
            let opened = || {
                drop(permit);
                if first {
                    shared.opened.fetch_add(1, Ordering::Relaxed);
                } else {
                    shared.reconnects.fetch_add(1, Ordering::Relaxed);
                }
            };
            let last_event_id = if first { None } else { tracker.last_id };
            let mut parser = Parser::default();
            let on_chunk = |chunk: &[u8]| {
                let now = now_ns();
                let mut delivered = 0;
                parser.feed(chunk, |event| delivered += tracker.on_event(event, now));
                tracker.flush(&shared.latencies, &shared.progress, delivered, now);
            };
            let result = client::follow(
                &spec.endpoint,
                &spec.path,
                &spec.token,
                last_event_id,
                stop,
                opened,
                on_chunk,
            )
            .await;
            match result {
                Ok(End::Stopped) => {}
                Ok(End::Closed) => {
                    shared.ended_by_server.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => {
                    shared.fail(&error);
                    if first || reconnect.is_none() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            if reconnect.is_none() {
                break;
            }
            first = false;
        }
        tracker
    })
}

/// A stream that only keeps its connection open (and drains it) until `shared.stop`.
pub fn spawn_idle(spec: Spec, shared: Arc<Shared>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let permit = Arc::clone(&shared.gate).acquire_owned().await;
        let opened = || {
            drop(permit);
            shared.opened.fetch_add(1, Ordering::Relaxed);
        };
        let stop = shared.stop.cancelled();
        if let Err(error) = client::follow(&spec.endpoint, &spec.path, &spec.token, None, stop, opened, |_| {}).await {
            shared.fail(&error);
        }
    })
}

/// What a stream opened with `spawn_sink` does with the events it reads.
pub trait Sink: Send + 'static {
    /// Takes in one event read at `now_ns`; returns whether it counts as a delivery.
    fn on_event(&mut self, event: &Event<'_>, now_ns: u64) -> bool;
}

/// A stream that hands every event to `sink` until `shared.stop`, counting deliveries in
/// `shared.progress`; returns the sink.
pub fn spawn_sink<S: Sink>(spec: Spec, shared: Arc<Shared>, mut sink: S) -> JoinHandle<S> {
    tokio::spawn(async move {
        let permit = Arc::clone(&shared.gate).acquire_owned().await;
        let opened = || {
            drop(permit);
            shared.opened.fetch_add(1, Ordering::Relaxed);
        };
        let mut parser = Parser::default();
        let on_chunk = |chunk: &[u8]| {
            let now = now_ns();
            let mut delivered = 0;
            parser.feed(chunk, |event| delivered += u64::from(sink.on_event(event, now)));
            shared.progress.add(delivered, now);
        };
        let stop = shared.stop.cancelled();
        match client::follow(&spec.endpoint, &spec.path, &spec.token, None, stop, opened, on_chunk).await {
            Ok(End::Stopped) => {}
            Ok(End::Closed) => {
                shared.ended_by_server.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => shared.fail(&error),
        }
        sink
    })
}
