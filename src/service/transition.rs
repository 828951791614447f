//! The one path by which a machine's status changes. An action requested through an API face
//! ([`Service::act`]) or reported by the machine side ([`Service::report`],
//! [`Service::report_in`]) becomes one write that reads the machine, checks its generation and
//! the caller, applies the life-cycle rule of [`crate::model::lifecycle`] and stores the
//! machine with its event ([`apply_in`]). Allocation, which picks its machine inside its write,
//! and the commissioning of a machine just added go through the same [`apply_in`] in theirs.

use super::machines::may_see;
use super::{ActionRequest, Principal, Service, ServiceError};
use crate::model::ids::now_ms;
use crate::model::lifecycle::{self, Action, ActionKind, Deadlines, Transition};
use crate::model::{DeployTarget, EraseMode, Event, Machine, Status};
use crate::store::Tx;

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

fn event_for(t: &Transition, actor: &str, action: &str, comment: Option<&str>) -> Event {
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

/// The machine `system_id` as this write finds it: NotFound when there is none, Stale when
/// `generation` (the caller's copy) names another than the stored one.
pub(super) fn read_machine(
    tx: &Tx<'_>,
    system_id: &str,
    generation: Option<u64>,
) -> Result<Machine, ServiceError> {
    let m = tx
        .machine(system_id)?
        .ok_or_else(|| ServiceError::not_found("machine", system_id))?;
    if let Some(g) = generation
        && g != m.generation
    {
        return Err(ServiceError::Stale {
            system_id: system_id.to_string(),
            current: m.generation,
            given: g,
            status: m.status,
        });
    }
    Ok(m)
}

/// Inside a write: applies `action` to `m` (the machine as this write read it, checked) by the
/// life-cycle rule and stores the machine with an event per step. Deploying a Ready machine
/// allocates it to `actor` first, in the same write. Every status change goes through here:
/// [`Service::act`] and the reports, allocation, and the commissioning of a machine added.
pub(super) fn apply_in(
    tx: &Tx<'_>,
    m: &Machine,
    action: &Action,
    actor: &str,
    comment: Option<&str>,
    now: u64,
    rules: &Rules,
) -> Result<Transition, ServiceError> {
    let deadlines = &rules.deadlines;
    let mut steps = Vec::new();
    let mut current = m.clone();
    if let Action::Deploy(_) = action
        && current.status == Status::Ready
    {
        let allocate = Action::Allocate {
            owner: actor.to_string(),
        };
        let t = lifecycle::apply(&current, &allocate, now, deadlines)?;
        current = t.machine.clone();
        steps.push((t, "allocate"));
    }
    let mut t = lifecycle::apply(&current, action, now, deadlines)?;
    super::network::settle_addresses_in(tx, &mut t.machine, action, &rules.subnets, now)?;
    steps.push((t.clone(), action.kind().name()));
    let events = steps
        .iter()
        .map(|(step, name)| event_for(step, actor, name, comment));
    tx.put_machine(&t.machine, Some(m), events)?;
    Ok(t)
}

/// What a transition needs besides the machine: the deadlines of in-progress statuses and the
/// boot subnets deploys pick addresses from.
#[derive(Clone)]
pub(super) struct Rules {
    pub(super) deadlines: Deadlines,
    pub(super) subnets: std::sync::Arc<Vec<crate::model::network::SubnetPlan>>,
}

/// The keys a deploy installs: the owner's keys with the ids asked for (all of them when none
/// were named). An id the owner has no key by is refused, so a typo never deploys a machine its
/// owner cannot log in to.
fn chosen_keys(
    owned: Vec<crate::model::SshKey>,
    ids: Option<&[u32]>,
    owner: &str,
) -> Result<Vec<String>, ServiceError> {
    let Some(ids) = ids else {
        return Ok(owned.into_iter().map(|k| k.key).collect());
    };
    if let Some(missing) = ids.iter().find(|id| !owned.iter().any(|k| k.id == **id)) {
        return Err(ServiceError::Invalid(format!(
            "ssh_key_ids: {owner} has no SSH key {missing}"
        )));
    }
    Ok(owned
        .into_iter()
        .filter(|k| ids.contains(&k.id))
        .map(|k| k.key)
        .collect())
}

/// Refuses an action that is not a report from the machine side (complete, fail, time out).
fn check_report(action: &Action) -> Result<(), ServiceError> {
    if action.kind().is_internal() {
        Ok(())
    } else {
        Err(ServiceError::Invalid(format!(
            "{} is not a report",
            action.kind().name()
        )))
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
                // The owner's SSH keys at the time of the deploy (those asked for, or all) are
                // what the machine gets.
                let owner = current.owner.clone().unwrap_or_else(|| p.username.clone());
                let owned = self
                    .user_record(&owner)?
                    .map(|u| u.ssh_keys)
                    .unwrap_or_default();
                let keys = chosen_keys(owned, req.ssh_key_ids.as_deref(), &owner)?;
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
        check_report(&action)?;
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
        let rules = self.rules();
        let t = self
            .store
            .write_essential(move |tx| -> Result<Transition, ServiceError> {
                let m = read_machine(tx, &id, generation)?;
                authorize(&m)?;
                apply_in(
                    tx,
                    &m,
                    &action,
                    &actor,
                    comment.as_deref(),
                    now_ms(),
                    &rules,
                )
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
        check_report(&action)?;
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

#[cfg(test)]
mod tests {
    use super::chosen_keys;
    use crate::model::SshKey;

    fn keys() -> Vec<SshKey> {
        (1..=3)
            .map(|id| SshKey {
                id,
                key: format!("ssh-ed25519 AAAA{id} k{id}"),
            })
            .collect()
    }

    #[test]
    fn a_deploy_gets_every_key_unless_some_are_named() {
        assert_eq!(
            chosen_keys(keys(), None, "alice").ok().map(|k| k.len()),
            Some(3)
        );
        assert_eq!(
            chosen_keys(keys(), Some(&[3, 1]), "alice").ok(),
            Some(vec![
                "ssh-ed25519 AAAA1 k1".to_string(),
                "ssh-ed25519 AAAA3 k3".to_string()
            ])
        );
        assert_eq!(
            chosen_keys(keys(), Some(&[]), "alice").ok(),
            Some(Vec::new())
        );
    }

    #[test]
    fn a_key_the_owner_does_not_have_is_refused() {
        let refused = chosen_keys(keys(), Some(&[2, 9]), "alice").expect_err("refused");
        assert!(refused.to_string().contains("no SSH key 9"), "{refused}");
    }
}
