//! Visual regression test of the charts: fixed, hand-built results (not a
//! simulation, so only a change in the charts changes the pictures) are
//! rendered and compared with the reference images in `tests/charts/`,
//! within a small tolerance. A chart change shows up in review as a changed
//! reference image: after looking at the new pictures, write them with
//! `UPDATE_CHART_REFERENCES=1 cargo test --test charts`.

use std::path::PathBuf;

use subnetsim::addr::BlockClass;
use subnetsim::inspect::DescribeNetworkInterfaces;
use subnetsim::output::charts;
use subnetsim::sim::observe::{Holder, RunResult, SampleRow, Snapshot, SubnetInfo, Summary};
use subnetsim::time::Ms;

fn sample(t: u64, subnet: &str, cidr: &str, k: u64) -> SampleRow {
    // Smooth, deterministic shapes: free addresses falling then flat,
    // delegatable blocks falling to zero, pods waiting once blocks are gone,
    // failures accumulating from then on.
    let gone = k >= 30;
    SampleRow {
        time_s: t.to_string(),
        subnet: subnet.into(),
        cidr: cidr.into(),
        free_ips: (200 - (k.min(30) * 4)) as u32,
        delegatable_blocks: if gone { 0 } else { (10 - k / 3) as u32 },
        free_blocks: 0,
        fragmented_blocks: 0,
        full_blocks: 0,
        prefix_allocated_blocks: 0,
        fragmentation_score: None,
        nodes: 3 + k.is_multiple_of(20) as u32,
        nodes_ready: 3,
        nodes_ready_empty_pool: 0,
        pods_running: 100,
        pods_waiting_ip: if gone { 12 + (k % 3) as u32 } else { 0 },
        pods_pending: if k < 3 {
            40
        } else {
            k.is_multiple_of(7) as u32
        },
        insufficient_cidr_blocks: if gone { (k - 29) * 12 } else { 0 },
        insufficient_free_addresses: if k >= 50 { k - 49 } else { 0 },
        invalid_parameter_value: if gone { (k - 29) * 6 } else { 0 },
        nodes_cordoned: 0,
        nodes_launched: 3,
        nodes_terminated: 0,
        spot_notices: 0,
        spot_interruptions: 0,
        consolidations: 0,
        scale_downs: 0,
        time: Ms::from_secs(t),
    }
}

fn snapshot(time: u64, blocks: usize, holders: Vec<Holder>, at_failure: bool) -> Snapshot {
    let classes: Vec<BlockClass> = (0..blocks)
        .map(|b| match b % 7 {
            _ if b == 0 || b == blocks - 1 => BlockClass::HasReserved,
            0 | 3 => BlockClass::Fragmented,
            1 | 2 | 4 => BlockClass::PrefixAllocated,
            5 => BlockClass::Full,
            _ => BlockClass::Free,
        })
        .collect();
    Snapshot {
        time: Ms::from_secs(time),
        delegatable: classes.iter().filter(|&&c| c == BlockClass::Free).count() as u32,
        free_ips: 120,
        in_reservation: (0..blocks).map(|b| (8..12).contains(&b)).collect(),
        classes,
        holders,
        at_failure,
    }
}

/// A /26 (address by address) and a /20 (block by block).
fn fixture() -> RunResult {
    let holders = |shift: usize| -> Vec<Holder> {
        (0..64)
            .map(|a| match (a + shift) % 16 {
                _ if a < 4 || a == 63 => Holder::AwsReserved,
                _ if (16..32).contains(&a) => Holder::PrefixInUse,
                _ if (32..48).contains(&a) => Holder::PrefixUnused,
                5 => Holder::NodePrimary,
                7 => Holder::EniPrimary,
                9 => Holder::LoadBalancer,
                11 => Holder::Lambda,
                13 => Holder::ControlPlane,
                _ => Holder::Free,
            })
            .collect()
    };
    let mut chart_samples = Vec::new();
    for k in 0..60u64 {
        chart_samples.push(sample(k * 60, "small", "10.0.0.0/26", k));
        chart_samples.push(sample(k * 60, "large", "10.16.0.0/20", k));
    }
    RunResult {
        subnets: vec![
            SubnetInfo {
                name: "small".into(),
                cidr: "10.0.0.0/26".into(),
                zone: "z1".into(),
                reservations: String::new(),
            },
            SubnetInfo {
                name: "large".into(),
                cidr: "10.16.0.0/20".into(),
                zone: "z1".into(),
                reservations: "10.16.0.128/26 prefix".into(),
            },
        ],
        warmup: Ms::from_secs(300),
        subtitle:
            "prefix delegation · WARM_PREFIX_TARGET=1 · subnet discovery on · 3 × m5.large (p)"
                .into(),
        chart_samples,
        worst: vec![
            snapshot(1800, 4, holders(0), true),
            snapshot(1800, 256, Vec::new(), false),
        ],
        end: vec![
            snapshot(3540, 4, holders(3), false),
            snapshot(3540, 256, Vec::new(), false),
        ],
        summary: Summary {
            scenario: "fixture".into(),
            seed: 7,
            simulated_duration: Ms::from_secs(3540),
            ..Summary::default()
        },
        final_enis: DescribeNetworkInterfaces::default(),
    }
}

fn compare(name: &str, png: &[u8]) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/charts")
        .join(name);
    if std::env::var("UPDATE_CHART_REFERENCES").is_ok() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, png).unwrap();
        return;
    }
    let want = image::load_from_memory(&std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (write it with UPDATE_CHART_REFERENCES=1)",
            path.display()
        )
    }))
    .unwrap()
    .to_rgb8();
    let got = image::load_from_memory(png).unwrap().to_rgb8();
    assert_eq!(got.dimensions(), want.dimensions(), "{name}: size changed");
    let differ = got
        .pixels()
        .zip(want.pixels())
        .filter(|(a, b)| a.0.iter().zip(b.0.iter()).any(|(x, y)| x.abs_diff(*y) > 40))
        .count();
    let total = (got.width() * got.height()) as usize;
    assert!(
        differ * 1000 <= total * 2,
        "{name}: {differ} of {total} pixels differ from tests/charts/{name}; if the change is wanted, look at the new chart and run UPDATE_CHART_REFERENCES=1 cargo test --test charts"
    );
}

#[test]
fn charts_match_their_reference_images() {
    let r = fixture();
    let (png, svg) = charts::free_ips(&r).unwrap();
    compare("free-ips.png", &png);
    let svg = String::from_utf8(svg).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("fixture (seed 7)"));
    let (png, svg) = charts::subnet_map(&r).unwrap();
    compare("subnet-map.png", &png);
    assert!(String::from_utf8(svg).unwrap().contains("has AWS-reserved"));
}

#[test]
fn a_changed_chart_is_seen() {
    // The comparison is not blind: the same fixture with other data fails.
    if std::env::var("UPDATE_CHART_REFERENCES").is_ok() {
        return; // never write an altered chart as the reference
    }
    let mut r = fixture();
    for s in &mut r.chart_samples {
        s.free_ips /= 2;
    }
    let (png, _) = charts::free_ips(&r).unwrap();
    let res = std::panic::catch_unwind(|| compare("free-ips.png", &png));
    assert!(res.is_err(), "a different chart passed the comparison");
}
