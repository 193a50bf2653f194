//! The HTTP front end, poem only: the route tree, extractors, pages, middleware, and the
//! hand-rolled stream transport (`transport/`, fenced, with `--stream-handoff` to turn it
//! off). A handler parses the request, calls one `app` operation, and renders its answer; it
//! holds no rule of the chat.

mod account;
mod assets;
mod auth;
pub mod client;
pub mod error;
mod events;
mod health;
mod invites;
mod me;
mod messages;
mod origin;
mod pages;
mod redirect;
mod reply;
mod rooms;
mod search;
mod sessions;
mod signup;
mod status;
pub mod transport;
mod users;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use poem::http::uri::Scheme;
use poem::http::{HeaderValue, header};
use poem::listener::Acceptor;
use poem::{
    Endpoint, EndpointExt, FromRequest, IntoResponse, Request, RequestBody, Response, Route, Server, delete, get,
    patch, post, put,
};
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::app::App;
use crate::config::{Config, Switch};
use error::{ApiError, into_json_response};
use transport::Streams;
use transport::admission::{Admission, Caps};
use transport::net::{GuardedAcceptor, Handoffs, Timeouts};
use transport::tls::{Certificates, TlsAcceptor};

/// How long shutdown waits for open requests once the streams are told to end.
const SHUTDOWN_BACKSTOP: Duration = Duration::from_secs(5);

/// Requests one HTTP/2 connection may have open at once (poem sets no limit). A browser
/// shares one stream among its tabs and asks for a page and its files at a time; an API
/// client may open `--max-streams-per-user` streams and still make requests beside them.
const HTTP2_MAX_STREAMS: u32 = 256;

/// What every handler shares: the app, and the settings of the HTTP front end. Cloning copies
/// a handful of `Arc`s.
#[derive(Clone)]
pub struct State {
    pub app: App,
    /// Largest request body (`usize::MAX`: none).
    body_limit: usize,
    /// Interval between `ping`s on an event stream.
    keepalive: Duration,
    /// `--metrics-token`: who may read `/metrics` besides local addresses.
    metrics_token: Option<String>,
    /// The server's own origins: where the links it hands out (invites) start.
    origins: Arc<origin::Origins>,
}

/// Serves `app` on `listener` until `shutdown` resolves, then ends every stream and waits
/// (within a backstop) for them and every open request to finish. `ready` is called once
/// requests will be served. With `--tls-cert` the listener speaks TLS, and SIGHUP reloads the
/// certificate; with `--redirect-http` a second, plain listener redirects to it.
pub async fn serve(
    app: App,
    config: &Config,
    listener: TcpListener,
    ready: impl FnOnce(),
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let metrics = Arc::clone(&app.metrics);
    let mut public = Vec::new();
    for raw in &config.public_origin {
        public.push(
            origin::Origin::parse(raw).with_context(|| {
                format!("--public-origin {raw:?} is not an origin such as https://chat.example.com")
            })?,
        );
    }
    let certificates = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(Certificates::load(cert, key, &metrics)?),
        _ => None,
    };
    let tls = certificates
        .as_ref()
        .map(|certificates| certificates.server_config())
        .transpose()?;
    let origins = Arc::new(origin::Origins::new(
        public,
        listener.local_addr()?.port(),
        tls.is_some(),
    ));
    let state = State {
        app: app.clone(),
        body_limit: match config.max_body_bytes {
            0 => usize::MAX,
            n => n,
        },
        keepalive: config.keepalive(),
        metrics_token: config.metrics_token.clone().filter(|token| !token.is_empty()),
        origins: Arc::clone(&origins),
    };
    let handoffs = Arc::new(Handoffs::default());
    let streams = Arc::new(Streams {
        // A TLS connection's socket carries its session: its streams stay with the HTTP
        // server (see `transport::tls`).
        connections: Arc::clone(&handoffs),
        hand_off: config.stream_handoff == Switch::On && tls.is_none(),
        tasks: TaskTracker::new(),
        write_timeout: config.write_timeout(),
        metrics: Arc::clone(&metrics),
    });
    let proxies = Arc::new(client::Proxies::of(config));
    let hsts = config
        .hsts_max_age()
        .map(|age| HeaderValue::from_str(&format!("max-age={age}")))
        .transpose()
        .context("the Strict-Transport-Security header")?;
    let routes = build_app(
        state,
        Arc::clone(&origins),
        Arc::clone(&proxies),
        Arc::clone(&streams),
        hsts,
    );
    // Both listeners stop on the one signal.
    let stop = CancellationToken::new();
    let signal = {
        let app = app.clone();
        let stop = stop.clone();
        async move {
            shutdown.await;
            app.close_streams();
            stop.cancel();
        }
    };
    let timeouts = Timeouts::new(config.request_timeout(), config.write_timeout(), config.keepalive())
        .with_silent(config.silent_timeout());
    // One count of connections for both listeners: each costs a file all the same.
    let admission = Admission::behind(Caps::of(config), proxies, &metrics);
    let redirecting = match &config.redirect_http {
        Some(addr) => {
            let plain = transport::net::listen(addr)
                .await
                .with_context(|| format!("cannot listen on --redirect-http {addr}"))?;
            tracing::info!(addr = %plain.local_addr()?, "redirecting plain http to https");
            // Its own hand-offs, never taken: it serves no stream.
            let acceptor = GuardedAcceptor::new(
                plain,
                timeouts,
                Arc::clone(&metrics),
                Arc::default(),
                Arc::clone(&admission),
            )?;
            let server = run_server(
                acceptor,
                redirect::app(Arc::clone(&origins)),
                stop.clone().cancelled_owned(),
            );
            Some(tokio::spawn(server))
        }
        None => None,
    };
    let acceptor = GuardedAcceptor::new(listener, timeouts, Arc::clone(&metrics), handoffs, admission)?;
    let reloading = certificates
        .as_ref()
        .map(|certificates| certificates.reload_on_hangup())
        .transpose()
        .context("cannot listen for SIGHUP")?;
    ready();
    let served = match tls {
        Some(tls) => run_server(TlsAcceptor::new(acceptor, tls, metrics), routes, signal).await,
        None => run_server(acceptor, routes, signal).await,
    };
    app.close_streams();
    stop.cancel();
    if let Some(reloading) = reloading {
        reloading.abort();
    }
    if let Some(redirecting) = redirecting
        && let Ok(Err(error)) = redirecting.await
    {
        tracing::warn!(%error, "the redirecting listener failed");
    }
    // The streams served on their own connections are not the HTTP server's to wait for.
    streams.tasks.close();
    if tokio::time::timeout(SHUTDOWN_BACKSTOP, streams.tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(left = streams.tasks.len(), "streams still open at shutdown");
    }
    Ok(served?)
}

/// Serves `routes` on the connections `acceptor` takes until `signal`, HTTP/1.1 and HTTP/2
/// alike (poem's server tells them apart by the first bytes).
async fn run_server<A: Acceptor + 'static>(
    acceptor: A,
    routes: impl Endpoint + 'static,
    signal: impl Future<Output = ()>,
) -> std::io::Result<()> {
    Server::new_with_acceptor(acceptor)
        .http2_max_concurrent_streams(HTTP2_MAX_STREAMS)
        .run_with_graceful_shutdown(routes, signal, Some(SHUTDOWN_BACKSTOP))
        .await
}

/// The routes, inside `streams`, which serves the event streams its handlers answer with.
/// `proxies` decides which client each request is from (and so what its log line names).
pub fn build_app(
    state: State,
    origins: Arc<origin::Origins>,
    proxies: Arc<client::Proxies>,
    streams: Arc<Streams>,
    hsts: Option<HeaderValue>,
) -> impl Endpoint {
    let metrics = Arc::clone(&state.app.metrics);
    Route::new()
        .at("/api/sessions", post(sessions::sign_in).delete(sessions::sign_out))
        .at("/api/rooms", get(rooms::list_rooms).post(rooms::create_room))
        .at(
            "/api/rooms/:room/messages",
            get(messages::history).post(messages::post_message),
        )
        .at("/api/rooms/:room/events", get(events::room_events))
        .at(
            "/api/messages/:id",
            get(messages::get_message)
                .patch(messages::edit_message)
                .delete(messages::delete_message),
        )
        .at(
            "/api/messages/:id/reactions/:emoji",
            put(messages::add_reaction).delete(messages::remove_reaction),
        )
        .at("/api/rooms/:room", get(rooms::get_room).patch(rooms::update_room))
        .at("/api/rooms/:room/read", put(rooms::mark_read))
        .at("/api/rooms/:room/notifications", put(rooms::set_notifications))
        .at("/api/rooms/:room/members", get(rooms::list_members))
        .at(
            "/api/rooms/:room/members/:username",
            put(rooms::add_member).delete(rooms::remove_member),
        )
        .at("/api/dms", post(rooms::direct))
        .at("/api/search", get(search::search_messages))
        .at("/api/events", get(events::user_events))
        .at("/api/status", put(status::set_status))
        .at("/api/users", get(users::list_users).post(signup::sign_up))
        .at("/api/invites", get(invites::list_invites).post(invites::create_invite))
        .at("/api/invites/:code", delete(invites::revoke_invite))
        .at("/api/users/:username", patch(users::update_user))
        .at("/api/me", get(me::me))
        .at("/api/me/password", put(me::change_password))
        .at("/api/me/sessions", get(me::sessions).delete(me::revoke_other_sessions))
        .at("/api/me/sessions/:id", delete(me::revoke_session))
        .at("/healthz", get(health::healthz))
        .at("/metrics", get(health::metrics))
        .at("/", get(pages::sign_in_page).post(pages::sign_in_form))
        .at("/signup", get(signup::sign_up_page).post(signup::sign_up_form))
        .at("/join/:code", get(signup::join_page))
        .at("/admin/invites", post(account::create_invite_form))
        .at("/admin/invites/:code/revoke", post(account::revoke_invite_form))
        .at("/signout", post(pages::sign_out_form))
        .at("/status", post(pages::set_status_form))
        .at("/rooms", post(pages::create_room_form).get(pages::more_rooms))
        .at("/rooms/:room", get(pages::room_page))
        .at("/search", get(search::search_page))
        .at("/account", get(account::account_page))
        .at("/admin", get(account::admin_page))
        .at("/admin/people/:username", post(account::change_person_form))
        .at("/account/password", post(account::change_password_form))
        .at("/account/sessions/end-others", post(account::end_other_sessions_form))
        .at("/account/sessions/:id/end", post(account::end_session_form))
        .at("/rooms/:room/messages", post(pages::post_message_form))
        .at("/rooms/:room/older", get(pages::older))
        .at("/rooms/:room/messages/:id", get(pages::permalink_page))
        .at("/rooms/:room/members", get(pages::member_fragment))
        .at("/static/*path", get(assets::static_file))
        .at("/manifest.webmanifest", get(assets::manifest))
        .at("/sw.js", get(assets::service_worker))
        .data(state)
        .around(move |next, req| origin::guard(next, req, Arc::clone(&origins)))
        .catch_all_error(into_json_response)
        .around(move |next, req| security_headers(next, req, hsts.clone()))
        .around(move |next, req| client::identify(next, req, Arc::clone(&proxies), Arc::clone(&metrics)))
        .around(move |next, req| Arc::clone(&streams).serve(next, req))
}

/// Headers every response carries. The page runs only our own scripts and styles (htmx is
/// configured by a meta tag, so no inline script is needed), and may not be framed. An answer
/// to a request with credentials is not stored by any cache unless it says otherwise (a
/// versioned static file does). With `--hsts`, an answer over TLS tells the browser to come
/// only by https from now on (over plain http it would mean nothing, and browsers ignore it).
async fn security_headers<E: Endpoint>(next: E, req: Request, hsts: Option<HeaderValue>) -> poem::Result<Response> {
    let private = auth::request_token(&req).is_some();
    let tls = *req.scheme() == Scheme::HTTPS;
    let mut response = next.call(req).await?.into_response();
    let headers = response.headers_mut();
    if let Some(hsts) = hsts.filter(|_| tls) {
        headers.insert(header::STRICT_TRANSPORT_SECURITY, hsts);
    }
    if private && !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    for (name, value) in [
        (
            "content-security-policy",
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; worker-src 'self'; manifest-src 'self'; object-src 'none'; base-uri 'none'; \
             form-action 'self'; frame-ancestors 'none'",
        ),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "same-origin"),
        ("x-frame-options", "DENY"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    Ok(response)
}

/// Whether the request's `Content-Type` is `mime` (parameters such as `charset` aside).
fn has_content_type(req: &Request, mime: &str) -> bool {
    req.header(header::CONTENT_TYPE)
        .and_then(|value| value.split(';').next())
        .is_some_and(|value| value.trim().eq_ignore_ascii_case(mime))
}

/// The request body, read up to the configured limit (`413` beyond it, before reading when the
/// declared length already says so).
async fn read_body(req: &Request, body: &mut RequestBody) -> Result<Bytes, ApiError> {
    let limit = req.data::<State>().map_or(usize::MAX, |state| state.body_limit);
    let declared = req
        .header(header::CONTENT_LENGTH)
        .and_then(|len| len.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    body.take()
        .map_err(|error| ApiError::BadRequest(format!("cannot read the body: {error}")))?
        .into_bytes_limit(limit)
        .await
        .map_err(|error| match error {
            poem::error::ReadBodyError::PayloadTooLarge => ApiError::PayloadTooLarge(limit),
            other => ApiError::BadRequest(format!("cannot read the body: {other}")),
        })
}

/// A JSON object request body, read up to the configured limit. Malformed JSON is a `400`;
/// JSON of the wrong shape (not an object, a missing field, a number for a string, a duplicate
/// key) is a `422`.
pub struct JsonBody<T>(pub T);

impl<'a, T: DeserializeOwned> FromRequest<'a> for JsonBody<T> {
    async fn from_request(req: &'a Request, body: &mut RequestBody) -> poem::Result<Self> {
        if !has_content_type(req, "application/json") {
            return Err(ApiError::UnsupportedMediaType("application/json").into());
        }
        let bytes = read_body(req, body).await?;
        // serde would also read a struct from an array (`["hi"]`): only an object will do.
        let object = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
        let not_object = || ApiError::Unprocessable("the body must be a JSON object".into());
        let mut json = serde_json::Deserializer::from_slice(&bytes);
        let value = serde_path_to_error::deserialize(&mut json).map_err(|error| match error.inner().classify() {
            serde_json::error::Category::Data if !object => not_object(),
            serde_json::error::Category::Data => ApiError::Unprocessable(misfit(&error)),
            _ => ApiError::BadRequest(format!("the body is not valid JSON: {}", error.inner())),
        })?;
        // Nothing but white space may follow the value.
        json.end()
            .map_err(|error| ApiError::BadRequest(format!("the body is not valid JSON: {error}")))?;
        if !object {
            return Err(not_object().into());
        }
        Ok(Self(value))
    }
}

/// What is wrong with a JSON body of the right syntax, in the API's words: the field and what
/// it must be, never the server's own type names (serde says `expected struct NewMessage`).
fn misfit(error: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let path = error.path().to_string();
    let said = error.inner().to_string();
    // serde_json ends its message with where in the text it was.
    let said = said.rsplit_once(" at line ").map_or(said.as_str(), |(said, _)| said);
    let quoted = |prefix: &str| said.strip_prefix(prefix)?.split('`').next();
    if let Some(field) = quoted("missing field `") {
        return format!("`{field}` is missing");
    }
    if let Some(field) = quoted("duplicate field `") {
        return format!("`{field}` is given twice");
    }
    if !["invalid type", "invalid value", "invalid length"]
        .iter()
        .any(|kind| said.starts_with(kind))
    {
        // A message of our own, from a field's parser.
        return format!("`{path}`: {said}");
    }
    let expected = match said.split_once(", expected ").map(|(_, expected)| expected) {
        Some(expected @ ("a string" | "a boolean")) => expected,
        Some("a sequence") => "a list",
        Some(expected) if expected.starts_with("one of ") => expected,
        Some("u8" | "u16" | "u32" | "u64" | "usize" | "i8" | "i16" | "i32" | "i64" | "isize") => "a whole number",
        Some("f32" | "f64") => "a number",
        _ => "of another kind",
    };
    format!("`{path}` must be {expected}")
}

/// A form body (`application/x-www-form-urlencoded`), read up to the configured limit. Text that
/// is not UTF-8, raw or percent-encoded, is a `400`, as in JSON: it is never replaced.
pub struct FormBody<T>(pub T);

impl<'a, T: DeserializeOwned> FromRequest<'a> for FormBody<T> {
    async fn from_request(req: &'a Request, body: &mut RequestBody) -> poem::Result<Self> {
        if !has_content_type(req, "application/x-www-form-urlencoded") {
            return Err(ApiError::UnsupportedMediaType("application/x-www-form-urlencoded").into());
        }
        let bytes = read_body(req, body).await?;
        // `+` (a space) is ASCII either way, so it needs no decoding to judge the UTF-8.
        let utf8 = |part: &[u8]| percent_encoding::percent_decode(part).decode_utf8().is_ok();
        if !bytes.split(|&b| b == b'&' || b == b'=').all(utf8) {
            return Err(ApiError::BadRequest("the form is not valid UTF-8".into()).into());
        }
        let value = serde_urlencoded::from_bytes(&bytes)
            .map_err(|error| ApiError::BadRequest(format!("the form does not fit: {error}")))?;
        Ok(Self(value))
    }
}
