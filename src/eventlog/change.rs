//! The changes the writer makes, as its callers ask for them, and why one may not happen.

use crate::domain::{ClientId, Event, EventId, EventKind, RoomId, Status, UserId};

/// Why a write did not happen.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    /// The data refused the request, which changed nothing: a unique value is taken (a
    /// username, a room's name), or a `client_id` names another message. Says what.
    #[error("{0} already taken")]
    Conflict(&'static str),
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

/// A new account and its first session, together or not at all. The first account of an
/// empty server is its admin.
#[derive(Debug)]
pub struct SignUp {
    pub username: String,
    pub password_hash: String,
    pub session: NewSession,
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
}

impl Post {
    pub fn client_id(&self) -> Option<&str> {
        self.client_id.as_ref().map(ClientId::as_str)
    }

    pub(super) fn into_event(self, id: EventId, created_at: String) -> Event {
        Event {
            id,
            user_id: self.user_id,
            username: self.username,
            created_at,
            kind: EventKind::Message {
                room_id: self.room_id,
                room: self.room,
                content: self.content,
            },
        }
    }
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

/// A room to make: the room and its `room` event.
#[derive(Debug)]
pub struct NewRoom {
    pub name: String,
    pub created_by: UserId,
    pub creator: String,
}
