//! The integration tests: the real `chat-server` binary on an ephemeral port and a temporary
//! database, driven over HTTP, SSE, raw sockets and a headless Chromium. One binary, so the
//! helpers in `common/` are built once and shared.

mod common;

mod access;
mod accounts;
mod attention_page;
mod browser;
mod changes;
mod changes_page;
mod connections;
mod content;
mod crash;
mod cursors;
mod deploy;
mod handoff;
mod hostile;
mod idempotency;
mod limits;
mod migration;
mod observability;
mod operations;
mod operator;
mod permalink;
mod postgres_log;
mod presence;
mod reads;
mod restart;
mod resume;
mod retention;
mod rooms_page;
mod routes;
mod search;
mod search_page;
mod sessions;
mod shutdown;
mod signup;
mod sites;
mod slow;
mod startup;
mod tabs;
mod tls;
mod transport;
mod trust_proxy;
mod writer;
