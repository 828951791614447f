//! A DHCP lease as the boot network's servers record it and the API shows it: one record per
//! address.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// What an address is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LeaseState {
    /// Held by `mac` until `expires_ms`; after that it is free, but `mac` is preferred for it.
    Active,
    /// Given back by the client (DHCPRELEASE); free, `mac` preferred.
    Released,
    /// A client found it in use (DHCPDECLINE): nobody gets it until `expires_ms`.
    Declined,
}

/// One address's record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Lease {
    /// The address leased (the record's key).
    pub ip: Ipv4Addr,
    /// Lower-case colon-separated MAC; None for a declined address.
    pub mac: Option<String>,
    /// What the address is doing.
    pub state: LeaseState,
    /// When the lease (or the quarantine) ends, milliseconds since the Unix epoch.
    pub expires_ms: u64,
    /// The host name the client asked for (option 12), if it did.
    #[serde(default)]
    pub hostname: Option<String>,
    /// When the record was last written.
    pub updated_ms: u64,
}

impl Lease {
    /// Held by its client right now.
    pub fn is_active(&self, now_ms: u64) -> bool {
        self.state == LeaseState::Active && self.expires_ms > now_ms
    }

    /// Out of the pool because of a decline, right now.
    pub fn is_quarantined(&self, now_ms: u64) -> bool {
        self.state == LeaseState::Declined && self.expires_ms > now_ms
    }
}
