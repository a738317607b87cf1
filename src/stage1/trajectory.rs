//! [`Trajectory`]: an expert's parameters after every epoch, θ*_0 … θ*_T,
//! per tower, in one safetensors file per expert.
//!
//! Layout of `expert_NNN.safetensors`: tensors `epoch_EEE/image/<name>` and
//! `epoch_EEE/text/<name>` (and, while the expert is still training, its SGD
//! velocity under `velocity/...`); the header's metadata holds the
//! [`TrajectoryMeta`] as JSON, and a readable copy is written beside it as
//! `expert_NNN.json`. The file is replaced atomically after every epoch, so
//! an interrupted run resumes from the last finished epoch.

use crate::config::{ExpertConfig, ModelConfig};
use crate::error::{Error, Result};
use crate::model::retrieval::Recall;
use crate::model::{ParamSet, TowerParams};
use crate::stage1::forgetting::ForgettingCounts;
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Version of the trajectory file layout.
pub const FORMAT_VERSION: u32 = 1;

/// What an expert is: how it was trained, on what, and how far it got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrajectoryMeta {
    /// Layout version ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// Index of the expert.
    pub expert: usize,
    /// Seed of its initialisation and batch order.
    pub seed: u64,
    /// Model architecture, human readable.
    pub architecture: String,
    /// The model configuration.
    pub model: ModelConfig,
    /// The training configuration.
    pub training: ExpertConfig,
    /// Dataset name.
    pub dataset: String,
    /// Dataset content digest.
    pub dataset_hash: String,
    /// Identity of the frozen text encoder.
    pub text_encoder: String,
    /// Image-tower parameter names, in order.
    pub image_params: Vec<String>,
    /// Text-tower parameter names, in order.
    pub text_params: Vec<String>,
    /// Mean training loss of each finished epoch.
    pub train_loss: Vec<f64>,
    /// Validation recall after each finished epoch (when computed).
    pub val_recall: Vec<Option<Recall>>,
    /// True once all configured epochs are done.
    pub complete: bool,
    /// Forgetting events of every training pair, counted during the epochs
    /// done (absent in trajectories written before they were recorded).
    #[serde(default)]
    pub forgetting: Option<ForgettingCounts>,
    /// With a frozen backbone: the key of the real features it trained on
    /// (weights, data and preprocessing; the features' standardisation is
    /// a function of them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<String>,
}

impl TrajectoryMeta {
    /// True when this expert was trained on `exp`'s data, model, text encoder
    /// and expert settings (its seed aside), so it can stand for `exp`'s
    /// full-data model.
    pub fn fits(&self, exp: &crate::experiment::Experiment) -> bool {
        self.dataset_hash == exp.dataset.content_hash()
            && self.model == exp.config.model
            && self.text_encoder == exp.text_encoder
            && self.training.trains_like(&exp.config.experts)
            && self.features == exp.features_key
    }

    /// Errors unless `other` describes the same training setup (everything
    /// but progress): used before resuming into an existing output folder.
    pub fn check_same_setup(&self, other: &TrajectoryMeta, path: &Path) -> Result<()> {
        let mismatch = [
            ("seed", self.seed != other.seed),
            ("model", self.model != other.model),
            (
                "training config",
                !self.training.trains_like(&other.training),
            ),
            ("dataset", self.dataset_hash != other.dataset_hash),
            ("text encoder", self.text_encoder != other.text_encoder),
            ("backbone features", self.features != other.features),
        ];
        if let Some((what, _)) = mismatch.iter().find(|(_, differs)| *differs) {
            return Err(Error::bad_file(
                path,
                format!(
                    "this expert was trained with a different {what}; \
                     use another output folder or delete it"
                ),
            ));
        }
        Ok(())
    }
}

/// An expert's recorded parameters: `epochs[e]` = θ*_e, e = 0 … epochs done.
#[derive(Debug, Clone)]
pub struct Trajectory {
    /// What this expert is.
    pub meta: TrajectoryMeta,
    /// Snapshots after every epoch (index 0 = the initialisation).
    pub epochs: Vec<TowerParams>,
    /// SGD velocity of an unfinished expert (for resuming).
    pub velocity: Option<TowerParams>,
}

impl Trajectory {
    /// The file of expert `k` in `dir`.
    pub fn path(dir: &Path, k: usize) -> PathBuf {
        dir.join(format!("expert_{k:03}.safetensors"))
    }

    /// θ*_e (e = 0 is the initialisation).
    pub fn epoch(&self, e: usize) -> Result<&TowerParams> {
        self.epochs.get(e).ok_or_else(|| {
            Error::Config(format!(
                "expert {} has epochs 0..={}, asked for {e}",
                self.meta.expert,
                self.epochs.len().saturating_sub(1)
            ))
        })
    }

    /// Writes the image encoder's weights at epoch `e` as a checkpoint a
    /// configuration can load (`model.image.checkpoint`): the tensors under
    /// the encoder's own names (timm's for the NF nets and the ViT), without
    /// the optional image projection. A ViT expert's final epoch so becomes
    /// the frozen base of a `vit_lora` encoder.
    pub fn save_image_weights(&self, e: usize, path: &Path) -> Result<()> {
        let map: HashMap<String, Tensor> = self
            .epoch(e)?
            .image
            .iter()
            .filter(|(n, _)| !n.starts_with("proj."))
            .map(|(n, t)| (n.to_string(), t.clone()))
            .collect();
        let meta = serde_json::json!({
            "expert": self.meta.expert,
            "epoch": e,
            "architecture": self.meta.model.image.architecture(),
        });
        crate::io::save_tensors(path, &map, &meta.to_string())
    }

    /// Number of finished epochs (snapshots − 1).
    pub fn epochs_done(&self) -> usize {
        self.epochs.len().saturating_sub(1)
    }

    /// Writes the safetensors file (atomically) and its JSON companion.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut map: HashMap<String, Tensor> = HashMap::new();
        for (e, p) in self.epochs.iter().enumerate() {
            map.extend(p.image.to_map(&format!("epoch_{e:03}/image/")));
            map.extend(p.text.to_map(&format!("epoch_{e:03}/text/")));
        }
        if let Some(v) = &self.velocity {
            map.extend(v.image.to_map("velocity/image/"));
            map.extend(v.text.to_map("velocity/text/"));
        }
        let json = serde_json::to_string_pretty(&self.meta).expect("meta serialises");
        crate::io::save_tensors(path, &map, &json)?;
        crate::io::write_atomic(&path.with_extension("json"), json.as_bytes())
    }

    /// Reads a trajectory file onto `device`, checking it is complete and consistent.
    pub fn load(path: &Path, device: &Device) -> Result<Trajectory> {
        let (map, json) = crate::io::load_tensors(path, device)?;
        let meta: TrajectoryMeta = serde_json::from_str(&json).map_err(|e| {
            Error::bad_file(path, format!("missing or bad trajectory metadata: {e}"))
        })?;
        if meta.format_version != FORMAT_VERSION {
            return Err(Error::bad_file(
                path,
                format!(
                    "trajectory format {} (this build reads {FORMAT_VERSION})",
                    meta.format_version
                ),
            ));
        }
        let take = |prefix: &str| -> Result<TowerParams> {
            let image = ParamSet::from_map(&meta.image_params, &map, &format!("{prefix}/image/"))
                .map_err(|m| Error::bad_file(path, m))?;
            let text = ParamSet::from_map(&meta.text_params, &map, &format!("{prefix}/text/"))
                .map_err(|m| Error::bad_file(path, m))?;
            Ok(TowerParams { image, text })
        };
        let n = meta.train_loss.len();
        let epochs = (0..=n)
            .map(|e| take(&format!("epoch_{e:03}")))
            .collect::<Result<Vec<_>>>()?;
        let velocity = if map.keys().any(|k| k.starts_with("velocity/")) {
            Some(take("velocity")?)
        } else {
            None
        };
        Ok(Trajectory {
            meta,
            epochs,
            velocity,
        })
    }
}

/// Loads every complete expert trajectory `expert_*.safetensors` in `dir`,
/// ordered by expert index. Errors when there is none.
pub fn load_all(dir: &Path, device: &Device) -> Result<Vec<Trajectory>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("expert_") && n.ends_with(".safetensors"))
        })
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for p in paths {
        let t = Trajectory::load(&p, device)?;
        if t.meta.complete {
            out.push(t);
        }
    }
    if out.is_empty() {
        return Err(Error::Config(format!(
            "{}: no finished expert trajectories (run `vl-distill experts` first)",
            dir.display()
        )));
    }
    Ok(out)
}
