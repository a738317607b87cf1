//! What the checkpoint encoders ([`BertEncoder`](super::BertEncoder),
//! [`ClipTextEncoder`](super::ClipTextEncoder)) share: the model folder and
//! its files, the identity digest, the tokenizer set-up, padded token
//! batches, pooling helpers and the batched encoding loop.

use crate::error::{Error, Result};
use crate::io::read_json;
use crate::progress::Progress;
use candle_core::{DType, Device, Tensor, D};
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use tokenizers::{Tokenizer, TruncationParams};

/// How much of the weights file enters the identity digest at each end.
pub(crate) const DIGEST_EDGE: u64 = 1 << 20;

/// Tensor shapes by name, as read from a safetensors header.
pub(crate) type TensorShapes = HashMap<String, Vec<usize>>;

/// A local model folder (no hub: everything is read from disk).
#[derive(Debug, Clone)]
pub(crate) struct ModelFolder {
    /// The folder.
    pub root: PathBuf,
}

impl ModelFolder {
    /// The folder at `path`, which must exist.
    pub fn open(path: &Path) -> Result<Self> {
        if !path.is_dir() {
            let hint = if path.ends_with(crate::config::MINILM_DIR) {
                format!(" (run {} to fetch it)", crate::config::MINILM_FETCH_SCRIPT)
            } else {
                String::new()
            };
            return Err(Error::Config(format!(
                "text encoder folder {} does not exist (or is not a folder){hint}",
                path.display()
            )));
        }
        Ok(ModelFolder {
            root: path.to_path_buf(),
        })
    }

    /// `name` inside the folder, when it is there.
    pub fn optional(&self, name: &str) -> Option<PathBuf> {
        let p = self.root.join(name);
        p.is_file().then_some(p)
    }

    /// `name` inside the folder, or an error naming the folder and the file.
    pub fn require(&self, name: &str) -> Result<PathBuf> {
        self.optional(name).ok_or_else(|| {
            let hint =
                if name == "model.safetensors" && self.optional("pytorch_model.bin").is_some() {
                    " (it has pytorch_model.bin: convert it to safetensors first)"
                } else {
                    ""
                };
            Error::Config(format!(
                "text encoder folder {} has no {name}{hint}",
                self.root.display()
            ))
        })
    }

    /// A short readable name for identities (the folder's name, sanitised).
    pub fn label(&self) -> String {
        let name = self
            .root
            .canonicalize()
            .unwrap_or_else(|_| self.root.clone())
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let clean: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(40)
            .collect();
        if clean.is_empty() {
            "model".into()
        } else {
            clean
        }
    }
}

/// A folder's optional `tokenizer_config.json`: its path and its contents.
#[derive(Debug, Clone, Default)]
pub(crate) struct TokenizerConfig {
    /// The file, when the folder has one (it enters the identity digest).
    pub path: Option<PathBuf>,
    value: Option<serde_json::Value>,
}

impl TokenizerConfig {
    /// Reads the folder's `tokenizer_config.json`, when it has one.
    pub fn read(folder: &ModelFolder) -> Result<Self> {
        let path = folder.optional("tokenizer_config.json");
        let value = path.as_deref().map(read_json).transpose()?;
        Ok(TokenizerConfig { path, value })
    }

    /// The special token named by `key` (e.g. `"pad_token"`), as a string.
    pub fn token(&self, key: &str) -> Option<String> {
        self.value.as_ref()?.get(key).and_then(token_string)
    }

    /// The boolean under `key` (e.g. `"do_lower_case"`).
    pub fn flag(&self, key: &str) -> Option<bool> {
        self.value.as_ref()?.get(key)?.as_bool()
    }
}

/// A string token in a `tokenizer_config.json` (`"[PAD]"` or
/// `{"content": "[PAD]", ...}`).
pub(crate) fn token_string(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

/// The digest of everything the embeddings depend on: the small files in
/// full, and the weights file by its size and its first and last
/// [`DIGEST_EDGE`] bytes only, not the bytes in between: a different
/// checkpoint of the same architecture differs in its first bytes (the
/// safetensors header and the first tensors), and a fine-tuned one in its
/// last bytes too.
pub(crate) fn identity_digest(files: &[&Path], weights: &Path) -> Result<String> {
    let mut bytes = Vec::new();
    for f in files {
        let content = std::fs::read(f).map_err(|e| Error::io(f, e))?;
        bytes.extend((content.len() as u64).to_le_bytes());
        bytes.extend(content);
    }
    let mut file = std::fs::File::open(weights).map_err(|e| Error::io(weights, e))?;
    let len = file.metadata().map_err(|e| Error::io(weights, e))?.len();
    bytes.extend(len.to_le_bytes());
    let head = len.min(DIGEST_EDGE);
    let mut buf = vec![0u8; head as usize];
    file.read_exact(&mut buf)
        .map_err(|e| Error::io(weights, e))?;
    bytes.extend(&buf);
    let tail_start = len.saturating_sub(DIGEST_EDGE).max(head);
    if tail_start < len {
        file.seek(SeekFrom::Start(tail_start))
            .map_err(|e| Error::io(weights, e))?;
        let mut buf = vec![0u8; (len - tail_start) as usize];
        file.read_exact(&mut buf)
            .map_err(|e| Error::io(weights, e))?;
        bytes.extend(&buf);
    }
    Ok(crate::io::short_digest(&bytes))
}

/// The shapes of the tensors in a safetensors file, read from its header
/// only (no tensor data).
pub(crate) fn safetensors_shapes(path: &Path) -> Result<TensorShapes> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut n = [0u8; 8];
    file.read_exact(&mut n)
        .map_err(|_| Error::bad_file(path, "not a safetensors file (shorter than 8 bytes)"))?;
    let n = u64::from_le_bytes(n);
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    if n > len.saturating_sub(8) || n > 100 << 20 {
        return Err(Error::bad_file(
            path,
            format!("not a safetensors file (header of {n} bytes in a file of {len})"),
        ));
    }
    let mut header = vec![0u8; n as usize];
    file.read_exact(&mut header)
        .map_err(|e| Error::io(path, e))?;
    let value: serde_json::Value = serde_json::from_slice(&header)
        .map_err(|e| Error::bad_file(path, format!("bad safetensors header: {e}")))?;
    let obj = value
        .as_object()
        .ok_or_else(|| Error::bad_file(path, "bad safetensors header: not an object"))?;
    let mut shapes = TensorShapes::new();
    for (name, info) in obj {
        if name == "__metadata__" {
            continue;
        }
        let shape = info
            .get("shape")
            .and_then(|s| s.as_array())
            .and_then(|s| {
                s.iter()
                    .map(|d| d.as_u64().map(|d| d as usize))
                    .collect::<Option<Vec<_>>>()
            })
            .ok_or_else(|| {
                Error::bad_file(path, format!("bad safetensors header: no shape for {name}"))
            })?;
        shapes.insert(name.clone(), shape);
    }
    Ok(shapes)
}

/// Checks that tensor `name` has `want` as its shape, naming the file, the
/// config file and both shapes otherwise.
pub(crate) fn check_shape(
    shapes: &TensorShapes,
    weights: &Path,
    name: &str,
    want: &[usize],
    config: &Path,
    what: &str,
) -> Result<()> {
    match shapes.get(name) {
        None => Err(Error::bad_file(weights, format!("no tensor {name}"))),
        Some(got) if got.as_slice() != want => Err(Error::bad_file(
            weights,
            format!(
                "{name} has shape {got:?} but {} says {what} → {want:?}",
                config.display()
            ),
        )),
        Some(_) => Ok(()),
    }
}

/// The weights file (tensors named under `prefix`) against its config: each
/// `(name, shape, what the config calls it)` of `checks` must be there with
/// that shape (`encoder.*` ones only when the model has layers), and
/// `layer_key(num_layers)` — a tensor of the layer after the last — must not.
pub(crate) fn check_architecture(
    shapes: &TensorShapes,
    weights: &Path,
    config: &Path,
    prefix: &str,
    checks: &[(&str, Vec<usize>, &str)],
    num_layers: usize,
    layer_key: impl Fn(usize) -> String,
) -> Result<()> {
    for (name, want, what) in checks {
        if name.starts_with("encoder.") && num_layers == 0 {
            continue;
        }
        check_shape(
            shapes,
            weights,
            &format!("{prefix}{name}"),
            want,
            config,
            what,
        )?;
    }
    let extra = format!("{prefix}{}", layer_key(num_layers));
    if shapes.contains_key(&extra) {
        return Err(Error::bad_file(
            weights,
            format!(
                "has more than the {num_layers} layers {} gives (found {extra})",
                config.display()
            ),
        ));
    }
    Ok(())
}

/// The first of `prefixes` under which the weights have tensor `name`.
pub(crate) fn weight_prefix<'a>(
    shapes: &TensorShapes,
    name: &str,
    prefixes: &[&'a str],
) -> Option<&'a str> {
    prefixes
        .iter()
        .copied()
        .find(|p| shapes.contains_key(&format!("{p}{name}")))
}

/// The error for weights that candle cannot build the model of `config` from.
pub(crate) fn weights_misfit(weights: &Path, config: &Path, e: candle_core::Error) -> Error {
    Error::bad_file(weights, format!("does not fit {}: {e}", config.display()))
}

/// Loads the tensors of a safetensors file for a candle model (f32 on
/// `device`). The file is memory-mapped; candle copies every tensor out of
/// the map while the model is built, and the map is dropped with the
/// returned builder.
pub(crate) fn var_builder(path: &Path, device: &Device) -> Result<candle_nn::VarBuilder<'static>> {
    // SAFETY: the file is only read, and only while the model is built from
    // it; changing the file during that time is the caller's mistake, as for
    // any reader of a memory-mapped file.
    unsafe { candle_nn::VarBuilder::from_mmaped_safetensors(&[path], DType::F32, device) }
        .map_err(|e| Error::bad_file(path, format!("cannot read weights: {e}")))
}

/// Loads a `tokenizer.json`, naming the file on failure.
pub(crate) fn load_tokenizer_json(path: &Path) -> Result<Tokenizer> {
    Tokenizer::from_file(path)
        .map_err(|e| Error::bad_file(path, format!("cannot read tokenizer: {e}")))
}

/// Sets truncation to `max_len` tokens (special tokens included) and turns
/// padding off (batches are padded by [`TokenBatch`]).
pub(crate) fn configure_tokenizer(tok: &mut Tokenizer, max_len: usize, path: &Path) -> Result<()> {
    tok.with_padding(None);
    tok.with_truncation(Some(TruncationParams {
        max_length: max_len,
        ..Default::default()
    }))
    .map_err(|e| Error::bad_file(path, format!("cannot truncate to {max_len} tokens: {e}")))?;
    Ok(())
}

/// The largest token id the tokenizer can produce (added tokens included).
pub(crate) fn max_token_id(tok: &Tokenizer) -> Option<u32> {
    tok.get_vocab(true).values().copied().max()
}

/// Checks that token ids up to `top` have an embedding row, i.e. are below
/// the `vocab_size` of the model config.
pub(crate) fn check_vocab_covers(
    top: u32,
    vocab_size: usize,
    tokenizer: &Path,
    config: &Path,
) -> Result<()> {
    if top as usize >= vocab_size {
        return Err(Error::bad_file(
            tokenizer,
            format!(
                "token ids go up to {top} but {}'s vocab_size is {vocab_size} (the model has \
                 no embedding for them)",
                config.display()
            ),
        ));
    }
    Ok(())
}

/// Checks `max_len` against the model's `max_position_embeddings` (`mpe`)
/// and configures the tokenizer to truncate to it.
pub(crate) fn apply_max_len(
    tok: &mut Tokenizer,
    max_len: usize,
    mpe: usize,
    config: &Path,
    tokenizer: &Path,
) -> Result<()> {
    if max_len < 2 || max_len > mpe {
        return Err(Error::Config(format!(
            "text.max_len {max_len} must be in 2..={mpe} (max_position_embeddings of {})",
            config.display()
        )));
    }
    configure_tokenizer(tok, max_len, tokenizer)
}

/// Token ids of `texts` (special tokens added, truncated as configured).
pub(crate) fn tokenize(tok: &Tokenizer, texts: &[&str], path: &Path) -> Result<Vec<Vec<u32>>> {
    texts
        .iter()
        .map(|t| {
            tok.encode(*t, true)
                .map(|e| e.get_ids().to_vec())
                .map_err(|e| Error::bad_file(path, format!("cannot tokenize {t:?}: {e}")))
        })
        .collect()
}

/// Token ids of several captions padded to the longest: `input_ids` and
/// `attention_mask` (1 for real tokens, 0 for padding), both `[batch, len]` u32.
#[derive(Debug, Clone)]
pub struct TokenBatch {
    /// `[batch, len]` token ids, padded with the pad id.
    pub input_ids: Tensor,
    /// `[batch, len]`, 1 on real tokens, 0 on padding.
    pub attention_mask: Tensor,
    /// Number of real tokens of each row.
    pub lengths: Vec<usize>,
}

impl TokenBatch {
    /// Pads `ids` (one token list per caption, none empty) with `pad_id` to
    /// the longest.
    pub fn new(ids: &[Vec<u32>], pad_id: u32, device: &Device) -> Result<Self> {
        let len = ids.iter().map(Vec::len).max().unwrap_or(0);
        if len == 0 {
            return Err(Error::Shape(
                "a token batch needs at least one token".into(),
            ));
        }
        let mut flat = Vec::with_capacity(ids.len() * len);
        let mut mask = Vec::with_capacity(ids.len() * len);
        for row in ids {
            flat.extend(row);
            flat.extend(std::iter::repeat_n(pad_id, len - row.len()));
            mask.extend(std::iter::repeat_n(1u32, row.len()));
            mask.extend(std::iter::repeat_n(0u32, len - row.len()));
        }
        Ok(TokenBatch {
            input_ids: Tensor::from_vec(flat, (ids.len(), len), device)?,
            attention_mask: Tensor::from_vec(mask, (ids.len(), len), device)?,
            lengths: ids.iter().map(Vec::len).collect(),
        })
    }
}

/// Mean of `hidden` `[b, len, d]` over the tokens where `mask` `[b, len]` is
/// 1 (sentence-transformers' mean pooling, count clamped at 1e-9).
pub fn masked_mean(hidden: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let m = mask.to_dtype(hidden.dtype())?.unsqueeze(2)?;
    let sum = hidden.broadcast_mul(&m)?.sum(1)?;
    let count = m.sum(1)?.clamp(1e-9, f64::MAX)?;
    Ok(sum.broadcast_div(&count)?)
}

/// Rows of `x` `[b, d]` divided by their L2 norm (clamped at 1e-12, as
/// PyTorch's `F.normalize`).
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let n = x
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sqrt()?
        .clamp(1e-12, f64::MAX)?;
    Ok(x.broadcast_div(&n)?)
}

/// Runs `embed` over `ids` in batches of `batch_size` captions of similar
/// length (sorted by token count, so little padding; padding does not change
/// any caption's embedding) and returns the rows in the input order as
/// `[n, dim]` f32 on the CPU. Shows progress when `progress` and the job
/// has more than four batches.
pub(crate) fn encode_batched(
    ids: &[Vec<u32>],
    dim: usize,
    batch_size: usize,
    progress: bool,
    label: &str,
    mut embed: impl FnMut(&[Vec<u32>]) -> Result<Tensor>,
) -> Result<Tensor> {
    let n = ids.len();
    let batch_size = batch_size.max(1);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| ids[i].len());
    let batches = n.div_ceil(batch_size);
    let show = progress && batches > 4;
    let bar = Progress::new(batches as u64, "encode", show);
    let start = std::time::Instant::now();
    bar.log(&format!(
        "encoding {n} captions with {label} ({batches} batches of {batch_size})"
    ));
    let mut out = vec![0f32; n * dim];
    for chunk in order.chunks(batch_size) {
        let rows: Vec<Vec<u32>> = chunk.iter().map(|&i| ids[i].clone()).collect();
        let emb = embed(&rows)?;
        if emb.dims() != [chunk.len(), dim] {
            return Err(Error::Shape(format!(
                "{label} returned {:?} for a batch of {} captions (dimension {dim})",
                emb.dims(),
                chunk.len()
            )));
        }
        let emb = emb
            .to_dtype(DType::F32)?
            .to_device(&Device::Cpu)?
            .to_vec2::<f32>()?;
        for (&i, row) in chunk.iter().zip(emb) {
            out[i * dim..(i + 1) * dim].copy_from_slice(&row);
        }
        bar.inc("");
    }
    bar.finish();
    bar.log(&format!(
        "encoded {n} captions in {:.1} s",
        start.elapsed().as_secs_f64()
    ));
    Ok(Tensor::from_vec(out, (n, dim), &Device::Cpu)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_batch_pads_and_masks() {
        let b = TokenBatch::new(&[vec![5, 6, 7], vec![8]], 0, &Device::Cpu).unwrap();
        assert_eq!(
            b.input_ids.to_vec2::<u32>().unwrap(),
            vec![vec![5, 6, 7], vec![8, 0, 0]]
        );
        assert_eq!(
            b.attention_mask.to_vec2::<u32>().unwrap(),
            vec![vec![1, 1, 1], vec![1, 0, 0]]
        );
        assert_eq!(b.lengths, vec![3, 1]);
        assert!(TokenBatch::new(&[vec![]], 0, &Device::Cpu).is_err());
    }

    #[test]
    fn masked_mean_ignores_padding_and_normalize_makes_unit_rows() {
        let h = Tensor::new(
            &[
                [[1f32, 2.], [3., 4.], [100., 100.]],
                [[2., 0.], [9., 9.], [9., 9.]],
            ],
            &Device::Cpu,
        )
        .unwrap();
        let mask = Tensor::new(&[[1u32, 1, 0], [1, 0, 0]], &Device::Cpu).unwrap();
        let m = masked_mean(&h, &mask).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(m, vec![vec![2., 3.], vec![2., 0.]]);
        let n = l2_normalize(&Tensor::new(&[[3f32, 4.], [0., 0.]], &Device::Cpu).unwrap())
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(n, vec![vec![0.6, 0.8], vec![0., 0.]]);
    }

    #[test]
    fn encode_batched_restores_the_input_order() {
        // "embedding" = [length, first id]: rows must come back in input order
        let ids = vec![vec![1, 2, 3], vec![4], vec![5, 6], vec![7, 8, 9, 10]];
        let t = encode_batched(&ids, 2, 2, false, "test", |rows| {
            let data: Vec<f32> = rows
                .iter()
                .flat_map(|r| [r.len() as f32, r[0] as f32])
                .collect();
            Ok(Tensor::from_vec(data, (rows.len(), 2), &Device::Cpu)?)
        })
        .unwrap();
        assert_eq!(
            t.to_vec2::<f32>().unwrap(),
            vec![vec![3., 1.], vec![1., 4.], vec![2., 5.], vec![4., 7.]]
        );
        let empty = encode_batched(&[], 3, 2, false, "test", |_| unreachable!()).unwrap();
        assert_eq!(empty.dims(), &[0, 3]);
    }

    #[test]
    fn digest_covers_small_files_and_weight_edges() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config.json");
        let w = dir.path().join("w.bin");
        std::fs::write(&cfg, "{}").unwrap();
        let mut big = vec![7u8; 3 << 20];
        std::fs::write(&w, &big).unwrap();
        let d0 = identity_digest(&[&cfg], &w).unwrap();
        assert_eq!(d0, identity_digest(&[&cfg], &w).unwrap());
        // the middle MiB is not read (documented), the edges and size are
        big[3 << 19] = 0;
        std::fs::write(&w, &big).unwrap();
        assert_eq!(d0, identity_digest(&[&cfg], &w).unwrap());
        *big.last_mut().unwrap() = 0;
        std::fs::write(&w, &big).unwrap();
        let d1 = identity_digest(&[&cfg], &w).unwrap();
        assert_ne!(d0, d1);
        big.push(1);
        std::fs::write(&w, &big).unwrap();
        assert_ne!(d1, identity_digest(&[&cfg], &w).unwrap());
        std::fs::write(&cfg, "{ }").unwrap();
        assert_ne!(d0, identity_digest(&[&cfg], &w).unwrap());
        // small weights files are read once, not twice
        std::fs::write(&w, [1u8, 2, 3]).unwrap();
        assert!(identity_digest(&[&cfg], &w).is_ok());
    }
}
