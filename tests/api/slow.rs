//! Slow, stalled and silent clients: a reader that stops reading is cut off after the write
//! timeout without holding memory or delaying anyone else, and connections that never send a
//! whole request are closed after the request timeout. The raw sockets here are what a stuck
//! phone or a slowloris script looks like to the server.

use std::time::Duration;

use crate::common::{Server, TestDb};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// The server's resident memory, in bytes.
fn rss(server: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).expect("/proc status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("VmRSS");
    kib * 1024
}

/// Opens the room's event stream on a socket with a tiny receive buffer, reads the response
/// head, and returns the socket: from here on nobody reads it.
async fn stalled_stream(server: &Server, token: &str) -> TcpStream {
    let addr = server.addr();
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    let request = format!(
        "GET /api/rooms/general/events HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Accept: text/event-stream\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&head));
    stream
}

/// Reads until the server closes the connection; returns how many bytes came.
async fn read_to_close(stream: &mut TcpStream) -> usize {
    let mut total = 0;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match tokio::time::timeout(crate::common::WAIT, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return total,
            Ok(Ok(n)) => total += n,
            Err(_) => panic!("the server did not close the connection"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_reader_is_cut_off_without_slowing_a_hundred_others() {
    let db = TestDb::new();
    let server = Server::start(&db, &["--write-timeout", "2", "--hub-capacity", "64"]).await;
    let slow = server.user("slow").await;
    let mut stalled = stalled_stream(&server, slow.token.as_deref().unwrap()).await;

    let mut readers = Vec::new();
    for n in 0..4 {
        let user = server.user(&format!("reader{n}")).await;
        for _ in 0..25 {
            let mut stream = user.open_stream("general", "", None).await;
            readers.push(tokio::spawn(async move {
                let mut ids = Vec::new();
                loop {
                    let (event, message) = stream.next_message().await;
                    if message["content"] == "the end" {
                        return (ids, stream); // kept open: it must not count as the stalled one
                    }
                    ids.push(event.id.parse::<i64>().unwrap());
                }
            }));
        }
    }
    server.wait_for_metric("chat_open_streams", 101.0).await;
    let rss_before = rss(&server);

    // About 2.4 MB for every stream: far more than the stalled socket and its buffers can take.
    let poster = server.user("poster").await;
    let text = "x".repeat(3_000);
    let mut sent = Vec::new();
    for _ in 0..800 {
        sent.push(poster.say("general", &text).await["id"].as_i64().unwrap());
    }
    poster.say("general", "the end").await;

    let mut open = Vec::new();
    for reader in readers {
        let (ids, stream) = reader.await.unwrap();
        assert_eq!(ids, sent, "every normal reader got every message, in order");
        open.push(stream);
    }
    // The stalled stream was cut off by the server, not by us.
    server.wait_for_metric("chat_open_streams", 100.0).await;
    assert!(server.metric("chat_connections_timed_out_total").await >= 1.0);
    let got = read_to_close(&mut stalled).await;
    assert!(
        got < 800 * 3_000,
        "the stalled reader was cut off before the end ({got} bytes)"
    );
    let growth = rss(&server).saturating_sub(rss_before);
    println!(
        "server RSS {} MiB before, grew by {} KiB while 2.4 MB went to each of 101 streams",
        rss_before >> 20,
        growth >> 10
    );
    assert!(growth < 64 << 20, "server memory grew by {} MiB", growth >> 20);

    // Its owner goes offline once the grace period is over; the readers stay online.
    let mut conn = db.connect().await;
    let deadline = tokio::time::Instant::now() + crate::common::WAIT;
    loop {
        let latest: Option<String> =
            sqlx::query_scalar("SELECT status FROM status_changes WHERE username = 'slow' ORDER BY id DESC LIMIT 1")
                .fetch_optional(&mut conn)
                .await
                .unwrap();
        if latest.as_deref() == Some("offline") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "slow is still {latest:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(open);
}

#[tokio::test]
async fn a_connection_that_never_finishes_its_request_is_closed() {
    let db = TestDb::new();
    let server = Server::start(&db, &["--request-timeout", "1"]).await;
    let addr = server.addr();

    // Silent from the start.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    // A header trickled a few bytes at a time, never finished (slowloris).
    let mut trickle = TcpStream::connect(addr).await.unwrap();
    let trickling = tokio::spawn(async move {
        for chunk in [
            "GET / HTTP/1.1\r\n",
            "Host: x\r\n",
            "X-A: 1\r\n",
            "X-B: 2\r\n",
            "X-C: 3\r\n",
        ] {
            if trickle.write_all(chunk.as_bytes()).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        read_to_close(&mut trickle).await
    });
    assert_eq!(read_to_close(&mut silent).await, 0);
    assert_eq!(trickling.await.unwrap(), 0, "no answer, just closed");
    assert!(server.metric("chat_connections_timed_out_total").await >= 2.0);
    // And the server serves everyone else.
    let ada = server.user("ada").await;
    ada.say("general", "still serving").await;
}

#[tokio::test]
async fn an_idle_event_stream_outlives_the_request_timeout() {
    let db = TestDb::new();
    let server = Server::start(&db, &["--request-timeout", "1", "--keepalive", "1"]).await;
    let ada = server.user("ada").await;
    let mut stream = ada.open_stream("general", "", None).await;
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    let sent = ada.say("general", "after a quiet spell").await;
    let (event, _) = stream.next_message().await;
    assert_eq!(event.id, sent["id"].to_string());
}
