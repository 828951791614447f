//! `rackbox machine ...`: list, show, add, edit, act on and power machines.

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::Value;

use super::{CliError, Client, Output, power_parameters};
use crate::model::api::{ActionRequest, MachineEdit, NewMachine};
use crate::model::{Constraints, PowerType};

#[derive(Subcommand, Debug)]
pub enum MachineCmd {
    /// List machines.
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        zone: Option<String>,
        #[arg(long)]
        pool: Option<String>,
        #[arg(long)]
        tag: Option<String>,
        #[arg(long)]
        owner: Option<String>,
        #[arg(long)]
        hostname: Option<String>,
        #[arg(long)]
        mac: Option<String>,
        /// Page size; 0 lists everything.
        #[arg(long, default_value_t = 0)]
        limit: usize,
    },
    /// Show one machine.
    Show {
        system_id: String,
    },
    /// Add a machine by hand.
    Add {
        /// MAC address (repeat for more interfaces; the first boots).
        #[arg(long = "mac", required = true)]
        macs: Vec<String>,
        #[arg(long)]
        hostname: Option<String>,
        #[arg(long)]
        arch: Option<String>,
        /// ipmi, redfish, manual or command.
        #[arg(long)]
        power_type: Option<PowerType>,
        /// Power parameter as key=value (repeat).
        #[arg(long = "power-param")]
        power_params: Vec<String>,
        #[arg(long)]
        zone: Option<String>,
        #[arg(long)]
        pool: Option<String>,
        #[arg(long = "tag")]
        tags: Vec<String>,
        #[arg(long)]
        description: Option<String>,
        /// Commission at once (default: when a power driver is given).
        #[arg(long, overrides_with = "no_commission")]
        commission: bool,
        #[arg(long)]
        no_commission: bool,
    },
    /// Change a machine.
    Edit {
        system_id: String,
        #[command(flatten)]
        changes: EditArgs,
    },
    /// Delete a machine and its history.
    Delete {
        system_id: String,
    },
    /// Commission: boot the commissioning environment and take an inventory.
    Commission {
        system_id: String,
        /// Run hardware tests afterwards.
        #[arg(long)]
        run_tests: bool,
    },
    /// Run hardware tests.
    Test {
        system_id: String,
    },
    /// Allocate a Ready machine by constraints.
    Allocate(AllocateArgs),
    /// Deploy an OS image.
    Deploy {
        system_id: String,
        #[arg(long)]
        image: Option<String>,
        #[arg(long)]
        osystem: Option<String>,
        #[arg(long)]
        distro_series: Option<String>,
        /// cloud-init user data file.
        #[arg(long)]
        user_data_file: Option<std::path::PathBuf>,
    },
    /// Release a machine back to the pool.
    Release {
        system_id: String,
        /// none, quick, full or secure.
        #[arg(long, default_value = "none")]
        erase: String,
    },
    /// Abort the machine's in-progress action.
    Abort {
        system_id: String,
    },
    MarkBroken {
        system_id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    MarkFixed {
        system_id: String,
    },
    OverrideFailedTesting {
        system_id: String,
    },
    /// Boot the rescue environment.
    Rescue {
        system_id: String,
    },
    ExitRescue {
        system_id: String,
    },
    Lock {
        system_id: String,
    },
    Unlock {
        system_id: String,
    },
    /// Switch the machine on through its BMC.
    PowerOn {
        system_id: String,
    },
    /// Switch the machine off through its BMC.
    PowerOff {
        system_id: String,
        /// Ask the OS to shut down instead of cutting power.
        #[arg(long)]
        soft: bool,
    },
    PowerCycle {
        system_id: String,
    },
    /// Ask the BMC for the power state now.
    PowerState {
        system_id: String,
    },
    /// A machine's history.
    Events {
        system_id: String,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// The machine's latest hardware test run, one line per test (and per disk).
    TestResults {
        system_id: String,
    },
    /// What the appliance saw of the machine's current and previous network boot (DHCP, TFTP,
    /// the iPXE script, downloads, the agent, power), since the daemon started.
    Timeline {
        system_id: String,
    },
    /// Set how an interface comes up in the deployed OS: auto (an address picked from the boot
    /// subnet when the machine is deployed, given back on release), static (--ip), dhcp or
    /// link-up. Admins, or the owner of an allocated machine.
    Link {
        system_id: String,
        /// The interface's name, e.g. eno1.
        interface: String,
        /// auto, static, dhcp or link-up.
        mode: String,
        /// The boot subnet (CIDR), for auto and static.
        #[arg(long)]
        subnet: Option<String>,
        /// The address of a static link.
        #[arg(long)]
        ip: Option<String>,
    },
    /// Leave an interface to the deployed OS again (no network-config entry for it).
    Unlink {
        system_id: String,
        interface: String,
    },
}

// The changes `machine edit` asks for, one flag each. (No doc comment: clap would show it.)
#[derive(Args, Debug)]
pub struct EditArgs {
    #[arg(long)]
    hostname: Option<String>,
    #[arg(long)]
    description: Option<String>,
    #[arg(long)]
    zone: Option<String>,
    #[arg(long)]
    pool: Option<String>,
    #[arg(long = "add-tag")]
    add_tags: Vec<String>,
    #[arg(long = "remove-tag")]
    remove_tags: Vec<String>,
    /// ipmi, redfish, manual or command.
    #[arg(long)]
    power_type: Option<PowerType>,
    /// Power parameter as key=value (repeat); replaces all parameters.
    #[arg(long = "power-param")]
    power_params: Vec<String>,
    /// Refuse unless the machine still has this generation.
    #[arg(long)]
    generation: Option<u64>,
}

impl EditArgs {
    /// The edit request; absent flags leave their fields as they are.
    fn into_edit(self) -> Result<MachineEdit, CliError> {
        Ok(MachineEdit {
            generation: self.generation,
            hostname: self.hostname,
            description: self.description,
            zone: self.zone,
            pool: self.pool,
            add_tags: self.add_tags,
            remove_tags: self.remove_tags,
            power_type: self.power_type,
            power_parameters: power_parameters(&self.power_params)?,
            ..Default::default()
        })
    }
}

// The flags of `machine allocate`: the allocation constraints, one flag each. (No doc comment:
// clap would show it in place of the variant's.)
#[derive(Args, Debug)]
pub struct AllocateArgs {
    #[arg(long)]
    name: Option<String>,
    #[arg(long)]
    system_id: Option<String>,
    #[arg(long)]
    arch: Option<String>,
    /// Minimum CPU cores.
    #[arg(long = "cpu")]
    cpu_count: Option<u32>,
    /// Minimum memory in MiB.
    #[arg(long)]
    mem: Option<u64>,
    #[arg(long = "tag")]
    tags: Vec<String>,
    #[arg(long = "not-tag")]
    not_tags: Vec<String>,
    #[arg(long)]
    zone: Option<String>,
    #[arg(long = "not-zone")]
    not_in_zone: Vec<String>,
    #[arg(long)]
    pool: Option<String>,
    #[arg(long = "not-pool")]
    not_in_pool: Vec<String>,
    /// Disks as label:GB(tag,...),... e.g. root:20(ssd),data:100
    #[arg(long)]
    storage: Option<String>,
    /// Show which machine would be taken without taking it.
    #[arg(long)]
    dry_run: bool,
}

impl From<AllocateArgs> for Constraints {
    fn from(a: AllocateArgs) -> Constraints {
        Constraints {
            name: a.name,
            system_id: a.system_id,
            arch: a.arch,
            cpu_count: a.cpu_count,
            mem: a.mem,
            tags: a.tags,
            not_tags: a.not_tags,
            zone: a.zone,
            not_in_zone: a.not_in_zone,
            pool: a.pool,
            not_in_pool: a.not_in_pool,
            storage: a.storage,
            dry_run: a.dry_run,
            comment: None,
        }
    }
}

pub(super) async fn machine(
    client: &Client,
    out: &Output,
    cmd: MachineCmd,
) -> Result<(), CliError> {
    let act = |id: String, action: &'static str, request: ActionRequest| async move {
        let path = format!("/api/v1/machines/{id}/actions/{action}");
        client.send(Method::POST, &path, &request).await
    };
    // An action that takes no parameters.
    let plain = |id: String, action: &'static str| act(id, action, ActionRequest::default());
    let shown = match cmd {
        MachineCmd::List {
            status,
            zone,
            pool,
            tag,
            owner,
            hostname,
            mac,
            limit,
        } => {
            let mut q = vec![("limit", limit.to_string())];
            for (k, v) in [
                ("status", status),
                ("zone", zone),
                ("pool", pool),
                ("tag", tag),
                ("owner", owner),
                ("hostname", hostname),
                ("mac", mac),
            ] {
                if let Some(v) = v {
                    q.push((k, v));
                }
            }
            let v = client.get_query("/api/v1/machines", &q).await?;
            out.machines(&v);
            return Ok(());
        }
        MachineCmd::Show { system_id } => {
            client.get(&format!("/api/v1/machines/{system_id}")).await?
        }
        MachineCmd::Add {
            macs,
            hostname,
            arch,
            power_type,
            power_params,
            zone,
            pool,
            tags,
            description,
            commission,
            no_commission,
        } => {
            let commission = if commission {
                Some(true)
            } else if no_commission {
                Some(false)
            } else {
                None
            };
            let params = power_parameters(&power_params)?;
            let new = NewMachine {
                hostname,
                domain: None,
                architecture: arch,
                mac_addresses: macs,
                power_type,
                power_parameters: params,
                zone,
                pool,
                tags,
                description,
                commission,
            };
            client.send(Method::POST, "/api/v1/machines", &new).await?
        }
        MachineCmd::Edit { system_id, changes } => {
            let edit = changes.into_edit()?;
            client
                .send(
                    Method::PATCH,
                    &format!("/api/v1/machines/{system_id}"),
                    &edit,
                )
                .await?
        }
        MachineCmd::Delete { system_id } => {
            client
                .delete(&format!("/api/v1/machines/{system_id}"))
                .await?;
            out.done(&format!("deleted machine {system_id}"));
            return Ok(());
        }
        MachineCmd::Commission {
            system_id,
            run_tests,
        } => {
            let request = ActionRequest {
                run_tests,
                ..Default::default()
            };
            act(system_id, "commission", request).await?
        }
        MachineCmd::Test { system_id } => plain(system_id, "test").await?,
        MachineCmd::Allocate(wanted) => {
            let wanted = Constraints::from(wanted);
            client
                .send(Method::POST, "/api/v1/machines/allocate", &wanted)
                .await?
        }
        MachineCmd::Deploy {
            system_id,
            image,
            osystem,
            distro_series,
            user_data_file,
        } => {
            let user_data =
                match user_data_file {
                    Some(p) => Some(std::fs::read_to_string(&p).map_err(|e| {
                        CliError::Local(format!("cannot read {}: {e}", p.display()))
                    })?),
                    None => None,
                };
            let request = ActionRequest {
                image,
                osystem,
                distro_series,
                user_data,
                ..Default::default()
            };
            act(system_id, "deploy", request).await?
        }
        MachineCmd::Release { system_id, erase } => {
            let request = ActionRequest {
                erase: Some(erase),
                ..Default::default()
            };
            act(system_id, "release", request).await?
        }
        MachineCmd::Abort { system_id } => plain(system_id, "abort").await?,
        MachineCmd::MarkBroken { system_id, reason } => {
            let request = ActionRequest {
                reason,
                ..Default::default()
            };
            act(system_id, "mark_broken", request).await?
        }
        MachineCmd::MarkFixed { system_id } => plain(system_id, "mark_fixed").await?,
        MachineCmd::OverrideFailedTesting { system_id } => {
            plain(system_id, "override_failed_testing").await?
        }
        MachineCmd::Rescue { system_id } => plain(system_id, "rescue_mode").await?,
        MachineCmd::ExitRescue { system_id } => plain(system_id, "exit_rescue_mode").await?,
        MachineCmd::Lock { system_id } => plain(system_id, "lock").await?,
        MachineCmd::Unlock { system_id } => plain(system_id, "unlock").await?,
        MachineCmd::PowerOn { system_id } => power(client, &system_id, "on").await?,
        MachineCmd::PowerOff { system_id, soft } => {
            power(client, &system_id, if soft { "soft_off" } else { "off" }).await?
        }
        MachineCmd::PowerCycle { system_id } => power(client, &system_id, "cycle").await?,
        MachineCmd::PowerState { system_id } => {
            let v = client
                .get(&format!("/api/v1/machines/{system_id}/power"))
                .await?;
            out.record(&v, &[("power", "state")]);
            return Ok(());
        }
        MachineCmd::Events { system_id, limit } => {
            let path = format!("/api/v1/machines/{system_id}/events");
            let v = client
                .get_query(&path, &[("limit", limit.to_string())])
                .await?;
            out.events(&v);
            return Ok(());
        }
        MachineCmd::TestResults { system_id } => {
            let v = client
                .get(&format!("/api/v1/machines/{system_id}/test-results"))
                .await?;
            out.test_results(&v);
            return Ok(());
        }
        MachineCmd::Timeline { system_id } => {
            let v = client
                .get(&format!("/api/v1/machines/{system_id}/boot-timeline"))
                .await?;
            out.boot_timeline(&v);
            return Ok(());
        }
        MachineCmd::Link {
            system_id,
            interface,
            mode,
            subnet,
            ip,
        } => {
            let mode = crate::model::network::LinkMode::parse(&mode).ok_or_else(|| {
                CliError::Local(format!(
                    "mode {mode:?} is not auto, static, dhcp or link-up"
                ))
            })?;
            let ip = ip
                .map(|a| {
                    a.parse()
                        .map_err(|_| CliError::Local(format!("--ip {a:?} is not an IPv4 address")))
                })
                .transpose()?;
            let link = crate::model::network::Link { mode, subnet, ip };
            let v = client
                .send(
                    Method::PUT,
                    &format!("/api/v1/machines/{system_id}/interfaces/{interface}/link"),
                    &link,
                )
                .await?;
            out.links(&v);
            return Ok(());
        }
        MachineCmd::Unlink {
            system_id,
            interface,
        } => {
            let v = client
                .call(
                    Method::DELETE,
                    &format!("/api/v1/machines/{system_id}/interfaces/{interface}/link"),
                    &[],
                    None,
                )
                .await?;
            out.links(&v);
            return Ok(());
        }
    };
    out.machine(&shown);
    Ok(())
}

async fn power(client: &Client, id: &str, op: &str) -> Result<Value, CliError> {
    client
        .post(&format!("/api/v1/machines/{id}/power/{op}"))
        .await
}
