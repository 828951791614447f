//! The transition table, pair by pair: every (status, action) either moves the machine to the
//! status written below or is refused naming the machine's current status.

mod common;

use std::collections::HashMap;

use rackbox::model::lifecycle::{self, Action, ActionKind, Deadlines, TransitionError};
use rackbox::model::{DeployTarget, EraseMode, Status};

use Status as S;

fn action_for(kind: ActionKind) -> Action {
    match kind {
        ActionKind::Commission => Action::Commission { run_tests: false },
        ActionKind::Test => Action::Test,
        ActionKind::Allocate => Action::Allocate {
            owner: "alice".into(),
        },
        ActionKind::Deploy => Action::Deploy(DeployTarget {
            image: "debian".into(),
            osystem: String::new(),
            distro_series: String::new(),
            user_data: String::new(),
            ssh_keys: vec![],
        }),
        ActionKind::Release => Action::Release {
            erase: EraseMode::Quick,
        },
        ActionKind::Abort => Action::Abort,
        ActionKind::MarkBroken => Action::MarkBroken {
            reason: "fan".into(),
        },
        ActionKind::MarkFixed => Action::MarkFixed,
        ActionKind::OverrideFailedTesting => Action::OverrideFailedTesting,
        ActionKind::RescueMode => Action::RescueMode,
        ActionKind::ExitRescueMode => Action::ExitRescueMode,
        ActionKind::Lock => Action::Lock,
        ActionKind::Unlock => Action::Unlock,
        ActionKind::Complete => Action::Complete {
            message: String::new(),
        },
        ActionKind::Fail => Action::Fail {
            reason: "disk on fire".into(),
        },
        ActionKind::TimeOut => Action::TimeOut,
    }
}

/// The expected table, written out independently of the implementation. The fixture machine has
/// previous_status = Ready, is commissioned, owned by alice, unlocked; release uses quick erase.
fn expected() -> HashMap<(Status, ActionKind), Status> {
    use ActionKind as A;
    let mut t = HashMap::new();
    let mut allow = |from: &[Status], a: ActionKind, to: Status| {
        for f in from {
            t.insert((*f, a), to);
        }
    };
    allow(
        &[
            S::New,
            S::Ready,
            S::FailedCommissioning,
            S::FailedTesting,
            S::Broken,
            S::Missing,
        ],
        A::Commission,
        S::Commissioning,
    );
    allow(
        &[
            S::New,
            S::Ready,
            S::Broken,
            S::FailedTesting,
            S::FailedCommissioning,
            S::Deployed,
        ],
        A::Test,
        S::Testing,
    );
    allow(&[S::Ready], A::Allocate, S::Allocated);
    allow(
        &[S::Ready, S::Allocated, S::FailedDeployment],
        A::Deploy,
        S::Deploying,
    );
    allow(
        &[
            S::Allocated,
            S::Deployed,
            S::FailedDeployment,
            S::FailedReleasing,
            S::FailedDiskErasing,
            S::Reserved,
        ],
        A::Release,
        S::DiskErasing,
    );
    allow(
        &[S::Commissioning, S::Testing, S::EnteringRescueMode],
        A::Abort,
        S::Ready,
    );
    allow(&[S::Deploying], A::Abort, S::Allocated);
    allow(&[S::DiskErasing], A::Abort, S::FailedDiskErasing);
    allow(&[S::Releasing], A::Abort, S::FailedReleasing);
    allow(
        &[
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
        ],
        A::MarkBroken,
        S::Broken,
    );
    allow(&[S::Broken], A::MarkFixed, S::Ready);
    allow(&[S::FailedTesting], A::OverrideFailedTesting, S::Ready);
    allow(
        &[
            S::Ready,
            S::Deployed,
            S::Broken,
            S::Allocated,
            S::FailedDeployment,
        ],
        A::RescueMode,
        S::EnteringRescueMode,
    );
    allow(
        &[
            S::RescueMode,
            S::FailedEnteringRescueMode,
            S::FailedExitingRescueMode,
        ],
        A::ExitRescueMode,
        S::ExitingRescueMode,
    );
    // Lock keeps the status.
    allow(&[S::Deployed], A::Lock, S::Deployed);
    allow(&[S::Deploying], A::Lock, S::Deploying);
    allow(&[S::Commissioning], A::Complete, S::Ready);
    allow(&[S::Testing, S::ExitingRescueMode], A::Complete, S::Ready);
    allow(&[S::Deploying], A::Complete, S::Deployed);
    allow(&[S::Releasing, S::DiskErasing], A::Complete, S::Ready);
    allow(&[S::EnteringRescueMode], A::Complete, S::RescueMode);
    for (from, to) in [
        (S::Commissioning, S::FailedCommissioning),
        (S::Deploying, S::FailedDeployment),
        (S::Releasing, S::FailedReleasing),
        (S::DiskErasing, S::FailedDiskErasing),
        (S::EnteringRescueMode, S::FailedEnteringRescueMode),
        (S::ExitingRescueMode, S::FailedExitingRescueMode),
        (S::Testing, S::FailedTesting),
    ] {
        allow(&[from], A::Fail, to);
        allow(&[from], A::TimeOut, to);
    }
    t
}

#[test]
fn every_status_action_pair() {
    let expected = expected();
    let deadlines = Deadlines::default();
    let mut checked = 0;
    for status in Status::ALL {
        for kind in ActionKind::ALL {
            if kind == ActionKind::Unlock {
                continue; // a flag, checked below
            }
            let mut m = common::machine("abc234", status, 4, 8192);
            m.previous_status = Some(S::Ready);
            m.owner = Some("alice".into());
            let result = lifecycle::apply(&m, &action_for(kind), 1_000, &deadlines);
            match (expected.get(&(status, kind)), result) {
                (Some(to), Ok(t)) => {
                    assert_eq!(
                        t.to, *to,
                        "{status:?} --{kind:?}--> expected {to:?}, got {:?}",
                        t.to
                    );
                    assert_eq!(t.machine.status, *to);
                    assert_eq!(
                        t.machine.generation,
                        m.generation + 1,
                        "every change bumps the generation"
                    );
                    assert!(
                        !t.message.is_empty(),
                        "{status:?} --{kind:?}: a status message is set"
                    );
                }
                (None, Err(e)) => {
                    assert_eq!(e.status(), status, "refusal names the current status");
                    assert!(e.to_string().contains(status.name()), "{e}");
                }
                (Some(to), Err(e)) => {
                    panic!("{status:?} --{kind:?}--> should reach {to:?}, refused: {e}")
                }
                (None, Ok(t)) => panic!(
                    "{status:?} --{kind:?}--> should be refused, went to {:?}",
                    t.to
                ),
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 23 * 15);
}

#[test]
fn lock_and_unlock() {
    let d = Deadlines::default();
    let m = common::machine("abc234", S::Deployed, 4, 8192);
    let locked = lifecycle::apply(&m, &Action::Lock, 1, &d).unwrap().machine;
    assert!(locked.locked);
    assert!(matches!(
        lifecycle::apply(&locked, &Action::Lock, 1, &d),
        Err(TransitionError::AlreadyDone { .. })
    ));
    // A locked machine refuses release, and says why.
    let e = lifecycle::apply(
        &locked,
        &Action::Release {
            erase: EraseMode::None,
        },
        1,
        &d,
    )
    .unwrap_err();
    assert!(matches!(e, TransitionError::Locked { .. }), "{e}");
    let unlocked = lifecycle::apply(&locked, &Action::Unlock, 1, &d)
        .unwrap()
        .machine;
    assert!(!unlocked.locked);
    assert!(matches!(
        lifecycle::apply(&unlocked, &Action::Unlock, 1, &d),
        Err(TransitionError::AlreadyDone { .. })
    ));
    for status in Status::ALL {
        let m = common::machine("abc234", status, 4, 8192);
        assert!(
            lifecycle::apply(&m, &Action::Unlock, 1, &d).is_err(),
            "unlocking an unlocked {status:?} machine"
        );
    }
}

#[test]
fn release_without_erase_goes_to_releasing_and_powers_off() {
    let d = Deadlines::default();
    let mut m = common::machine("abc234", S::Deployed, 4, 8192);
    m.owner = Some("alice".into());
    let t = lifecycle::apply(
        &m,
        &Action::Release {
            erase: EraseMode::None,
        },
        1,
        &d,
    )
    .unwrap();
    assert_eq!(t.to, S::Releasing);
    assert_eq!(t.effects, vec![lifecycle::Effect::PowerOff]);
    let done = lifecycle::apply(
        &t.machine,
        &Action::Complete {
            message: String::new(),
        },
        2,
        &d,
    )
    .unwrap();
    assert_eq!(done.to, S::Ready);
    assert_eq!(
        done.machine.owner, None,
        "a machine back in the pool has no owner"
    );
    assert_eq!(done.machine.deploy, None);
}

#[test]
fn in_progress_statuses_get_deadlines_and_network_boot() {
    let d = Deadlines::default();
    let m = common::machine("abc234", S::Ready, 4, 8192);
    let t = lifecycle::apply(&m, &Action::Commission { run_tests: true }, 5_000, &d).unwrap();
    assert_eq!(
        t.machine.status_deadline_ms,
        Some(5_000 + d.commissioning_ms)
    );
    assert_eq!(t.effects, vec![lifecycle::Effect::PowerOnNetboot]);
    assert!(
        t.machine.status_message.contains("waiting"),
        "{}",
        t.machine.status_message
    );
    // Commissioning with tests continues into Testing, then back to Ready.
    let testing = lifecycle::apply(
        &t.machine,
        &Action::Complete {
            message: String::new(),
        },
        6_000,
        &d,
    )
    .unwrap();
    assert_eq!(testing.to, S::Testing);
    let ready = lifecycle::apply(
        &testing.machine,
        &Action::Complete {
            message: String::new(),
        },
        7_000,
        &d,
    )
    .unwrap();
    assert_eq!(ready.to, S::Ready);
    assert_eq!(ready.machine.status_deadline_ms, None);
}

#[test]
fn deploy_needs_an_owner_and_mark_fixed_depends_on_commissioning() {
    let d = Deadlines::default();
    let m = common::machine("abc234", S::Allocated, 4, 8192);
    let e = lifecycle::apply(&m, &action_for(ActionKind::Deploy), 1, &d).unwrap_err();
    assert!(e.to_string().contains("allocate"), "{e}");
    let mut broken = common::machine("abc234", S::Broken, 4, 8192);
    broken.commissioned = false;
    assert_eq!(
        lifecycle::apply(&broken, &Action::MarkFixed, 1, &d)
            .unwrap()
            .to,
        S::New
    );
}

#[test]
fn rescue_mode_returns_to_the_status_it_was_entered_from() {
    let d = Deadlines::default();
    let done = || Action::Complete {
        message: String::new(),
    };
    for from in [S::Deployed, S::Ready, S::Broken, S::Allocated] {
        let mut m = common::machine("abc235", from, 4, 8192);
        m.previous_status = None;
        m.owner = (from != S::Ready).then(|| "alice".to_string());
        let t = lifecycle::apply(&m, &Action::RescueMode, 1, &d).unwrap();
        assert_eq!(t.to, S::EnteringRescueMode);
        assert_eq!(t.effects, vec![lifecycle::Effect::PowerOnNetboot]);
        let t = lifecycle::apply(&t.machine, &done(), 2, &d).unwrap();
        assert_eq!(t.to, S::RescueMode);
        let t = lifecycle::apply(&t.machine, &Action::ExitRescueMode, 3, &d).unwrap();
        assert_eq!(t.to, S::ExitingRescueMode);
        assert_eq!(t.effects, vec![lifecycle::Effect::PowerOff]);
        let t = lifecycle::apply(&t.machine, &done(), 4, &d).unwrap();
        assert_eq!(t.to, from, "rescue mode entered from {from} returns there");
        // A Deployed machine boots its OS again (network boot -> local-disk script); the others
        // stay off.
        let again = if from == S::Deployed {
            vec![lifecycle::Effect::PowerOnNetboot]
        } else {
            vec![]
        };
        assert_eq!(t.effects, again, "after rescue from {from}");
        assert_eq!(t.machine.owner, m.owner, "the owner stays");
        assert_eq!(t.machine.previous_status, None);
    }
}

fn booted(status: Status, issued_for: Status) -> rackbox::model::Machine {
    let mut m = common::machine("abc236", status, 4, 8192);
    m.boot_session = Some(rackbox::model::BootSession {
        token_sha256: "00".repeat(32),
        issued_for,
        over: false,
        enlist_key_sha256: None,
    });
    m
}

/// The agent calls each status takes from the agent of its current boot, written out
/// independently of the rule.
#[test]
fn agent_calls_are_taken_only_in_their_statuses() {
    use lifecycle::AgentCall as C;
    let mut expected: HashMap<(Status, bool), Vec<C>> = HashMap::new();
    for status in Status::ALL {
        for written in [false, true] {
            let mut calls = vec![C::Task];
            match (status, written) {
                (S::Commissioning, _) => {
                    calls.extend([C::Inventory, C::Progress, C::Complete, C::Fail])
                }
                (S::Testing | S::DiskErasing | S::EnteringRescueMode, _) => {
                    calls.extend([C::Progress, C::Complete, C::Fail])
                }
                (S::Deploying, false) => calls.extend([C::Progress, C::Complete, C::Fail]),
                // The image is written: a repeated complete is taken, and the deployed OS's
                // report; nothing else.
                (S::Deploying, true) => calls.extend([C::Complete, C::Deployed]),
                // An agent started again in rescue mode reports its SSH server again.
                (S::RescueMode, _) => calls.extend([C::Progress, C::Complete]),
                _ => {}
            }
            expected.insert((status, written), calls);
        }
    }
    for ((status, written), calls) in expected {
        let mut m = booted(status, status);
        m.deploy_written = written;
        for call in C::ALL {
            assert_eq!(
                lifecycle::agent_may(call, &m),
                calls.contains(&call),
                "{status:?} (image written: {written}): {}",
                call.name()
            );
        }
        // A boot that is over asks for its task (and hears "power off"), nothing else.
        m.boot_session.as_mut().expect("boot").over = true;
        for call in C::ALL {
            assert_eq!(
                lifecycle::agent_may(call, &m),
                call == C::Task,
                "{status:?}, boot over: {}",
                call.name()
            );
        }
        // No boot at all (a record from before boots were bound): the same.
        m.boot_session = None;
        assert!(!lifecycle::agent_may(C::Complete, &m));
    }
}

/// A boot goes on only where its own agent's report leads within the ephemeral environment;
/// every other move ends it, and coming back to the same status does not revive it.
#[test]
fn a_boot_ends_when_the_machine_leaves_its_work() {
    use lifecycle::boot_continues;
    for s in Status::ALL {
        assert!(boot_continues(s, s), "{s:?}");
    }
    assert!(boot_continues(S::Commissioning, S::Testing));
    assert!(boot_continues(S::EnteringRescueMode, S::RescueMode));
    for (issued, now) in [
        (S::Commissioning, S::Ready),
        (S::Commissioning, S::FailedCommissioning),
        (S::Testing, S::Ready),
        (S::Deploying, S::Deployed),
        (S::Deploying, S::Allocated),
        (S::DiskErasing, S::Ready),
        (S::RescueMode, S::ExitingRescueMode),
        (S::EnteringRescueMode, S::ExitingRescueMode),
        (S::New, S::Commissioning),
        (S::Ready, S::Deploying),
    ] {
        assert!(!boot_continues(issued, now), "{issued:?} -> {now:?}");
    }

    let d = Deadlines::default();
    let done = || Action::Complete {
        message: String::new(),
    };
    // Commissioning with tests: the boot goes on into Testing, and ends at Ready.
    let mut m = booted(S::Commissioning, S::Commissioning);
    m.test_after_commission = true;
    let t = lifecycle::apply(&m, &done(), 1, &d).unwrap();
    assert_eq!(t.to, S::Testing);
    assert!(lifecycle::boot_is_current(&t.machine));
    let t = lifecycle::apply(&t.machine, &done(), 2, &d).unwrap();
    assert_eq!(t.to, S::Ready);
    assert!(!lifecycle::boot_is_current(&t.machine));
    // Deploying, aborted and deployed again before the next network boot: the old boot stays
    // over in the status it was issued for.
    let mut m = booted(S::Deploying, S::Deploying);
    m.owner = Some("alice".into());
    let t = lifecycle::apply(&m, &Action::Abort, 1, &d).unwrap();
    assert!(!lifecycle::boot_is_current(&t.machine));
    let t = lifecycle::apply(&t.machine, &action_for(ActionKind::Deploy), 2, &d).unwrap();
    assert_eq!(t.to, S::Deploying);
    assert!(
        !lifecycle::boot_is_current(&t.machine),
        "another boot's work"
    );
    // A change that keeps the status (lock) keeps the boot.
    let m = booted(S::Deploying, S::Deploying);
    let t = lifecycle::apply(&m, &Action::Lock, 1, &d).unwrap();
    assert!(lifecycle::boot_is_current(&t.machine));
}

/// The conductor's work is recorded on the machine by the transition that asks for it: a new
/// effect replaces an older one, a new status without one drops it, and a flag keeps it.
#[test]
fn transitions_record_the_power_work_owed() {
    use rackbox::model::Effect;
    use rackbox::model::lifecycle::OwedEffect;
    let d = Deadlines::default();
    let ready = common::machine("own222", S::Ready, 2, 2048);
    assert_eq!(ready.owed_effect, None);

    let commissioning = lifecycle::apply(&ready, &action_for(ActionKind::Commission), 1, &d)
        .expect("commission")
        .machine;
    assert_eq!(
        commissioning.owed_effect,
        Some(OwedEffect {
            effect: Effect::PowerOnNetboot,
            generation: commissioning.generation
        })
    );
    // Locking is a flag: a deploy's power-on is still owed.
    let mut allocated = common::machine("own333", S::Allocated, 2, 2048);
    allocated.owner = Some("alice".into());
    let deploying = lifecycle::apply(&allocated, &action_for(ActionKind::Deploy), 2, &d)
        .expect("deploy")
        .machine;
    assert_eq!(
        deploying.owed_effect.map(|o| o.effect),
        Some(Effect::PowerOnNetboot)
    );
    let locked = lifecycle::apply(&deploying, &Action::Lock, 2, &d)
        .expect("lock")
        .machine;
    assert_eq!(locked.owed_effect, deploying.owed_effect);
    // Abort owes a power-off instead, at its own generation.
    let aborted = lifecycle::apply(&commissioning, &Action::Abort, 3, &d)
        .expect("abort")
        .machine;
    assert_eq!(
        aborted.owed_effect,
        Some(OwedEffect {
            effect: Effect::PowerOff,
            generation: aborted.generation
        })
    );
    // A time-out is a new status that asks for nothing: the power-on is no longer wanted.
    let timed_out = lifecycle::apply(&commissioning, &Action::TimeOut, 4, &d)
        .expect("time out")
        .machine;
    assert_eq!(timed_out.status, S::FailedCommissioning);
    assert_eq!(timed_out.owed_effect, None);
}
