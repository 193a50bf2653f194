//! The operator's commands on the database file: `backup` while sixteen writers post and
//! delete, `export` and `import` round-tripping a history exactly, an export of a million
//! messages in bounded memory, and every command's `--help` and mistakes.

use std::collections::{HashMap, HashSet};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::{ConnectOptions, Connection};
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use crate::common::{Client, Rng, Server, TestDb, WAIT, seed};

/// Runs `chat-server ARGS` (with `stdin`, if any) and waits for it.
pub(crate) async fn chat(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_chat-server"))
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("CHAT_DB")
        .kill_on_drop(true)
        .spawn()
        .expect("run chat-server");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(input).await.expect("write stdin");
        drop(pipe);
    }
    tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("the command ends in time")
        .expect("wait for chat-server")
}

/// Whether it worked, its standard output and its standard error.
pub(crate) fn said(output: &Output) -> (bool, String, String) {
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    )
}

fn text(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temp path")
}

/// Opens a database file as `sqlite3 -readonly` would.
async fn read_only(path: &Path) -> sqlx::SqliteConnection {
    sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .connect()
        .await
        .expect("open the file read only")
}

/// Appends `count` messages (`seeded message N`) by `author` to `room`, indexed for search as
/// the writer indexes posts, straight into the file of a stopped server.
async fn seed_messages(db: &Path, room: &str, author: &str, count: u64) {
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(db)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
        .synchronous(sqlx::sqlite::SqliteSynchronous::Off)
        .connect()
        .await
        .expect("open the database");
    let mut tx = conn.begin().await.expect("begin");
    let first: i64 =
        sqlx::query_scalar("SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0) + 1")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    sqlx::query(
        "INSERT INTO events (kind, scope, room_id, user_id, body) \
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1) \
         SELECT 'message', 'room', (SELECT id FROM rooms WHERE name = ?2), \
                (SELECT id FROM users WHERE username = ?3), 'seeded message ' || i FROM n",
    )
    .bind(count as i64)
    .bind(room)
    .bind(author)
    .execute(&mut *tx)
    .await
    .expect("seed messages");
    sqlx::query(
        "INSERT INTO message_search (rowid, text) SELECT id, body FROM events WHERE id >= ? AND kind = 'message'",
    )
    .bind(first)
    .execute(&mut *tx)
    .await
    .expect("index them");
    tx.commit().await.expect("commit");
    conn.close().await.expect("close");
}

#[derive(Default)]
struct Writes {
    /// Every message acknowledged, and when.
    acked: Vec<(i64, Instant)>,
    /// Every message whose deletion was asked for.
    deleted: HashSet<i64>,
    /// Every answer that was not a success.
    refused: Vec<String>,
    /// The slowest answer, and when it came.
    slowest: (Duration, Option<Instant>),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_sixteen_writers_post_and_delete_holds_every_message_acknowledged_before_it() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let mut writers = Vec::new();
    for w in 0..16 {
        writers.push(server.user(&format!("writer{w}")).await);
    }
    server.terminate().await;
    // A history long enough that the copy takes a while: the writers are writing meanwhile.
    seed_messages(&db.path(), "general", "writer0", 200_000).await;
    let server = Server::start(&db, &[]).await;

    let writes = Arc::new(Mutex::new(Writes::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (w, writer) in writers.iter().enumerate() {
        let (writer, writes, stop) = (writer.against(&server), Arc::clone(&writes), Arc::clone(&stop));
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for n in 0..20_000u32 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                // A quarter of the writers delete one of their messages now and then: each
                // deletion makes the server truncate its WAL, which must not wait on the
                // backup's reading.
                let deleting = w % 4 == 0 && n % 8 == 7 && !mine.is_empty();
                let sent = Instant::now();
                let (ok, id) = if deleting {
                    let id = mine.remove(n as usize % mine.len());
                    writes.lock().unwrap().deleted.insert(id);
                    let response = writer
                        .request(Method::DELETE, &format!("/api/messages/{id}"))
                        .send()
                        .await
                        .expect("DELETE");
                    let status = response.status();
                    (status == 200, format!("delete {id}: {status}"))
                } else {
                    let response = writer.post("general", &format!("writer{w} says {n}")).await;
                    let status = response.status();
                    if status == 201 {
                        let body: Value = response.json().await.expect("event");
                        let id = body["id"].as_i64().expect("id");
                        mine.push(id);
                        writes.lock().unwrap().acked.push((id, Instant::now()));
                    }
                    (status == 201, format!("post: {status}"))
                };
                let took = sent.elapsed();
                let mut writes = writes.lock().unwrap();
                if !ok {
                    writes.refused.push(id);
                }
                if took > writes.slowest.0 {
                    writes.slowest = (took, Some(Instant::now()));
                }
            }
        }));
    }
    let acked = || writes.lock().unwrap().acked.len();
    let deadline = Instant::now() + WAIT;
    while acked() < 320 {
        assert!(Instant::now() < deadline, "the writers are not writing");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("backup.db");
    let before: Vec<i64> = writes.lock().unwrap().acked.iter().map(|(id, _)| *id).collect();
    let started = Instant::now();
    let backup = chat(&["backup", "--db", text(&db.path()), text(&out)], None).await;
    let ended = Instant::now();
    let (ok, said_out, err) = said(&backup);
    assert!(ok, "backup failed: {err}");
    assert!(said_out.contains("integrity check ok"), "{said_out}");

    // The writers go on a little after it, then stop.
    let after = acked();
    let deadline = Instant::now() + WAIT;
    while acked() < after + 160 {
        assert!(Instant::now() < deadline, "the writers stopped writing");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("writer");
    }
    let writes = Arc::try_unwrap(writes).ok().unwrap().into_inner().unwrap();
    assert!(writes.refused.is_empty(), "refused: {:?}", writes.refused);
    let during = writes
        .acked
        .iter()
        .filter(|(_, at)| *at > started && *at < ended)
        .count();
    assert!(during > 0, "no message was acknowledged while the backup ran");
    eprintln!(
        "backup took {:?}; {during} messages acknowledged meanwhile; the slowest write took {:?} ({} the backup)",
        ended - started,
        writes.slowest.0,
        match writes.slowest.1 {
            Some(at) if at > started && at < ended => "during",
            _ => "not during",
        }
    );

    // One file, the owner's alone, with no `-wal` or `-shm` beside it.
    for beside in ["backup.db-wal", "backup.db-shm", "backup.db-journal"] {
        assert!(!out_dir.path().join(beside).exists(), "{beside} beside the copy");
    }
    let leftovers: Vec<_> = std::fs::read_dir(out_dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, ["backup.db"], "nothing but the copy is left");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the copy is readable by its owner only");
    }
    // Moved on its own to another place, it opens and is sound.
    let restored = TestDb::new();
    std::fs::copy(&out, restored.path()).unwrap();
    let mut copy = read_only(&restored.path()).await;
    let check: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_all(&mut copy)
        .await
        .unwrap();
    assert_eq!(check, ["ok"]);
    let held: HashSet<i64> = sqlx::query_scalar("SELECT id FROM events WHERE kind = 'message' AND body IS NOT NULL")
        .fetch_all(&mut copy)
        .await
        .unwrap()
        .into_iter()
        .collect();
    copy.close().await.unwrap();
    let missing: Vec<i64> = before
        .iter()
        .filter(|id| !held.contains(id) && !writes.deleted.contains(id))
        .copied()
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged before the backup, not in it: {missing:?}"
    );
    assert!(held.len() >= 200_000, "the seeded history is in it");

    // A server started on the copy serves it.
    server.terminate().await;
    let server = Server::start(&restored, &[]).await;
    let writer = writers[3].against(&server);
    let last = before
        .iter()
        .rev()
        .find(|id| !writes.deleted.contains(id))
        .expect("a message before the backup");
    let message = writer.get_json(&format!("/api/messages/{last}")).await;
    assert_eq!(message["id"], json!(last), "{message}");
    assert!(message["content"].as_str().unwrap().starts_with("writer"), "{message}");
    let signed_in = server.anonymous().sign_in("writer5", "correct horse battery").await;
    assert_eq!(signed_in.status(), 200);
    assert!(!writer.history("general", "?limit=50").await.is_empty());
}

/// Sends a request and returns its status and JSON answer (`Null` for none).
async fn send(client: &Client, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = client.request(method, path);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let text = response.text().await.expect("answer");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A history with everything an export carries, made through the API: four people, public
/// rooms (one with a topic, later archived), a private room one of them has left, two direct
/// rooms, mentions of people and of the room, replies (to a live message and to a deleted
/// one), edits, deletions and reactions. Returns the people and the rooms each can read.
async fn make_history(server: &Server, rng: &mut Rng) -> (Vec<Client>, Vec<(String, Vec<usize>)>) {
    let names = ["ada", "bob", "carol", "dan"];
    let mut people = Vec::new();
    for name in names {
        people.push(server.user(name).await);
    }
    let (ada, bob) = (&people[0], &people[1]);
    // The first lines of the export: the import makes dan and carol first, then bob and ada,
    // so whom a message mentions must not come out in the order of the accounts' ids.
    people[3].say("general", "@carol first").await;
    let both = bob.say("general", "@carol and @ada second").await;
    assert_eq!(both["mentions"].as_array().map(Vec::len), Some(2));
    let (status, _) = send(
        bob,
        Method::POST,
        "/api/rooms",
        Some(json!({"name": "dev", "topic": "builds, \"releases\" and bugs"})),
    )
    .await;
    assert_eq!(status, 201);
    ada.create_private_room("ops").await;
    ada.add_member("ops", "bob").await;
    ada.add_member("ops", "carol").await;
    let (_, pair) = ada.dm(&["bob"]).await;
    let (_, group) = bob.dm(&["ada", "dan"]).await;
    let pair = pair["name"].as_str().unwrap().to_owned();
    let group = group["name"].as_str().unwrap().to_owned();
    // Who posts where: everyone in the public rooms, members in the others.
    let rooms: Vec<(String, Vec<usize>)> = vec![
        ("general".into(), vec![0, 1, 2, 3]),
        ("dev".into(), vec![0, 1, 2, 3]),
        ("ops".into(), vec![0, 1, 2]),
        (pair, vec![0, 1]),
        (group, vec![0, 1, 3]),
    ];
    // Live messages by room: (id, author).
    let mut live: HashMap<String, Vec<(i64, usize)>> = HashMap::new();
    let emoji = ["👍", "🎉", "ok", "👀"];
    for step in 0..160 {
        let (room, members) = &rooms[rng.below(rooms.len())];
        let who = *rng.pick(members);
        let author = &people[who];
        let said_here = live.entry(room.clone()).or_default();
        match rng.below(10) {
            // An edit of one of the author's own messages.
            0 if said_here.iter().any(|(_, by)| *by == who) => {
                let own: Vec<i64> = said_here
                    .iter()
                    .filter(|(_, by)| *by == who)
                    .map(|(id, _)| *id)
                    .collect();
                let id = *rng.pick(&own);
                let mention = names[rng.below(4)];
                let (status, _) = send(
                    author,
                    Method::PATCH,
                    &format!("/api/messages/{id}"),
                    Some(json!({"content": format!("edited{step} now says hi @{mention}")})),
                )
                .await;
                assert_eq!(status, 200);
            }
            // A deletion (of one's own).
            1 if said_here.iter().any(|(_, by)| *by == who) => {
                let at = said_here.iter().position(|(_, by)| *by == who).unwrap();
                let (id, _) = said_here.remove(at);
                let (status, _) = send(author, Method::DELETE, &format!("/api/messages/{id}"), None).await;
                assert_eq!(status, 200);
            }
            // Reactions.
            2 | 3 if !said_here.is_empty() => {
                let (id, _) = *rng.pick(said_here);
                let chosen: &str = emoji[rng.below(emoji.len())];

                let path = format!(
                    "/api/messages/{id}/reactions/{}",
                    utf8_percent_encode(chosen, NON_ALPHANUMERIC)
                );
                let (status, _) = send(author, Method::PUT, &path, None).await;
                assert!(status == 200 || status == 204, "{status}");
            }
            // A post: sometimes a reply, a mention, the room called, or text CSV must quote.
            kind => {
                let mut content = format!("m{step} from {}", names[who]);
                match kind {
                    4 => content.push_str(&format!(" @{}", names[rng.below(4)])),
                    5 => content.push_str(" @here, look"),
                    6 => content.push_str(", with \"quotes\", commas\nand a second line"),
                    7 => content.push_str(" **bold** and `code` <b>no</b> café"),
                    _ => {}
                }
                let mut body = json!({"content": content});
                if kind == 8 && !said_here.is_empty() {
                    body["reply_to"] = json!(rng.pick(said_here).0);
                }
                let (status, posted) =
                    send(author, Method::POST, &format!("/api/rooms/{room}/messages"), Some(body)).await;
                assert_eq!(status, 201, "{posted}");
                said_here.push((posted["id"].as_i64().unwrap(), who));
            }
        }
    }
    // A reply to a message deleted after it.
    let (_, first) = send(
        ada,
        Method::POST,
        "/api/rooms/general/messages",
        Some(json!({"content": "soon gone"})),
    )
    .await;
    let first = first["id"].as_i64().unwrap();
    let (status, _) = send(
        bob,
        Method::POST,
        "/api/rooms/general/messages",
        Some(json!({"content": "answering what goes", "reply_to": first})),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _) = send(ada, Method::DELETE, &format!("/api/messages/{first}"), None).await;
    assert_eq!(status, 200);
    // Carol leaves ops, her messages staying; dev is archived.
    let (status, _) = ada.membership("ops", "carol", false).await;
    assert_eq!(status, 200);
    let (status, _) = send(bob, Method::PATCH, "/api/rooms/dev", Some(json!({"archived": true}))).await;
    assert_eq!(status, 200);
    let rooms = rooms
        .into_iter()
        .map(|(room, members)| {
            let readers = if room == "ops" { vec![0, 1] } else { members };
            (room, readers)
        })
        .collect();
    (people, rooms)
}

/// The message lines of a JSON lines export, parsed.
fn messages_of(export: &str) -> Vec<Value> {
    export
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("a JSON line"))
        .filter(|line| line["type"] == "message")
        .collect()
}

#[tokio::test]
async fn an_export_imported_into_a_new_database_exports_byte_for_byte_the_same_and_serves_the_same_history() {
    let seed = seed("OPERATIONS_SEED");
    eprintln!("OPERATIONS_SEED={seed}");
    let a = TestDb::new();
    let server_a = Server::start(&a, &[]).await;
    let (people, rooms) = make_history(&server_a, &mut Rng::new(seed)).await;

    let exported = chat(&["export", "--db", text(&a.path()), "--format", "jsonl"], None).await;
    let (ok, export_a, err) = said(&exported);
    assert!(ok, "{err}");
    let messages = messages_of(&export_a);
    assert!(messages.len() > 60, "{} messages", messages.len());
    // Oldest first, each as the API shows it.
    let ids: Vec<i64> = messages.iter().map(|m| m["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");
    let ada = &people[0];
    for message in messages.iter().step_by(7) {
        let shown = ada.get_json(&format!("/api/messages/{}", message["id"])).await;
        if shown.get("error").is_none() {
            assert_eq!(&shown, message);
        }
    }
    assert!(
        messages.iter().any(|m| m["edited_at"].is_string())
            && messages
                .iter()
                .any(|m| m["reactions"].as_array().is_some_and(|r| !r.is_empty()))
            && messages.iter().any(|m| m["reply_to"].is_i64())
            && messages.iter().any(|m| m["mentions_room"] == true),
        "the history has edits, reactions, replies and room mentions"
    );
    // Each room made through the API is described once, before its first message.
    let lines: Vec<Value> = export_a.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let ops = lines
        .iter()
        .position(|line| line["type"] == "room" && line["room"] == "ops")
        .expect("ops described");
    assert_eq!(lines[ops]["kind"], "private");
    assert_eq!(lines[ops]["members"], json!(["ada", "bob"]));
    assert_eq!(lines[ops + 1]["room"], "ops");
    let dev = lines
        .iter()
        .find(|line| line["type"] == "room" && line["room"] == "dev")
        .unwrap();
    assert_eq!(
        (&dev["topic"], &dev["archived"], &dev["by"]),
        (&json!("builds, \"releases\" and bugs"), &json!(true), &json!("bob"))
    );

    let b = TestDb::new();
    let file = b.path().with_file_name("export.jsonl");
    std::fs::write(&file, &export_a).unwrap();
    let (ok, out, err) = said(&chat(&["import", "--db", text(&b.path()), text(&file)], None).await);
    assert!(ok, "import failed: {err}");
    assert!(
        out.starts_with(&format!("{} messages imported", messages.len())),
        "{out}"
    );
    assert!(out.contains("reset-password"), "{out}");
    let (ok, export_b, err) = said(&chat(&["export", "--db", text(&b.path()), "--format", "jsonl"], None).await);
    assert!(ok, "{err}");
    assert!(
        export_b == export_a,
        "the import exports differently:\n{export_a}\n---\n{export_b}"
    );

    // Importing again, or into a database that holds messages, is refused.
    let (ok, _, err) = said(&chat(&["import", "--db", text(&b.path()), text(&file)], None).await);
    assert!(!ok);
    assert!(
        err.starts_with("chat-server import: ") && err.contains("already holds messages"),
        "{err}"
    );
    assert!(!err.contains('\n'), "one line: {err}");

    // From standard input, the same.
    let c = TestDb::new();
    let (ok, _, err) = said(&chat(&["import", "--db", text(&c.path()), "-"], Some(export_a.as_bytes())).await);
    assert!(ok, "{err}");
    let (_, export_c, _) = said(&chat(&["export", "--db", text(&c.path()), "--format", "jsonl"], None).await);
    assert!(export_c == export_a);

    // A server on the imported database: nobody signs in until given a password.
    let server_b = Server::start(&b, &[]).await;
    let refused = server_b
        .anonymous()
        .sign_in("bob", "no account has this password")
        .await;
    assert_eq!(refused.status(), 401);
    let mut on_b = Vec::new();
    for person in &people {
        let (ok, out, err) = said(
            &chat(
                &["admin", "--db", text(&b.path()), "reset-password", &person.username],
                Some(b"a new password\n"),
            )
            .await,
        );
        assert!(ok, "{err}");
        assert!(out.contains("password reset"), "{out}");
        let signed: Value = server_b
            .anonymous()
            .sign_in(&person.username, "a new password")
            .await
            .json()
            .await
            .unwrap();
        let mut client = person.against(&server_b);
        client.token = Some(signed["token"].as_str().expect("signed in").to_owned());
        on_b.push(client);
    }
    // The same history, room by room, for everyone who reads it; the same rooms.
    for (room, readers) in &rooms {
        for &reader in readers {
            let there = people[reader].history(room, "?limit=200").await;
            let here = on_b[reader].history(room, "?limit=200").await;
            assert_eq!(there, here, "{room} as {}", people[reader].username);
        }
    }
    let shape = |listing: Value| -> Vec<Value> {
        listing["rooms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|room| {
                json!([
                    room["name"],
                    room["kind"],
                    room["topic"],
                    room["archived"],
                    room["members"]
                ])
            })
            .collect()
    };
    for reader in 0..people.len() {
        assert_eq!(
            shape(people[reader].get_json("/api/rooms").await),
            shape(on_b[reader].get_json("/api/rooms").await),
            "rooms of {}",
            people[reader].username
        );
    }
    // Search finds what the messages say now, and nothing of what was deleted or replaced.
    let searched = |client: &Client, q: &str| {
        let (client, q) = (client.clone(), q.to_owned());
        async move {
            let found = client.get_json(&format!("/api/search?q={q}&limit=50")).await;
            let mut ids: Vec<i64> = found["results"]
                .as_array()
                .unwrap_or_else(|| panic!("{found}"))
                .iter()
                .map(|hit| hit["id"].as_i64().unwrap())
                .collect();
            ids.sort_unstable();
            ids
        }
    };
    let edited = messages.iter().find(|m| m["edited_at"].is_string()).unwrap();
    let word = edited["content"]
        .as_str()
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_owned();
    let unedited = messages.iter().find(|m| m["edited_at"].is_null()).unwrap();
    let tag = unedited["content"]
        .as_str()
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_owned();
    for q in [word.as_str(), tag.as_str(), "soon", "café", "from"] {
        let there = searched(&people[1], q).await;
        let here = searched(&on_b[1], q).await;
        assert_eq!(there, here, "searching {q}");
        if q != "soon" {
            assert!(!here.is_empty(), "{q} finds something");
        }
    }
    // The user's stream replays every message bob may read, each ending as exported.
    let head: i64 = {
        let mut conn = read_only(&b.path()).await;
        let head = sqlx::query_scalar("SELECT max(id) FROM events")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        head
    };
    let mut stream = on_b[1].open_user_stream("?after=0", None).await;
    let mut replayed: HashMap<i64, Value> = HashMap::new();
    for event in stream.until_id(head, false).await {
        let data: Value = serde_json::from_str(&event.data).unwrap();
        match event.event.as_str() {
            "message" => {
                replayed.insert(data["id"].as_i64().unwrap(), data);
            }
            "edit" => {
                let message = replayed
                    .get_mut(&data["message_id"].as_i64().unwrap())
                    .expect("edit of a replayed message");
                message["content"] = data["content"].clone();
            }
            _ => {}
        }
    }
    let readable: HashSet<&str> = rooms
        .iter()
        .filter(|(_, readers)| readers.contains(&1))
        .map(|(room, _)| room.as_str())
        .collect();
    let expected: Vec<&Value> = messages
        .iter()
        .filter(|m| readable.contains(m["room"].as_str().unwrap()))
        .collect();
    assert_eq!(replayed.len(), expected.len());
    for message in expected {
        let got = &replayed[&message["id"].as_i64().unwrap()];
        assert_eq!(got["content"], message["content"]);
    }

    // CSV: a header, then a row a message, quoted where needed.
    let (ok, csv_text, err) = said(&chat(&["export", "--db", text(&a.path()), "--format", "csv"], None).await);
    assert!(ok, "{err}");
    let mut rows = csv::Reader::from_reader(csv_text.as_bytes());
    assert_eq!(
        rows.headers().unwrap().iter().collect::<Vec<_>>(),
        [
            "id",
            "room",
            "username",
            "content",
            "created_at",
            "edited_at",
            "reply_to"
        ]
    );
    let rows: Vec<csv::StringRecord> = rows.records().map(|row| row.unwrap()).collect();
    assert_eq!(rows.len(), messages.len());
    for (row, message) in rows.iter().zip(&messages) {
        assert_eq!(row[0], message["id"].to_string());
        assert_eq!(&row[3], message["content"].as_str().unwrap());
        assert_eq!(&row[5], message["edited_at"].as_str().unwrap_or(""));
        assert_eq!(
            row[6],
            message["reply_to"]
                .as_i64()
                .map(|id| id.to_string())
                .unwrap_or_default()
        );
    }

    // The filters take exactly their part of the whole.
    let (_, only_ops, _) = said(
        &chat(
            &["export", "--db", text(&a.path()), "--room", "ops", "--format", "jsonl"],
            None,
        )
        .await,
    );
    let mut expected: Vec<&str> = export_a
        .lines()
        .filter(|line| serde_json::from_str::<Value>(line).unwrap()["room"] == "ops")
        .collect();
    expected.push("");
    assert_eq!(only_ops, expected.join("\n"));
    let middle = &messages[messages.len() / 2];
    let after = middle["id"].as_i64().unwrap();
    let (_, later, _) = said(
        &chat(
            &[
                "export",
                "--db",
                text(&a.path()),
                "--after",
                &after.to_string(),
                "--format",
                "jsonl",
            ],
            None,
        )
        .await,
    );
    let later: Vec<Value> = messages_of(&later);
    assert_eq!(later.as_slice(), &messages[messages.len() / 2 + 1..]);
    let since = middle["created_at"].as_str().unwrap();
    let (_, recent, _) = said(
        &chat(
            &["export", "--db", text(&a.path()), "--since", since, "--format", "jsonl"],
            None,
        )
        .await,
    );
    let recent: Vec<Value> = messages_of(&recent);
    let expected: Vec<Value> = messages
        .iter()
        .filter(|m| m["created_at"].as_str().unwrap() >= since)
        .cloned()
        .collect();
    assert_eq!(recent, expected);
}

/// Peak resident memory of `chat-server ARGS` (KiB), and how many lines and bytes it wrote.
/// The peak is the process's own `VmHWM`, read while it runs until it exits (it only grows).
/// Not `wait4`'s `ru_maxrss`: that counts the test process's memory too, which the child
/// shares between `fork` and `exec`.
fn peak_memory(args: &[&str]) -> (u64, u64, u64) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_chat-server"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run chat-server");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let (mut lines, mut bytes) = (0u64, 0u64);
        let mut buffer = vec![0u8; 1 << 16];
        loop {
            let n = stdout.read(&mut buffer).expect("read the export");
            if n == 0 {
                return (lines, bytes);
            }
            bytes += n as u64;
            lines += buffer[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        }
    });
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak = 0u64;
    let status = loop {
        if let Ok(status) = std::fs::read_to_string(&status_file)
            && let Some(kib) = status
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:"))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            peak = peak.max(kib);
        }
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "the export failed: {status}");
    let (lines, bytes) = reader.join().unwrap();
    (peak, lines, bytes)
}

/// The bound README states for `export`, whatever the history's length.
const EXPORT_MEMORY_MIB: u64 = 32;

#[tokio::test]
async fn an_export_of_a_million_messages_stays_under_its_memory_bound() {
    const MESSAGES: u64 = 1_000_000;
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    server.user("ada").await;
    server.terminate().await;
    let started = Instant::now();
    seed_messages(&db.path(), "general", "ada", MESSAGES).await;
    let seeded = started.elapsed();
    let path = db.path();
    let started = Instant::now();
    let (kib, lines, bytes) =
        tokio::task::spawn_blocking(move || peak_memory(&["export", "--db", text(&path), "--format", "jsonl"]))
            .await
            .unwrap();
    eprintln!(
        "seeded {MESSAGES} messages in {seeded:?}; exported {lines} lines ({} MiB) in {:?} with a peak RSS of {:.1} MiB",
        bytes >> 20,
        started.elapsed(),
        kib as f64 / 1024.0
    );
    assert_eq!(lines, MESSAGES);
    assert!(
        bytes > 100 << 20,
        "the export is far larger than the bound: {bytes} bytes"
    );
    assert!(
        kib < EXPORT_MEMORY_MIB * 1024,
        "the export's peak RSS was {kib} KiB, over {EXPORT_MEMORY_MIB} MiB"
    );
}

#[tokio::test]
async fn every_command_explains_itself_and_says_what_is_wrong_in_one_line() {
    for (command, mentions) in [
        ("backup", &["OUT", "--force", "--db", "integrity_check"][..]),
        (
            "export",
            &["--format", "--since", "--after", "--room", "jsonl", "csv"][..],
        ),
        ("import", &["FILE", "standard input", "reset-password", "--db"][..]),
    ] {
        let (ok, help, _) = said(&chat(&[command, "--help"], None).await);
        assert!(ok, "{command} --help");
        for word in mentions {
            assert!(help.contains(word), "{command} --help says {word}:\n{help}");
        }
    }

    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    server.user("ada").await.say("general", "hello").await;
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.db");
    let elsewhere = dir.path().join("copy.db");
    let existing = dir.path().join("taken.db");
    std::fs::write(&existing, b"keep me").unwrap();
    let bad_lines = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad_lines,
        "{\"type\":\"message\",\"id\":1,\"room\":\"general\",\"username\":\"ada\",\"content\":\"hi\",\"created_at\":\"2026-01-01T00:00:00.000Z\"}\n\
         {\"type\":\"message\",\"id\":2,\"room\":\"general\",\"username\":\"ada\",\"content\":\"hi\",\"created_at\":\"yesterday\"}\n",
    )
    .unwrap();
    let db_path = db.path();
    let db = text(&db_path);
    let new_db = dir.path().join("new.db");
    for (args, says) in [
        (
            vec!["backup", "--db", text(&missing), text(&elsewhere)],
            "there is no database at",
        ),
        (vec!["backup", "--db", db, text(&existing)], "--force"),
        (vec!["backup", "--db", db, db, "--force"], "the database itself"),
        (vec!["backup", "--db", db], "OUT"),
        (
            vec!["export", "--db", text(&missing), "--format", "jsonl"],
            "there is no database at",
        ),
        (vec!["export", "--db", db, "--format", "xml"], "xml"),
        (vec!["export", "--db", db], "--format"),
        (
            vec!["export", "--db", db, "--since", "yesterday", "--format", "csv"],
            "`--since` must be a date",
        ),
        (vec!["export", "--db", db, "--after=-3", "--format", "csv"], "--after"),
        (
            vec!["export", "--db", db, "--room", "nowhere", "--format", "csv"],
            "no room called \"nowhere\"",
        ),
        (
            vec!["export", "--db", text(&existing), "--format", "csv"],
            "not a chat database",
        ),
        (vec!["import", "--db", text(&new_db), text(&missing)], "cannot read"),
        (
            vec!["import", "--db", text(&new_db), text(&bad_lines)],
            "line 2: `created_at` must be a date",
        ),
        (vec!["import", "--db", db, text(&bad_lines)], "already holds messages"),
        (vec!["import", "--db", text(&new_db)], "FILE"),
    ] {
        let output = chat(&args, None).await;
        let (ok, out, err) = said(&output);
        assert!(!ok, "{args:?} should fail: {out}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(
            err.lines()
                .next()
                .is_some_and(|first| first.contains("error") || first.starts_with("chat-server ")),
            "{args:?}: {err}"
        );
        if err.starts_with("chat-server ") {
            assert!(!err.contains('\n'), "{args:?}: one line: {err}");
        }
    }
    assert_eq!(
        std::fs::read(&existing).unwrap(),
        b"keep me",
        "backup left the file alone"
    );
    assert!(
        !missing.exists() && !elsewhere.exists(),
        "nothing was made of a missing database"
    );
    // The file that failed at its second line made the database, but nothing in it.
    let mut conn = read_only(&new_db).await;
    let messages: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(messages, 0);
    conn.close().await.unwrap();
    let _unused: PathBuf = new_db;
}
