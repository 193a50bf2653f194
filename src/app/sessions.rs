//! Sessions: tokens, checking one, listing and ending them, changing a password, expiry.
//!
//! A token is 256 random bits, given to the client once and stored only as its SHA-256, so a
//! copy of the database signs nobody in. A session unused for the idle time expires, and so
//! does one older than the lifetime however much it is used; a session found valid is trusted
//! for a few seconds without asking the database again, as long as no session has ended
//! anywhere meanwhile. A user names their sessions by a public id, never by the token.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{App, Error};
use crate::domain::{Role, UserId};
use crate::eventlog::Writer;

/// A fresh token and the hash to store for it.
pub fn new_token() -> Result<(String, Vec<u8>), Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| Error::Internal(format!("no randomness: {e}")))?;
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let hash = hash_token(&token);
    Ok((token, hash))
}

pub fn hash_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Whether `token` could be one of ours: 43 characters of URL-safe base64. Anything else is
/// refused without a database lookup.
fn plausible(token: &str) -> bool {
    token.len() == 43
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A valid session and its user.
#[derive(Debug, Clone)]
pub struct Session {
    pub user_id: UserId,
    pub username: String,
    pub role: Role,
    /// The session's public id, as `GET /api/me/sessions` lists it.
    pub id: String,
    pub token_hash: Vec<u8>,
    /// `Hub::revocations` just before the session was found valid.
    pub revocations: u64,
    /// How long the session lasts if it is not used again (or until its lifetime ends).
    pub expires_in: Duration,
}

impl Session {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

/// How stale a session's `last_seen_at` may get before a request records its use: a write per
/// session at most this often, not one per request.
fn touch_every(idle: Duration) -> Duration {
    (idle / 10).min(Duration::from_secs(60))
}

/// The session `token` names, if it is valid: `Unauthorized` otherwise. `address` is where
/// the request came from, recorded with the session's use.
pub async fn check(app: &App, token: &str, address: Option<IpAddr>) -> Result<Session, Error> {
    if !plausible(token) {
        return Err(Error::Unauthorized);
    }
    let idle_limit = app.settings.session_idle;
    let lifetime = app.settings.session_lifetime;
    let token_hash = hash_token(token);
    // Read before the session is checked: see `Hub::revocations`.
    let revocations = app.log.hub.revocations();
    let now = Instant::now();
    // Remembered again only when something about it changed (checked, or used anew).
    let mut changed = false;
    let mut session = match app.sessions.get(&token_hash, revocations, now) {
        Some(session) => session,
        None => {
            changed = true;
            let row = app
                .log
                .store
                .session(&token_hash, idle_limit, lifetime)
                .await?
                .ok_or(Error::Unauthorized)?;
            let idle = Duration::try_from_secs_f64(row.idle_secs).unwrap_or(Duration::ZERO);
            let age = Duration::try_from_secs_f64(row.age_secs).unwrap_or(Duration::ZERO);
            KnownSession {
                user_id: row.user_id,
                username: row.username,
                role: Role::from_stored(&row.role),
                id: row.id,
                started: now.checked_sub(age).unwrap_or(now),
                last_used: now.checked_sub(idle).unwrap_or(now),
                checked_at: now,
                revocations,
            }
        }
    };
    let idle = now.saturating_duration_since(session.last_used);
    let age = now.saturating_duration_since(session.started);
    if idle > idle_limit || age > lifetime {
        return Err(Error::Unauthorized);
    }
    if idle >= touch_every(idle_limit) {
        app.log
            .writer
            .touch_session(token_hash.clone(), address.map(|address| address.to_string()));
        session.last_used = now;
        changed = true;
    }
    let expires_in = idle_limit
        .saturating_sub(now.saturating_duration_since(session.last_used))
        .min(lifetime.saturating_sub(age));
    let user_id = session.user_id;
    let role = session.role;
    let (username, id) = if changed {
        let known = (session.username.clone(), session.id.clone());
        app.sessions.put(token_hash.clone(), session);
        known
    } else {
        (session.username, session.id)
    };
    Ok(Session {
        user_id,
        username,
        role,
        id,
        token_hash,
        revocations,
        expires_in,
    })
}

/// How long a session still has, asked of the database (it may have been used elsewhere
/// since it was last checked), or `None` if it has ended.
pub async fn remaining(app: &App, token_hash: &[u8]) -> Result<Option<Duration>, Error> {
    let (idle_limit, lifetime) = (app.settings.session_idle, app.settings.session_lifetime);
    Ok(app
        .log
        .store
        .session(token_hash, idle_limit, lifetime)
        .await?
        .map(|row| {
            let idle = Duration::try_from_secs_f64(row.idle_secs).unwrap_or(Duration::ZERO);
            let age = Duration::try_from_secs_f64(row.age_secs).unwrap_or(Duration::ZERO);
            idle_limit.saturating_sub(idle).min(lifetime.saturating_sub(age))
        }))
}

/// Ends `session`: its token stops working and its open streams end with `logout`.
pub async fn sign_out(app: &App, session: &Session) -> Result<(), Error> {
    app.log
        .writer
        .end_session(session.user_id, session.token_hash.clone())
        .await?;
    Ok(())
}

/// One of a user's sessions, as they see it listed.
#[derive(Debug, Clone)]
pub struct Listed {
    pub id: String,
    pub created_at: String,
    pub last_used_at: String,
    pub address: Option<String>,
    pub user_agent: Option<String>,
    /// The session the listing was asked with.
    pub current: bool,
}

/// `session`'s user's sessions, most recently used first.
pub async fn list(app: &App, session: &Session) -> Result<Vec<Listed>, Error> {
    let rows = app.log.store.sessions_of(session.user_id).await?;
    Ok(rows
        .into_iter()
        .map(|row| Listed {
            current: row.token_hash == session.token_hash,
            id: row.id,
            created_at: row.created_at,
            last_used_at: row.last_seen_at,
            address: row.address,
            user_agent: row.user_agent,
        })
        .collect())
}

/// Ends the session of `session`'s user with the public id `id` (their own, or another of
/// theirs); its streams end with `logout`. `NotFound` for an id that is none of theirs.
pub async fn revoke(app: &App, session: &Session, id: &str) -> Result<(), Error> {
    // Ids are 16 hex digits: anything else names nothing, without asking the database.
    if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::NotFound("such session".into()));
    }
    app.limits.account_change(session.user_id)?;
    if app.log.writer.end_session_by_id(session.user_id, id.to_owned()).await? {
        Ok(())
    } else {
        Err(Error::NotFound("such session".into()))
    }
}

/// Ends every session of `session`'s user but `session` itself; returns how many ended.
pub async fn revoke_others(app: &App, session: &Session) -> Result<u64, Error> {
    app.limits.account_change(session.user_id)?;
    Ok(app
        .log
        .writer
        .end_other_sessions(session.user_id, session.token_hash.clone())
        .await?)
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
    role: Role,
    id: String,
    /// When it was started, as far as this server knows.
    started: Instant,
    /// When it was last used, as far as this server knows.
    last_used: Instant,
    /// When the database last said it exists.
    checked_at: Instant,
    /// `Hub::revocations` at that check.
    revocations: u64,
}

/// Sessions recently found valid, so that a busy client costs no query per request.
#[derive(Default)]
pub struct SessionCache {
    known: Mutex<HashMap<Vec<u8>, KnownSession>>,
}

impl SessionCache {
    fn get(&self, token_hash: &[u8], revocations: u64, now: Instant) -> Option<KnownSession> {
        let known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        known
            .get(token_hash)
            .filter(|s| s.revocations == revocations && now.saturating_duration_since(s.checked_at) < SESSION_TRUST)
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
pub async fn run_sweeper(writer: Writer, idle: Duration, lifetime: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = tick.tick() => writer.expire_sessions(idle, lifetime),
            () = stop.cancelled() => return,
        }
    }
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
}
