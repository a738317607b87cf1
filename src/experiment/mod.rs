//! [`Experiment`]: everything a stage needs, built once from a [`Config`]:
//! the dataset, its frozen caption embeddings, the model and the splits as
//! tensors on the chosen device.
//!
//! With a frozen backbone (`model.backbone = "frozen"`), the splits' images
//! are the backbone's features of the real images (cached on disk,
//! [`feature_cache`]), and both modalities are standardised per dimension
//! with train-split constants: everything downstream (experts, coresets,
//! evaluation, feature-space distillation) trains the heads on them, and
//! pixels reach the same space through [`Experiment::backbone`].

pub mod feature_cache;

use crate::config::{Backbone, Config, DataSource};
use crate::data::karpathy::{self, LoadOptions, LoadReport};
use crate::data::CaptionedImages;
use crate::data::{scenes, Dataset, Split};
use crate::error::Result;
use crate::model::{FrozenBackbone, Standardisation, TwoTower};
use crate::text::{self, CaptionEmbeddings};
use candle_core::{Device, Tensor};
use std::path::Path;
use std::sync::Arc;

/// A configured experiment: data, embeddings, model, device.
#[derive(Debug, Clone)]
pub struct Experiment {
    /// The configuration it was built from.
    pub config: Config,
    /// Where tensors live.
    pub device: Device,
    /// The images and captions.
    pub dataset: Dataset,
    /// Identity of the frozen text encoder.
    pub text_encoder: String,
    /// Frozen caption embeddings of every split.
    pub embeddings: CaptionEmbeddings,
    /// The two-tower architecture.
    pub model: Arc<TwoTower>,
    /// Train split as tensors.
    pub train: CaptionedImages,
    /// Validation split as tensors.
    pub val: CaptionedImages,
    /// Test split as tensors.
    pub test: CaptionedImages,
    /// What the loader skipped (only with `data.skip_unreadable`).
    pub load_report: LoadReport,
    /// Whether the caption embeddings came from the cache.
    pub embeddings_cached: bool,
    /// The frozen image encoder and its feature standardisation (with
    /// `model.backbone = "frozen"`; the splits' images are then its
    /// standardised features).
    pub backbone: Option<Arc<FrozenBackbone>>,
    /// The feature cache's key (with a frozen backbone): a digest of the
    /// weights, data and preprocessing the real features come from.
    pub features_key: Option<String>,
    /// How the real features were obtained (cache, computed, rebuilt).
    pub features_note: Option<String>,
    /// The standardisation of the caption embeddings (with a frozen backbone).
    pub text_standardisation: Option<Standardisation>,
}

/// Loads (or generates) the dataset named by `config.data`.
pub fn load_dataset(config: &Config) -> Result<(Dataset, LoadReport)> {
    let opts = LoadOptions {
        image_size: config.data.image_size,
        skip_unreadable: config.data.skip_unreadable,
    };
    match &config.data.source {
        DataSource::Scenes { .. } => {
            let cfg = scenes::ScenesConfig::from_config(config).expect("scenes source");
            Ok((scenes::generate(&cfg)?, LoadReport::default()))
        }
        DataSource::Karpathy { json, image_root } => {
            if !json.exists() {
                if let Some(how) = crate::config::how_to_make(json) {
                    return Err(crate::error::Error::Config(format!(
                        "dataset file {} does not exist: {how}",
                        json.display()
                    )));
                }
            }
            karpathy::load_karpathy(json, image_root.as_deref(), &opts)
        }
        DataSource::PerSplit {
            name,
            train,
            val,
            test,
            image_root,
        } => karpathy::load_per_split(name, train, val, test, image_root, &opts),
    }
}

impl Experiment {
    /// Builds the experiment of `config` on `device`. Caption embeddings are
    /// cached in `cache_dir` when given (computed in memory otherwise).
    pub fn new(config: Config, device: Device, cache_dir: Option<&Path>) -> Result<Self> {
        config.validate()?;
        let (dataset, load_report) = load_dataset(&config)?;
        Self::with_dataset(config, device, dataset, load_report, cache_dir)
    }

    /// Builds the experiment around an already loaded dataset.
    pub fn with_dataset(
        config: Config,
        device: Device,
        dataset: Dataset,
        load_report: LoadReport,
        cache_dir: Option<&Path>,
    ) -> Result<Self> {
        config.validate()?;
        dataset.validate(&dataset.name)?;
        crate::alloc::tune();
        let encoder = text::from_config(&config.text)?;
        let (embeddings, embeddings_cached) = match cache_dir {
            Some(dir) => {
                // a prepared dataset's own cache (`data prepare --text-encoder`)
                let shared = match &config.data.source {
                    DataSource::Karpathy { json, .. } => {
                        Some(crate::text::cache::embedding_cache_dir(json))
                    }
                    _ => None,
                };
                CaptionEmbeddings::load_or_compute_shared(
                    dir,
                    shared.as_deref(),
                    encoder.as_ref(),
                    &dataset,
                )?
            }
            None => (
                CaptionEmbeddings::compute(encoder.as_ref(), &dataset)?,
                false,
            ),
        };
        let (w, _) = dataset.image_size().unwrap_or((config.data.image_size, 0));
        let model = Arc::new(TwoTower::new(&config.model, w as usize, embeddings.dim)?);
        if config.model.backbone == Backbone::Frozen {
            return Self::frozen(
                config,
                device,
                dataset,
                load_report,
                cache_dir,
                embeddings,
                embeddings_cached,
                encoder.id(),
                model,
            );
        }
        let split = |s: Split| {
            CaptionedImages::from_split(
                &dataset,
                embeddings.split(s),
                s,
                &config.data.norm,
                &device,
            )
        };
        Ok(Experiment {
            train: split(Split::Train)?,
            val: split(Split::Val)?,
            test: split(Split::Test)?,
            backbone: None,
            features_key: None,
            features_note: None,
            text_standardisation: None,
            text_encoder: encoder.id(),
            config,
            device,
            dataset,
            embeddings,
            model,
            load_report,
            embeddings_cached,
        })
    }

    /// The frozen-backbone experiment: real features (cached), both
    /// modalities standardised with train constants.
    #[allow(clippy::too_many_arguments)]
    fn frozen(
        config: Config,
        device: Device,
        dataset: Dataset,
        load_report: LoadReport,
        cache_dir: Option<&Path>,
        embeddings: CaptionEmbeddings,
        embeddings_cached: bool,
        text_encoder: String,
        model: Arc<TwoTower>,
    ) -> Result<Self> {
        let (w, _) = dataset.image_size().unwrap_or((config.data.image_size, 0));
        let seed = crate::seeds::derive_seed(config.seed, "frozen-backbone", &[]);
        let mut backbone = FrozenBackbone::new(&config.model, w as usize, seed, &device)?;
        let real = feature_cache::load_or_compute(
            &backbone,
            &dataset,
            &config.data.norm,
            cache_dir,
            &device,
        )?;
        let images = Standardisation::of(&real.splits[0])?;
        let texts = Standardisation::of(&embeddings.split(Split::Train).to_device(&device)?)?;
        let split = |s: Split, i: usize| -> Result<CaptionedImages> {
            let (_, owner) = dataset.captions(s);
            CaptionedImages::new(
                images.apply(&real.splits[i])?,
                texts.apply(&embeddings.split(s).to_device(&device)?)?,
                owner.into_iter().map(|o| o as u32).collect(),
            )
        };
        let (train, val, test) = (
            split(Split::Train, 0)?,
            split(Split::Val, 1)?,
            split(Split::Test, 2)?,
        );
        backbone.standardisation = Some(images);
        Ok(Experiment {
            train,
            val,
            test,
            backbone: Some(Arc::new(backbone)),
            features_key: Some(real.key),
            features_note: Some(real.note),
            text_standardisation: Some(texts),
            text_encoder,
            config,
            device,
            dataset,
            embeddings,
            model,
            load_report,
            embeddings_cached,
        })
    }

    /// Normalised pixels `[n, 3, H, W]` of the images `images` (indices into
    /// `split` of the dataset), whatever the model reads.
    pub fn pixels(&self, split: Split, images: &[u32]) -> Result<Tensor> {
        let samples = self.dataset.split(split);
        let picked: Vec<&image::RgbImage> =
            images.iter().map(|&i| &samples[i as usize].image).collect();
        self.config.data.norm.to_tensor(&picked, &self.device)
    }

    /// What the image tower reads for synthetic images `x`: `x` itself, or,
    /// with a frozen backbone and pixel images `[M, 3, H, W]`, their
    /// standardised features (differentiable with respect to `x`).
    pub fn image_inputs(&self, x: &Tensor) -> Result<Tensor> {
        match (&self.backbone, x.rank()) {
            (Some(b), 4) => b.features(x),
            _ => Ok(x.clone()),
        }
    }

    /// One split as tensors.
    pub fn split(&self, split: Split) -> &CaptionedImages {
        match split {
            Split::Train => &self.train,
            Split::Val => &self.val,
            Split::Test => &self.test,
        }
    }

    /// The side in pixels of the images the model (or its frozen backbone)
    /// reads: the dataset's, else the configured `data.image_size`.
    pub fn image_side(&self) -> usize {
        self.dataset
            .image_size()
            .map_or(self.config.data.image_size, |(w, _)| w) as usize
    }

    /// The image encoder's identifier (for results rows).
    pub fn image_encoder(&self) -> String {
        self.model.encoder.name()
    }
}
