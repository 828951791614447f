//! The machine record: everything rackbox knows about one server, as stored in redb.

use std::collections::{BTreeMap, BTreeSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::inventory::Inventory;
use super::status::Status;

/// One server in the rack. Observed state (status, power state, inventory) and operator intent
/// (deploy target, erase mode) live side by side; only the life cycle changes `status`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Machine {
    /// MAAS-style short id (six characters of a base-32 alphabet without look-alikes).
    pub system_id: String,
    /// Short host name, unique on the appliance; the machine's DNS name is hostname.domain.
    pub hostname: String,
    /// DNS domain the hostname lives in (MAAS's default is "maas").
    #[serde(default = "default_domain")]
    pub domain: String,
    /// Where the machine is in its life cycle; changed only by [`crate::model::lifecycle::apply`].
    pub status: Status,
    /// What the machine is doing or waiting for, in words, or why it failed.
    #[serde(default)]
    pub status_message: String,
    /// The status to return to when an in-progress action is aborted or rescue mode is left.
    #[serde(default)]
    pub previous_status: Option<Status>,
    /// Bumped on every write; a write that names an older generation is refused, so a late
    /// message can never move a machine backwards.
    pub generation: u64,
    /// The user the machine is allocated to.
    #[serde(default)]
    pub owner: Option<String>,
    /// Free-form key/value data the owner attaches (Juju stores its model here).
    #[serde(default)]
    pub owner_data: BTreeMap<String, String>,
    /// A locked machine refuses every action that would change it, until unlocked.
    #[serde(default)]
    pub locked: bool,
    /// MAAS architecture string, e.g. "amd64/generic".
    pub architecture: String,
    /// CPU cores, from the commissioning inventory; 0 before commissioning.
    #[serde(default)]
    pub cpu_count: u32,
    /// Memory in MiB.
    #[serde(default)]
    pub memory_mib: u64,
    /// Block devices, from the commissioning inventory; what storage constraints match against.
    #[serde(default)]
    pub disks: Vec<Disk>,
    /// Network interfaces; those given when the machine was added, then the inventory's.
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    /// The full hardware inventory reported by commissioning (without the BMC credentials).
    /// A stored inventory that does not read as an [`Inventory`] (a record written before the
    /// inventory was typed, from an agent that sent another shape) reads as none rather than
    /// making the machine unreadable; the next commissioning records it again.
    #[serde(default, deserialize_with = "super::inventory::lenient")]
    pub inventory: Option<Inventory>,
    /// Set once commissioning has completed successfully at least once.
    #[serde(default)]
    pub commissioned: bool,
    /// Free-form labels set by admins; allocation constraints match them.
    #[serde(default)]
    pub tags: BTreeSet<String>,
    /// Availability zone (MAAS's); "default" unless given when the machine is added.
    pub zone: String,
    /// Resource pool (MAAS's); "default" unless given when the machine is added.
    pub pool: String,
    /// Free-form note by an admin; empty when absent.
    #[serde(default)]
    pub description: String,
    /// How to switch the machine on and off; unconfigured when absent.
    #[serde(default)]
    pub power: PowerSettings,
    /// The last power state rackbox observed; unknown when absent.
    #[serde(default)]
    pub power_state: PowerStatus,
    /// The BMC commissioning found in the machine (MAAS's "BMC discovered"): where it is and
    /// whether the power settings were taken from it. No secret is kept here.
    #[serde(default)]
    pub discovered_bmc: Option<DiscoveredBmc>,
    /// What to deploy, set by the deploy action.
    #[serde(default)]
    pub deploy: Option<DeployTarget>,
    /// How the disks are wiped on release, set by the release action.
    #[serde(default)]
    pub erase: Option<EraseMode>,
    /// Run hardware tests after commissioning.
    #[serde(default)]
    pub test_after_commission: bool,
    /// When the current in-progress status times out (unix milliseconds).
    #[serde(default)]
    pub status_deadline_ms: Option<u64>,
    /// The network boot whose agent may call `/api/agent/v1` (only the token's hash is kept).
    /// A record written before boots were bound to their status had `boot_token_sha256` here;
    /// it is ignored, so such a token is refused and the machine must boot again.
    #[serde(default)]
    pub boot_session: Option<BootSession>,
    /// Deploying: the agent wrote the image; the next network boot goes to the local disk and the
    /// deployed OS must report in.
    #[serde(default)]
    pub deploy_written: bool,
    /// The power work the conductor owes the machine: the latest transition's effect, until the
    /// conductor has carried it out (or tried, and recorded why it failed). Kept with the
    /// machine, so that work owed when rackbox stopped is done once it runs again.
    #[serde(default)]
    pub owed_effect: Option<super::lifecycle::OwedEffect>,
    /// How far the agent's task is, from its latest progress report (the control page's progress
    /// bars, rate and time left). It belongs to the status it was reported in: a view shows it
    /// only while the machine is still in that status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<TaskProgress>,
    /// When the machine was added, milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// When the record was last written, milliseconds since the Unix epoch.
    pub updated_ms: u64,
}

/// The agent's latest progress report on its task, with when the task's reports began.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskProgress {
    /// The status the task runs in (Deploying, Disk erasing, ...).
    pub status: Status,
    /// The step, as the agent names it ("writing image").
    pub step: String,
    /// Percent done, when the agent can tell.
    pub percent: Option<f64>,
    /// Bytes done so far, when the task moves bytes (a deploy's image).
    pub bytes: Option<u64>,
    /// The first report of this task, unix milliseconds.
    pub started_ms: u64,
    /// This report, unix milliseconds.
    pub at_ms: u64,
}

impl TaskProgress {
    /// Bytes per second over the task so far, once it has moved bytes for a while.
    pub fn rate_bytes_per_sec(&self) -> Option<f64> {
        let bytes = self.bytes? as f64;
        let secs = self.at_ms.checked_sub(self.started_ms)? as f64 / 1000.0;
        (secs >= 0.5 && bytes > 0.0).then(|| bytes / secs)
    }

    /// The whole task's bytes, from the bytes done and the percent they are.
    pub fn total_bytes(&self) -> Option<u64> {
        let percent = self.percent.filter(|p| *p > 0.0 && *p <= 100.0)?;
        Some((self.bytes? as f64 * 100.0 / percent) as u64)
    }

    /// Seconds left at the rate so far.
    pub fn seconds_left(&self) -> Option<u64> {
        let rest = self.total_bytes()?.saturating_sub(self.bytes?) as f64;
        Some((rest / self.rate_bytes_per_sec()?).round() as u64)
    }
}

fn default_domain() -> String {
    "maas".to_string()
}

impl Machine {
    /// The machine's interface that boots from the network, or its first.
    pub fn boot_interface(&self) -> Option<&Interface> {
        self.interfaces
            .iter()
            .find(|i| i.boot)
            .or_else(|| self.interfaces.first())
    }

    /// Total size of all disks in bytes.
    pub fn storage_bytes(&self) -> u64 {
        self.disks.iter().map(|d| d.size_bytes).sum()
    }

    /// The machine's DNS name, `hostname.domain`; allocation's `name` matches it too.
    pub fn fqdn(&self) -> String {
        format!("{}.{}", self.hostname, self.domain)
    }

    /// Whether free text `lowercase` (already lower-cased) is a part of the hostname, system id,
    /// a MAC, the owner, a tag or the description: what a search box finds a machine by.
    pub fn mentions(&self, lowercase: &str) -> bool {
        let has = |field: &str| field.to_lowercase().contains(lowercase);
        has(&self.hostname)
            || has(&self.system_id)
            || self.interfaces.iter().any(|i| has(&i.mac))
            || self.owner.as_deref().is_some_and(has)
            || self.tags.iter().any(|t| has(t))
            || has(&self.description)
    }
}

/// The request header in which an enlisting agent sends its enlistment key (a secret of its
/// own, the same on every `/api/agent/v1/enlist` of one boot): see [`BootSession`].
pub const ENLIST_KEY_HEADER: &str = "rackbox-enlist-key";

/// One network boot of the ephemeral environment, as far as its agent's token goes.
///
/// A token is minted only when rackbox itself hands out a boot: the iPXE script for a machine
/// whose status has work in the ephemeral environment, or a successful first enlistment. Each
/// one replaces the last (the old token stops working), and it serves only the work it was
/// handed out for: once the machine leaves the statuses of that work (see
/// [`crate::model::lifecycle::boot_continues`]) the boot is `over`, and its token hears only
/// "power off" from `/task` and has every report refused, even if the machine comes back to
/// the same status later (that is another boot's work). The rule for each call is
/// [`crate::model::lifecycle::agent_may`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct BootSession {
    /// Hex sha256 of the per-boot token `rbt_<system_id>_<secret>`; the token itself is never
    /// stored.
    pub token_sha256: String,
    /// The status the boot was handed out for (New for an enlistment).
    pub issued_for: Status,
    /// The machine has left the statuses this boot serves.
    #[serde(default)]
    pub over: bool,
    /// Enlistment only: hex sha256 of the key the enlisting agent sent with `/enlist`, so that
    /// the same agent retrying after a lost answer is told its machine again (and nobody else).
    #[serde(default)]
    pub enlist_key_sha256: Option<String>,
}

/// A block device as commissioning saw it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Disk {
    /// Kernel name, e.g. "sda", "nvme0n1", "vda".
    pub name: String,
    /// Capacity in bytes.
    pub size_bytes: u64,
    /// Vendor model string as the kernel reports it; empty when unknown.
    #[serde(default)]
    pub model: String,
    /// Serial number as the kernel reports it; empty when unknown.
    #[serde(default)]
    pub serial: String,
    /// Logical sector size in bytes; 512 when absent.
    #[serde(default = "default_block_size")]
    pub block_size: u32,
    /// Spinning disk (the kernel's rotational flag); false for SSDs and when absent.
    #[serde(default)]
    pub rotational: bool,
    /// Tags used by storage constraints ("ssd", "rotary", user-given).
    #[serde(default)]
    pub tags: Vec<String>,
}

fn default_block_size() -> u32 {
    512
}

/// A network interface of the machine.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Interface {
    /// Kernel name, e.g. "eno1", "enp1s0".
    pub name: String,
    /// Lower-case colon-separated MAC address.
    pub mac: String,
    /// This is the interface the machine PXE-boots from.
    #[serde(default)]
    pub boot: bool,
    /// How it comes up in the deployed OS; None leaves it to the OS (see `model::network`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<super::network::Link>,
}

impl Interface {
    /// The address its link holds (a static one, or the one picked for an `auto` link).
    pub fn address(&self) -> Option<std::net::Ipv4Addr> {
        self.network.as_ref().and_then(|l| l.ip)
    }
}

/// A power driver rackbox has: MAAS's `power_type` values it speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PowerType {
    /// IPMI over LAN.
    Ipmi,
    /// DMTF Redfish over HTTPS.
    Redfish,
    /// No remote power control: an operator switches the machine.
    Manual,
    /// Shell commands or HTTP URLs (webhooks) that switch the machine.
    Command,
}

impl PowerType {
    /// Every power type, in the order the API lists them.
    pub const ALL: [PowerType; 4] = [
        PowerType::Ipmi,
        PowerType::Redfish,
        PowerType::Manual,
        PowerType::Command,
    ];

    /// The type's wire name, as in the API and MAAS.
    pub fn as_str(self) -> &'static str {
        match self {
            PowerType::Ipmi => "ipmi",
            PowerType::Redfish => "redfish",
            PowerType::Manual => "manual",
            PowerType::Command => "command",
        }
    }

    /// rackbox itself switches the machine (every type but manual).
    pub fn is_remote(self) -> bool {
        self != PowerType::Manual
    }
}

impl std::fmt::Display for PowerType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for PowerType {
    type Err = String;

    /// Reads a wire name exactly as [`PowerType::as_str`] writes it (form fields, the CLI).
    fn from_str(text: &str) -> Result<PowerType, String> {
        PowerType::ALL
            .into_iter()
            .find(|t| t.as_str() == text)
            .ok_or_else(|| {
                format!(
                    "'{}' is none of rackbox's power types (ipmi, redfish, manual, command)",
                    text.chars().take(64).collect::<String>()
                )
            })
    }
}

/// How rackbox switches the machine on and off: a driver and its parameters, MAAS-style.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PowerSettings {
    /// The driver, or "" when none is configured yet (as MAAS shows it, and as records have
    /// always held it).
    #[serde(default, with = "power_type_or_empty")]
    #[schemars(schema_with = "super::schema::power_type_or_empty")]
    pub power_type: Option<PowerType>,
    /// Driver parameters (power_address, power_user, power_pass, ...). Secrets are masked for
    /// everyone but admins.
    #[serde(default)]
    pub parameters: serde_json::Map<String, serde_json::Value>,
}

impl PowerSettings {
    /// Nothing configured: no driver, or manual with no parameters. Commissioning may fill
    /// such settings from the BMC it discovers; any other settings are the operator's.
    pub fn is_unconfigured(&self) -> bool {
        match self.power_type {
            None => true,
            Some(PowerType::Manual) => self.parameters.is_empty(),
            Some(_) => false,
        }
    }

    /// The driver rackbox switches the machine with; none for manual power or none at all.
    pub fn remote(&self) -> Option<PowerType> {
        self.power_type.filter(|t| t.is_remote())
    }

    /// The power type's wire name, "" when none is configured.
    pub fn type_name(&self) -> &'static str {
        self.power_type.map_or("", PowerType::as_str)
    }
}

/// [`PowerSettings::power_type`] on the wire and in redb: the type's name, or "" for none (an
/// absent field or null reads as none too).
mod power_type_or_empty {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    use super::PowerType;

    pub fn serialize<S: Serializer>(t: &Option<PowerType>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(t.map_or("", PowerType::as_str))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PowerType>, D::Error> {
        match Option::<String>::deserialize(d)?.as_deref() {
            None | Some("") => Ok(None),
            Some(text) => text.parse().map(Some).map_err(D::Error::custom),
        }
    }
}

/// A BMC found from inside the machine during commissioning.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DiscoveredBmc {
    /// The power driver that speaks to it (ipmi, or redfish when found through the Redfish
    /// host interface).
    pub power_type: PowerType,
    /// The BMC's LAN address as the BMC itself reports it.
    pub address: String,
    /// The BMC user commissioning created for rackbox, if it did; its password is only in the
    /// power parameters.
    #[serde(default)]
    pub user: Option<String>,
    /// The power settings were set from this BMC (they were unconfigured); false: the
    /// machine's own settings were kept.
    pub applied: bool,
    /// When it was discovered (unix milliseconds).
    pub discovered_ms: u64,
}

/// The last power state rackbox observed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PowerStatus {
    /// On or off, or unknown or error when rackbox cannot tell (then `message` says why).
    pub state: PowerState,
    /// Why the state is `error` or `unknown`.
    #[serde(default)]
    pub message: String,
    /// When it was last read from the BMC (unix milliseconds).
    #[serde(default)]
    pub checked_ms: Option<u64>,
}

impl Default for PowerStatus {
    fn default() -> Self {
        PowerStatus {
            state: PowerState::Unknown,
            message: String::new(),
            checked_ms: None,
        }
    }
}

/// Whether the machine is switched on: what a power driver answers (on, off, or unknown when it
/// cannot tell), and what rackbox last recorded, which may also be `error`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PowerState {
    /// Switched on.
    On,
    /// Switched off.
    Off,
    /// Not read yet, or the driver cannot tell (manual power, a command driver without a query).
    Unknown,
    /// The BMC could not be read or refused; the power status message says why. Never a
    /// driver's answer: rackbox records it when the driver fails.
    Error,
}

impl PowerState {
    /// The state's wire name, as in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            PowerState::On => "on",
            PowerState::Off => "off",
            PowerState::Unknown => "unknown",
            PowerState::Error => "error",
        }
    }
}

impl std::fmt::Display for PowerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the deploy action asked for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeployTarget {
    /// Image name in the image cache; empty means the default image for the architecture.
    #[serde(default)]
    pub image: String,
    /// Operating system of the default image to use when `image` is empty (MAAS's osystem); any OS
    /// with a default image for the architecture when empty too.
    #[serde(default)]
    pub osystem: String,
    /// Release asked for on the MAAS face (e.g. "jammy"), shown in MAAS's machine JSON; the
    /// image is chosen by `image` and `osystem`.
    #[serde(default)]
    pub distro_series: String,
    /// cloud-init user data, as given (decoded from base64 on the MAAS face).
    #[serde(default)]
    pub user_data: String,
    /// The owner's SSH public keys at the time of the deploy.
    #[serde(default)]
    pub ssh_keys: Vec<String>,
}

/// How disks are wiped when a machine is released.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EraseMode {
    /// Leave the disks as they are.
    #[default]
    None,
    /// wipefs, and zero the first and last MiB of every disk.
    Quick,
    /// Zero every byte.
    Full,
    /// ATA secure erase / NVMe format / discard, falling back to full.
    Secure,
}

impl EraseMode {
    /// Reads the release API's words: none (or empty), quick, full, secure, in any case.
    pub fn parse(text: &str) -> Option<EraseMode> {
        match text.trim().to_ascii_lowercase().as_str() {
            "none" | "" => Some(EraseMode::None),
            "quick" => Some(EraseMode::Quick),
            "full" => Some(EraseMode::Full),
            "secure" => Some(EraseMode::Secure),
            _ => None,
        }
    }
}

/// One entry of a machine's history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Event {
    /// Store-wide sequence number; events of one machine are ordered by it.
    pub seq: u64,
    /// The machine the event happened to.
    pub system_id: String,
    /// When it happened, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Who did it: a username, or "rackbox" for the daemon's own work.
    pub actor: String,
    /// What was done: an action's name (`deploy`, `time_out`), or a change recorded without a
    /// status move (`netboot`, `inventory`).
    pub action: String,
    /// The status before.
    pub from: Status,
    /// The status after; the same as `from` when the status did not move.
    pub to: Status,
    /// What happened, in words (the new status message or a note); may be empty.
    #[serde(default)]
    pub message: String,
}

#[cfg(test)]
pub(crate) mod tests {
    use serde_json::json;

    use super::*;

    /// A machine record as stored with the fewest fields, and `fields` (an object) on top: what
    /// an older rackbox may have written.
    pub(crate) fn stored_record(fields: serde_json::Value) -> serde_json::Value {
        let mut record = json!({
            "system_id": "abc123", "hostname": "node1", "status": Status::Ready,
            "generation": 4, "architecture": "amd64/generic", "zone": "default",
            "pool": "default", "created_ms": 1, "updated_ms": 2,
        });
        if let (Some(record), serde_json::Value::Object(fields)) = (record.as_object_mut(), fields)
        {
            record.extend(fields);
        }
        record
    }

    /// A machine record as stored before the power type was an enum: `power_type` a string,
    /// "" when not configured.
    fn record(power: serde_json::Value) -> serde_json::Value {
        stored_record(json!({
            "power": power,
            "discovered_bmc": {"power_type": "redfish", "address": "10.0.0.9", "applied": false,
                               "discovered_ms": 3},
        }))
    }

    #[test]
    fn old_records_power_types_still_load_and_are_written_back_the_same() {
        for (stored, power_type) in [
            (json!({"power_type": "", "parameters": {}}), None),
            (json!({"parameters": {}}), None),
            (json!({"power_type": null}), None),
            (json!({"power_type": "ipmi"}), Some(PowerType::Ipmi)),
            (json!({"power_type": "redfish"}), Some(PowerType::Redfish)),
            (json!({"power_type": "manual"}), Some(PowerType::Manual)),
            (json!({"power_type": "command"}), Some(PowerType::Command)),
        ] {
            let m: Machine = serde_json::from_value(record(stored.clone())).expect("loads");
            assert_eq!(m.power.power_type, power_type, "{stored}");
            let written = serde_json::to_value(&m).expect("json");
            assert_eq!(
                written["power"]["power_type"],
                json!(power_type.map_or("", PowerType::as_str)),
                "{stored}"
            );
            let bmc = m.discovered_bmc.expect("discovered BMC");
            assert_eq!(bmc.power_type, PowerType::Redfish);
        }
        let err = serde_json::from_value::<Machine>(record(json!({"power_type": "wol"})))
            .expect_err("an unknown type");
        assert!(err.to_string().contains("'wol'"), "{err}");
    }

    #[test]
    fn power_types_read_their_wire_names_only() {
        for t in PowerType::ALL {
            assert_eq!(t.as_str().parse::<PowerType>(), Ok(t));
            assert_eq!(serde_json::to_value(t).expect("json"), json!(t.as_str()));
        }
        for bad in ["", "IPMI", " ipmi", "wol"] {
            let err = bad.parse::<PowerType>().expect_err(bad);
            assert!(err.contains("ipmi, redfish, manual, command"), "{err}");
        }
    }

    #[test]
    fn unconfigured_power_is_none_or_manual_without_parameters() {
        let mut power = PowerSettings::default();
        assert!(power.is_unconfigured() && power.remote().is_none());
        assert_eq!(power.type_name(), "");
        power.power_type = Some(PowerType::Manual);
        assert!(power.is_unconfigured() && power.remote().is_none());
        power.parameters.insert("note".into(), json!("x"));
        assert!(!power.is_unconfigured());
        power.power_type = Some(PowerType::Ipmi);
        assert_eq!(power.remote(), Some(PowerType::Ipmi));
        assert_eq!(power.type_name(), "ipmi");
    }
}
