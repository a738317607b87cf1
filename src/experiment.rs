//! [`Experiment`]: everything a stage needs, built once from a [`Config`]:
//! the dataset, its frozen caption embeddings, the model and the splits as
//! tensors on the chosen device.

use crate::config::{Config, DataSource};
use crate::data::karpathy::{self, LoadOptions, LoadReport};
use crate::data::CaptionedImages;
use crate::data::{scenes, Dataset, Split};
use crate::error::Result;
use crate::model::TwoTower;
use crate::text::{self, CaptionEmbeddings};
use candle_core::Device;
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

    /// One split as tensors.
    pub fn split(&self, split: Split) -> &CaptionedImages {
        match split {
            Split::Train => &self.train,
            Split::Val => &self.val,
            Split::Test => &self.test,
        }
    }

    /// The image encoder's identifier (for results rows).
    pub fn image_encoder(&self) -> String {
        self.model.encoder.name()
    }
}
