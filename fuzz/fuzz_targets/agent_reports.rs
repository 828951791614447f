//! The agent protocol, appliance side: the JSON bodies an agent (or anything holding a boot
//! token, or an enlisting machine) POSTs to `/api/agent/v1/inventory`, `/complete` and `/fail`,
//! through the pure part of what the service does with them
//! (`service::fuzz_agent_report`: BMC credentials taken out, the inventory's shape, MACs and
//! BMC addresses, a testing run's results). Never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rackbox::service::fuzz_agent_report(data);
});
