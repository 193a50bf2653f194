//! The one writer under trouble: a request that fails is failed alone, a batch the database
//! refuses fails only its own requests (with a clear `503`), and the writer carries on.

mod common;

use common::{Server, TestDb};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_failing_request_does_not_spoil_the_batch() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let ada = server.user("ada").await;
    let mut tasks = Vec::new();
    for n in 0..40 {
        let ada = ada.clone();
        tasks.push(tokio::spawn(async move {
            if n % 2 == 0 {
                ada.create_room("contested").await.status().as_u16()
            } else {
                ada.post("general", &format!("msg {n}")).await.status().as_u16()
            }
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    let rooms: Vec<u16> = statuses.iter().step_by(2).copied().collect();
    let posts: Vec<u16> = statuses.iter().skip(1).step_by(2).copied().collect();
    assert_eq!(rooms.iter().filter(|s| **s == 201).count(), 1, "{rooms:?}");
    assert_eq!(rooms.iter().filter(|s| **s == 409).count(), 19, "{rooms:?}");
    assert!(posts.iter().all(|s| *s == 201), "{posts:?}");
    assert_eq!(ada.history("general", "?limit=200").await.len(), 20);
}

#[tokio::test]
async fn a_locked_database_fails_the_batch_with_503_and_the_writer_carries_on() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let ada = server.user("ada").await;
    ada.say("general", "before the lock").await;

    // Someone at the sqlite3 prompt holds the write lock past the server's busy timeout.
    let mut conn = db.connect().await;
    sqlx::query("BEGIN IMMEDIATE").execute(&mut conn).await.unwrap();
    let refused = ada.post("general", "while locked").await;
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: Value = refused.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("try again"), "{body}");
    // Reads go on: WAL readers do not wait for the writer.
    assert_eq!(reqwest::get(server.url("/healthz")).await.unwrap().status(), 200);
    sqlx::query("ROLLBACK").execute(&mut conn).await.unwrap();

    let accepted = ada.say("general", "after the lock").await;
    let history = ada.history("general", "").await;
    let contents: Vec<&str> = history.iter().map(|m| m["content"].as_str().unwrap()).collect();
    assert_eq!(contents, ["before the lock", "after the lock"], "nothing half-written");
    assert_eq!(history[1]["id"], accepted["id"]);
}
