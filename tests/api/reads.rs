//! Reading (issue 15): read cursors, the `read` event on the reader's own streams, unread and
//! mention counts, `@here`/`@room`, and notification levels.
//!
//! - A cursor moves forward only; each move reaches every stream of its reader, live and on
//!   replay, and no one else's; it survives a restart.
//! - Counts under four people posting, editing, deleting and reading at once, in a public, a
//!   private and a direct room, equal both what the test itself did (its own model) and what
//!   the database's views say.
//! - A mention in a room someone cannot read reaches them nowhere; `@here` reaches exactly the
//!   room's readers; an edit that drops a mention, or a deletion, stops it counting.
//! - Bad input, rooms one cannot read, and the rate limit.
//!
//! The mix of actions comes from a seeded PRNG; the seed is printed, and `READS_SEED=<seed>`
//! replays the same choices (the interleaving of the four people still varies).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Client, Rng, Server, TestDb, WAIT, seed};

/// `PUT /api/rooms/{room}/read` with this body: the status and the answer's text.
async fn put_read_body(client: &Client, room: &str, body: Value) -> (u16, String) {
    let response = client
        .request(reqwest::Method::PUT, &format!("/api/rooms/{room}/read"))
        .json(&body)
        .timeout(WAIT)
        .send()
        .await
        .expect("PUT read");
    let status = response.status().as_u16();
    (status, response.text().await.expect("answer"))
}

/// Marks `room` read up to `up_to`, asserting `204`.
async fn read(client: &Client, room: &str, up_to: i64) {
    let (status, body) = put_read_body(client, room, json!({ "up_to": up_to })).await;
    assert_eq!(status, 204, "{} reads {room} to {up_to}: {body}", client.username);
}

/// The room as `GET /api/rooms/{room}` shows it to `client`.
async fn room(client: &Client, room: &str) -> Value {
    client.get_json(&format!("/api/rooms/{room}")).await
}

/// Every room `client` can read, as `GET /api/rooms` lists them, by name.
async fn listed(client: &Client) -> BTreeMap<String, Value> {
    let list = client.get_json("/api/rooms?limit=500").await;
    list["rooms"]
        .as_array()
        .expect("rooms")
        .iter()
        .map(|room| (room["name"].as_str().expect("name").to_owned(), room.clone()))
        .collect()
}

fn counts(room: &Value) -> (i64, i64) {
    (
        room["unread"].as_i64().expect("unread"),
        room["mentions"].as_i64().expect("mentions"),
    )
}

fn id(event: &Value) -> i64 {
    event["id"].as_i64().expect("id")
}

#[tokio::test]
async fn a_cursor_moves_forward_only_and_reaches_every_device_of_its_reader_and_no_one_else() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let ada = server.user("ada").await;
    let bob = server.user("bob").await;
    let carol = server.user("carol").await;
    // Two devices of bob's, in both formats, a room stream of his, and carol's.
    let mut phone = bob.open_user_stream("", None).await;
    let mut laptop = bob.open_user_stream("?format=html", None).await;
    let mut bob_room = bob.open_stream("general", "", None).await;
    let mut carols = carol.open_user_stream("", None).await;

    let first = ada.say("general", "one").await;
    let second = ada.say("general", "two, @bob").await;
    let third = ada.say("general", "three").await;
    for stream in [&mut phone, &mut bob_room, &mut carols] {
        stream.until_id(id(&third), true).await;
    }
    laptop.until_id(id(&third), true).await;
    let general = room(&bob, "general").await;
    assert_eq!(counts(&general), (3, 1));
    assert_eq!(general["last_id"], third["id"]);
    assert_eq!(general["notify"], "mentions");
    assert!(general["read"].as_i64().unwrap() < id(&first));
    assert_eq!(
        counts(&room(&ada, "general").await),
        (0, 0),
        "one's own messages are read"
    );

    read(&bob, "general", id(&second)).await;
    let (event, data) = phone.expect_json().await;
    assert_eq!(event.event, "read");
    let read_id = data["id"].as_i64().unwrap();
    assert_eq!(event.id, read_id.to_string());
    assert_eq!(
        data,
        json!({"id": read_id, "type": "read", "room": "general", "up_to": id(&second), "created_at": data["created_at"]})
    );
    let html = laptop.expect().await;
    assert_eq!((html.event.as_str(), html.id.as_str()), ("read", event.id.as_str()));
    assert_eq!(
        html.data,
        format!(
            r#"<div id="read-general" class="read" data-room="general" data-up-to="{}" hidden></div>"#,
            id(&second)
        )
    );
    assert_eq!(counts(&room(&bob, "general").await), (1, 0));
    assert_eq!(room(&bob, "general").await["read"], second["id"]);

    // Backwards, or to where it already is: nothing is written, nothing is sent.
    read(&bob, "general", id(&first)).await;
    read(&bob, "general", id(&second)).await;
    read(&bob, "general", 0).await;
    assert!(phone.is_quiet_for(Duration::from_millis(300)).await);
    assert_eq!(room(&bob, "general").await["read"], second["id"]);

    read(&bob, "general", id(&third)).await;
    let (_, moved) = phone.expect_json().await;
    assert_eq!(moved["up_to"], third["id"]);
    assert_eq!(laptop.expect().await.event, "read");
    assert_eq!(counts(&room(&bob, "general").await), (0, 0));

    // Only bob's user streams: not his room stream, not carol's.
    assert!(bob_room.is_quiet_for(Duration::from_millis(200)).await);
    assert!(carols.is_quiet_for(Duration::from_millis(200)).await);
    assert_eq!(counts(&room(&carol, "general").await), (3, 0), "@bob is not carol");

    // A device that was away gets both moves on replay, in order, and nobody else gets any.
    let mut away = bob.open_user_stream("?after=0", None).await;
    let reads: Vec<i64> = away
        .collect_for(Duration::from_millis(500))
        .await
        .into_iter()
        .filter(|event| event.event == "read")
        .map(|event| {
            serde_json::from_str::<Value>(&event.data).unwrap()["up_to"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(reads, [id(&second), id(&third)]);
    let mut carols_replay = carol.open_user_stream("?after=0", None).await;
    assert!(
        carols_replay
            .collect_for(Duration::from_millis(500))
            .await
            .iter()
            .all(|event| event.event != "read")
    );
    let mut conn = db.connect().await;
    let stored: Vec<(String, String, i64)> = sqlx::query_as("SELECT username, room, up_to FROM read_cursors")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(stored, [("bob".to_owned(), "general".to_owned(), id(&third))]);

    // A restart keeps it.
    drop((phone, laptop, bob_room, carols, away, carols_replay));
    server.terminate().await;
    let server = Server::start(&db, &[]).await;
    let bob = bob.against(&server);
    assert_eq!(counts(&room(&bob, "general").await), (0, 0));
    assert_eq!(room(&bob, "general").await["read"], third["id"]);
}

#[tokio::test]
async fn a_mention_reaches_only_those_who_can_read_the_room_and_stops_counting_when_it_goes() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let ada = server.user("ada").await;
    let bob = server.user("bob").await;
    let carol = server.user("carol").await;
    ada.create_private_room("secret").await;
    ada.add_member("secret", "bob").await;
    let mut carols = carol.open_user_stream("", None).await;

    let secret = ada.say("secret", "@carol @bob @here the plan").await;
    assert_eq!(secret["mentions"], json!(["carol", "bob"]));
    assert_eq!(secret["mentions_room"], true);
    assert_eq!(counts(&room(&bob, "secret").await), (1, 1));
    // Carol is named but cannot read the room: nothing of it reaches her (her stream carries
    // only presence).
    let reached = carols.collect_for(Duration::from_millis(300)).await;
    assert!(reached.iter().all(|event| event.event == "status"), "{reached:?}");
    assert!(!listed(&carol).await.contains_key("secret"));
    let hidden = carol
        .request(reqwest::Method::GET, "/api/rooms/secret")
        .send()
        .await
        .unwrap();
    let none = carol
        .request(reqwest::Method::GET, "/api/rooms/nowhere")
        .send()
        .await
        .unwrap();
    assert_eq!((hidden.status().as_u16(), none.status().as_u16()), (404, 404));
    assert_eq!(
        hidden.text().await.unwrap().replace("secret", "X"),
        none.text().await.unwrap().replace("nowhere", "X")
    );
    for (status, _) in [
        put_read_body(&carol, "secret", json!({"up_to": id(&secret)})).await,
        put_read_body(&carol, "nowhere", json!({"up_to": id(&secret)})).await,
    ] {
        assert_eq!(status, 404);
    }
    // Let in later, she has not missed it: what was said before she joined is not unread.
    ada.add_member("secret", "carol").await;
    assert_eq!(counts(&room(&carol, "secret").await), (0, 0));

    // `@here` in a public room mentions every reader but its author.
    let everyone = bob.say("general", "lunch @here?").await;
    assert_eq!(counts(&room(&ada, "general").await), (1, 1));
    assert_eq!(counts(&room(&carol, "general").await), (1, 1));
    assert_eq!(counts(&room(&bob, "general").await), (0, 0));

    // An edit that drops the mention stops it counting; one that adds it back counts again; a
    // deletion stops the message counting at all.
    let edit = |id: i64, content: &'static str| {
        let bob = bob.clone();
        async move {
            let response = bob
                .request(reqwest::Method::PATCH, &format!("/api/messages/{id}"))
                .json(&json!({ "content": content }))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.unwrap()
        }
    };
    let edited = edit(id(&everyone), "lunch?").await;
    assert!(edited.get("mentions_room").is_none());
    assert_eq!(counts(&room(&ada, "general").await), (1, 0));
    let edited = edit(id(&everyone), "lunch, @ada?").await;
    assert_eq!(edited["mentions"], json!(["ada"]));
    assert_eq!(counts(&room(&ada, "general").await), (1, 1));
    assert_eq!(counts(&room(&carol, "general").await), (1, 0));
    let gone = bob
        .request(reqwest::Method::DELETE, &format!("/api/messages/{}", id(&everyone)))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 200);
    assert_eq!(counts(&room(&ada, "general").await), (0, 0));
    assert_eq!(room(&ada, "general").await["last_id"], 0);
}

#[tokio::test]
async fn bad_reads_and_levels_are_refused_plainly_and_the_rate_is_bounded() {
    let db = TestDb::new();
    let server = Server::start(&db, &["--read-rate", "5"]).await;
    let ada = server.user("ada").await;
    let said = ada.say("general", "hi").await;

    for body in [
        json!({"up_to": "1"}),
        json!({"up_to": -1}),
        json!({"up_to": 1.5}),
        json!({"up_to": null}),
        json!({"up_to": 1e300}),
        json!({"up_to": [1]}),
    ] {
        let (status, answer) = put_read_body(&ada, "general", body.clone()).await;
        assert_eq!(status, 422, "{body}: {answer}");
        assert!(serde_json::from_str::<Value>(&answer).unwrap()["error"].is_string());
    }
    let (status, _) = put_read_body(&ada, "general", json!({})).await;
    assert!(matches!(status, 400 | 422), "{status}");
    let (status, answer) = put_read_body(&ada, "general", json!({"up_to": id(&said) + 1000})).await;
    assert_eq!(status, 422, "newer than any event: {answer}");

    let level = |level: Value| {
        let ada = ada.clone();
        async move {
            let response = ada
                .request(reqwest::Method::PUT, "/api/rooms/general/notifications")
                .json(&json!({ "level": level }))
                .send()
                .await
                .unwrap();
            response.status().as_u16()
        }
    };
    assert_eq!(level(json!("loud")).await, 422);
    assert_eq!(level(json!(3)).await, 422);
    assert_eq!(level(json!("none")).await, 204);
    assert_eq!(room(&ada, "general").await["notify"], "none");

    // Each request above that got as far as the room counts; the bucket holds five.
    let mut refused = None;
    for _ in 0..10 {
        let response = ada
            .request(reqwest::Method::PUT, "/api/rooms/general/read")
            .json(&json!({"up_to": id(&said)}))
            .send()
            .await
            .unwrap();
        if response.status() == 429 {
            refused = Some(response);
            break;
        }
        assert_eq!(response.status(), 204);
    }
    let refused = refused.expect("the read rate is bounded");
    assert!(refused.headers().contains_key("retry-after"));

    // The words that mention a whole room are no one's name.
    for name in ["here", "Room", "everyone", "channel"] {
        let response = server.anonymous().sign_up(name, "correct horse battery").await;
        assert_eq!(response.status(), 422, "{name}");
    }
}

// ---------------------------------------------------------------------------------------------
// Counts under concurrent change

/// A message as the test knows it from what it was answered.
#[derive(Debug, Clone)]
struct Said {
    room: String,
    author: String,
    mentions: HashSet<String>,
    whole_room: bool,
    live: bool,
}

#[derive(Default)]
struct Model {
    said: BTreeMap<i64, Said>,
    /// The highest `up_to` each (reader, room) was marked read to.
    cursors: HashMap<(String, String), i64>,
}

const PEOPLE: [&str; 4] = ["ada", "bob", "carol", "dan"];

/// The rooms each person reads: `general` (public), `crew` (private: ada, bob, carol) and a
/// direct room of ada and dan.
fn rooms_of(person: &str, dm: &str) -> Vec<String> {
    match person {
        "ada" => vec!["general".into(), "crew".into(), dm.into()],
        "dan" => vec!["general".into(), dm.into()],
        _ => vec!["general".into(), "crew".into()],
    }
}

/// A text mentioning some of the people (whether or not they can read the room), and
/// sometimes the whole room.
fn text(rng: &mut Rng, n: usize) -> (String, HashSet<String>, bool) {
    let mut mentions = HashSet::new();
    let mut text = format!("message {n}");
    for person in PEOPLE {
        if rng.below(4) == 0 {
            text.push_str(&format!(" @{person}"));
            mentions.insert(person.to_owned());
        }
    }
    let whole_room = rng.below(8) == 0;
    if whole_room {
        text.push_str(if rng.below(2) == 0 { " @here" } else { " @room" });
    }
    (text, mentions, whole_room)
}

fn names(value: &Value) -> HashSet<String> {
    value["mentions"]
        .as_array()
        .expect("mentions")
        .iter()
        .map(|name| name.as_str().unwrap().to_owned())
        .collect()
}

/// One person's part: posting, editing and deleting their own messages, and reading.
async fn act(client: Client, dm: String, seed: u64, model: Arc<Mutex<Model>>) {
    let me = client.username.clone();
    let rooms = rooms_of(&me, &dm);
    let mut rng = Rng::new(seed);
    let mut newest_seen = 0;
    for n in 0..60 {
        let choice = rng.below(20);
        let mine: Vec<i64> = {
            let model = model.lock().unwrap();
            model
                .said
                .iter()
                .filter(|(_, said)| said.author == me && said.live)
                .map(|(id, _)| *id)
                .collect()
        };
        if choice < 10 || mine.is_empty() {
            let room = rooms[rng.below(rooms.len())].clone();
            let (content, _, _) = text(&mut rng, n);
            let posted = client.say(&room, &content).await;
            newest_seen = newest_seen.max(id(&posted));
            model.lock().unwrap().said.insert(
                id(&posted),
                Said {
                    room,
                    author: me.clone(),
                    mentions: names(&posted),
                    whole_room: posted["mentions_room"] == true,
                    live: true,
                },
            );
        } else if choice < 13 {
            let target = mine[rng.below(mine.len())];
            let (content, _, _) = text(&mut rng, n);
            let response = client
                .request(reqwest::Method::PATCH, &format!("/api/messages/{target}"))
                .json(&json!({ "content": content }))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            let edit: Value = response.json().await.unwrap();
            newest_seen = newest_seen.max(id(&edit));
            let mut model = model.lock().unwrap();
            let said = model.said.get_mut(&target).expect("edited message is known");
            said.mentions = names(&edit);
            said.whole_room = edit["mentions_room"] == true;
        } else if choice < 15 {
            let target = mine[rng.below(mine.len())];
            let response = client
                .request(reqwest::Method::DELETE, &format!("/api/messages/{target}"))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            model.lock().unwrap().said.get_mut(&target).unwrap().live = false;
        } else {
            // Reading to somewhere recent: sometimes past what the others have said since,
            // sometimes behind where this reader already is.
            let room = rooms[rng.below(rooms.len())].clone();
            let newest = model.lock().unwrap().said.keys().next_back().copied().unwrap_or(0);
            let up_to = match rng.below(3) {
                0 => newest_seen,
                1 => newest,
                _ => newest.saturating_sub(rng.below(10) as i64),
            };
            read(&client, &room, up_to).await;
            let mut model = model.lock().unwrap();
            let cursor = model.cursors.entry((me.clone(), room)).or_default();
            *cursor = (*cursor).max(up_to);
        }
    }
}

#[tokio::test]
async fn counts_under_concurrent_posts_edits_deletions_and_reads_match_the_model_and_the_database() {
    let seed = seed("READS_SEED");
    println!("seed {seed} (replay with READS_SEED={seed})");
    let db = TestDb::new();
    let server = Server::start(&db, &["--rate-limits", "off"]).await;
    let mut people = Vec::new();
    for name in PEOPLE {
        people.push(server.user(name).await);
    }
    people[0].create_private_room("crew").await;
    people[0].add_member("crew", "bob").await;
    people[0].add_member("crew", "carol").await;
    let (status, dm) = people[0].dm(&["dan"]).await;
    assert_eq!(status, 201);
    let dm = dm["name"].as_str().unwrap().to_owned();

    let model = Arc::new(Mutex::new(Model::default()));
    let tasks: Vec<_> = people
        .iter()
        .enumerate()
        .map(|(n, client)| {
            tokio::spawn(act(
                client.clone(),
                dm.clone(),
                seed.wrapping_add(n as u64 * 0x9e37_79b9),
                Arc::clone(&model),
            ))
        })
        .collect();
    for task in tasks {
        task.await.expect("a person's part");
    }

    let model = std::mem::take(&mut *model.lock().unwrap());
    let mut conn = db.connect().await;
    let mut checked = 0;
    for client in &people {
        let me = client.username.as_str();
        let listed = listed(client).await;
        let readable = rooms_of(me, &dm);
        assert_eq!(
            listed.keys().cloned().collect::<HashSet<_>>(),
            readable.iter().cloned().collect::<HashSet<_>>(),
            "{me} lists exactly the rooms they can read"
        );
        for room_name in &readable {
            let cursor = model
                .cursors
                .get(&(me.to_owned(), room_name.clone()))
                .copied()
                .unwrap_or(0);
            let unread: Vec<(&i64, &Said)> = model
                .said
                .iter()
                .filter(|(id, said)| said.live && &said.room == room_name && said.author != me && **id > cursor)
                .collect();
            let mentions = unread
                .iter()
                .filter(|(_, said)| said.whole_room || said.mentions.contains(me))
                .count();
            let last_id = model
                .said
                .iter()
                .filter(|(_, said)| said.live && &said.room == room_name)
                .map(|(id, _)| *id)
                .next_back()
                .unwrap_or(0);
            let expected = (unread.len() as i64, mentions as i64);
            let shown = &listed[room_name];
            assert_eq!(counts(shown), expected, "{me} in {room_name} (seed {seed})");
            assert_eq!(shown["last_id"], last_id, "{me} in {room_name}");
            assert_eq!(counts(&room(client, room_name).await), expected);

            // The same from the views an operator reads at the sqlite3 prompt.
            let stored: i64 = sqlx::query_scalar(
                "SELECT coalesce((SELECT up_to FROM read_cursors WHERE username = ?1 AND room = ?2), 0)",
            )
            .bind(me)
            .bind(room_name)
            .fetch_one(&mut conn)
            .await
            .unwrap();
            assert_eq!(stored, cursor, "{me}'s cursor in {room_name}");
            let from_views: i64 =
                sqlx::query_scalar("SELECT count(*) FROM messages WHERE room = ? AND username != ? AND id > ?")
                    .bind(room_name)
                    .bind(me)
                    .bind(cursor)
                    .fetch_one(&mut conn)
                    .await
                    .unwrap();
            assert_eq!(from_views, expected.0, "{me} in {room_name}, from the views");
            checked += expected.0;
        }
    }
    assert!(checked > 0, "some messages were left unread (seed {seed})");
}
