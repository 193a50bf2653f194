//! Cold start: time from launching the server to a `200` from `/healthz` (polled every 2 ms)
//! on a database holding 1,000,000 events. The file is fresh from the page cache, so this is
//! the server's own start-up work, not the disk's.

use std::time::{Duration, Instant};

use crate::report::{Report, Target, round};
use crate::seed;
use crate::server::Launcher;

#[derive(Debug, Clone, Copy)]
pub struct Params {
    pub events: u64,
    pub runs: usize,
}

pub async fn run(launcher: &Launcher, params: Params) -> anyhow::Result<Report> {
    eprintln!("cold-start: {params:?}");
    anyhow::ensure!(
        !launcher.is_external(),
        "cold-start starts its own server: it cannot use --url"
    );
    // A first start makes the schema.
    let server = launcher.start(&[]).await?;
    let mut db = server.stop().await?.expect("a started server has a database");
    let started = Instant::now();
    seed::messages(&db.path, "general", params.events).await?;
    eprintln!("  seeded {} events in {:?}", params.events, started.elapsed());
    let file_mib = std::fs::metadata(&db.path)?.len() as f64 / (1024.0 * 1024.0);

    let mut times = Vec::with_capacity(params.runs);
    for _ in 0..params.runs.max(1) {
        let (server, healthy) = launcher.start_on(db, &[]).await?;
        times.push(healthy);
        db = server.stop().await?.expect("a started server has a database");
    }
    let ms = |d: Duration| round(d.as_secs_f64() * 1000.0, 1);
    let mut sorted = times.clone();
    sorted.sort();
    let mut report = Report::new("cold-start");
    report.param("events", params.events).param("runs", times.len());
    report
        .result("db_file_mib", round(file_mib, 1))
        .checked("healthy_median_ms", ms(sorted[sorted.len() / 2]), Target::AtMost(300.0))
        .result("healthy_min_ms", ms(sorted[0]))
        .result("healthy_max_ms", ms(sorted[sorted.len() - 1]))
        .result("runs_ms", times.iter().map(|&d| ms(d)).collect::<Vec<_>>())
        .note("the database file was just written: it is in the page cache");
    Ok(report)
}
