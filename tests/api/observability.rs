//! What an operator's tools read: the log as JSON lines, each line of a request and of the
//! stream it opened naming the request's id (a trusted proxy's, else the server's own, and in
//! the answer's `X-Request-Id` either way); the metrics of deliveries by scope, resumed
//! streams, refusals by limit, answers by status and the last backup; and the Grafana
//! dashboard in `docs/grafana/`, whose every metric the server serves.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{Client, Server, Stream200, TestDb, WAIT};
use crate::migration::schema_before;
use crate::operations::{chat, said};

/// The value of `request_id` in the spans of a JSON log line, if it has one.
fn request_id_of(line: &Value) -> Option<&str> {
    line["spans"]
        .as_array()?
        .iter()
        .find_map(|span| span["request_id"].as_str())
}

/// Every line of the log, each of which must be a JSON object.
fn json_lines(server: &Server) -> Vec<Value> {
    server
        .logs()
        .lines()
        .iter()
        .map(|line| {
            let value: Value = serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line:?}"));
            assert!(value.is_object(), "not an object: {line}");
            value
        })
        .collect()
}

/// Waits for a JSON log line with `message` logged for the request `id`.
async fn wait_for_line(server: &Server, id: &str, message: &str) -> Value {
    let line = server
        .logs()
        .wait_for(&format!("{message:?} of request {id}"), |line| {
            serde_json::from_str::<Value>(line)
                .is_ok_and(|value| value["message"] == message && request_id_of(&value) == Some(id))
        })
        .await;
    serde_json::from_str(&line).unwrap()
}

async fn open_stream_as(client: &Client, path: &str, id: &str, last_event_id: Option<&str>) -> Stream200 {
    let mut request = client
        .request(Method::GET, path)
        .header("accept", "text/event-stream")
        .header("x-request-id", id);
    if let Some(last) = last_event_id {
        request = request.header("last-event-id", last);
    }
    let response = tokio::time::timeout(WAIT, request.send())
        .await
        .expect("stream opens in time")
        .expect("GET events");
    assert_eq!(
        response.headers()["x-request-id"],
        id,
        "the stream's answer names its request"
    );
    Stream200::from(response)
}

#[tokio::test]
async fn json_logs_name_the_request_on_every_line_of_it_and_of_its_stream_handed_off_or_not() {
    for handoff in ["on", "off"] {
        let db = TestDb::new();
        let server = Server::start_logged(
            &db,
            // Through the HTTP server, a stream learns its client has gone at its next write:
            // a ping a second makes that soon.
            &[
                "--log-format",
                "json",
                "--trust-proxy",
                "127.0.0.1",
                "--stream-handoff",
                handoff,
                "--keepalive",
                "1",
            ],
            "chat=debug",
        )
        .await;
        let ada = server.user("ada").await;

        // A request the proxy named keeps its name, in the answer and on its log line.
        let response = ada
            .request(Method::GET, "/api/rooms")
            .header("x-request-id", "edge-42.a_b:c")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-request-id"], "edge-42.a_b:c");
        let line = wait_for_line(&server, "edge-42.a_b:c", "response").await;
        assert_eq!(line["status"], "200 OK", "{line}");
        assert_eq!(line["level"], "DEBUG", "{line}");
        let span = &line["spans"][0];
        assert_eq!(span["name"], "request");
        assert_eq!(span["method"], "GET");
        assert_eq!(span["uri"], "/api/rooms");
        assert_eq!(span["client"], "127.0.0.1");

        // A stream's lines, from its opening to its end, name the request that opened it.
        let mut stream = open_stream_as(&ada, "/api/rooms/general/events", "stream-7", None).await;
        wait_for_line(&server, "stream-7", "stream opened").await;
        let said = ada
            .request(Method::POST, "/api/rooms/general/messages")
            .header("x-request-id", "post-1")
            .json(&json!({ "content": "logged" }))
            .send()
            .await
            .unwrap();
        assert_eq!(said.status(), 201);
        let (_, message) = stream.next_message().await;
        assert_eq!(message["content"], "logged");
        drop(stream);
        let ended = wait_for_line(&server, "stream-7", "stream ended").await;
        // The message, and perhaps ada's own `online` before it.
        assert!(
            ended["events"].as_u64().is_some_and(|n| (1..=2).contains(&n)),
            "handoff {handoff}: {ended}"
        );
        if handoff == "on" {
            // Logged by the stream's own task, on its own connection, after the request.
            wait_for_line(&server, "stream-7", "event stream connection ended").await;
        }
        wait_for_line(&server, "post-1", "response").await;

        // An id that is not one (too long, or with characters a log line must not carry) is
        // replaced by one of the server's.
        for bad in ["x".repeat(129), "two words".to_owned(), "quote\"d".to_owned()] {
            let response = ada
                .request(Method::GET, "/api/me")
                .header("x-request-id", bad.as_str())
                .send()
                .await
                .unwrap();
            let id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
            assert_ne!(id, bad);
            assert!(id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
            wait_for_line(&server, &id, "response").await;
        }

        // Every line is JSON, and every line logged inside a request names one.
        for line in json_lines(&server) {
            if line["spans"].as_array().is_some_and(|spans| !spans.is_empty()) {
                assert!(
                    request_id_of(&line).is_some(),
                    "a line in a span without a request id: {line}"
                );
            }
        }
    }
}

#[tokio::test]
async fn without_a_trusted_proxy_a_request_id_from_the_client_is_not_believed_and_each_is_new() {
    let db = TestDb::new();
    let server = Server::start_logged(&db, &[], "chat=debug").await;
    let anonymous = server.anonymous();
    let mut seen = BTreeSet::new();
    for _ in 0..50 {
        let response = anonymous
            .request(Method::GET, "/healthz")
            .header("x-request-id", "chosen-by-the-client")
            .send()
            .await
            .unwrap();
        let id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert_ne!(id, "chosen-by-the-client");
        assert!(seen.insert(id), "request ids repeat");
    }
    // The text log names the id in the request's span.
    let id = seen.first().unwrap().clone();
    let line = server
        .logs()
        .wait_for("naming the request", |line| line.contains(&format!("request_id={id}")))
        .await;
    assert!(line.contains("response"), "{line}");
}

#[tokio::test]
async fn metrics_count_deliveries_by_scope_resumed_streams_refusals_by_limit_and_answers_by_status() {
    let db = TestDb::new();
    let server = Server::start(&db, &["--message-rate", "1", "--message-burst", "1"]).await;
    let ada = server.user("ada").await;
    let mut stream = ada.open_user_stream("", None).await;

    let first = ada.say("general", "one").await;
    stream.next_message().await;
    assert_eq!(server.metric(r#"chat_deliveries_total{scope="room"}"#).await, 1.0);
    // The second message within the second is refused by the message rate, and counted so.
    let refused = ada.post("general", "two").await;
    assert_eq!(refused.status(), 429);
    assert_eq!(
        server.metric(r#"chat_refused_by_limits_total{limit="messages"}"#).await,
        1.0
    );
    assert_eq!(
        server.metric(r#"chat_refused_by_limits_total{limit="sign_ins"}"#).await,
        0.0
    );

    // A read mark is the reader's own (scope user); a status change everyone's (ada's own
    // `online`, from opening the stream, may come before it).
    let everyone = r#"chat_deliveries_total{scope="everyone"}"#;
    let read = ada
        .request(Method::PUT, "/api/rooms/general/read")
        .json(&json!({ "up_to": first["id"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 204);
    until(&mut stream, "read").await;
    assert_eq!(server.metric(r#"chat_deliveries_total{scope="user"}"#).await, 1.0);
    let statuses = server.metric(everyone).await;
    assert!(ada.set_status("away").await.status().is_success());
    let away = loop {
        let event = until(&mut stream, "status").await;
        if event.data.contains("away") {
            break event;
        }
    };
    assert!(server.metric(everyone).await > statuses);
    drop(stream);

    // A stream resumed from before all of it replays it, and is counted as resumed; one from
    // now is not.
    assert_eq!(server.metric("chat_resumed_streams_total").await, 0.0);
    drop(ada.open_user_stream("", None).await);
    let mut resumed = ada.open_user_stream("", Some("0")).await;
    let replayed = resumed.until_id(away.id.parse().unwrap(), false).await;
    assert!(replayed.len() >= 3, "{replayed:?}");
    assert_eq!(server.metric("chat_resumed_streams_total").await, 1.0);
    assert!(server.metric("chat_replayed_events_total").await >= 3.0);
    assert_eq!(server.metric(r#"chat_deliveries_total{scope="room"}"#).await, 2.0);
    assert_eq!(server.metric(r#"chat_deliveries_total{scope="user"}"#).await, 2.0);

    // Answers by the class of their status, and how long they took.
    assert_eq!(
        ada.request(Method::GET, "/api/rooms/nowhere")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert!(server.metric(r#"chat_http_requests_total{class="4xx"}"#).await >= 2.0);
    assert!(server.metric(r#"chat_http_requests_total{class="2xx"}"#).await >= 5.0);
    assert!(server.metric("chat_http_request_duration_seconds_count").await >= 7.0);
    assert!(server.metric("chat_commit_duration_seconds_count").await >= 3.0);
    assert!(server.metric("process_resident_memory_bytes").await > 1e6);
    assert!(server.metric("chat_database_bytes").await > 0.0);
}

/// The next event named `name` on `stream`.
async fn until(stream: &mut Stream200, name: &str) -> eventsource_stream::Event {
    loop {
        let event = stream.expect().await;
        if event.event == name {
            return event;
        }
    }
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// The backup command records the copy it made and checked in the database, and the running
/// server's metrics say when: on a database written by the release before backups were
/// recorded (every migration before 0013), upgraded in place with its messages kept.
#[tokio::test]
async fn the_time_of_the_last_backup_is_in_the_metrics_of_a_database_from_before_it_was_recorded() {
    let db = TestDb::new();
    {
        let mut conn = schema_before(&db, "0013").await;
        sqlx::raw_sql(
            "INSERT INTO users (id, username, password_hash, role) VALUES (1, 'ada', 'not a hash', 'admin');
             INSERT INTO events (id, kind, scope, room_id, user_id, body) VALUES
                 (1, 'message', 'room', 1, 1, 'before backups were recorded');",
        )
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let server = Server::start(&db, &[]).await;
    assert_eq!(server.metric("chat_last_backup_timestamp_seconds").await, 0.0);
    let bob = server.user("bob").await;
    let kept = bob.history("general", "").await;
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0]["content"], "before backups were recorded");

    let dir = tempfile::tempdir().unwrap();
    let mut last = 0.0;
    for n in 0..2 {
        let out = dir.path().join(format!("backup-{n}.db"));
        let before = unix_now().floor();
        let (ok, _, stderr) = said(
            &chat(
                &["backup", "--db", db.path().to_str().unwrap(), out.to_str().unwrap()],
                None,
            )
            .await,
        );
        assert!(ok && stderr.is_empty(), "{stderr}");
        let after = unix_now().ceil();
        let at = server.metric("chat_last_backup_timestamp_seconds").await;
        assert!(
            (before..=after).contains(&at) && at >= last,
            "{before} <= {at} <= {after}"
        );
        last = at;
        // The copy is the database as it was: the record of itself is not in it.
        let copy = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", out.display()))
            .await
            .unwrap();
        let in_copy: i64 = sqlx::query_scalar("SELECT count(*) FROM backups")
            .fetch_one(&copy)
            .await
            .unwrap();
        assert_eq!(in_copy, n);
        copy.close().await;
    }
    let mut conn = db.connect().await;
    let recorded: Vec<(String, i64)> = sqlx::query_as("SELECT path, bytes FROM backups ORDER BY id")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(recorded.len(), 2);
    assert!(
        recorded[1].0.ends_with("backup-1.db") && recorded[1].1 > 0,
        "{recorded:?}"
    );

    // A backup whose record cannot be written (a database the operator may only read) is
    // still made, and says why it is not recorded.
    drop(conn);
    server.terminate().await;
    let read_only = dir.path().join("read-only.db");
    std::fs::copy(db.path(), &read_only).unwrap();
    let mut perms = std::fs::metadata(&read_only).unwrap().permissions();
    perms.set_readonly(true);
    std::fs::set_permissions(&read_only, perms).unwrap();
    let out = dir.path().join("of-read-only.db");
    let (ok, _, stderr) = said(
        &chat(
            &["backup", "--db", read_only.to_str().unwrap(), out.to_str().unwrap()],
            None,
        )
        .await,
    );
    if running_as_root() {
        // Root may write a read-only file: the record is written after all.
        assert!(ok, "{stderr}");
    } else {
        assert!(ok && stderr.contains("cannot be recorded"), "{stderr}");
    }
    assert!(out.exists());
}

fn running_as_root() -> bool {
    // SAFETY: geteuid only reads the process's user id.
    unsafe { libc::geteuid() == 0 }
}

/// Every metric the dashboard draws is one the server serves, under that name.
#[tokio::test]
async fn every_metric_of_the_grafana_dashboard_is_served() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/grafana/chat.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            exprs.push(target["expr"].as_str().expect("expr").to_owned());
        }
    }
    assert!(exprs.len() >= 10, "{exprs:?}");

    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let text = reqwest::get(server.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let served: BTreeSet<&str> = text
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split(['{', ' ']).next())
        .collect();
    let mut used = BTreeSet::new();
    for expr in &exprs {
        let mut rest = expr.as_str();
        while let Some(start) = rest.find(|c: char| c.is_ascii_lowercase()) {
            let word: String = rest[start..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[start + word.len().max(1)..];
            if word.starts_with("chat_") || word.starts_with("process_") {
                used.insert(word);
            }
        }
    }
    for name in &used {
        assert!(
            served.contains(name.as_str()),
            "the dashboard draws {name}, which /metrics does not serve"
        );
    }
    for family in [
        "chat_deliveries_total",
        "chat_refused_by_limits_total",
        "chat_last_backup_timestamp_seconds",
    ] {
        assert!(used.contains(family), "the dashboard does not draw {family}");
    }
}
