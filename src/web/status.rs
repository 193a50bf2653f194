//! `PUT /api/status`: the signed-in user sets what the others see.

use poem::web::{Data, Json};
use poem::{IntoResponse, Response, handler};
use serde::Deserialize;

use super::JsonBody;
use crate::AppState;
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::model::{Event, Status};
use crate::writer::Command;

#[derive(Deserialize)]
pub struct NewStatus {
    status: String,
}

/// `200` with the stored status event.
#[handler]
pub async fn set_status(
    Data(state): Data<&AppState>,
    user: CurrentUser,
    JsonBody(body): JsonBody<NewStatus>,
) -> Result<Response, AppError> {
    let event = store_status(state, user, &body.status).await?;
    Ok(Json(event.view()).into_response())
}

/// Stores `user`'s new status; returns the event once committed.
pub async fn store_status(state: &AppState, user: CurrentUser, status: &str) -> Result<Event, AppError> {
    let status: Status = status.parse()?;
    let event = state
        .writer
        .submit_event(Command::SetStatus {
            user_id: user.id,
            username: user.username,
            status,
        })
        .await?;
    Ok(event)
}
