//! Stage 1: train K experts on the full training split and record their
//! trajectories.
//!
//! [`ExpertTrainer::step`] runs one epoch of the current expert (a notebook
//! cell per epoch); [`ExpertTrainer::run`] runs to the end with a progress
//! bar. With an output folder, each expert's trajectory file is rewritten
//! after every epoch, and a new trainer on the same folder skips finished
//! experts and continues an unfinished one from its last finished epoch.
//! Every random choice (initialisation, batch order, dropout) derives from
//! the config seed, the expert index and the epoch, so a resumed run gives
//! the same trajectories as an uninterrupted one.

use crate::config::Config;
use crate::data::CaptionedImages;
use crate::error::{Error, Result};
use crate::experiment::Experiment;
use crate::model::retrieval;
use crate::model::retrieval::Recall;
use crate::model::TwoTower;
use crate::progress::Progress;
use crate::seeds::derive_seed;
use crate::stage1::forgetting::ForgettingCounts;
use crate::stage1::sgd::{train_epoch, SgdConfig, SgdState};
use crate::stage1::trajectory::{Trajectory, TrajectoryMeta, FORMAT_VERSION};
use candle_core::DType;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// What one epoch of one expert did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochReport {
    /// Expert index.
    pub expert: usize,
    /// Epoch just finished (1-based).
    pub epoch: usize,
    /// Mean training loss over the epoch.
    pub train_loss: f64,
    /// Validation recall after the epoch (when configured).
    pub val: Option<Recall>,
    /// Wall time of the epoch in seconds.
    pub seconds: f64,
}

impl std::fmt::Display for EpochReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "expert {} epoch {}: loss {:.4}",
            self.expert, self.epoch, self.train_loss
        )?;
        if let Some(v) = &self.val {
            write!(f, ", val {v}")?;
        }
        write!(f, " ({:.1} s)", self.seconds)
    }
}

struct Current {
    traj: Trajectory,
    sgd: SgdState,
}

/// Trains the experts of stage 1, one epoch per [`step`](Self::step).
pub struct ExpertTrainer {
    model: Arc<TwoTower>,
    config: Config,
    train: CaptionedImages,
    val: CaptionedImages,
    meta: TrajectoryMeta,
    out_dir: Option<PathBuf>,
    current: Option<Current>,
    next_expert: usize,
    finished: Vec<Trajectory>,
    /// Every epoch report so far, in order.
    pub history: Vec<EpochReport>,
    progress: bool,
}

impl ExpertTrainer {
    /// A trainer for the experiment's experts, keeping trajectories in memory
    /// only. Use [`with_output`](Self::with_output) to write (and resume) them.
    pub fn new(exp: &Experiment) -> Result<Self> {
        let template = exp.model.init(0, &exp.device, DType::F32)?;
        let meta = TrajectoryMeta {
            format_version: FORMAT_VERSION,
            expert: 0,
            seed: exp.config.seed,
            architecture: exp.model.describe(),
            model: exp.config.model.clone(),
            training: exp.config.experts.clone(),
            dataset: exp.dataset.name.clone(),
            dataset_hash: exp.dataset.content_hash(),
            text_encoder: exp.text_encoder.clone(),
            image_params: template.image.names().to_vec(),
            text_params: template.text.names().to_vec(),
            train_loss: Vec::new(),
            val_recall: Vec::new(),
            complete: false,
            forgetting: None,
            features: exp.features_key.clone(),
        };
        Ok(ExpertTrainer {
            model: exp.model.clone(),
            config: exp.config.clone(),
            train: exp.train.clone(),
            val: exp.val.clone(),
            meta,
            out_dir: None,
            current: None,
            next_expert: 0,
            finished: Vec::new(),
            history: Vec::new(),
            progress: false,
        })
    }

    /// Writes each expert's trajectory into `dir` after every epoch, and
    /// resumes from what `dir` already holds.
    pub fn with_output(mut self, dir: impl Into<PathBuf>) -> Self {
        self.out_dir = Some(dir.into());
        self
    }

    /// During [`run`](Self::run), shows a progress bar on the terminal and a
    /// log line per epoch on stderr (the line also when stderr is not a terminal).
    pub fn with_progress(mut self, on: bool) -> Self {
        self.progress = on;
        self
    }

    /// Number of experts configured.
    pub fn num_experts(&self) -> usize {
        self.config.experts.num_experts
    }

    /// True when every expert has finished.
    pub fn is_done(&self) -> bool {
        self.next_expert >= self.num_experts() && self.current.is_none()
    }

    /// The finished experts' trajectories.
    pub fn trajectories(&self) -> &[Trajectory] {
        &self.finished
    }

    fn sgd_config(&self) -> SgdConfig {
        SgdConfig::from(&self.config.experts)
    }

    /// Starts (or resumes from disk) the next expert; skips finished ones.
    fn ensure_current(&mut self) -> Result<()> {
        while self.current.is_none() && self.next_expert < self.num_experts() {
            let k = self.next_expert;
            let mut meta = self.meta.clone();
            meta.expert = k;
            if let Some(dir) = &self.out_dir {
                let path = Trajectory::path(dir, k);
                if path.exists() {
                    let traj = Trajectory::load(&path, self.train.images.device())?;
                    meta.check_same_setup(&traj.meta, &path)?;
                    if traj.meta.complete {
                        self.finished.push(traj);
                        self.next_expert += 1;
                        continue;
                    }
                    let sgd = SgdState {
                        velocity: traj.velocity.clone(),
                    };
                    self.current = Some(Current { traj, sgd });
                    return Ok(());
                }
            }
            let seed = derive_seed(self.config.seed, "expert-init", &[k as u64]);
            let theta0 = self
                .model
                .init(seed, self.train.images.device(), DType::F32)?;
            self.current = Some(Current {
                traj: Trajectory {
                    meta,
                    epochs: vec![theta0],
                    velocity: None,
                },
                sgd: SgdState::default(),
            });
        }
        Ok(())
    }

    /// Runs one epoch of the current expert. Returns `None` when all experts are done.
    pub fn step(&mut self) -> Result<Option<EpochReport>> {
        self.step_with(|_, _, _| {})
    }

    fn step_with(
        &mut self,
        on_batch: impl FnMut(usize, usize, f64),
    ) -> Result<Option<EpochReport>> {
        self.ensure_current()?;
        let sgd_cfg = self.sgd_config();
        let cfg = self.config.clone();
        let Some(cur) = self.current.as_mut() else {
            return Ok(None);
        };
        let k = cur.traj.meta.expert;
        let epoch = cur.traj.epochs_done() + 1;
        let start = Instant::now();
        let mut params = cur.traj.epochs.last().expect("θ0 exists").clone();
        let seed = derive_seed(cfg.seed, "expert-epoch", &[k as u64, epoch as u64]);
        // forgetting events accumulate over the epochs (and survive a resume:
        // they are saved with each epoch), for the forgetting coreset
        let mut counts = cur
            .traj
            .meta
            .forgetting
            .take()
            .filter(|c| c.len() == self.train.num_pairs())
            .unwrap_or_else(|| ForgettingCounts::new(self.train.num_pairs()));
        let loss = train_epoch(
            &self.model,
            &mut params,
            &mut cur.sgd,
            &self.train,
            &sgd_cfg,
            seed,
            Some(&mut counts),
            on_batch,
        )
        .map_err(|e| match e {
            Error::NonFinite { what, .. } => Error::NonFinite {
                step: format!("expert {k}, epoch {epoch}"),
                what,
            },
            other => other,
        })?;
        let val = if cfg.experts.val_every_epoch {
            Some(retrieval::evaluate(
                &self.model,
                &params,
                &self.val,
                cfg.eval.batch_size,
            )?)
        } else {
            None
        };
        cur.traj.epochs.push(params);
        cur.traj.meta.forgetting = Some(counts);
        cur.traj.meta.train_loss.push(loss);
        cur.traj.meta.val_recall.push(val);
        let done = epoch >= cfg.experts.epochs;
        cur.traj.meta.complete = done;
        cur.traj.velocity = if done { None } else { cur.sgd.velocity.clone() };
        if let Some(dir) = &self.out_dir {
            cur.traj.save(&Trajectory::path(dir, k))?;
        }
        let report = EpochReport {
            expert: k,
            epoch,
            train_loss: loss,
            val,
            seconds: start.elapsed().as_secs_f64(),
        };
        if done {
            let cur = self.current.take().expect("current expert");
            self.finished.push(cur.traj);
            self.next_expert += 1;
        }
        self.history.push(report.clone());
        Ok(Some(report))
    }

    /// Trains every remaining expert; returns all trajectories.
    pub fn run(&mut self) -> Result<&[Trajectory]> {
        self.ensure_current()?;
        let per_epoch = self
            .train
            .num_pairs()
            .div_ceil(self.config.experts.batch_size);
        let remaining_epochs = (self.num_experts() - self.next_expert) * self.config.experts.epochs
            - self.current.as_ref().map_or(0, |c| c.traj.epochs_done());
        let progress = Progress::new(
            (remaining_epochs * per_epoch) as u64,
            "experts",
            self.progress && !self.is_done(),
        );
        while let Some(r) = self.step_with(|_, _, loss| progress.inc(format!("loss {loss:.3}")))? {
            progress.log(&r.to_string());
        }
        progress.finish();
        Ok(&self.finished)
    }
}
