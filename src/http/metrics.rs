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

pub async fn count_requests(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let class = usize::from(response.status().as_u16() / 100).min(5);
    state.metrics.responses[class].fetch_add(1, Ordering::Relaxed);
    response
}

/// Renders every metric rackbox has.
pub fn render(state: &AppState) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP rackbox_build_info rackbox version.\n# TYPE rackbox_build_info gauge"
    );
    let _ = writeln!(
        out,
        "rackbox_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    let _ = writeln!(
        out,
        "# HELP rackbox_machines Machines by status.\n# TYPE rackbox_machines gauge"
    );
    let counts = state.service.status_counts();
    for status in crate::model::Status::ALL {
        let n = counts.get(&status).copied().unwrap_or(0);
        let _ = writeln!(out, "rackbox_machines{{status=\"{}\"}} {n}", status.key());
    }
    let store = state.service.store_counters();
    let _ = writeln!(
        out,
        "# HELP rackbox_store_commits_total Durable transactions committed.\n# TYPE rackbox_store_commits_total counter"
    );
    let _ = writeln!(out, "rackbox_store_commits_total {}", store.commits);
    let _ = writeln!(
        out,
        "# HELP rackbox_store_writes_total Writes committed (several share a transaction).\n# TYPE rackbox_store_writes_total counter"
    );
    let _ = writeln!(out, "rackbox_store_writes_total {}", store.writes);
    // The image cache: its file system's space and the imports under way.
    if let Ok(space) = state.images.space() {
        let _ = writeln!(
            out,
            "# HELP rackbox_images_bytes_used Bytes of blobs and partial imports in the image cache.\n# TYPE rackbox_images_bytes_used gauge\nrackbox_images_bytes_used {}",
            space.used_bytes
        );
        let _ = writeln!(
            out,
            "# HELP rackbox_images_bytes_free Bytes imports may still use (available less the reserve).\n# TYPE rackbox_images_bytes_free gauge\nrackbox_images_bytes_free {}",
            space.free_bytes
        );
    }
    let _ = writeln!(
        out,
        "# HELP rackbox_images_imports_in_progress Image and boot resource imports running.\n# TYPE rackbox_images_imports_in_progress gauge\nrackbox_images_imports_in_progress {}",
        state.images.imports_running()
    );
    let _ = writeln!(
        out,
        "# HELP rackbox_http_responses_total HTTP responses by status class.\n# TYPE rackbox_http_responses_total counter"
    );
    for class in 1..=5 {
        let _ = writeln!(
            out,
            "rackbox_http_responses_total{{class=\"{class}xx\"}} {}",
            state.metrics.responses[class].load(Ordering::Relaxed)
        );
    }
    state.dhcp.render_prometheus(&mut out);
    state.tftp.render_prometheus(&mut out);
    out
}
