//! `vl-distill`: the command line over the library's pipeline
//! ([`vl_distill::pipeline`]): it parses arguments (`args`) and prints.

#[path = "vl-distill/args.rs"]
mod args;

use anyhow::{Context, Result};
use args::{Cli, Command, DataAction, PrepareArgs, PrepareDataset};
use clap::Parser;
use vl_distill::compare::{self, CompareOptions, StageTwoOption};
use vl_distill::config::{Config, SynthSpace};
use vl_distill::data::{karpathy, prepare};
use vl_distill::evaluate::coreset::CoresetMethod;
use vl_distill::experiment::load_dataset;
use vl_distill::pipeline::{self, Method};

/// `data prepare`: the dataset, then (with --text-encoder) its caption embeddings.
fn run_prepare(args: PrepareArgs) -> Result<()> {
    let dataset = match args.dataset {
        PrepareDataset::Flickr30k => prepare::Corpus::Flickr30k,
        PrepareDataset::Coco => prepare::Corpus::Coco,
    };
    // the text settings first, so that a bad --set fails before hours of work
    let text = match &args.text_encoder {
        Some(kind) => {
            let mut c = Config::profile(&args.profile)?;
            c.set_text_encoder(kind)?;
            c.apply_overrides(&args.overrides)?;
            Some(c.text)
        }
        None => None,
    };
    let opts = prepare::PrepareOptions {
        dataset,
        source: args.source.clone(),
        dest: args.out.clone().unwrap_or_else(|| dataset.default_dest()),
        image_size: args.image_size,
        allow_missing: args.allow_missing,
        progress: !args.quiet,
    };
    pipeline::prepare_dataset(&opts, text.as_ref()).with_context(|| {
        format!(
            "preparing {} from {}",
            dataset.title(),
            args.source.display()
        )
    })
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Data {
            action: DataAction::Prepare(args),
        } => run_prepare(args)?,
        Command::Data {
            action: DataAction::Export { common },
        } => {
            let cfg = common.config()?;
            let (ds, report) = load_dataset(&cfg)?;
            let json = karpathy::write_karpathy(&ds, &common.out(&cfg))?;
            println!("{}\nwrote {}", ds.summary(), json.display());
            if !report.skipped.is_empty() {
                println!("skipped {} unreadable images", report.skipped.len());
            }
        }
        Command::Data {
            action: DataAction::Inspect { common, json, show },
        } => {
            let cfg = common.config()?;
            let opts = karpathy::LoadOptions {
                image_size: cfg.data.image_size,
                skip_unreadable: cfg.data.skip_unreadable,
            };
            let (ds, report) = match json {
                Some(j) => karpathy::load_karpathy(&j, None, &opts)?,
                None => load_dataset(&cfg)?,
            };
            println!("{}\ncontent hash {}", ds.summary(), ds.content_hash());
            for s in ds.train.iter().take(show) {
                println!("{}:", s.filename);
                s.captions.iter().for_each(|c| println!("  - {c}"));
            }
            if !report.skipped.is_empty() {
                println!("skipped {} unreadable images", report.skipped.len());
            }
        }
        Command::Pretrain { common, to } => {
            let config = common.config()?;
            let device = vl_distill::device::by_name(&common.device)?;
            let dir = common.out(&config);
            pipeline::pretrain(&config, device, &dir, to.as_deref(), !common.quiet)?;
        }
        Command::Experts(common) => {
            let (exp, out) = common.experiment()?;
            pipeline::train_experts(&exp, &out, !common.quiet)?;
        }
        Command::Distill(common) => {
            let (exp, out) = common.experiment()?;
            pipeline::distill_into(&exp, &out, !common.quiet)?;
        }
        Command::Eval {
            common,
            method,
            retrain,
        } => {
            let (exp, out) = common.experiment_with(common.config()?, false)?;
            let method = match method.as_str() {
                "full" => Method::Full { retrain },
                "distilled" => Method::Distilled(SynthSpace::Pixels),
                "distilled_features" => Method::Distilled(SynthSpace::Features),
                coreset => Method::Coreset(coreset.parse()?, exp.config.distill.pairs),
            };
            pipeline::evaluate_method(&exp, &out, method)?;
        }
        Command::Baselines {
            common,
            method,
            pairs,
        } => {
            let (exp, out) = common.experiment()?;
            let methods = match method.as_str() {
                "all" => CoresetMethod::ALL.to_vec(),
                one => vec![one.parse::<CoresetMethod>()?],
            };
            if methods.iter().any(|m| *m != CoresetMethod::Random) {
                pipeline::train_experts(&exp, &out, !common.quiet)?;
            }
            let sizes = if pairs.is_empty() {
                vec![exp.config.distill.pairs]
            } else {
                pairs
            };
            for n in sizes {
                for m in &methods {
                    pipeline::evaluate_method(&exp, &out, Method::Coreset(*m, n))?;
                }
            }
        }
        Command::Export { common, nearest } => {
            let (exp, out) = common.experiment_with(common.saved_config()?, false)?;
            let set = pipeline::load_distilled(&exp, &out)?;
            pipeline::write_pictures(&exp, &out, &set, "distilled set", nearest)?;
        }
        Command::Tune {
            common,
            candidates,
            rungs,
        } => {
            let (exp, out) = common.experiment()?;
            let opts = vl_distill::tune::TuneOptions {
                candidates,
                rungs,
                ..Default::default()
            };
            pipeline::tune_into(&exp, &out, &opts, !common.quiet)?;
        }
        Command::Compare {
            common,
            options,
            pairs,
        } => {
            let options = options
                .iter()
                .map(|o| o.parse())
                .collect::<Result<Vec<StageTwoOption>, _>>()?;
            let (exp, out) = common.experiment()?;
            let budgets = if pairs.is_empty() {
                vec![exp.config.distill.pairs]
            } else {
                pairs
            };
            let opts = CompareOptions { options, budgets };
            compare::compare(&exp, &out, &opts, !common.quiet)?;
        }
        Command::Run(common) => {
            let (exp, out) = common.experiment()?;
            pipeline::run(&exp, &out, !common.quiet)?;
        }
    }
    Ok(())
}
