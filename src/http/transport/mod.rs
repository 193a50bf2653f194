//! The hand-rolled stream transport: event streams served on a connection of their own, and
//! the connection guards they need (`net`). Fenced here, with `--stream-handoff off` to serve
//! every stream through the HTTP server instead, and `tests/api/transport.rs` as its contract.
//!
//! Once a stream's response is decided (the handler has checked the session, the room and the
//! cursor, and every middleware has added its headers), the socket is taken from the HTTP
//! server (`net::Handoffs`) and the stream is served here by one small task: the socket, the
//! stream's state, and a write buffer only while a client is slow. The HTTP server's
//! per-connection buffers and layers are freed, which is most of what an idle stream would
//! otherwise cost, and a delivery is one write of every frame that is ready.
//!
//! The response is HTTP/1.1 with chunked framing, so a stream the server ends (shutdown,
//! sign-out) ends with the last chunk and one that is cut (a crash) shows as cut; it carries
//! no `Connection: close`, which some clients take as leave to read a cut body as complete. A
//! stream ends when its frames do: at shutdown, once it has sent what was published before
//! (`Hub::close`). The client's closing is seen as soon as it happens: the task watches the
//! socket for it. A request the HTTP server cannot hand off (HTTP/1.0, HTTP/2, `HEAD`, and
//! anything over TLS, whose socket carries the session: see `tls`) is streamed through the
//! HTTP server.
//!
//! What this relies on from poem and hyper, and nothing more:
//!
//! - poem's acceptor hands hyper an `AsyncRead + AsyncWrite` of ours (`net::Guarded`), which
//!   hyper polls to read the request and to write the response; once the socket is taken,
//!   reads end and writes go nowhere, and hyper sees the connection end.
//! - poem runs the middleware (`Streams::serve`) after the request head is read, with the
//!   peer's address in `Request::remote_addr`, which names one connection.
//! - hyper does not read a request's connection again until it writes the response, so the
//!   socket taken is quiet: nothing of the next request has been read from it.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use poem::http::{Method, Version, header};
use poem::{Body, Endpoint, IntoResponse, Request, Response};
use tokio::net::TcpStream;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, Span};

use crate::metrics::Metrics;
use net::{Connection, Handoffs, Stall};

pub mod admission;
pub mod net;
pub mod tls;

/// A stream's frames, keep-alives included, already encoded.
pub type Frames = Pin<Box<dyn Stream<Item = Bytes> + Send>>;

/// Frames written in one `writev` at most (a stream that is behind has many ready; a
/// replayed frame is about 200 bytes, so `BATCH_BYTES` usually closes the batch first). Well
/// below `IOV_MAX` (1024).
const BATCH_FRAMES: usize = 512;
/// Bytes written in one `writev`, about: the batch closes once it holds this much.
const BATCH_BYTES: usize = 64 * 1024;
/// A write of at most this many bytes is copied into one buffer first.
const SMALL_WRITE: usize = 2048;

/// The body of an event-stream response, put in its extensions by the handler; `Streams`
/// serves it, on its own connection when it can, inside the span of the request that opened
/// it, so that what is logged while it runs names that request.
#[derive(Clone)]
pub struct EventStream(Arc<Mutex<Option<Frames>>>, Span);

impl EventStream {
    /// A `200` event-stream response whose frames come from `frames`, served in the current
    /// span.
    pub fn response(frames: Frames) -> Response {
        let mut response = Response::builder()
            .content_type("text/event-stream")
            .header(header::CACHE_CONTROL, "no-cache")
            .header("X-Accel-Buffering", "no")
            .finish();
        response
            .extensions_mut()
            .insert(Self(Arc::new(Mutex::new(Some(frames))), Span::current()));
        response
    }

    fn take(&self) -> Option<(Frames, Span)> {
        let frames = self.0.lock().unwrap_or_else(PoisonError::into_inner).take()?;
        Some((frames, self.1.clone()))
    }
}

/// A stream's frames, polled inside its request's span.
struct InSpan {
    frames: Frames,
    span: Span,
}

impl Stream for InSpan {
    type Item = Bytes;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let this = &mut *self;
        let _entered = this.span.enter();
        this.frames.as_mut().poll_next(cx)
    }
}

/// Serves the event streams of every response that carries one; the outermost layer of the app.
pub struct Streams {
    /// The open connections of the listener the app serves, by client address.
    pub connections: Arc<Handoffs>,
    /// Whether a stream may have its connection's socket: not with `--stream-handoff off`, nor
    /// over TLS (see `tls`); every stream then stays with the HTTP server.
    pub hand_off: bool,
    /// Every stream served on its own connection, so shutdown can wait for them to end.
    pub tasks: TaskTracker,
    pub write_timeout: Option<Duration>,
    pub metrics: Arc<Metrics>,
}

impl Streams {
    fn handoffs(&self) -> Option<&Arc<Handoffs>> {
        self.hand_off.then_some(&self.connections)
    }

    pub async fn serve<E: Endpoint>(self: Arc<Self>, next: Arc<E>, req: Request) -> poem::Result<Response> {
        // Chunked framing needs HTTP/1.1; a `HEAD` response has no body to stream.
        // A request pipelined behind a stream's, on a connection already taken for the stream:
        // its answer could go nowhere, so it must not run.
        if let (Some(handoffs), Some(peer)) = (self.handoffs(), req.remote_addr().as_socket_addr())
            && handoffs.handed_off(*peer)
        {
            return Ok(super::error::json_error(
                poem::http::StatusCode::BAD_REQUEST,
                "nothing can follow an event stream's request on its connection",
            ));
        }
        let version = req.version();
        let client = req.remote_addr().as_socket_addr().copied();
        let peer = (req.method() == Method::GET && version == Version::HTTP_11)
            .then_some(client)
            .flatten();
        let mut response = next.call(req).await?.into_response();
        let Some((frames, span)) = response.extensions_mut().remove::<EventStream>().and_then(|s| s.take()) else {
            return Ok(response);
        };
        if let Some(socket) = peer.and_then(|peer| self.handoffs()?.take(peer)) {
            let head = head(&response);
            let this = Arc::clone(&self);
            self.tasks.spawn(
                async move {
                    // No socket: the connection closed before the response could be sent.
                    if let Ok(connection) = socket.await {
                        this.run(connection, head, frames).await;
                    }
                }
                .instrument(span),
            );
            // Sent to nowhere: the HTTP server sees its connection end after it.
            return Ok(Response::default());
        }
        let mut frames: Frames = Box::pin(InSpan { frames, span });
        // Over HTTP/2 a client can stall one stream by flow control, which no write timeout
        // sees: the connection's guard watches it instead.
        if version == Version::HTTP_2
            && self.write_timeout.is_some()
            && let Some(stalls) = client.and_then(|client| self.connections.stalls(client))
        {
            frames = Box::pin(Watched {
                frames,
                stall: stalls.join(),
            });
        }
        let body = frames.map(Ok::<_, io::Error>);
        response.set_body(Body::from_bytes_stream(body));
        Ok(response)
    }

    /// Writes `head`, then every frame, until the stream ends or the client closes or stops
    /// reading.
    async fn run(&self, connection: Connection, head: Bytes, mut frames: Frames) {
        let socket = &connection.socket;
        let mut batch: Vec<Bytes> = Vec::new();
        let mut head = Some(head);
        loop {
            let wake = std::future::poll_fn(|cx| poll_wake(cx, socket, &mut frames, &mut batch)).await;
            let last = matches!(wake, Wake::End);
            let result = match wake {
                Wake::Frames | Wake::End => self.write(socket, head.take(), &batch, last).await,
                Wake::ClientSpoke => read_and_discard(socket),
            };
            match result {
                Ok(()) if last => {
                    // The last chunk is sent: the connection is an ordinary kept-alive one
                    // again, for the client's next request.
                    if let Some(handoffs) = self.handoffs() {
                        handoffs.give_back(connection);
                    }
                    return;
                }
                Ok(()) => batch.clear(),
                Err(error) => {
                    // A stalled write, or the kernel giving up on a peer that stopped
                    // acknowledging (TCP_USER_TIMEOUT).
                    if error.kind() == io::ErrorKind::TimedOut {
                        self.metrics.connections_timed_out.inc();
                    }
                    tracing::debug!(%error, "event stream connection ended");
                    return;
                }
            }
        }
    }

    /// Writes `head` (when given) and one chunk of `frames`, then, if `last`, the end of the
    /// body. A write that makes no progress for the write timeout fails.
    async fn write(&self, socket: &TcpStream, head: Option<Bytes>, frames: &[Bytes], last: bool) -> io::Result<()> {
        let Some(mut rest) = write_now(socket, head.as_deref().unwrap_or_default(), frames, last)? else {
            return Ok(());
        };
        // The client is slow: the socket's buffer is full. Wait for room, a bit at a time.
        while rest.has_remaining() {
            let writable = socket.writable();
            match self.write_timeout {
                Some(limit) => tokio::time::timeout(limit, writable)
                    .await
                    .map_err(|_| net::write_stalled())??,
                None => writable.await?,
            }
            match socket.try_write(&rest) {
                Ok(n) => rest.advance(n),
                Err(error) if would_block(&error) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }
}

/// A stream's frames, telling its connection's guard when the HTTP server has taken one and
/// when it asks for the next (see `net::Stalls`).
struct Watched {
    frames: Frames,
    stall: Stall,
}

impl Stream for Watched {
    type Item = Bytes;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        self.stall.asked();
        let next = self.frames.as_mut().poll_next(cx);
        if let Poll::Ready(Some(_)) = next {
            self.stall.taken();
        }
        next
    }
}

/// What a stream's task woke up for.
enum Wake {
    /// `batch` holds frames to write.
    Frames,
    /// The stream has ended; `batch` may hold its last frames.
    End,
    /// The socket has something to read: the client closed it, most likely.
    ClientSpoke,
}

fn poll_wake(cx: &mut Context<'_>, socket: &TcpStream, frames: &mut Frames, batch: &mut Vec<Bytes>) -> Poll<Wake> {
    if socket.poll_read_ready(cx).is_ready() {
        return Poll::Ready(Wake::ClientSpoke);
    }
    let mut bytes = 0;
    loop {
        match frames.as_mut().poll_next(cx) {
            Poll::Ready(Some(frame)) => {
                bytes += frame.len();
                batch.push(frame);
                if bytes >= BATCH_BYTES || batch.len() >= BATCH_FRAMES {
                    return Poll::Ready(Wake::Frames);
                }
            }
            Poll::Ready(None) => return Poll::Ready(Wake::End),
            Poll::Pending if batch.is_empty() => return Poll::Pending,
            Poll::Pending => return Poll::Ready(Wake::Frames),
        }
    }
}

/// Reads what the client sent after its request (nothing is expected) and drops it. Fails
/// once the client has closed the connection.
fn read_and_discard(socket: &TcpStream) -> io::Result<()> {
    let mut scratch = [0; 512];
    match socket.try_read(&mut scratch) {
        Ok(0) => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed by the client")),
        Ok(_) => Ok(()),
        Err(error) if would_block(&error) => Ok(()),
        Err(error) => Err(error),
    }
}

fn would_block(error: &io::Error) -> bool {
    matches!(error.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted)
}

/// Writes `head`, `frames` as one chunk, and the last chunk if `last`, as far as the socket
/// takes them now, in one system call. Returns the rest, copied, if it did not take it all.
fn write_now(socket: &TcpStream, head: &[u8], frames: &[Bytes], last: bool) -> io::Result<Option<BytesMut>> {
    let size: usize = frames.iter().map(Bytes::len).sum();
    let mut size_line = [0u8; 20];
    let size_line = chunk_size_line(&mut size_line, size);
    let (open, close): (&[u8], &[u8]) = if size > 0 { (size_line, b"\r\n") } else { (b"", b"") };
    let end: &[u8] = if last { b"0\r\n\r\n" } else { b"" };
    let parts = || {
        [head, open]
            .into_iter()
            .chain(frames.iter().map(|frame| &frame[..]))
            .chain([close, end])
    };
    let total: usize = parts().map(<[u8]>::len).sum();
    let written = if total <= SMALL_WRITE {
        // The usual delivery, one message: copied into one buffer it is one `send`, which
        // costs the kernel less than a `writev` of its pieces.
        let mut buf = [0u8; SMALL_WRITE];
        let mut len = 0;
        for part in parts() {
            buf[len..len + part.len()].copy_from_slice(part);
            len += part.len();
        }
        socket.try_write(&buf[..len])
    } else {
        let slices: Vec<IoSlice> = parts().filter(|part| !part.is_empty()).map(IoSlice::new).collect();
        socket.try_write_vectored(&slices)
    };
    let written = match written {
        Ok(n) if n == total => return Ok(None),
        Ok(n) => n,
        Err(error) if would_block(&error) => 0,
        Err(error) => return Err(error),
    };
    let mut rest = BytesMut::with_capacity(total - written);
    let mut skip = written;
    for part in parts() {
        rest.put_slice(&part[skip.min(part.len())..]);
        skip = skip.saturating_sub(part.len());
    }
    Ok(Some(rest))
}

/// `{size:x}\r\n`, the line that starts a chunk.
fn chunk_size_line(buf: &mut [u8; 20], size: usize) -> &[u8] {
    use std::io::Write as _;
    let mut cursor = io::Cursor::new(&mut buf[..]);
    // 16 hex digits and CRLF always fit in 20 bytes.
    let _ = write!(cursor, "{size:x}\r\n");
    let end = cursor.position() as usize;
    &buf[..end]
}

/// The status line and headers of `response`, framed for a chunked body.
fn head(response: &Response) -> Bytes {
    let mut out = BytesMut::with_capacity(512);
    let status = response.status();
    out.put_slice(b"HTTP/1.1 ");
    out.put_slice(status.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.put_slice(b"\r\n");
    for (name, value) in response.headers() {
        if [
            header::CONTENT_LENGTH,
            header::TRANSFER_ENCODING,
            header::CONNECTION,
            header::DATE,
        ]
        .contains(name)
        {
            continue;
        }
        out.put_slice(name.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"date: ");
    out.put_slice(httpdate::fmt_http_date(SystemTime::now()).as_bytes());
    out.put_slice(b"\r\ntransfer-encoding: chunked\r\n\r\n");
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `write_now` until the socket is full, small writes and large: what it wrote plus what
    /// it returned is the whole chunked body, byte for byte.
    #[tokio::test]
    async fn what_the_socket_does_not_take_is_returned_exactly() {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();

        let mut expected = b"HEAD".to_vec();
        let mut head: &[u8] = b"HEAD";
        let mut rest = None;
        for n in 0.. {
            // Alternately one small frame (one `send`) and a few large ones (`writev`).
            let frames: Vec<Bytes> = if n % 2 == 0 {
                vec![Bytes::from(format!("small {n}\n\n"))]
            } else {
                (0..3).map(|i| Bytes::from(vec![b'a' + i; 3000])).collect()
            };
            let size: usize = frames.iter().map(Bytes::len).sum();
            expected.extend_from_slice(format!("{size:x}\r\n").as_bytes());
            frames.iter().for_each(|frame| expected.extend_from_slice(frame));
            expected.extend_from_slice(b"\r\n");
            if let Some(left) = write_now(&server, head, &frames, false).unwrap() {
                rest = Some(left);
                break;
            }
            head = b"";
        }
        let rest = rest.unwrap();
        assert!(!rest.is_empty());

        // Everything the socket took, then what was returned.
        drop(server);
        let mut received = Vec::new();
        let mut client = client;
        client.read_to_end(&mut received).await.unwrap();
        received.extend_from_slice(&rest);
        assert_eq!(received.len(), expected.len());
        assert!(
            received == expected,
            "the bytes written and returned make the whole body"
        );
    }

    #[test]
    fn chunk_size_lines_are_hex() {
        let mut buf = [0; 20];
        assert_eq!(chunk_size_line(&mut buf, 0), b"0\r\n");
        assert_eq!(chunk_size_line(&mut buf, 255), b"ff\r\n");
        assert_eq!(chunk_size_line(&mut buf, usize::MAX), b"ffffffffffffffff\r\n");
    }

    #[test]
    fn the_head_keeps_every_header_and_frames_the_body_as_chunks() {
        let mut response = EventStream::response(Box::pin(futures_util::stream::empty()));
        response
            .headers_mut()
            .insert("x-frame-options", header::HeaderValue::from_static("DENY"));
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, header::HeaderValue::from_static("0"));
        let head = String::from_utf8(head(&response).to_vec()).unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("\r\ncontent-type: text/event-stream\r\n"), "{head}");
        assert!(head.contains("\r\nx-frame-options: DENY\r\n"), "{head}");
        assert!(head.contains("\r\ntransfer-encoding: chunked\r\n"), "{head}");
        assert!(head.contains("\r\ndate: "), "{head}");
        assert!(!head.contains("content-length"), "{head}");
        assert!(head.ends_with("\r\ntransfer-encoding: chunked\r\n\r\n"), "{head}");
        assert!(!head.to_ascii_lowercase().contains("connection:"), "{head}");
    }
}
