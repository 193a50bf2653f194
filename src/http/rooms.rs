//! Rooms and direct messages: `GET /api/rooms` lists those the caller can read, a page at a
//! time; `POST /api/rooms` makes one, `PATCH` changes its topic or archives it; the members of
//! each, added and removed; `POST /api/dms` finds or makes a direct room.

use poem::http::StatusCode;
use poem::web::{Data, Json, Path, Query};
use poem::{IntoResponse, Response, handler};
use serde::{Deserialize, Serialize};

use super::auth::CurrentUser;
use super::error::ApiError;
use super::{JsonBody, State};
use crate::app;
use crate::app::rooms::{DEFAULT_ROOMS, MAX_ROOMS};
use crate::domain::{EventId, EventKind, RoomKind};
use crate::eventlog::sqlite::{Room, Unread};
use crate::wire::render;

/// A room as the API shows it: `{"name","kind","topic","archived","created_at"}`, a direct
/// room's `members`, and where listed for its reader, what they have not read of it:
/// `"unread","mentions","last_id","read","notify"`.
#[derive(Serialize)]
pub(super) struct RoomView<'a> {
    name: &'a str,
    kind: &'static str,
    topic: Option<&'a str>,
    archived: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    members: Option<&'a [String]>,
    created_at: &'a str,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    unread: Option<UnreadView>,
}

/// What the reader has not read of a room.
#[derive(Serialize)]
struct UnreadView {
    /// Counted to `MAX_UNREAD`.
    unread: u32,
    mentions: u32,
    last_id: EventId,
    read: EventId,
    notify: &'static str,
}

impl From<&Unread> for UnreadView {
    fn from(unread: &Unread) -> Self {
        Self {
            unread: unread.unread,
            mentions: unread.mentions,
            last_id: unread.last_id,
            read: unread.read,
            notify: unread.notify.0.as_str(),
        }
    }
}

impl<'a> RoomView<'a> {
    fn of(room: &'a Room, members: Option<&'a [String]>) -> Self {
        Self {
            name: &room.name,
            kind: room.kind().as_str(),
            topic: room.topic.as_deref(),
            archived: room.archived,
            members: members.filter(|_| room.kind() == RoomKind::Direct),
            created_at: &room.created_at,
            unread: None,
        }
    }

    fn unread(self, unread: Option<&Unread>) -> Self {
        Self {
            unread: unread.map(UnreadView::from),
            ..self
        }
    }
}

#[derive(Serialize)]
struct RoomList<'a> {
    rooms: Vec<RoomView<'a>>,
    /// Pass as `after` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<&'a str>,
}

/// Query parameters arrive as text so that a bad one gets a clear message, not a parse error.
#[derive(Deserialize)]
pub struct RoomsQuery {
    after: Option<String>,
    limit: Option<String>,
}

/// `{"rooms": [...], "next"?}`: the rooms the user can read by name, `limit` (default 100, at
/// most 500) after the name `after`.
#[handler]
pub async fn list_rooms(
    Data(state): Data<&State>,
    Query(query): Query<RoomsQuery>,
    user: CurrentUser,
) -> Result<Response, ApiError> {
    let limit = match query.limit.as_deref() {
        None => DEFAULT_ROOMS,
        Some(raw) => raw
            .parse::<u32>()
            .ok()
            .filter(|limit| (1..=MAX_ROOMS).contains(limit))
            .ok_or_else(|| ApiError::BadRequest(format!("`limit` must be a whole number from 1 to {MAX_ROOMS}")))?,
    };
    if query.after.as_ref().is_some_and(|after| after.len() > 256) {
        return Err(ApiError::BadRequest("`after` is a room name".into()));
    }
    let page = app::rooms::list(&state.app, &user, query.after.as_deref(), limit).await?;
    let unread = app::reads::unread(&state.app, &user, &page.rooms).await?;
    let rooms = page
        .rooms
        .iter()
        .map(|room| RoomView::of(room, page.members.get(&room.id).map(Vec::as_slice)).unread(unread.get(&room.id)))
        .collect();
    let next = page.next.as_deref();
    Ok(Json(RoomList { rooms, next }).into_response())
}

#[derive(Deserialize)]
pub struct NewRoom {
    name: String,
    #[serde(default)]
    private: bool,
    topic: Option<String>,
}

/// `201` with the room, `409` if the name is taken, `422` for a bad name or topic.
#[handler]
pub async fn create_room(
    Data(state): Data<&State>,
    user: CurrentUser,
    JsonBody(body): JsonBody<NewRoom>,
) -> Result<Response, ApiError> {
    let event = app::rooms::create(&state.app, &user, &body.name, body.private, body.topic.as_deref()).await?;
    let EventKind::Room {
        room,
        kind,
        topic,
        archived,
        ..
    } = &event.kind
    else {
        return Err(app::Error::Internal("a new room's event is not a room event".into()).into());
    };
    let view = RoomView {
        name: room,
        kind: kind.as_str(),
        topic: topic.as_deref(),
        archived: *archived,
        members: None,
        created_at: &event.created_at,
        unread: None,
    };
    Ok(Json(view).with_status(StatusCode::CREATED).into_response())
}

/// `GET /api/rooms/{room}`: the room as listed, with what the caller has not read of it.
#[handler]
pub async fn get_room(
    Data(state): Data<&State>,
    Path(room): Path<String>,
    user: CurrentUser,
) -> Result<Response, ApiError> {
    let (room, members) = app::rooms::get(&state.app, &user, &room).await?;
    let unread = app::reads::unread(&state.app, &user, std::slice::from_ref(&room)).await?;
    Ok(Json(RoomView::of(&room, Some(&members)).unread(unread.get(&room.id))).into_response())
}

/// `PUT /api/rooms/{room}/read` `{"up_to": ID}`: `204`, whether or not the cursor moved (it
/// never moves back).
#[derive(Deserialize)]
pub struct ReadUpTo {
    up_to: serde_json::Value,
}

#[handler]
pub async fn mark_read(
    Data(state): Data<&State>,
    Path(room): Path<String>,
    user: CurrentUser,
    JsonBody(body): JsonBody<ReadUpTo>,
) -> Result<Response, ApiError> {
    let up_to = body
        .up_to
        .as_i64()
        .filter(|id| *id >= 0)
        .map(EventId)
        .ok_or_else(|| ApiError::Unprocessable("`up_to` must be an event id: a whole number, 0 or more".into()))?;
    app::reads::mark_read(&state.app, &user, &room, up_to).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `PUT /api/rooms/{room}/notifications` `{"level": "all" | "mentions" | "none"}`: `204`.
#[derive(Deserialize)]
pub struct Level {
    level: String,
}

#[handler]
pub async fn set_notifications(
    Data(state): Data<&State>,
    Path(room): Path<String>,
    user: CurrentUser,
    JsonBody(body): JsonBody<Level>,
) -> Result<Response, ApiError> {
    app::reads::set_notify(&state.app, &user, &room, &body.level).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `PATCH /api/rooms/{room}` `{"topic"?, "archived"?}`: a `null` or empty topic clears it.
#[derive(Deserialize)]
pub struct RoomChange {
    #[serde(default, deserialize_with = "present")]
    topic: Option<Option<String>>,
    archived: Option<bool>,
}

/// A field that is present, even as `null`, is `Some`.
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

/// `200` with the room as it is now; its creator or an admin.
#[handler]
pub async fn update_room(
    Data(state): Data<&State>,
    Path(room): Path<String>,
    user: CurrentUser,
    JsonBody(body): JsonBody<RoomChange>,
) -> Result<Response, ApiError> {
    let topic = body.topic.map(Option::unwrap_or_default);
    let (room, _) = app::rooms::change(&state.app, &user, &room, topic.as_deref(), body.archived).await?;
    Ok(Json(RoomView::of(&room, None)).into_response())
}

#[derive(Serialize)]
struct MemberView<'a> {
    username: &'a str,
    status: &'static str,
}

/// `[{"username","status"}]`: a public room's members are every active account.
#[handler]
pub async fn list_members(
    Data(state): Data<&State>,
    Path(room): Path<String>,
    user: CurrentUser,
) -> Result<Response, ApiError> {
    let members = app::rooms::members(&state.app, &user, &room).await?;
    let view: Vec<MemberView> = members
        .iter()
        .map(|(username, status)| MemberView {
            username,
            status: status.as_str(),
        })
        .collect();
    Ok(Json(view).into_response())
}

/// `PUT /api/rooms/{room}/members/{username}`: `200` with the `member` event, `204` when they
/// already were a member.
#[handler]
pub async fn add_member(
    Data(state): Data<&State>,
    Path((room, username)): Path<(String, String)>,
    user: CurrentUser,
) -> Result<Response, ApiError> {
    member_change(state, &user, &room, &username, true).await
}

/// `DELETE /api/rooms/{room}/members/{username}`: `200` with the `member` event, `204` when
/// they were not a member.
#[handler]
pub async fn remove_member(
    Data(state): Data<&State>,
    Path((room, username)): Path<(String, String)>,
    user: CurrentUser,
) -> Result<Response, ApiError> {
    member_change(state, &user, &room, &username, false).await
}

async fn member_change(
    state: &State,
    user: &CurrentUser,
    room: &str,
    username: &str,
    join: bool,
) -> Result<Response, ApiError> {
    match app::rooms::change_member(&state.app, user, room, username, join).await? {
        Some(event) => Ok(Json(render::Json(&event)).into_response()),
        None => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

#[derive(Deserialize)]
pub struct NewDirect {
    usernames: Vec<String>,
}

/// `POST /api/dms` `{"usernames":[...]}`: the direct room of exactly those people and the
/// caller, `201` made now, `200` found.
#[handler]
pub async fn direct(
    Data(state): Data<&State>,
    user: CurrentUser,
    JsonBody(body): JsonBody<NewDirect>,
) -> Result<Response, ApiError> {
    let direct = app::rooms::direct(&state.app, &user, &body.usernames).await?;
    let status = if direct.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(Json(RoomView::of(&direct.room, Some(&direct.members)))
        .with_status(status)
        .into_response())
}
