//! The live tail of the log: one bounded broadcast channel per room that has listeners.
//!
//! Only the writer publishes, after commit and in id order, so every channel is in id order and
//! whatever a subscriber sees is already durable. The hub holds no history: a stream that falls
//! more than the channel's capacity behind gets `Lagged` and catches up from SQLite (and checks
//! its session, since it may have missed the news of its end).
//!
//! The news that a session has ended travels on the same channels, so a stream waits on one
//! receiver, not two: at 10,000 streams a second receiver cost every delivery two trips through
//! a lock all the streams share.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::{Bytes, BytesMut};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::model::{Event, EventId, RoomId};
use crate::render::{self, Format};

/// One committed event, encoded once for every kind of subscriber.
/// Cloning the `Arc` (or one of the `Bytes`) is the whole cost of a delivery.
#[derive(Debug)]
pub struct Frame {
    pub id: EventId,
    /// `None`: a status change, sent to every room.
    pub room_id: Option<RoomId>,
    /// `id: 42\nevent: message\ndata: {...}\n\n`
    pub json: Bytes,
    /// The same event as the htmx partial.
    pub html: Bytes,
}

impl Frame {
    pub fn encode(event: &Event) -> Result<Self, askama::Error> {
        let encode = |format| -> Result<Bytes, askama::Error> {
            let mut out = BytesMut::new();
            render::write_frame(&mut out, event, format)?;
            Ok(out.freeze())
        };
        Ok(Self {
            id: event.id,
            room_id: event.room_id(),
            json: encode(Format::Json)?,
            html: encode(Format::Html)?,
        })
    }

    pub fn bytes(&self, format: Format) -> &Bytes {
        match format {
            Format::Json => &self.json,
            Format::Html => &self.html,
        }
    }
}

/// What a room's channel carries.
#[derive(Debug, Clone)]
pub enum Live {
    /// A committed event of the room, or a status change (for every room).
    Frame(Arc<Frame>),
    /// The session with this token hash has ended (sent to every room).
    SessionEnded(Arc<[u8]>),
}

/// Cheap to clone: one `Arc`.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    rooms: Mutex<HashMap<RoomId, broadcast::Sender<Live>>>,
    capacity: usize,
    /// The newest id published: where a stream that asks for "from now" starts.
    head: AtomicI64,
    /// Cancelled once at shutdown, when the channels close.
    shutdown: CancellationToken,
    /// How many sessions have been revoked since start-up.
    ended_count: AtomicU64,
}

impl Hub {
    /// `head` is the newest id ever handed out, read from the database at start-up.
    pub fn new(capacity: usize, head: EventId) -> Self {
        Self {
            inner: Arc::new(Inner {
                rooms: Mutex::new(HashMap::new()),
                capacity: capacity.max(1),
                head: AtomicI64::new(head),
                shutdown: CancellationToken::new(),
                ended_count: AtomicU64::new(0),
            }),
        }
    }

    /// A receiver of every frame for `room` published from now on, and the newest id published
    /// before it: every event after that id arrives through the receiver. Subscribe *before*
    /// reading the database, so nothing committed in between is missed.
    pub fn subscribe(&self, room: RoomId) -> (broadcast::Receiver<Live>, EventId) {
        let mut rooms = self.rooms();
        let receiver = if self.inner.shutdown.is_cancelled() {
            // Closed already: the stream replays what is stored and ends.
            broadcast::channel(1).1
        } else {
            rooms
                .entry(room)
                .or_insert_with(|| broadcast::channel(self.inner.capacity).0)
                .subscribe()
        };
        // Read under the lock `publish` holds while it moves the head and sends.
        (receiver, self.head())
    }

    /// Sends a committed event to the streams of its room, or of every room for a status
    /// change. Called by the writer only, in id order.
    pub fn publish(&self, frame: Arc<Frame>) {
        let mut rooms = self.rooms();
        self.inner.head.fetch_max(frame.id, Ordering::AcqRel);
        match frame.room_id {
            Some(room) => {
                if let Some(sender) = rooms.get(&room)
                    && sender.send(Live::Frame(frame)).is_err()
                {
                    // Nobody listens any more; a new subscriber makes a new channel.
                    rooms.remove(&room);
                }
            }
            None => Self::send_to_all(&mut rooms, &Live::Frame(frame)),
        }
    }

    /// Tells every stream that the session with `token_hash` is gone (committed first).
    pub fn end_session(&self, token_hash: &[u8]) {
        let mut rooms = self.rooms();
        // Counted before it is sent: see `sessions_ended`.
        self.inner.ended_count.fetch_add(1, Ordering::AcqRel);
        Self::send_to_all(&mut rooms, &Live::SessionEnded(Arc::from(token_hash)));
    }

    /// How many sessions have ended so far. Read it before checking a session in the database,
    /// and compare after `subscribe`: if it moved, the session may have ended in between, and
    /// the news of it may have been sent before the subscription.
    pub fn sessions_ended(&self) -> u64 {
        self.inner.ended_count.load(Ordering::Acquire)
    }

    fn send_to_all(rooms: &mut HashMap<RoomId, broadcast::Sender<Live>>, live: &Live) {
        rooms.retain(|_, sender| sender.send(live.clone()).is_ok());
    }

    /// The newest id published so far.
    pub fn head(&self) -> EventId {
        self.inner.head.load(Ordering::Acquire)
    }

    /// Ends every open stream once it has sent what was published before: each receiver gets
    /// what its channel holds, then `Closed`. Nothing is sent live after this.
    pub fn close(&self) {
        self.inner.shutdown.cancel();
        self.rooms().clear();
    }

    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    fn rooms(&self) -> std::sync::MutexGuard<'_, HashMap<RoomId, broadcast::Sender<Live>>> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.inner.rooms.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(id: EventId, room_id: Option<RoomId>) -> Arc<Frame> {
        Arc::new(Frame {
            id,
            room_id,
            json: Bytes::new(),
            html: Bytes::new(),
        })
    }

    fn id(live: Result<Live, broadcast::error::RecvError>) -> EventId {
        match live.unwrap() {
            Live::Frame(frame) => frame.id,
            Live::SessionEnded(_) => panic!("a frame was expected"),
        }
    }

    #[tokio::test]
    async fn messages_reach_only_their_room_and_statuses_reach_all() {
        let hub = Hub::new(8, 0);
        let (mut one, head) = hub.subscribe(1);
        assert_eq!(head, 0);
        let (mut two, _) = hub.subscribe(2);
        hub.publish(frame(1, Some(1)));
        hub.publish(frame(2, None));
        assert_eq!(id(one.recv().await), 1);
        assert_eq!(id(one.recv().await), 2);
        assert_eq!(id(two.recv().await), 2);
        assert!(two.try_recv().is_err());
        assert_eq!(hub.head(), 2);
    }

    #[tokio::test]
    async fn closing_ends_every_receiver_after_what_was_published() {
        let hub = Hub::new(8, 0);
        let (mut one, _) = hub.subscribe(1);
        hub.publish(frame(1, Some(1)));
        hub.publish(frame(2, None));
        hub.close();
        hub.publish(frame(3, Some(1)));
        assert_eq!(id(one.recv().await), 1);
        assert_eq!(id(one.recv().await), 2);
        assert!(matches!(one.recv().await, Err(broadcast::error::RecvError::Closed)));
        let (mut late, head) = hub.subscribe(1);
        assert_eq!(head, 3);
        assert!(matches!(late.recv().await, Err(broadcast::error::RecvError::Closed)));
    }

    #[tokio::test]
    async fn an_ended_session_reaches_every_room_in_order_and_is_counted() {
        let hub = Hub::new(8, 0);
        let (mut one, _) = hub.subscribe(1);
        let (mut two, _) = hub.subscribe(2);
        hub.publish(frame(1, Some(1)));
        hub.end_session(b"hash");
        assert_eq!(hub.sessions_ended(), 1);
        assert_eq!(id(one.recv().await), 1);
        for receiver in [&mut one, &mut two] {
            match receiver.recv().await.unwrap() {
                Live::SessionEnded(hash) => assert_eq!(&*hash, b"hash"),
                Live::Frame(frame) => panic!("unexpected frame {}", frame.id),
            }
        }
    }

    #[tokio::test]
    async fn channels_without_listeners_are_dropped() {
        let hub = Hub::new(8, 0);
        drop(hub.subscribe(1).0);
        hub.publish(frame(1, Some(1)));
        assert!(hub.rooms().is_empty());
        let (mut again, head) = hub.subscribe(1);
        assert_eq!(head, 1);
        hub.publish(frame(2, Some(1)));
        assert_eq!(id(again.recv().await), 2);
    }
}
