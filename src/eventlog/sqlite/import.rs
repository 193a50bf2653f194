//! `chat-server import`: an export's rooms and messages written into a database with no
//! history yet, through the tables and the kinds of event the writer uses, so that the result
//! serves, replays and searches as if the server had written it.
//!
//! An export holds each message in its current state, not its history. A message becomes its
//! `message` event with its own id, author, time and current text, indexed for search as the
//! writer indexes a post; its mentions are recorded on it. What the export says changed it
//! later becomes events after all of them (the ids between messages belong to the events the
//! export leaves out): an `edit` with its current text at its `edited_at`, a `reaction` for
//! each of its reactions, in the order it lists them (so they group as before), and the
//! `member` event of each first member of a private or direct room. A reply to a message the
//! export leaves out (deleted, or before `--after`) answers a deleted message: a `message` row
//! with no text, as the writer leaves a deleted one.
//!
//! Accounts the database does not know are made without a password (`NO_PASSWORD`): nobody
//! signs in as one until an operator gives it a password (`chat-server admin reset-password`).
//! Nothing imported is unread to them.

use std::collections::HashMap;

use sqlx::sqlite::SqliteConnection;

use super::writes;
use crate::domain::{EventId, NO_PASSWORD, Reactions, RoomId, RoomKind, UserId};
use crate::eventlog::WriteError;

/// A room as an export describes it (`wire::render::RoomLine`).
#[derive(Debug, Clone)]
pub struct ImportRoom {
    /// Its first `room` event.
    pub id: EventId,
    pub name: String,
    pub kind: RoomKind,
    pub topic: Option<String>,
    pub archived: bool,
    /// Who reads it, if only members do.
    pub members: Vec<String>,
    /// Who made it.
    pub by: String,
    pub created_at: String,
}

/// A message in its current state, as an export holds it (`GET /api/messages/{id}`'s shape).
#[derive(Debug, Clone)]
pub struct ImportMessage {
    pub id: EventId,
    pub room: String,
    pub username: String,
    pub content: String,
    pub created_at: String,
    pub edited_at: Option<String>,
    pub reply_to: Option<EventId>,
    pub mentions: Vec<String>,
    pub mentions_room: bool,
    pub reactions: Vec<Reactions>,
}

/// One line of an export.
#[derive(Debug, Clone)]
pub enum ImportLine {
    Room(ImportRoom),
    Message(ImportMessage),
}

/// Why an import stopped.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The export or the database does not allow it; said to the operator as it is.
    #[error("{0}")]
    Refused(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database: {0}")]
    Write(#[from] WriteError),
}

fn refused(why: impl Into<String>) -> ImportError {
    ImportError::Refused(why.into())
}

/// What an import did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Imported {
    pub messages: u64,
    pub rooms_made: u64,
    pub accounts_made: u64,
}

/// An import under way: what it has made so far, and the names it has looked up.
pub struct Importer {
    /// Account ids by lowercase name (names are unique without regard to case).
    users: HashMap<String, UserId>,
    rooms: HashMap<String, (RoomId, RoomKind)>,
    /// The newest message so far: messages come oldest first.
    last: EventId,
    done: Imported,
}

impl Importer {
    /// Checks that the database has no history (a new one, or one with accounts only) and
    /// makes the table the later events wait in (a temporary one, so a failed import leaves
    /// nothing of it behind).
    pub async fn start(conn: &mut SqliteConnection) -> Result<Self, ImportError> {
        let (messages, events): (bool, i64) = sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM events WHERE kind = 'message'), \
                    coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)",
        )
        .fetch_one(&mut *conn)
        .await?;
        if messages {
            return Err(refused("it already holds messages: import into a new database"));
        }
        if events > 0 {
            return Err(refused(format!(
                "it already has a history ({events} events), whose ids the export's may take: \
                 import into a new database"
            )));
        }
        sqlx::raw_sql(
            "DROP TABLE IF EXISTS temp.import_later; \
             CREATE TEMP TABLE import_later (\
                 seq        INTEGER PRIMARY KEY, \
                 kind       TEXT    NOT NULL, \
                 room_id    INTEGER NOT NULL, \
                 user_id    INTEGER NOT NULL, \
                 subject_id INTEGER, \
                 message_id INTEGER, \
                 body       TEXT, \
                 created_at TEXT    NOT NULL)",
        )
        .execute(&mut *conn)
        .await?;
        Ok(Self {
            users: HashMap::new(),
            rooms: HashMap::new(),
            last: EventId::ZERO,
            done: Imported::default(),
        })
    }

    /// Writes `lines` in one transaction. On an error, nothing of `lines` is written; the
    /// index of the line at fault comes with it, unless the database failed the whole batch.
    pub async fn apply(
        &mut self,
        conn: &mut SqliteConnection,
        lines: &[ImportLine],
    ) -> Result<(), (Option<usize>, ImportError)> {
        let before = self.done;
        let outcome = self.apply_all(conn, lines).await;
        if outcome.is_err() {
            let _ = writes::exec(conn, "ROLLBACK").await;
            // The names looked up in the transaction may name rows it did not keep.
            self.users.clear();
            self.rooms.clear();
            self.done = before;
        }
        outcome
    }

    async fn apply_all(
        &mut self,
        conn: &mut SqliteConnection,
        lines: &[ImportLine],
    ) -> Result<(), (Option<usize>, ImportError)> {
        let whole = |error: sqlx::Error| (None, ImportError::Database(error));
        sqlx::raw_sql("BEGIN IMMEDIATE")
            .execute(&mut *conn)
            .await
            .map_err(whole)?;
        let mut posted = Vec::with_capacity(lines.len());
        for (at, line) in lines.iter().enumerate() {
            let outcome = match line {
                ImportLine::Room(room) => self.room(conn, room).await,
                ImportLine::Message(message) => self.message(conn, message).await.map(|()| posted.push(message.id)),
            };
            outcome.map_err(|error| (Some(at), error))?;
        }
        // As the writer indexes a batch of posts: their text read from their rows.
        writes::index_messages(conn, &posted)
            .await
            .map_err(|error| (None, ImportError::from(error)))?;
        sqlx::raw_sql("COMMIT").execute(&mut *conn).await.map_err(whole)?;
        self.done.messages += posted.len() as u64;
        Ok(())
    }

    /// The id of the account `name`, made without a password if there is none.
    async fn user(&mut self, conn: &mut SqliteConnection, name: &str) -> Result<UserId, ImportError> {
        let key = name.to_lowercase();
        if let Some(&id) = self.users.get(&key) {
            return Ok(id);
        }
        let id = match writes::find_user(conn, name).await? {
            Some(id) => id,
            None => {
                // Names taken before the look-alike rule may share a skeleton: the export's
                // accounts are made as they were, without that check.
                let id = sqlx::query_scalar(
                    "INSERT INTO users (username, password_hash, role, read_from) VALUES (?, ?, 'member', 0) \
                     RETURNING id",
                )
                .bind(name)
                .bind(NO_PASSWORD)
                .fetch_one(&mut *conn)
                .await?;
                self.done.accounts_made += 1;
                id
            }
        };
        self.users.insert(key, id);
        Ok(id)
    }

    /// The room `name` as it is known so far (an announced room, or one the database had).
    async fn known_room(
        &mut self,
        conn: &mut SqliteConnection,
        name: &str,
    ) -> Result<Option<(RoomId, RoomKind)>, ImportError> {
        if let Some(&known) = self.rooms.get(name) {
            return Ok(Some(known));
        }
        let row: Option<(RoomId, String)> = sqlx::query_as("SELECT id, kind FROM rooms WHERE name = ?")
            .bind(name)
            .fetch_optional(&mut *conn)
            .await?;
        let known = row.map(|(id, kind)| (id, RoomKind::from_stored(&kind)));
        if let Some(known) = known {
            self.rooms.insert(name.to_owned(), known);
        }
        Ok(known)
    }

    /// Makes the room as the export describes it (or brings the database's room of that name
    /// to that state), with its first `room` event, and lets its members read it from there.
    async fn room(&mut self, conn: &mut SqliteConnection, room: &ImportRoom) -> Result<(), ImportError> {
        let by = self.user(conn, &room.by).await?;
        let mut members = Vec::with_capacity(room.members.len());
        for name in &room.members {
            members.push(self.user(conn, name).await?);
        }
        let room_id = match self.known_room(conn, &room.name).await? {
            Some((id, kind)) if kind == room.kind => {
                writes::update_room(conn, id, room.topic.as_deref(), room.archived).await?;
                id
            }
            Some((_, kind)) => {
                return Err(refused(format!(
                    "the room `{}` is {} in the database, {} in the export",
                    room.name,
                    kind.as_str(),
                    room.kind.as_str()
                )));
            }
            None => {
                // A direct room is found by its people's ids, ascending, as the writer keys it.
                let direct_key = (room.kind == RoomKind::Direct).then(|| {
                    let mut ids: Vec<i64> = members.iter().map(|id| id.get()).collect();
                    ids.sort_unstable();
                    ids.dedup();
                    ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
                });
                let id: RoomId = sqlx::query_scalar(
                    "INSERT INTO rooms (name, kind, topic, archived, direct_key, created_by, created_at) \
                     VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                )
                .bind(&room.name)
                .bind(room.kind.as_str())
                .bind(&room.topic)
                .bind(room.archived)
                .bind(direct_key)
                .bind(by)
                .bind(&room.created_at)
                .fetch_one(&mut *conn)
                .await
                .map_err(|error| match &error {
                    sqlx::Error::Database(db) if db.is_unique_violation() => refused(format!(
                        "the direct room `{}` has the same people as another one",
                        room.name
                    )),
                    _ => ImportError::Database(error),
                })?;
                self.rooms.insert(room.name.clone(), (id, room.kind));
                self.done.rooms_made += 1;
                id
            }
        };
        // A direct room's event lists its people, as the writer's does.
        let people: &[String] = if room.kind == RoomKind::Direct {
            &room.members
        } else {
            &[]
        };
        let state = writes::room_state(room.topic.as_deref(), room.archived, people);
        insert_with_id(
            conn,
            sqlx::query(
                "INSERT INTO events (id, kind, scope, room_id, user_id, body, created_at) \
                 VALUES (?, 'room', 'room', ?, ?, ?, ?)",
            )
            .bind(room.id)
            .bind(room_id)
            .bind(by)
            .bind(state)
            .bind(&room.created_at),
            room.id,
        )
        .await?;
        if room.kind.members_only() {
            for member in members {
                if writes::is_member(conn, room_id, member).await? {
                    continue;
                }
                // Everyone first in reads the room from its `room` event on.
                sqlx::query("INSERT INTO room_access (room_id, user_id, from_id) VALUES (?, ?, ?)")
                    .bind(room_id)
                    .bind(member)
                    .bind(room.id)
                    .execute(&mut *conn)
                    .await?;
                later(
                    conn,
                    "member",
                    room_id,
                    by,
                    Some(member),
                    None,
                    Some("joined"),
                    &room.created_at,
                )
                .await?;
            }
        }
        Ok(())
    }

    /// Writes one message as it is now.
    async fn message(&mut self, conn: &mut SqliteConnection, message: &ImportMessage) -> Result<(), ImportError> {
        if message.id <= self.last {
            return Err(refused(format!(
                "message {} comes after message {}: an export lists messages oldest first",
                message.id, self.last
            )));
        }
        self.last = message.id;
        let room = match self.known_room(conn, &message.room).await? {
            Some((id, _)) => id,
            None => {
                if message.room.starts_with(crate::domain::DIRECT_PREFIX) {
                    return Err(refused(format!(
                        "`{}` is a direct room's name, and no `room` line before its first message says \
                         whose it is",
                        message.room
                    )));
                }
                // Public, as the rooms the server makes itself are: no event makes them.
                let id: RoomId = sqlx::query_scalar("INSERT INTO rooms (name, created_at) VALUES (?, ?) RETURNING id")
                    .bind(&message.room)
                    .bind(&message.created_at)
                    .fetch_one(&mut *conn)
                    .await?;
                self.rooms.insert(message.room.clone(), (id, RoomKind::Public));
                self.done.rooms_made += 1;
                id
            }
        };
        let author = self.user(conn, &message.username).await?;
        if let Some(quoted) = message.reply_to {
            let found: Option<(String, Option<RoomId>)> =
                sqlx::query_as("SELECT kind, room_id FROM events WHERE id = ?")
                    .bind(quoted)
                    .fetch_optional(&mut *conn)
                    .await?;
            match found {
                Some((kind, Some(in_room))) if kind == "message" && in_room == room => {}
                Some(_) => {
                    return Err(refused(format!(
                        "message {} answers {quoted}, which is not a message of `{}`",
                        message.id, message.room
                    )));
                }
                // Not exported, so deleted (or before the export began): a deleted message,
                // as the writer leaves one, for the reply to answer.
                None => {
                    sqlx::query(
                        "INSERT INTO events (id, kind, scope, room_id, user_id, body, created_at) \
                         VALUES (?, 'message', 'room', ?, ?, NULL, ?)",
                    )
                    .bind(quoted)
                    .bind(room)
                    .bind(author)
                    .bind(&message.created_at)
                    .execute(&mut *conn)
                    .await?;
                }
            }
        }
        insert_with_id(
            conn,
            sqlx::query(
                "INSERT INTO events (id, kind, scope, room_id, user_id, body, reply_to, mentions_room, created_at) \
                 VALUES (?, 'message', 'room', ?, ?, ?, ?, ?, ?)",
            )
            .bind(message.id)
            .bind(room)
            .bind(author)
            .bind(&message.content)
            .bind(message.reply_to)
            .bind(message.mentions_room)
            .bind(&message.created_at),
            message.id,
        )
        .await?;
        let mut mentioned = Vec::with_capacity(message.mentions.len());
        for name in &message.mentions {
            mentioned.push((message.id, self.user(conn, name).await?));
        }
        writes::insert_mention_rows(conn, &mentioned).await?;
        if let Some(edited_at) = &message.edited_at {
            // Its only edit: the text it has now, by its author (only authors edit).
            later(
                conn,
                "edit",
                room,
                author,
                None,
                Some(message.id),
                Some(&message.content),
                edited_at,
            )
            .await?;
        }
        for reactions in &message.reactions {
            for name in &reactions.usernames {
                let who = self.user(conn, name).await?;
                let body = writes::reaction_body(&reactions.emoji, true);
                later(
                    conn,
                    "reaction",
                    room,
                    who,
                    None,
                    Some(message.id),
                    Some(&body),
                    &message.created_at,
                )
                .await?;
            }
        }
        Ok(())
    }

    /// Appends the events that waited (members, edits, reactions, in the order the export
    /// named them) after every imported one, with what goes with them: an edit mentions whom
    /// its message does, and a reaction is recorded as the writer records one. Then nothing
    /// imported is unread to the accounts made, and the WAL is folded into the file.
    pub async fn finish(self, conn: &mut SqliteConnection) -> Result<Imported, ImportError> {
        writes::exec(conn, "BEGIN IMMEDIATE").await?;
        let outcome = async {
            let first: EventId =
                sqlx::query_scalar("SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0) + 1")
                    .fetch_one(&mut *conn)
                    .await?;
            sqlx::raw_sql(
                "INSERT INTO events (kind, scope, room_id, user_id, subject_id, message_id, body, created_at) \
                 SELECT kind, 'room', room_id, user_id, subject_id, message_id, body, created_at \
                 FROM temp.import_later ORDER BY seq",
            )
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "INSERT OR IGNORE INTO mentions (event_id, user_id) \
                 SELECT x.id, m.user_id FROM events AS x JOIN mentions AS m ON m.event_id = x.message_id \
                 WHERE x.id >= ?1 AND x.kind = 'edit'",
            )
            .bind(first)
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "UPDATE events SET mentions_room = 1 WHERE id >= ?1 AND kind = 'edit' \
                 AND (SELECT m.mentions_room FROM events AS m WHERE m.id = events.message_id) = 1",
            )
            .bind(first)
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "INSERT INTO reactions (message_id, emoji, user_id, event_id) \
                 SELECT message_id, json_extract(body, '$.emoji'), user_id, id FROM events \
                 WHERE id >= ?1 AND kind = 'reaction'",
            )
            .bind(first)
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "UPDATE users SET read_from = coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0) \
                 WHERE password_hash = ?",
            )
            .bind(NO_PASSWORD)
            .execute(&mut *conn)
            .await?;
            sqlx::raw_sql("DROP TABLE temp.import_later")
                .execute(&mut *conn)
                .await?;
            Ok::<_, sqlx::Error>(())
        }
        .await;
        if let Err(error) = outcome {
            let _ = writes::exec(conn, "ROLLBACK").await;
            return Err(error.into());
        }
        writes::exec(conn, "COMMIT").await?;
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut *conn)
            .await?;
        Ok(self.done)
    }
}

/// Runs an `INSERT` of the event `id`, refusing (rather than failing) when the id is taken.
async fn insert_with_id(
    conn: &mut SqliteConnection,
    insert: sqlx::query::Query<'_, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
    id: EventId,
) -> Result<(), ImportError> {
    insert.execute(conn).await.map_err(|error| match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            refused(format!("event {id} appears twice in the export"))
        }
        _ => ImportError::Database(error),
    })?;
    Ok(())
}

/// Queues an event to be appended after every imported one (`Importer::finish`).
#[allow(clippy::too_many_arguments)]
async fn later(
    conn: &mut SqliteConnection,
    kind: &'static str,
    room: RoomId,
    user: UserId,
    subject: Option<UserId>,
    message: Option<EventId>,
    body: Option<&str>,
    created_at: &str,
) -> Result<(), ImportError> {
    sqlx::query(
        "INSERT INTO temp.import_later (kind, room_id, user_id, subject_id, message_id, body, created_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(kind)
    .bind(room)
    .bind(user)
    .bind(subject)
    .bind(message)
    .bind(body)
    .bind(created_at)
    .execute(conn)
    .await?;
    Ok(())
}
