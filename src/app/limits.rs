//! Limits on what one client may ask of the server: messages, status changes, rooms, invites,
//! searches and stream opens per user (token buckets); sign-in attempts and sign-ups per client
//! address; failed sign-ins per (name, address), with back-off; open event streams per user and
//! in all. Each comes from a flag whose `0` turns it off; `--rate-limits off` turns every rate
//! off at once.
//!
//! Failures are counted per name *and address*, never per name alone: a stranger guessing
//! someone's password from elsewhere cannot make the right password from the owner's own
//! address wait. Addresses are grouped as a client holds them: an IPv4 address, or an IPv6 /64
//! (one host's usual allocation).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use prometheus_client::metrics::gauge::Gauge;
use tokio_util::sync::CancellationToken;

use super::Error;
use crate::config::{Config, Switch};
use crate::domain::UserId;
use crate::metrics::{Limit, Metrics, Refusals};

/// A keyed token bucket, or nothing when the flag turned it off; `limit` names it in the
/// metrics.
struct Bucket<K: Hash + Eq + Clone> {
    limiter: Option<DefaultKeyedRateLimiter<K>>,
    limit: Limit,
}

impl<K: Hash + Eq + Clone> Bucket<K> {
    fn new(limit: Limit, quota: Option<Quota>) -> Self {
        Self {
            limiter: quota.map(DefaultKeyedRateLimiter::keyed),
            limit,
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
    dms: Bucket<UserId>,
    member_changes: Bucket<UserId>,
    edits: Bucket<UserId>,
    reactions: Bucket<UserId>,
    reads: Bucket<UserId>,
    searches: Bucket<UserId>,
    stream_opens: Bucket<UserId>,
    account_changes: Bucket<UserId>,
    invites: Bucket<UserId>,
    signins_by_address: Bucket<IpAddr>,
    signups_by_address: Bucket<IpAddr>,
    failures: Failures,
    streams: Arc<Mutex<StreamCounts>>,
    max_streams: usize,
    max_streams_per_user: usize,
    max_replay: Option<u32>,
    refused: Refusals,
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
        let signups = rate(config.signup_rate).map(Quota::per_hour);
        Self {
            messages: Bucket::new(Limit::Messages, messages),
            statuses: Bucket::new(Limit::Statuses, rate(config.status_rate).map(Quota::per_minute)),
            rooms: Bucket::new(Limit::Rooms, rate(config.room_rate).map(Quota::per_hour)),
            dms: Bucket::new(Limit::Dms, rate(config.dm_rate).map(Quota::per_hour)),
            member_changes: Bucket::new(Limit::MemberChanges, rate(config.member_rate).map(Quota::per_minute)),
            edits: Bucket::new(Limit::Edits, rate(config.edit_rate).map(Quota::per_minute)),
            reactions: Bucket::new(Limit::Reactions, rate(config.reaction_rate).map(Quota::per_minute)),
            reads: Bucket::new(Limit::Reads, rate(config.read_rate).map(Quota::per_minute)),
            searches: Bucket::new(Limit::Searches, rate(config.search_rate).map(Quota::per_minute)),
            stream_opens: Bucket::new(Limit::StreamOpens, rate(config.stream_rate).map(Quota::per_minute)),
            account_changes: Bucket::new(Limit::AccountChanges, rate(config.account_rate).map(Quota::per_minute)),
            invites: Bucket::new(Limit::Invites, rate(config.invite_rate).map(Quota::per_minute)),
            signins_by_address: Bucket::new(Limit::SignIns, signins),
            signups_by_address: Bucket::new(Limit::SignUps, signups),
            failures: Failures::new(if rated { config.signin_failures } else { 0 }),
            streams: Arc::new(Mutex::new(StreamCounts {
                total: 0,
                per_user: HashMap::new(),
                gauge: metrics.open_streams.clone(),
            })),
            max_streams: config.max_streams.unwrap_or(0),
            max_streams_per_user: config.max_streams_per_user,
            max_replay: (config.max_replay > 0).then_some(config.max_replay),
            refused: metrics.refusals.clone(),
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

    /// One new direct-message room started by `user`.
    pub fn dm(&self, user: UserId) -> Result<(), Error> {
        self.take(&self.dms, user, "new direct messages")
    }

    /// One member added to or removed from a private room by `user`.
    pub fn member_change(&self, user: UserId) -> Result<(), Error> {
        self.take(&self.member_changes, user, "changes of members")
    }

    /// One message edited or deleted by `user`.
    pub fn edit(&self, user: UserId) -> Result<(), Error> {
        self.take(&self.edits, user, "edits and deletions")
    }

    /// One reaction added or taken back by `user`.
    pub fn reaction(&self, user: UserId) -> Result<(), Error> {
        self.take(&self.reactions, user, "reactions")
    }

    /// One read cursor moved, or one notification level set, by `user`.
    pub fn read(&self, user: UserId) -> Result<(), Error> {
        self.take(&self.reads, user, "marks of rooms read")
    }

    /// One search (or page of results) by `user`.
    pub fn search(&self, user: UserId) -> Result<(), Error> {
        self.take(&self.searches, user, "searches")
    }

    /// One change to accounts or sessions by `user`: a password change, ending a session, an
    /// admin's change to someone's account.
    pub fn account_change(&self, user: UserId) -> Result<(), Error> {
        self.take(&self.account_changes, user, "account changes")
    }

    /// One invite made or revoked by the admin `user`.
    pub fn invite(&self, user: UserId) -> Result<(), Error> {
        self.take(&self.invites, user, "invites made or revoked")
    }

    fn take(&self, bucket: &Bucket<UserId>, user: UserId, what: &'static str) -> Result<(), Error> {
        bucket.check(&user).map_err(|wait| {
            self.refused.count(bucket.limit);
            Error::TooManyRequests {
                what,
                retry_after: wait,
            }
        })
    }

    /// One sign-in attempt for `username` from `address`: within the address's allowance of
    /// attempts, and not while that name has failed too often from that address lately.
    pub fn sign_in(&self, username: &str, address: Option<IpAddr>) -> Result<(), Error> {
        let refuse = |limit, wait| {
            self.refused.count(limit);
            Error::TooManyRequests {
                what: "sign-in attempts",
                retry_after: wait,
            }
        };
        let Some(address) = address.map(client_group) else {
            return Ok(());
        };
        self.signins_by_address
            .check(&address)
            .map_err(|wait| refuse(Limit::SignIns, wait))?;
        self.failures
            .wait(username, address)
            .map_or(Ok(()), |wait| Err(refuse(Limit::SignInFailures, wait)))
    }

    /// A wrong password for `username` from `address`.
    pub fn sign_in_failed(&self, username: &str, address: Option<IpAddr>) {
        if let Some(address) = address {
            self.failures.failed(username, client_group(address));
        }
    }

    /// The right password: the pair's failures are forgotten.
    pub fn sign_in_succeeded(&self, username: &str, address: Option<IpAddr>) {
        if let Some(address) = address {
            self.failures.forget(username, client_group(address));
        }
    }

    /// One new account from `address`.
    pub fn sign_up(&self, address: Option<IpAddr>) -> Result<(), Error> {
        let Some(address) = address.map(client_group) else {
            return Ok(());
        };
        self.signups_by_address.check(&address).map_err(|wait| {
            self.refused.count(Limit::SignUps);
            Error::TooManyRequests {
                what: "new accounts from this address",
                retry_after: wait,
            }
        })
    }

    /// A place for one more event stream of `user`: `429` past the per-user limit, `503` past
    /// the total.
    pub fn open_stream(&self, user: UserId) -> Result<StreamPermit, Error> {
        self.take(&self.stream_opens, user, "event streams opened")?;
        let mut counts = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        if self.max_streams > 0 && counts.total >= self.max_streams {
            self.refused.count(Limit::Streams);
            return Err(Error::ServerFull {
                retry_after: STREAMS_RETRY_AFTER,
            });
        }
        let mine = counts.per_user.entry(user).or_default();
        if self.max_streams_per_user > 0 && *mine >= self.max_streams_per_user {
            self.refused.count(Limit::StreamsPerUser);
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

    /// The most events a stream replays from the cursor it opens with (`--max-replay`); a
    /// cursor further behind is answered with `reset`.
    pub fn max_replay(&self) -> Option<u32> {
        self.max_replay
    }

    /// Drops the buckets of keys that are full again, so memory follows the active clients.
    pub fn forget_idle(&self) {
        self.messages.forget_idle();
        self.signups_by_address.forget_idle();
        self.failures.forget_idle();
        self.statuses.forget_idle();
        self.rooms.forget_idle();
        self.dms.forget_idle();
        self.member_changes.forget_idle();
        self.edits.forget_idle();
        self.reactions.forget_idle();
        self.searches.forget_idle();
        self.stream_opens.forget_idle();
        self.account_changes.forget_idle();
        self.invites.forget_idle();
        self.signins_by_address.forget_idle();
    }
}

/// The address a client is counted by: an IPv4 address, or the /64 of an IPv6 one.
pub fn client_group(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        IpAddr::V6(v6) => IpAddr::V4(v6.to_ipv4_mapped().unwrap_or(std::net::Ipv4Addr::UNSPECIFIED)),
        v4 => v4,
    }
}

/// How long a (name, address) pair waits after its failures: none for the first `free`, then
/// a second, doubling with each failure, up to a quarter of an hour.
const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);
/// A pair unheard of for this long starts over.
const FAILURES_FORGOTTEN_AFTER: Duration = Duration::from_secs(3600);

/// Failed sign-ins per (lowercased name, address).
struct Failures {
    free: u32,
    pairs: Mutex<HashMap<(String, IpAddr), Failed>>,
}

#[derive(Clone, Copy)]
struct Failed {
    count: u32,
    last: tokio::time::Instant,
}

impl Failures {
    fn new(free: u32) -> Self {
        Self {
            free,
            pairs: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, IpAddr), Failed>> {
        // Inserts, updates and removes of whole entries: a panic cannot leave one half-made.
        self.pairs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn key(username: &str, address: IpAddr) -> (String, IpAddr) {
        // Names are unique without regard to case, so their failures are too.
        (username.to_ascii_lowercase(), address)
    }

    /// How long the pair must still wait, if it must.
    fn wait(&self, username: &str, address: IpAddr) -> Option<Duration> {
        if self.free == 0 {
            return None;
        }
        let failed = *self.lock().get(&Self::key(username, address))?;
        let over = failed.count.checked_sub(self.free)?;
        let backoff = Duration::from_secs(1u64 << over.min(20)).min(MAX_BACKOFF);
        let until = failed.last + backoff;
        let now = tokio::time::Instant::now();
        (until > now).then(|| until - now)
    }

    fn failed(&self, username: &str, address: IpAddr) {
        if self.free == 0 {
            return;
        }
        let now = tokio::time::Instant::now();
        let mut pairs = self.lock();
        let failed = pairs
            .entry(Self::key(username, address))
            .or_insert(Failed { count: 0, last: now });
        failed.count = failed.count.saturating_add(1);
        failed.last = now;
    }

    fn forget(&self, username: &str, address: IpAddr) {
        self.lock().remove(&Self::key(username, address));
    }

    fn forget_idle(&self) {
        let now = tokio::time::Instant::now();
        self.lock()
            .retain(|_, failed| now.saturating_duration_since(failed.last) < FAILURES_FORGOTTEN_AFTER);
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
    fn sign_ins_count_per_address_and_ipv6_by_its_64() {
        let limits = limits(&["--signin-rate", "2"]);
        let here = Some(IpAddr::from([10, 0, 0, 1]));
        limits.sign_in("ada", here).unwrap();
        limits.sign_in("bob", here).unwrap();
        assert!(limits.sign_in("carol", here).is_err(), "per address");
        limits.sign_in("carol", Some(IpAddr::from([10, 0, 0, 2]))).unwrap();
        let v6 = |last: u16| Some(IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, last]));
        limits.sign_in("ada", v6(1)).unwrap();
        limits.sign_in("ada", v6(2)).unwrap();
        assert!(limits.sign_in("ada", v6(3)).is_err(), "one /64 is one client");
    }

    #[tokio::test(start_paused = true)]
    async fn failures_back_off_per_name_and_address_and_a_success_forgets_them() {
        let limits = limits(&["--signin-failures", "3", "--signin-rate", "0"]);
        let stranger = Some(IpAddr::from([192, 0, 2, 1]));
        let owner = Some(IpAddr::from([198, 51, 100, 7]));
        for _ in 0..3 {
            limits.sign_in("Ada", stranger).unwrap();
            limits.sign_in_failed("Ada", stranger);
        }
        let Err(Error::TooManyRequests { retry_after, .. }) = limits.sign_in("ada", stranger) else {
            panic!("the fourth try waits");
        };
        assert_eq!(retry_after, Duration::from_secs(1));
        limits.sign_in("ada", owner).unwrap();
        limits.sign_in("bob", stranger).unwrap();
        tokio::time::advance(Duration::from_secs(1)).await;
        limits.sign_in("ada", stranger).unwrap();
        limits.sign_in_failed("ada", stranger);
        let Err(Error::TooManyRequests { retry_after, .. }) = limits.sign_in("ada", stranger) else {
            panic!("the wait doubles");
        };
        assert_eq!(retry_after, Duration::from_secs(2));
        limits.sign_in_succeeded("ada", stranger);
        limits.sign_in("ada", stranger).unwrap();
    }

    #[test]
    fn searches_have_an_allowance_per_minute_and_rate_limits_off_ends_it() {
        let limits = limits(&["--search-rate", "2"]);
        limits.search(UserId(1)).unwrap();
        limits.search(UserId(1)).unwrap();
        let Err(Error::TooManyRequests { what, retry_after }) = limits.search(UserId(1)) else {
            panic!("a third search within the minute is refused");
        };
        assert_eq!(what, "searches");
        assert!(retry_after <= Duration::from_secs(30));
        limits.search(UserId(2)).unwrap();
        let off = self::limits(&["--search-rate", "1", "--rate-limits", "off"]);
        for _ in 0..100 {
            off.search(UserId(1)).unwrap();
        }
        let zero = self::limits(&["--search-rate", "0"]);
        for _ in 0..100 {
            zero.search(UserId(1)).unwrap();
        }
    }

    #[test]
    fn sign_ups_count_per_address() {
        let limits = limits(&["--signup-rate", "2"]);
        let here = Some(IpAddr::from([10, 0, 0, 1]));
        limits.sign_up(here).unwrap();
        limits.sign_up(here).unwrap();
        assert!(limits.sign_up(here).is_err());
        limits.sign_up(Some(IpAddr::from([10, 0, 0, 2]))).unwrap();
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
