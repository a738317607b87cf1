//! Annotation loaders for the two layouts Flickr30K and COCO come in, and a
//! writer for Karpathy's layout.
//!
//! - **Karpathy's split file** `dataset_flickr30k.json` / `dataset_coco.json`:
//!   `{"dataset": name, "images": [{"filename", "filepath"?, "split",
//!   "sentences": [{"raw"}, ...]}, ...]}`. COCO's `filepath` (e.g.
//!   `val2014`) sits between the image root and the file name; a sample's
//!   `filename` is the file name alone. COCO's
//!   `restval` images join the train split, as is customary.
//! - **The per-split files of the paper's code** (from BLIP):
//!   `flickr30k_train.json` is a list of `{image, caption, image_id}`, one
//!   caption per entry (entries of one image are grouped, in order of first
//!   appearance); `flickr30k_val.json` / `flickr30k_test.json` are lists of
//!   `{image, caption: [captions]}`; `coco_karpathy_*.json` likewise. A
//!   `caption` may be a string or a list in any split.
//!
//! Images are decoded with the `image` crate (in parallel), converted to RGB
//! and resized to `image_size × image_size` (Catmull-Rom) only when their
//! size differs, so a written dataset reads back identically. A missing or
//! undecodable image is an error naming it, unless
//! [`LoadOptions::skip_unreadable`] is set; then it is skipped and listed in
//! the [`LoadReport`]. Nothing else is ever skipped.

use super::{Dataset, Sample, Split};
use crate::error::{Error, Result};
use image::RgbImage;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// How images are loaded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadOptions {
    /// Side of the square images after resizing.
    pub image_size: u32,
    /// Skip (and report) missing or undecodable images instead of failing.
    pub skip_unreadable: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            image_size: 32,
            skip_unreadable: false,
        }
    }
}

/// What a load skipped (only ever non-empty with `skip_unreadable`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadReport {
    /// Each skipped image and why.
    pub skipped: Vec<(PathBuf, String)>,
}

#[derive(Deserialize)]
struct KarpathyFile {
    dataset: Option<String>,
    images: Vec<KarpathyImage>,
}

#[derive(Deserialize)]
struct KarpathyImage {
    filename: String,
    filepath: Option<String>,
    split: String,
    sentences: Vec<KarpathySentence>,
}

#[derive(Deserialize)]
struct KarpathySentence {
    raw: String,
}

#[derive(Serialize)]
struct WriteFile<'a> {
    dataset: &'a str,
    images: Vec<WriteImage<'a>>,
}

#[derive(Serialize)]
struct WriteImage<'a> {
    filename: &'a str,
    filepath: &'a str,
    split: &'a str,
    imgid: usize,
    sentids: Vec<usize>,
    sentences: Vec<WriteSentence<'a>>,
}

#[derive(Serialize)]
struct WriteSentence<'a> {
    raw: &'a str,
    tokens: Vec<String>,
    imgid: usize,
    sentid: usize,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Captions {
    One(String),
    Many(Vec<String>),
}

impl Captions {
    fn into_vec(self) -> Vec<String> {
        match self {
            Captions::One(s) => vec![s],
            Captions::Many(v) => v,
        }
    }
}

#[derive(Deserialize)]
struct PerSplitEntry {
    image: String,
    caption: Captions,
}

/// An image to load: where it is, what to call it, its split and captions.
struct Pending {
    path: PathBuf,
    filename: String,
    split: Split,
    captions: Vec<String>,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    crate::io::read_json(path)
}

fn parse_split(s: &str, annotation: &Path, image: &str) -> Result<Split> {
    match s {
        "train" | "restval" => Ok(Split::Train),
        "val" => Ok(Split::Val),
        "test" => Ok(Split::Test),
        other => Err(Error::Json {
            path: annotation.into(),
            message: format!("image {image:?} has unknown split {other:?}"),
        }),
    }
}

fn decode(path: &Path, size: u32) -> std::result::Result<RgbImage, String> {
    let img = image::open(path).map_err(|e| e.to_string())?.to_rgb8();
    if img.dimensions() == (size, size) {
        Ok(img)
    } else {
        Ok(image::imageops::resize(
            &img,
            size,
            size,
            image::imageops::FilterType::CatmullRom,
        ))
    }
}

/// Decodes all pending images in parallel, in order; builds the dataset.
fn load_images(
    name: &str,
    annotation: &Path,
    pending: Vec<Pending>,
    opts: &LoadOptions,
) -> Result<(Dataset, LoadReport)> {
    for p in &pending {
        if p.captions.is_empty() {
            return Err(Error::NoCaptions {
                annotation: annotation.into(),
                image: p.filename.clone(),
            });
        }
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = pending.len().div_ceil(threads).max(1);
    let decoded: Vec<std::result::Result<RgbImage, Error>> = std::thread::scope(|s| {
        let handles: Vec<_> = pending
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|p| {
                            if !p.path.exists() {
                                return Err(Error::MissingImage {
                                    path: p.path.clone(),
                                    annotation: annotation.into(),
                                });
                            }
                            decode(&p.path, opts.image_size).map_err(|message| Error::BadImage {
                                path: p.path.clone(),
                                message,
                            })
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("decoder thread"))
            .collect()
    });
    let mut ds = Dataset {
        name: name.to_string(),
        train: Vec::new(),
        val: Vec::new(),
        test: Vec::new(),
    };
    let mut report = LoadReport::default();
    for (p, img) in pending.into_iter().zip(decoded) {
        match img {
            Ok(image) => ds.split_mut(p.split).push(Sample {
                filename: p.filename,
                image,
                captions: p.captions,
            }),
            Err(e) if opts.skip_unreadable => report.skipped.push((p.path, e.to_string())),
            Err(e) => return Err(e),
        }
    }
    ds.validate(&annotation.display().to_string())?;
    Ok((ds, report))
}

/// Loads Karpathy's `dataset_*.json`. Image paths are
/// `image_root / filepath / filename`; `image_root` defaults to the JSON's folder.
pub fn load_karpathy(
    json: &Path,
    image_root: Option<&Path>,
    opts: &LoadOptions,
) -> Result<(Dataset, LoadReport)> {
    let file: KarpathyFile = read_json(json)?;
    let root = match image_root {
        Some(r) => r.to_path_buf(),
        None => json.parent().unwrap_or(Path::new(".")).to_path_buf(),
    };
    let name = file.dataset.clone().unwrap_or_else(|| {
        let stem = json
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("dataset");
        stem.trim_start_matches("dataset_").to_string()
    });
    let pending = file
        .images
        .into_iter()
        .map(|im| {
            let split = parse_split(&im.split, json, &im.filename)?;
            let rel = match &im.filepath {
                Some(fp) if !fp.is_empty() => Path::new(fp).join(&im.filename),
                _ => PathBuf::from(&im.filename),
            };
            Ok(Pending {
                path: root.join(&rel),
                filename: im.filename,
                split,
                captions: im.sentences.into_iter().map(|s| s.raw).collect(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    load_images(&name, json, pending, opts)
}

fn per_split_entries(path: &Path, split: Split, root: &Path, out: &mut Vec<Pending>) -> Result<()> {
    let entries: Vec<PerSplitEntry> = read_json(path)?;
    let start = out.len();
    for e in entries {
        let caps = e.caption.into_vec();
        // group the one-caption-per-entry train layout by image
        if let Some(p) = out[start..].iter_mut().find(|p| p.filename == e.image) {
            p.captions.extend(caps);
            continue;
        }
        out.push(Pending {
            path: root.join(&e.image),
            filename: e.image,
            split,
            captions: caps,
        });
    }
    Ok(())
}

/// Loads the paper's per-split files (`*_train.json`, `*_val.json`,
/// `*_test.json`); image paths are `image_root / image`.
pub fn load_per_split(
    name: &str,
    train: &Path,
    val: &Path,
    test: &Path,
    image_root: &Path,
    opts: &LoadOptions,
) -> Result<(Dataset, LoadReport)> {
    let mut pending = Vec::new();
    per_split_entries(train, Split::Train, image_root, &mut pending)?;
    per_split_entries(val, Split::Val, image_root, &mut pending)?;
    per_split_entries(test, Split::Test, image_root, &mut pending)?;
    load_images(name, train, pending, opts)
}

/// Writes `ds` in Karpathy's layout: `dir/dataset_NAME.json` and the PNGs in
/// `dir/images/`. Returns the JSON's path.
pub fn write_karpathy(ds: &Dataset, dir: &Path) -> Result<PathBuf> {
    let img_dir = dir.join("images");
    std::fs::create_dir_all(&img_dir).map_err(|e| Error::io(&img_dir, e))?;
    let mut images = Vec::new();
    let mut sentid = 0;
    for split in Split::ALL {
        for s in ds.split(split) {
            let imgid = images.len();
            let path = img_dir.join(&s.filename);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
            }
            s.image
                .save_with_format(&path, image::ImageFormat::Png)
                .map_err(|e| Error::BadImage {
                    path: path.clone(),
                    message: format!("cannot write: {e}"),
                })?;
            let sentences: Vec<WriteSentence> = s
                .captions
                .iter()
                .enumerate()
                .map(|(j, c)| WriteSentence {
                    raw: c,
                    tokens: crate::text::HashedBowEncoder::tokens(c),
                    imgid,
                    sentid: sentid + j,
                })
                .collect();
            images.push(WriteImage {
                filename: &s.filename,
                filepath: "images",
                split: split.name(),
                imgid,
                sentids: (sentid..sentid + s.captions.len()).collect(),
                sentences,
            });
            sentid += s.captions.len();
        }
    }
    let json = dir.join(format!("dataset_{}.json", ds.name));
    crate::io::write_json(
        &json,
        &WriteFile {
            dataset: &ds.name,
            images,
        },
    )?;
    Ok(json)
}
