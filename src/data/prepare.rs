//! Flickr30K and COCO from a user's own copy, prepared once for fast loads
//! (`vl-distill data prepare`).
//!
//! [`prepare`] takes a folder (SOURCE) holding the dataset as it is
//! distributed, under the original names:
//!
//! * **Flickr30K**: the images as `flickr30k-images.tar.gz` (or `.tgz`,
//!   `.tar`, `.zip`), or that archive extracted into `flickr30k-images/`;
//! * **COCO 2014**: `train2014.zip` and `val2014.zip`, or the folders
//!   `train2014/` and `val2014/` (only the ones the split file uses);
//! * **Karpathy's split file**: `dataset_flickr30k.json` / `dataset_coco.json`,
//!   loose, in `caption_datasets/`, or inside `caption_datasets.zip`.
//!
//! A folder and an archive of the same piece may both be there (a
//! half-extracted copy): images are taken from the folder first, and the
//! archive is read only for those the folder lacks. Inside a folder or an
//! archive an image is found by its file name, at any depth.
//!
//! It checks each piece (a missing one is an error listing every name it
//! looked for), that the split file has Karpathy's layout and belongs to the
//! dataset asked for, and that every image it names is there (a count and the
//! first names, unless [`PrepareOptions::allow_missing`] drops them); split
//! sizes other than Karpathy's are a warning. It then writes DEST:
//!
//! * `dataset_flickr30k.json` / `dataset_coco.json`: the split file with every
//!   field kept, less dropped images, each image's `filepath` set to its
//!   folder (`flickr30k-images`, `train2014`, `val2014`) and its `filename`
//!   to the PNG written (`1000092795.jpg` → `1000092795.png`);
//! * the images, decoded, converted to RGB and resized once to
//!   `image_size × image_size` (aspect ratio not kept, Catmull-Rom) exactly as
//!   [`load_karpathy`](super::karpathy::load_karpathy) resizes, stored as
//!   lossless PNG: a load at that size then only decodes, and returns the very
//!   pixels a load of the original JPEGs would (default 224 px, the `paper`
//!   profile's `data.image_size`; smaller profiles resize from there);
//! * `prepare.json`: the manifest (dataset, image size, counts, dropped
//!   images, and whether the preparation finished).
//!
//! The JSON loads with `load_karpathy(DEST/dataset_*.json, None, ..)`, i.e.
//! `data.source = {kind = "karpathy", json = "DEST/dataset_*.json"}`, which is
//! what the `paper` profile points at by default (`data/flickr30k`).
//!
//! Preparing is idempotent and resumable: images are written under a
//! temporary name and renamed, so an image file present at the right size is
//! complete and is not made again; the split file is written last; a DEST
//! whose manifest says it finished is left alone. A non-empty DEST that holds
//! no manifest is refused (it may be the user's own copy).
//!
//! [`cache_embeddings`](crate::text::cache::cache_embeddings) encodes every caption of a prepared set with a text
//! encoder into `DEST/cache/`, where every run on that split file finds them
//! (see [`CaptionEmbeddings::load_or_compute_shared`]).

use super::karpathy::square_rgb;
use super::Split;
use crate::error::{Error, Result};
use crate::io::write_atomic;
use crate::progress::Progress;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::Instant;

/// The default side of the prepared images: the `paper` profile's
/// `data.image_size`.
pub const DEFAULT_IMAGE_SIZE: u32 = 224;

/// The manifest file in DEST.
pub const MANIFEST: &str = "prepare.json";

/// How many missing image names an error or a report lists.
const SHOW_MISSING: usize = 10;

/// The datasets [`prepare`] knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Corpus {
    /// Flickr30K (31,014 images in Karpathy's split, 5 captions each).
    Flickr30k,
    /// COCO 2014 (123,287 images in Karpathy's split, about 5 captions each).
    Coco,
}

impl Corpus {
    /// Both, in order.
    pub const ALL: [Corpus; 2] = [Corpus::Flickr30k, Corpus::Coco];

    /// `"flickr30k"` or `"coco"`: the `dataset` field of Karpathy's file and
    /// the name results carry.
    pub fn name(self) -> &'static str {
        match self {
            Corpus::Flickr30k => "flickr30k",
            Corpus::Coco => "coco",
        }
    }

    /// The name as people write it (`"Flickr30K"`, `"COCO"`).
    pub fn title(self) -> &'static str {
        match self {
            Corpus::Flickr30k => "Flickr30K",
            Corpus::Coco => "COCO",
        }
    }

    /// By [`name`](Self::name); anything else is an error naming the choices.
    pub fn parse(s: &str) -> Result<Corpus> {
        Corpus::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| {
                Error::Config(format!(
                    "unknown dataset {s:?} to prepare (choose flickr30k or coco)"
                ))
            })
    }

    /// Karpathy's split file name: `dataset_flickr30k.json` / `dataset_coco.json`.
    pub fn json_name(self) -> String {
        format!("dataset_{}.json", self.name())
    }

    /// Where the prepared set goes by default: `data/flickr30k`, `data/coco`.
    pub fn default_dest(self) -> PathBuf {
        Path::new("data").join(self.name())
    }

    /// Karpathy's train (with `restval`) / val / test sizes.
    pub fn karpathy_sizes(self) -> [usize; 3] {
        match self {
            Corpus::Flickr30k => [29_000, 1_014, 1_000],
            Corpus::Coco => [113_287, 5_000, 5_000],
        }
    }

    /// The image pieces of the distribution (folder names, archive stems).
    pub fn pieces(self) -> &'static [&'static str] {
        match self {
            Corpus::Flickr30k => &["flickr30k-images"],
            Corpus::Coco => &["train2014", "val2014"],
        }
    }
}

impl std::fmt::Display for Corpus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What to prepare, from where, to where.
#[derive(Debug, Clone)]
pub struct PrepareOptions {
    /// Which dataset.
    pub dataset: Corpus,
    /// The folder holding the user's copy (see the module documentation).
    pub source: PathBuf,
    /// Where the prepared set goes (see [`Corpus::default_dest`]).
    pub dest: PathBuf,
    /// Side of the square images written ([`DEFAULT_IMAGE_SIZE`]).
    pub image_size: u32,
    /// Drop the images the split file names but SOURCE lacks, or that cannot
    /// be decoded, instead of failing; the report lists them.
    pub allow_missing: bool,
    /// A progress bar and log lines on stderr.
    pub progress: bool,
}

impl PrepareOptions {
    /// `dataset` from `source` into its default DEST at the default size,
    /// failing on missing images, without progress output.
    pub fn new(dataset: Corpus, source: impl Into<PathBuf>) -> Self {
        PrepareOptions {
            dataset,
            source: source.into(),
            dest: dataset.default_dest(),
            image_size: DEFAULT_IMAGE_SIZE,
            allow_missing: false,
            progress: false,
        }
    }
}

/// What [`prepare`] did.
#[derive(Debug, Clone)]
pub struct PrepareReport {
    /// The dataset.
    pub dataset: Corpus,
    /// The prepared split file (`DEST/dataset_*.json`).
    pub json: PathBuf,
    /// Side of the images.
    pub image_size: u32,
    /// Images per split in the prepared set (train includes `restval`).
    pub splits: [usize; 3],
    /// Captions in the prepared set.
    pub captions: usize,
    /// Images written by this call.
    pub written: usize,
    /// Images already in DEST from an earlier, interrupted call.
    pub reused: usize,
    /// Images the split file names that SOURCE lacks (dropped; only with
    /// [`PrepareOptions::allow_missing`]).
    pub missing: Vec<String>,
    /// Images that could not be decoded, with why (dropped; only with
    /// [`PrepareOptions::allow_missing`]).
    pub unreadable: Vec<(String, String)>,
    /// Warnings (e.g. split sizes other than Karpathy's).
    pub warnings: Vec<String>,
    /// DEST was already finished and was left alone.
    pub already_done: bool,
    /// Wall-clock seconds.
    pub seconds: f64,
}

impl std::fmt::Display for PrepareReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [tr, va, te] = self.splits;
        let n = self.image_size;
        writeln!(
            f,
            "{}: train {tr} / val {va} / test {te} images, {} captions, {n}x{n} PNG",
            self.dataset, self.captions
        )?;
        if self.already_done {
            writeln!(f, "  already prepared: left as it was")?;
        } else {
            writeln!(
                f,
                "  images: {} written, {} already there from an earlier run ({:.1} s)",
                self.written, self.reused, self.seconds
            )?;
        }
        if !self.missing.is_empty() {
            writeln!(
                f,
                "  dropped {} images not in the source: {}{}",
                self.missing.len(),
                self.missing
                    .iter()
                    .take(SHOW_MISSING)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
                if self.missing.len() > SHOW_MISSING {
                    ", ..."
                } else {
                    ""
                }
            )?;
        }
        if !self.unreadable.is_empty() {
            writeln!(
                f,
                "  dropped {} images that cannot be decoded:",
                self.unreadable.len()
            )?;
            for (name, why) in &self.unreadable {
                writeln!(f, "    {name}: {why}")?;
            }
        }
        for w in &self.warnings {
            writeln!(f, "  warning: {w}")?;
        }
        write!(f, "  split file: {}", self.json.display())
    }
}

/// The manifest `DEST/prepare.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Manifest {
    tool: String,
    dataset: String,
    image_size: u32,
    format: String,
    complete: bool,
    source: String,
    splits: [usize; 3],
    captions: usize,
    missing: Vec<String>,
    unreadable: Vec<(String, String)>,
    warnings: Vec<String>,
}

/// Prepares `opts.dataset` from `opts.source` into `opts.dest` (see the
/// module documentation).
///
/// Errors: [`Error::MissingSource`] (a piece is not there, with every name
/// tried), [`Error::Json`] (a malformed split file or one without Karpathy's
/// layout, naming the entry), [`Error::WrongDataset`], [`Error::NoCaptions`],
/// [`Error::MissingImages`] (without `allow_missing`), [`Error::BadImage`]
/// (an image that cannot be decoded, named with its archive, without
/// `allow_missing`), [`Error::BadFile`] (a truncated or damaged archive),
/// [`Error::EmptySplit`] (a split left without images), [`Error::Config`] (a
/// DEST prepared otherwise, or not by `data prepare`), [`Error::Io`].
pub fn prepare(opts: &PrepareOptions) -> Result<PrepareReport> {
    let t0 = Instant::now();
    if opts.image_size < 8 {
        return Err(Error::Config(format!(
            "image size {} is too small (at least 8 px)",
            opts.image_size
        )));
    }
    let ds = opts.dataset;
    let dest = &opts.dest;
    let out_json = dest.join(ds.json_name());
    let log = |line: &str| {
        if opts.progress {
            crate::progress::log_line(line);
        }
    };

    // A finished DEST is left alone; a foreign one is refused.
    if let Some(m) = read_manifest(dest, ds, opts.image_size)? {
        if m.complete && out_json.is_file() {
            return Ok(PrepareReport {
                dataset: ds,
                json: out_json,
                image_size: m.image_size,
                splits: m.splits,
                captions: m.captions,
                written: 0,
                reused: 0,
                missing: m.missing,
                unreadable: m.unreadable,
                warnings: m.warnings,
                already_done: true,
                seconds: t0.elapsed().as_secs_f64(),
            });
        }
        log(&format!(
            "{}: an unfinished preparation; resuming",
            dest.display()
        ));
    }

    if !opts.source.is_dir() {
        return Err(Error::io(
            &opts.source,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the source folder does not exist",
            ),
        ));
    }

    // (a) + (b): the split file, checked.
    let (json_label, text) = find_split_file(&opts.source, ds)?;
    log(&format!("split file: {}", json_label.display()));
    let (mut root, entries) = parse_split_file(&json_label, &text, ds)?;
    drop(text);
    let mut warnings = Vec::new();
    let counts = split_counts(&entries);
    if counts != ds.karpathy_sizes() {
        let [a, b, c] = ds.karpathy_sizes();
        warnings.push(format!(
            "split sizes train {} / val {} / test {} differ from Karpathy's {} split \
             (train {a} incl. restval / val {b} / test {c}): a subset or another split file?",
            counts[0],
            counts[1],
            counts[2],
            ds.title()
        ));
    }

    // (a) the image pieces and (c) every image in them.
    let mut pieces = Vec::new();
    for (p, name) in ds.pieces().iter().enumerate() {
        let wanted: Vec<&str> = entries
            .iter()
            .filter(|e| e.piece == p)
            .map(|e| e.filename.as_str())
            .collect();
        if wanted.is_empty() {
            pieces.push(Piece::unused());
            continue;
        }
        pieces.push(Piece::locate(&opts.source, ds, name, &wanted, &log)?);
    }
    let mut missing = Vec::new();
    let mut located: Vec<Option<(usize, String)>> = Vec::with_capacity(entries.len());
    for e in &entries {
        let found = pieces[e.piece].find(&e.filename);
        if found.is_none() {
            missing.push(e.filename.clone());
        }
        located.push(found);
    }
    if !missing.is_empty() && !opts.allow_missing {
        let looked_in: Vec<String> = pieces
            .iter()
            .flat_map(|p| p.stores.iter().map(|s| s.path().display().to_string()))
            .collect();
        return Err(Error::MissingImages {
            count: missing.len(),
            total: entries.len(),
            first: missing.iter().take(SHOW_MISSING).cloned().collect(),
            annotation: json_label,
            looked_in: looked_in.join(", "),
        });
    }
    for w in &warnings {
        log(&format!("warning: {w}"));
    }
    if !missing.is_empty() {
        log(&format!(
            "allow_missing: dropping {} of {} images not in the source",
            missing.len(),
            entries.len()
        ));
    }

    // (d) DEST.
    start_dest(dest, ds, opts)?;
    for name in ds.pieces() {
        let dir = dest.join(name);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    }
    let mut todo: Vec<Job> = Vec::new();
    let mut reused = 0;
    for (i, (e, loc)) in entries.iter().zip(&located).enumerate() {
        let Some((store, member)) = loc else { continue };
        let out = dest.join(ds.pieces()[e.piece]).join(&e.out_name);
        if image::image_dimensions(&out).ok() == Some((opts.image_size, opts.image_size)) {
            reused += 1;
            continue;
        }
        todo.push(Job {
            entry: i,
            piece: e.piece,
            store: *store,
            member: member.clone(),
            out,
        });
    }
    if reused > 0 {
        log(&format!(
            "{reused} images already in {} from an earlier run",
            dest.display()
        ));
    }
    let bar = Progress::new(todo.len() as u64, "prepare", opts.progress);
    let failures = convert_all(&pieces, &todo, opts, &bar)?;
    bar.finish();
    let written = todo.len() - failures.len();
    if let Some((job, why)) = failures.first().filter(|_| !opts.allow_missing) {
        let others = failures.len() - 1;
        let job = &todo[*job];
        return Err(Error::BadImage {
            path: pieces[job.piece].stores[job.store].member_path(&job.member),
            message: if others > 0 {
                format!("{why} (and {others} more)")
            } else {
                why.clone()
            },
        });
    }
    let unreadable: Vec<(String, String)> = failures
        .iter()
        .map(|(j, why)| (entries[todo[*j].entry].filename.clone(), why.clone()))
        .collect();
    let bad: HashSet<usize> = failures.iter().map(|(j, _)| todo[*j].entry).collect();

    // The split file, last.
    let images = root
        .get_mut("images")
        .and_then(Value::as_array_mut)
        .expect("checked when parsing");
    let old = std::mem::take(images);
    let mut kept = Vec::with_capacity(old.len());
    let mut splits = [0usize; 3];
    let mut captions = 0;
    for (i, (mut img, e)) in old.into_iter().zip(&entries).enumerate() {
        if located[i].is_none() || bad.contains(&i) {
            continue;
        }
        img["filename"] = Value::String(e.out_name.clone());
        img["filepath"] = Value::String(ds.pieces()[e.piece].to_string());
        splits[split_index(e.split)] += 1;
        captions += e.captions;
        kept.push(img);
    }
    *images = kept;
    root["dataset"] = Value::String(ds.name().to_string());
    for (k, s) in Split::ALL.iter().enumerate() {
        if splits[k] == 0 {
            return Err(Error::EmptySplit {
                source_name: if missing.is_empty() && unreadable.is_empty() {
                    json_label.display().to_string()
                } else {
                    format!("{} after dropping missing images", json_label.display())
                },
                split: s.name().to_string(),
            });
        }
    }
    let bytes = serde_json::to_vec(&root).map_err(|e| Error::Json {
        path: out_json.clone(),
        message: e.to_string(),
    })?;
    write_atomic(&out_json, &bytes)?;
    let manifest = Manifest {
        tool: "vl-distill data prepare".into(),
        dataset: ds.name().into(),
        image_size: opts.image_size,
        format: "png".into(),
        complete: true,
        source: opts.source.display().to_string(),
        splits,
        captions,
        missing: missing.clone(),
        unreadable: unreadable.clone(),
        warnings: warnings.clone(),
    };
    write_manifest(dest, &manifest)?;
    Ok(PrepareReport {
        dataset: ds,
        json: out_json,
        image_size: opts.image_size,
        splits,
        captions,
        written,
        reused,
        missing,
        unreadable,
        warnings,
        already_done: false,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

// --- The split file ------------------------------------------------------------

/// One image of the split file, checked.
struct Entry {
    /// `filename` as written.
    filename: String,
    /// Index into [`Corpus::pieces`].
    piece: usize,
    split: Split,
    /// How many non-empty captions.
    captions: usize,
    /// The PNG's file name.
    out_name: String,
}

fn split_index(s: Split) -> usize {
    match s {
        Split::Train => 0,
        Split::Val => 1,
        Split::Test => 2,
    }
}

fn split_counts(entries: &[Entry]) -> [usize; 3] {
    let mut c = [0; 3];
    for e in entries {
        c[split_index(e.split)] += 1;
    }
    c
}

/// Finds the split file in `source`: loose, in `caption_datasets/`, or in
/// `caption_datasets.zip`. Returns a label for messages (the file, or
/// `ZIP/member`) and its text.
fn find_split_file(source: &Path, ds: Corpus) -> Result<(PathBuf, String)> {
    let name = ds.json_name();
    let loose = [
        source.join(&name),
        source.join("caption_datasets").join(&name),
    ];
    for p in &loose {
        if p.is_file() {
            let text = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
            return Ok((p.clone(), text));
        }
    }
    let zip_path = source.join("caption_datasets.zip");
    let mut looked_for: Vec<String> = loose.iter().map(|p| p.display().to_string()).collect();
    looked_for.push(format!("{} (holding {name})", zip_path.display()));
    if zip_path.is_file() {
        let mut zip = open_zip(&zip_path)?;
        let names = zip_names(&zip, &zip_path)?;
        if let Some(member) = names.iter().find(|m| base_name(m) == Some(name.as_str())) {
            let label = zip_path.join(member);
            let mut f = zip
                .by_name(member)
                .map_err(|e| Error::bad_file(&zip_path, format!("cannot read {member}: {e}")))?;
            let mut text = String::new();
            f.read_to_string(&mut text)
                .map_err(|e| Error::bad_file(&zip_path, format!("cannot read {member}: {e}")))?;
            return Ok((label, text));
        }
        return Err(Error::MissingSource {
            folder: source.to_path_buf(),
            what: format!("{} split file", ds.title()),
            looked_for,
            hint: Some(format!(
                "caption_datasets.zip holds {}",
                if names.is_empty() {
                    "nothing".to_string()
                } else {
                    names.join(", ")
                }
            )),
        });
    }
    let other = Corpus::ALL
        .into_iter()
        .filter(|c| *c != ds)
        .find(|c| source.join(c.json_name()).is_file());
    Err(Error::MissingSource {
        folder: source.to_path_buf(),
        what: format!("{} split file", ds.title()),
        looked_for,
        hint: other.map(|c| {
            format!(
                "{} is {}'s split file: --dataset {}?",
                c.json_name(),
                c.title(),
                c.name()
            )
        }),
    })
}

/// Which dataset a split file belongs to: its `dataset` field, else its
/// first file name (`COCO_…`, `NNN.jpg` for Flickr30K, `NNN_hex.jpg` for
/// Flickr8K).
fn detect_dataset(root: &Value) -> Option<String> {
    if let Some(d) = root.get("dataset").and_then(Value::as_str) {
        return Some(d.to_string());
    }
    let first = root
        .get("images")?
        .as_array()?
        .first()?
        .get("filename")?
        .as_str()?;
    let stem = first.split('.').next().unwrap_or("");
    if first.starts_with("COCO_") {
        Some("coco".into())
    } else if !stem.is_empty() && stem.chars().all(|c| c.is_ascii_digit()) {
        Some("flickr30k".into())
    } else if stem.contains('_') {
        Some("flickr8k".into())
    } else {
        None
    }
}

/// Parses and checks the split file; returns the JSON (kept whole, to be
/// written again) and its entries in file order.
fn parse_split_file(label: &Path, text: &str, ds: Corpus) -> Result<(Value, Vec<Entry>)> {
    let json_err = |message: String| Error::Json {
        path: label.to_path_buf(),
        message,
    };
    let root: Value = serde_json::from_str(text).map_err(|e| json_err(e.to_string()))?;
    if let Some(found) = detect_dataset(&root) {
        if found != ds.name() {
            let hint = Corpus::ALL
                .into_iter()
                .find(|c| c.name() == found)
                .map(|c| format!("prepare it with --dataset {c}"));
            return Err(Error::WrongDataset {
                path: label.to_path_buf(),
                expected: ds.name().into(),
                found,
                hint,
            });
        }
    }
    let Some(images) = root.get("images").and_then(Value::as_array) else {
        return Err(json_err(
            "expected an object with an \"images\" list (Karpathy's layout: \
             {\"dataset\", \"images\": [{\"filename\", \"split\", \"sentences\"}]})"
                .into(),
        ));
    };
    let mut entries = Vec::with_capacity(images.len());
    let mut seen: HashMap<(usize, String), usize> = HashMap::new();
    for (i, img) in images.iter().enumerate() {
        let field = |k: &str| img.get(k);
        let Some(filename) = field("filename").and_then(Value::as_str) else {
            return Err(json_err(format!("images[{i}]: no \"filename\" string")));
        };
        let plain = !filename.is_empty()
            && Path::new(filename)
                .components()
                .all(|c| matches!(c, Component::Normal(_)));
        if !plain || filename.contains('/') || filename.contains('\\') {
            return Err(json_err(format!(
                "images[{i}]: filename {filename:?} is not a plain file name"
            )));
        }
        let split = match field("split").and_then(Value::as_str) {
            Some("train") | Some("restval") => Split::Train,
            Some("val") => Split::Val,
            Some("test") => Split::Test,
            other => {
                return Err(json_err(format!(
                    "images[{i}] ({filename}): split {other:?} is not train, restval, val or test"
                )))
            }
        };
        let Some(sentences) = field("sentences").and_then(Value::as_array) else {
            return Err(json_err(format!(
                "images[{i}] ({filename}): no \"sentences\" list"
            )));
        };
        let mut captions = 0;
        for (k, s) in sentences.iter().enumerate() {
            let Some(raw) = s.get("raw").and_then(Value::as_str) else {
                return Err(json_err(format!(
                    "images[{i}] ({filename}): sentences[{k}] has no \"raw\" string"
                )));
            };
            if !raw.trim().is_empty() {
                captions += 1;
            }
        }
        if captions == 0 {
            return Err(Error::NoCaptions {
                annotation: label.to_path_buf(),
                image: filename.to_string(),
            });
        }
        let piece = match ds {
            Corpus::Flickr30k => 0,
            Corpus::Coco => {
                let fp = field("filepath").and_then(Value::as_str).unwrap_or("");
                match ds.pieces().iter().position(|p| *p == fp) {
                    Some(p) => p,
                    None => {
                        return Err(json_err(format!(
                            "images[{i}] ({filename}): filepath {fp:?} is not train2014 or val2014"
                        )))
                    }
                }
            }
        };
        if let Some(j) = seen.insert((piece, filename.to_string()), i) {
            return Err(json_err(format!(
                "images[{i}]: {filename} is named twice (also images[{j}])"
            )));
        }
        let out_name = Path::new(filename)
            .with_extension("png")
            .to_string_lossy()
            .into_owned();
        entries.push(Entry {
            filename: filename.to_string(),
            piece,
            split,
            captions,
            out_name,
        });
    }
    if entries.is_empty() {
        return Err(json_err("the \"images\" list is empty".into()));
    }
    // The same PNG name from two sources (`a.jpg` and `a.jpeg`) is refused.
    let mut outs = HashSet::new();
    for e in &entries {
        if !outs.insert((e.piece, e.out_name.clone())) {
            return Err(json_err(format!(
                "two images would both be written as {}",
                e.out_name
            )));
        }
    }
    Ok((root, entries))
}

// --- The image pieces --------------------------------------------------------------

/// Where images of one piece can be read from.
enum Store {
    Folder(PathBuf),
    TarGz(PathBuf),
    Tar(PathBuf),
    Zip(PathBuf),
}

impl Store {
    fn path(&self) -> &Path {
        match self {
            Store::Folder(p) | Store::TarGz(p) | Store::Tar(p) | Store::Zip(p) => p,
        }
    }

    /// How an image in this store is named in messages.
    fn member_path(&self, member: &str) -> PathBuf {
        match self {
            Store::Folder(_) => PathBuf::from(member),
            _ => self.path().join(member),
        }
    }

    /// The damaged-archive error.
    fn damaged(&self, e: impl std::fmt::Display) -> Error {
        Error::bad_file(
            self.path(),
            format!("cannot read the archive (truncated or damaged?): {e}"),
        )
    }
}

/// One image piece (`flickr30k-images`, `train2014`, `val2014`): the stores
/// found and, per wanted file name, where it is (store, member or file).
struct Piece {
    stores: Vec<Store>,
    index: HashMap<String, (usize, String)>,
}

impl Piece {
    fn unused() -> Piece {
        Piece {
            stores: Vec::new(),
            index: HashMap::new(),
        }
    }

    /// Finds the stores of piece `name` in `source` and indexes them until
    /// every `wanted` file name is found: the folder first, then each archive.
    fn locate(
        source: &Path,
        ds: Corpus,
        name: &str,
        wanted: &[&str],
        log: &dyn Fn(&str),
    ) -> Result<Piece> {
        let candidates = [
            (source.join(name), 0),
            (source.join(format!("{name}.tar.gz")), 1),
            (source.join(format!("{name}.tgz")), 1),
            (source.join(format!("{name}.tar")), 2),
            (source.join(format!("{name}.zip")), 3),
        ];
        let mut stores = Vec::new();
        let mut looked_for = Vec::new();
        for (path, kind) in candidates {
            if kind == 0 {
                looked_for.push(format!("{}/ (folder)", path.display()));
                if path.is_dir() {
                    stores.push(Store::Folder(path));
                }
            } else {
                looked_for.push(path.display().to_string());
                if path.is_file() {
                    stores.push(match kind {
                        1 => Store::TarGz(path),
                        2 => Store::Tar(path),
                        _ => Store::Zip(path),
                    });
                }
            }
        }
        if stores.is_empty() {
            return Err(Error::MissingSource {
                folder: source.to_path_buf(),
                what: format!("{} images ({name})", ds.title()),
                looked_for,
                hint: None,
            });
        }
        let wanted: HashSet<&str> = wanted.iter().copied().collect();
        let mut index = HashMap::new();
        for (k, store) in stores.iter().enumerate() {
            if index.len() == wanted.len() {
                break;
            }
            let t = Instant::now();
            log(&format!("indexing {} ...", store.path().display()));
            let mut add = |base: &str, member: String| {
                if wanted.contains(base) && !index.contains_key(base) {
                    index.insert(base.to_string(), (k, member));
                }
            };
            let mut files = 0usize;
            match store {
                Store::Folder(dir) => walk(dir, &mut |p: &Path| {
                    if let Some(b) = p.file_name().and_then(|b| b.to_str()) {
                        files += 1;
                        add(b, p.display().to_string());
                    }
                })?,
                Store::TarGz(p) | Store::Tar(p) => {
                    let file = File::open(p).map_err(|e| Error::io(p, e))?;
                    let reader: Box<dyn Read> = if matches!(store, Store::TarGz(_)) {
                        Box::new(flate2::read::GzDecoder::new(BufReader::new(file)))
                    } else {
                        Box::new(BufReader::new(file))
                    };
                    for_each_tar_member(store, reader, &mut |member, _| {
                        files += 1;
                        if let Some(b) = usable_base(&member) {
                            let b = b.to_string();
                            add(&b, member);
                        }
                        Ok(true)
                    })?;
                }
                Store::Zip(p) => {
                    let zip = open_zip(p)?;
                    for member in zip_names(&zip, p)? {
                        files += 1;
                        if let Some(b) = usable_base(&member) {
                            let b = b.to_string();
                            add(&b, member);
                        }
                    }
                }
            }
            log(&format!(
                "  {files} files, {} of the {} images wanted from {name} found so far ({:.1} s)",
                index.len(),
                wanted.len(),
                t.elapsed().as_secs_f64()
            ));
        }
        Ok(Piece { stores, index })
    }

    fn find(&self, filename: &str) -> Option<(usize, String)> {
        self.index.get(filename).cloned()
    }
}

/// The file name of an archive member, unless it is a folder or macOS
/// metadata (`__MACOSX/`, `._name`).
fn usable_base(member: &str) -> Option<&str> {
    if member.ends_with('/') || member.split('/').any(|c| c == "__MACOSX") {
        return None;
    }
    base_name(member).filter(|b| !b.starts_with("._"))
}

fn base_name(member: &str) -> Option<&str> {
    member.rsplit('/').next().filter(|b| !b.is_empty())
}

/// Calls `f` on every file under `dir`, at any depth.
fn walk(dir: &Path, f: &mut dyn FnMut(&Path)) -> Result<()> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in rd {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        let ty = entry.file_type().map_err(|e| Error::io(&path, e))?;
        if ty.is_dir() {
            walk(&path, f)?;
        } else if path.is_file() {
            f(&path);
        }
    }
    Ok(())
}

fn open_zip(path: &Path) -> Result<zip::ZipArchive<BufReader<File>>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    zip::ZipArchive::new(BufReader::new(file)).map_err(|e| {
        Error::bad_file(
            path,
            format!("not a readable zip archive (truncated or damaged?): {e}"),
        )
    })
}

/// The member names of a zip archive.
fn zip_names(zip: &zip::ZipArchive<BufReader<File>>, path: &Path) -> Result<Vec<String>> {
    zip.file_names()
        .map(|n| {
            n.map(|n| n.into_owned())
                .map_err(|e| Error::bad_file(path, format!("unreadable member name: {e}")))
        })
        .collect()
}

/// Streams a tar archive, calling `f` with each regular member's name and
/// reader until it returns `false`; any read error is the archive's.
fn for_each_tar_member(
    store: &Store,
    reader: Box<dyn Read>,
    f: &mut dyn FnMut(String, &mut dyn Read) -> Result<bool>,
) -> Result<()> {
    let mut archive = tar::Archive::new(reader);
    let entries = archive.entries().map_err(|e| store.damaged(e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| store.damaged(e))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry
            .path()
            .map_err(|e| store.damaged(e))?
            .to_string_lossy()
            .into_owned();
        if !f(name, &mut entry)? {
            break;
        }
        // Whatever `f` left unread is skipped by the next header read; a
        // truncated member surfaces there as a read error.
    }
    Ok(())
}

// --- Writing ---------------------------------------------------------------------

/// One image to convert.
struct Job {
    entry: usize,
    piece: usize,
    store: usize,
    member: String,
    out: PathBuf,
}

/// Reads the manifest of `dest`: `None` when DEST is empty or absent; an
/// error when DEST holds something else, or another preparation.
fn read_manifest(dest: &Path, ds: Corpus, size: u32) -> Result<Option<Manifest>> {
    let path = dest.join(MANIFEST);
    if !path.is_file() {
        let non_empty = std::fs::read_dir(dest)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false);
        if non_empty {
            return Err(Error::Config(format!(
                "{} is not empty and has no {MANIFEST}: it was not written by \
                 `vl-distill data prepare` (maybe your own copy?); choose a new or empty --out",
                dest.display()
            )));
        }
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let m: Manifest = serde_json::from_str(&text).map_err(|e| Error::Json {
        path: path.clone(),
        message: e.to_string(),
    })?;
    if m.dataset != ds.name() {
        return Err(Error::Config(format!(
            "{} holds a prepared {}, not {}: choose another --out",
            dest.display(),
            m.dataset,
            ds.name()
        )));
    }
    if m.image_size != size {
        return Err(Error::Config(format!(
            "{} was prepared at {} px, not {size}: choose another --out or remove it",
            dest.display(),
            m.image_size
        )));
    }
    Ok(Some(m))
}

/// Creates DEST and marks it unfinished.
fn start_dest(dest: &Path, ds: Corpus, opts: &PrepareOptions) -> Result<()> {
    std::fs::create_dir_all(dest).map_err(|e| Error::io(dest, e))?;
    write_manifest(
        dest,
        &Manifest {
            tool: "vl-distill data prepare".into(),
            dataset: ds.name().into(),
            image_size: opts.image_size,
            format: "png".into(),
            complete: false,
            source: opts.source.display().to_string(),
            splits: [0; 3],
            captions: 0,
            missing: Vec::new(),
            unreadable: Vec::new(),
            warnings: Vec::new(),
        },
    )
}

fn write_manifest(dest: &Path, m: &Manifest) -> Result<()> {
    let mut text = serde_json::to_string_pretty(m).expect("manifest serialises");
    text.push('\n');
    write_atomic(&dest.join(MANIFEST), text.as_bytes())
}

/// Why one image could not be converted.
enum Failure {
    /// It cannot be decoded (the message).
    Corrupt(String),
    /// Writing failed: the whole preparation stops.
    Fatal(Error),
}

/// Decodes, resizes and writes one image.
fn convert(bytes: &[u8], size: u32, out: &Path) -> std::result::Result<(), Failure> {
    let img = image::load_from_memory(bytes).map_err(|e| Failure::Corrupt(e.to_string()))?;
    let rgb = square_rgb(img, size);
    let mut png = Vec::with_capacity(rgb.as_raw().len() / 2);
    rgb.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| Failure::Fatal(Error::Encode(format!("{}: {e}", out.display()))))?;
    write_atomic(out, &png).map_err(Failure::Fatal)
}

/// Converts every job: one thread reads (folders, zips, tar streams), the
/// others decode, resize and write. Returns the jobs (by index) whose image
/// could not be decoded, in job order; without `allow_missing` it stops at
/// the first such image.
fn convert_all(
    pieces: &[Piece],
    jobs: &[Job],
    opts: &PrepareOptions,
    bar: &Progress,
) -> Result<Vec<(usize, String)>> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .max(1);
    let (tx, rx) = mpsc::sync_channel::<(usize, Vec<u8>)>(4 * workers);
    let rx = Mutex::new(rx);
    let failures: Mutex<Vec<(usize, String)>> = Mutex::new(Vec::new());
    let fatal: Mutex<Option<Error>> = Mutex::new(None);
    let stop = AtomicBool::new(false);
    let result = std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let job = rx.lock().expect("queue").recv();
                let Ok((j, bytes)) = job else { break };
                if stop.load(Ordering::Relaxed) {
                    continue;
                }
                match convert(&bytes, opts.image_size, &jobs[j].out) {
                    Ok(()) => bar.inc(""),
                    Err(Failure::Corrupt(why)) => {
                        failures.lock().expect("failures").push((j, why));
                        if !opts.allow_missing {
                            stop.store(true, Ordering::Relaxed);
                        }
                        bar.inc("");
                    }
                    Err(Failure::Fatal(e)) => {
                        fatal.lock().expect("fatal").get_or_insert(e);
                        stop.store(true, Ordering::Relaxed);
                    }
                }
            });
        }
        let r = produce(pieces, jobs, &tx, &stop, &failures, opts.allow_missing);
        drop(tx);
        r
    });
    result?;
    if let Some(e) = fatal.into_inner().expect("fatal") {
        return Err(e);
    }
    let mut failures = failures.into_inner().expect("failures");
    failures.sort_by_key(|(j, _)| *j);
    Ok(failures)
}

/// Sends each job's bytes to the workers, store by store. An image whose
/// bytes cannot be read from a zip (a damaged member) counts as undecodable.
fn produce(
    pieces: &[Piece],
    jobs: &[Job],
    tx: &mpsc::SyncSender<(usize, Vec<u8>)>,
    stop: &AtomicBool,
    failures: &Mutex<Vec<(usize, String)>>,
    allow_missing: bool,
) -> Result<()> {
    let mut by_store: HashMap<(usize, usize), Vec<usize>> = HashMap::new();
    for (j, job) in jobs.iter().enumerate() {
        by_store.entry((job.piece, job.store)).or_default().push(j);
    }
    let mut keys: Vec<(usize, usize)> = by_store.keys().copied().collect();
    keys.sort_unstable();
    let send = |j: usize, bytes: Vec<u8>| -> bool { tx.send((j, bytes)).is_ok() };
    for key in keys {
        let list = &by_store[&key];
        let store = &pieces[key.0].stores[key.1];
        match store {
            Store::Folder(_) => {
                for &j in list {
                    if stop.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                    let p = Path::new(&jobs[j].member);
                    let bytes = std::fs::read(p).map_err(|e| Error::io(p, e))?;
                    if !send(j, bytes) {
                        return Ok(());
                    }
                }
            }
            Store::Zip(path) => {
                let mut zip = open_zip(path)?;
                for &j in list {
                    if stop.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                    let mut bytes = Vec::new();
                    let read = zip
                        .by_name(&jobs[j].member)
                        .map_err(|e| e.to_string())
                        .and_then(|mut f| f.read_to_end(&mut bytes).map_err(|e| e.to_string()));
                    match read {
                        Ok(_) => {
                            if !send(j, bytes) {
                                return Ok(());
                            }
                        }
                        Err(why) => {
                            failures
                                .lock()
                                .expect("failures")
                                .push((j, format!("cannot read it from the archive: {why}")));
                            if !allow_missing {
                                return Ok(());
                            }
                        }
                    }
                }
            }
            Store::TarGz(path) | Store::Tar(path) => {
                let mut wanted: HashMap<&str, usize> =
                    list.iter().map(|&j| (jobs[j].member.as_str(), j)).collect();
                let file = File::open(path).map_err(|e| Error::io(path, e))?;
                let reader: Box<dyn Read> = if matches!(store, Store::TarGz(_)) {
                    Box::new(flate2::read::GzDecoder::new(BufReader::new(file)))
                } else {
                    Box::new(BufReader::new(file))
                };
                let mut stopped = false;
                // Reading stops once every wanted member was sent.
                for_each_tar_member(store, reader, &mut |member, r| {
                    if let Some(j) = wanted.remove(member.as_str()) {
                        let mut bytes = Vec::new();
                        r.read_to_end(&mut bytes).map_err(|e| store.damaged(e))?;
                        if !send(j, bytes) || stop.load(Ordering::Relaxed) {
                            stopped = true;
                            return Ok(false);
                        }
                    }
                    Ok(!wanted.is_empty())
                })?;
                if stopped {
                    return Ok(());
                }
            }
        }
    }
    Ok(())
}
