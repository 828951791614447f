//! The one path by which a machine's status changes. An action requested through an API face
//! ([`Service::act`]) or reported by the machine side ([`Service::report`],
//! [`Service::report_in`]) becomes one write that reads the machine, checks its generation and
//! the caller, applies the life-cycle rule of [`crate::model::lifecycle`] and stores the
//! machine with its event.

use super::machines::may_see;
use super::{ActionRequest, Principal, Service, ServiceError};
use crate::model::ids::now_ms;
use crate::model::lifecycle::{self, Action, ActionKind, Transition};
use crate::model::{DeployTarget, EraseMode, Event, Machine, Status};

/// Whether `p` may request `kind` on `m`. Admins may do everything; users act on machines they
/// own, and deploy (which allocates) a Ready one.
fn may_act(p: &Principal, m: &Machine, kind: ActionKind) -> Result<(), ServiceError> {
    if kind.is_internal() {
        return Err(ServiceError::Forbidden(format!(
            "{} is reported by the machine, not requested",
            kind.name()
        )));
    }
    if p.is_admin() {
        return Ok(());
    }
    let owns = m.owner.as_deref() == Some(p.username.as_str());
    let allowed = match kind {
        ActionKind::Deploy => owns || (m.owner.is_none() && m.status == Status::Ready),
        ActionKind::Release
        | ActionKind::Abort
        | ActionKind::MarkBroken
        | ActionKind::RescueMode
        | ActionKind::ExitRescueMode
        | ActionKind::Lock
        | ActionKind::Unlock => owns,
        _ => false,
    };
    if allowed {
        Ok(())
    } else if !may_see(p, m) {
        Err(ServiceError::not_found("machine", &m.system_id))
    } else {
        Err(ServiceError::Forbidden(format!(
            "user {} may not {} machine {}{}",
            p.username,
            kind.name(),
            m.system_id,
            if owns { "" } else { " (it is not theirs)" }
        )))
    }
}

pub(super) fn event_for(t: &Transition, actor: &str, action: &str, comment: Option<&str>) -> Event {
    let message = match comment {
        Some(c) if !c.is_empty() => format!("{} ({c})", t.message),
        _ => t.message.clone(),
    };
    Event {
        seq: 0,
        system_id: t.machine.system_id.clone(),
        at_ms: t.machine.updated_ms,
        actor: actor.to_string(),
        action: action.to_string(),
        from: t.from,
        to: t.to,
        message,
    }
}

impl Service {
    /// Applies a requested action (from an API face) to a machine.
    pub async fn act(
        &self,
        p: &Principal,
        system_id: &str,
        action_name: &str,
        req: ActionRequest,
    ) -> Result<Machine, ServiceError> {
        let kind = ActionKind::parse(action_name)
            .ok_or_else(|| ServiceError::Invalid(format!("unknown action {action_name:?}")))?;
        let current = self.machine(p, system_id)?;
        may_act(p, &current, kind)?;
        let action = match kind {
            ActionKind::Commission => Action::Commission {
                run_tests: req.run_tests,
            },
            ActionKind::Test => Action::Test,
            ActionKind::Allocate => Action::Allocate {
                owner: p.username.clone(),
            },
            ActionKind::Deploy => {
                // The owner's SSH keys at the time of the deploy are what the machine gets.
                let owner = current.owner.clone().unwrap_or_else(|| p.username.clone());
                let keys = self
                    .user_record(&owner)?
                    .map(|u| u.ssh_keys.into_iter().map(|k| k.key).collect())
                    .unwrap_or_default();
                Action::Deploy(DeployTarget {
                    image: req.image.clone().unwrap_or_default(),
                    osystem: req.osystem.clone().unwrap_or_default(),
                    distro_series: req.distro_series.clone().unwrap_or_default(),
                    user_data: req.user_data.clone().unwrap_or_default(),
                    ssh_keys: keys,
                })
            }
            ActionKind::Release => {
                let erase = match &req.erase {
                    Some(e) => EraseMode::parse(e).ok_or_else(|| {
                        ServiceError::Invalid(format!(
                            "erase {e:?} must be one of none, quick, full, secure"
                        ))
                    })?,
                    None => EraseMode::None,
                };
                Action::Release { erase }
            }
            ActionKind::Abort => Action::Abort,
            ActionKind::MarkBroken => Action::MarkBroken {
                reason: req.reason.clone().unwrap_or_default(),
            },
            ActionKind::MarkFixed => Action::MarkFixed,
            ActionKind::OverrideFailedTesting => Action::OverrideFailedTesting,
            ActionKind::RescueMode => Action::RescueMode,
            ActionKind::ExitRescueMode => Action::ExitRescueMode,
            ActionKind::Lock => Action::Lock,
            ActionKind::Unlock => Action::Unlock,
            ActionKind::Complete | ActionKind::Fail | ActionKind::TimeOut => {
                return Err(ServiceError::Forbidden(format!(
                    "{} is reported by the machine, not requested",
                    kind.name()
                )));
            }
        };
        let principal = p.clone();
        self.transition(
            system_id,
            action,
            req.generation,
            &p.username,
            req.comment,
            move |m| may_act(&principal, m, kind),
        )
        .await
    }

    /// Applies a report from the machine side (agent, power driver, reconciler): complete, fail,
    /// time out. `generation`, when given, refuses a report about an older state of the machine.
    pub async fn report(
        &self,
        system_id: &str,
        action: Action,
        generation: Option<u64>,
        actor: &str,
    ) -> Result<Machine, ServiceError> {
        if !action.kind().is_internal() {
            return Err(ServiceError::Invalid(format!(
                "{} is not a report",
                action.kind().name()
            )));
        }
        self.transition(system_id, action, generation, actor, None, |_| Ok(()))
            .await
    }

    /// The one path by which a machine's status changes: read it inside the write, check the
    /// generation and the caller, apply the life-cycle rule, store the machine and its event.
    async fn transition(
        &self,
        system_id: &str,
        action: Action,
        generation: Option<u64>,
        actor: &str,
        comment: Option<String>,
        authorize: impl FnOnce(&Machine) -> Result<(), ServiceError> + Send + 'static,
    ) -> Result<Machine, ServiceError> {
        let id = system_id.to_string();
        let actor = actor.to_string();
        let deadlines = self.deadlines;
        let t = self
            .store
            .write_essential(move |tx| -> Result<Transition, ServiceError> {
                let old = tx
                    .machine(&id)?
                    .ok_or_else(|| ServiceError::not_found("machine", &id))?;
                let mut m = old.clone();
                if let Some(g) = generation
                    && g != m.generation
                {
                    return Err(ServiceError::Stale {
                        system_id: id.clone(),
                        current: m.generation,
                        given: g,
                        status: m.status,
                    });
                }
                authorize(&m)?;
                let now = now_ms();
                let mut transitions = Vec::new();
                // Deploying a Ready machine allocates it to the deployer first, in the same write.
                if let Action::Deploy(_) = &action
                    && m.status == Status::Ready
                {
                    let t = lifecycle::apply(
                        &m,
                        &Action::Allocate {
                            owner: actor.clone(),
                        },
                        now,
                        &deadlines,
                    )?;
                    m = t.machine.clone();
                    transitions.push((t, "allocate"));
                }
                let t = lifecycle::apply(&m, &action, now, &deadlines)?;
                transitions.push((t.clone(), action.kind().name()));
                let events = transitions
                    .iter()
                    .map(|(step, name)| event_for(step, &actor, name, comment.as_deref()));
                tx.put_machine(&t.machine, Some(&old), events)?;
                Ok(t)
            })
            .await?;
        tracing::info!(
            system_id = %t.machine.system_id,
            action = action_label(&t),
            from = t.from.name(),
            to = t.to.name(),
            "machine status changed"
        );
        self.index_put(t.machine.clone());
        self.wake_conductor(&t.machine);
        Ok(t.machine)
    }

    /// Applies a report only while the machine is still in `expected` (the conductor's reports
    /// about power work it started: a machine that moved on meanwhile is left alone).
    pub async fn report_in(
        &self,
        system_id: &str,
        action: Action,
        expected: Status,
        actor: &str,
    ) -> Result<Machine, ServiceError> {
        if !action.kind().is_internal() {
            return Err(ServiceError::Invalid(format!(
                "{} is not a report",
                action.kind().name()
            )));
        }
        let id = system_id.to_string();
        self.transition(system_id, action, None, actor, None, move |m| {
            if m.status == expected {
                Ok(())
            } else {
                Err(ServiceError::Conflict(format!(
                    "machine {id} is {} now, not {}",
                    m.status, expected
                )))
            }
        })
        .await
    }
}

fn action_label(t: &Transition) -> &'static str {
    if t.from == t.to { "flag" } else { "transition" }
}
