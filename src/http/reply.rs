//! The small answers every page handler shares: a redirect after a form, and the error page.

use askama::Template;
use poem::http::{StatusCode, header};
use poem::web::Html;
use poem::{IntoResponse, Response};

use super::assets::{self, AssetUrls};
use super::error::ApiError;

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    assets: &'static AssetUrls,
    title: &'a str,
    message: &'a str,
}

/// `303 See Other` to `location`: where a form sends the browser next.
pub fn see_other(location: &str) -> Response {
    StatusCode::SEE_OTHER
        .with_header(header::LOCATION, location)
        .into_response()
}

/// The page that says what went wrong, with `status`.
pub fn error_page(status: StatusCode, title: &str, message: &str) -> Result<Response, ApiError> {
    let html = ErrorPage {
        assets: assets::urls(),
        title,
        message,
    }
    .render()?;
    Ok(Html(html).with_status(status).into_response())
}
