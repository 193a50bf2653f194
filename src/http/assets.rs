//! Static files, embedded in the binary (so it runs from any directory) and served under
//! `/static/`. Pages link them with a `?v=` content hash, so a browser may cache them for a
//! year: a changed file gets a new URL. Only embedded files exist here, so no path can reach
//! outside `static/`. Two are served from the root instead, where browsers look for them:
//! the web app manifest and the service worker (whose scope is the folder it is served from).

use std::fmt::Write as _;
use std::sync::OnceLock;

use poem::http::{StatusCode, header};
use poem::web::Path;
use poem::{IntoResponse, Request, Response, handler};
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "static/"]
struct Static;

/// The versioned URLs the pages link to.
pub struct AssetUrls {
    pub style: String,
    pub htmx: String,
    pub stream: String,
    pub icon: String,
    /// The icon with a dot: something is unread.
    pub icon_unread: String,
    pub attention: String,
    pub chat: String,
    pub mentions: String,
    pub admin: String,
    pub search: String,
}

pub fn urls() -> &'static AssetUrls {
    static URLS: OnceLock<AssetUrls> = OnceLock::new();
    URLS.get_or_init(|| AssetUrls {
        style: versioned("style.css"),
        htmx: versioned("vendor/htmx-2.0.11.min.js"),
        stream: versioned("stream.js"),
        icon: versioned("favicon.svg"),
        icon_unread: versioned("favicon-unread.svg"),
        attention: versioned("attention.js"),
        chat: versioned("chat.js"),
        mentions: versioned("mentions.js"),
        admin: versioned("admin.js"),
        search: versioned("search.js"),
    })
}

fn version(path: &str) -> Option<String> {
    let file = Static::get(path)?;
    let mut hex = String::with_capacity(16);
    for byte in &file.metadata.sha256_hash()[..8] {
        let _ = write!(hex, "{byte:02x}");
    }
    Some(hex)
}

fn versioned(path: &str) -> String {
    match version(path) {
        Some(hash) => format!("/static/{path}?v={hash}"),
        None => {
            tracing::error!(path, "static file missing from the build");
            format!("/static/{path}")
        }
    }
}

#[handler]
pub fn static_file(req: &Request, Path(path): Path<String>) -> Response {
    serve(req, &path, None)
}

/// `/manifest.webmanifest`: what a browser needs to install the chat as an app.
#[handler]
pub fn manifest(req: &Request) -> Response {
    serve(req, "manifest.webmanifest", Some("application/manifest+json"))
}

/// `/sw.js`: the service worker, from the root so that it may serve every page (a worker's
/// scope is at most the folder of its script). Its URL cannot carry a version, so it is
/// always revalidated; browsers check a worker's script for changes on their own as well.
#[handler]
pub fn service_worker(req: &Request) -> Response {
    serve(req, "sw.js", Some("text/javascript"))
}

/// An embedded file, with `mime` as its type if given (else the one its name says).
fn serve(req: &Request, path: &str, mime: Option<&str>) -> Response {
    let Some(file) = Static::get(path) else {
        return super::error::json_error(StatusCode::NOT_FOUND, "not found");
    };
    let hash = version(path).unwrap_or_default();
    let etag = format!("\"{hash}\"");
    // A URL carrying the current hash never changes; anything else must be revalidated.
    let current = req.uri().query().is_some_and(|q| q == format!("v={hash}"));
    let cache = if current {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    if req.header(header::IF_NONE_MATCH) == Some(etag.as_str()) {
        return StatusCode::NOT_MODIFIED
            .with_header(header::ETAG, etag)
            .with_header(header::CACHE_CONTROL, cache)
            .into_response();
    }
    Response::builder()
        .content_type(mime.unwrap_or(file.metadata.mimetype()))
        .header(header::ETAG, etag)
        .header(header::CACHE_CONTROL, cache)
        .body(file.data.into_owned())
}
