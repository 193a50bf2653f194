//! A reverse proxy between a browser and the server, for the failures a real proxy causes
//! during a deploy: it can cut every open response, answer event-stream requests with `503`,
//! and replay a stream from an older point. It records every event-stream request it sees.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use poem::http::{HeaderName, StatusCode, header};
use poem::listener::TcpAcceptor;
use poem::{Body, IntoResponse, Request, Response};
use tokio_util::sync::CancellationToken;

/// One request for an event stream, as the proxy received it.
#[derive(Clone, Debug)]
pub struct EventsRequest {
    pub after: Option<String>,
    pub last_event_id: Option<String>,
    pub status: u16,
}

#[derive(Default)]
struct Switches {
    fail_events: AtomicUsize,
    rewind_events: AtomicBool,
    cut: Mutex<CancellationToken>,
    stall: Mutex<CancellationToken>,
    /// While set, posted messages wait at the proxy until it is cancelled.
    hold: Mutex<Option<CancellationToken>>,
    log: Mutex<Vec<EventsRequest>>,
}

pub struct Proxy {
    pub base: String,
    switches: Arc<Switches>,
    task: tokio::task::JoinHandle<()>,
}

/// A proxy's address, bound before its upstream exists: a server behind it is started with
/// `--public-origin` set to `base`, as an operator's would be.
pub struct ProxyAddress {
    pub base: String,
    listener: tokio::net::TcpListener,
}

impl ProxyAddress {
    pub async fn bind() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        Self { base, listener }
    }

    /// Forwards everything to `upstream` (`http://host:port`), passing the browser's `Host` on.
    pub async fn forward_to(self, upstream: &str) -> Proxy {
        Proxy::start_on(self, upstream).await
    }
}

impl Proxy {
    async fn start_on(address: ProxyAddress, upstream: &str) -> Self {
        let ProxyAddress { base, listener } = address;
        let switches = Arc::new(Switches::default());
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let upstream = upstream.to_owned();
        let shared = switches.clone();
        let app = poem::endpoint::make(move |req: Request| {
            let (client, upstream, switches) = (client.clone(), upstream.clone(), shared.clone());
            async move { forward(&client, &upstream, &switches, req).await }
        });
        let acceptor = TcpAcceptor::from_tokio(listener).unwrap();
        let task = tokio::spawn(async move {
            let _ = poem::Server::new_with_acceptor(acceptor).run(app).await;
        });
        Self { base, switches, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Ends every response that is still open (an event stream ends cleanly, as at a deploy).
    pub fn cut_open_responses(&self) {
        let mut cut = self.switches.cut.lock().unwrap();
        cut.cancel();
        *cut = CancellationToken::new();
    }

    /// Every response still open stops passing anything on, but stays open: a connection that
    /// died without closing, as after a laptop's sleep or behind a lost network.
    pub fn stall_open_responses(&self) {
        let mut stall = self.switches.stall.lock().unwrap();
        stall.cancel();
        *stall = CancellationToken::new();
    }

    /// Holds every message posted from now on at the proxy, until `release_posts`: a send
    /// that is slow to be answered.
    pub fn hold_posts(&self) {
        *self.switches.hold.lock().unwrap() = Some(CancellationToken::new());
    }

    pub fn release_posts(&self) {
        if let Some(hold) = self.switches.hold.lock().unwrap().take() {
            hold.cancel();
        }
    }

    /// The next `n` event-stream requests are answered `503 Service Unavailable`.
    pub fn fail_next_events(&self, n: usize) {
        self.switches.fail_events.store(n, Ordering::SeqCst);
    }

    /// The next event-stream request is forwarded as if it asked for everything from the start.
    pub fn rewind_next_events(&self) {
        self.switches.rewind_events.store(true, Ordering::SeqCst);
    }

    pub fn events_requests(&self) -> Vec<EventsRequest> {
        self.switches.log.lock().unwrap().clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Hop-by-hop headers, which a proxy must not pass on.
const HOP_BY_HOP: [HeaderName; 4] = [
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::CONTENT_LENGTH,
    header::UPGRADE,
];

async fn forward(client: &reqwest::Client, upstream: &str, switches: &Switches, req: Request) -> Response {
    let is_events = req.uri().path().ends_with("/events");
    let mut query: Vec<(String, String)> = req.uri().query().map(|q| url_pairs(q).collect()).unwrap_or_default();
    let mut headers = req.headers().clone();
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }

    if is_events {
        let mut record = EventsRequest {
            after: query.iter().find(|(k, _)| k == "after").map(|(_, v)| v.clone()),
            last_event_id: req.header("last-event-id").map(str::to_owned),
            status: 0,
        };
        let failing = switches
            .fail_events
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            record.status = 503;
            switches.log.lock().unwrap().push(record);
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
        if switches.rewind_events.swap(false, Ordering::SeqCst) {
            query.retain(|(k, _)| k != "after");
            query.push(("after".into(), "0".into()));
            headers.remove("last-event-id");
        }
        record.status = 200;
        switches.log.lock().unwrap().push(record);
    }

    let hold = switches.hold.lock().unwrap().clone();
    if let Some(hold) = hold
        && req.method() == poem::http::Method::POST
        && req.uri().path().ends_with("/messages")
    {
        hold.cancelled().await;
    }
    let cut = switches.cut.lock().unwrap().clone();
    let stall = switches.stall.lock().unwrap().clone();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let body = req.into_body().into_bytes().await.unwrap_or_default();
    let query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let upstream_response = client
        .request(method, format!("{upstream}{path}?{}", query.join("&")))
        .headers(headers)
        .body(body)
        .send()
        .await;
    let Ok(upstream_response) = upstream_response else {
        return StatusCode::BAD_GATEWAY.into_response();
    };

    let mut response = Response::builder().status(upstream_response.status());
    for (name, value) in upstream_response.headers() {
        if !HOP_BY_HOP.contains(name) {
            response = response.header(name, value);
        }
    }
    let mut chunks = upstream_response.bytes_stream();
    let body = async_stream::stream! {
        loop {
            tokio::select! {
                () = cut.cancelled() => break,
                () = stall.cancelled() => {
                    // Silent from here on, until cut.
                    cut.cancelled().await;
                    break;
                }
                chunk = chunks.next() => match chunk {
                    Some(chunk) => yield chunk.map_err(std::io::Error::other),
                    None => break,
                },
            }
        }
    };
    response.body(Body::from_bytes_stream(body))
}

/// `a=1&b=2` as pairs, left encoded as they came.
fn url_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k.to_owned(), v.to_owned())
    })
}
