//! HTTPS with HTTP/2 (`--tls-cert`, `--tls-key`), with certificates made at run time by a
//! certificate authority of the test's own: the API and the event streams over HTTP/2 and over
//! HTTP/1.1 on TLS, twenty streams multiplexed on one HTTP/2 connection, each exact; twenty
//! browser tabs on https; the certificate reloaded on SIGHUP under open streams; and the
//! session cookie, HSTS and the plain-http redirect, with TLS and without.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use eventsource_stream::{Event, EventStreamError, Eventsource};
use fantoccini::Client as Browser;
use futures_util::{Stream, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

use crate::common::browser::{Driver, eval, finish, free_port, shown, sign_up, wait_for};
use crate::common::{Client, Server, TestDb, WAIT};

const PASSWORD: &str = "correct horse battery";

/// A certificate authority made for one test, and the files its server reads.
struct Pki {
    ca: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    dir: tempfile::TempDir,
}

/// A server certificate the test's authority issued: PEM files' contents, and the DER a
/// client sees in the handshake.
struct Leaf {
    cert: String,
    key: String,
    der: Vec<u8>,
}

impl Pki {
    fn new() -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "chat test authority");
        let ca = rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap();
        Self {
            ca,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A certificate for `localhost` and `127.0.0.1`, named `name`, with serial `serial`.
    fn issue(&self, name: &str, serial: u64) -> Leaf {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.serial_number = Some(rcgen::SerialNumber::from(serial));
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &*self.ca).unwrap();
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }

    fn cert_path(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    fn key_path(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }

    /// Puts a certificate and key in place as a renewal does: each written beside its file,
    /// then renamed over it.
    fn install(&self, cert: &str, key: &str) {
        for (path, text) in [(self.cert_path(), cert), (self.key_path(), key)] {
            let new = path.with_extension("new");
            std::fs::write(&new, text).unwrap();
            std::fs::rename(&new, &path).unwrap();
        }
    }

    fn install_leaf(&self, leaf: &Leaf) {
        self.install(&leaf.cert, &leaf.key);
    }

    /// The server's flags for these files.
    fn args(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.cert_path().display().to_string(),
            "--tls-key".into(),
            self.key_path().display().to_string(),
        ]
    }

    fn reqwest(&self) -> reqwest::ClientBuilder {
        let ca = reqwest::Certificate::from_pem(self.ca.pem().as_bytes()).unwrap();
        reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .tls_info(true)
    }

    /// An https client that trusts the test's authority; HTTP/2, chosen by ALPN.
    fn http(&self) -> reqwest::Client {
        self.reqwest().build().unwrap()
    }

    /// The same, speaking HTTP/1.1 only.
    fn http1(&self) -> reqwest::Client {
        self.reqwest().http1_only().build().unwrap()
    }

    /// A TLS client configuration that trusts the test's authority and offers `alpn`.
    fn tls_config(&self, alpn: &[&[u8]]) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(CertificateDer::from(self.ca.der().to_vec())).unwrap();
        let mut config = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
        Arc::new(config)
    }
}

/// Starts a server on https with the certificate in `pki`'s files, and `args` on top.
async fn start(db: &TestDb, pki: &Pki, args: &[&str]) -> Server {
    let mut all = pki.args();
    all.extend(args.iter().map(|arg| arg.to_string()));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let server = Server::start(db, &all).await;
    assert!(server.base.starts_with("https://"), "{}", server.base);
    server
}

/// Signs `name` up through `http` and returns the client with its token.
async fn user(server: &Server, http: &reqwest::Client, name: &str) -> Client {
    let mut client = Client {
        http: http.clone(),
        base: server.base.clone(),
        token: None,
        username: name.to_owned(),
    };
    let response = client.sign_up(name, PASSWORD).await;
    assert_eq!(response.status(), 201, "signing up {name}");
    let body: Value = response.json().await.unwrap();
    client.token = Some(body["token"].as_str().unwrap().to_owned());
    client
}

/// A metric of the server, read over https.
async fn metric(http: &reqwest::Client, server: &Server, name: &str) -> f64 {
    let text = http
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
}

async fn wait_for_metric(http: &reqwest::Client, server: &Server, name: &str, value: f64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while metric(http, server, name).await != value {
        assert!(tokio::time::Instant::now() < deadline, "{name} never reached {value}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A TLS connection of the test's own to the server, for `localhost`.
async fn tls_connect(server: &Server, config: Arc<ClientConfig>) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(server.addr()).await.unwrap();
    tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("a TLS handshake with the test's authority trusted")
}

/// The certificate the server presented on `connection`.
fn peer_certificate(connection: &TlsStream<TcpStream>) -> Vec<u8> {
    connection.get_ref().1.peer_certificates().expect("a certificate")[0].to_vec()
}

/// The certificate a new connection is shown now.
async fn presented(server: &Server, pki: &Pki) -> Vec<u8> {
    peer_certificate(&tls_connect(server, pki.tls_config(&[b"http/1.1"])).await)
}

/// SSE events, parsed by an independent parser, from any client's body (its errors as text).
type Events = Pin<Box<dyn Stream<Item = Result<Event, EventStreamError<String>>> + Send>>;

/// One HTTP/2 connection of the test's own, over TLS: every stream it opens shares it.
struct H2 {
    send: h2::client::SendRequest<Bytes>,
}

impl H2 {
    async fn connect(server: &Server, pki: &Pki) -> Self {
        let tls = tls_connect(server, pki.tls_config(&[b"h2", b"http/1.1"])).await;
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]), "ALPN chose h2");
        let (send, connection) = h2::client::handshake(tls).await.expect("an HTTP/2 connection");
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Self { send }
    }

    /// `GET path` with `token`: the response's status and body.
    async fn get(&self, server: &Server, token: &str, path: &str, accept: &str) -> (u16, h2::RecvStream) {
        let request = http::Request::get(server.url(path))
            .header("authorization", format!("Bearer {token}"))
            .header("accept", accept)
            .body(())
            .unwrap();
        self.send(request).await
    }

    async fn send(&self, request: http::Request<()>) -> (u16, h2::RecvStream) {
        let mut send = self.send.clone().ready().await.expect("room for a stream");
        let (response, _) = send.send_request(request, true).expect("the request is sent");
        let response = tokio::time::timeout(WAIT, response)
            .await
            .expect("an answer in time")
            .expect("an answer");
        let status = response.status().as_u16();
        (status, response.into_body())
    }

    /// Opens an event stream on this connection.
    async fn events(&self, server: &Server, token: &str, path: &str) -> Events {
        let (status, body) = self.get(server, token, path, "text/event-stream").await;
        assert_eq!(status, 200, "opening {path}");
        let chunks = futures_util::stream::unfold(body, |mut body| async move {
            let chunk = body.data().await?;
            if let Ok(chunk) = &chunk {
                let _ = body.flow_control().release_capacity(chunk.len());
            }
            Some((chunk.map_err(|error| error.to_string()), body))
        });
        Box::pin(chunks.eventsource())
    }
}

/// An event stream over `http` (HTTP/2 or HTTP/1.1, as the client speaks).
async fn reqwest_events(client: &Client, path: &str, version: reqwest::Version) -> Events {
    let response = client
        .request(reqwest::Method::GET, path)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), version);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let chunks = response
        .bytes_stream()
        .map(|chunk| chunk.map_err(|error| error.to_string()));
    Box::pin(chunks.eventsource())
}

/// The next event that is not a `ping`; `None` when the stream ended cleanly. Panics on a
/// stream cut or broken.
async fn next(events: &mut Events) -> Option<Event> {
    loop {
        let event = tokio::time::timeout(WAIT, events.next())
            .await
            .expect("an event in time")?
            .expect("a well-formed stream, not a cut one");
        if event.event != "ping" {
            return Some(event);
        }
    }
}

/// Reads `events` until it has had `count` messages; asserts every id is above the one
/// before. Returns the messages' ids.
async fn messages(mut events: Events, count: usize) -> (Vec<i64>, Events) {
    let mut last = 0;
    let mut ids = Vec::new();
    while ids.len() < count {
        let event = next(&mut events).await.expect("the stream goes on");
        let id: i64 = event.id.parse().expect("a stored event's id");
        assert!(id > last, "ids strictly increase: {id} came after {last}");
        last = id;
        if event.event == "message" {
            ids.push(id);
        }
    }
    (ids, events)
}

/// `posters` clients of `author` post `each` messages at once; the ids they got, in order.
async fn post_concurrently(author: &Client, posters: usize, each: usize) -> Vec<i64> {
    let tasks: Vec<_> = (0..posters)
        .map(|p| {
            let author = author.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for n in 0..each {
                    ids.push(author.say("general", &format!("{p}:{n}")).await["id"].as_i64().unwrap());
                }
                ids
            })
        })
        .collect();
    let mut ids = Vec::new();
    for task in tasks {
        ids.extend(task.await.unwrap());
    }
    ids.sort_unstable();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_and_twenty_streams_on_one_http2_connection_work_over_tls() {
    let pki = Pki::new();
    pki.install_leaf(&pki.issue("chat.test", 1));
    let db = TestDb::new();
    let server = start(&db, &pki, &[]).await;
    let https = pki.http();
    let ada = user(&server, &https, "ada").await;
    let bob = user(&server, &https, "bob").await;

    // The API over HTTP/2: sign in, post, read.
    let response = bob.sign_in("bob", PASSWORD).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    let first = ada.say("general", "hello over HTTP/2").await["id"].as_i64().unwrap();
    let me = ada.request(reqwest::Method::GET, "/api/me").send().await.unwrap();
    assert_eq!(me.version(), reqwest::Version::HTTP_2);
    assert_eq!(me.json::<Value>().await.unwrap()["username"], "ada");
    // And over HTTP/1.1 on TLS.
    let ada1 = Client {
        http: pki.http1(),
        ..ada.clone()
    };
    let history = ada1
        .request(reqwest::Method::GET, "/api/rooms/general/messages")
        .send()
        .await
        .unwrap();
    assert_eq!(history.version(), reqwest::Version::HTTP_11);
    let history: Value = history.json().await.unwrap();
    assert_eq!(history["messages"][0]["id"], first);
    assert_eq!(history["messages"][0]["content"], "hello over HTTP/2");

    // Twenty streams on one HTTP/2 connection: the user's and the room's, alternately.
    let h2 = H2::connect(&server, &pki).await;
    let token = ada.token.clone().unwrap();
    let mut streams = Vec::new();
    for n in 0..20 {
        let path = if n % 2 == 0 {
            "/api/events"
        } else {
            "/api/rooms/general/events"
        };
        streams.push(h2.events(&server, &token, path).await);
    }
    // Beside them, one stream over HTTP/1.1 on TLS and one on an HTTP/2 connection of reqwest's.
    let h1_stream = reqwest_events(&ada1, "/api/events", reqwest::Version::HTTP_11).await;
    let h2_stream = reqwest_events(&ada, "/api/rooms/general/events", reqwest::Version::HTTP_2).await;
    wait_for_metric(&https, &server, "chat_open_streams", 22.0).await;

    // Messages posted at once by four posters while every stream reads: each stream gets
    // every one, once, in id order.
    const POSTERS: usize = 4;
    const EACH: usize = 25;
    let readers: Vec<_> = streams
        .into_iter()
        .map(|events| tokio::spawn(messages(events, POSTERS * EACH)))
        .collect();
    let h1_reader = tokio::spawn(messages(h1_stream, POSTERS * EACH));
    let h2_reader = tokio::spawn(messages(h2_stream, POSTERS * EACH));
    let posted = post_concurrently(&bob, POSTERS, EACH).await;
    let mut open = Vec::new();
    for (n, reader) in readers.into_iter().enumerate() {
        let (ids, events) = reader.await.unwrap();
        assert_eq!(ids, posted, "HTTP/2 stream {n} has every message once, in order");
        open.push(events);
    }
    let (ids, mut h1_stream) = h1_reader.await.unwrap();
    assert_eq!(ids, posted, "the HTTP/1.1 stream too");
    let (ids, mut h2_stream) = h2_reader.await.unwrap();
    assert_eq!(ids, posted, "reqwest's HTTP/2 stream too");
    assert!(
        metric(&https, &server, "chat_tls_handshakes_total").await >= 3.0,
        "every connection was a TLS one"
    );

    // Signing out ends every stream of the session, on every connection, with `logout`.
    let out = ada
        .request(reqwest::Method::DELETE, "/api/sessions")
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 204);
    for (n, events) in open.iter_mut().enumerate() {
        let last = next(events).await.expect("a last event");
        assert_eq!(last.event, "logout", "HTTP/2 stream {n}");
        assert!(next(events).await.is_none(), "HTTP/2 stream {n} ends cleanly after it");
    }
    assert_eq!(next(&mut h1_stream).await.unwrap().event, "logout");
    assert!(next(&mut h1_stream).await.is_none());
    assert_eq!(next(&mut h2_stream).await.unwrap().event, "logout");
    assert!(next(&mut h2_stream).await.is_none());
    wait_for_metric(&https, &server, "chat_open_streams", 0.0).await;
    // The connection outlives its streams.
    let (status, _) = h2.get(&server, bob.token.as_deref().unwrap(), "/api/me", "*/*").await;
    assert_eq!(status, 200);
    // `:authority` is the host; a `Host` beside it must name the same one, whichever of the
    // two is ours.
    let ours = server.addr().to_string();
    for (authority, host, expected) in [
        (ours.as_str(), ours.as_str(), 200),
        (ours.as_str(), "evil.example", 400),
        ("evil.example", ours.as_str(), 400),
    ] {
        let request = http::Request::get(format!("https://{authority}/api/me"))
            .header("authorization", format!("Bearer {}", bob.token.as_deref().unwrap()))
            .header("host", host)
            .body(())
            .unwrap();
        let (status, _) = h2.send(request).await;
        assert_eq!(status, expected, ":authority {authority} with Host: {host}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_over_tls_end_cleanly_at_shutdown() {
    let pki = Pki::new();
    pki.install_leaf(&pki.issue("chat.test", 1));
    let db = TestDb::new();
    let server = start(&db, &pki, &[]).await;
    let https = pki.http();
    let ada = user(&server, &https, "ada").await;
    let ada1 = Client {
        http: pki.http1(),
        ..ada.clone()
    };
    let h2 = H2::connect(&server, &pki).await;
    let token = ada.token.clone().unwrap();
    let mut streams = Vec::new();
    for _ in 0..3 {
        streams.push(h2.events(&server, &token, "/api/events").await);
    }
    let mut h1_stream = reqwest_events(&ada1, "/api/events", reqwest::Version::HTTP_11).await;
    wait_for_metric(&https, &server, "chat_open_streams", 4.0).await;
    let said = ada.say("general", "before the end").await["id"].to_string();

    let status = server.terminate().await;
    assert!(status.success());
    // Each had what was said, and then its end: END_STREAM on HTTP/2, the last chunk and
    // the TLS close on HTTP/1.1; nothing cut.
    for events in &mut streams {
        let mut seen = Vec::new();
        while let Some(event) = next(events).await {
            seen.push(event.id);
        }
        assert!(seen.contains(&said), "{seen:?}");
    }
    let mut seen = Vec::new();
    while let Some(event) = next(&mut h1_stream).await {
        seen.push(event.id);
    }
    assert!(seen.contains(&said), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_certificate_reloads_on_sighup_while_streams_stay_open_and_a_bad_one_is_refused() {
    let pki = Pki::new();
    let old = pki.issue("first.chat.test", 1);
    pki.install_leaf(&old);
    let db = TestDb::new();
    let server = start(&db, &pki, &[]).await;
    let https = pki.http();
    let ada = user(&server, &https, "ada").await;
    let token = ada.token.clone().unwrap();

    // Streams open over the old certificate: on HTTP/2 and on HTTP/1.1.
    let h2 = H2::connect(&server, &pki).await;
    let mut streams = Vec::new();
    for _ in 0..3 {
        streams.push(h2.events(&server, &token, "/api/rooms/general/events").await);
    }
    let ada1 = Client {
        http: pki.http1(),
        ..ada.clone()
    };
    streams.push(reqwest_events(&ada1, "/api/rooms/general/events", reqwest::Version::HTTP_11).await);
    assert!(
        presented(&server, &pki).await == old.der,
        "the first certificate is presented"
    );
    let hup = || {
        // SAFETY: a signal to our own child process.
        assert_eq!(unsafe { libc::kill(server.pid(), libc::SIGHUP) }, 0);
    };

    // Files that cannot be used: the old certificate stays, and the server with it.
    let new = pki.issue("second.chat.test", 2);
    let mut failures = 0.0;
    for (what, cert, key) in [
        ("no certificate", "not a certificate\n", new.key.as_str()),
        ("a key of another certificate", new.cert.as_str(), old.key.as_str()),
        ("no key", new.cert.as_str(), ""),
    ] {
        pki.install(cert, key);
        hup();
        failures += 1.0;
        wait_for_metric(&https, &server, "chat_tls_reload_failures_total", failures).await;
        assert!(
            presented(&server, &pki).await == old.der,
            "after a reload with {what}, the first certificate is still presented"
        );
    }
    assert_eq!(metric(&https, &server, "chat_tls_reloads_total").await, 0.0);

    // A good one: new connections get it; the open streams go on over the old sessions.
    pki.install_leaf(&new);
    hup();
    wait_for_metric(&https, &server, "chat_tls_reloads_total", 1.0).await;
    assert!(
        presented(&server, &pki).await == new.der,
        "the new certificate is presented"
    );
    assert!(new.der != old.der);
    let fresh = pki.http();
    let me = fresh
        .get(server.url("/api/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let info = me.extensions().get::<reqwest::tls::TlsInfo>().expect("TLS info");
    assert!(info.peer_certificate() == Some(&new.der[..]), "reqwest sees it too");
    assert_eq!(me.status(), 200);

    wait_for_metric(&https, &server, "chat_open_streams", 4.0).await;
    let said = ada.say("general", "after the reload").await["id"].to_string();
    for (n, events) in streams.iter_mut().enumerate() {
        let message = loop {
            let event = next(events).await.expect("the stream is still open");
            if event.event == "message" {
                break event;
            }
        };
        assert_eq!(message.id, said, "stream {n} goes on after the reload");
    }
    // The old HTTP/2 connection still takes new requests.
    let (status, _) = h2.get(&server, &token, "/api/me", "*/*").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_stream_whose_client_takes_nothing_is_cut_off_after_the_write_timeout() {
    let pki = Pki::new();
    pki.install_leaf(&pki.issue("chat.test", 1));
    let db = TestDb::new();
    // A ping every second: the frame that finds no room comes soon after the window is full.
    let server = start(&db, &pki, &["--write-timeout", "1", "--keepalive", "1"]).await;
    let https = pki.http();
    let ada = user(&server, &https, "ada").await;
    let token = ada.token.clone().unwrap();

    // A client that gives a stream 1 KiB of room and never more, while its connection stays
    // up and reads (so no write on the socket ever waits: only the stream is stuck).
    let tls = tls_connect(&server, pki.tls_config(&[b"h2"])).await;
    let (send, connection) = h2::client::Builder::new()
        .initial_window_size(1024)
        .handshake::<_, Bytes>(tls)
        .await
        .unwrap();
    let connection = tokio::spawn(connection);
    let stuck = H2 { send };
    let (status, _untaken) = stuck
        .get(&server, &token, "/api/rooms/general/events", "text/event-stream")
        .await;
    assert_eq!(status, 200);
    // And one that takes everything, on a connection of its own.
    let h2 = H2::connect(&server, &pki).await;
    let mut taken = h2.events(&server, &token, "/api/rooms/general/events").await;
    wait_for_metric(&https, &server, "chat_open_streams", 2.0).await;

    // More than the room it has: the stuck stream waits, and after the write timeout its
    // connection is closed; the other stream goes on.
    let long = ada.say("general", &"x".repeat(3000)).await["id"].to_string();
    wait_for_metric(&https, &server, "chat_open_streams", 1.0).await;
    let ended = tokio::time::timeout(WAIT, connection)
        .await
        .expect("the stuck connection ends");
    assert!(ended.is_ok());
    assert!(metric(&https, &server, "chat_connections_timed_out_total").await >= 1.0);
    let later = ada.say("general", "after the cut").await["id"].to_string();
    let mut seen = Vec::new();
    while !seen.contains(&later) {
        let event = next(&mut taken).await.expect("the stream that takes goes on");
        seen.push(event.id);
    }
    assert!(seen.contains(&long), "{seen:?}");
}

/// The `Set-Cookie` of a response.
fn set_cookie(response: &reqwest::Response) -> String {
    response.headers()["set-cookie"].to_str().unwrap().to_owned()
}

/// Sends `request` on a new plain connection to `addr` and reads the answer until the server
/// closes the connection (which it must, within the wait).
async fn plain_exchange(addr: std::net::SocketAddr, request: &str) -> String {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(WAIT, socket.read(&mut buf))
            .await
            .expect("the server answers and closes in time")
            .unwrap_or(0);
        if n == 0 {
            return String::from_utf8_lossy(&answer).into_owned();
        }
        answer.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_the_cookie_is_secure_and_host_prefixed_hsts_is_sent_and_plain_http_is_redirected() {
    let pki = Pki::new();
    pki.install_leaf(&pki.issue("chat.test", 1));
    let db = TestDb::new();
    let plain_port = free_port();
    let plain = format!("127.0.0.1:{plain_port}");
    let server = start(
        &db,
        &pki,
        &["--hsts", "--redirect-http", &plain, "--silent-timeout", "1"],
    )
    .await;
    let https = pki.http();
    let port = server.addr().port();

    // Signing up and in sets the `__Host-` cookie, `Secure`, for the whole origin only.
    let signed_up = https
        .post(server.url("/api/users"))
        .json(&json!({ "username": "ada", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_up.status(), 201);
    assert_eq!(signed_up.headers()["strict-transport-security"], "max-age=31536000");
    for response in [
        signed_up,
        https
            .post(server.url("/api/sessions"))
            .json(&json!({ "username": "ada", "password": PASSWORD }))
            .send()
            .await
            .unwrap(),
    ] {
        let cookie = set_cookie(&response);
        assert!(cookie.starts_with("__Host-chat_session="), "{cookie}");
        for attribute in ["; Secure", "; Path=/;", "; HttpOnly", "; SameSite=Lax"] {
            assert!(cookie.contains(attribute), "{attribute} in {cookie}");
        }
        assert!(!cookie.to_ascii_lowercase().contains("domain="), "{cookie}");
    }
    // The sign-in form too.
    let form = pki
        .reqwest()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(server.url("/"))
        .form(&[("username", "ada"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 303);
    let cookie = set_cookie(&form);
    assert!(
        cookie.starts_with("__Host-chat_session=") && cookie.contains("; Secure"),
        "{cookie}"
    );
    let token = cookie
        .strip_prefix("__Host-chat_session=")
        .and_then(|rest| rest.split(';').next())
        .unwrap()
        .to_owned();

    // That cookie signs requests in; the plain name is not even read over TLS.
    let me = |cookie: String| https.get(server.url("/api/me")).header("cookie", cookie).send();
    assert_eq!(me(format!("__Host-chat_session={token}")).await.unwrap().status(), 200);
    assert_eq!(me(format!("chat_session={token}")).await.unwrap().status(), 401);
    // Signing out clears it, under its own name.
    let out = https
        .delete(server.url("/api/sessions"))
        .header("cookie", format!("__Host-chat_session={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 204);
    let cleared = set_cookie(&out);
    assert!(
        cleared.starts_with("__Host-chat_session=;") && cleared.contains("Max-Age=0") && cleared.contains("; Secure"),
        "{cleared}"
    );
    // Every answer over TLS carries HSTS, the page's as the API's.
    let page = https.get(server.url("/")).send().await.unwrap();
    assert_eq!(page.headers()["strict-transport-security"], "max-age=31536000");

    // The plain listener answers every request with a 308 to the same place over https,
    // reads no body (this one is never sent), sends no HSTS, and closes.
    let plain: std::net::SocketAddr = plain.parse().unwrap();
    for (request, location) in [
        (
            format!("GET /rooms/general?after=5 HTTP/1.1\r\nHost: 127.0.0.1:{plain_port}\r\n\r\n"),
            format!("https://127.0.0.1:{port}/rooms/general?after=5"),
        ),
        (
            format!(
                "POST /api/sessions HTTP/1.1\r\nHost: localhost:{plain_port}\r\ncontent-type: application/json\r\n\
                 content-length: 100000\r\n\r\n"
            ),
            format!("https://localhost:{port}/api/sessions"),
        ),
    ] {
        let answer = plain_exchange(plain, &request).await;
        assert!(answer.starts_with("HTTP/1.1 308 "), "{answer}");
        let lower = answer.to_ascii_lowercase();
        assert!(lower.contains(&format!("\r\nlocation: {location}\r\n")), "{answer}");
        assert!(!lower.contains("strict-transport-security"), "{answer}");
        assert!(!lower.contains("set-cookie"), "{answer}");
    }
    // Only for hosts of ours: no redirect sends a browser to someone else's name.
    let answer = plain_exchange(plain, "GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 421 "), "{answer}");
    // A client that never speaks is closed like on the main listener.
    let mut silent = TcpStream::connect(plain).await.unwrap();
    let mut byte = [0u8; 1];
    let closed = tokio::time::timeout(WAIT, silent.read(&mut byte)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "the silent connection is closed"
    );
}

/// Starts the server with `args`, which must stop it: what it said on standard error.
async fn refused_start(db: &TestDb, args: &[&str]) -> String {
    let refused = tokio::process::Command::new(env!("CARGO_BIN_EXE_chat-server"))
        .args(["--db", &db.path().display().to_string(), "--bind", "127.0.0.1:0"])
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(!refused.status.success(), "{args:?} started a server");
    assert!(refused.stdout.is_empty(), "{args:?} served");
    String::from_utf8_lossy(&refused.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tls_cookies_stay_plain_and_hsts_is_never_sent() {
    // No TLS: the cookie as it always was, and no HSTS.
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let response = server.anonymous().sign_up("ada", PASSWORD).await;
    assert_eq!(response.status(), 201);
    let cookie = set_cookie(&response);
    assert!(cookie.starts_with("chat_session="), "{cookie}");
    assert!(!cookie.contains("Secure"), "{cookie}");
    assert!(response.headers().get("strict-transport-security").is_none());
    drop(server);

    // TLS without `--hsts`: no HSTS either; with `--hsts-max-age`, that age.
    let pki = Pki::new();
    pki.install_leaf(&pki.issue("chat.test", 1));
    for (args, expected) in [(&[][..], None), (&["--hsts-max-age", "600"][..], Some("max-age=600"))] {
        let db = TestDb::new();
        let server = start(&db, &pki, args).await;
        let page = pki.http().get(server.url("/")).send().await.unwrap();
        let hsts = page
            .headers()
            .get("strict-transport-security")
            .map(|v| v.to_str().unwrap());
        assert_eq!(hsts, expected, "with {args:?}");
    }
}

#[tokio::test]
async fn tls_flags_that_cannot_work_stop_the_start_with_the_reason() {
    let db = TestDb::new();
    // HSTS and the redirect need TLS; a certificate needs its key.
    for (args, says) in [
        (&["--hsts"][..], "--tls-cert"),
        (&["--redirect-http", "127.0.0.1:0"][..], "--tls-cert"),
        (&["--tls-cert", "cert.pem"][..], "--tls-key"),
    ] {
        let said = refused_start(&db, args).await;
        assert!(said.contains(says), "{args:?}: {said}");
    }
    // Files that are missing, or hold no certificate, or the key of another.
    let pki = Pki::new();
    let one = pki.issue("one.chat.test", 1);
    let other = pki.issue("other.chat.test", 2);
    let (cert, key) = (
        pki.cert_path().display().to_string(),
        pki.key_path().display().to_string(),
    );
    let args = ["--tls-cert", cert.as_str(), "--tls-key", key.as_str()];
    let said = refused_start(&db, &args).await;
    assert!(said.contains("cannot read the certificate"), "{said}");
    for (cert_text, key_text, says) in [
        ("not a certificate", one.key.as_str(), "holds no certificate"),
        (one.cert.as_str(), "", "holds no private key"),
        (
            one.cert.as_str(),
            other.key.as_str(),
            "does not belong to the certificate",
        ),
    ] {
        pki.install(cert_text, key_text);
        let said = refused_start(&db, &args).await;
        assert!(said.contains(says), "{says}: {said}");
    }
}

/// Opens a new tab of `browser` on `url` and waits until its page is connected.
async fn open_tab(browser: &Browser, url: &str, n: usize) -> fantoccini::wd::WindowHandle {
    let tab = browser.new_window(true).await.unwrap().handle;
    browser.switch_to_window(tab.clone()).await.unwrap();
    browser.goto(url).await.unwrap();
    wait_for(
        browser,
        &format!("tab {n} is connected"),
        "document.getElementById('connection')?.dataset.state === 'connected'",
    )
    .await;
    tab
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_tabs_on_https_share_one_stream_and_all_show_messages_live() {
    let pki = Pki::new();
    pki.install_leaf(&pki.issue("chat.test", 1));
    let db = TestDb::new();
    let server = start(&db, &pki, &[]).await;
    let https = pki.http();
    let bob = user(&server, &https, "bob").await;
    let driver = Driver::start().await;
    let browser = driver.ignoring_certificate_errors("ada").await;
    sign_up(&browser, &server.url("/"), "ada").await;
    // https is a secure context (Web Locks, BroadcastChannel), and the page came over HTTP/2.
    let secure: bool = eval(&browser, "return window.isSecureContext;").await;
    assert!(secure);
    let protocol: String = eval(
        &browser,
        "return performance.getEntriesByType('navigation')[0].nextHopProtocol;",
    )
    .await;
    assert_eq!(protocol, "h2");

    let mut tabs = vec![browser.window().await.unwrap()];
    for n in 1..20 {
        tabs.push(open_tab(&browser, &server.url("/rooms/general"), n).await);
    }
    let mut roles = Vec::new();
    for tab in &tabs {
        browser.switch_to_window(tab.clone()).await.unwrap();
        let role: String = eval(&browser, "return document.documentElement.dataset.streamRole || '';").await;
        roles.push(role);
    }
    assert_eq!(roles.iter().filter(|r| *r == "leader").count(), 1, "{roles:?}");
    assert_eq!(roles.iter().filter(|r| *r == "follower").count(), 19, "{roles:?}");
    wait_for_metric(&https, &server, "chat_open_streams", 1.0).await;

    // Messages said elsewhere show in every tab, live, once each and in order.
    let mut said = Vec::new();
    for n in 0..5 {
        let text = format!("over https {n}");
        bob.say("general", &text).await;
        said.push(text);
    }
    for (n, tab) in tabs.iter().enumerate() {
        browser.switch_to_window(tab.clone()).await.unwrap();
        wait_for(
            &browser,
            &format!("tab {n} shows the last message"),
            "[...document.querySelectorAll('#messages .message .text')].some(e => e.textContent === 'over https 4')",
        )
        .await;
        assert_eq!(shown(&browser).await, said, "tab {n}");
    }
    finish(browser).await;
}
