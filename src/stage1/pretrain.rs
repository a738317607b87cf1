//! Pretraining an image encoder before the experts fine-tune it: the
//! stand-in for ImageNet weights, which cannot be fetched here for the NF
//! nets and the ViTs.
//!
//! The source is [`generate_pretraining_source`]: built-in scenes of the
//! configuration's seed and size drawn from generator streams that the
//! train, val and test splits never use, so the pretrained encoder has seen
//! none of their images. Both towers train contrastively (the model's
//! InfoNCE loss), one caption of each image per epoch, with AdamW (β 0.9 /
//! 0.999, decoupled weight decay on every tensor), a linear warm-up and a
//! cosine decay to 0 ([`lr_at`]); the held-out part of the source is scored
//! after every epoch. Only the image encoder is kept: [`Pretrainer::save`]
//! writes it with timm's tensor names, where
//! [`pretrained_checkpoint`] says, and
//! [`Config::set_image_encoder`] then starts every expert from it.
//!
//! A LoRA ViT pretrains its base: the plain ViT of the same size, whose
//! weights its adapters then ride on (frozen) — the paper's regime.

use crate::config::{
    pretrained_checkpoint, Backbone, Config, DataSource, ImageEncoderConfig, PretrainConfig,
};
use crate::data::scenes::{generate_pretraining_source, ScenesConfig};
use crate::data::{CaptionedImages, Dataset};
use crate::error::{Error, Result};
use crate::experiment::Experiment;
use crate::model::retrieval::{self, Recall};
use crate::model::{Mode, ParamSet, TowerParams, TwoTower};
use crate::progress::Progress;
use crate::second_order::scalar;
use crate::seeds::derive_seed;
use crate::stage1::sgd::{batches_of, epoch_pairs};
use candle_core::{DType, Device, Var};
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// The learning rate at optimiser step `step` (0-based) of `total`: a linear
/// warm-up over the first `warmup` steps to `peak` (`peak · (step + 1) /
/// warmup`), then a cosine decay from `peak` to 0 at the last step.
pub fn lr_at(step: usize, total: usize, warmup: usize, peak: f64) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup).max(1);
    let t = ((step - warmup) as f64 / span as f64).min(1.0);
    peak * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
}

/// The encoder that pretraining `image` trains: the same architecture
/// without weights (the plain ViT for a LoRA ViT). Fails for the ConvNet
/// (the from-scratch reference, which takes no checkpoint) and for
/// EfficientNet-Lite0 (which has ImageNet weights).
pub fn pretraining_encoder(image: &ImageEncoderConfig) -> Result<ImageEncoderConfig> {
    Ok(match image {
        ImageEncoderConfig::NfResnet50 { size, .. } => ImageEncoderConfig::NfResnet50 {
            size: *size,
            checkpoint: None,
        },
        ImageEncoderConfig::NfRegnetB1 { size, .. } => ImageEncoderConfig::NfRegnetB1 {
            size: *size,
            checkpoint: None,
        },
        ImageEncoderConfig::NfnetL0 { size, .. } => ImageEncoderConfig::NfnetL0 {
            size: *size,
            checkpoint: None,
        },
        ImageEncoderConfig::Vit { size, .. } | ImageEncoderConfig::VitLora { size, .. } => {
            ImageEncoderConfig::Vit {
                size: *size,
                checkpoint: None,
            }
        }
        other => {
            return Err(Error::Config(format!(
                "pretrain trains nf_resnet50, nf_regnet_b1, nfnet_l0, vit or vit_lora, not {}{}",
                other.kind(),
                match other {
                    ImageEncoderConfig::EfficientnetLite0 { .. } =>
                        " (it has ImageNet weights: data-scripts/fetch_efficientnet_lite0.sh)",
                    _ => " (the ConvNet is the from-scratch reference)",
                }
            )))
        }
    })
}

/// The configuration pretraining runs under: `config` with the
/// [`pretraining_encoder`] trained end to end and the source's sizes as
/// its scenes. Fails unless `config`'s data are the built-in scenes.
pub fn source_config(config: &Config) -> Result<Config> {
    if !matches!(config.data.source, DataSource::Scenes { .. }) {
        return Err(Error::Config(
            "pretrain draws its source from the built-in scenes; for other data, point \
             model.image.checkpoint at weights of your own"
                .into(),
        ));
    }
    let mut c = config.clone();
    c.model.image = pretraining_encoder(&config.model.image)?;
    c.model.backbone = Backbone::Trained;
    c.data.source = DataSource::Scenes {
        train: config.pretrain.images,
        val: config.pretrain.val_images,
        test: config.pretrain.val_images,
    };
    c.validate()?;
    Ok(c)
}

/// The pretraining source of `config` (built-in scenes; see
/// [`generate_pretraining_source`]).
pub fn source_dataset(config: &Config) -> Result<Dataset> {
    let scenes = ScenesConfig::from_config(config).ok_or_else(|| {
        Error::Config("pretrain draws its source from the built-in scenes".into())
    })?;
    generate_pretraining_source(&scenes, config.pretrain.images, config.pretrain.val_images)
}

/// What one epoch of pretraining did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PretrainEpoch {
    /// Epoch just finished (1-based).
    pub epoch: usize,
    /// Mean contrastive loss over the epoch.
    pub train_loss: f64,
    /// Recall on the source's held-out images after the epoch.
    pub val: Recall,
    /// Learning rate of the epoch's last step.
    pub lr: f64,
    /// Wall time of the epoch in seconds.
    pub seconds: f64,
}

impl std::fmt::Display for PretrainEpoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pretrain epoch {}: loss {:.4}, lr {:.2e}, source val {} ({:.1} s)",
            self.epoch, self.train_loss, self.lr, self.val, self.seconds
        )
    }
}

/// What [`Pretrainer::save`] writes beside the weights (`.json`): how they
/// were made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PretrainRecord {
    /// The trained architecture, e.g. `nf_resnet50-scaled`.
    pub architecture: String,
    /// Image side in pixels.
    pub image_size: u32,
    /// Seed of the scenes (the source is drawn apart from its splits).
    pub seed: u64,
    /// The frozen text encoder of the contrastive objective.
    pub text_encoder: String,
    /// The settings.
    pub pretrain: PretrainConfig,
    /// Every epoch.
    pub epochs: Vec<PretrainEpoch>,
}

/// Pretrains the image encoder of an experiment built from
/// [`source_config`] and [`source_dataset`], one epoch per
/// [`step_with`](Self::step_with).
pub struct Pretrainer {
    model: Arc<TwoTower>,
    config: Config,
    train: CaptionedImages,
    val: CaptionedImages,
    params: TowerParams,
    optimizer: AdamW,
    text_encoder: String,
    steps_done: usize,
    /// Every epoch so far.
    pub history: Vec<PretrainEpoch>,
}

impl Pretrainer {
    /// A pretrainer for `exp` (the source's experiment), starting from the
    /// model's initialisation at the config seed.
    pub fn new(exp: &Experiment) -> Result<Self> {
        pretraining_encoder(&exp.config.model.image)?;
        let init = exp.model.init(
            derive_seed(exp.config.seed, "pretrain", &[]),
            &exp.device,
            DType::F32,
        )?;
        let (image, image_vars) = init.image.to_vars()?;
        let (text, text_vars) = init.text.to_vars()?;
        let vars: Vec<Var> = image_vars.into_iter().chain(text_vars).collect();
        let p = &exp.config.pretrain;
        let optimizer = AdamW::new(
            vars,
            ParamsAdamW {
                lr: 0.0,
                weight_decay: p.weight_decay,
                ..ParamsAdamW::default()
            },
        )?;
        Ok(Pretrainer {
            model: exp.model.clone(),
            config: exp.config.clone(),
            train: exp.train.clone(),
            val: exp.val.clone(),
            params: TowerParams { image, text },
            optimizer,
            text_encoder: exp.text_encoder.clone(),
            steps_done: 0,
            history: Vec::new(),
        })
    }

    /// Minibatches per epoch.
    pub fn steps_per_epoch(&self) -> usize {
        self.train.num_images() / self.config.pretrain.batch_size
            + usize::from(self.train.num_images() % self.config.pretrain.batch_size >= 2)
    }

    /// Whether every epoch has run.
    pub fn is_done(&self) -> bool {
        self.history.len() >= self.config.pretrain.epochs
    }

    /// Runs the next epoch (`on_batch(i, n, loss)` after each of its `n`
    /// batches); `None` once every epoch has run.
    pub fn step_with(
        &mut self,
        mut on_batch: impl FnMut(usize, usize, f64),
    ) -> Result<Option<PretrainEpoch>> {
        if self.is_done() {
            return Ok(None);
        }
        let start = Instant::now();
        let p = self.config.pretrain.clone();
        let epoch = self.history.len() + 1;
        let seed = derive_seed(self.config.seed, "pretrain-epoch", &[epoch as u64]);
        let pairs = epoch_pairs(
            &self.train.owner,
            1,
            derive_seed(seed, "epoch-captions", &[]),
        );
        let batches = batches_of(pairs, p.batch_size, seed);
        let total = self.steps_per_epoch() * p.epochs;
        let warmup = (p.warmup_epochs * self.steps_per_epoch() as f64).round() as usize;
        let mut sum = 0.0;
        let mut lr = 0.0;
        for (i, b) in batches.iter().enumerate() {
            lr = lr_at(self.steps_done, total, warmup, p.lr);
            self.optimizer.set_learning_rate(lr);
            let (x, e) = self.train.batch(b)?;
            let loss = self.model.loss(
                &self.params,
                &x,
                &e,
                Mode::Train {
                    seed: seed.wrapping_add(i as u64),
                },
            )?;
            let l = scalar(&loss)?;
            if !l.is_finite() {
                return Err(Error::NonFinite {
                    step: format!("pretrain epoch {epoch}, step {i}"),
                    what: format!("contrastive loss = {l} (pretrain.lr too high?)"),
                });
            }
            self.optimizer.backward_step(&loss)?;
            self.steps_done += 1;
            sum += l;
            on_batch(i, batches.len(), l);
        }
        let val = retrieval::evaluate(
            &self.model,
            &self.params,
            &self.val,
            self.config.eval.batch_size,
        )?;
        let report = PretrainEpoch {
            epoch,
            train_loss: sum / batches.len().max(1) as f64,
            val,
            lr,
            seconds: start.elapsed().as_secs_f64(),
        };
        self.history.push(report.clone());
        Ok(Some(report))
    }

    /// Runs the remaining epochs with a progress bar (when `progress`) and
    /// a log line per epoch.
    pub fn run(&mut self, progress: bool) -> Result<()> {
        let bar = Progress::new(
            (self.steps_per_epoch() * (self.config.pretrain.epochs - self.history.len())) as u64,
            "pretrain",
            progress,
        );
        while let Some(r) = self.step_with(|_, _, loss| bar.inc(format!("loss {loss:.3}")))? {
            bar.log(&r.to_string());
        }
        bar.finish();
        Ok(())
    }

    /// The image encoder's weights (timm's names; no projection `proj.*`),
    /// on the CPU in f32.
    pub fn image_weights(&self) -> Result<ParamSet> {
        let mut out = ParamSet::new();
        for (name, t) in self.params.image.iter() {
            if !name.starts_with("proj.") {
                out.push(
                    name,
                    t.detach().to_device(&Device::Cpu)?.to_dtype(DType::F32)?,
                );
            }
        }
        Ok(out)
    }

    /// Writes [`image_weights`](Self::image_weights) to `file` (safetensors)
    /// and the [`PretrainRecord`] beside it (same name, `.json`).
    pub fn save(&self, file: &Path) -> Result<PretrainRecord> {
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let weights = self.image_weights()?;
        let map: std::collections::HashMap<String, candle_core::Tensor> = weights
            .iter()
            .map(|(n, t)| (n.to_string(), t.clone()))
            .collect();
        candle_core::safetensors::save(&map, file)
            .map_err(|e| Error::bad_file(file, format!("cannot write: {e}")))?;
        let record = PretrainRecord {
            architecture: self.config.model.image.architecture(),
            image_size: self.config.data.image_size,
            seed: self.config.seed,
            text_encoder: self.text_encoder.clone(),
            pretrain: self.config.pretrain.clone(),
            epochs: self.history.clone(),
        };
        let json = file.with_extension("json");
        let text = serde_json::to_string_pretty(&record).expect("record serialises");
        std::fs::write(&json, text + "\n").map_err(|e| Error::io(&json, e))?;
        Ok(record)
    }
}

/// Where pretraining `config`'s image encoder writes its weights (and
/// where [`Config::set_image_encoder`] looks for them): the
/// [`pretrained_checkpoint`] of the encoder at the data's image size.
pub fn output_file(config: &Config) -> Result<PathBuf> {
    let encoder = pretraining_encoder(&config.model.image)?;
    Ok(pretrained_checkpoint(&encoder, config.data.image_size)
        .expect("a pretraining encoder has a checkpoint place"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_warms_up_linearly_then_decays_along_a_cosine_to_zero() {
        let (total, warmup, peak) = (100, 10, 2e-3);
        let lr: Vec<f64> = (0..total).map(|s| lr_at(s, total, warmup, peak)).collect();
        for (s, &r) in lr.iter().enumerate().take(warmup) {
            assert!(
                (r - peak * (s + 1) as f64 / 10.0).abs() < 1e-15,
                "step {s}: {r}"
            );
        }
        assert_eq!(lr[warmup], peak);
        // halfway through the decay: half the peak
        assert!((lr[warmup + 45] - peak / 2.0).abs() < 1e-12);
        assert!(lr[warmup..].windows(2).all(|w| w[1] < w[0]));
        assert!(lr[total - 1] < peak * 1e-3 && lr[total - 1] > 0.0);
        // no warm-up: the peak from the first step
        assert_eq!(lr_at(0, total, 0, peak), peak);
    }
}
