//! `rackbox <noun> <verb>`: the command-line client of the appliance's API. Tables for people,
//! `--json` for scripts; errors as one line and a non-zero exit code.

pub(crate) mod client;
pub(crate) mod images;
mod machines;
mod named;
mod output;
mod users;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::Value;

use crate::model::api::LoginRequest;

pub use client::{CliConfig, CliError, Client};
pub use machines::MachineCmd;
pub use named::NamedCmd;
use output::{Output, cell};
pub use users::{SshKeyCmd, TokenCmd, UserCmd};

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
pub enum LeaseCmd {
    /// Every lease: address, MAC, state, expiry.
    List,
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
        let login = LoginRequest {
            username: username.clone(),
            password,
            token_name: Some("cli".into()),
        };
        let answer = client
            .send(Method::POST, "/api/v1/auth/login", &login)
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
            let v = client.get("/api/v1/whoami").await?;
            out.record(&v, &[("username", "username"), ("role", "role")]);
            Ok(())
        }
        Command::Machine(m) => machines::machine(&client, &out, m).await,
        Command::Events { limit } => {
            let v = client
                .get_query("/api/v1/events", &[("limit", limit.to_string())])
                .await?;
            out.events(&v);
            Ok(())
        }
        Command::Lease(LeaseCmd::List) => {
            let v = client.get("/api/v1/leases").await?;
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
        Command::User(u) => users::user(&client, &out, u).await,
        Command::Sshkey(k) => users::sshkey(&client, &out, k).await,
        Command::Token(t) => users::token_cmd(&client, &out, t).await,
        Command::Zone(n) => named::named(&client, &out, "zones", n).await,
        Command::Pool(n) => named::named(&client, &out, "pools", n).await,
        Command::Tag(n) => named::named(&client, &out, "tags", n).await,
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

/// `--power-param key=value` pairs as the parameters object; None when none are given, so
/// the request leaves the machine's parameters (or the driver's defaults) alone.
fn power_parameters(pairs: &[String]) -> Result<Option<serde_json::Map<String, Value>>, CliError> {
    if pairs.is_empty() {
        return Ok(None);
    }
    let mut map = serde_json::Map::new();
    for pair in pairs {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| CliError::Usage(format!("{pair:?} must be key=value")))?;
        map.insert(k.to_string(), Value::String(v.to_string()));
    }
    Ok(Some(map))
}
