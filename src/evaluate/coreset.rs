//! Coresets: sets of M real training pairs, the baselines distillation is
//! compared with (the poster's R, H, K, F).
//!
//! - [`CaptionedImages::random_pairs`]: M distinct images, one caption each, seeded.
//! - [`herding`] and [`k_center`]: greedy selections over a feature matrix
//!   (one row per candidate pair), at most one pair per image.
//! - [`ForgettingCounts`](crate::stage1::forgetting::ForgettingCounts): forgetting events counted while a model trains,
//!   and the selection of the most-forgotten pairs.
//!
//! Wiring them to an expert's features and to the evaluation
//! (`vl-distill baselines`) is the rest of the coreset issue.

use crate::data::captioned_images::check_pairs_fit;
use crate::data::CaptionedImages;
use crate::error::{Error, Result};
use crate::model::{TowerParams, TwoTower};
use crate::seeds::derive_seed;
use crate::stage1::trajectory::Trajectory;
use candle_core::{DType, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// The random coreset of `m` pairs as a training set (pair j = image j, text j).
pub fn random(train: &CaptionedImages, m: usize, seed: u64) -> Result<CaptionedImages> {
    as_set(train, &train.random_pairs(m, seed)?)
}

/// The pairs `idx` of `train` as a training set of their own (pair j =
/// image j, text j).
fn as_set(train: &CaptionedImages, idx: &[u32]) -> Result<CaptionedImages> {
    let (x, e) = train.batch(idx)?;
    CaptionedImages::new(x, e, (0..idx.len() as u32).collect())
}

/// The coreset selections the distilled set is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CoresetMethod {
    /// Uniform, seeded ([`CaptionedImages::random_pairs`]).
    Random,
    /// Herding in an expert's joint feature space ([`herding`]).
    Herding,
    /// k-center greedy in the same space ([`k_center`]).
    KCenter,
    /// The most-forgotten pairs while an expert trained ([`ForgettingCounts`](crate::stage1::forgetting::ForgettingCounts)).
    Forgetting,
}

impl CoresetMethod {
    /// All four, in the poster's order (R, H, K, F).
    pub const ALL: [CoresetMethod; 4] = [
        CoresetMethod::Random,
        CoresetMethod::Herding,
        CoresetMethod::KCenter,
        CoresetMethod::Forgetting,
    ];

    /// `random`, `herding`, `kcenter` or `forgetting` (the `method` of result rows).
    pub fn name(self) -> &'static str {
        match self {
            CoresetMethod::Random => "random",
            CoresetMethod::Herding => "herding",
            CoresetMethod::KCenter => "kcenter",
            CoresetMethod::Forgetting => "forgetting",
        }
    }
}

impl std::str::FromStr for CoresetMethod {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        CoresetMethod::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                Error::Config(format!(
                    "unknown coreset method {s:?}: choose random, herding, kcenter or forgetting"
                ))
            })
    }
}

/// The feature row of every training pair under `params`: its image's and
/// its caption's L2-normalised joint-space features side by side,
/// `[pairs, 2d]` (so distances weigh both modalities equally).
pub fn pair_features(
    model: &TwoTower,
    params: &TowerParams,
    train: &CaptionedImages,
    batch: usize,
) -> Result<Tensor> {
    let (fi, ft) = crate::model::retrieval::features(model, params, train, batch)?;
    let owner = Tensor::new(train.owner.as_slice(), fi.device())?;
    Ok(Tensor::cat(&[fi.index_select(&owner, 0)?, ft], 1)?)
}

/// The `m` pairs (caption indices of `train`) a method selects, at most one
/// per image, deterministic for `seed`. Herding and k-center work on
/// [`pair_features`] under the final epoch of the first expert
/// (`experts[0]`); forgetting ranks by that expert's forgetting counts.
/// Random needs no expert.
pub fn select_pairs(
    method: CoresetMethod,
    train: &CaptionedImages,
    model: &TwoTower,
    experts: &[Trajectory],
    m: usize,
    seed: u64,
) -> Result<Vec<u32>> {
    if method == CoresetMethod::Random {
        return train.random_pairs(m, seed);
    }
    let expert = experts.first().ok_or_else(|| {
        Error::Config(format!(
            "the {} coreset needs a trained expert: run the experts first",
            method.name()
        ))
    })?;
    let picked = match method {
        CoresetMethod::Forgetting => {
            let counts = expert.meta.forgetting.as_ref().ok_or_else(|| {
                Error::Config(
                    "this expert was trained before forgetting events were recorded: \
                     train the experts again (in a new output folder)"
                        .into(),
                )
            })?;
            if counts.len() != train.num_pairs() {
                return Err(Error::Shape(format!(
                    "forgetting counts of {} pairs for a train split of {}",
                    counts.len(),
                    train.num_pairs()
                )));
            }
            counts.select(&train.owner, m, seed)?
        }
        _ => {
            let last = expert.epochs.last().expect("an expert has θ0");
            let f = pair_features(model, last, train, 256)?;
            if method == CoresetMethod::Herding {
                herding(&f, &train.owner, m)?
            } else {
                k_center(&f, &train.owner, m, seed)?
            }
        }
    };
    Ok(picked.into_iter().map(|p| p as u32).collect())
}

/// The coreset as a training set (pair j = image j, text j).
pub fn select(
    method: CoresetMethod,
    train: &CaptionedImages,
    model: &TwoTower,
    experts: &[Trajectory],
    m: usize,
    seed: u64,
) -> Result<CaptionedImages> {
    as_set(
        train,
        &select_pairs(method, train, model, experts, m, seed)?,
    )
}

/// The rows of a `[N, D]` feature matrix as f32 vectors.
fn rows(features: &Tensor) -> Result<Vec<Vec<f32>>> {
    let (_, _) = features.dims2()?;
    Ok(features.to_dtype(DType::F32)?.to_vec2::<f32>()?)
}

fn sq_dist(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let d = (x - y) as f64;
            d * d
        })
        .sum()
}

/// Herding (Welling, 2009): greedily picks `m` rows of `features` (one per
/// candidate pair) so that the running mean of the picked rows stays as
/// close as possible to the mean of all rows; at step k it takes the row
/// f minimising ‖μ − (s + f)/k‖, where s is the sum of the rows picked so
/// far. At most one pair per image: a candidate whose `owner` (its image)
/// is already picked is skipped. Ties go to the lowest index, so the
/// result is deterministic. Returns row indices in picking order.
pub fn herding(features: &Tensor, owner: &[u32], m: usize) -> Result<Vec<usize>> {
    let f = rows(features)?;
    check_pairs_fit(m, owner, f.len())?;
    let d = f.first().map_or(0, |r| r.len());
    let n = f.len() as f64;
    let mut mean = vec![0.0f64; d];
    for r in &f {
        for (a, v) in mean.iter_mut().zip(r) {
            *a += *v as f64 / n;
        }
    }
    let mut sum = vec![0.0f64; d];
    let mut used_image = std::collections::HashSet::new();
    let mut picked = Vec::with_capacity(m);
    for k in 1..=m {
        // ‖kμ − s − f‖² is ‖μ − (s + f)/k‖² times k²
        let target: Vec<f64> = mean
            .iter()
            .zip(&sum)
            .map(|(mu, s)| k as f64 * mu - s)
            .collect();
        let best = f
            .iter()
            .enumerate()
            .filter(|(i, _)| !used_image.contains(&owner[*i]))
            .map(|(i, r)| {
                let dist: f64 = target
                    .iter()
                    .zip(r)
                    .map(|(t, v)| {
                        let e = t - *v as f64;
                        e * e
                    })
                    .sum();
                (i, dist)
            })
            .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)))
            .expect("check_m guarantees a candidate");
        used_image.insert(owner[best.0]);
        for (s, v) in sum.iter_mut().zip(&f[best.0]) {
            *s += *v as f64;
        }
        picked.push(best.0);
    }
    Ok(picked)
}

/// k-center greedy (Sener & Savarese, 2018): starts from one row drawn
/// with `seed`, then repeatedly picks the row farthest (Euclidean) from
/// every row picked so far, covering the feature space with `m` centres.
/// At most one pair per image (as [`herding`]); ties go to the lowest
/// index. Returns row indices in picking order.
pub fn k_center(features: &Tensor, owner: &[u32], m: usize, seed: u64) -> Result<Vec<usize>> {
    let f = rows(features)?;
    check_pairs_fit(m, owner, f.len())?;
    if m == 0 {
        return Ok(Vec::new());
    }
    let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(seed, "k-center", &[m as u64]));
    let first = rng.random_range(0..f.len());
    Ok(k_center_from(&f, owner, m, first))
}

/// [`k_center`] from a given first row.
fn k_center_from(f: &[Vec<f32>], owner: &[u32], m: usize, first: usize) -> Vec<usize> {
    let mut picked = Vec::with_capacity(m);
    let mut used_image = std::collections::HashSet::new();
    let mut nearest = vec![f64::INFINITY; f.len()];
    let mut next = first;
    loop {
        picked.push(next);
        used_image.insert(owner[next]);
        if picked.len() == m {
            return picked;
        }
        for (i, r) in f.iter().enumerate() {
            nearest[i] = nearest[i].min(sq_dist(r, &f[next]));
        }
        next = (0..f.len())
            .filter(|i| !used_image.contains(&owner[*i]))
            .max_by(|&a, &b| nearest[a].total_cmp(&nearest[b]).then(b.cmp(&a)))
            .expect("check_m guarantees a candidate");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    fn column(v: &[f32]) -> Tensor {
        Tensor::from_vec(v.to_vec(), (v.len(), 1), &Device::Cpu).unwrap()
    }

    #[test]
    fn herding_tracks_the_mean() {
        // mean 5.1: 5.5 first, then the point that brings the running mean
        // back (4 → mean 4.75), then 6 (5.17), then 0 over 10 (3.875 is
        // closer to 5.1 than 6.375 is), then 10
        let f = column(&[0.0, 10.0, 4.0, 6.0, 5.5]);
        let owner: Vec<u32> = (0..5).collect();
        assert_eq!(herding(&f, &owner, 5).unwrap(), vec![4, 2, 3, 0, 1]);
        assert_eq!(herding(&f, &owner, 2).unwrap(), vec![4, 2]);
        // one pair per image: rows 4 and 2 share an image, so 2 is skipped
        let shared = [0, 1, 2, 3, 2];
        assert_eq!(herding(&f, &shared, 3).unwrap(), vec![4, 3, 0]);
        assert!(herding(&f, &shared, 5).is_err());
        assert!(herding(&f, &owner[..4], 2).is_err());
    }

    #[test]
    fn k_center_takes_the_farthest_point() {
        let f: Vec<Vec<f32>> = [0.0, 1.0, 2.0, 10.0, 11.0, 20.0]
            .iter()
            .map(|v| vec![*v])
            .collect();
        let owner: Vec<u32> = (0..6).collect();
        // from 0: 20 (distance 20), 10 (10 from both ends), 2, then 1 and
        // 11 tie at distance 1: the lower index
        assert_eq!(k_center_from(&f, &owner, 6, 0), vec![0, 5, 3, 2, 1, 4]);
        let t = column(&[0.0, 1.0, 2.0, 10.0, 11.0, 20.0]);
        let a = k_center(&t, &owner, 4, 3).unwrap();
        assert_eq!(a, k_center(&t, &owner, 4, 3).unwrap());
        let mut d = a.clone();
        d.sort();
        d.dedup();
        assert_eq!(d.len(), 4);
        assert!(k_center(&t, &owner, 7, 0).is_err());
    }
}
