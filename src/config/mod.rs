//! One configuration struct for the whole pipeline ([`Config`]), with named
//! profiles (`smoke`, `default`, `paper`), presets for datasets and
//! encoders, overrides from TOML or `key=value`, and validation.
//!
//! - [`schema`](self) — the types (a leaf: it imports nothing of the crate);
//! - `profiles` — [`Config::profile`], [`Config::smoke`], [`Config::default_profile`], [`Config::paper`];
//! - `presets` — [`Config::set_dataset`], [`Config::set_image_encoder`], [`Config::set_text_encoder`] and the paths they use;
//! - `overrides` — [`Config::from_toml_file`], [`Config::set`], [`Config::apply_overrides`];
//! - `validate` — [`Config::validate`].

mod overrides;
mod presets;
mod profiles;
mod schema;
mod validate;

pub use presets::*;
pub use schema::*;
pub use validate::{check_convnet_depth, check_text_encoder};
