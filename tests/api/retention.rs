//! Retention: with `--retain-days`, messages older than that are deleted as their authors
//! would delete them (every version's text gone from the file and from search, the `delete`
//! event kept and sent to open streams), rooms named by `--retain-room` keep theirs as long as
//! it says, and a stream resuming from before the deleted messages is told to reload. Shown on
//! a database written by the release before retention, upgraded in place.

use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::changes::{marker, markers_in_files};
use crate::common::{Client, Server, TestDb, WAIT};
use crate::migration::{ADA_TOKEN, BOB_TOKEN, hex, schema_before, signed_in};

/// Writes a database as the release before retention (every migration before 0011): in
/// `general`, a message of 60 days ago edited since, one of 40 days ago mentioning ada, one of
/// 20 days ago and one of now; in `archive`, one of 60 days ago. `old` marks the text of the
/// versions to go.
async fn before_retention_database(db: &TestDb, old: &[String]) {
    let mut conn = schema_before(db, "0011").await;
    let ago = |days: u32| format!("strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-{days} days')");
    let script = format!(
        "INSERT INTO users (id, username, password_hash, role) VALUES (1, 'ada', 'not a hash', 'admin'),
             (2, 'bob', 'not a hash', 'member');
         INSERT INTO sessions (token_hash, user_id, id) VALUES (X'{ada}', 1, 'aaaaaaaaaaaaaaaa'), (X'{bob}', 2, 'bbbbbbbbbbbbbbbb');
         INSERT INTO rooms (id, name, kind, created_by) VALUES (2, 'archive', 'public', 1);
         INSERT INTO events (id, kind, scope, room_id, user_id, body, message_id, created_at) VALUES
             (1, 'message', 'room', 1, 1, 'sixty days ago {m0}', NULL, {d60}),
             (2, 'edit', 'room', 1, 1, 'sixty days ago, edited {m1}', 1, {d59}),
             (3, 'message', 'room', 2, 2, 'kept in the archive', NULL, {d60}),
             (4, 'message', 'room', 1, 2, 'forty days ago, @ada {m2}', NULL, {d40}),
             (5, 'message', 'room', 1, 1, 'twenty days ago', NULL, {d20}),
             (6, 'message', 'room', 1, 2, 'today', NULL, {d0});
         INSERT INTO mentions (event_id, user_id) VALUES (4, 1);
         INSERT INTO message_search (rowid, text) SELECT id, body FROM events WHERE id IN (3, 4, 5, 6);
         INSERT INTO message_search (rowid, text) VALUES (1, 'sixty days ago, edited {m1}');
         UPDATE users SET read_from = 0;",
        ada = hex(&Sha256::digest(ADA_TOKEN.as_bytes())),
        bob = hex(&Sha256::digest(BOB_TOKEN.as_bytes())),
        m0 = old[0],
        m1 = old[1],
        m2 = old[2],
        d60 = ago(60),
        d59 = ago(59),
        d40 = ago(40),
        d20 = ago(20),
        d0 = ago(0),
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(script))
        .execute(&mut conn)
        .await
        .unwrap();
}

fn ids(messages: &[Value]) -> Vec<i64> {
    messages.iter().map(|m| m["id"].as_i64().unwrap()).collect()
}

/// Waits until `room`'s history, as `client` reads it, is exactly `expected`.
async fn history_becomes(client: &Client, room: &str, expected: &[i64]) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = ids(&client.history(room, "").await);
        if now == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{room}: {now:?}, not {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn search_count(client: &Client, q: &str) -> usize {
    let body: Value = client
        .request(reqwest::Method::GET, "/api/search")
        .query(&[("q", q)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["results"]
        .as_array()
        .unwrap_or_else(|| panic!("{q}: {body}"))
        .len()
}

#[tokio::test]
async fn expired_messages_are_deleted_as_their_authors_would_and_old_cursors_reload() {
    let db = TestDb::new();
    let old: Vec<String> = (0..3).map(|_| marker()).collect();
    before_retention_database(&db, &old).await;
    let server = Server::start(
        &db,
        &[
            "--rate-limits",
            "off",
            "--retain-days",
            "30",
            "--retain-room",
            "archive=0",
            "--retention-interval",
            "1",
        ],
    )
    .await;
    let ada = signed_in(&server, "ada", ADA_TOKEN);
    let bob = signed_in(&server, "bob", BOB_TOKEN);

    // Exactly the messages past 30 days go, the archive's kept for good.
    history_becomes(&ada, "general", &[5, 6]).await;
    assert_eq!(ids(&bob.history("archive", "").await), [3]);
    let mut conn = db.connect().await;
    let deletions: Vec<(i64, String)> = sqlx::query_as(
        "SELECT e.message_id, u.username FROM events AS e JOIN users AS u ON u.id = e.user_id \
         WHERE e.kind = 'delete' ORDER BY e.message_id",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        deletions,
        [(1, "ada".to_owned()), (4, "bob".to_owned())],
        "each by its author"
    );
    let left: Vec<i64> = sqlx::query_scalar("SELECT id FROM messages ORDER BY id")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(left, [3, 5, 6]);
    assert_eq!(search_count(&ada, "sixty").await, 0);
    assert_eq!(search_count(&ada, "forty").await, 0);
    assert_eq!(search_count(&ada, "archive").await, 1);
    assert_eq!(
        ada.get_json("/api/rooms/general").await["mentions"],
        0,
        "a deleted mention stops counting"
    );

    // Every version's text leaves the file (once the WAL is truncated after the erasure).
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let found = markers_in_files(&db, &old);
        if found.is_empty() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "still in the file: {found:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A cursor from before a deleted message reloads; one after the newest deleted resumes.
    let mut behind = bob.open_user_stream("", Some("3")).await;
    assert_eq!(
        behind.expect().await.event,
        "reset",
        "a cursor before message 4, which went"
    );
    let mut after = bob.open_user_stream("", Some("4")).await;
    let first = after.expect().await;
    assert_ne!(first.event, "reset", "nothing kept after 4 went");

    // A message that comes of age while a page is open leaves that page at once.
    let mut general = ada.open_stream("general", "", None).await;
    sqlx::query("UPDATE events SET created_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-31 days') WHERE id = 5")
        .execute(&mut conn)
        .await
        .unwrap();
    let deletion = loop {
        let (event, data) = general.expect_json().await;
        assert!(matches!(event.event.as_str(), "status" | "delete"), "{event:?}");
        if event.event == "delete" {
            break data;
        }
    };
    assert_eq!(
        (deletion["message_id"].as_i64(), deletion["username"].as_str()),
        (Some(5), Some("ada"))
    );
    history_becomes(&bob, "general", &[6]).await;
}
