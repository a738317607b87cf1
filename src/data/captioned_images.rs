//! [`CaptionedImages`]: images and caption embeddings ready for a model, with
//! for each caption the image it describes. A training pair is one caption
//! and its image; an epoch visits every caption once, as the paper's code does.

use crate::config::ImageNorm;
use crate::data::{Dataset, Split};
use crate::error::{Error, Result};
use crate::seeds::derive_seed;
use candle_core::{Device, Tensor};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Images `[N, 3, H, W]`, caption embeddings `[C, D]`, and `owner[c]` = the
/// image of caption `c`.
#[derive(Debug, Clone)]
pub struct CaptionedImages {
    /// Normalised images.
    pub images: Tensor,
    /// Frozen caption embeddings.
    pub texts: Tensor,
    /// For each caption, the index of its image.
    pub owner: Vec<u32>,
    /// A learned image–text similarity over the pairs, `[P, P]` (pair rows
    /// × pair columns; a distilled set's, see
    /// [`LearnedSimilarity`](crate::stage2::similarity::LearnedSimilarity)):
    /// when present, students train on the soft-label loss against it
    /// instead of InfoNCE. `None` for real data.
    pub similarity: Option<Tensor>,
}

impl CaptionedImages {
    /// Checks that the parts agree.
    pub fn new(images: Tensor, texts: Tensor, owner: Vec<u32>) -> Result<Self> {
        let n = images.dim(0)?;
        if texts.dim(0)? != owner.len() {
            return Err(Error::Shape(format!(
                "{} caption embeddings but {} owners",
                texts.dim(0)?,
                owner.len()
            )));
        }
        if let Some(bad) = owner.iter().find(|&&o| o as usize >= n) {
            return Err(Error::Shape(format!("caption owner {bad} >= {n} images")));
        }
        Ok(CaptionedImages {
            images,
            texts,
            owner,
            similarity: None,
        })
    }

    /// These pairs with a learned similarity `[P, P]` over them, which
    /// students then train against ([`CaptionedImages::similarity`]).
    pub fn with_similarity(mut self, similarity: Tensor) -> Result<Self> {
        let p = self.num_pairs();
        if similarity.dims() != [p, p] {
            return Err(Error::Shape(format!(
                "a similarity over {p} pairs must be {p}×{p}, not {:?}",
                similarity.dims()
            )));
        }
        self.similarity = Some(similarity);
        Ok(self)
    }

    /// The similarity's block of the pairs `idx` (rows and columns in
    /// `idx`'s order), or `None` without a similarity.
    pub fn batch_targets(&self, idx: &[u32]) -> Result<Option<Tensor>> {
        let Some(s) = &self.similarity else {
            return Ok(None);
        };
        let i = Tensor::new(idx, s.device())?;
        Ok(Some(s.index_select(&i, 0)?.index_select(&i, 1)?))
    }

    /// One split of a dataset with its captions' embeddings `texts` (one
    /// row per caption, in the split's caption order), on `device`.
    pub fn from_split(
        ds: &Dataset,
        texts: &Tensor,
        split: Split,
        norm: &ImageNorm,
        device: &Device,
    ) -> Result<Self> {
        let images = ds.images_tensor(split, norm, device)?;
        let (_, owner) = ds.captions(split);
        let owner = owner.into_iter().map(|o| o as u32).collect();
        Self::new(images, texts.to_device(device)?, owner)
    }

    /// Number of images.
    pub fn num_images(&self) -> usize {
        self.images.dim(0).unwrap_or(0)
    }

    /// Number of (caption, image) pairs.
    pub fn num_pairs(&self) -> usize {
        self.owner.len()
    }

    /// The images and caption embeddings of the pairs `idx`.
    pub fn batch(&self, idx: &[u32]) -> Result<(Tensor, Tensor)> {
        let dev = self.images.device();
        let owners: Vec<u32> = idx.iter().map(|&i| self.owner[i as usize]).collect();
        let x = self
            .images
            .index_select(&Tensor::new(owners.as_slice(), dev)?, 0)?;
        let e = self
            .texts
            .index_select(&Tensor::new(idx, self.texts.device())?, 0)?;
        Ok((x, e))
    }

    /// `m` random real pairs of these: `m` distinct images, each with one of
    /// its captions drawn uniformly; returns the caption (pair) indices, seeded.
    pub fn random_pairs(&self, m: usize, seed: u64) -> Result<Vec<u32>> {
        let n = self.num_images();
        if m > n {
            return Err(Error::Config(format!(
                "{m} pairs requested but the train split has only {n} images"
            )));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(seed, "random-pairs", &[m as u64]));
        let mut images: Vec<u32> = (0..n as u32).collect();
        images.shuffle(&mut rng);
        let mut by_image: Vec<Vec<u32>> = vec![Vec::new(); n];
        for (c, &o) in self.owner.iter().enumerate() {
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
}

/// Checks that `m` pairs, at most one per image, can be chosen among `n`
/// candidates whose images are `owner`.
pub(crate) fn check_pairs_fit(m: usize, owner: &[u32], n: usize) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_pairs_are_distinct_images_and_seeded() {
        let images = Tensor::zeros((10, 3, 4, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
        let texts = Tensor::zeros((30, 5), candle_core::DType::F32, &Device::Cpu).unwrap();
        let owner: Vec<u32> = (0..30).map(|c| c / 3).collect();
        let data = CaptionedImages::new(images, texts, owner.clone()).unwrap();
        let a = data.random_pairs(6, 1).unwrap();
        assert_eq!(a, data.random_pairs(6, 1).unwrap());
        assert_ne!(a, data.random_pairs(6, 2).unwrap());
        let mut imgs: Vec<u32> = a.iter().map(|&c| owner[c as usize]).collect();
        imgs.sort();
        imgs.dedup();
        assert_eq!(imgs.len(), 6);
        assert!(data.random_pairs(11, 1).is_err());
    }
}
