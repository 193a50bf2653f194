//! `Frame`: one committed event, encoded once for every subscriber.

use std::sync::OnceLock;

use bytes::{Bytes, BytesMut};

use super::{render, sse};
use crate::domain::{Event, EventId, Scope};

/// What a stream's client reads: `?format=json` (the default) or `?format=html`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Html,
}

impl Format {
    pub fn parse(raw: Option<&str>) -> Option<Self> {
        match raw {
            None | Some("json") => Some(Self::Json),
            Some("html") => Some(Self::Html),
            Some(_) => None,
        }
    }
}

/// One committed event and its SSE frames (`id: 42\nevent: message\ndata: {...}\n\n`), each
/// encoded the first time a stream asks for it and then shared: a live frame is encoded by the
/// writer once for all its subscribers, so cloning the `Arc` (or one of the `Bytes`) is the
/// whole cost of a delivery; a replayed one is encoded only in the format its one reader wants.
#[derive(Debug)]
pub struct Frame {
    pub event: Event,
    json: OnceLock<Bytes>,
    html: OnceLock<Bytes>,
}

impl Frame {
    pub fn new(event: Event) -> Self {
        Self {
            event,
            json: OnceLock::new(),
            html: OnceLock::new(),
        }
    }

    /// A frame with both formats encoded now, for publishing: subscribers then only share it.
    pub fn encoded(event: Event) -> Self {
        let frame = Self::new(event);
        frame.bytes(Format::Json);
        frame.bytes(Format::Html);
        frame
    }

    pub fn id(&self) -> EventId {
        self.event.id
    }

    pub fn scope(&self) -> Scope {
        self.event.scope()
    }

    /// The SSE frame in `format`.
    pub fn bytes(&self, format: Format) -> &Bytes {
        let cell = match format {
            Format::Json => &self.json,
            Format::Html => &self.html,
        };
        cell.get_or_init(|| encode(&self.event, format))
    }
}

fn encode(event: &Event, format: Format) -> Bytes {
    let data = match format {
        Format::Json => render::json(event),
        Format::Html => match render::html(event) {
            Ok(html) => html,
            // Our templates format only strings and numbers, so this does not happen; should
            // it, the stream still carries the event (an empty fragment), so no client's
            // cursor stops before it.
            Err(error) => {
                tracing::error!(%error, id = %event.id, "cannot render event");
                String::new()
            }
        },
    };
    let mut out = BytesMut::new();
    sse::write_event(&mut out, Some(event.id), event.name(), &data);
    out.freeze()
}
