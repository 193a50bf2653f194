//! Admins' invites: `POST /api/invites` makes one, `GET /api/invites` lists the live ones,
//! `DELETE /api/invites/{code}` revokes one. Each carries the link a new member opens,
//! `<the server's origin>/join/<code>`.

use poem::http::StatusCode;
use poem::web::{Data, Json, Path};
use poem::{IntoResponse, Request, Response, handler};
use serde::{Deserialize, Serialize};

use super::auth::CurrentUser;
use super::error::ApiError;
use super::{JsonBody, State, origin};
use crate::app;
use crate::eventlog::Invite;

#[derive(Serialize)]
pub struct InviteView<'a> {
    code: &'a str,
    url: String,
    uses: i64,
    uses_left: i64,
    expires_at: &'a str,
    created_at: &'a str,
    /// The admin who made it; `null`: the operator's command line.
    created_by: Option<&'a str>,
}

impl<'a> InviteView<'a> {
    pub fn of(invite: &'a Invite, base: &str) -> Self {
        Self {
            code: &invite.code,
            url: join_url(base, &invite.code),
            uses: invite.uses,
            uses_left: invite.uses_left,
            expires_at: &invite.expires_at,
            created_at: &invite.created_at,
            created_by: invite.created_by.as_deref(),
        }
    }
}

/// The page a new member opens: `base` (an origin) and `/join/<code>`.
pub fn join_url(base: &str, code: &str) -> String {
    format!("{base}/join/{code}")
}

/// Where the links handed out in answer to `req` start.
pub fn base_url(req: &Request, state: &State) -> String {
    let authority = origin::authority(req).ok().flatten();
    state.origins.base_url(authority.as_deref())
}

#[derive(Deserialize)]
pub struct NewInvite {
    uses: Option<i64>,
    expires_in_hours: Option<i64>,
}

/// `201` with the invite. `403` for someone who is not an admin, `422` for uses outside 1 to
/// 1,000 or hours outside 1 to 8,760, `409` past the bound on live invites.
#[handler]
pub async fn create_invite(
    req: &Request,
    Data(state): Data<&State>,
    user: CurrentUser,
    JsonBody(body): JsonBody<NewInvite>,
) -> Result<Response, ApiError> {
    let invite = app::invites::create(&state.app, &user, body.uses, body.expires_in_hours).await?;
    let base = base_url(req, state);
    Ok(Json(InviteView::of(&invite, &base))
        .with_status(StatusCode::CREATED)
        .into_response())
}

#[derive(Serialize)]
struct InviteList<'a> {
    invites: Vec<InviteView<'a>>,
}

/// `{"invites": [...]}`: the live ones, newest first.
#[handler]
pub async fn list_invites(req: &Request, Data(state): Data<&State>, user: CurrentUser) -> Result<Response, ApiError> {
    let invites = app::invites::list(&state.app, &user).await?;
    let base = base_url(req, state);
    let invites = invites.iter().map(|invite| InviteView::of(invite, &base)).collect();
    Ok(Json(InviteList { invites }).into_response())
}

/// `204`: nobody joins with it from now on; `404` if no invite has that code.
#[handler]
pub async fn revoke_invite(
    Data(state): Data<&State>,
    Path(code): Path<String>,
    user: CurrentUser,
) -> Result<StatusCode, ApiError> {
    app::invites::revoke(&state.app, &user, &code).await?;
    Ok(StatusCode::NO_CONTENT)
}
