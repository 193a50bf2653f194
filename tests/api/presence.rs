//! Status changes and presence: they reach every room's stream, the first stream makes a user
//! online, the last one closing makes them offline after the grace period, and a quick
//! reconnect stores nothing. A closed stream is noticed when the next write to it fails, so
//! these tests send keep-alives every second.

use std::time::Duration;

use crate::common::{Server, TestDb};
use serde_json::Value;

async fn statuses_of(db: &TestDb, username: &str) -> Vec<String> {
    let mut conn = db.connect().await;
    sqlx::query_scalar("SELECT status FROM status_changes WHERE username = ? ORDER BY id")
        .bind(username)
        .fetch_all(&mut conn)
        .await
        .unwrap()
}

/// The next status event on `stream` for `username`.
async fn next_status(stream: &mut crate::common::Stream200, username: &str) -> Value {
    loop {
        let (event, data) = stream.expect_json().await;
        if event.event == "status" && data["username"] == username {
            return data;
        }
    }
}

#[tokio::test]
async fn a_status_change_reaches_every_rooms_stream() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let ada = server.user("ada").await;
    let bob = server.user("bob").await;
    assert_eq!(ada.create_room("rust").await.status(), 201);
    let mut general = ada.open_stream("general", "", None).await;
    let mut rust = ada.open_stream("rust", "", None).await;

    let response = bob.set_status("away").await;
    assert_eq!(response.status(), 200);
    let stored: Value = response.json().await.unwrap();
    assert_eq!(stored["type"], "status");
    assert_eq!(stored["status"], "away");
    assert_eq!(stored["username"], "bob");
    assert!(stored.get("room").is_none());

    for stream in [&mut general, &mut rust] {
        assert_eq!(next_status(stream, "bob").await, stored);
    }
    assert_eq!(bob.set_status("busy").await.status(), 422);
}

#[tokio::test]
async fn opening_a_stream_makes_a_user_online_and_closing_it_offline_after_the_grace() {
    let db = TestDb::new();
    let server = Server::start(&db, &["--presence-grace", "1", "--keepalive", "1"]).await;
    let ada = server.user("ada").await;
    let bob = server.user("bob").await;
    let mut watch = ada.open_stream("general", "", None).await;

    let bobs = bob.open_stream("general", "", None).await;
    assert_eq!(next_status(&mut watch, "bob").await["status"], "online");
    drop(bobs);
    assert_eq!(next_status(&mut watch, "bob").await["status"], "offline");
    assert_eq!(statuses_of(&db, "bob").await, ["online", "offline"]);
}

#[tokio::test]
async fn a_quick_reconnect_does_not_flap() {
    let db = TestDb::new();
    let server = Server::start(&db, &["--presence-grace", "3", "--keepalive", "1"]).await;
    let bob = server.user("bob").await;
    assert_eq!(bob.create_room("random").await.status(), 201);
    let first = bob.open_stream("general", "", None).await;
    // Two tabs, then a reload of each: never fewer than zero streams for long.
    let second = bob.open_stream("random", "", None).await;
    drop(first);
    drop(second);
    // Wait until the server has seen both streams close, well within the grace period.
    server.wait_for_metric("chat_open_streams", 0.0).await;
    let again = bob.open_stream("general", "", None).await;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(statuses_of(&db, "bob").await, ["online"], "no offline/online flap");
    drop(again);
}

#[tokio::test]
async fn a_user_who_chose_away_comes_back_away() {
    let db = TestDb::new();
    let server = Server::start(&db, &["--presence-grace", "1", "--keepalive", "1"]).await;
    let bob = server.user("bob").await;
    let stream = bob.open_stream("general", "", None).await;
    assert_eq!(bob.set_status("away").await.status(), 200);
    drop(stream);
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let _back = bob.open_stream("general", "", None).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(statuses_of(&db, "bob").await, ["online", "away", "offline", "away"]);
}

#[tokio::test]
async fn after_a_crash_users_without_streams_go_offline() {
    let db = TestDb::new();
    let server = Server::start(&db, &["--presence-grace", "1", "--keepalive", "1"]).await;
    let bob = server.user("bob").await;
    let _stream = bob.open_stream("general", "", None).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.kill().await;
    assert_eq!(statuses_of(&db, "bob").await, ["online"]);

    let _again = Server::start(&db, &["--presence-grace", "1", "--keepalive", "1"]).await;
    tokio::time::sleep(Duration::from_millis(1800)).await;
    assert_eq!(statuses_of(&db, "bob").await, ["online", "offline"]);
}

/// Many requests choosing one status at once: one stores it, and every one of them is answered
/// with that event, even those that came while it was still on its way to the database.
#[tokio::test]
async fn the_same_status_chosen_many_times_at_once_is_stored_once_and_answered_everywhere() {
    let db = crate::common::TestDb::new();
    let server = crate::common::Server::start(&db, &[]).await;
    let ada = server.user("ada").await;
    for round in 0..5 {
        let status = if round % 2 == 0 { "away" } else { "online" };
        let answers = futures_util::future::join_all((0..30).map(|_| {
            let ada = ada.clone();
            async move {
                let response = ada.set_status(status).await;
                let code = response.status().as_u16();
                (code, response.json::<serde_json::Value>().await.unwrap())
            }
        }))
        .await;
        assert!(answers.iter().all(|(code, _)| *code == 200), "{answers:?}");
        let ids: std::collections::BTreeSet<i64> =
            answers.iter().map(|(_, event)| event["id"].as_i64().unwrap()).collect();
        assert_eq!(ids.len(), 1, "round {round}: {ids:?}");
        assert!(answers.iter().all(|(_, event)| event["status"] == status));
    }
}
