//! Durability under SIGKILL: with the default `--sync full`, a message answered `201` survives a
//! kill of the server at any moment. Sixteen users post as fast as they can, each its own
//! connection, into two rooms; the server is killed at a random moment, restarted on the same
//! file, and killed again, cycle after cycle. Then the database file must hold every
//! acknowledged message, exactly as acknowledged (id, room, user, content); no id is
//! acknowledged twice, each user's ids rise, and after a restart every new id lies above every
//! id in the file, even those of messages stored but never acknowledged; nothing is stored that
//! nobody sent, or twice; and SQLite finds the file sound.
//!
//! The kill moments come from a seeded PRNG; the seed is printed, and `CRASH_SEED=<seed>`
//! replays the same moments (the server's timing still varies).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::common::{Client, Rng, Server, TestDb, WAIT, seed};
use serde_json::{Value, json};

const POSTERS: usize = 16;
const CYCLES: u32 = 20;
/// How long after posting starts the server is killed, in milliseconds.
const KILL_AFTER: (u64, u64) = (50, 500);

/// The room of a poster's `seq`th message: most go to `general`, every third to `second`.
fn room(seq: u32) -> &'static str {
    if seq.is_multiple_of(3) { "second" } else { "general" }
}

/// A message no one else sends: poster, cycle and sequence number, and now and then several
/// lines, non-ASCII text, surrounding white space or a long text, so that exactness is tested.
fn content(poster: &str, cycle: u32, seq: u32) -> String {
    let tag = format!("{poster} cycle {cycle} #{seq}");
    match seq % 5 {
        0 => tag,
        1 => format!("{tag}\nsecond line\r\n\tthird line, indented\n"),
        2 => format!("{tag}: Grüße, 世界 🦀 naïve café — «ok» ﷽"),
        3 => format!("  \t{tag} with white space around it \n "),
        _ => format!("{tag} {}", "a long message ".repeat(250)),
    }
}

/// A message as sent, and as it must be stored if acknowledged.
#[derive(Debug, Clone)]
struct Message {
    cycle: u32,
    poster: String,
    room: &'static str,
    content: String,
}

impl std::fmt::Display for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (poster, room, cycle) = (&self.poster, self.room, self.cycle);
        write!(f, "{poster} in {room}, cycle {cycle}: {}", shown(&self.content))
    }
}

/// What one poster did in one cycle.
#[derive(Default)]
struct PosterLog {
    /// Every message sent, answered or not.
    sent: Vec<Message>,
    /// The acknowledged ones, with their ids, in the order they were answered.
    acked: Vec<(i64, Message)>,
    /// Answers that are neither a `201` with the stored event nor a dead server.
    problems: Vec<String>,
}

/// How one request ended.
enum Answer {
    /// `201` and the whole body arrived.
    Stored(Value),
    /// Another status, or a body that is not the event.
    Odd(String),
    /// No complete answer: the server is gone. The message may or may not be stored.
    Gone,
}

async fn try_post(client: &Client, room: &str, content: &str) -> Answer {
    let sent = client
        .request(reqwest::Method::POST, &format!("/api/rooms/{room}/messages"))
        .json(&json!({ "content": content }))
        .timeout(WAIT)
        .send()
        .await;
    let Ok(response) = sent else { return Answer::Gone };
    let status = response.status();
    // The body is part of the acknowledgement: a `201` cut off by the kill is not one.
    let Ok(body) = response.text().await else {
        return Answer::Gone;
    };
    if status != 201 {
        return Answer::Odd(format!("{status} {body}"));
    }
    serde_json::from_str(&body).map_or_else(|_| Answer::Odd(format!("201 with body {body:?}")), Answer::Stored)
}

/// Posts as fast as it can until the server stops answering.
async fn post_until_killed(client: Client, cycle: u32) -> PosterLog {
    let mut log = PosterLog::default();
    for seq in 0.. {
        let message = Message {
            cycle,
            poster: client.username.clone(),
            room: room(seq),
            content: content(&client.username, cycle, seq),
        };
        log.sent.push(message.clone());
        match try_post(&client, message.room, &message.content).await {
            Answer::Gone => break,
            Answer::Odd(answer) => log.problems.push(format!("{} got {answer}", client.username)),
            Answer::Stored(event) => {
                let echoed = event["type"] == "message"
                    && event["room"] == message.room
                    && event["username"] == message.poster.as_str()
                    && event["content"] == message.content.as_str();
                if !echoed {
                    log.problems.push(format!("{message} was answered with {event}"));
                }
                match event["id"].as_i64() {
                    Some(id) => log.acked.push((id, message)),
                    None => log
                        .problems
                        .push(format!("{message} was answered without an id: {event}")),
                }
            }
        }
    }
    log
}

/// A content for a failure message: quoted, and cut short if long.
fn shown(content: &str) -> String {
    const LONGEST: usize = 80;
    match content.char_indices().nth(LONGEST) {
        None => format!("{content:?}"),
        Some((cut, _)) => format!("{:?}… ({} characters)", &content[..cut], content.chars().count()),
    }
}

/// Panics listing `problems` (the first few of them), if there are any.
fn assert_none(problems: &[String], what: &str) {
    const SHOWN: usize = 20;
    if !problems.is_empty() {
        let list: Vec<&str> = problems.iter().take(SHOWN).map(String::as_str).collect();
        panic!(
            "{what}: {} problems (the first {} below)\n  {}",
            problems.len(),
            list.len(),
            list.join("\n  ")
        );
    }
}

/// The highest event id ever handed out, by the database's own account.
async fn newest_id(db: &TestDb) -> i64 {
    let mut conn = db.connect().await;
    sqlx::query_scalar(
        "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0), \
                    coalesce((SELECT max(id) FROM events), 0))",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap()
}

/// Everything the posters sent and were acknowledged, over all cycles.
#[derive(Default)]
struct Ledger {
    acked: BTreeMap<i64, Message>,
    /// By content, which is unique per message.
    sent: HashMap<String, Message>,
}

impl Ledger {
    /// Takes in one cycle's logs, checking the ids: new ones above every id acknowledged before
    /// and above `floor` (the newest id in the file when the cycle began), never one twice, and
    /// rising per poster.
    fn record(&mut self, cycle: u32, floor: i64, logs: Vec<PosterLog>) {
        let newest_acked = self.acked.keys().next_back().copied().unwrap_or(0);
        let mut problems = Vec::new();
        for log in logs {
            problems.extend(log.problems);
            for message in log.sent {
                self.sent.insert(message.content.clone(), message);
            }
            for pair in log.acked.windows(2) {
                let [(earlier, first), (later, second)] = pair else {
                    unreachable!()
                };
                if later <= earlier {
                    problems.push(format!(
                        "{} got id {later} for {second} after id {earlier} for {first}",
                        second.poster
                    ));
                }
            }
            for (id, message) in log.acked {
                if id <= newest_acked {
                    problems.push(format!(
                        "id {id} for {message} is not above {newest_acked}, acknowledged in an earlier cycle"
                    ));
                }
                if id <= floor {
                    problems.push(format!(
                        "id {id} for {message} is not above {floor}, the newest id in the file before the restart"
                    ));
                }
                if let Some(before) = self.acked.get(&id) {
                    problems.push(format!("id {id} acknowledged twice: for {before} and for {message}"));
                }
                self.acked.insert(id, message);
            }
        }
        assert_none(&problems, &format!("answers in cycle {cycle}"));
    }

    /// Checks the file against the ledger: every acknowledged message stored exactly, nothing
    /// stored that was not sent or stored twice, `integrity_check` clean. Returns how many
    /// stored messages were never acknowledged (their requests died with the server).
    async fn verify(&self, db: &TestDb, when: &str) -> usize {
        let mut conn = db.connect().await;
        let integrity: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_all(&mut conn)
            .await
            .unwrap();
        assert_eq!(integrity, ["ok"], "integrity_check {when}");
        let rows: Vec<(i64, String, String, String)> =
            sqlx::query_as("SELECT id, room, username, content FROM messages ORDER BY id")
                .fetch_all(&mut conn)
                .await
                .unwrap();
        let stored: HashMap<i64, (&str, &str, &str)> = rows
            .iter()
            .map(|(id, room, username, content)| (*id, (room.as_str(), username.as_str(), content.as_str())))
            .collect();

        let mut problems = Vec::new();
        for (id, message) in &self.acked {
            let expected = (message.room, message.poster.as_str(), message.content.as_str());
            match stored.get(id) {
                None => problems.push(format!("lost id {id}, acknowledged for {message}")),
                Some(&(room, username, content)) if (room, username, content) != expected => problems.push(format!(
                    "id {id}, acknowledged for {message}, is stored as {username} in {room}: {}",
                    shown(content)
                )),
                Some(_) => {}
            }
        }
        let mut seen = HashSet::new();
        for (id, room, username, content) in &rows {
            match self.sent.get(content) {
                None => problems.push(format!(
                    "id {id} by {username} in {room} holds {}, never sent",
                    shown(content)
                )),
                Some(sent) if (sent.room, sent.poster.as_str()) != (room.as_str(), username.as_str()) => problems.push(
                    format!("id {id} is stored as {username} in {room}, but was sent as {sent}"),
                ),
                Some(_) => {}
            }
            if !seen.insert(content) {
                problems.push(format!("id {id}: {} is stored twice", shown(content)));
            }
        }
        assert_none(&problems, &format!("the database {when}"));
        rows.iter().filter(|(id, ..)| !self.acked.contains_key(id)).count()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_sixteen_concurrent_posters_loses_no_acknowledged_message() {
    let seed = seed("CRASH_SEED");
    println!("seed {seed} (replay with CRASH_SEED={seed})");
    let mut rng = Rng::new(seed);
    let started = Instant::now();
    let db = TestDb::new();
    let mut server = Server::start(&db, &[]).await;
    let posters: Vec<Client> = {
        let server = &server;
        futures_util::future::join_all((0..POSTERS).map(|n| async move { server.user(&format!("p{n:02}")).await }))
            .await
    };
    assert_eq!(posters[0].create_room("second").await.status(), 201);

    let mut ledger = Ledger::default();
    let mut acked_per_cycle = Vec::new();
    for cycle in 1..=CYCLES {
        let floor = newest_id(&db).await;
        let tasks: Vec<_> = posters
            .iter()
            .map(|poster| tokio::spawn(post_until_killed(poster.against(&server), cycle)))
            .collect();
        // The random moment is the point of the test, so here a sleep is right.
        let kill_after = rng.between(KILL_AFTER);
        tokio::time::sleep(Duration::from_millis(kill_after)).await;
        server.kill().await;

        let mut logs = Vec::new();
        for task in tasks {
            let log = tokio::time::timeout(WAIT, task)
                .await
                .expect("a poster stops once the server is gone")
                .expect("poster");
            logs.push(log);
        }
        let acked: usize = logs.iter().map(|log| log.acked.len()).sum();
        let unanswered = logs.iter().map(|log| log.sent.len()).sum::<usize>() - acked;
        ledger.record(cycle, floor, logs);

        let restart = Instant::now();
        server = Server::start(&db, &[]).await;
        // The address is announced before the database is opened; `/healthz` answers once it is.
        let health = tokio::time::timeout(WAIT, reqwest::get(server.url("/healthz")))
            .await
            .expect("the restarted server answers in time")
            .expect("GET /healthz");
        assert_eq!(health.status(), 200, "the restarted server is healthy");
        let restart = restart.elapsed();
        let stored_unacked = ledger.verify(&db, &format!("after the kill in cycle {cycle}")).await;
        println!(
            "cycle {cycle:2}: killed after {kill_after:3} ms, {acked:4} acknowledged, {unanswered:2} unanswered, \
             restart took {restart:?}; stored but never acknowledged so far: {stored_unacked}"
        );
        acked_per_cycle.push(acked);
    }
    server.kill().await;
    let stored_unacked = ledger.verify(&db, "after the final kill").await;
    println!(
        "{} cycles, {} messages acknowledged ({acked_per_cycle:?} per cycle) and all stored; \
         {stored_unacked} more stored unacknowledged; {:?} in all",
        CYCLES,
        ledger.acked.len(),
        started.elapsed()
    );
    assert!(
        acked_per_cycle.iter().filter(|acked| **acked > 0).count() as u32 > CYCLES / 2,
        "most cycles must have acknowledged something for the test to mean anything: {acked_per_cycle:?}"
    );
}
