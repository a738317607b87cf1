//! vl-distill re-exported from one shared library (see Cargo.toml).
pub use vl_distill::*;
