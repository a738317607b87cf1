//! Frozen sentence encoders and the on-disk caption-embedding cache.
//!
//! Captions are encoded once by a frozen [`TextEncoder`]; the text tower only
//! learns a projection of these embeddings, and stage 2 distils text in this
//! embedding space.

pub mod cache;
pub mod hashed;

pub use cache::CaptionEmbeddings;
pub use hashed::HashedBowEncoder;

use crate::config::TextConfig;
use crate::error::{Error, Result};
use candle_core::Tensor;

/// A frozen sentence encoder: captions in, one embedding row per caption out.
pub trait TextEncoder: Send + Sync {
    /// An identity string that changes whenever the embeddings would change
    /// (name, version, dimension, weights). Keys the embedding cache.
    fn id(&self) -> String;
    /// Embedding dimension.
    fn dim(&self) -> usize;
    /// Embeddings `[texts.len(), dim]` (f32, CPU).
    fn encode(&self, texts: &[&str]) -> Result<Tensor>;
}

/// The encoder named in `cfg` (`hashed` for now; BERT and CLIP come later).
pub fn from_config(cfg: &TextConfig) -> Result<Box<dyn TextEncoder>> {
    match cfg.encoder.as_str() {
        "hashed" => Ok(Box::new(HashedBowEncoder::new(cfg.dim)?)),
        other => Err(Error::Config(format!(
            "unknown text encoder {other:?} (available: hashed)"
        ))),
    }
}
