//! Cursor edge cases. A cursor the server cannot honour is answered in-band, with `200` and
//! `event: reset` first (a non-200 would make a browser give up for good).

use std::time::Duration;

use crate::common::{Server, TestDb, ids};

#[tokio::test]
async fn a_cursor_at_the_head_replays_nothing_then_goes_live() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let ada = server.user("ada").await;
    // Make ada's `online` status part of the past, so the stream below starts at the head.
    let mut warm = ada.open_stream("general", "", None).await;
    ada.say("general", "one").await;
    let head = ada.say("general", "two").await["id"].as_i64().unwrap();
    warm.next_message().await;
    warm.next_message().await;

    let mut stream = ada.open_stream("general", &format!("?after={head}"), None).await;
    assert!(
        stream.is_quiet_for(Duration::from_millis(300)).await,
        "nothing to replay at the head"
    );
    let live = ada.say("general", "three").await["id"].as_i64().unwrap();
    let event = stream.expect().await;
    assert_eq!(ids(&[event]), [live]);
}

#[tokio::test]
async fn cursor_zero_replays_the_whole_room() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let ada = server.user("ada").await;
    let mut posted = Vec::new();
    for n in 0..3 {
        posted.push(ada.say("general", &format!("m{n}")).await["id"].as_i64().unwrap());
    }
    let mut stream = ada.open_stream("general", "", Some("0")).await;
    assert_eq!(ids(&stream.until_id(posted[2], true).await), posted);
}

#[tokio::test]
async fn garbage_cursors_get_a_reset_then_live_events() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let ada = server.user("ada").await;
    let head = ada.say("general", "before").await["id"].as_i64().unwrap();
    for (header, query) in [
        (Some("abc"), ""),
        (Some("-1"), ""),
        (Some("1e3"), ""),
        (None, "?after=%207"),
        (None, "?after=7.0"),
        (Some("99999999999999999999999"), ""),
        (None, "?after=garbage"),
        (None, "?after=-5"),
        (None, "?after="),
    ] {
        let mut stream = ada.open_stream("general", query, header).await;
        let (reset, data) = stream.expect_json().await;
        assert_eq!(reset.event, "reset", "{header:?} {query}");
        assert!(
            reset.id.parse::<i64>().unwrap() >= head,
            "the reset's id is the newest event"
        );
        assert!(data["reason"].as_str().unwrap().contains("not an event id"), "{data}");
        // And then it carries on live.
        let live = ada.say("general", "after reset").await["id"].as_i64().unwrap();
        assert_eq!(ids(&[stream.next_message().await.0]), [live]);
    }
}

#[tokio::test]
async fn a_cursor_from_the_future_means_the_database_was_replaced() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let ada = server.user("ada").await;
    let head = ada.say("general", "only").await["id"].as_i64().unwrap();
    let mut stream = ada.open_stream("general", "", Some("1000000")).await;
    let (reset, data) = stream.expect_json().await;
    assert_eq!(reset.event, "reset");
    assert!(data["reason"].as_str().unwrap().contains("newer"), "{data}");
    let newest = data["newest_id"].as_i64().unwrap();
    assert!(newest >= head);
    assert_eq!(reset.id, newest.to_string());
    let live = ada.say("general", "live").await["id"].as_i64().unwrap();
    assert_eq!(ids(&[stream.next_message().await.0]), [live]);
}

#[tokio::test]
async fn a_cursor_older_than_what_is_kept_gets_a_reset() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let ada = server.user("ada").await;
    for n in 0..5 {
        ada.say("general", &format!("old {n}")).await;
    }
    // An operator prunes the oldest events by hand.
    let mut conn = db.connect().await;
    sqlx::query("DELETE FROM events WHERE id <= 3")
        .execute(&mut conn)
        .await
        .unwrap();

    let mut stream = ada.open_stream("general", "?after=1", None).await;
    let (reset, data) = stream.expect_json().await;
    assert_eq!(reset.event, "reset");
    assert!(data["reason"].as_str().unwrap().contains("older"), "{data}");

    // A cursor just before the oldest kept event is still fine.
    let mut fine = ada.open_stream("general", "?after=3", None).await;
    let (event, _) = fine.next_message().await;
    assert_eq!(event.id, "4");
}

/// `--max-replay`: a stream opened further behind than it is told to reset and reload, on the
/// user's stream and a room's; one within it replays in full, counted by what its view shows
/// rather than by ids; and a stream that falls behind while open always catches up in full.
#[tokio::test]
async fn a_cursor_further_behind_than_max_replay_gets_a_reset() {
    let db = TestDb::new();
    let server = Server::start(&db, &["--max-replay", "5", "--hub-capacity", "1"]).await;
    let ada = server.user("ada").await;
    ada.create_room("other").await;
    let start = ada.say("general", "start").await["id"].as_i64().unwrap();
    let mut general = Vec::new();
    for n in 0..3 {
        general.push(ada.say("general", &format!("g{n}")).await["id"].as_i64().unwrap());
    }
    let mut head = 0;
    for n in 0..10 {
        head = ada.say("other", &format!("o{n}")).await["id"].as_i64().unwrap();
    }

    // Thirteen events behind on the user's stream: reset, with the newest id, then live.
    let mut everything = ada.open_user_stream("", Some(&start.to_string())).await;
    let (reset, data) = everything.expect_json().await;
    assert_eq!(reset.event, "reset");
    assert_eq!(reset.id, head.to_string());
    assert!(data["reason"].as_str().unwrap().contains("further behind"), "{data}");
    let live = ada.say("other", "live").await["id"].as_i64().unwrap();
    assert_eq!(ids(&everything.until_id(live, true).await), [live]);

    // The room's stream from the same cursor sees three events: replayed in full.
    let mut room = ada.open_stream("general", "", Some(&start.to_string())).await;
    assert_eq!(ids(&room.until_id(general[2], true).await), general);

    // A stream open all along falls behind a one-slot feed by twenty, and misses none.
    let mut posted = Vec::new();
    for n in 0..20 {
        posted.push(ada.say("general", &format!("burst {n}")).await["id"].as_i64().unwrap());
    }
    assert_eq!(ids(&room.until_id(*posted.last().unwrap(), true).await), posted);
    assert_eq!(server.metric("chat_stream_resets_total").await, 1.0);
}
