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
//! (see [`CaptionEmbeddings::load_or_compute_shared`](crate::text::CaptionEmbeddings::load_or_compute_shared)).
//!
//! The code: `split_file` finds and checks Karpathy's split file, `pieces`
//! finds the image folders and archives and the images in them, `writing`
//! keeps DEST's manifest and converts the images; [`prepare`] drives them.

mod pieces;
mod split_file;
mod writing;

use super::Split;
use crate::error::{Error, Result};
use crate::io::write_atomic;
use crate::progress::Progress;
use pieces::Piece;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use split_file::{find_split_file, parse_split_file, split_counts, split_index, Entry};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;
use writing::{convert_all, read_manifest, start_dest, write_manifest, Job};

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
    check_image_size(opts.image_size)?;
    let log = |line: &str| {
        if opts.progress {
            crate::progress::log_line(line);
        }
    };
    let out_json = opts.dest.join(opts.dataset.json_name());
    if let Some(m) = finished_manifest(opts, &out_json, &log)? {
        return Ok(finished_report(opts.dataset, out_json, m, t0));
    }
    check_source(&opts.source)?;
    let mut split = read_split_file(opts.dataset, &opts.source, &log)?;
    let warnings = split_size_warnings(opts.dataset, &split.entries);
    let pieces = locate_pieces(opts, &split.entries, &log)?;
    let (located, missing) = find_images(&pieces, &split.entries);
    check_missing(&pieces, &split, &missing, opts.allow_missing)?;
    log_warnings(&warnings, &missing, split.entries.len(), &log);
    make_dest(opts)?;
    let (jobs, reused) = plan_jobs(opts, &split.entries, &located, &log);
    let converted = convert_images(&pieces, &split.entries, &jobs, opts)?;
    let (splits, captions) = rewrite_split_file(&mut split, &located, &converted.bad, opts.dataset);
    let dropped = !missing.is_empty() || !converted.unreadable.is_empty();
    check_splits(&splits, &split.label, dropped)?;
    let mut report = PrepareReport {
        dataset: opts.dataset,
        json: out_json,
        image_size: opts.image_size,
        splits,
        captions,
        written: converted.written,
        reused,
        missing,
        unreadable: converted.unreadable,
        warnings,
        already_done: false,
        seconds: 0.0,
    };
    write_prepared(opts, &split.root, &report)?;
    report.seconds = t0.elapsed().as_secs_f64();
    Ok(report)
}

/// Where a split file's image is: its store and member (or file) in its piece; `None` if not found.
type Location = Option<(usize, String)>;

/// The split file read from SOURCE, checked.
struct SplitFile {
    /// Where it was read from (the file, or `ZIP/member`), for messages.
    label: PathBuf,
    /// The whole JSON, written again to DEST.
    root: Value,
    /// Its images, in file order.
    entries: Vec<Entry>,
}

/// What converting the images came to.
struct Converted {
    /// Images written.
    written: usize,
    /// Images that could not be decoded, by file name, with why.
    unreadable: Vec<(String, String)>,
    /// The entries of those images.
    bad: HashSet<usize>,
}

/// Refuses an image side under 8 px.
fn check_image_size(size: u32) -> Result<()> {
    if size < 8 {
        return Err(Error::Config(format!(
            "image size {size} is too small (at least 8 px)"
        )));
    }
    Ok(())
}

/// The manifest of a finished DEST (to be left alone); `None` if there is work to do.
fn finished_manifest(
    opts: &PrepareOptions,
    out_json: &Path,
    log: &dyn Fn(&str),
) -> Result<Option<Manifest>> {
    let Some(m) = read_manifest(&opts.dest, opts.dataset, opts.image_size)? else {
        return Ok(None);
    };
    if m.complete && out_json.is_file() {
        return Ok(Some(m));
    }
    log(&format!(
        "{}: an unfinished preparation; resuming",
        opts.dest.display()
    ));
    Ok(None)
}

/// The report of a DEST an earlier call finished, from its manifest.
fn finished_report(ds: Corpus, json: PathBuf, m: Manifest, t0: Instant) -> PrepareReport {
    PrepareReport {
        dataset: ds,
        json,
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
    }
}

/// Refuses a SOURCE that is not a folder.
fn check_source(source: &Path) -> Result<()> {
    if !source.is_dir() {
        return Err(Error::io(
            source,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the source folder does not exist",
            ),
        ));
    }
    Ok(())
}

/// Finds, reads and checks the split file in SOURCE.
fn read_split_file(ds: Corpus, source: &Path, log: &dyn Fn(&str)) -> Result<SplitFile> {
    let (label, text) = find_split_file(source, ds)?;
    log(&format!("split file: {}", label.display()));
    let (root, entries) = parse_split_file(&label, &text, ds)?;
    Ok(SplitFile {
        label,
        root,
        entries,
    })
}

/// A warning if the split sizes differ from Karpathy's.
fn split_size_warnings(ds: Corpus, entries: &[Entry]) -> Vec<String> {
    let mut warnings = Vec::new();
    let counts = split_counts(entries);
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
    warnings
}

/// Locates the stores of each piece the split file uses and indexes the images it names there.
fn locate_pieces(
    opts: &PrepareOptions,
    entries: &[Entry],
    log: &dyn Fn(&str),
) -> Result<Vec<Piece>> {
    let ds = opts.dataset;
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
        pieces.push(Piece::locate(&opts.source, ds, name, &wanted, log)?);
    }
    Ok(pieces)
}

/// Where each entry's image is, and the file names of the images not found.
fn find_images(pieces: &[Piece], entries: &[Entry]) -> (Vec<Location>, Vec<String>) {
    let mut missing = Vec::new();
    let mut located: Vec<Location> = Vec::with_capacity(entries.len());
    for e in entries {
        let found = pieces[e.piece].find(&e.filename);
        if found.is_none() {
            missing.push(e.filename.clone());
        }
        located.push(found);
    }
    (located, missing)
}

/// Refuses missing images unless `allow_missing`, naming the first and where they were looked for.
fn check_missing(
    pieces: &[Piece],
    split: &SplitFile,
    missing: &[String],
    allow_missing: bool,
) -> Result<()> {
    if missing.is_empty() || allow_missing {
        return Ok(());
    }
    let looked_in: Vec<String> = pieces
        .iter()
        .flat_map(|p| p.stores.iter().map(|s| s.path().display().to_string()))
        .collect();
    Err(Error::MissingImages {
        count: missing.len(),
        total: split.entries.len(),
        first: missing.iter().take(SHOW_MISSING).cloned().collect(),
        annotation: split.label.clone(),
        looked_in: looked_in.join(", "),
    })
}

/// Logs the warnings and how many missing images are dropped.
fn log_warnings(warnings: &[String], missing: &[String], total: usize, log: &dyn Fn(&str)) {
    for w in warnings {
        log(&format!("warning: {w}"));
    }
    if !missing.is_empty() {
        log(&format!(
            "allow_missing: dropping {} of {} images not in the source",
            missing.len(),
            total
        ));
    }
}

/// Creates DEST, marked unfinished, with a folder per piece.
fn make_dest(opts: &PrepareOptions) -> Result<()> {
    let dest = &opts.dest;
    start_dest(dest, opts.dataset, opts)?;
    for name in opts.dataset.pieces() {
        let dir = dest.join(name);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    }
    Ok(())
}

/// The images to convert, and how many are already in DEST at the right size.
fn plan_jobs(
    opts: &PrepareOptions,
    entries: &[Entry],
    located: &[Location],
    log: &dyn Fn(&str),
) -> (Vec<Job>, usize) {
    let dest = &opts.dest;
    let mut jobs: Vec<Job> = Vec::new();
    let mut reused = 0;
    for (i, (e, loc)) in entries.iter().zip(located).enumerate() {
        let Some((store, member)) = loc else { continue };
        let out = dest.join(opts.dataset.pieces()[e.piece]).join(&e.out_name);
        if image::image_dimensions(&out).ok() == Some((opts.image_size, opts.image_size)) {
            reused += 1;
            continue;
        }
        jobs.push(Job {
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
    (jobs, reused)
}

/// Converts the jobs' images under a progress bar, collecting those that cannot be decoded.
fn convert_images(
    pieces: &[Piece],
    entries: &[Entry],
    jobs: &[Job],
    opts: &PrepareOptions,
) -> Result<Converted> {
    let bar = Progress::new(jobs.len() as u64, "prepare", opts.progress);
    let failures = convert_all(pieces, jobs, opts, &bar)?;
    bar.finish();
    check_unreadable(pieces, jobs, &failures, opts.allow_missing)?;
    Ok(Converted {
        written: jobs.len() - failures.len(),
        unreadable: failures
            .iter()
            .map(|(j, why)| (entries[jobs[*j].entry].filename.clone(), why.clone()))
            .collect(),
        bad: failures.iter().map(|(j, _)| jobs[*j].entry).collect(),
    })
}

/// Refuses undecodable images unless `allow_missing`, naming the first with its archive.
fn check_unreadable(
    pieces: &[Piece],
    jobs: &[Job],
    failures: &[(usize, String)],
    allow_missing: bool,
) -> Result<()> {
    let Some((job, why)) = failures.first().filter(|_| !allow_missing) else {
        return Ok(());
    };
    let others = failures.len() - 1;
    let job = &jobs[*job];
    Err(Error::BadImage {
        path: pieces[job.piece].stores[job.store].member_path(&job.member),
        message: if others > 0 {
            format!("{why} (and {others} more)")
        } else {
            why.clone()
        },
    })
}

/// Keeps the prepared images in the split file, pointed at their PNGs; counts images and captions.
fn rewrite_split_file(
    split: &mut SplitFile,
    located: &[Location],
    bad: &HashSet<usize>,
    ds: Corpus,
) -> ([usize; 3], usize) {
    let images = split
        .root
        .get_mut("images")
        .and_then(Value::as_array_mut)
        .expect("checked when parsing");
    let old = std::mem::take(images);
    let mut kept = Vec::with_capacity(old.len());
    let mut splits = [0usize; 3];
    let mut captions = 0;
    for (i, (mut img, e)) in old.into_iter().zip(&split.entries).enumerate() {
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
    split.root["dataset"] = Value::String(ds.name().to_string());
    (splits, captions)
}

/// Refuses a split left without images.
fn check_splits(splits: &[usize; 3], label: &Path, dropped: bool) -> Result<()> {
    for (k, s) in Split::ALL.iter().enumerate() {
        if splits[k] == 0 {
            return Err(Error::EmptySplit {
                source_name: if dropped {
                    format!("{} after dropping missing images", label.display())
                } else {
                    label.display().to_string()
                },
                split: s.name().to_string(),
            });
        }
    }
    Ok(())
}

/// Writes the split file, then the manifest marking DEST finished.
fn write_prepared(opts: &PrepareOptions, root: &Value, report: &PrepareReport) -> Result<()> {
    let bytes = serde_json::to_vec(root).map_err(|e| Error::Json {
        path: report.json.clone(),
        message: e.to_string(),
    })?;
    write_atomic(&report.json, &bytes)?;
    let manifest = Manifest {
        tool: "vl-distill data prepare".into(),
        dataset: opts.dataset.name().into(),
        image_size: opts.image_size,
        format: "png".into(),
        complete: true,
        source: opts.source.display().to_string(),
        splits: report.splits,
        captions: report.captions,
        missing: report.missing.clone(),
        unreadable: report.unreadable.clone(),
        warnings: report.warnings.clone(),
    };
    write_manifest(&opts.dest, &manifest)
}
