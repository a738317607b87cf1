//! The built-in captioned scenes: the embedded default dataset, generated
//! from a seed with no download.
//!
//! Each image shows one to three objects on a background. An object has a
//! shape (circle, square, triangle, diamond, cross), a colour (eight named
//! colours), a size (small, large), a fill style (solid, outlined, striped)
//! and a position (a cell of a 3 × 3 grid: objects never overlap). The
//! background is one of five kinds (light, dark, grey, gradient, speckled)
//! with colour jitter, and object colours are chosen to contrast with it.
//!
//! Every image has five different captions drawn from varied templates and
//! synonyms ("a small striped red circle to the left of a big blue square",
//! "a crimson disc sits in the top left corner", ...). Captions mention
//! attributes, absolute positions and spatial relations between objects, so
//! retrieval needs more than colour histograms.
//!
//! Shapes are rendered with 4 × 4 supersampling, so they look right at 32 px
//! and scale to any size. Each sample's random stream derives from (seed,
//! split, index), so changing the size of one split leaves the others as
//! they were.

use super::{Dataset, Sample, Split};
use crate::error::{Error, Result};
use image::{Rgb, RgbImage};
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Sizes and seed of the generated dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScenesConfig {
    /// Seed of every random choice.
    pub seed: u64,
    /// Side of the square images in pixels (at least 16).
    pub image_size: u32,
    /// Training images.
    pub train: usize,
    /// Validation images.
    pub val: usize,
    /// Test images.
    pub test: usize,
}

impl Default for ScenesConfig {
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

#[derive(Debug, Clone, Copy, PartialEq)]
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
    fn words(self) -> &'static [&'static str] {
        match self {
            Shape::Circle => &["circle", "disc", "round shape", "dot"],
            Shape::Square => &["square", "box", "block"],
            Shape::Triangle => &["triangle", "triangular shape", "wedge"],
            Shape::Diamond => &["diamond", "rhombus", "lozenge"],
            Shape::Cross => &["cross", "plus sign", "plus shape"],
        }
    }

    /// Whether the point (dx, dy), in units of the object's radius, is inside.
    fn contains(self, dx: f32, dy: f32) -> bool {
        match self {
            Shape::Circle => dx * dx + dy * dy <= 1.0,
            Shape::Square => dx.abs() <= 0.82 && dy.abs() <= 0.82,
            Shape::Diamond => dx.abs() + dy.abs() <= 1.0,
            Shape::Triangle => (-1.0..=0.8).contains(&dy) && dx.abs() <= (dy + 1.0) / 1.8,
            Shape::Cross => {
                (dx.abs() <= 0.34 && dy.abs() <= 1.0) || (dy.abs() <= 0.34 && dx.abs() <= 1.0)
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Style {
    Solid,
    Outlined,
    Striped,
}

impl Style {
    fn words(self) -> &'static [&'static str] {
        match self {
            Style::Solid => &["solid", "filled", "plain"],
            Style::Outlined => &["outlined", "hollow"],
            Style::Striped => &["striped", "stripy"],
        }
    }
}

struct Colour {
    rgb: [u8; 3],
    words: &'static [&'static str],
}

const COLOURS: [Colour; 8] = [
    Colour {
        rgb: [220, 30, 30],
        words: &["red", "crimson", "scarlet"],
    },
    Colour {
        rgb: [30, 170, 50],
        words: &["green", "emerald"],
    },
    Colour {
        rgb: [35, 70, 225],
        words: &["blue", "cobalt", "azure"],
    },
    Colour {
        rgb: [245, 215, 30],
        words: &["yellow", "golden"],
    },
    Colour {
        rgb: [140, 40, 190],
        words: &["purple", "violet"],
    },
    Colour {
        rgb: [250, 130, 20],
        words: &["orange", "amber"],
    },
    Colour {
        rgb: [250, 250, 250],
        words: &["white", "ivory"],
    },
    Colour {
        rgb: [15, 15, 15],
        words: &["black", "jet black"],
    },
];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Background {
    Light,
    Dark,
    Grey,
    Gradient,
    Speckled,
}

const BACKGROUNDS: [Background; 5] = [
    Background::Light,
    Background::Dark,
    Background::Grey,
    Background::Gradient,
    Background::Speckled,
];

impl Background {
    fn words(self) -> &'static [&'static str] {
        match self {
            Background::Light => &["light", "pale", "bright"],
            Background::Dark => &["dark", "black", "night"],
            Background::Grey => &["grey", "gray"],
            Background::Gradient => &["gradient", "fading", "shaded"],
            Background::Speckled => &["speckled", "noisy", "grainy"],
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Object {
    shape: Shape,
    colour: usize,
    large: bool,
    style: Style,
    /// Grid cell: column and row in 0..3.
    col: usize,
    row: usize,
}

const POSITION_WORDS: [[&str; 3]; 3] = [
    ["top left corner", "top", "top right corner"],
    ["left side", "centre", "right side"],
    ["bottom left corner", "bottom", "bottom right corner"],
];

fn luminance(c: [f32; 3]) -> f32 {
    0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]
}

fn colour_distance(a: [f32; 3], b: [f32; 3]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).powi(2))
        .sum::<f32>()
        .sqrt()
}

/// Background colour at (x, y) in [0,1]² and a representative colour.
struct Painted {
    pixels: Vec<[f32; 3]>,
    mean: [f32; 3],
}

fn paint_background(kind: Background, size: usize, rng: &mut ChaCha8Rng) -> Painted {
    let j = |rng: &mut ChaCha8Rng, base: f32, spread: f32| -> [f32; 3] {
        let t = base + rng.random_range(-spread..spread);
        [0, 1, 2].map(|_| (t + rng.random_range(-8.0..8.0f32)).clamp(0.0, 255.0))
    };
    let n = size * size;
    let pixels: Vec<[f32; 3]> = match kind {
        Background::Light => vec![j(rng, 225.0, 20.0); n],
        Background::Dark => vec![j(rng, 40.0, 20.0); n],
        Background::Grey => vec![j(rng, 128.0, 15.0); n],
        Background::Gradient => {
            let t = rng.random_range(60.0..200.0);
            let top = j(rng, t, 10.0);
            let b = rng.random_range(60.0..200.0);
            let bottom = j(rng, b, 10.0);
            (0..n)
                .map(|i| {
                    let t = (i / size) as f32 / (size - 1) as f32;
                    [0, 1, 2].map(|c| top[c] * (1.0 - t) + bottom[c] * t)
                })
                .collect()
        }
        Background::Speckled => {
            let m = rng.random_range(90.0..170.0);
            let base = j(rng, m, 10.0);
            (0..n)
                .map(|_| {
                    let d = rng.random_range(-45.0..45.0f32);
                    base.map(|v| (v + d).clamp(0.0, 255.0))
                })
                .collect()
        }
    };
    let mut mean = [0f32; 3];
    for p in &pixels {
        for c in 0..3 {
            mean[c] += p[c] / n as f32;
        }
    }
    Painted { pixels, mean }
}

fn draw(obj: &Object, size: usize, pixels: &mut [[f32; 3]]) {
    let cell = size as f32 / 3.0;
    let cx = (obj.col as f32 + 0.5) * cell;
    let cy = (obj.row as f32 + 0.5) * cell;
    let r = cell * if obj.large { 0.47 } else { 0.3 };
    let stripe = (r * 0.5).max(1.0);
    let rgb = COLOURS[obj.colour].rgb.map(|v| v as f32);
    let inside = |px: f32, py: f32| -> bool {
        let (dx, dy) = ((px - cx) / r, (py - cy) / r);
        if !obj.shape.contains(dx, dy) {
            return false;
        }
        match obj.style {
            Style::Solid => true,
            Style::Outlined => !obj.shape.contains(dx / 0.55, dy / 0.55),
            Style::Striped => {
                // an outline keeps the shape readable; diagonal stripes fill it
                !obj.shape.contains(dx / 0.7, dy / 0.7)
                    || (((px - cx + py - cy) / stripe).floor() as i64).rem_euclid(2) == 0
            }
        }
    };
    let (x0, x1) = (
        (cx - r - 1.0).max(0.0) as usize,
        ((cx + r + 1.0) as usize).min(size - 1),
    );
    let (y0, y1) = (
        (cy - r - 1.0).max(0.0) as usize,
        ((cy + r + 1.0) as usize).min(size - 1),
    );
    const SS: usize = 4;
    for y in y0..=y1 {
        for x in x0..=x1 {
            let mut hits = 0;
            for sy in 0..SS {
                for sx in 0..SS {
                    let px = x as f32 + (sx as f32 + 0.5) / SS as f32;
                    let py = y as f32 + (sy as f32 + 0.5) / SS as f32;
                    hits += inside(px, py) as usize;
                }
            }
            if hits > 0 {
                let a = hits as f32 / (SS * SS) as f32;
                let p = &mut pixels[y * size + x];
                for c in 0..3 {
                    p[c] = p[c] * (1.0 - a) + rgb[c] * a;
                }
            }
        }
    }
}

fn pick<'a>(rng: &mut ChaCha8Rng, words: &'a [&'a str]) -> &'a str {
    words.choose(rng).copied().unwrap_or("")
}

/// A noun phrase for an object; `detail` in 0..=2 sets how many optional
/// attributes (size, style) are mentioned. Colour and shape always are.
fn noun_phrase(o: &Object, rng: &mut ChaCha8Rng, detail: usize) -> String {
    let mut parts = Vec::new();
    let size_words: &[&str] = if o.large {
        &["large", "big", "huge"]
    } else {
        &["small", "little", "tiny"]
    };
    let mention_size = detail >= 1 || rng.random_bool(0.4);
    let mention_style = detail >= 2 || (o.style != Style::Solid && rng.random_bool(0.6));
    if mention_size {
        parts.push(pick(rng, size_words));
    }
    if mention_style {
        parts.push(pick(rng, o.style.words()));
    }
    parts.push(pick(rng, COLOURS[o.colour].words));
    parts.push(pick(rng, o.shape.words()));
    let phrase = parts.join(" ");
    let article = if phrase.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {phrase}")
}

/// How `a` stands relative to `b`: "to the left of", "above", ...
fn relation(a: &Object, b: &Object, rng: &mut ChaCha8Rng) -> String {
    let horiz = match a.col.cmp(&b.col) {
        std::cmp::Ordering::Less => Some(pick(rng, &["to the left of", "left of"])),
        std::cmp::Ordering::Greater => Some(pick(rng, &["to the right of", "right of"])),
        std::cmp::Ordering::Equal => None,
    };
    let vert = match a.row.cmp(&b.row) {
        std::cmp::Ordering::Less => Some(pick(rng, &["above", "over"])),
        std::cmp::Ordering::Greater => Some(pick(rng, &["below", "under", "beneath"])),
        std::cmp::Ordering::Equal => None,
    };
    match (horiz, vert) {
        (Some(h), Some(v)) => format!("{v} and {h}"),
        (Some(h), None) => h.to_string(),
        (None, Some(v)) => v.to_string(),
        (None, None) => "next to".to_string(),
    }
}

fn caption(objs: &[Object], bg: Background, rng: &mut ChaCha8Rng, detail: usize) -> String {
    let bgw = pick(rng, bg.words());
    let pos = |o: &Object| POSITION_WORDS[o.row][o.col];
    let np = |o: &Object, rng: &mut ChaCha8Rng| noun_phrase(o, rng, detail);
    match objs {
        [a] => match rng.random_range(0..6) {
            0 => format!("{} on a {bgw} background", np(a, rng)),
            1 => format!("a picture of {} in the {}", np(a, rng), pos(a)),
            2 => format!("{} sits in the {} of the image", np(a, rng), pos(a)),
            3 => format!("there is {} near the {}", np(a, rng), pos(a)),
            4 => format!(
                "a single {} against a {bgw} backdrop",
                &np(a, rng)[2..].trim_start()
            ),
            _ => format!("{} in the {}, {bgw} background", np(a, rng), pos(a)),
        },
        [a, b] => {
            let (a, b) = if rng.random_bool(0.5) { (a, b) } else { (b, a) };
            match rng.random_range(0..6) {
                0 => format!("{} {} {}", np(a, rng), relation(a, b, rng), np(b, rng)),
                1 => format!("{} and {} on a {bgw} background", np(a, rng), np(b, rng)),
                2 => format!("{} is {} {}", np(b, rng), relation(b, a, rng), np(a, rng)),
                3 => format!(
                    "two shapes: {} at the {} and {} at the {}",
                    np(a, rng),
                    pos(a),
                    np(b, rng),
                    pos(b)
                ),
                4 => format!(
                    "{} {} {} on a {bgw} background",
                    np(a, rng),
                    relation(a, b, rng),
                    np(b, rng)
                ),
                _ => format!(
                    "{} in the {} with {} nearby",
                    np(a, rng),
                    pos(a),
                    np(b, rng)
                ),
            }
        }
        [a, b, c] => {
            let mut o = [*a, *b, *c];
            o.swap(0, rng.random_range(0..3));
            let [a, b, c] = o;
            match rng.random_range(0..5) {
                0 => format!("{}, {} and {}", np(&a, rng), np(&b, rng), np(&c, rng)),
                1 => format!(
                    "{} {} {}, with {} in the {}",
                    np(&a, rng),
                    relation(&a, &b, rng),
                    np(&b, rng),
                    np(&c, rng),
                    pos(&c)
                ),
                2 => format!(
                    "three objects on a {bgw} background: {}, {} and {}",
                    np(&a, rng),
                    np(&b, rng),
                    np(&c, rng)
                ),
                3 => format!(
                    "{} in the {} and {} {} {}",
                    np(&a, rng),
                    pos(&a),
                    np(&b, rng),
                    relation(&b, &c, rng),
                    np(&c, rng)
                ),
                _ => format!(
                    "{} {} {} and {}",
                    np(&a, rng),
                    relation(&a, &b, rng),
                    np(&b, rng),
                    np(&c, rng)
                ),
            }
        }
        _ => unreachable!("scenes hold one to three objects"),
    }
}

fn sample_seed(seed: u64, split: Split, index: usize) -> u64 {
    crate::train::derive_seed(seed, split.name(), &[index as u64])
}

fn generate_one(size: usize, rng: &mut ChaCha8Rng) -> (RgbImage, Vec<String>) {
    let bg = *BACKGROUNDS.choose(rng).expect("backgrounds");
    let mut painted = paint_background(bg, size, rng);
    let count = rng.random_range(1..=3);
    let mut cells: Vec<usize> = (0..9).collect();
    let mut objs = Vec::with_capacity(count);
    for _ in 0..count {
        let ci = rng.random_range(0..cells.len());
        let cell = cells.swap_remove(ci);
        // a colour that stands out from the background
        let colour = loop {
            let c = rng.random_range(0..COLOURS.len());
            let rgb = COLOURS[c].rgb.map(|v| v as f32);
            let contrast = colour_distance(rgb, painted.mean)
                .max((luminance(rgb) - luminance(painted.mean)).abs() * 1.5);
            if contrast > 110.0 {
                break c;
            }
        };
        objs.push(Object {
            shape: *SHAPES.choose(rng).expect("shapes"),
            colour,
            large: rng.random_bool(0.5),
            style: *[Style::Solid, Style::Solid, Style::Outlined, Style::Striped]
                .choose(rng)
                .expect("styles"),
            col: cell % 3,
            row: cell / 3,
        });
    }
    for o in &objs {
        draw(o, size, &mut painted.pixels);
    }
    let mut img = RgbImage::new(size as u32, size as u32);
    for (p, v) in img.pixels_mut().zip(&painted.pixels) {
        *p = Rgb(v.map(|c| c.round().clamp(0.0, 255.0) as u8));
    }
    let mut captions: Vec<String> = Vec::with_capacity(5);
    let mut attempts = 0;
    while captions.len() < 5 {
        // later attempts add detail, which makes a duplicate ever less likely
        let detail = (attempts / 20).min(2);
        let c = caption(&objs, bg, rng, detail);
        if !captions.contains(&c) {
            captions.push(c);
        }
        attempts += 1;
        if attempts > 200 {
            captions.push(format!("{} (view {})", captions[0], captions.len() + 1));
        }
    }
    (img, captions)
}

/// Generates the dataset described by `cfg` (name `"scenes"`).
pub fn generate(cfg: &ScenesConfig) -> Result<Dataset> {
    if cfg.image_size < 16 {
        return Err(Error::Config(format!(
            "scenes: image_size {} < 16",
            cfg.image_size
        )));
    }
    let size = cfg.image_size as usize;
    let mut ds = Dataset {
        name: "scenes".into(),
        train: Vec::new(),
        val: Vec::new(),
        test: Vec::new(),
    };
    for (split, n) in [
        (Split::Train, cfg.train),
        (Split::Val, cfg.val),
        (Split::Test, cfg.test),
    ] {
        if n == 0 {
            return Err(Error::EmptySplit {
                source_name: "scenes".into(),
                split: split.name().into(),
            });
        }
        let samples = ds.split_mut(split);
        for i in 0..n {
            let mut rng = ChaCha8Rng::seed_from_u64(sample_seed(cfg.seed, split, i));
            let (image, captions) = generate_one(size, &mut rng);
            samples.push(Sample {
                filename: format!("{}_{i:05}.png", split.name()),
                image,
                captions,
            });
        }
    }
    Ok(ds)
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

    #[test]
    fn same_seed_same_bytes_other_seed_other_data() {
        let a = generate(&small(1)).unwrap();
        let b = generate(&small(1)).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.content_hash(), b.content_hash());
        let c = generate(&small(2)).unwrap();
        assert_ne!(a.content_hash(), c.content_hash());
        // a split does not depend on the others' sizes
        let mut bigger = small(1);
        bigger.train = 80;
        assert_eq!(generate(&bigger).unwrap().test, a.test);
    }

    #[test]
    fn five_distinct_captions_with_relations_and_visible_objects() {
        let ds = generate(&small(3)).unwrap();
        let mut spatial = 0;
        for s in ds.train.iter().chain(&ds.val).chain(&ds.test) {
            assert_eq!(s.captions.len(), 5);
            let mut uniq = s.captions.clone();
            uniq.sort();
            uniq.dedup();
            assert_eq!(uniq.len(), 5, "{:?}", s.captions);
            let text = s.captions.join(" ");
            if ["left", "right", "above", "below", "top", "bottom", "centre"]
                .iter()
                .any(|w| text.contains(w))
            {
                spatial += 1;
            }
            // some pixel differs clearly from the corner (the background)
            let corner = s.image.get_pixel(0, 0).0;
            let differs = s.image.pixels().any(|p| {
                p.0.iter()
                    .zip(corner)
                    .map(|(a, b)| (*a as i32 - b as i32).abs())
                    .sum::<i32>()
                    > 120
            });
            assert!(differs, "{} looks empty", s.filename);
        }
        assert!(spatial > 80, "spatial words in only {spatial} of 90 images");
    }

    #[test]
    fn one_to_three_objects_and_bad_configs() {
        let ds = generate(&small(4)).unwrap();
        let count_caption = |n: &str| {
            ds.train
                .iter()
                .filter(|s| s.captions.iter().any(|c| c.contains(n)))
                .count()
        };
        assert!(count_caption("three objects") + count_caption(", with") > 0);
        assert!(count_caption("two shapes") + count_caption(" and ") > 0);
        let mut bad = small(0);
        bad.image_size = 8;
        assert!(generate(&bad).is_err());
        let mut bad = small(0);
        bad.val = 0;
        assert!(matches!(generate(&bad), Err(Error::EmptySplit { .. })));
    }
}
