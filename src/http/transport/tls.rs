//! HTTPS: TLS (rustls, with the *ring* provider: no C build tools beyond a C compiler) around
//! every guarded connection, offering ALPN `h2` and `http/1.1`, with the certificate and key
//! read from PEM files at start-up and again on SIGHUP.
//!
//! The TLS session runs on top of the guarded TCP stream (`net::Guarded`), so every guard of a
//! plain connection holds for its records too: admission at accept, before any handshake is
//! paid for; the silent and request timeouts, which a client that stalls its handshake meets
//! as well; the write-stall timeout and `TCP_USER_TIMEOUT`; the peek that notices a closed
//! client. The handshake runs in the connection's own task, not in the accept loop, so a slow
//! one delays nobody else.
//!
//! A TLS connection is never handed off (`--stream-handoff` is for plain HTTP/1.1): browsers
//! speak HTTP/2 over TLS, where many streams share one connection and none can have the socket,
//! and for the HTTP/1.1 clients left, a handed-off stream would have to take the TLS session
//! along, with whatever it has already read and decrypted, and write through it: a second
//! transport, for scripts and API clients only. Their streams are served by the HTTP server,
//! as HTTP/2's are. Measured (2,000 idle streams, the server's resident memory): plain
//! HTTP/1.1 handed off 5 KiB a stream, served by the HTTP server 30 KiB; over TLS, HTTP/1.1
//! 35 KiB, HTTP/2 39 KiB for a connection with one stream (a browser: its tabs share one
//! stream) and 8 KiB a stream with twenty on a connection. A server with very many idle
//! streams on TLS does better behind a proxy that ends TLS and speaks plain HTTP/1.1 to it.
//!
//! A reload swaps the certificate that the next handshakes present; sessions already made keep
//! theirs, so open connections and their streams go on. Files that cannot be read, or do not
//! hold a certificate and the key that belongs to it, leave the certificate in service, and
//! the log says why (`chat_tls_reload_failures` counts them).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll, ready};

use anyhow::Context as _;
use poem::http::uri::Scheme;
use poem::listener::Acceptor;
use poem::web::{LocalAddr, RemoteAddr};
use sha2::Digest;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::rustls::crypto::{CryptoProvider, ring};
use tokio_rustls::rustls::pki_types::pem::{self, PemObject};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::server::TlsStream;

use super::net::{Guarded, GuardedAcceptor};
use crate::metrics::Metrics;

/// The certificate and key in service, and where to read them again. Every handshake asks it
/// which certificate to present (a read lock and an `Arc` clone).
pub struct Certificates {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    metrics: Arc<Metrics>,
}

impl fmt::Debug for Certificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificates")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Certificates {
    /// Reads `cert` and `key`; an error says which file is wrong and how.
    pub fn load(cert: &Path, key: &Path, metrics: &Arc<Metrics>) -> anyhow::Result<Arc<Self>> {
        let provider = Arc::new(ring::default_provider());
        let certified = read(cert, key, &provider)?;
        tracing::info!(cert = %cert.display(), sha256 = %fingerprint(&certified), "tls certificate loaded");
        Ok(Arc::new(Self {
            cert: cert.to_owned(),
            key: key.to_owned(),
            provider,
            current: RwLock::new(Arc::new(certified)),
            metrics: Arc::clone(metrics),
        }))
    }

    /// Reads the files again and, if they hold a usable certificate and key, presents them
    /// from the next handshake on; otherwise keeps the ones in service and logs why.
    pub fn reload(&self) {
        match read(&self.cert, &self.key, &self.provider) {
            Ok(certified) => {
                tracing::info!(cert = %self.cert.display(), sha256 = %fingerprint(&certified), "tls certificate reloaded");
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(certified);
                self.metrics.tls_reloads.inc();
            }
            Err(error) => {
                tracing::error!(error = %format!("{error:#}"), "tls certificate not reloaded: the one in service stays");
                self.metrics.tls_reload_failures.inc();
            }
        }
    }

    /// The TLS settings of the listener: TLS 1.2 and 1.3, ALPN `h2` then `http/1.1`, the
    /// certificate from `self`, and stateless session tickets, so a client that reconnects
    /// (a reconnect storm after a restart of a proxy, a phone waking) resumes its session
    /// for the cost of a decryption rather than a signature.
    pub fn server_config(self: &Arc<Self>) -> anyhow::Result<Arc<ServerConfig>> {
        let mut config = ServerConfig::builder_with_provider(Arc::clone(&self.provider))
            .with_safe_default_protocol_versions()
            .context("tls protocol versions")?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config.ticketer = ring::Ticketer::new().context("tls session tickets")?;
        Ok(Arc::new(config))
    }

    /// Reloads the files on every SIGHUP until the task is aborted. The handler is in place
    /// when this returns, so a SIGHUP from then on never stops the server (its default).
    pub fn reload_on_hangup(self: &Arc<Self>) -> io::Result<tokio::task::JoinHandle<()>> {
        #[cfg(unix)]
        {
            let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
            let certificates = Arc::clone(self);
            Ok(tokio::spawn(async move {
                while hangups.recv().await.is_some() {
                    // Two small files, read at an operator's request: no need for a thread.
                    certificates.reload();
                }
            }))
        }
        #[cfg(not(unix))]
        Ok(tokio::spawn(async {}))
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner)))
    }
}

/// The certificate chain in `cert` and the key in `key`, checked to belong together.
fn read(cert: &Path, key: &Path, provider: &CryptoProvider) -> anyhow::Result<CertifiedKey> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("cannot read the certificate {}", cert.display()))?;
    if chain.is_empty() {
        anyhow::bail!("{} holds no certificate (a PEM `CERTIFICATE` block)", cert.display());
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|error| match error {
        pem::Error::NoItemsFound => anyhow::anyhow!(
            "{} holds no private key (a PEM `PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY` block)",
            key.display()
        ),
        other => anyhow::anyhow!("cannot read the private key {}: {other}", key.display()),
    })?;
    CertifiedKey::from_der(chain, private, provider).map_err(|error| match error {
        rustls::Error::InconsistentKeys(_) => anyhow::anyhow!(
            "the private key {} does not belong to the certificate {}",
            key.display(),
            cert.display()
        ),
        other => anyhow::anyhow!("cannot use the private key {}: {other}", key.display()),
    })
}

/// The SHA-256 of the server's own certificate, in hex, as browsers and `openssl x509
/// -fingerprint -sha256` show it: how an operator sees which certificate is in service.
fn fingerprint(certified: &CertifiedKey) -> String {
    let Some(cert) = certified.cert.first() else {
        return String::new();
    };
    let digest = sha2::Sha256::digest(cert.as_ref());
    let hex: Vec<String> = digest.iter().map(|byte| format!("{byte:02X}")).collect();
    hex.join(":")
}

/// An acceptor of guarded connections that speak TLS.
pub struct TlsAcceptor {
    inner: GuardedAcceptor,
    tls: tokio_rustls::TlsAcceptor,
    metrics: Arc<Metrics>,
}

impl TlsAcceptor {
    pub fn new(inner: GuardedAcceptor, config: Arc<ServerConfig>, metrics: Arc<Metrics>) -> Self {
        Self {
            inner,
            tls: tokio_rustls::TlsAcceptor::from(config),
            metrics,
        }
    }
}

impl Acceptor for TlsAcceptor {
    type Io = TlsConnection;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    async fn accept(&mut self) -> io::Result<(TlsConnection, LocalAddr, RemoteAddr, Scheme)> {
        let (guarded, local, remote, _) = self.inner.accept().await?;
        let connection = TlsConnection {
            state: State::Handshaking(self.tls.accept(guarded)),
            metrics: Arc::clone(&self.metrics),
        };
        Ok((connection, local, remote, Scheme::HTTPS))
    }
}

/// A TLS connection, its handshake made when the HTTP server first reads or writes.
pub struct TlsConnection {
    state: State,
    metrics: Arc<Metrics>,
}

enum State {
    Handshaking(tokio_rustls::Accept<Guarded>),
    Ready(TlsStream<Guarded>),
    Failed,
}

impl TlsConnection {
    /// Drives the handshake to its end; `Ok` once the session is ready.
    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let State::Handshaking(accept) = &mut self.state {
            match ready!(Pin::new(accept).poll(cx)) {
                Ok(stream) => {
                    self.metrics.tls_handshakes.inc();
                    self.state = State::Ready(stream);
                }
                Err(error) => {
                    self.metrics.tls_handshake_failures.inc();
                    tracing::debug!(%error, "tls handshake failed");
                    self.state = State::Failed;
                    return Poll::Ready(Err(error));
                }
            }
        }
        match self.state {
            State::Ready(_) => Poll::Ready(Ok(())),
            _ => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the tls handshake failed",
            ))),
        }
    }
}

/// Runs `$poll` on the connection's TLS stream once the handshake is done.
macro_rules! poll_session {
    ($self:ident, $cx:ident, |$stream:ident| $poll:expr) => {{
        let this = &mut *$self;
        ready!(this.poll_handshake($cx))?;
        match &mut this.state {
            State::Ready($stream) => $poll,
            _ => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }};
}

impl AsyncRead for TlsConnection {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        poll_session!(self, cx, |stream| Pin::new(stream).poll_read(cx, buf))
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        poll_session!(self, cx, |stream| Pin::new(stream).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        poll_session!(self, cx, |stream| Pin::new(stream).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        poll_session!(self, cx, |stream| Pin::new(stream).poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // A connection whose handshake never finished has no session to close.
        if !matches!(self.state, State::Ready(_)) {
            return Poll::Ready(Ok(()));
        }
        poll_session!(self, cx, |stream| Pin::new(stream).poll_shutdown(cx))
    }
}
