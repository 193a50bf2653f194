//! `chat-server admin ...`: what an operator does to accounts and invites from the shell, for
//! the day the admin password is lost. It changes the database file directly, in one transaction each,
//! beside a running server if there is one (SQLite serialises the writes).
//!
//! A running server trusts a session it checked for a few seconds, so a reset password's
//! old sessions stop working within them; an event stream of such a session ends when it
//! next checks its session, at the latest when the server restarts.

use anyhow::{Context, bail};
use std::io::BufRead;

use crate::app::{accounts, invites};
use crate::config::{AdminAction, Config};
use crate::domain::{InviteTerms, Password, Username};
use crate::eventlog::WriteError;
use crate::eventlog::sqlite::{self, Durability, operator};

/// Carries out `action` on the database at `config.db`, reading a password from `input` where
/// it needs one; returns what to tell the operator.
pub async fn run(config: &Config, action: AdminAction, input: impl BufRead) -> anyhow::Result<String> {
    let mut conn = sqlite::open(&config.db, Durability::Full).await?.writer;
    match action {
        AdminAction::ResetPassword { username } => {
            let hash = hash(&read_password(input)?)?;
            match operator::reset_password(&mut conn, &username, &hash).await? {
                Some(ended) => Ok(format!("{username}: password reset; {ended} session(s) ended")),
                None => bail!("no account called {username:?}"),
            }
        }
        AdminAction::CreateUser { username, admin } => {
            let name = Username::parse_new(&username).map_err(|invalid| anyhow::anyhow!("{invalid}"))?;
            let hash = hash(&read_password(input)?)?;
            match operator::create_user(&mut conn, name.as_str(), &hash, admin).await {
                Ok(role) => Ok(format!("{username}: account made ({role})")),
                Err(WriteError::Conflict(_)) => bail!("the name {username:?} is taken, or too like a taken one"),
                Err(error) => Err(error.into()),
            }
        }
        AdminAction::Promote { username } => {
            if operator::promote(&mut conn, &username).await? {
                Ok(format!("{username}: now an active admin"))
            } else {
                bail!("no account called {username:?}")
            }
        }
        AdminAction::Deactivate { username } => match operator::deactivate(&mut conn, &username).await {
            Ok(Some(ended)) => Ok(format!("{username}: deactivated; {ended} session(s) ended")),
            Ok(None) => bail!("no account called {username:?}"),
            Err(WriteError::Conflict(_)) => {
                bail!("{username:?} is the last active admin; promote someone else first")
            }
            Err(error) => Err(error.into()),
        },
        AdminAction::Invite { uses, expires_in_hours } => {
            let terms = InviteTerms::parse(Some(uses.into()), Some(expires_in_hours.into()))
                .map_err(|invalid| anyhow::anyhow!("{invalid}"))?;
            let invite = invites::new_invite(terms, None).map_err(|error| anyhow::anyhow!("{error}"))?;
            let made = match operator::create_invite(&mut conn, &invite).await {
                Ok(made) => made,
                Err(WriteError::Conflict(_)) => bail!("{}", invites::TOO_MANY_LIVE),
                Err(error) => return Err(error.into()),
            };
            // The whole link where the server's public origin is known, else its path.
            let origin = config
                .public_origin
                .first()
                .map_or("", |origin| origin.trim_end_matches('/'));
            Ok(format!(
                "invite {code}: {uses} use(s), until {until}\n{origin}/join/{code}",
                code = made.code,
                uses = made.uses,
                until = made.expires_at,
            ))
        }
    }
}

fn hash(password: &Password) -> anyhow::Result<String> {
    accounts::hash(password).map_err(|error| anyhow::anyhow!("{error}"))
}

/// One line of `input`, without its line end, as a password.
fn read_password(mut input: impl BufRead) -> anyhow::Result<Password> {
    let mut line = String::new();
    input
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    let line = line.strip_suffix('\n').unwrap_or(&line);
    let line = line.strip_suffix('\r').unwrap_or(line);
    Password::parse(line.to_owned()).map_err(|invalid| anyhow::anyhow!("{invalid}"))
}
