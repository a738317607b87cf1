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
//! warm-up; the allocator tuning (`alloc::tune`) is on, as in every stage.

use candle_core::{DType, Device, Tensor};
use std::time::Instant;
use vl_distill::config::Config;
use vl_distill::model::{Mode, TowerParams, TwoTower};
use vl_distill::second_order::with_graph_gradients;
use vl_distill::unroll::{reverse_sweep, unroll_forward, StepBatch, TowerLr};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn time<R>(runs: usize, mut f: impl FnMut() -> R) -> f64 {
    f();
    median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

fn main() -> vl_distill::Result<()> {
    vl_distill::alloc::tune();
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
    let step = time(5, || {
        let (image, _a) = theta.image.to_vars().expect("vars");
        let (text, _b) = theta.text.to_vars().expect("vars");
        let p = TowerParams { image, text };
        let l = model
            .loss(&p, &x, &e, Mode::Train { seed: 0 })
            .expect("loss");
        l.backward().expect("backward")
    });
    println!("expert step, batch 128: forward {:.0} ms, forward + backward {:.0} ms, backward / forward = {:.2}",
        fwd * 1e3, step * 1e3, (step - fwd) / fwd);

    let m = 100;
    let images = Tensor::randn(0f32, 1.0, (m, 3, 32, 32), &dev)?;
    let texts = Tensor::randn(0f32, 1.0, (m, cfg.text.dim), &dev)?;
    let batches = vec![StepBatch {
        indices: (0..m as u32).collect(),
        seed: 1,
    }];
    let lr = TowerLr {
        image: 0.1,
        text: 0.1,
    };
    let fwd_step = time(5, || {
        unroll_forward(&model, &theta, &images, &texts, &batches, lr).expect("unroll")
    });
    let (snaps, _) = unroll_forward(&model, &theta, &images, &texts, &batches, lr)?;
    let lambda = snaps[1].detach();
    let rev_step = with_graph_gradients(|| {
        Ok(time(5, || {
            reverse_sweep(&model, &snaps, &images, &texts, &batches, lr, &lambda).expect("sweep")
        }))
    })?;
    println!(
        "student, {m} pairs: forward step {:.0} ms, reverse-sweep step {:.0} ms, reverse / forward = {:.2}",
        fwd_step * 1e3,
        rev_step * 1e3,
        rev_step / fwd_step
    );
    Ok(())
}
