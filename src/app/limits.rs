//! Limits on what one client may ask of the server: messages and status changes per user (token
//! buckets), sign-in attempts per username and per address, and open event streams per user and
//! in all. Each comes from a flag whose `0` turns it off; `--rate-limits off` turns every rate
//! off at once.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio_util::sync::CancellationToken;

use super::Error;
use crate::config::{Config, Switch};
use crate::domain::UserId;
use crate::metrics::Metrics;

/// A keyed token bucket, or nothing when the flag turned it off.
struct Bucket<K: Hash + Eq + Clone> {
    limiter: Option<DefaultKeyedRateLimiter<K>>,
}

impl<K: Hash + Eq + Clone> Bucket<K> {
    fn new(quota: Option<Quota>) -> Self {
        Self {
            limiter: quota.map(DefaultKeyedRateLimiter::keyed),
        }
    }

    /// `Err(wait)` when `key` has used up its allowance.
    fn check(&self, key: &K) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    fn forget_idle(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

pub struct Limits {
    messages: Bucket<UserId>,
    statuses: Bucket<UserId>,
    rooms: Bucket<UserId>,
    stream_opens: Bucket<UserId>,
    signins_by_name: Bucket<String>,
    signins_by_address: Bucket<IpAddr>,
    streams: Arc<Mutex<StreamCounts>>,
    max_streams: usize,
    max_streams_per_user: usize,
    refused: Counter,
}

struct StreamCounts {
    total: usize,
    per_user: HashMap<UserId, usize>,
    /// `chat_open_streams`: `total`, published.
    gauge: Gauge,
}

impl StreamCounts {
    fn set_total(&mut self, total: usize) {
        self.total = total;
        self.gauge.set(i64::try_from(total).unwrap_or(i64::MAX));
    }
}

/// Held by an open event stream; dropping it gives the stream's place back.
pub struct StreamPermit {
    user: UserId,
    streams: Arc<Mutex<StreamCounts>>,
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut counts = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        let total = counts.total - 1;
        counts.set_total(total);
        if let Some(n) = counts.per_user.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                counts.per_user.remove(&self.user);
            }
        }
    }
}

/// How long a client turned away for too many streams should wait before trying again.
const STREAMS_RETRY_AFTER: Duration = Duration::from_secs(5);

impl Limits {
    /// Counts every request turned away in `chat_refused_by_limits`, and the open streams in
    /// `chat_open_streams`.
    pub fn new(config: &Config, metrics: &Metrics) -> Self {
        let rated = config.rate_limits == Switch::On;
        let rate = |per: u32| NonZeroU32::new(per).filter(|_| rated);
        let messages = rate(config.message_rate)
            .map(|rate| Quota::per_second(rate).allow_burst(NonZeroU32::new(config.message_burst).unwrap_or(rate)));
        let signins = rate(config.signin_rate).map(Quota::per_minute);
        Self {
            messages: Bucket::new(messages),
            statuses: Bucket::new(rate(config.status_rate).map(Quota::per_minute)),
            rooms: Bucket::new(rate(config.room_rate).map(Quota::per_hour)),
            stream_opens: Bucket::new(rate(config.stream_rate).map(Quota::per_minute)),
            signins_by_name: Bucket::new(signins),
            signins_by_address: Bucket::new(signins),
            streams: Arc::new(Mutex::new(StreamCounts {
                total: 0,
                per_user: HashMap::new(),
                gauge: metrics.open_streams.clone(),
            })),
            max_streams: config.max_streams,
            max_streams_per_user: config.max_streams_per_user,
            refused: metrics.refused_by_limits.clone(),
        }
    }

    /// One message from `user`, or `429` with how long to wait.
    pub fn message(&self, user: UserId) -> Result<(), Error> {
        self.take(&self.messages, user, "messages")
    }

    /// One status change of `user`, or `429` with how long to wait.
    pub fn status(&self, user: UserId) -> Result<(), Error> {
        self.take(&self.statuses, user, "status changes")
    }

    /// One new room of `user`.
    pub fn room(&self, user: UserId) -> Result<(), Error> {
        self.take(&self.rooms, user, "new rooms")
    }

    fn take(&self, bucket: &Bucket<UserId>, user: UserId, what: &'static str) -> Result<(), Error> {
        bucket.check(&user).map_err(|wait| {
            self.refused.inc();
            Error::TooManyRequests {
                what,
                retry_after: wait,
            }
        })
    }

    /// One sign-in attempt for `username` from `address`: each has its own allowance.
    pub fn sign_in(&self, username: &str, address: Option<IpAddr>) -> Result<(), Error> {
        let refuse = |wait| {
            self.refused.inc();
            Error::TooManyRequests {
                what: "sign-in attempts",
                retry_after: wait,
            }
        };
        if let Some(address) = address {
            self.signins_by_address.check(&address).map_err(refuse)?;
        }
        // Names are unique without regard to case, so their allowance is too.
        self.signins_by_name
            .check(&username.to_ascii_lowercase())
            .map_err(refuse)
    }

    /// A place for one more event stream of `user`: `429` past the per-user limit, `503` past
    /// the total.
    pub fn open_stream(&self, user: UserId) -> Result<StreamPermit, Error> {
        self.take(&self.stream_opens, user, "event streams opened")?;
        let mut counts = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        if self.max_streams > 0 && counts.total >= self.max_streams {
            self.refused.inc();
            return Err(Error::ServerFull {
                retry_after: STREAMS_RETRY_AFTER,
            });
        }
        let mine = counts.per_user.entry(user).or_default();
        if self.max_streams_per_user > 0 && *mine >= self.max_streams_per_user {
            self.refused.inc();
            return Err(Error::TooManyRequests {
                what: "open event streams",
                retry_after: STREAMS_RETRY_AFTER,
            });
        }
        *mine += 1;
        let total = counts.total + 1;
        counts.set_total(total);
        Ok(StreamPermit {
            user,
            streams: Arc::clone(&self.streams),
        })
    }

    /// Drops the buckets of keys that are full again, so memory follows the active clients.
    pub fn forget_idle(&self) {
        self.messages.forget_idle();
        self.statuses.forget_idle();
        self.rooms.forget_idle();
        self.stream_opens.forget_idle();
        self.signins_by_name.forget_idle();
        self.signins_by_address.forget_idle();
    }
}

/// Every minute, forgets the clients that are within their allowance again, until `stop`.
pub async fn run_janitor(limits: Arc<Limits>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = tick.tick() => limits.forget_idle(),
            () = stop.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn limits(args: &[&str]) -> Limits {
        let config = Config::parse_from(std::iter::once("chat-server").chain(args.iter().copied()));
        Limits::new(&config, &Metrics::new())
    }

    #[test]
    fn a_burst_is_allowed_then_the_rate_applies() {
        let limits = limits(&["--message-rate", "1", "--message-burst", "3"]);
        for _ in 0..3 {
            limits.message(UserId(7)).unwrap();
        }
        let Err(Error::TooManyRequests { retry_after, .. }) = limits.message(UserId(7)) else {
            panic!("the fourth message in a burst of three is refused");
        };
        assert!(retry_after <= Duration::from_secs(1));
        limits.message(UserId(8)).unwrap(); // someone else is not affected
    }

    #[test]
    fn zero_turns_a_limit_off() {
        let limits = limits(&[
            "--message-rate",
            "0",
            "--signin-rate",
            "0",
            "--max-streams",
            "0",
            "--max-streams-per-user",
            "0",
            "--stream-rate",
            "0",
            "--status-rate",
            "0",
            "--room-rate",
            "0",
        ]);
        let mut permits = Vec::new();
        for _ in 0..1000 {
            limits.message(UserId(1)).unwrap();
            limits.sign_in("ada", Some(IpAddr::from([127, 0, 0, 1]))).unwrap();
            permits.push(limits.open_stream(UserId(1)).unwrap());
        }
    }

    #[test]
    fn status_changes_have_an_allowance_per_minute() {
        let limits = limits(&["--status-rate", "3"]);
        for _ in 0..3 {
            limits.status(UserId(1)).unwrap();
        }
        let Err(Error::TooManyRequests { retry_after, .. }) = limits.status(UserId(1)) else {
            panic!("the fourth change in a minute is refused");
        };
        assert!(retry_after <= Duration::from_secs(20));
        limits.status(UserId(2)).unwrap();
    }

    #[test]
    fn rooms_and_stream_opens_have_allowances_per_user() {
        let limits = limits(&["--room-rate", "2", "--stream-rate", "3", "--max-streams-per-user", "0"]);
        limits.room(UserId(1)).unwrap();
        limits.room(UserId(1)).unwrap();
        let Err(Error::TooManyRequests { what, retry_after }) = limits.room(UserId(1)) else {
            panic!("a third room within the hour is refused");
        };
        assert_eq!(what, "new rooms");
        assert!(retry_after > Duration::from_secs(60) && retry_after <= Duration::from_secs(1800));
        limits.room(UserId(2)).unwrap();
        let opened: Vec<_> = (0..3).map(|_| limits.open_stream(UserId(1)).unwrap()).collect();
        drop(opened);
        assert!(matches!(
            limits.open_stream(UserId(1)),
            Err(Error::TooManyRequests {
                what: "event streams opened",
                ..
            })
        ));
    }

    #[test]
    fn rate_limits_off_turns_every_rate_off_but_not_the_stream_caps() {
        let limits = limits(&[
            "--rate-limits",
            "off",
            "--message-rate",
            "1",
            "--status-rate",
            "1",
            "--signin-rate",
            "1",
            "--max-streams-per-user",
            "1",
        ]);
        for _ in 0..100 {
            limits.message(UserId(1)).unwrap();
            limits.status(UserId(1)).unwrap();
            limits.room(UserId(1)).unwrap();
            limits.sign_in("ada", Some(IpAddr::from([127, 0, 0, 1]))).unwrap();
            drop(limits.open_stream(UserId(1)).unwrap());
        }
        let _one = limits.open_stream(UserId(1)).unwrap();
        assert!(limits.open_stream(UserId(1)).is_err());
    }

    #[test]
    fn sign_ins_count_per_name_regardless_of_case_and_per_address() {
        let limits = limits(&["--signin-rate", "2"]);
        let here = Some(IpAddr::from([10, 0, 0, 1]));
        limits.sign_in("Ada", here).unwrap();
        limits.sign_in("ada", None).unwrap();
        assert!(limits.sign_in("ADA", None).is_err(), "per username");
        limits.sign_in("bob", here).unwrap();
        assert!(limits.sign_in("carol", here).is_err(), "per address");
    }

    #[test]
    fn stream_places_come_back_when_streams_close() {
        let limits = limits(&["--max-streams", "3", "--max-streams-per-user", "2"]);
        let a = limits.open_stream(UserId(1)).unwrap();
        let _b = limits.open_stream(UserId(1)).unwrap();
        assert!(matches!(
            limits.open_stream(UserId(1)),
            Err(Error::TooManyRequests { .. })
        ));
        let _c = limits.open_stream(UserId(2)).unwrap();
        assert!(matches!(limits.open_stream(UserId(3)), Err(Error::ServerFull { .. })));
        drop(a);
        limits.open_stream(UserId(1)).unwrap();
    }
}
