//! The bi-trajectory matching loss and its exact gradient through the
//! student's unrolled steps: the whole math of one distillation iteration.

use crate::error::{Error, Result};
use crate::model::{FrozenBackbone, Modality, TowerParams, TwoTower};
use crate::second_order::detached_backward;
use crate::stage1::sgd::TowerLr;
use crate::stage2::similarity::LearnedSimilarity;
use crate::stage2::unroll::{reverse_sweep, unroll_forward, StepBatch, Unroll, UnrollGrads};
use candle_core::{Tensor, Var};

/// The bi-trajectory matching loss of a student end point against the
/// expert's start and target epochs: per tower ‖θ̂ − θ*_target‖² divided by
/// ‖θ*_start − θ*_target‖². Returns (image term, text term).
pub fn matching_loss(
    student: &TowerParams,
    start: &TowerParams,
    target: &TowerParams,
) -> Result<(f64, f64)> {
    let term = |m: Modality| -> Result<f64> {
        let denom = start.get(m).sq_dist(target.get(m))?;
        if denom <= 0.0 {
            return Err(Error::Config(format!(
                "the expert's {} tower did not move between the start and target epochs",
                m.name()
            )));
        }
        Ok(student.get(m).sq_dist(target.get(m))? / denom)
    };
    Ok((term(Modality::Image)?, term(Modality::Text)?))
}

/// The matching loss of one unroll and its exact gradient.
#[derive(Debug, Clone)]
pub struct MatchGradient {
    /// Image-tower term of the matching loss.
    pub loss_image: f64,
    /// Text-tower term of the matching loss.
    pub loss_text: f64,
    /// Mean contrastive loss of the student steps.
    pub student_loss: f64,
    /// ∂ℓ/∂(images, texts, log α, similarity) through all the student steps.
    pub grads: UnrollGrads,
}

/// The bi-trajectory matching loss ℓ of a student that starts at `theta0`
/// (an expert's epoch s) and takes one SGD step per batch of `batches` on the
/// synthetic `images`/`texts` (against the batch's block of `similarity`
/// when given) with learning rates `lr`, against `target` (epoch s + R),
/// and its exact gradient by the reverse sweep. This is the
/// whole math of one
/// [`Distiller::step`](crate::stage2::distiller::Distiller::step); it must
/// run inside
/// [`with_graph_gradients`](crate::second_order::with_graph_gradients).
/// The graphs of the last `keep` student steps are kept from the forward
/// pass instead of rebuilt by the reverse sweep
/// (`distill.cached_steps`: faster, memory grows with `keep`; the values
/// are the same).
#[allow(clippy::too_many_arguments)]
pub fn matching_gradient(
    model: &TwoTower,
    theta0: &TowerParams,
    target: &TowerParams,
    images: &Tensor,
    texts: &Tensor,
    similarity: Option<&LearnedSimilarity>,
    batches: &[StepBatch],
    lr: TowerLr,
    keep: usize,
) -> Result<MatchGradient> {
    let Unroll {
        snapshots: snaps,
        losses,
        kept,
    } = unroll_forward(model, theta0, images, texts, similarity, batches, lr, keep)?;
    let last = snaps.last().expect("N+1 snapshots");
    let (loss_image, loss_text) = matching_loss(last, theta0, target)?;
    // λ_N = ∂ℓ/∂θ̂_N = 2 (θ̂_N − θ*_target) / ‖θ*_start − θ*_target‖², per tower
    let lambda = last.map(|m, p| {
        let denom = theta0.get(m).sq_dist(target.get(m))?;
        p.sub(target.get(m))?.scale(2.0 / denom)
    })?;
    let grads = reverse_sweep(
        model, &snaps, kept, images, texts, similarity, batches, lr, &lambda,
    )?;
    Ok(MatchGradient {
        loss_image,
        loss_text,
        student_loss: losses.iter().sum::<f64>() / losses.len().max(1) as f64,
        grads,
    })
}

/// [`matching_gradient`] for synthetic **pixels** read through a frozen
/// backbone: the student's steps run on the pixels' standardised features,
/// and the features' gradient goes back through the backbone, so
/// `grads.images` is ∂ℓ/∂pixels. The backbone's parameters get no gradient
/// (they are not variables). With `chunk` unset the pixels pass through
/// the backbone once, keeping one graph of all of them until the gradient
/// comes back (memory grows with the set and the resolution); with
/// `Some(c)` the features are computed `c` images at a time without a
/// graph, and the gradient goes back chunk by chunk, each chunk's forward
/// rebuilt with its graph: the backbone runs forward twice, and only one
/// chunk's activations are alive at a time. Must run inside
/// [`with_graph_gradients`](crate::second_order::with_graph_gradients).
#[allow(clippy::too_many_arguments)]
pub fn matching_gradient_through(
    backbone: &FrozenBackbone,
    model: &TwoTower,
    theta0: &TowerParams,
    target: &TowerParams,
    pixels: &Tensor,
    texts: &Tensor,
    similarity: Option<&LearnedSimilarity>,
    batches: &[StepBatch],
    lr: TowerLr,
    keep: usize,
    chunk: Option<usize>,
) -> Result<MatchGradient> {
    let Some(chunk) = chunk else {
        let leaf = Var::from_tensor(&pixels.detach())?;
        let features = backbone.features(leaf.as_tensor())?;
        let mut mg = matching_gradient(
            model,
            theta0,
            target,
            &features.detach(),
            texts,
            similarity,
            batches,
            lr,
            keep,
        )?;
        mg.grads.images = pulled_back(&leaf, &features, &mg.grads.images)?;
        return Ok(mg);
    };
    let chunk = chunk.max(1);
    let features = backbone.features_chunked(pixels, chunk)?;
    let mut mg = matching_gradient(
        model, theta0, target, &features, texts, similarity, batches, lr, keep,
    )?;
    let n = pixels.dim(0)?;
    let mut parts = Vec::with_capacity(n.div_ceil(chunk));
    for i in (0..n).step_by(chunk) {
        let len = chunk.min(n - i);
        let leaf = Var::from_tensor(&pixels.narrow(0, i, len)?.detach())?;
        let f = backbone.features(leaf.as_tensor())?;
        parts.push(pulled_back(&leaf, &f, &mg.grads.images.narrow(0, i, len)?)?);
    }
    mg.grads.images = Tensor::cat(&parts, 0)?;
    Ok(mg)
}

/// ∂⟨g, f(x)⟩/∂x for the features `f` computed from the leaf `x` (a
/// vector–Jacobian product, differentiated once).
fn pulled_back(leaf: &Var, features: &Tensor, g: &Tensor) -> Result<Tensor> {
    let chained = detached_backward(&(features * g)?.sum_all()?)?;
    Ok(match chained.get(leaf.as_tensor()) {
        Some(d) => d.detach(),
        None => leaf.as_tensor().zeros_like()?,
    })
}
