//! The event streams over SSE: `GET /api/events` (everything the user may see) and
//! `GET /api/rooms/{room}/events` (one room, and every status change).
//!
//! Both resume from `Last-Event-ID`, else `?after=`, else from now. The first frame is a
//! `ping` carrying `retry:`; a cursor the server cannot honour is answered with `event: reset`
//! right after it; then the events, with a `ping` every keep-alive interval, so a client can
//! tell a live stream from a dead one; `event: logout` when the session ends.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use poem::http::header;
use poem::web::{Data, Path, Query};
use poem::{Request, Response, handler};
use serde::Deserialize;
use tokio::time::{Interval, MissedTickBehavior};

use super::State;
use super::auth::CurrentUser;
use super::error::ApiError;
use super::transport::EventStream;
use crate::app::streams::{self, Follow, StreamItem};
use crate::domain::Cursor;
use crate::wire::{Format, sse};

#[derive(Deserialize)]
pub struct EventsQuery {
    after: Option<String>,
    format: Option<String>,
}

/// `GET /api/events`: the user's stream.
#[handler]
pub async fn user_events(
    req: &Request,
    Data(state): Data<&State>,
    Query(query): Query<EventsQuery>,
    user: CurrentUser,
) -> Result<Response, ApiError> {
    open(req, state, query, user, Follow::User).await
}

/// `GET /api/rooms/{room}/events`: one room's stream.
#[handler]
pub async fn room_events(
    req: &Request,
    Data(state): Data<&State>,
    Path(room): Path<String>,
    Query(query): Query<EventsQuery>,
    user: CurrentUser,
) -> Result<Response, ApiError> {
    open(req, state, query, user, Follow::Room(&room)).await
}

async fn open(
    req: &Request,
    state: &State,
    query: EventsQuery,
    user: CurrentUser,
    follow: Follow<'_>,
) -> Result<Response, ApiError> {
    if !sse::accepts_event_stream(req.header(header::ACCEPT)) {
        return Err(ApiError::NotAcceptable);
    }
    let format = Format::parse(query.format.as_deref())
        .ok_or_else(|| ApiError::BadRequest("`format` is `json` or `html`".into()))?;
    // A header that is not visible ASCII is a cursor that cannot be read (`""` parses as
    // invalid), not a missing one: the client is told to reset instead of silently skipping.
    let last_event_id = req
        .headers()
        .get("last-event-id")
        .map(|value| value.to_str().unwrap_or_default());
    let cursor = Cursor::from_request(last_event_id, query.after.as_deref());
    let opened = streams::open(&state.app, user.0, follow, cursor).await?;

    let mut first = BytesMut::from(&sse::opening_ping()[..]);
    if let Some(reset) = opened.reset {
        // Its id is the newest event, so a later reconnect resumes from there.
        let data = serde_json::json!({ "reason": reset.reason, "newest_id": reset.newest }).to_string();
        sse::write_event(&mut first, Some(reset.newest), "reset", &data);
    }
    let metrics = std::sync::Arc::clone(&state.app.metrics);
    let events = opened.items.map(move |item| match item {
        StreamItem::Frame(frame) => {
            metrics.frames_sent.inc();
            frame.bytes(format).clone()
        }
        StreamItem::Logout => logout(),
    });
    let frames = futures_util::stream::once(std::future::ready(first.freeze())).chain(events);
    Ok(EventStream::response(Box::pin(Pings::new(
        Box::pin(frames),
        state.keepalive,
    ))))
}

/// The last frame of a stream whose session ended: the page goes to sign-in instead of
/// reconnecting (which would only get `401`).
fn logout() -> Bytes {
    sse::event(None, "logout", r#"{"reason":"the session has ended"}"#)
}

/// Adds a `ping` every `every`, busy or not, so a client that hears none for two intervals
/// knows the stream is dead, and proxies keep an idle one open. Its timer moves once an
/// interval, never per frame.
struct Pings<S> {
    inner: Pin<Box<S>>,
    tick: Interval,
    ended: bool,
}

impl<S> Pings<S> {
    fn new(inner: Pin<Box<S>>, every: Duration) -> Self {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self {
            inner,
            tick,
            ended: false,
        }
    }
}

impl<S: Stream<Item = Bytes>> Stream for Pings<S> {
    type Item = Bytes;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(None);
        }
        match this.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(frame)) => return Poll::Ready(Some(frame)),
            Poll::Ready(None) => {
                this.ended = true;
                return Poll::Ready(None);
            }
            Poll::Pending => {}
        }
        match this.tick.poll_tick(cx) {
            Poll::Ready(_) => Poll::Ready(Some(Bytes::from_static(sse::PING))),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVERY: Duration = Duration::from_secs(15);

    /// What the stream has ready now, without waiting.
    fn ready<S: Stream<Item = Bytes> + Unpin>(stream: &mut S) -> Vec<Bytes> {
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut out = Vec::new();
        while let Poll::Ready(Some(item)) = Pin::new(&mut *stream).poll_next(&mut cx) {
            out.push(item);
        }
        out
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_stream_pings_every_interval() {
        let mut pings = Pings::new(Box::pin(futures_util::stream::pending::<Bytes>()), EVERY);
        assert!(ready(&mut pings).is_empty(), "nothing before the first interval");
        for _ in 0..3 {
            tokio::time::advance(EVERY - Duration::from_millis(1)).await;
            assert!(ready(&mut pings).is_empty());
            tokio::time::advance(Duration::from_millis(1)).await;
            assert_eq!(ready(&mut pings), [Bytes::from_static(sse::PING)]);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_stream_still_pings_every_interval() {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        let mut pings = Pings::new(
            Box::pin(tokio_stream::wrappers::UnboundedReceiverStream::new(receiver)),
            EVERY,
        );
        let mut pinged = 0;
        // A frame every second for a minute: four pings among them, one per interval.
        for second in 0..60 {
            sender.send(Bytes::from(format!("frame {second}"))).unwrap();
            tokio::time::advance(Duration::from_secs(1)).await;
            pinged += ready(&mut pings).iter().filter(|b| b.as_ref() == sse::PING).count();
        }
        assert_eq!(pinged, 4);
    }

    #[tokio::test(start_paused = true)]
    async fn the_stream_ends_with_its_frames() {
        let frames = futures_util::stream::iter([Bytes::from_static(b"last")]);
        let mut pings = Pings::new(Box::pin(frames), EVERY);
        assert_eq!(ready(&mut pings), [Bytes::from_static(b"last")]);
        tokio::time::advance(EVERY * 2).await;
        assert!(ready(&mut pings).is_empty(), "no ping after the end");
    }
}
