//! The boot network: the interfaces rackbox serves and how, and the DHCP leases (searchable),
//! each with the machine that holds it.

use askama::Template;
use axum::extract::{Extension, Query, State};
use axum::response::Response;
use serde::Deserialize;

use super::Viewer;
use super::view::{self, Layout, Refusal, render};
use crate::config::BootMode;
use crate::http::AppState;
use crate::model::ids::now_ms;
use crate::model::lease::LeaseState;

#[derive(Deserialize)]
pub(super) struct LeaseQuery {
    #[serde(default)]
    q: String,
}

/// A lease as the page prints it.
pub(super) struct LeaseRow {
    ip: String,
    mac: String,
    state: &'static str,
    until: String,
    hostname: String,
    /// The machine with this MAC: (system id, host name).
    machine: Option<(String, String)>,
}

/// A boot interface as the page prints it.
pub(super) struct InterfaceRow {
    name: String,
    mode: &'static str,
    subnets: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "page/network.html")]
struct NetworkPage {
    layout: Option<Layout>,
    q: String,
    interfaces: Vec<InterfaceRow>,
    leases: Vec<LeaseRow>,
    total: usize,
}

pub(super) async fn show(
    State(s): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Query(query): Query<LeaseQuery>,
) -> Result<Response, Refusal> {
    let p = viewer.principal();
    let now = now_ms();
    let all = s.service.list_leases(p)?;
    let total = all.len();
    let needle = query.q.trim().to_lowercase();
    let leases = all
        .into_iter()
        .map(|l| {
            let machine = l.mac.as_deref().and_then(|mac| {
                s.service
                    .machine_by_mac(mac)
                    .ok()
                    .flatten()
                    .map(|m| (m.system_id.clone(), m.hostname.clone()))
            });
            LeaseRow {
                ip: l.ip.to_string(),
                mac: l.mac.clone().unwrap_or_default(),
                state: match l.state {
                    LeaseState::Active if l.is_active(now) => "held",
                    LeaseState::Active => "expired",
                    LeaseState::Released => "released",
                    LeaseState::Declined => "declined (quarantined)",
                },
                until: view::time(l.expires_ms),
                hostname: l.hostname.clone().unwrap_or_default(),
                machine,
            }
        })
        .filter(|row| {
            needle.is_empty()
                || [&row.ip, &row.mac, &row.hostname]
                    .iter()
                    .any(|f| f.to_lowercase().contains(&needle))
                || row
                    .machine
                    .as_ref()
                    .is_some_and(|(id, host)| id.contains(&needle) || host.contains(&needle))
        })
        .collect();
    let interfaces = s
        .boot
        .interfaces
        .iter()
        .map(|i| InterfaceRow {
            name: i.name.clone(),
            mode: match i.mode {
                BootMode::Managed => "managed: rackbox is the DHCP server",
                BootMode::Proxy => "proxy: another server gives addresses, rackbox the boot files",
                BootMode::Off => "off: nothing is answered",
            },
            subnets: i
                .subnets
                .iter()
                .map(|n| {
                    let ranges = n
                        .dynamic_ranges
                        .iter()
                        .map(|r| format!("{} – {}", r.start, r.end))
                        .collect::<Vec<_>>()
                        .join(", ");
                    (n.cidr.to_string(), ranges)
                })
                .collect(),
        })
        .collect();
    Ok(render(&NetworkPage {
        layout: Some(Layout::new(&viewer, "network")),
        q: query.q,
        interfaces,
        leases,
        total,
    }))
}
