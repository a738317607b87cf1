//! Criterion benchmark of one outer distillation step at the default
//! profile: `syn_steps` student SGD steps on the 100 synthetic pairs, the
//! bi-trajectory matching loss, and its exact gradient by the reverse sweep
//! (everything [`Distiller::step`](vl_distill::stage2::distiller::Distiller::step)
//! does but the cheap update of the set), plain and with a learned
//! similarity (LoRS).
//!
//! `cargo bench --bench distill_step`. Peak memory is measured by
//! `cargo bench --bench distill_memory` (one process per size).

use criterion::{criterion_group, criterion_main, Criterion};
use std::time::Duration;
use vl_distill::config::Config;

mod common;

fn outer_step(c: &mut Criterion) {
    vl_distill::device::tune_allocator();
    let cfg = Config::default_profile();
    let n = cfg.distill.syn_steps;
    let s = common::step_inputs(&cfg, n).expect("inputs");
    let mut group = c.benchmark_group("distill");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(60))
        .warm_up_time(Duration::from_secs(1));
    group.bench_function(
        format!(
            "outer step, default profile ({} pairs, {n} steps)",
            cfg.distill.pairs
        ),
        |b| b.iter(|| s.gradient().expect("step")),
    );
    // the same step whose students train against a learned similarity
    // (LoRS, rank 10): the soft-label loss and the factors' gradient
    let lors = common::step_inputs_with_similarity(&cfg, n).expect("inputs");
    group.bench_function(
        format!(
            "outer step, default profile + LoRS rank 10 ({} pairs, {n} steps)",
            cfg.distill.pairs
        ),
        |b| b.iter(|| lors.gradient().expect("step")),
    );
    group.finish();
}

criterion_group!(benches, outer_step);
criterion_main!(benches);
