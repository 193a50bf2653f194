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

/// Writes a copy of the database `conn` reads into `into`, a file that is empty or does not
/// exist: `VACUUM INTO`, one read transaction, so the copy is one consistent moment of the
/// file (the committed WAL frames included) and needs no `-wal` beside it. In WAL mode a
/// reader never blocks the writer, so a running server goes on committing meanwhile.
///
/// Chosen over the online backup API: copied a few pages at a time, the backup API starts
/// again from the beginning whenever another connection writes, which on a busy server can be
/// for ever; copied in one step it holds one read transaction just as `VACUUM INTO` does, and
/// `VACUUM INTO` writes a compacted file through SQL, with no handle to borrow from sqlx.
pub async fn vacuum_into(conn: &mut SqliteConnection, into: &str) -> Result<(), sqlx::Error> {
    sqlx::query("VACUUM INTO ?").bind(into).execute(conn).await?;
    Ok(())
}

/// `PRAGMA integrity_check`: `ok`, or the problems found (at most a hundred).
pub async fn integrity_check(conn: &mut SqliteConnection) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("PRAGMA integrity_check").fetch_all(conn).await
}

/// Backups recorded at most; the oldest go first.
const BACKUPS_KEPT: i64 = 100;

/// Records that a checked copy of `bytes` bytes was written to `path` just now, for the
/// server's `chat_last_backup_timestamp_seconds`.
pub async fn record_backup(conn: &mut SqliteConnection, path: &str, bytes: u64) -> Result<(), WriteError> {
    let mut tx = conn.begin().await?;
    sqlx::query(
        "INSERT INTO backups (finished_at, bytes, path) \
         VALUES (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), ?, ?)",
    )
    .bind(i64::try_from(bytes).unwrap_or(i64::MAX))
    .bind(path)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM backups WHERE id <= (SELECT max(id) FROM backups) - ?")
        .bind(BACKUPS_KEPT)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}
