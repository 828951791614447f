//! The two sides of the agent protocol agree: every task the appliance sends parses as the task the
//! agent runs, field for field.

use rackbox::agent::client::{ImageFormat, Task};
use rackbox::model::EraseMode;
use rackbox::service::{AgentTask, DeployTask};

fn roundtrip(task: &AgentTask) -> Task {
    let json = serde_json::to_value(task).unwrap();
    serde_json::from_value(json.clone())
        .unwrap_or_else(|e| panic!("the agent cannot read {json}: {e}"))
}

#[test]
fn every_task_the_appliance_sends_is_understood_by_the_agent() {
    for create_bmc_user in [false, true] {
        assert_eq!(
            roundtrip(&AgentTask::Commission { create_bmc_user }),
            Task::Commission { create_bmc_user }
        );
    }
    // An appliance that does not say: no BMC user.
    assert_eq!(
        serde_json::from_value::<Task>(serde_json::json!({"task": "commission"})).unwrap(),
        Task::Commission {
            create_bmc_user: false
        }
    );
    assert!(matches!(roundtrip(&AgentTask::Poweroff), Task::Poweroff));
    assert!(matches!(roundtrip(&AgentTask::Reboot), Task::Reboot));
    assert!(matches!(
        roundtrip(&AgentTask::Wait { seconds: 7 }),
        Task::Wait { seconds: 7 }
    ));
    match roundtrip(&AgentTask::Test {
        tests: vec!["disk-read".into(), "memory".into()],
    }) {
        Task::Test { tests } => assert_eq!(tests, vec!["disk-read", "memory"]),
        other => panic!("{other:?}"),
    }
    for mode in [EraseMode::Quick, EraseMode::Full, EraseMode::Secure] {
        match roundtrip(&AgentTask::Erase { mode }) {
            Task::Erase { mode: got } => assert_eq!(
                serde_json::to_value(got).unwrap(),
                serde_json::to_value(mode).unwrap()
            ),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        roundtrip(&AgentTask::Rescue {
            ssh_keys: vec!["ssh-ed25519 AAAA x".into()]
        }),
        Task::Rescue {
            ssh_keys: vec!["ssh-ed25519 AAAA x".into()]
        }
    );
    for (format, expected) in [
        ("raw", ImageFormat::Raw),
        ("raw.gz", ImageFormat::RawGz),
        ("raw.xz", ImageFormat::RawXz),
        ("raw.zst", ImageFormat::RawZst),
    ] {
        let task = AgentTask::Deploy(Box::new(DeployTask {
            image_url: "http://192.0.2.1:5240/images/debian".into(),
            image_sha256: "ab".repeat(32),
            image_format: format.into(),
            image_size: 123,
            target_disk: None,
            hostname: "node1".into(),
            ssh_keys: vec!["ssh-ed25519 AAAA me".into()],
            user_data: "#cloud-config\n".into(),
            instance_id: "abc123-7".into(),
            report_url: "http://192.0.2.1:5240/api/agent/v1/deployed".into(),
            report_token: "rbt_abc123_x".into(),
        }));
        match roundtrip(&task) {
            Task::Deploy(d) => {
                assert_eq!(d.image_format, expected);
                assert_eq!(d.image_url, "http://192.0.2.1:5240/images/debian");
                assert_eq!(d.image_sha256, "ab".repeat(32));
                assert_eq!(d.image_size, Some(123));
                assert_eq!(d.hostname, "node1");
                assert_eq!(d.ssh_keys, vec!["ssh-ed25519 AAAA me"]);
                assert_eq!(d.user_data, "#cloud-config\n");
                assert_eq!(d.instance_id, "abc123-7");
                // The deployed OS's report address reaches the agent (which seeds it).
                assert_eq!(
                    d.report_url.as_deref(),
                    Some("http://192.0.2.1:5240/api/agent/v1/deployed")
                );
                assert_eq!(d.report_token.as_deref(), Some("rbt_abc123_x"));
            }
            other => panic!("{other:?}"),
        }
    }
}
