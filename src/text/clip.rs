//! The CLIP text tower as a frozen sentence encoder (Radford et al., 2021,
//! "Learning Transferable Visual Models From Natural Language Supervision";
//! e.g. `openai/clip-vit-base-patch32`), the paper's "CLIP text" language
//! encoder.
//!
//! The network is `candle_transformers::models::clip::text_model`; the
//! tokenizer a `tokenizer.json` read by the `tokenizers` crate. Everything is
//! read from a local folder:
//!
//! ```text
//! my-clip/
//!   config.json            a CLIPTextConfig, or a full CLIPConfig with `text_config`
//!   model.safetensors      `text_model.*` [+ `text_projection.weight` (proj_dim × hidden)];
//!                          a full CLIPModel checkpoint works (its vision tower is ignored)
//!   tokenizer.json         the CLIP BPE tokenizer (appends <|endoftext|>)
//!   tokenizer_config.json  optional: eos_token / pad_token
//! ```
//!
//! The embedding is the final layer-normed hidden state at the
//! end-of-text token (the first `<|endoftext|>` of each caption), projected
//! by `text_projection` when the checkpoint has one (Hugging Face's
//! `get_text_features` / `text_embeds`), optionally L2-normalised (off by
//! default). Hugging Face's legacy pooling takes the position of the largest
//! token id, which is that token only when `<|endoftext|>` has the largest id
//! as in the real CLIP vocabulary; a tokenizer where it does not is refused,
//! so both conventions agree. CLIP's attention is causal, so tokens after
//! the end-of-text token (the padding) never reach it: padding does not
//! change an embedding.
//!
//! candle-transformers 0.11.1's CLIP text model implements the
//! `quick_gelu` activation and layer-norm epsilon 1e-5 of the OpenAI
//! checkpoints only; a config asking for anything else is refused with an
//! error. The encoder is frozen: candle's fused layer norm has no backward
//! pass, fine for captions encoded once.

use super::checkpoint::{
    apply_max_len, check_architecture, check_shape, check_vocab_covers, encode_batched,
    identity_digest, l2_normalize, load_tokenizer_json, max_token_id, safetensors_shapes, tokenize,
    var_builder, weight_prefix, weights_misfit, ModelFolder, TensorShapes, TokenBatch,
    TokenizerConfig,
};
use super::{EncoderOptions, TextEncoder};
use crate::error::{Error, Result};
use crate::io::read_json;
use candle_core::{Device, Tensor};
use candle_nn::Module;
use candle_transformers::models::clip::text_model::{
    Activation, ClipTextConfig, ClipTextTransformer,
};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use tokenizers::Tokenizer;

/// The fields of a Hugging Face `CLIPTextConfig` this encoder reads, with
/// `transformers`' defaults for the missing ones.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
struct HfClipTextConfig {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    projection_dim: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    max_position_embeddings: usize,
    hidden_act: String,
    layer_norm_eps: f64,
    eos_token_id: Option<i64>,
    model_type: Option<String>,
}

impl Default for HfClipTextConfig {
    fn default() -> Self {
        HfClipTextConfig {
            vocab_size: 49408,
            hidden_size: 512,
            intermediate_size: 2048,
            projection_dim: 512,
            num_hidden_layers: 12,
            num_attention_heads: 8,
            max_position_embeddings: 77,
            hidden_act: "quick_gelu".into(),
            layer_norm_eps: 1e-5,
            eos_token_id: None,
            model_type: None,
        }
    }
}

impl HfClipTextConfig {
    /// candle-transformers' config (quick_gelu, the only activation it reads here).
    fn to_candle(&self) -> ClipTextConfig {
        ClipTextConfig {
            vocab_size: self.vocab_size,
            embed_dim: self.hidden_size,
            activation: Activation::QuickGelu,
            intermediate_size: self.intermediate_size,
            max_position_embeddings: self.max_position_embeddings,
            pad_with: None,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: self.num_attention_heads,
            projection_dim: self.projection_dim,
        }
    }
}

/// Reads `config.json` (see [`parse_clip_config`]) and checks that
/// candle-transformers' CLIP text model supports it.
fn read_clip_config(path: &Path) -> Result<HfClipTextConfig> {
    let mut cfg = parse_clip_config(path)?;
    check_clip_config(&cfg, path)?;
    cfg.model_type = None;
    Ok(cfg)
}

/// Parses `config.json`: a CLIPTextConfig, or a CLIPConfig whose
/// `text_config` it takes (with the top-level `projection_dim`).
fn parse_clip_config(path: &Path) -> Result<HfClipTextConfig> {
    let v: serde_json::Value = read_json(path)?;
    let parse = |v: serde_json::Value| {
        serde_json::from_value::<HfClipTextConfig>(v).map_err(|e| Error::Json {
            path: path.into(),
            message: e.to_string(),
        })
    };
    match v.get("text_config") {
        Some(text) if text.is_object() => {
            let mut c = parse(text.clone())?;
            c.projection_dim = v
                .get("projection_dim")
                .and_then(|p| p.as_u64())
                .map(|p| p as usize)
                .unwrap_or(512);
            c.model_type = v
                .get("model_type")
                .and_then(|m| m.as_str())
                .map(str::to_string);
            Ok(c)
        }
        _ => parse(v),
    }
}

/// Checks the model type and the fields candle-transformers' CLIP text
/// model supports, naming `path` otherwise.
fn check_clip_config(cfg: &HfClipTextConfig, path: &Path) -> Result<()> {
    if let Some(t) = &cfg.model_type {
        if !t.starts_with("clip") {
            return Err(Error::bad_file(
                path,
                format!("model_type {t:?}: the CLIP encoder reads CLIP checkpoints"),
            ));
        }
    }
    if cfg.hidden_act != "quick_gelu" {
        return Err(Error::bad_file(
            path,
            format!(
                "hidden_act {:?}: candle-transformers 0.11.1's CLIP text model implements \
                 quick_gelu only",
                cfg.hidden_act
            ),
        ));
    }
    if (cfg.layer_norm_eps - 1e-5).abs() > 1e-12 {
        return Err(Error::bad_file(
            path,
            format!(
                "layer_norm_eps {}: candle-transformers 0.11.1's CLIP text model uses 1e-5",
                cfg.layer_norm_eps
            ),
        ));
    }
    if cfg.hidden_size == 0
        || cfg.num_attention_heads == 0
        || !cfg.hidden_size.is_multiple_of(cfg.num_attention_heads)
    {
        return Err(Error::bad_file(
            path,
            format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                cfg.hidden_size, cfg.num_attention_heads
            ),
        ));
    }
    if cfg.max_position_embeddings < 2 || cfg.vocab_size == 0 {
        return Err(Error::bad_file(
            path,
            "vocab_size must be > 0 and max_position_embeddings >= 2",
        ));
    }
    Ok(())
}

/// Refuses a pooling option: CLIP pools at the end-of-text token.
fn check_no_pooling(opts: &EncoderOptions) -> Result<()> {
    match opts.pooling {
        Some(p) => Err(Error::Config(format!(
            "text.pooling {p} does not apply to clip (it pools at the end-of-text token); \
             leave it unset"
        ))),
        None => Ok(()),
    }
}

/// The end-of-text token's id (`tokenizer_config.json`'s `eos_token`, by
/// default `<|endoftext|>`, else the config's `eos_token_id`), which must be
/// the tokenizer's largest id (see the module docs).
fn clip_eos_id(
    tokenizer: &Tokenizer,
    tok_config: &TokenizerConfig,
    config_eos: Option<i64>,
    tokenizer_path: &Path,
) -> Result<u32> {
    let eos_name = tok_config
        .token("eos_token")
        .unwrap_or_else(|| "<|endoftext|>".into());
    let eos_id = tokenizer
        .token_to_id(&eos_name)
        .or_else(|| config_eos.and_then(|i| u32::try_from(i).ok()))
        .ok_or_else(|| {
            Error::bad_file(
                tokenizer_path,
                format!("has no end-of-text token {eos_name:?}"),
            )
        })?;
    let top = max_token_id(tokenizer).unwrap_or(0);
    if eos_id != top {
        return Err(Error::bad_file(
            tokenizer_path,
            format!(
                "the end-of-text token {eos_name:?} has id {eos_id} but the largest id is \
                 {top}: CLIP pools at the largest id, which must be the end-of-text token"
            ),
        ));
    }
    Ok(eos_id)
}

/// The pad id: the tokenizer's padding id, else the id of
/// `tokenizer_config.json`'s `pad_token`, else the end-of-text id.
fn clip_pad_id(tokenizer: &Tokenizer, tok_config: &TokenizerConfig, eos_id: u32) -> u32 {
    tokenizer
        .get_padding()
        .map(|p| p.pad_id)
        .or_else(|| {
            tok_config
                .token("pad_token")
                .and_then(|t| tokenizer.token_to_id(&t))
        })
        .unwrap_or(eos_id)
}

/// The token-embedding tensor every CLIP text checkpoint has.
const TOKEN_EMBEDDING: &str = "embeddings.token_embedding.weight";

/// Loads the text transformer (`text_model.*` or bare tensors) and the
/// `text_projection` when the checkpoint has one, after checking the tensor
/// shapes against `cfg`.
fn load_clip_weights(
    weights: &Path,
    config_path: &Path,
    cfg: &HfClipTextConfig,
    device: &Device,
) -> Result<(ClipTextTransformer, Option<candle_nn::Linear>)> {
    let shapes = safetensors_shapes(weights)?;
    let prefix =
        weight_prefix(&shapes, TOKEN_EMBEDDING, &["text_model.", ""]).ok_or_else(|| {
            Error::bad_file(
                weights,
                format!("has no text_model.{TOKEN_EMBEDDING}: not a CLIP text checkpoint"),
            )
        })?;
    let has_projection = check_clip_shapes(&shapes, weights, config_path, prefix, cfg)?;
    let vb = var_builder(weights, device)?;
    let fits = |e| weights_misfit(weights, config_path, e);
    let text_vb = if prefix.is_empty() {
        vb.clone()
    } else {
        vb.pp("text_model")
    };
    let model = ClipTextTransformer::new(text_vb, &cfg.to_candle()).map_err(fits)?;
    let projection = has_projection
        .then(|| {
            candle_nn::linear_no_bias(
                cfg.hidden_size,
                cfg.projection_dim,
                vb.pp("text_projection"),
            )
        })
        .transpose()
        .map_err(fits)?;
    Ok((model, projection))
}

/// Checks the embedding, layer, layer-count and projection shapes of the
/// weights (text tensors under `prefix`) against `cfg`; returns whether the
/// checkpoint has a `text_projection`.
fn check_clip_shapes(
    shapes: &TensorShapes,
    weights: &Path,
    config_path: &Path,
    prefix: &str,
    cfg: &HfClipTextConfig,
) -> Result<bool> {
    let h = cfg.hidden_size;
    let checks = [
        (
            TOKEN_EMBEDDING,
            vec![cfg.vocab_size, h],
            "vocab_size × hidden_size",
        ),
        (
            "embeddings.position_embedding.weight",
            vec![cfg.max_position_embeddings, h],
            "max_position_embeddings × hidden_size",
        ),
        (
            "encoder.layers.0.mlp.fc1.weight",
            vec![cfg.intermediate_size, h],
            "intermediate_size × hidden_size",
        ),
    ];
    check_architecture(
        shapes,
        weights,
        config_path,
        prefix,
        &checks,
        cfg.num_hidden_layers,
        |n| format!("encoder.layers.{n}.mlp.fc1.weight"),
    )?;
    let has_projection = shapes.contains_key("text_projection.weight");
    if has_projection {
        check_shape(
            shapes,
            weights,
            "text_projection.weight",
            &[cfg.projection_dim, h],
            config_path,
            "projection_dim × hidden_size",
        )?;
    }
    Ok(has_projection)
}

/// The encoder's id: the folder's label, projection, normalisation, max
/// length and the digest of `files` and the weights.
fn clip_id(
    folder: &ModelFolder,
    files: &[&Path],
    weights: &Path,
    has_projection: bool,
    normalize: bool,
    max_len: usize,
) -> Result<String> {
    let digest = identity_digest(files, weights)?;
    Ok(format!(
        "clip-{}-eos-{}-{}-len{max_len}-{digest}",
        folder.label(),
        if has_projection { "proj" } else { "noproj" },
        if normalize { "l2" } else { "raw" },
    ))
}

/// A frozen CLIP text encoder loaded from a local folder (see the
/// [module docs](self) for the layout).
pub struct ClipTextEncoder {
    model: ClipTextTransformer,
    projection: Option<candle_nn::Linear>,
    tokenizer: Tokenizer,
    tokenizer_path: PathBuf,
    hidden_size: usize,
    dim: usize,
    eos_id: u32,
    pad_id: u32,
    normalize: bool,
    max_len: usize,
    batch_size: usize,
    device: Device,
    id: String,
    progress: bool,
}

impl std::fmt::Debug for ClipTextEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipTextEncoder")
            .field("id", &self.id)
            .field("dim", &self.dim)
            .field("device", &self.device)
            .finish()
    }
}

impl ClipTextEncoder {
    /// Loads the encoder in `folder` onto `device`. `opts.pooling` must be
    /// `None` (CLIP pools at the end-of-text token); `opts.normalize`
    /// (default off) and `opts.max_len` (default: the model's
    /// `max_position_embeddings`) apply. Missing files and a config that does
    /// not fit the weights or the tokenizer are errors naming the file.
    pub fn load(folder: impl AsRef<Path>, opts: &EncoderOptions, device: &Device) -> Result<Self> {
        check_no_pooling(opts)?;
        let folder = ModelFolder::open(folder.as_ref())?;
        let config_path = folder.require("config.json")?;
        let weights_path = folder.require("model.safetensors")?;
        let tokenizer_path = folder.require("tokenizer.json")?;
        let cfg = read_clip_config(&config_path)?;

        let mut tokenizer = load_tokenizer_json(&tokenizer_path)?;
        let tok_config = TokenizerConfig::read(&folder)?;
        let eos_id = clip_eos_id(&tokenizer, &tok_config, cfg.eos_token_id, &tokenizer_path)?;
        // the end-of-text id is the largest id (clip_eos_id checks it)
        check_vocab_covers(eos_id, cfg.vocab_size, &tokenizer_path, &config_path)?;
        let pad_id = clip_pad_id(&tokenizer, &tok_config, eos_id);
        let mpe = cfg.max_position_embeddings;
        let max_len = opts.max_len.unwrap_or(mpe);
        apply_max_len(&mut tokenizer, max_len, mpe, &config_path, &tokenizer_path)?;

        let (model, projection) = load_clip_weights(&weights_path, &config_path, &cfg, device)?;
        let has_projection = projection.is_some();
        let normalize = opts.normalize.unwrap_or(false);
        let mut digest_files = vec![config_path.as_path(), tokenizer_path.as_path()];
        digest_files.extend(tok_config.path.as_deref());
        let id = clip_id(
            &folder,
            &digest_files,
            &weights_path,
            has_projection,
            normalize,
            max_len,
        )?;
        Ok(ClipTextEncoder {
            model,
            projection,
            tokenizer,
            tokenizer_path,
            hidden_size: cfg.hidden_size,
            dim: if has_projection {
                cfg.projection_dim
            } else {
                cfg.hidden_size
            },
            eos_id,
            pad_id,
            normalize,
            max_len,
            batch_size: opts.batch_size.max(1),
            device: device.clone(),
            id,
            progress: true,
        })
    }

    /// Shows progress (a bar on a terminal, log lines otherwise) while
    /// encoding more than four batches; on by default.
    pub fn with_progress(mut self, on: bool) -> Self {
        self.progress = on;
        self
    }

    /// Whether the checkpoint's `text_projection` is applied.
    pub fn has_projection(&self) -> bool {
        self.projection.is_some()
    }

    /// Whether embeddings are L2-normalised.
    pub fn normalize(&self) -> bool {
        self.normalize
    }

    /// Captions are truncated to this many tokens (start and end tokens included).
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// The end-of-text token's id (the largest id).
    pub fn eos_id(&self) -> u32 {
        self.eos_id
    }

    /// The id batches are padded with: `tokenizer.json`'s padding id, else
    /// `tokenizer_config.json`'s `pad_token`, else the end-of-text id (the
    /// legacy `pad_token_id` 1 of OpenAI's configs is not what their
    /// tokenizers pad with). Padding never reaches the pooled state.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// The width of the transformer (before the projection).
    pub fn hidden_size(&self) -> usize {
        self.hidden_size
    }

    /// Token ids of each caption (`<|startoftext|> … <|endoftext|>`,
    /// truncated to [`max_len`](Self::max_len)).
    pub fn tokenize(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        tokenize(&self.tokenizer, texts, &self.tokenizer_path)
    }

    /// Pads token lists into one batch on this encoder's device.
    pub fn batch(&self, ids: &[Vec<u32>]) -> Result<TokenBatch> {
        TokenBatch::new(ids, self.pad_id, &self.device)
    }

    /// The final layer-normed hidden states `[batch, len, hidden_size]`
    /// (causal attention; no padding mask is needed, see the module docs).
    pub fn last_hidden_state(&self, batch: &TokenBatch) -> Result<Tensor> {
        Ok(self.model.forward_with_mask(&batch.input_ids, usize::MAX)?)
    }

    /// The position of the first end-of-text token of each row of `ids`.
    pub fn eos_positions(&self, ids: &[Vec<u32>]) -> Result<Vec<usize>> {
        ids.iter()
            .enumerate()
            .map(|(i, row)| {
                row.iter().position(|&t| t == self.eos_id).ok_or_else(|| {
                    Error::bad_file(
                        &self.tokenizer_path,
                        format!(
                            "caption {i} has no end-of-text token (id {}): the tokenizer must \
                             append it",
                            self.eos_id
                        ),
                    )
                })
            })
            .collect()
    }

    /// The hidden state at the end-of-text token `[batch, hidden_size]`
    /// (Hugging Face's `pooler_output`).
    pub fn pooled(&self, ids: &[Vec<u32>]) -> Result<Tensor> {
        let pos = self.eos_positions(ids)?;
        let batch = self.batch(ids)?;
        let hidden = self.last_hidden_state(&batch)?;
        let len = hidden.dim(1)?;
        let flat_index: Vec<u32> = pos
            .iter()
            .enumerate()
            .map(|(b, &p)| (b * len + p) as u32)
            .collect();
        let index = Tensor::new(flat_index.as_slice(), &self.device)?;
        let flat = hidden.flatten_to(1)?;
        Ok(flat.index_select(&index, 0)?)
    }

    /// The embeddings `[batch, dim]` of one batch of token lists: pooled,
    /// projected when the checkpoint has a projection, normalised when asked.
    pub fn embed_tokens(&self, ids: &[Vec<u32>]) -> Result<Tensor> {
        let pooled = self.pooled(ids)?;
        let out = match &self.projection {
            Some(p) => p.forward(&pooled)?,
            None => pooled,
        };
        if self.normalize {
            l2_normalize(&out)
        } else {
            Ok(out)
        }
    }
}

impl TextEncoder for ClipTextEncoder {
    fn id(&self) -> String {
        self.id.clone()
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn encode(&self, texts: &[&str]) -> Result<Tensor> {
        let ids = self.tokenize(texts)?;
        encode_batched(
            &ids,
            self.dim,
            self.batch_size,
            self.progress,
            &self.id,
            |rows| self.embed_tokens(rows),
        )
    }
}
