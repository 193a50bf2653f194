//! `GET /api/rooms` lists rooms, a page at a time; `POST /api/rooms` creates one.

use poem::http::StatusCode;
use poem::web::{Data, Json, Query};
use poem::{IntoResponse, Response, handler};
use serde::{Deserialize, Serialize};

use super::auth::CurrentUser;
use super::error::ApiError;
use super::{JsonBody, State};
use crate::app;
use crate::app::rooms::{DEFAULT_ROOMS, MAX_ROOMS};
use crate::domain::{EventKind, RoomKind};

/// A room as the API shows it.
#[derive(Serialize)]
struct RoomView<'a> {
    name: &'a str,
    kind: &'static str,
    topic: Option<&'a str>,
    created_at: &'a str,
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
    let rooms = page
        .rooms
        .iter()
        .map(|room| RoomView {
            name: &room.name,
            kind: RoomKind::Public.as_str(),
            topic: None,
            created_at: &room.created_at,
        })
        .collect();
    let next = page.next.as_deref();
    Ok(Json(RoomList { rooms, next }).into_response())
}

#[derive(Deserialize)]
pub struct NewRoom {
    name: String,
}

/// `201` with the room, `409` if the name is taken.
#[handler]
pub async fn create_room(
    Data(state): Data<&State>,
    user: CurrentUser,
    JsonBody(body): JsonBody<NewRoom>,
) -> Result<Response, ApiError> {
    let event = app::rooms::create(&state.app, &user, &body.name).await?;
    let EventKind::Room { room, kind, topic, .. } = &event.kind else {
        return Err(app::Error::Internal("a new room's event is not a room event".into()).into());
    };
    let view = RoomView {
        name: room,
        kind: kind.as_str(),
        topic: topic.as_deref(),
        created_at: &event.created_at,
    };
    Ok(Json(view).with_status(StatusCode::CREATED).into_response())
}
