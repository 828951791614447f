//! Leases as the store keeps them: one JSON record per address in the `dhcp_leases` table.
//!
//! Keyed by address, so two clients can never hold the same one even across interfaces. An ACK
//! is sent only after its lease is in this table and the transaction is on disk: a client that
//! saw an ACK keeps its address across a crash of the daemon.

use std::net::Ipv4Addr;

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::net::{Cidr, Mac};
use crate::store::StoreError;
use crate::store::tables::{decode, encode};

/// address (dotted quad) -> Lease (JSON).
pub(crate) const LEASES: TableDefinition<&str, &[u8]> = TableDefinition::new("dhcp_leases");

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
    pub ip: Ipv4Addr,
    /// Lower-case colon-separated MAC; None for a declined address.
    pub mac: Option<String>,
    pub state: LeaseState,
    /// Milliseconds since the Unix epoch.
    pub(crate) expires_ms: u64,
    #[serde(default)]
    pub(crate) hostname: Option<String>,
    /// When the record was last written.
    pub(crate) updated_ms: u64,
}

impl Lease {
    /// The MAC, parsed back.
    pub fn mac(&self) -> Option<Mac> {
        let text = self.mac.as_deref()?;
        let mut out = [0u8; 6];
        let mut parts = text.split(':');
        for byte in &mut out {
            *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
        }
        parts.next().is_none().then_some(Mac(out))
    }

    /// Held by its client right now.
    pub(crate) fn is_active(&self, now_ms: u64) -> bool {
        self.state == LeaseState::Active && self.expires_ms > now_ms
    }

    /// Out of the pool because of a decline, right now.
    pub(crate) fn is_quarantined(&self, now_ms: u64) -> bool {
        self.state == LeaseState::Declined && self.expires_ms > now_ms
    }
}

/// Every lease whose address is in one of `subnets`.
pub(crate) fn load(rx: &redb::ReadTransaction, subnets: &[Cidr]) -> Result<Vec<Lease>, StoreError> {
    let table = match rx.open_table(LEASES) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for item in table.iter()? {
        let (k, v) = item?;
        let lease: Lease = decode(&format!("dhcp_leases/{}", k.value()), v.value())?;
        if subnets.iter().any(|s| s.contains(lease.ip)) {
            out.push(lease);
        }
    }
    Ok(out)
}

/// Reads one lease inside a write (tests and tools).
pub fn get(rx: &redb::ReadTransaction, ip: Ipv4Addr) -> Result<Option<Lease>, StoreError> {
    let table = match rx.open_table(LEASES) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    match table.get(ip.to_string().as_str())? {
        Some(v) => Ok(Some(decode(&format!("dhcp_leases/{ip}"), v.value())?)),
        None => Ok(None),
    }
}

/// Writes a lease. Encodes before touching the table, so an error writes nothing.
pub(crate) fn put(tx: &WriteTransaction, lease: &Lease) -> Result<(), StoreError> {
    let bytes = encode(lease)?;
    tx.open_table(LEASES)?
        .insert(lease.ip.to_string().as_str(), bytes.as_slice())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_round_trip() {
        let l = Lease {
            ip: Ipv4Addr::new(192, 0, 2, 5),
            mac: Some("52:54:00:ab:cd:ef".into()),
            state: LeaseState::Active,
            expires_ms: 10,
            hostname: None,
            updated_ms: 1,
        };
        assert_eq!(l.mac(), Some(Mac([0x52, 0x54, 0, 0xab, 0xcd, 0xef])));
        assert!(l.is_active(9));
        assert!(!l.is_active(10));
        let bad = Lease {
            mac: Some("zz".into()),
            ..l
        };
        assert_eq!(bad.mac(), None);
    }
}
