//! Invites: admins make them (so many uses, for so long), list the live ones and revoke them;
//! a new member brings one to sign up (`accounts::sign_up`), and the join page checks one
//! before showing its form. Each admin's invites count against `--invite-rate`, and there are
//! at most `MAX_LIVE_INVITES` live ones at a time.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::sessions::Session;
use super::{App, Error};
use crate::domain::{InviteCode, InviteTerms, NotAdmitted, UserId};
use crate::eventlog::{Invite, NewInvite, WriteError};

/// The most invites that may be live (not used up, expired or revoked) at once: each is a way
/// in, and the admin page lists them all.
pub const MAX_LIVE_INVITES: u32 = 1_000;

/// A fresh code: 128 random bits, 22 characters of URL-safe base64.
pub fn new_code() -> Result<String, Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| Error::Internal(format!("no randomness: {e}")))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// What `NewInvite` to store for `terms`, made by `created_by` (`None`: the operator).
pub fn new_invite(terms: InviteTerms, created_by: Option<UserId>) -> Result<NewInvite, Error> {
    Ok(NewInvite {
        code: new_code()?,
        terms,
        created_by,
        max_live: MAX_LIVE_INVITES,
    })
}

/// The words for a refused invite: there are too many live ones.
pub const TOO_MANY_LIVE: &str = "there are already 1,000 live invites: revoke some before making more";

fn admins_only(session: &Session) -> Result<(), Error> {
    if session.is_admin() {
        Ok(())
    } else {
        Err(Error::Forbidden("only admins manage invites".into()))
    }
}

/// An admin makes an invite for `uses` accounts (default 1) lasting `hours` (default a week).
pub async fn create(app: &App, session: &Session, uses: Option<i64>, hours: Option<i64>) -> Result<Invite, Error> {
    admins_only(session)?;
    let terms = InviteTerms::parse(uses, hours)?;
    app.limits.invite(session.user_id)?;
    match app
        .log
        .writer
        .create_invite(new_invite(terms, Some(session.user_id))?)
        .await
    {
        Ok(invite) => {
            tracing::info!(by = %session.username, uses = terms.uses, hours = terms.hours, "invite made");
            Ok(invite)
        }
        Err(WriteError::Conflict("live invites")) => Err(Error::Conflict(TOO_MANY_LIVE.into())),
        Err(error) => Err(error.into()),
    }
}

/// The live invites, newest first, for an admin.
pub async fn list(app: &App, session: &Session) -> Result<Vec<Invite>, Error> {
    admins_only(session)?;
    Ok(app.log.store.live_invites().await?)
}

/// An admin revokes the invite `code`: nobody joins with it from now on. `NotFound` if no
/// invite has that code; one revoked, expired or used up already is revoked all the same.
pub async fn revoke(app: &App, session: &Session, code: &str) -> Result<(), Error> {
    admins_only(session)?;
    let not_found = || Error::NotFound("invite with that code".into());
    let code = InviteCode::parse(code).ok_or_else(not_found)?;
    app.limits.invite(session.user_id)?;
    if !app.log.writer.revoke_invite(code.as_str().to_owned()).await? {
        return Err(not_found());
    }
    tracing::info!(by = %session.username, "invite revoked");
    Ok(())
}

/// The invite `code` if it still lets someone in, else why not (an unknown code included).
pub async fn check(app: &App, code: &str) -> Result<Result<Invite, NotAdmitted>, Error> {
    let Some(code) = InviteCode::parse(code) else {
        return Ok(Err(NotAdmitted::UnknownInvite));
    };
    Ok(match app.log.store.invite(code.as_str()).await? {
        None => Err(NotAdmitted::UnknownInvite),
        Some(invite) => match invite.refusal() {
            Some(why) => Err(why),
            None => Ok(invite),
        },
    })
}
