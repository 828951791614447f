//! The conductor: carries out the power work machines are owed ([`Machine::owed_effect`], set
//! by the transition that asked for it) through each machine's power driver.
//!
//! Level-triggered, after omicron's background tasks: an activation takes no input; it reads
//! what a machine is owed and does it. Wakes (a transition owed something) and a periodic pass
//! (every [`CONDUCTOR_PASS`], and at once when rackbox starts: work owed when it stopped is not
//! lost) both only name machines to look at. Each machine has at most one worker at a time, so
//! its effects run in the order they were owed: abort's power-off waits for deploy's power-on
//! that is under way, instead of overtaking it; an owed effect that has not started when a newer
//! one is owed is replaced by it (the machine no longer wants it). A worker settles the effect by
//! the generation it was owed at, so no unrelated write (a power-state record) can cancel it.
//!
//! A power failure moves the machine to the failed status of what it was doing, with the BMC's
//! error; a machine with manual power (or none configured) waits, and its message says for what.
//! One slow BMC never holds up another machine.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use super::{ConductorWakes, Principal, Service, ServiceError};
use crate::model::lifecycle::{self, OwedEffect};
use crate::model::timeline::Step;
use crate::model::{Action, Effect, Machine, PowerState, Status};
use crate::power::{self, PowerError};

/// How often the conductor looks at every machine that owes work, whatever the wakes said.
pub const CONDUCTOR_PASS: Duration = Duration::from_secs(10);

/// Runs until `shutdown` resolves or the wake channel closes. A worker under way at shutdown is
/// dropped; its effect stays owed and is carried out when rackbox runs again.
pub async fn run_conductor(
    service: Arc<Service>,
    mut wakes: ConductorWakes,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut workers = tokio::task::JoinSet::new();
    // Machines with a worker, and those woken while theirs runs (looked at again after it).
    let mut busy: HashMap<tokio::task::Id, String> = HashMap::new();
    let mut again: HashSet<String> = HashSet::new();
    let mut pass = tokio::time::interval(CONDUCTOR_PASS);
    pass.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let look_at: Vec<String> = tokio::select! {
            _ = &mut shutdown => break,
            Some(done) = workers.join_next_with_id(), if !workers.is_empty() => {
                let id = match done {
                    Ok((task, ())) => busy.remove(&task),
                    Err(e) => {
                        if e.is_panic() {
                            tracing::error!(error = %e, "a conductor worker panicked");
                        }
                        busy.remove(&e.id())
                    }
                };
                id.filter(|id| again.remove(id)).into_iter().collect()
            }
            wake = wakes.recv() => match wake {
                Some(id) => vec![id],
                None => break,
            },
            _ = pass.tick() => service.machines_owing_work(),
        };
        for id in look_at {
            if busy.values().any(|b| *b == id) {
                again.insert(id);
                continue;
            }
            let handle = workers.spawn(work_on(service.clone(), id.clone()));
            busy.insert(handle.id(), id);
        }
    }
    workers.abort_all();
}

/// One activation for one machine: carry out what it owes now, then settle it.
async fn work_on(service: Arc<Service>, id: String) {
    let Ok(machine) = service.machine(&Principal::system(), &id) else {
        return;
    };
    let Some(owed) = machine.owed_effect else {
        return;
    };
    carry_out(&service, &machine, owed).await;
    if let Err(e) = service.settle_effect(&id, owed.generation).await {
        // Still owed: the periodic pass tries again.
        tracing::warn!(system_id = %id, error = %e, "could not record an effect as done");
    }
}

/// Logs a follow-up write that failed (the effect itself was carried out or recorded).
fn logged(id: &str, what: &str, result: Result<impl Sized, ServiceError>) {
    if let Err(e) = result {
        tracing::warn!(system_id = %id, error = %e, "could not record {what}");
    }
}

/// Records the power state a driver just switched the machine to (a failure to record it is
/// logged: the switch itself is done).
async fn switched(service: &Service, id: &str, state: PowerState) {
    let result = service.set_power_state(id, state, String::new()).await;
    logged(id, "the power state", result);
}

async fn carry_out(service: &Service, machine: &Machine, owed: OwedEffect) {
    let id = machine.system_id.as_str();
    let status = machine.status;
    let params = machine.power.parameters.clone();
    let Some(power_type) = machine.power.remote() else {
        let unconfigured = machine.power.power_type.is_none();
        return manual(service, id, status, owed.effect, unconfigured).await;
    };
    let driver = match power::driver_for(power_type, &params) {
        Ok(d) => d,
        Err(e) => {
            return power_failed(service, machine, "configure the power driver", e).await;
        }
    };
    match owed.effect {
        Effect::PowerOnNetboot => {
            let efi = power::requested_boot_efi(power_type, &params).unwrap_or(false);
            match driver.set_boot_network_once(efi).await {
                Ok(b) => {
                    for w in &b.warnings {
                        tracing::warn!(system_id = %id, warning = %w, "boot override");
                    }
                }
                Err(e) => {
                    return power_failed(service, machine, "set a one-time network boot", e).await;
                }
            }
            let on = matches!(driver.query().await, Ok(power::PowerState::On));
            let (what, result) = if on {
                ("power cycle", driver.power_cycle().await)
            } else {
                ("power on", driver.power_on().await)
            };
            if let Err(e) = result {
                return power_failed(service, machine, what, e).await;
            }
            switched(service, id, PowerState::On).await;
            tracing::info!(system_id = %id, %power_type, "powered on with a one-time network boot");
            power_step(service, machine, &format!("{what} (network boot)"), None);
        }
        Effect::PowerOff => {
            if let Err(e) = driver.power_off(false).await {
                return power_failed(service, machine, "power off", e).await;
            }
            switched(service, id, PowerState::Off).await;
            tracing::info!(system_id = %id, %power_type, "powered off");
            power_step(service, machine, "power off", None);
            if let Some(message) = lifecycle::completed_by_power_off(status) {
                let done = Action::Complete {
                    message: message.into(),
                };
                logged(
                    id,
                    "the power-off's completion",
                    service.report_in(id, done, status, "rackbox").await,
                );
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
    let completes = lifecycle::completed_by_power_off(status).is_some();
    match effect {
        Effect::PowerOnNetboot => {
            let message =
                format!("{why}: switch the machine on by hand and let it boot from the network");
            logged(id, "a note", service.note(id, status, message).await);
        }
        Effect::PowerOff if completes => {
            // Leaving rescue mode: the agent in the ramdisk is told to power off at its next
            // poll (every status after rescue mode has no ephemeral work).
            let message = if status == Status::Releasing {
                format!("released; {why}: switch the machine off by hand")
            } else {
                format!(
                    "left rescue mode; {why}: the rescue environment powers itself off, else switch the machine off by hand"
                )
            };
            let done = Action::Complete { message };
            logged(
                id,
                "the completion",
                service.report_in(id, done, status, "rackbox").await,
            );
        }
        Effect::PowerOff => {
            let message = format!("{why}: switch the machine off by hand");
            logged(id, "a note", service.note(id, status, message).await);
        }
    }
}

/// Files a power switch (or its failure) in the machine's boot timeline: a power-on is what
/// starts the next boot, a power-off what ends one.
fn power_step(service: &Service, machine: &Machine, action: &str, error: Option<String>) {
    let step = Step::Power {
        action: action.to_string(),
        error,
    };
    service.boot_step_of(machine, None, step);
}

/// Records the BMC's error on the machine: its failed status when it was in progress, else the
/// power state "error" with the reason.
async fn power_failed(service: &Service, machine: &Machine, what: &str, e: PowerError) {
    let (id, status) = (machine.system_id.as_str(), machine.status);
    power_step(service, machine, what, Some(e.to_string()));
    let reason = format!("power driver could not {what}: {e}");
    tracing::warn!(system_id = %id, %reason, "power action failed");
    logged(
        id,
        "the power state",
        service
            .set_power_state(id, PowerState::Error, reason.clone())
            .await,
    );
    if status.is_in_progress() {
        logged(
            id,
            "the failure",
            service
                .report_in(id, Action::Fail { reason }, status, "rackbox")
                .await,
        );
    }
}
