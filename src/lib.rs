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
//! ```no_run
//! use vl_distill::prelude::*;
//!
//! let config = Config::profile("smoke")?;                    // or "default", "paper"
//! let exp = Experiment::new(config, device::best(), None)?;  // data + embeddings + model
//! let mut experts = ExpertTrainer::new(&exp)?;
//! while let Some(report) = experts.step()? {                 // one epoch per call
//!     println!("{report}");
//! }
//! let theta = experts.trajectories()[0].epochs.last().unwrap();
//! println!("{}", evaluate(&exp.model, theta, &exp.test, 256)?);
//! # Ok::<(), vl_distill::Error>(())
//! ```
//!
//! Module map: [`data`] (datasets), [`text`] (frozen sentence encoders),
//! [`model`] (functional towers, [`model::ParamSet`]), [`loss`] (InfoNCE),
//! [`train`] (SGD), [`expert`] and [`trajectory`] (stage 1), [`unroll`] and
//! [`second_order`] (the exact gradient through student steps), [`distill`]
//! (stage 2), [`coreset`] (real-pair baselines), [`eval`] and [`evaluator`]
//! (retrieval recall and the evaluation protocol), [`display`] (image grids
//! shown inline in evcxr or saved as PNG, the export of a distilled set with
//! the nearest real captions, recall tables, plots), [`notebook`] (profile
//! and work folder of a notebook), [`progress`] and [`alloc`] (terminal
//! output, allocator tuning).

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

// shared by the command line and notebooks
pub mod pipeline;

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

/// The names a notebook needs, in one import: `use vl_distill::prelude::*;`.
pub mod prelude {
    pub use crate::config::{Config, EncoderSize, ImageEncoderConfig, InitKind};
    pub use crate::data::{CaptionedImages, Dataset, Sample, Split};
    pub use crate::device;
    pub use crate::display::comparison::ComparisonTable;
    pub use crate::display::plot::LinePlot;
    pub use crate::display::{
        distilled_grid, export_distilled, nearest_captions, ImageGrid, RecallTable,
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
