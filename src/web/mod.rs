//! The HTTP surface: the route tree and the pieces every handler shares.

mod assets;
mod events;
mod health;
mod messages;
mod pages;
mod rooms;
mod sessions;
mod status;
pub mod stream;

use std::sync::Arc;

use bytes::Bytes;
use poem::http::{HeaderValue, header};
use poem::middleware::Tracing;
use poem::{Endpoint, EndpointExt, FromRequest, IntoResponse, Request, RequestBody, Response, Route, get, post, put};
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::auth::same_origin_guard;
use crate::error::{AppError, into_json_response};
use crate::store::Room;
use stream::Streams;

/// The app, inside `streams`, which serves the event streams its handlers answer with.
pub fn build_app(state: AppState, streams: Arc<Streams>) -> impl Endpoint {
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
        .around(move |next, req| Arc::clone(&streams).serve(next, req))
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

/// Whether the request's `Content-Type` is `mime` (parameters such as `charset` aside).
fn has_content_type(req: &Request, mime: &str) -> bool {
    req.header(header::CONTENT_TYPE)
        .and_then(|value| value.split(';').next())
        .is_some_and(|value| value.trim().eq_ignore_ascii_case(mime))
}

/// The request body, read up to the configured limit (`413` beyond it, before reading when the
/// declared length already says so).
async fn read_body(req: &Request, body: &mut RequestBody) -> Result<Bytes, AppError> {
    let limit = req.data::<AppState>().map_or(usize::MAX, AppState::body_limit);
    let declared = req
        .header(header::CONTENT_LENGTH)
        .and_then(|len| len.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(AppError::PayloadTooLarge(limit));
    }
    body.take()
        .map_err(|error| AppError::BadRequest(format!("cannot read the body: {error}")))?
        .into_bytes_limit(limit)
        .await
        .map_err(|error| match error {
            poem::error::ReadBodyError::PayloadTooLarge => AppError::PayloadTooLarge(limit),
            other => AppError::BadRequest(format!("cannot read the body: {other}")),
        })
}

/// A JSON object request body, read up to the configured limit. Malformed JSON is a `400`;
/// JSON of the wrong shape (not an object, a missing field, a number for a string, a duplicate
/// key) is a `422`.
pub struct JsonBody<T>(pub T);

impl<'a, T: DeserializeOwned> FromRequest<'a> for JsonBody<T> {
    async fn from_request(req: &'a Request, body: &mut RequestBody) -> poem::Result<Self> {
        if !has_content_type(req, "application/json") {
            return Err(AppError::UnsupportedMediaType("application/json").into());
        }
        let bytes = read_body(req, body).await?;
        let value = serde_json::from_slice(&bytes).map_err(|error| match error.classify() {
            serde_json::error::Category::Data => AppError::Unprocessable(format!("the body does not fit: {error}")),
            _ => AppError::BadRequest(format!("the body is not valid JSON: {error}")),
        })?;
        // serde would also read a struct from an array (`["hi"]`): only an object will do.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(AppError::Unprocessable("the body must be a JSON object".into()).into());
        }
        Ok(Self(value))
    }
}

/// A form body (`application/x-www-form-urlencoded`), read up to the configured limit. Text that
/// is not UTF-8, raw or percent-encoded, is a `400`, as in JSON: it is never replaced.
pub struct FormBody<T>(pub T);

impl<'a, T: DeserializeOwned> FromRequest<'a> for FormBody<T> {
    async fn from_request(req: &'a Request, body: &mut RequestBody) -> poem::Result<Self> {
        if !has_content_type(req, "application/x-www-form-urlencoded") {
            return Err(AppError::UnsupportedMediaType("application/x-www-form-urlencoded").into());
        }
        let bytes = read_body(req, body).await?;
        // `+` (a space) is ASCII either way, so it needs no decoding to judge the UTF-8.
        let utf8 = |part: &[u8]| percent_encoding::percent_decode(part).decode_utf8().is_ok();
        if !bytes.split(|&b| b == b'&' || b == b'=').all(utf8) {
            return Err(AppError::BadRequest("the form is not valid UTF-8".into()).into());
        }
        let value = serde_urlencoded::from_bytes(&bytes)
            .map_err(|error| AppError::BadRequest(format!("the form does not fit: {error}")))?;
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
