//! Allocation: the chosen machine satisfies every constraint and is the smallest fit; concurrent
//! allocations never share a machine.

mod common;

use std::sync::Arc;

use proptest::prelude::*;
use rackbox::model::constraints::{self, Constraints, NoMatch};
use rackbox::model::{Disk, Machine, Status};
use rackbox::service::{Principal, ServiceError};
use rackbox::store::Store;

fn arb_machine(i: usize) -> impl Strategy<Value = Machine> {
    (
        prop_oneof![
            Just(Status::Ready),
            Just(Status::Ready),
            Just(Status::Allocated),
            Just(Status::New)
        ],
        1u32..64,
        prop_oneof![
            Just(2048u64),
            Just(4096),
            Just(8192),
            Just(16384),
            Just(65536)
        ],
        proptest::collection::vec((1u64..2000, any::<bool>()), 1..4),
        proptest::sample::subsequence(vec!["gpu", "fast", "big"], 0..3),
        prop_oneof![Just("default"), Just("east"), Just("west")],
        prop_oneof![Just("default"), Just("batch")],
        prop_oneof![Just("amd64/generic"), Just("arm64/generic")],
    )
        .prop_map(move |(status, cpu, mem, disks, tags, zone, pool, arch)| {
            let mut m = common::machine(&format!("m{i:04}"), status, cpu, mem);
            m.disks = disks
                .into_iter()
                .enumerate()
                .map(|(n, (gb, ssd))| Disk {
                    name: format!("sd{n}"),
                    size_bytes: gb * 1_000_000_000,
                    model: String::new(),
                    serial: String::new(),
                    block_size: 512,
                    rotational: !ssd,
                    tags: vec![if ssd { "ssd" } else { "rotary" }.to_string()],
                })
                .collect();
            m.tags = tags.into_iter().map(String::from).collect();
            m.zone = zone.into();
            m.pool = pool.into();
            m.architecture = arch.into();
            m
        })
}

fn arb_machines() -> impl Strategy<Value = Vec<Machine>> {
    (1usize..25).prop_flat_map(|n| (0..n).map(arb_machine).collect::<Vec<_>>())
}

fn arb_constraints() -> impl Strategy<Value = Constraints> {
    (
        proptest::option::of(1u32..48),
        proptest::option::of(prop_oneof![Just(1024u64), Just(4096), Just(16384)]),
        proptest::sample::subsequence(vec!["gpu", "fast"], 0..2),
        proptest::sample::subsequence(vec!["big"], 0..1),
        proptest::option::of(prop_oneof![
            Just("east".to_string()),
            Just("default".to_string())
        ]),
        proptest::sample::subsequence(vec!["west".to_string()], 0..1),
        proptest::option::of(Just("batch".to_string())),
        proptest::option::of(prop_oneof![
            Just("root:100".to_string()),
            Just("root:50(ssd)".to_string()),
            Just("root:10,data:500(rotary)".to_string()),
        ]),
        proptest::option::of(prop_oneof![
            Just("amd64".to_string()),
            Just("arm64/generic".to_string())
        ]),
    )
        .prop_map(
            |(cpu, mem, tags, not_tags, zone, not_in_zone, pool, storage, arch)| Constraints {
                cpu_count: cpu,
                mem,
                tags: tags.into_iter().map(String::from).collect(),
                not_tags: not_tags.into_iter().map(String::from).collect(),
                zone,
                not_in_zone,
                pool,
                storage,
                arch,
                ..Default::default()
            },
        )
}

/// An independent statement of "satisfies", written from the constraint definitions.
fn satisfies(m: &Machine, c: &Constraints) -> bool {
    let disks_ok = match &c.storage {
        None => true,
        Some(s) => {
            let wishes = constraints::parse_storage(s).unwrap();
            constraints::disks_satisfy(&m.disks, &wishes)
        }
    };
    m.status == Status::Ready
        && c.cpu_count.is_none_or(|n| m.cpu_count >= n)
        && c.mem.is_none_or(|n| m.memory_mib >= n)
        && c.tags.iter().all(|t| m.tags.contains(t))
        && c.not_tags.iter().all(|t| !m.tags.contains(t))
        && c.zone.as_ref().is_none_or(|z| &m.zone == z)
        && !c.not_in_zone.contains(&m.zone)
        && c.pool.as_ref().is_none_or(|p| &m.pool == p)
        && c.arch.as_ref().is_none_or(|a| {
            m.architecture == *a || m.architecture.split('/').next() == Some(a.as_str())
        })
        && disks_ok
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn chosen_machine_satisfies_and_is_smallest(machines in arb_machines(), c in arb_constraints()) {
        let fits: Vec<&Machine> = machines.iter().filter(|m| satisfies(m, &c)).collect();
        match constraints::candidates(machines.iter(), &c) {
            Ok(found) => {
                let chosen = found[0];
                prop_assert!(satisfies(chosen, &c), "chosen {} does not satisfy", chosen.system_id);
                for other in &fits {
                    prop_assert!(constraints::size_key(chosen) <= constraints::size_key(other),
                        "{} is smaller than chosen {}", other.system_id, chosen.system_id);
                }
                prop_assert_eq!(found.len(), fits.len());
            }
            Err(NoMatch::NoneReady) => {
                prop_assert!(machines.iter().all(|m| m.status != Status::Ready));
            }
            Err(NoMatch::Unmatched { constraint, .. }) => {
                prop_assert!(fits.is_empty(), "refused ({constraint}) though {} fit", fits.len());
                prop_assert!(!constraint.is_empty());
            }
            Err(e) => prop_assert!(false, "unexpected {e}"),
        }
    }
}

#[test]
fn no_match_names_the_constraint() {
    let machines = [
        common::machine("aaa", Status::Ready, 4, 4096),
        common::machine("bbb", Status::Ready, 8, 8192),
    ];
    let c = Constraints {
        cpu_count: Some(2),
        mem: Some(1_000_000),
        ..Default::default()
    };
    let e = constraints::candidates(machines.iter(), &c).unwrap_err();
    assert!(e.to_string().contains("mem>=1000000"), "{e}");
    let c = Constraints {
        storage: Some("root:12x".into()),
        ..Default::default()
    };
    assert!(
        constraints::candidates(machines.iter(), &c)
            .unwrap_err()
            .to_string()
            .contains("storage")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_allocations_over_twenty_machines() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db.redb"), Default::default()).unwrap();
    let (service, _effects) = common::service_over(store, &dir.path().join("images")).await;
    let service = Arc::new(service);
    for i in 0..20 {
        service
            .insert_machine_record(common::machine(
                &format!("m{i:02}"),
                Status::Ready,
                4 + i,
                4096,
            ))
            .await
            .unwrap();
    }
    let mut tasks = Vec::new();
    for n in 0..50 {
        let s = service.clone();
        tasks.push(tokio::spawn(async move {
            let p = Principal {
                username: format!("user{n}"),
                role: rackbox::model::Role::User,
            };
            s.allocate(
                &p,
                Constraints {
                    cpu_count: Some(2),
                    ..Default::default()
                },
                None,
            )
            .await
        }));
    }
    let mut won = Vec::new();
    let mut refused = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(m) => won.push((m.system_id.clone(), m.owner.clone().unwrap())),
            Err(ServiceError::NoMatch(_)) => refused += 1,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    let mut ids: Vec<&String> = won.iter().map(|(id, _)| id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 20, "20 distinct machines");
    assert_eq!(won.len(), 20);
    assert_eq!(refused, 30, "30 clean refusals");
    // The store agrees: every machine is Allocated to the one winner the caller was told.
    let admin = Principal::system();
    for (id, owner) in &won {
        let m = service.machine(&admin, id).unwrap();
        assert_eq!(m.status, Status::Allocated);
        assert_eq!(m.owner.as_ref(), Some(owner));
        let events = service.machine_events(&admin, id, None, 10).unwrap();
        assert_eq!(events.iter().filter(|e| e.action == "allocate").count(), 1);
    }
}
