//! Caption embeddings of a whole dataset, cached on disk (safetensors) under
//! a name keyed by the encoder's identity and a digest of the captions, so
//! each caption is encoded once per encoder.

use super::TextEncoder;
use crate::data::{Dataset, Split};
use crate::error::{Error, Result};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The frozen embeddings of every caption of a dataset, per split, in the
/// order of [`Dataset::captions`].
#[derive(Debug, Clone)]
pub struct CaptionEmbeddings {
    /// Identity of the encoder that made them.
    pub encoder_id: String,
    /// Embedding dimension.
    pub dim: usize,
    /// `[captions, dim]` per split (f32, CPU).
    pub train: Tensor,
    /// Validation captions.
    pub val: Tensor,
    /// Test captions.
    pub test: Tensor,
}

impl CaptionEmbeddings {
    /// Encodes every caption of `ds` (no cache).
    pub fn compute(encoder: &dyn TextEncoder, ds: &Dataset) -> Result<Self> {
        let enc = |s: Split| -> Result<Tensor> {
            let (texts, _) = ds.captions(s);
            let t = encoder.encode(&texts)?;
            if t.dims() != [texts.len(), encoder.dim()] {
                return Err(Error::Shape(format!(
                    "encoder {} returned {:?} for {} captions",
                    encoder.id(),
                    t.dims(),
                    texts.len()
                )));
            }
            Ok(t.to_dtype(DType::F32)?.to_device(&Device::Cpu)?)
        };
        Ok(CaptionEmbeddings {
            encoder_id: encoder.id(),
            dim: encoder.dim(),
            train: enc(Split::Train)?,
            val: enc(Split::Val)?,
            test: enc(Split::Test)?,
        })
    }

    /// The embeddings of one split.
    pub fn split(&self, s: Split) -> &Tensor {
        match s {
            Split::Train => &self.train,
            Split::Val => &self.val,
            Split::Test => &self.test,
        }
    }

    /// The cache file for `encoder` and `ds` inside `dir`.
    pub fn cache_path(dir: &Path, encoder: &dyn TextEncoder, ds: &Dataset) -> PathBuf {
        let safe: String = encoder
            .id()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        dir.join(format!(
            "emb-{}-{}-{safe}.safetensors",
            ds.name,
            ds.captions_digest()
        ))
    }

    /// Loads the cached embeddings from `dir`, or computes and writes them.
    /// Returns the embeddings and whether the cache was hit. A cache file that
    /// does not match the dataset (wrong counts or dimension) is an error
    /// naming the file, never silently used.
    pub fn load_or_compute(
        dir: &Path,
        encoder: &dyn TextEncoder,
        ds: &Dataset,
    ) -> Result<(Self, bool)> {
        Self::load_or_compute_shared(dir, None, encoder, ds)
    }

    /// [`load_or_compute`](Self::load_or_compute) that, when `dir` has no
    /// entry, first looks in the read-only cache `shared` (the `cache/` that
    /// `vl-distill data prepare --text-encoder` fills beside a prepared
    /// dataset's split file) and uses the entry there as it is, without a
    /// copy. Computed embeddings are written to `dir` only.
    pub fn load_or_compute_shared(
        dir: &Path,
        shared: Option<&Path>,
        encoder: &dyn TextEncoder,
        ds: &Dataset,
    ) -> Result<(Self, bool)> {
        let path = Self::cache_path(dir, encoder, ds);
        let shared_path = shared.map(|s| Self::cache_path(s, encoder, ds));
        for p in std::iter::once(&path).chain(shared_path.as_ref()) {
            if p.exists() {
                return Ok((Self::load(p, encoder, ds)?, true));
            }
        }
        let emb = Self::compute(encoder, ds)?;
        let map: HashMap<String, Tensor> = Split::ALL
            .iter()
            .map(|s| (s.name().to_string(), emb.split(*s).clone()))
            .collect();
        crate::io::save_tensors(&path, &map, &encoder.id())?;
        Ok((emb, false))
    }

    /// Reads one cache file, checking it against the encoder and the dataset.
    fn load(path: &Path, encoder: &dyn TextEncoder, ds: &Dataset) -> Result<Self> {
        let (map, meta) = crate::io::load_tensors(path, &Device::Cpu)?;
        if meta != encoder.id() {
            return Err(Error::bad_file(
                path,
                format!("made by encoder {meta:?}, expected {:?}", encoder.id()),
            ));
        }
        Self::from_map(path, map, encoder, ds)
    }

    fn from_map(
        path: &Path,
        mut map: HashMap<String, Tensor>,
        encoder: &dyn TextEncoder,
        ds: &Dataset,
    ) -> Result<Self> {
        let mut take = |s: Split| -> Result<Tensor> {
            let t = map
                .remove(s.name())
                .ok_or_else(|| Error::bad_file(path, format!("no tensor {:?}", s.name())))?;
            let want = [ds.num_captions(s), encoder.dim()];
            if t.dims() != want {
                return Err(Error::bad_file(
                    path,
                    format!("split {s}: {:?} but the dataset needs {want:?}", t.dims()),
                ));
            }
            Ok(t)
        };
        Ok(CaptionEmbeddings {
            encoder_id: encoder.id(),
            dim: encoder.dim(),
            train: take(Split::Train)?,
            val: take(Split::Val)?,
            test: take(Split::Test)?,
        })
    }
}

/// The folder of a prepared dataset (`vl-distill data prepare`) that holds
/// its precomputed caption embeddings, beside its split file.
pub const CACHE_DIR: &str = "cache";

/// Encodes every caption of the prepared split file `json` with `encoder`
/// into `json`'s folder's `cache/` (the layout of [`CaptionEmbeddings`]'s
/// cache: one file per dataset name, captions digest and encoder identity).
/// Runs whose `data.source` is this split file read them from there
/// ([`CaptionEmbeddings::load_or_compute_shared`]) instead of encoding the
/// captions into their own `OUT/cache/`. Returns the cache file and whether
/// it was already there. No image is opened.
pub fn cache_embeddings(json: &Path, encoder: &dyn TextEncoder) -> Result<(PathBuf, bool)> {
    let ds = crate::data::karpathy::load_karpathy_captions(json)?;
    let dir = embedding_cache_dir(json);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let (_, hit) = CaptionEmbeddings::load_or_compute(&dir, encoder, &ds)?;
    Ok((CaptionEmbeddings::cache_path(&dir, encoder, &ds), hit))
}

/// The shared embedding cache of a Karpathy split file: `cache/` beside it.
pub fn embedding_cache_dir(json: &Path) -> PathBuf {
    json.parent().unwrap_or(Path::new("")).join(CACHE_DIR)
}
