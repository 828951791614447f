//! The conductor: carries out the effects of committed transitions through the machine's power
//! driver. A power failure moves the machine to the failed status of what it was doing, with the
//! BMC's error; a machine with manual power (or none configured) waits, and its message says for
//! what. Each effect runs in its own task so one slow BMC never holds up another machine.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::{EffectRequest, Principal, Service};
use crate::model::{Action, Effect, PowerState, Status};
use crate::power::{self, PowerError};

/// Runs until `shutdown` resolves or the effect channel closes.
pub async fn run_conductor(
    service: Arc<Service>,
    mut effects: mpsc::UnboundedReceiver<EffectRequest>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut running = tokio::task::JoinSet::new();
    loop {
        let request = tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = running.join_next(), if !running.is_empty() => continue,
            r = effects.recv() => match r { Some(r) => r, None => break },
        };
        running.spawn(carry_out(service.clone(), request));
    }
    running.abort_all();
}

async fn carry_out(service: Arc<Service>, request: EffectRequest) {
    let Ok(machine) = service.machine(&Principal::system(), &request.system_id) else {
        return;
    };
    if machine.generation != request.generation {
        // The machine changed since this effect was decided; the newer change brings its own.
        return;
    }
    let id = machine.system_id.clone();
    let status = machine.status;
    let power_type = machine.power.power_type.clone();
    let params = machine.power.parameters.clone();
    if power_type.is_empty() || power_type == "manual" {
        manual(&service, &id, status, request.effect, power_type.is_empty()).await;
        return;
    }
    let driver = match power::driver_for(&power_type, &params) {
        Ok(d) => d,
        Err(e) => {
            return power_failed(&service, &id, status, "configure the power driver", e).await;
        }
    };
    match request.effect {
        Effect::PowerOnNetboot => {
            let efi = power::requested_boot_efi(&power_type, &params).unwrap_or(false);
            match driver.set_boot_network_once(efi).await {
                Ok(b) => {
                    for w in &b.warnings {
                        tracing::warn!(system_id = %id, warning = %w, "boot override");
                    }
                }
                Err(e) => {
                    return power_failed(&service, &id, status, "set a one-time network boot", e)
                        .await;
                }
            }
            let on = matches!(driver.query().await, Ok(power::PowerState::On));
            let result = if on {
                driver.power_cycle().await
            } else {
                driver.power_on().await
            };
            if let Err(e) = result {
                return power_failed(
                    &service,
                    &id,
                    status,
                    if on { "power cycle" } else { "power on" },
                    e,
                )
                .await;
            }
            let _ = service
                .set_power_state(&id, PowerState::On, String::new())
                .await;
            tracing::info!(system_id = %id, power_type, "powered on with a one-time network boot");
        }
        Effect::PowerOff => {
            if let Err(e) = driver.power_off(false).await {
                return power_failed(&service, &id, status, "power off", e).await;
            }
            let _ = service
                .set_power_state(&id, PowerState::Off, String::new())
                .await;
            tracing::info!(system_id = %id, power_type, "powered off");
            let done = match status {
                Status::Releasing => Some("released; powered off"),
                Status::ExitingRescueMode => Some("left rescue mode; powered off"),
                _ => None,
            };
            if let Some(message) = done {
                let _ = service
                    .report_in(
                        &id,
                        Action::Complete {
                            message: message.into(),
                        },
                        status,
                        "rackbox",
                    )
                    .await;
            }
        }
    }
}

/// A machine rackbox cannot switch: say what the operator must do. Releasing without erase and
/// leaving rescue mode need nothing more than the machine being off, which rackbox cannot check:
/// they complete, saying so.
async fn manual(service: &Service, id: &str, status: Status, effect: Effect, unconfigured: bool) {
    let why = if unconfigured {
        "no power driver is configured"
    } else {
        "power is manual"
    };
    match effect {
        Effect::PowerOnNetboot => {
            let message =
                format!("{why}: switch the machine on by hand and let it boot from the network");
            let _ = service.note(id, status, message).await;
        }
        Effect::PowerOff if matches!(status, Status::Releasing | Status::ExitingRescueMode) => {
            // Leaving rescue mode: the agent in the ramdisk is told to power off at its next
            // poll (every status after rescue mode has no ephemeral work).
            let message = if status == Status::Releasing {
                format!("released; {why}: switch the machine off by hand")
            } else {
                format!(
                    "left rescue mode; {why}: the rescue environment powers itself off, else switch the machine off by hand"
                )
            };
            let _ = service
                .report_in(id, Action::Complete { message }, status, "rackbox")
                .await;
        }
        Effect::PowerOff => {
            let message = format!("{why}: switch the machine off by hand");
            let _ = service.note(id, status, message).await;
        }
    }
}

/// Records the BMC's error on the machine: its failed status when it was in progress, else the
/// power state "error" with the reason.
async fn power_failed(service: &Service, id: &str, status: Status, what: &str, e: PowerError) {
    let reason = format!("power driver could not {what}: {e}");
    tracing::warn!(system_id = %id, %reason, "power action failed");
    let _ = service
        .set_power_state(id, PowerState::Error, reason.clone())
        .await;
    if status.is_in_progress() {
        let _ = service
            .report_in(id, Action::Fail { reason }, status, "rackbox")
            .await;
    }
}
