//! Users, SSH keys, API tokens and authentication.

use std::net::IpAddr;

use schemars::JsonSchema;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{Principal, Service, ServiceError, login_guard};
use crate::model::ids::{self, now_ms};
use crate::model::{Role, SshKey, Token, User};
use crate::store::Tx;

/// Prefix of native API tokens: `rbx_<id>_<secret>`.
const NATIVE_PREFIX: &str = "rbx_";

pub use crate::model::api::{NewUser, UserEdit};

/// Which kind of credential to make.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// `rbx_<id>_<secret>`, sent as `Authorization: Bearer`.
    Native,
    /// MAAS's `consumer_key:token_key:token_secret`, sent as OAuth 1.0a PLAINTEXT.
    Maas,
}

/// A new token; the secret is shown this once and never again.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct TokenCreated {
    /// Public part of the token, to list and revoke it by.
    pub id: String,
    /// The user the token acts as.
    pub username: String,
    /// What the token is for, as its creator named it.
    pub name: String,
    /// The whole credential to give to clients.
    pub token: String,
}

pub(super) fn sha256_hex(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares in time independent of where the first difference is.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn check_password(password: &str) -> Result<(), ServiceError> {
    if password.chars().count() < 8 {
        return Err(ServiceError::Invalid(
            "password must have at least 8 characters".into(),
        ));
    }
    Ok(())
}

fn parse_role(role: Option<&str>) -> Result<Role, ServiceError> {
    match role {
        None => Ok(Role::User),
        Some(r) => Role::parse(r)
            .ok_or_else(|| ServiceError::Invalid(format!("role {r:?} must be admin or user"))),
    }
}

/// Checks an SSH public key line: a known key type and base64 data.
fn check_ssh_key(key: &str) -> Result<String, ServiceError> {
    let key = key.trim();
    let mut parts = key.split_whitespace();
    let kind = parts.next().unwrap_or("");
    let data = parts.next().unwrap_or("");
    let known = [
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    ];
    let b64 = data.len() >= 16
        && data
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '='));
    if !known.contains(&kind) || !b64 || key.contains('\n') {
        return Err(ServiceError::Invalid(
            "not an SSH public key: expected a line like 'ssh-ed25519 AAAA... comment'".into(),
        ));
    }
    Ok(key.to_string())
}

/// The part of a user that the API shows (never the password hash).
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct UserView {
    /// Login name, unique on the appliance.
    pub username: String,
    /// Contact address; empty when not given.
    pub email: String,
    /// What the user may do.
    pub role: Role,
    /// Public keys installed on the machines this user deploys.
    pub ssh_keys: Vec<SshKey>,
    /// When the account was made, milliseconds since the Unix epoch.
    pub created_ms: u64,
}

impl From<User> for UserView {
    fn from(u: User) -> Self {
        UserView {
            username: u.username,
            email: u.email,
            role: u.role,
            ssh_keys: u.ssh_keys,
            created_ms: u.created_ms,
        }
    }
}

/// A token as listed (no secret).
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct TokenView {
    /// Public part of the token, to revoke it by.
    pub id: String,
    /// The user the token acts as.
    pub username: String,
    /// What the token is for, as its creator named it.
    pub name: String,
    /// "native" (a bearer token) or "maas" (an OAuth key for MAAS clients).
    pub kind: String,
    /// When the token was made, milliseconds since the Unix epoch.
    pub created_ms: u64,
}

impl Service {
    pub(crate) fn user_record(&self, username: &str) -> Result<Option<User>, ServiceError> {
        Ok(self.store.read()?.user(username)?)
    }

    /// Makes the first admin when the store has no users. Returns the password it set when it
    /// generated one (the caller shows it once), or None when there were users already or the
    /// password came from the caller.
    pub async fn bootstrap_admin(
        &self,
        username: &str,
        password: Option<String>,
    ) -> Result<Option<String>, ServiceError> {
        if !self.store.read()?.users()?.is_empty() {
            return Ok(None);
        }
        let generated = password.is_none();
        let password = password.unwrap_or_else(|| ids::random_token(20));
        check_password(&password)?;
        let hash = self.hash_password(password.clone()).await?;
        let user = User {
            username: username.to_string(),
            email: String::new(),
            role: Role::Admin,
            password_hash: hash,
            ssh_keys: Vec::new(),
            created_ms: now_ms(),
        };
        self.store
            .write(move |tx| -> Result<(), ServiceError> {
                if tx.user_count()? == 0 {
                    tx.put_user(&user)?;
                }
                Ok(())
            })
            .await?;
        tracing::info!(username, "created the first admin account");
        Ok(generated.then_some(password))
    }

    /// The accounts the caller may see: every one for admins, their own for users.
    pub fn list_users(&self, p: &Principal) -> Result<Vec<UserView>, ServiceError> {
        let users = self.store.read()?.users()?;
        Ok(users
            .into_iter()
            .filter(|u| p.is_admin() || u.username == p.username)
            .map(UserView::from)
            .collect())
    }

    /// One account; users may read only their own.
    pub fn user(&self, p: &Principal, username: &str) -> Result<UserView, ServiceError> {
        if !p.is_admin() && p.username != username {
            return Err(ServiceError::Forbidden(
                "users may only read their own account".into(),
            ));
        }
        self.user_record(username)?
            .map(UserView::from)
            .ok_or_else(|| ServiceError::not_found("user", username))
    }

    /// Makes an account (admins only); the role is "user" unless given.
    pub async fn create_user(&self, p: &Principal, new: NewUser) -> Result<UserView, ServiceError> {
        if !p.is_admin() {
            return Err(ServiceError::Forbidden(
                "only admins may create users".into(),
            ));
        }
        ids::check_name("user", &new.username).map_err(ServiceError::Invalid)?;
        check_password(&new.password)?;
        let role = parse_role(new.role.as_deref())?;
        let password = new.password.clone();
        let hash = self.hash_password(password).await?;
        let user = User {
            username: new.username.clone(),
            email: new.email,
            role,
            password_hash: hash,
            ssh_keys: Vec::new(),
            created_ms: now_ms(),
        };
        let u = user.clone();
        self.store
            .write(move |tx| -> Result<(), ServiceError> {
                if tx.user(&u.username)?.is_some() {
                    return Err(ServiceError::Conflict(format!(
                        "user {} exists",
                        u.username
                    )));
                }
                tx.put_user(&u)?;
                Ok(())
            })
            .await?;
        tracing::info!(username = %user.username, role = user.role.as_str(), by = %p.username, "user created");
        Ok(user.into())
    }

    /// Changes an account: users may change their own password and email, admins anything.
    pub async fn edit_user(
        &self,
        p: &Principal,
        username: &str,
        edit: UserEdit,
    ) -> Result<UserView, ServiceError> {
        let own = p.username == username;
        if !p.is_admin() && (!own || edit.role.is_some()) {
            return Err(ServiceError::Forbidden(
                "users may only change their own password and email".into(),
            ));
        }
        let role = match &edit.role {
            Some(r) => Some(parse_role(Some(r))?),
            None => None,
        };
        let hash = match edit.password.clone() {
            Some(pw) => {
                check_password(&pw)?;
                Some(self.hash_password(pw).await?)
            }
            None => None,
        };
        let name = username.to_string();
        let email = edit.email.clone();
        let user = self
            .store
            .write(move |tx| -> Result<User, ServiceError> {
                let mut u = tx
                    .user(&name)?
                    .ok_or_else(|| ServiceError::not_found("user", &name))?;
                if let Some(h) = hash {
                    u.password_hash = h;
                    // A new password is how a user shuts out whoever had the old one:
                    // every token made with it (native and MAAS API keys alike) goes too.
                    tx.remove_tokens_of(&name)?;
                }
                if let Some(e) = email {
                    u.email = e;
                }
                if let Some(r) = role {
                    if u.role == Role::Admin && r != Role::Admin && count_admins(tx)? <= 1 {
                        return Err(ServiceError::Conflict(
                            "the last admin cannot be demoted".into(),
                        ));
                    }
                    u.role = r;
                }
                tx.put_user(&u)?;
                Ok(u)
            })
            .await?;
        Ok(user.into())
    }

    /// Deletes a user and their tokens. Refused for the last admin and for users who own machines.
    pub async fn delete_user(&self, p: &Principal, username: &str) -> Result<(), ServiceError> {
        if !p.is_admin() {
            return Err(ServiceError::Forbidden(
                "only admins may delete users".into(),
            ));
        }
        if let Some(m) = self
            .index_snapshot()
            .iter()
            .find(|m| m.owner.as_deref() == Some(username))
        {
            return Err(ServiceError::Conflict(format!(
                "user {username} owns machine {}; release it first",
                m.system_id
            )));
        }
        let name = username.to_string();
        self.store
            .write_essential(move |tx| -> Result<(), ServiceError> {
                let u = tx
                    .user(&name)?
                    .ok_or_else(|| ServiceError::not_found("user", &name))?;
                if u.role == Role::Admin && count_admins(tx)? <= 1 {
                    return Err(ServiceError::Conflict(
                        "the last admin cannot be deleted".into(),
                    ));
                }
                tx.remove_tokens_of(&name)?;
                tx.remove_user(&name)?;
                Ok(())
            })
            .await?;
        tracing::info!(username, by = %p.username, "user deleted");
        Ok(())
    }

    /// Adds an SSH public key to `username` (themselves, or anyone for admins).
    pub async fn add_ssh_key(
        &self,
        p: &Principal,
        username: &str,
        key: &str,
    ) -> Result<SshKey, ServiceError> {
        if !p.is_admin() && p.username != username {
            return Err(ServiceError::Forbidden(
                "users may only add keys to their own account".into(),
            ));
        }
        let key = check_ssh_key(key)?;
        let name = username.to_string();
        self.store
            .write(move |tx| -> Result<SshKey, ServiceError> {
                let mut u = tx
                    .user(&name)?
                    .ok_or_else(|| ServiceError::not_found("user", &name))?;
                if u.ssh_keys.iter().any(|k| k.key == key) {
                    return Err(ServiceError::Conflict(
                        "this key is already on the account".into(),
                    ));
                }
                let id = u.ssh_keys.iter().map(|k| k.id).max().unwrap_or(0) + 1;
                let k = SshKey { id, key };
                u.ssh_keys.push(k.clone());
                tx.put_user(&u)?;
                Ok(k)
            })
            .await
    }

    /// Removes one SSH key from an account (its owner or an admin).
    pub async fn delete_ssh_key(
        &self,
        p: &Principal,
        username: &str,
        id: u32,
    ) -> Result<(), ServiceError> {
        if !p.is_admin() && p.username != username {
            return Err(ServiceError::Forbidden(
                "users may only remove keys from their own account".into(),
            ));
        }
        let name = username.to_string();
        self.store
            .write_essential(move |tx| -> Result<(), ServiceError> {
                let mut u = tx
                    .user(&name)?
                    .ok_or_else(|| ServiceError::not_found("user", &name))?;
                let before = u.ssh_keys.len();
                u.ssh_keys.retain(|k| k.id != id);
                if u.ssh_keys.len() == before {
                    return Err(ServiceError::not_found("ssh key", id.to_string()));
                }
                tx.put_user(&u)?;
                Ok(())
            })
            .await
    }

    /// Makes an API token for `username` (themselves, or anyone for admins).
    pub async fn create_token(
        &self,
        p: &Principal,
        username: &str,
        name: &str,
        kind: TokenKind,
    ) -> Result<TokenCreated, ServiceError> {
        if !p.is_admin() && p.username != username {
            return Err(ServiceError::Forbidden(
                "users may only make tokens for themselves".into(),
            ));
        }
        if self.user_record(username)?.is_none() {
            return Err(ServiceError::not_found("user", username));
        }
        let (id, secret, consumer, token) = match kind {
            TokenKind::Native => {
                let id = ids::random_token(12).to_ascii_lowercase();
                let secret = ids::random_token(32);
                let token = format!("{NATIVE_PREFIX}{id}_{secret}");
                (id, secret, None, token)
            }
            TokenKind::Maas => {
                // MAAS's shape: 18:18:32 characters.
                let consumer = ids::random_token(18);
                let id = ids::random_token(18);
                let secret = ids::random_token(32);
                let token = format!("{consumer}:{id}:{secret}");
                (id, secret, Some(consumer), token)
            }
        };
        let record = Token {
            id: id.clone(),
            username: username.to_string(),
            name: name.to_string(),
            secret_sha256: sha256_hex(&secret),
            maas_consumer_key: consumer,
            created_ms: now_ms(),
            session_expires_ms: None,
        };
        self.store
            .write_essential(move |tx| -> Result<(), ServiceError> {
                if tx.token(&record.id)?.is_some() {
                    return Err(ServiceError::Conflict(
                        "token id collision; try again".into(),
                    ));
                }
                tx.put_token(&record)?;
                Ok(())
            })
            .await?;
        tracing::info!(token_id = %id, username, by = %p.username, "token created");
        Ok(TokenCreated {
            id,
            username: username.to_string(),
            name: name.to_string(),
            token,
        })
    }

    /// Tokens of `p` (all tokens for admins).
    pub fn list_tokens(&self, p: &Principal) -> Result<Vec<TokenView>, ServiceError> {
        let tokens = self.store.read()?.tokens()?;
        Ok(tokens
            .into_iter()
            .filter(|t| p.is_admin() || t.username == p.username)
            .map(|t| TokenView {
                kind: if t.maas_consumer_key.is_some() {
                    "maas"
                } else if t.session_expires_ms.is_some() {
                    "session"
                } else {
                    "native"
                }
                .into(),
                id: t.id,
                username: t.username,
                name: t.name,
                created_ms: t.created_ms,
            })
            .collect())
    }

    /// Revokes a token (its owner or an admin); another user's token is NotFound to a non-admin.
    pub async fn revoke_token(&self, p: &Principal, id: &str) -> Result<(), ServiceError> {
        let id = id.to_string();
        let principal = p.clone();
        self.store
            .write_essential(move |tx| -> Result<(), ServiceError> {
                let t = tx
                    .token(&id)?
                    .ok_or_else(|| ServiceError::not_found("token", &id))?;
                if !principal.is_admin() && t.username != principal.username {
                    return Err(ServiceError::not_found("token", &id));
                }
                tx.remove_token(&id)?;
                Ok(())
            })
            .await
    }

    /// Checks a native bearer token.
    pub fn authenticate_bearer(&self, bearer: &str) -> Result<Principal, ServiceError> {
        let bad = || ServiceError::Unauthorized("invalid or revoked API token".into());
        let rest = bearer.strip_prefix(NATIVE_PREFIX).ok_or_else(bad)?;
        let (id, secret) = rest.split_once('_').ok_or_else(bad)?;
        self.check_token(id, secret, None).map_err(|_| bad())
    }

    /// Checks MAAS OAuth PLAINTEXT credentials: consumer key, token key, token secret.
    pub fn authenticate_maas(
        &self,
        consumer_key: &str,
        token_key: &str,
        token_secret: &str,
    ) -> Result<Principal, ServiceError> {
        self.check_token(token_key, token_secret, Some(consumer_key))
            .map_err(|_| {
                ServiceError::Unauthorized("Authorization Error: 'Invalid access token'".into())
            })
    }

    fn check_token(
        &self,
        id: &str,
        secret: &str,
        consumer: Option<&str>,
    ) -> Result<Principal, ServiceError> {
        let rx = self.store.read()?;
        let token = rx
            .token(id)?
            .ok_or_else(|| ServiceError::Unauthorized("unknown token".into()))?;
        let secret_ok = constant_time_eq(
            sha256_hex(secret).as_bytes(),
            token.secret_sha256.as_bytes(),
        );
        let consumer_ok = match (consumer, &token.maas_consumer_key) {
            (None, None) => true,
            (Some(given), Some(stored)) => constant_time_eq(given.as_bytes(), stored.as_bytes()),
            _ => false,
        };
        if !(secret_ok && consumer_ok) || token.session_expires_ms.is_some() {
            return Err(ServiceError::Unauthorized("bad token".into()));
        }
        let user = rx
            .user(&token.username)?
            .ok_or_else(|| ServiceError::Unauthorized("token's user is gone".into()))?;
        Ok(Principal {
            username: user.username,
            role: user.role,
        })
    }

    /// Hashes a new password in one of the login gate's slots.
    async fn hash_password(&self, password: String) -> Result<String, ServiceError> {
        self.login
            .hash(move |memory| login_guard::hash_password_with(&password, memory))
            .await?
            .map_err(|e| ServiceError::Invalid(format!("cannot hash the password: {e}")))
    }

    /// Checks a username and password (slow on purpose: argon2), through the login gate:
    /// refused with 429 while the name or the source must wait after failed attempts, with
    /// 503 while every hashing slot is busy. `source` is the caller's address, when the face
    /// knows it.
    pub async fn check_password(
        &self,
        username: &str,
        password: &str,
        source: Option<IpAddr>,
    ) -> Result<Principal, ServiceError> {
        let attempt = self
            .login
            .admit(username, source, std::time::Instant::now())?;
        let user = match self.user_record(username) {
            Ok(u) => u,
            Err(e) => {
                self.login.not_tried(attempt);
                return Err(e);
            }
        };
        let password = password.to_string();
        // Verify against a dummy hash when the user does not exist, so timing does not tell.
        let (hash, principal) = match user {
            Some(u) => (
                u.password_hash.clone(),
                Some(Principal {
                    username: u.username,
                    role: u.role,
                }),
            ),
            None => (DUMMY_HASH.to_string(), None),
        };
        let verified = self
            .login
            .hash(move |memory| login_guard::verify_password_with(&password, &hash, memory))
            .await;
        let ok = match verified {
            Ok(Ok(ok)) => ok,
            Ok(Err(error)) => {
                tracing::warn!(username, %error, "a stored password hash cannot be checked");
                false
            }
            Err(busy) => {
                self.login.not_tried(attempt);
                return Err(busy);
            }
        };
        match (ok, principal) {
            (true, Some(p)) => {
                self.login.succeeded(attempt);
                Ok(p)
            }
            _ => {
                tracing::info!(username, source = ?source, "failed login");
                Err(ServiceError::Unauthorized(
                    "wrong username or password".into(),
                ))
            }
        }
    }

    /// Logs in with a password and returns a fresh token of the asked kind. `source` is the
    /// caller's address (failed logins are slowed down per user name and per source).
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        token_name: &str,
        kind: TokenKind,
        source: Option<IpAddr>,
    ) -> Result<TokenCreated, ServiceError> {
        let p = self.check_password(username, password, source).await?;
        self.create_token(&p, username, token_name, kind).await
    }
}

/// argon2id hash of a random password, used to spend the same time on unknown users.
pub(super) const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$3lHz5lZ8fP0w0XvJ6qk0l1Gk9h1s6d0vJvGm8b7bW1A";

fn count_admins(tx: &Tx<'_>) -> Result<usize, ServiceError> {
    let users = tx.users()?;
    Ok(users.iter().filter(|u| u.role == Role::Admin).count())
}
