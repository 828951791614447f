//! Machines: add, read, edit, delete, allocate, history. Actions and reports, which change a
//! machine's status, are in [`super::transition`].

use std::collections::BTreeSet;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::transition::{apply_in, read_machine};
use super::{Principal, Service, ServiceError};
use crate::model::catalog::CatalogKind;
use crate::model::constraints::{self, Constraints, NoMatch};
use crate::model::ids::{self, now_ms};
use crate::model::lifecycle::{self, Action, Transition};
use crate::model::{
    Event, Interface, Machine, PowerSettings, PowerState, PowerStatus, PowerType, Status,
};
use crate::store::Tx;

/// Makes the boot of a machine that is added network-booted (enlistment), from the system_id
/// the write picks.
pub(crate) type NewBoot = Box<dyn FnOnce(&str) -> crate::model::BootSession + Send>;

pub use crate::model::api::{ActionRequest, MachineEdit, NewMachine};

/// Which machines a list returns.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MachineFilter {
    /// Only machines in this status, by its key (`ready`, `failed_commissioning`).
    #[schemars(schema_with = "crate::model::schema::status_key")]
    pub status: Option<String>,
    /// Only machines allocated to this user.
    pub owner: Option<String>,
    /// Only machines in this zone.
    pub zone: Option<String>,
    /// Only machines in this pool.
    pub pool: Option<String>,
    /// Only machines with this tag.
    pub tag: Option<String>,
    /// Only the machine with this short host name.
    pub hostname: Option<String>,
    /// Only the machine with an interface of this MAC address (any common notation).
    #[schemars(schema_with = "crate::model::schema::mac_or_null")]
    pub mac: Option<String>,
    /// Only machines whose power is in this state.
    pub power_state: Option<crate::model::PowerState>,
    /// Free text: only machines whose hostname, system id, a MAC, owner, tag or description
    /// holds it (case-insensitive).
    pub q: Option<String>,
    /// Start after this system_id (the `next` of the previous page).
    pub after: Option<String>,
    /// Page size; 0 means everything. Default 100.
    pub limit: Option<usize>,
}

/// One page of a list.
#[derive(Clone, Debug, Serialize)]
pub struct Page<T> {
    /// The machines of this page, in system_id order.
    pub items: Vec<T>,
    /// How many match the filter in all.
    pub total: usize,
    /// Cursor for the next page, when there is one.
    pub next: Option<String>,
}

/// A copy of the power settings with secret values replaced by "********" (for non-admins).
pub fn mask_power(power: &PowerSettings) -> PowerSettings {
    let mut masked = power.clone();
    crate::power::mask_secrets(masked.power_type, &mut masked.parameters);
    masked
}

/// Checks a power type and its parameters against the driver's schema; the error names the
/// parameter. No power type means "not configured yet".
fn check_power(power: &PowerSettings) -> Result<(), ServiceError> {
    let Some(power_type) = power.power_type else {
        return Ok(());
    };
    crate::power::validate(power_type, &power.parameters)
        .map_err(|e| ServiceError::Invalid(e.to_string()))
}

pub(super) fn may_see(p: &Principal, m: &Machine) -> bool {
    p.is_admin() || m.owner.is_none() || m.owner.as_deref() == Some(p.username.as_str())
}

/// Refuses a zone or pool that does not exist (a tag is made by naming it: [`ensure_tags`]).
fn named_exists(tx: &Tx<'_>, kind: CatalogKind, name: &str) -> Result<(), ServiceError> {
    if tx.catalog_entry(kind, name)?.is_none() {
        return Err(ServiceError::Invalid(format!(
            "{} {name:?} does not exist",
            kind.name()
        )));
    }
    Ok(())
}

fn ensure_tags(tx: &Tx<'_>, tags: &BTreeSet<String>, now: u64) -> Result<(), ServiceError> {
    for tag in tags {
        tx.ensure_catalog(CatalogKind::Tag, tag, now)?;
    }
    Ok(())
}

/// Refuses interfaces whose MAC belongs to a machine or a device (other than `system_id`, the
/// one they are for when it is stored already): machines and devices share one MAC space.
pub(super) fn macs_free(
    tx: &Tx<'_>,
    interfaces: &[Interface],
    system_id: Option<&str>,
) -> Result<(), ServiceError> {
    let devices = tx.devices()?;
    for i in interfaces {
        if let Some(owner) = tx.mac_owner(&i.mac)?
            && Some(owner.as_str()) != system_id
        {
            return Err(ServiceError::Conflict(format!(
                "MAC {} already belongs to machine {owner}",
                i.mac
            )));
        }
        if let Some(d) = devices
            .iter()
            .find(|d| d.macs.contains(&i.mac) && Some(d.system_id.as_str()) != system_id)
        {
            return Err(ServiceError::Conflict(format!(
                "MAC {} already belongs to device {} ({})",
                i.mac, d.system_id, d.hostname
            )));
        }
    }
    Ok(())
}

pub(super) fn check_tags(tags: &[String]) -> Result<(), ServiceError> {
    for t in tags {
        ids::check_name("tag", t).map_err(ServiceError::Invalid)?;
    }
    Ok(())
}

impl Service {
    /// Adds a machine (admins). It starts New, and commissions at once when asked or when it has a
    /// power driver.
    pub async fn add_machine(
        &self,
        p: &Principal,
        new: NewMachine,
    ) -> Result<Machine, ServiceError> {
        self.add_machine_booted(p, new, None).await
    }

    /// [`Service::add_machine`], for a machine that is network-booted already: enlistment
    /// stores the new machine and the boot its agent enlisted from in one write, so that there
    /// is never a machine an enlisting agent made but could not speak for.
    pub(crate) async fn add_machine_booted(
        &self,
        p: &Principal,
        new: NewMachine,
        boot: Option<NewBoot>,
    ) -> Result<Machine, ServiceError> {
        if !p.is_admin() {
            return Err(ServiceError::Forbidden(
                "only admins may add machines".into(),
            ));
        }
        if new.mac_addresses.is_empty() {
            return Err(ServiceError::Invalid(
                "mac_addresses: at least one MAC address is required".into(),
            ));
        }
        let mut interfaces = Vec::new();
        for (i, mac) in new.mac_addresses.iter().enumerate() {
            let mac = ids::normalize_mac(mac)
                .map_err(|e| ServiceError::Invalid(format!("mac_addresses: {e}")))?;
            if interfaces.iter().any(|x: &Interface| x.mac == mac) {
                return Err(ServiceError::Invalid(format!(
                    "mac_addresses: {mac} is given twice"
                )));
            }
            interfaces.push(Interface {
                name: format!("eth{i}"),
                mac,
                boot: i == 0,
                network: None,
            });
        }
        if let Some(h) = &new.hostname {
            ids::check_hostname(h).map_err(ServiceError::Invalid)?;
            if self.index_snapshot().iter().any(|m| &m.hostname == h) {
                return Err(ServiceError::Conflict(format!("hostname {h} is taken")));
            }
        }
        check_tags(&new.tags)?;
        let power = PowerSettings {
            power_type: new.power_type,
            parameters: new.power_parameters.clone().unwrap_or_default(),
        };
        check_power(&power)?;
        let commission = new.commission.unwrap_or(power.remote().is_some());
        let rules = self.rules();
        let actor = p.username.clone();
        let said = if boot.is_some() {
            "enlisted by its agent"
        } else {
            "added"
        };
        let machine = self
            .store
            .write(move |tx| -> Result<_, ServiceError> {
                macs_free(tx, &interfaces, None)?;
                let zone = new.zone.clone().unwrap_or_else(|| "default".into());
                let pool = new.pool.clone().unwrap_or_else(|| "default".into());
                named_exists(tx, CatalogKind::Zone, &zone)?;
                named_exists(tx, CatalogKind::Pool, &pool)?;
                let mut system_id = ids::new_system_id();
                while tx.machine(&system_id)?.is_some() {
                    system_id = ids::new_system_id();
                }
                let now = now_ms();
                let tags: BTreeSet<String> = new.tags.iter().cloned().collect();
                ensure_tags(tx, &tags, now)?;
                let mut machine = Machine {
                    hostname: new
                        .hostname
                        .clone()
                        .unwrap_or_else(|| ids::default_hostname(&system_id)),
                    system_id,
                    domain: new.domain.clone().unwrap_or_else(|| "maas".into()),
                    status: Status::New,
                    status_message: said.into(),
                    previous_status: None,
                    generation: 1,
                    owner: None,
                    owner_data: Default::default(),
                    locked: false,
                    architecture: new
                        .architecture
                        .clone()
                        .unwrap_or_else(|| "amd64/generic".into()),
                    cpu_count: 0,
                    memory_mib: 0,
                    disks: Vec::new(),
                    interfaces,
                    inventory: None,
                    commissioned: false,
                    tags,
                    zone,
                    pool,
                    description: new.description.clone().unwrap_or_default(),
                    power,
                    power_state: PowerStatus::default(),
                    discovered_bmc: None,
                    deploy: None,
                    erase: None,
                    test_after_commission: false,
                    status_deadline_ms: None,
                    boot_session: None,
                    deploy_written: false,
                    owed_effect: None,
                    progress: None,
                    created_ms: now,
                    updated_ms: now,
                };
                if let Some(boot) = boot {
                    machine.boot_session = Some(boot(&machine.system_id));
                }
                let added = Event {
                    seq: 0,
                    system_id: machine.system_id.clone(),
                    at_ms: now,
                    actor: actor.clone(),
                    action: "add".into(),
                    from: Status::New,
                    to: Status::New,
                    message: said.into(),
                };
                tx.put_machine(&machine, None, [added])?;
                if commission {
                    let action = Action::Commission { run_tests: false };
                    let t = apply_in(tx, &machine, &action, &actor, None, now, &rules)?;
                    machine = t.machine;
                }
                Ok(machine)
            })
            .await?;
        self.index_put(machine.clone());
        self.wake_conductor(&machine);
        tracing::info!(system_id = %machine.system_id, hostname = %machine.hostname, by = %p.username, "machine added");
        Ok(machine)
    }

    /// Stores a whole machine record as given (fixtures, benchmarks, restoring a backup). Not
    /// reachable through any API: nothing a user does can claim a machine was commissioned.
    #[doc(hidden)]
    pub async fn insert_machine_record(&self, machine: Machine) -> Result<Machine, ServiceError> {
        let m = machine.clone();
        self.store
            .write(move |tx| -> Result<(), ServiceError> {
                macs_free(tx, &m.interfaces, Some(&m.system_id))?;
                let old = tx.machine(&m.system_id)?;
                ensure_tags(tx, &m.tags, m.updated_ms)?;
                tx.put_machine(&m, old.as_ref(), [])?;
                Ok(())
            })
            .await?;
        self.index_put(machine.clone());
        Ok(machine)
    }

    /// One machine, if `p` may see it.
    pub fn machine(&self, p: &Principal, system_id: &str) -> Result<Arc<Machine>, ServiceError> {
        match self.index_get(system_id) {
            Some(m) if may_see(p, &m) => Ok(m),
            _ => Err(ServiceError::not_found("machine", system_id)),
        }
    }

    /// The machine a MAC belongs to (boot and DHCP lookups).
    pub fn machine_by_mac(&self, mac: &str) -> Result<Option<Arc<Machine>>, ServiceError> {
        let owner = self.store.read()?.mac_owner(mac)?;
        Ok(owner.and_then(|id| self.index_get(&id)))
    }

    /// Machines `p` may see that match the filter, a page at a time, in system_id order.
    pub fn list_machines(
        &self,
        p: &Principal,
        f: &MachineFilter,
    ) -> Result<Page<Arc<Machine>>, ServiceError> {
        let status = match &f.status {
            Some(s) => Some(Status::parse(s).ok_or_else(|| {
                ServiceError::Invalid(format!("status {s:?} is not a machine status"))
            })?),
            None => None,
        };
        let mac = match &f.mac {
            Some(m) => Some(ids::normalize_mac(m).map_err(ServiceError::Invalid)?),
            None => None,
        };
        let limit = f.limit.unwrap_or(100);
        let text =
            f.q.as_deref()
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_lowercase);
        let matches = |m: &Machine| {
            may_see(p, m)
                && status.is_none_or(|s| m.status == s)
                && f.owner.as_ref().is_none_or(|o| m.owner.as_ref() == Some(o))
                && f.zone.as_ref().is_none_or(|z| &m.zone == z)
                && f.pool.as_ref().is_none_or(|x| &m.pool == x)
                && f.tag.as_ref().is_none_or(|t| m.tags.contains(t))
                && f.hostname.as_ref().is_none_or(|h| &m.hostname == h)
                && mac
                    .as_ref()
                    .is_none_or(|mac| m.interfaces.iter().any(|i| &i.mac == mac))
                && f.power_state.is_none_or(|s| m.power_state.state == s)
                && text.as_ref().is_none_or(|t| m.mentions(t))
        };
        let index = match self.index.read() {
            Ok(i) => i,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut total = 0;
        let mut items = Vec::new();
        let mut next = None;
        for (id, m) in index.iter() {
            if !matches(m) {
                continue;
            }
            total += 1;
            if f.after.as_ref().is_some_and(|a| id.as_str() <= a.as_str()) {
                continue;
            }
            if limit == 0 || items.len() < limit {
                items.push(m.clone());
            } else if next.is_none() {
                next = items.last().map(|m: &Arc<Machine>| m.system_id.clone());
            }
        }
        Ok(Page { items, total, next })
    }

    /// Edits a machine. Admins may change everything; an owner may change owner data.
    pub async fn edit_machine(
        &self,
        p: &Principal,
        system_id: &str,
        edit: MachineEdit,
    ) -> Result<Machine, ServiceError> {
        let current = self.machine(p, system_id)?;
        let only_owner_data = edit.hostname.is_none()
            && edit.domain.is_none()
            && edit.description.is_none()
            && edit.architecture.is_none()
            && edit.tags.is_none()
            && edit.add_tags.is_empty()
            && edit.remove_tags.is_empty()
            && edit.zone.is_none()
            && edit.pool.is_none()
            && edit.power_type.is_none()
            && edit.power_parameters.is_none();
        let owns = current.owner.as_deref() == Some(p.username.as_str());
        if !(p.is_admin() || (only_owner_data && owns)) {
            return Err(ServiceError::Forbidden(format!(
                "user {} may only change the owner data of machines they own",
                p.username
            )));
        }
        if let Some(h) = &edit.hostname {
            ids::check_hostname(h).map_err(ServiceError::Invalid)?;
            if self
                .index_snapshot()
                .iter()
                .any(|m| &m.hostname == h && m.system_id != system_id)
            {
                return Err(ServiceError::Conflict(format!("hostname {h} is taken")));
            }
        }
        for list in [
            edit.tags.as_deref().unwrap_or(&[]),
            &edit.add_tags,
            &edit.remove_tags,
        ] {
            check_tags(list)?;
        }
        let id = system_id.to_string();
        let actor = p.username.clone();
        let machine = self
            .store
            .write(move |tx| -> Result<Machine, ServiceError> {
                let old = read_machine(tx, &id, edit.generation)?;
                let changes_machine = !only_owner_data;
                if old.locked && changes_machine {
                    return Err(lifecycle::TransitionError::Locked {
                        system_id: id.clone(),
                        action: "edit",
                        status: old.status,
                    }
                    .into());
                }
                let mut m = old.clone();
                if let Some(h) = edit.hostname {
                    m.hostname = h;
                }
                if let Some(d) = edit.domain {
                    m.domain = d;
                }
                if let Some(d) = edit.description {
                    m.description = d;
                }
                if let Some(a) = edit.architecture {
                    m.architecture = a;
                }
                if let Some(tags) = edit.tags {
                    m.tags = tags.into_iter().collect();
                }
                m.tags.extend(edit.add_tags);
                for t in &edit.remove_tags {
                    m.tags.remove(t);
                }
                if let Some(z) = edit.zone {
                    named_exists(tx, CatalogKind::Zone, &z)?;
                    m.zone = z;
                }
                if let Some(x) = edit.pool {
                    named_exists(tx, CatalogKind::Pool, &x)?;
                    m.pool = x;
                }
                if edit.power_type.is_some() || edit.power_parameters.is_some() {
                    let power = PowerSettings {
                        power_type: edit.power_type.or(m.power.power_type),
                        parameters: edit.power_parameters.unwrap_or(m.power.parameters.clone()),
                    };
                    check_power(&power)?;
                    m.power = power;
                }
                if let Some(data) = edit.owner_data {
                    for (k, v) in data {
                        if v.is_empty() {
                            m.owner_data.remove(&k);
                        } else {
                            m.owner_data.insert(k, v);
                        }
                    }
                }
                let now = now_ms();
                ensure_tags(tx, &m.tags, now)?;
                m.generation += 1;
                m.updated_ms = now;
                let edited = Event {
                    seq: 0,
                    system_id: m.system_id.clone(),
                    at_ms: now,
                    actor,
                    action: "edit".into(),
                    from: m.status,
                    to: m.status,
                    message: "edited".into(),
                };
                tx.put_machine(&m, Some(&old), [edited])?;
                Ok(m)
            })
            .await?;
        self.index_put(machine.clone());
        Ok(machine)
    }

    /// Deletes a machine and its history (admins; refused while locked).
    pub async fn delete_machine(&self, p: &Principal, system_id: &str) -> Result<(), ServiceError> {
        if !p.is_admin() {
            self.machine(p, system_id)?;
            return Err(ServiceError::Forbidden(
                "only admins may delete machines".into(),
            ));
        }
        let id = system_id.to_string();
        self.store
            .write_essential(move |tx| -> Result<(), ServiceError> {
                let m = read_machine(tx, &id, None)?;
                if m.locked {
                    return Err(lifecycle::TransitionError::Locked {
                        system_id: id.clone(),
                        action: "delete",
                        status: m.status,
                    }
                    .into());
                }
                tx.delete_machine(&m)?;
                Ok(())
            })
            .await?;
        self.index_remove(system_id);
        tracing::info!(system_id, by = %p.username, "machine deleted");
        Ok(())
    }

    /// Allocates the smallest Ready machine that satisfies the constraints to `p`.
    /// Concurrent allocations never get the same machine: the choice is re-checked inside the write.
    pub async fn allocate(
        &self,
        p: &Principal,
        c: Constraints,
        comment: Option<String>,
    ) -> Result<Machine, ServiceError> {
        const ATTEMPTS: usize = 4;
        const CANDIDATES_PER_ATTEMPT: usize = 32;
        for _ in 0..ATTEMPTS {
            let ids: Vec<String> = {
                let snapshot = self.index_snapshot();
                let found = constraints::candidates(snapshot.iter().map(|m| m.as_ref()), &c)
                    .map_err(|e| match e {
                        NoMatch::Invalid(bad) => ServiceError::Invalid(bad.to_string()),
                        other => ServiceError::NoMatch(other),
                    })?;
                if c.dry_run {
                    return found
                        .first()
                        .map(|m| (*m).clone())
                        .ok_or(ServiceError::NoMatch(NoMatch::NoneReady));
                }
                found
                    .iter()
                    .take(CANDIDATES_PER_ATTEMPT)
                    .map(|m| m.system_id.clone())
                    .collect()
            };
            let c2 = c.clone();
            let owner = p.username.clone();
            let rules = self.rules();
            let comment = comment.clone();
            let chosen = self
                .store
                .write(move |tx| -> Result<Option<Transition>, ServiceError> {
                    for id in ids {
                        let Some(m) = tx.machine(&id)? else {
                            continue;
                        };
                        if m.status != Status::Ready
                            || m.locked
                            || !constraints::satisfies(&m, &c2).unwrap_or(false)
                        {
                            continue;
                        }
                        let action = Action::Allocate {
                            owner: owner.clone(),
                        };
                        let comment = comment.as_deref();
                        let t = apply_in(tx, &m, &action, &owner, comment, now_ms(), &rules)?;
                        return Ok(Some(t));
                    }
                    Ok(None)
                })
                .await?;
            if let Some(t) = chosen {
                tracing::info!(system_id = %t.machine.system_id, owner = %p.username, "machine allocated");
                self.index_put(t.machine.clone());
                return Ok(t.machine);
            }
        }
        Err(ServiceError::NoMatch(NoMatch::Unmatched {
            constraint: "availability".into(),
            candidates: 0,
        }))
    }

    /// Records the power state read from the machine's BMC.
    pub async fn set_power_state(
        &self,
        system_id: &str,
        state: PowerState,
        message: String,
    ) -> Result<(), ServiceError> {
        let result = self
            .modify_machine(system_id, "rackbox", move |_, m| {
                if m.power_state.state == state && m.power_state.message == message {
                    return Ok(None);
                }
                let was = m.power_state.state.as_str();
                let said = if message.is_empty() {
                    format!("power {was} -> {}", state.as_str())
                } else {
                    format!("power {was} -> {}: {message}", state.as_str())
                };
                m.power_state = PowerStatus {
                    state,
                    message,
                    checked_ms: Some(now_ms()),
                };
                Ok(Some(("power_state", said)))
            })
            .await;
        match result {
            // A machine deleted meanwhile has no power state to record.
            Ok(_) | Err(ServiceError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// A machine's history, newest first.
    pub fn machine_events(
        &self,
        p: &Principal,
        system_id: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Event>, ServiceError> {
        self.machine(p, system_id)?;
        Ok(self
            .store
            .read()?
            .machine_events(system_id, before, limit)?)
    }

    /// The sequence number of the newest event: the live stream's event ids, so a reconnect
    /// says where it was.
    pub fn last_event_seq(&self) -> Result<u64, ServiceError> {
        Ok(self.store.read()?.last_event_seq()?)
    }

    /// The machines that have events after sequence number `after`, or None when more than
    /// `limit` events came since (or `after` is beyond the newest: another store): then the
    /// caller reads everything again instead.
    pub fn changed_since(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Option<std::collections::BTreeSet<String>>, ServiceError> {
        let snapshot = self.store.read()?;
        if after > snapshot.last_event_seq()? {
            return Ok(None);
        }
        let events = snapshot.events_after(after, limit + 1)?;
        if events.len() > limit {
            return Ok(None);
        }
        Ok(Some(events.into_iter().map(|e| e.system_id).collect()))
    }

    /// Every machine's history (admins), newest first.
    pub fn recent_events(
        &self,
        p: &Principal,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Event>, ServiceError> {
        if !p.is_admin() {
            return Err(ServiceError::Forbidden(
                "only admins may read all events".into(),
            ));
        }
        Ok(self.store.read()?.recent_events(before, limit)?)
    }

    /// Machines whose in-progress status is past its deadline at `now`.
    pub fn overdue(&self, now: u64) -> Vec<(String, u64)> {
        self.index_snapshot()
            .iter()
            .filter(|m| m.status.is_in_progress() && m.status_deadline_ms.is_some_and(|d| d <= now))
            .map(|m| (m.system_id.clone(), m.generation))
            .collect()
    }
}

impl Service {
    /// Replaces the status message without changing the status (what a machine waits for now).
    pub async fn note(
        &self,
        system_id: &str,
        expected: Status,
        message: String,
    ) -> Result<(), ServiceError> {
        self.modify_machine(system_id, "rackbox", move |_, m| {
            if m.status != expected || m.status_message == message {
                return Ok(None);
            }
            m.status_message = message.clone();
            Ok(Some(("note", message)))
        })
        .await
        .map(|_| ())
    }

    /// Machines with a remote power driver, for the power-state sync.
    pub fn powered_machines(
        &self,
    ) -> Vec<(
        String,
        PowerType,
        serde_json::Map<String, serde_json::Value>,
    )> {
        self.index_snapshot()
            .iter()
            .filter_map(|m| {
                let power_type = m.power.remote()?;
                Some((m.system_id.clone(), power_type, m.power.parameters.clone()))
            })
            .collect()
    }
}
