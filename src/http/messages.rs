//! `POST /api/rooms/{room}/messages` posts; `GET` reads a room's history.

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
    let posted = messages::post(&state.app, &user, &room, body.content, body.client_id.as_deref()).await?;
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
    let limit = match query.limit.as_deref() {
        None => DEFAULT_HISTORY,
        Some(raw) => raw
            .parse::<u32>()
            .ok()
            .filter(|limit| (1..=MAX_HISTORY).contains(limit))
            .ok_or_else(|| ApiError::BadRequest(format!("`limit` must be a whole number from 1 to {MAX_HISTORY}")))?,
    };
    let events = messages::history(&state.app, &user, &room, Page { before, after, limit }).await?;
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
