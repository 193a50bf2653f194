//! `GET /api/users` lists the active accounts (for mentions and direct messages); admins
//! `PATCH /api/users/{username}` to promote, demote, deactivate or reactivate one.

use poem::web::{Data, Json, Path};
use poem::{IntoResponse, Response, handler};
use serde::{Deserialize, Serialize};

use super::auth::CurrentUser;
use super::error::ApiError;
use super::{JsonBody, State};
use crate::app;
use crate::eventlog::sqlite::AccountListing;

#[derive(Serialize)]
pub struct UserView<'a> {
    username: &'a str,
    role: &'static str,
    status: &'static str,
    /// Listed only to admins, who also see deactivated accounts.
    #[serde(skip_serializing_if = "Option::is_none")]
    active: Option<bool>,
}

impl<'a> UserView<'a> {
    fn of(account: &'a AccountListing, for_admin: bool) -> Self {
        Self {
            username: &account.username,
            role: account.role.as_str(),
            status: account.status.as_str(),
            active: for_admin.then_some(account.active),
        }
    }
}

/// `[{"username","role","status"}]`, by name: every active account.
#[handler]
pub async fn list_users(Data(state): Data<&State>, user: CurrentUser) -> Result<Response, ApiError> {
    let accounts = app::accounts::list(&state.app, &user, false).await?;
    let users: Vec<UserView> = accounts.iter().map(|account| UserView::of(account, false)).collect();
    Ok(Json(users).into_response())
}

#[derive(Deserialize)]
pub struct AccountChange {
    role: Option<String>,
    active: Option<bool>,
}

/// `200` with the account as it is now. `403` for someone who is not an admin, `404` for no
/// such account, `409` for a change that would leave no active admin.
#[handler]
pub async fn update_user(
    Data(state): Data<&State>,
    Path(username): Path<String>,
    user: CurrentUser,
    JsonBody(body): JsonBody<AccountChange>,
) -> Result<Response, ApiError> {
    let change = app::accounts::Change {
        role: body.role.as_deref(),
        active: body.active,
    };
    let account = app::accounts::update(&state.app, &user, &username, change).await?;
    Ok(Json(UserView::of(&account, true)).into_response())
}
