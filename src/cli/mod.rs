//! `rackbox <noun> <verb>`: the command-line client of the appliance's API. Tables for people,
//! `--json` for scripts; errors as one line and a non-zero exit code.

pub mod client;
pub mod images;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde::Serialize;
use serde_json::{Value, json};

use crate::model::Constraints;
use crate::model::api::{
    ActionRequest, LoginRequest, MachineEdit, NamedRequest, NewMachine, NewUser, SshKeyRequest,
    TokenRequest, UserEdit,
};

pub use client::{CliConfig, CliError, Client};

/// Where to reach rackbox and how to print.
#[derive(Args, Debug, Clone)]
pub struct Connection {
    /// rackbox URL [env: RACKBOX_URL; else ~/.config/rackbox/cli.toml; else http://127.0.0.1:5240]
    #[arg(long, global = true, env = "RACKBOX_URL")]
    pub url: Option<String>,
    /// API token [env: RACKBOX_TOKEN; else ~/.config/rackbox/cli.toml]
    #[arg(long, global = true, env = "RACKBOX_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Log in with a username and password and save the URL and token for later commands.
    Login {
        #[arg(long, default_value = "admin")]
        username: String,
        /// Read the password from this file (else from standard input).
        #[arg(long)]
        password_file: Option<std::path::PathBuf>,
    },
    /// Show who the token belongs to.
    Whoami,
    /// Machines: list, show, add, edit, delete, act on them.
    #[command(subcommand)]
    Machine(MachineCmd),
    /// Every machine's recent events (admins).
    Events {
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// DHCP leases of the boot network (admins).
    #[command(subcommand)]
    Lease(LeaseCmd),
    /// Users (admins), and your own password.
    #[command(subcommand)]
    User(UserCmd),
    /// SSH public keys installed on the machines you deploy.
    #[command(subcommand)]
    Sshkey(SshKeyCmd),
    /// API tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Zones.
    #[command(subcommand)]
    Zone(NamedCmd),
    /// Resource pools.
    #[command(subcommand)]
    Pool(NamedCmd),
    /// Tags.
    #[command(subcommand)]
    Tag(NamedCmd),
    /// Deployable OS images: list, show, import (file, stdin, URL), delete, sync, gc.
    #[command(subcommand)]
    Image(images::ImageCmd),
    /// Boot resources: kernels, initrds and boot loaders per architecture.
    #[command(subcommand)]
    BootResource(images::BootCmd),
}

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
        power_type: Option<String>,
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
        #[arg(long)]
        power_type: Option<String>,
        /// Power parameter as key=value (repeat); replaces all parameters.
        #[arg(long = "power-param")]
        power_params: Vec<String>,
        /// Refuse unless the machine still has this generation.
        #[arg(long)]
        generation: Option<u64>,
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
    Allocate {
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
    },
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
}

#[derive(Subcommand, Debug)]
pub enum LeaseCmd {
    /// Every lease: address, MAC, state, expiry.
    List,
}

#[derive(Subcommand, Debug)]
pub enum UserCmd {
    List,
    Show {
        username: String,
    },
    /// Create a user; the password is read from --password-file or standard input.
    Add {
        username: String,
        /// admin or user.
        #[arg(long, default_value = "user")]
        role: String,
        #[arg(long, default_value = "")]
        email: String,
        #[arg(long)]
        password_file: Option<std::path::PathBuf>,
    },
    /// Change a password (read from --password-file or standard input).
    Passwd {
        username: String,
        #[arg(long)]
        password_file: Option<std::path::PathBuf>,
    },
    Delete {
        username: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum SshKeyCmd {
    List {
        #[arg(long)]
        user: Option<String>,
    },
    /// Add a key: the key text, or @FILE to read it from a file.
    Add {
        key: String,
        #[arg(long)]
        user: Option<String>,
    },
    Delete {
        id: u32,
        #[arg(long)]
        user: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    List,
    /// Create a token; its secret is printed once.
    Create {
        #[arg(long, default_value = "")]
        name: String,
        /// A MAAS API key (consumer:token:secret) for Juju, Terraform and python-libmaas.
        #[arg(long)]
        maas: bool,
        /// Admins: make it for this user.
        #[arg(long)]
        user: Option<String>,
    },
    Revoke {
        id: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum NamedCmd {
    List,
    Add {
        name: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    Delete {
        name: String,
    },
}

/// Runs one client command.
pub async fn run(conn: Connection, cmd: Command) -> Result<(), CliError> {
    let saved = CliConfig::load()?;
    let url = conn
        .url
        .clone()
        .or(saved.url.clone())
        .unwrap_or_else(|| "http://127.0.0.1:5240".into());
    if let Command::Login {
        username,
        password_file,
    } = &cmd
    {
        let password = read_secret(password_file.as_deref(), "password")?;
        let client = Client::new(url.clone(), None)?;
        let answer = client
            .call(
                Method::POST,
                "/api/v1/auth/login",
                &[],
                Some(&body(&LoginRequest {
                    username: username.clone(),
                    password,
                    token_name: Some("cli".into()),
                })?),
            )
            .await?;
        let token = answer["token"].as_str().unwrap_or_default().to_string();
        let path = CliConfig {
            url: Some(url),
            token: Some(token),
        }
        .save()?;
        println!("logged in as {username}; token saved in {}", path.display());
        return Ok(());
    }
    let token = conn.token.clone().or(saved.token);
    let client = Client::new(url, token)?;
    let out = Output { json: conn.json };
    match cmd {
        Command::Login { .. } => Ok(()),
        Command::Whoami => {
            let v = client
                .call(Method::GET, "/api/v1/whoami", &[], None)
                .await?;
            out.record(&v, &[("username", "username"), ("role", "role")]);
            Ok(())
        }
        Command::Machine(m) => machine(&client, &out, m).await,
        Command::Events { limit } => {
            let v = client
                .call(
                    Method::GET,
                    "/api/v1/events",
                    &[("limit", limit.to_string())],
                    None,
                )
                .await?;
            out.events(&v);
            Ok(())
        }
        Command::Lease(LeaseCmd::List) => {
            let v = client
                .call(Method::GET, "/api/v1/leases", &[], None)
                .await?;
            out.table(
                &v,
                &[
                    ("IP", "ip"),
                    ("MAC", "mac"),
                    ("STATE", "state"),
                    ("EXPIRES_MS", "expires_ms"),
                    ("HOSTNAME", "hostname"),
                ],
            );
            Ok(())
        }
        Command::User(u) => user(&client, &out, u).await,
        Command::Sshkey(k) => sshkey(&client, &out, k).await,
        Command::Token(t) => token_cmd(&client, &out, t).await,
        Command::Zone(n) => named(&client, &out, "zones", n).await,
        Command::Pool(n) => named(&client, &out, "pools", n).await,
        Command::Tag(n) => named(&client, &out, "tags", n).await,
        Command::Image(i) => images::image(&client, &out, i).await,
        Command::BootResource(b) => images::boot(&client, &out, b).await,
    }
}

fn read_secret(file: Option<&std::path::Path>, what: &str) -> Result<String, CliError> {
    let text = match file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| CliError::Local(format!("cannot read {}: {e}", path.display())))?,
        None => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).map_err(|e| {
                CliError::Local(format!("cannot read the {what} from standard input: {e}"))
            })?;
            line
        }
    };
    let text = text.trim_end_matches(['\n', '\r']).to_string();
    if text.is_empty() {
        return Err(CliError::Usage(format!(
            "no {what} given (use --password-file or standard input)"
        )));
    }
    Ok(text)
}

fn key_values(pairs: &[String]) -> Result<serde_json::Map<String, Value>, CliError> {
    let mut map = serde_json::Map::new();
    for pair in pairs {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| CliError::Usage(format!("{pair:?} must be key=value")))?;
        map.insert(k.to_string(), Value::String(v.to_string()));
    }
    Ok(map)
}

/// Drops absent (null) and empty-list fields so the API's defaults apply.
/// A request body as the API's own type writes it, without its null and empty-list fields.
fn body(request: &impl Serialize) -> Result<Value, CliError> {
    serde_json::to_value(request)
        .map(compact)
        .map_err(|e| CliError::Local(format!("cannot encode the request: {e}")))
}

fn compact(v: Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null() && !matches!(v, Value::Array(a) if a.is_empty()))
                .collect(),
        ),
        other => other,
    }
}

async fn machine(client: &Client, out: &Output, cmd: MachineCmd) -> Result<(), CliError> {
    let act = |id: String, action: &'static str, request: ActionRequest| async move {
        client
            .call(
                Method::POST,
                &format!("/api/v1/machines/{id}/actions/{action}"),
                &[],
                Some(&body(&request)?),
            )
            .await
    };
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
            let v = client
                .call(Method::GET, "/api/v1/machines", &q, None)
                .await?;
            out.machines(&v);
            return Ok(());
        }
        MachineCmd::Show { system_id } => {
            client
                .call(
                    Method::GET,
                    &format!("/api/v1/machines/{system_id}"),
                    &[],
                    None,
                )
                .await?
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
            let params = if power_params.is_empty() {
                None
            } else {
                Some(key_values(&power_params)?)
            };
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
            client
                .call(Method::POST, "/api/v1/machines", &[], Some(&body(&new)?))
                .await?
        }
        MachineCmd::Edit {
            system_id,
            hostname,
            description,
            zone,
            pool,
            add_tags,
            remove_tags,
            power_type,
            power_params,
            generation,
        } => {
            let params = if power_params.is_empty() {
                None
            } else {
                Some(key_values(&power_params)?)
            };
            let edit = MachineEdit {
                generation,
                hostname,
                description,
                zone,
                pool,
                add_tags,
                remove_tags,
                power_type,
                power_parameters: params,
                ..Default::default()
            };
            client
                .call(
                    Method::PATCH,
                    &format!("/api/v1/machines/{system_id}"),
                    &[],
                    Some(&body(&edit)?),
                )
                .await?
        }
        MachineCmd::Delete { system_id } => {
            client
                .call(
                    Method::DELETE,
                    &format!("/api/v1/machines/{system_id}"),
                    &[],
                    None,
                )
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
        MachineCmd::Test { system_id } => act(system_id, "test", ActionRequest::default()).await?,
        MachineCmd::Allocate {
            name,
            system_id,
            arch,
            cpu_count,
            mem,
            tags,
            not_tags,
            zone,
            not_in_zone,
            pool,
            not_in_pool,
            storage,
            dry_run,
        } => {
            let wanted = Constraints {
                name,
                system_id,
                arch,
                cpu_count,
                mem,
                tags,
                not_tags,
                zone,
                not_in_zone,
                pool,
                not_in_pool,
                storage,
                dry_run,
                comment: None,
            };
            client
                .call(
                    Method::POST,
                    "/api/v1/machines/allocate",
                    &[],
                    Some(&body(&wanted)?),
                )
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
        MachineCmd::Abort { system_id } => {
            act(system_id, "abort", ActionRequest::default()).await?
        }
        MachineCmd::MarkBroken { system_id, reason } => {
            let request = ActionRequest {
                reason,
                ..Default::default()
            };
            act(system_id, "mark_broken", request).await?
        }
        MachineCmd::MarkFixed { system_id } => {
            act(system_id, "mark_fixed", ActionRequest::default()).await?
        }
        MachineCmd::OverrideFailedTesting { system_id } => {
            act(
                system_id,
                "override_failed_testing",
                ActionRequest::default(),
            )
            .await?
        }
        MachineCmd::Rescue { system_id } => {
            act(system_id, "rescue_mode", ActionRequest::default()).await?
        }
        MachineCmd::ExitRescue { system_id } => {
            act(system_id, "exit_rescue_mode", ActionRequest::default()).await?
        }
        MachineCmd::Lock { system_id } => act(system_id, "lock", ActionRequest::default()).await?,
        MachineCmd::Unlock { system_id } => {
            act(system_id, "unlock", ActionRequest::default()).await?
        }
        MachineCmd::PowerOn { system_id } => power(client, &system_id, "on").await?,
        MachineCmd::PowerOff { system_id, soft } => {
            power(client, &system_id, if soft { "soft_off" } else { "off" }).await?
        }
        MachineCmd::PowerCycle { system_id } => power(client, &system_id, "cycle").await?,
        MachineCmd::PowerState { system_id } => {
            let v = client
                .call(
                    Method::GET,
                    &format!("/api/v1/machines/{system_id}/power"),
                    &[],
                    None,
                )
                .await?;
            out.record(&v, &[("power", "state")]);
            return Ok(());
        }
        MachineCmd::Events { system_id, limit } => {
            let v = client
                .call(
                    Method::GET,
                    &format!("/api/v1/machines/{system_id}/events"),
                    &[("limit", limit.to_string())],
                    None,
                )
                .await?;
            out.events(&v);
            return Ok(());
        }
        MachineCmd::TestResults { system_id } => {
            let v = client
                .call(
                    Method::GET,
                    &format!("/api/v1/machines/{system_id}/test-results"),
                    &[],
                    None,
                )
                .await?;
            out.test_results(&v);
            return Ok(());
        }
    };
    out.machine(&shown);
    Ok(())
}

async fn power(client: &Client, id: &str, op: &str) -> Result<Value, CliError> {
    client
        .call(
            Method::POST,
            &format!("/api/v1/machines/{id}/power/{op}"),
            &[],
            None,
        )
        .await
}

async fn user(client: &Client, out: &Output, cmd: UserCmd) -> Result<(), CliError> {
    match cmd {
        UserCmd::List => {
            let v = client.call(Method::GET, "/api/v1/users", &[], None).await?;
            out.table(
                &v,
                &[
                    ("USERNAME", "username"),
                    ("ROLE", "role"),
                    ("EMAIL", "email"),
                ],
            );
        }
        UserCmd::Show { username } => {
            let v = client
                .call(Method::GET, &format!("/api/v1/users/{username}"), &[], None)
                .await?;
            out.record(
                &v,
                &[
                    ("username", "username"),
                    ("role", "role"),
                    ("email", "email"),
                ],
            );
        }
        UserCmd::Add {
            username,
            role,
            email,
            password_file,
        } => {
            let password = read_secret(password_file.as_deref(), "password")?;
            let v = client
                .call(
                    Method::POST,
                    "/api/v1/users",
                    &[],
                    Some(&body(&NewUser {
                        username,
                        password,
                        email,
                        role: Some(role),
                    })?),
                )
                .await?;
            out.record(&v, &[("username", "username"), ("role", "role")]);
        }
        UserCmd::Passwd {
            username,
            password_file,
        } => {
            let password = read_secret(password_file.as_deref(), "password")?;
            client
                .call(
                    Method::PATCH,
                    &format!("/api/v1/users/{username}"),
                    &[],
                    Some(&body(&UserEdit {
                        password: Some(password),
                        ..Default::default()
                    })?),
                )
                .await?;
            out.done(&format!("password of {username} changed"));
        }
        UserCmd::Delete { username } => {
            client
                .call(
                    Method::DELETE,
                    &format!("/api/v1/users/{username}"),
                    &[],
                    None,
                )
                .await?;
            out.done(&format!("deleted user {username}"));
        }
    }
    Ok(())
}

async fn me(client: &Client) -> Result<String, CliError> {
    let v = client
        .call(Method::GET, "/api/v1/whoami", &[], None)
        .await?;
    Ok(v["username"].as_str().unwrap_or_default().to_string())
}

async fn sshkey(client: &Client, out: &Output, cmd: SshKeyCmd) -> Result<(), CliError> {
    match cmd {
        SshKeyCmd::List { user } => {
            let user = match user {
                Some(u) => u,
                None => me(client).await?,
            };
            let v = client
                .call(
                    Method::GET,
                    &format!("/api/v1/users/{user}/sshkeys"),
                    &[],
                    None,
                )
                .await?;
            out.table(&v, &[("ID", "id"), ("KEY", "key")]);
        }
        SshKeyCmd::Add { key, user } => {
            let user = match user {
                Some(u) => u,
                None => me(client).await?,
            };
            let key = match key.strip_prefix('@') {
                Some(path) => std::fs::read_to_string(path)
                    .map_err(|e| CliError::Local(format!("cannot read {path}: {e}")))?,
                None => key,
            };
            let v = client
                .call(
                    Method::POST,
                    &format!("/api/v1/users/{user}/sshkeys"),
                    &[],
                    Some(&body(&SshKeyRequest {
                        key: key.trim().to_string(),
                    })?),
                )
                .await?;
            out.record(&v, &[("id", "id"), ("key", "key")]);
        }
        SshKeyCmd::Delete { id, user } => {
            let user = match user {
                Some(u) => u,
                None => me(client).await?,
            };
            client
                .call(
                    Method::DELETE,
                    &format!("/api/v1/users/{user}/sshkeys/{id}"),
                    &[],
                    None,
                )
                .await?;
            out.done(&format!("removed key {id}"));
        }
    }
    Ok(())
}

async fn token_cmd(client: &Client, out: &Output, cmd: TokenCmd) -> Result<(), CliError> {
    match cmd {
        TokenCmd::List => {
            let v = client
                .call(Method::GET, "/api/v1/tokens", &[], None)
                .await?;
            out.table(
                &v,
                &[
                    ("ID", "id"),
                    ("USER", "username"),
                    ("KIND", "kind"),
                    ("NAME", "name"),
                ],
            );
        }
        TokenCmd::Create { name, maas, user } => {
            let v = client
                .call(
                    Method::POST,
                    "/api/v1/tokens",
                    &[],
                    Some(&body(&TokenRequest {
                        name,
                        kind: Some(if maas { "maas" } else { "native" }.into()),
                        username: user,
                    })?),
                )
                .await?;
            if out.json {
                out.raw(&v);
            } else {
                println!("{}", v["token"].as_str().unwrap_or_default());
                eprintln!(
                    "(token {} for {}: the secret is shown only this once)",
                    v["id"].as_str().unwrap_or_default(),
                    v["username"].as_str().unwrap_or_default()
                );
            }
        }
        TokenCmd::Revoke { id } => {
            client
                .call(Method::DELETE, &format!("/api/v1/tokens/{id}"), &[], None)
                .await?;
            out.done(&format!("revoked token {id}"));
        }
    }
    Ok(())
}

async fn named(client: &Client, out: &Output, what: &str, cmd: NamedCmd) -> Result<(), CliError> {
    match cmd {
        NamedCmd::List => {
            let v = client
                .call(Method::GET, &format!("/api/v1/{what}"), &[], None)
                .await?;
            out.table(&v, &[("NAME", "name"), ("DESCRIPTION", "description")]);
        }
        NamedCmd::Add { name, description } => {
            let v = client
                .call(
                    Method::POST,
                    &format!("/api/v1/{what}"),
                    &[],
                    Some(&body(&NamedRequest { name, description })?),
                )
                .await?;
            out.record(&v, &[("name", "name"), ("description", "description")]);
        }
        NamedCmd::Delete { name } => {
            client
                .call(Method::DELETE, &format!("/api/v1/{what}/{name}"), &[], None)
                .await?;
            out.done(&format!("deleted {name}"));
        }
    }
    Ok(())
}

/// How results are printed.
struct Output {
    json: bool,
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => {
            let parts: Vec<String> = a.iter().map(cell).collect();
            if parts.is_empty() {
                "-".into()
            } else {
                parts.join(",")
            }
        }
        other => other.to_string(),
    }
}

/// Reads a dotted path ("power_state.state") from a JSON value.
fn at<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(v, |v, k| &v[k])
}

impl Output {
    fn raw(&self, v: &Value) {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    }

    fn done(&self, message: &str) {
        if self.json {
            println!("{}", json!({"ok": true, "message": message}));
        } else {
            println!("{message}");
        }
    }

    fn table(&self, v: &Value, columns: &[(&str, &str)]) {
        if self.json {
            return self.raw(v);
        }
        let rows: Vec<Vec<String>> = v
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|item| columns.iter().map(|(_, k)| cell(at(item, k))).collect())
                    .collect()
            })
            .unwrap_or_default();
        let mut widths: Vec<usize> = columns.iter().map(|(h, _)| h.len()).collect();
        for row in &rows {
            for (w, c) in widths.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |cells: Vec<String>| {
            let text: Vec<String> = cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            println!("{}", text.join("  ").trim_end());
        };
        line(columns.iter().map(|(h, _)| h.to_string()).collect());
        for row in rows {
            line(row);
        }
    }

    fn record(&self, v: &Value, fields: &[(&str, &str)]) {
        if self.json {
            return self.raw(v);
        }
        let width = fields.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
        for (label, key) in fields {
            println!("{label:<width$}  {}", cell(at(v, key)));
        }
    }

    fn machines(&self, page: &Value) {
        if self.json {
            return self.raw(page);
        }
        self.table(
            &page["items"],
            &[
                ("SYSTEM_ID", "system_id"),
                ("HOSTNAME", "hostname"),
                ("STATUS", "status_name"),
                ("POWER", "power_state.state"),
                ("OWNER", "owner"),
                ("CPU", "cpu_count"),
                ("MEM_MIB", "memory_mib"),
                ("ZONE", "zone"),
                ("POOL", "pool"),
                ("TAGS", "tags"),
            ],
        );
        if let Some(next) = page["next"].as_str() {
            eprintln!("(more: {} in all; next page after {next})", page["total"]);
        }
    }

    fn machine(&self, m: &Value) {
        self.record(
            m,
            &[
                ("system_id", "system_id"),
                ("hostname", "hostname"),
                ("status", "status_name"),
                ("message", "status_message"),
                ("owner", "owner"),
                ("power", "power_state.state"),
                ("power_type", "power.power_type"),
                ("architecture", "architecture"),
                ("cpu_count", "cpu_count"),
                ("memory_mib", "memory_mib"),
                ("zone", "zone"),
                ("pool", "pool"),
                ("tags", "tags"),
                ("locked", "locked"),
                ("generation", "generation"),
            ],
        );
    }

    fn test_results(&self, v: &Value) {
        if self.json {
            return self.raw(v);
        }
        if v["status"].is_null() {
            println!("{}: no test results yet", cell(at(v, "system_id")));
            return;
        }
        println!(
            "{}: tests {} (recorded at {} ms)",
            cell(at(v, "system_id")),
            cell(at(v, "status")),
            cell(at(v, "recorded_ms"))
        );
        // Durations and throughput are worked out here, so the table shows what a person reads.
        let rows: Vec<Value> = v["results"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|r| {
                        let secs = r["finished_ms"]
                            .as_u64()
                            .zip(r["started_ms"].as_u64())
                            .map(|(f, s)| format!("{:.1}", f.saturating_sub(s) as f64 / 1000.0));
                        json!({
                            "name": r["name"],
                            "status": r["status"],
                            "disk": r["disk"],
                            "mib_s": r["throughput_mib_s"].as_f64().map(|t| format!("{t:.1}")),
                            "secs": secs,
                            "summary": r["summary"],
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        self.table(
            &Value::Array(rows),
            &[
                ("TEST", "name"),
                ("STATUS", "status"),
                ("DISK", "disk"),
                ("MIB/S", "mib_s"),
                ("SECONDS", "secs"),
                ("SUMMARY", "summary"),
            ],
        );
    }

    fn events(&self, v: &Value) {
        self.table(
            v,
            &[
                ("SEQ", "seq"),
                ("MACHINE", "system_id"),
                ("ACTOR", "actor"),
                ("ACTION", "action"),
                ("FROM", "from"),
                ("TO", "to"),
                ("MESSAGE", "message"),
            ],
        );
    }
}
