//! `chat-server`: parse the flags, start tracing, bind, and serve until SIGINT or SIGTERM.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let config = chat::Config::parse();
    return_big_allocations_to_the_system();
    if let Some(chat::config::Command::Admin { action }) = config.command.clone() {
        return match chat::admin::run(&config, action, std::io::stdin().lock()).await {
            Ok(done) => {
                println!("{done}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("chat-server admin: {error:#}");
                ExitCode::FAILURE
            }
        };
    }
    chat::telemetry::init();
    match serve(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One readable line: what failed and why, down the chain of causes.
            eprintln!("chat-server: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: chat::Config) -> anyhow::Result<()> {
    let listener = chat::http::transport::net::listen(&config.bind)
        .await
        .with_context(|| format!("cannot listen on {}", config.bind))?;
    let addr = listener.local_addr()?;
    // One plain line on stdout once requests will be served: where to point a browser (and how
    // tests learn an ephemeral port).
    let scheme = if config.tls_cert.is_some() { "https" } else { "http" };
    let ready = move || println!("chat-server listening on {scheme}://{addr}");
    chat::run(config, listener, ready, shutdown_signal()).await
}

/// Makes large allocations always come from (and go back to) the system. A password hash takes
/// 19 MiB; glibc would otherwise raise its mmap threshold after the first one and keep every
/// later one in its heap for good, so a few sign-ins would hold on to 100 MiB or more.
fn return_big_allocations_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt takes the allocator's lock and only sets one of its parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// Resolves on the first SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received");
}
