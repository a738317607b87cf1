//! Shared set-up of the benchmarks: one outer distillation step's inputs at
//! a profile's sizes (without training experts first), timing, and the
//! expert / student / reverse-sweep step timings of `step` and `encoders`.

#![allow(dead_code)] // each bench uses part of it

use candle_core::{DType, Device, Tensor};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vl_distill::config::Config;
use vl_distill::model::{TowerParams, TwoTower};
use vl_distill::second_order::with_graph_gradients;
use vl_distill::stage1::sgd::TowerLr;
use vl_distill::stage2::matching::matching_gradient;
use vl_distill::stage2::matching::MatchGradient;
use vl_distill::stage2::similarity::LearnedSimilarity;
use vl_distill::stage2::unroll::StepBatch;

/// Everything [`vl_distill::stage2::matching::matching_gradient`] takes.
pub struct StepInputs {
    pub model: TwoTower,
    pub theta0: TowerParams,
    pub target: TowerParams,
    pub images: Tensor,
    pub texts: Tensor,
    pub batches: Vec<StepBatch>,
    pub lr: TowerLr,
    /// A learned similarity the students train against (LoRS), or none.
    pub similarity: Option<LearnedSimilarity>,
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
                self.similarity.as_ref(),
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
                blend: None,
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
        similarity: None,
    })
}

/// [`step_inputs`] whose students train against a learned similarity of
/// `cfg.distill.similarity`'s form (its defaults when unset), its factors
/// moved off the identity as after some iterations.
pub fn step_inputs_with_similarity(
    cfg: &Config,
    syn_steps: usize,
) -> vl_distill::Result<StepInputs> {
    let mut s = step_inputs(cfg, syn_steps)?;
    let lors = cfg.distill.similarity.unwrap_or_default();
    let fresh = LearnedSimilarity::from_config(&lors, cfg.distill.pairs, 0, &Device::Cpu)?;
    let moved = fresh
        .factors()
        .iter()
        .map(|f| Ok((f + f.randn_like(0.0, 0.1)?)?))
        .collect::<vl_distill::Result<Vec<_>>>()?;
    s.similarity = Some(fresh.with_factors(moved)?);
    Ok(s)
}

/// `s` with RepBlend's blending in every student step: λ = 0.5 and each
/// row mixed with the row after it (a fixed draw, so runs compare).
pub fn blended(mut s: StepInputs) -> StepInputs {
    for b in &mut s.batches {
        let n = b.indices.len() as u32;
        b.blend = Some(vl_distill::stage2::unroll::Blend {
            lambda: 0.5,
            partner: (0..n).map(|i| (i + 1) % n).collect(),
        });
    }
    s
}

/// The step inputs of stage-2 option `option` (`plain`, `lors`, `blend`,
/// `lors_blend`) at the profile of `cfg`.
pub fn option_inputs(
    cfg: &Config,
    option: &str,
    syn_steps: usize,
) -> vl_distill::Result<StepInputs> {
    Ok(match option {
        "plain" => step_inputs(cfg, syn_steps)?,
        "lors" => step_inputs_with_similarity(cfg, syn_steps)?,
        "blend" => blended(step_inputs(cfg, syn_steps)?),
        "lors_blend" => blended(step_inputs_with_similarity(cfg, syn_steps)?),
        other => return Err(vl_distill::Error::Config(format!("unknown option {other}"))),
    })
}

/// Peak resident memory of this process in MiB: `VmHWM` of
/// `/proc/self/status`. Unlike `getrusage`'s `ru_maxrss`, which a child
/// inherits from its parent across fork and exec, the high-water mark
/// belongs to the address space and starts afresh at exec.
pub fn peak_rss_mib() -> f64 {
    proc_kib("/proc/self/status", "VmHWM:").map_or(f64::NAN, |kb| kb / 1024.0)
}

/// The kB value of the line starting with `key` in a `/proc` file.
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

/// Median seconds of `runs` calls of `f`, after one warm-up call.
pub fn time<R>(runs: usize, mut f: impl FnMut() -> R) -> f64 {
    f();
    let mut v: Vec<f64> = (0..runs)
        .map(|_| {
            let t = std::time::Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Median seconds of one expert SGD step's forward + backward on a random
/// batch `x`, `e` (`runs` runs).
pub fn expert_step_seconds(
    model: &TwoTower,
    theta: &TowerParams,
    x: &Tensor,
    e: &Tensor,
    runs: usize,
) -> f64 {
    time(runs, || {
        let (image, _a) = theta.image.to_vars().expect("vars");
        let (text, _b) = theta.text.to_vars().expect("vars");
        let p = TowerParams { image, text };
        let l = model
            .loss(&p, x, e, vl_distill::model::Mode::Train { seed: 0 })
            .expect("loss");
        l.backward().expect("backward")
    })
}

/// Median seconds of one unrolled student step and of one reverse-sweep
/// step of stage 2, for `m` random synthetic pairs of `px`-pixel images and
/// `dim`-d texts trained together (`runs` runs).
pub fn student_step_seconds(
    model: &TwoTower,
    theta: &TowerParams,
    m: usize,
    px: usize,
    dim: usize,
    runs: usize,
) -> vl_distill::Result<(f64, f64)> {
    use vl_distill::stage2::unroll::{reverse_sweep, unroll_forward};
    let dev = theta.image.tensors()[0].device().clone();
    let images = Tensor::randn(0f32, 1.0, (m, 3, px, px), &dev)?;
    let texts = Tensor::randn(0f32, 1.0, (m, dim), &dev)?;
    let batches = vec![StepBatch {
        indices: (0..m as u32).collect(),
        seed: 1,
        blend: None,
    }];
    let lr = TowerLr {
        image: 0.1,
        text: 0.1,
    };
    let fwd = time(runs, || {
        unroll_forward(model, theta, &images, &texts, None, &batches, lr, 0).expect("unroll")
    });
    let snaps = unroll_forward(model, theta, &images, &texts, None, &batches, lr, 0)?.snapshots;
    let lambda = snaps[1].detach();
    let rev = with_graph_gradients(|| {
        Ok(time(runs, || {
            reverse_sweep(
                model,
                &snaps,
                Vec::new(),
                &images,
                &texts,
                None,
                &batches,
                lr,
                &lambda,
            )
            .expect("sweep")
        }))
    })?;
    Ok((fwd, rev))
}
