//! Invitations: the code a new member brings, what an invite may be made for, and why one
//! does not let someone in.

use super::Invalid;

/// Uses an invite may be made for.
pub const MAX_INVITE_USES: u32 = 1_000;
/// Hours an invite may last: a year.
pub const MAX_INVITE_HOURS: u32 = 24 * 365;
/// What an invite is made for when nobody says: one person, within a week.
pub const DEFAULT_INVITE_USES: u32 = 1;
pub const DEFAULT_INVITE_HOURS: u32 = 24 * 7;

/// An invite code as a client sent it: 1 to 64 URL-safe base64 characters. Codes the server
/// makes are 22 of them (128 random bits); anything else names no invite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteCode(String);

impl InviteCode {
    /// `None` for text that cannot be a code (so it names no invite).
    pub fn parse(raw: &str) -> Option<Self> {
        let ok = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
        (!raw.is_empty() && raw.len() <= 64 && raw.bytes().all(ok)).then(|| Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How many accounts an invite is for and for how long, within the bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InviteTerms {
    pub uses: u32,
    pub hours: u32,
}

impl InviteTerms {
    /// The terms asked for, the defaults where nothing is said.
    pub fn parse(uses: Option<i64>, hours: Option<i64>) -> Result<Self, Invalid> {
        let within = |value: Option<i64>, default: u32, max: u32| match value {
            None => Some(default),
            Some(value) => u32::try_from(value).ok().filter(|value| (1..=max).contains(value)),
        };
        let uses = within(uses, DEFAULT_INVITE_USES, MAX_INVITE_USES)
            .ok_or_else(|| Invalid("an invite is for 1 to 1,000 uses".into()))?;
        let hours = within(hours, DEFAULT_INVITE_HOURS, MAX_INVITE_HOURS)
            .ok_or_else(|| Invalid("an invite lasts 1 to 8,760 hours (a year)".into()))?;
        Ok(Self { uses, hours })
    }
}

/// Why someone may not make an account, in words for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotAdmitted {
    /// `--signup invite` and no code.
    NoInvite,
    /// A code no invite has.
    UnknownInvite,
    Expired,
    UsedUp,
    Revoked,
    /// `--signup closed`, and no admin asked.
    Closed,
}

impl NotAdmitted {
    pub fn words(self) -> &'static str {
        match self {
            Self::NoInvite => "joining this server takes an invite: ask an admin for an invite link",
            Self::UnknownInvite => "this invite link is not valid: check it, or ask an admin for a new one",
            Self::Expired => "this invite has expired: ask an admin for a new one",
            Self::UsedUp => "this invite has been used up: ask an admin for a new one",
            Self::Revoked => "this invite was withdrawn: ask an admin for a new one",
            Self::Closed => "this server is not taking new accounts: an admin can make one for you",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_short_url_safe_text() {
        assert!(InviteCode::parse("AbC-d_09").is_some());
        for bad in ["", "a b", "a/b", "a%2e", "é", &"a".repeat(65)] {
            assert!(InviteCode::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn terms_are_bounded_and_default_to_one_use_for_a_week() {
        assert_eq!(
            InviteTerms::parse(None, None).unwrap(),
            InviteTerms { uses: 1, hours: 168 }
        );
        assert!(InviteTerms::parse(Some(1000), Some(8760)).is_ok());
        for (uses, hours) in [(0, 1), (1001, 1), (1, 0), (1, 8761), (-1, 1), (1, i64::MAX)] {
            assert!(InviteTerms::parse(Some(uses), Some(hours)).is_err(), "{uses} {hours}");
        }
    }
}
