//! Accounts people can manage: who they are (`/api/me`), changing the password, their sessions
//! listed with where they were used and ended one by one or all but this one, and the
//! absolute lifetime of a session. An ended session's open streams end with `logout`.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{Client, Server, Stream200, TestDb, WAIT};

const PASSWORD: &str = "correct horse battery";

async fn me(client: &Client) -> reqwest::Response {
    client.request(Method::GET, "/api/me").send().await.unwrap()
}

/// A session of `username`, started with `user_agent` (the first makes the account).
async fn another_session(server: &Server, username: &str, user_agent: &str) -> Client {
    let mut client = server.anonymous();
    let start = |path: &str| {
        client
            .http
            .post(client.url(path))
            .header("user-agent", user_agent)
            .json(&json!({ "username": username, "password": PASSWORD }))
            .send()
    };
    let mut response = start("/api/users").await.unwrap();
    if response.status() == 409 {
        response = start("/api/sessions").await.unwrap();
    }
    assert!(response.status().is_success(), "{}", response.status());
    let body: Value = response.json().await.unwrap();
    client.token = Some(body["token"].as_str().unwrap().to_owned());
    client.username = username.to_owned();
    client
}

async fn sessions(client: &Client) -> Vec<Value> {
    let body: Value = client.get_json("/api/me/sessions").await;
    body["sessions"].as_array().unwrap().clone()
}

/// Reads `stream` until `logout`, within `WAIT` (status changes may come first); the stream
/// must end right after it.
async fn expect_logout(stream: &mut Stream200) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let event = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("logout in time");
        match event {
            Some(event) if event.event == "logout" => break,
            Some(event) if event.event == "status" => {}
            other => panic!("expected logout, got {other:?}"),
        }
    }
    let after = tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("the stream ends");
    assert!(after.is_none(), "nothing after logout: {after:?}");
}

#[tokio::test]
async fn the_first_account_is_the_admin_and_me_says_who_i_am() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let signed_in = server.anonymous().sign_up("ada", PASSWORD).await;
    assert_eq!(signed_in.status(), 201);
    let body: Value = signed_in.json().await.unwrap();
    assert_eq!(body["role"], "admin");
    let bob = server.user("bob").await;
    let again: Value = server.anonymous().sign_in("ada", PASSWORD).await.json().await.unwrap();
    assert_eq!(again["role"], "admin");

    let mine: Value = me(&bob).await.json().await.unwrap();
    assert_eq!(mine, json!({"username": "bob", "role": "member", "status": "offline"}));
    let _stream = bob.open_user_stream("", None).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mine: Value = me(&bob).await.json().await.unwrap();
        if mine["status"] == "online" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never online: {mine}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(me(&server.anonymous()).await.status(), 401);
    let mut conn = db.connect().await;
    let roles: Vec<(String, String)> = sqlx::query_as("SELECT username, role FROM users ORDER BY id")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(roles, [("ada".into(), "admin".into()), ("bob".into(), "member".into())]);
}

#[tokio::test]
async fn changing_the_password_ends_every_other_session_and_its_streams() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let laptop = server.user("ada").await;
    let phone = another_session(&server, "ada", "phone").await;
    let mut phones_stream = phone.open_user_stream("", None).await;
    let mut phones_room = phone.open_stream("general", "", None).await;

    let change = |current: &str, new: &str| {
        laptop
            .request(Method::PUT, "/api/me/password")
            .json(&json!({ "current": current, "new": new }))
            .send()
    };
    assert_eq!(
        change("not the password", "a new password").await.unwrap().status(),
        403
    );
    assert_eq!(change(PASSWORD, "short").await.unwrap().status(), 422);
    assert_eq!(me(&phone).await.status(), 200, "a refused change ends nothing");

    assert_eq!(change(PASSWORD, "a new password").await.unwrap().status(), 204);
    expect_logout(&mut phones_stream).await;
    expect_logout(&mut phones_room).await;
    assert_eq!(me(&phone).await.status(), 401);
    assert_eq!(me(&laptop).await.status(), 200, "the session that changed it goes on");
    assert_eq!(laptop.say("general", "still here").await["content"], "still here");

    assert_eq!(server.anonymous().sign_in("ada", PASSWORD).await.status(), 401);
    assert_eq!(server.anonymous().sign_in("ada", "a new password").await.status(), 200);
}

#[tokio::test]
async fn sessions_are_listed_and_ended_by_their_id_never_by_the_token() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let laptop = another_session(&server, "ada", "Firefox on the laptop").await;
    let phone = another_session(&server, "ada", "Safari on the phone").await;
    let tablet = another_session(&server, "ada", "the tablet").await;
    let bob = server.user("bob").await;
    let mut phones_stream = phone.open_user_stream("", None).await;

    let listed = sessions(&laptop).await;
    assert_eq!(listed.len(), 3);
    let text = serde_json::to_string(&listed).unwrap();
    for client in [&laptop, &phone, &tablet] {
        assert!(
            !text.contains(client.token.as_deref().unwrap()),
            "a token is never listed"
        );
    }
    let current: Vec<&Value> = listed.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["user_agent"], "Firefox on the laptop");
    for session in &listed {
        let id = session["id"].as_str().unwrap();
        assert!(id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        assert_eq!(session["address"], "127.0.0.1");
        assert!(session["created_at"].as_str().unwrap().ends_with('Z'));
        assert!(session["last_used_at"].as_str().unwrap().ends_with('Z'));
    }
    let id_of = |agent: &str| {
        listed
            .iter()
            .find(|s| s["user_agent"] == agent)
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .unwrap()
    };

    // Someone else's session, an id of nothing and a malformed one are all "no such session".
    let revoke = |client: &Client, id: String| client.request(Method::DELETE, &format!("/api/me/sessions/{id}")).send();
    assert_eq!(revoke(&bob, id_of("the tablet")).await.unwrap().status(), 404);
    assert_eq!(revoke(&laptop, "0123456789abcdef".into()).await.unwrap().status(), 404);
    assert_eq!(revoke(&laptop, "..%2F..".into()).await.unwrap().status(), 404);
    assert_eq!(me(&tablet).await.status(), 200);

    assert_eq!(
        revoke(&laptop, id_of("Safari on the phone")).await.unwrap().status(),
        204
    );
    expect_logout(&mut phones_stream).await;
    assert_eq!(me(&phone).await.status(), 401);
    assert_eq!(sessions(&laptop).await.len(), 2);

    // All but this one.
    let everywhere = laptop.request(Method::DELETE, "/api/me/sessions").send().await.unwrap();
    assert_eq!(everywhere.status(), 204);
    assert_eq!(me(&tablet).await.status(), 401);
    assert_eq!(me(&laptop).await.status(), 200);
    assert_eq!(me(&bob).await.status(), 200, "nobody else's");
    let left = sessions(&laptop).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["current"], true);
}

#[tokio::test]
async fn a_session_ends_at_its_lifetime_however_much_it_is_used() {
    let db = TestDb::new();
    let server = Server::start(&db, &["--session-lifetime", "3", "--keepalive", "1"]).await;
    let ada = server.user("ada").await;
    let mut stream = ada.open_user_stream("", None).await;
    let started = tokio::time::Instant::now();
    // Used all along, it still ends.
    while me(&ada).await.status() == 200 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the session outlived its lifetime"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "ended early: {:?}",
        started.elapsed()
    );
    expect_logout(&mut stream).await;
    // Signing in again starts a new one.
    assert_eq!(me(&server.user("ada").await).await.status(), 200);
}

async fn change(admin: &Client, username: &str, body: Value) -> (u16, Value) {
    let response = admin
        .request(Method::PATCH, &format!("/api/users/{username}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn listed_users(client: &Client) -> Vec<String> {
    let users = client.get_json("/api/users").await;
    users
        .as_array()
        .expect("a list")
        .iter()
        .map(|u| u["username"].as_str().unwrap().to_owned())
        .collect()
}

/// Admins promote, demote, deactivate and reactivate; nobody else may; the server always
/// keeps an active admin; a deactivated account's streams end at once, it cannot sign in, it
/// is listed nowhere, and its messages stay.
#[tokio::test]
async fn admins_manage_accounts_and_the_last_admin_stays() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let ada = server.user("ada").await;
    let bob = server.user("bob").await;
    let carol = server.user("carol").await;
    carol.say("general", "carol was here").await;
    let mut carols_stream = carol.open_user_stream("", None).await;
    assert_eq!(listed_users(&bob).await, ["ada", "bob", "carol"]);

    assert_eq!(
        change(&bob, "carol", json!({"active": false})).await.0,
        403,
        "members may not"
    );
    assert_eq!(change(&ada, "nobody", json!({"role": "admin"})).await.0, 404);
    assert_eq!(change(&ada, "bob", json!({"role": "owner"})).await.0, 422);
    assert_eq!(change(&ada, "bob", json!({"role": 5})).await.0, 422);

    let (status, bob_now) = change(&ada, "bob", json!({"role": "admin"})).await;
    assert_eq!(
        (status, bob_now),
        (
            200,
            json!({"username": "bob", "role": "admin", "status": "offline", "active": true})
        )
    );
    // Promoted at once: bob acts as an admin on his very next request.
    assert_eq!(change(&bob, "ada", json!({"role": "member"})).await.0, 200);
    assert_eq!(me(&ada).await.json::<Value>().await.unwrap()["role"], "member");
    assert_eq!(
        change(&ada, "bob", json!({"role": "member"})).await.0,
        403,
        "demoted at once too"
    );
    // Bob is the only admin now: he can be neither demoted nor deactivated, not even by himself.
    let (status, refusal) = change(&bob, "bob", json!({"role": "member"})).await;
    assert_eq!(status, 409);
    assert!(refusal["error"].as_str().unwrap().contains("admin"), "{refusal}");
    assert_eq!(change(&bob, "bob", json!({"active": false})).await.0, 409);

    // Deactivated: the open stream ends with logout, the token is refused, sign-in too.
    assert_eq!(change(&bob, "carol", json!({"active": false})).await.0, 200);
    expect_logout(&mut carols_stream).await;
    assert_eq!(me(&carol).await.status(), 401);
    let signing_in = server.anonymous().sign_in("carol", PASSWORD).await;
    assert_eq!(signing_in.status(), 403);
    assert_eq!(
        server.anonymous().sign_in("carol", "a wrong password").await.status(),
        401
    );
    assert_eq!(listed_users(&bob).await, ["ada", "bob"]);
    let history = bob.history("general", "").await;
    assert_eq!(
        history.last().unwrap()["content"],
        "carol was here",
        "her messages stay"
    );

    // Reactivated: she signs in again.
    assert_eq!(change(&bob, "carol", json!({"active": true})).await.0, 200);
    assert_eq!(server.anonymous().sign_in("carol", PASSWORD).await.status(), 200);
    assert_eq!(listed_users(&bob).await, ["ada", "bob", "carol"]);
}

/// A new name may not be a look-alike of a taken one (`AIice`, `A1ice` beside `Alice`) nor
/// start or end with anything but a letter or digit; the taken name itself still signs in, in
/// any case.
#[tokio::test]
async fn look_alikes_of_taken_names_are_refused() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    assert_eq!(server.anonymous().sign_up("Alice", PASSWORD).await.status(), 201);
    assert_eq!(server.anonymous().sign_up("b0b", PASSWORD).await.status(), 201);
    for look_alike in ["AIice", "A1ice", "aIice", "bob", "BOB", "BoB"] {
        let response = server.anonymous().sign_up(look_alike, PASSWORD).await;
        assert_eq!(response.status(), 409, "{look_alike}");
        let body: Value = response.json().await.unwrap();
        assert!(
            body["error"].as_str().unwrap().contains("looks too much like"),
            "{body}"
        );
    }
    // The taken names themselves, in any case, are taken, and sign in.
    for taken in ["Alice", "alice", "B0B"] {
        let response = server.anonymous().sign_up(taken, PASSWORD).await;
        assert_eq!(response.status(), 409, "{taken}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "that name is taken: choose another");
    }
    let again: Value = server
        .anonymous()
        .sign_in("alice", PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["username"], "Alice");
    assert_eq!(server.anonymous().sign_in("B0B", PASSWORD).await.status(), 200);
    for edge in ["_carol", "carol.", "-dan", "erin_"] {
        assert_eq!(server.anonymous().sign_up(edge, PASSWORD).await.status(), 422, "{edge}");
    }
    assert_eq!(
        server.anonymous().sign_up("ian", PASSWORD).await.status(),
        201,
        "a small i is no l"
    );
    let mut conn = db.connect().await;
    let skeletons: Vec<String> = sqlx::query_scalar("SELECT skeleton FROM users ORDER BY id")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(skeletons, ["alice", "bob", "ian"]);
}
