//! [`Evaluator`]: the evaluation protocol. Train fresh models (one per seed)
//! on a set of training pairs — the full train split, a coreset, or a
//! distilled set — with given per-tower learning rates, then report
//! retrieval on the test split (or, for choosing settings, the validation
//! split: [`Evaluator::scored_on`]) as mean ± std over the seeds.

use crate::data::{CaptionedImages, Split};
use crate::error::Result;
use crate::evaluate::results::RecallStats;
use crate::model::retrieval;
use crate::model::retrieval::Recall;
use crate::model::{TowerParams, TwoTower};
use crate::seeds::derive_seed;
use crate::stage1::sgd::{train_epoch, SgdConfig, SgdState};
use candle_core::DType;
use std::sync::Arc;
use std::time::Instant;

/// One evaluated seed.
#[derive(Debug, Clone, PartialEq)]
pub struct SeedReport {
    /// Index of the seed (0-based).
    pub seed_index: usize,
    /// Recall of the model trained with it, on the evaluator's split.
    pub recall: Recall,
    /// Mean training loss of the last epoch.
    pub final_loss: f64,
    /// Wall time in seconds.
    pub seconds: f64,
}

/// A student scored partway through its training ([`Evaluator::seed_after`]).
#[derive(Debug, Clone)]
pub struct ScoredStudent {
    /// Its recall on the evaluator's split.
    pub recall: Recall,
    /// Mean training loss of its last epoch.
    pub loss: f64,
    /// Seconds from the start of its training to the end of this scoring.
    pub seconds: f64,
    /// Its parameters, when asked to keep them.
    pub params: Option<TowerParams>,
}

/// Trains and evaluates fresh models, one seed per [`step`](Self::step).
pub struct Evaluator {
    model: Arc<TwoTower>,
    train: CaptionedImages,
    test: CaptionedImages,
    sgd: SgdConfig,
    epochs: usize,
    num_seeds: usize,
    seed: u64,
    eval_batch: usize,
    split: Split,
    /// Reports of the seeds done so far.
    pub runs: Vec<SeedReport>,
}

impl Evaluator {
    /// Evaluates training on `train` for `epochs` epochs with `sgd`, over
    /// `num_seeds` fresh initialisations derived from `seed`, on `test`.
    pub fn new(
        model: Arc<TwoTower>,
        train: CaptionedImages,
        test: CaptionedImages,
        sgd: SgdConfig,
        epochs: usize,
        num_seeds: usize,
        seed: u64,
    ) -> Self {
        Evaluator {
            model,
            train,
            test,
            sgd,
            epochs,
            num_seeds,
            seed,
            eval_batch: 256,
            split: Split::Test,
            runs: Vec::new(),
        }
    }

    /// The evaluation protocol of the experiment's config for a small set of
    /// pairs (a distilled set or a coreset): `eval.num_seeds` fresh models,
    /// each trained `eval.small_set_epochs` epochs with SGD at `lr` (no
    /// momentum), tested on the test split.
    pub fn for_small_set(
        exp: &crate::experiment::Experiment,
        pairs: CaptionedImages,
        lr: crate::stage1::sgd::TowerLr,
    ) -> Self {
        let c = &exp.config.eval;
        let batch = c.batch_size.min(pairs.num_pairs()).max(2);
        Evaluator::new(
            exp.model.clone(),
            pairs,
            exp.test.clone(),
            SgdConfig {
                lr,
                momentum: 0.0,
                weight_decay: 0.0,
                batch_size: batch,
                captions_per_image: None,
            },
            c.small_set_epochs,
            c.num_seeds,
            exp.config.seed,
        )
    }

    /// Scores on `split` of `exp` instead of the test split: validation
    /// recall is what settings are chosen by, so that the test split is
    /// used once, for the reported number. Seeds already evaluated are
    /// dropped (they were scored on the other split).
    pub fn scored_on(mut self, exp: &crate::experiment::Experiment, split: Split) -> Self {
        self.test = exp.split(split).clone();
        self.split = split;
        self.runs.clear();
        self
    }

    /// The split the trained models are scored on.
    pub fn split(&self) -> Split {
        self.split
    }

    /// True when every seed has been evaluated.
    pub fn is_done(&self) -> bool {
        self.runs.len() >= self.num_seeds
    }

    /// Trains and evaluates the next seed; `None` when all are done.
    pub fn step(&mut self) -> Result<Option<SeedReport>> {
        self.step_with(|_, _| {})
    }

    /// Like [`step`](Self::step), calling `on_epoch(epoch, loss)` after each epoch.
    pub fn step_with(
        &mut self,
        mut on_epoch: impl FnMut(usize, f64),
    ) -> Result<Option<SeedReport>> {
        if self.is_done() {
            return Ok(None);
        }
        let i = self.runs.len();
        let start = Instant::now();
        let (params, loss) = self.train_seed(i, |epoch, loss, _| {
            on_epoch(epoch, loss);
            Ok(())
        })?;
        self.record(&params, loss, start, 0.0).map(Some)
    }

    /// Scores `params` as the next seed's model on this evaluator's split
    /// and records it; `trained_seconds` is training time spent before
    /// `start`.
    fn record(
        &mut self,
        params: &TowerParams,
        final_loss: f64,
        start: Instant,
        trained_seconds: f64,
    ) -> Result<SeedReport> {
        let recall = retrieval::evaluate(&self.model, params, &self.test, self.eval_batch)?;
        let report = SeedReport {
            seed_index: self.runs.len(),
            recall,
            final_loss,
            seconds: trained_seconds + start.elapsed().as_secs_f64(),
        };
        self.runs.push(report.clone());
        Ok(report)
    }

    /// Trains a fresh model with seed index `i` for every epoch, calling
    /// `after_epoch(epoch, loss, params)` after each; returns the trained
    /// parameters and the last epoch's mean loss. Epoch e's order derives
    /// from (seed, i, e) and the rates are constant, so the model after e
    /// epochs is the same whatever the number of epochs the run goes on to.
    fn train_seed(
        &self,
        i: usize,
        mut after_epoch: impl FnMut(usize, f64, &TowerParams) -> Result<()>,
    ) -> Result<(TowerParams, f64)> {
        let init_seed = derive_seed(self.seed, "eval-init", &[i as u64]);
        let mut params = self
            .model
            .init(init_seed, self.train.images.device(), DType::F32)?;
        let mut state = SgdState::default();
        let mut loss = f64::NAN;
        for epoch in 0..self.epochs {
            let s = derive_seed(self.seed, "eval-epoch", &[i as u64, epoch as u64]);
            loss = train_epoch(
                &self.model,
                &mut params,
                &mut state,
                &self.train,
                &self.sgd,
                s,
                None,
                |_, _, _| {},
            )?;
            after_epoch(epoch + 1, loss, &params)?;
        }
        Ok((params, loss))
    }

    /// Mean ± std over all seeds of the recall after each number of epochs
    /// in `at` (each in 1..=epochs), one entry per element of `at`: the
    /// same numbers as separate evaluators of those lengths, from one
    /// training run per seed. Leaves [`runs`](Self::runs) as it is.
    pub fn recall_after(&self, at: &[usize]) -> Result<Vec<RecallStats>> {
        let mut runs: Vec<Vec<Recall>> = vec![Vec::new(); at.len()];
        for i in 0..self.num_seeds {
            for (k, student) in self.seed_after(i, at, false)?.into_iter().enumerate() {
                runs[k].push(student.recall);
            }
        }
        runs.iter().map(|r| RecallStats::from_runs(r)).collect()
    }

    /// Trains the student of seed index `i` once and scores it after each
    /// number of epochs in `at` (each in 1..=epochs), one entry per element
    /// of `at`; with `keep`, each entry also holds the student's parameters
    /// at that point, the very model a run of that length would test.
    pub fn seed_after(&self, i: usize, at: &[usize], keep: bool) -> Result<Vec<ScoredStudent>> {
        if let Some(bad) = at.iter().find(|e| **e == 0 || **e > self.epochs) {
            return Err(crate::error::Error::Config(format!(
                "recall after {bad} epochs asked of an evaluator of {} epochs",
                self.epochs
            )));
        }
        let start = Instant::now();
        let mut out: Vec<Option<ScoredStudent>> = vec![None; at.len()];
        self.train_seed(i, |epoch, loss, params| {
            if at.contains(&epoch) {
                let recall = retrieval::evaluate(&self.model, params, &self.test, self.eval_batch)?;
                let student = ScoredStudent {
                    recall,
                    loss,
                    seconds: start.elapsed().as_secs_f64(),
                    params: keep.then(|| params.clone()),
                };
                for (k, _) in at.iter().enumerate().filter(|(_, e)| **e == epoch) {
                    out[k] = Some(student.clone());
                }
            }
            Ok(())
        })?;
        Ok(out
            .into_iter()
            .map(|o| o.expect("every epoch count was reached"))
            .collect())
    }

    /// Scores on this evaluator's split a student already trained for the
    /// next seed (the model [`step`](Self::step) would train: seed index
    /// `runs.len()`, these rates, these epochs) instead of training it
    /// again; `None` when every seed is done.
    pub fn step_trained(&mut self, trained: &ScoredStudent) -> Result<Option<SeedReport>> {
        if self.is_done() {
            return Ok(None);
        }
        let Some(params) = &trained.params else {
            return Err(crate::error::Error::Config(
                "a student scored without keeping its parameters cannot be tested".into(),
            ));
        };
        self.record(params, trained.loss, Instant::now(), trained.seconds)
            .map(Some)
    }

    /// Runs the remaining seeds; returns mean ± std over all of them.
    pub fn run(&mut self) -> Result<RecallStats> {
        while self.step()?.is_some() {}
        self.stats()
    }

    /// Mean ± std over the seeds done so far.
    pub fn stats(&self) -> Result<RecallStats> {
        let r: Vec<Recall> = self.runs.iter().map(|r| r.recall).collect();
        RecallStats::from_runs(&r)
    }
}

/// Test recall of each expert's final epoch, as mean ± std over experts.
///
/// Every expert is a model trained on the full train split from its own
/// seed, so this is the full-data upper bound without training again.
pub fn evaluate_experts(
    model: &TwoTower,
    trajectories: &[crate::stage1::trajectory::Trajectory],
    test: &CaptionedImages,
) -> Result<RecallStats> {
    let last = trajectories
        .iter()
        .map(|t| t.epochs.len())
        .min()
        .unwrap_or(0);
    if last == 0 {
        return Err(crate::Error::Config(
            "the experts hold no snapshots to evaluate".into(),
        ));
    }
    evaluate_experts_at(model, trajectories, last - 1, test)
}

/// Recall on `data` of every expert's snapshot after `epoch` epochs, as
/// mean ± std over experts (choosing `epoch` on the validation split is
/// the full data's counterpart of choosing a small set's epochs).
pub fn evaluate_experts_at(
    model: &TwoTower,
    trajectories: &[crate::stage1::trajectory::Trajectory],
    epoch: usize,
    data: &CaptionedImages,
) -> Result<RecallStats> {
    let runs = trajectories
        .iter()
        .map(|t| {
            let params = t.epochs.get(epoch).ok_or_else(|| {
                crate::Error::Config(format!(
                    "expert {} has {} epochs, not {epoch}",
                    t.meta.expert,
                    t.epochs.len().saturating_sub(1)
                ))
            })?;
            retrieval::evaluate(model, params, data, 256)
        })
        .collect::<Result<Vec<_>>>()?;
    RecallStats::from_runs(&runs)
}
