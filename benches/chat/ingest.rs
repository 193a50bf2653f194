//! Ingest: C posters, each on its own connection, posting as fast as acknowledgements come back
//! for S seconds. Acknowledged messages per second and ack latency. With `--markdown`, every
//! message is a Markdown-heavy text (`text::markdown`, 200 to 400 characters, an `@mention` of
//! one of the run's accounts) instead of a short plain one: the server renders each post.

use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::time::Instant;

use crate::client::{self, Poster};
use crate::report::{Report, Target, round};
use crate::server::Launcher;
use crate::stats::{CpuWindow, Latencies, Rng, new_histogram};
use crate::text;

#[derive(Debug, Clone, Copy)]
pub struct Params {
    pub posters: usize,
    pub seconds: f64,
    /// `full` or `normal`; `None` for a `--url` server, whose setting is its own.
    pub sync: Option<&'static str>,
    pub users: usize,
    /// Markdown-heavy texts instead of plain ones.
    pub markdown: bool,
    /// Whom a Markdown-heavy text mentions.
    pub mentions: Mentions,
}

/// What the `@name` of a Markdown-heavy text names (`--mentions`): the split of what a
/// mention costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mentions {
    /// One of the run's accounts: looked up, and stored with the message.
    Account,
    /// `@nobody-N`, no account: looked up, nothing stored.
    Unknown,
    /// The name without its `@`: not a mention, nothing looked up.
    None,
}

pub async fn run(launcher: &Launcher, params: Params) -> anyhow::Result<Report> {
    eprintln!("ingest: {params:?}");
    let args: Vec<&str> = params.sync.map(|sync| vec!["--sync", sync]).unwrap_or_default();
    let server = launcher.start(&args).await?;
    let endpoint = &server.endpoint;
    let tokens = client::sign_in_users(endpoint, params.users).await?;
    let mut posters = Vec::new();
    for n in 0..params.posters {
        posters.push(Poster::new(endpoint, &tokens[n % tokens.len()], "general").await?);
    }
    let batches_before = batch_totals(&server).await;

    let cpu = CpuWindow::start(server.pid);
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(params.seconds);
    let tasks: Vec<_> = posters
        .into_iter()
        .enumerate()
        .map(|(n, poster)| tokio::spawn(run_poster(poster, n, deadline, params)))
        .collect();
    let latencies = Latencies::new();
    let (mut acked, mut errors, mut chars) = (0, 0, 0);
    for task in tasks {
        let outcome = task.await?;
        acked += outcome.acked;
        errors += outcome.errors;
        chars += outcome.chars;
        latencies.add(&outcome.latencies);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let usage = cpu.stop();
    let batches_after = batch_totals(&server).await;
    server.stop().await?;

    let latency = latencies.summary();
    let per_sec = acked as f64 / elapsed;
    let batch_mean = match (batches_before, batches_after) {
        (Some((sum0, count0)), Some((sum1, count1))) if count1 > count0 => {
            Some(round((sum1 - sum0) / (count1 - count0), 1))
        }
        _ => None,
    };
    let mut report = Report::new(if params.markdown { "ingest-markdown" } else { "ingest" });
    report
        .param("sync", params.sync.unwrap_or("server's own"))
        .param("posters", params.posters)
        .param("seconds", params.seconds)
        .param("content", if params.markdown { "markdown" } else { "plain" });
    if params.markdown {
        report.param("mentions", format!("{:?}", params.mentions).to_lowercase());
    }
    match params.sync {
        Some("normal") => report.checked("acked_per_sec", round(per_sec, 0), Target::AtLeast(25_000.0)),
        _ => report.checked("acked_per_sec", round(per_sec, 0), Target::AtLeast(10_000.0)),
    };
    match params.sync {
        Some("full") => report.checked("ack_p99_ms", latency.p99, Target::AtMost(50.0)),
        _ => report.result("ack_p99_ms", latency.p99),
    };
    report
        .result("ack_p50_ms", latency.p50)
        .result("ack_max_ms", latency.max)
        .result("acked", acked)
        .result("mean_chars", round(chars as f64 / (acked + errors).max(1) as f64, 0))
        .checked("errors", errors, Target::AtMost(0.0))
        .result("mean_write_batch", batch_mean)
        .result("server_cpu_pct", usage.server_pct.map(|p| round(p, 0)))
        .result("bench_cpu_pct", round(usage.bench_pct, 0));
    Ok(report)
}

struct PosterOutcome {
    acked: u64,
    errors: u64,
    /// Characters of every text sent.
    chars: u64,
    latencies: Histogram<u64>,
}

async fn run_poster(mut poster: Poster, n: usize, deadline: Instant, params: Params) -> PosterOutcome {
    let mut outcome = PosterOutcome {
        acked: 0,
        errors: 0,
        chars: 0,
        latencies: new_histogram(),
    };
    let mut rng = Rng::new(0x001d_6e57 + n as u64);
    let mut seq = 0u64;
    while Instant::now() < deadline {
        let content = if params.markdown {
            // By default one of the run's accounts, so each post looks one up as a real one would.
            let n = rng.below(params.users.max(1));
            let mention = match params.mentions {
                Mentions::Account => format!("@bench-{n}"),
                Mentions::Unknown => format!("@nobody-{n}"),
                Mentions::None => format!("bench-{n}"),
            };
            text::markdown(&mut rng, &mention, &format!("ingest {n} {seq}"))
        } else {
            format!("ingest {n} {seq}")
        };
        outcome.chars += content.chars().count() as u64;
        let sent = Instant::now();
        match poster.post(&content).await {
            Ok(_) => {
                outcome.acked += 1;
                outcome
                    .latencies
                    .saturating_record(sent.elapsed().as_micros().max(1) as u64);
            }
            Err(error) => {
                if outcome.errors == 0 {
                    eprintln!("  a post failed: {error:#}");
                }
                outcome.errors += 1;
            }
        }
        seq += 1;
    }
    outcome
}

/// The writer's batch-size histogram: (sum, count).
pub async fn batch_totals(server: &crate::server::Server) -> Option<(f64, f64)> {
    Some((
        server.metric("chat_write_batch_size_sum").await?,
        server.metric("chat_write_batch_size_count").await?,
    ))
}
