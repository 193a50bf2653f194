//! The event streams over SSE: `GET /api/events` (everything the user may see) and
//! `GET /api/rooms/{room}/events` (one room, and every status change).
//!
//! Both resume from `Last-Event-ID`, else `?after=`, else from now. The first frame is a
//! `ping` carrying `retry:`; a cursor the server cannot honour is answered with `event: reset`
//! right after it; then the events, with a `ping` after every keep-alive interval of quiet, so
//! a client can tell a live stream from a dead one; `event: logout` when the session ends.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use poem::http::header;
use poem::web::{Data, Path, Query};
use poem::{Request, Response, handler};
use serde::Deserialize;
use tokio::time::{Instant, Sleep};

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
    let mut log = StreamLog {
        span: tracing::Span::current(),
        opened: Instant::now(),
        events: 0,
    };
    let events = opened.items.map(move |item| match item {
        StreamItem::Frame(frame) => {
            metrics.deliveries.sent(frame.event.scope());
            log.sent();
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

/// Logs, in the span of the request that opened it, how long a stream was open and how many
/// events it sent, when it ends for any reason.
struct StreamLog {
    span: tracing::Span,
    opened: Instant,
    events: u64,
}

impl StreamLog {
    // A method, so that the closure counting holds the whole of it (and drops it when the
    // stream ends), not just the field.
    fn sent(&mut self) {
        self.events += 1;
    }
}

impl Drop for StreamLog {
    fn drop(&mut self) {
        let _entered = self.span.enter();
        tracing::debug!(events = self.events, open = ?self.opened.elapsed(), "stream ended");
    }
}

/// The last frame of a stream whose session ended: the page goes to sign-in instead of
/// reconnecting (which would only get `401`).
fn logout() -> Bytes {
    sse::event(None, "logout", r#"{"reason":"the session has ended"}"#)
}

/// Adds a `ping` whenever the stream has sent nothing for `every`, so a client that hears
/// nothing at all for two intervals knows the stream is dead, and proxies keep an idle one
/// open. A busy stream needs none: its frames say it is alive, and pinging 10,000 busy streams
/// at once would only delay their next frame. The timer is moved only when it fires (moving it
/// for every frame costs a trip through the timer wheel).
struct Pings<S> {
    inner: Pin<Box<S>>,
    every: Duration,
    sleep: Pin<Box<Sleep>>,
    /// When the inner stream last gave something.
    last: Instant,
    ended: bool,
}

impl<S> Pings<S> {
    fn new(inner: Pin<Box<S>>, every: Duration) -> Self {
        Self {
            inner,
            every,
            sleep: Box::pin(tokio::time::sleep(every)),
            last: Instant::now(),
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
            Poll::Ready(Some(frame)) => {
                this.last = Instant::now();
                return Poll::Ready(Some(frame));
            }
            Poll::Ready(None) => {
                this.ended = true;
                return Poll::Ready(None);
            }
            Poll::Pending => {}
        }
        loop {
            if this.sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let due = this.last + this.every;
            if due > Instant::now() {
                // Something was sent since the timer was set: wait out the rest.
                this.sleep.as_mut().reset(due);
                continue;
            }
            this.last = Instant::now();
            this.sleep.as_mut().reset(this.last + this.every);
            return Poll::Ready(Some(Bytes::from_static(sse::PING)));
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
    async fn a_busy_stream_needs_no_ping_and_one_gone_quiet_pings_an_interval_after_its_last_frame() {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        let mut pings = Pings::new(
            Box::pin(tokio_stream::wrappers::UnboundedReceiverStream::new(receiver)),
            EVERY,
        );
        let is_ping = |b: &Bytes| b.as_ref() == sse::PING;
        // A frame every second for a minute: no ping among them.
        for second in 0..60 {
            sender.send(Bytes::from(format!("frame {second}"))).unwrap();
            assert_eq!(ready(&mut pings).len(), 1);
            tokio::time::advance(Duration::from_secs(1)).await;
            assert!(!ready(&mut pings).iter().any(is_ping), "second {second}");
        }
        // Then quiet: a ping one interval after the last frame, and every interval after.
        tokio::time::advance(EVERY - Duration::from_secs(1) - Duration::from_millis(1)).await;
        assert!(ready(&mut pings).is_empty());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(ready(&mut pings), [Bytes::from_static(sse::PING)]);
        tokio::time::advance(EVERY).await;
        assert_eq!(ready(&mut pings), [Bytes::from_static(sse::PING)]);
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
