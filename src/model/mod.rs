//! The data of rackbox and the rules over it, with no I/O: machines, their statuses and life cycle,
//! allocation constraints, users and tokens, zones/pools/tags, the files users store, and the
//! messages of the agent protocol with the hardware inventory it carries (one set of types for both
//! ends of the wire). Every other room uses this one; it uses none of them.

#![warn(missing_docs)]

pub mod agent_wire;
pub mod api;
pub mod catalog;
pub mod constraints;
pub mod device;
pub mod error;
pub mod file;
pub mod ids;
pub mod inventory;
pub mod iprange;
pub mod lease;
pub mod lifecycle;
pub mod machine;
pub mod network;
pub mod schema;
pub mod settings;
pub mod setup;
pub mod status;
pub mod testing;
pub mod timeline;
pub mod units;
pub mod user;

pub use constraints::Constraints;
pub use error::ErrorKind;
pub use inventory::Inventory;
pub use lifecycle::{Action, ActionKind, Effect, Transition, TransitionError};
pub use machine::{
    BootSession, DeployTarget, DiscoveredBmc, Disk, ENLIST_KEY_HEADER, EraseMode, Event, Interface,
    Machine, PowerSettings, PowerState, PowerStatus, PowerType, TaskProgress,
};
pub use status::Status;
pub use testing::{TestResult, TestResults, TestRun, TestStatus};
pub use user::{Role, SshKey, Token, User};
