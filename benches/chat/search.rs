//! Search: `GET /api/search` over a large history. A fresh server makes the schema, the rooms
//! (`--rooms`, a fifth of them public, the rest private) and the accounts; then, stopped, its
//! database gets `--events` messages written directly (`seed::corpus`: a Zipf-like vocabulary,
//! each room's own code name, a few set phrases; eight authors; a year of dates) and its
//! full-text index filled, and it starts again on them. `--clients` clients search as fast as
//! answers come back for `--seconds`, each going through the queries below in turn: half as
//! `bench-0`, a member of every room, half as `bench-8`, a member of one private room, who can
//! read a quarter of the messages.
//!
//! Latency p50/p99/max by query and by reader, searches per second, the results each query
//! found (a query that should find something and finds nothing is an error), and the server's
//! CPU and RSS. The target is p99 <= 20 ms for every query.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use hyper::{Method, StatusCode};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use tokio::time::Instant;

use crate::client::{self, UserConn};
use crate::report::{Report, Target, round};
use crate::seed;
use crate::server::Launcher;
use crate::sse;
use crate::stats::{CpuWindow, Rng, Summary, new_histogram};
use crate::words::{self, Vocabulary};

#[derive(Debug, Clone, Copy)]
pub struct Params {
    /// Messages in the database.
    pub events: u64,
    pub rooms: usize,
    pub clients: usize,
    pub seconds: f64,
}

/// Words in the vocabulary.
const VOCABULARY: usize = 50_000;
/// Accounts: eight authors (`bench-0`..`bench-7`), then the narrow reader (`bench-8`).
const AUTHORS: usize = 8;
const WIDE: usize = 0;
const NARROW: usize = 8;

/// One search of the mix.
struct Query {
    name: &'static str,
    q: String,
    /// `room=`, `from=`, `after=`, `before=`, as given.
    filters: Vec<(&'static str, String)>,
    /// Whether the reader should find something (the narrow one too, unless `narrow_finds`).
    finds: bool,
    narrow_finds: bool,
}

/// A page that finds nothing among the matches it may look at ends with a `next` that carries
/// on below them; a client follows it at most this many times looking for a first result.
const MAX_PAGES: usize = 500;

/// Latency and results of one query for one reader.
struct Figures {
    /// Every page asked for.
    latency: Histogram<u64>,
    /// From the first page asked for to the first with a result (or the last).
    first: Histogram<u64>,
    pages: u64,
    results: u64,
    /// Searches that found nothing, every page followed.
    empty: u64,
}

impl Figures {
    fn new() -> Self {
        Self {
            latency: new_histogram(),
            first: new_histogram(),
            pages: 0,
            results: 0,
            empty: 0,
        }
    }

    fn add(&mut self, other: &Self) {
        let _ = self.latency.add(&other.latency);
        let _ = self.first.add(&other.first);
        self.pages += other.pages;
        self.results += other.results;
        self.empty += other.empty;
    }

    /// Searches made (each one page or more).
    fn searches(&self) -> u64 {
        self.first.len()
    }
}

pub async fn run(launcher: &Launcher, params: Params) -> anyhow::Result<Report> {
    eprintln!("search: {params:?}");
    anyhow::ensure!(
        !launcher.is_external(),
        "search writes its history into the database directly: it cannot use --url"
    );
    let rooms = params.rooms.max(5);
    let public = rooms / 5;
    let names: Vec<String> = (0..rooms).map(|r| format!("search-{r}")).collect();
    let (server, tokens) = launcher.start_with_users(NARROW + 1).await?;
    let endpoint = &server.endpoint;
    for (r, room) in names.iter().enumerate() {
        if r < public {
            client::create_room(endpoint, &tokens[WIDE], room).await?;
        } else {
            client::create_private_room(endpoint, &tokens[WIDE], room).await?;
            client::add_members(endpoint, &tokens[WIDE], room, 1..AUTHORS).await?;
        }
    }
    // The narrow reader can read the public rooms and the first private one.
    let narrow_room = public;
    client::add_members(endpoint, &tokens[WIDE], &names[narrow_room], [NARROW]).await?;
    let db = server.stop().await?.expect("a started server has a database");

    let vocabulary = Vocabulary::new(VOCABULARY);
    let authors: Vec<String> = (0..AUTHORS).map(|n| format!("bench-{n}")).collect();
    // A year of history, newest now.
    let spacing = 365.0 * 86_400.0 / params.events.max(1) as f64;
    eprintln!("  writing {} messages", params.events);
    let corpus = seed::corpus(&db.path, &names, &authors, params.events, spacing, &vocabulary).await?;
    eprintln!(
        "  written in {:.1} s, indexed in {:.1} s",
        corpus.seconds_to_write, corpus.seconds_to_index
    );
    anyhow::ensure!(
        corpus.indexed,
        "this server's schema has no full-text index (migration 0010): build one with search"
    );
    let file_mib = std::fs::metadata(&db.path)?.len() as f64 / (1024.0 * 1024.0);
    let (server, healthy) = launcher.start_on(db, &[]).await?;
    let endpoint = &server.endpoint;

    let queries = Arc::new(mix(&vocabulary, &names, narrow_room));
    let mut conns = Vec::with_capacity(params.clients);
    for c in 0..params.clients.max(1) {
        let reader = if c % 2 == 0 { WIDE } else { NARROW };
        conns.push((reader, UserConn::new(endpoint, &tokens[reader]).await?));
    }
    // One pass of every query, not measured: what the page cache and SQLite's own cache hold
    // after a server has been up a while.
    let mut errors = 0u64;
    for (_, conn) in &mut conns {
        for query in queries.iter() {
            if search(conn, query, None).await.is_err() {
                errors += 1;
            }
        }
    }

    let cpu = CpuWindow::start(server.pid);
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(params.seconds);
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(c, (reader, conn))| {
            let queries = Arc::clone(&queries);
            tokio::spawn(run_client(conn, c, reader, queries, deadline))
        })
        .collect();
    let mut figures: HashMap<(&'static str, usize), Figures> = HashMap::new();
    let mut all = new_histogram();
    let mut pages = 0u64;
    for task in tasks {
        let outcome = task.await?;
        errors += outcome.errors;
        for ((name, reader), theirs) in outcome.figures {
            pages += theirs.latency.len();
            let _ = all.add(&theirs.latency);
            figures.entry((name, reader)).or_insert_with(Figures::new).add(&theirs);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let usage = cpu.stop();
    let memory = server.memory_kib();
    server.stop().await?;

    let mut report = Report::new("search");
    report
        .param("events", corpus.last - corpus.first + 1)
        .param("rooms", rooms)
        .param("public_rooms", public)
        .param("clients", params.clients)
        .param("seconds", params.seconds);
    let overall = Summary::of(&all);
    report
        .result("db_file_mib", round(file_mib, 1))
        .result("seed_write_s", round(corpus.seconds_to_write, 1))
        .result("seed_index_s", round(corpus.seconds_to_index, 1))
        .result("healthy_ms", round(healthy.as_secs_f64() * 1000.0, 1))
        .result("requests", pages)
        .result("requests_per_sec", round(pages as f64 / elapsed, 0))
        .result("p50_ms", overall.p50)
        .checked("p99_ms", overall.p99, Target::AtMost(20.0))
        .result("max_ms", overall.max);
    let mut wrong = 0u64;
    for query in queries.iter() {
        for (reader, who) in [(WIDE, "wide"), (NARROW, "narrow")] {
            let Some(f) = figures.get(&(query.name, reader)) else {
                continue;
            };
            let (latency, first) = (Summary::of(&f.latency), Summary::of(&f.first));
            let runs = f.searches().max(1) as f64;
            let key = format!("{}_{who}", query.name);
            report
                .result(&format!("{key}_p50_ms"), latency.p50)
                .checked(&format!("{key}_p99_ms"), latency.p99, Target::AtMost(20.0))
                .result(&format!("{key}_max_ms"), latency.max)
                .result(&format!("{key}_searches"), f.searches())
                .result(&format!("{key}_results"), round(f.results as f64 / runs, 1));
            // Only where a first page may come back empty: how many pages, and how long, to the
            // first result.
            if f.pages > f.searches() {
                report
                    .result(&format!("{key}_pages"), round(f.pages as f64 / runs, 1))
                    .result(&format!("{key}_first_p50_ms"), first.p50)
                    .result(&format!("{key}_first_p99_ms"), first.p99);
            }
            let should_find = query.finds && (reader == WIDE || query.narrow_finds);
            if should_find {
                wrong += f.empty;
            } else {
                wrong += f.searches() - f.empty;
            }
        }
    }
    report
        .checked("unexpected_results", wrong, Target::AtMost(0.0))
        .checked("errors", errors, Target::AtMost(0.0))
        .result("server_rss_mib", memory.map(|(rss, _)| round(rss as f64 / 1024.0, 1)))
        .result(
            "server_peak_rss_mib",
            memory.map(|(_, hwm)| round(hwm as f64 / 1024.0, 1)),
        )
        .result("server_cpu_pct", usage.server_pct.map(|p| round(p, 0)))
        .result("bench_cpu_pct", round(usage.bench_pct, 0))
        .note("the database file was just written: it is in the page cache");
    for query in queries.iter() {
        let filters: Vec<String> = query.filters.iter().map(|(k, v)| format!("&{k}={v}")).collect();
        report.note(format!("{}: q={}{}", query.name, query.q, filters.concat()));
    }
    Ok(report)
}

/// The queries: common and rare words, two words, a phrase, a prefix, each room's code name,
/// and filters by room, author and date.
fn mix(vocabulary: &Vocabulary, rooms: &[String], narrow_room: usize) -> Vec<Query> {
    let days_ago = |days: u64| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        civil_date(now.saturating_sub(days * 86_400))
    };
    let common = vocabulary.word(0).to_owned();
    // About 250 messages in a million say it, and about 30 the other.
    let rare = vocabulary.word(5_000).to_owned();
    let rarest = vocabulary.word(40_000).to_owned();
    let query = |name, q: String, filters: Vec<(&'static str, String)>, finds, narrow_finds| Query {
        name,
        q,
        filters,
        finds,
        narrow_finds,
    };
    let last = rooms.len() - 1;
    vec![
        query("common", common.clone(), vec![], true, true),
        query("rare", rare.clone(), vec![], true, true),
        query("rarest", rarest, vec![], true, true),
        query(
            "two_words",
            format!("{} {}", vocabulary.word(40), vocabulary.word(300)),
            vec![],
            true,
            true,
        ),
        query("phrase", format!("\"{}\"", words::PHRASES[0]), vec![], true, true),
        query("prefix", "dep*".to_owned(), vec![], true, true),
        query(
            "common_room",
            common.clone(),
            vec![("room", rooms[narrow_room].clone())],
            true,
            true,
        ),
        query(
            "common_from",
            common.clone(),
            vec![("from", "bench-3".to_owned())],
            true,
            true,
        ),
        query(
            "rare_room",
            rare.clone(),
            vec![("room", rooms[narrow_room].clone())],
            true,
            true,
        ),
        // Last month's and older: newer matches come first, a page of them at a time.
        query(
            "common_before",
            common.clone(),
            vec![("before", days_ago(30))],
            true,
            true,
        ),
        query("rare_after", rare, vec![("after", days_ago(120))], true, true),
        // A word said often, but only in a room the narrow reader cannot read.
        query("code_name", words::code_name(last), vec![], true, false),
    ]
}

/// `YYYY-MM-DD` of a Unix time (UTC).
fn civil_date(unix: u64) -> String {
    // Howard Hinnant's days-to-civil.
    let z = (unix / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

struct ClientOutcome {
    figures: HashMap<(&'static str, usize), Figures>,
    errors: u64,
}

/// Searches the mix in turn (from a place of its own) until `deadline`.
async fn run_client(
    mut conn: UserConn,
    c: usize,
    reader: usize,
    queries: Arc<Vec<Query>>,
    deadline: Instant,
) -> ClientOutcome {
    let mut outcome = ClientOutcome {
        figures: HashMap::new(),
        errors: 0,
    };
    let mut next = Rng::new(0x5ea2c4 + c as u64).below(queries.len());
    while Instant::now() < deadline {
        let query = &queries[next % queries.len()];
        next += 1;
        let figures = outcome.figures.entry((query.name, reader)).or_insert_with(Figures::new);
        let started = Instant::now();
        let (mut cursor, mut found) = (None::<String>, 0);
        for _ in 0..MAX_PAGES {
            let sent = Instant::now();
            match search(&mut conn, query, cursor.as_deref()).await {
                Ok((results, more)) => {
                    figures
                        .latency
                        .saturating_record(sent.elapsed().as_micros().max(1) as u64);
                    figures.pages += 1;
                    (found, cursor) = (results, more);
                }
                Err(error) => {
                    if outcome.errors == 0 {
                        eprintln!("  a search failed: {error:#}");
                    }
                    outcome.errors += 1;
                    cursor = None;
                }
            }
            if found > 0 || cursor.is_none() {
                break;
            }
        }
        figures
            .first
            .saturating_record(started.elapsed().as_micros().max(1) as u64);
        figures.results += found;
        figures.empty += u64::from(found == 0);
    }
    outcome
}

/// One page of a search, from `cursor` if given: how many results it holds, and the next
/// page's cursor if there may be more.
async fn search(conn: &mut UserConn, query: &Query, cursor: Option<&str>) -> anyhow::Result<(u64, Option<String>)> {
    let encode = |text: &str| utf8_percent_encode(text, NON_ALPHANUMERIC).to_string();
    let mut path = format!("/api/search?q={}", encode(&query.q));
    for (key, value) in &query.filters {
        path.push_str(&format!("&{key}={}", encode(value)));
    }
    if let Some(cursor) = cursor {
        path.push_str(&format!("&cursor={}", encode(cursor)));
    }
    let (status, body) = conn.send(Method::GET, &path, None).await?;
    if status != StatusCode::OK {
        anyhow::bail!("{path}: {status} {}", String::from_utf8_lossy(&body));
    }
    // Every result carries a snippet; nothing else in the answer is called so.
    let results = body.windows(10).filter(|w| w == b"\"snippet\":").count() as u64;
    let next = sse::json_str(&body, "next").map(|next| String::from_utf8_lossy(next).into_owned());
    Ok((results, next))
}
