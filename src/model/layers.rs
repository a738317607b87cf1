//! Building blocks of the timm-compatible towers (NF nets, ViT), written as
//! compositions of candle ops that candle can differentiate twice.
//!
//! Each function mirrors one PyTorch / timm module and takes its weights as
//! arguments. Where PyTorch has a fused kernel without a second derivative in
//! candle (softmax, max pooling with overlapping windows, average pooling in
//! ceil mode), the function composes it from differentiable pieces; the
//! values are the same.

use super::ops;
use crate::error::{Error, Result};
use candle_core::{DType, Device, Tensor, D};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// A 2-D convolution with stride, zero padding and groups; `w` is
/// `[Cout, Cin / groups, k, k]`, `b` `[Cout]`.
///
/// Stride 1 without groups on the CPU uses the crate's own convolution
/// (`model::conv`, fast twice-differentiable kernels); anything else is
/// candle's `conv2d`, whose backward is made of convolutions and so can be
/// differentiated again (grouped convolutions are per-group convolutions
/// joined by `cat`).
pub fn conv2d(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    stride: usize,
    padding: usize,
    groups: usize,
) -> Result<Tensor> {
    let (_, c, _, _) = x.dims4()?;
    let (_, cin_g, _, _) = w.dims4()?;
    if cin_g * groups != c {
        return Err(Error::Shape(format!(
            "conv2d: input has {c} channels, kernel {:?} with {groups} groups expects {}",
            w.dims(),
            cin_g * groups
        )));
    }
    if stride == 1 && groups == 1 {
        return ops::conv2d(x, w, b, padding);
    }
    let y = x.conv2d(w, padding, stride, 1, groups)?;
    Ok(match b {
        Some(b) => y.broadcast_add(&b.reshape((1, b.elem_count(), 1, 1))?)?,
        None => y,
    })
}

/// The weight of timm's `ScaledStdConv2d`: each output filter standardised
/// over its fan-in (biased variance, `eps` inside the square root), times
/// `gain · γ / √fan_in`. `gain` is `[Cout, 1, 1, 1]` as in timm.
pub fn scaled_std_weight(w: &Tensor, gain: &Tensor, gamma: f64, eps: f64) -> Result<Tensor> {
    let dims = w.dims().to_vec();
    let out = dims[0];
    let fan_in = w.elem_count() / out;
    let flat = w.reshape((out, fan_in))?;
    let mean = flat.mean_keepdim(1)?;
    let centred = flat.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(1)?;
    let scale = (gain.reshape((out, 1))? * (gamma / (fan_in as f64).sqrt()))?;
    let factor = (var + eps)?.sqrt()?.recip()?.mul(&scale)?;
    Ok(centred.broadcast_mul(&factor)?.reshape(dims)?)
}

/// The activations of the towers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `max(x, 0)`.
    Relu,
    /// `x · σ(x)` (PyTorch's `SiLU`).
    Silu,
    /// The exact (erf) GELU, PyTorch's `nn.GELU()`.
    Gelu,
}

impl Activation {
    /// Applies the activation.
    pub fn apply(self, x: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Activation::Relu => x.relu()?,
            Activation::Silu => x.mul(&sigmoid(x)?)?,
            Activation::Gelu => ops::gelu(x)?,
        })
    }

    /// The NF nets' variance-preserving gain of this activation (the
    /// constants of DeepMind's NFNet code, as timm lists them).
    pub fn nf_gamma(self) -> f64 {
        match self {
            Activation::Relu => 1.713_958_859_443_664_6,
            Activation::Silu => 1.788_129_329_681_396_5,
            Activation::Gelu => 1.701_504_349_708_557_1,
        }
    }
}

/// The logistic sigmoid: candle-nn's numerically stable op, whose backward
/// is written with its (tracked) output and so differentiates again.
pub fn sigmoid(x: &Tensor) -> Result<Tensor> {
    Ok(candle_nn::ops::sigmoid(x)?)
}

/// Softmax along the last dimension as `exp(log_softmax)`, differentiable
/// twice (candle-nn's fused `softmax_last_dim` has no backward).
pub fn softmax_last(x: &Tensor) -> Result<Tensor> {
    Ok(ops::log_softmax(x)?.exp()?)
}

/// A constant tensor of `shape` filled with `v` (not tracked).
fn full(v: f64, shape: &[usize], dtype: DType, device: &Device) -> Result<Tensor> {
    Ok(Tensor::full(v, shape, device)?.to_dtype(dtype)?)
}

/// Every `stride`-th slice along `dim`, starting at `start`, `count` of them.
fn strided(x: &Tensor, dim: usize, start: usize, count: usize, stride: usize) -> Result<Tensor> {
    let mut dims = x.dims().to_vec();
    let part = x.narrow(dim, start, count * stride)?;
    dims[dim] = count;
    let mut split = x.dims().to_vec();
    split[dim] = count;
    split.insert(dim + 1, stride);
    Ok(part.reshape(split)?.narrow(dim + 1, 0, 1)?.reshape(dims)?)
}

/// PyTorch's `MaxPool2d(3, stride=2, padding=1)` (the stem pool of
/// ResNets): nine strided views of the input padded with −∞, reduced with
/// `maximum`, whose backward routes the gradient to the maximum.
pub fn max_pool3x3_s2(x: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let (oh, ow) = ((h - 1) / 2 + 1, (w - 1) / 2 + 1);
    // one row/column of −∞ before, enough after for 2·o + 2 positions
    let neg = f64::from(f32::MIN);
    let (dt, dev) = (x.dtype(), x.device());
    let ph = 2 * oh + 2 - h - 1;
    let pw = 2 * ow + 2 - w - 1;
    let rows = Tensor::cat(
        &[
            full(neg, &[b, c, 1, w], dt, dev)?,
            x.clone(),
            full(neg, &[b, c, ph, w], dt, dev)?,
        ],
        2,
    )?;
    let hp = h + 1 + ph;
    let padded = Tensor::cat(
        &[
            full(neg, &[b, c, hp, 1], dt, dev)?,
            rows,
            full(neg, &[b, c, hp, pw], dt, dev)?,
        ],
        3,
    )?;
    let mut out: Option<Tensor> = None;
    for dy in 0..3 {
        let r = strided(&padded, 2, dy, oh, 2)?;
        for dx in 0..3 {
            let v = strided(&r, 3, dx, ow, 2)?;
            out = Some(match out {
                None => v,
                Some(m) => m.maximum(&v)?,
            });
        }
    }
    Ok(out.expect("nine windows"))
}

/// PyTorch's `AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False)`
/// (timm's `DownsampleAvg`): 2×2 means, and on an odd side a last window
/// that averages only the pixels inside the image.
pub fn avg_pool2x2_ceil(x: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    if h % 2 == 0 && w % 2 == 0 {
        return ops::avg_pool2x2(x);
    }
    let (oh, ow) = (h.div_ceil(2), w.div_ceil(2));
    let x = x.pad_with_zeros(2, 0, 2 * oh - h)?;
    let x = x.pad_with_zeros(3, 0, 2 * ow - w)?;
    let sums = x.reshape((b, c, oh, 2, ow, 2))?.sum(5)?.sum(3)?;
    let counts: Vec<f64> = (0..oh)
        .flat_map(|i| {
            let rows = (h - 2 * i).min(2);
            (0..ow).map(move |j| (rows * (w - 2 * j).min(2)) as f64)
        })
        .collect();
    let inv = Tensor::from_vec(counts, (1, 1, oh, ow), x.device())?
        .recip()?
        .to_dtype(x.dtype())?;
    Ok(sums.broadcast_mul(&inv)?)
}

/// Mean over the spatial dimensions: `[B, C, H, W]` → `[B, C]`.
pub fn global_avg_pool(x: &Tensor) -> Result<Tensor> {
    Ok(x.flatten_from(2)?.mean(D::Minus1)?)
}

/// timm's `make_divisible`: rounds `v` to the nearest multiple of `divisor`
/// (at least `divisor`), going one step up when rounding would lose more
/// than `1 − round_limit` of `v`.
pub fn make_divisible(v: f64, divisor: usize, round_limit: f64) -> usize {
    let d = divisor as f64;
    let mut new_v = ((v + d / 2.0) as usize / divisor * divisor).max(divisor);
    if (new_v as f64) < round_limit * v {
        new_v += divisor;
    }
    new_v
}

/// Normal values `N(0, std²)` of the given shape from `rng` (Box–Muller).
pub fn normal(
    rng: &mut ChaCha8Rng,
    shape: &[usize],
    std: f64,
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let mut v = Vec::with_capacity(n + 1);
    while v.len() < n {
        let u1: f64 = rng.random_range(f64::EPSILON..1.0);
        let u2: f64 = rng.random::<f64>();
        let r = (-2.0 * u1.ln()).sqrt() * std;
        let t = std::f64::consts::TAU * u2;
        v.push(r * t.cos());
        v.push(r * t.sin());
    }
    v.truncate(n);
    Ok(Tensor::from_vec(v, shape, device)?.to_dtype(dtype)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: Vec<f64>, shape: &[usize]) -> Tensor {
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    fn vals(x: &Tensor) -> Vec<f64> {
        x.flatten_all().unwrap().to_vec1().unwrap()
    }

    #[test]
    fn max_pool_matches_pytorch_definition() {
        // 5×5 input 0..25: windows centred on even pixels, clipped at the border
        let x = t((0..25).map(f64::from).collect(), &[1, 1, 5, 5]);
        let y = max_pool3x3_s2(&x).unwrap();
        assert_eq!(y.dims(), [1, 1, 3, 3]);
        assert_eq!(
            vals(&y),
            vec![6.0, 8.0, 9.0, 16.0, 18.0, 19.0, 21.0, 23.0, 24.0]
        );
        // negative inputs: the padding must not win
        let y = max_pool3x3_s2(&x.affine(-1.0, 0.0).unwrap()).unwrap();
        assert_eq!(vals(&y)[0], 0.0);
        let x4 = t((0..16).map(f64::from).collect(), &[1, 1, 4, 4]);
        assert_eq!(
            vals(&max_pool3x3_s2(&x4).unwrap()),
            vec![5.0, 7.0, 13.0, 15.0]
        );
    }

    #[test]
    fn ceil_avg_pool_averages_only_inside_pixels() {
        let x = t((0..9).map(f64::from).collect(), &[1, 1, 3, 3]);
        let y = avg_pool2x2_ceil(&x).unwrap();
        // windows {0,1,3,4}, {2,5}, {6,7}, {8}
        assert_eq!(vals(&y), vec![2.0, 3.5, 6.5, 8.0]);
    }

    #[test]
    fn make_divisible_follows_timm() {
        assert_eq!(make_divisible(12.0, 8, 0.9), 16);
        assert_eq!(make_divisible(36.0, 8, 0.9), 40);
        assert_eq!(make_divisible(4.0, 8, 0.0), 8);
        assert_eq!(make_divisible(2304.0, 8, 0.9), 2304);
        // rounding 11 down to 8 would lose more than 10%
        assert_eq!(make_divisible(11.0, 8, 0.9), 16);
    }

    #[test]
    fn scaled_std_weight_is_standardised() {
        let mut rng = rand::SeedableRng::seed_from_u64(3);
        let w = normal(&mut rng, &[4, 3, 3, 3], 2.0, DType::F64, &Device::Cpu).unwrap();
        let gain = Tensor::ones((4, 1, 1, 1), DType::F64, &Device::Cpu).unwrap();
        let s = scaled_std_weight(&w, &gain, 1.0, 0.0).unwrap();
        let flat = s.reshape((4, 27)).unwrap();
        for m in vals(&flat.mean(1).unwrap()) {
            assert!(m.abs() < 1e-12);
        }
        // variance 1/fan_in per filter
        let var = vals(&flat.sqr().unwrap().mean(1).unwrap());
        for v in var {
            assert!((v - 1.0 / 27.0).abs() < 1e-12, "{v}");
        }
    }

    #[test]
    fn strided_conv_and_groups_shapes() {
        let mut rng = rand::SeedableRng::seed_from_u64(4);
        let x = normal(&mut rng, &[2, 4, 7, 7], 1.0, DType::F64, &Device::Cpu).unwrap();
        let w = normal(&mut rng, &[6, 2, 3, 3], 1.0, DType::F64, &Device::Cpu).unwrap();
        let y = conv2d(&x, &w, None, 2, 1, 2).unwrap();
        assert_eq!(y.dims(), [2, 6, 4, 4]);
        let bad = normal(&mut rng, &[6, 3, 3, 3], 1.0, DType::F64, &Device::Cpu).unwrap();
        assert!(conv2d(&x, &bad, None, 2, 1, 2).is_err());
    }
}
