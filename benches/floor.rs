//! What bench-large's dominant work would cost with its state laid out for
//! it: a sketch of the core that docs/simulation-model.md ("What the
//! targets mean") says the speed targets need, not the simulator.
//!
//! Job pods only: 17,000 arrivals an hour (exponential gaps), each placed
//! by the crate's own scheduler index (`ReadyIndex`, least allocated first,
//! `Capacity::fits`), given the first free, non-cooling address of its
//! node's prefixes, and run for 5 to 30 minutes (uniform); at completion
//! its requests go back, its node moves in the index and its address cools
//! for 30 s. Events go through the crate's own queue (`EventQueue`).
//! What differs from the simulator is the layout: each node's room, index
//! key, prefix bitmaps and pod-slot mask sit in one dense array (two
//! cache lines a node), its pod slots in another, and a completion carries
//! its node, slot and address, so it reads no pod record. Nothing else of
//! the model is here: no observer, gauges or rows, no ipamd pool decisions
//! (a node's prefixes grow in place, up to 8), no EC2, no Karpenter, no
//! HPA, no services. Each address cools for 30 s after its release (its
//! end kept apart, read only when a prefix has nothing else, as the
//! simulator keeps them). A pod that finds no node or no address is
//! dropped (the bench prints its counts as it starts).
//!
//! Two variants put back one part of today's layout each, to weigh it:
//! `pod records`, a 40-byte record per pod (among 105,000, most of them at
//! rest, as bench-large's service pods are; job pods take freed records
//! last-in first-out, as `Simulation::new_pod` does) written at the bind
//! and read back at the completion; `boxed nodes`, a 384-byte node record
//! behind a pointer and the prefixes in an allocation of their own, each
//! written at both events, as `Node` and `NodeIpam` are.
//!
//! Compare its cost per event with `benches/heap.rs`'s bare heap in the
//! same `cargo bench` run: the margin left between it and 2× a bare heap
//! event is what the rest of the model could spend.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use rand::Rng;
use subnetsim::cluster::scheduler::{Capacity, KeyDivisors, ReadyIndex};
use subnetsim::engine::{stream, EventQueue};
use subnetsim::time::Ms;

#[derive(Clone, Copy)]
enum Ev {
    Arrival,
    Done {
        node: u32,
        prefix: u8,
        bit: u8,
        slot: u8,
    },
}

/// A node's hot state: two cache lines.
#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
struct Hot {
    cap: Capacity,
    div: KeyDivisors,
    key: u64,
    /// Per prefix: addresses assigned, and cooling since their release.
    assigned: [u16; 8],
    cooling: [u16; 8],
    /// When the node's last cool-down ends, in ms (then `cooling` clears
    /// at once, without reading `Floor::cool_until`; the bench runs 27
    /// hours, well within a `u32`).
    cool_max: u32,
    prefixes: u8,
    /// Bit i: pod slot i holds a pod.
    slots_used: u128,
}

const _: () = assert!(std::mem::size_of::<Hot>() == 128);

/// Pod slots a node has (max pods 110).
const SLOTS: usize = 128;
/// A job pod's requests.
const CPU: u64 = 500;
const MEM: u64 = 1024;

/// Which parts of today's layout to put back.
#[derive(Clone, Copy)]
struct Layout {
    pod_records: bool,
    boxed_nodes: bool,
}

/// Pod records: 105,000, of which 6,000 free at the start.
const POD_RECORDS: usize = 105_000;

struct Floor {
    layout: Layout,
    /// A pod's record: node, slot, prefix, start, a counter.
    pod_rec: Vec<[u64; 5]>,
    free_pods: Vec<u32>,
    /// A node's record behind a pointer (384 bytes), and its prefixes in
    /// an allocation of their own.
    #[allow(clippy::vec_box)] // boxed on purpose: the pointer is what is weighed
    node_rec: Vec<Box<[u64; 48]>>,
    prefix_rec: Vec<Vec<[u64; 5]>>,
    hot: Vec<Hot>,
    /// Per node and prefix (`node * 8 + prefix`): each address's cool-down
    /// end, in ms, read only when the prefix has no address left that is
    /// neither assigned nor cooling.
    cool_until: Vec<[u32; 16]>,
    pod_of: Vec<u32>,
    index: ReadyIndex,
    queue: EventQueue<Ev>,
    rng: rand_chacha::ChaCha8Rng,
    /// Pods placed, and those dropped for want of a node or an address.
    pods: u32,
    dropped: u32,
}

impl Floor {
    /// `nodes` nodes of three sizes, 40-85% of their CPU and 30-85% of
    /// their memory taken by 20 pods at rest, and three prefixes with 28
    /// of their 48 addresses in use.
    fn new(nodes: usize, layout: Layout) -> Self {
        let mut rng = stream(1, "floor");
        // The free pod records, spread at random among those at rest.
        let mut ids: Vec<u32> = (0..POD_RECORDS as u32).collect();
        for i in (1..ids.len()).rev() {
            ids.swap(i, rng.gen_range(0..=i));
        }
        ids.truncate(6_000);
        let mut hot = vec![Hot::default(); nodes];
        let mut index = ReadyIndex::default();
        let sizes = [(7_910u64, 29_000u64), (15_890, 60_000), (31_850, 122_000)];
        for (i, h) in hot.iter_mut().enumerate() {
            let (cpu, mem) = sizes[i % 3];
            h.cap = Capacity {
                cpu_alloc: cpu,
                mem_alloc: mem,
                cpu_used: cpu * rng.gen_range(40..85) / 100,
                mem_used: mem * rng.gen_range(30..85) / 100,
                pods: 20,
                max_pods: 110,
                branch_max: 0,
                branch_used: 0,
            };
            h.div = KeyDivisors::of(&h.cap);
            h.key = h.cap.key_by(&h.div);
            h.prefixes = 3;
            h.assigned[..2].copy_from_slice(&[0xFFFF, 0x0FFF]);
            h.slots_used = (1 << 20) - 1;
            index.insert((h.key, i as u32));
        }
        let mut queue = EventQueue::new();
        queue.schedule(Ms(0), Ev::Arrival);
        Floor {
            layout,
            pod_rec: vec![[0; 5]; POD_RECORDS],
            free_pods: ids,
            node_rec: (0..nodes).map(|_| Box::new([0; 48])).collect(),
            prefix_rec: (0..nodes).map(|_| vec![[0; 5]; 8]).collect(),
            hot,
            cool_until: vec![[0; 16]; nodes * 8],
            pod_of: vec![u32::MAX; nodes * SLOTS],
            index,
            queue,
            rng,
            pods: 0,
            dropped: 0,
        }
    }

    /// Node `n`'s key is now `key`: move it in the index.
    fn rekey(index: &mut ReadyIndex, h: &mut Hot, n: u32) {
        let key = h.cap.key_by(&h.div);
        if key != h.key {
            index.remove(&(h.key, n));
            index.insert((key, n));
            h.key = key;
        }
    }

    fn arrival(&mut self, now: Ms) {
        let gap: f64 = -(1.0 - self.rng.gen::<f64>()).ln() * (3_600_000.0 / 17_000.0);
        self.queue.schedule(now + Ms(gap as u64), Ev::Arrival);
        let hot = &self.hot;
        let Some((_, n)) = self
            .index
            .find(|x| hot[x as usize].cap.fits(CPU, MEM, false))
        else {
            return;
        };
        let h = &mut self.hot[n as usize];
        if u64::from(h.cool_max) <= now.0 {
            h.cooling = [0; 8];
        }
        let mut addr = None;
        for p in 0..h.prefixes as usize {
            let mut free = !h.assigned[p] & !h.cooling[p];
            if free == 0 && h.cooling[p] != 0 {
                // Nothing else here: the cool-downs that have ended.
                let ends = &self.cool_until[n as usize * 8 + p];
                let mut bits = h.cooling[p];
                while bits != 0 {
                    let b = bits.trailing_zeros();
                    bits &= bits - 1;
                    if u64::from(ends[b as usize]) <= now.0 {
                        h.cooling[p] &= !(1 << b);
                    }
                }
                free = !h.assigned[p] & !h.cooling[p];
            }
            if free != 0 {
                addr = Some((p, free.trailing_zeros()));
                break;
            }
        }
        if addr.is_none() && h.prefixes < 8 {
            addr = Some((h.prefixes as usize, 0));
            h.prefixes += 1;
        }
        let Some((p, bit)) = addr else {
            self.dropped += 1;
            return;
        };
        h.assigned[p] |= 1 << bit;
        h.cap.cpu_used += CPU;
        h.cap.mem_used += MEM;
        h.cap.pods += 1;
        let slot = (!h.slots_used).trailing_zeros();
        h.slots_used |= 1 << slot;
        Self::rekey(&mut self.index, h, n);
        let mut pod = self.pods;
        self.pods += 1;
        if self.layout.pod_records {
            pod = self
                .free_pods
                .pop()
                .expect("fewer live job pods than records");
            let r = &mut self.pod_rec[pod as usize];
            *r = [u64::from(n), u64::from(slot), p as u64, now.0, r[4] + 1];
        }
        if self.layout.boxed_nodes {
            self.node_rec[n as usize][0] += 1;
            self.prefix_rec[n as usize][p][0] |= 1 << bit;
        }
        self.pod_of[n as usize * SLOTS + slot as usize] = pod;
        let run = self.rng.gen_range(300_000..1_800_000);
        self.queue.schedule(
            now + Ms(run),
            Ev::Done {
                node: n,
                prefix: p as u8,
                bit: bit as u8,
                slot: slot as u8,
            },
        );
    }

    fn done(&mut self, now: Ms, n: u32, p: u8, bit: u8, slot: u8) {
        let pod = std::mem::replace(
            &mut self.pod_of[n as usize * SLOTS + slot as usize],
            u32::MAX,
        );
        if self.layout.pod_records {
            let r = &mut self.pod_rec[pod as usize];
            assert_eq!(r[0], u64::from(n), "the pod's record names its node");
            r[4] += 1;
            self.free_pods.push(pod);
        }
        if self.layout.boxed_nodes {
            self.node_rec[n as usize][0] -= 1;
            self.prefix_rec[n as usize][p as usize][0] &= !(1 << bit);
        }
        let h = &mut self.hot[n as usize];
        h.slots_used &= !(1 << slot);
        h.cap.cpu_used -= CPU;
        h.cap.mem_used -= MEM;
        h.cap.pods -= 1;
        h.assigned[p as usize] &= !(1 << bit);
        h.cooling[p as usize] |= 1 << bit;
        let until = (now.0 + 30_000) as u32;
        h.cool_max = h.cool_max.max(until);
        self.cool_until[n as usize * 8 + p as usize][bit as usize] = until;
        Self::rekey(&mut self.index, h, n);
    }

    /// Runs to `end`; returns the events processed.
    fn run(&mut self, end: Ms) -> u64 {
        let mut events = 0;
        while let Some((now, ev)) = self.queue.pop_until(end) {
            events += 1;
            match ev {
                Ev::Arrival => self.arrival(now),
                Ev::Done {
                    node,
                    prefix,
                    bit,
                    slot,
                } => self.done(now, node, prefix, bit, slot),
            }
        }
        events
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("floor");
    g.sample_size(10);
    // Three hours to fill the fleet's job pods, then one measured day.
    let warm = Ms(3 * 3_600_000);
    let end = Ms(27 * 3_600_000);
    let compact = Layout {
        pod_records: false,
        boxed_nodes: false,
    };
    let runs = [
        ("job pods, 3000 nodes, 1 day", 3_000usize, compact),
        ("job pods, 4000 nodes, 1 day", 4_000, compact),
        (
            "job pods, 3000 nodes, 1 day, pod records",
            3_000,
            Layout {
                pod_records: true,
                ..compact
            },
        ),
        (
            "job pods, 3000 nodes, 1 day, boxed nodes",
            3_000,
            Layout {
                boxed_nodes: true,
                ..compact
            },
        ),
    ];
    for (label, nodes, layout) in runs {
        let mut f = Floor::new(nodes, layout);
        f.run(warm);
        let events = f.run(end);
        eprintln!("{label}: {} placed, {} dropped", f.pods, f.dropped);
        g.throughput(Throughput::Elements(events));
        g.bench_function(label, |b| {
            b.iter_batched(
                || {
                    let mut f = Floor::new(nodes, layout);
                    f.run(warm);
                    f
                },
                |mut f| black_box(f.run(end)),
                criterion::BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
