//! Which site a request is for and from, against the real binary: DNS rebinding (a `Host` that
//! is not ours), `Origin` in scheme, host and port, HTTP/2's `:authority`, another site's page
//! opening a stream with the browser's cookie, cookie tossing, the auth scheme's case, `Host`
//! missing or twice, caches, a request pipelined behind a stream's, `/metrics`, and the
//! database file's permissions.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::common::{Server, TestDb, read_until_closed};

/// Writes `request` on a fresh connection and returns everything read until the server closes
/// it or `wait` passes.
async fn exchange(server: &Server, request: &str, wait: Duration) -> String {
    let mut socket = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    socket.write_all(request.as_bytes()).await.unwrap();
    read_until_closed(&mut socket, wait).await
}

fn status_of(answer: &str) -> u16 {
    answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// A request carrying ada's cookie instead of her bearer token, as a browser sends it.
fn with_cookie(ada: &crate::common::Client, method: Method, path: &str) -> reqwest::RequestBuilder {
    ada.http
        .request(method, ada.url(path))
        .header("cookie", format!("chat_session={}", ada.token.as_deref().unwrap()))
}

#[tokio::test]
async fn a_host_that_is_not_ours_is_refused_but_probes_are_answered() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let ada = server.user("ada").await;
    let port = server.addr().port();
    // DNS rebinding: another site's name pointed at us. Its pages may not read ours.
    let rebound = format!("GET /rooms/general HTTP/1.1\r\nHost: evil.example:{port}\r\nConnection: close\r\n\r\n");
    assert_eq!(
        status_of(&exchange(&server, &rebound, Duration::from_secs(5)).await),
        421
    );
    let api = with_cookie(&ada, Method::GET, "/api/rooms").header("host", format!("evil.example:{port}"));
    assert_eq!(api.send().await.unwrap().status(), 421);
    // The right port under our own addresses is us.
    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
        let ok = ada
            .request(Method::GET, "/api/rooms")
            .header("host", host.as_str())
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200, "{host}");
    }
    // A health probe may come by any name.
    let probe = "GET /healthz HTTP/1.1\r\nHost: backend.internal\r\nConnection: close\r\n\r\n";
    assert_eq!(status_of(&exchange(&server, probe, Duration::from_secs(5)).await), 200);
}

#[tokio::test]
async fn a_host_missing_or_named_twice_is_a_bad_request() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let host = server.addr().to_string();
    let missing = "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n";
    assert_eq!(
        status_of(&exchange(&server, missing, Duration::from_secs(5)).await),
        400
    );
    let twice = format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    assert_eq!(status_of(&exchange(&server, &twice, Duration::from_secs(5)).await), 400);
    // HTTP/1.0 has no Host to require.
    let old = "GET /healthz HTTP/1.0\r\n\r\n";
    assert_eq!(status_of(&exchange(&server, old, Duration::from_secs(5)).await), 200);
}

#[tokio::test]
async fn an_origin_must_match_in_scheme_host_and_port_and_http_2_is_same_origin_too() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let ada = server.user("ada").await;
    let post = |origin: String| {
        with_cookie(&ada, Method::POST, "/api/rooms/general/messages")
            .header("origin", origin)
            .json(&json!({"content": "from a page"}))
    };
    let addr = server.addr();
    assert_eq!(
        post(format!("https://{addr}")).send().await.unwrap().status(),
        403,
        "scheme"
    );
    assert_eq!(
        post(format!("http://127.0.0.1:{}", addr.port() + 1))
            .send()
            .await
            .unwrap()
            .status(),
        403,
        "port"
    );
    assert_eq!(post(format!("http://{addr}")).send().await.unwrap().status(), 201);

    // Over HTTP/2 there is no Host header, only :authority: our own page's POST is ours.
    let h2 = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let response = h2
        .post(server.url("/api/rooms/general/messages"))
        .header("cookie", format!("chat_session={}", ada.token.as_deref().unwrap()))
        .header("origin", format!("http://{addr}"))
        .json(&json!({"content": "over h2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 201);
}

#[tokio::test]
async fn another_sites_page_cannot_open_a_stream_with_the_browsers_cookie() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let ada = server.user("ada").await;
    let bob = server.user("bob").await;
    let mut watching = bob.open_stream("general", "", None).await;
    // A top-level navigation from another site carries a Lax cookie: fetch metadata says so.
    for site in ["cross-site", "same-site"] {
        let response = with_cookie(&ada, Method::GET, "/api/events")
            .header("sec-fetch-site", site)
            .header("sec-fetch-mode", "navigate")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{site}");
    }
    let seen = watching.collect_for(Duration::from_millis(1500)).await;
    assert!(
        !seen.iter().any(|e| e.data.contains(r#""username":"ada""#)),
        "ada was not made online: {seen:?}"
    );
    // Our own page's stream, and a pasted link, are fine.
    for site in ["same-origin", "none"] {
        let response = with_cookie(&ada, Method::GET, "/api/events")
            .header("sec-fetch-site", site)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{site}");
    }
}

#[tokio::test]
async fn credentials_that_disagree_are_refused_and_the_scheme_may_be_any_case() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let ada = server.user("ada").await;
    let bob = server.user("bob").await;
    let token = ada.token.as_deref().unwrap();
    // A second session cookie, planted by a neighbouring site: neither is taken.
    let tossed = ada
        .http
        .get(ada.url("/api/rooms"))
        .header(
            "cookie",
            format!("chat_session={}; chat_session={token}", bob.token.as_deref().unwrap()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(tossed.status(), 401);
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let response = ada
            .http
            .get(ada.url("/api/rooms"))
            .header("authorization", format!("{scheme} {token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{scheme}");
        assert_eq!(
            response.headers()["cache-control"],
            "no-store",
            "private answers are not cached"
        );
    }
}

#[tokio::test]
async fn a_request_pipelined_behind_a_streams_does_not_run() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let ada = server.user("ada").await;
    let token = ada.token.as_deref().unwrap();
    let host = server.addr().to_string();
    let body = r#"{"content":"pipelined"}"#;
    let pipelined = format!(
        "GET /api/events HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\r\n\
         POST /api/rooms/general/messages HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let answer = exchange(&server, &pipelined, Duration::from_millis(1500)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        ada.history("general", "").await.is_empty(),
        "the pipelined post ran: {answer}"
    );
}

#[tokio::test]
async fn metrics_are_for_local_addresses_or_the_bearer_of_the_metrics_token() {
    let db = TestDb::new();
    let server = Server::start(&db, &["--metrics-token", "s3cret-metrics"]).await;
    let anonymous = server.anonymous();
    let refused = anonymous.http.get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(refused.status(), 403);
    let allowed = anonymous
        .http
        .get(server.url("/metrics"))
        .bearer_auth("s3cret-metrics")
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), 200);
    assert!(allowed.text().await.unwrap().contains("chat_open_streams"));
}

#[cfg(unix)]
#[tokio::test]
async fn the_database_is_created_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    server.user("ada").await.say("general", "private").await;
    for file in [db.path(), db.path().with_extension("db-wal")] {
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}: {mode:o}", file.display());
    }
}
