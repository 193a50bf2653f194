//! The one writer. Every change to the database goes through this task, which
//!
//! 1. takes whatever requests are waiting (group commit: one fsync pays for all of them),
//! 2. applies each so that a refused request is undone alone and the rest of the batch goes on:
//!    a request whose first statement is the only one that can be refused needs nothing more
//!    (SQLite undoes a failed statement itself); one that could be refused after it wrote runs
//!    inside a `SAVEPOINT`. Messages in a row share one `INSERT`, in which a repeated
//!    `client_id` is skipped, not refused,
//! 3. commits, and only then
//! 4. publishes each new event to the hub, in id order, and answers each request.
//!
//! So a client is answered only once its event is durable, what a subscriber sees live is
//! already durable, and live order equals id order. Each request carries its own reply type,
//! so no caller matches an outcome it cannot get.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::SqliteConnection;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::change::{Edit, Invite, Join, Joined, NewInvite, React, ReadMark, Target};
use super::change::{MemberChange, NewRoom, NewSession, Post, Posted, RoomChange, StatusChange, WriteError};
use super::hub::Hub;
use super::sqlite::writes;
use crate::domain::{Event, EventId, EventKind, NotifyLevel, Quote, Role, RoomId, RoomKind, UserId};
use crate::metrics::Metrics;
use crate::wire::Frame;

/// Most requests in one transaction. More waiting than this simply makes the next batch.
const MAX_BATCH: usize = 1024;
/// Requests that may wait for the writer before senders wait too.
const QUEUE_DEPTH: usize = 16 * 1024;

pub type Reply<T> = oneshot::Sender<Result<T, WriteError>>;

/// A change to make, and where its answer goes.
enum Request {
    StartSession(UserId, NewSession, Reply<()>),
    EndSession(UserId, Vec<u8>, Reply<bool>),
    /// A user's session by its public id.
    EndSessionById(UserId, String, Reply<bool>),
    /// Every session of a user but the one with this token hash.
    EndOtherSessions(UserId, Vec<u8>, Reply<u64>),
    /// A new password hash; every other session of the user ends.
    ChangePassword(UserId, String, Vec<u8>, Reply<()>),
    /// A user's role and whether they are active; a deactivated user's sessions end.
    UpdateAccount(UserId, Option<Role>, Option<bool>, Reply<()>),
    TouchSession(Vec<u8>, Option<String>),
    ExpireSessions(Duration, Duration),
    /// Changes nothing: answered once everything queued before it is committed.
    Barrier(Reply<()>),
    CreateRoom(NewRoom, Reply<Event>),
    /// Someone joins or leaves a private room; `None` when they already were in (or out).
    ChangeMember(MemberChange, Reply<Option<Event>>),
    /// A room's topic or archived flag; `None` when both were already so.
    ChangeRoom(RoomChange, Reply<Option<Event>>),
    Post(Post, Reply<Posted>),
    /// A message's new text; `None` when it already says that.
    Edit(Edit, Reply<Option<Event>>),
    /// A message erased; its `delete` event.
    Delete(Target, Reply<Event>),
    /// Messages past the time they are kept, erased as their authors would: how many were
    /// still there.
    Expire(Vec<EventId>, Reply<usize>),
    /// A reaction added or taken back; `None` when it already was (or was not) there.
    React(React, Reply<Option<Event>>),
    SetStatus(StatusChange, Reply<Event>),
    /// A read cursor moved forward: its `read` event; `None` when it was not forward.
    Read(ReadMark, Reply<Option<Event>>),
    /// How loudly a room may call for a user.
    SetNotify(UserId, RoomId, NotifyLevel, Reply<()>),
    /// A sign-up, or an account an admin makes: admitted, and any invite's use taken, with it.
    Join(Join, Reply<Joined>),
    CreateInvite(NewInvite, Reply<Invite>),
    /// Whether there is an invite with this code.
    RevokeInvite(String, Reply<bool>),
}

impl Request {
    /// Answers a request that was never applied: its batch failed first.
    fn fail(self, error: WriteError) {
        fn send<T>(reply: Reply<T>, error: WriteError) {
            let _ = reply.send(Err(error));
        }
        match self {
            Self::StartSession(.., reply) => send(reply, error),
            Self::EndSession(.., reply) | Self::EndSessionById(.., reply) => send(reply, error),
            Self::EndOtherSessions(.., reply) => send(reply, error),
            Self::ChangePassword(.., reply) | Self::UpdateAccount(.., reply) | Self::Barrier(reply) => {
                send(reply, error)
            }
            Self::CreateRoom(_, reply) => send(reply, error),
            Self::ChangeMember(_, reply) | Self::ChangeRoom(_, reply) => send(reply, error),
            Self::Post(_, reply) => send(reply, error),
            Self::Edit(_, reply) | Self::React(_, reply) => send(reply, error),
            Self::Delete(_, reply) => send(reply, error),
            Self::Expire(_, reply) => send(reply, error),
            Self::SetStatus(_, reply) => send(reply, error),
            Self::Read(_, reply) => send(reply, error),
            Self::SetNotify(.., reply) => send(reply, error),
            Self::Join(_, reply) => send(reply, error),
            Self::CreateInvite(_, reply) => send(reply, error),
            Self::RevokeInvite(_, reply) => send(reply, error),
            Self::TouchSession(..) | Self::ExpireSessions(..) => {}
        }
    }
}

/// What an applied request does once the batch is committed (or fails to be).
struct Applied {
    /// Who may read a members-only room from its first event here on (the hub is told
    /// before the events are published).
    admit: Vec<(RoomId, Vec<UserId>)>,
    /// To publish, in order.
    events: Vec<Event>,
    /// Who may no longer read a room after the last event here (told after they are
    /// published: a removed member sees the event of their removal).
    dismiss: Vec<(RoomId, UserId)>,
    /// Sessions to end on every stream: their user and token hash.
    revoke: Vec<(UserId, Vec<u8>)>,
    /// Some credential allows something else now: sessions are checked again.
    credentials_changed: bool,
    /// Text was erased: the WAL's copies of it are to go soon.
    erased: bool,
    /// Sends the request's answer; given the batch's failure, sends that instead.
    answer: Answer,
}

type Answer = Box<dyn FnOnce(Option<WriteError>) + Send>;

impl Applied {
    fn answer<T: Send + 'static>(reply: Option<Reply<T>>, outcome: Result<T, WriteError>) -> Self {
        Self {
            admit: Vec::new(),
            events: Vec::new(),
            dismiss: Vec::new(),
            revoke: Vec::new(),
            credentials_changed: false,
            erased: false,
            answer: Box::new(move |failed| {
                if let Some(reply) = reply {
                    let _ = reply.send(match failed {
                        Some(error) => Err(error),
                        None => outcome,
                    });
                }
            }),
        }
    }

    fn publishing(mut self, event: Event) -> Self {
        self.events.push(event);
        self
    }
}

/// The handle requests are written through. Cloning copies a channel sender.
#[derive(Clone)]
pub struct Writer {
    requests: mpsc::Sender<Request>,
}

impl Writer {
    async fn ask<T>(&self, request: impl FnOnce(Reply<T>) -> Request) -> Result<T, WriteError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(request(reply))
            .await
            .map_err(|_| WriteError::Stopped)?;
        answer.await.map_err(|_| WriteError::Stopped)?
    }

    /// Queues a request nobody waits for. Dropped when the queue is full: what it records is
    /// recorded again later.
    fn detach(&self, request: Request) {
        let _ = self.requests.try_send(request);
    }

    pub async fn start_session(&self, user: UserId, session: NewSession) -> Result<(), WriteError> {
        self.ask(|reply| Request::StartSession(user, session, reply)).await
    }

    /// Ends `user`'s session with the public id `id`; its streams end. Whether there was one.
    pub async fn end_session_by_id(&self, user: UserId, id: String) -> Result<bool, WriteError> {
        self.ask(|reply| Request::EndSessionById(user, id, reply)).await
    }

    /// Ends every session of `user` but the one whose token hash is `keep`; their streams end.
    /// How many ended.
    pub async fn end_other_sessions(&self, user: UserId, keep: Vec<u8>) -> Result<u64, WriteError> {
        self.ask(|reply| Request::EndOtherSessions(user, keep, reply)).await
    }

    /// Sets `user`'s role and whether they are active. `Conflict("the last admin")` if that
    /// would leave no active admin; a deactivated user's sessions end, with their streams.
    pub async fn update_account(
        &self,
        user: UserId,
        role: Option<Role>,
        active: Option<bool>,
    ) -> Result<(), WriteError> {
        self.ask(|reply| Request::UpdateAccount(user, role, active, reply))
            .await
    }

    /// Stores `user`'s new password hash and ends every other session of theirs, together.
    pub async fn change_password(&self, user: UserId, password_hash: String, keep: Vec<u8>) -> Result<(), WriteError> {
        self.ask(|reply| Request::ChangePassword(user, password_hash, keep, reply))
            .await
    }

    /// Ends the session; its streams end. Whether there was such a session.
    pub async fn end_session(&self, user: UserId, token_hash: Vec<u8>) -> Result<bool, WriteError> {
        self.ask(|reply| Request::EndSession(user, token_hash, reply)).await
    }

    /// Records a session's use, without waiting.
    pub fn touch_session(&self, token_hash: Vec<u8>, address: Option<String>) {
        self.detach(Request::TouchSession(token_hash, address));
    }

    /// Removes the sessions unused for longer than `idle` or older than `lifetime`, without
    /// waiting.
    pub fn expire_sessions(&self, idle: Duration, lifetime: Duration) {
        self.detach(Request::ExpireSessions(idle, lifetime));
    }

    /// Waits until every request queued before this call is committed (or has failed).
    pub async fn barrier(&self) -> Result<(), WriteError> {
        self.ask(Request::Barrier).await
    }

    /// Makes a room; returns its `room` event. `Conflict("room")` if the name is taken.
    pub async fn create_room(&self, room: NewRoom) -> Result<Event, WriteError> {
        self.ask(|reply| Request::CreateRoom(room, reply)).await
    }

    /// Adds or removes a member of a private room; the `member` event, or `None` when nothing
    /// changed. `Gone("room")` if the one doing it is not a member (any more).
    pub async fn change_member(&self, change: MemberChange) -> Result<Option<Event>, WriteError> {
        self.ask(|reply| Request::ChangeMember(change, reply)).await
    }

    /// Sets a room's topic or archived flag; its `room` event, or `None` when nothing changed.
    pub async fn change_room(&self, change: RoomChange) -> Result<Option<Event>, WriteError> {
        self.ask(|reply| Request::ChangeRoom(change, reply)).await
    }

    /// Stores a message. `Gone("room")` if the room is members-only and its author is not one;
    /// `Gone("message")` if the message it answers is not in the room (any more).
    pub async fn post(&self, post: Post) -> Result<Posted, WriteError> {
        self.ask(|reply| Request::Post(post, reply)).await
    }

    /// Stores a message's new text: its `edit` event, or `None` when it already says that.
    /// `Gone` if the message was deleted, or its room can no longer be read by its author.
    pub async fn edit(&self, edit: Edit) -> Result<Option<Event>, WriteError> {
        self.ask(|reply| Request::Edit(edit, reply)).await
    }

    /// Erases a message's text and every version of it; its `delete` event. `Gone` as for
    /// `edit`.
    pub async fn delete(&self, target: Target) -> Result<Event, WriteError> {
        self.ask(|reply| Request::Delete(target, reply)).await
    }

    /// Erases the messages `ids`, each with a `delete` event by its author, and moves the
    /// retention horizon past them: how many were still there to erase.
    pub async fn expire(&self, ids: Vec<EventId>) -> Result<usize, WriteError> {
        self.ask(|reply| Request::Expire(ids, reply)).await
    }

    /// Adds or takes back a reaction: its `reaction` event, or `None` when nothing changed.
    /// `Gone` as for `edit`; `Conflict("reactions")` when the message has as many different
    /// reactions as it may.
    pub async fn react(&self, react: React) -> Result<Option<Event>, WriteError> {
        self.ask(|reply| Request::React(react, reply)).await
    }

    /// Moves a read cursor forward: the `read` event, or `None` when `up_to` is not past
    /// where its user has read to. `Gone("room")` if the room is members-only and they are not
    /// a member (any more).
    pub async fn read(&self, mark: ReadMark) -> Result<Option<Event>, WriteError> {
        self.ask(|reply| Request::Read(mark, reply)).await
    }

    /// Sets how loudly `room` may call for `user`.
    pub async fn set_notify(&self, user: UserId, room: RoomId, level: NotifyLevel) -> Result<(), WriteError> {
        self.ask(|reply| Request::SetNotify(user, room, level, reply)).await
    }

    /// Queues a status change behind every request queued before it, waiting only for room
    /// in the queue; `reply` answers once it is committed (or is dropped if the writer has
    /// stopped).
    pub async fn enqueue_status(&self, change: StatusChange, reply: Reply<Event>) {
        let _ = self.requests.send(Request::SetStatus(change, reply)).await;
    }

    /// Makes an account if its admission lets it in, taking an invite's use with it.
    /// `Conflict("username")` or `Conflict("look-alike")` if the name is taken.
    pub async fn join(&self, join: Join) -> Result<Joined, WriteError> {
        self.ask(|reply| Request::Join(join, reply)).await
    }

    /// Stores an invite. `Conflict("live invites")` if there are as many as it allows.
    pub async fn create_invite(&self, invite: NewInvite) -> Result<Invite, WriteError> {
        self.ask(|reply| Request::CreateInvite(invite, reply)).await
    }

    /// Revokes the invite with this code; whether there is one.
    pub async fn revoke_invite(&self, code: String) -> Result<bool, WriteError> {
        self.ask(|reply| Request::RevokeInvite(code, reply)).await
    }
}

/// Starts the writer on `conn`. It runs until `stop` is cancelled, then finishes what is
/// queued and returns.
/// `erased` is notified after a commit that erased text (a deleted message), so that the
/// copies of it in the WAL go soon.
pub fn spawn(
    conn: SqliteConnection,
    hub: Hub,
    metrics: Arc<Metrics>,
    erased: Arc<Notify>,
    stop: CancellationToken,
) -> (Writer, JoinHandle<()>) {
    let (requests, requests_rx) = mpsc::channel(QUEUE_DEPTH);
    let task = Task {
        conn,
        hub,
        metrics,
        erased,
        requests: requests_rx,
    };
    (Writer { requests }, tokio::spawn(task.run(stop)))
}

struct Task {
    conn: SqliteConnection,
    hub: Hub,
    metrics: Arc<Metrics>,
    erased: Arc<Notify>,
    requests: mpsc::Receiver<Request>,
}

impl Task {
    async fn run(mut self, stop: CancellationToken) {
        let mut batch = VecDeque::new();
        loop {
            let stopping = tokio::select! {
                biased;
                request = self.requests.recv() => match request {
                    Some(request) => { batch.push_back(request); false }
                    None => true,
                },
                () = stop.cancelled() => true,
            };
            loop {
                while batch.len() < MAX_BATCH
                    && let Ok(request) = self.requests.try_recv()
                {
                    batch.push_back(request);
                }
                if batch.is_empty() {
                    break;
                }
                self.commit(std::mem::take(&mut batch)).await;
            }
            if stopping {
                break;
            }
        }
        tracing::info!("writer stopped");
    }

    /// One transaction for the whole batch; then publish and answer, in order.
    async fn commit(&mut self, batch: VecDeque<Request>) {
        self.metrics.write_batch_size.observe(batch.len() as f64);
        let started = std::time::Instant::now();
        let outcome = self.apply_batch(batch).await;
        self.metrics.commit_seconds.observe(started.elapsed().as_secs_f64());
        match outcome {
            Ok(applied) => {
                for done in applied {
                    for (room, users) in done.admit {
                        self.hub.admit(room, users);
                    }
                    // A request's events are encoded first, then sent one after another: a
                    // request that makes several (a direct room and its members) reaches the
                    // feeds as one burst.
                    let frames: Vec<Arc<Frame>> = done
                        .events
                        .into_iter()
                        .map(|event| Arc::new(Frame::encoded(event)))
                        .collect();
                    for frame in frames {
                        self.metrics.events_written.inc();
                        self.hub.publish(frame);
                    }
                    for (room, user) in done.dismiss {
                        self.hub.dismiss(room, user);
                    }
                    for (user, token_hash) in &done.revoke {
                        self.hub.revoke(*user, token_hash);
                    }
                    if done.credentials_changed {
                        self.hub.credentials_changed();
                    }
                    if done.erased {
                        self.erased.notify_one();
                    }
                    (done.answer)(None);
                }
            }
            Err((error, applied, rest)) => {
                tracing::error!(%error, requests = applied.len() + rest.len(), "batch not committed");
                for done in applied {
                    (done.answer)(Some(error.clone()));
                }
                for request in rest {
                    request.fail(error.clone());
                }
            }
        }
    }

    /// Runs the batch in one transaction. The `Err` means nothing was committed; it carries
    /// the requests applied so far and those not reached, to be answered with the error.
    async fn apply_batch(
        &mut self,
        mut batch: VecDeque<Request>,
    ) -> Result<Vec<Applied>, (WriteError, Vec<Applied>, VecDeque<Request>)> {
        let mut applied = Vec::with_capacity(batch.len());
        if let Err(error) = writes::exec(&mut self.conn, "BEGIN IMMEDIATE").await {
            return Err((error, applied, batch));
        }
        while !batch.is_empty() {
            if let Err(error) = self.apply_next(&mut batch, &mut applied).await {
                self.rollback().await;
                return Err((error, applied, batch));
            }
        }
        if let Err(error) = writes::exec(&mut self.conn, "COMMIT").await {
            self.rollback().await;
            return Err((error, applied, batch));
        }
        Ok(applied)
    }

    /// Applies the request at the front of `batch` (or the run of messages there). The `Err`
    /// is a failure that may have spoilt the transaction (an I/O error, a full disk): nothing
    /// of the batch may then be reported done.
    async fn apply_next(
        &mut self,
        batch: &mut VecDeque<Request>,
        applied: &mut Vec<Applied>,
    ) -> Result<(), WriteError> {
        let Some(request) = batch.pop_front() else {
            return Ok(());
        };
        let conn = &mut self.conn;
        let done = match request {
            Request::Post(post, reply) => {
                // Messages in a row, the bulk of any busy batch, are stored together: each
                // statement is a round trip to SQLite's thread, and that trip costs more than
                // storing a message.
                let mut run = vec![(post, reply)];
                while let Some(Request::Post(..)) = batch.front() {
                    if let Some(Request::Post(post, reply)) = batch.pop_front() {
                        run.push((post, reply));
                    }
                }
                // A members-only room takes messages from its members as of now, after every
                // change of members before it.
                // A reply answers a message of its room that is still there.
                let mut allowed = Vec::with_capacity(run.len());
                for (post, reply) in run {
                    if post.members_only && !writes::is_member(conn, post.room_id, post.user_id).await? {
                        applied.push(Applied::answer(Some(reply), Err::<Posted, _>(WriteError::Gone("room"))));
                        continue;
                    }
                    let quote = match post.reply_to {
                        None => None,
                        Some(id) => match writes::live_message(conn, id, post.room_id).await? {
                            Some((username, content)) => Some(Quote {
                                id,
                                username,
                                content: Some(content),
                            }),
                            None => {
                                // A retry of a reply stored before its original was deleted
                                // finds what was stored.
                                let outcome = match writes::sent_before(conn, &post).await? {
                                    Some(Ok(stored)) => Ok(Posted {
                                        event: post.into_event(
                                            stored.id,
                                            stored.created_at,
                                            Some(Quote {
                                                id,
                                                username: String::new(),
                                                content: None,
                                            }),
                                        ),
                                        new: false,
                                    }),
                                    Some(Err(refused)) => Err(refused),
                                    None => Err(WriteError::Gone("message")),
                                };
                                applied.push(Applied::answer(Some(reply), outcome));
                                continue;
                            }
                        },
                    };
                    allowed.push((post, reply, quote));
                }
                let run = allowed;
                let posts: Vec<&Post> = run.iter().map(|(post, ..)| post).collect();
                let stored = writes::insert_posts(conn, &posts).await?;
                let mentioned: Vec<_> = run
                    .iter()
                    .zip(&stored)
                    .filter_map(|((post, ..), stored)| stored.as_ref().ok().filter(|s| s.new).map(|s| (post, s.id)))
                    .flat_map(|(post, id)| post.mentions.iter().map(move |(user, _)| (id, *user)))
                    .collect();
                writes::insert_mention_rows(conn, &mentioned).await?;
                let calls_room: Vec<_> = run
                    .iter()
                    .zip(&stored)
                    .filter_map(|((post, ..), stored)| {
                        stored
                            .as_ref()
                            .ok()
                            .filter(|s| s.new && post.mentions_room)
                            .map(|s| s.id)
                    })
                    .collect();
                writes::mark_room_mentions(conn, &calls_room).await?;
                for ((post, reply, quote), stored) in run.into_iter().zip(stored) {
                    applied.push(match stored {
                        Ok(stored) => {
                            let event = post.into_event(stored.id, stored.created_at, quote);
                            let done = Applied::answer(
                                Some(reply),
                                Ok(Posted {
                                    event: event.clone(),
                                    new: stored.new,
                                }),
                            );
                            if stored.new { done.publishing(event) } else { done }
                        }
                        Err(refused) => Applied::answer(Some(reply), Err::<Posted, _>(refused)),
                    });
                }
                return Ok(());
            }
            Request::Edit(edit, reply) => match self.reachable(&edit.target).await? {
                None => Applied::answer(Some(reply), Err::<Option<Event>, _>(WriteError::Gone("message"))),
                Some(now) if now == edit.content => Applied::answer(Some(reply), Ok(None)),
                Some(_) => {
                    let conn = &mut self.conn;
                    let target = edit.target;
                    let (id, created_at) = writes::insert_change(
                        conn,
                        "edit",
                        target.room_id,
                        target.by,
                        target.message_id,
                        Some(&edit.content),
                    )
                    .await?;
                    writes::insert_mentions(conn, id, &edit.mentions).await?;
                    if edit.mentions_room {
                        writes::mark_room_mentions(conn, &[id]).await?;
                    }
                    writes::reindex_message(conn, target.message_id, &edit.content).await?;
                    let event = Event {
                        id,
                        user_id: target.by,
                        username: target.by_name,
                        created_at,
                        kind: EventKind::Edit {
                            room_id: target.room_id,
                            room: target.room,
                            message_id: target.message_id,
                            content: edit.content,
                            mentions: edit.mentions.into_iter().map(|(_, name)| name).collect(),
                            mentions_room: edit.mentions_room,
                            rendered: Some(edit.rendered),
                        },
                    };
                    Applied::answer(Some(reply), Ok(Some(event.clone()))).publishing(event)
                }
            },
            Request::Delete(target, reply) => match self.reachable(&target).await? {
                None => Applied::answer(Some(reply), Err::<Event, _>(WriteError::Gone("message"))),
                Some(_) => {
                    let conn = &mut self.conn;
                    writes::erase_message(conn, target.message_id).await?;
                    let (id, created_at) =
                        writes::insert_change(conn, "delete", target.room_id, target.by, target.message_id, None)
                            .await?;
                    let event = Event {
                        id,
                        user_id: target.by,
                        username: target.by_name,
                        created_at,
                        kind: EventKind::Delete {
                            room_id: target.room_id,
                            room: target.room,
                            message_id: target.message_id,
                        },
                    };
                    let mut done = Applied::answer(Some(reply), Ok(event.clone())).publishing(event);
                    done.erased = true;
                    done
                }
            },
            Request::Expire(ids, reply) => {
                let mut erased = 0;
                for message in ids {
                    // Deleted or expired since it was found: nothing to do.
                    let Some(live) = writes::live_message_of(conn, message).await? else {
                        continue;
                    };
                    writes::erase_message(conn, message).await?;
                    let (id, created_at) =
                        writes::insert_change(conn, "delete", live.room_id, live.user_id, message, None).await?;
                    writes::keep_from(conn, message).await?;
                    let event = Event {
                        id,
                        user_id: live.user_id,
                        username: live.username,
                        created_at,
                        kind: EventKind::Delete {
                            room_id: live.room_id,
                            room: live.room,
                            message_id: message,
                        },
                    };
                    let mut done = Applied::answer::<()>(None, Ok(())).publishing(event);
                    done.erased = true;
                    applied.push(done);
                    erased += 1;
                }
                Applied::answer(Some(reply), Ok(erased))
            }
            Request::React(react, reply) => match self.reachable(&react.target).await? {
                None => Applied::answer(Some(reply), Err::<Option<Event>, _>(WriteError::Gone("message"))),
                Some(_) => {
                    let conn = &mut self.conn;
                    let target = react.target;
                    let now = writes::reaction_now(conn, target.message_id, &react.emoji, target.by).await?;
                    if now.mine == react.add {
                        Applied::answer(Some(reply), Ok(None))
                    } else if react.add && !now.used && now.kinds >= MAX_REACTION_KINDS {
                        Applied::answer(Some(reply), Err::<Option<Event>, _>(WriteError::Conflict("reactions")))
                    } else {
                        let body = writes::reaction_body(&react.emoji, react.add);
                        let (id, created_at) = writes::insert_change(
                            conn,
                            "reaction",
                            target.room_id,
                            target.by,
                            target.message_id,
                            Some(&body),
                        )
                        .await?;
                        writes::set_reaction(conn, target.message_id, &react.emoji, target.by, id, react.add).await?;
                        let reactions = writes::reactions_of(conn, target.message_id).await?;
                        let event = Event {
                            id,
                            user_id: target.by,
                            username: target.by_name,
                            created_at,
                            kind: EventKind::Reaction {
                                room_id: target.room_id,
                                room: target.room,
                                message_id: target.message_id,
                                emoji: react.emoji,
                                added: react.add,
                                reactions,
                            },
                        };
                        Applied::answer(Some(reply), Ok(Some(event.clone()))).publishing(event)
                    }
                }
            },
            Request::StartSession(user, session, reply) => {
                let outcome = writes::insert_session(conn, user, &session).await;
                Applied::answer(Some(reply), refusal_only(outcome)?)
            }
            Request::EndSession(user, token_hash, reply) => {
                let ended = writes::delete_session(conn, &token_hash).await?;
                let mut done = Applied::answer(Some(reply), Ok(ended));
                done.revoke.push((user, token_hash));
                done
            }
            Request::EndSessionById(user, id, reply) => {
                let ended = writes::delete_session_by_id(conn, user, &id).await?;
                let mut done = Applied::answer(Some(reply), Ok(ended.is_some()));
                done.revoke.extend(ended.map(|token_hash| (user, token_hash)));
                done
            }
            Request::EndOtherSessions(user, keep, reply) => {
                let ended = writes::delete_other_sessions(conn, user, &keep).await?;
                let mut done = Applied::answer(Some(reply), Ok(ended.len() as u64));
                done.revoke
                    .extend(ended.into_iter().map(|token_hash| (user, token_hash)));
                done
            }
            Request::ChangePassword(user, password_hash, keep, reply) => {
                writes::update_password(conn, user, &password_hash).await?;
                let ended = writes::delete_other_sessions(conn, user, &keep).await?;
                let mut done = Applied::answer(Some(reply), Ok(()));
                done.revoke
                    .extend(ended.into_iter().map(|token_hash| (user, token_hash)));
                done
            }
            Request::UpdateAccount(user, role, active, reply) => {
                match writes::update_account(conn, user, role, active).await {
                    Ok(ended) => {
                        let mut done = Applied::answer(Some(reply), Ok(()));
                        done.revoke
                            .extend(ended.into_iter().map(|token_hash| (user, token_hash)));
                        done.credentials_changed = true;
                        done
                    }
                    Err(refused @ WriteError::Conflict(_)) => Applied::answer(Some(reply), Err::<(), _>(refused)),
                    Err(failure) => return Err(failure),
                }
            }
            Request::Barrier(reply) => Applied::answer(Some(reply), Ok(())),
            Request::TouchSession(token_hash, address) => {
                writes::touch_session(conn, &token_hash, address.as_deref()).await?;
                Applied::answer::<()>(None, Ok(()))
            }
            Request::ExpireSessions(idle, lifetime) => {
                let deleted = writes::delete_expired_sessions(conn, idle, lifetime).await?;
                if deleted > 0 {
                    tracing::info!(deleted, "expired sessions removed");
                }
                Applied::answer::<()>(None, Ok(()))
            }
            Request::CreateRoom(room, reply) => {
                let direct_key = room.direct_key();
                let topic = room.topic.as_deref();
                match writes::insert_room(
                    conn,
                    &room.name,
                    room.kind,
                    topic,
                    direct_key.as_deref(),
                    room.created_by,
                )
                .await
                {
                    Ok(room_id) => {
                        let mut people: Vec<String> = if room.kind == RoomKind::Direct {
                            room.members.iter().map(|(_, name)| name.clone()).collect()
                        } else {
                            Vec::new()
                        };
                        people.sort_by_key(|name| name.to_lowercase());
                        people.dedup();
                        let (id, created_at) =
                            writes::insert_room_event(conn, room_id, room.created_by, topic, false, &people).await?;
                        let event = Event {
                            id,
                            user_id: room.created_by,
                            username: room.creator.clone(),
                            created_at,
                            kind: EventKind::Room {
                                room_id,
                                room: room.name.clone(),
                                kind: room.kind,
                                topic: room.topic.clone(),
                                archived: false,
                                members: people,
                            },
                        };
                        let mut done = Applied::answer(Some(reply), Ok(event.clone())).publishing(event);
                        if room.kind.members_only() {
                            let mut members = room.members;
                            members.sort_unstable_by_key(|(member, _)| *member);
                            members.dedup_by_key(|(member, _)| *member);
                            done.admit
                                .push((room_id, members.iter().map(|(member, _)| *member).collect()));
                            for (member, member_name) in members {
                                // Everyone first in reads the room from its `room` event on.
                                writes::open_access(conn, room_id, member, id).await?;
                                let (id, created_at) =
                                    writes::insert_member_event(conn, room_id, room.created_by, member, true).await?;
                                done = done.publishing(Event {
                                    id,
                                    user_id: room.created_by,
                                    username: room.creator.clone(),
                                    created_at,
                                    kind: EventKind::Member {
                                        room_id,
                                        room: room.name.clone(),
                                        member,
                                        member_name,
                                        joined: true,
                                    },
                                });
                            }
                        }
                        done
                    }
                    Err(refused @ WriteError::Conflict(_)) => Applied::answer(Some(reply), Err::<Event, _>(refused)),
                    Err(failure) => return Err(failure),
                }
            }
            Request::ChangeMember(change, reply) => {
                let room = change.room_id;
                let member = change.member;
                let is_in = writes::is_member(conn, room, member).await?;
                if !writes::is_member(conn, room, change.by).await? {
                    Applied::answer(Some(reply), Err::<Option<Event>, _>(WriteError::Gone("room")))
                } else if is_in == change.join {
                    Applied::answer(Some(reply), Ok(None))
                } else {
                    let (id, created_at) =
                        writes::insert_member_event(conn, room, change.by, member, change.join).await?;
                    if change.join {
                        writes::open_access(conn, room, member, id).await?;
                    } else {
                        writes::close_access(conn, room, member, id).await?;
                    }
                    let event = Event {
                        id,
                        user_id: change.by,
                        username: change.by_name,
                        created_at,
                        kind: EventKind::Member {
                            room_id: room,
                            room: change.room,
                            member,
                            member_name: change.member_name,
                            joined: change.join,
                        },
                    };
                    let mut done = Applied::answer(Some(reply), Ok(Some(event.clone()))).publishing(event);
                    if change.join {
                        done.admit.push((room, vec![member]));
                    } else {
                        done.dismiss.push((room, member));
                    }
                    done
                }
            }
            Request::ChangeRoom(change, reply) => {
                let room = change.room_id;
                if change.kind.members_only() && !writes::is_member(conn, room, change.by).await? {
                    Applied::answer(Some(reply), Err::<Option<Event>, _>(WriteError::Gone("room")))
                } else {
                    let (topic_now, archived_now) = writes::room_now(conn, room).await?;
                    let topic = change.topic.unwrap_or_else(|| topic_now.clone());
                    let archived = change.archived.unwrap_or(archived_now);
                    if topic == topic_now && archived == archived_now {
                        Applied::answer(Some(reply), Ok(None))
                    } else {
                        writes::update_room(conn, room, topic.as_deref(), archived).await?;
                        let (id, created_at) =
                            writes::insert_room_event(conn, room, change.by, topic.as_deref(), archived, &[]).await?;
                        let event = Event {
                            id,
                            user_id: change.by,
                            username: change.by_name,
                            created_at,
                            kind: EventKind::Room {
                                room_id: room,
                                room: change.room,
                                kind: change.kind,
                                topic,
                                archived,
                                members: Vec::new(),
                            },
                        };
                        Applied::answer(Some(reply), Ok(Some(event.clone()))).publishing(event)
                    }
                }
            }
            Request::SetStatus(change, reply) => {
                let (id, created_at) =
                    writes::insert_status(conn, change.user_id, change.status, change.chosen).await?;
                let event = Event {
                    id,
                    user_id: change.user_id,
                    username: change.username,
                    created_at,
                    kind: EventKind::Status { status: change.status },
                };
                Applied::answer(Some(reply), Ok(event.clone())).publishing(event)
            }
            Request::Read(mark, reply) => {
                // Marks of read come in runs as busy rooms bring every reader's at once: stored
                // together, like messages.
                let mut run = vec![(mark, reply)];
                while let Some(Request::Read(..)) = batch.front() {
                    if let Some(Request::Read(mark, reply)) = batch.pop_front() {
                        run.push((mark, reply));
                    }
                }
                let marks: Vec<&ReadMark> = run.iter().map(|(mark, _)| mark).collect();
                let moved = writes::move_read_cursors(conn, &marks).await?;
                for ((mark, reply), moved) in run.into_iter().zip(moved) {
                    applied.push(match moved {
                        Err(refused) => Applied::answer(Some(reply), Err::<Option<Event>, _>(refused)),
                        Ok(None) => Applied::answer(Some(reply), Ok(None)),
                        Ok(Some((id, created_at))) => {
                            let event = Event {
                                id,
                                user_id: mark.user_id,
                                username: mark.username,
                                created_at,
                                kind: EventKind::Read {
                                    room_id: mark.room_id,
                                    room: mark.room,
                                    up_to: mark.up_to,
                                },
                            };
                            Applied::answer(Some(reply), Ok(Some(event.clone()))).publishing(event)
                        }
                    });
                }
                return Ok(());
            }
            Request::SetNotify(user, room, level, reply) => {
                writes::set_notify(conn, user, room, level).await?;
                Applied::answer(Some(reply), Ok(()))
            }
            Request::Join(join, reply) => {
                // The name can be refused after an invite's use is taken: both or neither.
                writes::exec(conn, "SAVEPOINT joining").await?;
                let outcome = writes::join(conn, &join).await;
                let end = match outcome {
                    Ok(Joined::Made { .. }) => "RELEASE joining",
                    _ => "ROLLBACK TO joining; RELEASE joining",
                };
                writes::exec(conn, end).await?;
                Applied::answer(Some(reply), refusal_only(outcome)?)
            }
            Request::CreateInvite(invite, reply) => {
                let outcome = writes::insert_invite(conn, &invite).await;
                Applied::answer(Some(reply), refusal_only(outcome)?)
            }
            Request::RevokeInvite(code, reply) => {
                let revoked = writes::revoke_invite(conn, &code).await?;
                Applied::answer(Some(reply), Ok(revoked))
            }
        };
        applied.push(done);
        Ok(())
    }

    /// The current text of the message a change names, if it is still there and its room can
    /// still be read by whoever changes it.
    async fn reachable(&mut self, target: &Target) -> Result<Option<String>, WriteError> {
        let conn = &mut self.conn;
        if target.members_only && !writes::is_member(conn, target.room_id, target.by).await? {
            return Ok(None);
        }
        Ok(writes::live_message(conn, target.message_id, target.room_id)
            .await?
            .map(|(_, content)| content))
    }

    async fn rollback(&mut self) {
        // Fails harmlessly when SQLite already rolled back.
        let _ = writes::exec(&mut self.conn, "ROLLBACK").await;
    }
}

/// Most different emoji one message takes.
const MAX_REACTION_KINDS: i64 = 50;

/// A request's own refusal is its answer; any other failure spoils the batch.
fn refusal_only<T>(outcome: Result<T, WriteError>) -> Result<Result<T, WriteError>, WriteError> {
    match outcome {
        Err(WriteError::Conflict(what)) => Ok(Err(WriteError::Conflict(what))),
        Err(failure) => Err(failure),
        ok => Ok(ok),
    }
}
