//! Layers written as compositions of candle ops that candle can differentiate
//! twice (the fused candle-nn kernels such as `ops::layer_norm` and
//! `ops::softmax_last_dim` have no backward, see DESIGN.md).
//!
//! Every function takes its weights as arguments: nothing here owns state.

use crate::error::Result;
use candle_core::{DType, Tensor, D};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// `x · wᵀ + b` for `x: [B, in]` (or `[…, in]`), `w: [out, in]`, `b: [out]`
/// (PyTorch's layout).
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    let y = if x.rank() > 2 {
        let mut dims = x.dims().to_vec();
        let rows = x.elem_count() / dims[dims.len() - 1];
        let y = x.reshape((rows, dims[dims.len() - 1]))?.matmul(&w.t()?)?;
        *dims.last_mut().expect("rank > 2") = w.dim(0)?;
        y.reshape(dims)?
    } else {
        x.matmul(&w.t()?)?
    };
    Ok(match b {
        Some(b) => y.broadcast_add(b)?,
        None => y,
    })
}

/// 2-D convolution (stride 1, `padding` zeros on each side) with an optional
/// per-channel bias, differentiable to any order. On the CPU it is three
/// bilinear ops (convolution, its input gradient, its weight gradient: see
/// `model::conv`) that differentiate into each other, each an unfold + gemm
/// per sample; elsewhere candle's `conv2d`, whose backward is made of
/// convolutions.
pub fn conv2d(x: &Tensor, w: &Tensor, b: Option<&Tensor>, padding: usize) -> Result<Tensor> {
    let y = if x.device().is_cpu() {
        super::conv::conv2d_cpu(x, w, padding)?
    } else {
        x.conv2d(w, padding, 1, 1, 1)?
    };
    Ok(match b {
        Some(b) => y.broadcast_add(&b.reshape((1, b.elem_count(), 1, 1))?)?,
        None => y,
    })
}

/// One ConvNet block: 3×3 convolution (padding 1, bias `b`) → instance norm
/// (`gamma`, `beta`, ε = 1e-5) → ReLU → 2×2 average pool.
///
/// On the CPU in f32 / f64 the tail is one fused op with hand-written first
/// and second derivatives (`model::norm_block`), and the bias is left out:
/// instance norm subtracts each channel's mean, so a per-channel bias
/// cancels exactly and its gradient is zero. Elsewhere it is the
/// composition [`conv2d`] → [`instance_norm`] → ReLU → [`avg_pool2x2`].
pub fn conv_norm_relu_pool(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
) -> Result<Tensor> {
    let eps = 1e-5;
    if x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64) {
        let z = conv2d(x, w, None, 1)?;
        return Ok(super::norm_block::norm_relu_pool(&z, gamma, beta, eps)?);
    }
    let h = instance_norm(&conv2d(x, w, Some(b), 1)?, gamma, beta, eps)?;
    avg_pool2x2(&h.relu()?)
}

/// Instance normalisation of `[B, C, H, W]` over each (sample, channel)'s
/// pixels, with a per-channel affine transform (PyTorch's
/// `GroupNorm(C, C, affine=True)`, the "instancenorm" of trajectory-matching
/// ConvNets).
pub fn instance_norm(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let flat = x.reshape((b, c, h * w))?;
    // Statistics on the small [B, C, 1] side; the full-size tensor sees one
    // multiply and one add (y = x·s + t), which keeps the backward (and the
    // backward of the backward) to a few passes over the activations.
    let mean = flat.mean_keepdim(D::Minus1)?;
    let mean_sq = flat.sqr()?.mean_keepdim(D::Minus1)?;
    let var = (mean_sq - mean.sqr()?)?;
    let rstd = (var + eps)?.sqrt()?.recip()?;
    let g = gamma.reshape((1, c, 1))?;
    let scale = rstd.broadcast_mul(&g)?;
    let shift = beta.reshape((1, c, 1))?.broadcast_sub(&(mean * &scale)?)?;
    let y = flat.broadcast_mul(&scale)?.broadcast_add(&shift)?;
    Ok(y.reshape((b, c, h, w))?)
}

/// Layer normalisation over the last dimension with weight and bias, as a
/// mean/variance composition (differentiable twice).
pub fn layer_norm(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let centred = x.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = centred.broadcast_div(&(var + eps)?.sqrt()?)?;
    Ok(normed.broadcast_mul(gamma)?.broadcast_add(beta)?)
}

/// 2×2 average pooling with stride 2 as reshape + mean (odd trailing rows and
/// columns are dropped, as PyTorch's `AvgPool2d(2, 2)` does).
pub fn avg_pool2x2(x: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let (h2, w2) = (h / 2, w / 2);
    let x = if h % 2 == 1 || w % 2 == 1 {
        x.narrow(2, 0, h2 * 2)?.narrow(3, 0, w2 * 2)?
    } else {
        x.clone()
    };
    let x = x.reshape((b, c, h2, 2, w2, 2))?;
    Ok(x.sum(5)?.sum(3)?.affine(0.25, 0.0)?)
}

/// The exact (erf) GELU, `x/2 · (1 + erf(x/√2))`, PyTorch's default `nn.GELU`.
pub fn gelu(x: &Tensor) -> Result<Tensor> {
    let e = (x / std::f64::consts::SQRT_2)?.erf()?;
    Ok(((e + 1.0)? * x)?.affine(0.5, 0.0)?)
}

/// `x / ‖x‖` along the last dimension (with a tiny epsilon against zero rows).
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let n = (x.sqr()?.sum_keepdim(D::Minus1)? + 1e-12)?.sqrt()?;
    Ok(x.broadcast_div(&n)?)
}

/// Log-softmax along the last dimension. The max is subtracted as a constant
/// (detached), which leaves value and derivatives unchanged.
pub fn log_softmax(x: &Tensor) -> Result<Tensor> {
    let m = x.detach().max_keepdim(D::Minus1)?;
    let shifted = x.broadcast_sub(&m)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    Ok(shifted.broadcast_sub(&lse)?)
}

/// Inverted dropout with a mask drawn from `seed`, so the same seed rebuilds
/// the same mask (stage 2 replays student steps exactly). `p = 0` is identity.
pub fn dropout(x: &Tensor, p: f64, seed: u64) -> Result<Tensor> {
    if p <= 0.0 {
        return Ok(x.clone());
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let keep = 1.0 - p;
    let mask: Vec<f32> = (0..x.elem_count())
        .map(|_| {
            if rng.random::<f64>() < keep {
                (1.0 / keep) as f32
            } else {
                0.0
            }
        })
        .collect();
    let mask = Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?;
    Ok((x * mask)?)
}

/// Uniform values in `[-bound, bound]` of the given shape, from `rng`.
pub fn uniform(
    rng: &mut ChaCha8Rng,
    shape: &[usize],
    bound: f64,
    dtype: DType,
    device: &candle_core::Device,
) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| rng.random_range(-bound..=bound)).collect();
    Ok(Tensor::from_vec(v, shape, device)?.to_dtype(dtype)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn avg_pool_matches_definition() {
        let x = Tensor::arange(0f64, 16.0, &Device::Cpu)
            .unwrap()
            .reshape((1, 1, 4, 4))
            .unwrap();
        let y: Vec<f64> = avg_pool2x2(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(y, vec![2.5, 4.5, 10.5, 12.5]);
    }

    #[test]
    fn log_softmax_rows_sum_to_one() {
        let x = Tensor::new(&[[1.0f64, 2.0, 3.0], [100.0, 0.0, -5.0]], &Device::Cpu).unwrap();
        let p = log_softmax(&x).unwrap().exp().unwrap().sum(1).unwrap();
        for v in p.to_vec1::<f64>().unwrap() {
            assert!((v - 1.0).abs() < 1e-12);
        }
    }

    #[test]
    fn dropout_is_reproducible_and_unbiased() {
        let x = Tensor::ones((100, 100), DType::F64, &Device::Cpu).unwrap();
        let a = dropout(&x, 0.1, 7).unwrap();
        let b = dropout(&x, 0.1, 7).unwrap();
        let diff = (&a - &b).unwrap().abs().unwrap().sum_all().unwrap();
        assert_eq!(diff.to_scalar::<f64>().unwrap(), 0.0);
        let mean = a.mean_all().unwrap().to_scalar::<f64>().unwrap();
        assert!((mean - 1.0).abs() < 0.05, "mean {mean}");
    }
}
