//! Choosing the stage-2 settings by validation recall: successive halving
//! over a grid around the configuration's own settings.
//!
//! Every candidate is a set of `distill.*` values (the pixel, text and
//! learning-rate learning rates, the student steps and the last start
//! epoch, and with `distill.similarity` the similarity's rate). Rung 0 distils every candidate for a few iterations and scores
//! students trained on each set by their recall on the **validation**
//! split; the best third go on to a rung three times as long (their
//! distillers continue where they stopped, which is what a longer run would
//! have computed), and so on up to the configuration's own
//! `distill.iterations`. The test split is never read: it is kept for the
//! number reported once with the winner.

use crate::config::{BlendConfig, Config, DistillConfig, LorsConfig, SynthSpace};
use crate::data::Split;
use crate::error::{Error, Result};
use crate::evaluate::protocol::Evaluator;
use crate::evaluate::results::RecallStats;
use crate::experiment::Experiment;
use crate::progress::log_line;
use crate::seeds::derive_seed;
use crate::stage1::trajectory::Trajectory;
use crate::stage2::distiller::Distiller;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// How wide and how long the search is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TuneOptions {
    /// Candidates of rung 0 (the configuration's own settings and others
    /// drawn from the grid).
    pub candidates: usize,
    /// Rungs; the last one runs `distill.iterations` iterations.
    pub rungs: usize,
    /// How many times fewer candidates, and how many times more
    /// iterations, each rung has than the one before.
    pub eta: usize,
}

impl Default for TuneOptions {
    /// 27 candidates, 3 rungs, η = 3.
    fn default() -> Self {
        TuneOptions {
            candidates: 27,
            rungs: 3,
            eta: 3,
        }
    }
}

/// The `distill.*` values of one candidate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// The synthetic images' rate: `distill.lr_images` for a pixel set,
    /// `distill.lr_features` for a feature-space set.
    pub lr_images: f64,
    /// `distill.lr_texts`.
    pub lr_texts: f64,
    /// `distill.lr_lr`.
    pub lr_lr: f64,
    /// `distill.syn_steps`.
    pub syn_steps: usize,
    /// `distill.max_start_epoch`.
    pub max_start_epoch: usize,
    /// `distill.similarity.lr`, when the set learns a similarity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr_similarity: Option<f64>,
    /// `distill.blend.alpha`, when the students blend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blend_alpha: Option<f64>,
}

impl Candidate {
    /// The candidate of `cfg`'s own settings.
    pub fn of(cfg: &DistillConfig) -> Self {
        Candidate {
            lr_images: match cfg.space {
                SynthSpace::Pixels => cfg.lr_images,
                SynthSpace::Features => cfg.lr_features,
            },
            lr_texts: cfg.lr_texts,
            lr_lr: cfg.lr_lr,
            syn_steps: cfg.syn_steps,
            max_start_epoch: cfg.max_start_epoch,
            lr_similarity: cfg.similarity.map(|l| l.lr),
            blend_alpha: cfg.blend.map(|b| b.alpha),
        }
    }

    /// `cfg` with this candidate's values.
    pub fn apply(&self, cfg: &DistillConfig) -> DistillConfig {
        let (lr_images, lr_features) = match cfg.space {
            SynthSpace::Pixels => (self.lr_images, cfg.lr_features),
            SynthSpace::Features => (cfg.lr_images, self.lr_images),
        };
        let similarity = match (cfg.similarity, self.lr_similarity) {
            (Some(l), Some(lr)) => Some(LorsConfig { lr, ..l }),
            (l, _) => l,
        };
        let blend = match (cfg.blend, self.blend_alpha) {
            (Some(_), Some(alpha)) => Some(BlendConfig { alpha }),
            (b, _) => b,
        };
        DistillConfig {
            lr_images,
            lr_features,
            lr_texts: self.lr_texts,
            lr_lr: self.lr_lr,
            syn_steps: self.syn_steps,
            max_start_epoch: self.max_start_epoch,
            similarity,
            blend,
            ..cfg.clone()
        }
    }
}

impl std::fmt::Display for Candidate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "lr_images {:<7} lr_texts {:<7} lr_lr {:<7} syn_steps {:<3} max_start_epoch {}",
            self.lr_images, self.lr_texts, self.lr_lr, self.syn_steps, self.max_start_epoch
        )?;
        if let Some(lr) = self.lr_similarity {
            write!(f, " lr_similarity {lr}")?;
        }
        if let Some(alpha) = self.blend_alpha {
            write!(f, " blend_alpha {alpha}")?;
        }
        Ok(())
    }
}

/// The grid around `cfg`: each learning rate (the synthetic images' rate
/// of `cfg`'s space, and the similarity's when the set learns one) at a
/// third, once and three times its value, the blending's Beta parameter
/// (when the students blend) likewise (a third: λ mostly near 0 or 1,
/// little mixing; three times: λ near ½), `syn_steps` once and twice, and `max_start_epoch`
/// from 1 to the last start the experts' `expert_epochs` epochs allow
/// (`expert_epochs_done` recorded epochs), at most three values. The
/// configuration's own candidate comes first.
pub fn grid(cfg: &DistillConfig, expert_epochs_done: usize) -> Vec<Candidate> {
    let rates = |v: f64| [v, round3(v / 3.0), round3(v * 3.0)];
    let last_start = (expert_epochs_done + 1)
        .saturating_sub(cfg.expert_epochs)
        .max(1);
    let mut starts = vec![cfg.max_start_epoch.min(last_start)];
    for s in [1, last_start.div_ceil(2), last_start] {
        if !starts.contains(&s) {
            starts.push(s);
        }
    }
    let own = Candidate::of(cfg);
    let similarity: Vec<Option<f64>> = match own.lr_similarity {
        Some(lr) => rates(lr).into_iter().map(Some).collect(),
        None => vec![None],
    };
    let blending: Vec<Option<f64>> = match own.blend_alpha {
        Some(a) => rates(a).into_iter().map(Some).collect(),
        None => vec![None],
    };
    let mut out = Vec::new();
    for lr_images in rates(own.lr_images) {
        for lr_texts in rates(cfg.lr_texts) {
            for lr_lr in rates(cfg.lr_lr) {
                for syn_steps in [cfg.syn_steps, 2 * cfg.syn_steps] {
                    for &max_start_epoch in &starts {
                        for &lr_similarity in &similarity {
                            for &blend_alpha in &blending {
                                out.push(Candidate {
                                    lr_images,
                                    lr_texts,
                                    lr_lr,
                                    syn_steps,
                                    max_start_epoch,
                                    lr_similarity,
                                    blend_alpha,
                                });
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

/// `v` to three significant digits (the grid's rates read as written).
fn round3(v: f64) -> f64 {
    if v == 0.0 || !v.is_finite() {
        return v;
    }
    let scale = 10f64.powi(2 - v.abs().log10().floor() as i32);
    (v * scale).round() / scale
}

/// One candidate scored at one rung.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TuneRow {
    /// The rung (0 first).
    pub rung: usize,
    /// The candidate's index among those of rung 0.
    pub candidate: usize,
    /// Its settings.
    pub settings: Candidate,
    /// Distillation iterations done.
    pub iterations: usize,
    /// Validation recall of students trained on its set.
    pub val: RecallStats,
    /// The score: the sum of the six mean validation recalls.
    pub score: f64,
}

/// What [`tune`] found.
#[derive(Debug, Clone)]
pub struct TuneResult {
    /// Every score, rung by rung.
    pub rows: Vec<TuneRow>,
    /// The winner of the last rung.
    pub best: Candidate,
    /// The configuration with the winner's settings.
    pub config: Config,
}

/// A candidate's distillation, continued from rung to rung.
struct Run {
    index: usize,
    settings: Candidate,
    exp: Experiment,
    distiller: Distiller,
}

/// Successive halving over [`grid`] (`opts.candidates` of it, the
/// configuration's own settings included), scored on the validation split.
/// `experts` are the finished experts of `exp`'s setup. Prints a line per
/// scored candidate.
pub fn tune(exp: &Experiment, experts: &[Trajectory], opts: &TuneOptions) -> Result<TuneResult> {
    if opts.candidates == 0 || opts.rungs == 0 || opts.eta < 2 {
        return Err(Error::Config(
            "tune: candidates and rungs must be > 0, eta >= 2".into(),
        ));
    }
    let base = &exp.config.distill;
    let epochs_done = experts.iter().map(|t| t.epochs_done()).min().unwrap_or(0);
    let mut all = grid(base, epochs_done);
    let own = all.remove(0);
    let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(exp.config.seed, "tune", &[]));
    all.shuffle(&mut rng);
    let mut chosen = vec![own];
    chosen.extend(all.into_iter().take(opts.candidates.saturating_sub(1)));

    let final_iterations = match base.space {
        SynthSpace::Pixels => base.iterations,
        SynthSpace::Features => base.feature_iterations.unwrap_or(base.iterations),
    };
    let mut runs = Vec::new();
    for (index, settings) in chosen.into_iter().enumerate() {
        let mut e = exp.clone();
        e.config.distill = settings.apply(base);
        let distiller = Distiller::new(&e, experts.to_vec())?;
        runs.push(Run {
            index,
            settings,
            exp: e,
            distiller,
        });
    }
    let mut rows = Vec::new();
    for rung in 0..opts.rungs {
        let last = rung + 1 == opts.rungs;
        let shrink = opts.eta.pow((opts.rungs - 1 - rung) as u32);
        let iterations = (final_iterations / shrink).max(1);
        log_line(&format!(
            "tune rung {rung}: {} candidates, {iterations} iterations, scored on val",
            runs.len()
        ));
        let mut scored = Vec::new();
        for mut run in runs {
            while run.distiller.iteration < iterations {
                run.distiller.step()?;
            }
            let mut e = run.exp.clone();
            if !last {
                e.config.eval.num_seeds = 1;
            }
            let set = &run.distiller.set;
            let (lr, _) = set.student_lr(&e);
            let val = Evaluator::for_small_set(&e, set.training_pairs(&e)?, lr)
                .scored_on(&e, Split::Val)
                .run()?;
            let score = val.mean.values().iter().sum::<f64>();
            log_line(&format!(
                "  #{:<3} {}  val TR@1 {:.2} IR@1 {:.2} rsum {score:.1}",
                run.index, run.settings, val.mean.tr_r1, val.mean.ir_r1
            ));
            rows.push(TuneRow {
                rung,
                candidate: run.index,
                settings: run.settings,
                iterations,
                val,
                score,
            });
            scored.push((score, run));
        }
        // best first; ties go to the earlier candidate
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.index.cmp(&b.1.index)));
        let keep = if last {
            1
        } else {
            scored.len().div_ceil(opts.eta)
        };
        runs = scored.into_iter().take(keep).map(|(_, r)| r).collect();
    }
    let winner = runs.remove(0);
    let mut config = exp.config.clone();
    config.distill = winner.settings.apply(base);
    Ok(TuneResult {
        rows,
        best: winner.settings,
        config,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grid_starts_with_the_configs_own_settings_and_respects_the_experts() {
        let cfg = Config::smoke().distill;
        let g = grid(&cfg, 4);
        assert_eq!(g[0], Candidate::of(&cfg));
        assert_eq!(g[0].apply(&cfg), cfg);
        // the start epochs leave room for expert_epochs more epochs
        assert!(g
            .iter()
            .all(|c| c.max_start_epoch >= 1 && c.max_start_epoch - 1 + cfg.expert_epochs <= 4));
        for (i, a) in g.iter().enumerate() {
            assert!(g[i + 1..].iter().all(|b| b != a), "{a} twice");
        }
        assert!(g.iter().any(|c| c.lr_images == cfg.lr_images * 3.0));
        assert!(g.iter().any(|c| c.lr_images == 333.0));
        assert_eq!(
            (round3(0.1 / 3.0), round3(0.30000000000000004)),
            (0.0333, 0.3)
        );
        assert!(g.iter().any(|c| c.syn_steps == 2 * cfg.syn_steps));
        // a feature-space set: the grid is around lr_features, which the
        // candidates set (lr_images stays as configured)
        let features = DistillConfig {
            space: SynthSpace::Features,
            lr_features: 900.0,
            ..cfg.clone()
        };
        let g = grid(&features, 4);
        assert_eq!(g[0].lr_images, 900.0);
        assert!(g.iter().any(|c| c.lr_images == 300.0));
        let applied = g[1].apply(&features);
        assert_eq!(applied.lr_features, g[1].lr_images);
        assert_eq!(applied.lr_images, cfg.lr_images);
        // without a learned similarity no candidate has its rate; with one,
        // the grid is three times as large and sets it
        assert!(grid(&cfg, 4).iter().all(|c| c.lr_similarity.is_none()));
        let lors = DistillConfig {
            similarity: Some(LorsConfig::default()),
            ..cfg.clone()
        };
        let g = grid(&lors, 4);
        assert_eq!(g.len(), 3 * grid(&cfg, 4).len());
        assert_eq!(g[0].apply(&lors), lors);
        let third = g.iter().find(|c| c.lr_similarity == Some(3.33)).unwrap();
        assert_eq!(third.apply(&lors).similarity.unwrap().lr, 3.33);
        assert_eq!(third.apply(&lors).similarity.unwrap().rank, 10);
        assert!(third.to_string().contains("lr_similarity 3.33"));
        // blending: its Beta parameter at a third, once and three times
        assert!(grid(&cfg, 4).iter().all(|c| c.blend_alpha.is_none()));
        let both = DistillConfig {
            blend: Some(BlendConfig::default()),
            ..lors.clone()
        };
        let g = grid(&both, 4);
        assert_eq!(g.len(), 9 * grid(&cfg, 4).len());
        assert_eq!(g[0].apply(&both), both);
        let mixing = g.iter().find(|c| c.blend_alpha == Some(3.0)).unwrap();
        assert_eq!(mixing.apply(&both).blend.unwrap().alpha, 3.0);
        assert!(mixing.to_string().contains("blend_alpha 3"));
    }
}
