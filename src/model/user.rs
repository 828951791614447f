//! Users, their roles and SSH keys, and API tokens.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What a user may do. Admins see and do everything; users see the pool and act on the machines
/// they own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Manages users, adds machines by hand, and acts on every machine whoever owns it.
    Admin,
    /// Allocates machines from the pool and acts only on the machines it owns.
    User,
}

impl Role {
    /// Reads the role's wire name ("admin", "user"); None for anything else.
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "admin" => Some(Role::Admin),
            "user" => Some(Role::User),
            _ => None,
        }
    }

    /// The role's wire name, as [`Role::parse`] reads it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
        }
    }
}

/// A user account as stored; the API shows it without the password hash.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct User {
    /// Login name, unique on the appliance; machines record it as their owner.
    pub username: String,
    /// Contact address, only shown; empty when not given.
    #[serde(default)]
    pub email: String,
    /// What the user may do.
    pub role: Role,
    /// argon2id PHC string; never leaves the store.
    pub password_hash: String,
    /// Keys installed on the machines this user deploys; none when absent.
    #[serde(default)]
    pub ssh_keys: Vec<SshKey>,
    /// When the account was made, milliseconds since the Unix epoch.
    pub created_ms: u64,
}

/// An SSH public key, installed on the machines the user deploys.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SshKey {
    /// Number of the key within its user's keys, for deleting it.
    pub id: u32,
    /// The whole public key line, e.g. `ssh-ed25519 AAAA... user@host`.
    pub key: String,
}

/// An API token. Only a hash of the secret is stored: a stolen database yields no usable token.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Token {
    /// Public part: the token's id (for MAAS keys, the OAuth token key).
    pub id: String,
    /// The user the token acts as.
    pub username: String,
    /// What the token is for, given by its creator.
    #[serde(default)]
    pub name: String,
    /// Hex sha256 of the secret part.
    pub secret_sha256: String,
    /// For MAAS API keys: the OAuth consumer key that must come with the token.
    #[serde(default)]
    pub maas_consumer_key: Option<String>,
    /// When the token was made, milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// For a browser session (the control page's cookie): when it stops being valid,
    /// milliseconds since the Unix epoch. A session is never accepted as an API token, nor an
    /// API token as a session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_expires_ms: Option<u64>,
}
