//! Symmetric InfoNCE, the contrastive loss of CLIP and of the paper:
//! `L = ½ [CE(S, I) + CE(Sᵀ, I)]` with `S = f(x)·g(e)ᵀ · scale` on
//! L2-normalised features and `scale = 1/τ`. Row `i` of the image features
//! and row `i` of the text features are a positive pair.

use crate::error::{Error, Result};
use crate::model::ops;
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
    let (b, d) = img.dims2()?;
    if txt.dims2()? != (b, d) {
        return Err(Error::Shape(format!(
            "InfoNCE: image features {:?} vs text features {:?}",
            img.dims(),
            txt.dims()
        )));
    }
    let fi = ops::l2_normalize(img)?;
    let ft = ops::l2_normalize(txt)?;
    let logits = fi.matmul(&ft.t()?)?.broadcast_mul(scale)?;
    let eye = Tensor::eye(b, logits.dtype(), logits.device())?;
    let ce = |l: &Tensor| -> Result<Tensor> {
        let lp = ops::log_softmax(l)?;
        Ok((lp * &eye)?.sum(D::Minus1)?.mean_all()?.neg()?)
    };
    let l_i2t = ce(&logits)?;
    let l_t2i = ce(&logits.t()?)?;
    Ok((((l_i2t + l_t2i)? * 0.5)?, logits))
}
