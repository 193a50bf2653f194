//! `/account`: the signed-in user's own page, without script: change the password, see where
//! one is signed in, and sign out of one session or of every other one. `/admin`: an admin's
//! page of every account, to promote, demote, deactivate and reactivate. Each form posts,
//! then sees the page again with what happened.

use askama::Template;
use poem::error::ResponseError;
use poem::http::{StatusCode, header};
use poem::web::{Data, Html, Path, Query};
use poem::{IntoResponse, Request, Response, handler};
use serde::Deserialize;

use super::assets::{self, AssetUrls};
use super::auth::CurrentUser;
use super::client::client_ip;
use super::error::ApiError;
use super::{FormBody, State, invites};
use crate::app;
use crate::app::sessions::Listed;
use crate::domain::Username;
use crate::eventlog::sqlite::AccountListing;

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage<'a> {
    assets: &'static AssetUrls,
    username: &'a str,
    admin: bool,
    sessions: Vec<Listed>,
    notice: Option<&'static str>,
    error: Option<String>,
}

#[derive(Deserialize)]
pub struct Done {
    done: Option<String>,
}

/// What the page says after a form did its work (`?done=`).
fn notice(done: Option<&str>) -> Option<&'static str> {
    match done? {
        "password" => Some("Your password is changed, and every other session is signed out."),
        "session" => Some("That session is signed out."),
        "others" => Some("Every other session is signed out."),
        _ => None,
    }
}

async fn render(
    state: &State,
    user: &CurrentUser,
    notice: Option<&'static str>,
    error: Option<(StatusCode, String)>,
) -> Result<Response, ApiError> {
    let sessions = app::sessions::list(&state.app, user).await?;
    let status = error.as_ref().map_or(StatusCode::OK, |(status, _)| *status);
    let page = AccountPage {
        assets: assets::urls(),
        username: &user.username,
        admin: user.is_admin(),
        sessions,
        notice,
        error: error.map(|(_, message)| message),
    };
    private_page(page.render()?, status)
}

/// A page of one person's own data: never cached.
fn private_page(html: String, status: StatusCode) -> Result<Response, ApiError> {
    Ok(Html(html)
        .with_status(status)
        .with_header(header::CACHE_CONTROL, "no-store")
        .into_response())
}

fn back(done: &str) -> Response {
    StatusCode::SEE_OTHER
        .with_header(header::LOCATION, format!("/account?done={done}"))
        .into_response()
}

#[handler]
pub async fn account_page(
    Data(state): Data<&State>,
    Query(done): Query<Done>,
    user: Option<CurrentUser>,
) -> Result<Response, ApiError> {
    let Some(user) = user else {
        return Ok(StatusCode::SEE_OTHER.with_header(header::LOCATION, "/").into_response());
    };
    render(state, &user, notice(done.done.as_deref()), None).await
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    current: String,
    #[serde(default)]
    new: String,
}

#[handler]
pub async fn change_password_form(
    req: &Request,
    Data(state): Data<&State>,
    user: CurrentUser,
    FormBody(form): FormBody<PasswordForm>,
) -> Result<Response, ApiError> {
    let address = client_ip(req);
    match app::accounts::change_password(&state.app, &user, address, form.current, form.new).await {
        Ok(()) => Ok(back("password")),
        Err(error) => {
            let error = ApiError::App(error);
            if !error.status().is_client_error() {
                return Err(error);
            }
            render(state, &user, None, Some((error.status(), error.to_string()))).await
        }
    }
}

#[handler]
pub async fn end_session_form(
    Data(state): Data<&State>,
    Path(id): Path<String>,
    user: CurrentUser,
) -> Result<Response, ApiError> {
    match app::sessions::revoke(&state.app, &user, &id).await {
        Ok(()) => Ok(back("session")),
        Err(app::Error::NotFound(_)) => {
            let gone = "That session had already ended.".to_owned();
            render(state, &user, None, Some((StatusCode::NOT_FOUND, gone))).await
        }
        Err(error) => Err(error.into()),
    }
}

#[handler]
pub async fn end_other_sessions_form(Data(state): Data<&State>, user: CurrentUser) -> Result<Response, ApiError> {
    app::sessions::revoke_others(&state.app, &user).await?;
    Ok(back("others"))
}

#[derive(Template)]
#[template(path = "admin.html")]
struct AdminPage {
    assets: &'static AssetUrls,
    invites: Vec<InviteRow>,
    people: Vec<AccountListing>,
    notice: Option<String>,
    error: Option<String>,
}

/// A live invite as the admin page lists it.
struct InviteRow {
    code: String,
    url: String,
    uses: i64,
    uses_left: i64,
    expires_at: String,
}

#[derive(Deserialize)]
pub struct Changed {
    changed: Option<String>,
    /// `made` or `revoked`: what an invite form did.
    invite: Option<String>,
}

async fn render_admin(
    req: &Request,
    state: &State,
    user: &CurrentUser,
    notice: Option<String>,
    error: Option<(StatusCode, String)>,
) -> Result<Response, ApiError> {
    let people = app::accounts::list(&state.app, user, true).await?;
    let base = invites::base_url(req, state);
    let invites = app::invites::list(&state.app, user)
        .await?
        .into_iter()
        .map(|invite| InviteRow {
            url: invites::join_url(&base, &invite.code),
            code: invite.code,
            uses: invite.uses,
            uses_left: invite.uses_left,
            expires_at: invite.expires_at,
        })
        .collect();
    let status = error.as_ref().map_or(StatusCode::OK, |(status, _)| *status);
    let page = AdminPage {
        assets: assets::urls(),
        invites,
        people,
        notice,
        error: error.map(|(_, message)| message),
    };
    private_page(page.render()?, status)
}

/// `/admin`: the live invites, with a form to make one and a button to revoke each; every
/// account, with buttons to promote, demote, deactivate and reactivate. For admins; anyone
/// else is told it is not for them.
#[handler]
pub async fn admin_page(
    req: &Request,
    Data(state): Data<&State>,
    Query(changed): Query<Changed>,
    user: Option<CurrentUser>,
) -> Result<Response, ApiError> {
    let Some(user) = user else {
        return Ok(StatusCode::SEE_OTHER.with_header(header::LOCATION, "/").into_response());
    };
    if !user.is_admin() {
        return super::reply::error_page(StatusCode::FORBIDDEN, "For admins", "Only admins manage people here.");
    }
    // Only a name the page itself put there is echoed, and only as text.
    let notice = match changed.invite.as_deref() {
        Some("made") => Some("The invite is made: copy its link below and send it.".to_owned()),
        Some("revoked") => Some("That invite is revoked: nobody can join with it.".to_owned()),
        _ => changed
            .changed
            .filter(|name| Username::parse(name).is_ok())
            .map(|name| format!("{name} is changed.")),
    };
    render_admin(req, state, &user, notice, None).await
}

#[derive(Deserialize)]
pub struct PersonForm {
    role: Option<String>,
    active: Option<String>,
}

#[handler]
pub async fn change_person_form(
    req: &Request,
    Data(state): Data<&State>,
    Path(username): Path<String>,
    user: CurrentUser,
    FormBody(form): FormBody<PersonForm>,
) -> Result<Response, ApiError> {
    let active = match form.active.as_deref() {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => return Err(ApiError::BadRequest("`active` is `true` or `false`".into())),
    };
    let change = app::accounts::Change {
        role: form.role.as_deref(),
        active,
    };
    match app::accounts::update(&state.app, &user, &username, change).await {
        Ok(account) => Ok(StatusCode::SEE_OTHER
            .with_header(header::LOCATION, format!("/admin?changed={}", account.username))
            .into_response()),
        Err(error) => {
            let error = ApiError::App(error);
            if !error.status().is_client_error() || !user.is_admin() {
                return Err(error);
            }
            render_admin(req, state, &user, None, Some((error.status(), error.to_string()))).await
        }
    }
}

#[derive(Deserialize)]
pub struct InviteForm {
    #[serde(default)]
    uses: String,
    #[serde(default)]
    expires_in_hours: String,
}

/// A form's number: empty is "the default"; anything else that is no whole number, or is out
/// of range, is refused by the rules of invites.
fn form_number(text: &str) -> Option<i64> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    Some(text.parse().unwrap_or(-1))
}

/// The admin page's "make an invite": back to the page, which lists it.
#[handler]
pub async fn create_invite_form(
    req: &Request,
    Data(state): Data<&State>,
    user: CurrentUser,
    FormBody(form): FormBody<InviteForm>,
) -> Result<Response, ApiError> {
    let (uses, hours) = (form_number(&form.uses), form_number(&form.expires_in_hours));
    match app::invites::create(&state.app, &user, uses, hours).await {
        Ok(_) => Ok(StatusCode::SEE_OTHER
            .with_header(header::LOCATION, "/admin?invite=made")
            .into_response()),
        Err(error) => admin_refusal(req, state, &user, error).await,
    }
}

/// The admin page's "revoke" of an invite.
#[handler]
pub async fn revoke_invite_form(
    req: &Request,
    Data(state): Data<&State>,
    Path(code): Path<String>,
    user: CurrentUser,
) -> Result<Response, ApiError> {
    match app::invites::revoke(&state.app, &user, &code).await {
        Ok(()) => Ok(StatusCode::SEE_OTHER
            .with_header(header::LOCATION, "/admin?invite=revoked")
            .into_response()),
        Err(error) => admin_refusal(req, state, &user, error).await,
    }
}

/// The admin page again, saying why a form was refused; a refusal to someone who is not an
/// admin is the plain error.
async fn admin_refusal(
    req: &Request,
    state: &State,
    user: &CurrentUser,
    error: app::Error,
) -> Result<Response, ApiError> {
    let error = ApiError::App(error);
    if !error.status().is_client_error() || !user.is_admin() {
        return Err(error);
    }
    render_admin(req, state, user, None, Some((error.status(), error.to_string()))).await
}
