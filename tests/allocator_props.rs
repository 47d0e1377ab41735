//! Property tests of the allocator invariants: after any sequence of EC2
//! operations, no address or block is held twice, prefixes are aligned /28s,
//! AWS-reserved addresses are never assigned, explicit reservations are never
//! used automatically, and every maintained counter equals a recount.

use std::collections::HashSet;

use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use subnetsim::addr::ec2::{EniOwner, OwnerKind};
use subnetsim::addr::{Ec2, Ec2Config, Placement, Reservation, ReservationType, Subnet};

fn pick<T: Copy>(v: &[T], i: usize) -> Option<T> {
    if v.is_empty() {
        None
    } else {
        Some(v[i % v.len()])
    }
}

#[derive(Debug, Clone)]
enum Op {
    Create(u32),
    Ips(usize, u32),
    Prefixes(usize, u32),
    UnassignIp(usize, usize),
    UnassignPrefix(usize, usize),
    Delete(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u32..3).prop_map(Op::Create),
        3 => (any::<usize>(), 1u32..5).prop_map(|(e, n)| Op::Ips(e, n)),
        4 => (any::<usize>(), 1u32..4).prop_map(|(e, n)| Op::Prefixes(e, n)),
        2 => (any::<usize>(), any::<usize>()).prop_map(|(e, i)| Op::UnassignIp(e, i)),
        2 => (any::<usize>(), any::<usize>()).prop_map(|(e, i)| Op::UnassignPrefix(e, i)),
        1 => any::<usize>().prop_map(Op::Delete),
    ]
}

fn placement() -> impl Strategy<Value = Placement> {
    prop_oneof![Just(Placement::Random), Just(Placement::Lowest)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn allocator_invariants(
        prefix_len in 22u8..=26,
        with_res in any::<bool>(),
        ip_pl in placement(),
        pf_pl in placement(),
        fallback in any::<bool>(),
        ips_in_res in any::<bool>(),
        seed in any::<u64>(),
        ops in proptest::collection::vec(op(), 1..150),
    ) {
        let cidr: ipnet::Ipv4Net = format!("10.1.0.0/{prefix_len}").parse().unwrap();
        // A prefix reservation on the second quarter, an explicit one on the
        // last eighth.
        let size = 1u32 << (32 - prefix_len);
        let base = u32::from(cidr.network());
        let mut res = Vec::new();
        if with_res {
            res.push(Reservation {
                cidr: ipnet::Ipv4Net::new((base + size / 4).into(), prefix_len + 2).unwrap(),
                kind: ReservationType::Prefix,
            });
            res.push(Reservation {
                cidr: ipnet::Ipv4Net::new((base + size - size / 8).into(), prefix_len + 3).unwrap(),
                kind: ReservationType::Explicit,
            });
        }
        let explicit: Vec<ipnet::Ipv4Net> = res
            .iter()
            .filter(|r| r.kind == ReservationType::Explicit)
            .map(|r| r.cidr)
            .collect();
        let mut ec2 = Ec2::new(Ec2Config {
            ip_placement: ip_pl,
            prefix_placement: pf_pl,
            prefix_reservation_fallback: fallback,
            ips_in_prefix_reservations: ips_in_res,
            ..Ec2Config::default()
        });
        let sid = ec2.add_subnet(Subnet::new(cidr, res).unwrap());
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut enis = Vec::new();
        let owner = EniOwner { kind: OwnerKind::EksPod, instance: None, device_index: 1 };
        for op in ops {
            match op {
                Op::Create(n) => {
                    if let Ok(e) = ec2.create_eni(sid, owner.clone(), n, &mut rng) {
                        enis.push(e);
                    }
                }
                Op::Ips(e, n) => if let Some(e) = pick(&enis, e) {
                    let before = ec2.eni(e).secondary.len();
                    match ec2.assign_private_ips(e, n, &mut rng) {
                        Ok(()) => prop_assert_eq!(ec2.eni(e).secondary.len(), before + n as usize),
                        Err(_) => prop_assert_eq!(ec2.eni(e).secondary.len(), before),
                    }
                },
                Op::Prefixes(e, n) => if let Some(e) = pick(&enis, e) {
                    let before = ec2.eni(e).prefixes.len();
                    let deleg = ec2.delegatable_blocks(sid);
                    match ec2.assign_prefixes(e, n, &mut rng) {
                        Ok(()) => prop_assert_eq!(ec2.eni(e).prefixes.len(), before + n as usize),
                        Err(err) => {
                            prop_assert_eq!(err.code(), "InsufficientCidrBlocks");
                            prop_assert!(deleg < n, "refused with {} delegatable for {}", deleg, n);
                            prop_assert_eq!(ec2.eni(e).prefixes.len(), before);
                        }
                    }
                },
                Op::UnassignIp(e, i) => if let Some(e) = pick(&enis, e) {
                    let v = ec2.eni(e).secondary.clone();
                    if let Some(off) = pick(&v, i) { ec2.unassign_ip(e, off).unwrap(); }
                },
                Op::UnassignPrefix(e, i) => if let Some(e) = pick(&enis, e) {
                    let v = ec2.eni(e).prefixes.clone();
                    if let Some(b) = pick(&v, i) { ec2.unassign_prefix(e, b).unwrap(); }
                },
                Op::Delete(e) => if !enis.is_empty() {
                    let id = enis.swap_remove(e % enis.len());
                    ec2.delete_eni(id).unwrap();
                },
            }
            // Invariants after every operation.
            let s = ec2.subnet(sid);
            let mut seen = HashSet::new();
            for (_, info) in ec2.enis() {
                let mut addrs: Vec<u32> = vec![info.primary];
                addrs.extend(&info.secondary);
                for &b in &info.prefixes {
                    let net = s.block_cidr(b);
                    prop_assert_eq!(net.prefix_len(), 28);
                    prop_assert_eq!(u32::from(net.network()) % 16, 0, "aligned");
                    addrs.extend(b * 16..b * 16 + 16);
                }
                for a in addrs {
                    prop_assert!(seen.insert(a), "address offset {} held twice", a);
                    prop_assert!(!s.is_aws_reserved(a), "AWS-reserved offset {} assigned", a);
                    let ip = s.addr_at(a);
                    prop_assert!(!explicit.iter().any(|n| n.contains(&ip)),
                        "explicit reservation used automatically at {}", ip);
                }
            }
            prop_assert_eq!(s.recount(fallback), ec2.stats(sid));
        }
    }
}
