//! The boot timeline: what the appliance saw of each interface's latest network boots (DHCP, the
//! boot loader over TFTP, the iPXE script, kernel and initrd over HTTP, the agent's calls, power,
//! the deployed OS reporting in), for the machine page and `GET .../boot-timeline`.
//!
//! In memory only, on purpose: it is a live diagnostic ("where does this boot stop?"), not
//! history (the events are). It is bounded so that a flood of PXE clients cannot grow it: at most
//! [`MAX_STEPS`] steps per boot, the current and the previous boot per interface (a boot that
//! fails is best read beside the last one that got further), [`MAX_INTERFACES`] interfaces (the
//! one seen longest ago goes first), and a bounded map of addresses to interfaces.
//!
//! Steps come keyed by what their protocol knows. DHCP knows the MAC. The iPXE script's URL names
//! the MAC and its request comes from the machine's address, so it teaches which interface that
//! address is; so does a DHCP ACK, and an agent's call (its token names the machine). TFTP and the
//! downloads know only the address: they are filed under the interface it belongs to (what was
//! learned, else an active DHCP lease), or, when none is known yet (proxy DHCP, where the site's
//! server hands out addresses), held under the address until one is learned. Recording takes a
//! `std::sync::Mutex` for a push and never holds it across an await or a disk read, so the DHCP
//! loop never waits on it for long.

use std::collections::HashMap;
use std::net::IpAddr;

use super::{Principal, Service, ServiceError};
use crate::model::Machine;
use crate::model::ids;
use crate::model::timeline::{Boot, BootStep, MachineTimeline, Step};

/// Steps kept per boot; beyond, the earliest after the first go (the start and the latest
/// steps are what a reader needs).
pub(crate) const MAX_STEPS: usize = 32;
/// Interfaces whose boots are kept; beyond, the one seen longest ago goes.
pub(crate) const MAX_INTERFACES: usize = 1024;
/// Addresses whose interface is remembered.
const MAX_ADDRESSES: usize = 2048;
/// Addresses whose steps wait for their interface to be learned, and steps per address (the
/// latest).
const MAX_WAITING_ADDRESSES: usize = 64;
const MAX_WAITING_STEPS: usize = 8;
/// How old a waiting step may be and still join a boot when its address is learned: firmware
/// asks for its script seconds after its loader, so an older step is of some earlier boot.
const MAX_WAIT_MS: u64 = 120_000;

/// One interface's boots.
#[derive(Clone, Debug)]
struct Boots {
    current: Boot,
    previous: Option<Boot>,
    /// When a step was last added (which interface goes first when full).
    last_ms: u64,
    /// The machine the interface belongs to, once resolved (cleared at each new boot: a MAC may
    /// be enlisted, or its machine deleted, between boots).
    system_id: Option<String>,
}

/// Every interface's boots, and what is known of addresses. Pure: the caller passes the times.
#[derive(Debug, Default)]
pub(crate) struct Timelines {
    by_mac: HashMap<String, Boots>,
    /// Which interface an address is (and when that was last seen).
    by_address: HashMap<IpAddr, (String, u64)>,
    /// Steps of an address whose interface is not known yet.
    waiting: HashMap<IpAddr, Vec<BootStep>>,
}

fn new_boot(mac: &str, step: BootStep) -> Boot {
    Boot {
        mac: mac.to_string(),
        started_ms: step.at_ms,
        steps: vec![step],
        dropped_steps: 0,
    }
}

/// Adds a step in time order (a step that waited for its address may be older than the last),
/// dropping the earliest after the first beyond [`MAX_STEPS`].
fn push(boot: &mut Boot, step: BootStep) {
    let at = boot.steps.partition_point(|s| s.at_ms <= step.at_ms);
    boot.steps.insert(at, step);
    if boot.steps.len() > MAX_STEPS {
        boot.steps.remove(1);
        boot.dropped_steps += 1;
    }
    boot.started_ms = boot.steps.first().map_or(boot.started_ms, |s| s.at_ms);
}

/// The task the boot's agent was last told, if it asked.
fn last_task(boot: &Boot) -> Option<&str> {
    boot.steps.iter().rev().find_map(|s| match &s.step {
        Step::AgentTask { task } => Some(task.as_str()),
        _ => None,
    })
}

impl Timelines {
    /// Records a step of `mac`'s boot; `starts_boot` (a firmware's PXE DISCOVER) makes it the
    /// first step of a new boot, the current one becoming the previous (unless the current one
    /// has seen nothing but DHCP yet: firmware retransmitting). An agent's task that
    /// repeats the last one it was told is not a step (a rescue agent asks every 10 s).
    /// Returns whether a step was added.
    pub(crate) fn record(&mut self, mac: &str, step: BootStep, starts_boot: bool) -> bool {
        let now = step.at_ms;
        if let Some(boots) = self.by_mac.get_mut(mac) {
            if let Step::AgentTask { task } = &step.step
                && last_task(&boots.current) == Some(task.as_str())
            {
                return false;
            }
            boots.last_ms = boots.last_ms.max(now);
            // Firmware sends DISCOVER again until it has its offer: a boot that has seen only
            // DHCP is still the same one.
            let still_in_dhcp = boots
                .current
                .steps
                .iter()
                .all(|s| matches!(s.step, Step::Dhcp { .. }));
            if starts_boot && !still_in_dhcp {
                let done = std::mem::replace(&mut boots.current, new_boot(mac, step));
                boots.previous = Some(done);
                boots.system_id = None;
            } else {
                push(&mut boots.current, step);
            }
            return true;
        }
        if self.by_mac.len() >= MAX_INTERFACES
            && let Some(oldest) = self
                .by_mac
                .iter()
                .min_by_key(|(_, b)| b.last_ms)
                .map(|(m, _)| m.clone())
        {
            self.by_mac.remove(&oldest);
        }
        self.by_mac.insert(
            mac.to_string(),
            Boots {
                current: new_boot(mac, step),
                previous: None,
                last_ms: now,
                system_id: None,
            },
        );
        true
    }

    /// Learns that `address` is `mac` (a DHCP ACK, an iPXE script or an agent's call came from
    /// it), and files the steps that waited for it under `mac`'s boot.
    pub(crate) fn learn_address(&mut self, address: IpAddr, mac: &str, now_ms: u64) {
        if !self.by_address.contains_key(&address)
            && self.by_address.len() >= MAX_ADDRESSES
            && let Some(oldest) = self
                .by_address
                .iter()
                .min_by_key(|(_, (_, seen))| *seen)
                .map(|(a, _)| *a)
        {
            self.by_address.remove(&oldest);
        }
        self.by_address.insert(address, (mac.to_string(), now_ms));
        let waited = self.waiting.remove(&address).unwrap_or_default();
        for step in waited
            .into_iter()
            .filter(|s| now_ms.saturating_sub(s.at_ms) <= MAX_WAIT_MS)
        {
            self.record(mac, step, false);
        }
    }

    /// The interface `address` is, if it was learned.
    pub(crate) fn mac_at(&self, address: IpAddr) -> Option<String> {
        self.by_address.get(&address).map(|(mac, _)| mac.clone())
    }

    /// Holds a step of an address whose interface is not known yet (bounded: the address
    /// waiting longest goes first, and an address keeps its latest steps).
    pub(crate) fn wait(&mut self, address: IpAddr, step: BootStep) {
        if !self.waiting.contains_key(&address)
            && self.waiting.len() >= MAX_WAITING_ADDRESSES
            && let Some(oldest) = self
                .waiting
                .iter()
                .min_by_key(|(_, steps)| steps.last().map_or(0, |s| s.at_ms))
                .map(|(a, _)| *a)
        {
            self.waiting.remove(&oldest);
        }
        let steps = self.waiting.entry(address).or_default();
        if steps.len() >= MAX_WAITING_STEPS {
            steps.remove(0);
        }
        steps.push(step);
    }

    /// The machine `mac` was resolved to in its current boot.
    pub(crate) fn system_id(&self, mac: &str) -> Option<String> {
        self.by_mac.get(mac).and_then(|b| b.system_id.clone())
    }

    /// Remembers the machine `mac` belongs to.
    pub(crate) fn set_system_id(&mut self, mac: &str, system_id: &str) {
        if let Some(b) = self.by_mac.get_mut(mac) {
            b.system_id = Some(system_id.to_string());
        }
    }

    /// Of `macs`, the one whose boot was seen last.
    pub(crate) fn latest_of<'a>(&self, macs: impl Iterator<Item = &'a str>) -> Option<&'a str> {
        macs.filter_map(|m| self.by_mac.get(m).map(|b| (m, b.last_ms)))
            .max_by_key(|(_, last)| *last)
            .map(|(m, _)| m)
    }

    /// `mac`'s current and previous boot.
    pub(crate) fn boots(&self, mac: &str) -> Option<(Boot, Option<Boot>)> {
        self.by_mac
            .get(mac)
            .map(|b| (b.current.clone(), b.previous.clone()))
    }
}

/// Which of a machine's interfaces a step the machine made (an agent's call, power) belongs to:
/// the one whose boot was seen last, else the boot interface, else the first.
fn interface_of(timelines: &Timelines, m: &Machine) -> Option<String> {
    timelines
        .latest_of(m.interfaces.iter().map(|i| i.mac.as_str()))
        .map(str::to_string)
        .or_else(|| m.interfaces.iter().find(|i| i.boot).map(|i| i.mac.clone()))
        .or_else(|| m.interfaces.first().map(|i| i.mac.clone()))
}

impl Service {
    fn timelines(&self) -> std::sync::MutexGuard<'_, Timelines> {
        match self.timelines.lock() {
            Ok(t) => t,
            // A panic while holding it left at worst a half-added step: still readable.
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Tells live views that `mac`'s machine's timeline has a new step, resolving the machine
    /// once per boot (outside the lock: it reads the MAC index).
    fn timeline_changed(&self, mac: &str) {
        let known = self.timelines().system_id(mac);
        let system_id = match known {
            Some(id) => id,
            None => match self.machine_by_mac(mac) {
                Ok(Some(m)) => {
                    self.timelines().set_system_id(mac, &m.system_id);
                    m.system_id.clone()
                }
                // Unknown (enlisting) or unreadable: nobody shows it yet.
                _ => return,
            },
        };
        // No receiver (no page open) is not an error.
        let _ = self.timeline_changes.send(system_id);
    }

    /// A DHCP reply sent to `mac`. `starts_boot` when it answered a firmware's PXE DISCOVER (a
    /// new boot); `bound` is the address an ACK gave it (then the address is `mac`).
    pub fn boot_step_dhcp(&self, mac: &str, step: Step, starts_boot: bool, bound: Option<IpAddr>) {
        let now = ids::now_ms();
        {
            let mut t = self.timelines();
            t.record(mac, BootStep { at_ms: now, step }, starts_boot);
            if let Some(address) = bound {
                t.learn_address(address, mac, now);
            }
        }
        self.timeline_changed(mac);
    }

    /// The iPXE script `mac` was handed, asked for from `peer`.
    pub fn boot_step_script(&self, mac: &str, peer: Option<IpAddr>, step: Step) {
        let Ok(mac) = ids::normalize_mac(mac) else {
            return;
        };
        let now = ids::now_ms();
        {
            let mut t = self.timelines();
            t.record(&mac, BootStep { at_ms: now, step }, false);
            if let Some(address) = peer {
                t.learn_address(address, &mac, now);
            }
        }
        self.timeline_changed(&mac);
    }

    /// A step that only knows the address it came from (a TFTP transfer, a download), which
    /// began `took_ms` ago (its time is its start, so it reads in order with steps that came
    /// while it ran): filed under the interface that address is (learned, else its active DHCP
    /// lease), else held until that is learned.
    pub fn boot_step_from(&self, peer: IpAddr, took_ms: u64, step: Step) {
        let step = BootStep {
            at_ms: ids::now_ms().saturating_sub(took_ms),
            step,
        };
        let learned = self.timelines().mac_at(peer);
        let mac = learned.or_else(|| self.leased_to(peer));
        match mac {
            Some(mac) => {
                {
                    let mut t = self.timelines();
                    t.learn_address(peer, &mac, step.at_ms);
                    t.record(&mac, step, false);
                }
                self.timeline_changed(&mac);
            }
            None => self.timelines().wait(peer, step),
        }
    }

    /// The MAC an active lease gives `peer` (after a restart, before the next DHCP ACK).
    fn leased_to(&self, peer: IpAddr) -> Option<String> {
        let IpAddr::V4(v4) = peer else {
            return None;
        };
        let now = ids::now_ms();
        self.leases_where(|ip| ip == v4)
            .ok()?
            .into_iter()
            .find(|l| l.is_active(now))
            .and_then(|l| l.mac)
    }

    /// A step machine `m` made (its agent's call from `peer`, a power switch).
    pub fn boot_step_of(&self, m: &Machine, peer: Option<IpAddr>, step: Step) {
        let now = ids::now_ms();
        let added = {
            let mut t = self.timelines();
            let Some(mac) = interface_of(&t, m) else {
                return;
            };
            let added = t.record(&mac, BootStep { at_ms: now, step }, false);
            t.set_system_id(&mac, &m.system_id);
            if let Some(address) = peer {
                t.learn_address(address, &mac, now);
            }
            added
        };
        if added {
            let _ = self.timeline_changes.send(m.system_id.clone());
        }
    }

    /// The boots seen of machine `system_id` since the daemon started (its interface seen
    /// last), if `p` may see the machine.
    pub fn boot_timeline(
        &self,
        p: &Principal,
        system_id: &str,
    ) -> Result<MachineTimeline, ServiceError> {
        let m = self.machine(p, system_id)?;
        Ok(self.boot_timeline_of(&m))
    }

    /// The boots seen of machine `m` (its interface seen last), for a caller that already may
    /// see it.
    pub fn boot_timeline_of(&self, m: &Machine) -> MachineTimeline {
        let t = self.timelines();
        let boots = t
            .latest_of(m.interfaces.iter().map(|i| i.mac.as_str()))
            .and_then(|mac| t.boots(mac));
        let (current, previous) = match boots {
            Some((current, previous)) => (Some(current), previous),
            None => (None, None),
        };
        MachineTimeline {
            system_id: m.system_id.clone(),
            current,
            previous,
        }
    }

    /// The ids of machines whose timeline got a step, from now on (the page's live stream).
    pub fn subscribe_timeline(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.timeline_changes.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::timeline::ScriptPlan;
    use std::net::Ipv4Addr;

    fn at(ms: u64, step: Step) -> BootStep {
        BootStep { at_ms: ms, step }
    }

    fn script(ms: u64) -> BootStep {
        at(
            ms,
            Step::IpxeScript {
                plan: ScriptPlan::Ephemeral,
            },
        )
    }

    fn task(ms: u64, task: &str) -> BootStep {
        at(ms, Step::AgentTask { task: task.into() })
    }

    #[test]
    fn a_new_boot_keeps_the_one_before_and_drops_older_ones() {
        let mut t = Timelines::default();
        t.record("m", script(1), true);
        t.record("m", at(2, Step::Inventory), false);
        t.record("m", script(10), true);
        let (current, previous) = t.boots("m").unwrap();
        assert_eq!(current.started_ms, 10);
        assert_eq!(current.steps.len(), 1);
        let previous = previous.unwrap();
        assert_eq!(previous.steps.len(), 2);
        assert_eq!(previous.started_ms, 1);
        t.record("m", script(20), true);
        let (current, previous) = t.boots("m").unwrap();
        assert_eq!(
            (current.started_ms, previous.unwrap().started_ms),
            (20, 10),
            "only the current and the previous boot are kept"
        );
    }

    fn discover(ms: u64) -> BootStep {
        at(
            ms,
            Step::Dhcp {
                request: "discover".into(),
                reply: "offer".into(),
                arch: Some(0),
                vendor_class: None,
                ipxe: false,
                address: None,
                boot_file: None,
            },
        )
    }

    #[test]
    fn a_discover_sent_again_is_the_same_boot() {
        let mut t = Timelines::default();
        t.record("m", script(1), true);
        t.record("m", discover(10), true);
        t.record("m", discover(14), true);
        let (current, previous) = t.boots("m").unwrap();
        assert_eq!(current.steps.len(), 2, "a retransmission is no new boot");
        assert_eq!(previous.unwrap().started_ms, 1);
        t.record("m", script(20), false);
        t.record("m", discover(30), true);
        let (current, previous) = t.boots("m").unwrap();
        assert_eq!(current.started_ms, 30);
        assert_eq!(previous.unwrap().steps.len(), 3);
    }

    #[test]
    fn a_long_boot_keeps_its_first_and_latest_steps() {
        let mut t = Timelines::default();
        for i in 0..(MAX_STEPS as u64 + 5) {
            t.record("m", at(i, Step::Inventory), i == 0);
        }
        let (boot, _) = t.boots("m").unwrap();
        assert_eq!(boot.steps.len(), MAX_STEPS);
        assert_eq!(boot.dropped_steps, 5);
        assert_eq!(boot.steps[0].at_ms, 0, "the boot's first step stays");
        assert_eq!(boot.steps[1].at_ms, 6, "the earliest after it went");
        assert_eq!(boot.steps.last().unwrap().at_ms, MAX_STEPS as u64 + 4);
    }

    #[test]
    fn the_interface_seen_longest_ago_goes_first_when_full() {
        let mut t = Timelines::default();
        for i in 0..MAX_INTERFACES as u64 {
            t.record(&format!("mac{i}"), script(i + 100), true);
        }
        // mac0 is seen again, so mac1 is now the oldest.
        t.record("mac0", at(5000, Step::Inventory), false);
        t.record("new", script(6000), true);
        assert!(t.boots("new").is_some());
        assert!(t.boots("mac0").is_some());
        assert!(t.boots("mac1").is_none(), "the oldest went");
        assert!(t.boots("mac2").is_some());
        assert_eq!(t.by_mac.len(), MAX_INTERFACES);
    }

    #[test]
    fn steps_of_an_unknown_address_wait_for_it_and_land_in_time_order() {
        let mut t = Timelines::default();
        let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 50));
        t.record("m", script(1), true);
        t.wait(
            ip,
            at(
                5,
                Step::Tftp {
                    file: "undionly.kpxe".into(),
                    bytes: 10,
                    size: 10,
                    ms: 1,
                    outcome: crate::model::timeline::TransferOutcome::Completed,
                },
            ),
        );
        t.record("m", script(9), false);
        assert_eq!(t.mac_at(ip), None);
        t.learn_address(ip, "m", 9);
        assert_eq!(t.mac_at(ip).as_deref(), Some("m"));
        let (boot, _) = t.boots("m").unwrap();
        let times: Vec<u64> = boot.steps.iter().map(|s| s.at_ms).collect();
        assert_eq!(times, [1, 5, 9]);
        // Bounded: many unknown addresses keep only the latest few.
        for i in 0..(MAX_WAITING_ADDRESSES as u8 + 10) {
            t.wait(
                IpAddr::V4(Ipv4Addr::new(10, 0, 0, i)),
                script(100 + u64::from(i)),
            );
        }
        assert_eq!(t.waiting.len(), MAX_WAITING_ADDRESSES);
        assert!(
            !t.waiting
                .contains_key(&IpAddr::V4(Ipv4Addr::new(10, 0, 0, 0)))
        );
    }

    #[test]
    fn a_step_that_waited_too_long_is_of_an_earlier_boot() {
        let mut t = Timelines::default();
        let old = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 51));
        let busy = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 52));
        t.wait(old, script(1_000));
        for i in 0..(MAX_WAITING_STEPS as u64 + 2) {
            t.wait(busy, at(200_000 + i, Step::Inventory));
        }
        t.record("m", script(200_100), true);
        t.learn_address(old, "m", 200_100);
        assert_eq!(t.boots("m").unwrap().0.steps.len(), 1, "too old to join");
        t.learn_address(busy, "m", 200_100);
        let (boot, _) = t.boots("m").unwrap();
        assert_eq!(boot.steps.len(), 1 + MAX_WAITING_STEPS, "the latest waited");
        assert_eq!(boot.started_ms, 200_002, "the earliest went");
    }

    #[test]
    fn an_agent_task_is_a_step_when_it_changes() {
        let mut t = Timelines::default();
        t.record("m", script(1), true);
        assert!(t.record("m", task(2, "rescue"), false));
        assert!(!t.record("m", task(3, "rescue"), false));
        assert!(t.record("m", task(4, "poweroff"), false));
        let (boot, _) = t.boots("m").unwrap();
        assert_eq!(boot.steps.len(), 3);
    }
}
