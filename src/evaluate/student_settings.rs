//! Student settings chosen on the validation split: for a set of training
//! pairs (a distilled set, a coreset, the full data), every setting of the
//! config's [`StudentGrid`] trains fresh students scored by validation
//! recall; the best one is then trained again and tested once. Every method
//! goes through the same grid, so the baselines get the same care as the
//! distilled sets.

use crate::config::StudentGrid;
use crate::data::{CaptionedImages, Split};
use crate::error::{Error, Result};
use crate::evaluate::protocol::Evaluator;
use crate::evaluate::results::RecallStats;
use crate::experiment::Experiment;
use crate::stage1::sgd::{SgdConfig, TowerLr};

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
    /// Every setting tried, with its validation recall: rates outermost,
    /// then momenta, then epochs.
    pub tried: Vec<(StudentSetting, RecallStats)>,
}

/// The score settings are ranked by: the sum of the six mean recalls
/// (TR and IR at 1, 5 and 10), steadier than R@1 alone on a small split.
pub fn val_score(stats: &RecallStats) -> f64 {
    stats.mean.values().iter().sum()
}

/// Tries every setting of `grid` on `pairs` (the method's own rates
/// `base`), scoring fresh students on the validation split; calls
/// `on_setting` after each. Ties keep the earlier setting.
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
    // one training run per (rate, momentum) and seed, scored at each
    // epoch count of the grid: the same numbers as separate runs
    let mut tried = Vec::with_capacity(grid.len());
    let longest = grid.epochs.iter().copied().max().unwrap_or(0);
    for &lr_scale in &grid.lr_scales {
        for &momentum in &grid.momenta {
            let run = StudentSetting {
                lr_scale,
                momentum,
                epochs: longest,
            };
            let scores = run
                .evaluator(exp, pairs.clone(), base, Split::Val)
                .recall_after(&grid.epochs)?;
            for (&epochs, stats) in grid.epochs.iter().zip(scores) {
                let setting = StudentSetting { epochs, ..run };
                on_setting(&setting, &stats);
                tried.push((setting, stats));
            }
        }
    }
    let (chosen, val) = tried
        .iter()
        .fold(
            None::<&(StudentSetting, RecallStats)>,
            |best, t| match best {
                Some(b) if val_score(&b.1) >= val_score(&t.1) => Some(b),
                _ => Some(t),
            },
        )
        .copied()
        .expect("the grid is not empty");
    Ok(StudentChoice { chosen, val, tried })
}
