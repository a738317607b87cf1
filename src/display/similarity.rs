//! Pictures of a learned similarity (LoRS): the matrix as a heatmap, and the
//! pairs it links most, side by side with their nearest real captions.

use super::export::{check_fits, nearest_captions, train_captions};
use super::grid::ImageGrid;
use crate::error::{Error, Result};
use crate::experiment::Experiment;
use crate::stage2::distilled_set::DistilledSet;
use crate::stage2::similarity::LearnedSimilarity;
use candle_core::{DType, Device};
use image::{Rgb, RgbImage};

/// The side of a heatmap in pixels, roughly: a cell per entry, at least
/// [`MIN_CELL`] and at most [`MAX_CELL`] pixels wide.
const HEATMAP_SIDE: u32 = 400;
const MIN_CELL: u32 = 3;
const MAX_CELL: u32 = 24;

/// The colour of `v` on a scale of ±`scale`: white at 0, red towards
/// +scale, blue towards −scale, saturated beyond.
fn diverging(v: f32, scale: f32) -> Rgb<u8> {
    let t = if scale > 0.0 {
        (v / scale).clamp(-1.0, 1.0)
    } else {
        0.0
    };
    let fade = |x: f32| (255.0 * (1.0 - x.abs())).round() as u8;
    if t >= 0.0 {
        Rgb([255, fade(t), fade(t)])
    } else {
        Rgb([fade(t), fade(t), 255])
    }
}

/// The matrix of `sim` as a picture: row i is image i, column j text j,
/// coloured on a scale of ± the largest off-diagonal magnitude (so the
/// links show; the diagonal, near 1, saturates red; ±1 at the identity). The caption says the
/// scale.
pub fn similarity_heatmap(sim: &LearnedSimilarity) -> Result<ImageGrid> {
    let m = sim.values()?;
    let n = m.len();
    if n == 0 {
        return Err(Error::Shape("an empty similarity has no picture".into()));
    }
    let scale = LearnedSimilarity::off_diagonal(&m)
        .into_iter()
        .map(|(_, _, v)| v.abs())
        .fold(0.0f32, f32::max);
    // at the identity (nothing learned yet) the diagonal alone shows
    let scale = if scale > 0.0 { scale } else { 1.0 };
    let cell = (HEATMAP_SIDE / n as u32).clamp(MIN_CELL, MAX_CELL);
    let side = cell * n as u32;
    let img = RgbImage::from_fn(side, side, |x, y| {
        diverging(m[(y / cell) as usize][(x / cell) as usize], scale)
    });
    let mut grid = ImageGrid::new(1).with_caption_lines(2).with_title(format!(
        "learned similarity S of {n} pairs (rows: images, columns: texts)"
    ));
    // the grid's font is ASCII
    grid.push(
        img,
        format!("white 0, red up to +{scale:.2}, blue down to -{scale:.2} (the largest off-diagonal size)"),
    );
    Ok(grid)
}

/// The `links` strongest off-diagonal entries of `set`'s learned similarity
/// as a grid, two links to a row: image i with the nearest real caption of
/// its text, then image j with its own, captioned with `S_ij`. Fails for a
/// set without a similarity.
pub fn partner_grid(set: &DistilledSet, exp: &Experiment, links: usize) -> Result<ImageGrid> {
    check_fits(set, exp)?;
    let sim = set.similarity.as_ref().ok_or_else(|| {
        Error::Config("this set learned no similarity (distill.similarity was off)".into())
    })?;
    let (captions, _) = train_captions(exp)?;
    let nearest = nearest_captions(&set.texts, &exp.train.texts, 1)?;
    let caption = |i: usize| {
        nearest[i]
            .first()
            .map_or_else(String::new, |&(c, _)| captions[c].to_string())
    };
    let images = set.images.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
    let norm = &exp.config.data.norm;
    let mut grid = ImageGrid::new(4)
        .with_min_tile(96)
        .with_caption_lines(3)
        .with_title(format!(
            "the {links} strongest links of the learned similarity: image i, then pair j with S_ij"
        ));
    for (i, j, v) in sim.strongest_links(links)? {
        grid.push(
            norm.to_image(&images.get(i)?)?,
            format!("{i}: {}", caption(i)),
        );
        grid.push(
            norm.to_image(&images.get(j)?)?,
            format!("{j} (S {v:.2}): {}", caption(j)),
        );
    }
    Ok(grid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_run_from_blue_through_white_to_red() {
        assert_eq!(diverging(0.0, 1.0), Rgb([255, 255, 255]));
        assert_eq!(diverging(1.0, 1.0), Rgb([255, 0, 0]));
        assert_eq!(diverging(-2.0, 1.0), Rgb([0, 0, 255]));
        assert_eq!(diverging(0.5, 0.0), Rgb([255, 255, 255]));
    }

    #[test]
    fn the_heatmap_has_a_cell_per_entry() {
        let s = LearnedSimilarity::full(10, &Device::Cpu).unwrap();
        let g = similarity_heatmap(&s).unwrap();
        let img = &g.tiles()[0].image;
        let cell = (HEATMAP_SIDE / 10).clamp(MIN_CELL, MAX_CELL);
        assert_eq!(img.width(), 10 * cell);
        // the identity: a red diagonal on white
        assert_eq!(*img.get_pixel(0, 0), Rgb([255, 0, 0]));
        assert_eq!(*img.get_pixel(cell, 0), Rgb([255, 255, 255]));
    }
}
