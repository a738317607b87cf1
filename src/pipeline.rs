//! The pipeline's steps, shared by the command line (`vl-distill`) and the
//! notebooks' [`Workspace`](crate::notebook::Workspace): train the experts,
//! distil, evaluate a method (the distilled set, a coreset, the full data),
//! and the whole run with its report.
//!
//! Each step takes an [`Experiment`] and a folder. Progress and log lines go
//! through [`log_line`] (stderr, or stdout under the notebook kernel);
//! results are printed on stdout. With `progress` off, long steps print a
//! plain log line per epoch or per `distill.log_every` iterations instead of
//! a bar.
//!
//! A run folder holds:
//!
//! | file | written by |
//! |---|---|
//! | `expert_*.safetensors` | [`train_experts`] |
//! | `distill_checkpoint.safetensors` | [`distill`] (resumable) |
//! | `distilled.safetensors`, `distilled_before.png`, `distilled_after.png`, `distilled/` | [`distill_into`] |
//! | `results.json` | [`evaluate_method`] (one row appended per call) |
//! | `report.md` | [`run`] |
//! | `tune.json`, `tuned.toml` | [`tune_into`] |

use crate::config::{Config, DataSource, DistillConfig, PixelOptimizer, SynthSpace, TextConfig};
use crate::data::prepare::{self, PrepareOptions};
use crate::data::Split;
use crate::display::comparison::ComparisonTable;
use crate::display::export::DEFAULT_NEAREST;
use crate::display::{distilled_grid, export_distilled};
use crate::error::{Error, Result};
use crate::evaluate::coreset::{self, CoresetMethod};
use crate::evaluate::protocol::{evaluate_experts_at, Evaluator};
use crate::evaluate::results::{append_result, RecallStats, ResultRow};
use crate::evaluate::student_settings::{choose_on_val, val_score, StudentSetting};
use crate::experiment::Experiment;
use crate::model::retrieval::Recall;
use crate::progress::log_line;
use crate::stage1::expert::ExpertTrainer;
use crate::stage1::sgd::{describe_epoch, SgdConfig, TowerLr};
use crate::stage1::trajectory::{self, Trajectory};
use crate::stage2::distilled_set::DistilledSet;
use crate::stage2::distiller::Distiller;
use crate::tune;
use candle_core::{DType, Device};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The file name of the distilled set in a run folder.
pub const DISTILLED_FILE: &str = "distilled.safetensors";
/// The feature-space distilled set's file (frozen backbone).
pub const DISTILLED_FEATURES_FILE: &str = "distilled_features.safetensors";
/// The feature-space distillation's checkpoint.
pub const FEATURES_CHECKPOINT_FILE: &str = "distill_features_checkpoint.safetensors";
/// The file name of the distillation checkpoint in a run folder.
pub const CHECKPOINT_FILE: &str = "distill_checkpoint.safetensors";
/// The file name of the run report in a run folder.
pub const REPORT_FILE: &str = "report.md";
/// The file [`tune_into`] writes the winner's whole configuration to.
pub const TUNED_FILE: &str = "tuned.toml";
/// The file [`tune_into`] writes every score to.
pub const TUNE_LOG_FILE: &str = "tune.json";

/// The finished experts of `exp`'s setup in `dir`: experts 0 to
/// `experts.num_experts` − 1, each trained on this data with this model,
/// text encoder and expert settings (a folder may hold more, from a run
/// with more experts); `None` when any is missing.
pub fn finished_experts(exp: &Experiment, dir: &Path) -> Option<Vec<Trajectory>> {
    let wanted = exp.config.experts.num_experts;
    let ts: Vec<Trajectory> = trajectory::load_all(dir, &exp.device)
        .ok()?
        .into_iter()
        .filter(|t| t.meta.expert < wanted)
        .collect();
    let all = ts.len() == wanted && ts.iter().enumerate().all(|(k, t)| t.meta.expert == k);
    (all && ts.iter().all(|t| t.meta.complete && t.meta.fits(exp))).then_some(ts)
}

/// Stage 1 into `dir`: trains the experts that are not finished there
/// (resuming an interrupted one) and returns all trajectories.
pub fn train_experts(exp: &Experiment, dir: &Path, progress: bool) -> Result<Vec<Trajectory>> {
    let t = Instant::now();
    let e = &exp.config.experts;
    log_line(&format!(
        "stage 1: {} experts × {} epochs on {} → {}",
        e.num_experts,
        e.epochs,
        describe_epoch(&exp.train, e.captions_per_image),
        dir.display()
    ));
    let mut trainer = ExpertTrainer::new(exp)?
        .with_output(dir)
        .with_progress(progress);
    if progress {
        trainer.run()?;
    } else {
        // no bar, but still a line per epoch
        while let Some(r) = trainer.step()? {
            log_line(&r.to_string());
        }
    }
    for t in trainer.trajectories() {
        if let Some(Some(v)) = t.meta.val_recall.last() {
            log_line(&format!("expert {}: final val {v}", t.meta.expert));
        }
    }
    log_line(&format!(
        "stage 1 done in {:.1} s",
        t.elapsed().as_secs_f64()
    ));
    Ok(trainer.trajectories().to_vec())
}

/// Runs the distiller `d` (built from an experiment's `distill` settings,
/// usually with a checkpoint to resume from) to its last iteration; a
/// finished one is returned as it is. `name` labels the log lines.
pub fn distill(mut d: Distiller, name: &str, progress: bool) -> Result<Distiller> {
    let cfg = d.config().clone();
    let place = d
        .checkpoint()
        .map(|p| format!(" ({})", p.display()))
        .unwrap_or_default();
    if d.is_done() {
        log_line(&format!(
            "{name}: finished distillation loaded ({} iterations){place}",
            d.iteration
        ));
        return Ok(d);
    }
    let t = Instant::now();
    let adam = d.set.space == SynthSpace::Pixels && cfg.pixel_optimizer == PixelOptimizer::Adam;
    let mut options = Vec::new();
    if adam {
        options.push(format!("pixels on Adam (step {})", cfg.lr_images));
    }
    match &cfg.similarity {
        Some(l) if l.full => options.push(format!("a learned full similarity (LoRS, lr {})", l.lr)),
        Some(l) => options.push(format!(
            "a learned rank-{} similarity (LoRS, alpha {}, lr {})",
            l.rank, l.alpha, l.lr
        )),
        None => {}
    }
    if let Some(b) = &cfg.blend {
        options.push(format!("blended students (RepBlend, alpha {})", b.alpha));
    }
    if d.iteration > 0 {
        options.push(format!("resuming at iteration {}", d.iteration));
    }
    let options: String = options.iter().map(|o| format!(", {o}")).collect();
    log_line(&format!(
        "{name}: {} pairs, {} iterations × {} student steps, {} experts{options}{place}",
        cfg.pairs,
        cfg.iterations,
        cfg.syn_steps,
        d.num_experts(),
    ));
    d = d.with_progress(progress);
    if progress {
        d.run()?;
    } else {
        // no bar, but still a line every distill.log_every iterations
        while !d.is_done() {
            let r = d.step()?;
            if (r.iteration + 1).is_multiple_of(cfg.log_every) {
                log_line(&r.to_string());
            }
        }
    }
    log_line(&format!(
        "{name}: done in {:.1} s; learned α image {:.4}, text {:.4}",
        t.elapsed().as_secs_f64(),
        d.set.lr().image,
        d.set.lr().text
    ));
    Ok(d)
}

/// The file a distilled set of `space` is kept in.
pub fn distilled_file(space: SynthSpace) -> &'static str {
    match space {
        SynthSpace::Pixels => DISTILLED_FILE,
        SynthSpace::Features => DISTILLED_FEATURES_FILE,
    }
}

/// The `method` of a distilled set of `space` in `results.json`:
/// `distilled` (pixels) or `distilled_features`.
pub fn distilled_method(space: SynthSpace) -> &'static str {
    match space {
        SynthSpace::Pixels => "distilled",
        SynthSpace::Features => "distilled_features",
    }
}

/// Stage 2 from the finished experts in `dir`, in the configured space
/// (`distill.space`): the set goes to `dir/distilled.safetensors` (pixels,
/// pictures beside it: [`write_pictures`]) or
/// `dir/distilled_features.safetensors`.
pub fn distill_into(exp: &Experiment, dir: &Path, progress: bool) -> Result<DistilledSet> {
    distill_space_into(exp, dir, exp.config.distill.space, progress)
}

/// [`distill_into`] in `space` whatever `distill.space` says.
pub fn distill_space_into(
    exp: &Experiment,
    dir: &Path,
    space: SynthSpace,
    progress: bool,
) -> Result<DistilledSet> {
    let experts = trajectory::load_all(dir, &exp.device)?;
    let cfg = DistillConfig {
        space,
        ..exp.config.distill.clone()
    };
    let (checkpoint, name) = match space {
        SynthSpace::Pixels => (CHECKPOINT_FILE, "stage 2"),
        SynthSpace::Features => (FEATURES_CHECKPOINT_FILE, "stage 2 (features)"),
    };
    let d = Distiller::with_config(exp, experts, cfg)?.with_checkpoint(dir.join(checkpoint))?;
    let d = distill(d, name, progress)?;
    let path = dir.join(distilled_file(space));
    d.set.save(&path)?;
    log_line(&format!("distilled set → {}", path.display()));
    if space == SynthSpace::Pixels {
        let after = format!("after {} iterations", d.iteration);
        write_pictures(exp, dir, &d.set, &after, DEFAULT_NEAREST)?;
    }
    Ok(d.set)
}

/// The distilled set of the run in `dir` (pixels).
pub fn load_distilled(exp: &Experiment, dir: &Path) -> Result<DistilledSet> {
    load_distilled_space(exp, dir, SynthSpace::Pixels)
}

/// The distilled set of `space` of the run in `dir`.
pub fn load_distilled_space(
    exp: &Experiment,
    dir: &Path,
    space: SynthSpace,
) -> Result<DistilledSet> {
    let path = dir.join(distilled_file(space));
    if !path.exists() {
        return Err(Error::Config(format!(
            "no distilled set at {}: run `vl-distill distill` first",
            path.display()
        )));
    }
    DistilledSet::load(&path, &exp.device)
}

/// Pictures of the distilled set `set` in `dir`: `distilled_before.png`
/// (the initial set, made again from the seed), `distilled_after.png`
/// (`set`) and the export folder `distilled/` with the `nearest` real
/// captions of each pair. `after` says what `set` is.
pub fn write_pictures(
    exp: &Experiment,
    dir: &Path,
    set: &DistilledSet,
    after: &str,
    nearest: usize,
) -> Result<()> {
    let d = &exp.config.distill;
    let kind = |k: crate::config::InitKind| format!("{k:?}").to_lowercase();
    let initial = DistilledSet::init_in(
        exp,
        SynthSpace::Pixels,
        d.pairs,
        d.init_images,
        d.init_texts,
        TowerLr::from(&exp.config.experts),
        exp.config.seed,
    )?;
    let before_png = dir.join("distilled_before.png");
    let title = format!(
        "before distillation: {} pairs (images {}, texts {}); captions: nearest real",
        initial.len(),
        kind(d.init_images),
        kind(d.init_texts)
    );
    distilled_grid(&initial, exp, &title)?.save_png(&before_png)?;
    let after_png = dir.join("distilled_after.png");
    let title = format!(
        "{after}: {} pairs, lr image {:.4} text {:.4}; captions: nearest real",
        set.len(),
        set.lr().image,
        set.lr().text
    );
    distilled_grid(set, exp, &title)?.save_png(&after_png)?;
    let summary = export_distilled(set, exp, &dir.join("distilled"), nearest)?;
    log_line(&format!(
        "pictures: {} and {}; pairs with their {nearest} nearest real captions: {summary}",
        before_png.display(),
        after_png.display()
    ));
    Ok(())
}

/// A method's test recall and, when its students' settings were chosen on
/// the validation split, what was chosen.
#[derive(Debug, Clone)]
pub struct Evaluated {
    /// Test recall, mean ± std over the seeds.
    pub stats: RecallStats,
    /// The chosen setting and its validation score (`None` under the fixed
    /// protocol).
    pub student: Option<String>,
}

/// Test recall of fresh models trained on `pairs` with learning rates `lr`
/// by the experiment's small-set protocol, with a line per seed; prints
/// `label (n pairs): stats`. With `eval.student_grid` set, the students'
/// settings (rate scale, momentum, epochs) are first chosen by validation
/// recall over the grid ([`choose_on_val`]), then the chosen one is tested
/// once, on the students the search kept for it when it could keep them
/// (the same models fresh ones would be).
pub fn evaluate_pairs(
    exp: &Experiment,
    pairs: crate::data::CaptionedImages,
    lr: TowerLr,
    label: &str,
) -> Result<Evaluated> {
    let c = &exp.config.eval;
    let n = pairs.num_pairs();
    let (setting, student, trained) = match &c.student_grid {
        None => (StudentSetting::plain(c.small_set_epochs), None, None),
        Some(grid) => {
            let finals = match grid.screened_finalists(c.num_seeds) {
                Some(k) => format!(
                    ", the {k} best rate and momentum pairs on the first seed go on to all seeds"
                ),
                None => String::new(),
            };
            log_line(&format!(
                "select {label} on val: {} student settings × {} seeds{finals} (α image {:.4}, text {:.4})",
                grid.len(),
                c.num_seeds,
                lr.image,
                lr.text
            ));
            let t = Instant::now();
            let choice = choose_on_val(exp, &pairs, lr, grid, |s, st| {
                log_line(&format!(
                    "  val {s}: score {:.1} (TR@1 {:.1}, IR@1 {:.1}; {} seed{})",
                    val_score(st),
                    st.mean.tr_r1,
                    st.mean.ir_r1,
                    st.seeds,
                    if st.seeds == 1 { "" } else { "s" }
                ))
            })?;
            let note = format!(
                "{} (val score {:.1} of {} settings)",
                choice.chosen,
                val_score(&choice.val),
                choice.tried.len()
            );
            log_line(&format!(
                "  chosen on val: {note}; {} student runs in {:.1} s",
                choice.student_runs,
                t.elapsed().as_secs_f64()
            ));
            (choice.chosen, Some(note), choice.students)
        }
    };
    let tested = if trained.is_some() {
        "the students the search trained for it"
    } else {
        "fresh students"
    };
    let against = if pairs.similarity.is_some() {
        ", trained against the set's learned similarity"
    } else {
        ""
    };
    log_line(&format!(
        "eval {label}: {n} pairs, {} seeds, {setting}, {tested} (α image {:.4}, text {:.4}){against}",
        c.num_seeds, lr.image, lr.text
    ));
    let mut ev = setting.evaluator(exp, pairs, lr, Split::Test);
    let mut trained = trained.into_iter().flatten();
    loop {
        let report = match trained.next() {
            Some(student) => ev.step_trained(&student)?,
            None => ev.step()?,
        };
        let Some(r) = report else { break };
        log_line(&format!(
            "  seed {}: test {} ({:.1} s)",
            r.seed_index, r.recall, r.seconds
        ));
    }
    let stats = ev.stats()?;
    println!("{label} ({n} pairs): {stats}");
    Ok(Evaluated { stats, student })
}

/// Test recall of a distilled set, trained with its learned α. With an
/// image encoder other than the one it was distilled with
/// (cross-architecture), the image tower trains with the experiment's
/// expert rate instead ([`DistilledSet::student_lr`]); the architecture it
/// was distilled with is returned beside the recall then.
pub fn evaluate_distilled(
    exp: &Experiment,
    set: &DistilledSet,
    label: &str,
) -> Result<(Evaluated, Option<String>)> {
    set.check_fits(exp)?;
    let (lr, source) = set.student_lr(exp);
    if let Some(theirs) = &source {
        log_line(&format!(
            "{label}: cross-architecture: distilled with {theirs}, students are {} \
             (image lr {} from experts.lr_image, learned text lr {:.4})",
            exp.config.model.image.architecture(),
            lr.image,
            lr.text
        ));
    }
    let evaluated = evaluate_pairs(exp, set.training_pairs(exp)?, lr, label)?;
    Ok((evaluated, source))
}

/// Test recall of a coreset of `m` real pairs chosen by `method`, trained
/// with the experts' learning rates; herding, k-center and forgetting use
/// `experts` (random needs none).
pub fn evaluate_coreset(
    exp: &Experiment,
    experts: &[Trajectory],
    method: CoresetMethod,
    m: usize,
) -> Result<Evaluated> {
    let c = &exp.config;
    let t = Instant::now();
    let set = coreset::select(method, &exp.train, &exp.model, experts, m, c.seed)?;
    log_line(&format!(
        "{} coreset: {m} pairs selected in {:.1} s",
        method.name(),
        t.elapsed().as_secs_f64()
    ));
    evaluate_pairs(exp, set, TowerLr::from(&c.experts), method.name())
}

/// The full-data upper bound: test recall of the experts (each one a model
/// trained on the full train split from its own seed) when given, else of
/// `eval.num_seeds` fresh models trained `eval.full_epochs` epochs. The
/// experts are tested at their final epoch, or, with `eval.student_grid`
/// set, at the epoch with the best mean validation score.
pub fn evaluate_full(exp: &Experiment, experts: Option<&[Trajectory]>) -> Result<Evaluated> {
    let c = &exp.config;
    let mut student = None;
    let stats = match experts {
        Some(ts) => {
            let last = ts.iter().map(|t| t.epochs.len()).min().unwrap_or(1) - 1;
            let epoch = match &c.eval.student_grid {
                None => last,
                Some(_) => {
                    log_line(&format!(
                        "select full data on val: epochs 1..={last} of the {} experts",
                        ts.len()
                    ));
                    let mut best = (last, f64::NEG_INFINITY);
                    for e in 1..=last {
                        let val = evaluate_experts_at(&exp.model, ts, e, &exp.val)?;
                        log_line(&format!(
                            "  val epoch {e}: score {:.1} (TR@1 {:.1}, IR@1 {:.1})",
                            val_score(&val),
                            val.mean.tr_r1,
                            val.mean.ir_r1
                        ));
                        if val_score(&val) > best.1 {
                            best = (e, val_score(&val));
                        }
                    }
                    student = Some(format!(
                        "expert epoch {} of {last} (val score {:.1})",
                        best.0, best.1
                    ));
                    best.0
                }
            };
            log_line(&format!(
                "eval full: the {} experts at epoch {epoch}",
                ts.len()
            ));
            evaluate_experts_at(&exp.model, ts, epoch, &exp.test)?
        }
        None => {
            log_line(&format!(
                "eval full: {} fresh seeds × {} epochs on all {} train pairs",
                c.eval.num_seeds,
                c.eval.full_epochs,
                exp.train.num_pairs()
            ));
            let sgd = SgdConfig {
                batch_size: c.eval.batch_size,
                ..SgdConfig::from(&c.experts)
            };
            let mut ev = Evaluator::new(
                exp.model.clone(),
                exp.train.clone(),
                exp.test.clone(),
                sgd,
                c.eval.full_epochs,
                c.eval.num_seeds,
                c.seed,
            );
            while let Some(r) = ev.step()? {
                log_line(&format!(
                    "  seed {}: test {} (loss {:.3}, {:.1} s)",
                    r.seed_index, r.recall, r.final_loss, r.seconds
                ));
            }
            ev.stats()?
        }
    };
    let chance = Recall::chance(exp.test.num_images(), exp.test.num_pairs());
    println!("full data ({} pairs): {stats}", exp.train.num_pairs());
    println!("chance:            {chance}");
    Ok(Evaluated { stats, student })
}

/// A `results.json` row for `stats` with `exp`'s labels.
pub fn row(exp: &Experiment, method: &str, pairs: Option<usize>, stats: &RecallStats) -> ResultRow {
    ResultRow::new(
        method,
        pairs,
        stats,
        &exp.config.profile,
        &exp.dataset.name,
        &exp.image_encoder(),
        &exp.text_encoder,
    )
    .at_size(exp.image_side() as u32)
}

/// What [`evaluate_method`] trains fresh students on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// The run's distilled set of this space (`distilled.safetensors`,
    /// `distilled_features.safetensors`), with its learned α.
    Distilled(SynthSpace),
    /// A coreset of this many real pairs.
    Coreset(CoresetMethod, usize),
    /// The full train split: the finished experts of the run when they
    /// match the experiment (unless `retrain`), else fresh models.
    Full {
        /// Train fresh models even when finished experts are there.
        retrain: bool,
    },
}

/// Evaluates `method` for the run in `dir` and appends its row to
/// `dir/results.json`.
pub fn evaluate_method(exp: &Experiment, dir: &Path, method: Method) -> Result<RecallStats> {
    let (row, stats) = match method {
        Method::Distilled(space) => {
            let set = load_distilled_space(exp, dir, space)?;
            let name = distilled_method(space);
            let (ev, source) = evaluate_distilled(exp, &set, name)?;
            let row = row(exp, name, Some(set.len()), &ev.stats)
                .distilled_with(source)
                .in_space(space)
                .with_student(ev.student);
            (row, ev.stats)
        }
        Method::Coreset(m, n) => {
            let experts = if m == CoresetMethod::Random {
                Vec::new()
            } else {
                trajectory::load_all(dir, &exp.device).map_err(|e| {
                    Error::Config(format!(
                        "the {} coreset needs the experts in {}: {e}",
                        m.name(),
                        dir.display()
                    ))
                })?
            };
            let ev = evaluate_coreset(exp, &experts, m, n)?;
            let row = row(exp, m.name(), Some(n), &ev.stats).with_student(ev.student);
            (row, ev.stats)
        }
        Method::Full { retrain } => {
            let experts = (!retrain).then(|| finished_experts(exp, dir)).flatten();
            let ev = evaluate_full(exp, experts.as_deref())?;
            let row = row(exp, "full", None, &ev.stats).with_student(ev.student);
            (row, ev.stats)
        }
    };
    append_result(dir, &row)?;
    Ok(stats)
}

/// The whole pipeline in `dir`: experts, distillation, then the distilled
/// set, the four coresets of the same size and the full data evaluated
/// (rows appended to `results.json`), and `report.md` with the recall table,
/// the time of each stage and the distilled set against the coresets.
/// Reuses what `dir` already holds.
pub fn run(exp: &Experiment, dir: &Path, progress: bool) -> Result<()> {
    let t = Instant::now();
    let mut times = Vec::new();
    let mut timed = |name: String, t0: Instant| times.push((name, t0.elapsed().as_secs_f64()));
    let t0 = Instant::now();
    train_experts(exp, dir, progress)?;
    timed("experts".into(), t0);
    // with a frozen backbone both kinds of set: pixels (the paper's) and features
    let spaces: &[SynthSpace] = match exp.backbone {
        Some(_) => &[SynthSpace::Pixels, SynthSpace::Features],
        None => &[SynthSpace::Pixels],
    };
    for &space in spaces {
        let t0 = Instant::now();
        distill_space_into(exp, dir, space, progress)?;
        timed(format!("distillation ({})", space.name()), t0);
    }
    let n = exp.config.distill.pairs;
    let mut rows = Vec::new();
    for &space in spaces {
        let t0 = Instant::now();
        let stats = evaluate_method(exp, dir, Method::Distilled(space))?;
        timed(format!("evaluate {}", distilled_method(space)), t0);
        rows.push((distilled_method(space), Some(n), stats));
    }
    for m in CoresetMethod::ALL {
        let t0 = Instant::now();
        let stats = evaluate_method(exp, dir, Method::Coreset(m, n))?;
        timed(format!("evaluate {} coreset", m.name()), t0);
        rows.push((m.name(), Some(n), stats));
    }
    let t0 = Instant::now();
    let full = evaluate_method(exp, dir, Method::Full { retrain: false })?;
    timed("evaluate full data".into(), t0);
    rows.push(("full", None, full));
    let mut report = report_markdown(exp, &rows, &times);
    let table = ComparisonTable::from_results(dir, 1)?;
    report.push_str(&format!(
        "\n## Distilled against the coresets (Recall@1, mean ± std; best in bold)\n\n{table}"
    ));
    let path = dir.join(REPORT_FILE);
    std::fs::write(&path, report).map_err(|e| Error::io(&path, e))?;
    log_line(&format!(
        "pipeline done in {:.1} s; report in {}",
        t.elapsed().as_secs_f64(),
        path.display()
    ));
    Ok(())
}

/// The recall table of a run as Markdown, with the time of each stage.
pub fn report_markdown(
    exp: &Experiment,
    rows: &[(&str, Option<usize>, RecallStats)],
    times: &[(String, f64)],
) -> String {
    let mut s = format!(
        "# vl-distill run: {} ({} profile)\n\n{}\n\nModel: {}; text encoder {}.\n\n",
        exp.dataset.name,
        exp.config.profile,
        exp.dataset.summary(),
        exp.model.describe(),
        exp.text_encoder
    );
    s.push_str("| method | pairs | TR R@1 | TR R@5 | TR R@10 | IR R@1 | IR R@5 | IR R@10 |\n");
    s.push_str("|---|---|---|---|---|---|---|---|\n");
    for (method, pairs, st) in rows {
        let (m, d) = (st.mean.values(), st.std.values());
        let cells: Vec<String> = (0..6)
            .map(|i| format!("{:.1} ± {:.1}", m[i], d[i]))
            .collect();
        let pairs = pairs.map_or("all".to_string(), |p| p.to_string());
        s.push_str(&format!("| {method} | {pairs} | {} |\n", cells.join(" | ")));
    }
    let chance = Recall::chance(exp.test.num_images(), exp.test.num_pairs());
    s.push_str(&format!(
        "\nChance: {chance}. Mean ± std over {} seeds.\n\n",
        exp.config.eval.num_seeds
    ));
    s.push_str("| stage | seconds |\n|---|---|\n");
    for (name, secs) in times {
        s.push_str(&format!("| {name} | {secs:.1} |\n"));
    }
    s
}

/// Pretrains the image encoder of `config` (see [`crate::stage1::pretrain`]):
/// builds the source (scenes apart from the splits), trains on `device`
/// with a line per epoch, and writes the weights to `file` (default: the
/// [`pretrained_checkpoint`](crate::config::pretrained_checkpoint) under the
/// checkout, where `--image-encoder` finds them) with their record beside
/// them. Caption embeddings of the source are cached in `dir/cache`.
/// Returns the file written.
pub fn pretrain(
    config: &Config,
    device: Device,
    dir: &Path,
    file: Option<&Path>,
    progress: bool,
) -> Result<PathBuf> {
    use crate::stage1::pretrain::{output_file, source_config, source_dataset, Pretrainer};
    let t = Instant::now();
    let source = source_config(config)?;
    let file = match file {
        Some(f) => f.to_path_buf(),
        None => crate::config::data_path(output_file(config)?),
    };
    let dataset = source_dataset(config)?;
    let p = &source.pretrain;
    log_line(&format!(
        "pretrain: {} on {} scenes + {} held out at {} px (seed {}, generator streams apart from train/val/test), {} epochs of {} pairs, AdamW lr {:.1e} (warm-up {} epochs, cosine), weight decay {} [{:.1} s]",
        source.model.image.architecture(),
        p.images,
        p.val_images,
        source.data.image_size,
        source.seed,
        p.epochs,
        p.batch_size,
        p.lr,
        p.warmup_epochs,
        p.weight_decay,
        t.elapsed().as_secs_f64()
    ));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let exp = Experiment::with_dataset(
        source,
        device,
        dataset,
        Default::default(),
        Some(&dir.join("cache")),
    )?;
    let mut trainer = Pretrainer::new(&exp)?;
    if progress {
        trainer.run(true)?;
    } else {
        while let Some(r) = trainer.step_with(|_, _, _| {})? {
            log_line(&r.to_string());
        }
    }
    trainer.save(&file)?;
    log_line(&format!(
        "pretrain: done in {:.0} s; weights → {} (and .json); --image-encoder {} at {} px now starts from them",
        t.elapsed().as_secs_f64(),
        file.display(),
        config.model.image.kind(),
        config.data.image_size
    ));
    Ok(file)
}

/// The experiment of `config` on `device` for a run in `dir` (created; the
/// caption embeddings are cached in `dir/cache`), with a line on the data
/// and one on the model. `record` writes `config` to `dir/config.toml`
/// (the steps that make artefacts do; evaluations, which may use another
/// encoder than the run they read, do not).
pub fn open_experiment(
    config: Config,
    device: Device,
    dir: &Path,
    record: bool,
) -> Result<Experiment> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    if record {
        let path = dir.join("config.toml");
        std::fs::write(&path, config.to_toml()).map_err(|e| Error::io(&path, e))?;
    }
    let t = Instant::now();
    let exp = Experiment::new(config, device, Some(&dir.join("cache")))?;
    log_line(&format!(
        "data: {} [{:.1} s, embeddings {}]",
        exp.dataset.summary(),
        t.elapsed().as_secs_f64(),
        if exp.embeddings_cached {
            "from cache"
        } else {
            "computed"
        }
    ));
    if !exp.load_report.skipped.is_empty() {
        log_line(&format!(
            "data: skipped {} unreadable images (data.skip_unreadable)",
            exp.load_report.skipped.len()
        ));
    }
    if let Some(line) = exp.load_report.resize_summary() {
        log_line(&format!("data: {line}"));
    }
    if let Some(b) = &exp.backbone {
        log_line(&format!(
            "frozen backbone: {} at {} px ({}); real features {}; only the heads train",
            b.id(),
            b.image_size,
            if b.pretrained {
                "pretrained weights"
            } else {
                "RANDOM weights: no checkpoint configured"
            },
            exp.features_note.as_deref().unwrap_or("computed"),
        ));
    }
    log_line(&format!(
        "model: {} ({} parameters), device {}",
        exp.model.describe(),
        exp.model.init(0, &exp.device, DType::F32)?.num_elements(),
        crate::device::describe(&exp.device)
    ));
    Ok(exp)
}

/// Prepares Flickr30K or COCO from a user's copy (`opts`), then, with
/// `text`, encodes every caption into the prepared folder's cache; prints
/// the summary and the command that runs the paper profile on it.
pub fn prepare_dataset(opts: &PrepareOptions, text: Option<&TextConfig>) -> Result<()> {
    let report = prepare::prepare(opts)?;
    println!("{report}");
    if let Some(text) = text {
        let t = Instant::now();
        let encoder = crate::text::from_config(text)?;
        let (file, hit) = crate::text::cache::cache_embeddings(&report.json, encoder.as_ref())?;
        println!(
            "caption embeddings ({}): {} {} ({:.1} s)",
            encoder.id(),
            if hit { "already in" } else { "written to" },
            file.display(),
            t.elapsed().as_secs_f64()
        );
    }
    let paper_json = match Config::paper().data.source {
        DataSource::Karpathy { json, .. } => Some(json),
        _ => None,
    };
    if paper_json.as_deref() == Some(report.json.as_path()) {
        println!("run on it: vl-distill run --profile paper");
    } else {
        println!(
            "run on it: vl-distill run --profile paper --set data.source.json={}",
            report.json.display()
        );
    }
    Ok(())
}

/// `vl-distill tune`: the experts of `exp`'s setup in `dir` (trained when
/// missing), then [`tune::tune`] on the validation split; writes every
/// score to `dir/tune.json` and the winner's whole configuration to
/// `dir/tuned.toml` (what `--config` takes), and prints the winner.
pub fn tune_into(
    exp: &Experiment,
    dir: &Path,
    opts: &tune::TuneOptions,
    progress: bool,
) -> Result<tune::TuneResult> {
    let experts = match finished_experts(exp, dir) {
        Some(ts) => ts,
        None => train_experts(exp, dir, progress)?,
    };
    let t = Instant::now();
    let result = tune::tune(exp, &experts, opts)?;
    crate::io::write_json(&dir.join(TUNE_LOG_FILE), &result.rows)?;
    let toml = format!(
        "# chosen by `vl-distill tune` on validation recall (sum of TR/IR R@1/5/10) \
         among {} candidates in {} rungs; run it with --config\n{}",
        opts.candidates,
        opts.rungs,
        result.config.to_toml()
    );
    let path = dir.join(TUNED_FILE);
    crate::io::write_atomic(&path, toml.as_bytes())?;
    log_line(&format!(
        "tune done in {:.1} s; every score in {}",
        t.elapsed().as_secs_f64(),
        dir.join(TUNE_LOG_FILE).display()
    ));
    println!("best on val: {}", result.best);
    println!("its configuration: {}", path.display());
    Ok(result)
}
