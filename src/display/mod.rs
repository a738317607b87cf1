//! Pictures of data and distilled sets, for people: [`ImageGrid`] (tiles
//! with captions, shown inline in an evcxr notebook or saved as PNG) and the
//! export of a [`DistilledSet`](crate::stage2::distilled_set::DistilledSet) as one PNG per
//! pair with the nearest real captions of its text embedding
//! ([`export_distilled`], [`nearest_captions`], [`distilled_grid`]), and a
//! learned similarity's heatmap and strongest links ([`similarity_heatmap`],
//! [`partner_grid`]).
//!
//! Our images are 24–32 px, so everything shown is upscaled by an integer
//! factor with nearest neighbour: the pixels a model sees stay visible as
//! pixels, not blurred.

pub mod comparison;
pub mod export;
pub mod grid;
pub mod plot;
pub mod recall_table;
pub mod similarity;
pub mod text;

pub use export::{
    distilled_grid, export_distilled, nearest_captions, ExportIndex, ExportSummary, ExportedPair,
    NearestCaption,
};
pub use grid::{GridLayout, ImageGrid, Tile};
pub use recall_table::RecallTable;
pub use similarity::{partner_grid, similarity_heatmap};

use crate::error::{Error, Result};
use image::RgbImage;
use std::path::Path;

/// `text` with `&`, `<` and `>` escaped for HTML.
pub fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Prints `content` as `mime` between evcxr's markers: what an
/// `evcxr_display` method does to show a value inline in a notebook.
pub fn evcxr_print(mime: &str, content: &str) {
    println!("EVCXR_BEGIN_CONTENT {mime}\n{content}\nEVCXR_END_CONTENT");
}

/// The shortest longer side, in pixels, that a shown image is upscaled to by
/// default (a 24 px image is drawn ×4, a 32 px image ×3).
pub const MIN_TILE: u32 = 96;

/// The smallest integer factor (at least 1) that makes the longer side of a
/// `width` × `height` image at least `min_side` pixels.
pub fn auto_scale(width: u32, height: u32, min_side: u32) -> u32 {
    let side = width.max(height);
    if side == 0 {
        return 1;
    }
    min_side.div_ceil(side).max(1)
}

/// `img` enlarged `factor` times (at least 1) by nearest neighbour: output
/// pixel (x, y) is input pixel (x / factor, y / factor).
pub fn upscale(img: &RgbImage, factor: u32) -> RgbImage {
    let f = factor.max(1);
    RgbImage::from_fn(img.width() * f, img.height() * f, |x, y| {
        *img.get_pixel(x / f, y / f)
    })
}

/// PNG file contents of `img`.
pub fn png_bytes(img: &RgbImage) -> Result<Vec<u8>> {
    use image::ImageEncoder;
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(
            img.as_raw(),
            img.width(),
            img.height(),
            image::ExtendedColorType::Rgb8,
        )
        .map_err(|e| {
            Error::Encode(format!(
                "{}×{} picture as PNG: {e}",
                img.width(),
                img.height()
            ))
        })?;
    Ok(out)
}

/// Writes `img` as a PNG to `path`, atomically, creating folders; every
/// error names `path` (and the folder or temporary file that failed, when it
/// is another).
pub fn save_png_file(img: &RgbImage, path: &Path) -> Result<()> {
    let bytes = png_bytes(img)?;
    crate::io::write_atomic(path, &bytes).map_err(|e| match e {
        Error::Io { path: p, source } if p != path => Error::io(
            path,
            std::io::Error::new(source.kind(), format!("{}: {source}", p.display())),
        ),
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    #[test]
    fn auto_scale_reaches_the_minimum_side() {
        assert_eq!(auto_scale(24, 24, 96), 4);
        assert_eq!(auto_scale(32, 32, 96), 3);
        assert_eq!(auto_scale(33, 20, 96), 3);
        assert_eq!(auto_scale(224, 224, 96), 1);
        assert_eq!(auto_scale(0, 0, 96), 1);
    }

    #[test]
    fn upscale_repeats_each_pixel_in_a_block() {
        let img = RgbImage::from_fn(3, 2, |x, y| Rgb([x as u8 * 50, y as u8 * 90, 7]));
        let big = upscale(&img, 4);
        assert_eq!(big.dimensions(), (12, 8));
        for (x, y, p) in big.enumerate_pixels() {
            assert_eq!(p, img.get_pixel(x / 4, y / 4));
        }
        assert_eq!(upscale(&img, 0), img);
    }
}
