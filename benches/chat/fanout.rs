//! Fan-out: N streams in one room, M stamped messages at rate R. Publish-to-receive latency,
//! deliveries per second, and lost / duplicated / out-of-order messages (all must be 0).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::client;
use crate::publish::publish;
use crate::report::{Report, Target, round};
use crate::server::Launcher;
use crate::stats::{CpuWindow, Totals};
use crate::streams::{self, Shared, Spec};

#[derive(Debug, Clone, Copy)]
pub struct Params {
    pub streams: usize,
    /// Messages per second, all publishers together; 0 is as fast as possible.
    pub rate: f64,
    pub messages: u64,
    pub publishers: usize,
    pub users: usize,
}

const ROOM: &str = "fanout";

pub async fn run(launcher: &Launcher, params: Params) -> anyhow::Result<Report> {
    eprintln!("fanout: {params:?}");
    let (server, tokens) = launcher.start_with_users(params.users).await?;
    let endpoint = &server.endpoint;
    client::create_room(endpoint, &tokens[0], ROOM).await?;

    let shared = Shared::new();
    let path: Arc<str> = format!("/api/rooms/{ROOM}/events").into();
    let tasks: Vec<_> = (0..params.streams)
        .map(|n| {
            let spec = Spec {
                endpoint: Arc::clone(endpoint),
                path: Arc::clone(&path),
                token: Arc::clone(&tokens[n % tokens.len()]),
                messages: params.messages,
            };
            streams::spawn_tracked(spec, Arc::clone(&shared), None)
        })
        .collect();
    let opened = shared.wait_open(params.streams, Duration::from_secs(120)).await;
    eprintln!("  {opened} streams open; publishing");
    // The streams' own presence changes go out first.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let cpu = CpuWindow::start(server.pid);
    let published = publish(endpoint, &tokens, ROOM, params.messages, params.rate, params.publishers).await?;
    let expected = published.acked * opened as u64;
    shared.progress.wait_for(expected, Duration::from_secs(10)).await;
    let usage = cpu.stop();
    shared.stop.cancel();
    let mut totals = Totals::default();
    for task in tasks {
        totals.add(&task.await?);
    }

    let delivered = shared.progress.delivered();
    let span_ns = shared
        .progress
        .last_delivery_ns
        .load(Ordering::Relaxed)
        .saturating_sub(published.first_send_ns);
    let deliveries_per_sec = delivered as f64 / (span_ns as f64 / 1e9).max(1e-9);
    let latency = shared.latencies.summary();
    let lag_recoveries = server.metric("chat_lag_recoveries_total").await;
    let peak_rss = server.memory_kib().map(|(_, hwm)| round(hwm as f64 / 1024.0, 1));
    server.stop().await?;

    let mut report = Report::new("fanout");
    report
        .param("streams", params.streams)
        .param("rate", params.rate)
        .param("messages", params.messages)
        .param("publishers", params.publishers);
    report
        .checked("streams_failed", shared.failed(), Target::AtMost(0.0))
        .result("acked", published.acked)
        .checked("post_errors", published.errors, Target::AtMost(0.0))
        .result(
            "publish_rate",
            round(published.acked as f64 / published.elapsed.as_secs_f64(), 1),
        )
        .result("delivered", delivered);
    if params.rate > 0.0 {
        report.checked("latency_p99_ms", latency.p99, Target::AtMost(100.0));
    } else {
        report.result("latency_p99_ms", latency.p99);
    }
    report
        .result("latency_p50_ms", latency.p50)
        .result("latency_max_ms", latency.max);
    if params.rate > 0.0 {
        report.result("deliveries_per_sec", round(deliveries_per_sec, 0));
    } else {
        report.checked(
            "deliveries_per_sec",
            round(deliveries_per_sec, 0),
            Target::AtLeast(200_000.0),
        );
    }
    report
        .checked("lost", expected.saturating_sub(totals.distinct), Target::AtMost(0.0))
        .checked("duplicated", totals.duplicated, Target::AtMost(0.0))
        .checked("out_of_order", totals.out_of_order, Target::AtMost(0.0))
        .checked("resets", totals.resets, Target::AtMost(0.0))
        .result("lag_recoveries", lag_recoveries)
        .result("server_cpu_pct", usage.server_pct.map(|p| round(p, 0)))
        .result("bench_cpu_pct", round(usage.bench_pct, 0))
        .result("server_peak_rss_mib", peak_rss);
    Ok(report)
}
