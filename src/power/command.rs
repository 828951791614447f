//! The command driver: for power switches rackbox has no protocol for (a PDU
//! with its own CLI, a smart plug, a lab script), each operation is a shell
//! command run with `/bin/sh -c`, or an HTTP URL (MAAS's webhook driver):
//! POST for actions, GET for the query.
//!
//! A shell command gets `RACKBOX_POWER_OP` (on, off, query, netboot) and, for
//! netboot, `RACKBOX_BOOT_EFI` (1 or 0) in its environment; no secret is
//! passed. It is killed when the operation's timeout passes. Errors name the
//! parameter that ran, never the command's text (it may hold a password), and
//! carry the end of its stderr.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};

use super::params::{Action, CommandParams};
use super::{BootOverride, PowerDriver, PowerError, PowerFuture, PowerState, PowerType, Scrubber};
use crate::model::error::error_chain;

/// Runs a machine's configured power commands or URLs.
pub(crate) struct CommandDriver {
    /// The machine's parameters (Debug masks the password).
    params: CommandParams,
    /// The deadline of each operation.
    timeout: Duration,
    /// For the URLs; certificates are always checked.
    client: reqwest::Client,
    /// Hides the password in any text that leaves the driver.
    scrubber: Scrubber,
}

impl std::fmt::Debug for CommandDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandDriver")
            .field("params", &self.params)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Which operation an action is for: its parameter names and env value.
#[derive(Clone, Copy)]
enum Op {
    On,
    Off,
    Query,
    Netboot { efi: bool },
}

impl Op {
    fn env(self) -> &'static str {
        match self {
            Op::On => "on",
            Op::Off => "off",
            Op::Query => "query",
            Op::Netboot { .. } => "netboot",
        }
    }

    fn param(self, action: &Action) -> &'static str {
        let shell = matches!(action, Action::Shell(_));
        match (self, shell) {
            (Op::On, true) => "power_on_command",
            (Op::On, false) => "power_on_uri",
            (Op::Off, true) => "power_off_command",
            (Op::Off, false) => "power_off_uri",
            (Op::Query, true) => "power_query_command",
            (Op::Query, false) => "power_query_uri",
            (Op::Netboot { .. }, true) => "power_netboot_command",
            (Op::Netboot { .. }, false) => "power_netboot_uri",
        }
    }
}

impl CommandDriver {
    pub(crate) fn new(params: CommandParams, timeout: Duration) -> Self {
        // The ring provider must be installed before a client is built.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .no_proxy()
            .build()
            .unwrap_or_default();
        let actions = [
            Some(&params.on),
            Some(&params.off),
            params.query.as_ref(),
            params.netboot.as_ref(),
        ];
        let embedded: Vec<String> = actions
            .into_iter()
            .flatten()
            .flat_map(|a| match a {
                Action::Shell(text) | Action::Http(text) => credentials_in(text),
            })
            .collect();
        let scrubber = Scrubber::new(
            std::iter::once(params.pass.expose()).chain(embedded.iter().map(String::as_str)),
        );
        CommandDriver {
            params,
            timeout,
            client,
            scrubber,
        }
    }

    /// Runs one action and returns what it printed (stdout or body).
    async fn act(&self, op: Op, action: &Action) -> Result<String, PowerError> {
        let param = op.param(action);
        tracing::info!(param, "running power action");
        let result = match action {
            Action::Shell(command) => self.shell(op, param, command).await,
            Action::Http(url) => self.http(op, param, url).await,
        };
        if let Err(e) = &result {
            tracing::warn!(param, error = %e, "power action failed");
        }
        result
    }

    async fn shell(
        &self,
        op: Op,
        param: &'static str,
        command: &str,
    ) -> Result<String, PowerError> {
        let mut cmd = tokio::process::Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(command)
            .env("RACKBOX_POWER_OP", op.env())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so a timeout ends what it started too
            // (a hung ssh or curl below the shell), not only the shell.
            .process_group(0)
            .kill_on_drop(true);
        if let Op::Netboot { efi } = op {
            cmd.env("RACKBOX_BOOT_EFI", if efi { "1" } else { "0" });
        }
        let child = cmd.spawn().map_err(|e| PowerError::CommandFailed {
            param,
            status: "not started".to_owned(),
            stderr: format!("cannot run /bin/sh: {e}"),
        })?;
        let group = child.id();
        let output = match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Ok(Ok(output)) => output,
            Ok(Err(e)) => {
                return Err(PowerError::CommandFailed {
                    param,
                    status: "lost".to_owned(),
                    stderr: format!("waiting for the command failed: {e}"),
                });
            }
            Err(_) => {
                if let Some(pgid) = group.and_then(|pid| i32::try_from(pid).ok()) {
                    kill_group(pgid);
                }
                return Err(PowerError::Timeout {
                    what: "power command",
                    address: param.to_owned(),
                    after: self.timeout,
                    during: format!("running {param} (it was killed)"),
                });
            }
        };
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            // The end of stderr is where the reason usually is.
            let tail: String = {
                let chars: Vec<char> = stderr.trim_end().chars().collect();
                chars[chars.len().saturating_sub(400)..].iter().collect()
            };
            return Err(PowerError::CommandFailed {
                param,
                status: output.status.to_string(),
                stderr: self.scrubber.clean(&tail, 400),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    async fn http(&self, op: Op, param: &'static str, url: &str) -> Result<String, PowerError> {
        let mut request = match op {
            Op::Query => self.client.get(url),
            Op::Netboot { efi } => self.client.post(url).json(&json!({ "efi": efi })),
            Op::On | Op::Off => self.client.post(url),
        };
        if let Some(user) = &self.params.user {
            request = request.basic_auth(user, Some(self.params.pass.expose()));
        }
        let address = url_without_query(url);
        let response = request.send().await.map_err(|e| {
            if e.is_timeout() {
                PowerError::Timeout {
                    what: "power webhook",
                    address: address.clone(),
                    after: self.timeout,
                    during: format!("calling {param}"),
                }
            } else {
                PowerError::Unreachable {
                    what: "power webhook",
                    address: address.clone(),
                    detail: self.scrubber.detail(&error_chain(&e)),
                }
            }
        })?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(PowerError::AuthenticationFailed {
                what: "power webhook",
                address,
                user: self.params.user.clone().unwrap_or_default(),
                detail: format!("HTTP {}", status.as_u16()),
            });
        }
        if !status.is_success() {
            return Err(PowerError::HttpStatus {
                what: "power webhook",
                address,
                operation: param.to_owned(),
                status: status.as_u16(),
                detail: self.scrubber.clean(&body, 200),
            });
        }
        Ok(body)
    }
}

/// Kills every process of the group `pgid` (the timed-out command's).
fn kill_group(pgid: i32) {
    if pgid <= 1 {
        return;
    }
    // SAFETY: kill(2) takes plain integers and touches no memory of ours; a
    // negative pid addresses the process group the command was started in
    // (process_group(0) made its pid the group id), which holds only it and
    // its descendants.
    let rc = unsafe { libc::kill(-pgid, libc::SIGKILL) };
    if rc != 0 {
        tracing::debug!(pgid, error = %std::io::Error::last_os_error(), "killing the command's process group failed");
    }
}

/// The credentials written into a command line or URL, so that the driver's
/// messages (a command's stderr, what a query printed, a webhook's answer) never
/// repeat them: the password of every URL in it (`https://user:pass@host/`), the
/// value of every query parameter (`?password=...&token=...`), the word after a
/// password flag (`-P`, `-p`, `--password`, `--pass`, and the part after the colon
/// of curl's `-u`/`--user user:pass`), and the value of `key=value` words whose
/// key names a password, secret, token or key.
pub(crate) fn credentials_in(text: &str) -> Vec<String> {
    let words: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || c == '\'' || c == '"')
        .filter(|w| !w.is_empty())
        .collect();
    let secret_key = |k: &str| {
        let k = k.trim_start_matches('-').to_ascii_lowercase();
        ["pass", "secret", "token", "key", "auth"]
            .iter()
            .any(|n| k.contains(n))
    };
    let mut found = Vec::new();
    for (i, word) in words.iter().enumerate() {
        if let Some(url) = url_in(word) {
            if let Some(pass) = url.password() {
                found.push(pass.to_owned());
                let decoded = percent_encoding::percent_decode_str(pass).decode_utf8_lossy();
                found.push(decoded.into_owned());
            }
            for (_, value) in url.query_pairs() {
                found.push(value.into_owned());
            }
            continue;
        }
        let next = words.get(i + 1).copied();
        match *word {
            "-P" | "-p" | "--password" | "--pass" | "--passwd" => {
                found.extend(next.map(str::to_owned))
            }
            "-u" | "--user" => {
                if let Some((_, pass)) = next.and_then(|n| n.split_once(':')) {
                    found.push(pass.to_owned());
                }
            }
            _ => {
                if let Some((key, value)) = word.split_once('=')
                    && secret_key(key)
                {
                    found.push(value.to_owned());
                }
            }
        }
    }
    // Short fragments would scrub ordinary words out of every message.
    found.retain(|s| s.len() >= 3);
    found
}

/// The URL inside a shell word (`https://...`, or `--url=https://...`).
fn url_in(word: &str) -> Option<reqwest::Url> {
    let at = word.find("://")?;
    let scheme_start = word[..at]
        .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
        .map_or(0, |i| i + 1);
    reqwest::Url::parse(&word[scheme_start..]).ok()
}

/// A URL as shown in messages: without its query string (tokens live there).
fn url_without_query(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            u.set_query(None);
            let _ = u.set_password(None);
            u.to_string()
        }
        Err(_) => "(invalid URL)".to_owned(),
    }
}

/// Reads a power state from what a query command printed or a webhook
/// answered: "on"/"off" as the first word, or a JSON object with a
/// "state", "power_state", "status" or "PowerState" of "on"/"off".
pub(crate) fn parse_state(text: &str) -> Option<PowerState> {
    let word = |s: &str| match s.trim().to_ascii_lowercase().as_str() {
        "on" | "poweredon" | "running" => Some(PowerState::On),
        "off" | "poweredoff" | "stopped" => Some(PowerState::Off),
        _ => None,
    };
    if let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(text) {
        return ["state", "power_state", "status", "PowerState"]
            .iter()
            .find_map(|k| obj.get(*k).and_then(Value::as_str).and_then(word));
    }
    text.split_whitespace().next().and_then(word)
}

impl PowerDriver for CommandDriver {
    fn power_type(&self) -> PowerType {
        PowerType::Command
    }

    fn power_on(&self) -> PowerFuture<'_, ()> {
        Box::pin(async { self.act(Op::On, &self.params.on).await.map(|_| ()) })
    }

    fn power_off(&self, _soft: bool) -> PowerFuture<'_, ()> {
        // A power command has no soft variant: it does what it does.
        Box::pin(async { self.act(Op::Off, &self.params.off).await.map(|_| ()) })
    }

    fn power_cycle(&self) -> PowerFuture<'_, ()> {
        Box::pin(async {
            self.act(Op::Off, &self.params.off).await?;
            self.act(Op::On, &self.params.on).await.map(|_| ())
        })
    }

    fn query(&self) -> PowerFuture<'_, PowerState> {
        Box::pin(async {
            let Some(action) = &self.params.query else {
                return Ok(PowerState::Unknown);
            };
            let printed = self.act(Op::Query, action).await?;
            parse_state(&printed).ok_or_else(|| PowerError::Protocol {
                what: "power command",
                address: Op::Query.param(action).to_owned(),
                detail: format!(
                    "printed '{}', expected on or off",
                    self.scrubber.clean(&printed, 80)
                ),
            })
        })
    }

    fn set_boot_network_once(&self, efi: bool) -> PowerFuture<'_, BootOverride> {
        Box::pin(async move {
            let Some(action) = &self.params.netboot else {
                return Ok(BootOverride {
                    confirmed: false,
                    read_back: "not managed by rackbox: no power_netboot_command or \
                                power_netboot_uri; the machine's own boot order must try the \
                                network first"
                        .to_owned(),
                    persistent: None,
                    efi: None,
                    warnings: vec!["the one-time network boot was not set".to_owned()],
                });
            };
            let op = Op::Netboot { efi };
            self.act(op, action).await?;
            Ok(BootOverride {
                confirmed: false,
                read_back: format!(
                    "{} succeeded (a command cannot be read back)",
                    op.param(action)
                ),
                persistent: None,
                efi: Some(efi),
                warnings: Vec::new(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_from_text_and_json() {
        assert_eq!(parse_state("on\n"), Some(PowerState::On));
        assert_eq!(parse_state("OFF since 10:00"), Some(PowerState::Off));
        assert_eq!(parse_state(r#"{"state": "on"}"#), Some(PowerState::On));
        assert_eq!(
            parse_state(r#"{"PowerState": "Off"}"#),
            Some(PowerState::Off)
        );
        assert_eq!(parse_state("maybe"), None);
        assert_eq!(parse_state(""), None);
    }

    #[test]
    fn urls_in_messages_lose_their_query() {
        assert_eq!(
            url_without_query("http://u:p@127.0.0.1:8/on?token=abc"),
            "http://u@127.0.0.1:8/on"
        );
    }

    #[test]
    fn credentials_are_found_in_commands_and_urls() {
        let found = credentials_in(
            "curl -s -u pdu:c-pass1 'https://admin:p%40ss2@pdu.example/on?token=tok3&x=val4' \
             && ipmitool -H 10.0.0.1 -U root -P pw5 power on && snmpset --password=pw6 \
             && tool api_key=key7 host=pdu",
        );
        for secret in [
            "c-pass1", "p%40ss2", "p@ss2", "tok3", "val4", "pw5", "pw6", "key7",
        ] {
            assert!(
                found.iter().any(|f| f == secret),
                "{secret} not found in {found:?}"
            );
        }
        for ordinary in ["pdu", "root", "host", "admin", "10.0.0.1"] {
            assert!(
                !found.iter().any(|f| f == ordinary),
                "{ordinary} taken for a secret"
            );
        }
        assert!(credentials_in("echo on").is_empty());
    }
}
