//! `POST /api/rooms/{room}/messages` posts; `GET` reads a room's history.

use poem::http::StatusCode;
use poem::web::{Data, Json, Path, Query};
use poem::{IntoResponse, Response, handler};
use serde::{Deserialize, Serialize};

use super::{JsonBody, find_room};
use crate::AppState;
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::model::{ClientId, Content, Event, EventId, EventView};
use crate::writer::{Command, Outcome, Post};

/// Most messages one history request returns.
pub const MAX_HISTORY: u32 = 200;
const DEFAULT_HISTORY: u32 = 50;

#[derive(Deserialize)]
pub struct NewMessage {
    content: String,
    /// A UUID the client made up for this message: sending it again stores it once.
    client_id: Option<String>,
}

/// `201` with the stored event, once it is committed; `200` with the same event when the
/// `client_id` was posted before.
#[handler]
pub async fn post_message(
    Data(state): Data<&AppState>,
    Path(room): Path<String>,
    user: CurrentUser,
    JsonBody(body): JsonBody<NewMessage>,
) -> Result<Response, AppError> {
    let posted = store_message(state, &room, user, body.content, body.client_id.as_deref()).await?;
    let status = if posted.new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(Json(posted.event.view()).with_status(status).into_response())
}

/// A stored message, and whether this request stored it (or an earlier one with its `client_id`).
pub struct Posted {
    pub event: Event,
    pub new: bool,
}

/// Stores `content` in `room` as `user`; returns the event once committed.
pub async fn store_message(
    state: &AppState,
    room: &str,
    user: CurrentUser,
    content: String,
    client_id: Option<&str>,
) -> Result<Posted, AppError> {
    let content = Content::parse(content, state.max_message_chars)?;
    let client_id = client_id.map(ClientId::parse).transpose()?;
    // After the checks that cost nothing, before the ones that touch the database.
    state.limits.message(user.id)?;
    let room = find_room(state, room).await?;
    let outcome = state
        .writer
        .submit(Command::PostMessage(Post {
            room_id: room.id,
            room: room.name,
            user_id: user.id,
            username: user.username,
            content: content.into_string(),
            client_id,
        }))
        .await?;
    match outcome {
        Outcome::Event(event) => Ok(Posted { event, new: true }),
        Outcome::Existing(event) => Ok(Posted { event, new: false }),
        other => Err(AppError::Internal(format!("unexpected outcome {other:?}"))),
    }
}

/// Query parameters arrive as text so that a bad one gets a clear message, not a parse error.
#[derive(Deserialize)]
pub struct HistoryQuery {
    before: Option<String>,
    after: Option<String>,
    limit: Option<String>,
}

/// `{"messages": [...]}`, oldest first: the newest `limit` (default 50, at most 200) before
/// `before`, or the oldest `limit` after `after`.
#[handler]
pub async fn history(
    Data(state): Data<&AppState>,
    Path(room): Path<String>,
    Query(query): Query<HistoryQuery>,
    _user: CurrentUser,
) -> Result<Response, AppError> {
    let before = query.before.as_deref().map(|raw| parse_id("before", raw)).transpose()?;
    let after = query.after.as_deref().map(|raw| parse_id("after", raw)).transpose()?;
    let limit = match query.limit.as_deref() {
        None => DEFAULT_HISTORY,
        Some(raw) => raw
            .parse::<u32>()
            .ok()
            .filter(|limit| (1..=MAX_HISTORY).contains(limit))
            .ok_or_else(|| AppError::BadRequest(format!("`limit` must be a whole number from 1 to {MAX_HISTORY}")))?,
    };
    let room = find_room(state, &room).await?;
    let events = state.store.history(room.id, before, after, limit).await?;
    let messages = events.iter().map(Event::view).collect();
    Ok(Json(HistoryPage { messages }).into_response())
}

#[derive(Serialize)]
struct HistoryPage<'a> {
    messages: Vec<EventView<'a>>,
}

fn parse_id(name: &str, raw: &str) -> Result<EventId, AppError> {
    raw.parse::<EventId>()
        .ok()
        .filter(|id| *id >= 0)
        .ok_or_else(|| AppError::BadRequest(format!("`{name}` must be an event id (a whole number, 0 or more)")))
}
