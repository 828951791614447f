//! The IPMI-over-LAN driver, on ipmi-rs 0.6.
//!
//! ipmi-rs is blocking and has `todo!()` and `unwrap()` on paths a strange BMC
//! can reach, so every operation runs on a `spawn_blocking` thread inside
//! `catch_unwind`, under `tokio::time::timeout`: a panic becomes
//! [`PowerError::DriverPanicked`] and a silent BMC a [`PowerError::Timeout`],
//! never a dead daemon or a stuck task.
//!
//! What ipmi-rs lacks is written here on its public connection interface
//! (`IpmiConnection::send`/`recv` with raw `Message`s, encoded by
//! [`super::ipmi_wire`]): the chassis commands, Close Session, and
//! retransmission of lost UDP packets.
//!
//! Lost and late answers. Reads (Get Chassis Status, boot options) and
//! settings are sent again after each packet timeout until the operation's
//! deadline. A chassis control is not: a BMC can take seconds to answer one
//! (ipmi_sim answers only after its chassis program has switched the machine),
//! and a power command sent twice may act twice. It is sent once and its answer
//! waited for up to the deadline, while Get Chassis Status probes tell a lost
//! answer (the machine already shows the wanted state: done) from a lost request
//! (the BMC answers and shows no change: power up and power down, whose effect
//! is a state and so the same when sent twice, are sent again). After the
//! answer the power state is read back until it shows the wanted state. A
//! power cycle is two such steps, off then on, each confirmed, rather than
//! IPMI's one-shot cycle, which cannot be verified or safely resent: a failure
//! says which half was confirmed.
//!
//! Its limits, reported as [`PowerError::Unsupported`] when a machine's
//! parameters ask for them: RMCP+ cipher suite 3 only (17 is `todo!()` in
//! ipmi-rs), no K_g, sessions always at ADMINISTRATOR privilege.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipmi_rs::IpmiError;
use ipmi_rs::connection::{
    IpmiConnection, LogicalUnit, Message, NetFn, Request, RequestTargetAddress, Response,
};
use ipmi_rs::rmcp::{
    ActivationError, RakpMessage2ParseError, RakpMessage4ParseError, Rmcp, RmcpIpmiError,
    RmcpIpmiReceiveError, RmcpIpmiSendError, UnwrapSessionError, V1_5ActivationError,
    V1_5ReadError, V1_5WriteError, V2_0ActivationError, V2_0WriteError,
};

use super::ipmi_guard::DowngradeGuard;
use super::ipmi_wire::{
    self, BootFlags, CMD_CHASSIS_CONTROL, CMD_CLOSE_SESSION, CMD_GET_BOOT_OPTIONS,
    CMD_GET_CHASSIS_STATUS, CMD_SET_BOOT_OPTIONS, CMD_SET_SESSION_PRIVILEGE, ChassisControl,
    NETFN_APP, NETFN_CHASSIS, PRIVILEGE_ADMIN,
};
use super::params::{IpmiLan, IpmiParams};
use super::{
    BootOverride, PowerDriver, PowerError, PowerFuture, PowerParamError, PowerState, PowerType,
    Scrubber, contain_blocking,
};

/// Tries to open a session, and late answers skipped per request: a UDP
/// packet (or its answer) can be lost.
const ATTEMPTS: u32 = 3;

/// Packet timeouts without any datagram from the BMC, while a chassis control
/// is unanswered, before its power state is asked.
const PROBE_AFTER: u32 = 2;

/// Answered probes showing no change, since the last send, before a power up
/// or power down is sent again: the BMC answers, so the request was lost.
const UNCHANGED_BEFORE_RESEND: u32 = 2;

/// Sends of one power up or power down at most.
const MAX_SENDS: u32 = 3;

/// Pause between power-state reads while confirming a change.
const CONFIRM_POLL: Duration = Duration::from_millis(250);

/// How long a power cycle leaves the machine off (IPMI's own cycle waits at
/// least a second too), so that its power supply really drops.
const CYCLE_OFF_TIME: Duration = Duration::from_secs(1);

/// What the messages call the peer.
const WHAT: &str = "BMC";

/// Drives one machine's BMC over IPMI LAN.
#[derive(Debug)]
pub(crate) struct IpmiDriver {
    /// The machine's parameters (Debug masks the password).
    params: Arc<IpmiParams>,
    /// The deadline of each operation.
    timeout: Duration,
    /// How long to wait for one answer before sending again.
    packet_timeout: Duration,
    /// Hides the password in any text that leaves the driver.
    scrubber: Scrubber,
}

impl IpmiDriver {
    pub(crate) fn new(params: IpmiParams, timeout: Duration) -> Result<Self, PowerError> {
        if params.cipher_suite != 3 {
            return Err(PowerError::Unsupported(format!(
                "IPMI cipher suite {} is not supported: rackbox's IPMI client (ipmi-rs 0.6) \
                 implements RMCP+ cipher suite 3 only (suite 17, HMAC-SHA256/AES, is an \
                 unimplemented todo!() there). Set cipher_suite_id to 3 on the machine and \
                 allow suite 3 on its BMC, or use power_type redfish",
                params.cipher_suite
            )));
        }
        if params.privilege != "ADMIN" {
            return Err(PowerError::Unsupported(format!(
                "privilege_level {} is not supported: rackbox's IPMI client (ipmi-rs 0.6) always \
                 opens ADMIN sessions; give a BMC user with ADMIN privilege and set \
                 privilege_level to ADMIN",
                params.privilege
            )));
        }
        if !params.k_g.expose().is_empty() {
            return Err(PowerError::Unsupported(
                "k_g is set but rackbox's IPMI client (ipmi-rs 0.6) has no BMC key (K_g) \
                 support; clear k_g (and the BMC's key) or use power_type redfish"
                    .to_owned(),
            ));
        }
        // One answer may take a while on a busy BMC, but several tries must
        // fit in the operation's deadline.
        let packet_timeout =
            (timeout / 8).clamp(Duration::from_millis(250), Duration::from_secs(2));
        let scrubber = Scrubber::new([params.pass.expose()]);
        Ok(IpmiDriver {
            params: Arc::new(params),
            timeout,
            packet_timeout,
            scrubber,
        })
    }

    /// Runs `work` in a fresh session on a blocking thread, with the panics
    /// of ipmi-rs contained and the whole bounded by the driver's timeout.
    fn run<T, F>(&self, during: &'static str, work: F) -> PowerFuture<'_, T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Session) -> Result<T, PowerError> + Send + 'static,
    {
        let params = Arc::clone(&self.params);
        let scrubber = self.scrubber.clone();
        let timeout = self.timeout;
        let packet_timeout = self.packet_timeout;
        Box::pin(async move {
            let address = display_address(&params);
            let deadline = Instant::now() + timeout;
            let blocking_scrubber = scrubber.clone();
            // The blocking side checks the deadline between packets; the close
            // after the work may take one more packet timeout.
            let fence = timeout + packet_timeout + Duration::from_secs(1);
            let outcome = contain_blocking("ipmi", fence, &scrubber, move || {
                let mut session =
                    Session::open(params, blocking_scrubber, deadline, packet_timeout)?;
                let result = work(&mut session);
                session.close();
                result
            })
            .await;
            match outcome {
                Some(Ok(value)) => Ok(value),
                Some(Err(e)) => {
                    if matches!(e, PowerError::DriverPanicked { .. }) {
                        tracing::error!(bmc = %address, op = during, error = %e, "ipmi-rs panicked; contained");
                    } else {
                        tracing::warn!(bmc = %address, op = during, error = %e, "IPMI operation failed");
                    }
                    Err(e)
                }
                None => {
                    tracing::warn!(bmc = %address, op = during, "IPMI operation timed out");
                    Err(PowerError::Timeout {
                        what: WHAT,
                        address,
                        after: timeout,
                        during: during.to_owned(),
                    })
                }
            }
        })
    }
}

impl PowerDriver for IpmiDriver {
    fn power_type(&self) -> PowerType {
        PowerType::Ipmi
    }

    fn power_on(&self) -> PowerFuture<'_, ()> {
        self.run("power on", |s| {
            if s.power_state()? == PowerState::On {
                tracing::info!(bmc = %s.address, "already on");
                return Ok(());
            }
            s.drive(ChassisControl::PowerUp, Some(PowerState::On), "power on")
        })
    }

    fn power_off(&self, soft: bool) -> PowerFuture<'_, ()> {
        self.run(
            if soft { "soft power off" } else { "power off" },
            move |s| {
                if s.power_state()? == PowerState::Off {
                    tracing::info!(bmc = %s.address, "already off");
                    return Ok(());
                }
                if soft {
                    // The operating system takes its time to shut down: the
                    // BMC's acceptance is all there is to confirm.
                    s.drive(ChassisControl::SoftShutdown, None, "soft power off")
                } else {
                    s.drive(
                        ChassisControl::PowerDown,
                        Some(PowerState::Off),
                        "power off",
                    )
                }
            },
        )
    }

    fn power_cycle(&self) -> PowerFuture<'_, ()> {
        self.run("power cycle", |s| {
            if s.power_state()? == PowerState::Off {
                return s.drive(
                    ChassisControl::PowerUp,
                    Some(PowerState::On),
                    "power cycle (the machine was off: power on)",
                );
            }
            s.drive(
                ChassisControl::PowerDown,
                Some(PowerState::Off),
                "power cycle, first half (power off; nothing was confirmed yet)",
            )?;
            std::thread::sleep(CYCLE_OFF_TIME);
            // A fresh session on a fresh socket: no late answer of the first
            // half can be read as one of the second.
            s.reopen()?;
            s.drive(
                ChassisControl::PowerUp,
                Some(PowerState::On),
                "power cycle, second half (power on; the machine was confirmed off)",
            )
        })
    }

    fn query(&self) -> PowerFuture<'_, PowerState> {
        self.run("query power state", |s| s.power_state())
    }

    fn set_boot_network_once(&self, efi: bool) -> PowerFuture<'_, BootOverride> {
        self.run("set one-time network boot", move |s| {
            s.raw(
                NETFN_CHASSIS,
                CMD_SET_BOOT_OPTIONS,
                &ipmi_wire::set_pxe_once_request(efi),
                "Set System Boot Options (PXE, next boot only)",
                true,
            )?;
            let data = s.raw(
                NETFN_CHASSIS,
                CMD_GET_BOOT_OPTIONS,
                &ipmi_wire::get_boot_flags_request(),
                "Get System Boot Options",
                true,
            )?;
            let flags =
                ipmi_wire::parse_boot_flags(&data).map_err(|e| s.protocol(e.to_string()))?;
            tracing::info!(bmc = %s.address, read_back = %flags, "boot flags read back");
            judge_boot_flags(flags, efi, &s.address)
        })
    }
}

/// Applies the read-back policy (see the module docs of `power`) to what the
/// BMC reports after a one-time PXE override was set.
pub(crate) fn judge_boot_flags(
    flags: BootFlags,
    efi: bool,
    address: &str,
) -> Result<BootOverride, PowerError> {
    if !flags.is_pxe() {
        return Err(PowerError::BootOverrideNotKept {
            address: address.to_owned(),
            read_back: flags.to_string(),
        });
    }
    let mut warnings = Vec::new();
    if !flags.valid {
        warnings.push(
            "the BMC reports the boot flags as not valid although the device is PXE (some BMCs, \
             and ipmi_sim, never report the valid bit); if the machine boots its disk, check the \
             BMC's boot settings"
                .to_owned(),
        );
    }
    if flags.persistent {
        warnings.push("the BMC keeps PXE for every boot, not only the next one".to_owned());
    }
    if flags.efi != efi {
        warnings.push(format!(
            "asked for {} network boot, the BMC reports {}",
            if efi { "an EFI" } else { "a legacy BIOS" },
            if flags.efi { "EFI" } else { "legacy BIOS" }
        ));
    }
    Ok(BootOverride {
        confirmed: true,
        read_back: flags.to_string(),
        persistent: Some(flags.persistent),
        efi: Some(flags.efi),
        warnings,
    })
}

fn display_address(params: &IpmiParams) -> String {
    if params.address.contains(':') && !params.address.starts_with('[') {
        format!("[{}]:{}", params.address, params.port)
    } else {
        format!("{}:{}", params.address, params.port)
    }
}

/// How an I/O error on the UDP socket should be read.
enum IoClass {
    /// No answer in time: the packet or its answer may be lost, send again.
    NoAnswer,
    /// ICMP port unreachable or similar: nobody there, no point in resending.
    Refused,
    /// Anything else.
    Other,
}

fn io_class(e: &io::Error) -> IoClass {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => IoClass::NoAnswer,
        io::ErrorKind::ConnectionRefused
        | io::ErrorKind::HostUnreachable
        | io::ErrorKind::NetworkUnreachable
        | io::ErrorKind::AddrNotAvailable => IoClass::Refused,
        _ => IoClass::Other,
    }
}

/// What to do after a failed exchange.
enum Failure {
    /// Send again (while tries and time remain).
    Retry(String),
    /// Give up with this error.
    Fatal(PowerError),
}

/// An open IPMI session with one BMC, used on one blocking thread.
pub(crate) struct Session {
    rmcp: Rmcp,
    /// With LAN_2_0, the relay that keeps ipmi-rs from falling back to IPMI
    /// 1.5 (see [`super::ipmi_guard`]); it outlives `rmcp`, which talks to it.
    _guard: Option<DowngradeGuard>,
    /// The machine's parameters, to open the session again ([`Session::reopen`]).
    params: Arc<IpmiParams>,
    address: String,
    user: String,
    scrubber: Scrubber,
    deadline: Instant,
    /// How long one read of the socket waits.
    packet_timeout: Duration,
    /// When the operation began, to say how long a silent BMC was waited for.
    started: Instant,
}

/// A duration rounded to tenths of a second, for messages.
fn tenths(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis().div_ceil(100) as u64 * 100)
}

impl Session {
    fn open(
        params: Arc<IpmiParams>,
        scrubber: Scrubber,
        deadline: Instant,
        packet_timeout: Duration,
    ) -> Result<Session, PowerError> {
        Self::open_since(params, scrubber, deadline, packet_timeout, Instant::now())
    }

    fn open_since(
        params: Arc<IpmiParams>,
        scrubber: Scrubber,
        deadline: Instant,
        packet_timeout: Duration,
        started: Instant,
    ) -> Result<Session, PowerError> {
        let params_ref = Arc::clone(&params);
        let params = params_ref.as_ref();
        let address = display_address(params);
        let unreachable = |detail: String| PowerError::Unreachable {
            what: WHAT,
            address: address.clone(),
            detail,
        };
        let target: SocketAddr = (params.address.trim_matches(['[', ']']), params.port)
            .to_socket_addrs()
            .map_err(|e| unreachable(format!("cannot resolve the address: {e}")))?
            .next()
            .ok_or_else(|| unreachable("the name resolves to no address".to_owned()))?;
        let rmcp_plus = params.lan == IpmiLan::V20;
        let guard = if rmcp_plus {
            Some(
                DowngradeGuard::start(target)
                    .map_err(|e| unreachable(format!("cannot open a UDP socket: {e}")))?,
            )
        } else {
            None
        };
        let via = guard.as_ref().map_or(target, DowngradeGuard::local_addr);
        let mut last = String::from("no try was made");
        for attempt in 1..=ATTEMPTS {
            if Instant::now() >= deadline {
                break;
            }
            let mut rmcp = Rmcp::new(via, packet_timeout)
                .map_err(|e| unreachable(format!("cannot open a UDP socket: {e}")))?;
            let activated = rmcp.activate(
                rmcp_plus,
                Some(params.user.as_str()),
                Some(params.pass.expose().as_bytes()),
            );
            match activated {
                Ok(()) => {
                    let debug = format!("{rmcp:?}");
                    let version = if debug.contains("V2_0(") {
                        "IPMI 2.0 (RMCP+)"
                    } else {
                        "IPMI 1.5"
                    };
                    tracing::debug!(bmc = %address, version, attempt, "IPMI session opened");
                    if !rmcp_plus {
                        tracing::warn!(bmc = %address,
                            "IPMI 1.5 session (power_driver=LAN): the password is protected only by \
                             MD5 or MD2, or sent in clear if the BMC allows only straight-password \
                             authentication; use LAN_2_0 where the BMC has IPMI 2.0");
                    }
                    let mut session = Session {
                        rmcp,
                        _guard: guard,
                        params: Arc::clone(&params_ref),
                        address,
                        user: params.user.clone(),
                        scrubber,
                        deadline,
                        packet_timeout,
                        started,
                    };
                    session.raise_privilege()?;
                    return Ok(session);
                }
                Err(_) if guard.as_ref().is_some_and(DowngradeGuard::refused) => {
                    return Err(downgrade_refused(&address));
                }
                // The relay's socket got what ipmi-rs's own would have: nobody there.
                Err(_) if let Some(e) = guard.as_ref().and_then(DowngradeGuard::failure) => {
                    match classify_io(&e, &address, "the RMCP ping") {
                        Failure::Fatal(err) => return Err(err),
                        Failure::Retry(detail) => last = detail,
                    }
                }
                Err(e) => match classify_activation(&e, params, &address, &scrubber) {
                    Failure::Retry(detail) => {
                        tracing::debug!(bmc = %address, attempt, %detail, "no answer while opening a session; trying again");
                        last = detail;
                    }
                    Failure::Fatal(err) => return Err(err),
                },
            }
        }
        let during = if params.lan == IpmiLan::V15 {
            format!(
                "opening an IPMI 1.5 session ({last}; a BMC also stays silent on a wrong password here)"
            )
        } else {
            format!("opening an IPMI session ({last})")
        };
        Err(PowerError::Timeout {
            what: WHAT,
            address,
            after: tenths(started.elapsed()),
            during,
        })
    }

    /// Sessions start at USER privilege (IPMI 2.0 section 6.12.1): chassis
    /// control and boot options need ADMIN, which the session was opened for.
    fn raise_privilege(&mut self) -> Result<(), PowerError> {
        let raised = self.raw(
            NETFN_APP,
            CMD_SET_SESSION_PRIVILEGE,
            &[PRIVILEGE_ADMIN],
            "Set Session Privilege Level (ADMIN)",
            true,
        );
        match raised {
            Ok(_) => Ok(()),
            Err(PowerError::Refused { code, meaning, .. }) => {
                self.close();
                Err(PowerError::AuthenticationFailed {
                    what: WHAT,
                    address: self.address.clone(),
                    user: self.user.clone(),
                    detail: format!(
                        "the BMC refused ADMIN privilege to this user (completion code \
                         0x{code:02X}: {meaning}); power control needs an ADMIN user"
                    ),
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Closes this session and opens another on a new socket, within the same
    /// deadline.
    fn reopen(&mut self) -> Result<(), PowerError> {
        self.close();
        *self = Session::open_since(
            Arc::clone(&self.params),
            self.scrubber.clone(),
            self.deadline,
            self.packet_timeout,
            self.started,
        )?;
        Ok(())
    }

    fn protocol(&self, detail: String) -> PowerError {
        PowerError::Protocol {
            what: WHAT,
            address: self.address.clone(),
            detail: self.scrubber.detail(&detail),
        }
    }

    /// Sends one request and returns the response data after the completion
    /// code. With `retry` (for requests that do the same when sent twice) it is
    /// sent again after each packet timeout without an answer, until the
    /// deadline; without, it is sent once and waited for one packet timeout.
    fn raw(
        &mut self,
        netfn: u8,
        cmd: u8,
        data: &[u8],
        what: &str,
        retry: bool,
    ) -> Result<Vec<u8>, PowerError> {
        let mut last = String::from("the operation's deadline had passed");
        let mut attempt = 0u32;
        while attempt == 0 || retry {
            attempt += 1;
            if Instant::now() >= self.deadline {
                break;
            }
            let mut outcome = self.rmcp.send_recv(&mut request(netfn, cmd, data));
            // A late answer to an earlier try of another request can arrive
            // first: skip a few of those.
            for _ in 0..ATTEMPTS {
                match &outcome {
                    Ok(r) if !answers(r, netfn, cmd) => outcome = self.rmcp.recv(),
                    _ => break,
                }
            }
            match outcome {
                Ok(response) if answers(&response, netfn, cmd) => {
                    let code = response.cc();
                    if code != 0 {
                        return Err(self.refused(netfn, cmd, what, code));
                    }
                    return Ok(response.data().to_vec());
                }
                Ok(response) => {
                    return Err(self.protocol(format!(
                        "answer to netfn 0x{:02X} cmd 0x{:02X} while waiting for {what}",
                        response.netfn_raw(),
                        response.cmd()
                    )));
                }
                Err(e) => match classify_rmcp(&e, &self.address, &self.scrubber) {
                    Failure::Retry(detail) => {
                        tracing::debug!(bmc = %self.address, attempt, request = what, %detail, "no answer; trying again");
                        last = detail;
                    }
                    Failure::Fatal(err) => return Err(err),
                },
            }
        }
        Err(PowerError::Timeout {
            what: WHAT,
            address: self.address.clone(),
            after: tenths(self.started.elapsed()),
            during: format!("waiting for the answer to {what} ({last})"),
        })
    }

    fn power_state(&mut self) -> Result<PowerState, PowerError> {
        let data = self.raw(
            NETFN_CHASSIS,
            CMD_GET_CHASSIS_STATUS,
            &[],
            "Get Chassis Status",
            true,
        )?;
        chassis_power(&data).map_err(|e| self.protocol(e))
    }

    /// Sends a request without waiting for its answer.
    fn send(&mut self, netfn: u8, cmd: u8, data: &[u8]) -> Result<(), PowerError> {
        match self.rmcp.send(&mut request(netfn, cmd, data)) {
            Ok(()) => Ok(()),
            Err(e) => match classify_rmcp(&e, &self.address, &self.scrubber) {
                // Nothing went out; the caller's wait and probes carry on.
                Failure::Retry(detail) => {
                    tracing::debug!(bmc = %self.address, %detail, "sending failed");
                    Ok(())
                }
                Failure::Fatal(err) => Err(err),
            },
        }
    }

    /// Sends a chassis control and sees it through (see the module docs):
    /// sent once, its answer waited for until the deadline with power-state
    /// probes, sent again only when it is a power up or down that the BMC
    /// shows no sign of having had, and then, when `target` is given, the
    /// power state read back until it is `target`. `operation` names the step
    /// in errors, saying what was already confirmed.
    fn drive(
        &mut self,
        control: ChassisControl,
        target: Option<PowerState>,
        operation: &str,
    ) -> Result<(), PowerError> {
        let begun = Instant::now();
        let resendable = matches!(control, ChassisControl::PowerUp | ChassisControl::PowerDown);
        tracing::info!(bmc = %self.address, command = control.describe(), "IPMI chassis control");
        self.send(NETFN_CHASSIS, CMD_CHASSIS_CONTROL, &control.request())?;
        let mut sends = 1u32;
        // What the probes saw: the last state read, and how many answered
        // probes since the last send showed no change.
        let mut seen: Option<PowerState> = None;
        let mut unchanged = 0u32;
        let mut quiet_since = Instant::now();
        let mut answered = false;
        while Instant::now() < self.deadline {
            match self.rmcp.recv() {
                Ok(r) if answers(&r, NETFN_CHASSIS, CMD_CHASSIS_CONTROL) => {
                    if r.cc() != 0 {
                        return Err(self.refused(
                            NETFN_CHASSIS,
                            CMD_CHASSIS_CONTROL,
                            control.describe(),
                            r.cc(),
                        ));
                    }
                    answered = true;
                    break;
                }
                Ok(r) if answers(&r, NETFN_CHASSIS, CMD_GET_CHASSIS_STATUS) && r.cc() == 0 => {
                    quiet_since = Instant::now();
                    let state = chassis_power(r.data()).map_err(|e| self.protocol(e))?;
                    seen = Some(state);
                    if Some(state) == target {
                        tracing::info!(bmc = %self.address, command = control.describe(), state = ?state,
                            "no answer to the chassis control, but the BMC shows its effect");
                        return Ok(());
                    }
                    unchanged += 1;
                    if resendable && unchanged >= UNCHANGED_BEFORE_RESEND && sends < MAX_SENDS {
                        tracing::info!(bmc = %self.address, command = control.describe(), sends,
                            "the BMC answers and shows no change: sending the chassis control again");
                        self.send(NETFN_CHASSIS, CMD_CHASSIS_CONTROL, &control.request())?;
                        sends += 1;
                        unchanged = 0;
                    }
                }
                // A late answer to an earlier request: skipped.
                Ok(_) => quiet_since = Instant::now(),
                Err(e) => match classify_rmcp(&e, &self.address, &self.scrubber) {
                    Failure::Retry(_) => {}
                    Failure::Fatal(err) => return Err(err),
                },
            }
            if target.is_some() && quiet_since.elapsed() >= self.packet_timeout * PROBE_AFTER {
                self.send(NETFN_CHASSIS, CMD_GET_CHASSIS_STATUS, &[])?;
                quiet_since = Instant::now();
            }
        }
        let Some(target) = target else {
            if answered {
                return Ok(());
            }
            return Err(self.not_confirmed(
                operation,
                begun,
                format!(
                    "{} was sent once and never answered (not sent again: it may have arrived)",
                    control.describe()
                ),
            ));
        };
        if !answered {
            let state = match seen {
                Some(state) => format!("the BMC answers and reports the machine {state:?}"),
                None => "the BMC answered no power-state query either".to_owned(),
            };
            return Err(self.not_confirmed(
                operation,
                begun,
                format!(
                    "{} was sent {sends} time(s) and never answered; {state}",
                    control.describe()
                ),
            ));
        }
        loop {
            let state = self.power_state().map_err(|e| {
                self.not_confirmed(
                    operation,
                    begun,
                    format!(
                        "the BMC accepted {}, then reading the power state back failed: {e}",
                        control.describe()
                    ),
                )
            })?;
            if state == target {
                return Ok(());
            }
            if Instant::now() + CONFIRM_POLL >= self.deadline {
                return Err(self.not_confirmed(
                    operation,
                    begun,
                    format!(
                        "the BMC accepted {} but still reports the machine {state:?}",
                        control.describe()
                    ),
                ));
            }
            std::thread::sleep(CONFIRM_POLL);
        }
    }

    fn not_confirmed(&self, operation: &str, begun: Instant, detail: String) -> PowerError {
        PowerError::NotConfirmed {
            what: WHAT,
            address: self.address.clone(),
            operation: operation.to_owned(),
            after: tenths(begun.elapsed()),
            detail: self.scrubber.detail(&detail),
        }
    }

    fn refused(&self, netfn: u8, cmd: u8, what: &str, code: u8) -> PowerError {
        PowerError::Refused {
            address: self.address.clone(),
            operation: what.to_owned(),
            code,
            meaning: ipmi_wire::completion_code_meaning(netfn, cmd, code).to_owned(),
        }
    }

    /// Closes the session so the BMC's few session slots are not left to time
    /// out. Failures are only logged: the operation itself is done.
    fn close(&mut self) {
        // ipmi-rs keeps the BMC's session id private; its Debug output (which
        // redacts the password and keys) is the one place it can be read.
        let Some(id) = session_id_from_debug(&format!("{:?}", self.rmcp)) else {
            tracing::debug!(bmc = %self.address, "session id not found; the BMC will time the session out");
            return;
        };
        // One try, even past the deadline: bounded by one packet timeout.
        self.deadline = self.deadline.max(Instant::now() + Duration::from_millis(1));
        match self.raw(
            NETFN_APP,
            CMD_CLOSE_SESSION,
            &ipmi_wire::close_session_request(id),
            "Close Session",
            false,
        ) {
            Ok(_) => tracing::debug!(bmc = %self.address, "IPMI session closed"),
            Err(e) => {
                tracing::debug!(bmc = %self.address, error = %e, "closing the IPMI session failed")
            }
        }
    }
}

/// A request to the BMC itself.
fn request(netfn: u8, cmd: u8, data: &[u8]) -> Request {
    Request::new(
        Message::new_request(NetFn::from(netfn), cmd, data.to_vec()),
        RequestTargetAddress::Bmc(LogicalUnit::Zero),
    )
}

/// The power state in a Get Chassis Status answer.
fn chassis_power(data: &[u8]) -> Result<PowerState, String> {
    let status = ipmi_wire::parse_chassis_status(data).map_err(|e| e.to_string())?;
    Ok(if status.power_on {
        PowerState::On
    } else {
        PowerState::Off
    })
}

/// Whether `response` answers a request of `netfn`/`cmd`.
fn answers(response: &Response, netfn: u8, cmd: u8) -> bool {
    response.netfn_raw() == (netfn | 1) && response.cmd() == cmd
}

/// Reads the BMC's session id from the Debug text of an active `Rmcp`:
/// `session_id: 1234` (RMCP+) or `session_id: Some(1234)` (IPMI 1.5).
pub(crate) fn session_id_from_debug(debug: &str) -> Option<u32> {
    const KEY: &str = "session_id: ";
    let mut from = 0;
    while let Some(pos) = debug[from..].find(KEY) {
        let start = from + pos;
        from = start + KEY.len();
        let standalone = debug[..start]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        if !standalone {
            continue;
        }
        let rest = &debug[from..];
        let rest = rest.strip_prefix("Some(").unwrap_or(rest);
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if let Ok(id) = digits.parse::<u32>()
            && id != 0
        {
            return Some(id);
        }
    }
    None
}

/// The error when a BMC with `power_driver=LAN_2_0` offers only IPMI 1.5.
fn downgrade_refused(address: &str) -> PowerError {
    PowerError::Unsupported(format!(
        "BMC at {address} (or something answering for it) offers only IPMI 1.5 sessions: rackbox \
         does not fall back from power_driver LAN_2_0, because IPMI 1.5 protects the password only \
         with MD5 or MD2, or sends it in clear (straight password). Enable IPMI 2.0 (RMCP+) on the \
         BMC, or set power_driver=LAN on this machine to accept IPMI 1.5 and its risk knowingly"
    ))
}

fn auth_failed(address: &str, user: &str, detail: String) -> Failure {
    Failure::Fatal(PowerError::AuthenticationFailed {
        what: WHAT,
        address: address.to_owned(),
        user: user.to_owned(),
        detail,
    })
}

fn classify_io(e: &io::Error, address: &str, step: &str) -> Failure {
    match io_class(e) {
        IoClass::NoAnswer => Failure::Retry(format!("no answer to {step}")),
        IoClass::Refused => Failure::Fatal(PowerError::Unreachable {
            what: WHAT,
            address: address.to_owned(),
            detail: format!("{step}: {e} (nothing listens on that UDP port, or no route to it)"),
        }),
        IoClass::Other => Failure::Fatal(PowerError::Unreachable {
            what: WHAT,
            address: address.to_owned(),
            detail: format!("{step}: {e}"),
        }),
    }
}

/// Reads an error of an established (or half-established) connection.
fn classify_rmcp(e: &RmcpIpmiError, address: &str, scrubber: &Scrubber) -> Failure {
    let protocol = |detail: String| {
        Failure::Fatal(PowerError::Protocol {
            what: WHAT,
            address: address.to_owned(),
            detail: scrubber.detail(&detail),
        })
    };
    match e {
        RmcpIpmiError::Receive(RmcpIpmiReceiveError::Io(io)) => {
            classify_io(io, address, "a request")
        }
        RmcpIpmiError::Send(RmcpIpmiSendError::V1_5(V1_5WriteError::Io(io)))
        | RmcpIpmiError::Send(RmcpIpmiSendError::V2_0(V2_0WriteError::Io(io))) => {
            classify_io(io, address, "sending a request")
        }
        RmcpIpmiError::Receive(RmcpIpmiReceiveError::Session(UnwrapSessionError::V1_5(
            V1_5ReadError::AuthcodeError,
        ))) => {
            // A BMC only answers a signed IPMI 1.5 request whose signature (our
            // password) it accepted: the check that fails is ipmi-rs's own,
            // which hashes the length byte into MD5/MD2 signatures.
            Failure::Fatal(PowerError::Unsupported(format!(
                "BMC at {address} answered rackbox's signed IPMI 1.5 request (so the password is \
                 right) but rackbox's IPMI client (ipmi-rs 0.6) cannot check the \
                 MD5/MD2 signature on its answers. Use power_driver LAN_2_0 (IPMI 2.0) if the \
                 BMC has it, or allow only 'straight password' authentication for IPMI 1.5 on \
                 the BMC"
            )))
        }
        other => protocol(format!("{other:?}")),
    }
}

fn classify_command<P: std::fmt::Debug>(
    e: &IpmiError<RmcpIpmiError, P>,
    step: &str,
    address: &str,
    user: &str,
    scrubber: &Scrubber,
) -> Failure {
    match e {
        IpmiError::Connection(c) => classify_rmcp(c, address, scrubber),
        IpmiError::Failed {
            completion_code, ..
        }
        | IpmiError::Command {
            completion_code: Some(completion_code),
            ..
        } => auth_failed(
            address,
            user,
            format!("{step} was refused: {completion_code:?}"),
        ),
        other => Failure::Fatal(PowerError::Protocol {
            what: WHAT,
            address: address.to_owned(),
            detail: scrubber.detail(&format!("{step}: {other:?}")),
        }),
    }
}

/// Reads an error of session activation: lost packets are tried again, a
/// refusal of the credentials is reported as such, the rest as what it is.
fn classify_activation(
    e: &ActivationError,
    params: &IpmiParams,
    address: &str,
    scrubber: &Scrubber,
) -> Failure {
    let user = params.user.as_str();
    let protocol = |detail: String| {
        Failure::Fatal(PowerError::Protocol {
            what: WHAT,
            address: address.to_owned(),
            detail: scrubber.detail(&detail),
        })
    };
    let receive = |r: &RmcpIpmiReceiveError, step: &str| match r {
        RmcpIpmiReceiveError::Io(io) => classify_io(io, address, step),
        other => protocol(format!("{step}: {other:?}")),
    };
    match e {
        ActivationError::BindSocket(io) | ActivationError::PingSend(io) => {
            classify_io(io, address, "the RMCP ping")
        }
        ActivationError::PongReceive(io) => classify_io(io, address, "the RMCP ping"),
        ActivationError::PongRead => protocol("the answer to the RMCP ping is not RMCP".to_owned()),
        ActivationError::IpmiNotSupported => {
            protocol("it answers the RMCP ping but does not support IPMI".to_owned())
        }
        ActivationError::NoSupportedIpmiLANVersions => {
            Failure::Fatal(PowerError::Unsupported(format!(
                "BMC at {address} offers neither IPMI 2.0 nor IPMI 1.5 sessions for ADMIN \
                 privilege on this channel"
            )))
        }
        ActivationError::GetChannelAuthenticationCapabilities(c) => classify_command(
            c,
            "Get Channel Authentication Capabilities",
            address,
            user,
            scrubber,
        ),
        ActivationError::RmcpError(h) => protocol(format!("bad RMCP header: {h:?}")),
        ActivationError::V1_5(v) => match v {
            V1_5ActivationError::Io(io) => classify_io(io, address, "IPMI 1.5 activation"),
            V1_5ActivationError::PasswordTooLong => {
                Failure::Fatal(PowerError::Params(PowerParamError::Invalid {
                    param: "power_pass".to_owned(),
                    reason: "IPMI 1.5 passwords are at most 16 bytes".to_owned(),
                }))
            }
            V1_5ActivationError::UsernameTooLong => {
                Failure::Fatal(PowerError::Params(PowerParamError::Invalid {
                    param: "power_user".to_owned(),
                    reason: "IPMI user names are at most 16 bytes".to_owned(),
                }))
            }
            V1_5ActivationError::NoSupportedAuthenticationType => {
                Failure::Fatal(PowerError::Unsupported(format!(
                    "BMC at {address} offers no IPMI 1.5 authentication type rackbox supports \
                     (none, MD2, MD5, straight password)"
                )))
            }
            V1_5ActivationError::GetSessionChallenge(c) => classify_command(
                c,
                "Get Session Challenge (user name)",
                address,
                user,
                scrubber,
            ),
            V1_5ActivationError::ActivateSession(c) => {
                classify_command(c, "Activate Session (password)", address, user, scrubber)
            }
        },
        ActivationError::V2_0(v) => match v {
            V2_0ActivationError::Io(io) => classify_io(io, address, "RMCP+ session setup"),
            V2_0ActivationError::OpenSessionResponseReceive(r) => {
                receive(r, "the RMCP+ Open Session request")
            }
            V2_0ActivationError::RakpMessage2Receive(r) => receive(r, "RAKP message 1"),
            V2_0ActivationError::RakpMessage4Receive(r) => receive(r, "RAKP message 3"),
            V2_0ActivationError::OpenSessionResponseParse(p) => {
                let detail = format!("{p:?}");
                if detail.contains("InsufficientResources") {
                    Failure::Fatal(PowerError::Busy {
                        what: WHAT,
                        address: address.to_owned(),
                        detail: "no free session slot (RMCP+ status: insufficient resources)"
                            .to_owned(),
                    })
                } else if detail.contains("Cipher")
                    || detail.contains("Algorithm")
                    || detail.contains("Payload")
                {
                    Failure::Fatal(PowerError::Unsupported(format!(
                        "BMC at {address} refused the RMCP+ session: {}. rackbox's IPMI client \
                         (ipmi-rs 0.6) offers cipher suite 3 only (HMAC-SHA1, HMAC-SHA1-96, \
                         AES-CBC-128): enable it on the BMC",
                        scrubber.detail(&detail)
                    )))
                } else {
                    auth_failed(
                        address,
                        user,
                        format!(
                            "the BMC refused to open a session: {}",
                            scrubber.detail(&detail)
                        ),
                    )
                }
            }
            V2_0ActivationError::RakpMessage2Parse(
                p @ (RakpMessage2ParseError::ErrorStatusCode(_)
                | RakpMessage2ParseError::UnknownErrorStatusCode(_)),
            ) => auth_failed(
                address,
                user,
                format!(
                    "the BMC refused the user at RAKP message 2: {}",
                    scrubber.detail(&format!("{p:?}"))
                ),
            ),
            V2_0ActivationError::ServerAuthenticationFailed => auth_failed(
                address,
                user,
                "the BMC's RAKP message 2 does not match this password (wrong password)".to_owned(),
            ),
            V2_0ActivationError::RakpMessage4InvalidIntegrityCheckValue => auth_failed(
                address,
                user,
                "RAKP message 4 does not match this password (wrong password)".to_owned(),
            ),
            V2_0ActivationError::RakpMessage4Parse(
                p @ (RakpMessage4ParseError::ErrorStatusCode(_)
                | RakpMessage4ParseError::UnknownErrorStatusCode(_)),
            ) => auth_failed(
                address,
                user,
                format!(
                    "the BMC refused the session at RAKP message 3 (usually a wrong password): {}",
                    scrubber.detail(&format!("{p:?}"))
                ),
            ),
            other => protocol(format!("RMCP+ session setup: {other:?}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_id_is_found_in_both_debug_shapes() {
        let v2 = "Rmcp { unbound_state: RmcpWithState(Unbound { address: 127.0.0.1:623 }), \
                  active_state: Some(RmcpWithState(V2_0(State { socket: RmcpIpmiSocket { \
                  buffer: [0, 0] }, session_id: 3735928559, session_sequence_number: 4, \
                  state: CryptoState { password: \"<redacted>\" } })))";
        assert_eq!(session_id_from_debug(v2), Some(3_735_928_559));
        let v15 = "active_state: Some(RmcpWithState(V1_5(State { managed_system_session_id: 9, \
                   session_id: Some(4660), auth_type: MD5, password: \"<redacted>\" })))";
        assert_eq!(session_id_from_debug(v15), Some(4660));
        assert_eq!(session_id_from_debug("active_state: None"), None);
    }

    #[test]
    fn boot_flags_policy() {
        let pxe = BootFlags {
            valid: true,
            persistent: false,
            efi: true,
            device: 1,
        };
        let ok = judge_boot_flags(pxe, true, "bmc:623").unwrap();
        assert!(ok.warnings.is_empty(), "{:?}", ok.warnings);
        assert_eq!(ok.persistent, Some(false));

        let sim = BootFlags {
            valid: false,
            efi: false,
            ..pxe
        };
        let warned = judge_boot_flags(sim, true, "bmc:623").unwrap();
        assert_eq!(warned.warnings.len(), 2, "{:?}", warned.warnings);

        let dropped = BootFlags { device: 0, ..pxe };
        let err = judge_boot_flags(dropped, true, "bmc:623").unwrap_err();
        assert!(matches!(err, PowerError::BootOverrideNotKept { .. }));
        assert!(err.to_string().contains("reads back no override"), "{err}");
    }

    #[test]
    fn unsupported_parameters_are_refused_up_front() {
        let base = IpmiParams {
            address: "127.0.0.1".into(),
            port: 623,
            user: "admin".into(),
            pass: Default::default(),
            lan: IpmiLan::V20,
            cipher_suite: 3,
            privilege: "ADMIN".into(),
            k_g: Default::default(),
            boot_type: super::super::BootType::Auto,
        };
        let suite17 = IpmiParams {
            cipher_suite: 17,
            ..base.clone()
        };
        let err = IpmiDriver::new(suite17, Duration::from_secs(1)).unwrap_err();
        assert!(err.to_string().contains("cipher suite 17"), "{err}");
        let operator = IpmiParams {
            privilege: "OPERATOR".into(),
            ..base.clone()
        };
        let err = IpmiDriver::new(operator, Duration::from_secs(1)).unwrap_err();
        assert!(
            err.to_string().contains("privilege_level OPERATOR"),
            "{err}"
        );
        assert!(IpmiDriver::new(base, Duration::from_secs(1)).is_ok());
    }
}
