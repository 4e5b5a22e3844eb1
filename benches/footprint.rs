//! Latency percentiles, single-pass throughput and memory per conversation: the figures criterion
//! does not give. `cargo bench --bench footprint` prints a table for the README.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

use backstop::engine::{Message, MessageRef, Role};

/// Counts live heap bytes, so memory per conversation is measured, not estimated.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn main() {
    // `cargo bench` passes harness flags such as --bench; this binary takes none.
    let (records, source) = common::stream();

    // Throughput and per-message latency, best of 5 passes on a fresh engine each time.
    let mut best = f64::MAX;
    let mut latencies = Vec::with_capacity(records.len());
    for _ in 0..5 {
        let engine = common::engine();
        let mut lat = Vec::with_capacity(records.len());
        let started = Instant::now();
        for (i, r) in records.iter().enumerate() {
            let t = Instant::now();
            let msg = r.message(r.ts, i as u64);
            std::hint::black_box(engine.observe(&msg));
            lat.push(t.elapsed().as_nanos() as u64);
        }
        let secs = started.elapsed().as_secs_f64();
        if secs < best {
            best = secs;
            latencies = lat;
        }
    }
    latencies.sort_unstable();

    // Memory: 100,000 conversations, each with a customer message and an agent's open promise.
    let engine = common::engine();
    let before = LIVE.load(Ordering::Relaxed);
    let n = 100_000;
    let at: jiff::Timestamp = "2026-11-23T10:00:00Z".parse().expect("timestamp");
    for i in 0..n {
        let conv = format!("conversation-{i:06}");
        let customer = Message {
            conversation: &conv,
            author: "customer-1234",
            role: Role::Customer,
            text: "Hi, my parcel is late",
            at,
            source: MessageRef(i),
        };
        engine.observe(&customer);
        let agent = Message {
            conversation: &conv,
            author: "agent-42",
            role: Role::Agent,
            text: "I'm sorry about that. I'll call you back tomorrow morning.",
            at,
            source: MessageRef(i),
        };
        engine.observe(&agent);
    }
    let bytes = (LIVE.load(Ordering::Relaxed) - before) as f64 / n as f64;
    assert_eq!(
        engine.open_promises().len() as u64,
        n,
        "every conversation holds one open promise"
    );

    println!("stream: {} messages ({source})", records.len());
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| engine throughput, one core | {:.0} messages/s |",
        records.len() as f64 / best
    );
    println!(
        "| latency per message p50 | {:.2} µs |",
        percentile(&latencies, 0.50) as f64 / 1000.0
    );
    println!(
        "| latency per message p99 | {:.2} µs |",
        percentile(&latencies, 0.99) as f64 / 1000.0
    );
    println!(
        "| latency per message max | {:.1} µs |",
        *latencies.last().expect("messages") as f64 / 1000.0
    );
    println!("| memory per conversation with one open promise | {bytes:.0} bytes |");
}
