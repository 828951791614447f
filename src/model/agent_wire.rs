//! The agent protocol's messages: JSON over `/api/agent/v1`, between `rackbox agent` in the
//! ephemeral environment (`agent::client`, which serializes requests and reads answers) and the
//! appliance (`http::boot` and `service::boot`, which read requests and serialize answers).
//! Both ends use these types, so a renamed field or task is a compile error on both, never a
//! mismatch found at run time. docs/agent-api.md describes the calls; the inventory is
//! [`super::inventory`].
//!
//! Fields an older peer may leave out have defaults, so that an agent reads an older
//! appliance's tasks and the appliance an older agent's reports. Unknown fields are ignored.

use serde::{Deserialize, Serialize};

use super::machine::EraseMode;

/// The path prefix of every agent call.
pub const PREFIX: &str = "/api/agent/v1";

/// Reads a resumed download's `Content-Range: bytes <start>-<end>/<total>` into (start, total;
/// None for `*`). The agent resumes an image with it, and the image cache a mirror's file.
pub fn content_range(value: &str) -> Option<(u64, Option<u64>)> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, _end) = range.split_once('-')?;
    Some((start.trim().parse().ok()?, total.trim().parse().ok()))
}

/// The calls, under [`PREFIX`].
pub mod path {
    /// `GET`: the next [`super::Task`].
    pub const TASK: &str = "/task";
    /// `POST` an [`crate::model::Inventory`] (commissioning).
    pub const INVENTORY: &str = "/inventory";
    /// `POST` a [`super::Progress`].
    pub const PROGRESS: &str = "/progress";
    /// `POST` a [`super::Complete`]; answered with a [`super::Reported`].
    pub const COMPLETE: &str = "/complete";
    /// `POST` a [`super::Fail`]; answered with a [`super::Reported`].
    pub const FAIL: &str = "/fail";
    /// `POST` a [`super::Deployed`] (the deployed OS); answered with a [`super::Reported`].
    pub const DEPLOYED: &str = "/deployed";
    /// `POST` an [`crate::model::Inventory`] without a token; answered with an
    /// [`super::Enlisted`].
    pub const ENLIST: &str = "/enlist";
}

/// A task the appliance hands out (`GET /task`), tagged by `"task"`; decided by the machine's
/// status.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(tag = "task", rename_all = "snake_case")]
pub enum Task {
    /// Take the inventory; with `create_bmc_user` (the machine's power is not configured) also
    /// create a BMC user for rackbox, whose credentials come back with the inventory.
    Commission {
        /// Also create a BMC user; false (the default) when the machine's power is already set up.
        #[serde(default)]
        create_bmc_user: bool,
    },
    /// Run the named hardware tests and report their results with the completion.
    Test {
        /// Names of the tests to run ("disk-read", "memory"); none when absent.
        #[serde(default)]
        tests: Vec<String>,
    },
    /// Boxed: a deploy task is several times larger than every other task.
    Deploy(Box<DeployTask>),
    /// Wipe the disks before the machine returns to the pool (release with erase).
    Erase {
        /// How thoroughly to wipe; a quick erase when absent.
        #[serde(default = "default_erase")]
        mode: EraseMode,
    },
    /// Rescue mode: SSH in with the owner's keys until told to power off.
    Rescue {
        /// The owner's public keys; none when absent or when the machine has no owner.
        #[serde(default)]
        ssh_keys: Vec<String>,
    },
    /// Power the machine off: there is nothing for it to do, or its boot is no longer current.
    Poweroff,
    /// Reboot from disk: the image is written and the deployed OS should now boot.
    Reboot,
    /// Nothing to do yet: ask for a task again after `seconds`.
    Wait {
        /// How long to wait before asking again; ten seconds when absent.
        #[serde(default = "default_wait")]
        seconds: u64,
    },
}

fn default_erase() -> EraseMode {
    EraseMode::Quick
}

fn default_wait() -> u64 {
    10
}

/// How the image at `image_url` is compressed: the raw disk images the agent writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub enum ImageFormat {
    /// Uncompressed disk image, written as is.
    #[serde(rename = "raw")]
    Raw,
    /// Gzip-compressed disk image.
    #[serde(rename = "raw.gz")]
    RawGz,
    /// XZ-compressed disk image.
    #[serde(rename = "raw.xz")]
    RawXz,
    /// Zstandard-compressed disk image.
    #[serde(rename = "raw.zst")]
    RawZst,
}

/// What to write and what to tell cloud-init. Its `Debug` hides the report token: the agent
/// logs every task it gets.
#[derive(Clone, PartialEq, Deserialize, Serialize)]
pub struct DeployTask {
    /// Absolute, or relative to the appliance's base URL.
    pub image_url: String,
    /// SHA-256 of the bytes at `image_url` (the compressed file), hex.
    pub image_sha256: String,
    /// How the bytes at `image_url` are compressed, so the agent knows how to unpack them.
    pub image_format: ImageFormat,
    /// Size of the bytes at `image_url`, when known: used for progress and checked.
    #[serde(default)]
    pub image_size: Option<u64>,
    /// Kernel name of the disk to write ("sda"); the largest disk when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_disk: Option<String>,
    /// Host name for the deployed OS, written into the cloud-init seed.
    #[serde(default)]
    pub hostname: String,
    /// Public keys cloud-init installs for the default user (the owner's keys).
    #[serde(default)]
    pub ssh_keys: Vec<String>,
    /// Cloud-init user data, passed through as given at deploy; empty for none.
    #[serde(default)]
    pub user_data: String,
    /// Cloud-init instance id ("system_id-generation": new for each deploy); the agent uses
    /// "i-hostname" when empty.
    #[serde(default)]
    pub instance_id: String,
    /// Where the deployed OS reports that it booted (`POST`, a [`Deployed`]): the deploy
    /// becomes Deployed only then. Written into the seed's meta-data so that the OS can find
    /// it; absent in tasks from appliances older than the report.
    #[serde(default)]
    pub report_url: Option<String>,
    /// The bearer token for `report_url`.
    #[serde(default)]
    pub report_token: Option<String>,
    /// The seed's `network-config` (cloud-init network configuration v2, JSON text): how the
    /// machine's interfaces come up (see `model::network`). None: no file, cloud-init's
    /// fallback network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_config: Option<String>,
}

impl std::fmt::Debug for DeployTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeployTask")
            .field("image_url", &self.image_url)
            .field("image_sha256", &self.image_sha256)
            .field("image_format", &self.image_format)
            .field("image_size", &self.image_size)
            .field("target_disk", &self.target_disk)
            .field("hostname", &self.hostname)
            .field("ssh_keys", &self.ssh_keys)
            .field("user_data", &self.user_data)
            .field("instance_id", &self.instance_id)
            .field("report_url", &self.report_url)
            .field(
                "report_token",
                &self.report_token.as_ref().map(|_| "<hidden>"),
            )
            .field("network_config", &self.network_config)
            .finish()
    }
}

/// `POST /progress`: the status message says it (with the percent when known).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// The human-readable step ("downloading image"), shown as the machine's status message.
    pub message: String,
    /// Percent done, when the agent can tell.
    #[serde(default)]
    pub percent: Option<f64>,
    /// Bytes done so far (a deploy's image): the control page shows the rate and time left.
    #[serde(default)]
    pub bytes: Option<u64>,
}

/// `POST /complete`: the task is done.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Complete {
    /// What the agent did, for the event log; may be empty.
    #[serde(default)]
    pub message: String,
    /// What the task found (deploy, erase, test reports); a testing run's `tests` are kept as
    /// the machine's test results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results: Option<serde_json::Value>,
}

/// `POST /fail`: the task failed, with the reason and, when the task has them (test results),
/// its findings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Fail {
    /// Why the task failed, in words; the machine's failure reason.
    pub reason: String,
    /// What the task found before it failed; a testing run's `tests` are kept as the machine's test
    /// results, as with [`Complete`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results: Option<serde_json::Value>,
}

/// `POST /deployed`, from the deployed OS: it booted from its disk.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Deployed {
    /// A note from the deployed OS for the event log; may be empty.
    #[serde(default)]
    pub message: String,
}

/// The answer to `/complete`, `/fail` and `/deployed`: where the report took the machine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Reported {
    /// The machine's status key ([`super::Status::key`]).
    pub status: String,
}

/// The appliance's answer to `/enlist`: the new machine and its boot token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enlisted {
    /// The id the appliance gave the new machine.
    pub system_id: String,
    /// Boot token for the agent's further calls during this boot (the bearer token).
    pub token: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_parses() {
        assert_eq!(content_range("bytes 100-199/200"), Some((100, Some(200))));
        assert_eq!(content_range("bytes 5-9/*"), Some((5, None)));
        assert_eq!(content_range("items 1-2/3"), None);
    }

    #[test]
    fn tasks_parse_from_the_protocol() {
        let t: Task = serde_json::from_str(
            r#"{"task":"deploy","image_url":"/images/x.raw.zst","image_sha256":"ab",
                "image_format":"raw.zst","image_size":10,"hostname":"n1",
                "ssh_keys":["k"],"user_data":"","instance_id":"i-1"}"#,
        )
        .expect("deploy");
        let Task::Deploy(d) = t else {
            panic!("not a deploy: {t:?}")
        };
        assert_eq!(d.image_format, ImageFormat::RawZst);
        assert_eq!(d.target_disk, None);
        assert_eq!(d.image_size, Some(10));
        // Tasks from appliances older than the deployed OS's report have no report fields.
        assert_eq!((&d.report_url, &d.report_token), (&None, &None));
        let mut with_token = d.clone();
        with_token.report_token = Some("rbt_secret".into());
        assert!(!format!("{with_token:?}").contains("rbt_secret"));
        let t: Task = serde_json::from_str(r#"{"task":"erase","mode":"secure"}"#).expect("erase");
        assert_eq!(
            t,
            Task::Erase {
                mode: EraseMode::Secure
            }
        );
        let t: Task = serde_json::from_str(r#"{"task":"wait","seconds":3}"#).expect("wait");
        assert_eq!(t, Task::Wait { seconds: 3 });
        let t: Task = serde_json::from_str(r#"{"task":"test","tests":["memory"]}"#).expect("test");
        assert_eq!(
            t,
            Task::Test {
                tests: vec!["memory".into()]
            }
        );
        assert!(serde_json::from_str::<Task>(r#"{"task":"dance"}"#).is_err());
    }

    /// An appliance that does not say: no BMC user, a quick erase, ten seconds' wait.
    #[test]
    fn tasks_of_an_older_appliance_read_with_defaults() {
        let t: Task = serde_json::from_str(r#"{"task":"commission"}"#).expect("commission");
        assert_eq!(
            t,
            Task::Commission {
                create_bmc_user: false
            }
        );
        let t: Task = serde_json::from_str(r#"{"task":"wait"}"#).expect("wait");
        assert_eq!(t, Task::Wait { seconds: 10 });
        let t: Task = serde_json::from_str(r#"{"task":"erase"}"#).expect("erase");
        assert_eq!(
            t,
            Task::Erase {
                mode: EraseMode::Quick
            }
        );
    }

    #[test]
    fn a_deploy_task_keeps_its_shape() {
        let task = Task::Deploy(Box::new(DeployTask {
            image_url: "http://192.0.2.1:5240/images/debian".into(),
            image_sha256: "ab".repeat(32),
            image_format: ImageFormat::RawZst,
            image_size: Some(123),
            target_disk: None,
            hostname: "node1".into(),
            ssh_keys: vec!["ssh-ed25519 AAAA me".into()],
            user_data: "#cloud-config\n".into(),
            instance_id: "abc123-7".into(),
            report_url: Some("http://192.0.2.1:5240/api/agent/v1/deployed".into()),
            report_token: Some("rbt_abc123_x".into()),
            network_config: None,
        }));
        let json = serde_json::to_value(&task).expect("json");
        assert_eq!(json["task"], "deploy");
        assert_eq!(json["image_format"], "raw.zst");
        assert_eq!(json["image_size"], 123);
        assert!(json.get("target_disk").is_none(), "{json}");
        let back: Task = serde_json::from_value(json).expect("back");
        assert_eq!(back, task);
    }

    #[test]
    fn reports_without_results_send_no_results_key() {
        let json = serde_json::to_value(Complete {
            message: "done".into(),
            results: None,
        })
        .expect("json");
        assert_eq!(json, serde_json::json!({"message": "done"}));
        let json = serde_json::to_value(Fail {
            reason: "disk".into(),
            results: None,
        })
        .expect("json");
        assert_eq!(json, serde_json::json!({"reason": "disk"}));
    }
}
