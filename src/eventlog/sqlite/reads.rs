//! Every read: the log by scope (what a stream replays), history, rooms, accounts, sessions,
//! members and statuses.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sqlx::{FromRow, SqlitePool};

use super::search::fts5_expression;
use super::writes::INVITE_COLUMNS;
use super::writes::group_reactions;
use crate::domain::{
    Event, EventId, EventKind, MAX_UNREAD, Membership, NotifyLevel, Quote, Reactions, Role, RoomId, RoomKind,
    SearchQuery, Status, Timestamp, UserId, View,
};
use crate::eventlog::Invite;

/// Read access to the log, shared by every request. Cloning copies two `Arc`s.
#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
    /// Rooms by name. A room is never renamed or removed, so once read it is known for good:
    /// posting to a room costs no query.
    rooms: Arc<Mutex<HashMap<String, Room>>>,
}

/// How an event row reads back, names joined in.
#[derive(FromRow)]
struct EventRow {
    id: EventId,
    kind: String,
    room_id: Option<RoomId>,
    room: Option<String>,
    room_kind: Option<String>,
    user_id: UserId,
    username: String,
    subject_id: Option<UserId>,
    subject: Option<String>,
    body: Option<String>,
    created_at: String,
    /// The message an edit, deletion or reaction changes.
    message_id: Option<EventId>,
    /// The message a message answers.
    reply_to: Option<EventId>,
    /// Whom a message or edit mentions: names, space-separated.
    mentions: Option<String>,
    /// Whether a message or edit says `@here` or `@room`.
    mentions_room: bool,
}

/// A `room` event's stored state: `{"topic","archived"}`, or (written before rooms changed)
/// the topic itself or nothing.
fn room_state(body: Option<&str>) -> (Option<String>, bool, Vec<String>) {
    #[derive(serde::Deserialize)]
    struct State {
        topic: Option<String>,
        #[serde(default)]
        archived: bool,
        #[serde(default)]
        members: Vec<String>,
    }
    match body {
        None => (None, false, Vec::new()),
        Some(body) => match serde_json::from_str::<State>(body) {
            Ok(state) => (state.topic, state.archived, state.members),
            Err(_) => (Some(body.to_owned()), false, Vec::new()),
        },
    }
}

impl TryFrom<EventRow> for Event {
    type Error = sqlx::Error;

    fn try_from(row: EventRow) -> Result<Self, sqlx::Error> {
        let shape = || sqlx::Error::Decode(format!("event {} has an unknown shape ({})", row.id, row.kind).into());
        let kind = match (row.kind.as_str(), row.room_id, row.room.clone()) {
            ("message", Some(room_id), Some(room)) => EventKind::Message {
                room_id,
                room,
                content: row.body.clone().ok_or_else(shape)?,
                // Who wrote it and what it says now are read next (`Store::complete`).
                reply_to: row.reply_to.map(|id| Quote {
                    id,
                    username: String::new(),
                    content: None,
                }),
                mentions: names(row.mentions.as_deref()),
                mentions_room: row.mentions_room,
                edited_at: None,
                reactions: Vec::new(),
                rendered: None,
            },
            ("edit", Some(room_id), Some(room)) => EventKind::Edit {
                room_id,
                room,
                message_id: row.message_id.ok_or_else(shape)?,
                content: row.body.clone().ok_or_else(shape)?,
                mentions: names(row.mentions.as_deref()),
                mentions_room: row.mentions_room,
                rendered: None,
            },
            ("delete", Some(room_id), Some(room)) => EventKind::Delete {
                room_id,
                room,
                message_id: row.message_id.ok_or_else(shape)?,
            },
            ("reaction", Some(room_id), Some(room)) => {
                #[derive(serde::Deserialize)]
                struct Change {
                    emoji: String,
                    added: bool,
                }
                let change: Change = row
                    .body
                    .as_deref()
                    .and_then(|body| serde_json::from_str(body).ok())
                    .ok_or_else(shape)?;
                EventKind::Reaction {
                    room_id,
                    room,
                    message_id: row.message_id.ok_or_else(shape)?,
                    emoji: change.emoji,
                    added: change.added,
                    // The message's reactions are read next (`Store::complete`).
                    reactions: Vec::new(),
                }
            }
            ("status", None, _) => EventKind::Status {
                status: row
                    .body
                    .as_deref()
                    .ok_or_else(shape)
                    .and_then(|body| Status::from_str(body).map_err(|e| sqlx::Error::Decode(e.into())))?,
            },
            ("room", Some(room_id), Some(room)) => {
                let (topic, archived, members) = room_state(row.body.as_deref());
                EventKind::Room {
                    room_id,
                    room,
                    kind: RoomKind::from_stored(row.room_kind.as_deref().unwrap_or("public")),
                    topic,
                    archived,
                    members,
                }
            }
            ("member", Some(room_id), Some(room)) => EventKind::Member {
                room_id,
                room,
                member: row.subject_id.ok_or_else(shape)?,
                member_name: row.subject.clone().ok_or_else(shape)?,
                joined: row.body.as_deref() == Some("joined"),
            },
            ("read", Some(room_id), Some(room)) => EventKind::Read {
                room_id,
                room,
                up_to: row
                    .body
                    .as_deref()
                    .and_then(|body| body.parse().ok())
                    .map(EventId)
                    .ok_or_else(shape)?,
            },
            _ => return Err(shape()),
        };
        Ok(Event {
            id: row.id,
            user_id: row.user_id,
            username: row.username,
            created_at: row.created_at,
            kind,
        })
    }
}

/// `SELECT` of whole events, names joined in, followed by the rest of the query.
macro_rules! select_events {
    ($($rest:expr),*) => {
        concat!(
            "SELECT e.id, e.kind, e.room_id, r.name AS room, r.kind AS room_kind, e.user_id, u.username, \
                    e.subject_id, s.username AS subject, e.body, e.created_at, e.message_id, e.reply_to, \
                    CASE WHEN e.kind IN ('message', 'edit') THEN \
                      (SELECT group_concat(mu.username, ' ' ORDER BY mu.username) FROM mentions AS m \
                       JOIN users AS mu ON mu.id = m.user_id WHERE m.event_id = e.id) END AS mentions, e.mentions_room \
             FROM events AS e JOIN users AS u ON u.id = e.user_id LEFT JOIN rooms AS r ON r.id = e.room_id \
             LEFT JOIN users AS s ON s.id = e.subject_id ",
            $($rest),*
        )
    };
}

/// Whether the user `?2` could read the room of the event `e` when it happened: every account
/// reads a public room; a members-only one, its members, from the event that let them in to
/// the one that removed them. `r` is the event's room.
macro_rules! readable_by_user_2 {
    () => {
        "(r.kind = 'public' OR EXISTS (SELECT 1 FROM room_access AS a \
          WHERE a.user_id = ?2 AND a.room_id = e.room_id AND a.from_id <= e.id \
            AND (a.until_id IS NULL OR a.until_id >= e.id)))"
    };
}

/// Which page of a room's history (`Store::history`); `limit` is at least 1.
#[derive(Debug, Clone, Copy)]
pub struct HistoryPage {
    pub before: Option<EventId>,
    pub after: Option<EventId>,
    pub around: Option<EventId>,
    pub limit: u32,
}

/// What a search asks of the store: the query, parsed, and filters already checked (the room
/// is one the reader can read; the author an account).
#[derive(Debug, Clone, Copy)]
pub struct SearchPage<'a> {
    pub query: &'a SearchQuery,
    /// Whose search: only rooms they can read now are searched.
    pub reader: UserId,
    pub room: Option<RoomId>,
    pub author: Option<UserId>,
    /// Posted at or after this moment.
    pub after: Option<&'a Timestamp>,
    /// Posted before this moment.
    pub before: Option<&'a Timestamp>,
    /// Only messages older than this one: the `next` of the page before.
    pub below: Option<EventId>,
    /// At least 1.
    pub limit: u32,
}

/// A page of search results.
#[derive(Debug, Clone)]
pub struct Found {
    /// Newest first, each in its current state with its snippet: its text around the
    /// matches, each match between `MATCH_START` and `MATCH_END`, as FTS5 cut it.
    pub hits: Vec<(Event, String)>,
    /// Where the next page starts (pass it back as `below`), if the search may find more.
    pub next: Option<EventId>,
}

/// The most matches one page of a search looks at, whoever may read them. Beyond it the page
/// ends (perhaps short, perhaps empty) with a `next` that carries on from there: a search for
/// a common word that is mostly in rooms the reader cannot read costs no more than this.
pub const MAX_SEARCH_SCAN: u32 = 1000;

/// A room, as the app finds it by name. The name, kind and creator never change; the topic and
/// the archived flag are as they were read.
#[derive(Debug, Clone, FromRow)]
pub struct Room {
    pub id: RoomId,
    pub name: String,
    #[sqlx(try_from = "String")]
    pub kind: RoomKindColumn,
    pub topic: Option<String>,
    pub archived: bool,
    pub created_by: Option<UserId>,
    pub created_at: String,
}

/// `rooms.kind` as it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomKindColumn(pub RoomKind);

impl From<String> for RoomKindColumn {
    fn from(stored: String) -> Self {
        Self(RoomKind::from_stored(&stored))
    }
}

impl Room {
    pub fn kind(&self) -> RoomKind {
        self.kind.0
    }
}

/// `SELECT` of the columns a `Room` reads, followed by the rest of the query.
macro_rules! select_rooms {
    ($rest:literal) => {
        concat!(
            "SELECT id, name, kind, topic, archived, created_by, created_at FROM rooms ",
            $rest
        )
    };
}

/// What one user has not read of one room (`Store::unread`).
#[derive(Debug, Clone, FromRow)]
pub struct Unread {
    pub room_id: RoomId,
    /// Where they have read to: their cursor, or the moment their account was made, or the
    /// event that let them into the room, whichever is newest.
    pub read: EventId,
    #[sqlx(try_from = "String")]
    pub notify: NotifyColumn,
    /// Messages after `read`, not theirs, not deleted: at most `MAX_UNREAD`.
    pub unread: u32,
    /// Those of them whose newest version mentions them, or says `@here` or `@room`.
    pub mentions: u32,
    /// The room's newest message; 0 when it has none.
    pub last_id: EventId,
}

/// `reads.notify` as it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotifyColumn(pub NotifyLevel);

impl From<String> for NotifyColumn {
    fn from(stored: String) -> Self {
        Self(NotifyLevel::from_stored(&stored))
    }
}

/// A session found by its token, with its user.
#[derive(Debug, Clone, FromRow)]
pub struct SessionRow {
    pub user_id: UserId,
    pub username: String,
    /// `admin` or `member`.
    pub role: String,
    /// The session's public id.
    pub id: String,
    /// Seconds since the session was last used (as far as it was recorded).
    pub idle_secs: f64,
    /// Seconds since the session was started.
    pub age_secs: f64,
}

/// An account as `GET /api/users` and the admin page list it.
#[derive(Debug, Clone)]
pub struct AccountListing {
    pub username: String,
    pub role: Role,
    pub active: bool,
    pub status: Status,
}

/// A session as its user sees it listed.
#[derive(Debug, Clone, FromRow)]
pub struct SessionListing {
    pub id: String,
    pub created_at: String,
    pub last_seen_at: String,
    pub address: Option<String>,
    pub user_agent: Option<String>,
    pub token_hash: Vec<u8>,
}

#[derive(Debug, Clone, FromRow)]
pub struct Account {
    pub id: UserId,
    pub username: String,
    pub password_hash: String,
    pub role: String,
    pub active: bool,
}

fn events(rows: Vec<EventRow>) -> Result<Vec<Event>, sqlx::Error> {
    rows.into_iter().map(Event::try_from).collect()
}

/// Space-separated names as a list.
fn names(joined: Option<&str>) -> Vec<String> {
    joined
        .map(|joined| {
            joined
                .split(' ')
                .filter(|name| !name.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// A list of ids as the JSON array `json_each` reads.
fn id_list(ids: &[EventId]) -> String {
    serde_json::to_string(ids).unwrap_or_else(|_| "[]".into())
}

/// Whether a row is still to be replayed: not the message, an edit or a reaction of a message
/// since deleted (whose text is gone; its `delete` event is replayed).
macro_rules! not_erased {
    () => {
        "NOT (e.kind IN ('message', 'edit', 'reaction') AND e.body IS NULL)"
    };
}

impl Store {
    pub(super) fn new(pool: SqlitePool) -> Self {
        Self {
            pool,
            rooms: Arc::default(),
        }
    }

    /// The events `view` shows after `after`, oldest first, at most `limit`: the same events
    /// `View::sees` lets through live.
    pub async fn events_after(&self, view: View, after: EventId, limit: u32) -> Result<Vec<Event>, sqlx::Error> {
        let rows: Vec<EventRow> = match view {
            View::Room(room, user) => {
                // Two ordered range scans, (room_id, id) and the partial index of what everyone
                // sees, merged: no sort, and no scan of other rooms.
                const SQL: &str = concat!(
                    "SELECT * FROM (",
                    select_events!(
                        "WHERE e.room_id = ?1 AND e.scope = 'room' AND e.id > ?3 AND ",
                        not_erased!(),
                        " AND ",
                        readable_by_user_2!()
                    ),
                    " UNION ALL ",
                    select_events!("WHERE e.scope = 'everyone' AND e.id > ?3"),
                    ") ORDER BY id LIMIT ?4"
                );
                sqlx::query_as(SQL)
                    .bind(room)
                    .bind(user)
                    .bind(after)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
            View::User(user) => {
                // One range scan of the log: each row is the user's to see by its scope, and a
                // room's row by the room's kind, or for a members-only room by a lookup of
                // the user's stints in it.
                const SQL: &str = select_events!(
                    "WHERE e.id > ?1 AND (e.scope = 'everyone' OR (e.scope = 'user' AND e.user_id = ?2) \
                     OR (e.scope = 'room' AND ",
                    not_erased!(),
                    " AND ",
                    readable_by_user_2!(),
                    ")) ORDER BY e.id LIMIT ?3"
                );
                sqlx::query_as(SQL)
                    .bind(after)
                    .bind(user)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        let mut events = events(rows)?;
        self.complete(&mut events).await?;
        Ok(events)
    }

    /// How many events `view` shows after `after`, counting no further than `at_most`: the
    /// size of a replay, found in at most `at_most` steps of the same indexes.
    pub async fn count_after(&self, view: View, after: EventId, at_most: u32) -> Result<u32, sqlx::Error> {
        let count: i64 = match view {
            View::Room(room, user) => {
                const SQL: &str = concat!(
                    "SELECT count(*) FROM (\
                     SELECT 1 FROM events AS e LEFT JOIN rooms AS r ON r.id = e.room_id \
                     WHERE e.room_id = ?1 AND e.scope = 'room' AND e.id > ?3 AND ",
                    readable_by_user_2!(),
                    " UNION ALL SELECT 1 FROM events WHERE scope = 'everyone' AND id > ?3 LIMIT ?4)"
                );
                sqlx::query_scalar(SQL)
                    .bind(room)
                    .bind(user)
                    .bind(after)
                    .bind(at_most)
                    .fetch_one(&self.pool)
                    .await?
            }
            View::User(user) => {
                const SQL: &str = concat!(
                    "SELECT count(*) FROM (\
                     SELECT 1 FROM events AS e LEFT JOIN rooms AS r ON r.id = e.room_id \
                     WHERE e.id > ?1 AND (e.scope = 'everyone' OR (e.scope = 'user' AND e.user_id = ?2) \
                     OR (e.scope = 'room' AND ",
                    readable_by_user_2!(),
                    ")) LIMIT ?3)"
                );
                sqlx::query_scalar(SQL)
                    .bind(after)
                    .bind(user)
                    .bind(at_most)
                    .fetch_one(&self.pool)
                    .await?
            }
        };
        Ok(u32::try_from(count).unwrap_or(u32::MAX))
    }

    /// A page of a room's messages in their current state, oldest first, deleted ones left
    /// out: the newest `limit` before `page.before` (or the newest of all), the oldest `limit`
    /// after `page.after`, or `limit` centred on `page.around` (half of them up to it, and it).
    pub async fn history(&self, room: RoomId, page: HistoryPage) -> Result<Vec<Event>, sqlx::Error> {
        const NEWEST_BEFORE: &str = concat!(
            "SELECT * FROM (",
            select_events!(
                "WHERE e.room_id = ?1 AND e.kind = 'message' AND e.body IS NOT NULL AND e.id < ?2 \
                 ORDER BY e.id DESC LIMIT ?3"
            ),
            ") ORDER BY id"
        );
        const OLDEST_AFTER: &str = select_events!(
            "WHERE e.room_id = ?1 AND e.kind = 'message' AND e.body IS NOT NULL AND e.id > ?2 AND e.id < ?3 \
             ORDER BY e.id LIMIT ?4"
        );
        let before = page.before.unwrap_or(EventId::MAX);
        let limit = page.limit;
        let rows: Vec<EventRow> = match (page.around, page.after) {
            (Some(around), _) => {
                let up_to = limit.div_ceil(2);
                let mut rows: Vec<EventRow> = sqlx::query_as(NEWEST_BEFORE)
                    .bind(room)
                    .bind(EventId(around.get().saturating_add(1)))
                    .bind(up_to)
                    .fetch_all(&self.pool)
                    .await?;
                let after: Vec<EventRow> = sqlx::query_as(OLDEST_AFTER)
                    .bind(room)
                    .bind(around)
                    .bind(EventId::MAX)
                    .bind(limit - up_to)
                    .fetch_all(&self.pool)
                    .await?;
                rows.extend(after);
                rows
            }
            (None, Some(after)) => {
                sqlx::query_as(OLDEST_AFTER)
                    .bind(room)
                    .bind(after)
                    .bind(before)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
            (None, None) => {
                sqlx::query_as(NEWEST_BEFORE)
                    .bind(room)
                    .bind(before)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        let mut events = events(rows)?;
        self.current_state(&mut events).await?;
        Ok(events)
    }

    /// One message in its current state; `None` if there is none with this id (or it was
    /// deleted).
    pub async fn message(&self, id: EventId) -> Result<Option<Event>, sqlx::Error> {
        const SQL: &str = select_events!("WHERE e.id = ? AND e.kind = 'message' AND e.body IS NOT NULL");
        let row: Option<EventRow> = sqlx::query_as(SQL).bind(id).fetch_optional(&self.pool).await?;
        let mut events = row.map(Event::try_from).transpose()?.into_iter().collect::<Vec<_>>();
        self.current_state(&mut events).await?;
        Ok(events.pop())
    }

    /// The next `limit` messages after `after` (of `room` only, if given; sent at or after
    /// `since`, if given) in their current state, oldest first: a page of an export. Each page
    /// is a statement of its own, so a long export never holds one snapshot of the file for
    /// minutes (which would hold back the server's checkpoints); a message changed meanwhile
    /// is exported as it was when its page was read.
    pub async fn export_page(
        &self,
        after: EventId,
        room: Option<RoomId>,
        since: Option<&Timestamp>,
        limit: u32,
    ) -> Result<Vec<Event>, sqlx::Error> {
        // One room's messages by its index of live messages; all of them in id order.
        const ONE_ROOM: &str = select_events!(
            "WHERE e.room_id = ?1 AND e.kind = 'message' AND e.body IS NOT NULL AND e.id > ?2 \
             AND (?3 IS NULL OR e.created_at >= ?3) ORDER BY e.id LIMIT ?4"
        );
        const ALL: &str = select_events!(
            "WHERE e.id > ?2 AND e.kind = 'message' AND e.body IS NOT NULL \
             AND (?3 IS NULL OR e.created_at >= ?3) ORDER BY e.id LIMIT ?4"
        );
        let rows: Vec<EventRow> = sqlx::query_as(if room.is_some() { ONE_ROOM } else { ALL })
            .bind(room)
            .bind(after)
            .bind(since.map(Timestamp::as_str))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        let mut events = events(rows)?;
        self.current_state(&mut events).await?;
        Ok(events)
    }

    /// A room as an export describes it (`wire::render::RoomLine`): its first `room` event
    /// (id, time, who made it) with the room's state now, and its members now if only members
    /// read it. `None` for a room the server made itself (`general`), which has no such event.
    pub async fn export_room(&self, room: RoomId) -> Result<Option<Event>, sqlx::Error> {
        #[derive(FromRow)]
        struct RoomRow {
            id: EventId,
            created_at: String,
            user_id: UserId,
            username: String,
            name: String,
            kind: String,
            topic: Option<String>,
            archived: bool,
        }
        let row: Option<RoomRow> = sqlx::query_as(
            "SELECT e.id, e.created_at, e.user_id, u.username, r.name, r.kind, r.topic, r.archived \
             FROM rooms AS r \
             JOIN events AS e ON e.id = (SELECT min(x.id) FROM events AS x WHERE x.room_id = r.id AND x.kind = 'room') \
             JOIN users AS u ON u.id = e.user_id \
             WHERE r.id = ?",
        )
        .bind(room)
        .fetch_optional(&self.pool)
        .await?;
        let Some(RoomRow {
            id,
            created_at,
            user_id,
            username,
            name,
            kind,
            topic,
            archived,
        }) = row
        else {
            return Ok(None);
        };
        let kind = RoomKind::from_stored(&kind);
        let mut members: Vec<String> = if kind.members_only() {
            sqlx::query_scalar(
                "SELECT u.username FROM room_access AS a JOIN users AS u ON u.id = a.user_id \
                 WHERE a.room_id = ? AND a.until_id IS NULL",
            )
            .bind(room)
            .fetch_all(&self.pool)
            .await?
        } else {
            Vec::new()
        };
        // As a direct room's `room` event lists its people.
        members.sort_by_key(|name| name.to_lowercase());
        Ok(Some(Event {
            id,
            user_id,
            username,
            created_at,
            kind: EventKind::Room {
                room_id: room,
                room: name,
                kind,
                topic,
                archived,
                members,
            },
        }))
    }

    /// The messages `page.reader` can read now that match `page.query` and its filters, newest
    /// first, at most `page.limit`, in their current state with snippets.
    ///
    /// FTS5 hands out matches in descending rowid (message id) order from its index, so the
    /// newest come first with no sort, and a `LIMIT` ends the work early. One statement bounds
    /// the page to the `MAX_SEARCH_SCAN` newest matches below the cursor; the next reads the
    /// readable ones among them, looking up each one's row, room and (for a members-only room)
    /// the reader's membership by key, and cuts a snippet only for those it returns.
    pub async fn search(&self, page: SearchPage<'_>) -> Result<Found, sqlx::Error> {
        let expression = fts5_expression(page.query);
        let below = page.below.unwrap_or(EventId::MAX);
        let (scanned, floor): (i64, Option<EventId>) = sqlx::query_as(
            "SELECT count(*), min(rowid) FROM (SELECT rowid FROM message_search \
             WHERE message_search MATCH ?1 AND rowid < ?2 ORDER BY rowid DESC LIMIT ?3)",
        )
        .bind(&expression)
        .bind(below)
        .bind(MAX_SEARCH_SCAN)
        .fetch_one(&self.pool)
        .await?;
        let Some(floor) = floor else {
            return Ok(Found {
                hits: Vec::new(),
                next: None,
            });
        };
        // The markers are `MATCH_START` and `MATCH_END`, which no indexed text holds.
        let rows: Vec<(EventId, String)> = sqlx::query_as(
            "SELECT message_search.rowid, snippet(message_search, 0, char(2), char(3), '…', 20) \
             FROM message_search JOIN events AS e ON e.id = message_search.rowid \
             JOIN rooms AS r ON r.id = e.room_id \
             WHERE message_search MATCH ?1 AND message_search.rowid < ?2 AND message_search.rowid >= ?3 \
               AND e.kind = 'message' AND e.body IS NOT NULL \
               AND (r.kind = 'public' OR EXISTS (SELECT 1 FROM room_access AS a \
                    WHERE a.room_id = e.room_id AND a.user_id = ?4 AND a.until_id IS NULL)) \
               AND (?5 IS NULL OR e.room_id = ?5) AND (?6 IS NULL OR e.user_id = ?6) \
               AND (?7 IS NULL OR e.created_at >= ?7) AND (?8 IS NULL OR e.created_at < ?8) \
             ORDER BY message_search.rowid DESC LIMIT ?9",
        )
        .bind(&expression)
        .bind(below)
        .bind(floor)
        .bind(page.reader)
        .bind(page.room)
        .bind(page.author)
        .bind(page.after.map(Timestamp::as_str))
        .bind(page.before.map(Timestamp::as_str))
        .bind(page.limit + 1)
        .fetch_all(&self.pool)
        .await?;
        let limit = page.limit as usize;
        let next = if rows.len() > limit {
            Some(rows[limit - 1].0)
        } else if scanned >= i64::from(MAX_SEARCH_SCAN) {
            // Every match down to `floor` was looked at: the next page goes on below it.
            Some(floor)
        } else {
            None
        };
        let mut snippets: HashMap<EventId, String> = rows.into_iter().take(limit).collect();
        let ids: Vec<EventId> = snippets.keys().copied().collect();
        const SQL: &str = select_events!(
            "WHERE e.id IN (SELECT value FROM json_each(?)) AND e.kind = 'message' AND e.body IS NOT NULL"
        );
        let rows: Vec<EventRow> = sqlx::query_as(SQL).bind(id_list(&ids)).fetch_all(&self.pool).await?;
        let mut events = events(rows)?;
        self.current_state(&mut events).await?;
        // Deleted since the match was read: left out.
        let mut hits: Vec<(Event, String)> = events
            .into_iter()
            .filter_map(|event| snippets.remove(&event.id).map(|snippet| (event, snippet)))
            .collect();
        hits.sort_unstable_by_key(|(event, _)| std::cmp::Reverse(event.id));
        Ok(Found { hits, next })
    }

    /// Brings messages read as first posted to their state now: newest text, when it was
    /// edited, whom that version mentions, and their reactions; then as `complete`.
    async fn current_state(&self, events: &mut [Event]) -> Result<(), sqlx::Error> {
        let ids: Vec<EventId> = events
            .iter()
            .filter(|event| matches!(event.kind, EventKind::Message { .. }))
            .map(|event| event.id)
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        let list = id_list(&ids);
        // SQLite returns the bare columns of the row holding max(id): each message's newest
        // edit, and whom that one mentions.
        let edits: Vec<(EventId, String, String, EventId, Option<String>, bool)> = sqlx::query_as(
            "SELECT x.message_id, x.body, x.created_at, max(x.id), \
                    (SELECT group_concat(mu.username, ' ' ORDER BY mu.username) FROM mentions AS m \
                     JOIN users AS mu ON mu.id = m.user_id WHERE m.event_id = x.id), x.mentions_room \
             FROM events AS x WHERE x.kind = 'edit' AND x.message_id IN (SELECT value FROM json_each(?1)) \
             GROUP BY x.message_id",
        )
        .bind(&list)
        .fetch_all(&self.pool)
        .await?;
        let reactions = self.reactions_of(&list).await?;
        let mut edits: HashMap<EventId, (String, String, Option<String>, bool)> = edits
            .into_iter()
            .map(|(message, body, at, _, mentions, room)| (message, (body, at, mentions, room)))
            .collect();
        for event in events.iter_mut() {
            let id = event.id;
            if let EventKind::Message {
                content,
                mentions,
                mentions_room,
                edited_at,
                reactions: now,
                ..
            } = &mut event.kind
            {
                if let Some((body, at, mentioned, room)) = edits.remove(&id) {
                    *content = body;
                    *edited_at = Some(at);
                    *mentions = names(mentioned.as_deref());
                    *mentions_room = room;
                }
                *now = reactions.get(&id).cloned().unwrap_or_default();
            }
        }
        self.complete(events).await
    }

    /// Reads what a page of events names but its rows do not hold: for a reply, the message it
    /// answers as it is now; for a reaction, every reaction of its message now.
    async fn complete(&self, events: &mut [Event]) -> Result<(), sqlx::Error> {
        let mut quoted = Vec::new();
        let mut reacted = Vec::new();
        for event in events.iter() {
            match &event.kind {
                EventKind::Message {
                    reply_to: Some(quote), ..
                } => quoted.push(quote.id),
                EventKind::Reaction { message_id, .. } => reacted.push(*message_id),
                _ => {}
            }
        }
        if !quoted.is_empty() {
            let rows: Vec<(EventId, String, Option<String>)> = sqlx::query_as(
                "SELECT q.id, u.username, \
                        coalesce((SELECT x.body FROM events AS x WHERE x.kind = 'edit' AND x.message_id = q.id \
                                  ORDER BY x.id DESC LIMIT 1), q.body) \
                 FROM events AS q JOIN users AS u ON u.id = q.user_id \
                 WHERE q.id IN (SELECT value FROM json_each(?))",
            )
            .bind(id_list(&quoted))
            .fetch_all(&self.pool)
            .await?;
            let quotes: HashMap<EventId, (String, Option<String>)> =
                rows.into_iter().map(|(id, name, text)| (id, (name, text))).collect();
            for event in events.iter_mut() {
                if let EventKind::Message {
                    reply_to: Some(quote), ..
                } = &mut event.kind
                    && let Some((username, content)) = quotes.get(&quote.id)
                {
                    quote.username.clone_from(username);
                    quote.content.clone_from(content);
                }
            }
        }
        if !reacted.is_empty() {
            let reactions = self.reactions_of(&id_list(&reacted)).await?;
            for event in events.iter_mut() {
                if let EventKind::Reaction {
                    message_id,
                    reactions: now,
                    ..
                } = &mut event.kind
                {
                    *now = reactions.get(message_id).cloned().unwrap_or_default();
                }
            }
        }
        Ok(())
    }

    /// The reactions of the messages a JSON list of ids names, by message.
    async fn reactions_of(&self, list: &str) -> Result<HashMap<EventId, Vec<Reactions>>, sqlx::Error> {
        let rows: Vec<(EventId, String, String)> = sqlx::query_as(
            "SELECT r.message_id, r.emoji, u.username FROM reactions AS r JOIN users AS u ON u.id = r.user_id \
             WHERE r.message_id IN (SELECT value FROM json_each(?)) ORDER BY r.message_id, r.event_id",
        )
        .bind(list)
        .fetch_all(&self.pool)
        .await?;
        let mut by_message: HashMap<EventId, Vec<(String, String)>> = HashMap::new();
        for (message, emoji, username) in rows {
            by_message.entry(message).or_default().push((emoji, username));
        }
        Ok(by_message
            .into_iter()
            .map(|(message, rows)| (message, group_reactions(rows)))
            .collect())
    }

    /// The newest id ever handed out, even if its row has since been deleted (AUTOINCREMENT
    /// keeps it in `sqlite_sequence`); 0 for an empty log.
    pub async fn head(&self) -> Result<EventId, sqlx::Error> {
        let seq: Option<EventId> = sqlx::query_scalar("SELECT seq FROM sqlite_sequence WHERE name = 'events'")
            .fetch_optional(&self.pool)
            .await?;
        Ok(seq.unwrap_or(EventId::ZERO))
    }

    /// The oldest event from which the log is whole, if any: its first, or the one after the
    /// newest message retention deleted.
    pub async fn oldest_event_id(&self) -> Result<Option<EventId>, sqlx::Error> {
        sqlx::query_scalar("SELECT max((SELECT min(id) FROM events), coalesce((SELECT kept_from FROM retention), 0))")
            .fetch_one(&self.pool)
            .await
    }

    /// Every room, by id and name: for retention.
    pub async fn room_names(&self) -> Result<Vec<(RoomId, String)>, sqlx::Error> {
        sqlx::query_as("SELECT id, name FROM rooms ORDER BY id")
            .fetch_all(&self.pool)
            .await
    }

    /// Of the oldest `limit` live messages of `room`, those posted more than `days` days ago:
    /// a look that costs `limit` entries of the room's index, however long its history.
    pub async fn expired(&self, room: RoomId, days: u32, limit: u32) -> Result<Vec<EventId>, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT id FROM (SELECT id, created_at FROM events INDEXED BY events_room_messages \
                             WHERE room_id = ?1 AND kind = 'message' AND body IS NOT NULL \
                             ORDER BY id LIMIT ?3) \
             WHERE created_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', printf('-%d days', ?2)) ORDER BY id",
        )
        .bind(room)
        .bind(days)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
    }

    pub async fn room(&self, name: &str) -> Result<Option<Room>, sqlx::Error> {
        if let Some(room) = self.known_rooms().get(name) {
            return Ok(Some(room.clone()));
        }
        let room: Option<Room> = sqlx::query_as(select_rooms!("WHERE name = ?"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        if let Some(room) = &room {
            self.known_rooms().insert(room.name.clone(), room.clone());
        }
        Ok(room)
    }

    /// Forgets what was read of the room `name`: its topic or archived flag changed.
    pub fn forget_room(&self, name: &str) {
        self.known_rooms().remove(name);
    }

    fn known_rooms(&self) -> std::sync::MutexGuard<'_, HashMap<String, Room>> {
        // Entries are inserted whole: a panic elsewhere cannot leave one half-written.
        self.rooms.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `user` is a member of `room` now.
    pub async fn is_member(&self, room: RoomId, user: UserId) -> Result<bool, sqlx::Error> {
        let member: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM room_access WHERE room_id = ? AND user_id = ? AND until_id IS NULL")
                .bind(room)
                .bind(user)
                .fetch_optional(&self.pool)
                .await?;
        Ok(member.is_some())
    }

    /// The rooms `user` can read by name after `after` (from the first without it), at most
    /// `limit`: a range scan of the names' unique index, each members-only room checked by
    /// the index of current members.
    pub async fn rooms(&self, user: UserId, after: Option<&str>, limit: u32) -> Result<Vec<Room>, sqlx::Error> {
        sqlx::query_as(select_rooms!(
            "AS r WHERE name > ?1 AND (kind = 'public' OR EXISTS (SELECT 1 FROM room_access AS a \
                   WHERE a.room_id = r.id AND a.user_id = ?2 AND a.until_id IS NULL)) \
             ORDER BY name LIMIT ?3"
        ))
        .bind(after.unwrap_or(""))
        .bind(user)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
    }

    /// What `user` has not read of each room in `rooms`, in one query: their cursor, the
    /// messages after it that are not theirs and not deleted (counted to `MAX_UNREAD`), how
    /// many of those mention them or the room in their newest version, the room's newest
    /// message, and how loudly the room may call them.
    ///
    /// The unread count reads at most `MAX_UNREAD` entries of each room's index of live
    /// messages. The mention count starts from the versions that call them: their own mentions
    /// after the oldest of the cursors (newest first, `MAX_UNREAD` for each room asked about at
    /// most), read once for all the rooms, and each room's `@here`s after its cursor; so it
    /// costs what there is to count, not what there is unread. The cursors, the versions that call them and the counts by
    /// room are each made once (`MATERIALIZED`), and the joins are in the order written (`CROSS
    /// JOIN`) with the indexes named: left to choose, SQLite 3.51 read every event of each room
    /// once a mention, and a user in 50 rooms of 1000 unread waited 30 s for a list of rooms.
    pub async fn unread(&self, user: UserId, rooms: &[RoomId]) -> Result<HashMap<RoomId, Unread>, sqlx::Error> {
        if rooms.is_empty() {
            return Ok(HashMap::new());
        }
        let ids = serde_json::to_string(&rooms).unwrap_or_default();
        let rows: Vec<Unread> = sqlx::query_as(
            "WITH cursors AS MATERIALIZED ( \
               SELECT j.value AS room_id, \
                      max(coalesce(x.up_to, 0), \
                          (SELECT read_from FROM users WHERE id = ?2), \
                          coalesce((SELECT max(a.from_id) FROM room_access AS a \
                                    WHERE a.room_id = j.value AND a.user_id = ?2), 0)) AS read, \
                      coalesce(x.notify, 'mentions') AS notify \
               FROM json_each(?1) AS j LEFT JOIN reads AS x ON x.user_id = ?2 AND x.room_id = j.value), \
             calling (id) AS MATERIALIZED ( \
               SELECT id FROM (SELECT m.event_id AS id FROM mentions AS m \
                               WHERE m.user_id = ?2 AND m.event_id > (SELECT min(read) FROM cursors) \
                               ORDER BY m.event_id DESC LIMIT ?3 * ?4) \
               UNION \
               SELECT v.id FROM cursors AS c CROSS JOIN events AS v INDEXED BY events_room_mentions \
               WHERE v.room_id = c.room_id AND v.mentions_room = 1 AND v.id > c.read), \
             mentioned AS MATERIALIZED ( \
               SELECT c.room_id, count(*) AS mentions \
               FROM calling AS k CROSS JOIN events AS v CROSS JOIN cursors AS c CROSS JOIN events AS e \
               WHERE v.id = k.id AND c.room_id = v.room_id \
                 AND e.id = CASE v.kind WHEN 'edit' THEN v.message_id ELSE v.id END \
                 AND e.kind = 'message' AND e.id > c.read AND e.body IS NOT NULL AND e.user_id != ?2 \
                 AND v.id = coalesce((SELECT max(x.id) FROM events AS x \
                                      WHERE x.kind = 'edit' AND x.message_id = e.id), e.id) \
               GROUP BY c.room_id) \
             SELECT c.room_id, c.read, c.notify, \
                    (SELECT count(*) FROM (SELECT 1 FROM events AS e INDEXED BY events_room_messages \
                       WHERE e.room_id = c.room_id AND e.id > c.read AND e.kind = 'message' \
                         AND e.body IS NOT NULL AND e.user_id != ?2 LIMIT ?3)) AS unread, \
                    min(coalesce(n.mentions, 0), ?3) AS mentions, \
                    coalesce((SELECT max(e.id) FROM events AS e INDEXED BY events_room_messages \
                              WHERE e.room_id = c.room_id AND e.kind = 'message' AND e.body IS NOT NULL), 0) \
                      AS last_id \
             FROM cursors AS c LEFT JOIN mentioned AS n ON n.room_id = c.room_id",
        )
        .bind(ids)
        .bind(user)
        .bind(MAX_UNREAD)
        .bind(rooms.len() as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|row| (row.room_id, row)).collect())
    }

    /// The direct room of exactly the people whose ids `key` lists (see `NewRoom::direct_key`).
    pub async fn direct_room(&self, key: &str) -> Result<Option<Room>, sqlx::Error> {
        sqlx::query_as(select_rooms!("WHERE direct_key = ?"))
            .bind(key)
            .fetch_optional(&self.pool)
            .await
    }

    /// The current members of each members-only room in `rooms`, by name: for the room list.
    pub async fn member_names(&self, rooms: &[RoomId]) -> Result<HashMap<RoomId, Vec<String>>, sqlx::Error> {
        let mut names: HashMap<RoomId, Vec<String>> = HashMap::new();
        if rooms.is_empty() {
            return Ok(names);
        }
        let ids = serde_json::to_string(&rooms).unwrap_or_default();
        let rows: Vec<(RoomId, String)> = sqlx::query_as(
            "SELECT a.room_id, u.username FROM room_access AS a JOIN users AS u ON u.id = a.user_id \
             WHERE a.until_id IS NULL AND a.room_id IN (SELECT value FROM json_each(?)) \
             ORDER BY a.room_id, u.username COLLATE NOCASE",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        for (room, name) in rows {
            names.entry(room).or_default().push(name);
        }
        Ok(names)
    }

    /// Every members-only room and its current members: what the hub routes by.
    pub async fn membership(&self) -> Result<Membership, sqlx::Error> {
        let rows: Vec<(RoomId, Option<UserId>)> = sqlx::query_as(
            "SELECT r.id, a.user_id FROM rooms AS r \
             LEFT JOIN room_access AS a ON a.room_id = r.id AND a.until_id IS NULL \
             WHERE r.kind <> 'public'",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut rooms: HashMap<RoomId, Vec<UserId>> = HashMap::new();
        for (room, member) in rows {
            rooms.entry(room).or_default().extend(member);
        }
        Ok(Membership::new(rooms))
    }

    /// The active accounts with these names (in any case), as they spell them, in the order
    /// the names are given.
    pub async fn accounts_named(&self, names: &[String]) -> Result<Vec<(UserId, String)>, sqlx::Error> {
        let list = serde_json::to_string(names).unwrap_or_else(|_| "[]".into());
        let found: Vec<(UserId, String)> = sqlx::query_as(
            "SELECT id, username FROM users WHERE active = 1 AND username IN (SELECT value FROM json_each(?))",
        )
        .bind(list)
        .fetch_all(&self.pool)
        .await?;
        Ok(names
            .iter()
            .filter_map(|name| {
                found
                    .iter()
                    .find(|(_, found)| found.eq_ignore_ascii_case(name))
                    .cloned()
            })
            .collect())
    }

    pub async fn account(&self, username: &str) -> Result<Option<Account>, sqlx::Error> {
        sqlx::query_as("SELECT id, username, password_hash, role, active FROM users WHERE username = ?")
            .bind(username)
            .fetch_optional(&self.pool)
            .await
    }

    /// The user of a session unused for at most `idle` (an older one has expired).
    /// The session with this token hash, if it is still valid: used within `idle`, started
    /// within `lifetime`, of an active account.
    pub async fn session(
        &self,
        token_hash: &[u8],
        idle: Duration,
        lifetime: Duration,
    ) -> Result<Option<SessionRow>, sqlx::Error> {
        sqlx::query_as(
            "SELECT u.id AS user_id, u.username, u.role, s.id, \
                    (julianday('now') - julianday(s.last_seen_at)) * 86400.0 AS idle_secs, \
                    (julianday('now') - julianday(s.created_at)) * 86400.0 AS age_secs \
             FROM sessions AS s JOIN users AS u ON u.id = s.user_id \
             WHERE s.token_hash = ? AND u.active = 1 \
               AND s.last_seen_at >= strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?) \
               AND s.created_at >= strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?)",
        )
        .bind(token_hash)
        .bind(format!("-{} seconds", idle.as_secs()))
        .bind(format!("-{} seconds", lifetime.as_secs()))
        .fetch_optional(&self.pool)
        .await
    }

    pub async fn role(&self, user: UserId) -> Result<Role, sqlx::Error> {
        let role: String = sqlx::query_scalar("SELECT role FROM users WHERE id = ?")
            .bind(user)
            .fetch_one(&self.pool)
            .await?;
        Ok(Role::from_stored(&role))
    }

    /// `user`'s sessions, most recently used first.
    pub async fn sessions_of(&self, user: UserId) -> Result<Vec<SessionListing>, sqlx::Error> {
        sqlx::query_as(
            "SELECT id, created_at, last_seen_at, address, user_agent, token_hash FROM sessions \
             WHERE user_id = ? ORDER BY last_seen_at DESC, created_at DESC",
        )
        .bind(user)
        .fetch_all(&self.pool)
        .await
    }

    /// Every account, by name, with its role, whether it is active, and its current status.
    pub async fn accounts(&self) -> Result<Vec<AccountListing>, sqlx::Error> {
        let rows: Vec<(String, String, bool, Option<String>)> = sqlx::query_as(
            "SELECT u.username, u.role, u.active, \
                    (SELECT e.body FROM events AS e WHERE e.kind = 'status' AND e.user_id = u.id \
                     ORDER BY e.id DESC LIMIT 1) \
             FROM users AS u ORDER BY u.username COLLATE NOCASE",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(username, role, active, status)| AccountListing {
                username,
                role: Role::from_stored(&role),
                active,
                status: status.and_then(|s| s.parse().ok()).unwrap_or(Status::Offline),
            })
            .collect())
    }

    /// The members of a room with their current status, online first, then by name: every
    /// active account for a public room (`None`), the active members of a members-only one.
    pub async fn members(&self, room: Option<RoomId>) -> Result<Vec<(String, Status)>, sqlx::Error> {
        macro_rules! status {
            () => {
                "(SELECT e.body FROM events AS e WHERE e.kind = 'status' AND e.user_id = u.id \
                  ORDER BY e.id DESC LIMIT 1)"
            };
        }
        let rows: Vec<(String, Option<String>)> = match room {
            None => {
                sqlx::query_as(concat!(
                    "SELECT u.username, ",
                    status!(),
                    " FROM users AS u WHERE u.active = 1 ORDER BY u.username COLLATE NOCASE"
                ))
                .fetch_all(&self.pool)
                .await?
            }
            Some(room) => {
                sqlx::query_as(concat!(
                    "SELECT u.username, ",
                    status!(),
                    " FROM room_access AS a JOIN users AS u ON u.id = a.user_id \
                     WHERE a.room_id = ? AND a.until_id IS NULL AND u.active = 1 ORDER BY u.username COLLATE NOCASE"
                ))
                .bind(room)
                .fetch_all(&self.pool)
                .await?
            }
        };
        let mut members: Vec<(String, Status)> = rows
            .into_iter()
            .map(|(name, status)| (name, status.and_then(|s| s.parse().ok()).unwrap_or(Status::Offline)))
            .collect();
        // Stable: names stay in order within each status.
        members.sort_by_key(|(_, status)| *status as u8);
        Ok(members)
    }

    /// Every user who has a status: their newest stored status and the one they chose, for
    /// presence to start from after a restart.
    pub async fn statuses(&self) -> Result<Vec<StoredStatus>, sqlx::Error> {
        // SQLite returns the bare columns of the row holding max(id).
        let rows: Vec<(UserId, String, String, String, EventId)> = sqlx::query_as(
            "SELECT e.user_id, u.username, e.body, u.status_choice, max(e.id) \
             FROM events AS e JOIN users AS u ON u.id = e.user_id \
             WHERE e.kind = 'status' GROUP BY e.user_id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(user_id, username, shown, chosen, _)| {
                Some(StoredStatus {
                    user_id,
                    username,
                    shown: shown.parse().ok()?,
                    chosen: chosen.parse().unwrap_or(Status::Online),
                })
            })
            .collect())
    }

    /// `user`'s newest status change.
    pub async fn latest_status(&self, user: UserId) -> Result<Option<Event>, sqlx::Error> {
        const SQL: &str = select_events!("WHERE e.user_id = ? AND e.kind = 'status' ORDER BY e.id DESC LIMIT 1");
        let row: Option<EventRow> = sqlx::query_as(SQL).bind(user).fetch_optional(&self.pool).await?;
        row.map(Event::try_from).transpose()
    }

    /// The status `user` chose (`online` unless they chose another).
    pub async fn status_choice(&self, user: UserId) -> Result<Status, sqlx::Error> {
        let chosen: Option<String> = sqlx::query_scalar("SELECT status_choice FROM users WHERE id = ?")
            .bind(user)
            .fetch_optional(&self.pool)
            .await?;
        Ok(chosen.and_then(|s| s.parse().ok()).unwrap_or(Status::Online))
    }

    /// Answers when the database answers.
    /// The sizes of the database file and of its write-ahead log, in bytes, and the Unix time
    /// of the newest backup recorded (`chat-server backup`).
    pub async fn storage(&self) -> Result<Storage, sqlx::Error> {
        let (file, last_backup): (String, Option<i64>) = sqlx::query_as(
            "SELECT (SELECT file FROM pragma_database_list WHERE name = 'main'), \
                    (SELECT CAST(unixepoch(max(finished_at), 'subsec') AS INTEGER) FROM backups)",
        )
        .fetch_one(&self.pool)
        .await?;
        let size = |path: &str| std::fs::metadata(path).map_or(0, |meta| meta.len());
        Ok(Storage {
            database_bytes: size(&file),
            wal_bytes: size(&format!("{file}-wal")),
            last_backup,
        })
    }

    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1 FROM rooms LIMIT 1")
            .execute(&self.pool)
            .await
            .map(drop)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// What `Store::storage` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Storage {
    pub database_bytes: u64,
    pub wal_bytes: u64,
    pub last_backup: Option<i64>,
}

/// A user's status as stored: what the others were last shown, and what the user chose.
#[derive(Debug, Clone)]
pub struct StoredStatus {
    pub user_id: UserId,
    pub username: String,
    pub shown: Status,
    pub chosen: Status,
}

/// Sign-up and invites.
impl Store {
    /// Whether the server has any account yet (if not, the next one is its admin).
    pub async fn has_accounts(&self) -> Result<bool, sqlx::Error> {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users)")
            .fetch_one(&self.pool)
            .await
    }

    /// The invite with this code, live or not.
    pub async fn invite(&self, code: &str) -> Result<Option<Invite>, sqlx::Error> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {INVITE_COLUMNS} WHERE i.code = ?")))
            .bind(code)
            .fetch_optional(&self.pool)
            .await
    }

    /// The invites that still let someone in, newest first (there are a bounded number).
    pub async fn live_invites(&self) -> Result<Vec<Invite>, sqlx::Error> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {INVITE_COLUMNS} WHERE i.revoked = 0 AND i.uses_left > 0 \
             AND i.expires_at > strftime('%Y-%m-%dT%H:%M:%fZ', 'now') ORDER BY i.created_at DESC, i.code"
        )))
        .fetch_all(&self.pool)
        .await
    }
}
