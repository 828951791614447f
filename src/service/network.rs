//! Deployed machines' links (see [`crate::model::network`]): users set each interface's link
//! mode; a deploy picks the `auto` addresses inside its own write (so two deploys never pick
//! one address), and a release or a new commissioning gives them back. The store's address
//! index (`Tx::address_owner`) is the one record of which machine holds which address.

use std::net::Ipv4Addr;
use std::sync::Arc;

use super::{Principal, Service, ServiceError};
use crate::model::iprange::IpRange;
use crate::model::lifecycle::Action;
use crate::model::network::{Link, LinkMode, StaticRoute, SubnetPlan};
use crate::model::{Machine, Status};
use crate::store::Tx;

/// A link as a user asks for it; see [`Service::set_link`].
pub type LinkRequest = Link;

/// The plan of `cidr` with the API's IP ranges of that subnet added to what is unavailable.
fn plan_with_ranges(plan: &SubnetPlan, ranges: &[IpRange]) -> SubnetPlan {
    let mut p = plan.clone();
    p.unavailable.extend(
        ranges
            .iter()
            .filter(|r| r.subnet == plan.cidr)
            .map(|r| (r.start, r.end)),
    );
    p
}

fn plan_of<'a>(
    plans: &'a [SubnetPlan],
    cidr: Option<&str>,
) -> Result<&'a SubnetPlan, ServiceError> {
    let cidr = cidr.ok_or_else(|| ServiceError::Invalid("this link mode needs a subnet".into()))?;
    plans.iter().find(|p| p.cidr == cidr).ok_or_else(|| {
        ServiceError::Invalid(format!("subnet {cidr} is not a subnet of the boot network"))
    })
}

/// Whether someone other than `system_id` holds `ip`: another machine's link, or an active DHCP
/// lease.
fn held_by_other(
    tx: &Tx<'_>,
    ip: Ipv4Addr,
    system_id: &str,
    now: u64,
) -> Result<bool, ServiceError> {
    if tx.address_owner(ip)?.is_some_and(|o| o != system_id) {
        return Ok(true);
    }
    Ok(tx.lease_of(ip)?.is_some_and(|l| l.is_active(now)))
}

/// Inside the write that applies `action` to `m`: a deploy picks an address for each `auto`
/// link that has none; a release or a commissioning gives the `auto` addresses back.
pub(super) fn settle_addresses_in(
    tx: &Tx<'_>,
    m: &mut Machine,
    action: &Action,
    plans: &[SubnetPlan],
    now: u64,
) -> Result<(), ServiceError> {
    match action {
        Action::Deploy(_) => {
            let ranges = tx.ip_ranges()?;
            let mut picked: Vec<Ipv4Addr> = Vec::new();
            for iface in &mut m.interfaces {
                let Some(link) = iface.network.as_mut() else {
                    continue;
                };
                if link.mode != LinkMode::Auto || link.ip.is_some() {
                    continue;
                }
                let plan = plan_with_ranges(plan_of(plans, link.subnet.as_deref())?, &ranges);
                let mut error = None;
                let ip = plan.pick(|ip| {
                    picked.contains(&ip)
                        || held_by_other(tx, ip, &m.system_id, now).unwrap_or_else(|e| {
                            error.get_or_insert(e);
                            true
                        })
                });
                if let Some(e) = error {
                    return Err(e);
                }
                let ip = ip.ok_or_else(|| {
                    ServiceError::Conflict(format!(
                        "no free address for {} on {} outside the DHCP pool and the reserved ranges",
                        iface.name, plan.cidr
                    ))
                })?;
                picked.push(ip);
                link.ip = Some(ip);
            }
        }
        Action::Release { .. } | Action::Commission { .. } => {
            for link in m.interfaces.iter_mut().filter_map(|i| i.network.as_mut()) {
                if link.mode == LinkMode::Auto {
                    link.ip = None;
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// The statuses in which a machine's links may change: not while an OS is written, running or
/// being taken away.
fn links_may_change(status: Status) -> bool {
    !matches!(
        status,
        Status::Deploying
            | Status::Deployed
            | Status::Releasing
            | Status::DiskErasing
            | Status::RescueMode
            | Status::EnteringRescueMode
            | Status::ExitingRescueMode
    )
}

impl Service {
    /// What transitions apply with (see `transition::Rules`).
    pub(super) fn rules(&self) -> super::transition::Rules {
        super::transition::Rules {
            deadlines: self.deadlines,
            subnets: self.subnet_plans(),
        }
    }

    /// Sets the boot subnets links use (the daemon, once it knows its boot network).
    pub fn set_subnets(&self, plans: Vec<SubnetPlan>) {
        let mut s = self.subnets.write().unwrap_or_else(|e| e.into_inner());
        *s = Arc::new(plans);
    }

    /// The boot subnets links use.
    pub fn subnet_plans(&self) -> Arc<Vec<SubnetPlan>> {
        self.subnets
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Sets (or, with None, clears) the link of the machine's interface `iface` (its name).
    /// Admins may; so may the owner of an Allocated machine. A static address must be a host
    /// address of the subnet outside the DHCP pool and the reserved ranges, held by no one else.
    pub async fn set_link(
        &self,
        p: &Principal,
        system_id: &str,
        iface: &str,
        link: Option<LinkRequest>,
    ) -> Result<Machine, ServiceError> {
        let m = self.machine(p, system_id)?;
        let owner_may = m.status == Status::Allocated && m.owner.as_deref() == Some(&p.username);
        if !p.is_admin() && !owner_may {
            return Err(ServiceError::Forbidden(format!(
                "only admins, or the owner of an allocated machine, may change {system_id}'s links"
            )));
        }
        let plans = self.subnet_plans();
        let mut link = link;
        if let Some(l) = &mut link {
            match l.mode {
                LinkMode::Static => {
                    let plan = plan_of(&plans, l.subnet.as_deref())?;
                    let ip = l.ip.ok_or_else(|| {
                        ServiceError::Invalid("a static link needs an ip_address".into())
                    })?;
                    if let Some(why) = plan.refuses(ip) {
                        return Err(ServiceError::Invalid(why));
                    }
                }
                LinkMode::Auto => {
                    plan_of(&plans, l.subnet.as_deref())?;
                    l.ip = None;
                }
                LinkMode::Dhcp => {
                    if let Some(c) = l.subnet.as_deref() {
                        plan_of(&plans, Some(c))?;
                    }
                    l.ip = None;
                }
                LinkMode::LinkUp => {
                    l.subnet = None;
                    l.ip = None;
                }
            }
        }
        let name = iface.to_string();
        let what = match &link {
            Some(l) => format!("{name}: {}", l.mode.as_str()),
            None => format!("{name}: unlinked"),
        };
        let changed = self
            .modify_machine(system_id, &p.username, move |tx, m| {
                if !links_may_change(m.status) {
                    return Err(ServiceError::Conflict(format!(
                        "machine {} is {}: its links change when it is not deployed",
                        m.system_id, m.status
                    )));
                }
                if let Some(l) = &link
                    && let (LinkMode::Static, Some(ip)) = (l.mode, l.ip)
                {
                    let ranges = tx.ip_ranges()?;
                    let plan = plan_with_ranges(plan_of(&plans, l.subnet.as_deref())?, &ranges);
                    if let Some(why) = plan.refuses(ip) {
                        return Err(ServiceError::Invalid(why));
                    }
                    if held_by_other(tx, ip, &m.system_id, crate::model::ids::now_ms())? {
                        return Err(ServiceError::Conflict(format!(
                            "{ip} is held by another machine or a DHCP lease"
                        )));
                    }
                }
                let i = m
                    .interfaces
                    .iter_mut()
                    .find(|i| i.name == name)
                    .ok_or_else(|| ServiceError::not_found("interface", &name))?;
                i.network = link;
                Ok(super::Change::Event("link", what))
            })
            .await?;
        changed.ok_or_else(|| ServiceError::not_found("machine", system_id))
    }

    /// Every static route.
    pub fn static_routes(&self) -> Result<Vec<StaticRoute>, ServiceError> {
        Ok(self.store.read()?.static_routes()?)
    }

    /// Adds a static route (admins): machines deployed on `source` (a boot subnet) reach
    /// `destination` (any network, CIDR text checked by the caller) through `gateway`, an
    /// address of `source`. The same source and destination twice is refused.
    pub async fn create_static_route(
        &self,
        p: &Principal,
        source: String,
        destination: String,
        gateway: Ipv4Addr,
        metric: u32,
    ) -> Result<StaticRoute, ServiceError> {
        if !p.is_admin() {
            return Err(ServiceError::Forbidden(
                "only admins may add static routes".into(),
            ));
        }
        let plans = self.subnet_plans();
        let plan = plan_of(&plans, Some(&source))?;
        if !plan.holds(gateway) {
            return Err(ServiceError::Invalid(format!(
                "gateway_ip {gateway} is not an address of {source}"
            )));
        }
        if destination == source {
            return Err(ServiceError::Invalid(
                "a route's destination is another network than its source".into(),
            ));
        }
        let route = self
            .store
            .write(move |tx| -> Result<StaticRoute, ServiceError> {
                let all = tx.static_routes()?;
                if let Some(r) = all
                    .iter()
                    .find(|r| r.source == source && r.destination == destination)
                {
                    return Err(ServiceError::Conflict(format!(
                        "static route {} already leads from {source} to {destination}",
                        r.id
                    )));
                }
                let route = StaticRoute {
                    id: all.iter().map(|r| r.id).max().unwrap_or(0) + 1,
                    source,
                    destination,
                    gateway,
                    metric,
                };
                tx.put_static_route(&route)?;
                Ok(route)
            })
            .await?;
        tracing::info!(id = route.id, source = %route.source, destination = %route.destination, by = %p.username, "static route added");
        Ok(route)
    }

    /// Removes a static route (admins). Machines deployed already keep it until redeployed.
    pub async fn delete_static_route(&self, p: &Principal, id: u32) -> Result<(), ServiceError> {
        if !p.is_admin() {
            return Err(ServiceError::Forbidden(
                "only admins may remove static routes".into(),
            ));
        }
        self.store
            .write(move |tx| -> Result<(), ServiceError> {
                if !tx.remove_static_route(id)? {
                    return Err(ServiceError::not_found("static route", id.to_string()));
                }
                Ok(())
            })
            .await
    }
}
