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
//! set larger than this machine's L2: what an event that touches `K`
//! lines it has not touched recently costs at the least, whatever its
//! instructions. Two working sets: 16 MiB, past what this machine's shared
//! L3 keeps for one process on most runs (the lines come from memory), and
//! 4 MiB, which the L3 holds on quiet runs only (see `COLD_BYTES`).
//! Cachegrind over bench-large's first day counts 9.9 M read misses with a
//! 512 KiB last level, 3.4 M with 2 MiB, 1.3 M with 4 MiB, 0.65 M with
//! 8 MiB and 0.11 M with 16 MiB: what its misses cost depends on that
//! share.

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
    // The bare heap, each event then touching `k` dependent lines of a
    // 16 MiB working set (named cold lines, as before the second set was
    // added) or of a 4 MiB one.
    let sets = [
        ("cold ", "", COLD_BYTES, &[1usize, 2, 4, 8][..]),
        ("", " in 4 MiB", SET_4MIB, &[1, 4, 8][..]),
    ];
    for (before, after, bytes, ks) in sets {
        for &k in ks {
            g.bench_function(
                format!(
                    "bare binary heap + {k} dependent {before}line{}{after}",
                    if k == 1 { "" } else { "s" }
                ),
                |b| {
                    let mut lines = lines_of(bytes);
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
    }
    g.finish();
}

/// A cache line of the cold working set: the index of the next line to
/// read, and a counter.
#[repr(align(64))]
struct Line([u64; 8]);

/// Lines linked in one random cycle (Sattolo's shuffle) over `bytes`.
fn lines_of(bytes: usize) -> Vec<Line> {
    let n = bytes / 64;
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

/// The cold working set: 16 MiB, past this machine's 512 KiB L2 and half
/// its 32 MiB L3, which the machine's other tenants share. Measured with a
/// bare loop of dependent reads and writes, without the heap, four times
/// within an hour: a line costs 16-22 ns in 1 or 2 MiB, but 18-110 ns in
/// 4 MiB, 20-140 ns in 8 MiB and 64-154 ns in 16 MiB, from one run to
/// the next: how much of the L3 this process gets changes with the
/// neighbours' load.
const COLD_BYTES: usize = 16 << 20;

/// The second working set: 4 MiB, eight times the L2, where bench-large's
/// reads still miss a 4 MiB cache about 1.3 times an event.
const SET_4MIB: usize = 4 << 20;

criterion_group!(benches, bench);
criterion_main!(benches);
