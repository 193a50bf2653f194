//! Reading: moving a room's read cursor (the page does it when the newest messages are on
//! screen), what each room holds unread, and how loudly a room may call for its reader.
//!
//! A cursor is an event id, so "what I have not read" is the same exact set on every device;
//! moving it writes a `read` event to the reader's own streams, which is how their other tabs
//! and devices learn of it, live or on replay.

use std::collections::HashMap;

use super::{App, Error, rooms, sessions::Session};
use crate::domain::{EventId, Invalid, NotifyLevel, RoomId};
use crate::eventlog::sqlite::{Room, Unread};
use crate::eventlog::{ReadMark, WriteError};

/// `session`'s user has read `room` up to `up_to`. Nothing happens when that is not forward of
/// where they have read to; otherwise the cursor moves and their streams get a `read` event.
/// `up_to` may not be newer than any event handed out.
pub async fn mark_read(app: &App, session: &Session, room: &str, up_to: EventId) -> Result<(), Error> {
    app.limits.read(session.user_id)?;
    let name = room;
    let room = rooms::find(app, session, name).await?;
    if up_to > app.log.hub.head() {
        return Err(Error::Invalid(Invalid(
            format!("`up_to` {up_to} is newer than any event there is").into(),
        )));
    }
    let mark = ReadMark {
        user_id: session.user_id,
        username: session.username.clone(),
        room_id: room.id,
        members_only: room.kind().members_only(),
        room: room.name,
        up_to,
    };
    match app.log.writer.read(mark).await {
        Ok(_) => Ok(()),
        // Removed from the room since it was checked.
        Err(WriteError::Gone(_)) => Err(rooms::not_found(name)),
        Err(error) => Err(error.into()),
    }
}

/// Sets how loudly `room` may call for `session`'s user.
pub async fn set_notify(app: &App, session: &Session, room: &str, level: &str) -> Result<(), Error> {
    let level: NotifyLevel = level.parse()?;
    app.limits.read(session.user_id)?;
    let room = rooms::find(app, session, room).await?;
    app.log.writer.set_notify(session.user_id, room.id, level).await?;
    Ok(())
}

/// What `session`'s user has not read of each of `rooms` (which they can read).
pub async fn unread(app: &App, session: &Session, rooms: &[Room]) -> Result<HashMap<RoomId, Unread>, Error> {
    let ids: Vec<RoomId> = rooms.iter().map(|room| room.id).collect();
    Ok(app.log.store.unread(session.user_id, &ids).await?)
}
