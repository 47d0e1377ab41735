//! Full runs of a large scenario (a /16, 1,000 nodes, 50,000 pods rolling
//! hourly) and of smaller variants, with throughput in events, so the cost
//! per event can be compared across subnet sizes and node counts
//! (docs/simulation-model.md, "Performance").

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use subnetsim::scenario;
use subnetsim::sim::Simulation;

const LARGE: &str = include_str!("scenarios/large.yaml");

fn variant(nodes: u32, cidr: &str) -> String {
    LARGE
        .replace("    size: 1000", &format!("    size: {nodes}"))
        .replace(
            "    replicas: 50000",
            &format!("    replicas: {}", nodes * 50),
        )
        .replace("10.0.0.0/16", cidr)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("run");
    g.sample_size(10);
    for (label, nodes, cidr) in [
        ("100 nodes, /19", 100, "10.0.0.0/19"),
        ("100 nodes, /16", 100, "10.0.0.0/16"),
        ("1000 nodes, /16", 1000, "10.0.0.0/16"),
    ] {
        let text = variant(nodes, cidr);
        let sc = scenario::parse(&text, Path::new("large.yaml")).expect("bench scenario is valid");
        let events = Simulation::new(&sc, 1)
            .run(&mut |_| {})
            .summary
            .events_processed;
        g.throughput(Throughput::Elements(events));
        g.bench_function(label, |b| {
            b.iter(|| Simulation::new(&sc, 1).run(&mut |_| {}))
        });
    }
    g.finish();
    // scenarios/bench-large.yaml for one simulated day (the full 30 days
    // take 14.5-16.5 s a run here: measured with `subnetsim run`, see
    // docs/simulation-model.md).
    let mut g = c.benchmark_group("bench-large");
    g.sample_size(10);
    let text = include_str!("../scenarios/bench-large.yaml");
    let mut sc = scenario::parse(text, Path::new("bench-large.yaml")).expect("valid");
    sc.duration = subnetsim::time::Ms::from_secs(86_400);
    let events = Simulation::new(&sc, 1)
        .run(&mut |_| {})
        .summary
        .events_processed;
    g.throughput(Throughput::Elements(events));
    g.bench_function("1 day", |b| {
        b.iter(|| Simulation::new(&sc, 1).run(&mut |_| {}))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
