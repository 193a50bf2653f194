//! Tracing: `RUST_LOG` decides what is logged (default `info` for us, `warn` for libraries).

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber, writing to stderr. Calling it twice is harmless.
pub fn init() {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("warn,chat=info,chat_server=info,poem=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
