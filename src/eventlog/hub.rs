//! The live tail of the log: bounded broadcast channels ("feeds") addressed by what a stream
//! follows, a room's or a user's, created when a stream listens and dropped when the last one
//! leaves. A feed is sized by use: it starts small (`FIRST_CAPACITY` slots, about 40 bytes
//! each) and is replaced by one four times its size each time a stream falls behind it, up to
//! the configured capacity, so thousands of quiet users' feeds cost little.
//!
//! Only the writer publishes, after commit and in id order, and it sends each event to every
//! feed whose streams may see it (`View::sees`), so every feed is in id order and a stream
//! listens to exactly one. Who may read a members-only room is the hub's `Membership`, which
//! the writer changes in the same order: it admits members before it publishes the event that
//! lets them in, and dismisses them after the event that removes them. The cost of an event is
//! a send per feed that may see it (a members-only room's: its members'); a feed nobody
//! listens to costs nothing. The hub holds no history: a stream that falls more than
//! its feed's capacity behind gets `Lagged` and catches up from the database.
//!
//! The news that a credential was revoked travels on the same feeds, so a stream waits on one
//! receiver, not two. The hub does not know what the key means.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::domain::{EventId, Membership, RoomId, Scope, UserId, View};
use crate::wire::Frame;

/// What a feed carries.
#[derive(Debug, Clone)]
pub enum Live {
    /// A committed event the feed's streams may see.
    Frame(Arc<Frame>),
    /// The credential with this key (a session's token hash) was revoked; sent to every feed
    /// a stream of its user may listen to.
    Revoked(Arc<[u8]>),
}

/// Cheap to clone: one `Arc`.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

/// Slots of a new feed.
const FIRST_CAPACITY: usize = 32;

struct Inner {
    feeds: Mutex<Feeds>,
    /// Slots a feed grows to at most.
    capacity: usize,
    /// The newest id published: where a stream that asks for "from now" starts.
    head: AtomicI64,
    /// Cancelled once at shutdown, when the feeds close.
    closed: CancellationToken,
    /// How many revocations have been sent since start-up.
    revocations: AtomicU64,
}

/// One feed's sender, and its size.
struct Feed {
    sender: broadcast::Sender<Live>,
    capacity: usize,
}

impl Feed {
    fn new(capacity: usize) -> Self {
        Self {
            sender: broadcast::channel(capacity).0,
            capacity,
        }
    }

    /// Sends `live`; `false` once nobody listens.
    fn send(&self, live: Live) -> bool {
        self.sender.send(live).is_ok()
    }
}

#[derive(Default)]
struct Feeds {
    rooms: HashMap<RoomId, Feed>,
    users: HashMap<UserId, Feed>,
    membership: Membership,
}

/// Sends `live` to the feed of `key`, if it has one; a feed nobody listens to any more is
/// dropped, and the next subscriber makes a new one.
fn send_one<K: std::hash::Hash + Eq>(feeds: &mut HashMap<K, Feed>, key: K, live: Live) {
    if let Some(feed) = feeds.get(&key)
        && !feed.send(live)
    {
        feeds.remove(&key);
    }
}

fn send_all<K>(feeds: &mut HashMap<K, Feed>, live: &Live) {
    feeds.retain(|_, feed| feed.send(live.clone()));
}

impl Hub {
    /// `head` is the newest id ever handed out, read from the database at start-up.
    /// `capacity` is the most a feed buffers, in events.
    /// `membership` is every members-only room's members, read with it.
    pub fn new(capacity: usize, head: EventId, membership: Membership) -> Self {
        Self {
            inner: Arc::new(Inner {
                feeds: Mutex::new(Feeds {
                    membership,
                    ..Feeds::default()
                }),
                capacity: capacity.max(1),
                head: AtomicI64::new(head.get()),
                closed: CancellationToken::new(),
                revocations: AtomicU64::new(0),
            }),
        }
    }

    /// A receiver of every frame `view` may see published from now on, and the newest id
    /// published before it: every later event arrives through the receiver, until the feed
    /// ends (`Closed`): at shutdown, or when the feed was replaced by a bigger one (`grow`),
    /// when the stream subscribes again. Subscribe *before* reading the database, so nothing
    /// committed in between is missed.
    pub fn subscribe(&self, view: View) -> (broadcast::Receiver<Live>, EventId) {
        let mut feeds = self.feeds();
        let receiver = if self.inner.closed.is_cancelled() {
            // Closed already: the stream replays what is stored and ends.
            broadcast::channel(1).1
        } else {
            let first = || Feed::new(FIRST_CAPACITY.min(self.inner.capacity));
            let feed = match view {
                View::Room(room, _) => feeds.rooms.entry(room).or_insert_with(first),
                View::User(user) => feeds.users.entry(user).or_insert_with(first),
            };
            feed.sender.subscribe()
        };
        // Read under the lock `publish` holds while it moves the head and sends.
        (receiver, self.head())
    }

    /// A stream of `view` fell behind its feed: the feed is replaced by one four times its
    /// size, up to the capacity. Its streams drain the old one, see it end, and subscribe again.
    pub fn grow(&self, view: View) {
        let mut feeds = self.feeds();
        let feed = match view {
            View::Room(room, _) => feeds.rooms.get_mut(&room),
            View::User(user) => feeds.users.get_mut(&user),
        };
        if let Some(feed) = feed
            && feed.capacity < self.inner.capacity
        {
            *feed = Feed::new((feed.capacity * 4).min(self.inner.capacity));
        }
    }

    /// Whether the hub has closed: a feed that ends then ends for good.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.is_cancelled()
    }

    /// Sends a committed event to every feed that may see it. Called by the writer only, in id
    /// order.
    pub fn publish(&self, frame: Arc<Frame>) {
        let mut feeds = self.feeds();
        self.inner.head.fetch_max(frame.id().get(), Ordering::AcqRel);
        let scope = frame.scope();
        let live = Live::Frame(frame);
        let Feeds {
            rooms,
            users,
            membership,
        } = &mut *feeds;
        match scope {
            Scope::Room(room) => {
                match membership.members(room) {
                    None => send_all(users, &live),
                    Some(members) => {
                        for member in members {
                            send_one(users, *member, live.clone());
                        }
                    }
                }
                send_one(rooms, room, live);
            }
            Scope::User(user) => send_one(users, user, live),
            Scope::Everyone => {
                send_all(rooms, &live);
                send_all(users, &live);
            }
        }
    }

    /// `users` may read the members-only `room` from the next event published on (which makes
    /// it members-only if it was not known).
    pub fn admit(&self, room: RoomId, users: Vec<UserId>) {
        self.feeds().membership.admit(room, users);
    }

    /// `user` may no longer read `room` after the events published so far.
    pub fn dismiss(&self, room: RoomId, user: UserId) {
        self.feeds().membership.dismiss(room, user);
    }

    /// Tells every stream `user` may have open that the credential `key` is revoked (committed
    /// first).
    pub fn revoke(&self, user: UserId, key: &[u8]) {
        let mut feeds = self.feeds();
        // Counted before it is sent: see `revocations`.
        self.inner.revocations.fetch_add(1, Ordering::AcqRel);
        let live = Live::Revoked(Arc::from(key));
        // A user's room streams listen to the rooms' feeds, which other users share.
        send_all(&mut feeds.rooms, &live);
        send_one(&mut feeds.users, user, live);
    }

    /// Counts a change to what some credential allows (a role), without ending anything: every
    /// session found valid before it is checked in the database again.
    pub fn credentials_changed(&self) {
        self.inner.revocations.fetch_add(1, Ordering::AcqRel);
    }

    /// How many revocations have been sent so far. Read it before checking a credential in the
    /// database, and compare after `subscribe`: if it moved, the credential may have been
    /// revoked in between, and the news sent before the subscription.
    pub fn revocations(&self) -> u64 {
        self.inner.revocations.load(Ordering::Acquire)
    }

    /// The newest id published so far.
    pub fn head(&self) -> EventId {
        EventId(self.inner.head.load(Ordering::Acquire))
    }

    /// Ends every open stream once it has sent what was published before: each receiver gets
    /// what its feed holds, then `Closed`. Nothing is sent live after this.
    pub fn close(&self) {
        self.inner.closed.cancel();
        let mut feeds = self.feeds();
        feeds.rooms.clear();
        feeds.users.clear();
    }

    /// Cancelled when the hub closes: at shutdown.
    pub fn closed(&self) -> &CancellationToken {
        &self.inner.closed
    }

    fn feeds(&self) -> std::sync::MutexGuard<'_, Feeds> {
        // A panic while holding this lock cannot leave the maps inconsistent.
        self.inner.feeds.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Event, EventKind, Status};

    const ADA: UserId = UserId(1);
    const BOB: UserId = UserId(2);
    const GENERAL: RoomId = RoomId(1);
    const RUST: RoomId = RoomId(2);

    /// A message for a room scope, a status change for everyone. (No kind of event is for one
    /// user alone yet.)
    fn frame(id: i64, scope: Scope) -> Arc<Frame> {
        let kind = match scope {
            Scope::Room(room_id) => EventKind::said(room_id, "r", "hi"),
            Scope::Everyone | Scope::User(_) => EventKind::Status { status: Status::Away },
        };
        Arc::new(Frame::new(Event {
            id: EventId(id),
            user_id: ADA,
            username: "ada".into(),
            created_at: String::new(),
            kind,
        }))
    }

    fn id(live: Result<Live, broadcast::error::RecvError>) -> i64 {
        match live.unwrap() {
            Live::Frame(frame) => frame.id().get(),
            Live::Revoked(_) => panic!("a frame was expected"),
        }
    }

    #[tokio::test]
    async fn each_feed_gets_what_its_view_sees_in_id_order() {
        let hub = Hub::new(16, EventId(0), Membership::default());
        let (mut general, head) = hub.subscribe(View::Room(GENERAL, ADA));
        assert_eq!(head, EventId(0));
        let (mut rust, _) = hub.subscribe(View::Room(RUST, ADA));
        let (mut ada, _) = hub.subscribe(View::User(ADA));
        let (mut bob, _) = hub.subscribe(View::User(BOB));
        hub.publish(frame(1, Scope::Room(GENERAL)));
        hub.publish(frame(2, Scope::Everyone));
        hub.publish(frame(3, Scope::Room(RUST)));
        assert_eq!([id(general.recv().await), id(general.recv().await)], [1, 2]);
        assert!(general.try_recv().is_err());
        assert_eq!([id(rust.recv().await), id(rust.recv().await)], [2, 3]);
        for user in [&mut ada, &mut bob] {
            assert_eq!(
                [id(user.recv().await), id(user.recv().await), id(user.recv().await)],
                [1, 2, 3]
            );
        }
        assert_eq!(hub.head(), EventId(3));
    }

    #[tokio::test]
    async fn routing_agrees_with_what_each_view_sees() {
        let hub = Hub::new(64, EventId(0), Membership::default());
        let views = [
            View::Room(GENERAL, ADA),
            View::Room(RUST, ADA),
            View::User(ADA),
            View::User(BOB),
        ];
        let mut receivers: Vec<_> = views.iter().map(|view| hub.subscribe(*view).0).collect();
        let scopes = [Scope::Room(GENERAL), Scope::Room(RUST), Scope::Everyone];
        for (n, scope) in scopes.iter().enumerate() {
            hub.publish(frame(n as i64 + 1, *scope));
        }
        for (view, receiver) in views.iter().zip(&mut receivers) {
            let mut got = Vec::new();
            while let Ok(Live::Frame(frame)) = receiver.try_recv() {
                got.push(frame.scope());
            }
            let expected: Vec<Scope> = scopes
                .iter()
                .copied()
                .filter(|scope| view.sees(*scope, &Membership::default()))
                .collect();
            assert_eq!(got, expected, "{view:?}");
        }
    }

    #[tokio::test]
    async fn a_members_only_room_reaches_its_members_from_their_admission_to_their_removal() {
        const SECRET: RoomId = RoomId(3);
        const CAT: UserId = UserId(3);
        let hub = Hub::new(64, EventId(0), Membership::new([(SECRET, vec![ADA])]));
        let users = [ADA, BOB, CAT];
        let mut receivers: Vec<_> = users.iter().map(|user| hub.subscribe(View::User(*user)).0).collect();
        let (mut room, _) = hub.subscribe(View::Room(SECRET, ADA));
        let mut membership = Membership::new([(SECRET, vec![ADA])]);
        // 1: ada alone; bob admitted before 2; ada dismissed after 3; 4: bob alone.
        let mut expected: Vec<Vec<i64>> = vec![Vec::new(); users.len()];
        for id in 1..=4 {
            if id == 2 {
                hub.admit(SECRET, vec![BOB]);
                membership.admit(SECRET, [BOB]);
            }
            hub.publish(frame(id, Scope::Room(SECRET)));
            for (n, user) in users.iter().enumerate() {
                if View::User(*user).sees(Scope::Room(SECRET), &membership) {
                    expected[n].push(id);
                }
            }
            if id == 3 {
                hub.dismiss(SECRET, ADA);
                membership.dismiss(SECRET, ADA);
            }
        }
        assert_eq!(expected, [vec![1, 2, 3], vec![2, 3, 4], vec![]]);
        for (receiver, expected) in receivers.iter_mut().zip(&expected) {
            let mut got = Vec::new();
            while let Ok(live) = receiver.try_recv() {
                got.push(id(Ok(live)));
            }
            assert_eq!(&got, expected);
        }
        // The room's own feed carries all of it; a room stream ends itself at its removal.
        for n in 1..=4 {
            assert_eq!(id(room.recv().await), n);
        }
    }

    #[tokio::test]
    async fn closing_ends_every_receiver_after_what_was_published() {
        let hub = Hub::new(8, EventId(0), Membership::default());
        let (mut one, _) = hub.subscribe(View::Room(GENERAL, ADA));
        let (mut mine, _) = hub.subscribe(View::User(ADA));
        hub.publish(frame(1, Scope::Room(GENERAL)));
        hub.publish(frame(2, Scope::Everyone));
        hub.close();
        hub.publish(frame(3, Scope::Room(GENERAL)));
        for receiver in [&mut one, &mut mine] {
            assert_eq!(id(receiver.recv().await), 1);
            assert_eq!(id(receiver.recv().await), 2);
            assert!(matches!(
                receiver.recv().await,
                Err(broadcast::error::RecvError::Closed)
            ));
        }
        let (mut late, head) = hub.subscribe(View::User(BOB));
        assert_eq!(head, EventId(3));
        assert!(matches!(late.recv().await, Err(broadcast::error::RecvError::Closed)));
    }

    #[tokio::test]
    async fn a_revocation_reaches_its_users_feed_and_every_room_in_order_and_is_counted() {
        let hub = Hub::new(8, EventId(0), Membership::default());
        let (mut room, _) = hub.subscribe(View::Room(GENERAL, ADA));
        let (mut ada, _) = hub.subscribe(View::User(ADA));
        let (mut bob, _) = hub.subscribe(View::User(BOB));
        hub.publish(frame(1, Scope::Room(GENERAL)));
        hub.revoke(ADA, b"hash");
        assert_eq!(hub.revocations(), 1);
        for receiver in [&mut room, &mut ada] {
            assert_eq!(id(receiver.recv().await), 1);
            match receiver.recv().await.unwrap() {
                Live::Revoked(key) => assert_eq!(&*key, b"hash"),
                Live::Frame(frame) => panic!("unexpected frame {}", frame.id()),
            }
        }
        assert_eq!(id(bob.recv().await), 1);
        assert!(
            bob.try_recv().is_err(),
            "bob's own feed does not hear of ada's sessions"
        );
    }

    #[tokio::test]
    async fn a_feed_grows_when_a_stream_falls_behind_and_its_old_receivers_see_it_end() {
        let hub = Hub::new(1024, EventId(0), Membership::default());
        let (mut old, _) = hub.subscribe(View::Room(GENERAL, ADA));
        for n in 1..=40 {
            hub.publish(frame(n, Scope::Room(GENERAL)));
        }
        assert!(matches!(old.recv().await, Err(broadcast::error::RecvError::Lagged(8))));
        hub.grow(View::Room(GENERAL, ADA));
        let (mut new, head) = hub.subscribe(View::Room(GENERAL, ADA));
        assert_eq!(head, EventId(40));
        for n in 41..=140 {
            hub.publish(frame(n, Scope::Room(GENERAL)));
        }
        // The old feed keeps what it had, then ends; the new one holds four times as much.
        for n in 9..=40 {
            assert_eq!(id(old.recv().await), n);
        }
        assert!(matches!(old.recv().await, Err(broadcast::error::RecvError::Closed)));
        assert!(!hub.is_closed(), "an old feed ending is not the hub closing");
        for n in 41..=140 {
            assert_eq!(id(new.recv().await), n);
        }
        assert_eq!(hub.feeds().rooms[&GENERAL].capacity, 128);
        hub.grow(View::Room(GENERAL, ADA));
        hub.grow(View::Room(GENERAL, ADA));
        assert_eq!(hub.feeds().rooms[&GENERAL].capacity, 1024, "never beyond the capacity");
    }

    #[tokio::test]
    async fn feeds_without_listeners_are_dropped() {
        let hub = Hub::new(8, EventId(0), Membership::default());
        drop(hub.subscribe(View::Room(GENERAL, ADA)).0);
        drop(hub.subscribe(View::User(ADA)).0);
        hub.publish(frame(1, Scope::Room(GENERAL)));
        assert!(hub.feeds().rooms.is_empty());
        assert!(hub.feeds().users.is_empty());
        let (mut again, head) = hub.subscribe(View::Room(GENERAL, ADA));
        assert_eq!(head, EventId(1));
        hub.publish(frame(2, Scope::Room(GENERAL)));
        assert_eq!(id(again.recv().await), 2);
    }
}
