//! Golden tests of the ipamd model: the worked examples of the model
//! reference and seeds, and examples derived by hand from §4 for both modes,
//! scaling up and down. Each expected number is derived in a comment.

use subnetsim::catalog::Catalog;
use subnetsim::ipamd::steady::{steady_state, NodeHarness, SteadyReport};
use subnetsim::ipamd::{CniConfig, IpamEvent, PodAddr};
use subnetsim::time::Ms;

fn pd(w: u32) -> CniConfig {
    CniConfig {
        prefix_delegation: true,
        warm_prefix_target: w,
        ..CniConfig::default()
    }
}

fn secondary() -> CniConfig {
    CniConfig {
        prefix_delegation: false,
        ..CniConfig::default()
    }
}

fn steady(t: &str, cfg: &CniConfig, pods: u32, max_pods: u32) -> SteadyReport {
    let t = Catalog::embedded().get(t).unwrap();
    steady_state(t, cfg, pods, max_pods, 7).unwrap()
}

#[test]
fn seed_003_min_ip_25_warm_ip_5() {
    // Seed 003 / model reference §4: m5.large, MINIMUM_IP_TARGET=25,
    // WARM_IP_TARGET=5. Empty: short = max(5 - 0, 25 - 0) = 25 -> ceil(25/16)
    // = 2 prefixes in one call.
    let cfg = CniConfig {
        warm_ip_target: Some(5),
        minimum_ip_target: Some(25),
        ..pd(1)
    };
    let r = steady("m5.large", &cfg, 0, 110);
    assert_eq!((r.enis, r.prefixes), (1, 2));
    assert_eq!(r.subnet_addresses, 2 * 16 + 1);
    // 37 pods: available must stay >= 5, so 16p >= 42 -> 3 prefixes, 48 addresses.
    let r = steady("m5.large", &cfg, 37, 110);
    assert_eq!(r.prefixes, 3);
    assert_eq!(r.prefixes * 16, 48);
    assert_eq!(r.unused_ips, 48 - 37);
    assert_eq!(r.subnet_addresses, 48 + 1);
}

#[test]
fn warm_prefix_target_1_scale_up() {
    // W=1 counts free addresses, not free prefixes (§4):
    // 0 pods: available 0 < 16 -> 1 prefix.
    // 1 pod: 15 < 16 -> 2 prefixes (30 available afterwards; nothing more).
    // 30 pods: 2 prefixes give 2 available -> 3 prefixes (seed 002: "a node
    // with 30 pods uses 3 blocks").
    for (pods, want) in [(0, 1), (1, 2), (16, 2), (17, 3), (30, 3), (33, 4)] {
        let r = steady("m5.large", &pd(1), pods, 110);
        assert_eq!(r.prefixes, want, "{pods} pods");
        assert_eq!(r.enis, 1);
    }
}

#[test]
fn max_pods_stops_growth_seed_002_corrected() {
    // Seed 002: three t3.medium (3 ENIs x 5 slots), 110 pods each, W=1. The
    // seed says 8 blocks and 131 addresses per node. ipamd never grows once
    // 16 * prefixes >= max pods (110): 7 prefixes (112 addresses) suffice,
    // 5 on the primary ENI and 2 on a second ENI: 7 * 16 + 2 primaries = 114.
    let r = steady("t3.medium", &pd(1), 108, 110);
    assert_eq!(r.prefixes, 7);
    assert_eq!(r.prefixes_per_eni, vec![5, 2]);
    assert_eq!(r.subnet_addresses, 114);
    // In secondary-IP mode the seed's 18 addresses per node are right:
    // 15 pod addresses (3 ENIs x 5) + 3 ENI primaries.
    let r = steady("t3.medium", &secondary(), 15, 17);
    assert_eq!((r.enis, r.secondary_ips, r.subnet_addresses), (3, 15, 18));
}

#[test]
fn secondary_mode_warm_eni_target_keeps_a_spare_eni() {
    // m5.large, 9 slots per ENI, WARM_ENI_TARGET=1: start fills the primary
    // (9); one pod leaves 8 < 9 available -> a second ENI with 9 more.
    let r = steady("m5.large", &secondary(), 0, 29);
    assert_eq!((r.enis, r.secondary_ips, r.subnet_addresses), (1, 9, 10));
    let r = steady("m5.large", &secondary(), 1, 29);
    assert_eq!((r.enis, r.secondary_ips, r.subnet_addresses), (2, 18, 20));
    // All 27 pod addresses of 3 ENIs: 27 + 3 primaries.
    let r = steady("m5.large", &secondary(), 27, 29);
    assert_eq!(
        (r.enis, r.secondary_ips, r.subnet_addresses, r.unused_ips),
        (3, 27, 30, 0)
    );
}

#[test]
fn xen_falls_back_to_secondary_mode() {
    // t2 is Xen: PD asked for, secondary-IP mode used, with the CNI's log line.
    let r = steady("t2.medium", &pd(1), 10, 17);
    assert_eq!(r.mode, "secondary_ip");
    assert!(r.notes.iter().any(|n| n.contains("non-nitro")));
}

#[test]
fn custom_networking_uses_secondary_enis_only() {
    // Pods only on a secondary ENI in the ENIConfig subnet: the primary ENI
    // holds no prefix. 20 pods, W=1: 3 prefixes on ENI 2, + 2 primaries.
    let cfg = CniConfig {
        custom_networking: true,
        ..pd(1)
    };
    let r = steady("m5.large", &cfg, 20, 110);
    assert_eq!(r.prefixes_per_eni, vec![0, 3]);
    assert_eq!(r.subnet_addresses, 3 * 16 + 2);
}

#[test]
fn max_eni_limits_growth() {
    // MAX_ENI=1 on m5.large secondary mode: only the primary's 9 addresses.
    // With a kubelet max pods set above that (20), 11 pods are accepted and
    // 9 get an address; the note says why.
    let cfg = CniConfig {
        max_eni: Some(1),
        ..secondary()
    };
    let r = steady("m5.large", &cfg, 11, 20);
    assert_eq!(r.enis, 1);
    assert_eq!(r.pods_running, 9);
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("only 9 of 11") && n.contains("hold 9 addresses")),
        "{:?}",
        r.notes
    );
}

fn harness(t: &str, cfg: &CniConfig, max_pods: u32, seed: u64) -> NodeHarness {
    let t = Catalog::embedded().get(t).unwrap();
    let mut h = NodeHarness::new(t, cfg, max_pods, seed);
    h.settle().unwrap();
    h
}

fn add_pods(h: &mut NodeHarness, n: u32) -> Vec<PodAddr> {
    let mut v = Vec::new();
    for _ in 0..n {
        let a = match h.add_pod() {
            Some(a) => a,
            None => {
                h.settle().unwrap();
                h.add_pod().expect("address after growth")
            }
        };
        v.push(a);
        h.settle().unwrap();
    }
    v
}

/// When ipamd deleted ENIs.
fn eni_deletions(h: &NodeHarness) -> Vec<Ms> {
    h.log
        .iter()
        .filter_map(|(at, e)| matches!(e, IpamEvent::EniDeleted { .. }).then_some(*at))
        .collect()
}

fn releases(h: &NodeHarness) -> Vec<(Ms, u32)> {
    h.log
        .iter()
        .filter_map(|(t, e)| match e {
            IpamEvent::CidrsReleased { cidrs, .. } => Some((*t, *cidrs)),
            _ => None,
        })
        .collect()
}

#[test]
fn scale_down_releases_surplus_prefixes_on_the_grid() {
    // m5.large, W=1, 40 pods: 48 addresses leave 8 < 16 -> 4 prefixes.
    let mut h = harness("m5.large", &pd(1), 110, 3);
    let pods = add_pods(&mut h, 40);
    assert_eq!(h.ipam.stats().cidrs, 4);
    // All pods leave at once at T (a time off the 5 s grid).
    let t = h.now + Ms::from_millis(1234);
    h.run_until(t).unwrap();
    for a in pods {
        h.remove_pod(a);
    }
    h.settle().unwrap();
    // 4 free prefixes > W: over = 4 - 1 = 3, released in one decision, the
    // first on the grid after T, whatever the addresses' cool-down (prefix
    // release does not check it).
    let r = releases(&h);
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].1, 3);
    assert!(r[0].0 > t && r[0].0 <= t + Ms::from_secs(5));
    assert_eq!(h.ipam.stats().cidrs, 1);
    assert_eq!(h.subnet_addresses(), 16 + 1);
}

#[test]
fn scale_down_is_gated_to_once_per_30s() {
    let mut h = harness("m5.large", &pd(1), 110, 11);
    let pods = add_pods(&mut h, 40);
    assert_eq!(h.ipam.stats().cidrs, 4);
    // Group the pods by prefix (address / 16).
    let mut by_prefix: std::collections::BTreeMap<u32, Vec<PodAddr>> = Default::default();
    for a in pods {
        by_prefix.entry(a.offset / 16).or_default().push(a);
    }
    assert_eq!(
        by_prefix.len(),
        4,
        "random prefix choice spread 40 pods over all 4"
    );
    let mut groups = by_prefix.into_values();
    // Empty two prefixes: free = 2 > W = 1 -> over 1 -> one released.
    let t0 = h.now + Ms::from_secs(1);
    h.run_until(t0).unwrap();
    for a in groups
        .next()
        .unwrap()
        .into_iter()
        .chain(groups.next().unwrap())
    {
        h.remove_pod(a);
    }
    h.run_until(t0 + Ms::from_secs(5)).unwrap();
    let first = releases(&h);
    assert_eq!(first.len(), 1);
    let t1 = first[0].0;
    // Empty a third prefix right after: free is 2 again, but the next
    // release must wait 30 s (`shouldSkipDataStorePoolDecrease`: since <=
    // 30 s skips; the loop's 5 s period plus its work puts the decision on
    // the grid point 30 s later just past it), so it comes exactly then.
    h.run_until(t1 + Ms::from_secs(1)).unwrap();
    for a in groups.next().unwrap() {
        h.remove_pod(a);
    }
    h.settle().unwrap();
    let all = releases(&h);
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(
        all[1].0,
        t1 + Ms::from_secs(30),
        "the grid point 30 s after the last decrease (35 s before v1.23 fidelity)"
    );
    assert_eq!(h.ipam.stats().cidrs, 2);
}

#[test]
fn random_placement_leaves_partly_used_prefixes() {
    // 48 pods fill 3 prefixes and W=1 brings a 4th; 38 random pods leave.
    // The 10 that stay sit in several prefixes (pods pick a random prefix),
    // so fewer prefixes free up than ceil(10/16) + W = 2 would need.
    let mut h = harness("m5.large", &pd(1), 110, 5);
    let mut pods = add_pods(&mut h, 48);
    assert_eq!(h.ipam.stats().cidrs, 4);
    // Remove every pod but one in each of the first ... by a fixed stride.
    let mut keep = Vec::new();
    let mut i = 0;
    pods.retain(|a| {
        i += 1;
        if i % 5 == 0 {
            keep.push(*a);
            false
        } else {
            true
        }
    });
    for a in pods {
        h.remove_pod(a);
    }
    h.settle().unwrap();
    let used: std::collections::BTreeSet<u32> = keep.iter().map(|a| a.offset / 16).collect();
    let st = h.ipam.stats();
    assert_eq!(st.assigned, 9);
    // The 9 pods sit in all 4 prefixes, so none is free and none can go;
    // W=1 counts free addresses (55 >= 16), so none is added either. The
    // node holds 64 addresses for 9 pods.
    assert_eq!(used.len(), 4, "the 9 pods are spread over all prefixes");
    assert_eq!(st.cidrs, 4);
    assert_eq!(st.free_prefixes, 0);
    assert!(releases(&h).is_empty());
}

#[test]
fn cooldown_blocks_reuse_but_counts_as_available() {
    // WARM_IP_TARGET=1: one prefix holds 15 pods and one spare address.
    let cfg = CniConfig {
        warm_ip_target: Some(1),
        ..pd(1)
    };
    let mut h = harness("m5.large", &cfg, 110, 1);
    let mut pods = add_pods(&mut h, 15);
    assert_eq!(h.ipam.stats().cidrs, 1);
    let t = h.now + Ms::from_secs(1);
    h.run_until(t).unwrap();
    let gone = pods.remove(0);
    h.remove_pod(gone);
    // The 16th address is free: the next pod gets it, not the cooling one.
    let a = h.add_pod().unwrap();
    assert_ne!(a, gone);
    // Now the only free address is cooling: it counts as available, so the
    // pool is not low and nothing grows; the sandbox fails.
    h.run_until(t + Ms::from_secs(29)).unwrap();
    assert_eq!(h.add_pod(), None);
    h.settle().unwrap();
    assert_eq!(h.ipam.stats().cidrs, 1);
    // After 30 s the address is usable again.
    h.run_until(t + Ms::from_secs(30)).unwrap();
    assert_eq!(h.add_pod(), Some(gone));
}

#[test]
fn warm_prefix_target_0_flaps_as_the_source_does() {
    // Unsupported with PD: with no pod, 0 available -> allocate; then 1 free
    // prefix > 0 -> release; and again. Accepted with a warning, reported as
    // not settling rather than hidden.
    let t = Catalog::embedded().get("m5.large").unwrap();
    let mut h = NodeHarness::new(t, &pd(0), 110, 1);
    assert!(h.notes.iter().any(|n| n.contains("WARM_PREFIX_TARGET=0")));
    h.run_until(Ms::from_secs(120)).unwrap();
    let allocs = h
        .log
        .iter()
        .filter(|(_, e)| matches!(e, IpamEvent::CidrsAssigned { .. }))
        .count();
    assert!(allocs >= 3, "allocates again and again: {allocs}");
    // A release, then 5 s later an allocation (0 available), whose 0.5 s
    // latency moves the grid; the next release is on the first grid point
    // 30 s or more after the last one (the release gate): every 30.5 s.
    let r = releases(&h);
    assert!(r.len() >= 3, "{r:?}");
    for w in r.windows(2) {
        assert_eq!(w[1].0 - w[0].0, Ms::from_millis(30_500), "{r:?}");
    }
    assert!(h.settle().is_err());
    // With pods it is stable: 15 pods keep the prefix in use.
    let mut h = NodeHarness::new(t, &pd(0), 110, 1);
    h.run_until(Ms::from_secs(1)).unwrap();
    h.run_until(Ms::from_secs(2)).unwrap();
    for _ in 0..15 {
        h.add_pod().unwrap();
    }
    h.settle().unwrap();
    assert_eq!(h.ipam.stats().cidrs, 1);
}

#[test]
fn secondary_mode_eni_removed_after_age_and_cooldown() {
    // m5.large secondary, WARM_ENI_TARGET=1, 10 pods: 2 full ENIs (18) leave
    // 8 < 9 -> a third ENI (27 addresses).
    let mut h = harness("m5.large", &secondary(), 29, 2);
    let pods = add_pods(&mut h, 10);
    assert_eq!(h.ipam.num_enis(), 3);
    let t = h.now + Ms::from_secs(100);
    h.run_until(t).unwrap();
    for a in pods {
        h.remove_pod(a);
    }
    h.settle().unwrap();
    // Available 27 >= (1 + 1) * 9: free ENIs, one per decision, none while
    // an address on it cools. The third ENI came after the 10th pod and never
    // held one: it goes at the first decision after t. The second held pods:
    // it goes at the first decision after their cool-down (t + 30 s). 9
    // remain: a fresh node's pool.
    let deleted: Vec<Ms> = eni_deletions(&h);
    assert_eq!(deleted.len(), 2, "{deleted:?}");
    assert!(
        deleted[0] >= t && deleted[0] <= t + Ms::from_secs(5),
        "{deleted:?}"
    );
    assert!(
        deleted[1] >= t + Ms::from_secs(30) && deleted[1] < t + Ms::from_secs(35),
        "{deleted:?}"
    );
    assert_eq!(h.ipam.num_enis(), 1);
    assert_eq!(h.subnet_addresses(), 10);
}

#[test]
fn settled_pool_costs_nothing() {
    // Once settled, ipamd asks for no decision until a pod event.
    let mut h = harness("m5.large", &pd(1), 110, 1);
    assert_eq!(h.next, None);
    let n = h.log.len();
    h.run_until(Ms::from_secs(86_400)).unwrap();
    assert_eq!(h.log.len(), n);
    assert_eq!(h.next, None);
    // A pod arrives: the next decision is on the original 5 s grid.
    let a = h.add_pod().unwrap();
    let at = h.next.expect("a decision is due");
    assert_eq!(at.as_millis() % 5000, h.ipam.anchor().as_millis() % 5000);
    h.remove_pod(a);
}

#[test]
fn seed_001_m5_large_holds_110_pods_on_its_primary_eni() {
    // Seed 001: "an m5.large ENI has 10 slots, minus 1 for the primary = 9
    // prefixes = 144 IPs per ENI": 108 pods need 7 prefixes, all on the
    // primary ENI; no second ENI.
    let r = steady("m5.large", &pd(1), 108, 110);
    assert_eq!(r.prefixes_per_eni, vec![7]);
    assert_eq!(r.subnet_addresses, 7 * 16 + 1);
}

#[test]
fn every_catalogue_type_in_both_modes() {
    // `subnetsim node` answers for any type: the accounting identities hold
    // and no node holds more than its ENIs and slots allow.
    for t in Catalog::embedded().iter() {
        for cfg in [pd(1), secondary()] {
            let max_pods = if cfg.prefix_delegation && t.supports_prefix_delegation() {
                110
            } else {
                t.eni_max_pods()
            };
            let pods = (max_pods - 2).min(20);
            let r = steady_state(t, &cfg, pods, max_pods, 1)
                .unwrap_or_else(|e| panic!("{}: {e}", t.name));
            let cidrs = r.prefixes + r.secondary_ips;
            let per = if r.mode == "prefix_delegation" { 16 } else { 1 };
            assert_eq!(r.subnet_addresses, r.enis + cidrs * per, "{}", t.name);
            assert_eq!(r.unused_ips, cidrs * per - r.pods_running, "{}", t.name);
            assert!(r.enis <= t.enis, "{}", t.name);
            assert!(cidrs <= r.enis * t.slots_per_eni(), "{}", t.name);
            assert_eq!(
                r.pods_running,
                pods.min(t.enis * t.slots_per_eni() * per),
                "{}",
                t.name
            );
        }
    }
}

fn failures(h: &NodeHarness) -> Vec<(Ms, subnetsim::addr::Ec2Error, bool)> {
    h.log
        .iter()
        .filter_map(|(t, e)| match e {
            IpamEvent::AllocFailed { error, paused, .. } => Some((*t, *error, *paused)),
            _ => None,
        })
        .collect()
}

fn small(cidr: &str, t: &subnetsim::catalog::InstanceType, cfg: &CniConfig) -> NodeHarness {
    let ec2 = subnetsim::addr::Ec2Config {
        ip_placement: subnetsim::addr::Placement::Lowest,
        ..Default::default()
    };
    NodeHarness::in_subnet(t, cfg, 110, 1, cidr.parse().unwrap(), ec2)
}

#[test]
fn one_prefix_retry_then_the_120s_pause_without_discovery() {
    // ENABLE_SUBNET_DISCOVERY=false. A /26 has 4 blocks; the first and last
    // hold AWS-reserved addresses, so 2 can be delegated (the node's primary
    // goes to .4, in block 0). W=3: init asks for 3 at t=0, fails, and the
    // retry for 1 succeeds (done at 0.5 s). The pool loop's first decision
    // comes 2.5 s after init, at 3.0 s: 2 asked, 1 left: the retry gets it
    // (done 3.5 s). Next decision 8.5 s: 1 asked, none left, the retry for
    // 1 fails too: InsufficientCidrBlocks, growth pauses 120 s.
    let t = Catalog::embedded().get("m5.large").unwrap();
    let cfg = CniConfig {
        subnet_discovery: false,
        ..pd(3)
    };
    let mut h = small("10.0.0.0/26", t, &cfg);
    assert_eq!(h.init.done_at, Ms::from_millis(500));
    h.run_until(Ms::from_secs(300)).unwrap();
    let assigned: Vec<(Ms, u32)> = h
        .log
        .iter()
        .filter_map(|(t, e)| match e {
            IpamEvent::CidrsAssigned { cidrs, .. } => Some((*t, *cidrs)),
            _ => None,
        })
        .collect();
    assert_eq!(assigned, vec![(Ms::ZERO, 1), (Ms::from_millis(3_000), 1)]);
    let f = failures(&h);
    // Every failed EC2 call is recorded: the 3-prefix and 2-prefix requests
    // (retried), then the 1-prefix request and its retry, which pauses.
    let at = |ms: u64| Ms::from_millis(ms);
    let icb = subnetsim::addr::Ec2Error::InsufficientCidrBlocks;
    assert_eq!(
        &f[..4],
        &[
            (at(0), icb, false),
            (at(3_000), icb, false),
            (at(8_500), icb, false),
            (at(8_500), icb, true),
        ]
    );
    // The next attempt comes only after the 120 s pause, on the 5 s grid.
    assert_eq!(f[4].0, at(8_500 + 120_000));
    assert_eq!(h.ipam.stats().cidrs, 2);
}

#[test]
fn invalid_parameter_value_is_retried_every_5s_without_pause() {
    // A type with one slot per ENI: every prefix beyond the first needs a
    // new ENI created with it. In a /26 with W=2: the primary gets block 1,
    // a second ENI gets block 2 (its primary is .5, in block 0). Seventeen
    // pods leave 15 < 32 available: a third ENI is created with a prefix,
    // none is left: InvalidParameterValue (CNI #3105), which does not pause
    // growth: retried at every decision.
    let mut t = Catalog::embedded().get("m5.large").unwrap().clone();
    t.name = "test.oneslot".into();
    t.ipv4_per_eni = 2;
    let mut h = small("10.0.0.0/26", &t, &pd(2));
    h.settle().unwrap();
    assert_eq!(h.ipam.cidrs_per_eni(), vec![1, 1]);
    for _ in 0..17 {
        h.add_pod().expect("32 addresses");
    }
    let t0 = h.now;
    h.run_until(t0 + Ms::from_secs(30)).unwrap();
    let f = failures(&h);
    assert!(f.len() >= 6, "{f:?}");
    // Both ENIs are full (one slot each): no assign call, only the ENI
    // creation, failing every 5 s.
    for w in f.windows(2) {
        assert_eq!(w[0].1.code(), "InvalidParameterValue");
        assert!(!w[0].2, "not paused");
        assert_eq!(w[1].0 - w[0].0, Ms::from_secs(5), "{f:?}");
    }
    // The ENI whose creation failed was rolled back: still two ENIs.
    assert_eq!(h.ipam.num_enis(), 2);
}

#[test]
fn pd_eni_freed_when_it_ages_without_a_pod_event() {
    // t3.medium (5 slots per ENI), W=1: pods are added until a second ENI
    // is attached, then all leave at once, while that ENI is younger than
    // 60 s. The surplus free prefixes are released (at random). If the one
    // kept is on the primary ENI, the second ENI is empty but too young: it
    // must go at the first decision after it turns 60 s old, with no pod
    // event to prompt it. If the kept prefix is on the second ENI, that ENI
    // is needed for WARM_PREFIX_TARGET and stays.
    let mut aged_out = 0;
    for seed in 1..=8 {
        let mut h = harness("t3.medium", &pd(1), 110, seed);
        let mut pods = Vec::new();
        while h.ipam.num_enis() < 2 {
            pods.extend(add_pods(&mut h, 1));
        }
        // The ENI's age counts from when ipamd added it to the datastore,
        // after the 10 s create-and-attach (`ENI.createTime`).
        let created = h
            .log
            .iter()
            .find_map(|(at, e)| matches!(e, IpamEvent::EniCreated { .. }).then_some(*at))
            .unwrap()
            + Ms::from_secs(10);
        for a in pods {
            h.remove_pod(a);
        }
        h.settle().unwrap();
        let deleted: Vec<Ms> = eni_deletions(&h);
        if h.ipam.num_enis() == 1 {
            aged_out += 1;
            assert_eq!(deleted.len(), 1);
            let old_enough = created + Ms::from_secs(60);
            assert!(
                deleted[0] >= old_enough && deleted[0] < old_enough + Ms::from_secs(5),
                "seed {seed}: deleted {deleted:?}, created {created:?}"
            );
            assert_eq!(h.ipam.cidrs_per_eni(), vec![1]);
        } else {
            assert!(deleted.is_empty());
            assert_eq!(h.ipam.cidrs_per_eni(), vec![0, 1], "seed {seed}");
        }
    }
    assert!(aged_out > 0, "no seed exercised the age-blocked ENI");
}

#[test]
fn a_decision_that_would_do_nothing_is_not_scheduled() {
    // WARM_PREFIX_TARGET=1 on an m5.large: init took one prefix. The first
    // pod leaves 15 addresses, fewer than a prefix: the pool is low and a
    // decision adds a prefix.
    let mut h = harness("m5.large", &pd(1), 110, 1);
    h.add_pod().unwrap();
    assert!(h.next.is_some(), "low: a decision is due");
    h.settle().unwrap();
    assert_eq!(h.ipam.stats().cidrs, 2);
    // The second pod leaves 30 addresses and one free prefix: neither low
    // nor high, one ENI. A decision would do nothing: none is asked for,
    // and nothing happens however long the clock runs.
    let n = h.log.len();
    let b = h.add_pod().unwrap();
    assert_eq!(h.next, None);
    h.run_until(Ms::from_secs(3_600)).unwrap();
    assert_eq!(h.log.len(), n);
    // Its leaving changes nothing either (still one free prefix).
    h.remove_pod(b);
    assert_eq!(h.next, None);
    // Pods up to the last free prefix's first address: low again, and the
    // decision comes on the loop's 5 s grid.
    let grid = h.ipam.anchor();
    add_pods(&mut h, 16);
    assert_eq!(h.ipam.stats().cidrs, 3);
    let at = h.log.last().unwrap().0;
    assert!(at > grid);
    assert_eq!((at.as_millis() - grid.as_millis()) % 5000, 0);
}
