//! The BERT family as a frozen sentence encoder: BERT (Devlin et al., 2019,
//! "BERT: Pre-training of Deep Bidirectional Transformers for Language
//! Understanding", `bert-base-uncased`, the paper's text encoder) and the
//! sentence-transformers checkpoints built on it (Reimers & Gurevych, 2019,
//! "Sentence-BERT"; `all-MiniLM-L6-v2`, a 6-layer MiniLM, Wang et al., 2020).
//!
//! The network is `candle_transformers::models::bert`; the tokenizer is a
//! `tokenizer.json` read by the `tokenizers` crate (or a WordPiece tokenizer
//! built from `vocab.txt`). Everything is read from a local folder:
//!
//! ```text
//! my-bert/
//!   config.json          Hugging Face BertConfig
//!   model.safetensors    BertModel weights, with or without a `bert.` prefix
//!   tokenizer.json       (or vocab.txt [+ tokenizer_config.json: do_lower_case])
//!   modules.json         optional, sentence-transformers layout:
//!   1_Pooling/config.json    its pooling mode (cls or mean)
//!   sentence_bert_config.json  its max_seq_length (optional)
//! ```
//!
//! A sentence-transformers folder may keep the transformer in a sub-folder
//! (the `path` of its `Transformer` module in `modules.json`).
//!
//! Pooling: `cls` (the last layer's `[CLS]` vector, the paper's setup for
//! `bert-base-uncased`) or `mean` (the attention-masked mean over tokens, as
//! sentence-transformers does for `all-MiniLM-L6-v2`), optionally
//! L2-normalised. Defaults come from the folder: a sentence-transformers
//! folder's pooling mode and `Normalize` module, else `cls` without
//! normalisation; [`EncoderOptions`] overrides them.
//!
//! The encoder is frozen: candle-transformers' BERT uses candle's fused
//! layer norm, which has no backward pass. That is fine here (captions are
//! encoded once, no gradient flows into the encoder), but this network must
//! not be reused for anything trained.

use super::checkpoint::{
    apply_max_len, check_architecture, check_vocab_covers, encode_batched, identity_digest,
    l2_normalize, load_tokenizer_json, masked_mean, max_token_id, safetensors_shapes, tokenize,
    var_builder, weight_prefix, weights_misfit, ModelFolder, TensorShapes, TokenBatch,
    TokenizerConfig,
};
use super::{EncoderOptions, Pooling, TextEncoder};
use crate::error::{Error, Result};
use crate::io::read_json;
use candle_core::{Device, IndexOp, Tensor};
use candle_transformers::models::bert::{self, BertModel, HiddenAct};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use tokenizers::Tokenizer;

/// The max length when neither the options nor the folder give one (capped
/// at the model's `max_position_embeddings`).
pub const DEFAULT_MAX_LEN: usize = 128;

/// The fields of a Hugging Face `BertConfig` this encoder reads, with
/// `transformers`' defaults for the missing ones.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
struct HfBertConfig {
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    hidden_act: String,
    max_position_embeddings: usize,
    type_vocab_size: usize,
    layer_norm_eps: f64,
    pad_token_id: Option<usize>,
    position_embedding_type: Option<String>,
    model_type: Option<String>,
}

impl Default for HfBertConfig {
    fn default() -> Self {
        HfBertConfig {
            vocab_size: 30522,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            hidden_act: "gelu".into(),
            max_position_embeddings: 512,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            pad_token_id: Some(0),
            position_embedding_type: None,
            model_type: None,
        }
    }
}

impl HfBertConfig {
    /// Reads `config.json` and converts it to candle-transformers' config.
    fn read(path: &Path) -> Result<bert::Config> {
        let hf: HfBertConfig = read_json(path)?;
        hf.to_candle(path)
    }

    /// candle-transformers' config, or an error naming `path`.
    fn to_candle(&self, path: &Path) -> Result<bert::Config> {
        let hidden_act = self.check(path)?;
        Ok(bert::Config {
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: self.num_attention_heads,
            intermediate_size: self.intermediate_size,
            hidden_act,
            hidden_dropout_prob: 0.0,
            max_position_embeddings: self.max_position_embeddings,
            type_vocab_size: self.type_vocab_size,
            initializer_range: 0.02,
            layer_norm_eps: self.layer_norm_eps,
            pad_token_id: self.pad_token_id.unwrap_or(0),
            position_embedding_type: bert::PositionEmbeddingType::Absolute,
            use_cache: false,
            classifier_dropout: None,
            model_type: Some("bert".into()),
        })
    }

    /// Checks the fields candle-transformers' BERT supports; returns its activation.
    fn check(&self, path: &Path) -> Result<HiddenAct> {
        let bad = |m: String| Err(Error::bad_file(path, m));
        if let Some(t) = &self.model_type {
            if t != "bert" {
                return bad(format!(
                    "model_type {t:?}: the BERT encoder reads BERT checkpoints (model_type \"bert\")"
                ));
            }
        }
        if let Some(p) = &self.position_embedding_type {
            if p != "absolute" {
                return bad(format!(
                    "position_embedding_type {p:?} is not supported (only \"absolute\")"
                ));
            }
        }
        let hidden_act = match self.hidden_act.as_str() {
            "gelu" => HiddenAct::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" => HiddenAct::GeluApproximate,
            "relu" => HiddenAct::Relu,
            other => {
                return bad(format!(
                "hidden_act {other:?} is not supported (gelu, gelu_new, gelu_pytorch_tanh, relu)"
            ))
            }
        };
        if self.hidden_size == 0
            || self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return bad(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if self.max_position_embeddings == 0 || self.vocab_size == 0 {
            return bad("vocab_size and max_position_embeddings must be > 0".into());
        }
        Ok(hidden_act)
    }
}

/// What a sentence-transformers folder says (`modules.json` and the files it
/// points to).
#[derive(Debug, Clone)]
struct SentenceTransformersLayout {
    /// Folder of the transformer module (config, weights, tokenizer).
    model_dir: PathBuf,
    pooling: Pooling,
    normalize: bool,
    max_seq_length: Option<usize>,
    /// The files read (for the identity digest).
    files: Vec<PathBuf>,
}

#[derive(Debug, Deserialize)]
struct StModule {
    #[serde(default)]
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

/// Reads `modules.json` and its pooling config when the folder has them.
fn sentence_transformers_layout(
    folder: &ModelFolder,
) -> Result<Option<SentenceTransformersLayout>> {
    let Some(modules_path) = folder.optional("modules.json") else {
        return Ok(None);
    };
    let modules: Vec<StModule> = read_json(&modules_path)?;
    let mut model_dir = None;
    let mut pooling = None;
    let mut normalize = false;
    let mut files = vec![modules_path.clone()];
    for m in &modules {
        let kind = m.kind.rsplit('.').next().unwrap_or_default();
        match kind {
            "Transformer" => model_dir = Some(folder.root.join(&m.path)),
            "Pooling" => {
                let cfg = folder.require(&format!("{}/config.json", m.path))?;
                pooling = Some(read_st_pooling(&cfg)?);
                files.push(cfg);
            }
            "Normalize" => normalize = true,
            _ => {
                return Err(Error::bad_file(
                    &modules_path,
                    format!(
                        "module {:?} is not supported (Transformer, Pooling and Normalize are)",
                        m.kind
                    ),
                ))
            }
        }
    }
    let missing = |module: &str| {
        Error::bad_file(
            &modules_path,
            format!("lists no sentence_transformers {module} module"),
        )
    };
    let model_dir = model_dir.ok_or_else(|| missing("Transformer"))?;
    let pooling = pooling.ok_or_else(|| missing("Pooling"))?;
    let max_seq_length = read_max_seq_length(&model_dir, &mut files)?;
    Ok(Some(SentenceTransformersLayout {
        model_dir,
        pooling,
        normalize,
        max_seq_length,
        files,
    }))
}

/// The `max_seq_length` of `sentence_bert_config.json` in `model_dir`, when
/// that file is there (then added to `files`).
fn read_max_seq_length(model_dir: &Path, files: &mut Vec<PathBuf>) -> Result<Option<usize>> {
    let st_cfg = model_dir.join("sentence_bert_config.json");
    if !st_cfg.is_file() {
        return Ok(None);
    }
    let v: serde_json::Value = read_json(&st_cfg)?;
    files.push(st_cfg);
    Ok(v.get("max_seq_length")
        .and_then(|x| x.as_u64())
        .map(|x| x as usize))
}

/// The pooling mode of a sentence-transformers `1_Pooling/config.json`.
fn read_st_pooling(path: &Path) -> Result<Pooling> {
    let v: serde_json::Value = read_json(path)?;
    if let Some(mode) = v.get("pooling_mode").and_then(|m| m.as_str()) {
        return match mode {
            "cls" => Ok(Pooling::Cls),
            "mean" => Ok(Pooling::Mean),
            other => Err(Error::bad_file(
                path,
                format!("pooling_mode {other:?} is not supported (cls or mean)"),
            )),
        };
    }
    let on: Vec<&str> = v
        .as_object()
        .map(|o| {
            o.iter()
                .filter(|(k, x)| k.starts_with("pooling_mode_") && x.as_bool() == Some(true))
                .map(|(k, _)| k.as_str())
                .collect()
        })
        .unwrap_or_default();
    match on.as_slice() {
        ["pooling_mode_cls_token"] => Ok(Pooling::Cls),
        ["pooling_mode_mean_tokens"] => Ok(Pooling::Mean),
        _ => Err(Error::bad_file(
            path,
            format!(
                "pooling modes {on:?} are not supported: exactly one of \
                 pooling_mode_cls_token or pooling_mode_mean_tokens must be true"
            ),
        )),
    }
}

/// A BERT WordPiece tokenizer from `vocab.txt` (as `BertTokenizerFast`
/// builds it: BERT normaliser with optional lowercasing and accent
/// stripping, BERT pre-tokeniser, `[CLS] … [SEP]`).
fn wordpiece_tokenizer(vocab: &Path, lowercase: bool) -> Result<Tokenizer> {
    use tokenizers::models::wordpiece::WordPiece;
    use tokenizers::normalizers::BertNormalizer;
    use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
    use tokenizers::processors::bert::BertProcessing;
    use tokenizers::{AddedToken, Model};
    let bad = |m: String| Error::bad_file(vocab, m);
    let wp = WordPiece::from_file(&vocab.to_string_lossy())
        .unk_token("[UNK]".into())
        .build()
        .map_err(|e| bad(format!("cannot read WordPiece vocabulary: {e}")))?;
    let id = |t: &str| {
        wp.token_to_id(t)
            .ok_or_else(|| bad(format!("has no {t} token")))
    };
    let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
    id("[UNK]")?;
    let mut tok = Tokenizer::new(wp);
    tok.with_normalizer(Some(BertNormalizer::new(true, true, None, lowercase)))
        .map_err(|e| bad(e.to_string()))?;
    tok.with_pre_tokenizer(Some(BertPreTokenizer));
    tok.with_post_processor(Some(BertProcessing::new(
        ("[SEP]".into(), sep),
        ("[CLS]".into(), cls),
    )));
    let specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .iter()
        .filter(|t| tok.token_to_id(t).is_some())
        .map(|t| AddedToken::from(*t, true))
        .collect::<Vec<_>>();
    tok.add_special_tokens(specials)
        .map_err(|e| bad(e.to_string()))?;
    Ok(tok)
}

/// Loads `tokenizer.json`, else builds a WordPiece tokenizer from
/// `vocab.txt`; returns it with the file it was read from.
fn load_bert_tokenizer(
    folder: &ModelFolder,
    tok_config: &TokenizerConfig,
) -> Result<(Tokenizer, PathBuf)> {
    if let Some(path) = folder.optional("tokenizer.json") {
        return Ok((load_tokenizer_json(&path)?, path));
    }
    let vocab = folder.optional("vocab.txt").ok_or_else(|| {
        Error::Config(format!(
            "text encoder folder {} has no tokenizer.json (nor vocab.txt)",
            folder.root.display()
        ))
    })?;
    let lowercase = tok_config.flag("do_lower_case").unwrap_or(true);
    Ok((wordpiece_tokenizer(&vocab, lowercase)?, vocab))
}

/// The pad id: the tokenizer's padding id, else the id of
/// `tokenizer_config.json`'s `pad_token` (default `[PAD]`), else `fallback`.
fn bert_pad_id(tokenizer: &Tokenizer, tok_config: &TokenizerConfig, fallback: usize) -> u32 {
    tokenizer
        .get_padding()
        .map(|p| p.pad_id)
        .or_else(|| {
            let name = tok_config
                .token("pad_token")
                .unwrap_or_else(|| "[PAD]".into());
            tokenizer.token_to_id(&name)
        })
        .unwrap_or(fallback as u32)
}

/// The max length: the options', else the folder's `max_seq_length` (else
/// [`DEFAULT_MAX_LEN`]) capped at `max_position_embeddings`.
fn resolve_max_len(
    opts: &EncoderOptions,
    st: Option<&SentenceTransformersLayout>,
    max_position_embeddings: usize,
) -> usize {
    match opts.max_len {
        Some(m) => m,
        None => st
            .and_then(|s| s.max_seq_length)
            .unwrap_or(DEFAULT_MAX_LEN)
            .min(max_position_embeddings),
    }
}

/// Pooling and normalisation: the options', else the sentence-transformers
/// folder's, else `cls` without normalisation.
fn resolve_pooling(
    opts: &EncoderOptions,
    st: Option<&SentenceTransformersLayout>,
) -> (Pooling, bool) {
    let pooling = opts
        .pooling
        .or(st.map(|s| s.pooling))
        .unwrap_or(Pooling::Cls);
    let normalize = opts.normalize.or(st.map(|s| s.normalize)).unwrap_or(false);
    (pooling, normalize)
}

/// The word-embedding tensor every BERT checkpoint has.
const WORD_EMBEDDINGS: &str = "embeddings.word_embeddings.weight";

/// Loads the `BertModel` from `weights` (with or without the `bert.` prefix)
/// after checking its tensor shapes against `config`.
fn load_bert_weights(
    weights: &Path,
    config_path: &Path,
    config: &bert::Config,
    device: &Device,
) -> Result<BertModel> {
    let shapes = safetensors_shapes(weights)?;
    let prefix = weight_prefix(&shapes, WORD_EMBEDDINGS, &["", "bert."]).ok_or_else(|| {
        Error::bad_file(
            weights,
            format!(
                "has neither {WORD_EMBEDDINGS} nor bert.{WORD_EMBEDDINGS}: not a BERT checkpoint"
            ),
        )
    })?;
    check_bert_shapes(&shapes, weights, config_path, prefix, config)?;
    let vb = var_builder(weights, device)?;
    let vb = if prefix.is_empty() { vb } else { vb.pp("bert") };
    BertModel::load(vb, config).map_err(|e| weights_misfit(weights, config_path, e))
}

/// Checks the embedding, layer and layer-count shapes of the weights
/// (tensors under `prefix`) against `config`.
fn check_bert_shapes(
    shapes: &TensorShapes,
    weights: &Path,
    config_path: &Path,
    prefix: &str,
    config: &bert::Config,
) -> Result<()> {
    let h = config.hidden_size;
    let checks = [
        (
            WORD_EMBEDDINGS,
            vec![config.vocab_size, h],
            "vocab_size × hidden_size",
        ),
        (
            "embeddings.position_embeddings.weight",
            vec![config.max_position_embeddings, h],
            "max_position_embeddings × hidden_size",
        ),
        (
            "embeddings.token_type_embeddings.weight",
            vec![config.type_vocab_size, h],
            "type_vocab_size × hidden_size",
        ),
        (
            "encoder.layer.0.intermediate.dense.weight",
            vec![config.intermediate_size, h],
            "intermediate_size × hidden_size",
        ),
    ];
    check_architecture(
        shapes,
        weights,
        config_path,
        prefix,
        &checks,
        config.num_hidden_layers,
        |n| format!("encoder.layer.{n}.output.dense.weight"),
    )
}

/// The encoder's id: the folder's label, pooling, normalisation, max length
/// and the digest of `files` and the weights.
fn bert_id(
    root: &ModelFolder,
    files: &[PathBuf],
    weights: &Path,
    pooling: Pooling,
    normalize: bool,
    max_len: usize,
) -> Result<String> {
    let paths: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let digest = identity_digest(&paths, weights)?;
    Ok(format!(
        "bert-{}-{pooling}-{}-len{max_len}-{digest}",
        root.label(),
        if normalize { "l2" } else { "raw" },
    ))
}

/// A frozen BERT-family sentence encoder loaded from a local folder (see the
/// [module docs](self) for the layout).
pub struct BertEncoder {
    model: BertModel,
    tokenizer: Tokenizer,
    tokenizer_path: PathBuf,
    hidden_size: usize,
    pooling: Pooling,
    normalize: bool,
    max_len: usize,
    batch_size: usize,
    pad_id: u32,
    device: Device,
    id: String,
    progress: bool,
}

impl std::fmt::Debug for BertEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BertEncoder")
            .field("id", &self.id)
            .field("hidden_size", &self.hidden_size)
            .field("device", &self.device)
            .finish()
    }
}

impl BertEncoder {
    /// Loads the encoder in `folder` onto `device`; `opts` override the
    /// folder's defaults (pooling, normalisation, max length). Missing files
    /// and a config that does not fit the weights or the tokenizer are errors
    /// naming the file.
    pub fn load(folder: impl AsRef<Path>, opts: &EncoderOptions, device: &Device) -> Result<Self> {
        let root = ModelFolder::open(folder.as_ref())?;
        let st = sentence_transformers_layout(&root)?;
        let folder = match &st {
            Some(s) => ModelFolder::open(&s.model_dir)?,
            None => root.clone(),
        };
        let config_path = folder.require("config.json")?;
        let weights_path = folder.require("model.safetensors")?;
        let config = HfBertConfig::read(&config_path)?;

        let tok_config = TokenizerConfig::read(&folder)?;
        let (mut tokenizer, tokenizer_path) = load_bert_tokenizer(&folder, &tok_config)?;
        let top = max_token_id(&tokenizer).unwrap_or(0);
        check_vocab_covers(top, config.vocab_size, &tokenizer_path, &config_path)?;
        let mpe = config.max_position_embeddings;
        let max_len = resolve_max_len(opts, st.as_ref(), mpe);
        apply_max_len(&mut tokenizer, max_len, mpe, &config_path, &tokenizer_path)?;
        let pad_id = bert_pad_id(&tokenizer, &tok_config, config.pad_token_id);

        let model = load_bert_weights(&weights_path, &config_path, &config, device)?;
        let (pooling, normalize) = resolve_pooling(opts, st.as_ref());
        let mut digest_files = vec![config_path, tokenizer_path.clone()];
        digest_files.extend(tok_config.path);
        digest_files.extend(st.into_iter().flat_map(|s| s.files));
        let id = bert_id(
            &root,
            &digest_files,
            &weights_path,
            pooling,
            normalize,
            max_len,
        )?;
        Ok(BertEncoder {
            model,
            tokenizer,
            tokenizer_path,
            hidden_size: config.hidden_size,
            pooling,
            normalize,
            max_len,
            batch_size: opts.batch_size.max(1),
            pad_id,
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

    /// The pooling in use.
    pub fn pooling(&self) -> Pooling {
        self.pooling
    }

    /// Whether embeddings are L2-normalised.
    pub fn normalize(&self) -> bool {
        self.normalize
    }

    /// Captions are truncated to this many tokens (`[CLS]` and `[SEP]` included).
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// The id batches are padded with (the mask hides it from the model).
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// Token ids of each caption (`[CLS] … [SEP]`, truncated to [`max_len`](Self::max_len)).
    pub fn tokenize(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        tokenize(&self.tokenizer, texts, &self.tokenizer_path)
    }

    /// Pads token lists into one batch on this encoder's device.
    pub fn batch(&self, ids: &[Vec<u32>]) -> Result<TokenBatch> {
        TokenBatch::new(ids, self.pad_id, &self.device)
    }

    /// The last layer's hidden states `[batch, len, hidden_size]`.
    pub fn last_hidden_state(&self, batch: &TokenBatch) -> Result<Tensor> {
        let token_types = batch.input_ids.zeros_like()?;
        Ok(self
            .model
            .forward(&batch.input_ids, &token_types, Some(&batch.attention_mask))?)
    }

    /// Pools hidden states `[batch, len, hidden]` with `pooling` (and
    /// normalises them when `normalize`).
    pub fn pool(
        hidden: &Tensor,
        batch: &TokenBatch,
        pooling: Pooling,
        normalize: bool,
    ) -> Result<Tensor> {
        let pooled = match pooling {
            Pooling::Cls => hidden.i((.., 0))?.contiguous()?,
            Pooling::Mean => masked_mean(hidden, &batch.attention_mask)?,
        };
        if normalize {
            l2_normalize(&pooled)
        } else {
            Ok(pooled)
        }
    }

    /// The embeddings `[batch, hidden_size]` of one batch of token lists.
    pub fn embed_tokens(&self, ids: &[Vec<u32>]) -> Result<Tensor> {
        let batch = self.batch(ids)?;
        let hidden = self.last_hidden_state(&batch)?;
        Self::pool(&hidden, &batch, self.pooling, self.normalize)
    }
}

impl TextEncoder for BertEncoder {
    fn id(&self) -> String {
        self.id.clone()
    }

    fn dim(&self) -> usize {
        self.hidden_size
    }

    fn encode(&self, texts: &[&str]) -> Result<Tensor> {
        let ids = self.tokenize(texts)?;
        encode_batched(
            &ids,
            self.hidden_size,
            self.batch_size,
            self.progress,
            &self.id,
            |rows| self.embed_tokens(rows),
        )
    }
}
