//! The text tower: a trainable projection of the frozen sentence embedding
//! into the joint space.

use super::{ops, Mode, ParamSet};
use crate::config::TextTowerConfig;
use crate::error::Result;
use candle_core::{DType, Device, Tensor};
use rand_chacha::ChaCha8Rng;

/// A projection from `in_dim` (the sentence encoder's size) to `out_dim`.
#[derive(Debug, Clone, PartialEq)]
pub struct TextTower {
    /// Linear or the paper's projection head.
    pub kind: TextTowerConfig,
    /// Sentence-embedding dimension.
    pub in_dim: usize,
    /// Joint-space dimension.
    pub out_dim: usize,
}

impl TextTower {
    /// A tower of the given kind and sizes.
    pub fn new(kind: TextTowerConfig, in_dim: usize, out_dim: usize) -> Self {
        TextTower {
            kind,
            in_dim,
            out_dim,
        }
    }

    /// Fresh parameters with PyTorch's default `nn.Linear` init. Names follow
    /// the paper's code (`projection`, `fc`, `layer_norm`) for the head and
    /// `proj` for the single linear layer.
    pub fn init(&self, rng: &mut ChaCha8Rng, device: &Device, dtype: DType) -> Result<ParamSet> {
        let mut p = ParamSet::new();
        let (i, o) = (self.in_dim, self.out_dim);
        let lin = |p: &mut ParamSet, rng: &mut ChaCha8Rng, name: &str, fan_in: usize, fan_out| {
            let bound = 1.0 / (fan_in as f64).sqrt();
            p.push(
                format!("{name}.weight"),
                ops::uniform(rng, &[fan_out, fan_in], bound, dtype, device)?,
            );
            p.push(
                format!("{name}.bias"),
                ops::uniform(rng, &[fan_out], bound, dtype, device)?,
            );
            Result::Ok(())
        };
        match self.kind {
            TextTowerConfig::Linear => lin(&mut p, rng, "proj", i, o)?,
            TextTowerConfig::ProjectionHead { .. } => {
                lin(&mut p, rng, "projection", i, o)?;
                lin(&mut p, rng, "fc", o, o)?;
                p.push("layer_norm.weight", Tensor::ones(o, dtype, device)?);
                p.push("layer_norm.bias", Tensor::zeros(o, dtype, device)?);
            }
        }
        Ok(p)
    }

    /// Projects `[B, in_dim]` embeddings to `[B, out_dim]`.
    pub fn forward(&self, p: &ParamSet, e: &Tensor, mode: Mode) -> Result<Tensor> {
        match self.kind {
            TextTowerConfig::Linear => {
                ops::linear(e, p.get("proj.weight")?, Some(p.get("proj.bias")?))
            }
            TextTowerConfig::ProjectionHead { dropout } => {
                let projected = ops::linear(
                    e,
                    p.get("projection.weight")?,
                    Some(p.get("projection.bias")?),
                )?;
                let h = ops::gelu(&projected)?;
                let h = ops::linear(&h, p.get("fc.weight")?, Some(p.get("fc.bias")?))?;
                let h = match mode {
                    Mode::Train { seed } => ops::dropout(&h, dropout, seed)?,
                    Mode::Eval => h,
                };
                let h = (h + projected)?;
                ops::layer_norm(
                    &h,
                    p.get("layer_norm.weight")?,
                    p.get("layer_norm.bias")?,
                    1e-5,
                )
            }
        }
    }
}
