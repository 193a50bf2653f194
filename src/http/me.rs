//! The signed-in user's own account: `GET /api/me`, `PUT /api/me/password`, and their
//! sessions (`GET /api/me/sessions`, `DELETE /api/me/sessions/{id}`, `DELETE
//! /api/me/sessions` for every other one).

use poem::http::StatusCode;
use poem::web::{Data, Json, Path};
use poem::{IntoResponse, Request, Response, handler};
use serde::{Deserialize, Serialize};

use super::auth::CurrentUser;
use super::client::client_ip;
use super::error::ApiError;
use super::{JsonBody, State};
use crate::app;

#[derive(Serialize)]
struct Me<'a> {
    username: &'a str,
    role: &'static str,
    status: &'static str,
}

#[handler]
pub async fn me(Data(state): Data<&State>, user: CurrentUser) -> Result<Response, ApiError> {
    let status = app::status::shown(&state.app, &user).await?;
    Ok(Json(Me {
        username: &user.username,
        role: user.role.as_str(),
        status: status.as_str(),
    })
    .into_response())
}

#[derive(Deserialize)]
pub struct NewPassword {
    current: String,
    new: String,
}

/// `204`: the password is changed and every other session of the user has ended. `403` for a
/// wrong current password, `422` for a new one that breaks the rules.
#[handler]
pub async fn change_password(
    req: &Request,
    Data(state): Data<&State>,
    user: CurrentUser,
    JsonBody(body): JsonBody<NewPassword>,
) -> Result<StatusCode, ApiError> {
    let address = client_ip(req);
    app::accounts::change_password(&state.app, &user, address, body.current, body.new).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize)]
struct SessionView<'a> {
    id: &'a str,
    created_at: &'a str,
    last_used_at: &'a str,
    address: Option<&'a str>,
    user_agent: Option<&'a str>,
    current: bool,
}

#[derive(Serialize)]
struct SessionList<'a> {
    sessions: Vec<SessionView<'a>>,
}

/// `{"sessions": [...]}`, most recently used first.
#[handler]
pub async fn sessions(Data(state): Data<&State>, user: CurrentUser) -> Result<Response, ApiError> {
    let listed = app::sessions::list(&state.app, &user).await?;
    let sessions = listed
        .iter()
        .map(|session| SessionView {
            id: &session.id,
            created_at: &session.created_at,
            last_used_at: &session.last_used_at,
            address: session.address.as_deref(),
            user_agent: session.user_agent.as_deref(),
            current: session.current,
        })
        .collect();
    Ok(Json(SessionList { sessions }).into_response())
}

/// `204`: the session has ended, and its streams with `logout`; `404` if it is none of the
/// caller's.
#[handler]
pub async fn revoke_session(
    Data(state): Data<&State>,
    Path(id): Path<String>,
    user: CurrentUser,
) -> Result<StatusCode, ApiError> {
    app::sessions::revoke(&state.app, &user, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `204`: every session of the caller but this one has ended.
#[handler]
pub async fn revoke_other_sessions(Data(state): Data<&State>, user: CurrentUser) -> Result<StatusCode, ApiError> {
    app::sessions::revoke_others(&state.app, &user).await?;
    Ok(StatusCode::NO_CONTENT)
}
