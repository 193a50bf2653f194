//! What the scenarios measure: latencies, per-stream delivery checks, and the server's CPU time
//! and memory as `/proc` tells them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::sse;

/// Nanoseconds since the generator started: the send time carried in a message and the
/// receive time are read from this one clock, in this one process.
pub fn now_ns() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// A message body carrying its sequence number and send time: `"<seq> <nanos>"`.
pub fn stamp(seq: u64) -> String {
    format!("{seq} {}", now_ns())
}

/// Reads back what `stamp` wrote.
fn parse_stamp(content: &[u8]) -> Option<(u64, u64)> {
    let space = content.iter().position(|&b| b == b' ')?;
    let seq = sse::parse_i64(&content[..space])?;
    let sent = sse::parse_i64(&content[space + 1..])?;
    Some((u64::try_from(seq).ok()?, u64::try_from(sent).ok()?))
}

/// Latencies in microseconds, shared by every task of a scenario.
#[derive(Clone)]
pub struct Latencies(Arc<Mutex<Histogram<u64>>>);

impl Latencies {
    pub fn new() -> Self {
        Self(Arc::new(Mutex::new(new_histogram())))
    }

    /// Records a batch under one lock.
    pub fn record(&self, micros: &[u64]) {
        if micros.is_empty() {
            return;
        }
        let mut histogram = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        for &us in micros {
            histogram.saturating_record(us.max(1));
        }
    }

    pub fn add(&self, other: &Histogram<u64>) {
        let mut histogram = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = histogram.add(other);
    }

    pub fn summary(&self) -> Summary {
        Summary::of(&self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// 1 µs to an hour, three significant figures.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// p50, p99 and max, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Summary {
    pub fn of(histogram: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            p50: ms(histogram.value_at_quantile(0.50)),
            p99: ms(histogram.value_at_quantile(0.99)),
            max: ms(histogram.max()),
        }
    }
}

/// Live progress of many streams together.
#[derive(Default)]
pub struct Progress {
    /// Messages received, all streams together.
    pub delivered: AtomicU64,
    /// `now_ns()` of the newest delivery.
    pub last_delivery_ns: AtomicU64,
}

impl Progress {
    pub fn add(&self, delivered: u64, at_ns: u64) {
        if delivered > 0 {
            self.delivered.fetch_add(delivered, Ordering::Relaxed);
            self.last_delivery_ns.fetch_max(at_ns, Ordering::Relaxed);
        }
    }

    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// Waits until `expected` messages have been delivered, or none arrived for `quiet`.
    pub async fn wait_for(&self, expected: u64, quiet: Duration) {
        let mut last = (self.delivered(), Instant::now());
        while self.delivered() < expected {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let now = self.delivered();
            if now != last.0 {
                last = (now, Instant::now());
            } else if last.1.elapsed() >= quiet {
                eprintln!("  gave up waiting: {now} of {expected} delivered, none for {quiet:?}");
                return;
            }
        }
    }
}

/// One stream's view of the messages `stamp`ed for its room: what arrived, once and in order.
pub struct Tracker {
    /// Bit `seq` is set once message `seq` arrived.
    seen: Vec<u64>,
    pub distinct: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
    /// `event: reset` frames: the server could not honour the cursor.
    pub resets: u64,
    /// The newest id of any event (messages and status changes): the `Last-Event-ID` to resume from.
    pub last_id: Option<i64>,
    latencies: Vec<u64>,
}

impl Tracker {
    pub fn new(messages: u64, last_id: Option<i64>) -> Self {
        Self {
            seen: vec![0; messages.div_ceil(64) as usize],
            distinct: 0,
            duplicated: 0,
            out_of_order: 0,
            resets: 0,
            last_id,
            latencies: Vec::new(),
        }
    }

    /// Takes in one chunk's events; returns how many stamped messages it held.
    pub fn on_event(&mut self, event: &sse::Event<'_>, now_ns: u64) -> u64 {
        if event.event == b"reset" {
            self.resets += 1;
        }
        let Some(id) = event.id else { return 0 };
        let in_order = self.last_id.is_none_or(|last| id > last);
        self.last_id = Some(self.last_id.map_or(id, |last| last.max(id)));
        if event.event != b"message" {
            return 0;
        }
        let Some((seq, sent_ns)) = sse::json_str(event.data, "content").and_then(parse_stamp) else {
            return 0;
        };
        let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
        if word >= self.seen.len() {
            self.seen.resize(word + 1, 0);
        }
        if self.seen[word] & bit != 0 {
            self.duplicated += 1;
            return 1;
        }
        self.seen[word] |= bit;
        self.distinct += 1;
        if !in_order {
            self.out_of_order += 1;
        }
        self.latencies.push(now_ns.saturating_sub(sent_ns) / 1000);
        1
    }

    /// Hands the latencies gathered since the last flush to the shared histogram.
    pub fn flush(&mut self, latencies: &Latencies, progress: &Progress, delivered: u64, now_ns: u64) {
        latencies.record(&self.latencies);
        self.latencies.clear();
        progress.add(delivered, now_ns);
    }
}

/// Counts summed over streams.
#[derive(Debug, Default, Clone, Copy)]
pub struct Totals {
    pub distinct: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
    pub resets: u64,
}

impl Totals {
    pub fn add(&mut self, tracker: &Tracker) {
        self.distinct += tracker.distinct;
        self.duplicated += tracker.duplicated;
        self.out_of_order += tracker.out_of_order;
        self.resets += tracker.resets;
    }
}

/// CPU seconds (user + system) a process has used, from `/proc/<pid>/stat`.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: count fields after the last `)`.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((utime + stime) / ticks)
}

/// `VmRSS` and `VmHWM` (peak RSS) of a process in KiB, from `/proc/<pid>/status`.
pub fn memory_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|line| line.starts_with(name))?;
        line[name.len()..].trim().trim_end_matches("kB").trim().parse().ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// CPU used by the server and by this generator over a stretch of wall time.
pub struct CpuWindow {
    server: Option<u32>,
    started: Instant,
    server_cpu: f64,
    own_cpu: f64,
}

/// CPU use over a window, in percent of one core (200 is both cores of a 2-core machine).
#[derive(Debug, Clone, Copy)]
pub struct CpuUse {
    pub server_pct: Option<f64>,
    pub bench_pct: f64,
}

impl CpuWindow {
    pub fn start(server: Option<u32>) -> Self {
        Self {
            server,
            started: Instant::now(),
            server_cpu: server.and_then(cpu_seconds).unwrap_or(0.0),
            own_cpu: cpu_seconds(std::process::id()).unwrap_or(0.0),
        }
    }

    pub fn stop(&self) -> CpuUse {
        let wall = self.started.elapsed().as_secs_f64();
        let pct = |used: f64| 100.0 * used / wall.max(1e-9);
        CpuUse {
            server_pct: self.server.and_then(cpu_seconds).map(|now| pct(now - self.server_cpu)),
            bench_pct: pct(cpu_seconds(std::process::id()).unwrap_or(0.0) - self.own_cpu),
        }
    }
}

/// Samples a process's RSS on a timer, keeping the highest value.
pub struct RssSampler {
    peak: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    pub fn start(pid: u32, every: Duration) -> Self {
        let peak = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn({
            let peak = Arc::clone(&peak);
            async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    tick.tick().await;
                    if let Some((rss, _)) = memory_kib(pid) {
                        peak.fetch_max(rss, Ordering::Relaxed);
                    }
                }
            }
        });
        Self { peak, task }
    }

    /// The highest RSS seen, in KiB.
    pub fn stop(self) -> u64 {
        self.task.abort();
        self.peak.load(Ordering::Relaxed)
    }
}

/// A small, fast pseudo-random sequence (xorshift64*), for picking streams to reconnect and
/// rooms to post to.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as usize % n.max(1)
    }
}
