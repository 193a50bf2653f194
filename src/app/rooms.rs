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

/// The rooms `session`'s user can read, by name.
pub async fn list(app: &App, _session: &Session) -> Result<Vec<Room>, Error> {
    Ok(app.log.store.rooms().await?)
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
