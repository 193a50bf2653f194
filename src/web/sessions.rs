//! `POST /api/sessions` signs in, creating the account if the name is free;
//! `DELETE /api/sessions` signs out.

use poem::http::{StatusCode, header};
use std::net::IpAddr;

use poem::web::{Data, Json, RemoteAddr};
use poem::{FromRequest, IntoResponse, Request, Response, handler};
use serde::{Deserialize, Serialize};

use super::JsonBody;
use crate::AppState;
use crate::auth::{self, CurrentUser};
use crate::error::AppError;
use crate::model::{Password, Username};
use crate::writer::{Command, WriteError};

#[derive(Deserialize)]
pub struct SignIn {
    username: String,
    password: String,
}

#[derive(Serialize)]
struct Session<'a> {
    username: &'a str,
    token: &'a str,
}

/// `201` and a new account when the name is free, `200` when the password matches the
/// existing account, `401` when it does not. Either way: a fresh token, and a cookie.
#[handler]
pub async fn sign_in(
    Data(state): Data<&AppState>,
    remote: &RemoteAddr,
    JsonBody(body): JsonBody<SignIn>,
) -> Result<Response, AppError> {
    let session = authenticate(state, client_ip(remote), &body.username, body.password).await?;
    Ok(signed_in(session.status, &session.username, &session.token))
}

/// A new session for a signed-in (or just created) account.
pub struct NewSession {
    /// `201` for a new account, `200` for an existing one.
    pub status: StatusCode,
    /// As the account spells it.
    pub username: String,
    pub token: String,
}

/// The client's IP address, for the per-address sign-in allowance.
pub fn client_ip(remote: &RemoteAddr) -> Option<IpAddr> {
    remote.as_socket_addr().map(|addr| addr.ip())
}

/// Signs in as `username`, creating the account if the name is free. Each attempt counts
/// against the allowance of the name and of the client's `address`.
pub async fn authenticate(
    state: &AppState,
    address: Option<IpAddr>,
    username: &str,
    password: String,
) -> Result<NewSession, AppError> {
    let username = Username::parse(username)?;
    state.limits.sign_in(username.as_str(), address)?;
    let password = Password::parse(password)?;
    let (token, token_hash) = auth::new_token()?;

    if state.store.account(username.as_str()).await?.is_none() {
        let password_hash = state.hash_password(&password).await?;
        let command = Command::CreateAccount {
            username: username.as_str().to_owned(),
            password_hash,
            token_hash: token_hash.clone(),
        };
        match state.writer.submit(command).await {
            Ok(_) => {
                tracing::info!(username = username.as_str(), "account created");
                let username = username.as_str().to_owned();
                return Ok(NewSession {
                    status: StatusCode::CREATED,
                    username,
                    token,
                });
            }
            // Someone took the name a moment ago: sign in against their account.
            Err(WriteError::Conflict) => {}
            Err(error) => return Err(error.into()),
        }
    }

    let account = state
        .store
        .account(username.as_str())
        .await?
        .ok_or_else(|| AppError::Internal("account vanished during sign-in".into()))?;
    if !state.verify_password(&password, &account.password_hash).await? {
        return Err(AppError::WrongPassword);
    }
    state
        .writer
        .submit(Command::CreateSession {
            user_id: account.id,
            token_hash,
        })
        .await?;
    Ok(NewSession {
        status: StatusCode::OK,
        username: account.username,
        token,
    })
}

fn signed_in(status: StatusCode, username: &str, token: &str) -> Response {
    Json(Session { username, token })
        .with_status(status)
        .with_header(header::SET_COOKIE, auth::session_cookie(token))
        .with_header(header::CACHE_CONTROL, "no-store")
        .into_response()
}

/// Revokes the session the request carries, if any, and clears the cookie: `204` either way.
#[handler]
pub async fn sign_out(req: &Request, Data(state): Data<&AppState>) -> Result<Response, AppError> {
    revoke(req, state).await?;
    Ok(StatusCode::NO_CONTENT
        .with_header(header::SET_COOKIE, auth::cleared_cookie())
        .into_response())
}

/// Revokes the session `req` carries, if it carries a valid one.
pub async fn revoke(req: &Request, state: &AppState) -> Result<(), AppError> {
    if let Ok(user) = CurrentUser::from_request_without_body(req).await {
        state
            .writer
            .submit(Command::DeleteSession {
                token_hash: user.token_hash,
            })
            .await?;
    }
    Ok(())
}
