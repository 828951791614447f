//! The overview: what needs attention first (failed machines, BMC errors), what is under way with
//! its progress, the machines by status, the boot network, the image cache's space, and the
//! latest events.

use std::sync::atomic::Ordering;

use askama::Template;
use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Response};

use super::Viewer;
use super::view::{self, Layout, MachineRow, Refusal, render};
use crate::config::BootMode;
use crate::http::AppState;
use crate::model::{PowerState, Status};
use crate::service::MachineFilter;

/// Rows in each of the overview's lists: the machines page has the rest.
const LIST_ROWS: usize = 20;

#[derive(Template)]
#[template(path = "page/overview.html")]
struct OverviewPage {
    layout: Option<Layout>,
    /// (status key, name, count, class), statuses with machines only.
    by_status: Vec<(&'static str, &'static str, usize, &'static str)>,
    total: usize,
    attention: Vec<MachineRow>,
    busy: Vec<MachineRow>,
    interfaces: Vec<(String, &'static str, String)>,
    dhcp: Vec<(&'static str, u64)>,
    tftp: Vec<(&'static str, u64)>,
    space: String,
    events: Vec<(String, String, String, String)>,
}

pub(super) async fn show(
    State(s): State<AppState>,
    Extension(viewer): Extension<Viewer>,
) -> Result<Response, Refusal> {
    let p = viewer.principal();
    // Until the first-boot setup is finished, `/` leads an admin through it.
    if p.is_admin() && super::setup::pending(&s) {
        return Ok(axum::response::Redirect::to("/setup").into_response());
    }
    let all = s.service.list_machines(
        p,
        &MachineFilter {
            limit: Some(0),
            ..MachineFilter::default()
        },
    )?;
    let mut by_status: Vec<(&'static str, &'static str, usize, &'static str)> = Status::ALL
        .iter()
        .map(|st| {
            let n = all.items.iter().filter(|m| m.status == *st).count();
            (st.key(), st.name(), n, view::status_class(*st))
        })
        .filter(|(_, _, n, _)| *n > 0)
        .collect();
    by_status.sort_by_key(|(_, _, n, _)| std::cmp::Reverse(*n));
    let attention = all
        .items
        .iter()
        .filter(|m| {
            view::status_class(m.status) == "bad" || m.power_state.state == PowerState::Error
        })
        .take(LIST_ROWS)
        .map(|m| MachineRow::of(m))
        .collect();
    let busy = all
        .items
        .iter()
        .filter(|m| m.status.is_in_progress())
        .take(LIST_ROWS)
        .map(|m| MachineRow::of(m))
        .collect();
    let interfaces = s
        .boot
        .interfaces
        .iter()
        .map(|i| {
            let mode = match i.mode {
                BootMode::Managed => "managed DHCP",
                BootMode::Proxy => "proxyDHCP",
                BootMode::Off => "off",
            };
            let subnets = i
                .subnets
                .iter()
                .map(|n| n.cidr.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            (i.name.clone(), mode, subnets)
        })
        .collect();
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let dhcp = vec![
        ("leases held", load(&s.dhcp.active_leases)),
        ("offers", load(&s.dhcp.offers)),
        ("acks", load(&s.dhcp.acks)),
        ("pool exhausted", load(&s.dhcp.pool_exhausted)),
        ("malformed, dropped", load(&s.dhcp.malformed)),
    ];
    let tftp = vec![
        ("transfers completed", load(&s.tftp.transfers_completed)),
        ("transfers failed", load(&s.tftp.transfers_failed)),
        ("files not found", load(&s.tftp.files_not_found)),
    ];
    let space = match s.images.space() {
        Ok(sp) => format!(
            "{} used, {} free of {}",
            view::bytes(sp.used_bytes),
            view::bytes(sp.free_bytes),
            view::bytes(sp.total_bytes)
        ),
        Err(e) => format!("unknown: {e}"),
    };
    let events = if p.is_admin() {
        s.service
            .recent_events(p, None, LIST_ROWS)?
            .into_iter()
            .map(|e| (view::time(e.at_ms), e.system_id, e.action, e.message))
            .collect()
    } else {
        Vec::new()
    };
    Ok(render(&OverviewPage {
        layout: Some(Layout::new(&viewer, "overview")),
        by_status,
        total: all.total,
        attention,
        busy,
        interfaces,
        dhcp,
        tftp,
        space,
        events,
    }))
}
