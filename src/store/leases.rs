//! Leases in the `dhcp_leases` table: one JSON record per address.
//!
//! Keyed by address, so two clients can never hold the same one even across interfaces. An ACK
//! is sent only after its lease is in this table and the transaction is on disk: a client that
//! saw an ACK keeps its address across a crash of the daemon.

use std::net::Ipv4Addr;

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::StoreError;
use super::tables::{decode, encode};
use crate::model::lease::Lease;

/// address (dotted quad) -> Lease (JSON).
pub const LEASES: TableDefinition<&str, &[u8]> = TableDefinition::new("dhcp_leases");

/// Every lease whose address `wanted` takes.
pub fn load(
    rx: &redb::ReadTransaction,
    wanted: impl Fn(Ipv4Addr) -> bool,
) -> Result<Vec<Lease>, StoreError> {
    let table = match rx.open_table(LEASES) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for item in table.iter()? {
        let (k, v) = item?;
        let lease: Lease = decode(&format!("dhcp_leases/{}", k.value()), v.value())?;
        if wanted(lease.ip) {
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
pub fn put(tx: &WriteTransaction, lease: &Lease) -> Result<(), StoreError> {
    let bytes = encode(lease)?;
    tx.open_table(LEASES)?
        .insert(lease.ip.to_string().as_str(), bytes.as_slice())?;
    Ok(())
}
