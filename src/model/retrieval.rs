//! Retrieval by a two-tower model: text retrieval (TR, image → caption) and image
//! retrieval (IR, caption → image) Recall@1/5/10 in percent.
//!
//! An image is a TR hit at K when any of its captions ranks in the top K of
//! all captions; a caption is an IR hit at K when its own image ranks in the
//! top K of all images (the protocol of the paper's code, from BLIP).

use crate::data::CaptionedImages;
use crate::error::{Error, Result};
use crate::model::{Mode, TowerParams, TwoTower};
use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

/// Recall@K of both directions, in percent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Recall {
    /// Text retrieval R@1.
    pub tr_r1: f64,
    /// Text retrieval R@5.
    pub tr_r5: f64,
    /// Text retrieval R@10.
    pub tr_r10: f64,
    /// Image retrieval R@1.
    pub ir_r1: f64,
    /// Image retrieval R@5.
    pub ir_r5: f64,
    /// Image retrieval R@10.
    pub ir_r10: f64,
}

impl Recall {
    /// The six values in the order TR@1, TR@5, TR@10, IR@1, IR@5, IR@10.
    pub fn values(&self) -> [f64; 6] {
        [
            self.tr_r1,
            self.tr_r5,
            self.tr_r10,
            self.ir_r1,
            self.ir_r5,
            self.ir_r10,
        ]
    }

    /// A recall from its six values in [`Recall::values`] order.
    pub fn from_values(v: [f64; 6]) -> Self {
        Recall {
            tr_r1: v[0],
            tr_r5: v[1],
            tr_r10: v[2],
            ir_r1: v[3],
            ir_r5: v[4],
            ir_r10: v[5],
        }
    }

    /// Recall of random similarity scores with `images` images and `captions`
    /// captions (each image owning `captions / images` of them): the chance level.
    pub fn chance(images: usize, captions: usize) -> Recall {
        let per = captions as f64 / images as f64;
        let tr = |k: f64| 100.0 * (1.0 - (1.0 - k / captions as f64).powf(per)).min(1.0);
        let ir = |k: f64| 100.0 * (k / images as f64).min(1.0);
        Recall::from_values([tr(1.0), tr(5.0), tr(10.0), ir(1.0), ir(5.0), ir(10.0)])
    }
}

impl std::fmt::Display for Recall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TR R@1/5/10 {:.1}/{:.1}/{:.1}  IR R@1/5/10 {:.1}/{:.1}/{:.1}",
            self.tr_r1, self.tr_r5, self.tr_r10, self.ir_r1, self.ir_r5, self.ir_r10
        )
    }
}

/// Recall from a similarity matrix `sim[i][c]` (row-major, `images × captions`)
/// and `owner[c]`, the image of caption `c`. Ties count against the hit
/// (a competitor with an equal score ranks ahead).
pub fn recall_from_similarity(sim: &[f32], images: usize, owner: &[u32]) -> Result<Recall> {
    let captions = owner.len();
    if sim.len() != images * captions || images == 0 || captions == 0 {
        return Err(Error::Shape(format!(
            "similarity has {} values for {images} images × {captions} captions",
            sim.len()
        )));
    }
    let mut own: Vec<Vec<usize>> = vec![Vec::new(); images];
    for (c, &o) in owner.iter().enumerate() {
        let o = o as usize;
        if o >= images {
            return Err(Error::Shape(format!(
                "caption {c} owned by image {o} >= {images}"
            )));
        }
        own[o].push(c);
    }
    let ks = [1usize, 5, 10];
    let mut tr = [0usize; 3];
    for (i, caps) in own.iter().enumerate() {
        if caps.is_empty() {
            return Err(Error::Shape(format!("image {i} has no caption")));
        }
        let row = &sim[i * captions..(i + 1) * captions];
        // rank of the image's best caption = number of other images' captions scoring at least as high
        let best = caps
            .iter()
            .map(|&c| row[c])
            .fold(f32::NEG_INFINITY, f32::max);
        let rank = row
            .iter()
            .zip(owner)
            .filter(|&(&v, &o)| o as usize != i && v >= best)
            .count();
        for (k, hit) in ks.iter().zip(tr.iter_mut()) {
            if rank < *k {
                *hit += 1;
            }
        }
    }
    let mut ir = [0usize; 3];
    for (c, &o) in owner.iter().enumerate() {
        let s = sim[o as usize * captions + c];
        let rank = (0..images)
            .filter(|&i| i != o as usize && sim[i * captions + c] >= s)
            .count();
        for (k, hit) in ks.iter().zip(ir.iter_mut()) {
            if rank < *k {
                *hit += 1;
            }
        }
    }
    let pi = |n: usize| 100.0 * n as f64 / images as f64;
    let pc = |n: usize| 100.0 * n as f64 / captions as f64;
    Ok(Recall::from_values([
        pi(tr[0]),
        pi(tr[1]),
        pi(tr[2]),
        pc(ir[0]),
        pc(ir[1]),
        pc(ir[2]),
    ]))
}

/// L2-normalised joint-space features of all images `[images, d]` and all
/// captions `[captions, d]` of `data`, encoded in chunks of `batch`
/// (evaluation mode, no graph).
pub fn features(
    model: &TwoTower,
    params: &TowerParams,
    data: &CaptionedImages,
    batch: usize,
) -> Result<(Tensor, Tensor)> {
    let enc = |t: &Tensor, f: &dyn Fn(&Tensor) -> Result<Tensor>| -> Result<Tensor> {
        let n = t.dim(0)?;
        let mut parts = Vec::new();
        let mut i = 0;
        while i < n {
            let len = batch.max(1).min(n - i);
            parts.push(crate::model::ops::l2_normalize(&f(&t.narrow(0, i, len)?)?)?);
            i += len;
        }
        Ok(Tensor::cat(&parts, 0)?)
    };
    let params = params.detach();
    let fi = enc(&data.images, &|x| model.encode_images(&params.image, x))?;
    let ft = enc(&data.texts, &|e| {
        model.encode_texts(&params.text, e, Mode::Eval)
    })?;
    Ok((fi, ft))
}

/// Encodes all images and captions of `data` in chunks of `batch` and
/// returns the cosine-similarity matrix `[images, captions]`.
pub fn similarity(
    model: &TwoTower,
    params: &TowerParams,
    data: &CaptionedImages,
    batch: usize,
) -> Result<Tensor> {
    let (fi, ft) = features(model, params, data, batch)?;
    Ok(fi.matmul(&ft.t()?)?)
}

/// TR/IR Recall@1/5/10 of `params` on `data`.
pub fn evaluate(
    model: &TwoTower,
    params: &TowerParams,
    data: &CaptionedImages,
    batch: usize,
) -> Result<Recall> {
    let sim = similarity(model, params, data, batch)?;
    let v: Vec<f32> = sim.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    recall_from_similarity(&v, data.num_images(), &data.owner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_and_reversed_similarities() {
        // 3 images, 2 captions each; caption c belongs to image c / 2.
        let owner = [0u32, 0, 1, 1, 2, 2];
        let mut sim = vec![0f32; 18];
        for c in 0..6 {
            sim[(c / 2) * 6 + c] = 1.0;
        }
        let r = recall_from_similarity(&sim, 3, &owner).unwrap();
        assert_eq!(r.values(), [100.0; 6]);
        let neg: Vec<f32> = sim.iter().map(|v| -v).collect();
        let r = recall_from_similarity(&neg, 3, &owner).unwrap();
        assert_eq!((r.tr_r1, r.ir_r1), (0.0, 0.0));
        assert_eq!((r.tr_r5, r.ir_r5), (100.0, 100.0));
    }

    #[test]
    fn hand_made_ranks() {
        // 2 images, captions 0,1 -> image 0; caption 2 -> image 1.
        // image 0 ranks caption 2 first, then caption 1: TR@1 miss, TR@5 hit.
        // image 1 ranks caption 2 first: hit.
        let owner = [0u32, 0, 1];
        let sim = [
            0.1f32, 0.5, 0.9, // image 0
            0.0, 0.2, 0.8, // image 1
        ];
        let r = recall_from_similarity(&sim, 2, &owner).unwrap();
        assert_eq!(r.tr_r1, 50.0);
        assert_eq!(r.tr_r5, 100.0);
        // IR: caption 0: image0 0.1 vs image1 0.0 -> hit; caption 1: 0.5 vs 0.2 -> hit;
        // caption 2: image1 0.8 vs image0 0.9 -> miss at 1.
        assert!((r.ir_r1 - 200.0 / 3.0).abs() < 1e-9);
        assert_eq!(r.ir_r5, 100.0);
        assert!(recall_from_similarity(&sim[..5], 2, &owner).is_err());
        assert!(recall_from_similarity(&sim, 2, &[0, 0, 5]).is_err());
    }

    #[test]
    fn ties_count_against_the_hit_and_chance() {
        let r = recall_from_similarity(&[1.0, 1.0, 1.0, 1.0], 2, &[0, 1]).unwrap();
        assert_eq!((r.tr_r1, r.ir_r1), (0.0, 0.0));
        let c = Recall::chance(100, 500);
        assert!((c.ir_r1 - 1.0).abs() < 1e-9);
        assert!(c.tr_r1 > 0.9 && c.tr_r1 < 1.0);
    }
}
