//! devices/: MAAS's non-deployable nodes (BMCs, switches, containers), backed by rackbox's
//! device records. A device's addresses are the boot network's active leases of its MACs.

use serde_json::{Value, json};

use super::{Ctx, MaasError, MaasResult, PREFIX, Reply, json, render};
use crate::model::device::Device;
use crate::service::{DeviceEdit, NewDevice};

/// MAAS's node type of a device.
const DEVICE: u8 = 1;

/// A device as MAAS shows it.
pub(crate) fn render(c: &Ctx, d: &Device) -> MaasResult<Value> {
    let vlan = super::resources::boot_vlan(c)?;
    let addresses: Vec<String> = c
        .state
        .service
        .device_leases(d)?
        .iter()
        .map(|l| l.ip.to_string())
        .collect();
    let interfaces: Vec<Value> = d
        .macs
        .iter()
        .enumerate()
        .map(|(i, mac)| {
            render::plain_interface(&d.system_id, i, &format!("eth{i}"), mac, &vlan, json!({}))
        })
        .collect();
    Ok(json!({
        "system_id": d.system_id,
        "hostname": d.hostname,
        "fqdn": d.fqdn(),
        "domain": render::domain(&d.domain, 0),
        "description": d.description,
        "owner": d.owner,
        "owner_data": {},
        "parent": d.parent,
        "node_type": DEVICE,
        "node_type_name": "Device",
        "interface_set": interfaces,
        "ip_addresses": addresses,
        "zone": render::zone(&d.zone, ""),
        "tag_names": d.tags.iter().collect::<Vec<_>>(),
        "address_ttl": null,
        "resource_uri": format!("{PREFIX}devices/{}/", d.system_id),
    }))
}

/// The devices the caller may see that match devices/'s filters (hostname, id, mac_address,
/// zone, domain), rendered.
pub(crate) fn filtered(c: &Ctx) -> MaasResult<Vec<Value>> {
    let p = c.principal()?;
    let hostnames = c.params.all("hostname")?;
    let ids = c.params.all("id")?;
    let macs = c
        .params
        .all("mac_address")?
        .iter()
        .map(|m| {
            crate::model::ids::normalize_mac(m)
                .map_err(|e| MaasError::bad_request(format!("mac_address: {e}")))
        })
        .collect::<MaasResult<Vec<String>>>()?;
    let zone = c.params.nonempty("zone")?;
    let domains = c.params.all("domain")?;
    let mut out = Vec::new();
    for d in c.state.service.list_devices(p)? {
        let keep = (hostnames.is_empty() || hostnames.contains(&d.hostname))
            && (ids.is_empty() || ids.contains(&d.system_id))
            && (macs.is_empty() || d.macs.iter().any(|m| macs.contains(m)))
            && zone.as_ref().is_none_or(|z| *z == d.zone)
            && (domains.is_empty() || domains.contains(&d.domain));
        if keep {
            out.push(render(c, &d)?);
        }
    }
    Ok(out)
}

/// GET devices/
pub(crate) async fn list(c: Ctx) -> Reply {
    json(Value::Array(filtered(&c)?))
}

/// POST devices/
pub(crate) async fn create(c: Ctx) -> Reply {
    let p = c.principal()?;
    let new = NewDevice {
        hostname: c.params.nonempty("hostname")?,
        domain: c.params.nonempty("domain")?,
        description: c.params.text("description")?,
        macs: c.params.all("mac_addresses")?,
        parent: c.params.nonempty("parent")?,
        zone: c.params.nonempty("zone")?,
    };
    let d = c.state.service.create_device(p, new).await?;
    json(render(&c, &d)?)
}

/// GET devices/{system_id}/
pub(crate) async fn read(c: Ctx) -> Reply {
    let p = c.principal()?;
    let d = c.state.service.device(p, c.arg("system_id"))?;
    json(render(&c, &d)?)
}

/// PUT devices/{system_id}/
pub(crate) async fn update(c: Ctx) -> Reply {
    let p = c.principal()?;
    let macs = c.params.all("mac_addresses")?;
    let parent = if c.params.has("parent") {
        Some(c.params.nonempty("parent")?)
    } else {
        None
    };
    let edit = DeviceEdit {
        hostname: c.params.nonempty("hostname")?,
        domain: c.params.nonempty("domain")?,
        description: c.params.text("description")?,
        macs: (!macs.is_empty()).then_some(macs),
        parent,
        zone: c.params.nonempty("zone")?,
        tags: None,
    };
    let d = c
        .state
        .service
        .edit_device(p, c.arg("system_id"), edit)
        .await?;
    json(render(&c, &d)?)
}

/// DELETE devices/{system_id}/
pub(crate) async fn delete(c: Ctx) -> Reply {
    let p = c.principal()?;
    c.state.service.delete_device(p, c.arg("system_id")).await?;
    super::no_content()
}
