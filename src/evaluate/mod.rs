//! Evaluation: fresh students trained on a set of pairs and tested by
//! retrieval, the rows of a run's results, and the coreset baselines.
//!
//! - [`protocol`] — [`Evaluator`](protocol::Evaluator): students from fresh
//!   seeds, tested on the test split;
//! - [`results`] — recall mean ± std over seeds, `results.json` rows;
//! - [`student_settings`] — each method's student settings chosen on the
//!   validation split before its one test evaluation;
//! - [`coreset`] — the real-pair baselines (random, herding, k-center,
//!   forgetting).
//!
//! Recall@K itself lives with the model ([`crate::model::retrieval`]): the
//! experts of stage 1 report it every epoch.

pub mod coreset;
pub mod protocol;
pub mod results;
pub mod student_settings;
