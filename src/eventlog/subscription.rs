//! A subscription: the events one view may see after a cursor, replayed from the database and
//! then live from the hub, as frames. Any consumer can follow one: an SSE stream, a webhook
//! worker, a bot.
//!
//! It subscribes to the hub first, then replays `id > cursor` in pages, then passes on live
//! frames, skipping any with `id <= cursor`: nothing committed between the replay and the
//! subscription is missed, and nothing is passed twice. When it falls so far behind that its
//! feed overflows (`Lagged`), it goes back to replaying from its cursor: the events it missed
//! are already in the database. So ids always increase, and lag is never loss.

use std::sync::Arc;

use futures_util::Stream;
use tokio::sync::broadcast::{Receiver, error::RecvError};

use super::hub::{Hub, Live};
use super::sqlite::Store;
use crate::domain::{EventId, View};
use crate::metrics::Metrics;
use crate::wire::Frame;

/// Events read from the database per query while catching up.
const REPLAY_PAGE: u32 = 500;

/// What a subscription passes on.
#[derive(Debug, Clone)]
pub enum Item {
    /// The next event the view may see, replayed or live; ids always increase.
    Frame(Arc<Frame>),
    /// The credential with this key was revoked.
    Revoked(Arc<[u8]>),
    /// The subscription fell behind its feed (or the feed was replaced) and is about to catch
    /// up from the database. News that does not live in the database (a revocation) may have
    /// been missed.
    Lagged,
}

/// Subscribed to the hub, not yet reading: `head` is the newest event published before the
/// subscription, so every later one will arrive.
pub struct Subscribed {
    pub(super) store: Store,
    pub(super) hub: Hub,
    pub(super) metrics: Arc<Metrics>,
    pub(super) view: View,
    pub(super) live: Receiver<Live>,
    pub head: EventId,
}

impl Subscribed {
    /// Every event the view may see after `cursor`, then live, for as long as the hub runs
    /// (it ends at shutdown once it has passed on what was published before, or when the
    /// database cannot be read: the consumer then resumes from its last id).
    pub fn follow(self, mut cursor: EventId) -> impl Stream<Item = Item> + Send + 'static {
        let Self {
            store,
            hub,
            metrics,
            view,
            mut live,
            ..
        } = self;
        async_stream::stream! {
            loop {
                loop {
                    let page = match store.events_after(view, cursor, REPLAY_PAGE).await {
                        Ok(page) => page,
                        Err(error) => {
                            tracing::error!(%error, ?view, %cursor, "replay failed; ending the subscription");
                            return;
                        }
                    };
                    let full = page.len() == REPLAY_PAGE as usize;
                    metrics.replayed_events.inc_by(page.len() as u64);
                    for event in page {
                        cursor = event.id;
                        yield Item::Frame(Arc::new(Frame::new(event)));
                    }
                    if !full {
                        break;
                    }
                }
                loop {
                    match live.recv().await {
                        Ok(Live::Frame(frame)) if frame.id() > cursor => {
                            cursor = frame.id();
                            yield Item::Frame(frame);
                        }
                        Ok(Live::Frame(_)) => {}
                        Ok(Live::Revoked(key)) => yield Item::Revoked(key),
                        Err(RecvError::Lagged(_)) => {
                            metrics.lag_recoveries.inc();
                            hub.grow(view);
                            live = hub.subscribe(view).0;
                            yield Item::Lagged;
                            break;
                        }
                        Err(RecvError::Closed) if hub.is_closed() => return,
                        // Replaced by a bigger feed: what was sent to it meanwhile is stored.
                        Err(RecvError::Closed) => {
                            live = hub.subscribe(view).0;
                            yield Item::Lagged;
                            break;
                        }
                    }
                }
            }
        }
    }
}
