//! `POST /api/sessions` signs in to an existing account (`POST /api/users` makes one);
//! `DELETE /api/sessions` signs out.

use poem::http::{StatusCode, header};
use poem::web::{Data, Json};
use poem::{FromRequest, IntoResponse, Request, Response, handler};
use serde::{Deserialize, Serialize};

use super::auth::{self, CurrentUser};
use super::client::client_ip;
use super::error::ApiError;
use super::{JsonBody, State};
use crate::app;

#[derive(Deserialize)]
pub struct SignIn {
    username: String,
    password: String,
}

#[derive(Serialize)]
struct Session<'a> {
    username: &'a str,
    token: &'a str,
    role: &'static str,
}

/// `200`, a fresh token and a cookie when the password matches the account; `401`, with one
/// body for both, for an unknown name or a wrong password.
#[handler]
pub async fn sign_in(
    req: &Request,
    Data(state): Data<&State>,
    JsonBody(body): JsonBody<SignIn>,
) -> Result<Response, ApiError> {
    let signed_in = app::accounts::sign_in(&state.app, &origin(req), &body.username, body.password).await?;
    let session = Session {
        username: &signed_in.username,
        token: &signed_in.token,
        role: signed_in.role.as_str(),
    };
    Ok(Json(session)
        .with_header(header::SET_COOKIE, auth::session_cookie(req, &signed_in.token))
        .with_header(header::CACHE_CONTROL, "no-store")
        .into_response())
}

/// Where a sign-in comes from: the client's address and its `User-Agent`.
pub fn origin(req: &Request) -> app::accounts::Origin {
    app::accounts::Origin {
        address: client_ip(req),
        user_agent: req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|agent| agent.to_str().ok())
            .map(str::to_owned),
    }
}

/// Revokes the session the request carries, if any, and clears the cookie: `204` either way.
#[handler]
pub async fn sign_out(req: &Request, Data(state): Data<&State>) -> Result<Response, ApiError> {
    revoke(req, state).await?;
    Ok(StatusCode::NO_CONTENT
        .with_header(header::SET_COOKIE, auth::cleared_cookie(req))
        .into_response())
}

/// Revokes the session `req` carries, if it carries a valid one.
pub async fn revoke(req: &Request, state: &State) -> Result<(), ApiError> {
    if let Ok(user) = CurrentUser::from_request_without_body(req).await {
        app::sessions::sign_out(&state.app, &user).await?;
    }
    Ok(())
}
