//! IP ranges users add to the boot subnets through the API (MAAS's ipranges/): a dynamic range
//! widens a managed subnet's DHCP pool; a reserved range keeps addresses out of everything
//! rackbox hands out. They sit beside the ranges the config file sets, which only the file
//! changes; no two ranges of a subnet may overlap.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// What a range is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RangeKind {
    /// Part of the DHCP pool.
    Dynamic,
    /// Never handed out (static hosts, BMCs).
    Reserved,
}

impl RangeKind {
    /// The wire name (MAAS's `type`).
    pub fn as_str(self) -> &'static str {
        match self {
            RangeKind::Dynamic => "dynamic",
            RangeKind::Reserved => "reserved",
        }
    }

    /// Reads a wire name.
    pub fn parse(text: &str) -> Option<RangeKind> {
        match text {
            "dynamic" => Some(RangeKind::Dynamic),
            "reserved" => Some(RangeKind::Reserved),
            _ => None,
        }
    }
}

/// One range added through the API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpRange {
    /// Its number, from 1, never reused.
    pub id: u32,
    /// Pool or reserved.
    pub kind: RangeKind,
    /// First address.
    pub start: Ipv4Addr,
    /// Last address (inclusive).
    pub end: Ipv4Addr,
    /// The boot subnet it is in, as its CIDR text ("192.0.2.0/24").
    pub subnet: String,
    /// Free text.
    #[serde(default)]
    pub comment: String,
    /// Who added it.
    pub owner: String,
    /// When, milliseconds since the Unix epoch.
    pub created_ms: u64,
}

impl IpRange {
    /// Whether the range shares an address with `start..=end`.
    pub fn overlaps(&self, start: Ipv4Addr, end: Ipv4Addr) -> bool {
        self.start <= end && start <= self.end
    }
}
