//! Throughput of the engine against running the same phrases one at a time.
//!
//! `cargo bench --bench engine`. Reports messages/s for: the whole engine (matching plus state),
//! reading and matching alone, and the baseline that reads each message once and then runs every
//! phrase of its role alone over the words (what a bot without the automaton does).

mod common;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

use backstop::engine::{Matcher, Prepared, Role};

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

    let rules = engine.rules();
    group.bench_function("reading and matching only", |b| {
        b.iter(|| {
            records
                .iter()
                .map(|r| rules.scan_text(r.role, &r.text).len())
                .sum::<usize>()
        })
    });

    let (customer, agent) = (rules.phrase_nodes(Role::Customer), rules.phrase_nodes(Role::Agent));
    group.bench_function("baseline: every phrase run alone", |b| {
        b.iter(|| {
            records
                .iter()
                .map(|r| {
                    let prepared = Prepared::new(&r.text);
                    let tokens = rules.tokens(&prepared);
                    let matcher = Matcher {
                        tokens: &tokens,
                        scan: prepared.scan(),
                        lexicon: Some(rules.lexicon()),
                    };
                    let phrases = if r.role == Role::Customer { &customer } else { &agent };
                    phrases
                        .iter()
                        .filter(|p| matcher.first(p, &tokens.sentences).is_some())
                        .count()
                })
                .sum::<usize>()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
