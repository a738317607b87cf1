//! A distilled set as files a person can look at: one PNG per synthetic pair
//! and, since a distilled text is an embedding and not a sentence, the real
//! training captions nearest to it by cosine similarity.
//!
//! [`export_distilled`] writes into a folder:
//!
//! - `pair_000.png`, `pair_001.png`, …: each synthetic image, de-normalised
//!   with the experiment's `data.norm` and upscaled (nearest neighbour, see
//!   [`auto_scale`]) so it is viewable;
//! - `index.json`: an [`ExportIndex`] (per pair: its file and its `k`
//!   nearest real train captions with cosine and the file name of the
//!   captioned image, and, for a set with a learned similarity, its `k`
//!   strongest partners among the other pairs; the learned learning rates
//!   of the set);
//! - `index.md`: the same as a Markdown table with the images inline.
//!
//! [`distilled_grid`] draws the pairs in one [`ImageGrid`] captioned with the
//! nearest real caption.

use super::{auto_scale, save_png_file, upscale, ImageGrid, MIN_TILE};
use crate::data::Split;
use crate::error::{Error, Result};
use crate::experiment::Experiment;
use crate::stage2::distilled_set::DistilledSet;
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// How many nearest captions the command line lists per pair by default.
pub const DEFAULT_NEAREST: usize = 3;
/// [`distilled_grid`] shows at most this many pairs (the first ones).
pub const GRID_MAX_PAIRS: usize = 100;
/// Columns of [`distilled_grid`].
pub const GRID_COLUMNS: usize = 10;
/// [`distilled_grid`] upscales tiles to at least this many pixels, so a
/// caption line holds 16 or more characters.
pub const GRID_MIN_TILE: u32 = 128;
/// Rows of distilled texts compared with all captions at once in
/// [`nearest_captions`] (bounds memory for large caption sets).
const ROWS_PER_CHUNK: usize = 16;

/// For each row of `texts` `[M, D]`, the `k` rows of `real` `[C, D]` with the
/// highest cosine similarity, best first, as `(row of real, cosine)`.
/// Equal cosines keep the lower index first, so the answer is deterministic.
/// `k` larger than `C` gives all `C`; a zero vector has cosine 0 with
/// everything.
pub fn nearest_captions(texts: &Tensor, real: &Tensor, k: usize) -> Result<Vec<Vec<(usize, f32)>>> {
    let (m, d) = texts.dims2()?;
    let (c, d_real) = real.dims2()?;
    if d != d_real {
        return Err(Error::Shape(format!(
            "distilled text embeddings are {d}-d but the real captions' are {d_real}-d"
        )));
    }
    let k = k.min(c);
    if m == 0 || k == 0 {
        return Ok(vec![Vec::new(); m]);
    }
    let unit = |t: &Tensor| -> Result<Tensor> {
        let t = t.to_dtype(DType::F32)?;
        let norm = t.sqr()?.sum_keepdim(1)?.sqrt()?.maximum(1e-12f64)?;
        Ok(t.broadcast_div(&norm)?)
    };
    let real_t = unit(real)?.t()?.contiguous()?;
    let texts = unit(&texts.to_device(real.device())?)?;
    let mut out = Vec::with_capacity(m);
    for start in (0..m).step_by(ROWS_PER_CHUNK) {
        let rows = ROWS_PER_CHUNK.min(m - start);
        let sims: Vec<Vec<f32>> = texts
            .narrow(0, start, rows)?
            .matmul(&real_t)?
            .to_device(&Device::Cpu)?
            .to_vec2()?;
        for (r, row) in sims.iter().enumerate() {
            if let Some(bad) = row.iter().position(|v| !v.is_finite()) {
                return Err(Error::NonFinite {
                    step: "nearest captions".into(),
                    what: format!("cosine of distilled text {} and caption {bad}", start + r),
                });
            }
            out.push(top_k(row, k));
        }
    }
    Ok(out)
}

/// The `k` (≥ 1, ≤ len) largest entries of `row`, largest first, ties by index.
fn top_k(row: &[f32], k: usize) -> Vec<(usize, f32)> {
    let order = |a: &usize, b: &usize| row[*b].total_cmp(&row[*a]).then(a.cmp(b));
    let mut idx: Vec<usize> = (0..row.len()).collect();
    if k < idx.len() {
        idx.select_nth_unstable_by(k - 1, order);
        idx.truncate(k);
    }
    idx.sort_by(order);
    idx.into_iter().map(|i| (i, row[i])).collect()
}

/// A real training caption near a distilled text embedding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NearestCaption {
    /// Index of the caption among the train split's captions (the row of
    /// `exp.train.texts`).
    pub caption_index: usize,
    /// The caption.
    pub caption: String,
    /// Cosine similarity between its embedding and the distilled one.
    pub cosine: f32,
    /// File name of the image it describes (relative to the dataset's image folder).
    pub image: String,
}

/// One exported pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportedPair {
    /// Index of the pair in the set.
    pub pair: usize,
    /// Its PNG, relative to the export folder.
    pub file: String,
    /// The nearest real train captions, best first.
    pub nearest: Vec<NearestCaption>,
    /// For a set with a learned similarity (LoRS): the other pairs this
    /// one is most similar to, strongest first; empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partners: Vec<Partner>,
}

/// Another pair of the set and its learned similarity to this one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Partner {
    /// Index of the other pair.
    pub pair: usize,
    /// The learned similarity (the matrix entry of this pair's row).
    pub similarity: f32,
}

/// What `index.json` of an export holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportIndex {
    /// The dataset whose captions were searched.
    pub dataset: String,
    /// Number of pairs.
    pub pairs: usize,
    /// `[width, height]` of a synthetic image, before upscaling.
    pub image_size: [usize; 2],
    /// The upscaling factor of the PNGs.
    pub scale: u32,
    /// The set's learned student learning rate of the image tower.
    pub lr_image: f64,
    /// The set's learned student learning rate of the text tower.
    pub lr_text: f64,
    /// Nearest captions listed per pair.
    pub nearest_k: usize,
    /// Every pair, in order.
    pub items: Vec<ExportedPair>,
}

/// What [`export_distilled`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportSummary {
    /// The export folder.
    pub dir: PathBuf,
    /// The PNG of every pair, in order.
    pub images: Vec<PathBuf>,
    /// `dir/index.json`.
    pub index_json: PathBuf,
    /// `dir/index.md`.
    pub index_md: PathBuf,
    /// The content of `index.json`.
    pub index: ExportIndex,
}

impl std::fmt::Display for ExportSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({} PNGs ×{}, index.json, index.md)",
            self.dir.display(),
            self.images.len(),
            self.index.scale
        )
    }
}

/// The train split's caption strings (in the row order of `exp.train.texts`)
/// and, for each, the file name of its image.
pub(crate) fn train_captions(exp: &Experiment) -> Result<(Vec<&str>, Vec<&str>)> {
    let (captions, owner) = exp.dataset.captions(Split::Train);
    let rows = exp.train.texts.dim(0)?;
    if captions.len() != rows {
        return Err(Error::Shape(format!(
            "the train split has {} captions but {rows} caption embeddings",
            captions.len()
        )));
    }
    let files = owner
        .iter()
        .map(|&o| exp.dataset.train[o].filename.as_str())
        .collect();
    Ok((captions, files))
}

/// Checks that the set's text embeddings live in the experiment's caption space.
pub(crate) fn check_fits(set: &DistilledSet, exp: &Experiment) -> Result<()> {
    let d = set.texts.dim(1)?;
    let d_real = exp.train.texts.dim(1)?;
    if d != d_real {
        return Err(Error::Shape(format!(
            "the distilled set's text embeddings are {d}-d but this experiment's captions \
             are {d_real}-d: was the set distilled with another configuration?"
        )));
    }
    Ok(())
}

/// Writes the pairs of `set` to `dir` as `pair_NNN.png`, `index.json` and
/// `index.md` (see the [module docs](self)), listing for each pair the `k`
/// real train captions of `exp` nearest to its text embedding. `dir` is
/// created; `pair_NNN.png` files of an earlier, larger export there are removed.
pub fn export_distilled(
    set: &DistilledSet,
    exp: &Experiment,
    dir: &Path,
    k: usize,
) -> Result<ExportSummary> {
    check_fits(set, exp)?;
    let images = set.images.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
    let (m, _, h, w) = images.dims4()?;
    let scale = auto_scale(w as u32, h as u32, MIN_TILE);
    let nearest = nearest_captions(&set.texts, &exp.train.texts, k)?;
    let (captions, files) = train_captions(exp)?;
    let partners = match &set.similarity {
        Some(s) => s.strongest_partners(k)?,
        None => vec![Vec::new(); m],
    };
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let norm = &exp.config.data.norm;
    let mut items = Vec::with_capacity(m);
    let mut paths = Vec::with_capacity(m);
    for (j, near) in nearest.iter().enumerate() {
        let file = format!("pair_{j:03}.png");
        let path = dir.join(&file);
        save_png_file(&upscale(&norm.to_image(&images.get(j)?)?, scale), &path)?;
        paths.push(path);
        items.push(ExportedPair {
            pair: j,
            file,
            nearest: near
                .iter()
                .map(|&(c, cosine)| NearestCaption {
                    caption_index: c,
                    caption: captions[c].to_string(),
                    cosine,
                    image: files[c].to_string(),
                })
                .collect(),
            partners: partners[j]
                .iter()
                .map(|&(pair, similarity)| Partner { pair, similarity })
                .collect(),
        });
    }
    remove_stale_pairs(dir, m)?;
    let lr = set.lr();
    let index = ExportIndex {
        dataset: exp.dataset.name.clone(),
        pairs: m,
        image_size: [w, h],
        scale,
        lr_image: lr.image,
        lr_text: lr.text,
        nearest_k: k,
        items,
    };
    let index_json = dir.join("index.json");
    crate::io::write_json(&index_json, &index)?;
    let index_md = dir.join("index.md");
    crate::io::write_atomic(&index_md, markdown(&index).as_bytes())?;
    Ok(ExportSummary {
        dir: dir.to_path_buf(),
        images: paths,
        index_json,
        index_md,
        index,
    })
}

/// Removes `pair_NNN.png` with NNN ≥ `keep` from `dir` (left by an earlier
/// export of a larger set).
fn remove_stale_pairs(dir: &Path, keep: usize) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        let Some(index) = name
            .to_str()
            .and_then(|n| n.strip_prefix("pair_"))
            .and_then(|n| n.strip_suffix(".png"))
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        if index >= keep {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        }
    }
    Ok(())
}

/// Text safe inside a Markdown table cell.
fn md_cell(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `index.md`: a table with each pair's image and its nearest captions.
fn markdown(index: &ExportIndex) -> String {
    let mut s = format!(
        "# Distilled set: {} pairs ({})\n\n\
         Learned student learning rates: image α = {:.4}, text α = {:.4}.\n\n\
         Each row: a synthetic image ({}×{} px, shown ×{}) and the {} real training \
         captions nearest to the pair's text embedding, with their cosine similarity \
         and the file of the image they describe.\n\n\
         | pair | image | nearest real captions (cosine) |\n|---|---|---|\n",
        index.pairs,
        md_cell(&index.dataset),
        index.lr_image,
        index.lr_text,
        index.image_size[0],
        index.image_size[1],
        index.scale,
        index.nearest_k
    );
    for item in &index.items {
        let near: Vec<String> = item
            .nearest
            .iter()
            .map(|n| {
                format!(
                    "{:.3} {} (`{}`)",
                    n.cosine,
                    md_cell(&n.caption),
                    md_cell(&n.image)
                )
            })
            .collect();
        let mut cell = near.join("<br>");
        if !item.partners.is_empty() {
            let partners: Vec<String> = item
                .partners
                .iter()
                .map(|p| format!("{} ({:.2})", p.pair, p.similarity))
                .collect();
            cell.push_str(&format!("<br>learned partners: {}", partners.join(", ")));
        }
        s.push_str(&format!(
            "| {} | ![pair {}]({}) | {} |\n",
            item.pair, item.pair, item.file, cell
        ));
    }
    s
}

/// The first [`GRID_MAX_PAIRS`] pairs of `set` in an [`ImageGrid`] of
/// [`GRID_COLUMNS`] columns under `title`, tiles upscaled to at least
/// [`GRID_MIN_TILE`] pixels, each captioned with the real train caption
/// nearest to the pair's text embedding. The title is drawn in ASCII (see
/// [`glyph`](super::text::glyph): a few typographic characters become
/// their look-alikes, others show as `?`).
pub fn distilled_grid(set: &DistilledSet, exp: &Experiment, title: &str) -> Result<ImageGrid> {
    check_fits(set, exp)?;
    let n = set.len().min(GRID_MAX_PAIRS);
    let (captions, _) = train_captions(exp)?;
    let texts = set.texts.narrow(0, 0, n)?;
    let labels: Vec<String> = nearest_captions(&texts, &exp.train.texts, 1)?
        .iter()
        .map(|near| {
            near.first()
                .map_or_else(String::new, |&(c, _)| captions[c].to_string())
        })
        .collect();
    let images = set.images.narrow(0, 0, n)?;
    Ok(
        ImageGrid::from_tensor(&images, &exp.config.data.norm, &labels, GRID_COLUMNS)?
            .with_min_tile(GRID_MIN_TILE)
            .with_title(title),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_orders_by_value_then_index() {
        let row = [0.1, 0.9, 0.5, 0.9, -1.0, 0.5];
        assert_eq!(top_k(&row, 3), [(1, 0.9), (3, 0.9), (2, 0.5)]);
        assert_eq!(top_k(&row, 6).len(), 6);
        assert_eq!(top_k(&row, 6)[5], (4, -1.0));
        assert_eq!(top_k(&row, 1), [(1, 0.9)]);
    }

    #[test]
    fn markdown_cells_cannot_break_the_table() {
        assert_eq!(md_cell("a | b\nc <d>"), "a \\| b c &lt;d&gt;");
    }
}
