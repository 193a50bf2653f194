//! `PUT /api/status`: the signed-in user sets what the others see.

use poem::web::{Data, Json};
use poem::{IntoResponse, Response, handler};
use serde::Deserialize;

use super::JsonBody;
use crate::AppState;
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::model::Status;
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
    let status: Status = body.status.parse()?;
    let event = state
        .writer
        .submit_event(Command::SetStatus {
            user_id: user.id,
            username: user.username,
            status,
        })
        .await?;
    Ok(Json(event.view()).into_response())
}
