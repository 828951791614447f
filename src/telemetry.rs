//! Logging: tracing to journald when rackbox runs under systemd with a journal, else to stderr.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the global subscriber. `target` is "auto", "journald" or "stderr"; RUST_LOG, when set,
/// overrides `level`. Returns which sink was chosen.
pub fn init(level: &str, target: &str) -> &'static str {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // systemd sets JOURNAL_STREAM when stdout/stderr go to the journal.
    let want_journal = match target {
        "journald" => true,
        "stderr" => false,
        _ => std::env::var_os("JOURNAL_STREAM").is_some(),
    };
    let journald = if want_journal {
        tracing_journald::layer().ok()
    } else {
        None
    };
    let sink = if journald.is_some() {
        "journald"
    } else {
        "stderr"
    };
    let fmt = journald
        .is_none()
        .then(|| tracing_subscriber::fmt::layer().with_writer(std::io::stderr));
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(journald)
        .try_init();
    sink
}
