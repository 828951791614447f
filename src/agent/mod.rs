//! The machine side: `rackbox agent`, running inside the ephemeral ramdisk on a server being
//! commissioned, tested, deployed or erased. It talks to the appliance over HTTP only (the agent
//! protocol under `/api/agent/v1`) and uses nothing of the daemon's rooms but `model`.
//!
//! - [`cmdline`]: the settings the boot loader passes on the kernel command line.
//! - [`inventory`]: the hardware, from /proc, /sys and SMBIOS ([`smbios`]: its records' parsers).
//! - [`bmc`]: the BMC in-band (/dev/ipmi0): its LAN address, and a BMC user for the appliance.
//! - [`client`]: the protocol, with bounded retries.
//! - [`run`]: the task loop (commission, test, deploy, erase, rescue, wait, power off, reboot).
//! - [`deploy`]: stream, decompress, verify and write an image, then add the cloud-init seed
//!   ([`seed`], [`partition`]).
//! - [`erase`]: quick, full and secure disk erasing ([`secure_erase`]: NVMe format, ATA
//!   security erase).
//! - [`rescue`]: rescue mode's SSH server (dropbear with the owner's keys).

pub mod bmc;
pub mod client;
pub mod cmdline;
pub mod deploy;
pub mod entry;
pub(crate) mod erase;
pub mod inventory;
pub mod partition;
pub mod redfish_host;
pub(crate) mod rescue;
pub mod run;
pub(crate) mod secure_erase;
pub(crate) mod seed;
pub mod smbios;

pub use client::{Client, ClientError, RetryPolicy, Task};
pub use run::{AgentConfig, AgentError, Outcome, run};
