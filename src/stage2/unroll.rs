//! The student's unrolled SGD steps and the exact gradient through them.
//!
//! Forward: `θ_{n+1} = θ_n − α_t ∇_θ L(θ_n; x̂[B_n], ê[B_n])` for n = 0…N−1,
//! with one learning rate α_t per tower, keeping detached snapshots θ_0…θ_N.
//!
//! Reverse sweep (adjoint), given λ_N = ∂ℓ/∂θ_N of any loss ℓ(θ_N): for
//! n = N−1…0, rebuild step n from leaf variables (θ_n, x̂, ê, and the
//! factors ŝ of a learned similarity when the student trains against one),
//! take g = ∇_θ L keeping its graph, and backpropagate
//! `s = Σ_t α_t ⟨λ_{n+1,t}, g_t⟩` once. Then
//! - ∂ℓ/∂x̂ −= ∂s/∂x̂, ∂ℓ/∂ê −= ∂s/∂ê (and ∂ℓ/∂ŝ −= ∂s/∂ŝ),
//! - ∂ℓ/∂log α_t −= α_t ⟨λ_{n+1,t}, g_t⟩,
//! - λ_n = λ_{n+1} − ∂s/∂θ_n (a Hessian-vector product).
//!
//! Only one step's graph is alive at a time, so memory is flat in N (plus the
//! N+1 parameter snapshots). This is how candle, which keeps gradients of
//! leaf variables only, computes what PyTorch gets from
//! `autograd.grad(create_graph=True)` over the whole unroll. The reverse
//! sweep must run inside [`second_order::with_graph_gradients`](crate::second_order::with_graph_gradients).

use crate::error::{Error, Result};
use crate::model::{Mode, ParamSet, TowerParams, TwoTower};
use crate::second_order::{detached_backward, ensure_graph_gradients, scalar};
use crate::stage1::sgd::TowerLr;
use crate::stage2::similarity::LearnedSimilarity;
use candle_core::{Tensor, Var};

/// One student step's minibatch: indices into the synthetic set, the seed
/// of its dropout masks and, with representation blending, how its rows
/// are mixed.
#[derive(Debug, Clone, PartialEq)]
pub struct StepBatch {
    /// Rows of the synthetic images / texts used by this step.
    pub indices: Vec<u32>,
    /// Seed of this step's stochastic layers.
    pub seed: u64,
    /// RepBlend's blending of this step's pairs, or `None`.
    pub blend: Option<Blend>,
}

/// Representation blending (RepBlend, Zhang et al., NeurIPS 2025) of one
/// student step: row i of the batch's student inputs (images or backbone
/// features) and of its text embeddings becomes `λ·row i + (1 − λ)·row
/// partner[i]`, the same λ and partner for both modalities, so that pair i
/// still matches pair i and the targets stay as they are.
#[derive(Debug, Clone, PartialEq)]
pub struct Blend {
    /// The weight λ of each row's own values.
    pub lambda: f64,
    /// For each row of the batch, the row (of the batch) mixed into it.
    pub partner: Vec<u32>,
}

impl Blend {
    /// `x: [B, …]` blended: `λ x + (1 − λ) x[partner]`.
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        if self.partner.len() != x.dim(0)? {
            return Err(Error::Shape(format!(
                "a blend of {} rows for a batch of {}",
                self.partner.len(),
                x.dim(0)?
            )));
        }
        let idx = Tensor::new(self.partner.as_slice(), x.device())?;
        let other = x.index_select(&idx, 0)?;
        Ok(((x * self.lambda)? + (other * (1.0 - self.lambda))?)?)
    }
}

/// The batch's rows of `t`, blended when the batch says so.
fn student_input(t: &Tensor, b: &StepBatch) -> Result<Tensor> {
    let rows = batch_of(t, b)?;
    match &b.blend {
        Some(blend) => blend.apply(&rows),
        None => Ok(rows),
    }
}

/// Gradients of ℓ with respect to everything the unroll depends on.
#[derive(Debug, Clone)]
pub struct UnrollGrads {
    /// ∂ℓ/∂x̂, shaped like the synthetic images.
    pub images: Tensor,
    /// ∂ℓ/∂ê, shaped like the synthetic text embeddings.
    pub texts: Tensor,
    /// ∂ℓ/∂log α for the image tower.
    pub log_lr_image: f64,
    /// ∂ℓ/∂log α for the text tower.
    pub log_lr_text: f64,
    /// ∂ℓ/∂θ_0 (the adjoint at the start).
    pub start: TowerParams,
    /// ∂ℓ/∂ŝ, one tensor per factor of the learned similarity (in
    /// [`LearnedSimilarity::factors`]' order), when the student trains
    /// against one.
    pub similarity: Option<Vec<Tensor>>,
}

fn batch_of(t: &Tensor, b: &StepBatch) -> Result<Tensor> {
    let idx = Tensor::new(b.indices.as_slice(), t.device())?;
    Ok(t.index_select(&idx, 0)?)
}

fn sgd(theta: &ParamSet, grad: &ParamSet, lr: f64) -> Result<ParamSet> {
    Ok(theta.add_scaled(grad, -lr)?.detach())
}

/// The batch's targets built from `factors` (the similarity's, or leaf
/// variables standing for them), or `None` without a similarity.
fn targets_of(
    similarity: Option<&LearnedSimilarity>,
    factors: Option<&[Var]>,
    batch: &StepBatch,
) -> Result<Option<Tensor>> {
    match (similarity, factors) {
        (Some(s), Some(vars)) => {
            let f: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
            Ok(Some(s.block_of(&f, &batch.indices)?))
        }
        (Some(s), None) => Ok(Some(s.block_of(s.factors(), &batch.indices)?.detach())),
        _ => Ok(None),
    }
}

/// One plain SGD step of the student on `batch` (against the batch's block
/// of `similarity` when given); returns the new (detached) parameters and
/// the loss before the step.
pub fn student_step(
    model: &TwoTower,
    theta: &TowerParams,
    images: &Tensor,
    texts: &Tensor,
    similarity: Option<&LearnedSimilarity>,
    batch: &StepBatch,
    lr: TowerLr,
) -> Result<(TowerParams, f64)> {
    let (image, _vi) = theta.image.to_vars()?;
    let (text, _vt) = theta.text.to_vars()?;
    let p = TowerParams { image, text };
    let targets = targets_of(similarity, None, batch)?;
    let (loss, _) = model.loss_against(
        &p,
        &student_input(&images.detach(), batch)?,
        &student_input(&texts.detach(), batch)?,
        targets.as_ref(),
        Mode::Train { seed: batch.seed },
    )?;
    let l = scalar(&loss)?;
    let grads = loss.backward()?;
    let next = TowerParams {
        image: sgd(&theta.image, &p.image.grads_from(&grads)?, lr.image)?,
        text: sgd(&theta.text, &p.text.grads_from(&grads)?, lr.text)?,
    };
    Ok((next, l))
}

/// One student step's graph kept from the forward pass for the reverse
/// sweep, which then skips rebuilding it (see [`unroll_forward`]).
pub struct StepGraph {
    theta: TowerParams,
    images: Var,
    texts: Var,
    similarity: Option<Vec<Var>>,
    g_img: ParamSet,
    g_txt: ParamSet,
}

/// Builds step `n`'s graph from leaf variables (θ_n, x̂, ê, ŝ) and takes
/// g = ∇_θ L keeping its graph; returns it with the loss.
fn step_graph(
    model: &TwoTower,
    theta_n: &TowerParams,
    images: &Tensor,
    texts: &Tensor,
    similarity: Option<&LearnedSimilarity>,
    batch: &StepBatch,
) -> Result<(StepGraph, f64)> {
    let (image, _vi) = theta_n.image.to_vars()?;
    let (text, _vt) = theta_n.text.to_vars()?;
    let theta = TowerParams { image, text };
    let xv = Var::from_tensor(&images.detach())?;
    let ev = Var::from_tensor(&texts.detach())?;
    let sv = similarity
        .map(|s| {
            s.factors()
                .iter()
                .map(|f| Var::from_tensor(&f.detach()))
                .collect::<candle_core::Result<Vec<_>>>()
        })
        .transpose()?;
    let targets = targets_of(similarity, sv.as_deref(), batch)?;
    let (loss, _) = model.loss_against(
        &theta,
        &student_input(xv.as_tensor(), batch)?,
        &student_input(ev.as_tensor(), batch)?,
        targets.as_ref(),
        Mode::Train { seed: batch.seed },
    )?;
    let l = scalar(&loss)?;
    let grads = loss.backward()?;
    let g_img = theta.image.grads_from(&grads)?;
    let g_txt = theta.text.grads_from(&grads)?;
    Ok((
        StepGraph {
            theta,
            images: xv,
            texts: ev,
            similarity: sv,
            g_img,
            g_txt,
        },
        l,
    ))
}

/// The student's N unrolled steps: the snapshots θ_0 … θ_N, the N losses,
/// and the graphs of the last steps kept for the reverse sweep.
pub struct Unroll {
    /// θ_0 … θ_N, detached.
    pub snapshots: Vec<TowerParams>,
    /// The contrastive loss of each step.
    pub losses: Vec<f64>,
    /// `kept[n]`: step n's graph when it was kept (the last `keep` steps).
    pub kept: Vec<Option<StepGraph>>,
}

/// Runs the N student steps from `theta0`, keeping the graphs of the last
/// `keep` steps (built as the reverse sweep would build them; must run inside
/// [`with_graph_gradients`](crate::second_order::with_graph_gradients)
/// when `keep > 0`). [`reverse_sweep`] then skips rebuilding those
/// steps: each kept step saves one forward and one backward pass, and holds
/// its activations and gradient graph until the sweep reaches it, so memory
/// grows with `keep`, never with N beyond it. The values are the same
/// either way.
#[allow(clippy::too_many_arguments)]
pub fn unroll_forward(
    model: &TwoTower,
    theta0: &TowerParams,
    images: &Tensor,
    texts: &Tensor,
    similarity: Option<&LearnedSimilarity>,
    batches: &[StepBatch],
    lr: TowerLr,
    keep: usize,
) -> Result<Unroll> {
    if keep > 0 {
        ensure_graph_gradients()?;
    }
    let first_kept = batches.len().saturating_sub(keep);
    let mut snaps = vec![theta0.detach()];
    let mut losses = Vec::with_capacity(batches.len());
    let mut graphs = Vec::with_capacity(batches.len());
    for (n, b) in batches.iter().enumerate() {
        let (next, l, graph) = if n < first_kept {
            let (next, l) = student_step(model, &snaps[n], images, texts, similarity, b, lr)?;
            (next, l, None)
        } else {
            let (g, l) = step_graph(model, &snaps[n], images, texts, similarity, b)?;
            let next = TowerParams {
                image: sgd(&snaps[n].image, &g.g_img.detach(), lr.image)?,
                text: sgd(&snaps[n].text, &g.g_txt.detach(), lr.text)?,
            };
            (next, l, Some(g))
        };
        if !l.is_finite() {
            return Err(Error::NonFinite {
                step: format!("student step {n}"),
                what: "contrastive loss".into(),
            });
        }
        snaps.push(next);
        losses.push(l);
        graphs.push(graph);
    }
    Ok(Unroll {
        snapshots: snaps,
        losses,
        kept: graphs,
    })
}

/// The exact gradient of ℓ(θ_N) through the unrolled steps, given the
/// `snapshots` from [`unroll_forward`] and `lambda = ∂ℓ/∂θ_N`. The step
/// graphs in `kept` (`kept[n]`, or `None` to rebuild step n; empty to
/// rebuild every step) are used and released one by one. Must run on a
/// thread prepared by [`with_graph_gradients`](crate::second_order::with_graph_gradients).
#[allow(clippy::too_many_arguments)]
pub fn reverse_sweep(
    model: &TwoTower,
    snapshots: &[TowerParams],
    kept: Vec<Option<StepGraph>>,
    images: &Tensor,
    texts: &Tensor,
    similarity: Option<&LearnedSimilarity>,
    batches: &[StepBatch],
    lr: TowerLr,
    lambda: &TowerParams,
) -> Result<UnrollGrads> {
    let mut graphs = kept;
    if graphs.is_empty() {
        graphs = (0..batches.len()).map(|_| None).collect();
    }
    ensure_graph_gradients()?;
    if graphs.len() != batches.len() {
        return Err(Error::Shape(format!(
            "{} kept step graphs for {} steps",
            graphs.len(),
            batches.len()
        )));
    }
    if snapshots.len() != batches.len() + 1 {
        return Err(Error::Shape(format!(
            "{} snapshots for {} steps",
            snapshots.len(),
            batches.len()
        )));
    }
    let mut lam = lambda.detach();
    let mut d_images = images.zeros_like()?;
    let mut d_texts = texts.zeros_like()?;
    let mut d_sim = similarity
        .map(|s| {
            s.factors()
                .iter()
                .map(Tensor::zeros_like)
                .collect::<candle_core::Result<Vec<_>>>()
        })
        .transpose()?;
    let (mut d_log_img, mut d_log_txt) = (0.0, 0.0);
    for n in (0..batches.len()).rev() {
        let StepGraph {
            theta,
            images: xv,
            texts: ev,
            similarity: sv,
            g_img,
            g_txt,
        } = match graphs[n].take() {
            Some(g) => g,
            None => step_graph(model, &snapshots[n], images, texts, similarity, &batches[n])?.0,
        };
        let dot_img = lam.image.dot_tensor(&g_img)?;
        let dot_txt = lam.text.dot_tensor(&g_txt)?;
        d_log_img -= lr.image * scalar(&dot_img)?;
        d_log_txt -= lr.text * scalar(&dot_txt)?;
        let s = ((dot_img * lr.image)? + (dot_txt * lr.text)?)?;
        // values only: no graph for this pass (see `detached_backward`)
        let hv = detached_backward(&s)?;
        if let Some(g) = hv.get(xv.as_tensor()) {
            d_images = (d_images - g.detach())?;
        }
        if let Some(g) = hv.get(ev.as_tensor()) {
            d_texts = (d_texts - g.detach())?;
        }
        if let (Some(d), Some(vars)) = (d_sim.as_mut(), sv.as_ref()) {
            for (acc, v) in d.iter_mut().zip(vars) {
                if let Some(g) = hv.get(v.as_tensor()) {
                    *acc = (&*acc - g.detach())?;
                }
            }
        }
        let h_img = theta.image.grads_from(&hv)?;
        let h_txt = theta.text.grads_from(&hv)?;
        lam = TowerParams {
            image: lam.image.sub(&h_img)?.detach(),
            text: lam.text.sub(&h_txt)?.detach(),
        };
    }
    Ok(UnrollGrads {
        images: d_images.detach(),
        texts: d_texts.detach(),
        log_lr_image: d_log_img,
        log_lr_text: d_log_txt,
        start: lam,
        similarity: d_sim,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn a_blend_mixes_each_row_with_its_partner_and_checks_the_batch() {
        let x = Tensor::new(&[[1.0f32, 0.0], [0.0, 2.0], [4.0, 4.0]], &Device::Cpu).unwrap();
        let b = Blend {
            lambda: 0.75,
            partner: vec![1, 2, 0],
        };
        let y = b.apply(&x).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(y, vec![vec![0.75, 0.5], vec![1.0, 2.5], vec![3.25, 3.0]]);
        let short = Blend {
            lambda: 0.5,
            partner: vec![1, 0],
        };
        assert!(short.apply(&x).is_err());
    }
}
