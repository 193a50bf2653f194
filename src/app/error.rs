//! `Error`: every way an operation of the chat can fail, in the chat's terms. Front ends map
//! it to their own answers (the HTTP status lives in `http::error`); the message is worded for
//! the person who asked.

use std::time::Duration;

use crate::domain::Invalid;
use crate::eventlog::WriteError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A value breaks a rule (an empty message, a bad name, a limit out of range).
    #[error("{0}")]
    Invalid(#[from] Invalid),
    #[error("sign in first: no valid session cookie or bearer token")]
    Unauthorized,
    /// An unknown name or a wrong password: the two read the same.
    #[error("wrong name or password")]
    WrongPassword,
    /// The caller may not do this, and knows it exists (a wrong current password, an
    /// account that is deactivated, an action for admins).
    #[error("{0}")]
    Forbidden(String),
    /// What was asked for does not exist, or the caller may not see it: the two read the same.
    #[error("no {0}")]
    NotFound(String),
    /// Something unique is taken, or an id already names something else.
    #[error("{0}")]
    Conflict(String),
    /// A client used up an allowance (`--message-rate`, `--signin-rate`, streams per user).
    #[error("too many {what}; try again in {} s", retry_after_secs(*retry_after))]
    TooManyRequests { what: &'static str, retry_after: Duration },
    /// Too much of this is under way on the server now (password hashes waiting).
    #[error("the server is busy with {what}; try again in {} s", retry_after_secs(*retry_after))]
    Busy { what: &'static str, retry_after: Duration },
    /// The server has as many open streams as `--max-streams` allows.
    #[error("the server is at its limit of open event streams; try again in {} s", retry_after_secs(*retry_after))]
    ServerFull { retry_after: Duration },
    /// The database cannot take the write now (disk full, locked, shutting down).
    #[error("the server cannot store this right now: {0}")]
    Unavailable(WriteError),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("template: {0}")]
    Render(#[from] askama::Error),
    #[error("{0}")]
    Internal(String),
}

impl From<WriteError> for Error {
    /// A conflict is the request's own refusal; everything else is the database's trouble.
    fn from(error: WriteError) -> Self {
        match error {
            WriteError::Conflict(what) => Self::Conflict(format!("{what} already taken")),
            WriteError::Gone(what) => Self::NotFound(what.into()),
            other => Self::Unavailable(other),
        }
    }
}

impl Error {
    /// How long to wait before asking again, for a refusal that passes with time.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Self::Unavailable(_) => Some(1),
            Self::TooManyRequests { retry_after, .. }
            | Self::ServerFull { retry_after }
            | Self::Busy { retry_after, .. } => Some(retry_after_secs(*retry_after)),
            _ => None,
        }
    }
}

/// `Retry-After` counts whole seconds: round up, and never say 0.
fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}
