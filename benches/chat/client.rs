//! A lean HTTP/1.1 client on raw hyper connections: one TCP connection per stream or poster,
//! optionally bound to one of several 127.0.0.x source addresses so that tens of thousands of
//! connections do not run out of ephemeral ports.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::{Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
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

/// Signs in (creating the account on first use) and returns the bearer token.
pub async fn sign_in(endpoint: &Endpoint, username: &str) -> anyhow::Result<String> {
    let body = serde_json::json!({ "username": username, "password": "bench password 1234" }).to_string();
    let (status, body) = request(endpoint, Method::POST, "/api/sessions", None, Some(body)).await?;
    if !status.is_success() {
        bail!("sign-in of {username}: {status} {}", String::from_utf8_lossy(&body));
    }
    let token = sse::json_str(&body, "token").ok_or_else(|| anyhow!("no token in {body:?}"))?;
    Ok(String::from_utf8(token.to_vec())?)
}

/// Signs in `count` users named `bench-0`, `bench-1`, ... and returns their tokens.
pub async fn sign_in_users(endpoint: &Endpoint, count: usize) -> anyhow::Result<Vec<Arc<str>>> {
    let mut tokens = Vec::with_capacity(count);
    for n in 0..count.max(1) {
        tokens.push(sign_in(endpoint, &format!("bench-{n}")).await?.into());
    }
    Ok(tokens)
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
        let json = serde_json::json!({ "content": content }).to_string();
        let request = json_request(&self.endpoint, Method::POST, &self.path, Some(&self.token), Some(json))?;
        let (status, body) = self.conn.send(request).await?;
        if status != StatusCode::CREATED {
            bail!("post: {status} {}", String::from_utf8_lossy(&body));
        }
        sse::json_i64(&body, "id").ok_or_else(|| anyhow!("no id in {body:?}"))
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
/// if given), calls `opened` once the server answered `200`, then hands every chunk read to
/// `on_chunk` until `stop` resolves or the server ends the stream.
pub async fn follow(
    endpoint: &Endpoint,
    path: &str,
    token: &str,
    last_event_id: Option<i64>,
    stop: impl Future<Output = ()>,
    opened: impl FnOnce(),
    mut on_chunk: impl FnMut(&[u8]),
) -> anyhow::Result<End> {
    let io = TokioIo::new(endpoint.connect().await?);
    let (mut sender, connection) = http1::handshake::<_, Full<Bytes>>(io).await?;
    let mut connection = pin!(connection);
    let mut request = endpoint
        .request(Method::GET, path, Some(token))
        .header(header::ACCEPT, "text/event-stream");
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id.to_string());
    }
    let request = request.body(Full::new(Bytes::new()))?;
    let response = tokio::select! {
        response = sender.send_request(request) => response?,
        result = &mut connection => bail!("connection ended before the response: {result:?}"),
    };
    if response.status() != StatusCode::OK {
        let status = response.status();
        // The connection must be driven while the error's body is read.
        let body = tokio::select! {
            body = response.into_body().collect() => body.map(|b| b.to_bytes()).unwrap_or_default(),
            _ = &mut connection => Bytes::new(),
        };
        bail!("GET {path}: {status} {}", String::from_utf8_lossy(&body));
    }
    opened();
    let mut body = response.into_body();
    let mut stop = pin!(stop);
    let mut connection_done = false;
    loop {
        tokio::select! {
            biased;
            () = &mut stop => return Ok(End::Stopped),
            frame = body.frame() => match frame {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        on_chunk(data);
                    }
                }
                Some(Err(error)) => return Err(error.into()),
                None => return Ok(End::Closed),
            },
            _ = &mut connection, if !connection_done => connection_done = true,
        }
    }
}
