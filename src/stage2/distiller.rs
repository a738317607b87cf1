//! Stage 2: bi-trajectory matching.
//!
//! A [`DistilledSet`] holds M synthetic pairs — pixels `[M, 3, H, W]` and text
//! embeddings `[M, D]` in the frozen encoder's space — and the student's
//! learning rates (one per tower, as logs so they stay positive). Each
//! [`Distiller::step`] starts a student at an expert's epoch s, takes
//! `syn_steps` SGD steps on the synthetic pairs, and measures
//!
//! ```text
//! ℓ = ‖θ̂_img,N − θ*_img,s+R‖² / ‖θ*_img,s − θ*_img,s+R‖²
//!   + ‖θ̂_txt,N − θ*_txt,s+R‖² / ‖θ*_txt,s − θ*_txt,s+R‖²
//! ```
//!
//! Its exact gradient through the N steps comes from the reverse sweep of
//! [`unroll`](crate::stage2::unroll) (memory flat in N), and updates pixels, text
//! embeddings and log learning rates with their own optimisers: SGD with
//! momentum (the paper's) or, for pixels, Adam (`distill.pixel_optimizer`).
//! Every random choice of iteration i derives from (seed, i), so the
//! iteration counter is all the random state there is.

use crate::config::{DistillConfig, PixelOptimizer, SynthSpace};
use crate::error::{Error, Result};
use crate::experiment::Experiment;
use crate::model::{FrozenBackbone, TwoTower};
use crate::progress::Progress;
use crate::second_order::with_graph_gradients;
use crate::seeds::derive_seed;
use crate::stage1::sgd::TowerLr;
use crate::stage1::trajectory::Trajectory;
use crate::stage2::distilled_set::DistilledSet;
use crate::stage2::matching::{matching_gradient, matching_gradient_through, MatchGradient};
use crate::stage2::similarity::{factor_key, LearnedSimilarity};
use crate::stage2::spike_clip::spike_scale;
use crate::stage2::unroll::{Blend, StepBatch, UnrollGrads};
use candle_core::{DType, Tensor};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Beta, Distribution};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// What one outer iteration did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistillReport {
    /// Iteration index (0-based).
    pub iteration: usize,
    /// Expert used.
    pub expert: usize,
    /// Start epoch s.
    pub start_epoch: usize,
    /// Total matching loss ℓ (before this iteration's update).
    pub loss: f64,
    /// Image-tower term.
    pub loss_image: f64,
    /// Text-tower term.
    pub loss_text: f64,
    /// Student learning rate of the image tower after the update.
    pub lr_image: f64,
    /// Student learning rate of the text tower after the update.
    pub lr_text: f64,
    /// ‖∂ℓ/∂x̂‖.
    pub grad_norm_images: f64,
    /// ‖∂ℓ/∂ê‖.
    pub grad_norm_texts: f64,
    /// Mean contrastive loss of the student steps.
    pub student_loss: f64,
    /// Wall time in seconds.
    pub seconds: f64,
    /// The factor `distill.clip_spikes` scaled ∂ℓ/∂x̂ by before the update
    /// (1: not clipped; the norm above is the unclipped one).
    #[serde(default = "unclipped")]
    pub grad_scale_images: f64,
    /// The same for ∂ℓ/∂ê.
    #[serde(default = "unclipped")]
    pub grad_scale_texts: f64,
    /// ‖∂ℓ/∂ŝ‖ over the learned similarity's factors, when the set has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grad_norm_similarity: Option<f64>,
}

fn unclipped() -> f64 {
    1.0
}

impl std::fmt::Display for DistillReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "iter {}: match {:.4} (img {:.4}, txt {:.4}), α img {:.4} txt {:.4}, |g| img {:.2e} txt {:.2e}",
            self.iteration,
            self.loss,
            self.loss_image,
            self.loss_text,
            self.lr_image,
            self.lr_text,
            self.grad_norm_images,
            self.grad_norm_texts,
        )?;
        if let Some(g) = self.grad_norm_similarity {
            write!(f, " similarity {g:.2e}")?;
        }
        write!(
            f,
            ", expert {} from epoch {} ({:.1} s)",
            self.expert, self.start_epoch, self.seconds
        )?;
        if self.grad_scale_images < 1.0 || self.grad_scale_texts < 1.0 {
            write!(
                f,
                ", spike clipped: gradients ×{:.3} img, ×{:.3} txt",
                self.grad_scale_images, self.grad_scale_texts
            )?;
        }
        Ok(())
    }
}

/// State of the outer optimisers: the momentum (SGD) or first moment
/// (Adam) of the images, Adam's second moment of the pixels, the texts',
/// the log learning rates' and the similarity factors' momentum.
#[derive(Debug, Clone, Default)]
struct OuterMomentum {
    images: Option<Tensor>,
    texts: Option<Tensor>,
    images_sq: Option<Tensor>,
    log_lr: [f64; 2],
    similarity: Option<Vec<Tensor>>,
}

/// ‖t‖² (f32 tensors), infinite or NaN when any value is.
fn sq_norm(t: &Tensor) -> Result<f64> {
    Ok(t.sqr()?.sum_all()?.to_scalar::<f32>()? as f64)
}

/// Adam's β₁, β₂ and ε ([`PixelOptimizer::Adam`]).
const ADAM: (f64, f64, f64) = (0.9, 0.999, 1e-8);

/// One Adam update of `x` by gradient `g` at step `t` (1-based): the new
/// value and the new first and second moments.
fn adam_step(
    x: &Tensor,
    g: &Tensor,
    m: Option<&Tensor>,
    v: Option<&Tensor>,
    t: usize,
    lr: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (b1, b2, eps) = ADAM;
    let m = match m {
        Some(m) => ((m * b1)? + (g * (1.0 - b1))?)?,
        None => (g * (1.0 - b1))?,
    };
    let g2 = g.sqr()?;
    let v = match v {
        Some(v) => ((v * b2)? + (g2 * (1.0 - b2))?)?,
        None => (g2 * (1.0 - b2))?,
    };
    let m_hat = (&m / (1.0 - b1.powi(t as i32)))?;
    let v_hat = (&v / (1.0 - b2.powi(t as i32)))?;
    let step = (m_hat / (v_hat.sqrt()? + eps)?)?;
    let x = (x - (step * lr)?)?.detach();
    Ok((x, m, v))
}

/// Optimises a [`DistilledSet`] by bi-trajectory matching, one outer
/// iteration per [`step`](Self::step).
pub struct Distiller {
    model: Arc<TwoTower>,
    experts: Vec<Trajectory>,
    cfg: DistillConfig,
    seed: u64,
    /// The current synthetic set.
    pub set: DistilledSet,
    momentum: OuterMomentum,
    /// Iterations done.
    pub iteration: usize,
    /// Reports of every iteration so far.
    pub history: Vec<DistillReport>,
    checkpoint: Option<PathBuf>,
    fingerprint: String,
    progress: bool,
    /// The per-channel range of real pixels under the data's normalisation,
    /// `[1, 3, 1, 1]` each, when `distill.clamp_pixels` is on.
    pixel_range: Option<(Tensor, Tensor)>,
    /// The frozen backbone the synthetic pixels pass through (once per
    /// iteration, forward and back) when the set holds pixels and the
    /// model reads backbone features.
    backbone: Option<Arc<FrozenBackbone>>,
}

/// What a checkpoint's header holds besides the tensors.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CheckpointMeta {
    fingerprint: String,
    iteration: usize,
    log_lr: [f64; 2],
    momentum_log_lr: [f64; 2],
    history: Vec<DistillReport>,
}

impl Distiller {
    /// A distiller for the experiment's config, starting from a set
    /// initialised as `exp.config.distill` says, with the experts' learning
    /// rates as the student's initial α.
    pub fn new(exp: &Experiment, experts: Vec<Trajectory>) -> Result<Self> {
        Self::with_config(exp, experts, exp.config.distill.clone())
    }

    /// [`new`](Self::new) with distillation settings `cfg` in place of the
    /// experiment's (e.g. the same run in feature space).
    pub fn with_config(
        exp: &Experiment,
        experts: Vec<Trajectory>,
        mut cfg: DistillConfig,
    ) -> Result<Self> {
        if cfg.space == SynthSpace::Features {
            cfg.iterations = cfg.feature_iterations.unwrap_or(cfg.iterations);
        }
        let mut checked = exp.config.clone();
        checked.distill = cfg.clone();
        checked.validate()?;
        let need = cfg.max_start_epoch - 1 + cfg.expert_epochs;
        if experts.is_empty() {
            return Err(Error::Incompatible(
                "distillation needs at least one expert".into(),
            ));
        }
        check_experts(exp, &experts, need)?;
        let lr = TowerLr::from(&exp.config.experts);
        let mut set = DistilledSet::init_in(
            exp,
            cfg.space,
            cfg.pairs,
            cfg.init_images,
            cfg.init_texts,
            lr,
            exp.config.seed,
        )?;
        if let Some(lors) = &cfg.similarity {
            let seed = derive_seed(exp.config.seed, "distill-similarity", &[]);
            set.similarity = Some(LearnedSimilarity::from_config(
                lors,
                set.len(),
                seed,
                set.images.device(),
            )?);
        }
        let fingerprint = fingerprint(exp, &cfg, &experts);
        let pixels = set.space == SynthSpace::Pixels;
        let pixel_range = match cfg.clamp_pixels && pixels {
            true => Some(exp.config.data.norm.pixel_range(set.images.device())?),
            false => None,
        };
        let backbone = exp.backbone.clone().filter(|_| pixels);
        Ok(Distiller {
            model: exp.model.clone(),
            experts,
            cfg,
            seed: exp.config.seed,
            set,
            pixel_range,
            backbone,
            momentum: OuterMomentum::default(),
            iteration: 0,
            history: Vec::new(),
            checkpoint: None,
            fingerprint,
            progress: false,
        })
    }

    /// A short digest of everything that decides this distillation's result
    /// (the distill settings but its length and logging, seed, dataset,
    /// model, experts): equal digests, equal checkpoints.
    pub fn fingerprint_digest(&self) -> String {
        crate::io::short_digest(self.fingerprint.as_bytes())
    }

    /// Keeps a checkpoint at `path` (every `distill.checkpoint_every`
    /// iterations and at the end, written atomically) and, when one is
    /// already there, resumes from it. A checkpoint of another configuration,
    /// dataset or set of experts is refused; `iterations`, `checkpoint_every`
    /// and `log_every` may differ (raise `iterations` to continue a finished run).
    pub fn with_checkpoint(mut self, path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        if path.exists() {
            self.load_checkpoint(&path)?;
        }
        self.checkpoint = Some(path);
        Ok(self)
    }

    fn load_checkpoint(&mut self, path: &Path) -> Result<()> {
        let (mut map, json) = crate::io::load_tensors(path, self.set.images.device())?;
        let meta: CheckpointMeta = serde_json::from_str(&json)
            .map_err(|e| Error::bad_file(path, format!("bad checkpoint metadata: {e}")))?;
        if meta.fingerprint != self.fingerprint {
            return Err(Error::bad_file(
                path,
                "checkpoint of another distillation setup (config, dataset or experts); \
                 use another output folder or delete it",
            ));
        }
        let mut take = |k: &str| {
            map.remove(k)
                .ok_or_else(|| Error::bad_file(path, format!("no tensor {k:?}")))
        };
        self.set.images = take("images")?;
        self.set.texts = take("texts")?;
        self.momentum.images = take("momentum_images").ok();
        self.momentum.texts = take("momentum_texts").ok();
        self.momentum.images_sq = take("adam_second_moment_images").ok();
        if let Some(s) = &self.set.similarity {
            let count = s.factors().len();
            let factors = (0..count)
                .map(|k| take(&factor_key(k)))
                .collect::<Result<Vec<_>>>()?;
            self.set.similarity = Some(s.with_factors(factors)?);
            self.momentum.similarity = (0..count)
                .map(|k| take(&format!("momentum_{}", factor_key(k))).ok())
                .collect();
        }
        self.set.log_lr_image = meta.log_lr[0];
        self.set.log_lr_text = meta.log_lr[1];
        self.momentum.log_lr = meta.momentum_log_lr;
        self.iteration = meta.iteration;
        self.history = meta.history;
        Ok(())
    }

    /// Writes the full state (set, momenta, iteration, history) to `path`, atomically.
    pub fn save_checkpoint(&self, path: &Path) -> Result<()> {
        let mut map = HashMap::from([
            ("images".to_string(), self.set.images.clone()),
            ("texts".to_string(), self.set.texts.clone()),
        ]);
        if let Some(m) = &self.momentum.images {
            map.insert("momentum_images".into(), m.clone());
        }
        if let Some(m) = &self.momentum.texts {
            map.insert("momentum_texts".into(), m.clone());
        }
        if let Some(v) = &self.momentum.images_sq {
            map.insert("adam_second_moment_images".into(), v.clone());
        }
        if let Some(s) = &self.set.similarity {
            s.insert_factors(&mut map);
        }
        for (k, m) in self.momentum.similarity.iter().flatten().enumerate() {
            map.insert(format!("momentum_{}", factor_key(k)), m.clone());
        }
        let meta = CheckpointMeta {
            fingerprint: self.fingerprint.clone(),
            iteration: self.iteration,
            log_lr: [self.set.log_lr_image, self.set.log_lr_text],
            momentum_log_lr: self.momentum.log_lr,
            history: self.history.clone(),
        };
        let json = serde_json::to_string(&meta).expect("metadata serialises");
        crate::io::save_tensors(path, &map, &json)
    }

    /// True when the configured number of iterations is done.
    pub fn is_done(&self) -> bool {
        self.iteration >= self.cfg.iterations
    }

    fn batches(&self, rng: &mut ChaCha8Rng) -> Result<Vec<StepBatch>> {
        let m = self.set.len();
        let b = self.cfg.batch_syn.unwrap_or(m);
        let beta =
            match &self.cfg.blend {
                Some(cfg) => Some(Beta::new(cfg.alpha, cfg.alpha).map_err(|e| {
                    Error::Config(format!("distill.blend.alpha = {}: {e}", cfg.alpha))
                })?),
                None => None,
            };
        (0..self.cfg.syn_steps)
            .map(|_| {
                let mut idx: Vec<u32> = (0..m as u32).collect();
                idx.shuffle(rng);
                idx.truncate(b);
                let seed = rng.random();
                let blend = beta.as_ref().map(|beta| {
                    let mut partner: Vec<u32> = (0..idx.len() as u32).collect();
                    partner.shuffle(rng);
                    Blend {
                        lambda: beta.sample(rng),
                        partner,
                    }
                });
                Ok(StepBatch {
                    indices: idx,
                    seed,
                    blend,
                })
            })
            .collect()
    }

    /// One outer iteration: unroll the student, match, backpropagate, update.
    pub fn step(&mut self) -> Result<DistillReport> {
        let start = Instant::now();
        let it = self.iteration;
        let mut rng =
            ChaCha8Rng::seed_from_u64(derive_seed(self.seed, "distill-iter", &[it as u64]));
        let k = rng.random_range(0..self.experts.len());
        let s = rng.random_range(0..self.cfg.max_start_epoch);
        let batches = self.batches(&mut rng)?;
        let traj = &self.experts[k];
        let theta0 = traj.epoch(s)?.clone();
        let target = traj.epoch(s + self.cfg.expert_epochs)?.clone();
        let lr = self.set.lr();
        let keep = self.cfg.cached_steps;
        let model = self.model.clone();
        let (images, texts) = (self.set.images.clone(), self.set.texts.clone());
        let similarity = self.set.similarity.clone();
        let backbone = self.backbone.clone();
        let backbone_chunk = self.cfg.backbone_chunk;
        let MatchGradient {
            loss_image,
            loss_text,
            student_loss,
            mut grads,
        } = with_graph_gradients(|| match &backbone {
            // pixels through a frozen backbone: once forward, once back
            Some(b) => matching_gradient_through(
                b,
                &model,
                &theta0,
                &target,
                &images,
                &texts,
                similarity.as_ref(),
                &batches,
                lr,
                keep,
                backbone_chunk,
            ),
            None => matching_gradient(
                &model,
                &theta0,
                &target,
                &images,
                &texts,
                similarity.as_ref(),
                &batches,
                lr,
                keep,
            ),
        })?;
        let loss = loss_image + loss_text;
        let finite = [loss, grads.log_lr_image, grads.log_lr_text]
            .iter()
            .all(|v| v.is_finite());
        let gi = sq_norm(&grads.images)?.sqrt();
        let gt = sq_norm(&grads.texts)?.sqrt();
        let gs = match &grads.similarity {
            Some(g) => Some(g.iter().map(sq_norm).sum::<Result<f64>>()?.sqrt()),
            None => None,
        };
        if !finite || !gi.is_finite() || !gt.is_finite() || gs.is_some_and(|g| !g.is_finite()) {
            return Err(Error::NonFinite {
                step: format!("distillation iteration {it}"),
                what: format!("matching loss {loss} or its gradient"),
            });
        }
        // the factors of the modalities that move (1 for a frozen one)
        let scale = |on: bool, norm: f64, of: fn(&DistillReport) -> f64| match self.cfg.clip_spikes
        {
            Some(factor) if on => {
                let previous: Vec<f64> = self.history.iter().map(of).collect();
                spike_scale(norm, &previous, factor)
            }
            _ => 1.0,
        };
        let grad_scale_images = scale(self.cfg.distill_images, gi, |r| r.grad_norm_images);
        let grad_scale_texts = scale(self.cfg.distill_texts, gt, |r| r.grad_norm_texts);
        if grad_scale_images < 1.0 {
            grads.images = (&grads.images * grad_scale_images)?;
        }
        if grad_scale_texts < 1.0 {
            grads.texts = (&grads.texts * grad_scale_texts)?;
        }
        let (set, momentum) = self.updated(&grads)?;
        let factors = set.similarity.iter().flat_map(|s| s.factors());
        let moved = [&set.images, &set.texts].into_iter().chain(factors);
        let all_finite = moved.map(sq_norm).sum::<Result<f64>>()?.is_finite();
        if !all_finite || !set.log_lr_image.is_finite() || !set.log_lr_text.is_finite() {
            return Err(Error::NonFinite {
                step: format!("distillation iteration {it}"),
                what: "the update of the distilled set (learning rate too high?); not applied"
                    .into(),
            });
        }
        self.set = set;
        self.momentum = momentum;
        self.iteration += 1;
        let report = DistillReport {
            iteration: it,
            expert: traj.meta.expert,
            start_epoch: s,
            loss,
            loss_image,
            loss_text,
            lr_image: self.set.lr().image,
            lr_text: self.set.lr().text,
            grad_norm_images: gi,
            grad_norm_texts: gt,
            student_loss,
            seconds: start.elapsed().as_secs_f64(),
            grad_scale_images,
            grad_scale_texts,
            grad_norm_similarity: gs,
        };
        self.history.push(report.clone());
        if let Some(path) = &self.checkpoint {
            if self.iteration.is_multiple_of(self.cfg.checkpoint_every) || self.is_done() {
                self.save_checkpoint(path)?;
            }
        }
        Ok(report)
    }

    /// The set and optimiser state after one update by `grads`: SGD with
    /// momentum (PyTorch's convention: `v = μv + g`, `x -= lr·v`), or Adam
    /// for pixels under `distill.pixel_optimizer = "adam"`; frozen
    /// modalities unchanged.
    fn updated(&self, grads: &UnrollGrads) -> Result<(DistilledSet, OuterMomentum)> {
        let mu = self.cfg.momentum;
        let mut set = self.set.clone();
        let mut mom = self.momentum.clone();
        let velocity = |v: &Option<Tensor>, g: &Tensor| -> Result<Tensor> {
            Ok(match v {
                Some(old) => ((old * mu)? + g)?,
                None => g.clone(),
            })
        };
        if self.cfg.distill_images {
            let adam =
                set.space == SynthSpace::Pixels && self.cfg.pixel_optimizer == PixelOptimizer::Adam;
            if adam {
                let t = self.iteration + 1;
                let (m, v) = (mom.images.as_ref(), mom.images_sq.as_ref());
                let (x, m, v) = adam_step(&set.images, &grads.images, m, v, t, self.cfg.lr_images)?;
                set.images = x;
                (mom.images, mom.images_sq) = (Some(m), Some(v));
            } else {
                let v = velocity(&mom.images, &grads.images)?;
                let lr = match set.space {
                    SynthSpace::Pixels => self.cfg.lr_images,
                    SynthSpace::Features => self.cfg.lr_features,
                };
                set.images = (&set.images - (&v * lr)?)?.detach();
                mom.images = Some(v);
            }
            if let Some((lo, hi)) = &self.pixel_range {
                set.images = set.images.broadcast_maximum(lo)?.broadcast_minimum(hi)?;
            }
        }
        if self.cfg.distill_texts {
            let v = velocity(&mom.texts, &grads.texts)?;
            set.texts = (&set.texts - (&v * self.cfg.lr_texts)?)?.detach();
            mom.texts = Some(v);
        }
        if let (Some(s), Some(g), Some(lors)) =
            (&set.similarity, &grads.similarity, &self.cfg.similarity)
        {
            let old = mom.similarity.take();
            let mut factors = Vec::with_capacity(g.len());
            let mut velocities = Vec::with_capacity(g.len());
            for (k, (f, gk)) in s.factors().iter().zip(g).enumerate() {
                let v = velocity(&old.as_ref().map(|o| o[k].clone()), gk)?;
                factors.push((f - (&v * lors.lr)?)?.detach());
                velocities.push(v);
            }
            set.similarity = Some(s.with_factors(factors)?);
            mom.similarity = Some(velocities);
        }
        let m = &mut mom.log_lr;
        m[0] = mu * m[0] + grads.log_lr_image;
        m[1] = mu * m[1] + grads.log_lr_text;
        let step = |d: f64| match self.cfg.max_lr_step {
            Some(bound) => d.clamp(-bound, bound),
            None => d,
        };
        set.log_lr_image -= step(self.cfg.lr_lr * m[0]);
        set.log_lr_text -= step(self.cfg.lr_lr * m[1]);
        Ok((set, mom))
    }

    /// Its distillation settings.
    pub fn config(&self) -> &DistillConfig {
        &self.cfg
    }

    /// The number of experts it matches.
    pub fn num_experts(&self) -> usize {
        self.experts.len()
    }

    /// The checkpoint file, when one is set.
    pub fn checkpoint(&self) -> Option<&Path> {
        self.checkpoint.as_deref()
    }

    /// During [`run`](Self::run), shows a progress bar and a log line every
    /// `distill.log_every` iterations on stderr.
    pub fn with_progress(mut self, on: bool) -> Self {
        self.progress = on;
        self
    }

    /// Runs the remaining iterations; returns the distilled set.
    pub fn run(&mut self) -> Result<&DistilledSet> {
        let remaining = self.cfg.iterations.saturating_sub(self.iteration) as u64;
        let progress = Progress::new(remaining, "distill", self.progress && remaining > 0);
        while !self.is_done() {
            let r = self.step()?;
            progress.inc(format!("match {:.4}", r.loss));
            if (r.iteration + 1).is_multiple_of(self.cfg.log_every) || self.is_done() {
                progress.log(&r.to_string());
            }
        }
        progress.finish();
        Ok(&self.set)
    }
}

/// Checks that every expert fits the experiment: enough epochs (`need`),
/// the same image encoder architecture, text encoder, parameter shapes and
/// dataset.
fn check_experts(exp: &Experiment, experts: &[Trajectory], need: usize) -> Result<()> {
    let template = exp.model.init(0, &exp.device, DType::F32)?;
    for t in experts {
        if t.epochs_done() < need {
            return Err(Error::Incompatible(format!(
                "expert {} has {} epochs; distillation needs {need}",
                t.meta.expert,
                t.epochs_done()
            )));
        }
        let ours = exp.config.model.image.architecture();
        let theirs = t.meta.model.image.architecture();
        if theirs != ours {
            return Err(Error::Incompatible(format!(
                "expert {} was trained with image encoder {theirs}; this distiller is configured for {ours} \
                 (train experts for it, or set model.image to match the trajectories)",
                t.meta.expert
            )));
        }
        if t.meta.text_encoder != exp.text_encoder {
            return Err(Error::Incompatible(format!(
                "expert {} was trained on embeddings of text encoder {}; this distiller uses {}",
                t.meta.expert, t.meta.text_encoder, exp.text_encoder
            )));
        }
        let first = t.epoch(0)?;
        template.image.check_compatible(&first.image).map_err(|e| {
            Error::Incompatible(format!(
                "expert {} does not fit this model: {e}",
                t.meta.expert
            ))
        })?;
        template.text.check_compatible(&first.text).map_err(|e| {
            Error::Incompatible(format!(
                "expert {} does not fit this model: {e}",
                t.meta.expert
            ))
        })?;
        if t.meta.features != exp.features_key {
            return Err(Error::Incompatible(format!(
                "expert {} was trained on other backbone features ({}) than this experiment's ({})",
                t.meta.expert,
                t.meta
                    .features
                    .as_deref()
                    .unwrap_or("none: the backbone trained"),
                exp.features_key
                    .as_deref()
                    .unwrap_or("none: the backbone trains"),
            )));
        }
        if t.meta.dataset_hash != exp.dataset.content_hash() {
            return Err(Error::Incompatible(format!(
                "expert {} was trained on another dataset ({})",
                t.meta.expert, t.meta.dataset
            )));
        }
    }
    Ok(())
}

/// What decides a distillation's result, as a JSON string: its settings
/// (without how long it runs or how often it saves and logs), the seed, the
/// data, the text encoder, the model, how each expert was trained and the
/// student's initial rates. A checkpoint resumes only under the same one.
fn fingerprint(exp: &Experiment, cfg: &DistillConfig, experts: &[Trajectory]) -> String {
    // How long to run and how often to save or log do not change what an
    // iteration computes: a checkpoint resumes under other values of these
    // (so a finished run can be extended with more iterations).
    let mut what = cfg.clone();
    what.iterations = 0;
    what.checkpoint_every = 1;
    what.log_every = 1;
    what.cached_steps = crate::config::DEFAULT_CACHED_STEPS;
    let mut json = serde_json::json!({
        "distill": what,
        "seed": exp.config.seed,
        "dataset": exp.dataset.content_hash(),
        "text_encoder": exp.text_encoder,
        "model": exp.config.model,
        // how each expert was trained, but not how long: the epochs the
        // matching reads are the same in a longer run of the same
        // settings (deterministic), so a longer run may reuse a result
        "experts": experts.iter().map(|t| {
            let mut training = t.meta.training.clone();
            training.epochs = 0;
            training.num_experts = 0;
            training.val_every_epoch = false;
            (t.meta.expert, t.meta.seed, training)
        }).collect::<Vec<_>>(),
        // the student's initial learning rates
        "initial_lr": [exp.config.experts.lr_image, exp.config.experts.lr_text],
    });
    if let Some(key) = &exp.features_key {
        // the real features (weights, data, preprocessing) of a frozen backbone
        json["features"] = serde_json::Value::String(key.clone());
    }
    json.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn values(t: &Tensor) -> Vec<f32> {
        t.to_vec1::<f32>().unwrap()
    }

    #[test]
    fn adam_steps_follow_the_formula() {
        let dev = Device::Cpu;
        let x = Tensor::new(&[1.0f32, -2.0, 0.5], &dev).unwrap();
        let g1 = Tensor::new(&[4.0f32, -0.001, 0.0], &dev).unwrap();
        // step 1: m̂ = g, v̂ = g², so each value moves by lr·sign(g) (0 where g = 0)
        let (x1, m, v) = adam_step(&x, &g1, None, None, 1, 0.1).unwrap();
        let x1v = values(&x1);
        for (got, want) in x1v.iter().zip([0.9f32, -1.9, 0.5]) {
            assert!((got - want).abs() < 1e-5, "{x1v:?}");
        }
        // step 2 by hand, first value: m = 0.9·0.4 + 0.1·2, v = 0.999·0.016 + 0.001·4
        let g2 = Tensor::new(&[2.0f32, 0.0, 0.0], &dev).unwrap();
        let (x2, _, _) = adam_step(&x1, &g2, Some(&m), Some(&v), 2, 0.1).unwrap();
        let (m2, v2) = (0.9 * 0.4 + 0.1 * 2.0, 0.999 * 0.016 + 0.001 * 4.0);
        let step = (m2 / (1.0 - 0.81)) / ((v2 / (1.0 - 0.998001f64)).sqrt() + 1e-8);
        let want = 0.9 - 0.1 * step;
        assert!(
            (values(&x2)[0] as f64 - want).abs() < 1e-5,
            "{} vs {want}",
            values(&x2)[0]
        );
    }
}
