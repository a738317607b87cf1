//! Student settings chosen on the validation split: for a set of training
//! pairs (a distilled set, a coreset, the full data), every setting of the
//! config's [`StudentGrid`] trains fresh students scored by validation
//! recall; the best one is then tested once (on the students the search
//! trained for it, or, for models too large to keep, on students trained
//! again from the same seeds: the same models). Every method
//! goes through the same grid, so the baselines get the same care as the
//! distilled sets.

use crate::config::StudentGrid;
use crate::data::{CaptionedImages, Split};
use crate::error::{Error, Result};
use crate::evaluate::protocol::{Evaluator, ScoredStudent};
use crate::evaluate::results::RecallStats;
use crate::experiment::Experiment;
use crate::stage1::sgd::{SgdConfig, TowerLr};
use candle_core::DType;

/// How students are trained on a set of pairs: a factor on the method's own
/// rates, SGD momentum and the number of epochs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StudentSetting {
    /// Factor applied to both tower rates of the method.
    pub lr_scale: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// Epochs over the pairs.
    pub epochs: usize,
}

impl StudentSetting {
    /// The fixed protocol: the method's rates, no momentum, `epochs` epochs.
    pub fn plain(epochs: usize) -> Self {
        StudentSetting {
            lr_scale: 1.0,
            momentum: 0.0,
            epochs,
        }
    }

    /// The rates of the students for a method whose own rates are `base`.
    pub fn lr(&self, base: TowerLr) -> TowerLr {
        TowerLr {
            image: base.image * self.lr_scale,
            text: base.text * self.lr_scale,
        }
    }

    /// An evaluator of `pairs` for `exp` with this setting, scored on `split`.
    pub fn evaluator(
        &self,
        exp: &Experiment,
        pairs: CaptionedImages,
        base: TowerLr,
        split: Split,
    ) -> Evaluator {
        let c = &exp.config.eval;
        let batch = c.batch_size.min(pairs.num_pairs()).max(2);
        let sgd = SgdConfig {
            lr: self.lr(base),
            momentum: self.momentum,
            weight_decay: 0.0,
            batch_size: batch,
            captions_per_image: None,
        };
        Evaluator::new(
            exp.model.clone(),
            pairs,
            exp.test.clone(),
            sgd,
            self.epochs,
            c.num_seeds,
            exp.config.seed,
        )
        .scored_on(exp, split)
    }
}

impl std::fmt::Display for StudentSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "lr ×{}, momentum {}, {} epochs",
            self.lr_scale, self.momentum, self.epochs
        )
    }
}

/// What the search on the validation split found.
#[derive(Debug, Clone)]
pub struct StudentChoice {
    /// The setting with the highest validation score.
    pub chosen: StudentSetting,
    /// Its validation recall.
    pub val: RecallStats,
    /// Every setting tried, with its validation recall (over the first seed
    /// only for the (rate, momentum) pairs that were not finalists): rates
    /// outermost, then momenta, then epochs.
    pub tried: Vec<(StudentSetting, RecallStats)>,
    /// The chosen setting's students, one per seed in seed order, with
    /// their parameters, when these were small enough to keep
    /// ([`KEEP_STUDENTS_BYTES`]): the very models a fresh run of the chosen
    /// setting trains, so that testing them needs no second training.
    pub students: Option<Vec<ScoredStudent>>,
    /// Number of student runs the search trained (one per seed of each
    /// (rate, momentum) pair, each scored at every epoch count).
    pub student_runs: usize,
}

/// The most memory the search spends on students kept for the test; with
/// larger models the chosen setting is trained again instead.
pub const KEEP_STUDENTS_BYTES: usize = 512 << 20;

/// The score settings are ranked by: the sum of the six mean recalls
/// (TR and IR at 1, 5 and 10), steadier than R@1 alone on a small split.
pub fn val_score(stats: &RecallStats) -> f64 {
    stats.mean.values().iter().sum()
}

/// One (rate, momentum) pair of the grid: its students per seed, each
/// scored at every epoch count of the grid.
struct GridRun {
    /// The pair, at the grid's longest schedule.
    setting: StudentSetting,
    /// `seeds[i][k]`: seed index i scored after the grid's k-th epoch count.
    seeds: Vec<Vec<ScoredStudent>>,
}

impl GridRun {
    /// Mean ± std over the seeds so far after the `k`-th epoch count.
    fn stats(&self, k: usize) -> Result<RecallStats> {
        let runs: Vec<_> = self.seeds.iter().map(|s| s[k].recall).collect();
        RecallStats::from_runs(&runs)
    }

    /// The best score over the epoch counts, on the seeds so far.
    fn best_score(&self, epoch_counts: usize) -> Result<f64> {
        (0..epoch_counts).try_fold(f64::NEG_INFINITY, |best, k| {
            Ok(best.max(val_score(&self.stats(k)?)))
        })
    }

    /// Drops the students' parameters (the run can no longer be chosen).
    fn forget_students(&mut self) {
        self.seeds
            .iter_mut()
            .flatten()
            .for_each(|s| s.params = None);
    }
}

/// Indices of `runs` ordered by best score, highest first (ties: grid order).
fn ranked(runs: &[GridRun], epoch_counts: usize) -> Result<Vec<usize>> {
    let scores = runs
        .iter()
        .map(|r| r.best_score(epoch_counts))
        .collect::<Result<Vec<_>>>()?;
    let mut order: Vec<usize> = (0..runs.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    Ok(order)
}

/// Tries the settings of `grid` on `pairs` (the method's own rates
/// `base`), scoring fresh students on the validation split, and calls
/// `on_setting` with each setting's validation recall as it is known (for
/// finalists twice: after the first seed, then after all). Every
/// (rate, momentum) pair trains one student per seed, scored at each epoch
/// count; with `grid.finalists = Some(k)` only the first seed, then the
/// other seeds for the k best pairs. The chosen setting is the best on all
/// seeds; ties keep the earlier setting.
pub fn choose_on_val(
    exp: &Experiment,
    pairs: &CaptionedImages,
    base: TowerLr,
    grid: &StudentGrid,
    mut on_setting: impl FnMut(&StudentSetting, &RecallStats),
) -> Result<StudentChoice> {
    if grid.is_empty() {
        return Err(Error::Config(
            "eval.student_grid holds no setting to choose from".into(),
        ));
    }
    let seeds = exp.config.eval.num_seeds;
    let epochs = &grid.epochs;
    let longest = epochs.iter().copied().max().unwrap_or(0);
    let screened = grid.screened_finalists(seeds);
    let screening = screened.is_some();
    let finalists = screened.unwrap_or(grid.num_runs());
    let first_seeds = if screening { 1 } else { seeds };
    // at most (finalists + 1) pairs, or the best and the current one, hold
    // students at any time
    let held_runs = if screening { finalists + 1 } else { 2 };
    let bytes =
        exp.model.init(0, &exp.device, DType::F32)?.num_elements() * std::mem::size_of::<f32>();
    let keep = bytes * held_runs * seeds * epochs.len() <= KEEP_STUDENTS_BYTES;

    let train = |run: &mut GridRun, seed_range: std::ops::Range<usize>| -> Result<()> {
        let ev = run.setting.evaluator(exp, pairs.clone(), base, Split::Val);
        for i in seed_range {
            run.seeds.push(ev.seed_after(i, epochs, keep)?);
        }
        Ok(())
    };
    let mut report = |run: &GridRun| -> Result<()> {
        for (k, &e) in epochs.iter().enumerate() {
            on_setting(
                &StudentSetting {
                    epochs: e,
                    ..run.setting
                },
                &run.stats(k)?,
            );
        }
        Ok(())
    };

    let mut runs: Vec<GridRun> = Vec::with_capacity(grid.num_runs());
    for &lr_scale in &grid.lr_scales {
        for &momentum in &grid.momenta {
            let mut run = GridRun {
                setting: StudentSetting {
                    lr_scale,
                    momentum,
                    epochs: longest,
                },
                seeds: Vec::with_capacity(seeds),
            };
            train(&mut run, 0..first_seeds)?;
            report(&run)?;
            runs.push(run);
            // only the runs that can still be chosen keep their students
            let still = if screening { finalists } else { 1 };
            for &i in ranked(&runs, epochs.len())?.iter().skip(still) {
                runs[i].forget_students();
            }
        }
    }
    let mut finals: Vec<usize> = ranked(&runs, epochs.len())?
        .into_iter()
        .take(finalists)
        .collect();
    finals.sort_unstable();
    if screening {
        let mut best: Option<usize> = None;
        for &i in &finals {
            train(&mut runs[i], first_seeds..seeds)?;
            report(&runs[i])?;
            let better = match best {
                Some(b) => runs[i].best_score(epochs.len())? > runs[b].best_score(epochs.len())?,
                None => true,
            };
            if better {
                if let Some(b) = best {
                    runs[b].forget_students();
                }
                best = Some(i);
            } else {
                runs[i].forget_students();
            }
        }
    }

    let mut tried = Vec::with_capacity(grid.len());
    let mut chosen: Option<(usize, usize, f64)> = None;
    for (r, run) in runs.iter().enumerate() {
        for (k, &e) in epochs.iter().enumerate() {
            let stats = run.stats(k)?;
            let score = val_score(&stats);
            if finals.contains(&r) && chosen.is_none_or(|(_, _, best)| score > best) {
                chosen = Some((r, k, score));
            }
            tried.push((
                StudentSetting {
                    epochs: e,
                    ..run.setting
                },
                stats,
            ));
        }
    }
    let (r, k, _) = chosen.expect("the grid is not empty");
    let students: Option<Vec<ScoredStudent>> = runs[r]
        .seeds
        .iter()
        .map(|s| s[k].params.is_some().then(|| s[k].clone()))
        .collect();
    Ok(StudentChoice {
        chosen: tried[r * epochs.len() + k].0,
        val: tried[r * epochs.len() + k].1,
        tried,
        students,
        student_runs: runs.iter().map(|run| run.seeds.len()).sum(),
    })
}
