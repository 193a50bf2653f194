//! The plain-HTTP listener of `--redirect-http`: every request, whatever its method or path, is
//! answered `308 Permanent Redirect` to the same path and query over https, and nothing else
//! is served there: no page, no API, no cookie. A `308` (unlike a `301`) keeps the method, so
//! a form posted to the old address is posted again, over TLS, rather than turned into a `GET`.
//!
//! It runs on the same guarded connections as the main listener (silent, request and write
//! timeouts, the connection caps, counted together with the main listener's), reads no body,
//! and closes each connection after its one answer.

use poem::http::{StatusCode, header};
use poem::{Endpoint, Request, Response};

use super::origin::{self, Origins};

/// The redirecting endpoint, for the origins the https listener answers as.
pub fn app(origins: std::sync::Arc<Origins>) -> impl Endpoint<Output = Response> {
    poem::endpoint::make_sync(move |req: Request| redirect(&req, &origins))
}

fn redirect(req: &Request, origins: &Origins) -> Response {
    let answer = |status: StatusCode, text: &'static str| {
        Response::builder()
            .status(status)
            .header(header::CONNECTION, "close")
            .content_type("text/plain; charset=utf-8")
            .body(text)
    };
    let authority = match origin::authority(req) {
        Ok(Some(authority)) => authority,
        Ok(None) | Err(_) => return answer(StatusCode::BAD_REQUEST, "a request names its Host\n"),
    };
    let Some(base) = origins.secure_base_for(&authority) else {
        return answer(
            StatusCode::MISDIRECTED_REQUEST,
            "this server does not answer for that host (see --public-origin)\n",
        );
    };
    // `OPTIONS *` names no path: the origin's root stands for it.
    let path = req
        .uri()
        .path_and_query()
        .map(|path| path.as_str())
        .filter(|path| path.starts_with('/'))
        .unwrap_or("/");
    Response::builder()
        .status(StatusCode::PERMANENT_REDIRECT)
        .header(header::LOCATION, format!("{base}{path}"))
        .header(header::CONNECTION, "close")
        .header(header::CACHE_CONTROL, "no-store")
        .body("")
}
