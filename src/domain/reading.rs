//! Reading: how far someone has read a room, and how loudly a room may call for them.

use std::str::FromStr;

use super::Invalid;

/// A room's unread count stops here: past it the page says "999+", and counting costs no more.
pub const MAX_UNREAD: u32 = 1000;

/// Which new messages of a room call for its reader's attention (desktop notifications, the
/// title's count, a bold room).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NotifyLevel {
    /// Every message.
    All,
    /// Messages that mention the reader (or the room), and every message of a direct room.
    #[default]
    Mentions,
    /// Nothing: the room is muted. Its mentions are still counted.
    None,
}

impl NotifyLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Mentions => "mentions",
            Self::None => "none",
        }
    }

    /// As `reads.notify` stores it; anything else reads as the default.
    pub fn from_stored(stored: &str) -> Self {
        stored.parse().unwrap_or_default()
    }
}

impl FromStr for NotifyLevel {
    type Err = Invalid;

    fn from_str(raw: &str) -> Result<Self, Invalid> {
        match raw {
            "all" => Ok(Self::All),
            "mentions" => Ok(Self::Mentions),
            "none" => Ok(Self::None),
            _ => Err(Invalid("a notification level is `all`, `mentions` or `none`".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_read_back_as_written_and_nothing_else_is_one() {
        for level in [NotifyLevel::All, NotifyLevel::Mentions, NotifyLevel::None] {
            assert_eq!(level.as_str().parse::<NotifyLevel>(), Ok(level));
            assert_eq!(NotifyLevel::from_stored(level.as_str()), level);
        }
        for bad in ["", "ALL", "mute", "none ", "mentions\0"] {
            assert!(bad.parse::<NotifyLevel>().is_err(), "{bad:?}");
        }
        assert_eq!(NotifyLevel::from_stored("something else"), NotifyLevel::Mentions);
    }
}
