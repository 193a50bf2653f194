//! Test harness: the real `chat-server` binary on an ephemeral port and a temporary database,
//! driven over HTTP and SSE. Set `TEST_LOG=debug` to see the server's log.

#![allow(dead_code)] // each test file uses its own part of the harness

pub mod browser;
pub mod eventsource;
pub mod postgres;
pub mod proxy;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use eventsource_stream::{Event as SseEvent, Eventsource};
use futures_util::{Stream, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Every wait in a test is bounded by this, so a broken stream fails fast instead of hanging.
pub const WAIT: Duration = Duration::from_secs(10);

/// A temporary directory holding one database file; removed when dropped.
pub struct TestDb {
    dir: tempfile::TempDir,
}

impl TestDb {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("chat.db")
    }

    /// A separate connection to the database file, as `sqlite3` would open it.
    pub async fn connect(&self) -> sqlx::SqliteConnection {
        use sqlx::ConnectOptions;
        sqlx::sqlite::SqliteConnectOptions::new()
            .filename(self.path())
            .create_if_missing(true)
            .connect()
            .await
            .expect("open the database file")
    }
}

/// A running server process. Dropping it kills the process.
pub struct Server {
    child: Child,
    pub base: String,
    /// What the server wrote to standard error, line by line, when started by `start_logged`.
    logs: Option<Logs>,
}

/// The server's log as it is written.
#[derive(Clone, Default)]
pub struct Logs(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl Logs {
    /// Every line so far.
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    /// Waits until some line satisfies `test`, and returns it.
    pub async fn wait_for(&self, what: &str, test: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(line) = self.lines().into_iter().find(|line| test(line)) {
                return line;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no log line {what} in:\n{}",
                self.lines().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Server {
    /// Starts the server on `db` with the harness defaults and `args` on top.
    pub async fn start(db: &TestDb, args: &[&str]) -> Self {
        Self::start_at(&db.path(), args).await
    }

    pub async fn start_at(db: &Path, args: &[&str]) -> Self {
        Self::start_with(db, args, None, None).await
    }

    /// Starts the server with `RUST_LOG=log` and keeps what it logs (`Server::logs`).
    pub async fn start_logged(db: &TestDb, args: &[&str], log: &str) -> Self {
        Self::start_with(&db.path(), args, None, Some(log)).await
    }

    /// The log of a server started by `start_logged`.
    pub fn logs(&self) -> &Logs {
        self.logs.as_ref().expect("a server started by start_logged")
    }

    /// Starts the server with its open-file limit, soft and hard, set to `files`.
    pub async fn start_with_file_limit(db: &TestDb, args: &[&str], files: u64) -> Self {
        Self::start_with(&db.path(), args, Some(files), None).await
    }

    async fn start_with(db: &Path, args: &[&str], files: Option<u64>, kept: Option<&str>) -> Self {
        let log = match kept {
            Some(log) => log.to_owned(),
            None => std::env::var("TEST_LOG").unwrap_or_else(|_| "error".into()),
        };
        let mut command = Command::new(env!("CARGO_BIN_EXE_chat-server"));
        if let Some(files) = files {
            let limit = libc::rlimit {
                rlim_cur: files,
                rlim_max: files,
            };
            // SAFETY: between fork and exec the child only calls setrlimit, which is
            // async-signal-safe.
            unsafe {
                command.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let mut child = command
            .arg("--db")
            .arg(db)
            .args(args)
            // Through the environment, so that a test's own flags override them.
            .env("CHAT_BIND", "127.0.0.1:0")
            .env("CHAT_PRESENCE_GRACE", "1")
            // Tests sign in and post far faster than people; the limits have their own tests.
            .env("CHAT_MESSAGE_RATE", "0")
            .env("CHAT_SIGNIN_RATE", "0")
            .env("CHAT_SIGNIN_FAILURES", "0")
            .env("CHAT_SIGNUP_RATE", "0")
            .env("CHAT_STATUS_RATE", "0")
            .env("CHAT_ROOM_RATE", "0")
            .env("CHAT_STREAM_RATE", "0")
            .env("CHAT_ACCOUNT_RATE", "0")
            .env("CHAT_DM_RATE", "0")
            .env("CHAT_MEMBER_RATE", "0")
            .env("CHAT_INVITE_RATE", "0")
            .env("CHAT_SEARCH_RATE", "0")
            // Anyone may make an account, so a test makes its people with `user`; the tests of
            // invites and the other modes say `--signup` themselves.
            .env("CHAT_SIGNUP", "open")
            .env("RUST_LOG", log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(if kept.is_some() {
                Stdio::piped()
            } else {
                Stdio::inherit()
            })
            .kill_on_drop(true)
            .spawn()
            .expect("start chat-server");
        let logs = child.stderr.take().map(|stderr| {
            let logs = Logs::default();
            let kept = logs.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    kept.0.lock().unwrap().push(line);
                }
            });
            logs
        });
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .expect("server announces its address in time")
            .expect("read stdout")
            .expect("server printed its address");
        let base = line
            .rsplit_once(' ')
            .map(|(_, url)| url.to_owned())
            .expect("address line");
        Self { child, base, logs }
    }

    pub fn pid(&self) -> i32 {
        self.child.id().expect("running") as i32
    }

    /// Whether the process is still running: it has neither exited nor crashed.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL: no clean-up at all, as in a crash or power cut.
    pub async fn kill(mut self) {
        self.child.kill().await.expect("kill");
    }

    /// SIGTERM, then wait for the process to exit; returns its exit status.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("server exits after SIGTERM")
            .expect("wait")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// The address the server listens on, for raw sockets.
    pub fn addr(&self) -> std::net::SocketAddr {
        let addr = self.base.trim_start_matches("http://").trim_start_matches("https://");
        addr.parse().expect("socket address")
    }

    /// `/metrics`, as text.
    async fn metrics_text(&self) -> String {
        reqwest::get(self.url("/metrics"))
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics")
    }

    /// The current value of a Prometheus metric, read from `/metrics`.
    pub async fn metric(&self, name: &str) -> f64 {
        let text = self.metrics_text().await;
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
    }

    /// The sum of a metric over all its labels (`chat_refused_by_limits_total` over every
    /// `limit`).
    pub async fn metric_sum(&self, name: &str) -> f64 {
        self.metrics_text()
            .await
            .lines()
            .filter_map(|line| {
                let rest = line.strip_prefix(name)?;
                let value = match rest.strip_prefix('{') {
                    Some(labelled) => labelled.split_once("} ")?.1,
                    None => rest.strip_prefix(' ')?,
                };
                value.trim().parse::<f64>().ok()
            })
            .sum()
    }

    /// Waits until a metric reads `value`.
    pub async fn wait_for_metric(&self, name: &str, value: f64) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.metric(name).await != value {
            assert!(tokio::time::Instant::now() < deadline, "{name} never reached {value}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A client without a session whose connections come from `127.0.0.{last}`.
    pub fn anonymous_from(&self, last: u8) -> Client {
        let http = reqwest::Client::builder()
            .local_address(std::net::IpAddr::from([127, 0, 0, last]))
            .build()
            .expect("client");
        Client {
            http,
            ..self.anonymous()
        }
    }

    pub fn anonymous(&self) -> Client {
        Client {
            http: reqwest::Client::new(),
            base: self.base.clone(),
            token: None,
            username: String::new(),
        }
    }

    /// Signs up as `username` (or, if the account exists, signs in) and returns a client
    /// carrying the token. Needs a server that lets anyone sign up (the harness's default).
    pub async fn user(&self, username: &str) -> Client {
        let mut client = self.anonymous();
        let mut response = client.sign_up(username, "correct horse battery").await;
        // Taken; or, on a server that takes no sign-up without an invite, refused before the
        // name is looked at.
        if matches!(response.status().as_u16(), 403 | 409) {
            response = client.sign_in(username, "correct horse battery").await;
        }
        assert!(
            response.status().is_success(),
            "sign-up or sign-in of {username}: {}",
            response.status()
        );
        let body: Value = response.json().await.expect("session body");
        client.token = Some(body["token"].as_str().expect("token").to_owned());
        client.username = username.to_owned();
        client
    }
}

/// An HTTP client for one user of one server.
#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
    pub token: Option<String>,
    pub username: String,
}

impl Client {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// The same user against another server (after a restart on the same database).
    pub fn against(&self, server: &Server) -> Self {
        Self {
            base: server.base.clone(),
            ..self.clone()
        }
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, self.url(path));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// `GET path` and its JSON body, whatever the status.
    pub async fn get_json(&self, path: &str) -> Value {
        self.request(reqwest::Method::GET, path)
            .send()
            .await
            .unwrap_or_else(|error| panic!("GET {path}: {error}"))
            .json()
            .await
            .unwrap_or_else(|error| panic!("GET {path}: not JSON: {error}"))
    }

    /// `POST /api/users`: signs up, without an invite.
    pub async fn sign_up(&self, username: &str, password: &str) -> reqwest::Response {
        self.sign_up_with(json!({ "username": username, "password": password }))
            .await
    }

    /// `POST /api/users` with this body, with the client's token if it has one (an admin's
    /// makes the account for someone else).
    pub async fn sign_up_with(&self, body: Value) -> reqwest::Response {
        self.request(reqwest::Method::POST, "/api/users")
            .json(&body)
            .send()
            .await
            .expect("POST /api/users")
    }

    pub async fn sign_in(&self, username: &str, password: &str) -> reqwest::Response {
        self.http
            .post(self.url("/api/sessions"))
            .json(&json!({ "username": username, "password": password }))
            .send()
            .await
            .expect("POST /api/sessions")
    }

    pub async fn post(&self, room: &str, content: &str) -> reqwest::Response {
        self.request(reqwest::Method::POST, &format!("/api/rooms/{room}/messages"))
            .json(&json!({ "content": content }))
            .send()
            .await
            .expect("POST message")
    }

    /// Posts `body` as it is (content, client_id, or anything else) and returns the status and
    /// the JSON answer.
    pub async fn post_json(&self, room: &str, body: Value) -> (u16, Value) {
        let response = self
            .request(reqwest::Method::POST, &format!("/api/rooms/{room}/messages"))
            .json(&body)
            .send()
            .await
            .expect("POST message");
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON answer"))
    }

    /// Posts and returns the stored event, asserting `201`.
    pub async fn say(&self, room: &str, content: &str) -> Value {
        let response = self.post(room, content).await;
        assert_eq!(response.status(), 201, "posting to {room}");
        response.json().await.expect("event body")
    }

    pub async fn set_status(&self, status: &str) -> reqwest::Response {
        self.request(reqwest::Method::PUT, "/api/status")
            .json(&json!({ "status": status }))
            .send()
            .await
            .expect("PUT /api/status")
    }

    pub async fn create_room(&self, name: &str) -> reqwest::Response {
        self.request(reqwest::Method::POST, "/api/rooms")
            .json(&json!({ "name": name }))
            .send()
            .await
            .expect("POST /api/rooms")
    }

    /// Makes the private room `name`, asserting `201`.
    pub async fn create_private_room(&self, name: &str) {
        let response = self
            .request(reqwest::Method::POST, "/api/rooms")
            .json(&json!({ "name": name, "private": true }))
            .send()
            .await
            .expect("POST /api/rooms");
        assert_eq!(response.status(), 201, "making private room {name}");
    }

    /// `PUT` (`join`) or `DELETE /api/rooms/{room}/members/{username}`: the status and the
    /// JSON answer (`Null` for none).
    pub async fn membership(&self, room: &str, username: &str, join: bool) -> (u16, Value) {
        let method = if join {
            reqwest::Method::PUT
        } else {
            reqwest::Method::DELETE
        };
        let response = self
            .request(method, &format!("/api/rooms/{room}/members/{username}"))
            .send()
            .await
            .expect("members request");
        let status = response.status().as_u16();
        let body = response.text().await.expect("members answer");
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    }

    /// Adds `username` to `room`, asserting `200`; the `member` event.
    pub async fn add_member(&self, room: &str, username: &str) -> Value {
        let (status, event) = self.membership(room, username, true).await;
        assert_eq!(status, 200, "adding {username} to {room}: {event}");
        event
    }

    /// `POST /api/dms` with `usernames`: the status and the room.
    pub async fn dm(&self, usernames: &[&str]) -> (u16, Value) {
        let response = self
            .request(reqwest::Method::POST, "/api/dms")
            .json(&json!({ "usernames": usernames }))
            .send()
            .await
            .expect("POST /api/dms");
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON answer"))
    }

    /// The status of `GET /api/rooms/{room}/messages`.
    pub async fn history_status(&self, room: &str) -> u16 {
        self.request(reqwest::Method::GET, &format!("/api/rooms/{room}/messages"))
            .send()
            .await
            .expect("GET history")
            .status()
            .as_u16()
    }

    pub async fn history(&self, room: &str, query: &str) -> Vec<Value> {
        let response = self
            .request(reqwest::Method::GET, &format!("/api/rooms/{room}/messages{query}"))
            .send()
            .await
            .expect("GET history");
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.expect("history body");
        body["messages"].as_array().expect("messages").clone()
    }

    /// Opens `/api/rooms/{room}/events{query}`, with `Last-Event-ID` if given, and waits for
    /// the response head (the server has subscribed by then).
    pub async fn open_stream(&self, room: &str, query: &str, last_event_id: Option<&str>) -> Stream200 {
        self.open_events(&format!("/api/rooms/{room}/events{query}"), last_event_id)
            .await
    }

    /// Opens the user's stream, `/api/events{query}`, as `open_stream` does a room's.
    pub async fn open_user_stream(&self, query: &str, last_event_id: Option<&str>) -> Stream200 {
        self.open_events(&format!("/api/events{query}"), last_event_id).await
    }

    async fn open_events(&self, path: &str, last_event_id: Option<&str>) -> Stream200 {
        let mut request = self.request(reqwest::Method::GET, path);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = tokio::time::timeout(WAIT, request.send())
            .await
            .expect("stream opens in time")
            .expect("GET events");
        assert_eq!(response.status(), 200, "opening {path}");
        Stream200::from(response)
    }
}

impl From<reqwest::Response> for Stream200 {
    /// Reads the events of a `200 text/event-stream` response.
    fn from(response: reqwest::Response) -> Self {
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Stream200 {
            events: Box::pin(response.bytes_stream().eventsource()),
        }
    }
}

type Events = std::pin::Pin<
    Box<dyn Stream<Item = Result<SseEvent, eventsource_stream::EventStreamError<reqwest::Error>>> + Send>,
>;

/// An open event stream, parsed by an independent SSE parser.
pub struct Stream200 {
    events: Events,
}

impl Stream200 {
    /// The next event but `ping`s, or `None` when the server ended the stream.
    pub async fn next(&mut self) -> Option<SseEvent> {
        loop {
            let event = self.next_with_pings().await?;
            if event.event != "ping" {
                return Some(event);
            }
        }
    }

    /// The next event, `ping`s included.
    pub async fn next_with_pings(&mut self) -> Option<SseEvent> {
        tokio::time::timeout(WAIT, self.events.next())
            .await
            .expect("an event arrives in time")
            .map(|event| event.expect("well-formed event"))
    }

    /// The next event, which must exist.
    pub async fn expect(&mut self) -> SseEvent {
        self.next().await.expect("stream still open")
    }

    /// The next event's data as JSON.
    pub async fn expect_json(&mut self) -> (SseEvent, Value) {
        let event = self.expect().await;
        let value = serde_json::from_str(&event.data).expect("JSON data");
        (event, value)
    }

    /// The next `message` event (skipping status changes) and its data as JSON.
    pub async fn next_message(&mut self) -> (SseEvent, Value) {
        loop {
            let (event, value) = self.expect_json().await;
            if event.event == "message" {
                return (event, value);
            }
        }
    }

    /// Events until one with id `last` (inclusive), skipping status events if `messages_only`.
    pub async fn until_id(&mut self, last: i64, messages_only: bool) -> Vec<SseEvent> {
        let mut seen = Vec::new();
        loop {
            let event = self.expect().await;
            let id: i64 = event.id.parse().expect("numeric id");
            if !messages_only || event.event == "message" {
                seen.push(event);
            }
            if id >= last {
                return seen;
            }
        }
    }

    /// Every event but `ping`s until none has come for `quiet`.
    pub async fn collect_for(&mut self, quiet: Duration) -> Vec<SseEvent> {
        let mut seen = Vec::new();
        loop {
            match tokio::time::timeout(quiet, self.next()).await {
                Ok(Some(event)) => seen.push(event),
                Ok(None) | Err(_) => return seen,
            }
        }
    }

    /// Whether nothing but `ping`s arrives within `quiet`.
    pub async fn is_quiet_for(&mut self, quiet: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + quiet;
        loop {
            match tokio::time::timeout_at(deadline, self.events.next()).await {
                Err(_) => return true,
                Ok(Some(Ok(event))) if event.event == "ping" => {}
                Ok(_) => return false,
            }
        }
    }
}

/// The ids of a list of SSE events.
pub fn ids(events: &[SseEvent]) -> Vec<i64> {
    events.iter().map(|e| e.id.parse().expect("numeric id")).collect()
}

/// The rendered text of message `id` in an HTML fragment or page: what its
/// `<div id="text-{id}" …>` holds, up to the reactions that follow it.
pub fn rendered_text(html: &str, id: i64) -> Option<&str> {
    let open = format!("<div id=\"text-{id}\" ");
    let (_, rest) = html.split_once(open.as_str())?;
    let (_, inner) = rest.split_once('>')?;
    let close = format!("</div><div id=\"reactions-{id}\" ");
    inner.split_once(close.as_str()).map(|(inner, _)| inner)
}

/// What the server shows for `text` (mentioning no one): the one renderer's output, which its
/// own tests hold to the rules (no raw HTML, only safe links, no line end in a frame).
pub fn rendering_of(text: &str) -> String {
    chat::wire::markdown::render(text, &[])
}

/// A message's HTML text with each direction control's element (`<span class="bidi" ...>`)
/// replaced by the control it holds; `Err` if such an element is malformed.
pub fn without_bidi_spans(html: &str) -> Result<String, String> {
    const OPEN: &str = r#"<span class="bidi" data-cp="U+"#;
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(at) = rest.find(OPEN) {
        out.push_str(&rest[..at]);
        let after = &rest[at + OPEN.len()..];
        let (code, after) = after.split_once("\">").ok_or_else(|| html.to_owned())?;
        let control = after.chars().next().ok_or_else(|| html.to_owned())?;
        if format!("{:04X}", u32::from(control)) != code {
            return Err(html.to_owned());
        }
        out.push(control);
        rest = after[control.len_utf8()..]
            .strip_prefix("</span>")
            .ok_or_else(|| html.to_owned())?;
    }
    out.push_str(rest);
    Ok(out)
}

/// Everything read from `socket` until the peer closes it or `wait` passes.
pub async fn read_until_closed(socket: &mut tokio::net::TcpStream, wait: Duration) -> String {
    use tokio::io::AsyncReadExt;
    let mut answer = Vec::new();
    let mut buffer = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, socket.read(&mut buffer)).await {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buffer[..n]);
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// xorshift64*: randomness for a test's choices, replayable from its seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// A number in `low..=high`.
    pub fn between(&mut self, (low, high): (u64, u64)) -> u64 {
        low + self.next() % (high - low + 1)
    }
}

/// The seed in the environment variable `var` if set (to replay a run), else the clock.
pub fn seed(var: &str) -> u64 {
    match std::env::var(var) {
        Ok(seed) => seed.parse().unwrap_or_else(|_| panic!("{var} is a number")),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    }
}
