//! Streams: what a stream follows, who may see what on it, and where it starts.

use super::{EventId, Membership, RoomId, Scope, UserId};

/// What an event stream follows, and for whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum View {
    /// `GET /api/rooms/{room}/events`: one room's events, and every status change, as the user
    /// may see them (the stream ends after the event that removes them).
    Room(RoomId, UserId),
    /// `GET /api/events`: everything the user may see, from every room they can read.
    User(UserId),
}

impl View {
    /// Whether an event of `scope` belongs on this stream, with `membership` as it stands at
    /// the event: the rule the hub routes live events by (its tests hold the routing against
    /// this) and the replay queries say in SQL (`eventlog::sqlite`; the integration tests
    /// hold streams against the database).
    pub fn sees(self, scope: Scope, membership: &Membership) -> bool {
        match (self, scope) {
            (Self::Room(room, user), Scope::Room(of)) => room == of && membership.can_read(of, user),
            (Self::Room(..), Scope::User(_)) => false,
            (Self::User(user), Scope::Room(of)) => membership.can_read(of, user),
            (Self::User(user), Scope::User(of)) => user == of,
            (_, Scope::Everyone) => true,
        }
    }

    /// Whose stream it is.
    pub fn user(self) -> UserId {
        match self {
            Self::Room(_, user) | Self::User(user) => user,
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
        let (general, rust, secret) = (RoomId(1), RoomId(2), RoomId(3));
        let (ada, bob) = (UserId(1), UserId(2));
        let membership = Membership::new([(secret, vec![ada])]);
        let sees = |view: View, scope| view.sees(scope, &membership);
        assert!(sees(View::Room(general, ada), Scope::Room(general)));
        assert!(!sees(View::Room(general, ada), Scope::Room(rust)));
        assert!(sees(View::Room(general, ada), Scope::Everyone));
        assert!(!sees(View::Room(general, ada), Scope::User(ada)));
        assert!(sees(View::User(ada), Scope::Room(rust)));
        assert!(sees(View::User(ada), Scope::User(ada)));
        assert!(!sees(View::User(ada), Scope::User(bob)));
        assert!(sees(View::User(ada), Scope::Everyone));
        assert!(sees(View::User(ada), Scope::Room(secret)));
        assert!(sees(View::Room(secret, ada), Scope::Room(secret)));
        assert!(!sees(View::User(bob), Scope::Room(secret)), "bob is not a member");
        assert!(!sees(View::Room(secret, bob), Scope::Room(secret)));
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
