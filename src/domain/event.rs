//! The event: the one thing the log stores. Everything that happens is an event with an id, a
//! kind, and a scope that says who may see it.

use super::{EventId, RoomId, Status, UserId};

/// Who may see an event. The writer publishes each event to its scope after commit; a stream
/// replays from the database exactly the events whose scope it may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Those who can read the room (every account, while every room is public).
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
}

impl RoomKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
        }
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
    /// Something said in a room: its content exactly as sent.
    Message {
        room_id: RoomId,
        room: String,
        content: String,
    },
    /// A user's status changed; everyone sees it.
    Status { status: Status },
    /// A room was made (or, later, changed): so every open page learns of it.
    Room {
        room_id: RoomId,
        room: String,
        kind: RoomKind,
        topic: Option<String>,
        archived: bool,
    },
}

impl Event {
    pub fn scope(&self) -> Scope {
        match &self.kind {
            EventKind::Message { room_id, .. } | EventKind::Room { room_id, .. } => Scope::Room(*room_id),
            EventKind::Status { .. } => Scope::Everyone,
        }
    }

    /// The SSE `event:` name, which is also the JSON `type`.
    pub fn name(&self) -> &'static str {
        match self.kind {
            EventKind::Message { .. } => "message",
            EventKind::Status { .. } => "status",
            EventKind::Room { .. } => "room",
        }
    }

    /// The room the event happened in or is about, if any.
    pub fn room(&self) -> Option<&str> {
        match &self.kind {
            EventKind::Message { room, .. } | EventKind::Room { room, .. } => Some(room),
            EventKind::Status { .. } => None,
        }
    }
}
