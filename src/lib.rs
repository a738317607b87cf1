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

pub mod alloc;
pub mod config;
pub mod coreset;
pub mod data;
pub mod device;
pub mod display;
pub mod distill;
pub mod error;
pub mod eval;
pub mod evaluator;
pub mod experiment;
pub mod expert;
pub mod io;
pub mod loss;
pub mod model;
pub mod notebook;
pub mod pairs;
pub mod progress;
pub mod second_order;
pub mod text;
pub mod train;
pub mod trajectory;
pub mod unroll;

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
    pub use crate::coreset::CoresetMethod;
    pub use crate::data::{Dataset, Sample, Split};
    pub use crate::device;
    pub use crate::display::comparison::ComparisonTable;
    pub use crate::display::plot::LinePlot;
    pub use crate::display::{
        distilled_grid, export_distilled, nearest_captions, ImageGrid, RecallTable,
    };
    pub use crate::distill::{DistilledSet, Distiller};
    pub use crate::error::{Error, Result};
    pub use crate::eval::{evaluate, Recall, RecallStats, ResultRow};
    pub use crate::evaluator::Evaluator;
    pub use crate::experiment::Experiment;
    pub use crate::expert::ExpertTrainer;
    pub use crate::model::{ImageEncoder, Modality, ParamSet, TowerParams, TwoTower};
    pub use crate::notebook::Workspace;
    pub use crate::pairs::CaptionedImages;
    pub use crate::train::TowerLr;
    pub use crate::trajectory::Trajectory;
    pub use candle_core::Tensor;
}
