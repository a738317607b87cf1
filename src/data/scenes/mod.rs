//! The built-in captioned-scenes dataset: synthetic images with five captions
//! each, made from a seed, so the whole pipeline runs without any download.
//!
//! # What a scene holds
//!
//! Every image shows **one to three objects** on a background. Each object has
//!
//! * a **shape**: circle, square, triangle, diamond or cross;
//! * a **colour**: red, green, blue, yellow, purple, orange, white or black
//!   (with a little per-object jitter of the exact shade);
//! * a **size**: small or large;
//! * a **fill style**: solid, striped (diagonal stripes with an outline) or
//!   outlined (hollow);
//! * a **position**: one cell of a 3 × 3 grid (top left corner, top, ...,
//!   centre, ..., bottom right corner), jittered inside the cell. Objects sit in
//!   different cells and their bounding boxes never overlap, so relations such
//!   as "to the left of" or "above" between two objects are always well defined.
//!
//! The **background** is one of five kinds: plain light, plain dark, plain
//! grey, a vertical gradient between two random colours, or a noisy (grainy)
//! texture; all with colour jitter, so a colour histogram alone does not give a
//! caption away. Object colours too close to the background behind them are
//! never drawn (a white square on a light background would be invisible).
//!
//! # Captions
//!
//! Each image gets exactly five different captions, lowercase, at most
//! 25 words, built from a dozen templates per object count with synonyms for
//! every attribute ("a small red circle", "a tiny crimson disc", "a big hollow
//! blue square", "a little yellow ring"). Captions mention colour, shape, size,
//! fill style, the background, absolute positions ("in the top right corner")
//! and spatial relations between objects ("a small red circle to the left of a
//! big striped blue square", "... above ..."), so retrieval needs more than
//! colour. At least one caption of every image is spatial.
//!
//! # Rendering and determinism
//!
//! A scene is laid out in unit coordinates, so one seed gives the same scene
//! (and the same captions) at any `image_size`; shapes are signed-distance
//! functions drawn with 4 × 4 supersampling, so edges are anti-aliased at
//! 32 px and stay sharp at 64 or 96 px. Each sample's random generator is
//! seeded from `(seed, split, index)` only: the same configuration gives
//! byte-identical images and identical captions, and changing the size of one
//! split leaves the images of the others unchanged. Generation runs on all
//! cores; 2 750 images of 32 px take a few tens of milliseconds in release.

use super::{par_map, Dataset, Sample, Split};
use crate::config::{Config, DataSource};
use crate::error::{Error, Result};
use image::{Rgb, RgbImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// How to generate the built-in scenes dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScenesConfig {
    /// Seed of the generator: the same seed gives the same dataset.
    pub seed: u64,
    /// Side of the square RGB images in pixels (at least 16, at most 1024).
    pub image_size: u32,
    /// Number of training images.
    pub train: usize,
    /// Number of validation images.
    pub val: usize,
    /// Number of test images.
    pub test: usize,
}

impl ScenesConfig {
    /// The generator settings `config` implies, when its source is the scenes.
    pub fn from_config(config: &Config) -> Option<ScenesConfig> {
        match &config.data.source {
            DataSource::Scenes { train, val, test } => Some(ScenesConfig {
                seed: config.seed,
                image_size: config.data.image_size,
                train: *train,
                val: *val,
                test: *test,
            }),
            _ => None,
        }
    }
}

impl Default for ScenesConfig {
    /// Seed 0, 32 px images, 2000 / 250 / 500 images in train / val / test.
    fn default() -> Self {
        ScenesConfig {
            seed: 0,
            image_size: 32,
            train: 2000,
            val: 250,
            test: 500,
        }
    }
}

/// Smallest image side the shapes stay recognisable at.
const MIN_SIZE: u32 = 16;
/// Largest image side accepted (guards against accidental huge allocations).
const MAX_SIZE: u32 = 1024;
/// Captions per image.
const CAPTIONS_PER_IMAGE: usize = 5;
/// Longest caption, in words.
const MAX_WORDS: usize = 25;

/// Generates the built-in scenes dataset (named `"scenes"`) described in the
/// [module documentation](self). File names are `"{split}_{index:05}.png"`.
///
/// Fails with [`Error::Config`] when `image_size` is below 16 or above 1024,
/// or when a split size is zero.
pub fn generate(cfg: &ScenesConfig) -> Result<Dataset> {
    if cfg.image_size < MIN_SIZE || cfg.image_size > MAX_SIZE {
        return Err(Error::Config(format!(
            "scenes.image_size must be between {MIN_SIZE} and {MAX_SIZE} pixels, got {}",
            cfg.image_size
        )));
    }
    for (split, n) in [("train", cfg.train), ("val", cfg.val), ("test", cfg.test)] {
        if n == 0 {
            return Err(Error::Config(format!(
                "scenes.{split} must be at least 1 image, got 0"
            )));
        }
    }
    let mut ds = Dataset {
        name: "scenes".to_string(),
        train: Vec::new(),
        val: Vec::new(),
        test: Vec::new(),
    };
    for split in Split::ALL {
        let n = match split {
            Split::Train => cfg.train,
            Split::Val => cfg.val,
            Split::Test => cfg.test,
        };
        let indices: Vec<usize> = (0..n).collect();
        *ds.split_mut(split) = par_map(&indices, |&i| make_sample(cfg, split, i).1);
    }
    ds.validate("scenes")?;
    Ok(ds)
}

/// The scene and the finished sample at `(split, index)`.
fn make_sample(cfg: &ScenesConfig, split: Split, index: usize) -> (Scene, Sample) {
    let mut rng = ChaCha8Rng::seed_from_u64(sample_seed(cfg.seed, split, index));
    let scene = sample_scene(&mut rng);
    let captions = make_captions(&mut rng, &scene);
    let image = render(&scene, cfg.image_size, true);
    let sample = Sample {
        filename: format!("{}_{index:05}.png", split.name()),
        image,
        captions,
    };
    (scene, sample)
}

/// SplitMix64's finaliser: a good 64-bit mixing function.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The seed of one sample's generator, from the dataset seed, split and index.
fn sample_seed(seed: u64, split: Split, index: usize) -> u64 {
    let tag = match split {
        Split::Train => 0x7472_6169_6e00_0001,
        Split::Val => 0x7661_6c00_0000_0002,
        Split::Test => 0x7465_7374_0000_0003,
    };
    mix(mix(mix(seed) ^ tag) ^ index as u64)
}

// ---------------------------------------------------------------------------
// Attributes and their words
// ---------------------------------------------------------------------------

/// Object shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Circle,
    Square,
    Triangle,
    Diamond,
    Cross,
}

const SHAPES: [Shape; 5] = [
    Shape::Circle,
    Shape::Square,
    Shape::Triangle,
    Shape::Diamond,
    Shape::Cross,
];

impl Shape {
    /// Half width and half height of the shape drawn at nominal radius `r`.
    fn half_extent(self, r: f32) -> (f32, f32) {
        match self {
            Shape::Circle | Shape::Cross => (r, r),
            Shape::Square => (0.86 * r, 0.86 * r),
            Shape::Triangle => (1.0825 * r, 0.9375 * r),
            Shape::Diamond => (0.8 * r, 1.1 * r),
        }
    }

    /// Signed distance (negative inside) of offset `(dx, dy)` from the centre
    /// (y pointing down). Exact inside the shape, which is where the outline
    /// band is measured; outside only its sign matters.
    fn sdf(self, dx: f32, dy: f32, r: f32) -> f32 {
        let (ax, ay) = (dx.abs(), dy.abs());
        match self {
            Shape::Circle => (dx * dx + dy * dy).sqrt() - r,
            Shape::Square => box_sdf(ax, ay, 0.86 * r, 0.86 * r),
            Shape::Diamond => {
                let (a, b) = (0.8 * r, 1.1 * r);
                (ax * b + ay * a - a * b) / (a * a + b * b).sqrt()
            }
            Shape::Triangle => {
                // Equilateral, apex up, circumradius 1.25 r, centred on its bounding box.
                let big_r = 1.25 * r;
                let half_w = 0.866_025_4 * big_r;
                let base = dy - 0.75 * big_r;
                let side = (1.5 * big_r * ax - half_w * (dy + 0.75 * big_r))
                    / (2.25 * big_r * big_r + half_w * half_w).sqrt();
                base.max(side)
            }
            Shape::Cross => {
                let (long, thick) = (r, 0.36 * r);
                box_sdf(ax, ay, long, thick).min(box_sdf(ax, ay, thick, long))
            }
        }
    }

    /// Nouns for the shape, the plainest first.
    fn nouns(self) -> &'static [&'static str] {
        match self {
            Shape::Circle => &["circle", "disc", "round shape"],
            Shape::Square => &["square", "box"],
            Shape::Triangle => &["triangle", "triangular shape"],
            Shape::Diamond => &["diamond", "rhombus"],
            Shape::Cross => &["cross", "plus sign"],
        }
    }
}

/// Signed distance to an axis-aligned box of half sides `(bx, by)`, given
/// absolute offsets `(ax, ay)`.
fn box_sdf(ax: f32, ay: f32, bx: f32, by: f32) -> f32 {
    let (qx, qy) = (ax - bx, ay - by);
    let outside = (qx.max(0.0).powi(2) + qy.max(0.0).powi(2)).sqrt();
    outside + qx.max(qy).min(0.0)
}

/// A named object colour.
struct ColourDef {
    /// Base RGB.
    rgb: [f32; 3],
    /// Words for the colour, the plainest first.
    words: &'static [&'static str],
}

const COLOURS: [ColourDef; 8] = [
    ColourDef {
        rgb: [220.0, 30.0, 35.0],
        words: &["red", "crimson", "scarlet"],
    },
    ColourDef {
        rgb: [40.0, 170.0, 60.0],
        words: &["green", "emerald"],
    },
    ColourDef {
        rgb: [30.0, 80.0, 230.0],
        words: &["blue", "cobalt", "royal blue"],
    },
    ColourDef {
        rgb: [245.0, 215.0, 30.0],
        words: &["yellow", "golden", "lemon"],
    },
    ColourDef {
        rgb: [150.0, 40.0, 200.0],
        words: &["purple", "violet"],
    },
    ColourDef {
        rgb: [250.0, 135.0, 20.0],
        words: &["orange", "tangerine", "amber"],
    },
    ColourDef {
        rgb: [250.0, 250.0, 250.0],
        words: &["white", "ivory", "snow white"],
    },
    ColourDef {
        rgb: [15.0, 15.0, 15.0],
        words: &["black", "jet black", "ebony"],
    },
];

/// Smallest RGB distance between an object's colour and the background behind it.
const MIN_CONTRAST: f32 = 100.0;

/// How an object is painted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fill {
    Solid,
    Striped,
    Outlined,
}

const FILLS: [Fill; 3] = [Fill::Solid, Fill::Striped, Fill::Outlined];

/// Background kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Background {
    Light,
    Dark,
    Grey,
    Gradient,
    Noisy,
}

const BACKGROUNDS: [Background; 5] = [
    Background::Light,
    Background::Dark,
    Background::Grey,
    Background::Gradient,
    Background::Noisy,
];

impl Background {
    /// Adjectives for the background, the plainest first.
    fn adjectives(self) -> &'static [&'static str] {
        match self {
            Background::Light => &["light", "pale", "bright"],
            Background::Dark => &["dark", "dim", "dark coloured"],
            Background::Grey => &["grey", "gray", "plain grey"],
            Background::Gradient => &["gradient", "fading", "shaded"],
            Background::Noisy => &["noisy", "speckled", "grainy"],
        }
    }
}

/// Words for small and large objects, the plainest first.
const SMALL_WORDS: &[&str] = &["small", "little", "tiny"];
const LARGE_WORDS: &[&str] = &["large", "big"];
const SOLID_WORDS: &[&str] = &["solid", "filled", "plain"];
const STRIPED_WORDS: &[&str] = &["striped", "stripy", "hatched"];
const OUTLINED_WORDS: &[&str] = &["outlined", "hollow", "empty"];

/// Phrases for the nine grid cells, row-major from the top left.
const POSITIONS: [[&[&str]; 3]; 3] = [
    [
        &[
            "in the top left corner",
            "at the top left",
            "in the upper left corner",
        ],
        &["at the top", "at the top centre", "near the top edge"],
        &[
            "in the top right corner",
            "at the top right",
            "in the upper right corner",
        ],
    ],
    [
        &["on the left", "on the left side", "at the left edge"],
        &["in the centre", "in the middle", "at the centre"],
        &["on the right", "on the right side", "at the right edge"],
    ],
    [
        &[
            "in the bottom left corner",
            "at the bottom left",
            "in the lower left corner",
        ],
        &[
            "at the bottom",
            "at the bottom centre",
            "near the bottom edge",
        ],
        &[
            "in the bottom right corner",
            "at the bottom right",
            "in the lower right corner",
        ],
    ],
];

// ---------------------------------------------------------------------------
// Scene layout
// ---------------------------------------------------------------------------

/// One object, in unit coordinates (the image is `[0, 1]²`, y down).
#[derive(Debug, Clone)]
struct Object {
    shape: Shape,
    /// Index into [`COLOURS`].
    colour: usize,
    large: bool,
    fill: Fill,
    /// Grid cell (0..3 each).
    row: usize,
    col: usize,
    cx: f32,
    cy: f32,
    /// Nominal radius.
    r: f32,
    /// The exact (jittered) colour.
    rgb: [f32; 3],
}

/// A whole scene, independent of the pixel size it is rendered at.
#[derive(Debug, Clone)]
struct Scene {
    background: Background,
    /// Background colour at the top and at the bottom (equal when plain).
    top: [f32; 3],
    bottom: [f32; 3],
    /// Amplitude of the grain (0 when none).
    noise_amp: f32,
    noise_seed: u64,
    objects: Vec<Object>,
}

impl Scene {
    /// Background colour at height `y` (unit coordinates), without grain.
    fn base_colour(&self, y: f32) -> [f32; 3] {
        let t = y.clamp(0.0, 1.0);
        let mut c = [0.0; 3];
        for (k, v) in c.iter_mut().enumerate() {
            *v = self.top[k] + (self.bottom[k] - self.top[k]) * t;
        }
        c
    }
}

/// Nominal radius of small and large objects, as a fraction of the image side.
const SMALL_R: f32 = 0.10;
const LARGE_R: f32 = 0.18;
/// How far an object may move from its cell centre.
const JITTER: f32 = 0.06;
/// Smallest gap kept between an object and the image border.
const BORDER: f32 = 0.03;
/// Smallest gap kept between the bounding boxes of two objects.
const GAP: f32 = 0.015;

fn pick<'a, T>(rng: &mut ChaCha8Rng, xs: &'a [T]) -> &'a T {
    &xs[rng.random_range(0..xs.len())]
}

/// Picks the first (plainest) word a bit more often than the others.
fn pick_pref(rng: &mut ChaCha8Rng, xs: &[&'static str]) -> &'static str {
    if xs.len() == 1 || rng.random_bool(0.5) {
        xs[0]
    } else {
        xs[rng.random_range(1..xs.len())]
    }
}

fn shuffle<T>(rng: &mut ChaCha8Rng, xs: &mut [T]) {
    for i in (1..xs.len()).rev() {
        let j = rng.random_range(0..=i);
        xs.swap(i, j);
    }
}

/// `base` grey plus a random tint of up to `tint` per channel.
fn tinted(rng: &mut ChaCha8Rng, base: f32, tint: f32) -> [f32; 3] {
    let mut c = [0.0; 3];
    for v in c.iter_mut() {
        *v = (base + rng.random_range(-tint..=tint)).clamp(0.0, 255.0);
    }
    c
}

fn dist(a: [f32; 3], b: [f32; 3]) -> f32 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
}

/// Draws a random scene.
fn sample_scene(rng: &mut ChaCha8Rng) -> Scene {
    let background = *pick(rng, &BACKGROUNDS);
    let (top, bottom, noise_amp) = match background {
        Background::Light => {
            let base = rng.random_range(212.0..245.0);
            let c = tinted(rng, base, 10.0);
            (c, c, 0.0)
        }
        Background::Dark => {
            let base = rng.random_range(15.0..55.0);
            let c = tinted(rng, base, 14.0);
            (c, c, 0.0)
        }
        Background::Grey => {
            let base = rng.random_range(100.0..160.0);
            let c = tinted(rng, base, 5.0);
            (c, c, 0.0)
        }
        Background::Gradient => loop {
            let a = tinted(rng, 128.0, 88.0);
            let b = tinted(rng, 128.0, 88.0);
            if dist(a, b) >= 120.0 {
                break (a, b, 0.0);
            }
        },
        Background::Noisy => {
            let base = rng.random_range(70.0..185.0);
            let c = tinted(rng, base, 22.0);
            (c, c, rng.random_range(22.0..36.0))
        }
    };
    let noise_seed = rng.random::<u64>();
    let mut scene = Scene {
        background,
        top,
        bottom,
        noise_amp,
        noise_seed,
        objects: Vec::new(),
    };

    let wanted = match rng.random_range(0..10) {
        0..=2 => 1,
        3..=6 => 2,
        _ => 3,
    };
    let mut cells: [usize; 9] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
    shuffle(rng, &mut cells);
    let mut next_cell = 0;
    for _ in 0..wanted {
        let shape = *pick(rng, &SHAPES);
        let large = rng.random_bool(0.5);
        let fill = *pick(rng, &FILLS);
        let r = if large { LARGE_R } else { SMALL_R };
        let (ex, ey) = shape.half_extent(r);
        let mut placed = None;
        'cells: while next_cell < cells.len() {
            let cell = cells[next_cell];
            next_cell += 1;
            let (row, col) = (cell / 3, cell % 3);
            for _ in 0..4 {
                let cx = ((col as f32 + 0.5) / 3.0 + rng.random_range(-JITTER..JITTER))
                    .clamp(ex + BORDER, 1.0 - ex - BORDER);
                let cy = ((row as f32 + 0.5) / 3.0 + rng.random_range(-JITTER..JITTER))
                    .clamp(ey + BORDER, 1.0 - ey - BORDER);
                let free = scene.objects.iter().all(|o| {
                    let (ox, oy) = o.shape.half_extent(o.r);
                    (cx - o.cx).abs() >= ex + ox + GAP || (cy - o.cy).abs() >= ey + oy + GAP
                });
                if free {
                    placed = Some((row, col, cx, cy));
                    break 'cells;
                }
            }
        }
        let Some((row, col, cx, cy)) = placed else {
            break;
        };
        // A colour that stands out from the background behind the object.
        let behind = scene.base_colour(cy);
        let ok: Vec<usize> = (0..COLOURS.len())
            .filter(|&c| dist(COLOURS[c].rgb, behind) >= MIN_CONTRAST)
            .collect();
        let colour = if ok.is_empty() {
            (0..COLOURS.len())
                .max_by(|&a, &b| {
                    dist(COLOURS[a].rgb, behind).total_cmp(&dist(COLOURS[b].rgb, behind))
                })
                .unwrap_or(0)
        } else {
            *pick(rng, &ok)
        };
        let mut rgb = COLOURS[colour].rgb;
        for v in rgb.iter_mut() {
            *v = (*v + rng.random_range(-10.0..=10.0)).clamp(0.0, 255.0);
        }
        scene.objects.push(Object {
            shape,
            colour,
            large,
            fill,
            row,
            col,
            cx,
            cy,
            r,
            rgb,
        });
    }
    scene
}

// ---------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------

/// Renders a scene at `size` × `size` pixels; `with_objects: false` draws the
/// background only.
fn render(scene: &Scene, size: u32, with_objects: bool) -> RgbImage {
    let s = size as usize;
    let sf = size as f32;
    let mut buf = vec![0.0f32; s * s * 3];
    // Grain cells scale with the image so the texture looks alike at every size.
    let grain = (size / 32).max(1) as usize;
    for y in 0..s {
        let base = scene.base_colour((y as f32 + 0.5) / sf);
        for x in 0..s {
            let n = if scene.noise_amp > 0.0 {
                let cell = ((y / grain) as u64) << 32 | (x / grain) as u64;
                let h = mix(scene.noise_seed ^ cell);
                // Two uniform draws summed: a soft, roughly bell-shaped grain.
                let a = (h >> 40) as f32 / (1u64 << 24) as f32;
                let b = ((h >> 8) & 0xFF_FFFF) as f32 / (1u64 << 24) as f32;
                (a + b - 1.0) * scene.noise_amp
            } else {
                0.0
            };
            let p = &mut buf[(y * s + x) * 3..(y * s + x) * 3 + 3];
            for (v, b) in p.iter_mut().zip(base) {
                *v = b + n;
            }
        }
    }
    if with_objects {
        for o in &scene.objects {
            draw_object(&mut buf, s, o);
        }
    }
    let mut img = RgbImage::new(size, size);
    for (i, px) in img.pixels_mut().enumerate() {
        let v = &buf[i * 3..i * 3 + 3];
        *px = Rgb([to_u8(v[0]), to_u8(v[1]), to_u8(v[2])]);
    }
    img
}

fn to_u8(v: f32) -> u8 {
    v.round().clamp(0.0, 255.0) as u8
}

/// Samples per pixel side for anti-aliasing.
const SUPERSAMPLE: usize = 4;

/// Composites one object onto the float buffer with 4 × 4 supersampling.
fn draw_object(buf: &mut [f32], s: usize, o: &Object) {
    let sf = s as f32;
    let (cx, cy, r) = (o.cx * sf, o.cy * sf, o.r * sf);
    let (ex, ey) = o.shape.half_extent(r);
    // Line width of outlines and stripe borders, and the width of one stripe
    // measured along x + y (S / 16 across the stripes: 2 px at 32 px).
    let line = (0.045 * sf).max(1.2);
    let period = (sf / 16.0).max(1.5) * std::f32::consts::SQRT_2;
    let x0 = ((cx - ex - 1.0).floor().max(0.0)) as usize;
    let x1 = ((cx + ex + 1.0).ceil() as usize).min(s);
    let y0 = ((cy - ey - 1.0).floor().max(0.0)) as usize;
    let y1 = ((cy + ey + 1.0).ceil() as usize).min(s);
    let step = 1.0 / SUPERSAMPLE as f32;
    let total = (SUPERSAMPLE * SUPERSAMPLE) as f32;
    for y in y0..y1 {
        for x in x0..x1 {
            let mut hits = 0usize;
            for sy in 0..SUPERSAMPLE {
                let dy = y as f32 + (sy as f32 + 0.5) * step - cy;
                for sx in 0..SUPERSAMPLE {
                    let dx = x as f32 + (sx as f32 + 0.5) * step - cx;
                    let d = o.shape.sdf(dx, dy, r);
                    let inside = d <= 0.0
                        && match o.fill {
                            Fill::Solid => true,
                            Fill::Outlined => d > -line,
                            Fill::Striped => {
                                d > -line
                                    || ((dx + dy) / period + 0.5).floor().rem_euclid(2.0) < 1.0
                            }
                        };
                    hits += inside as usize;
                }
            }
            if hits > 0 {
                let a = hits as f32 / total;
                let p = &mut buf[(y * s + x) * 3..(y * s + x) * 3 + 3];
                for (v, c) in p.iter_mut().zip(o.rgb) {
                    *v += (c - *v) * a;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Captions
// ---------------------------------------------------------------------------

/// How many attributes a noun phrase spells out.
#[derive(Debug, Clone, Copy)]
enum Detail {
    Full,
    Brief,
}

/// "a" or "an" before `word`.
fn article(word: &str) -> &'static str {
    match word.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u') => "an",
        _ => "a",
    }
}

fn with_article(phrase: String) -> String {
    format!("{} {phrase}", article(&phrase))
}

/// A noun phrase without article, e.g. "small striped red circle".
fn bare_np(rng: &mut ChaCha8Rng, o: &Object, detail: Detail) -> String {
    let (p_size, p_solid, p_fill) = match detail {
        Detail::Full => (0.8, 0.3, 0.85),
        Detail::Brief => (0.45, 0.1, 0.55),
    };
    let size = if rng.random_bool(p_size) {
        Some(pick_pref(
            rng,
            if o.large { LARGE_WORDS } else { SMALL_WORDS },
        ))
    } else {
        None
    };
    let colour = pick_pref(rng, COLOURS[o.colour].words);
    let mut noun = pick_pref(rng, o.shape.nouns());
    let mut fill_word = None;
    let mut suffix = None;
    let circle = o.shape == Shape::Circle;
    match o.fill {
        Fill::Solid => {
            if circle && rng.random_bool(0.2) {
                noun = if o.large { "ball" } else { "dot" };
            }
            if rng.random_bool(p_solid) {
                fill_word = Some(pick_pref(rng, SOLID_WORDS));
            }
        }
        Fill::Striped => {
            if rng.random_bool(p_fill) {
                if rng.random_bool(0.25) {
                    suffix = Some("with stripes");
                } else {
                    fill_word = Some(pick_pref(rng, STRIPED_WORDS));
                }
            }
        }
        Fill::Outlined => {
            if circle && rng.random_bool(0.25) {
                noun = "ring";
            } else if rng.random_bool(p_fill) {
                if rng.random_bool(0.25) {
                    suffix = Some("outline");
                } else {
                    fill_word = Some(pick_pref(rng, OUTLINED_WORDS));
                }
            }
        }
    }
    let words: Vec<&str> = [size, fill_word, Some(colour), Some(noun), suffix]
        .into_iter()
        .flatten()
        .collect();
    words.join(" ")
}

/// A noun phrase with its article, e.g. "a small striped red circle".
fn np(rng: &mut ChaCha8Rng, o: &Object, detail: Detail) -> String {
    with_article(bare_np(rng, o, detail))
}

/// Where the object is, e.g. "in the top left corner".
fn position(rng: &mut ChaCha8Rng, o: &Object) -> &'static str {
    pick_pref(rng, POSITIONS[o.row][o.col])
}

/// How `a` stands relative to `b`, e.g. "to the left of" (the objects are
/// always in different grid cells).
fn relation(rng: &mut ChaCha8Rng, a: &Object, b: &Object) -> &'static str {
    use std::cmp::Ordering::*;
    let horizontal: Option<&[&'static str]> = match a.col.cmp(&b.col) {
        Less => Some(&["to the left of", "left of", "on the left of"]),
        Greater => Some(&["to the right of", "right of", "on the right of"]),
        Equal => None,
    };
    let vertical: Option<&[&'static str]> = match a.row.cmp(&b.row) {
        Less => Some(&["above", "higher up than"]),
        Greater => Some(&["below", "beneath", "under"]),
        Equal => None,
    };
    match (horizontal, vertical) {
        (Some(h), None) => pick_pref(rng, h),
        (None, Some(v)) => pick_pref(rng, v),
        (Some(h), Some(v)) => match rng.random_range(0..3) {
            0 => pick_pref(rng, h),
            1 => pick_pref(rng, v),
            _ => match (a.row < b.row, a.col < b.col) {
                (true, true) => "above and to the left of",
                (true, false) => "above and to the right of",
                (false, true) => "below and to the left of",
                (false, false) => "below and to the right of",
            },
        },
        // Same cell cannot happen; stay truthful anyway.
        (None, None) => "next to",
    }
}

/// The background, e.g. "on a dark background".
fn background(rng: &mut ChaCha8Rng, scene: &Scene) -> String {
    let prep = pick_pref(rng, &["on", "against"]);
    let adj = pick_pref(rng, scene.background.adjectives());
    let noun = pick_pref(rng, &["background", "backdrop"]);
    format!("{prep} {} {adj} {noun}", article(adj))
}

/// Number of templates per object count, and which of them are spatial.
fn templates(n_objects: usize) -> (usize, &'static [usize]) {
    match n_objects {
        1 => (11, &[1, 3, 4, 5, 7, 9, 10]),
        2 => (9, &[0, 1, 4, 5, 6, 7, 8]),
        _ => (8, &[2, 3, 4, 6, 7]),
    }
}

/// One caption of `scene` from template `t` (see [`templates`]).
fn caption(rng: &mut ChaCha8Rng, scene: &Scene, t: usize) -> String {
    let objs = &scene.objects;
    match objs.len() {
        0 => format!("an empty picture {}", background(rng, scene)),
        1 => {
            let o = &objs[0];
            match t {
                0 => np(rng, o, Detail::Full),
                1 => format!("{} {}", np(rng, o, Detail::Full), position(rng, o)),
                2 => format!("{} {}", np(rng, o, Detail::Full), background(rng, scene)),
                3 => format!(
                    "{} {} {}",
                    np(rng, o, Detail::Brief),
                    position(rng, o),
                    background(rng, scene)
                ),
                4 => format!("there is {} {}", np(rng, o, Detail::Full), position(rng, o)),
                5 => format!("{} there is {}", position(rng, o), np(rng, o, Detail::Full)),
                6 => format!(
                    "a picture of {} {}",
                    np(rng, o, Detail::Full),
                    background(rng, scene)
                ),
                7 => format!(
                    "a single {} {}",
                    bare_np(rng, o, Detail::Full),
                    position(rng, o)
                ),
                8 => format!(
                    "just one {} {}",
                    bare_np(rng, o, Detail::Full),
                    background(rng, scene)
                ),
                9 => format!("{} sitting {}", np(rng, o, Detail::Full), position(rng, o)),
                _ => {
                    let adj = pick_pref(rng, scene.background.adjectives());
                    format!(
                        "{} {adj} background with {} {}",
                        article(adj),
                        np(rng, o, Detail::Full),
                        position(rng, o)
                    )
                }
            }
        }
        2 => {
            let (a, b) = if rng.random_bool(0.5) {
                (&objs[0], &objs[1])
            } else {
                (&objs[1], &objs[0])
            };
            match t {
                0 => format!(
                    "{} {} {}",
                    np(rng, a, Detail::Full),
                    relation(rng, a, b),
                    np(rng, b, Detail::Full)
                ),
                1 => format!(
                    "{} {} {} {}",
                    np(rng, a, Detail::Brief),
                    relation(rng, a, b),
                    np(rng, b, Detail::Brief),
                    background(rng, scene)
                ),
                2 => format!(
                    "{} and {}",
                    np(rng, a, Detail::Full),
                    np(rng, b, Detail::Full)
                ),
                3 => format!(
                    "{} and {} {}",
                    np(rng, a, Detail::Full),
                    np(rng, b, Detail::Full),
                    background(rng, scene)
                ),
                4 => format!(
                    "{} {} and {} {}",
                    np(rng, a, Detail::Brief),
                    position(rng, a),
                    np(rng, b, Detail::Brief),
                    position(rng, b)
                ),
                5 => format!(
                    "{} is {} and {} is {}",
                    position(rng, a),
                    np(rng, a, Detail::Brief),
                    position(rng, b),
                    np(rng, b, Detail::Brief)
                ),
                6 => format!(
                    "two shapes: {} {} {}",
                    np(rng, a, Detail::Full),
                    relation(rng, a, b),
                    np(rng, b, Detail::Full)
                ),
                7 => format!(
                    "there is {} {} {}",
                    np(rng, a, Detail::Full),
                    relation(rng, a, b),
                    np(rng, b, Detail::Full)
                ),
                _ => format!(
                    "{} {} with {} {} it",
                    np(rng, a, Detail::Brief),
                    position(rng, a),
                    np(rng, b, Detail::Brief),
                    relation(rng, b, a)
                ),
            }
        }
        _ => {
            let mut order = [0usize, 1, 2];
            shuffle(rng, &mut order);
            let (a, b, c) = (&objs[order[0]], &objs[order[1]], &objs[order[2]]);
            match t {
                0 => format!(
                    "{}, {} and {}",
                    np(rng, a, Detail::Full),
                    np(rng, b, Detail::Full),
                    np(rng, c, Detail::Full)
                ),
                1 => format!(
                    "three shapes: {}, {} and {}",
                    np(rng, a, Detail::Brief),
                    np(rng, b, Detail::Brief),
                    np(rng, c, Detail::Brief)
                ),
                2 => format!(
                    "{} {} {}, and {} {}",
                    np(rng, a, Detail::Brief),
                    relation(rng, a, b),
                    np(rng, b, Detail::Brief),
                    np(rng, c, Detail::Brief),
                    position(rng, c)
                ),
                3 => format!(
                    "{} {} {} {}",
                    np(rng, a, Detail::Full),
                    relation(rng, a, b),
                    np(rng, b, Detail::Full),
                    background(rng, scene)
                ),
                4 => format!(
                    "{} {}, {} {} and {} {}",
                    np(rng, a, Detail::Brief),
                    position(rng, a),
                    np(rng, b, Detail::Brief),
                    position(rng, b),
                    np(rng, c, Detail::Brief),
                    position(rng, c)
                ),
                5 => format!(
                    "three objects {}: {}, {} and {}",
                    background(rng, scene),
                    np(rng, a, Detail::Brief),
                    np(rng, b, Detail::Brief),
                    np(rng, c, Detail::Brief)
                ),
                6 => format!(
                    "three shapes, including {} {} {}",
                    np(rng, a, Detail::Full),
                    relation(rng, a, b),
                    np(rng, b, Detail::Full)
                ),
                _ => format!(
                    "{} {} and {} {} {}",
                    np(rng, a, Detail::Brief),
                    position(rng, a),
                    np(rng, b, Detail::Brief),
                    relation(rng, b, c),
                    np(rng, c, Detail::Brief)
                ),
            }
        }
    }
}

/// Exactly five different captions of at most [`MAX_WORDS`] words; the first
/// one is always spatial.
fn make_captions(rng: &mut ChaCha8Rng, scene: &Scene) -> Vec<String> {
    let (count, spatial) = templates(scene.objects.len());
    let mut out: Vec<String> = Vec::with_capacity(CAPTIONS_PER_IMAGE);
    fn push(c: String, out: &mut Vec<String>) {
        if c.split_whitespace().count() <= MAX_WORDS && !out.contains(&c) {
            out.push(c);
        }
    }
    // First pass: every template at most once, a spatial one first; later
    // passes reuse templates with fresh synonyms.
    for pass in 0..20 {
        let mut order: Vec<usize> = (0..count).collect();
        shuffle(rng, &mut order);
        if pass == 0 {
            let first = *pick(rng, spatial);
            order.retain(|&t| t != first);
            order.insert(0, first);
        }
        for t in order {
            if out.len() == CAPTIONS_PER_IMAGE {
                return out;
            }
            for _ in 0..3 {
                let before = out.len();
                push(caption(rng, scene, t), &mut out);
                if out.len() > before {
                    break;
                }
            }
        }
    }
    // Practically unreachable: distinct prefixes guarantee five captions.
    let all: Vec<String> = scene
        .objects
        .iter()
        .map(|o| np(rng, o, Detail::Brief))
        .collect();
    for prefix in [
        "a picture of",
        "an image of",
        "a drawing of",
        "a scene with",
        "a render of",
        "a view of",
    ] {
        if out.len() == CAPTIONS_PER_IMAGE {
            break;
        }
        push(format!("{prefix} {}", all.join(" and ")), &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(seed: u64) -> ScenesConfig {
        ScenesConfig {
            seed,
            image_size: 32,
            train: 60,
            val: 10,
            test: 20,
        }
    }

    fn all_samples(ds: &Dataset) -> impl Iterator<Item = &Sample> {
        Split::ALL.into_iter().flat_map(move |s| ds.split(s).iter())
    }

    #[test]
    fn same_seed_gives_identical_dataset() {
        let a = generate(&small(7)).unwrap();
        let b = generate(&small(7)).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.content_hash(), b.content_hash());
        assert_eq!(a.name, "scenes");
        assert_eq!(a.train.len(), 60);
        assert_eq!(a.val.len(), 10);
        assert_eq!(a.test.len(), 20);
        assert_eq!(a.image_size(), Some((32, 32)));
        assert_eq!(a.train[3].filename, "train_00003.png");
        assert_eq!(a.test[0].filename, "test_00000.png");
    }

    #[test]
    fn different_seed_gives_different_dataset() {
        let a = generate(&small(1)).unwrap();
        let b = generate(&small(2)).unwrap();
        assert_ne!(a.content_hash(), b.content_hash());
        let same_images = a
            .train
            .iter()
            .zip(&b.train)
            .filter(|(x, y)| x.image == y.image)
            .count();
        assert_eq!(same_images, 0);
    }

    #[test]
    fn split_sizes_do_not_change_other_samples() {
        let a = generate(&small(3)).unwrap();
        let mut cfg = small(3);
        cfg.train = 25;
        let b = generate(&cfg).unwrap();
        assert_eq!(a.test, b.test);
        assert_eq!(a.val, b.val);
        assert_eq!(&a.train[..25], &b.train[..]);
    }

    #[test]
    fn scene_is_the_same_at_every_size() {
        let mut cfg = small(4);
        let a = generate(&cfg).unwrap();
        cfg.image_size = 64;
        let b = generate(&cfg).unwrap();
        assert_eq!(b.image_size(), Some((64, 64)));
        for (x, y) in a.train.iter().zip(&b.train) {
            assert_eq!(x.captions, y.captions);
        }
    }

    #[test]
    fn five_distinct_short_lowercase_captions() {
        let ds = generate(&small(5)).unwrap();
        for s in all_samples(&ds) {
            assert_eq!(s.captions.len(), 5, "{}", s.filename);
            let mut c = s.captions.clone();
            c.sort();
            c.dedup();
            assert_eq!(
                c.len(),
                5,
                "duplicate captions in {}: {:?}",
                s.filename,
                s.captions
            );
            for cap in &s.captions {
                let words = cap.split_whitespace().count();
                assert!((2..=MAX_WORDS).contains(&words), "{cap:?}");
                assert_eq!(cap, &cap.to_lowercase());
                assert_eq!(cap, cap.trim());
                assert!(!cap.contains("  "), "{cap:?}");
            }
        }
    }

    #[test]
    fn every_image_has_objects_drawn() {
        let cfg = small(6);
        for split in Split::ALL {
            for i in 0..10 {
                let (scene, sample) = make_sample(&cfg, split, i);
                let bg = render(&scene, cfg.image_size, false);
                let changed = sample
                    .image
                    .pixels()
                    .zip(bg.pixels())
                    .filter(|(p, q)| (0..3).any(|k| (p.0[k] as i32 - q.0[k] as i32).abs() > 40))
                    .count();
                assert!(
                    changed >= 10 * scene.objects.len(),
                    "{split} {i}: only {changed} object pixels for {} objects",
                    scene.objects.len()
                );
            }
        }
    }

    #[test]
    fn object_counts_and_attributes_vary() {
        let cfg = small(8);
        let mut counts = [0usize; 4];
        let mut shapes = std::collections::HashSet::new();
        let mut colours = std::collections::HashSet::new();
        let mut fills = std::collections::HashSet::new();
        let mut backgrounds = std::collections::HashSet::new();
        for i in 0..200 {
            let (scene, _) = make_sample(&cfg, Split::Train, i);
            counts[scene.objects.len()] += 1;
            backgrounds.insert(format!("{:?}", scene.background));
            for o in &scene.objects {
                shapes.insert(format!("{:?}", o.shape));
                colours.insert(o.colour);
                fills.insert(format!("{:?}", o.fill));
            }
            // Objects never share a grid cell.
            for (i, a) in scene.objects.iter().enumerate() {
                for b in &scene.objects[i + 1..] {
                    assert!((a.row, a.col) != (b.row, b.col));
                }
            }
        }
        assert_eq!(counts[0], 0);
        assert!(
            counts[1] > 0 && counts[2] > 0 && counts[3] > 0,
            "{counts:?}"
        );
        assert_eq!(shapes.len(), SHAPES.len());
        assert_eq!(colours.len(), COLOURS.len());
        assert_eq!(fills.len(), FILLS.len());
        assert_eq!(backgrounds.len(), BACKGROUNDS.len());
    }

    #[test]
    fn captions_mention_spatial_relations() {
        let ds = generate(&small(9)).unwrap();
        let spatial = [
            "left", "right", "above", "below", "beneath", "under", "higher", "top", "bottom",
            "centre", "middle",
        ];
        let is_spatial = |c: &str| c.split_whitespace().any(|w| spatial.contains(&w));
        let mut relations = 0;
        for s in all_samples(&ds) {
            assert!(
                s.captions.iter().any(|c| is_spatial(c)),
                "{}: {:?}",
                s.filename,
                s.captions
            );
            relations += s
                .captions
                .iter()
                .filter(|c| c.contains(" of ") || c.contains("above") || c.contains("below"))
                .count();
        }
        assert!(relations > 50, "only {relations} relational captions");
    }

    #[test]
    fn bad_config_is_an_error() {
        let mut cfg = small(0);
        cfg.image_size = 15;
        assert!(matches!(generate(&cfg), Err(Error::Config(_))));
        for k in 0..3 {
            let mut cfg = small(0);
            match k {
                0 => cfg.train = 0,
                1 => cfg.val = 0,
                _ => cfg.test = 0,
            }
            let err = generate(&cfg).unwrap_err();
            assert!(matches!(err, Error::Config(_)), "{err}");
        }
    }

    #[test]
    fn config_defaults_and_serde() {
        let cfg: ScenesConfig = serde_json::from_str(r#"{"seed": 3}"#).unwrap();
        assert_eq!(
            cfg,
            ScenesConfig {
                seed: 3,
                ..ScenesConfig::default()
            }
        );
        assert_eq!(cfg.image_size, 32);
        assert_eq!((cfg.train, cfg.val, cfg.test), (2000, 250, 500));
    }
}
