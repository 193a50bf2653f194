//! The operator's changes to accounts (`chat-server admin`), each one whole transaction on a
//! connection of its own, beside the writer of a running server if there is one.

use sqlx::Connection;
use sqlx::sqlite::SqliteConnection;

use super::writes;
use crate::eventlog::{Invite, NewInvite, WriteError};

/// Sets `username`'s password hash and ends every session of theirs; how many ended, or
/// `None` if there is no such account.
pub async fn reset_password(
    conn: &mut SqliteConnection,
    username: &str,
    password_hash: &str,
) -> Result<Option<u64>, WriteError> {
    let mut tx = conn.begin().await?;
    let Some(user) = writes::find_user(&mut tx, username).await? else {
        return Ok(None);
    };
    writes::update_password(&mut tx, user, password_hash).await?;
    let ended = writes::delete_sessions_of(&mut tx, user).await?;
    tx.commit().await?;
    Ok(Some(ended))
}

/// Makes the account, an admin if `admin` (or if it is the server's first); returns its
/// role. `Conflict("username")` if the name is taken.
pub async fn create_user(
    conn: &mut SqliteConnection,
    username: &str,
    password_hash: &str,
    admin: bool,
) -> Result<String, WriteError> {
    let mut tx = conn.begin().await?;
    let user = writes::insert_user(&mut tx, username, password_hash).await?;
    if admin {
        writes::promote(&mut tx, user).await?;
    }
    let role = writes::role_of(&mut tx, user).await?;
    tx.commit().await?;
    Ok(role)
}

/// Makes `username` an active admin; `false` if there is no such account.
pub async fn promote(conn: &mut SqliteConnection, username: &str) -> Result<bool, WriteError> {
    let mut tx = conn.begin().await?;
    let Some(user) = writes::find_user(&mut tx, username).await? else {
        return Ok(false);
    };
    writes::promote(&mut tx, user).await?;
    tx.commit().await?;
    Ok(true)
}

/// Deactivates `username` and ends every session of theirs; how many ended, or `None` if
/// there is no such account. `Conflict("the last admin")` if they are the last active admin.
pub async fn deactivate(conn: &mut SqliteConnection, username: &str) -> Result<Option<u64>, WriteError> {
    let mut tx = conn.begin().await?;
    let Some(user) = writes::find_user(&mut tx, username).await? else {
        return Ok(None);
    };
    let ended = writes::update_account(&mut tx, user, None, Some(false)).await?;
    tx.commit().await?;
    Ok(Some(ended.len() as u64))
}

/// Makes an invite for the operator (made by nobody in particular).
/// `Conflict("live invites")` if there are as many live ones as `invite.max_live`.
pub async fn create_invite(conn: &mut SqliteConnection, invite: &NewInvite) -> Result<Invite, WriteError> {
    let mut tx = conn.begin().await?;
    let made = writes::insert_invite(&mut tx, invite).await?;
    tx.commit().await?;
    Ok(made)
}
