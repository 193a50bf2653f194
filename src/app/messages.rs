//! Messages: posting one (perhaps as a reply), reading a room's history or one message, and
//! changing one: an edit by its author, a deletion by its author or an admin, reactions by any
//! reader. Every change is checked here against who may do it, then again by the writer
//! against the log as it is when the change is stored (the message may have been deleted, or
//! its room left, meanwhile).

use super::{App, Error, rooms, sessions::Session};
use crate::domain::{ClientId, Content, Emoji, Event, EventId, UserId};
use crate::eventlog::sqlite::{HistoryPage, Room};
use crate::eventlog::{Edit, Post, Posted, React, Target, WriteError};
use crate::wire::markdown;

/// Most messages one page of history holds, and how many it holds unless asked.
pub const MAX_HISTORY: u32 = 200;
pub const DEFAULT_HISTORY: u32 = 50;

/// Stores `content` in `room` as `session`'s user; returns it once committed. With a
/// `client_id` sent before, returns the message stored then (`new: false`), or `Conflict` if
/// that one says something else. `reply_to` names a message of the same room it answers.
pub async fn post(
    app: &App,
    session: &Session,
    room: &str,
    content: String,
    client_id: Option<&str>,
    reply_to: Option<EventId>,
) -> Result<Posted, Error> {
    let content = Content::parse(content, app.settings.max_message_chars)?;
    let client_id = client_id.map(ClientId::parse).transpose()?;
    // After the checks that cost nothing, before the ones that touch the database.
    app.limits.message(session.user_id)?;
    let name = room;
    let room = rooms::find(app, session, name).await?;
    refuse_archived(&room)?;
    let content = content.into_string();
    let (mentions, mentions_room) = mentions(app, &content).await?;
    let rendered = render(&content, &mentions);
    let post = Post {
        room_id: room.id,
        members_only: room.kind().members_only(),
        room: room.name,
        user_id: session.user_id,
        username: session.username.clone(),
        content,
        client_id,
        reply_to,
        mentions,
        mentions_room,
        rendered,
    };
    match app.log.writer.post(post).await {
        Ok(posted) => Ok(posted),
        // Removed from the room since it was checked.
        Err(WriteError::Gone("room")) => Err(rooms::not_found(name)),
        Err(WriteError::Gone(_)) => Err(Error::Invalid(crate::domain::Invalid(
            "`reply_to` must be a message of this room that is still there".into(),
        ))),
        Err(WriteError::Conflict(_)) => Err(Error::Conflict(
            "this client_id was already used for a different message".into(),
        )),
        Err(error) => Err(error.into()),
    }
}

/// Which page of history: the newest `limit` before `before` (or the newest of all), the
/// oldest `limit` after `after`, or `limit` centred on `around`.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub before: Option<EventId>,
    pub after: Option<EventId>,
    pub around: Option<EventId>,
    pub limit: u32,
}

/// A page of `room`'s messages in their current state, oldest first.
pub async fn history(app: &App, session: &Session, room: &str, page: Page) -> Result<Vec<Event>, Error> {
    let room = rooms::find(app, session, room).await?;
    let page = HistoryPage {
        before: page.before,
        after: page.after,
        around: page.around,
        limit: page.limit.clamp(1, MAX_HISTORY),
    };
    Ok(app.log.store.history(room.id, page).await?)
}

/// One message in its current state, and its room, if `session`'s user can read it: `404`
/// for one deleted, unknown or in a room they cannot read, alike.
pub async fn get(app: &App, session: &Session, id: EventId) -> Result<(Event, Room), Error> {
    let message = app.log.store.message(id).await?.ok_or_else(|| not_found(id))?;
    let room = message.room().ok_or_else(|| not_found(id))?;
    let room = rooms::find(app, session, room).await.map_err(|error| match error {
        Error::NotFound(_) => not_found(id),
        other => other,
    })?;
    Ok((message, room))
}

/// The author changes the text of their message: its `edit` event, or `None` when it already
/// says that.
pub async fn edit(app: &App, session: &Session, id: EventId, content: String) -> Result<Option<Event>, Error> {
    let content = Content::parse(content, app.settings.max_message_chars)?;
    app.limits.edit(session.user_id)?;
    let (message, room) = get(app, session, id).await?;
    if message.user_id != session.user_id {
        return Err(Error::Forbidden("only its author can edit a message".into()));
    }
    refuse_archived(&room)?;
    let content = content.into_string();
    let (mentions, mentions_room) = mentions(app, &content).await?;
    let rendered = render(&content, &mentions);
    let edit = Edit {
        target: target(session, id, &room),
        content,
        mentions,
        mentions_room,
        rendered,
    };
    gone_is_not_found(app.log.writer.edit(edit).await, id)
}

/// The author or an admin deletes a message: its text, and every earlier version of it, are
/// erased from the database; its `delete` event.
pub async fn delete(app: &App, session: &Session, id: EventId) -> Result<Event, Error> {
    app.limits.edit(session.user_id)?;
    let (message, room) = get(app, session, id).await?;
    if message.user_id != session.user_id && !session.is_admin() {
        return Err(Error::Forbidden(
            "only its author or an admin can delete a message".into(),
        ));
    }
    gone_is_not_found(app.log.writer.delete(target(session, id, &room)).await, id)
}

/// Adds (`add`) or takes back `session`'s user's reaction to a message: its `reaction` event,
/// or `None` when it already was so.
pub async fn react(app: &App, session: &Session, id: EventId, emoji: &str, add: bool) -> Result<Option<Event>, Error> {
    let emoji = Emoji::parse(emoji)?;
    app.limits.reaction(session.user_id)?;
    let (_, room) = get(app, session, id).await?;
    refuse_archived(&room)?;
    let react = React {
        target: target(session, id, &room),
        emoji: emoji.into_string(),
        add,
    };
    match app.log.writer.react(react).await {
        Err(WriteError::Conflict(_)) => Err(Error::Conflict(
            "this message has as many different reactions as it can take; add to one of them".into(),
        )),
        outcome => gone_is_not_found(outcome, id),
    }
}

/// The accounts `content` mentions (`@name`), as the accounts spell their names, and whether
/// it mentions the whole room (`@here`, `@room`): then everyone who can read the room is
/// mentioned, and nobody who cannot.
async fn mentions(app: &App, content: &str) -> Result<(Vec<(UserId, String)>, bool), Error> {
    let mut names = markdown::mentioned_names(content);
    let whole_room = names.iter().any(|name| markdown::is_room_mention(name));
    names.retain(|name| !markdown::is_room_mention(name));
    if names.is_empty() {
        return Ok((Vec::new(), whole_room));
    }
    Ok((app.log.store.accounts_named(&names).await?, whole_room))
}

/// `content` as the page shows it, rendered here rather than by the writer: a request's own
/// task does the work, in parallel with every other.
fn render(content: &str, mentions: &[(UserId, String)]) -> String {
    let names: Vec<String> = mentions.iter().map(|(_, name)| name.clone()).collect();
    markdown::render(content, &names)
}

fn target(session: &Session, message_id: EventId, room: &Room) -> Target {
    Target {
        message_id,
        room_id: room.id,
        room: room.name.clone(),
        members_only: room.kind().members_only(),
        by: session.user_id,
        by_name: session.username.clone(),
    }
}

fn refuse_archived(room: &Room) -> Result<(), Error> {
    if room.archived {
        return Err(Error::Conflict(
            "this room is archived: it keeps its history but takes no new messages or changes".into(),
        ));
    }
    Ok(())
}

fn not_found(id: EventId) -> Error {
    Error::NotFound(format!("message {id}"))
}

/// Deleted, or its room left, since it was checked: as if it never was.
fn gone_is_not_found<T>(outcome: Result<T, WriteError>, id: EventId) -> Result<T, Error> {
    outcome.map_err(|error| match error {
        WriteError::Gone(_) => not_found(id),
        other => other.into(),
    })
}
