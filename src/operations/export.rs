//! `chat-server export`: messages in their current state, oldest first, to standard output,
//! a page at a time (memory stays bounded however long the history), from a database a server
//! may be writing meanwhile.
//!
//! JSON lines: each message exactly as `GET /api/messages/{id}` renders it (`wire::render`).
//! Before the first message of each room that was made through the API comes one line about
//! the room (`wire::render::RoomLine`: its kind, topic, archived flag, its members if only
//! members read it, and who made it), which is what `import` needs to make it again; a reader
//! that wants messages only keeps the lines whose `type` is `message`. CSV: a header row, then
//! `id,room,username,content,created_at,edited_at,reply_to` a message (the columns of the
//! `messages` view), quoted where needed.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;

use anyhow::Context;

use crate::config::ExportFormat;
use crate::domain::{Event, EventId, EventKind, RoomId, Timestamp};
use crate::eventlog::sqlite;
use crate::wire::render;

/// Messages read a page at a time: about a megabyte of them at most, a few hundred KiB as
/// people write.
const PAGE: u32 = 256;

/// Which messages to export.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub room: Option<String>,
    pub since: Option<Timestamp>,
    /// Only messages with a greater id.
    pub after: Option<i64>,
}

/// Writes the messages of the database at `db` that `filter` takes to `out`, in `format`;
/// returns how many.
pub async fn run(db: &Path, filter: &Filter, format: ExportFormat, out: impl Write) -> anyhow::Result<u64> {
    let store = sqlite::open_for_reading(db).await?;
    let room = match &filter.room {
        None => None,
        Some(name) => Some(
            store
                .room(name)
                .await
                .context("cannot read the rooms")?
                .with_context(|| format!("there is no room called {name:?}"))?
                .id,
        ),
    };
    let mut sink = match format {
        ExportFormat::Jsonl => Sink::Jsonl {
            out,
            announced: HashSet::new(),
        },
        ExportFormat::Csv => {
            let mut csv = csv::Writer::from_writer(out);
            csv.write_record([
                "id",
                "room",
                "username",
                "content",
                "created_at",
                "edited_at",
                "reply_to",
            ])
            .map_err(written)?;
            Sink::Csv(Box::new(csv))
        }
    };
    let mut after = EventId(filter.after.unwrap_or(0));
    let mut exported = 0u64;
    loop {
        let page = store
            .export_page(after, room, filter.since.as_ref(), PAGE)
            .await
            .context("cannot read the messages")?;
        let Some(last) = page.last() else {
            break;
        };
        after = last.id;
        for message in &page {
            sink.write(&store, message).await?;
        }
        exported += page.len() as u64;
    }
    sink.flush().context("cannot write the export")?;
    store.close().await;
    Ok(exported)
}

/// Where the messages go, in their format.
enum Sink<W: Write> {
    Jsonl {
        out: W,
        /// The rooms whose line has been written.
        announced: HashSet<RoomId>,
    },
    Csv(Box<csv::Writer<W>>),
}

impl<W: Write> Sink<W> {
    async fn write(&mut self, store: &sqlite::Store, message: &Event) -> anyhow::Result<()> {
        let EventKind::Message {
            room_id,
            room,
            content,
            reply_to,
            edited_at,
            ..
        } = &message.kind
        else {
            return Ok(());
        };
        match self {
            Self::Jsonl { out, announced } => {
                if announced.insert(*room_id)
                    && let Some(about) = store
                        .export_room(*room_id)
                        .await
                        .with_context(|| format!("cannot read the room {room}"))?
                {
                    line(out, &render::RoomLine(&about))?;
                }
                line(out, &render::Json(message))?;
            }
            Self::Csv(csv) => {
                let id = message.id.to_string();
                let reply_to = reply_to.as_ref().map(|quote| quote.id.to_string()).unwrap_or_default();
                csv.write_record([
                    id.as_str(),
                    room,
                    &message.username,
                    content,
                    &message.created_at,
                    edited_at.as_deref().unwrap_or(""),
                    &reply_to,
                ])
                .map_err(written)
                .context("cannot write the export")?;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Self::Jsonl { out, .. } => out.flush(),
            Self::Csv(csv) => csv.flush(),
        }
    }
}

/// `value` as one JSON line.
fn line(out: &mut impl Write, value: &impl serde::Serialize) -> anyhow::Result<()> {
    serde_json::to_writer(&mut *out, value)
        .map_err(std::io::Error::from)
        .and_then(|()| out.write_all(b"\n"))
        .context("cannot write the export")
}

/// A CSV writer's failure, which can only be the output's.
fn written(error: csv::Error) -> std::io::Error {
    match error.into_kind() {
        csv::ErrorKind::Io(error) => error,
        other => std::io::Error::other(format!("{other:?}")),
    }
}
