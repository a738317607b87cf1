//! [`CaptionedImages`]: images and caption embeddings ready for a model, with
//! for each caption the image it describes. A training pair is one caption
//! and its image; an epoch visits every caption once, as the paper's code does.

use crate::data::{Dataset, ImageNorm, Split};
use crate::error::{Error, Result};
use crate::text::CaptionEmbeddings;
use candle_core::{Device, Tensor};

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
        })
    }

    /// One split of a dataset with its cached embeddings, on `device`.
    pub fn from_split(
        ds: &Dataset,
        emb: &CaptionEmbeddings,
        split: Split,
        norm: &ImageNorm,
        device: &Device,
    ) -> Result<Self> {
        let images = ds.images_tensor(split, norm, device)?;
        let (_, owner) = ds.captions(split);
        let owner = owner.into_iter().map(|o| o as u32).collect();
        Self::new(images, emb.split(split).to_device(device)?, owner)
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
}
