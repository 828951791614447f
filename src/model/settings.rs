//! The appliance-wide settings users change through the API (the MAAS face's
//! `get_config`/`set_config` names them as MAAS does). What the boot network and the image cache
//! already know (default image, DHCP options) is not copied here: it is read where it lives.

use serde::{Deserialize, Serialize};

/// The settings' one record; every field has the value a fresh appliance has.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// The name users give this appliance (MAAS's `maas_name`); None: the appliance's hostname.
    pub maas_name: Option<String>,
    /// The OS a deploy gets when it names none; None: the OS of the image cache's defaults
    /// (the first by name when several OSes have one).
    pub default_osystem: Option<String>,
    /// NTP servers for deployed machines, space-separated; None: the boot subnets' own.
    pub ntp_servers: Option<String>,
    /// DNS servers deployed machines resolve through, space-separated; None: the boot subnets'
    /// own.
    pub upstream_dns: Option<String>,
    /// Erase the disks of every released machine unless the release says otherwise.
    pub erase_on_release: bool,
    /// How such an erase is done when the release names no way: the disks' own secure erase.
    pub erase_secure: bool,
    /// ... or a quick wipe of each disk's start and end (both: secure, falling back to quick).
    pub erase_quick: bool,
}
