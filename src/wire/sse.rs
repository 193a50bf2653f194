//! The Server-Sent Events wire format, written by hand because it is the one place where user
//! text meets a line-oriented protocol.
//!
//! The SSE parser in every browser ends a line at `\r\n`, `\n` *or a lone `\r`*. Data is therefore
//! split on all three and written as one `data:` line per line, so no text, whatever it holds, can
//! start a line of its own and forge an `id:` or `event:` field. (poem's own `sse::Event` splits
//! on `\n` only and lets a lone `\r` through.) Names and ids are ours, never user text.

use std::fmt::Write as _;

use bytes::{BufMut, Bytes, BytesMut};

use crate::domain::EventId;

/// How long a browser waits before reconnecting, sent on the first frame of every stream.
pub const RETRY_MS: u32 = 3_000;

/// The control event that opens every stream (carrying `retry:`) and follows every keep-alive
/// interval, so a client can tell a live stream from a dead one. Its data is `{}` because a
/// browser dispatches no event without data.
pub const PING: &[u8] = b"event: ping\ndata: {}\n\n";

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

/// The first bytes of every stream: a `ping` carrying the reconnection delay.
pub fn opening_ping() -> Bytes {
    let mut out = BytesMut::with_capacity(48);
    let _ = writeln!(out, "retry: {RETRY_MS}");
    out.put_slice(PING);
    out.freeze()
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
        let frame = event(Some(EventId(7)), "message", "evil\rid: 999\revent: pwned\r\rdata: x");
        let events = parse(frame);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].id, "7");
        assert_eq!(events[0].event, "message");
        assert_eq!(events[0].data, "evil\nid: 999\nevent: pwned\n\ndata: x");
    }

    #[test]
    fn every_stream_opens_with_a_ping_that_sets_the_retry_delay() {
        let events = parse(opening_ping());
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event, "ping");
        assert_eq!(events[0].data, "{}");
        assert_eq!(events[0].id, "");
        assert_eq!(events[0].retry, Some(std::time::Duration::from_millis(RETRY_MS.into())));
        assert_eq!(parse(Bytes::from_static(PING))[0].event, "ping");
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
            let events = parse(event(Some(EventId(id)), "message", &data));
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
            let stream = [event(Some(EventId(1)), "message", &data), event(Some(EventId(2)), "status", "ok")].concat();
            let events = parse(Bytes::from(stream));
            prop_assert_eq!(events.len(), 2);
            prop_assert_eq!(&events[0].id, "1");
            prop_assert_eq!(&events[1].id, "2");
            prop_assert_eq!(&events[1].data, "ok");
        }
    }
}
