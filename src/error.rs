//! `AppError`: every way a request can fail, and the HTTP answer each one gets.
//! Every error body is JSON `{"error": "..."}`; a 5xx body says only that it failed, while the
//! log keeps the detail.

use std::time::Duration;

use poem::error::ResponseError;
use poem::http::StatusCode;
use poem::{Body, IntoResponse, Response};

use crate::model::Invalid;
use crate::writer::WriteError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The body is not JSON, or a query parameter is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// Well-formed, but a value breaks a rule (an empty message, a bad name).
    #[error("{0}")]
    Invalid(#[from] Invalid),
    /// Valid JSON of the wrong shape: a missing field, a number for a string.
    #[error("{0}")]
    Unprocessable(String),
    #[error("sign in first: no valid session cookie or bearer token")]
    Unauthorized,
    #[error("wrong password")]
    WrongPassword,
    #[error("cross-site request refused: the Origin header names another site")]
    CrossSite,
    #[error("no room called `{0}`")]
    NoSuchRoom(String),
    #[error("a room called `{0}` already exists")]
    RoomTaken(String),
    #[error("this client_id was already used for a different message")]
    ClientIdReused,
    #[error("this endpoint sends text/event-stream, which the Accept header excludes")]
    NotAcceptable,
    /// The body is not of the one type the route reads (`application/json`, or a form).
    #[error("send the body with Content-Type: {0}")]
    UnsupportedMediaType(&'static str),
    #[error("the request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// A client used up an allowance (`--message-rate`, `--signin-rate`, streams per user).
    #[error("too many {what}; try again in {} s", retry_after_secs(*retry_after))]
    TooManyRequests { what: &'static str, retry_after: Duration },
    /// The server has as many open streams as `--max-streams` allows.
    #[error("the server is at its limit of open event streams; try again in {} s", retry_after_secs(*retry_after))]
    ServerFull { retry_after: Duration },
    /// The database cannot take the write now (disk full, locked, shutting down).
    #[error("the server cannot store this right now: {0}")]
    Unavailable(WriteError),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("template: {0}")]
    Render(#[from] askama::Error),
    #[error("{0}")]
    Internal(String),
}

impl From<WriteError> for AppError {
    fn from(error: WriteError) -> Self {
        match error {
            WriteError::ClientIdReused => Self::ClientIdReused,
            other => Self::Unavailable(other),
        }
    }
}

impl AppError {
    /// The `Retry-After` seconds to send, for a refusal that passes with time.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Self::Unavailable(_) => Some(1),
            Self::TooManyRequests { retry_after, .. } | Self::ServerFull { retry_after } => {
                Some(retry_after_secs(*retry_after))
            }
            _ => None,
        }
    }
}

impl ResponseError for AppError {
    fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Invalid(_) | Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unauthorized | Self::WrongPassword => StatusCode::UNAUTHORIZED,
            Self::CrossSite => StatusCode::FORBIDDEN,
            Self::NoSuchRoom(_) => StatusCode::NOT_FOUND,
            Self::RoomTaken(_) | Self::ClientIdReused => StatusCode::CONFLICT,
            Self::NotAcceptable => StatusCode::NOT_ACCEPTABLE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) | Self::ServerFull { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Db(_) | Self::Render(_) | Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn as_response(&self) -> Response {
        let status = self.status();
        // A refusal for load is expected and said to the client; a failure is logged.
        let message = match self {
            Self::Unavailable(error) => {
                tracing::warn!(%error, "request refused: the database cannot take it");
                "the server cannot store this right now; try again shortly".to_owned()
            }
            Self::ServerFull { .. } => self.to_string(),
            _ if status.is_server_error() => {
                tracing::error!(error = %self, "request failed");
                "something went wrong".to_owned()
            }
            _ => self.to_string(),
        };
        let response = json_error(status, &message);
        match (self, self.retry_after()) {
            (_, Some(wait)) => response.with_header("Retry-After", wait).into_response(),
            // The rest of the body is not read: the connection cannot carry another request,
            // and a client must not try.
            (Self::PayloadTooLarge(_), None) => response.with_header("Connection", "close").into_response(),
            _ => response,
        }
    }
}

/// `Retry-After` counts whole seconds: round up, and never say 0.
fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

/// `{"error": message}` with `status`.
pub fn json_error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    Response::builder()
        .status(status)
        .content_type("application/json")
        .body(Body::from_string(body))
}

/// Turns any error that reached the top (poem's own too: unknown route, wrong method, bad query)
/// into a JSON answer.
pub async fn into_json_response(error: poem::Error) -> Response {
    if let Some(app_error) = error.downcast_ref::<AppError>() {
        return app_error.as_response();
    }
    let status = error.status();
    if status.is_server_error() {
        tracing::error!(%error, "request failed");
        return json_error(status, "something went wrong");
    }
    let message = match status {
        StatusCode::NOT_FOUND => "not found".to_owned(),
        StatusCode::METHOD_NOT_ALLOWED => "method not allowed".to_owned(),
        _ => error.to_string(),
    };
    json_error(status, &message)
}
