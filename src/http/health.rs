//! `GET /healthz` (is the database answering?) and `GET /metrics` (Prometheus text).

use poem::http::StatusCode;
use poem::web::Data;
use poem::{IntoResponse, Response, handler};

use super::State;
use super::error::json_error;

#[handler]
pub async fn healthz(Data(state): Data<&State>) -> Response {
    match state.app.healthy().await {
        Ok(()) => "ok\n".into_response(),
        Err(error) => {
            tracing::error!(%error, "health check failed");
            json_error(StatusCode::SERVICE_UNAVAILABLE, "the database is not answering")
        }
    }
}

#[handler]
pub async fn metrics(Data(state): Data<&State>) -> Response {
    state
        .app
        .metrics
        .render()
        .with_content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .into_response()
}
