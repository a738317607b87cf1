//! Scores one method's pairs under every student setting of a grid on the
//! validation split, and never touches the test split: how the grid of
//! `eval.student_grid` itself is chosen (e.g. whether a longer schedule
//! helps when the chosen setting sits at the grid's edge).
//!
//! ```text
//! cargo run --release --example student_grid_on_val -- \
//!     --out out/emoji --method distilled_features \
//!     'eval.student_grid.epochs=[25,50,100,200]'
//! ```
//!
//! `--method` is `distilled` or `distilled_features` (the run's set, from
//! its learned α) or a coreset (`random`, `herding`, `kcenter`,
//! `forgetting`, of `distill.pairs` pairs, from the experts' rates). Prints
//! one line per setting and the one the run would choose.

use anyhow::{bail, Context, Result};
use candle_core::Device;
use clap::Parser;
use std::path::PathBuf;
use vl_distill::config::{Config, SynthSpace};
use vl_distill::evaluate::coreset::{self, CoresetMethod};
use vl_distill::evaluate::student_settings::{choose_on_val, val_score};
use vl_distill::experiment::Experiment;
use vl_distill::pipeline::load_distilled_space;
use vl_distill::stage1::sgd::TowerLr;
use vl_distill::stage1::trajectory;

#[derive(Parser)]
#[command(about = "Score a method's pairs under every student setting on the validation split")]
struct Args {
    /// A run folder (its config.toml, cache, experts and distilled sets).
    #[arg(long)]
    out: PathBuf,
    /// distilled, distilled_features, random, herding, kcenter or forgetting.
    #[arg(long)]
    method: String,
    /// Config overrides, `section.key=value`.
    overrides: Vec<String>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let config_path = args.out.join("config.toml");
    let mut config = Config::from_toml_file(&config_path)
        .with_context(|| format!("reading {}", config_path.display()))?;
    config.apply_overrides(&args.overrides)?;
    let Some(grid) = config.eval.student_grid.clone() else {
        bail!("the config has no eval.student_grid to score");
    };
    let exp = Experiment::new(config.clone(), Device::Cpu, Some(&args.out.join("cache")))?;
    let (pairs, lr) = match args.method.as_str() {
        "distilled" | "distilled_features" => {
            let space = if args.method == "distilled" {
                SynthSpace::Pixels
            } else {
                SynthSpace::Features
            };
            let set = load_distilled_space(&exp, &args.out, space)?;
            (set.training_pairs(&exp)?, set.student_lr(&exp).0)
        }
        name => {
            let Some(method) = CoresetMethod::ALL.into_iter().find(|m| m.name() == name) else {
                bail!("--method {name:?}: choose distilled, distilled_features, random, herding, kcenter or forgetting");
            };
            let experts = trajectory::load_all(&args.out, &exp.device)?;
            let pairs = coreset::select(
                method,
                &exp.train,
                &exp.model,
                &experts,
                config.distill.pairs,
                config.seed,
            )?;
            let lr = TowerLr {
                image: config.experts.lr_image,
                text: config.experts.lr_text,
            };
            (pairs, lr)
        }
    };
    let choice = choose_on_val(&exp, &pairs, lr, &grid, |s, st| {
        println!(
            "{s}: val score {:.1} (TR@1 {:.1}, IR@1 {:.1})",
            val_score(st),
            st.mean.tr_r1,
            st.mean.ir_r1
        )
    })?;
    println!(
        "chosen: {} (val score {:.1})",
        choice.chosen,
        val_score(&choice.val)
    );
    Ok(())
}
