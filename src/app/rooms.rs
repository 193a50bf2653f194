//! Rooms: finding one by name, listing them, making one (which tells every open page).

use super::{App, Error, sessions::Session};
use crate::domain::{Event, RoomName};
use crate::eventlog::sqlite::Room;
use crate::eventlog::{NewRoom, WriteError};

/// The room called `name`, or `NotFound`: every room is public, so every user may read it.
pub async fn find(app: &App, name: &str) -> Result<Room, Error> {
    app.log
        .store
        .room(name)
        .await?
        .ok_or_else(|| Error::NotFound(format!("room called `{}`", name.chars().take(64).collect::<String>())))
}

/// Rooms listed at once when the client does not say how many.
pub const DEFAULT_ROOMS: u32 = 100;
/// The most rooms listed at once.
pub const MAX_ROOMS: u32 = 500;

/// A page of the rooms a user can read, by name.
pub struct RoomPage {
    pub rooms: Vec<Room>,
    /// The name to list on from, if there are more.
    pub next: Option<String>,
}

/// The rooms `session`'s user can read, by name: at most `limit` after `after`.
pub async fn list(app: &App, _session: &Session, after: Option<&str>, limit: u32) -> Result<RoomPage, Error> {
    let limit = limit.clamp(1, MAX_ROOMS);
    let mut rooms = app.log.store.rooms(after, limit + 1).await?;
    let next = (rooms.len() > limit as usize).then(|| {
        rooms.truncate(limit as usize);
        rooms.last().map(|room| room.name.clone())
    });
    Ok(RoomPage {
        rooms,
        next: next.flatten(),
    })
}

/// Makes the room `name`; returns its `room` event, which every open page receives.
/// `Conflict` if the name is taken.
pub async fn create(app: &App, session: &Session, name: &str) -> Result<Event, Error> {
    let name = RoomName::parse(name)?;
    app.limits.room(session.user_id)?;
    let room = NewRoom {
        name: name.as_str().to_owned(),
        created_by: session.user_id,
        creator: session.username.clone(),
    };
    match app.log.writer.create_room(room).await {
        Ok(event) => {
            tracing::info!(room = name.as_str(), by = %session.username, "room created");
            Ok(event)
        }
        Err(WriteError::Conflict(_)) => Err(Error::Conflict(format!(
            "a room called `{}` already exists",
            name.as_str()
        ))),
        Err(error) => Err(error.into()),
    }
}
