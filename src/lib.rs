//! vl-distill: vision-language dataset distillation by bi-trajectory matching.
pub mod config;
pub mod data;
pub mod error;
pub mod loss;
pub mod model;
pub use error::{Error, Result};
pub mod device;
pub mod eval;
pub mod evaluator;
pub mod experiment;
pub mod expert;
pub mod io;
pub mod pairs;
pub mod second_order;
pub mod text;
pub mod train;
pub mod trajectory;
pub mod unroll;
