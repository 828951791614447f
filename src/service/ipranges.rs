//! IP ranges added through the API (see [`crate::model::iprange`]). The caller passes the
//! ranges its configuration sets for the subnet (`fixed`), so one check sees every range: none
//! may overlap another. Adding to the DHCP pool is for admins; anyone may reserve addresses.

use std::net::Ipv4Addr;

use super::{Principal, Service, ServiceError};
use crate::model::ids::now_ms;
use crate::model::iprange::{IpRange, RangeKind};

/// A range to add.
#[derive(Clone, Debug)]
pub struct NewIpRange {
    /// Pool or reserved.
    pub kind: RangeKind,
    /// First address.
    pub start: Ipv4Addr,
    /// Last address.
    pub end: Ipv4Addr,
    /// The boot subnet it lies in (CIDR text), checked by the caller.
    pub subnet: String,
    /// Free text.
    pub comment: String,
}

/// Changes to a range; None leaves a field alone.
#[derive(Clone, Debug, Default)]
pub struct IpRangeEdit {
    /// New first address.
    pub start: Option<Ipv4Addr>,
    /// New last address.
    pub end: Option<Ipv4Addr>,
    /// New comment.
    pub comment: Option<String>,
}

fn check_order(start: Ipv4Addr, end: Ipv4Addr) -> Result<(), ServiceError> {
    if start > end {
        return Err(ServiceError::Invalid(format!(
            "start_ip {start} is after end_ip {end}"
        )));
    }
    Ok(())
}

/// Refuses a range that shares an address with a fixed range or another stored one of the
/// same subnet (`except` is the range being changed).
fn check_free(
    stored: &[IpRange],
    fixed: &[(Ipv4Addr, Ipv4Addr)],
    subnet: &str,
    start: Ipv4Addr,
    end: Ipv4Addr,
    except: Option<u32>,
) -> Result<(), ServiceError> {
    if let Some((s, e)) = fixed.iter().find(|(s, e)| *s <= end && start <= *e) {
        return Err(ServiceError::Conflict(format!(
            "{start}-{end} overlaps the range {s}-{e} the configuration sets"
        )));
    }
    if let Some(r) = stored
        .iter()
        .filter(|r| r.subnet == subnet && Some(r.id) != except)
        .find(|r| r.overlaps(start, end))
    {
        return Err(ServiceError::Conflict(format!(
            "{start}-{end} overlaps {} range {} ({}-{})",
            r.kind.as_str(),
            r.id,
            r.start,
            r.end
        )));
    }
    Ok(())
}

fn may_change(p: &Principal, r: &IpRange) -> Result<(), ServiceError> {
    if p.is_admin() || (r.kind == RangeKind::Reserved && r.owner == p.username) {
        Ok(())
    } else {
        Err(ServiceError::Forbidden(format!(
            "IP range {} may be changed by admins{}",
            r.id,
            if r.kind == RangeKind::Reserved {
                " and its owner"
            } else {
                ""
            }
        )))
    }
}

impl Service {
    /// Every IP range added through the API.
    pub fn ip_ranges(&self) -> Result<Vec<IpRange>, ServiceError> {
        Ok(self.store.read()?.ip_ranges()?)
    }

    /// A receiver that sees a new value after every change to the ranges.
    pub fn watch_ip_ranges(&self) -> tokio::sync::watch::Receiver<u64> {
        self.ip_ranges_changed.subscribe()
    }

    fn ip_ranges_changed(&self) {
        self.ip_ranges_changed.send_modify(|n| *n += 1);
    }

    /// Adds a range to a boot subnet.
    pub async fn create_ip_range(
        &self,
        p: &Principal,
        new: NewIpRange,
        fixed: Vec<(Ipv4Addr, Ipv4Addr)>,
    ) -> Result<IpRange, ServiceError> {
        if new.kind == RangeKind::Dynamic && !p.is_admin() {
            return Err(ServiceError::Forbidden(
                "only admins may widen the DHCP pool".into(),
            ));
        }
        check_order(new.start, new.end)?;
        let owner = p.username.clone();
        let range = self
            .store
            .write(move |tx| -> Result<IpRange, ServiceError> {
                let stored = tx.ip_ranges()?;
                check_free(&stored, &fixed, &new.subnet, new.start, new.end, None)?;
                let range = IpRange {
                    id: stored.iter().map(|r| r.id).max().unwrap_or(0) + 1,
                    kind: new.kind,
                    start: new.start,
                    end: new.end,
                    subnet: new.subnet,
                    comment: new.comment,
                    owner,
                    created_ms: now_ms(),
                };
                tx.put_ip_range(&range)?;
                Ok(range)
            })
            .await?;
        self.ip_ranges_changed();
        tracing::info!(id = range.id, kind = range.kind.as_str(), start = %range.start, end = %range.end, by = %p.username, "IP range added");
        Ok(range)
    }

    /// Changes a range (admins; a reserved range's owner too).
    pub async fn edit_ip_range(
        &self,
        p: &Principal,
        id: u32,
        edit: IpRangeEdit,
        fixed: Vec<(Ipv4Addr, Ipv4Addr)>,
    ) -> Result<IpRange, ServiceError> {
        let principal = p.clone();
        let range = self
            .store
            .write(move |tx| -> Result<IpRange, ServiceError> {
                let stored = tx.ip_ranges()?;
                let mut r = stored
                    .iter()
                    .find(|r| r.id == id)
                    .cloned()
                    .ok_or_else(|| ServiceError::not_found("IP range", id.to_string()))?;
                may_change(&principal, &r)?;
                let start = edit.start.unwrap_or(r.start);
                let end = edit.end.unwrap_or(r.end);
                check_order(start, end)?;
                check_free(&stored, &fixed, &r.subnet, start, end, Some(id))?;
                r.start = start;
                r.end = end;
                if let Some(c) = edit.comment {
                    r.comment = c;
                }
                tx.put_ip_range(&r)?;
                Ok(r)
            })
            .await?;
        self.ip_ranges_changed();
        Ok(range)
    }

    /// Removes a range (admins; a reserved range's owner too).
    pub async fn delete_ip_range(&self, p: &Principal, id: u32) -> Result<(), ServiceError> {
        let principal = p.clone();
        self.store
            .write(move |tx| -> Result<(), ServiceError> {
                let r = tx
                    .ip_ranges()?
                    .into_iter()
                    .find(|r| r.id == id)
                    .ok_or_else(|| ServiceError::not_found("IP range", id.to_string()))?;
                may_change(&principal, &r)?;
                tx.remove_ip_range(id)?;
                Ok(())
            })
            .await?;
        self.ip_ranges_changed();
        tracing::info!(id, by = %p.username, "IP range deleted");
        Ok(())
    }
}
