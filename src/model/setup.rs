//! The first-boot setup of an appliance plugged in at a remote site: what the admin chose in it,
//! and whether it is finished.

use serde::{Deserialize, Serialize};

/// The setup's one record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetupRecord {
    /// The boot interfaces chosen, as `[[boot.interfaces]]` TOML: the config file's own form,
    /// read at start by the same parser and checks as the file. None until chosen.
    #[serde(default)]
    pub boot_interfaces_toml: Option<String>,
    /// The DHCP servers the foreign-DHCP probe found on the chosen interface when it was
    /// chosen (empty: none answered), as "server (mac) offered address".
    #[serde(default)]
    pub probe_found: Vec<String>,
    /// When the admin finished the setup, milliseconds since the Unix epoch.
    #[serde(default)]
    pub done_ms: Option<u64>,
}
