//! `rackbox user ...`, `rackbox sshkey ...` and `rackbox token ...`: accounts and what
//! authenticates them.

use clap::Subcommand;
use reqwest::Method;

use super::{CliError, Client, Output, read_secret};
use crate::model::api::{NewUser, SshKeyRequest, TokenRequest, UserEdit};

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

pub(super) async fn user(client: &Client, out: &Output, cmd: UserCmd) -> Result<(), CliError> {
    match cmd {
        UserCmd::List => {
            let v = client.get("/api/v1/users").await?;
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
            let v = client.get(&format!("/api/v1/users/{username}")).await?;
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
            let new = NewUser {
                username,
                password,
                email,
                role: Some(role),
            };
            let v = client.send(Method::POST, "/api/v1/users", &new).await?;
            out.record(&v, &[("username", "username"), ("role", "role")]);
        }
        UserCmd::Passwd {
            username,
            password_file,
        } => {
            let password = read_secret(password_file.as_deref(), "password")?;
            let edit = UserEdit {
                password: Some(password),
                ..Default::default()
            };
            client
                .send(Method::PATCH, &format!("/api/v1/users/{username}"), &edit)
                .await?;
            out.done(&format!("password of {username} changed"));
        }
        UserCmd::Delete { username } => {
            client.delete(&format!("/api/v1/users/{username}")).await?;
            out.done(&format!("deleted user {username}"));
        }
    }
    Ok(())
}

/// The user a command names, else the caller (whose keys `sshkey` handles by default).
async fn user_or_me(client: &Client, user: Option<String>) -> Result<String, CliError> {
    if let Some(user) = user {
        return Ok(user);
    }
    let v = client.get("/api/v1/whoami").await?;
    Ok(v["username"].as_str().unwrap_or_default().to_string())
}

pub(super) async fn sshkey(client: &Client, out: &Output, cmd: SshKeyCmd) -> Result<(), CliError> {
    match cmd {
        SshKeyCmd::List { user } => {
            let user = user_or_me(client, user).await?;
            let v = client.get(&format!("/api/v1/users/{user}/sshkeys")).await?;
            out.table(&v, &[("ID", "id"), ("KEY", "key")]);
        }
        SshKeyCmd::Add { key, user } => {
            let user = user_or_me(client, user).await?;
            let key = match key.strip_prefix('@') {
                Some(path) => std::fs::read_to_string(path)
                    .map_err(|e| CliError::Local(format!("cannot read {path}: {e}")))?,
                None => key,
            };
            let request = SshKeyRequest {
                key: key.trim().to_string(),
            };
            let v = client
                .send(
                    Method::POST,
                    &format!("/api/v1/users/{user}/sshkeys"),
                    &request,
                )
                .await?;
            out.record(&v, &[("id", "id"), ("key", "key")]);
        }
        SshKeyCmd::Delete { id, user } => {
            let user = user_or_me(client, user).await?;
            client
                .delete(&format!("/api/v1/users/{user}/sshkeys/{id}"))
                .await?;
            out.done(&format!("removed key {id}"));
        }
    }
    Ok(())
}

pub(super) async fn token_cmd(
    client: &Client,
    out: &Output,
    cmd: TokenCmd,
) -> Result<(), CliError> {
    match cmd {
        TokenCmd::List => {
            let v = client.get("/api/v1/tokens").await?;
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
            let request = TokenRequest {
                name,
                kind: Some(if maas { "maas" } else { "native" }.into()),
                username: user,
            };
            let v = client
                .send(Method::POST, "/api/v1/tokens", &request)
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
            client.delete(&format!("/api/v1/tokens/{id}")).await?;
            out.done(&format!("revoked token {id}"));
        }
    }
    Ok(())
}
