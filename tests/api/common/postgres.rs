//! A private PostgreSQL cluster for the tests: Debian's `initdb` into a temporary directory, then
//! `postgres` itself on an ephemeral loopback port (and a unix socket in that directory), with
//! trust authentication for the superuser `chat`. One cluster per run of the test binary, shared
//! by every test that asks for one (starting one costs a second or two); each test makes a
//! database of its own in it (`database`), so they run in parallel.
//!
//! Postgres refuses to run as root, and CI runs as root: then `initdb` and `postgres` run as
//! `nobody`, who owns the directory. The cluster lives in a `static`, which is never dropped, so
//! it is stopped in two ways: an `atexit` handler stops it and removes its directory when the
//! test binary exits (passed or failed), and if the binary dies without exiting (a signal, an
//! abort) the kernel sends the postmaster `SIGQUIT` (`PR_SET_PDEATHSIG`): Postgres's immediate
//! shutdown, which ends its backends too. The directory stays behind only in that second case.
//!
//! A missing PostgreSQL fails the test (`.ci/run` installs it), never skips it.

use std::ffi::CString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sqlx::Connection;
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions};

/// How long the cluster may take to accept connections.
const START: Duration = Duration::from_secs(30);

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

/// The running cluster.
pub struct Cluster {
    dir: PathBuf,
    port: u16,
    postmaster: libc::pid_t,
}

/// A database of one test's own, made empty from `template1`. Not dropped at the test's end:
/// it goes with the cluster when the test binary exits.
pub struct PgDb {
    pub name: String,
    pub url: String,
}

/// A fresh, empty database in the shared cluster, started on first use.
pub async fn database() -> PgDb {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let cluster = cluster();
    let name = format!("test_{}", NEXT.fetch_add(1, Ordering::Relaxed));
    let mut admin = PgConnection::connect(&cluster.url("postgres"))
        .await
        .expect("connect to the test cluster");
    // The name is ours: `test_` and a number.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("CREATE DATABASE");
    let _ = admin.close().await;
    PgDb {
        url: cluster.url(&name),
        name,
    }
}

impl PgDb {
    /// One connection of its own, as a node's writer or someone at `psql` would have.
    pub async fn connect(&self) -> PgConnection {
        PgConnection::connect(&self.url)
            .await
            .expect("connect to the test database")
    }

    pub async fn pool(&self) -> PgPool {
        PgPoolOptions::new()
            .max_connections(4)
            .connect(&self.url)
            .await
            .expect("connect to the test database")
    }
}

/// The shared cluster; the first caller starts it (blocking its thread meanwhile) and the others
/// wait for it.
pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(Cluster::start)
}

impl Cluster {
    pub fn url(&self, database: &str) -> String {
        format!("postgres://chat@127.0.0.1:{}/{database}", self.port)
    }

    fn start() -> Self {
        let bin = binaries();
        let dir = tempfile::Builder::new()
            .prefix("chat-pg-")
            .tempdir()
            .expect("temp dir")
            .keep();
        let user = unprivileged();
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).expect("give the cluster's directory to nobody");
        }
        let data = dir.join("data");
        // UTF-8 with the C.UTF-8 character classes, as the migration asks of a production
        // database; no fsync while the files are made (the cluster itself keeps fsync on).
        let output = as_user(Command::new(bin.join("initdb")), user, false)
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "chat",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|error| panic!("run {}: {error}", bin.join("initdb").display()));
        assert!(
            output.status.success(),
            "initdb failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        // A port found free may be taken before Postgres binds it; then try another.
        for _ in 0..5 {
            let port = free_port();
            let log = dir.join("postgres.log");
            let mut command = as_user(Command::new(bin.join("postgres")), user, true);
            command
                .arg("-D")
                .arg(&data)
                .arg("-p")
                .arg(port.to_string())
                .arg("-c")
                .arg("listen_addresses=127.0.0.1")
                .arg("-c")
                .arg(format!("unix_socket_directories={}", dir.display()))
                // Room for several tests' writers at once, and for three nodes later.
                .args(["-c", "max_connections=300"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).expect("postgres.log"));
            let (postmaster, exited) = spawn_postmaster(command);
            match wait_until_ready(&data, &exited) {
                Ok(()) => {
                    let cluster = Self { dir, port, postmaster };
                    // SAFETY: registers a plain function; it runs once, at exit.
                    unsafe { libc::atexit(stop_at_exit) };
                    return cluster;
                }
                Err(why) => {
                    let text = std::fs::read_to_string(&log).unwrap_or_default();
                    if text.contains("could not bind") || text.contains("Address already in use") {
                        continue;
                    }
                    // SAFETY: signalling the postmaster this function started.
                    unsafe { libc::kill(postmaster, libc::SIGQUIT) };
                    panic!("PostgreSQL did not start: {why}\n{text}");
                }
            }
        }
        panic!("PostgreSQL found no free port in five tries");
    }

    /// Immediate shutdown (`SIGQUIT`, which also ends every backend), then the directory goes.
    fn stop(&self) {
        // SAFETY: signalling the postmaster `start` started; `kill(pid, 0)` only asks whether it
        // is there. The thread that started it reaps it, so it is gone once it has exited.
        unsafe { libc::kill(self.postmaster, libc::SIGQUIT) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while unsafe { libc::kill(self.postmaster, 0) } == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

extern "C" fn stop_at_exit() {
    if let Some(cluster) = CLUSTER.get() {
        cluster.stop();
    }
}

/// The directory of Debian's PostgreSQL programs, the newest version installed (or
/// `CHAT_PG_BIN`, or `initdb` on `PATH`); the test fails, saying what to install, without one.
fn binaries() -> PathBuf {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Some(dir) = std::env::var_os("CHAT_PG_BIN").map(PathBuf::from) {
        assert!(
            has_both(&dir),
            "CHAT_PG_BIN={} has no initdb and postgres",
            dir.display()
        );
        return dir;
    }
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            Some((
                entry.file_name().to_str()?.parse::<u32>().ok()?,
                entry.path().join("bin"),
            ))
        })
        .filter(|(_, bin)| has_both(bin))
        .max();
    if let Some((_, bin)) = newest {
        return bin;
    }
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(PathBuf::from)
        .find(|dir| has_both(dir))
        .unwrap_or_else(|| {
            panic!(
                "PostgreSQL is not installed (no initdb and postgres in /usr/lib/postgresql/*/bin or on PATH): \
                 `apt-get install postgresql` (.ci/run installs it)"
            )
        })
}

/// `nobody`'s uid and gid when the tests run as root, whom Postgres refuses; `None` otherwise.
fn unprivileged() -> Option<(u32, u32)> {
    // SAFETY: geteuid cannot fail; getpwnam's result is read at once, before any other call
    // could reuse its buffer.
    unsafe {
        if libc::geteuid() != 0 {
            return None;
        }
        let name = CString::new("nobody").expect("no NUL");
        let entry = libc::getpwnam(name.as_ptr());
        assert!(
            !entry.is_null(),
            "running as root, and there is no user nobody to run PostgreSQL as"
        );
        Some(((*entry).pw_uid, (*entry).pw_gid))
    }
}

/// `command`, set to run as `user` (if any), and to get `SIGQUIT` when the thread that starts
/// it dies (if `tied`). The uid changes first: changing it clears the parent-death signal.
fn as_user(mut command: Command, user: Option<(u32, u32)>, tied: bool) -> Command {
    // SAFETY: getpid before the fork; after it the child calls only async-signal-safe
    // functions (setgroups, setgid, setuid, prctl, getppid) and allocates nothing.
    let parent = unsafe { libc::getpid() };
    unsafe {
        command.pre_exec(move || {
            if let Some((uid, gid)) = user
                && (libc::setgroups(0, std::ptr::null()) != 0 || libc::setgid(gid) != 0 || libc::setuid(uid) != 0)
            {
                return Err(std::io::Error::last_os_error());
            }
            if tied {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT as libc::c_ulong) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The test binary died between the fork and the prctl: nobody would stop it.
                if libc::getppid() != parent {
                    return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                }
            }
            Ok(())
        });
    }
    command
}

/// Starts the postmaster from a thread of its own that lives as long as it does: the
/// parent-death signal fires when the *thread* that forked exits, and each test's thread ends
/// with its test. Returns its pid and a channel that reports its exit.
fn spawn_postmaster(mut command: Command) -> (libc::pid_t, mpsc::Receiver<std::io::Result<ExitStatus>>) {
    let (started, pid) = mpsc::channel();
    let (exited, exit) = mpsc::channel();
    std::thread::Builder::new()
        .name("postgres".into())
        .spawn(move || match command.spawn() {
            Ok(mut child) => {
                let _ = started.send(Ok(child.id() as libc::pid_t));
                let _ = exited.send(child.wait());
            }
            Err(error) => {
                let _ = started.send(Err(error));
            }
        })
        .expect("spawn the postgres thread");
    let pid = pid
        .recv()
        .expect("the postgres thread reports")
        .unwrap_or_else(|error| panic!("start postgres: {error}"));
    (pid, exit)
}

/// Waits until the postmaster says it accepts connections, as `pg_ctl -w` does: the status
/// line of `postmaster.pid` reads `ready`.
fn wait_until_ready(data: &Path, exited: &mpsc::Receiver<std::io::Result<ExitStatus>>) -> Result<(), String> {
    let deadline = Instant::now() + START;
    loop {
        if let Ok(status) = exited.try_recv() {
            return Err(format!("postgres exited at start-up ({status:?})"));
        }
        let pid_file = std::fs::read_to_string(data.join("postmaster.pid")).unwrap_or_default();
        if pid_file.lines().nth(7).is_some_and(|status| status.trim() == "ready") {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("not ready after {START:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}
