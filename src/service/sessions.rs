//! Browser sessions: what the control page's cookie stands for. A session is a token record of
//! its own kind (it expires, and it is never accepted as an API token), made by a password login
//! through the same login gate as `POST /api/v1/auth/login`, so failed logins are slowed down the
//! same way on both.

use std::net::IpAddr;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::users::{constant_time_eq, sha256_hex};
use super::{Principal, Service, ServiceError};
use crate::model::Token;
use crate::model::ids::{self, now_ms};

/// Prefix of a session's cookie value: `rbs_<id>_<secret>`.
const SESSION_PREFIX: &str = "rbs_";

/// How long a session lasts after its login: a working day at the rack.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// A new session: the cookie's value, shown to the browser once.
#[derive(Clone, Debug)]
pub struct NewSession {
    /// The whole credential, the cookie's value.
    pub cookie: String,
    /// Who logged in.
    pub principal: Principal,
    /// How long the cookie is good for (its Max-Age).
    pub lifetime: Duration,
}

/// A session a cookie named: who it is, and the token its forms must carry.
#[derive(Clone, Debug)]
pub struct Session {
    /// The session's own id (public: it is what logout revokes).
    pub id: String,
    /// Who is logged in.
    pub principal: Principal,
    /// The per-session anti-CSRF token: every POST of the page must carry it. Derived from the
    /// session's secret, so a page can show it and nothing needs storing; another site can
    /// neither read the cookie nor compute it.
    pub csrf_token: String,
}

/// The CSRF token of the session whose secret is `secret`.
fn csrf_token_of(secret: &str) -> String {
    let digest = Sha256::digest(format!("rackbox-csrf\0{secret}").as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

impl Service {
    /// Logs in with a password and makes a browser session. `source` is the caller's address
    /// (failed logins are slowed down per user name and per source). The user's expired
    /// sessions are removed in the same write.
    pub async fn login_session(
        &self,
        username: &str,
        password: &str,
        source: Option<IpAddr>,
    ) -> Result<NewSession, ServiceError> {
        let principal = self.check_password(username, password, source).await?;
        let id = ids::random_token(12).to_ascii_lowercase();
        let secret = ids::random_token(32);
        let now = now_ms();
        let record = Token {
            id: id.clone(),
            username: principal.username.clone(),
            name: "browser session".into(),
            secret_sha256: sha256_hex(&secret),
            maas_consumer_key: None,
            created_ms: now,
            session_expires_ms: Some(now + SESSION_LIFETIME.as_millis() as u64),
        };
        self.store
            .write_essential(move |tx| -> Result<(), ServiceError> {
                if tx.token(&record.id)?.is_some() {
                    return Err(ServiceError::Conflict(
                        "session id collision; try again".into(),
                    ));
                }
                for old in tx.tokens()? {
                    if old.username == record.username
                        && old.session_expires_ms.is_some_and(|end| end <= now)
                    {
                        tx.remove_token(&old.id)?;
                    }
                }
                tx.put_token(&record)?;
                Ok(())
            })
            .await?;
        tracing::info!(session = %id, username = %principal.username, "session started");
        Ok(NewSession {
            cookie: format!("{SESSION_PREFIX}{id}_{secret}"),
            principal,
            lifetime: SESSION_LIFETIME,
        })
    }

    /// The session a cookie's value names, if it is valid and not expired.
    pub fn session(&self, cookie: &str) -> Result<Session, ServiceError> {
        let bad = || ServiceError::Unauthorized("not logged in, or the session has ended".into());
        let rest = cookie.strip_prefix(SESSION_PREFIX).ok_or_else(bad)?;
        let (id, secret) = rest.split_once('_').ok_or_else(bad)?;
        let rx = self.store.read()?;
        let token = rx.token(id)?.ok_or_else(bad)?;
        let live = token.session_expires_ms.is_some_and(|end| end > now_ms());
        let secret_ok = constant_time_eq(
            sha256_hex(secret).as_bytes(),
            token.secret_sha256.as_bytes(),
        );
        if !(live && secret_ok) {
            return Err(bad());
        }
        let user = rx.user(&token.username)?.ok_or_else(bad)?;
        Ok(Session {
            id: token.id,
            principal: Principal {
                username: user.username,
                role: user.role,
            },
            csrf_token: csrf_token_of(secret),
        })
    }

    /// Ends a session (logout). Ending one that is gone already is not an error.
    pub async fn end_session(&self, session: &Session) -> Result<(), ServiceError> {
        let id = session.id.clone();
        self.store
            .write_essential(move |tx| -> Result<(), ServiceError> {
                if tx
                    .token(&id)?
                    .is_some_and(|t| t.session_expires_ms.is_some())
                {
                    tx.remove_token(&id)?;
                }
                Ok(())
            })
            .await?;
        tracing::info!(session = %session.id, username = %session.principal.username, "session ended");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_csrf_token_is_fixed_per_secret_and_differs_between_secrets() {
        assert_eq!(csrf_token_of("a"), csrf_token_of("a"));
        assert_ne!(csrf_token_of("a"), csrf_token_of("b"));
        assert_eq!(csrf_token_of("a").len(), 32);
    }
}
