//! Row ids as types of their own, so that a room's id can never be passed where a user's or an
//! event's is meant. Each is an `i64` underneath (SQLite's `INTEGER PRIMARY KEY`), and reads and
//! binds as one.

use std::fmt;

use serde::Serialize;

macro_rules! id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, sqlx::Type)]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(pub i64);

        impl $name {
            pub fn get(self) -> i64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id! {
    /// `events.id`: a position in the log and the SSE `id:`. Never reused, even after deletions
    /// (`AUTOINCREMENT`), so "everything after 41" means the same thing for ever.
    EventId
}

impl EventId {
    /// Before the first event: a cursor that replays everything.
    pub const ZERO: Self = Self(0);
    pub const MAX: Self = Self(i64::MAX);
}

id! {
    /// `users.id`.
    UserId
}

id! {
    /// `rooms.id`. A room is never renamed, so its name would do in most places, but ids are
    /// what the log stores.
    RoomId
}
