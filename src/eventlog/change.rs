//! The changes the writer makes, as its callers ask for them, and why one may not happen.

use crate::domain::{ClientId, Event, EventId, EventKind, Quote, RoomId, RoomKind, Status, UserId};
use crate::domain::{InviteCode, InviteTerms, NotAdmitted, Role};

/// Why a write did not happen.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    /// The data refused the request, which changed nothing: a unique value is taken (a
    /// username, a room's name), or a `client_id` names another message. Says what.
    #[error("{0} already taken")]
    Conflict(&'static str),
    /// What the request acts on is not there for its user any more (they left the room, or
    /// were removed, since it was checked). Changed nothing. Says what.
    #[error("{0} not found")]
    Gone(&'static str),
    /// The database refused the batch (disk full, I/O error, locked file).
    #[error("{0}")]
    Database(String),
    /// The writer has stopped: the server is shutting down.
    #[error("the server is shutting down")]
    Stopped,
}

impl From<sqlx::Error> for WriteError {
    fn from(error: sqlx::Error) -> Self {
        Self::Database(error.to_string())
    }
}

/// A session to start, and where it was started from.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub token_hash: Vec<u8>,
    /// The client's address, as text.
    pub address: Option<String>,
    /// The client's `User-Agent`, cut to a sensible length.
    pub user_agent: Option<String>,
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
    /// The room is read by its members only, and only a member may post: checked again by the
    /// writer, in order with every change of members.
    pub members_only: bool,
    /// The message of the same room it answers; the writer refuses the post
    /// (`Gone("message")`) if that one is not there (any more).
    pub reply_to: Option<EventId>,
    /// The accounts it mentions.
    pub mentions: Vec<(UserId, String)>,
    /// It says `@here` or `@room`.
    pub mentions_room: bool,
    /// The content as HTML, rendered by the caller.
    pub rendered: String,
}

impl Post {
    pub fn client_id(&self) -> Option<&str> {
        self.client_id.as_ref().map(ClientId::as_str)
    }

    pub(super) fn into_event(self, id: EventId, created_at: String, reply_to: Option<Quote>) -> Event {
        Event {
            id,
            user_id: self.user_id,
            username: self.username,
            created_at,
            kind: EventKind::Message {
                room_id: self.room_id,
                room: self.room,
                content: self.content,
                reply_to,
                mentions: self.mentions.into_iter().map(|(_, name)| name).collect(),
                mentions_room: self.mentions_room,
                edited_at: None,
                reactions: Vec::new(),
                rendered: Some(self.rendered),
            },
        }
    }
}

/// A message of a room, as a change to it names it: checked again by the writer, which
/// answers `Gone("message")` if it was deleted meanwhile, or its reader can no longer read
/// the room.
#[derive(Debug, Clone)]
pub struct Target {
    pub message_id: EventId,
    pub room_id: RoomId,
    pub room: String,
    pub members_only: bool,
    /// Who changes it.
    pub by: UserId,
    pub by_name: String,
}

/// A message's author changes its text.
#[derive(Debug)]
pub struct Edit {
    pub target: Target,
    pub content: String,
    pub mentions: Vec<(UserId, String)>,
    pub mentions_room: bool,
    pub rendered: String,
}

/// Someone has read a room up to an event. Checked again by the writer: a members-only room
/// only by a member (`Gone("room")`), and a cursor only forwards.
#[derive(Debug, Clone)]
pub struct ReadMark {
    pub user_id: UserId,
    pub username: String,
    pub room_id: RoomId,
    pub room: String,
    pub members_only: bool,
    pub up_to: EventId,
}

/// Someone adds (or takes back) a reaction to a message.
#[derive(Debug)]
pub struct React {
    pub target: Target,
    pub emoji: String,
    pub add: bool,
}

/// A stored message, and whether this request stored it (`false`: an earlier one with the
/// same `client_id` did, and this is that message; it is not published again).
#[derive(Debug, Clone)]
pub struct Posted {
    pub event: Event,
    pub new: bool,
}

/// A status to store.
#[derive(Debug, Clone)]
pub struct StatusChange {
    pub user_id: UserId,
    pub username: String,
    pub status: Status,
    /// The user chose it (rather than presence deciding it): it becomes what they keep.
    pub chosen: bool,
}

/// A room to make: the room, its `room` event, and a `member` event for each first member
/// (a private room's creator; a direct room's people), who read it from the `room` event on.
#[derive(Debug)]
pub struct NewRoom {
    pub name: String,
    pub kind: RoomKind,
    pub topic: Option<String>,
    pub created_by: UserId,
    pub creator: String,
    /// The first members, with their names (none for a public room).
    pub members: Vec<(UserId, String)>,
}

impl NewRoom {
    /// What finds a direct room: its people's ids, ascending, joined by commas.
    pub fn direct_key(&self) -> Option<String> {
        (self.kind == RoomKind::Direct).then(|| {
            let mut ids: Vec<i64> = self.members.iter().map(|(id, _)| id.get()).collect();
            ids.sort_unstable();
            ids.dedup();
            ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
        })
    }
}

/// Someone joins or leaves a private room.
#[derive(Debug)]
pub struct MemberChange {
    pub room_id: RoomId,
    pub room: String,
    /// Who does it; they must be a member (a member adds someone; whoever removes is one).
    pub by: UserId,
    pub by_name: String,
    pub member: UserId,
    pub member_name: String,
    pub join: bool,
}

/// A room's new topic or archived flag, by its creator or an admin.
#[derive(Debug)]
pub struct RoomChange {
    pub room_id: RoomId,
    pub room: String,
    pub kind: RoomKind,
    pub by: UserId,
    pub by_name: String,
    /// `Some(None)` clears the topic.
    pub topic: Option<Option<String>>,
    pub archived: Option<bool>,
}

/// A new account, and what lets it in: checked by the writer in the transaction that makes it,
/// so that the first account, and each use of an invite, goes to exactly one request.
#[derive(Debug)]
pub struct Join {
    pub username: String,
    pub password_hash: String,
    /// Its first session; `None` for an account an admin makes for someone else.
    pub session: Option<NewSession>,
    pub admission: Admission,
}

/// What an account needs to be made, beyond being the server's first (which needs nothing).
#[derive(Debug, Clone)]
pub enum Admission {
    /// Nothing: `--signup open`, or an admin asked.
    Open,
    /// A live invite, whose use it takes; `None`: the client brought none.
    Invite(Option<InviteCode>),
    /// Nobody gets in: `--signup closed`.
    Closed,
}

/// A join's outcome, a name taken aside (`WriteError::Conflict`).
#[derive(Debug, Clone)]
pub enum Joined {
    Made { user: UserId, role: Role },
    Refused(NotAdmitted),
}

/// An invite to make. The code comes from the caller; the expiry is counted from the commit.
#[derive(Debug, Clone)]
pub struct NewInvite {
    pub code: String,
    pub terms: InviteTerms,
    /// The admin who made it; `None`: the operator.
    pub created_by: Option<UserId>,
    /// The most live invites there may be; `Conflict("live invites")` beyond it.
    pub max_live: u32,
}

/// An invite as it is stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Invite {
    pub code: String,
    pub uses: i64,
    pub uses_left: i64,
    pub expires_at: String,
    pub created_at: String,
    /// Who made it; `None`: the operator.
    pub created_by: Option<String>,
    pub revoked: bool,
    /// Its expiry has passed.
    pub expired: bool,
}

impl Invite {
    /// Why it lets nobody in, if it does not.
    pub fn refusal(&self) -> Option<NotAdmitted> {
        if self.revoked {
            Some(NotAdmitted::Revoked)
        } else if self.expired {
            Some(NotAdmitted::Expired)
        } else if self.uses_left <= 0 {
            Some(NotAdmitted::UsedUp)
        } else {
            None
        }
    }
}
