//! What a machine boots, and the appliance side of the agent that runs in the ephemeral
//! environment. A machine's status decides both: the boot plan (ephemeral environment, local disk,
//! or enlistment for an unknown MAC) and the agent's task. Each ephemeral boot gets a fresh token,
//! valid for that machine and that boot only; only its hash is stored, with the status the boot
//! was handed out for ([`crate::model::BootSession`]). Every agent call is checked against one
//! rule, [`lifecycle::agent_may`]: a call its machine's status (or a boot that is over) does not
//! take is refused with 409 and the status. Enlistment is in `enlist.rs`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Principal, Service, ServiceError};
use crate::model::lifecycle::{self, AgentCall};
use crate::model::{
    Action, BootSession, Disk, EraseMode, Interface, Machine, Status, TestResult, TestResults,
    TestRun, ids,
};
use crate::store::tables;

/// What a network-booting machine is told to boot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BootPlan {
    /// The ephemeral environment with the agent, for the machine's current work.
    Ephemeral { system_id: String, token: String },
    /// Boot from the local disk (Deployed, and machines with nothing to do).
    LocalDisk { system_id: String },
    /// An unknown machine: the ephemeral environment in enlistment mode.
    Enlist,
    /// Unknown machine and enlistment is off: boot from the local disk.
    Ignore,
}

impl BootPlan {
    /// What the machine is told to boot, in a word or two, for logs.
    pub fn describe(&self) -> &'static str {
        match self {
            BootPlan::Ephemeral { .. } => "ephemeral environment",
            BootPlan::LocalDisk { .. } => "local disk",
            BootPlan::Enlist => "enlistment",
            BootPlan::Ignore => "local disk (unknown machine)",
        }
    }
}

/// The agent's next job, decided by the machine's status.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "task", rename_all = "snake_case")]
pub enum AgentTask {
    /// Take the inventory; with `create_bmc_user` (the machine's power is not configured) also
    /// create a BMC user for rackbox, whose credentials come back with the inventory.
    Commission {
        #[serde(default)]
        create_bmc_user: bool,
    },
    Test {
        tests: Vec<String>,
    },
    Deploy(Box<DeployTask>),
    Erase {
        mode: EraseMode,
    },
    Rescue {
        ssh_keys: Vec<String>,
    },
    Poweroff,
    Reboot,
    Wait {
        seconds: u64,
    },
}

/// Everything the agent needs to write an image and seed cloud-init.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeployTask {
    pub image_url: String,
    pub image_sha256: String,
    pub image_format: String,
    pub image_size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_disk: Option<String>,
    pub hostname: String,
    pub ssh_keys: Vec<String>,
    pub user_data: String,
    pub instance_id: String,
    /// Where the deployed OS reports that it booted, with `report_token`.
    pub report_url: String,
    pub report_token: String,
}

/// The parts of the agent's inventory that rackbox's model uses (the whole document is kept too).
#[derive(Clone, Debug, Default, Deserialize)]
pub(super) struct InventorySummary {
    #[serde(default)]
    cpu_count: u32,
    #[serde(default)]
    memory_mib: u64,
    #[serde(default)]
    pub(super) architecture: Option<String>,
    #[serde(default)]
    disks: Vec<Disk>,
    #[serde(default)]
    pub(super) interfaces: Vec<InventoryNic>,
    #[serde(default)]
    bmc: InventoryBmc,
}

/// What the inventory says about the machine's BMC, as far as power settings go.
#[derive(Clone, Debug, Default, Deserialize)]
struct InventoryBmc {
    #[serde(default)]
    lan: Option<InventoryBmcLan>,
    #[serde(default)]
    redfish_host_interface: Option<InventoryRedfish>,
    #[serde(default)]
    redfish: Option<InventoryRedfishBmc>,
}

/// What the agent learnt from the Redfish service behind the host interface.
#[derive(Clone, Debug, Default, Deserialize)]
struct InventoryRedfishBmc {
    #[serde(default)]
    address: String,
    #[serde(default)]
    manager_id: String,
    #[serde(default)]
    system_id: String,
    #[serde(default)]
    certificate_sha256: String,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
struct InventoryBmcLan {
    #[serde(default)]
    channel: u8,
    ip_address: String,
}

#[derive(Clone, Debug, Deserialize)]
struct InventoryRedfish {
    #[serde(default)]
    service_address: String,
    #[serde(default)]
    service_port: u16,
}

/// The BMC user the agent created: travels in the inventory's `bmc.credentials`, is taken out
/// before the inventory is stored, and ends up only in the power parameters (masked for
/// everyone but admins). Its `Debug` hides the password.
#[derive(Clone, Deserialize)]
struct BmcCredentials {
    username: String,
    password: String,
}

impl std::fmt::Debug for BmcCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "BmcCredentials {{ username: {:?}, password: \"********\" }}",
            self.username
        )
    }
}

/// Removes `bmc.credentials` from an inventory document and returns it when it is well formed
/// (a malformed one is dropped: its text is never echoed back).
/// Fuzzing entry point (fuzz/fuzz_targets/agent_reports.rs): runs the pure part of what
/// [`Service::agent_inventory`] and [`Service::agent_complete`] do with an agent's JSON body
/// (taking the BMC credentials out, reading the inventory's shape and MACs and the BMC
/// addresses, reading a testing run's results) without a store. Public only so that the fuzz
/// crate, which is outside this crate, can reach these private parsers; not an API.
#[doc(hidden)]
pub fn fuzz_agent_report(body: &[u8]) {
    let Ok(mut doc) = serde_json::from_slice::<serde_json::Value>(body) else {
        return;
    };
    let _ = take_bmc_credentials(&mut doc);
    if let Ok(summary) = serde_json::from_value::<InventorySummary>(doc.clone()) {
        for nic in &summary.interfaces {
            let _ = ids::normalize_mac(&nic.mac);
        }
        if let Some(rf) = &summary.bmc.redfish {
            let _ = usable_bmc_address(&rf.address);
        }
        if let Some(lan) = &summary.bmc.lan {
            let _ = usable_bmc_address(&lan.ip_address);
        }
    }
    if let Ok(Some(results)) = testing_results(doc.get("results")) {
        let _ = TestRun::new("fuzz", 0, results).failure_reason();
    }
}

fn take_bmc_credentials(inventory: &mut serde_json::Value) -> Option<BmcCredentials> {
    let raw = inventory
        .get_mut("bmc")?
        .as_object_mut()?
        .remove("credentials")?;
    serde_json::from_value::<BmcCredentials>(raw)
        .ok()
        .filter(|c| !c.username.is_empty() && !c.password.is_empty())
}

/// An address the BMC reports that could be one to reach it at: IPv4, not 0.0.0.0 or broadcast.
fn usable_bmc_address(ip: &str) -> bool {
    ip.parse::<std::net::Ipv4Addr>()
        .is_ok_and(|a| !a.is_unspecified() && !a.is_broadcast())
}

#[derive(Clone, Debug, Deserialize)]
pub(super) struct InventoryNic {
    name: String,
    pub(super) mac: String,
    #[serde(default)]
    boot: bool,
}

pub(super) fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A boot token: `rbt_<system_id>_<secret>` (the id says which machine's hash to check).
pub(super) fn token_for(system_id: &str, secret: &str) -> String {
    format!("rbt_{system_id}_{secret}")
}

/// A new boot token for the machine and its hash (the only part that is stored).
pub(super) fn mint_token(system_id: &str) -> (String, String) {
    let token = token_for(system_id, &ids::random_token(32));
    let hash = sha256_hex(&token);
    (token, hash)
}

/// The refusal of an agent call that [`lifecycle::agent_may`] does not allow.
fn refuse(call: AgentCall, m: &Machine) -> ServiceError {
    let message = if lifecycle::boot_is_current(m) {
        format!(
            "machine {} is {}: it takes no {} from its agent now",
            m.system_id,
            m.status,
            call.name()
        )
    } else {
        format!(
            "machine {} is {}: the boot this token was given for is over, so it takes no {} \
             (its next network boot gets a new token)",
            m.system_id,
            m.status,
            call.name()
        )
    };
    ServiceError::AgentCall {
        message,
        status: m.status,
    }
}

/// Checks `call` against the one rule for agent calls.
fn allow(call: AgentCall, m: &Machine) -> Result<(), ServiceError> {
    if lifecycle::agent_may(call, m) {
        Ok(())
    } else {
        Err(refuse(call, m))
    }
}

impl Service {
    /// Decides what the machine with `mac` boots. An ephemeral boot gets a new per-boot token
    /// (the previous one stops working), bound to the status it is handed out for. This and a
    /// first enlistment are the only places a token is made: rackbox hands out the boot itself.
    pub async fn boot_plan(&self, mac: &str) -> Result<BootPlan, ServiceError> {
        let mac = ids::normalize_mac(mac).map_err(ServiceError::Invalid)?;
        let Some(m) = self.machine_by_mac(&mac)? else {
            return Ok(if self.enlist.enabled {
                BootPlan::Enlist
            } else {
                BootPlan::Ignore
            });
        };
        if !lifecycle::boots_ephemeral(&m) {
            return Ok(BootPlan::LocalDisk {
                system_id: m.system_id.clone(),
            });
        }
        let (token, hash) = mint_token(&m.system_id);
        let status = m.status;
        self.modify_machine(&m.system_id, "rackbox", move |_, m| {
            if m.status != status {
                return Err(ServiceError::Conflict(format!(
                    "machine {} changed status while booting; boot again",
                    m.system_id
                )));
            }
            m.boot_session = Some(BootSession {
                token_sha256: hash,
                issued_for: status,
                over: false,
                enlist_key_sha256: None,
            });
            let said = "network-booted the ephemeral environment".to_string();
            Ok(Some(("netboot", said)))
        })
        .await?;
        Ok(BootPlan::Ephemeral {
            system_id: m.system_id.clone(),
            token,
        })
    }

    /// Which machine a per-boot token belongs to (whether its boot is still current is for
    /// each call to check: see [`lifecycle::agent_may`]).
    pub fn agent_machine(&self, token: &str) -> Result<Machine, ServiceError> {
        let bad = || ServiceError::Unauthorized("invalid or expired boot token".into());
        let rest = token.strip_prefix("rbt_").ok_or_else(bad)?;
        let (id, _) = rest.split_once('_').ok_or_else(bad)?;
        let m = self.index_get(id).ok_or_else(bad)?;
        let hash = sha256_hex(token);
        match &m.boot_session {
            Some(boot)
                if super::users::constant_time_eq(
                    boot.token_sha256.as_bytes(),
                    hash.as_bytes(),
                ) =>
            {
                Ok((*m).clone())
            }
            _ => Err(bad()),
        }
    }

    /// The agent's next task. `image_base` is the URL prefix images are downloaded from. A boot
    /// that is over is told to power off, whatever the machine does now: the work of a later
    /// status (a deploy's user data, the owner's keys) goes only to the boot handed out for it.
    pub fn agent_task(
        &self,
        m: &Machine,
        token: &str,
        public_url: &str,
    ) -> Result<AgentTask, ServiceError> {
        let owner_keys = |m: &Machine| -> Result<Vec<String>, ServiceError> {
            Ok(match &m.owner {
                Some(o) => self
                    .user_record(o)?
                    .map(|u| u.ssh_keys.into_iter().map(|k| k.key).collect())
                    .unwrap_or_default(),
                None => Vec::new(),
            })
        };
        allow(AgentCall::Task, m)?;
        if !lifecycle::boot_is_current(m) {
            return Ok(AgentTask::Poweroff);
        }
        Ok(match m.status {
            Status::Commissioning => AgentTask::Commission {
                create_bmc_user: m.power.is_unconfigured(),
            },
            Status::Testing => AgentTask::Test {
                tests: vec!["disk-read".into(), "memory".into()],
            },
            Status::Deploying if !m.deploy_written => {
                let target = m.deploy.clone().unwrap_or_default_target();
                let images = self
                    .images
                    .get()
                    .ok_or_else(|| ServiceError::Conflict("the image cache is not open".into()))?;
                let image = images
                    .deploy_image(&target.image, &target.osystem, &m.architecture)
                    .map_err(|e| ServiceError::Conflict(format!("no image to deploy: {e}")))?;
                AgentTask::Deploy(Box::new(DeployTask {
                    image_url: format!("{public_url}/images/{}", image.name),
                    image_sha256: image.sha256.clone(),
                    image_format: image.format.as_str().to_string(),
                    image_size: image.size,
                    target_disk: None,
                    hostname: m.hostname.clone(),
                    ssh_keys: target.ssh_keys.clone(),
                    user_data: target.user_data.clone(),
                    instance_id: format!("{}-{}", m.system_id, m.generation),
                    report_url: format!("{public_url}/api/agent/v1/deployed"),
                    report_token: token.to_string(),
                }))
            }
            Status::Deploying => AgentTask::Reboot,
            Status::DiskErasing => AgentTask::Erase {
                mode: m.erase.unwrap_or(EraseMode::Quick),
            },
            Status::EnteringRescueMode | Status::RescueMode => AgentTask::Rescue {
                ssh_keys: owner_keys(m)?,
            },
            _ => AgentTask::Poweroff,
        })
    }

    /// The inventory the commissioning agent took (`/inventory`): see
    /// [`Service::record_inventory`].
    pub async fn agent_inventory(
        &self,
        m: &Machine,
        inventory: serde_json::Value,
    ) -> Result<Machine, ServiceError> {
        allow(AgentCall::Inventory, m)?;
        self.record_inventory(&m.system_id, inventory, m.status)
            .await
    }

    /// Records an inventory while the machine is still `expected` (Commissioning, or New for
    /// enlistment): the whole document, and the parts allocation uses.
    ///
    /// When the inventory names the BMC's LAN address, the machine records it
    /// ([`Machine::discovered_bmc`], event `bmc_discovered`), and a machine whose power is not
    /// configured gets IPMI power settings from it, with the BMC user the agent created.
    pub(super) async fn record_inventory(
        &self,
        system_id: &str,
        mut inventory: serde_json::Value,
        expected: Status,
    ) -> Result<Machine, ServiceError> {
        let credentials = take_bmc_credentials(&mut inventory);
        let summary: InventorySummary = serde_json::from_value(inventory.clone()).map_err(|e| {
            ServiceError::Invalid(format!("inventory does not have rackbox's shape: {e}"))
        })?;
        let mut interfaces = Vec::new();
        for nic in &summary.interfaces {
            let mac = ids::normalize_mac(&nic.mac)
                .map_err(|e| ServiceError::Invalid(format!("inventory interfaces: {e}")))?;
            interfaces.push(Interface {
                name: nic.name.clone(),
                mac,
                boot: nic.boot,
            });
        }
        let m = self
            .modify_machine(system_id, "agent", move |tx, m| {
                if m.status != expected {
                    return Err(ServiceError::Conflict(format!(
                        "machine {} is {}, not taking an inventory",
                        m.system_id, m.status
                    )));
                }
                // Keep the boot flag of the interface rackbox knows the machine boots from.
                let known_boot: Vec<String> = m
                    .interfaces
                    .iter()
                    .filter(|i| i.boot)
                    .map(|i| i.mac.clone())
                    .collect();
                let mut new_ifaces = interfaces;
                if !known_boot.is_empty() {
                    for i in &mut new_ifaces {
                        i.boot = known_boot.contains(&i.mac);
                    }
                }
                if new_ifaces.is_empty() {
                    new_ifaces = m.interfaces.clone();
                }
                for i in &new_ifaces {
                    if let Some(owner) = tables::machine_by_mac_in(tx, &i.mac)?
                        && owner != m.system_id
                    {
                        return Err(ServiceError::Conflict(format!(
                            "MAC {} already belongs to machine {owner}",
                            i.mac
                        )));
                    }
                }
                m.cpu_count = summary.cpu_count;
                m.memory_mib = summary.memory_mib;
                if let Some(a) = &summary.architecture {
                    m.architecture = a.clone();
                }
                m.disks = summary.disks.clone();
                m.interfaces = new_ifaces;
                m.inventory = Some(inventory);
                let said = format!(
                    "inventory: {} CPUs, {} MiB, {} disk(s), {} NIC(s)",
                    m.cpu_count,
                    m.memory_mib,
                    m.disks.len(),
                    m.interfaces.len()
                );
                Ok(Some(("inventory", said)))
            })
            .await?;
        let m = m.ok_or_else(|| ServiceError::Conflict("inventory not recorded".into()))?;
        self.record_bmc(m, &summary.bmc, credentials).await
    }

    /// Records the BMC the inventory names and, on a machine without power settings, takes
    /// them from it. Never overwrites settings an operator made.
    ///
    /// A Redfish BMC found through the host interface comes first (as in MAAS), with its
    /// certificate pinned; else the IPMI LAN channel read in-band.
    async fn record_bmc(
        &self,
        m: Machine,
        bmc: &InventoryBmc,
        credentials: Option<BmcCredentials>,
    ) -> Result<Machine, ServiceError> {
        let redfish = bmc
            .redfish
            .clone()
            .filter(|r| usable_bmc_address(&r.address));
        let lan = bmc
            .lan
            .clone()
            .filter(|l| usable_bmc_address(&l.ip_address));
        let mut params = serde_json::Map::new();
        let (power_type, address, mut said) = match (&redfish, &lan) {
            (Some(rf), _) => {
                params.insert("power_address".into(), rf.address.clone().into());
                if !rf.system_id.is_empty() {
                    params.insert("node_id".into(), rf.system_id.clone().into());
                }
                if !rf.certificate_sha256.is_empty() {
                    params.insert(
                        "certificate_sha256".into(),
                        rf.certificate_sha256.clone().into(),
                    );
                }
                (
                    "redfish",
                    rf.address.clone(),
                    format!(
                        "Redfish BMC discovered at {} through the host interface (manager {}, \
                         system {})",
                        rf.address, rf.manager_id, rf.system_id
                    ),
                )
            }
            (None, Some(lan)) => {
                params.insert("power_address".into(), lan.ip_address.clone().into());
                (
                    "ipmi",
                    lan.ip_address.clone(),
                    format!(
                        "BMC discovered at {} (IPMI LAN channel {})",
                        lan.ip_address, lan.channel
                    ),
                )
            }
            (None, None) => {
                if let Some(rf) = &bmc.redfish_host_interface {
                    // The host interface is the host's own way in (usually link-local over a
                    // USB NIC): not an address the appliance can reach.
                    tracing::info!(
                        system_id = %m.system_id,
                        address = %rf.service_address,
                        port = rf.service_port,
                        error = bmc.redfish.as_ref().and_then(|r| r.error.as_deref()),
                        "Redfish host interface reported; no BMC address learnt from it"
                    );
                }
                if credentials.is_some() {
                    tracing::warn!(system_id = %m.system_id, "BMC user reported without a BMC address; ignored");
                }
                return Ok(m);
            }
        };
        if let Some(e) = bmc.redfish.as_ref().and_then(|r| r.error.as_deref()) {
            said.push_str(&format!("; Redfish host interface: {e}"));
        }
        let now = crate::model::ids::now_ms();
        let changed = self
            .modify_machine(&m.system_id, "agent", move |_, m| {
                let user = credentials.as_ref().map(|c| c.username.clone());
                let mut applied = false;
                if m.power.is_unconfigured() {
                    if let Some(c) = &credentials {
                        params.insert("power_user".into(), c.username.clone().into());
                        params.insert("power_pass".into(), c.password.clone().into());
                    }
                    match crate::power::validate(power_type, &params) {
                        Ok(()) => {
                            m.power = crate::model::PowerSettings {
                                power_type: power_type.into(),
                                parameters: params,
                            };
                            applied = true;
                            said.push_str(&match &user {
                                Some(u) => format!("; power set to {power_type} with BMC user {u}"),
                                None => format!(
                                    "; power set to {power_type} without credentials (no BMC \
                                     user was created): set power_user and power_pass"
                                ),
                            });
                        }
                        Err(e) => said.push_str(&format!("; power not set: {e}")),
                    }
                } else {
                    let theirs = m
                        .power
                        .parameters
                        .get("power_address")
                        .and_then(|a| a.as_str())
                        .unwrap_or("");
                    said.push_str(&format!(
                        "; the machine's power settings ({} {theirs}) are kept",
                        m.power.power_type
                    ));
                }
                m.discovered_bmc = Some(crate::model::DiscoveredBmc {
                    power_type: power_type.into(),
                    address,
                    user,
                    applied,
                    discovered_ms: now,
                });
                Ok(Some(("bmc_discovered", said)))
            })
            .await?;
        Ok(changed.unwrap_or(m))
    }

    /// Progress from the agent: the status message says it (percent when known).
    pub async fn agent_progress(
        &self,
        m: &Machine,
        message: &str,
        percent: Option<f64>,
    ) -> Result<(), ServiceError> {
        allow(AgentCall::Progress, m)?;
        let text = match percent {
            Some(p) => format!("{message} ({p:.0}%)"),
            None => message.to_string(),
        };
        self.note(&m.system_id, m.status, text).await
    }

    /// The agent finished its task. `results` is the task's report; for a testing run its
    /// `tests` are kept as the machine's test results, and a failed test fails the run whatever
    /// the agent concluded.
    pub async fn agent_complete(
        &self,
        m: &Machine,
        message: String,
        results: Option<serde_json::Value>,
    ) -> Result<Machine, ServiceError> {
        allow(AgentCall::Complete, m)?;
        if m.status == Status::Deploying && m.deploy_written {
            // Said already (the agent repeats a report whose answer it lost).
            return Ok(m.clone());
        }
        if let Some(tests) = test_results(m, results.as_ref())? {
            let run = self.record_test_run(m, tests).await?;
            if let Some(reason) = run.failure_reason() {
                return self
                    .report_in(&m.system_id, Action::Fail { reason }, m.status, "agent")
                    .await;
            }
        }
        if m.status == Status::Deploying {
            // The image is on the disk; Deployed only once the deployed OS reports in.
            return self.mark_deploy_written(m, message).await;
        }
        if m.status == Status::RescueMode {
            // An agent that started again in rescue mode (the machine rebooted) has its SSH
            // server up again: the machine already is where the report would take it.
            return Ok(m.clone());
        }
        self.report_in(
            &m.system_id,
            Action::Complete { message },
            m.status,
            "agent",
        )
        .await
    }

    /// The agent's task failed: the machine goes to the matching failed status with the reason
    /// (a testing run's `results.tests` are kept, as with [`Service::agent_complete`]).
    pub async fn agent_fail(
        &self,
        m: &Machine,
        reason: String,
        results: Option<serde_json::Value>,
    ) -> Result<Machine, ServiceError> {
        allow(AgentCall::Fail, m)?;
        if let Some(tests) = test_results(m, results.as_ref())? {
            self.record_test_run(m, tests).await?;
        }
        self.report_in(&m.system_id, Action::Fail { reason }, m.status, "agent")
            .await
    }

    /// Stores a testing run as the machine's latest, while the machine is still Testing.
    async fn record_test_run(
        &self,
        m: &Machine,
        results: Vec<TestResult>,
    ) -> Result<TestRun, ServiceError> {
        let run = TestRun::new(&m.system_id, ids::now_ms(), results);
        let stored = run.clone();
        let id = m.system_id.clone();
        self.store
            .write_essential(move |tx| -> Result<(), ServiceError> {
                let now: Machine = tables::get_in(tx, tables::MACHINES, &id)?
                    .ok_or_else(|| ServiceError::not_found("machine", &id))?;
                if now.status != Status::Testing {
                    return Err(ServiceError::Conflict(format!(
                        "machine {id} is {}, not testing",
                        now.status
                    )));
                }
                tables::put_in(tx, tables::TEST_RESULTS, &id, &stored)?;
                Ok(())
            })
            .await?;
        tracing::info!(system_id = %m.system_id, status = ?run.status, tests = run.results.len(), "test results recorded");
        Ok(run)
    }

    /// A machine's latest testing run, or none yet (whoever may see the machine may see its
    /// results).
    pub fn test_results(
        &self,
        p: &Principal,
        system_id: &str,
    ) -> Result<TestResults, ServiceError> {
        let m = self.machine(p, system_id)?;
        let rx = self.store.read()?;
        let run = tables::get(&rx, tables::TEST_RESULTS, &m.system_id)?;
        Ok(TestResults::of(&m.system_id, run))
    }

    /// The deployed OS reports that it booted from its disk: the deploy is done.
    pub async fn deployed_report(
        &self,
        m: &Machine,
        message: String,
    ) -> Result<Machine, ServiceError> {
        allow(AgentCall::Deployed, m).map_err(|e| match e {
            ServiceError::AgentCall { message, status }
                if status == Status::Deploying && lifecycle::boot_is_current(m) =>
            {
                ServiceError::AgentCall {
                    message: format!("{message}: its image is not written yet"),
                    status,
                }
            }
            e => e,
        })?;
        let message = if message.is_empty() {
            "deployed OS booted and reported in".to_string()
        } else {
            message
        };
        self.report_in(
            &m.system_id,
            Action::Complete { message },
            Status::Deploying,
            "deployed-os",
        )
        .await
    }

    async fn mark_deploy_written(
        &self,
        m: &Machine,
        message: String,
    ) -> Result<Machine, ServiceError> {
        let m = self
            .modify_machine(&m.system_id, "agent", move |_, m| {
                if m.status != Status::Deploying {
                    return Err(ServiceError::Conflict(format!(
                        "machine {} is {}, not deploying",
                        m.system_id, m.status
                    )));
                }
                m.deploy_written = true;
                m.status_message = if message.is_empty() {
                    "image written; waiting for the deployed OS to boot and report in".into()
                } else {
                    format!("{message}; waiting for the deployed OS to boot and report in")
                };
                Ok(Some(("image_written", m.status_message.clone())))
            })
            .await?;
        m.ok_or_else(|| ServiceError::Conflict("deploy state not recorded".into()))
    }
}

/// The per-test results of an agent report about a testing run (`results.tests`); None for
/// other work and for reports without them (older agents).
fn test_results(
    m: &Machine,
    results: Option<&serde_json::Value>,
) -> Result<Option<Vec<TestResult>>, ServiceError> {
    if m.status != Status::Testing {
        return Ok(None);
    }
    testing_results(results)
}

/// `results.tests` of a report, read as test results, whatever the machine's status.
fn testing_results(
    results: Option<&serde_json::Value>,
) -> Result<Option<Vec<TestResult>>, ServiceError> {
    let Some(tests) = results.and_then(|r| r.get("tests")) else {
        return Ok(None);
    };
    serde_json::from_value(tests.clone())
        .map(Some)
        .map_err(|e| {
            ServiceError::Invalid(format!("test results do not have rackbox's shape: {e}"))
        })
}

trait DefaultTarget {
    fn unwrap_or_default_target(self) -> crate::model::DeployTarget;
}

impl DefaultTarget for Option<crate::model::DeployTarget> {
    fn unwrap_or_default_target(self) -> crate::model::DeployTarget {
        self.unwrap_or(crate::model::DeployTarget {
            image: String::new(),
            osystem: String::new(),
            distro_series: String::new(),
            user_data: String::new(),
            ssh_keys: Vec::new(),
        })
    }
}
