//! The chat's vocabulary, with no I/O: ids, names and texts parsed once at the edge, statuses,
//! the event and its scope, and what a stream follows. Every other layer speaks in these types.

mod access;
mod account;
mod event;
mod ids;
mod invite;
mod names;
mod reading;
mod search;
mod status;
mod stream;

pub use access::Membership;
pub use account::{NO_PASSWORD, Role};
pub use event::{Event, EventKind, Quote, Reactions, RoomKind, Scope};
pub use ids::{EventId, RoomId, UserId};
pub use invite::{
    DEFAULT_INVITE_HOURS, DEFAULT_INVITE_USES, InviteCode, InviteTerms, MAX_INVITE_HOURS, MAX_INVITE_USES, NotAdmitted,
};
pub use names::{
    ClientId, Content, DIRECT_PREFIX, Emoji, Invalid, MAX_PASSWORD_CHARS, MAX_TOPIC_CHARS, MIN_PASSWORD_CHARS,
    Password, ROOM_MENTIONS, RoomName, Topic, Username, skeleton,
};
pub use reading::{MAX_UNREAD, NotifyLevel};
pub use search::{MATCH_END, MATCH_START, MAX_QUERY_CHARS, SearchQuery, Term, Timestamp};
pub use status::Status;
pub use stream::{Cursor, View};
