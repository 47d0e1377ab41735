//! The floor a discrete-event simulation stands on: a bare binary-heap
//! event loop (pop the earliest `(time, seq)`, push one event) at the
//! pending-queue size `scenarios/bench-large.yaml` really has: 5,186 events
//! on average over its 30 days, taken at every event (its `summary.json`
//! reports the peak, `peak_queue_len`: 8,835; until node expiry became one
//! event per pool the queue averaged 70,372, nearly all of it expiries of
//! nodes long gone, and this bench used the first day's peak, 11,241).
//! `benches/simulation.rs` measures bench-large's cost per event in the same
//! `cargo bench` run, so the ratio is measured on one machine at one time
//! (docs/simulation-model.md, "Performance").
//!
//! The same loop with each event also touching `K` cache lines, each found
//! through the one before (as a pod event finds its node in the pod, and
//! its node's pod list and prefixes in the node), at random in a working
//! set larger than this machine's L2: what an event that touches `K` cold
//! lines costs at the least, whatever its instructions.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use subnetsim::engine::EventQueue;
use subnetsim::time::Ms;

/// bench-large's mean queue length over its month.
const QUEUE: usize = 5_186;
const STEPS: u64 = 100_000;

/// A cheap deterministic delay in milliseconds (xorshift), spread like the
/// simulation's: most events near, some hours away.
fn delay(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    match *x % 8 {
        0..=4 => *x % 1_000,
        5 | 6 => *x % 60_000,
        _ => *x % 3_600_000,
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("event loop");
    g.throughput(Throughput::Elements(STEPS));
    // The bare heap: (time, seq) and a 16-byte payload, as the
    // simulation's events.
    g.bench_function("bare binary heap, pop + push", |b| {
        let mut heap: BinaryHeap<Reverse<(u64, u64, [u32; 4])>> = BinaryHeap::new();
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut seq = 0u64;
        for _ in 0..QUEUE {
            heap.push(Reverse((delay(&mut x), seq, [0; 4])));
            seq += 1;
        }
        b.iter(|| {
            for _ in 0..STEPS {
                let Reverse((t, _, ev)) = heap.pop().expect("never empty");
                black_box(ev);
                heap.push(Reverse((t + delay(&mut x), seq, ev)));
                seq += 1;
            }
        })
    });
    // The engine's queue (a radix heap on integer time) with the same load.
    g.bench_function("engine EventQueue, pop + push", |b| {
        let mut q: EventQueue<[u32; 4]> = EventQueue::new();
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..QUEUE {
            q.schedule(Ms(delay(&mut x)), [0; 4]);
        }
        b.iter(|| {
            for _ in 0..STEPS {
                let (t, ev) = q.pop_until(Ms::MAX).expect("never empty");
                black_box(ev);
                q.schedule(t + Ms(delay(&mut x)), ev);
            }
        })
    });
    // The bare heap, each event then touching `k` dependent cold lines.
    for k in [1usize, 2, 4, 8] {
        g.bench_function(
            format!(
                "bare binary heap + {k} dependent cold line{}",
                if k == 1 { "" } else { "s" }
            ),
            |b| {
                let mut lines = cold_lines();
                let n = lines.len() as u64;
                let mut heap: BinaryHeap<Reverse<(u64, u64, [u32; 4])>> = BinaryHeap::new();
                let mut x = 0x9E37_79B9_7F4A_7C15u64;
                let mut seq = 0u64;
                for _ in 0..QUEUE {
                    let start = (delay(&mut x) ^ x) % n;
                    heap.push(Reverse((delay(&mut x), seq, [start as u32, 0, 0, 0])));
                    seq += 1;
                }
                b.iter(|| {
                    for _ in 0..STEPS {
                        let Reverse((t, _, mut ev)) = heap.pop().expect("never empty");
                        let mut i = ev[0] as usize;
                        for _ in 0..k {
                            let line = &mut lines[i];
                            line.0[1] += 1; // a handler writes what it reads
                            i = line.0[0] as usize;
                        }
                        ev[0] = i as u32;
                        heap.push(Reverse((t + delay(&mut x), seq, black_box(ev))));
                        seq += 1;
                    }
                })
            },
        );
    }
    g.finish();
}

/// A cache line of the cold working set: the index of the next line to
/// read, and a counter.
#[repr(align(64))]
struct Line([u64; 8]);

/// Lines linked in one random cycle (Sattolo's shuffle) over
/// `COLD_BYTES`.
fn cold_lines() -> Vec<Line> {
    let n = COLD_BYTES / 64;
    let mut next: Vec<u64> = (0..n as u64).collect();
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    for i in (1..n).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let j = (x % i as u64) as usize;
        next.swap(i, j);
    }
    next.into_iter()
        .map(|j| Line([j, 0, 0, 0, 0, 0, 0, 0]))
        .collect()
}

/// The cold working set: 16 MiB, past this machine's 512 KiB L2 and within
/// its 32 MiB L3 (shared with the machine's other tenants), as
/// bench-large's live nodes, pods and ipamd state are.
const COLD_BYTES: usize = 16 << 20;

criterion_group!(benches, bench);
criterion_main!(benches);
