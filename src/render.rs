//! Turning an event into the bytes a stream sends: a JSON object for API clients, an HTML
//! partial for the htmx page. Live events are rendered once by the writer (see `hub::Frame`);
//! replayed ones are rendered by the stream that reads them.

use askama::Template;
use bytes::BytesMut;

use crate::model::{Event, EventId, EventKind, Status};
use crate::sse;

/// What a stream's client wants to read: `?format=json` (the default) or `?format=html`.
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

/// One message as the page shows it; the page's history renders the same partial.
#[derive(Template)]
#[template(path = "_message.html")]
pub struct MessagePartial<'a> {
    pub id: EventId,
    pub username: &'a str,
    pub content: &'a str,
    pub created_at: &'a str,
}

/// One member and their status. In a stream it is swapped out-of-band into the member list,
/// found by its id.
#[derive(Template)]
#[template(path = "_member.html")]
pub struct MemberPartial<'a> {
    pub username: &'a str,
    pub status: Status,
    pub oob: bool,
}

/// The event as JSON, as the API and JSON streams carry it.
pub fn json(event: &Event) -> String {
    // Serialising a struct of strings and numbers cannot fail.
    serde_json::to_string(&event.view()).unwrap_or_default()
}

/// The event as the page's HTML partial.
pub fn html(event: &Event) -> Result<String, askama::Error> {
    match &event.kind {
        EventKind::Message { content, .. } => MessagePartial {
            id: event.id,
            username: &event.username,
            content,
            created_at: &event.created_at,
        }
        .render(),
        EventKind::Status { status } => MemberPartial {
            username: &event.username,
            status: *status,
            oob: true,
        }
        .render(),
    }
}

/// Appends the event's SSE frame in `format` to `out`.
pub fn write_frame(out: &mut BytesMut, event: &Event, format: Format) -> Result<(), askama::Error> {
    let data = match format {
        Format::Json => json(event),
        Format::Html => html(event)?,
    };
    sse::write_event(out, Some(event.id), event.type_name(), &data);
    Ok(())
}

mod filters {
    use askama::filters::Safe;

    /// HTML-escapes user text and writes its line ends as character references, so that the
    /// text arrives in the page exactly as it was sent: an SSE parser would turn a raw `\r` or
    /// `\r\n` into `\n`.
    #[askama::filter_fn]
    pub fn verbatim(value: &str, _env: &dyn askama::Values) -> askama::Result<Safe<String>> {
        let mut out = String::with_capacity(value.len() + 16);
        for c in value.chars() {
            match c {
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '&' => out.push_str("&amp;"),
                '"' => out.push_str("&quot;"),
                '\'' => out.push_str("&#39;"),
                '\r' => out.push_str("&#13;"),
                '\n' => out.push_str("&#10;"),
                c => out.push(c),
            }
        }
        Ok(Safe(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(content: &str) -> Event {
        Event {
            id: 42,
            username: "ada".into(),
            created_at: "2026-11-21T09:30:00.123Z".into(),
            kind: EventKind::Message {
                room_id: 1,
                room: "general".into(),
                content: content.into(),
            },
        }
    }

    #[test]
    fn json_matches_the_contract() {
        assert_eq!(
            json(&message("hi")),
            r#"{"id":42,"type":"message","room":"general","username":"ada","content":"hi","created_at":"2026-11-21T09:30:00.123Z"}"#
        );
        let status = Event {
            kind: EventKind::Status { status: Status::Away },
            ..message("")
        };
        assert_eq!(
            json(&status),
            r#"{"id":42,"type":"status","username":"ada","status":"away","created_at":"2026-11-21T09:30:00.123Z"}"#
        );
    }

    #[test]
    fn html_escapes_markup_and_keeps_line_ends_out_of_the_frame() {
        let html = html(&message("<script>alert('x')</script>\r\n&\r")).unwrap();
        assert!(
            html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&#13;&#10;&amp;&#13;"),
            "{html}"
        );
        assert!(!html.contains("<script"));
        assert!(!html.contains(['\r', '\n']), "one data line per frame: {html:?}");
    }
}
