//! `ApiError`: how a request fails over HTTP. Every error body is JSON `{"error": "..."}`; a
//! 5xx body says only that it failed, while the log keeps the detail.

use poem::error::ResponseError;
use poem::http::StatusCode;
use poem::{Body, IntoResponse, Response};

use crate::app::Error;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The chat refused or failed the operation.
    #[error(transparent)]
    App(#[from] Error),
    /// The body is not JSON, or a query parameter is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// Valid JSON of the wrong shape: a missing field, a number for a string.
    #[error("{0}")]
    Unprocessable(String),
    #[error("cross-site request refused: the Origin header names another site")]
    CrossSite,
    #[error("this endpoint sends text/event-stream, which the Accept header excludes")]
    NotAcceptable,
    /// The body is not of the one type the route reads (`application/json`, or a form).
    #[error("send the body with Content-Type: {0}")]
    UnsupportedMediaType(&'static str),
    #[error("the request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        Self::App(error.into())
    }
}

impl From<askama::Error> for ApiError {
    fn from(error: askama::Error) -> Self {
        Self::App(error.into())
    }
}

/// The status of an operation's error.
pub fn status_of(error: &Error) -> StatusCode {
    match error {
        Error::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
        Error::Unauthorized | Error::WrongPassword => StatusCode::UNAUTHORIZED,
        Error::NotFound(_) => StatusCode::NOT_FOUND,
        Error::Forbidden(_) => StatusCode::FORBIDDEN,
        Error::Conflict(_) => StatusCode::CONFLICT,
        Error::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
        Error::Unavailable(_) | Error::ServerFull { .. } | Error::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
        Error::Db(_) | Error::Render(_) | Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl ApiError {
    /// The `Retry-After` seconds to send, for a refusal that passes with time.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Self::App(error) => error.retry_after(),
            _ => None,
        }
    }
}

impl ResponseError for ApiError {
    fn status(&self) -> StatusCode {
        match self {
            Self::App(error) => status_of(error),
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::CrossSite => StatusCode::FORBIDDEN,
            Self::NotAcceptable => StatusCode::NOT_ACCEPTABLE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }

    fn as_response(&self) -> Response {
        let status = self.status();
        // A refusal for load is expected and said to the client; a failure is logged.
        let message = match self {
            Self::App(Error::Unavailable(error)) => {
                tracing::warn!(%error, "request refused: the database cannot take it");
                "the server cannot store this right now; try again shortly".to_owned()
            }
            Self::App(Error::ServerFull { .. } | Error::Busy { .. }) => self.to_string(),
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
    if let Some(api_error) = error.downcast_ref::<ApiError>() {
        return api_error.as_response();
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
