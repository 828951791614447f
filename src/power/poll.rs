//! Asking many machines for their power state at once, for the service's
//! reconciler, and a small back-off schedule for BMCs that keep failing.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt, stream};
use serde_json::{Map, Value};

use super::{PowerError, PowerState, PowerType, driver_with_timeout, panic_text};

/// Queries every machine's power state, at most `concurrency` at a time, each
/// bounded by `timeout`.
///
/// One dead BMC costs one slot for one `timeout`; the other machines go on in
/// the remaining slots, so with `concurrency` > the number of dead BMCs the
/// live ones answer at their own speed. Results come back in the order of
/// `machines`. A driver that panics yields [`PowerError::DriverPanicked`] for
/// its machine only.
pub async fn query_many<Id>(
    machines: Vec<(Id, PowerType, Map<String, Value>)>,
    concurrency: usize,
    timeout: Duration,
) -> Vec<(Id, Result<PowerState, PowerError>)> {
    let concurrency = concurrency.max(1);
    let mut ids = Vec::with_capacity(machines.len());
    let mut jobs = Vec::with_capacity(machines.len());
    for (index, (id, power_type, params)) in machines.into_iter().enumerate() {
        ids.push(Some(id));
        jobs.push((index, power_type, params));
    }

    let mut results: Vec<(usize, Result<PowerState, PowerError>)> = stream::iter(jobs)
        .map(|(index, power_type, params)| async move {
            let work = async {
                let driver = driver_with_timeout(power_type, &params, timeout)?;
                // The driver bounds itself; this outer bound is a second fence
                // for a driver that would not (a grace of one second for it to
                // report its own, more precise, timeout first).
                match tokio::time::timeout(timeout + Duration::from_secs(1), driver.query()).await {
                    Ok(result) => result,
                    Err(_) => Err(PowerError::Timeout {
                        what: "power driver",
                        address: power_type.to_string(),
                        after: timeout,
                        during: "querying the power state".to_owned(),
                    }),
                }
            };
            let result = match AssertUnwindSafe(work).catch_unwind().await {
                Ok(result) => result,
                Err(payload) => Err(PowerError::DriverPanicked {
                    driver: "power",
                    detail: panic_text(payload.as_ref()),
                }),
            };
            (index, result)
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;

    results.sort_by_key(|(index, _)| *index);
    results
        .into_iter()
        .filter_map(|(index, result)| {
            let id = ids.get_mut(index).and_then(Option::take)?;
            Some((id, result))
        })
        .collect()
}

/// An exponential back-off schedule for one machine's failing BMC: pure
/// bookkeeping, the caller owns the clock.
///
/// Why here: the reconciler polls hundreds of BMCs; one that is down should be
/// asked less and less often (down to `max`) instead of taking a slot every
/// round, and asked at the normal rate again as soon as it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    /// The delay after the first failure.
    base: Duration,
    /// The longest delay.
    max: Duration,
    /// Failures since the last success.
    failures: u32,
}

impl Backoff {
    /// A schedule starting at `base` and doubling up to `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Backoff {
            base,
            max: max.max(base),
            failures: 0,
        }
    }

    /// Records a failure and returns how long to wait before the next try.
    pub fn failed(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.delay()
    }

    /// Records a success: the next failure starts again at `base`.
    pub fn succeeded(&mut self) {
        self.failures = 0;
    }

    /// Failures since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// How long to wait now: zero with no failure, else `base * 2^(failures-1)`
    /// capped at `max`.
    pub fn delay(&self) -> Duration {
        if self.failures == 0 {
            return Duration::ZERO;
        }
        let doublings = (self.failures - 1).min(31);
        self.base
            .checked_mul(1u32 << doublings)
            .map_or(self.max, |d| d.min(self.max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(10), Duration::from_secs(300));
        assert_eq!(b.delay(), Duration::ZERO);
        assert_eq!(b.failed(), Duration::from_secs(10));
        assert_eq!(b.failed(), Duration::from_secs(20));
        assert_eq!(b.failed(), Duration::from_secs(40));
        for _ in 0..100 {
            b.failed();
        }
        assert_eq!(b.delay(), Duration::from_secs(300));
        b.succeeded();
        assert_eq!(b.failures(), 0);
        assert_eq!(b.failed(), Duration::from_secs(10));
    }

    #[tokio::test]
    async fn query_many_keeps_order_and_reports_each_machine() {
        let machines = vec![
            (1u32, PowerType::Manual, Map::new()),
            (2u32, PowerType::Ipmi, Map::new()),
            (3u32, PowerType::Manual, Map::new()),
        ];
        let results = query_many(machines, 2, Duration::from_secs(1)).await;
        let ids: Vec<u32> = results.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, [1, 2, 3]);
        assert_eq!(results[0].1.as_ref().ok(), Some(&PowerState::Unknown));
        assert!(matches!(results[1].1, Err(PowerError::Params(_))));
    }
}
