//! Minibatch SGD of the two-tower model with one learning rate per tower:
//! the training loop shared by experts, full-data evaluation and (later)
//! training on coresets and distilled sets.

use crate::config::ExpertConfig;
use crate::data::CaptionedImages;
use crate::error::{Error, Result};
use crate::model::{Modality, Mode, ParamSet, TowerParams, TwoTower};
use crate::second_order::scalar;
use crate::seeds::derive_seed;
use crate::stage1::forgetting::{batch_correct, ForgettingCounts};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The student's learning rates, one per tower.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TowerLr {
    /// Learning rate of the image tower.
    pub image: f64,
    /// Learning rate of the text tower.
    pub text: f64,
}

impl TowerLr {
    /// The rate of one modality.
    pub fn get(&self, m: Modality) -> f64 {
        match m {
            Modality::Image => self.image,
            Modality::Text => self.text,
        }
    }
}

/// SGD hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdConfig {
    /// Learning rate per tower.
    pub lr: TowerLr,
    /// Heavy-ball momentum (PyTorch's convention: `v = μv + g`, `θ -= lr·v`).
    pub momentum: f64,
    /// L2 weight decay added to the gradient.
    pub weight_decay: f64,
    /// Pairs per minibatch (a last batch of fewer than 2 pairs is dropped).
    pub batch_size: usize,
    /// Captions of each image an epoch trains on, drawn afresh every epoch
    /// ([`epoch_pairs`]); `None`: every pair, every epoch.
    pub captions_per_image: Option<usize>,
}

impl From<&ExpertConfig> for TowerLr {
    /// The experts' learning rates per tower (also the student's initial α
    /// and the rates coresets are trained with).
    fn from(e: &ExpertConfig) -> Self {
        TowerLr {
            image: e.lr_image,
            text: e.lr_text,
        }
    }
}

impl From<&ExpertConfig> for SgdConfig {
    /// The experts' SGD settings.
    fn from(e: &ExpertConfig) -> Self {
        SgdConfig {
            lr: TowerLr::from(e),
            momentum: e.momentum,
            weight_decay: e.weight_decay,
            batch_size: e.batch_size,
            captions_per_image: e.captions_per_image,
        }
    }
}

/// Momentum buffers (absent until the first step, or when momentum is 0).
#[derive(Debug, Clone, Default)]
pub struct SgdState {
    /// Velocity per tower.
    pub velocity: Option<TowerParams>,
}

fn update(
    theta: &ParamSet,
    grad: &ParamSet,
    vel: Option<&ParamSet>,
    lr: f64,
    cfg: &SgdConfig,
) -> Result<(ParamSet, ParamSet)> {
    let mut g = grad.clone();
    if cfg.weight_decay > 0.0 {
        g = g.add_scaled(theta, cfg.weight_decay)?;
    }
    let v = match vel {
        Some(v) if cfg.momentum > 0.0 => v.scale(cfg.momentum)?.add_scaled(&g, 1.0)?,
        _ => g,
    };
    Ok((theta.add_scaled(&v, -lr)?.detach(), v.detach()))
}

/// One SGD step on the pairs `idx` of `data` (against their learned
/// similarity when `data` has one); returns the loss before the step.
/// With `counts`, also records which pairs of the batch were matched both
/// ways before the step ([`batch_correct`]).
#[allow(clippy::too_many_arguments)]
pub fn sgd_step(
    model: &TwoTower,
    params: &mut TowerParams,
    state: &mut SgdState,
    data: &CaptionedImages,
    idx: &[u32],
    cfg: &SgdConfig,
    seed: u64,
    counts: Option<&mut ForgettingCounts>,
) -> Result<f64> {
    let (x, e) = data.batch(idx)?;
    let targets = data.batch_targets(idx)?;
    let (image, _vi) = params.image.to_vars()?;
    let (text, _vt) = params.text.to_vars()?;
    let p = TowerParams { image, text };
    let (loss, logits) = model.loss_against(&p, &x, &e, targets.as_ref(), Mode::Train { seed })?;
    if let Some(counts) = counts {
        counts.record(idx, &batch_correct(&logits.detach())?)?;
    }
    let l = scalar(&loss)?;
    if !l.is_finite() {
        return Err(Error::NonFinite {
            step: "SGD step".into(),
            what: format!("contrastive loss = {l}"),
        });
    }
    let grads = loss.backward()?;
    let gi = p.image.grads_from(&grads)?;
    let gt = p.text.grads_from(&grads)?;
    let vel = state.velocity.as_ref();
    let (ni, vi) = update(&params.image, &gi, vel.map(|v| &v.image), cfg.lr.image, cfg)?;
    let (nt, vt) = update(&params.text, &gt, vel.map(|v| &v.text), cfg.lr.text, cfg)?;
    *params = TowerParams {
        image: ni,
        text: nt,
    };
    if cfg.momentum > 0.0 {
        state.velocity = Some(TowerParams {
            image: vi,
            text: vt,
        });
    }
    Ok(l)
}

/// The shuffled minibatches of one epoch over `num_pairs` pairs, from `seed`.
pub fn epoch_batches(num_pairs: usize, batch_size: usize, seed: u64) -> Vec<Vec<u32>> {
    batches_of((0..num_pairs as u32).collect(), batch_size, seed)
}

/// `pairs` shuffled from `seed` and cut into minibatches (a last one of
/// fewer than 2 pairs is dropped).
pub fn batches_of(mut pairs: Vec<u32>, batch_size: usize, seed: u64) -> Vec<Vec<u32>> {
    pairs.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    pairs
        .chunks(batch_size)
        .filter(|c| c.len() >= 2)
        .map(<[u32]>::to_vec)
        .collect()
}

/// The pairs one epoch trains on when it takes `per_image` captions of
/// each image: for every image (in order), `per_image` of its pairs drawn
/// without replacement from `seed` (all of them when it has no more),
/// given `owner[pair]` = the pair's image. An epoch then is one pass over
/// the images rather than over every caption, as CLIP-style training on
/// several captions per image often does.
pub fn epoch_pairs(owner: &[u32], per_image: usize, seed: u64) -> Vec<u32> {
    let images = owner.iter().map(|&o| o as usize + 1).max().unwrap_or(0);
    let mut by_image: Vec<Vec<u32>> = vec![Vec::new(); images];
    for (pair, &img) in owner.iter().enumerate() {
        by_image[img as usize].push(pair as u32);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut chosen = Vec::with_capacity(images * per_image);
    for mut pairs in by_image {
        if pairs.len() > per_image {
            pairs.shuffle(&mut rng);
            pairs.truncate(per_image);
            pairs.sort_unstable();
        }
        chosen.extend(pairs);
    }
    chosen
}

/// What one epoch over `data` trains on, for log lines: `16405 pairs`, or
/// `3343 images × 1 of their captions`.
pub fn describe_epoch(data: &CaptionedImages, captions_per_image: Option<usize>) -> String {
    match captions_per_image {
        None => format!("{} pairs", data.num_pairs()),
        Some(k) => format!(
            "{} images × {k} of their captions (of {} pairs)",
            data.num_images(),
            data.num_pairs()
        ),
    }
}

/// The minibatches of one epoch of `cfg` over `data`, from `seed`.
fn batches_for(data: &CaptionedImages, cfg: &SgdConfig, seed: u64) -> Vec<Vec<u32>> {
    match cfg.captions_per_image {
        None => epoch_batches(data.num_pairs(), cfg.batch_size, seed),
        Some(k) => {
            let pairs = epoch_pairs(&data.owner, k, derive_seed(seed, "epoch-captions", &[]));
            batches_of(pairs, cfg.batch_size, seed)
        }
    }
}

/// One epoch of SGD over the pairs of `data` (all of them, or
/// `cfg.captions_per_image` captions of each image) in an order drawn from
/// `seed`; with `counts`, records the forgetting events of every pair (see
/// [`ForgettingCounts`]). `on_batch(i, n, loss)` is called after each of the
/// `n` batches. Returns the mean loss.
#[allow(clippy::too_many_arguments)]
pub fn train_epoch(
    model: &TwoTower,
    params: &mut TowerParams,
    state: &mut SgdState,
    data: &CaptionedImages,
    cfg: &SgdConfig,
    seed: u64,
    mut counts: Option<&mut ForgettingCounts>,
    mut on_batch: impl FnMut(usize, usize, f64),
) -> Result<f64> {
    let batches = batches_for(data, cfg, seed);
    if batches.is_empty() {
        return Err(Error::Config(format!(
            "{} pairs make no minibatch of at least 2",
            data.num_pairs()
        )));
    }
    let mut total = 0.0;
    for (i, b) in batches.iter().enumerate() {
        let l = sgd_step(
            model,
            params,
            state,
            data,
            b,
            cfg,
            seed.wrapping_mul(1_000_003).wrapping_add(i as u64),
            counts.as_deref_mut(),
        )?;
        total += l;
        on_batch(i, batches.len(), l);
    }
    // The contrastive loss is scale-invariant in the image features (instance
    // norm, L2 normalisation), so diverging weights can leave it finite: check them too.
    for m in Modality::BOTH {
        if !params.get(m).all_finite()? {
            return Err(Error::NonFinite {
                step: "end of epoch".into(),
                what: format!("{} tower parameters (learning rate too high?)", m.name()),
            });
        }
    }
    Ok(total / batches.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Tensor;

    #[test]
    fn epoch_pairs_takes_k_distinct_captions_of_every_image_and_varies_by_seed() {
        // 4 images with 5, 1, 3 and 5 captions (pairs of one image need
        // not be adjacent)
        let owner: Vec<u32> = vec![0, 0, 1, 0, 0, 2, 2, 0, 2, 3, 3, 3, 3, 3];
        for k in 1..=6 {
            let chosen = epoch_pairs(&owner, k, 7);
            let mut per_image = [0usize; 4];
            for &p in &chosen {
                per_image[owner[p as usize] as usize] += 1;
            }
            let want = [5.min(k), 1, 3.min(k), 5.min(k)];
            assert_eq!(per_image, want, "k = {k}");
            let mut unique = chosen.clone();
            unique.dedup();
            assert_eq!(unique.len(), chosen.len(), "a pair drawn twice");
        }
        // another epoch (seed) draws other captions; the same seed the same
        let draws: std::collections::HashSet<Vec<u32>> =
            (0..8).map(|s| epoch_pairs(&owner, 1, s)).collect();
        assert!(draws.len() > 1);
        assert_eq!(epoch_pairs(&owner, 2, 3), epoch_pairs(&owner, 2, 3));
    }

    #[test]
    fn captions_per_image_shortens_the_epoch_and_unset_keeps_every_pair() {
        let owner: Vec<u32> = (0..40).map(|p| p / 5).collect(); // 8 images × 5
        let data = CaptionedImages::new(
            Tensor::zeros(
                (8, 3, 4, 4),
                candle_core::DType::F32,
                &candle_core::Device::Cpu,
            )
            .unwrap(),
            Tensor::zeros((40, 6), candle_core::DType::F32, &candle_core::Device::Cpu).unwrap(),
            owner,
        )
        .unwrap();
        let mut cfg = SgdConfig {
            lr: TowerLr {
                image: 0.1,
                text: 0.1,
            },
            momentum: 0.0,
            weight_decay: 0.0,
            batch_size: 4,
            captions_per_image: None,
        };
        assert_eq!(batches_for(&data, &cfg, 1), epoch_batches(40, 4, 1));
        cfg.captions_per_image = Some(1);
        let b = batches_for(&data, &cfg, 1);
        assert_eq!(b.len(), 2);
        let mut images: Vec<u32> = b.concat().iter().map(|&p| p / 5).collect();
        images.sort_unstable();
        assert_eq!(images, (0..8).collect::<Vec<_>>(), "each image once");
    }
}
