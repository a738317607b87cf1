//! The Vision Transformer (Dosovitskiy et al., "An Image is Worth 16x16
//! Words", ICLR 2021), laid out as timm's `VisionTransformer` (`cls_token`,
//! `pos_embed`, `patch_embed.proj`, `blocks.{i}.{norm1,attn.qkv,attn.proj,
//! norm2,mlp.fc1,mlp.fc2}`, `norm`), so a timm state dict saved as
//! safetensors loads without renaming, with optional LoRA adapters (Hu et
//! al., "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022).
//!
//! Pre-norm blocks, LayerNorm ε = 1e-6, exact GELU, class-token pooling
//! after the final norm (timm's `global_pool = "token"`); the classifier
//! `head.*` is not part of the tower. Softmax and LayerNorm are
//! compositions that candle differentiates twice.
//!
//! With LoRA ([`LoraConfig`]) the base weights are frozen tensors held by the
//! encoder, outside the [`ParamSet`]: the tower's parameters — what experts
//! train, trajectories record and stage 2 matches — are only the adapters
//! `…{qkv,proj,fc1,fc2}.lora_A.weight` `[r, in]` and `…lora_B.weight`
//! `[out, r]` (PEFT's names without its `base_model.model.` prefix), and
//! each adapted linear computes `W x + b + (α/r)·B A x`.

use super::layers::{self, Activation};
use super::ops;
use super::{ImageEncoder, ParamSet};
use crate::config::{LoraConfig, LoraTarget};
use crate::error::{Error, Result};
use candle_core::{DType, Device, DeviceLocation, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::sync::Mutex;

/// The architecture of a ViT (timm's `VisionTransformer` keyword arguments).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VitCfg {
    /// Input side in pixels.
    pub img_size: usize,
    /// Patch side in pixels.
    pub patch_size: usize,
    /// Token width.
    pub embed_dim: usize,
    /// Number of blocks.
    pub depth: usize,
    /// Attention heads.
    pub num_heads: usize,
    /// MLP hidden width as a multiple of `embed_dim`.
    pub mlp_ratio: f64,
}

impl VitCfg {
    /// timm's `vit_tiny_patch16_224` (192 wide, 12 blocks, 3 heads).
    pub fn tiny_patch16_224() -> VitCfg {
        VitCfg {
            img_size: 224,
            patch_size: 16,
            embed_dim: 192,
            depth: 12,
            num_heads: 3,
            mlp_ratio: 4.0,
        }
    }

    /// timm's `vit_base_patch16_224` (768 wide, 12 blocks, 12 heads).
    pub fn base_patch16_224() -> VitCfg {
        VitCfg {
            embed_dim: 768,
            num_heads: 12,
            ..VitCfg::tiny_patch16_224()
        }
    }

    /// A CPU-sized ViT for `img_size` px images: a 4×4 grid of patches,
    /// 64 wide, 2 blocks of 2 heads.
    pub fn scaled(img_size: usize) -> VitCfg {
        VitCfg {
            img_size,
            patch_size: (img_size / 4).max(1),
            embed_dim: 64,
            depth: 2,
            num_heads: 2,
            mlp_ratio: 4.0,
        }
    }

    fn grid(&self) -> usize {
        self.img_size / self.patch_size
    }

    fn mlp_dim(&self) -> usize {
        (self.embed_dim as f64 * self.mlp_ratio) as usize
    }

    fn check(&self) -> Result<()> {
        if self.patch_size == 0 || !self.img_size.is_multiple_of(self.patch_size) {
            return Err(Error::Config(format!(
                "ViT: image size {} is not a multiple of the patch size {}",
                self.img_size, self.patch_size
            )));
        }
        if self.num_heads == 0 || !self.embed_dim.is_multiple_of(self.num_heads) {
            return Err(Error::Config(format!(
                "ViT: width {} is not a multiple of the {} heads",
                self.embed_dim, self.num_heads
            )));
        }
        Ok(())
    }
}

impl LoraTarget {
    fn module(self) -> &'static str {
        match self {
            LoraTarget::Qkv => "attn.qkv",
            LoraTarget::Proj => "attn.proj",
            LoraTarget::Fc1 => "mlp.fc1",
            LoraTarget::Fc2 => "mlp.fc2",
        }
    }
}

/// Frozen base weights and their copy on the device/dtype last used.
#[derive(Debug)]
struct FrozenBase {
    weights: ParamSet,
    cache: Mutex<Option<(DeviceLocation, DType, ParamSet)>>,
}

impl FrozenBase {
    fn on(&self, device: &Device, dtype: DType) -> Result<ParamSet> {
        let mut c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((loc, dt, p)) = c.as_ref() {
            if *loc == device.location() && *dt == dtype {
                return Ok(p.clone());
            }
        }
        let p = self.weights.to_device(device)?.to_dtype(dtype)?;
        *c = Some((device.location(), dtype, p.clone()));
        Ok(p)
    }
}

/// A ViT image encoder, optionally with LoRA adapters over frozen weights.
#[derive(Debug)]
pub struct Vit {
    /// Name in results and metadata, e.g. `vit-scaled` or `vit_lora-tiny_patch16_224`.
    pub label: String,
    /// The architecture.
    pub cfg: VitCfg,
    lora: Option<(LoraConfig, FrozenBase)>,
}

/// Parameter names and shapes of a ViT's base weights, in timm's order.
fn base_shapes(c: &VitCfg) -> Vec<(String, Vec<usize>)> {
    let d = c.embed_dim;
    let tokens = c.grid() * c.grid() + 1;
    let mut v = vec![
        ("cls_token".to_string(), vec![1, 1, d]),
        ("pos_embed".into(), vec![1, tokens, d]),
        (
            "patch_embed.proj.weight".into(),
            vec![d, 3, c.patch_size, c.patch_size],
        ),
        ("patch_embed.proj.bias".into(), vec![d]),
    ];
    for i in 0..c.depth {
        let b = format!("blocks.{i}");
        for (n, s) in [
            ("norm1.weight", vec![d]),
            ("norm1.bias", vec![d]),
            ("attn.qkv.weight", vec![3 * d, d]),
            ("attn.qkv.bias", vec![3 * d]),
            ("attn.proj.weight", vec![d, d]),
            ("attn.proj.bias", vec![d]),
            ("norm2.weight", vec![d]),
            ("norm2.bias", vec![d]),
            ("mlp.fc1.weight", vec![c.mlp_dim(), d]),
            ("mlp.fc1.bias", vec![c.mlp_dim()]),
            ("mlp.fc2.weight", vec![d, c.mlp_dim()]),
            ("mlp.fc2.bias", vec![d]),
        ] {
            v.push((format!("{b}.{n}"), s));
        }
    }
    v.push(("norm.weight".into(), vec![d]));
    v.push(("norm.bias".into(), vec![d]));
    v
}

/// Random base weights: N(0, 0.02²) for the embeddings and linear weights
/// (timm draws them truncated at ±2σ), 0 for biases, LayerNorms 1 and 0.
fn init_base(c: &VitCfg, rng: &mut ChaCha8Rng, device: &Device, dtype: DType) -> Result<ParamSet> {
    let mut p = ParamSet::new();
    for (name, shape) in base_shapes(c) {
        let t = if name.ends_with("bias") {
            Tensor::zeros(shape, dtype, device)?
        } else if name.contains("norm") {
            Tensor::ones(shape, dtype, device)?
        } else {
            layers::normal(rng, &shape, 0.02, dtype, device)?
        };
        p.push(name, t);
    }
    Ok(p)
}

impl Vit {
    /// A ViT whose weights are all parameters.
    pub fn new(label: impl Into<String>, cfg: VitCfg) -> Result<Vit> {
        cfg.check()?;
        Ok(Vit {
            label: label.into(),
            cfg,
            lora: None,
        })
    }

    /// A ViT with LoRA adapters over frozen `base` weights (a checkpoint's,
    /// with the names and order of [`Vit::base_template`], or `None` for
    /// random ones drawn from `lora.base_seed`).
    pub fn with_lora(
        label: impl Into<String>,
        cfg: VitCfg,
        lora: LoraConfig,
        base: Option<ParamSet>,
    ) -> Result<Vit> {
        cfg.check()?;
        if lora.rank == 0 || lora.targets.is_empty() {
            return Err(Error::Config(
                "LoRA needs a rank > 0 and at least one target".into(),
            ));
        }
        let weights = match base {
            Some(b) => {
                Self::base_template(&cfg)?.check_compatible(&b)?;
                b.to_device(&Device::Cpu)?.to_dtype(DType::F32)?
            }
            None => {
                let mut rng = ChaCha8Rng::seed_from_u64(lora.base_seed);
                init_base(&cfg, &mut rng, &Device::Cpu, DType::F32)?
            }
        };
        Ok(Vit {
            label: label.into(),
            cfg,
            lora: Some((
                lora,
                FrozenBase {
                    weights,
                    cache: Mutex::new(None),
                },
            )),
        })
    }

    /// Zero tensors with the names and shapes of the full (non-LoRA) weights.
    pub fn base_template(cfg: &VitCfg) -> Result<ParamSet> {
        let mut p = ParamSet::new();
        for (name, shape) in base_shapes(cfg) {
            p.push(name, Tensor::zeros(shape, DType::F32, &Device::Cpu)?);
        }
        Ok(p)
    }

    /// The LoRA settings, when the encoder has adapters.
    pub fn lora(&self) -> Option<&LoraConfig> {
        self.lora.as_ref().map(|(l, _)| l)
    }

    fn linear(
        &self,
        p: &ParamSet,
        base: &ParamSet,
        name: &str,
        target: LoraTarget,
        x: &Tensor,
    ) -> Result<Tensor> {
        let w = base.get(&format!("{name}.weight"))?;
        let b = base.get(&format!("{name}.bias"))?;
        let y = ops::linear(x, w, Some(b))?;
        match &self.lora {
            Some((l, _)) if l.targets.contains(&target) => {
                let a = p.get(&format!("{name}.lora_A.weight"))?;
                let bb = p.get(&format!("{name}.lora_B.weight"))?;
                let delta = ops::linear(&ops::linear(x, a, None)?, bb, None)?;
                Ok((y + (delta * (l.alpha / l.rank as f64))?)?)
            }
            _ => Ok(y),
        }
    }

    /// The token sequence after the final norm, `[B, 1 + patches, D]`.
    pub fn forward_tokens(&self, p: &ParamSet, x: &Tensor) -> Result<Tensor> {
        let base = match &self.lora {
            Some((_, frozen)) => frozen.on(x.device(), x.dtype())?,
            None => p.clone(),
        };
        let c = &self.cfg;
        let (b, ch, h, w) = x.dims4()?;
        if ch != 3 || h != c.img_size || w != c.img_size {
            return Err(Error::Shape(format!(
                "ViT {} takes [B, 3, {s}, {s}] images, got {:?}",
                self.label,
                x.dims(),
                s = c.img_size
            )));
        }
        let (g, ps, d) = (c.grid(), c.patch_size, c.embed_dim);
        // the stride-p convolution of the patch embedding as one matmul
        let patches = x
            .reshape((b, 3, g, ps, g, ps))?
            .permute((0, 2, 4, 1, 3, 5))?
            .contiguous()?
            .reshape((b, g * g, 3 * ps * ps))?;
        let pw = base
            .get("patch_embed.proj.weight")?
            .reshape((d, 3 * ps * ps))?;
        let tokens = ops::linear(&patches, &pw, Some(base.get("patch_embed.proj.bias")?))?;
        let cls = base.get("cls_token")?.broadcast_as((b, 1, d))?;
        let mut t = Tensor::cat(&[&cls, &tokens], 1)?.broadcast_add(base.get("pos_embed")?)?;
        let eps = 1e-6;
        let heads = c.num_heads;
        let hd = d / heads;
        let n = g * g + 1;
        for i in 0..c.depth {
            let pre = format!("blocks.{i}");
            let ln = |t: &Tensor, which: &str| {
                ops::layer_norm(
                    t,
                    base.get(&format!("{pre}.{which}.weight"))?,
                    base.get(&format!("{pre}.{which}.bias"))?,
                    eps,
                )
            };
            let h = ln(&t, "norm1")?;
            let qkv = self
                .linear(p, &base, &format!("{pre}.attn.qkv"), LoraTarget::Qkv, &h)?
                .reshape((b, n, 3, heads, hd))?
                .permute((2, 0, 3, 1, 4))?;
            let q = (qkv.get(0)?.contiguous()? * (hd as f64).powf(-0.5))?;
            let k = qkv.get(1)?.contiguous()?;
            let v = qkv.get(2)?.contiguous()?;
            let att = layers::softmax_last(&q.matmul(&k.t()?.contiguous()?)?)?;
            let o = att
                .matmul(&v)?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((b, n, d))?;
            let o = self.linear(p, &base, &format!("{pre}.attn.proj"), LoraTarget::Proj, &o)?;
            t = (t + o)?;
            let h = ln(&t, "norm2")?;
            let h = self.linear(p, &base, &format!("{pre}.mlp.fc1"), LoraTarget::Fc1, &h)?;
            let h = Activation::Gelu.apply(&h)?;
            let h = self.linear(p, &base, &format!("{pre}.mlp.fc2"), LoraTarget::Fc2, &h)?;
            t = (t + h)?;
        }
        ops::layer_norm(&t, base.get("norm.weight")?, base.get("norm.bias")?, eps)
    }
}

impl ImageEncoder for Vit {
    fn name(&self) -> String {
        self.label.clone()
    }

    fn out_dim(&self) -> usize {
        self.cfg.embed_dim
    }

    /// Without LoRA: the base weights (see `init_base`). With LoRA: the
    /// adapters only, `A ~ U(±1/√in)` (PEFT's Kaiming-uniform) and `B = 0`,
    /// so an expert starts exactly at the base model.
    fn init(&self, rng: &mut ChaCha8Rng, device: &Device, dtype: DType) -> Result<ParamSet> {
        let Some((l, _)) = &self.lora else {
            return init_base(&self.cfg, rng, device, dtype);
        };
        let d = self.cfg.embed_dim;
        let mut p = ParamSet::new();
        for i in 0..self.cfg.depth {
            for &t in &l.targets {
                let (fin, fout) = match t {
                    LoraTarget::Qkv => (d, 3 * d),
                    LoraTarget::Proj => (d, d),
                    LoraTarget::Fc1 => (d, self.cfg.mlp_dim()),
                    LoraTarget::Fc2 => (self.cfg.mlp_dim(), d),
                };
                let name = format!("blocks.{i}.{}", t.module());
                p.push(
                    format!("{name}.lora_A.weight"),
                    ops::uniform(
                        rng,
                        &[l.rank, fin],
                        1.0 / (fin as f64).sqrt(),
                        dtype,
                        device,
                    )?,
                );
                p.push(
                    format!("{name}.lora_B.weight"),
                    Tensor::zeros((fout, l.rank), dtype, device)?,
                );
            }
        }
        Ok(p)
    }

    fn forward(&self, p: &ParamSet, x: &Tensor) -> Result<Tensor> {
        Ok(self.forward_tokens(p, x)?.narrow(1, 0, 1)?.squeeze(1)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap()
    }

    fn images(seed: u64, side: usize) -> Tensor {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        layers::normal(&mut rng, &[2, 3, side, side], 1.0, DType::F64, &Device::Cpu).unwrap()
    }

    #[test]
    fn lora_with_zero_b_leaves_the_base_output_unchanged() {
        let cfg = VitCfg::scaled(16);
        let lora = LoraConfig {
            targets: vec![
                LoraTarget::Qkv,
                LoraTarget::Proj,
                LoraTarget::Fc1,
                LoraTarget::Fc2,
            ],
            ..LoraConfig::default()
        };
        let with = Vit::with_lora("l", cfg.clone(), lora.clone(), None).unwrap();
        let plain = Vit::new("p", cfg.clone()).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(lora.base_seed);
        let base = init_base(&cfg, &mut rng, &Device::Cpu, DType::F64).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let adapters = with.init(&mut rng, &Device::Cpu, DType::F64).unwrap();
        assert_eq!(adapters.len(), 2 * 4 * cfg.depth);
        let x = images(1, 16);
        let a = with.forward(&adapters, &x).unwrap();
        let b = plain.forward(&base, &x).unwrap();
        let diff = max_abs_diff(&a, &b);
        assert!(diff < 1e-6, "max diff {diff}");
        // a non-zero B changes it
        let moved = adapters
            .map(|n, t| {
                if n.ends_with("lora_B.weight") {
                    Ok((t.ones_like()? * 0.1)?)
                } else {
                    Ok(t.clone())
                }
            })
            .unwrap();
        let c = with.forward(&moved, &x).unwrap();
        let diff = max_abs_diff(&c, &b);
        assert!(diff > 1e-3, "adapters have no effect ({diff})");
    }

    #[test]
    fn wrong_image_size_is_an_error() {
        let v = Vit::new("v", VitCfg::scaled(16)).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let p = v.init(&mut rng, &Device::Cpu, DType::F64).unwrap();
        let e = v.forward(&p, &images(0, 20)).unwrap_err().to_string();
        assert!(e.contains("[B, 3, 16, 16]"), "{e}");
        assert!(Vit::new("v", VitCfg::scaled(18)).is_err());
    }
}
