//! Leases in the `dhcp_leases` table ([`super::tables::LEASES`]): one JSON record per address.
//!
//! Keyed by address, so two clients can never hold the same one even across interfaces. An ACK
//! is sent only after its lease is in this table and the transaction is on disk: a client that
//! saw an ACK keeps its address across a crash of the daemon.

use std::net::Ipv4Addr;

use super::tables::{self, LEASES};
use super::{Snapshot, StoreError, Tx};
use crate::model::lease::Lease;

impl Tx<'_> {
    /// Writes a lease, in place of the one of its address. Encodes before touching the table,
    /// so an error writes nothing.
    pub fn put_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        tables::put_in(self.tx, LEASES, &lease.ip.to_string(), lease)
    }

    /// One lease, by address, as this write sees it.
    pub fn lease_of(&self, ip: Ipv4Addr) -> Result<Option<Lease>, StoreError> {
        tables::get_in(self.tx, LEASES, &ip.to_string())
    }
}

impl Snapshot {
    /// Every lease whose address `wanted` takes.
    pub fn leases(&self, wanted: impl Fn(Ipv4Addr) -> bool) -> Result<Vec<Lease>, StoreError> {
        let all: Vec<Lease> = tables::all(&self.rx, LEASES)?;
        Ok(all.into_iter().filter(|l| wanted(l.ip)).collect())
    }

    /// One lease, by address (tests and tools).
    pub fn lease(&self, ip: Ipv4Addr) -> Result<Option<Lease>, StoreError> {
        tables::get(&self.rx, LEASES, &ip.to_string())
    }
}
