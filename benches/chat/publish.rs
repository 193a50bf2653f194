//! Posting stamped messages (`"<seq> <send time>"`) to one room, or spread over many, at a
//! steady rate or as fast as the server acknowledges them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::client::{Endpoint, Poster};
use crate::stats::{Rng, now_ns, stamp};

/// What the publishers did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Published {
    pub acked: u64,
    pub errors: u64,
    /// `now_ns()` of the first send.
    pub first_send_ns: u64,
    pub elapsed: Duration,
}

/// Posts messages `0..messages` to `room` from `publishers` connections, message `seq` at
/// `seq / rate` seconds after the start (`rate` 0: each publisher as fast as acks come back).
/// Publisher `p` posts as user `p` (modulo the tokens).
pub async fn publish(
    endpoint: &Arc<Endpoint>,
    tokens: &[Arc<str>],
    room: &str,
    messages: u64,
    rate: f64,
    publishers: usize,
) -> anyhow::Result<Published> {
    publish_spread(endpoint, tokens, &[room.to_owned()], messages, rate, publishers).await
}

/// As `publish`, each message to a room of `rooms` picked at random (the same rooms for the
/// same `seq` on every run).
pub async fn publish_spread(
    endpoint: &Arc<Endpoint>,
    tokens: &[Arc<str>],
    rooms: &[String],
    messages: u64,
    rate: f64,
    publishers: usize,
) -> anyhow::Result<Published> {
    let mut posters = Vec::new();
    for p in 0..publishers.max(1) {
        posters.push(Poster::new(endpoint, &tokens[p % tokens.len()], &rooms[0]).await?);
    }
    let paths: Arc<[String]> = rooms.iter().map(|room| format!("/api/rooms/{room}/messages")).collect();
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let first_send_ns = now_ns();
    let tasks: Vec<_> = posters
        .into_iter()
        .map(|poster| {
            let paths = Arc::clone(&paths);
            tokio::spawn(run_publisher(poster, paths, Arc::clone(&next), messages, rate, start))
        })
        .collect();
    let mut published = Published {
        first_send_ns,
        ..Published::default()
    };
    for task in tasks {
        let (acked, errors) = task.await?;
        published.acked += acked;
        published.errors += errors;
    }
    published.elapsed = start.elapsed();
    Ok(published)
}

async fn run_publisher(
    mut poster: Poster,
    paths: Arc<[String]>,
    next: Arc<AtomicU64>,
    messages: u64,
    rate: f64,
    start: Instant,
) -> (u64, u64) {
    let (mut acked, mut errors) = (0, 0);
    loop {
        let seq = next.fetch_add(1, Ordering::Relaxed);
        if seq >= messages {
            return (acked, errors);
        }
        if rate > 0.0 {
            tokio::time::sleep_until(start + Duration::from_secs_f64(seq as f64 / rate)).await;
        }
        let path = &paths[Rng::new(seq ^ 0x9e37_79b9_7f4a_7c15).below(paths.len())];
        match poster.post_to(path, &stamp(seq)).await {
            Ok(_) => acked += 1,
            Err(error) => {
                if errors == 0 {
                    eprintln!("  a post failed: {error:#}");
                }
                errors += 1;
            }
        }
    }
}
