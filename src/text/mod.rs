//! Frozen sentence encoders and the on-disk caption-embedding cache.
//!
//! Captions are encoded once by a frozen [`TextEncoder`]; the text tower only
//! learns a projection of these embeddings, and stage 2 distils text in this
//! embedding space. Three encoders ([`from_config`] picks one by name):
//!
//! - `hashed` ([`HashedBowEncoder`]): built in, no weights, the offline default;
//! - `bert` ([`BertEncoder`]): the BERT family from a local folder —
//!   `bert-base-uncased` with `[CLS]` pooling (the paper's encoder) or a
//!   sentence-transformers checkpoint such as `all-MiniLM-L6-v2`;
//! - `clip` ([`ClipTextEncoder`]): the CLIP text tower from a local folder.
//!
//! The two checkpoint encoders run candle-transformers' networks, whose fused
//! layer norm has no backward pass: they are frozen, never trained. Their
//! [`TextEncoder::id`] names the kind, the folder, the pooling, the
//! normalisation, the max length and a digest of `config.json`, the
//! tokenizer files and the weights file's size and first and last MiB.
//! The weights are not hashed in full (hashing a large checkpoint on every
//! start would be slow): an edit inside the weights that keeps their size and both
//! ends is not noticed, so give a changed checkpoint a new folder or delete
//! its cached embeddings.

pub mod bert;
pub mod cache;
pub mod checkpoint;
pub mod clip;
pub mod hashed;

pub use bert::BertEncoder;
pub use cache::CaptionEmbeddings;
pub use checkpoint::TokenBatch;
pub use clip::ClipTextEncoder;
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

/// How a checkpoint encoder turns token vectors into one sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The `[CLS]` (first) token's vector of the last layer.
    Cls,
    /// The mean over the real (unpadded) tokens of the last layer.
    Mean,
}

impl Pooling {
    /// `"cls"` or `"mean"`; anything else is an error naming the choices.
    pub fn parse(s: &str) -> Result<Pooling> {
        match s {
            "cls" => Ok(Pooling::Cls),
            "mean" => Ok(Pooling::Mean),
            other => Err(Error::Config(format!(
                "text.pooling {other:?} is not a pooling (choose \"cls\" or \"mean\")"
            ))),
        }
    }
}

impl std::fmt::Display for Pooling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Pooling::Cls => "cls",
            Pooling::Mean => "mean",
        })
    }
}

/// Options of the checkpoint encoders; `None` takes the model folder's default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncoderOptions {
    /// Pooling (BERT only; default: the sentence-transformers folder's, else `cls`).
    pub pooling: Option<Pooling>,
    /// L2-normalise the embeddings (default: a sentence-transformers folder
    /// with a `Normalize` module normalises, anything else does not).
    pub normalize: Option<bool>,
    /// Truncate captions to this many tokens, special tokens included
    /// (default: BERT the sentence-transformers `max_seq_length`, else
    /// min(128, `max_position_embeddings`); CLIP `max_position_embeddings`).
    pub max_len: Option<usize>,
    /// Captions per forward pass.
    pub batch_size: usize,
}

impl Default for EncoderOptions {
    fn default() -> Self {
        EncoderOptions {
            pooling: None,
            normalize: None,
            max_len: None,
            batch_size: 64,
        }
    }
}

impl EncoderOptions {
    /// The options a [`TextConfig`] gives.
    pub fn from_config(cfg: &TextConfig) -> Result<Self> {
        Ok(EncoderOptions {
            pooling: cfg.pooling.as_deref().map(Pooling::parse).transpose()?,
            normalize: cfg.normalize,
            max_len: cfg.max_len,
            batch_size: cfg.batch_size,
        })
    }
}

/// The encoder named in `cfg`: `hashed`, or `bert` / `clip` loaded from the
/// folder `cfg.path` onto [`device::best`](crate::device::best) (their
/// embeddings come back on the CPU).
pub fn from_config(cfg: &TextConfig) -> Result<Box<dyn TextEncoder>> {
    let folder = || {
        cfg.path.as_deref().ok_or_else(|| {
            Error::Config(format!(
                "text.path must name the model folder of the {} encoder",
                cfg.encoder
            ))
        })
    };
    match cfg.encoder.as_str() {
        "hashed" => Ok(Box::new(HashedBowEncoder::new(cfg.dim)?)),
        "bert" => Ok(Box::new(BertEncoder::load(
            folder()?,
            &EncoderOptions::from_config(cfg)?,
            &crate::device::best(),
        )?)),
        "clip" => Ok(Box::new(ClipTextEncoder::load(
            folder()?,
            &EncoderOptions::from_config(cfg)?,
            &crate::device::best(),
        )?)),
        other => {
            crate::config::check_text_encoder(other)?;
            unreachable!("every text encoder is matched above")
        }
    }
}
