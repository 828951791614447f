//! Prometheus text-format metrics: request counters here; store and machine figures read live.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;

/// Counters the HTTP room keeps.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Responses by status class: 1xx..5xx at index 1..5.
    pub responses: [AtomicU64; 6],
}

pub(crate) async fn count_requests(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let response = next.run(req).await;
    let class = usize::from(response.status().as_u16() / 100).min(5);
    state.metrics.responses[class].fetch_add(1, Ordering::Relaxed);
    response
}

/// Writes one metric family in Prometheus text format: its HELP and TYPE lines, then a sample
/// per (labels, value), the labels in braces or empty.
fn family(
    out: &mut String,
    name: &str,
    help: &str,
    kind: &str,
    samples: impl IntoIterator<Item = (String, u64)>,
) {
    // Writing to a String cannot fail.
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{labels} {value}");
    }
}

/// Renders every metric rackbox has.
pub(crate) fn render(state: &AppState) -> String {
    let mut out = String::new();
    let version = format!("{{version=\"{}\"}}", env!("CARGO_PKG_VERSION"));
    family(
        &mut out,
        "rackbox_build_info",
        "rackbox version.",
        "gauge",
        [(version, 1)],
    );
    let counts = state.service.status_counts();
    family(
        &mut out,
        "rackbox_machines",
        "Machines by status.",
        "gauge",
        crate::model::Status::ALL.into_iter().map(|status| {
            let n = counts.get(&status).copied().unwrap_or(0);
            (format!("{{status=\"{}\"}}", status.key()), n as u64)
        }),
    );
    let store = state.service.store_counters();
    family(
        &mut out,
        "rackbox_store_commits_total",
        "Durable transactions committed.",
        "counter",
        [(String::new(), store.commits)],
    );
    family(
        &mut out,
        "rackbox_store_writes_total",
        "Writes committed (several share a transaction).",
        "counter",
        [(String::new(), store.writes)],
    );
    // The image cache: its file system's space and the imports under way.
    if let Ok(space) = state.images.space() {
        family(
            &mut out,
            "rackbox_images_bytes_used",
            "Bytes of blobs and partial imports in the image cache.",
            "gauge",
            [(String::new(), space.used_bytes)],
        );
        family(
            &mut out,
            "rackbox_images_bytes_free",
            "Bytes imports may still use (available less the reserve).",
            "gauge",
            [(String::new(), space.free_bytes)],
        );
    }
    family(
        &mut out,
        "rackbox_images_imports_in_progress",
        "Image and boot resource imports running.",
        "gauge",
        [(String::new(), state.images.imports_running() as u64)],
    );
    family(
        &mut out,
        "rackbox_http_responses_total",
        "HTTP responses by status class.",
        "counter",
        (1..=5).map(|class| {
            let n = state.metrics.responses[class].load(Ordering::Relaxed);
            (format!("{{class=\"{class}xx\"}}"), n)
        }),
    );
    state.dhcp.render_prometheus(&mut out);
    state.tftp.render_prometheus(&mut out);
    out
}
