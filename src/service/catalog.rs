//! Zones, resource pools and tags: named groupings of machines; and the DHCP leases the boot
//! network's servers record.

use std::net::Ipv4Addr;

use super::{Principal, Service, ServiceError};
use crate::model::catalog::{CatalogKind, NamedThing};
use crate::model::ids::{self, now_ms};
use crate::model::lease::Lease;

impl Service {
    /// Every zone, pool or tag of `kind`, by name.
    pub fn list_catalog(&self, kind: CatalogKind) -> Result<Vec<NamedThing>, ServiceError> {
        Ok(self.store.read()?.catalog(kind)?)
    }

    /// One zone, pool or tag; NotFound when there is none by that name.
    pub fn catalog_entry(&self, kind: CatalogKind, name: &str) -> Result<NamedThing, ServiceError> {
        self.store
            .read()?
            .catalog_entry(kind, name)?
            .ok_or_else(|| ServiceError::not_found(kind.name(), name))
    }

    /// Makes a zone, pool or tag (admins only); Conflict when the name is taken.
    pub async fn create_catalog(
        &self,
        p: &Principal,
        kind: CatalogKind,
        name: &str,
        description: &str,
    ) -> Result<NamedThing, ServiceError> {
        if !p.is_admin() {
            return Err(ServiceError::Forbidden(format!(
                "only admins may create a {}",
                kind.name()
            )));
        }
        ids::check_name(kind.name(), name).map_err(ServiceError::Invalid)?;
        let thing = NamedThing {
            name: name.to_string(),
            description: description.to_string(),
            created_ms: now_ms(),
        };
        let t = thing.clone();
        self.store
            .write(move |tx| -> Result<(), ServiceError> {
                if tx.catalog_entry(kind, &t.name)?.is_some() {
                    return Err(ServiceError::Conflict(format!(
                        "{} {} exists",
                        kind.name(),
                        t.name
                    )));
                }
                tx.put_catalog(kind, &t)?;
                Ok(())
            })
            .await?;
        Ok(thing)
    }

    /// Changes the description of a zone or pool, or a tag's comment (admins only).
    pub async fn describe_catalog(
        &self,
        p: &Principal,
        kind: CatalogKind,
        name: &str,
        description: &str,
    ) -> Result<NamedThing, ServiceError> {
        if !p.is_admin() {
            return Err(ServiceError::Forbidden(format!(
                "only admins may change a {}",
                kind.name()
            )));
        }
        let (n, d) = (name.to_string(), description.to_string());
        self.store
            .write(move |tx| -> Result<NamedThing, ServiceError> {
                let mut thing = tx
                    .catalog_entry(kind, &n)?
                    .ok_or_else(|| ServiceError::not_found(kind.name(), &n))?;
                thing.description = d;
                tx.put_catalog(kind, &thing)?;
                Ok(thing)
            })
            .await
    }

    /// Deletes a zone, pool or tag. The default zone and pool stay; one still used by a machine
    /// is refused (409) naming the machine.
    pub async fn delete_catalog(
        &self,
        p: &Principal,
        kind: CatalogKind,
        name: &str,
    ) -> Result<(), ServiceError> {
        if !p.is_admin() {
            return Err(ServiceError::Forbidden(format!(
                "only admins may delete a {}",
                kind.name()
            )));
        }
        if name == "default" && kind != CatalogKind::Tag {
            return Err(ServiceError::Conflict(format!(
                "the default {} cannot be deleted",
                kind.name()
            )));
        }
        if let Some(m) = self.index_snapshot().iter().find(|m| kind.used_by(m, name)) {
            return Err(ServiceError::Conflict(format!(
                "{} {name} is used by machine {}",
                kind.name(),
                m.system_id
            )));
        }
        let n = name.to_string();
        self.store
            .write_essential(move |tx| -> Result<(), ServiceError> {
                if !tx.remove_catalog(kind, &n)? {
                    return Err(ServiceError::not_found(kind.name(), &n));
                }
                Ok(())
            })
            .await
    }
}

impl Service {
    /// Every DHCP lease the boot network's servers recorded (admins), by address.
    pub fn list_leases(&self, p: &Principal) -> Result<Vec<Lease>, ServiceError> {
        if !p.is_admin() {
            return Err(ServiceError::Forbidden(
                "only admins may read DHCP leases".into(),
            ));
        }
        let mut leases = self.leases_where(|_| true)?;
        leases.sort_by_key(|l| l.ip);
        Ok(leases)
    }

    /// The recorded leases whose address `wanted` takes: what a DHCP server starts from.
    pub fn leases_where(
        &self,
        wanted: impl Fn(Ipv4Addr) -> bool,
    ) -> Result<Vec<Lease>, ServiceError> {
        Ok(self.store.read()?.leases(wanted)?)
    }

    /// Records a lease durably: a DHCP server sends its ACK only after this returns Ok.
    pub async fn record_lease(&self, lease: Lease) -> Result<(), ServiceError> {
        Ok(self
            .store
            .write_essential(move |tx| tx.put_lease(&lease))
            .await?)
    }
}
