//! Load benchmark for `chat-server`: starts the release server on a fresh temporary database
//! (or targets a running one with `--url`), drives it over HTTP/1.1 and SSE, and prints a table
//! and one JSON line per scenario, with the server's CPU time and RSS from `/proc`.
//!
//! ```sh
//! cargo build --release                          # the server under test: target/release/chat-server
//! cargo bench --bench chat -- all                # every scenario at full size (several minutes)
//! cargo bench --bench chat -- all --quick        # every scenario, smaller (about a minute)
//! cargo bench --bench chat -- fanout --streams 10000 --rate 10 --messages 300
//! cargo bench --bench chat -- ingest --sync normal --posters 64 --seconds 10
//! cargo bench --bench chat -- mixed --url http://127.0.0.1:8080 --pid 1234
//! cargo bench --bench chat -- all 2>/dev/null | grep '^{'    # the JSON lines only
//! ```
//!
//! Scenarios (targets are for a 2-core machine running server and generator together):
//!
//! - `fanout`: N streams in one room, M messages at R per second, each carrying its sequence
//!   number and send time (`"<seq> <nanos>"`, one clock in this process). Publish-to-receive
//!   latency, deliveries per second, and lost / duplicated / out-of-order messages. By default
//!   two runs: 10,000 streams at 10 msg/s (p99 <= 100 ms, nothing lost) and 1,000 streams as
//!   fast as possible (>= 200,000 deliveries/s).
//! - `ingest`: 64 posters as fast as acks come back, at `--sync full` (>= 10,000 acked/s, p99 <=
//!   50 ms) and `--sync normal` (>= 25,000/s). `--markdown`: every message a Markdown-heavy text
//!   of 200 to 400 characters with an `@mention` (reported as `ingest-markdown`); `--mentions
//!   unknown|none` names no account, or drops the `@`.
//! - `replay`: a stream opened 100,000 events behind: time to catch up (>= 250,000 events/s)
//!   and the server's RSS growth meanwhile (<= 50 MiB, sampled every 10 ms).
//! - `idle`: 10,000 open idle streams: server RSS per stream (<= 8 KiB).
//! - `cold-start`: launch to a healthy `/healthz` on a database of 1,000,000 events (<= 300 ms).
//! - `mixed`: 2,000 streams over 20 rooms, a poster in every room, 1% of the streams reconnecting
//!   each second with `Last-Event-ID`: latency, and nothing lost, repeated or reordered.
//! - `spread`: 2,000 users (`--streams`), each on their own `/api/events`, and 50 messages a
//!   second (`--rate`) posted into 200 rooms (`--rooms`) at random: every stream carries every
//!   room, so each event is sent to every user's feed. Latency (p99 <= 100 ms), and nothing lost,
//!   repeated or reordered. `--private`: the same over 20 private rooms with every user a
//!   member, through the access checks.
//! - `changes`: 2,000 messages (`--messages`) seeded in 4 rooms, 500 streams (`--streams`) on
//!   `/api/events`, each its own user, then 32 clients (`--clients`), each its own user, for 20 s
//!   as fast as acks come back (or `--rate` changes a second in all): reactions added and taken
//!   back on any seeded message, edits of their own messages and new posts (`--mix`, percent,
//!   default `50,30,20`). Acked changes per second and ack latency by kind; every acked change
//!   must reach every stream exactly once, in order; publish-to-receive latency by kind.
//! - `reads`: 2,000 users (`--streams`), each on their own `/api/events` and a member of 5
//!   (`--rooms-per-user`) of 50 private rooms (`--rooms`), after a backlog of 50,000 messages
//!   (`--messages`); 100 messages a second (`--rate`) into the rooms at random, for 20 s
//!   (`--seconds`) with nobody reading, then 20 s with each user marking the room they look at
//!   read as the page does (at most once a second, when something new arrived): up to 1,900
//!   `PUT .../read` a second. Read acks per second and their latency, publish-to-receive latency
//!   in each window (p99 <= 100 ms with the reads), and `GET /api/rooms` with counts for a user in
//!   all 50 rooms who keeps up (ten times a second) and one with the backlog unread (once a
//!   second). Every message must reach every
//!   member's stream exactly once, in order, and every acknowledged read its reader's stream
//!   exactly once and nobody else's.
//! - `search`: 1,000,000 messages (`--events`) of Zipf-distributed words written into the
//!   database of a stopped server over 20 rooms (`--rooms`, a fifth public), eight authors and a
//!   year, the full-text index filled, then 8 clients (`--clients`) searching as fast as answers
//!   come back for 20 s, as a member of every room and as one who can read a quarter of them:
//!   common, rare and rarest words, two words, a phrase, a prefix, by room, by author, by date,
//!   and a word said only in a room the second cannot read. p50/p99/max by query and reader
//!   (p99 <= 20 ms for each), searches per second, the server's CPU and RSS. Needs a server with
//!   search (migration 0010).
//!
//! Every started server gets `CHAT_RATE_LIMITS=off --message-rate 0 --signin-rate 0
//! --max-streams 0 --max-streams-per-user 0` (a `--url` server should run with them too) and is stopped with
//! SIGTERM. The server binary is `--server-bin`, else `chat-server` beside this bench's own
//! executable (`target/release/`), else under `$CARGO_TARGET_DIR`; this bench builds nothing.
//!
//! The generator keeps itself cheap so the figures describe the server: raw hyper HTTP/1.1
//! connections (one per stream), its own allocation-light SSE parser, `RLIMIT_NOFILE` raised to
//! the hard limit, and connections spread over 127.0.0.1..=127.0.0.N source addresses
//! (`--source-addrs`). Its own CPU use is reported beside the server's (100 = one core).

mod changes;
mod client;
mod cold_start;
mod fanout;
mod idle;
mod ingest;
mod mixed;
mod publish;
mod reads;
mod replay;
mod report;
mod search;
mod seed;
mod server;
mod spread;
mod sse;
mod stats;
mod streams;
mod text;
mod words;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};

use crate::report::Report;
use crate::server::Launcher;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    All,
    Fanout,
    Ingest,
    Replay,
    Idle,
    ColdStart,
    Mixed,
    Spread,
    Changes,
    Reads,
    Search,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Sync {
    Full,
    Normal,
}

/// Load benchmark for chat-server (see the doc comment of benches/chat/main.rs).
#[derive(Debug, Parser)]
#[command(name = "chat-bench")]
struct Args {
    /// Which scenario to run.
    #[arg(value_enum, default_value = "all")]
    scenario: Scenario,
    /// Smaller sizes throughout: a quick check that everything works.
    #[arg(long)]
    quick: bool,
    /// fanout, idle, mixed: open event streams; spread, reads: users, each with one stream.
    #[arg(long)]
    streams: Option<usize>,
    /// fanout: messages per second (0: as fast as possible); mixed: per room; spread, reads: in all;
    /// changes: changes per second in all (0: as fast as acks come back).
    #[arg(long)]
    rate: Option<f64>,
    /// fanout: messages to publish; changes: messages seeded; reads: messages posted before the
    /// streams open.
    #[arg(long)]
    messages: Option<u64>,
    /// fanout, spread, reads: concurrent publishers.
    #[arg(long)]
    publishers: Option<usize>,
    /// ingest: concurrent posters.
    #[arg(long)]
    posters: Option<usize>,
    /// ingest, mixed, spread, changes, search: how long to post (reads: each window; search: to
    /// search).
    #[arg(long)]
    seconds: Option<f64>,
    /// ingest: only this `--sync` setting (default: both).
    #[arg(long, value_enum)]
    sync: Option<Sync>,
    /// ingest: Markdown-heavy messages (emphasis, code, links, a list or quote, a mention)
    /// instead of short plain ones.
    #[arg(long)]
    markdown: bool,
    /// ingest --markdown: what each text's `@name` names: one of the run's accounts, no
    /// account (looked up, nothing stored), or nothing (no `@`, no look-up).
    #[arg(long, value_enum, default_value = "account")]
    mentions: ingest::Mentions,
    /// changes: clients making changes, each its own user; search: clients searching.
    #[arg(long)]
    clients: Option<usize>,
    /// changes: percentages of reactions, edits and posts, adding up to 100.
    #[arg(long, value_parser = parse_mix, default_value = "50,30,20")]
    mix: [u32; 3],
    /// replay, cold-start: events in the database; search: messages in it.
    #[arg(long)]
    events: Option<u64>,
    /// cold-start: launches to time.
    #[arg(long)]
    runs: Option<usize>,
    /// mixed, spread, changes, reads, search: rooms.
    #[arg(long)]
    rooms: Option<usize>,
    /// reads: rooms each user is a member of.
    #[arg(long)]
    rooms_per_user: Option<usize>,
    /// spread: every room private, with every user a member of each (default 20 rooms).
    #[arg(long)]
    private: bool,
    /// mixed: percentage of streams reconnecting each second.
    #[arg(long)]
    reconnect_percent: Option<f64>,
    /// Accounts the streams and posters share (the per-user limits are off).
    #[arg(long, default_value_t = 8)]
    users: usize,
    /// Target a running server instead of starting one (`http://HOST:PORT`).
    #[arg(long)]
    url: Option<String>,
    /// With `--url`: the server's pid, for CPU and RSS figures.
    #[arg(long, requires = "url")]
    pid: Option<u32>,
    /// The server binary (default: target/release/chat-server).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// More flags for started servers, e.g. `--server-arg=--hub-capacity=4096`.
    #[arg(long, allow_hyphen_values = true)]
    server_arg: Vec<String>,
    /// `RUST_LOG` for started servers.
    #[arg(long, default_value = "warn")]
    server_log: String,
    /// Spread client connections over 127.0.0.1..=127.0.0.N (loopback servers only; 0: off).
    #[arg(long, default_value_t = 20)]
    source_addrs: u8,
    /// Worker threads of the generator's runtime.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    sse::self_check();
    text::self_check();
    words::self_check();
    raise_open_files_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run(args))
}

async fn run(args: Args) -> ExitCode {
    let external = args.url.clone().map(|url| (url, args.pid));
    let launcher = match Launcher::new(
        args.server_bin.clone(),
        args.server_log.clone(),
        args.server_arg.clone(),
        external,
        args.source_addrs,
    ) {
        Ok(launcher) => launcher,
        Err(error) => {
            eprintln!("chat-bench: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let mut errors = 0;
    let mut reports: Vec<Report> = Vec::new();
    for plan in plans(&args) {
        match plan.run(&launcher).await {
            Ok(report) => {
                report.print();
                reports.push(report);
            }
            Err(error) => {
                eprintln!("chat-bench: {} failed: {error:#}", plan.name());
                errors += 1;
            }
        }
    }
    let passed = reports.iter().filter(|r| r.passed()).count();
    println!(
        "\n{passed} of {} runs met their targets; {errors} could not run",
        reports.len()
    );
    if errors > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// One run of one scenario with its parameters.
enum Plan {
    Fanout(fanout::Params),
    Ingest(ingest::Params),
    Replay(replay::Params),
    Idle(idle::Params),
    ColdStart(cold_start::Params),
    Mixed(mixed::Params),
    Spread(spread::Params),
    Changes(changes::Params),
    Reads(reads::Params),
    Search(search::Params),
}

impl Plan {
    fn name(&self) -> &'static str {
        match self {
            Self::Fanout(_) => "fanout",
            Self::Ingest(_) => "ingest",
            Self::Replay(_) => "replay",
            Self::Idle(_) => "idle",
            Self::ColdStart(_) => "cold-start",
            Self::Mixed(_) => "mixed",
            Self::Spread(_) => "spread",
            Self::Changes(_) => "changes",
            Self::Reads(_) => "reads",
            Self::Search(_) => "search",
        }
    }

    async fn run(&self, launcher: &Launcher) -> anyhow::Result<Report> {
        match *self {
            Self::Fanout(params) => fanout::run(launcher, params).await,
            Self::Ingest(params) => ingest::run(launcher, params).await,
            Self::Replay(params) => replay::run(launcher, params).await,
            Self::Idle(params) => idle::run(launcher, params).await,
            Self::ColdStart(params) => cold_start::run(launcher, params).await,
            Self::Mixed(params) => mixed::run(launcher, params).await,
            Self::Spread(params) => spread::run(launcher, params).await,
            Self::Changes(params) => changes::run(launcher, params).await,
            Self::Reads(params) => reads::run(launcher, params).await,
            Self::Search(params) => search::run(launcher, params).await,
        }
    }
}

/// The runs `args` ask for: each scenario's full-size (or `--quick`) defaults, overridden by
/// the options given.
fn plans(args: &Args) -> Vec<Plan> {
    let wanted = |scenario| args.scenario == Scenario::All || args.scenario == scenario;
    let quick = args.quick;
    let mut plans = Vec::new();
    if wanted(Scenario::Fanout) {
        plans.extend(fanout_plans(args).into_iter().map(Plan::Fanout));
    }
    if wanted(Scenario::Ingest) {
        let syncs: Vec<Option<&'static str>> = match (&args.url, args.sync) {
            (Some(_), _) => vec![None],
            (None, Some(Sync::Full)) => vec![Some("full")],
            (None, Some(Sync::Normal)) => vec![Some("normal")],
            (None, None) => vec![Some("full"), Some("normal")],
        };
        plans.extend(syncs.into_iter().map(|sync| {
            Plan::Ingest(ingest::Params {
                posters: args.posters.unwrap_or(64),
                seconds: args.seconds.unwrap_or(if quick { 3.0 } else { 10.0 }),
                sync,
                users: args.users,
                markdown: args.markdown,
                mentions: args.mentions,
            })
        }));
    }
    if wanted(Scenario::Replay) {
        plans.push(Plan::Replay(replay::Params {
            events: args.events.unwrap_or(if quick { 20_000 } else { 100_000 }),
        }));
    }
    if wanted(Scenario::Idle) {
        plans.push(Plan::Idle(idle::Params {
            streams: args.streams.unwrap_or(if quick { 1_000 } else { 10_000 }),
            users: args.users,
        }));
    }
    if wanted(Scenario::ColdStart) && args.url.is_some() {
        eprintln!("cold-start skipped: it starts its own server, so it cannot use --url");
    } else if wanted(Scenario::ColdStart) {
        plans.push(Plan::ColdStart(cold_start::Params {
            events: args.events.unwrap_or(if quick { 100_000 } else { 1_000_000 }),
            runs: args.runs.unwrap_or(if quick { 3 } else { 5 }),
        }));
    }
    if wanted(Scenario::Mixed) {
        plans.push(Plan::Mixed(mixed::Params {
            streams: args.streams.unwrap_or(if quick { 400 } else { 2_000 }),
            rooms: args.rooms.unwrap_or(20),
            rate: args.rate.unwrap_or(10.0),
            seconds: args.seconds.unwrap_or(if quick { 10.0 } else { 30.0 }),
            reconnect_percent: args.reconnect_percent.unwrap_or(1.0),
            users: args.users,
        }));
    }
    if wanted(Scenario::Spread) {
        plans.push(Plan::Spread(spread::Params {
            users: args.streams.unwrap_or(if quick { 200 } else { 2_000 }),
            rooms: args.rooms.unwrap_or(match (args.private, quick) {
                (true, _) => 20,
                (false, true) => 40,
                (false, false) => 200,
            }),
            rate: args.rate.unwrap_or(if quick { 20.0 } else { 50.0 }),
            seconds: args.seconds.unwrap_or(if quick { 5.0 } else { 20.0 }),
            publishers: args.publishers.unwrap_or(8),
            private: args.private,
        }));
    }
    if wanted(Scenario::Changes) {
        plans.push(Plan::Changes(changes::Params {
            messages: args.messages.unwrap_or(if quick { 400 } else { 2_000 }),
            rooms: args.rooms.unwrap_or(4),
            streams: args.streams.unwrap_or(if quick { 100 } else { 500 }),
            clients: args.clients.unwrap_or(if quick { 8 } else { 32 }),
            seconds: args.seconds.unwrap_or(if quick { 5.0 } else { 20.0 }),
            rate: args.rate.unwrap_or(0.0),
            mix: args.mix,
        }));
    }
    if wanted(Scenario::Reads) {
        plans.push(Plan::Reads(reads::Params {
            users: args.streams.unwrap_or(if quick { 200 } else { 2_000 }),
            rooms: args.rooms.unwrap_or(if quick { 20 } else { 50 }),
            rooms_per_user: args.rooms_per_user.unwrap_or(5),
            rate: args.rate.unwrap_or(if quick { 40.0 } else { 100.0 }),
            seconds: args.seconds.unwrap_or(if quick { 5.0 } else { 20.0 }),
            publishers: args.publishers.unwrap_or(8),
            backlog: args.messages.unwrap_or(if quick { 5_000 } else { 50_000 }),
        }));
    }
    if wanted(Scenario::Search) && args.url.is_some() {
        eprintln!("search skipped: it writes its history into the database directly, so it cannot use --url");
    } else if wanted(Scenario::Search) {
        plans.push(Plan::Search(search::Params {
            events: args.events.unwrap_or(if quick { 100_000 } else { 1_000_000 }),
            rooms: args.rooms.unwrap_or(20),
            clients: args.clients.unwrap_or(8),
            seconds: args.seconds.unwrap_or(if quick { 5.0 } else { 20.0 }),
        }));
    }
    plans
}

/// `--mix`: three percentages adding up to 100.
fn parse_mix(raw: &str) -> Result<[u32; 3], String> {
    let parts: Vec<u32> = raw
        .split(',')
        .map(|part| part.trim().parse::<u32>())
        .collect::<Result<_, _>>()
        .map_err(|error| format!("{raw:?}: {error}"))?;
    match parts[..] {
        [reactions, edits, posts] if reactions + edits + posts == 100 => Ok([reactions, edits, posts]),
        _ => Err(format!(
            "{raw:?}: three percentages (reactions,edits,posts) adding up to 100"
        )),
    }
}

/// The two fan-out runs of the issue (steady rate, and as fast as possible), or the one run
/// the options describe.
fn fanout_plans(args: &Args) -> Vec<fanout::Params> {
    let quick = args.quick;
    let steady = fanout::Params {
        streams: if quick { 1_000 } else { 10_000 },
        rate: 10.0,
        messages: if quick { 50 } else { 300 },
        publishers: 1,
        users: args.users,
    };
    let flat_out = fanout::Params {
        streams: if quick { 200 } else { 1_000 },
        rate: 0.0,
        messages: if quick { 1_000 } else { 5_000 },
        // Enough that group commit, not the publishers' round trips, sets the pace.
        publishers: 16,
        users: args.users,
    };
    if args.streams.is_none() && args.rate.is_none() && args.messages.is_none() && args.publishers.is_none() {
        return vec![steady, flat_out];
    }
    let base = if args.rate == Some(0.0) { flat_out } else { steady };
    vec![fanout::Params {
        streams: args.streams.unwrap_or(base.streams),
        rate: args.rate.unwrap_or(base.rate),
        messages: args.messages.unwrap_or(base.messages),
        publishers: args.publishers.unwrap_or(base.publishers),
        users: args.users,
    }]
}

/// Raises the soft limit on open files to the hard limit: 10,000 streams are 10,000 sockets
/// here (and, inherited, the server may use as many).
fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return;
        }
        limit.rlim_cur = limit.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
            eprintln!("warning: cannot raise the open-files limit");
        }
    }
    eprintln!("open files limit: {}", limit.rlim_cur);
}
