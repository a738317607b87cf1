//! The real images' frozen-backbone features, computed once per (dataset,
//! backbone weights, resolution, pixel normalisation) and cached on disk.
//!
//! The cache file `features-<backbone>-<key>.safetensors` holds the raw
//! (unstandardised) features of the three splits, `train`, `val` and
//! `test`. Its key is a digest of everything the features depend on: the
//! backbone's name and weights digest, the image size, the normalisation,
//! the dataset's content digest (pixels, names, captions) and the file
//! layout's version; the header records the key and a digest of the
//! feature values. A file whose key, shapes or values do not check out
//! (stale, truncated, corrupt) is reported and rebuilt, never used.

use crate::config::ImageNorm;
use crate::data::{Dataset, Split};
use crate::error::{Error, Result};
use crate::model::FrozenBackbone;
use crate::progress::Progress;
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Layout version of the cache file.
const FORMAT: u32 = 1;

/// Images per forward pass of the backbone while filling the cache.
const CHUNK: usize = 64;

/// What the cache file's header records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CacheMeta {
    key: String,
    backbone: String,
    image_size: usize,
    dims: [usize; 2],
    rows: [usize; 3],
    values_digest: String,
}

/// The real features of the three splits and how they were obtained.
#[derive(Debug, Clone)]
pub struct RealFeatures {
    /// Raw features `[N, D]` of train, val and test, in that order.
    pub splits: [Tensor; 3],
    /// The cache key (a digest of what the features depend on).
    pub key: String,
    /// How they were obtained, for the log: from the cache, computed, rebuilt.
    pub note: String,
}

/// The cache key of `backbone`'s features of `dataset` under `norm`.
pub fn cache_key(backbone: &FrozenBackbone, dataset: &Dataset, norm: &ImageNorm) -> String {
    let what = serde_json::json!({
        "format": FORMAT,
        "backbone": backbone.id(),
        "image_size": backbone.image_size,
        "norm": norm,
        "dataset": dataset.content_hash(),
    });
    crate::io::short_digest(what.to_string().as_bytes())
}

/// The cache file for `key` in `dir`.
pub fn cache_file(dir: &Path, backbone: &FrozenBackbone, key: &str) -> PathBuf {
    let name = backbone.encoder.name().replace([' ', '(', ')'], "");
    dir.join(format!("features-{name}-{key}.safetensors"))
}

/// Raw backbone features of every image of `split`, `CHUNK` at a time.
pub fn compute_split(
    backbone: &FrozenBackbone,
    dataset: &Dataset,
    split: Split,
    norm: &ImageNorm,
    device: &Device,
    bar: &Progress,
) -> Result<Tensor> {
    let samples = dataset.split(split);
    let mut parts = Vec::new();
    for chunk in samples.chunks(CHUNK) {
        let images: Vec<&image::RgbImage> = chunk.iter().map(|s| &s.image).collect();
        let x = norm.to_tensor(&images, device)?;
        parts.push(backbone.raw_features(&x)?.detach());
        bar.inc(split.name());
    }
    if parts.is_empty() {
        return Err(Error::Config(format!("the {split} split has no image")));
    }
    Ok(Tensor::cat(&parts, 0)?)
}

fn values_digest(splits: &[Tensor; 3]) -> Result<String> {
    let mut bytes = Vec::new();
    for t in splits {
        let v: Vec<f32> = t.flatten_all()?.to_vec1()?;
        for x in v {
            bytes.extend_from_slice(&x.to_le_bytes());
        }
    }
    Ok(crate::io::short_digest(&bytes))
}

/// The features of `dataset` under `backbone`: read from `dir`'s cache when
/// a valid file is there, else computed (and written there when `dir` is
/// given). An invalid file is named in the note and replaced.
pub fn load_or_compute(
    backbone: &FrozenBackbone,
    dataset: &Dataset,
    norm: &ImageNorm,
    dir: Option<&Path>,
    device: &Device,
) -> Result<RealFeatures> {
    let key = cache_key(backbone, dataset, norm);
    let path = dir.map(|d| cache_file(d, backbone, &key));
    let mut rebuilt = None;
    if let Some(p) = path.as_deref().filter(|p| p.exists()) {
        match read(p, &key, dataset, device) {
            Ok(splits) => {
                return Ok(RealFeatures {
                    splits,
                    key,
                    note: format!("from cache {}", p.display()),
                })
            }
            Err(why) => {
                crate::progress::log_line(&format!(
                    "feature cache {} is not usable ({why}): rebuilding it",
                    p.display()
                ));
                rebuilt = Some(why);
            }
        }
    }
    let batches: usize = Split::ALL
        .iter()
        .map(|s| dataset.split(*s).len().div_ceil(CHUNK))
        .sum();
    let bar = Progress::new(batches as u64, "features", batches > 8);
    let splits = [
        compute_split(backbone, dataset, Split::Train, norm, device, &bar)?,
        compute_split(backbone, dataset, Split::Val, norm, device, &bar)?,
        compute_split(backbone, dataset, Split::Test, norm, device, &bar)?,
    ];
    bar.finish();
    let mut note = String::from("computed");
    if let Some(p) = &path {
        write(p, &key, backbone, &splits)?;
        note = format!("computed, cached in {}", p.display());
    }
    if let Some(why) = rebuilt {
        note = format!("{note} (the old file was rebuilt: {why})");
    }
    Ok(RealFeatures { splits, key, note })
}

fn write(path: &Path, key: &str, backbone: &FrozenBackbone, splits: &[Tensor; 3]) -> Result<()> {
    let meta = CacheMeta {
        key: key.to_string(),
        backbone: backbone.id(),
        image_size: backbone.image_size,
        dims: [splits[0].dim(0)?, splits[0].dim(1)?],
        rows: [splits[0].dim(0)?, splits[1].dim(0)?, splits[2].dim(0)?],
        values_digest: values_digest(splits)?,
    };
    let map: HashMap<String, Tensor> = Split::ALL
        .iter()
        .zip(splits)
        .map(|(s, t)| (s.name().to_string(), t.clone()))
        .collect();
    let json = serde_json::to_string(&meta).expect("metadata serialises");
    crate::io::save_tensors(path, &map, &json)
}

/// Reads and checks a cache file; the error says what is wrong with it.
fn read(path: &Path, key: &str, dataset: &Dataset, device: &Device) -> Result<[Tensor; 3]> {
    let (mut map, json) = crate::io::load_tensors(path, device)?;
    let meta: CacheMeta = serde_json::from_str(&json)
        .map_err(|e| Error::bad_file(path, format!("bad metadata: {e}")))?;
    if meta.key != key {
        return Err(Error::bad_file(
            path,
            "made for other weights, data or preprocessing",
        ));
    }
    let mut take = |s: Split| -> Result<Tensor> {
        let t = map
            .remove(s.name())
            .ok_or_else(|| Error::bad_file(path, format!("no tensor {:?}", s.name())))?;
        if t.dims().len() != 2 || t.dim(0)? != dataset.split(s).len() {
            return Err(Error::bad_file(
                path,
                format!("{} features are {:?}", s.name(), t.dims()),
            ));
        }
        Ok(t)
    };
    let splits = [take(Split::Train)?, take(Split::Val)?, take(Split::Test)?];
    if values_digest(&splits)? != meta.values_digest {
        return Err(Error::bad_file(
            path,
            "feature values do not match their digest",
        ));
    }
    Ok(splits)
}
