//! The SQL the writer applies, one function a change, each on the writer's connection inside
//! the batch's transaction. A function returns the database's refusal of its request
//! (`WriteError::Conflict`) only when its statements changed nothing.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::LazyLock;
use std::time::Duration;

use sqlx::sqlite::SqliteConnection;

use crate::domain::NotAdmitted;
use crate::domain::{EventId, NotifyLevel, Reactions, Role, RoomId, RoomKind, Scope, Status, UserId, skeleton};
use crate::eventlog::{Admission, Invite, Join, Joined, NewInvite};
use crate::eventlog::{NewSession, Post, ReadMark, WriteError};

/// Runs a statement that returns nothing, such as `BEGIN`.
pub async fn exec(conn: &mut SqliteConnection, sql: &'static str) -> Result<(), WriteError> {
    sqlx::raw_sql(sql)
        .execute(conn)
        .await
        .map(drop)
        .map_err(WriteError::from)
}

/// A unique name taken is the request's own refusal, named by `what`.
fn conflict(what: &'static str) -> impl FnOnce(sqlx::Error) -> WriteError {
    move |error| match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => WriteError::Conflict(what),
        _ => WriteError::from(error),
    }
}

pub async fn insert_user(
    conn: &mut SqliteConnection,
    username: &str,
    password_hash: &str,
) -> Result<UserId, WriteError> {
    // Checked here, by the one writer, so that two look-alikes cannot both be made at once.
    let look_alike: Option<i64> = sqlx::query_scalar("SELECT 1 FROM users WHERE skeleton = ? LIMIT 1")
        .bind(skeleton(username))
        .fetch_optional(&mut *conn)
        .await?;
    if look_alike.is_some() {
        let exact: Option<i64> = sqlx::query_scalar("SELECT 1 FROM users WHERE username = ?")
            .bind(username)
            .fetch_optional(&mut *conn)
            .await?;
        return Err(WriteError::Conflict(if exact.is_some() {
            "username"
        } else {
            "look-alike"
        }));
    }
    // The first account of an empty server is its admin. Nothing said before it was made is
    // unread to it.
    sqlx::query_scalar(
        "INSERT INTO users (username, password_hash, role, read_from) \
         VALUES (?, ?, CASE WHEN EXISTS (SELECT 1 FROM users) THEN 'member' ELSE 'admin' END, \
                 coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)) RETURNING id",
    )
    .bind(username)
    .bind(password_hash)
    .fetch_one(conn)
    .await
    .map_err(conflict("username"))
}

/// Starts a session, with a fresh public id (64 random bits, in hex) to list it by.
pub async fn insert_session(
    conn: &mut SqliteConnection,
    user_id: UserId,
    session: &NewSession,
) -> Result<(), WriteError> {
    sqlx::query(
        "INSERT INTO sessions (token_hash, user_id, id, address, user_agent) \
         VALUES (?, ?, lower(hex(randomblob(8))), ?, ?)",
    )
    .bind(&session.token_hash)
    .bind(user_id)
    .bind(&session.address)
    .bind(&session.user_agent)
    .execute(conn)
    .await
    .map_err(conflict("session"))?;
    Ok(())
}

/// Ends `user`'s session with the public id `id`; returns its token hash, if there was one.
pub async fn delete_session_by_id(
    conn: &mut SqliteConnection,
    user_id: UserId,
    id: &str,
) -> Result<Option<Vec<u8>>, WriteError> {
    Ok(
        sqlx::query_scalar("DELETE FROM sessions WHERE user_id = ? AND id = ? RETURNING token_hash")
            .bind(user_id)
            .bind(id)
            .fetch_optional(conn)
            .await?,
    )
}

/// Ends every session of `user` but the one whose token hash is `keep`; returns their token
/// hashes.
pub async fn delete_other_sessions(
    conn: &mut SqliteConnection,
    user_id: UserId,
    keep: &[u8],
) -> Result<Vec<Vec<u8>>, WriteError> {
    Ok(
        sqlx::query_scalar("DELETE FROM sessions WHERE user_id = ? AND token_hash <> ? RETURNING token_hash")
            .bind(user_id)
            .bind(keep)
            .fetch_all(conn)
            .await?,
    )
}

/// Sets `user`'s role and whether they are active, refusing (`Conflict("the last admin")`)
/// a change that would leave the server without an active admin. A deactivated user's
/// sessions are deleted; their token hashes are returned.
pub async fn update_account(
    conn: &mut SqliteConnection,
    user_id: UserId,
    role: Option<Role>,
    active: Option<bool>,
) -> Result<Vec<Vec<u8>>, WriteError> {
    let (current_role, current_active): (String, bool) = sqlx::query_as("SELECT role, active FROM users WHERE id = ?")
        .bind(user_id)
        .fetch_one(&mut *conn)
        .await?;
    let was_admin = Role::from_stored(&current_role) == Role::Admin && current_active;
    let role = role.unwrap_or(Role::from_stored(&current_role));
    let active = active.unwrap_or(current_active);
    if was_admin && (role != Role::Admin || !active) {
        let others: i64 =
            sqlx::query_scalar("SELECT count(*) FROM users WHERE role = 'admin' AND active = 1 AND id <> ?")
                .bind(user_id)
                .fetch_one(&mut *conn)
                .await?;
        if others == 0 {
            return Err(WriteError::Conflict("the last admin"));
        }
    }
    sqlx::query("UPDATE users SET role = ?, active = ? WHERE id = ?")
        .bind(role.as_str())
        .bind(active)
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    if active {
        return Ok(Vec::new());
    }
    Ok(
        sqlx::query_scalar("DELETE FROM sessions WHERE user_id = ? RETURNING token_hash")
            .bind(user_id)
            .fetch_all(conn)
            .await?,
    )
}

/// The id of the account called `username` (in any case), if there is one.
pub async fn find_user(conn: &mut SqliteConnection, username: &str) -> Result<Option<UserId>, WriteError> {
    Ok(sqlx::query_scalar("SELECT id FROM users WHERE username = ?")
        .bind(username)
        .fetch_optional(conn)
        .await?)
}

/// Makes `user` an active admin.
pub async fn promote(conn: &mut SqliteConnection, user_id: UserId) -> Result<(), WriteError> {
    sqlx::query("UPDATE users SET role = 'admin', active = 1 WHERE id = ?")
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn role_of(conn: &mut SqliteConnection, user_id: UserId) -> Result<String, WriteError> {
    Ok(sqlx::query_scalar("SELECT role FROM users WHERE id = ?")
        .bind(user_id)
        .fetch_one(conn)
        .await?)
}

/// Ends every session of `user`; returns how many there were.
pub async fn delete_sessions_of(conn: &mut SqliteConnection, user_id: UserId) -> Result<u64, WriteError> {
    Ok(sqlx::query("DELETE FROM sessions WHERE user_id = ?")
        .bind(user_id)
        .execute(conn)
        .await?
        .rows_affected())
}

pub async fn update_password(
    conn: &mut SqliteConnection,
    user_id: UserId,
    password_hash: &str,
) -> Result<(), WriteError> {
    sqlx::query("UPDATE users SET password_hash = ? WHERE id = ?")
        .bind(password_hash)
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Whether there was such a session.
pub async fn delete_session(conn: &mut SqliteConnection, token_hash: &[u8]) -> Result<bool, WriteError> {
    let deleted = sqlx::query("DELETE FROM sessions WHERE token_hash = ?")
        .bind(token_hash)
        .execute(conn)
        .await?
        .rows_affected();
    Ok(deleted > 0)
}

/// Records that a session was used, and from where, which pushes back its expiry.
pub async fn touch_session(
    conn: &mut SqliteConnection,
    token_hash: &[u8],
    address: Option<&str>,
) -> Result<(), WriteError> {
    sqlx::query(
        "UPDATE sessions SET last_seen_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), \
         address = coalesce(?, address) WHERE token_hash = ?",
    )
    .bind(address)
    .bind(token_hash)
    .execute(conn)
    .await?;
    Ok(())
}

/// Removes sessions unused for longer than `idle` or older than `lifetime`; returns how many.
pub async fn delete_expired_sessions(
    conn: &mut SqliteConnection,
    idle: Duration,
    lifetime: Duration,
) -> Result<u64, WriteError> {
    Ok(sqlx::query(
        "DELETE FROM sessions WHERE last_seen_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?) \
         OR created_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?)",
    )
    .bind(format!("-{} seconds", idle.as_secs()))
    .bind(format!("-{} seconds", lifetime.as_secs()))
    .execute(conn)
    .await?
    .rows_affected())
}

/// Makes a room. `Conflict("room")` if the name is taken, `Conflict("direct")` if the direct
/// room of that set of people exists.
pub async fn insert_room(
    conn: &mut SqliteConnection,
    name: &str,
    kind: RoomKind,
    topic: Option<&str>,
    direct_key: Option<&str>,
    created_by: UserId,
) -> Result<RoomId, WriteError> {
    sqlx::query_scalar(
        "INSERT INTO rooms (name, kind, topic, direct_key, created_by) VALUES (?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(name)
    .bind(kind.as_str())
    .bind(topic)
    .bind(direct_key)
    .bind(created_by)
    .fetch_one(conn)
    .await
    .map_err(|error| match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() && db.message().contains("direct_key") => {
            WriteError::Conflict("direct")
        }
        _ => conflict("room")(error),
    })
}

/// A room's state as its `room` events store it in `body`: `{"topic","archived"}`, and a
/// direct room's people.
pub fn room_state(topic: Option<&str>, archived: bool, members: &[String]) -> String {
    let mut state = serde_json::json!({ "topic": topic, "archived": archived });
    if !members.is_empty() {
        state["members"] = serde_json::json!(members);
    }
    state.to_string()
}

/// Appends the `room` event of a room's state now; returns its id and time.
pub async fn insert_room_event(
    conn: &mut SqliteConnection,
    room: RoomId,
    by: UserId,
    topic: Option<&str>,
    archived: bool,
    members: &[String],
) -> Result<(EventId, String), WriteError> {
    let state = room_state(topic, archived, members);
    insert_event(conn, "room", Scope::Room(room), Some(room), by, Some(&state)).await
}

/// Sets a room's topic and whether it is archived.
pub async fn update_room(
    conn: &mut SqliteConnection,
    room: RoomId,
    topic: Option<&str>,
    archived: bool,
) -> Result<(), WriteError> {
    sqlx::query("UPDATE rooms SET topic = ?, archived = ? WHERE id = ?")
        .bind(topic)
        .bind(archived)
        .bind(room)
        .execute(conn)
        .await?;
    Ok(())
}

/// A room's topic and whether it is archived, as the writer sees them now.
pub async fn room_now(conn: &mut SqliteConnection, room: RoomId) -> Result<(Option<String>, bool), WriteError> {
    Ok(sqlx::query_as("SELECT topic, archived FROM rooms WHERE id = ?")
        .bind(room)
        .fetch_one(conn)
        .await?)
}

/// Whether `user` is a member of the members-only `room` now.
pub async fn is_member(conn: &mut SqliteConnection, room: RoomId, user: UserId) -> Result<bool, WriteError> {
    let member: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM room_access WHERE room_id = ? AND user_id = ? AND until_id IS NULL")
            .bind(room)
            .bind(user)
            .fetch_optional(conn)
            .await?;
    Ok(member.is_some())
}

/// Appends a `member` event: `by` let `member` in (`joined`) or took them out.
pub async fn insert_member_event(
    conn: &mut SqliteConnection,
    room: RoomId,
    by: UserId,
    member: UserId,
    joined: bool,
) -> Result<(EventId, String), WriteError> {
    Ok(sqlx::query_as(
        "INSERT INTO events (kind, scope, room_id, user_id, subject_id, body) \
         VALUES ('member', 'room', ?, ?, ?, ?) RETURNING id, created_at",
    )
    .bind(room)
    .bind(by)
    .bind(member)
    .bind(if joined { "joined" } else { "left" })
    .fetch_one(conn)
    .await?)
}

/// `user` reads `room` from the event `from` on.
pub async fn open_access(
    conn: &mut SqliteConnection,
    room: RoomId,
    user: UserId,
    from: EventId,
) -> Result<(), WriteError> {
    sqlx::query("INSERT INTO room_access (room_id, user_id, from_id) VALUES (?, ?, ?)")
        .bind(room)
        .bind(user)
        .bind(from)
        .execute(conn)
        .await
        .map_err(conflict("member"))?;
    Ok(())
}

/// `user`'s access to `room` ends with the event `until`, the last of it they see.
pub async fn close_access(
    conn: &mut SqliteConnection,
    room: RoomId,
    user: UserId,
    until: EventId,
) -> Result<(), WriteError> {
    sqlx::query("UPDATE room_access SET until_id = ? WHERE room_id = ? AND user_id = ? AND until_id IS NULL")
        .bind(until)
        .bind(room)
        .bind(user)
        .execute(conn)
        .await?;
    Ok(())
}

/// Appends an event with no text of its own (a `room` event); returns its id and time.
pub async fn insert_event(
    conn: &mut SqliteConnection,
    kind: &'static str,
    scope: Scope,
    room_id: Option<RoomId>,
    user_id: UserId,
    body: Option<&str>,
) -> Result<(EventId, String), WriteError> {
    Ok(sqlx::query_as(
        "INSERT INTO events (kind, scope, room_id, user_id, body) VALUES (?, ?, ?, ?, ?) RETURNING id, created_at",
    )
    .bind(kind)
    .bind(scope.as_str())
    .bind(room_id)
    .bind(user_id)
    .bind(body)
    .fetch_one(conn)
    .await?)
}

/// Stores a status change; `chosen` also makes it the status the user keeps.
pub async fn insert_status(
    conn: &mut SqliteConnection,
    user_id: UserId,
    status: Status,
    chosen: bool,
) -> Result<(EventId, String), WriteError> {
    if chosen {
        sqlx::query("UPDATE users SET status_choice = ? WHERE id = ?")
            .bind(status.as_str())
            .bind(user_id)
            .execute(&mut *conn)
            .await?;
    }
    insert_event(conn, "status", Scope::Everyone, None, user_id, Some(status.as_str())).await
}

/// Most messages one `INSERT` stores.
const MAX_POSTS_PER_INSERT: usize = 256;

/// `INSERT`s of 1, 2, 4 … `MAX_POSTS_PER_INSERT` messages: any number of messages is stored
/// with a few of these, and each stays prepared on the connection.
static INSERT_POSTS: LazyLock<Vec<String>> = LazyLock::new(|| {
    (0..=MAX_POSTS_PER_INSERT.ilog2())
        .map(|power| {
            let rows = vec!["('message', 'room', ?, ?, ?, ?, ?)"; 1 << power].join(", ");
            format!(
                "INSERT INTO events (kind, scope, room_id, user_id, body, client_id, reply_to) VALUES {rows} \
                 ON CONFLICT (user_id, client_id) WHERE client_id IS NOT NULL DO NOTHING \
                 RETURNING id, created_at, user_id, client_id"
            )
        })
        .collect()
});

/// A message as stored: its id and time, and whether this post stored it (`false`: its
/// `client_id` was sent before, and this is the message stored then).
#[derive(Debug, Clone)]
pub struct Stored {
    pub id: EventId,
    pub created_at: String,
    pub new: bool,
}

/// Stores `posts` in order, with as few statements as their count allows, and returns each
/// one's outcome. A message whose `client_id` its user has already sent is not stored again:
/// its outcome is the stored message, or `Conflict("client_id")` if that one says something
/// else. The outer `Err` is a failure that spoils the batch.
pub async fn insert_posts(
    conn: &mut SqliteConnection,
    posts: &[&Post],
) -> Result<Vec<Result<Stored, WriteError>>, WriteError> {
    // A post whose `client_id` was sent before, earlier or earlier in this batch, is answered
    // without an `INSERT`: SQLite's AUTOINCREMENT uses up an id for a row `ON CONFLICT DO
    // NOTHING` skips, so a client retrying would leave gaps in the log.
    let mut answered: Vec<Option<Result<Stored, WriteError>>> = Vec::with_capacity(posts.len());
    // The first post of each (user, client_id) in the batch, and whether it was stored before.
    let mut first_of: HashMap<(UserId, &str), (usize, bool)> = HashMap::new();
    // Each repeat of a post this batch stores: its index, and the index of the post it repeats.
    let mut again: HashMap<usize, usize> = HashMap::new();
    let mut fresh: Vec<&Post> = Vec::with_capacity(posts.len());
    for (at, post) in posts.iter().enumerate() {
        let known = match post.client_id() {
            None => None,
            Some(client_id) => match first_of.entry((post.user_id, client_id)) {
                // Stored before the batch: every post of it is judged by the stored message,
                // whichever of them came first.
                Entry::Occupied(first) if first.get().1 => sent_before(conn, post).await?,
                Entry::Occupied(first) => {
                    again.insert(at, first.get().0);
                    answered.push(None);
                    continue;
                }
                Entry::Vacant(slot) => {
                    let known = sent_before(conn, post).await?;
                    slot.insert((at, known.is_some()));
                    known
                }
            },
        };
        if known.is_none() {
            fresh.push(post);
        }
        answered.push(known);
    }
    let mut stored = insert_fresh_posts(conn, &fresh).await?.into_iter();
    let mut outcomes: Vec<Result<Stored, WriteError>> = Vec::with_capacity(posts.len());
    for (at, known) in answered.into_iter().enumerate() {
        let outcome = match (known, again.get(&at)) {
            (Some(outcome), _) => outcome,
            // A repeat within the batch is what became of the post it repeats, sent again.
            (None, Some(&first)) => match &outcomes[first] {
                Ok(stored)
                    if posts[at].room_id == posts[first].room_id && posts[at].content == posts[first].content =>
                {
                    Ok(Stored {
                        new: false,
                        ..stored.clone()
                    })
                }
                _ => Err(WriteError::Conflict("client_id")),
            },
            (None, None) => stored
                .next()
                .ok_or_else(|| WriteError::Database("a post went unstored".into()))?,
        };
        outcomes.push(outcome);
    }
    let new: Vec<EventId> = outcomes
        .iter()
        .filter_map(|outcome| {
            outcome
                .as_ref()
                .ok()
                .filter(|stored| stored.new)
                .map(|stored| stored.id)
        })
        .collect();
    index_messages(conn, &new).await?;
    Ok(outcomes)
}

/// A message's text as the search index keeps it: U+0002 and U+0003, which mark matches in
/// snippets, as spaces (see `migrations/sqlite/0010_search.sql`).
macro_rules! search_text {
    ($text:literal) => {
        concat!("replace(replace(", $text, ", char(2), ' '), char(3), ' ')")
    };
}

/// Adds the messages `ids` to the search index, all in one statement (their text is read
/// from their rows): a batch of posts costs one round trip more, not one a message.
pub async fn index_messages(conn: &mut SqliteConnection, ids: &[EventId]) -> Result<(), WriteError> {
    if ids.is_empty() {
        return Ok(());
    }
    let list = serde_json::to_string(ids).map_err(|error| WriteError::Database(error.to_string()))?;
    sqlx::query(concat!(
        "INSERT INTO message_search (rowid, text) SELECT id, ",
        search_text!("body"),
        " FROM events WHERE id IN (SELECT value FROM json_each(?)) AND kind = 'message' AND body IS NOT NULL"
    ))
    .bind(list)
    .execute(conn)
    .await?;
    Ok(())
}

/// Replaces what the search index holds of `message` with `text`, its new version: its old
/// words no longer find it (and, with `secure-delete`, are gone from the index).
pub async fn reindex_message(conn: &mut SqliteConnection, message: EventId, text: &str) -> Result<(), WriteError> {
    // Delete and insert rather than `UPDATE`: a message missing from the index gets its row.
    sqlx::query("DELETE FROM message_search WHERE rowid = ?")
        .bind(message)
        .execute(&mut *conn)
        .await?;
    sqlx::query(concat!(
        "INSERT INTO message_search (rowid, text) VALUES (?, ",
        search_text!("?"),
        ")"
    ))
    .bind(message)
    .bind(text)
    .execute(conn)
    .await?;
    Ok(())
}

/// Stores `posts`, none of them sent before, as `insert_posts` describes.
async fn insert_fresh_posts(
    conn: &mut SqliteConnection,
    posts: &[&Post],
) -> Result<Vec<Result<Stored, WriteError>>, WriteError> {
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
                .bind(post.client_id())
                .bind(post.reply_to);
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
                Some((id, created_at, ..)) => Ok(Stored {
                    id,
                    created_at,
                    new: true,
                }),
                // Sent before after all: the pre-check in `insert_posts` makes this rare.
                None => sent_before(conn, post)
                    .await?
                    .ok_or_else(|| WriteError::Database("a post was neither stored nor found".into()))?,
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

/// What became of the message `post`'s user stored earlier with its `client_id`: that
/// message if it is the same one, `Conflict` if it says something else; `None` if there is
/// none.
pub async fn sent_before(
    conn: &mut SqliteConnection,
    post: &Post,
) -> Result<Option<Result<Stored, WriteError>>, WriteError> {
    let Some((id, created_at, room_id, content)): Option<(EventId, String, Option<RoomId>, Option<String>)> =
        sqlx::query_as(
            "SELECT id, created_at, room_id, body FROM events WHERE user_id = ? AND client_id = ? AND kind = 'message'",
        )
        .bind(post.user_id)
        .bind(post.client_id())
        .fetch_optional(conn)
        .await?
    else {
        return Ok(None);
    };
    if room_id != Some(post.room_id) || content.as_deref() != Some(post.content.as_str()) {
        return Ok(Some(Err(WriteError::Conflict("client_id"))));
    }
    Ok(Some(Ok(Stored {
        id,
        created_at,
        new: false,
    })))
}

/// An invite's columns as `Invite` reads them, for `SELECT … FROM invites AS i`.
pub(crate) const INVITE_COLUMNS: &str = "i.code, i.uses, i.uses_left, i.expires_at, i.created_at, \
     u.username AS created_by, i.revoked, i.expires_at <= strftime('%Y-%m-%dT%H:%M:%fZ', 'now') AS expired \
     FROM invites AS i LEFT JOIN users AS u ON u.id = i.created_by";

/// The invite with this code, live or not.
pub async fn find_invite(conn: &mut SqliteConnection, code: &str) -> Result<Option<Invite>, WriteError> {
    Ok(
        sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {INVITE_COLUMNS} WHERE i.code = ?")))
            .bind(code)
            .fetch_optional(conn)
            .await?,
    )
}

/// Makes an account if `join.admission` lets it in (the server's first account needs nothing)
/// and starts its session; an invite's use is taken with it. Refuses with `Joined::Refused`,
/// having changed nothing, or with `insert_user`'s conflicts, having perhaps taken a use: the
/// caller undoes the whole join then.
pub async fn join(conn: &mut SqliteConnection, join: &Join) -> Result<Joined, WriteError> {
    let first: bool = sqlx::query_scalar("SELECT NOT EXISTS (SELECT 1 FROM users)")
        .fetch_one(&mut *conn)
        .await?;
    let mut invite = None;
    if !first {
        match &join.admission {
            Admission::Open => {}
            Admission::Closed => return Ok(Joined::Refused(NotAdmitted::Closed)),
            Admission::Invite(None) => return Ok(Joined::Refused(NotAdmitted::NoInvite)),
            Admission::Invite(Some(code)) => {
                let taken: Option<String> = sqlx::query_scalar(
                    "UPDATE invites SET uses_left = uses_left - 1 \
                     WHERE code = ? AND revoked = 0 AND uses_left > 0 \
                       AND expires_at > strftime('%Y-%m-%dT%H:%M:%fZ', 'now') RETURNING code",
                )
                .bind(code.as_str())
                .fetch_optional(&mut *conn)
                .await?;
                if taken.is_none() {
                    let why = find_invite(conn, code.as_str())
                        .await?
                        .map_or(Some(NotAdmitted::UnknownInvite), |found| found.refusal());
                    return Ok(Joined::Refused(why.unwrap_or(NotAdmitted::UsedUp)));
                }
                invite = taken;
            }
        }
    }
    let user = insert_user(conn, &join.username, &join.password_hash).await?;
    if let Some(session) = &join.session {
        insert_session(conn, user, session).await?;
    }
    if let Some(code) = invite {
        sqlx::query("UPDATE users SET invite = ? WHERE id = ?")
            .bind(code)
            .bind(user)
            .execute(&mut *conn)
            .await?;
    }
    let role = role_of(conn, user).await?;
    Ok(Joined::Made {
        user,
        role: Role::from_stored(&role),
    })
}

/// Stores a new invite, refusing (`Conflict("live invites")`) past `invite.max_live` live ones.
pub async fn insert_invite(conn: &mut SqliteConnection, invite: &NewInvite) -> Result<Invite, WriteError> {
    let live: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM invites WHERE revoked = 0 AND uses_left > 0 \
         AND expires_at > strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
    )
    .fetch_one(&mut *conn)
    .await?;
    if live >= i64::from(invite.max_live) {
        return Err(WriteError::Conflict("live invites"));
    }
    sqlx::query(
        "INSERT INTO invites (code, uses, uses_left, expires_at, created_by) \
         VALUES (?, ?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?), ?)",
    )
    .bind(&invite.code)
    .bind(invite.terms.uses)
    .bind(invite.terms.uses)
    .bind(format!("+{} hours", invite.terms.hours))
    .bind(invite.created_by)
    .execute(&mut *conn)
    .await
    .map_err(conflict("invite code"))?;
    find_invite(conn, &invite.code)
        .await?
        .ok_or_else(|| WriteError::Database("a new invite went missing".into()))
}

/// Revokes the invite with this code (again, if it already was); whether there is one.
pub async fn revoke_invite(conn: &mut SqliteConnection, code: &str) -> Result<bool, WriteError> {
    let revoked = sqlx::query("UPDATE invites SET revoked = 1 WHERE code = ?")
        .bind(code)
        .execute(conn)
        .await?
        .rows_affected();
    Ok(revoked > 0)
}

/// Records whom a message, or one version of it (`event`: the message or an edit), mentions.
pub async fn insert_mentions(
    conn: &mut SqliteConnection,
    event: EventId,
    mentions: &[(UserId, String)],
) -> Result<(), WriteError> {
    let rows: Vec<(EventId, UserId)> = mentions.iter().map(|(user, _)| (event, *user)).collect();
    insert_mention_rows(conn, &rows).await
}

/// Records `(event, user)` mentions, all in one statement: a batch of posts mentioning people
/// costs one round trip more, not one a mention.
pub async fn insert_mention_rows(conn: &mut SqliteConnection, rows: &[(EventId, UserId)]) -> Result<(), WriteError> {
    if rows.is_empty() {
        return Ok(());
    }
    let pairs: Vec<[i64; 2]> = rows.iter().map(|(event, user)| [event.get(), user.get()]).collect();
    let pairs = serde_json::to_string(&pairs).map_err(|error| WriteError::Database(error.to_string()))?;
    sqlx::query(
        "INSERT OR IGNORE INTO mentions (event_id, user_id) \
         SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?)",
    )
    .bind(pairs)
    .execute(conn)
    .await?;
    Ok(())
}

/// A message as a change to it finds it: in `room`, not deleted; its author and its current
/// text. `None` if there is no such message (any more).
pub async fn live_message(
    conn: &mut SqliteConnection,
    message: EventId,
    room: RoomId,
) -> Result<Option<(String, String)>, WriteError> {
    Ok(sqlx::query_as(
        "SELECT u.username, coalesce((SELECT x.body FROM events AS x WHERE x.kind = 'edit' AND x.message_id = e.id \
                                      ORDER BY x.id DESC LIMIT 1), e.body) \
         FROM events AS e JOIN users AS u ON u.id = e.user_id \
         WHERE e.id = ? AND e.room_id = ? AND e.kind = 'message' AND e.body IS NOT NULL",
    )
    .bind(message)
    .bind(room)
    .fetch_optional(conn)
    .await?)
}

/// Appends a change to a message (`edit`, `delete` or `reaction`); returns its id and time.
pub async fn insert_change(
    conn: &mut SqliteConnection,
    kind: &'static str,
    room: RoomId,
    by: UserId,
    message: EventId,
    body: Option<&str>,
) -> Result<(EventId, String), WriteError> {
    Ok(sqlx::query_as(
        "INSERT INTO events (kind, scope, room_id, user_id, message_id, body) VALUES (?, 'room', ?, ?, ?, ?) \
         RETURNING id, created_at",
    )
    .bind(kind)
    .bind(room)
    .bind(by)
    .bind(message)
    .bind(body)
    .fetch_one(conn)
    .await?)
}

/// Erases a message: its text, every earlier version of it and its reactions' records (the
/// rows stay, for their ids), its reactions, whom it mentioned and its entry in the search
/// index. With `secure_delete` on (and the index's `secure-delete`), the freed bytes are
/// overwritten in the pages; the WAL's copies go at the next truncating checkpoint.
pub async fn erase_message(conn: &mut SqliteConnection, message: EventId) -> Result<(), WriteError> {
    sqlx::query("DELETE FROM message_search WHERE rowid = ?")
        .bind(message)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "DELETE FROM mentions WHERE event_id = ?1 \
            OR event_id IN (SELECT id FROM events WHERE kind = 'edit' AND message_id = ?1)",
    )
    .bind(message)
    .execute(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM reactions WHERE message_id = ?")
        .bind(message)
        .execute(&mut *conn)
        .await?;
    // Each of the three by its own index: an `OR` of them read the whole log.
    sqlx::query(
        "UPDATE events SET body = NULL WHERE id IN ( \
           SELECT ?1 \
           UNION ALL SELECT id FROM events WHERE kind = 'edit' AND message_id = ?1 \
           UNION ALL SELECT id FROM events WHERE kind = 'reaction' AND message_id = ?1)",
    )
    .bind(message)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A live message, as retention deletes it: where it is and whose it is.
#[derive(Debug, sqlx::FromRow)]
pub struct LiveMessage {
    pub room_id: RoomId,
    pub room: String,
    pub user_id: UserId,
    pub username: String,
}

/// The message `id` if it is there and not deleted.
pub async fn live_message_of(conn: &mut SqliteConnection, id: EventId) -> Result<Option<LiveMessage>, WriteError> {
    Ok(sqlx::query_as(
        "SELECT e.room_id, r.name AS room, e.user_id, u.username FROM events AS e \
         JOIN rooms AS r ON r.id = e.room_id JOIN users AS u ON u.id = e.user_id \
         WHERE e.id = ? AND e.kind = 'message' AND e.body IS NOT NULL",
    )
    .bind(id)
    .fetch_optional(conn)
    .await?)
}

/// Moves the retention horizon past `expired`: the log before it is no longer whole.
pub async fn keep_from(conn: &mut SqliteConnection, expired: EventId) -> Result<(), WriteError> {
    sqlx::query(
        "INSERT INTO retention (id, kept_from) VALUES (1, ?1 + 1) \
         ON CONFLICT (id) DO UPDATE SET kept_from = max(kept_from, excluded.kept_from)",
    )
    .bind(expired)
    .execute(conn)
    .await?;
    Ok(())
}

/// One emoji's reactions to a message as a reaction finds them.
#[derive(Debug, sqlx::FromRow)]
pub struct ReactionNow {
    /// The user reacted with it.
    pub mine: bool,
    /// Someone did.
    pub used: bool,
    /// How many different emoji the message has.
    pub kinds: i64,
}

pub async fn reaction_now(
    conn: &mut SqliteConnection,
    message: EventId,
    emoji: &str,
    user: UserId,
) -> Result<ReactionNow, WriteError> {
    Ok(sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM reactions WHERE message_id = ?1 AND emoji = ?2 AND user_id = ?3) AS mine, \
                EXISTS (SELECT 1 FROM reactions WHERE message_id = ?1 AND emoji = ?2) AS used, \
                (SELECT count(DISTINCT emoji) FROM reactions WHERE message_id = ?1) AS kinds",
    )
    .bind(message)
    .bind(emoji)
    .bind(user)
    .fetch_one(conn)
    .await?)
}

/// Adds or removes one reaction, recorded by the event `event`.
pub async fn set_reaction(
    conn: &mut SqliteConnection,
    message: EventId,
    emoji: &str,
    user: UserId,
    event: EventId,
    add: bool,
) -> Result<(), WriteError> {
    let sql = if add {
        "INSERT INTO reactions (message_id, emoji, user_id, event_id) VALUES (?, ?, ?, ?)"
    } else {
        "DELETE FROM reactions WHERE message_id = ? AND emoji = ? AND user_id = ? AND ? IS NOT NULL"
    };
    sqlx::query(sql)
        .bind(message)
        .bind(emoji)
        .bind(user)
        .bind(event)
        .execute(conn)
        .await?;
    Ok(())
}

/// A message's reactions now: each emoji in order of its first use, and who reacted with it,
/// in order.
pub async fn reactions_of(conn: &mut SqliteConnection, message: EventId) -> Result<Vec<Reactions>, WriteError> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT r.emoji, u.username FROM reactions AS r JOIN users AS u ON u.id = r.user_id \
         WHERE r.message_id = ? ORDER BY r.event_id",
    )
    .bind(message)
    .fetch_all(conn)
    .await?;
    Ok(group_reactions(rows))
}

/// `(emoji, username)` pairs in reaction order, grouped by emoji in order of first use.
pub fn group_reactions(rows: impl IntoIterator<Item = (String, String)>) -> Vec<Reactions> {
    let mut grouped: Vec<Reactions> = Vec::new();
    for (emoji, username) in rows {
        match grouped.iter_mut().find(|r| r.emoji == emoji) {
            Some(reactions) => reactions.usernames.push(username),
            None => grouped.push(Reactions {
                emoji,
                usernames: vec![username],
            }),
        }
    }
    grouped
}

/// A reaction event's `body`.
pub fn reaction_body(emoji: &str, added: bool) -> String {
    serde_json::json!({ "emoji": emoji, "added": added }).to_string()
}

/// Marks the messages or edits `events` as saying `@here` or `@room`, in one statement.
pub async fn mark_room_mentions(conn: &mut SqliteConnection, events: &[EventId]) -> Result<(), WriteError> {
    if events.is_empty() {
        return Ok(());
    }
    let ids = serde_json::to_string(events).map_err(|error| WriteError::Database(error.to_string()))?;
    sqlx::query("UPDATE events SET mentions_room = 1 WHERE id IN (SELECT value FROM json_each(?))")
        .bind(ids)
        .execute(conn)
        .await?;
    Ok(())
}

/// Moves each of `marks` in order: a user's cursor in a room goes forward to `up_to`, never
/// back, and each move is a `read` event on the user's scope (its id and time, in `marks`'
/// order; `None` where the cursor was already there). A mark for a members-only room the user
/// is no longer in is refused as `Gone`. However many marks, this is three statements: busy
/// rooms bring every member's marks at once, and a round trip to SQLite's thread costs more
/// than storing one.
pub async fn move_read_cursors(
    conn: &mut SqliteConnection,
    marks: &[&ReadMark],
) -> Result<Vec<Result<Option<(EventId, String)>, WriteError>>, WriteError> {
    if marks.is_empty() {
        return Ok(Vec::new());
    }
    let json = |value: serde_json::Value| value.to_string();
    let asked = json(
        marks
            .iter()
            .map(|mark| serde_json::json!([mark.user_id, mark.room_id]))
            .collect(),
    );
    // Where each cursor is (as `unread` counts it: from sign-up, and from joining the room), and
    // whether the user is a member now.
    let now: Vec<(i64, i64, bool)> = sqlx::query_as(
        "SELECT j.key, \
                max(coalesce((SELECT up_to FROM reads WHERE user_id = j.value->>0 AND room_id = j.value->>1), 0), \
                    coalesce((SELECT read_from FROM users WHERE id = j.value->>0), 0), \
                    coalesce((SELECT max(from_id) FROM room_access \
                              WHERE user_id = j.value->>0 AND room_id = j.value->>1), 0)), \
                EXISTS (SELECT 1 FROM room_access \
                        WHERE room_id = j.value->>1 AND user_id = j.value->>0 AND until_id IS NULL) \
         FROM json_each(?) AS j ORDER BY j.key",
    )
    .bind(asked)
    .fetch_all(&mut *conn)
    .await?;
    if now.len() != marks.len() {
        return Err(WriteError::Database("a read cursor went unread".into()));
    }
    // Later marks of the same cursor in this batch start where the earlier ones left it.
    let mut moved: HashMap<(UserId, RoomId), i64> = HashMap::new();
    let mut outcomes: Vec<Option<Result<(), WriteError>>> = Vec::with_capacity(marks.len());
    let mut moves = Vec::new();
    for (mark, (_, read, member)) in marks.iter().zip(now) {
        if mark.members_only && !member {
            outcomes.push(Some(Err(WriteError::Gone("room"))));
            continue;
        }
        let read = moved.entry((mark.user_id, mark.room_id)).or_insert(read);
        if mark.up_to.get() <= *read {
            outcomes.push(Some(Ok(())));
            continue;
        }
        *read = mark.up_to.get();
        outcomes.push(None);
        moves.push(serde_json::json!([mark.user_id, mark.room_id, mark.up_to]));
    }
    if moves.is_empty() {
        return Ok(outcomes
            .into_iter()
            .map(|outcome| outcome.unwrap_or(Ok(())).map(|()| None))
            .collect());
    }
    let moves = json(serde_json::Value::Array(moves));
    sqlx::query(
        "INSERT INTO reads (user_id, room_id, up_to) \
         SELECT j.value->>0, j.value->>1, j.value->>2 FROM json_each(?1) AS j WHERE true ORDER BY j.key \
         ON CONFLICT (user_id, room_id) DO UPDATE SET up_to = excluded.up_to",
    )
    .bind(&moves)
    .execute(&mut *conn)
    .await?;
    let mut events: Vec<(EventId, String)> = sqlx::query_as(
        "INSERT INTO events (kind, scope, room_id, user_id, body) \
         SELECT 'read', 'user', j.value->>1, j.value->>0, j.value->>2 FROM json_each(?1) AS j \
         WHERE true ORDER BY j.key \
         RETURNING id, created_at",
    )
    .bind(&moves)
    .fetch_all(&mut *conn)
    .await?;
    // Inserted in the order given, so ids follow it; `RETURNING` does not promise that order.
    events.sort_unstable_by_key(|(id, _)| *id);
    let mut events = events.into_iter();
    outcomes
        .into_iter()
        .map(|outcome| match outcome {
            Some(outcome) => Ok(outcome.map(|()| None)),
            None => events
                .next()
                .map(|event| Ok(Some(event)))
                .ok_or_else(|| WriteError::Database("a read event went unstored".into())),
        })
        .collect::<Result<Vec<_>, WriteError>>()
}

/// Sets how loudly `room` may call for `user`.
pub async fn set_notify(
    conn: &mut SqliteConnection,
    user: UserId,
    room: RoomId,
    level: NotifyLevel,
) -> Result<(), WriteError> {
    sqlx::query(
        "INSERT INTO reads (user_id, room_id, notify) VALUES (?1, ?2, ?3) \
         ON CONFLICT (user_id, room_id) DO UPDATE SET notify = excluded.notify",
    )
    .bind(user)
    .bind(room)
    .bind(level.as_str())
    .execute(conn)
    .await?;
    Ok(())
}
