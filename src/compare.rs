//! Stage-2 options side by side at equal storage: plain bi-trajectory
//! matching, + LoRS's learned similarity, + RepBlend's blended students,
//! and both, each distilled from the same experts and evaluated by the same
//! protocol as every other method (students chosen on val when
//! `eval.student_grid` is set, test read once per set).
//!
//! A storage budget of N pairs is the floats of N plain pairs (pixels or
//! features, and text embeddings). A set that learns a similarity spends
//! some of them on its matrix, so it gets the largest number of pairs that
//! fits the same budget ([`pairs_at_equal_storage`]): N − 1 for 32-px pixels
//! at rank 10, as LoRS's authors compare, N − 2 for 1280-d features.
//!
//! Each (option, budget) lives in `dir/compare/<option>-<budget>/` (its
//! checkpoint, set, `config.toml`, `results.json` and, for a pixel set, the
//! export `distilled/` with each pair's nearest real captions and learned
//! partners), so an interrupted comparison resumes
//! where it stopped and a finished one is read back; the table goes to
//! `dir/comparison.md` and the rows to `dir/comparison.json`.

use crate::config::{DistillConfig, InitKind, LorsConfig, SynthSpace};
use crate::display::export::DEFAULT_NEAREST;
use crate::display::export_distilled;
use crate::error::{Error, Result};
use crate::evaluate::results::{append_result, read_results, RecallStats};
use crate::experiment::Experiment;
use crate::pipeline::{
    distill, distilled_file, distilled_method, evaluate_distilled, finished_experts, row,
    train_experts, CHECKPOINT_FILE, FEATURES_CHECKPOINT_FILE,
};
use crate::progress::log_line;
use crate::stage1::sgd::TowerLr;
use crate::stage2::distilled_set::DistilledSet;
use crate::stage2::distiller::Distiller;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The folder under a run folder that holds one subfolder per compared set.
pub const COMPARE_DIR: &str = "compare";
/// The comparison's table (Markdown) in the run folder.
pub const COMPARISON_FILE: &str = "comparison.md";
/// The comparison's rows (JSON) in the run folder.
pub const COMPARISON_JSON: &str = "comparison.json";

/// One way to run stage 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageTwoOption {
    /// Bi-trajectory matching as the paper does it.
    Plain,
    /// With a learned similarity (`distill.similarity`).
    Lors,
    /// With blended students (`distill.blend`).
    Blend,
    /// With both.
    LorsBlend,
}

impl StageTwoOption {
    /// All four, plain first.
    pub const ALL: [StageTwoOption; 4] = [
        StageTwoOption::Plain,
        StageTwoOption::Lors,
        StageTwoOption::Blend,
        StageTwoOption::LorsBlend,
    ];

    /// `plain`, `lors`, `blend` or `lors_blend` (folder names, the command
    /// line).
    pub fn name(self) -> &'static str {
        match self {
            StageTwoOption::Plain => "plain",
            StageTwoOption::Lors => "lors",
            StageTwoOption::Blend => "blend",
            StageTwoOption::LorsBlend => "lors_blend",
        }
    }

    /// How a table names it.
    pub fn title(self) -> &'static str {
        match self {
            StageTwoOption::Plain => "bi-trajectory matching",
            StageTwoOption::Lors => "+ LoRS similarity",
            StageTwoOption::Blend => "+ blending",
            StageTwoOption::LorsBlend => "+ LoRS + blending",
        }
    }

    /// Whether the set learns a similarity.
    pub fn learns_similarity(self) -> bool {
        matches!(self, StageTwoOption::Lors | StageTwoOption::LorsBlend)
    }

    /// Whether the students blend.
    pub fn blends(self) -> bool {
        matches!(self, StageTwoOption::Blend | StageTwoOption::LorsBlend)
    }

    /// `cfg` with this option's similarity and blending, at `pairs` pairs.
    /// The similarity and blending settings in `cfg` are kept where the
    /// option uses them (the defaults where `cfg` has none) and removed
    /// where it does not.
    pub fn apply(self, cfg: &DistillConfig, pairs: usize) -> DistillConfig {
        let similarity = self
            .learns_similarity()
            .then(|| cfg.similarity.unwrap_or_default());
        let blend = self.blends().then(|| cfg.blend.unwrap_or_default());
        DistillConfig {
            pairs,
            similarity,
            blend,
            ..cfg.clone()
        }
    }
}

impl std::fmt::Display for StageTwoOption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for StageTwoOption {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|o| o.name() == s)
            .ok_or_else(|| {
                Error::Config(format!(
                    "unknown stage-2 option {s:?}: expected plain, lors, blend or lors_blend"
                ))
            })
    }
}

/// The most pairs whose floats, with a similarity of `similarity`'s form
/// over them (none: `None`), fit in the floats of `budget` plain pairs of
/// `floats_per_pair` each. The two learned rates every set stores are left
/// out on both sides.
pub fn pairs_at_equal_storage(
    budget: usize,
    floats_per_pair: usize,
    similarity: Option<&LorsConfig>,
) -> usize {
    let room = budget * floats_per_pair;
    (0..=budget)
        .rev()
        .find(|&n| n * floats_per_pair + similarity.map_or(0, |s| s.num_floats(n)) <= room)
        .unwrap_or(0)
}

/// The floats one pair of `exp` stores in `space`: an image (pixels, or the
/// frozen backbone's features) and a text embedding.
pub fn floats_per_pair(exp: &Experiment, space: SynthSpace) -> Result<usize> {
    let lr = TowerLr::from(&exp.config.experts);
    let one = DistilledSet::init_in(exp, space, 1, InitKind::Real, InitKind::Real, lr, 0)?;
    Ok(one.images.elem_count() + one.texts.elem_count())
}

/// One compared set: what it is, what it stores and how it retrieves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComparedSet {
    /// The stage-2 option.
    pub option: StageTwoOption,
    /// The storage budget, in plain pairs.
    pub budget: usize,
    /// Pairs the set holds within that budget.
    pub pairs: usize,
    /// Floats the set stores (pairs, similarity and the two learned rates).
    pub floats: usize,
    /// Pixels or features.
    pub space: SynthSpace,
    /// Test recall, mean ± std over `eval.num_seeds` students.
    pub stats: RecallStats,
    /// The students' setting chosen on val, with its score.
    pub student: Option<String>,
    /// Seconds of distillation in this call (`None` when a finished set
    /// was loaded).
    pub distill_seconds: Option<f64>,
    /// Outer iterations of the distillation.
    pub iterations: usize,
}

/// What [`compare`] runs: the options at each storage budget.
#[derive(Debug, Clone, PartialEq)]
pub struct CompareOptions {
    /// The options, in the table's order.
    pub options: Vec<StageTwoOption>,
    /// Storage budgets in plain pairs (e.g. 100 and 200).
    pub budgets: Vec<usize>,
}

impl Default for CompareOptions {
    /// All four options at a budget of 100 pairs.
    fn default() -> Self {
        CompareOptions {
            options: StageTwoOption::ALL.to_vec(),
            budgets: vec![100],
        }
    }
}

/// The subfolder of `dir` that holds `option` at `budget`.
pub fn compared_dir(dir: &Path, option: StageTwoOption, budget: usize) -> PathBuf {
    dir.join(COMPARE_DIR).join(format!("{option}-{budget}"))
}

/// Distils and evaluates every option at every budget of `opts` from the
/// experts in `dir` (trained first when missing), in `distill.space`, and
/// writes the table and rows beside them. Finished sets and their test rows
/// are read back instead of made again.
pub fn compare(
    exp: &Experiment,
    dir: &Path,
    opts: &CompareOptions,
    progress: bool,
) -> Result<Vec<ComparedSet>> {
    if opts.options.is_empty() || opts.budgets.iter().any(|&b| b < 2) || opts.budgets.is_empty() {
        return Err(Error::Config(format!(
            "a comparison needs at least one option and budgets of 2 pairs or more (got {:?} at {:?})",
            opts.options, opts.budgets
        )));
    }
    let experts = match finished_experts(exp, dir) {
        Some(ts) => ts,
        None => train_experts(exp, dir, progress)?,
    };
    let space = exp.config.distill.space;
    let per_pair = floats_per_pair(exp, space)?;
    let mut rows = Vec::new();
    for &budget in &opts.budgets {
        for &option in &opts.options {
            let base = option.apply(&exp.config.distill, budget);
            let pairs = pairs_at_equal_storage(budget, per_pair, base.similarity.as_ref());
            let cfg = DistillConfig { pairs, ..base };
            let sub = compared_dir(dir, option, budget);
            std::fs::create_dir_all(&sub).map_err(|e| Error::io(&sub, e))?;
            let name = format!("{} at {budget} pairs of storage", option.title());
            log_line(&format!(
                "compare: {name}: {pairs} pairs ({} floats per pair) → {}",
                per_pair,
                sub.display()
            ));
            let checkpoint = match space {
                SynthSpace::Pixels => CHECKPOINT_FILE,
                SynthSpace::Features => FEATURES_CHECKPOINT_FILE,
            };
            let d = Distiller::with_config(exp, experts.clone(), cfg)?
                .with_checkpoint(sub.join(checkpoint))?;
            let started = (!d.is_done()).then(Instant::now);
            let d = distill(d, &name, progress)?;
            let distill_seconds = started.map(|t| t.elapsed().as_secs_f64());
            let set_path = sub.join(distilled_file(space));
            d.set.save(&set_path)?;
            // the set's own configuration, so that `export`, `eval` and
            // `distill` with --out on this folder see the set as it was made
            let mut own = exp.config.clone();
            own.distill = d.config().clone();
            let config_path = sub.join("config.toml");
            std::fs::write(&config_path, own.to_toml()).map_err(|e| Error::io(&config_path, e))?;
            let pictures = sub.join("distilled");
            if space == SynthSpace::Pixels && !pictures.exists() {
                let summary = export_distilled(&d.set, exp, &pictures, DEFAULT_NEAREST)?;
                log_line(&format!(
                    "compare: {name}: pairs with their nearest real captions{} → {summary}",
                    if d.set.similarity.is_some() {
                        " and learned partners"
                    } else {
                        ""
                    }
                ));
            }
            let method = distilled_method(space);
            let earlier = read_results(&sub)?.into_iter().rev().find(|r| {
                r.method == method && r.pairs == Some(pairs) && r.profile == exp.config.profile
            });
            let (stats, student) = match earlier {
                Some(r) => {
                    log_line(&format!(
                        "compare: {name}: test recall read back from {}",
                        sub.join("results.json").display()
                    ));
                    (r.stats(), r.student)
                }
                None => {
                    let label = format!("{method} ({option})");
                    let (ev, _) = evaluate_distilled(exp, &d.set, &label)?;
                    let r = row(exp, method, Some(pairs), &ev.stats)
                        .in_space(space)
                        .with_student(ev.student.clone());
                    append_result(&sub, &r)?;
                    (ev.stats, ev.student)
                }
            };
            rows.push(ComparedSet {
                option,
                budget,
                pairs,
                floats: d.set.num_floats(),
                space,
                stats,
                student,
                distill_seconds,
                iterations: d.iteration,
            });
            write_comparison(exp, dir, &rows)?;
        }
    }
    let path = dir.join(COMPARISON_FILE);
    log_line(&format!("comparison → {}", path.display()));
    println!("{}", comparison_markdown(exp, &rows));
    Ok(rows)
}

fn write_comparison(exp: &Experiment, dir: &Path, rows: &[ComparedSet]) -> Result<()> {
    crate::io::write_json(&dir.join(COMPARISON_JSON), &rows.to_vec())?;
    let path = dir.join(COMPARISON_FILE);
    std::fs::write(&path, comparison_markdown(exp, rows)).map_err(|e| Error::io(&path, e))
}

/// The comparison of `rows` as Markdown: a table of every recall (mean ±
/// std), then, per budget, each option's TR and IR R@1 against plain
/// matching's and whether the difference exceeds the sum of the two std's.
pub fn comparison_markdown(exp: &Experiment, rows: &[ComparedSet]) -> String {
    let mut s = format!(
        "Stage-2 options at equal storage: {} ({} profile), {}; test recall of {} students \
         per set, mean ± std.\n\n",
        exp.dataset.name,
        exp.config.profile,
        exp.model.describe(),
        exp.config.eval.num_seeds
    );
    s.push_str(&comparison_table(rows));
    s.push('\n');
    s.push_str(&verdicts(rows));
    s
}

/// The recall table of `rows` (Markdown).
pub fn comparison_table(rows: &[ComparedSet]) -> String {
    let mut s = String::from(
        "| stage 2 | storage (pairs) | pairs | floats (KiB) | TR R@1 | TR R@5 | TR R@10 | IR R@1 | IR R@5 | IR R@10 | students (chosen on val) |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let (m, d) = (r.stats.mean.values(), r.stats.std.values());
        let cells: Vec<String> = (0..6)
            .map(|i| format!("{:.1} ± {:.1}", m[i], d[i]))
            .collect();
        s.push_str(&format!(
            "| {} | {} | {} | {} ({:.0}) | {} | {} |\n",
            r.option.title(),
            r.budget,
            r.pairs,
            r.floats,
            (r.floats * std::mem::size_of::<f32>()) as f64 / 1024.0,
            cells.join(" | "),
            r.student.as_deref().unwrap_or("fixed")
        ));
    }
    s
}

/// Per budget, each option's TR R@1 and IR R@1 against plain matching's:
/// the difference and whether it is larger than the sum of the two std's.
pub fn verdicts(rows: &[ComparedSet]) -> String {
    let mut s = String::new();
    let mut budgets: Vec<usize> = rows.iter().map(|r| r.budget).collect();
    budgets.dedup();
    for b in budgets {
        let Some(plain) = rows
            .iter()
            .find(|r| r.budget == b && r.option == StageTwoOption::Plain)
        else {
            continue;
        };
        for r in rows
            .iter()
            .filter(|r| r.budget == b && r.option != StageTwoOption::Plain)
        {
            let against = |name: &str, pick: fn(&crate::model::retrieval::Recall) -> f64| {
                let diff = pick(&r.stats.mean) - pick(&plain.stats.mean);
                let noise = pick(&r.stats.std) + pick(&plain.stats.std);
                let verdict = if diff > noise {
                    "better beyond the two std's"
                } else if -diff > noise {
                    "worse beyond the two std's"
                } else {
                    "within the two std's"
                };
                format!("{name} {diff:+.1} (std's sum {noise:.1}, {verdict})")
            };
            s.push_str(&format!(
                "- {b} pairs of storage, {} against plain matching: {}; {}\n",
                r.option.title(),
                against("TR R@1", |x| x.tr_r1),
                against("IR R@1", |x| x.ir_r1),
            ));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BlendConfig;

    #[test]
    fn equal_storage_takes_one_pair_for_a_rank_10_similarity_of_small_pixel_pairs() {
        let lors = LorsConfig::default();
        // 32-px pixels and a 384-d text: 3456 floats a pair, 21 a pair of similarity
        assert_eq!(pairs_at_equal_storage(100, 3456, Some(&lors)), 99);
        assert_eq!(pairs_at_equal_storage(200, 3456, Some(&lors)), 198);
        assert_eq!(pairs_at_equal_storage(100, 3456, None), 100);
        // 1280-d features and a 384-d text: 99 pairs would be 415 floats over
        assert_eq!(pairs_at_equal_storage(100, 1664, Some(&lors)), 98);
        // a full matrix of 100 pairs costs 10 000 floats
        let full = LorsConfig { full: true, ..lors };
        assert_eq!(pairs_at_equal_storage(100, 3456, Some(&full)), 97);
    }

    #[test]
    fn verdicts_set_each_option_against_plain_by_the_sum_of_the_stds() {
        use crate::model::retrieval::Recall;
        let row = |option, tr: f64, ir: f64, std: f64| ComparedSet {
            option,
            budget: 100,
            pairs: 100,
            floats: 1,
            space: SynthSpace::Pixels,
            stats: RecallStats {
                mean: Recall::from_values([tr, 0.0, 0.0, ir, 0.0, 0.0]),
                std: Recall::from_values([std, 0.0, 0.0, std, 0.0, 0.0]),
                seeds: 3,
            },
            student: None,
            distill_seconds: None,
            iterations: 1,
        };
        let rows = [
            row(StageTwoOption::Plain, 8.0, 4.0, 0.5),
            // TR +1.5 against 1.0 of noise; IR +0.5 against 1.0
            row(StageTwoOption::Lors, 9.5, 4.5, 0.5),
            // TR −2.0 against 0.6
            row(StageTwoOption::Blend, 6.0, 4.0, 0.1),
        ];
        let v = verdicts(&rows);
        let lines: Vec<&str> = v.lines().collect();
        assert_eq!(lines.len(), 2, "{v}");
        assert!(lines[0].contains("+ LoRS similarity"));
        assert!(
            lines[0].contains("TR R@1 +1.5 (std's sum 1.0, better beyond the two std's)"),
            "{v}"
        );
        assert!(
            lines[0].contains("IR R@1 +0.5 (std's sum 1.0, within the two std's)"),
            "{v}"
        );
        assert!(
            lines[1].contains("TR R@1 -2.0 (std's sum 0.6, worse beyond the two std's)"),
            "{v}"
        );
        // no plain row at a budget: nothing to set against
        assert!(verdicts(&rows[1..]).is_empty());
    }

    #[test]
    fn options_parse_and_set_what_they_name() {
        let cfg = crate::config::Config::profile("smoke").unwrap().distill;
        for o in StageTwoOption::ALL {
            assert_eq!(o.name().parse::<StageTwoOption>().unwrap(), o);
            let c = o.apply(&cfg, 7);
            assert_eq!(c.pairs, 7);
            assert_eq!(c.similarity.is_some(), o.learns_similarity());
            assert_eq!(c.blend.is_some(), o.blends());
        }
        assert!("lors+blend".parse::<StageTwoOption>().is_err());
        let tuned = DistillConfig {
            similarity: Some(LorsConfig {
                rank: 4,
                ..Default::default()
            }),
            blend: Some(BlendConfig { alpha: 0.4 }),
            ..cfg
        };
        assert_eq!(
            StageTwoOption::LorsBlend
                .apply(&tuned, 9)
                .similarity
                .unwrap()
                .rank,
            4
        );
        assert_eq!(
            StageTwoOption::Blend.apply(&tuned, 9).blend.unwrap().alpha,
            0.4
        );
        assert!(StageTwoOption::Plain.apply(&tuned, 9).similarity.is_none());
    }
}
