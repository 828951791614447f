//! Deployed machines' links, through the service as the API faces drive it: `auto` links get a
//! free static address when the machine is deployed (never the gateway, rackbox's own address,
//! the DHCP pool, a reserved range, another machine's address or an active lease), keep it while
//! deployed and give it back on release; `static` links are checked; the deploy task's
//! `network-config` says it all to cloud-init (matched by MAC, `0.0.0.0/0` for the default
//! route). The MAAS face's link_subnet/unlink_subnet and the seed that carries the file are
//! checked in tests/maas_api.rs and the agent's own tests.

mod common;

use std::net::Ipv4Addr;
use std::sync::Arc;

use futures_util::StreamExt;
use rackbox::images::{CacheOptions, ImageCache, ImageRequest, Source};
use rackbox::model::lease::{Lease, LeaseState};
use rackbox::model::network::{Link, LinkMode, SubnetPlan};
use rackbox::model::{Role, Status};
use rackbox::service::{ActionRequest, BootPlan, Principal, Service};
use rackbox::store::Store;
use serde_json::Value;

const SUBNET: &str = "192.0.2.0/24";

fn plan() -> SubnetPlan {
    SubnetPlan {
        cidr: SUBNET.into(),
        network: Ipv4Addr::new(192, 0, 2, 0),
        prefix: 24,
        gateway: Some(Ipv4Addr::new(192, 0, 2, 254)),
        dns: vec![Ipv4Addr::new(192, 0, 2, 53)],
        domain: Some("maas".into()),
        // rackbox's own address, and the DHCP pool.
        unavailable: vec![
            (Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 1)),
            (Ipv4Addr::new(192, 0, 2, 100), Ipv4Addr::new(192, 0, 2, 199)),
        ],
    }
}

fn admin() -> Principal {
    Principal {
        username: "admin".into(),
        role: Role::Admin,
    }
}

fn auto() -> Option<Link> {
    Some(Link {
        mode: LinkMode::Auto,
        subnet: Some(SUBNET.into()),
        ip: None,
    })
}

fn static_link(ip: &str) -> Option<Link> {
    Some(Link {
        mode: LinkMode::Static,
        subnet: Some(SUBNET.into()),
        ip: Some(ip.parse().unwrap()),
    })
}

fn address(m: &rackbox::model::Machine) -> Option<Ipv4Addr> {
    m.interfaces[0].address()
}

/// The network-config of the deploy task the machine's agent gets.
async fn deploy_network_config(service: &Service, m: &rackbox::model::Machine) -> Option<Value> {
    let plan = service
        .boot_plan(&m.interfaces[0].mac)
        .await
        .expect("boot plan");
    let BootPlan::Ephemeral { token, .. } = plan else {
        panic!("a deploying machine boots the ephemeral environment: {plan:?}");
    };
    let m = service.agent_machine(&token).expect("the boot token");
    let task = service
        .agent_task(&m, &token, "http://192.0.2.1:5240")
        .await
        .expect("a deploy task");
    let json = serde_json::to_value(&task).expect("task JSON");
    json["network_config"]
        .as_str()
        .map(|t| serde_json::from_str(t).expect("network-config is JSON"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_links_take_a_free_address_at_deploy_and_give_it_back_on_release() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db.redb"), Default::default()).unwrap();
    let images = ImageCache::open(store.clone(), CacheOptions::new(dir.path().join("images")))
        .await
        .unwrap();
    let image = futures_util::stream::iter([Ok(bytes::Bytes::from(vec![7u8; 4096]))]).boxed();
    images
        .import_image(
            ImageRequest {
                name: "bookworm".into(),
                os: Some("debian".into()),
                release: Some("bookworm".into()),
                arch: Some("amd64".into()),
                ..Default::default()
            },
            Source::Stream(image),
        )
        .await
        .expect("the image imports");
    let (service, _effects) = Service::new(store, images, Default::default()).unwrap();
    let service = Arc::new(service);
    service.set_subnets(vec![plan()]);
    for id in ["web001", "web002", "web003"] {
        service
            .insert_machine_record(common::machine(id, Status::Ready, 4, 8192))
            .await
            .unwrap();
    }
    let p = admin();
    // .2 holds an active DHCP lease: no auto link may take it.
    service
        .record_lease(Lease {
            ip: Ipv4Addr::new(192, 0, 2, 2),
            mac: Some("52:54:00:99:99:99".into()),
            state: LeaseState::Active,
            expires_ms: u64::MAX / 2,
            hostname: None,
            updated_ms: 1,
        })
        .await
        .unwrap();

    for id in ["web001", "web002"] {
        service.set_link(&p, id, "eth0", auto()).await.unwrap();
    }
    // A static link is checked: in the pool, the gateway, outside the subnet are refused.
    for bad in ["192.0.2.150", "192.0.2.254", "198.51.100.4", "192.0.2.1"] {
        let e = service
            .set_link(&p, "web003", "eth0", static_link(bad))
            .await
            .unwrap_err();
        assert!(
            matches!(e, rackbox::service::ServiceError::Invalid(_)),
            "{bad}: {e}"
        );
    }
    let web3 = service
        .set_link(&p, "web003", "eth0", static_link("192.0.2.3"))
        .await
        .unwrap();
    assert_eq!(address(&web3), Some(Ipv4Addr::new(192, 0, 2, 3)));
    let unknown = service
        .set_link(&p, "web003", "eth9", auto())
        .await
        .unwrap_err();
    assert!(unknown.to_string().contains("eth9"), "{unknown}");

    // Not deployed: no address yet.
    assert_eq!(address(&service.machine(&p, "web001").unwrap()), None);
    let deploy = || ActionRequest::default();
    let web1 = service.act(&p, "web001", "deploy", deploy()).await.unwrap();
    let web2 = service.act(&p, "web002", "deploy", deploy()).await.unwrap();
    // .1 is rackbox, .2 leased, .3 web003's static address: .4 and .5.
    assert_eq!(address(&web1), Some(Ipv4Addr::new(192, 0, 2, 4)));
    assert_eq!(address(&web2), Some(Ipv4Addr::new(192, 0, 2, 5)));
    // Links do not change under a deployed machine.
    let e = service
        .set_link(&p, "web001", "eth0", None)
        .await
        .unwrap_err();
    assert!(
        matches!(e, rackbox::service::ServiceError::Conflict(_)),
        "{e}"
    );
    // Another machine's address is refused as a static one.
    let e = service
        .set_link(&p, "web003", "eth0", static_link("192.0.2.4"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, rackbox::service::ServiceError::Conflict(_)),
        "{e}"
    );

    // The deploy task tells cloud-init.
    let config = deploy_network_config(&service, &web1)
        .await
        .expect("a network-config for an auto link");
    let e = &config["ethernets"]["eth0"];
    assert_eq!(e["match"]["macaddress"], web1.interfaces[0].mac.as_str());
    assert_eq!(e["addresses"][0], "192.0.2.4/24");
    assert_eq!(e["routes"][0]["to"], "0.0.0.0/0");
    assert_eq!(e["routes"][0]["via"], "192.0.2.254");
    assert_eq!(e["nameservers"]["addresses"][0], "192.0.2.53");

    // Release gives the address back: the next auto deploy takes it. (web001 stops deploying
    // first: a machine is released once its deploy is over.)
    service
        .act(&p, "web001", "abort", ActionRequest::default())
        .await
        .unwrap();
    let released = service
        .act(&p, "web001", "release", ActionRequest::default())
        .await
        .unwrap();
    assert_eq!(address(&released), None, "{:?}", released.interfaces);
    service
        .set_link(&p, "web003", "eth0", auto())
        .await
        .unwrap();
    let web3 = service.act(&p, "web003", "deploy", deploy()).await.unwrap();
    assert_eq!(
        address(&web3),
        Some(Ipv4Addr::new(192, 0, 2, 3)),
        "the lowest free address, .3 (web003's own old static one) before web001's .4"
    );
    assert_eq!(
        address(&service.machine(&p, "web002").unwrap()),
        Some(Ipv4Addr::new(192, 0, 2, 5))
    );
}
