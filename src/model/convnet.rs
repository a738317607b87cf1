//! The ConvNet of trajectory-matching dataset distillation (Cazenavette et
//! al., "Dataset Distillation by Matching Training Trajectories", CVPR 2022):
//! `depth` blocks of conv 3×3 (padding 1) → instance norm → ReLU → 2×2
//! average pool, then flatten. Parameter names follow the PyTorch
//! `nn.Sequential` of that code (`features.{4i}.weight` for the i-th conv,
//! `features.{4i+1}.weight` for its norm).

use super::ops;
use super::{ImageEncoder, ParamSet};
use crate::error::Result;
use candle_core::{DType, Device, Tensor};
use rand_chacha::ChaCha8Rng;

/// A ConvNet image encoder for square `image_size` inputs.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvNet {
    /// Channels of every block.
    pub width: usize,
    /// Number of blocks.
    pub depth: usize,
    /// Input side in pixels.
    pub image_size: usize,
}

impl ConvNet {
    /// A ConvNet with `depth` blocks of `width` channels for `image_size` px inputs.
    pub fn new(width: usize, depth: usize, image_size: usize) -> Self {
        ConvNet {
            width,
            depth,
            image_size,
        }
    }

    fn final_side(&self) -> usize {
        self.image_size >> self.depth
    }
}

impl ImageEncoder for ConvNet {
    fn name(&self) -> String {
        format!("convnet-w{}-d{}", self.width, self.depth)
    }

    fn out_dim(&self) -> usize {
        let s = self.final_side();
        self.width * s * s
    }

    fn init(&self, rng: &mut ChaCha8Rng, device: &Device, dtype: DType) -> Result<ParamSet> {
        let mut p = ParamSet::new();
        let mut cin = 3;
        for i in 0..self.depth {
            // PyTorch's default Conv2d init: U(±1/√fan_in) for weight and bias.
            let bound = 1.0 / ((cin * 9) as f64).sqrt();
            p.push(
                format!("features.{}.weight", 4 * i),
                ops::uniform(rng, &[self.width, cin, 3, 3], bound, dtype, device)?,
            );
            p.push(
                format!("features.{}.bias", 4 * i),
                ops::uniform(rng, &[self.width], bound, dtype, device)?,
            );
            p.push(
                format!("features.{}.weight", 4 * i + 1),
                Tensor::ones(self.width, dtype, device)?,
            );
            p.push(
                format!("features.{}.bias", 4 * i + 1),
                Tensor::zeros(self.width, dtype, device)?,
            );
            cin = self.width;
        }
        Ok(p)
    }

    fn forward(&self, p: &ParamSet, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        for i in 0..self.depth {
            let w = p.get(&format!("features.{}.weight", 4 * i))?;
            let b = p.get(&format!("features.{}.bias", 4 * i))?;
            let g = p.get(&format!("features.{}.weight", 4 * i + 1))?;
            let bt = p.get(&format!("features.{}.bias", 4 * i + 1))?;
            h = ops::conv_norm_relu_pool(&h, w, b, g, bt)?;
        }
        Ok(h.flatten_from(1)?)
    }
}
