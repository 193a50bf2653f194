//! A user's status: what they choose to show the others.

use std::sync::Arc;

use super::{App, Error, sessions::Session};
use crate::domain::{Event, EventKind, Status};
use crate::eventlog::StatusChange;

/// Stores `session`'s user's chosen status; returns the event once committed. Choosing the
/// status they already show as their choice stores and publishes nothing, costs none of their
/// allowance (`--status-rate`), and returns the event that set it.
pub async fn set(app: &App, session: &Session, status: &str) -> Result<Event, Error> {
    let status: Status = status.parse()?;
    let user = session.user_id;
    let change = StatusChange {
        user_id: user,
        username: session.username.clone(),
        status,
        chosen: true,
    };
    let limits = Arc::clone(&app.limits);
    match app.presence.choose(change, move || limits.status(user)).await? {
        Some(event) => Ok(event),
        None => {
            // The event that set it may still be on its way to the database (a request a
            // moment ago chose the same): it was queued before this point, so once the writer
            // has caught up to here, it is stored.
            app.log.writer.barrier().await?;
            app.log
                .store
                .latest_status(user)
                .await?
                .ok_or_else(|| Error::Internal("a status shown but never stored".into()))
        }
    }
}

/// The status `session`'s user chose, which the status switch shows.
pub async fn chosen(app: &App, session: &Session) -> Result<Status, Error> {
    Ok(app.log.store.status_choice(session.user_id).await?)
}

/// The status others see for `session`'s user now.
pub async fn shown(app: &App, session: &Session) -> Result<Status, Error> {
    Ok(match app.log.store.latest_status(session.user_id).await? {
        Some(Event {
            kind: EventKind::Status { status },
            ..
        }) => status,
        _ => Status::Offline,
    })
}
