//! Enlistment: an unknown machine that network-boots gets the ephemeral environment in
//! enlistment mode (`rackbox.enlist=1`, no token), and its agent sends its inventory to
//! `POST /api/agent/v1/enlist` with no credentials at all. rackbox makes a New machine of it and
//! answers with the machine's id and a boot token for the rest of that boot.
//!
//! Because the call is anonymous, it is held to what it is for:
//!
//! - **Only unknown machines enlist.** A MAC that belongs to a machine is refused (409), as
//!   MAAS refuses it: no token, and the machine and its boot token are left as they are. A
//!   known machine's network boot is decided by its status (`Service::boot_plan`), never by
//!   enlistment.
//! - **A retry is recognised by a secret only the first caller had.** The agent sends a random
//!   key of its own with every `/enlist` of one boot ([`ENLIST_KEY_HEADER`]). Its sha256 is kept
//!   with the boot the enlistment made, so when the agent repeats the call because the answer
//!   was lost (a timeout, a restart of the appliance), the MAC is known but the key matches: the
//!   same machine is answered, with a fresh token (the one in the lost answer stops working).
//!   That works only while that boot is current (the machine has not left the work it was
//!   enlisted for, and no other boot was handed out since); anyone else, and the same agent
//!   after its boot, gets the 409. An agent that sends no key can enlist but not retry.
//! - **Bounded**: an inventory is at most `max_inventory_bytes` (413, checked by the HTTP face
//!   before the body is read whole), each source address may enlist `burst` times at once and
//!   then once per `interval` (429), and no machine is enlisted while `max_new` machines are
//!   New (507).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::boot::{inventory_interfaces, mint_token, sha256_hex, token_for};
use super::{Principal, Service, ServiceError};
use crate::model::{BootSession, ENLIST_KEY_HEADER, Inventory, Machine, Status, ids};

/// Most source addresses whose enlistments are counted at once; beyond it, new sources wait
/// until old buckets have filled up again (so a flood of addresses cannot grow memory).
const MAX_SOURCES: usize = 4096;

/// Settings of enlistment and its bounds (`[lifecycle]` `enlistment`, `commission_enlisted`,
/// `enlist_*` in the configuration).
#[derive(Clone, Copy, Debug)]
pub struct EnlistOptions {
    /// Unknown machines that network-boot are enlisted (else they are told to boot locally).
    pub enabled: bool,
    /// Enlisted machines start commissioning at once.
    pub commission: bool,
    /// The largest inventory (request body) `/enlist` and `/inventory` take, in bytes.
    pub max_inventory_bytes: usize,
    /// Enlistments one source address may make at once.
    pub burst: u32,
    /// Then one more per this interval.
    pub interval: Duration,
    /// No machine is enlisted while this many machines are New.
    pub max_new: usize,
}

impl Default for EnlistOptions {
    fn default() -> Self {
        EnlistOptions {
            enabled: true,
            commission: false,
            max_inventory_bytes: 256 * 1024,
            burst: 5,
            interval: Duration::from_secs(10),
            max_new: 256,
        }
    }
}

/// Token buckets per source address, kept as one instant per source (GCRA): the time at which
/// the source's bucket would be full again. A source may be `burst - 1` intervals ahead of now.
/// IPv6 sources count per /64 (one host may hold all of its addresses).
pub(crate) struct RateLimiter {
    burst: u32,
    interval: Duration,
    /// Source -> when its bucket is full again; sources whose bucket is full are dropped.
    full_at: Mutex<HashMap<IpAddr, Instant>>,
}

impl RateLimiter {
    pub fn new(o: &EnlistOptions) -> RateLimiter {
        RateLimiter {
            burst: o.burst.max(1),
            interval: o.interval,
            full_at: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one enlistment from `source`'s bucket at `now`, or says how long to wait.
    pub fn admit(&self, source: IpAddr, now: Instant) -> Result<(), Duration> {
        let key = source_key(source);
        let mut full_at = match self.full_at.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        let ahead_allowed = self.interval.saturating_mul(self.burst - 1);
        let at = full_at.get(&key).copied().filter(|t| *t > now);
        let ahead = at.map_or(Duration::ZERO, |t| t.duration_since(now));
        if ahead > ahead_allowed {
            return Err(ahead - ahead_allowed);
        }
        if at.is_none() && !full_at.contains_key(&key) && full_at.len() >= MAX_SOURCES {
            full_at.retain(|_, t| *t > now);
            if full_at.len() >= MAX_SOURCES {
                return Err(self.interval);
            }
        }
        full_at.insert(key, at.unwrap_or(now) + self.interval);
        Ok(())
    }
}

/// What a source is counted as: its IPv4 address (also when mapped into IPv6), or its IPv6 /64.
pub(super) fn source_key(source: IpAddr) -> IpAddr {
    match source.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

/// Checks the key an enlisting agent sent: 16 to 128 printable ASCII characters.
fn check_key(key: &str) -> Result<(), ServiceError> {
    if (16..=128).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(ServiceError::Invalid(format!(
            "the {ENLIST_KEY_HEADER} header must be 16 to 128 printable ASCII characters"
        )))
    }
}

/// Whether `m`'s current boot is the enlistment that `key` made.
fn enlisted_with(m: &Machine, key: &str) -> bool {
    let hash = sha256_hex(key);
    m.boot_session.as_ref().is_some_and(|b| {
        !b.over
            && b.enlist_key_sha256
                .as_ref()
                .is_some_and(|k| super::users::constant_time_eq(k.as_bytes(), hash.as_bytes()))
    })
}

impl Service {
    /// Counts an enlistment from `source` against its rate (before its body is read).
    pub fn admit_enlistment(&self, source: IpAddr) -> Result<(), ServiceError> {
        if !self.enlist.enabled {
            return Err(ServiceError::Forbidden("enlistment is switched off".into()));
        }
        self.enlist_rate
            .admit(source, Instant::now())
            .map_err(|wait| {
                let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
                tracing::debug!(%source, retry_after_secs = secs, "enlistment rate-limited");
                ServiceError::RateLimited {
                    message: format!(
                        "too many enlistments from {source}: {} at once, then one every {} s \
                         (lifecycle.enlist_burst, lifecycle.enlist_interval_secs); try again in \
                         {secs} s",
                        self.enlist.burst,
                        self.enlist.interval.as_secs()
                    ),
                    retry_after_secs: secs,
                }
            })
    }

    /// An unknown machine's agent enlists it: a New machine with its inventory, and a boot token
    /// for the rest of this boot. `key` is the agent's enlistment key (see the module doc): with
    /// it, the same agent repeating the call is answered again; without it, only a first
    /// enlistment works.
    pub async fn enlist(
        &self,
        inventory: Inventory,
        key: Option<&str>,
    ) -> Result<(Machine, String), ServiceError> {
        if !self.enlist.enabled {
            return Err(ServiceError::Forbidden("enlistment is switched off".into()));
        }
        if let Some(k) = key {
            check_key(k)?;
        }
        let mut macs = Vec::new();
        for nic in inventory_interfaces(&inventory)? {
            if !macs.contains(&nic.mac) {
                macs.push(nic.mac);
            }
        }
        if macs.is_empty() {
            return Err(ServiceError::Invalid(
                "inventory names no network interface".into(),
            ));
        }

        let guard = self.enlist_lock.lock().await;
        let mut known: Vec<(String, std::sync::Arc<Machine>)> = Vec::new();
        for mac in &macs {
            if let Some(m) = self.machine_by_mac(mac)? {
                known.push((mac.clone(), m));
            }
        }
        if let Some((mac, m)) = known.first() {
            let one_machine = known.iter().all(|(_, k)| k.system_id == m.system_id);
            if let Some(k) = key
                && one_machine
                && enlisted_with(m, k)
            {
                let m = (**m).clone();
                drop(guard);
                return self.enlist_again(m, inventory, k).await;
            }
            // Said to the caller without naming the machine; the log names it.
            tracing::warn!(
                %mac, system_id = %m.system_id, status = %m.status,
                "enlistment of a known MAC refused"
            );
            return Err(ServiceError::Conflict(format!(
                "a machine with MAC {mac} is known to rackbox already: only unknown machines \
                 enlist (a known machine's network boot gets its own boot token)"
            )));
        }
        let new_now = self
            .index_snapshot()
            .iter()
            .filter(|m| m.status == Status::New)
            .count();
        if new_now >= self.enlist.max_new {
            tracing::warn!(
                new = new_now,
                max = self.enlist.max_new,
                "enlistment refused: too many New machines"
            );
            return Err(ServiceError::Full(format!(
                "enlistment is full: {new_now} machines are New (lifecycle.enlist_max_new = {}); \
                 commission or delete some, or raise the limit",
                self.enlist.max_new
            )));
        }
        let new = super::NewMachine {
            mac_addresses: macs,
            architecture: Some(inventory.architecture.clone()).filter(|a| !a.is_empty()),
            commission: Some(false),
            ..Default::default()
        };
        // The machine's id is part of its token, so the token's hash is made in the write that
        // picks the id; the secret part is chosen here.
        let secret = ids::random_token(32);
        let key_hash = key.map(sha256_hex);
        let seed = secret.clone();
        let boot: super::machines::NewBoot = Box::new(move |system_id: &str| BootSession {
            token_sha256: sha256_hex(&token_for(system_id, &seed)),
            issued_for: Status::New,
            over: false,
            enlist_key_sha256: key_hash,
        });
        let machine = self
            .add_machine_booted(&Principal::system(), new, Some(boot))
            .await?;
        let token = token_for(&machine.system_id, &secret);
        drop(guard);
        tracing::info!(system_id = %machine.system_id, "machine enlisted");
        let machine = self
            .record_inventory(&machine.system_id, inventory, Status::New)
            .await?;
        let machine = if self.enlist.commission {
            self.commission_enlisted(machine).await?
        } else {
            machine
        };
        Ok((machine, token))
    }

    /// The enlisting agent again, within the boot it enlisted from: the same machine, its
    /// inventory recorded again while it is New, and a fresh token.
    async fn enlist_again(
        &self,
        m: Machine,
        inventory: Inventory,
        key: &str,
    ) -> Result<(Machine, String), ServiceError> {
        let m = if m.status == Status::New {
            self.record_inventory(&m.system_id, inventory, Status::New)
                .await?
        } else {
            m
        };
        let (token, hash) = mint_token(&m.system_id);
        let key_hash = sha256_hex(key);
        let m = self
            .modify_machine(&m.system_id, "agent", move |_, m| {
                let Some(boot) = m.boot_session.as_mut().filter(|b| {
                    !b.over && b.enlist_key_sha256.as_deref() == Some(key_hash.as_str())
                }) else {
                    return Err(ServiceError::Conflict(format!(
                        "machine {} booted again since it enlisted; enlist no more",
                        m.system_id
                    )));
                };
                boot.token_sha256 = hash;
                Ok(Some((
                    "enlist",
                    "its agent enlisted again (an answer was lost); new boot token".to_string(),
                )))
            })
            .await?
            .ok_or_else(|| ServiceError::Conflict("enlistment not recorded".into()))?;
        tracing::info!(system_id = %m.system_id, "enlistment repeated by the same agent");
        Ok((m, token))
    }

    /// `commission_enlisted`: the machine starts commissioning, and the boot it enlisted from
    /// goes on with it (with manual power, nobody else would boot it): its agent's next task is
    /// the commissioning. A network boot of the machine (a power driver cycling it) replaces
    /// that boot as any boot does.
    async fn commission_enlisted(&self, m: Machine) -> Result<Machine, ServiceError> {
        let token_hash = m.boot_session.as_ref().map(|b| b.token_sha256.clone());
        let m = self
            .act(
                &Principal::system(),
                &m.system_id,
                "commission",
                Default::default(),
            )
            .await?;
        let changed = self
            .modify_machine(&m.system_id, "rackbox", move |_, m| {
                match m.boot_session.as_mut() {
                    Some(b)
                        if m.status == Status::Commissioning
                            && Some(&b.token_sha256) == token_hash.as_ref() =>
                    {
                        b.issued_for = Status::Commissioning;
                        b.over = false;
                        Ok(Some((
                            "netboot",
                            "the enlistment boot goes on to commission".to_string(),
                        )))
                    }
                    _ => Ok(None),
                }
            })
            .await?;
        Ok(changed.unwrap_or(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(burst: u32, secs: u64) -> RateLimiter {
        RateLimiter::new(&EnlistOptions {
            burst,
            interval: Duration::from_secs(secs),
            ..Default::default()
        })
    }

    #[test]
    fn a_source_gets_its_burst_then_one_per_interval() {
        let l = limiter(3, 10);
        let t0 = Instant::now();
        let a: IpAddr = "192.0.2.7".parse().expect("ip");
        for _ in 0..3 {
            assert_eq!(l.admit(a, t0), Ok(()));
        }
        assert_eq!(l.admit(a, t0), Err(Duration::from_secs(10)));
        // Another source has its own bucket.
        assert_eq!(l.admit("192.0.2.8".parse().expect("ip"), t0), Ok(()));
        let t1 = t0 + Duration::from_secs(4);
        assert_eq!(l.admit(a, t1), Err(Duration::from_secs(6)));
        let t2 = t0 + Duration::from_secs(10);
        assert_eq!(l.admit(a, t2), Ok(()));
        assert!(l.admit(a, t2).is_err());
        // After burst intervals of quiet the whole burst is back.
        let t3 = t2 + Duration::from_secs(30);
        for _ in 0..3 {
            assert_eq!(l.admit(a, t3), Ok(()));
        }
        assert!(l.admit(a, t3).is_err());
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let l = limiter(1, 60);
        let t0 = Instant::now();
        assert_eq!(l.admit("2001:db8:1:2::1".parse().expect("ip"), t0), Ok(()));
        assert!(
            l.admit("2001:db8:1:2::ffff".parse().expect("ip"), t0)
                .is_err()
        );
        assert_eq!(l.admit("2001:db8:1:3::1".parse().expect("ip"), t0), Ok(()));
        assert_eq!(l.admit("192.0.2.1".parse().expect("ip"), t0), Ok(()));
        assert!(
            l.admit("::ffff:192.0.2.1".parse().expect("ip"), t0)
                .is_err()
        );
    }

    #[test]
    fn the_table_of_sources_is_bounded() {
        let l = limiter(1, 60);
        let t0 = Instant::now();
        for i in 0..MAX_SOURCES as u32 {
            let ip = IpAddr::V4((0x0a00_0000 + i).into());
            assert_eq!(l.admit(ip, t0), Ok(()));
        }
        let late: IpAddr = "192.0.2.200".parse().expect("ip");
        assert_eq!(l.admit(late, t0), Err(Duration::from_secs(60)));
        // Once the old buckets are full again they make room.
        assert_eq!(l.admit(late, t0 + Duration::from_secs(60)), Ok(()));
        let full_at = l.full_at.lock().expect("lock");
        assert!(full_at.len() <= MAX_SOURCES, "{}", full_at.len());
    }

    #[test]
    fn keys_are_printable_and_long_enough() {
        assert!(check_key("0123456789abcdef").is_ok());
        assert!(check_key("short").is_err());
        assert!(check_key("0123456789abcdef 0123").is_err());
        assert!(check_key(&"k".repeat(129)).is_err());
    }
}
