//! Cost of each image encoder at the default profile's sizes (32 px,
//! batch 128 for an expert step, 100 synthetic pairs for the student of
//! stage 2), with the ratio to the ConvNet measured in the same run: an
//! expert SGD step (forward + backward), one unrolled student step and one
//! reverse-sweep step (the Hessian-vector product of stage 2).
//!
//! Run with `cargo bench --bench encoders [-- KIND…]`. Prints medians of 3
//! runs after one warm-up.

mod common;

use candle_core::{DType, Device, Tensor};
use common::{expert_step_seconds, student_step_seconds};
use vl_distill::config::{Config, ImageEncoderConfig};
use vl_distill::model::TwoTower;

/// (expert step, student forward step, reverse-sweep step) in seconds.
fn measure(kind: &str) -> vl_distill::Result<(f64, f64, f64)> {
    let dev = Device::Cpu;
    let mut cfg = Config::default_profile();
    cfg.model.image = ImageEncoderConfig::named(kind, "default")?;
    let model = TwoTower::new(&cfg.model, 32, cfg.text.dim)?;
    let theta = model.init(0, &dev, DType::F32)?;
    let x = Tensor::randn(0f32, 1.0, (128, 3, 32, 32), &dev)?;
    let e = Tensor::randn(0f32, 1.0, (128, cfg.text.dim), &dev)?;
    let expert = expert_step_seconds(&model, &theta, &x, &e, 3);
    let (fwd, rev) = student_step_seconds(&model, &theta, 100, 32, cfg.text.dim, 3)?;
    Ok((expert, fwd, rev))
}

fn main() -> vl_distill::Result<()> {
    vl_distill::device::tune_allocator();
    let asked: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let kinds: Vec<&str> = ImageEncoderConfig::KINDS
        .into_iter()
        .filter(|k| asked.is_empty() || *k == "convnet" || asked.iter().any(|a| a == k))
        .collect();
    let mut base = None;
    println!("| encoder | expert step (batch 128) | student step (100 pairs) | reverse-sweep step | ratio to convnet (expert / student / reverse) |");
    println!("|---|---|---|---|---|");
    for kind in kinds {
        let (a, b, c) = measure(kind)?;
        let (a0, b0, c0) = *base.get_or_insert((a, b, c));
        println!(
            "| {kind} | {:.0} ms | {:.0} ms | {:.0} ms | {:.2} / {:.2} / {:.2} |",
            a * 1e3,
            b * 1e3,
            c * 1e3,
            a / a0,
            b / b0,
            c / c0
        );
    }
    Ok(())
}
