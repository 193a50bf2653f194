//! `GET /api/rooms` lists rooms; `POST /api/rooms` creates one.

use poem::http::StatusCode;
use poem::web::{Data, Json};
use poem::{IntoResponse, Response, handler};
use serde::{Deserialize, Serialize};

use super::auth::CurrentUser;
use super::error::ApiError;
use super::{JsonBody, State};
use crate::app;
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
}

#[handler]
pub async fn list_rooms(Data(state): Data<&State>, user: CurrentUser) -> Result<Response, ApiError> {
    let rooms = app::rooms::list(&state.app, &user).await?;
    let rooms = rooms
        .iter()
        .map(|room| RoomView {
            name: &room.name,
            kind: RoomKind::Public.as_str(),
            topic: None,
            created_at: &room.created_at,
        })
        .collect();
    Ok(Json(RoomList { rooms }).into_response())
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
