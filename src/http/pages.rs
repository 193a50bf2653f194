//! The browser app: the sign-in page, the room page and the small form endpoints the page
//! posts to. Pages render the same fragments as the `html` event streams, so a message, a
//! member or a room looks the same however it arrived.

use askama::Template;
use poem::error::ResponseError;
use poem::http::{StatusCode, header};
use poem::web::{Data, Html, Path, Query};
use poem::{IntoResponse, Request, Response, handler};
use serde::Deserialize;

use super::assets::{self, AssetUrls};
use super::auth::{self, CurrentUser};
use super::error::ApiError;
use super::messages::parse_id;
use super::reply::{error_page, see_other};
use super::sessions::{self, revoke};
use super::{FormBody, State, signup};
use crate::app::{self, Error, messages::Page};
use crate::config::Signup;
use crate::domain::{EventId, RoomKind, Status};
use crate::wire::render::{self, MemberPartial, RoomCounts, RoomPartial};

/// Messages a page shows at first, and per "load older".
const PAGE_MESSAGES: u32 = 50;

#[derive(Template)]
#[template(path = "signin.html")]
struct SignInPage<'a> {
    assets: &'static AssetUrls,
    username: &'a str,
    error: Option<String>,
    /// `--signup open`: the page links to the sign-up form.
    signup_open: bool,
}

#[derive(Template)]
#[template(path = "room.html")]
struct RoomPage<'a> {
    assets: &'static AssetUrls,
    room: &'a str,
    username: &'a str,
    /// What the status switch shows: the status the user chose.
    my_status: &'static str,
    /// `public`, `private` or `direct`.
    kind: &'static str,
    topic: Option<&'a str>,
    archived: bool,
    /// A direct room's people.
    people: Vec<String>,
    /// The user may change the room's topic and archive it: its maker or an admin.
    can_change: bool,
    /// The user is an admin: the page links to `/admin`.
    admin: bool,
    /// The sidebar, rendered: public rooms (ending with "more rooms" if there are), private
    /// rooms, direct rooms.
    rooms: Vec<String>,
    private_rooms: Vec<String>,
    direct_rooms: Vec<String>,
    /// The page was read at this id: the stream shows what came after.
    after: EventId,
    /// Seconds between the stream's pings: two missed mean the stream is dead.
    keepalive: u64,
    /// Set when older messages exist: the id "load older" asks for messages before.
    older_before: Option<EventId>,
    messages: Vec<String>,
    members: Vec<String>,
    /// The message a permalink shows, among those around it (not the newest).
    focus: Option<EventId>,
}

#[derive(Template)]
#[template(path = "_older.html")]
struct OlderControl<'a> {
    room: &'a str,
    before: EventId,
}

#[derive(Template)]
#[template(path = "_more_rooms.html")]
struct MoreRooms<'a> {
    /// The last room shown: the next page starts after it.
    after: &'a str,
}

/// `/`: the sign-in form, or straight to the chat when already signed in; on a server with no
/// account yet, the first-run screen that makes its admin.
#[handler]
pub async fn sign_in_page(Data(state): Data<&State>, user: Option<CurrentUser>) -> Result<Response, ApiError> {
    if user.is_some() {
        return Ok(see_other("/rooms/general"));
    }
    if app::accounts::first_run(&state.app).await? {
        return signup::sign_up_form_page(signup::Form::FirstRun, "", "", None, None, StatusCode::OK);
    }
    let html = SignInPage {
        assets: assets::urls(),
        username: "",
        error: None,
        signup_open: state.app.settings.signup == Signup::Open,
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
    req: &Request,
    Data(state): Data<&State>,
    FormBody(form): FormBody<SignInForm>,
) -> Result<Response, ApiError> {
    match app::accounts::sign_in(&state.app, &sessions::origin(req), &form.username, form.password).await {
        Ok(signed_in) => Ok(see_other("/rooms/general")
            .with_header(header::SET_COOKIE, auth::session_cookie(req, &signed_in.token))
            .into_response()),
        Err(error) => {
            let error = ApiError::App(error);
            if !error.status().is_client_error() {
                return Err(error);
            }
            let html = SignInPage {
                assets: assets::urls(),
                username: &form.username,
                error: Some(error.to_string()),
                signup_open: state.app.settings.signup == Signup::Open,
            }
            .render()?;
            let mut page = Html(html).with_status(error.status()).into_response();
            if let Some(wait) = error.retry_after() {
                page.headers_mut().insert("retry-after", wait.into());
            }
            Ok(page)
        }
    }
}

/// `POST /signout`: revoke the session, clear the cookie, back to `/`.
#[handler]
pub async fn sign_out_form(req: &Request, Data(state): Data<&State>) -> Result<Response, ApiError> {
    revoke(req, state).await?;
    Ok(see_other("/")
        .with_header(header::SET_COOKIE, auth::cleared_cookie(req))
        .into_response())
}

/// `/rooms/{room}`: the rooms, the newest messages, the members; the page's script follows
/// every room from here on.
#[handler]
pub async fn room_page(
    Data(state): Data<&State>,
    Path(room): Path<String>,
    user: Option<CurrentUser>,
) -> Result<Response, ApiError> {
    let Some(user) = user else { return Ok(see_other("/")) };
    show_room(state, &user, &room, None).await
}

/// `/rooms/{room}/messages/{id}`: a message's permalink: the room page with the messages
/// around that one, which is highlighted.
#[handler]
pub async fn permalink_page(
    Data(state): Data<&State>,
    Path((room, id)): Path<(String, String)>,
    user: Option<CurrentUser>,
) -> Result<Response, ApiError> {
    let Some(user) = user else { return Ok(see_other("/")) };
    let missing = || {
        error_page(
            StatusCode::NOT_FOUND,
            "No such message",
            "That message was deleted, or is in a room you cannot read.",
        )
    };
    let Some(id) = id.parse::<i64>().ok().filter(|id| *id > 0).map(EventId) else {
        return missing();
    };
    match app::messages::get(&state.app, &user, id).await {
        Ok((_, found)) if found.name == room => show_room(state, &user, &room, Some(id)).await,
        Ok(_) | Err(Error::NotFound(_)) => missing(),
        Err(error) => Err(error.into()),
    }
}

/// The room page, showing the newest messages, or those around `focus`.
async fn show_room(
    state: &State,
    user: &CurrentUser,
    room: &str,
    focus: Option<EventId>,
) -> Result<Response, ApiError> {
    let app = &state.app;
    let room = match app::rooms::find(app, user, room).await {
        Ok(room) => room,
        Err(Error::NotFound(what)) => {
            return error_page(StatusCode::NOT_FOUND, "No such room", &format!("There is no {what}."));
        }
        Err(error) => return Err(error.into()),
    };
    // Read the head first: everything after it comes through the stream, so whatever the
    // reads below miss is sent, and whatever they already have is replaced by its id.
    let after = app.head();
    let (older_before, messages) = match focus {
        None => message_page(state, user, &room.name, None).await?,
        Some(focus) => focused_page(state, user, &room.name, focus).await?,
    };
    // One read of the members: the list, and a direct room's people for its title.
    let members = app::rooms::members(app, user, &room.name).await?;
    let sidebar = room_list(state, user, None).await?;
    let chosen = app::status::chosen(app, user).await?;
    let people = if room.kind() == RoomKind::Direct {
        let mut people: Vec<String> = members.iter().map(|(name, _)| name.clone()).collect();
        people.sort_by_key(|name| name.to_lowercase());
        people
    } else {
        Vec::new()
    };
    let members = render_members(&members)?;
    let page = RoomPage {
        assets: assets::urls(),
        room: &room.name,
        kind: room.kind().as_str(),
        topic: room.topic.as_deref(),
        archived: room.archived,
        people,
        can_change: room.kind() != RoomKind::Direct && (room.created_by == Some(user.user_id) || user.is_admin()),
        username: &user.username,
        my_status: chosen.as_str(),
        admin: user.is_admin(),
        rooms: sidebar.public,
        private_rooms: sidebar.private,
        direct_rooms: sidebar.direct,
        after,
        keepalive: state.keepalive.as_secs(),
        older_before,
        messages,
        members,
        focus,
    };
    Ok(Html(page.render()?)
        .with_header(header::CACHE_CONTROL, "no-store")
        .into_response())
}

/// The members of `room`, rendered.
fn render_members(members: &[(String, Status)]) -> Result<Vec<String>, ApiError> {
    Ok(members
        .iter()
        .map(|(username, status)| MemberPartial {
            username,
            status: *status,
        })
        .map(|partial| partial.render())
        .collect::<Result<_, _>>()?)
}

/// `GET /rooms/{room}/members`: the member list, rendered, for the page to refresh when
/// someone joins or leaves.
#[handler]
pub async fn member_fragment(
    Data(state): Data<&State>,
    Path(room): Path<String>,
    user: CurrentUser,
) -> Result<Response, ApiError> {
    let members = app::rooms::members(&state.app, &user, &room).await?;
    Ok(Html(render_members(&members)?.concat()).into_response())
}

/// A page of the room list, rendered, by kind.
#[derive(Default)]
struct Sidebar {
    /// Ending with "more rooms" if there are more.
    public: Vec<String>,
    private: Vec<String>,
    direct: Vec<String>,
}

/// A page of the room list after `after`, rendered, ending with "more rooms" if there are.
async fn room_list(state: &State, user: &CurrentUser, after: Option<&str>) -> Result<Sidebar, ApiError> {
    let page = app::rooms::list(&state.app, user, after, app::rooms::DEFAULT_ROOMS).await?;
    let unread = app::reads::unread(&state.app, user, &page.rooms).await?;
    let mut sidebar = Sidebar::default();
    for room in &page.rooms {
        let html = RoomPartial {
            room: &room.name,
            kind: room.kind().as_str(),
            topic: room.topic.as_deref(),
            archived: room.archived,
            members: page.members.get(&room.id).map_or(&[], Vec::as_slice),
            counts: unread.get(&room.id).map(|unread| RoomCounts {
                unread: unread.unread,
                mentions: unread.mentions,
                read: unread.read,
                last_id: unread.last_id,
                notify: unread.notify.0.as_str(),
            }),
        }
        .render()?;
        match room.kind() {
            RoomKind::Public => sidebar.public.push(html),
            RoomKind::Private => sidebar.private.push(html),
            RoomKind::Direct => sidebar.direct.push(html),
        }
    }
    if let Some(after) = &page.next {
        sidebar.public.push(MoreRooms { after }.render()?);
    }
    Ok(sidebar)
}

#[derive(Deserialize)]
pub struct MoreRoomsQuery {
    after: Option<String>,
}

/// `GET /rooms?after=`: the next page of the room list, for "more rooms".
#[handler]
pub async fn more_rooms(
    Data(state): Data<&State>,
    Query(query): Query<MoreRoomsQuery>,
    user: CurrentUser,
) -> Result<Response, ApiError> {
    let after = query.after.as_deref().filter(|after| !after.is_empty());
    if after.is_some_and(|after| after.len() > 256) {
        return Err(ApiError::BadRequest("`after` is a room name".into()));
    }
    // The page moves each room to the list of its kind.
    let sidebar = room_list(state, &user, after).await?;
    let html = [sidebar.private, sidebar.direct, sidebar.public].concat().concat();
    Ok(Html(html).into_response())
}

/// The page of messages before `before` (or the newest), rendered, and where the next older
/// page starts if there is one.
async fn message_page(
    state: &State,
    user: &CurrentUser,
    room: &str,
    before: Option<EventId>,
) -> Result<(Option<EventId>, Vec<String>), ApiError> {
    // One more than shown tells whether anything older exists.
    let page = Page {
        before,
        after: None,
        around: None,
        limit: PAGE_MESSAGES + 1,
    };
    let mut events = app::messages::history(&state.app, user, room, page).await?;
    let more = events.len() > PAGE_MESSAGES as usize;
    if more {
        events.remove(0);
    }
    let older_before = more.then(|| events.first().map(|e| e.id)).flatten();
    let html = events.iter().map(render::html).collect::<Result<_, _>>()?;
    Ok((older_before, html))
}

/// The messages around `focus`, rendered with it highlighted, and where older ones start if
/// there may be any.
async fn focused_page(
    state: &State,
    user: &CurrentUser,
    room: &str,
    focus: EventId,
) -> Result<(Option<EventId>, Vec<String>), ApiError> {
    let page = Page {
        before: None,
        after: None,
        around: Some(focus),
        limit: PAGE_MESSAGES,
    };
    let events = app::messages::history(&state.app, user, room, page).await?;
    let up_to_focus = events.iter().filter(|event| event.id <= focus).count();
    let older_before = (up_to_focus >= PAGE_MESSAGES.div_ceil(2) as usize)
        .then(|| events.first().map(|e| e.id))
        .flatten();
    let html = events
        .iter()
        .map(|event| render::message_html(event, event.id == focus))
        .collect::<Result<_, _>>()?;
    Ok((older_before, html))
}

#[derive(Deserialize)]
pub struct OlderQuery {
    before: Option<String>,
}

/// "Load older": the next older page of messages, and a new control if more remain.
#[handler]
pub async fn older(
    Data(state): Data<&State>,
    Path(room): Path<String>,
    Query(query): Query<OlderQuery>,
    user: CurrentUser,
) -> Result<Response, ApiError> {
    let before = parse_id("before", query.before.as_deref().unwrap_or_default())?;
    let (older_before, messages) = message_page(state, &user, &room, Some(before)).await?;
    let mut html = match older_before {
        Some(before) => OlderControl { room: &room, before }.render()?,
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
    /// The message it answers.
    reply_to: Option<String>,
}

/// The message box without script. The message itself reaches the page through the stream.
#[handler]
pub async fn post_message_form(
    Data(state): Data<&State>,
    Path(room): Path<String>,
    user: CurrentUser,
    FormBody(form): FormBody<MessageForm>,
) -> Result<StatusCode, ApiError> {
    let client_id = form.client_id.as_deref().filter(|id| !id.is_empty());
    let reply_to = match form.reply_to.as_deref().filter(|id| !id.is_empty()) {
        None => None,
        Some(raw) => Some(parse_id("reply_to", raw)?),
    };
    app::messages::post(&state.app, &user, &room, form.content, client_id, reply_to).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct StatusForm {
    #[serde(default)]
    status: String,
}

/// The status switch. The change reaches every tab through the stream.
#[handler]
pub async fn set_status_form(
    Data(state): Data<&State>,
    user: CurrentUser,
    FormBody(form): FormBody<StatusForm>,
) -> Result<StatusCode, ApiError> {
    app::status::set(&state.app, &user, &form.status).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct RoomForm {
    #[serde(default)]
    name: String,
    /// The "private" box, ticked.
    private: Option<String>,
}

/// The new-room form: to the new room, or (if it exists) to the existing one.
#[handler]
pub async fn create_room_form(
    Data(state): Data<&State>,
    user: CurrentUser,
    FormBody(form): FormBody<RoomForm>,
) -> Result<Response, ApiError> {
    match app::rooms::create(&state.app, &user, &form.name, form.private.is_some(), None).await {
        Ok(event) => Ok(see_other(&format!("/rooms/{}", event.room().unwrap_or("general")))),
        Err(Error::Conflict(_)) => Ok(see_other(&format!("/rooms/{}", form.name))),
        Err(Error::Invalid(invalid)) => error_page(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Cannot make that room",
            &invalid.to_string(),
        ),
        Err(error) => Err(error.into()),
    }
}
