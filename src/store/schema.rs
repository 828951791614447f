//! Schema versions and migrations. redb has none built in: the version lives in the `meta` table,
//! a database from a newer rackbox is refused, and an older one is migrated step by step inside
//! one transaction (so a crash mid-migration leaves the old version intact).

use std::path::Path;

use redb::{Database, Durability, ReadableDatabase, WriteTransaction};

use super::tables::{EVENTS, MACHINE_EVENTS, MACHINES, MACS, META, TAGS, TOKENS, USERS};
use super::{StoreError, Tx};
use crate::model::Machine;
use crate::model::catalog::{CatalogKind, NamedThing};

/// The schema this rackbox writes.
/// 1: machines, macs, events, machine_events, users, tokens.
/// 2: adds zones, pools and tags (with a "default" zone and pool, and every tag machines carry).
pub const SCHEMA_VERSION: u32 = 2;

/// One migration step: from version N to N+1.
type Step = fn(&WriteTransaction) -> Result<(), StoreError>;

/// MIGRATIONS[i] migrates version i+1 to i+2.
const MIGRATIONS: &[Step] = &[v1_to_v2];

pub(super) fn check_and_migrate(db: &Database, path: &Path) -> Result<(), StoreError> {
    let found = read_version(db)?;
    if let Some(found) = found
        && found > SCHEMA_VERSION
    {
        return Err(StoreError::NewerSchema {
            path: path.to_path_buf(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    let mut tx = db.begin_write()?;
    tx.set_durability(Durability::Immediate)?;
    match found {
        None => {
            create_v1(&tx)?;
            for step in MIGRATIONS {
                step(&tx)?;
            }
        }
        Some(v) => {
            let start = v.max(1) as usize - 1;
            for (i, step) in MIGRATIONS.iter().enumerate().skip(start) {
                tracing::info!(from = i + 1, to = i + 2, "migrating the database schema");
                step(&tx)?;
            }
        }
    }
    set_version(&tx, SCHEMA_VERSION)?;
    tx.commit()?;
    Ok(())
}

pub(super) fn read_version(db: &Database) -> Result<Option<u32>, StoreError> {
    let rx = db.begin_read()?;
    let meta = match rx.open_table(META) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    Ok(meta
        .get("schema_version")?
        .map(|v| u32::from_le_bytes(v.value().try_into().unwrap_or([0; 4]))))
}

pub(super) fn set_version(tx: &WriteTransaction, version: u32) -> Result<(), StoreError> {
    tx.open_table(META)?
        .insert("schema_version", version.to_le_bytes().as_slice())?;
    Ok(())
}

/// Creates the tables of schema 1 (a fresh database is built as 1, then migrated like any other).
pub(super) fn create_v1(tx: &WriteTransaction) -> Result<(), StoreError> {
    tx.open_table(META)?;
    tx.open_table(MACHINES)?;
    tx.open_table(MACS)?;
    tx.open_table(EVENTS)?;
    tx.open_table(MACHINE_EVENTS)?;
    tx.open_table(USERS)?;
    tx.open_table(TOKENS)?;
    set_version(tx, 1)
}

fn v1_to_v2(raw: &WriteTransaction) -> Result<(), StoreError> {
    let tx = Tx { tx: raw };
    let now = crate::model::ids::now_ms();
    for (kind, description) in [
        (CatalogKind::Zone, "Default zone"),
        (CatalogKind::Pool, "Default pool of machines"),
    ] {
        let default = NamedThing {
            name: "default".into(),
            description: description.into(),
            created_ms: now,
        };
        tx.put_catalog(kind, &default)?;
    }
    raw.open_table(TAGS)?;
    // Every zone, pool and tag a machine already names becomes a real record.
    for m in &tx.machines()? {
        tx.ensure_catalog(CatalogKind::Zone, &m.zone, now)?;
        tx.ensure_catalog(CatalogKind::Pool, &m.pool, now)?;
        for tag in &m.tags {
            tx.ensure_catalog(CatalogKind::Tag, tag, now)?;
        }
    }
    Ok(())
}

/// Builds a schema-1 database at `path` holding `machines`, for the migration test.
#[doc(hidden)]
pub fn create_v1_database(path: &Path, machines: &[Machine]) -> Result<(), StoreError> {
    let db = Database::create(path).map_err(|source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let tx = db.begin_write()?;
    create_v1(&tx)?;
    for m in machines {
        Tx { tx: &tx }.put_machine(m, None, [])?;
    }
    tx.commit()?;
    Ok(())
}

/// Stamps a database with a version (the refusal test writes a "future" version).
#[doc(hidden)]
pub fn force_version(path: &Path, version: u32) -> Result<(), StoreError> {
    let db = Database::open(path).map_err(|source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let tx = db.begin_write()?;
    set_version(&tx, version)?;
    tx.commit()?;
    Ok(())
}
