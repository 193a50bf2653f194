//! Static files, embedded in the binary (so it runs from any directory) and served under
//! `/static/`. Pages link them with a `?v=` content hash, so a browser may cache them for a
//! year: a changed file gets a new URL. Only embedded files exist here, so no path can reach
//! outside `static/`.

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
    pub chat: String,
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
        chat: versioned("chat.js"),
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
    let Some(file) = Static::get(&path) else {
        return super::error::json_error(StatusCode::NOT_FOUND, "not found");
    };
    let hash = version(&path).unwrap_or_default();
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
        .content_type(file.metadata.mimetype())
        .header(header::ETAG, etag)
        .header(header::CACHE_CONTROL, cache)
        .body(file.data.into_owned())
}
