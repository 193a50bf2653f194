//! An existing database keeps working: a file written by an earlier release (its schema,
//! made by its own migrations, and its data) is upgraded in place at start-up, and keeps
//! every event, id and session.

use std::path::Path;

use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::common::{Client, Server, TestDb};

/// Session tokens as the previous release handed them out (43 characters of URL-safe base64).
pub(crate) const ADA_TOKEN: &str = "b2xkLXJlbGVhc2Utc2Vzc2lvbi10b2tlbi0wMDAwMDA";
pub(crate) const BOB_TOKEN: &str = "b2xkLXJlbGVhc2Utc2Vzc2lvbi10b2tlbi0xMTExMTE";

/// Brings `db` to the schema of a release: every migration numbered below `version`, as the
/// files in `migrations/sqlite/` say.
pub(crate) async fn schema_before(db: &TestDb, version: &str) -> sqlx::SqliteConnection {
    let migrations = tempfile::tempdir().unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.as_str() < version {
            std::fs::copy(dir.join(&name), migrations.path().join(&name)).unwrap();
        }
    }
    let mut conn = db.connect().await;
    sqlx::migrate::Migrator::new(migrations.path())
        .await
        .unwrap()
        .run(&mut conn)
        .await
        .unwrap();
    conn
}

/// Writes a database as the previous release (migrations 0001-0003) left it: its schema, two users with a session
/// each, two rooms, messages (one with a client id), statuses, and a deleted newest event, so
/// the AUTOINCREMENT high-water mark is above the highest id left.
async fn previous_release_database(db: &TestDb) -> i64 {
    let mut conn = schema_before(db, "0004").await;
    let script = format!(
        "INSERT INTO users (id, username, password_hash) VALUES (1, 'ada', 'not a hash'), (2, 'bob', 'not a hash');
         INSERT INTO sessions (token_hash, user_id) VALUES (X'{}', 1), (X'{}', 2);
         INSERT INTO rooms (id, name, created_by) VALUES (2, 'rust', 1);
         INSERT INTO events (id, kind, room_id, user_id, body, client_id, created_at) VALUES
             (1, 'status', NULL, 1, 'online', NULL, '2026-11-20T08:00:00.000Z'),
             (2, 'message', 1, 1, 'hello from before', NULL, '2026-11-20T08:00:01.000Z'),
             (3, 'message', 2, 2, 'in rust', '3f2b8c1e-9a4d-4e7b-8c2f-1d5e6a7b8c9d', '2026-11-20T08:00:02.000Z'),
             (4, 'status', NULL, 2, 'away', NULL, '2026-11-20T08:00:03.000Z'),
             (5, 'message', 1, 2, 'line one\r\nline two', NULL, '2026-11-20T08:00:04.000Z'),
             (6, 'message', 1, 1, 'deleted by hand', NULL, '2026-11-20T08:00:05.000Z');
         DELETE FROM events WHERE id = 6;",
        hex(&Sha256::digest(ADA_TOKEN.as_bytes())),
        hex(&Sha256::digest(BOB_TOKEN.as_bytes())),
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(script))
        .execute(&mut conn)
        .await
        .unwrap();
    let seq: i64 = sqlx::query_scalar("SELECT seq FROM sqlite_sequence WHERE name = 'events'")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(seq, 6);
    seq
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn a_database_of_the_previous_release_is_upgraded_in_place_with_nothing_lost() {
    let db = TestDb::new();
    let head = previous_release_database(&db).await;
    let server = Server::start(&db, &[]).await;

    // The old sessions still sign ada and bob in.
    let ada = signed_in(&server, "ada", ADA_TOKEN);
    let bob = signed_in(&server, "bob", BOB_TOKEN);
    assert_eq!(
        ada.request(reqwest::Method::GET, "/api/rooms")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // Every event, with its id, text and time, replays from the start on both streams.
    let mut room = ada.open_stream("general", "?after=0", None).await;
    let got: Vec<(String, String)> = room
        .until_id(5, false)
        .await
        .iter()
        .map(|e| (e.id.clone(), e.event.clone()))
        .collect();
    assert_eq!(
        got,
        [("1", "status"), ("2", "message"), ("4", "status"), ("5", "message")].map(|(i, e)| (i.into(), e.into()))
    );
    let mut mine = ada.open_user_stream("?after=0", None).await;
    let mut everything: Vec<Value> = Vec::new();
    for _ in 0..5 {
        everything.push(mine.expect_json().await.1);
    }
    let ids: Vec<i64> = everything.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, [1, 2, 3, 4, 5]);
    assert_eq!(everything[1]["content"], "hello from before");
    assert_eq!(everything[1]["created_at"], "2026-11-20T08:00:01.000Z");
    assert_eq!(everything[2]["room"], "rust");
    assert_eq!(everything[3]["status"], "away");
    assert_eq!(everything[4]["content"], "line one\r\nline two");

    // History reads them as before.
    let history: Vec<i64> = ada
        .history("general", "")
        .await
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect();
    assert_eq!(history, [2, 5]);

    // A client id sent before still finds its message.
    let (status, again) = bob
        .post_json(
            "rust",
            serde_json::json!({"content": "in rust", "client_id": "3f2b8c1e-9a4d-4e7b-8c2f-1d5e6a7b8c9d"}),
        )
        .await;
    assert_eq!((status, again["id"].as_i64()), (200, Some(3)));

    // No id is handed out twice: the next one is above the deleted newest.
    let next = ada.say("general", "after the upgrade").await["id"].as_i64().unwrap();
    assert!(next > head, "{next} after a high-water mark of {head}");

    // The views read as they did, and bob's chosen away is kept.
    let mut conn = db.connect().await;
    let messages: Vec<(i64, String, String)> = sqlx::query("SELECT id, room, content FROM messages ORDER BY id")
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    assert_eq!(messages.len(), 4);
    assert_eq!(messages[0], (2, "general".into(), "hello from before".into()));
    let statuses: i64 = sqlx::query_scalar("SELECT count(*) FROM status_changes WHERE id IN (1, 4)")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(statuses, 2);
    let bob_chose: String = sqlx::query_scalar("SELECT status_choice FROM users WHERE username = 'bob'")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(bob_chose, "away");
    // Roles came with the upgrade: the first account is the admin, and every one is active.
    let roles: Vec<(String, String, bool)> = sqlx::query_as("SELECT username, role, active FROM users ORDER BY id")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        roles,
        [
            ("ada".into(), "admin".into(), true),
            ("bob".into(), "member".into(), true)
        ]
    );
    let me: Value = ada.get_json("/api/me").await;
    assert_eq!(me["role"], "admin");
    // The old sessions got public ids to be listed and ended by.
    let listed: Value = bob.get_json("/api/me/sessions").await;
    let id = listed["sessions"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 16);
    assert_eq!(listed["sessions"][0]["current"], true);
    let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM sessions")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1]);
    let sound: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(sound, "ok");
}

/// A client carrying a session the old release stored.
pub(crate) fn signed_in(server: &Server, username: &str, token: &str) -> Client {
    let mut client = server.anonymous();
    client.token = Some(token.to_owned());
    client.username = username.to_owned();
    client
}

#[tokio::test]
async fn a_database_of_the_release_before_private_rooms_keeps_its_rooms_public_and_its_events() {
    let db = TestDb::new();
    let mut conn = schema_before(&db, "0006").await;
    // That release wrote `room` events with no body, and could have stored a topic as text.
    let script = format!(
        "INSERT INTO users (id, username, password_hash, role) VALUES (1, 'ada', 'not a hash', 'admin'), (2, 'bob', 'not a hash', 'member');
         INSERT INTO sessions (token_hash, user_id, id) VALUES (X'{}', 1, 'aaaaaaaaaaaaaaaa'), (X'{}', 2, 'bbbbbbbbbbbbbbbb');
         INSERT INTO rooms (id, name, created_by) VALUES (2, 'rust', 1), (3, 'gardens', 2);
         INSERT INTO events (id, kind, scope, room_id, user_id, body, created_at) VALUES
             (1, 'room', 'room', 2, 1, NULL, '2026-11-28T08:00:00.000Z'),
             (2, 'message', 'room', 2, 1, 'hello rust', '2026-11-28T08:00:01.000Z'),
             (3, 'room', 'room', 3, 2, 'plants and such', '2026-11-28T08:00:02.000Z'),
             (4, 'status', 'everyone', NULL, 2, 'online', '2026-11-28T08:00:03.000Z');",
        hex(&Sha256::digest(ADA_TOKEN.as_bytes())),
        hex(&Sha256::digest(BOB_TOKEN.as_bytes())),
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(script))
        .execute(&mut conn)
        .await
        .unwrap();
    drop(conn);

    let server = Server::start(&db, &[]).await;
    let ada = signed_in(&server, "ada", ADA_TOKEN);
    let bob = signed_in(&server, "bob", BOB_TOKEN);
    // Every room is still public, and every old event replays, in the new shapes.
    let rooms = bob.get_json("/api/rooms").await;
    let kinds: Vec<(String, String)> = rooms["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|room| {
            (
                room["name"].as_str().unwrap().into(),
                room["kind"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [("gardens", "public"), ("general", "public"), ("rust", "public")].map(|(n, k)| (n.into(), k.into()))
    );
    let mut replay = bob.open_user_stream("?after=0", None).await;
    let mut events = Vec::new();
    for _ in 0..4 {
        events.push(replay.expect_json().await.1);
    }
    assert_eq!(events[0]["type"], "room");
    assert_eq!(
        (&events[0]["kind"], &events[0]["topic"]),
        (&"public".into(), &Value::Null)
    );
    assert_eq!(events[1]["content"], "hello rust");
    assert_eq!(events[2]["topic"], "plants and such");
    assert_eq!(events[3]["status"], "online");
    // The new kinds work on the upgraded file.
    let made = ada
        .request(reqwest::Method::POST, "/api/rooms")
        .json(&serde_json::json!({"name": "admins", "private": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 201);
    assert_eq!(bob.history_status("admins").await, 404);
    let mut conn = db.connect().await;
    let members: Vec<(String, String)> = sqlx::query_as("SELECT room, username FROM memberships")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(members, [("admins".into(), "ada".into())]);
    let public: i64 = sqlx::query_scalar("SELECT count(*) FROM rooms WHERE kind = 'public'")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(public, 3);
    let sound: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(sound, "ok");
}

/// Writes a database as the release before invites left it (every migration before 0007) with
/// an admin, a member, their sessions, a room and messages.
async fn before_invites_database(db: &TestDb) {
    let mut conn = schema_before(db, "0007").await;
    let script = format!(
        "INSERT INTO users (id, username, password_hash, role) VALUES (1, 'ada', 'not a hash', 'admin'),
             (2, 'bob', 'not a hash', 'member');
         INSERT INTO sessions (token_hash, user_id, id) VALUES (X'{}', 1, 'aaaaaaaaaaaaaaaa'), (X'{}', 2, 'bbbbbbbbbbbbbbbb');
         INSERT INTO events (id, kind, scope, room_id, user_id, body, created_at) VALUES
             (1, 'message', 'room', 1, 1, 'before invites', '2026-11-28T08:00:00.000Z'),
             (2, 'message', 'room', 1, 2, 'me too', '2026-11-28T08:00:01.000Z');",
        hex(&Sha256::digest(ADA_TOKEN.as_bytes())),
        hex(&Sha256::digest(BOB_TOKEN.as_bytes())),
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(script))
        .execute(&mut conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_database_from_before_invites_gains_them_in_place_with_nothing_lost() {
    let db = TestDb::new();
    before_invites_database(&db).await;
    let server = Server::start(&db, &["--signup", "invite"]).await;
    let ada = signed_in(&server, "ada", ADA_TOKEN);
    let bob = signed_in(&server, "bob", BOB_TOKEN);

    // Who they were, their sessions and what they said are all there.
    assert_eq!(ada.get_json("/api/me").await["role"], "admin");
    assert_eq!(bob.get_json("/api/me").await["role"], "member");
    let said: Vec<String> = bob
        .history("general", "")
        .await
        .iter()
        .map(|m| m["content"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(said, ["before invites", "me too"]);

    // The admin of before makes an invite, and someone joins with it.
    let made: Value = ada
        .request(reqwest::Method::POST, "/api/invites")
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let code = made["code"].as_str().unwrap();
    let joined = server
        .anonymous()
        .sign_up_with(serde_json::json!({"username": "carol", "password": "correct horse battery", "invite": code}))
        .await;
    assert_eq!(joined.status(), 201);
    let refused = server
        .anonymous()
        .sign_up_with(serde_json::json!({"username": "dave", "password": "correct horse battery"}))
        .await;
    assert_eq!(refused.status(), 403, "an upgraded server is not open");

    let mut conn = db.connect().await;
    let users: Vec<(i64, String, Option<String>)> =
        sqlx::query_as("SELECT id, username, invite FROM users ORDER BY id")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(
        users,
        [
            (1, "ada".into(), None),
            (2, "bob".into(), None),
            (3, "carol".into(), Some(code.to_owned()))
        ]
    );
    let sessions: Vec<String> = sqlx::query_scalar("SELECT id FROM sessions WHERE user_id IN (1, 2) ORDER BY id")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(sessions, ["aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"]);
    let sound: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(sound, "ok");
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM pragma_foreign_key_check")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys, 0);
}

/// Writes a database as the release before messages could change (every migration before
/// 0008): a public room, a private room with its stint, messages, a status, and a message a
/// client sent with its id.
async fn before_changes_database(db: &TestDb) {
    let mut conn = schema_before(db, "0008").await;
    let script = format!(
        "INSERT INTO users (id, username, password_hash, role) VALUES (1, 'ada', 'not a hash', 'admin'),
             (2, 'bob', 'not a hash', 'member');
         INSERT INTO sessions (token_hash, user_id, id) VALUES (X'{}', 1, 'aaaaaaaaaaaaaaaa'), (X'{}', 2, 'bbbbbbbbbbbbbbbb');
         INSERT INTO rooms (id, name, kind, created_by) VALUES (2, 'ops', 'private', 1);
         INSERT INTO events (id, kind, scope, room_id, user_id, body, client_id, created_at) VALUES
             (1, 'message', 'room', 1, 1, 'said **before**', NULL, '2026-11-30T08:00:00.000Z'),
             (2, 'room', 'room', 2, 1, '{{\"topic\":null,\"archived\":false}}', NULL, '2026-11-30T08:00:01.000Z'),
             (3, 'member', 'room', 2, 1, 'joined', NULL, '2026-11-30T08:00:02.000Z'),
             (4, 'message', 'room', 2, 1, 'only for ops', '3f2b8c1e-9a4d-4e7b-8c2f-1d5e6a7b8c9d', '2026-11-30T08:00:03.000Z'),
             (5, 'status', 'everyone', NULL, 2, 'away', NULL, '2026-11-30T08:00:04.000Z'),
             (6, 'message', 'room', 1, 2, 'hi @ada', NULL, '2026-11-30T08:00:05.000Z');
         UPDATE events SET subject_id = 1 WHERE id = 3;
         INSERT INTO room_access (room_id, user_id, from_id) VALUES (2, 1, 2);",
        hex(&Sha256::digest(ADA_TOKEN.as_bytes())),
        hex(&Sha256::digest(BOB_TOKEN.as_bytes())),
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(script))
        .execute(&mut conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_database_from_before_messages_changed_keeps_every_message_and_they_can_change() {
    let db = TestDb::new();
    before_changes_database(&db).await;
    let server = Server::start(&db, &["--rate-limits", "off"]).await;
    let ada = signed_in(&server, "ada", ADA_TOKEN);
    let bob = signed_in(&server, "bob", BOB_TOKEN);

    // Everything said before is there, in its shape of now.
    let general = bob.history("general", "").await;
    let said: Vec<(i64, &str)> = general
        .iter()
        .map(|m| (m["id"].as_i64().unwrap(), m["content"].as_str().unwrap()))
        .collect();
    assert_eq!(said, [(1, "said **before**"), (6, "hi @ada")]);
    assert_eq!(general[0]["reactions"], serde_json::json!([]));
    assert!(general[0].get("edited_at").is_none());
    assert_eq!(ada.history("ops", "").await[0]["content"], "only for ops");
    assert_eq!(bob.history_status("ops").await, 404);

    // The old messages change like new ones, and a resend of the old client id still finds
    // its message.
    let edited = ada
        .request(reqwest::Method::PATCH, "/api/messages/1")
        .json(&serde_json::json!({"content": "said before, then edited"}))
        .send()
        .await
        .unwrap();
    assert_eq!(edited.status(), 200);
    let reacted = bob
        .request(reqwest::Method::PUT, "/api/messages/1/reactions/%F0%9F%91%8D")
        .send()
        .await
        .unwrap();
    assert_eq!(reacted.status(), 200);
    let (status, again) = ada
        .post_json(
            "ops",
            serde_json::json!({"content": "only for ops", "client_id": "3f2b8c1e-9a4d-4e7b-8c2f-1d5e6a7b8c9d"}),
        )
        .await;
    assert_eq!((status, again["id"].as_i64()), (200, Some(4)));
    let deleted = ada
        .request(reqwest::Method::DELETE, "/api/messages/6")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200, "an admin deletes someone else's message");

    let first = &bob.history("general", "").await[0];
    assert_eq!(first["content"], "said before, then edited");
    assert_eq!(first["reactions"][0]["usernames"], serde_json::json!(["bob"]));

    // At the sqlite3 prompt, the views read the same.
    let mut conn = db.connect().await;
    let rows: Vec<(i64, String, String, Option<String>)> =
        sqlx::query_as("SELECT id, room, content, edited_at FROM messages ORDER BY id")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    let rows: Vec<(i64, &str, &str, bool)> = rows
        .iter()
        .map(|(id, room, content, edited)| (*id, room.as_str(), content.as_str(), edited.is_some()))
        .collect();
    assert_eq!(
        rows,
        [
            (1, "general", "said before, then edited", true),
            (4, "ops", "only for ops", false)
        ]
    );
    let edits: Vec<(i64, String)> = sqlx::query_as("SELECT message_id, content FROM message_edits")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(edits, [(1, "said before, then edited".to_owned())]);
    let sound: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(sound, "ok");
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM pragma_foreign_key_check")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys, 0);
}

/// Writes a database as the release before reading was kept (every migration before 0009):
/// two people, a public and a private room, messages (one edited, mentioning bob), a reaction.
async fn before_reading_database(db: &TestDb) {
    let mut conn = schema_before(db, "0009").await;
    let script = format!(
        "INSERT INTO users (id, username, password_hash, role) VALUES (1, 'ada', 'not a hash', 'admin'),
             (2, 'bob', 'not a hash', 'member');
         INSERT INTO sessions (token_hash, user_id, id) VALUES (X'{}', 1, 'aaaaaaaaaaaaaaaa'), (X'{}', 2, 'bbbbbbbbbbbbbbbb');
         INSERT INTO rooms (id, name, kind, created_by) VALUES (2, 'ops', 'private', 1);
         INSERT INTO events (id, kind, scope, room_id, user_id, body, message_id, created_at) VALUES
             (1, 'message', 'room', 1, 1, 'said before', NULL, '2026-11-30T08:00:00.000Z'),
             (2, 'room', 'room', 2, 1, '{{\"topic\":null,\"archived\":false}}', NULL, '2026-11-30T08:00:01.000Z'),
             (3, 'member', 'room', 2, 1, 'joined', NULL, '2026-11-30T08:00:02.000Z'),
             (4, 'message', 'room', 2, 1, 'only for ops', NULL, '2026-11-30T08:00:03.000Z'),
             (5, 'message', 'room', 1, 1, 'hi bob', NULL, '2026-11-30T08:00:04.000Z'),
             (6, 'edit', 'room', 1, 1, 'hi @bob', 5, '2026-11-30T08:00:05.000Z'),
             (7, 'reaction', 'room', 1, 2, '{{\"emoji\":\"👍\",\"added\":true}}', 5, '2026-11-30T08:00:06.000Z');
         UPDATE events SET subject_id = 1 WHERE id = 3;
         INSERT INTO room_access (room_id, user_id, from_id) VALUES (2, 1, 2);
         INSERT INTO mentions (event_id, user_id) VALUES (6, 2);
         INSERT INTO reactions (message_id, emoji, user_id, event_id) VALUES (5, '👍', 2, 7);",
        hex(&Sha256::digest(ADA_TOKEN.as_bytes())),
        hex(&Sha256::digest(BOB_TOKEN.as_bytes())),
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(script))
        .execute(&mut conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_database_from_before_reading_starts_with_nothing_unread_and_keeps_everything() {
    let db = TestDb::new();
    before_reading_database(&db).await;
    let server = Server::start(&db, &["--rate-limits", "off"]).await;
    let ada = signed_in(&server, "ada", ADA_TOKEN);
    let bob = signed_in(&server, "bob", BOB_TOKEN);

    // Nothing is unread after the upgrade: there were no cursors to say otherwise.
    let rooms = bob.get_json("/api/rooms").await;
    let general = &rooms["rooms"][0];
    assert_eq!(general["name"], "general");
    assert_eq!(
        (&general["unread"], &general["mentions"]),
        (&Value::from(0), &Value::from(0))
    );
    assert_eq!(general["last_id"], 5);
    assert_eq!(general["read"], 7);
    assert_eq!(general["notify"], "mentions");
    assert_eq!(rooms["rooms"].as_array().unwrap().len(), 1, "ops is still ada's alone");
    let history = bob.history("general", "").await;
    assert_eq!(history[1]["content"], "hi @bob");
    assert_eq!(history[1]["mentions"], serde_json::json!(["bob"]));
    assert_eq!(history[1]["reactions"][0]["usernames"], serde_json::json!(["bob"]));

    // What is said now counts, and reading works.
    let said = ada.say("general", "new, @bob").await;
    let general = bob.get_json("/api/rooms/general").await;
    assert_eq!(
        (&general["unread"], &general["mentions"]),
        (&Value::from(1), &Value::from(1))
    );
    let read = bob
        .request(reqwest::Method::PUT, "/api/rooms/general/read")
        .json(&serde_json::json!({"up_to": said["id"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 204);
    assert_eq!(bob.get_json("/api/rooms/general").await["unread"], 0);

    let mut conn = db.connect().await;
    let cursors: Vec<(String, String, i64)> = sqlx::query_as("SELECT username, room, up_to FROM read_cursors")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        cursors,
        [("bob".to_owned(), "general".to_owned(), said["id"].as_i64().unwrap())]
    );
    let messages: i64 = sqlx::query_scalar("SELECT count(*) FROM messages")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(messages, 4);
    let sound: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(sound, "ok");
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM pragma_foreign_key_check")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys, 0);
}

/// Writes a database as the release before search (every migration before 0010): messages in
/// a public and a private room, one edited twice, one deleted after an edit (its text gone
/// from every row), one in another script and one holding the characters snippets mark with.
async fn before_search_database(db: &TestDb) {
    let mut conn = schema_before(db, "0010").await;
    let script = format!(
        "INSERT INTO users (id, username, password_hash, role) VALUES (1, 'ada', 'not a hash', 'admin'),
             (2, 'bob', 'not a hash', 'member');
         INSERT INTO sessions (token_hash, user_id, id) VALUES (X'{}', 1, 'aaaaaaaaaaaaaaaa'), (X'{}', 2, 'bbbbbbbbbbbbbbbb');
         INSERT INTO rooms (id, name, kind, created_by) VALUES (2, 'ops', 'private', 1);
         INSERT INTO events (id, kind, scope, room_id, user_id, body, message_id, created_at) VALUES
             (1, 'message', 'room', 1, 1, 'the harvest festival is on Friday', NULL, '2026-11-30T08:00:00.000Z'),
             (2, 'room', 'room', 2, 1, '{{\"topic\":null,\"archived\":false}}', NULL, '2026-11-30T08:00:01.000Z'),
             (3, 'member', 'room', 2, 1, 'joined', NULL, '2026-11-30T08:00:02.000Z'),
             (4, 'message', 'room', 2, 1, 'the harvest budget, for ops', NULL, '2026-11-30T08:00:03.000Z'),
             (5, 'message', 'room', 1, 2, 'first draft of the poster', NULL, '2026-11-30T08:00:04.000Z'),
             (6, 'edit', 'room', 1, 2, 'second draft of the poster', 5, '2026-11-30T08:00:05.000Z'),
             (7, 'edit', 'room', 1, 2, 'final harvest poster', 5, '2026-11-30T08:00:06.000Z'),
             (8, 'message', 'room', 1, 2, NULL, NULL, '2026-11-30T08:00:07.000Z'),
             (9, 'edit', 'room', 1, 2, NULL, 8, '2026-11-30T08:00:08.000Z'),
             (10, 'delete', 'room', 1, 2, NULL, 8, '2026-11-30T08:00:09.000Z'),
             (11, 'message', 'room', 1, 1, 'Fête de la moisson à Genève', NULL, '2026-11-30T08:00:10.000Z'),
             (12, 'message', 'room', 1, 2, 'marked ' || char(2) || 'harvest' || char(3) || ' text', NULL, '2026-11-30T08:00:11.000Z');
         UPDATE events SET subject_id = 1 WHERE id = 3;
         INSERT INTO room_access (room_id, user_id, from_id) VALUES (2, 1, 2);",
        hex(&Sha256::digest(ADA_TOKEN.as_bytes())),
        hex(&Sha256::digest(BOB_TOKEN.as_bytes())),
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(script))
        .execute(&mut conn)
        .await
        .unwrap();
}

/// The ids a search finds.
async fn search_ids(client: &Client, q: &str) -> Vec<i64> {
    let body = client
        .request(reqwest::Method::GET, "/api/search")
        .query(&[("q", q)])
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    body["results"]
        .as_array()
        .unwrap_or_else(|| panic!("{q}: {body}"))
        .iter()
        .map(|hit| hit["id"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn a_database_from_before_search_has_every_live_message_searchable_with_nothing_lost() {
    let db = TestDb::new();
    before_search_database(&db).await;
    let server = Server::start(&db, &["--rate-limits", "off"]).await;
    let ada = signed_in(&server, "ada", ADA_TOKEN);
    let bob = signed_in(&server, "bob", BOB_TOKEN);

    // Every live message, by what it says now; nothing deleted; the private room for its
    // member only.
    assert_eq!(search_ids(&ada, "harvest").await, [12, 5, 4, 1]);
    assert_eq!(search_ids(&bob, "harvest").await, [12, 5, 1]);
    assert_eq!(search_ids(&bob, "draft").await, Vec::<i64>::new(), "edited away");
    assert_eq!(search_ids(&bob, "\"final harvest poster\"").await, [5]);
    assert_eq!(search_ids(&bob, "fete geneve").await, [11]);
    let body: Value = bob
        .request(reqwest::Method::GET, "/api/search?q=marked")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["results"][0]["snippet"], "<mark>marked</mark> harvest text");
    assert_eq!(body["results"][0]["content"], "marked \u{2}harvest\u{3} text");

    // Nothing lost: history as before, and the index holds exactly the live messages.
    let general: Vec<(i64, String)> = bob
        .history("general", "")
        .await
        .iter()
        .map(|m| (m["id"].as_i64().unwrap(), m["content"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        general,
        [
            (1, "the harvest festival is on Friday".to_owned()),
            (5, "final harvest poster".to_owned()),
            (11, "Fête de la moisson à Genève".to_owned()),
            (12, "marked \u{2}harvest\u{3} text".to_owned()),
        ]
    );
    let mut conn = db.connect().await;
    let indexed: Vec<i64> = sqlx::query_scalar("SELECT rowid FROM message_search ORDER BY rowid")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    let live: Vec<i64> = sqlx::query_scalar("SELECT id FROM messages ORDER BY id")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(indexed, live);
    assert_eq!(indexed, [1, 4, 5, 11, 12]);

    // The old messages go on changing, and the index with them.
    let edited = bob
        .request(reqwest::Method::PATCH, "/api/messages/1")
        .json(&serde_json::json!({"content": "moved to Saturday"}))
        .send()
        .await
        .unwrap();
    assert_eq!(edited.status(), 403, "not bob's");
    let deleted = ada
        .request(reqwest::Method::DELETE, "/api/messages/1")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    assert_eq!(search_ids(&bob, "festival").await, Vec::<i64>::new());

    sqlx::query("INSERT INTO message_search (message_search, rank) VALUES ('integrity-check', 0)")
        .execute(&mut conn)
        .await
        .expect("the index agrees with its text");
    let sound: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(sound, "ok");
    sqlx::Connection::close(conn).await.unwrap();

    // Operators' sqlite3 (Debian's is 3.40, older than FTS5's secure-delete) reads every table
    // and view of the running server's file as before.
    if std::process::Command::new("sqlite3").arg("--version").output().is_err() {
        eprintln!("sqlite3 is not installed: its reading of the file is not checked");
        return;
    }
    for (sql, expected) in [
        (
            "SELECT id, room, content FROM messages ORDER BY id;",
            "4|ops|the harvest budget, for ops\n5|general|final harvest poster\n11|general|Fête de la moisson à Genève\n12|general|marked \u{2}harvest\u{3} text\n",
        ),
        ("SELECT count(*) FROM message_edits;", "2\n"),
        ("SELECT room, username FROM memberships;", "ops|ada\n"),
        ("SELECT count(*) FROM events;", "13\n"),
        ("PRAGMA integrity_check;", "ok\n"),
    ] {
        let output = tokio::process::Command::new("sqlite3")
            .arg(db.path())
            .arg(sql)
            .output()
            .await
            .unwrap();
        let said = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(said, expected, "{sql}");
    }
}
