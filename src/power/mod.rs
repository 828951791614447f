//! Power control: switching machines on and off, asking whether they are on,
//! and making their next boot a network boot, through their BMC.
//!
//! The service calls this module; nothing here knows about the store or the
//! machine life cycle. A machine's power settings are MAAS-style: a
//! `power_type` and a JSON object of `power_parameters` (see [`power_types`]
//! for every driver's parameters).
//!
//! ```text
//!   validate(type, params)        before storing a machine's power settings
//!   driver_for(type, params)      -> Box<dyn PowerDriver>
//!   driver.power_on() / power_off(soft) / power_cycle() / query()
//!   driver.set_boot_network_once(efi) -> BootOverride (read back from the BMC)
//!   query_many(machines, concurrency, timeout)   for the reconciler's poll
//! ```
//!
//! Drivers: `ipmi` (ipmi-rs, blocking, run on `spawn_blocking` with its panics
//! contained), `redfish` (reqwest with rustls), `command` (shell commands or
//! webhook URLs) and `manual` (an operator acts; every operation answers
//! [`PowerError::Manual`]).
//!
//! Every operation has a deadline (the driver's timeout, [`DEFAULT_TIMEOUT`]
//! unless [`driver_with_timeout`] says otherwise): a dead BMC costs one
//! timeout, never a stuck task.
//!
//! # Read-back policy for the one-time network boot
//!
//! rackbox answers every network boot of a machine it knows (a deployed
//! machine is told to boot its disk), so what matters is that the next boot
//! *is* a network boot. After setting the override each driver reads it back:
//!
//! * the boot device is not the network (IPMI device selector not PXE, Redfish
//!   target not `Pxe`, or Redfish `BootSourceOverrideEnabled: Disabled`):
//!   failure, [`PowerError::BootOverrideNotKept`];
//! * the device is the network but the BMC reports it as persistent (Redfish
//!   `Continuous`, the sushy-tools and some vendor firmware quirk), or the
//!   IPMI "flags valid" bit clear (ipmi_sim never reports it), or a different
//!   EFI/legacy mode than asked: success, with the difference listed in
//!   [`BootOverride::warnings`] for the service to show. A persistent network
//!   boot still brings the machine to rackbox; refusing it would make such
//!   machines impossible to deploy.

mod command;
mod error;
mod ipmi;
mod ipmi_guard;
mod ipmi_wire;
mod params;
mod poll;
mod redfish;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};

pub use error::{MASK, PowerError, PowerParamError, Scrubber};
pub use params::{
    BootType, ParamKind, PowerParamSchema, PowerTypeSchema, is_secret, mask_secrets, power_types,
    requested_boot_efi, validate,
};
pub use poll::{Backoff, query_many};

use params::DriverParams;

/// What a driver's query answers: on, off or unknown (never `Error`, which is what the service
/// records when a driver fails).
pub use crate::model::PowerState;
/// Which driver: the machine's `power_type`.
pub use crate::model::PowerType;

/// The deadline of one power operation when none is given: long enough for a
/// slow BMC's session setup plus a few lost packets, short enough that an
/// operator is told within a minute that a BMC is dead.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A power operation, for callers that keep operations as data (a queue, an
/// audit log) and run them with [`PowerDriver::run`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "op")]
pub enum PowerOp {
    /// Switch on (no-op when already on).
    On,
    /// Switch off: `soft` asks the OS to shut down (ACPI), else cut power.
    Off {
        /// Graceful (ACPI) rather than hard.
        soft: bool,
    },
    /// Off then on; a machine that is off is switched on.
    Cycle,
    /// Ask whether the machine is on.
    Query,
    /// Make the next boot (only) a network boot.
    NetbootOnce {
        /// UEFI network boot rather than legacy BIOS PXE.
        efi: bool,
    },
}

/// What a successful [`PowerOp`] gives back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum PowerOutcome {
    /// The BMC accepted the command.
    Done,
    /// The answer to a query.
    State {
        /// The power state.
        state: PowerState,
    },
    /// The boot override as read back.
    BootOverride(BootOverride),
}

/// The one-time network boot as the BMC reports it after rackbox set it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BootOverride {
    /// Whether the BMC was asked what it keeps. False only for drivers that
    /// cannot read back (a netboot command or URL); then `read_back` says so.
    pub confirmed: bool,
    /// The BMC's report in words, e.g. "Pxe, Continuous, UEFI".
    pub read_back: String,
    /// Whether the BMC keeps the network boot for all future boots.
    pub persistent: Option<bool>,
    /// Whether the BMC reports a UEFI (true) or legacy (false) boot.
    pub efi: Option<bool>,
    /// Differences from what was asked that do not stop the machine from
    /// reaching rackbox (see the module's read-back policy).
    pub warnings: Vec<String>,
}

/// A boxed future, so [`PowerDriver`] stays dyn-compatible.
pub(crate) type PowerFuture<'a, T> =
    Pin<Box<dyn Future<Output = Result<T, PowerError>> + Send + 'a>>;

/// One machine's power control. Built by [`driver_for`] from its parameters;
/// cheap to build, holds no connection between calls (every call opens and
/// closes its own session, so a BMC reset between calls does no harm).
///
/// Each method finishes within the driver's timeout.
pub trait PowerDriver: Send + Sync + std::fmt::Debug {
    /// The driver's power type.
    fn power_type(&self) -> PowerType;

    /// Switches the machine on. Succeeds when it already is.
    fn power_on(&self) -> PowerFuture<'_, ()>;

    /// Switches the machine off: `soft` asks the operating system to shut
    /// down (ACPI), otherwise power is cut. Succeeds when it already is off.
    fn power_off(&self, soft: bool) -> PowerFuture<'_, ()>;

    /// Power cycle (hard): off then on; a machine that is off is switched on.
    fn power_cycle(&self) -> PowerFuture<'_, ()>;

    /// Asks whether the machine is on.
    fn query(&self) -> PowerFuture<'_, PowerState>;

    /// Makes the next boot, and only the next one, a network boot, then reads
    /// the setting back (see the module's read-back policy).
    fn set_boot_network_once(&self, efi: bool) -> PowerFuture<'_, BootOverride>;

    /// Runs `op`, for callers that hold operations as data.
    fn run(&self, op: PowerOp) -> PowerFuture<'_, PowerOutcome> {
        Box::pin(async move {
            Ok(match op {
                PowerOp::On => {
                    self.power_on().await?;
                    PowerOutcome::Done
                }
                PowerOp::Off { soft } => {
                    self.power_off(soft).await?;
                    PowerOutcome::Done
                }
                PowerOp::Cycle => {
                    self.power_cycle().await?;
                    PowerOutcome::Done
                }
                PowerOp::Query => PowerOutcome::State {
                    state: self.query().await?,
                },
                PowerOp::NetbootOnce { efi } => {
                    PowerOutcome::BootOverride(self.set_boot_network_once(efi).await?)
                }
            })
        })
    }
}

/// The driver for a machine's power settings, with [`DEFAULT_TIMEOUT`].
pub fn driver_for(
    power_type: PowerType,
    params: &Map<String, Value>,
) -> Result<Box<dyn PowerDriver>, PowerError> {
    driver_with_timeout(power_type, params, DEFAULT_TIMEOUT)
}

/// The driver for a machine's power settings, each operation bounded by `timeout`.
///
/// Fails when the parameters do not validate, or ask for something the driver
/// cannot do (IPMI cipher suite 17, K_g): better at configuration time than at
/// the first power-on.
pub fn driver_with_timeout(
    power_type: PowerType,
    params: &Map<String, Value>,
    timeout: Duration,
) -> Result<Box<dyn PowerDriver>, PowerError> {
    Ok(match DriverParams::parse(power_type, params)? {
        DriverParams::Ipmi(p) => Box::new(ipmi::IpmiDriver::new(p, timeout)?),
        DriverParams::Redfish(p) => Box::new(redfish::RedfishDriver::new(p, timeout)?),
        DriverParams::Command(p) => Box::new(command::CommandDriver::new(p, timeout)),
        DriverParams::Manual => Box::new(ManualDriver),
    })
}

/// A machine without remote power control: an operator presses the button.
///
/// Every action answers [`PowerError::Manual`] so that the caller can show
/// "waiting for an operator" instead of pretending the machine was switched;
/// a query answers [`PowerState::Unknown`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct ManualDriver;

impl PowerDriver for ManualDriver {
    fn power_type(&self) -> PowerType {
        PowerType::Manual
    }

    fn power_on(&self) -> PowerFuture<'_, ()> {
        Box::pin(async {
            Err(PowerError::Manual {
                action: "switch the machine on",
            })
        })
    }

    fn power_off(&self, _soft: bool) -> PowerFuture<'_, ()> {
        Box::pin(async {
            Err(PowerError::Manual {
                action: "switch the machine off",
            })
        })
    }

    fn power_cycle(&self) -> PowerFuture<'_, ()> {
        Box::pin(async {
            Err(PowerError::Manual {
                action: "restart the machine",
            })
        })
    }

    fn query(&self) -> PowerFuture<'_, PowerState> {
        Box::pin(async { Ok(PowerState::Unknown) })
    }

    fn set_boot_network_once(&self, _efi: bool) -> PowerFuture<'_, BootOverride> {
        Box::pin(async {
            Err(PowerError::Manual {
                action: "make the machine boot from the network",
            })
        })
    }
}

/// Runs blocking `work` (a library call that may block or panic) on a
/// blocking thread. A panic becomes [`PowerError::DriverPanicked`] (scrubbed);
/// `None` means `fence` passed first: the caller stops waiting (the thread
/// itself ends when its own socket timeouts run out).
pub(crate) async fn contain_blocking<T, F>(
    driver: &'static str,
    fence: Duration,
    scrubber: &Scrubber,
    work: F,
) -> Option<Result<T, PowerError>>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, PowerError> + Send + 'static,
{
    let task = tokio::task::spawn_blocking(move || {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(work))
    });
    match tokio::time::timeout(fence, task).await {
        Ok(Ok(Ok(result))) => Some(result),
        Ok(Ok(Err(payload))) => Some(Err(PowerError::DriverPanicked {
            driver,
            detail: scrubber.detail(&panic_text(payload.as_ref())),
        })),
        Ok(Err(join_error)) => Some(Err(PowerError::DriverPanicked {
            driver,
            detail: scrubber.detail(&join_error.to_string()),
        })),
        Err(_) => None,
    }
}

/// The text of a caught panic's payload.
pub(crate) fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic without a message".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PASSWORD: &str = "Pa55-hunter2-word";

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[tokio::test]
    async fn manual_driver_waits_for_an_operator() {
        let d = driver_for(PowerType::Manual, &Map::new()).unwrap();
        let err = d.power_on().await.unwrap_err();
        assert!(matches!(err, PowerError::Manual { .. }));
        assert!(err.to_string().contains("waiting for an operator"), "{err}");
        assert_eq!(d.query().await.unwrap(), PowerState::Unknown);
        assert!(matches!(
            d.run(PowerOp::NetbootOnce { efi: true }).await,
            Err(PowerError::Manual { .. })
        ));
    }

    #[test]
    fn driver_debug_never_shows_the_password() {
        let cases = [
            (
                PowerType::Ipmi,
                json!({"power_address": "127.0.0.1", "power_user": "admin",
                    "power_pass": PASSWORD}),
            ),
            (
                PowerType::Redfish,
                json!({"power_address": "http://127.0.0.1:1", "power_user": "admin",
                    "power_pass": PASSWORD}),
            ),
            (
                PowerType::Command,
                json!({"power_on_uri": "http://127.0.0.1:1/on",
                    "power_off_uri": "http://127.0.0.1:1/off",
                    "power_user": "admin", "power_pass": PASSWORD}),
            ),
        ];
        for (ty, params) in cases {
            let d = driver_for(ty, &map(params)).unwrap();
            let debug = format!("{d:?}");
            assert!(!debug.contains(PASSWORD), "{ty}: {debug}");
            assert!(debug.contains("admin"), "{ty}: {debug}");
        }
    }

    /// Every error variant, built from foreign text that echoes the password
    /// (as firmware and commands sometimes do) passed through the scrubber as
    /// the drivers do: neither Display nor Debug may show it.
    #[test]
    fn no_error_shows_the_password() {
        let s = Scrubber::new([PASSWORD]);
        let echo = format!("the BMC said: bad password {PASSWORD} for admin");
        let d = s.detail(&echo);
        assert!(d.contains(MASK));
        let errors = vec![
            PowerError::Params(PowerParamError::Invalid {
                param: "power_pass".into(),
                reason: "too long".into(),
            }),
            PowerError::Unreachable {
                what: "BMC",
                address: "127.0.0.1:623".into(),
                detail: d.clone(),
            },
            PowerError::Timeout {
                what: "BMC",
                address: "127.0.0.1:623".into(),
                after: Duration::from_secs(3),
                during: d.clone(),
            },
            PowerError::AuthenticationFailed {
                what: "BMC",
                address: "127.0.0.1:623".into(),
                user: "admin".into(),
                detail: d.clone(),
            },
            PowerError::Busy {
                what: "BMC",
                address: "127.0.0.1:623".into(),
                detail: d.clone(),
            },
            PowerError::Refused {
                address: "127.0.0.1:623".into(),
                operation: "chassis power up".into(),
                code: 0xD4,
                meaning: d.clone(),
            },
            PowerError::HttpStatus {
                what: "Redfish service",
                address: "https://127.0.0.1".into(),
                operation: "reset".into(),
                status: 401,
                detail: d.clone(),
            },
            PowerError::Tls {
                address: "https://127.0.0.1".into(),
                detail: d.clone(),
                pinned: false,
            },
            PowerError::Tls {
                address: "https://127.0.0.1".into(),
                detail: d.clone(),
                pinned: true,
            },
            PowerError::BootOverrideNotKept {
                address: "127.0.0.1:623".into(),
                read_back: d.clone(),
            },
            PowerError::Manual {
                action: "switch the machine on",
            },
            PowerError::Unsupported(d.clone()),
            PowerError::Protocol {
                what: "BMC",
                address: "127.0.0.1:623".into(),
                detail: d.clone(),
            },
            PowerError::CommandFailed {
                param: "power_on_command",
                status: "exit status 1".into(),
                stderr: d.clone(),
            },
            PowerError::DriverPanicked {
                driver: "ipmi",
                detail: d.clone(),
            },
        ];
        for e in errors {
            let text = format!("{e} / {e:?}");
            assert!(!text.contains(PASSWORD), "{text}");
        }
    }

    #[tokio::test]
    async fn a_panicking_or_hanging_library_call_is_contained() {
        let s = Scrubber::new([PASSWORD]);
        let outcome: Option<Result<(), PowerError>> =
            contain_blocking("ipmi", Duration::from_secs(5), &s, || {
                // What ipmi-rs's todo!() and unwrap() do on a strange answer.
                panic!("not yet implemented: cipher for {PASSWORD}")
            })
            .await;
        let Some(Err(err)) = outcome else {
            panic!("not contained: {outcome:?}")
        };
        assert!(matches!(err, PowerError::DriverPanicked { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("not yet implemented") && !text.contains(PASSWORD),
            "{text}"
        );
        assert!(text.contains("the daemon keeps running"), "{text}");

        let hung: Option<Result<(), PowerError>> =
            contain_blocking("ipmi", Duration::from_millis(50), &s, || {
                std::thread::sleep(Duration::from_millis(500));
                Ok(())
            })
            .await;
        assert!(hung.is_none());
    }

    #[test]
    fn scrubber_cuts_long_text_and_ignores_empty_secrets() {
        let s = Scrubber::new(["", "abc", "abcdef"]);
        assert_eq!(s.clean("xx abcdef yy abc", 100), "xx ******** yy ********");
        assert_eq!(s.clean("0123456789", 4), "0123…");
        assert_eq!(Scrubber::new([""]).clean("plain", 10), "plain");
    }
}
