//! The agent protocol, machine side: what `rackbox agent` reads from the appliance
//! (`agent::client::Task` from `GET /api/agent/v1/task`, `Enlisted` from `/enlist`). Never
//! panics; a task it reads serializes and reads back equal; a deploy task's digest is checked
//! the way the agent checks it before writing a disk.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rackbox::agent::client::{Enlisted, Task};
use rackbox::agent::deploy::normalize_sha256;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<Enlisted>(data);
    let Ok(task) = serde_json::from_slice::<Task>(data) else {
        return;
    };
    let text = serde_json::to_vec(&task).expect("a task serializes");
    let back: Task = serde_json::from_slice(&text).expect("a serialized task reads back");
    assert_eq!(back, task);
    if let Task::Deploy(d) = &task {
        if let Ok(sha) = normalize_sha256(&d.image_sha256) {
            assert_eq!(sha.len(), 64);
        }
    }
});
