//! A stream resumes from `Last-Event-ID` or `?after=`: exactly the missed events, in order,
//! once, then live ones.

use crate::common::{Server, TestDb, ids};

#[tokio::test]
async fn last_event_id_replays_exactly_what_was_missed_then_goes_live() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let ada = server.user("ada").await;
    let mut posted = Vec::new();
    for n in 1..=10 {
        posted.push(
            ada.say("general", &format!("message {n}")).await["id"]
                .as_i64()
                .unwrap(),
        );
    }
    let k = posted[3];

    let mut stream = ada.open_stream("general", "", Some(&k.to_string())).await;
    let replayed = stream.until_id(*posted.last().unwrap(), true).await;
    assert_eq!(ids(&replayed), posted[4..]);
    for (event, n) in replayed.iter().zip(5..) {
        let data: serde_json::Value = serde_json::from_str(&event.data).unwrap();
        assert_eq!(data["content"], format!("message {n}"));
        assert_eq!(event.event, "message");
    }

    let live = ada.say("general", "live one").await;
    let (event, data) = stream.next_message().await;
    assert_eq!(event.id, live["id"].to_string());
    assert_eq!(data, live);
}

#[tokio::test]
async fn after_query_does_the_same_and_the_header_wins_over_it() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let ada = server.user("ada").await;
    let mut posted = Vec::new();
    for n in 1..=6 {
        posted.push(ada.say("general", &format!("m{n}")).await["id"].as_i64().unwrap());
    }
    let last = *posted.last().unwrap();

    let mut by_query = ada.open_stream("general", &format!("?after={}", posted[1]), None).await;
    assert_eq!(ids(&by_query.until_id(last, true).await), posted[2..]);

    // Header says posted[4], query says posted[0]: the header wins.
    let mut both = ada
        .open_stream(
            "general",
            &format!("?after={}", posted[0]),
            Some(&posted[4].to_string()),
        )
        .await;
    assert_eq!(ids(&both.until_id(last, true).await), posted[5..]);

    let live = ada.say("general", "live").await["id"].as_i64().unwrap();
    assert_eq!(ids(&[by_query.next_message().await.0]), [live]);
    assert_eq!(ids(&[both.next_message().await.0]), [live]);
}

#[tokio::test]
async fn a_stream_shows_only_its_own_room() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let ada = server.user("ada").await;
    assert_eq!(ada.create_room("other").await.status(), 201);
    let mut general = ada.open_stream("general", "?after=0", None).await;
    // The first event is ada's own `online` status.
    let (first, data) = general.expect_json().await;
    assert_eq!(
        (first.event.as_str(), data["status"].as_str()),
        ("status", Some("online"))
    );

    ada.say("other", "elsewhere").await;
    let here = ada.say("general", "here").await;
    let (event, data) = general.next_message().await;
    assert_eq!(event.id, here["id"].to_string());
    assert_eq!(data["content"], "here");
}

#[tokio::test]
async fn the_stream_starts_with_retry_and_sse_headers() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let ada = server.user("ada").await;
    let response = ada
        .request(reqwest::Method::GET, "/api/rooms/general/events")
        .header("Accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert_eq!(response.headers()["cache-control"], "no-cache");
    assert_eq!(response.headers()["x-accel-buffering"], "no");
    assert!(response.headers().get("content-encoding").is_none());
    let mut body = response.bytes_stream();
    use futures_util::StreamExt;
    let first = tokio::time::timeout(crate::common::WAIT, body.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        first.starts_with(b"retry: 3000\nevent: ping\ndata: {}\n\n"),
        "every stream opens with a ping carrying retry: {first:?}"
    );
}

#[tokio::test]
async fn pings_flow_on_an_idle_stream_every_keep_alive_interval() {
    let db = TestDb::new();
    let server = Server::start(&db, &["--keepalive", "1"]).await;
    let ada = server.user("ada").await;
    let response = ada
        .request(reqwest::Method::GET, "/api/rooms/general/events")
        .send()
        .await
        .unwrap();
    let mut body = response.bytes_stream();
    use futures_util::StreamExt;
    let mut seen = Vec::new();
    // The opening ping, then at least two more.
    while String::from_utf8_lossy(&seen)
        .matches("event: ping\ndata: {}\n\n")
        .count()
        < 3
    {
        let chunk = tokio::time::timeout(crate::common::WAIT, body.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        seen.extend_from_slice(&chunk);
    }
}
