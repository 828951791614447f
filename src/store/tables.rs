//! Table definitions, record encoding and the generic JSON-table helpers under the typed
//! operations of [`super::ops`] (and under the image cache's own tables, through
//! [`super::Tx::raw`]).
//!
//! Values are JSON (serde): readable with any redb tool, and tolerant of added fields with
//! defaults, so most schema growth needs no migration.

use redb::{ReadableTable, TableDefinition, TableHandle, WriteTransaction};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::StoreError;
use crate::model::catalog::CatalogKind;

/// Store-wide facts: `schema_version` (u32 LE), `next_event_seq` (u64 LE).
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// system_id -> Machine (JSON).
pub const MACHINES: TableDefinition<&str, &[u8]> = TableDefinition::new("machines");
/// MAC address -> system_id: boot lookups and MAC uniqueness.
pub(crate) const MACS: TableDefinition<&str, &str> = TableDefinition::new("macs");
/// Event seq -> Event (JSON).
pub(crate) const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// (system_id, event seq) -> (): a machine's history in order.
pub(crate) const MACHINE_EVENTS: TableDefinition<(&str, u64), ()> =
    TableDefinition::new("machine_events");
/// username -> User (JSON).
pub(crate) const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
/// token id -> Token (JSON).
pub(crate) const TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("tokens");
/// zone name -> NamedThing (JSON). Added in schema 2.
pub(crate) const ZONES: TableDefinition<&str, &[u8]> = TableDefinition::new("zones");
/// pool name -> NamedThing (JSON). Added in schema 2.
pub(crate) const POOLS: TableDefinition<&str, &[u8]> = TableDefinition::new("pools");
/// tag name -> NamedThing (JSON). Added in schema 2.
pub(crate) const TAGS: TableDefinition<&str, &[u8]> = TableDefinition::new("tags");
/// system_id -> the machine's latest testing run (`TestRun`). Made on its first write: a
/// database without it simply has no results yet, so it needs no schema version.
pub(crate) const TEST_RESULTS: TableDefinition<&str, &[u8]> = TableDefinition::new("test_results");
/// `owner/filename` -> StoredFile (JSON). Made by the first upload, like `test_results`.
pub(crate) const FILES: TableDefinition<&str, &[u8]> = TableDefinition::new("maas_files");
/// DHCP leases: address (dotted quad) -> Lease (JSON). Made by the first lease.
pub(crate) const LEASES: TableDefinition<&str, &[u8]> = TableDefinition::new("dhcp_leases");
/// The appliance's own settings, one JSON record per key ("setup": the first-boot setup).
pub(crate) const APPLIANCE: TableDefinition<&str, &[u8]> = TableDefinition::new("appliance");
/// IPv4 address -> system_id of the machine whose interface link holds it (static, or picked
/// for an `auto` link while deployed); kept in step by `put_machine`.
pub(crate) const ADDRESSES: TableDefinition<&str, &str> = TableDefinition::new("link_addresses");
/// static route id (10 digits, zero-padded) -> route (JSON).
pub(crate) const STATIC_ROUTES: TableDefinition<&str, &[u8]> =
    TableDefinition::new("static_routes");
/// system_id -> device (JSON).
pub(crate) const DEVICES: TableDefinition<&str, &[u8]> = TableDefinition::new("devices");
/// IP range id (10 digits, zero-padded, so key order is number order) -> range (JSON).
pub(crate) const IP_RANGES: TableDefinition<&str, &[u8]> = TableDefinition::new("ip_ranges");

/// The table of a catalog kind.
pub fn catalog(kind: CatalogKind) -> TableDefinition<'static, &'static str, &'static [u8]> {
    match kind {
        CatalogKind::Zone => ZONES,
        CatalogKind::Pool => POOLS,
        CatalogKind::Tag => TAGS,
    }
}

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(StoreError::Encode)
}

pub fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Decode {
        what: what.to_string(),
        source,
    })
}

/// Reads one JSON record from a `&str`-keyed table of a write transaction.
pub(crate) fn get_in<T: DeserializeOwned>(
    tx: &WriteTransaction,
    table: TableDefinition<&str, &[u8]>,
    key: &str,
) -> Result<Option<T>, StoreError> {
    one(&tx.open_table(table)?, table.name(), key)
}

pub(crate) fn put_in<T: Serialize>(
    tx: &WriteTransaction,
    table: TableDefinition<&str, &[u8]>,
    key: &str,
    value: &T,
) -> Result<(), StoreError> {
    let bytes = encode(value)?;
    tx.open_table(table)?.insert(key, bytes.as_slice())?;
    Ok(())
}

pub(crate) fn remove_in(
    tx: &WriteTransaction,
    table: TableDefinition<&str, &[u8]>,
    key: &str,
) -> Result<bool, StoreError> {
    Ok(tx.open_table(table)?.remove(key)?.is_some())
}

/// Every record of a `&str`-keyed JSON table as a write transaction sees it, in key order.
pub(crate) fn all_in<T: DeserializeOwned>(
    tx: &WriteTransaction,
    table: TableDefinition<&str, &[u8]>,
) -> Result<Vec<T>, StoreError> {
    every(&tx.open_table(table)?, table.name())
}

/// Reads one JSON record from a snapshot.
pub fn get<T: DeserializeOwned>(
    rx: &redb::ReadTransaction,
    table: TableDefinition<&str, &[u8]>,
    key: &str,
) -> Result<Option<T>, StoreError> {
    match rx.open_table(table) {
        Ok(t) => one(&t, table.name(), key),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Every record of a `&str`-keyed JSON table, in key order.
pub fn all<T: DeserializeOwned>(
    rx: &redb::ReadTransaction,
    table: TableDefinition<&str, &[u8]>,
) -> Result<Vec<T>, StoreError> {
    match rx.open_table(table) {
        Ok(t) => every(&t, table.name()),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

fn one<T: DeserializeOwned>(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
    name: &str,
    key: &str,
) -> Result<Option<T>, StoreError> {
    match t.get(key)? {
        Some(v) => Ok(Some(decode(&format!("{name}/{key}"), v.value())?)),
        None => Ok(None),
    }
}

fn every<T: DeserializeOwned>(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
    name: &str,
) -> Result<Vec<T>, StoreError> {
    let mut out = Vec::new();
    for item in t.iter()? {
        let (k, v) = item?;
        out.push(decode(&format!("{name}/{}", k.value()), v.value())?);
    }
    Ok(out)
}
