//! The JSON API's contract: sessions, rooms, messages, history, status, errors.

use crate::common::{Server, TestDb};
use reqwest::Method;
use serde_json::{Value, json};

async fn error_of(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    assert_eq!(
        response.headers().get("content-type").map(|v| v.to_str().unwrap()),
        Some("application/json"),
        "errors are JSON"
    );
    let body: Value = response.json().await.unwrap();
    (status, body["error"].as_str().expect("error text").to_owned())
}

#[tokio::test]
async fn signing_up_creates_and_signing_in_checks_the_account() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let client = server.anonymous();

    let created = client.sign_up("Ada", "correct horse battery").await;
    assert_eq!(created.status(), 201);
    let cookie = created.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("chat_session="), "{cookie}");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax") && cookie.contains("Path=/"));
    let body: Value = created.json().await.unwrap();
    assert_eq!(body["username"], "Ada");
    let token = body["token"].as_str().unwrap().to_owned();
    assert_eq!(token.len(), 43);

    // Same name in another case: the same account, its own spelling, a new token.
    let again = client.sign_in("ada", "correct horse battery").await;
    assert_eq!(again.status(), 200);
    let body: Value = again.json().await.unwrap();
    assert_eq!(body["username"], "Ada");
    assert_ne!(body["token"], token.as_str());

    let (status, error) = error_of(client.sign_in("ADA", "wrong password!").await).await;
    assert_eq!((status, error.as_str()), (401, "wrong name or password"));

    // The token is stored only as a hash.
    let mut conn = db.connect().await;
    let stored: Vec<Vec<u8>> = sqlx::query_scalar("SELECT token_hash FROM sessions")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(stored.len(), 2);
    assert!(stored.iter().all(|hash| hash.len() == 32 && hash != token.as_bytes()));
    let hash: String = sqlx::query_scalar("SELECT password_hash FROM users")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(hash.starts_with("$argon2id$"));
}

#[tokio::test]
async fn sign_in_input_is_checked() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let client = server.anonymous();
    for (username, password) in [
        ("", "long enough"),
        ("has space", "long enough"),
        ("x".repeat(33).as_str(), "long enough"),
        ("ada", "short"),
        ("ada", "x".repeat(1025).as_str()),
    ] {
        let (status, _) = error_of(client.sign_in(username, password).await).await;
        assert_eq!(status, 422, "{username:?} / {} chars", password.len());
    }
    let url = server.url("/api/sessions");
    let (status, _) = error_of(
        client
            .http
            .post(&url)
            .header("content-type", "application/json")
            .body("{nope")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = error_of(
        client
            .http
            .post(&url)
            .json(&json!({"username": "ada"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 422);
    let (status, _) = error_of(
        client
            .http
            .post(&url)
            .json(&json!({"username": 5, "password": "long enough"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 422);
    let (status, _) = error_of(
        client
            .http
            .post(&url)
            .body(r#"{"username":"ada","password":"long enough"}"#)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 415, "a body without a JSON content type");
}

#[tokio::test]
async fn the_cookie_signs_in_and_sign_out_revokes_it() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let mut ada = server.user("ada").await;
    let token = ada.token.take().unwrap();
    let with_cookie = |method: Method, path: &str| {
        ada.http
            .request(method, ada.url(path))
            .header("cookie", format!("theme=dark; chat_session={token}"))
    };
    let response = with_cookie(Method::POST, "/api/rooms/general/messages")
        .json(&json!({"content": "via cookie"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);

    let out = with_cookie(Method::DELETE, "/api/sessions").send().await.unwrap();
    assert_eq!(out.status(), 204);
    assert!(out.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    let response = with_cookie(Method::POST, "/api/rooms/general/messages")
        .json(&json!({"content": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(response).await.0, 401);
}

#[tokio::test]
async fn every_api_route_needs_a_valid_session() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let nobody = server.anonymous();
    let forged = crate::common::Client {
        token: Some("A".repeat(43)),
        ..server.anonymous()
    };
    let garbage = crate::common::Client {
        token: Some("not a token".into()),
        ..server.anonymous()
    };
    for client in [&nobody, &forged, &garbage] {
        for (method, path) in [
            (Method::GET, "/api/rooms"),
            (Method::POST, "/api/rooms"),
            (Method::GET, "/api/rooms/general/messages"),
            (Method::POST, "/api/rooms/general/messages"),
            (Method::GET, "/api/rooms/general/events"),
            (Method::GET, "/api/rooms/general"),
            (Method::PUT, "/api/rooms/general/read"),
            (Method::PUT, "/api/rooms/general/notifications"),
            (Method::PUT, "/api/status"),
        ] {
            let response = client
                .request(method.clone(), path)
                .json(&json!({}))
                .send()
                .await
                .unwrap();
            assert_eq!(error_of(response).await.0, 401, "{method} {path}");
        }
    }
}

#[tokio::test]
async fn rooms_are_listed_created_and_unique() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let ada = server.user("ada").await;
    let created = ada.create_room("rust-2026").await;
    assert_eq!(created.status(), 201);
    let room: Value = created.json().await.unwrap();
    assert_eq!(room["name"], "rust-2026");

    let (status, error) = error_of(ada.create_room("rust-2026").await).await;
    assert_eq!(status, 409);
    assert!(error.contains("already exists"));
    for bad in ["", "Upper", "-dash", "under_score", "a/b", "../x", &"r".repeat(33)] {
        assert_eq!(error_of(ada.create_room(bad).await).await.0, 422, "{bad:?}");
    }

    let listed: Value = ada.get_json("/api/rooms").await;
    let names: Vec<&str> = listed["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["general", "rust-2026"]);
}

/// `GET /api/rooms?after=&limit=`: every room once, by name, a page at a time, with `next`
/// until the last page; bad paging is a clear `400`.
#[tokio::test]
async fn rooms_are_listed_a_page_at_a_time() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let ada = server.user("ada").await;
    let mut expected = vec!["general".to_owned()];
    for n in (0..11).rev() {
        let name = format!("room-{n:02}");
        assert_eq!(ada.create_room(&name).await.status(), 201);
        expected.push(name);
    }
    expected.sort();

    let mut listed = Vec::new();
    let mut pages = 0;
    let mut query = "?limit=5".to_owned();
    loop {
        let page: Value = ada
            .request(Method::GET, &format!("/api/rooms{query}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        pages += 1;
        let rooms = page["rooms"].as_array().unwrap();
        assert!(rooms.len() <= 5);
        listed.extend(rooms.iter().map(|room| room["name"].as_str().unwrap().to_owned()));
        match page["next"].as_str() {
            Some(next) => {
                assert_eq!(Some(next), listed.last().map(String::as_str), "next is the last name");
                query = format!("?limit=5&after={next}");
            }
            None => break,
        }
    }
    assert_eq!(listed, expected);
    assert_eq!(pages, 3);

    // The default page holds them all here; past the last name there is nothing.
    let all: Value = ada.get_json("/api/rooms").await;
    assert_eq!(all["rooms"].as_array().unwrap().len(), 12);
    assert!(all.get("next").is_none());
    let past: Value = ada.get_json("/api/rooms?after=zzz").await;
    assert_eq!(past, json!({"rooms": []}));

    for bad in [
        "limit=0",
        "limit=501",
        "limit=-1",
        "limit=x",
        "limit=1e3",
        &format!("after={}", "a".repeat(300)),
    ] {
        let (status, error) = error_of(
            ada.request(Method::GET, &format!("/api/rooms?{bad}"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 400, "{bad}");
        assert!(error.contains('`'), "says which parameter: {error}");
    }
}

#[tokio::test]
async fn unknown_rooms_are_404_everywhere() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let ada = server.user("ada").await;
    assert_eq!(error_of(ada.post("nope", "hi").await).await.0, 404);
    for path in [
        "/api/rooms/nope/messages",
        "/api/rooms/nope/events",
        "/api/rooms/..%2F..%2Fetc/messages",
        "/no/such/route",
    ] {
        let response = ada.request(Method::GET, path).send().await.unwrap();
        assert_eq!(error_of(response).await.0, 404, "{path}");
    }
}

#[tokio::test]
async fn history_pages_oldest_first() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let ada = server.user("ada").await;
    let mut ids = Vec::new();
    for n in 0..60 {
        ids.push(ada.say("general", &format!("m{n}")).await["id"].as_i64().unwrap());
    }
    let page_ids = |page: Vec<Value>| page.iter().map(|m| m["id"].as_i64().unwrap()).collect::<Vec<_>>();

    assert_eq!(
        page_ids(ada.history("general", "").await),
        ids[10..],
        "default: newest 50"
    );
    assert_eq!(page_ids(ada.history("general", "?limit=5").await), ids[55..]);
    assert_eq!(
        page_ids(ada.history("general", &format!("?before={}&limit=5", ids[10])).await),
        ids[5..10]
    );
    assert_eq!(
        page_ids(ada.history("general", &format!("?after={}&limit=3", ids[10])).await),
        ids[11..14]
    );
    assert_eq!(
        page_ids(
            ada.history("general", &format!("?after={}&before={}", ids[1], ids[4]))
                .await
        ),
        ids[2..4]
    );
    assert_eq!(ada.history("general", "?limit=200").await.len(), 60);

    for bad in [
        "?limit=0",
        "?limit=201",
        "?limit=x",
        "?before=-1",
        "?after=abc",
        "?before=1.5",
    ] {
        let response = ada
            .request(Method::GET, &format!("/api/rooms/general/messages{bad}"))
            .send()
            .await
            .unwrap();
        assert_eq!(error_of(response).await.0, 400, "{bad}");
    }
}

#[tokio::test]
async fn streams_refuse_clients_that_do_not_accept_event_streams() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let ada = server.user("ada").await;
    let open = |accept: &str| {
        ada.request(Method::GET, "/api/rooms/general/events")
            .header("accept", accept)
            .send()
    };
    assert_eq!(open("application/json").await.unwrap().status(), 406);
    assert_eq!(open("text/event-stream;q=0").await.unwrap().status(), 406);
    assert_eq!(open("*/*").await.unwrap().status(), 200);
    assert_eq!(open("text/event-stream").await.unwrap().status(), 200);
    let response = ada
        .request(Method::GET, "/api/rooms/general/events?format=xml")
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(response).await.0, 400);
}

#[tokio::test]
async fn cross_site_browser_requests_are_refused() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let mut ada = server.user("ada").await;
    let token = ada.token.take().unwrap();
    let host = server.base.trim_start_matches("http://").to_owned();
    let post = |origin: &str| {
        ada.http
            .post(ada.url("/api/rooms/general/messages"))
            .header("cookie", format!("chat_session={token}"))
            .header("origin", origin)
            .json(&json!({"content": "hi"}))
            .send()
    };
    assert_eq!(error_of(post("http://evil.example").await.unwrap()).await.0, 403);
    assert_eq!(error_of(post("null").await.unwrap()).await.0, 403);
    assert_eq!(post(&format!("http://{host}")).await.unwrap().status(), 201);
    // A bearer token is never sent by a browser on its own: no Origin check.
    let bearer = ada
        .http
        .post(ada.url("/api/rooms/general/messages"))
        .bearer_auth(&token)
        .header("origin", "http://evil.example")
        .json(&json!({"content": "scripted"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 201);
    let sign_in = ada
        .http
        .post(ada.url("/api/sessions"))
        .header("origin", "http://evil.example")
        .json(&json!({"username": "ada", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(sign_in).await.0, 403, "no sign-in forgery either");
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let db = TestDb::new();
    let server = Server::start(&db, &["--max-body-bytes", "1024"]).await;
    let ada = server.user("ada").await;
    let response = ada.post("general", &"x".repeat(2000)).await;
    assert_eq!(error_of(response).await.0, 413);
}

#[tokio::test]
async fn health_and_metrics() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let health = reqwest::get(server.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    let ada = server.user("ada").await;
    ada.say("general", "counted").await;
    assert_eq!(server.metric("chat_events_written_total").await, 1.0);
    assert_eq!(server.metric("chat_open_streams").await, 0.0);
    for name in [
        "chat_deliveries_total{scope=\"room\"}",
        "chat_resumed_streams_total",
        "chat_lag_recoveries_total",
        "chat_replayed_events_total",
    ] {
        assert_eq!(server.metric(name).await, 0.0, "{name}");
    }
}
