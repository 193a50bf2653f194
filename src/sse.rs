//! The Server-Sent Events wire format, written by hand because it is the one place where user
//! text meets a line-oriented protocol.
//!
//! The SSE parser in every browser ends a line at `\r\n`, `\n` *or a lone `\r`*. Data is therefore
//! split on all three and written as one `data:` line per line, so no text, whatever it holds, can
//! start a line of its own and forge an `id:` or `event:` field. (poem's own `sse::Event` splits
//! on `\n` only and lets a lone `\r` through.) Names and ids are ours, never user text.

use std::fmt::Write as _;

use bytes::{BufMut, Bytes, BytesMut};

use crate::model::EventId;

/// How long a browser waits before reconnecting, sent on the first frame of every stream.
pub const RETRY_MS: u32 = 3_000;

/// A comment line: keeps proxies and the browser from timing out an idle stream.
pub const KEEPALIVE: &[u8] = b": keep-alive\n\n";

/// Appends one event (`id:`, `event:`, `data:` lines and the blank line that ends it) to `out`.
pub fn write_event(out: &mut BytesMut, id: Option<EventId>, event: &str, data: &str) {
    debug_assert!(!event.contains(['\r', '\n']), "event names are ours");
    out.reserve(data.len() + event.len() + 40);
    if let Some(id) = id {
        // Writing to a `BytesMut` cannot fail.
        let _ = writeln!(out, "id: {id}");
    }
    out.put_slice(b"event: ");
    out.put_slice(event.as_bytes());
    out.put_u8(b'\n');
    for line in lines(data) {
        out.put_slice(b"data: ");
        out.put_slice(line.as_bytes());
        out.put_u8(b'\n');
    }
    out.put_u8(b'\n');
}

/// One event as its own buffer.
pub fn event(id: Option<EventId>, event: &str, data: &str) -> Bytes {
    let mut out = BytesMut::new();
    write_event(&mut out, id, event, data);
    out.freeze()
}

/// The first bytes of every stream: the reconnection delay, in a block of its own (a block
/// with no data dispatches no event).
pub fn retry() -> Bytes {
    Bytes::from(format!("retry: {RETRY_MS}\n\n"))
}

/// Splits text into lines the way an SSE parser will read them: at `\r\n`, `\r` and `\n`.
/// Always yields at least one line, so empty data still makes a `data:` line and an event.
pub fn lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let current = rest?;
        match current.find(['\r', '\n']) {
            None => {
                rest = None;
                Some(current)
            }
            Some(end) => {
                let skip = if current[end..].starts_with("\r\n") { 2 } else { 1 };
                rest = Some(&current[end + skip..]);
                Some(&current[..end])
            }
        }
    })
}

/// Where a stream starts, read from `Last-Event-ID` (which wins) or `?after=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    /// Neither was given: start from now.
    Now,
    /// Everything after this id.
    After(EventId),
    /// Something was given but it is not a non-negative integer.
    Invalid,
}

impl Cursor {
    /// `header` is the `Last-Event-ID` value, `query` the `after` parameter, if present.
    pub fn from_request(header: Option<&str>, query: Option<&str>) -> Self {
        match header.or(query) {
            None => Self::Now,
            Some(raw) => Self::parse(raw),
        }
    }

    /// Digits only (no sign, no space), and small enough to be an id.
    pub fn parse(raw: &str) -> Self {
        if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
            return Self::Invalid;
        }
        raw.parse::<EventId>().map(Self::After).unwrap_or(Self::Invalid)
    }
}

/// Whether an `Accept` header admits `text/event-stream`. No header, `*/*` and `text/*` do; a
/// media range with `q=0` does not.
pub fn accepts_event_stream(accept: Option<&str>) -> bool {
    let Some(accept) = accept else { return true };
    if accept.trim().is_empty() {
        return true;
    }
    accept.split(',').any(|range| {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let refused = parts.any(|param| {
            let param = param.trim();
            param
                .strip_prefix("q=")
                .or_else(|| param.strip_prefix("Q="))
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        !refused && matches!(media.as_str(), "text/event-stream" | "text/*" | "*/*")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use eventsource_stream::Eventsource;
    use futures_util::StreamExt;
    use proptest::prelude::*;

    /// Parses `bytes` with an independent, spec-following SSE parser.
    fn parse(bytes: Bytes) -> Vec<eventsource_stream::Event> {
        let stream = futures_util::stream::iter([Ok::<_, std::convert::Infallible>(bytes)]);
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        runtime.block_on(stream.eventsource().map(|e| e.expect("well-formed stream")).collect())
    }

    #[test]
    fn a_lone_carriage_return_cannot_forge_a_field() {
        let frame = event(Some(7), "message", "evil\rid: 999\revent: pwned\r\rdata: x");
        let events = parse(frame);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].id, "7");
        assert_eq!(events[0].event, "message");
        assert_eq!(events[0].data, "evil\nid: 999\nevent: pwned\n\ndata: x");
    }

    #[test]
    fn lines_split_like_a_browser() {
        let split = |s| lines(s).collect::<Vec<_>>();
        assert_eq!(split(""), [""]);
        assert_eq!(split("a"), ["a"]);
        assert_eq!(split("a\r\nb\rc\nd"), ["a", "b", "c", "d"]);
        assert_eq!(split("\n"), ["", ""]);
        assert_eq!(split("\r\n\r"), ["", "", ""]);
    }

    #[test]
    fn cursors_are_digits_only() {
        assert_eq!(Cursor::from_request(None, None), Cursor::Now);
        assert_eq!(Cursor::from_request(Some("5"), Some("9")), Cursor::After(5));
        assert_eq!(Cursor::from_request(None, Some("0")), Cursor::After(0));
        for bad in ["", "-1", "+1", " 1", "1.0", "abc", "99999999999999999999", "٣"] {
            assert_eq!(Cursor::parse(bad), Cursor::Invalid, "{bad:?}");
        }
        assert_eq!(Cursor::parse("9223372036854775807"), Cursor::After(i64::MAX));
    }

    #[test]
    fn accept_headers() {
        assert!(accepts_event_stream(None));
        assert!(accepts_event_stream(Some("*/*")));
        assert!(accepts_event_stream(Some("text/event-stream")));
        assert!(accepts_event_stream(Some("application/json, text/*;q=0.5")));
        assert!(!accepts_event_stream(Some("application/json")));
        assert!(!accepts_event_stream(Some("text/event-stream;q=0")));
        assert!(!accepts_event_stream(Some("text/html")));
    }

    proptest! {
        /// Any text, sent as data, arrives as the same text with its line ends made `\n`: the
        /// one change the protocol itself makes. Fields and the event count are untouched.
        #[test]
        fn any_text_round_trips(data in any::<String>(), id in 0..i64::MAX) {
            let events = parse(event(Some(id), "message", &data));
            prop_assert_eq!(events.len(), 1);
            prop_assert_eq!(&events[0].id, &id.to_string());
            prop_assert_eq!(&events[0].event, "message");
            let expected = data.replace("\r\n", "\n").replace('\r', "\n");
            prop_assert_eq!(&events[0].data, &expected);
        }

        /// Text made mostly of line ends and field names still cannot split or forge an event.
        #[test]
        fn hostile_text_stays_data(parts in proptest::collection::vec(
            prop_oneof![Just("\r"), Just("\n"), Just("\r\n"), Just("id: 1"), Just("event: x"),
                        Just("data:"), Just(":"), Just("retry: 1"), Just(" "), Just("a")], 0..40)) {
            let data: String = parts.concat();
            let stream = [event(Some(1), "message", &data), event(Some(2), "status", "ok")].concat();
            let events = parse(Bytes::from(stream));
            prop_assert_eq!(events.len(), 2);
            prop_assert_eq!(&events[0].id, "1");
            prop_assert_eq!(&events[1].id, "2");
            prop_assert_eq!(&events[1].data, "ok");
        }

        #[test]
        fn cursor_parser_never_panics(raw in any::<String>()) {
            let parsed = Cursor::parse(&raw);
            if let Cursor::After(id) = parsed {
                prop_assert!(id >= 0);
                let canonical = id.to_string();
                prop_assert_eq!(canonical.trim_start_matches('0'), raw.trim_start_matches('0'));
            }
        }

        #[test]
        fn every_id_reads_back_and_the_header_wins(id in 0..=i64::MAX, zeros in 0..5usize, other in any::<String>()) {
            let written = format!("{}{id}", "0".repeat(zeros));
            prop_assert_eq!(Cursor::parse(&written), Cursor::After(id));
            prop_assert_eq!(Cursor::from_request(Some(&written), Some(&other)), Cursor::After(id));
            prop_assert_eq!(Cursor::from_request(None, Some(&written)), Cursor::After(id));
            // Beyond the largest id, or signed, it is not a cursor.
            let too_big = format!("{}{id}", i64::MAX);
            prop_assert_eq!(Cursor::parse(&too_big), Cursor::Invalid);
            let signed = format!("+{id}");
            prop_assert_eq!(Cursor::parse(&signed), Cursor::Invalid);
        }
    }
}
