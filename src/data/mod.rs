//! Datasets of images with several captions each, split into train / val / test.
//!
//! Every source — the built-in [`scenes`] generator, Karpathy's
//! `dataset_*.json`, the per-split annotation files of the paper's code —
//! loads into one [`Dataset`] value, so everything downstream sees one type.
//! Images are kept as 8-bit RGB of one common size; [`Dataset::images_tensor`]
//! turns a split into the normalised `[N, 3, H, W]` tensor the models eat.

pub mod captioned_images;
pub mod karpathy;
pub mod prepare;
pub mod scenes;

pub use captioned_images::CaptionedImages;

use crate::config::ImageNorm;
use crate::error::{Error, Result};
use candle_core::{Device, Tensor};
use image::RgbImage;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Maps `f` over `items` on all available cores (one contiguous chunk per
/// thread) and returns the results in the order of `items`, so the outcome
/// does not depend on the number of cores.
pub(crate) fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    if threads <= 1 || items.len() < 2 {
        return items.iter().map(f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(f).collect::<Vec<R>>()))
            .collect();
        let mut out = Vec::with_capacity(items.len());
        for h in handles {
            match h.join() {
                Ok(part) => out.extend(part),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        out
    })
}

/// One of the three splits of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Training split (Karpathy's `restval` also lands here).
    Train,
    /// Validation split: used for model selection.
    Val,
    /// Test split: reported once.
    Test,
}

impl Split {
    /// All splits in order.
    pub const ALL: [Split; 3] = [Split::Train, Split::Val, Split::Test];

    /// The lowercase name used in files (`"train"`, `"val"`, `"test"`).
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One image with its captions.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// File name relative to the dataset's image folder (e.g. `"000123.png"`).
    pub filename: String,
    /// The pixels, already resized to the dataset's common size.
    pub image: RgbImage,
    /// Its captions (at least one; five in Flickr30K, COCO and the built-in scenes).
    pub captions: Vec<String>,
}

/// Images with captions in three splits. All images share one size.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// A short name (`"scenes"`, `"flickr30k"`, ...), used in results and file names.
    pub name: String,
    /// Training images.
    pub train: Vec<Sample>,
    /// Validation images.
    pub val: Vec<Sample>,
    /// Test images.
    pub test: Vec<Sample>,
}

impl ImageNorm {
    /// The range a real pixel has after normalisation: black and white in
    /// each channel, as `[1, 3, 1, 1]` tensors that broadcast over a batch.
    pub fn pixel_range(&self, device: &Device) -> Result<(Tensor, Tensor)> {
        let at = |v: f32| -> Result<Tensor> {
            let c: Vec<f32> = (0..3).map(|c| self.normalise(c, v)).collect();
            Ok(Tensor::from_vec(c, (1, 3, 1, 1), device)?)
        };
        Ok((at(0.0)?, at(1.0)?))
    }

    /// Normalise RGB images into an `[N, 3, H, W]` f32 tensor.
    pub fn to_tensor(&self, images: &[&RgbImage], device: &Device) -> Result<Tensor> {
        let Some(first) = images.first() else {
            return Err(Error::Shape("no images to turn into a tensor".into()));
        };
        let (w, h) = first.dimensions();
        let (w, h) = (w as usize, h as usize);
        let mut data = Vec::with_capacity(images.len() * 3 * h * w);
        for (i, img) in images.iter().enumerate() {
            if img.dimensions() != first.dimensions() {
                return Err(Error::Shape(format!(
                    "image {i} is {:?}, the first is {:?}: resize to one size first",
                    img.dimensions(),
                    first.dimensions()
                )));
            }
            for c in 0..3 {
                data.extend(
                    img.pixels()
                        .map(|p| self.normalise(c, p.0[c] as f32 / 255.0)),
                );
            }
        }
        Ok(Tensor::from_vec(data, (images.len(), 3, h, w), device)?)
    }

    /// Undo the normalisation of one `[3, H, W]` tensor, clamping to valid pixels.
    pub fn to_image(&self, x: &Tensor) -> Result<RgbImage> {
        let (c, h, w) = x.dims3()?;
        if c != 3 {
            return Err(Error::Shape(format!("expected 3 channels, got {c}")));
        }
        let v: Vec<f32> = x
            .to_dtype(candle_core::DType::F32)?
            .flatten_all()?
            .to_vec1()?;
        let mut img = RgbImage::new(w as u32, h as u32);
        for (i, p) in img.pixels_mut().enumerate() {
            for ch in 0..3 {
                let val = (v[ch * h * w + i] * self.std[ch] + self.mean[ch]) * 255.0;
                p.0[ch] = val.round().clamp(0.0, 255.0) as u8;
            }
        }
        Ok(img)
    }
}

impl Dataset {
    /// The samples of one split.
    pub fn split(&self, split: Split) -> &[Sample] {
        match split {
            Split::Train => &self.train,
            Split::Val => &self.val,
            Split::Test => &self.test,
        }
    }

    /// Mutable access to one split's samples.
    pub fn split_mut(&mut self, split: Split) -> &mut Vec<Sample> {
        match split {
            Split::Train => &mut self.train,
            Split::Val => &mut self.val,
            Split::Test => &mut self.test,
        }
    }

    /// `(width, height)` of the images (all share it), or `None` when empty.
    pub fn image_size(&self) -> Option<(u32, u32)> {
        Split::ALL
            .iter()
            .find_map(|s| self.split(*s).first())
            .map(|s| s.image.dimensions())
    }

    /// Checks what every consumer relies on: no split is empty, every image has
    /// at least one caption and all images share one size. `source` names the
    /// origin in the error (a file path, or `"scenes"`).
    pub fn validate(&self, source: &str) -> Result<()> {
        let size = self.image_size();
        for split in Split::ALL {
            let samples = self.split(split);
            if samples.is_empty() {
                return Err(Error::EmptySplit {
                    source_name: source.to_string(),
                    split: split.name().to_string(),
                });
            }
            for s in samples {
                if s.captions.is_empty() {
                    return Err(Error::NoCaptions {
                        annotation: source.into(),
                        image: s.filename.clone(),
                    });
                }
                if Some(s.image.dimensions()) != size {
                    return Err(Error::Shape(format!(
                        "{source}: image {} is {:?}, others are {:?}",
                        s.filename,
                        s.image.dimensions(),
                        size
                    )));
                }
            }
        }
        Ok(())
    }

    /// The normalised pixels of one split as an `[N, 3, H, W]` f32 tensor.
    pub fn images_tensor(&self, split: Split, norm: &ImageNorm, device: &Device) -> Result<Tensor> {
        let imgs: Vec<&RgbImage> = self.split(split).iter().map(|s| &s.image).collect();
        norm.to_tensor(&imgs, device)
    }

    /// All captions of a split, flattened in image order, with for each
    /// caption the index of its image in the split.
    pub fn captions(&self, split: Split) -> (Vec<&str>, Vec<usize>) {
        let mut texts = Vec::new();
        let mut owner = Vec::new();
        for (i, s) in self.split(split).iter().enumerate() {
            for c in &s.captions {
                texts.push(c.as_str());
                owner.push(i);
            }
        }
        (texts, owner)
    }

    /// Number of captions in a split.
    pub fn num_captions(&self, split: Split) -> usize {
        self.split(split).iter().map(|s| s.captions.len()).sum()
    }

    /// A digest of the dataset's name and captions (what embeddings depend on).
    pub fn captions_digest(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.name.as_bytes());
        for s in Split::ALL {
            h.update(s.name().as_bytes());
            for sample in self.split(s) {
                h.update([1u8]);
                for c in &sample.captions {
                    h.update(c.as_bytes());
                    h.update([0u8]);
                }
            }
        }
        h.finalize()
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// A hex digest of the whole content (name, file names, captions, pixels):
    /// equal datasets have equal digests. Used to key caches and trajectories.
    pub fn content_hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.name.as_bytes());
        for split in Split::ALL {
            h.update(split.name().as_bytes());
            for s in self.split(split) {
                h.update(s.filename.as_bytes());
                h.update([0u8]);
                let (w, ht) = s.image.dimensions();
                h.update(w.to_le_bytes());
                h.update(ht.to_le_bytes());
                h.update(s.image.as_raw());
                for c in &s.captions {
                    h.update(c.as_bytes());
                    h.update([0u8]);
                }
            }
        }
        let digest = h.finalize();
        digest.iter().take(12).map(|b| format!("{b:02x}")).collect()
    }

    /// One line per split: image and caption counts, image size.
    pub fn summary(&self) -> String {
        let (w, h) = self.image_size().unwrap_or((0, 0));
        let parts: Vec<String> = Split::ALL
            .iter()
            .map(|s| {
                format!(
                    "{s}: {} images / {} captions",
                    self.split(*s).len(),
                    self.num_captions(*s)
                )
            })
            .collect();
        format!("{} ({w}x{h} px): {}", self.name, parts.join(", "))
    }
}
