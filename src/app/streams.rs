//! Event streams as the chat offers them: what a stream follows and who may open it, where it
//! starts, and when it ends for its session (sign-out anywhere, expiry). What goes over the
//! wire is the front end's business; this yields frames.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use tokio::time::Instant;

use super::{App, Error, rooms, sessions};
use crate::app::sessions::Session;
use crate::domain::{Cursor, EventId, View};
use crate::eventlog::Item;
use crate::wire::Frame;

/// What a stream asks to follow.
#[derive(Debug, Clone, Copy)]
pub enum Follow<'a> {
    /// One room's events and every status change.
    Room(&'a str),
    /// Everything the user may see.
    User,
}

/// What a stream sends, in order.
#[derive(Debug, Clone)]
pub enum StreamItem {
    Frame(Arc<Frame>),
    /// The session has ended; nothing follows.
    Logout,
}

/// The cursor could not be honoured: the stream goes on from `newest`, and says so first.
#[derive(Debug, Clone)]
pub struct Reset {
    pub reason: &'static str,
    pub newest: EventId,
}

/// An open stream: a reset to say first, if any, then its items.
pub struct Opened {
    pub reset: Option<Reset>,
    pub items: Pin<Box<dyn Stream<Item = StreamItem> + Send>>,
}

/// Opens a stream of what `follow` names for `session`'s user, from `cursor`. Refused past the
/// stream limits; `NotFound` for a room the user cannot read.
pub async fn open(app: &App, session: Session, follow: Follow<'_>, cursor: Cursor) -> Result<Opened, Error> {
    let (view, room) = match follow {
        Follow::Room(name) => {
            let room = rooms::find(app, &session, name).await?;
            (View::Room(room.id, session.user_id), Some(room))
        }
        Follow::User => (View::User(session.user_id), None),
    };
    let permit = app.limits.open_stream(session.user_id)?;

    // Subscribe before anything is read from the database. The feed carries the news of the
    // session's end from here on; if it ended since it was checked, say so now.
    let subscribed = app.log.subscribe(view);
    // Likewise a removal from a members-only room: one after this arrives on the feed, and
    // ends the stream; one since the room was found refuses it now.
    if let Some(room) = room.filter(|room| room.kind().members_only())
        && !app.log.store.is_member(room.id, session.user_id).await?
    {
        return Err(rooms::not_found(&room.name));
    }
    let head = subscribed.head;
    let mut expires_in = session.expires_in;
    if app.log.hub.revocations() != session.revocations {
        expires_in = sessions::remaining(app, &session.token_hash)
            .await?
            .ok_or(Error::Unauthorized)?;
    }
    let reset = |reason| {
        app.metrics.stream_resets.inc();
        (head, Some(Reset { reason, newest: head }))
    };
    let (start, reset) = match cursor {
        Cursor::Now => (head, None),
        Cursor::Invalid => reset("the cursor is not an event id"),
        Cursor::After(id) if id > head => {
            reset("the cursor is newer than the newest event; the database has been replaced")
        }
        Cursor::After(id) => match app.log.store.oldest_event_id().await? {
            Some(oldest) if id.get().saturating_add(1) < oldest.get() => {
                reset("the cursor is older than the oldest event kept")
            }
            _ if replay_too_long(app, view, id, head).await? => {
                reset("the cursor is further behind than the server replays; reload the history")
            }
            _ => {
                app.metrics.resumed_streams.inc();
                (id, None)
            }
        },
    };
    tracing::debug!(?view, user = %session.username, ?cursor, %start, "stream opened");

    let presence = app.presence.stream_opened(session.user_id, session.username.clone());
    let mut subscription = Box::pin(subscribed.follow(start));
    let app = app.clone();
    let items = async_stream::stream! {
        // Dropped with the stream: presence and the stream limits see the client leave.
        let _guards = (permit, presence);
        let expiry = tokio::time::sleep(expires_in);
        tokio::pin!(expiry);
        loop {
            let item = tokio::select! {
                // An item first: then the expiry is not even looked at.
                biased;
                item = subscription.next() => item,
                () = &mut expiry => {
                    match still_valid(&app, &session).await {
                        Some(left) => {
                            expiry.as_mut().reset(Instant::now() + left);
                            continue;
                        }
                        None => {
                            yield StreamItem::Logout;
                            return;
                        }
                    }
                }
            };
            match item {
                // A room stream whose user loses access ends after the event that says so.
                Some(Item::Frame(frame)) if matches!(view, View::Room(room, user) if frame.event.removes(room, user)) => {
                    yield StreamItem::Frame(frame);
                    return;
                }
                Some(Item::Frame(frame)) => yield StreamItem::Frame(frame),
                Some(Item::Revoked(key)) if *key == *session.token_hash => {
                    yield StreamItem::Logout;
                    return;
                }
                Some(Item::Revoked(_)) => {}
                // A missed revocation is not in the database's log: ask about the session.
                Some(Item::Lagged) => {
                    if still_valid(&app, &session).await.is_none() {
                        yield StreamItem::Logout;
                        return;
                    }
                }
                None => return,
            }
        }
    };
    Ok(Opened {
        reset,
        items: Box::pin(items),
    })
}

/// Whether a stream of `view` opened at `cursor` would replay more than `--max-replay` events.
/// Ids are handed out across every scope, so a cursor fewer ids behind than that is within it
/// without asking the database.
async fn replay_too_long(app: &App, view: View, cursor: EventId, head: EventId) -> Result<bool, Error> {
    let Some(most) = app.limits.max_replay() else {
        return Ok(false);
    };
    if head.get().saturating_sub(cursor.get()) <= i64::from(most) {
        return Ok(false);
    }
    Ok(app.log.store.count_after(view, cursor, most + 1).await? > most)
}

/// How long the session still has (at least a second), or `None` if it has ended. When the
/// database cannot tell now, it is asked again shortly.
async fn still_valid(app: &App, session: &Session) -> Option<Duration> {
    match sessions::remaining(app, &session.token_hash).await {
        Ok(Some(left)) => Some(left.max(Duration::from_secs(1))),
        Ok(None) => None,
        Err(error) => {
            tracing::warn!(%error, "cannot check a stream's session");
            Some(Duration::from_secs(5))
        }
    }
}
