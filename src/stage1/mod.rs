//! Stage 1: experts trained on the real pairs, and their recorded
//! trajectories.
//!
//! - [`sgd`] — SGD on a two-tower model (per-tower rates, epochs, batches);
//! - [`forgetting`] — forgetting events counted while an expert trains;
//! - [`expert`] — [`ExpertTrainer`](expert::ExpertTrainer): the experts, one epoch per step;
//! - [`trajectory`] — [`Trajectory`](trajectory::Trajectory): parameters after every epoch, on disk.

pub mod expert;
pub mod forgetting;
pub mod sgd;
pub mod trajectory;
