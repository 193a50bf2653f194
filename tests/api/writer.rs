//! The one writer under trouble: a request that fails is failed alone, a batch the database
//! refuses fails only its own requests (with a clear `503`), and the writer carries on; messages
//! stored together are each answered as if stored alone.

use std::collections::HashMap;
use std::time::Duration;

use crate::common::{Client, Server, TestDb};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_failing_request_does_not_spoil_the_batch() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let ada = server.user("ada").await;
    let mut tasks = Vec::new();
    for n in 0..40 {
        let ada = ada.clone();
        tasks.push(tokio::spawn(async move {
            if n % 2 == 0 {
                ada.create_room("contested").await.status().as_u16()
            } else {
                ada.post("general", &format!("msg {n}")).await.status().as_u16()
            }
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    let rooms: Vec<u16> = statuses.iter().step_by(2).copied().collect();
    let posts: Vec<u16> = statuses.iter().skip(1).step_by(2).copied().collect();
    assert_eq!(rooms.iter().filter(|s| **s == 201).count(), 1, "{rooms:?}");
    assert_eq!(rooms.iter().filter(|s| **s == 409).count(), 19, "{rooms:?}");
    assert!(posts.iter().all(|s| *s == 201), "{posts:?}");
    assert_eq!(ada.history("general", "?limit=200").await.len(), 20);
}

#[tokio::test]
async fn a_locked_database_fails_the_batch_with_503_and_the_writer_carries_on() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let ada = server.user("ada").await;
    ada.say("general", "before the lock").await;

    // Someone at the sqlite3 prompt holds the write lock past the server's busy timeout.
    let mut conn = db.connect().await;
    sqlx::query("BEGIN IMMEDIATE").execute(&mut conn).await.unwrap();
    let refused = ada.post("general", "while locked").await;
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: Value = refused.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("try again"), "{body}");
    // Reads go on: WAL readers do not wait for the writer.
    assert_eq!(reqwest::get(server.url("/healthz")).await.unwrap().status(), 200);
    sqlx::query("ROLLBACK").execute(&mut conn).await.unwrap();

    let accepted = ada.say("general", "after the lock").await;
    let history = ada.history("general", "").await;
    let contents: Vec<&str> = history.iter().map(|m| m["content"].as_str().unwrap()).collect();
    assert_eq!(contents, ["before the lock", "after the lock"], "nothing half-written");
    assert_eq!(history[1]["id"], accepted["id"]);
}

/// Messages that wait for the writer together are stored together, and each is answered as if
/// it had been stored alone: new ones, repeats of earlier ones, repeats within the batch, reused
/// `client_id`s, and a status change in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn messages_stored_together_are_each_answered_as_if_alone() {
    const EARLIER: &str = "0e7c2d1a-6b3f-4a58-9c14-2f8e5d7b3a61";
    const FRESH: &str = "5a1f9e3c-8d27-4b6e-a093-7c4d2e1f8b50";
    const CONTESTED: &str = "c39b7a52-1e84-4f0d-b6a7-93d5e2c1f804";
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let ada = server.user("ada").await;
    let bob = server.user("bob").await;
    let (status, earlier) = post(&ada, "earlier", Some(EARLIER)).await;
    assert_eq!(status, 201);

    // The writer waits for the lock with the first request; the rest queue up behind it and
    // make the next batch.
    let mut lock = db.connect().await;
    sqlx::query("BEGIN IMMEDIATE").execute(&mut lock).await.unwrap();
    let first = tokio::spawn({
        let ada = ada.clone();
        async move { post(&ada, "first", None).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut burst: Vec<(&str, tokio::task::JoinHandle<(u16, Value)>)> = Vec::new();
    let mut send = |label, client: &Client, content: &'static str, client_id| {
        let client = client.clone();
        burst.push((
            label,
            tokio::spawn(async move { post(&client, content, client_id).await }),
        ));
    };
    for _ in 0..5 {
        send("plain", &ada, "plain", None);
    }
    send("repeat", &ada, "earlier", Some(EARLIER));
    send("reused", &ada, "changed", Some(EARLIER));
    send("bob's own", &bob, "earlier", Some(EARLIER));
    for _ in 0..3 {
        send("fresh", &ada, "fresh", Some(FRESH));
    }
    send("contested", &bob, "one", Some(CONTESTED));
    send("contested", &bob, "other", Some(CONTESTED));
    for _ in 0..5 {
        send("plain", &bob, "plain", None);
    }
    let away = tokio::spawn({
        let ada = ada.clone();
        async move { ada.set_status("away").await.status().as_u16() }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let batches_before = server.metric("chat_write_batch_size_count").await;
    sqlx::query("ROLLBACK").execute(&mut lock).await.unwrap();

    assert_eq!(first.await.unwrap().0, 201);
    assert_eq!(away.await.unwrap(), 200);
    let mut answers: HashMap<&str, Vec<(u16, Value)>> = HashMap::new();
    for (label, answer) in burst {
        answers.entry(label).or_default().push(answer.await.unwrap());
    }
    // All of them landed in one or two batches, so runs of messages were stored together.
    let batches = server.metric("chat_write_batch_size_count").await - batches_before;
    assert!(batches <= 3.0, "{batches} batches");

    let plain = &answers["plain"];
    assert!(plain.iter().all(|(status, _)| *status == 201), "{plain:?}");
    let mut ids: Vec<i64> = plain.iter().map(|(_, event)| event["id"].as_i64().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 10, "each plain message is its own");
    assert_eq!(answers["repeat"], [(200, earlier.clone())]);
    assert_eq!(answers["reused"][0].0, 409, "{:?}", answers["reused"]);
    let (status, bobs) = &answers["bob's own"][0];
    assert_eq!((*status, bobs["username"].as_str()), (201, Some("bob")));
    assert_ne!(bobs["id"], earlier["id"]);
    let fresh = &answers["fresh"];
    assert_eq!(
        fresh.iter().filter(|(status, _)| *status == 201).count(),
        1,
        "{fresh:?}"
    );
    assert!(
        fresh
            .iter()
            .all(|(status, event)| *status != 409 && *event == fresh[0].1),
        "{fresh:?}"
    );
    let mut contested: Vec<u16> = answers["contested"].iter().map(|(status, _)| *status).collect();
    contested.sort_unstable();
    assert_eq!(contested, [201, 409]);

    // Every answer says what is stored, under the id it names.
    let mut conn = db.connect().await;
    let stored: Vec<(i64, String, String)> = sqlx::query_as(
        "SELECT e.id, u.username, e.body FROM events AS e JOIN users AS u ON u.id = e.user_id \
         WHERE e.kind = 'message' ORDER BY e.id",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let answered: Vec<&Value> = answers
        .values()
        .flatten()
        .filter(|(status, _)| *status == 201)
        .map(|(_, event)| event)
        .collect();
    assert_eq!(stored.len(), 2 + answered.len(), "{stored:?}");
    for event in answered {
        let id = event["id"].as_i64().unwrap();
        let row = stored.iter().find(|(stored_id, ..)| *stored_id == id).unwrap();
        assert_eq!(
            (row.1.as_str(), row.2.as_str()),
            (event["username"].as_str().unwrap(), event["content"].as_str().unwrap())
        );
    }
}

/// Marks of read that wait for the writer together are stored together and each answered as
/// if alone: a cursor marked several times in one batch moves forward only, one `read` event a
/// move and each on its reader's stream alone; a mark behind a removal from the room in the
/// same batch is refused; the cursors stored are the furthest marks.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn marks_of_read_stored_together_are_each_answered_as_if_alone() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let ada = server.user("ada").await;
    let bob = server.user("bob").await;
    let carol = server.user("carol").await;
    ada.create_private_room("inner").await;
    ada.add_member("inner", "bob").await;
    ada.add_member("inner", "carol").await;
    let mut general = Vec::new();
    for n in 0..4 {
        general.push(
            ada.say("general", &format!("general {n}")).await["id"]
                .as_i64()
                .unwrap(),
        );
    }
    let mut inner = Vec::new();
    for n in 0..2 {
        inner.push(ada.say("inner", &format!("inner {n}")).await["id"].as_i64().unwrap());
    }
    let mut bobs_stream = bob.open_user_stream("", None).await;
    let mut carols_stream = carol.open_user_stream("", None).await;

    let mut lock = db.connect().await;
    sqlx::query("BEGIN IMMEDIATE").execute(&mut lock).await.unwrap();
    let first = {
        let ada = ada.clone();
        tokio::spawn(async move { post(&ada, "holds the writer", None).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mark = |client: &Client, room: &'static str, up_to: i64| {
        let client = client.clone();
        tokio::spawn(async move {
            let response = client
                .request(reqwest::Method::PUT, &format!("/api/rooms/{room}/read"))
                .json(&json!({ "up_to": up_to }))
                .send()
                .await
                .expect("PUT read");
            response.status().as_u16()
        })
    };
    let mut bobs = Vec::new();
    for up_to in [general[1], general[3], general[2], general[3], general[0]] {
        bobs.push(mark(&bob, "general", up_to));
    }
    for up_to in inner.iter().rev() {
        bobs.push(mark(&bob, "inner", *up_to));
    }
    let carol_in_general = mark(&carol, "general", general[2]);
    let removal = {
        let ada = ada.clone();
        tokio::spawn(async move { ada.membership("inner", "carol", false).await.0 })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Let in as of her request, out by the time the writer reaches it.
    let carol_in_inner = mark(&carol, "inner", inner[1]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let batches_before = server.metric("chat_write_batch_size_count").await;
    sqlx::query("ROLLBACK").execute(&mut lock).await.unwrap();

    assert_eq!(first.await.unwrap().0, 201);
    for answer in bobs {
        assert_eq!(answer.await.unwrap(), 204);
    }
    assert_eq!(carol_in_general.await.unwrap(), 204);
    assert_eq!(removal.await.unwrap(), 200);
    assert_eq!(
        carol_in_inner.await.unwrap(),
        404,
        "a mark behind the removal in its batch"
    );
    let batches = server.metric("chat_write_batch_size_count").await - batches_before;
    assert!(batches <= 3.0, "{batches} batches");

    // Each stream: its reader's moves, forward only, ending at the furthest mark.
    let mut conn = db.connect().await;
    for (who, stream, ends) in [
        (
            "bob",
            &mut bobs_stream,
            vec![("general", general[3]), ("inner", inner[1])],
        ),
        ("carol", &mut carols_stream, vec![("general", general[2])]),
    ] {
        let stored: Vec<(i64, String, i64)> = sqlx::query_as(
            "SELECT e.id, r.name, CAST(e.body AS INTEGER) FROM events AS e JOIN rooms AS r ON r.id = e.room_id \
             JOIN users AS u ON u.id = e.user_id WHERE e.kind = 'read' AND u.username = ? ORDER BY e.id",
        )
        .bind(who)
        .fetch_all(&mut conn)
        .await
        .unwrap();
        let mut seen = Vec::new();
        while seen.len() < stored.len() {
            let event = stream.expect().await;
            if event.event == "read" {
                let read: Value = serde_json::from_str(&event.data).unwrap();
                assert_eq!(event.id.parse::<i64>().unwrap(), read["id"].as_i64().unwrap());
                seen.push((
                    read["id"].as_i64().unwrap(),
                    read["room"].as_str().unwrap().to_owned(),
                    read["up_to"].as_i64().unwrap(),
                ));
            }
        }
        assert_eq!(seen, stored, "{who}: the stream's read events are the stored ones");
        let more = stream.collect_for(Duration::from_millis(300)).await;
        assert!(
            more.iter().all(|event| event.event != "read"),
            "{who}: no more reads, {more:?}"
        );
        for (room, end) in ends {
            let ups: Vec<i64> = seen.iter().filter(|(_, r, _)| r == room).map(|(.., up)| *up).collect();
            assert!(
                ups.windows(2).all(|w| w[0] < w[1]),
                "{who} in {room}: forward only, {ups:?}"
            );
            assert_eq!(ups.last(), Some(&end), "{who} in {room}");
            let cursor: i64 = sqlx::query_scalar(
                "SELECT x.up_to FROM reads AS x JOIN users AS u ON u.id = x.user_id \
                 JOIN rooms AS r ON r.id = x.room_id WHERE u.username = ? AND r.name = ?",
            )
            .bind(who)
            .bind(room)
            .fetch_one(&mut conn)
            .await
            .unwrap();
            assert_eq!(cursor, end, "{who}'s cursor in {room}");
        }
    }
    // What is left unread: the message that held the writer, and for carol the last before it.
    assert_eq!(bob.get_json("/api/rooms/general").await["unread"], 1);
    assert_eq!(carol.get_json("/api/rooms/general").await["unread"], 2);
}

/// Posts `content` to `general`, with `client_id` if given.
/// A `client_id` stored before, sent again in one batch first with another text and then with
/// its own: the other text is refused, and the resend still finds its message, whichever of
/// the two the batch holds first.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_resend_is_found_even_behind_a_refused_reuse_in_its_batch() {
    const SENT: &str = "7d0c2b9e-4f61-4a3d-8e25-b1c9f0a6d374";
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let ada = server.user("ada").await;
    let (status, stored) = post(&ada, "the first text", Some(SENT)).await;
    assert_eq!(status, 201);

    let mut lock = db.connect().await;
    sqlx::query("BEGIN IMMEDIATE").execute(&mut lock).await.unwrap();
    let spawn = |content: &'static str| {
        let ada = ada.clone();
        tokio::spawn(async move { post(&ada, content, Some(SENT)).await })
    };
    // The writer waits for the lock with the first; the reuse, then the resend, queue behind.
    let first = {
        let ada = ada.clone();
        tokio::spawn(async move { post(&ada, "holds the writer", None).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let reuse = spawn("another text");
    tokio::time::sleep(Duration::from_millis(150)).await;
    let resend = spawn("the first text");
    tokio::time::sleep(Duration::from_millis(300)).await;
    sqlx::query("ROLLBACK").execute(&mut lock).await.unwrap();

    assert_eq!(first.await.unwrap().0, 201);
    assert_eq!(reuse.await.unwrap().0, 409);
    assert_eq!(resend.await.unwrap(), (200, stored));
}

async fn post(client: &Client, content: &str, client_id: Option<&str>) -> (u16, Value) {
    client
        .post_json("general", json!({"content": content, "client_id": client_id}))
        .await
}
