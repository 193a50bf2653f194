//! Connections that cost the server a file each, against the real binary: thousands held
//! silent from one address, a flood from many addresses past the cap in all, and a process
//! whose open-file limit is low. Each is refused at accept with an answer, never left hanging,
//! while health checks and a normal user's messages go on.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};

use crate::common::{Server, TestDb, WAIT, read_until_closed};

/// A connection from `127.0.0.{last}` that sends nothing.
async fn silent_from(server: &Server, last: u8) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(IpAddr::from([127, 0, 0, last]), 0))
        .unwrap();
    socket.connect(server.addr()).await.unwrap()
}

/// What the server says on `socket` before closing it, within `wait`; empty if it says nothing.
async fn what_it_says(socket: &mut TcpStream, wait: Duration) -> String {
    read_until_closed(socket, wait).await
}

/// Holds `n` silent connections from `127.0.0.{last}` and sorts them: the ones the server kept
/// open, and the answers of the ones it refused.
async fn hold(server: &Server, last: u8, n: usize) -> (Vec<TcpStream>, Vec<String>) {
    let mut kept = Vec::new();
    let mut refused = Vec::new();
    for _ in 0..n {
        let mut socket = silent_from(server, last).await;
        // A refusal is written at once; a kept connection says nothing.
        let said = what_it_says(&mut socket, Duration::from_millis(20)).await;
        if said.is_empty() {
            kept.push(socket);
        } else {
            refused.push(said);
        }
    }
    (kept, refused)
}

/// On a busy machine a refusal can take longer than `hold` waits to be written: looks again at
/// the quiet ones, all at once, for long enough, and moves those that were refused.
async fn settle(kept: Vec<TcpStream>, mut refused: Vec<String>) -> (Vec<TcpStream>, Vec<String>) {
    let again = futures_util::future::join_all(kept.into_iter().map(|mut socket| async move {
        let said = what_it_says(&mut socket, Duration::from_millis(500)).await;
        (socket, said)
    }))
    .await;
    let mut kept = Vec::new();
    for (socket, said) in again {
        if said.is_empty() {
            kept.push(socket);
        } else {
            refused.push(said);
        }
    }
    (kept, refused)
}

#[tokio::test]
async fn thousands_of_silent_connections_from_one_address_leave_everyone_else_served() {
    let db = TestDb::new();
    let server = Server::start(&db, &["--max-connections-per-address", "100", "--silent-timeout", "3"]).await;
    // A normal user on their own addresses, with a stream open.
    let ada = server.user("ada").await;
    let bob = server.user("bob").await;
    let mut stream = bob.open_stream("general", "", None).await;

    let (kept, refused) = hold(&server, 9, 2_000).await;
    let (kept, refused) = settle(kept, refused).await;
    assert_eq!(kept.len(), 100, "the address keeps its hundred");
    assert_eq!(refused.len(), 1_900);
    for answer in &refused {
        assert!(answer.starts_with("HTTP/1.1 429 "), "{answer}");
        assert!(answer.contains("retry-after: 5\r\n"), "{answer}");
    }

    // Meanwhile others are served as usual: health checks, posts, and delivery.
    let probe = server.anonymous_from(2);
    let health = probe.request(reqwest::Method::GET, "/healthz").send().await.unwrap();
    assert_eq!(health.status(), 200);
    let started = tokio::time::Instant::now();
    ada.say("general", "still here").await;
    let (_, message) = stream.next_message().await;
    assert_eq!(message["content"], "still here");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "delivered in {:?}",
        started.elapsed()
    );
    assert!(server.metric("chat_connections_refused_total").await >= 1_900.0);

    // The silent ones are closed at the silent timeout, and the address may connect again.
    let mut kept = kept;
    for socket in kept.iter_mut().take(5) {
        assert_eq!(what_it_says(socket, WAIT).await, "", "closed without a word");
    }
    let (again, refused) = hold(&server, 9, 1).await;
    assert_eq!((again.len(), refused.len()), (1, 0));
}

#[tokio::test]
async fn past_max_connections_in_all_every_new_connection_gets_503_at_once() {
    let db = TestDb::new();
    // The silent timeout is long enough that no kept connection is closed while the others are
    // still being opened, however slow the machine.
    let server = Server::start(&db, &["--max-connections", "40", "--silent-timeout", "60"]).await;
    // Forty addresses, two connections each: the first forty fill the server.
    let mut kept = Vec::new();
    let mut refused = Vec::new();
    for last in 10..50 {
        let (k, r) = hold(&server, last, 2).await;
        kept.extend(k);
        refused.extend(r);
    }
    let (kept, refused) = settle(kept, refused).await;
    assert_eq!(kept.len(), 40);
    assert_eq!(refused.len(), 40);
    for answer in &refused {
        assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
        assert!(answer.ends_with(r#"{"error":"the server has all the connections it can take"}"#));
    }
    // Once they are closed, the places are given back.
    drop(kept);
    wait_until_served(&server).await;
}

/// Waits until `/healthz` answers `200` on a new connection.
async fn wait_until_served(server: &Server) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let probe = server.anonymous_from(2);
        match probe.request(reqwest::Method::GET, "/healthz").send().await {
            Ok(response) if response.status() == 200 => return,
            _ => assert!(tokio::time::Instant::now() < deadline, "places never came back"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn with_a_low_file_limit_the_server_answers_every_connection_and_never_runs_out() {
    let db = TestDb::new();
    // 300 files: 225 connections (75 kept for the database and the server), 202 streams.
    let server = Server::start_with_file_limit(&db, &["--silent-timeout", "30"], 300).await;
    let ada = server.user("ada").await;

    let mut kept = Vec::new();
    let mut refused = Vec::new();
    for last in 10..16 {
        let (k, r) = hold(&server, last, 100).await;
        kept.extend(k);
        refused.extend(r);
    }
    let (kept, refused) = settle(kept, refused).await;
    // Each connection was answered or kept; none was left waiting for an `accept` that failed.
    assert_eq!(kept.len() + refused.len(), 600);
    assert!(kept.len() <= 225, "{} kept", kept.len());
    assert!(refused.len() >= 375);
    assert!(refused.iter().all(|answer| answer.starts_with("HTTP/1.1 503 ")));

    // Let them go: the server has its files and its database, and serves as before.
    drop(kept);
    wait_until_served(&server).await;
    let message = ada.say("general", "after the flood").await;
    assert_eq!(message["content"], "after the flood");
    assert_eq!(ada.history("general", "").await.len(), 1);
}
