//! What a machine boots, and the appliance side of the agent that runs in the ephemeral
//! environment. A machine's status decides both: the boot plan (ephemeral environment, local disk,
//! or enlistment for an unknown MAC) and the agent's task. Each ephemeral boot gets a fresh token,
//! valid for that machine and that boot only; only its hash is stored, with the status the boot
//! was handed out for ([`crate::model::BootSession`]). Every agent call is checked against one
//! rule, [`lifecycle::agent_may`]: a call its machine's status (or a boot that is over) does not
//! take is refused with 409 and the status. Enlistment is in `enlist.rs`.

use sha2::{Digest, Sha256};

use super::machines::macs_free;
use super::transition::read_machine;
use super::{Change, Principal, Service, ServiceError};
use crate::images::records::ImageFormat as StoredFormat;
use crate::model::agent_wire::{Complete, DeployTask, ImageFormat, PREFIX, Task, path};
use crate::model::inventory::{Bmc, BmcCredentials};
use crate::model::lifecycle::{self, AgentCall, Completion};
use crate::model::{
    Action, BootSession, EraseMode, Interface, Inventory, Machine, PowerType, Status, TaskProgress,
    TestResult, TestResults, TestRun, ids,
};

/// What a network-booting machine is told to boot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BootPlan {
    /// The ephemeral environment with the agent, for the machine's current work.
    Ephemeral {
        /// The machine booting.
        system_id: String,
        /// The fresh boot token its agent calls with (only its hash is stored).
        token: String,
    },
    /// Boot from the local disk (Deployed, and machines with nothing to do).
    LocalDisk {
        /// The machine booting.
        system_id: String,
    },
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

/// Fuzzing entry point (fuzz/fuzz_targets/agent_reports.rs): runs the pure part of what
/// [`Service::agent_inventory`] and [`Service::agent_complete`] do with an agent's JSON body
/// (reading the inventory, taking the BMC credentials out, reading its MACs and the BMC
/// addresses, reading a testing run's results) without a store. Public only so that the fuzz
/// crate, which is outside this crate, can reach these private parsers; not an API.
#[doc(hidden)]
pub fn fuzz_agent_report(body: &[u8]) {
    if let Ok(mut inventory) = serde_json::from_slice::<Inventory>(body) {
        let _ = take_bmc_credentials(&mut inventory);
        let _ = inventory_interfaces(&inventory);
        if let Some(rf) = &inventory.bmc.redfish {
            let _ = usable_bmc_address(&rf.address);
        }
        if let Some(lan) = &inventory.bmc.lan {
            let _ = usable_bmc_address(&lan.ip_address);
        }
    }
    if let Ok(report) = serde_json::from_slice::<Complete>(body)
        && let Ok(Some(results)) = testing_results(report.results.as_ref())
    {
        let _ = TestRun::new("fuzz", 0, results).failure_reason();
    }
}

/// Takes `bmc.credentials` out of an inventory (it is never stored there) and returns them when
/// both parts are there.
fn take_bmc_credentials(inventory: &mut Inventory) -> Option<BmcCredentials> {
    inventory
        .bmc
        .credentials
        .take()
        .filter(|c| !c.username.is_empty() && !c.password.is_empty())
}

/// The inventory's network interfaces as the machine records them, MACs normalized.
pub(super) fn inventory_interfaces(inventory: &Inventory) -> Result<Vec<Interface>, ServiceError> {
    inventory
        .interfaces
        .iter()
        .map(|nic| {
            let mac = ids::normalize_mac(&nic.mac)
                .map_err(|e| ServiceError::Invalid(format!("inventory interfaces: {e}")))?;
            Ok(Interface {
                name: nic.name.clone(),
                mac,
                boot: nic.boot,
                network: None,
            })
        })
        .collect()
}

/// An address the BMC reports that could be one to reach it at: IPv4, not 0.0.0.0 or broadcast.
fn usable_bmc_address(ip: &str) -> bool {
    ip.parse::<std::net::Ipv4Addr>()
        .is_ok_and(|a| !a.is_unspecified() && !a.is_broadcast())
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
    /// A deploy with no image the agent can write fails, with the reason, instead of hanging.
    pub async fn agent_task(
        &self,
        m: &Machine,
        token: &str,
        public_url: &str,
    ) -> Result<Task, ServiceError> {
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
            return Ok(Task::Poweroff);
        }
        Ok(match m.status {
            Status::Commissioning => Task::Commission {
                create_bmc_user: m.power.is_unconfigured(),
            },
            Status::Testing => Task::Test {
                tests: vec!["disk-read".into(), "memory".into()],
            },
            Status::Deploying if !m.deploy_written => {
                match self.deploy_task(m, token, public_url) {
                    Ok(task) => task,
                    Err(e) => {
                        if let Err(fail) = self.agent_fail(m, e.to_string(), None).await {
                            tracing::warn!(system_id = %m.system_id, error = %fail, "could not fail a deploy without an image");
                        }
                        return Err(e);
                    }
                }
            }
            Status::Deploying => Task::Reboot,
            Status::DiskErasing => Task::Erase {
                mode: m.erase.unwrap_or(EraseMode::Quick),
            },
            Status::EnteringRescueMode | Status::RescueMode => Task::Rescue {
                ssh_keys: owner_keys(m)?,
            },
            _ => Task::Poweroff,
        })
    }

    /// The deploy task of a Deploying machine: its image (named, or the default of its OS and
    /// architecture) and the owner's keys and user data. Conflict when there is no image the
    /// agent can write.
    fn deploy_task(
        &self,
        m: &Machine,
        token: &str,
        public_url: &str,
    ) -> Result<Task, ServiceError> {
        let target = m.deploy.clone().unwrap_or_default_target();
        let image = self
            .images
            .deploy_image(&target.image, &target.osystem, &m.architecture)
            .map_err(|e| ServiceError::Conflict(format!("no image to deploy: {e}")))?;
        let image_format = agent_format(image.format).ok_or_else(|| {
            ServiceError::Conflict(format!(
                "no image to deploy: image {} is a {} archive; the agent writes raw \
                 disk images (raw, raw.gz, raw.xz, raw.zst)",
                image.name,
                image.format.as_str()
            ))
        })?;
        Ok(Task::Deploy(Box::new(DeployTask {
            image_url: format!("{public_url}/images/{}", image.name),
            image_sha256: image.sha256.clone(),
            image_format,
            image_size: Some(image.size),
            target_disk: None,
            hostname: m.hostname.clone(),
            ssh_keys: target.ssh_keys.clone(),
            user_data: target.user_data.clone(),
            instance_id: format!("{}-{}", m.system_id, m.generation),
            report_url: Some(format!("{public_url}{PREFIX}{}", path::DEPLOYED)),
            report_token: Some(token.to_string()),
            network_config: self.network_config_of(m)?,
        })))
    }

    /// The seed's network-config for `m`'s links, with the appliance's upstream DNS servers
    /// when they are set.
    fn network_config_of(&self, m: &Machine) -> Result<Option<String>, ServiceError> {
        let dns: Vec<std::net::Ipv4Addr> = self
            .settings()?
            .upstream_dns
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|a| a.parse().ok())
            .collect();
        Ok(crate::model::network::network_config(
            &m.interfaces,
            &self.subnet_plans(),
            &dns,
            &self.static_routes()?,
        )
        .map(|v| v.to_string()))
    }

    /// The inventory the commissioning agent took (`/inventory`): see
    /// [`Service::record_inventory`].
    pub async fn agent_inventory(
        &self,
        m: &Machine,
        inventory: Inventory,
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
        mut inventory: Inventory,
        expected: Status,
    ) -> Result<Machine, ServiceError> {
        let credentials = take_bmc_credentials(&mut inventory);
        let interfaces = inventory_interfaces(&inventory)?;
        let bmc = inventory.bmc.clone();
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
                // A link set on an interface before (by its MAC) stays with it.
                for i in &mut new_ifaces {
                    i.network = m
                        .interfaces
                        .iter()
                        .find(|old| old.mac == i.mac)
                        .and_then(|old| old.network.clone());
                }
                if new_ifaces.is_empty() {
                    new_ifaces = m.interfaces.clone();
                }
                macs_free(tx, &new_ifaces, Some(&m.system_id))?;
                m.cpu_count = inventory.cpu_count;
                m.memory_mib = inventory.memory_mib;
                if !inventory.architecture.is_empty() {
                    m.architecture = inventory.architecture.clone();
                }
                m.disks = inventory.model_disks();
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
        self.record_bmc(m, &bmc, credentials).await
    }

    /// Records the BMC the inventory names and, on a machine without power settings, takes
    /// them from it. Never overwrites settings an operator made.
    ///
    /// A Redfish BMC found through the host interface comes first (as in MAAS), with its
    /// certificate pinned; else the IPMI LAN channel read in-band.
    async fn record_bmc(
        &self,
        m: Machine,
        bmc: &Bmc,
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
                    PowerType::Redfish,
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
                    PowerType::Ipmi,
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
                                power_type: Some(power_type),
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
                        m.power.type_name()
                    ));
                }
                m.discovered_bmc = Some(crate::model::DiscoveredBmc {
                    power_type,
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
        bytes: Option<u64>,
    ) -> Result<(), ServiceError> {
        allow(AgentCall::Progress, m)?;
        let text = match percent {
            Some(p) => format!("{message} ({p:.0}%)"),
            None => message.to_string(),
        };
        let step = message.to_string();
        let expected = m.status;
        self.modify_machine(&m.system_id, "rackbox", move |_, m| {
            if m.status != expected {
                return Ok(Change::Skip);
            }
            let now = crate::model::ids::now_ms();
            let started_ms = match &m.progress {
                Some(p) if p.status == m.status => p.started_ms,
                _ => now,
            };
            m.progress = Some(TaskProgress {
                status: m.status,
                step,
                percent: percent
                    .filter(|p| p.is_finite())
                    .map(|p| p.clamp(0.0, 100.0)),
                bytes,
                started_ms,
                at_ms: now,
            });
            // The history records each step once; the numbers change quietly.
            if m.status_message == text {
                return Ok(Change::Quiet);
            }
            m.status_message = text.clone();
            Ok(Change::Event("note", text))
        })
        .await
        .map(|_| ())
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
        if lifecycle::agent_completion(m, None) == Completion::AlreadyThere {
            return Ok(m.clone());
        }
        let test_failure = match test_results(m, results.as_ref())? {
            Some(tests) => self.record_test_run(m, tests).await?.failure_reason(),
            None => None,
        };
        match lifecycle::agent_completion(m, test_failure) {
            Completion::AlreadyThere => Ok(m.clone()),
            Completion::ImageWritten => self.mark_deploy_written(m, message).await,
            Completion::Fail(reason) => {
                self.report_in(&m.system_id, Action::Fail { reason }, m.status, "agent")
                    .await
            }
            Completion::Complete => {
                self.report_in(
                    &m.system_id,
                    Action::Complete { message },
                    m.status,
                    "agent",
                )
                .await
            }
        }
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
                let now = read_machine(tx, &id, None)?;
                if now.status != Status::Testing {
                    return Err(ServiceError::Conflict(format!(
                        "machine {id} is {}, not testing",
                        now.status
                    )));
                }
                tx.put_test_run(&stored)?;
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
        let run = self.store.read()?.test_run(&m.system_id)?;
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
                lifecycle::record_image_written(m, &message)?;
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

/// The wire format of a stored image the agent can write; None for the tar archives, which it
/// cannot.
fn agent_format(format: StoredFormat) -> Option<ImageFormat> {
    match format {
        StoredFormat::Raw => Some(ImageFormat::Raw),
        StoredFormat::RawGz => Some(ImageFormat::RawGz),
        StoredFormat::RawXz => Some(ImageFormat::RawXz),
        StoredFormat::RawZst => Some(ImageFormat::RawZst),
        StoredFormat::Tar | StoredFormat::TarGz | StoredFormat::TarXz | StoredFormat::TarZst => {
            None
        }
    }
}
