//! Connections that cannot pin the server: every accepted socket gets a request read timeout
//! and a write-stall timeout, enforced where the bytes move.
//!
//! - **Reading**: a client has `request_timeout` from connecting, or from the last byte the
//!   server wrote, to send a request. A half-open connection, or one trickling a header a byte
//!   at a time, is closed. An event stream writes at least every keep-alive interval, so an open
//!   stream never trips it.
//! - **Writing**: a write that makes no progress for `write_timeout` (the client stopped
//!   reading, or vanished) fails the connection, which ends its stream; a browser then
//!   reconnects with `Last-Event-ID`. `TCP_USER_TIMEOUT` makes the kernel give up on a peer
//!   that stopped acknowledging in the same time, so a vanished client is noticed at the first
//!   keep-alive it does not acknowledge.
//! - **Closing**: a write after a quiet spell first peeks for the client's FIN, so a closed tab
//!   is noticed at the next keep-alive.
//!
//! - **Handing off**: a handler may take a connection's socket away from the HTTP server once
//!   its response is decided (`Handoffs`): an event stream is then served on the bare socket,
//!   without the HTTP server's buffers and layers (see `transport`).
//! - **HTTP/2 streams**: a stream the client gives no room to send (flow control) stalls
//!   without any write waiting on the socket, so the write timeout cannot see it. Each event
//!   stream on an HTTP/2 connection says since when it has waited (`Stalls`), and the
//!   connection fails once one has waited the write timeout, as a stalled write fails it.
//!
//! - **Silence**: a new connection that sends nothing for `silent` is closed sooner than the
//!   request timeout: each costs a file descriptor, and a browser opens a connection only to
//!   use it.
//! - **Admission**: a connection past `--max-connections` or `--max-connections-per-address`
//!   is answered and closed at accept (`admission`).
//!
//! The listening socket is here too, with an accept queue deep enough for a reconnect storm.

use std::collections::HashMap;
use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use poem::http::uri::Scheme;
use poem::listener::Acceptor;
use poem::web::{LocalAddr, RemoteAddr};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, Sleep};

use super::admission::{Admission, Slot};
use crate::metrics::Metrics;

/// A write after at least this much quiet first checks whether the client has closed (a
/// keep-alive on an idle stream, typically): so a closed tab is noticed at the next keep-alive.
const CLOSE_CHECK_AFTER: Duration = Duration::from_millis(500);

/// How long to wait before accepting again after `accept` failed (out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Connections the kernel queues for `accept`. Rust's default (128) drops connections when a
/// few thousand browsers reconnect at once, each dropped one waiting a second to retry.
const LISTEN_BACKLOG: u32 = 4096;

/// Binds `addr` (`host:port`, a name or an address) with a deep accept queue.
pub async fn listen(addr: &str) -> io::Result<TcpListener> {
    let mut last_error = io::Error::new(io::ErrorKind::InvalidInput, "the address resolves to nothing");
    for addr in tokio::net::lookup_host(addr).await? {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        match socket.bind(addr).and_then(|()| socket.listen(LISTEN_BACKLOG)) {
            Ok(listener) => return Ok(listener),
            Err(error) => last_error = error,
        }
    }
    Err(last_error)
}

/// The timeouts every connection gets; `None` turns one off.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// From connecting to a complete request.
    pub request: Option<Duration>,
    /// Between requests on a kept-alive connection, counted from the last write: at least the
    /// request timeout, and long enough for an idle stream's keep-alives.
    pub idle: Option<Duration>,
    pub write: Option<Duration>,
    /// From connecting to the first byte of a request.
    pub silent: Option<Duration>,
}

impl Timeouts {
    pub fn new(request: Option<Duration>, write: Option<Duration>, keepalive: Duration) -> Self {
        Self {
            request,
            idle: request.map(|request| request.max(2 * keepalive)),
            write,
            silent: None,
        }
    }

    /// With new connections closed after `silent` without a byte.
    pub fn with_silent(self, silent: Option<Duration>) -> Self {
        Self { silent, ..self }
    }
}

/// An accepted socket with its place among the open connections, held until it closes.
pub struct Connection {
    pub socket: TcpStream,
    slot: Slot,
}

/// The open connections whose socket a handler can take over, by the client's address (which
/// names one connection: they all reach the one listening address), and the way back for a
/// socket whose stream has ended: it is accepted again, as a kept-alive connection.
pub struct Handoffs {
    open: Mutex<HashMap<SocketAddr, Arc<Handoff>>>,
    returned: mpsc::UnboundedSender<Connection>,
    /// Taken by the acceptor.
    returns: Mutex<Option<mpsc::UnboundedReceiver<Connection>>>,
}

impl Default for Handoffs {
    fn default() -> Self {
        let (returned, returns) = mpsc::unbounded_channel();
        Self {
            open: Mutex::default(),
            returned,
            returns: Mutex::new(Some(returns)),
        }
    }
}

/// One connection's way out of the HTTP server, and what its streams tell its guard.
#[derive(Default)]
struct Handoff {
    /// Set once `to` holds a receiver: checked on every read and write, so without a lock.
    wanted: AtomicBool,
    to: Mutex<Option<oneshot::Sender<Connection>>>,
    stalls: Arc<Stalls>,
}

/// The event streams the HTTP server writes on one connection, as its guard sees them. Over
/// HTTP/2 the server takes a stream's next frame only once the client has given room for the
/// one before (flow control): a stream whose frame was taken and that has not been asked for
/// the next since is waiting for the client. The guard fails the connection once one stream
/// has waited the write timeout, so a client that stops taking a stream (while it keeps the
/// connection busy otherwise) loses it as one that stops reading loses its socket.
#[derive(Default)]
pub struct Stalls {
    /// Each stream's wait: `0` while the server may ask it for a frame, else the millisecond
    /// (since `Stalls::epoch`, plus one) at which its last frame was taken.
    streams: Mutex<Vec<std::sync::Weak<AtomicU64>>>,
    /// The guard's task, woken when a stream joins, so that it starts watching.
    guard: AtomicWaker,
}

/// One stream's place in its connection's `Stalls`; dropping it leaves.
pub struct Stall {
    since: Arc<AtomicU64>,
}

/// The instant every `Stall` counts from.
fn epoch() -> std::time::Instant {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(std::time::Instant::now)
}

impl Stalls {
    /// A new stream on the connection.
    pub fn join(&self) -> Stall {
        let since = Arc::new(AtomicU64::new(0));
        self.lock().push(Arc::downgrade(&since));
        self.guard.wake();
        Stall { since }
    }

    /// How long the stream that has waited longest has waited (zero if none is waiting), or
    /// `None` when the connection carries no stream to watch.
    fn longest_wait(&self) -> Option<Duration> {
        let now = epoch().elapsed();
        let mut streams = self.lock();
        streams.retain(|stream| stream.strong_count() > 0);
        let oldest = streams
            .iter()
            .filter_map(|stream| stream.upgrade())
            .map(|since| since.load(Ordering::Relaxed))
            .filter(|&since| since > 0)
            .min();
        if streams.is_empty() {
            return None;
        }
        Some(oldest.map_or(Duration::ZERO, |since| {
            now.saturating_sub(Duration::from_millis(since - 1))
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<std::sync::Weak<AtomicU64>>> {
        // Pushes and prunes only: a panic cannot leave the list inconsistent.
        self.streams.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Stall {
    /// The server took a frame: the stream waits until it is asked for the next.
    pub fn taken(&self) {
        let now = u64::try_from(epoch().elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.since.store(now + 1, Ordering::Relaxed);
    }

    /// The server asks for the next frame: the stream waits for nobody.
    pub fn asked(&self) {
        self.since.store(0, Ordering::Relaxed);
    }
}

impl Handoffs {
    /// Asks for the socket of the connection from `peer`. It arrives when the HTTP server next
    /// reads or writes, which it does to send the response the handler returns: that response
    /// goes nowhere, and the server sees the connection end. `None` for a connection that is
    /// not ours (or already closed).
    pub fn take(&self, peer: SocketAddr) -> Option<oneshot::Receiver<Connection>> {
        let handoff = Arc::clone(self.lock().get(&peer)?);
        let (sender, receiver) = oneshot::channel();
        *handoff.to.lock().unwrap_or_else(PoisonError::into_inner) = Some(sender);
        handoff.wanted.store(true, Ordering::Release);
        Some(receiver)
    }

    /// The streams of the connection from `peer`, for a stream the HTTP server serves on it.
    pub fn stalls(&self, peer: SocketAddr) -> Option<Arc<Stalls>> {
        self.lock().get(&peer).map(|handoff| Arc::clone(&handoff.stalls))
    }

    /// Whether the connection from `peer` has been taken for a stream: a request the HTTP
    /// server read after the stream's, from the same connection, cannot be answered.
    pub fn handed_off(&self, peer: SocketAddr) -> bool {
        self.lock()
            .get(&peer)
            .is_some_and(|handoff| handoff.wanted.load(Ordering::Acquire))
    }

    /// Gives a socket back to the HTTP server once the stream served on it has ended with its
    /// last chunk: the client may send its next request on it, as HTTP/1.1 allows. (Closing
    /// it instead would fail a client that reuses it at once.)
    pub fn give_back(&self, connection: Connection) {
        // Once the server stops accepting, the socket is simply closed.
        let _ = self.returned.send(connection);
    }

    fn open(&self, peer: SocketAddr) -> Arc<Handoff> {
        let handoff = Arc::new(Handoff::default());
        self.lock().insert(peer, Arc::clone(&handoff));
        handoff
    }

    fn close(&self, peer: SocketAddr, handoff: &Arc<Handoff>) {
        let mut open = self.lock();
        // A new connection from the same address may have replaced this one already.
        if open.get(&peer).is_some_and(|current| Arc::ptr_eq(current, handoff)) {
            open.remove(&peer);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Arc<Handoff>>> {
        // Inserts and removes only: a panic cannot leave the map inconsistent.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The error of a write that made no progress for the write timeout.
pub fn write_stalled() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "the client stopped reading: no write progress in time",
    )
}

/// A TCP acceptor whose connections are `Guarded`.
pub struct GuardedAcceptor {
    listener: TcpListener,
    local_addr: LocalAddr,
    timeouts: Timeouts,
    metrics: Arc<Metrics>,
    handoffs: Arc<Handoffs>,
    admission: Arc<Admission>,
    returns: mpsc::UnboundedReceiver<Connection>,
}

impl GuardedAcceptor {
    pub fn new(
        listener: TcpListener,
        timeouts: Timeouts,
        metrics: Arc<Metrics>,
        handoffs: Arc<Handoffs>,
        admission: Arc<Admission>,
    ) -> io::Result<Self> {
        let local_addr = LocalAddr(listener.local_addr()?.into());
        let returns = handoffs
            .returns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .unwrap_or_else(|| mpsc::unbounded_channel().1);
        Ok(Self {
            listener,
            local_addr,
            timeouts,
            metrics,
            handoffs,
            admission,
            returns,
        })
    }
}

impl Acceptor for GuardedAcceptor {
    type Io = Guarded;

    fn local_addr(&self) -> Vec<LocalAddr> {
        vec![self.local_addr.clone()]
    }

    async fn accept(&mut self) -> io::Result<(Guarded, LocalAddr, RemoteAddr, Scheme)> {
        loop {
            // A returned connection has spoken before: it is an idle kept-alive one.
            let accepted = tokio::select! {
                accepted = self.listener.accept() => accepted.map(|(socket, addr)| (socket, None, addr)),
                Some(connection) = self.returns.recv() => match connection.socket.peer_addr() {
                    Ok(addr) => Ok((connection.socket, Some(connection.slot), addr)),
                    // Closed meanwhile: nothing to serve.
                    Err(_) => continue,
                },
            };
            match accepted {
                Ok((socket, slot, addr)) => {
                    let spoke = slot.is_some();
                    let slot = match slot {
                        Some(slot) => slot,
                        None => match self.admission.admit(addr.ip()) {
                            Ok(slot) => slot,
                            Err(refusal) => {
                                tracing::debug!(%addr, ?refusal, "connection refused");
                                refusal.answer(socket);
                                continue;
                            }
                        },
                    };
                    if !spoke {
                        configure(&socket, self.timeouts);
                    }
                    let connection = Connection { socket, slot };
                    let io = Guarded::new(connection, addr, self.timeouts, &self.metrics, &self.handoffs, spoke);
                    return Ok((io, self.local_addr.clone(), RemoteAddr(addr.into()), Scheme::HTTP));
                }
                // Out of file descriptors, or a connection reset before it was accepted: the
                // listener is fine; wait a moment instead of spinning.
                Err(error) => {
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
    }
}

fn configure(stream: &TcpStream, timeouts: Timeouts) {
    // Frames are written whole; send each at once.
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "cannot set TCP_NODELAY");
    }
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "fuchsia"))]
    if let Some(write) = timeouts.write {
        let socket = socket2::SockRef::from(stream);
        if let Err(error) = socket.set_tcp_user_timeout(Some(write)) {
            tracing::debug!(%error, "cannot set TCP_USER_TIMEOUT");
        }
    }
}

/// A TCP stream with the read and write timeouts described at the top of this module.
pub struct Guarded {
    /// `None` once handed off: the HTTP server then reads the end of the stream, and its
    /// writes go nowhere.
    inner: Option<Connection>,
    /// Whether the client has sent anything yet (until then the silent allowance applies).
    heard: bool,
    timeouts: Timeouts,
    metrics: Arc<Metrics>,
    /// When the connection was made, or the server last wrote: the read allowance starts here.
    last_write: Instant,
    /// Whether anything was written yet (then the idle allowance applies, not the request's).
    written: bool,
    read_timer: Option<Pin<Box<Sleep>>>,
    /// Armed while a write is waiting for the client to make room.
    write_timer: Option<Pin<Box<Sleep>>>,
    write_waiting: bool,
    /// Armed while the connection carries streams to watch (`Stalls`).
    stall_timer: Option<Pin<Box<Sleep>>>,
    peer: SocketAddr,
    handoffs: Arc<Handoffs>,
    handoff: Arc<Handoff>,
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.handoffs.close(self.peer, &self.handoff);
    }
}

impl Guarded {
    fn new(
        connection: Connection,
        peer: SocketAddr,
        timeouts: Timeouts,
        metrics: &Arc<Metrics>,
        handoffs: &Arc<Handoffs>,
        heard: bool,
    ) -> Self {
        Self {
            inner: Some(connection),
            heard,
            timeouts,
            metrics: Arc::clone(metrics),
            last_write: Instant::now(),
            written: false,
            read_timer: None,
            write_timer: None,
            write_waiting: false,
            stall_timer: None,
            peer,
            handoffs: Arc::clone(handoffs),
            handoff: handoffs.open(peer),
        }
    }

    /// Hands the socket off if that was asked for.
    fn hand_off_if_asked(&mut self, cx: &Context<'_>) {
        if self.handoff.wanted.load(Ordering::Acquire) {
            let to = self.handoff.to.lock().unwrap_or_else(PoisonError::into_inner).take();
            if let (Some(to), Some(socket)) = (to, self.inner.take()) {
                // If the taker is gone, the socket is dropped: closed, as it would have been.
                let _ = to.send(socket);
                // A read the HTTP server left pending waits on the socket, which now wakes
                // its new owner: have the server poll again, to read the end of the stream.
                cx.waker().wake_by_ref();
            }
        }
    }

    /// Called when a read is pending: fails once the read allowance is spent.
    fn poll_read_deadline(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let allowance = if self.written {
            self.timeouts.idle
        } else if self.heard {
            self.timeouts.request
        } else {
            match (self.timeouts.silent, self.timeouts.request) {
                (Some(silent), Some(request)) => Some(silent.min(request)),
                (silent, request) => silent.or(request),
            }
        };
        let Some(allowance) = allowance else {
            return Poll::Pending;
        };
        let deadline = self.last_write + allowance;
        let timer = self
            .read_timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        // Writes move the deadline without touching the timer; catch up when it fires.
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        ready!(timer.as_mut().poll(cx));
        self.metrics.connections_timed_out.inc();
        Poll::Ready(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client sent no complete request in time",
        ))
    }

    /// Called when a read is pending: fails once a stream of the connection has waited the
    /// write timeout for the client to take its frames (see `Stalls`). The HTTP/2 server
    /// always has a read pending, so this runs whenever its connection task does, and its
    /// timer wakes that task when the longest wait could reach the limit.
    fn poll_stalls(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let Some(limit) = self.timeouts.write else {
            return Poll::Pending;
        };
        let stalls = Arc::clone(&self.handoff.stalls);
        stalls.guard.register(cx.waker());
        let Some(waited) = stalls.longest_wait() else {
            self.stall_timer = None;
            return Poll::Pending;
        };
        if waited >= limit {
            self.metrics.connections_timed_out.inc();
            return Poll::Ready(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client took nothing of an event stream in time",
            ));
        }
        // Look again when the longest wait would reach the limit: only ever sooner than the
        // timer says, so a busy connection does not move it on every read.
        let due = Instant::now() + (limit - waited);
        let timer = self
            .stall_timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
        if timer.deadline() > due || timer.is_elapsed() {
            timer.as_mut().reset(due);
        }
        // Registers the task to be woken when it fires.
        let _ = timer.as_mut().poll(cx);
        Poll::Pending
    }

    /// Whether the client has closed its end, or the kernel has given up on it: the error to
    /// fail the next write with. An HTTP/1 server does not read while it streams a response,
    /// so without this a closed connection shows only when a write fails, one or two
    /// keep-alives later. Checked only after a quiet spell, so busy streams pay nothing.
    fn peer_gone(&self) -> Option<io::Error> {
        let socket = &self.inner.as_ref()?.socket;
        if self.last_write.elapsed() < CLOSE_CHECK_AFTER {
            return None;
        }
        let mut byte = [MaybeUninit::uninit()];
        match socket2::SockRef::from(socket).peek(&mut byte) {
            Ok(0) => Some(io::ErrorKind::BrokenPipe.into()),
            Ok(_) => None,
            Err(error) if matches!(error.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => None,
            Err(error) => Some(self.failed(error)),
        }
    }

    /// Counts a connection the kernel gave up on (TCP_USER_TIMEOUT: the peer stopped
    /// acknowledging) among the timed-out ones.
    fn failed(&self, error: io::Error) -> io::Error {
        if error.kind() == io::ErrorKind::TimedOut {
            self.metrics.connections_timed_out.inc();
        }
        error
    }

    /// Wraps a write-side poll: a write that stays pending past the write timeout fails.
    /// `wrote` says whether a ready result moved bytes (a flush moves none by itself).
    fn guard_write<T>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<T>>,
        wrote: impl FnOnce(&T) -> bool,
    ) -> Poll<io::Result<T>> {
        match result {
            Poll::Ready(Ok(value)) => {
                self.write_waiting = false;
                if wrote(&value) {
                    self.written = true;
                    self.last_write = Instant::now();
                }
                Poll::Ready(Ok(value))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(self.failed(error))),
            Poll::Pending => {
                let Some(limit) = self.timeouts.write else {
                    return Poll::Pending;
                };
                let deadline = Instant::now() + limit;
                if !self.write_waiting {
                    self.write_waiting = true;
                    match &mut self.write_timer {
                        Some(timer) => timer.as_mut().reset(deadline),
                        None => self.write_timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
                    }
                }
                let Some(timer) = &mut self.write_timer else {
                    return Poll::Pending;
                };
                ready!(timer.as_mut().poll(cx));
                self.metrics.connections_timed_out.inc();
                Poll::Ready(Err(write_stalled()))
            }
        }
    }
}

/// Polls the socket of a `Guarded`, or answers `$gone` once it has been handed off.
macro_rules! poll_socket {
    ($this:ident, $cx:ident, $gone:expr, |$socket:ident| $poll:expr) => {{
        $this.hand_off_if_asked($cx);
        let Some($socket) = $this.inner.as_mut().map(|connection| &mut connection.socket) else {
            return Poll::Ready($gone);
        };
        $poll
    }};
}

impl AsyncRead for Guarded {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        // Handed off: the end of the stream.
        let before = buf.filled().len();
        match poll_socket!(this, cx, Ok(()), |socket| Pin::new(socket).poll_read(cx, buf)) {
            Poll::Ready(result) => {
                this.heard |= buf.filled().len() > before;
                Poll::Ready(result.map_err(|error| this.failed(error)))
            }
            Poll::Pending => match this.poll_stalls(cx) {
                Poll::Ready(error) => Poll::Ready(Err(error)),
                Poll::Pending => this.poll_read_deadline(cx).map(Err),
            },
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if let Some(error) = this.peer_gone() {
            return Poll::Ready(Err(error));
        }
        // Handed off: the bytes go nowhere.
        let result = poll_socket!(this, cx, Ok(buf.len()), |socket| Pin::new(socket).poll_write(cx, buf));
        this.guard_write(cx, result, |&n| n > 0)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if let Some(error) = this.peer_gone() {
            return Poll::Ready(Err(error));
        }
        let written = bufs.iter().map(|buf| buf.len()).sum();
        let result = poll_socket!(this, cx, Ok(written), |socket| Pin::new(socket)
            .poll_write_vectored(cx, bufs));
        this.guard_write(cx, result, |&n| n > 0)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let result = poll_socket!(this, cx, Ok(()), |socket| Pin::new(socket).poll_flush(cx));
        this.guard_write(cx, result, |()| false)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let result = poll_socket!(this, cx, Ok(()), |socket| Pin::new(socket).poll_shutdown(cx));
        this.guard_write(cx, result, |()| false)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::http::transport::admission::Caps;

    const REQUEST: Duration = Duration::from_secs(30);
    const WRITE: Duration = Duration::from_secs(15);
    const KEEPALIVE: Duration = Duration::from_secs(20);
    const SILENT: Duration = Duration::from_secs(10);

    /// A guarded server side and the raw client side of one loopback connection.
    async fn connection() -> (Guarded, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (socket, peer) = listener.accept().await.unwrap();
        let timeouts = Timeouts::new(Some(REQUEST), Some(WRITE), KEEPALIVE).with_silent(Some(SILENT));
        let metrics = Arc::new(Metrics::new());
        let unlimited = Caps {
            connections: 0,
            per_address: 0,
            streams: 0,
        };
        let slot = Admission::new(unlimited, &metrics).admit(peer.ip()).unwrap();
        let connection = Connection { socket, slot };
        let guarded = Guarded::new(connection, peer, timeouts, &metrics, &Arc::default(), false);
        (guarded, client)
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_sends_nothing_is_cut_off_at_the_silent_timeout() {
        let (mut server, _client) = connection().await;
        let started = Instant::now();
        let mut buf = [0; 16];
        let error = server.read(&mut buf).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), SILENT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_sends_part_of_a_request_is_cut_off_at_the_request_timeout() {
        let (mut server, mut client) = connection().await;
        let started = Instant::now();
        client.write_all(b"GE").await.unwrap();
        let mut buf = [0; 16];
        assert_eq!(server.read(&mut buf).await.unwrap(), 2);
        let error = server.read(&mut buf).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), REQUEST);
    }

    #[tokio::test(start_paused = true)]
    async fn a_kept_alive_connection_may_idle_twice_the_keepalive_after_the_last_write() {
        let (mut server, mut client) = connection().await;
        client.write_all(b"GET").await.unwrap();
        let mut buf = [0; 16];
        assert_eq!(server.read(&mut buf).await.unwrap(), 3);
        tokio::time::advance(Duration::from_secs(10)).await;
        server.write_all(b"answer").await.unwrap();
        let written = Instant::now();
        let error = server.read(&mut buf).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        // The idle allowance: at least the request timeout, and two keep-alives.
        assert_eq!(written.elapsed(), REQUEST.max(2 * KEEPALIVE));
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_the_client_does_not_read_fails_after_the_write_timeout() {
        let (mut server, _client) = connection().await;
        let chunk = vec![0u8; 64 * 1024];
        // Fill both sockets' buffers until a write waits: from then on, the timeout runs.
        let stalled = loop {
            let attempt = Instant::now();
            match tokio::time::timeout(Duration::from_millis(1), server.write(&chunk)).await {
                Ok(written) => assert!(written.unwrap() > 0),
                Err(_) => break attempt,
            }
        };
        let error = server.write_all(&chunk).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        let waited = stalled.elapsed();
        assert_eq!(waited, WRITE);
    }
}
