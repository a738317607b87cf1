//! Criterion benchmark of one outer distillation step at the default
//! profile: `syn_steps` student SGD steps on the 100 synthetic pairs, the
//! bi-trajectory matching loss, and its exact gradient by the reverse sweep
//! (everything [`Distiller::step`](vl_distill::stage2::distiller::Distiller::step)
//! does but the cheap update of the set), plain, with a learned similarity
//! (LoRS), with blended students (RepBlend) and with both.
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
    let mut group = c.benchmark_group("distill");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(60))
        .warm_up_time(Duration::from_secs(1));
    let options = [
        ("plain", ""),
        // students train against a learned similarity (rank 10): the
        // soft-label loss and the factors' gradient
        ("lors", " + LoRS rank 10"),
        // each step's pairs blended with partners
        ("blend", " + blending"),
        ("lors_blend", " + LoRS rank 10 + blending"),
    ];
    for (option, label) in options {
        let s = common::option_inputs(&cfg, option, n).expect("inputs");
        group.bench_function(
            format!(
                "outer step, default profile{label} ({} pairs, {n} steps)",
                cfg.distill.pairs
            ),
            |b| b.iter(|| s.gradient().expect("step")),
        );
    }
    group.finish();
}

criterion_group!(benches, outer_step);
criterion_main!(benches);
