//! Distils against the experts already in an output folder, with config
//! overrides, and evaluates the distilled set at chosen iterations, on the
//! validation split unless `--split test` is given: settings are chosen by
//! validation recall, and the test split is kept for the reported number.
//!
//! ```text
//! cargo run --release --example recall_during_distillation -- \
//!     --out out/default --at 10,20,40 --seeds 2 \
//!     distill.lr_images=3000 distill.lr_texts=3
//! ```
//!
//! It prints one line per evaluation (mean TR/IR Recall@1 and @5 and the
//! learned α) to stdout and the distiller's reports to stderr; `--random`
//! also evaluates the random coreset of the same size first. Nothing is
//! written to `--out`: the distilled set lives only in memory.

use anyhow::{bail, Context, Result};
use candle_core::Device;
use clap::Parser;
use std::path::PathBuf;
use vl_distill::config::Config;
use vl_distill::data::Split;
use vl_distill::evaluate::protocol::Evaluator;
use vl_distill::evaluate::results::RecallStats;
use vl_distill::experiment::Experiment;
use vl_distill::stage1::sgd::TowerLr;
use vl_distill::stage2::distiller::Distiller;

#[derive(Parser)]
#[command(about = "Distil against stored experts and evaluate along the way")]
struct Args {
    /// Output folder of a finished stage 1 (its config.toml, cache and experts).
    #[arg(long)]
    out: PathBuf,
    /// Iterations after which to evaluate, comma-separated; the largest is
    /// the number of iterations run.
    #[arg(long, value_delimiter = ',', required = true)]
    at: Vec<usize>,
    /// Evaluation seeds per point (the profile's `eval.num_seeds` otherwise).
    #[arg(long)]
    seeds: Option<usize>,
    /// The split the students are scored on: `val` (for choosing settings)
    /// or `test`.
    #[arg(long, default_value = "val")]
    split: String,
    /// Also evaluate the random coreset of the same number of pairs.
    #[arg(long)]
    random: bool,
    /// Config overrides, `section.key=value`.
    overrides: Vec<String>,
}

fn summary(s: &RecallStats) -> String {
    let m = s.mean.values();
    format!(
        "TR@1 {:.2} IR@1 {:.2} TR@5 {:.2} IR@5 {:.2}",
        m[0], m[3], m[1], m[4]
    )
}

fn main() -> Result<()> {
    let args = Args::parse();
    let config_path = args.out.join("config.toml");
    let mut config = Config::from_toml_file(&config_path)
        .with_context(|| format!("reading {}", config_path.display()))?;
    config.apply_overrides(&args.overrides)?;
    if let Some(seeds) = args.seeds {
        config.eval.num_seeds = seeds;
    }
    let Some(&last) = args.at.iter().max() else {
        bail!("--at needs at least one iteration");
    };
    config.distill.iterations = last;
    let device = Device::Cpu;
    let exp = Experiment::new(
        config.clone(),
        device.clone(),
        Some(&args.out.join("cache")),
    )?;
    let experts: Vec<_> = vl_distill::stage1::trajectory::load_all(&args.out, &device)?
        .into_iter()
        .filter(|t| t.meta.fits(&exp))
        .collect();
    if experts.is_empty() {
        bail!(
            "no experts in {} fit this config (run `vl-distill experts` first)",
            args.out.display()
        );
    }
    let split = match args.split.as_str() {
        "val" => Split::Val,
        "test" => Split::Test,
        other => bail!("--split {other:?}: choose val or test"),
    };
    eprintln!("{} experts; scoring on the {split} split", experts.len());

    if args.random {
        let pairs =
            vl_distill::evaluate::coreset::random(&exp.train, config.distill.pairs, config.seed)?;
        let lr = TowerLr {
            image: config.experts.lr_image,
            text: config.experts.lr_text,
        };
        let stats = Evaluator::for_small_set(&exp, pairs, lr)
            .scored_on(&exp, split)
            .run()?;
        println!("random coreset: {}", summary(&stats));
    }

    let mut distiller = Distiller::new(&exp, experts)?;
    let evaluate = |d: &Distiller| -> Result<String> {
        let stats = Evaluator::for_small_set(&exp, d.set.training_pairs(&exp)?, d.set.lr())
            .scored_on(&exp, split)
            .run()?;
        Ok(format!(
            "{} (α image {:.3} text {:.3})",
            summary(&stats),
            d.set.lr().image,
            d.set.lr().text
        ))
    };
    println!("iteration 0: {}", evaluate(&distiller)?);
    while !distiller.is_done() {
        let report = distiller.step()?;
        eprintln!("{report}");
        if args.at.contains(&distiller.iteration) {
            println!(
                "iteration {}: {}",
                distiller.iteration,
                evaluate(&distiller)?
            );
        }
    }
    Ok(())
}
