//! Coresets: sets of M real training pairs, the baselines distillation is
//! compared with. For now the random coreset; herding, k-center and
//! forgetting follow.

use crate::error::{Error, Result};
use crate::pairs::CaptionedImages;
use crate::train::derive_seed;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

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
    let idx = random_pairs(train, m, seed)?;
    let (x, e) = train.batch(&idx)?;
    CaptionedImages::new(x, e, (0..m as u32).collect())
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
}
