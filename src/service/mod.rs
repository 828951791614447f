//! The service: the only code that changes state. Every API face (native, MAAS, the agent) calls
//! these methods; each one checks who asks, applies the rule from `model`, and commits through the
//! store's writer. After a commit it updates the in-memory machine index (lists and allocation
//! read it without touching the disk) and hands the transition's effects to the conductor.

#![warn(missing_docs)]

mod boot;
mod catalog;
mod conductor;
mod devices;
mod enlist;
mod files;
mod images;
mod ipranges;
mod login_guard;
mod machines;
mod network;
mod power_ops;
mod reconcile;
mod sessions;
mod settings;
mod setup;
mod timeline;
mod transition;
mod users;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

use tokio::sync::mpsc;

pub use boot::BootPlan;
#[doc(hidden)]
pub use boot::fuzz_agent_report;
pub use conductor::{CONDUCTOR_PASS, run_conductor};
pub use devices::{DeviceEdit, NewDevice};
pub use enlist::EnlistOptions;
pub use ipranges::{IpRangeEdit, NewIpRange};
pub use login_guard::LoginOptions;
pub use machines::{ActionRequest, MachineEdit, MachineFilter, NewMachine, Page, mask_power};
pub use network::LinkRequest;
pub use power_ops::PowerRequest;
pub use reconcile::{PowerSync, run_power_sync, run_reconciler};
pub use sessions::{NewSession, SESSION_LIFETIME, Session};
pub(crate) use users::constant_time_eq;
pub use users::{NewUser, TokenCreated, TokenKind, UserEdit};
pub use users::{TokenView, UserView};

use crate::images::ImageCache;
pub use crate::model::catalog::CatalogKind;
use crate::model::constraints::NoMatch;
pub use crate::model::file::StoredFile;
use crate::model::lifecycle::Deadlines;
use crate::model::{ErrorKind, Machine, Role, Status, TransitionError};
pub use crate::store::StoreState;
use crate::store::{Store, StoreError, Tx};

/// Who is asking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// Login name of the caller, or "rackbox" for the daemon itself.
    pub username: String,
    /// The caller's role, which decides what it may see and do.
    pub role: Role,
}

impl Principal {
    /// Whether the caller may do everything (an admin or the daemon).
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// The daemon itself (reconciler, power sync, agent reports).
    pub fn system() -> Principal {
        Principal {
            username: "rackbox".into(),
            role: Role::Admin,
        }
    }
}

/// Why the service refused or failed. Each maps to one HTTP status in the API faces.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// 401: no valid credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: the role or ownership does not allow it.
    #[error("{0}")]
    Forbidden(String),
    /// 404.
    #[error("{kind} {id} does not exist")]
    NotFound {
        /// What was looked for ("machine", "user", "zone").
        kind: &'static str,
        /// The id or name asked for.
        id: String,
    },
    /// 400: the request is malformed or a value is invalid.
    #[error("{0}")]
    Invalid(String),
    /// 409: the action is not allowed in the machine's current status.
    #[error(transparent)]
    Transition(#[from] TransitionError),
    /// 409: the caller's copy of the machine is out of date.
    #[error(
        "machine {system_id} has changed (generation {current}, request was for {given}); read it again"
    )]
    Stale {
        /// The machine asked for.
        system_id: String,
        /// The machine's generation now.
        current: u64,
        /// The generation the request named.
        given: u64,
        /// The machine's status now, so the caller can tell what changed.
        status: Status,
    },
    /// 409: a name or MAC is taken, or a thing is still in use.
    #[error("{0}")]
    Conflict(String),
    /// 409: the machine's agent made a call that its status (or its boot being over) does not
    /// take.
    #[error("{message}")]
    AgentCall {
        /// Which call was refused, and why.
        message: String,
        /// The machine's status now.
        status: Status,
    },
    /// 429: a source asked too often (enlistment); try again after `retry_after_secs`.
    #[error("{message}")]
    RateLimited {
        /// Who was limited, and the bound.
        message: String,
        /// Seconds until the source may ask again (the Retry-After header).
        retry_after_secs: u64,
    },
    /// 503: a bound on work done at once is reached (password hashing); try again after
    /// `retry_after_secs`.
    #[error("{message}")]
    Busy {
        /// Which bound is reached.
        message: String,
        /// Seconds after which to try again (the Retry-After header).
        retry_after_secs: u64,
    },
    /// 507: a bound on what anonymous callers may create is reached (New machines).
    #[error("{0}")]
    Full(String),
    /// 409: no machine matches the allocation constraints.
    #[error("no machine matches the constraints: {0}")]
    NoMatch(#[from] NoMatch),
    /// 502: the machine's BMC failed or could not be reached.
    #[error("power control failed: {0}")]
    PowerFailed(String),
    /// The store failed: shutting down, disk full, could not write (503/507) or a fault (500).
    /// The faces see its kind and message, never the store's own error type.
    #[error("{message}")]
    Store {
        /// What the caller is told.
        kind: ErrorKind,
        /// The store's message.
        message: String,
    },
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        ServiceError::Store {
            kind: e.kind(),
            message: e.to_string(),
        }
    }
}

impl From<crate::images::ImageError> for ServiceError {
    fn from(e: crate::images::ImageError) -> Self {
        use crate::images::ImageError;
        match e {
            ImageError::NotFound { kind, id } => ServiceError::NotFound { kind, id },
            ImageError::Conflict(message) => ServiceError::Conflict(message),
            ImageError::Store(e) => e.into(),
            e => match e.kind() {
                ErrorKind::Invalid => ServiceError::Invalid(e.to_string()),
                kind => ServiceError::Store {
                    kind,
                    message: e.to_string(),
                },
            },
        }
    }
}

impl ServiceError {
    /// What the caller is told: one HTTP status per kind, the same in the native and the MAAS
    /// face.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ServiceError::Unauthorized(_) => ErrorKind::Unauthorized,
            ServiceError::Forbidden(_) => ErrorKind::Forbidden,
            ServiceError::NotFound { .. } => ErrorKind::NotFound,
            ServiceError::Invalid(_) => ErrorKind::Invalid,
            ServiceError::Transition(_)
            | ServiceError::Stale { .. }
            | ServiceError::Conflict(_)
            | ServiceError::AgentCall { .. }
            | ServiceError::NoMatch(_) => ErrorKind::Conflict,
            ServiceError::RateLimited { .. } => ErrorKind::RateLimited,
            ServiceError::Busy { .. } => ErrorKind::Busy,
            ServiceError::Full(_) => ErrorKind::Full,
            ServiceError::PowerFailed(_) => ErrorKind::Upstream,
            ServiceError::Store { kind, .. } => *kind,
        }
    }

    /// A NotFound for the `kind` (e.g. "machine") named `id`.
    pub fn not_found(kind: &'static str, id: impl Into<String>) -> ServiceError {
        ServiceError::NotFound {
            kind,
            id: id.into(),
        }
    }
}

/// The conductor's queue: the ids of machines that may owe power work
/// ([`Machine::owed_effect`]). A wake carries no work: the conductor reads what is owed from the
/// machine itself, so a lost wake only delays the work until its periodic pass.
pub type ConductorWakes = mpsc::UnboundedReceiver<String>;

/// What a [`Service::modify_machine`] change writes.
pub(crate) enum Change {
    /// Nothing: the machine is left as it is.
    Skip,
    /// The changed machine, without an event (the conductor's own bookkeeping).
    Quiet,
    /// The changed machine and an event (action, message) in its history.
    Event(&'static str, String),
}

impl From<Option<(&'static str, String)>> for Change {
    fn from(event: Option<(&'static str, String)>) -> Change {
        match event {
            Some((action, message)) => Change::Event(action, message),
            None => Change::Skip,
        }
    }
}

/// The store's counters, for /metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreCounters {
    /// Transactions committed (one fsync each).
    pub commits: u64,
    /// Writes committed (several share a transaction).
    pub writes: u64,
}

/// The life-cycle service. Share it as `Arc<Service>`.
pub struct Service {
    store: Store,
    /// Every machine, newest generation, for lists and allocation without disk reads. The store
    /// stays the truth: writes re-read the record inside their write.
    index: RwLock<BTreeMap<String, Arc<Machine>>>,
    deadlines: Deadlines,
    /// The boot subnets as deployed machines' links use them (empty without a boot network); set
    /// once the daemon knows its boot network.
    subnets: std::sync::RwLock<Arc<Vec<crate::model::network::SubnetPlan>>>,
    /// Wakes the conductor for a machine that owes power work. Unbounded: wakes are few and
    /// small, and a commit must never wait on a slow BMC.
    wakes: mpsc::UnboundedSender<String>,
    /// The image cache (deploy tasks name its images; deleting one checks the deploys).
    images: Arc<ImageCache>,
    /// Whether unknown machines that network-boot are enlisted, and the bounds on it.
    enlist: enlist::EnlistOptions,
    /// Enlistments per source address (anonymous callers), by `enlist`'s burst and interval.
    enlist_rate: enlist::RateLimiter,
    /// One enlistment at a time: the checks that its MACs are unknown and that there is room
    /// for another New machine hold until the machine is stored.
    enlist_lock: tokio::sync::Mutex<()>,
    /// Password logins: bounded hashing and the failure counts per user and per source.
    login: login_guard::LoginGuard,
    /// Every committed change to a machine, for live views (the control page's stream). A
    /// receiver that falls behind is told it lagged and must read the machines again.
    changes: tokio::sync::broadcast::Sender<MachineChange>,
    /// Each interface's latest boots, as the protocols saw them (in memory only: a live
    /// diagnostic). A std mutex: every use is a short push or copy, never across an await.
    timelines: std::sync::Mutex<timeline::Timelines>,
    /// The id of a machine whose boot timeline got a step, for live views (as `changes`).
    timeline_changes: tokio::sync::broadcast::Sender<String>,
    /// Bumped after every change to the IP ranges added through the API: the DHCP servers
    /// watch it and take the new pools at once.
    ip_ranges_changed: tokio::sync::watch::Sender<u64>,
}

/// A machine changed (a commit of a newer generation) or was deleted: the one fact a live view
/// needs to re-render what it shows of that machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MachineChange {
    /// The machine.
    pub system_id: String,
    /// Its generation now; 0 when it was deleted.
    pub generation: u64,
}

/// How many changes a live view may fall behind before it must read everything again.
const CHANGES_BUFFER: usize = 1024;

impl Service {
    /// Builds the service over an open store, loading the machine index. Returns the receiver of
    /// effects, for the conductor.
    pub fn new(
        store: Store,
        images: Arc<ImageCache>,
        deadlines: Deadlines,
    ) -> Result<(Service, ConductorWakes), ServiceError> {
        let machines = store.read()?.machines()?;
        let index = machines
            .into_iter()
            .map(|m| (m.system_id.clone(), Arc::new(m)))
            .collect();
        let (tx, wakes) = mpsc::unbounded_channel();
        Ok((
            Service {
                store,
                index: RwLock::new(index),
                deadlines,
                subnets: std::sync::RwLock::new(Arc::new(Vec::new())),
                wakes: tx,
                images,
                enlist: enlist::EnlistOptions::default(),
                enlist_rate: enlist::RateLimiter::new(&enlist::EnlistOptions::default()),
                enlist_lock: tokio::sync::Mutex::new(()),
                login: login_guard::LoginGuard::new(LoginOptions::default()),
                changes: tokio::sync::broadcast::channel(CHANGES_BUFFER).0,
                timelines: std::sync::Mutex::default(),
                timeline_changes: tokio::sync::broadcast::channel(CHANGES_BUFFER).0,
                ip_ranges_changed: tokio::sync::watch::channel(0).0,
            },
            wakes,
        ))
    }

    /// Sets how enlistment behaves (before the service is shared).
    pub fn with_enlist(mut self, enlist: enlist::EnlistOptions) -> Service {
        self.enlist_rate = enlist::RateLimiter::new(&enlist);
        self.enlist = enlist;
        self
    }

    /// Sets how password logins are bounded (before the service is shared).
    pub fn with_login(mut self, options: LoginOptions) -> Service {
        self.login = login_guard::LoginGuard::new(options);
        self
    }

    /// How enlistment behaves (the HTTP face takes its body limit from here).
    pub fn enlist_options(&self) -> &enlist::EnlistOptions {
        &self.enlist
    }

    /// Whether the store takes writes, for `/healthz`: its writer's state, and `Failed` too when
    /// the database does not answer reads.
    pub fn store_health(&self) -> StoreState {
        match self.store.read() {
            Ok(_) => self.store.state(),
            Err(e) => StoreState::Failed {
                detail: e.to_string(),
            },
        }
    }

    /// The store's counters since the start, for /metrics.
    pub fn store_counters(&self) -> StoreCounters {
        let stats = self.store.stats();
        StoreCounters {
            commits: stats.commits.load(Ordering::Relaxed),
            writes: stats.writes.load(Ordering::Relaxed),
        }
    }

    /// How long each in-progress status may last; transitions set the machines' deadlines by it.
    pub fn deadlines(&self) -> &Deadlines {
        &self.deadlines
    }

    /// Records a committed machine in the index, unless the index already has a newer generation
    /// (two writes may finish in either order).
    fn index_put(&self, machine: Machine) {
        if let Ok(mut index) = self.index.write() {
            let newer = index
                .get(&machine.system_id)
                .is_some_and(|m| m.generation > machine.generation);
            if !newer {
                // No receiver (no page open) is not an error.
                let _ = self.changes.send(MachineChange {
                    system_id: machine.system_id.clone(),
                    generation: machine.generation,
                });
                index.insert(machine.system_id.clone(), Arc::new(machine));
            }
        }
    }

    fn index_remove(&self, system_id: &str) {
        if let Ok(mut index) = self.index.write() {
            index.remove(system_id);
            let _ = self.changes.send(MachineChange {
                system_id: system_id.to_string(),
                generation: 0,
            });
        }
    }

    /// Every machine change committed from now on, in commit order (the control page's live
    /// rows).
    pub fn subscribe_changes(&self) -> tokio::sync::broadcast::Receiver<MachineChange> {
        self.changes.subscribe()
    }

    /// A snapshot of the index's machines (cheap: Arc clones).
    fn index_snapshot(&self) -> Vec<Arc<Machine>> {
        match self.index.read() {
            Ok(index) => index.values().cloned().collect(),
            Err(poisoned) => poisoned.into_inner().values().cloned().collect(),
        }
    }

    fn index_get(&self, system_id: &str) -> Option<Arc<Machine>> {
        match self.index.read() {
            Ok(index) => index.get(system_id).cloned(),
            Err(poisoned) => poisoned.into_inner().get(system_id).cloned(),
        }
    }

    /// Tells the conductor about a machine that owes power work. A conductor that has stopped
    /// (shutdown) finds the work on the machine when rackbox starts again.
    fn wake_conductor(&self, machine: &Machine) {
        if machine.owed_effect.is_some() {
            let _ = self.wakes.send(machine.system_id.clone());
        }
    }

    /// Changes one machine in place, without a status transition (power state, status message,
    /// boot token, inventory). `change` edits a copy of the stored record and says what to write
    /// ([`Change`]: an `Option` of the event to record converts, None writing nothing); it may
    /// read other records through the write ([`Tx`]) but must not write them. The generation is
    /// bumped and the index updated here.
    pub(crate) async fn modify_machine<F, C>(
        &self,
        system_id: &str,
        actor: &str,
        change: F,
    ) -> Result<Option<Machine>, ServiceError>
    where
        F: FnOnce(&Tx<'_>, &mut Machine) -> Result<C, ServiceError> + Send + 'static,
        C: Into<Change>,
    {
        let id = system_id.to_string();
        let actor = actor.to_string();
        let changed = self
            .store
            .write_essential(move |tx| -> Result<Option<Machine>, ServiceError> {
                let old = transition::read_machine(tx, &id, None)?;
                let mut m = old.clone();
                let event = match change(tx, &mut m)?.into() {
                    Change::Skip => return Ok(None),
                    Change::Quiet => None,
                    Change::Event(action, message) => Some((action, message)),
                };
                m.generation = old.generation + 1;
                m.updated_ms = crate::model::ids::now_ms();
                let event = event.map(|(action, message)| crate::model::Event {
                    seq: 0,
                    system_id: id.clone(),
                    at_ms: m.updated_ms,
                    actor,
                    action: action.to_string(),
                    from: old.status,
                    to: m.status,
                    message,
                });
                tx.put_machine(&m, Some(&old), event)?;
                Ok(Some(m))
            })
            .await?;
        if let Some(m) = &changed {
            self.index_put(m.clone());
        }
        Ok(changed)
    }

    /// Machines that owe power work, for the conductor's periodic pass.
    pub fn machines_owing_work(&self) -> Vec<String> {
        self.index_snapshot()
            .iter()
            .filter(|m| m.owed_effect.is_some())
            .map(|m| m.system_id.clone())
            .collect()
    }

    /// Marks the effect owed at `generation` as carried out (or tried, its failure recorded).
    /// A newer one owed meanwhile stays owed.
    pub async fn settle_effect(
        &self,
        system_id: &str,
        generation: u64,
    ) -> Result<(), ServiceError> {
        let settled = self
            .modify_machine(system_id, "rackbox", move |_, m| {
                if m.owed_effect.is_some_and(|o| o.generation == generation) {
                    m.owed_effect = None;
                    Ok(Change::Quiet)
                } else {
                    Ok(Change::Skip)
                }
            })
            .await;
        match settled {
            // A machine deleted meanwhile owes nothing.
            Ok(_) | Err(ServiceError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Counts of machines by status, for /metrics.
    pub fn status_counts(&self) -> BTreeMap<Status, usize> {
        let mut counts = BTreeMap::new();
        for m in self.index_snapshot() {
            *counts.entry(m.status).or_insert(0) += 1;
        }
        counts
    }
}
