//! vl-distill: vision-language dataset distillation by bi-trajectory matching.
pub mod config;
pub mod data;
pub mod error;
pub mod loss;
pub mod model;
pub use error::{Error, Result};
pub mod second_order;
pub mod unroll;
