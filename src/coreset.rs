//! Coresets: sets of M real training pairs, the baselines distillation is
//! compared with (the poster's R, H, K, F).
//!
//! - [`random_pairs`]: M distinct images, one caption each, seeded.
//! - [`herding`] and [`k_center`]: greedy selections over a feature matrix
//!   (one row per candidate pair), at most one pair per image.
//! - [`ForgettingCounts`]: forgetting events counted while a model trains,
//!   and the selection of the most-forgotten pairs.
//!
//! Wiring them to an expert's features and to the evaluation
//! (`vl-distill baselines`) is the rest of the coreset issue.

use crate::error::{Error, Result};
use crate::model::{TowerParams, TwoTower};
use crate::pairs::CaptionedImages;
use crate::train::derive_seed;
use crate::trajectory::Trajectory;
use candle_core::{DType, Tensor};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// `m` random real pairs of `train`: `m` distinct images, each with one of
/// its captions drawn uniformly; returns the caption (pair) indices, seeded.
pub fn random_pairs(train: &CaptionedImages, m: usize, seed: u64) -> Result<Vec<u32>> {
    let n = train.num_images();
    if m > n {
        return Err(Error::Config(format!(
            "{m} pairs requested but the train split has only {n} images"
        )));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(seed, "random-pairs", &[m as u64]));
    let mut images: Vec<u32> = (0..n as u32).collect();
    images.shuffle(&mut rng);
    let mut by_image: Vec<Vec<u32>> = vec![Vec::new(); n];
    for (c, &o) in train.owner.iter().enumerate() {
        by_image[o as usize].push(c as u32);
    }
    Ok(images[..m]
        .iter()
        .map(|&i| {
            let caps = &by_image[i as usize];
            caps[rng.random_range(0..caps.len())]
        })
        .collect())
}

/// The random coreset of `m` pairs as a training set (pair j = image j, text j).
pub fn random(train: &CaptionedImages, m: usize, seed: u64) -> Result<CaptionedImages> {
    as_set(train, &random_pairs(train, m, seed)?)
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
    /// Uniform, seeded ([`random_pairs`]).
    Random,
    /// Herding in an expert's joint feature space ([`herding`]).
    Herding,
    /// k-center greedy in the same space ([`k_center`]).
    KCenter,
    /// The most-forgotten pairs while an expert trained ([`ForgettingCounts`]).
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
    let (fi, ft) = crate::eval::features(model, params, train, batch)?;
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
        return random_pairs(train, m, seed);
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

fn check_m(m: usize, owner: &[u32], n: usize) -> Result<()> {
    if owner.len() != n {
        return Err(Error::Shape(format!(
            "{} owners for {n} feature rows",
            owner.len()
        )));
    }
    let mut images: Vec<u32> = owner.to_vec();
    images.sort_unstable();
    images.dedup();
    if m > images.len() {
        return Err(Error::Config(format!(
            "{m} pairs requested but the candidates cover only {} images",
            images.len()
        )));
    }
    Ok(())
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
    check_m(m, owner, f.len())?;
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
    check_m(m, owner, f.len())?;
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

/// Forgetting events per training pair (Toneva et al., 2019), counted while
/// a model trains on minibatches.
///
/// "Correct" in the contrastive setting: within its minibatch, a pair's
/// image retrieves its own caption first (the row's largest logit) **and**
/// its caption retrieves its own image first (the column's largest logit);
/// see [`batch_correct`]. A forgetting event is a presentation at which a
/// pair is not correct after having been correct at its previous
/// presentation. Pairs never correct at any presentation count as forgotten
/// more than any other (as in the paper, "never learned" ranks first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForgettingCounts {
    last: Vec<Option<bool>>,
    ever_correct: Vec<bool>,
    events: Vec<u32>,
}

impl ForgettingCounts {
    /// Counters for `n` training pairs, none presented yet.
    pub fn new(n: usize) -> Self {
        ForgettingCounts {
            last: vec![None; n],
            ever_correct: vec![false; n],
            events: vec![0; n],
        }
    }

    /// Records one presentation of the pairs `pairs`, `correct[j]` telling
    /// whether `pairs[j]` was correct.
    pub fn record(&mut self, pairs: &[u32], correct: &[bool]) -> Result<()> {
        if pairs.len() != correct.len() {
            return Err(Error::Shape(format!(
                "{} pairs but {} correctness flags",
                pairs.len(),
                correct.len()
            )));
        }
        for (&p, &c) in pairs.iter().zip(correct) {
            let p = p as usize;
            if p >= self.events.len() {
                return Err(Error::Shape(format!(
                    "pair {p} of {} counted",
                    self.events.len()
                )));
            }
            if self.last[p] == Some(true) && !c {
                self.events[p] += 1;
            }
            self.last[p] = Some(c);
            self.ever_correct[p] |= c;
        }
        Ok(())
    }

    /// Number of pairs counted.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether no pair is counted.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Forgetting events of every pair (never-learned pairs report their
    /// count too; [`ForgettingCounts::select`] ranks them first).
    pub fn events(&self) -> &[u32] {
        &self.events
    }

    /// Whether pair `p` was ever correct.
    pub fn ever_learned(&self, p: usize) -> bool {
        self.ever_correct[p]
    }

    /// The `m` most-forgotten pairs, at most one per image (`owner`): never
    /// learned first, then by forgetting events, ties in an order drawn
    /// from `seed`.
    pub fn select(&self, owner: &[u32], m: usize, seed: u64) -> Result<Vec<usize>> {
        check_m(m, owner, self.events.len())?;
        let mut order: Vec<usize> = (0..self.events.len()).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(seed, "forgetting", &[m as u64]));
        order.shuffle(&mut rng);
        let key = |p: usize| {
            if self.ever_correct[p] {
                self.events[p] as u64
            } else {
                u64::MAX
            }
        };
        order.sort_by_key(|&p| std::cmp::Reverse(key(p)));
        let mut used_image = std::collections::HashSet::new();
        Ok(order
            .into_iter()
            .filter(|&p| used_image.insert(owner[p]))
            .take(m)
            .collect())
    }
}

/// Per pair of a minibatch, whether it is matched both ways in the
/// `[B, B]` image × caption similarity matrix `logits`: row i's largest
/// entry is at column i and column i's largest entry is at row i.
pub fn batch_correct(logits: &Tensor) -> Result<Vec<bool>> {
    let (b, c) = logits.dims2()?;
    if b != c {
        return Err(Error::Shape(format!("logits {b}×{c} are not square")));
    }
    let rows = logits.argmax(1)?.to_vec1::<u32>()?;
    let cols = logits.argmax(0)?.to_vec1::<u32>()?;
    Ok((0..b)
        .map(|i| rows[i] as usize == i && cols[i] as usize == i)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    #[test]
    fn random_pairs_are_distinct_images_and_seeded() {
        let images = Tensor::zeros((10, 3, 4, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
        let texts = Tensor::zeros((30, 5), candle_core::DType::F32, &Device::Cpu).unwrap();
        let owner: Vec<u32> = (0..30).map(|c| c / 3).collect();
        let data = CaptionedImages::new(images, texts, owner.clone()).unwrap();
        let a = random_pairs(&data, 6, 1).unwrap();
        assert_eq!(a, random_pairs(&data, 6, 1).unwrap());
        assert_ne!(a, random_pairs(&data, 6, 2).unwrap());
        let mut imgs: Vec<u32> = a.iter().map(|&c| owner[c as usize]).collect();
        imgs.sort();
        imgs.dedup();
        assert_eq!(imgs.len(), 6);
        assert!(random_pairs(&data, 11, 1).is_err());
        assert_eq!(random(&data, 4, 0).unwrap().num_pairs(), 4);
    }

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

    #[test]
    fn forgetting_counts_a_scripted_history() {
        let mut c = ForgettingCounts::new(4);
        // pair 0: learned, forgotten, learned, forgotten → 2 events
        // pair 1: never learned; pair 2: always right → 0; pair 3: 1 event
        let history: [(&[u32], &[bool]); 4] = [
            (&[0, 1, 2, 3], &[true, false, true, false]),
            (&[0, 1, 2, 3], &[false, false, true, true]),
            (&[0, 3], &[true, false]),
            (&[0, 2], &[false, true]),
        ];
        for (pairs, correct) in history {
            c.record(pairs, correct).unwrap();
        }
        assert_eq!(c.events(), &[2, 0, 0, 1]);
        assert!(!c.ever_learned(1) && c.ever_learned(2));
        let owner: Vec<u32> = (0..4).collect();
        assert_eq!(c.select(&owner, 3, 0).unwrap(), vec![1, 0, 3]);
        assert_eq!(c.select(&owner, 4, 9).unwrap(), vec![1, 0, 3, 2]);
        assert!(c.select(&owner, 5, 0).is_err());
        assert!(c.record(&[4], &[true]).is_err());
        assert!(c.record(&[0, 1], &[true]).is_err());
    }

    #[test]
    fn correct_means_matched_both_ways() {
        // pair 0 matched both ways; pair 1's image prefers caption 2;
        // pair 2's caption is retrieved by image 1 first
        let logits = Tensor::new(
            &[[5.0f32, 1.0, 0.0], [0.0, 2.0, 3.0], [1.0, 0.0, 2.5]],
            &Device::Cpu,
        )
        .unwrap();
        assert_eq!(batch_correct(&logits).unwrap(), vec![true, false, false]);
        assert!(batch_correct(&logits.narrow(0, 0, 2).unwrap()).is_err());
    }
}
