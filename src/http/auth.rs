//! Who is asking, over HTTP: the token a request carries (bearer or cookie), the
//! `CurrentUser` extractor, the session cookie, and the check that refuses cross-site writes.

use std::ops::Deref;

use poem::http::{Method, header};
use poem::{Endpoint, FromRequest, IntoResponse, Request, RequestBody, Response};

use super::State;
use super::error::ApiError;
use crate::app::{self, Error, sessions::Session};

/// The cookie the page signs in with.
pub const COOKIE: &str = "chat_session";
/// How long the browser keeps the cookie.
const COOKIE_MAX_AGE_SECS: u64 = 30 * 24 * 3600;

/// `Set-Cookie` value that signs the browser in.
pub fn session_cookie(token: &str) -> String {
    format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={COOKIE_MAX_AGE_SECS}")
}

/// `Set-Cookie` value that signs the browser out.
pub fn cleared_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0")
}

/// The token a request carries: `Authorization: Bearer …` first, else the session cookie.
/// Two `Authorization` headers, or one that is not text, carry none: credentials that
/// disagree are refused, never picked from.
pub fn request_token(req: &Request) -> Option<&str> {
    let mut authorization = req.headers().get_all(header::AUTHORIZATION).iter();
    if let Some(value) = authorization.next() {
        if authorization.next().is_some() {
            return None;
        }
        return value.to_str().ok()?.strip_prefix("Bearer ").map(str::trim);
    }
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

/// The signed-in user. Extracting it answers `401` when the request has no valid session.
#[derive(Debug, Clone)]
pub struct CurrentUser(pub Session);

impl Deref for CurrentUser {
    type Target = Session;

    fn deref(&self) -> &Session {
        &self.0
    }
}

impl<'a> FromRequest<'a> for CurrentUser {
    async fn from_request(req: &'a Request, _body: &mut RequestBody) -> poem::Result<Self> {
        let state = req
            .data::<State>()
            .ok_or_else(|| ApiError::App(Error::Internal("application state missing".into())))?;
        let token = request_token(req).ok_or(ApiError::App(Error::Unauthorized))?;
        let session = app::sessions::check(&state.app, token).await.map_err(ApiError::App)?;
        Ok(Self(session))
    }
}

/// Refuses state-changing requests that a browser sent from another site: the `Origin`
/// header, when present, must name this host. Requests without `Origin` (curl, scripts) and
/// bearer-token requests (a browser never adds those on its own) pass.
pub async fn same_origin_guard<E: Endpoint>(next: E, req: Request) -> poem::Result<Response> {
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let bearer = req
        .header(header::AUTHORIZATION)
        .is_some_and(|v| v.starts_with("Bearer "));
    if !safe
        && !bearer
        && let Some(origin) = req.header(header::ORIGIN)
        && !origin_matches_host(origin, req.header(header::HOST).unwrap_or_default())
    {
        return Err(ApiError::CrossSite.into());
    }
    Ok(next.call(req).await?.into_response())
}

/// `Origin: http://host:port` against `Host: host:port`. `null` and garbage never match.
fn origin_matches_host(origin: &str, host: &str) -> bool {
    let Some((_, authority)) = origin.split_once("://") else {
        return false;
    };
    !host.is_empty() && authority.eq_ignore_ascii_case(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        assert!(origin_matches_host("http://127.0.0.1:8080", "127.0.0.1:8080"));
        assert!(origin_matches_host("https://Chat.Example", "chat.example"));
        assert!(!origin_matches_host("http://evil.example", "127.0.0.1:8080"));
        assert!(!origin_matches_host("http://127.0.0.1:8081", "127.0.0.1:8080"));
        assert!(!origin_matches_host("null", "127.0.0.1:8080"));
        assert!(!origin_matches_host("http://x", ""));
    }
}
