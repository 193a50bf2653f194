//! Messages: `POST /api/rooms/{room}/messages` posts and `GET` reads a room's history;
//! `/api/messages/{id}` reads, edits (`PATCH`) and deletes one; `.../reactions/{emoji}` adds
//! (`PUT`) and takes back (`DELETE`) a reaction.

use poem::http::StatusCode;
use poem::web::{Data, Json, Path, Query};
use poem::{IntoResponse, Response, handler};
use serde::{Deserialize, Serialize};

use super::auth::CurrentUser;
use super::error::ApiError;
use super::{JsonBody, State};
use crate::app::messages::{self, DEFAULT_HISTORY, MAX_HISTORY, Page};
use crate::domain::EventId;
use crate::wire::render;

#[derive(Deserialize)]
pub struct NewMessage {
    content: String,
    /// A UUID the client made up for this message: sending it again stores it once.
    client_id: Option<String>,
    /// The message of the room it answers.
    reply_to: Option<i64>,
}

/// `201` with the stored event, once it is committed; `200` with the same event when the
/// `client_id` was posted before.
#[handler]
pub async fn post_message(
    Data(state): Data<&State>,
    Path(room): Path<String>,
    user: CurrentUser,
    JsonBody(body): JsonBody<NewMessage>,
) -> Result<Response, ApiError> {
    let reply_to = body
        .reply_to
        .map(|id| {
            Some(id)
                .filter(|id| *id > 0)
                .map(EventId)
                .ok_or_else(|| ApiError::Unprocessable("`reply_to` must be a message's id".into()))
        })
        .transpose()?;
    let posted = messages::post(
        &state.app,
        &user,
        &room,
        body.content,
        body.client_id.as_deref(),
        reply_to,
    )
    .await?;
    let status = if posted.new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(Json(render::Json(&posted.event)).with_status(status).into_response())
}

/// Query parameters arrive as text so that a bad one gets a clear message, not a parse error.
#[derive(Deserialize)]
pub struct HistoryQuery {
    before: Option<String>,
    after: Option<String>,
    around: Option<String>,
    limit: Option<String>,
}

/// `{"messages": [...]}`, oldest first: the newest `limit` (default 50, at most 200) before
/// `before`, or the oldest `limit` after `after`.
#[handler]
pub async fn history(
    Data(state): Data<&State>,
    Path(room): Path<String>,
    Query(query): Query<HistoryQuery>,
    user: CurrentUser,
) -> Result<Response, ApiError> {
    let before = query.before.as_deref().map(|raw| parse_id("before", raw)).transpose()?;
    let after = query.after.as_deref().map(|raw| parse_id("after", raw)).transpose()?;
    let around = query.around.as_deref().map(|raw| parse_id("around", raw)).transpose()?;
    if around.is_some() && (before.is_some() || after.is_some()) {
        return Err(ApiError::BadRequest(
            "`around` goes alone: not with `before` or `after`".into(),
        ));
    }
    let limit = match query.limit.as_deref() {
        None => DEFAULT_HISTORY,
        Some(raw) => raw
            .parse::<u32>()
            .ok()
            .filter(|limit| (1..=MAX_HISTORY).contains(limit))
            .ok_or_else(|| ApiError::BadRequest(format!("`limit` must be a whole number from 1 to {MAX_HISTORY}")))?,
    };
    let page = Page {
        before,
        after,
        around,
        limit,
    };
    let events = messages::history(&state.app, &user, &room, page).await?;
    let messages = events.iter().map(render::Json).collect();
    Ok(Json(HistoryPage { messages }).into_response())
}

#[derive(Serialize)]
struct HistoryPage<'a> {
    messages: Vec<render::Json<'a>>,
}

/// An event id in a query: a whole number, 0 or more.
pub fn parse_id(name: &str, raw: &str) -> Result<EventId, ApiError> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id >= 0)
        .map(EventId)
        .ok_or_else(|| ApiError::BadRequest(format!("`{name}` must be an event id (a whole number, 0 or more)")))
}

#[derive(Deserialize)]
pub struct NewContent {
    content: String,
}

/// `GET /api/messages/{id}`: the message in its current state.
#[handler]
pub async fn get_message(
    Data(state): Data<&State>,
    Path(id): Path<String>,
    user: CurrentUser,
) -> Result<Response, ApiError> {
    let id = message_id(&id)?;
    let (message, _) = messages::get(&state.app, &user, id).await?;
    Ok(Json(render::Json(&message)).into_response())
}

/// `PATCH /api/messages/{id}` `{"content"}`: `200` with the `edit` event; `204` when the
/// message already says that.
#[handler]
pub async fn edit_message(
    Data(state): Data<&State>,
    Path(id): Path<String>,
    user: CurrentUser,
    JsonBody(body): JsonBody<NewContent>,
) -> Result<Response, ApiError> {
    let id = message_id(&id)?;
    let edited = messages::edit(&state.app, &user, id, body.content).await?;
    Ok(event_or_no_content(edited.as_ref()))
}

/// `DELETE /api/messages/{id}`: `200` with the `delete` event.
#[handler]
pub async fn delete_message(
    Data(state): Data<&State>,
    Path(id): Path<String>,
    user: CurrentUser,
) -> Result<Response, ApiError> {
    let id = message_id(&id)?;
    let deleted = messages::delete(&state.app, &user, id).await?;
    Ok(Json(render::Json(&deleted)).into_response())
}

/// `PUT /api/messages/{id}/reactions/{emoji}`: `200` with the `reaction` event; `204` when
/// the caller had reacted so already.
#[handler]
pub async fn add_reaction(
    Data(state): Data<&State>,
    Path((id, emoji)): Path<(String, String)>,
    user: CurrentUser,
) -> Result<Response, ApiError> {
    react(state, &id, &emoji, &user, true).await
}

/// `DELETE /api/messages/{id}/reactions/{emoji}`: `200` with the `reaction` event; `204` when
/// the caller had not reacted so.
#[handler]
pub async fn remove_reaction(
    Data(state): Data<&State>,
    Path((id, emoji)): Path<(String, String)>,
    user: CurrentUser,
) -> Result<Response, ApiError> {
    react(state, &id, &emoji, &user, false).await
}

async fn react(state: &State, id: &str, emoji: &str, user: &CurrentUser, add: bool) -> Result<Response, ApiError> {
    let id = message_id(id)?;
    let changed = messages::react(&state.app, user, id, emoji, add).await?;
    Ok(event_or_no_content(changed.as_ref()))
}

fn event_or_no_content(event: Option<&crate::domain::Event>) -> Response {
    match event {
        Some(event) => Json(render::Json(event)).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    }
}

/// A message's id in a path: a positive whole number; anything else names no message.
fn message_id(raw: &str) -> Result<EventId, ApiError> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .map(EventId)
        .ok_or_else(|| ApiError::App(crate::app::Error::NotFound(format!("message {raw}"))))
}
