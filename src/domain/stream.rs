//! Streams: what a stream follows, who may see what on it, and where it starts.

use super::{EventId, RoomId, Scope, UserId};

/// What an event stream follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum View {
    /// `GET /api/rooms/{room}/events`: one room's events, and every status change.
    Room(RoomId),
    /// `GET /api/events`: everything the user may see, from every room they can read.
    User(UserId),
}

impl View {
    /// Whether an event of `scope` belongs on this stream: the rule the hub routes live events
    /// by (its tests hold the routing against this) and the replay queries say in SQL
    /// (`eventlog::sqlite`; the integration tests hold streams against the database).
    pub fn sees(self, scope: Scope) -> bool {
        match (self, scope) {
            (Self::Room(room), Scope::Room(of)) => room == of,
            (Self::Room(_), Scope::User(_)) => false,
            // Every room is public: every user reads every room.
            (Self::User(_), Scope::Room(_)) => true,
            (Self::User(user), Scope::User(of)) => user == of,
            (_, Scope::Everyone) => true,
        }
    }
}

/// Where a stream starts, read from `Last-Event-ID` (which wins) or `?after=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    /// Neither was given: start from now.
    Now,
    /// Everything after this id.
    After(EventId),
    /// Something was given but it is not a non-negative integer.
    Invalid,
}

impl Cursor {
    /// `header` is the `Last-Event-ID` value, `query` the `after` parameter, if present.
    pub fn from_request(header: Option<&str>, query: Option<&str>) -> Self {
        match header.or(query) {
            None => Self::Now,
            Some(raw) => Self::parse(raw),
        }
    }

    /// Digits only (no sign, no space), and small enough to be an id.
    pub fn parse(raw: &str) -> Self {
        if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
            return Self::Invalid;
        }
        raw.parse::<i64>()
            .map(|id| Self::After(EventId(id)))
            .unwrap_or(Self::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn views_see_their_own_scopes() {
        let (general, rust) = (RoomId(1), RoomId(2));
        let (ada, bob) = (UserId(1), UserId(2));
        assert!(View::Room(general).sees(Scope::Room(general)));
        assert!(!View::Room(general).sees(Scope::Room(rust)));
        assert!(View::Room(general).sees(Scope::Everyone));
        assert!(!View::Room(general).sees(Scope::User(ada)));
        assert!(View::User(ada).sees(Scope::Room(rust)));
        assert!(View::User(ada).sees(Scope::User(ada)));
        assert!(!View::User(ada).sees(Scope::User(bob)));
        assert!(View::User(ada).sees(Scope::Everyone));
    }

    #[test]
    fn cursors_are_digits_only() {
        assert_eq!(Cursor::from_request(None, None), Cursor::Now);
        assert_eq!(Cursor::from_request(Some("5"), Some("9")), Cursor::After(EventId(5)));
        assert_eq!(Cursor::from_request(None, Some("0")), Cursor::After(EventId(0)));
        for bad in ["", "-1", "+1", " 1", "1.0", "abc", "99999999999999999999", "٣"] {
            assert_eq!(Cursor::parse(bad), Cursor::Invalid, "{bad:?}");
        }
        assert_eq!(Cursor::parse("9223372036854775807"), Cursor::After(EventId::MAX));
    }

    proptest! {
        #[test]
        fn cursor_parser_never_panics(raw in any::<String>()) {
            let parsed = Cursor::parse(&raw);
            if let Cursor::After(id) = parsed {
                prop_assert!(id.get() >= 0);
                let canonical = id.to_string();
                prop_assert_eq!(canonical.trim_start_matches('0'), raw.trim_start_matches('0'));
            }
        }

        #[test]
        fn every_id_reads_back_and_the_header_wins(id in 0..=i64::MAX, zeros in 0..5usize, other in any::<String>()) {
            let written = format!("{}{id}", "0".repeat(zeros));
            prop_assert_eq!(Cursor::parse(&written), Cursor::After(EventId(id)));
            prop_assert_eq!(Cursor::from_request(Some(&written), Some(&other)), Cursor::After(EventId(id)));
            prop_assert_eq!(Cursor::from_request(None, Some(&written)), Cursor::After(EventId(id)));
            // Beyond the largest id, or signed, it is not a cursor.
            let too_big = format!("{}{id}", i64::MAX);
            prop_assert_eq!(Cursor::parse(&too_big), Cursor::Invalid);
            let signed = format!("+{id}");
            prop_assert_eq!(Cursor::parse(&signed), Cursor::Invalid);
        }
    }
}
