//! The first-boot setup: what `/` leads an admin through on an appliance just plugged in at a
//! remote site, until they finish it. Four steps: the boot network (interface and mode, with the
//! foreign-DHCP probe run on the interface before managed DHCP may go on), the first image, the
//! first BMC (added and power-tested), an API key. Only the boot network is required, and it
//! cannot be skipped into an unsafe state: managed mode is refused while another DHCP server
//! answers there, and the setup cannot be finished before a boot network runs.
//!
//! A config file that names boot interfaces means the operator set the network up by hand: the
//! setup then does not ask for it (and `/` does not lead to the setup).
//!
//! The chosen network is kept in the store and applied the way the file's is, by a start of the
//! daemon: the page answers, then the daemon restarts in-process (`daemon::Restarter`) and the
//! page reloads itself (`<meta http-equiv=refresh>`, no script).

use askama::Template;
use axum::Form;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::Viewer;
use super::account::{NewToken, TokenForm};
use super::view::{Layout, Notice, Refusal, render};
use crate::config::BootMode;
use crate::dhcp::probe::{self, ProbeReport};
use crate::http::AppState;
use crate::model::{PowerState, PowerType};
use crate::service::{NewMachine, ServiceError};

/// An interface the boot network could use: one with a MAC and an IPv4 address.
pub(super) struct Candidate {
    name: String,
    mac: String,
    /// Its IPv4 addresses, "192.0.2.1/24, ...".
    addresses: String,
    /// The subnet of its first address and a suggested pool (the upper half, without the
    /// appliance's own address), for managed mode.
    cidr: String,
    range_start: String,
    range_end: String,
}

/// A machine with a BMC, as the BMC step lists it.
pub(super) struct BmcRow {
    system_id: String,
    hostname: String,
    power_type: String,
    power: String,
    /// The BMC answered a power query (the step is done).
    answered: bool,
}

/// A probe's result, ready to print.
pub(super) struct ProbeView {
    interface: String,
    clear: bool,
    lines: Vec<String>,
    waited: String,
}

impl ProbeView {
    fn of(r: &ProbeReport) -> ProbeView {
        ProbeView {
            interface: r.interface.clone(),
            clear: r.clear,
            lines: found(r),
            waited: format!("{:.1} s", r.waited_ms as f64 / 1000.0),
        }
    }
}

/// Each server a probe found, in one line.
fn found(r: &ProbeReport) -> Vec<String> {
    r.servers
        .iter()
        .map(|s| format!("{} ({}) offered {}", s.server, s.mac, s.offered))
        .collect()
}

#[derive(Template)]
#[template(path = "page/setup.html")]
struct SetupPage {
    layout: Option<Layout>,
    csrf: String,
    done: bool,
    /// The boot network is decided: named by the file, or chosen here (perhaps as none) and
    /// started.
    decided: bool,
    /// The config file names the boot network.
    from_file: bool,
    /// The boot interfaces running now: (name, mode).
    running: Vec<(String, &'static str)>,
    failed: Option<String>,
    candidates: Vec<Candidate>,
    probe: Option<ProbeView>,
    /// What the probe found when the running network was chosen.
    probe_found: Vec<String>,
    images: Vec<String>,
    bmcs: Vec<BmcRow>,
    /// Some BMC answered a power query.
    bmc_answered: bool,
    new_token: Option<NewToken>,
    notice: Option<Notice>,
}

/// The page that answers a saved boot network while the daemon restarts with it.
#[derive(Template)]
#[template(path = "page/setup_applying.html")]
struct ApplyingPage {
    layout: Option<Layout>,
    interface: String,
    mode: &'static str,
    warning: Option<String>,
}

fn mode_name(mode: BootMode) -> &'static str {
    match mode {
        BootMode::Managed => "managed",
        BootMode::Proxy => "proxy",
        BootMode::Off => "off",
    }
}

/// Whether the setup still leads `/`: not finished, and the config file does not name the boot
/// network.
pub(super) fn pending(s: &AppState) -> bool {
    !s.boot_state.from_file
        && s.service
            .setup_record()
            .map(|r| r.done_ms.is_none())
            .unwrap_or(false)
}

/// Whether the boot network is decided: the file names it, or the setup chose one (or chose
/// none) and what it chose started. A choice saved but not yet applied (the daemon restarting)
/// is not decided yet.
fn boot_decided(s: &AppState, record: &crate::model::setup::SetupRecord) -> bool {
    let chosen = record
        .boot_interfaces_toml
        .as_deref()
        .map(|toml| {
            crate::config::Config::default()
                .with_setup_boot(toml)
                .is_ok_and(|c| c.boot.interfaces.len() == s.boot.interfaces.len())
        })
        .unwrap_or(false);
    s.boot_state.from_file || (s.boot_state.failed.is_none() && chosen)
}

/// The interfaces the boot network could use, with a suggested pool for each.
fn candidates() -> Vec<Candidate> {
    let list = match probe::boot_candidates() {
        Ok(list) => list,
        Err(error) => {
            tracing::warn!(%error, "the setup could not list the interfaces");
            return Vec::new();
        }
    };
    list.into_iter()
        .map(|c| Candidate {
            addresses: c
                .addresses
                .iter()
                .map(|(a, p)| format!("{a}/{p}"))
                .collect::<Vec<_>>()
                .join(", "),
            mac: c.mac,
            name: c.name,
            cidr: c.pool.0.to_string(),
            range_start: c.pool.1.to_string(),
            range_end: c.pool.2.to_string(),
        })
        .collect()
}

fn setup_page(
    s: &AppState,
    viewer: &Viewer,
    probe: Option<ProbeView>,
    new_token: Option<NewToken>,
    notice: Option<Notice>,
) -> Result<SetupPage, Refusal> {
    let p = viewer.principal();
    let record = s.service.setup_record()?;
    let images = s
        .images
        .list_images()
        .map(|l| l.images.into_iter().map(|v| v.image.name).collect())
        .unwrap_or_default();
    let machines = s.service.list_machines(
        p,
        &crate::service::MachineFilter {
            limit: Some(0),
            ..Default::default()
        },
    )?;
    let bmcs = machines
        .items
        .iter()
        .filter(|m| m.power.power_type.is_some_and(|t| t != PowerType::Manual))
        .take(20)
        .map(|m| BmcRow {
            system_id: m.system_id.clone(),
            hostname: m.hostname.clone(),
            power_type: m
                .power
                .power_type
                .map(|t| t.as_str().to_string())
                .unwrap_or_default(),
            power: match m.power_state.message.as_str() {
                "" => m.power_state.state.as_str().to_string(),
                why => format!("{}: {why}", m.power_state.state.as_str()),
            },
            answered: matches!(m.power_state.state, PowerState::On | PowerState::Off),
        })
        .collect::<Vec<BmcRow>>();
    Ok(SetupPage {
        bmc_answered: bmcs.iter().any(|b| b.answered),
        layout: Some(Layout::new(viewer, "setup")),
        csrf: viewer.session.csrf_token.clone(),
        done: record.done_ms.is_some(),
        decided: boot_decided(s, &record),
        from_file: s.boot_state.from_file,
        running: s
            .boot
            .interfaces
            .iter()
            .filter(|i| i.mode != BootMode::Off)
            .map(|i| (i.name.clone(), mode_name(i.mode)))
            .collect(),
        failed: s.boot_state.failed.clone(),
        candidates: candidates(),
        probe,
        probe_found: record.probe_found,
        images,
        bmcs,
        new_token,
        notice,
    })
}

/// The setup page again with why a step was refused, under the refusal's status.
fn refused(s: &AppState, viewer: &Viewer, title: &str, e: Refusal) -> Result<Response, Refusal> {
    let page = setup_page(
        s,
        viewer,
        None,
        None,
        Some(Notice::error(title, vec![e.message.clone()])),
    )?;
    Ok((e.status, render(&page)).into_response())
}

pub(super) async fn show(
    State(s): State<AppState>,
    Extension(viewer): Extension<Viewer>,
) -> Result<Response, Refusal> {
    Ok(render(&setup_page(&s, &viewer, None, None, None)?))
}

#[derive(Deserialize)]
pub(super) struct ProbeForm {
    interface: String,
}

/// Runs the foreign-DHCP probe on an interface and shows what answered.
pub(super) async fn probe(
    State(s): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Form(f): Form<ProbeForm>,
) -> Result<Response, Refusal> {
    match probe::probe(f.interface.trim(), probe::DEFAULT_WAIT).await {
        Ok(report) => Ok(render(&setup_page(
            &s,
            &viewer,
            Some(ProbeView::of(&report)),
            None,
            None,
        )?)),
        Err(e) => refused(
            &s,
            &viewer,
            "The probe did not run",
            ServiceError::from(e).into(),
        ),
    }
}

#[derive(Deserialize)]
pub(super) struct BootForm {
    interface: String,
    mode: String,
    #[serde(default)]
    cidr: String,
    #[serde(default)]
    range_start: String,
    #[serde(default)]
    range_end: String,
    #[serde(default)]
    gateway: String,
    #[serde(default)]
    dns: String,
}

impl BootForm {
    /// The `[[boot.interfaces]]` TOML of the choice (toml writes it: nothing is pasted in).
    fn interfaces_toml(&self, mode: BootMode) -> Result<String, String> {
        let mut iface = toml::Table::new();
        iface.insert("name".into(), self.interface.trim().into());
        iface.insert("mode".into(), mode_name(mode).into());
        if mode == BootMode::Managed {
            let mut subnet = toml::Table::new();
            subnet.insert("cidr".into(), self.cidr.trim().into());
            let mut range = toml::Table::new();
            range.insert("start".into(), self.range_start.trim().into());
            range.insert("end".into(), self.range_end.trim().into());
            subnet.insert(
                "dynamic_ranges".into(),
                toml::Value::Array(vec![range.into()]),
            );
            if !self.gateway.trim().is_empty() {
                subnet.insert("gateway".into(), self.gateway.trim().into());
            }
            let dns: Vec<toml::Value> = self
                .dns
                .split([',', ' '])
                .filter(|d| !d.is_empty())
                .map(|d| d.into())
                .collect();
            if !dns.is_empty() {
                subnet.insert("dns_servers".into(), toml::Value::Array(dns));
            }
            iface.insert("subnets".into(), toml::Value::Array(vec![subnet.into()]));
        }
        let mut boot = toml::Table::new();
        boot.insert("interfaces".into(), toml::Value::Array(vec![iface.into()]));
        let mut doc = toml::Table::new();
        doc.insert("boot".into(), boot.into());
        toml::to_string(&doc).map_err(|e| e.to_string())
    }
}

fn bad(message: impl Into<String>) -> Refusal {
    Refusal {
        status: StatusCode::BAD_REQUEST,
        message: message.into(),
    }
}

/// Checks the choice, probes the interface, keeps the choice and restarts the daemon with it.
pub(super) async fn choose_boot(
    State(s): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Form(f): Form<BootForm>,
) -> Result<Response, Refusal> {
    let title = "The boot network was not changed";
    match choose(&s, &viewer, &f).await {
        Ok(page) => Ok(render(&page)),
        Err(e) => refused(&s, &viewer, title, e),
    }
}

async fn choose(s: &AppState, viewer: &Viewer, f: &BootForm) -> Result<ApplyingPage, Refusal> {
    if s.boot_state.from_file {
        return Err(Refusal {
            status: StatusCode::CONFLICT,
            message: "the config file names the boot interfaces: change them there".into(),
        });
    }
    let mode = match f.mode.as_str() {
        "managed" => BootMode::Managed,
        "proxy" => BootMode::Proxy,
        // Nothing is answered anywhere: safe, and nothing to probe or restart.
        "off" => {
            let off = "[boot]\ninterfaces = []\n".to_string();
            s.service
                .choose_boot_network(viewer.principal(), off, Vec::new())
                .await?;
            if !s.boot.interfaces.is_empty() {
                s.restarter.restart();
            }
            return Ok(ApplyingPage {
                layout: Some(Layout::new(viewer, "setup")),
                interface: "no interface".into(),
                mode: "off",
                warning: Some(
                    "machines cannot network-boot from this appliance until a boot network is \
                     chosen here"
                        .into(),
                ),
            });
        }
        other => {
            return Err(bad(format!("mode {other:?} must be managed, proxy or off")));
        }
    };
    let name = f.interface.trim();
    if mode == BootMode::Managed {
        probe::check_managed_pool(name, &f.cidr, &f.range_start, &f.range_end).map_err(bad)?;
    }
    let toml = f.interfaces_toml(mode).map_err(bad)?;
    // The file's own checks (ranges inside the subnet, sizes, addresses), naming the key.
    crate::config::Config::default()
        .with_setup_boot(&toml)
        .map_err(|e| bad(e.to_string()))?;
    // The probe, now: managed DHCP beside another server is what must never happen.
    let report = probe::probe(name, probe::DEFAULT_WAIT)
        .await
        .map_err(|e| Refusal::from(ServiceError::from(e)))?;
    if mode == BootMode::Managed && !report.clear {
        return Err(Refusal {
            status: StatusCode::CONFLICT,
            message: format!(
                "another DHCP server answers on {name}: {}. Managed DHCP there would hand out \
                 addresses against it: choose proxy mode (rackbox then adds only the boot \
                 information to its answers), or switch that server off and try again",
                found(&report).join("; ")
            ),
        });
    }
    let warning = (mode == BootMode::Proxy && report.clear).then(|| {
        format!(
            "no DHCP server answered on {name}: in proxy mode machines get their addresses \
             from another server, so they will not boot until one answers there"
        )
    });
    s.service
        .choose_boot_network(viewer.principal(), toml, found(&report))
        .await?;
    s.restarter.restart();
    Ok(ApplyingPage {
        layout: Some(Layout::new(viewer, "setup")),
        interface: name.to_string(),
        mode: mode_name(mode),
        warning,
    })
}

#[derive(Deserialize)]
pub(super) struct BmcForm {
    hostname: String,
    mac: String,
    power_type: String,
    address: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: String,
}

/// Adds a machine with its BMC (not commissioned yet) and asks the BMC for its power state:
/// the answer, or the BMC's error, is what the step shows.
pub(super) async fn add_bmc(
    State(s): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Form(f): Form<BmcForm>,
) -> Result<Response, Refusal> {
    let p = viewer.principal();
    let power_type: PowerType = match f.power_type.parse() {
        Ok(t @ (PowerType::Ipmi | PowerType::Redfish)) => t,
        _ => {
            return refused(
                &s,
                &viewer,
                "The BMC was not added",
                bad("choose IPMI or Redfish"),
            );
        }
    };
    let mut params = serde_json::Map::new();
    let mut address = f.address.trim();
    // An IPMI BMC on another UDP port than 623: "host:port".
    if power_type == PowerType::Ipmi
        && let Some((host, port)) = address.rsplit_once(':')
        && !host.contains(':')
        && let Ok(port) = port.parse::<u16>()
    {
        params.insert("power_port".into(), port.into());
        address = host;
    }
    for (key, value) in [
        ("power_address", address),
        ("power_user", f.user.trim()),
        ("power_pass", f.password.as_str()),
    ] {
        params.insert(key.into(), value.into());
    }
    let new = NewMachine {
        hostname: Some(f.hostname.trim().to_string()).filter(|h| !h.is_empty()),
        mac_addresses: vec![f.mac.trim().to_string()],
        power_type: Some(power_type),
        power_parameters: Some(params),
        commission: Some(false),
        ..NewMachine::default()
    };
    let m = match s.service.add_machine(p, new).await {
        Ok(m) => m,
        Err(e) => return refused(&s, &viewer, "The BMC was not added", e.into()),
    };
    let notice = match s.service.power_query(p, &m.system_id).await {
        Ok(state) => Notice {
            error: false,
            title: format!(
                "{}: the BMC answers, power is {}",
                m.hostname,
                state.as_str()
            ),
            lines: vec!["Commission it from its page when you are ready.".into()],
        },
        Err(e) => Notice::error(
            &format!("{}: added, but the BMC did not answer", m.hostname),
            vec![e.to_string()],
        ),
    };
    let status = if notice.error {
        StatusCode::BAD_GATEWAY
    } else {
        StatusCode::OK
    };
    let page = setup_page(&s, &viewer, None, None, Some(notice))?;
    Ok((status, render(&page)).into_response())
}

/// Makes the admin's first API key, shown this once.
pub(super) async fn make_token(
    State(s): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Form(f): Form<TokenForm>,
) -> Result<Response, Refusal> {
    match f.make(&s, &viewer).await {
        Ok(made) => {
            let page = setup_page(&s, &viewer, None, Some(made), None)?;
            Ok((StatusCode::CREATED, render(&page)).into_response())
        }
        Err(e) => refused(&s, &viewer, "No key was made", e.into()),
    }
}

/// Finishes the setup (refused while no boot network runs); the overview follows.
pub(super) async fn finish(
    State(s): State<AppState>,
    Extension(viewer): Extension<Viewer>,
) -> Result<Response, Refusal> {
    let decided = s.service.setup_record().is_ok_and(|r| boot_decided(&s, &r));
    match s.service.finish_setup(viewer.principal(), decided).await {
        Ok(()) => Ok(Redirect::to("/").into_response()),
        Err(e) => refused(&s, &viewer, "The setup is not finished", e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_choice_is_written_as_the_config_files_own_toml() {
        let f = BootForm {
            // An interface every machine has: the file's checks want it to exist.
            interface: "lo".into(),
            mode: "managed".into(),
            cidr: "192.0.2.0/24".into(),
            range_start: "192.0.2.100".into(),
            range_end: "192.0.2.110".into(),
            gateway: "192.0.2.1".into(),
            dns: "192.0.2.53, 192.0.2.54".into(),
        };
        let toml = f.interfaces_toml(BootMode::Managed).expect("TOML");
        let config = crate::config::Config::default()
            .with_setup_boot(&toml)
            .expect("the file's parser takes it");
        let iface = &config.boot.interfaces[0];
        assert_eq!((iface.name.as_str(), iface.mode), ("lo", BootMode::Managed));
        assert_eq!(iface.subnets[0].dns_servers.len(), 2);
        // A name that would break out of a TOML string is only a strange name.
        let evil = BootForm {
            interface: "lo\"\nmode = \"off".into(),
            ..f
        };
        let toml = evil.interfaces_toml(BootMode::Proxy).expect("TOML");
        let parsed: toml::Table = toml::from_str(&toml).expect("still one table");
        assert_eq!(
            parsed["boot"]["interfaces"][0]["mode"].as_str(),
            Some("proxy")
        );
    }
}
