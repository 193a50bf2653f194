//! Who is asking: session tokens, password hashes, and the `CurrentUser` extractor.
//!
//! A token is 256 random bits, given to the client once (JSON body and an HttpOnly cookie) and
//! stored only as its SHA-256, so a copy of the database signs nobody in. Passwords are stored
//! as argon2id hashes.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use poem::http::{Method, header};
use poem::{Endpoint, FromRequest, IntoResponse, Request, RequestBody, Response};
use sha2::{Digest, Sha256};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::AppState;
use crate::error::AppError;
use crate::model::{Password, UserId};
use crate::writer::{Command, Writer};

/// The cookie the page signs in with.
pub const COOKIE: &str = "chat_session";
/// How long the browser keeps the cookie.
const COOKIE_MAX_AGE_SECS: u64 = 30 * 24 * 3600;

/// A fresh token and the hash to store for it.
pub fn new_token() -> Result<(String, Vec<u8>), AppError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| AppError::Internal(format!("no randomness: {e}")))?;
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let hash = hash_token(&token);
    Ok((token, hash))
}

pub fn hash_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// argon2id with the crate's defaults (19 MiB, 2 passes). Slow on purpose: call it off the
/// async threads.
pub fn hash_password(password: &Password) -> Result<String, AppError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| AppError::Internal(format!("cannot hash password: {e}")))
}

pub fn verify_password(password: &Password, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|hash| Argon2::default().verify_password(password.as_bytes(), &hash).is_ok())
}

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

/// Whether `token` could be one of ours: 43 characters of URL-safe base64. Anything else is
/// refused without a database lookup.
fn plausible(token: &str) -> bool {
    token.len() == 43
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The signed-in user. Extracting it answers `401` when the request has no valid session.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub id: UserId,
    pub username: String,
    pub token_hash: Vec<u8>,
    /// `Hub::sessions_ended` just before the session was found valid.
    pub sessions_ended: u64,
    /// How long the session lasts if it is not used again.
    pub expires_in: Duration,
}

/// How stale a session's `last_seen_at` may get before a request records its use: a write per
/// session at most this often, not one per request.
fn touch_every(idle: Duration) -> Duration {
    (idle / 10).min(Duration::from_secs(60))
}

impl<'a> FromRequest<'a> for CurrentUser {
    async fn from_request(req: &'a Request, _body: &mut RequestBody) -> poem::Result<Self> {
        let state = req
            .data::<AppState>()
            .ok_or_else(|| AppError::Internal("application state missing".into()))?;
        let token = request_token(req)
            .filter(|t| plausible(t))
            .ok_or(AppError::Unauthorized)?;
        let token_hash = hash_token(token);
        // Read before the session is checked: see `Hub::sessions_ended`.
        let sessions_ended = state.hub.sessions_ended();
        let now = Instant::now();
        // Remembered again only when something about it changed (checked, or used anew).
        let mut changed = false;
        let mut session = match state.sessions.get(&token_hash, sessions_ended, now) {
            Some(session) => session,
            None => {
                changed = true;
                let user = state
                    .store
                    .session_user(&token_hash, state.session_idle)
                    .await
                    .map_err(AppError::from)?
                    .ok_or(AppError::Unauthorized)?;
                let idle = Duration::try_from_secs_f64(user.idle_secs).unwrap_or(Duration::ZERO);
                KnownSession {
                    user_id: user.user_id,
                    username: user.username,
                    last_used: now.checked_sub(idle).unwrap_or(now),
                    checked_at: now,
                    sessions_ended,
                }
            }
        };
        let idle = now.saturating_duration_since(session.last_used);
        if idle > state.session_idle {
            return Err(AppError::Unauthorized.into());
        }
        if idle >= touch_every(state.session_idle) {
            state.writer.submit_detached(Command::TouchSession {
                token_hash: token_hash.clone(),
            });
            session.last_used = now;
            changed = true;
        }
        let expires_in = state
            .session_idle
            .saturating_sub(now.saturating_duration_since(session.last_used));
        let id = session.user_id;
        let username = if changed {
            let username = session.username.clone();
            state.sessions.put(token_hash.clone(), session);
            username
        } else {
            session.username
        };
        Ok(Self {
            id,
            username,
            token_hash,
            sessions_ended,
            expires_in,
        })
    }
}

/// How long a session found valid in the database is trusted without asking again, as long as
/// no session has ended meanwhile (any sign-out anywhere sends every request back to the
/// database once).
const SESSION_TRUST: Duration = Duration::from_secs(5);
/// Sessions remembered at most; beyond it the memory starts over.
const SESSION_CACHE_ENTRIES: usize = 100_000;

#[derive(Clone)]
struct KnownSession {
    user_id: UserId,
    username: String,
    /// When it was last used, as far as this server knows.
    last_used: Instant,
    /// When the database last said it exists.
    checked_at: Instant,
    /// `Hub::sessions_ended` at that check.
    sessions_ended: u64,
}

/// Sessions recently found valid, so that a busy client costs no query per request.
#[derive(Default)]
pub struct SessionCache {
    known: Mutex<HashMap<Vec<u8>, KnownSession>>,
}

impl SessionCache {
    fn get(&self, token_hash: &[u8], sessions_ended: u64, now: Instant) -> Option<KnownSession> {
        let known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        known
            .get(token_hash)
            .filter(|s| {
                s.sessions_ended == sessions_ended && now.saturating_duration_since(s.checked_at) < SESSION_TRUST
            })
            .cloned()
    }

    fn put(&self, token_hash: Vec<u8>, session: KnownSession) {
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        if known.len() >= SESSION_CACHE_ENTRIES {
            known.clear();
        }
        known.insert(token_hash, session);
    }
}

/// Removes expired sessions at start-up and every hour after, until `stop`. (They are refused
/// anyway; this keeps the table to the sessions that can still sign someone in.)
pub async fn run_session_sweeper(writer: Writer, idle: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = tick.tick() => writer.submit_detached(Command::DeleteExpiredSessions { idle }),
            () = stop.cancelled() => return,
        }
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
        return Err(AppError::CrossSite.into());
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
    fn tokens_are_256_bits_and_distinct() {
        let (a, hash_a) = new_token().unwrap();
        let (b, _) = new_token().unwrap();
        assert_ne!(a, b);
        assert!(plausible(&a));
        assert_eq!(URL_SAFE_NO_PAD.decode(&a).unwrap().len(), 32);
        assert_eq!(hash_a, hash_token(&a));
    }

    #[test]
    fn passwords_verify_only_themselves() {
        let right = Password::parse("correct horse".into()).unwrap();
        let wrong = Password::parse("battery staple".into()).unwrap();
        let stored = hash_password(&right).unwrap();
        assert!(stored.starts_with("$argon2id$"));
        assert!(verify_password(&right, &stored));
        assert!(!verify_password(&wrong, &stored));
        assert!(!verify_password(&right, "not a hash"));
    }

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
