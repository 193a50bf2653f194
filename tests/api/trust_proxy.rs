//! `--trust-proxy`: a request's client is the address a trusted proxy forwards for, and only a
//! trusted proxy's word counts. The per-address limits, the sessions' list and `/metrics`' rule
//! for local addresses all see that client.

use serde_json::json;

use crate::common::{Client, Server, TestDb};

/// A sign-in of `name` through `client`, as if forwarded for `forwarded_for`.
async fn sign_in_for(client: &Client, name: &str, forwarded_for: &str) -> u16 {
    client
        .http
        .post(client.url("/api/sessions"))
        .header("x-forwarded-for", forwarded_for)
        .json(&json!({"username": name, "password": "correct horse battery"}))
        .send()
        .await
        .expect("POST /api/sessions")
        .status()
        .as_u16()
}

#[tokio::test]
async fn sign_in_attempts_count_the_forwarded_client_only_from_a_trusted_proxy() {
    let db = TestDb::new();
    let server = Server::start(&db, &["--signin-rate", "3", "--trust-proxy", "127.0.0.1/32"]).await;
    let proxy = server.anonymous(); // 127.0.0.1: trusted
    assert_eq!(proxy.sign_up("ada", "correct horse battery").await.status(), 201);

    // Three clients behind the proxy, each with its own allowance of three.
    for client in ["198.51.100.1", "198.51.100.2", "2001:db8::1"] {
        for attempt in 0..3 {
            assert_eq!(sign_in_for(&proxy, "ada", client).await, 200, "{client} #{attempt}");
        }
        assert_eq!(sign_in_for(&proxy, "ada", client).await, 429, "{client} used its three");
    }
    // What a client claims to the proxy, left of what the proxy saw, changes nothing.
    assert_eq!(sign_in_for(&proxy, "ada", "203.0.113.9, 198.51.100.1").await, 429);
    // Another host of the same IPv6 /64 is the same client.
    assert_eq!(sign_in_for(&proxy, "ada", "[2001:db8::2]:4711").await, 429);

    // A peer that is no trusted proxy is counted by its own address, whatever it forwards.
    let stranger = server.anonymous_from(2);
    for client in ["198.51.100.10", "198.51.100.11", "198.51.100.12"] {
        assert_eq!(sign_in_for(&stranger, "ada", client).await, 200, "{client}");
    }
    assert_eq!(sign_in_for(&stranger, "ada", "198.51.100.13").await, 429);
}

#[tokio::test]
async fn without_trust_proxy_the_header_is_ignored() {
    let db = TestDb::new();
    let server = Server::start(&db, &["--signin-rate", "3"]).await;
    let here = server.anonymous();
    assert_eq!(here.sign_up("ada", "correct horse battery").await.status(), 201);
    for client in ["198.51.100.1", "198.51.100.2", "198.51.100.3"] {
        assert_eq!(sign_in_for(&here, "ada", client).await, 200, "{client}");
    }
    assert_eq!(sign_in_for(&here, "ada", "198.51.100.4").await, 429);
}

#[tokio::test]
async fn a_session_shows_the_forwarded_client_and_metrics_stay_local() {
    let db = TestDb::new();
    let server = Server::start(&db, &["--trust-proxy", "127.0.0.0/8,::1"]).await;
    let mut ada = server.user("ada").await;
    let response = ada
        .http
        .post(ada.url("/api/sessions"))
        .header("x-forwarded-for", "2001:db8::7")
        .json(&json!({"username": "ada", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    ada.token = Some(body["token"].as_str().unwrap().to_owned());
    let listed = ada
        .request(reqwest::Method::GET, "/api/me/sessions")
        .header("x-forwarded-for", "2001:db8::7")
        .send()
        .await
        .unwrap();
    let sessions: serde_json::Value = listed.json().await.unwrap();
    let current = sessions["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|session| session["current"] == true)
        .expect("the current session")
        .clone();
    assert_eq!(current["address"], "2001:db8::7", "{sessions}");

    // A client of the proxy on this machine is not local.
    let metrics = |forwarded: Option<&'static str>| {
        let request = server.anonymous().http.get(server.url("/metrics"));
        async move {
            match forwarded {
                Some(client) => request.header("x-forwarded-for", client),
                None => request,
            }
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
        }
    };
    assert_eq!(metrics(Some("198.51.100.1")).await, 403);
    assert_eq!(metrics(Some("127.0.0.1")).await, 200, "a client on this machine is");
    assert_eq!(metrics(None).await, 200, "and so is the proxy's own");
}
