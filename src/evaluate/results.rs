//! Results: recall mean ± std over seeds ([`RecallStats`]) and the rows of
//! a run's `results.json` ([`ResultRow`]).

use crate::error::{Error, Result};
use crate::model::retrieval::Recall;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Mean and standard deviation of recalls over several seeds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RecallStats {
    /// Mean over seeds.
    pub mean: Recall,
    /// Population standard deviation over seeds (0 for one seed).
    pub std: Recall,
    /// Number of seeds.
    pub seeds: usize,
}

impl RecallStats {
    /// Statistics of `runs` (at least one).
    pub fn from_runs(runs: &[Recall]) -> Result<Self> {
        if runs.is_empty() {
            return Err(Error::Config("no runs to summarise".into()));
        }
        let n = runs.len() as f64;
        let mut mean = [0.0; 6];
        for r in runs {
            for (m, v) in mean.iter_mut().zip(r.values()) {
                *m += v / n;
            }
        }
        let mut var = [0.0; 6];
        for r in runs {
            for ((s, v), m) in var.iter_mut().zip(r.values()).zip(mean) {
                *s += (v - m).powi(2) / n;
            }
        }
        Ok(RecallStats {
            mean: Recall::from_values(mean),
            std: Recall::from_values(var.map(f64::sqrt)),
            seeds: runs.len(),
        })
    }
}

impl std::fmt::Display for RecallStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (m, s) = (self.mean.values(), self.std.values());
        let cell = |i: usize| format!("{:.1}±{:.1}", m[i], s[i]);
        write!(
            f,
            "TR R@1/5/10 {} {} {}  IR R@1/5/10 {} {} {}  ({} seeds)",
            cell(0),
            cell(1),
            cell(2),
            cell(3),
            cell(4),
            cell(5),
            self.seeds
        )
    }
}

/// One row of `results.json`: how a set of pairs was made and how it retrieves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultRow {
    /// `full`, `distilled`, `random`, `herding`, `kcenter`, `forgetting`, ...
    pub method: String,
    /// Number of training pairs (`None` for the full data).
    pub pairs: Option<usize>,
    /// Mean TR R@1.
    pub tr_r1: f64,
    /// Mean TR R@5.
    pub tr_r5: f64,
    /// Mean TR R@10.
    pub tr_r10: f64,
    /// Mean IR R@1.
    pub ir_r1: f64,
    /// Mean IR R@5.
    pub ir_r5: f64,
    /// Mean IR R@10.
    pub ir_r10: f64,
    /// Std of TR R@1.
    pub tr_r1_std: f64,
    /// Std of TR R@5.
    pub tr_r5_std: f64,
    /// Std of TR R@10.
    pub tr_r10_std: f64,
    /// Std of IR R@1.
    pub ir_r1_std: f64,
    /// Std of IR R@5.
    pub ir_r5_std: f64,
    /// Std of IR R@10.
    pub ir_r10_std: f64,
    /// Number of seeds averaged.
    pub seeds: usize,
    /// Config profile.
    pub profile: String,
    /// Dataset name.
    pub dataset: String,
    /// Image encoder identifier.
    pub image_encoder: String,
    /// Text encoder identifier.
    pub text_encoder: String,
    /// For a distilled set evaluated with another image encoder than it
    /// was distilled with (cross-architecture): that encoder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distilled_with: Option<String>,
    /// Side of the images in pixels that the image encoder saw (absent in
    /// rows written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_size: Option<u32>,
    /// For a distilled set: `pixels` or `features` (a frozen backbone's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub space: Option<String>,
    /// How the students were trained when that was chosen on the
    /// validation split (e.g. `lr ×3, momentum 0.9, 50 epochs`, or the
    /// chosen expert epoch for the full data), with the validation score.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub student: Option<String>,
}

impl ResultRow {
    /// A row from recall statistics and its labels.
    pub fn new(
        method: &str,
        pairs: Option<usize>,
        stats: &RecallStats,
        profile: &str,
        dataset: &str,
        image_encoder: &str,
        text_encoder: &str,
    ) -> Self {
        let (m, s) = (stats.mean, stats.std);
        ResultRow {
            method: method.into(),
            pairs,
            tr_r1: m.tr_r1,
            tr_r5: m.tr_r5,
            tr_r10: m.tr_r10,
            ir_r1: m.ir_r1,
            ir_r5: m.ir_r5,
            ir_r10: m.ir_r10,
            tr_r1_std: s.tr_r1,
            tr_r5_std: s.tr_r5,
            tr_r10_std: s.tr_r10,
            ir_r1_std: s.ir_r1,
            ir_r5_std: s.ir_r5,
            ir_r10_std: s.ir_r10,
            seeds: stats.seeds,
            profile: profile.into(),
            dataset: dataset.into(),
            image_encoder: image_encoder.into(),
            text_encoder: text_encoder.into(),
            distilled_with: None,
            image_size: None,
            space: None,
            student: None,
        }
    }

    /// Marks a cross-architecture row: the set was distilled with image
    /// encoder `arch` (`None` leaves the row as it is).
    pub fn distilled_with(mut self, arch: Option<String>) -> Self {
        self.distilled_with = arch;
        self
    }

    /// Records the image size the encoder saw.
    pub fn at_size(mut self, image_size: u32) -> Self {
        self.image_size = Some(image_size);
        self
    }

    /// Records the space of a distilled set (`pixels`, `features`).
    pub fn in_space(mut self, space: crate::config::SynthSpace) -> Self {
        self.space = Some(space.name().to_string());
        self
    }

    /// Records how the students were trained (chosen on val).
    pub fn with_student(mut self, student: Option<String>) -> Self {
        self.student = student;
        self
    }

    /// The row's recall as mean ± std statistics.
    pub fn stats(&self) -> RecallStats {
        RecallStats {
            mean: Recall::from_values([
                self.tr_r1,
                self.tr_r5,
                self.tr_r10,
                self.ir_r1,
                self.ir_r5,
                self.ir_r10,
            ]),
            std: Recall::from_values([
                self.tr_r1_std,
                self.tr_r5_std,
                self.tr_r10_std,
                self.ir_r1_std,
                self.ir_r5_std,
                self.ir_r10_std,
            ]),
            seeds: self.seeds,
        }
    }
}

/// Reads `dir/results.json` (an empty list when absent).
pub fn read_results(dir: &Path) -> Result<Vec<ResultRow>> {
    let path = dir.join("results.json");
    if !path.exists() {
        return Ok(Vec::new());
    }
    crate::io::read_json(&path)
}

/// Appends `row` to `dir/results.json` (written atomically).
pub fn append_result(dir: &Path, row: &ResultRow) -> Result<()> {
    let mut rows = read_results(dir)?;
    rows.push(row.clone());
    crate::io::write_json(&dir.join("results.json"), &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_are_mean_and_std() {
        let a = Recall::from_values([10.0; 6]);
        let b = Recall::from_values([20.0; 6]);
        let s = RecallStats::from_runs(&[a, b]).unwrap();
        assert_eq!(s.mean.tr_r1, 15.0);
        assert_eq!(s.std.ir_r10, 5.0);
        assert!(RecallStats::from_runs(&[]).is_err());
    }
}
