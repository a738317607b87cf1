//! Shared set-up of the stage-2 benchmarks: one outer distillation step's
//! inputs at a profile's sizes, without training experts first.

use candle_core::{DType, Device, Tensor};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vl_distill::config::Config;
use vl_distill::distill::{matching_gradient, MatchGradient};
use vl_distill::model::{TowerParams, TwoTower};
use vl_distill::second_order::with_graph_gradients;
use vl_distill::unroll::{StepBatch, TowerLr};

/// Everything [`vl_distill::distill::matching_gradient`] takes.
pub struct StepInputs {
    pub model: TwoTower,
    pub theta0: TowerParams,
    pub target: TowerParams,
    pub images: Tensor,
    pub texts: Tensor,
    pub batches: Vec<StepBatch>,
    pub lr: TowerLr,
}

impl StepInputs {
    /// One outer step on these inputs: the matching loss and its gradient.
    pub fn gradient(&self) -> vl_distill::Result<MatchGradient> {
        with_graph_gradients(|| {
            matching_gradient(
                &self.model,
                &self.theta0,
                &self.target,
                &self.images,
                &self.texts,
                &self.batches,
                self.lr,
                vl_distill::config::DEFAULT_CACHED_STEPS,
            )
        })
    }
}

/// The inputs of one outer step of `cfg`'s distillation with `syn_steps`
/// student steps: a fresh student start, a target one small random
/// displacement away (as an expert epoch would be), random synthetic pairs.
pub fn step_inputs(cfg: &Config, syn_steps: usize) -> vl_distill::Result<StepInputs> {
    let dev = Device::Cpu;
    let size = cfg.data.image_size as usize;
    let model = TwoTower::new(&cfg.model, size, cfg.text.dim)?;
    let theta0 = model.init(0, &dev, DType::F32)?;
    let target = theta0.map(|_, p| p.map(|_, t| Ok((t + (t.randn_like(0.0, 0.01)?))?)))?;
    let m = cfg.distill.pairs;
    let images = Tensor::randn(0f32, 1.0, (m, 3, size, size), &dev)?;
    let texts = Tensor::randn(0f32, 0.05, (m, cfg.text.dim), &dev)?;
    let b = cfg.distill.batch_syn.unwrap_or(m);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let batches = (0..syn_steps)
        .map(|i| {
            let mut idx: Vec<u32> = (0..m as u32).collect();
            idx.shuffle(&mut rng);
            idx.truncate(b);
            StepBatch {
                indices: idx,
                seed: i as u64,
            }
        })
        .collect();
    let lr = TowerLr {
        image: cfg.experts.lr_image,
        text: cfg.experts.lr_text,
    };
    Ok(StepInputs {
        model,
        theta0,
        target,
        images,
        texts,
        batches,
        lr,
    })
}

/// Peak resident memory of this process in MiB: `VmHWM` of
/// `/proc/self/status`. Unlike `getrusage`'s `ru_maxrss`, which a child
/// inherits from its parent across fork and exec, the high-water mark
/// belongs to the address space and starts afresh at exec.
#[allow(dead_code)] // not every bench uses it
pub fn peak_rss_mib() -> f64 {
    proc_kib("/proc/self/status", "VmHWM:").map_or(f64::NAN, |kb| kb / 1024.0)
}

/// The kB value of the line starting with `key` in a `/proc` file.
#[allow(dead_code)] // not every bench uses it
pub fn proc_kib(file: &str, key: &str) -> Option<f64> {
    std::fs::read_to_string(file)
        .ok()?
        .lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
