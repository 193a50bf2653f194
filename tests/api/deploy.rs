//! The configurations in `docs/deploy/`, run: Debian's nginx, HAProxy and Caddy, each started
//! as a plain process on ephemeral ports with the file as shipped (only its listen addresses,
//! file paths and upstream address replaced, the TLS listeners by plain ones, since the client
//! here speaks plain HTTP), in front of the real server. A client that follows streams exactly
//! as the HTML standard's EventSource does (`common::eventsource`: it gives up for good on any
//! answer but `200 text/event-stream`) follows the user's stream and a room's while messages are
//! posted, the server is killed and stays down until each client has been answered by the
//! proxy at least twice, and is started again; every acknowledged message arrives exactly
//! once, in order. The same run against nginx without the configuration's answer for a server
//! that is down shows the client give up: what the test would catch.
//!
//! A missing proxy binary fails the test (`.ci/run` installs them), never skips it.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::process::{Child, Command};

use crate::common::eventsource::{EventSource, Report};
use crate::common::{Client, Server, TestDb, WAIT};

/// Messages posted in each run: some before the kill, some while the server is down (each
/// retried, with its `client_id`, until acknowledged), some after.
const MESSAGES: usize = 40;
/// The message after which the server is killed.
const KILL_AFTER: usize = 15;
/// How long a client may take to come back once the server is up again: its reconnection
/// time (1 s from the proxy's answer) and a margin for a loaded machine.
const RECOVERY: Duration = Duration::from_secs(30);
/// The streams each run follows, one client each: every stream path there is.
const STREAMS: [&str; 2] = ["/api/events", "/api/rooms/general/events"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Nginx,
    Haproxy,
    Caddy,
}

fn docs(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/deploy").join(file)
}

/// `text` with `from` replaced by `to`; `from` must be there, so a change to the shipped file
/// that the test no longer matches fails here rather than testing something else.
fn replace(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "the shipped configuration no longer has {from:?}");
    text.replace(from, to)
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// The path of `program`, from `PATH` or the sbin directories Debian puts daemons in; a test
/// fails, loudly, when it is missing.
fn binary(program: &str) -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/usr/bin", "/sbin"])
        .map(|dir| Path::new(dir).join(program))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("{program} is not installed: `apt-get install {program}` (.ci/run installs it)"))
}

/// A proxy process in front of a server; killed when dropped.
struct Deployed {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Deployed {
    /// Starts `kind` on `port`, forwarding to `upstream`, with the shipped configuration passed
    /// through `edit` (the identity, but for the tests that take something out of it).
    async fn start(kind: Kind, port: u16, upstream: &str, edit: impl Fn(String) -> String) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let redirect = free_port();
        let mut command = match kind {
            Kind::Nginx => {
                let site = std::fs::read_to_string(docs("nginx.conf")).expect("nginx.conf");
                let site = replace(&site, "server 127.0.0.1:8080;", &format!("server {upstream};"));
                let site = replace(
                    &site,
                    "    listen 80;\n    listen [::]:80;\n",
                    &format!("    listen 127.0.0.1:{redirect};\n"),
                );
                let site = replace(
                    &site,
                    "    listen 443 ssl http2;\n    listen [::]:443 ssl http2;\n",
                    &format!("    listen 127.0.0.1:{port};\n"),
                );
                // nginx loads the certificate even with no TLS listener left.
                let (cert, key) = certificate(dir.path()).await;
                let site = replace(&site, "/etc/letsencrypt/live/chat.example.com/fullchain.pem", &cert);
                let site = replace(&site, "/etc/letsencrypt/live/chat.example.com/privkey.pem", &key);
                std::fs::write(dir.path().join("chat.conf"), edit(site)).unwrap();
                let d = dir.path().display();
                // What Debian's /etc/nginx/nginx.conf gives a site, less what would need root or
                // its directories: one process in the foreground, logs to stderr.
                let main = format!(
                    "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log stderr warn;\n\
                     events {{}}\nhttp {{\n    access_log off;\n    client_body_temp_path {d}/body;\n\
                     proxy_temp_path {d}/proxy;\n    fastcgi_temp_path {d}/fastcgi;\n    uwsgi_temp_path {d}/uwsgi;\n\
                     scgi_temp_path {d}/scgi;\n    include {d}/chat.conf;\n}}\n"
                );
                std::fs::write(dir.path().join("nginx.conf"), main).unwrap();
                let mut command = Command::new(binary("nginx"));
                command
                    .arg("-p")
                    .arg(dir.path())
                    .arg("-e")
                    .arg("stderr")
                    .arg("-c")
                    .arg(dir.path().join("nginx.conf"));
                command
            }
            Kind::Haproxy => {
                let cfg = std::fs::read_to_string(docs("haproxy.cfg")).expect("haproxy.cfg");
                let cfg = replace(&cfg, "127.0.0.1:8080", upstream);
                let cfg = replace(
                    &cfg,
                    "    bind :80\n    bind :::80 v6only\n",
                    &format!("    bind 127.0.0.1:{redirect}\n"),
                );
                let tls = "ssl crt /etc/haproxy/certs/chat.example.com.pem alpn h2,http/1.1";
                let cfg = replace(
                    &cfg,
                    &format!("    bind :443 {tls}\n    bind :::443 v6only {tls}\n"),
                    &format!("    bind 127.0.0.1:{port}\n"),
                );
                let retry = docs("stream-retry.http");
                let cfg = replace(
                    &cfg,
                    "/etc/haproxy/errors/chat-stream-retry.http",
                    &retry.display().to_string(),
                );
                std::fs::write(dir.path().join("haproxy.cfg"), edit(cfg)).unwrap();
                let mut command = Command::new(binary("haproxy"));
                command.arg("-db").arg("-f").arg(dir.path().join("haproxy.cfg"));
                command
            }
            Kind::Caddy => {
                let file = std::fs::read_to_string(docs("Caddyfile")).expect("Caddyfile");
                let file = replace(&file, "127.0.0.1:8080", upstream);
                let file = replace(&file, "chat.example.com {", &format!("http://127.0.0.1:{port} {{"));
                let file = replace(&file, "localhost:2019", &format!("localhost:{}", free_port()));
                std::fs::write(dir.path().join("Caddyfile"), edit(file)).unwrap();
                let mut command = Command::new(binary("caddy"));
                command
                    .arg("run")
                    .arg("--adapter")
                    .arg("caddyfile")
                    .arg("--config")
                    .arg(dir.path().join("Caddyfile"))
                    // Caddy keeps its state under these; nothing outside the test's directory.
                    .env("HOME", dir.path())
                    .env("XDG_DATA_HOME", dir.path())
                    .env("XDG_CONFIG_HOME", dir.path());
                command
            }
        };
        let quiet = std::env::var("TEST_LOG").is_err();
        let child = command
            .stdin(Stdio::null())
            .stdout(if quiet { Stdio::null() } else { Stdio::inherit() })
            .stderr(if quiet { Stdio::null() } else { Stdio::inherit() })
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| panic!("start {kind:?}: {error}"));
        let mut deployed = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        deployed.wait_until_listening(kind, port).await;
        deployed
    }

    async fn wait_until_listening(&mut self, kind: Kind, port: u16) {
        let deadline = Instant::now() + WAIT;
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{kind:?} exited at start-up ({status}); TEST_LOG=1 shows why");
            }
            assert!(Instant::now() < deadline, "{kind:?} never listened on {port}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A self-signed certificate and its key, made with the `openssl` command, as PEM files in `dir`.
async fn certificate(dir: &Path) -> (String, String) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = Command::new(binary("openssl"))
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .expect("run openssl");
    assert!(made.success(), "openssl made no certificate");
    (cert.display().to_string(), key.display().to_string())
}

/// Posts `content` through the proxy until it is acknowledged, with one `client_id`, so a post
/// that was stored but whose answer was lost is not stored twice. Returns the message's id.
async fn post_until_acknowledged(poster: &Client, n: usize, content: &str) -> i64 {
    let client_id = format!("00000000-0000-4000-8000-{n:012}");
    let body = json!({"content": content, "client_id": client_id});
    let deadline = Instant::now() + RECOVERY;
    loop {
        let sent = poster
            .request(reqwest::Method::POST, "/api/rooms/general/messages")
            .json(&body)
            .send()
            .await;
        let last = match sent {
            Ok(response) if response.status().is_success() => {
                let reply: serde_json::Value = response.json().await.expect("JSON answer");
                return reply["id"].as_i64().expect("id");
            }
            Ok(response) => response.status().to_string(),
            Err(error) => error.to_string(),
        };
        assert!(Instant::now() < deadline, "{content:?} never acknowledged: {last}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What one client has seen so far.
#[derive(Default)]
struct Followed {
    /// The ids of the `message` events, in the order they came.
    messages: Vec<i64>,
    /// Connections that ended having dispatched nothing: the proxy's answer for a server that
    /// is down (the server's own streams begin with a ping).
    empty_answers: usize,
    failed: Option<String>,
}

impl Followed {
    fn take(&mut self, report: Report) {
        match report {
            Report::Event(event) if event.event_type == "message" => {
                self.messages
                    .push(event.last_event_id.parse().expect("message ids are numbers"));
            }
            Report::Event(_) | Report::Opened => {}
            Report::Ended { dispatched, .. } => self.empty_answers += usize::from(dispatched == 0),
            Report::Failed(why) => self.failed = Some(why),
        }
    }

    /// Reads `source` until `done` says so or the source fails; panics after `wait`.
    async fn until(&mut self, source: &mut EventSource, wait: Duration, done: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + wait;
        while !done(self) && self.failed.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            match source.next_within(left).await {
                Some(report) => self.take(report),
                None => panic!(
                    "timed out: {} messages, {} empty answers",
                    self.messages.len(),
                    self.empty_answers
                ),
            }
        }
    }
}

/// The run the module's doc describes, against `kind` with its configuration through `edit`.
/// Returns what each client saw and the acknowledged ids, in the order acknowledged.
async fn restart_behind(kind: Kind, edit: impl Fn(String) -> String) -> (Vec<Followed>, Vec<i64>) {
    let db = TestDb::new();
    let (port, proxy_port) = (free_port(), free_port());
    let public = format!("http://127.0.0.1:{proxy_port}");
    let bind = format!("127.0.0.1:{port}");
    let args = [
        "--bind",
        &bind,
        "--public-origin",
        &public,
        "--trust-proxy",
        "127.0.0.1",
    ];
    let server = Server::start(&db, &args).await;
    let proxy = Deployed::start(kind, proxy_port, &bind, edit).await;

    let mut ada = server.user("ada").await;
    ada.base = proxy.base.clone();
    // The server names each request by the id the proxy gave it (its own are 16 hex digits).
    let id = ada
        .request(reqwest::Method::GET, "/api/me")
        .send()
        .await
        .unwrap()
        .headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let hex = |id: &str, upper: bool| {
        id.bytes().all(|b| {
            b.is_ascii_digit()
                || if upper {
                    b.is_ascii_uppercase()
                } else {
                    b.is_ascii_lowercase()
                } && b.is_ascii_hexdigit()
        })
    };
    let proxys = match kind {
        Kind::Nginx => id.len() == 32 && hex(&id, false),
        Kind::Caddy => id.len() == 36 && id.matches('-').count() == 4,
        Kind::Haproxy => id.len() > 16 && hex(&id, true),
    };
    assert!(proxys, "{kind:?}: the request id {id:?} is not the proxy's");
    let mut sources = STREAMS.map(|path| EventSource::open(ada.url(path), ada.token.clone()));
    let mut followed = [Followed::default(), Followed::default()];
    // Both streams are open (their first ping came) before anything is posted.
    for (source, seen) in sources.iter_mut().zip(&mut followed) {
        let mut pinged = false;
        while !pinged {
            match source
                .next_within(WAIT)
                .await
                .expect("the stream opens through the proxy")
            {
                Report::Event(event) => pinged = event.event_type == "ping",
                Report::Failed(why) => panic!("{kind:?}: the stream failed at once: {why}"),
                _ => {}
            }
        }
        assert!(seen.messages.is_empty());
    }

    let mut acknowledged = Vec::new();
    for n in 0..KILL_AFTER {
        acknowledged.push(post_until_acknowledged(&ada, n, &format!("before {n}")).await);
    }
    server.kill().await;
    // Posting goes on while the server is down; each waits for the server to come back.
    let poster = {
        let ada = ada.clone();
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in KILL_AFTER..MESSAGES {
                ids.push(post_until_acknowledged(&ada, n, &format!("after {n}")).await);
            }
            ids
        })
    };
    // Down until every client has been answered by the proxy at least twice (or gave up).
    for (source, seen) in sources.iter_mut().zip(&mut followed) {
        seen.until(source, RECOVERY, |seen| seen.empty_answers >= 2).await;
    }
    if followed.iter().all(|seen| seen.failed.is_some()) {
        return (followed.into(), acknowledged);
    }
    let _server = Server::start(&db, &args).await;
    acknowledged.extend(poster.await.expect("poster"));
    let last = *acknowledged.last().expect("messages");
    for (source, seen) in sources.iter_mut().zip(&mut followed) {
        seen.until(source, RECOVERY, |seen| seen.messages.last() >= Some(&last))
            .await;
    }
    (followed.into(), acknowledged)
}

/// Every acknowledged message exactly once, in order, on every stream.
async fn survives_a_restart(kind: Kind) {
    let (followed, acknowledged) = restart_behind(kind, |config| config).await;
    for (seen, stream) in followed.iter().zip(STREAMS) {
        assert_eq!(seen.failed, None, "{kind:?} {stream}: the client gave up");
    }
    assert_eq!(acknowledged.len(), MESSAGES);
    assert_eq!(
        acknowledged.iter().collect::<HashSet<_>>().len(),
        MESSAGES,
        "one id each"
    );
    for (seen, stream) in followed.iter().zip(STREAMS) {
        assert!(
            seen.empty_answers >= 2,
            "{kind:?} {stream}: the proxy answered while down"
        );
        assert_eq!(
            seen.messages, acknowledged,
            "{kind:?} {stream}: every message once, in order"
        );
    }
}

#[tokio::test]
async fn an_eventsource_behind_nginx_survives_a_restart() {
    survives_a_restart(Kind::Nginx).await;
}

#[tokio::test]
async fn an_eventsource_behind_haproxy_survives_a_restart() {
    survives_a_restart(Kind::Haproxy).await;
}

#[tokio::test]
async fn an_eventsource_behind_caddy_survives_a_restart() {
    survives_a_restart(Kind::Caddy).await;
}

/// Without the configuration's answer for a server that is down, nginx's `502` ends a
/// standard client for good: this is what the tests above would catch.
#[tokio::test]
async fn without_the_retry_answer_nginx_loses_the_eventsource() {
    let strip = |config: String| {
        replace(
            &config,
            "        proxy_intercept_errors on;\n        error_page 502 503 504 = @stream_retry;\n",
            "",
        )
    };
    let (followed, _) = restart_behind(Kind::Nginx, strip).await;
    for seen in &followed {
        let why = seen.failed.as_deref().expect("the client gives up");
        assert!(why.starts_with("502 "), "{why}");
    }
}

/// Not a test but a measurement (run it with `cargo test --release --test api -- --ignored
/// deploy::haproxy_per_event_delay --nocapture`): the time from posting a message to its frame
/// on a stream, one message at a time, straight from the server and through HAProxy with and
/// without `option http-no-delay`.
#[tokio::test]
#[ignore]
async fn haproxy_per_event_delay() {
    let db = TestDb::new();
    let (port, shipped_port, default_port) = (free_port(), free_port(), free_port());
    let bind = format!("127.0.0.1:{port}");
    let publics = format!("http://127.0.0.1:{shipped_port},http://127.0.0.1:{default_port}");
    let args = [
        "--bind",
        &bind,
        "--public-origin",
        &publics,
        "--trust-proxy",
        "127.0.0.1",
    ];
    let server = Server::start(&db, &args).await;
    let _shipped = Deployed::start(Kind::Haproxy, shipped_port, &bind, |config| config).await;
    let without = |config: String| replace(&config, "    option http-no-delay\n", "");
    let _default = Deployed::start(Kind::Haproxy, default_port, &bind, without).await;
    let ada = server.user("ada").await;
    for (name, base) in [
        ("direct", server.base.clone()),
        ("haproxy.cfg as shipped", format!("http://127.0.0.1:{shipped_port}")),
        (
            "without option http-no-delay",
            format!("http://127.0.0.1:{default_port}"),
        ),
    ] {
        let mut via = ada.clone();
        via.base = base;
        let mut source = EventSource::open(via.url("/api/events"), via.token.clone());
        let mut pinged = false;
        while !pinged {
            if let Some(Report::Event(event)) = source.next_within(WAIT).await {
                pinged = event.event_type == "ping";
            }
        }
        let mut delays = Vec::new();
        for n in 0..40 {
            let posted = Instant::now();
            let poster = via.clone();
            let send = tokio::spawn(async move { poster.say("general", &format!("timed {n}")).await });
            loop {
                match source.next_within(WAIT).await.expect("the frame") {
                    Report::Event(event) if event.event_type == "message" => break,
                    Report::Failed(why) => panic!("{why}"),
                    _ => {}
                }
            }
            delays.push(posted.elapsed());
            send.await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        delays.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "{name}: post to frame median {:.1} ms, p90 {:.1} ms, max {:.1} ms ({} posts)",
            ms(delays[delays.len() / 2]),
            ms(delays[delays.len() * 9 / 10]),
            ms(delays[delays.len() - 1]),
            delays.len()
        );
    }
}

/// The systemd unit is one systemd reads without a complaint (an unknown or misspelt setting
/// is only a warning to systemd, so any output fails), pointing at the binary under test.
#[tokio::test]
async fn the_systemd_unit_is_read_without_a_warning() {
    let dir = tempfile::tempdir().expect("temp dir");
    let unit = std::fs::read_to_string(docs("chat.service")).expect("chat.service");
    let unit = replace(
        &unit,
        "ExecStart=/usr/local/bin/chat-server\n",
        &format!("ExecStart={}\n", env!("CARGO_BIN_EXE_chat-server")),
    );
    let path = dir.path().join("chat.service");
    std::fs::write(&path, unit).unwrap();
    let verified = Command::new(binary("systemd-analyze"))
        .arg("verify")
        .arg(&path)
        .output()
        .await
        .expect("run systemd-analyze");
    let said = String::from_utf8_lossy(&verified.stderr).into_owned() + &String::from_utf8_lossy(&verified.stdout);
    assert!(verified.status.success() && said.trim().is_empty(), "{said}");
}
