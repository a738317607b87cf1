//! Timing of the hot paths at the default profile's sizes, with ratios
//! against peers measured in the same run:
//!
//! - an expert SGD step (forward + backward, batch 128, ConvNet width 64,
//!   depth 3, 32 px, linear text tower): forward vs backward;
//! - the student of stage 2 (100 synthetic pairs, full batch): one unrolled
//!   forward step vs one reverse-sweep step (the Hessian-vector product that
//!   gives the exact gradient through the unroll).
//!
//! Run with `cargo bench --bench step`. Prints medians of 5 runs after one
//! warm-up; the allocator tuning (`device::tune_allocator`) is on, as in every stage.

mod common;

use candle_core::{DType, Device, Tensor};
use common::{expert_step_seconds, student_step_seconds, time};
use vl_distill::config::Config;
use vl_distill::model::{Mode, TwoTower};

fn main() -> vl_distill::Result<()> {
    vl_distill::device::tune_allocator();
    let dev = Device::Cpu;
    let cfg = Config::default_profile();
    let model = TwoTower::new(&cfg.model, 32, cfg.text.dim)?;
    let theta = model.init(0, &dev, DType::F32)?;

    let x = Tensor::randn(0f32, 1.0, (128, 3, 32, 32), &dev)?;
    let e = Tensor::randn(0f32, 1.0, (128, cfg.text.dim), &dev)?;
    let fwd = time(5, || {
        model
            .loss(&theta, &x, &e, Mode::Train { seed: 0 })
            .expect("forward")
    });
    let step = expert_step_seconds(&model, &theta, &x, &e, 5);
    println!("expert step, batch 128: forward {:.0} ms, forward + backward {:.0} ms, backward / forward = {:.2}",
        fwd * 1e3, step * 1e3, (step - fwd) / fwd);

    let m = 100;
    let (fwd_step, rev_step) = student_step_seconds(&model, &theta, m, 32, cfg.text.dim, 5)?;
    println!(
        "student, {m} pairs: forward step {:.0} ms, reverse-sweep step {:.0} ms, reverse / forward = {:.2}",
        fwd_step * 1e3,
        rev_step * 1e3,
        rev_step / fwd_step
    );
    Ok(())
}
