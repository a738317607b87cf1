//! What a notebook needs besides the stages themselves: the profile it runs
//! at and a work folder where the expensive results of one notebook are kept
//! for the next ([`Workspace`]).
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
use crate::coreset::{self, CoresetMethod};
use crate::distill::{DistilledSet, Distiller};
use crate::error::{Error, Result};
use crate::eval::{RecallStats, ResultRow};
use crate::evaluator::{evaluate_experts, Evaluator};
use crate::experiment::Experiment;
use crate::expert::ExpertTrainer;
use crate::pairs::CaptionedImages;
use crate::train::TowerLr;
use crate::trajectory::{self, Trajectory};
use std::path::{Path, PathBuf};
use std::time::Instant;

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
        let n = exp.config.experts.num_experts;
        if let Ok(ts) = trajectory::load_all(&dir, &exp.device) {
            if ts.len() == n && ts.iter().all(|t| t.meta.complete && t.meta.fits(exp)) {
                println!("{n} trained experts loaded from {}", display_path(&dir));
                return Ok(ts);
            }
        }
        let t = Instant::now();
        println!(
            "training {n} experts × {} epochs on {} into {}",
            exp.config.experts.epochs,
            crate::train::describe_epoch(&exp.train, exp.config.experts.captions_per_image),
            display_path(&dir)
        );
        let mut trainer = ExpertTrainer::new(exp)?
            .with_output(&dir)
            .with_progress(true);
        let ts = trainer.run()?.to_vec();
        println!("experts trained in {:.1} s", t.elapsed().as_secs_f64());
        Ok(ts)
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
        let d = Distiller::new(exp, experts.to_vec())?;
        let path = self.checkpoint_path(name, &d);
        let mut d = d.with_checkpoint(&path)?.with_progress(true);
        let cfg = &exp.config.distill;
        if d.is_done() {
            println!(
                "{name}: finished distillation loaded ({} iterations) from {}",
                d.iteration,
                display_path(&path)
            );
            return Ok(d);
        }
        let t = Instant::now();
        println!(
            "{name}: distilling {} pairs, {} iterations × {} student steps{}",
            cfg.pairs,
            cfg.iterations,
            cfg.syn_steps,
            if d.iteration > 0 {
                format!(", resuming at iteration {}", d.iteration)
            } else {
                String::new()
            }
        );
        d.run()?;
        println!(
            "{name}: done in {:.1} s; learned α image {:.4}, text {:.4}",
            t.elapsed().as_secs_f64(),
            d.set.lr().image,
            d.set.lr().text
        );
        Ok(d)
    }

    /// Retrieval recall of models trained on `pairs` with learning rates
    /// `lr`, by the experiment's small-set protocol, with a line per seed.
    pub fn evaluate_pairs(
        &self,
        exp: &Experiment,
        pairs: CaptionedImages,
        lr: TowerLr,
        label: &str,
    ) -> Result<RecallStats> {
        let c = &exp.config.eval;
        println!(
            "{label}: {} pairs, {} seeds × {} epochs",
            pairs.num_pairs(),
            c.num_seeds,
            c.small_set_epochs
        );
        let mut ev = Evaluator::for_small_set(exp, pairs, lr);
        while let Some(r) = ev.step()? {
            println!("  seed {}: {} ({:.1} s)", r.seed_index, r.recall, r.seconds);
        }
        let stats = ev.stats()?;
        println!("{label}: {stats}");
        Ok(stats)
    }

    /// Recall of a distilled set (trained with its learned α). With an
    /// image encoder other than the one it was distilled with
    /// (cross-architecture), the image tower trains with the experiment's
    /// expert rate instead (see [`DistilledSet::student_lr`]).
    pub fn evaluate_distilled(
        &self,
        exp: &Experiment,
        set: &DistilledSet,
        label: &str,
    ) -> Result<RecallStats> {
        set.check_fits(exp)?;
        let (lr, source) = set.student_lr(exp);
        if let Some(theirs) = source {
            println!(
                "{label}: distilled with {theirs}, students are {} (image lr {}, learned text lr {:.4})",
                exp.config.model.image.architecture(),
                lr.image,
                lr.text
            );
        }
        self.evaluate_pairs(exp, set.as_pairs()?, lr, label)
    }

    /// Recall of a coreset of `m` pairs chosen by `method` (trained with the
    /// experts' learning rates); herding, k-center and forgetting use `experts`.
    pub fn evaluate_coreset(
        &self,
        exp: &Experiment,
        experts: &[Trajectory],
        method: CoresetMethod,
        m: usize,
    ) -> Result<RecallStats> {
        let c = &exp.config;
        let set = coreset::select(method, &exp.train, &exp.model, experts, m, c.seed)?;
        self.evaluate_pairs(exp, set, c.experts.lr(), method.name())
    }

    /// The full-data upper bound: test recall of the experts' final epochs.
    pub fn evaluate_full(&self, exp: &Experiment, experts: &[Trajectory]) -> Result<RecallStats> {
        let stats = evaluate_experts(&exp.model, experts, &exp.test)?;
        println!(
            "full data ({} pairs, {} experts): {stats}",
            exp.train.num_pairs(),
            experts.len()
        );
        Ok(stats)
    }

    /// A `results.json` row for `stats` with this experiment's labels.
    pub fn row(
        &self,
        exp: &Experiment,
        method: &str,
        pairs: Option<usize>,
        stats: &RecallStats,
    ) -> ResultRow {
        ResultRow::new(
            method,
            pairs,
            stats,
            &exp.config.profile,
            &exp.dataset.name,
            &exp.image_encoder(),
            &exp.text_encoder,
        )
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
