//! Reads: read cursors moved by many people at once, as the page moves them. U users
//! (`--streams`), each on their own `/api/events` stream and a member of K (`--rooms-per-user`)
//! of R private rooms (`--rooms`), the rooms dealt out so that each has the same number of
//! members. `bench-0` made every room and is in all of them, as is `bench-1`; publishers (`--publishers`, each
//! its own account, in every room) post a backlog (`--messages`, one in twenty mentioning
//! `bench-0`) before the streams open, then stamped messages (`"<seq> <send time>"`) at
//! `--rate` a second in all, into rooms picked at random, over two windows of `--seconds`:
//!
//! 1. quiet: nobody marks anything read;
//! 2. reading: each user looks at one of their rooms, and marks it read up to the newest
//!    message their stream brought (`PUT /api/rooms/{room}/read`) as the page does: at most once
//!    a second, and only when something new has arrived since.
//!
//! Throughout, two users in every room ask for their room list with counts (`GET /api/rooms`):
//! `bench-1`, who read everything before the windows, ten times a second, and `bench-0`, who
//! never reads (the whole backlog unread), once a second.
//!
//! Read acks per second and their latency; publish-to-receive latency of the messages in each
//! window; the time from a `PUT` to its `read` event on the reader's stream; the room list's
//! latency in each window; the server's CPU and RSS in each. Every stream must see every message
//! of its rooms exactly once and in order, and every acknowledged read exactly once, on its own
//! reader's stream and on nobody else's.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use hyper::{Method, StatusCode};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::client::{self, Endpoint, Poster, UserConn};
use crate::report::{Report, Target, round};
use crate::server::{Launcher, Server};
use crate::sse::{self, Event};
use crate::stats::{CpuUse, CpuWindow, Rng, Summary, new_histogram, now_ns};
use crate::streams::{self, Shared, Sink, Spec};

#[derive(Debug, Clone, Copy)]
pub struct Params {
    /// Users, each with one stream.
    pub users: usize,
    pub rooms: usize,
    /// Rooms each user is a member of.
    pub rooms_per_user: usize,
    /// Messages a second, all rooms together, in both windows.
    pub rate: f64,
    /// How long each window lasts.
    pub seconds: f64,
    pub publishers: usize,
    /// Messages posted before the streams open.
    pub backlog: u64,
}

/// How often the keeper asks for its rooms, and how often the lead does (each list costs the
/// lead's server a count of its whole backlog: ten a second would take a core).
const KEEPER_LIST_EVERY: Duration = Duration::from_millis(100);
const LEAD_LIST_EVERY: Duration = Duration::from_secs(1);
/// The lead (made the rooms, never reads) and the keeper (reads everything before the windows).
const LEAD: usize = 0;
const KEEPER: usize = 1;
/// The page's coalescing: at most one `PUT .../read` a room a second.
const READ_EVERY: Duration = Duration::from_secs(1);

/// Who is who: `bench-0` the lead, `bench-1` the keeper, then the publishers, then the readers.
struct Cast {
    publishers: usize,
    readers: usize,
    rooms: usize,
    per_user: usize,
}

impl Cast {
    fn publisher(&self, p: usize) -> usize {
        2 + p
    }

    fn reader(&self, i: usize) -> usize {
        2 + self.publishers + i
    }

    /// The rooms reader `i` is a member of; the first is the one they look at.
    fn rooms_of(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        (0..self.per_user).map(move |j| (i + j) % self.rooms)
    }

    fn is_member(&self, i: usize, room: usize) -> bool {
        (room + self.rooms - i % self.rooms) % self.rooms < self.per_user
    }
}

fn room_name(room: usize) -> String {
    format!("reads-{room}")
}

pub async fn run(launcher: &Launcher, params: Params) -> anyhow::Result<Report> {
    eprintln!("reads: {params:?}");
    let cast = Cast {
        publishers: params.publishers.max(1),
        readers: params.users,
        rooms: params.rooms.max(1),
        per_user: params.rooms_per_user.clamp(1, params.rooms.max(1)),
    };
    let accounts = 2 + cast.publishers + cast.readers;
    let (server, tokens) = launcher.start_with_users(accounts).await?;
    let endpoint = &server.endpoint;
    let names: Vec<String> = (0..cast.rooms).map(room_name).collect();
    eprintln!(
        "  {} rooms, {} memberships",
        cast.rooms,
        cast.rooms * (2 + cast.publishers) + cast.readers * cast.per_user
    );
    for (r, room) in names.iter().enumerate() {
        client::create_private_room(endpoint, &tokens[LEAD], room).await?;
        let members = std::iter::once(KEEPER)
            .chain((0..cast.publishers).map(|p| cast.publisher(p)))
            .chain(
                (0..cast.readers)
                    .filter(|&i| cast.is_member(i, r))
                    .map(|i| cast.reader(i)),
            );
        client::add_members(endpoint, &tokens[LEAD], room, members).await?;
    }

    eprintln!("  posting a backlog of {} messages", params.backlog);
    let marker = backlog(&server, &tokens, &cast, &names, params.backlog).await?;
    let mut keeper = UserConn::new(endpoint, &tokens[KEEPER]).await?;
    for room in &names {
        let json = format!("{{\"up_to\":{marker}}}");
        let (status, body) = keeper
            .send(Method::PUT, &format!("/api/rooms/{room}/read"), Some(json))
            .await?;
        anyhow::ensure!(status == StatusCode::NO_CONTENT, "keeper's read: {status} {body:?}");
    }
    drop(keeper);

    let path: Arc<str> = format!("/api/events?after={marker}").into();
    let total = (params.rate * params.seconds).round() as u64;
    let shared = Shared::new();
    let looking: Vec<Arc<Looking>> = (0..cast.readers).map(|_| Arc::new(Looking::default())).collect();
    let tasks: Vec<_> = (0..cast.readers)
        .map(|i| {
            let spec = Spec {
                endpoint: Arc::clone(endpoint),
                path: Arc::clone(&path),
                token: Arc::clone(&tokens[cast.reader(i)]),
                messages: 0,
            };
            let sink = ReadSink::new(
                marker,
                cast.rooms_of(i).next().unwrap_or(0),
                Arc::clone(&looking[i]),
                total,
            );
            streams::spawn_sink(spec, Arc::clone(&shared), sink)
        })
        .collect();
    let opened = shared.wait_open(cast.readers, Duration::from_secs(120)).await;
    eprintln!("  {opened} streams open");
    // Every user coming online is a status change every stream carries: let that settle.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let lag_before = server.metric("chat_lag_recoveries_total").await;

    let mut publishers = Vec::with_capacity(cast.publishers);
    for p in 0..cast.publishers {
        publishers.push(Poster::new(endpoint, &tokens[cast.publisher(p)], &names[0]).await?);
    }
    let publishers = Arc::new(tokio::sync::Mutex::new(publishers));
    // Window 1: messages, no reads.
    eprintln!("  quiet window: {} s", params.seconds);
    let listers = [
        (Arc::clone(&tokens[LEAD]), LEAD_LIST_EVERY),
        (Arc::clone(&tokens[KEEPER]), KEEPER_LIST_EVERY),
    ];
    let quiet = window(&server, &listers, &publishers, &names, 0..total, params.rate, None).await?;

    // Window 2: the same, with every reader marking their room read. Their connections open
    // now: the server closes a new connection that stays silent for 10 s.
    eprintln!("  reading window: {} s", params.seconds);
    let mut readers = Vec::with_capacity(cast.readers);
    for i in 0..cast.readers {
        let room = cast.rooms_of(i).next().unwrap_or(0);
        readers.push(Reader {
            conn: UserConn::new(endpoint, &tokens[cast.reader(i)]).await?,
            endpoint: Arc::clone(endpoint),
            token: Arc::clone(&tokens[cast.reader(i)]),
            path: format!("/api/rooms/{}/read", names[room]),
            looking: Arc::clone(&looking[i]),
        });
    }

    let busy = window(
        &server,
        &listers,
        &publishers,
        &names,
        total..2 * total,
        params.rate,
        Some(readers),
    )
    .await?;
    let lag_recoveries = server
        .metric("chat_lag_recoveries_total")
        .await
        .zip(lag_before)
        .map(|(after, before)| after - before);

    // Every message to every member's stream, every read to its reader's.
    let member_streams = |room: usize| (0..cast.readers).filter(|&i| cast.is_member(i, room)).count() as u64;
    let per_room: Vec<u64> = (0..cast.rooms).map(member_streams).collect();
    let acked_reads: u64 = busy.reads.iter().map(|r| r.len() as u64).sum();
    let expected: u64 = quiet
        .posted
        .iter()
        .chain(&busy.posted)
        .map(|&(_, room)| per_room[room])
        .sum::<u64>()
        + acked_reads;
    shared.progress.wait_for(expected, Duration::from_secs(10)).await;
    shared.stop.cancel();
    let mut sinks = Vec::with_capacity(tasks.len());
    for task in tasks {
        sinks.push(task.await?);
    }
    server.stop().await?;

    let check = Check::of(&cast, &quiet.posted, &busy.posted, &busy.reads, &sinks);
    let mut report = Report::new("reads");
    report
        .param("users", cast.readers)
        .param("streams", opened)
        .param("rooms", cast.rooms)
        .param("rooms_per_user", cast.per_user)
        .param("rate", params.rate)
        .param("seconds", params.seconds)
        .param("backlog", params.backlog);
    let reads = Summary::of(&busy.read_ack);
    let read_events = Summary::of(&check.read_latency);
    let (quiet_latency, busy_latency) = (Summary::of(&check.latency[0]), Summary::of(&check.latency[1]));
    let (quiet_lead, busy_lead) = (Summary::of(&quiet.room_list[0]), Summary::of(&busy.room_list[0]));
    let (quiet_keeper, busy_keeper) = (Summary::of(&quiet.room_list[1]), Summary::of(&busy.room_list[1]));
    let mib = |kib: u64| round(kib as f64 / 1024.0, 1);
    let cpu = |usage: CpuUse| usage.server_pct.map(|p| round(p, 0));
    report
        .checked("streams_failed", shared.failed(), Target::AtMost(0.0))
        .result("reads_acked", acked_reads)
        .result("reads_per_sec", round(acked_reads as f64 / busy.elapsed, 0))
        .result("read_ack_p50_ms", reads.p50)
        .result("read_ack_p99_ms", reads.p99)
        .result("read_ack_max_ms", reads.max)
        .result("read_event_p50_ms", read_events.p50)
        .result("read_event_p99_ms", read_events.p99)
        .checked("read_errors", busy.read_errors, Target::AtMost(0.0))
        .result("read_reconnects", busy.read_reconnects)
        .result("posts_per_sec", round(busy.posted.len() as f64 / busy.elapsed, 0))
        .checked("post_errors", quiet.post_errors + busy.post_errors, Target::AtMost(0.0))
        .result("quiet_latency_p50_ms", quiet_latency.p50)
        .result("quiet_latency_p99_ms", quiet_latency.p99)
        .result("latency_p50_ms", busy_latency.p50)
        .checked("latency_p99_ms", busy_latency.p99, Target::AtMost(100.0))
        .result("latency_max_ms", busy_latency.max)
        .result("quiet_rooms_p50_ms", quiet_keeper.p50)
        .result("quiet_rooms_p99_ms", quiet_keeper.p99)
        .result("rooms_p50_ms", busy_keeper.p50)
        .result("rooms_p99_ms", busy_keeper.p99)
        .result("rooms_max_ms", busy_keeper.max)
        .result("quiet_rooms_unread_p50_ms", quiet_lead.p50)
        .result("quiet_rooms_unread_p99_ms", quiet_lead.p99)
        .result("rooms_unread_p50_ms", busy_lead.p50)
        .result("rooms_unread_p99_ms", busy_lead.p99)
        .result("rooms_listed", busy.rooms_listed)
        .checked(
            "room_list_errors",
            quiet.room_errors + busy.room_errors,
            Target::AtMost(0.0),
        )
        .checked("lost", check.lost, Target::AtMost(0.0))
        .checked("duplicated", check.duplicated, Target::AtMost(0.0))
        .checked("out_of_order", check.out_of_order, Target::AtMost(0.0))
        .checked("resets", check.resets, Target::AtMost(0.0))
        .checked("reads_lost", check.reads_lost, Target::AtMost(0.0))
        .checked("reads_duplicated", check.reads_duplicated, Target::AtMost(0.0))
        .checked("reads_elsewhere", check.reads_elsewhere, Target::AtMost(0.0))
        .checked(
            "ended_by_server",
            shared.ended_by_server.load(Ordering::Relaxed),
            Target::AtMost(0.0),
        )
        .result("lag_recoveries", lag_recoveries)
        .result("delivered", shared.progress.delivered())
        .result("quiet_server_cpu_pct", cpu(quiet.cpu))
        .result("server_cpu_pct", cpu(busy.cpu))
        .result("quiet_server_rss_mib", quiet.memory.map(|(rss, _)| mib(rss)))
        .result("server_rss_mib", busy.memory.map(|(rss, _)| mib(rss)))
        .result("server_peak_rss_mib", busy.memory.map(|(_, hwm)| mib(hwm)))
        .result("quiet_db_growth_mib", quiet.db_growth.map(|b| mib(b / 1024)))
        .result("db_growth_mib", busy.db_growth.map(|b| mib(b / 1024)))
        .result("bench_cpu_pct", round(busy.cpu.bench_pct, 0));
    Ok(report)
}

/// Posts `count` messages over the rooms in turn from 32 connections, one in twenty mentioning
/// `bench-0`; the newest id.
async fn backlog(
    server: &Server,
    tokens: &[Arc<str>],
    cast: &Cast,
    names: &[String],
    count: u64,
) -> anyhow::Result<i64> {
    let next = Arc::new(AtomicU64::new(0));
    let newest = Arc::new(AtomicI64::new(0));
    let mut tasks = Vec::new();
    for c in 0..32 {
        let mut poster = Poster::new(
            &server.endpoint,
            &tokens[cast.publisher(c % cast.publishers)],
            &names[0],
        )
        .await?;
        let paths: Vec<String> = names.iter().map(|room| format!("/api/rooms/{room}/messages")).collect();
        let (next, newest) = (Arc::clone(&next), Arc::clone(&newest));
        tasks.push(tokio::spawn(async move {
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= count {
                    return anyhow::Ok(());
                }
                let content = if k % 20 == 0 {
                    format!("backlog {k}: @bench-0 have a look")
                } else {
                    format!("backlog {k}")
                };
                let id = poster.post_to(&paths[k as usize % paths.len()], &content).await?;
                newest.fetch_max(id, Ordering::Relaxed);
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    // The marker: streams start after it, as a page rendered at that id would.
    let id = Poster::new(&server.endpoint, &tokens[cast.publisher(0)], &names[0])
        .await?
        .post("start")
        .await?;
    Ok(id.max(newest.load(Ordering::Relaxed)))
}

/// What one window measured.
struct Window {
    /// Acknowledged messages: (seq, room).
    posted: Vec<(u64, usize)>,
    post_errors: u64,
    /// Every acknowledged read of each reader: (room looked at is implied) up_to and send time.
    reads: Vec<Vec<(i64, u64)>>,
    read_errors: u64,
    read_reconnects: u64,
    read_ack: Histogram<u64>,
    /// The lead's room lists and the keeper's.
    room_list: [Histogram<u64>; 2],
    room_errors: u64,
    /// Rooms in the last list the keeper got.
    rooms_listed: u64,
    elapsed: f64,
    cpu: CpuUse,
    memory: Option<(u64, u64)>,
    /// How much the database file and its WAL grew.
    db_growth: Option<u64>,
}

/// Posts messages `seqs` at `rate` a second, with `readers` marking read if given, and each
/// of `listers` listing its rooms at its interval throughout.
async fn window(
    server: &Server,
    listers: &[(Arc<str>, Duration); 2],
    publishers: &Arc<tokio::sync::Mutex<Vec<Poster>>>,
    names: &[String],
    seqs: std::ops::Range<u64>,
    rate: f64,
    readers: Option<Vec<Reader>>,
) -> anyhow::Result<Window> {
    let db_before = server.db_bytes();
    let cpu = CpuWindow::start(server.pid);
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64((seqs.end - seqs.start) as f64 / rate.max(1e-9));
    let stop = tokio_util::sync::CancellationToken::new();
    let mut listing = Vec::with_capacity(listers.len());
    for (token, every) in listers {
        let conn = UserConn::new(&server.endpoint, token).await?;
        listing.push(tokio::spawn(list_rooms(conn, *every, stop.clone())));
    }
    let reading: Vec<_> = readers
        .into_iter()
        .flatten()
        .map(|reader| tokio::spawn(reader.run(deadline)))
        .collect();
    let mut posters = publishers.lock().await;
    let next = Arc::new(AtomicU64::new(seqs.start));
    let paths: Arc<[String]> = names.iter().map(|room| format!("/api/rooms/{room}/messages")).collect();
    let posting: Vec<_> = posters
        .drain(..)
        .map(|poster| {
            let (next, paths, end) = (Arc::clone(&next), Arc::clone(&paths), seqs.end);
            let first = seqs.start;
            tokio::spawn(publish(poster, paths, next, first, end, rate, start))
        })
        .collect();
    let (mut posted, mut post_errors) = (Vec::new(), 0);
    for task in posting {
        let (poster, acked, errors) = task.await?;
        posters.push(poster);
        posted.extend(acked);
        post_errors += errors;
    }
    drop(posters);
    let (mut reads, mut read_errors, mut read_ack) = (Vec::new(), 0, new_histogram());
    let mut read_reconnects = 0;
    for task in reading {
        let outcome = task.await?;
        reads.push(outcome.acked);
        read_errors += outcome.errors;
        read_reconnects += outcome.reconnects;
        let _ = read_ack.add(&outcome.latency);
    }
    let elapsed = start.elapsed().as_secs_f64();
    stop.cancel();
    let (mut room_list, mut room_errors, mut rooms_listed) = ([new_histogram(), new_histogram()], 0, 0);
    for (k, task) in listing.into_iter().enumerate() {
        let (latency, errors, listed) = task.await?;
        room_list[k] = latency;
        room_errors += errors;
        rooms_listed = listed;
    }
    Ok(Window {
        posted,
        post_errors,
        reads,
        read_errors,
        read_reconnects,
        read_ack,
        room_list,
        room_errors,
        rooms_listed,
        elapsed,
        cpu: cpu.stop(),
        memory: server.memory_kib(),
        db_growth: server
            .db_bytes()
            .zip(db_before)
            .map(|(after, before)| after.saturating_sub(before)),
    })
}

/// `GET /api/rooms` every `every` until `stop`: latency, errors, and the rooms in the last list.
async fn list_rooms(
    mut conn: UserConn,
    every: Duration,
    stop: tokio_util::sync::CancellationToken,
) -> (Histogram<u64>, u64, u64) {
    let (mut latency, mut errors, mut listed) = (new_histogram(), 0u64, 0u64);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.is_cancelled() {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => break,
        }
        let sent = Instant::now();
        match conn.send(Method::GET, "/api/rooms", None).await {
            Ok((StatusCode::OK, body)) => {
                latency.saturating_record(sent.elapsed().as_micros().max(1) as u64);
                listed = body.windows(9).filter(|w| w == b"\"unread\":").count() as u64;
            }
            Ok((status, body)) => {
                if errors == 0 {
                    eprintln!("  GET /api/rooms: {status} {}", String::from_utf8_lossy(&body));
                }
                errors += 1;
            }
            Err(error) => {
                if errors == 0 {
                    eprintln!("  GET /api/rooms: {error:#}");
                }
                errors += 1;
                // The server closes a kept-alive connection that sent nothing for a while (the
                // lead's first list waits for the backlog): open another and go on.
                if conn.reopen().await.is_err() {
                    break;
                }
            }
        }
    }
    (latency, errors, listed)
}

/// Posts stamped messages `seq` (from `next`, below `end`) at `first + seq / rate` seconds,
/// each to the room its `seq` picks; the acknowledged ones.
async fn publish(
    mut poster: Poster,
    paths: Arc<[String]>,
    next: Arc<AtomicU64>,
    first: u64,
    end: u64,
    rate: f64,
    start: Instant,
) -> (Poster, Vec<(u64, usize)>, u64) {
    let (mut acked, mut errors) = (Vec::new(), 0);
    loop {
        let seq = next.fetch_add(1, Ordering::Relaxed);
        if seq >= end {
            return (poster, acked, errors);
        }
        tokio::time::sleep_until(start + Duration::from_secs_f64((seq - first) as f64 / rate)).await;
        let room = room_of(seq, paths.len());
        match poster.post_to(&paths[room], &crate::stats::stamp(seq)).await {
            Ok(_) => acked.push((seq, room)),
            Err(error) => {
                if errors == 0 {
                    eprintln!("  a post failed: {error:#}");
                }
                errors += 1;
            }
        }
    }
}

/// The room message `seq` goes to: the same on every run.
fn room_of(seq: u64, rooms: usize) -> usize {
    Rng::new(seq ^ 0x9e37_79b9_7f4a_7c15).below(rooms)
}

/// The newest message a reader's stream brought in the room they look at.
#[derive(Default)]
struct Looking {
    newest: AtomicI64,
    arrived: Notify,
}

/// One user marking the room they look at read.
struct Reader {
    conn: UserConn,
    endpoint: Arc<Endpoint>,
    token: Arc<str>,
    path: String,
    looking: Arc<Looking>,
}

struct ReaderOutcome {
    /// (up_to, send time) of every acknowledged `PUT`.
    acked: Vec<(i64, u64)>,
    errors: u64,
    /// Connections opened again after the server closed one.
    reconnects: u64,
    latency: Histogram<u64>,
}

impl Reader {
    /// Until `deadline`: whenever a newer message has arrived, and a second has passed since the
    /// last `PUT`, marks the room read up to the newest one.
    async fn run(mut self, deadline: Instant) -> ReaderOutcome {
        let mut outcome = ReaderOutcome {
            acked: Vec::new(),
            errors: 0,
            reconnects: 0,
            latency: new_histogram(),
        };
        let (mut read, mut last_put) = (0i64, None::<Instant>);
        loop {
            let newest = self.looking.newest.load(Ordering::Relaxed);
            if newest <= read {
                tokio::select! {
                    () = self.looking.arrived.notified() => continue,
                    () = tokio::time::sleep_until(deadline) => break,
                }
            }
            if let Some(at) = last_put.map(|at| at + READ_EVERY).filter(|at| *at > Instant::now()) {
                if at >= deadline {
                    break;
                }
                tokio::time::sleep_until(at).await;
            }
            if Instant::now() >= deadline {
                break;
            }
            // What arrived while waiting goes with it.
            let up_to = self.looking.newest.load(Ordering::Relaxed);
            let json = format!("{{\"up_to\":{up_to}}}");
            let (sent, sent_ns) = (Instant::now(), now_ns());
            last_put = Some(sent);
            let mut answer = self.conn.send(Method::PUT, &self.path, Some(json.clone())).await;
            if answer.is_err() {
                // The connection was closed (as a browser would, open another and send again).
                match UserConn::new(&self.endpoint, &self.token).await {
                    Ok(conn) => {
                        self.conn = conn;
                        outcome.reconnects += 1;
                        answer = self.conn.send(Method::PUT, &self.path, Some(json)).await;
                    }
                    Err(error) => answer = Err(error),
                }
            }
            match answer {
                Ok((StatusCode::NO_CONTENT, _)) => {
                    outcome
                        .latency
                        .saturating_record(sent.elapsed().as_micros().max(1) as u64);
                    outcome.acked.push((up_to, sent_ns));
                    read = up_to;
                }
                Ok((status, body)) => {
                    if outcome.errors == 0 {
                        eprintln!("  a read failed: {status} {}", String::from_utf8_lossy(&body));
                    }
                    outcome.errors += 1;
                }
                Err(error) => {
                    if outcome.errors == 0 {
                        eprintln!("  a read failed: {error:#}");
                    }
                    outcome.errors += 1;
                }
            }
        }
        outcome
    }
}

/// One reader's stream: the stamped messages and `read` events it brought.
struct ReadSink {
    base: i64,
    /// The room its reader looks at (`reads-N`).
    looked_at: Vec<u8>,
    looking: Arc<Looking>,
    /// Bit `seq` is set once that message arrived.
    seen: Vec<u64>,
    duplicated: u64,
    out_of_order: u64,
    resets: u64,
    last_id: i64,
    /// Publish-to-receive latency in µs, by window (seq below `total`: the quiet one).
    latencies: [Vec<u32>; 2],
    total: u64,
    /// Every `read` event: its id, room, up_to, arrival time.
    reads: Vec<(i64, Vec<u8>, i64, u64)>,
}

impl ReadSink {
    fn new(base: i64, room: usize, looking: Arc<Looking>, total: u64) -> Self {
        Self {
            base,
            looked_at: room_name(room).into_bytes(),
            looking,
            seen: Vec::new(),
            duplicated: 0,
            out_of_order: 0,
            resets: 0,
            last_id: base,
            latencies: [Vec::new(), Vec::new()],
            total,
            reads: Vec::new(),
        }
    }

    fn has(&self, seq: u64) -> bool {
        self.seen
            .get((seq / 64) as usize)
            .is_some_and(|word| word & (1 << (seq % 64)) != 0)
    }
}

impl Sink for ReadSink {
    fn on_event(&mut self, event: &Event<'_>, now_ns: u64) -> bool {
        if event.event == b"reset" {
            self.resets += 1;
        }
        let Some(id) = event.id else { return false };
        if id <= self.base {
            return false;
        }
        let in_order = id > self.last_id;
        self.last_id = self.last_id.max(id);
        if !in_order {
            self.out_of_order += 1;
        }
        match event.event {
            b"message" => {
                let Some((seq, sent)) = sse::json_str(event.data, "content").and_then(parse_stamp) else {
                    return false;
                };
                let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
                if word >= self.seen.len() {
                    self.seen.resize(word + 1, 0);
                }
                if self.seen[word] & bit != 0 {
                    self.duplicated += 1;
                    return true;
                }
                self.seen[word] |= bit;
                let window = usize::from(seq >= self.total);
                self.latencies[window].push((now_ns.saturating_sub(sent) / 1000).min(u64::from(u32::MAX)) as u32);
                if sse::json_str(event.data, "room") == Some(&self.looked_at[..]) {
                    self.looking.newest.fetch_max(id, Ordering::Relaxed);
                    self.looking.arrived.notify_one();
                }
                true
            }
            b"read" => {
                let room = sse::json_str(event.data, "room").unwrap_or_default().to_vec();
                let up_to = sse::json_i64(event.data, "up_to").unwrap_or(-1);
                self.reads.push((id, room, up_to, now_ns));
                true
            }
            _ => false,
        }
    }
}

/// `"<seq> <nanos>"`, as `stats::stamp` writes it.
fn parse_stamp(content: &[u8]) -> Option<(u64, u64)> {
    let space = content.iter().position(|&b| b == b' ')?;
    let seq = sse::parse_i64(&content[..space])?;
    let sent = sse::parse_i64(&content[space + 1..])?;
    Some((u64::try_from(seq).ok()?, u64::try_from(sent).ok()?))
}

/// What the streams' records say.
struct Check {
    lost: u64,
    duplicated: u64,
    out_of_order: u64,
    resets: u64,
    /// Publish-to-receive latency, quiet window and reading window.
    latency: [Histogram<u64>; 2],
    /// Acknowledged reads that did not reach their reader's stream.
    reads_lost: u64,
    /// Read events that came twice to a stream.
    reads_duplicated: u64,
    /// Read events on a stream that were not its reader's: an event id seen on more than one
    /// stream, or one its reader had no acknowledgement for.
    reads_elsewhere: u64,
    /// From a `PUT` sent to its `read` event on the reader's stream.
    read_latency: Histogram<u64>,
}

impl Check {
    fn of(
        cast: &Cast,
        quiet: &[(u64, usize)],
        busy: &[(u64, usize)],
        reads: &[Vec<(i64, u64)>],
        sinks: &[ReadSink],
    ) -> Self {
        let mut check = Self {
            lost: 0,
            duplicated: 0,
            out_of_order: 0,
            resets: 0,
            latency: [new_histogram(), new_histogram()],
            reads_lost: 0,
            reads_duplicated: 0,
            reads_elsewhere: 0,
            read_latency: new_histogram(),
        };
        let mut streams_of_read: HashMap<i64, u32> = HashMap::new();
        for (i, sink) in sinks.iter().enumerate() {
            for &(seq, room) in quiet.iter().chain(busy) {
                if cast.is_member(i, room) && !sink.has(seq) {
                    check.lost += 1;
                }
            }
            check.duplicated += sink.duplicated;
            check.out_of_order += sink.out_of_order;
            check.resets += sink.resets;
            for (window, latencies) in sink.latencies.iter().enumerate() {
                for &us in latencies {
                    check.latency[window].saturating_record(u64::from(us).max(1));
                }
            }
            // The reader's own reads, by up_to (each PUT moved the cursor further).
            let mut own: HashMap<i64, u64> = reads.get(i).into_iter().flatten().copied().collect();
            let mut ids = std::collections::HashSet::new();
            for (id, room, up_to, arrived) in &sink.reads {
                *streams_of_read.entry(*id).or_default() += 1;
                if !ids.insert(*id) {
                    check.reads_duplicated += 1;
                    continue;
                }
                match own.remove(up_to) {
                    Some(sent) if room == &sink.looked_at => check
                        .read_latency
                        .saturating_record((arrived.saturating_sub(sent) / 1000).max(1)),
                    _ => check.reads_elsewhere += 1,
                }
            }
            check.reads_lost += own.len() as u64;
        }
        check.reads_elsewhere += streams_of_read.values().filter(|&&n| n > 1).count() as u64;
        check
    }
}
