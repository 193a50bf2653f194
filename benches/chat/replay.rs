//! Replay: one stream reconnecting 100,000 events behind. Time until it has caught up, events
//! per second, and the server's RSS meanwhile (sampled every 10 ms).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::client::{self, Endpoint};
use crate::publish::publish;
use crate::report::{Report, Target, round};
use crate::seed;
use crate::server::{Launcher, Server};
use crate::sse::Parser;
use crate::stats::{CpuWindow, RssSampler};

#[derive(Debug, Clone, Copy)]
pub struct Params {
    pub events: u64,
}

const ROOM: &str = "general";

pub async fn run(launcher: &Launcher, params: Params) -> anyhow::Result<Report> {
    eprintln!("replay: {params:?}");
    let (server, token, (after, last)) = prepare(launcher, params.events).await?;
    // Let start-up settle before the baseline.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = server.memory_kib().map(|(rss, _)| rss);
    let sampler = server.pid.map(|pid| RssSampler::start(pid, Duration::from_millis(10)));
    let cpu = CpuWindow::start(server.pid);
    let caught_up = catch_up(&server.endpoint, &token, after, last).await?;
    let usage = cpu.stop();
    let rss_peak = sampler.map(RssSampler::stop);
    server.stop().await?;

    let secs = caught_up.elapsed.as_secs_f64();
    let mib = |kib: u64| round(kib as f64 / 1024.0, 1);
    let growth = match (rss_before, rss_peak) {
        (Some(before), Some(peak)) => Some(mib(peak.saturating_sub(before))),
        _ => None,
    };
    let mut report = Report::new("replay");
    report.param("events", params.events);
    report
        .result("caught_up_ms", round(secs * 1000.0, 1))
        .result("first_event_ms", round(caught_up.first_event.as_secs_f64() * 1000.0, 1))
        .checked(
            "events_per_sec",
            round(caught_up.received as f64 / secs, 0),
            Target::AtLeast(250_000.0),
        )
        .checked(
            "missing",
            params.events.saturating_sub(caught_up.received),
            Target::AtMost(0.0),
        )
        .checked("out_of_order", caught_up.out_of_order, Target::AtMost(0.0))
        .result("server_rss_before_mib", rss_before.map(mib))
        .result("server_rss_peak_mib", rss_peak.map(mib))
        .checked("server_rss_growth_mib", growth, Target::AtMost(50.0))
        .result("server_cpu_pct", usage.server_pct.map(|p| round(p, 0)))
        .result("bench_cpu_pct", round(usage.bench_pct, 0));
    Ok(report)
}

/// A server whose log holds `events` messages in `general` after id `after`, up to id `last`,
/// and a token. A started server gets them straight into its database while stopped; a `--url`
/// server gets them posted, between two markers.
async fn prepare(launcher: &Launcher, events: u64) -> anyhow::Result<(Server, Arc<str>, (i64, i64))> {
    let server = launcher.start(&[]).await?;
    let token: Arc<str> = client::sign_in(&server.endpoint, "bench-0").await?.into();
    if launcher.is_external() {
        let tokens = client::sign_in_users(&server.endpoint, 8).await?;
        let mut poster = client::Poster::new(&server.endpoint, &token, ROOM).await?;
        let after = poster.post("replay starts after this").await?;
        publish(&server.endpoint, &tokens, ROOM, events.saturating_sub(1), 0.0, 64).await?;
        let last = poster.post("replay ends here").await?;
        return Ok((server, token, (after, last)));
    }
    let db = server.stop().await?.expect("a started server has a database");
    let started = Instant::now();
    let (first, last) = seed::messages(&db.path, ROOM, events).await?;
    eprintln!("  seeded {events} events in {:?}", started.elapsed());
    let (server, _) = launcher.start_on(db, &[]).await?;
    Ok((server, token, (first - 1, last)))
}

struct CaughtUp {
    elapsed: Duration,
    first_event: Duration,
    received: u64,
    out_of_order: u64,
}

/// Opens the room's stream with `?after=after` and reads until event `last` arrives.
async fn catch_up(endpoint: &Endpoint, token: &str, after: i64, last: i64) -> anyhow::Result<CaughtUp> {
    let done = CancellationToken::new();
    let mut parser = Parser::default();
    let (mut received, mut out_of_order, mut newest) = (0u64, 0u64, after);
    let mut first_event = None;
    let started = Instant::now();
    let path = format!("/api/rooms/{ROOM}/events?after={after}");
    let on_chunk = |chunk: &[u8]| {
        parser.feed(chunk, |event| {
            let Some(id) = event.id else { return };
            if event.event == b"message" && id <= last {
                received += 1;
                first_event.get_or_insert_with(|| started.elapsed());
            }
            if id <= newest {
                out_of_order += 1;
            }
            newest = newest.max(id);
        });
        if newest >= last {
            done.cancel();
        }
    };
    let ended = tokio::time::timeout(
        Duration::from_secs(300),
        client::follow(endpoint, &path, token, None, done.cancelled(), || {}, on_chunk),
    )
    .await??;
    let elapsed = started.elapsed();
    anyhow::ensure!(
        newest >= last,
        "the stream ended ({ended:?}) at id {newest}, before {last}"
    );
    Ok(CaughtUp {
        elapsed,
        first_event: first_event.unwrap_or_default(),
        received,
        out_of_order,
    })
}
