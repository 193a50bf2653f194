//! Crash and restart: SIGKILL the server, start it again on the same file. Sessions survive,
//! streams resume from their old cursor, and ids keep rising, never reused, even when the
//! newest rows are deleted by hand.

use crate::common::{Server, TestDb, ids};

#[tokio::test]
async fn after_sigkill_tokens_cursors_and_ids_carry_on() {
    let db = TestDb::new();
    let first = Server::start(&db, &[]).await;
    let ada = first.user("ada").await;
    let mut before = Vec::new();
    for n in 0..5 {
        before.push(ada.say("general", &format!("before {n}")).await["id"].as_i64().unwrap());
    }
    let cursor = *before.last().unwrap();
    first.kill().await;

    let second = Server::start(&db, &[]).await;
    let ada = ada.against(&second);
    // The old token still works.
    let after_restart: Vec<i64> = {
        let mut ids = Vec::new();
        for n in 0..3 {
            ids.push(ada.say("general", &format!("after {n}")).await["id"].as_i64().unwrap());
        }
        ids
    };
    assert!(after_restart[0] > cursor, "ids keep rising across a crash");

    let mut stream = ada.open_stream("general", "", Some(&cursor.to_string())).await;
    let replayed = stream.until_id(*after_restart.last().unwrap(), true).await;
    assert_eq!(ids(&replayed), after_restart);
    let live = ada.say("general", "live after restart").await["id"].as_i64().unwrap();
    assert_eq!(ids(&[stream.next_message().await.0]), [live]);
}

#[tokio::test]
async fn deleting_the_newest_rows_by_hand_never_recycles_their_ids() {
    let db = TestDb::new();
    let first = Server::start(&db, &[]).await;
    let ada = first.user("ada").await;
    ada.say("general", "one").await;
    let newest = ada.say("general", "two").await["id"].as_i64().unwrap();
    first.kill().await;

    let mut conn = db.connect().await;
    sqlx::query("DELETE FROM events WHERE id >= ?")
        .bind(newest - 1)
        .execute(&mut conn)
        .await
        .unwrap();
    drop(conn);

    let second = Server::start(&db, &[]).await;
    let ada = ada.against(&second);
    let next = ada.say("general", "three").await["id"].as_i64().unwrap();
    assert!(next > newest, "id {next} was handed out before (newest was {newest})");

    // A browser that saw `newest` resumes without a reset and gets the new message.
    let mut stream = ada.open_stream("general", "", Some(&newest.to_string())).await;
    let (event, data) = stream.next_message().await;
    assert_eq!(event.id, next.to_string());
    assert_eq!(data["content"], "three");
}

#[tokio::test]
async fn a_signed_out_token_stays_revoked_across_a_restart() {
    let db = TestDb::new();
    let first = Server::start(&db, &[]).await;
    let ada = first.user("ada").await;
    let response = ada
        .request(reqwest::Method::DELETE, "/api/sessions")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(ada.post("general", "hi").await.status(), 401);
    first.kill().await;
    let second = Server::start(&db, &[]).await;
    assert_eq!(ada.against(&second).post("general", "hi").await.status(), 401);
}
