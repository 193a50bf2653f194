//! Hostile input against the real server, written as tables of cases and run by one runner.
//!
//! A case is one request and what a careful server answers: a JSON `{"error": "..."}` with a
//! fitting 4xx, or a message stored exactly as sent. After every case `/healthz` must still
//! answer, and no case may get a 5xx. At the end of each table every stored message is checked
//! again: in the history, on a JSON and an HTML stream opened before the first case (one event
//! per message, its own id, the exact text, no forged field or event) and on the room page and
//! its "load older" pages (escaped, never raw markup). Then the process must still be running.
//!
//! The runner reports every failing case of a table at once, so one of them hides no other.
//! `HOSTILE_TRACE=1` prints every case's answer and how long it took.

use std::collections::{BTreeMap, HashSet};
use std::convert::Infallible;
use std::time::Duration;

use crate::common::{Client, Server, Stream200, TestDb, WAIT, rendered_text, rendering_of};
use bytes::Bytes;
use eventsource_stream::{Event as SseEvent, Eventsource};
use futures_util::StreamExt;
use reqwest::Method;
use reqwest::header::HeaderValue;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

const MSG: &str = "/api/rooms/general/messages";
const EVENTS: &str = "/api/rooms/general/events";
const FORM_MSG: &str = "/rooms/general/messages";
/// The password the harness signs everyone in with.
const PASSWORD: &str = "correct horse battery";
const EVIL: &str = "https://evil.example";
const JSON: &str = "application/json";
const FORM: &str = "application/x-www-form-urlencoded";
/// The server's default `--max-body-bytes`.
const BODY_LIMIT: usize = 65_536;
/// How long a stream case waits for its first event.
const STREAM_WAIT: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------------------------
// The shape of a case.

/// Credentials the runner adds. Anything else (two headers, a cookie and a bearer, a forged
/// token) a case writes in its own headers, where `{ada}`, `{bob}`, `{spare}`, `{revoked}`,
/// `{ada_flipped}`, `{host}` and `{origin}` are filled in.
#[derive(Clone, Copy)]
enum Auth {
    /// Only the case's own headers.
    None,
    /// `Authorization: Bearer` with ada's token: the default.
    Ada,
    /// ada's session cookie and no `Authorization`.
    AdaCookie,
}

/// What a careful server answers.
enum Expect {
    /// This status with a JSON body `{"error": "<non-empty string>"}`.
    Error(u16),
    /// `201` with the event: a message in `general` by ada with exactly this text. Checked again
    /// at the end in the history, on both streams and on the pages.
    Stored(String),
    /// A form post's `204`; the newest message is ada's, with exactly this text.
    FormStored(String),
    /// This status with a JSON body that passes the check.
    Json(u16, fn(&Value) -> Result<(), String>),
    /// Only this status (a redirect, a sign-out, a static file).
    Status(u16),
    /// An HTML page with this status that contains none of these strings.
    Page(u16, &'static [&'static str]),
    /// `200 text/event-stream` whose first event is `event: reset`, its `id:` the newest event.
    Reset,
    /// `200 text/event-stream` whose first event is a replayed one, not a reset.
    Resumes,
    /// A limit of the HTTP layer: one of these statuses (no JSON needed: the request never
    /// reached the app), or the connection closed without an answer.
    Limit(&'static [u16]),
    /// `Error`, and `Connection: close`: the server answered before reading the whole body, so
    /// the connection cannot carry another request, and the client must be told.
    ErrorAndClose(u16),
}

struct Case {
    name: String,
    method: Method,
    /// Sent exactly as written: a path reqwest would normalise needs `raw`.
    path: String,
    auth: Auth,
    headers: Vec<(&'static str, Vec<u8>)>,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    /// Sent with `Transfer-Encoding: chunked` instead of a `Content-Length`.
    chunked: bool,
    /// Written by hand on a TCP socket instead of through reqwest.
    raw: bool,
    /// The whole request, byte for byte (placeholders filled in), on a TCP socket.
    wire: Option<Vec<u8>>,
    expect: Option<Expect>,
}

fn case(name: impl Into<String>, method: Method, path: impl Into<String>) -> Case {
    Case {
        name: name.into(),
        method,
        path: path.into(),
        auth: Auth::Ada,
        headers: Vec::new(),
        content_type: None,
        body: Vec::new(),
        chunked: false,
        raw: false,
        wire: None,
        expect: None,
    }
}

fn get(name: impl Into<String>, path: impl Into<String>) -> Case {
    case(name, Method::GET, path)
}

fn post(name: impl Into<String>, path: impl Into<String>) -> Case {
    case(name, Method::POST, path)
}

fn put(name: impl Into<String>, path: impl Into<String>) -> Case {
    case(name, Method::PUT, path)
}

fn delete(name: impl Into<String>, path: impl Into<String>) -> Case {
    case(name, Method::DELETE, path)
}

/// A request written out in full: for what no HTTP client will send.
fn wire(name: impl Into<String>, request: impl Into<Vec<u8>>) -> Case {
    let mut case = case(name, Method::GET, "(on the wire)");
    case.wire = Some(request.into());
    case.auth = Auth::None;
    case
}

/// `POST /api/rooms/general/messages` with this JSON text.
fn post_msg(name: impl Into<String>, body: impl Into<Vec<u8>>) -> Case {
    post(name, MSG).json(body)
}

/// ada posts `text` (encoded as JSON) and it must be stored as it is.
fn say(name: impl Into<String>, text: impl Into<String>) -> Case {
    let text = text.into();
    post_msg(name, json!({ "content": text }).to_string()).stored(text)
}

/// ada posts `text` and it must be refused with `422`.
fn refuse(name: impl Into<String>, text: &str) -> Case {
    post_msg(name, json!({ "content": text }).to_string()).error(422)
}

/// Signs in anonymously as `username` with `password`.
fn sign_in(name: impl Into<String>, username: &str, password: &str) -> Case {
    post(name, "/api/sessions")
        .json(json!({ "username": username, "password": password }).to_string())
        .auth(Auth::None)
}

/// Signs up anonymously as `username` with `password` (the harness's servers are open).
fn sign_up(name: impl Into<String>, username: &str, password: &str) -> Case {
    post(name, "/api/users")
        .json(json!({ "username": username, "password": password }).to_string())
        .auth(Auth::None)
}

impl Case {
    fn json(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.content_type = Some(JSON);
        self.body = body.into();
        self
    }

    fn form(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.content_type = Some(FORM);
        self.body = body.into();
        self
    }

    /// A body with this `Content-Type`, or none.
    fn body(mut self, content_type: Option<&'static str>, body: impl Into<Vec<u8>>) -> Self {
        self.content_type = content_type;
        self.body = body.into();
        self
    }

    fn header(mut self, name: &'static str, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn method(mut self, method: &str) -> Self {
        self.method = Method::from_bytes(method.as_bytes()).expect("a method");
        self
    }

    fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    fn raw(mut self) -> Self {
        self.raw = true;
        self
    }

    fn chunked(mut self) -> Self {
        self.chunked = true;
        self
    }

    fn expect(mut self, expect: Expect) -> Self {
        self.expect = Some(expect);
        self
    }

    fn error(self, status: u16) -> Self {
        self.expect(Expect::Error(status))
    }

    fn stored(self, text: impl Into<String>) -> Self {
        self.expect(Expect::Stored(text.into()))
    }
}

// ---------------------------------------------------------------------------------------------
// The runner.

/// What came back.
enum Outcome {
    Answer(Answer),
    /// The connection ended without a response.
    Closed(String),
}

struct Answer {
    status: u16,
    content_type: String,
    /// The response said `Connection: close`.
    closes: bool,
    /// All of the body its `Content-Length` announced has arrived.
    complete: bool,
    body: Vec<u8>,
}

impl Answer {
    fn text(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let mut short: String = text.chars().take(240).collect();
        if short.len() < text.len() {
            short.push('…');
        }
        short
    }

    fn summary(&self) -> String {
        format!("{} {} {}", self.status, self.content_type, self.text())
    }
}

/// One server, ada and the credentials the cases refer to, and a JSON and an HTML stream of
/// `general` opened before the first case.
struct Fixture {
    _db: TestDb,
    server: Server,
    /// Follows no redirects (a `303` is an answer) and keeps no connection: a case may leave
    /// one the server is about to close, and the next case must not pay for it.
    http: reqwest::Client,
    ada: Client,
    placeholders: Vec<(&'static str, String)>,
    host: String,
    json_stream: Stream200,
    html_stream: Stream200,
    /// `(id, text)` of every message a `Stored` or `FormStored` case stored.
    stored: Vec<(i64, String)>,
    /// The highest event id any answer carried.
    max_id: i64,
    names: HashSet<String>,
    cases: usize,
    failures: Vec<String>,
    started: std::time::Instant,
    /// `HOSTILE_TRACE=1` prints every case's answer and how long it took.
    trace: bool,
}

impl Fixture {
    async fn new() -> Self {
        Self::with_args(&[]).await
    }

    async fn with_args(args: &[&str]) -> Self {
        let started = std::time::Instant::now();
        let db = TestDb::new();
        let server = Server::start(&db, args).await;
        let ada = server.user("ada").await;
        let bob = server.user("bob").await;
        let token_of = |response: Value| response["token"].as_str().expect("token").to_owned();
        let spare = token_of(ada.sign_in("ada", PASSWORD).await.json().await.unwrap());
        let revoked = token_of(ada.sign_in("ada", PASSWORD).await.json().await.unwrap());
        let out = ada
            .http
            .delete(ada.url("/api/sessions"))
            .bearer_auth(&revoked)
            .send()
            .await
            .unwrap();
        assert_eq!(out.status(), 204, "signing the revoked token out");
        let token = ada.token.clone().expect("ada's token");
        let flipped = {
            let (head, last) = token.split_at(token.len() - 1);
            format!("{head}{}", if last == "A" { "B" } else { "A" })
        };
        let host = server.base.trim_start_matches("http://").to_owned();
        let placeholders = vec![
            ("{ada_flipped}", flipped),
            ("{ada}", token),
            ("{bob}", bob.token.clone().expect("bob's token")),
            ("{spare}", spare),
            ("{revoked}", revoked),
            ("{host}", host.clone()),
            ("{origin}", server.base.clone()),
        ];
        let json_stream = ada.open_stream("general", "", None).await;
        let html_stream = ada.open_stream("general", "?format=html", None).await;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        Self {
            _db: db,
            server,
            http,
            ada,
            placeholders,
            host,
            json_stream,
            html_stream,
            stored: Vec::new(),
            max_id: 0,
            names: HashSet::new(),
            cases: 0,
            failures: Vec::new(),
            started,
            trace: std::env::var_os("HOSTILE_TRACE").is_some(),
        }
    }

    fn fill(&self, bytes: &[u8]) -> Vec<u8> {
        let mut out = bytes.to_vec();
        for (key, value) in &self.placeholders {
            out = replace(&out, key.as_bytes(), value.as_bytes());
        }
        out
    }

    fn auth_headers(&self, auth: Auth) -> Vec<(&'static str, Vec<u8>)> {
        match auth {
            Auth::None => vec![],
            Auth::Ada => vec![("authorization", self.fill(b"Bearer {ada}"))],
            Auth::AdaCookie => vec![("cookie", self.fill(b"chat_session={ada}"))],
        }
    }

    /// Runs the cases in order; after each one the server must still be healthy.
    async fn run(&mut self, cases: Vec<Case>) {
        for case in cases {
            assert!(self.names.insert(case.name.clone()), "two cases named {:?}", case.name);
            let sent = std::time::Instant::now();
            let outcome = self.send(&case).await;
            if self.trace {
                let answer = match &outcome {
                    Outcome::Answer(answer) => answer.summary().chars().take(100).collect(),
                    Outcome::Closed(why) => format!("closed: {why}"),
                };
                eprintln!("{:>10.2?} {:?}: {answer}", sent.elapsed(), case.name);
            }
            if let Err(why) = self.check(&case, outcome).await {
                let target = match case.wire {
                    Some(_) => "(on the wire)".to_owned(),
                    None => format!("{} {}", case.method, shorten(&case.path)),
                };
                self.failures.push(format!("{} [{target}]: {why}", case.name));
            }
            self.cases += 1;
            self.assert_healthy(&case.name).await;
        }
    }

    async fn assert_healthy(&mut self, after: &str) {
        let health = tokio::time::timeout(WAIT, self.http.get(self.server.url("/healthz")).send()).await;
        let health = match health {
            Ok(Ok(response)) if response.status() == 200 => None,
            Ok(Ok(response)) => Some(format!("{}", response.status())),
            Ok(Err(error)) => Some(format!("{error:?}")),
            Err(_) => Some("no answer in time".to_owned()),
        };
        if health.is_some() || !self.server.is_running() {
            panic!(
                "the server is down after case {after:?} ({health:?}); failures so far:\n{}",
                self.failures.join("\n")
            );
        }
    }

    async fn send(&self, case: &Case) -> Outcome {
        let streaming = matches!(case.expect, Some(Expect::Reset | Expect::Resumes));
        if let Some(request) = &case.wire {
            return self.send_raw(self.fill(request), streaming).await;
        }
        if case.raw {
            return self.send_raw(self.raw_request(case), streaming).await;
        }
        let url = reqwest::Url::parse(&self.server.url(&case.path)).unwrap();
        let sent = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        };
        assert_eq!(
            sent, case.path,
            "{}: reqwest would send another path; mark it raw",
            case.name
        );
        let mut request = self.http.request(case.method.clone(), url);
        for (name, value) in self.auth_headers(case.auth).into_iter().chain(case.headers.clone()) {
            let value = HeaderValue::from_bytes(&self.fill(&value))
                .unwrap_or_else(|_| panic!("{}: reqwest cannot send this {name}; mark it raw", case.name));
            request = request.header(name, value);
        }
        if let Some(content_type) = case.content_type {
            request = request.header("content-type", content_type);
        }
        if case.chunked {
            let chunks: Vec<Result<Bytes, Infallible>> =
                case.body.chunks(8192).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
            request = request.body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)));
        } else if !case.body.is_empty() {
            request = request.body(case.body.clone());
        }
        let mut response = match tokio::time::timeout(WAIT, request.send()).await {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => return Outcome::Closed(format!("{error:?}")),
            Err(_) => return Outcome::Closed("no answer in time".into()),
        };
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        let closes = response
            .headers()
            .get("connection")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
        let body = if streaming && content_type == "text/event-stream" {
            let deadline = Instant::now() + STREAM_WAIT;
            let mut body = Vec::new();
            while !has_event(&body).await {
                match tokio::time::timeout_at(deadline, response.chunk()).await {
                    Ok(Ok(Some(chunk))) => body.extend_from_slice(&chunk),
                    _ => break,
                }
            }
            body
        } else {
            match tokio::time::timeout(WAIT, response.bytes()).await {
                Ok(Ok(bytes)) => bytes.to_vec(),
                Ok(Err(error)) => return Outcome::Closed(format!("the body broke off: {error:?}")),
                Err(_) => return Outcome::Closed("the body did not end in time".into()),
            }
        };
        Outcome::Answer(Answer {
            status,
            content_type,
            closes,
            complete: true,
            body,
        })
    }

    /// The case as HTTP/1.1 bytes, its path exactly as written.
    fn raw_request(&self, case: &Case) -> Vec<u8> {
        let mut out = format!(
            "{} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            case.method, case.path, self.host
        )
        .into_bytes();
        let mut headers = self.auth_headers(case.auth);
        headers.extend(case.headers.iter().map(|(name, value)| (*name, self.fill(value))));
        if let Some(content_type) = case.content_type {
            headers.push(("content-type", content_type.as_bytes().to_vec()));
        }
        let framed = headers.iter().any(|(name, _)| {
            name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("transfer-encoding")
        });
        let mut body = case.body.clone();
        if case.chunked {
            headers.push(("transfer-encoding", b"chunked".to_vec()));
            body = case
                .body
                .chunks(8192)
                .flat_map(|chunk| [format!("{:x}\r\n", chunk.len()).as_bytes(), chunk, b"\r\n"].concat())
                .chain(b"0\r\n\r\n".iter().copied())
                .collect();
        } else if !framed && (!body.is_empty() || matches!(case.method, Method::POST | Method::PUT)) {
            headers.push(("content-length", body.len().to_string().into_bytes()));
        }
        for (name, value) in headers {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(&value);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&body);
        out
    }

    async fn send_raw(&self, request: Vec<u8>, streaming: bool) -> Outcome {
        let mut socket = TcpStream::connect(&self.host).await.expect("connect");
        // The server may answer (and close) before it has read everything: keep reading.
        let _ = tokio::time::timeout(WAIT, socket.write_all(&request)).await;
        let deadline = Instant::now() + if streaming { STREAM_WAIT } else { WAIT };
        let mut received = Vec::new();
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            match tokio::time::timeout_at(deadline, socket.read(&mut buffer)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                Ok(Ok(n)) => received.extend_from_slice(&buffer[..n]),
            }
            // A connection kept open ends nothing: stop at a whole answer.
            let Some(answer) = parse_response(&received) else {
                continue;
            };
            if answer.complete || streaming && (answer.status != 200 || has_event(&answer.body).await) {
                break;
            }
        }
        match parse_response(&received) {
            Some(answer) => Outcome::Answer(answer),
            None if received.is_empty() => Outcome::Closed("closed without a byte".into()),
            None => Outcome::Closed(format!("no HTTP answer: {:?}", String::from_utf8_lossy(&received))),
        }
    }

    async fn check(&mut self, case: &Case, outcome: Outcome) -> Result<(), String> {
        let expect = case
            .expect
            .as_ref()
            .unwrap_or_else(|| panic!("{}: no expectation", case.name));
        let answer = match outcome {
            Outcome::Answer(answer) => answer,
            Outcome::Closed(_) if matches!(expect, Expect::Limit(_)) => return Ok(()),
            Outcome::Closed(why) => return Err(format!("no answer: {why}")),
        };
        if answer.status >= 500 {
            return Err(format!("a server error: {}", answer.summary()));
        }
        if let Ok(value) = serde_json::from_slice::<Value>(&answer.body)
            && let Some(id) = value["id"].as_i64()
        {
            self.max_id = self.max_id.max(id);
        }
        match expect {
            Expect::Error(status) => expect_error(&answer, *status),
            Expect::Stored(text) => {
                let event = expect_json(&answer, 201)?;
                let id = ada_said(&event, text)?;
                self.stored.push((id, text.clone()));
                Ok(())
            }
            Expect::FormStored(text) => {
                expect_status(&answer, 204)?;
                let newest = self.ada.history("general", "?limit=1").await;
                let event = newest.last().ok_or("nothing stored")?;
                let id = ada_said(event, text)?;
                self.max_id = self.max_id.max(id);
                self.stored.push((id, text.clone()));
                Ok(())
            }
            Expect::Json(status, check) => check(&expect_json(&answer, *status)?),
            Expect::Status(status) => expect_status(&answer, *status),
            Expect::Page(status, forbidden) => {
                expect_status(&answer, *status)?;
                if !answer.content_type.starts_with("text/html") {
                    return Err(format!("not an HTML page: {}", answer.summary()));
                }
                let page = String::from_utf8_lossy(&answer.body);
                match forbidden.iter().find(|raw| page.contains(*raw)) {
                    Some(raw) => Err(format!("the page holds raw {raw:?}")),
                    None => Ok(()),
                }
            }
            Expect::Reset => {
                let first = first_event(&answer).await?;
                let data: Value = serde_json::from_str(&first.data).map_err(|e| format!("{e}: {first:?}"))?;
                let id: i64 = first
                    .id
                    .parse()
                    .map_err(|_| format!("the reset has no id: {first:?}"))?;
                if first.event != "reset" {
                    Err(format!("the first event is not a reset: {first:?}"))
                } else if data["newest_id"] != id || id < self.max_id {
                    Err(format!(
                        "the reset's id is not the newest event ({}): {first:?}",
                        self.max_id
                    ))
                } else if data["reason"].as_str().is_none_or(str::is_empty) {
                    Err(format!("the reset gives no reason: {first:?}"))
                } else {
                    Ok(())
                }
            }
            Expect::Resumes => {
                let first = first_event(&answer).await?;
                match first.event.as_str() {
                    "message" | "status" if first.id.parse::<i64>().is_ok() => Ok(()),
                    _ => Err(format!("the first event is not a replayed one: {first:?}")),
                }
            }
            Expect::Limit(statuses) if statuses.contains(&answer.status) => Ok(()),
            Expect::Limit(statuses) => Err(format!("expected one of {statuses:?}: {}", answer.summary())),
            Expect::ErrorAndClose(status) => {
                expect_error(&answer, *status)?;
                match answer.closes {
                    true => Ok(()),
                    false => Err(format!("no `Connection: close` on {}", answer.summary())),
                }
            }
        }
    }

    /// Every message of `general`, oldest first, from the history API.
    async fn history(&self) -> BTreeMap<i64, String> {
        let mut all = BTreeMap::new();
        let mut after = 0;
        loop {
            let page = self.ada.history("general", &format!("?after={after}&limit=200")).await;
            let Some(last) = page.last() else { return all };
            after = last["id"].as_i64().unwrap();
            for message in &page {
                let content = message["content"].as_str().expect("content").to_owned();
                all.insert(message["id"].as_i64().unwrap(), content);
            }
        }
    }

    /// Checks every stored text everywhere it shows, the server's health, and reports.
    async fn finish(mut self) {
        let history = self.history().await;
        for (id, text) in &self.stored {
            if history.get(id) != Some(text) {
                self.failures
                    .push(format!("message {id}: the history holds {:?}", history.get(id)));
            }
        }
        if let Some(&newest) = history.keys().last() {
            let events = self.json_stream.until_id(newest, false).await;
            self.failures
                .extend(check_stream("JSON stream", &events, &history, false));
            let events = self.html_stream.until_id(newest, false).await;
            self.failures
                .extend(check_stream("HTML stream", &events, &history, true));
            let failures = self.check_pages(&history).await;
            self.failures.extend(failures);
        }
        self.assert_healthy("the final checks").await;
        eprintln!(
            "{} cases, {} messages checked on both streams and the pages, in {:.2?}",
            self.cases,
            history.len(),
            self.started.elapsed()
        );
        assert!(
            self.failures.is_empty(),
            "{} of {} cases failed:\n{}",
            self.failures.len(),
            self.cases,
            self.failures.join("\n")
        );
    }

    /// The room page and every "load older" page: each message once, its text escaped.
    async fn check_pages(&self, history: &BTreeMap<i64, String>) -> Vec<String> {
        let mut failures = Vec::new();
        let mut seen = Vec::new();
        let mut path = "/rooms/general".to_owned();
        loop {
            let response = self.ada.request(Method::GET, &path).send().await.unwrap();
            assert_eq!(response.status(), 200, "{path}");
            let page = response.text().await.unwrap();
            for (id, text) in page_messages(&page) {
                match (text, history.get(&id)) {
                    (Ok(text), Some(stored)) if text == rendering_of(stored) => {}
                    (Ok(text), stored) => failures.push(format!("{path}: msg-{id} shows {text:?}, stored {stored:?}")),
                    (Err(raw), _) => failures.push(format!("{path}: msg-{id} holds raw markup: {raw:?}")),
                }
                seen.push(id);
            }
            let Some((_, rest)) = page.split_once("/rooms/general/older?before=") else {
                break;
            };
            let before: String = rest.chars().take_while(char::is_ascii_digit).collect();
            path = format!("/rooms/general/older?before={before}");
        }
        seen.sort_unstable();
        if seen != history.keys().copied().collect::<Vec<_>>() {
            failures.push(format!(
                "the pages show messages {seen:?}, the history holds {:?}",
                history.keys()
            ));
        }
        failures
    }
}

/// The status and the JSON error shape every API error has.
fn expect_error(answer: &Answer, status: u16) -> Result<(), String> {
    expect_status(answer, status)?;
    let value = expect_json(answer, status)?;
    let object = value.as_object().ok_or_else(|| format!("not an object: {value}"))?;
    match object.get("error") {
        Some(Value::String(text)) if speaks_of_the_api(text) && object.len() == 1 => Ok(()),
        Some(Value::String(text)) if !text.is_empty() && object.len() == 1 => {
            Err(format!("the error names the server's insides: {text}"))
        }
        _ => Err(format!("not {{\"error\": \"...\"}}: {value}")),
    }
}

/// Whether an error's text is in the API's terms: not empty, and naming none of the server's
/// own types, modules or parsers.
fn speaks_of_the_api(text: &str) -> bool {
    const INSIDES: &[&str] = &[
        "struct ",
        "enum ",
        "variant",
        "::",
        "u8",
        "u16",
        "u32",
        "u64",
        "usize",
        "i32",
        "i64",
        "f64",
        "serde",
        "sqlx",
        "poem",
        "hyper",
        "Error(",
        "invalid type",
        "invalid length",
        "sequence",
    ];
    !text.is_empty() && !INSIDES.iter().any(|inside| text.contains(inside))
}

fn expect_status(answer: &Answer, status: u16) -> Result<(), String> {
    if answer.status == status {
        Ok(())
    } else {
        Err(format!("expected {status}, got {}", answer.summary()))
    }
}

fn expect_json(answer: &Answer, status: u16) -> Result<Value, String> {
    expect_status(answer, status)?;
    if !answer.content_type.starts_with(JSON) {
        return Err(format!("not JSON: {}", answer.summary()));
    }
    serde_json::from_slice(&answer.body).map_err(|e| format!("{e}: {}", answer.summary()))
}

/// `event` is a message ada said in `general` with exactly `text`; returns its id.
fn ada_said(event: &Value, text: &str) -> Result<i64, String> {
    let id = event["id"].as_i64().ok_or_else(|| format!("no id: {event}"))?;
    let fits = event["type"] == "message"
        && event["room"] == "general"
        && event["username"] == "ada"
        && event["content"] == text
        && event["created_at"]
            .as_str()
            .is_some_and(|t| t.starts_with("20") && !t.starts_with("2000"));
    if fits {
        Ok(id)
    } else {
        Err(format!("stored as {event}, sent {text:?}"))
    }
}

async fn first_event(answer: &Answer) -> Result<SseEvent, String> {
    expect_status(answer, 200)?;
    if answer.content_type != "text/event-stream" {
        return Err(format!("not a stream: {}", answer.summary()));
    }
    let mut events = parse_sse(&answer.body).await.into_iter();
    match events.next() {
        Some(ping) if ping.event == "ping" && ping.id.is_empty() && ping.retry.is_some() => {}
        other => {
            return Err(format!(
                "the stream does not open with a ping carrying retry: {other:?}"
            ));
        }
    }
    events
        .next()
        .ok_or_else(|| format!("no event within {STREAM_WAIT:?}: {}", answer.summary()))
}

/// Whether `bytes` hold an event beyond the stream's opening `ping`.
async fn has_event(bytes: &[u8]) -> bool {
    parse_sse(bytes).await.iter().any(|event| event.event != "ping")
}

/// Events in `bytes`, read by an independent SSE parser.
async fn parse_sse(bytes: &[u8]) -> Vec<SseEvent> {
    futures_util::stream::iter([Ok::<_, Infallible>(Bytes::copy_from_slice(bytes))])
        .eventsource()
        .filter_map(|event| async move { event.ok() })
        .collect()
        .await
}

/// Every event of a stream is a real one: ids rising, only `message` and `status` (and `ping`s), each
/// message exactly as stored, and every stored message once. Only ada opens streams and sets
/// a status, so every status event is hers: a body naming bob changed nothing of his.
fn check_stream(what: &str, events: &[SseEvent], history: &BTreeMap<i64, String>, html: bool) -> Vec<String> {
    let mut failures = Vec::new();
    let mut last = 0;
    let mut messages = Vec::new();
    for event in events {
        if event.event == "ping" && event.id.is_empty() && event.data == "{}" {
            continue;
        }
        let Ok(id) = event.id.parse::<i64>() else {
            failures.push(format!("{what}: an event without a numeric id: {event:?}"));
            continue;
        };
        if id <= last {
            failures.push(format!("{what}: id {id} after {last}: {event:?}"));
        }
        last = id;
        match event.event.as_str() {
            "message" => {
                messages.push(id);
                let shown = if html {
                    html_message(&event.data, id)
                } else {
                    serde_json::from_str::<Value>(&event.data)
                        .ok()
                        .filter(|data| data["id"] == id && data["type"] == "message")
                        .and_then(|data| data["content"].as_str().map(str::to_owned))
                        .ok_or_else(|| event.data.clone())
                };
                match (shown, history.get(&id)) {
                    (Ok(text), Some(stored))
                        if (!html && text == *stored) || (html && text == rendering_of(stored)) => {}
                    (Ok(text), stored) => failures.push(format!("{what}: {id} shows {text:?}, stored {stored:?}")),
                    (Err(data), _) => failures.push(format!("{what}: {id} is malformed or holds markup: {data:?}")),
                }
            }
            "status" => {
                let fits = if html {
                    event.data.starts_with("<li id=\"member-ada\" ") && !event.data.contains('\n')
                } else {
                    serde_json::from_str::<Value>(&event.data)
                        .is_ok_and(|data| data["id"] == id && data["type"] == "status" && data["username"] == "ada")
                };
                if !fits {
                    failures.push(format!("{what}: a malformed status event: {event:?}"));
                }
            }
            _ => failures.push(format!("{what}: an unexpected event: {event:?}")),
        }
    }
    if messages != history.keys().copied().collect::<Vec<_>>() {
        failures.push(format!(
            "{what}: message events {messages:?}, stored {:?}",
            history.keys()
        ));
    }
    failures
}

/// The rendered text of one message's HTML partial; `Err` if it is not a single well-formed
/// `<li>` on one line.
fn html_message(data: &str, id: i64) -> Result<String, String> {
    let well_formed = data.starts_with(&format!("<li id=\"msg-{id}\" ")) && data.ends_with("</div></li>");
    match rendered_text(data, id) {
        Some(text) if well_formed && !data.contains(['\r', '\n']) => Ok(text.to_owned()),
        _ => Err(data.to_owned()),
    }
}

/// `(id, rendered text)` of every message on a page, in order.
fn page_messages(page: &str) -> Vec<(i64, Result<String, String>)> {
    page.split("<li id=\"msg-")
        .skip(1)
        .map(|item| {
            let id = item.split('"').next().and_then(|id| id.parse().ok()).unwrap_or(-1);
            let text = rendered_text(item, id)
                .map(str::to_owned)
                .ok_or_else(|| item.chars().take(200).collect::<String>());
            (id, text)
        })
        .collect()
}

/// A response read off a socket: its status line, two headers, and the body (de-chunked; a
/// chunk still arriving is left out).
fn parse_response(bytes: &[u8]) -> Option<Answer> {
    let end = find(bytes, b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&bytes[..end]);
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let mut content_type = String::new();
    let mut closes = false;
    let mut length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        match name.trim().to_ascii_lowercase().as_str() {
            "content-type" => content_type = value.trim().to_owned(),
            "connection" => closes = value.trim().eq_ignore_ascii_case("close"),
            "content-length" => length = value.trim().parse::<usize>().ok(),
            "transfer-encoding" => chunked = value.trim().eq_ignore_ascii_case("chunked"),
            _ => {}
        }
    }
    let mut body = &bytes[end + 4..];
    let body = if chunked {
        let mut out = Vec::new();
        while let Some(line_end) = find(body, b"\r\n") {
            let size = std::str::from_utf8(&body[..line_end])
                .ok()
                .and_then(|s| usize::from_str_radix(s.trim(), 16).ok());
            let Some(size) = size.filter(|&size| size > 0 && body.len() >= line_end + 2 + size) else {
                break;
            };
            out.extend_from_slice(&body[line_end + 2..line_end + 2 + size]);
            body = &body[(line_end + 4 + size).min(body.len())..];
        }
        out
    } else {
        body.to_vec()
    };
    Some(Answer {
        status,
        content_type,
        closes,
        complete: length.is_some_and(|length| body.len() >= length),
        body,
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

fn replace(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut rest = haystack;
    while let Some(at) = find(rest, from) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(to);
        rest = &rest[at + from.len()..];
    }
    out.extend_from_slice(rest);
    out
}

fn shorten(text: &str) -> String {
    match text.char_indices().nth(80) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// Malformed bodies: not JSON, the wrong JSON, duplicate and unknown keys, the wrong media type,
// bodies over the limit, invalid UTF-8.

/// Bodies for `POST /api/rooms/general/messages` that are not a JSON object with a string
/// `content`: `400` when the bytes are not JSON, `422` when the JSON has the wrong shape. A
/// duplicate key is a `422` on every JSON route (serde's "duplicate field"), whichever value
/// comes second; keys the route does not know are ignored (see `body_cases`).
const NOT_A_MESSAGE: &[(&str, &str, u16)] = &[
    ("empty body", "", 400),
    ("white space only", " \r\n\t ", 400),
    ("truncated object", r#"{"content":"hi""#, 400),
    ("truncated string", r#"{"content":"hi"#, 400),
    ("truncated after the colon", r#"{"content":"#, 400),
    ("a lone opening brace", "{", 400),
    ("a lone closing brace", "}", 400),
    ("trailing garbage", r#"{"content":"hi"} x"#, 400),
    ("two objects", r#"{"content":"a"}{"content":"b"}"#, 400),
    ("a trailing comma", r#"{"content":"hi",}"#, 400),
    ("single quotes", "{'content':'hi'}", 400),
    ("an unquoted key", r#"{content:"hi"}"#, 400),
    ("a comment", r#"{"content":"hi" /* c */}"#, 400),
    ("NaN", r#"{"content":NaN}"#, 400),
    ("a raw line feed inside a string", "{\"content\":\"a\nb\"}", 400),
    ("a raw tab inside a string", "{\"content\":\"a\tb\"}", 400),
    ("a raw NUL inside a string", "{\"content\":\"a\0b\"}", 400),
    ("an unknown escape", r#"{"content":"\q"}"#, 400),
    ("a short unicode escape", r#"{"content":"\u12"}"#, 400),
    ("a lone high surrogate", r#"{"content":"\ud800"}"#, 400),
    ("a lone low surrogate", r#"{"content":"\udc00"}"#, 400),
    ("surrogates in the wrong order", r#"{"content":"\udc00\ud800"}"#, 400),
    ("a high surrogate before a letter", r#"{"content":"\ud800x"}"#, 400),
    ("content 1e999", r#"{"content":1e999}"#, 400),
    ("content -1e999", r#"{"content":-1e999}"#, 400),
    (
        "a byte-order mark before the object",
        "\u{feff}{\"content\":\"hi\"}",
        400,
    ),
    ("a string", r#""hi""#, 422),
    ("a number", "5", 422),
    ("a 20-digit number", "12345678901234567890", 422),
    ("null", "null", 422),
    ("true", "true", 422),
    ("an empty array", "[]", 422),
    ("an array in an array", r#"[["hi"]]"#, 422),
    ("an empty object", "{}", 422),
    ("content a number", r#"{"content":5}"#, 422),
    ("content a float", r#"{"content":5.5}"#, 422),
    ("content negative", r#"{"content":-1}"#, 422),
    ("content a 20-digit integer", r#"{"content":12345678901234567890}"#, 422),
    (
        "content a 30-digit integer",
        r#"{"content":123456789012345678901234567890}"#,
        422,
    ),
    ("content true", r#"{"content":true}"#, 422),
    ("content false", r#"{"content":false}"#, 422),
    ("content null", r#"{"content":null}"#, 422),
    ("content an array of strings", r#"{"content":["hi"]}"#, 422),
    ("content an empty array", r#"{"content":[]}"#, 422),
    ("content an object", r#"{"content":{"text":"hi"}}"#, 422),
    ("content missing", r#"{"text":"hi"}"#, 422),
    ("the key in capitals", r#"{"Content":"hi"}"#, 422),
    ("the key with a space", r#"{"content ":"hi"}"#, 422),
    ("a duplicate key", r#"{"content":"a","content":"b"}"#, 422),
    (
        "a duplicate key with the same value",
        r#"{"content":"a","content":"a"}"#,
        422,
    ),
    (
        "a duplicate key, the second null",
        r#"{"content":"a","content":null}"#,
        422,
    ),
];

/// Bodies that are invalid UTF-8: never stored, never guessed at.
const NOT_UTF8: &[(&str, &[u8])] = &[
    ("a 0xFF byte", b"{\"content\":\"\xff\"}"),
    ("an overlong NUL", b"{\"content\":\"\xc0\x80\"}"),
    ("a surrogate encoded as UTF-8", b"{\"content\":\"\xed\xa0\x80\"}"),
    ("a truncated sequence", b"{\"content\":\"\xe2\x82\"}"),
    ("Latin-1 text", b"{\"content\":\"caf\xe9\"}"),
    ("invalid UTF-8 in a key", b"{\"cont\xffent\":\"hi\"}"),
    ("invalid UTF-8 outside strings", b"{\"content\":\"hi\"\xff}"),
    ("UTF-16", b"\xff\xfe{\x00\"\x00c\x00\"\x00:\x00\"\x00h\x00\"\x00}\x00"),
];

fn body_cases() -> Vec<Case> {
    let mut cases: Vec<Case> = NOT_A_MESSAGE
        .iter()
        .map(|&(name, body, status)| post_msg(name, body).error(status))
        .collect();
    cases.extend(
        NOT_UTF8
            .iter()
            .map(|&(name, body)| post_msg(format!("JSON with {name}"), body).error(400)),
    );
    let deep = format!("{{\"content\":{}", "[".repeat(10_000));
    let deep_ignored = format!(
        r#"{{"content":"deep","x":{}{}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    cases.extend([
        post_msg("10,000 open arrays as the content", deep).error(422),
        // serde would read a struct from an array too; only an object is a message.
        post_msg("a one-element array for the object", r#"["hi"]"#).error(422),
        // Unknown keys are ignored, whatever they hold: the message is stored as sent.
        post_msg("an unknown key", r#"{"content":"unknown key","extra":1}"#).stored("unknown key"),
        post_msg(
            "an unknown key first",
            r#"{"extra":[1,{"x":null}],"content":"key first"}"#,
        )
        .stored("key first"),
        post_msg("an unknown key twice", r#"{"content":"twice","x":1,"x":2}"#).stored("twice"),
        post_msg("an unknown key of 1e999", r#"{"content":"huge","n":1e999}"#).stored("huge"),
        post_msg(
            "an unknown 30-digit integer",
            r#"{"content":"digits","n":123456789012345678901234567890}"#,
        )
        .stored("digits"),
        post_msg("10,000 nested arrays in an unknown key", deep_ignored).stored("deep"),
        post_msg("white space around the object", " \r\n\t{\"content\":\"spaced\"}\r\n ").stored("spaced"),
        // PUT /api/status, POST /api/rooms and POST /api/sessions: the same rules.
        put("status: empty body", "/api/status").json("").error(400),
        put("status: truncated", "/api/status")
            .json(r#"{"status":"away""#)
            .error(400),
        put("status: a number", "/api/status")
            .json(r#"{"status":5}"#)
            .error(422),
        put("status: null", "/api/status").json(r#"{"status":null}"#).error(422),
        put("status: 1e999", "/api/status")
            .json(r#"{"status":1e999}"#)
            .error(400),
        put("status: missing", "/api/status").json("{}").error(422),
        put("status: a duplicate key", "/api/status")
            .json(r#"{"status":"away","status":"online"}"#)
            .error(422),
        put("status: in capitals", "/api/status")
            .json(r#"{"status":"AWAY"}"#)
            .error(422),
        put("status: with a space", "/api/status")
            .json(r#"{"status":"away "}"#)
            .error(422),
        put("status: unknown", "/api/status")
            .json(r#"{"status":"invisible"}"#)
            .error(422),
        // Not an object: refused, the status stays.
        put("status: an array for the object", "/api/status")
            .json(r#"["away"]"#)
            .error(422),
        post("room: truncated", "/api/rooms").json(r#"{"name":"x""#).error(400),
        post("room: a number", "/api/rooms").json(r#"{"name":5}"#).error(422),
        post("room: -1e999", "/api/rooms").json(r#"{"name":-1e999}"#).error(400),
        post("room: a duplicate key", "/api/rooms")
            .json(r#"{"name":"one","name":"two"}"#)
            .error(422),
        post("room: a string for the object", "/api/rooms")
            .json(r#""general""#)
            .error(422),
        post("room: null for the object", "/api/rooms").json("null").error(422),
        post("room: a number for the object", "/api/rooms").json("5").error(422),
        post("room: an object for the name", "/api/rooms")
            .json(r#"{"name":{"a":1}}"#)
            .error(422),
        // Not an object: refused, no room is made.
        post("room: an array for the object", "/api/rooms")
            .json(r#"["from-an-array"]"#)
            .error(422),
        post("sign-in: empty body", "/api/sessions")
            .json("")
            .auth(Auth::None)
            .error(400),
        post("sign-in: password missing", "/api/sessions")
            .json(r#"{"username":"ada"}"#)
            .auth(Auth::None)
            .error(422),
        post("sign-in: username missing", "/api/sessions")
            .json(r#"{"password":"correct horse battery"}"#)
            .auth(Auth::None)
            .error(422),
        post("sign-in: username a number", "/api/sessions")
            .json(r#"{"username":5,"password":"correct horse battery"}"#)
            .auth(Auth::None)
            .error(422),
        post("sign-in: password a number", "/api/sessions")
            .json(r#"{"username":"ada","password":12345678}"#)
            .auth(Auth::None)
            .error(422),
        post("sign-in: username an array", "/api/sessions")
            .json(r#"{"username":["ada"],"password":"correct horse battery"}"#)
            .auth(Auth::None)
            .error(422),
        post("sign-in: a duplicate username", "/api/sessions")
            .json(r#"{"username":"ada","username":"bob","password":"correct horse battery"}"#)
            .auth(Auth::None)
            .error(422),
        // Not an object: refused, nobody is signed in.
        post("sign-in: an array for the object", "/api/sessions")
            .json(r#"["ada","correct horse battery"]"#)
            .auth(Auth::None)
            .error(422),
    ]);
    cases
}

fn media_type_cases() -> Vec<Case> {
    let body = r#"{"content":"typed"}"#;
    vec![
        post("no Content-Type", MSG).body(None, body).error(415),
        post("text/plain", MSG).body(Some("text/plain"), body).error(415),
        post("a form type for JSON", MSG).body(Some(FORM), body).error(415),
        post("multipart", MSG)
            .body(Some("multipart/form-data; boundary=x"), body)
            .error(415),
        post("application/jsonp", MSG)
            .body(Some("application/jsonp"), body)
            .error(415),
        post("text/json", MSG).body(Some("text/json"), body).error(415),
        post("two media types", MSG)
            .body(Some("application/json, text/plain"), body)
            .error(415),
        post("a garbage Content-Type", MSG).body(Some(";;;"), body).error(415),
        post("JSON in capitals", MSG)
            .body(Some("APPLICATION/JSON"), body)
            .stored("typed"),
        post("JSON with a charset", MSG)
            .body(Some("application/json; charset=utf-8"), body)
            .stored("typed"),
        put("status without Content-Type", "/api/status")
            .body(None, r#"{"status":"away"}"#)
            .error(415),
        post("room without Content-Type", "/api/rooms")
            .body(None, r#"{"name":"typed"}"#)
            .error(415),
        post("sign-in without Content-Type", "/api/sessions")
            .body(None, r#"{"username":"ada","password":"correct horse battery"}"#)
            .auth(Auth::None)
            .error(415),
        post("form route with JSON", FORM_MSG).json(body).error(415),
        post("form route without Content-Type", FORM_MSG)
            .body(None, "content=x")
            .error(415),
        post("status form with JSON", "/status")
            .json(r#"{"status":"away"}"#)
            .error(415),
    ]
}

fn size_cases() -> Vec<Case> {
    // Exactly the limit: one letter, and the JSON padded with white space between its tokens.
    let at_limit_text = "x";
    let at_limit = format!(
        r#"{{"content":"x"{}}}"#,
        " ".repeat(BODY_LIMIT - r#"{"content":"x"}"#.len())
    );
    assert_eq!(at_limit.len(), BODY_LIMIT);
    let over = |n: usize| json!({ "content": "y".repeat(n) }).to_string();
    let huge_password = json!({ "username": "ada", "password": "p".repeat(BODY_LIMIT) }).to_string();
    vec![
        post_msg("a body of exactly the limit", at_limit).stored(at_limit_text),
        post_msg(
            "one byte over the limit",
            over(BODY_LIMIT + 1 - r#"{"content":""}"#.len()),
        )
        .error(413),
        post_msg(
            "one byte over the limit, chunked",
            over(BODY_LIMIT + 1 - r#"{"content":""}"#.len()),
        )
        .chunked()
        .error(413),
        post_msg("a megabyte", over(1 << 20)).raw().error(413),
        post_msg("a megabyte, chunked", over(1 << 20))
            .chunked()
            .raw()
            .error(413),
        post_msg("a declared terabyte", r#"{"content":"hi"}"#)
            .header("content-length", "1000000000000")
            .raw()
            .error(413),
        put("status: over the limit", "/api/status")
            .json(json!({ "status": "a".repeat(BODY_LIMIT) }).to_string())
            .error(413),
        post("room: over the limit", "/api/rooms")
            .json(json!({ "name": "a".repeat(BODY_LIMIT) }).to_string())
            .error(413),
        post("sign-in: a password over the limit", "/api/sessions")
            .json(huge_password.clone())
            .auth(Auth::None)
            .error(413),
        post("sign-up: a password over the limit", "/api/users")
            .json(huge_password)
            .auth(Auth::None)
            .error(413),
        post("sign-up: an invite over the limit", "/api/users")
            .json(json!({"username": "big", "password": PASSWORD, "invite": "i".repeat(BODY_LIMIT)}).to_string())
            .auth(Auth::None)
            .error(413),
        post("invite: a body over the limit", "/api/invites")
            .json(json!({"uses": 1, "pad": "a".repeat(BODY_LIMIT)}).to_string())
            .error(413),
        // Answered before the body is read, the connection cannot carry another request: the
        // answer must say so, or a client (reqwest's pool, a browser) sends its next request
        // on it and gets it broken off (`IncompleteMessage`).
        wire(
            "a 413 before the body is read says Connection: close",
            format!(
                "POST /api/rooms/general/messages HTTP/1.1\r\nHost: {{host}}\r\nAuthorization: Bearer {{ada}}\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
                over(BODY_LIMIT).len(),
                over(BODY_LIMIT)
            ),
        )
        .expect(Expect::ErrorAndClose(413)),
        // The same when the limit is found while reading a chunked body.
        wire(
            "a 413 while reading says Connection: close",
            format!(
                "POST /api/rooms/general/messages HTTP/1.1\r\nHost: {{host}}\r\nAuthorization: Bearer {{ada}}\r\n\
                 Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{}\r\n0\r\n\r\n",
                over(BODY_LIMIT).len(),
                over(BODY_LIMIT)
            ),
        )
        .expect(Expect::ErrorAndClose(413)),
        // `--max-body-bytes` holds on the form routes too (poem's own `Form` reads any size).
        post("form: a message form over the limit", FORM_MSG)
            .form(format!("content={}", "z".repeat(BODY_LIMIT)))
            .error(413),
        // The same on the sign-in form.
        post("form: a sign-in form over the limit", "/")
            .form(format!("username=ada&password={}", "p".repeat(BODY_LIMIT)))
            .auth(Auth::None)
            .expect(Expect::Limit(&[413])),
    ]
}

fn form_cases() -> Vec<Case> {
    vec![
        post("form: a plain message", FORM_MSG)
            .form("content=form+%3Cb%3E+%26+%22q%22")
            .expect(Expect::FormStored("form <b> & \"q\"".into())),
        post("form: a duplicate field", FORM_MSG)
            .form("content=a&content=b")
            .error(400),
        post("form: an empty message", FORM_MSG).form("content=").error(422),
        post("form: no field", FORM_MSG).form("").error(422),
        // Invalid UTF-8 in a form is refused as in JSON: decoding it lossily would store U+FFFD,
        // which is not the text that was sent.
        post("form: percent-encoded 0xFF", FORM_MSG)
            .form("content=%ff%fe")
            .error(400),
        // As above.
        post("form: a raw 0xFF byte", FORM_MSG)
            .form(&b"content=\xff"[..])
            .error(400),
        // As above.
        post("form: percent-encoded Latin-1", FORM_MSG)
            .form("content=caf%e9")
            .error(400),
        // As above.
        post("form: an overlong NUL", FORM_MSG)
            .form("content=%c0%80")
            .error(400),
        post("form: invalid UTF-8 in a status", "/status")
            .form("status=%ff")
            .error(400),
        post("form: invalid UTF-8 in a username", "/")
            .form("username=%ff&password=correct+horse+battery")
            .auth(Auth::None)
            .error(400),
    ]
}

#[tokio::test]
async fn malformed_bodies_get_json_errors() {
    let mut fixture = Fixture::new().await;
    fixture.run(body_cases()).await;
    fixture.run(media_type_cases()).await;
    fixture.run(size_cases()).await;
    fixture.run(form_cases()).await;
    fixture.finish().await;
}

// ---------------------------------------------------------------------------------------------
// Hostile text: stored verbatim, one event with the right id on every stream, always escaped.

/// Texts that must come back exactly as sent.
const VERBATIM: &[(&str, &str)] = &[
    ("a NUL in the middle", "a\0b"),
    ("only a NUL", "\0"),
    ("C0 controls and an ANSI colour", "\x01\x02\x07\x08\x1b[31mred\x1b[0m"),
    ("DEL and C1 controls", "\x7f\u{80}\u{9f}"),
    ("a vertical tab and a form feed inside", "a\x0bb\x0cc"),
    ("a lone CR", "a\rb"),
    ("a lone LF", "a\nb"),
    ("CRLF", "a\r\nb"),
    ("LF CR", "a\n\rb"),
    ("a trailing CR", "end\r"),
    ("a leading LF", "\nstart"),
    ("white space kept around the text", "  x  \n"),
    ("a forged id line", "x\nid: 999999"),
    ("a forged event line", "x\nevent: logout"),
    ("a forged data line after a blank line", "x\n\ndata: {\"id\":1}"),
    ("a forged retry line", "x\rretry: 1"),
    (
        "a forged event behind lone CRs",
        "evil\rid: 999\revent: reset\r\rdata: forged",
    ),
    (
        "a forged event behind CRLFs",
        "evil\r\nid: 998\r\nevent: status\r\n\r\ndata: forged",
    ),
    ("a comment line", "x\n: comment"),
    ("starts like a data field", "data: hi"),
    ("starts like an id field", "id: 5"),
    ("only a colon", ":"),
    ("many blank lines", "a\n\n\n\n\nb"),
    ("line and paragraph separators", "a\u{2028}b\u{2029}c"),
    ("a NEL inside", "a\u{85}b"),
    ("a right-to-left override", "\u{202e}gnp.exe"),
    ("bidi isolates and marks", "\u{2066}a\u{2069}\u{200f}b\u{200e}"),
    ("combining marks", "e\u{301}\u{302}\u{303}"),
    ("zero-width characters inside", "a\u{200b}b\u{200c}c\u{200d}d\u{feff}e"),
    ("only a zero-width space", "\u{200b}"),
    ("only a byte-order mark", "\u{feff}"),
    ("emoji sequences", "👩‍👩‍👧‍👦 🏳️‍🌈 👍🏽"),
    ("noncharacters", "\u{fffe}\u{ffff}\u{10ffff}"),
    ("the replacement character", "\u{fffd}"),
    ("a script tag", "<script>alert(1)</script>"),
    ("closing the list item", "</span></li><script>alert(1)</script><li>"),
    ("an onerror image", "<img src=x onerror=alert(1)>"),
    ("breaking out of an attribute", "\"><svg onload=alert(1)>"),
    ("breaking out of a single-quoted attribute", "'><svg onload=alert(1)>"),
    ("a javascript link", "<a href=\"javascript:alert(1)\">x</a>"),
    (
        "htmx attributes",
        "<div hx-trigger=\"load\" hx-delete=\"/api/sessions\">x</div>",
    ),
    ("an already escaped text", "&lt;b&gt; &amp;amp; &#60;"),
    ("a template expression", "{{ 7*7 }} {% if true %}x{% endif %} ${7*7}"),
    ("a comment and CDATA", "<!-- x --> <![CDATA[y]]>"),
    ("a style tag", "<style>body{display:none}</style>"),
    ("SQL: drop table", "'); DROP TABLE events;--"),
    ("SQL: OR 1=1 after a double quote", "\" OR 1=1 --"),
    ("SQL: OR '1'='1", "' OR '1'='1"),
    ("SQL: stacked delete", "1; DELETE FROM users; --"),
    ("SQL: a union", "' UNION SELECT password_hash FROM users --"),
    ("format specifiers", "%s %n %x %p %%"),
    ("a path", "../../../../etc/passwd"),
];

/// Texts that are only white space once trimmed: refused.
const BLANK: &[(&str, &str)] = &[
    ("empty", ""),
    ("a space", " "),
    ("a tab", "\t"),
    ("a LF", "\n"),
    ("a CRLF", "\r\n"),
    ("mixed white space", " \r\n\t \x0b\x0c"),
    ("a no-break space", "\u{a0}"),
    ("an ideographic space", "\u{3000}"),
    ("an em space", "\u{2003}"),
    ("a NEL", "\u{85}"),
    ("a line separator", "\u{2028}"),
];

fn text_cases() -> Vec<Case> {
    let mut cases: Vec<Case> = VERBATIM.iter().map(|&(name, text)| say(name, text)).collect();
    cases.extend(BLANK.iter().map(|&(name, text)| refuse(format!("blank: {name}"), text)));
    cases.extend([
        post_msg("an escaped NUL", r#"{"content":"\u0000"}"#).stored("\0"),
        post_msg("an escaped surrogate pair", r#"{"content":"\ud83d\ude00"}"#).stored("😀"),
        post_msg("escaped markup", r#"{"content":"\u003cscript\u003e"}"#).stored("<script>"),
        post_msg("escaped line ends", r#"{"content":"a\r\nid: 7\rb"}"#).stored("a\r\nid: 7\rb"),
        say("4,000 letters", "a".repeat(4000)),
        refuse("4,001 letters", &"a".repeat(4001)),
        say("4,000 emoji", "😀".repeat(4000)),
        refuse("4,001 emoji", &"😀".repeat(4001)),
        say(
            "4,000 letters padded with white space",
            format!(" \n{}\t ", "b".repeat(4000)),
        ),
        say("2,000 letters with 2,000 combining marks", "e\u{301}".repeat(2000)),
        refuse(
            "4,000 letters and a zero-width space",
            &format!("{}\u{200b}", "c".repeat(4000)),
        ),
        refuse("4,001 CRs between letters", &format!("d{}d", "\r".repeat(3999))),
        say("300 line breaks", format!("{}l", "l\n".repeat(300))),
        refuse("301 line breaks", &format!("{}l", "l\n".repeat(301))),
        refuse("301 CRLFs", &format!("{}l", "l\r\n".repeat(301))),
        refuse("301 line separators", &format!("{}l", "l\u{2028}".repeat(301))),
        refuse("301 paragraph separators", &format!("{}l", "l\u{2029}".repeat(301))),
        say(
            "100 characters of padding",
            format!("{}p{}", " ".repeat(50), "\n".repeat(50)),
        ),
        refuse(
            "101 characters of padding",
            &format!("{}p{}", " ".repeat(50), "\n".repeat(51)),
        ),
        refuse("10,000 padding spaces", &format!("p{}", " ".repeat(10_000))),
        say("a letter with 8 combining marks", format!("z{}", "\u{301}".repeat(8))),
        refuse("a letter with 9 combining marks", &format!("z{}", "\u{301}".repeat(9))),
        refuse(
            "a tower of 2,000 combining marks",
            &format!("z{}", "\u{36f}".repeat(2000)),
        ),
        say("a keycap and a family", "1\u{fe0f}\u{20e3} 👩‍👩‍👧"),
    ]);
    cases
}

/// Bodies naming someone else, or trying to set what the server sets: the message is ada's,
/// in the room of the path, with its own id and time.
fn impersonation_cases() -> Vec<Case> {
    vec![
        post_msg("a username in the body", r#"{"content":"as bob?","username":"bob"}"#).stored("as bob?"),
        post_msg("a user in the body", r#"{"content":"user bob?","user":"bob"}"#).stored("user bob?"),
        post_msg("a user id in the body", r#"{"content":"user 2?","user_id":2}"#).stored("user 2?"),
        post_msg(
            "another room in the body",
            r#"{"content":"elsewhere?","room":"secret"}"#,
        )
        .stored("elsewhere?"),
        post_msg(
            "an id, a type and a time in the body",
            r#"{"content":"forged?","id":1,"type":"status","created_at":"2000-01-01T00:00:00.000Z"}"#,
        )
        .stored("forged?"),
        put("status with a username", "/api/status")
            .json(r#"{"status":"away","username":"bob"}"#)
            .expect(Expect::Json(200, ada_is_away)),
        put("status with a user", "/api/status")
            .json(r#"{"status":"away","user":"bob","user_id":2}"#)
            .expect(Expect::Json(200, ada_is_away)),
        post("form: a username field", FORM_MSG)
            .form("content=form+as+bob%3F&username=bob")
            .expect(Expect::FormStored("form as bob?".into())),
    ]
}

fn ada_is_away(event: &Value) -> Result<(), String> {
    if event["type"] == "status" && event["username"] == "ada" && event["status"] == "away" {
        Ok(())
    } else {
        Err(format!("not ada's away: {event}"))
    }
}

#[tokio::test]
async fn hostile_text_is_stored_verbatim_and_shown_escaped() {
    let mut fixture = Fixture::new().await;
    fixture.run(text_cases()).await;
    fixture.run(impersonation_cases()).await;
    fixture.finish().await;
}

// ---------------------------------------------------------------------------------------------
// Names, paths and passwords.

/// Usernames that break the rules: 1 to 32 ASCII letters, digits, `_`, `-` or `.`.
const BAD_USERNAMES: &[(&str, &str)] = &[
    ("empty", ""),
    ("33 letters", "abcdefghijklmnopqrstuvwxyzabcdefg"),
    ("a leading space", " ada"),
    ("a trailing space", "ada "),
    ("a space inside", "a da"),
    ("a tab", "ada\t"),
    ("a LF", "ada\n"),
    ("a NUL", "ada\0"),
    ("a percent-encoded NUL", "ada%00"),
    ("a Cyrillic a", "\u{430}da"),
    ("a Latin alpha", "\u{251}da"),
    ("fullwidth letters", "ａｄａ"),
    ("a zero-width space", "ada\u{200b}"),
    ("a combining mark", "ada\u{301}"),
    ("a Kelvin sign", "\u{212a}elvin"),
    ("a slash", "/"),
    ("a path", "../etc/passwd"),
    ("percent-encoded dots", "%2e%2e"),
    ("a backslash", "a\\b"),
    ("markup", "<script>"),
    ("a quote", "ada'--"),
    ("an at sign", "ada@example.com"),
];

/// Room names that break the rules: `[a-z0-9][a-z0-9-]{0,31}`.
const BAD_ROOMS: &[(&str, &str)] = &[
    ("empty", ""),
    ("33 letters", "abcdefghijklmnopqrstuvwxyzabcdefg"),
    ("capitals", "Rust"),
    ("a leading hyphen", "-rust"),
    ("an underscore", "rust_lang"),
    ("a space", "rust lang"),
    ("dot dot", ".."),
    ("a dot", "."),
    ("a slash", "a/b"),
    ("percent-encoded dots", "%2e%2e"),
    ("a percent-encoded NUL", "a%00"),
    ("a NUL", "a\0"),
    ("a LF", "rust\n"),
    ("fullwidth letters", "ｒｕｓｔ"),
    ("a long s", "ru\u{17f}t"),
    ("an accent", "caf\u{e9}"),
    ("markup", "<script>"),
];

fn username_cases() -> Vec<Case> {
    let mut cases: Vec<Case> = BAD_USERNAMES
        .iter()
        .map(|&(name, username)| sign_in(format!("username: {name}"), username, PASSWORD).error(422))
        .collect();
    cases.extend(
        BAD_USERNAMES
            .iter()
            .map(|&(name, username)| sign_up(format!("new username: {name}"), username, PASSWORD).error(422)),
    );
    cases.extend([
        sign_in("username: ada in capitals is ada", "ADA", PASSWORD).expect(Expect::Json(200, signed_in_as_ada)),
        sign_in("username: ada in capitals, wrong password", "ADA", "not the password").error(401),
        sign_in("username: nobody has it", "nobody", PASSWORD).error(401),
        // A name of dots is no name: a new name starts and ends with a letter or digit.
        sign_up("username: dot dot", "..", PASSWORD).error(422),
        sign_up("username: a dot on its edge", "ada.", PASSWORD).error(422),
        sign_in("username: a dot on its edge signs in to nobody", "ada.", PASSWORD).error(401),
        sign_up("username: a name with a zero", "n0ah", PASSWORD).expect(Expect::Json(201, |v| {
            (v["username"] == "n0ah").then_some(()).ok_or_else(|| v.to_string())
        })),
        sign_up("username: a capital O for its zero", "NOAH", PASSWORD).error(409),
        sign_up("username: a small o for its zero", "noah", "another password").error(409),
        sign_up("username: ada again", "ada", PASSWORD).error(409),
        sign_up("username: ada in capitals", "ADA", PASSWORD).error(409),
        sign_up("username: 32 letters", &"u".repeat(32), PASSWORD).expect(Expect::Json(201, |v| {
            (v["username"] == "u".repeat(32))
                .then_some(())
                .ok_or_else(|| v.to_string())
        })),
        post("form: sign-in with markup in the username", "/")
            .form("username=%22%3E%3Cscript%3Ealert(1)%3C%2Fscript%3E&password=correct+horse+battery")
            .auth(Auth::None)
            .expect(Expect::Page(422, &["<script>alert(1)"])),
        post("form: sign-in with an image in the username", "/")
            .form("username=%3Cimg+src%3Dx+onerror%3Dalert(1)%3E&password=correct+horse+battery")
            .auth(Auth::None)
            .expect(Expect::Page(422, &["<img src=x"])),
    ]);
    cases
}

fn signed_in_as_ada(value: &Value) -> Result<(), String> {
    match value["token"].as_str() {
        Some(token) if value["username"] == "ada" && token.len() == 43 => Ok(()),
        _ => Err(format!("not a session of ada: {value}")),
    }
}

/// `POST /api/users` and the sign-up pages with bodies of the wrong shape: refused, and
/// nobody is made.
fn signup_cases() -> Vec<Case> {
    let users = |name: &str, body: &str| post(name, "/api/users").json(body.to_owned()).auth(Auth::None);
    vec![
        users("sign-up: empty body", "").error(400),
        users("sign-up: truncated JSON", r#"{"username":"#).error(400),
        users("sign-up: an array", r#"["zed","correct horse battery"]"#).error(422),
        users("sign-up: null", "null").error(422),
        users("sign-up: password missing", r#"{"username":"zed"}"#).error(422),
        users("sign-up: username missing", r#"{"password":"correct horse battery"}"#).error(422),
        users(
            "sign-up: username a number",
            r#"{"username":5,"password":"correct horse battery"}"#,
        )
        .error(422),
        users(
            "sign-up: password a number",
            r#"{"username":"zed","password":12345678}"#,
        )
        .error(422),
        users(
            "sign-up: invite a number",
            r#"{"username":"zed","password":"correct horse battery","invite":5}"#,
        )
        .error(422),
        users(
            "sign-up: invite an object",
            r#"{"username":"zed","password":"correct horse battery","invite":{"code":"x"}}"#,
        )
        .error(422),
        users(
            "sign-up: a duplicate username",
            r#"{"username":"zed","username":"zoe","password":"correct horse battery"}"#,
        )
        .error(422),
        post("sign-up: a form body", "/api/users")
            .form("username=zed&password=correct+horse+battery")
            .auth(Auth::None)
            .error(415),
        post("sign-up form: JSON", "/signup")
            .json(r#"{"username":"zed","password":"correct horse battery"}"#)
            .auth(Auth::None)
            .error(415),
        post("sign-up form: a name with markup", "/signup")
            .form("username=%3Cscript%3Ealert(1)%3C%2Fscript%3E&password=correct+horse+battery")
            .auth(Auth::None)
            .expect(Expect::Page(422, &["<script>alert(1)"])),
        post("sign-up form: an invite with markup is not echoed", "/signup")
            .form("username=zed&password=short&invite=%22%3E%3Cimg+src%3Dx%3E")
            .auth(Auth::None)
            .expect(Expect::Page(422, &["<img src=x", "\"><img"])),
        post("sign-up form: a taken name", "/signup")
            .form("username=ADA&password=correct+horse+battery")
            .auth(Auth::None)
            .expect(Expect::Page(409, &[])),
        get("join page: no such invite", "/join/AAAAAAAAAAAAAAAAAAAAAA")
            .auth(Auth::None)
            .expect(Expect::Page(404, &[])),
        get(
            "join page: markup for a code",
            "/join/%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        )
        .auth(Auth::None)
        .expect(Expect::Page(404, &["<script>alert(1)"])),
        get("join page: a huge code", format!("/join/{}", "c".repeat(4000)))
            .auth(Auth::None)
            .expect(Expect::Page(404, &[])),
        get("join page: a percent-encoded NUL", "/join/a%00b")
            .auth(Auth::None)
            .expect(Expect::Page(404, &[])),
        get("sign-up page: open", "/signup")
            .auth(Auth::None)
            .expect(Expect::Page(200, &[])),
    ]
}

/// The invite routes with what they do not take: admins only, numbers in range, codes that
/// could be codes.
fn invite_cases() -> Vec<Case> {
    let make = |name: &str, body: &str| post(name, "/api/invites").json(body.to_owned());
    let as_bob = |case: Case| case.auth(Auth::None).header("authorization", "Bearer {bob}").error(403);
    let made = |v: &Value| match (v["code"].as_str(), v["url"].as_str()) {
        (Some(code), Some(url)) if code.len() == 22 && url.ends_with(&format!("/join/{code}")) => Ok(()),
        _ => Err(format!("not an invite: {v}")),
    };
    vec![
        make("invite: the defaults", "{}").expect(Expect::Json(201, |v| {
            (v["uses_left"] == 1).then_some(()).ok_or_else(|| v.to_string())
        })),
        make("invite: every bound", r#"{"uses":1000,"expires_in_hours":8760}"#).expect(Expect::Json(201, made)),
        make(
            "invite: nulls are the defaults",
            r#"{"uses":null,"expires_in_hours":null}"#,
        )
        .expect(Expect::Json(201, made)),
        make("invite: no uses", r#"{"uses":0}"#).error(422),
        make("invite: negative uses", r#"{"uses":-1}"#).error(422),
        make("invite: 1,001 uses", r#"{"uses":1001}"#).error(422),
        make("invite: uses past any integer", r#"{"uses":99999999999999999999999}"#).error(422),
        make("invite: uses a fraction", r#"{"uses":1.5}"#).error(422),
        make("invite: uses a string", r#"{"uses":"2"}"#).error(422),
        make("invite: uses a boolean", r#"{"uses":true}"#).error(422),
        make("invite: no hours", r#"{"expires_in_hours":0}"#).error(422),
        make("invite: over a year", r#"{"expires_in_hours":8761}"#).error(422),
        make("invite: hours an array", r#"{"expires_in_hours":[1]}"#).error(422),
        make("invite: an array for the object", "[1, 24]").error(422),
        make("invite: truncated JSON", r#"{"uses":"#).error(400),
        post("invite: a form body", "/api/invites").form("uses=1").error(415),
        make("invite: no session", "{}").auth(Auth::None).error(401),
        as_bob(make("invite: a member makes one", "{}")),
        as_bob(get("invite: a member lists them", "/api/invites")),
        as_bob(delete(
            "invite: a member revokes one",
            "/api/invites/AAAAAAAAAAAAAAAAAAAAAA",
        )),
        get("invite: the list", "/api/invites").expect(Expect::Json(200, |v| match v["invites"].as_array() {
            Some(invites) if invites.len() == 3 => Ok(()),
            _ => Err(v.to_string()),
        })),
        delete("invite: revoke no such code", "/api/invites/AAAAAAAAAAAAAAAAAAAAAA").error(404),
        delete(
            "invite: revoke a huge code",
            format!("/api/invites/{}", "c".repeat(4000)),
        )
        .error(404),
        delete("invite: revoke markup", "/api/invites/%3Cscript%3E").error(404),
        delete("invite: revoke a NUL", "/api/invites/a%00b").error(404),
        delete("invite: revoke a path", "/api/invites/..%2F..%2Fetc").error(404),
        post("invite form: out of range", "/admin/invites")
            .form("uses=0&expires_in_hours=1")
            .auth(Auth::AdaCookie)
            .header("origin", "{origin}")
            .expect(Expect::Page(422, &[])),
        post("invite form: not a number", "/admin/invites")
            .form("uses=%3Cb%3E&expires_in_hours=x")
            .auth(Auth::AdaCookie)
            .header("origin", "{origin}")
            .expect(Expect::Page(422, &["<b>"])),
        post("invite form: a member", "/admin/invites")
            .form("uses=1&expires_in_hours=1")
            .auth(Auth::None)
            .header("cookie", "chat_session={bob}")
            .header("origin", "{origin}")
            .error(403),
        post(
            "invite form: revoke no such code",
            "/admin/invites/AAAAAAAAAAAAAAAAAAAAAA/revoke",
        )
        .form("")
        .auth(Auth::AdaCookie)
        .header("origin", "{origin}")
        .expect(Expect::Page(404, &[])),
    ]
}

fn password_cases() -> Vec<Case> {
    vec![
        sign_in("password: empty", "pw", "").error(422),
        sign_in("password: 7 letters", "pw", "1234567").error(422),
        sign_in("password: 7 two-byte letters", "pw", "ééééééé").error(422),
        sign_in("password: 7 emoji (28 bytes)", "pw", "😀😀😀😀😀😀😀").error(422),
        sign_in("password: 1,025 letters", "pw", &"p".repeat(1025)).error(422),
        sign_in("password: 1,025 two-byte letters", "pw", &"é".repeat(1025)).error(422),
        sign_up("new password: empty", "pw", "").error(422),
        sign_up("new password: 7 letters", "pw", "1234567").error(422),
        sign_up("new password: 7 emoji (28 bytes)", "pw", "😀😀😀😀😀😀😀").error(422),
        sign_up("new password: 1,025 letters", "pw", &"p".repeat(1025)).error(422),
        sign_up("password: 8 two-byte letters", "pw-short", "éééééééé").expect(Expect::Status(201)),
        sign_up("password: 1,024 letters", "pw-long", &"p".repeat(1024)).expect(Expect::Status(201)),
        sign_in("password: ada's, wrong", "ada", "not the password").error(401),
        sign_in("password: ada's, 1,024 letters", "ada", &"p".repeat(1024)).error(401),
        sign_in("password: ada's, with a NUL", "ada", "correct horse battery\0").error(401),
        sign_in(
            "password: ada's, with a trailing space",
            "ada",
            "correct horse battery ",
        )
        .error(401),
    ]
}

/// The account's own routes, refused without changing anything: ada keeps her password and
/// her sessions for the cases after these.
fn account_cases() -> Vec<Case> {
    let mut cases = vec![
        put("password: an array", "/api/me/password").json("[]").error(422),
        put("password: new missing", "/api/me/password")
            .json(r#"{"current":"correct horse battery"}"#)
            .error(422),
        put("password: numbers", "/api/me/password")
            .json(r#"{"current":1,"new":2}"#)
            .error(422),
        put("password: the current one wrong", "/api/me/password")
            .json(r#"{"current":"not it at all","new":"a new password"}"#)
            .error(403),
        put("password: a new one too short", "/api/me/password")
            .json(r#"{"current":"correct horse battery","new":"short"}"#)
            .error(422),
        put("password: a new one of 1,025 characters", "/api/me/password")
            .json(json!({"current": "correct horse battery", "new": "n".repeat(1025)}).to_string())
            .error(422),
        put("password: truncated JSON", "/api/me/password")
            .json(r#"{"current":"#)
            .error(400),
        post("account form: JSON", "/account/password")
            .json(r#"{"current":"x","new":"y"}"#)
            .error(415),
        get("me", "/api/me").expect(Expect::Json(200, |v| {
            (v["username"] == "ada").then_some(()).ok_or_else(|| v.to_string())
        })),
    ];
    for (name, id) in [
        ("empty", ""),
        ("too short", "0123"),
        ("not hex", "zzzzzzzzzzzzzzzz"),
        ("a NUL", "%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00"),
        ("a path", "..%2F..%2Fetc"),
        ("no session's", "0123456789abcdef"),
    ] {
        let path = format!("/api/me/sessions/{id}");
        cases.push(delete(format!("session id: {name}"), path).error(404));
    }
    cases.push(
        delete(
            "session id: 10,000 digits",
            format!("/api/me/sessions/{}", "f".repeat(10_000)),
        )
        .error(404),
    );
    for (name, body) in [
        ("a role of another kind", r#"{"role":"owner"}"#),
        ("a role that is a number", r#"{"role":1}"#),
        ("active as a string", r#"{"active":"no"}"#),
        ("an array", "[]"),
    ] {
        cases.push(
            put(format!("people: {name}"), "/api/users/ada")
                .method("PATCH")
                .json(body)
                .error(422),
        );
    }
    cases.push(
        put("people: nobody", "/api/users/nobody")
            .method("PATCH")
            .json(r#"{"role":"admin"}"#)
            .error(404),
    );
    cases.push(
        post("admin form: active=maybe", "/admin/people/bob")
            .form("active=maybe")
            .error(400),
    );
    cases.push(
        post("admin form: JSON", "/admin/people/bob")
            .json(r#"{"active":false}"#)
            .error(415),
    );
    cases.push(
        post(
            "account: end a session of nobody's",
            "/account/sessions/0123456789abcdef/end",
        )
        .body(None, "")
        .expect(Expect::Page(404, &["<script>"])),
    );
    cases
}

/// Private rooms, topics, direct messages and members, with what they do not take.
fn membership_cases() -> Vec<Case> {
    let patch = |name: &str, room: &str, body: &str| {
        put(format!("room change: {name}"), format!("/api/rooms/{room}"))
            .method("PATCH")
            .json(body.to_owned())
    };
    let dm = |name: &str, body: String| post(format!("dm: {name}"), "/api/dms").json(body);
    let mut cases = vec![
        post("private room: private as a string", "/api/rooms")
            .json(r#"{"name":"quiet","private":"yes"}"#)
            .error(422),
        post("private room: a topic that is an object", "/api/rooms")
            .json(r#"{"name":"quiet","topic":{"a":1}}"#)
            .error(422),
        post("private room: a name kept for direct rooms", "/api/rooms")
            .json(r#"{"name":"dm-0000000000000000","private":true}"#)
            .error(422),
        post("private room: a topic of 10,000 characters", "/api/rooms")
            .json(json!({"name": "quiet", "topic": "t".repeat(10_000)}).to_string())
            .error(422),
        post("private room: made", "/api/rooms")
            .json(r#"{"name":"quiet","private":true,"topic":"shh"}"#)
            .expect(Expect::Status(201)),
        patch("a topic that is a number", "general", r#"{"topic":5}"#).error(422),
        patch("archived as a string", "general", r#"{"archived":"yes"}"#).error(422),
        patch("an array", "general", "[]").error(422),
        patch("a topic over a line", "general", r#"{"topic":"a\nb"}"#).error(422),
        patch("a room that is not there", "nowhere", r#"{"topic":"x"}"#).error(404),
        patch("a topic", "quiet", r#"{"topic":"<b>bold</b>"}"#).expect(Expect::Status(200)),
        dm("no body", "{}".into()).error(422),
        dm("names as a string", r#"{"usernames":"ada"}"#.into()).error(422),
        dm("a name that is a number", r#"{"usernames":[1]}"#.into()).error(422),
        dm("nobody named", r#"{"usernames":[]}"#.into()).error(422),
        dm("a malformed name", r#"{"usernames":["no body"]}"#.into()).error(422),
        dm("no such account", r#"{"usernames":["nobody"]}"#.into()).error(404),
        dm("10,000 names", json!({"usernames": vec!["ada"; 10_000]}).to_string()).error(422),
        dm("with oneself", r#"{"usernames":["ada"]}"#.into()).expect(Expect::Status(201)),
        put("member: of a public room", "/api/rooms/general/members/ada").error(409),
        delete("member: leaving a public room", "/api/rooms/general/members/ada").error(409),
        put("member: of no room", "/api/rooms/nowhere/members/ada").error(404),
        put("member: nobody", "/api/rooms/quiet/members/nobody").error(404),
        put(
            "member: a name of 10,000 letters",
            format!("/api/rooms/quiet/members/{}", "n".repeat(10_000)),
        )
        .error(422),
        put("member: already in", "/api/rooms/quiet/members/ada").expect(Expect::Status(204)),
        get("members: of no room", "/api/rooms/nowhere/members").error(404),
        get("member list: of no room", "/rooms/nowhere/members").expect(Expect::Status(404)),
    ];
    cases.push(delete("member: ada leaves quiet", "/api/rooms/quiet/members/ada").expect(Expect::Status(200)));
    cases.push(get("history: of a room left", "/api/rooms/quiet/messages").error(404));
    cases
}

fn room_cases() -> Vec<Case> {
    let mut cases: Vec<Case> = BAD_ROOMS
        .iter()
        .map(|&(name, room)| {
            post(format!("room: {name}"), "/api/rooms")
                .json(json!({ "name": room }).to_string())
                .error(422)
        })
        .collect();
    cases.extend([
        post("room: general exists", "/api/rooms")
            .json(r#"{"name":"general"}"#)
            .error(409),
        post("room: a new one", "/api/rooms")
            .json(r#"{"name":"hostile"}"#)
            .expect(Expect::Status(201)),
        post("room: the new one again", "/api/rooms")
            .json(r#"{"name":"hostile"}"#)
            .error(409),
        post("room: 32 letters", "/api/rooms")
            .json(json!({ "name": "r".repeat(32) }).to_string())
            .expect(Expect::Status(201)),
        post("form: a room named dot dot", "/rooms")
            .form("name=..")
            .expect(Expect::Page(422, &[])),
        post("form: a room named with markup", "/rooms")
            .form("name=%3Cscript%3Ealert(1)%3C%2Fscript%3E")
            .expect(Expect::Page(422, &["<script>alert(1)"])),
    ]);
    cases
}

/// Room paths that try to leave `/api/rooms/{room}`: no such room, or not a path at all.
const ROOM_PATHS: &[(&str, &str, u16)] = &[
    ("encoded slashes", "/api/rooms/..%2F..%2Fetc/messages", 404),
    ("encoded dots", "/api/rooms/%2e%2e/messages", 404),
    ("dot segments", "/api/rooms/../rooms/general/messages", 404),
    (
        "a dot segment after the room",
        "/api/rooms/general/../general/messages",
        404,
    ),
    (
        "encoded slashes after the room",
        "/api/rooms/general%2F..%2F..%2Fetc/messages",
        404,
    ),
    ("a backslash", "/api/rooms/..\\general/messages", 404),
    ("an encoded NUL", "/api/rooms/gen%00eral/messages", 404),
    ("capitals", "/api/rooms/GENERAL/messages", 404),
    ("an encoded space", "/api/rooms/general%20/messages", 404),
    ("an encoded newline", "/api/rooms/general%0A/messages", 404),
    (
        "a 33-letter room",
        "/api/rooms/abcdefghijklmnopqrstuvwxyzabcdefg/messages",
        404,
    ),
    ("invalid UTF-8", "/api/rooms/gen%ffal/messages", 400),
    ("encoded dots on the stream", "/api/rooms/%2e%2e/events", 404),
    ("encoded slashes on the stream", "/api/rooms/..%2F..%2Fetc/events", 404),
];

/// `/static/` paths that try to reach a file outside `static/`.
const STATIC_PATHS: &[(&str, &str, u16)] = &[
    ("a dot segment", "/static/../Cargo.toml", 404),
    ("two dot segments", "/static/vendor/../../Cargo.toml", 404),
    ("encoded dots", "/static/%2e%2e/Cargo.toml", 404),
    ("encoded dots to the source", "/static/%2e%2e/src/main.rs", 404),
    ("encoded capital dots", "/static/%2E%2E/Cargo.toml", 404),
    ("an encoded slash", "/static/..%2fCargo.toml", 404),
    ("an encoded capital slash", "/static/..%2FCargo.toml", 404),
    ("everything encoded", "/static/%2e%2e%2f%2e%2e%2fCargo.toml", 404),
    (
        "deep encoded dots",
        "/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        404,
    ),
    ("double dots twice", "/static/....//Cargo.toml", 404),
    ("through a file", "/static/style.css/../../Cargo.toml", 404),
    ("the git config", "/static/../.git/config", 404),
    ("the database", "/static/../chat.db", 404),
    ("an absolute path", "/static//etc/passwd", 404),
    ("an encoded absolute path", "/static/%2fetc%2fpasswd", 404),
    ("a backslash", "/static/..\\Cargo.toml", 404),
    ("an encoded backslash", "/static/..%5cCargo.toml", 404),
    ("a leading encoded backslash", "/static/%5c..%5cCargo.toml", 404),
    ("a drive letter", "/static/C:%5cWindows%5cwin.ini", 404),
    ("an encoded NUL", "/static/style.css%00", 404),
    ("an encoded NUL before an extension", "/static/style.css%00.js", 404),
    ("a directory", "/static/vendor/", 404),
    ("the root", "/static/", 404),
    ("no slash", "/static", 404),
    ("capitals", "/static/STYLE.CSS", 404),
    ("invalid UTF-8", "/static/%ff", 400),
];

fn path_cases() -> Vec<Case> {
    let mut cases: Vec<Case> = ROOM_PATHS
        .iter()
        .map(|&(name, path, status)| get(format!("room path: {name}"), path).raw().error(status))
        .collect();
    cases.extend(STATIC_PATHS.iter().map(|&(name, path, status)| {
        get(format!("static: {name}"), path)
            .auth(Auth::None)
            .raw()
            .error(status)
    }));
    cases.extend([
        post(
            "room path: posting through encoded slashes",
            "/api/rooms/..%2F..%2Fetc/messages",
        )
        .json(r#"{"content":"x"}"#)
        .raw()
        .error(404),
        get("static: the style sheet is served", "/static/style.css")
            .auth(Auth::None)
            .expect(Expect::Status(200)),
        wire(
            "static: an absolute-form target",
            "GET http://evil.example/static/../Cargo.toml HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n",
        )
        .error(404),
        get("page: encoded dots", "/rooms/%2e%2e")
            .raw()
            .expect(Expect::Page(404, &[])),
        get("page: encoded slashes", "/rooms/..%2F..%2Fetc")
            .raw()
            .expect(Expect::Page(404, &[])),
        get("page: encoded dots and a slash", "/rooms/%2e%2e/").raw().error(404),
        get("page: markup in the room", "/rooms/%3Cscript%3Ealert(1)%3C%2Fscript%3E")
            .expect(Expect::Page(404, &["<script>alert(1)"])),
        get("page: older through encoded dots", "/rooms/%2e%2e/older?before=1")
            .raw()
            .error(404),
        post("page: a form post through encoded dots", "/rooms/%2e%2e/messages")
            .form("content=x")
            .raw()
            .error(404),
    ]);
    cases
}

#[tokio::test]
async fn names_paths_and_passwords_are_checked() {
    let mut fixture = Fixture::new().await;
    fixture.run(username_cases()).await;
    fixture.run(password_cases()).await;
    fixture.run(room_cases()).await;
    fixture.run(membership_cases()).await;
    fixture.run(account_cases()).await;
    fixture.run(signup_cases()).await;
    fixture.run(invite_cases()).await;
    fixture.run(path_cases()).await;
    fixture.finish().await;
}

// ---------------------------------------------------------------------------------------------
// Numbers in queries and cursors, formats, Accept.

/// `GET /api/rooms/general/messages?…` with a number that is not one the API takes.
const BAD_HISTORY_QUERIES: &[&str] = &[
    "limit=0",
    "limit=-1",
    "limit=201",
    "limit=100000",
    "limit=1e999",
    "limit=99999999999999999999",
    "limit=4294967297",
    "limit=18446744073709551616",
    "limit=1.5",
    "limit=abc",
    "limit=",
    "limit=%00",
    "limit=%ff",
    "limit=0x10",
    "limit=%2010",
    "limit=NaN",
    "limit=Infinity",
    "limit=5&limit=6",
    "before=abc",
    "before=-1",
    "before=1e999",
    "before=99999999999999999999",
    "before=9223372036854775808",
    "before=",
    "before=%ff",
    "before=1.0",
    "after=-1",
    "after=1e999",
    "after=99999999999999999999",
    "after=abc",
    "after=%2B%2B",
];

/// `Last-Event-ID` values the server cannot honour: `200` and `event: reset`.
const BAD_LAST_EVENT_IDS: &[(&str, &str)] = &[
    ("letters", "abc"),
    ("negative", "-1"),
    ("a plus sign", "+1"),
    ("an exponent", "1e3"),
    ("1e999", "1e999"),
    ("a decimal", "1.0"),
    ("hex", "0x10"),
    ("two numbers", "7 8"),
    ("20 digits", "99999999999999999999"),
    ("i64::MAX + 1", "9223372036854775808"),
    ("newer than any event", "9223372036854775807"),
    ("null", "null"),
    ("NaN", "NaN"),
];

/// `?after=` values the server cannot honour.
const BAD_AFTERS: &[(&str, &str)] = &[
    ("letters", "abc"),
    ("negative", "-1"),
    ("1e999", "1e999"),
    ("20 digits", "99999999999999999999"),
    ("invalid UTF-8", "%ff"),
    ("empty", ""),
    ("an encoded space", "%207"),
    ("newer than any event", "9223372036854775807"),
];

fn history_cases() -> Vec<Case> {
    let mut cases: Vec<Case> = BAD_HISTORY_QUERIES
        .iter()
        .map(|query| get(format!("history: {query}"), format!("{MSG}?{query}")).error(400))
        .collect();
    let has_messages = |v: &Value| v["messages"].as_array().map(|_| ()).ok_or_else(|| v.to_string());
    let has_rooms = |v: &Value| v["rooms"].as_array().map(|_| ()).ok_or_else(|| v.to_string());
    cases.extend(
        BAD_HISTORY_QUERIES
            .iter()
            .filter(|query| query.starts_with("limit=") && **query != "limit=201")
            .map(|query| get(format!("rooms: {query}"), format!("/api/rooms?{query}")).error(400)),
    );
    cases.extend([
        get("history: limit=200", format!("{MSG}?limit=200")).expect(Expect::Json(200, has_messages)),
        get("history: limit=1", format!("{MSG}?limit=1")).expect(Expect::Json(200, has_messages)),
        get(
            "history: before the largest id",
            format!("{MSG}?before=9223372036854775807"),
        )
        .expect(Expect::Json(200, has_messages)),
        get(
            "history: after the largest id",
            format!("{MSG}?after=9223372036854775807"),
        )
        .expect(Expect::Json(200, has_messages)),
        get("history: before=0", format!("{MSG}?before=0")).expect(Expect::Json(200, has_messages)),
        get("history: an unknown parameter", format!("{MSG}?bogus=%ff")).expect(Expect::Json(200, has_messages)),
        get(
            "history: a 60,000-digit limit",
            format!("{MSG}?limit={}", "9".repeat(60_000)),
        )
        .error(400),
        get("older: before=abc", "/rooms/general/older?before=abc").error(400),
        get("rooms: limit=1", "/api/rooms?limit=1").expect(Expect::Json(200, has_rooms)),
        get("rooms: limit=500", "/api/rooms?limit=500").expect(Expect::Json(200, has_rooms)),
        get("rooms: after a name that is no room's", "/api/rooms?after=%00..%2F").expect(Expect::Json(200, has_rooms)),
        get("rooms: after the empty name", "/api/rooms?after=").expect(Expect::Json(200, has_rooms)),
        get(
            "rooms: after 300 letters",
            format!("/api/rooms?after={}", "a".repeat(300)),
        )
        .error(400),
        get(
            "rooms: a 60,000-digit limit",
            format!("/api/rooms?limit={}", "9".repeat(60_000)),
        )
        .error(400),
        get(
            "more rooms: after 300 letters",
            format!("/rooms?after={}", "a".repeat(300)),
        )
        .error(400),
        get("more rooms: after markup", "/rooms?after=%3Cscript%3E").expect(Expect::Page(200, &["<script"])),
        get("older: before=-1", "/rooms/general/older?before=-1").error(400),
        get("older: before=1e999", "/rooms/general/older?before=1e999").error(400),
        get(
            "older: before=99999999999999999999",
            "/rooms/general/older?before=99999999999999999999",
        )
        .error(400),
        get("older: no before", "/rooms/general/older").error(400),
        get(
            "older: before the largest id",
            "/rooms/general/older?before=9223372036854775807",
        )
        .expect(Expect::Page(200, &[])),
    ]);
    cases
}

/// The cursors of `events` (a room's stream or the user's): unreadable ones get a reset, good
/// ones resume.
fn cursor_cases(events: &str) -> Vec<Case> {
    let mut cases = vec![say("a message to resume over", "resume over me")];
    cases.extend(BAD_LAST_EVENT_IDS.iter().map(|&(name, id)| {
        get(format!("Last-Event-ID: {name}"), events)
            .header("last-event-id", id)
            .expect(Expect::Reset)
    }));
    cases.extend(
        BAD_AFTERS.iter().map(|&(name, after)| {
            get(format!("after: {name}"), format!("{events}?after={after}")).expect(Expect::Reset)
        }),
    );
    cases.extend([
        get("Last-Event-ID: empty", events)
            .header("last-event-id", "")
            .expect(Expect::Reset),
        get("Last-Event-ID: 100 KB of nines", events)
            .header("last-event-id", "9".repeat(100_000))
            .expect(Expect::Reset),
        get("Last-Event-ID: 100 KB of letters", events)
            .header("last-event-id", "a".repeat(100_000))
            .expect(Expect::Reset),
        // A value that is not ASCII is an unreadable cursor, not a missing one: taking it for no
        // header would start from now and silently skip what the client missed.
        get("Last-Event-ID: an Arabic-Indic digit", events)
            .header("last-event-id", "٣")
            .expect(Expect::Reset),
        get("after: 10,000 digits", format!("{events}?after={}", "9".repeat(10_000))).expect(Expect::Reset),
        get("Last-Event-ID: 0 replays", events)
            .header("last-event-id", "0")
            .expect(Expect::Resumes),
        get("Last-Event-ID: leading zeros", events)
            .header("last-event-id", "0000000000000000000000000")
            .expect(Expect::Resumes),
        get(
            "Last-Event-ID wins over a garbage after",
            format!("{events}?after=garbage"),
        )
        .header("last-event-id", "0")
        .expect(Expect::Resumes),
        get("after: 0 in HTML", format!("{events}?format=html&after=0")).expect(Expect::Resumes),
        get("format: xml", format!("{events}?format=xml")).error(400),
        get("format: JSON in capitals", format!("{events}?format=JSON")).error(400),
        get("format: empty", format!("{events}?format=")).error(400),
        get("format: invalid UTF-8", format!("{events}?format=%ff")).error(400),
        get("format: twice", format!("{events}?format=html&format=json")).error(400),
        get("Accept: JSON", events)
            .header("accept", "application/json")
            .error(406),
        get("Accept: HTML", events).header("accept", "text/html").error(406),
        get("Accept: the stream at q=0", events)
            .header("accept", "text/event-stream;q=0")
            .error(406),
        get("Accept: anything at q=0", events)
            .header("accept", "*/*;q=0")
            .error(406),
        get("Accept: images", events)
            .header("accept", "image/png, image/*")
            .error(406),
        get("Accept: text/* replays", format!("{events}?after=0"))
            .header("accept", "text/*;q=0.5")
            .expect(Expect::Resumes),
        get("stream: no such room", "/api/rooms/nope/events").error(404),
        get(
            "stream: no such room, garbage cursor",
            "/api/rooms/nope/events?after=abc",
        )
        .error(404),
    ]);
    for case in &mut cases {
        case.name = format!("{events}: {}", case.name);
    }
    cases
}

#[tokio::test]
async fn numbers_cursors_and_formats_are_checked() {
    let mut fixture = Fixture::new().await;
    fixture.run(cursor_cases(EVENTS)).await;
    fixture.run(cursor_cases("/api/events")).await;
    fixture.run(history_cases()).await;
    fixture.finish().await;
}

// ---------------------------------------------------------------------------------------------
// Credentials and cross-site requests.

/// `Authorization` values that are not a session: `401`, never anyone's data.
const FORGED_AUTHORIZATIONS: &[(&str, &str)] = &[
    (
        "random 43 characters",
        "Bearer Zm9yZ2VkLXRva2VuLWZvcmdlZC10b2tlbi1mb3JnZWQtdG9r",
    ),
    (
        "42 characters",
        "Bearer Zm9yZ2VkLXRva2VuLWZvcmdlZC10b2tlbi1mb3JnZWQtdG9",
    ),
    (
        "44 characters",
        "Bearer Zm9yZ2VkLXRva2VuLWZvcmdlZC10b2tlbi1mb3JnZWQtdG9rZ",
    ),
    (
        "standard base64",
        "Bearer Zm9y+2VkLXRva2VuLWZvcmdlZC10b2tlbi1mb3JnZWQ/dG9r",
    ),
    (
        "base64 padding",
        "Bearer Zm9yZ2VkLXRva2VuLWZvcmdlZC10b2tlbi1mb3JnZWQtdG9=",
    ),
    ("Bearer and nothing", "Bearer"),
    ("Bearer and spaces", "Bearer    "),
    ("a Basic password", "Basic YWRhOmNvcnJlY3QgaG9yc2UgYmF0dGVyeQ=="),
    ("another scheme", "Token {ada}"),
    ("no scheme", "{ada}"),
    ("ada's token and one more letter", "Bearer {ada}x"),
    ("ada's token with one letter changed", "Bearer {ada_flipped}"),
    ("ada's token twice", "Bearer {ada} {ada}"),
    ("ada's token in a list", "Bearer {ada}, Bearer {bob}"),
    ("SQL", "Bearer ' OR 1=1 --"),
    ("a revoked token", "Bearer {revoked}"),
];

/// `Cookie` values that are not a session.
const FORGED_COOKIES: &[(&str, &str)] = &[
    ("an empty session", "chat_session="),
    (
        "a forged session",
        "chat_session=Zm9yZ2VkLXRva2VuLWZvcmdlZC10b2tlbi1mb3JnZWQtdG9r",
    ),
    ("a revoked session", "chat_session={revoked}"),
    ("ada's token and one more letter", "chat_session={ada}x"),
    ("another cookie's name", "xchat_session={ada}"),
    ("a longer cookie name", "chat_sessionx={ada}"),
    (
        "a forged one first",
        "chat_session=Zm9yZ2VkLXRva2VuLWZvcmdlZC10b2tlbi1mb3JnZWQtdG9r; chat_session={ada}",
    ),
];

fn credential_cases() -> Vec<Case> {
    let mut cases: Vec<Case> = FORGED_AUTHORIZATIONS
        .iter()
        .map(|&(name, value)| {
            get(format!("bearer: {name}"), "/api/rooms")
                .auth(Auth::None)
                .header("authorization", value)
                .error(401)
        })
        .collect();
    cases.extend(FORGED_COOKIES.iter().map(|&(name, value)| {
        get(format!("cookie: {name}"), "/api/rooms")
            .auth(Auth::None)
            .header("cookie", value)
            .error(401)
    }));
    let rooms_listed = |v: &Value| v["rooms"].as_array().map(|_| ()).ok_or_else(|| v.to_string());
    for (route, method, path, body) in [
        ("list rooms", Method::GET, "/api/rooms", None),
        (
            "make a room",
            Method::POST,
            "/api/rooms",
            Some(r#"{"name":"unauthorised"}"#),
        ),
        ("read history", Method::GET, MSG, None),
        ("post", Method::POST, MSG, Some(r#"{"content":"unauthorised"}"#)),
        ("set status", Method::PUT, "/api/status", Some(r#"{"status":"away"}"#)),
        ("open a stream", Method::GET, EVENTS, None),
        ("load older", Method::GET, "/rooms/general/older?before=1", None),
    ] {
        let with_body = |case: Case| match body {
            Some(body) => case.json(body),
            None => case,
        };
        cases.push(with_body(case(format!("nobody: {route}"), method.clone(), path).auth(Auth::None)).error(401));
        cases.push(
            with_body(case(format!("revoked: {route}"), method, path))
                .auth(Auth::None)
                .header("authorization", "Bearer {revoked}")
                .error(401),
        );
    }
    cases.extend([
        get("bearer: a 100 KB token", "/api/rooms")
            .auth(Auth::None)
            .header("authorization", format!("Bearer {}", "A".repeat(100_000)))
            .error(401),
        get("bearer: bytes that are not ASCII", "/api/rooms")
            .auth(Auth::None)
            .header("authorization", &b"Bearer \xff\xfe{ada}"[..])
            .error(401),
        get("bearer: a control character", "/api/rooms")
            .auth(Auth::None)
            .header("authorization", "Bearer {ada}\x01")
            .raw()
            .expect(Expect::Limit(&[400, 401])),
        get("bearer: two spaces before ada's token", "/api/rooms")
            .auth(Auth::None)
            .header("authorization", "Bearer  {ada}")
            .expect(Expect::Json(200, rooms_listed)),
        get("two Authorization headers, the forged one first", "/api/rooms")
            .auth(Auth::None)
            .header(
                "authorization",
                "Bearer Zm9yZ2VkLXRva2VuLWZvcmdlZC10b2tlbi1mb3JnZWQtdG9r",
            )
            .header("authorization", "Bearer {ada}")
            .error(401),
        // Credentials that disagree are refused, whichever comes first.
        get("two Authorization headers, ada's first", "/api/rooms")
            .auth(Auth::None)
            .header("authorization", "Bearer {ada}")
            .header(
                "authorization",
                "Bearer Zm9yZ2VkLXRva2VuLWZvcmdlZC10b2tlbi1mb3JnZWQtdG9r",
            )
            .error(401),
        get("page: a revoked session goes to sign-in", "/rooms/general")
            .auth(Auth::None)
            .header("cookie", "chat_session={revoked}")
            .expect(Expect::Status(303)),
        get("cookie: after another cookie", "/api/rooms")
            .auth(Auth::None)
            .header("cookie", "theme=dark; chat_session={ada}")
            .expect(Expect::Json(200, rooms_listed)),
        // `src/auth.rs`: the bearer token wins over the cookie, and an Authorization header that
        // is not a valid bearer token never falls back to the cookie.
        post_msg("bob's cookie and ada's bearer post as ada", r#"{"content":"whose?"}"#)
            .header("cookie", "chat_session={bob}")
            .stored("whose?"),
        post_msg("a forged cookie and ada's bearer", r#"{"content":"bearer wins"}"#)
            .header(
                "cookie",
                "chat_session=Zm9yZ2VkLXRva2VuLWZvcmdlZC10b2tlbi1mb3JnZWQtdG9r",
            )
            .stored("bearer wins"),
        post_msg("ada's cookie and a forged bearer", r#"{"content":"x"}"#)
            .auth(Auth::AdaCookie)
            .header(
                "authorization",
                "Bearer Zm9yZ2VkLXRva2VuLWZvcmdlZC10b2tlbi1mb3JnZWQtdG9r",
            )
            .error(401),
        post_msg("ada's cookie and a Basic password", r#"{"content":"x"}"#)
            .auth(Auth::AdaCookie)
            .header("authorization", "Basic YWRhOmNvcnJlY3QgaG9yc2UgYmF0dGVyeQ==")
            .error(401),
        post_msg("ada's cookie and a revoked bearer", r#"{"content":"x"}"#)
            .auth(Auth::AdaCookie)
            .header("authorization", "Bearer {revoked}")
            .error(401),
        delete("sign-out: a forged token is a no-op", "/api/sessions")
            .auth(Auth::None)
            .header(
                "authorization",
                "Bearer Zm9yZ2VkLXRva2VuLWZvcmdlZC10b2tlbi1mb3JnZWQtdG9r",
            )
            .expect(Expect::Status(204)),
        delete("sign-out: no token is a no-op", "/api/sessions")
            .auth(Auth::None)
            .expect(Expect::Status(204)),
        get("ada is still signed in", "/api/rooms").expect(Expect::Json(200, rooms_listed)),
    ]);
    cases
}

fn cross_site_cases() -> Vec<Case> {
    let evil = |case: Case| case.auth(Auth::AdaCookie).header("origin", EVIL).error(403);
    let spare = |case: Case| {
        case.auth(Auth::None)
            .header("cookie", "chat_session={spare}")
            .header("origin", EVIL)
            .error(403)
    };
    let rooms_listed = |v: &Value| v["rooms"].as_array().map(|_| ()).ok_or_else(|| v.to_string());
    vec![
        evil(post_msg("cross-site: post", r#"{"content":"csrf"}"#)),
        evil(put("cross-site: set status", "/api/status").json(r#"{"status":"away"}"#)),
        evil(post("cross-site: make a room", "/api/rooms").json(r#"{"name":"csrf"}"#)),
        evil(post("cross-site: the message form", FORM_MSG).form("content=csrf")),
        evil(post("cross-site: the status form", "/status").form("status=away")),
        evil(post("cross-site: the room form", "/rooms").form("name=csrf")),
        spare(delete("cross-site: sign out", "/api/sessions")),
        spare(post("cross-site: the sign-out form", "/signout").form("")),
        get("cross-site: the spare session survived", "/api/rooms")
            .auth(Auth::None)
            .header("cookie", "chat_session={spare}")
            .expect(Expect::Json(200, rooms_listed)),
        post("cross-site: sign up", "/api/users")
            .json(r#"{"username":"csrf","password":"correct horse battery"}"#)
            .auth(Auth::None)
            .header("origin", EVIL)
            .error(403),
        post("cross-site: the sign-up form", "/signup")
            .form("username=csrf&password=correct+horse+battery")
            .auth(Auth::None)
            .header("origin", EVIL)
            .error(403),
        evil(post("cross-site: make an invite", "/api/invites").json("{}")),
        evil(post("cross-site: the invite form", "/admin/invites").form("uses=1&expires_in_hours=1")),
        evil(delete(
            "cross-site: revoke an invite",
            "/api/invites/AAAAAAAAAAAAAAAAAAAAAA",
        )),
        post("cross-site: sign in", "/api/sessions")
            .json(r#"{"username":"ada","password":"correct horse battery"}"#)
            .auth(Auth::None)
            .header("origin", EVIL)
            .error(403),
        post("cross-site: the sign-in form", "/")
            .form("username=mallory&password=correct+horse+battery")
            .auth(Auth::None)
            .header("origin", EVIL)
            .error(403),
        post_msg("cross-site: Origin null", r#"{"content":"csrf"}"#)
            .auth(Auth::AdaCookie)
            .header("origin", "null")
            .error(403),
        post_msg("cross-site: our host as a subdomain", r#"{"content":"csrf"}"#)
            .auth(Auth::AdaCookie)
            .header("origin", "http://{host}.evil.example")
            .error(403),
        post_msg("cross-site: another port", r#"{"content":"csrf"}"#)
            .auth(Auth::AdaCookie)
            .header("origin", "http://127.0.0.1:1")
            .error(403),
        post_msg("cross-site: an Origin without a scheme", r#"{"content":"csrf"}"#)
            .auth(Auth::AdaCookie)
            .header("origin", "{host}")
            .error(403),
        post_msg("cross-site: in capitals", r#"{"content":"csrf"}"#)
            .auth(Auth::AdaCookie)
            .header("origin", "HTTPS://EVIL.EXAMPLE")
            .error(403),
        post_msg(
            "cross-site: a garbage bearer does not unlock the cookie",
            r#"{"content":"csrf"}"#,
        )
        .auth(Auth::AdaCookie)
        .header("origin", EVIL)
        .header("authorization", "Bearer garbage")
        .error(401),
        post_msg("same site: our own Origin", r#"{"content":"same site"}"#)
            .auth(Auth::AdaCookie)
            .header("origin", "{origin}")
            .stored("same site"),
        post_msg(
            "cross-site: a bearer token is not a browser's",
            r#"{"content":"bearer from anywhere"}"#,
        )
        .header("origin", EVIL)
        .stored("bearer from anywhere"),
        get("cross-site: reading is safe", "/api/rooms")
            .auth(Auth::AdaCookie)
            .header("origin", EVIL)
            .expect(Expect::Json(200, rooms_listed)),
    ]
}

#[tokio::test]
async fn forged_and_revoked_credentials_and_cross_site_requests_are_refused() {
    let mut fixture = Fixture::new().await;
    fixture.run(credential_cases()).await;
    fixture.run(cross_site_cases()).await;
    fixture.finish().await;
}

// ---------------------------------------------------------------------------------------------
// Oversized headers and broken framing: the HTTP layer refuses them (`400`, `413`, `414`,
// `431`) or closes the connection; the server lives on. Today hyper serves a 100 KB header (its
// buffer holds about 400 KB), answers a 1 MB header or more than 100 headers with a bare `431`,
// a URI over 64 KB with a bare `414`, and broken framing with a bare `400`, closing each time.

fn framing_cases() -> Vec<Case> {
    let many_headers: String = (0..200).map(|i| format!("X-Header-{i}: v\r\n")).collect();
    let post_head = "POST /api/rooms/general/messages HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\
                     Authorization: Bearer {ada}\r\nContent-Type: application/json\r\n";
    vec![
        get("a 100 KB header", "/healthz")
            .auth(Auth::None)
            .header("x-big", "a".repeat(100_000))
            .expect(Expect::Limit(&[200, 431])),
        get("a 1 MB header", "/healthz")
            .auth(Auth::None)
            .header("x-big", "a".repeat(1 << 20))
            .raw()
            .expect(Expect::Limit(&[431])),
        wire(
            "200 headers",
            format!("GET /healthz HTTP/1.1\r\nHost: {{host}}\r\n{many_headers}Connection: close\r\n\r\n"),
        )
        .expect(Expect::Limit(&[431])),
        get("a 100 KB cookie", "/api/rooms")
            .auth(Auth::None)
            .header("cookie", format!("junk={}", "j".repeat(100_000)))
            .expect(Expect::Limit(&[401, 431])),
        get("a 1 MB cookie beside ada's token", "/api/rooms")
            .header("cookie", format!("junk={}", "j".repeat(1 << 20)))
            .raw()
            .expect(Expect::Limit(&[431])),
        get("a URI of 70 KB", format!("/healthz?{}", "q".repeat(70_000)))
            .auth(Auth::None)
            .raw()
            .expect(Expect::Limit(&[414])),
        get("a control character in a header", "/healthz")
            .auth(Auth::None)
            .header("x-evil", "a\x01b")
            .raw()
            .expect(Expect::Limit(&[400])),
        get("a NUL in a header", "/healthz")
            .auth(Auth::None)
            .header("x-evil", "a\0b")
            .raw()
            .expect(Expect::Limit(&[400])),
        get("a space in a header name", "/healthz")
            .auth(Auth::None)
            .header("x evil", "b")
            .raw()
            .expect(Expect::Limit(&[400])),
        wire(
            "a folded header line",
            "GET /healthz HTTP/1.1\r\nHost: {host}\r\nX-Folded: a\r\n b\r\nConnection: close\r\n\r\n",
        )
        .expect(Expect::Limit(&[200, 400])),
        wire("a garbage request line", "GARBAGE\r\n\r\n").expect(Expect::Limit(&[400])),
        wire("a request line without a version", "GET /healthz\r\n\r\n").expect(Expect::Limit(&[400])),
        wire(
            "HTTP/9.9",
            "GET /healthz HTTP/9.9\r\nHost: {host}\r\nConnection: close\r\n\r\n",
        )
        .expect(Expect::Limit(&[400])),
        get("an unknown method", "/healthz")
            .auth(Auth::None)
            .expect(Expect::Error(405))
            .method("FOO"),
        wire(
            "a 23-digit Content-Length",
            format!("{post_head}Content-Length: 99999999999999999999999\r\n\r\n{{}}"),
        )
        .expect(Expect::Limit(&[400])),
        wire(
            "a negative Content-Length",
            format!("{post_head}Content-Length: -1\r\n\r\n{{}}"),
        )
        .expect(Expect::Limit(&[400])),
        wire(
            "two different Content-Lengths",
            format!("{post_head}Content-Length: 2\r\nContent-Length: 3\r\n\r\n{{}}"),
        )
        .expect(Expect::Limit(&[400])),
        wire(
            "a Content-Length and chunked",
            format!("{post_head}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        )
        .expect(Expect::Limit(&[400])),
        wire(
            "a chunk size that is not hex",
            format!("{post_head}Transfer-Encoding: chunked\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n"),
        )
        .expect(Expect::Limit(&[400])),
        wire(
            "a chunk size over 2^64",
            format!("{post_head}Transfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFFFF\r\n{{}}\r\n0\r\n\r\n"),
        )
        .expect(Expect::Limit(&[400, 413])),
        wire(
            "a terabyte chunk, 70 KB of it sent",
            format!(
                "{post_head}Transfer-Encoding: chunked\r\n\r\nE8D4A51000\r\n{}",
                "a".repeat(70_000)
            ),
        )
        .error(413),
        wire(
            "an unknown transfer coding",
            format!("{post_head}Transfer-Encoding: gzip\r\n\r\n{{}}"),
        )
        .expect(Expect::Limit(&[400])),
    ]
}

#[tokio::test]
async fn oversized_headers_and_broken_framing_do_not_hurt_the_server() {
    let mut fixture = Fixture::new().await;
    fixture.run(framing_cases()).await;
    fixture.finish().await;
}
