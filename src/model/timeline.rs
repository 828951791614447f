//! A machine's boot timeline as the API shows it and the CLI and the page print it: what the
//! appliance saw of one network boot, step by step (DHCP, the boot loader over TFTP, the iPXE
//! script, kernel and initrd over HTTP, the agent's calls, power, the deployed OS reporting in).
//! The service keeps it in memory only (`service/timeline.rs`): a live diagnostic, not history.

use std::net::Ipv4Addr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::units::{human_bytes, human_duration};

/// What the appliance saw of a machine's boots since the daemon started: the current one and
/// the one before it, so a failing boot can be read beside the last one that got further.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MachineTimeline {
    /// The machine.
    pub system_id: String,
    /// The boot under way (or the last one), if any was seen since the daemon started.
    pub current: Option<Boot>,
    /// The boot before it, if one was seen.
    pub previous: Option<Boot>,
}

/// One network boot of one network interface.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Boot {
    /// The interface that booted (lower-case, colons).
    pub mac: String,
    /// When its first step happened, milliseconds since the Unix epoch; steps' times are read
    /// from here.
    pub started_ms: u64,
    /// Its steps, oldest first.
    pub steps: Vec<BootStep>,
    /// Steps left out because the boot had more than the appliance keeps (the earliest after the
    /// first go, so the start and the latest steps stay).
    #[serde(default)]
    pub dropped_steps: u32,
}

/// One step of a boot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct BootStep {
    /// When, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// What happened.
    pub step: Step,
}

/// What happened at a step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Step {
    /// A DHCP exchange answered by the appliance: what the client said it is, what it got.
    Dhcp {
        /// The client's message: `discover`, `request` or `inform`.
        request: String,
        /// The answer: `offer`, `ack` or `nak`.
        reply: String,
        /// The client's architecture (option 93, or the number in a PXEClient vendor class).
        arch: Option<u16>,
        /// The client's vendor class (option 60), as text.
        vendor_class: Option<String>,
        /// Whether the client was iPXE already (option 77 or 175).
        ipxe: bool,
        /// The address handed out (none in proxy mode).
        address: Option<Ipv4Addr>,
        /// The boot file or script URL it was told to load.
        boot_file: Option<String>,
    },
    /// A TFTP read (a boot loader), finished or not.
    Tftp {
        /// The file asked for.
        file: String,
        /// Bytes the client acknowledged.
        bytes: u64,
        /// The file's size (0 when it was refused).
        size: u64,
        /// How long the transfer took.
        ms: u64,
        /// How it ended.
        outcome: TransferOutcome,
    },
    /// The iPXE script the machine was handed.
    IpxeScript {
        /// What the script boots.
        plan: ScriptPlan,
    },
    /// A file downloaded over HTTP: kernel, initrd, boot loader or disk image.
    HttpFile {
        /// What it was.
        file: FileKind,
        /// Its name.
        name: String,
        /// Bytes sent.
        bytes: u64,
        /// Bytes the response was to carry (less than the file after a Range request).
        of: u64,
        /// From the request to the last byte (or the break).
        ms: u64,
    },
    /// The agent asked for its task: the first ask of a boot, and each time the answer changes.
    AgentTask {
        /// The task it was given (`commission`, `deploy`, `reboot`, `poweroff`, ...).
        task: String,
    },
    /// The agent sent the hardware inventory.
    Inventory,
    /// The agent reported its work done.
    AgentComplete {
        /// The status the work was for (`Commissioning`, `Testing`, ...).
        status: String,
    },
    /// The agent reported a deploy's image written to disk.
    ImageWritten,
    /// The agent reported its work failed.
    AgentFailed {
        /// Its reason.
        reason: String,
    },
    /// The appliance switched the machine's power (through its BMC).
    Power {
        /// What it did (`power on`, `power cycle`, `power off`).
        action: String,
        /// The driver's error, when it failed.
        error: Option<String>,
    },
    /// The deployed OS reported in.
    OsReportedIn,
}

/// How a TFTP transfer ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TransferOutcome {
    /// Every block was acknowledged.
    Completed,
    /// The client ended it (firmware asks for a file's size first, then aborts).
    AbortedByClient,
    /// The client stopped answering.
    TimedOut,
    /// The file does not exist or may not be read.
    Refused,
    /// A protocol or read error.
    Failed,
}

/// What an iPXE script boots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScriptPlan {
    /// The ephemeral environment with the agent.
    Ephemeral,
    /// The local disk.
    LocalDisk,
    /// The ephemeral environment, to enlist an unknown machine.
    Enlist,
    /// The local disk: an unknown machine, and enlistment is off.
    Ignore,
}

/// What a downloaded file was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    /// The ephemeral environment's kernel.
    Kernel,
    /// The ephemeral environment's initrd.
    Initrd,
    /// A boot loader (UEFI HTTP boot).
    Loader,
    /// A deployable disk image.
    Image,
}

/// The firmware an architecture number names (RFC 4578 and IANA's registry), for people.
pub fn arch_name(arch: u16) -> String {
    match arch {
        0 => "BIOS".into(),
        6 => "UEFI x86".into(),
        7 | 9 => "UEFI x64".into(),
        10 => "UEFI ARM32".into(),
        11 => "UEFI ARM64".into(),
        15 => "UEFI x86 HTTP".into(),
        16 => "UEFI x64 HTTP".into(),
        19 => "UEFI ARM64 HTTP".into(),
        other => format!("arch {other}"),
    }
}

/// A span of milliseconds for people: "0.4 s" under a minute, else "3 min 20 s".
pub fn human_ms(ms: u64) -> String {
    if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        human_duration(ms / 1000)
    }
}

/// A transfer's size, time and rate: "1.5 MiB in 0.3 s (5.0 MiB/s)".
fn transfer(bytes: u64, ms: u64) -> String {
    let mut text = format!("{} in {}", human_bytes(bytes), human_ms(ms));
    if ms > 0 && bytes > 0 {
        let rate = (bytes as f64 * 1000.0 / ms as f64) as u64;
        text += &format!(" ({}/s)", human_bytes(rate));
    }
    text
}

impl Step {
    /// The step in a few words ("DHCP DISCOVER → OFFER", "Kernel over HTTP").
    pub fn title(&self) -> String {
        match self {
            Step::Dhcp { request, reply, .. } => {
                format!("DHCP {} → {}", request.to_uppercase(), reply.to_uppercase())
            }
            Step::Tftp { .. } => "Boot loader over TFTP".into(),
            Step::IpxeScript { .. } => "iPXE script".into(),
            Step::HttpFile { file, .. } => match file {
                FileKind::Kernel => "Kernel over HTTP",
                FileKind::Initrd => "Initrd over HTTP",
                FileKind::Loader => "Boot loader over HTTP",
                FileKind::Image => "Image over HTTP",
            }
            .into(),
            Step::AgentTask { .. } => "Agent asked for its task".into(),
            Step::Inventory => "Inventory sent".into(),
            Step::AgentComplete { .. } => "Agent reported done".into(),
            Step::ImageWritten => "Image written".into(),
            Step::AgentFailed { .. } => "Agent reported a failure".into(),
            Step::Power { .. } => "Power".into(),
            Step::OsReportedIn => "OS reported in".into(),
        }
    }

    /// What the step carried, in a line ("UEFI x64, PXEClient:Arch:00007, 192.0.2.10,
    /// snponly.efi"; "7.9 MiB in 0.4 s (19.8 MiB/s)").
    pub fn details(&self) -> String {
        match self {
            Step::Dhcp {
                arch,
                vendor_class,
                ipxe,
                address,
                boot_file,
                ..
            } => {
                let mut parts = Vec::new();
                if *ipxe {
                    parts.push("iPXE".to_string());
                }
                if let Some(a) = arch {
                    parts.push(arch_name(*a));
                }
                if let Some(v) = vendor_class {
                    parts.push(format!("vendor class {v}"));
                }
                if let Some(ip) = address {
                    parts.push(format!("address {ip}"));
                }
                if let Some(f) = boot_file {
                    parts.push(format!("boot file {f}"));
                }
                parts.join(", ")
            }
            Step::Tftp {
                file,
                bytes,
                size,
                ms,
                outcome,
            } => {
                let moved = transfer(*bytes, *ms);
                match outcome {
                    TransferOutcome::Completed => format!("{file}: {moved}"),
                    TransferOutcome::AbortedByClient if *bytes == 0 => {
                        format!("{file}: size asked ({}), then aborted", human_bytes(*size))
                    }
                    TransferOutcome::AbortedByClient => {
                        format!("{file}: aborted by the client after {moved}")
                    }
                    TransferOutcome::TimedOut => format!("{file}: timed out after {moved}"),
                    TransferOutcome::Refused => format!("{file}: refused (not found)"),
                    TransferOutcome::Failed => format!("{file}: failed after {moved}"),
                }
            }
            Step::IpxeScript { plan } => match plan {
                ScriptPlan::Ephemeral => "boot the ephemeral environment",
                ScriptPlan::LocalDisk => "boot the local disk",
                ScriptPlan::Enlist => "enlist (unknown machine)",
                ScriptPlan::Ignore => "boot the local disk (unknown machine, enlistment off)",
            }
            .into(),
            Step::HttpFile {
                name,
                bytes,
                of,
                ms,
                ..
            } => {
                let moved = transfer(*bytes, *ms);
                if bytes == of {
                    format!("{name}: {moved}")
                } else {
                    format!("{name}: broke off after {moved} of {}", human_bytes(*of))
                }
            }
            Step::AgentTask { task } => format!("told: {task}"),
            Step::Inventory | Step::ImageWritten | Step::OsReportedIn => String::new(),
            Step::AgentComplete { status } => status.clone(),
            Step::AgentFailed { reason } => reason.clone(),
            Step::Power { action, error } => match error {
                None => action.clone(),
                Some(e) => format!("{action} failed: {e}"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_read_with_their_sizes_times_and_rates() {
        let kernel = Step::HttpFile {
            file: FileKind::Kernel,
            name: "vmlinuz".into(),
            bytes: 8 * 1024 * 1024,
            of: 8 * 1024 * 1024,
            ms: 400,
        };
        assert_eq!(kernel.title(), "Kernel over HTTP");
        assert_eq!(kernel.details(), "vmlinuz: 8.0 MiB in 0.4 s (20.0 MiB/s)");
        let dhcp = Step::Dhcp {
            request: "discover".into(),
            reply: "offer".into(),
            arch: Some(7),
            vendor_class: Some("PXEClient:Arch:00007:UNDI:003016".into()),
            ipxe: false,
            address: Some(Ipv4Addr::new(192, 0, 2, 10)),
            boot_file: Some("snponly.efi".into()),
        };
        assert_eq!(dhcp.title(), "DHCP DISCOVER → OFFER");
        assert_eq!(
            dhcp.details(),
            "UEFI x64, vendor class PXEClient:Arch:00007:UNDI:003016, address 192.0.2.10, boot file snponly.efi"
        );
        let probe = Step::Tftp {
            file: "undionly.kpxe".into(),
            bytes: 0,
            size: 70_000,
            ms: 3,
            outcome: TransferOutcome::AbortedByClient,
        };
        assert_eq!(
            probe.details(),
            "undionly.kpxe: size asked (68.4 KiB), then aborted"
        );
        assert_eq!(human_ms(75_300), "1 min 15 s");
    }
}
