//! The failure path and the smaller rules of ipamd as CNI v1.23.1 has them
//! (`pkg/ipamd/ipamd.go`, `pkg/awsutils/awsutils.go`,
//! `pkg/ipamd/datastore/data_store.go`). Each test names the source function
//! and derives its expectation in a comment; each failed against the model
//! before these rules were put in.

use subnetsim::addr::ec2::CreateEniPrefixError;
use subnetsim::addr::{Ec2, Ec2Config, Ec2Error, Ec2Op, Placement, Subnet, SubnetId};
use subnetsim::catalog::{Catalog, InstanceType};
use subnetsim::ipamd::steady::NodeHarness;
use subnetsim::ipamd::{CniConfig, EniSubnets, IpamEvent, PodAddressPick};
use subnetsim::time::Ms;

fn pd(w: u32) -> CniConfig {
    CniConfig {
        prefix_delegation: true,
        warm_prefix_target: w,
        ..CniConfig::default()
    }
}

fn m5l() -> &'static InstanceType {
    Catalog::embedded().get("m5.large").unwrap()
}

fn lowest() -> Ec2Config {
    Ec2Config {
        ip_placement: Placement::Lowest,
        prefix_placement: Placement::Lowest,
        ..Ec2Config::default()
    }
}

/// Every failed EC2 call: (time, operation, subnet, error, paused).
fn calls(h: &NodeHarness) -> Vec<(Ms, Ec2Op, u32, Ec2Error, bool)> {
    h.log
        .iter()
        .filter_map(|(t, e)| match *e {
            IpamEvent::AllocFailed {
                op,
                subnet,
                error,
                paused,
                ..
            } => Some((*t, op, subnet.0, error, paused)),
            _ => None,
        })
        .collect()
}

/// A node in a /28: no /28 of it can be delegated (the first and last hold
/// AWS-reserved addresses, and there is no other).
fn starved(cfg: &CniConfig, ec2: Ec2Config) -> NodeHarness {
    NodeHarness::in_subnet(m5l(), cfg, 110, 1, "10.0.0.0/28".parse().unwrap(), ec2)
}

#[test]
fn discovery_on_moves_to_a_new_eni_in_the_same_decision_and_does_not_pause() {
    // `tryAssignPrefixes`: the request (1 prefix, W=1) fails, the 1-prefix
    // retry fails, and with ENABLE_SUBNET_DISCOVERY the loop `continue`s;
    // no ENI took a prefix, so `tryAllocateENI` runs in the same decision.
    // CreateNetworkInterface with a prefix fails with InvalidParameterValue
    // (CNI #3105): no pause. Init at 0 does this once; the loop's first
    // decision is 2.5 s later, then one every 5 s: three EC2 calls each.
    let mut h = starved(&pd(1), Ec2Config::default());
    h.run_until(Ms::from_millis(13_000)).unwrap();
    let c = calls(&h);
    let icb = Ec2Error::InsufficientCidrBlocks;
    let ipv = Ec2Error::InvalidParameterValue;
    for (k, t) in [0u64, 2_500, 7_500, 12_500].into_iter().enumerate() {
        let t = Ms::from_millis(t);
        assert_eq!(
            &c[3 * k..3 * k + 3],
            &[
                (t, Ec2Op::AssignPrefixes, 0, icb, false),
                (t, Ec2Op::AssignPrefixes, 0, icb, false),
                (t, Ec2Op::CreateEni, 0, ipv, false),
            ],
            "{c:?}"
        );
    }
    assert_eq!(c.len(), 12);
}

#[test]
fn discovery_on_pauses_only_when_the_eni_creation_fails_insufficient() {
    // Same node, but EC2 answers the ENI creation with
    // InsufficientCidrBlocks (the knob): `tryAllocateENI` sets
    // lastInsufficientCidrError: the 120 s pause starts then, and only then.
    let ec2 = Ec2Config {
        create_eni_prefix_error: CreateEniPrefixError::InsufficientCidrBlocks,
        ..Ec2Config::default()
    };
    let mut h = starved(&pd(1), ec2);
    h.run_until(Ms::from_secs(200)).unwrap();
    let c = calls(&h);
    let paused: Vec<(Ms, Ec2Op, bool)> = c.iter().map(|x| (x.0, x.1, x.4)).collect();
    assert_eq!(
        &paused[..3],
        &[
            (Ms::ZERO, Ec2Op::AssignPrefixes, false),
            (Ms::ZERO, Ec2Op::AssignPrefixes, false),
            (Ms::ZERO, Ec2Op::CreateEni, true),
        ]
    );
    // Init's failure pauses the loop too: the next calls come 120 s later,
    // on the grid that starts 2.5 s after init.
    assert_eq!(c[3].0, Ms::from_millis(122_500), "{c:?}");
}

#[test]
fn discovery_off_pauses_at_the_first_insufficient_error() {
    // Discovery off: `tryAssignPrefixes` returns the error, the pause starts,
    // and no ENI is tried.
    let cfg = CniConfig {
        subnet_discovery: false,
        ..pd(1)
    };
    let mut h = starved(&cfg, Ec2Config::default());
    h.run_until(Ms::from_secs(100)).unwrap();
    let c = calls(&h);
    assert_eq!(c.len(), 2, "{c:?}");
    assert!(c.iter().all(|x| x.1 == Ec2Op::AssignPrefixes));
    assert_eq!((c[0].4, c[1].4), (false, true));
}

#[test]
fn secondary_mode_follows_the_same_rules() {
    // `tryAssignIPs` has the same `continue` under discovery. An m5.xlarge
    // (14 secondary slots per ENI) in a /28: 11 usable addresses, the
    // node's primary takes one. WARM_ENI_TARGET=1 asks for 14 each time:
    // the call fails, the retry for 1 succeeds, one address per decision,
    // until all 10 are on the primary ENI. Then the 14 and the retry for 1
    // fail, the loop moves on, and the ENI creation fails with
    // InsufficientFreeAddressesInSubnet in the same decision: that pauses.
    let cfg = CniConfig {
        prefix_delegation: false,
        ..CniConfig::default()
    };
    let t = Catalog::embedded().get("m5.xlarge").unwrap();
    let mut h = NodeHarness::in_subnet(t, &cfg, 58, 1, "10.0.0.0/28".parse().unwrap(), lowest());
    h.run_until(Ms::from_secs(300)).unwrap();
    assert_eq!(h.ipam.stats().total, 10);
    let c = calls(&h);
    let ifa = Ec2Error::InsufficientFreeAddressesInSubnet;
    let k = c.iter().position(|x| x.4).expect("a paused failure");
    let at = c[k].0;
    let last: Vec<(Ms, Ec2Op, Ec2Error, bool)> =
        c[k - 2..=k].iter().map(|x| (x.0, x.1, x.3, x.4)).collect();
    assert_eq!(
        last,
        vec![
            (at, Ec2Op::AssignPrivateIps, ifa, false),
            (at, Ec2Op::AssignPrivateIps, ifa, false),
            (at, Ec2Op::CreateEni, ifa, true),
        ]
    );
    // Ten decisions each failed once before their retry succeeded.
    assert_eq!(k - 2, 10);
    // Paused: the next call is 120 s later.
    assert_eq!(c[k + 1].0, at + Ms::from_secs(120));
}

/// A node in a starved /28 (subnet 0) whose zone also has `other` (subnet
/// 1, an empty /24), with subnet discovery allowed to use it or not.
fn with_second_subnet(use_other: bool) -> NodeHarness {
    let mut ec2 = Ec2::new(Ec2Config::default());
    let node = ec2.add_subnet(Subnet::new("10.0.0.0/28".parse().unwrap(), vec![]).unwrap());
    let other = ec2.add_subnet(Subnet::new("10.0.1.0/24".parse().unwrap(), vec![]).unwrap());
    NodeHarness::with_ec2(m5l(), &pd(1), 110, 1, ec2, node, node, |mut s| {
        s.eni_subnets = EniSubnets::Discover(if use_other {
            vec![node, other]
        } else {
            vec![node]
        });
        s
    })
}

#[test]
fn a_tagged_second_subnet_takes_the_new_eni_and_its_pods() {
    // `createENI` under discovery: the zone's valid subnets, most free
    // addresses first (`GetVpcSubnets`): the /24 (251 free) before the /28.
    // The ENI is created there with its prefix; the node's pods get
    // addresses from it although its own subnet has no /28 left.
    let mut h = with_second_subnet(true);
    h.settle().unwrap();
    assert!(h.init.ok);
    assert_eq!(h.ipam.eni_subnets(), vec![SubnetId(0), SubnetId(1)]);
    assert_eq!(h.ipam.cidrs_per_eni(), vec![0, 1]);
    let a = h.add_pod().expect("an address in the second subnet");
    assert_eq!(a.subnet, SubnetId(1));
    // Without the tag (only the node's own subnet valid): no ENI, no address.
    let mut h = with_second_subnet(false);
    h.run_until(Ms::from_secs(60)).unwrap();
    assert_eq!(h.ipam.num_enis(), 1);
    assert_eq!(h.add_pod(), None);
}

#[test]
fn ready_with_an_empty_pool_unless_custom_networking() {
    // `handlePreScaling` swallows Insufficient* errors: init succeeds, the
    // node becomes Ready at once with nothing in its pool.
    let h = starved(&pd(1), Ec2Config::default());
    assert!(h.init.ok);
    assert_eq!(h.init.done_at, Ms::ZERO);
    assert!(h.ipam.pool_empty());
    // Under custom networking with an empty pool init fails ("Failed to
    // attach any ENIs for custom networking"): the node stays NotReady.
    let mut ec2 = Ec2::new(Ec2Config::default());
    let node = ec2.add_subnet(Subnet::new("10.0.0.0/24".parse().unwrap(), vec![]).unwrap());
    let pods = ec2.add_subnet(Subnet::new("100.64.0.0/28".parse().unwrap(), vec![]).unwrap());
    let cfg = CniConfig {
        custom_networking: true,
        ..pd(1)
    };
    let mut h = NodeHarness::with_ec2(m5l(), &cfg, 110, 1, ec2, node, pods, |s| s);
    assert!(!h.init.ok);
    assert_eq!(h.init.next, None, "aws-node is down: no pool decisions");
    assert_eq!(h.ipam.on_pod_change(Ms::from_secs(1), &cfg), None);
}

#[test]
fn the_first_pool_decision_comes_2_5_s_after_init() {
    // `StartNodeIPPoolManager` sleeps ipPoolMonitorInterval/2 before each
    // decision. W=2 in a /24: init asks for 2 prefixes at 0 (done 0.5 s),
    // so the loop's first decision is at 3.0 s, then 8.0 s, ...
    let h = NodeHarness::in_subnet(
        m5l(),
        &pd(2),
        110,
        1,
        "10.0.0.0/24".parse().unwrap(),
        lowest(),
    );
    assert_eq!(h.init.done_at, Ms::from_millis(500));
    assert_eq!(h.next, Some(Ms::from_millis(3_000)));
    assert_eq!(h.ipam.anchor(), Ms::from_millis(3_000));
}

#[test]
fn a_secondary_address_without_a_pod_is_freed_while_it_cools() {
    // `FindFreeableCidrs` does not look at cool-down. Secondary-IP mode with
    // WARM_IP_TARGET=2: 6 pods then all leave at T; over = 8 - 2 = 6
    // addresses are released at the first decision after T, although each
    // cools until T + 30 s.
    let cfg = CniConfig {
        prefix_delegation: false,
        warm_ip_target: Some(2),
        ..CniConfig::default()
    };
    let mut h =
        NodeHarness::in_subnet(m5l(), &cfg, 29, 1, "10.0.0.0/24".parse().unwrap(), lowest());
    h.settle().unwrap();
    let mut pods = Vec::new();
    for _ in 0..6 {
        let a = match h.add_pod() {
            Some(a) => a,
            None => {
                h.settle().unwrap();
                h.add_pod().unwrap()
            }
        };
        pods.push(a);
        h.settle().unwrap();
    }
    assert_eq!(h.ipam.stats().total, 8);
    let t = h.now + Ms::from_secs(40);
    h.run_until(t).unwrap();
    for a in pods {
        h.remove_pod(a);
    }
    h.settle().unwrap();
    let released: Vec<(Ms, u32)> = h
        .log
        .iter()
        .filter_map(|(at, e)| match e {
            IpamEvent::CidrsReleased { cidrs, .. } if *at >= t => Some((*at, *cidrs)),
            _ => None,
        })
        .collect();
    assert_eq!(released.iter().map(|r| r.1).sum::<u32>(), 6, "{released:?}");
    assert!(
        released[0].0 <= t + Ms::from_secs(5),
        "released while cooling: {released:?}"
    );
}

#[test]
fn pod_addresses_follow_go_map_order() {
    // Two ENIs with free addresses (W=10 on an m5.large: 9 prefixes on the
    // primary, 1 on a second ENI). `AssignPodIPv4Address` ranges over the
    // ENI map: the primary (slot 0) comes first for 7 of Go's 8 start
    // slots. Over 400 nodes the share is 7/8 (binomial sd 1.7%); `random`
    // picks each ENI half the time.
    let share = |pick: PodAddressPick| {
        let cfg = CniConfig {
            pod_address_pick: pick,
            ..pd(10)
        };
        let mut primary = 0;
        for seed in 0..400 {
            let mut h = NodeHarness::in_subnet(
                m5l(),
                &cfg,
                250,
                seed,
                "10.0.0.0/20".parse().unwrap(),
                Ec2Config::default(),
            );
            h.settle().unwrap();
            assert_eq!(h.ipam.cidrs_per_eni(), vec![9, 1]);
            let primary_subnet_addrs: Vec<u32> = {
                let info = h.ec2.enis().find(|(_, e)| e.serial == 0).unwrap().1;
                info.prefixes.clone()
            };
            let a = h.add_pod().unwrap();
            if primary_subnet_addrs.contains(&(a.offset / 16)) {
                primary += 1;
            }
        }
        primary as f64 / 400.0
    };
    let m = share(PodAddressPick::MapOrder);
    assert!((0.83..0.92).contains(&m), "map order: {m}");
    let r = share(PodAddressPick::Random);
    assert!((0.42..0.58).contains(&r), "random: {r}");
}
