//! A lean HTTP/1.1 client: raw hyper connections for requests, bare sockets for event streams;
//! one TCP connection per stream or poster, optionally bound to one of several 127.0.0.x source addresses so that tens of thousands of
//! connections do not run out of ephemeral ports.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, anyhow, bail};
use bytes::{Buf, Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::{Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::sse;

/// The server's address, and the source addresses connections are spread over.
pub struct Endpoint {
    addr: SocketAddr,
    host: String,
    sources: Vec<IpAddr>,
    next_source: AtomicUsize,
}

impl Endpoint {
    /// `base` is `http://HOST:PORT`. For a loopback server, connections come from
    /// 127.0.0.1 ..= 127.0.0.`sources` in turn (0: let the kernel choose).
    pub fn new(base: &str, sources: u8) -> anyhow::Result<Self> {
        let host = base
            .strip_prefix("http://")
            .ok_or_else(|| anyhow!("only http:// URLs are supported: {base}"))?
            .trim_end_matches('/')
            .to_owned();
        let addr = host
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve {host}"))?
            .next()
            .ok_or_else(|| anyhow!("{host} has no address"))?;
        let sources = if addr.ip().is_loopback() && addr.is_ipv4() {
            (1..=sources)
                .map(|last| IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
                .collect()
        } else {
            Vec::new()
        };
        Ok(Self {
            addr,
            host,
            sources,
            next_source: AtomicUsize::new(0),
        })
    }

    async fn connect(&self) -> anyhow::Result<TcpStream> {
        let socket = if self.addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if !self.sources.is_empty() {
            let source = self.sources[self.next_source.fetch_add(1, Ordering::Relaxed) % self.sources.len()];
            socket
                .bind(SocketAddr::new(source, 0))
                .with_context(|| format!("cannot bind to {source}"))?;
        }
        let stream = socket
            .connect(self.addr)
            .await
            .with_context(|| format!("cannot connect to {}", self.addr))?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    fn request(&self, method: Method, path: &str, token: Option<&str>) -> hyper::http::request::Builder {
        let builder = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, &self.host);
        match token {
            Some(token) => builder.header(header::AUTHORIZATION, format!("Bearer {token}")),
            None => builder,
        }
    }
}

/// A kept-alive connection for plain requests, driven by a task of its own.
pub struct Conn {
    sender: http1::SendRequest<Full<Bytes>>,
}

impl Conn {
    pub async fn open(endpoint: &Endpoint) -> anyhow::Result<Self> {
        let io = TokioIo::new(endpoint.connect().await?);
        let (sender, connection) = http1::handshake(io).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Self { sender })
    }

    /// Sends a request with an optional JSON body; returns the status and the whole body.
    pub async fn send(&mut self, request: Request<Full<Bytes>>) -> anyhow::Result<(StatusCode, Bytes)> {
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}

fn json_request(
    endpoint: &Endpoint,
    method: Method,
    path: &str,
    token: Option<&str>,
    json: Option<String>,
) -> anyhow::Result<Request<Full<Bytes>>> {
    let builder = endpoint.request(method, path, token);
    Ok(match json {
        Some(json) => builder
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(json)))?,
        None => builder.body(Full::new(Bytes::new()))?,
    })
}

/// One request on a connection of its own.
pub async fn request(
    endpoint: &Endpoint,
    method: Method,
    path: &str,
    token: Option<&str>,
    json: Option<String>,
) -> anyhow::Result<(StatusCode, Bytes)> {
    let request = json_request(endpoint, method, path, token, json)?;
    Conn::open(endpoint).await?.send(request).await
}

/// Signs up (`POST /api/users`, on a server started with `--signup open`), or signs in to an
/// account that exists, and returns the bearer token. A server from before sign-up had its own
/// route (`404`/`405` for `/api/users`) made the account at sign-in.
pub async fn sign_in(endpoint: &Endpoint, username: &str) -> anyhow::Result<String> {
    let body = serde_json::json!({ "username": username, "password": "bench password 1234" }).to_string();
    let (mut status, mut answer) = request(endpoint, Method::POST, "/api/users", None, Some(body.clone())).await?;
    if matches!(
        status,
        StatusCode::CONFLICT | StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED
    ) {
        (status, answer) = request(endpoint, Method::POST, "/api/sessions", None, Some(body)).await?;
    }
    let body = answer;
    if !status.is_success() {
        bail!("sign-in of {username}: {status} {}", String::from_utf8_lossy(&body));
    }
    let token = sse::json_str(&body, "token").ok_or_else(|| anyhow!("no token in {body:?}"))?;
    Ok(String::from_utf8(token.to_vec())?)
}

/// Signs in `count` users named `bench-0`, `bench-1`, ... and returns their tokens, a few at
/// a time (the server hashes a password per core at once).
pub async fn sign_in_users(endpoint: &Arc<Endpoint>, count: usize) -> anyhow::Result<Vec<Arc<str>>> {
    let mut tokens = Vec::with_capacity(count);
    let names: Vec<usize> = (0..count.max(1)).collect();
    for batch in names.chunks(8) {
        let signing: Vec<_> = batch
            .iter()
            .map(|n| {
                let endpoint = Arc::clone(endpoint);
                let name = format!("bench-{n}");
                tokio::spawn(async move { sign_in(&endpoint, &name).await })
            })
            .collect();
        for signed in signing {
            tokens.push(signed.await??.into());
        }
    }
    Ok(tokens)
}

/// Creates a private room whose first member is `token`'s user; one that exists is fine.
pub async fn create_private_room(endpoint: &Endpoint, token: &str, name: &str) -> anyhow::Result<()> {
    let body = serde_json::json!({ "name": name, "private": true }).to_string();
    let (status, body) = request(endpoint, Method::POST, "/api/rooms", Some(token), Some(body)).await?;
    if !(status.is_success() || status == StatusCode::CONFLICT) {
        bail!(
            "create private room {name}: {status} {}",
            String::from_utf8_lossy(&body)
        );
    }
    Ok(())
}

/// Adds the users `bench-N` for each `N` of `users` to the private room `room`, a few at a time.
pub async fn add_members(
    endpoint: &Arc<Endpoint>,
    token: &Arc<str>,
    room: &str,
    users: impl IntoIterator<Item = usize>,
) -> anyhow::Result<()> {
    let users: Vec<usize> = users.into_iter().collect();
    for batch in users.chunks(64) {
        let adding: Vec<_> = batch
            .iter()
            .map(|n| {
                let (endpoint, token) = (Arc::clone(endpoint), Arc::clone(token));
                let path = format!("/api/rooms/{room}/members/bench-{n}");
                tokio::spawn(async move { request(&endpoint, Method::PUT, &path, Some(&token), None).await })
            })
            .collect();
        for added in adding {
            let (status, body) = added.await??;
            if !status.is_success() {
                bail!("add a member to {room}: {status} {}", String::from_utf8_lossy(&body));
            }
        }
    }
    Ok(())
}

/// Creates a room; one that already exists is fine.
pub async fn create_room(endpoint: &Endpoint, token: &str, name: &str) -> anyhow::Result<()> {
    let body = serde_json::json!({ "name": name }).to_string();
    let (status, body) = request(endpoint, Method::POST, "/api/rooms", Some(token), Some(body)).await?;
    if !(status.is_success() || status == StatusCode::CONFLICT) {
        bail!("create room {name}: {status} {}", String::from_utf8_lossy(&body));
    }
    Ok(())
}

/// Posts messages to one room over one kept-alive connection.
pub struct Poster {
    endpoint: Arc<Endpoint>,
    conn: Conn,
    token: Arc<str>,
    path: String,
}

impl Poster {
    pub async fn new(endpoint: &Arc<Endpoint>, token: &Arc<str>, room: &str) -> anyhow::Result<Self> {
        Ok(Self {
            endpoint: Arc::clone(endpoint),
            conn: Conn::open(endpoint).await?,
            token: Arc::clone(token),
            path: format!("/api/rooms/{room}/messages"),
        })
    }

    /// Posts `content`; returns the new event's id once the server acknowledged it (`201`).
    pub async fn post(&mut self, content: &str) -> anyhow::Result<i64> {
        let path = std::mem::take(&mut self.path);
        let posted = self.post_to(&path, content).await;
        self.path = path;
        posted
    }

    /// Posts `content` to the messages of another room, `/api/rooms/{room}/messages`.
    pub async fn post_to(&mut self, path: &str, content: &str) -> anyhow::Result<i64> {
        let json = serde_json::json!({ "content": content }).to_string();
        let request = json_request(&self.endpoint, Method::POST, path, Some(&self.token), Some(json))?;
        let (status, body) = self.conn.send(request).await?;
        if status != StatusCode::CREATED {
            bail!("post: {status} {}", String::from_utf8_lossy(&body));
        }
        sse::json_i64(&body, "id").ok_or_else(|| anyhow!("no id in {body:?}"))
    }
}

/// Any request of one user over one kept-alive connection.
pub struct UserConn {
    endpoint: Arc<Endpoint>,
    conn: Conn,
    token: Arc<str>,
}

impl UserConn {
    pub async fn new(endpoint: &Arc<Endpoint>, token: &Arc<str>) -> anyhow::Result<Self> {
        Ok(Self {
            endpoint: Arc::clone(endpoint),
            conn: Conn::open(endpoint).await?,
            token: Arc::clone(token),
        })
    }

    /// Sends a request with an optional JSON body; returns the status and the whole body.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        json: Option<String>,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let request = json_request(&self.endpoint, method, path, Some(&self.token), json)?;
        self.conn.send(request).await
    }

    /// Opens a new connection in place of one the server closed (an idle keep-alive).
    pub async fn reopen(&mut self) -> anyhow::Result<()> {
        self.conn = Conn::open(&self.endpoint).await?;
        Ok(())
    }
}

/// How a followed stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// `stop` resolved; the connection was dropped.
    Stopped,
    /// The server ended the stream.
    Closed,
}

/// Opens `path` as an event stream on a connection of its own (resuming after `last_event_id`
/// if given), calls `opened` once the server answered `200`, then hands every piece of the body
/// read to `on_chunk` until `stop` resolves or the server ends the stream.
///
/// The request is written and the response read on the bare socket, the body de-chunked in
/// place: a stream costs the generator one read per batch of frames and nothing else, so that
/// the fan-out figures describe the server.
pub async fn follow(
    endpoint: &Endpoint,
    path: &str,
    token: &str,
    last_event_id: Option<i64>,
    stop: impl Future<Output = ()>,
    opened: impl FnOnce(),
    mut on_chunk: impl FnMut(&[u8]),
) -> anyhow::Result<End> {
    let mut socket = endpoint.connect().await?;
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\n",
        endpoint.host
    );
    if let Some(id) = last_event_id {
        request.push_str(&format!("Last-Event-ID: {id}\r\n"));
    }
    request.push_str("\r\n");
    socket.write_all(request.as_bytes()).await?;

    let mut buf = BytesMut::with_capacity(READ_BUFFER);
    let head_end = loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            break end + 4;
        }
        if buf.len() > MAX_HEAD {
            bail!("GET {path}: response head over {MAX_HEAD} bytes");
        }
        buf.reserve(READ_BUFFER);
        if socket.read_buf(&mut buf).await? == 0 {
            bail!("GET {path}: connection ended before the response");
        }
    };
    let head = String::from_utf8_lossy(&buf.split_to(head_end)).to_ascii_lowercase();
    if !head.starts_with("http/1.1 200 ") {
        let status = head.lines().next().unwrap_or_default().to_owned();
        bail!("GET {path}: {status} {}", String::from_utf8_lossy(&buf));
    }
    if !head.contains("\r\ntransfer-encoding: chunked\r\n") {
        bail!("GET {path}: the stream is not chunked: {head}");
    }
    opened();

    let mut body = Chunked::Size;
    let mut stop = pin!(stop);
    loop {
        body.decode(&mut buf, &mut on_chunk)?;
        if body == Chunked::Done {
            return Ok(End::Closed);
        }
        buf.reserve(READ_BUFFER);
        tokio::select! {
            biased;
            () = &mut stop => return Ok(End::Stopped),
            read = socket.read_buf(&mut buf) => if read? == 0 {
                bail!("GET {path}: the connection ended inside the body");
            },
        }
    }
}

/// Bytes read at a time; a fan-out frame is a few hundred.
const READ_BUFFER: usize = 16 * 1024;
/// The longest response head accepted.
const MAX_HEAD: usize = 16 * 1024;

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

/// Where a chunked body's decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunked {
    /// Before a chunk's size line.
    Size,
    /// Inside a chunk's data, this many bytes to go.
    Data(usize),
    /// After a chunk's data, before its CRLF.
    Crlf,
    /// The last chunk has come.
    Done,
}

impl Chunked {
    /// Consumes what `buf` holds of the body, handing the data to `on_data`.
    fn decode(&mut self, buf: &mut BytesMut, on_data: &mut impl FnMut(&[u8])) -> anyhow::Result<()> {
        loop {
            match *self {
                Self::Size => {
                    let Some(end) = find(buf, b"\r\n") else { return Ok(()) };
                    let line = std::str::from_utf8(&buf[..end])?;
                    let digits = line.split(';').next().unwrap_or_default().trim();
                    let size = usize::from_str_radix(digits, 16).with_context(|| format!("chunk size {line:?}"))?;
                    buf.advance(end + 2);
                    *self = if size == 0 { Self::Done } else { Self::Data(size) };
                }
                Self::Data(left) => {
                    if buf.is_empty() {
                        return Ok(());
                    }
                    let take = left.min(buf.len());
                    on_data(&buf[..take]);
                    buf.advance(take);
                    *self = if take == left {
                        Self::Crlf
                    } else {
                        Self::Data(left - take)
                    };
                }
                Self::Crlf => {
                    if buf.len() < 2 {
                        return Ok(());
                    }
                    if &buf[..2] != b"\r\n" {
                        bail!("a chunk does not end with CRLF");
                    }
                    buf.advance(2);
                    *self = Self::Size;
                }
                Self::Done => return Ok(()),
            }
        }
    }
}
