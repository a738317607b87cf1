//! [`FeatureInput`]: the image "encoder" of a frozen-backbone model, whose
//! inputs are already the backbone's features `[B, D]`; it has no
//! parameters and passes them through to the image head.

use super::{ImageEncoder, ParamSet};
use crate::error::{Error, Result};
use candle_core::{DType, Device, Tensor};
use rand_chacha::ChaCha8Rng;

/// Identity over `[B, dim]` backbone features, labelled with the backbone
/// it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureInput {
    /// Feature size (the backbone's `out_dim`).
    pub dim: usize,
    /// The frozen backbone's name, e.g. `efficientnet_lite0`.
    pub backbone: String,
}

impl ImageEncoder for FeatureInput {
    fn name(&self) -> String {
        format!("{} (frozen)", self.backbone)
    }

    fn out_dim(&self) -> usize {
        self.dim
    }

    fn init(&self, _rng: &mut ChaCha8Rng, _device: &Device, _dtype: DType) -> Result<ParamSet> {
        Ok(ParamSet::new())
    }

    fn forward(&self, _params: &ParamSet, x: &Tensor) -> Result<Tensor> {
        match x.dims() {
            [_, d] if *d == self.dim => Ok(x.clone()),
            dims => Err(Error::Shape(format!(
                "this model's image tower reads {}-d features of the frozen {} (got a tensor {dims:?}); \
                 pixels go through Experiment::backbone first",
                self.dim, self.backbone
            ))),
        }
    }
}
