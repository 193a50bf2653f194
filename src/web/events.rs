//! `GET /api/rooms/{room}/events`: a room's live event stream over SSE.
//!
//! A stream subscribes to the hub first, then replays `id > cursor` from SQLite in pages, then
//! sends live frames, skipping any with `id <= cursor`: nothing committed between the replay
//! and the subscription is missed, and nothing is sent twice. When the stream falls so far
//! behind that the hub's buffer overflows (`Lagged`), it goes back to replaying from its
//! cursor: the events it missed are already in the database.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use poem::http::header;
use poem::web::{Data, Path, Query};
use poem::{Request, Response, handler};
use serde::Deserialize;
use tokio::sync::broadcast::{Receiver, error::RecvError};
use tokio::time::{Instant, Sleep};

use super::find_room;
use super::stream::EventStream;
use crate::AppState;
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::hub::Live;
use crate::model::{EventId, RoomId};
use crate::render::{self, Format};
use crate::sse::{self, Cursor};

/// Events read from the database per query while catching up.
const REPLAY_PAGE: u32 = 500;
/// Replayed frames are handed to the connection in pieces of about this size, so a stream that
/// is behind holds little more than this in memory beyond what the socket buffers.
const REPLAY_CHUNK_BYTES: usize = 64 * 1024;

#[derive(Deserialize)]
pub struct EventsQuery {
    after: Option<String>,
    format: Option<String>,
}

#[handler]
pub async fn room_events(
    req: &Request,
    Data(state): Data<&AppState>,
    Path(room): Path<String>,
    Query(query): Query<EventsQuery>,
    user: CurrentUser,
) -> Result<Response, AppError> {
    if !sse::accepts_event_stream(req.header(header::ACCEPT)) {
        return Err(AppError::NotAcceptable);
    }
    let format = Format::parse(query.format.as_deref())
        .ok_or_else(|| AppError::BadRequest("`format` is `json` or `html`".into()))?;
    let room = find_room(state, &room).await?;
    let permit = state.limits.open_stream(user.id)?;
    // A header that is not visible ASCII is a cursor that cannot be read (`""` parses as
    // invalid), not a missing one: the client is told to reset instead of silently skipping.
    let last_event_id = req
        .headers()
        .get("last-event-id")
        .map(|value| value.to_str().unwrap_or_default());
    let cursor = Cursor::from_request(last_event_id, query.after.as_deref());

    // Subscribe before anything is read from the database.
    let (live, head) = state.hub.subscribe(room.id);
    // The channel carries the news of the session's end from here on; if it ended since it
    // was checked, say so now.
    let mut feeds = Feeds {
        live,
        token_hash: user.token_hash,
        expiry: Box::pin(tokio::time::sleep(user.expires_in)),
    };
    if state.hub.sessions_ended() != user.sessions_ended && feeds.session_ended(state).await {
        return Err(AppError::Unauthorized);
    }
    let mut first = BytesMut::from(&sse::retry()[..]);
    let start = match cursor {
        Cursor::Now => head,
        Cursor::Invalid => reset(state, &mut first, head, "the cursor is not an event id"),
        Cursor::After(id) if id > head => reset(
            state,
            &mut first,
            head,
            "the cursor is newer than the newest event; the database has been replaced",
        ),
        Cursor::After(id) => match state.store.oldest_event_id().await? {
            Some(oldest) if id.saturating_add(1) < oldest => reset(
                state,
                &mut first,
                head,
                "the cursor is older than the oldest event kept",
            ),
            _ => id,
        },
    };
    tracing::debug!(room = %room.name, user = %user.username, ?cursor, start, "stream opened");

    let guards = (permit, state.writer.stream_opened(user.id, user.username));
    let events = room_stream(state.clone(), room.id, format, feeds, start, first.freeze(), guards);
    Ok(EventStream::response(Box::pin(KeepAlive::new(
        Box::pin(events),
        state.keepalive,
    ))))
}

/// Writes `event: reset` (its id the newest event, so a later reconnect resumes from there)
/// and returns where the stream goes on from: now.
fn reset(state: &AppState, out: &mut BytesMut, head: EventId, reason: &str) -> EventId {
    state.metrics.stream_resets.inc();
    let data = serde_json::json!({ "reason": reason, "newest_id": head }).to_string();
    sse::write_event(out, Some(head), "reset", &data);
    head
}

/// What a live stream listens to: its room's channel, with its frames and the news of ended
/// sessions (its own is `token_hash`).
struct Feeds {
    live: Receiver<Live>,
    token_hash: Vec<u8>,
    /// When the session expires unless it is used meanwhile (by another request).
    expiry: Pin<Box<Sleep>>,
}

impl Feeds {
    /// Asks the database whether the session has ended (revoked, or expired). While it lives,
    /// the expiry moves to match its last use, which another request may have pushed back.
    async fn session_ended(&mut self, state: &AppState) -> bool {
        match state.store.session_user(&self.token_hash, state.session_idle).await {
            Ok(Some(user)) => {
                let idle = Duration::try_from_secs_f64(user.idle_secs).unwrap_or(Duration::ZERO);
                let left = state.session_idle.saturating_sub(idle).max(Duration::from_secs(1));
                self.expiry.as_mut().reset(Instant::now() + left);
                false
            }
            Ok(None) => true,
            // Cannot tell now: look again shortly.
            Err(error) => {
                tracing::warn!(%error, "cannot check a stream's session");
                self.expiry.as_mut().reset(Instant::now() + Duration::from_secs(5));
                false
            }
        }
    }
}

/// What a live stream waits for.
enum Wake {
    Live(Result<Live, RecvError>),
    SessionExpiry,
}

/// The last frame of a stream whose session was revoked: the page goes to sign-in instead of
/// reconnecting (which would only get `401`).
fn logout() -> Bytes {
    let mut out = BytesMut::new();
    sse::write_event(&mut out, None, "logout", r#"{"reason":"the session has ended"}"#);
    out.freeze()
}

/// Replay, then live, then replay again whenever the live channel overflowed. Ends with
/// `event: logout` when the session is revoked.
fn room_stream<G: Send + 'static>(
    state: AppState,
    room: RoomId,
    format: Format,
    mut feeds: Feeds,
    mut cursor: EventId,
    first: Bytes,
    guards: G,
) -> impl Stream<Item = Bytes> + Send {
    async_stream::stream! {
        // Dropped with the stream: presence and the open-streams gauge see the client leave.
        let _guards = guards;
        yield first;
        loop {
            loop {
                let page = match state.store.events_after(room, cursor, REPLAY_PAGE).await {
                    Ok(page) => page,
                    Err(error) => {
                        // Ending the stream makes the client reconnect from its last id.
                        tracing::error!(%error, room, cursor, "replay failed; ending stream");
                        return;
                    }
                };
                let Some(last) = page.last() else { break };
                let mut out = BytesMut::new();
                for event in &page {
                    if let Err(error) = render::write_frame(&mut out, event, format) {
                        tracing::error!(%error, id = event.id, "cannot render event; ending stream");
                        return;
                    }
                    if out.len() >= REPLAY_CHUNK_BYTES {
                        yield out.split().freeze();
                    }
                }
                cursor = last.id;
                let count = page.len() as u64;
                state.metrics.replayed_events.inc_by(count);
                state.metrics.frames_sent.inc_by(count);
                if !out.is_empty() {
                    yield out.freeze();
                }
                if page.len() < REPLAY_PAGE as usize {
                    break;
                }
            }
            loop {
                let wake = tokio::select! {
                    // A frame first: then the expiry is not even looked at.
                    biased;
                    live = feeds.live.recv() => Wake::Live(live),
                    () = feeds.expiry.as_mut() => Wake::SessionExpiry,
                };
                match wake {
                    Wake::Live(Ok(Live::Frame(frame))) if frame.id > cursor => {
                        cursor = frame.id;
                        state.metrics.frames_sent.inc();
                        yield frame.bytes(format).clone();
                    }
                    Wake::Live(Ok(Live::Frame(_))) => {}
                    Wake::Live(Ok(Live::SessionEnded(token_hash))) => {
                        if *token_hash == *feeds.token_hash {
                            yield logout();
                            return;
                        }
                    }
                    // Missed frames are in the database; a missed end of the session is not,
                    // so ask about it too.
                    Wake::Live(Err(RecvError::Lagged(_))) => {
                        state.metrics.lag_recoveries.inc();
                        if feeds.session_ended(&state).await {
                            yield logout();
                            return;
                        }
                        break;
                    }
                    Wake::Live(Err(RecvError::Closed)) => return,
                    Wake::SessionExpiry => {
                        if feeds.session_ended(&state).await {
                            yield logout();
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// Sends a comment when the inner stream has been quiet for `every`, so proxies and browsers
/// keep an idle stream open and a vanished client is noticed when the write fails.
struct KeepAlive<S> {
    inner: Pin<Box<S>>,
    every: Duration,
    sleep: Pin<Box<Sleep>>,
    /// When the inner stream last gave something. The timer is not moved for every frame (that
    /// costs a trip through the timer wheel); when it fires early, it is moved then.
    last: Instant,
}

impl<S> KeepAlive<S> {
    fn new(inner: Pin<Box<S>>, every: Duration) -> Self {
        Self {
            inner,
            every,
            sleep: Box::pin(tokio::time::sleep(every)),
            last: Instant::now(),
        }
    }
}

impl<S: Stream<Item = Bytes>> Stream for KeepAlive<S> {
    type Item = Bytes;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let this = &mut *self;
        if let Poll::Ready(item) = this.inner.as_mut().poll_next(cx) {
            this.last = Instant::now();
            return Poll::Ready(item);
        }
        loop {
            ready!(this.sleep.as_mut().poll(cx));
            let due = this.last + this.every;
            if due > Instant::now() {
                // Something was sent since the timer was set: wait out the rest.
                this.sleep.as_mut().reset(due);
                continue;
            }
            this.last = Instant::now();
            this.sleep.as_mut().reset(this.last + this.every);
            return Poll::Ready(Some(Bytes::from_static(sse::KEEPALIVE)));
        }
    }
}
