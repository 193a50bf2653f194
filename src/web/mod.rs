//! The HTTP surface: the route tree and the pieces every handler shares.

mod assets;
mod events;
mod health;
mod messages;
mod pages;
mod rooms;
mod sessions;
mod status;

use poem::http::{HeaderValue, header};
use poem::middleware::Tracing;
use poem::{Endpoint, EndpointExt, FromRequest, IntoResponse, Request, RequestBody, Response, Route, get, post, put};
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::auth::same_origin_guard;
use crate::error::{AppError, into_json_response};
use crate::store::Room;

pub fn build_app(state: AppState) -> impl Endpoint {
    Route::new()
        .at("/api/sessions", post(sessions::sign_in).delete(sessions::sign_out))
        .at("/api/rooms", get(rooms::list_rooms).post(rooms::create_room))
        .at(
            "/api/rooms/:room/messages",
            get(messages::history).post(messages::post_message),
        )
        .at("/api/rooms/:room/events", get(events::room_events))
        .at("/api/status", put(status::set_status))
        .at("/healthz", get(health::healthz))
        .at("/metrics", get(health::metrics))
        .at("/", get(pages::sign_in_page).post(pages::sign_in_form))
        .at("/signout", post(pages::sign_out_form))
        .at("/status", post(pages::set_status_form))
        .at("/rooms", post(pages::create_room_form))
        .at("/rooms/:room", get(pages::room_page))
        .at("/rooms/:room/messages", post(pages::post_message_form))
        .at("/rooms/:room/older", get(pages::older))
        .at("/static/*path", get(assets::static_file))
        .data(state)
        .around(same_origin_guard)
        .catch_all_error(into_json_response)
        .around(security_headers)
        .with(Tracing)
}

/// Headers every response carries. The page runs only our own scripts and styles (htmx is
/// configured by a meta tag, so no inline script is needed), and may not be framed.
async fn security_headers<E: Endpoint>(next: E, req: Request) -> poem::Result<Response> {
    let mut response = next.call(req).await?.into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (
            "content-security-policy",
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "same-origin"),
        ("x-frame-options", "DENY"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    Ok(response)
}

/// A JSON request body, read up to the configured limit. Malformed JSON is a `400`; JSON of
/// the wrong shape (a missing field, a number for a string, a duplicate key) is a `422`.
pub struct JsonBody<T>(pub T);

impl<'a, T: DeserializeOwned> FromRequest<'a> for JsonBody<T> {
    async fn from_request(req: &'a Request, body: &mut RequestBody) -> poem::Result<Self> {
        let is_json = req
            .header(header::CONTENT_TYPE)
            .and_then(|value| value.split(';').next())
            .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(AppError::UnsupportedMediaType.into());
        }
        let limit = req.data::<AppState>().map_or(usize::MAX, AppState::body_limit);
        let declared = req
            .header(header::CONTENT_LENGTH)
            .and_then(|len| len.parse::<u64>().ok());
        if declared.is_some_and(|len| len > limit as u64) {
            return Err(AppError::PayloadTooLarge(limit).into());
        }
        let bytes = body
            .take()?
            .into_bytes_limit(limit)
            .await
            .map_err(|error| match error {
                poem::error::ReadBodyError::PayloadTooLarge => AppError::PayloadTooLarge(limit),
                other => AppError::BadRequest(format!("cannot read the body: {other}")),
            })?;
        let value = serde_json::from_slice(&bytes).map_err(|error| match error.classify() {
            serde_json::error::Category::Data => AppError::Unprocessable(format!("the body does not fit: {error}")),
            _ => AppError::BadRequest(format!("the body is not valid JSON: {error}")),
        })?;
        Ok(Self(value))
    }
}

/// Resolves a room named in the path, or `404`.
async fn find_room(state: &AppState, name: &str) -> Result<Room, AppError> {
    state
        .store
        .room(name)
        .await?
        .ok_or_else(|| AppError::NoSuchRoom(name.chars().take(64).collect()))
}
