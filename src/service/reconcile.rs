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
