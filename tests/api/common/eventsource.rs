//! An event-stream client that behaves as the HTML standard's `EventSource` does (WHATWG HTML,
//! "Server-sent events": "Processing model", "Parsing an event stream", "Interpreting an event
//! stream"), for tests of what a browser, or npm `eventsource`, makes of a stream through a
//! real proxy. The rules it follows, each from the standard:
//!
//! - A request carries `Accept: text/event-stream`, `Cache-Control: no-cache`, and
//!   `Last-Event-ID` with the last event ID string when that is not empty. Redirects are
//!   followed (fetch does).
//! - A network error reestablishes the connection. A response whose status is not 200, or
//!   whose `Content-Type` is not `text/event-stream`, **fails the connection**: no more
//!   reconnection, ever. A 200 event stream is announced and read line by line; when it ends,
//!   gracefully or not, the connection is reestablished.
//! - Reestablishing waits the reconnection time (3 s to begin with, as Chromium and Firefox;
//!   the standard leaves it to the user agent), then fetches again.
//! - The body is UTF-8 (a leading BOM dropped, invalid bytes replaced); lines end at CRLF, LF
//!   or CR. An empty line dispatches the event; a line starting with `:` is a comment; a field
//!   is `name:value` with one leading space of the value dropped, or a whole line with an empty
//!   value. `event` sets the type; `data` appends the value and a LF; `id` sets the last event
//!   ID buffer unless the value holds NUL; `retry` sets the reconnection time when the value is
//!   ASCII digits only; any other field is ignored.
//! - Dispatch sets the last event ID string from its buffer (even for an event with no data),
//!   then, when the data is empty, only resets; else drops the data's last LF and fires an
//!   event of the type (`message` when none) with that data. An event not finished by an empty
//!   line when the stream ends is discarded.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;

/// The reconnection time before a stream sets one with `retry:`.
const INITIAL_RECONNECTION_TIME: Duration = Duration::from_secs(3);

/// A dispatched event, as `MessageEvent` would carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub event_type: String,
    pub data: String,
    pub last_event_id: String,
}

/// What the source does, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// A 200 `text/event-stream` response: the connection is announced (`open`).
    Opened,
    Event(Event),
    /// The connection ended (a network error, or the body ended or was cut) after
    /// `dispatched` events; the source reconnects after the reconnection time (`error`, with
    /// `readyState` CONNECTING).
    Ended {
        dispatched: usize,
        why: String,
    },
    /// The connection failed: the source is CLOSED and never reconnects.
    Failed(String),
}

/// One `EventSource`, running until dropped or failed; its reports arrive in order.
pub struct EventSource {
    reports: mpsc::UnboundedReceiver<Report>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for EventSource {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl EventSource {
    /// Follows `url`, with `token` as a bearer credential (a browser would send its cookie).
    pub fn open(url: String, token: Option<String>) -> Self {
        let (tx, reports) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(url, token, tx));
        Self { reports, task }
    }

    /// The next report, within `wait`; `None` if there is none by then.
    pub async fn next_within(&mut self, wait: Duration) -> Option<Report> {
        tokio::time::timeout(wait, self.reports.recv()).await.ok().flatten()
    }
}

struct Parser {
    /// Bytes of a line not yet ended.
    line: Vec<u8>,
    /// The last byte seen was CR: a LF right after it ends no second line.
    after_cr: bool,
    /// The stream's first bytes are still to be checked for a BOM.
    at_start: bool,
    event_type: String,
    data: String,
    last_event_id_buffer: String,
}

/// What the source keeps across connections.
struct Source {
    last_event_id: String,
    reconnection_time: Duration,
}

impl Parser {
    fn new(last_event_id: &str) -> Self {
        Self {
            line: Vec::new(),
            after_cr: false,
            at_start: true,
            event_type: String::new(),
            data: String::new(),
            last_event_id_buffer: last_event_id.to_owned(),
        }
    }

    /// Feeds `bytes`, dispatching into `events` and updating `source`.
    fn feed(&mut self, mut bytes: &[u8], source: &mut Source, events: &mut Vec<Event>) {
        if self.at_start {
            let bom = [0xEF, 0xBB, 0xBF];
            let seen = self.line.len() + bytes.len();
            if seen < bom.len() && bom.starts_with(&[self.line.as_slice(), bytes].concat()) {
                self.line.extend_from_slice(bytes);
                return;
            }
            let mut start = std::mem::take(&mut self.line);
            start.extend_from_slice(bytes);
            self.at_start = false;
            let rest = start.strip_prefix(&bom[..]).unwrap_or(&start).to_vec();
            return self.feed(&rest, source, events);
        }
        while let Some(&byte) = bytes.first() {
            bytes = &bytes[1..];
            match byte {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\r' | b'\n' => {
                    self.after_cr = byte == b'\r';
                    let line = String::from_utf8_lossy(&std::mem::take(&mut self.line)).into_owned();
                    self.interpret(&line, source, events);
                }
                _ => {
                    self.after_cr = false;
                    self.line.push(byte);
                }
            }
        }
    }

    fn interpret(&mut self, line: &str, source: &mut Source, events: &mut Vec<Event>) {
        if line.is_empty() {
            return self.dispatch(source, events);
        }
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => self.event_type = value.to_owned(),
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
            }
            "id" if !value.contains('\0') => self.last_event_id_buffer = value.to_owned(),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                if let Ok(ms) = value.parse() {
                    source.reconnection_time = Duration::from_millis(ms);
                }
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, source: &mut Source, events: &mut Vec<Event>) {
        source.last_event_id = self.last_event_id_buffer.clone();
        let event_type = std::mem::take(&mut self.event_type);
        let mut data = std::mem::take(&mut self.data);
        if data.is_empty() {
            return;
        }
        data.pop();
        events.push(Event {
            event_type: if event_type.is_empty() {
                "message".into()
            } else {
                event_type
            },
            data,
            last_event_id: source.last_event_id.clone(),
        });
    }
}

async fn run(url: String, token: Option<String>, reports: mpsc::UnboundedSender<Report>) {
    let http = reqwest::Client::new();
    let mut source = Source {
        last_event_id: String::new(),
        reconnection_time: INITIAL_RECONNECTION_TIME,
    };
    loop {
        let mut request = http
            .get(&url)
            .header("Accept", "text/event-stream")
            .header("Cache-Control", "no-cache");
        if !source.last_event_id.is_empty() {
            request = request.header("Last-Event-ID", &source.last_event_id);
        }
        if let Some(token) = &token {
            request = request.bearer_auth(token);
        }
        let ended = match request.send().await {
            Err(error) => Report::Ended {
                dispatched: 0,
                why: format!("network error: {error}"),
            },
            Ok(response) => {
                let status = response.status().as_u16();
                let content_type = response
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let essence = content_type.split(';').next().unwrap_or_default().trim();
                if status != 200 || !essence.eq_ignore_ascii_case("text/event-stream") {
                    let body = response.text().await.unwrap_or_default();
                    let _ = reports.send(Report::Failed(format!(
                        "{status} {content_type:?}: {}",
                        body.chars().take(200).collect::<String>()
                    )));
                    return;
                }
                if reports.send(Report::Opened).is_err() {
                    return;
                }
                let mut parser = Parser::new(&source.last_event_id);
                let mut body = response.bytes_stream();
                let mut dispatched = 0;
                let why = loop {
                    match body.next().await {
                        None => break "the stream ended".to_owned(),
                        Some(Err(error)) => break format!("the stream was cut: {error}"),
                        Some(Ok(chunk)) => {
                            let mut events = Vec::new();
                            parser.feed(&chunk, &mut source, &mut events);
                            for event in events {
                                dispatched += 1;
                                if reports.send(Report::Event(event)).is_err() {
                                    return;
                                }
                            }
                        }
                    }
                };
                Report::Ended { dispatched, why }
            }
        };
        if reports.send(ended).is_err() {
            return;
        }
        tokio::time::sleep(source.reconnection_time).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(chunks: &[&[u8]]) -> (Vec<Event>, Source) {
        let mut source = Source {
            last_event_id: String::new(),
            reconnection_time: INITIAL_RECONNECTION_TIME,
        };
        let mut parser = Parser::new("");
        let mut events = Vec::new();
        for chunk in chunks {
            parser.feed(chunk, &mut source, &mut events);
        }
        (events, source)
    }

    #[test]
    fn fields_lines_and_dispatch_follow_the_standard() {
        let (events, source) = parse(&[
            b"\xEF\xBB",
            b"\xBFretry: 1000\n\n: a comment\nid: 7\nevent: message\ndata: one\r",
            b"\ndata:two\rdata\n\nid: 8\nevent: ping\n\nretry: x\n\ndata: unfinished",
        ]);
        assert_eq!(
            events,
            [Event {
                event_type: "message".into(),
                data: "one\ntwo\n".into(),
                last_event_id: "7".into(),
            }]
        );
        // An event without data still moves the last event ID.
        assert_eq!(source.last_event_id, "8");
        assert_eq!(source.reconnection_time, Duration::from_millis(1000));
    }

    #[test]
    fn an_id_with_nul_is_ignored_and_an_empty_one_clears() {
        let (events, source) = parse(&[b"id: 5\ndata: a\n\nid: 6\0\ndata: b\n\n"]);
        assert_eq!(events[1].last_event_id, "5");
        let (_, cleared) = parse(&[b"id: 5\n\nid\n\n"]);
        assert_eq!(
            (source.last_event_id.as_str(), cleared.last_event_id.as_str()),
            ("5", "")
        );
    }
}
