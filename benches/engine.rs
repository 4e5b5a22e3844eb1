//! Throughput of the engine against evaluating the same patterns one regex at a time.
//!
//! `cargo bench --bench engine`. Reports messages/s for: the whole engine (matching plus state),
//! matching alone, and the baseline loop over individual `Regex::is_match` calls.

mod common;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

use backstop::engine::{Prepared, Role};

fn bench(c: &mut Criterion) {
    let (records, source) = common::stream();
    let engine = common::engine();
    let mut group = c.benchmark_group(format!("{} messages ({source})", records.len()));
    group.throughput(Throughput::Elements(records.len() as u64));
    group.sample_size(10);

    group.bench_function("engine observe (matching + state)", |b| {
        b.iter_batched(
            common::engine,
            |engine| {
                let mut nudges = 0;
                for (i, r) in records.iter().enumerate() {
                    let msg = r.message(r.ts, i as u64);
                    nudges += engine.observe(&msg).len();
                }
                nudges
            },
            BatchSize::PerIteration,
        )
    });

    group.bench_function("rule matching only", |b| {
        b.iter(|| {
            records
                .iter()
                .map(|r| engine.rules().scan(r.role, &Prepared::new(&r.text)).len())
                .sum::<usize>()
        })
    });

    let baseline = |role: Role| -> Vec<regex::Regex> {
        engine
            .rules()
            .patterns(role)
            .into_iter()
            .map(|p| {
                regex::RegexBuilder::new(p)
                    .case_insensitive(true)
                    .build()
                    .expect("pattern compiles")
            })
            .collect()
    };
    let (customer, agent) = (baseline(Role::Customer), baseline(Role::Agent));
    group.bench_function("baseline: one Regex at a time", |b| {
        b.iter(|| {
            records
                .iter()
                .map(|r| {
                    let set = if r.role == Role::Customer { &customer } else { &agent };
                    set.iter().filter(|re| re.is_match(&r.text)).count()
                })
                .sum::<usize>()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
