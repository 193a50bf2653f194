//! Changes: messages edited and reacted to at scale. `messages` Markdown-heavy messages are
//! seeded over a few public rooms by C clients, S streams follow `/api/events` (each its own
//! user; every room is public, so every stream carries every room), then for T seconds the
//! clients (each its own user) change things as fast as acknowledgements come back, or at
//! `rate` changes a second in all: reactions added or taken back on any seeded message, edits
//! of their own messages (seeded or posted since), and new posts, in the proportions of `mix`.
//! Edits and posts are Markdown-heavy texts (`text::markdown`) with an `@mention` of one of the
//! run's accounts, so each is rendered and its mention looked up, as a real one would be.
//!
//! Acknowledged changes per second by kind and ack latency. At the streams every acknowledged
//! change (its event id, from the answer) must arrive exactly once on every stream, in order;
//! publish-to-receive latency by kind is measured on every tenth stream: the time a change's
//! request was sent to the time its event arrived, matched by event id after the run, on one
//! clock (a reaction's event carries nothing of the sender's, so a stamp in the text would not
//! do for all three kinds).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use hyper::{Method, StatusCode};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use tokio::time::Instant;

use crate::client::{self, Endpoint, UserConn};
use crate::ingest::batch_totals;
use crate::report::{Report, Target, round};
use crate::server::Launcher;
use crate::sse::{self, Event};
use crate::stats::{CpuWindow, Rng, Summary, new_histogram, now_ns};
use crate::streams::{self, Shared, Sink, Spec};
use crate::text;

#[derive(Debug, Clone, Copy)]
pub struct Params {
    /// Messages seeded before the streams open, spread over the clients and rooms.
    pub messages: u64,
    pub rooms: usize,
    /// Streams on `/api/events`, each its own user.
    pub streams: usize,
    /// Clients making changes, each its own user (the first of the streams' users).
    pub clients: usize,
    pub seconds: f64,
    /// Changes per second, all clients together; 0: each as fast as acks come back.
    pub rate: f64,
    /// Percentages of reactions, edits and posts (adding up to 100).
    pub mix: [u32; 3],
}

/// What a change is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Reaction = 0,
    Edit = 1,
    Post = 2,
}

const KINDS: [Kind; 3] = [Kind::Reaction, Kind::Edit, Kind::Post];

impl Kind {
    /// The plural, for figures' names.
    fn plural(self) -> &'static str {
        match self {
            Self::Reaction => "reactions",
            Self::Edit => "edits",
            Self::Post => "posts",
        }
    }

    /// The kind of change an SSE event is, if any.
    fn of_event(name: &[u8]) -> Option<Self> {
        match name {
            b"reaction" => Some(Self::Reaction),
            b"edit" => Some(Self::Edit),
            b"message" => Some(Self::Post),
            _ => None,
        }
    }
}

const EMOJI: [&str; 6] = ["👍", "🎉", "❤️", "😄", "👀", "🚀"];

/// Every tenth stream keeps the arrival time of each change, for the latencies.
const SAMPLE_EVERY: usize = 10;

pub async fn run(launcher: &Launcher, params: Params) -> anyhow::Result<Report> {
    eprintln!("changes: {params:?}");
    let clients = params.clients.max(1);
    let users = params.streams.max(clients);
    let (server, tokens) = launcher.start_with_users(users).await?;
    let endpoint = &server.endpoint;
    let rooms: Arc<[String]> = (0..params.rooms.max(1)).map(|room| format!("changes-{room}")).collect();
    for room in rooms.iter() {
        client::create_room(endpoint, &tokens[0], room).await?;
    }

    eprintln!("  seeding {} messages", params.messages);
    let seeding: Vec<_> = (0..clients)
        .map(|c| {
            let count = params.messages / clients as u64 + u64::from((c as u64) < params.messages % clients as u64);
            let (endpoint, token, rooms) = (Arc::clone(endpoint), Arc::clone(&tokens[c]), Arc::clone(&rooms));
            tokio::spawn(async move { seed(&endpoint, &token, c, count, &rooms, users).await })
        })
        .collect();
    let mut own = Vec::with_capacity(clients);
    for seeded in seeding {
        own.push(seeded.await??);
    }
    let pool: Arc<[i64]> = own.iter().flatten().copied().collect();
    let marker = pool.iter().copied().max().unwrap_or(0);

    let path: Arc<str> = format!("/api/events?after={marker}").into();
    let shared = Shared::new();
    let tasks: Vec<_> = (0..params.streams)
        .map(|n| {
            let spec = Spec {
                endpoint: Arc::clone(endpoint),
                path: Arc::clone(&path),
                token: Arc::clone(&tokens[n % tokens.len()]),
                messages: 0,
            };
            let sink = ChangeSink::new(marker, n % SAMPLE_EVERY == 0);
            streams::spawn_sink(spec, Arc::clone(&shared), sink)
        })
        .collect();
    let opened = shared.wait_open(params.streams, Duration::from_secs(120)).await;
    eprintln!("  {opened} streams open; changing for {} s", params.seconds);
    // Every user coming online is a status change every stream carries: let that settle.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut conns = Vec::with_capacity(clients);
    for token in &tokens[..clients] {
        conns.push(UserConn::new(endpoint, token).await?);
    }
    let batches_before = batch_totals(&server).await;
    // Counted from here: every user coming online was a status change on every feed, a burst
    // that the streams of a new feed fall behind once.
    let lag_before = server.metric("chat_lag_recoveries_total").await;
    let cpu = CpuWindow::start(server.pid);
    let start = Instant::now();
    let start_ns = now_ns();
    let next = Arc::new(AtomicU64::new(0));
    let work: Vec<_> = conns
        .into_iter()
        .zip(own)
        .enumerate()
        .map(|(c, (conn, own))| {
            let client = Client {
                conn,
                n: c,
                own,
                pool: Arc::clone(&pool),
                rooms: Arc::clone(&rooms),
                users,
                reacted: HashSet::new(),
                rng: Rng::new(0xc4a9_0e5d ^ ((c as u64) << 20)),
            };
            tokio::spawn(client.run(params, start, Arc::clone(&next)))
        })
        .collect();
    let mut outcome = Outcome::new();
    for task in work {
        outcome.add(task.await?);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let total: u64 = outcome.acked.iter().sum();
    let expected = total * opened as u64;
    shared.progress.wait_for(expected, Duration::from_secs(10)).await;
    let usage = cpu.stop();
    let memory = server.memory_kib();
    let batches_after = batch_totals(&server).await;
    let lag_recoveries = server
        .metric("chat_lag_recoveries_total")
        .await
        .zip(lag_before)
        .map(|(after, before)| after - before);
    shared.stop.cancel();
    let mut sinks = Vec::with_capacity(tasks.len());
    for task in tasks {
        sinks.push(task.await?);
    }
    server.stop().await?;

    let check = Check::of(&outcome.changes, &sinks);
    let delivered = shared.progress.delivered();
    let delivery_span = shared
        .progress
        .last_delivery_ns
        .load(Ordering::Relaxed)
        .saturating_sub(start_ns) as f64
        / 1e9;
    let batch_mean = match (batches_before, batches_after) {
        (Some((sum0, count0)), Some((sum1, count1))) if count1 > count0 => {
            Some(round((sum1 - sum0) / (count1 - count0), 1))
        }
        _ => None,
    };
    let mib = |kib: u64| round(kib as f64 / 1024.0, 1);
    let [reactions, edits, posts] = params.mix;

    let mut report = Report::new("changes");
    report
        .param("messages", params.messages)
        .param("rooms", rooms.len())
        .param("streams", opened)
        .param("clients", clients)
        .param("seconds", params.seconds)
        .param("rate", params.rate)
        .param("mix", format!("{reactions}/{edits}/{posts}"));
    report
        .checked("streams_failed", shared.failed(), Target::AtMost(0.0))
        .result("changes_per_sec", round(total as f64 / elapsed, 0));
    for kind in KINDS {
        let per_sec = outcome.acked[kind as usize] as f64 / elapsed;
        report.result(&format!("{}_per_sec", kind.plural()), round(per_sec, 0));
    }
    report
        .result("unchanged", outcome.unchanged)
        .checked("errors", outcome.errors, Target::AtMost(0.0));
    let mut all_acks = new_histogram();
    for histogram in &outcome.ack {
        let _ = all_acks.add(histogram);
    }
    let acks = Summary::of(&all_acks);
    report.result("ack_p50_ms", acks.p50).result("ack_p99_ms", acks.p99);
    for kind in KINDS {
        let acks = Summary::of(&outcome.ack[kind as usize]);
        report
            .result(&format!("{}_ack_p50_ms", kind.plural()), acks.p50)
            .result(&format!("{}_ack_p99_ms", kind.plural()), acks.p99);
    }
    for kind in KINDS {
        let latency = Summary::of(&check.latency[kind as usize]);
        report
            .result(&format!("{}_latency_p50_ms", kind.plural()), latency.p50)
            .result(&format!("{}_latency_p99_ms", kind.plural()), latency.p99);
    }
    report.result("delivered", delivered).result(
        "deliveries_per_sec",
        round(delivered as f64 / delivery_span.max(1e-9), 0),
    );
    for kind in KINDS {
        report.checked(
            &format!("lost_{}", kind.plural()),
            check.lost[kind as usize],
            Target::AtMost(0.0),
        );
    }
    report
        .checked("duplicated", check.duplicated, Target::AtMost(0.0))
        .checked("out_of_order", check.out_of_order, Target::AtMost(0.0))
        .checked("resets", check.resets, Target::AtMost(0.0))
        .checked(
            "ended_by_server",
            shared.ended_by_server.load(Ordering::Relaxed),
            Target::AtMost(0.0),
        )
        .result("unacked_received", check.unacked)
        .result("lag_recoveries", lag_recoveries)
        .result("mean_write_batch", batch_mean)
        .result("server_rss_mib", memory.map(|(rss, _)| mib(rss)))
        .result("server_peak_rss_mib", memory.map(|(_, hwm)| mib(hwm)))
        .result("server_cpu_pct", usage.server_pct.map(|p| round(p, 0)))
        .result("bench_cpu_pct", round(usage.bench_pct, 0));
    Ok(report)
}

/// Posts `count` Markdown-heavy messages as client `c`, over the rooms in turn; their ids.
async fn seed(
    endpoint: &Arc<Endpoint>,
    token: &Arc<str>,
    c: usize,
    count: u64,
    rooms: &[String],
    users: usize,
) -> anyhow::Result<Vec<i64>> {
    let mut conn = UserConn::new(endpoint, token).await?;
    let mut rng = Rng::new(0x5eed ^ ((c as u64) << 24));
    let mut ids = Vec::with_capacity(count as usize);
    for k in 0..count {
        let room = &rooms[(c + k as usize) % rooms.len()];
        let mention = format!("@bench-{}", rng.below(users));
        let content = text::markdown(&mut rng, &mention, &format!("seed {c} {k}"));
        let json = serde_json::json!({ "content": content }).to_string();
        let (status, body) = conn
            .send(Method::POST, &format!("/api/rooms/{room}/messages"), Some(json))
            .await?;
        if status != StatusCode::CREATED {
            anyhow::bail!("seed post: {status} {}", String::from_utf8_lossy(&body));
        }
        ids.push(sse::json_i64(&body, "id").ok_or_else(|| anyhow::anyhow!("no id in {body:?}"))?);
    }
    Ok(ids)
}

/// One user making changes over one connection.
struct Client {
    conn: UserConn,
    n: usize,
    /// Ids of this user's own messages: the ones it may edit.
    own: Vec<i64>,
    /// Every seeded message: the ones reacted to.
    pool: Arc<[i64]>,
    rooms: Arc<[String]>,
    /// Accounts in the run, for mentions.
    users: usize,
    /// The reactions this user has on: (message, emoji).
    reacted: HashSet<(i64, usize)>,
    rng: Rng,
}

/// What the clients did.
struct Outcome {
    acked: [u64; 3],
    /// `204`: the change was already so (a reaction already on, or off).
    unchanged: u64,
    errors: u64,
    /// Ack latency by kind.
    ack: [Histogram<u64>; 3],
    /// Every acknowledged change: its event id, kind, and send time (`now_ns`).
    changes: Vec<(i64, Kind, u64)>,
}

impl Outcome {
    fn new() -> Self {
        Self {
            acked: [0; 3],
            unchanged: 0,
            errors: 0,
            ack: [new_histogram(), new_histogram(), new_histogram()],
            changes: Vec::new(),
        }
    }

    fn add(&mut self, other: Self) {
        for kind in KINDS {
            let k = kind as usize;
            self.acked[k] += other.acked[k];
            let _ = self.ack[k].add(&other.ack[k]);
        }
        self.unchanged += other.unchanged;
        self.errors += other.errors;
        self.changes.extend(other.changes);
    }
}

impl Client {
    async fn run(mut self, params: Params, start: Instant, next: Arc<AtomicU64>) -> Outcome {
        let deadline = start + Duration::from_secs_f64(params.seconds);
        let mut outcome = Outcome::new();
        let emoji: Vec<String> = EMOJI
            .iter()
            .map(|e| utf8_percent_encode(e, NON_ALPHANUMERIC).to_string())
            .collect();
        let mut seq = 0u64;
        loop {
            if params.rate > 0.0 {
                let at = start + Duration::from_secs_f64(next.fetch_add(1, Ordering::Relaxed) as f64 / params.rate);
                if at >= deadline {
                    break;
                }
                tokio::time::sleep_until(at).await;
            } else if Instant::now() >= deadline {
                break;
            }
            let roll = self.rng.below(100) as u32;
            let kind = if roll < params.mix[0] {
                Kind::Reaction
            } else if roll < params.mix[0] + params.mix[1] && !self.own.is_empty() {
                Kind::Edit
            } else {
                Kind::Post
            };
            let mut reaction = None;
            let (method, path, json, expected) = match kind {
                Kind::Reaction => {
                    let message = self.pool[self.rng.below(self.pool.len())];
                    let e = self.rng.below(EMOJI.len());
                    let add = !self.reacted.contains(&(message, e));
                    reaction = Some((message, e, add));
                    let method = if add { Method::PUT } else { Method::DELETE };
                    let path = format!("/api/messages/{message}/reactions/{}", emoji[e]);
                    (method, path, None, StatusCode::OK)
                }
                Kind::Edit => {
                    let message = self.own[self.rng.below(self.own.len())];
                    let json = self.text(&format!("edit {} {seq}", self.n));
                    (
                        Method::PATCH,
                        format!("/api/messages/{message}"),
                        Some(json),
                        StatusCode::OK,
                    )
                }
                Kind::Post => {
                    let path = format!("/api/rooms/{}/messages", self.rooms[self.rng.below(self.rooms.len())]);
                    let json = self.text(&format!("post {} {seq}", self.n));
                    (Method::POST, path, Some(json), StatusCode::CREATED)
                }
            };
            seq += 1;
            let (sent, sent_ns) = (Instant::now(), now_ns());
            let answer = self.conn.send(method, &path, json).await;
            let took = sent.elapsed().as_micros().max(1) as u64;
            let id = match answer {
                Ok((status, body)) if status == expected => sse::json_i64(&body, "id"),
                Ok((StatusCode::NO_CONTENT, _)) => {
                    outcome.unchanged += 1;
                    if let Some((message, e, add)) = reaction {
                        self.set_reacted(message, e, add);
                    }
                    continue;
                }
                Ok((status, body)) => {
                    if outcome.errors == 0 {
                        eprintln!("  a change failed: {path} {status} {}", String::from_utf8_lossy(&body));
                    }
                    None
                }
                Err(error) => {
                    if outcome.errors == 0 {
                        eprintln!("  a change failed: {error:#}");
                    }
                    None
                }
            };
            let Some(id) = id else {
                outcome.errors += 1;
                continue;
            };
            outcome.acked[kind as usize] += 1;
            outcome.ack[kind as usize].saturating_record(took);
            outcome.changes.push((id, kind, sent_ns));
            match (kind, reaction) {
                (Kind::Reaction, Some((message, e, add))) => self.set_reacted(message, e, add),
                (Kind::Post, _) => self.own.push(id),
                _ => {}
            }
        }
        outcome
    }

    /// A request body with a fresh Markdown-heavy text ending with `tag`.
    fn text(&mut self, tag: &str) -> String {
        let mention = format!("@bench-{}", self.rng.below(self.users));
        let content = text::markdown(&mut self.rng, &mention, tag);
        serde_json::json!({ "content": content }).to_string()
    }

    fn set_reacted(&mut self, message: i64, emoji: usize, on: bool) {
        if on {
            self.reacted.insert((message, emoji));
        } else {
            self.reacted.remove(&(message, emoji));
        }
    }
}

/// One stream's record of the changes it received.
struct ChangeSink {
    /// The cursor it opened at: every change has a greater id.
    base: i64,
    /// Bit `id - base` is set once that change arrived.
    seen: Vec<u64>,
    received: u64,
    duplicated: u64,
    out_of_order: u64,
    resets: u64,
    last_id: i64,
    /// The arrival time (`now_ns`) of every change, on the streams that sample latency.
    arrivals: Option<Vec<(i64, u64)>>,
}

impl ChangeSink {
    fn new(base: i64, sample: bool) -> Self {
        Self {
            base,
            seen: Vec::new(),
            received: 0,
            duplicated: 0,
            out_of_order: 0,
            resets: 0,
            last_id: base,
            arrivals: sample.then(Vec::new),
        }
    }

    fn has(&self, id: i64) -> bool {
        let offset = (id - self.base) as usize;
        self.seen
            .get(offset / 64)
            .is_some_and(|word| word & (1 << (offset % 64)) != 0)
    }
}

impl Sink for ChangeSink {
    fn on_event(&mut self, event: &Event<'_>, now_ns: u64) -> bool {
        if event.event == b"reset" {
            self.resets += 1;
        }
        let Some(id) = event.id else { return false };
        let in_order = id > self.last_id;
        self.last_id = self.last_id.max(id);
        if Kind::of_event(event.event).is_none() || id <= self.base {
            return false;
        }
        let offset = (id - self.base) as usize;
        let (word, bit) = (offset / 64, 1u64 << (offset % 64));
        if word >= self.seen.len() {
            self.seen.resize(word + 1, 0);
        }
        if self.seen[word] & bit != 0 {
            self.duplicated += 1;
            return true;
        }
        self.seen[word] |= bit;
        self.received += 1;
        if !in_order {
            self.out_of_order += 1;
        }
        if let Some(arrivals) = &mut self.arrivals {
            arrivals.push((id, now_ns));
        }
        true
    }
}

/// What the streams' records say about the acknowledged changes.
struct Check {
    /// Acknowledged changes some stream did not receive, by kind, all streams together.
    lost: [u64; 3],
    duplicated: u64,
    out_of_order: u64,
    resets: u64,
    /// Changes received that no client had an acknowledgement for (its answer failed).
    unacked: u64,
    /// Publish-to-receive latency by kind, on the sampled streams.
    latency: [Histogram<u64>; 3],
}

impl Check {
    fn of(changes: &[(i64, Kind, u64)], sinks: &[ChangeSink]) -> Self {
        let acked: HashMap<i64, (Kind, u64)> = changes.iter().map(|&(id, kind, sent)| (id, (kind, sent))).collect();
        let mut check = Self {
            lost: [0; 3],
            duplicated: 0,
            out_of_order: 0,
            resets: 0,
            unacked: 0,
            latency: [new_histogram(), new_histogram(), new_histogram()],
        };
        for sink in sinks {
            let mut found = 0;
            for &(id, kind, _) in changes {
                if sink.has(id) {
                    found += 1;
                } else {
                    check.lost[kind as usize] += 1;
                }
            }
            check.unacked += sink.received - found;
            check.duplicated += sink.duplicated;
            check.out_of_order += sink.out_of_order;
            check.resets += sink.resets;
            for &(id, arrived) in sink.arrivals.iter().flatten() {
                if let Some(&(kind, sent)) = acked.get(&id) {
                    check.latency[kind as usize].saturating_record((arrived.saturating_sub(sent) / 1000).max(1));
                }
            }
        }
        check
    }
}
