//! The browser app: the sign-in page, the room page and the small form endpoints htmx posts
//! to. Pages render the same partials as the `html` event streams, so a message looks the
//! same however it arrived.

use askama::Template;
use poem::http::{StatusCode, header};
use poem::web::{Data, Html, Path, Query, RemoteAddr};
use poem::{IntoResponse, Request, Response, handler};
use serde::Deserialize;

use super::assets::{self, AssetUrls};
use super::messages::store_message;
use super::rooms::make_room;
use super::sessions::{authenticate, client_ip, revoke};
use super::status::store_status;
use super::{FormBody, find_room};
use crate::AppState;
use crate::auth::{self, CurrentUser};
use crate::error::AppError;
use crate::model::{EventId, Status};
use crate::render::{self, MemberPartial};
use poem::error::ResponseError;

/// Messages a page shows at first, and per "load older".
const PAGE_MESSAGES: u32 = 50;

#[derive(Template)]
#[template(path = "signin.html")]
struct SignInPage<'a> {
    assets: &'static AssetUrls,
    username: &'a str,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "room.html")]
struct RoomPage<'a> {
    assets: &'static AssetUrls,
    room: &'a str,
    username: &'a str,
    my_status: &'static str,
    rooms: Vec<String>,
    /// The stream resumes after this id: nothing said after the page was read is missed.
    after: EventId,
    /// Set when older messages exist: the id "load older" asks for messages before.
    older_before: Option<EventId>,
    messages: Vec<String>,
    members: Vec<String>,
}

#[derive(Template)]
#[template(path = "_older.html")]
struct OlderControl<'a> {
    room: &'a str,
    before: EventId,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    assets: &'static AssetUrls,
    title: &'a str,
    message: &'a str,
}

fn see_other(location: &str) -> Response {
    StatusCode::SEE_OTHER
        .with_header(header::LOCATION, location)
        .into_response()
}

fn error_page(status: StatusCode, title: &str, message: &str) -> Result<Response, AppError> {
    let html = ErrorPage {
        assets: assets::urls(),
        title,
        message,
    }
    .render()?;
    Ok(Html(html).with_status(status).into_response())
}

/// `/`: the sign-in form, or straight to the chat when already signed in.
#[handler]
pub async fn sign_in_page(user: Option<CurrentUser>) -> Result<Response, AppError> {
    if user.is_some() {
        return Ok(see_other("/rooms/general"));
    }
    let html = SignInPage {
        assets: assets::urls(),
        username: "",
        error: None,
    }
    .render()?;
    Ok(Html(html).into_response())
}

#[derive(Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

/// The sign-in form's `POST /`: a cookie and the chat, or the form again with the reason.
#[handler]
pub async fn sign_in_form(
    Data(state): Data<&AppState>,
    remote: &RemoteAddr,
    FormBody(form): FormBody<SignInForm>,
) -> Result<Response, AppError> {
    match authenticate(state, client_ip(remote), &form.username, form.password).await {
        Ok(session) => Ok(see_other("/rooms/general")
            .with_header(header::SET_COOKIE, auth::session_cookie(&session.token))
            .into_response()),
        Err(error) if error.status().is_client_error() => {
            let html = SignInPage {
                assets: assets::urls(),
                username: &form.username,
                error: Some(error.to_string()),
            }
            .render()?;
            let mut page = Html(html).with_status(error.status()).into_response();
            if let Some(wait) = error.retry_after() {
                page.headers_mut().insert("retry-after", wait.into());
            }
            Ok(page)
        }
        Err(error) => Err(error),
    }
}

/// `POST /signout`: revoke the session, clear the cookie, back to `/`.
#[handler]
pub async fn sign_out_form(req: &Request, Data(state): Data<&AppState>) -> Result<Response, AppError> {
    revoke(req, state).await?;
    Ok(see_other("/")
        .with_header(header::SET_COOKIE, auth::cleared_cookie())
        .into_response())
}

/// `/rooms/{room}`: the newest messages, the members, and the live stream from here on.
#[handler]
pub async fn room_page(
    Data(state): Data<&AppState>,
    Path(room): Path<String>,
    user: Option<CurrentUser>,
) -> Result<Response, AppError> {
    let Some(user) = user else { return Ok(see_other("/")) };
    let room = match find_room(state, &room).await {
        Ok(room) => room,
        Err(AppError::NoSuchRoom(name)) => {
            return error_page(
                StatusCode::NOT_FOUND,
                "No such room",
                &format!("There is no room called #{name}."),
            );
        }
        Err(error) => return Err(error),
    };
    // Read the head first: everything after it comes through the stream, so whatever the
    // reads below miss is sent, and whatever they already have is skipped by its id.
    let after = state.hub.head();
    let (older_before, messages) = message_page(state, room.id, None).await?;
    let members_list = state.store.members().await?;
    let my_status = members_list
        .iter()
        .find(|(name, _)| *name == user.username)
        .map_or(Status::Offline, |(_, status)| *status);
    let members = members_list
        .iter()
        .map(|(username, status)| {
            MemberPartial {
                username,
                status: *status,
                oob: false,
            }
            .render()
        })
        .collect::<Result<_, _>>()?;
    let rooms = state.store.rooms().await?.into_iter().map(|room| room.name).collect();
    let page = RoomPage {
        assets: assets::urls(),
        room: &room.name,
        username: &user.username,
        // Opening the page's stream makes an offline user online.
        my_status: if my_status == Status::Offline {
            "online"
        } else {
            my_status.as_str()
        },
        rooms,
        after,
        older_before,
        messages,
        members,
    };
    Ok(Html(page.render()?)
        .with_header(header::CACHE_CONTROL, "no-store")
        .into_response())
}

/// The page of messages before `before` (or the newest), rendered, and where the next older
/// page starts if there is one.
async fn message_page(
    state: &AppState,
    room: i64,
    before: Option<EventId>,
) -> Result<(Option<EventId>, Vec<String>), AppError> {
    // One more than shown tells whether anything older exists.
    let mut events = state.store.history(room, before, None, PAGE_MESSAGES + 1).await?;
    let more = events.len() > PAGE_MESSAGES as usize;
    if more {
        events.remove(0);
    }
    let older_before = more.then(|| events.first().map(|e| e.id)).flatten();
    let html = events.iter().map(render::html).collect::<Result<_, _>>()?;
    Ok((older_before, html))
}

#[derive(Deserialize)]
pub struct OlderQuery {
    before: Option<String>,
}

/// "Load older": the next older page of messages, and a new control if more remain.
#[handler]
pub async fn older(
    Data(state): Data<&AppState>,
    Path(room): Path<String>,
    Query(query): Query<OlderQuery>,
    _user: CurrentUser,
) -> Result<Response, AppError> {
    let before = query
        .before
        .as_deref()
        .and_then(|raw| raw.parse::<EventId>().ok())
        .filter(|id| *id >= 0)
        .ok_or_else(|| AppError::BadRequest("`before` must be an event id".into()))?;
    let room = find_room(state, &room).await?;
    let (older_before, messages) = message_page(state, room.id, Some(before)).await?;
    let mut html = match older_before {
        Some(before) => OlderControl {
            room: &room.name,
            before,
        }
        .render()?,
        None => String::new(),
    };
    for message in messages {
        html.push_str(&message);
    }
    Ok(Html(html).into_response())
}

#[derive(Deserialize)]
pub struct MessageForm {
    #[serde(default)]
    content: String,
    /// Set by the page's script, so a retried or double-clicked send is stored once.
    client_id: Option<String>,
}

/// The message box. The message itself reaches the page through the stream.
#[handler]
pub async fn post_message_form(
    Data(state): Data<&AppState>,
    Path(room): Path<String>,
    user: CurrentUser,
    FormBody(form): FormBody<MessageForm>,
) -> Result<StatusCode, AppError> {
    let client_id = form.client_id.as_deref().filter(|id| !id.is_empty());
    store_message(state, &room, user, form.content, client_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct StatusForm {
    #[serde(default)]
    status: String,
}

/// The status switch. The change reaches the member list through the stream.
#[handler]
pub async fn set_status_form(
    Data(state): Data<&AppState>,
    user: CurrentUser,
    FormBody(form): FormBody<StatusForm>,
) -> Result<StatusCode, AppError> {
    store_status(state, user, &form.status).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct RoomForm {
    #[serde(default)]
    name: String,
}

/// The new-room form: to the new room, or (if it exists) to the existing one.
#[handler]
pub async fn create_room_form(
    Data(state): Data<&AppState>,
    user: CurrentUser,
    FormBody(form): FormBody<RoomForm>,
) -> Result<Response, AppError> {
    match make_room(state, &user, &form.name).await {
        Ok(room) => Ok(see_other(&format!("/rooms/{}", room.name))),
        Err(AppError::RoomTaken(name)) => Ok(see_other(&format!("/rooms/{name}"))),
        Err(AppError::Invalid(invalid)) => error_page(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Cannot make that room",
            &invalid.to_string(),
        ),
        Err(error) => Err(error),
    }
}
