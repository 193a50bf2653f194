//! Who is asking, over HTTP: the token a request carries (bearer or cookie), the
//! `CurrentUser` extractor, the session cookie, and the check that refuses cross-site writes.

use std::ops::Deref;

use poem::http::header;
use poem::http::uri::Scheme;
use poem::{FromRequest, Request, RequestBody};

use super::State;
use super::error::ApiError;
use crate::app::{self, Error, sessions::Session};

/// The cookie the page signs in with over plain http.
pub const COOKIE: &str = "chat_session";
/// The cookie over TLS. A browser takes a `__Host-` cookie only if it is `Secure`, came over
/// https, names no domain and has `Path=/`: no plain-http page and no neighbouring subdomain
/// can set one, so one planted that way is never mistaken for ours (it is not even read).
pub const SECURE_COOKIE: &str = "__Host-chat_session";
/// How long the browser keeps the cookie.
const COOKIE_MAX_AGE_SECS: u64 = 30 * 24 * 3600;

/// The session cookie's name and attributes for the connection `req` came on.
fn cookie_for(req: &Request) -> (&'static str, &'static str) {
    if *req.scheme() == Scheme::HTTPS {
        (SECURE_COOKIE, "; Secure")
    } else {
        (COOKIE, "")
    }
}

/// `Set-Cookie` value that signs the browser in.
pub fn session_cookie(req: &Request, token: &str) -> String {
    let (name, secure) = cookie_for(req);
    format!("{name}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={COOKIE_MAX_AGE_SECS}{secure}")
}

/// `Set-Cookie` value that signs the browser out.
pub fn cleared_cookie(req: &Request) -> String {
    let (name, secure) = cookie_for(req);
    format!("{name}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}")
}

/// The token a request carries: `Authorization: Bearer …` (the scheme in any case) first,
/// else the session cookie (`__Host-chat_session` over TLS, `chat_session` otherwise). Two
/// `Authorization` headers, one that is not text, or two session cookies (one of them planted
/// by a neighbouring site: cookie tossing) carry none: credentials that disagree are refused,
/// never picked from.
pub fn request_token(req: &Request) -> Option<&str> {
    let mut authorization = req.headers().get_all(header::AUTHORIZATION).iter();
    if let Some(value) = authorization.next() {
        if authorization.next().is_some() {
            return None;
        }
        let value = value.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then(|| token.trim());
    }
    let mut cookies = req
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().strip_prefix(cookie_for(req).0)?.strip_prefix('='));
    let token = cookies.next()?;
    cookies.next().is_none().then_some(token)
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
        let address = super::client::client_ip(req);
        let session = app::sessions::check(&state.app, token, address)
            .await
            .map_err(ApiError::App)?;
        Ok(Self(session))
    }
}
