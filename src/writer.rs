//! The one writer. Every change to the database goes through this task, which
//!
//! 1. takes whatever requests are waiting (group commit: one fsync pays for all of them),
//! 2. applies each so that a refused request is undone alone (a single statement by SQLite
//!    itself, a sign-up of several inside a `SAVEPOINT`) and the rest of the batch goes on;
//!    messages in a row share one `INSERT`, in which a repeated `client_id` is skipped, not
//!    refused,
//! 3. commits, and only then
//! 4. publishes each new event to the hub, in id order, and answers each request.
//!
//! So a client is answered only once its event is durable, what a subscriber sees live is
//! already durable, and live order equals id order. Presence (who is online) lives here too:
//! the writer is already the one place where status changes are ordered.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use sqlx::sqlite::SqliteConnection;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::hub::{Frame, Hub};
use crate::metrics::Metrics;
use crate::model::{ClientId, Event, EventId, EventKind, RoomId, Status, UserId};
use crate::store::Room;

/// Most requests in one transaction. More waiting than this simply makes the next batch.
const MAX_BATCH: usize = 1024;
/// Requests that may wait for the writer before senders wait too.
const QUEUE_DEPTH: usize = 16 * 1024;

/// Why a write did not happen.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    /// A unique name (user, room) is taken.
    #[error("already exists")]
    Conflict,
    /// A `client_id` already names a different message of the same user.
    #[error("this client_id was already used for a different message")]
    ClientIdReused,
    /// The database refused the batch (disk full, I/O error, locked file).
    #[error("{0}")]
    Database(String),
    /// The writer has stopped: the server is shutting down.
    #[error("the server is shutting down")]
    Stopped,
}

impl WriteError {
    /// A request refused by the data (a unique name taken, a reused `client_id`): its statement
    /// changed nothing and the transaction around it is intact.
    fn is_refusal(&self) -> bool {
        matches!(self, Self::Conflict | Self::ClientIdReused)
    }
}

impl From<sqlx::Error> for WriteError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::Database(db) if db.is_unique_violation() => Self::Conflict,
            _ => Self::Database(error.to_string()),
        }
    }
}

/// A change to make, as the request handlers ask for it.
#[derive(Debug)]
pub enum Command {
    /// A new user and their first session, together or not at all.
    CreateAccount {
        username: String,
        password_hash: String,
        token_hash: Vec<u8>,
    },
    CreateSession {
        user_id: UserId,
        token_hash: Vec<u8>,
    },
    DeleteSession {
        token_hash: Vec<u8>,
    },
    /// Records that a session was used, which pushes back its expiry.
    TouchSession {
        token_hash: Vec<u8>,
    },
    /// Removes sessions unused for longer than `idle`.
    DeleteExpiredSessions {
        idle: Duration,
    },
    CreateRoom {
        name: String,
        created_by: UserId,
    },
    PostMessage(Post),
    SetStatus {
        user_id: UserId,
        username: String,
        status: Status,
    },
}

/// A message to store.
#[derive(Debug)]
pub struct Post {
    pub room_id: RoomId,
    pub room: String,
    pub user_id: UserId,
    pub username: String,
    pub content: String,
    /// The client's id for the message: posting it again finds the first one.
    pub client_id: Option<ClientId>,
}

impl Post {
    fn client_id(&self) -> Option<&str> {
        self.client_id.as_ref().map(ClientId::as_str)
    }

    fn event(&self, id: EventId, created_at: String) -> Event {
        Event {
            id,
            username: self.username.clone(),
            created_at,
            kind: EventKind::Message {
                room_id: self.room_id,
                room: self.room.clone(),
                content: self.content.clone(),
            },
        }
    }
}

impl Command {
    /// Whether the command writes with a single statement, which SQLite applies whole or not at
    /// all without a savepoint.
    fn is_one_statement(&self) -> bool {
        !matches!(self, Self::CreateAccount { .. })
    }

    fn as_post(&self) -> Option<&Post> {
        match self {
            Self::PostMessage(post) => Some(post),
            _ => None,
        }
    }
}

/// What a command did, once committed.
#[derive(Debug)]
pub enum Outcome {
    User(UserId),
    Room(Room),
    Event(Event),
    /// A message sent again with the same `client_id`: the one stored the first time. It is
    /// not published again.
    Existing(Event),
    Done,
}

type Reply = oneshot::Sender<Result<Outcome, WriteError>>;

struct Job {
    command: Command,
    /// `None` for the writer's own writes (presence).
    reply: Option<Reply>,
}

/// What the event streams tell presence.
#[derive(Debug)]
enum Note {
    Opened { user_id: UserId, username: String },
    Closed { user_id: UserId },
    GraceOver { user_id: UserId, epoch: u64 },
}

/// The handle request handlers write through. Cloning copies two channel senders.
#[derive(Clone)]
pub struct Writer {
    requests: mpsc::Sender<(Command, Reply)>,
    notes: mpsc::UnboundedSender<Note>,
}

impl Writer {
    /// Queues `command` and waits until it is committed (and its event published).
    pub async fn submit(&self, command: Command) -> Result<Outcome, WriteError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send((command, reply))
            .await
            .map_err(|_| WriteError::Stopped)?;
        answer.await.map_err(|_| WriteError::Stopped)?
    }

    /// Stores a new event and returns it as committed.
    pub async fn submit_event(&self, command: Command) -> Result<Event, WriteError> {
        match self.submit(command).await? {
            Outcome::Event(event) => Ok(event),
            other => Err(WriteError::Database(format!("unexpected outcome {other:?}"))),
        }
    }

    /// Queues `command` without waiting for it, for writes nobody waits on (a session's last
    /// use). Dropped when the queue is full: the next request will try again.
    pub fn submit_detached(&self, command: Command) {
        let (reply, _) = oneshot::channel();
        let _ = self.requests.try_send((command, reply));
    }

    /// Counts an open event stream of `user_id` until the returned guard is dropped.
    pub fn stream_opened(&self, user_id: UserId, username: String) -> PresenceGuard {
        let _ = self.notes.send(Note::Opened { user_id, username });
        PresenceGuard {
            user_id,
            notes: self.notes.clone(),
        }
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

/// Starts the writer on `conn`. It runs until `stop` is cancelled, then finishes what is
/// queued and returns. `statuses` are the users' last stored statuses, for presence.
pub fn spawn(
    conn: SqliteConnection,
    hub: Hub,
    metrics: Arc<Metrics>,
    statuses: Vec<(UserId, String, Status)>,
    grace: Duration,
    stop: CancellationToken,
) -> (Writer, JoinHandle<()>) {
    let (requests, requests_rx) = mpsc::channel(QUEUE_DEPTH);
    let (notes, notes_rx) = mpsc::unbounded_channel();
    let mut task = Task {
        conn,
        hub,
        metrics,
        requests: requests_rx,
        notes: notes_rx,
        presence: Presence::new(grace, notes.clone()),
        pending: Vec::new(),
    };
    for (user_id, username, status) in statuses {
        task.presence.restore(user_id, username, status);
    }
    let handle = tokio::spawn(task.run(stop));
    (Writer { requests, notes }, handle)
}

struct Task {
    conn: SqliteConnection,
    hub: Hub,
    metrics: Arc<Metrics>,
    requests: mpsc::Receiver<(Command, Reply)>,
    notes: mpsc::UnboundedReceiver<Note>,
    presence: Presence,
    pending: Vec<Job>,
}

impl Task {
    async fn run(mut self, stop: CancellationToken) {
        loop {
            let stopping = tokio::select! {
                biased;
                request = self.requests.recv() => match request {
                    Some((command, reply)) => { self.accept(command, Some(reply)); false }
                    None => true,
                },
                Some(note) = self.notes.recv() => { self.note(note); false }
                () = stop.cancelled() => true,
            };
            self.gather();
            while !self.pending.is_empty() {
                let batch: Vec<Job> = {
                    let take = self.pending.len().min(MAX_BATCH);
                    self.pending.drain(..take).collect()
                };
                self.commit(batch).await;
                self.gather();
            }
            if stopping {
                break;
            }
        }
        tracing::info!("writer stopped");
    }

    /// Moves everything already waiting into `pending`, without waiting.
    fn gather(&mut self) {
        while let Ok(note) = self.notes.try_recv() {
            self.note(note);
        }
        while self.pending.len() < MAX_BATCH {
            match self.requests.try_recv() {
                Ok((command, reply)) => self.accept(command, Some(reply)),
                Err(_) => break,
            }
        }
    }

    fn accept(&mut self, command: Command, reply: Option<Reply>) {
        if let Command::SetStatus {
            user_id,
            ref username,
            status,
        } = command
        {
            self.presence.chosen(user_id, username, status);
        }
        self.pending.push(Job { command, reply });
    }

    fn note(&mut self, note: Note) {
        // At shutdown every stream closes; that says nothing about the users.
        if self.hub.shutdown_token().is_cancelled() {
            return;
        }
        if let Some((user_id, username, status)) = self.presence.note(note) {
            self.pending.push(Job {
                command: Command::SetStatus {
                    user_id,
                    username,
                    status,
                },
                reply: None,
            });
        }
    }

    /// One transaction for the whole batch; then publish and answer, in order.
    async fn commit(&mut self, batch: Vec<Job>) {
        self.metrics.write_batch_size.observe(batch.len() as f64);
        match self.apply_batch(&batch).await {
            Ok(outcomes) => {
                for (job, outcome) in batch.into_iter().zip(outcomes) {
                    if let (Command::DeleteSession { token_hash }, Ok(_)) = (&job.command, &outcome) {
                        self.hub.end_session(token_hash);
                    }
                    if let Ok(Outcome::Event(event)) = &outcome {
                        self.metrics.events_written.inc();
                        match Frame::encode(event) {
                            Ok(frame) => self.hub.publish(Arc::new(frame)),
                            // Stored but not renderable live: streams still replay it.
                            Err(error) => {
                                tracing::error!(%error, id = event.id, "cannot encode event")
                            }
                        }
                    }
                    if let Some(reply) = job.reply {
                        let _ = reply.send(outcome);
                    }
                }
            }
            Err(error) => {
                tracing::error!(%error, requests = batch.len(), "batch not committed");
                for job in batch {
                    if let Some(reply) = job.reply {
                        let _ = reply.send(Err(error.clone()));
                    }
                }
            }
        }
    }

    /// Runs the batch in one transaction. The outer `Err` means nothing was committed.
    async fn apply_batch(&mut self, batch: &[Job]) -> Result<Vec<Result<Outcome, WriteError>>, WriteError> {
        exec(&mut self.conn, "BEGIN IMMEDIATE").await?;
        let outcomes = match self.apply_jobs(batch).await {
            Ok(outcomes) => outcomes,
            Err(error) => {
                self.rollback().await;
                return Err(error);
            }
        };
        if let Err(error) = exec(&mut self.conn, "COMMIT").await {
            self.rollback().await;
            return Err(error);
        }
        Ok(outcomes)
    }

    /// Applies each job inside the batch's transaction and returns its outcome. The `Err` is a
    /// failure that may have spoilt the transaction (an I/O error, a full disk): nothing of the
    /// batch may then be reported done.
    async fn apply_jobs(&mut self, batch: &[Job]) -> Result<Vec<Result<Outcome, WriteError>>, WriteError> {
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut rest = batch;
        while let Some(job) = rest.first() {
            // Messages in a row, the bulk of any busy batch, are stored together: each
            // statement is a round trip to SQLite's thread, and that trip costs more than
            // storing a message.
            let posts: Vec<&Post> = rest.iter().map_while(|job| job.command.as_post()).collect();
            if posts.len() > 1 {
                outcomes.extend(post_messages(&mut self.conn, &posts).await?);
                rest = &rest[posts.len()..];
                continue;
            }
            let outcome = if job.command.is_one_statement() {
                // A failing statement is undone by SQLite on its own; the batch goes on.
                apply(&mut self.conn, &job.command).await
            } else {
                self.apply_in_savepoint(&job.command).await
            };
            match outcome {
                // A refusal that changed nothing (a taken name, a reused client_id).
                Err(error) if !error.is_refusal() => return Err(error),
                outcome => outcomes.push(outcome),
            }
            rest = &rest[1..];
        }
        Ok(outcomes)
    }

    /// A command of several statements: all of them or none.
    async fn apply_in_savepoint(&mut self, command: &Command) -> Result<Outcome, WriteError> {
        exec(&mut self.conn, "SAVEPOINT job").await?;
        let outcome = apply(&mut self.conn, command).await;
        let end = if outcome.is_ok() {
            "RELEASE job"
        } else {
            "ROLLBACK TO job; RELEASE job"
        };
        // If SQLite rolled the whole transaction back, the savepoint is gone and this fails.
        match exec(&mut self.conn, end).await {
            Ok(()) => outcome,
            Err(error) => Err(match outcome {
                Err(failure) if !failure.is_refusal() => failure,
                _ => error,
            }),
        }
    }

    async fn rollback(&mut self) {
        // Fails harmlessly when SQLite already rolled back.
        let _ = exec(&mut self.conn, "ROLLBACK").await;
    }
}

async fn exec(conn: &mut SqliteConnection, sql: &'static str) -> Result<(), WriteError> {
    sqlx::raw_sql(sql)
        .execute(conn)
        .await
        .map(drop)
        .map_err(WriteError::from)
}

async fn apply(conn: &mut SqliteConnection, command: &Command) -> Result<Outcome, WriteError> {
    match command {
        Command::CreateAccount {
            username,
            password_hash,
            token_hash,
        } => {
            let user_id: UserId =
                sqlx::query_scalar("INSERT INTO users (username, password_hash) VALUES (?, ?) RETURNING id")
                    .bind(username)
                    .bind(password_hash)
                    .fetch_one(&mut *conn)
                    .await?;
            insert_session(conn, user_id, token_hash).await?;
            Ok(Outcome::User(user_id))
        }
        Command::CreateSession { user_id, token_hash } => {
            insert_session(conn, *user_id, token_hash).await?;
            Ok(Outcome::Done)
        }
        Command::DeleteSession { token_hash } => {
            sqlx::query("DELETE FROM sessions WHERE token_hash = ?")
                .bind(token_hash)
                .execute(conn)
                .await?;
            Ok(Outcome::Done)
        }
        Command::TouchSession { token_hash } => {
            sqlx::query(
                "UPDATE sessions SET last_seen_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE token_hash = ?",
            )
            .bind(token_hash)
            .execute(conn)
            .await?;
            Ok(Outcome::Done)
        }
        Command::DeleteExpiredSessions { idle } => {
            let deleted =
                sqlx::query("DELETE FROM sessions WHERE last_seen_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?)")
                    .bind(format!("-{} seconds", idle.as_secs()))
                    .execute(conn)
                    .await?
                    .rows_affected();
            if deleted > 0 {
                tracing::info!(deleted, "expired sessions removed");
            }
            Ok(Outcome::Done)
        }
        Command::CreateRoom { name, created_by } => {
            let room: Room =
                sqlx::query_as("INSERT INTO rooms (name, created_by) VALUES (?, ?) RETURNING id, name, created_at")
                    .bind(name)
                    .bind(created_by)
                    .fetch_one(conn)
                    .await?;
            Ok(Outcome::Room(room))
        }
        Command::PostMessage(post) => {
            let mut outcomes = post_messages(conn, &[post]).await?;
            outcomes
                .pop()
                .unwrap_or_else(|| Err(WriteError::Database("a message was left without an outcome".into())))
        }
        Command::SetStatus {
            user_id,
            username,
            status,
        } => {
            let (id, created_at) = sqlx::query_as(
                "INSERT INTO events (kind, user_id, body) VALUES ('status', ?, ?) RETURNING id, created_at",
            )
            .bind(user_id)
            .bind(status.as_str())
            .fetch_one(conn)
            .await?;
            Ok(Outcome::Event(Event {
                id,
                username: username.clone(),
                created_at,
                kind: EventKind::Status { status: *status },
            }))
        }
    }
}

/// Most messages one `INSERT` stores.
const MAX_POSTS_PER_INSERT: usize = 256;

/// `INSERT`s of 1, 2, 4 … `MAX_POSTS_PER_INSERT` messages: any number of messages is stored
/// with a few of these, and each stays prepared on the connection.
static INSERT_POSTS: LazyLock<Vec<String>> = LazyLock::new(|| {
    (0..=MAX_POSTS_PER_INSERT.ilog2())
        .map(|power| {
            let rows = vec!["('message', ?, ?, ?, ?)"; 1 << power].join(", ");
            format!(
                "INSERT INTO events (kind, room_id, user_id, body, client_id) VALUES {rows} \
                 ON CONFLICT (user_id, client_id) WHERE client_id IS NOT NULL DO NOTHING \
                 RETURNING id, created_at, user_id, client_id"
            )
        })
        .collect()
});

/// Stores `posts` in order, with as few statements as their count allows, and returns each
/// one's outcome. A message whose `client_id` its user has already sent is not stored again:
/// its outcome is the stored message, or `ClientIdReused` if that one says something else.
async fn post_messages(
    conn: &mut SqliteConnection,
    posts: &[&Post],
) -> Result<Vec<Result<Outcome, WriteError>>, WriteError> {
    let mut outcomes = Vec::with_capacity(posts.len());
    let mut rest = posts;
    while !rest.is_empty() {
        let power = rest.len().min(MAX_POSTS_PER_INSERT).ilog2();
        let (chunk, after) = rest.split_at(1 << power);
        let mut insert =
            sqlx::query_as::<_, (EventId, String, UserId, Option<String>)>(INSERT_POSTS[power as usize].as_str());
        for post in chunk {
            insert = insert
                .bind(post.room_id)
                .bind(post.user_id)
                .bind(&post.content)
                .bind(post.client_id());
        }
        let mut stored = insert.fetch_all(&mut *conn).await?;
        // SQLite inserts the rows in the order given, so ids follow it; `RETURNING` does not
        // promise that order, so it is restored from the ids. The rows skipped as sent before
        // leave gaps, found by their (user, client_id): a skipped pair cannot be stored by a
        // later row of the same statement, which would be skipped too.
        stored.sort_unstable_by_key(|(id, ..)| *id);
        let mut stored = stored.into_iter().peekable();
        for post in chunk {
            let outcome = match stored.next_if(|(_, _, user_id, client_id)| {
                *user_id == post.user_id && client_id.as_deref() == post.client_id()
            }) {
                Some((id, created_at, ..)) => Ok(Outcome::Event(post.event(id, created_at))),
                None => sent_before(conn, post).await?,
            };
            outcomes.push(outcome);
        }
        if stored.next().is_some() {
            return Err(WriteError::Database(
                "stored messages do not match the ones posted".into(),
            ));
        }
        rest = after;
    }
    Ok(outcomes)
}

/// The message `post`'s user stored earlier with its `client_id`, if it is the same message.
async fn sent_before(conn: &mut SqliteConnection, post: &Post) -> Result<Result<Outcome, WriteError>, WriteError> {
    let (id, created_at, room_id, content): (EventId, String, Option<RoomId>, String) =
        sqlx::query_as("SELECT id, created_at, room_id, body FROM events WHERE user_id = ? AND client_id = ?")
            .bind(post.user_id)
            .bind(post.client_id())
            .fetch_one(conn)
            .await?;
    if room_id != Some(post.room_id) || content != post.content {
        return Ok(Err(WriteError::ClientIdReused));
    }
    Ok(Ok(Outcome::Existing(post.event(id, created_at))))
}

async fn insert_session(conn: &mut SqliteConnection, user_id: UserId, token_hash: &[u8]) -> Result<(), WriteError> {
    sqlx::query("INSERT INTO sessions (token_hash, user_id) VALUES (?, ?)")
        .bind(token_hash)
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Who is online. A user is online while they have an open event stream; the first stream
/// stores `online` (or `away`, if that is what they chose), and `offline` is stored only when
/// the last stream has been closed for the grace period, so a reconnect stores nothing.
struct Presence {
    users: HashMap<UserId, Member>,
    grace: Duration,
    notes: mpsc::UnboundedSender<Note>,
}

struct Member {
    username: String,
    streams: u32,
    /// The status last stored (or about to be).
    status: Status,
    /// They set `away` themselves: coming back keeps them away.
    chose_away: bool,
    /// Bumped whenever a pending grace period must no longer count.
    epoch: u64,
}

impl Presence {
    fn new(grace: Duration, notes: mpsc::UnboundedSender<Note>) -> Self {
        Self {
            users: HashMap::new(),
            grace,
            notes,
        }
    }

    /// After a restart nobody has a stream yet: anyone not offline gets a grace period to
    /// reconnect before they are stored offline.
    fn restore(&mut self, user_id: UserId, username: String, status: Status) {
        self.users.insert(
            user_id,
            Member {
                username,
                streams: 0,
                status,
                chose_away: status == Status::Away,
                epoch: 0,
            },
        );
        if status != Status::Offline {
            self.start_grace(user_id, 0);
        }
    }

    /// The user set their status themselves.
    fn chosen(&mut self, user_id: UserId, username: &str, status: Status) {
        let member = self.member(user_id, username);
        member.status = status;
        member.chose_away = status == Status::Away;
        if member.streams == 0 && status != Status::Offline {
            member.epoch += 1;
            let epoch = member.epoch;
            self.start_grace(user_id, epoch);
        }
    }

    /// Returns the status change to store, if the note calls for one.
    fn note(&mut self, note: Note) -> Option<(UserId, String, Status)> {
        match note {
            Note::Opened { user_id, username } => {
                let member = self.member(user_id, &username);
                member.streams += 1;
                member.epoch += 1;
                if member.streams == 1 && member.status == Status::Offline {
                    member.status = if member.chose_away {
                        Status::Away
                    } else {
                        Status::Online
                    };
                    return Some((user_id, member.username.clone(), member.status));
                }
                None
            }
            Note::Closed { user_id } => {
                let member = self.users.get_mut(&user_id)?;
                member.streams = member.streams.saturating_sub(1);
                if member.streams == 0 {
                    member.epoch += 1;
                    let epoch = member.epoch;
                    self.start_grace(user_id, epoch);
                }
                None
            }
            Note::GraceOver { user_id, epoch } => {
                let member = self.users.get_mut(&user_id)?;
                if member.streams == 0 && member.epoch == epoch && member.status != Status::Offline {
                    member.status = Status::Offline;
                    return Some((user_id, member.username.clone(), Status::Offline));
                }
                None
            }
        }
    }

    fn member(&mut self, user_id: UserId, username: &str) -> &mut Member {
        self.users.entry(user_id).or_insert_with(|| Member {
            username: username.to_owned(),
            streams: 0,
            status: Status::Offline,
            chose_away: false,
            epoch: 0,
        })
    }

    fn start_grace(&self, user_id: UserId, epoch: u64) {
        let notes = self.notes.clone();
        let grace = self.grace;
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            let _ = notes.send(Note::GraceOver { user_id, epoch });
        });
    }
}
