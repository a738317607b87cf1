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
    check_architecture, check_shape, configure_tokenizer, encode_batched, identity_digest,
    l2_normalize, load_tokenizer_json, max_token_id, safetensors_shapes, token_string, tokenize,
    var_builder, ModelFolder, TokenBatch,
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

/// Reads `config.json`: a CLIPTextConfig, or a CLIPConfig whose
/// `text_config` it takes (with the top-level `projection_dim`).
fn read_clip_config(path: &Path) -> Result<HfClipTextConfig> {
    let v: serde_json::Value = read_json(path)?;
    let parse = |v: serde_json::Value| {
        serde_json::from_value::<HfClipTextConfig>(v).map_err(|e| Error::Json {
            path: path.into(),
            message: e.to_string(),
        })
    };
    let mut cfg = match v.get("text_config") {
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
            c
        }
        _ => parse(v)?,
    };
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
    cfg.model_type = None;
    Ok(cfg)
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
        if let Some(p) = opts.pooling {
            return Err(Error::Config(format!(
                "text.pooling {p} does not apply to clip (it pools at the end-of-text token); \
                 leave it unset"
            )));
        }
        let folder = ModelFolder::open(folder.as_ref())?;
        let config_path = folder.require("config.json")?;
        let weights_path = folder.require("model.safetensors")?;
        let tokenizer_path = folder.require("tokenizer.json")?;
        let cfg = read_clip_config(&config_path)?;
        let mut tokenizer = load_tokenizer_json(&tokenizer_path)?;
        let tok_config_path = folder.optional("tokenizer_config.json");
        let tok_config: Option<serde_json::Value> =
            tok_config_path.as_deref().map(read_json).transpose()?;
        let special = |key: &str| {
            tok_config
                .as_ref()
                .and_then(|c| c.get(key))
                .and_then(token_string)
        };

        // the end-of-text token must be the largest id (see the module docs)
        let eos_name = special("eos_token").unwrap_or_else(|| "<|endoftext|>".into());
        let eos_id = tokenizer
            .token_to_id(&eos_name)
            .or_else(|| cfg.eos_token_id.and_then(|i| u32::try_from(i).ok()))
            .ok_or_else(|| {
                Error::bad_file(
                    &tokenizer_path,
                    format!("has no end-of-text token {eos_name:?}"),
                )
            })?;
        let top = max_token_id(&tokenizer).unwrap_or(0);
        if eos_id != top {
            return Err(Error::bad_file(
                &tokenizer_path,
                format!(
                    "the end-of-text token {eos_name:?} has id {eos_id} but the largest id is \
                     {top}: CLIP pools at the largest id, which must be the end-of-text token"
                ),
            ));
        }
        if top as usize >= cfg.vocab_size {
            return Err(Error::bad_file(
                &tokenizer_path,
                format!(
                    "token ids go up to {top} but {}'s vocab_size is {} (the model has no \
                     embedding for them)",
                    config_path.display(),
                    cfg.vocab_size
                ),
            ));
        }
        let pad_id = tokenizer
            .get_padding()
            .map(|p| p.pad_id)
            .or_else(|| special("pad_token").and_then(|t| tokenizer.token_to_id(&t)))
            .unwrap_or(eos_id);

        let mpe = cfg.max_position_embeddings;
        let max_len = opts.max_len.unwrap_or(mpe);
        if max_len < 2 || max_len > mpe {
            return Err(Error::Config(format!(
                "text.max_len {max_len} must be in 2..={mpe} (max_position_embeddings of {})",
                config_path.display()
            )));
        }
        configure_tokenizer(&mut tokenizer, max_len, &tokenizer_path)?;

        // weights: `text_model.*` (or bare), optional text_projection
        let shapes = safetensors_shapes(&weights_path)?;
        let tok = "embeddings.token_embedding.weight";
        let prefix = if shapes.contains_key(&format!("text_model.{tok}")) {
            "text_model."
        } else if shapes.contains_key(tok) {
            ""
        } else {
            return Err(Error::bad_file(
                &weights_path,
                format!("has no text_model.{tok}: not a CLIP text checkpoint"),
            ));
        };
        let h = cfg.hidden_size;
        let checks = [
            (tok, vec![cfg.vocab_size, h], "vocab_size × hidden_size"),
            (
                "embeddings.position_embedding.weight",
                vec![mpe, h],
                "max_position_embeddings × hidden_size",
            ),
            (
                "encoder.layers.0.mlp.fc1.weight",
                vec![cfg.intermediate_size, h],
                "intermediate_size × hidden_size",
            ),
        ];
        check_architecture(
            &shapes,
            &weights_path,
            &config_path,
            prefix,
            &checks,
            cfg.num_hidden_layers,
            |n| format!("encoder.layers.{n}.mlp.fc1.weight"),
        )?;
        let has_projection = shapes.contains_key("text_projection.weight");
        if has_projection {
            check_shape(
                &shapes,
                &weights_path,
                "text_projection.weight",
                &[cfg.projection_dim, h],
                &config_path,
                "projection_dim × hidden_size",
            )?;
        }

        let candle_cfg = ClipTextConfig {
            vocab_size: cfg.vocab_size,
            embed_dim: h,
            activation: Activation::QuickGelu,
            intermediate_size: cfg.intermediate_size,
            max_position_embeddings: mpe,
            pad_with: None,
            num_hidden_layers: cfg.num_hidden_layers,
            num_attention_heads: cfg.num_attention_heads,
            projection_dim: cfg.projection_dim,
        };
        let vb = var_builder(&weights_path, device)?;
        let fits = |e: candle_core::Error| {
            Error::bad_file(
                &weights_path,
                format!("does not fit {}: {e}", config_path.display()),
            )
        };
        let text_vb = if prefix.is_empty() {
            vb.clone()
        } else {
            vb.pp("text_model")
        };
        let model = ClipTextTransformer::new(text_vb, &candle_cfg).map_err(fits)?;
        let projection = has_projection
            .then(|| candle_nn::linear_no_bias(h, cfg.projection_dim, vb.pp("text_projection")))
            .transpose()
            .map_err(fits)?;
        let dim = if has_projection {
            cfg.projection_dim
        } else {
            h
        };

        let normalize = opts.normalize.unwrap_or(false);
        let mut digest_files = vec![config_path.as_path(), tokenizer_path.as_path()];
        digest_files.extend(tok_config_path.as_deref());
        let digest = identity_digest(&digest_files, &weights_path)?;
        let id = format!(
            "clip-{}-eos-{}-{}-len{max_len}-{digest}",
            folder.label(),
            if has_projection { "proj" } else { "noproj" },
            if normalize { "l2" } else { "raw" },
        );
        Ok(ClipTextEncoder {
            model,
            projection,
            tokenizer,
            tokenizer_path,
            hidden_size: h,
            dim,
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
