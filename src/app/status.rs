//! A user's status: what they choose to show the others.

use super::{App, Error, sessions::Session};
use crate::domain::{Event, Status};
use crate::eventlog::StatusChange;

/// Stores `session`'s user's chosen status; returns the event once committed.
pub async fn set(app: &App, session: &Session, status: &str) -> Result<Event, Error> {
    let status: Status = status.parse()?;
    let change = StatusChange {
        user_id: session.user_id,
        username: session.username.clone(),
        status,
        chosen: true,
    };
    Ok(app.presence.choose(change).await?)
}

/// The status `session`'s user chose, which the status switch shows.
pub async fn chosen(app: &App, session: &Session) -> Result<Status, Error> {
    Ok(app.log.store.status_choice(session.user_id).await?)
}

/// Every account and its status, online first, then by name.
pub async fn members(app: &App) -> Result<Vec<(String, Status)>, Error> {
    Ok(app.log.store.members().await?)
}
