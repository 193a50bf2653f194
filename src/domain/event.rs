//! The event: the one thing the log stores. Everything that happens is an event with an id, a
//! kind, and a scope that says who may see it.

use super::{EventId, RoomId, Status, UserId};

/// Who may see an event. The writer publishes each event to its scope after commit; a stream
/// replays from the database exactly the events whose scope it may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Those who can read the room at that point of the log: every account for a public room,
    /// its members for a private or direct one (`Membership`).
    Room(RoomId),
    /// One user alone, on all their devices.
    User(UserId),
    Everyone,
}

impl Scope {
    /// As `events.scope` stores it; the room or user it names is the row's `room_id` or
    /// `user_id`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Room(_) => "room",
            Self::User(_) => "user",
            Self::Everyone => "everyone",
        }
    }
}

/// What kind of room: who can read it and how its members are decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomKind {
    /// Every account reads it.
    Public,
    /// Its members read it; a member adds someone, the creator or an admin removes, anyone
    /// leaves.
    Private,
    /// A fixed set of people, found by that set; its members never change.
    Direct,
}

impl RoomKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Private => "private",
            Self::Direct => "direct",
        }
    }

    /// As `rooms.kind` stores it; anything else reads as private, which shows it to fewest.
    pub fn from_stored(stored: &str) -> Self {
        match stored {
            "public" => Self::Public,
            "direct" => Self::Direct,
            _ => Self::Private,
        }
    }

    /// Whether only its members read it.
    pub fn members_only(self) -> bool {
        self != Self::Public
    }
}

/// One committed row of the log, with the names it refers to already resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: EventId,
    /// Who did it: the author, the user whose status changed, the room's creator.
    pub user_id: UserId,
    pub username: String,
    /// ISO 8601 UTC with milliseconds, as stored.
    pub created_at: String,
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// Something said in a room: its content exactly as sent (Markdown source) when it is
    /// published; read from the database, its state now (newest text, reactions).
    Message {
        room_id: RoomId,
        room: String,
        content: String,
        /// The message it answers, as that one is now.
        reply_to: Option<Quote>,
        /// Whom the content mentions: account names, as spelled by the accounts.
        mentions: Vec<String>,
        /// Whether it says `@here` or `@room`: it mentions everyone who can read the room.
        mentions_room: bool,
        /// When it was last edited, if ever.
        edited_at: Option<String>,
        /// Its reactions, in order of each one's first use.
        reactions: Vec<Reactions>,
        /// The content as HTML, when the one who made the event rendered it already (off the
        /// writer's task); otherwise it is rendered when it is encoded.
        rendered: Option<String>,
    },
    /// A message's author changed its text.
    Edit {
        room_id: RoomId,
        room: String,
        message_id: EventId,
        content: String,
        mentions: Vec<String>,
        mentions_room: bool,
        rendered: Option<String>,
    },
    /// A message was deleted, by its author or an admin; its text is gone from the database.
    Delete {
        room_id: RoomId,
        room: String,
        message_id: EventId,
    },
    /// Someone added or took back a reaction to a message; `reactions` is every reaction of
    /// the message after it (so that one frame can replace them all in place).
    Reaction {
        room_id: RoomId,
        room: String,
        message_id: EventId,
        emoji: String,
        added: bool,
        reactions: Vec<Reactions>,
    },
    /// A user's status changed; everyone sees it.
    Status { status: Status },
    /// A room was made or changed (its topic, whether it is archived): its state after it.
    Room {
        room_id: RoomId,
        room: String,
        kind: RoomKind,
        topic: Option<String>,
        archived: bool,
        /// A direct room's people, by name (they never change); empty for other rooms.
        members: Vec<String>,
    },
    /// The event's user has read a room up to `up_to`; only they see it, on every device.
    Read {
        room_id: RoomId,
        room: String,
        up_to: EventId,
    },
    /// Someone joined or left a private or direct room; the event's user is who did it (`by`),
    /// which is the member themselves when they leave.
    Member {
        room_id: RoomId,
        room: String,
        member: UserId,
        member_name: String,
        joined: bool,
    },
}

impl EventKind {
    /// A message as just posted: no reply, mention, edit or reaction.
    pub fn said(room_id: RoomId, room: impl Into<String>, content: impl Into<String>) -> Self {
        Self::Message {
            room_id,
            room: room.into(),
            content: content.into(),
            reply_to: None,
            mentions: Vec::new(),
            mentions_room: false,
            edited_at: None,
            reactions: Vec::new(),
            rendered: None,
        }
    }
}

/// A reply's view of the message it answers, as that message is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    pub id: EventId,
    pub username: String,
    /// Its current text; `None` once it is deleted.
    pub content: Option<String>,
}

/// One emoji's reactions to a message: who reacted with it, in the order they did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reactions {
    pub emoji: String,
    pub usernames: Vec<String>,
}

impl Event {
    pub fn scope(&self) -> Scope {
        match &self.kind {
            EventKind::Message { room_id, .. }
            | EventKind::Edit { room_id, .. }
            | EventKind::Delete { room_id, .. }
            | EventKind::Reaction { room_id, .. }
            | EventKind::Room { room_id, .. }
            | EventKind::Member { room_id, .. } => Scope::Room(*room_id),
            EventKind::Read { .. } => Scope::User(self.user_id),
            EventKind::Status { .. } => Scope::Everyone,
        }
    }

    /// The SSE `event:` name, which is also the JSON `type`.
    pub fn name(&self) -> &'static str {
        match self.kind {
            EventKind::Message { .. } => "message",
            EventKind::Edit { .. } => "edit",
            EventKind::Delete { .. } => "delete",
            EventKind::Reaction { .. } => "reaction",
            EventKind::Status { .. } => "status",
            EventKind::Room { .. } => "room",
            EventKind::Member { .. } => "member",
            EventKind::Read { .. } => "read",
        }
    }

    /// The room the event happened in or is about, if any.
    pub fn room(&self) -> Option<&str> {
        match &self.kind {
            EventKind::Message { room, .. }
            | EventKind::Edit { room, .. }
            | EventKind::Delete { room, .. }
            | EventKind::Reaction { room, .. }
            | EventKind::Room { room, .. }
            | EventKind::Member { room, .. }
            | EventKind::Read { room, .. } => Some(room),
            EventKind::Status { .. } => None,
        }
    }
}

impl Event {
    /// Whether this is the event that ends `user`'s access to `room`: the last of that room
    /// they see.
    pub fn removes(&self, room: RoomId, user: UserId) -> bool {
        matches!(
            self.kind,
            EventKind::Member { room_id, member, joined: false, .. } if room_id == room && member == user
        )
    }
}
