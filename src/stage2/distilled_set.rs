//! [`DistilledSet`]: the M synthetic pairs (pixels and text embeddings in
//! the frozen encoder's space), the student's learned learning rates and,
//! with LoRS, a learned similarity over the pairs; initialised from real
//! pairs or noise, saved and loaded as safetensors.
//!
//! With a frozen backbone a set may instead hold that backbone's
//! (standardised) features ([`SynthSpace::Features`]); its file then names
//! the backbone and its weights digest, and it is refused by an experiment
//! with any other image encoder.

use crate::config::{InitKind, SynthSpace};
use crate::data::CaptionedImages;
use crate::data::Split;
use crate::error::{Error, Result};
use crate::experiment::Experiment;
use crate::seeds::{derive_seed, seeded_normal};
use crate::stage1::sgd::TowerLr;
use crate::stage2::similarity::{factor_key, LearnedSimilarity};
use candle_core::{DType, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use std::collections::HashMap;
use std::path::Path;

/// M synthetic image–text pairs and the student's learned learning rates.
#[derive(Debug, Clone)]
pub struct DistilledSet {
    /// Synthetic pixels `[M, 3, H, W]` (normalised space), or with
    /// [`SynthSpace::Features`] standardised backbone features `[M, D]`.
    pub images: Tensor,
    /// Synthetic text embeddings `[M, D]`.
    pub texts: Tensor,
    /// log α of the image tower.
    pub log_lr_image: f64,
    /// log α of the text tower.
    pub log_lr_text: f64,
    /// The image encoder it was distilled with (its
    /// [`architecture`](crate::config::ImageEncoderConfig::architecture)
    /// label; `None` in files written before it was recorded).
    pub image_encoder: Option<String>,
    /// What `images` are.
    pub space: SynthSpace,
    /// For a feature-space set: the frozen backbone it belongs to
    /// ([`FrozenBackbone::id`](crate::model::FrozenBackbone::id): name and
    /// weights digest).
    pub backbone: Option<String>,
    /// The learned image–text similarity over the pairs (LoRS,
    /// `distill.similarity`), which students train against; `None` for the
    /// paper's sets.
    pub similarity: Option<LearnedSimilarity>,
}

impl DistilledSet {
    /// `pairs` synthetic pairs initialised per modality from real training
    /// pairs or noise (see [`InitKind`]), with student learning rates `lr`,
    /// in the experiment's configured space (`distill.space`).
    pub fn init(
        exp: &Experiment,
        pairs: usize,
        images: InitKind,
        texts: InitKind,
        lr: TowerLr,
        seed: u64,
    ) -> Result<Self> {
        Self::init_in(
            exp,
            exp.config.distill.space,
            pairs,
            images,
            texts,
            lr,
            seed,
        )
    }

    /// [`init`](Self::init) in `space`: with a frozen backbone, real images
    /// start as their pixels ([`SynthSpace::Pixels`]) or as their
    /// standardised features ([`SynthSpace::Features`]).
    pub fn init_in(
        exp: &Experiment,
        space: SynthSpace,
        pairs: usize,
        images: InitKind,
        texts: InitKind,
        lr: TowerLr,
        seed: u64,
    ) -> Result<Self> {
        let backbone = match (space, &exp.backbone) {
            (SynthSpace::Features, Some(b)) => Some(b.id()),
            (SynthSpace::Features, None) => {
                return Err(Error::Config(
                    "a feature-space set needs model.backbone = \"frozen\"".into(),
                ))
            }
            (SynthSpace::Pixels, _) => None,
        };
        let train = &exp.train;
        let captions = train
            .random_pairs(pairs, seed)
            .map_err(|e| Error::Config(format!("distill.pairs: {e}")))?;
        let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(seed, "distill-init", &[]));
        let dev = train.images.device();
        let (mut real_x, real_e) = train.batch(&captions)?;
        if space == SynthSpace::Pixels && exp.backbone.is_some() {
            let owners: Vec<u32> = captions.iter().map(|&c| train.owner[c as usize]).collect();
            real_x = exp.pixels(Split::Train, &owners)?;
        }
        let images = match images {
            InitKind::Real => real_x,
            // from our seeded generator (candle's randn is not seeded per call)
            InitKind::Noise => seeded_normal(&mut rng, real_x.dims(), dev)?,
        };
        let texts = match texts {
            InitKind::Real => real_e,
            InitKind::Noise => {
                let mean = train.texts.mean_keepdim(0)?;
                let std = train
                    .texts
                    .broadcast_sub(&mean)?
                    .sqr()?
                    .mean_keepdim(0)?
                    .sqrt()?;
                seeded_normal(&mut rng, real_e.dims(), dev)?
                    .broadcast_mul(&std)?
                    .broadcast_add(&mean)?
            }
        };
        Ok(DistilledSet {
            images: images.to_dtype(DType::F32)?,
            texts: texts.to_dtype(DType::F32)?,
            log_lr_image: lr.image.ln(),
            log_lr_text: lr.text.ln(),
            image_encoder: Some(exp.config.model.image.architecture()),
            space,
            backbone,
            similarity: None,
        })
    }

    /// The set as training pairs for `exp`'s model: pixels of a set go
    /// through the frozen backbone when `exp` has one (pair j = image j with
    /// text j). Checks that the set fits `exp` first.
    pub fn training_pairs(&self, exp: &Experiment) -> Result<CaptionedImages> {
        self.check_fits(exp)?;
        let images = match (&exp.backbone, self.space) {
            (Some(b), SynthSpace::Pixels) => b.features_chunked(&self.images, 64)?,
            _ => self.images.clone(),
        };
        self.with_similarity(CaptionedImages::new(
            images,
            self.texts.clone(),
            (0..self.len() as u32).collect(),
        )?)
    }

    /// `pairs` with this set's learned similarity attached, when it has one.
    fn with_similarity(&self, pairs: CaptionedImages) -> Result<CaptionedImages> {
        match &self.similarity {
            Some(s) => pairs.with_similarity(s.matrix()?.detach()),
            None => Ok(pairs),
        }
    }

    /// Floats the set stores: pixels (or features), text embeddings, the
    /// two learned rates and the similarity's factors. Sets compared "at
    /// equal storage" hold about as many floats.
    pub fn num_floats(&self) -> usize {
        self.images.elem_count()
            + self.texts.elem_count()
            + 2
            + self
                .similarity
                .as_ref()
                .map_or(0, LearnedSimilarity::num_floats)
    }

    /// Bytes the set's values take as stored (f32, four bytes a float;
    /// the file adds a small header and metadata).
    pub fn num_bytes(&self) -> usize {
        self.num_floats() * std::mem::size_of::<f32>()
    }

    /// The learning rates for students of `exp`'s encoders trained on this
    /// set, and, when `exp`'s image encoder is not the one the set was
    /// distilled with (cross-architecture evaluation), that encoder's label.
    /// The learned text α always applies (the text tower is the same); the
    /// learned image α belongs to the distilling encoder, so another encoder
    /// trains with its own expert rate (`experts.lr_image`).
    pub fn student_lr(&self, exp: &Experiment) -> (TowerLr, Option<String>) {
        let ours = exp.config.model.image.architecture();
        match &self.image_encoder {
            Some(theirs) if *theirs != ours => (
                TowerLr {
                    image: exp.config.experts.lr_image,
                    text: self.lr().text,
                },
                Some(theirs.clone()),
            ),
            _ => (self.lr(), None),
        }
    }

    /// Errors unless the set's images and texts have `exp`'s image size and
    /// embedding width (a set from another dataset or text encoder).
    pub fn check_fits(&self, exp: &Experiment) -> Result<()> {
        match self.space {
            SynthSpace::Pixels => {
                let (_, _, h, w) = self.images.dims4()?;
                let side = exp.image_side();
                let (eh, ew) = (side, side);
                if (h, w) != (eh, ew) {
                    return Err(Error::Incompatible(format!(
                        "the distilled images are {h}×{w} px, this experiment's are {eh}×{ew}"
                    )));
                }
            }
            SynthSpace::Features => {
                let theirs = self.backbone.as_deref().unwrap_or("an unrecorded backbone");
                let ours = exp.backbone.as_ref().map(|b| b.id());
                if ours.as_deref() != Some(theirs) {
                    return Err(Error::Incompatible(format!(
                        "this distilled set holds features of the frozen {theirs}, and a \
                         feature-space set works only with that backbone and weights; this \
                         experiment's image encoder is {} (backbone {}): distil pixels for \
                         other encoders",
                        ours.unwrap_or_else(|| exp.config.model.image.architecture()),
                        exp.config.model.backbone.name(),
                    )));
                }
            }
        }
        let d = self.texts.dim(1)?;
        if d != exp.embeddings.dim {
            return Err(Error::Incompatible(format!(
                "the distilled texts are {d}-d, text encoder {} gives {}-d embeddings",
                exp.text_encoder, exp.embeddings.dim
            )));
        }
        Ok(())
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.images.dim(0).unwrap_or(0)
    }

    /// True when the set holds no pair.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The learned student learning rates α.
    pub fn lr(&self) -> TowerLr {
        TowerLr {
            image: self.log_lr_image.exp(),
            text: self.log_lr_text.exp(),
        }
    }

    /// Writes the set to a safetensors file (tensors `images`, `texts` and
    /// the similarity's factors `similarity_0`, …; the learned learning
    /// rates and the similarity's form in the header), atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut map = HashMap::from([
            ("images".to_string(), self.images.clone()),
            ("texts".to_string(), self.texts.clone()),
        ]);
        if let Some(s) = &self.similarity {
            s.insert_factors(&mut map);
        }
        let meta = serde_json::json!({
            "log_lr_image": self.log_lr_image,
            "log_lr_text": self.log_lr_text,
            "lr_image": self.lr().image,
            "lr_text": self.lr().text,
            "image_encoder": self.image_encoder,
            "space": self.space,
            "backbone": self.backbone,
            "similarity": self.similarity.as_ref().map(|s| serde_json::json!({
                "factors": s.factors().len(),
                "low_rank_scale": s.low_rank_scale(),
            })),
        });
        crate::io::save_tensors(path, &map, &meta.to_string())
    }

    /// Reads a set written by [`save`](Self::save) onto `device`.
    pub fn load(path: &Path, device: &candle_core::Device) -> Result<Self> {
        let (mut map, json) = crate::io::load_tensors(path, device)?;
        let meta: serde_json::Value = serde_json::from_str(&json)
            .map_err(|e| Error::bad_file(path, format!("bad metadata: {e}")))?;
        let lr = |k: &str| {
            meta.get(k)
                .and_then(|v| v.as_f64())
                .ok_or_else(|| Error::bad_file(path, format!("metadata has no {k}")))
        };
        let mut take = |k: &str| {
            map.remove(k)
                .ok_or_else(|| Error::bad_file(path, format!("no tensor {k:?}")))
        };
        let similarity = match meta.get("similarity") {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => {
                let count = v.get("factors").and_then(|c| c.as_u64()).unwrap_or(0);
                let factors = (0..count)
                    .map(|k| take(&factor_key(k as usize)))
                    .collect::<Result<Vec<_>>>()?;
                let scale = v.get("low_rank_scale").and_then(|c| c.as_f64());
                Some(
                    LearnedSimilarity::from_factors(factors, scale)
                        .map_err(|e| Error::bad_file(path, format!("bad similarity: {e}")))?,
                )
            }
        };
        let set = DistilledSet {
            similarity,
            images: take("images")?,
            texts: take("texts")?,
            log_lr_image: lr("log_lr_image")?,
            log_lr_text: lr("log_lr_text")?,
            image_encoder: meta
                .get("image_encoder")
                .and_then(|v| v.as_str())
                .map(str::to_string),
            space: match meta.get("space") {
                None | Some(serde_json::Value::Null) => SynthSpace::Pixels,
                Some(v) => serde_json::from_value(v.clone())
                    .map_err(|e| Error::bad_file(path, format!("bad space: {e}")))?,
            },
            backbone: meta
                .get("backbone")
                .and_then(|v| v.as_str())
                .map(str::to_string),
        };
        if set.images.dim(0)? != set.texts.dim(0)? {
            return Err(Error::bad_file(path, "images and texts differ in count"));
        }
        if let Some(s) = &set.similarity {
            if s.pairs() != set.len() {
                return Err(Error::bad_file(
                    path,
                    format!("a similarity over {} pairs for {}", s.pairs(), set.len()),
                ));
            }
        }
        Ok(set)
    }

    /// The set as training pairs (pair j = image j with text j), with its
    /// learned similarity when it has one.
    pub fn as_pairs(&self) -> Result<CaptionedImages> {
        self.with_similarity(CaptionedImages::new(
            self.images.clone(),
            self.texts.clone(),
            (0..self.len() as u32).collect(),
        )?)
    }
}
