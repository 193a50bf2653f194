//! Rooms and who may read them: finding one the caller can read (a room they cannot read is
//! not found, exactly like one that does not exist), listing them, making public and private
//! rooms, direct rooms found by their people, the members of each, and a room's topic and
//! archived flag.

use std::collections::HashMap;

use super::{App, Error, sessions::Session};
use crate::domain::{Event, Invalid, RoomId, RoomKind, RoomName, Status, Topic, UserId, Username};
use crate::eventlog::sqlite::Room;
use crate::eventlog::{MemberChange, NewRoom, RoomChange, WriteError};

/// The most people a direct room holds, the caller included.
pub const MAX_DIRECT_MEMBERS: usize = 9;

/// The answer for a room the caller cannot read, worded exactly as for one that does not
/// exist.
pub(super) fn not_found(name: &str) -> Error {
    Error::NotFound(format!("room called `{}`", name.chars().take(64).collect::<String>()))
}

/// The room called `name` if `session`'s user can read it now; `NotFound` otherwise, whether
/// it does not exist or they may not read it. A public room costs no query once known; a
/// members-only one, one indexed lookup.
pub async fn find(app: &App, session: &Session, name: &str) -> Result<Room, Error> {
    let room = app.log.store.room(name).await?.ok_or_else(|| not_found(name))?;
    if room.kind().members_only() && !app.log.store.is_member(room.id, session.user_id).await? {
        return Err(not_found(name));
    }
    Ok(room)
}

/// Rooms listed at once when the client does not say how many.
pub const DEFAULT_ROOMS: u32 = 100;
/// The most rooms listed at once.
pub const MAX_ROOMS: u32 = 500;

/// A page of the rooms a user can read, by name.
pub struct RoomPage {
    pub rooms: Vec<Room>,
    /// The members of each direct room listed, by name.
    pub members: HashMap<RoomId, Vec<String>>,
    /// The name to list on from, if there are more.
    pub next: Option<String>,
}

/// The rooms `session`'s user can read, by name: at most `limit` after `after`.
pub async fn list(app: &App, session: &Session, after: Option<&str>, limit: u32) -> Result<RoomPage, Error> {
    let limit = limit.clamp(1, MAX_ROOMS);
    let mut rooms = app.log.store.rooms(session.user_id, after, limit + 1).await?;
    let next = (rooms.len() > limit as usize).then(|| {
        rooms.truncate(limit as usize);
        rooms.last().map(|room| room.name.clone())
    });
    // Only a direct room is shown by its people; a private room's members are asked for
    // when it is opened (a list of 50 private rooms of 200 people each would sort 10,000
    // names for nothing).
    let direct: Vec<_> = rooms
        .iter()
        .filter(|room| room.kind() == RoomKind::Direct)
        .map(|room| room.id)
        .collect();
    let members = app.log.store.member_names(&direct).await?;
    Ok(RoomPage {
        rooms,
        members,
        next: next.flatten(),
    })
}

/// The room called `name` if `session`'s user can read it, and a members-only room's members
/// by name.
pub async fn get(app: &App, session: &Session, name: &str) -> Result<(Room, Vec<String>), Error> {
    let room = find(app, session, name).await?;
    let members = if room.kind().members_only() {
        app.log
            .store
            .member_names(&[room.id])
            .await?
            .remove(&room.id)
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    Ok((room, members))
}

/// Makes the room `name`, public or private (its creator its first member); returns its
/// `room` event. `Conflict` if the name is taken.
pub async fn create(
    app: &App,
    session: &Session,
    name: &str,
    private: bool,
    topic: Option<&str>,
) -> Result<Event, Error> {
    let name = RoomName::parse_new(name)?;
    let topic = topic.map(Topic::parse).transpose()?.flatten();
    app.limits.room(session.user_id)?;
    let kind = if private { RoomKind::Private } else { RoomKind::Public };
    let room = NewRoom {
        name: name.as_str().to_owned(),
        kind,
        topic: topic.map(Topic::into_string),
        created_by: session.user_id,
        creator: session.username.clone(),
        members: if private {
            vec![(session.user_id, session.username.clone())]
        } else {
            Vec::new()
        },
    };
    match app.log.writer.create_room(room).await {
        Ok(event) => {
            tracing::info!(room = name.as_str(), kind = kind.as_str(), by = %session.username, "room created");
            Ok(event)
        }
        Err(WriteError::Conflict(_)) => Err(Error::Conflict(format!(
            "a room called `{}` already exists",
            name.as_str()
        ))),
        Err(error) => Err(error.into()),
    }
}

/// A direct room, and whether this call made it.
pub struct Direct {
    pub room: Room,
    pub created: bool,
    /// Its people, by name.
    pub members: Vec<String>,
}

/// The direct room of exactly `usernames` and the caller, made if there is none yet.
pub async fn direct(app: &App, session: &Session, usernames: &[String]) -> Result<Direct, Error> {
    if usernames.is_empty() {
        return Err(Error::Invalid(Invalid(
            "name at least one person in `usernames`".into(),
        )));
    }
    if usernames.len() >= MAX_DIRECT_MEMBERS * 4 {
        return Err(too_many_people());
    }
    let mut people: Vec<(UserId, String)> = vec![(session.user_id, session.username.clone())];
    for name in usernames {
        let username = Username::parse(name)?;
        let account = app
            .log
            .store
            .account(username.as_str())
            .await?
            .filter(|account| account.active)
            .ok_or_else(|| Error::NotFound(format!("account called `{}`", username.as_str())))?;
        if !people.iter().any(|(id, _)| *id == account.id) {
            people.push((account.id, account.username));
        }
    }
    if people.len() > MAX_DIRECT_MEMBERS {
        return Err(too_many_people());
    }
    let room = NewRoom {
        name: RoomName::direct(getrandom::u64().map_err(|e| Error::Internal(format!("no randomness: {e}")))?)
            .as_str()
            .to_owned(),
        kind: RoomKind::Direct,
        topic: None,
        created_by: session.user_id,
        creator: session.username.clone(),
        members: people,
    };
    let key = room.direct_key().unwrap_or_default();
    let mut members: Vec<String> = room.members.iter().map(|(_, name)| name.clone()).collect();
    members.sort_by_key(|name| name.to_lowercase());
    if let Some(room) = app.log.store.direct_room(&key).await? {
        return Ok(Direct {
            room,
            created: false,
            members,
        });
    }
    app.limits.dm(session.user_id)?;
    let created = match app.log.writer.create_room(room).await {
        Ok(event) => event.room().map(str::to_owned),
        // Made by someone else of the same people a moment ago: that one.
        Err(WriteError::Conflict("direct")) => None,
        Err(error) => return Err(error.into()),
    };
    let room = app
        .log
        .store
        .direct_room(&key)
        .await?
        .ok_or_else(|| Error::Internal("a direct room just made cannot be found".into()))?;
    if created.is_some() {
        tracing::info!(room = %room.name, by = %session.username, "direct room created");
    }
    Ok(Direct {
        room,
        created: created.is_some(),
        members,
    })
}

fn too_many_people() -> Error {
    Error::Invalid(Invalid(
        format!(
            "a direct message is for at most {MAX_DIRECT_MEMBERS} people, you included; make a private room for more"
        )
        .into(),
    ))
}

/// The members of a room the caller can read, with their status, online first: every active
/// account for a public room, its members for a private or direct one.
pub async fn members(app: &App, session: &Session, name: &str) -> Result<Vec<(String, Status)>, Error> {
    let room = find(app, session, name).await?;
    let of = room.kind().members_only().then_some(room.id);
    Ok(app.log.store.members(of).await?)
}

/// Adds (`join`) or removes `username` in the private room `name`: a member adds anyone
/// active; the creator or an admin removes; anyone removes themselves. The `member` event, or
/// `None` when they already were in (or out). Public and direct rooms refuse (`Conflict`).
pub async fn change_member(
    app: &App,
    session: &Session,
    name: &str,
    username: &str,
    join: bool,
) -> Result<Option<Event>, Error> {
    let room = find(app, session, name).await?;
    let username = Username::parse(username)?;
    match room.kind() {
        RoomKind::Private => {}
        RoomKind::Public => {
            return Err(Error::Conflict(
                "a public room's members are every account; it has none to add or remove".into(),
            ));
        }
        RoomKind::Direct => {
            return Err(Error::Conflict(
                "a direct message's people never change; start another one instead".into(),
            ));
        }
    }
    let account = app
        .log
        .store
        .account(username.as_str())
        .await?
        .filter(|account| account.active || !join)
        .ok_or_else(|| Error::NotFound(format!("account called `{}`", username.as_str())))?;
    let own = account.id == session.user_id;
    if !join && !own && room.created_by != Some(session.user_id) && !session.is_admin() {
        return Err(Error::Forbidden(
            "only the room's creator or an admin removes someone else; anyone may leave".into(),
        ));
    }
    app.limits.member_change(session.user_id)?;
    let change = MemberChange {
        room_id: room.id,
        room: room.name.clone(),
        by: session.user_id,
        by_name: session.username.clone(),
        member: account.id,
        member_name: account.username,
        join,
    };
    match app.log.writer.change_member(change).await {
        Ok(event) => {
            if event.is_some() {
                tracing::info!(room = %room.name, member = username.as_str(), join, by = %session.username, "members changed");
            }
            Ok(event)
        }
        // They left or were removed since `find`: the room is gone for them.
        Err(WriteError::Gone(_)) => Err(not_found(name)),
        Err(error) => Err(error.into()),
    }
}

/// Sets the topic (`Some("")` clears it) or archived flag of the room `name`: its creator or
/// an admin. The `room` event, or `None` when nothing changed.
pub async fn change(
    app: &App,
    session: &Session,
    name: &str,
    topic: Option<&str>,
    archived: Option<bool>,
) -> Result<(Room, Option<Event>), Error> {
    let room = find(app, session, name).await?;
    let topic = topic
        .map(|topic| Topic::parse(topic).map(|topic| topic.map(Topic::into_string)))
        .transpose()?;
    if room.kind() == RoomKind::Direct {
        return Err(Error::Conflict(
            "a direct message has no topic and is not archived".into(),
        ));
    }
    if room.created_by != Some(session.user_id) && !session.is_admin() {
        return Err(Error::Forbidden(
            "only the room's creator or an admin changes it".into(),
        ));
    }
    app.limits.room(session.user_id)?;
    let change = RoomChange {
        room_id: room.id,
        room: room.name.clone(),
        kind: room.kind(),
        by: session.user_id,
        by_name: session.username.clone(),
        topic,
        archived,
    };
    let event = match app.log.writer.change_room(change).await {
        Ok(event) => event,
        Err(WriteError::Gone(_)) => return Err(not_found(name)),
        Err(error) => return Err(error.into()),
    };
    app.log.store.forget_room(&room.name);
    let room = find(app, session, name).await?;
    Ok((room, event))
}
