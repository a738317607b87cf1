//! Stage 1: experts trained on the real pairs, and their recorded
//! trajectories.
//!
//! - [`sgd`] — SGD on a two-tower model (per-tower rates, epochs, batches);
//! - [`forgetting`] — forgetting events counted while an expert trains;
//! - [`expert`] — [`ExpertTrainer`](expert::ExpertTrainer): the experts, one epoch per step;
//! - [`pretrain`] — [`Pretrainer`](pretrain::Pretrainer): an image encoder pretrained on scenes apart from the splits;
//! - [`trajectory`] — [`Trajectory`](trajectory::Trajectory): parameters after every epoch, on disk.

pub mod expert;
pub mod forgetting;
pub mod pretrain;
pub mod sgd;
pub mod trajectory;
