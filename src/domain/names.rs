//! Names and texts, parsed once at the edge and trusted after: a value of one of these types
//! has already passed its rules.

use std::borrow::Cow;
use std::fmt;

/// A password's length, in characters.
pub const MIN_PASSWORD_CHARS: usize = 8;
pub const MAX_PASSWORD_CHARS: usize = 1_024;

/// Why a name or text was refused; the message is shown to the client as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub Cow<'static, str>);

/// 1 to 32 ASCII letters, digits, `_`, `-` or `.`. Unique without regard to case; kept as typed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
        if raw.is_empty() || raw.len() > 32 || !raw.chars().all(ok_char) {
            return Err(Invalid("a username is 1 to 32 letters, digits, `_`, `-` or `.`".into()));
        }
        Ok(Self(raw.to_owned()))
    }

    /// A name for a new account: also starting and ending with a letter or digit, so that
    /// no name is another with a dot or dash on its edge. (Names made before this rule still
    /// sign in.)
    pub fn parse_new(raw: &str) -> Result<Self, Invalid> {
        let name = Self::parse(raw)?;
        let edges_ok = [raw.chars().next(), raw.chars().last()]
            .iter()
            .all(|c| c.is_some_and(|c| c.is_ascii_alphanumeric()));
        if !edges_ok {
            return Err(Invalid("a username starts and ends with a letter or digit".into()));
        }
        if ROOM_MENTIONS
            .iter()
            .chain(&["channel", "everyone"])
            .any(|word| raw.eq_ignore_ascii_case(word))
        {
            return Err(Invalid(format!("`{raw}` is kept for mentioning a whole room").into()));
        }
        Ok(name)
    }

    /// What the name looks like, for telling look-alikes apart: capital `I`, `l` and `1`
    /// read as one letter, and so do `O`, `o` and `0`; case does not count. The database
    /// computes the same (`users.skeleton`), and no two new accounts share one.
    pub fn skeleton(&self) -> String {
        skeleton(&self.0)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The words that, after `@`, mention everyone who can read the room.
pub const ROOM_MENTIONS: [&str; 2] = ["here", "room"];

/// What `name` looks like: see `Username::skeleton`.
pub fn skeleton(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            'I' | 'l' | '1' => 'l',
            'O' | 'o' | '0' => 'o',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// `[a-z0-9][a-z0-9-]{0,31}`: safe in a URL path and an HTML id as it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoomName(String);

impl RoomName {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let bytes = raw.as_bytes();
        let head_ok = bytes
            .first()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        let tail_ok = bytes
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !head_ok || !tail_ok || bytes.len() > 32 {
            return Err(Invalid(
                "a room name is 1 to 32 lowercase letters, digits or `-`, starting with a letter or digit".into(),
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    /// A name for a room someone makes now: also not one of the names direct rooms take.
    pub fn parse_new(raw: &str) -> Result<Self, Invalid> {
        let name = Self::parse(raw)?;
        if name.0.starts_with(DIRECT_PREFIX) {
            return Err(Invalid(
                format!("room names starting with `{DIRECT_PREFIX}` are kept for direct messages").into(),
            ));
        }
        Ok(name)
    }

    /// A fresh name for a direct room: the prefix no other room may take, and 64 random bits.
    pub fn direct(random: u64) -> Self {
        Self(format!("{DIRECT_PREFIX}{random:016x}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What every direct room's name starts with, and no other new room's may.
pub const DIRECT_PREFIX: &str = "dm-";

/// The most characters a room's topic holds.
pub const MAX_TOPIC_CHARS: usize = 250;

/// What a room is about: one line of at most 250 characters, trimmed; empty means none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic(String);

impl Topic {
    /// `None` for a topic that is empty once trimmed: the room has none.
    pub fn parse(raw: &str) -> Result<Option<Self>, Invalid> {
        let topic = raw.trim();
        if topic.chars().count() > MAX_TOPIC_CHARS {
            return Err(Invalid(
                format!("a topic is at most {MAX_TOPIC_CHARS} characters").into(),
            ));
        }
        if topic.chars().any(char::is_control) {
            return Err(Invalid(
                "a topic is one line of text, without control characters".into(),
            ));
        }
        Ok((!topic.is_empty()).then(|| Self(topic.to_owned())))
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// 8 to 1,024 characters, anything at all. Its `Debug` never shows it.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub fn parse(raw: String) -> Result<Self, Invalid> {
        let chars = raw.chars().count();
        if !(MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&chars) {
            return Err(Invalid("a password is 8 to 1,024 characters".into()));
        }
        Ok(Self(raw))
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(..)")
    }
}

/// A message's text: 1 to `max_chars` (by default 4,000) characters once surrounding white space
/// is ignored, but stored exactly as sent, white space and all. No padding gets past the
/// bounds on what a message may take up on a screen: the white space around it counts towards
/// `MAX_PADDING`, its line breaks towards `MAX_LINE_BREAKS`, and no character carries more than
/// `MAX_MARKS` combining marks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content(String);

/// White space around a message's text, in characters, kept as sent.
pub const MAX_PADDING: usize = 100;
/// Line breaks in one message (`\r\n` is one; so is each line or paragraph separator): a
/// pasted log of a few hundred lines fits, a wall of blank lines does not.
pub const MAX_LINE_BREAKS: usize = 300;
/// Combining marks on one character: enough for any script's stacked accents and for emoji
/// variation selectors and keycaps, not for a tower of them.
pub const MAX_MARKS: usize = 8;

impl Content {
    /// `max_chars` 0: no limit on the text's length but the body size; the other bounds stay.
    pub fn parse(raw: String, max_chars: usize) -> Result<Self, Invalid> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(Invalid("a message cannot be empty".into()));
        }
        // Counting stops early: a huge body costs no more than the limit.
        if max_chars > 0 && trimmed.chars().nth(max_chars).is_some() {
            return Err(Invalid(format!("a message is at most {max_chars} characters").into()));
        }
        let padding = raw.len() - trimmed.len();
        if padding > MAX_PADDING && raw.chars().count() - trimmed.chars().count() > MAX_PADDING {
            return Err(Invalid(
                format!("a message may have at most {MAX_PADDING} characters of white space around it").into(),
            ));
        }
        let mut line_breaks = 0;
        let mut marks = 0;
        let mut after_cr = false;
        for c in raw.chars() {
            line_breaks += usize::from(matches!(c, '\n' if !after_cr) || is_other_line_break(c));
            after_cr = c == '\r';
            if line_breaks > MAX_LINE_BREAKS {
                return Err(Invalid(
                    format!("a message has at most {MAX_LINE_BREAKS} line breaks").into(),
                ));
            }
            marks = if unicode_normalization::char::is_combining_mark(c) {
                marks + 1
            } else {
                0
            };
            if marks > MAX_MARKS {
                return Err(Invalid(
                    format!("a character in a message carries at most {MAX_MARKS} combining marks").into(),
                ));
            }
        }
        Ok(Self(raw))
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// A line break other than `\n`: `\r` (alone or before `\n`, counted once either way), the
/// vertical tab and form feed, NEL, and the line and paragraph separators.
fn is_other_line_break(c: char) -> bool {
    matches!(c, '\r' | '\u{0B}' | '\u{0C}' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

/// The id a client gives a message so that sending it again stores it once: a UUID, kept in
/// its lowercase hyphenated form whatever form it came in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientId(String);

impl ClientId {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        uuid::Uuid::try_parse(raw)
            .map(|id| Self(id.hyphenated().to_string()))
            .map_err(|_| Invalid("`client_id` is a UUID, such as 3f2b8c1e-9a4d-4e7b-8c2f-1d5e6a7b8c9d".into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a reaction is: 1 to 16 characters (an emoji, which may take several code points, or
/// a short word), without spaces, line breaks or other control characters. Kept in NFC, so
/// that the same emoji typed two ways is one reaction.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Emoji(String);

impl Emoji {
    pub const MAX_CHARS: usize = 16;

    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        use unicode_normalization::UnicodeNormalization;
        let emoji: String = raw.nfc().collect();
        let count = emoji.chars().count();
        // Zero-width joiners and variation selectors are what many emoji are made of.
        let bad = |c: char| {
            c.is_whitespace()
                || c.is_control()
                || (c.is_ascii_punctuation() && c != '+' && c != '-' && c != '_' && c != ':')
        };
        if count == 0 || count > Self::MAX_CHARS || emoji.chars().any(bad) || emoji.chars().any(is_direction_control) {
            return Err(Invalid(
                "a reaction is 1 to 16 characters, such as an emoji, without spaces".into(),
            ));
        }
        Ok(Self(emoji))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// The characters that reorder the text around them.
fn is_direction_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reactions_are_short_and_have_no_spaces() {
        for ok in ["👍", "👍🏽", "👨‍👩‍👧", "❤️", "🇫🇷", "+1", ":tada:", &"x".repeat(16)] {
            assert!(Emoji::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", " ", "👍 👍", "a\n", &"x".repeat(17), "<b>", "a\u{202E}", "\u{0}"] {
            assert!(Emoji::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Emoji::parse("e\u{301}").unwrap(), Emoji::parse("\u{e9}").unwrap());
    }

    #[test]
    fn usernames_follow_the_rules() {
        for ok in ["a", "Ada", "ada.lovelace", "a_b-c", &"x".repeat(32)] {
            assert!(Username::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", " ada", "ada!", "ådа", "a b", &"x".repeat(33), "a\0"] {
            assert!(Username::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn new_names_start_and_end_with_a_letter_or_digit() {
        for ok in ["a", "ada.lovelace", "a_b-c", "0x1"] {
            assert!(Username::parse_new(ok).is_ok(), "{ok}");
        }
        for bad in ["_ada", "ada.", "-", ".a", "a_"] {
            assert!(Username::parse(bad).is_ok(), "{bad} still signs in");
            assert!(Username::parse_new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn look_alikes_share_a_skeleton() {
        let skeleton = |name: &str| Username::parse(name).unwrap().skeleton();
        assert_eq!(skeleton("Alice"), skeleton("AIice"));
        assert_eq!(skeleton("Alice"), skeleton("A1ice"));
        assert_eq!(skeleton("bob"), skeleton("B0B"));
        assert_eq!(skeleton("Ian"), skeleton("lan"));
        assert_ne!(skeleton("ian"), skeleton("lan"), "a small i is its own letter");
        assert_ne!(skeleton("ada"), skeleton("ad4"));
    }

    #[test]
    fn room_names_follow_the_rules() {
        for ok in ["general", "0", "a-b", "rust-2026", &"r".repeat(32)] {
            assert!(RoomName::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "A", "a_b", "a/b", "..", &"r".repeat(33), "é"] {
            assert!(RoomName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn content_is_measured_trimmed_but_kept_whole() {
        assert!(Content::parse("   ".into(), 4000).is_err());
        assert!(Content::parse("\r\n\t".into(), 4000).is_err());
        let padded = format!("  {}  ", "é".repeat(4000));
        assert_eq!(Content::parse(padded.clone(), 4000).unwrap().into_string(), padded);
        assert!(Content::parse("é".repeat(4001), 4000).is_err());
        assert!(Content::parse("é".repeat(4001), 0).is_ok());
    }

    #[test]
    fn no_padding_gets_past_the_bounds() {
        let padded = |n: usize| format!("{}x{}", " ".repeat(n / 2), "\n".repeat(n - n / 2));
        assert!(Content::parse(padded(MAX_PADDING), 4000).is_ok());
        assert!(Content::parse(padded(MAX_PADDING + 1), 4000).is_err());
        assert!(Content::parse(format!("x{}", "\u{3000}".repeat(MAX_PADDING + 1)), 0).is_err());
        // Line breaks inside the text, every kind, `\r\n` counted once.
        let lines = |n: usize, eol: &str| format!("a{}b", format!("{eol}x").repeat(n));
        for eol in ["\n", "\r\n", "\r", "\u{2028}", "\u{2029}", "\u{0B}", "\u{85}"] {
            assert!(Content::parse(lines(MAX_LINE_BREAKS, eol), 4000).is_ok(), "{eol:?}");
            assert!(
                Content::parse(lines(MAX_LINE_BREAKS + 1, eol), 4000).is_err(),
                "{eol:?}"
            );
            assert!(Content::parse(lines(MAX_LINE_BREAKS + 1, eol), 0).is_err(), "{eol:?}");
        }
        // Combining marks: a tower on one letter is refused; many letters with a few are not.
        let tower = format!("Z{}", "\u{301}".repeat(MAX_MARKS + 1));
        assert!(Content::parse(tower, 0).is_err());
        let accented = format!("Z{}", "\u{301}\u{302}".repeat(MAX_MARKS / 2)).repeat(100);
        assert!(Content::parse(accented, 4000).is_ok());
        for fine in [
            "e\u{301}",
            "1\u{FE0F}\u{20E3}",
            "👩🏽\u{200D}👩🏽\u{200D}👧🏽\u{200D}👦🏽",
            "Tiếng Việt",
            "हिन्दी",
        ] {
            assert!(Content::parse(fine.into(), 4000).is_ok(), "{fine}");
        }
    }

    #[test]
    fn client_ids_are_uuids_in_one_form() {
        let id = ClientId::parse("3F2B8C1E-9A4D-4E7B-8C2F-1D5E6A7B8C9D").unwrap();
        assert_eq!(id.as_str(), "3f2b8c1e-9a4d-4e7b-8c2f-1d5e6a7b8c9d");
        assert_eq!(ClientId::parse("3f2b8c1e9a4d4e7b8c2f1d5e6a7b8c9d").unwrap(), id);
        for bad in [
            "",
            "not-a-uuid",
            "3f2b8c1e-9a4d-4e7b-8c2f-1d5e6a7b8c9",
            "'; DROP TABLE events;--",
        ] {
            assert!(ClientId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn passwords_are_counted_in_characters() {
        assert!(Password::parse("1234567".into()).is_err());
        assert!(Password::parse("ééééééé".into()).is_err());
        assert!(Password::parse("12345678".into()).is_ok());
        assert!(Password::parse("x".repeat(1024)).is_ok());
        assert!(Password::parse("x".repeat(1025)).is_err());
    }
}
