//! Sessions and the streams opened with them: signing out ends exactly the streams of that
//! session, in-band, so a page goes to sign-in instead of reconnecting forever.

use std::time::Duration;

use crate::common::{Server, TestDb};

/// Events until the stream ends, skipping status changes.
async fn rest_of(stream: &mut crate::common::Stream200) -> Vec<(String, String)> {
    let mut seen = Vec::new();
    while let Some(event) = stream.next().await {
        if event.event != "status" {
            seen.push((event.event, event.data));
        }
    }
    seen
}

#[tokio::test]
async fn signing_out_ends_that_sessions_streams_with_logout_and_no_other() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let laptop = server.user("ada").await;
    let phone = server.user("ada").await; // a second session of the same user
    let mut on_laptop = laptop.open_stream("general", "", None).await;
    let mut on_phone = phone.open_stream("general", "", None).await;

    let response = laptop
        .request(reqwest::Method::DELETE, "/api/sessions")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let ended = rest_of(&mut on_laptop).await;
    assert_eq!(ended.len(), 1, "{ended:?}");
    assert_eq!(ended[0].0, "logout");
    let reason: serde_json::Value = serde_json::from_str(&ended[0].1).unwrap();
    assert!(reason["reason"].is_string());

    // The revoked token opens nothing; the other session goes on.
    let reopened = laptop
        .request(reqwest::Method::GET, "/api/rooms/general/events")
        .send()
        .await
        .unwrap();
    assert_eq!(reopened.status(), 401);
    let sent = phone.say("general", "still here").await;
    let (event, _) = on_phone.next_message().await;
    assert_eq!(event.id, sent["id"].to_string());
}

#[tokio::test]
async fn a_stream_behind_on_replay_still_hears_of_its_sign_out() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let ada = server.user("ada").await;
    for n in 0..600 {
        ada.say("general", &format!("message {n}")).await;
    }
    let reader = server.user("ada").await;
    // Opened at the start of the log: 600 messages (two pages) to replay, then the logout.
    let mut stream = reader.open_stream("general", "?after=0", None).await;
    let response = reader
        .request(reqwest::Method::DELETE, "/api/sessions")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let seen = rest_of(&mut stream).await;
    let (last, replayed) = seen.split_last().unwrap();
    assert_eq!(last.0, "logout");
    assert!(replayed.iter().all(|(kind, _)| kind == "message"));
}

#[tokio::test]
async fn many_sign_outs_of_others_do_not_end_a_stream() {
    let db = TestDb::new();
    // More revocations than a stream buffers: it must check its own session, not give up.
    let server = Server::start(&db, &[]).await;
    let ada = server.user("ada").await;
    let mut stream = ada.open_stream("general", "", None).await;
    let mut others = Vec::new();
    for _ in 0..100 {
        others.push(server.user("bob").await);
    }
    for bob in &others {
        let response = bob
            .request(reqwest::Method::DELETE, "/api/sessions")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 204);
    }
    let sent = ada.say("general", "after the sign-outs").await;
    let (event, _) = stream.next_message().await;
    assert_eq!(event.id, sent["id"].to_string());
}

async fn rooms_status(client: &crate::common::Client) -> u16 {
    client
        .request(reqwest::Method::GET, "/api/rooms")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn an_unused_session_expires_and_a_used_one_does_not() {
    let db = TestDb::new();
    let server = Server::start(&db, &["--session-idle", "2"]).await;
    let idle = server.user("idle").await;
    let busy = server.user("busy").await;
    for _ in 0..6 {
        assert_eq!(rooms_status(&busy).await, 200);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        rooms_status(&busy).await,
        200,
        "used every half second: still signed in"
    );
    assert_eq!(rooms_status(&idle).await, 401, "unused for three seconds: expired");
}

#[tokio::test]
async fn a_stream_ends_with_logout_when_its_session_expires() {
    let db = TestDb::new();
    let server = Server::start(&db, &["--session-idle", "2"]).await;
    let ada = server.user("ada").await;
    let mut stream = ada.open_stream("general", "", None).await;
    // Used meanwhile (here by posting), the session lives on, and so does the stream.
    let mut sent = Vec::new();
    for n in 0..6 {
        sent.push(ada.say("general", &format!("still here {n}")).await["id"].to_string());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let seen = rest_of(&mut stream).await;
    let (last, messages) = seen.split_last().unwrap();
    assert_eq!(last.0, "logout", "then, unused, it expires: {seen:?}");
    assert_eq!(messages.len(), sent.len(), "every message came first: {seen:?}");
    assert_eq!(rooms_status(&ada).await, 401);
}

#[tokio::test]
async fn expired_sessions_are_removed_at_start_up() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    server.user("ada").await;
    server.kill().await;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let _server = Server::start(&db, &["--session-idle", "1"]).await;
    let mut conn = db.connect().await;
    let deadline = tokio::time::Instant::now() + crate::common::WAIT;
    loop {
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        if left == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{left} expired sessions kept");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
