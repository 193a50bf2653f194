//! Sign-up apart from sign-in: the first account of an empty server is its admin; then
//! `--signup invite` (the default) takes a live invite, one use of it per account, taken in
//! the transaction that makes the account; `open` takes nothing; `closed` lets only an admin
//! make accounts. Admins make, list and revoke invites. Sign-in only signs in, and says the
//! same for an unknown name as for a wrong password.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{Client, Server, TestDb};

const PASSWORD: &str = "correct horse battery";

/// The status and JSON body of an answer; an error's body must be `{"error": "..."}`.
async fn answer(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("a JSON body");
    if status >= 400 {
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()) && body.as_object().unwrap().len() == 1,
            "an error is {{\"error\": \"...\"}}: {body}"
        );
    }
    (status, body)
}

/// The error an answer carries, with its status.
async fn refusal(response: reqwest::Response) -> (u16, String) {
    let (status, body) = answer(response).await;
    (status, body["error"].as_str().unwrap_or_default().to_owned())
}

async fn join(server: &Server, username: &str, invite: &str) -> reqwest::Response {
    server
        .anonymous()
        .sign_up_with(json!({"username": username, "password": PASSWORD, "invite": invite}))
        .await
}

/// A client carrying the token of a sign-up answer.
async fn signed_up(server: &Server, username: &str, response: reqwest::Response) -> Client {
    let (status, body) = answer(response).await;
    assert_eq!(status, 201, "sign-up of {username}: {body}");
    let mut client = server.anonymous();
    client.token = Some(body["token"].as_str().expect("a token").to_owned());
    client.username = username.to_owned();
    client
}

/// `admin` makes an invite with this body; returns its code.
async fn invite(admin: &Client, body: Value) -> String {
    let response = admin
        .request(Method::POST, "/api/invites")
        .json(&body)
        .send()
        .await
        .unwrap();
    let (status, made) = answer(response).await;
    assert_eq!(status, 201, "{made}");
    made["code"].as_str().expect("a code").to_owned()
}

async fn live_codes(admin: &Client) -> Vec<String> {
    let listed = admin.get_json("/api/invites").await;
    listed["invites"]
        .as_array()
        .expect("invites")
        .iter()
        .map(|invite| invite["code"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_first_account_needs_no_invite_and_every_later_one_takes_one_use_of_one() {
    let db = TestDb::new();
    let server = Server::start(&db, &["--signup", "invite"]).await;

    // The server's first account: the admin, without an invite, signed in at once.
    let first = server.anonymous().sign_up("ada", PASSWORD).await;
    assert!(
        first.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .starts_with("chat_session="),
        "the session cookie"
    );
    let (status, body) = answer(first).await;
    assert_eq!(
        (status, &body["username"], &body["role"]),
        (201, &json!("ada"), &json!("admin"))
    );
    assert_eq!(body["token"].as_str().unwrap().len(), 43);
    let ada = server.user("ada").await;

    // After it, an invite is needed, and a code that is none is refused in words.
    let (status, error) = refusal(server.anonymous().sign_up("bob", PASSWORD).await).await;
    assert_eq!(status, 403);
    assert!(error.contains("takes an invite"), "{error}");
    let (status, error) = refusal(join(&server, "bob", "not-a-code-of-ours").await).await;
    assert_eq!(status, 403);
    assert!(error.contains("not valid"), "{error}");

    // An invite for two: bob and carol join, dave is one too many.
    let response = ada
        .request(Method::POST, "/api/invites")
        .json(&json!({"uses": 2, "expires_in_hours": 48}))
        .send()
        .await
        .unwrap();
    let (status, made) = answer(response).await;
    assert_eq!(status, 201, "{made}");
    let code = made["code"].as_str().unwrap().to_owned();
    assert_eq!(code.len(), 22);
    assert_eq!(made["url"], format!("{}/join/{code}", server.base));
    assert_eq!((&made["uses"], &made["uses_left"]), (&json!(2), &json!(2)));
    assert_eq!(made["created_by"], "ada");
    let bob = signed_up(&server, "bob", join(&server, "bob", &code).await).await;
    let me = bob.get_json("/api/me").await;
    assert_eq!(me["role"], "member");

    // A name refused (a look-alike of bob's) uses nothing up.
    let (status, error) = refusal(join(&server, "B0B", &code).await).await;
    assert_eq!(status, 409);
    assert!(error.contains("looks too much like"), "{error}");
    let (status, error) = refusal(join(&server, "ada", &code).await).await;
    assert_eq!((status, error.as_str()), (409, "that name is taken: choose another"));
    let listed = ada.get_json("/api/invites").await;
    assert_eq!(listed["invites"][0]["uses_left"], 1, "{listed}");

    signed_up(&server, "carol", join(&server, "carol", &code).await).await;
    let (status, error) = refusal(join(&server, "dave", &code).await).await;
    assert_eq!(status, 403);
    assert!(error.contains("used up"), "{error}");
    assert!(live_codes(&ada).await.is_empty(), "a used-up invite is not listed");

    // The database says who came with which invite.
    let mut conn = db.connect().await;
    let users: Vec<(String, String, Option<String>)> =
        sqlx::query_as("SELECT username, role, invite FROM users ORDER BY id")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(
        users,
        [
            ("ada".into(), "admin".into(), None),
            ("bob".into(), "member".into(), Some(code.clone())),
            ("carol".into(), "member".into(), Some(code.clone())),
        ]
    );
    let left: i64 = sqlx::query_scalar("SELECT uses_left FROM invites WHERE code = ?")
        .bind(&code)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(left, 0);
}

#[tokio::test]
async fn an_expired_invite_and_a_revoked_one_let_nobody_in() {
    let db = TestDb::new();
    let server = Server::start(&db, &["--signup", "invite"]).await;
    let ada = server.user("ada").await;

    let defaults = invite(&ada, json!({})).await;
    let listed = ada.get_json("/api/invites").await;
    assert_eq!(listed["invites"][0]["uses"], 1, "one use by default");
    let expires: String = listed["invites"][0]["expires_at"].as_str().unwrap().to_owned();
    let created: String = listed["invites"][0]["created_at"].as_str().unwrap().to_owned();
    assert!(expires > created, "{created} .. {expires}");

    // Aged past its expiry in the database: refused, and no longer listed.
    let mut conn = db.connect().await;
    sqlx::query("UPDATE invites SET expires_at = '2000-01-01T00:00:00.000Z' WHERE code = ?")
        .bind(&defaults)
        .execute(&mut conn)
        .await
        .unwrap();
    let (status, error) = refusal(join(&server, "bob", &defaults).await).await;
    assert_eq!(status, 403);
    assert!(error.contains("expired"), "{error}");
    assert!(!live_codes(&ada).await.contains(&defaults));

    // Revoked: refused; revoking it again is no error, revoking a code nobody has is a 404.
    let revoked = invite(&ada, json!({"uses": 5})).await;
    let revoke = |code: &str| ada.request(Method::DELETE, &format!("/api/invites/{code}")).send();
    assert_eq!(revoke(&revoked).await.unwrap().status(), 204);
    assert_eq!(revoke(&revoked).await.unwrap().status(), 204);
    let (status, _) = refusal(revoke("AAAAAAAAAAAAAAAAAAAAAA").await.unwrap()).await;
    assert_eq!(status, 404);
    let (status, error) = refusal(join(&server, "bob", &revoked).await).await;
    assert_eq!(status, 403);
    assert!(error.contains("withdrawn"), "{error}");
    assert!(live_codes(&ada).await.is_empty());
    let revoked_stored: bool = sqlx::query_scalar("SELECT revoked FROM invites WHERE code = ?")
        .bind(&revoked)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(revoked_stored);

    // The join pages say so, as pages.
    for (code, status, says) in [
        (defaults.as_str(), 410, "expired"),
        (revoked.as_str(), 410, "withdrawn"),
        ("AAAAAAAAAAAAAAAAAAAAAA", 404, "not valid"),
    ] {
        let page = server
            .anonymous()
            .http
            .get(server.url(&format!("/join/{code}")))
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), status, "{code}");
        assert!(
            page.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        let text = page.text().await.unwrap();
        assert!(text.contains(says), "{code}: {text}");
        assert!(!text.contains("name=\"password\""), "no form for a dead invite");
    }
}

#[tokio::test]
async fn only_admins_make_list_and_revoke_invites() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let ada = server.user("ada").await;
    let bob = server.user("bob").await;
    let code = invite(&ada, json!({})).await;
    for request in [
        bob.request(Method::POST, "/api/invites").json(&json!({})),
        bob.request(Method::GET, "/api/invites"),
        bob.request(Method::DELETE, &format!("/api/invites/{code}")),
    ] {
        let (status, error) = refusal(request.send().await.unwrap()).await;
        assert_eq!(status, 403);
        assert!(error.contains("admins"), "{error}");
    }
    let anonymous = server.anonymous();
    let response = anonymous.request(Method::GET, "/api/invites").send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(live_codes(&ada).await, [code]);
    let admin_page = bob.request(Method::GET, "/admin").send().await.unwrap();
    assert_eq!(admin_page.status(), 403);
}

#[tokio::test]
async fn two_sign_ups_racing_for_the_last_use_of_an_invite_make_one_account() {
    let db = TestDb::new();
    let server = Server::start(&db, &["--signup", "invite"]).await;
    let ada = signed_up(&server, "ada", server.anonymous().sign_up("ada", PASSWORD).await).await;
    for round in 0..3 {
        let code = invite(&ada, json!({"uses": 1})).await;
        let racers = (0..6).map(|n| {
            let server = &server;
            let code = code.clone();
            async move {
                join(server, &format!("racer{round}x{n}"), &code)
                    .await
                    .status()
                    .as_u16()
            }
        });
        let mut statuses = join_all(racers).await;
        statuses.sort_unstable();
        assert_eq!(statuses, [201, 403, 403, 403, 403, 403], "round {round}");
        let mut conn = db.connect().await;
        let (made, left): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM users WHERE invite = ?1), (SELECT uses_left FROM invites WHERE code = ?1)",
        )
        .bind(&code)
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert_eq!((made, left), (1, 0), "round {round}");
    }
}

#[tokio::test]
async fn an_empty_server_makes_exactly_one_admin_however_many_race_for_it() {
    let db = TestDb::new();
    let server = Server::start(&db, &["--signup", "invite"]).await;
    let racers = (0..6).map(|n| {
        let client = server.anonymous();
        async move { client.sign_up(&format!("first{n}"), PASSWORD).await.status().as_u16() }
    });
    let mut statuses = join_all(racers).await;
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 403, 403, 403, 403, 403]);
    let mut conn = db.connect().await;
    let roles: Vec<String> = sqlx::query_scalar("SELECT role FROM users")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(roles, ["admin"]);
}

#[tokio::test]
async fn open_sign_up_takes_no_invite_and_closed_takes_an_admin() {
    // Open: anyone, with or without a code (which is then not looked at).
    let db = TestDb::new();
    let server = Server::start(&db, &["--signup", "open"]).await;
    signed_up(&server, "ada", server.anonymous().sign_up("ada", PASSWORD).await).await;
    signed_up(&server, "bob", server.anonymous().sign_up("bob", PASSWORD).await).await;
    signed_up(&server, "carol", join(&server, "carol", "whatever").await).await;

    // Closed: the first account still (someone must be the admin), then nobody.
    let db = TestDb::new();
    let server = Server::start(&db, &["--signup", "closed"]).await;
    let ada = signed_up(&server, "ada", server.anonymous().sign_up("ada", PASSWORD).await).await;
    let (status, error) = refusal(server.anonymous().sign_up("bob", PASSWORD).await).await;
    assert_eq!(status, 403);
    assert!(error.contains("not taking new accounts"), "{error}");
    let code = invite(&ada, json!({})).await;
    let (status, _) = refusal(join(&server, "bob", &code).await).await;
    assert_eq!(status, 403, "an invite does not open a closed server");

    // An admin makes the account for bob: no token, no cookie; ada's own session goes on.
    let made = ada
        .sign_up_with(json!({"username": "bob", "password": "bob's own password"}))
        .await;
    assert!(
        made.headers().get("set-cookie").is_none(),
        "the admin's cookie stays hers"
    );
    let (status, body) = answer(made).await;
    assert_eq!(status, 201);
    assert_eq!(body, json!({"username": "bob", "role": "member"}));
    assert_eq!(ada.get_json("/api/me").await["username"], "ada");
    let (status, bobs) = answer(server.anonymous().sign_in("bob", "bob's own password").await).await;
    assert_eq!((status, &bobs["role"]), (200, &json!("member")));
    // Only bob's own sign-in started a session of his.
    let mut conn = db.connect().await;
    let sessions: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sessions JOIN users ON users.id = sessions.user_id WHERE username = 'bob'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(sessions, 1);

    // A member signed in is no admin: refused like anyone.
    let bob = {
        let mut bob = server.anonymous();
        bob.token = Some(bobs["token"].as_str().unwrap().to_owned());
        bob
    };
    let (status, _) = refusal(
        bob.sign_up_with(json!({"username": "carol", "password": PASSWORD}))
            .await,
    )
    .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn sign_in_says_the_same_for_an_unknown_name_and_a_wrong_password() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    server.user("ada").await;
    let client = server.anonymous();
    let mut bodies = Vec::new();
    let mut took = Vec::new();
    for (username, password) in [("ada", "not her password"), ("nobody", PASSWORD)] {
        let mut fastest = Duration::MAX;
        for _ in 0..3 {
            let started = Instant::now();
            let response = client.sign_in(username, password).await;
            fastest = fastest.min(started.elapsed());
            let status = response.status().as_u16();
            let body = response.text().await.unwrap();
            assert_eq!(status, 401, "{username}: {body}");
            bodies.push(body);
        }
        took.push(fastest);
    }
    assert!(bodies.iter().all(|body| *body == bodies[0]), "{bodies:?}");
    assert_eq!(bodies[0], r#"{"error":"wrong name or password"}"#);
    // A password is hashed for an unknown name too: no quick answer tells it apart.
    assert!(
        took[1] * 4 > took[0],
        "an unknown name took {:?}, a wrong password {:?}",
        took[1],
        took[0]
    );
    // Sign-in makes no account.
    let (status, _) = refusal(client.sign_in("newcomer", PASSWORD).await).await;
    assert_eq!(status, 401);
    let mut conn = db.connect().await;
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(users, 1);
}

#[tokio::test]
async fn invites_are_limited_per_admin_and_in_number() {
    let db = TestDb::new();
    let server = Server::start(&db, &["--invite-rate", "2"]).await;
    let ada = server.user("ada").await;
    invite(&ada, json!({})).await;
    invite(&ada, json!({})).await;
    let response = ada
        .request(Method::POST, "/api/invites")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert!(response.headers().contains_key("retry-after"));
    let (status, error) = refusal(response).await;
    assert_eq!(status, 429);
    assert!(error.contains("invites"), "{error}");
    drop(server);

    // `--rate-limits off` turns it off; the bound on live invites stays.
    let server = Server::start(&db, &["--invite-rate", "2", "--rate-limits", "off"]).await;
    let ada = ada.against(&server);
    for _ in 0..3 {
        invite(&ada, json!({})).await;
    }
    let mut conn = db.connect().await;
    sqlx::raw_sql(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 995) \
         INSERT INTO invites (code, uses, uses_left, expires_at) \
         SELECT 'filler' || i, 1, 1, '2999-01-01T00:00:00.000Z' FROM n",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let response = ada
        .request(Method::POST, "/api/invites")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let (status, error) = refusal(response).await;
    assert_eq!(status, 409);
    assert!(error.contains("1,000 live invites"), "{error}");
    // Revoking one makes room.
    let revoked = ada
        .request(Method::DELETE, "/api/invites/filler1")
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 204);
    invite(&ada, json!({})).await;
}

#[tokio::test]
async fn the_pages_make_the_admin_first_then_sign_in_and_join() {
    let db = TestDb::new();
    let server = Server::start(&db, &["--signup", "invite"]).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = |path: &str| http.get(server.url(path)).send();

    // No account yet: `/` is the first-run screen, which makes the admin.
    let home = page("/").await.unwrap().text().await.unwrap();
    assert!(home.contains("will be the server's admin"), "{home}");
    assert!(home.contains(r#"action="/signup""#));
    let made = http
        .post(server.url("/signup"))
        .form(&[("username", "ada"), ("password", PASSWORD), ("invite", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 303);
    assert_eq!(made.headers()["location"], "/rooms/general");
    assert!(
        made.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .starts_with("chat_session=")
    );
    let ada = server.user("ada").await;
    assert_eq!(ada.get_json("/api/me").await["role"], "admin");

    // Then `/` only signs in, and says a wrong password plainly; no sign-up without an invite.
    let home = page("/").await.unwrap().text().await.unwrap();
    assert!(home.contains(r#"action="/""#) && !home.contains("/signup"), "{home}");
    assert!(home.contains("Ask an admin for an invite link"));
    let wrong = http
        .post(server.url("/"))
        .form(&[("username", "ada"), ("password", "not the password")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.text().await.unwrap().contains("wrong name or password"));
    assert_eq!(page("/signup").await.unwrap().status(), 403);

    // The join page carries the invite to the form; a taken name is said plainly.
    let code = invite(&ada, json!({})).await;
    let joining = page(&format!("/join/{code}")).await.unwrap();
    assert_eq!(joining.status(), 200);
    let form = joining.text().await.unwrap();
    assert!(form.contains(&format!(r#"name="invite" value="{code}""#)), "{form}");
    let taken = http
        .post(server.url("/signup"))
        .form(&[("username", "ADA"), ("password", PASSWORD), ("invite", &code)])
        .send()
        .await
        .unwrap();
    assert_eq!(taken.status(), 409);
    let again = taken.text().await.unwrap();
    assert!(again.contains("that name is taken"), "{again}");
    assert!(
        again.contains(&format!(r#"value="{code}""#)),
        "the form keeps the invite"
    );
    let joined = http
        .post(server.url("/signup"))
        .form(&[("username", "bob"), ("password", PASSWORD), ("invite", &code)])
        .send()
        .await
        .unwrap();
    assert_eq!(joined.status(), 303);
    assert!(joined.headers().contains_key("set-cookie"));
    let used = http
        .post(server.url("/signup"))
        .form(&[("username", "carol"), ("password", PASSWORD), ("invite", &code)])
        .send()
        .await
        .unwrap();
    assert_eq!(used.status(), 403);
    assert!(used.text().await.unwrap().contains("this invite has been used up"));

    // With `--signup open` the sign-in page links to the sign-up form.
    drop(server);
    let server = Server::start(&db, &["--signup", "open"]).await;
    let home = http.get(server.url("/")).send().await.unwrap().text().await.unwrap();
    assert!(home.contains(r#"href="/signup""#), "{home}");
    let form = http.get(server.url("/signup")).send().await.unwrap();
    assert_eq!(form.status(), 200);
    assert!(!form.text().await.unwrap().contains(r#"name="invite""#));
}
