//! What a notebook needs besides the stages themselves: the profile it runs
//! at and a work folder where the expensive results of one notebook are kept
//! for the next ([`Workspace`]), a cache-aware layer over [`crate::pipeline`].
//!
//! Every notebook in `notebooks/` starts with
//!
//! ```no_run
//! use vl_distill::prelude::*;
//! let ws = Workspace::from_env()?;          // profile from VL_DISTILL_PROFILE
//! let exp = ws.experiment(ws.config()?)?;   // data, embeddings, model
//! let experts = ws.experts(&exp)?;          // trained once, then loaded
//! # Ok::<(), vl_distill::Error>(())
//! ```
//!
//! The experts and every distillation are cached in the work folder under a
//! digest of everything that decides their result, so running the notebooks
//! in order trains the experts once, a notebook that repeats a setup of an
//! earlier one (the ablations' "both modalities, real init, 100 pairs"
//! baseline) loads it, and a changed setting trains afresh beside the old
//! result instead of overwriting it. Evaluations are cheap next to these and
//! are always run.

use crate::config::Config;
use crate::data::CaptionedImages;
use crate::error::{Error, Result};
use crate::evaluate::coreset::CoresetMethod;
use crate::evaluate::results::{RecallStats, ResultRow};
use crate::experiment::Experiment;
use crate::pipeline;
use crate::stage1::sgd::TowerLr;
use crate::stage1::trajectory::Trajectory;
use crate::stage2::distilled_set::DistilledSet;
use crate::stage2::distiller::Distiller;
use std::path::{Path, PathBuf};

/// The environment variable naming the profile a notebook runs at
/// (`smoke`, `default` or `paper`; `default` when unset).
pub const PROFILE_VAR: &str = "VL_DISTILL_PROFILE";

/// The environment variable naming the root of the notebooks' work folders
/// (`out/notebooks` under the current directory when unset; the kernel sets
/// it to the checkout's `out/notebooks`).
pub const WORKDIR_VAR: &str = "VL_DISTILL_WORKDIR";

/// The profile a notebook runs at and the folder where it keeps its work.
#[derive(Debug, Clone)]
pub struct Workspace {
    /// The profile name (`smoke`, `default`, `paper`).
    pub profile: String,
    /// `<root>/<profile>`: experts, distillation checkpoints, embeddings.
    pub dir: PathBuf,
}

/// `path` relative to the current directory, or to its parent (as
/// `../…`), when it lies below one of them: a notebook's output then names
/// the work folder as `../out/notebooks/…` rather than by the machine's
/// absolute path.
pub fn display_path(path: &Path) -> String {
    if let Ok(cwd) = std::env::current_dir() {
        if let Ok(rel) = path.strip_prefix(&cwd) {
            return rel.display().to_string();
        }
        if let Some(Ok(rel)) = cwd.parent().map(|p| path.strip_prefix(p)) {
            return Path::new("..").join(rel).display().to_string();
        }
    }
    path.display().to_string()
}

/// A short hex digest of a JSON value (names cached results).
fn digest(value: &serde_json::Value) -> String {
    crate::io::short_digest(value.to_string().as_bytes())
}

impl Workspace {
    /// The workspace the environment asks for: profile from
    /// [`PROFILE_VAR`], root folder from [`WORKDIR_VAR`]. Prints both.
    pub fn from_env() -> Result<Self> {
        let profile = std::env::var(PROFILE_VAR)
            .ok()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "default".into());
        let root = std::env::var_os(WORKDIR_VAR)
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("out/notebooks"));
        let ws = Self::new(&profile, &root)?;
        println!(
            "profile {} (set {PROFILE_VAR} to change it); work folder {}",
            ws.profile,
            display_path(&ws.dir)
        );
        Ok(ws)
    }

    /// A workspace for `profile` under `root` (the folder is created).
    /// Errors on an unknown profile.
    pub fn new(profile: &str, root: &Path) -> Result<Self> {
        Config::profile(profile)?;
        let dir = root.join(profile);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        Ok(Workspace {
            profile: profile.into(),
            dir,
        })
    }

    /// The profile's configuration (change fields before building the experiment).
    pub fn config(&self) -> Result<Config> {
        Config::profile(&self.profile)
    }

    /// The profile's configuration with image encoder `kind`
    /// ([`Config::set_image_encoder`]) starting from the weights `vl-distill
    /// pretrain` writes for it on the scenes: pretrained first, once, when
    /// they are missing, with a line per epoch (into
    /// `data/models/pretrained` under [`ROOT_VAR`](crate::config::ROOT_VAR)
    /// or the working folder, where the command line finds them too; the
    /// source's caption embeddings are cached in the work folder). The
    /// encoders that are not pretrained here (the ConvNet,
    /// EfficientNet-Lite0) come back as `set_image_encoder` leaves them.
    pub fn pretrained_config(&self, kind: &str) -> Result<Config> {
        let mut c = self.config()?;
        c.set_image_encoder(kind)?;
        let pretrainable =
            crate::config::pretrained_checkpoint(&c.model.image, c.data.image_size).is_some();
        if !pretrainable || c.model.image.checkpoint().is_some() {
            return Ok(c);
        }
        let file = pipeline::pretrain(
            &c,
            crate::device::best(),
            &self.dir.join("pretrain"),
            None,
            false,
        )?;
        let mut c = self.config()?;
        c.set_image_encoder(kind)?;
        if c.model.image.checkpoint().is_none() {
            return Err(Error::Config(format!(
                "pretrained {kind} written to {} but not found there by set_image_encoder",
                file.display()
            )));
        }
        Ok(c)
    }

    /// The experiment of `config` on the best device, with the caption
    /// embeddings cached in the work folder.
    pub fn experiment(&self, config: Config) -> Result<Experiment> {
        Experiment::new(
            config,
            crate::device::best(),
            Some(&self.dir.join("embeddings")),
        )
    }

    /// The folder that holds the experts of `exp`'s setup (data, text
    /// encoder, model, expert training, seed).
    pub fn experts_dir(&self, exp: &Experiment) -> PathBuf {
        let key = serde_json::json!({
            "dataset": exp.dataset.content_hash(),
            "text_encoder": exp.text_encoder,
            "model": exp.config.model,
            "experts": exp.config.experts,
            "seed": exp.config.seed,
        });
        self.dir.join(format!("experts-{}", digest(&key)))
    }

    /// The experts of `exp`'s setup: loaded when a finished set is in
    /// [`experts_dir`](Self::experts_dir), else trained there (resuming an
    /// interrupted run), with a line per epoch.
    pub fn experts(&self, exp: &Experiment) -> Result<Vec<Trajectory>> {
        let dir = self.experts_dir(exp);
        if let Some(ts) = pipeline::finished_experts(exp, &dir) {
            println!(
                "{} trained experts loaded from {}",
                ts.len(),
                display_path(&dir)
            );
            return Ok(ts);
        }
        pipeline::train_experts(exp, &dir, true)
    }

    /// The checkpoint file of a distillation by `distiller`'s setup: an
    /// existing one of the same setup under any name (so a notebook that
    /// repeats an earlier notebook's setup loads its result), else
    /// `distill/<name>-<digest>.safetensors`.
    pub fn checkpoint_path(&self, name: &str, distiller: &Distiller) -> PathBuf {
        let dir = self.dir.join("distill");
        let suffix = format!("-{}.safetensors", distiller.fingerprint_digest());
        let existing = std::fs::read_dir(&dir).ok().and_then(|entries| {
            let mut found: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.ends_with(&suffix))
                })
                .collect();
            found.sort();
            found.into_iter().next()
        });
        existing.unwrap_or_else(|| dir.join(format!("{name}{suffix}")))
    }

    /// Distils with `exp.config.distill` from `experts`, resuming from (or
    /// loading the finished result of) the same setup's checkpoint, with a
    /// line every `distill.log_every` iterations. `name` labels the
    /// checkpoint file. Returns the distiller: its `set` and `history`.
    pub fn distill(
        &self,
        exp: &Experiment,
        experts: &[Trajectory],
        name: &str,
    ) -> Result<Distiller> {
        self.distill_with(exp, experts, name, &exp.config.distill)
    }

    /// [`distill`](Self::distill) with stage-2 settings `cfg` instead of the
    /// experiment's (another `space`, size or rate), checked like a config.
    pub fn distill_with(
        &self,
        exp: &Experiment,
        experts: &[Trajectory],
        name: &str,
        cfg: &crate::config::DistillConfig,
    ) -> Result<Distiller> {
        let d = Distiller::with_config(exp, experts.to_vec(), cfg.clone())?;
        let path = self.checkpoint_path(name, &d);
        pipeline::distill(d.with_checkpoint(&path)?, name, true)
    }

    /// Test recall of models trained on `pairs` with learning rates `lr`,
    /// by the experiment's small-set protocol, with a line per seed.
    pub fn evaluate_pairs(
        &self,
        exp: &Experiment,
        pairs: CaptionedImages,
        lr: TowerLr,
        label: &str,
    ) -> Result<RecallStats> {
        Ok(pipeline::evaluate_pairs(exp, pairs, lr, label)?.stats)
    }

    /// Test recall of a distilled set (trained with its learned α). With an
    /// image encoder other than the one it was distilled with
    /// (cross-architecture), the image tower trains with the experiment's
    /// expert rate instead (see [`DistilledSet::student_lr`]).
    pub fn evaluate_distilled(
        &self,
        exp: &Experiment,
        set: &DistilledSet,
        label: &str,
    ) -> Result<RecallStats> {
        Ok(pipeline::evaluate_distilled(exp, set, label)?.0.stats)
    }

    /// Test recall of a coreset of `m` pairs chosen by `method` (trained with
    /// the experts' learning rates); herding, k-center and forgetting use
    /// `experts`.
    pub fn evaluate_coreset(
        &self,
        exp: &Experiment,
        experts: &[Trajectory],
        method: CoresetMethod,
        m: usize,
    ) -> Result<RecallStats> {
        Ok(pipeline::evaluate_coreset(exp, experts, method, m)?.stats)
    }

    /// The full-data upper bound: test recall of the experts' final epochs.
    pub fn evaluate_full(&self, exp: &Experiment, experts: &[Trajectory]) -> Result<RecallStats> {
        Ok(pipeline::evaluate_full(exp, Some(experts))?.stats)
    }

    /// A `results.json` row for `stats` with this experiment's labels.
    pub fn row(
        &self,
        exp: &Experiment,
        method: &str,
        pairs: Option<usize>,
        stats: &RecallStats,
    ) -> ResultRow {
        pipeline::row(exp, method, pairs, stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_profile_is_refused_and_folder_is_per_profile() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(Workspace::new("nope", tmp.path()).is_err());
        let ws = Workspace::new("smoke", tmp.path()).unwrap();
        assert_eq!(ws.dir, tmp.path().join("smoke"));
        assert!(ws.dir.is_dir());
        assert_eq!(ws.config().unwrap().profile, "smoke");
    }
}
