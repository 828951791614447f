//! What the store does for the rest of rackbox, in the terms of its records: a write's
//! operations ([`Tx`], handed to the closures of [`super::Store::write`]) and a snapshot's
//! ([`Snapshot`], from [`super::Store::read`]), per record kind: machines with their MAC index
//! and history, users, tokens, zones/pools/tags, test results, stored files and DHCP leases
//! (`leases.rs`).
//!
//! This is the seam a second backend would fill: its callers never name a table, a key layout
//! or a redb transaction. The one exception is the image cache, whose records are its own
//! (`images/records.rs` defines their tables and types): it reaches redb through
//! [`Tx::raw`] and [`Snapshot::raw`]. The service never does (tests/architecture.rs).

use redb::{ReadTransaction, ReadableTable, ReadableTableMetadata, WriteTransaction};

use super::StoreError;
use super::tables::{
    self, ADDRESSES, APPLIANCE, DEVICES, EVENTS, FILES, IP_RANGES, MACHINE_EVENTS, MACHINES, MACS,
    META, STATIC_ROUTES, TEST_RESULTS, TOKENS, USERS,
};
use crate::model::catalog::{CatalogKind, NamedThing};
use crate::model::device::Device;
use crate::model::file::StoredFile;
use crate::model::iprange::IpRange;
use crate::model::network::StaticRoute;
use crate::model::settings::Settings;
use crate::model::setup::SetupRecord;
use crate::model::{Event, Machine, TestRun, Token, User};

/// The operations of one write, inside the writer's transaction. A write must check everything
/// before it changes anything (see [`super::Store::write`]): the transaction it shares with
/// other writes is committed even when it answers an error.
#[derive(Clone, Copy)]
pub struct Tx<'a> {
    pub(super) tx: &'a WriteTransaction,
}

/// A consistent snapshot of the store (redb MVCC): it never waits on the writer and never sees
/// a write committed after it was taken.
pub struct Snapshot {
    pub(super) rx: ReadTransaction,
}

/// The reads a write and a snapshot both answer, written once for both; each type supplies
/// `get`, `all` and `mac` over its own kind of transaction.
macro_rules! reads {
    ($t:ty) => {
        impl $t {
            /// One machine, by system_id.
            pub fn machine(&self, system_id: &str) -> Result<Option<Machine>, StoreError> {
                self.get(MACHINES, system_id)
            }

            /// Every machine, by system_id.
            pub fn machines(&self) -> Result<Vec<Machine>, StoreError> {
                self.all(MACHINES)
            }

            /// The system_id of the machine with an interface of `mac` (normalized), if any.
            pub fn mac_owner(&self, mac: &str) -> Result<Option<String>, StoreError> {
                self.mac(mac)
            }

            /// The machine whose interface link holds `ip`.
            pub fn address_owner(
                &self,
                ip: std::net::Ipv4Addr,
            ) -> Result<Option<String>, StoreError> {
                self.address(ip)
            }

            /// One account, by username.
            pub fn user(&self, username: &str) -> Result<Option<User>, StoreError> {
                self.get(USERS, username)
            }

            /// Every account, by username.
            pub fn users(&self) -> Result<Vec<User>, StoreError> {
                self.all(USERS)
            }

            /// One API token, by id.
            pub fn token(&self, id: &str) -> Result<Option<Token>, StoreError> {
                self.get(TOKENS, id)
            }

            /// Every API token, by id.
            pub fn tokens(&self) -> Result<Vec<Token>, StoreError> {
                self.all(TOKENS)
            }

            /// Every zone, pool or tag of `kind`, by name.
            pub fn catalog(&self, kind: CatalogKind) -> Result<Vec<NamedThing>, StoreError> {
                self.all(tables::catalog(kind))
            }

            /// The first-boot setup's record; None before anything was chosen.
            pub fn setup(&self) -> Result<Option<SetupRecord>, StoreError> {
                self.get(APPLIANCE, "setup")
            }

            /// One device, by system_id.
            pub fn device(&self, system_id: &str) -> Result<Option<Device>, StoreError> {
                self.get(DEVICES, system_id)
            }

            /// Every device, by system_id.
            pub fn devices(&self) -> Result<Vec<Device>, StoreError> {
                self.all(DEVICES)
            }

            /// Every static route, by number.
            pub fn static_routes(&self) -> Result<Vec<StaticRoute>, StoreError> {
                self.all(STATIC_ROUTES)
            }

            /// Every IP range added through the API, by number.
            pub fn ip_ranges(&self) -> Result<Vec<IpRange>, StoreError> {
                self.all(IP_RANGES)
            }

            /// The appliance-wide settings; None until one was changed.
            pub fn settings(&self) -> Result<Option<Settings>, StoreError> {
                self.get(APPLIANCE, "settings")
            }

            /// One zone, pool or tag.
            pub fn catalog_entry(
                &self,
                kind: CatalogKind,
                name: &str,
            ) -> Result<Option<NamedThing>, StoreError> {
                self.get(tables::catalog(kind), name)
            }
        }
    };
}

reads!(Tx<'_>);
reads!(Snapshot);

impl<'a> Tx<'a> {
    /// The redb transaction itself, for the image cache's own tables (`images/records.rs`) and
    /// tests' scratch tables: nothing else reaches redb past the typed operations.
    pub fn raw(&self) -> &'a WriteTransaction {
        self.tx
    }

    fn get<T: serde::de::DeserializeOwned>(
        &self,
        table: redb::TableDefinition<&str, &[u8]>,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        tables::get_in(self.tx, table, key)
    }

    fn all<T: serde::de::DeserializeOwned>(
        &self,
        table: redb::TableDefinition<&str, &[u8]>,
    ) -> Result<Vec<T>, StoreError> {
        tables::all_in(self.tx, table)
    }

    fn mac(&self, mac: &str) -> Result<Option<String>, StoreError> {
        let t = self.tx.open_table(MACS)?;
        Ok(t.get(mac)?.map(|v| v.value().to_string()))
    }

    fn address(&self, ip: std::net::Ipv4Addr) -> Result<Option<String>, StoreError> {
        let t = self.tx.open_table(ADDRESSES)?;
        Ok(t.get(ip.to_string().as_str())?
            .map(|v| v.value().to_string()))
    }

    // --- machines and their history -----------------------------------------------------------

    /// Stores `machine` and `events` (each given the next store-wide sequence number), keeping
    /// the MAC index in step with its interfaces. `old` is the record as this write read it (its
    /// MACs leave the index), None for a new machine. The one writer means nothing can change
    /// the record between that read and this put: the generation `old` carries is still the
    /// stored one (a backend with concurrent writers would put only if it were).
    pub fn put_machine(
        &self,
        machine: &Machine,
        old: Option<&Machine>,
        events: impl IntoIterator<Item = Event>,
    ) -> Result<(), StoreError> {
        let mut macs = self.tx.open_table(MACS)?;
        if let Some(old) = old {
            for i in &old.interfaces {
                macs.remove(i.mac.as_str())?;
            }
        }
        for i in &machine.interfaces {
            macs.insert(i.mac.as_str(), machine.system_id.as_str())?;
        }
        drop(macs);
        let mut addresses = self.tx.open_table(ADDRESSES)?;
        for ip in old
            .iter()
            .flat_map(|o| o.interfaces.iter().filter_map(|i| i.address()))
        {
            addresses.remove(ip.to_string().as_str())?;
        }
        for ip in machine.interfaces.iter().filter_map(|i| i.address()) {
            addresses.insert(ip.to_string().as_str(), machine.system_id.as_str())?;
        }
        drop(addresses);
        tables::put_in(self.tx, MACHINES, &machine.system_id, machine)?;
        for event in events {
            self.append_event(event)?;
        }
        Ok(())
    }

    /// Removes a machine, its MAC index entries, its history and its test results.
    pub fn delete_machine(&self, machine: &Machine) -> Result<(), StoreError> {
        let mut macs = self.tx.open_table(MACS)?;
        for i in &machine.interfaces {
            macs.remove(i.mac.as_str())?;
        }
        drop(macs);
        let mut addresses = self.tx.open_table(ADDRESSES)?;
        for ip in machine.interfaces.iter().filter_map(|i| i.address()) {
            addresses.remove(ip.to_string().as_str())?;
        }
        drop(addresses);
        let mut index = self.tx.open_table(MACHINE_EVENTS)?;
        let seqs: Vec<u64> = index
            .range((machine.system_id.as_str(), 0)..=(machine.system_id.as_str(), u64::MAX))?
            .map(|item| item.map(|(k, _)| k.value().1))
            .collect::<Result<_, _>>()?;
        let mut events = self.tx.open_table(EVENTS)?;
        for seq in seqs {
            index.remove((machine.system_id.as_str(), seq))?;
            events.remove(seq)?;
        }
        drop(events);
        drop(index);
        tables::remove_in(self.tx, TEST_RESULTS, &machine.system_id)?;
        tables::remove_in(self.tx, MACHINES, &machine.system_id)?;
        Ok(())
    }

    /// Appends an event, giving it the next store-wide sequence number.
    fn append_event(&self, mut event: Event) -> Result<(), StoreError> {
        let mut meta = self.tx.open_table(META)?;
        let seq = match meta.get("next_event_seq")? {
            Some(v) => u64::from_le_bytes(v.value().try_into().unwrap_or([0; 8])).max(1),
            None => 1,
        };
        meta.insert("next_event_seq", (seq + 1).to_le_bytes().as_slice())?;
        drop(meta);
        event.seq = seq;
        let bytes = tables::encode(&event)?;
        self.tx.open_table(EVENTS)?.insert(seq, bytes.as_slice())?;
        self.tx
            .open_table(MACHINE_EVENTS)?
            .insert((event.system_id.as_str(), seq), ())?;
        Ok(())
    }

    /// Stores a machine's latest testing run, in place of the one before.
    pub fn put_test_run(&self, run: &TestRun) -> Result<(), StoreError> {
        tables::put_in(self.tx, TEST_RESULTS, &run.system_id, run)
    }

    // --- accounts ---------------------------------------------------------------------------

    /// How many accounts there are.
    pub fn user_count(&self) -> Result<u64, StoreError> {
        Ok(self.tx.open_table(USERS)?.len()?)
    }

    /// Stores an account, in place of the one of its username.
    pub fn put_user(&self, user: &User) -> Result<(), StoreError> {
        tables::put_in(self.tx, USERS, &user.username, user)
    }

    /// Removes an account (not its tokens: [`Tx::remove_tokens_of`]); false when there was none.
    pub fn remove_user(&self, username: &str) -> Result<bool, StoreError> {
        tables::remove_in(self.tx, USERS, username)
    }

    /// Stores an API token.
    pub fn put_token(&self, token: &Token) -> Result<(), StoreError> {
        tables::put_in(self.tx, TOKENS, &token.id, token)
    }

    /// Removes an API token; false when there was none.
    pub fn remove_token(&self, id: &str) -> Result<bool, StoreError> {
        tables::remove_in(self.tx, TOKENS, id)
    }

    /// Removes every token of `username`.
    pub fn remove_tokens_of(&self, username: &str) -> Result<(), StoreError> {
        for t in self.tokens()?.iter().filter(|t| t.username == username) {
            self.remove_token(&t.id)?;
        }
        Ok(())
    }

    // --- zones, pools and tags --------------------------------------------------------------

    /// Stores a zone, pool or tag, in place of the one of its name.
    pub fn put_catalog(&self, kind: CatalogKind, thing: &NamedThing) -> Result<(), StoreError> {
        tables::put_in(self.tx, tables::catalog(kind), &thing.name, thing)
    }

    /// Makes the zone, pool or tag `name` (no description, made at `now_ms`) unless there is one.
    pub fn ensure_catalog(
        &self,
        kind: CatalogKind,
        name: &str,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        if self.catalog_entry(kind, name)?.is_none() {
            self.put_catalog(
                kind,
                &NamedThing {
                    name: name.to_string(),
                    description: String::new(),
                    created_ms: now_ms,
                },
            )?;
        }
        Ok(())
    }

    /// Removes a zone, pool or tag; false when there was none.
    pub fn remove_catalog(&self, kind: CatalogKind, name: &str) -> Result<bool, StoreError> {
        tables::remove_in(self.tx, tables::catalog(kind), name)
    }

    // --- stored files -----------------------------------------------------------------------

    /// Stores the first-boot setup's record, in place of the one before.
    pub fn put_setup(&self, setup: &SetupRecord) -> Result<(), StoreError> {
        tables::put_in(self.tx, APPLIANCE, "setup", setup)
    }

    /// Stores a device, in place of the one with its system_id.
    pub fn put_device(&self, device: &Device) -> Result<(), StoreError> {
        tables::put_in(self.tx, DEVICES, &device.system_id, device)
    }

    /// Removes a device; false when there was none.
    pub fn remove_device(&self, system_id: &str) -> Result<bool, StoreError> {
        tables::remove_in(self.tx, DEVICES, system_id)
    }

    /// Stores a static route, in place of the one with its number.
    pub fn put_static_route(&self, route: &StaticRoute) -> Result<(), StoreError> {
        tables::put_in(self.tx, STATIC_ROUTES, &format!("{:010}", route.id), route)
    }

    /// Removes a static route; false when there was none.
    pub fn remove_static_route(&self, id: u32) -> Result<bool, StoreError> {
        tables::remove_in(self.tx, STATIC_ROUTES, &format!("{id:010}"))
    }

    /// Stores an IP range, in place of the one with its number.
    pub fn put_ip_range(&self, range: &IpRange) -> Result<(), StoreError> {
        tables::put_in(self.tx, IP_RANGES, &format!("{:010}", range.id), range)
    }

    /// Removes an IP range; false when there was none.
    pub fn remove_ip_range(&self, id: u32) -> Result<bool, StoreError> {
        tables::remove_in(self.tx, IP_RANGES, &format!("{id:010}"))
    }

    /// Stores the appliance-wide settings, in place of the ones before.
    pub fn put_settings(&self, settings: &Settings) -> Result<(), StoreError> {
        tables::put_in(self.tx, APPLIANCE, "settings", settings)
    }

    /// Stores a user's file, in place of the owner's file of that name.
    pub fn put_file(&self, file: &StoredFile) -> Result<(), StoreError> {
        tables::put_in(self.tx, FILES, &file_key(&file.owner, &file.filename), file)
    }

    /// Removes one of `owner`'s files; false when there was none.
    pub fn remove_file(&self, owner: &str, filename: &str) -> Result<bool, StoreError> {
        tables::remove_in(self.tx, FILES, &file_key(owner, filename))
    }
}

impl Snapshot {
    /// The redb snapshot itself, for the image cache's own tables (`images/records.rs`) and
    /// tests: nothing else reaches redb past the typed operations.
    pub fn raw(&self) -> &ReadTransaction {
        &self.rx
    }

    fn get<T: serde::de::DeserializeOwned>(
        &self,
        table: redb::TableDefinition<&str, &[u8]>,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        tables::get(&self.rx, table, key)
    }

    fn all<T: serde::de::DeserializeOwned>(
        &self,
        table: redb::TableDefinition<&str, &[u8]>,
    ) -> Result<Vec<T>, StoreError> {
        tables::all(&self.rx, table)
    }

    fn mac(&self, mac: &str) -> Result<Option<String>, StoreError> {
        let t = match self.rx.open_table(MACS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Ok(t.get(mac)?.map(|v| v.value().to_string()))
    }

    fn address(&self, ip: std::net::Ipv4Addr) -> Result<Option<String>, StoreError> {
        let t = match self.rx.open_table(ADDRESSES) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Ok(t.get(ip.to_string().as_str())?
            .map(|v| v.value().to_string()))
    }

    /// A machine's events, newest first, at most `limit`, older than `before` when given.
    pub fn machine_events(
        &self,
        system_id: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let (index, events) = match (
            self.rx.open_table(MACHINE_EVENTS),
            self.rx.open_table(EVENTS),
        ) {
            (Ok(i), Ok(e)) => (i, e),
            _ => return Ok(Vec::new()),
        };
        let upper = before.map(|b| b.saturating_sub(1)).unwrap_or(u64::MAX);
        let mut out = Vec::new();
        for item in index.range((system_id, 0)..=(system_id, upper))?.rev() {
            let (k, _) = item?;
            let seq = k.value().1;
            if let Some(v) = events.get(seq)? {
                out.push(tables::decode(&format!("events/{seq}"), v.value())?);
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// All events, newest first, at most `limit`, older than `before` when given.
    /// The sequence number of the newest event (0 when there is none): where a reader of the
    /// history is up to.
    pub fn last_event_seq(&self) -> Result<u64, StoreError> {
        let events = match self.rx.open_table(EVENTS) {
            Ok(e) => e,
            Err(_) => return Ok(0),
        };
        Ok(events.last()?.map(|(k, _)| k.value()).unwrap_or(0))
    }

    /// Events after sequence number `after`, oldest first, at most `limit`.
    pub fn events_after(&self, after: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        let events = match self.rx.open_table(EVENTS) {
            Ok(e) => e,
            Err(_) => return Ok(Vec::new()),
        };
        let mut out = Vec::new();
        for item in events.range(after.saturating_add(1)..)?.take(limit) {
            let (k, v) = item?;
            out.push(tables::decode(&format!("events/{}", k.value()), v.value())?);
        }
        Ok(out)
    }

    pub fn recent_events(
        &self,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let events = match self.rx.open_table(EVENTS) {
            Ok(e) => e,
            Err(_) => return Ok(Vec::new()),
        };
        let upper = before.map(|b| b.saturating_sub(1)).unwrap_or(u64::MAX);
        let mut out = Vec::new();
        for item in events.range(0..=upper)?.rev().take(limit) {
            let (k, v) = item?;
            out.push(tables::decode(&format!("events/{}", k.value()), v.value())?);
        }
        Ok(out)
    }

    /// A machine's latest testing run, or None before its first.
    pub fn test_run(&self, system_id: &str) -> Result<Option<TestRun>, StoreError> {
        self.get(TEST_RESULTS, system_id)
    }

    /// Every stored file, by owner and filename.
    pub fn files(&self) -> Result<Vec<StoredFile>, StoreError> {
        self.all(FILES)
    }

    /// One of `owner`'s files.
    pub fn file(&self, owner: &str, filename: &str) -> Result<Option<StoredFile>, StoreError> {
        self.get(FILES, &file_key(owner, filename))
    }
}

/// A stored file's key: filenames are unique per owner.
fn file_key(owner: &str, filename: &str) -> String {
    format!("{owner}/{filename}")
}
