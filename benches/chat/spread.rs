//! Spread: many users, each on their own stream of everything they may see (`/api/events`),
//! with messages posted into rooms picked at random. Every room is public, so every stream
//! carries every room's messages: an event costs a send to each user's feed. Latency, and every
//! stream must see every message exactly once, in order.
//!
//! With `--private`, every room is private and every user a member of each: the same messages
//! reach the same streams, through the access checks (the writer's check of each post's
//! author, the hub's routing to a room's members) instead of the public path.

use std::sync::Arc;
use std::time::Duration;

use crate::client::{self, Poster};
use crate::publish::publish_spread;
use crate::report::{Report, Target, round};
use crate::server::Launcher;
use crate::stats::{CpuWindow, Totals};
use crate::streams::{self, Shared, Spec};

#[derive(Debug, Clone, Copy)]
pub struct Params {
    /// Users, each with one stream.
    pub users: usize,
    pub rooms: usize,
    /// Messages per second, all rooms together.
    pub rate: f64,
    pub seconds: f64,
    pub publishers: usize,
    /// Every room private, with every user a member.
    pub private: bool,
}

pub async fn run(launcher: &Launcher, params: Params) -> anyhow::Result<Report> {
    eprintln!("spread: {params:?}");
    let (server, tokens) = launcher.start_with_users(params.users).await?;
    let endpoint = &server.endpoint;
    let rooms: Vec<String> = (0..params.rooms.max(1)).map(|room| format!("spread-{room}")).collect();
    for room in &rooms {
        if params.private {
            client::create_private_room(endpoint, &tokens[0], room).await?;
            client::add_members(endpoint, &tokens[0], room, 1..tokens.len()).await?;
        } else {
            client::create_room(endpoint, &tokens[0], room).await?;
        }
    }
    // Streams start after a marker message, as a page rendered at that id would.
    let marker = Poster::new(endpoint, &tokens[0], &rooms[0])
        .await?
        .post("start")
        .await?;
    let path: Arc<str> = format!("/api/events?after={marker}").into();

    let messages = (params.rate * params.seconds).round() as u64;
    let shared = Shared::new();
    let tasks: Vec<_> = tokens
        .iter()
        .map(|token| {
            let spec = Spec {
                endpoint: Arc::clone(endpoint),
                path: Arc::clone(&path),
                token: Arc::clone(token),
                messages,
            };
            streams::spawn_tracked(spec, Arc::clone(&shared), None)
        })
        .collect();
    let opened = shared.wait_open(tokens.len(), Duration::from_secs(120)).await;
    eprintln!("  {opened} streams open; posting for {} s", params.seconds);
    // Every user coming online is a status change every stream carries: let that settle.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let cpu = CpuWindow::start(server.pid);
    let published = publish_spread(endpoint, &tokens, &rooms, messages, params.rate, params.publishers).await?;
    let expected = published.acked * opened as u64;
    shared.progress.wait_for(expected, Duration::from_secs(10)).await;
    let usage = cpu.stop();
    let memory = server.memory_kib();
    shared.stop.cancel();
    let (mut totals, mut lost) = (Totals::default(), 0);
    for task in tasks {
        let tracker = task.await?;
        lost += published.acked.saturating_sub(tracker.distinct);
        totals.add(&tracker);
    }
    let latency = shared.latencies.summary();
    let elapsed = published.elapsed.as_secs_f64().max(f64::EPSILON);
    server.stop().await?;

    let mut report = Report::new(if params.private { "spread-private" } else { "spread" });
    report
        .param("users", params.users)
        .param("streams", opened)
        .param("rooms", rooms.len())
        .param("rate", params.rate)
        .param("seconds", params.seconds);
    report
        .checked("streams_failed", shared.failed(), Target::AtMost(0.0))
        .result("acked", published.acked)
        .checked("post_errors", published.errors, Target::AtMost(0.0))
        .result("delivered", shared.progress.delivered())
        .result(
            "deliveries_per_s",
            round(shared.progress.delivered() as f64 / elapsed, 0),
        )
        .result("latency_p50_ms", latency.p50)
        .checked("latency_p99_ms", latency.p99, Target::AtMost(100.0))
        .result("latency_max_ms", latency.max)
        .checked("lost", lost, Target::AtMost(0.0))
        .checked("duplicated", totals.duplicated, Target::AtMost(0.0))
        .checked("out_of_order", totals.out_of_order, Target::AtMost(0.0))
        .checked("resets", totals.resets, Target::AtMost(0.0))
        .result("server_rss_mib", memory.map(|(rss, _)| round(rss as f64 / 1024.0, 1)))
        .result("server_cpu_pct", usage.server_pct.map(|p| round(p, 0)))
        .result("bench_cpu_pct", round(usage.bench_pct, 0));
    Ok(report)
}
