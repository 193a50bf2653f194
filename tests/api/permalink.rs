//! A message's permalink, `/rooms/{room}/messages/{id}`: the room page around that message,
//! highlighted; and the `404` page, alike, for a message deleted, unknown, in another room, or
//! in a room the reader cannot read.

use reqwest::Method;

use crate::common::{Client, Server, TestDb};

async fn page(client: &Client, path: &str) -> (u16, String) {
    let response = client.request(Method::GET, path).send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// The ids of the messages a page shows, in order.
fn shown(page: &str) -> Vec<i64> {
    page.split("<li id=\"msg-")
        .skip(1)
        .filter_map(|item| item.split('"').next().and_then(|id| id.parse().ok()))
        .collect()
}

#[tokio::test]
async fn a_permalink_shows_its_message_highlighted_among_those_around_it() {
    let db = TestDb::new();
    let server = Server::start(&db, &["--rate-limits", "off"]).await;
    let ada = server.user("ada").await;
    let bob = server.user("bob").await;
    let mut ids = Vec::new();
    for n in 0..120 {
        ids.push(
            ada.say("general", &format!("message {n}")).await["id"]
                .as_i64()
                .unwrap(),
        );
    }
    let focus = ids[40];

    let (status, html) = page(&bob, &format!("/rooms/general/messages/{focus}")).await;
    assert_eq!(status, 200);
    assert!(
        html.contains(&format!(r#"<li id="msg-{focus}" class="message highlight" "#)),
        "the message is highlighted"
    );
    assert!(html.contains(&format!(r#"data-focus="{focus}""#)));
    assert_eq!(html.matches(" highlight\"").count(), 1, "and no other");
    // The 50 messages centred on it: 25 up to and including it, 25 after.
    assert_eq!(shown(&html), ids[16..66].to_vec());
    assert!(
        html.contains(&format!("/rooms/general/older?before={}", ids[16])),
        "older ones load"
    );

    // The same window through the API.
    let around = bob.history("general", &format!("?around={focus}&limit=50")).await;
    let around: Vec<i64> = around.iter().map(|m| m["id"].as_i64().unwrap()).collect();
    assert_eq!(around, ids[16..66].to_vec());
    let first = bob.history("general", &format!("?around={}&limit=5", ids[0])).await;
    let first: Vec<i64> = first.iter().map(|m| m["id"].as_i64().unwrap()).collect();
    assert_eq!(first, ids[0..3].to_vec(), "nothing before the first: what there is");
    let bad = bob
        .request(
            Method::GET,
            &format!("/api/rooms/general/messages?around={focus}&before={focus}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn a_permalink_to_a_message_one_cannot_read_is_not_found_like_one_that_never_was() {
    let db = TestDb::new();
    let server = Server::start(&db, &["--rate-limits", "off"]).await;
    let ada = server.user("ada").await;
    let bob = server.user("bob").await;
    ada.create_private_room("ops").await;
    let secret = ada.say("ops", "for ops only").await["id"].as_i64().unwrap();
    let public = ada.say("general", "for all").await["id"].as_i64().unwrap();
    let gone = ada.say("general", "soon gone").await["id"].as_i64().unwrap();
    let deleted = ada
        .request(Method::DELETE, &format!("/api/messages/{gone}"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);

    let (status, _) = page(&ada, &format!("/rooms/ops/messages/{secret}")).await;
    assert_eq!(status, 200, "its member reads it");
    let (_, never) = page(&bob, "/rooms/general/messages/999999").await;
    for path in [
        format!("/rooms/ops/messages/{secret}"),
        format!("/rooms/general/messages/{secret}"),
        format!("/rooms/general/messages/{gone}"),
        format!("/rooms/rust/messages/{public}"),
        "/rooms/general/messages/999999".to_owned(),
        "/rooms/general/messages/0".to_owned(),
        "/rooms/general/messages/x".to_owned(),
    ] {
        let (status, html) = page(&bob, &path).await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(html, never, "{path} reads like a message that never was");
        assert!(!html.contains("for ops only"), "{path}");
    }
    let (status, _) = page(&server.anonymous(), &format!("/rooms/general/messages/{public}")).await;
    assert!(
        matches!(status, 200 | 303),
        "signed out: to the sign-in page ({status})"
    );
}
