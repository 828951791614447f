//! The two error types of the power module: one for parameters a user typed
//! (found before any packet is sent), one for what happened when rackbox talked
//! to a machine's BMC.
//!
//! Every message is written for the person who reads it in the UI or the CLI:
//! what failed, where, and what to try. No message ever carries a password:
//! detail text that comes from the outside world (a BMC's answer, a command's
//! stderr, a library's error) goes through [`Scrubber`] first, which removes
//! the machine's secrets from it.

use std::time::Duration;

use crate::model::PowerType;

/// A power parameter a user gave is missing, unknown or malformed. The message
/// always names the parameter, never its value when the parameter is a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PowerParamError {
    /// A required parameter is absent or empty.
    #[error("power parameter '{param}' is required for power_type {power_type}")]
    Missing {
        /// The parameter's name.
        param: String,
        /// The driver that needs it.
        power_type: PowerType,
    },
    /// A parameter the driver does not know (a typo, or one of another driver).
    #[error("unknown power parameter '{param}' for power_type {power_type}")]
    Unknown {
        /// The parameter's name as given.
        param: String,
        /// The driver that does not know it.
        power_type: PowerType,
    },
    /// A parameter of the wrong JSON type (an object where a string belongs...).
    #[error("power parameter '{param}' must be {expected}")]
    WrongType {
        /// The parameter's name.
        param: String,
        /// What it must be, in words.
        expected: &'static str,
    },
    /// A parameter of the right type but a value the driver cannot use.
    #[error("power parameter '{param}' is invalid: {reason}")]
    Invalid {
        /// The parameter's name.
        param: String,
        /// Why, in words; never contains a secret's value.
        reason: String,
    },
}

/// Something went wrong while controlling a machine's power.
///
/// The variants are the failure modes a user has to tell apart: the BMC cannot
/// be reached, it did not answer in time, it refused the credentials, it
/// refused the command, it accepted a boot override it then did not keep, or
/// the machine has no remote power control at all.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PowerError {
    /// The machine's power parameters are unusable.
    #[error(transparent)]
    Params(#[from] PowerParamError),

    /// Nothing answers at the address: connection refused, ICMP port
    /// unreachable, no route, name not found.
    #[error("{what} at {address} is unreachable: {detail}")]
    Unreachable {
        /// "BMC", "Redfish service", "power webhook".
        what: &'static str,
        /// Where rackbox tried (host:port or URL), never with credentials.
        address: String,
        /// The operating system's or library's words.
        detail: String,
    },

    /// The peer took longer than the operation's deadline.
    #[error(
        "no answer from {what} at {address} within {after:?} while {during}; check that it is powered, reachable from rackbox and that its LAN channel is enabled"
    )]
    Timeout {
        /// "BMC", "Redfish service", "power command".
        what: &'static str,
        /// Where rackbox tried.
        address: String,
        /// The deadline that passed.
        after: Duration,
        /// The step that was waiting ("opening a session", "power on"...).
        during: String,
    },

    /// A power command went out but the state it was for was never seen: the
    /// BMC's answer, or its power state afterwards, did not show it in time.
    /// `detail` says what was confirmed and what was not, so an operator knows
    /// in which state the machine may be.
    #[error("{what} at {address}: {operation} was not confirmed within {after:?}: {detail}")]
    NotConfirmed {
        /// "BMC".
        what: &'static str,
        /// Where rackbox tried.
        address: String,
        /// The operation ("power on", "power cycle"...).
        operation: String,
        /// How long rackbox waited.
        after: Duration,
        /// What was sent, answered and read back.
        detail: String,
    },

    /// The peer refused the user name or password.
    #[error("{what} at {address} refused the credentials of user '{user}': {detail}")]
    AuthenticationFailed {
        /// "BMC" or "Redfish service".
        what: &'static str,
        /// Where rackbox tried.
        address: String,
        /// The user name (not a secret; shown so a typo can be spotted).
        user: String,
        /// What the peer said, scrubbed.
        detail: String,
    },

    /// The BMC has no free session slot or is otherwise busy; later may work.
    #[error(
        "{what} at {address} is busy: {detail}; try again later (if it stays busy, another tool may be leaving sessions open)"
    )]
    Busy {
        /// "BMC" or "Redfish service".
        what: &'static str,
        /// Where rackbox tried.
        address: String,
        /// What the peer said.
        detail: String,
    },

    /// The BMC understood the request and said no (an IPMI completion code).
    #[error("BMC at {address} refused {operation}: completion code 0x{code:02X} ({meaning})")]
    Refused {
        /// Where rackbox tried.
        address: String,
        /// The command that was refused.
        operation: String,
        /// The IPMI completion code.
        code: u8,
        /// The completion code in words.
        meaning: String,
    },

    /// A Redfish service or power webhook answered with an HTTP error status.
    #[error("{what} at {address} answered {operation} with HTTP {status}: {detail}")]
    HttpStatus {
        /// "Redfish service" or "power webhook".
        what: &'static str,
        /// Where rackbox tried.
        address: String,
        /// The request that failed.
        operation: String,
        /// The HTTP status code.
        status: u16,
        /// The service's own message (Redfish error body), scrubbed and cut short.
        detail: String,
    },

    /// The TLS handshake failed, usually an untrusted or self-signed
    /// certificate, or (with `certificate_sha256`) not the pinned one.
    #[error("TLS with {address} failed: {detail}. {}", tls_hint(*.pinned))]
    Tls {
        /// Where rackbox tried.
        address: String,
        /// The TLS library's words.
        detail: String,
        /// Whether the machine pins its BMC's certificate (`certificate_sha256`):
        /// chooses the advice at the end of the message.
        pinned: bool,
    },

    /// The BMC said yes to a one-time network boot but does not keep it.
    #[error(
        "BMC at {address} accepted the one-time PXE boot override but reads back {read_back}; the machine would not boot from the network"
    )]
    BootOverrideNotKept {
        /// Where rackbox tried.
        address: String,
        /// What the BMC reports after the change, in words.
        read_back: String,
    },

    /// The machine has no remote power control: a person has to act.
    #[error("manual power control: waiting for an operator to {action}")]
    Manual {
        /// What the operator is asked to do ("switch the machine on").
        action: &'static str,
    },

    /// The driver cannot do what the parameters ask for (a cipher suite,
    /// privilege level or operation it does not implement).
    #[error("{0}")]
    Unsupported(String),

    /// The peer answered something rackbox could not make sense of.
    #[error("unexpected answer from {what} at {address}: {detail}")]
    Protocol {
        /// "BMC", "Redfish service", "power webhook".
        what: &'static str,
        /// Where rackbox tried.
        address: String,
        /// What was wrong, scrubbed.
        detail: String,
    },

    /// A configured power command exited with an error.
    #[error("{param} failed ({status}): {stderr}")]
    CommandFailed {
        /// Which parameter's command ran (power_on_command...), not its text.
        param: &'static str,
        /// "exit status 3", "killed by signal 9".
        status: String,
        /// The end of what the command wrote to stderr, scrubbed.
        stderr: String,
    },

    /// The driver code panicked. The panic was contained on its own thread:
    /// the daemon goes on, only this operation failed.
    #[error(
        "internal error in the {driver} driver, contained (the daemon keeps running): {detail}"
    )]
    DriverPanicked {
        /// "ipmi", "redfish"...
        driver: &'static str,
        /// The panic message, scrubbed.
        detail: String,
    },
}

/// What to try after a TLS failure, by whether the certificate is pinned.
fn tls_hint(pinned: bool) -> &'static str {
    if pinned {
        "This machine pins its BMC's certificate (certificate_sha256): only that certificate is \
         accepted. If the BMC's certificate was replaced, check the new one out of band and set \
         certificate_sha256 to its SHA-256"
    } else {
        "If this BMC has a self-signed certificate, install a trusted one, pin it with \
         certificate_sha256=<its SHA-256> or set insecure_skip_verify=true for this machine"
    }
}

impl PowerError {
    /// Whether trying again later may succeed (the peer was unreachable or
    /// slow), as opposed to a failure that needs a person to change something.
    /// The service's reconciler uses this to choose between back-off and alarm.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            PowerError::Unreachable { .. }
                | PowerError::Timeout { .. }
                | PowerError::NotConfirmed { .. }
                | PowerError::Busy { .. }
        )
    }
}

/// Removes a machine's secrets from text that came from elsewhere.
///
/// Why: BMC firmware, shell commands and libraries sometimes echo what they
/// were given (a URL with credentials, a command line with `-P`), and such text
/// ends up in error messages and logs. Every driver owns one and passes all
/// foreign text through it before it leaves the driver.
#[derive(Clone, Default)]
pub struct Scrubber {
    /// The secret values to hide. Empty strings are never stored: they would
    /// match everywhere.
    secrets: Vec<String>,
}

impl std::fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Scrubber({} secrets)", self.secrets.len())
    }
}

/// What a secret is replaced with, in masked parameters and scrubbed text.
pub const MASK: &str = "********";

impl Scrubber {
    /// A scrubber that hides each of `secrets` (empty ones are ignored).
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Self {
        let mut secrets: Vec<String> = secrets
            .into_iter()
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        // Longest first, so a secret that contains another is hidden whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Scrubber { secrets }
    }

    /// `text` with every secret replaced by [`MASK`], cut to at most `max`
    /// characters (an error message is no place for a whole HTML page).
    pub fn clean(&self, text: &str, max: usize) -> String {
        let mut out = text.to_owned();
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), MASK);
            }
        }
        let trimmed = out.trim();
        if trimmed.chars().count() > max {
            let cut: String = trimmed.chars().take(max).collect();
            format!("{cut}…")
        } else {
            trimmed.to_owned()
        }
    }

    /// [`Scrubber::clean`] with the length limit used for error details.
    pub fn detail(&self, text: &str) -> String {
        self.clean(text, 400)
    }
}
