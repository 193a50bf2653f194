//! The limits, against the real binary: messages per user, sign-in attempts per address and
//! failures per name and address, sign-ups per address, the queue of password hashes, event streams per user and in all, body size and message length, and the count of
//! refusals. The harness turns the message and sign-in limits off through the environment; a
//! test turns one on with its flag, which overrides the environment.
//!
//! Requests sent "at once" reach the limiter within milliseconds of each other, far inside the
//! second a token takes to come back, so which of them are refused is a matter of count, not
//! of timing.

use std::time::Duration;

use crate::common::{Client, Server, TestDb, WAIT};
use futures_util::future::join_all;
use reqwest::Method;
use serde_json::{Value, json};

/// A JSON error answer's status and text.
async fn error_of(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    assert_eq!(
        response.headers().get("content-type").map(|v| v.to_str().unwrap()),
        Some("application/json"),
        "errors are JSON ({status})"
    );
    let body: Value = response.json().await.unwrap();
    (status, body["error"].as_str().expect("an `error` string").to_owned())
}

/// A refusal by a limit: its status, its `Retry-After` (whole seconds, at least 1) and its
/// JSON error.
async fn refusal(response: reqwest::Response) -> (u16, u64, String) {
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .unwrap_or_else(|| panic!("{status} without Retry-After"))
        .to_str()
        .unwrap()
        .parse::<u64>()
        .expect("Retry-After in whole seconds");
    assert!(retry_after >= 1, "Retry-After: {retry_after}");
    let (status, error) = error_of(response).await;
    (status, retry_after, error)
}

/// The contents `username` has stored, read from the database file.
async fn stored_by(db: &TestDb, username: &str) -> Vec<String> {
    let mut conn = db.connect().await;
    sqlx::query_scalar("SELECT content FROM messages WHERE username = ? ORDER BY id")
        .bind(username)
        .fetch_all(&mut conn)
        .await
        .unwrap()
}

/// `GET /api/rooms/general/events`, whatever the answer. A `200` is an open stream, held until
/// the response is dropped.
async fn try_stream(client: &Client) -> reqwest::Response {
    tokio::time::timeout(WAIT, client.request(Method::GET, "/api/rooms/general/events").send())
        .await
        .expect("an answer in time")
        .expect("GET events")
}

/// The page's message form: `POST /rooms/general/messages`, signed in by the session cookie.
async fn post_form(client: &Client, content: &str) -> reqwest::Response {
    let token = client.token.as_deref().expect("signed in");
    client
        .http
        .post(client.url("/rooms/general/messages"))
        .header("cookie", format!("chat_session={token}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("content={content}"))
        .send()
        .await
        .expect("POST the message form")
}

// --- Messages per user ---------------------------------------------------------------------

#[tokio::test]
async fn a_user_posts_a_burst_then_is_refused_until_retry_after_has_passed() {
    let db = TestDb::new();
    let server = Server::start(&db, &["--message-rate", "1", "--message-burst", "3"]).await;
    let ada = server.user("ada").await;
    let bob = server.user("bob").await;

    let contents = ["one", "two", "three", "four"];
    let answers = join_all(contents.iter().map(|content| ada.post("general", content))).await;
    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    for (content, answer) in contents.iter().zip(answers) {
        match answer.status().as_u16() {
            201 => accepted.push(content.to_string()),
            429 => refused.push((content.to_string(), refusal(answer).await)),
            other => panic!("{content}: {other}"),
        }
    }
    assert_eq!(accepted.len(), 3, "a burst of three is allowed");
    let [(refused_content, (_, retry_after, error))] = &refused[..] else {
        panic!("exactly the fourth is refused: {refused:?}");
    };
    assert!(error.contains("too many messages"), "{error}");
    assert_eq!(
        *retry_after, 1,
        "at one a second, the next message is at most a second away"
    );

    // The allowance is ada's own: bob posts as usual.
    bob.say("general", "bob is unaffected").await;

    tokio::time::sleep(Duration::from_secs(*retry_after)).await;
    ada.say("general", "after the wait").await;

    // What was refused was never stored.
    let stored = stored_by(&db, "ada").await;
    assert!(!stored.contains(refused_content), "{stored:?}");
    let mut expected = accepted;
    expected.push("after the wait".into());
    let mut sorted = stored.clone();
    sorted.sort();
    expected.sort();
    assert_eq!(sorted, expected);
    assert_eq!(ada.history("general", "").await.len(), 5, "ada's four and bob's one");
}

#[tokio::test]
async fn a_message_rate_of_zero_turns_the_limit_off() {
    let db = TestDb::new();
    let server = Server::start(&db, &["--message-rate", "0", "--message-burst", "1"]).await;
    let ada = server.user("ada").await;
    let contents: Vec<String> = (0..30).map(|n| format!("message {n}")).collect();
    let answers = join_all(contents.iter().map(|content| ada.post("general", content))).await;
    for (content, answer) in contents.iter().zip(answers) {
        assert_eq!(answer.status(), 201, "{content}");
    }
    assert_eq!(stored_by(&db, "ada").await.len(), 30);
}

#[tokio::test]
async fn the_page_message_form_is_refused_over_the_message_rate() {
    let db = TestDb::new();
    let server = Server::start(&db, &["--message-rate", "1", "--message-burst", "2"]).await;
    let ada = server.user("ada").await;

    let contents = ["page-one", "page-two", "page-three"];
    let answers = join_all(contents.iter().map(|content| post_form(&ada, content))).await;
    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    for (content, answer) in contents.iter().zip(answers) {
        match answer.status().as_u16() {
            204 => accepted.push(content.to_string()),
            429 => refused.push(refusal(answer).await),
            other => panic!("{content}: {other}"),
        }
    }
    assert_eq!(accepted.len(), 2, "a burst of two is allowed");
    let [(_, retry_after, error)] = &refused[..] else {
        panic!("exactly the third is refused: {refused:?}");
    };
    assert!(error.contains("too many messages"), "{error}");

    tokio::time::sleep(Duration::from_secs(*retry_after)).await;
    assert_eq!(post_form(&ada, "page-after-the-wait").await.status(), 204);
    let mut stored = stored_by(&db, "ada").await;
    stored.sort();
    accepted.push("page-after-the-wait".into());
    accepted.sort();
    assert_eq!(stored, accepted, "the refused message was not stored");
}

// --- Sign-in attempts ------------------------------------------------------------------------

#[tokio::test]
async fn a_strangers_wrong_passwords_never_keep_the_owner_out() {
    let db = TestDb::new();
    let server = Server::start(&db, &["--signin-rate", "100", "--signin-failures", "3"]).await;
    let owner = server.anonymous_from(2);
    assert_eq!(owner.sign_up("Ada", "correct horse battery").await.status(), 201);

    // Someone elsewhere guesses, in every case of the name: after three, they wait.
    let stranger = server.anonymous_from(3);
    for name in ["ada", "ADA", "aDa"] {
        assert_eq!(stranger.sign_in(name, "wrong password!").await.status(), 401);
    }
    let (status, retry_after, error) = refusal(stranger.sign_in("ada", "wrong password!").await).await;
    assert_eq!(status, 429, "{error}");
    assert!(error.contains("too many sign-in attempts"), "{error}");
    assert_eq!(retry_after, 1, "the first wait is a second");
    // Even the right password waits from there: the guesser cannot tell.
    assert_eq!(stranger.sign_in("ada", "correct horse battery").await.status(), 429);

    // Meanwhile the owner, from their own address or a new one, is not kept out.
    for address in [2, 4] {
        let response = server
            .anonymous_from(address)
            .sign_in("ada", "correct horse battery")
            .await;
        assert_eq!(response.status(), 200, "from 127.0.0.{address}");
    }

    // The stranger keeps guessing through the waits: each failure doubles the next wait.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(stranger.sign_in("ada", "wrong password!").await.status(), 401);
    let (_, retry_after, _) = refusal(stranger.sign_in("ada", "wrong password!").await).await;
    assert_eq!(retry_after, 2);
    assert_eq!(owner.sign_in("ada", "correct horse battery").await.status(), 200);
}

#[tokio::test]
async fn sign_ups_are_limited_per_address() {
    let db = TestDb::new();
    let server = Server::start(&db, &["--signup-rate", "2"]).await;
    let here = server.anonymous_from(2);
    assert_eq!(here.sign_up("one", "correct horse battery").await.status(), 201);
    assert_eq!(here.sign_up("two", "correct horse battery").await.status(), 201);
    let (status, retry_after, error) = refusal(here.sign_up("three", "correct horse battery").await).await;
    assert_eq!(status, 429);
    assert!(error.contains("new accounts"), "{error}");
    assert!(retry_after > 60, "by the hour: {retry_after}");
    // Signing in to an account that exists is not a sign-up.
    assert_eq!(here.sign_in("one", "correct horse battery").await.status(), 200);
    assert_eq!(
        server
            .anonymous_from(3)
            .sign_up("three", "correct horse battery")
            .await
            .status(),
        201
    );
}

#[tokio::test]
async fn a_flood_of_sign_ups_is_turned_away_before_it_queues_for_hashing() {
    let db = TestDb::new();
    let server = Server::start(&db, &["--max-queued-hashes", "2"]).await;
    server.user("owner").await;
    let flood = (0..40).map(|n| {
        let client = server.anonymous_from(10 + (n % 200) as u8);
        async move { client.sign_up(&format!("flood{n}"), "correct horse battery").await }
    });
    let mut busy = 0;
    for response in join_all(flood).await {
        match response.status().as_u16() {
            201 => {}
            503 => {
                let (_, _, error) = refusal(response).await;
                assert!(error.contains("busy"), "{error}");
                busy += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(busy > 0, "nothing was turned away");
    // What is left of the queue serves the owner at once.
    let response = server.anonymous().sign_in("owner", "correct horse battery").await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn sign_in_attempts_count_per_address_across_usernames() {
    let db = TestDb::new();
    let server = Server::start(&db, &["--signin-rate", "3"]).await;
    let here = server.anonymous(); // 127.0.0.1
    for name in ["ada", "bob", "carol", "dave"] {
        // Sign-ups are not sign-in attempts.
        assert_eq!(here.sign_up(name, "correct horse battery").await.status(), 201);
    }
    for name in ["ada", "bob", "carol"] {
        assert_eq!(
            here.sign_in(name, "correct horse battery").await.status(),
            200,
            "{name}"
        );
    }
    let (status, retry_after, error) = refusal(here.sign_in("dave", "correct horse battery").await).await;
    assert_eq!(status, 429, "{error}");
    assert!(error.contains("too many sign-in attempts"), "{error}");
    assert!(retry_after <= 20, "{retry_after}");

    // The sign-in form shares the allowance, and says when to try again.
    let form = here
        .http
        .post(here.url("/"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("username=erin&password=correct+horse+battery")
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 429);
    assert!(form.headers().contains_key("retry-after"));
    assert!(form.text().await.unwrap().contains("too many sign-in attempts"));

    // Another address still has its own allowance, for the name refused here too.
    let elsewhere = server.anonymous_from(2).sign_in("dave", "correct horse battery").await;
    assert_eq!(elsewhere.status(), 200);
}

#[tokio::test]
async fn a_signin_rate_of_zero_turns_the_limit_off() {
    let db = TestDb::new();
    let server = Server::start(&db, &["--signin-rate", "0"]).await;
    let client = server.anonymous();
    assert_eq!(client.sign_up("ada", "correct horse battery").await.status(), 201);
    // More than the default allowance of 20, right and wrong, from one address for one name.
    for n in 0..25 {
        let (password, expected) = match n {
            n if n % 2 == 0 => ("correct horse battery", 200),
            _ => ("wrong password!", 401),
        };
        assert_eq!(client.sign_in("ada", password).await.status(), expected, "attempt {n}");
    }
}

// --- Event streams ---------------------------------------------------------------------------

#[tokio::test]
async fn a_user_may_hold_max_streams_per_user_and_a_closed_one_gives_its_place_back() {
    let db = TestDb::new();
    let server = Server::start(&db, &["--max-streams-per-user", "2", "--keepalive", "1"]).await;
    let ada = server.user("ada").await;
    let bob = server.user("bob").await;
    let first = ada.open_stream("general", "", None).await;
    let _second = ada.open_stream("general", "", None).await;

    let (status, _, error) = refusal(try_stream(&ada).await).await;
    assert_eq!(status, 429, "{error}");
    assert!(error.contains("too many open event streams"), "{error}");

    // The limit is per user: bob opens his.
    let _bobs = bob.open_stream("general", "", None).await;
    server.wait_for_metric("chat_open_streams", 3.0).await;

    drop(first); // a tab closes
    server.wait_for_metric("chat_open_streams", 2.0).await;
    let _third = ada.open_stream("general", "", None).await;
}

#[tokio::test]
async fn beyond_max_streams_in_all_a_stream_gets_503_with_retry_after() {
    let db = TestDb::new();
    let server = Server::start(&db, &["--max-streams", "2", "--keepalive", "1"]).await;
    let ada = server.user("ada").await;
    let bob = server.user("bob").await;
    let carol = server.user("carol").await;
    let _adas = ada.open_stream("general", "", None).await;
    let bobs = bob.open_stream("general", "", None).await;

    for client in [&carol, &ada] {
        let (status, _, error) = refusal(try_stream(client).await).await;
        assert_eq!(status, 503, "{}: {error}", client.username);
        assert!(!error.is_empty());
    }

    drop(bobs);
    server.wait_for_metric("chat_open_streams", 1.0).await;
    let _carols = carol.open_stream("general", "", None).await;
}

/// A refusal for load is a 5xx, but not a failure: the client is told which limit it met.
#[tokio::test]
async fn the_503_for_max_streams_says_which_limit() {
    let db = TestDb::new();
    let server = Server::start(&db, &["--max-streams", "1"]).await;
    let ada = server.user("ada").await;
    let _open = ada.open_stream("general", "", None).await;
    let (status, _, error) = refusal(try_stream(&ada).await).await;
    assert_eq!(status, 503);
    assert!(error.contains("open event streams"), "{error}");
}

// --- Body size and message length ----------------------------------------------------------

/// `{"content":"…"}` is 14 bytes and the content.
const MESSAGE_OVERHEAD: usize = r#"{"content":""}"#.len();

#[tokio::test]
async fn a_body_over_max_body_bytes_gets_413() {
    let db = TestDb::new();
    let server = Server::start(&db, &["--max-body-bytes", "100"]).await;
    let ada = server.user("ada").await;

    let at_limit = "x".repeat(100 - MESSAGE_OVERHEAD);
    ada.say("general", &at_limit).await;
    let (status, error) = error_of(ada.post("general", &format!("{at_limit}y")).await).await;
    assert_eq!(status, 413);
    assert!(error.contains("100 bytes"), "{error}");

    // Without a Content-Length (chunked), the limit holds while reading.
    let body = json!({ "content": "x".repeat(200) }).to_string();
    let chunked = futures_util::stream::iter([Ok::<_, std::io::Error>(body)]);
    let response = ada
        .request(Method::POST, "/api/rooms/general/messages")
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(chunked))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(response).await.0, 413, "chunked");

    // Every body is read the same way: sign-in too.
    let long_name = server
        .anonymous()
        .sign_in(&"a".repeat(100), "correct horse battery")
        .await;
    assert_eq!(error_of(long_name).await.0, 413, "sign-in");

    assert_eq!(stored_by(&db, "ada").await, [at_limit]);
}

#[tokio::test]
async fn a_max_body_bytes_of_zero_means_no_limit() {
    let db = TestDb::new();
    let server = Server::start(&db, &["--max-body-bytes", "0"]).await;
    let ada = server.user("ada").await;
    // Far over the default 64 KiB, yet a valid message: the unknown field is ignored.
    let response = ada
        .request(Method::POST, "/api/rooms/general/messages")
        .json(&json!({ "content": "small talk", "padding": "y".repeat(200_000) }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(stored_by(&db, "ada").await, ["small talk"]);
}

#[tokio::test]
async fn a_message_of_max_message_chars_is_stored_and_one_more_gets_422() {
    let db = TestDb::new();
    let server = Server::start(&db, &["--max-message-chars", "10"]).await;
    let ada = server.user("ada").await;
    // Characters, not bytes: each `é` is two.
    let ten = "é".repeat(10);
    let event = ada.say("general", &ten).await;
    assert_eq!(event["content"], ten.as_str());
    let (status, error) = error_of(ada.post("general", &"é".repeat(11)).await).await;
    assert_eq!(status, 422);
    assert!(error.contains("10"), "{error}");
    assert_eq!(stored_by(&db, "ada").await, [ten]);
}

#[tokio::test]
async fn a_max_message_chars_of_zero_leaves_only_the_body_limit() {
    let db = TestDb::new();
    let server = Server::start(&db, &["--max-message-chars", "0", "--max-body-bytes", "20000"]).await;
    let ada = server.user("ada").await;
    let long = "x".repeat(15_000); // over the default 4,000 characters
    ada.say("general", &long).await;
    assert_eq!(error_of(ada.post("general", &"x".repeat(25_000)).await).await.0, 413);
    assert_eq!(stored_by(&db, "ada").await, [long]);
}

// --- The count of refusals -------------------------------------------------------------------

#[tokio::test]
async fn refused_by_limits_counts_each_refusal_and_nothing_else() {
    let db = TestDb::new();
    let server = Server::start(
        &db,
        &[
            "--message-rate",
            "1",
            "--message-burst",
            "1",
            "--signin-rate",
            "2",
            "--max-streams-per-user",
            "1",
            "--max-streams",
            "2",
            "--max-body-bytes",
            "100",
        ],
    )
    .await;
    let metric = "chat_refused_by_limits_total";
    assert_eq!(server.metric_sum(metric).await, 0.0);
    let ada = server.user("ada").await;
    let bob = server.user("bob").await;
    // Signing up is no sign-in attempt: two sign-ins use up the allowance of two.
    for name in ["ada", "bob"] {
        let signed_in = server.anonymous().sign_in(name, "correct horse battery").await;
        assert_eq!(signed_in.status(), 200);
    }

    // Refused by limits: a sign-in, a message, a stream per user, a stream in all.
    assert_eq!(
        server
            .anonymous()
            .sign_in("carol", "correct horse battery")
            .await
            .status(),
        429
    );
    let answers = join_all([ada.post("general", "one"), ada.post("general", "two")]).await;
    let mut statuses: Vec<u16> = answers.iter().map(|a| a.status().as_u16()).collect();
    statuses.sort();
    assert_eq!(statuses, [201, 429]);
    let _adas = ada.open_stream("general", "", None).await;
    assert_eq!(try_stream(&ada).await.status(), 429);
    let _bobs = bob.open_stream("general", "", None).await;
    assert_eq!(try_stream(&bob).await.status(), 503);
    assert_eq!(server.metric_sum(metric).await, 4.0);
    // Each counted under the limit that refused it.
    for limit in ["sign_ins", "messages", "streams_per_user", "streams"] {
        assert_eq!(
            server.metric(&format!("{metric}{{limit=\"{limit}\"}}")).await,
            1.0,
            "{limit}"
        );
    }

    // Other refusals are not the limits'.
    assert_eq!(server.anonymous().post("general", "who?").await.status(), 401);
    assert_eq!(bob.post("general", &"x".repeat(200)).await.status(), 413);
    let nowhere = bob
        .request(Method::GET, "/api/rooms/nowhere/events")
        .send()
        .await
        .unwrap();
    assert_eq!(nowhere.status(), 404);
    assert_eq!(server.metric_sum(metric).await, 4.0);
}

/// The status events `username` has stored.
async fn statuses_of(db: &TestDb, username: &str) -> Vec<String> {
    let mut conn = db.connect().await;
    sqlx::query_scalar("SELECT status FROM status_changes WHERE username = ? ORDER BY id")
        .bind(username)
        .fetch_all(&mut conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn choosing_the_status_one_shows_stores_and_publishes_nothing() {
    let db = TestDb::new();
    let server = Server::start(&db, &["--status-rate", "2"]).await;
    let ada = server.user("ada").await;
    let bob = server.user("bob").await;
    let mut watching = bob.open_stream("general", "", None).await;
    let first: Value = ada.set_status("away").await.json().await.unwrap();
    // Unchanged, again and again: the same event each time, and none of the allowance spent.
    for _ in 0..5 {
        let response = ada.set_status("away").await;
        assert_eq!(response.status(), 200);
        let again: Value = response.json().await.unwrap();
        assert_eq!(again, first);
    }
    assert_eq!(statuses_of(&db, "ada").await, ["away"]);
    let seen = watching.collect_for(Duration::from_millis(500)).await;
    let of_ada: Vec<&str> = seen
        .iter()
        .filter(|e| e.event == "status" && e.data.contains(r#""username":"ada""#))
        .map(|e| e.data.as_str())
        .collect();
    assert_eq!(of_ada.len(), 1, "published once: {of_ada:?}");
    assert_eq!(
        ada.set_status("online").await.status(),
        200,
        "the allowance is still there"
    );
}

#[tokio::test]
async fn a_status_flood_is_refused_and_everyone_else_chats_on() {
    let db = TestDb::new();
    let server = Server::start(&db, &["--status-rate", "10"]).await;
    let mallory = server.user("mallory").await;
    let bob = server.user("bob").await;
    let carol = server.user("carol").await;
    assert_eq!(bob.create_room("other").await.status(), 201);
    let mut carols = carol.open_stream("other", "", None).await;

    let flood = (0..200).map(|n| {
        let mallory = mallory.clone();
        async move { mallory.set_status(if n % 2 == 0 { "away" } else { "online" }).await }
    });
    let flooding = tokio::spawn(join_all(flood));
    // Meanwhile a message in another room reaches its stream at once.
    let sent = std::time::Instant::now();
    let said = bob.say("other", "still here").await;
    let (event, _) = carols.next_message().await;
    assert_eq!(event.id, said["id"].to_string());
    assert!(
        sent.elapsed() < Duration::from_secs(1),
        "delivered in {:?}",
        sent.elapsed()
    );

    // A 200 is a change within the allowance, or a choice of what she already showed.
    let mut refused = 0;
    for response in flooding.await.unwrap() {
        match response.status().as_u16() {
            200 => {}
            429 => {
                assert_eq!(refusal(response).await.0, 429);
                refused += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(refused >= 90, "only {refused} of 200 refused");
    let stored = statuses_of(&db, "mallory").await;
    // Her first stream's online, and at most the allowance of her own choices.
    assert!(stored.len() <= 11, "{} status changes stored: {stored:?}", stored.len());
}

#[tokio::test]
async fn rooms_and_stream_opens_are_limited_per_user() {
    let db = TestDb::new();
    let server = Server::start(&db, &["--room-rate", "2", "--stream-rate", "3"]).await;
    let mallory = server.user("mallory").await;
    let bob = server.user("bob").await;
    assert_eq!(mallory.create_room("one").await.status(), 201);
    assert_eq!(mallory.create_room("two").await.status(), 201);
    let (status, retry_after, error) = refusal(mallory.create_room("three").await).await;
    assert_eq!(status, 429);
    assert!(retry_after > 60, "rooms come back by the hour: {retry_after}");
    assert!(error.contains("new rooms"), "{error}");
    assert_eq!(
        bob.create_room("three").await.status(),
        201,
        "someone else is not affected"
    );

    for _ in 0..3 {
        drop(mallory.open_user_stream("", None).await);
    }
    let response = mallory.request(Method::GET, "/api/events").send().await.unwrap();
    let (status, _, error) = refusal(response).await;
    assert_eq!(status, 429);
    assert!(error.contains("event streams opened"), "{error}");
    bob.open_user_stream("", None).await;
}

/// A replay flood: 64 streams from cursor 0 at once over a log longer than `--max-replay`,
/// then as many from within it. The first are answered with `reset` (a replay they would not
/// get), the rest cost at most `--stream-rate` replays of at most `--max-replay` events, and
/// meanwhile a message reaches someone else's stream at once.
#[tokio::test]
async fn a_replay_flood_is_bounded_and_everyone_else_chats_on() {
    let db = TestDb::new();
    let server = Server::start(&db, &["--max-replay", "1000", "--stream-rate", "20"]).await;
    let mallory = server.user("mallory").await;
    let bob = server.user("bob").await;
    let carol = server.user("carol").await;
    for chunk in 0..15 {
        let posts = (0..100).map(|n| {
            let bob = bob.clone();
            async move { bob.post("general", &format!("history {chunk}.{n}")).await }
        });
        assert!(join_all(posts).await.iter().all(|r| r.status() == 201));
    }
    let head = bob.say("general", "the newest").await["id"].as_i64().unwrap();
    let mut carols = carol.open_user_stream("", None).await;

    let from_zero = (0..64).map(|_| {
        let mallory = mallory.clone();
        async move {
            mallory
                .request(Method::GET, "/api/events?after=0")
                .send()
                .await
                .unwrap()
        }
    });
    let flooding = tokio::spawn(join_all(from_zero));
    let sent = std::time::Instant::now();
    let said = bob.say("general", "still here").await;
    let (event, _) = carols.next_message().await;
    assert_eq!(event.id, said["id"].to_string());
    assert!(
        sent.elapsed() < Duration::from_secs(1),
        "delivered in {:?}",
        sent.elapsed()
    );

    let mut opened = Vec::new();
    let mut refused = 0;
    for response in flooding.await.unwrap() {
        match response.status().as_u16() {
            200 => opened.push(response),
            429 => refused += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(opened.len(), 20, "the stream rate lets twenty open");
    assert_eq!(refused, 44);
    for response in opened {
        let mut stream = crate::common::Stream200::from(response);
        let (first, _) = stream.expect_json().await;
        assert_eq!(first.event, "reset", "cursor 0 is 1,500 events behind");
        assert!(first.id.parse::<i64>().unwrap() >= head);
    }
    // What the streams read from the database is at most what was posted while they opened,
    // none of the 1,500 before.
    let replayed = server.metric("chat_replayed_events_total").await;
    assert!(replayed <= 2.0 * 64.0, "{replayed} events replayed");
}

/// Changes to accounts and sessions count against `--account-rate` per user: ending
/// sessions, changing the password, an admin's changes; someone else is not affected.
#[tokio::test]
async fn account_changes_are_limited_per_user() {
    let db = TestDb::new();
    let server = Server::start(&db, &["--account-rate", "3"]).await;
    let ada = server.user("ada").await;
    let bob = server.user("bob").await;
    let end = |client: &Client| {
        client
            .request(Method::DELETE, "/api/me/sessions/0123456789abcdef")
            .send()
    };
    assert_eq!(end(&ada).await.unwrap().status(), 404);
    assert_eq!(
        ada.request(Method::DELETE, "/api/me/sessions")
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    let promote = ada
        .request(Method::PATCH, "/api/users/bob")
        .json(&json!({"role": "member"}))
        .send()
        .await
        .unwrap();
    assert_eq!(promote.status(), 200);
    let (status, retry_after, error) = refusal(end(&ada).await.unwrap()).await;
    assert_eq!(status, 429);
    assert!(retry_after >= 1);
    assert!(error.contains("account changes"), "{error}");
    let password = ada
        .request(Method::PUT, "/api/me/password")
        .json(&json!({"current": "correct horse battery", "new": "a new password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(password.status(), 429, "the password change counts too");
    assert_eq!(end(&bob).await.unwrap().status(), 404, "bob has his own allowance");
}

#[tokio::test]
async fn direct_messages_started_and_members_changed_are_limited_per_user() {
    let db = TestDb::new();
    let server = Server::start(&db, &["--dm-rate", "2", "--member-rate", "3"]).await;
    let mallory = server.user("mallory").await;
    let mut others = Vec::new();
    for name in ["a1", "a2", "a3", "a4"] {
        others.push(server.user(name).await);
    }
    assert_eq!(mallory.dm(&["a1"]).await.0, 201);
    assert_eq!(mallory.dm(&["a2"]).await.0, 201);
    // Opening one that exists is not a new one.
    assert_eq!(mallory.dm(&["a1"]).await.0, 200);
    let response = mallory
        .request(Method::POST, "/api/dms")
        .json(&serde_json::json!({"usernames": ["a3"]}))
        .send()
        .await
        .unwrap();
    let (status, retry_after, error) = refusal(response).await;
    assert_eq!(status, 429);
    assert!(retry_after > 60, "direct messages come back by the hour: {retry_after}");
    assert!(error.contains("direct messages"), "{error}");
    assert_eq!(others[2].dm(&["a4"]).await.0, 201, "someone else is not affected");

    mallory.create_private_room("den").await;
    for name in ["a1", "a2", "a3"] {
        mallory.add_member("den", name).await;
    }
    let (status, body) = mallory.membership("den", "a4", true).await;
    assert_eq!(status, 429, "{body}");
    assert!(body["error"].as_str().unwrap().contains("changes of members"), "{body}");
    // Leaving is a change of members too, but another member's allowance is their own.
    assert_eq!(others[0].membership("den", "a1", false).await.0, 200);
}
