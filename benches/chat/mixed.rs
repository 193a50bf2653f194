//! Mixed: streams spread over rooms, a poster in every room, and a share of the streams closing
//! and reopening with `Last-Event-ID` every second. Latency, and every stream must still see
//! every message of its room exactly once, in order.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::client::{self, Poster};
use crate::publish::publish;
use crate::report::{Report, Target, round};
use crate::server::Launcher;
use crate::stats::{CpuWindow, Rng, Totals};
use crate::streams::{self, Shared, Spec};

#[derive(Debug, Clone, Copy)]
pub struct Params {
    pub streams: usize,
    pub rooms: usize,
    /// Messages per second in each room.
    pub rate: f64,
    pub seconds: f64,
    /// Percentage of the streams reconnecting each second.
    pub reconnect_percent: f64,
    pub users: usize,
}

pub async fn run(launcher: &Launcher, params: Params) -> anyhow::Result<Report> {
    eprintln!("mixed: {params:?}");
    let rooms = params.rooms.max(1);
    let (server, tokens) = launcher.start_with_users(params.users).await?;
    let endpoint = &server.endpoint;
    let mut paths = Vec::with_capacity(rooms);
    for room in 0..rooms {
        let name = format!("mixed-{room}");
        client::create_room(endpoint, &tokens[0], &name).await?;
        // Streams start after a marker message: a stream that reconnects before it has seen
        // any event still resumes from a definite point, as a page rendered at that id would.
        let marker = Poster::new(endpoint, &tokens[0], &name).await?.post("start").await?;
        paths.push(Arc::<str>::from(format!("/api/rooms/{name}/events?after={marker}")));
    }

    let messages = (params.rate * params.seconds).round() as u64;
    let shared = Shared::new();
    let notifies: Vec<Arc<Notify>> = (0..params.streams).map(|_| Arc::new(Notify::new())).collect();
    let tasks: Vec<_> = (0..params.streams)
        .map(|n| {
            let spec = Spec {
                endpoint: Arc::clone(endpoint),
                path: Arc::clone(&paths[n % rooms]),
                token: Arc::clone(&tokens[n % tokens.len()]),
                messages,
            };
            streams::spawn_tracked(spec, Arc::clone(&shared), Some(Arc::clone(&notifies[n])))
        })
        .collect();
    let opened = shared.wait_open(params.streams, Duration::from_secs(120)).await;
    eprintln!("  {opened} streams open; posting for {} s", params.seconds);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let cpu = CpuWindow::start(server.pid);
    let reconnector = tokio::spawn(reconnect_some(notifies, params.reconnect_percent));
    let posters: Vec<_> = (0..rooms)
        .map(|room| {
            let (endpoint, token) = (Arc::clone(endpoint), Arc::clone(&tokens[room % tokens.len()]));
            // Rooms take turns within each period instead of all posting at the same instant.
            let phase = Duration::from_secs_f64(room as f64 / (rooms as f64 * params.rate.max(0.001)));
            tokio::spawn(async move {
                tokio::time::sleep(phase).await;
                publish(&endpoint, &[token], &format!("mixed-{room}"), messages, params.rate, 1).await
            })
        })
        .collect();
    let mut acked = Vec::with_capacity(rooms);
    let mut post_errors = 0;
    for poster in posters {
        let published = poster.await??;
        acked.push(published.acked);
        post_errors += published.errors;
    }
    reconnector.abort();
    // Each room's acked messages, times the streams following that room.
    let expected: u64 = (0..params.streams).map(|n| acked[n % rooms]).sum();
    shared.progress.wait_for(expected, Duration::from_secs(10)).await;
    let usage = cpu.stop();
    shared.stop.cancel();
    let (mut totals, mut lost) = (Totals::default(), 0);
    for (n, task) in tasks.into_iter().enumerate() {
        let tracker = task.await?;
        lost += acked[n % rooms].saturating_sub(tracker.distinct);
        totals.add(&tracker);
    }
    let latency = shared.latencies.summary();
    let ended_by_server = shared.ended_by_server.load(std::sync::atomic::Ordering::Relaxed);
    let reconnects = shared.reconnects.load(std::sync::atomic::Ordering::Relaxed);
    server.stop().await?;

    let mut report = Report::new("mixed");
    report
        .param("streams", params.streams)
        .param("rooms", rooms)
        .param("rate_per_room", params.rate)
        .param("seconds", params.seconds)
        .param("reconnect_percent", params.reconnect_percent);
    report
        .checked("streams_failed", shared.failed(), Target::AtMost(0.0))
        .result("reconnects", reconnects)
        .result("acked", acked.iter().sum::<u64>())
        .checked("post_errors", post_errors, Target::AtMost(0.0))
        .result("delivered", shared.progress.delivered())
        .result("latency_p50_ms", latency.p50)
        .result("latency_p99_ms", latency.p99)
        .result("latency_max_ms", latency.max)
        .checked("lost", lost, Target::AtMost(0.0))
        .checked("duplicated", totals.duplicated, Target::AtMost(0.0))
        .checked("out_of_order", totals.out_of_order, Target::AtMost(0.0))
        .checked("resets", totals.resets, Target::AtMost(0.0))
        .checked("ended_by_server", ended_by_server, Target::AtMost(0.0))
        .result("server_cpu_pct", usage.server_pct.map(|p| round(p, 0)))
        .result("bench_cpu_pct", round(usage.bench_pct, 0));
    Ok(report)
}

/// Every second, tells `percent` % of the streams (picked at random) to reconnect.
async fn reconnect_some(notifies: Vec<Arc<Notify>>, percent: f64) {
    let per_second = ((notifies.len() as f64 * percent / 100.0).round() as usize).min(notifies.len());
    let mut rng = Rng::new(0x5eed_cafe);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tick.tick().await;
        for _ in 0..per_second {
            notifies[rng.below(notifies.len())].notify_one();
        }
    }
}
