//! The machine life cycle in one place: the actions, the table of allowed transitions, and the one
//! function ([`apply`]) that applies an action to a machine. Everything that changes a machine's
//! status goes through [`apply`]; it is pure (no I/O), so the whole table is tested without a store.

use serde::{Deserialize, Serialize};

use super::machine::{DeployTarget, EraseMode, Machine};
use super::status::Status;

/// What someone (a user, the machine's agent, a BMC, the reconciler) wants to happen to a machine.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Boot the commissioning environment and take a hardware inventory.
    Commission {
        /// Go on to Testing once commissioning is done; false (straight to Ready) when absent.
        #[serde(default)]
        run_tests: bool,
    },
    /// Boot the ephemeral environment and run hardware tests.
    Test,
    /// Give a Ready machine to a user.
    Allocate {
        /// Username of the user the machine is given to.
        owner: String,
    },
    /// Write an OS image to the machine's disk.
    Deploy(DeployTarget),
    /// Take the machine back from its owner, wiping its disks as asked.
    Release {
        /// How to wipe the disks first; none (Releasing, no Disk erasing) when absent.
        #[serde(default)]
        erase: EraseMode,
    },
    /// Stop an in-progress action.
    Abort,
    /// Take the machine out of service (Broken) until an admin marks it fixed.
    MarkBroken {
        /// Why, kept as the status message; "marked broken" when empty or absent.
        #[serde(default)]
        reason: String,
    },
    /// Return a Broken machine to service: Ready if it was ever commissioned, else New.
    MarkFixed,
    /// Accept a machine whose tests failed as Ready (MAAS's override-failed-testing).
    OverrideFailedTesting,
    /// Network-boot the rescue environment so the owner can SSH in (Entering rescue mode).
    RescueMode,
    /// Leave rescue mode: power off and go back to the status before it.
    ExitRescueMode,
    /// Refuse every user action on a Deployed or Deploying machine until unlocked.
    Lock,
    /// Allow actions on a locked machine again.
    Unlock,
    /// The machine finished the work of its in-progress status (reported by the agent, the
    /// deployed OS or a power driver).
    Complete {
        /// What the reporter said, kept as the status message; `"<status> complete"` when empty.
        #[serde(default)]
        message: String,
    },
    /// The work of the in-progress status failed.
    Fail {
        /// Why it failed, kept as the status message.
        reason: String,
    },
    /// The in-progress status ran past its deadline (the reconciler).
    TimeOut,
}

/// The name of an action, without its parameters: the key of the transition table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Key of [`Action::Commission`].
    Commission,
    /// Key of [`Action::Test`].
    Test,
    /// Key of [`Action::Allocate`].
    Allocate,
    /// Key of [`Action::Deploy`].
    Deploy,
    /// Key of [`Action::Release`].
    Release,
    /// Key of [`Action::Abort`].
    Abort,
    /// Key of [`Action::MarkBroken`].
    MarkBroken,
    /// Key of [`Action::MarkFixed`].
    MarkFixed,
    /// Key of [`Action::OverrideFailedTesting`].
    OverrideFailedTesting,
    /// Key of [`Action::RescueMode`].
    RescueMode,
    /// Key of [`Action::ExitRescueMode`].
    ExitRescueMode,
    /// Key of [`Action::Lock`].
    Lock,
    /// Key of [`Action::Unlock`].
    Unlock,
    /// Key of [`Action::Complete`] (internal: reported, never requested).
    Complete,
    /// Key of [`Action::Fail`] (internal: reported, never requested).
    Fail,
    /// Key of [`Action::TimeOut`] (internal: the reconciler's).
    TimeOut,
}

impl ActionKind {
    /// Every action kind, in the order of [`Action`]'s variants.
    pub const ALL: [ActionKind; 16] = [
        ActionKind::Commission,
        ActionKind::Test,
        ActionKind::Allocate,
        ActionKind::Deploy,
        ActionKind::Release,
        ActionKind::Abort,
        ActionKind::MarkBroken,
        ActionKind::MarkFixed,
        ActionKind::OverrideFailedTesting,
        ActionKind::RescueMode,
        ActionKind::ExitRescueMode,
        ActionKind::Lock,
        ActionKind::Unlock,
        ActionKind::Complete,
        ActionKind::Fail,
        ActionKind::TimeOut,
    ];

    /// The action's name in the API, the CLI and the event log (`mark_broken`, `time_out`).
    pub fn name(self) -> &'static str {
        match self {
            ActionKind::Commission => "commission",
            ActionKind::Test => "test",
            ActionKind::Allocate => "allocate",
            ActionKind::Deploy => "deploy",
            ActionKind::Release => "release",
            ActionKind::Abort => "abort",
            ActionKind::MarkBroken => "mark_broken",
            ActionKind::MarkFixed => "mark_fixed",
            ActionKind::OverrideFailedTesting => "override_failed_testing",
            ActionKind::RescueMode => "rescue_mode",
            ActionKind::ExitRescueMode => "exit_rescue_mode",
            ActionKind::Lock => "lock",
            ActionKind::Unlock => "unlock",
            ActionKind::Complete => "complete",
            ActionKind::Fail => "fail",
            ActionKind::TimeOut => "time_out",
        }
    }

    /// Reads an action's name as [`ActionKind::name`] writes it; dashes may stand for underscores.
    pub fn parse(name: &str) -> Option<ActionKind> {
        let n = name.trim().replace('-', "_");
        ActionKind::ALL.into_iter().find(|k| k.name() == n)
    }

    /// Reported by the machine, a driver or the reconciler; never requested through the API.
    pub fn is_internal(self) -> bool {
        matches!(
            self,
            ActionKind::Complete | ActionKind::Fail | ActionKind::TimeOut
        )
    }
}

impl Action {
    /// The action without its parameters, to look up in [`TRANSITIONS`].
    pub fn kind(&self) -> ActionKind {
        match self {
            Action::Commission { .. } => ActionKind::Commission,
            Action::Test => ActionKind::Test,
            Action::Allocate { .. } => ActionKind::Allocate,
            Action::Deploy(_) => ActionKind::Deploy,
            Action::Release { .. } => ActionKind::Release,
            Action::Abort => ActionKind::Abort,
            Action::MarkBroken { .. } => ActionKind::MarkBroken,
            Action::MarkFixed => ActionKind::MarkFixed,
            Action::OverrideFailedTesting => ActionKind::OverrideFailedTesting,
            Action::RescueMode => ActionKind::RescueMode,
            Action::ExitRescueMode => ActionKind::ExitRescueMode,
            Action::Lock => ActionKind::Lock,
            Action::Unlock => ActionKind::Unlock,
            Action::Complete { .. } => ActionKind::Complete,
            Action::Fail { .. } => ActionKind::Fail,
            Action::TimeOut => ActionKind::TimeOut,
        }
    }
}

/// Where an allowed action takes the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// This status.
    To(Status),
    /// Back to `previous_status` (abort, exit rescue, tests done).
    Previous,
    /// The failed status of the current in-progress status.
    Failure,
    /// Release: Disk erasing when the disks are to be wiped, else Releasing.
    ReleaseByErase,
    /// Commissioning done: Testing when tests were asked for, else Ready.
    AfterCommissioning,
    /// Mark fixed: Ready when the machine was commissioned, else New.
    Fixed,
    /// A flag changes (lock, unlock); the status stays.
    Same,
}

use Status as S;

/// Statuses in which a machine may be marked broken (MAAS allows it from nearly everywhere).
const BREAKABLE: &[Status] = &[
    S::New,
    S::Commissioning,
    S::FailedCommissioning,
    S::Missing,
    S::Ready,
    S::Reserved,
    S::Allocated,
    S::Deploying,
    S::Deployed,
    S::FailedDeployment,
    S::Releasing,
    S::FailedReleasing,
    S::DiskErasing,
    S::FailedDiskErasing,
    S::Testing,
    S::FailedTesting,
];

/// Every in-progress status: the machine finishes, fails or times out from these.
const IN_PROGRESS: &[Status] = &[
    S::Commissioning,
    S::Deploying,
    S::Releasing,
    S::DiskErasing,
    S::EnteringRescueMode,
    S::ExitingRescueMode,
    S::Testing,
];

/// THE transition table: (action, statuses it is allowed from, where it goes).
/// A (status, action) pair not listed here is refused with the machine's current status.
pub(crate) const TRANSITIONS: &[(ActionKind, &[Status], Next)] = &[
    (
        ActionKind::Commission,
        &[
            S::New,
            S::Ready,
            S::FailedCommissioning,
            S::FailedTesting,
            S::Broken,
            S::Missing,
        ],
        Next::To(S::Commissioning),
    ),
    (
        ActionKind::Test,
        &[
            S::New,
            S::Ready,
            S::Broken,
            S::FailedTesting,
            S::FailedCommissioning,
            S::Deployed,
        ],
        Next::To(S::Testing),
    ),
    (ActionKind::Allocate, &[S::Ready], Next::To(S::Allocated)),
    (
        ActionKind::Deploy,
        &[S::Ready, S::Allocated, S::FailedDeployment],
        Next::To(S::Deploying),
    ),
    (
        ActionKind::Release,
        &[
            S::Allocated,
            S::Deployed,
            S::FailedDeployment,
            S::FailedReleasing,
            S::FailedDiskErasing,
            S::Reserved,
        ],
        Next::ReleaseByErase,
    ),
    (
        ActionKind::Abort,
        &[S::Commissioning, S::Testing, S::EnteringRescueMode],
        Next::Previous,
    ),
    (ActionKind::Abort, &[S::Deploying], Next::To(S::Allocated)),
    (
        ActionKind::Abort,
        &[S::DiskErasing, S::Releasing],
        Next::Failure,
    ),
    (ActionKind::MarkBroken, BREAKABLE, Next::To(S::Broken)),
    (ActionKind::MarkFixed, &[S::Broken], Next::Fixed),
    (
        ActionKind::OverrideFailedTesting,
        &[S::FailedTesting],
        Next::Previous,
    ),
    (
        ActionKind::RescueMode,
        &[
            S::Ready,
            S::Deployed,
            S::Broken,
            S::Allocated,
            S::FailedDeployment,
        ],
        Next::To(S::EnteringRescueMode),
    ),
    (
        ActionKind::ExitRescueMode,
        &[
            S::RescueMode,
            S::FailedEnteringRescueMode,
            S::FailedExitingRescueMode,
        ],
        Next::To(S::ExitingRescueMode),
    ),
    (ActionKind::Lock, &[S::Deployed, S::Deploying], Next::Same),
    (ActionKind::Unlock, &Status::ALL, Next::Same),
    (
        ActionKind::Complete,
        &[S::Commissioning],
        Next::AfterCommissioning,
    ),
    (
        ActionKind::Complete,
        &[S::Testing, S::ExitingRescueMode],
        Next::Previous,
    ),
    (ActionKind::Complete, &[S::Deploying], Next::To(S::Deployed)),
    (
        ActionKind::Complete,
        &[S::Releasing, S::DiskErasing],
        Next::To(S::Ready),
    ),
    (
        ActionKind::Complete,
        &[S::EnteringRescueMode],
        Next::To(S::RescueMode),
    ),
    (ActionKind::Fail, IN_PROGRESS, Next::Failure),
    (ActionKind::TimeOut, IN_PROGRESS, Next::Failure),
];

/// Looks up the table.
pub fn rule(status: Status, kind: ActionKind) -> Option<Next> {
    TRANSITIONS
        .iter()
        .find(|(k, from, _)| *k == kind && from.contains(&status))
        .map(|(_, _, next)| *next)
}

/// Deploying has two stages, which only the agent's reports move between: writing the image
/// (`deploy_written` false: a network boot gets the ephemeral environment and the deploy task),
/// then waiting for the deployed OS (`deploy_written` true: a network boot goes to the local
/// disk, and only the deployed OS's `/deployed` report completes the deploy). The agent's
/// `complete` in the first stage moves to the second ([`record_image_written`]); any new status
/// starts again from the first (see [`apply`]).
///
/// Records that the agent wrote the image: the second stage of Deploying. Refused when the
/// machine is no longer Deploying.
pub(crate) fn record_image_written(m: &mut Machine, said: &str) -> Result<(), TransitionError> {
    if m.status != S::Deploying {
        return Err(TransitionError::NotAllowed {
            system_id: m.system_id.clone(),
            action: "complete",
            status: m.status,
        });
    }
    m.deploy_written = true;
    m.status_message = if said.is_empty() {
        "image written; waiting for the deployed OS to boot and report in".into()
    } else {
        format!("{said}; waiting for the deployed OS to boot and report in")
    };
    Ok(())
}

/// What an agent's `complete` report does to the machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Completion {
    /// A test failed: the run fails with this reason, whatever the agent concluded.
    Fail(String),
    /// Deploying, image not yet written: the second stage of Deploying
    /// ([`record_image_written`]); Deployed only once the deployed OS reports in.
    ImageWritten,
    /// Nothing: the machine already is where the report would take it (a repeated report whose
    /// answer the agent lost; an agent that started again in Rescue mode after a reboot has its
    /// SSH server up again).
    AlreadyThere,
    /// The work is done: `complete` by the table.
    Complete,
}

/// What an agent's `complete` report means for `m` (`test_failure` is a testing run's failed
/// tests, in words).
pub(crate) fn agent_completion(m: &Machine, test_failure: Option<String>) -> Completion {
    if let Some(reason) = test_failure {
        return Completion::Fail(reason);
    }
    match m.status {
        S::Deploying if m.deploy_written => Completion::AlreadyThere,
        S::Deploying => Completion::ImageWritten,
        S::RescueMode => Completion::AlreadyThere,
        _ => Completion::Complete,
    }
}

/// What a power-off the conductor carried out completes, with the message of that `complete`:
/// Releasing (without erase) and Exiting rescue mode need nothing more than the machine being
/// off. Other statuses wait for their own reports.
pub(crate) fn completed_by_power_off(status: Status) -> Option<&'static str> {
    match status {
        S::Releasing => Some("released; powered off"),
        S::ExitingRescueMode => Some("left rescue mode; powered off"),
        _ => None,
    }
}

/// The statuses whose work is done by the agent in the ephemeral environment: a network boot
/// in one of them is handed the environment with a fresh boot token (Deploying only until the
/// image is written: see [`boots_ephemeral`]).
pub(crate) const EPHEMERAL_WORK: &[Status] = &[
    S::Commissioning,
    S::Testing,
    S::Deploying,
    S::DiskErasing,
    S::EnteringRescueMode,
    S::RescueMode,
];

/// Whether the machine, as it is now, does its work in the ephemeral environment: what its
/// network boot is given, and what its agent may report progress about.
pub(crate) fn boots_ephemeral(m: &Machine) -> bool {
    EPHEMERAL_WORK.contains(&m.status) && !(m.status == S::Deploying && m.deploy_written)
}

/// Whether a boot handed out for `issued` still serves a machine that is now `now`: the same
/// status, or one that the agent's own `complete` leads to (by the table) and whose work is
/// done in the ephemeral environment too, so the same agent simply asks for its next task.
/// Commissioning goes on into Testing (tests after commissioning) and Entering rescue mode into
/// Rescue mode; every other move (to Ready, Deployed, a failed status, back to a previous
/// status, an abort, a release) ends the boot.
pub fn boot_continues(issued: Status, now: Status) -> bool {
    let mut reached = vec![issued];
    let mut i = 0;
    while let Some(&at) = reached.get(i) {
        i += 1;
        let next: &[Status] = match rule(at, ActionKind::Complete) {
            Some(Next::To(s)) => &[s],
            Some(Next::AfterCommissioning) => &[S::Testing, S::Ready],
            // Previous (tests, exiting rescue mode) goes back to where this boot was not.
            _ => &[],
        };
        for s in next {
            if EPHEMERAL_WORK.contains(s) && !reached.contains(s) {
                reached.push(*s);
            }
        }
    }
    reached.contains(&now)
}

/// A call the machine side makes with its boot token (`/api/agent/v1/...`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentCall {
    /// `GET /task`: what to do next.
    Task,
    /// `POST /inventory`: the hardware inventory (and the BMC found in-band).
    Inventory,
    /// `POST /progress`: a status message.
    Progress,
    /// `POST /complete`: the task is done.
    Complete,
    /// `POST /fail`: the task failed.
    Fail,
    /// `POST /deployed`: the deployed OS booted from its disk.
    Deployed,
}

impl AgentCall {
    /// Every agent call, in the order of its variants.
    pub const ALL: [AgentCall; 6] = [
        AgentCall::Task,
        AgentCall::Inventory,
        AgentCall::Progress,
        AgentCall::Complete,
        AgentCall::Fail,
        AgentCall::Deployed,
    ];

    /// The call's path without its slash (`task`, `deployed`), as logs and errors name it.
    pub fn name(self) -> &'static str {
        match self {
            AgentCall::Task => "task",
            AgentCall::Inventory => "inventory",
            AgentCall::Progress => "progress",
            AgentCall::Complete => "complete",
            AgentCall::Fail => "fail",
            AgentCall::Deployed => "deployed",
        }
    }
}

/// Whether the machine's current boot has not ended (see [`boot_continues`]).
pub fn boot_is_current(m: &Machine) -> bool {
    m.boot_session.as_ref().is_some_and(|b| !b.over)
}

/// THE rule for agent calls: whether `m`, as it is now, takes `call` from the agent of its
/// current boot. A boot that is over may only ask for its task (and is told to power off).
///
/// - task: always (the answer follows the status; outside the boot's work it is "power off");
/// - inventory: Commissioning, whose work it is;
/// - progress: while the work is in the ephemeral environment ([`boots_ephemeral`]);
/// - complete: there, where the table has a `complete`; and where the machine already is
///   where the report would take it (Deploying with the image written, Rescue mode), so that
///   an agent repeating a report whose answer it lost, or started again, is not refused;
/// - fail: there, where the table has a `fail`;
/// - deployed: Deploying once the image is written (the deployed OS's report).
pub fn agent_may(call: AgentCall, m: &Machine) -> bool {
    if !boot_is_current(m) {
        return call == AgentCall::Task;
    }
    let status = m.status;
    let in_ramdisk = boots_ephemeral(m);
    match call {
        AgentCall::Task => true,
        AgentCall::Inventory => status == S::Commissioning,
        AgentCall::Progress => in_ramdisk,
        AgentCall::Complete => {
            (in_ramdisk && rule(status, ActionKind::Complete).is_some())
                || (status == S::Deploying && m.deploy_written)
                || status == S::RescueMode
        }
        AgentCall::Fail => in_ramdisk && rule(status, ActionKind::Fail).is_some(),
        AgentCall::Deployed => status == S::Deploying && m.deploy_written,
    }
}

/// Why an action was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TransitionError {
    /// The action is not allowed in the machine's current status.
    #[error("cannot {action} machine {system_id}: it is {status}")]
    NotAllowed {
        /// The machine that refused.
        system_id: String,
        /// The action refused, by its [`ActionKind::name`].
        action: &'static str,
        /// The machine's status, which does not take the action.
        status: Status,
    },
    /// The machine is locked.
    #[error("cannot {action} machine {system_id}: it is locked (unlock it first)")]
    Locked {
        /// The machine that refused.
        system_id: String,
        /// The action refused, by its [`ActionKind::name`].
        action: &'static str,
        /// The machine's status.
        status: Status,
    },
    /// The machine is already in the asked-for state (lock twice, unlock an unlocked machine).
    #[error("machine {system_id} is already {what}")]
    AlreadyDone {
        /// The machine that refused.
        system_id: String,
        /// What it already is ("locked", "unlocked").
        what: &'static str,
        /// The machine's status.
        status: Status,
    },
    /// The request is not right for the action (deploy without an owner, allocate with none).
    #[error("invalid {action} request: {message}")]
    Invalid {
        /// The action refused, by its [`ActionKind::name`].
        action: &'static str,
        /// What is wrong with the request.
        message: String,
        /// The machine's status.
        status: Status,
    },
}

impl TransitionError {
    /// The machine's status at the time of the refusal (the API answers 409 with it).
    pub fn status(&self) -> Status {
        match self {
            TransitionError::NotAllowed { status, .. }
            | TransitionError::Locked { status, .. }
            | TransitionError::AlreadyDone { status, .. }
            | TransitionError::Invalid { status, .. } => *status,
        }
    }
}

/// Work the world must do after a transition is committed. The service hands effects to the
/// conductor (power drivers, the agent); the life cycle never does I/O itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// Switch the machine on (or cycle it) with a one-time network boot: it must boot rackbox's
    /// ephemeral environment.
    PowerOnNetboot,
    /// Switch the machine off.
    PowerOff,
}

/// An effect the conductor owes a machine, recorded on it by the transition that asked for it.
/// The conductor carries out a machine's owed effects one at a time, in order, and settles each
/// by the generation it was owed at: a newer transition's effect replaces an older one that has
/// not started, and is carried out after one that has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OwedEffect {
    /// What to do.
    pub effect: Effect,
    /// The machine's generation right after the transition that asked for it.
    pub generation: u64,
}

/// The outcome of a successful [`apply`]: the machine as it must be stored, and what must follow.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    /// The machine as it must be stored: new status, message, owner and deadline, generation
    /// bumped.
    pub machine: Machine,
    /// The status before the action.
    pub from: Status,
    /// The status after the action (the same for lock and unlock).
    pub to: Status,
    /// The new status message, also recorded with the event.
    pub message: String,
    /// What the conductor must do once the transition is stored, in order.
    pub effects: Vec<Effect>,
}

/// How long each in-progress status may last before it times out, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadlines {
    /// How long Commissioning may last (30 minutes by default).
    pub commissioning_ms: u64,
    /// How long Testing may last (60 minutes by default).
    pub testing_ms: u64,
    /// How long Deploying may last, writing the image and the first boot together (40 minutes by
    /// default).
    pub deploying_ms: u64,
    /// How long Releasing may last, waiting for power-off (10 minutes by default).
    pub releasing_ms: u64,
    /// How long Disk erasing may last (24 hours by default: a full erase of big disks is slow).
    pub disk_erasing_ms: u64,
    /// How long Entering and Exiting rescue mode may last (20 minutes by default).
    pub rescue_ms: u64,
}

impl Default for Deadlines {
    fn default() -> Self {
        const MIN: u64 = 60_000;
        Deadlines {
            commissioning_ms: 30 * MIN,
            testing_ms: 60 * MIN,
            deploying_ms: 40 * MIN,
            releasing_ms: 10 * MIN,
            disk_erasing_ms: 24 * 60 * MIN,
            rescue_ms: 20 * MIN,
        }
    }
}

impl Deadlines {
    fn for_status(&self, status: Status) -> Option<u64> {
        Some(match status {
            S::Commissioning => self.commissioning_ms,
            S::Testing => self.testing_ms,
            S::Deploying => self.deploying_ms,
            S::Releasing => self.releasing_ms,
            S::DiskErasing => self.disk_erasing_ms,
            S::EnteringRescueMode | S::ExitingRescueMode => self.rescue_ms,
            _ => return None,
        })
    }
}

/// Applies `action` to `machine`: checks the table, moves the status, sets the message, owner,
/// deploy target and deadline, bumps the generation. Pure: the caller stores the result.
pub fn apply(
    machine: &Machine,
    action: &Action,
    now_ms: u64,
    deadlines: &Deadlines,
) -> Result<Transition, TransitionError> {
    let kind = action.kind();
    let from = machine.status;
    let refuse = || TransitionError::NotAllowed {
        system_id: machine.system_id.clone(),
        action: kind.name(),
        status: from,
    };
    let next = rule(from, kind).ok_or_else(refuse)?;

    // A locked machine takes only unlock, and reports from its own work.
    if machine.locked
        && !matches!(kind, ActionKind::Unlock | ActionKind::Lock)
        && !kind.is_internal()
    {
        return Err(TransitionError::Locked {
            system_id: machine.system_id.clone(),
            action: kind.name(),
            status: from,
        });
    }

    let mut m = machine.clone();
    let to = match next {
        Next::To(s) => s,
        // A test run that passes clears an earlier Failed testing: the machine is Ready.
        Next::Previous => match machine.previous_status.unwrap_or(S::Ready) {
            S::FailedTesting if kind == ActionKind::Complete && from == S::Testing => S::Ready,
            previous => previous,
        },
        Next::Failure => from.failure().ok_or_else(refuse)?,
        Next::ReleaseByErase => match action {
            Action::Release { erase } if *erase != EraseMode::None => S::DiskErasing,
            _ => S::Releasing,
        },
        Next::AfterCommissioning => {
            if machine.test_after_commission {
                S::Testing
            } else {
                S::Ready
            }
        }
        Next::Fixed => {
            if machine.commissioned {
                S::Ready
            } else {
                S::New
            }
        }
        Next::Same => from,
    };

    let mut effects = Vec::new();
    let message: String;
    match action {
        Action::Commission { run_tests } => {
            m.previous_status = Some(from);
            m.test_after_commission = *run_tests;
            effects.push(Effect::PowerOnNetboot);
            message =
                "waiting for the machine to network-boot the commissioning environment".into();
        }
        Action::Test => {
            m.previous_status = Some(from);
            effects.push(Effect::PowerOnNetboot);
            message = "waiting for the machine to network-boot the testing environment".into();
        }
        Action::Allocate { owner } => {
            if owner.is_empty() {
                return Err(TransitionError::Invalid {
                    action: kind.name(),
                    message: "an allocation needs an owner".into(),
                    status: from,
                });
            }
            m.owner = Some(owner.clone());
            message = format!("allocated to {owner}");
        }
        Action::Deploy(target) => {
            if m.owner.is_none() {
                return Err(TransitionError::Invalid {
                    action: kind.name(),
                    message: "the machine has no owner; allocate it first".into(),
                    status: from,
                });
            }
            m.deploy = Some(target.clone());
            effects.push(Effect::PowerOnNetboot);
            let image = if target.image.is_empty() {
                "the default image".to_string()
            } else {
                format!("image {}", target.image)
            };
            message = format!("waiting for the machine to network-boot and write {image}");
        }
        Action::Release { erase } => {
            m.erase = Some(*erase);
            m.owner_data.clear();
            if to == S::DiskErasing {
                effects.push(Effect::PowerOnNetboot);
                message = format!(
                    "waiting for the machine to network-boot and erase its disks ({} erase)",
                    match erase {
                        EraseMode::Quick => "quick",
                        EraseMode::Full => "full",
                        EraseMode::Secure => "secure",
                        EraseMode::None => "no",
                    }
                );
            } else {
                effects.push(Effect::PowerOff);
                message = "waiting for the machine to power off".into();
            }
        }
        Action::Abort => {
            effects.push(Effect::PowerOff);
            message = format!("{} aborted", from.name().to_lowercase());
        }
        Action::MarkBroken { reason } => {
            m.previous_status = Some(from);
            message = if reason.is_empty() {
                "marked broken".into()
            } else {
                reason.clone()
            };
        }
        Action::MarkFixed => message = "marked fixed".into(),
        Action::OverrideFailedTesting => message = "failed testing overridden".into(),
        Action::RescueMode => {
            m.previous_status = Some(from);
            effects.push(Effect::PowerOnNetboot);
            message = "waiting for the machine to network-boot the rescue environment".into();
        }
        Action::ExitRescueMode => {
            effects.push(Effect::PowerOff);
            message = "waiting for the machine to leave rescue mode".into();
        }
        Action::Lock => {
            if m.locked {
                return Err(TransitionError::AlreadyDone {
                    system_id: m.system_id.clone(),
                    what: "locked",
                    status: from,
                });
            }
            m.locked = true;
            message = "locked".into();
        }
        Action::Unlock => {
            if !m.locked {
                return Err(TransitionError::AlreadyDone {
                    system_id: m.system_id.clone(),
                    what: "unlocked",
                    status: from,
                });
            }
            m.locked = false;
            message = "unlocked".into();
        }
        Action::Complete { message: said } => {
            let said = if said.is_empty() {
                format!("{} complete", from.name().to_lowercase())
            } else {
                said.clone()
            };
            if from == S::Commissioning {
                m.commissioned = true;
            }
            // A Deployed machine leaves rescue mode off; switch it back on (its network boot
            // gets the local-disk script), as MAAS starts the deployed OS again.
            message = if from == S::ExitingRescueMode && to == S::Deployed {
                effects.push(Effect::PowerOnNetboot);
                format!("{said}; starting the deployed OS")
            } else {
                said
            };
        }
        Action::Fail { reason } => message = reason.clone(),
        Action::TimeOut => {
            message = format!(
                "timed out: {} did not finish in time",
                from.name().to_lowercase()
            )
        }
    }

    // Leaving the pool forgets the owner and what was deployed.
    if matches!(to, S::Ready | S::New) && from != to {
        m.owner = None;
        m.deploy = None;
        m.erase = None;
        m.owner_data.clear();
    }
    // Back where it came from: forget where that was. Entering rescue mode completes into
    // Rescue mode, which still has to go back there when it is left.
    if matches!(kind, ActionKind::Complete | ActionKind::Abort)
        && matches!(
            from,
            S::Testing | S::Commissioning | S::EnteringRescueMode | S::ExitingRescueMode
        )
        && !matches!(to, S::Testing | S::RescueMode)
    {
        m.previous_status = None;
    }
    if to == S::Testing && from == S::Commissioning {
        // Tests after commissioning return to Ready.
        m.previous_status = Some(S::Ready);
        m.test_after_commission = false;
    }

    if to != from {
        // A new phase starts: the image of the last deploy is no longer "written".
        m.deploy_written = false;
        // The boot is over unless its own agent goes on with the new status's work (see
        // boot_continues). Its token stays, so that an agent that has finished still hears
        // "power off"; but it reads no task and makes no report any more, even if the machine
        // comes back to the status it was issued for.
        if let Some(boot) = &mut m.boot_session
            && !boot_continues(boot.issued_for, to)
        {
            boot.over = true;
        }
    }
    m.status = to;
    m.status_message = message.clone();
    m.status_deadline_ms = deadlines.for_status(to).map(|d| now_ms.saturating_add(d));
    m.generation += 1;
    // The conductor owes the machine this transition's effect. A new status that asks for none
    // no longer wants an older one that has not been carried out (a power-on for commissioning
    // that timed out); a flag (lock, unlock) leaves it owed.
    match effects.last() {
        Some(effect) => {
            m.owed_effect = Some(OwedEffect {
                effect: *effect,
                generation: m.generation,
            })
        }
        None if to != from => m.owed_effect = None,
        None => {}
    }
    m.updated_ms = now_ms;
    Ok(Transition {
        machine: m,
        from,
        to,
        message,
        effects,
    })
}
