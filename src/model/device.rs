//! Devices: things on the rack's networks that rackbox does not deploy (BMCs, switches, PDUs,
//! containers), recorded so their MACs are known and not enlisted as machines, as MAAS keeps
//! them.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// One device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// The device's id, from the same alphabet as machines' system ids.
    pub system_id: String,
    /// Short host name, unique among devices.
    pub hostname: String,
    /// DNS domain ("maas" unless given).
    pub domain: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Its MAC addresses, lower-case colon-separated; none belongs to a machine or another
    /// device.
    pub macs: Vec<String>,
    /// The machine it belongs to (a container or VM on it), if any.
    #[serde(default)]
    pub parent: Option<String>,
    /// Availability zone.
    pub zone: String,
    /// Tags.
    #[serde(default)]
    pub tags: BTreeSet<String>,
    /// Who recorded it; they and admins may change it.
    pub owner: String,
    /// When it was recorded, milliseconds since the Unix epoch.
    pub created_ms: u64,
}

impl Device {
    /// The fully-qualified name.
    pub fn fqdn(&self) -> String {
        format!("{}.{}", self.hostname, self.domain)
    }
}
