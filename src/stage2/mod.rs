//! Stage 2: distillation by bi-trajectory matching.
//!
//! - [`similarity`] — a learned image–text similarity over the synthetic pairs (LoRS);
//! - [`distilled_set`] — the synthetic pairs and the learned student rates;
//! - [`unroll`] — the student's SGD steps and the exact reverse sweep through them;
//! - [`matching`] — the matching loss and its gradient (one iteration's math);
//! - [`spike_clip`] — scaling down a matching gradient far above the recent ones;
//! - [`distiller`] — [`Distiller`](distiller::Distiller): the outer loop, checkpoints, progress.

pub mod distilled_set;
pub mod distiller;
pub mod matching;
pub mod similarity;
pub mod spike_clip;
pub mod unroll;
