//! Idempotent sends: a message posted again with the same `client_id` is stored once, and every
//! post of it is answered with that one message, across racing requests and restarts.

use crate::common::{Server, TestDb};
use serde_json::json;

const ID: &str = "3f2b8c1e-9a4d-4e7b-8c2f-1d5e6a7b8c9d";

async fn stored_with(db: &TestDb, client_id: &str) -> Vec<(i64, String)> {
    let mut conn = db.connect().await;
    sqlx::query_as("SELECT id, body FROM events WHERE client_id = ? ORDER BY id")
        .bind(client_id)
        .fetch_all(&mut conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_same_client_id_twice_stores_one_message_and_answers_both_with_it() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let ada = server.user("ada").await;
    let mut stream = ada.open_stream("general", "", None).await;

    let (first_status, first) = ada
        .post_json("general", json!({"content": "once", "client_id": ID}))
        .await;
    let (again_status, again) = ada
        .post_json("general", json!({"content": "once", "client_id": ID}))
        .await;
    assert_eq!((first_status, again_status), (201, 200));
    assert_eq!(first, again, "the same event, id and time included");
    assert_eq!(
        stored_with(&db, ID).await,
        [(first["id"].as_i64().unwrap(), "once".to_owned())]
    );

    // Streams see it once: the next message after it is the next one posted.
    let next = ada.say("general", "next").await;
    let (event, _) = stream.next_message().await;
    assert_eq!(event.id, first["id"].to_string());
    let (event, _) = stream.next_message().await;
    assert_eq!(event.id, next["id"].to_string());

    // Any spelling of the same UUID is the same id.
    let (status, shouted) = ada
        .post_json("general", json!({"content": "once", "client_id": ID.to_uppercase()}))
        .await;
    assert_eq!((status, shouted), (200, first));
}

#[tokio::test]
async fn racing_sends_of_one_message_store_it_once() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let ada = server.user("ada").await;
    let sends = (0..20).map(|_| {
        let ada = ada.clone();
        tokio::spawn(async move {
            ada.post_json("general", json!({"content": "double click", "client_id": ID}))
                .await
        })
    });
    let mut answers = Vec::new();
    for send in sends {
        answers.push(send.await.unwrap());
    }
    assert_eq!(
        answers.iter().filter(|(status, _)| *status == 201).count(),
        1,
        "{answers:?}"
    );
    assert!(answers.iter().all(|(status, _)| *status == 201 || *status == 200));
    assert!(answers.iter().all(|(_, event)| *event == answers[0].1));
    assert_eq!(stored_with(&db, ID).await.len(), 1);
}

#[tokio::test]
async fn a_client_id_belongs_to_its_user_and_its_message() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let ada = server.user("ada").await;
    let bob = server.user("bob").await;
    assert_eq!(ada.create_room("other").await.status(), 201);
    let (status, _) = ada
        .post_json("general", json!({"content": "mine", "client_id": ID}))
        .await;
    assert_eq!(status, 201);

    // Another user's message with the same id is their own message.
    let (status, theirs) = bob
        .post_json("general", json!({"content": "mine", "client_id": ID}))
        .await;
    assert_eq!(status, 201);
    assert_eq!(theirs["username"], "bob");

    // The same id for a different text or room is a mistake, not a retry.
    for (room, content) in [("general", "changed"), ("other", "mine")] {
        let (status, body) = ada.post_json(room, json!({"content": content, "client_id": ID})).await;
        assert_eq!(status, 409, "{room} {content}: {body}");
        assert!(body["error"].as_str().unwrap().contains("client_id"));
    }
    assert_eq!(stored_with(&db, ID).await.len(), 2);

    for bad in [json!("not-a-uuid"), json!(""), json!(42), json!({"id": ID})] {
        let (status, body) = ada
            .post_json("general", json!({"content": "x", "client_id": bad}))
            .await;
        assert_eq!(status, 422, "{bad}: {body}");
    }
    // Without a client_id, the same text twice is two messages.
    let one = ada.say("general", "twice").await;
    let two = ada.say("general", "twice").await;
    assert_ne!(one["id"], two["id"]);
}

#[tokio::test]
async fn a_retry_after_a_crash_finds_the_message_stored_before_it() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let ada = server.user("ada").await;
    let (_, first) = ada
        .post_json("general", json!({"content": "before the crash", "client_id": ID}))
        .await;
    server.kill().await;

    let server = Server::start(&db, &[]).await;
    let ada = ada.against(&server);
    let (status, again) = ada
        .post_json("general", json!({"content": "before the crash", "client_id": ID}))
        .await;
    assert_eq!((status, again), (200, first));
}

#[tokio::test]
async fn the_page_form_sends_a_client_id_too() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let ada = server.user("ada").await;
    let cookie = format!("chat_session={}", ada.token.as_deref().unwrap());
    for _ in 0..2 {
        let response = ada
            .http
            .post(ada.url("/rooms/general/messages"))
            .header("cookie", &cookie)
            .form(&[("content", "from the page"), ("client_id", ID)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 204);
    }
    assert_eq!(stored_with(&db, ID).await.len(), 1);
}

/// Sending a message again uses up no id, one at a time or many in one batch, and a repeat
/// that names other text is refused without using one either: the log stays without gaps.
#[tokio::test]
async fn a_message_sent_again_uses_up_no_id() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let ada = server.user("ada").await;
    let (_, first) = ada
        .post_json("general", json!({"content": "once", "client_id": ID}))
        .await;
    let first = first["id"].as_i64().unwrap();
    for _ in 0..5 {
        let (status, _) = ada
            .post_json("general", json!({"content": "once", "client_id": ID}))
            .await;
        assert_eq!(status, 200);
    }
    let (status, _) = ada
        .post_json("general", json!({"content": "other text", "client_id": ID}))
        .await;
    assert_eq!(status, 409);

    // Forty at once, all with one new id: the writer takes many of them in one batch.
    let racing = "6c0a0a52-3f3b-4d2f-9a57-2f1c9d5e7b10";
    let posts = (0..40).map(|_| ada.post_json("general", json!({"content": "racing", "client_id": racing})));
    let answers = futures_util::future::join_all(posts).await;
    let ids: std::collections::BTreeSet<i64> = answers.iter().map(|(_, event)| event["id"].as_i64().unwrap()).collect();
    assert_eq!(ids.len(), 1, "one message for all forty");
    assert_eq!(answers.iter().filter(|(status, _)| *status == 201).count(), 1);
    assert_eq!(ids.first().copied(), Some(first + 1));

    let next = ada.say("general", "next").await["id"].as_i64().unwrap();
    assert_eq!(next, first + 2, "no id was used up by a repeat");
    let mut conn = db.connect().await;
    let seq: i64 = sqlx::query_scalar("SELECT seq FROM sqlite_sequence WHERE name = 'events'")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(seq, next);
}
