//! One configuration struct for the whole pipeline ([`Config`]), with named
//! profiles (`smoke`, `default`, `paper`), presets for datasets and
//! encoders, overrides from TOML or `key=value`, and validation.
//!
//! - `schema` — the types (a leaf: it imports nothing of the crate);
//! - `profiles` — [`Config::profile`] and the three profiles;
//! - `presets` — [`Config::set_dataset`], [`Config::set_image_encoder`],
//!   [`Config::set_text_encoder`] and the paths of the fetched files;
//! - `head_only` — [`Config::freeze_backbone`]: the frozen-backbone,
//!   head-only regime;
//! - `overrides` — [`Config::from_toml_file`], [`Config::set`],
//!   [`Config::apply_overrides`];
//! - `validate` — [`Config::validate`] and the checks shared with other
//!   modules.

mod head_only;
mod overrides;
mod presets;
mod profiles;
mod schema;
mod validate;

pub use head_only::HEAD_ONLY_JOINT_DIM;
pub use presets::*;
pub use schema::*;
pub use validate::{check_convnet_depth, check_text_encoder};
