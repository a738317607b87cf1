//! Functional two-tower contrastive models.
//!
//! A model value ([`TwoTower`]) holds only the architecture; its parameters
//! live in a [`TowerParams`] (one [`ParamSet`] per modality) passed to every
//! forward. That is what lets stage 2 rebuild the student from any snapshot
//! and differentiate through its SGD steps.

mod channel;
pub mod checkpoint;
mod conv;
pub mod convnet;
mod depthwise;
pub mod efficientnet;
pub mod features;
pub mod frozen;
mod kernel;
pub mod layers;
pub mod loss;
pub mod nfnet;
mod norm_block;
pub mod ops;
pub mod params;
pub mod retrieval;
pub mod text_tower;
pub mod vit;

pub use convnet::ConvNet;
pub use efficientnet::EfficientNetLite0;
pub use features::FeatureInput;
pub use frozen::{FrozenBackbone, Standardisation};
pub use nfnet::{NfCfg, NfNet};
pub use params::ParamSet;
pub use text_tower::TextTower;
pub use vit::{Vit, VitCfg};

use crate::config::{Backbone, EncoderSize, ImageEncoderConfig, ModelConfig};
use crate::error::Result;
use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// The two modalities; each has its own tower, learning rate and trajectory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Modality {
    /// The image tower.
    Image,
    /// The text tower.
    Text,
}

impl Modality {
    /// Both modalities, image first.
    pub const BOTH: [Modality; 2] = [Modality::Image, Modality::Text];

    /// `"image"` or `"text"`.
    pub fn name(self) -> &'static str {
        match self {
            Modality::Image => "image",
            Modality::Text => "text",
        }
    }
}

/// Whether a forward pass trains (dropout on, with a mask from `seed`) or evaluates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Training; stochastic layers draw from `seed` so a step can be replayed exactly.
    Train {
        /// Seed of this step's dropout masks.
        seed: u64,
    },
    /// Evaluation: deterministic.
    Eval,
}

/// An image encoder with parameters passed in (functional), differentiable twice.
pub trait ImageEncoder: Send + Sync + std::fmt::Debug {
    /// A short identifier, e.g. `convnet-w64-d3` (used in results and file metadata).
    fn name(&self) -> String;
    /// Size of the feature vector `forward` returns.
    fn out_dim(&self) -> usize;
    /// Fresh parameters drawn from `rng`.
    fn init(&self, rng: &mut ChaCha8Rng, device: &Device, dtype: DType) -> Result<ParamSet>;
    /// Features `[B, out_dim]` of images `[B, 3, H, W]`.
    fn forward(&self, params: &ParamSet, x: &Tensor) -> Result<Tensor>;
}

/// The image encoder of `cfg` for `image_size` px images (checkpoint
/// weights, if any, are loaded by [`TwoTower::init`]; a LoRA ViT's frozen
/// base and EfficientNet-Lite0's frozen batch-norm statistics are loaded
/// here).
pub fn image_encoder(cfg: &ImageEncoderConfig, image_size: usize) -> Result<Box<dyn ImageEncoder>> {
    let label = cfg.architecture();
    let nf = |full: fn() -> NfCfg, scaled: fn() -> NfCfg, size: &EncoderSize| {
        let c = if *size == EncoderSize::Full {
            full()
        } else {
            scaled()
        };
        Ok(Box::new(NfNet::new(label.clone(), c)?) as Box<dyn ImageEncoder>)
    };
    let vit_cfg = |size: &EncoderSize| match size {
        EncoderSize::Tiny => VitCfg::tiny_patch16_224(),
        EncoderSize::Base => VitCfg::base_patch16_224(),
        _ => VitCfg::scaled(image_size),
    };
    match cfg {
        ImageEncoderConfig::ConvNet { width, depth } => {
            crate::config::check_convnet_depth(*depth, image_size)?;
            Ok(Box::new(ConvNet::new(*width, *depth, image_size)))
        }
        ImageEncoderConfig::NfResnet50 { size, .. } => {
            nf(NfCfg::nf_resnet50, NfCfg::nf_resnet50_scaled, size)
        }
        ImageEncoderConfig::NfRegnetB1 { size, .. } => {
            nf(NfCfg::nf_regnet_b1, NfCfg::nf_regnet_b1_scaled, size)
        }
        ImageEncoderConfig::NfnetL0 { size, .. } => {
            nf(NfCfg::nfnet_l0, NfCfg::nfnet_l0_scaled, size)
        }
        ImageEncoderConfig::Vit { size, .. } => Ok(Box::new(Vit::new(label, vit_cfg(size))?)),
        ImageEncoderConfig::EfficientnetLite0 { checkpoint } => Ok(Box::new(match checkpoint {
            Some(path) => EfficientNetLite0::from_checkpoint(path)?,
            None => EfficientNetLite0::new(None)?,
        })),
        ImageEncoderConfig::VitLora {
            size,
            checkpoint,
            lora,
        } => {
            let vc = vit_cfg(size);
            let base = match checkpoint {
                Some(path) => Some(checkpoint::load_like(
                    path,
                    &Vit::base_template(&vc)?,
                    &label,
                    &Device::Cpu,
                    DType::F32,
                )?),
                None => None,
            };
            Ok(Box::new(Vit::with_lora(label, vc, lora.clone(), base)?))
        }
    }
}

/// The parameters of both towers.
#[derive(Debug, Clone)]
pub struct TowerParams {
    /// Image tower (encoder, then the optional projection `proj.*`).
    pub image: ParamSet,
    /// Text tower (and `logit_scale` when the temperature is learned).
    pub text: ParamSet,
}

impl TowerParams {
    /// The set of one modality.
    pub fn get(&self, m: Modality) -> &ParamSet {
        match m {
            Modality::Image => &self.image,
            Modality::Text => &self.text,
        }
    }

    /// Applies `f` to both sets.
    pub fn map(&self, mut f: impl FnMut(Modality, &ParamSet) -> Result<ParamSet>) -> Result<Self> {
        Ok(TowerParams {
            image: f(Modality::Image, &self.image)?,
            text: f(Modality::Text, &self.text)?,
        })
    }

    /// Detached copies of both sets.
    pub fn detach(&self) -> Self {
        TowerParams {
            image: self.image.detach(),
            text: self.text.detach(),
        }
    }

    /// Total number of scalar parameters.
    pub fn num_elements(&self) -> usize {
        self.image.num_elements() + self.text.num_elements()
    }
}

/// The two-tower model: image encoder (+ optional projection), text
/// projection, and InfoNCE with temperature τ.
#[derive(Debug)]
pub struct TwoTower {
    /// The image encoder.
    pub encoder: Box<dyn ImageEncoder>,
    /// Joint-space size of the optional image projection.
    pub image_proj: Option<usize>,
    /// The text tower.
    pub text: TextTower,
    /// τ (initial τ when learned).
    pub temperature: f64,
    /// Whether `logit_scale` is a parameter.
    pub learn_temperature: bool,
    /// Pretrained weights (CPU, f32, read once from `model.image.checkpoint`)
    /// that every initialisation of the image encoder starts from (not for a
    /// LoRA ViT, whose checkpoint is its frozen base).
    pub image_checkpoint: Option<ParamSet>,
}

impl TwoTower {
    /// Builds the model of `cfg` for `image_size` px images and `text_dim`-d
    /// sentence embeddings. With a frozen backbone (`model.backbone`), the
    /// image tower reads the backbone's features ([`FeatureInput`]) and
    /// only its projection trains; the backbone itself is the experiment's
    /// [`FrozenBackbone`].
    pub fn new(cfg: &ModelConfig, image_size: usize, text_dim: usize) -> Result<TwoTower> {
        let mut encoder = image_encoder(&cfg.image, image_size)?;
        if cfg.backbone == Backbone::Frozen {
            encoder = Box::new(FeatureInput {
                dim: encoder.out_dim(),
                backbone: cfg.image.architecture(),
            });
        }
        let joint = cfg.image_proj.unwrap_or(encoder.out_dim());
        let image_checkpoint = match (&cfg.image, cfg.image.checkpoint()) {
            _ if cfg.backbone == Backbone::Frozen => None,
            (ImageEncoderConfig::VitLora { .. }, _) | (_, None) => None,
            (_, Some(path)) => {
                // the names and shapes to read; the values are replaced
                let mut rng = ChaCha8Rng::seed_from_u64(0);
                let template = encoder.init(&mut rng, &Device::Cpu, DType::F32)?;
                Some(checkpoint::load_like(
                    path,
                    &template,
                    &encoder.name(),
                    &Device::Cpu,
                    DType::F32,
                )?)
            }
        };
        Ok(TwoTower {
            encoder,
            image_proj: cfg.image_proj,
            text: TextTower::new(cfg.text_tower.clone(), text_dim, joint),
            temperature: cfg.temperature,
            learn_temperature: cfg.learn_temperature,
            image_checkpoint,
        })
    }

    /// Dimension of the joint embedding space.
    pub fn joint_dim(&self) -> usize {
        self.text.out_dim
    }

    /// A short description, e.g. `convnet-w64-d3 + linear text`.
    pub fn describe(&self) -> String {
        let t = match self.text.kind {
            crate::config::TextTowerConfig::Linear => "linear",
            crate::config::TextTowerConfig::ProjectionHead { .. } => "projection-head",
        };
        format!(
            "{} + {t} text → {}-d",
            self.encoder.name(),
            self.joint_dim()
        )
    }

    /// Fresh parameters of both towers from `seed`.
    pub fn init(&self, seed: u64, device: &Device, dtype: DType) -> Result<TowerParams> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut image = self.encoder.init(&mut rng, device, dtype)?;
        if let Some(weights) = &self.image_checkpoint {
            image = weights.to_device(device)?.to_dtype(dtype)?;
        }
        if let Some(d) = self.image_proj {
            let fan_in = self.encoder.out_dim();
            let bound = 1.0 / (fan_in as f64).sqrt();
            image.push(
                "proj.weight",
                ops::uniform(&mut rng, &[d, fan_in], bound, dtype, device)?,
            );
            image.push(
                "proj.bias",
                ops::uniform(&mut rng, &[d], bound, dtype, device)?,
            );
        }
        let mut text = self.text.init(&mut rng, device, dtype)?;
        if self.learn_temperature {
            let s = (1.0 / self.temperature).ln();
            text.push("logit_scale", Tensor::new(&[s], device)?.to_dtype(dtype)?);
        }
        Ok(TowerParams { image, text })
    }

    /// Joint-space image features `[B, d]` (not normalised).
    pub fn encode_images(&self, p: &ParamSet, x: &Tensor) -> Result<Tensor> {
        let h = self.encoder.forward(p, x)?;
        match self.image_proj {
            Some(_) => ops::linear(&h, p.get("proj.weight")?, Some(p.get("proj.bias")?)),
            None => Ok(h),
        }
    }

    /// Joint-space text features `[B, d]` of sentence embeddings `[B, D]` (not normalised).
    pub fn encode_texts(&self, p: &ParamSet, e: &Tensor, mode: Mode) -> Result<Tensor> {
        self.text.forward(p, e, mode)
    }

    /// The logit scale `1/τ` as a scalar tensor (a parameter when learned).
    pub fn logit_scale(&self, text: &ParamSet, like: &Tensor) -> Result<Tensor> {
        if self.learn_temperature {
            Ok(text.get("logit_scale")?.exp()?.reshape(())?)
        } else {
            Ok(Tensor::new(1.0 / self.temperature, like.device())?.to_dtype(like.dtype())?)
        }
    }

    /// The contrastive loss of matched pairs `x[i]`, `e[i]`.
    pub fn loss(&self, p: &TowerParams, x: &Tensor, e: &Tensor, mode: Mode) -> Result<Tensor> {
        Ok(self.loss_with_logits(p, x, e, mode)?.0)
    }

    /// [`TwoTower::loss`] and the batch's `[B, B]` logits (image rows ×
    /// caption columns).
    pub fn loss_with_logits(
        &self,
        p: &TowerParams,
        x: &Tensor,
        e: &Tensor,
        mode: Mode,
    ) -> Result<(Tensor, Tensor)> {
        self.loss_against(p, x, e, None, mode)
    }

    /// The student's loss of the batch `x`, `e` and its `[B, B]` logits:
    /// InfoNCE of matched pairs, or with `targets: [B, B]` (a learned
    /// image–text similarity, image rows × caption columns) LoRS's
    /// soft-label loss ([`loss::contrastive_with_logits`]).
    pub fn loss_against(
        &self,
        p: &TowerParams,
        x: &Tensor,
        e: &Tensor,
        targets: Option<&Tensor>,
        mode: Mode,
    ) -> Result<(Tensor, Tensor)> {
        let fi = self.encode_images(&p.image, x)?;
        let ft = self.encode_texts(&p.text, e, mode)?;
        let scale = self.logit_scale(&p.text, &fi)?;
        loss::contrastive_with_logits(&fi, &ft, &scale, targets)
    }
}
