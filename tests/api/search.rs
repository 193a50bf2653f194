//! Search, `GET /api/search`, against the real server: it finds only what the caller can read
//! now (public rooms, and members-only rooms they are in), finds a message by what it says now
//! (not by what an edit replaced, never once deleted), filters by room, author and date, pages
//! newest first with no repeat and no gap (also past the bound of work a page may do), answers
//! hostile query syntax with `200` or a readable `422` and never a `5xx`, and has a rate.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{Client, Server, TestDb};

/// `GET /api/search` with `params`: the status and the JSON body.
async fn search(client: &Client, params: &[(&str, &str)]) -> (u16, Value) {
    let response = client
        .request(Method::GET, "/api/search")
        .query(params)
        .send()
        .await
        .expect("GET /api/search");
    let status = response.status().as_u16();
    let text = response.text().await.expect("answer");
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{params:?}: not JSON ({status}): {text}"));
    (status, body)
}

/// The ids a `200` search answers, in order.
async fn found(client: &Client, params: &[(&str, &str)]) -> Vec<i64> {
    let (status, body) = search(client, params).await;
    assert_eq!(status, 200, "{params:?}: {body}");
    ids(&body)
}

fn ids(body: &Value) -> Vec<i64> {
    body["results"]
        .as_array()
        .unwrap_or_else(|| panic!("results in {body}"))
        .iter()
        .map(|hit| hit["id"].as_i64().expect("id"))
        .collect()
}

fn id_of(event: &Value) -> i64 {
    event["id"].as_i64().expect("an id")
}

async fn edit(client: &Client, id: i64, content: &str) {
    let response = client
        .request(Method::PATCH, &format!("/api/messages/{id}"))
        .json(&json!({ "content": content }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "editing {id}");
}

async fn delete(client: &Client, id: i64) {
    let response = client
        .request(Method::DELETE, &format!("/api/messages/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "deleting {id}");
}

#[tokio::test]
async fn search_finds_only_what_each_reader_can_read_now() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let ada = server.user("ada").await;
    let bob = server.user("bob").await;
    let dan = server.user("dan").await;
    let eve = server.user("eve").await; // an outsider: public rooms only
    ada.create_private_room("ops").await;
    ada.add_member("ops", "bob").await;
    ada.add_member("ops", "dan").await;
    let (status, dm) = ada.dm(&["bob"]).await;
    assert_eq!(status, 201, "{dm}");
    let dm = dm["name"].as_str().expect("the direct room's name").to_owned();

    let public = id_of(&ada.say("general", "zebra crossing in the open").await);
    let private = id_of(&ada.say("ops", "zebra crossing among ops").await);
    let direct = id_of(&bob.say(&dm, "zebra crossing between two").await);

    // Who finds what, with no room named and with each room named.
    let rooms = [("general", public), ("ops", private), (dm.as_str(), direct)];
    let matrix: [(&Client, &[i64]); 4] = [
        (&ada, &[public, private, direct]),
        (&bob, &[public, private, direct]),
        (&dan, &[public, private]),
        (&eve, &[public]),
    ];
    for (reader, readable) in matrix {
        let mut expected = readable.to_vec();
        expected.sort_unstable_by(|a, b| b.cmp(a));
        assert_eq!(
            found(reader, &[("q", "zebra")]).await,
            expected,
            "{} finds what they can read, newest first",
            reader.username
        );
        for (room, id) in rooms {
            let (status, body) = search(reader, &[("q", "zebra"), ("room", room)]).await;
            if readable.contains(&id) {
                assert_eq!((status, ids(&body)), (200, vec![id]), "{} in {room}", reader.username);
            } else {
                // Exactly as a room that does not exist, and as the room's other routes say.
                let history = reader
                    .request(Method::GET, &format!("/api/rooms/{room}/messages"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(history.status(), 404);
                let history: Value = history.json().await.unwrap();
                assert_eq!((status, &body), (404, &history), "{} in {room}", reader.username);
                assert!(!body.to_string().contains("zebra"));
            }
        }
    }
    let (status, never) = search(&eve, &[("q", "zebra"), ("room", "nowhere")]).await;
    assert_eq!(status, 404);
    assert_eq!(never["error"], "no room called `nowhere`");

    // A result is the message object as history has it, with its snippet.
    let (_, body) = search(&dan, &[("q", "ops")]).await;
    let hit = &body["results"][0];
    assert_eq!(hit["id"], private);
    assert_eq!(hit["type"], "message");
    assert_eq!(hit["room"], "ops");
    assert_eq!(hit["username"], "ada");
    assert_eq!(hit["content"], "zebra crossing among ops");
    assert!(hit["created_at"].is_string() && hit["reactions"].is_array() && hit["mentions"].is_array());
    assert_eq!(hit["snippet"], "zebra crossing among <mark>ops</mark>");
    assert!(body.get("next").is_none(), "nothing more: {body}");

    // Removed, dan finds nothing of the room any more, said before or after.
    assert_eq!(ada.membership("ops", "dan", false).await.0, 200);
    let later = id_of(&ada.say("ops", "zebra again, after dan left").await);
    assert_eq!(found(&dan, &[("q", "zebra")]).await, vec![public]);
    assert_eq!(search(&dan, &[("q", "zebra"), ("room", "ops")]).await.0, 404);
    assert_eq!(
        found(&bob, &[("q", "zebra")]).await,
        vec![later, direct, private, public]
    );
    // A reader who leaves of their own accord, likewise.
    assert_eq!(bob.membership("ops", "bob", false).await.0, 200);
    assert_eq!(found(&bob, &[("q", "zebra")]).await, vec![direct, public]);

    // Signed out, nothing.
    assert_eq!(search(&server.anonymous(), &[("q", "zebra")]).await.0, 401);
}

#[tokio::test]
async fn an_edited_message_is_found_by_its_new_words_and_a_deleted_one_never() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let ada = server.user("ada").await;
    let bob = server.user("bob").await;
    let fox = id_of(&ada.say("general", "the quick brown fox").await);
    let other = id_of(&bob.say("general", "a fox of another kind").await);
    assert_eq!(found(&bob, &[("q", "quick fox")]).await, vec![fox]);

    edit(&ada, fox, "a lazy sleeping dog").await;
    assert_eq!(
        found(&bob, &[("q", "quick")]).await,
        Vec::<i64>::new(),
        "not by its old words"
    );
    assert_eq!(found(&bob, &[("q", "fox")]).await, vec![other]);
    let (_, body) = search(&bob, &[("q", "sleeping")]).await;
    assert_eq!(ids(&body), vec![fox], "by its new ones");
    assert_eq!(body["results"][0]["content"], "a lazy sleeping dog");
    assert!(body["results"][0]["edited_at"].is_string());
    assert_eq!(body["results"][0]["snippet"], "a lazy <mark>sleeping</mark> dog");
    edit(&ada, fox, "and now a cat").await;
    assert_eq!(found(&bob, &[("q", "sleeping OR quick")]).await, Vec::<i64>::new());
    assert_eq!(found(&bob, &[("q", "cat")]).await, vec![fox]);

    // Deleted: found by none of its versions, nor is its edit history searchable.
    let unicorn = id_of(&ada.say("general", "an ephemeral unicorn").await);
    assert_eq!(found(&bob, &[("q", "unicorn")]).await, vec![unicorn]);
    edit(&ada, unicorn, "an ephemeral pegasus").await;
    delete(&ada, unicorn).await;
    delete(&bob, other).await;
    for q in [
        "unicorn",
        "pegasus",
        "ephemeral",
        "fox",
        "another kind",
        "\"ephemeral pegasus\"",
    ] {
        assert_eq!(found(&bob, &[("q", q)]).await, Vec::<i64>::new(), "{q}");
        assert_eq!(found(&ada, &[("q", q)]).await, Vec::<i64>::new(), "{q}");
    }

    // The index agrees with the messages view: one entry a live message, none for the rest.
    let mut conn = db.connect().await;
    let indexed: Vec<i64> = sqlx::query_scalar("SELECT rowid FROM message_search ORDER BY rowid")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    let live: Vec<i64> = sqlx::query_scalar("SELECT id FROM messages ORDER BY id")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(indexed, live);
    assert_eq!(indexed, vec![fox]);
}

#[tokio::test]
async fn the_query_language_does_what_it_says() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let ada = server.user("ada").await;
    let notes = id_of(&ada.say("general", "Release notes for the Café deploy").await);
    let draft = id_of(&ada.say("general", "draft: release the notes later").await);
    let deploying = id_of(&ada.say("general", "deploying on Friday, **not** today").await);
    let rtl = id_of(&ada.say("general", "שלום עולם, مرحبا بالعالم").await);
    for (q, expected) in [
        ("release notes", vec![draft, notes]),
        ("\"release notes\"", vec![notes]),
        ("RELEASE cafe", vec![notes]),
        ("deplo*", vec![deploying, notes]),
        ("deploy", vec![notes]),
        ("release -draft", vec![notes]),
        ("friday OR later", vec![deploying, draft]),
        ("עולם", vec![rtl]),
        ("مرحبا", vec![rtl]),
        ("nothing-like-this", vec![]),
    ] {
        assert_eq!(found(&ada, &[("q", q)]).await, expected, "{q}");
    }
    // Markup in what was said is shown as text in the snippet; only the marks are HTML.
    let (_, body) = search(&ada, &[("q", "friday")]).await;
    assert_eq!(
        body["results"][0]["snippet"],
        "deploying on <mark>Friday</mark>, **not** today"
    );
    let html = id_of(
        &ada.say("general", "<script>alert('x')</script> & <b>bold</b> words")
            .await,
    );
    let (_, body) = search(&ada, &[("q", "bold")]).await;
    assert_eq!(ids(&body), vec![html]);
    assert_eq!(
        body["results"][0]["snippet"],
        "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &lt;b&gt;<mark>bold</mark>&lt;/b&gt; words"
    );
    // The characters that mark matches cannot be forged by a message.
    let forged = id_of(&ada.say("general", "forged \u{2}mark\u{3} here").await);
    let (_, body) = search(&ada, &[("q", "forged")]).await;
    assert_eq!(ids(&body), vec![forged]);
    assert_eq!(body["results"][0]["snippet"], "<mark>forged</mark> mark here");
    assert_eq!(
        body["results"][0]["content"], "forged \u{2}mark\u{3} here",
        "the message itself is kept as sent"
    );
}

/// A message a test said, as the server stored it.
struct Said {
    id: i64,
    room: &'static str,
    author: String,
    at: String,
}

type Params<'a> = Vec<(&'a str, &'a str)>;

#[tokio::test]
async fn filters_and_pages_go_newest_first_with_no_repeat_and_no_gap() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let ada = server.user("ada").await;
    let bob = server.user("bob").await;
    assert_eq!(ada.create_room("random").await.status(), 201);
    // Each message that says "paging".
    let mut said: Vec<Said> = Vec::new();
    for n in 0..31 {
        let (who, room) = match n % 3 {
            0 => (&ada, "general"),
            1 => (&bob, "general"),
            _ => (&bob, "random"),
        };
        let event = who.say(room, &format!("paging message number {n}")).await;
        said.push(Said {
            id: id_of(&event),
            room,
            author: who.username.clone(),
            at: event["created_at"].as_str().unwrap().to_owned(),
        });
        if n % 5 == 0 {
            who.say(room, "something else entirely").await;
        }
    }
    let newest_first = |keep: &dyn Fn(&Said) -> bool| -> Vec<i64> {
        let mut ids: Vec<i64> = said.iter().filter(|m| keep(m)).map(|m| m.id).collect();
        ids.reverse();
        ids
    };
    let after = said[10].at.clone();
    let before = said[25].at.clone();
    let cases: Vec<(Params, Vec<i64>)> = vec![
        (vec![], newest_first(&|_| true)),
        (vec![("room", "general")], newest_first(&|m| m.room == "general")),
        (vec![("from", "bob")], newest_first(&|m| m.author == "bob")),
        (
            vec![("from", "@Bob"), ("room", "random")],
            newest_first(&|m| m.author == "bob" && m.room == "random"),
        ),
        (vec![("after", after.as_str())], newest_first(&|m| m.at >= after)),
        (vec![("before", before.as_str())], newest_first(&|m| m.at < before)),
        (
            vec![("after", after.as_str()), ("before", before.as_str()), ("from", "ada")],
            newest_first(&|m| m.at >= after && m.at < before && m.author == "ada"),
        ),
        (vec![("before", "2000-01-01")], vec![]),
        (vec![("after", "2000-01-01T00:00+05:00")], newest_first(&|_| true)),
    ];
    for (filters, expected) in cases {
        for limit in ["1", "7", "50"] {
            let mut params = filters.clone();
            params.push(("q", "paging"));
            params.push(("limit", limit));
            let mut got = Vec::new();
            let mut cursor: Option<String> = None;
            for _ in 0..100 {
                let mut page = params.clone();
                if let Some(cursor) = &cursor {
                    page.push(("cursor", cursor));
                }
                let (status, body) = search(&ada, &page).await;
                assert_eq!(status, 200, "{page:?}: {body}");
                let ids = ids(&body);
                assert!(ids.len() <= limit.parse().unwrap(), "{page:?}");
                got.extend(ids);
                match body.get("next") {
                    Some(next) => cursor = Some(next.as_str().expect("next is a string").to_owned()),
                    None => break,
                }
            }
            assert_eq!(got, expected, "{filters:?}, {limit} a page");
        }
    }
    let (_, body) = search(&ada, &[("q", "paging")]).await;
    assert_eq!(ids(&body).len(), 20, "20 a page unless asked");
    assert!(body["next"].is_string());
    // An empty span of time is a mistake, said as one.
    let (status, body) = search(&ada, &[("q", "paging"), ("after", &before), ("before", &after)]).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["error"].as_str().unwrap().contains("earlier"));
}

#[tokio::test]
async fn a_page_does_bounded_work_when_most_matches_are_out_of_reach() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let ada = server.user("ada").await;
    let eve = server.user("eve").await;
    ada.create_private_room("vault").await;
    let early: Vec<i64> = [
        ada.say("general", "needle one").await,
        ada.say("general", "needle two").await,
        ada.say("general", "needle three").await,
    ]
    .iter()
    .map(id_of)
    .collect();
    // More matches than one page looks at, all in a room eve cannot read, newer than hers.
    let mut hidden = Vec::new();
    for chunk in 0..11 {
        let posts: Vec<_> = (0..100)
            .map(|n| {
                let ada = ada.clone();
                async move { id_of(&ada.say("vault", &format!("needle in the vault {chunk}-{n}")).await) }
            })
            .collect();
        hidden.extend(futures_util::future::join_all(posts).await);
    }
    assert_eq!(hidden.len(), 1100);

    let (status, first) = search(&eve, &[("q", "needle")]).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(
        ids(&first),
        Vec::<i64>::new(),
        "the newest thousand matches are none of hers"
    );
    let next = first["next"].as_str().expect("and the page says where to go on");
    let (_, second) = search(&eve, &[("q", "needle"), ("cursor", next)]).await;
    let mut expected = early.clone();
    expected.reverse();
    assert_eq!(ids(&second), expected);
    assert!(second.get("next").is_none(), "{second}");
    // ada reads the vault: 20 a page, newest first, all 1103 over the pages.
    let mut all = Vec::new();
    let mut cursor = None::<String>;
    loop {
        let mut params = vec![("q", "needle"), ("limit", "50")];
        if let Some(cursor) = &cursor {
            params.push(("cursor", cursor));
        }
        let (_, body) = search(&ada, &params).await;
        all.extend(ids(&body));
        match body.get("next") {
            Some(next) => cursor = Some(next.as_str().unwrap().to_owned()),
            None => break,
        }
    }
    let mut expected: Vec<i64> = early.iter().chain(&hidden).copied().collect();
    expected.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(all, expected);
    assert_eq!(all.iter().collect::<BTreeSet<_>>().len(), 1103, "no repeats");
}

#[tokio::test]
async fn hostile_queries_are_answered_200_or_a_readable_422_never_a_5xx() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let ada = server.user("ada").await;
    ada.say("general", "near and not or text col star paren quoted").await;
    let huge = "a".repeat(20_000);
    let many = "word ".repeat(30);
    let queries: Vec<&str> = vec![
        "\"",
        "\"\"",
        "\"\"\"",
        "\"unclosed phrase",
        "NEAR(near and)",
        "NEAR(a b, 2)",
        "near NEAR/2 and",
        "a AND",
        "AND",
        "OR",
        "NOT",
        "a NOT",
        "NOT a",
        "a OR",
        "OR a",
        "a OR OR b",
        "-",
        "--",
        "-a",
        "-\"a b\"",
        "a -",
        "*",
        "**",
        "a*",
        "ab*",
        "abc*",
        "*abc",
        "a*b*c",
        "^a",
        "^",
        "text:near",
        "col:x",
        "{text}: near",
        "(",
        ")",
        "(near)",
        "((((((((((near))))))))))",
        "near)(",
        "+near",
        "near + and",
        "'",
        "' OR 1=1 --",
        "\"; DROP TABLE events; --",
        "\\",
        "%",
        "_",
        "\u{0}",
        "near\u{0}and",
        "\u{0}\"",
        "\u{2}near\u{3}",
        "🎉",
        "🎉 near",
        "👩‍👩‍👧‍👦*",
        "שלום",
        "\u{202E}near",
        "مرحبا*",
        "e\u{301}\u{301}\u{301}\u{301}",
        "\u{FFFD}",
        "\u{FEFF}near",
        "\r\n\t near \u{2028}",
        &huge,
        &many,
    ];
    for q in queries {
        let (status, body) = search(&ada, &[("q", q)]).await;
        let shown: String = q.chars().take(40).collect();
        match status {
            200 => assert!(body["results"].is_array(), "{shown:?}: {body}"),
            422 => {
                let error = body["error"].as_str().unwrap_or_else(|| panic!("{shown:?}: {body}"));
                assert!(error.len() > 10 && !error.contains("fts5"), "{shown:?}: {error}");
            }
            _ => panic!("{shown:?}: {status} {body}"),
        }
    }
    // Not a query at all.
    let (status, body) = search(&ada, &[]).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["error"].as_str().unwrap().starts_with("nothing to search for"));

    // Filters that are not filters: a plain 400 or 422 saying which.
    for (params, expected, says) in [
        (vec![("limit", "0")], 400, "`limit`"),
        (vec![("limit", "51")], 400, "`limit`"),
        (vec![("limit", "ten")], 400, "`limit`"),
        (vec![("limit", "-1")], 400, "`limit`"),
        (vec![("cursor", "x")], 400, "`cursor`"),
        (vec![("cursor", "-5")], 400, "`cursor`"),
        (vec![("cursor", "99999999999999999999999")], 400, "`cursor`"),
        (vec![("after", "yesterday")], 400, "`after`"),
        (vec![("before", "2026-02-30")], 400, "`before`"),
        (vec![("before", "2026-01-01T24:00")], 400, "`before`"),
        (vec![("from", "no such name!")], 422, "username"),
        (vec![("from", "nobody")], 422, "nobody is called `nobody`"),
        (vec![("room", "../../etc")], 404, "no room"),
        (vec![("room", "\u{0}")], 404, "no room"),
    ] {
        let mut params = params.clone();
        params.push(("q", "near"));
        let (status, body) = search(&ada, &params).await;
        assert_eq!(status, expected, "{params:?}: {body}");
        assert!(body["error"].as_str().unwrap().contains(says), "{params:?}: {body}");
    }
    // Bytes that are not text, and parameters given twice.
    for raw in ["q=%FF%FE", "q=a&q=b"] {
        let response = ada
            .request(Method::GET, &format!("/api/search?{raw}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{raw}");
        let body: Value = response.json().await.unwrap();
        assert!(body["error"].is_string(), "{raw}: {body}");
    }
    // And the server is still well.
    assert_eq!(found(&ada, &[("q", "near")]).await.len(), 1);
}

#[tokio::test]
async fn searches_have_a_rate_per_user() {
    let db = TestDb::new();
    let server = Server::start(&db, &["--search-rate", "3"]).await;
    let ada = server.user("ada").await;
    let bob = server.user("bob").await;
    ada.say("general", "limited").await;
    // A query refused before it is run costs nothing.
    assert_eq!(search(&ada, &[("q", "\"unclosed")]).await.0, 422);
    for _ in 0..3 {
        assert_eq!(found(&ada, &[("q", "limited")]).await.len(), 1);
    }
    let response = ada.request(Method::GET, "/api/search?q=limited").send().await.unwrap();
    assert_eq!(response.status(), 429);
    let wait: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=20).contains(&wait), "Retry-After: {wait}");
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().starts_with("too many searches"),
        "{body}"
    );
    assert_eq!(found(&bob, &[("q", "limited")]).await.len(), 1, "others search on");
}
