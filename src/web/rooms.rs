//! `GET /api/rooms` lists rooms; `POST /api/rooms` creates one.

use poem::http::StatusCode;
use poem::web::{Data, Json};
use poem::{IntoResponse, Response, handler};
use serde::{Deserialize, Serialize};

use super::JsonBody;
use crate::AppState;
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::model::RoomName;
use crate::store::Room;
use crate::writer::{Command, Outcome, WriteError};

#[handler]
pub async fn list_rooms(Data(state): Data<&AppState>, _user: CurrentUser) -> Result<Response, AppError> {
    let rooms = state.store.rooms().await?;
    Ok(Json(RoomList { rooms }).into_response())
}

#[derive(Serialize)]
struct RoomList {
    rooms: Vec<Room>,
}

#[derive(Deserialize)]
pub struct NewRoom {
    name: String,
}

/// `201` with the room, `409` if the name is taken.
#[handler]
pub async fn create_room(
    Data(state): Data<&AppState>,
    user: CurrentUser,
    JsonBody(body): JsonBody<NewRoom>,
) -> Result<Response, AppError> {
    let room = make_room(state, &user, &body.name).await?;
    Ok(Json(room).with_status(StatusCode::CREATED).into_response())
}

/// Creates the room `name`; `RoomTaken` if it exists.
pub async fn make_room(state: &AppState, user: &CurrentUser, name: &str) -> Result<Room, AppError> {
    let name = RoomName::parse(name)?;
    let command = Command::CreateRoom {
        name: name.as_str().to_owned(),
        created_by: user.id,
    };
    match state.writer.submit(command).await {
        Ok(Outcome::Room(room)) => {
            tracing::info!(room = %room.name, by = %user.username, "room created");
            Ok(room)
        }
        Ok(other) => Err(AppError::Internal(format!("unexpected outcome {other:?}"))),
        Err(WriteError::Conflict) => Err(AppError::RoomTaken(name.as_str().to_owned())),
        Err(error) => Err(error.into()),
    }
}
