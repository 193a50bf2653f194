//! Idle footprint: N open streams on which nothing happens. The server's RSS per stream.

use std::sync::Arc;
use std::time::Duration;

use crate::report::{Report, Target, round};
use crate::server::Launcher;
use crate::stats::CpuWindow;
use crate::streams::{self, Shared, Spec};

#[derive(Debug, Clone, Copy)]
pub struct Params {
    pub streams: usize,
    pub users: usize,
}

pub async fn run(launcher: &Launcher, params: Params) -> anyhow::Result<Report> {
    eprintln!("idle: {params:?}");
    let (server, tokens) = launcher.start_with_users(params.users).await?;
    let endpoint = &server.endpoint;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = server.memory_kib();

    let shared = Shared::new();
    let path: Arc<str> = "/api/rooms/general/events".into();
    let tasks: Vec<_> = (0..params.streams)
        .map(|n| {
            let spec = Spec {
                endpoint: Arc::clone(endpoint),
                path: Arc::clone(&path),
                token: Arc::clone(&tokens[n % tokens.len()]),
                messages: 0,
            };
            streams::spawn_idle(spec, Arc::clone(&shared))
        })
        .collect();
    let opened = shared.wait_open(params.streams, Duration::from_secs(120)).await;
    eprintln!("  {opened} streams open; idling");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu = CpuWindow::start(server.pid);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let usage = cpu.stop();
    let after = server.memory_kib();
    let open_streams = server.metric("chat_open_streams").await;
    shared.stop.cancel();
    for task in tasks {
        task.await?;
    }
    server.stop().await?;

    let per_stream = match (before, after) {
        (Some((rss0, _)), Some((rss1, _))) if opened > 0 => {
            Some(round(rss1.saturating_sub(rss0) as f64 / opened as f64, 2))
        }
        _ => None,
    };
    let mib = |kib: u64| round(kib as f64 / 1024.0, 1);
    let mut report = Report::new("idle");
    report.param("streams", params.streams);
    report
        .checked("streams_failed", shared.failed(), Target::AtMost(0.0))
        .result("open_streams_metric", open_streams)
        .result("server_rss_before_mib", before.map(|(rss, _)| mib(rss)))
        .result("server_rss_open_mib", after.map(|(rss, _)| mib(rss)))
        .checked("rss_per_stream_kib", per_stream, Target::AtMost(8.0))
        .result("server_peak_rss_mib", after.map(|(_, hwm)| mib(hwm)))
        .result("idle_server_cpu_pct", usage.server_pct.map(|p| round(p, 1)));
    Ok(report)
}
