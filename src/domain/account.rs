//! What an account may do.

/// An account's role: an admin manages invites and people; a member chats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Admin,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Member => "member",
        }
    }

    /// The role stored as `text`; anything but `admin` is a member.
    pub fn from_stored(text: &str) -> Self {
        if text == "admin" { Self::Admin } else { Self::Member }
    }
}

/// The stored password hash of an account made without a password (`chat-server import` makes
/// the accounts of an export so): no password verifies against it, sign-in answers as for a
/// wrong password and takes as long, and `chat-server admin reset-password` gives it one.
pub const NO_PASSWORD: &str = "";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_and_nothing_else_is_an_admin() {
        for role in [Role::Admin, Role::Member] {
            assert_eq!(Role::from_stored(role.as_str()), role);
        }
        assert_eq!(Role::from_stored("Admin"), Role::Member);
        assert_eq!(Role::from_stored(""), Role::Member);
    }
}
