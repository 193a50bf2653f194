//! Presence: who is online. A task of its own, fed by the event streams (opened, closed) and
//! by the users' own choices, which stores a status change through the writer whenever what
//! the others should see changes.
//!
//! - A user is online while they have an open stream. The first stream shows them as they
//!   chose to be (`online`, or `away`); `offline` is stored only when the last stream has been
//!   closed for the grace period, so a reconnect stores nothing.
//! - Choosing `offline` ("appear offline") sticks until they choose otherwise: streams opening
//!   and closing change nothing. Choosing `away` keeps them away when they come back.
//! - After a restart nobody has a stream yet: anyone not offline gets a grace period to
//!   reconnect before they are stored offline.
//!
//! Every change for a user is queued to the writer in the order presence decides it, so the
//! log shows them in that order.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Error;
use crate::domain::{Event, Status, UserId};
use crate::eventlog::sqlite::StoredStatus;
use crate::eventlog::{StatusChange, WriteError, Writer};

type Stored = oneshot::Receiver<Result<Event, WriteError>>;

/// Whether a change may be made now (the user's allowance of status changes).
type Allowed = Box<dyn FnOnce() -> Result<(), Error> + Send>;

/// Where presence stores a status change: the writer, or a test's recorder.
pub trait StatusStore: Send + Sync + 'static {
    /// Queues `change` behind every change queued before it; the receiver answers once it is
    /// committed.
    fn queue(&self, change: StatusChange) -> impl Future<Output = Stored> + Send;
}

impl StatusStore for Writer {
    async fn queue(&self, change: StatusChange) -> Stored {
        let (reply, stored) = oneshot::channel();
        self.enqueue_status(change, reply).await;
        stored
    }
}

/// What presence hears.
enum Note {
    Opened {
        user_id: UserId,
        username: String,
    },
    Closed {
        user_id: UserId,
    },
    Chosen {
        change: StatusChange,
        /// Asked only if the choice changes something: an unchanged status costs nothing.
        allowed: Allowed,
        reply: oneshot::Sender<Result<Option<Stored>, Error>>,
    },
    GraceOver {
        user_id: UserId,
        epoch: u64,
    },
}

/// The handle streams and the status route tell presence through. Cloning copies a sender.
#[derive(Clone)]
pub struct Presence {
    notes: mpsc::UnboundedSender<Note>,
}

impl Presence {
    /// Starts presence from the statuses stored before a restart. It stops once every handle
    /// is gone and `closed` (shutdown) has been cancelled; after `closed`, streams closing say
    /// nothing about their users.
    pub fn spawn(
        store: impl StatusStore,
        restored: Vec<StoredStatus>,
        grace: Duration,
        closed: CancellationToken,
    ) -> (Self, JoinHandle<()>) {
        let (notes, receiver) = mpsc::unbounded_channel();
        let mut task = Task {
            store,
            members: HashMap::new(),
            grace,
            notes: notes.downgrade(),
            closed,
        };
        for status in restored {
            task.restore(status);
        }
        (Self { notes }, tokio::spawn(task.run(receiver)))
    }

    /// Counts an open stream of `user_id` until the returned guard is dropped.
    pub fn stream_opened(&self, user_id: UserId, username: String) -> PresenceGuard {
        let _ = self.notes.send(Note::Opened { user_id, username });
        PresenceGuard {
            user_id,
            notes: self.notes.clone(),
        }
    }

    /// The user chose `change.status`: answers with the stored event once committed, or
    /// `None` if they already show it as their choice (nothing is stored or published, and
    /// `allowed` is not asked).
    pub async fn choose(
        &self,
        change: StatusChange,
        allowed: impl FnOnce() -> Result<(), Error> + Send + 'static,
    ) -> Result<Option<Event>, Error> {
        let stopped = || Error::Unavailable(WriteError::Stopped);
        let (reply, queued) = oneshot::channel();
        let allowed = Box::new(allowed);
        self.notes
            .send(Note::Chosen { change, allowed, reply })
            .map_err(|_| stopped())?;
        let Some(stored) = queued.await.map_err(|_| stopped())?? else {
            return Ok(None);
        };
        Ok(Some(stored.await.map_err(|_| stopped())??))
    }
}

/// Held by an open event stream; dropping it (the client went away) tells presence.
pub struct PresenceGuard {
    user_id: UserId,
    notes: mpsc::UnboundedSender<Note>,
}

impl Drop for PresenceGuard {
    fn drop(&mut self) {
        let _ = self.notes.send(Note::Closed { user_id: self.user_id });
    }
}

struct Member {
    username: String,
    streams: u32,
    /// What the others were last shown (or are about to be).
    shown: Status,
    /// What the user chose.
    chosen: Status,
    /// Bumped whenever a pending grace period must no longer count.
    epoch: u64,
}

struct Task<S> {
    store: S,
    members: HashMap<UserId, Member>,
    grace: Duration,
    /// For the grace timers' notes; weak, so presence ends when the last handle does.
    notes: mpsc::WeakUnboundedSender<Note>,
    closed: CancellationToken,
}

impl<S: StatusStore> Task<S> {
    async fn run(mut self, mut notes: mpsc::UnboundedReceiver<Note>) {
        while let Some(note) = notes.recv().await {
            self.note(note).await;
        }
    }

    fn restore(&mut self, stored: StoredStatus) {
        let member = Member {
            username: stored.username,
            streams: 0,
            shown: stored.shown,
            chosen: stored.chosen,
            epoch: 0,
        };
        let waiting = member.shown != Status::Offline;
        self.members.insert(stored.user_id, member);
        if waiting {
            self.start_grace(stored.user_id, 0);
        }
    }

    async fn note(&mut self, note: Note) {
        match note {
            Note::Opened { user_id, username } => {
                let member = self.members.entry(user_id).or_insert_with(|| Member {
                    username,
                    streams: 0,
                    shown: Status::Offline,
                    chosen: Status::Online,
                    epoch: 0,
                });
                member.streams += 1;
                member.epoch += 1;
                if member.streams == 1 && member.shown == Status::Offline && member.chosen != Status::Offline {
                    member.shown = member.chosen;
                    let change = change(user_id, member, false);
                    drop(self.store.queue(change).await);
                }
            }
            Note::Closed { user_id } => {
                // At shutdown every stream closes; that says nothing about the users.
                if self.closed.is_cancelled() {
                    return;
                }
                let Some(member) = self.members.get_mut(&user_id) else {
                    return;
                };
                member.streams = member.streams.saturating_sub(1);
                if member.streams == 0 {
                    member.epoch += 1;
                    let epoch = member.epoch;
                    self.start_grace(user_id, epoch);
                }
            }
            Note::GraceOver { user_id, epoch } => {
                let Some(member) = self.members.get_mut(&user_id) else {
                    return;
                };
                if member.streams == 0 && member.epoch == epoch && member.shown != Status::Offline {
                    member.shown = Status::Offline;
                    let change = change(user_id, member, false);
                    drop(self.store.queue(change).await);
                }
            }
            Note::Chosen {
                change: chosen,
                allowed,
                reply,
            } => {
                let user_id = chosen.user_id;
                let member = self.members.entry(user_id).or_insert_with(|| Member {
                    username: chosen.username.clone(),
                    streams: 0,
                    shown: Status::Offline,
                    chosen: Status::Online,
                    epoch: 0,
                });
                if member.chosen == chosen.status && member.shown == chosen.status {
                    let _ = reply.send(Ok(None));
                    return;
                }
                if let Err(refused) = allowed() {
                    let _ = reply.send(Err(refused));
                    return;
                }
                member.chosen = chosen.status;
                member.shown = chosen.status;
                member.epoch += 1;
                let (streams, epoch) = (member.streams, member.epoch);
                let _ = reply.send(Ok(Some(self.store.queue(chosen).await)));
                // Chosen without a stream open (an API client): shown until the grace ends.
                if streams == 0 {
                    self.start_grace(user_id, epoch);
                }
            }
        }
    }

    fn start_grace(&self, user_id: UserId, epoch: u64) {
        let notes = self.notes.clone();
        // From now, not from when the timer task first runs.
        let over = tokio::time::Instant::now() + self.grace;
        tokio::spawn(async move {
            tokio::time::sleep_until(over).await;
            if let Some(notes) = notes.upgrade() {
                let _ = notes.send(Note::GraceOver { user_id, epoch });
            }
        });
    }
}

fn change(user_id: UserId, member: &Member, chosen: bool) -> StatusChange {
    StatusChange {
        user_id,
        username: member.username.clone(),
        status: member.shown,
        chosen,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::domain::{EventId, EventKind};

    const GRACE: Duration = Duration::from_secs(5);
    const ADA: UserId = UserId(1);

    /// Records what presence stores, in order, and answers at once.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<(Status, bool)>>>);

    impl StatusStore for Recorder {
        async fn queue(&self, change: StatusChange) -> Stored {
            let mut log = self.0.lock().unwrap();
            log.push((change.status, change.chosen));
            let (reply, stored) = oneshot::channel();
            let _ = reply.send(Ok(Event {
                id: EventId(log.len() as i64),
                user_id: change.user_id,
                username: change.username,
                created_at: String::new(),
                kind: EventKind::Status { status: change.status },
            }));
            stored
        }
    }

    impl Recorder {
        fn take(&self) -> Vec<(Status, bool)> {
            std::mem::take(&mut self.0.lock().unwrap())
        }
    }

    fn start(restored: Vec<StoredStatus>) -> (Presence, Recorder, CancellationToken) {
        let recorder = Recorder::default();
        let closed = CancellationToken::new();
        let (presence, _) = Presence::spawn(recorder.clone(), restored, GRACE, closed.clone());
        (presence, recorder, closed)
    }

    /// Lets presence and its timers run until nothing more is ready.
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    async fn choose(presence: &Presence, status: Status) {
        let change = StatusChange {
            user_id: ADA,
            username: "ada".into(),
            status,
            chosen: true,
        };
        presence.choose(change, || Ok(())).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn online_while_a_stream_is_open_and_offline_after_the_grace() {
        let (presence, recorder, _) = start(vec![]);
        let stream = presence.stream_opened(ADA, "ada".into());
        settle().await;
        assert_eq!(recorder.take(), [(Status::Online, false)]);
        drop(stream);
        settle().await;
        tokio::time::advance(GRACE - Duration::from_millis(1)).await;
        settle().await;
        assert_eq!(recorder.take(), [], "still within the grace");
        tokio::time::advance(Duration::from_millis(2)).await;
        settle().await;
        assert_eq!(recorder.take(), [(Status::Offline, false)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_reconnect_within_the_grace_stores_nothing() {
        let (presence, recorder, _) = start(vec![]);
        let first = presence.stream_opened(ADA, "ada".into());
        settle().await;
        recorder.take();
        drop(first);
        settle().await;
        tokio::time::advance(GRACE / 2).await;
        let _second = presence.stream_opened(ADA, "ada".into());
        tokio::time::advance(GRACE * 2).await;
        settle().await;
        assert_eq!(recorder.take(), []);
    }

    #[tokio::test(start_paused = true)]
    async fn appearing_offline_sticks_while_streams_come_and_go() {
        let (presence, recorder, _) = start(vec![]);
        let stream = presence.stream_opened(ADA, "ada".into());
        settle().await;
        choose(&presence, Status::Offline).await;
        assert_eq!(recorder.take(), [(Status::Online, false), (Status::Offline, true)]);
        drop(stream);
        settle().await;
        tokio::time::advance(GRACE * 2).await;
        let _again = presence.stream_opened(ADA, "ada".into());
        settle().await;
        tokio::time::advance(GRACE * 2).await;
        settle().await;
        assert_eq!(recorder.take(), [], "nothing: they appear offline");
    }

    #[tokio::test(start_paused = true)]
    async fn choosing_what_one_already_shows_stores_nothing_and_asks_no_allowance() {
        let (presence, recorder, _) = start(vec![]);
        let _stream = presence.stream_opened(ADA, "ada".into());
        settle().await;
        choose(&presence, Status::Away).await;
        assert_eq!(recorder.take(), [(Status::Online, false), (Status::Away, true)]);
        let again = StatusChange {
            user_id: ADA,
            username: "ada".into(),
            status: Status::Away,
            chosen: true,
        };
        let unchanged = presence.choose(again.clone(), || panic!("not asked")).await.unwrap();
        assert!(unchanged.is_none());
        assert_eq!(recorder.take(), []);
        // A refused change is not made.
        let online = StatusChange {
            status: Status::Online,
            ..again
        };
        let refused = presence
            .choose(online, || {
                Err(Error::TooManyRequests {
                    what: "status changes",
                    retry_after: Duration::from_secs(1),
                })
            })
            .await;
        assert!(matches!(refused, Err(Error::TooManyRequests { .. })));
        assert_eq!(recorder.take(), []);
    }

    #[tokio::test(start_paused = true)]
    async fn away_comes_back_away() {
        let (presence, recorder, _) = start(vec![]);
        let stream = presence.stream_opened(ADA, "ada".into());
        settle().await;
        choose(&presence, Status::Away).await;
        drop(stream);
        settle().await;
        tokio::time::advance(GRACE * 2).await;
        settle().await;
        let _back = presence.stream_opened(ADA, "ada".into());
        settle().await;
        assert_eq!(
            recorder.take(),
            [
                (Status::Online, false),
                (Status::Away, true),
                (Status::Offline, false),
                (Status::Away, false)
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_restart_the_online_get_a_grace_and_the_chosen_status_is_kept() {
        let restored = |shown, chosen| StoredStatus {
            user_id: ADA,
            username: "ada".into(),
            shown,
            chosen,
        };
        let (_presence, recorder, _) = start(vec![restored(Status::Online, Status::Online)]);
        tokio::time::advance(GRACE * 2).await;
        settle().await;
        assert_eq!(recorder.take(), [(Status::Offline, false)]);

        let (presence, recorder, _) = start(vec![restored(Status::Offline, Status::Offline)]);
        let _stream = presence.stream_opened(ADA, "ada".into());
        tokio::time::advance(GRACE * 2).await;
        settle().await;
        assert_eq!(recorder.take(), [], "appearing offline survives a restart");
    }

    #[tokio::test(start_paused = true)]
    async fn streams_closing_at_shutdown_say_nothing() {
        let (presence, recorder, closed) = start(vec![]);
        let stream = presence.stream_opened(ADA, "ada".into());
        settle().await;
        recorder.take();
        closed.cancel();
        drop(stream);
        tokio::time::advance(GRACE * 2).await;
        settle().await;
        assert_eq!(recorder.take(), []);
    }
}
