//! Message text round-trips exactly (multi-line, `\r`, `\r\n`, white space, unicode) through
//! the API, the history, the database and both stream formats, and no text can forge an SSE
//! field.

use crate::common::{Server, TestDb, rendered_text, rendering_of, without_bidi_spans};

const TEXTS: &[&str] = &[
    "plain",
    "two\nlines",
    "windows\r\nline end",
    "lone\rcarriage return",
    "evil\rid: 999\revent: logout\r\rdata: forged",
    "evil\nid: 999\nevent: reset\n\ndata: forged",
    "\n\n  x  \n\n",
    "  leading and trailing  ",
    "tab\there",
    "ünïcödé — 中文 — العربية — 👩‍👩‍👧 — e\u{301}",
    "\u{202e}right-to-left override",
    "<script>alert('x')</script> & <b>bold</b> \"quoted\"",
    "data: looks like a field",
    ": looks like a comment",
    "trailing newline\n",
    "\r",
];

fn unescape_html(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#13;", "\r")
        .replace("&#10;", "\n")
        .replace("&amp;", "&")
}

#[tokio::test]
async fn text_round_trips_exactly_everywhere() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let ada = server.user("ada").await;
    let mut json_stream = ada.open_stream("general", "", None).await;
    let mut html_stream = ada.open_stream("general", "?format=html", None).await;

    let mut posted = Vec::new();
    for text in TEXTS {
        let response = ada.post("general", text).await;
        // Whitespace-only texts are refused; everything else is stored.
        if text.trim().is_empty() {
            assert_eq!(response.status(), 422, "{text:?}");
            continue;
        }
        assert_eq!(response.status(), 201, "{text:?}");
        let event: serde_json::Value = response.json().await.unwrap();
        assert_eq!(event["content"], *text, "the 201 body");
        posted.push((event["id"].as_i64().unwrap(), *text));
    }

    for (id, text) in &posted {
        let (event, data) = json_stream.next_message().await;
        assert_eq!(event.id, id.to_string(), "no forged or split events");
        assert_eq!(event.event, "message");
        assert_eq!(data["content"], *text);

        let event = loop {
            let event = html_stream.expect().await;
            if event.event == "message" {
                break event;
            }
        };
        assert_eq!(event.id, id.to_string());
        assert!(!event.data.contains("<script"), "markup is escaped: {}", event.data);
        assert!(!event.data.contains(['\r', '\n']), "one data line: {:?}", event.data);
        let inner = rendered_text(&event.data, *id).expect("the message's text");
        assert_eq!(inner, rendering_of(text), "HTML partial of {id}");
        // The text itself is all there: its rendering, without the markup, holds each word.
        let shown = unescape_html(&without_bidi_spans(inner).expect("well-formed direction controls"));
        for word in text.split_whitespace().filter(|w| w.chars().all(char::is_alphanumeric)) {
            assert!(shown.contains(word), "{word:?} of {text:?} in {shown:?}");
        }
    }

    let history = ada.history("general", "").await;
    let stored: Vec<(i64, String)> = history
        .iter()
        .map(|m| (m["id"].as_i64().unwrap(), m["content"].as_str().unwrap().to_owned()))
        .collect();
    let expected: Vec<(i64, String)> = posted.iter().map(|(id, t)| (*id, t.to_string())).collect();
    assert_eq!(stored, expected);

    // The `messages` view, read by a separate connection while the server runs.
    let mut conn = db.connect().await;
    let rows: Vec<(i64, String, String, String)> =
        sqlx::query_as("SELECT id, room, username, content FROM messages ORDER BY id")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    let from_view: Vec<(i64, String)> = rows
        .iter()
        .map(|(id, room, user, content)| {
            assert_eq!((room.as_str(), user.as_str()), ("general", "ada"));
            (*id, content.clone())
        })
        .collect();
    assert_eq!(from_view, expected);
}

#[tokio::test]
async fn the_views_read_well_from_sqlite_while_the_server_runs() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let ada = server.user("ada").await;
    let posted = ada.say("general", "hello from ada").await;
    assert_eq!(ada.set_status("away").await.status(), 200);

    let mut conn = db.connect().await;
    let (id, room, username, content, created_at): (i64, String, String, String, String) =
        sqlx::query_as("SELECT id, room, username, content, created_at FROM messages")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(id, posted["id"].as_i64().unwrap());
    assert_eq!(
        (room.as_str(), username.as_str(), content.as_str()),
        ("general", "ada", "hello from ada")
    );
    assert_eq!(created_at, posted["created_at"].as_str().unwrap());
    // ISO 8601 UTC with milliseconds: 2026-11-21T09:30:00.123Z
    assert_eq!(created_at.len(), 24, "{created_at}");
    assert!(created_at.ends_with('Z') && created_at.as_bytes()[10] == b'T');

    let (username, status): (String, String) =
        sqlx::query_as("SELECT username, status FROM status_changes ORDER BY id DESC LIMIT 1")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!((username.as_str(), status.as_str()), ("ada", "away"));

    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn oversized_and_empty_messages_are_refused_clearly() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let ada = server.user("ada").await;
    assert_eq!(ada.post("general", &"é".repeat(4000)).await.status(), 201);
    for bad in [String::new(), " \n\t ".into(), "x".repeat(4001)] {
        let response = ada.post("general", &bad).await;
        assert_eq!(response.status(), 422);
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains("message"), "{body}");
    }
}
