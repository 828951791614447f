//! Machine statuses, numbered and named exactly as MAAS numbers and names them, so the MAAS 2.0 face
//! is a pure translation and MAAS clients (Juju, Terraform, python-libmaas) read them unchanged.

use serde::{Deserialize, Serialize};

/// What a machine *is* right now. An action says what is wanted; the life cycle table
/// (see [`crate::model::lifecycle`]) says which status it moves to.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Known but never commissioned (added by hand or enlisted): waiting for an admin to
    /// commission it.
    New,
    /// Booting the commissioning environment, or its agent is taking the hardware inventory.
    Commissioning,
    /// Commissioning failed or timed out; may be commissioned again or marked broken.
    FailedCommissioning,
    /// MAAS's status for a machine its controller lost; rackbox never moves a machine here.
    Missing,
    /// Commissioned and in the pool, waiting to be allocated or deployed.
    Ready,
    /// MAAS's status for a machine held back from allocation; rackbox never moves a machine here,
    /// only releases one.
    Reserved,
    /// Running the OS written to its disk, which reported that it booted; the owner's until
    /// released.
    Deployed,
    /// MAAS's status for a machine taken out of service; rackbox never moves a machine here.
    Retired,
    /// Taken out of service by hand (mark broken) until an admin marks it fixed.
    Broken,
    /// Network-booted to write its image, then rebooting into the new OS until it reports that it
    /// booted.
    Deploying,
    /// Given to an owner, waiting to be deployed or released.
    Allocated,
    /// Deploying failed or timed out; still the owner's: deploy again or release.
    FailedDeployment,
    /// Released without an erase: waiting for the machine to be powered off before it is Ready.
    Releasing,
    /// Powering off or erasing failed on release; release again.
    FailedReleasing,
    /// Released with an erase: its agent is wiping the disks before the machine is Ready.
    DiskErasing,
    /// Wiping the disks failed or timed out; release again.
    FailedDiskErasing,
    /// Booted into the rescue environment; its owner may SSH in until rescue mode is exited.
    RescueMode,
    /// Waiting for the machine to network-boot the rescue environment.
    EnteringRescueMode,
    /// The rescue environment did not come up in time or failed; exit rescue mode to go back.
    FailedEnteringRescueMode,
    /// Powering the machine off to leave rescue mode; it goes back to its status before rescue.
    ExitingRescueMode,
    /// Leaving rescue mode failed or timed out; exit rescue mode again.
    FailedExitingRescueMode,
    /// Booted into the testing environment, running hardware tests.
    Testing,
    /// A hardware test failed or testing timed out; test again, commission again, or override.
    FailedTesting,
}

impl Status {
    /// Every status, in MAAS's numeric order.
    pub const ALL: [Status; 23] = [
        Status::New,
        Status::Commissioning,
        Status::FailedCommissioning,
        Status::Missing,
        Status::Ready,
        Status::Reserved,
        Status::Deployed,
        Status::Retired,
        Status::Broken,
        Status::Deploying,
        Status::Allocated,
        Status::FailedDeployment,
        Status::Releasing,
        Status::FailedReleasing,
        Status::DiskErasing,
        Status::FailedDiskErasing,
        Status::RescueMode,
        Status::EnteringRescueMode,
        Status::FailedEnteringRescueMode,
        Status::ExitingRescueMode,
        Status::FailedExitingRescueMode,
        Status::Testing,
        Status::FailedTesting,
    ];

    /// MAAS's number for the status (the `status` field of MAAS's machine JSON).
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The status with MAAS's number `code`; None for a number MAAS does not use.
    pub fn from_code(code: u8) -> Option<Status> {
        Status::ALL.get(usize::from(code)).copied()
    }

    /// MAAS's display name (the `status_name` field).
    pub fn name(self) -> &'static str {
        match self {
            Status::New => "New",
            Status::Commissioning => "Commissioning",
            Status::FailedCommissioning => "Failed commissioning",
            Status::Missing => "Missing",
            Status::Ready => "Ready",
            Status::Reserved => "Reserved",
            Status::Deployed => "Deployed",
            Status::Retired => "Retired",
            Status::Broken => "Broken",
            Status::Deploying => "Deploying",
            Status::Allocated => "Allocated",
            Status::FailedDeployment => "Failed deployment",
            Status::Releasing => "Releasing",
            Status::FailedReleasing => "Releasing failed",
            Status::DiskErasing => "Disk erasing",
            Status::FailedDiskErasing => "Failed disk erasing",
            Status::RescueMode => "Rescue mode",
            Status::EnteringRescueMode => "Entering rescue mode",
            Status::FailedEnteringRescueMode => "Failed to enter rescue mode",
            Status::ExitingRescueMode => "Exiting rescue mode",
            Status::FailedExitingRescueMode => "Failed to exit rescue mode",
            Status::Testing => "Testing",
            Status::FailedTesting => "Failed testing",
        }
    }

    /// The snake_case key used in the native API and the CLI (`deploying`, `failed_commissioning`).
    pub fn key(self) -> &'static str {
        match self {
            Status::New => "new",
            Status::Commissioning => "commissioning",
            Status::FailedCommissioning => "failed_commissioning",
            Status::Missing => "missing",
            Status::Ready => "ready",
            Status::Reserved => "reserved",
            Status::Deployed => "deployed",
            Status::Retired => "retired",
            Status::Broken => "broken",
            Status::Deploying => "deploying",
            Status::Allocated => "allocated",
            Status::FailedDeployment => "failed_deployment",
            Status::Releasing => "releasing",
            Status::FailedReleasing => "failed_releasing",
            Status::DiskErasing => "disk_erasing",
            Status::FailedDiskErasing => "failed_disk_erasing",
            Status::RescueMode => "rescue_mode",
            Status::EnteringRescueMode => "entering_rescue_mode",
            Status::FailedEnteringRescueMode => "failed_entering_rescue_mode",
            Status::ExitingRescueMode => "exiting_rescue_mode",
            Status::FailedExitingRescueMode => "failed_exiting_rescue_mode",
            Status::Testing => "testing",
            Status::FailedTesting => "failed_testing",
        }
    }

    /// Parses a key (`deploying`), a MAAS name (`Failed deployment`) or a MAAS number (`11`).
    pub fn parse(text: &str) -> Option<Status> {
        let t = text.trim();
        if let Ok(n) = t.parse::<u8>() {
            return Status::from_code(n);
        }
        Status::ALL
            .into_iter()
            .find(|s| s.key().eq_ignore_ascii_case(t) || s.name().eq_ignore_ascii_case(t))
    }

    /// Work is under way and the machine waits on something outside rackbox (firmware, the agent,
    /// a BMC); such a status has a timeout to its failed status.
    pub fn is_in_progress(self) -> bool {
        matches!(
            self,
            Status::Commissioning
                | Status::Deploying
                | Status::Releasing
                | Status::DiskErasing
                | Status::EnteringRescueMode
                | Status::ExitingRescueMode
                | Status::Testing
        )
    }

    /// The failed status an in-progress status falls to when its work fails or times out.
    pub fn failure(self) -> Option<Status> {
        Some(match self {
            Status::Commissioning => Status::FailedCommissioning,
            Status::Deploying => Status::FailedDeployment,
            Status::Releasing => Status::FailedReleasing,
            Status::DiskErasing => Status::FailedDiskErasing,
            Status::EnteringRescueMode => Status::FailedEnteringRescueMode,
            Status::ExitingRescueMode => Status::FailedExitingRescueMode,
            Status::Testing => Status::FailedTesting,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_names_match_maas() {
        assert_eq!(Status::New.code(), 0);
        assert_eq!(Status::Ready.code(), 4);
        assert_eq!(Status::Deployed.code(), 6);
        assert_eq!(Status::Deploying.code(), 9);
        assert_eq!(Status::Allocated.code(), 10);
        assert_eq!(Status::FailedReleasing.name(), "Releasing failed");
        assert_eq!(Status::DiskErasing.code(), 14);
        assert_eq!(Status::Testing.code(), 21);
        assert_eq!(Status::FailedTesting.code(), 22);
        for (i, s) in Status::ALL.iter().enumerate() {
            assert_eq!(usize::from(s.code()), i);
            assert_eq!(Status::parse(s.key()), Some(*s));
            assert_eq!(Status::parse(s.name()), Some(*s));
        }
        assert_eq!(Status::from_code(23), None);
    }
}
