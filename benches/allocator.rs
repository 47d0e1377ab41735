//! Cost per EC2 operation on a half-fragmented /16 (4,096 blocks, 65,536
//! addresses): the allocator must answer from maintained indexes, not scans.

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use subnetsim::addr::ec2::{EniOwner, OwnerKind};
use subnetsim::addr::{Ec2, Ec2Config, EniId, Placement, Subnet, SubnetId};

fn owner() -> EniOwner {
    EniOwner {
        kind: OwnerKind::EksPod,
        instance: None,
        device_index: 1,
    }
}

/// A /16 where about half the blocks hold one random single address.
fn half_fragmented(placement: Placement) -> (Ec2, SubnetId, EniId, ChaCha8Rng) {
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let mut ec2 = Ec2::new(Ec2Config {
        ip_placement: Placement::Random,
        prefix_placement: placement,
        ..Ec2Config::default()
    });
    let s = ec2.add_subnet(Subnet::new("10.0.0.0/16".parse().unwrap(), vec![]).unwrap());
    // The fragmenting addresses sit on their own ENIs (as on real nodes,
    // at most 49 secondaries each); the measured ENI starts empty.
    let mut filler = ec2.create_eni(s, owner(), 0, &mut rng).unwrap();
    while ec2.stats(s).fragmented_blocks < 2048 {
        if ec2.eni(filler).secondary.len() == 49 {
            filler = ec2.create_eni(s, owner(), 0, &mut rng).unwrap();
        }
        ec2.assign_private_ips(filler, 1, &mut rng).unwrap();
    }
    let eni = ec2.create_eni(s, owner(), 0, &mut rng).unwrap();
    (ec2, s, eni, rng)
}

fn bench(c: &mut Criterion) {
    for placement in [Placement::Random, Placement::Lowest] {
        let (mut ec2, s, eni, mut rng) = half_fragmented(placement);
        c.bench_function(
            &format!(
                "prefix assign+release /16 half-fragmented ({})",
                placement.name()
            ),
            |b| {
                b.iter(|| {
                    ec2.assign_prefixes(eni, 1, &mut rng).unwrap();
                    let blk = *ec2.eni(eni).prefixes.last().unwrap();
                    ec2.unassign_prefix(eni, blk).unwrap();
                })
            },
        );
        c.bench_function(
            &format!(
                "ip assign+release /16 half-fragmented ({})",
                placement.name()
            ),
            |b| {
                b.iter(|| {
                    ec2.assign_private_ips(eni, 1, &mut rng).unwrap();
                    let off = *ec2.eni(eni).secondary.last().unwrap();
                    ec2.unassign_ip(eni, off).unwrap();
                })
            },
        );
        c.bench_function(&format!("stats /16 ({})", placement.name()), |b| {
            b.iter(|| black_box(ec2.stats(s)))
        });
    }
    c.bench_function("eni create(1 prefix)+delete /16 half-fragmented", |b| {
        b.iter_batched_ref(
            || half_fragmented(Placement::Random),
            |(ec2, s, _, rng)| {
                let e = ec2.create_eni(*s, owner(), 1, rng).unwrap();
                ec2.delete_eni(e).unwrap();
            },
            BatchSize::LargeInput,
        )
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
