//! `GET /healthz` (is the database answering?) and `GET /metrics` (Prometheus text).

use poem::http::StatusCode;
use poem::web::Data;
use poem::{IntoResponse, Request, Response, handler};

use super::client::client_ip;
use super::error::json_error;
use super::{State, auth};

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

/// The metrics, for a local address or, with `--metrics-token`, for a bearer of that token:
/// they say how busy the server is and who is connected.
#[handler]
pub async fn metrics(req: &Request, Data(state): Data<&State>) -> Response {
    let allowed = match &state.metrics_token {
        Some(token) => auth::request_token(req) == Some(token.as_str()),
        // The client behind a `--trust-proxy` proxy on this machine is not local.
        None => client_ip(req).is_some_and(|ip| ip.is_loopback()),
    };
    if !allowed {
        return json_error(
            StatusCode::FORBIDDEN,
            "metrics are served to local addresses, or to the bearer of --metrics-token",
        );
    }
    // The rest are as fresh as they can be without the database.
    if let Err(error) = state.app.observe_storage().await {
        tracing::warn!(%error, "cannot read the database's sizes for the metrics");
    }
    state
        .app
        .metrics
        .render()
        .with_content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .into_response()
}
