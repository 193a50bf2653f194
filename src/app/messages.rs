//! Messages: posting one, and reading a room's history.

use super::{App, Error, rooms, sessions::Session};
use crate::domain::{ClientId, Content, Event, EventId};
use crate::eventlog::{Post, Posted, WriteError};

/// Most messages one page of history holds, and how many it holds unless asked.
pub const MAX_HISTORY: u32 = 200;
pub const DEFAULT_HISTORY: u32 = 50;

/// Stores `content` in `room` as `session`'s user; returns it once committed. With a
/// `client_id` sent before, returns the message stored then (`new: false`), or `Conflict` if
/// that one says something else.
pub async fn post(
    app: &App,
    session: &Session,
    room: &str,
    content: String,
    client_id: Option<&str>,
) -> Result<Posted, Error> {
    let content = Content::parse(content, app.settings.max_message_chars)?;
    let client_id = client_id.map(ClientId::parse).transpose()?;
    // After the checks that cost nothing, before the ones that touch the database.
    app.limits.message(session.user_id)?;
    let name = room;
    let room = rooms::find(app, session, name).await?;
    if room.archived {
        return Err(Error::Conflict(
            "this room is archived: it keeps its history but takes no new messages".into(),
        ));
    }
    let post = Post {
        room_id: room.id,
        members_only: room.kind().members_only(),
        room: room.name,
        user_id: session.user_id,
        username: session.username.clone(),
        content: content.into_string(),
        client_id,
    };
    match app.log.writer.post(post).await {
        Ok(posted) => Ok(posted),
        // Removed from the room since it was checked.
        Err(WriteError::Gone(_)) => Err(rooms::not_found(name)),
        Err(WriteError::Conflict(_)) => Err(Error::Conflict(
            "this client_id was already used for a different message".into(),
        )),
        Err(error) => Err(error.into()),
    }
}

/// Which page of history: the newest `limit` before `before` (or the newest of all), or the
/// oldest `limit` after `after`.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub before: Option<EventId>,
    pub after: Option<EventId>,
    pub limit: u32,
}

/// A page of `room`'s messages, oldest first.
pub async fn history(app: &App, session: &Session, room: &str, page: Page) -> Result<Vec<Event>, Error> {
    let room = rooms::find(app, session, room).await?;
    let limit = page.limit.clamp(1, MAX_HISTORY);
    Ok(app.log.store.history(room.id, page.before, page.after, limit).await?)
}
