//! `chat-server`: parse the flags, start tracing, bind, and serve until SIGINT or SIGTERM.

use std::process::ExitCode;

use anyhow::Context;
use chat::config::Command;
use chat::operations;
use clap::Parser;

fn main() -> ExitCode {
    let config = chat::Config::parse();
    return_big_allocations_to_the_system();
    if let Some(command) = config.command.clone() {
        // An operator's command does one thing at a time, on one thread: an export of a
        // million messages takes half the CPU it takes on a pool of threads that wake each
        // other for every page.
        return match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime.block_on(operate(&config, command)),
            Err(error) => {
                eprintln!("chat-server: cannot start: {error}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("chat-server: cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    chat::telemetry::init(config.log_format);
    match runtime.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One readable line: what failed and why, down the chain of causes.
            eprintln!("chat-server: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs an operator's command on the database instead of serving: what it did on standard
/// output (an export writes the export there) and success, or one line on standard error and
/// failure.
async fn operate(config: &chat::Config, command: Command) -> ExitCode {
    let (name, outcome) = match command {
        Command::Admin { action } => ("admin", chat::admin::run(config, action, std::io::stdin().lock()).await),
        Command::Backup { out, force } => ("backup", operations::backup::run(&config.db, &out, force).await),
        Command::Export {
            room,
            since,
            after,
            format,
        } => {
            let filter = operations::export::Filter { room, since, after };
            let out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
            let exported = operations::export::run(&config.db, &filter, format, out).await;
            // The export itself is the output.
            ("export", exported.map(|_| String::new()))
        }
        Command::Import { file } => ("import", operations::import::run(&config.db, &file).await),
    };
    match outcome {
        Ok(done) => {
            if !done.is_empty() {
                println!("{done}");
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("chat-server {name}: {error:#}");
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
