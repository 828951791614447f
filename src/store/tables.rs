//! Table definitions, record encoding and the queries the rest of rackbox uses.
//!
//! Values are JSON (serde): readable with any redb tool, and tolerant of added fields with
//! defaults, so most schema growth needs no migration.

use redb::{ReadableTable, TableDefinition, TableHandle, WriteTransaction};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::StoreError;
use crate::model::{Event, Machine, Token, User};

/// Store-wide facts: `schema_version` (u32 LE), `next_event_seq` (u64 LE).
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// system_id -> Machine (JSON).
pub const MACHINES: TableDefinition<&str, &[u8]> = TableDefinition::new("machines");
/// MAC address -> system_id: boot lookups and MAC uniqueness.
pub const MACS: TableDefinition<&str, &str> = TableDefinition::new("macs");
/// Event seq -> Event (JSON).
pub const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// (system_id, event seq) -> (): a machine's history in order.
pub const MACHINE_EVENTS: TableDefinition<(&str, u64), ()> = TableDefinition::new("machine_events");
/// username -> User (JSON).
pub const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
/// token id -> Token (JSON).
pub const TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("tokens");
/// zone name -> NamedThing (JSON). Added in schema 2.
pub const ZONES: TableDefinition<&str, &[u8]> = TableDefinition::new("zones");
/// pool name -> NamedThing (JSON). Added in schema 2.
pub const POOLS: TableDefinition<&str, &[u8]> = TableDefinition::new("pools");
/// tag name -> NamedThing (JSON). Added in schema 2.
pub const TAGS: TableDefinition<&str, &[u8]> = TableDefinition::new("tags");
/// system_id -> the machine's latest testing run (`TestRun`). Made on its first write: a
/// database without it simply has no results yet, so it needs no schema version.
pub const TEST_RESULTS: TableDefinition<&str, &[u8]> = TableDefinition::new("test_results");

pub use crate::model::catalog::NamedThing;

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
pub fn get_in<T: DeserializeOwned>(
    tx: &WriteTransaction,
    table: TableDefinition<&str, &[u8]>,
    key: &str,
) -> Result<Option<T>, StoreError> {
    let t = tx.open_table(table)?;
    let value = t.get(key)?;
    match value {
        Some(v) => Ok(Some(decode(&format!("{}/{key}", table.name()), v.value())?)),
        None => Ok(None),
    }
}

pub fn put_in<T: Serialize>(
    tx: &WriteTransaction,
    table: TableDefinition<&str, &[u8]>,
    key: &str,
    value: &T,
) -> Result<(), StoreError> {
    let bytes = encode(value)?;
    tx.open_table(table)?.insert(key, bytes.as_slice())?;
    Ok(())
}

pub fn remove_in(
    tx: &WriteTransaction,
    table: TableDefinition<&str, &[u8]>,
    key: &str,
) -> Result<bool, StoreError> {
    Ok(tx.open_table(table)?.remove(key)?.is_some())
}

/// Reads one JSON record from a snapshot.
pub fn get<T: DeserializeOwned>(
    rx: &redb::ReadTransaction,
    table: TableDefinition<&str, &[u8]>,
    key: &str,
) -> Result<Option<T>, StoreError> {
    let t = match rx.open_table(table) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    match t.get(key)? {
        Some(v) => Ok(Some(decode(&format!("{}/{key}", table.name()), v.value())?)),
        None => Ok(None),
    }
}

/// Every record of a `&str`-keyed JSON table, in key order.
pub fn all<T: DeserializeOwned>(
    rx: &redb::ReadTransaction,
    table: TableDefinition<&str, &[u8]>,
) -> Result<Vec<T>, StoreError> {
    let t = match rx.open_table(table) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for item in t.iter()? {
        let (k, v) = item?;
        out.push(decode(
            &format!("{}/{}", table.name(), k.value()),
            v.value(),
        )?);
    }
    Ok(out)
}

/// Writes a machine and keeps the MAC index in step with its interfaces.
pub fn put_machine(
    tx: &WriteTransaction,
    machine: &Machine,
    old: Option<&Machine>,
) -> Result<(), StoreError> {
    let mut macs = tx.open_table(MACS)?;
    if let Some(old) = old {
        for i in &old.interfaces {
            macs.remove(i.mac.as_str())?;
        }
    }
    for i in &machine.interfaces {
        macs.insert(i.mac.as_str(), machine.system_id.as_str())?;
    }
    drop(macs);
    put_in(tx, MACHINES, &machine.system_id, machine)
}

/// Removes a machine, its MAC index entries, its history and its test results.
pub fn delete_machine(tx: &WriteTransaction, machine: &Machine) -> Result<(), StoreError> {
    let mut macs = tx.open_table(MACS)?;
    for i in &machine.interfaces {
        macs.remove(i.mac.as_str())?;
    }
    drop(macs);
    let mut index = tx.open_table(MACHINE_EVENTS)?;
    let seqs: Vec<u64> = index
        .range((machine.system_id.as_str(), 0)..=(machine.system_id.as_str(), u64::MAX))?
        .map(|item| item.map(|(k, _)| k.value().1))
        .collect::<Result<_, _>>()?;
    let mut events = tx.open_table(EVENTS)?;
    for seq in seqs {
        index.remove((machine.system_id.as_str(), seq))?;
        events.remove(seq)?;
    }
    drop(events);
    drop(index);
    remove_in(tx, TEST_RESULTS, &machine.system_id)?;
    remove_in(tx, MACHINES, &machine.system_id)?;
    Ok(())
}

/// Which machine owns a MAC, inside a write.
pub fn machine_by_mac_in(tx: &WriteTransaction, mac: &str) -> Result<Option<String>, StoreError> {
    let t = tx.open_table(MACS)?;
    Ok(t.get(mac)?.map(|v| v.value().to_string()))
}

/// Which machine owns a MAC, from a snapshot.
pub fn machine_by_mac(rx: &redb::ReadTransaction, mac: &str) -> Result<Option<String>, StoreError> {
    let t = match rx.open_table(MACS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    Ok(t.get(mac)?.map(|v| v.value().to_string()))
}

/// Appends an event, giving it the next store-wide sequence number.
pub fn append_event(tx: &WriteTransaction, mut event: Event) -> Result<Event, StoreError> {
    let mut meta = tx.open_table(META)?;
    let seq = match meta.get("next_event_seq")? {
        Some(v) => u64::from_le_bytes(v.value().try_into().unwrap_or([0; 8])).max(1),
        None => 1,
    };
    meta.insert("next_event_seq", (seq + 1).to_le_bytes().as_slice())?;
    drop(meta);
    event.seq = seq;
    let bytes = encode(&event)?;
    tx.open_table(EVENTS)?.insert(seq, bytes.as_slice())?;
    tx.open_table(MACHINE_EVENTS)?
        .insert((event.system_id.as_str(), seq), ())?;
    Ok(event)
}

/// A machine's events, newest first, at most `limit`, older than `before` when given.
pub fn machine_events(
    rx: &redb::ReadTransaction,
    system_id: &str,
    before: Option<u64>,
    limit: usize,
) -> Result<Vec<Event>, StoreError> {
    let (index, events) = match (rx.open_table(MACHINE_EVENTS), rx.open_table(EVENTS)) {
        (Ok(i), Ok(e)) => (i, e),
        _ => return Ok(Vec::new()),
    };
    let upper = before.map(|b| b.saturating_sub(1)).unwrap_or(u64::MAX);
    let mut out = Vec::new();
    for item in index.range((system_id, 0)..=(system_id, upper))?.rev() {
        let (k, _) = item?;
        let seq = k.value().1;
        if let Some(v) = events.get(seq)? {
            out.push(decode(&format!("events/{seq}"), v.value())?);
        }
        if out.len() >= limit {
            break;
        }
    }
    Ok(out)
}

/// All events, newest first, at most `limit`, older than `before` when given.
pub fn recent_events(
    rx: &redb::ReadTransaction,
    before: Option<u64>,
    limit: usize,
) -> Result<Vec<Event>, StoreError> {
    let events = match rx.open_table(EVENTS) {
        Ok(e) => e,
        Err(_) => return Ok(Vec::new()),
    };
    let upper = before.map(|b| b.saturating_sub(1)).unwrap_or(u64::MAX);
    let mut out = Vec::new();
    for item in events.range(0..=upper)?.rev().take(limit) {
        let (k, v) = item?;
        out.push(decode(&format!("events/{}", k.value()), v.value())?);
    }
    Ok(out)
}

pub fn get_user(rx: &redb::ReadTransaction, username: &str) -> Result<Option<User>, StoreError> {
    get(rx, USERS, username)
}

pub fn get_token(rx: &redb::ReadTransaction, id: &str) -> Result<Option<Token>, StoreError> {
    get(rx, TOKENS, id)
}

/// Every machine as a write transaction sees it (checks that must hold at the commit).
pub fn all_machines_in(tx: &WriteTransaction) -> Result<Vec<Machine>, StoreError> {
    let t = tx.open_table(MACHINES)?;
    let mut out = Vec::new();
    for item in t.iter()? {
        let (k, v) = item?;
        out.push(decode(&format!("machines/{}", k.value()), v.value())?);
    }
    Ok(out)
}

/// Every machine, from a snapshot (the service keeps an index built from this at start-up).
pub fn all_machines(rx: &redb::ReadTransaction) -> Result<Vec<Machine>, StoreError> {
    all(rx, MACHINES)
}
