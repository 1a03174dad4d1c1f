//! Logging: `RUST_LOG`-style filter (default `info`), plain text or JSON lines on stderr.

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// kube-client logs an ERROR of its own for every failed request ("failed with error …"),
/// every 1–2 s per PVC while a cluster is down. Each failure also reaches volsync-dr's code,
/// which says it once with what it means and counts it, so that line is off unless `RUST_LOG`
/// names kube_client.
const KUBE_CLIENT_REQUEST_ERRORS: &str = "kube_client::client::builder=off";

pub fn init(format: LogFormat) {
    let wanted = std::env::var("RUST_LOG").ok();
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,kube_runtime=warn"));
    if !wanted.is_some_and(|w| w.contains("kube_client"))
        && let Ok(directive) = KUBE_CLIENT_REQUEST_ERRORS.parse()
    {
        filter = filter.add_directive(directive);
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal, never into a log collector or file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    // A second init (tests) keeps the first subscriber; nothing to report.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
