//! Making accounts: `POST /api/users` (sign-up, or an admin making an account for someone
//! else), and the pages for it: the first-run screen that makes the server's admin, the join
//! page a new member opens from an invite link (`/join/{code}`), and, with `--signup open`,
//! the sign-up form (`/signup`). The forms work without script.

use askama::Template;
use poem::error::ResponseError;
use poem::http::{StatusCode, header};
use poem::web::{Data, Html, Json, Path};
use poem::{IntoResponse, Request, Response, handler};
use serde::{Deserialize, Serialize};

use super::assets::{self, AssetUrls};
use super::auth::{self, CurrentUser};
use super::error::ApiError;
use super::reply::{error_page, see_other};
use super::{FormBody, JsonBody, State, sessions};
use crate::app::{self, accounts::NewAccount};
use crate::config::Signup;
use crate::domain::NotAdmitted;

#[derive(Deserialize)]
pub struct SignUp {
    username: String,
    password: String,
    invite: Option<String>,
}

#[derive(Serialize)]
struct SignedUp<'a> {
    username: &'a str,
    /// Absent for an account an admin made for someone else: that person signs in themselves.
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<&'a str>,
    role: &'static str,
}

/// `201` with the account, its token and the session cookie. When an admin is signed in, the
/// account is made for someone else in any `--signup` mode, and the admin's own session goes
/// on: no token and no cookie. `403` when the mode or the invite does not let the caller in,
/// `409` for a name taken or too like one, `422` for a name or password that breaks the rules.
#[handler]
pub async fn sign_up(
    req: &Request,
    Data(state): Data<&State>,
    user: Option<CurrentUser>,
    JsonBody(body): JsonBody<SignUp>,
) -> Result<Response, ApiError> {
    let account = NewAccount {
        username: &body.username,
        password: body.password,
        invite: body.invite.as_deref(),
    };
    let by = user.as_ref().map(|user| &user.0);
    let made = app::accounts::sign_up(&state.app, &sessions::origin(req), by, account).await?;
    let answer = Json(SignedUp {
        username: &made.username,
        token: made.token.as_deref(),
        role: made.role.as_str(),
    })
    .with_status(StatusCode::CREATED)
    .with_header(header::CACHE_CONTROL, "no-store");
    Ok(match &made.token {
        Some(token) => answer
            .with_header(header::SET_COOKIE, auth::session_cookie(req, token))
            .into_response(),
        None => answer.into_response(),
    })
}

/// Which sign-up form a page shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// The server has no account: this one is its admin.
    FirstRun,
    /// With an invite.
    Join,
    /// `--signup open`.
    Open,
}

#[derive(Template)]
#[template(path = "signup.html")]
struct SignUpPage<'a> {
    assets: &'static AssetUrls,
    form: Form,
    invite: &'a str,
    username: &'a str,
    /// Who this browser is signed in as, if anyone.
    signed_in_as: Option<&'a str>,
    error: Option<String>,
}

impl SignUpPage<'_> {
    fn is(&self, form: &str) -> bool {
        matches!(
            (self.form, form),
            (Form::FirstRun, "first-run") | (Form::Join, "join") | (Form::Open, "open")
        )
    }
}

/// A sign-up page, with `status`.
pub fn sign_up_form_page(
    form: Form,
    invite: &str,
    username: &str,
    signed_in_as: Option<&str>,
    error: Option<String>,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let html = SignUpPage {
        assets: assets::urls(),
        form,
        invite,
        username,
        signed_in_as,
        error,
    }
    .render()?;
    Ok(Html(html)
        .with_status(status)
        .with_header(header::CACHE_CONTROL, "no-store")
        .into_response())
}

/// `/signup`: the first-run screen on a server with no account; else, with `--signup open`,
/// the sign-up form; else a page saying how to join.
#[handler]
pub async fn sign_up_page(Data(state): Data<&State>, user: Option<CurrentUser>) -> Result<Response, ApiError> {
    let signed_in_as = user.as_ref().map(|user| user.username.as_str());
    if app::accounts::first_run(&state.app).await? {
        return sign_up_form_page(Form::FirstRun, "", "", signed_in_as, None, StatusCode::OK);
    }
    match state.app.settings.signup {
        Signup::Open => sign_up_form_page(Form::Open, "", "", signed_in_as, None, StatusCode::OK),
        Signup::Invite => error_page(
            StatusCode::FORBIDDEN,
            "Joining takes an invite",
            &sentence(NotAdmitted::NoInvite.words()),
        ),
        Signup::Closed => error_page(
            StatusCode::FORBIDDEN,
            "Not taking new accounts",
            &sentence(NotAdmitted::Closed.words()),
        ),
    }
}

/// `/join/{code}`: the sign-up form carrying the invite, or a page saying why it cannot be
/// used (`404` for no such invite, `410` for one expired, used up or revoked).
#[handler]
pub async fn join_page(
    Data(state): Data<&State>,
    Path(code): Path<String>,
    user: Option<CurrentUser>,
) -> Result<Response, ApiError> {
    match app::invites::check(&state.app, &code).await? {
        Ok(invite) => {
            let signed_in_as = user.as_ref().map(|user| user.username.as_str());
            sign_up_form_page(Form::Join, &invite.code, "", signed_in_as, None, StatusCode::OK)
        }
        Err(why) => {
            let status = if why == NotAdmitted::UnknownInvite {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::GONE
            };
            error_page(status, "This invite cannot be used", &sentence(why.words()))
        }
    }
}

/// `text` as a sentence: a capital first and a full stop last.
fn sentence(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => format!("{}{}.", first.to_uppercase(), chars.as_str()),
        None => String::new(),
    }
}

#[derive(Deserialize)]
pub struct SignUpForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    invite: String,
}

/// The sign-up forms' `POST /signup`: a cookie and the chat, or the form again with the
/// reason. Always a sign-up of the person at this browser, whoever is signed in here.
#[handler]
pub async fn sign_up_form(
    req: &Request,
    Data(state): Data<&State>,
    FormBody(form): FormBody<SignUpForm>,
) -> Result<Response, ApiError> {
    let account = NewAccount {
        username: &form.username,
        password: form.password,
        invite: Some(form.invite.as_str()),
    };
    match app::accounts::sign_up(&state.app, &sessions::origin(req), None, account).await {
        Ok(made) => {
            let back = see_other("/rooms/general");
            Ok(match made.token {
                Some(token) => back
                    .with_header(header::SET_COOKIE, auth::session_cookie(req, &token))
                    .into_response(),
                None => back,
            })
        }
        Err(error) => {
            let error = ApiError::App(error);
            if !error.status().is_client_error() {
                return Err(error);
            }
            let form_shown = if !form.invite.is_empty() {
                Form::Join
            } else if app::accounts::first_run(&state.app).await? {
                Form::FirstRun
            } else {
                Form::Open
            };
            // Only a code that could be one goes back into the page, and only as text.
            let invite =
                crate::domain::InviteCode::parse(&form.invite).map_or(String::new(), |code| code.as_str().to_owned());
            let mut page = sign_up_form_page(
                form_shown,
                &invite,
                &form.username,
                None,
                Some(error.to_string()),
                error.status(),
            )?;
            if let Some(wait) = error.retry_after() {
                page.headers_mut().insert("retry-after", wait.into());
            }
            Ok(page)
        }
    }
}
