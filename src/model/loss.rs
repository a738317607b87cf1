//! The students' contrastive losses on L2-normalised features, with logits
//! `S = f(x)·g(e)ᵀ · scale` and `scale = 1/τ`:
//! - symmetric InfoNCE, the loss of CLIP and of the paper:
//!   `L = ½ [CE(S, I) + CE(Sᵀ, I)]`, row `i` of the image features and row
//!   `i` of the text features a positive pair;
//! - the weighted binary cross-entropy of LoRS (Xu et al., ICML 2024)
//!   against a soft target matrix `Y` (a learned image–text similarity):
//!   every logit is a binary decision `σ(S_ij)` against `Y_ij`, and the
//!   positive entries (`Y_ij > ½`) and the others are averaged separately,
//!   then together, so the few positives weigh as much as the many
//!   negatives.

use crate::error::{Error, Result};
use crate::model::ops;
use crate::second_order::scalar;
use candle_core::{Tensor, D};

/// InfoNCE of matched rows of `img: [B, d]` and `txt: [B, d]` (not yet
/// normalised) with a logit scale `scale` (a scalar tensor, `1/τ`).
/// Differentiable twice in all inputs.
pub fn info_nce(img: &Tensor, txt: &Tensor, scale: &Tensor) -> Result<Tensor> {
    Ok(info_nce_with_logits(img, txt, scale)?.0)
}

/// [`info_nce`] and its `[B, B]` logits (image rows × caption columns),
/// the latter for observers such as forgetting counts.
pub fn info_nce_with_logits(
    img: &Tensor,
    txt: &Tensor,
    scale: &Tensor,
) -> Result<(Tensor, Tensor)> {
    contrastive_with_logits(img, txt, scale, None)
}

/// The students' loss of `img: [B, d]` and `txt: [B, d]` (not yet
/// normalised) with logit scale `scale`, and its `[B, B]` logits: InfoNCE
/// of matched rows when `targets` is `None`, else [`soft_label_bce`]
/// against `targets: [B, B]` (image rows × caption columns).
/// Differentiable twice in all inputs, `targets` included.
pub fn contrastive_with_logits(
    img: &Tensor,
    txt: &Tensor,
    scale: &Tensor,
    targets: Option<&Tensor>,
) -> Result<(Tensor, Tensor)> {
    let (b, d) = img.dims2()?;
    if txt.dims2()? != (b, d) {
        return Err(Error::Shape(format!(
            "contrastive loss: image features {:?} vs text features {:?}",
            img.dims(),
            txt.dims()
        )));
    }
    let fi = ops::l2_normalize(img)?;
    let ft = ops::l2_normalize(txt)?;
    let logits = fi.matmul(&ft.t()?)?.broadcast_mul(scale)?;
    if let Some(y) = targets {
        return Ok((soft_label_bce(&logits, y)?, logits));
    }
    let eye = Tensor::eye(b, logits.dtype(), logits.device())?;
    let ce = |l: &Tensor| -> Result<Tensor> {
        let lp = ops::log_softmax(l)?;
        Ok((lp * &eye)?.sum(D::Minus1)?.mean_all()?.neg()?)
    };
    let l_i2t = ce(&logits)?;
    let l_t2i = ce(&logits.t()?)?;
    Ok((((l_i2t + l_t2i)? * 0.5)?, logits))
}

/// `log(1 + eˣ)`, written so that it neither overflows for large `x` nor
/// loses its second derivative: `max(x, 0) + log(1 + e^{−|x|})`.
fn softplus(x: &Tensor) -> Result<Tensor> {
    let tail = (x.abs()?.neg()?.exp()? + 1.0)?.log()?;
    Ok((x.relu()? + tail)?)
}

/// LoRS's weighted binary cross-entropy of `logits: [B, B]` against soft
/// targets `targets: [B, B]`: with `ℓ_ij = −Y_ij log σ(S_ij) − (1 − Y_ij)
/// log(1 − σ(S_ij))` (computed exactly, as softplus terms), the mean of ℓ
/// over the positive entries (`Y_ij > ½`, a mask that carries no gradient)
/// and the mean over the others, averaged; a group with no entry adds 0,
/// as in the authors' code. With `Y = I` it is a balanced binary
/// contrastive loss of matched pairs.
pub fn soft_label_bce(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    if logits.dims() != targets.dims() {
        return Err(Error::Shape(format!(
            "soft-label loss: logits {:?} vs targets {:?}",
            logits.dims(),
            targets.dims()
        )));
    }
    let y = targets.to_dtype(logits.dtype())?;
    // −log σ(s) = softplus(−s), −log(1 − σ(s)) = softplus(s)
    let per_entry = ((&y * softplus(&logits.neg()?)?)? + ((1.0 - &y)? * softplus(logits)?)?)?;
    let positive = y.detach().gt(0.5)?.to_dtype(y.dtype())?;
    let negative = (1.0 - &positive)?;
    let group_mean = |mask: &Tensor| -> Result<Tensor> {
        let count = scalar(&mask.sum_all()?)?;
        let total = (&per_entry * mask)?.sum_all()?;
        Ok(if count > 0.0 {
            (total / count)?
        } else {
            total.zeros_like()?
        })
    };
    Ok(((group_mean(&positive)? + group_mean(&negative)?)? * 0.5)?)
}
