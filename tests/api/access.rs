//! Who sees what: a private room's and a direct room's events reach their members and no one
//! else, on every route and stream (JSON and HTML, per room and per user, replayed and live),
//! and a room the caller cannot read answers exactly as one that does not exist. Streams are
//! held against the database, computed here from its rows by the rule DESIGN.md states.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Client, Server, Stream200, TestDb, ids};

/// The events `username` may see, by the database: everything everyone sees, what is theirs
/// alone, a public room's events, and a members-only room's from the event that let them in
/// to the one that removed them. Restricted to `room` (with what everyone sees) if given.
async fn visible_in_database(db: &TestDb, username: &str, room: Option<&str>) -> Vec<i64> {
    let mut conn = db.connect().await;
    let user: i64 = sqlx::query_scalar("SELECT id FROM users WHERE username = ?")
        .bind(username)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let room: Option<i64> = match room {
        Some(name) => Some(
            sqlx::query_scalar("SELECT id FROM rooms WHERE name = ?")
                .bind(name)
                .fetch_one(&mut conn)
                .await
                .unwrap(),
        ),
        None => None,
    };
    let events: Vec<EventRow> = sqlx::query_as(
        "SELECT e.id, e.scope, e.room_id, e.user_id, r.kind FROM events AS e \
         LEFT JOIN rooms AS r ON r.id = e.room_id ORDER BY e.id",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let stints: Vec<(i64, i64, i64, Option<i64>)> =
        sqlx::query_as("SELECT room_id, user_id, from_id, until_id FROM room_access")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    events
        .into_iter()
        .filter(|(id, scope, room_id, user_id, kind)| match scope.as_str() {
            "everyone" => true,
            "user" => room.is_none() && *user_id == user,
            "room" => {
                room.is_none_or(|room| *room_id == Some(room))
                    && (kind.as_deref() == Some("public")
                        || stints.iter().any(|(r, u, from, until)| {
                            Some(*r) == *room_id && *u == user && from <= id && until.is_none_or(|until| *id <= until)
                        }))
            }
            other => panic!("unknown scope {other}"),
        })
        .map(|(id, ..)| id)
        .collect()
}

/// An event as the rule needs it: id, scope, room, user, the room's kind.
type EventRow = (i64, String, Option<i64>, i64, Option<String>);

/// The ids of every event `stream` sends up to and including `last`.
async fn ids_until(stream: &mut Stream200, last: i64) -> Vec<i64> {
    ids(&stream.until_id(last, false).await)
}

/// The ids of the events in `rooms`, by the database.
async fn ids_in_rooms(db: &TestDb, rooms: &[&str]) -> HashSet<i64> {
    let mut conn = db.connect().await;
    let mut found = HashSet::new();
    for room in rooms {
        let ids: Vec<i64> =
            sqlx::query_scalar("SELECT e.id FROM events AS e JOIN rooms AS r ON r.id = e.room_id WHERE r.name = ?")
                .bind(room)
                .fetch_all(&mut conn)
                .await
                .unwrap();
        found.extend(ids);
    }
    found
}

/// The status and body of a request.
async fn answer(client: &Client, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, String) {
    let mut request = client.request(method, path);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
    (response.status().as_u16(), response.text().await.unwrap())
}

/// Every route of a room, as `(method, path, body)`, for the room `room`.
fn room_routes(room: &str) -> Vec<(reqwest::Method, String, Option<Value>)> {
    use reqwest::Method;
    vec![
        (Method::GET, format!("/api/rooms/{room}/messages"), None),
        (Method::GET, format!("/api/rooms/{room}/messages?before=1000"), None),
        (
            Method::POST,
            format!("/api/rooms/{room}/messages"),
            Some(json!({"content": "let me in"})),
        ),
        (Method::GET, format!("/api/rooms/{room}/members"), None),
        (Method::PUT, format!("/api/rooms/{room}/members/cat"), None),
        (Method::DELETE, format!("/api/rooms/{room}/members/ada"), None),
        (
            Method::PATCH,
            format!("/api/rooms/{room}"),
            Some(json!({"topic": "mine now"})),
        ),
        (Method::GET, format!("/api/rooms/{room}/events"), None),
        (
            Method::GET,
            format!("/api/rooms/{room}/events?format=html&after=0"),
            None,
        ),
        (Method::GET, format!("/rooms/{room}"), None),
        (Method::GET, format!("/rooms/{room}/older?before=1000"), None),
        (Method::GET, format!("/rooms/{room}/members"), None),
    ]
}

#[tokio::test]
async fn outsiders_get_not_found_and_see_nothing_while_members_see_everything() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let ada = server.user("ada").await;
    let bob = server.user("bob").await;
    let cat = server.user("cat").await;
    let mut cat_live = cat.open_user_stream("", None).await;
    let mut cat_live_html = cat.open_user_stream("?format=html", None).await;
    let mut bob_live = bob.open_user_stream("", None).await;

    ada.create_private_room("secret").await;
    ada.add_member("secret", "bob").await;
    let (status, dm) = ada.dm(&["bob"]).await;
    assert_eq!(status, 201, "{dm}");
    assert_eq!(dm["kind"], "direct");
    assert_eq!(dm["members"], json!(["ada", "bob"]));
    let direct = dm["name"].as_str().unwrap().to_owned();
    let secret_said = ada.say("secret", "the plan").await["id"].as_i64().unwrap();
    let direct_said = bob.say(&direct, "psst").await["id"].as_i64().unwrap();
    let marker = ada.say("general", "for everyone").await["id"].as_i64().unwrap();
    let private = ids_in_rooms(&db, &["secret", &direct]).await;
    assert!(private.contains(&secret_said) && private.contains(&direct_said));

    // Live: the outsider's streams carry the public message and nothing private before it;
    // the member's carries every private event from the one that let them in.
    for stream in [&mut cat_live, &mut cat_live_html] {
        let seen = ids_until(stream, marker).await;
        assert!(seen.contains(&marker));
        assert!(seen.iter().all(|id| !private.contains(id)), "{seen:?}");
    }
    let seen: BTreeSet<i64> = ids_until(&mut bob_live, marker).await.into_iter().collect();
    let bob_may: BTreeSet<i64> = visible_in_database(&db, "bob", None)
        .await
        .into_iter()
        .filter(|id| private.contains(id))
        .collect();
    assert!(bob_may.contains(&secret_said) && bob_may.contains(&direct_said));
    assert!(bob_may.is_subset(&seen), "bob saw {seen:?}, may see {bob_may:?}");

    // Replayed, in both formats: exactly what the database says each may see.
    for user in [&ada, &bob, &cat] {
        let expected: Vec<i64> = visible_in_database(&db, &user.username, None)
            .await
            .into_iter()
            .filter(|id| *id <= marker)
            .collect();
        for format in ["json", "html"] {
            let mut replay = user.open_user_stream(&format!("?after=0&format={format}"), None).await;
            assert_eq!(
                ids_until(&mut replay, marker).await,
                expected,
                "{} ({format})",
                user.username
            );
        }
    }
    for room in ["secret", direct.as_str()] {
        for user in [&ada, &bob] {
            let expected: Vec<i64> = visible_in_database(&db, &user.username, Some(room))
                .await
                .into_iter()
                .filter(|id| *id <= marker)
                .collect();
            let mut replay = user.open_stream(room, "?after=0", None).await;
            let last = *expected.last().unwrap();
            assert_eq!(
                ids_until(&mut replay, last).await,
                expected,
                "{} in {room}",
                user.username
            );
        }
    }

    // Every route of both rooms answers the outsider exactly as a room that does not exist.
    for room in ["secret", direct.as_str()] {
        for ((method, path, body), (_, nowhere, _)) in room_routes(room).into_iter().zip(room_routes("nowhere")) {
            let (status, text) = answer(&cat, method.clone(), &path, body.clone()).await;
            let (nowhere_status, nowhere_text) = answer(&cat, method.clone(), &nowhere, body).await;
            assert_eq!(status, 404, "{method} {path}: {text}");
            assert_eq!(nowhere_status, 404, "{method} {nowhere}");
            assert_eq!(text.replace(room, "nowhere"), nowhere_text, "{method} {path}");
        }
    }
    // ...and the room list does not name them.
    let listed = |body: Value| -> Vec<String> {
        body["rooms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|room| room["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(listed(cat.get_json("/api/rooms").await), ["general"]);
    let page = cat
        .request(reqwest::Method::GET, "/rooms/general")
        .send()
        .await
        .unwrap();
    let page = page.text().await.unwrap();
    assert!(!page.contains("secret") && !page.contains(&direct), "{page}");

    // Members read all of it.
    for member in [&ada, &bob] {
        let mut rooms = listed(member.get_json("/api/rooms").await);
        rooms.sort();
        let mut expected = vec![direct.clone(), "general".to_owned(), "secret".to_owned()];
        expected.sort();
        assert_eq!(rooms, expected);
        let secret: Vec<i64> = member
            .history("secret", "")
            .await
            .iter()
            .map(|m| m["id"].as_i64().unwrap())
            .collect();
        assert_eq!(secret, [secret_said]);
        let said: Vec<String> = member
            .history(&direct, "")
            .await
            .iter()
            .map(|m| m["content"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(said, ["psst"]);
        let members: Vec<String> = member
            .get_json("/api/rooms/secret/members")
            .await
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["username"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(members, ["ada", "bob"]);
    }
    let everyone = ada.get_json("/api/rooms/general/members").await;
    assert_eq!(
        everyone.as_array().unwrap().len(),
        3,
        "a public room's members are every account"
    );
    let direct_room = ada
        .get_json("/api/rooms")
        .await
        .get("rooms")
        .and_then(|rooms| rooms.as_array().cloned())
        .unwrap()
        .into_iter()
        .find(|room| room["name"] == direct)
        .unwrap();
    assert_eq!(direct_room["members"], json!(["ada", "bob"]));

    // After a restart the hub knows the members again: live routing is the same.
    drop(server);
    let server = Server::start(&db, &[]).await;
    let (ada, bob, cat) = (ada.against(&server), bob.against(&server), cat.against(&server));
    let mut cat_live = cat.open_user_stream("", None).await;
    let mut bob_live = bob.open_user_stream("", None).await;
    let secret_again = ada.say("secret", "still secret").await["id"].as_i64().unwrap();
    let marker = ada.say("general", "again for everyone").await["id"].as_i64().unwrap();
    assert!(!ids_until(&mut cat_live, marker).await.contains(&secret_again));
    assert!(ids_until(&mut bob_live, marker).await.contains(&secret_again));
}

#[tokio::test]
async fn a_removed_member_gets_every_event_before_the_removal_and_none_after_even_when_lagging() {
    let db = TestDb::new();
    // A tiny hub: every stream that is not read at once falls behind its feed and catches up
    // from the database.
    let server = Server::start(&db, &["--hub-capacity", "1"]).await;
    let ada = server.user("ada").await;
    let bob = server.user("bob").await;
    let dan = server.user("dan").await;
    ada.create_private_room("ops").await;
    ada.add_member("ops", "bob").await;
    ada.add_member("ops", "dan").await;
    let before = ada.say("general", "before").await["id"].as_i64().unwrap();

    // Bob's streams are open and not read until the posting is over.
    let mut user_stream = bob.open_user_stream(&format!("?after={before}"), None).await;
    let mut room_stream = bob.open_stream("ops", &format!("?after={before}"), None).await;
    let mut user_html = bob
        .open_user_stream(&format!("?after={before}&format=html"), None)
        .await;
    // Bursts of nine events published at once to bob's feed of one slot (a direct room of
    // eight people and their `member` events): his user streams fall behind, whatever the
    // batches of posts below do. Three of them, each of another set of people.
    let mut others = vec!["dan".to_owned()];
    for n in 0..8 {
        others.push(server.user(&format!("p{n}")).await.username);
    }
    for left_out in 0..3 {
        let mut people = vec!["bob"];
        people.extend(
            others
                .iter()
                .enumerate()
                .filter(|(n, _)| *n != left_out && *n != left_out + 3)
                .map(|(_, name)| name.as_str()),
        );
        assert_eq!(ada.dm(&people).await.0, 201, "{people:?}");
    }

    let poster = |client: Client, tag: &'static str| {
        tokio::spawn(async move {
            for n in 0..60 {
                let response = client.post("ops", &format!("{tag} {n}")).await;
                assert_eq!(response.status(), 201);
            }
        })
    };
    let (ada_posts, dan_posts) = (poster(ada.clone(), "ada"), poster(dan.clone(), "dan"));
    // Some of it lands before the removal, some after.
    tokio::time::sleep(Duration::from_millis(30)).await;
    let removal = ada.membership("ops", "bob", false).await;
    assert_eq!(removal.0, 200, "{}", removal.1);
    assert_eq!(removal.1["type"], "member");
    assert_eq!(removal.1["joined"], false);
    assert_eq!(removal.1["username"], "bob");
    assert_eq!(removal.1["by"], "ada");
    let removed_at = removal.1["id"].as_i64().unwrap();
    ada_posts.await.unwrap();
    dan_posts.await.unwrap();
    let after = ada.say("ops", "after it all").await["id"].as_i64().unwrap();
    let marker = ada.say("general", "marker").await["id"].as_i64().unwrap();

    let ops: BTreeSet<i64> = ids_in_rooms(&db, &["ops"]).await.into_iter().collect();
    let before_removal: Vec<i64> = ops
        .iter()
        .copied()
        .filter(|id| *id > before && *id <= removed_at)
        .collect();
    assert!(
        ops.iter().any(|id| *id > removed_at && *id < after),
        "posting went on after the removal"
    );
    assert!(
        before_removal.len() > 1,
        "some posts landed before the removal: {before_removal:?}"
    );

    for stream in [&mut user_stream, &mut user_html] {
        let seen = ids_until(stream, marker).await;
        let seen_in_ops: Vec<i64> = seen.iter().copied().filter(|id| ops.contains(id)).collect();
        assert_eq!(
            seen_in_ops, before_removal,
            "up to and including the removal, none after"
        );
    }
    // The room stream ends after the event of the removal.
    let mut seen = Vec::new();
    while let Some(event) = room_stream.next().await {
        seen.push(event);
    }
    let seen: Vec<i64> = ids(&seen).into_iter().filter(|id| ops.contains(id)).collect();
    assert_eq!(seen, before_removal);
    assert!(
        server.metric("chat_lag_recoveries_total").await > 0.0,
        "the streams fell behind"
    );

    // Reconnecting with an old cursor replays nothing of the room after the removal, and the
    // room's own stream is gone for bob.
    let mut again = bob.open_user_stream(&format!("?after={before}"), None).await;
    let replayed: Vec<i64> = ids_until(&mut again, marker)
        .await
        .into_iter()
        .filter(|id| ops.contains(id))
        .collect();
    assert_eq!(replayed, before_removal);
    let status = bob
        .request(reqwest::Method::GET, &format!("/api/rooms/ops/events?after={before}"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 404);
    assert_eq!(bob.post("ops", "can I still?").await.status(), 404);
    assert_eq!(
        visible_in_database(&db, "bob", Some("ops"))
            .await
            .into_iter()
            .filter(|id| ops.contains(id) && *id > before)
            .collect::<Vec<_>>(),
        before_removal,
        "the database says the same"
    );
}

#[tokio::test]
async fn an_added_member_sees_the_room_from_the_member_event_on() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let ada = server.user("ada").await;
    let bob = server.user("bob").await;
    let mut bob_live = bob.open_user_stream("", None).await;
    ada.create_private_room("plans").await;
    let earlier = ada.say("plans", "before bob").await["id"].as_i64().unwrap();
    let added = ada.add_member("plans", "bob").await;
    assert_eq!(added["joined"], true);
    let added_at = added["id"].as_i64().unwrap();
    let later = ada.say("plans", "with bob").await["id"].as_i64().unwrap();

    let (event, first) = loop {
        let (event, value) = bob_live.expect_json().await;
        if value["room"] == "plans" {
            break (event, value);
        }
    };
    assert_eq!(event.event, "member");
    assert_eq!(first["id"].as_i64(), Some(added_at));
    assert_eq!(bob_live.next_message().await.1["id"].as_i64(), Some(later));
    let mut replay = bob.open_user_stream("?after=0", None).await;
    let seen = ids_until(&mut replay, later).await;
    assert!(!seen.contains(&earlier) && seen.contains(&added_at) && seen.contains(&later));
    // The history of the room is the room's: a member reads what was said before they came.
    let history: Vec<i64> = bob
        .history("plans", "")
        .await
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect();
    assert_eq!(history, [earlier, later]);
}

#[tokio::test]
async fn members_are_added_by_members_removed_by_the_creator_or_an_admin_and_anyone_leaves() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let admin = server.user("ada").await;
    let bob = server.user("bob").await;
    let cat = server.user("cat").await;
    server.user("dan").await;
    bob.create_private_room("crew").await;
    // Only a member adds; adding again changes nothing.
    assert_eq!(cat.membership("crew", "cat", true).await.0, 404);
    bob.add_member("crew", "cat").await;
    assert_eq!(bob.membership("crew", "cat", true).await.0, 204);
    cat.add_member("crew", "dan").await;
    // A member who is not the creator cannot remove another; the creator can.
    let (status, body) = cat.membership("crew", "dan", false).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["error"].as_str().unwrap().contains("creator"), "{body}");
    assert_eq!(bob.membership("crew", "dan", false).await.0, 200);
    assert_eq!(
        bob.membership("crew", "dan", false).await.0,
        204,
        "not a member any more"
    );
    // An admin who is a member removes anyone; anyone leaves.
    bob.add_member("crew", "ada").await;
    assert_eq!(admin.membership("crew", "cat", false).await.0, 200);
    let (status, left) = bob.membership("crew", "bob", false).await;
    assert_eq!(status, 200);
    assert_eq!(
        (left["by"].as_str(), left["username"].as_str()),
        (Some("bob"), Some("bob"))
    );
    assert_eq!(bob.history_status("crew").await, 404, "gone for whoever left");
    // No such account, or a malformed name.
    assert_eq!(admin.membership("crew", "nobody", true).await.0, 404);
    assert_eq!(admin.membership("crew", "no%20way", true).await.0, 422);
    // Deactivated accounts are not added.
    let deactivate = admin
        .request(reqwest::Method::PATCH, "/api/users/dan")
        .json(&json!({"active": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(deactivate.status(), 200);
    assert_eq!(admin.membership("crew", "dan", true).await.0, 404);

    // Public and direct rooms have no members to change.
    let (status, body) = admin.membership("general", "bob", true).await;
    assert_eq!(status, 409, "{body}");
    let (_, dm) = admin.dm(&["bob"]).await;
    let direct = dm["name"].as_str().unwrap();
    assert_eq!(admin.membership(direct, "cat", true).await.0, 409);
    assert_eq!(admin.membership(direct, "bob", false).await.0, 409);
}

#[tokio::test]
async fn a_direct_room_is_found_by_its_people() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let ada = server.user("ada").await;
    let bob = server.user("bob").await;
    let cat = server.user("cat").await;
    let (status, first) = ada.dm(&["bob"]).await;
    assert_eq!(status, 201);
    // The same people, asked by either, in any order or case: the same room.
    let (status, again) = bob.dm(&["ADA"]).await;
    assert_eq!((status, &again["name"]), (200, &first["name"]));
    let (status, again) = ada.dm(&["bob", "ada", "bob"]).await;
    assert_eq!((status, &again["name"]), (200, &first["name"]));
    // Another set is another room.
    let (status, three) = cat.dm(&["bob", "ada"]).await;
    assert_eq!(status, 201);
    assert_ne!(three["name"], first["name"]);
    assert_eq!(three["members"], json!(["ada", "bob", "cat"]));
    // Bad requests.
    assert_eq!(ada.dm(&[]).await.0, 422);
    assert_eq!(ada.dm(&["nobody"]).await.0, 404);
    let crowd: Vec<String> = (0..12).map(|n| format!("p{n}")).collect();
    for name in &crowd {
        server.user(name).await;
    }
    let crowd: Vec<&str> = crowd.iter().map(String::as_str).collect();
    let (status, body) = ada.dm(&crowd).await;
    assert_eq!(status, 422, "{body}");
    // Concurrent starts of the same conversation make one room.
    let p1 = server.user("p1").await;
    let (a, b) = tokio::join!(cat.dm(&["p1"]), p1.dm(&["cat"]));
    assert_eq!(a.1["name"], b.1["name"]);
    assert_eq!([a.0.min(b.0), a.0.max(b.0)], [200, 201]);
    // A direct room's name is kept for direct rooms.
    let made = ada
        .request(reqwest::Method::POST, "/api/rooms")
        .json(&json!({"name": "dm-mine"}))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 422);
    // The direct room is a room: addressed by its name on every room route, and its topic
    // and archived flag do not change.
    let name = first["name"].as_str().unwrap();
    assert_eq!(ada.post(name, "hi bob").await.status(), 201);
    let patch = ada
        .request(reqwest::Method::PATCH, &format!("/api/rooms/{name}"))
        .json(&json!({"topic": "us"}))
        .send()
        .await
        .unwrap();
    assert_eq!(patch.status(), 409);
}

#[tokio::test]
async fn a_room_has_a_topic_and_is_archived_by_its_creator_or_an_admin() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let admin = server.user("ada").await;
    let bob = server.user("bob").await;
    let cat = server.user("cat").await;
    let made = bob
        .request(reqwest::Method::POST, "/api/rooms")
        .json(&json!({"name": "garden", "topic": "  plants  "}))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 201);
    let made: Value = made.json().await.unwrap();
    assert_eq!(made["topic"], "plants");
    let mut live = cat.open_user_stream("", None).await;
    let patch = |client: &Client, body: Value| {
        let request = client.request(reqwest::Method::PATCH, "/api/rooms/garden").json(&body);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    assert_eq!(patch(&cat, json!({"topic": "mine"})).await.0, 403);
    let (status, room) = patch(&bob, json!({"topic": "herbs"})).await;
    assert_eq!((status, room["topic"].as_str()), (200, Some("herbs")));
    let changed = loop {
        let (event, value) = live.expect_json().await;
        if event.event == "room" {
            break value;
        }
    };
    assert_eq!(
        (
            changed["room"].as_str(),
            changed["topic"].as_str(),
            changed["archived"].as_bool()
        ),
        (Some("garden"), Some("herbs"), Some(false))
    );
    assert_eq!(patch(&bob, json!({"topic": "x".repeat(300)})).await.0, 422);
    assert_eq!(patch(&bob, json!({"topic": "two\nlines"})).await.0, 422);
    let (status, room) = patch(&admin, json!({"archived": true, "topic": null})).await;
    assert_eq!(status, 200);
    assert_eq!((room["archived"].as_bool(), &room["topic"]), (Some(true), &Value::Null));
    let (status, body) = cat.post_json("garden", json!({"content": "hello?"})).await;
    assert_eq!(status, 409, "an archived room takes no messages: {body}");
    assert!(body["error"].as_str().unwrap().contains("archived"));
    assert_eq!(cat.history("garden", "").await.len(), 0, "its history still reads");
    let (status, _) = patch(&bob, json!({"archived": false})).await;
    assert_eq!(status, 200);
    assert_eq!(cat.post("garden", "back").await.status(), 201);
}
