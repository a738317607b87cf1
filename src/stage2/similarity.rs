//! A learned image–text similarity over the distilled pairs, after LoRS
//! (Xu et al., "Low-Rank Similarity Mining for Multimodal Dataset
//! Distillation", ICML 2024): besides pixels and text embeddings the set
//! learns which of its pairs also match each other. Students train against
//! it with the soft-label loss ([`soft_label_bce`](crate::model::loss::soft_label_bce))
//! instead of InfoNCE, the batch's block of the matrix as targets.
//!
//! Two forms:
//! - **low rank** (LoRS's default): `S = diag(a) + (α / r) · L Rᵀ` with
//!   `a: [N]`, `L, R: [N, r]`, started at `a = 1`, `L ~ N(0, 1)`, `R = 0`,
//!   so `S = I` at first, as a LoRA adapter starts at zero; it costs
//!   `N (1 + 2r)` floats;
//! - **full**: the `N × N` matrix itself, started at `I`.
//!
//! The factors are what stage 2 differentiates and updates; a batch's
//! targets are built from them inside the student's step graph, so the
//! reverse sweep yields their gradient with the pixels' and texts'.

use crate::config::LorsConfig;
use crate::error::{Error, Result};
use crate::seeds::seeded_normal;
use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;

/// The name of factor `k` in a file: `similarity_0`, `similarity_1`, …
pub fn factor_key(k: usize) -> String {
    format!("similarity_{k}")
}

/// The learned similarity of N distilled pairs: its factors and, for the
/// low-rank form, the scale `α / r` of `L Rᵀ`.
#[derive(Debug, Clone)]
pub struct LearnedSimilarity {
    /// `[a, L, R]` (low rank) or `[S]` (full).
    factors: Vec<Tensor>,
    /// `α / r` for the low-rank form; `None` for the full matrix.
    low_rank_scale: Option<f64>,
}

impl LearnedSimilarity {
    /// The low-rank form over `pairs` pairs at rank `rank` and scaling
    /// `alpha`, at `S = I`: `a = 1`, `L` standard normal from `seed`,
    /// `R = 0`.
    pub fn low_rank(
        pairs: usize,
        rank: usize,
        alpha: f64,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        if rank == 0 || pairs == 0 {
            return Err(Error::Config(format!(
                "a low-rank similarity needs pairs and a rank above 0 (got {pairs} pairs, rank {rank})"
            )));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let a = Tensor::ones(pairs, DType::F32, device)?;
        let l = seeded_normal(&mut rng, &[pairs, rank], device)?;
        let r = Tensor::zeros((pairs, rank), DType::F32, device)?;
        Ok(LearnedSimilarity {
            factors: vec![a, l, r],
            low_rank_scale: Some(alpha / rank as f64),
        })
    }

    /// The form `cfg` asks for over `pairs` pairs, at `S = I` (the low-rank
    /// form's `L` drawn from `seed`).
    pub fn from_config(cfg: &LorsConfig, pairs: usize, seed: u64, device: &Device) -> Result<Self> {
        if cfg.full {
            Self::full(pairs, device)
        } else {
            Self::low_rank(pairs, cfg.rank, cfg.alpha, seed, device)
        }
    }

    /// The full form over `pairs` pairs, at `S = I`.
    pub fn full(pairs: usize, device: &Device) -> Result<Self> {
        Ok(LearnedSimilarity {
            factors: vec![Tensor::eye(pairs, DType::F32, device)?],
            low_rank_scale: None,
        })
    }

    /// A similarity from stored factors (`[a, L, R]` with the scale `α / r`,
    /// or `[S]` without), checked for shape.
    pub fn from_factors(factors: Vec<Tensor>, low_rank_scale: Option<f64>) -> Result<Self> {
        let ok = match (low_rank_scale, factors.as_slice()) {
            (Some(_), [a, l, r]) => {
                let n = a.dims1()?;
                let (ln, lr) = l.dims2()?;
                r.dims2()? == (n, lr) && ln == n
            }
            (None, [s]) => {
                let (n, m) = s.dims2()?;
                n == m
            }
            _ => false,
        };
        if !ok {
            let dims: Vec<_> = factors.iter().map(|f| f.dims().to_vec()).collect();
            return Err(Error::Shape(format!(
                "similarity factors {dims:?} are neither [a: N, L: N×r, R: N×r] nor [S: N×N]"
            )));
        }
        Ok(LearnedSimilarity {
            factors,
            low_rank_scale,
        })
    }

    /// The factors, `[a, L, R]` or `[S]`.
    pub fn factors(&self) -> &[Tensor] {
        &self.factors
    }

    /// `α / r` of the low-rank form; `None` for the full matrix.
    pub fn low_rank_scale(&self) -> Option<f64> {
        self.low_rank_scale
    }

    /// The same form with new factor values (after an optimiser step).
    pub fn with_factors(&self, factors: Vec<Tensor>) -> Result<Self> {
        Self::from_factors(factors, self.low_rank_scale)
    }

    /// Number of pairs N.
    pub fn pairs(&self) -> usize {
        self.factors[0].dim(0).unwrap_or(0)
    }

    /// Floats stored: `N (1 + 2r)` for the low-rank form, `N²` for the full.
    pub fn num_floats(&self) -> usize {
        self.factors.iter().map(Tensor::elem_count).sum()
    }

    /// The block of rows and columns `idx` of the matrix built from
    /// `factors` (this form's, or variables standing for them), so that a
    /// gradient reaches the factors through it.
    pub fn block_of(&self, factors: &[Tensor], idx: &[u32]) -> Result<Tensor> {
        let i = Tensor::new(idx, factors[0].device())?;
        match (self.low_rank_scale, factors) {
            (Some(scale), [a, l, r]) => {
                let b = idx.len();
                let eye = Tensor::eye(b, a.dtype(), a.device())?;
                let diag = eye.broadcast_mul(&a.index_select(&i, 0)?.unsqueeze(1)?)?;
                let lb = l.index_select(&i, 0)?;
                let rb = r.index_select(&i, 0)?;
                Ok((diag + (lb.matmul(&rb.t()?)? * scale)?)?)
            }
            (None, [s]) => Ok(s.index_select(&i, 0)?.index_select(&i, 1)?),
            _ => Err(Error::Shape(format!(
                "{} factors for a {} similarity",
                factors.len(),
                if self.low_rank_scale.is_some() {
                    "low-rank"
                } else {
                    "full"
                }
            ))),
        }
    }

    /// The whole `[N, N]` matrix.
    pub fn matrix(&self) -> Result<Tensor> {
        let all: Vec<u32> = (0..self.pairs() as u32).collect();
        self.block_of(&self.factors, &all)
    }

    /// The matrix as rows of f32 on the CPU (row i: image i).
    pub fn values(&self) -> Result<Vec<Vec<f32>>> {
        Ok(self
            .matrix()?
            .to_dtype(DType::F32)?
            .to_device(&Device::Cpu)?
            .to_vec2::<f32>()?)
    }

    /// Every off-diagonal entry `(image i, text j, S_ij)` of the matrix
    /// `values` (as [`values`](Self::values) returns it), row by row.
    pub fn off_diagonal(values: &[Vec<f32>]) -> Vec<(usize, usize, f32)> {
        values
            .iter()
            .enumerate()
            .flat_map(|(i, row)| {
                row.iter()
                    .enumerate()
                    .filter(move |&(j, _)| j != i)
                    .map(move |(j, &v)| (i, j, v))
            })
            .collect()
    }

    /// For each pair, the `k` other pairs it is most similar to (the largest
    /// off-diagonal entries of its row), strongest first, with their values.
    pub fn strongest_partners(&self, k: usize) -> Result<Vec<Vec<(usize, f32)>>> {
        let m = self.values()?;
        Ok(m.iter()
            .enumerate()
            .map(|(i, row)| {
                let mut others: Vec<(usize, f32)> = row
                    .iter()
                    .enumerate()
                    .filter(|&(j, _)| j != i)
                    .map(|(j, &v)| (j, v))
                    .collect();
                others.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                others.truncate(k);
                others
            })
            .collect())
    }

    /// The `k` largest off-diagonal entries of the matrix, `(image i, text
    /// j, S_ij)`, strongest first (ties by position): the pairs the set
    /// links most.
    pub fn strongest_links(&self, k: usize) -> Result<Vec<(usize, usize, f32)>> {
        let mut links = Self::off_diagonal(&self.values()?);
        links.sort_by(|a, b| b.2.total_cmp(&a.2).then((a.0, a.1).cmp(&(b.0, b.1))));
        links.truncate(k);
        Ok(links)
    }

    /// Adds the factors to a map of named tensors (a set's file or a
    /// checkpoint) under [`factor_key`]s.
    pub fn insert_factors(&self, map: &mut HashMap<String, Tensor>) {
        for (k, f) in self.factors.iter().enumerate() {
            map.insert(factor_key(k), f.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_start_at_the_identity_and_count_their_floats() {
        let dev = Device::Cpu;
        let lr = LearnedSimilarity::low_rank(6, 2, 3.0, 1, &dev).unwrap();
        let full = LearnedSimilarity::full(6, &dev).unwrap();
        let eye: Vec<Vec<f32>> = Tensor::eye(6, DType::F32, &dev).unwrap().to_vec2().unwrap();
        assert_eq!(lr.matrix().unwrap().to_vec2::<f32>().unwrap(), eye);
        assert_eq!(full.matrix().unwrap().to_vec2::<f32>().unwrap(), eye);
        assert_eq!(lr.num_floats(), 6 * (1 + 2 * 2));
        assert_eq!(full.num_floats(), 36);
        let cfg = LorsConfig {
            rank: 2,
            ..Default::default()
        };
        assert_eq!(cfg.num_floats(6), lr.num_floats());
        let full_cfg = LorsConfig { full: true, ..cfg };
        assert_eq!(full_cfg.num_floats(6), full.num_floats());
    }

    #[test]
    fn the_strongest_links_are_the_largest_off_diagonal_entries() {
        let dev = Device::Cpu;
        let m = Tensor::new(&[[1f32, 0.2, -0.5], [0.7, 1.0, 0.2], [0.1, 0.3, 1.0]], &dev).unwrap();
        let s = LearnedSimilarity::from_factors(vec![m], None).unwrap();
        let links = s.strongest_links(3).unwrap();
        // 0.7 at (1, 0), then 0.3 at (2, 1), then the two 0.2 by position
        assert_eq!(links, vec![(1, 0, 0.7), (2, 1, 0.3), (0, 1, 0.2)]);
        assert_eq!(s.strongest_links(10).unwrap().len(), 6);
    }

    #[test]
    fn a_block_is_the_matrix_at_those_rows_and_columns() {
        let dev = Device::Cpu;
        let s = LearnedSimilarity::low_rank(5, 2, 2.0, 3, &dev).unwrap();
        // give R values so that the off-diagonal part is not zero
        let r = Tensor::arange(0f32, 10.0, &dev)
            .unwrap()
            .reshape((5, 2))
            .unwrap();
        let s = s
            .with_factors(vec![s.factors()[0].clone(), s.factors()[1].clone(), r])
            .unwrap();
        let m = s.matrix().unwrap().to_vec2::<f32>().unwrap();
        let idx = [3u32, 0, 4];
        let b = s
            .block_of(s.factors(), &idx)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        for (bi, &i) in idx.iter().enumerate() {
            for (bj, &j) in idx.iter().enumerate() {
                assert!((b[bi][bj] - m[i as usize][j as usize]).abs() < 1e-5);
            }
        }
        assert!(
            m[0][1].abs() > 1e-3,
            "the low-rank part shows off the diagonal"
        );
    }

    #[test]
    fn strongest_partners_are_the_largest_off_diagonal_entries() {
        let dev = Device::Cpu;
        let m = Tensor::new(
            &[[5.0f32, 0.1, 0.7], [0.2, 5.0, -0.3], [0.4, 0.9, 5.0]],
            &dev,
        )
        .unwrap();
        let s = LearnedSimilarity::from_factors(vec![m], None).unwrap();
        let p = s.strongest_partners(1).unwrap();
        assert_eq!(p, vec![vec![(2, 0.7)], vec![(0, 0.2)], vec![(1, 0.9)]]);
        assert_eq!(
            s.strongest_partners(5).unwrap()[1],
            vec![(0, 0.2), (2, -0.3)]
        );
    }

    #[test]
    fn factors_of_the_wrong_shape_are_refused() {
        let dev = Device::Cpu;
        let a = Tensor::ones(4, DType::F32, &dev).unwrap();
        let l = Tensor::ones((4, 2), DType::F32, &dev).unwrap();
        let r = Tensor::ones((3, 2), DType::F32, &dev).unwrap();
        assert!(LearnedSimilarity::from_factors(vec![a, l, r], Some(1.0)).is_err());
        let s = Tensor::ones((4, 3), DType::F32, &dev).unwrap();
        assert!(LearnedSimilarity::from_factors(vec![s], None).is_err());
        assert!(LearnedSimilarity::low_rank(4, 0, 1.0, 0, &dev).is_err());
    }
}
