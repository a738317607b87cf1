//! Loaders for the annotation layouts of Flickr30K and COCO, and a writer for
//! Karpathy's layout.
//!
//! Two layouts are read:
//!
//! * **Karpathy's** `dataset_flickr30k.json` / `dataset_coco.json`
//!   ([`load_karpathy`]): one file for all splits, each image with its split
//!   and sentences. Karpathy's `restval` split (COCO's extra validation images
//!   that everyone trains on) is put into **train**.
//! * **The paper's per-split files** ([`load_per_split`]):
//!   `flickr30k_train.json` (one entry per caption) and
//!   `flickr30k_val.json` / `flickr30k_test.json` (one entry per image with a
//!   list of captions), and likewise `coco_karpathy_*.json`.
//!
//! Images are decoded with the `image` crate (format guessed from the file's
//! contents), converted to 8-bit RGB and, only when their size differs,
//! resized to `image_size × image_size` with Catmull-Rom filtering (the aspect
//! ratio is not kept, as in the paper's `Resize((size, size))`). So a dataset
//! written by [`write_karpathy`] reads back identically. Decoding runs on all
//! cores; the order of the samples is always the order of the annotations.
//!
//! [`load_karpathy_captions`] reads the annotations alone (no pixels), for
//! the caption-embedding cache.
//!
//! Nothing is dropped silently: a missing or undecodable image is an error
//! unless [`LoadOptions::skip_unreadable`] is set, in which case it is skipped
//! and listed in the [`LoadReport`]. Captions are trimmed; captions that are
//! empty after trimming are ignored, and an image left without captions is an
//! [`Error::NoCaptions`].

use super::{par_map, Dataset, Sample, Split};
use crate::error::{Error, Result};
use crate::io::read_json;
use image::{imageops, ImageFormat, ImageReader, RgbImage};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::io::{BufWriter, Write};
use std::path::{Component, Path, PathBuf};

/// How images are read.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LoadOptions {
    /// Side in pixels every image is resized to (when it differs).
    pub image_size: u32,
    /// Skip (and report) images that are missing or cannot be decoded instead
    /// of failing.
    pub skip_unreadable: bool,
}

impl Default for LoadOptions {
    /// 32 px images; unreadable images are errors.
    fn default() -> Self {
        LoadOptions {
            image_size: 32,
            skip_unreadable: false,
        }
    }
}

/// What a load left out.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Images skipped (only with [`LoadOptions::skip_unreadable`]) and why.
    pub skipped: Vec<(PathBuf, String)>,
    /// How many images of each original size (width, height) were resized
    /// to the loaded size.
    pub resized: std::collections::BTreeMap<(u32, u32), usize>,
    /// The side every image was loaded at.
    pub image_size: u32,
}

impl LoadReport {
    /// One line saying what was resized from and to, e.g. `resized 3842
    /// images from 64×64 to 224×224 px (bilinear)`; `None` when nothing was.
    pub fn resize_summary(&self) -> Option<String> {
        if self.resized.is_empty() {
            return None;
        }
        let s = self.image_size;
        let parts: Vec<String> = self
            .resized
            .iter()
            .map(|((w, h), n)| {
                let how = if *w < s && *h < s {
                    "bilinear"
                } else {
                    "Catmull-Rom"
                };
                format!("{n} from {w}×{h} ({how})")
            })
            .collect();
        Some(format!(
            "resized images to {s}×{s} px: {}",
            parts.join(", ")
        ))
    }
}

/// One image named by an annotation file, before its pixels are read.
struct Pending {
    split: Split,
    /// The name as written in the annotation (becomes [`Sample::filename`]).
    filename: String,
    path: PathBuf,
    /// The annotation file that names the image.
    annotation: PathBuf,
    captions: Vec<String>,
}

// --- Karpathy's layout -------------------------------------------------------

#[derive(Deserialize)]
struct KarpathyFile {
    dataset: Option<String>,
    images: Vec<KarpathyImage>,
}

#[derive(Deserialize)]
struct KarpathyImage {
    filename: String,
    #[serde(default)]
    filepath: Option<String>,
    split: KarpathySplit,
    sentences: Vec<KarpathySentence>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum KarpathySplit {
    Train,
    Restval,
    Val,
    Test,
}

#[derive(Deserialize)]
struct KarpathySentence {
    raw: String,
}

/// Loads Karpathy's `dataset_flickr30k.json` / `dataset_coco.json` layout:
/// `{"dataset": name, "images": [{"filename", "filepath" (COCO only,
/// optional), "split": "train" | "val" | "test" | "restval", "sentences":
/// [{"raw": ...}, ...], ...}]}` (other fields are ignored).
///
/// `restval` images go to **train**. The image path is
/// `image_root / filepath / filename` (without `filepath` when absent);
/// `image_root` defaults to the JSON file's folder. The dataset is named after
/// the `"dataset"` field, or after the file name (`dataset_coco.json` →
/// `"coco"`) when that is absent. Sample file names are the `"filename"` field.
///
/// Errors: [`Error::Io`] when the JSON cannot be read, [`Error::Json`] when it
/// is malformed or has the wrong layout, [`Error::NoCaptions`],
/// [`Error::MissingImage`], [`Error::BadImage`], and [`Error::EmptySplit`]
/// when a split ends up empty.
pub fn load_karpathy(
    json: &Path,
    image_root: Option<&Path>,
    opts: &LoadOptions,
) -> Result<(Dataset, LoadReport)> {
    check_options(opts)?;
    let (name, pending) = read_karpathy(json, image_root)?;
    let (ds, report) = finish(name, pending, opts)?;
    ds.validate(&json.display().to_string())?;
    Ok((ds, report))
}

/// The annotations of a Karpathy-layout file without the pixels: the
/// [`Dataset`] that [`load_karpathy`] would return (same name, file names,
/// splits and captions) except that every [`Sample::image`] is 0×0 and no
/// image file is opened. Enough for the caption-embedding cache, which
/// depends on the name and the captions only.
///
/// Errors as for [`load_karpathy`], less those about image files.
pub fn load_karpathy_captions(json: &Path) -> Result<Dataset> {
    let (name, pending) = read_karpathy(json, None)?;
    let mut ds = Dataset {
        name,
        train: Vec::new(),
        val: Vec::new(),
        test: Vec::new(),
    };
    for p in pending {
        ds.split_mut(p.split).push(Sample {
            filename: p.filename,
            image: RgbImage::new(0, 0),
            captions: p.captions,
        });
    }
    ds.validate(&json.display().to_string())?;
    Ok(ds)
}

/// Parses a Karpathy-layout file into the dataset's name and its images,
/// not yet read.
fn read_karpathy(json: &Path, image_root: Option<&Path>) -> Result<(String, Vec<Pending>)> {
    let file: KarpathyFile = read_json(json)?;
    let root = match image_root {
        Some(r) => r.to_path_buf(),
        None => json.parent().unwrap_or(Path::new("")).to_path_buf(),
    };
    let name = file.dataset.clone().unwrap_or_else(|| {
        let stem = json
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        stem.strip_prefix("dataset_").unwrap_or(&stem).to_string()
    });
    let mut pending = Vec::with_capacity(file.images.len());
    for img in file.images {
        let captions = clean_captions(img.sentences.into_iter().map(|s| s.raw));
        if captions.is_empty() {
            return Err(Error::NoCaptions {
                annotation: json.to_path_buf(),
                image: img.filename,
            });
        }
        let mut path = root.clone();
        if let Some(fp) = img.filepath.as_deref().filter(|fp| !fp.is_empty()) {
            path.push(fp);
        }
        path.push(&img.filename);
        let split = match img.split {
            KarpathySplit::Train | KarpathySplit::Restval => Split::Train,
            KarpathySplit::Val => Split::Val,
            KarpathySplit::Test => Split::Test,
        };
        pending.push(Pending {
            split,
            filename: img.filename,
            path,
            annotation: json.to_path_buf(),
            captions,
        });
    }
    Ok((name, pending))
}

// --- The paper's per-split layout -------------------------------------------

#[derive(Deserialize)]
struct SplitEntry {
    image: String,
    caption: CaptionField,
}

/// `"caption"` is one string (train files) or a list (val / test files).
#[derive(Deserialize)]
#[serde(untagged)]
enum CaptionField {
    One(String),
    Many(Vec<String>),
}

/// Loads the paper's per-split annotation files: `train` is a list of
/// `{"image", "caption", "image_id"}` with one caption per entry, `val` and
/// `test` are lists of `{"image", "caption": [captions]}` (other fields are
/// ignored). `"caption"` may be a string or a list in any split. Entries of
/// the same image are grouped, in order of first appearance, with their
/// captions in file order. The image path is `image_root / image`, and
/// [`Sample::filename`] is the `"image"` field. `name` names the dataset.
///
/// Errors as for [`load_karpathy`]; an empty split names its file.
pub fn load_per_split(
    name: &str,
    train: &Path,
    val: &Path,
    test: &Path,
    image_root: &Path,
    opts: &LoadOptions,
) -> Result<(Dataset, LoadReport)> {
    check_options(opts)?;
    let mut pending = Vec::new();
    for (split, file) in [
        (Split::Train, train),
        (Split::Val, val),
        (Split::Test, test),
    ] {
        let entries: Vec<SplitEntry> = read_json(file)?;
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut grouped: Vec<(String, Vec<String>)> = Vec::new();
        for e in entries {
            let caps = match e.caption {
                CaptionField::One(c) => vec![c],
                CaptionField::Many(cs) => cs,
            };
            let slot = *index.entry(e.image.clone()).or_insert_with(|| {
                grouped.push((e.image.clone(), Vec::new()));
                grouped.len() - 1
            });
            grouped[slot].1.extend(caps);
        }
        if grouped.is_empty() {
            return Err(Error::EmptySplit {
                source_name: file.display().to_string(),
                split: split.name().to_string(),
            });
        }
        for (image, caps) in grouped {
            let captions = clean_captions(caps);
            if captions.is_empty() {
                return Err(Error::NoCaptions {
                    annotation: file.to_path_buf(),
                    image,
                });
            }
            pending.push(Pending {
                split,
                path: image_root.join(&image),
                filename: image,
                annotation: file.to_path_buf(),
                captions,
            });
        }
    }
    let (ds, report) = finish(name.to_string(), pending, opts)?;
    // A split emptied by skipped images names its own file.
    for (split, file) in [
        (Split::Train, train),
        (Split::Val, val),
        (Split::Test, test),
    ] {
        if ds.split(split).is_empty() {
            return Err(Error::EmptySplit {
                source_name: file.display().to_string(),
                split: split.name().to_string(),
            });
        }
    }
    ds.validate(name)?;
    Ok((ds, report))
}

// --- Shared loading ------------------------------------------------------------

fn check_options(opts: &LoadOptions) -> Result<()> {
    if opts.image_size == 0 {
        return Err(Error::Config("image_size must be at least 1 pixel".into()));
    }
    Ok(())
}

/// Trims captions and drops those left empty.
fn clean_captions(caps: impl IntoIterator<Item = String>) -> Vec<String> {
    caps.into_iter()
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty())
        .collect()
}

/// Why one image could not be read.
enum ReadFailure {
    Missing,
    Undecodable(String),
}

/// Reads one image as RGB8 at `size × size`, with its original size.
fn read_image(path: &Path, size: u32) -> std::result::Result<(RgbImage, (u32, u32)), ReadFailure> {
    if !path.is_file() {
        return Err(ReadFailure::Missing);
    }
    let reader = ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| ReadFailure::Undecodable(format!("cannot read: {e}")))?;
    let img = reader
        .decode()
        .map_err(|e| ReadFailure::Undecodable(e.to_string()))?;
    let original = (img.width(), img.height());
    Ok((square_rgb(img, size), original))
}

/// An image as 8-bit RGB at `size × size`: unchanged when it already is,
/// else resized, the aspect ratio not kept (what every loader here does, so
/// `data prepare` writes exactly the pixels a load of the original would
/// give). Enlarging in both directions is bilinear (the 64-px emoji art
/// shown to a 224-px encoder, as timm's upsampling would); any other resize
/// uses Catmull-Rom filtering.
pub(crate) fn square_rgb(img: image::DynamicImage, size: u32) -> RgbImage {
    let img = img.to_rgb8();
    let (w, h) = img.dimensions();
    if (w, h) == (size, size) {
        img
    } else if w < size && h < size {
        imageops::resize(&img, size, size, imageops::FilterType::Triangle)
    } else {
        imageops::resize(&img, size, size, imageops::FilterType::CatmullRom)
    }
}

/// Reads every pending image (in parallel, keeping order) and assembles the
/// dataset; the first unreadable image in annotation order is the error
/// unless skipping.
fn finish(
    name: String,
    pending: Vec<Pending>,
    opts: &LoadOptions,
) -> Result<(Dataset, LoadReport)> {
    let images = par_map(&pending, |p| read_image(&p.path, opts.image_size));
    let mut ds = Dataset {
        name,
        train: Vec::new(),
        val: Vec::new(),
        test: Vec::new(),
    };
    let mut report = LoadReport {
        image_size: opts.image_size,
        ..LoadReport::default()
    };
    for (p, img) in pending.into_iter().zip(images) {
        match img {
            Ok((image, original)) => {
                if original != (opts.image_size, opts.image_size) {
                    *report.resized.entry(original).or_default() += 1;
                }
                ds.split_mut(p.split).push(Sample {
                    filename: p.filename,
                    image,
                    captions: p.captions,
                })
            }
            Err(failure) => {
                let reason = match &failure {
                    ReadFailure::Missing => {
                        format!(
                            "image file not found (referenced by {})",
                            p.annotation.display()
                        )
                    }
                    ReadFailure::Undecodable(m) => format!("cannot decode image: {m}"),
                };
                if opts.skip_unreadable {
                    report.skipped.push((p.path, reason));
                    continue;
                }
                return Err(match failure {
                    ReadFailure::Missing => Error::MissingImage {
                        path: p.path,
                        annotation: p.annotation,
                    },
                    ReadFailure::Undecodable(message) => Error::BadImage {
                        path: p.path,
                        message,
                    },
                });
            }
        }
    }
    Ok((ds, report))
}

// --- Writing -----------------------------------------------------------------

#[derive(Serialize)]
struct OutFile<'a> {
    dataset: &'a str,
    images: Vec<OutImage<'a>>,
}

#[derive(Serialize)]
struct OutImage<'a> {
    filename: String,
    filepath: &'static str,
    split: &'static str,
    imgid: usize,
    sentids: Vec<usize>,
    sentences: Vec<OutSentence<'a>>,
}

#[derive(Serialize)]
struct OutSentence<'a> {
    raw: &'a str,
    tokens: Vec<String>,
    imgid: usize,
    sentid: usize,
}

/// Lowercase words of a caption, punctuation dropped (Karpathy's `tokens`).
fn tokens(raw: &str) -> Vec<String> {
    raw.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// The PNG file name a sample is written under: its own name when that ends
/// in `.png`, else the extension replaced by `.png` (or `.png` appended when
/// that name is taken).
fn png_name(filename: &str, taken: &HashSet<String>) -> String {
    if filename.to_ascii_lowercase().ends_with(".png") {
        return filename.to_string();
    }
    let replaced = Path::new(filename)
        .with_extension("png")
        .to_string_lossy()
        .replace('\\', "/");
    if taken.contains(&replaced) {
        format!("{filename}.png")
    } else {
        replaced
    }
}

/// Writes `ds` in Karpathy's layout: `dir/dataset_{name}.json` (with
/// `"dataset"` and, per image, `"filename"`, `"filepath": "images"`,
/// `"split"`, `"imgid"`, `"sentids"` and `"sentences": [{"raw", "tokens",
/// "imgid", "sentid"}]`, `tokens` being the lowercase words) and the images as
/// PNG under `dir/images/`. Creates `dir`. Returns the JSON file's path.
///
/// Images are numbered train, then val, then test. A sample whose file name
/// does not end in `.png` is written with the extension replaced by `.png`
/// (the JSON names the new file). Fails with [`Error::Config`] on a file name
/// that is absolute, climbs out with `..`, or occurs twice.
pub fn write_karpathy(ds: &Dataset, dir: &Path) -> Result<PathBuf> {
    let image_dir = dir.join("images");
    std::fs::create_dir_all(&image_dir).map_err(|e| Error::io(&image_dir, e))?;

    let all: Vec<(Split, &Sample)> = Split::ALL
        .iter()
        .flat_map(|&s| ds.split(s).iter().map(move |x| (s, x)))
        .collect();
    let originals: HashSet<String> = all.iter().map(|(_, s)| s.filename.clone()).collect();
    let mut taken: HashSet<String> = HashSet::new();
    let mut names = Vec::with_capacity(all.len());
    for (_, s) in &all {
        let safe = !s.filename.is_empty()
            && Path::new(&s.filename)
                .components()
                .all(|c| matches!(c, Component::Normal(_)));
        if !safe {
            return Err(Error::Config(format!(
                "dataset {}: image file name {:?} must be a relative path inside the image folder",
                ds.name, s.filename
            )));
        }
        let name = png_name(&s.filename, &originals);
        if !taken.insert(name.clone()) {
            return Err(Error::Config(format!(
                "dataset {}: two images would both be written as {name:?}",
                ds.name
            )));
        }
        names.push(name);
    }

    let written: Vec<Result<()>> = par_map(&(0..all.len()).collect::<Vec<_>>(), |&i| {
        let path = image_dir.join(&names[i]);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let file = std::fs::File::create(&path).map_err(|e| Error::io(&path, e))?;
        let mut w = BufWriter::new(file);
        all[i]
            .1
            .image
            .write_to(&mut w, ImageFormat::Png)
            .map_err(|e| Error::bad_file(&path, format!("cannot write PNG: {e}")))?;
        w.flush().map_err(|e| Error::io(&path, e))
    });
    written.into_iter().collect::<Result<Vec<()>>>()?;

    let mut sentid = 0;
    let mut images = Vec::with_capacity(all.len());
    for (imgid, ((split, s), name)) in all.iter().zip(names).enumerate() {
        let sentences: Vec<OutSentence> = s
            .captions
            .iter()
            .map(|raw| {
                sentid += 1;
                OutSentence {
                    raw,
                    tokens: tokens(raw),
                    imgid,
                    sentid: sentid - 1,
                }
            })
            .collect();
        images.push(OutImage {
            filename: name,
            filepath: "images",
            split: split.name(),
            imgid,
            sentids: sentences.iter().map(|x| x.sentid).collect(),
            sentences,
        });
    }
    let out = OutFile {
        dataset: &ds.name,
        images,
    };
    let json_path = dir.join(format!("dataset_{}.json", ds.name));
    let file = std::fs::File::create(&json_path).map_err(|e| Error::io(&json_path, e))?;
    let mut w = BufWriter::new(file);
    serde_json::to_writer(&mut w, &out).map_err(|e| Error::Json {
        path: json_path.clone(),
        message: e.to_string(),
    })?;
    w.flush().map_err(|e| Error::io(&json_path, e))?;
    Ok(json_path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::scenes::{generate, ScenesConfig};
    use image::Rgb;

    fn tiny_scenes() -> Dataset {
        generate(&ScenesConfig {
            seed: 11,
            image_size: 32,
            train: 6,
            val: 3,
            test: 4,
        })
        .unwrap()
    }

    /// Writes a solid-colour PNG of `w × h` pixels.
    fn png(path: &Path, w: u32, h: u32, c: [u8; 3]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        RgbImage::from_pixel(w, h, Rgb(c)).save(path).unwrap();
    }

    /// A Karpathy JSON with the given `(filename, split, captions)` images.
    fn karpathy_json(dir: &Path, images: &[(&str, &str, &[&str])]) -> PathBuf {
        let imgs: Vec<serde_json::Value> = images
            .iter()
            .map(|(f, s, caps)| {
                serde_json::json!({
                    "filename": f,
                    "split": s,
                    "sentences": caps.iter().map(|c| serde_json::json!({"raw": c})).collect::<Vec<_>>(),
                })
            })
            .collect();
        let path = dir.join("dataset_test.json");
        std::fs::write(
            &path,
            serde_json::json!({"dataset": "test", "images": imgs}).to_string(),
        )
        .unwrap();
        path
    }

    /// Images a.png .. d.png (different sizes) and a Karpathy JSON naming them.
    fn small_karpathy(dir: &Path) -> PathBuf {
        png(&dir.join("a.png"), 40, 30, [200, 0, 0]);
        png(&dir.join("b.png"), 16, 16, [0, 200, 0]);
        png(&dir.join("c.png"), 20, 50, [0, 0, 200]);
        png(&dir.join("d.png"), 16, 16, [9, 9, 9]);
        karpathy_json(
            dir,
            &[
                ("a.png", "train", &["first a", "second a"]),
                ("b.png", "restval", &["only b"]),
                ("c.png", "val", &["c"]),
                ("d.png", "test", &["d"]),
            ],
        )
    }

    fn opts(size: u32) -> LoadOptions {
        LoadOptions {
            image_size: size,
            skip_unreadable: false,
        }
    }

    #[test]
    fn scenes_round_trip_through_karpathy_layout() {
        let ds = tiny_scenes();
        let dir = tempfile::tempdir().unwrap();
        let json = write_karpathy(&ds, dir.path()).unwrap();
        assert_eq!(json, dir.path().join("dataset_scenes.json"));
        assert!(dir.path().join("images/train_00000.png").is_file());
        let (back, report) = load_karpathy(&json, None, &opts(32)).unwrap();
        assert!(report.skipped.is_empty());
        assert_eq!(back, ds);
        assert_eq!(back.content_hash(), ds.content_hash());

        // The written JSON has Karpathy's fields.
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        assert_eq!(v["dataset"], "scenes");
        let first = &v["images"][0];
        assert_eq!(first["filepath"], "images");
        assert_eq!(first["split"], "train");
        assert_eq!(first["imgid"], 0);
        assert_eq!(first["sentids"].as_array().unwrap().len(), 5);
        let sent = &first["sentences"][1];
        assert_eq!(sent["sentid"], 1);
        assert_eq!(sent["imgid"], 0);
        assert_eq!(sent["raw"], ds.train[0].captions[1].as_str());
        let toks: Vec<String> = tokens(&ds.train[0].captions[1]);
        assert_eq!(sent["tokens"], serde_json::json!(toks));
        assert_eq!(v["images"][6]["split"], "val");
        assert_eq!(v["images"][6]["sentences"][0]["sentid"], 30);
    }

    #[test]
    fn tokens_are_lowercase_words() {
        assert_eq!(
            tokens("A Dog, running: in the park ."),
            vec!["a", "dog", "running", "in", "the", "park"]
        );
    }

    #[test]
    fn write_renames_non_png_and_rejects_unsafe_names() {
        let mut ds = tiny_scenes();
        ds.train[0].filename = "sub/photo.jpg".into();
        let dir = tempfile::tempdir().unwrap();
        let json = write_karpathy(&ds, dir.path()).unwrap();
        assert!(dir.path().join("images/sub/photo.png").is_file());
        let (back, _) = load_karpathy(&json, None, &opts(32)).unwrap();
        assert_eq!(back.train[0].filename, "sub/photo.png");
        assert_eq!(back.train[0].image, ds.train[0].image);

        ds.train[1].filename = "../escape.png".into();
        assert!(matches!(
            write_karpathy(&ds, dir.path()),
            Err(Error::Config(_))
        ));
        ds.train[1].filename = ds.train[2].filename.clone();
        assert!(matches!(
            write_karpathy(&ds, dir.path()),
            Err(Error::Config(_))
        ));
    }

    #[test]
    fn karpathy_restval_goes_to_train_and_images_are_resized() {
        let dir = tempfile::tempdir().unwrap();
        let json = small_karpathy(dir.path());
        let (ds, _) = load_karpathy(&json, None, &opts(24)).unwrap();
        assert_eq!(ds.name, "test");
        let train: Vec<&str> = ds.train.iter().map(|s| s.filename.as_str()).collect();
        assert_eq!(train, ["a.png", "b.png"]);
        assert_eq!(ds.train[0].captions, ["first a", "second a"]);
        assert_eq!(ds.val[0].filename, "c.png");
        assert_eq!(ds.test[0].filename, "d.png");
        assert_eq!(ds.image_size(), Some((24, 24)));
        assert_eq!(ds.train[0].image.get_pixel(12, 12).0, [200, 0, 0]);
    }

    #[test]
    fn captions_only_match_the_full_load_without_opening_images() {
        let dir = tempfile::tempdir().unwrap();
        let json = small_karpathy(dir.path());
        let (full, _) = load_karpathy(&json, None, &opts(16)).unwrap();
        for f in ["a.png", "b.png", "c.png", "d.png"] {
            std::fs::remove_file(dir.path().join(f)).unwrap();
        }
        let caps = load_karpathy_captions(&json).unwrap();
        assert_eq!(caps.name, full.name);
        for split in Split::ALL {
            let (a, b) = (caps.split(split), full.split(split));
            assert_eq!(a.len(), b.len());
            for (x, y) in a.iter().zip(b) {
                assert_eq!((&x.filename, &x.captions), (&y.filename, &y.captions));
                assert_eq!(x.image.dimensions(), (0, 0));
            }
        }
        assert_eq!(caps.captions_digest(), full.captions_digest());
    }

    #[test]
    fn karpathy_filepath_and_image_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("pics");
        png(&root.join("train2014/x.png"), 16, 16, [1, 2, 3]);
        png(&root.join("y.png"), 16, 16, [4, 5, 6]);
        png(&root.join("z.png"), 16, 16, [7, 8, 9]);
        let json = dir.path().join("dataset_coco.json");
        std::fs::write(
            &json,
            r#"{"images": [
                {"filepath": "train2014", "filename": "x.png", "split": "train", "sentences": [{"raw": " a x "}], "cocoid": 1},
                {"filename": "y.png", "split": "val", "sentences": [{"raw": "a y", "tokens": ["a", "y"]}]},
                {"filepath": "", "filename": "z.png", "split": "test", "sentences": [{"raw": "a z"}, {"raw": "  "}]}
            ]}"#,
        )
        .unwrap();
        let (ds, _) = load_karpathy(&json, Some(&root), &opts(16)).unwrap();
        assert_eq!(ds.name, "coco");
        assert_eq!(ds.train[0].filename, "x.png");
        assert_eq!(ds.train[0].captions, ["a x"]);
        assert_eq!(ds.train[0].image.get_pixel(0, 0).0, [1, 2, 3]);
        assert_eq!(ds.test[0].captions, ["a z"]);
    }

    #[test]
    fn per_split_groups_captions_by_image() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("images");
        for (n, c) in [
            ("a.jpg", 10u8),
            ("b.jpg", 20),
            ("c.png", 30),
            ("d.png", 40),
            ("e.png", 50),
        ] {
            png(&root.join(n), 20, 20, [c, c, c]);
        }
        // A PNG behind a .jpg name: the format is guessed from the contents.
        let train = dir.path().join("flickr30k_train.json");
        std::fs::write(
            &train,
            r#"[
                {"image": "b.jpg", "caption": "b one", "image_id": "1"},
                {"image": "a.jpg", "caption": "a one", "image_id": "0"},
                {"image": "b.jpg", "caption": "b two", "image_id": "1"},
                {"image": "a.jpg", "caption": ["a two", "a three"], "image_id": "0"},
                {"image": "b.jpg", "caption": "b three", "image_id": "1"}
            ]"#,
        )
        .unwrap();
        let val = dir.path().join("flickr30k_val.json");
        std::fs::write(
            &val,
            r#"[{"image": "c.png", "caption": ["c one", "c two"]}, {"image": "d.png", "caption": ["d one"]}]"#,
        )
        .unwrap();
        let test = dir.path().join("flickr30k_test.json");
        std::fs::write(&test, r#"[{"image": "e.png", "caption": "e only"}]"#).unwrap();
        let (ds, report) =
            load_per_split("flickr30k", &train, &val, &test, &root, &opts(16)).unwrap();
        assert!(report.skipped.is_empty());
        assert_eq!(ds.name, "flickr30k");
        assert_eq!(ds.train.len(), 2);
        assert_eq!(ds.train[0].filename, "b.jpg");
        assert_eq!(ds.train[0].captions, ["b one", "b two", "b three"]);
        assert_eq!(ds.train[1].filename, "a.jpg");
        assert_eq!(ds.train[1].captions, ["a one", "a two", "a three"]);
        assert_eq!(ds.val.len(), 2);
        assert_eq!(ds.val[0].captions, ["c one", "c two"]);
        assert_eq!(ds.val[1].captions, ["d one"]);
        assert_eq!(ds.test[0].captions, ["e only"]);
        assert_eq!(ds.image_size(), Some((16, 16)));
        assert_eq!(ds.test[0].image.get_pixel(3, 3).0, [50, 50, 50]);
    }

    #[test]
    fn missing_image_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let json = small_karpathy(dir.path());
        std::fs::remove_file(dir.path().join("c.png")).unwrap();
        let err = load_karpathy(&json, None, &opts(16)).unwrap_err();
        assert!(matches!(err, Error::MissingImage { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("c.png") && msg.contains("dataset_test.json"),
            "{msg}"
        );
    }

    #[test]
    fn undecodable_image_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let json = small_karpathy(dir.path());
        std::fs::write(dir.path().join("b.png"), b"not an image at all").unwrap();
        let err = load_karpathy(&json, None, &opts(16)).unwrap_err();
        assert!(matches!(err, Error::BadImage { .. }), "{err}");
        assert!(err.to_string().contains("b.png"), "{err}");
        // A truncated PNG too.
        let bytes = std::fs::read(dir.path().join("a.png")).unwrap();
        std::fs::write(dir.path().join("b.png"), &bytes[..bytes.len() / 2]).unwrap();
        let err = load_karpathy(&json, None, &opts(16)).unwrap_err();
        assert!(matches!(err, Error::BadImage { .. }), "{err}");
    }

    #[test]
    fn malformed_json_is_an_error_with_position() {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("dataset_x.json");
        std::fs::write(&json, "{\"images\": [\n {\"filename\": \"a.png\",").unwrap();
        let err = load_karpathy(&json, None, &opts(16)).unwrap_err();
        assert!(matches!(err, Error::Json { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("dataset_x.json") && msg.contains("line 2"),
            "{msg}"
        );
    }

    #[test]
    fn wrong_layout_is_a_json_error() {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("dataset_x.json");
        let cases = [
            // Missing "sentences".
            r#"{"images": [{"filename": "a.png", "split": "train"}]}"#,
            // Wrong type.
            r#"{"images": [{"filename": 3, "split": "train", "sentences": []}]}"#,
            // Unknown split.
            r#"{"images": [{"filename": "a.png", "split": "holdout", "sentences": [{"raw": "x"}]}]}"#,
            // Not an object at all.
            r#"[1, 2, 3]"#,
        ];
        for case in cases {
            std::fs::write(&json, case).unwrap();
            let err = load_karpathy(&json, None, &opts(16)).unwrap_err();
            assert!(matches!(err, Error::Json { .. }), "{case}: {err}");
            let msg = err.to_string();
            assert!(
                msg.contains("dataset_x.json") && msg.contains("column"),
                "{msg}"
            );
        }
        // Per-split: a caption that is a number.
        let bad = dir.path().join("train.json");
        std::fs::write(&bad, r#"[{"image": "a.png", "caption": 5}]"#).unwrap();
        let err = load_per_split("x", &bad, &bad, &bad, dir.path(), &opts(16)).unwrap_err();
        assert!(matches!(err, Error::Json { .. }), "{err}");
        assert!(err.to_string().contains("train.json"), "{err}");
    }

    #[test]
    fn image_without_captions_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let json = small_karpathy(dir.path());
        karpathy_json(
            dir.path(),
            &[
                ("a.png", "train", &["a"]),
                ("b.png", "val", &[]),
                ("d.png", "test", &["d"]),
            ],
        );
        let err = load_karpathy(&json, None, &opts(16)).unwrap_err();
        assert!(
            matches!(err, Error::NoCaptions { ref image, .. } if image == "b.png"),
            "{err}"
        );
        assert!(err.to_string().contains("dataset_test.json"), "{err}");

        // Per-split: an empty caption list, even with skip_unreadable.
        let list = dir.path().join("val.json");
        std::fs::write(&list, r#"[{"image": "c.png", "caption": []}]"#).unwrap();
        let ok = dir.path().join("ok.json");
        std::fs::write(&ok, r#"[{"image": "a.png", "caption": "a"}]"#).unwrap();
        let skip = LoadOptions {
            image_size: 16,
            skip_unreadable: true,
        };
        let err = load_per_split("x", &ok, &list, &ok, dir.path(), &skip).unwrap_err();
        assert!(matches!(err, Error::NoCaptions { .. }), "{err}");
        assert!(err.to_string().contains("val.json"), "{err}");
    }

    #[test]
    fn empty_split_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let json = small_karpathy(dir.path());
        karpathy_json(
            dir.path(),
            &[("a.png", "train", &["a"]), ("c.png", "val", &["c"])],
        );
        let err = load_karpathy(&json, None, &opts(16)).unwrap_err();
        assert!(
            matches!(err, Error::EmptySplit { ref split, .. } if split == "test"),
            "{err}"
        );
        assert!(err.to_string().contains("dataset_test.json"), "{err}");

        let ok = dir.path().join("ok.json");
        std::fs::write(&ok, r#"[{"image": "a.png", "caption": "a"}]"#).unwrap();
        let empty = dir.path().join("empty_test.json");
        std::fs::write(&empty, "[]").unwrap();
        let err = load_per_split("x", &ok, &ok, &empty, dir.path(), &opts(16)).unwrap_err();
        assert!(
            matches!(err, Error::EmptySplit { ref split, .. } if split == "test"),
            "{err}"
        );
        assert!(err.to_string().contains("empty_test.json"), "{err}");
    }

    #[test]
    fn skip_unreadable_reports_what_it_skipped() {
        let dir = tempfile::tempdir().unwrap();
        png(&dir.path().join("e.png"), 16, 16, [1, 1, 1]);
        let json = small_karpathy(dir.path());
        karpathy_json(
            dir.path(),
            &[
                ("a.png", "train", &["a"]),
                ("missing1.png", "train", &["m"]),
                ("b.png", "train", &["b"]),
                ("missing2.png", "val", &["m"]),
                ("c.png", "val", &["c"]),
                ("d.png", "test", &["d"]),
                ("e.png", "test", &["e"]),
            ],
        );
        std::fs::write(dir.path().join("e.png"), b"garbage").unwrap();
        let skip = LoadOptions {
            image_size: 16,
            skip_unreadable: true,
        };
        let (ds, report) = load_karpathy(&json, None, &skip).unwrap();
        assert_eq!(report.skipped.len(), 3, "{:?}", report.skipped);
        assert!(report.skipped[0].0.ends_with("missing1.png"));
        assert!(report.skipped[0].1.contains("not found"));
        assert!(report.skipped[1].0.ends_with("missing2.png"));
        assert!(report.skipped[2].0.ends_with("e.png"));
        assert!(report.skipped[2].1.contains("decode"));
        let train: Vec<&str> = ds.train.iter().map(|s| s.filename.as_str()).collect();
        assert_eq!(train, ["a.png", "b.png"]);
        assert_eq!(ds.val.len(), 1);
        assert_eq!(ds.test.len(), 1);

        // Without skipping, the first bad image in file order is the error.
        let err = load_karpathy(&json, None, &opts(16)).unwrap_err();
        assert!(err.to_string().contains("missing1.png"), "{err}");

        // Skipping every test image leaves an empty split: still an error.
        std::fs::remove_file(dir.path().join("d.png")).unwrap();
        let err = load_karpathy(&json, None, &skip).unwrap_err();
        assert!(matches!(err, Error::EmptySplit { .. }), "{err}");
    }

    #[test]
    fn missing_annotation_file_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = load_karpathy(&dir.path().join("nope.json"), None, &opts(16)).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err}");
        assert!(err.to_string().contains("nope.json"));
    }

    #[test]
    fn load_options_defaults() {
        let o = LoadOptions::default();
        assert_eq!(o.image_size, 32);
        assert!(!o.skip_unreadable);
        let o: LoadOptions = serde_json::from_str(r#"{"skip_unreadable": true}"#).unwrap();
        assert_eq!(o.image_size, 32);
        assert!(o.skip_unreadable);
        assert!(matches!(
            load_karpathy(Path::new("x.json"), None, &opts(0)),
            Err(Error::Config(_))
        ));
    }
}
