//! Devices (see [`crate::model::device`]): recorded by any user, changed by their owner or an
//! admin. Their MACs share one space with the machines' (see `machines::macs_free`).

use std::collections::BTreeSet;

use super::machines::{check_tags, macs_free};
use super::{Principal, Service, ServiceError};
use crate::model::Interface;
use crate::model::catalog::CatalogKind;
use crate::model::device::Device;
use crate::model::ids::{self, now_ms};
use crate::model::lease::Lease;

/// A new device, as an API gives it.
#[derive(Clone, Debug, Default)]
pub struct NewDevice {
    /// Short host name; made up from the id when None.
    pub hostname: Option<String>,
    /// DNS domain; "maas" when None.
    pub domain: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// Its MAC addresses, in any common notation; at least one.
    pub macs: Vec<String>,
    /// The machine it belongs to.
    pub parent: Option<String>,
    /// Availability zone; "default" when None.
    pub zone: Option<String>,
}

/// Changes to a device; None leaves a field alone.
#[derive(Clone, Debug, Default)]
pub struct DeviceEdit {
    /// New host name.
    pub hostname: Option<String>,
    /// New DNS domain.
    pub domain: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// All its MAC addresses, replacing the old ones.
    pub macs: Option<Vec<String>>,
    /// The machine it belongs to; Some(None) makes it stand alone.
    pub parent: Option<Option<String>>,
    /// New zone.
    pub zone: Option<String>,
    /// All its tags, replacing the old ones.
    pub tags: Option<Vec<String>>,
}

fn may_change(p: &Principal, d: &Device) -> Result<(), ServiceError> {
    if p.is_admin() || p.username == d.owner {
        Ok(())
    } else {
        Err(ServiceError::Forbidden(format!(
            "device {} belongs to {}",
            d.system_id, d.owner
        )))
    }
}

/// The MACs normalised, none given twice, at least one.
fn check_macs(macs: &[String]) -> Result<Vec<Interface>, ServiceError> {
    if macs.is_empty() {
        return Err(ServiceError::Invalid(
            "mac_addresses: a device needs at least one MAC address".into(),
        ));
    }
    let mut out: Vec<Interface> = Vec::new();
    for (i, m) in macs.iter().enumerate() {
        let mac = ids::normalize_mac(m)
            .map_err(|e| ServiceError::Invalid(format!("mac_addresses: {e}")))?;
        if out.iter().any(|x| x.mac == mac) {
            return Err(ServiceError::Invalid(format!(
                "mac_addresses: {mac} is given twice"
            )));
        }
        out.push(Interface {
            name: format!("eth{i}"),
            mac,
            boot: false,
            network: None,
        });
    }
    Ok(out)
}

impl Service {
    /// The devices `p` may see: all for admins, their own for users.
    pub fn list_devices(&self, p: &Principal) -> Result<Vec<Device>, ServiceError> {
        Ok(self
            .store
            .read()?
            .devices()?
            .into_iter()
            .filter(|d| p.is_admin() || d.owner == p.username)
            .collect())
    }

    /// One device `p` may see.
    pub fn device(&self, p: &Principal, system_id: &str) -> Result<Device, ServiceError> {
        self.store
            .read()?
            .device(system_id)?
            .filter(|d| p.is_admin() || d.owner == p.username)
            .ok_or_else(|| ServiceError::not_found("device", system_id))
    }

    /// The active DHCP leases of a device's MACs: the addresses it has on the boot network.
    pub fn device_leases(&self, d: &Device) -> Result<Vec<Lease>, ServiceError> {
        let now = now_ms();
        Ok(self
            .leases_where(|_| true)?
            .into_iter()
            .filter(|l| l.is_active(now) && l.mac.as_ref().is_some_and(|m| d.macs.contains(m)))
            .collect())
    }

    /// Records a device for `p`.
    pub async fn create_device(
        &self,
        p: &Principal,
        new: NewDevice,
    ) -> Result<Device, ServiceError> {
        let interfaces = check_macs(&new.macs)?;
        if let Some(h) = &new.hostname {
            ids::check_hostname(h).map_err(ServiceError::Invalid)?;
        }
        let owner = p.username.clone();
        let device = self
            .store
            .write(move |tx| -> Result<Device, ServiceError> {
                macs_free(tx, &interfaces, None)?;
                let zone = new.zone.unwrap_or_else(|| "default".into());
                if tx.catalog_entry(CatalogKind::Zone, &zone)?.is_none() {
                    return Err(ServiceError::Invalid(format!(
                        "zone {zone:?} does not exist"
                    )));
                }
                if let Some(parent) = &new.parent
                    && tx.machine(parent)?.is_none()
                {
                    return Err(ServiceError::Invalid(format!(
                        "parent: machine {parent} does not exist"
                    )));
                }
                let mut system_id = ids::new_system_id();
                while tx.machine(&system_id)?.is_some() || tx.device(&system_id)?.is_some() {
                    system_id = ids::new_system_id();
                }
                let hostname = new
                    .hostname
                    .unwrap_or_else(|| format!("device-{system_id}"));
                if tx.devices()?.iter().any(|d| d.hostname == hostname) {
                    return Err(ServiceError::Conflict(format!(
                        "hostname {hostname} is taken by another device"
                    )));
                }
                let device = Device {
                    system_id,
                    hostname,
                    domain: new.domain.unwrap_or_else(|| "maas".into()),
                    description: new.description.unwrap_or_default(),
                    macs: interfaces.into_iter().map(|i| i.mac).collect(),
                    parent: new.parent,
                    zone,
                    tags: BTreeSet::new(),
                    owner,
                    created_ms: now_ms(),
                };
                tx.put_device(&device)?;
                Ok(device)
            })
            .await?;
        tracing::info!(system_id = %device.system_id, hostname = %device.hostname, by = %p.username, "device recorded");
        Ok(device)
    }

    /// Changes a device (its owner or an admin).
    pub async fn edit_device(
        &self,
        p: &Principal,
        system_id: &str,
        edit: DeviceEdit,
    ) -> Result<Device, ServiceError> {
        let before = self.device(p, system_id)?;
        may_change(p, &before)?;
        if let Some(h) = &edit.hostname {
            ids::check_hostname(h).map_err(ServiceError::Invalid)?;
        }
        let interfaces = edit.macs.as_deref().map(check_macs).transpose()?;
        if let Some(tags) = &edit.tags {
            check_tags(tags)?;
        }
        let id = system_id.to_string();
        self.store
            .write(move |tx| -> Result<Device, ServiceError> {
                let mut d = tx
                    .device(&id)?
                    .ok_or_else(|| ServiceError::not_found("device", &id))?;
                if let Some(interfaces) = interfaces {
                    macs_free(tx, &interfaces, Some(&id))?;
                    d.macs = interfaces.into_iter().map(|i| i.mac).collect();
                }
                if let Some(h) = edit.hostname {
                    if tx
                        .devices()?
                        .iter()
                        .any(|o| o.hostname == h && o.system_id != id)
                    {
                        return Err(ServiceError::Conflict(format!(
                            "hostname {h} is taken by another device"
                        )));
                    }
                    d.hostname = h;
                }
                if let Some(zone) = edit.zone {
                    if tx.catalog_entry(CatalogKind::Zone, &zone)?.is_none() {
                        return Err(ServiceError::Invalid(format!(
                            "zone {zone:?} does not exist"
                        )));
                    }
                    d.zone = zone;
                }
                if let Some(parent) = edit.parent {
                    if let Some(m) = &parent
                        && tx.machine(m)?.is_none()
                    {
                        return Err(ServiceError::Invalid(format!(
                            "parent: machine {m} does not exist"
                        )));
                    }
                    d.parent = parent;
                }
                if let Some(domain) = edit.domain {
                    d.domain = domain;
                }
                if let Some(description) = edit.description {
                    d.description = description;
                }
                if let Some(tags) = edit.tags {
                    let now = now_ms();
                    for t in &tags {
                        tx.ensure_catalog(CatalogKind::Tag, t, now)?;
                    }
                    d.tags = tags.into_iter().collect();
                }
                tx.put_device(&d)?;
                Ok(d)
            })
            .await
    }

    /// Forgets a device (its owner or an admin).
    pub async fn delete_device(&self, p: &Principal, system_id: &str) -> Result<(), ServiceError> {
        let d = self.device(p, system_id)?;
        may_change(p, &d)?;
        let id = system_id.to_string();
        self.store
            .write(move |tx| -> Result<(), ServiceError> {
                tx.remove_device(&id)?;
                Ok(())
            })
            .await?;
        tracing::info!(system_id, by = %p.username, "device deleted");
        Ok(())
    }
}
