//! Writes a preview of the built-in scenes: an 8 × 4 grid of the first 32
//! training images at 64 px (or the size given as the second argument),
//! scaled ×2, and prints their first captions.
//!
//! ```text
//! cargo run --release --example scenes_preview -- preview.png [SIZE]
//! ```

use image::{imageops, Rgb, RgbImage};
use vl_distill::data::scenes::{generate, ScenesConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args()
        .nth(1)
        .ok_or("usage: scenes_preview OUT.png")?;
    let image_size = match std::env::args().nth(2) {
        Some(s) => s.parse()?,
        None => 64,
    };
    let cfg = ScenesConfig {
        image_size,
        train: 32,
        val: 1,
        test: 1,
        ..ScenesConfig::default()
    };
    let ds = generate(&cfg)?;
    let (cols, rows, scale, gap) = (8u32, 4u32, 2u32, 4u32);
    let tile = cfg.image_size * scale;
    let mut grid = RgbImage::from_pixel(
        cols * (tile + gap) + gap,
        rows * (tile + gap) + gap,
        Rgb([255, 255, 255]),
    );
    for (i, s) in ds.train.iter().enumerate() {
        let (c, r) = (i as u32 % cols, i as u32 / cols);
        let big = imageops::resize(&s.image, tile, tile, imageops::FilterType::Nearest);
        imageops::replace(
            &mut grid,
            &big,
            (gap + c * (tile + gap)) as i64,
            (gap + r * (tile + gap)) as i64,
        );
        println!("{i:2} (tile row {r}, col {c}): {}", s.captions[0]);
    }
    grid.save(&out)?;
    println!("wrote {out}");
    Ok(())
}
