//! SIGTERM with many open streams: every stream is ended by the server (so browsers reconnect
//! with `Last-Event-ID`), queued writes are finished, and the process exits promptly instead
//! of waiting on streams that never end by themselves.

use std::time::Instant;

use crate::common::{Server, TestDb};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_with_a_hundred_open_streams_ends_them_and_exits_cleanly() {
    let db = TestDb::new();
    let server = Server::start(&db, &["--max-streams-per-user", "0"]).await;
    let ada = server.user("ada").await;
    let mut streams = Vec::new();
    for _ in 0..100 {
        // One connection per stream, as a hundred browser tabs would have.
        let tab = crate::common::Client {
            http: reqwest::Client::new(),
            ..ada.clone()
        };
        streams.push(tab.open_stream("general", "", None).await);
    }
    server.wait_for_metric("chat_open_streams", 100.0).await;
    let last = ada.say("general", "last words").await["id"].as_i64().unwrap();

    let started = Instant::now();
    let status = server.terminate().await;
    let took = started.elapsed();
    println!("shutdown with 100 open streams took {took:?}");
    assert!(status.success(), "clean exit: {status:?}");

    for stream in &mut streams {
        // Each stream got the last message and then a clean end of stream (a stream cut by the
        // shutdown backstop would end in a broken chunked body, an error here).
        let mut saw_last = false;
        while let Some(event) = stream.next().await {
            saw_last |= event.id == last.to_string();
        }
        assert!(saw_last);
    }

    // The database is whole and the message is there after a restart.
    let again = Server::start(&db, &[]).await;
    let history = ada.against(&again).history("general", "").await;
    assert_eq!(history.last().unwrap()["content"], "last words");
}
