//! `PUT /api/status`: the signed-in user sets what the others see.

use poem::web::{Data, Json};
use poem::{IntoResponse, Response, handler};
use serde::Deserialize;

use super::auth::CurrentUser;
use super::error::ApiError;
use super::{JsonBody, State};
use crate::app;
use crate::wire::render;

#[derive(Deserialize)]
pub struct NewStatus {
    status: String,
}

/// `200` with the stored status event.
#[handler]
pub async fn set_status(
    Data(state): Data<&State>,
    user: CurrentUser,
    JsonBody(body): JsonBody<NewStatus>,
) -> Result<Response, ApiError> {
    let event = app::status::set(&state.app, &user, &body.status).await?;
    Ok(Json(render::Json(&event)).into_response())
}
