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
//! cores.

mod attributes;
mod captions;
mod layout;
mod render;

use super::{par_map, Dataset, Sample, Split};
use crate::config::{Config, DataSource};
use crate::error::{Error, Result};
use captions::make_captions;
use layout::{sample_scene, Scene};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use render::render;
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
    check_sizes(
        cfg.image_size,
        &[("train", cfg.train), ("val", cfg.val), ("test", cfg.test)],
    )?;
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
        *ds.split_mut(split) = par_map(&indices, |&i| make_sample(cfg, Stream::Split(split), i).1);
    }
    ds.validate("scenes")?;
    Ok(ds)
}

/// The pretraining source of the dataset `cfg` describes (`cfg`'s split
/// sizes are not used): `train` and `val` scenes of the same kind, at the
/// same size, drawn from generator streams of their own that the
/// dataset's train, val and test splits never use, so the source shares no
/// image with them. A dataset named `scenes-pretraining` whose test split
/// repeats its val split (the source is never tested); file names
/// `source_{split}_{index:05}.png`. Errors as [`generate`].
pub fn generate_pretraining_source(
    cfg: &ScenesConfig,
    train: usize,
    val: usize,
) -> Result<Dataset> {
    check_sizes(cfg.image_size, &[("train", train), ("val", val)])?;
    let part = |split: Split, n: usize| {
        let indices: Vec<usize> = (0..n).collect();
        par_map(&indices, |&i| make_sample(cfg, Stream::Source(split), i).1)
    };
    let held_out = part(Split::Val, val);
    let ds = Dataset {
        name: "scenes-pretraining".to_string(),
        train: part(Split::Train, train),
        test: held_out.clone(),
        val: held_out,
    };
    ds.validate("scenes-pretraining")?;
    Ok(ds)
}

/// Fails when `image_size` is outside [16, 1024] or a part has no image.
fn check_sizes(image_size: u32, parts: &[(&str, usize)]) -> Result<()> {
    if !(MIN_SIZE..=MAX_SIZE).contains(&image_size) {
        return Err(Error::Config(format!(
            "scenes.image_size must be between {MIN_SIZE} and {MAX_SIZE} pixels, got {image_size}"
        )));
    }
    for (part, n) in parts {
        if *n == 0 {
            return Err(Error::Config(format!(
                "scenes.{part} must be at least 1 image, got 0"
            )));
        }
    }
    Ok(())
}

/// Which generator stream a sample comes from: a split of the dataset, or
/// a part of its pretraining source.
#[derive(Debug, Clone, Copy)]
enum Stream {
    Split(Split),
    Source(Split),
}

/// The scene and the finished sample at `(stream, index)`.
fn make_sample(cfg: &ScenesConfig, stream: Stream, index: usize) -> (Scene, Sample) {
    let mut rng = ChaCha8Rng::seed_from_u64(sample_seed(cfg.seed, stream, index));
    let scene = sample_scene(&mut rng);
    let captions = make_captions(&mut rng, &scene);
    let image = render(&scene, cfg.image_size, true);
    let filename = match stream {
        Stream::Split(split) => format!("{}_{index:05}.png", split.name()),
        Stream::Source(split) => format!("source_{}_{index:05}.png", split.name()),
    };
    let sample = Sample {
        filename,
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

/// The seed of one sample's generator, from the dataset seed, stream and index.
fn sample_seed(seed: u64, stream: Stream, index: usize) -> u64 {
    let tag = match stream {
        Stream::Split(Split::Train) => 0x7472_6169_6e00_0001,
        Stream::Split(Split::Val) => 0x7661_6c00_0000_0002,
        Stream::Split(Split::Test) => 0x7465_7374_0000_0003,
        Stream::Source(Split::Train) => 0x7072_6574_7261_0004,
        Stream::Source(_) => 0x7072_6576_616c_0005,
    };
    mix(mix(mix(seed) ^ tag) ^ index as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn small(seed: u64) -> ScenesConfig {
        ScenesConfig {
            seed,
            image_size: 32,
            train: 60,
            val: 10,
            test: 20,
        }
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
