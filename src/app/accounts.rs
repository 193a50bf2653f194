//! Accounts: signing up (the first account of a server is its admin; then `--signup` says who
//! may), signing in, changing a password, and the password hashes behind them. Passwords are argon2id: 19 MiB and tens of milliseconds a hash, so a few
//! at a time, off the async threads, so a burst of sign-ins cannot starve everything else or
//! exhaust memory.

use std::net::IpAddr;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng};

use super::sessions::Session;
use super::{App, Error, invites, sessions};
use crate::config::Signup;
use crate::domain::{InviteCode, NO_PASSWORD, NotAdmitted, Password, Role, Username};
use crate::eventlog::sqlite::AccountListing;
use crate::eventlog::{Admission, Join, Joined, NewSession, WriteError};

/// The longest `User-Agent` kept with a session.
const MAX_USER_AGENT: usize = 256;

/// Where a session is started from, as the front end saw it.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub address: Option<IpAddr>,
    pub user_agent: Option<String>,
}

impl Origin {
    fn session(&self, token_hash: Vec<u8>) -> NewSession {
        NewSession {
            token_hash,
            address: self.address.map(|address| address.to_string()),
            // Cut on a character boundary, control characters dropped.
            user_agent: self
                .user_agent
                .as_deref()
                .map(|agent| agent.chars().filter(|c| !c.is_control()).take(MAX_USER_AGENT).collect()),
        }
    }
}

/// A new session, as sign-in hands it out.
#[derive(Debug)]
pub struct SignedIn {
    /// As the account spells it.
    pub username: String,
    pub role: Role,
    pub token: String,
}

/// Signs in as `username`. Each attempt counts against the allowance of the client's
/// `address`; a wrong password, against the name from that address. An unknown name and a
/// wrong password are the same `WrongPassword`, and cost the same: a password is checked
/// against a stand-in hash when there is no account.
pub async fn sign_in(app: &App, origin: &Origin, username: &str, password: String) -> Result<SignedIn, Error> {
    let address = origin.address;
    let username = Username::parse(username)?;
    app.limits.sign_in(username.as_str(), address)?;
    let password = Password::parse(password)?;
    let (token, token_hash) = sessions::new_token()?;

    let Some(account) = app.log.store.account(username.as_str()).await? else {
        let password = password.clone();
        app.off_thread(move || verifies(&password, stand_in_hash())).await?;
        app.limits.sign_in_failed(username.as_str(), address);
        return Err(Error::WrongPassword);
    };
    // An account made without a password (by `chat-server import`) takes none; the password
    // is checked against the stand-in hash all the same, so the answer takes as long as a
    // wrong password's and says nothing more.
    let without_password = account.password_hash == NO_PASSWORD;
    let stored = if without_password {
        stand_in_hash()
    } else {
        &account.password_hash
    };
    if !verify_password(app, &password, stored).await? || without_password {
        app.limits.sign_in_failed(username.as_str(), address);
        return Err(Error::WrongPassword);
    }
    app.limits.sign_in_succeeded(username.as_str(), address);
    if !account.active {
        // Said only to someone who knows the password.
        return Err(Error::Forbidden("this account has been deactivated".into()));
    }
    app.log
        .writer
        .start_session(account.id, origin.session(token_hash))
        .await?;
    Ok(SignedIn {
        username: account.username,
        role: Role::from_stored(&account.role),
        token,
    })
}

/// A hash of no one's password, made once, to check a password against when there is no
/// account: a sign-in for an unknown name takes as long as one with a wrong password.
fn stand_in_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        Password::parse("no account has this password".into())
            .ok()
            .and_then(|password| hash(&password).ok())
            .unwrap_or_default()
    })
}

/// A new account, as sign-up hands it out.
#[derive(Debug)]
pub struct SignedUp {
    /// As the account spells it.
    pub username: String,
    pub role: Role,
    /// Its first session's token; `None` for an account an admin made for someone else.
    pub token: Option<String>,
}

/// What a sign-up brings.
#[derive(Debug, Default)]
pub struct NewAccount<'a> {
    pub username: &'a str,
    pub password: String,
    /// The invite code, if any (empty: none).
    pub invite: Option<&'a str>,
}

/// Makes an account. The server's first is its admin and needs nothing; after it,
/// `--signup` decides: `invite` takes a live invite (one use of it), `open` nothing,
/// `closed` refuses. An admin (`by`) may make accounts in every mode, for someone else: the
/// account then has no session yet, and the admin's own goes on. Counts against the
/// address's sign-ups, or the admin's account changes.
pub async fn sign_up(
    app: &App,
    origin: &Origin,
    by: Option<&Session>,
    account: NewAccount<'_>,
) -> Result<SignedUp, Error> {
    let admin = by.filter(|session| session.is_admin());
    let username = Username::parse_new(account.username)?;
    let password = Password::parse(account.password)?;
    let invite = account.invite.filter(|code| !code.is_empty());
    let admission = match (admin, app.settings.signup) {
        (Some(_), _) | (None, Signup::Open) => Admission::Open,
        (None, Signup::Closed) => Admission::Closed,
        (None, Signup::Invite) => Admission::Invite(match invite {
            None => None,
            Some(code) => Some(InviteCode::parse(code).ok_or_else(|| not_admitted(NotAdmitted::UnknownInvite))?),
        }),
    };
    match admin {
        Some(admin) => app.limits.account_change(admin.user_id)?,
        None => app.limits.sign_up(origin.address)?,
    }
    // What the writer would refuse is refused before a password is hashed for it; the writer
    // decides for good, in the transaction that makes the account.
    if app.log.store.has_accounts().await? {
        match &admission {
            Admission::Open => {}
            Admission::Closed => return Err(not_admitted(NotAdmitted::Closed)),
            Admission::Invite(None) => return Err(not_admitted(NotAdmitted::NoInvite)),
            Admission::Invite(Some(code)) => {
                if let Err(why) = invites::check(app, code.as_str()).await? {
                    return Err(not_admitted(why));
                }
            }
        }
        if app.log.store.account(username.as_str()).await?.is_some() {
            return Err(name_taken());
        }
    }
    let password_hash = hash_password(app, &password).await?;
    let (token, session) = match admin {
        Some(_) => (None, None),
        None => {
            let (token, token_hash) = sessions::new_token()?;
            (Some(token), Some(origin.session(token_hash)))
        }
    };
    let join = Join {
        username: username.as_str().to_owned(),
        password_hash,
        session,
        admission,
    };
    match app.log.writer.join(join).await {
        Ok(Joined::Made { role, .. }) => {
            tracing::info!(username = username.as_str(), role = role.as_str(), by = ?admin.map(|a| &a.username), "account created");
            Ok(SignedUp {
                username: username.as_str().to_owned(),
                role,
                token,
            })
        }
        Ok(Joined::Refused(why)) => Err(not_admitted(why)),
        Err(WriteError::Conflict("look-alike")) => Err(Error::Conflict(
            "that name looks too much like one already taken: choose another".into(),
        )),
        Err(WriteError::Conflict(_)) => Err(name_taken()),
        Err(error) => Err(error.into()),
    }
}

fn not_admitted(why: NotAdmitted) -> Error {
    Error::Forbidden(why.words().into())
}

fn name_taken() -> Error {
    Error::Conflict("that name is taken: choose another".into())
}

/// Whether the server has no account yet: the next one made is its admin.
pub async fn first_run(app: &App) -> Result<bool, Error> {
    Ok(!app.log.store.has_accounts().await?)
}

/// Changes `session`'s user's password, given the current one. Every other session of theirs
/// ends, and its streams end with `logout`; this one goes on. A wrong current password counts
/// as a failed sign-in from `address`.
pub async fn change_password(
    app: &App,
    session: &Session,
    address: Option<IpAddr>,
    current: String,
    new: String,
) -> Result<(), Error> {
    app.limits.account_change(session.user_id)?;
    app.limits.sign_in(&session.username, address)?;
    let new = Password::parse(new)?;
    let current = Password::parse(current).map_err(|_| Error::Forbidden("the current password is wrong".into()))?;
    let account = app
        .log
        .store
        .account(&session.username)
        .await?
        .ok_or(Error::Unauthorized)?;
    if !verify_password(app, &current, &account.password_hash).await? {
        app.limits.sign_in_failed(&session.username, address);
        return Err(Error::Forbidden("the current password is wrong".into()));
    }
    let password_hash = hash_password(app, &new).await?;
    app.log
        .writer
        .change_password(session.user_id, password_hash, session.token_hash.clone())
        .await?;
    tracing::info!(username = %session.username, "password changed; other sessions ended");
    Ok(())
}

/// The accounts, by name: the active ones, or (for an admin) every one.
pub async fn list(app: &App, session: &Session, with_inactive: bool) -> Result<Vec<AccountListing>, Error> {
    if with_inactive && !session.is_admin() {
        return Err(Error::Forbidden("only admins see deactivated accounts".into()));
    }
    let mut accounts = app.log.store.accounts().await?;
    accounts.retain(|account| with_inactive || account.active);
    Ok(accounts)
}

/// What an admin changes about an account.
#[derive(Debug, Clone, Default)]
pub struct Change<'a> {
    /// `admin` or `member`.
    pub role: Option<&'a str>,
    pub active: Option<bool>,
}

/// An admin promotes, demotes, deactivates or reactivates `username`. A deactivated account's
/// sessions end at once, with their streams, and it cannot sign in; its messages stay. The
/// last active admin cannot be demoted or deactivated (`Conflict`).
pub async fn update(app: &App, session: &Session, username: &str, change: Change<'_>) -> Result<AccountListing, Error> {
    if !session.is_admin() {
        return Err(Error::Forbidden("only admins change accounts".into()));
    }
    app.limits.account_change(session.user_id)?;
    let role = change
        .role
        .map(|role| match role {
            "admin" => Ok(Role::Admin),
            "member" => Ok(Role::Member),
            _ => Err(Error::Invalid(crate::domain::Invalid(
                "a role is `admin` or `member`".into(),
            ))),
        })
        .transpose()?;
    let account = app.log.store.account(username).await?.ok_or_else(|| {
        Error::NotFound(format!(
            "account called `{}`",
            username.chars().take(64).collect::<String>()
        ))
    })?;
    match app.log.writer.update_account(account.id, role, change.active).await {
        Ok(()) => {}
        Err(WriteError::Conflict(_)) => {
            return Err(Error::Conflict(
                "the server needs an active admin: promote someone else first".into(),
            ));
        }
        Err(error) => return Err(error.into()),
    }
    tracing::info!(by = %session.username, username = %account.username, ?role, active = ?change.active, "account changed");
    app.log
        .store
        .accounts()
        .await?
        .into_iter()
        .find(|listed| listed.username == account.username)
        .ok_or_else(|| Error::Internal("an account vanished".into()))
}

async fn hash_password(app: &App, password: &Password) -> Result<String, Error> {
    let password = password.clone();
    app.off_thread(move || hash(&password)).await?
}

async fn verify_password(app: &App, password: &Password, stored: &str) -> Result<bool, Error> {
    let (password, stored) = (password.clone(), stored.to_owned());
    app.off_thread(move || verifies(&password, &stored)).await
}

/// argon2id with the crate's defaults (19 MiB, 2 passes). Slow on purpose.
pub fn hash(password: &Password) -> Result<String, Error> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| Error::Internal(format!("cannot hash password: {e}")))
}

fn verifies(password: &Password, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|hash| Argon2::default().verify_password(password.as_bytes(), &hash).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_themselves() {
        let right = Password::parse("correct horse".into()).unwrap();
        let wrong = Password::parse("battery staple".into()).unwrap();
        let stored = hash(&right).unwrap();
        assert!(stored.starts_with("$argon2id$"));
        assert!(verifies(&right, &stored));
        assert!(!verifies(&wrong, &stored));
        assert!(!verifies(&right, "not a hash"));
    }
}
