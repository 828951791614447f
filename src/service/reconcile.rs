//! The reconciler: background work that looks at what is and what should be, and acts. Today it
//! times out in-progress statuses past their deadline; power-state sync joins it later.

use std::sync::Arc;
use std::time::Duration;

use super::Service;
use crate::model::Action;
use crate::model::ids::now_ms;

/// Runs until `shutdown` resolves: every `interval`, moves each machine past its deadline to its
/// failed status with the reason. The generation guard makes a timeout that races a real report
/// harmless: whichever commits first wins, the other is refused as stale.
pub async fn run_reconciler(
    service: Arc<Service>,
    interval: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tick.tick() => {}
        }
        for (system_id, generation) in service.overdue(now_ms()) {
            match service
                .report(&system_id, Action::TimeOut, Some(generation), "rackbox")
                .await
            {
                Ok(m) => {
                    tracing::warn!(system_id, status = m.status.name(), reason = %m.status_message, "machine timed out")
                }
                Err(e) => tracing::debug!(system_id, error = %e, "timeout not applied"),
            }
        }
    }
}

/// How the power-state sync runs.
#[derive(Clone, Copy, Debug)]
pub struct PowerSync {
    /// Time between two rounds of reading every machine's power state.
    pub interval: Duration,
    /// BMCs queried at once.
    pub concurrency: usize,
    /// Deadline of one query.
    pub timeout: Duration,
}

/// Runs until `shutdown` resolves: every `interval`, asks every machine's BMC for its power state
/// (bounded concurrency) and records on, off, unknown or error with the reason. A BMC that keeps
/// failing is asked less and less often (exponential backoff), and never holds up the others.
pub async fn run_power_sync(
    service: Arc<Service>,
    sync: PowerSync,
    shutdown: impl std::future::Future<Output = ()>,
) {
    use std::collections::HashMap;
    use std::time::Instant;

    use crate::model::PowerState;
    use crate::power::{self, Backoff};

    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(sync.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut backoff: HashMap<String, (Backoff, Instant)> = HashMap::new();
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tick.tick() => {}
        }
        let now = Instant::now();
        let due: Vec<_> = service
            .powered_machines()
            .into_iter()
            .filter(|(id, _, _)| backoff.get(id).is_none_or(|(_, next)| *next <= now))
            .collect();
        if due.is_empty() {
            continue;
        }
        let results = tokio::select! {
            _ = &mut shutdown => return,
            r = power::query_many(due, sync.concurrency, sync.timeout) => r,
        };
        for (id, result) in results {
            let (state, message) = match result {
                Ok(state) => (state, String::new()),
                Err(e) => (PowerState::Error, e.to_string()),
            };
            let entry = backoff.entry(id.clone()).or_insert_with(|| {
                (
                    Backoff::new(sync.interval, sync.interval * 32),
                    Instant::now(),
                )
            });
            if state == PowerState::Error {
                let delay = entry.0.failed();
                entry.1 = Instant::now() + delay;
            } else {
                entry.0.succeeded();
                entry.1 = Instant::now();
            }
            if let Err(e) = service.set_power_state(&id, state, message).await {
                tracing::debug!(system_id = %id, error = %e, "power state not recorded");
            }
        }
    }
}
