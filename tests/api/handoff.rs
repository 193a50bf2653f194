//! The hand-off between replay and live delivery. Streams open, with all kinds of cursors,
//! while several posters write concurrently in several rooms; every stream must receive every
//! later event it may see exactly once, in strictly increasing id order, none missing, as the
//! database records them. So for a room's stream and for the user's stream (every room, and
//! rooms made meanwhile). With a tiny hub buffer the streams overflow it and must recover from
//! the database.

use std::time::Duration;

use crate::common::{Client, Server, TestDb, ids};
use sqlx::Row;

const POSTERS: usize = 6;
const POSTS_EACH: usize = 60;

#[derive(Debug, Clone, Copy)]
enum Start {
    Now,
    After(i64),
    LastEventId(i64),
}

/// Which stream the readers follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Follow {
    General,
    User,
}

/// Runs the race and returns how many lag recoveries the server counted.
async fn race(follow: Follow, extra_args: &[&str]) -> u64 {
    let db = TestDb::new();
    let server = Server::start(&db, extra_args).await;
    let watcher = server.user("watcher").await;
    assert_eq!(watcher.create_room("elsewhere").await.status(), 201);
    let seed = watcher.say("general", "seed").await["id"].as_i64().unwrap();

    let mut posters = Vec::new();
    for p in 0..POSTERS {
        let client = server.user(&format!("poster{p}")).await;
        posters.push(tokio::spawn(async move {
            let mut last = 0;
            for n in 0..POSTS_EACH {
                // Some in another room, which a room's stream must not see and the user's must.
                let room = if n % 7 == 3 { "elsewhere" } else { "general" };
                // And rooms made meanwhile, which every user's stream hears of.
                if n == POSTS_EACH / 2 {
                    assert_eq!(client.create_room(&format!("made-by-{p}")).await.status(), 201);
                }
                let event = client.say(room, &format!("{p}:{n}")).await;
                last = last.max(event["id"].as_i64().unwrap());
            }
            last
        }));
    }

    // Open streams while the posters run, each starting somewhere different.
    let mut readers = Vec::new();
    for i in 0..12u64 {
        tokio::time::sleep(Duration::from_millis(15)).await;
        let newest = watcher.history("general", "?limit=1").await;
        let newest = newest.last().map_or(seed, |m| m["id"].as_i64().unwrap());
        let start = match i % 4 {
            0 => Start::Now,
            1 => Start::After(newest.saturating_sub(i as i64 * 3).max(0)),
            2 => Start::LastEventId(newest),
            _ => Start::After(0),
        };
        let reader = watcher.clone();
        // Every third stream reads slowly, so that it falls behind.
        let slow = i % 3 == 0;
        readers.push((start, tokio::spawn(read_until_end(reader, follow, start, slow))));
    }

    // A burst that lands in one commit: its frames are published back to back, faster than
    // any stream takes them, so a tiny hub overflows for sure.
    let burst = (0..32).map(|n| {
        let watcher = watcher.clone();
        tokio::spawn(async move {
            watcher.say("general", &format!("burst {n}")).await["id"]
                .as_i64()
                .unwrap()
        })
    });
    let mut last_posted = 0;
    for posted in burst.collect::<Vec<_>>() {
        last_posted = last_posted.max(posted.await.unwrap());
    }
    for poster in posters {
        last_posted = last_posted.max(poster.await.unwrap());
    }
    let end = watcher.say("general", "end").await["id"].as_i64().unwrap();
    assert!(end > last_posted);

    // What the database says each stream should have seen: for the room's stream, the room's
    // events and what everyone sees; for the user's, all but what is another user's alone.
    let mut conn = db.connect().await;
    let watcher_id: i64 = sqlx::query_scalar("SELECT id FROM users WHERE username = 'watcher'")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let general_id: i64 = sqlx::query_scalar("SELECT id FROM rooms WHERE name = 'general'")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let sql = match follow {
        Follow::General => {
            "SELECT id FROM events WHERE ((room_id = ?1 AND scope = 'room') OR scope = 'everyone') AND id <= ?3 ORDER BY id"
        }
        Follow::User => "SELECT id FROM events WHERE (scope <> 'user' OR user_id = ?2) AND id <= ?3 ORDER BY id",
    };
    let log: Vec<i64> = sqlx::query(sql)
        .bind(general_id)
        .bind(watcher_id)
        .bind(end)
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    if follow == Follow::User {
        let rooms: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE kind = 'room'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(rooms, POSTERS as i64 + 1, "the rooms made are events");
    }

    for (start, reader) in readers {
        let got = reader.await.unwrap();
        assert!(
            got.windows(2).all(|w| w[0] < w[1]),
            "{start:?}: ids not strictly increasing: {got:?}"
        );
        assert_eq!(got.last(), Some(&end), "{start:?}: stream did not reach the end");
        let from = match start {
            Start::After(id) | Start::LastEventId(id) => id,
            // "From now": whatever it starts with, it must miss nothing after that.
            Start::Now => got[0] - 1,
        };
        let expected: Vec<i64> = log.iter().copied().filter(|id| *id > from).collect();
        assert_eq!(got, expected, "{start:?}: stream differs from the log");
    }

    server.metric("chat_lag_recoveries_total").await as u64
}

/// Reads one stream until the message `end`; returns the ids it saw.
async fn read_until_end(client: Client, follow: Follow, start: Start, slow: bool) -> Vec<i64> {
    let (query, last_event_id) = match start {
        Start::Now => (String::new(), None),
        Start::After(id) => (format!("?after={id}"), None),
        Start::LastEventId(id) => (String::new(), Some(id.to_string())),
    };
    let mut stream = match follow {
        Follow::General => client.open_stream("general", &query, last_event_id.as_deref()).await,
        Follow::User => client.open_user_stream(&query, last_event_id.as_deref()).await,
    };
    let mut seen = Vec::new();
    loop {
        let event = stream.expect().await;
        assert_ne!(event.event, "reset", "{start:?}: unexpected reset: {}", event.data);
        seen.push(event.clone());
        if slow && seen.len() % 20 == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if event.event == "message" && event.data.contains(r#""content":"end""#) {
            return ids(&seen);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_room_stream_gets_every_later_event_exactly_once_in_order() {
    race(Follow::General, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn room_streams_that_overflow_a_tiny_hub_recover_from_the_database() {
    let recoveries = race(Follow::General, &["--hub-capacity", "1"]).await;
    assert!(
        recoveries > 0,
        "the tiny hub never overflowed, so recovery was not exercised"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_user_stream_gets_every_later_event_of_every_room_exactly_once_in_order() {
    race(Follow::User, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn user_streams_that_overflow_a_tiny_hub_recover_from_the_database() {
    let recoveries = race(Follow::User, &["--hub-capacity", "1"]).await;
    assert!(
        recoveries > 0,
        "the tiny hub never overflowed, so recovery was not exercised"
    );
}
