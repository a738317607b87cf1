//! [`FrozenBackbone`]: a pretrained image encoder that does not train
//! (`model.backbone = "frozen"`), with the per-dimension standardisation of
//! its features measured on the train split. It turns pixels into the
//! standardised features the heads read, differentiably, so stage 2 can
//! send its pixel gradient back through it.

use super::{checkpoint, image_encoder, ImageEncoder, ParamSet};
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Standardisation `(f − mean) / std` per feature dimension.
#[derive(Debug, Clone)]
pub struct Standardisation {
    /// Per-dimension mean, `[1, D]`.
    pub mean: Tensor,
    /// Per-dimension standard deviation (floored at `1e-6`), `[1, D]`.
    pub std: Tensor,
}

impl Standardisation {
    /// The mean and standard deviation of the rows of `x` `[N, D]`.
    pub fn of(x: &Tensor) -> Result<Self> {
        let mean = x.mean_keepdim(0)?;
        let std = x
            .broadcast_sub(&mean)?
            .sqr()?
            .mean_keepdim(0)?
            .sqrt()?
            .clamp(1e-6, f64::INFINITY)?;
        Ok(Standardisation { mean, std })
    }

    /// `(x − mean) / std`, row-wise.
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.broadcast_sub(&self.mean)?.broadcast_div(&self.std)?)
    }
}

/// A frozen image encoder, its weights and the standardisation of its features.
#[derive(Debug)]
pub struct FrozenBackbone {
    /// The encoder (deterministic forward: eval mode).
    pub encoder: Box<dyn ImageEncoder>,
    /// Its weights: the configured checkpoint, else a seeded initialisation.
    pub params: ParamSet,
    /// The side of the square images it is fed, in pixels.
    pub image_size: usize,
    /// SHA-256 prefix of the weights (names, shapes and values).
    pub weights_digest: String,
    /// Whether the weights came from a checkpoint (false: random weights).
    pub pretrained: bool,
    /// Standardisation of its features (train-split constants), once measured.
    pub standardisation: Option<Standardisation>,
}

impl FrozenBackbone {
    /// The image encoder of `cfg` for `image_size` px images, with the
    /// weights of its checkpoint (or, without one, drawn from `seed`), on
    /// `device`.
    pub fn new(cfg: &ModelConfig, image_size: usize, seed: u64, device: &Device) -> Result<Self> {
        let encoder = image_encoder(&cfg.image, image_size)?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let template = encoder.init(&mut rng, &Device::Cpu, DType::F32)?;
        let (params, pretrained) = match cfg.image.checkpoint() {
            Some(path) => (
                checkpoint::load_like(path, &template, &encoder.name(), &Device::Cpu, DType::F32)?,
                true,
            ),
            None => (template, false),
        };
        let weights_digest = digest_of(&params)?;
        Ok(FrozenBackbone {
            params: params.to_device(device)?,
            encoder,
            image_size,
            weights_digest,
            pretrained,
            standardisation: None,
        })
    }

    /// The backbone's name and a digest of its weights, e.g.
    /// `efficientnet_lite0@1a2b3c4d5e6f`: what a feature-space set is tied to.
    pub fn id(&self) -> String {
        format!("{}@{}", self.encoder.name(), self.weights_digest)
    }

    /// Feature size.
    pub fn out_dim(&self) -> usize {
        self.encoder.out_dim()
    }

    /// Raw features `[B, D]` of normalised pixels `[B, 3, H, W]`
    /// (differentiable with respect to the pixels).
    pub fn raw_features(&self, pixels: &Tensor) -> Result<Tensor> {
        let (_, _, h, w) = pixels.dims4()?;
        if (h, w) != (self.image_size, self.image_size) {
            return Err(Error::Shape(format!(
                "the frozen {} reads {s}×{s} px images, got {h}×{w}",
                self.encoder.name(),
                s = self.image_size
            )));
        }
        self.encoder.forward(&self.params, pixels)
    }

    /// Standardised features `[B, D]` of normalised pixels: what the image
    /// head reads. Errors before the standardisation is measured.
    pub fn features(&self, pixels: &Tensor) -> Result<Tensor> {
        let s = self.standardisation.as_ref().ok_or_else(|| {
            Error::Config("the frozen backbone's standardisation is not measured yet".into())
        })?;
        s.apply(&self.raw_features(pixels)?)
    }

    /// Standardised features of `pixels`, `chunk` images at a time, without
    /// a graph.
    pub fn features_chunked(&self, pixels: &Tensor, chunk: usize) -> Result<Tensor> {
        let n = pixels.dim(0)?;
        let parts = (0..n)
            .step_by(chunk.max(1))
            .map(|i| {
                Ok(self
                    .features(&pixels.narrow(0, i, chunk.min(n - i))?.detach())?
                    .detach())
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::cat(&parts, 0)?)
    }
}

/// SHA-256 prefix of a parameter set's names, shapes and f32 values.
pub fn digest_of(p: &ParamSet) -> Result<String> {
    let mut bytes = Vec::new();
    for (name, t) in p.iter() {
        bytes.extend_from_slice(name.as_bytes());
        bytes.push(0);
        for d in t.dims() {
            bytes.extend_from_slice(&(*d as u64).to_le_bytes());
        }
        let v: Vec<f32> = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        for x in v {
            bytes.extend_from_slice(&x.to_le_bytes());
        }
    }
    Ok(crate::io::short_digest(&bytes))
}
