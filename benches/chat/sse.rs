//! A minimal, allocation-light SSE reader: enough of the format to follow this server's streams.
//!
//! Blocks end at a blank line (`\n\n`; the server never sends `\r`). Of each block only `id:`,
//! `event:` and the first `data:` line are kept, as slices of the bytes read: a complete block is
//! parsed where it lies in the chunk, and only a block cut by the chunk's end is copied.

/// One block that named an event or carried data (comments and `retry:` blocks are skipped).
#[derive(Debug, PartialEq, Eq)]
pub struct Event<'a> {
    pub id: Option<i64>,
    pub event: &'a [u8],
    pub data: &'a [u8],
}

/// Keeps the unfinished block between chunks.
#[derive(Default)]
pub struct Parser {
    partial: Vec<u8>,
}

impl Parser {
    /// Parses `chunk`, calling `on_event` for every block it completes.
    pub fn feed(&mut self, chunk: &[u8], mut on_event: impl FnMut(&Event<'_>)) {
        if self.partial.is_empty() {
            let used = parse_blocks(chunk, &mut on_event);
            self.partial.extend_from_slice(&chunk[used..]);
        } else {
            self.partial.extend_from_slice(chunk);
            let used = parse_blocks(&self.partial, &mut on_event);
            self.partial.drain(..used);
        }
    }
}

/// Parses every complete block of `bytes`; returns how many bytes they took.
fn parse_blocks(bytes: &[u8], on_event: &mut impl FnMut(&Event<'_>)) -> usize {
    let mut consumed = 0;
    let mut line_start = 0;
    let mut event = Event {
        id: None,
        event: b"",
        data: b"",
    };
    let mut named = false;
    while let Some(offset) = bytes[line_start..].iter().position(|&b| b == b'\n') {
        let line = &bytes[line_start..line_start + offset];
        line_start += offset + 1;
        if line.is_empty() {
            if named {
                on_event(&event);
            }
            event = Event {
                id: None,
                event: b"",
                data: b"",
            };
            named = false;
            consumed = line_start;
        } else if let Some(value) = line.strip_prefix(b"id: ") {
            event.id = parse_i64(value);
        } else if let Some(value) = line.strip_prefix(b"event: ") {
            event.event = value;
            named = true;
        } else if let Some(value) = line.strip_prefix(b"data: ") {
            if event.data.is_empty() {
                event.data = value;
            }
            named = true;
        }
    }
    consumed
}

/// A decimal integer, or `None` if `bytes` is anything else.
pub fn parse_i64(bytes: &[u8]) -> Option<i64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// The string value of `"key":"…"` in a flat JSON object, as raw bytes (escapes left as sent).
pub fn json_str<'a>(json: &'a [u8], key: &str) -> Option<&'a [u8]> {
    let rest = value_of(json, key)?.strip_prefix(b"\"")?;
    let end = rest.iter().position(|&b| b == b'"')?;
    Some(&rest[..end])
}

/// The integer value of `"key":N` in a flat JSON object.
pub fn json_i64(json: &[u8], key: &str) -> Option<i64> {
    let rest = value_of(json, key)?;
    let end = rest
        .iter()
        .position(|&b| !(b.is_ascii_digit() || b == b'-'))
        .unwrap_or(rest.len());
    parse_i64(&rest[..end])
}

/// What follows `"key":` in `json`.
fn value_of<'a>(json: &'a [u8], key: &str) -> Option<&'a [u8]> {
    let key = key.as_bytes();
    let mut from = 0;
    while let Some(at) = find(&json[from..], key) {
        let start = from + at;
        let end = start + key.len();
        if start > 0 && json[start - 1] == b'"' && json[end..].starts_with(b"\":") {
            return Some(&json[end + 2..]);
        }
        from = end;
    }
    None
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

/// Checks the parser on the server's own framing once, at start-up (a `harness = false` bench
/// has no `#[test]`s).
pub fn self_check() {
    let stream = b"retry: 3000\n\nid: 7\nevent: message\ndata: {\"id\":7,\"content\":\"1 2\"}\n\n: keep-alive\n\n\
                   id: 8\nevent: status\ndata: {\"id\":8}\n\n";
    for split in 0..stream.len() {
        let mut parser = Parser::default();
        let mut seen = Vec::new();
        let mut collect = |event: &Event<'_>| seen.push((event.id, event.event.to_vec(), event.data.to_vec()));
        parser.feed(&stream[..split], &mut collect);
        parser.feed(&stream[split..], &mut collect);
        assert_eq!(seen.len(), 2, "split at {split}");
        assert_eq!(seen[0].0, Some(7));
        assert_eq!(seen[0].1, b"message");
        assert_eq!(json_str(&seen[0].2, "content"), Some(&b"1 2"[..]));
        assert_eq!(json_i64(&seen[1].2, "id"), Some(8));
        assert!(parser.partial.is_empty());
    }
}
