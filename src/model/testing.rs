//! Hardware test results: what each test of a testing run found, as the agent reports them and
//! as rackbox keeps them per machine (the latest run). A run with a failed test is a failed run;
//! the machine goes to Failed testing with the failures as its reason.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How one test ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TestStatus {
    /// The test ran and found nothing wrong.
    Passed,
    /// The test found a fault; the run, and the machine's testing, fail.
    Failed,
    /// Not run (nothing to test, e.g. a disk test on a machine with no disks).
    Skipped,
}

/// One test on one component (a disk test reports once per disk).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TestResult {
    /// The test: `memory`, `disk-read`.
    pub name: String,
    /// How the test ended.
    pub status: TestStatus,
    /// Milliseconds since the Unix epoch, by the machine's clock.
    #[serde(default)]
    pub started_ms: u64,
    /// When the test ended, milliseconds since the Unix epoch by the machine's clock; 0 when not
    /// reported.
    #[serde(default)]
    pub finished_ms: u64,
    /// What the test did or found, in one line.
    #[serde(default)]
    pub summary: String,
    /// The disk a disk test read (kernel name, e.g. `sda`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<String>,
    /// Bytes the test read or exercised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Read throughput of a disk test, MiB/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throughput_mib_s: Option<f64>,
}

/// A machine's latest testing run, as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TestRun {
    /// The machine that was tested.
    pub system_id: String,
    /// When rackbox recorded the run (its clock).
    pub recorded_ms: u64,
    /// Failed when any test failed, else passed.
    pub status: TestStatus,
    /// Every test's result, in the order the agent ran them.
    pub results: Vec<TestResult>,
}

impl TestRun {
    /// Makes the run from the agent's results, failed when any test failed.
    pub fn new(system_id: &str, recorded_ms: u64, results: Vec<TestResult>) -> TestRun {
        let status = if results.iter().any(|r| r.status == TestStatus::Failed) {
            TestStatus::Failed
        } else {
            TestStatus::Passed
        };
        TestRun {
            system_id: system_id.to_string(),
            recorded_ms,
            status,
            results,
        }
    }

    /// The failures in one line ("disk-read on sda: read error at byte 4096"), for the
    /// machine's status message; None when every test passed or was skipped.
    pub fn failure_reason(&self) -> Option<String> {
        let failed: Vec<String> = self
            .results
            .iter()
            .filter(|r| r.status == TestStatus::Failed)
            .map(|r| match &r.disk {
                Some(d) => format!("{} on {d}: {}", r.name, r.summary),
                None => format!("{}: {}", r.name, r.summary),
            })
            .collect();
        (!failed.is_empty()).then(|| format!("test failed: {}", failed.join("; ")))
    }
}

/// What the API shows of a machine's tests: its latest run, or nothing yet.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TestResults {
    /// The machine whose tests these are.
    pub system_id: String,
    /// When the latest run was recorded; None before the machine's first run.
    pub recorded_ms: Option<u64>,
    /// Failed when any test of the latest run failed; None before the first run.
    pub status: Option<TestStatus>,
    /// The latest run's results; empty before the first run.
    pub results: Vec<TestResult>,
}

impl TestResults {
    /// What to show for `system_id`, from its latest stored run if it has one.
    pub fn of(system_id: &str, run: Option<TestRun>) -> TestResults {
        match run {
            Some(r) => TestResults {
                system_id: r.system_id,
                recorded_ms: Some(r.recorded_ms),
                status: Some(r.status),
                results: r.results,
            },
            None => TestResults {
                system_id: system_id.to_string(),
                recorded_ms: None,
                status: None,
                results: Vec::new(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(name: &str, status: TestStatus, disk: Option<&str>, summary: &str) -> TestResult {
        TestResult {
            name: name.into(),
            status,
            started_ms: 1,
            finished_ms: 2,
            summary: summary.into(),
            disk: disk.map(str::to_string),
            bytes: None,
            throughput_mib_s: None,
        }
    }

    #[test]
    fn a_run_fails_when_one_test_fails_and_says_which() {
        let ok = TestRun::new(
            "abc",
            5,
            vec![
                result("memory", TestStatus::Passed, None, "ok"),
                result("disk-read", TestStatus::Skipped, None, "no disks"),
            ],
        );
        assert_eq!(ok.status, TestStatus::Passed);
        assert_eq!(ok.failure_reason(), None);
        let bad = TestRun::new(
            "abc",
            5,
            vec![
                result("memory", TestStatus::Passed, None, "ok"),
                result("disk-read", TestStatus::Failed, Some("sdb"), "EIO at 4096"),
            ],
        );
        assert_eq!(bad.status, TestStatus::Failed);
        assert_eq!(
            bad.failure_reason().as_deref(),
            Some("test failed: disk-read on sdb: EIO at 4096")
        );
    }

    #[test]
    fn results_read_with_only_the_required_fields() {
        let r: TestResult =
            serde_json::from_str(r#"{"name":"memory","status":"passed"}"#).expect("parse");
        assert_eq!(r.summary, "");
        assert!(serde_json::from_str::<TestResult>(r#"{"name":"x","status":"great"}"#).is_err());
    }
}
