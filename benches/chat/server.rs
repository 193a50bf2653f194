//! The server under test: the release binary started on a fresh temporary database with the
//! per-user limits off, or a server already running at `--url`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, anyhow, bail};
use hyper::{Method, StatusCode};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::client::{self, Endpoint};
use crate::stats;

/// Flags every started server gets unless `--server-arg` or the scenario sets them: benchmarks
/// measure the server, not its per-user limits.
const BENCH_FLAGS: &[(&str, &str)] = &[
    ("--bind", "127.0.0.1:0"),
    ("--message-rate", "0"),
    ("--signin-rate", "0"),
    ("--max-streams", "0"),
    ("--max-replay", "0"),
    ("--max-connections", "0"),
    ("--max-connections-per-address", "0"),
    ("--max-streams-per-user", "0"),
];

/// The server's command-line flags: `BENCH_FLAGS` not overridden, then `extra`, then `args`.
fn server_flags<'a>(extra: &'a [String], args: &'a [&'a str]) -> Vec<&'a str> {
    let given: Vec<&str> = extra.iter().map(String::as_str).chain(args.iter().copied()).collect();
    let is_given = |flag: &str| {
        given
            .iter()
            .any(|arg| *arg == flag || arg.strip_prefix(flag).is_some_and(|rest| rest.starts_with('=')))
    };
    let mut flags: Vec<&str> = BENCH_FLAGS
        .iter()
        .filter(|(flag, _)| !is_given(flag))
        .flat_map(|(flag, value)| [*flag, *value])
        .collect();
    flags.extend(given);
    flags
}

/// How servers are started (or found).
pub struct Launcher {
    bin: PathBuf,
    /// `RUST_LOG` for started servers.
    log: String,
    /// More flags for every started server (`--server-arg`).
    extra: Vec<String>,
    /// `--url` (and `--pid`): a running server instead of started ones.
    external: Option<(String, Option<u32>)>,
    /// Source addresses to spread client connections over.
    sources: u8,
}

impl Launcher {
    pub fn new(
        bin: Option<PathBuf>,
        log: String,
        extra: Vec<String>,
        external: Option<(String, Option<u32>)>,
        sources: u8,
    ) -> anyhow::Result<Self> {
        let bin = match (bin, &external) {
            (Some(bin), _) => bin,
            (None, Some(_)) => PathBuf::new(),
            (None, None) => find_server_binary()?,
        };
        Ok(Self {
            bin,
            log,
            extra,
            external,
            sources,
        })
    }

    pub fn is_external(&self) -> bool {
        self.external.is_some()
    }

    /// A fresh temporary database and a server on it with `args` on top of the bench flags;
    /// returns once `/healthz` answers `200`. With `--url`, the running server.
    pub async fn start(&self, args: &[&str]) -> anyhow::Result<Server> {
        if let Some((url, pid)) = &self.external {
            return Ok(Server {
                child: None,
                pid: *pid,
                endpoint: Arc::new(Endpoint::new(url, self.sources)?),
                db: None,
            });
        }
        let dir = tempfile::Builder::new().prefix("chat-bench-").tempdir()?;
        let db = Database {
            path: dir.path().join("chat.db"),
            _dir: dir,
        };
        let (server, _) = self.start_on(db, args).await?;
        Ok(server)
    }

    /// A fresh server on which `users` accounts are signed in (`bench-0`, ...), restarted
    /// afterwards (see `restart`); their tokens.
    pub async fn start_with_users(&self, users: usize) -> anyhow::Result<(Server, Vec<Arc<str>>)> {
        let server = self.start(&[]).await?;
        let tokens = client::sign_in_users(&server.endpoint, users).await?;
        Ok((self.restart(server, &[]).await?, tokens))
    }

    /// Stops `server` and starts a new one on its database: after the sign-ins, so that the
    /// memory argon2 hashing left behind does not blur the RSS figures. A `--url` server is
    /// left as it is.
    pub async fn restart(&self, server: Server, args: &[&str]) -> anyhow::Result<Server> {
        if server.child.is_none() {
            return Ok(server);
        }
        let db = server
            .stop()
            .await?
            .ok_or_else(|| anyhow!("a started server has a database"))?;
        Ok(self.start_on(db, args).await?.0)
    }

    /// Starts a server on `db`; returns it and the time from launch to a healthy `/healthz`.
    pub async fn start_on(&self, db: Database, args: &[&str]) -> anyhow::Result<(Server, Duration)> {
        let launched = Instant::now();
        let mut child = Command::new(&self.bin)
            .arg("--db")
            .arg(&db.path)
            .args(server_flags(&self.extra, args))
            // Every per-user and per-address rate off (the flags above are for servers from
            // before `--rate-limits`; an environment variable a server does not know is ignored).
            .env("CHAT_RATE_LIMITS", "off")
            // Benchmark users sign up without invites.
            .env("CHAT_SIGNUP", "open")
            .env("RUST_LOG", &self.log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", self.bin.display()))?;
        let pid = child.id();
        let base = read_address(&mut child).await?;
        let endpoint = Arc::new(Endpoint::new(&base, self.sources)?);
        wait_healthy(&endpoint).await?;
        let healthy = launched.elapsed();
        let server = Server {
            child: Some(child),
            pid,
            endpoint,
            db: Some(db),
        };
        Ok((server, healthy))
    }
}

/// A database file in a temporary directory, removed with it.
pub struct Database {
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

/// A server under test.
pub struct Server {
    child: Option<Child>,
    /// For `/proc` figures; `None` for a `--url` server without `--pid`.
    pub pid: Option<u32>,
    pub endpoint: Arc<Endpoint>,
    db: Option<Database>,
}

impl Server {
    /// `VmRSS` and `VmHWM` in KiB.
    pub fn memory_kib(&self) -> Option<(u64, u64)> {
        stats::memory_kib(self.pid?)
    }

    /// The database file and its WAL together, in bytes (`None` for a `--url` server).
    pub fn db_bytes(&self) -> Option<u64> {
        let path = &self.db.as_ref()?.path;
        let size = |path: &Path| std::fs::metadata(path).map_or(0, |m| m.len());
        let mut wal = path.clone().into_os_string();
        wal.push("-wal");
        Some(size(path) + size(Path::new(&wal)))
    }

    /// A metric's value from `/metrics` (`chat_` prefix and `_total` suffix included in `name`).
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let (_, body) = client::request(&self.endpoint, Method::GET, "/metrics", None, None)
            .await
            .ok()?;
        let text = String::from_utf8_lossy(&body);
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|value| value.trim().parse().ok())
    }

    /// SIGTERM, then waits for the exit; gives the database back for another start. A server
    /// that does not stop in time is killed and reported.
    pub async fn stop(mut self) -> anyhow::Result<Option<Database>> {
        let Some(mut child) = self.child.take() else {
            return Ok(None);
        };
        if let Some(pid) = self.pid {
            // SAFETY: signalling our own child process.
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        }
        match tokio::time::timeout(Duration::from_secs(30), child.wait()).await {
            Ok(status) => {
                let status = status?;
                if !status.success() {
                    eprintln!("  warning: the server exited with {status} after SIGTERM");
                }
            }
            Err(_) => {
                child.kill().await?;
                bail!("the server did not stop within 30 s of SIGTERM");
            }
        }
        Ok(self.db.take())
    }
}

/// Reads `chat-server listening on http://ADDR` from the server's stdout, then keeps draining
/// it so a later line can never block or break the server.
async fn read_address(child: &mut Child) -> anyhow::Result<String> {
    let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .context("the server did not announce its address within 60 s")??
        .ok_or_else(|| anyhow!("the server exited before announcing its address"))?;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    line.rsplit_once(' ')
        .map(|(_, url)| url.to_owned())
        .ok_or_else(|| anyhow!("unexpected first line: {line}"))
}

/// Polls `/healthz` every 2 ms until it answers `200`.
async fn wait_healthy(endpoint: &Endpoint) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok((StatusCode::OK, _)) = client::request(endpoint, Method::GET, "/healthz", None, None).await {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("/healthz did not answer 200 within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// `target/release/chat-server` beside this bench's own executable (`target/release/deps/`),
/// else under `CARGO_TARGET_DIR`, else under the crate's `target/`.
fn find_server_binary() -> anyhow::Result<PathBuf> {
    let beside_us = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("chat-server")));
    let from_env = std::env::var_os("CARGO_TARGET_DIR").map(|dir| PathBuf::from(dir).join("release/chat-server"));
    let in_crate = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/chat-server");
    let bin = [beside_us, from_env, Some(in_crate)]
        .into_iter()
        .flatten()
        .find(|path| path.is_file())
        .ok_or_else(|| {
            anyhow!("no release build of chat-server: run `cargo build --release` first, or pass --server-bin")
        })?;
    warn_if_stale(&bin);
    Ok(bin)
}

/// Warns when a source file is newer than the binary: the figures would be of old code.
fn warn_if_stale(bin: &Path) {
    let modified = |path: &Path| path.metadata().and_then(|m| m.modified()).ok();
    let Some(built) = modified(bin) else { return };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let newest = [
        "src",
        "src/app",
        "src/domain",
        "src/eventlog",
        "src/eventlog/sqlite",
        "src/http",
        "src/http/transport",
        "src/wire",
        "migrations/sqlite",
        "templates",
    ]
    .iter()
    .filter_map(|dir| std::fs::read_dir(root.join(dir)).ok())
    .flatten()
    .flatten()
    .filter_map(|entry| modified(&entry.path()))
    .max()
    .unwrap_or(SystemTime::UNIX_EPOCH);
    if newest > built {
        eprintln!(
            "warning: {} is older than the sources; run `cargo build --release` first",
            bin.display()
        );
    }
    eprintln!("server: {}", bin.display());
}
