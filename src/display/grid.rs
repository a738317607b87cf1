//! [`ImageGrid`]: small images with captions laid out in a grid, upscaled so
//! they can be seen, rendered to an [`RgbImage`], a PNG file or inline output
//! in an evcxr Jupyter notebook.

use super::text::{draw_text, wrap, CELL};
use super::{auto_scale, png_bytes, save_png_file, upscale, MIN_TILE};
use crate::config::ImageNorm;
use crate::error::{Error, Result};
use candle_core::{DType, Device, Tensor};
use image::{Rgb, RgbImage};
use std::path::Path;

/// Space in pixels around the grid and between tiles.
pub const PAD: u32 = 4;
/// Height in pixels of one line of text (a [`CELL`] and 2 px of leading).
pub const LINE: u32 = CELL + 2;
/// Gap in pixels between a tile and its caption.
pub const CAPTION_GAP: u32 = 2;
/// Caption lines under each tile unless changed with
/// [`ImageGrid::with_caption_lines`].
pub const DEFAULT_CAPTION_LINES: usize = 4;
/// The longest title line in characters; longer titles are cut with "…".
pub const TITLE_MAX_CHARS: usize = 100;
/// The page colour.
pub const BACKGROUND: Rgb<u8> = Rgb([255, 255, 255]);
/// The colour of text.
pub const INK: Rgb<u8> = Rgb([0, 0, 0]);

/// One picture of a grid and its caption.
#[derive(Debug, Clone, PartialEq)]
pub struct Tile {
    /// The picture at its own size (upscaled when the grid is rendered).
    pub image: RgbImage,
    /// Text under the picture (wrapped; may be empty).
    pub caption: String,
}

/// Where everything of a rendered [`ImageGrid`] goes, in pixels.
///
/// With `n` tiles the grid has `columns = min(n, requested columns)` columns
/// and `rows = ceil(n / columns)` rows; a cell is `tile_width` wide and
/// `tile_height + caption_height` high, cells are [`PAD`] apart and [`PAD`]
/// from the border, and a title, when there is one, takes one [`LINE`] and a
/// [`PAD`] above the cells:
///
/// ```text
/// width  = max(PAD + columns·(tile_width + PAD), title width)
/// height = top + rows·(tile_height + caption_height + PAD)
/// top    = PAD (+ LINE + PAD with a title)
/// caption_height = CAPTION_GAP + lines·LINE (0 with no caption lines)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GridLayout {
    /// Integer upscaling factor of every tile.
    pub scale: u32,
    /// Width of an upscaled tile (of the widest tile).
    pub tile_width: u32,
    /// Height of an upscaled tile (of the highest tile).
    pub tile_height: u32,
    /// Height of the caption area under each tile.
    pub caption_height: u32,
    /// Characters per caption line.
    pub caption_chars: usize,
    /// Columns used.
    pub columns: u32,
    /// Rows used.
    pub rows: u32,
    /// Y of the first row of tiles.
    pub top: u32,
    /// Width of the rendered image.
    pub width: u32,
    /// Height of the rendered image.
    pub height: u32,
}

impl GridLayout {
    /// Top-left corner of tile `i` (row-major order).
    pub fn tile_origin(&self, i: usize) -> (u32, u32) {
        let cols = self.columns.max(1) as usize;
        let (c, r) = ((i % cols) as u32, (i / cols) as u32);
        (
            PAD + c * (self.tile_width + PAD),
            self.top + r * (self.tile_height + self.caption_height + PAD),
        )
    }

    /// Top-left corner of the caption area of tile `i`; the area is
    /// `tile_width` × `caption_height`.
    pub fn caption_origin(&self, i: usize) -> (u32, u32) {
        let (x, y) = self.tile_origin(i);
        (x, y + self.tile_height)
    }
}

/// Pictures with captions in a grid: each tile upscaled by an integer factor
/// (nearest neighbour, so pixels stay sharp), its caption word-wrapped under
/// it in an 8 × 8 bitmap font, and an optional title line on top.
///
/// ```
/// use vl_distill::display::ImageGrid;
/// let mut grid = ImageGrid::new(2).with_title("two squares");
/// grid.push(image::RgbImage::from_pixel(24, 24, image::Rgb([200, 30, 30])), "a red square");
/// grid.push(image::RgbImage::from_pixel(24, 24, image::Rgb([30, 30, 200])), "a blue square");
/// let picture = grid.render();            // 24 px tiles are drawn ×4, at 96 px
/// assert_eq!(grid.layout().scale, 4);
/// assert_eq!(picture.width(), grid.layout().width);
/// // in an evcxr notebook cell, `grid` on its own line shows the picture
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ImageGrid {
    tiles: Vec<Tile>,
    columns: usize,
    scale: Option<u32>,
    min_tile: u32,
    caption_lines: usize,
    title: Option<String>,
}

impl ImageGrid {
    /// An empty grid of `columns` columns (at least 1), tiles upscaled so the
    /// longer side is at least [`MIN_TILE`] pixels, [`DEFAULT_CAPTION_LINES`]
    /// caption lines, no title.
    pub fn new(columns: usize) -> Self {
        ImageGrid {
            tiles: Vec::new(),
            columns: columns.max(1),
            scale: None,
            min_tile: MIN_TILE,
            caption_lines: DEFAULT_CAPTION_LINES,
            title: None,
        }
    }

    /// Adds a tile (pictures are placed row by row).
    pub fn push(&mut self, image: RgbImage, caption: impl Into<String>) -> &mut Self {
        self.tiles.push(Tile {
            image,
            caption: caption.into(),
        });
        self
    }

    /// Sets the title line drawn above the tiles (cut with "…" past
    /// [`TITLE_MAX_CHARS`] characters).
    pub fn with_title(mut self, title: impl Into<String>) -> Self {
        self.title = Some(title.into());
        self
    }

    /// Upscales every tile by exactly `scale` (at least 1) instead of choosing
    /// the factor from the tile size.
    pub fn with_scale(mut self, scale: u32) -> Self {
        self.scale = Some(scale.max(1));
        self
    }

    /// Chooses the upscaling factor so the longer side of a tile is at least
    /// `pixels` (the default is [`MIN_TILE`]); ignored after [`with_scale`](Self::with_scale).
    pub fn with_min_tile(mut self, pixels: u32) -> Self {
        self.min_tile = pixels;
        self
    }

    /// Lines of caption text under each tile (0: no caption area). Text that
    /// does not fit is cut with "…".
    pub fn with_caption_lines(mut self, lines: usize) -> Self {
        self.caption_lines = lines;
        self
    }

    /// The tiles, in order.
    pub fn tiles(&self) -> &[Tile] {
        &self.tiles
    }

    /// Number of tiles.
    pub fn len(&self) -> usize {
        self.tiles.len()
    }

    /// True when the grid has no tile.
    pub fn is_empty(&self) -> bool {
        self.tiles.is_empty()
    }

    /// A grid of the images of an `[N, 3, H, W]` tensor (normalised with
    /// `norm`, which is undone), with `captions[i]` under image `i`.
    /// `captions` is either empty (no captions) or has one entry per image.
    pub fn from_tensor(
        images: &Tensor,
        norm: &ImageNorm,
        captions: &[String],
        columns: usize,
    ) -> Result<Self> {
        let (n, c, _, _) = images.dims4()?;
        if c != 3 {
            return Err(Error::Shape(format!(
                "an image grid needs [N, 3, H, W] images, got {:?}",
                images.dims()
            )));
        }
        if !captions.is_empty() && captions.len() != n {
            return Err(Error::Shape(format!(
                "{n} images but {} captions for the grid",
                captions.len()
            )));
        }
        let images = images.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
        let mut grid = ImageGrid::new(columns);
        for i in 0..n {
            let caption = captions.get(i).cloned().unwrap_or_default();
            grid.push(norm.to_image(&images.get(i)?)?, caption);
        }
        Ok(grid)
    }

    /// Where tiles, captions and the title go, and the size of the picture.
    pub fn layout(&self) -> GridLayout {
        let max_w = self
            .tiles
            .iter()
            .map(|t| t.image.width())
            .max()
            .unwrap_or(0);
        let max_h = self
            .tiles
            .iter()
            .map(|t| t.image.height())
            .max()
            .unwrap_or(0);
        let scale = self
            .scale
            .unwrap_or_else(|| auto_scale(max_w, max_h, self.min_tile));
        let (tile_width, tile_height) = (max_w * scale, max_h * scale);
        let caption_height = if self.caption_lines > 0 {
            CAPTION_GAP + self.caption_lines as u32 * LINE
        } else {
            0
        };
        let columns = self.columns.min(self.tiles.len()) as u32;
        let rows = self.tiles.len().div_ceil(self.columns) as u32;
        let title_width = self.title.as_ref().map_or(0, |t| {
            2 * PAD + CELL * t.chars().count().min(TITLE_MAX_CHARS) as u32
        });
        let top = PAD + if self.title.is_some() { LINE + PAD } else { 0 };
        GridLayout {
            scale,
            tile_width,
            tile_height,
            caption_height,
            caption_chars: (tile_width / CELL) as usize,
            columns,
            rows,
            top,
            width: (PAD + columns * (tile_width + PAD))
                .max(title_width)
                .max(2 * PAD),
            height: top + rows * (tile_height + caption_height + PAD),
        }
    }

    /// Draws the grid on a white page.
    pub fn render(&self) -> RgbImage {
        let l = self.layout();
        let mut page = RgbImage::from_pixel(l.width, l.height, BACKGROUND);
        if let Some(title) = &self.title {
            let chars = ((l.width - 2 * PAD) / CELL) as usize;
            if let Some(line) = wrap(title, chars.min(TITLE_MAX_CHARS), 1).first() {
                draw_text(&mut page, PAD, PAD, line, INK);
            }
        }
        for (i, tile) in self.tiles.iter().enumerate() {
            let (x, y) = l.tile_origin(i);
            image::imageops::replace(
                &mut page,
                &upscale(&tile.image, l.scale),
                x as i64,
                y as i64,
            );
            let (cx, cy) = l.caption_origin(i);
            let lines = wrap(&tile.caption, l.caption_chars, self.caption_lines);
            for (k, line) in lines.iter().enumerate() {
                draw_text(&mut page, cx, cy + CAPTION_GAP + k as u32 * LINE, line, INK);
            }
        }
        page
    }

    /// The rendered grid as PNG file contents.
    pub fn to_png_bytes(&self) -> Result<Vec<u8>> {
        png_bytes(&self.render())
    }

    /// Writes the rendered grid to `path` as a PNG, atomically (folders are
    /// created); an error names `path`.
    pub fn save_png(&self, path: impl AsRef<Path>) -> Result<()> {
        save_png_file(&self.render(), path.as_ref())
    }

    /// What [`evcxr_display`](Self::evcxr_display) prints: the PNG in base64
    /// between evcxr's content markers.
    pub fn evcxr_content(&self) -> Result<String> {
        use base64::Engine;
        let png = self.to_png_bytes()?;
        Ok(format!(
            "EVCXR_BEGIN_CONTENT image/png\n{}\nEVCXR_END_CONTENT",
            base64::engine::general_purpose::STANDARD.encode(png)
        ))
    }

    /// Shows the grid inline in an evcxr Jupyter notebook (evcxr calls this
    /// when a cell's value is an `ImageGrid`); elsewhere it prints the PNG as
    /// base64 between evcxr's markers. If the PNG cannot be made, the error is
    /// shown as text instead.
    pub fn evcxr_display(&self) {
        match self.evcxr_content() {
            Ok(s) => println!("{s}"),
            Err(e) => super::evcxr_print("text/plain", &e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn solid(w: u32, h: u32, v: u8) -> RgbImage {
        RgbImage::from_pixel(w, h, Rgb([v, 255 - v, v / 2]))
    }

    #[test]
    fn layout_follows_columns_scale_and_caption_lines() {
        let mut g = ImageGrid::new(3);
        for i in 0..7 {
            g.push(solid(24, 24, i * 30), format!("tile {i}"));
        }
        let l = g.layout();
        assert_eq!(l.scale, 4); // 24 · 4 = 96
        assert_eq!((l.columns, l.rows), (3, 3));
        assert_eq!(l.tile_width, 96);
        assert_eq!(l.caption_height, CAPTION_GAP + 4 * LINE);
        assert_eq!(l.width, PAD + 3 * (96 + PAD));
        assert_eq!(l.height, PAD + 3 * (96 + CAPTION_GAP + 4 * LINE + PAD));
        assert_eq!(
            l.tile_origin(4),
            (PAD + 96 + PAD, PAD + 96 + l.caption_height + PAD)
        );
        let img = g.render();
        assert_eq!(img.dimensions(), (l.width, l.height));

        // 32 px tiles need ×3; fewer tiles than columns shrink the grid; no captions
        let mut g = ImageGrid::new(10).with_caption_lines(0);
        g.push(solid(32, 32, 0), "ignored");
        g.push(solid(32, 32, 9), "");
        let l = g.layout();
        assert_eq!((l.scale, l.columns, l.rows, l.caption_height), (3, 2, 1, 0));
        assert_eq!(g.render().dimensions(), (PAD + 2 * 100, PAD + 96 + PAD));

        // an explicit scale wins; a title adds a line on top
        let mut g = ImageGrid::new(2).with_scale(2).with_title("t");
        g.push(solid(10, 6, 0), "");
        let l = g.layout();
        assert_eq!(
            (l.tile_width, l.tile_height, l.top),
            (20, 12, PAD + LINE + PAD)
        );
    }

    #[test]
    fn an_empty_grid_still_renders() {
        let g = ImageGrid::new(4).with_title("nothing yet");
        let img = g.render();
        assert!(img.width() > 0 && img.height() > 0);
        assert!(g.to_png_bytes().is_ok());
    }
}
