//! # vl-distill
//!
//! Vision-language dataset distillation by bi-trajectory matching (Wu, Zhang,
//! Deng, Russakovsky): train contrastive image–text "experts" on real
//! image–caption pairs, record their parameter trajectories, then optimise a
//! tiny synthetic set of (pixels, text embedding) pairs so that a student
//! trained on it follows the experts.
//!
//! Every stage is a value you can step from a notebook cell or run to the end:
//!
//! ```
//! use vl_distill::prelude::*;
//!
//! let config = Config::profile("smoke")?;                    // or "default", "paper"
//! let exp = Experiment::new(config, device::best(), None)?;  // data + embeddings + model
//!
//! // stage 1: experts on the real pairs, one epoch per call
//! let mut trainer = ExpertTrainer::new(&exp)?;
//! while let Some(report) = trainer.step()? {
//!     println!("{report}");
//! }
//! let experts = trainer.trajectories().to_vec();
//!
//! // stage 2: the synthetic pairs, one outer iteration per call
//! let mut distiller = Distiller::new(&exp, experts)?;
//! while !distiller.is_done() {
//!     println!("{}", distiller.step()?);
//! }
//!
//! // evaluation: fresh students trained on the distilled pairs with the
//! // learned rates, tested by retrieval
//! let (lr, _) = distiller.set.student_lr(&exp);
//! let stats = Evaluator::for_small_set(&exp, distiller.set.as_pairs()?, lr).run()?;
//! println!("distilled: {stats}");
//! # Ok::<(), vl_distill::Error>(())
//! ```
//!
//! [`pipeline`] runs the same steps with progress lines and files in a run
//! folder (what the `vl-distill` command does); [`notebook::Workspace`]
//! adds a cache so notebooks train each setup once.
//!
//! # Layout
//!
//! The modules follow the method; each imports only from the ones listed
//! before it (`scripts/code_map.py` checks this):
//!
//! | layer | modules |
//! |---|---|
//! | base | [`error`], [`device`], [`progress`], [`seeds`], [`second_order`] (and the crate's file and allocator helpers) |
//! | configuration | [`config`]: the types, profiles, presets, overrides, checks |
//! | inputs and model | [`data`] (datasets, [`data::CaptionedImages`]), [`text`] (frozen sentence encoders, the embedding cache), [`model`] (towers, InfoNCE, Recall@K) |
//! | one experiment | [`experiment`]: everything a stage reads, loaded once |
//! | stage 1 | [`stage1`]: SGD, forgetting counts, experts, trajectories |
//! | stage 2 | [`stage2`]: the distilled set, the unrolled student and its reverse sweep, the matching loss, the distiller |
//! | evaluation | [`evaluate`]: the protocol, result rows, coresets |
//! | pictures and tables | [`display`] |
//! | tuning | [`tune`]: stage-2 settings chosen by validation recall |
//! | the pipeline | [`pipeline`]: the steps the command line and notebooks share; [`compare`]: stage-2 options side by side at equal storage |
//! | notebooks | [`notebook`]: the cache-aware [`Workspace`](notebook::Workspace) |

#![warn(missing_docs)]

// base: errors, files, seeds, devices, terminal output, allocator, autodiff
pub(crate) mod alloc;
pub mod device;
pub mod error;
pub(crate) mod io;
pub mod progress;
pub mod second_order;
pub mod seeds;

// the configuration (imports nothing of ours but `error`)
pub mod config;

// inputs and the model
pub mod data;
pub mod model;
pub mod text;

// everything a stage reads, loaded once
pub mod experiment;

// the method
pub mod evaluate;
pub mod stage1;
pub mod stage2;

// choosing stage-2 settings on the validation split
pub mod tune;

// shared by the command line and notebooks
pub mod pipeline;
// stage-2 options side by side at equal storage
pub mod compare;

// notebooks and pictures
pub mod display;
pub mod notebook;

pub use error::{Error, Result};

// The crates whose types appear in the public API, for notebooks and
// programs that depend only on this crate (`vl_distill::candle_core::Tensor`,
// `vl_distill::polars::prelude::DataFrame`, `vl_distill::image::RgbImage`).
pub use candle_core;
pub use image;
pub use polars;

/// The README's Rust examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// The names a notebook needs, in one import: `use vl_distill::prelude::*;`.
pub mod prelude {
    pub use crate::compare::{compare, compared_dir, CompareOptions, ComparedSet, StageTwoOption};
    pub use crate::config::{
        BlendConfig, Config, EncoderSize, ImageEncoderConfig, InitKind, LorsConfig, SynthSpace,
    };
    pub use crate::data::{CaptionedImages, Dataset, Sample, Split};
    pub use crate::device;
    pub use crate::display::comparison::ComparisonTable;
    pub use crate::display::plot::LinePlot;
    pub use crate::display::{
        distilled_grid, export_distilled, nearest_captions, partner_grid, similarity_heatmap,
        ImageGrid, RecallTable,
    };
    pub use crate::error::{Error, Result};
    pub use crate::evaluate::coreset::CoresetMethod;
    pub use crate::evaluate::protocol::Evaluator;
    pub use crate::evaluate::results::{RecallStats, ResultRow};
    pub use crate::experiment::Experiment;
    pub use crate::model::retrieval::{evaluate, Recall};
    pub use crate::model::{ImageEncoder, Modality, ParamSet, TowerParams, TwoTower};
    pub use crate::notebook::Workspace;
    pub use crate::stage1::expert::ExpertTrainer;
    pub use crate::stage1::sgd::TowerLr;
    pub use crate::stage1::trajectory::Trajectory;
    pub use crate::stage2::distilled_set::DistilledSet;
    pub use crate::stage2::distiller::Distiller;
    pub use candle_core::Tensor;
}
