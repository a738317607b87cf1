//! Normalizer-free networks: NF-ResNet, NF-RegNet and NFNet (Brock et al.,
//! "Characterizing signal propagation to close the performance gap in
//! unnormalized ResNets", ICLR 2021, and "High-Performance Large-Scale Image
//! Recognition Without Normalization", ICML 2021), laid out as the PyTorch
//! Image Models (timm) `NormFreeNet`, so a timm state dict saved as
//! safetensors loads without renaming.
//!
//! [`NfCfg`] mirrors timm's `NfCfg` field for field; [`NfCfg::nf_resnet50`],
//! [`NfCfg::nf_regnet_b1`] and [`NfCfg::nfnet_l0`] are timm's registered
//! configurations and the `*_scaled` ones their CPU-sized versions (fewer
//! blocks and channels, the same code). Every convolution is a
//! `ScaledStdConv2d` (weight standardisation with a learned gain and the
//! activation's variance gain γ folded in, timm's default `gamma_in_act =
//! false`); blocks are pre-activation bottlenecks with skip gains α and
//! β = 1/√(expected variance); squeeze-excitation where the architecture has
//! it. The tower returns the globally average-pooled features (timm's
//! `forward_head(pre_logits=True)`); a checkpoint's classifier `head.fc.*`
//! is not part of the tower.
//!
//! Which NFNet: `nfnet_l0`, the model the paper's reference code creates
//! (`timm.create_model('nfnet_l0')`), with squeeze-excitation; timm's
//! `eca_nfnet_l0` differs only in its attention module.

use super::layers::{self, Activation};
use super::{ImageEncoder, ParamSet};
use crate::error::{Error, Result};
use candle_core::{DType, Device, Tensor};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Squeeze-excitation settings (timm's `attn_kwargs` for `attn_layer = "se"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SeKwargs {
    /// Reduction ratio of the bottleneck.
    pub rd_ratio: f64,
    /// Reduced channels are rounded to a multiple of this.
    pub rd_divisor: usize,
}

impl Default for SeKwargs {
    fn default() -> Self {
        SeKwargs {
            rd_ratio: 1.0 / 16.0,
            rd_divisor: 8,
        }
    }
}

/// The architecture of a normalizer-free network, field for field timm's
/// `NfCfg` (so a configuration recorded from timm deserialises as is).
/// Dilation (`output_stride` < 32) and "same" padding are not supported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NfCfg {
    /// Blocks per stage.
    pub depths: Vec<usize>,
    /// Output channels per stage (before `width_factor`).
    pub channels: Vec<usize>,
    /// Residual branch scale α.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// `7x7_pool` (ResNet), `3x3` (RegNet), `deep_quad` (NFNet), `7x7`, `3x3_pool`.
    #[serde(default = "default_stem")]
    pub stem_type: String,
    /// Stem output channels (default: `channels[0]`).
    #[serde(default)]
    pub stem_chs: Option<usize>,
    /// Channels per group of the 3×3 convolutions (`None`: no groups).
    #[serde(default)]
    pub group_size: Option<usize>,
    /// `"se"` or none.
    #[serde(default)]
    pub attn_layer: Option<String>,
    /// Squeeze-excitation settings.
    #[serde(default)]
    pub attn_kwargs: Option<SeKwargs>,
    /// Gain applied to the attention output.
    #[serde(default = "default_attn_gain")]
    pub attn_gain: f64,
    /// Channel multiplier.
    #[serde(default = "one")]
    pub width_factor: f64,
    /// Bottleneck ratio.
    #[serde(default = "half")]
    pub bottle_ratio: f64,
    /// Channels of the final 1×1 convolution (0: none).
    #[serde(default)]
    pub num_features: usize,
    /// Channel counts are rounded to multiples of this.
    #[serde(default = "eight")]
    pub ch_div: usize,
    /// RegNet-style blocks (bottleneck from the input width, attention in the middle).
    #[serde(default)]
    pub reg: bool,
    /// A second 3×3 convolution in each block (NFNet).
    #[serde(default)]
    pub extra_conv: bool,
    /// Apply γ in the activations instead of the convolutions.
    #[serde(default)]
    pub gamma_in_act: bool,
    /// TensorFlow "same" padding (not supported).
    #[serde(default)]
    pub same_padding: bool,
    /// ε of the weight standardisation.
    #[serde(default = "default_eps")]
    pub std_conv_eps: f64,
    /// A learned zero-initialised scalar gain on each residual branch.
    #[serde(default)]
    pub skipinit: bool,
    /// Zero-initialise the classifier (unused by the tower).
    #[serde(default)]
    pub zero_init_fc: bool,
    /// `relu`, `silu` or `gelu`.
    #[serde(default = "default_act")]
    pub act_layer: String,
}

fn default_alpha() -> f64 {
    0.2
}
fn default_stem() -> String {
    "3x3".into()
}
fn default_attn_gain() -> f64 {
    2.0
}
fn one() -> f64 {
    1.0
}
fn half() -> f64 {
    0.5
}
fn eight() -> usize {
    8
}
fn default_eps() -> f64 {
    1e-5
}
fn default_act() -> String {
    "silu".into()
}

impl NfCfg {
    fn base(depths: &[usize], channels: &[usize]) -> NfCfg {
        NfCfg {
            depths: depths.to_vec(),
            channels: channels.to_vec(),
            alpha: default_alpha(),
            stem_type: default_stem(),
            stem_chs: None,
            group_size: None,
            attn_layer: None,
            attn_kwargs: None,
            attn_gain: default_attn_gain(),
            width_factor: 1.0,
            bottle_ratio: 0.5,
            num_features: 0,
            ch_div: 8,
            reg: false,
            extra_conv: false,
            gamma_in_act: false,
            same_padding: false,
            std_conv_eps: default_eps(),
            skipinit: false,
            zero_init_fc: false,
            act_layer: default_act(),
        }
    }

    fn resnet(depths: &[usize], channels: &[usize], stem_chs: usize) -> NfCfg {
        NfCfg {
            stem_type: "7x7_pool".into(),
            stem_chs: Some(stem_chs),
            bottle_ratio: 0.25,
            act_layer: "relu".into(),
            ..NfCfg::base(depths, channels)
        }
    }

    fn regnet(depths: &[usize], channels: &[usize], num_features: usize) -> NfCfg {
        NfCfg {
            stem_type: "3x3".into(),
            group_size: Some(8),
            width_factor: 0.75,
            bottle_ratio: 2.25,
            num_features,
            reg: true,
            attn_layer: Some("se".into()),
            attn_kwargs: Some(SeKwargs {
                rd_ratio: 0.5,
                rd_divisor: 8,
            }),
            ..NfCfg::base(depths, channels)
        }
    }

    fn nfnet_light(
        depths: &[usize],
        channels: &[usize],
        stem_chs: usize,
        group_size: usize,
        num_features: usize,
    ) -> NfCfg {
        NfCfg {
            stem_type: "deep_quad".into(),
            stem_chs: Some(stem_chs),
            group_size: Some(group_size),
            bottle_ratio: 0.25,
            extra_conv: true,
            num_features,
            act_layer: "silu".into(),
            attn_layer: Some("se".into()),
            attn_kwargs: Some(SeKwargs {
                rd_ratio: 0.25,
                rd_divisor: 8,
            }),
            ..NfCfg::base(depths, channels)
        }
    }

    /// timm's `nf_resnet50` (pre-activation NF-ResNet-50, ReLU, 2048 features).
    pub fn nf_resnet50() -> NfCfg {
        NfCfg::resnet(&[3, 4, 6, 3], &[256, 512, 1024, 2048], 64)
    }

    /// timm's `nf_regnet_b1` (grouped 3×3, squeeze-excitation, SiLU, 960 features).
    pub fn nf_regnet_b1() -> NfCfg {
        NfCfg::regnet(&[2, 4, 7, 7], &[48, 104, 208, 440], 1280)
    }

    /// timm's `nfnet_l0` (the paper's encoder: deep stem, two grouped 3×3 per
    /// block, squeeze-excitation, SiLU, 2304 features).
    pub fn nfnet_l0() -> NfCfg {
        NfCfg::nfnet_light(&[1, 2, 6, 3], &[256, 512, 1536, 1536], 128, 64, 2304)
    }

    /// `nf_resnet50` at CPU size: one block per stage, channels 32–256.
    pub fn nf_resnet50_scaled() -> NfCfg {
        NfCfg::resnet(&[1, 1, 1, 1], &[32, 64, 128, 256], 16)
    }

    /// `nf_regnet_b1` at CPU size: one block per stage, 128 features.
    pub fn nf_regnet_b1_scaled() -> NfCfg {
        NfCfg::regnet(&[1, 1, 1, 1], &[16, 32, 48, 64], 128)
    }

    /// `nfnet_l0` at CPU size: one block per stage, groups of 16, 288 features.
    pub fn nfnet_l0_scaled() -> NfCfg {
        NfCfg::nfnet_light(&[1, 1, 1, 1], &[64, 128, 192, 192], 16, 16, 288)
    }

    fn activation(&self) -> Result<Activation> {
        match self.act_layer.as_str() {
            "relu" => Ok(Activation::Relu),
            "silu" | "swish" => Ok(Activation::Silu),
            "gelu" => Ok(Activation::Gelu),
            other => Err(Error::Config(format!(
                "NF net: activation {other:?} is not supported (relu, silu, gelu)"
            ))),
        }
    }

    fn check(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(format!("NF net: {m}")));
        if self.depths.is_empty() || self.depths.len() != self.channels.len() {
            return bad(format!(
                "depths {:?} and channels {:?} must be non-empty and of equal length",
                self.depths, self.channels
            ));
        }
        if self.same_padding {
            return bad("same_padding is not supported".into());
        }
        if self.gamma_in_act {
            return bad("gamma_in_act is not supported".into());
        }
        match self.attn_layer.as_deref() {
            None | Some("se") => {}
            Some(other) => return bad(format!("attention {other:?} is not supported (se)")),
        }
        if !matches!(
            self.stem_type.as_str(),
            "7x7_pool" | "7x7" | "3x3" | "3x3_pool" | "deep_quad"
        ) {
            return bad(format!("stem {:?} is not supported", self.stem_type));
        }
        self.activation().map(|_| ())
    }
}

/// One convolution of the plan: input/output channels, kernel, stride, groups.
#[derive(Debug, Clone, PartialEq)]
struct ConvSpec {
    name: String,
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    groups: usize,
    gain_init: f64,
}

impl ConvSpec {
    fn new(name: String, cin: usize, cout: usize, k: usize, stride: usize, groups: usize) -> Self {
        ConvSpec {
            name,
            cin,
            cout,
            k,
            stride,
            groups,
            gain_init: 1.0,
        }
    }
}

/// One pre-activation bottleneck block.
#[derive(Debug, Clone, PartialEq)]
struct Block {
    prefix: String,
    beta: f64,
    downsample: Option<(bool, ConvSpec)>,
    conv1: ConvSpec,
    conv2: ConvSpec,
    conv2b: Option<ConvSpec>,
    /// Squeeze-excitation: (name, channels, reduced channels).
    attn: Option<(String, usize, usize)>,
    attn_last: Option<(String, usize, usize)>,
    conv3: ConvSpec,
}

/// A normalizer-free network (timm's `NormFreeNet` without its classifier).
#[derive(Debug, Clone, PartialEq)]
pub struct NfNet {
    /// The registered name (`nf_resnet50`, …) and size, for results and metadata.
    pub label: String,
    /// The architecture.
    pub cfg: NfCfg,
    act: Activation,
    stem: Vec<ConvSpec>,
    stem_pool: bool,
    blocks: Vec<Block>,
    final_conv: Option<ConvSpec>,
    num_features: usize,
}

impl NfNet {
    /// Builds the network of `cfg`; `label` names it in results.
    pub fn new(label: impl Into<String>, cfg: NfCfg) -> Result<NfNet> {
        cfg.check()?;
        let act = cfg.activation()?;
        let div = |v: f64| layers::make_divisible(v, cfg.ch_div, 0.9);
        let stem_chs = div(cfg.stem_chs.unwrap_or(cfg.channels[0]) as f64 * cfg.width_factor);
        let (stem, stem_stride) = match cfg.stem_type.as_str() {
            "deep_quad" => {
                let chs = [stem_chs / 8, stem_chs / 4, stem_chs / 2, stem_chs];
                let strides = [2, 1, 1, 2];
                let mut cin = 3;
                let mut v = Vec::new();
                for (i, (&c, &s)) in chs.iter().zip(&strides).enumerate() {
                    v.push(ConvSpec::new(
                        format!("stem.conv{}", i + 1),
                        cin,
                        c,
                        3,
                        s,
                        1,
                    ));
                    cin = c;
                }
                (v, 4)
            }
            t => {
                let k = if t.starts_with("7x7") { 7 } else { 3 };
                let pool = t.ends_with("_pool");
                (
                    vec![ConvSpec::new("stem.conv".into(), 3, stem_chs, k, 2, 1)],
                    if pool { 4 } else { 2 },
                )
            }
        };
        let stem_pool = cfg.stem_type.ends_with("_pool");
        let mut blocks = Vec::new();
        let mut prev = stem_chs;
        let mut expected_var = 1.0f64;
        for (si, &depth) in cfg.depths.iter().enumerate() {
            let stride = if si == 0 && stem_stride > 2 { 1 } else { 2 };
            let out = div(cfg.channels[si] as f64 * cfg.width_factor);
            for bi in 0..depth {
                let first_block = bi == 0 && si == 0;
                let s = if bi == 0 { stride } else { 1 };
                let br = if cfg.reg && first_block {
                    1.0
                } else {
                    cfg.bottle_ratio
                };
                let mut mid = div(if cfg.reg { prev as f64 } else { out as f64 } * br);
                let groups = match cfg.group_size {
                    Some(g) if g > 0 => {
                        let groups = mid / g;
                        if groups == 0 {
                            return Err(Error::Config(format!(
                                "NF net {}: stage {si} has {mid} bottleneck channels, fewer than group_size {g}",
                                label_of(&cfg)
                            )));
                        }
                        if g % cfg.ch_div == 0 {
                            mid = g * groups;
                        }
                        groups
                    }
                    _ => 1,
                };
                let p = format!("stages.{si}.{bi}");
                let downsample = (prev != out || s != 1).then(|| {
                    (
                        s > 1,
                        ConvSpec::new(format!("{p}.downsample.conv"), prev, out, 1, 1, 1),
                    )
                });
                let se = |name: &str, ch: usize| {
                    cfg.attn_layer.as_ref().map(|_| {
                        let kw = cfg.attn_kwargs.clone().unwrap_or_default();
                        let rd =
                            layers::make_divisible(ch as f64 * kw.rd_ratio, kw.rd_divisor, 0.0);
                        (format!("{p}.{name}"), ch, rd)
                    })
                };
                let mut conv3 = ConvSpec::new(format!("{p}.conv3"), mid, out, 1, 1, 1);
                conv3.gain_init = if cfg.skipinit { 1.0 } else { 0.0 };
                blocks.push(Block {
                    beta: 1.0 / expected_var.sqrt(),
                    downsample,
                    conv1: ConvSpec::new(format!("{p}.conv1"), prev, mid, 1, 1, 1),
                    conv2: ConvSpec::new(format!("{p}.conv2"), mid, mid, 3, s, groups),
                    conv2b: cfg
                        .extra_conv
                        .then(|| ConvSpec::new(format!("{p}.conv2b"), mid, mid, 3, 1, groups)),
                    attn: if cfg.reg { se("attn", mid) } else { None },
                    attn_last: if cfg.reg { None } else { se("attn_last", out) },
                    conv3,
                    prefix: p,
                });
                if bi == 0 {
                    expected_var = 1.0;
                }
                expected_var += cfg.alpha * cfg.alpha;
                prev = out;
            }
        }
        let (final_conv, num_features) = if cfg.num_features > 0 {
            let nf = div(cfg.width_factor * cfg.num_features as f64);
            (
                Some(ConvSpec::new("final_conv".into(), prev, nf, 1, 1, 1)),
                nf,
            )
        } else {
            (None, prev)
        };
        Ok(NfNet {
            label: label.into(),
            cfg,
            act,
            stem,
            stem_pool,
            blocks,
            final_conv,
            num_features,
        })
    }

    fn convs(&self) -> impl Iterator<Item = &ConvSpec> {
        self.stem
            .iter()
            .chain(self.blocks.iter().flat_map(|b| {
                b.downsample
                    .iter()
                    .map(|(_, c)| c)
                    .chain([&b.conv1, &b.conv2])
                    .chain(b.conv2b.iter())
                    .chain([&b.conv3])
            }))
            .chain(self.final_conv.iter())
    }

    fn conv(&self, p: &ParamSet, c: &ConvSpec, x: &Tensor) -> Result<Tensor> {
        let w = layers::scaled_std_weight(
            p.get(&format!("{}.weight", c.name))?,
            p.get(&format!("{}.gain", c.name))?,
            self.act.nf_gamma(),
            self.cfg.std_conv_eps,
        )?;
        let b = p.get(&format!("{}.bias", c.name))?;
        layers::conv2d(
            x,
            &w,
            Some(b),
            c.stride,
            (c.stride - 1 + c.k - 1) / 2,
            c.groups,
        )
    }

    fn se(&self, p: &ParamSet, name: &str, x: &Tensor) -> Result<Tensor> {
        let (b, c, _, _) = x.dims4()?;
        let s = layers::global_avg_pool(x)?;
        let w1 = p.get(&format!("{name}.fc1.weight"))?;
        let w1 = w1.reshape((w1.dim(0)?, c))?;
        let s = super::ops::linear(&s, &w1, Some(p.get(&format!("{name}.fc1.bias"))?))?.relu()?;
        let w2 = p.get(&format!("{name}.fc2.weight"))?;
        let w2 = w2.reshape((c, w2.elem_count() / c))?;
        let s = super::ops::linear(&s, &w2, Some(p.get(&format!("{name}.fc2.bias"))?))?;
        let gate = layers::sigmoid(&s)?.reshape((b, c, 1, 1))?;
        Ok(x.broadcast_mul(&gate)?)
    }

    fn block(&self, p: &ParamSet, b: &Block, x: &Tensor) -> Result<Tensor> {
        let act = |t: &Tensor| self.act.apply(t);
        let out = (act(x)? * b.beta)?;
        let shortcut = match &b.downsample {
            Some((pool, conv)) => {
                let pooled = if *pool {
                    layers::avg_pool2x2_ceil(&out)?
                } else {
                    out.clone()
                };
                self.conv(p, conv, &pooled)?
            }
            None => x.clone(),
        };
        let mut h = self.conv(p, &b.conv1, &out)?;
        h = self.conv(p, &b.conv2, &act(&h)?)?;
        if let Some(c) = &b.conv2b {
            h = self.conv(p, c, &act(&h)?)?;
        }
        if let Some((name, _, _)) = &b.attn {
            h = (self.se(p, name, &h)? * self.cfg.attn_gain)?;
        }
        h = self.conv(p, &b.conv3, &act(&h)?)?;
        if let Some((name, _, _)) = &b.attn_last {
            h = (self.se(p, name, &h)? * self.cfg.attn_gain)?;
        }
        if self.cfg.skipinit {
            h = h.broadcast_mul(p.get(&format!("{}.skipinit_gain", b.prefix))?)?;
        }
        Ok(((h * self.cfg.alpha)? + shortcut)?)
    }

    /// The spatial feature map before pooling (timm's `forward_features`).
    pub fn forward_features(&self, p: &ParamSet, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        for (i, c) in self.stem.iter().enumerate() {
            if i > 0 {
                h = self.act.apply(&h)?;
            }
            h = self.conv(p, c, &h)?;
        }
        if self.stem_pool {
            h = layers::max_pool3x3_s2(&h)?;
        }
        for b in &self.blocks {
            h = self.block(p, b, &h)?;
        }
        if let Some(c) = &self.final_conv {
            h = self.conv(p, c, &h)?;
        }
        self.act.apply(&h)
    }
}

fn label_of(cfg: &NfCfg) -> String {
    format!("{:?}/{:?}", cfg.depths, cfg.channels)
}

impl ImageEncoder for NfNet {
    fn name(&self) -> String {
        self.label.clone()
    }

    fn out_dim(&self) -> usize {
        self.num_features
    }

    /// timm's initialisation: convolutions `N(0, 1/fan_in)` (Kaiming, linear
    /// gain), biases 0, gains 1 except each block's last convolution (gain 0
    /// without skipinit, so every residual branch starts silent).
    fn init(&self, rng: &mut ChaCha8Rng, device: &Device, dtype: DType) -> Result<ParamSet> {
        let mut p = ParamSet::new();
        for c in self.convs() {
            let fan_in = c.cin / c.groups * c.k * c.k;
            p.push(
                format!("{}.weight", c.name),
                layers::normal(
                    rng,
                    &[c.cout, c.cin / c.groups, c.k, c.k],
                    1.0 / (fan_in as f64).sqrt(),
                    dtype,
                    device,
                )?,
            );
            p.push(
                format!("{}.bias", c.name),
                Tensor::zeros(c.cout, dtype, device)?,
            );
            p.push(
                format!("{}.gain", c.name),
                (Tensor::ones((c.cout, 1, 1, 1), dtype, device)? * c.gain_init)?,
            );
        }
        for b in &self.blocks {
            for (name, ch, rd) in b.attn.iter().chain(b.attn_last.iter()) {
                for (fc, cin, cout) in [("fc1", *ch, *rd), ("fc2", *rd, *ch)] {
                    p.push(
                        format!("{name}.{fc}.weight"),
                        layers::normal(
                            rng,
                            &[cout, cin, 1, 1],
                            1.0 / (cin as f64).sqrt(),
                            dtype,
                            device,
                        )?,
                    );
                    p.push(
                        format!("{name}.{fc}.bias"),
                        Tensor::zeros(cout, dtype, device)?,
                    );
                }
            }
            if self.cfg.skipinit {
                p.push(
                    format!("{}.skipinit_gain", b.prefix),
                    Tensor::zeros((), dtype, device)?,
                );
            }
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

    fn count(net: &NfNet) -> usize {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        net.init(&mut rng, &Device::Cpu, DType::F32)
            .unwrap()
            .num_elements()
    }

    #[test]
    fn feature_widths_match_timm() {
        let f = |cfg| NfNet::new("x", cfg).unwrap().out_dim();
        assert_eq!(f(NfCfg::nf_resnet50()), 2048);
        assert_eq!(f(NfCfg::nf_regnet_b1()), 960);
        assert_eq!(f(NfCfg::nfnet_l0()), 2304);
    }

    #[test]
    fn scaled_nets_run_on_small_images() {
        for cfg in [
            NfCfg::nf_resnet50_scaled(),
            NfCfg::nf_regnet_b1_scaled(),
            NfCfg::nfnet_l0_scaled(),
        ] {
            let net = NfNet::new("scaled", cfg).unwrap();
            let mut rng = ChaCha8Rng::seed_from_u64(1);
            let p = net.init(&mut rng, &Device::Cpu, DType::F32).unwrap();
            for side in [24, 32, 33] {
                let x =
                    layers::normal(&mut rng, &[2, 3, side, side], 1.0, DType::F32, &Device::Cpu)
                        .unwrap();
                let y = net.forward(&p, &x).unwrap();
                assert_eq!(y.dims(), [2, net.out_dim()]);
            }
            assert!(count(&net) < 2_000_000);
        }
    }

    #[test]
    fn groups_larger_than_bottleneck_are_refused() {
        let mut cfg = NfCfg::nfnet_l0_scaled();
        cfg.group_size = Some(1024);
        let e = NfNet::new("x", cfg).unwrap_err().to_string();
        assert!(e.contains("group_size 1024"), "{e}");
    }
}
