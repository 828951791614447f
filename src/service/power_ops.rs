//! Power requests made by people (API faces): switch a machine on or off, or read its power state
//! from its BMC now. Owners and admins may; the BMC's answer is recorded like the sync's.

use super::{Principal, Service, ServiceError};
use crate::model::{Machine, PowerState, PowerType};
use crate::power::{self, PowerError};

/// What a person asks of a machine's power.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerRequest {
    /// Switch the machine on.
    On,
    /// Switch the machine off.
    Off {
        /// Ask the OS to shut down (ACPI soft off) instead of cutting the power.
        soft: bool,
    },
    /// Power-cycle the machine (off, then on).
    Cycle,
}

fn may_power(p: &Principal, m: &Machine) -> Result<(), ServiceError> {
    if p.is_admin() || m.owner.as_deref() == Some(p.username.as_str()) {
        Ok(())
    } else {
        Err(ServiceError::Forbidden(format!(
            "user {} may not control the power of machine {} (it is not theirs)",
            p.username, m.system_id
        )))
    }
}

fn driver(m: &Machine) -> Result<Box<dyn power::PowerDriver>, ServiceError> {
    match m.power.power_type {
        None => Err(ServiceError::Conflict(format!(
            "machine {} has no power driver configured; set power_type and its parameters",
            m.system_id
        ))),
        Some(PowerType::Manual) => Err(ServiceError::Conflict(format!(
            "machine {} has manual power: an operator switches it by hand",
            m.system_id
        ))),
        Some(t) => power::driver_for(t, &m.power.parameters)
            .map_err(|e| ServiceError::PowerFailed(e.to_string())),
    }
}

impl Service {
    /// Switches a machine's power through its driver and records the new state.
    pub async fn power_switch(
        &self,
        p: &Principal,
        system_id: &str,
        request: PowerRequest,
    ) -> Result<Machine, ServiceError> {
        let m = self.machine(p, system_id)?;
        may_power(p, &m)?;
        if m.locked && p.role != crate::model::Role::Admin {
            return Err(ServiceError::Conflict(format!(
                "machine {system_id} is locked"
            )));
        }
        let d = driver(&m)?;
        let (result, state) = match request {
            PowerRequest::On => (d.power_on().await, PowerState::On),
            PowerRequest::Off { soft } => (d.power_off(soft).await, PowerState::Off),
            PowerRequest::Cycle => (d.power_cycle().await, PowerState::On),
        };
        self.record_power_result(system_id, result.map(|_| state))
            .await?;
        tracing::info!(system_id, ?request, by = %p.username, "power switched");
        Ok((*self.machine(p, system_id)?).clone())
    }

    /// Asks the BMC now; records and returns the state.
    pub async fn power_query(
        &self,
        p: &Principal,
        system_id: &str,
    ) -> Result<PowerState, ServiceError> {
        let m = self.machine(p, system_id)?;
        if m.power.remote().is_none() {
            return Ok(PowerState::Unknown);
        }
        let d = driver(&m)?;
        let state = d.query().await;
        self.record_power_result(system_id, state).await
    }

    async fn record_power_result(
        &self,
        system_id: &str,
        result: Result<PowerState, PowerError>,
    ) -> Result<PowerState, ServiceError> {
        match result {
            Ok(state) => {
                self.set_power_state(system_id, state, String::new())
                    .await?;
                Ok(state)
            }
            Err(e) => {
                let reason = e.to_string();
                self.set_power_state(system_id, PowerState::Error, reason.clone())
                    .await?;
                Err(ServiceError::PowerFailed(reason))
            }
        }
    }
}
