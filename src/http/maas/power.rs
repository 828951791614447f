//! The MAAS face's one door to power control. The power driver room is not merged yet, so this
//! adapter answers honestly: a power change is refused with 503 naming the power type (it never
//! claims a change that did not happen), and a power query answers the state rackbox last
//! recorded. When the power room lands, these two functions call it and nothing else changes.

use crate::model::Machine;

/// Why a power request could not be carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PowerUnavailable {
    #[error("power driver not available for power_type {power_type:?} (machine {system_id})")]
    NoDriver {
        system_id: String,
        power_type: String,
    },
}

/// On or off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Switch {
    On,
    Off { soft: bool },
}

/// Asks the machine's power driver to switch it.
pub async fn switch(machine: &Machine, how: Switch) -> Result<(), PowerUnavailable> {
    tracing::info!(
        system_id = %machine.system_id,
        power_type = %machine.power.power_type,
        request = ?how,
        "power change requested through the MAAS API; no power driver is available"
    );
    Err(PowerUnavailable::NoDriver {
        system_id: machine.system_id.clone(),
        power_type: machine.power.power_type.clone(),
    })
}

/// The machine's power state: today the last one rackbox recorded ("unknown" until a driver or
/// the machine itself has told).
pub async fn query(machine: &Machine) -> &'static str {
    machine.power_state.state.as_str()
}
