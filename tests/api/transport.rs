//! An event stream over each HTTP the server speaks, on the wire. An HTTP/1.1 `GET` is served
//! on a connection of its own once its response is decided: chunked, with every header the
//! app adds, ended cleanly by the server, and dropped as soon as the client closes. HTTP/1.0
//! and HTTP/2 streams are served by the HTTP server itself and carry the same frames.

use std::time::Duration;

use crate::common::{Client, Server, TestDb};
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A raw connection that has sent `GET /api/rooms/general/events` as `version` and read the
/// response head. Returns the socket, the head, and any body bytes read with it.
async fn raw_stream(server: &Server, user: &Client, version: &str) -> (TcpStream, String, Vec<u8>) {
    let addr = server.addr();
    let mut socket = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET /api/rooms/general/events {version}\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
         Accept: text/event-stream\r\n\r\n",
        user.token.as_deref().unwrap()
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    let end = loop {
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        read_some(&mut socket, &mut received).await;
    };
    let head = String::from_utf8(received[..end].to_vec()).unwrap();
    (socket, head, received[end..].to_vec())
}

/// Reads what is there (waiting at most `crate::common::WAIT`); false at the end of the stream.
async fn read_some(socket: &mut TcpStream, into: &mut Vec<u8>) -> bool {
    let mut buf = [0u8; 16 * 1024];
    let n = tokio::time::timeout(crate::common::WAIT, socket.read(&mut buf))
        .await
        .expect("the server sends in time")
        .unwrap_or(0);
    into.extend_from_slice(&buf[..n]);
    n > 0
}

/// A chunked body, decoded as far as it has arrived: the data, and whether the last chunk
/// (`0\r\n\r\n`) was among it. Panics on anything that is not chunked framing.
fn dechunk(mut body: &[u8]) -> (Vec<u8>, bool) {
    let mut data = Vec::new();
    loop {
        let Some(line_end) = body.windows(2).position(|w| w == b"\r\n") else {
            return (data, false);
        };
        let size = usize::from_str_radix(std::str::from_utf8(&body[..line_end]).unwrap(), 16)
            .unwrap_or_else(|_| panic!("a chunk size line: {:?}", String::from_utf8_lossy(&body[..line_end])));
        let start = line_end + 2;
        if body.len() < start + size + 2 {
            return (data, false);
        }
        assert_eq!(&body[start + size..start + size + 2], b"\r\n", "a chunk ends with CRLF");
        if size == 0 {
            assert_eq!(body.len(), start + 2, "nothing after the last chunk");
            return (data, true);
        }
        data.extend_from_slice(&body[start..start + size]);
        body = &body[start + size + 2..];
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn an_http_1_1_stream_is_chunked_carries_the_app_headers_and_ends_cleanly_at_shutdown() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let ada = server.user("ada").await;
    let (mut socket, head, mut body) = raw_stream(&server, &ada, "HTTP/1.1").await;

    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    let head = head.to_ascii_lowercase();
    for line in [
        "content-type: text/event-stream",
        "cache-control: no-cache",
        "transfer-encoding: chunked",
        "x-content-type-options: nosniff",
        "x-frame-options: deny",
        "content-security-policy: default-src 'self'",
        "date: ",
    ] {
        assert!(head.contains(&format!("\r\n{line}")), "{line} in {head}");
    }
    assert!(!head.contains("content-length"), "{head}");

    let sent = ada.say("general", "over the wire").await["id"].to_string();
    while !contains(&dechunk(&body).0, "over the wire") {
        assert!(read_some(&mut socket, &mut body).await, "the stream ended early");
    }
    let (data, _) = dechunk(&body);
    assert!(
        data.starts_with(b"retry: 3000\nevent: ping\ndata: {}\n\n"),
        "{}",
        String::from_utf8_lossy(&data)
    );
    assert!(contains(&data, &format!("id: {sent}\nevent: message\n")));

    // Shutdown ends the body with the last chunk, then closes: a clean end, not a cut one.
    let status = server.terminate().await;
    assert!(status.success());
    while read_some(&mut socket, &mut body).await {}
    let (_, ended) = dechunk(&body);
    assert!(ended, "the body ends with the last chunk");
}

#[tokio::test]
async fn a_closed_stream_is_noticed_at_once() {
    let db = TestDb::new();
    // No keep-alive for a minute: only watching the socket can notice the close in time.
    let server = Server::start(&db, &["--keepalive", "60"]).await;
    let ada = server.user("ada").await;
    let (socket, _, _) = raw_stream(&server, &ada, "HTTP/1.1").await;
    server.wait_for_metric("chat_open_streams", 1.0).await;
    drop(socket); // the tab closes
    server.wait_for_metric("chat_open_streams", 0.0).await;
}

#[tokio::test]
async fn bytes_a_client_sends_after_its_request_are_ignored() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let ada = server.user("ada").await;
    let (mut socket, _, mut body) = raw_stream(&server, &ada, "HTTP/1.1").await;
    // A pipelined request (never answered: the stream does not end) and some noise.
    socket
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nnoise\x00\xff")
        .await
        .unwrap();
    ada.say("general", "still streaming").await;
    while !contains(&dechunk(&body).0, "still streaming") {
        assert!(read_some(&mut socket, &mut body).await, "the stream ended");
    }
    assert!(!contains(&body, "HTTP/1.1"), "nothing answered the pipelined request");
    assert_eq!(server.metric("chat_open_streams").await, 1.0);
}

#[tokio::test]
async fn an_http_1_0_stream_is_served_until_the_connection_closes() {
    let db = TestDb::new();
    let server = Server::start(&db, &["--keepalive", "1"]).await;
    let ada = server.user("ada").await;
    let (mut socket, head, mut body) = raw_stream(&server, &ada, "HTTP/1.0").await;
    assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
    assert!(!head.to_ascii_lowercase().contains("transfer-encoding"), "{head}");

    let sent = ada.say("general", "for an old client").await["id"].to_string();
    while !contains(&body, "for an old client") {
        assert!(read_some(&mut socket, &mut body).await, "the stream ended early");
    }
    assert!(body.starts_with(b"retry: 3000\nevent: ping\ndata: {}\n\n"));
    assert!(contains(&body, &format!("id: {sent}\nevent: message\n")));

    // Served by the HTTP server, whose stream sees a close at the next keep-alive.
    server.wait_for_metric("chat_open_streams", 1.0).await;
    drop(socket);
    server.wait_for_metric("chat_open_streams", 0.0).await;
}

#[tokio::test]
async fn an_http_2_stream_carries_the_same_frames() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let ada = server.user("ada").await;
    let h2 = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let response = h2
        .get(server.url("/api/rooms/general/events"))
        .bearer_auth(ada.token.as_deref().unwrap())
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");

    let sent = ada.say("general", "over two").await["id"].to_string();
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    while !contains(&body, "over two") {
        let chunk = tokio::time::timeout(crate::common::WAIT, chunks.next())
            .await
            .expect("a frame in time")
            .expect("the stream goes on")
            .unwrap();
        body.extend_from_slice(&chunk);
    }
    assert!(body.starts_with(b"retry: 3000\nevent: ping\ndata: {}\n\n"));
    assert!(contains(&body, &format!("id: {sent}\nevent: message\n")));
}

#[tokio::test]
async fn a_stream_waiting_for_its_socket_lets_go_when_the_connection_drops_first() {
    // Many streams opened and dropped at once, some before the server has answered: every
    // one is released, served on its own connection or not.
    let db = TestDb::new();
    let server = Server::start(&db, &["--max-streams-per-user", "0"]).await;
    let ada = server.user("ada").await;
    let mut sockets = Vec::new();
    for _ in 0..50 {
        let (socket, _, _) = raw_stream(&server, &ada, "HTTP/1.1").await;
        sockets.push(socket);
    }
    for n in 0..50 {
        let mut socket = TcpStream::connect(server.addr()).await.unwrap();
        let request = format!(
            "GET /api/rooms/general/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
            ada.token.as_deref().unwrap()
        );
        socket.write_all(request.as_bytes()).await.unwrap();
        if n % 2 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        drop(socket);
    }
    drop(sockets);
    server.wait_for_metric("chat_open_streams", 0.0).await;
}
